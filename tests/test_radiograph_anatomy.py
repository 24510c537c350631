"""cxr_anatomy: the committed ONNX model on freshly rendered synthetic radiographs.

Seeds come from the held-out range (never used in training). Each case is a small render
(~0.1 s) and one ONNX pass (~30 ms), so the file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from radqc.datasets.synthetic.spec import Defect
from radqc.models.interfaces import RadiographAnalyser
from radqc.models.radiograph.data import HELDOUT_SEEDS, render_cases
from radqc.models.radiograph.infer import RadiographAnatomyModel
from radqc.models.registry import get_model

SEED = HELDOUT_SEEDS.start + 101


@pytest.fixture(scope="module")
def model() -> RadiographAnatomyModel:
    return RadiographAnatomyModel(get_model("cxr_anatomy"))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(int(a.sum()) + int(b.sum()), 1)


def _pa(seed: int = SEED, defects: list[Defect] | None = None, vendor: str = "GE"):
    return render_cases(seed, "chest", ("PA",), "small", defects=defects or [], vendor=vendor, modality="DX")[0]


def _analyse(model: RadiographAnatomyModel, case, **kw):
    return model.analyse(case.pixels, (case.spacing_mm, case.spacing_mm), case.view, case.region, mono1=case.mono1, **kw)


def test_registered_model_is_small_and_checked() -> None:
    info = get_model("cxr_anatomy")
    assert info.version == "1.0.0"
    path = info.verified_weights()
    assert path.stat().st_size < 5_000_000
    assert "lung_left" in info.output["channels"] and "marker" in info.output["channels"]


def test_model_fills_the_radiograph_slot(model: RadiographAnatomyModel) -> None:
    assert isinstance(model, RadiographAnalyser)
    assert (model.name, model.version) == ("cxr_anatomy", "1.0.0")


def test_lung_masks_overlap_truth_on_synthetic_chest_pa(model: RadiographAnatomyModel) -> None:
    from radqc.models.radiograph.train import clip_to_field

    case = _pa()
    res = _analyse(model, case)
    truth = clip_to_field(case).astype(bool)
    assert res.masks["lung_left"].shape == case.pixels.shape
    assert _dice(res.masks["lung_left"], truth[0]) > 0.85
    assert _dice(res.masks["lung_right"], truth[1]) > 0.85
    # patient's right lung on the image left (PA)
    assert np.nonzero(res.masks["lung_right"])[1].mean() < np.nonzero(res.masks["lung_left"])[1].mean()
    m = res.measurements
    assert m["status"] == "ok" and m["region"] == "chest"
    assert set(m["costophrenic_angle_in_field"]) == {"left", "right"}
    assert res.landmarks["lung_apex_right"] is not None and res.landmarks["clavicle_medial_end_left"] is not None


def test_rotation_defect_raises_the_rotation_measurement(model: RadiographAnatomyModel) -> None:
    standard = _analyse(model, _pa()).measurements
    rotated = _analyse(model, _pa(defects=[Defect("positioning", "不标准", {"kind": "rotation", "degrees": 14})])).measurements
    assert standard["rotation_offset_mm"] is not None and rotated["rotation_offset_mm"] is not None
    assert abs(rotated["rotation_offset_mm"]) > abs(standard["rotation_offset_mm"]) + 5.0
    assert abs(rotated["rotation_ratio"]) > abs(standard["rotation_ratio"])


def test_shallow_inspiration_counts_fewer_ribs(model: RadiographAnatomyModel) -> None:
    normal = _analyse(model, _pa()).measurements["posterior_ribs_above_right_dome"]
    shallow = _analyse(model, _pa(defects=[Defect("positioning", "不标准", {"kind": "shallow_inspiration", "ribs": 7.5})]))
    assert normal is not None and shallow.measurements["posterior_ribs_above_right_dome"] is not None
    assert shallow.measurements["posterior_ribs_above_right_dome"] < normal


def test_monochrome1_gives_the_same_masks(model: RadiographAnatomyModel) -> None:
    case = _pa()
    assert not case.mono1
    direct = _analyse(model, case)
    inverted = model.analyse((4095 - case.pixels).astype(np.uint16), (case.spacing_mm,) * 2, "PA", "CHEST",
                             photometric="MONOCHROME1")
    assert inverted.measurements["mono1"] is True
    guessed = model.analyse((4095 - case.pixels).astype(np.uint16), (case.spacing_mm,) * 2, "PA", "CHEST")
    assert guessed.measurements["polarity_guessed"] is True and guessed.measurements["mono1"] is True
    for name in ("lung_left", "lung_right"):
        assert _dice(direct.masks[name], inverted.masks[name]) > 0.97
    # a Philips exam is written MONOCHROME1 by the generator
    philips = render_cases(SEED, "chest", ("PA",), "small", defects=[], vendor="Philips", modality="DX")[0]
    assert philips.mono1
    res = _analyse(model, philips)
    assert res.masks["lung_left"].sum() > 0.05 * philips.pixels.size


def test_marker_found_and_missing_marker_reported(model: RadiographAnatomyModel) -> None:
    present = _analyse(model, _pa()).measurements["marker"]
    missing = _analyse(model, _pa(defects=[Defect("marker", "缺失", {"kind": "marker_missing"})])).measurements["marker"]
    assert present["present"] is True
    assert missing["present"] is False


def test_lateral_knee_and_spine_do_not_crash(model: RadiographAnatomyModel) -> None:
    lat = render_cases(SEED, "chest", ("LAT",), "small", defects=[])[0]
    res = _analyse(model, lat)
    assert res.view == "LAT" and res.measurements["status"] == "ok"
    assert "lung_apex" in res.landmarks
    knee_ap, knee_lat = render_cases(SEED, "knee", ("AP", "LAT"), "small", defects=[])
    for case in (knee_ap, knee_lat):
        r = _analyse(model, case)
        assert r.measurements["region"] == "knee"
        assert r.masks["femur"].any() and r.masks["tibia"].any()
    spine = render_cases(SEED, "lumbar_spine", ("AP",), "small", defects=[])[0]
    r = _analyse(model, spine)
    assert r.measurements["region"] == "spine" and "vertebrae_lumbar" in r.measurements["segments_present"]


def test_blank_image_gives_empty_masks_and_a_reason(model: RadiographAnatomyModel) -> None:
    res = model.analyse(np.full((512, 512), 1200, np.uint16), (0.2, 0.2), "PA", "CHEST")
    assert res.masks == {}
    assert res.measurements["status"] == "skipped"
    assert "blank" in res.measurements["reason"] and "空白" in res.measurements["reason"]
    tiny = model.analyse(np.arange(16, dtype=np.uint16).reshape(4, 4), None, "PA")
    assert tiny.masks == {} and "too small" in tiny.measurements["reason"]


def test_no_spacing_gives_pixels_not_millimetres(model: RadiographAnatomyModel) -> None:
    case = _pa()
    res = model.analyse(case.pixels, None, "PA", "CHEST", mono1=False)
    assert res.measurements["lung_centroid_offset_mm"] is None
    assert res.measurements["lung_centroid_offset_px"] is not None


def test_session_is_loaded_once(model: RadiographAnatomyModel) -> None:
    from radqc.models import runtime

    runtime.clear_sessions()
    a = RadiographAnatomyModel(get_model("cxr_anatomy"))
    b = RadiographAnatomyModel(get_model("cxr_anatomy"))
    case = _pa()
    _analyse(a, case)
    _analyse(b, case)
    _analyse(a, case)
    assert a.session is b.session
    assert runtime.loaded_sessions() == 1


def test_evaluate_refuses_training_seeds() -> None:
    from radqc.models.radiograph.evaluate import evaluate

    with pytest.raises(ValueError, match="held-out"):
        evaluate([5], quick=True)
