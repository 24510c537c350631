"""CT range: lungs read on a targeted (spine) FOV, the scorer's contradictory ends, acquisition-group extent
(helper R, 2026-11-23 evening; validation i9204). Small hand-drawn slices: no corpus, no model files."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.types import DimensionResult


def _params() -> dict[str, Any]:
    return load_params("CT", "CT-SPINE")


def _lp(**change: Any) -> dict[str, Any]:
    lp = dict(_params()["range"]["lung_landmarks"])
    lp.update(change)
    return lp


def _spine_fov(size: int = 64, outside: float = -3024.0) -> np.ndarray:
    """A targeted 225 mm FOV on a chest: tissue everywhere inside the FOV circle, two lungs (-850 HU)
    that run into the circle's edge (the chest wall lies outside the FOV), padding outside."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c = (size - 1) / 2.0
    img = np.full((size, size), 40.0)
    img[np.hypot(yy - c, xx - c) > size / 2.0] = outside
    for side in (-1, 1):
        lung = ((yy - c + 6) / (size * 0.25)) ** 2 + ((xx - (c + side * size * 0.36)) / (size * 0.2)) ** 2 <= 1.0
        img[lung & (img > -2000)] = -850.0
    return img


def test_lungs_cut_by_a_targeted_fov_are_read_only_with_open_fov() -> None:
    img = _spine_fov()
    spacing = (3.5, 3.5)
    assert ct._lung_areas(img, spacing, _lp()) == []  # not enclosed by the body contour
    areas = ct._lung_areas(img, spacing, _lp(open_fov=True))
    assert len(areas) == 2 and min(areas) > 1000.0


def test_noisy_outside_air_clipped_at_the_stored_minimum_is_not_lung() -> None:
    rng = np.random.default_rng(0)
    size = 64
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    img = np.full((size, size), -1000.0)
    img[np.hypot(yy - 20, xx - 32) < 14] = 40.0  # a neck off-centre in air, no lung at all
    img = np.maximum(img + rng.normal(0, 250.0, img.shape), -1024.0)  # heavy noise (a thin bone kernel x 2.85), clipped like the stored data
    lp = _lp(open_fov=True)
    air = img < -400
    assert img[air].mean() > float(lp["min_mean_hu"])  # the mean alone would take it for lung
    assert ct._lung_areas(img, (3.5, 3.5), lp) == []


def _res(value: str, top: float, bottom: float, missing: list[str], **extra: Any) -> DimensionResult:
    d = {"required": ["iliac_crest", "pubic_symphysis"], "top_margin_mm": top, "bottom_margin_mm": bottom, **extra}
    if missing:
        d["missing"] = missing
    return DimensionResult(value, d)


def test_shifted_fit_is_one_end_missing_and_the_other_far_over() -> None:
    p = _params()["range"]
    assert ct._shifted_fit(_res("过小", 76.4, -61.5, ["pubic_symphysis"]), p)  # i9204 E00044
    assert ct._shifted_fit(_res("过小", -40.0, 60.0, ["iliac_crest"]), p)
    assert not ct._shifted_fit(_res("过小", 20.0, -40.0, ["pubic_symphysis"]), p)  # a plain cut
    assert not ct._shifted_fit(_res("过大", 80.0, 10.0, []), p)
    # an end read on the lung edges is not the scorer's: no shift judged
    assert not ct._shifted_fit(_res("过小", 76.4, -61.5, ["pubic_symphysis"], landmark_method={"top": "lung_edge"}), p)


def test_group_extent_is_the_union_of_its_series() -> None:
    stack = SimpleNamespace(z=np.array([-80.0, -200.0, -383.0]))
    chest = SimpleNamespace(header=SimpleNamespace(z_max=-80.0, z_min=-383.0))
    abdomen = SimpleNamespace(header=SimpleNamespace(z_max=-307.0, z_min=-445.5))
    assert ct._group_z(stack, [chest, abdomen], {"group_extent": True}) == (-80.0, -445.5)
    assert ct._group_z(stack, [chest, abdomen], {}) == (-80.0, -383.0)


def test_a_shifted_fit_over_several_parts_is_judged_on_the_summed_margins(monkeypatch: Any) -> None:
    params = load_params("CT", None)
    exam = SimpleNamespace(item_codes=["CT.UABD.ENH", "CT.PELVIS.ENH"])
    monkeypatch.setattr(ct, "_range_by_length", lambda *a, **k: None)  # one acquisition over two parts: no length

    def scorer(top: float, bottom: float) -> Any:
        d = {"required": ["diaphragm_dome", "pubic_symphysis"], "top_margin_mm": top, "bottom_margin_mm": bottom,
             "missing": ["pubic_symphysis"]}
        return lambda *a, **k: DimensionResult("过小", dict(d))

    monkeypatch.setattr(ct, "_range_by_scorer", scorer(67.0, -51.9))  # i9204 E00148: sum +15
    r = ct._range(exam, params, None, {})
    assert r.value == "正常" and r.details["total_margin_mm"] == 15.1 and "missing" not in r.details
    monkeypatch.setattr(ct, "_range_by_scorer", scorer(50.0, -90.0))  # sum -40: the scan is too short anyway
    assert ct._range(exam, params, None, {}).value == "过小"
    monkeypatch.setattr(ct, "_range_by_scorer", scorer(20.0, -40.0))  # not shifted: the scorer's reading stands
    assert ct._range(exam, params, None, {}).value == "过小"
