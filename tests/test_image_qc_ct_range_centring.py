"""CT centring per-axis limits and the pubic symphysis read on the pixels (CTR5, 2026-11-24)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.types import EvidenceSink
from tests.test_image_qc_ct import exam, phantom, series


@pytest.fixture
def chest_params() -> dict[str, Any]:
    return load_params("CT", "CT-CHEST-PLAIN")


def test_centring_axis_limits_are_configured(chest_params: dict[str, Any]) -> None:
    axis = chest_params["centring"]["axis_limit_mm"]
    assert float(axis["x"]) < float(axis["y"])


def test_centred_patient_off_both_axes_is_normal(chest_params: dict[str, Any]) -> None:
    # 21 mm up and 12 mm right: 24 mm from the centre, past one 20.5 mm radius, but within each axis' limit
    r = ct._centring(exam(series("s1", phantom(shift_px=(-7, 4), noise=2.0))), chest_params, EvidenceSink(), {})
    assert r.details["offset_mm"] > 20.5
    assert r.value == "正常"


def test_lateral_offset_past_its_axis_limit(chest_params: dict[str, Any]) -> None:
    # 18 mm to the right: within a 20.5 mm radius, past the lateral limit
    r = ct._centring(exam(series("s1", phantom(shift_px=(0, 6), noise=2.0))), chest_params, EvidenceSink(), {})
    assert r.value == "偏右"
    assert r.findings and r.findings[0].evidence[0].limit == pytest.approx(float(chest_params["centring"]["axis_limit_mm"]["x"]))


def _pelvis_slice(bone: list[tuple[int, int]], size: int = 128) -> np.ndarray:
    """A soft-tissue ellipse (2 mm pixels) with 8-px bone discs (700 HU) centred at (row, col)."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    img = np.where(((yy - c) / 45.0) ** 2 + ((xx - c) / 60.0) ** 2 <= 1.0, 40.0, -1000.0)
    for r0, c0 in bone:
        img[(yy - r0) ** 2 + (xx - c0) ** 2 <= 16] = 700.0
    return (img + np.random.default_rng(0).normal(0, 20.0, img.shape)).astype(np.float32)


@pytest.mark.parametrize(("bone", "seen"), [
    ([(30, 57), (30, 70)], True),     # both pubic bones in front, either side of the midline
    ([(30, 57)], False),              # one side only (a ramus, a calcification)
    ([(100, 57), (100, 70)], False),  # behind the body's centre (sacrum, coccyx)
    ([(30, 20), (30, 107)], False),   # far off the midline (acetabula, femoral heads)
])
def test_symphysis_area(bone: list[tuple[int, int]], seen: bool) -> None:
    sp = load_params("CT", "CT-ABD-PELVIS")["range"]["symphysis_pixels"]
    area = ct._symphysis_area(_pelvis_slice(bone), 2.0, sp)
    assert (area >= float(sp["min_side_mm2"])) == seen
