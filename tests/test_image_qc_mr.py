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
    assert out["range"].value == NOT_ASSESSABLE and out["range"].details["reason_code"] == "no_mr_landmarks"


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
