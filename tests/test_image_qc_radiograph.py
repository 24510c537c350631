"""Radiograph image-QC measures (pipelines/image_qc/radiograph.py) on generator projections with
known defects, rendered in-process (small matrix), plus the parameter file and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydicom.dataset import Dataset

from radqc.dicom.volume import Radiograph, UnsuitableSeries
from radqc.pipelines.image_qc import radiograph as rq
from radqc.pipelines.image_qc.types import (
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    EvidenceSink,
    ExamImages,
    SeriesImages,
)
from radqc.pipelines.series.features import SeriesHeader

ROOT = Path(__file__).resolve().parents[1]


class RecordingSink(EvidenceSink):
    """Keeps what the measures hand over, so a test can see that evidence was produced."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def add(self, image: Any, *, name: str, box: list[float] | None = None,
            window: tuple[float, float] | None = None, mask: Any = None) -> str | None:
        self.calls.append({"shape": np.asarray(image).shape, "name": name, "box": box})
        return f"evidence/{name}.png"


def _series_from_case(case: Any, uid: str, *, exposure: bool = True, di: float | None = None) -> SeriesImages:
    """A SeriesImages whose radiograph() returns the rendered projection with a DX-like header."""
    ds = Dataset()
    ds.Modality = "DX"
    ds.SOPInstanceUID = uid + ".1"
    ds.SeriesInstanceUID = uid
    ds.ViewPosition = case.view
    ds.PixelSpacing = [case.spacing_mm, case.spacing_mm]
    t = case.truth
    if exposure:
        ds.ExposureIndex = t["exposure_index"]
        ds.TargetExposureIndex = 400.0
        ds.DeviationIndex = t["deviation_index"] if di is None else di
    col = t.get("collimation_px")
    if col:
        ds.CollimatorShape = "RECTANGULAR"
        ds.CollimatorUpperHorizontalEdge = col["rows"][0]
        ds.CollimatorLowerHorizontalEdge = col["rows"][1] - 1
        ds.CollimatorLeftVerticalEdge = col["cols"][0]
        ds.CollimatorRightVerticalEdge = col["cols"][1] - 1
    pixels = (4095 - case.pixels) if case.mono1 else case.pixels
    rg = Radiograph(pixels=np.asarray(pixels), spacing_mm=(case.spacing_mm, case.spacing_mm), view=case.view,
                    body_part="CHEST", modality="DX", dataset=ds, inverted=case.mono1)
    header = SeriesHeader(series_uid=uid, modality="DX")
    return SeriesImages(header=header, label=None, datasets=lambda: [ds], volume=None, radiograph=lambda: rg)


def _exam(defects: list[dict[str, Any]], seed: int = 11, code: str = "DX-CHEST-PA", **kw: Any) -> ExamImages:
    from radqc.datasets.synthetic.spec import Defect
    from radqc.models.radiograph.data import render_cases

    d = [Defect("x", "x", p) for p in defects]
    cases = render_cases(seed, "chest", ("PA",), size="small", defects=d, vendor="GE", modality="DX")
    series = [_series_from_case(c, f"1.2.3.{seed}.{i}", **kw) for i, c in enumerate(cases)]
    return ExamImages(study_uid="1.2.3", modality="DX", standard_code=code, series=series)


def _run(exam: ExamImages, sink: EvidenceSink | None = None) -> dict[str, Any]:
    return rq.measure_radiograph(exam, rq.load_params(exam.standard_code), sink or EvidenceSink())


@pytest.fixture(scope="module")
def normal() -> dict[str, Any]:
    return _run(_exam([]))


# ---------------------------------------------------------------- parameters


def test_every_dx_standard_has_parameters() -> None:
    codes = {p.stem for p in (ROOT / "qc_rules" / "standards").glob("DX-*.yaml")}
    data = yaml.safe_load((ROOT / "qc_rules" / "image_qc" / "dx.yaml").read_text(encoding="utf-8"))
    assert len(codes) == 13
    assert codes <= set(data["codes"])
    for code in codes:
        p = rq.load_params(code)
        assert p["known_code"] and p["region"]
        assert p["positioning"]["min_posterior_ribs"] == 10  # default merged under the code's entry


def test_unknown_code_gets_defaults() -> None:
    p = rq.load_params("NOT-A-CODE")
    assert p["known_code"] is False and p["region"] is None
    assert rq.load_params(None)["range"]["wide_margin_mm"] > 0


# ---------------------------------------------------------------- measures on rendered projections


def test_normal_chest_pa(normal: dict[str, Any]) -> None:
    assert normal["range"].value == "正常"
    assert normal["positioning"].value == "标准"
    assert normal["centring"].value == "正常"
    assert normal["noise"].value == "正常"
    assert normal["sharpness"].value == "正常"
    assert normal["dose"].value == "正常"
    for dim in ("reconstruction", "window", "sequences"):
        assert normal[dim].value == NOT_APPLICABLE and normal[dim].reason
    assert "artifact" not in normal  # the artifact measures own it
    assert all(not r.findings for r in normal.values())


def test_costophrenic_cutoff_is_range_too_small() -> None:
    res = _run(_exam([{"kind": "costophrenic_cutoff", "cut_mm": 35}]))
    assert res["range"].value == "过小"
    assert any(m.startswith("costophrenic") for m in res["range"].details["missing"])
    f = res["range"].findings[0]
    assert f.check_id == "IQC-RANGE" and f.points == 0 and "肋膈角" not in f.reason_en and f.reason_zh


def test_wide_collimation_is_range_too_large() -> None:
    res = _run(_exam([{"kind": "collimation_too_wide", "margin_mm": 90}]))
    assert res["range"].value == "过大"


def test_off_centre_left() -> None:
    res = _run(_exam([{"kind": "off_centre", "direction": "left", "offset_mm": 55}]))
    assert res["centring"].value == "偏左"
    assert res["centring"].details["offset_mm"] > 30
    assert res["centring"].findings[0].check_id == "IQC-CENTRING"


def test_marker_missing_is_a_positioning_finding() -> None:
    sink = RecordingSink()
    res = _run(_exam([{"kind": "marker_missing"}]), sink)
    assert res["positioning"].value == "不标准"
    f = [x for x in res["positioning"].findings if x.check_id == "IQC-MARKER"]
    assert f and "L/R" in f[0].reason_en
    assert f[0].evidence[0].image and sink.calls  # evidence picture handed to the sink


def test_scapula_over_lung() -> None:
    res = _run(_exam([{"kind": "scapula_over_lung"}]))
    assert res["positioning"].value == "不标准"
    assert any("scapula" in f.reason_en for f in res["positioning"].findings)


def test_exposure_header_drives_noise_and_dose() -> None:
    under = _run(_exam([], di=-6.0))
    assert under["noise"].value == "异常" and under["dose"].value == "正常"
    over = _run(_exam([], di=4.5))
    assert over["dose"].value == "异常" and over["noise"].value == "正常"
    missing = _run(_exam([], exposure=False))
    assert missing["dose"].value == "异常"
    assert "not recorded" in missing["dose"].findings[0].reason_en


# ---------------------------------------------------------------- bad input


def test_unreadable_view_is_not_assessable() -> None:
    def broken() -> Radiograph:
        raise UnsuitableSeries("not_radiograph", "colour image")

    s = SeriesImages(header=SeriesHeader(series_uid="9.9", modality="DX"), label=None, datasets=lambda: [],
                     volume=None, radiograph=broken)
    res = _run(ExamImages(study_uid=None, modality="DX", standard_code="DX-CHEST-PA", series=[s]))
    for dim in rq.DIMENSIONS_MEASURED:
        assert res[dim].value == NOT_ASSESSABLE and res[dim].reason and "/" in res[dim].reason


def test_exam_without_radiographs() -> None:
    s = SeriesImages(header=SeriesHeader(series_uid="8.8", modality="CT"), label=None, datasets=lambda: [],
                     volume=None, radiograph=lambda: None)
    res = _run(ExamImages(study_uid=None, modality="DX", standard_code=None, series=[s]))
    assert res["range"].value == NOT_ASSESSABLE and res["sequences"].value == NOT_APPLICABLE


# ---------------------------------------------------------------- pixel measures


def test_collimation_box_finds_flat_borders() -> None:
    rng = np.random.default_rng(0)
    img = np.full((120, 100), 4000.0) + rng.normal(0, 5, (120, 100))
    img[20:100, 15:90] = 1000 + rng.normal(0, 200, (80, 75))
    img[3:10, 3:8] = 4090  # burned-in text in the unexposed border must not count
    box, found = rq.collimation_box(img)
    assert box == (20, 100, 15, 90)
    assert all(found.values())
    full, found2 = rq.collimation_box(img[20:100, 15:90])
    assert not any(found2.values()) and full == (0, 80, 0, 75)


def test_smoothness_rises_with_blur_not_with_noise() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(1)
    base = np.kron(rng.uniform(0, 3000, (24, 24)), np.ones((6, 6)))  # sharp-edged blocks
    sharp = base + rng.normal(0, 30, base.shape)
    noisy = base + rng.normal(0, 120, base.shape)
    blurred = ndimage.gaussian_filter(base, 1.5) + rng.normal(0, 30, base.shape)
    box = (0, base.shape[0], 0, base.shape[1])
    s_sharp = rq.pixel_measures(sharp, box, 1.5)
    s_noisy = rq.pixel_measures(noisy, box, 1.5)
    s_blur = rq.pixel_measures(blurred, box, 1.5)
    assert s_blur["smooth_x"] > s_sharp["smooth_x"] + 0.2
    assert abs(s_noisy["smooth_x"] - s_sharp["smooth_x"]) < 0.15
    assert s_noisy["noise_fraction"] > 2 * s_sharp["noise_fraction"]


def test_detail_fraction_falls_with_blur_not_with_noise() -> None:
    """The sharpness measure: a 1.5 px blur leaves almost no fine detail above the noise floor,
    while four times the noise (white, added after the blur as in a detector) leaves it as it was."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    # anatomy-like texture: random phases, amplitude falling as 1/f (the spectrum of edges)
    fy, fx = np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij")
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / 128)
    base = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.uniform(size=amp.shape))))
    base = 3000 * (base - base.min()) / np.ptp(base)
    sharp = base + rng.normal(0, 30, base.shape)
    noisy = base + rng.normal(0, 120, base.shape)
    blurred = ndimage.gaussian_filter(base, 1.5) + rng.normal(0, 30, base.shape)
    d_sharp, d_noisy, d_blur = (rq.detail_fraction(x) for x in (sharp, noisy, blurred))
    assert d_sharp is not None and d_noisy is not None and d_blur is not None
    lim = rq.load_params("DX-CHEST-PA")["sharpness"]["min_detail_fraction"]
    assert d_blur < lim < d_sharp
    assert d_noisy > lim and abs(d_noisy - d_sharp) < 0.5 * d_sharp
    # motion smears one axis only: the sharper axis keeps the view from reading as blurred
    smeared = ndimage.uniform_filter1d(base, 7, axis=1) + rng.normal(0, 30, base.shape)
    assert (rq.detail_fraction(smeared) or 0.0) > lim
    assert rq.detail_fraction(np.zeros((8, 40))) is None  # too few lines for a spectrum


def test_blurred_chest_pa_is_abnormal_sharpness() -> None:
    res = _run(_exam([{"kind": "blur", "sigma_mm": 1.2}], seed=12))
    assert res["sharpness"].value == "异常"
    f = res["sharpness"].findings[0]
    assert f.check_id == "IQC-SHARPNESS" and "blurred" in f.reason_en and "模糊" in f.reason_zh
    assert f.evidence[0].measured < f.evidence[0].limit
    # the same exam drawn without the blur reads sharp
    assert _run(_exam([], seed=12))["sharpness"].value == "正常"


def test_excess_noise_is_not_read_as_blur() -> None:
    res = _run(_exam([{"kind": "excess_noise", "factor": 3.0}], seed=13))
    assert res["sharpness"].value == "正常"
    assert res["sharpness"].details["views"][0]["detail_fraction"] > 0.027


def test_shallow_inspiration_from_short_lung_fields() -> None:
    res = _run(_exam([{"kind": "shallow_inspiration", "ribs": 7}], seed=14))
    assert res["positioning"].value == "不标准"
    assert any("inspiration" in f.reason_en for f in res["positioning"].findings)


def test_short_lung_rule_respects_a_high_rib_count() -> None:
    """A lung-shape reading does not overrule a rib count clearly above the limit; it decides when
    the count sits at the limit (counting is off by one at times)."""
    p = rq.load_params("DX-CHEST-PA")
    lim = p["positioning"]["short_lung_aspect"]
    masks = {"lung_right": np.zeros((100, 100), bool), "lung_left": np.zeros((100, 100), bool)}
    masks["lung_right"][30:30 + int(80 * lim) - 8, 10:50] = True  # height / joint width below the limit
    masks["lung_left"][30:30 + int(80 * lim) - 8, 50:90] = True

    class Analysis:
        def __init__(self) -> None:
            self.masks = masks

    def judged(ribs: int) -> str:
        v = rq._View("1.2", "PA", None)
        v.set("range", "正常", {"cut_at": {}})

        def ev(*a: Any, **k: Any) -> Any:
            from radqc.pipelines.image_qc.types import Evidence
            return Evidence(series_uid="1.2", instance_index=0, measured=a[1], limit=a[2])

        meas = {"rotation_offset_mm": 0.0, "scapula_in_lung_fraction": {}, "posterior_ribs_above_right_dome": ribs}
        p2 = rq._merge(p, {"positioning": {"check_marker": False}})
        rq._positioning(v, Analysis(), meas, 1.0, p2, True, ev)
        return v.values["positioning"]

    assert judged(p["positioning"]["min_posterior_ribs"]) == "不标准"
    assert judged(p["positioning"]["min_posterior_ribs"] + 1) == "标准"


def test_low_rib_count_with_tall_lungs_is_not_shallow() -> None:
    """A count well below the limit is a shallow inspiration on short-to-normal lung fields, and a
    misread dome or rib on tall ones (limit low_count_max_aspect in dx.yaml)."""
    p = rq.load_params("DX-CHEST-PA")
    tall_lim = p["positioning"]["low_count_max_aspect"]
    from radqc.pipelines.image_qc.types import Evidence

    def judged(aspect: float) -> tuple[str, dict[str, Any]]:
        h = int(round(80 * aspect))
        masks = {"lung_right": np.zeros((200, 100), bool), "lung_left": np.zeros((200, 100), bool)}
        masks["lung_right"][10:10 + h, 10:50] = True
        masks["lung_left"][10:10 + h, 50:90] = True
        v = rq._View("1.5", "PA", None)
        v.set("range", "正常", {"cut_at": {}})
        meas = {"rotation_offset_mm": 0.0, "scapula_in_lung_fraction": {}, "posterior_ribs_above_right_dome": 7}
        p2 = rq._merge(p, {"positioning": {"check_marker": False}})
        rq._positioning(v, type("A", (), {"masks": masks})(), meas, 1.0, p2, True,
                        lambda *a, **k: Evidence(series_uid="1.5", instance_index=0, measured=a[1], limit=a[2]))
        return v.values["positioning"], v.details["positioning"]

    assert judged(tall_lim - 0.1)[0] == "不标准"
    value, details = judged(tall_lim + 0.2)
    assert value == "标准" and "tall lung fields" in details["inspiration"]


def test_pelvis_asymmetry_limit_only_for_the_pelvis_item() -> None:
    """A pelvis mask much heavier on one side reads rotated on a pelvis AP (limit from dx.yaml);
    the same sign is not judged for items without a limit (a lumbar spine crops the pelvis)."""
    pel = np.zeros((80, 100), bool)
    pel[20:60, 10:50] = True   # left half of the ring ...
    pel[20:60, 50:90] = True
    pel[20:40, 10:50] = False  # ... with a quarter missing: (right - left) / total = 1/3
    analysis = type("A", (), {"masks": {"pelvis": pel}})()

    def judged(code: str) -> tuple[str, dict[str, Any]]:
        from radqc.pipelines.image_qc.types import Evidence

        v = rq._View("1.3", "AP", None)
        p = rq._merge(rq.load_params(code), {"positioning": {"check_marker": False}})
        rq._positioning(v, analysis, {}, 1.0, p, False,
                        lambda *a, **k: Evidence(series_uid="1.3", instance_index=0, measured=a[1], limit=a[2]))
        return v.values["positioning"], v.details["positioning"]

    value, details = judged("DX-PELVIS-AP")
    assert value == "不标准" and details["pelvis_asymmetry"] > rq.load_params("DX-PELVIS-AP")["positioning"]["max_pelvis_asymmetry"]
    assert judged("DX-LSPINE-APLAT")[0] == "标准"


def _neck(spine_shift_px: int, outline_cut: bool = False) -> np.ndarray:
    """A frontal neck: air, a soft-tissue band (the outline) and a brighter bone column."""
    img = np.full((120, 100), 200.0) + np.random.default_rng(4).normal(0, 5, (120, 100))
    lo, hi = (0, 70) if outline_cut else (20, 80)
    img[:, lo:hi] = 1500.0
    c = 50 + spine_shift_px
    img[:, c - 6:c + 6] = 3000.0
    return img


def test_spine_outline_offset_measures_the_spine_against_the_outline() -> None:
    off0, n0 = rq.spine_outline_offset(_neck(0), 1.0)
    off4, _ = rq.spine_outline_offset(_neck(4), 1.0)
    assert n0 >= 5 and off0 is not None and abs(off0) < 1.0
    assert off4 is not None and 3.0 < off4 < 5.0
    assert rq.spine_outline_offset(_neck(4), 2.0)[0] == pytest.approx(2 * off4, abs=0.6)  # mm, not px
    # an outline cut by the field edge has no middle: not measured rather than guessed
    assert rq.spine_outline_offset(_neck(4, outline_cut=True), 1.0)[0] is None


def test_cervical_spine_rotation_limit_is_data() -> None:
    p = rq.load_params("DX-CSPINE-APLAT")["positioning"]
    assert p["max_spine_outline_offset_mm"] > 0
    assert rq.load_params("DX-CHEST-PA")["positioning"]["max_spine_outline_offset_mm"] is None
    from radqc.pipelines.image_qc.types import Evidence

    def judged(offset: float) -> str:
        v = rq._View("1.4", "AP", None)
        params = rq._merge(rq.load_params("DX-CSPINE-APLAT"), {"positioning": {"check_marker": False}})
        rq._positioning(v, type("A", (), {"masks": {}})(), {}, 1.0, params, False,
                        lambda *a, **k: Evidence(series_uid="1.4", instance_index=0, measured=a[1], limit=a[2]),
                        None, {"spine_outline_offset_mm": offset, "spine_outline_rows": 40})
        return v.values["positioning"]

    assert judged(p["max_spine_outline_offset_mm"] + 1.0) == "不标准"
    assert judged(-(p["max_spine_outline_offset_mm"] + 1.0)) == "不标准"  # either way round
    assert judged(p["max_spine_outline_offset_mm"] - 1.0) == "标准"


def test_marker_reader_on_a_drawn_glyph() -> None:
    from radqc.datasets.synthetic.imaging.image_ops import text_mask  # the generator's glyph renderer

    img = np.full((200, 200), 1500.0) + np.random.default_rng(2).normal(0, 20, (200, 200))
    glyph = text_mask("L", 14)
    img[10:10 + glyph.shape[0], 170:170 + glyph.shape[1]][glyph] = 4050
    m = rq.find_marker(img, (0, 200, 0, 200), 1.0)
    assert m is not None and m["text"] == "L" and m["side_of_image"] == "right"


def _lumbar(spinous_shift_px: int) -> tuple[np.ndarray, np.ndarray]:
    """A frontal lumbar column: soft tissue, vertebral bodies (mask) and a dense spinous line."""
    rng = np.random.default_rng(5)
    img = np.full((100, 120), 1000.0) + rng.normal(0, 5, (100, 120))
    mask = np.zeros((100, 120), bool)
    mask[10:90, 45:75] = True
    img[mask] = 1800.0 + rng.normal(0, 5, int(mask.sum()))
    c = 60 + spinous_shift_px
    img[10:90, c - 2:c + 2] = 2600.0
    return img, mask


def test_spinous_column_offset_measures_the_posterior_elements_against_the_bodies() -> None:
    img0, m0 = _lumbar(0)
    img4, m4 = _lumbar(-4)
    off0, n0 = rq.spinous_column_offset(img0, m0, 1.0)
    off4, _ = rq.spinous_column_offset(img4, m4, 1.0)
    assert n0 >= 5 and off0 is not None and abs(off0) < 1.0
    assert off4 is not None and -5.0 < off4 < -3.0
    assert rq.spinous_column_offset(img4, m4, 2.0)[0] == pytest.approx(2 * off4, abs=0.6)  # mm, not px
    # no column (or one of another shape than the image): not measured
    assert rq.spinous_column_offset(img0, np.zeros_like(m0), 1.0)[0] is None
    assert rq.spinous_column_offset(img0, m0[:50], 1.0)[0] is None


def test_lumbar_rotation_is_judged_from_the_spinous_offset_about_its_baseline() -> None:
    """The limit, baseline and mask come from dx.yaml; the offset is judged about the baseline
    either way round, and only for the items that set a limit."""
    p = rq.load_params("DX-LSPINE-APLAT")["positioning"]
    lim, base = float(p["max_spinous_offset_mm"]), float(p["spinous_offset"]["baseline_mm"])
    assert p["spinous_offset"]["structure"] == "vertebrae_lumbar" and lim > 0
    assert rq.load_params("DX-KNEE-APLAT")["positioning"]["max_spinous_offset_mm"] is None

    ds = Dataset()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.9", "1.9.1"

    def judged(code: str, shift_px: int) -> tuple[str, dict[str, Any]]:
        img, mask = _lumbar(shift_px)
        series = SeriesImages(header=SeriesHeader(series_uid="1.9", modality="DX"), label=None,
                              datasets=lambda: [], volume=None,
                              radiograph=lambda: Radiograph(pixels=img, spacing_mm=(1.0, 1.0), view="AP",
                                                            body_part="LSPINE", modality="DX", dataset=ds))
        analysis = type("A", (), {"masks": {"vertebrae_lumbar": mask}, "measurements": {}, "view": "AP"})()
        exam = ExamImages(study_uid=None, modality="DX", standard_code=code, series=[series],
                          radiographs={"1.9": analysis})
        params = rq._merge(rq.load_params(code), {"positioning": {"check_marker": False}})
        v = rq._measure_view(series, exam, params, EvidenceSink())
        return v.values["positioning"], v.details["positioning"]

    straight = round(base)  # a straight spine reads the baseline
    value, details = judged("DX-LSPINE-APLAT", straight)
    assert value == "标准" and abs(details["spinous_offset_mm"]) <= lim
    off = int(np.ceil(lim + 2))
    for shift in (straight - off, straight + off):  # either way round
        value, details = judged("DX-LSPINE-APLAT", shift)
        assert value == "不标准" and abs(details["spinous_offset_mm"]) > lim
    assert judged("DX-KUB", straight - off)[0] == "标准"  # no limit set for the item


def test_chest_rotation_needs_both_analyser_signs_to_agree() -> None:
    """The offset-only rule (used when ``chest_rotation`` is not configured): a combined offset
    over the limit is rotation only when the clavicle and thorax signs point the same way
    (rotation_signs_agree in dx.yaml); without a thorax sign the offset decides."""
    from radqc.pipelines.image_qc.types import Evidence

    p = rq._merge(rq.load_params("DX-CHEST-PA"), {"positioning": {"chest_rotation": None}})
    assert p["positioning"]["rotation_signs_agree"] is True
    lim = float(p["positioning"]["rotation_mm"])

    def judged(meas: dict[str, Any], params: dict[str, Any] = p) -> tuple[str, dict[str, Any]]:
        v = rq._View("1.5", "PA", None)
        params = rq._merge(params, {"positioning": {"check_marker": False}})
        meas = {"posterior_ribs_above_right_dome": 10, **meas}
        rq._positioning(v, type("A", (), {"masks": {}})(), meas, 1.0, params, True,
                        lambda *a, **k: Evidence(series_uid="1.5", instance_index=0, measured=a[1], limit=a[2]))
        return v.values["positioning"], v.details["positioning"]

    over = lim + 5.0
    assert judged({"rotation_offset_mm": -over, "rotation_raw_mm": -3.0, "rotation_thorax_raw_mm": -2.2})[0] == "不标准"
    assert judged({"rotation_offset_mm": over, "rotation_raw_mm": 3.0, "rotation_thorax_raw_mm": 1.1})[0] == "不标准"
    value, details = judged({"rotation_offset_mm": over, "rotation_raw_mm": 4.6, "rotation_thorax_raw_mm": -1.1})
    assert value == "标准" and details["rotation_signs_agree"] is False
    assert judged({"rotation_offset_mm": over, "rotation_raw_mm": 4.6, "rotation_thorax_raw_mm": 0.0})[0] == "标准"
    assert judged({"rotation_offset_mm": over, "rotation_raw_mm": 4.6, "rotation_thorax_raw_mm": None})[0] == "不标准"
    assert judged({"rotation_offset_mm": lim - 1.0, "rotation_raw_mm": -3.0, "rotation_thorax_raw_mm": -2.2})[0] == "标准"
    off = rq._merge(p, {"positioning": {"rotation_signs_agree": False}})
    assert judged({"rotation_offset_mm": over, "rotation_raw_mm": 4.6, "rotation_thorax_raw_mm": -1.1}, off)[0] == "不标准"


def test_positioning_findings_name_their_kind_for_the_rollup() -> None:
    """Each positioning finding carries the defect kind in its evidence, so that the roll-up
    scores it like the truth does (rollup.yaml: scapulae over the lungs cost half the
    IQC-POSITION points; a marker error deducts under IQC-MARKER)."""
    from radqc.pipelines.image_qc.rollup import dimension_deductions, standard_or_default
    from radqc.pipelines.image_qc.types import DimensionResult, Evidence

    p = rq.load_params("DX-CHEST-PA")
    over = float(p["positioning"]["scapula_in_lung_fraction"]) + 0.1

    def findings(meas: dict[str, Any]) -> list[Any]:
        v = rq._View("1.6", "PA", None)
        rq._positioning(v, type("A", (), {"masks": {}})(), {"posterior_ribs_above_right_dome": 10, **meas}, 1.0, p,
                        True, lambda *a, **k: Evidence(series_uid="1.6", instance_index=0, measured=a[1], limit=a[2],
                                                       extra=dict(k)),
                        {"present": True, "text": "R", "side_of_image": "right", "box": [0, 4, 0, 4]})
        return v.findings.get("positioning", [])

    scap = findings({"scapula_in_lung_fraction": {"left": over, "right": over}})
    kinds = {f.evidence[0].extra.get("kind") for f in scap}
    assert kinds == {"scapula_over_lung", "marker_wrong"}
    std, _ = standard_or_default("DX-CHEST-PA", "DX")
    rows = {r["check_id"]: r["points"] for r in dimension_deductions(
        "positioning", DimensionResult("不标准", {}, None, scap), std, "DX")}
    assert rows == {"IQC-POSITION": 5.0, "IQC-MARKER": 5.0}
    rot = findings({"rotation_offset_mm": 40.0, "rotation_raw_mm": 5.0, "rotation_thorax_raw_mm": 3.0})
    assert {f.evidence[0].extra.get("kind") for f in rot} == {"rotation", "marker_wrong"}


def test_an_unreadable_lead_blob_leaves_the_letter_unread() -> None:
    """The pixel detector's reading wins; when it found the blob but not the letter, the
    analyser's coarse-grid letter is not used to call the marker wrong."""
    net = {"present": True, "text": "L", "side_of_image": "left", "box": [1, 5, 1, 5]}
    read = {"present": True, "text": "R", "side_of_image": "left", "box": [2, 9, 2, 8], "source": "pixels"}
    unread = {"present": True, "text": None, "side_of_image": "left", "box": [2, 9, 2, 8], "source": "pixels"}
    assert rq._combined_marker(net, read)["text"] == "R"
    assert rq._combined_marker(net, unread)["text"] is None
    assert rq._combined_marker(net, None)["text"] == "L"  # no blob at the maximum: the analyser's reading
    assert rq._combined_marker({"present": False}, unread) == unread
    from radqc.pipelines.image_qc.types import Evidence

    p = rq.load_params("DX-CHEST-PA")

    def value(pix: dict[str, Any]) -> str:
        v = rq._View("1.7", "PA", None)
        rq._positioning(v, type("A", (), {"masks": {}})(), {"posterior_ribs_above_right_dome": 10, "marker": net},
                        1.0, p, True,
                        lambda *a, **k: Evidence(series_uid="1.7", instance_index=0, measured=a[1], limit=a[2]), pix)
        return v.values["positioning"]

    assert value(read) == "标准"     # R on the image left of a PA: correct
    assert value(unread) == "标准"   # the analyser's 'L' on the left would have been called wrong
    assert value(dict(read, text="L")) == "不标准"
