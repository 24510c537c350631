"""CT range and the patient's size (helper CTR4, 2026-11-24 early morning; worn held-out i9212, h9211):
which spine part one acquisition of a two-spine order scanned (lungs on its slices), a tall patient's
T-spine that the lungs show complete, the pubic symphysis' own overscan limit. Small hand-made inputs:
no corpus, no model files."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params

_SPACING = 3.5  # mm per pixel: a 64-px targeted spine FOV of 224 mm


def _slice(z: float, lung: bool) -> Any:
    """A 64² slice: outside air, a soft-tissue body, and two lateral lung sections when ``lung``."""
    img = np.full((64, 64), -1000.0, dtype=np.float32)
    yy, xx = np.mgrid[:64, :64]
    img[((yy - 32) / 26.0) ** 2 + ((xx - 32) / 30.0) ** 2 <= 1.0] = 40.0
    if lung:
        img[20:44, 12:24] = -850.0
        img[20:44, 40:52] = -850.0
    values = {"ImagePositionPatient": [0.0, 0.0, z], "PixelSpacing": [_SPACING, _SPACING],
              "RescaleSlope": 1, "RescaleIntercept": 0}
    return SimpleNamespace(pixel_array=img, get=lambda k, d=None, v=values: v.get(k, d))


def _group(lung_rows: list[bool]) -> list[Any]:
    """One series, top slice first (z 0, then 10 mm steps down), lung on the slices marked True."""
    datasets = [_slice(-10.0 * i, lung) for i, lung in enumerate(lung_rows)]
    return [SimpleNamespace(header=SimpleNamespace(n_instances=len(datasets), series_uid="1.2.3"), labels={},
                            datasets=lambda: datasets)]


def _params(**rule: Any) -> dict[str, Any]:
    params = load_params("CT", "CT-SPINE")
    if rule:
        params["range"] = {**params["range"], "spine_part_by_lungs": rule}
    return params


def test_a_thoracic_spine_shows_lung_on_most_slices() -> None:
    # a complete T-spine: apex and base a slice or two inside the ends (i9212 E00023)
    tspine = [False, True] + [True] * 26 + [True, False]
    assert ct._lung_slice_fraction(_group(tspine), {**_params()["range"]["lung_landmarks"], "open_fov": True}, 9) > 0.8
    assert ct._imaged_spine_part(_group(tspine), ["TSPINE", "LSPINE"], _params()) == "TSPINE"
    assert ct._imaged_spine_part(_group(tspine), ["CSPINE", "TSPINE"], _params()) == "TSPINE"


def test_a_lumbar_or_cervical_spine_shows_lung_only_at_one_end() -> None:
    lspine = [True, True, True] + [False] * 19  # lung bases in its top ~30 mm (h9211 E00033)
    cspine = [False] * 15 + [True, True, True]  # lung apices in its last ~30 mm (i9212 E00069)
    assert ct._imaged_spine_part(_group(lspine), ["TSPINE", "LSPINE"], _params()) == "LSPINE"
    assert ct._imaged_spine_part(_group(cspine), ["CSPINE", "TSPINE"], _params()) == "CSPINE"
    # no lung at all: not the thoracic spine
    assert ct._imaged_spine_part(_group([False] * 20), ["LSPINE", "TSPINE"], _params()) == "LSPINE"


def test_the_part_rule_is_data_and_narrow() -> None:
    tspine = [True] * 20
    assert _params()["range"].get("spine_part_by_lungs"), "ct.yaml range.spine_part_by_lungs"
    off = load_params("CT", "CT-SPINE")
    off["range"] = {k: v for k, v in off["range"].items() if k != "spine_part_by_lungs"}
    assert ct._imaged_spine_part(_group(tspine), ["TSPINE", "LSPINE"], off) is None
    # only two-spine orders with a thoracic part: a head + C-spine order is paired as before
    assert ct._imaged_spine_part(_group(tspine), ["HEAD", "CSPINE"], _params()) is None
    assert ct._imaged_spine_part(_group(tspine), ["TSPINE", "HEAD"], _params()) is None
    assert ct._imaged_spine_part(_group(tspine), ["CSPINE", "TSPINE", "LSPINE"], _params()) is None
    # the threshold is read from the rule
    half = [True] * 6 + [False] * 14
    assert ct._imaged_spine_part(_group(half), ["TSPINE", "LSPINE"], _params(thoracic_min_fraction=0.2)) == "TSPINE"
    assert ct._imaged_spine_part(_group(half), ["TSPINE", "LSPINE"], _params(thoracic_min_fraction=0.5)) == "LSPINE"


def _spine(monkeypatch: Any, length: float, lungs: dict[str, float | None], **range_change: Any) -> str:
    """The T-spine range by length with the lung reading stubbed (no lung verdict of its own)."""
    params = load_params("CT", "CT-SPINE")
    params["range"] = {**params["range"], **range_change}
    series = SimpleNamespace(header=SimpleNamespace(series_uid="1.2.3"), labels={})
    monkeypatch.setattr(ct, "_length_plan", lambda *a, **k: [("TSPINE", series, length)])
    monkeypatch.setattr(ct, "_load", lambda *a, **k: RuntimeError("no pixels in this test"))

    def lung_ends(exam: Any, s: Any, part: str, p: dict[str, Any], row: dict[str, Any]) -> Any:
        row["lung_margin_mm"] = dict(lungs)
        return None

    monkeypatch.setattr(ct, "_spine_lung_ends", lung_ends)
    result = ct._range_by_length(SimpleNamespace(item_codes=["CT.TSPINE.PLAIN"]), params, None, {},
                                 dict(params["range"]["length_mm"]))
    assert result is not None
    return str(result.value)


def test_a_tall_patients_thoracic_spine_with_both_lung_edges_inside_is_complete(monkeypatch: Any) -> None:
    # i9212 E00081: 350.3 mm against 345, lung apex and base both read 22.8 mm inside the scan
    assert _spine(monkeypatch, 350.3, {"top": 22.8, "bottom": 22.8}) == "正常"


def test_a_long_thoracic_spine_stays_too_large_without_that_evidence(monkeypatch: Any) -> None:
    assert _spine(monkeypatch, 350.3, {"top": None, "bottom": 22.8}) == "过大"  # one edge not read
    assert _spine(monkeypatch, 350.3, {"top": 22.8, "bottom": 4.0}) == "过大"  # an edge at the very end
    assert _spine(monkeypatch, 384.4, {"top": 22.8, "bottom": 22.8}) == "过大"  # far longer than any patient's
    assert _spine(monkeypatch, 350.3, {"top": 22.8, "bottom": 22.8}, length_long_lungs_clear_mm=0.0) == "过大"


def test_the_lumbar_spine_length_band_covers_a_tall_patient() -> None:
    lo, hi = load_params("CT", "CT-SPINE")["range"]["length_mm"]["LSPINE"]
    assert lo <= 240.4 <= hi  # i9212 E00081, height x1.095
    assert hi < 261.7  # the shortest extended L-spine of i9206-i9212


def test_the_pubic_symphysis_has_its_own_overscan_limit() -> None:
    r = load_params("CT", "CT-PELVIS")["range"]
    limit = float(r["landmark_overscan_mm"]["pubic_symphysis"])
    assert float(r["max_overscan_mm"]) < limit
    # complete pelvis read 49-50 mm past it (i9212 E00089, E00175); extended ones read 59-85
    assert 50.0 < limit < 59.0
    assert "lower_renal_pole" not in r["landmark_overscan_mm"]


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_fraction_bounds(value: float) -> None:
    rows = [bool(value)] * 12
    share = ct._lung_slice_fraction(_group(rows), {**_params()["range"]["lung_landmarks"], "open_fov": True}, 9)
    assert share == pytest.approx(value)


def test_a_part_keyed_overscan_limit_applies_to_its_parts_only() -> None:
    r = load_params("CT", "CT-NECK")["range"]
    over = float(r["max_overscan_mm"])
    neck = ct._landmark_overscan(r, "skull_base", ["NECK"], over)
    assert neck < over  # i9212 E00327: a neck extended 45 mm above the skull base read 37.5
    assert 19.0 < neck < 37.5  # complete necks read up to 18.9 mm above it
    assert ct._landmark_overscan(r, "skull_base", ["SINUS"], over) == over  # a sinus scan starts above it
    assert ct._landmark_overscan(r, "skull_base", ["NECK", "CHEST"], over) == neck
    assert ct._landmark_overscan(r, "lower_renal_pole", ["UABD"], over) == over
    assert ct._landmark_overscan({"landmark_overscan_mm": {"x": {"A": 10.0, "B": 20.0}}}, "x", ["B", "A"], 48.0) == 10.0


def _pelvis_slice(z: float, wing_hu: float | None, spine: bool = True) -> Any:
    """A 64² abdomen slice (6.5 mm pixels): a soft-tissue body, a midline vertebra, and two lateral blobs
    of ``wing_hu`` (iliac wings, or an enhanced kidney's HU) when given."""
    img = np.full((64, 64), -1000.0, dtype=np.float32)
    yy, xx = np.mgrid[:64, :64]
    img[((yy - 32) / 22.0) ** 2 + ((xx - 32) / 28.0) ** 2 <= 1.0] = 40.0
    if spine:
        img[36:42, 29:35] = 600.0
    if wing_hu is not None:
        img[30:40, 10:18] = wing_hu
        img[30:40, 46:54] = wing_hu
    values = {"ImagePositionPatient": [0.0, 0.0, z], "PixelSpacing": [6.5, 6.5], "RescaleSlope": 1, "RescaleIntercept": 0}
    return SimpleNamespace(pixel_array=img, get=lambda k, d=None, v=values: v.get(k, d))


def _abdomen(wing_slices: int, wing_hu: float = 600.0, n: int = 20) -> list[Any]:
    """n slices 10 mm apart from z 0 down; the lowest ``wing_slices`` show the iliac wings."""
    datasets = [_pelvis_slice(-10.0 * i, wing_hu if i >= n - wing_slices else None) for i in range(n)]
    return [SimpleNamespace(header=SimpleNamespace(n_instances=n, series_uid="1.2.4"), labels={}, datasets=lambda: datasets)]


def _crest_rule(**change: Any) -> dict[str, Any]:
    return {**load_params("CT", "CT-UABD")["range"]["iliac_crest_pixels"], **change}


def test_the_iliac_crest_places_the_lower_renal_pole() -> None:
    cp = _crest_rule()
    offset = float(cp["landmarks"]["lower_renal_pole"])
    reading = ct._crest_margin(_abdomen(2), cp, offset)
    assert reading is not None
    # wings on z -190 and -180, none on -170: the crest midway (-175), 15 mm above the bottom slice
    assert reading[0] == pytest.approx(15.0 + offset)
    assert reading[1] == pytest.approx(10.0)


def test_no_wing_on_the_bottom_slice_is_a_cut_only_where_configured() -> None:
    assert ct._crest_margin(_abdomen(0), _crest_rule(no_crest_is_cut=True), 7.0)[0] == 0.0
    assert ct._crest_margin(_abdomen(0), _crest_rule(no_crest_is_cut=False), 7.0) is None
    # the midline vertebra alone and an enhanced kidney (160-170 HU) are not wings
    assert ct._wing_area(_pelvis_slice(0.0, None).pixel_array, 6.5, _crest_rule()) == 0.0
    assert ct._wing_area(_pelvis_slice(0.0, 165.0).pixel_array, 6.5, _crest_rule()) == 0.0
    assert ct._wing_area(_pelvis_slice(0.0, 600.0).pixel_array, 6.5, _crest_rule()) >= float(_crest_rule()["min_area_mm2"])


def test_a_crest_above_the_searched_reach_gives_no_reading() -> None:
    # wings on the lowest 15 slices (140 mm): the crest is higher than reach_mm above the bottom
    assert ct._crest_margin(_abdomen(15), _crest_rule(reach_mm=120.0), 7.0) is None
    assert ct._crest_margin(_abdomen(15), _crest_rule(reach_mm=200.0), 7.0) is not None
