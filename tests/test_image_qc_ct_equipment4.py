"""CT truncation read at the very edge of the field (helper CTA4, session 20).

A field that cuts a thin subcutaneous fat layer over muscle leaves the generator's rim in the first
pixel or two; the deeper ray readings compare it with muscle and miss it. ``series_edge`` compares the
outermost pixel with the tissue right under it; ``_ct_edge_truncation`` calls it, gated by the body noise.
"""

from __future__ import annotations

import math

import numpy as np

from radqc.pipelines.image_qc import artifact as A
from radqc.pipelines.image_qc.ct_artifact_rules import edge_profile, series_edge, series_truncation

PAD = -3024.0


def _thin_fat_cut(n: int = 64, rim_hu: float = 200.0, fat_px: float = 3.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A body wider than the field (ellipse 1.3 r wide), cut by the circle in a ``fat_px`` fat layer
    (-100 HU) over muscle (50 HU), with the generator's rim (``rim_hu`` fading over 1.5 px inward),
    the field's outside stored as padding, and Gaussian noise of SD ``noise``."""
    r = (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    ey, ex = 0.6 * r, 1.3 * r
    q = ((yy - r) / ey) ** 2 + ((xx - r) / ex) ** 2
    img = np.full((n, n), -1000.0, np.float32)
    img[q < 1] = -100.0
    muscle = ((yy - r) / (ey - fat_px)) ** 2 + ((xx - r) / (r - fat_px)) ** 2 < 1
    img[muscle & (q < 1)] = 50.0
    dist_edge = r - np.hypot(yy - r, xx - r)
    img += np.where((q < 1) & (dist_edge >= 0), rim_hu * np.exp(-np.maximum(dist_edge, 0) / 1.5), 0.0).astype(np.float32)
    if noise:
        img += np.random.default_rng(seed).normal(0.0, noise, img.shape).astype(np.float32)
    img[dist_edge < 1] = PAD
    return img


def _series(value: str, slices: list[np.ndarray], base_sd: float = 15.0, excess: float = -45.0, method: str = "learned") -> A.SeriesArtifact:
    feats = {"rim_touch_med": 0.3, "rim_excess_med": excess, "metal_px_max": 0.0, "hu_outlier": math.log1p(100)}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.01 if value == "无" else 0.99, "motion": 0.0, "foreign_object": 0.0},
                           value, "truncation" if value == "设备" else None, None, None, None, None)
    res.method = method
    res.extra["classical_value"] = "无"
    res.extra["_slices"], res.extra["_idx"] = slices, list(range(len(slices)))
    res.extra["_per"] = [{"base_sd": base_sd} for _ in slices]
    return res


def test_edge_reads_a_cut_through_thin_fat_the_rays_miss():
    cut = [_thin_fat_cut(rim_hu=200.0)] * 8
    clean = [_thin_fat_cut(rim_hu=0.0)] * 8
    t = series_truncation(cut)
    # the ray readings compare the rim with muscle: below their limits
    assert t["trunc_slices"] >= 3 and t["trunc_rim_med"] < A.DEFAULTS["ct_trunc_rim_hu"]
    assert t["trunc_rim_near_med"] < A.DEFAULTS["ct_trunc_rim_near_hu"]
    assert series_edge(cut)["trunc_edge_med"] >= A.DEFAULTS["ct_trunc_edge_hu"]
    assert abs(series_edge(clean)["trunc_edge_med"]) < 10.0


def test_edge_is_read_at_the_working_scale():
    small = _thin_fat_cut(rim_hu=200.0)
    big = np.kron(small, np.ones((8, 8), np.float32))  # a 512 px slice of the same cut
    e_small, n_small = edge_profile(small)
    e_big, n_big = edge_profile(big)
    assert n_small >= 4 and n_big >= 4
    assert e_big >= A.DEFAULTS["ct_trunc_edge_hu"] and abs(e_big - e_small) < 0.5 * e_small


def test_edge_rule_calls_truncation_and_respects_noise_and_keys():
    p = dict(A.DEFAULTS)
    cut = [_thin_fat_cut(rim_hu=200.0)] * 8
    res = _series("无", cut)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备" and res.kind == "truncation" and "truncation_edge" in res.extra
    # the key off: stays 无
    res = _series("无", cut)
    A._ct_truncation_rule(res, {**p, "ct_trunc_edge_hu": None})
    assert res.value == "无"
    # a body noise the edge is small against (0.3 of 400 HU is 120): stays 无
    res = _series("无", cut, base_sd=400.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "无"
    # no rim on the edge: stays 无
    res = _series("无", [_thin_fat_cut(rim_hu=0.0)] * 8)
    A._ct_truncation_rule(res, p)
    assert res.value == "无"


def test_edge_ignores_noise_lifting_the_outer_pixel():
    # a clean cut under heavy noise: the rays are chosen on a smoothed copy, so the noise that lifts
    # a partial-volume outer pixel above the tissue level does not bias the median upwards
    clean = [_thin_fat_cut(rim_hu=0.0, noise=120.0, seed=k) for k in range(12)]
    assert series_edge(clean)["trunc_edge_med"] < A.DEFAULTS["ct_trunc_edge_hu"]


def test_norim_edge_veto_when_set():
    p = {**A.DEFAULTS, "ct_trunc_norim_edge": 8.0}
    clean = [_thin_fat_cut(rim_hu=0.0)] * 8
    # the band excess reads 75 (a table at the circle) but neither the rays nor the edge show a rim
    res = _series("设备", clean, excess=75.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "无" and res.extra["dropped"]["kind"] == "truncation_without_rim"
    # a rim on the edge keeps the net's call
    res = _series("设备", [_thin_fat_cut(rim_hu=200.0)] * 8, excess=75.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备"
    # the key null (the default): the excess alone keeps it, as before
    res = _series("设备", clean, excess=75.0)
    A._ct_truncation_rule(res, {**p, "ct_trunc_norim_edge": None})
    assert res.value == "设备"
