"""CT noise judged against this scan's expected level (CN, 2026-11-24): the edge-selected slice
difference and the ratio decision of ct.yaml noise.difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from tests.test_image_qc_ct_noise import stack_of


def _shifting_stack(sd: float, shift_px: int, n_slices: int = 6, n: int = 128, seed: int = 0) -> ct._Stack:
    """Slices of a 40 HU body with a -100 HU fat ring and 200 HU vessels that move by
    ``shift_px`` per slice (anatomy that changes between slices), plus independent white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2, xx - n / 2)
    slices = []
    for k in range(n_slices):
        base = np.where(r <= 58, 40.0, -1000.0)
        base[(r > 48) & (r <= 54)] = -100.0
        for cy in (44, 56, 68, 80):
            for cx in (40, 52, 64, 76, 88):
                base[np.hypot(yy - cy, xx - cx - shift_px * k) <= 5] = 200.0  # vessels moving between slices
        slices.append(base + sd * rng.standard_normal((n, n)))
    return stack_of(slices)


def test_edge_selection_leaves_static_noise_unchanged() -> None:
    """Without anatomy change both readings are the noise SD: choosing pixels by the mean image's
    gradient does not bias the difference (mean and difference of two noise fields are uncorrelated)."""
    from tests.test_image_qc_ct_noise import _noisy_stack

    still = _noisy_stack(12.0, n_slices=6, corr_px=1.0, seed=1)
    plain = ct._difference_noise(still)
    chosen = ct._difference_noise(still, edge_quantile=0.5)
    assert plain is not None and chosen is not None
    assert chosen == pytest.approx(plain, rel=0.1)
    assert chosen == pytest.approx(12.0, rel=0.12)


def test_edge_selection_removes_anatomy_that_changes_between_slices() -> None:
    """A border moving 3 px per slice adds to the plain difference; the edge-selected reading stays
    at the noise."""
    moving = _shifting_stack(8.0, 3, seed=2)
    plain = ct._difference_noise(moving)
    chosen = ct._difference_noise(moving, edge_quantile=0.5)
    assert plain is not None and chosen is not None
    assert chosen == pytest.approx(8.0, rel=0.12)
    assert plain > 1.1 * chosen


def test_noise_is_judged_against_the_dose_expected_level() -> None:
    """The same SD is excess at twice the reference dose and normal at a low dose: the body series'
    verdict is the ratio to sd_ref x sqrt(CTDIref / CTDIvol) x sqrt(5 / t) (ct.yaml noise.difference)."""
    from tests.test_image_qc_ct import RecordingSink, exam, series
    from tests.test_image_qc_ct_noise import _noisy_stack

    params = load_params("CT", "CT-CHEST-PLAIN")
    # the size term off: this test is about the dose term (the size term: the next test)
    block = {**params["noise"]["difference"], "size_exponent": {"default": 0.0}}
    params = {**params, "noise": {**params["noise"], "difference": block}}
    assert block["decide"] == "ratio"
    sd_ref, max_ratio = float(block["sd_ref_hu"]["soft"]), float(block["max_ratio"]["soft"])
    ref = float(params["dose"]["ctdivol_ref_by_region"]["chest"])
    # 1.3 x the limit at the reference dose: excess at 2 x the reference dose, normal at 0.5 x
    sd = 1.3 * sd_ref * max_ratio
    hu = _noisy_stack(sd, n_slices=8, corr_px=1.0, seed=7).hu.astype(np.float32)
    high = ct.measure_ct(exam(series("h", hu, ctdivol=2.0 * ref)), params, RecordingSink())["noise"]
    assert high.value == "异常", high.details
    assert high.details["limit_hu"] == pytest.approx(sd_ref * max_ratio * (0.5 ** 0.5), rel=0.02)
    low = ct.measure_ct(exam(series("l", hu, ctdivol=0.5 * ref)), params, RecordingSink())["noise"]
    assert low.value == "正常", low.details
    # without a CTDIvol the fixed limit x limit_factor is the fallback
    none = ct.measure_ct(exam(series("n", hu, ctdivol=None)), params, RecordingSink())["noise"]
    fixed = float(params["noise"]["sd_limit_hu"]["soft"]) * float(block["limit_factor"]["soft"])
    assert none.details["limit_hu"] == pytest.approx(fixed, rel=1e-3)


def test_the_spine_item_uses_the_ratio_as_well() -> None:
    spine = load_params("CT", "CT-SPINE")["noise"]["difference"]
    body = load_params("CT", "CT-CHEST-PLAIN")["noise"]["difference"]
    assert spine["decide"] == body["decide"] == "ratio"
    assert spine["sd_ref_hu"] == body["sd_ref_hu"] and spine["max_ratio"] == body["max_ratio"]
    assert spine["edge_quantile"] == body["edge_quantile"]


def test_a_smaller_lean_body_is_expected_to_be_quieter() -> None:
    """The same SD at the same CTDIvol is excess in a small patient and normal in a large one: the
    expected level grows as exp(mu x lean diameter / 2) (ct.yaml noise.difference size_law)."""
    from tests.test_image_qc_ct import RecordingSink, exam, series
    from tests.test_image_qc_ct_noise import _noisy_stack

    params = load_params("CT", "CT-CHEST-PLAIN")
    block = params["noise"]["difference"]
    assert block["size_measure"] == "lean" and block["size_law"] == "exponential"
    ref = float(params["dose"]["ctdivol_ref_by_region"]["chest"])
    hu = _noisy_stack(1.1 * float(block["sd_ref_hu"]["soft"]) * float(block["max_ratio"]["soft"]), n_slices=8,
                      corr_px=1.0, seed=9).hu.astype(np.float32)
    # the disc's lean part is 110 px across: 2.0 mm pixels = 220 mm, 2.8 mm = 308 mm (chest D_ref 256)
    small = ct.measure_ct(exam(series("s", hu, px=2.0, ctdivol=ref)), params, RecordingSink())["noise"]
    large = ct.measure_ct(exam(series("l", hu, px=2.8, ctdivol=ref)), params, RecordingSink())["noise"]
    assert small.details["body_diameter_mm"] == pytest.approx(220.0, rel=0.05)
    assert large.details["body_diameter_mm"] == pytest.approx(308.0, rel=0.05)
    mu = float(block["attenuation_per_mm"])
    assert large.details["expected_sd_hu"] / small.details["expected_sd_hu"] == pytest.approx(
        math.exp(mu * (large.details["body_diameter_mm"] - small.details["body_diameter_mm"]) / 2.0), rel=0.02)
    assert small.value == "异常", small.details
    assert large.value == "正常", large.details
    # the finding names the size the expected level used
    assert "去脂体径" in small.findings[0].reason_zh and "lean diameter" in small.findings[0].reason_en


def test_lean_extents_leave_out_the_fat_and_a_body_cut_by_the_fov() -> None:
    from radqc.pipelines.image_qc import ct_noise

    n = 256
    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n), -1000.0)
    img[((xx - 128) / 110) ** 2 + ((yy - 128) / 80) ** 2 <= 1] = -100.0  # 20-30 px of fat
    img[((xx - 128) / 90) ** 2 + ((yy - 128) / 60) ** 2 <= 1] = 40.0
    got = ct_noise.lean_extents(img, (1.5, 1.5))
    assert got is not None
    assert got[0] == pytest.approx(181 * 1.5, rel=0.03) and got[1] == pytest.approx(121 * 1.5, rel=0.03)
    cut = np.full((n, n), 40.0)
    cut[np.hypot(yy - 127.5, xx - 127.5) > 128] = -2048.0
    assert ct_noise.lean_extents(cut, (1.5, 1.5)) is None
