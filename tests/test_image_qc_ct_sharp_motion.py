"""CT sharpness leaves the motion run out (CTS2, 2026-11-24): motion is the artifact dimension's defect,
so the slices a moving patient ghosts (the displaced copy's echo on a run of slices) are not read as blur."""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from tests.test_image_qc_ct import RecordingSink, exam, phantom, series


def _moved(n: int = 12, run: tuple[int, int] = (6, 11)) -> np.ndarray:
    """Sharp slices; on ``run`` a copy shifted 2 px at weight 0.45 (the generator's motion_double)."""
    from scipy import ndimage

    vol = phantom(n=n, noise=3.0)
    clean = phantom(n=n, noise=0.0)
    for i in range(*run):
        shifted = np.roll(clean[i], 2, axis=1)
        ghost = 0.55 * clean[i] + 0.45 * shifted
        vol[i] = ndimage.gaussian_filter(ghost, 1.2) + (vol[i] - clean[i])
    return vol


def _quantile_only(params: dict) -> dict:
    sharp = {k: v for k, v in params["sharpness"].items() if k != "motion_echo"}
    return {**params, "sharpness": sharp}


def test_motion_run_is_left_out_of_the_sharpness_index() -> None:
    params = load_params("CT", "CT-CHEST-PLAIN")
    assert params["sharpness"].get("motion_echo"), "motion_echo is shipped on"
    vol = _moved()
    on = ct.measure_ct(exam(series("m", vol)), params, RecordingSink())["sharpness"]
    off = ct.measure_ct(exam(series("m", vol)), _quantile_only(params), RecordingSink())["sharpness"]
    left = set(on.details.get("motion_slices_left_out") or [])
    assert left and left <= set(range(6, 11))
    assert on.details["edge_index"] > off.details["edge_index"]
    assert on.value == "正常"


def test_blur_on_every_slice_is_not_left_out() -> None:
    """Blur lowers every slice alike: no run reads lower than the rest, nothing is left out, 异常 stays."""
    params = load_params("CT", "CT-CHEST-PLAIN")
    vol = phantom(n=12, noise=3.0, blur_px=3.0)
    r = ct.measure_ct(exam(series("b", vol)), params, RecordingSink())["sharpness"]
    assert not r.details.get("motion_slices_left_out")
    assert r.value == "异常"


def test_motion_run_needs_a_lower_edge_inside() -> None:
    """An echo run whose edges read like the others' (anatomy, not a ghost) is kept."""
    vals = [(0.30, i) for i in range(12)]
    vol = _moved()
    q = {"min_t": 0.0, "max_ratio": 0.9, "min_kept": 3}
    assert ct._motion_run_slices(vol, vals, q) == set()
    low = [(0.24 if 6 <= i < 11 else 0.33, i) for i in range(12)]
    assert ct._motion_run_slices(vol, low, q)
    assert ct._motion_run_slices(vol, low, {}) == set()


def _neck_range(monkeypatch, lung_run_mm):
    """A neck whose scorer line puts the aortic arch 43 mm below the scan (i9212 E00257's reading)."""
    params = load_params("CT", "CT-NECK-PLAIN")
    scores = params["landmark_scores"]
    mm = 8.35
    length = (float(scores["aortic_arch"]) - float(scores["skull_base"])) * mm - 43.0 + 10.0  # top 10 mm above
    n = int(length // 5.0) + 1
    z = [-5.0 * i for i in range(n)]
    s_bottom = float(scores["aortic_arch"]) - 43.0 / mm
    a = s_bottom - 5.0 * (n - 1) / mm  # score = a - z / mm
    monkeypatch.setattr(ct, "_scorer", lambda: object())
    monkeypatch.setattr(ct, "_score_fit", lambda stack, scorer: (a, -1.0 / mm, None))
    monkeypatch.setattr(ct, "_lung_run_from_bottom", lambda group, lp: lung_run_mm)
    e = exam(series("n", phantom(n=n, noise=3.0), z=z, region="neck"), code="CT-NECK-PLAIN", item_codes=["CT.NECK.PLAIN"])
    return ct._range_by_scorer(e, params, RecordingSink(), {})


def test_the_lung_apex_rescues_an_aortic_arch_the_scorer_misses(monkeypatch) -> None:
    """The arch lies (s_arch - s_apex) x 8.35 mm (~44) below the apex: lungs running 40 mm up from the
    bottom slice put it 4 mm below the scan, within tolerance; no lung on the bottom slice leaves it missing."""
    params = load_params("CT", "CT-NECK-PLAIN")
    assert params["range"].get("bottom_from_lung_apex", {}).get("aortic_arch")
    rescued = _neck_range(monkeypatch, 40.0)
    assert rescued.value == "正常", rescued.details
    assert -10.0 < rescued.details["bottom_margin_from_lung_apex_mm"] < 0.0
    assert _neck_range(monkeypatch, None).value == "过小"
    assert _neck_range(monkeypatch, 5.0).value == "过小"  # apex only 5 mm up: the arch is ~39 mm below the scan
