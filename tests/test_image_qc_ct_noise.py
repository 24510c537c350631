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


def _noisy_stack(sd: float, n_slices: int = 6, n: int = 128, corr_px: float = 2.0, seed: int = 0) -> ct._Stack:
    """Slices of a soft-tissue disc (40 HU, a -100 HU fat ring) with independent, spatially correlated
    noise of SD ``sd`` per slice (low-frequency grain, like a soft reconstruction kernel)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    base = np.where(r <= 55, 40.0, -1000.0)
    base[(r > 45) & (r <= 50)] = -100.0
    slices = []
    for _ in range(n_slices):
        field = ndimage.gaussian_filter(rng.standard_normal((n, n)), corr_px)
        slices.append(base + sd * field / field.std())
    return stack_of(slices)


def stack_of(slices: list[np.ndarray], thickness_mm: float = 5.0) -> ct._Stack:
    """A contiguous axial stack of ``slices`` (1 mm pixels, slices ``thickness_mm`` apart), built
    without DICOM files for the noise estimators."""
    stack = ct._Stack.__new__(ct._Stack)
    stack.hu = np.stack(slices)
    stack.z = np.arange(len(slices)) * thickness_mm
    stack.thickness = thickness_mm
    stack.source_index = None
    stack.spacing = (1.0, 1.0)
    return stack


def test_difference_noise_reads_correlated_noise_in_full() -> None:
    """The slice-difference estimate reads the whole noise SD; the 3x3 residual misses correlated noise."""
    stack = _noisy_stack(20.0)
    whole = ct._difference_noise(stack)
    assert whole is not None and whole == pytest.approx(20.0, rel=0.12)
    highpass = ct._series_noise(stack, 50.0)
    assert highpass is not None and highpass[0] < 0.8 * whole
    # it scales with the noise: twice the SD reads twice as high
    double = ct._difference_noise(_noisy_stack(40.0))
    assert double is not None and double == pytest.approx(2.0 * whole, rel=0.12)
    # overlapping slices (spacing below 0.9 x thickness) share noise: no pair, no reading
    stack.z = np.arange(stack.hu.shape[0]) * 2.0
    assert ct._difference_noise(stack) is None


def test_difference_estimate_decides_correlated_excess() -> None:
    """Correlated noise the 3x3 residual under-reads: the slice-difference SD against the fixed limit
    x limit_factor finds the excess (``difference.decide: limit``); with ``report`` the old reading passes it."""
    from tests.test_image_qc_ct import RecordingSink, exam, series

    params = load_params("CT", "CT-CHEST-PLAIN")
    # the fixed-limit mode (what a series without CTDIvol or a site's rules get); the shipped rules
    # decide by the ratio to the expected level, tested in test_image_qc_ct_noise_size.py
    params = {**params, "noise": {**params["noise"], "difference": {**params["noise"]["difference"], "decide": "limit"}}}
    factor = float(params["noise"]["difference"]["limit_factor"]["soft"])
    fixed = float(params["noise"]["sd_limit_hu"]["soft"])
    # grain like the generator's soft kernel: the 3x3 residual reads ~0.45 x the whole SD
    noisy = _noisy_stack(1.6 * fixed * factor, n_slices=8, corr_px=1.0, seed=3).hu.astype(np.float32)
    r = ct.measure_ct(exam(series("s", noisy)), params, RecordingSink())["noise"]
    assert r.value == "异常", r.details
    assert r.details["estimator"] == "difference"
    assert r.details["limit_hu"] == pytest.approx(fixed * factor, rel=1e-3)
    old = {**params, "noise": {**params["noise"], "difference": {**params["noise"]["difference"], "decide": "report"}}}
    r_old = ct.measure_ct(exam(series("s", noisy)), old, RecordingSink())["noise"]
    assert r_old.details["estimator"] == "highpass"
    assert r_old.details["sd_hu"] < 0.8 * r.details["sd_hu"]
    # the whole-band SD is shown beside the old reading
    assert r_old.details["sd_difference_hu"] == pytest.approx(r.details["sd_hu"], rel=1e-3)
    # clean correlated noise below the limit reads normal
    clean = _noisy_stack(0.6 * fixed * factor, n_slices=8, corr_px=1.0, seed=4).hu.astype(np.float32)
    assert ct.measure_ct(exam(series("c", clean)), params, RecordingSink())["noise"].value == "正常"
    # a difference far above the in-slice reading (max_over_highpass) is not taken for noise
    smooth = _noisy_stack(1.6 * fixed * factor, n_slices=8, corr_px=3.0, seed=5).hu.astype(np.float32)
    r_smooth = ct.measure_ct(exam(series("m", smooth)), params, RecordingSink())["noise"]
    assert r_smooth.details["estimator"] == "highpass"
    assert r_smooth.details["sd_difference_hu"] > params["noise"]["difference"]["max_over_highpass"] * r_smooth.details["sd_hu"]
