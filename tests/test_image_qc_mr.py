"""MR image-QC measures: sequence completeness, noise, sharpness, slice thickness (synthetic arrays)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from radqc.pipelines.image_qc import mr
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.types import (
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    EvidenceSink,
    ExamImages,
    SeriesImages,
)


def head_slices(n: int = 5, size: int = 96, noise: float = 4.0, blur_px: float = 0.0, seed: int = 0) -> list[Any]:
    """Magnitude images of a bright disc on a dark background (Rician-like noise via |complex|)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size * 0.32) ** 2, 400.0, 0.0)
    if blur_px:
        disc = ndimage.gaussian_filter(disc, blur_px)
    out = []
    for _ in range(n):
        re = disc + rng.normal(0, noise, disc.shape)
        im = rng.normal(0, noise, disc.shape)
        out.append(SimpleNamespace(pixel_array=np.hypot(re, im).astype(np.uint16)))
    return out


def mr_series(uid: str, sequence: str, plane: str, *, thickness: float = 5.0, slices: list[Any] | None = None) -> SeriesImages:
    data = slices if slices is not None else head_slices()
    header = SimpleNamespace(series_uid=uid, modality="MR", slice_thickness=thickness, n_instances=len(data), plane=plane)
    label = SimpleNamespace(series_uid=uid, role="original", plane=plane, sequence=sequence, derived_type=None)
    return SeriesImages(header=header, label=label, datasets=lambda: data, volume=lambda: None, radiograph=lambda: None)


BRAIN = [("T1W", "axial"), ("T2W", "axial"), ("FLAIR", "axial"), ("DWI", "axial"), ("ADC", "axial"), ("T1W", "sagittal")]


def brain_exam(drop: str | None = None, **kwargs: Any) -> ExamImages:
    series = [mr_series(f"s{i}", seq, plane, **kwargs) for i, (seq, plane) in enumerate(BRAIN) if seq != drop]
    return ExamImages(study_uid="1.3", modality="MR", standard_code="MR-BRAIN", item_codes=["MR.HEAD.PLAIN"], series=series)


@pytest.fixture
def brain() -> dict[str, Any]:
    return load_params("MR", "MR-BRAIN")


def test_complete_brain_exam(brain: dict[str, Any]) -> None:
    out = mr.measure_mr(brain_exam(), brain, EvidenceSink())
    assert out["sequences"].value == "完整" and out["sequences"].details["missing"] == []
    assert out["noise"].value == "正常"
    assert out["sharpness"].value == "正常"
    assert out["reconstruction"].value == "正常"
    assert "artifact" not in out
    for dim in ("centring", "window", "dose", "positioning"):
        assert out[dim].value == NOT_APPLICABLE and out[dim].reason
    # the head disc sits inside the sagittal field of view: the vertex is covered
    assert out["range"].value == "正常"


@pytest.mark.parametrize("drop", ["FLAIR", "DWI", "ADC"])
def test_missing_sequence_is_named(brain: dict[str, Any], drop: str) -> None:
    r = mr.measure_mr(brain_exam(drop=drop), brain, EvidenceSink())["sequences"]
    assert r.value == "不完整"
    assert [m["sequence"] for m in r.details["missing"]] == [drop]
    assert r.findings[0].check_id == "IQC-SEQUENCE" and drop in r.findings[0].reason_en


def test_sagittal_needed_for_brain(brain: dict[str, Any]) -> None:
    exam = brain_exam()
    exam.series = [s for s in exam.series if s.label.plane != "sagittal"]
    r = mr.measure_mr(exam, brain, EvidenceSink())["sequences"]
    assert r.value == "不完整" and r.details["missing"][0]["plane"] == "sagittal"


def test_knee_needs_three_planes() -> None:
    params = load_params("MR", "MR-KNEE")
    series = [mr_series("a", "T1W", "coronal"), mr_series("b", "PD", "sagittal")]
    exam = ExamImages(study_uid="1.4", modality="MR", standard_code="MR-KNEE", series=series)
    r = mr.measure_mr(exam, params, EvidenceSink())["sequences"]
    assert r.value == "不完整" and [m["plane"] for m in r.details["missing"]] == ["axial"]
    exam.series.append(mr_series("c", "T2W", "axial"))
    assert mr.measure_mr(exam, params, EvidenceSink())["sequences"].value == "完整"


def test_noise_and_blur_and_thickness(brain: dict[str, Any]) -> None:
    noisy = mr.measure_mr(brain_exam(slices=head_slices(noise=40.0)), brain, EvidenceSink())
    assert noisy["noise"].value == "异常" and noisy["noise"].findings[0].check_id == "IQC-NOISE"
    blurred = mr.measure_mr(brain_exam(slices=head_slices(blur_px=4.0)), brain, EvidenceSink())
    assert blurred["sharpness"].value == "异常"
    thick = mr.measure_mr(brain_exam(thickness=8.0), brain, EvidenceSink())
    assert thick["reconstruction"].value == "异常" and "8 mm" in thick["reconstruction"].findings[0].reason_en


def test_unknown_item_has_no_sequence_set() -> None:
    params = load_params("MR", None)
    exam = ExamImages(study_uid="1.5", modality="MR", standard_code=None, series=[mr_series("a", "T1W", "axial")])
    r = mr.measure_mr(exam, params, EvidenceSink())["sequences"]
    assert r.value == NOT_ASSESSABLE and r.details["reason_code"] == "no_required_set"
    assert params["_notes"]


# ---------------------------------------------------------------- range (head vertex coverage)


def _sag_head(shift_rows: int, n: int = 4, size: int = 96) -> list[Any]:
    """Sagittal slices (rows head -> foot) of a head disc shifted up by ``shift_rows``: a large shift
    pushes the vertex out through the top edge, as a field of view placed too low does."""
    out = []
    for s in head_slices(n=n, size=size, seed=3):
        img = np.roll(s.pixel_array, -shift_rows, axis=0)
        if shift_rows > 0:
            img[-shift_rows:] = img[-shift_rows - 1]
        out.append(SimpleNamespace(pixel_array=img, ImageOrientationPatient=[0, 1, 0, 0, 0, -1]))
    return out


def _axial_head(first_area: float, size: int = 96) -> list[Any]:
    """Axial slices listed inferior first; the most superior slice's disc has ``first_area`` of the largest."""
    radii = [0.32, 0.32, 0.30, 0.32 * float(np.sqrt(first_area))]
    zs = [0.0, 40.0, 80.0, 120.0]  # a brain-sized stack (MR-BRAIN min_axial_span_mm: a shorter one is cut)
    out = []
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(5)
    for r, z in zip(radii, zs, strict=True):
        disc = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size * r) ** 2, 400.0, 0.0)
        img = np.hypot(disc + rng.normal(0, 4, disc.shape), rng.normal(0, 4, disc.shape)).astype(np.uint16)
        out.append(SimpleNamespace(pixel_array=img, ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                                   ImagePositionPatient=[0.0, 0.0, z]))
    return out


def _exam_with(series: list[SeriesImages], code: str = "MR-BRAIN") -> ExamImages:
    return ExamImages(study_uid="1.9", modality="MR", standard_code=code, series=series)


def test_head_range_normal_when_vertex_inside(brain: dict[str, Any]) -> None:
    exam = _exam_with([mr_series("sag", "T1W", "sagittal", slices=_sag_head(0))])
    res = mr._range(exam, brain, EvidenceSink())
    assert res.value == "正常"
    assert res.details["series"][0]["value"] < brain["range"]["max_top_row_tissue"]


def test_head_range_too_small_when_vertex_cut(brain: dict[str, Any]) -> None:
    exam = _exam_with([mr_series("sag", "T1W", "sagittal", slices=_sag_head(30))])
    res = mr._range(exam, brain, EvidenceSink())
    assert res.value == "过小"
    assert res.findings[0].check_id == "IQC-RANGE"
    assert "颅顶" in res.findings[0].reason_zh and "vertex" in res.findings[0].reason_en
    assert res.findings[0].evidence[0].extra["landmark"] == "vertex"


def test_head_range_from_axial_stack_uses_superior_slice(brain: dict[str, Any]) -> None:
    # the datasets come inferior first: the measure must order them by position, superior first
    cut = mr._range(_exam_with([mr_series("ax", "T1W", "axial", slices=_axial_head(0.9))]), brain, EvidenceSink())
    full = mr._range(_exam_with([mr_series("ax", "T1W", "axial", slices=_axial_head(0.15))]), brain, EvidenceSink())
    assert cut.value == "过小"
    assert full.value == "正常"


def test_head_range_without_geometry_not_assessable(brain: dict[str, Any]) -> None:
    # axial slices without positions cannot say which end is superior; DWI is never used
    exam = _exam_with([mr_series("ax", "T1W", "axial"), mr_series("dwi", "DWI", "sagittal", slices=_sag_head(30))])
    res = mr._range(exam, brain, EvidenceSink())
    assert res.value == NOT_ASSESSABLE
    assert res.details["reason_code"] == "no_head_geometry"


def atlas_slices(region: str, plane: str, sequence: str, shift_mm: float, *, rows: int = 80, spacing: float = 2.0,
                 n: int = 5, seed: int = 0) -> list[Any]:
    """Sagittal/coronal images whose superior-inferior profile is the atlas profile moved by ``shift_mm``.

    The field centre lies at atlas position ``shift_mm`` (positive: the field sits lower on the
    anatomy), as for a knee or spine planned too low/high; noise makes the match work for it."""
    from radqc.pipelines.image_qc.mr_range_atlas import atlas_key, load_atlas

    tpl = load_atlas()[atlas_key(region, plane, sequence)]
    grid = tpl["start_mm"] + 2.0 * np.arange(len(tpl["values"]))
    offsets = (np.arange(rows) - (rows - 1) / 2) * spacing
    profile = np.interp(offsets + shift_mm, grid, np.asarray(tpl["values"])) * 1000.0
    iop = [0, 1, 0, 0, 0, -1] if plane == "sagittal" else [1, 0, 0, 0, 0, -1]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.repeat(profile[:, None], 64, axis=1) + rng.normal(0, 20, (rows, 64))
        out.append(SimpleNamespace(pixel_array=np.clip(img, 0, None).astype(np.uint16), ImageOrientationPatient=iop,
                                   PixelSpacing=[spacing, spacing]))
    return out


def _knee(shift: float, seed: int = 0) -> ExamImages:
    return _exam_with([mr_series("sag", "PD", "sagittal", slices=atlas_slices("knee", "sagittal", "PD", shift, seed=seed)),
                       mr_series("cor", "PD", "coronal", slices=atlas_slices("knee", "coronal", "PD", shift, seed=seed + 1)),
                       mr_series("ax", "T2W", "axial")], code="MR-KNEE")


def test_atlas_match_recovers_the_shift() -> None:
    from radqc.pipelines.image_qc import mr_range_atlas as atlas_mod

    for shift in (-40.0, 0.0, 26.0):
        s = mr_series("sag", "T1W", "sagittal", slices=atlas_slices("lumbar_spine", "sagittal", "T1W", shift, rows=128))
        prof = atlas_mod.series_profile(s)
        assert prof is not None and prof["half_mm"] == pytest.approx(128.0)
        tpl = atlas_mod.load_atlas()[atlas_mod.atlas_key("lumbar_spine", "sagittal", "T1W")]
        found = atlas_mod.match(prof, tpl, 130, 120)
        assert found is not None
        assert abs(found[0] - shift) <= 4.0 and found[1] > 0.9


def test_every_atlas_item_has_its_profiles() -> None:
    from radqc.pipelines.image_qc.mr_range_atlas import load_atlas

    regions = {str(k).split(":")[0] for k in load_atlas()}
    for code in ("MR-KNEE", "MR-LSPINE"):
        p = load_params("MR", code)["range"]
        assert p["method"] == "atlas" and p["atlas_region"] in regions
        assert p["landmarks"]["top"]["at_mm"] < 0 < p["landmarks"]["bottom"]["at_mm"]


def test_knee_range_normal_when_field_is_centred_on_the_joint() -> None:
    res = mr._range(_knee(0.0), load_params("MR", "MR-KNEE"), EvidenceSink())
    assert res.value == "正常", res.details
    assert res.details["method"] == "atlas_profile" and len([r for r in res.details["series"] if r["used"]]) == 2


@pytest.mark.parametrize(("shift", "end", "zh"), [(40.0, "top", "股骨远端"), (-40.0, "bottom", "胫骨近端")])
def test_knee_range_too_small_names_the_missing_end(shift: float, end: str, zh: str) -> None:
    sink = EvidenceSink()
    res = mr._range(_knee(shift), load_params("MR", "MR-KNEE"), sink)
    assert res.value == "过小", res.details
    assert [m["end"] for m in res.details["missing"]] == [end]
    f = res.findings[0]
    assert f.check_id == "IQC-RANGE" and zh in f.reason_zh and "not covered" in f.reason_en
    assert f.evidence[0].limit == load_params("MR", "MR-KNEE")["range"]["landmarks"][end]["at_mm"]


def test_lumbar_range_cut_at_the_sacrum() -> None:
    slices = atlas_slices("lumbar_spine", "sagittal", "T2W", -80.0, rows=128)
    exam = _exam_with([mr_series("t2", "T2W", "sagittal", slices=slices)], code="MR-LSPINE")
    res = mr._range(exam, load_params("MR", "MR-LSPINE"), EvidenceSink())
    assert res.value == "过小" and res.details["missing"][0]["landmark"] == "S1"
    ok = _exam_with([mr_series("t2", "T2W", "sagittal", slices=atlas_slices("lumbar_spine", "sagittal", "T2W", 0.0, rows=128))],
                    code="MR-LSPINE")
    assert mr._range(ok, load_params("MR", "MR-LSPINE"), EvidenceSink()).value == "正常"


def test_knee_range_without_sagittal_or_coronal_not_assessable() -> None:
    # an axial-only knee (or one whose images match no atlas profile) gives no superior-inferior extent
    params = load_params("MR", "MR-KNEE")
    exam = _exam_with([mr_series("ax", "T2W", "axial")], code="MR-KNEE")
    res = mr._range(exam, params, EvidenceSink())
    assert res.value == NOT_ASSESSABLE
    assert res.details["reason_code"] == "no_atlas_match"
    flat = _exam_with([mr_series("sag", "PD", "sagittal", slices=[SimpleNamespace(
        pixel_array=np.full((80, 64), 500, np.uint16), ImageOrientationPatient=[0, 1, 0, 0, 0, -1], PixelSpacing=[2, 2])] * 4)],
        code="MR-KNEE")
    assert mr._range(flat, params, EvidenceSink()).value == NOT_ASSESSABLE


def test_shoulder_range_stays_not_assessable_with_reason() -> None:
    # the generator renders no shoulder MR: no atlas, so the item's reason from mr.yaml is given
    params = load_params("MR", "MR-SHOULDER")
    exam = _exam_with([mr_series("sag", "T2W", "sagittal", slices=_sag_head(30))], code="MR-SHOULDER")
    res = mr._range(exam, params, EvidenceSink())
    assert res.value == NOT_ASSESSABLE
    assert res.details["reason_code"] == "no_mr_landmarks"
    assert "图谱" in (res.reason or "")


def _cspine(shift: float) -> ExamImages:
    return _exam_with([mr_series("t1", "T1W", "sagittal", slices=atlas_slices("cervical_spine", "sagittal", "T1W", shift, rows=115)),
                       mr_series("t2", "T2W", "sagittal", slices=atlas_slices("cervical_spine", "sagittal", "T2W", shift, rows=115,
                                                                               seed=1)),
                       mr_series("ax", "T2W", "axial")], code="MR-CSPINE")


def test_cervical_spine_range_by_the_atlas() -> None:
    params = load_params("MR", "MR-CSPINE")
    assert params["range"]["method"] == "atlas" and params["range"]["atlas_region"] == "cervical_spine"
    ok = mr._range(_cspine(0.0), params, EvidenceSink())
    assert ok.value == "正常", ok.details
    assert len([r for r in ok.details["series"] if r["used"]]) == 2


@pytest.mark.parametrize(("shift", "landmark", "zh"), [(80.0, "C1", "寰椎"), (-80.0, "T1", "第1胸椎")])
def test_cervical_spine_cut_names_the_missing_vertebra(shift: float, landmark: str, zh: str) -> None:
    # the field moved 80 mm down misses C1 at the top; moved up, it misses T1 at the bottom
    res = mr._range(_cspine(shift), load_params("MR", "MR-CSPINE"), EvidenceSink())
    assert res.value == "过小", res.details
    assert [m["landmark"] for m in res.details["missing"]] == [landmark]
    assert zh in res.findings[0].reason_zh and res.findings[0].check_id == "IQC-RANGE"


def test_render_spine_set_writes_truth_that_follows_the_applied_cut(tmp_path: Any) -> None:
    import json

    from radqc.pipelines.image_qc import mr_range_atlas as atlas_mod

    assert atlas_mod.render_spine_set(tmp_path, 7299, 4, ["cervical_spine"]) == 4
    truths = [json.loads(f.read_text(encoding="utf-8")) for f in sorted((tmp_path / "truth").glob("*.json"))]
    assert len(truths) == 4
    for t in truths:
        cut = [d for d in t["imaging"]["applied_defects"] if d["dimension"] == "range"]
        assert t["expected_qc"]["dimensions"]["range"] == ("过小" if cut else "正常")
        assert list((tmp_path / "dicom" / "H" / t["exam_key"]).glob("*/*.dcm"))
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["command"].startswith("python -m radqc.pipelines.image_qc.mr_range_atlas render")
    assert "render" in atlas_mod._source(str(tmp_path))


# ---------------------------------------------------------------- noise / sharpness over the exam


def test_noise_is_judged_on_the_least_noisy_series(brain: dict[str, Any]) -> None:
    # one series with a raised background (ghosting, wrap) is not excess noise: the others are clean
    series = [mr_series(f"s{i}", seq, plane, slices=head_slices(noise=40.0 if i == 0 else 4.0, seed=i))
              for i, (seq, plane) in enumerate(BRAIN)]
    res = mr.measure_mr(_exam_with(series), brain, EvidenceSink())["noise"]
    assert res.value == "正常", res.details
    assert max(r["noise_ratio"] for r in res.details["series"]) > brain["noise"]["max_noise_ratio"]
    # every series noisy: 异常, and the finding names the least noisy series' reading
    noisy = [mr_series(f"s{i}", seq, plane, slices=head_slices(noise=40.0 + 5 * i, seed=i)) for i, (seq, plane) in enumerate(BRAIN)]
    bad = mr.measure_mr(_exam_with(noisy), brain, EvidenceSink())["noise"]
    assert bad.value == "异常" and bad.findings[0].check_id == "IQC-NOISE"
    assert bad.findings[0].evidence[0].series_uid == "s0"
    assert bad.details["noise_ratio"] == min(r["noise_ratio"] for r in bad.details["series"])


def test_noise_ratio_does_not_depend_on_the_tissue_contrast() -> None:
    # the same noise on a dim and a bright disc (T1W knee vs FLAIR head) against the brightest tissue
    from scipy import ndimage  # noqa: F401 - the measure needs scipy

    dim = mr._noise_and_edges(mr_series("a", "T1W", "axial", slices=head_slices(noise=4.0, seed=1)))
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:96, 0:96]
    r2 = (yy - 48) ** 2 + (xx - 48) ** 2
    # a disc with a dim core (most tissue dark) and a bright rim: its median tissue signal is low
    body = np.where(r2 <= (96 * 0.32) ** 2, np.where(r2 <= (96 * 0.25) ** 2, 100.0, 400.0), 0.0)
    slices = [SimpleNamespace(pixel_array=np.hypot(body + rng.normal(0, 4, body.shape), rng.normal(0, 4, body.shape)).astype(np.uint16))
              for _ in range(5)]
    rim = mr._noise_and_edges(mr_series("b", "T1W", "axial", slices=slices))
    a = float(np.median([v for v, _ in dim["ratios"]]))
    b = float(np.median([v for v, _ in rim["ratios"]]))
    assert a == pytest.approx(b, rel=0.25)


def test_one_soft_series_is_not_blur(brain: dict[str, Any]) -> None:
    # one series with a soft boundary (a dark fat-suppressed edge, a lower matrix) among sharp ones
    series = [mr_series(f"s{i}", seq, plane, slices=head_slices(blur_px=1.5 if i == 0 else 0.0, seed=i))
              for i, (seq, plane) in enumerate(BRAIN)]
    res = mr.measure_mr(_exam_with(series), brain, EvidenceSink())["sharpness"]
    assert res.value == "正常", res.details
    assert min(r["edge_index"] for r in res.details["series"]) < brain["sharpness"]["min_index"]
    blurred = [mr_series(f"s{i}", seq, plane, slices=head_slices(blur_px=3.0, seed=i)) for i, (seq, plane) in enumerate(BRAIN)]
    bad = mr.measure_mr(_exam_with(blurred), brain, EvidenceSink())["sharpness"]
    assert bad.value == "异常" and bad.findings[0].check_id == "IQC-SHARPNESS"
    assert bad.details["aggregate"] == brain["sharpness"]["aggregate"]


def _head_sag(shift: float) -> list[Any]:
    """Sagittal head images following the head atlas profile moved by ``shift`` (mm)."""
    return atlas_slices("head", "sagittal", "T2W", shift, rows=120, spacing=2.0)


def test_skull_base_cut_is_found_by_the_head_atlas(brain: dict[str, Any]) -> None:
    # the field moved 90 mm up: the vertex is in view (air above the head), the foramen magnum is not
    sag = _head_sag(-90.0)
    exam = _exam_with([mr_series("sag", "T2W", "sagittal", slices=sag)])
    res = mr._range(exam, brain, EvidenceSink())
    assert res.value == "过小", res.details
    assert [m["landmark"] for m in res.details["missing"]] == ["foramen_magnum"]
    assert "枕骨大孔" in res.findings[-1].reason_zh and "foramen magnum" in res.findings[-1].reason_en
    assert "reason_code" not in res.details


def test_head_atlas_leaves_a_well_planned_head_alone(brain: dict[str, Any]) -> None:
    exam = _exam_with([mr_series("sag", "T2W", "sagittal", slices=_head_sag(0.0))])
    res = mr._range(exam, brain, EvidenceSink())
    assert res.details["skull_base"]["value"] == "正常"
    assert not any(m.get("landmark") == "foramen_magnum" for m in res.details.get("missing", []))


# ---------------------------------------------------------------- combined orders, poor matches


def _with_region(series: SeriesImages, region: str) -> SeriesImages:
    series.label.region = region
    return series


def test_combined_brain_and_lumbar_order_reads_head_series_as_the_brain() -> None:
    # scored under MR-LSPINE, but every series is the head's: the head measure reads them and the
    # lumbar part, with no series of its own, is listed instead of registering head images to the spine
    head = [_with_region(mr_series("sag", "T2W", "sagittal", slices=_head_sag(0.0)), "head")]
    exam = ExamImages(study_uid="2.1", modality="MR", standard_code="MR-LSPINE",
                      item_codes=["MR.HEAD.PLAIN", "MR.LSPINE.PLAIN"], series=head)
    res = mr._range(exam, load_params("MR", "MR-LSPINE"), EvidenceSink())
    assert res.value == "正常", res.details
    assert res.details["parts"]["MR-BRAIN"]["value"] == "正常"
    assert res.details["parts"]["MR-LSPINE"]["reason_code"] == "no_series_of_part"
    # the same images under a lumbar-only order are the lumbar item's: no split
    alone = ExamImages(study_uid="2.2", modality="MR", standard_code="MR-LSPINE", item_codes=["MR.LSPINE.PLAIN"], series=head)
    assert "parts" not in mr._range(alone, load_params("MR", "MR-LSPINE"), EvidenceSink()).details


def test_combined_order_reports_a_cut_in_either_part() -> None:
    head = _with_region(mr_series("sag", "T2W", "sagittal", slices=_head_sag(0.0)), "head")
    spine = _with_region(mr_series("t2", "T2W", "sagittal", slices=atlas_slices("lumbar_spine", "sagittal", "T2W", -80.0, rows=128)),
                         "abdomen")
    exam = ExamImages(study_uid="2.3", modality="MR", standard_code="MR-LSPINE",
                      item_codes=["MR.HEAD.PLAIN", "MR.LSPINE.PLAIN"], series=[head, spine])
    res = mr._range(exam, load_params("MR", "MR-LSPINE"), EvidenceSink())
    assert res.value == "过小", res.details
    assert res.details["parts"]["MR-BRAIN"]["value"] == "正常"
    assert [m["landmark"] for m in res.details["missing"]] == ["S1"]


def test_a_series_matching_far_worse_than_the_best_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # the coronal series matches centred at 0.90; the sagittal one (ghosted) only at 0.60 and 70 mm
    # too high: it must not pull the median field edges (of two series, their mean) up
    from radqc.pipelines.image_qc import mr_range_atlas as atlas_mod

    params = load_params("MR", "MR-KNEE")
    answers = iter([(-70.0, 0.60), (0.0, 0.90)])
    monkeypatch.setattr(atlas_mod, "match", lambda *_a, **_k: next(answers))
    exam = _exam_with([mr_series("sag", "PD", "sagittal", slices=atlas_slices("knee", "sagittal", "PD", 0.0)),
                       mr_series("cor", "PD", "coronal", slices=atlas_slices("knee", "coronal", "PD", 0.0))], code="MR-KNEE")
    res = mr._range(exam, params, EvidenceSink())
    rows = {r["series_uid"]: r for r in res.details["series"]}
    assert rows["cor"]["used"]
    assert not rows["sag"]["used"] and rows["sag"]["not_used"] == "correlation_below_best"
    assert res.value == "正常", res.details
    # without the rule the two series' median edges miss the proximal tibia
    params["range"]["max_correlation_below_best"] = None
    answers = iter([(-70.0, 0.60), (0.0, 0.90)])
    assert mr._range(exam, params, EvidenceSink()).value == "过小"


def test_combined_order_holds_head_series_to_the_brain_thickness() -> None:
    # 6 mm head slices are standard for the brain (<= 6) but not for the lumbar spine (<= 4.5)
    params = load_params("MR", "MR-LSPINE")
    head = _with_region(mr_series("ax", "T2W", "axial", thickness=6.0), "head")
    spine = _with_region(mr_series("sag", "T2W", "sagittal", thickness=4.0), "abdomen")
    exam = ExamImages(study_uid="2.4", modality="MR", standard_code="MR-LSPINE",
                      item_codes=["MR.HEAD.PLAIN", "MR.LSPINE.PLAIN"], series=[head, spine])
    res = mr._reconstruction(exam, params)
    assert res.value == "正常", res.details
    assert res.details["limits_by_part"] == {"MR-BRAIN": 6.0, "MR-LSPINE": 4.5}
    thick = _with_region(mr_series("sag", "T2W", "sagittal", thickness=6.0), "abdomen")
    exam.series = [head, thick]
    bad = mr._reconstruction(exam, params)
    assert bad.value == "异常" and [f.evidence[0].series_uid for f in bad.findings] == ["sag"]


def test_noise_sigma_from_a_background_that_is_not_rayleigh() -> None:
    # a zeroed background (scanner masking) reads no noise; signed Gaussian noise around an offset
    # (post-processed or simulated images) has its median at the offset but is caught by its spread
    yy, xx = np.mgrid[0:96, 0:96]
    body = np.where((yy - 48) ** 2 + (xx - 48) ** 2 <= 30 ** 2, 800.0, 0.0)
    near = np.zeros(body.shape, dtype=bool)
    near[14:82, 14:82] = True
    assert mr._background_sigma(body, near) == 0.0
    rng = np.random.default_rng(3)
    noisy = body + 8.0 + rng.normal(0, 60.0, body.shape)
    assert mr._background_sigma(noisy, near) == pytest.approx(60.0 * 0.6745 / 0.449, rel=0.1)
    rayleigh = body + rng.rayleigh(20.0, body.shape)
    assert mr._background_sigma(rayleigh, near) == pytest.approx(20.0, rel=0.1)


def test_blur_is_found_under_excess_noise(brain: dict[str, Any]) -> None:
    # noise lifts the boundary gradient: a blurred and noisy exam read sharp before the correction
    series = [mr_series(f"s{i}", seq, plane, slices=head_slices(noise=60.0, blur_px=1.0, seed=i)) for i, (seq, plane) in enumerate(BRAIN)]
    res = mr.measure_mr(_exam_with(series), brain, EvidenceSink())
    assert res["sharpness"].value == "异常", res["sharpness"].details
    assert res["noise"].value == "异常"
    uncorrected = {**brain, "sharpness": {**brain["sharpness"], "noise_correction": 0.0}}
    assert mr.measure_mr(_exam_with(series), uncorrected, EvidenceSink())["sharpness"].value == "正常"
    # the same noise on sharp edges stays sharp
    sharp = [mr_series(f"s{i}", seq, plane, slices=head_slices(noise=60.0, seed=i)) for i, (seq, plane) in enumerate(BRAIN)]
    assert mr.measure_mr(_exam_with(sharp), brain, EvidenceSink())["sharpness"].value == "正常"
