"""The slice body-region scorer (models/body_region) with its committed ONNX weights.

CT exams come from the synthetic generator's renderer (DICOM written and read back), seeds
outside the training range, so these are small held-out checks, not training-set replays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("onnxruntime")

from radqc.models.body_region import data as D  # noqa: E402
from radqc.models.body_region.evaluate import render_case  # noqa: E402
from radqc.models.body_region.infer import (  # noqa: E402
    OnnxBodyRegionScorer,
    isotonic_increasing,
    landmarks_from_scores,
    monotonic_fraction,
    rank_correlation,
)
from radqc.models.interfaces import CT_LANDMARKS, BodyRegionScorer  # noqa: E402
from radqc.models.registry import get_model  # noqa: E402
from radqc.models.runtime import loaded_sessions  # noqa: E402

SEED = 990123  # renderer seed; training uses phantom seeds 1000..1139


@pytest.fixture(scope="module")
def scorer() -> OnnxBodyRegionScorer:
    return OnnxBodyRegionScorer(get_model("body_region"))


@pytest.fixture(scope="module")
def whole_body(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    return render_case(SEED, ["head", "neck", "chest", "abdomen", "pelvis"], tmp_path_factory.mktemp("wb"))


@pytest.fixture(scope="module")
def chest_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    return render_case(SEED + 1, ["chest"], tmp_path_factory.mktemp("chest"))


def test_registered_weights_are_small_onnx_with_dynamic_batch() -> None:
    import onnx

    info = get_model("body_region")
    assert info.version == "1.0.0" and info.task == "slice_regression"
    path = info.verified_weights()
    assert path.stat().st_size < 2_000_000
    m = onnx.load(str(path))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value
    assert info.input["size"] == [D.GRID, D.GRID] and info.input["pixel_mm"] == D.PIXEL_MM
    assert set(CT_LANDMARKS) <= set(info.output["landmark_scores"])


def test_scorer_satisfies_the_slot_protocol(scorer: OnnxBodyRegionScorer) -> None:
    assert isinstance(scorer, BodyRegionScorer)
    assert scorer.name == "body_region" and scorer.version == "1.0.0"


def test_whole_body_scores_are_monotonic_and_landmarks_close(scorer: OnnxBodyRegionScorer, whole_body: tuple) -> None:
    image, truth = whole_body
    r = scorer.score(image)
    n = image.GetSize()[2]
    assert len(r.scores) == len(r.z_mm) == len(r.regions) == n
    # strict order of neighbours 5 mm apart is limited by per-slice noise (~0.5 score units
    # against a 0.6-unit step); no reversal may exceed one score unit (~8 mm), and the ranks agree
    assert r.monotonic_fraction is not None and r.monotonic_fraction >= 0.6
    assert monotonic_fraction(np.array(r.z_mm), np.array(r.scores), tolerance=1.0) >= 0.97
    assert rank_correlation(np.array(r.z_mm), np.array(r.scores)) >= 0.995
    # the score grows toward the feet overall (index 0 is the lowest z here)
    assert r.scores[0] > r.scores[-1] + 50
    errors = {k: abs(r.landmarks[k] - truth["landmarks_mm"][k]) for k in CT_LANDMARKS if k in truth["in_range"] and r.landmarks[k] is not None}
    assert len(errors) >= 7, r.landmarks
    assert float(np.median(list(errors.values()))) <= 10.0, errors
    assert max(errors.values()) <= 30.0, errors
    assert {"head", "neck", "chest", "abdomen", "pelvis"} <= set(r.regions)


def test_feet_first_order_gives_the_same_landmarks(scorer: OnnxBodyRegionScorer, whole_body: tuple) -> None:
    image, _ = whole_body
    a = scorer.score(image)
    flipped = sitk.Flip(image, [False, False, True])
    b = scorer.score(flipped)
    assert b.z_mm[0] > b.z_mm[-1] and a.z_mm[0] < a.z_mm[-1]
    assert np.allclose(a.scores[::-1], b.scores, atol=1e-3)
    assert a.regions[::-1] == b.regions
    for k in CT_LANDMARKS:
        assert (a.landmarks[k] is None) == (b.landmarks[k] is None)
        if a.landmarks[k] is not None:
            assert abs(a.landmarks[k] - b.landmarks[k]) < 0.5
    assert b.monotonic_fraction == a.monotonic_fraction


def test_chest_only_scan_has_null_landmarks_outside_it(scorer: OnnxBodyRegionScorer, chest_only: tuple) -> None:
    image, truth = chest_only
    r = scorer.score(image)
    for k in ("vertex", "skull_base", "iliac_crest", "pubic_symphysis"):
        assert r.landmarks[k] is None, (k, r.landmarks)
    assert r.landmarks["carina"] is not None
    assert abs(r.landmarks["carina"] - truth["landmarks_mm"]["carina"]) <= 20.0
    assert "chest" in r.regions and "head" not in r.regions


def test_single_slice_has_a_score_and_no_landmarks(scorer: OnnxBodyRegionScorer, whole_body: tuple) -> None:
    image, _ = whole_body
    one = image[:, :, image.GetSize()[2] // 2 : image.GetSize()[2] // 2 + 1]
    r = scorer.score(one)
    assert len(r.scores) == 1 and len(r.regions) == 1
    assert all(v is None for v in r.landmarks.values())
    assert r.monotonic_fraction is None
    r2 = scorer.score(one[:, :, 0])  # a 2D image is one slice too
    assert r2.scores == pytest.approx(r.scores, abs=1e-3)


def test_non_axial_series_is_refused_with_a_reason(scorer: OnnxBodyRegionScorer) -> None:
    img = sitk.Image(32, 32, 8, sitk.sitkInt16)
    img.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))  # sagittal-like: slice normal along y
    with pytest.raises(D.BodyRegionInputError) as e:
        scorer.score(img)
    assert e.value.code == "not_axial" and "axial" in str(e.value) and "轴位" in str(e.value)


def test_session_is_loaded_once_per_process(whole_body: tuple) -> None:
    image, _ = whole_body
    OnnxBodyRegionScorer(get_model("body_region")).score(image[:, :, :4])
    before = loaded_sessions()
    for _ in range(3):
        OnnxBodyRegionScorer(get_model("body_region")).score(image[:, :, :4])
    assert loaded_sessions() == before


def test_isotonic_fit_and_landmark_inversion() -> None:
    x = np.array([0.0, 1, 2, 3, 4, 5])
    y = np.array([0.0, 2, 1, 3, 5, 4])
    bx, bv = isotonic_increasing(x, y)
    assert np.all(np.diff(bv) >= 0) and np.all(np.diff(bx) > 0)
    assert bv.tolist() == [0.0, 1.5, 3.0, 4.5]
    z = -np.arange(0, 100, 5.0)  # head-first, 5 mm
    s = np.arange(20) * 1.0
    lm, _ = landmarks_from_scores(z, s, {"vertex": -3.0, "carina": 10.0, "pubic_symphysis": 50.0}, margin=1.0)
    assert lm["carina"] == pytest.approx(-50.0)
    assert lm["vertex"] is None and lm["pubic_symphysis"] is None
    assert monotonic_fraction(z, s) == 1.0
    assert monotonic_fraction(z[::-1], s) == 0.0
    wobbly = 0.5 * s + np.where(np.arange(20) % 2, 0.7, 0.0)  # steps +1.2, -0.2, +1.2, ...
    assert monotonic_fraction(z, wobbly) < 0.6 and monotonic_fraction(z, wobbly, tolerance=1.0) == 1.0
    assert rank_correlation(z, s) == pytest.approx(1.0) and rank_correlation(z[::-1], s) == pytest.approx(-1.0)


def test_training_targets_follow_the_standard_body() -> None:
    lm = {a: 100.0 * i for i, a in enumerate(D.ANCHORS)}
    std = {a: 90.0 * i for i, a in enumerate(D.ANCHORS)}
    s = D.score_of_depth(np.array([lm["pubic_symphysis"], 0.0, -50.0]), lm, std)
    assert s[0] == pytest.approx(100.0) and s[1] == pytest.approx(0.0) and s[2] < 0
    with pytest.raises(ValueError):
        D.score_of_depth(np.array([0.0]), lm | {"carina": 10.0}, std)


def test_real_head_ct_is_mostly_monotonic(scorer: OnnxBodyRegionScorer) -> None:
    folder = Path.home() / ".cache" / "radqc" / "samples" / "invesalius-cranium"
    if not folder.is_dir():
        pytest.skip("real head CT sample not cached (radqc.samples)")
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    res = scorer.score(r.Execute())
    z, s = np.array(res.z_mm), np.array(res.scores)
    assert monotonic_fraction(z, s, tolerance=1.0) >= 0.9
    assert rank_correlation(z, s) >= 0.9
    assert set(res.regions) <= {"head", "neck"}
    assert res.landmarks["carina"] is None and res.landmarks["pubic_symphysis"] is None
