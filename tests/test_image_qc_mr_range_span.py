"""MR head range without a sagittal series: the axial stack's craniocaudal span (mr._axial_span)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from radqc.pipelines.image_qc import mr
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.types import EvidenceSink, ExamImages, SeriesImages


def _axial(span_mm: float, n: int = 8, size: int = 64, thickness: float = 6.0) -> list[Any]:
    """Axial head slices (superior slice a small cap, so the vertex reads covered) spanning ``span_mm``."""
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(3)
    step = (span_mm - thickness) / (n - 1)
    out = []
    for k in range(n):
        r = 0.12 if k == n - 1 else 0.32
        disc = np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size * r) ** 2, 400.0, 0.0)
        img = np.hypot(disc + rng.normal(0, 4, disc.shape), rng.normal(0, 4, disc.shape)).astype(np.uint16)
        out.append(SimpleNamespace(pixel_array=img, ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                                   ImagePositionPatient=[0.0, 0.0, k * step], SliceThickness=thickness))
    return out


def _series(uid: str, sequence: str, slices: list[Any]) -> SeriesImages:
    header = SimpleNamespace(series_uid=uid, modality="MR", slice_thickness=6.0, n_instances=len(slices), plane="axial")
    label = SimpleNamespace(series_uid=uid, role="original", plane="axial", sequence=sequence, derived_type=None)
    return SeriesImages(header=header, label=label, datasets=lambda: slices, volume=lambda: None, radiograph=lambda: None)


def _exam(span_mm: float) -> ExamImages:
    series = [_series("t1", "T1W", _axial(span_mm)), _series("t2", "T2W", _axial(span_mm - 1.0))]
    return ExamImages(study_uid="1.7", modality="MR", standard_code="MR-BRAIN", item_codes=["MR.HEAD.ENH"], series=series)


@pytest.fixture
def brain() -> dict[str, Any]:
    return load_params("MR", "MR-BRAIN")


def test_short_axial_stack_without_sagittal_is_too_small(brain: dict[str, Any]) -> None:
    limit = float(brain["range"]["min_axial_span_mm"])
    res = mr._range(_exam(limit - 12.0), brain, EvidenceSink())
    assert res.value == "过小"
    assert [m["landmark"] for m in res.details["missing"]] == ["foramen_magnum"]
    f = res.findings[-1]
    assert f.check_id == "IQC-RANGE" and "枕骨大孔" in f.reason_zh and "foramen magnum" in f.reason_en
    assert f.evidence[0].measured == pytest.approx(limit - 12.0, abs=0.2)  # the longest axial series


def test_full_axial_stack_without_sagittal_stays_normal(brain: dict[str, Any]) -> None:
    res = mr._range(_exam(float(brain["range"]["min_axial_span_mm"]) + 15.0), brain, EvidenceSink())
    assert res.value == "正常"


def test_span_rule_off_without_its_key(brain: dict[str, Any]) -> None:
    p = {**brain, "range": {k: v for k, v in brain["range"].items() if k != "min_axial_span_mm"}}
    assert mr._range(_exam(80.0), p, EvidenceSink()).value == "正常"


# ---------------------------------------------------------------- noise limit of a blurred exam


def _disc_series(blur_px: float, noise: float) -> list[SeriesImages]:
    from tests.test_image_qc_mr import BRAIN, head_slices, mr_series

    return [mr_series(f"s{i}", seq, plane, slices=head_slices(noise=noise, blur_px=blur_px, seed=i))
            for i, (seq, plane) in enumerate(BRAIN)]


def _pixel(series: list[SeriesImages], p: dict[str, Any]) -> dict[str, Any]:
    exam = ExamImages(study_uid="1.8", modality="MR", standard_code="MR-BRAIN", item_codes=["MR.HEAD.PLAIN"], series=series)
    return mr._pixel_dims(exam, p, EvidenceSink())


def test_blurred_exam_is_held_to_the_blurred_noise_limit(brain: dict[str, Any]) -> None:
    base = float(brain["noise"]["max_noise_ratio"])
    blurred = _disc_series(3.0, 26.0)
    plain = _pixel(blurred, {**brain, "noise": {**brain["noise"], "max_noise_ratio_blurred": None}})
    ratio = plain["noise"].details["noise_ratio"]
    assert plain["sharpness"].value == "异常" and ratio > base  # noisy enough to break the sharp limit
    held = _pixel(blurred, {**brain, "noise": {**brain["noise"], "max_noise_ratio_blurred": ratio + 0.01}})
    assert held["noise"].value == "正常" and held["noise"].details["blurred"] is True
    assert held["noise"].details["limit"] == pytest.approx(ratio + 0.01)
    # a sharp exam with the same noise keeps the sharp limit
    sharp = _pixel(_disc_series(0.0, 26.0), {**brain, "noise": {**brain["noise"], "max_noise_ratio_blurred": 1.0}})
    assert sharp["sharpness"].value == "正常" and sharp["noise"].details["limit"] == pytest.approx(base)
    assert sharp["noise"].value == "异常"


def test_blurred_noise_limit_is_configured_above_the_sharp_one(brain: dict[str, Any]) -> None:
    assert float(brain["noise"]["max_noise_ratio_blurred"]) > float(brain["noise"]["max_noise_ratio"])
