"""CT image-QC measures on small synthetic phantoms (no corpus, no model files needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.types import (
    DIMENSIONS,
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    EvidenceSink,
    ExamImages,
    SeriesImages,
)

ROOT = Path(__file__).resolve().parents[1]


def phantom(n: int = 6, size: int = 128, px: float = 3.0, shift_px: tuple[int, int] = (0, 0), noise: float = 8.0,
            blur_px: float = 0.0, seed: int = 0, rotate_deg: float = 0.0) -> np.ndarray:
    """An ellipse of soft tissue (40 HU) in air, shifted by (rows, cols), rotated, with Gaussian noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = (size - 1) / 2 + shift_px[0], (size - 1) / 2 + shift_px[1]
    t = np.radians(rotate_deg)
    u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
    v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    body = (v / (size * 0.28)) ** 2 + (u / (size * 0.38)) ** 2 <= 1.0
    img = np.where(body, 40.0, -1000.0)
    vol = np.stack([img] * n).astype(np.float32)
    if blur_px:
        vol = np.stack([ndimage.gaussian_filter(v, blur_px) for v in vol])
    return vol + rng.normal(0, noise, vol.shape).astype(np.float32)


KERNEL_NAMES = {"soft": "B30f", "lung": "B70f", "bone": "B75s", "head": "H40s"}


class FakeVolume:
    def __init__(self, hu: np.ndarray, px: float, z: list[float]) -> None:
        self.image = sitk.GetImageFromArray(hu)
        self.image.SetSpacing((px, px, abs(z[1] - z[0]) if len(z) > 1 else 5.0))
        self.z_mm = z
        self.slice_spacing_mm = abs(z[1] - z[0]) if len(z) > 1 else 5.0


def series(uid: str, hu: np.ndarray | None = None, *, px: float = 3.0, z: list[float] | None = None, kernel: str = "soft",
           thickness: float = 5.0, window: tuple[float, float] | None = (40.0, 400.0), role: str = "original",
           plane: str = "axial", derived: str | None = None, ctdivol: float | None = 10.0, region: str = "chest",
           comments: str | None = None) -> SeriesImages:
    n = hu.shape[0] if hu is not None else 10
    zz = z if z is not None else [-5.0 * i for i in range(n)]
    header = SimpleNamespace(series_uid=uid, modality="CT", slice_thickness=thickness, n_instances=n, plane=plane,
                             z_min=min(zz), z_max=max(zz), window_center=window[0] if window else None,
                             window_width=window[1] if window else None, kernel=KERNEL_NAMES.get(kernel, "B30f"),
                             recon_diameter=None)
    label = SimpleNamespace(series_uid=uid, role=role, plane=plane, derived_type=derived, kernel_class=kernel,
                            region=region, evidence=[])
    ds: dict[str, Any] = {}
    if ctdivol is not None:
        ds["CTDIvol"] = ctdivol
    if comments is not None:
        ds["ImageComments"] = comments

    def volume() -> FakeVolume:
        if hu is None:
            raise ValueError("no pixels")
        return FakeVolume(hu, px, zz)

    return SeriesImages(header=header, label=label, datasets=lambda: [ds], volume=volume, radiograph=lambda: None)


def exam(*items: SeriesImages, code: str | None = "CT-CHEST-PLAIN", item_codes: list[str] | None = None) -> ExamImages:
    return ExamImages(study_uid="1.2", modality="CT", standard_code=code, item_codes=item_codes or ["CT.CHEST.PLAIN"],
                      series=list(items))


class RecordingSink(EvidenceSink):
    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, image: Any, *, name: str, box: list[float] | None = None,
            window: tuple[float, float] | None = None, mask: Any = None) -> str | None:
        self.names.append(name)
        return f"mem://{name}"


class LinearScorer:
    """Scores that grow toward the feet by one unit per 8.35 mm: score = s0 + (z0 - z) / 8.35."""

    def __init__(self, s_at_z0: float) -> None:
        self.s0 = s_at_z0

    def score(self, image: sitk.Image) -> Any:
        n = image.GetSize()[2]
        sz = image.GetSpacing()[2]
        z = [-sz * i for i in range(n)]
        return SimpleNamespace(scores=[self.s0 + (0 - zi) / 8.35 for zi in z], z_mm=z, landmarks={})


@pytest.fixture
def chest_params() -> dict[str, Any]:
    return load_params("CT", "CT-CHEST-PLAIN")


# ---------------------------------------------------------------- parameters


def test_every_ct_and_mr_standard_has_parameters() -> None:
    codes = {p.stem for p in (ROOT / "qc_rules" / "standards").glob("*.yaml")}
    ct_codes = {c for c in codes if c.startswith("CT-")}
    mr_codes = {c for c in codes if c.startswith("MR-")}
    ct_items = yaml.safe_load((ROOT / "qc_rules" / "image_qc" / "ct.yaml").read_text(encoding="utf-8"))["items"]
    mr_items = yaml.safe_load((ROOT / "qc_rules" / "image_qc" / "mr.yaml").read_text(encoding="utf-8"))["items"]
    assert ct_codes and ct_codes <= set(ct_items)
    assert mr_codes and mr_codes <= set(mr_items)


def test_load_params_overrides_and_unknown_code() -> None:
    chest = load_params("CT", "CT-CHEST-PLAIN")
    assert chest["reconstruction"]["kernels_required"] == ["lung", "soft"]
    assert chest["reconstruction"]["max_thickness_mm"] == 5.5  # default kept beside the override
    assert not chest["_notes"]
    unknown = load_params("CT", "CT-NOPE")
    assert unknown["reconstruction"]["kernels_required"] == []
    assert unknown["_notes"] and "CT-NOPE" in unknown["_notes"][0]


# ---------------------------------------------------------------- centring


@pytest.mark.parametrize(("shift", "value"), [((0, 15), "偏右"), ((0, -15), "偏左"), ((-12, 0), "偏上"), ((12, 0), "偏下")])
def test_centring_direction_and_offset(chest_params: dict[str, Any], shift: tuple[int, int], value: str) -> None:
    sink = RecordingSink()
    out = ct.measure_ct(exam(series("s1", phantom(shift_px=shift))), chest_params, sink)
    r = out["centring"]
    assert r.value == value
    expected = 3.0 * max(abs(shift[0]), abs(shift[1]))
    assert r.details["offset_mm"] == pytest.approx(expected, abs=3.0)
    f = r.findings[0]
    assert f.check_id == "IQC-CENTRING" and f.points == 0
    assert "mm" in f.reason_zh and "off-centre" in f.reason_en
    assert f.evidence[0].image == "mem://centring"


def test_centred_body_is_normal(chest_params: dict[str, Any]) -> None:
    r = ct.measure_ct(exam(series("s1", phantom(shift_px=(1, -2)))), chest_params, EvidenceSink())["centring"]
    assert r.value == "正常" and not r.findings


# ---------------------------------------------------------------- positioning


@pytest.mark.parametrize("degrees", [10.0, -12.0])
def test_rotation_on_the_table(chest_params: dict[str, Any], degrees: float) -> None:
    r = ct.measure_ct(exam(series("s1", phantom(rotate_deg=degrees))), chest_params, EvidenceSink())["positioning"]
    assert r.value == "不标准"
    assert abs(r.details["rotation_deg"]) == pytest.approx(abs(degrees), abs=2.0)
    assert r.findings[0].check_id == "IQC-POSITION" and "rotated" in r.findings[0].reason_en


def test_straight_patient_is_standard(chest_params: dict[str, Any]) -> None:
    r = ct.measure_ct(exam(series("s1", phantom(rotate_deg=1.0))), chest_params, EvidenceSink())["positioning"]
    assert r.value == "标准" and not r.findings


# ---------------------------------------------------------------- noise and sharpness


def test_noise_limit(chest_params: dict[str, Any]) -> None:
    low = ct.measure_ct(exam(series("s1", phantom(noise=6.0))), chest_params, EvidenceSink())["noise"]
    high = ct.measure_ct(exam(series("s1", phantom(noise=45.0))), chest_params, EvidenceSink())["noise"]
    assert low.value == "正常"
    assert high.value == "异常" and high.findings[0].check_id == "IQC-NOISE"
    assert high.details["sd_hu"] > low.details["sd_hu"] * 3


def test_blur_lowers_sharpness(chest_params: dict[str, Any]) -> None:
    sharp = ct.measure_ct(exam(series("s1", phantom(noise=3.0))), chest_params, EvidenceSink())["sharpness"]
    blurred = ct.measure_ct(exam(series("s1", phantom(noise=3.0, blur_px=3.0))), chest_params, EvidenceSink())["sharpness"]
    assert sharp.value == "正常"
    assert blurred.value == "异常" and blurred.findings[0].check_id == "IQC-SHARPNESS"


# ---------------------------------------------------------------- reconstruction, window, dose


def test_reconstruction_needs_lung_kernel_thin_and_standard_thickness(chest_params: dict[str, Any]) -> None:
    good = [series("soft", phantom(), kernel="soft", thickness=5.0),
            series("lung", phantom(), kernel="lung", thickness=1.0, window=(-600, 1500))]
    assert ct.measure_ct(exam(*good), chest_params, EvidenceSink())["reconstruction"].value == "正常"
    no_lung = ct.measure_ct(exam(series("soft", phantom(), thickness=5.0), series("thin", phantom(), thickness=1.0)),
                            chest_params, EvidenceSink())["reconstruction"]
    assert no_lung.value == "异常" and any("lung" in f.reason_en for f in no_lung.findings)
    thick = ct.measure_ct(exam(series("soft", phantom(), thickness=10.0), good[1]), chest_params, EvidenceSink())["reconstruction"]
    assert thick.value == "异常" and any("10 mm" in f.reason_en for f in thick.findings)


def test_kernel_class_comes_from_the_kernel_name(chest_params: dict[str, Any]) -> None:
    # a lung series reconstructed with a soft kernel (the label may still say lung from its window)
    soft_named = series("lung", phantom(), kernel="lung", thickness=1.0, window=(-600, 1500))
    soft_named.header.kernel = "B30f"
    r = ct.measure_ct(exam(series("soft", phantom()), soft_named), chest_params, EvidenceSink())["reconstruction"]
    assert r.value == "异常" and "lung" not in r.details["kernels"]


def test_window_presets(chest_params: dict[str, Any]) -> None:
    lung_ok = series("lung", phantom(), kernel="lung", thickness=1.0, window=(-600, 1500))
    assert ct.measure_ct(exam(series("soft", phantom()), lung_ok), chest_params, EvidenceSink())["window"].value == "正常"
    wrong = series("lung", phantom(), kernel="lung", thickness=1.0, window=(300, 200))
    r = ct.measure_ct(exam(series("soft", phantom()), wrong), chest_params, EvidenceSink())["window"]
    assert r.value == "异常" and r.findings[0].check_id == "IQC-WINDOW" and "W200/L300" in r.findings[0].reason_en
    missing = series("lung", phantom(), kernel="lung", thickness=1.0, window=None)
    assert ct.measure_ct(exam(series("soft", phantom()), missing), chest_params, EvidenceSink())["window"].value == "异常"


def test_dose_reference_and_not_recorded(chest_params: dict[str, Any]) -> None:
    assert ct.measure_ct(exam(series("s", phantom(), ctdivol=10.0)), chest_params, EvidenceSink())["dose"].value == "正常"
    high = ct.measure_ct(exam(series("s", phantom(), ctdivol=40.0)), chest_params, EvidenceSink())["dose"]
    assert high.value == "异常" and "40" in high.findings[0].reason_en
    none = ct.measure_ct(exam(series("s", phantom(), ctdivol=None)), chest_params, EvidenceSink())["dose"]
    assert none.value == "异常" and none.details["not_recorded"] is True
    report = series("d", None, role="dose_report", plane="", ctdivol=None, comments="Total DLP=300; acq1 chest/native: CTDIvol=9.5 mGy")
    via_report = ct.measure_ct(exam(series("s", phantom(), ctdivol=None), report), chest_params, EvidenceSink())["dose"]
    assert via_report.value == "正常" and via_report.details["acquisitions"][0]["ctdivol_mgy"] == 9.5


def test_dose_regions_ignore_overscan_into_the_next_region(chest_params: dict[str, Any]) -> None:
    """A chest scan running a few units past the lung bases is a chest scan (reference 15 mGy, not the
    abdomen's 25); a chest + abdomen scan covers both; a short liver scan inside the abdomen is the abdomen's."""
    scores = chest_params["landmark_scores"]
    chest_overscan = ct._regions_of(chest_params, scores["lung_apex"] - 3.0, scores["lung_base"] + 5.0)
    assert chest_overscan == ["chest"]
    both = ct._regions_of(chest_params, scores["lung_apex"] - 3.0, scores["pubic_symphysis"] + 2.0)
    assert both == ["chest", "abdomen", "pelvis"]
    assert ct._regions_of(chest_params, 68.0, 78.0) == ["abdomen"]
    # without the fraction rule the over-scan would count (the old reading)
    loose = {**chest_params, "range": {**chest_params["range"], "region_min_fraction": 0.0}}
    assert ct._regions_of(loose, scores["lung_apex"] - 3.0, scores["lung_base"] + 5.0) == ["chest", "abdomen"]


def test_dose_reference_follows_the_ordered_item_over_an_overscan(chest_params: dict[str, Any]) -> None:
    """A chest order scanned 11 units up into the neck keeps the chest's reference (the neck's is higher)."""
    scores = chest_params["landmark_scores"]
    chest_order = exam(series("s", phantom()), item_codes=["CT.CHEST.PLAIN"])
    assert ct._item_regions(chest_order, chest_params) == ["chest"]
    both = exam(series("s", phantom()), item_codes=["CT.CHEST.PLAIN", "CT.UABD.PLAIN"])
    assert ct._item_regions(both, chest_params) == ["chest", "abdomen"]
    s = series("s", phantom(), ctdivol=26.4)
    cache: dict[str, Any] = {"item_regions": ["chest"]}
    ct._note_regions(chest_params, [s], scores["lung_apex"] - 11.0, scores["lung_base"] + 2.0, cache)
    assert cache["acq_regions"][ct.series_uid(s)] == ["chest"]
    dose = ct._dose(exam(s), chest_params, EvidenceSink(), cache)
    assert dose.value == "异常" and dose.details["acquisitions"][0]["reference_mgy"] == 15.0
    # no ordered region covered: the scan's own regions stand
    cache = {"item_regions": ["pelvis"]}
    ct._note_regions(chest_params, [s], scores["lung_apex"] - 11.0, scores["lung_base"] + 2.0, cache)
    assert cache["acq_regions"][ct.series_uid(s)] == ["neck", "chest"]


# ---------------------------------------------------------------- range (scorer replaced by a linear one)


def _chest_scan(monkeypatch: pytest.MonkeyPatch, top_mm_above_apex: float, bottom_mm_below_base: float,
                params: dict[str, Any], item_codes: list[str] | None = None) -> Any:
    scores = params["landmark_scores"]
    s_top = scores["lung_apex"] - top_mm_above_apex / 8.35
    s_bottom = scores["lung_base"] + bottom_mm_below_base / 8.35
    n = int(round((s_bottom - s_top) * 8.35 / 10.0)) + 1
    monkeypatch.setattr(ct, "_SCORER", LinearScorer(s_top))
    hu = phantom(n=n, size=48)
    z = [-10.0 * i for i in range(n)]
    return ct.measure_ct(exam(series("s", hu, z=z), item_codes=item_codes), params, RecordingSink())["range"]


def test_range_normal_small_and_large(monkeypatch: pytest.MonkeyPatch, chest_params: dict[str, Any]) -> None:
    assert _chest_scan(monkeypatch, 15, 15, chest_params).value == "正常"
    small = _chest_scan(monkeypatch, 15, -40, chest_params)
    assert small.value == "过小" and small.details["missing"] == ["lung_base"]
    f = small.findings[0]
    assert f.check_id == "IQC-RANGE" and "肺底" in f.reason_zh and "lung base" in f.reason_en
    assert f.evidence[0].measured == pytest.approx(-40, abs=12)
    large = _chest_scan(monkeypatch, 100, 10, chest_params)
    assert large.value == "过大" and large.details["excess"][0]["end"] == "top"


def test_excess_not_judged_next_to_an_unmeasured_part(monkeypatch: pytest.MonkeyPatch,
                                                       chest_params: dict[str, Any]) -> None:
    # chest + thoracic spine: the scan may rightly run beyond the lungs toward the spine's levels
    r = _chest_scan(monkeypatch, 100, 10, chest_params, item_codes=["CT.CHEST.PLAIN", "CT.TSPINE.PLAIN"])
    assert r.value == "正常" and r.details["excess_not_judged"] == ["CT.TSPINE.PLAIN"]


def test_range_without_scorer_cannot_be_assessed(monkeypatch: pytest.MonkeyPatch, chest_params: dict[str, Any]) -> None:
    monkeypatch.setattr(ct, "_SCORER", False)
    r = ct.measure_ct(exam(series("s", phantom())), chest_params, EvidenceSink())["range"]
    assert r.value == NOT_ASSESSABLE and r.details["reason_code"] == "no_body_region_model"


# ---------------------------------------------------------------- contract


def test_result_contract_and_bad_input(chest_params: dict[str, Any]) -> None:
    out = ct.measure_ct(exam(series("s", None)), chest_params, EvidenceSink())
    assert "artifact" not in out
    assert set(out) == set(DIMENSIONS) - {"artifact"}
    assert out["positioning"].value == NOT_ASSESSABLE and out["sequences"].value == NOT_APPLICABLE
    assert out["centring"].value == NOT_ASSESSABLE and out["centring"].reason
    assert out["noise"].value == NOT_ASSESSABLE
    empty = ct.measure_ct(exam(code=None, item_codes=[]), load_params("CT", None), EvidenceSink())
    assert all(r.value in (NOT_ASSESSABLE, NOT_APPLICABLE, "异常") for r in empty.values())
    assert empty["range"].value == NOT_ASSESSABLE


# ---------------------------------------------------------------- range: head vertex judged on the top slice


def _head_scan(monkeypatch: pytest.MonkeyPatch, scorer_top_mm_above_vertex: float, cap: bool) -> Any:
    """A head stack from above the foramen magnum; the scorer says the top is ``scorer_top_mm_above_vertex``
    above the vertex, the pixels say whether the top slice is a small cap (``cap``) or a full section."""
    params = load_params("CT", "CT-HEAD-PLAIN")
    # a single-part head is judged by its length (ct.yaml range.length_mm HEAD); the scorer path, which
    # head + neck or head + chest exams still take, is tested here without that entry
    params["range"]["length_mm"] = {k: v for k, v in params["range"]["length_mm"].items() if k != "HEAD"}
    scores = params["landmark_scores"]
    s_top = scores["vertex"] - scorer_top_mm_above_vertex / 8.35
    s_bottom = scores["foramen_magnum"] + 10 / 8.35
    n = int(round((s_bottom - s_top) * 8.35 / 10.0)) + 1
    monkeypatch.setattr(ct, "_SCORER", LinearScorer(s_top))
    hu = phantom(n=n, size=48)
    if cap:
        hu[0] = -1000.0
        hu[0, 20:28, 20:28] = 40.0
    z = [-10.0 * i for i in range(n)]
    s = series("h", hu, z=z, kernel="head", region="head")
    return ct.measure_ct(exam(s, code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["range"]


def test_head_vertex_cut_seen_on_top_slice_though_scorer_places_it_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    r = _head_scan(monkeypatch, 10, cap=False)
    assert r.value == "过小" and r.details["missing"] == ["vertex"]
    assert r.details["top_slice_area_ratio"] > 0.9
    assert "颅顶" in r.findings[0].reason_zh


def test_head_vertex_cap_overrules_a_misplaced_scorer_vertex(monkeypatch: pytest.MonkeyPatch) -> None:
    # the scorer puts the vertex 80 mm above the stack (beyond its 45 mm tolerance); the top slice is a cap
    r = _head_scan(monkeypatch, -80, cap=True)
    assert r.value == "正常"
    assert r.details["top_slice_area_ratio"] < 0.35


# ---------------------------------------------------------------- centring on a targeted (spine) FOV


def spine_series(fov_centre_xy: tuple[float, float], *, body_shift_px: tuple[int, int] = (-10, 0)) -> SeriesImages:
    """A spine-like series: 128 px of 1.5 mm whose FOV centre lies at ``fov_centre_xy`` (patient mm).

    The body sits anterior in the image (``body_shift_px``), as a truncated body around a spine FOV does."""
    s = series("sp", phantom(px=1.5, shift_px=body_shift_px), px=1.5, region="abdomen")
    make = s.volume

    def volume() -> FakeVolume:
        v = make()
        half = (128 - 1) / 2.0 * 1.5
        v.image.SetOrigin((fov_centre_xy[0] - half, fov_centre_xy[1] - half, 0.0))
        return v

    return SeriesImages(header=s.header, label=s.label, datasets=s.datasets, volume=volume, radiograph=lambda: None)


def test_spine_centring_uses_the_scanner_axis_not_the_image_centre() -> None:
    params = load_params("CT", "CT-SPINE")
    expected_y = params["centring"]["targeted_centre_mm"]["LSPINE"][1]
    codes = ["CT.LSPINE.PLAIN"]
    # centred patient: the FOV centre (the vertebral bodies) where a centred patient's lie; the body's
    # contour centroid is 15 mm anterior of the image centre, which the image-centre rule would call off
    r = ct.measure_ct(exam(spine_series((2.0, expected_y + 5.0)), code="CT-SPINE", item_codes=codes), params,
                      EvidenceSink())["centring"]
    assert r.value == "正常", r.details
    assert r.details["reference"] == "isocentre" and r.details["offset_mm"] == pytest.approx(5.4, abs=0.5)
    # patient lowered 40 mm (posterior): the whole targeted FOV follows the spine, the image looks the same
    down = ct.measure_ct(exam(spine_series((0.0, expected_y + 40.0)), code="CT-SPINE", item_codes=codes), params,
                         RecordingSink())["centring"]
    assert down.value == "偏下" and down.details["offset_y_mm"] == pytest.approx(40.0, abs=0.5)
    assert "40 mm" in down.findings[0].reason_zh
    # moved to the image right by 35 mm
    right = ct.measure_ct(exam(spine_series((35.0, expected_y)), code="CT-SPINE", item_codes=codes), params,
                          EvidenceSink())["centring"]
    assert right.value == "偏右" and right.details["offset_x_mm"] == pytest.approx(35.0, abs=0.5)


def test_chest_centring_keeps_the_image_centre_reference(chest_params: dict[str, Any]) -> None:
    # a chest FOV is not targeted: its origin (anywhere in patient space) does not matter
    s = spine_series((80.0, 90.0), body_shift_px=(0, 0))
    r = ct.measure_ct(exam(s), chest_params, EvidenceSink())["centring"]
    assert r.value == "正常" and r.details["reference"] == "image_centre"


# ---------------------------------------------------------------- noise: every series, fallback kernels, head items


def structured(noise: float, seed: int = 0, vary: bool = True) -> np.ndarray:
    """The phantom with a fat/muscle pattern of 1-pixel cells inside: anatomy at a coarse pixel pitch,
    which a high-pass noise estimate reads as noise. ``vary``: the pattern differs from slice to slice
    (anatomy that changes along z, which the slice difference does not cancel either)."""
    vol = phantom(noise=noise, seed=seed)
    rng = np.random.default_rng(seed + 100)
    yy, xx = np.mgrid[0:128, 0:128]
    checker = np.where((yy + xx) % 2 == 0, -60.0, 60.0).astype(np.float32)
    inside = vol > -500
    out = vol.copy()
    for k in range(vol.shape[0]):
        pattern = np.where(rng.random((128, 128)) < 0.5, -60.0, 60.0).astype(np.float32) if vary else checker
        out[k] = np.where(inside[k], vol[k] + pattern, vol[k])
    return out


def test_noise_lowest_reading_series_decides(chest_params: dict[str, Any]) -> None:
    clean_fine = series("fine", phantom(noise=6.0, seed=1), thickness=5.0)
    coarse = series("coarse", structured(6.0, seed=2), thickness=5.0)
    r = ct.measure_ct(exam(coarse, clean_fine), chest_params, EvidenceSink())["noise"]
    assert r.value == "正常", r.details
    measured = {m["series_uid"]: m["sd_hu"] for m in r.details["series_measured"]}
    assert measured["coarse"] > 2 * measured["fine"]  # the structured series alone would have read 异常
    assert r.details["series_uid"] == "fine"
    # excess noise on every series of the exam is still found
    noisy = ct.measure_ct(exam(series("a", structured(45.0, seed=3)), series("b", phantom(noise=45.0, seed=4))),
                          chest_params, RecordingSink())["noise"]
    assert noisy.value == "异常" and noisy.findings[0].check_id == "IQC-NOISE"


def test_noise_on_a_bone_only_exam_uses_the_bone_limit() -> None:
    params = load_params("CT", None)  # a knee: no standard item, default limits
    bone_limit = params["noise"]["sd_limit_hu"]["bone"]
    ok = ct.measure_ct(exam(series("k", phantom(noise=20.0), kernel="bone", thickness=5.0, ctdivol=None), code=None,
                            item_codes=["CT.KNEE.PLAIN"]), params, EvidenceSink())["noise"]
    assert ok.value == "正常" and ok.details["kernel_class"] == "bone" and ok.details["limit_hu"] == bone_limit
    bad = ct.measure_ct(exam(series("k", phantom(noise=60.0), kernel="bone", thickness=5.0, ctdivol=None), code=None,
                             item_codes=["CT.KNEE.PLAIN"]), params, RecordingSink())["noise"]
    assert bad.value == "异常" and "bone" in bad.findings[0].reason_en and "骨" in bad.findings[0].reason_zh
    # without a fallback kernel the dimension cannot be assessed (nothing is guessed)
    no_fallback = {**params, "noise": {**params["noise"], "fallback_kernels": []}}
    none = ct.measure_ct(exam(series("k", phantom(noise=20.0), kernel="bone"), code=None, item_codes=["CT.KNEE.PLAIN"]),
                         no_fallback, EvidenceSink())["noise"]
    assert none.value == NOT_ASSESSABLE


def test_extreme_noise_on_a_bone_series_reads_excess_not_unassessable() -> None:
    # SD 400 HU throws most tissue pixels outside -300..300 HU: the raw-pixel mask erodes to nothing,
    # and before the smoothed fallback the noisiest series read 无法评估 (held-out 9225 E00697)
    params = load_params("CT", None)
    vol = phantom(noise=400.0, seed=3)
    raw_mask = ct._homogeneous(np.asarray(vol[0], dtype=float))
    assert raw_mask.sum() < 50
    got = ct._series_noise(ct._Stack(series("k", vol, kernel="bone", thickness=1.0)), 50.0, pairs=0)
    assert got is not None and got[0] == pytest.approx(400.0, rel=0.2)
    r = ct.measure_ct(exam(series("k", vol, kernel="bone", thickness=1.0, ctdivol=None), code=None,
                           item_codes=["CT.KNEE.PLAIN"]), params, RecordingSink())["noise"]
    assert r.value == "异常" and r.details["sd_hu"] > r.details["limit_hu"]
    # a clean series still reads on the raw-pixel mask (the fallback changes no existing reading)
    clean = phantom(noise=20.0, seed=3)
    assert ct._homogeneous(np.asarray(clean[0], dtype=float)).sum() >= 50


def test_head_item_reads_a_soft_named_head_series_against_the_brain_limit() -> None:
    params = load_params("CT", "CT-HEAD-PLAIN")
    head_limit = params["noise"]["sd_limit_hu"]["head"]
    # GE STANDARD (soft name) on the head: 9 HU is fine for a body soft kernel, too much for brain
    s = series("h", phantom(noise=9.0), kernel="soft", region="head", ctdivol=None)
    r = ct.measure_ct(exam(s, code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["noise"]
    assert r.value == "异常" and r.details["kernel_class"] == "head" and r.details["limit_hu"] == head_limit
    chest = ct.measure_ct(exam(series("c", phantom(noise=9.0), kernel="soft", region="chest")), load_params("CT", "CT-CHEST-PLAIN"),
                          EvidenceSink())["noise"]
    assert chest.value == "正常"


def test_noise_reads_the_quieter_slices(chest_params: dict[str, Any]) -> None:
    # 8 slices, 3 of them with coarse-grid anatomy: the 25th percentile of the slices reads the noise
    clean = phantom(n=8, noise=6.0, seed=5)
    busy = structured(6.0, seed=6)
    vol = np.concatenate([clean[:5], busy[:3]])
    stack = ct._Stack(series("q", vol))
    low = ct._series_noise(stack, 25.0, pairs=0)  # the in-slice estimate alone
    high = ct._series_noise(stack, 100.0, pairs=0)
    assert low is not None and high is not None
    assert low[0] == pytest.approx(6.0, rel=0.25)
    assert high[0] > 2 * low[0]
    assert high[1] >= 5  # the noisiest slice (evidence picture) is a busy one
    assert chest_params["noise"]["slice_quantile"] == 25


# ---------------------------------------------------------------- spine range by scan length


@pytest.mark.parametrize(("length", "value"), [(140.0, "过小"), (210.0, "正常"), (280.0, "过大")])
def test_spine_range_from_the_scan_length(length: float, value: str) -> None:
    params = load_params("CT", "CT-SPINE")
    lo, hi = params["range"]["length_mm"]["LSPINE"]
    n = 15
    z = list(np.linspace(0.0, -length, n))
    s = series("ls", phantom(n=n), z=z, kernel="bone", thickness=1.0, region="abdomen")
    r = ct.measure_ct(exam(s, code="CT-SPINE", item_codes=["CT.LSPINE.PLAIN"]), params, RecordingSink())["range"]
    assert r.value == value, r.details
    assert r.details["method"] == "scan_length" and r.details["length_mm"] == pytest.approx(length, abs=0.5)
    assert r.details["expected_mm"] == [lo, hi]
    if value != "正常":
        f = r.findings[0]
        assert f.check_id == "IQC-RANGE" and f.value == value
        assert "T12" in f.reason_zh and f"{length:.0f} mm" in f.reason_en
        assert f.evidence[0].measured == pytest.approx(length, abs=0.5)


def test_spine_of_several_parts_is_still_not_assessed() -> None:
    params = load_params("CT", "CT-SPINE")
    s = series("ts", phantom(n=10), z=list(np.linspace(0.0, -400.0, 10)), kernel="bone", thickness=1.0)
    r = ct.measure_ct(exam(s, code="CT-SPINE", item_codes=["CT.TSPINE.PLAIN", "CT.LSPINE.PLAIN"]), params,
                      EvidenceSink())["range"]
    assert r.value == NOT_ASSESSABLE and r.details["reason_code"] == "range_not_measurable"


def test_noise_decodes_only_the_slices_it_reads() -> None:
    from radqc.dicom.factory import ct_series_datasets
    from radqc.pipelines.image_qc.measure_common import pick_slices

    datasets = ct_series_datasets(30, size=32, spacing_mm=2.5, seed=1, series_number=2)
    s = series("thin")

    def no_volume() -> FakeVolume:
        raise AssertionError("the whole series must not be loaded for noise")

    thin = SeriesImages(header=s.header, label=s.label, datasets=lambda: datasets, volume=no_volume,
                        radiograph=lambda: None)
    stack = ct._noise_stack(thin, {})
    assert isinstance(stack, ct._Stack)
    single = pick_slices(30, 8)
    assert stack.source_index == sorted(set(single) | {i + 1 for i in single})  # each with its neighbour
    assert stack.hu.shape == (16, 32, 32)
    assert ct._adjacent_pairs(stack) == []  # 5 mm slices every 2.5 mm overlap: no pair
    stack.thickness = 2.5
    assert len(ct._adjacent_pairs(stack)) == 8  # the 8 read slices with their neighbours, nothing between
    # a stack another measure already loaded is reused as it is
    cache: dict[str, Any] = {}
    full = ct._load(series("v", phantom()), cache, need_volume=False)
    assert ct._noise_stack(series("v", phantom()), cache) is full


def test_stack_slices_map_to_the_series_instance_order() -> None:
    """Evidence ``instance_index`` is the index in sort_datasets order (the viewer's stack), while
    the volume runs along +z: a CT measure's slice k must name the instance it was read from."""
    from radqc.dicom.factory import ct_series_datasets
    from radqc.pipelines.image_qc.exam import series_images

    datasets = ct_series_datasets(5, size=16, spacing_mm=3.0, seed=3)
    label = SimpleNamespace(modality="CT")
    header = SimpleNamespace(modality="CT", series_instance_uid=datasets[0].SeriesInstanceUID)
    s = series_images(header, label, lambda: list(reversed(datasets)))
    ordered = s.datasets()
    stack = ct._Stack(s)
    assert stack.source_index is not None and sorted(stack.source_index) == list(range(5))
    for k in range(5):
        ds = ordered[stack.instance_index(k)]
        expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.allclose(np.asarray(stack.hu[k]), expected)


# ---------------------------------------------------------------- range by length: knee, parts in separate acquisitions


class FlatScorer:
    """A score profile with no slope (a short head, a small FOV): the scorer cannot position the scan."""

    def score(self, image: sitk.Image) -> Any:
        n = image.GetSize()[2]
        sz = image.GetSpacing()[2]
        return SimpleNamespace(scores=[20.0] * n, z_mm=[-sz * i for i in range(n)], landmarks={})


def _length_series(uid: str, top: float, length: float, *, n: int = 12, kernel: str = "bone", region: str = "chest",
                   hu: np.ndarray | None = None) -> SeriesImages:
    z = list(np.linspace(top, top - length, n))
    return series(uid, phantom(n=n, size=48) if hu is None else hu, z=z, kernel=kernel, thickness=1.0, region=region)


@pytest.mark.parametrize(("length", "value"), [(100.0, "过小"), (160.0, "正常"), (230.0, "过大")])
def test_knee_range_from_the_scan_length(length: float, value: str) -> None:
    # a knee has no item standard and no body-region landmark: its scan length against a knee's span
    params = load_params("CT", None)
    lo, hi = params["range"]["length_mm"]["KNEE"]
    assert lo < 160.0 < hi
    r = ct.measure_ct(exam(_length_series("k", 0.0, length), code=None, item_codes=["CT.KNEE.PLAIN"]), params,
                      RecordingSink())["range"]
    assert r.value == value, r.details
    assert r.details["method"] == "scan_length" and r.details["part"] == "KNEE"
    if value != "正常":
        f = r.findings[0]
        assert f.value == value and "股骨远端" in f.reason_zh and "distal femur" in f.reason_en


def test_two_spine_parts_in_two_acquisitions_are_judged_part_by_part() -> None:
    params = load_params("CT", "CT-SPINE")
    t_spine = _length_series("t", 0.0, 310.0)
    l_short = _length_series("l", -290.0, 130.0)  # the lumbar acquisition stops short of S1
    r = ct.measure_ct(exam(l_short, t_spine, code="CT-SPINE", item_codes=["CT.TSPINE.PLAIN", "CT.LSPINE.PLAIN"]), params,
                      RecordingSink())["range"]
    assert r.value == "过小", r.details
    by_part = {row["part"]: row for row in r.details["parts"]}
    assert by_part["TSPINE"]["value"] == "正常" and by_part["LSPINE"]["value"] == "过小"
    assert by_part["LSPINE"]["length_mm"] == pytest.approx(130.0, abs=0.5)
    assert len(r.findings) == 1 and "T12" in r.findings[0].reason_zh
    l_ok = _length_series("l2", -290.0, 210.0)
    ok = ct.measure_ct(exam(l_ok, t_spine, code="CT-SPINE", item_codes=["CT.TSPINE.PLAIN", "CT.LSPINE.PLAIN"]), params,
                       RecordingSink())["range"]
    assert ok.value == "正常" and not ok.findings


def _cap_head(n: int = 12) -> np.ndarray:
    hu = phantom(n=n, size=48)
    hu[0] = -1000.0
    hu[0, 20:28, 20:28] = 40.0
    return hu


def test_head_and_cervical_spine_judged_part_by_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ct, "_SCORER", FlatScorer())
    params = load_params("CT", "CT-HEAD-PLAIN")
    head = _length_series("h", 0.0, 145.0, kernel="head", region="head", hu=_cap_head())
    cspine_cut = _length_series("c", -120.0, 110.0)
    r = ct.measure_ct(exam(head, cspine_cut, code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN", "CT.CSPINE.PLAIN"]), params,
                      RecordingSink())["range"]
    assert r.value == "过小", r.details
    assert {row["part"]: row["value"] for row in r.details["parts"]} == {"HEAD": "正常", "CSPINE": "过小"}


def test_single_head_judged_by_length_and_top_slice_whatever_the_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    # the scorer does not transfer to a real skull (the real InVesalius head read 过大 / 过小): a single
    # head is judged by its scan length and its top slice, with or without a scorer position
    params = load_params("CT", "CT-HEAD-PLAIN")
    monkeypatch.setattr(ct, "_SCORER", FlatScorer())
    ok = ct.measure_ct(exam(_length_series("h", 0.0, 145.0, kernel="head", region="head", hu=_cap_head()),
                            code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["range"]
    assert ok.value == "正常" and ok.details["method"] == "scan_length"
    short = ct.measure_ct(exam(_length_series("h2", 0.0, 90.0, kernel="head", region="head", hu=_cap_head()),
                               code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["range"]
    assert short.value == "过小"
    long = ct.measure_ct(exam(_length_series("h5", 0.0, 215.0, n=22, kernel="head", region="head", hu=_cap_head(22)),
                              code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["range"]
    assert long.value == "过大"
    # a full head section on the top slice: the vertex is missing whatever the length
    cut_top = ct.measure_ct(exam(_length_series("h3", 0.0, 145.0, kernel="head", region="head"),
                                 code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["range"]
    assert cut_top.value == "过小" and "颅顶" in cut_top.findings[0].reason_zh
    # a scorer that positions the scan 60 mm too low (it would call the scan 过大) does not decide
    monkeypatch.setattr(ct, "_SCORER", LinearScorer(params["landmark_scores"]["vertex"] + 60 / 8.35))
    scored = ct.measure_ct(exam(_length_series("h4", 0.0, 145.0, kernel="head", region="head", hu=_cap_head()),
                                code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["range"]
    assert scored.value == "正常" and scored.details["method"] == "scan_length"
    # without the length entry the scorer decides, and calls that scan 过大: the entry is what decides
    params["range"]["length_mm"] = {k: v for k, v in params["range"]["length_mm"].items() if k != "HEAD"}
    by_scorer = ct.measure_ct(exam(_length_series("h6", 0.0, 145.0, kernel="head", region="head", hu=_cap_head()),
                                   code="CT-HEAD-PLAIN", item_codes=["CT.HEAD.PLAIN"]), params, RecordingSink())["range"]
    assert by_scorer.details.get("method") != "scan_length"


# ---------------------------------------------------------------- noise: the slice-difference estimate


def test_slice_difference_cancels_anatomy_that_stays_from_slice_to_slice() -> None:
    # coarse-grid anatomy repeated on every slice: the in-slice high-pass reads it as noise, the
    # difference of two neighbouring slices cancels it and reads the noise itself
    vol = structured(6.0, seed=7, vary=False)
    stack = ct._Stack(series("st", vol, thickness=5.0))
    in_slice = ct._series_noise(stack, 25.0, pairs=0)
    both = ct._series_noise(stack, 25.0)
    assert in_slice is not None and both is not None
    assert in_slice[0] > 3 * 6.0
    assert both[0] == pytest.approx(6.0, rel=0.2)
    # anatomy that changes along z is not cancelled: the lower of the two estimates stays high
    moving = ct._series_noise(ct._Stack(series("mv", structured(6.0, seed=8), thickness=5.0)), 25.0)
    assert moving is not None and moving[0] > 3 * 6.0


def test_overlapping_slices_are_not_differenced() -> None:
    # 5 mm slices every 2.5 mm share noise in a real reconstruction: no pair is taken
    vol = phantom(n=8, noise=6.0, seed=9)
    overlapping = ct._Stack(series("ov", vol, z=[-2.5 * i for i in range(8)], thickness=5.0))
    assert ct._adjacent_pairs(overlapping) == []
    contiguous = ct._Stack(series("ct", vol, z=[-5.0 * i for i in range(8)], thickness=5.0))
    assert len(ct._adjacent_pairs(contiguous)) == 7


# ---------------------------------------------------------------- chest range: the lungs' own edges


class FakeSlice(dict):  # type: ignore[type-arg]
    """A decoded CT instance: ``get`` for header keywords and ``pixel_array`` (HU, slope 1, intercept 0)."""

    def __init__(self, hu: np.ndarray, z: float, px: float) -> None:
        super().__init__(ImagePositionPatient=[0.0, 0.0, z], PixelSpacing=[px, px], RescaleSlope=1, RescaleIntercept=0)
        self.pixel_array = hu


def chest_with_lungs(n: int, lung_from: int, lung_to: int, size: int = 64) -> np.ndarray:
    """Body ellipse with two lateral lungs (-850 HU) on slices ``lung_from`` .. ``lung_to`` (top first) and
    a midline trachea on every slice (air, but not lung)."""
    vol = phantom(n=n, size=size, noise=5.0)
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    trachea = (yy - c + 6) ** 2 + (xx - c) ** 2 <= 2
    for k in range(n):
        vol[k][trachea] = -950.0
        if lung_from <= k <= lung_to:
            for side in (-1, 1):
                vol[k][((yy - c) / 9.0) ** 2 + ((xx - c - side * 13) / 6.0) ** 2 <= 1] = -850.0
    return vol


def _lung_exam(vol: np.ndarray, spacing: float = 10.0, px: float = 5.0) -> SeriesImages:
    z = [-spacing * i for i in range(vol.shape[0])]
    s = series("lung", vol, z=z, px=px, kernel="soft", region="chest")
    slices = [FakeSlice(vol[i], z[i], px) for i in range(vol.shape[0])]
    return SeriesImages(header=s.header, label=s.label, datasets=lambda: slices, volume=s.volume, radiograph=lambda: None)


def test_chest_range_reads_the_lung_edges_not_the_scorer(monkeypatch: pytest.MonkeyPatch,
                                                          chest_params: dict[str, Any]) -> None:
    # the scorer places the scan 60 mm too low (it would call the apex missing); the pixels show
    # no lung on the first 2 slices (apex covered) and none on the last 2 (base covered)
    scores = chest_params["landmark_scores"]
    monkeypatch.setattr(ct, "_SCORER", LinearScorer(scores["lung_apex"] + 60 / 8.35))
    ok = ct.measure_ct(exam(_lung_exam(chest_with_lungs(30, 2, 27))), chest_params, RecordingSink())["range"]
    assert ok.value == "正常", ok.details
    assert ok.details["landmark_method"] == {"top": "lung_edge", "bottom": "lung_edge"}
    assert ok.details["top_margin_mm"] == pytest.approx(15.0, abs=0.1)  # 20 mm to the first lung slice less half a gap
    # lung on the first slice: the apex is cut, by an amount the pixels cannot tell
    cut = ct.measure_ct(exam(_lung_exam(chest_with_lungs(30, 0, 27))), chest_params, RecordingSink())["range"]
    assert cut.value == "过小" and cut.details["missing"] == ["lung_apex"]
    assert "首层图像仍可见肺组织" in cut.findings[0].reason_zh and "first slice still shows lung" in cut.findings[0].reason_en
    # 80 mm above the first lung slice: over-scan beyond the 48 mm allowed
    high = ct.measure_ct(exam(_lung_exam(chest_with_lungs(30, 8, 27))), chest_params, RecordingSink())["range"]
    assert high.value == "过大" and high.details["excess"][0]["end"] == "top"


def test_lung_speckle_and_trachea_are_not_lung() -> None:
    lp = load_params("CT", "CT-CHEST-PLAIN")["range"]["lung_landmarks"]
    vol = chest_with_lungs(3, 1, 1)
    assert ct._lung_areas(vol[0], (5.0, 5.0), lp) == []  # the midline trachea only
    areas = ct._lung_areas(vol[1], (5.0, 5.0), lp)
    assert len(areas) == 2 and min(areas) > 1000


# ---------------------------------------------------------------- noise: thickness and head-region series


def test_thick_reconstruction_is_held_to_a_lower_noise_limit(chest_params: dict[str, Any]) -> None:
    # noise falls as 1/sqrt(thickness): an 8 mm series is held to sqrt(5/8) of the 5 mm limit
    five = chest_params["noise"]["sd_limit_hu"]["soft"]
    noise = 0.9 * five  # passes at 5 mm, too much for 8 mm slices
    at5 = ct.measure_ct(exam(series("t5", phantom(noise=noise, seed=11), thickness=5.0)), chest_params, EvidenceSink())["noise"]
    at8 = ct.measure_ct(exam(series("t8", phantom(noise=noise, seed=11), thickness=8.0)), chest_params, EvidenceSink())["noise"]
    assert at5.value == "正常" and at8.value == "异常"
    assert at8.details["limit_hu"] == pytest.approx(five * (5.0 / 8.0) ** 0.5, abs=0.01)


def test_head_region_soft_series_of_a_chest_item_uses_the_brain_limit(chest_params: dict[str, Any]) -> None:
    # head + chest exam: the head's soft-named series reads 9 HU, fine for a body kernel, noisy for a brain
    assert chest_params["noise"]["head_region_as_head"] is True
    head = series("hd", phantom(noise=9.0, seed=12), kernel="soft", region="head", ctdivol=None)
    r = ct.measure_ct(exam(head, item_codes=["CT.HEAD.PLAIN", "CT.CHEST.PLAIN"]), chest_params, EvidenceSink())["noise"]
    assert r.value == "异常" and r.details["kernel_class"] == "head"


def test_exam_noise_falls_back_to_the_slice_difference_when_the_in_slice_reading_is_high(
        chest_params: dict[str, Any]) -> None:
    # the only series carries static coarse-grid anatomy: in-slice it reads far above the limit, the
    # slice difference (computed only then) reads the 6 HU of noise and the exam is 正常
    s = series("static", structured(6.0, seed=13, vary=False), thickness=5.0)
    r = ct.measure_ct(exam(s), chest_params, EvidenceSink())["noise"]
    assert r.value == "正常", r.details
    assert r.details["sd_hu"] == pytest.approx(6.0, rel=0.2)


# ---------------------------------------------------------------- several acquisitions, parts not imaged (R)


class TableScorer:
    """Scores per acquisition, told apart by their slice count: {n_slices: (z per slice, scores)}."""

    def __init__(self, table: dict[int, tuple[list[float], list[float]]]) -> None:
        self.table = table

    def score(self, image: sitk.Image) -> Any:
        z, scores = self.table[image.GetSize()[2]]
        return SimpleNamespace(scores=list(scores), z_mm=list(z), landmarks={})


def _linear(z: list[float], s_at_0: float) -> tuple[list[float], list[float]]:
    return z, [s_at_0 + (0.0 - zi) / 8.35 for zi in z]


def test_unpositioned_acquisition_takes_the_fit_of_the_same_study(monkeypatch: pytest.MonkeyPatch) -> None:
    # chest + upper abdomen as two acquisitions; the abdomen's own score profile is flat (no position)
    # and it ends 52 mm above the lower renal pole: its position comes from the chest's fit
    z_chest = list(np.linspace(0.0, -300.0, 12))
    z_abd = list(np.linspace(-280.0, -360.0, 8))
    params = load_params("CT", "CT-UABD")
    monkeypatch.setattr(ct, "_SCORER", TableScorer({12: _linear(z_chest, 31.0), 8: (z_abd, [70.0] * 8)}))
    chest = series("c", phantom(n=12, size=48), z=z_chest)
    abd = series("a", phantom(n=8, size=48), z=z_abd, region="abdomen")
    r = ct.measure_ct(exam(chest, abd, code="CT-UABD", item_codes=["CT.CHEST.PLAIN", "CT.UABD.PLAIN"]), params,
                      RecordingSink())["range"]
    assert r.value == "过小", r.details
    assert r.details["missing"] == ["lower_renal_pole"]
    assert r.details["position_from_other_acquisition"][0]["own_fit"] in ("no_position_fit", "position_fit_implausible")
    # another study's acquisition (another table frame) is not positioned by it: cannot assess
    other = series("a2", phantom(n=8, size=48), z=z_abd, region="abdomen")
    other_ds = {"CTDIvol": 10.0, "StudyInstanceUID": "9.9"}
    other = SeriesImages(header=other.header, label=other.label, datasets=lambda: [other_ds], volume=other.volume,
                         radiograph=lambda: None)
    r2 = ct.measure_ct(exam(chest, other, code="CT-UABD", item_codes=["CT.CHEST.PLAIN", "CT.UABD.PLAIN"]), params,
                       RecordingSink())["range"]
    assert r2.value == "无法评估"


def test_ordered_part_without_images_is_not_called_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # an order of chest + upper abdomen whose images hold the upper abdomen only (its lung bases show):
    # the chest is not in this study, the abdomen's range is judged
    params = load_params("CT", "CT-UABD")
    z = list(np.linspace(-250.0, -450.0, 10))
    monkeypatch.setattr(ct, "_SCORER", TableScorer({10: _linear(z, 31.0)}))
    abd = series("a", phantom(n=10, size=48), z=z, region="abdomen")
    r = ct.measure_ct(exam(abd, code="CT-UABD", item_codes=["CT.UABD.PLAIN", "CT.CHEST.PLAIN"]), params,
                      RecordingSink())["range"]
    assert r.value == "正常", r.details
    assert r.details["parts_not_imaged"] == ["CHEST"]
    assert r.details["required"] == ["diaphragm_dome", "lower_renal_pole"]
    # the same order with half the chest imaged: the chest is in the study and its apex is missing
    z2 = list(np.linspace(-100.0, -450.0, 13))
    monkeypatch.setattr(ct, "_SCORER", TableScorer({13: _linear(z2, 31.0)}))
    half = series("h", phantom(n=13, size=48), z=z2, region="abdomen")
    r2 = ct.measure_ct(exam(half, code="CT-UABD", item_codes=["CT.UABD.PLAIN", "CT.CHEST.PLAIN"]), params,
                       RecordingSink())["range"]
    assert r2.value == "过小" and r2.details["missing"] == ["lung_apex"], r2.details
    assert "parts_not_imaged" not in r2.details
    # without the limit in the parameters every ordered part is required
    params["range"].pop("min_imaged_fraction")
    monkeypatch.setattr(ct, "_SCORER", TableScorer({10: _linear(z, 31.0)}))
    r3 = ct.measure_ct(exam(abd, code="CT-UABD", item_codes=["CT.UABD.PLAIN", "CT.CHEST.PLAIN"]), params,
                       RecordingSink())["range"]
    assert r3.value == "过小"


@pytest.mark.parametrize(("length", "value"), [(130.0, "过小"), (200.0, "正常"), (290.0, "过大")])
def test_pelvis_the_scorer_cannot_position_is_judged_by_its_length(monkeypatch: pytest.MonkeyPatch, length: float,
                                                                  value: str) -> None:
    monkeypatch.setattr(ct, "_SCORER", FlatScorer())
    params = load_params("CT", "CT-ABD-PELVIS")
    r = ct.measure_ct(exam(_length_series("p", -400.0, length, kernel="soft", region="pelvis"), code="CT-ABD-PELVIS",
                           item_codes=["CT.PELVIS.PLAIN"]), params, RecordingSink())["range"]
    assert r.value == value, r.details
    assert r.details["method"] == "scan_length" and r.details["part"] == "PELVIS"


# ---------------------------------------------------------------- round 2 (N): gas, joint fit, noise per acquisition


def test_gas_under_the_diaphragm_is_not_lung() -> None:
    # a scan ending through the stomach's gas bubble (pure air, lateral, inside the body) read
    # "the last slice still shows lung" on a complete chest; lung parenchyma (-850 HU) still counts
    lp = load_params("CT", "CT-CHEST-PLAIN")["range"]["lung_landmarks"]
    vol = chest_with_lungs(3, 1, 1)
    size = vol.shape[1]
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    bubble = ((yy - c) / 6.0) ** 2 + ((xx - c - 12) / 6.0) ** 2 <= 1
    gas = vol[0].copy()
    gas[bubble] = -1000.0
    assert ct._lung_areas(gas, (5.0, 5.0), lp) == []
    assert ct._lung_areas(gas, (5.0, 5.0), {k: v for k, v in lp.items() if k != "min_mean_hu"})  # the old reading
    assert len(ct._lung_areas(vol[1], (5.0, 5.0), lp)) == 2


def test_acquisitions_of_one_table_are_positioned_by_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # chest + upper abdomen; the abdomen runs 17 mm past the lower renal pole, but the scorer compresses
    # its own short profile (11 mm/unit, 2.5 units low): alone it reads the pole ~18 mm missing
    params = load_params("CT", "CT-UABD")
    pole_z = -(params["landmark_scores"]["lower_renal_pole"] - 31.0) * 8.35
    z_chest = list(np.linspace(0.0, -300.0, 12))
    z_abd = list(np.linspace(-280.0, pole_z - 17.0, 8))
    mid = float(np.mean(z_abd))
    squeezed = [31.0 - mid / 8.35 - 2.5 + (mid - z) / 11.0 for z in z_abd]
    monkeypatch.setattr(ct, "_SCORER", TableScorer({12: _linear(z_chest, 31.0), 8: (z_abd, squeezed)}))
    chest = series("c", phantom(n=12, size=48), z=z_chest)
    abd = series("a", phantom(n=8, size=48), z=z_abd, region="abdomen")
    ex = exam(chest, abd, code="CT-UABD", item_codes=["CT.CHEST.PLAIN", "CT.UABD.PLAIN"])
    joint = ct.measure_ct(ex, params, RecordingSink())["range"]
    assert joint.value == "正常", joint.details
    # alone, the compressed fit reads the pole missing (the typical-slope second look off: it would
    # rescue this squeezed fit too, see tests/test_image_qc_ct_range_noise.py)
    own = {**params, "range": {**params["range"], "joint_fit": False, "clamp_outside_to_mm_per_unit": None}}
    alone = ct.measure_ct(ex, own, RecordingSink())["range"]
    assert alone.value == "过小" and alone.details["missing"] == ["lower_renal_pole"]


def test_noisiest_phase_decides_the_exam_noise(chest_params: dict[str, Any]) -> None:
    # a noisy portal phase beside a clean native one (same z): the exam's lowest reading hid it
    native = series("n", phantom(noise=6.0, seed=6))
    portal = series("p", phantom(noise=25.0, seed=5))
    native.label.phase, portal.label.phase = "native", "portal"
    r = ct.measure_ct(exam(native, portal), chest_params, RecordingSink())["noise"]
    assert r.value == "异常" and r.details["series_uid"] == "p", r.details
    lowest = {**chest_params, "noise": {**chest_params["noise"], "per_phase": False}}
    assert ct.measure_ct(exam(native, portal), lowest, RecordingSink())["noise"].value == "正常"
    # two reconstructions of one phase (a noisy and a quiet one): still the quieter one decides
    thick = series("t", phantom(noise=25.0, seed=7))
    thick.label.phase = "native"
    quiet_portal = series("q", phantom(noise=6.0, seed=8))
    quiet_portal.label.phase = "portal"
    assert ct.measure_ct(exam(thick, native, quiet_portal), chest_params, RecordingSink())["noise"].value == "正常"


def test_sharpness_reads_the_finest_grid_first(chest_params: dict[str, Any]) -> None:
    # the same sharp body on a 64-px, 6 mm grid (thick) and on a 128-px, 3 mm grid (thin): the
    # coarse grid spreads the edge over a pixel of 6 mm and reads as blurred
    sharp = phantom(size=128, px=3.0, noise=4.0)
    binned = sharp.reshape(sharp.shape[0], 64, 2, 64, 2).mean(axis=(2, 4))  # 2x2 pixels averaged: a 6 mm grid
    coarse = series("coarse", binned, px=6.0, thickness=5.0)
    coarse.header.pixel_spacing = 6.0
    fine = series("fine", sharp, px=3.0, thickness=1.25)
    fine.header.pixel_spacing = 3.0
    r = ct.measure_ct(exam(coarse, fine), chest_params, RecordingSink())["sharpness"]
    assert r.value == "正常" and r.details["series_uid"] == "fine", r.details
    old = {**chest_params, "sharpness": {**chest_params["sharpness"], "finest_grid_first": False}}
    r_old = ct.measure_ct(exam(coarse, fine), old, RecordingSink())["sharpness"]
    assert r_old.details["series_uid"] == "coarse"
    assert r_old.details["edge_index"] < r.details["edge_index"]
    # blur on the fine grid is still found there
    blurred = series("fb", phantom(size=128, px=3.0, noise=4.0, blur_px=3.0), px=3.0, thickness=1.25)
    blurred.header.pixel_spacing = 3.0
    assert ct.measure_ct(exam(coarse, blurred), chest_params, RecordingSink())["sharpness"].value == "异常"
