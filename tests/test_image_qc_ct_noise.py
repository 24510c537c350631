"""CT expected-noise model (pipelines/image_qc/ct_noise.py) and its use in the CT noise measure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct, ct_noise
from radqc.pipelines.image_qc.measure_common import load_params


def _disc(radius_mm: float, hu: float, pixel: float = 1.0, n: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2) * pixel
    img = np.full((n, n), -1000.0)
    img[r <= radius_mm] = hu
    return img


def test_body_diameter_effective_and_water_equivalent() -> None:
    water = _disc(100.0, 0.0)
    assert ct_noise.body_diameter(water, (1.0, 1.0)) == pytest.approx(200.0, rel=0.02)
    assert ct_noise.body_diameter(water, (1.0, 1.0), "water_equivalent") == pytest.approx(200.0, rel=0.02)
    # fat attenuates less than water: the water-equivalent diameter is smaller, the geometric one is not
    fat = _disc(100.0, -100.0)
    assert ct_noise.body_diameter(fat, (1.0, 1.0), "water_equivalent") < 0.96 * ct_noise.body_diameter(fat, (1.0, 1.0))
    # pixel size is honoured
    assert ct_noise.body_diameter(_disc(100.0, 0.0, pixel=2.0), (2.0, 2.0)) == pytest.approx(200.0, rel=0.03)
    assert ct_noise.body_diameter(np.full((64, 64), -1000.0), (1.0, 1.0)) is None


def test_expected_sd_follows_dose_thickness_and_size() -> None:
    base = ct_noise.expected_sd(10.0, 300.0, 300.0, 2.0, 25.0, 25.0, 5.0)
    assert base == pytest.approx(10.0)
    # four times the dose halves the noise; a quarter of the thickness doubles it
    assert ct_noise.expected_sd(10.0, 300.0, 300.0, 2.0, 100.0, 25.0, 5.0) == pytest.approx(5.0)
    assert ct_noise.expected_sd(10.0, 300.0, 300.0, 2.0, 25.0, 25.0, 1.25) == pytest.approx(20.0)
    # a larger patient is noisier by (D / D_ref)^a; exponent 0 ignores size
    assert ct_noise.expected_sd(10.0, 360.0, 300.0, 2.0, 25.0, 25.0, 5.0) == pytest.approx(10.0 * 1.44)
    assert ct_noise.expected_sd(10.0, 360.0, 300.0, 0.0, 25.0, 25.0, 5.0) == pytest.approx(10.0)


def test_noise_model_limit_lookup_and_fallback() -> None:
    block = {"enabled": True, "sd_ref_hu": {"soft": 6.0, "bone": 30.0, "bone/knee": 15.0}, "max_ratio": {"soft": 2.0, "bone": 2.0},
             "size_exponent": {"default": 1.0, "knee": 0.0}, "size_ref_mm": 300.0, "size_ref_by_region_mm": {"neck": 150.0}}
    dose = {"ctdivol_ref_by_region": {"chest": 15.0, "abdomen": 25.0, "knee": 10.0}, "ctdivol_ref_mgy": 25.0, "ref_from": "item"}
    m = ct_noise.NoiseModel(block, dose)
    assert m.ctdi_ref("chest") == 15.0
    assert m.ctdi_ref("chest", ["chest", "abdomen"]) == 25.0  # an acquisition over both: the higher reference
    assert m.ctdi_ref(None) == 25.0
    exp, ratio, limit = m.limit("soft", "chest", 300.0, 15.0, 15.0, 5.0)
    assert (exp, ratio, limit) == pytest.approx((6.0, 2.0, 12.0))
    # a neck is judged against a neck's size, not a trunk's
    assert m.limit("soft", "neck", 150.0, 15.0, 15.0, 5.0)[0] == pytest.approx(6.0)
    # the knee's own reference, no size term
    assert m.limit("bone", "knee", 130.0, 10.0, 10.0, 5.0)[0] == pytest.approx(15.0)
    assert m.limit("bone", "chest", 300.0, 25.0, 25.0, 5.0)[0] == pytest.approx(30.0)
    # no CTDIvol, unknown class, or a disabled model: the fixed limit applies (None here)
    assert m.limit("soft", "chest", 300.0, None, 15.0, 5.0) is None
    assert m.limit("lung", "chest", 300.0, 15.0, 15.0, 5.0) is None
    assert ct_noise.NoiseModel({**block, "enabled": False}, dose).limit("soft", "chest", 300.0, 15.0, 15.0, 5.0) is None
    # an item's protocol scale raises the expected level (low-dose screening)
    assert ct_noise.NoiseModel(block, dose, 1.5).limit("soft", "chest", 300.0, 15.0, 15.0, 5.0)[0] == pytest.approx(9.0)


def test_same_sd_reads_differently_by_dose() -> None:
    """The point of the model: 12 HU is excess on a high-dose scan and normal on a low-dose one."""
    p = load_params("CT", "CT-UABD")
    m = ct_noise.NoiseModel(p["noise"].get("expected"), p.get("dose"))
    if not m.enabled:
        pytest.skip("expected-noise model disabled in ct.yaml")
    ref = m.ctdi_ref("abdomen")
    hi = m.limit("soft", "abdomen", 290.0, ref * 3.0, ref, 5.0)
    lo = m.limit("soft", "abdomen", 290.0, ref * 0.3, ref, 5.0)
    assert hi is not None and lo is not None
    assert hi[2] < lo[2]
    assert hi[2] == pytest.approx(lo[2] / math.sqrt(10.0), rel=1e-6)


def test_expected_details_are_readable() -> None:
    info = {"expected_sd_hu": 8.0, "max_ratio": 2.0, "limit_hu": 16.0, "body_diameter_mm": 290.0, "ctdivol_mgy": 12.0,
            "ctdivol_ref_mgy": 25.0, "region": "abdomen", "noise_class": "soft"}
    d = ct._expected_details(info, 20.0)
    assert d["noise_ratio"] == pytest.approx(2.5)
    assert d["expected_sd_hu"] == 8.0 and d["max_ratio"] == 2.0 and d["ctdivol_mgy"] == 12.0
    assert ct._expected_details(None, 20.0) == {}


def _head_in_circle(body_r: float, circle_r: float, blur_px: float, n: int = 96, pad: float = -2048.0) -> np.ndarray:
    from scipy import ndimage

    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    img = np.where(r <= body_r, 40.0, -1000.0)
    if blur_px:
        img = ndimage.gaussian_filter(img, blur_px)
    return np.where(r <= circle_r, img, pad)


def test_sharpness_edge_ignores_reconstruction_circle_padding() -> None:
    from radqc.pipelines.image_qc.measure_common import body_mask

    # a head filling most of a small FOV: the padding outside the circle outnumbers the air
    sharp = _head_in_circle(38.0, 46.0, 0.0)
    mask = body_mask(sharp)
    unpadded = _head_in_circle(38.0, 200.0, 0.0)
    reference = ct._edge_index_unpadded(unpadded, body_mask(unpadded), 40.0, -1500.0, 2)
    got = ct._edge_index_unpadded(sharp, mask, 40.0, -1500.0, 2)
    assert reference is not None and got is not None
    assert got == pytest.approx(reference, rel=0.05)
    # the old reading (median of everything outside the body) takes the padding for air: about half
    outside = float(np.median(sharp[~mask]))
    assert outside < -1500
    # a blurred body cut by the circle (truncated FOV): the razor edge at the circle is not read
    cut = _head_in_circle(60.0, 44.0, 2.5)
    v = ct._edge_index_unpadded(cut, body_mask(cut), 40.0, -1500.0, 2)
    assert v is None or v < 0.3
