"""CT noise / sharpness (CTN2, 2026-11-24): dose from the tube output when CTDIvol was not recorded,
slice pairs crossed by metal streaks or motion left out of the difference noise, a bone kernel's own
sharpness limit."""

from __future__ import annotations

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct, ct_noise
from radqc.pipelines.image_qc.measure_common import load_params
from tests.test_image_qc_ct import RecordingSink, exam, phantom, series
from tests.test_image_qc_ct_noise import _noisy_stack


def test_ctdivol_from_tube_output() -> None:
    ds = {"XRayTubeCurrent": 120, "ExposureTime": 500, "SpiralPitchFactor": 0.984}
    # 120 mA x 0.5 s / 0.984 = 60.98 effective mAs
    assert ct_noise.ctdivol_from_tube(ds, 0.164) == pytest.approx(0.164 * 60.0 / 0.984, rel=1e-6)
    # twice the tube current, twice the dose; a higher pitch spreads it
    assert ct_noise.ctdivol_from_tube({**ds, "XRayTubeCurrent": 240}, 0.164) == pytest.approx(2 * ct_noise.ctdivol_from_tube(ds, 0.164))
    assert ct_noise.ctdivol_from_tube({**ds, "SpiralPitchFactor": 1.968}, 0.164) == pytest.approx(ct_noise.ctdivol_from_tube(ds, 0.164) / 2)
    # no tube current, or the estimate switched off: no dose
    assert ct_noise.ctdivol_from_tube({"ExposureTime": 500}, 0.164) is None
    assert ct_noise.ctdivol_from_tube(ds, 0.0) is None


def test_model_reads_the_tube_coefficient_from_the_rules() -> None:
    p = load_params("CT", "CT-UABD-ENH")
    m = ct_noise.NoiseModel(p["noise"].get("expected"), p.get("dose"))
    assert m.tube_mgy_per_mas > 0
    assert ct_noise.NoiseModel({}, None).tube_mgy_per_mas == 0.0


def test_noise_without_ctdivol_uses_the_tube_output() -> None:
    """A series whose header has no CTDIvol but a tube current is judged against the patient's expected
    level at the dose the tube output gives, not the fixed limit."""
    params = load_params("CT", "CT-CHEST-PLAIN")
    noisy = _noisy_stack(15.0, n_slices=8, corr_px=1.0, seed=7).hu.astype(np.float32)
    s = series("t", noisy, ctdivol=None)
    ds = s.datasets()[0]
    ds["XRayTubeCurrent"] = 1200  # ~100 mGy: a clean scan at this dose is quiet, 15 HU is excess
    ds["ExposureTime"] = 500
    ds["SpiralPitchFactor"] = 0.984
    r = ct.measure_ct(exam(s), params, RecordingSink())["noise"]
    measured = r.details["series_measured"][0]
    assert measured.get("ctdivol_mgy") == pytest.approx(0.164 * 1200 * 0.5 / 0.984, rel=0.01)
    assert r.value == "异常", r.details
    assert measured["ctdivol_source"] == "tube_output"
    assert "tube current" in r.findings[0].reason_en and "管电流" in r.findings[0].reason_zh
    # switched off: the fixed limit (x limit_factor) decides and 15 HU passes it
    off = {**params, "noise": {**params["noise"], "expected": {**params["noise"]["expected"], "ctdivol_from_tube_mgy_per_mas": 0}}}
    assert ct.measure_ct(exam(series("t2", noisy, ctdivol=None)), off, RecordingSink())["noise"].value == "正常"


def test_difference_noise_leaves_out_streaked_pairs() -> None:
    """Streaks on a few slices raise the pairs that cross them several-fold; with a pair cap the
    difference reads the clean pairs' noise, without it the median is pulled up."""
    stack = _noisy_stack(8.0, n_slices=9, seed=11)
    rng = np.random.default_rng(2)
    n = stack.hu.shape[1]
    yy, xx = np.mgrid[:n, :n]
    angle = np.arctan2(yy - n / 2, xx - n / 2)
    for k in (2, 3, 4, 5):  # metal on four slices: radial streaks of +-300 HU, different on each slice
        streaks = 300.0 * np.sin(7 * angle + rng.uniform(0, 6.28)) * (np.hypot(yy - n / 2, xx - n / 2) <= 55)
        stack.hu[k] = stack.hu[k] + streaks
    plain = ct._difference_noise(stack)
    capped = ct._difference_noise(stack, pair_cap_hu=3.0 * 8.0)
    assert plain is not None and plain > 2.0 * 8.0
    assert capped is not None and capped == pytest.approx(8.0, rel=0.15)
    # streaks across most pairs (5 of 8 here): the few left are no reading when at least half must stay
    assert ct._difference_noise(stack, pair_cap_hu=24.0, min_kept_fraction=0.5) is None
    assert ct._difference_noise(stack, pair_cap_hu=24.0, min_kept_fraction=0.3) == pytest.approx(capped)
    # a cap below every pair leaves nothing to read
    assert ct._difference_noise(stack, pair_cap_hu=0.1) is None
    # a clean series is not changed by the cap (every pair is alike)
    clean = _noisy_stack(8.0, n_slices=9, seed=11)
    assert ct._difference_noise(clean, pair_cap_hu=24.0) == pytest.approx(ct._difference_noise(clean))


def test_sharpness_limit_per_kernel() -> None:
    """A bone-kernel series is held to its own (higher) sharpness limit."""
    params = load_params("CT", "CT-TSPINE-PLAIN")
    by_kernel = dict((params.get("sharpness") or {}).get("min_index_by_kernel") or {})
    assert by_kernel.get("bone", 0) > params["sharpness"]["min_index"]
    img = phantom(noise=3.0, blur_px=1.0)
    r_bone = ct.measure_ct(exam(series("b", img, kernel="bone")), params, RecordingSink())["sharpness"]
    r_soft = ct.measure_ct(exam(series("s", img, kernel="soft")), params, RecordingSink())["sharpness"]
    assert r_bone.details["limit"] == pytest.approx(by_kernel["bone"])
    assert r_soft.details["limit"] == pytest.approx(params["sharpness"]["min_index"])


def test_sharpness_reads_an_upper_slice_quantile() -> None:
    """Motion ghosts the edge on a run of slices, blur on all: with an upper slice quantile (75 here) a
    series whose first 5 of 8 slices are smeared reads the sharp ones; a series blurred throughout still
    reads 异常. The shipped quantile is above the median."""
    params = load_params("CT", "CT-CHEST-PLAIN")
    assert float(params["sharpness"].get("slice_quantile", 50)) > 50
    sharp = phantom(n=8, noise=3.0)
    smeared = phantom(n=8, noise=3.0, blur_px=3.0)
    mixed = np.concatenate([smeared[:5], sharp[5:]])
    median = {**params, "sharpness": {**params["sharpness"], "slice_quantile": 50}}
    upper = {**params, "sharpness": {**params["sharpness"], "slice_quantile": 75}}
    assert ct.measure_ct(exam(series("m", mixed)), median, RecordingSink())["sharpness"].value == "异常"
    assert ct.measure_ct(exam(series("m", mixed)), upper, RecordingSink())["sharpness"].value == "正常"
    assert ct.measure_ct(exam(series("b", smeared)), params, RecordingSink())["sharpness"].value == "异常"
    assert ct.measure_ct(exam(series("b", smeared)), upper, RecordingSink())["sharpness"].value == "异常"
