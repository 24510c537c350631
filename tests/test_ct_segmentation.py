"""The bundled CT organ model: geometry, preprocessing, sliding window, held-out accuracy on a small case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radqc.models.registry import get_model, load_label_set
from radqc.models.segmentation.data import (
    HELDOUT_SEEDS,
    TRAIN_SEEDS,
    VAL_SEEDS,
    CasePlan,
    generator_lut,
    render_native,
)
from radqc.models.segmentation.evaluate import body_dice, confusion, dice_from_confusion
from radqc.models.segmentation.infer import OnnxCTSegmenter, sliding_window_probabilities
from radqc.models.segmentation.preprocess import model_grid, normalise_hu


def test_seed_ranges_are_disjoint() -> None:
    assert not set(TRAIN_SEEDS) & set(HELDOUT_SEEDS)
    assert not set(VAL_SEEDS) & set(HELDOUT_SEEDS)
    assert not set(TRAIN_SEEDS) & set(VAL_SEEDS)


def test_generator_lut_maps_every_listed_structure() -> None:
    ls = load_label_set("ct_organs")
    lut = generator_lut(ls)
    assert lut[0] == 0 and lut[63] == 0  # air, table
    assert lut[10] == ls.by_name()["liver"].label
    assert lut[44] == ls.by_name()["brain"].label  # ventricles are brain
    assert lut[27] == ls.by_name()["body"].label  # muscle is "other body tissue"


def test_model_grid_covers_the_source_extent() -> None:
    img = sitk.Image(100, 80, 30, sitk.sitkInt16)
    img.SetSpacing((0.8, 0.8, 2.0))
    img.SetOrigin((-40.0, -30.0, 100.0))
    ref = model_grid(img, 3.0)
    assert ref.GetSpacing() == (3.0, 3.0, 3.0)
    assert ref.GetOrigin() == pytest.approx((-40.0, -30.0, 100.0))
    far = np.array(ref.GetOrigin()) + (np.array(ref.GetSize()) - 1) * 3.0
    assert np.all(far >= np.array([-40 + 99 * 0.8, -30 + 79 * 0.8, 100 + 29 * 2.0]) - 1e-6)


def test_normalise_clips_and_scales() -> None:
    out = normalise_hu(np.array([-3000, -1000, 300, 1600, 3000]))
    assert out[0] == out[1] == pytest.approx(-1.0)
    assert out[3] == out[4] == pytest.approx(1.0)
    assert out[2] == pytest.approx(0.0)


def test_sliding_window_reassembles_a_position_dependent_prediction() -> None:
    """A predictor that votes class 1 where the input is positive must give back that mask,
    across window seams and on a volume smaller than one window (padding)."""
    rng = np.random.default_rng(0)
    for shape in [(70, 90, 50), (20, 30, 40)]:
        vol = rng.normal(size=shape).astype(np.float32)

        def predict(x: np.ndarray) -> np.ndarray:
            return np.concatenate([-x * 10, x * 10], axis=1)

        prob = sliding_window_probabilities(vol, predict, (32, 32, 32), 2)
        assert prob.shape == (2, *shape)
        assert np.array_equal(prob.argmax(0) == 1, vol > 0)


def test_dice_from_confusion() -> None:
    t = np.array([0, 1, 1, 2, 2, 2])
    p = np.array([0, 1, 2, 2, 2, 0])
    cm = confusion(t, p, 3)
    assert dice_from_confusion(cm, 2) == pytest.approx(2 * 2 / (3 + 3))
    assert dice_from_confusion(cm, 1) == pytest.approx(2 * 1 / (2 + 1))
    assert body_dice(cm) == pytest.approx(2 * 4 / (5 + 4))


@pytest.fixture(scope="module")
def segmenter() -> OnnxCTSegmenter:
    return OnnxCTSegmenter(get_model("ct_organs_3mm"))


def test_held_out_chest_abdomen_case(segmenter: OnnxCTSegmenter, tmp_path: Path) -> None:
    """A held-out seed the model never saw: labels come back in the source geometry, and the big
    organs are found where the generator put them."""
    ls = load_label_set("ct_organs")
    plan = CasePlan(seed=HELDOUT_SEEDS[-1], regions=("chest", "abdomen"), phase="portal", sex="F", age=60,
                    vendor="Siemens", thickness_mm=5.0, defect=None)
    image, truth, _ = render_native(plan, tmp_path, ls)
    out = segmenter.segment(image)
    assert out.GetSize() == image.GetSize()
    assert out.GetOrigin() == pytest.approx(image.GetOrigin())
    assert out.GetSpacing() == pytest.approx(image.GetSpacing())
    pred = sitk.GetArrayFromImage(out)
    cm = confusion(truth, pred, ls.max_label + 1)
    names = ls.by_name()
    assert body_dice(cm) > 0.95
    for organ in ("lung_left", "lung_right", "liver", "heart"):
        assert dice_from_confusion(cm, names[organ].label) > 0.8, organ


def test_session_is_loaded_once(segmenter: OnnxCTSegmenter) -> None:
    from radqc.models.runtime import loaded_sessions

    before = loaded_sessions()
    again = OnnxCTSegmenter(get_model("ct_organs_3mm"))
    assert again._session is segmenter._session
    assert loaded_sessions() == before


def test_smooth_upsampling_beats_nearest_on_a_sphere_and_keeps_geometry() -> None:
    """A 3-mm sphere upsampled to a 1-mm grid with a flipped z axis: the smooth path is closer
    to the true sphere than nearest neighbour, and the output has the target's geometry."""
    from radqc.models.segmentation.infer import resample_labels_smooth

    def sphere(grid: sitk.Image, label: int) -> np.ndarray:
        size = grid.GetSize()
        pts = np.stack(np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij"), -1).reshape(-1, 3)[:, ::-1]
        phys = np.array([grid.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in pts])
        inside = np.linalg.norm(phys - np.array([1.0, -2.0, 3.0]), axis=1) < 14.0
        return (inside.reshape(size[::-1]) * label).astype(np.uint8)

    coarse = sitk.Image(16, 16, 16, sitk.sitkUInt8)
    coarse.SetSpacing((3.0, 3.0, 3.0))
    coarse.SetOrigin((-22.5, -24.0, -20.0))
    arr = sphere(coarse, 7)
    c2 = sitk.GetImageFromArray(arr)
    c2.CopyInformation(coarse)
    target = sitk.Image(40, 40, 40, sitk.sitkUInt8)
    target.SetSpacing((1.0, 1.0, 1.0))
    target.SetOrigin((-19.0, -22.0, 23.0))
    target.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    truth = sphere(target, 7)
    smooth = resample_labels_smooth(c2, target)
    nearest = sitk.Resample(c2, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    assert smooth.GetDirection() == target.GetDirection() and smooth.GetOrigin() == target.GetOrigin()

    def dice(a: np.ndarray) -> float:
        return float(2 * ((a == 7) & (truth == 7)).sum() / ((a == 7).sum() + (truth == 7).sum()))

    d_smooth, d_nearest = dice(sitk.GetArrayFromImage(smooth)), dice(sitk.GetArrayFromImage(nearest))
    assert d_smooth > 0.9
    assert d_smooth > d_nearest


def test_implausible_structures_are_relabelled_body_with_a_margin() -> None:
    """'Lung' on head slices becomes body; lung within 30 mm of a chest slice is kept (boundary error)."""
    from radqc.models.segmentation.plausibility import remove_implausible

    ls = load_label_set("ct_organs")
    lung, body, brain = (ls.by_name()[n].label for n in ("lung_left", "body", "brain"))
    z = np.arange(20, dtype=float) * 5.0  # 0..95 mm, slice 0 lowest
    regions = ["chest"] * 8 + ["neck"] * 4 + ["head"] * 8
    labels = np.full((20, 4, 4), lung, np.uint8)
    labels[15:, :2] = brain
    removed = remove_implausible(labels, regions, z, ls)
    assert (labels[:8] == lung).all()  # chest
    assert (labels[8:14] == lung).all()  # neck slices within 30 mm of the last chest slice (z 35)
    assert (labels[14:, 2:] == body).all()  # 35 mm and more above the chest: not lung
    assert (labels[15:, :2] == brain).all()  # brain on head slices untouched
    assert removed == {"lung_left": int(6 * 8 + 8)}
    with pytest.raises(ValueError):
        remove_implausible(labels, regions[:-1], z, ls)
