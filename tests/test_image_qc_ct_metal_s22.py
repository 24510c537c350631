"""CT metal and foreign objects (helper CTA6, session 22).

- ``_ct_bright_implant_rule``: a blurred outlier on the skin (or at the field's edge) without streaks
  through the air reads 异物 (``ct_bright_skin_fo``); inside the body it still reads 设备.
- ``bright_outlier``: the field's edge (the padding) counts as the body's surface for the depth.
- ``_ct_on_skin_rule``: metal whose ring is all outside air is never an implant (``ct_on_skin_off_body``);
  a 无 on implant-size metal streaking the outside air reads 设备 (``ct_on_skin_streak_implant``).
"""

from __future__ import annotations

import math

import numpy as np

from radqc.pipelines.image_qc import artifact as A
from radqc.pipelines.image_qc.ct_artifact_rules import bright_outlier

N = 96


def _slice(spot: tuple[int, int] | None = None, seed: int = 0, pad: bool = False) -> np.ndarray:
    """An elliptic body (40 HU) in air with a vertebra (1200 HU) and an optional 3x3 spot at 2300 HU;
    ``pad``: the field (radius 36 px) cuts the body's top, outside it the padding (-2048)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:N, :N].astype(np.float32)
    img = np.full((N, N), -1000.0, np.float32)
    img[((yy - 48) / 30) ** 2 + ((xx - 48) / 40) ** 2 < 1] = 40.0
    img[np.hypot(yy - 62, xx - 48) < 5] = 1200.0
    if spot is not None:
        r, c = spot
        img[r - 1:r + 2, c - 1:c + 2] = 2300.0
    img = img + rng.normal(0.0, 10.0, img.shape).astype(np.float32)
    if pad:
        img[np.hypot(yy - 60, xx - 48) > 36] = -2048.0
    return img


def _series(spot: tuple[int, int] | None, n: int = 12, pad: bool = False) -> A.SeriesArtifact:
    slices = [_slice(spot if k == 5 else None, seed=k, pad=pad) for k in range(n)]
    per = [{"hu_max": float(s[s > -1500].max()), "metal_px": 0.0} for s in slices]
    feats = {"metal_px_max": 0.0, "streak_air_max": 0.0, "metal_air_max": 0.0}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.01, "motion": 0.0, "foreign_object": 0.0},
                           "无", None, None, None, None, None)
    res.method = "learned"
    res.extra["_slices"], res.extra["_idx"], res.extra["_per"] = slices, list(range(n)), per
    return res


def test_bright_skin_object_reads_foreign_object_and_deep_one_equipment():
    p = {**A.DEFAULTS, "ct_bright_skin_fo": True}
    skin = _series((18, 48))  # on the top skin line
    A._ct_bright_implant_rule(skin, p)
    assert skin.value == "异物" and skin.kind == "foreign_object"
    deep = _series((48, 30))
    A._ct_bright_implant_rule(deep, p)
    assert deep.value == "设备" and deep.kind == "metal"
    clean = _series(None)
    A._ct_bright_implant_rule(clean, p)
    assert clean.value == "无"
    off = _series((18, 48))  # the key off: the skin object is left alone
    A._ct_bright_implant_rule(off, {**p, "ct_bright_skin_fo": False})
    assert off.value == "无"


def test_bright_depth_counts_the_field_edge_as_surface():
    # the field cuts the body's top (no outside air there): a spot at the cut lies on the surface
    sl = [_slice((26, 48) if k == 5 else None, seed=k, pad=True) for k in range(12)]
    hm = [float(s[s > -1500].max()) for s in sl]
    b = bright_outlier(sl, hm, 1000.0)
    assert b["bright_excess"] > 1000.0
    assert 0.0 <= b["bright_depth"] < 0.1
    deep = [_slice((60, 30) if k == 5 else None, seed=k, pad=True) for k in range(12)]
    d = bright_outlier(deep, [float(s[s > -1500].max()) for s in deep], 1000.0)
    assert d["bright_depth"] > 0.2


def _res(value: str, air: float, streak_air: float, metal_px: float = 20.0, inside: float = 0.05) -> A.SeriesArtifact:
    feats = {"metal_air_max": air, "streak_air_max": streak_air, "metal_px_max": math.log1p(metal_px), "metal_inside_mean": inside}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.9}, value, "metal" if value == "设备" else None, None, None, None, None)
    res.method = "learned"
    return res


def test_metal_all_in_the_outside_air_is_no_implant_whatever_its_streaks():
    p = {**A.DEFAULTS, "ct_on_skin_off_body": True}
    res = _res("设备", air=1.0, streak_air=200.0)  # a button off the body, noisy air
    A._ct_on_skin_rule(res, p)
    assert res.value == "异物"
    res = _res("设备", air=0.8, streak_air=200.0)  # a pacemaker bulging from a thin chest keeps 设备
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备"
    res = _res("设备", air=1.0, streak_air=200.0)
    A._ct_on_skin_rule(res, {**p, "ct_on_skin_off_body": False})
    assert res.value == "设备"


def test_none_reading_on_streaking_metal_at_the_air_reads_equipment():
    p = {**A.DEFAULTS, "ct_on_skin_streak_implant": True, "ct_on_skin_off_body": True}
    res = _res("无", air=0.62, streak_air=208.0, metal_px=80.0)  # screws at the field's edge
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备" and res.kind == "metal"
    res = _res("无", air=0.62, streak_air=1.0)  # no streaks: an object on the skin
    A._ct_on_skin_rule(res, p)
    assert res.value == "异物"
    res = _res("无", air=1.0, streak_air=208.0)  # all outside air: off the body
    A._ct_on_skin_rule(res, p)
    assert res.value == "异物"
    res = _res("无", air=0.62, streak_air=208.0, metal_px=80.0)
    A._ct_on_skin_rule(res, {**p, "ct_on_skin_streak_implant": False})
    assert res.value == "异物"


def _graze_res(value: str, touch: float, rim: float, near: float, edge: float = 0.0, method: str = "learned") -> A.SeriesArtifact:
    """A series whose truncation readings are given (cached as :func:`A._series_truncation` keeps them)."""
    feats = {"rim_touch_med": 0.05, "rim_excess_med": 60.0, "metal_px_max": 0.0, "hu_outlier": math.log1p(100)}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.95, "motion": 0.0, "foreign_object": 0.0}, value,
                           "truncation" if value == "设备" else None, None, None, None, None)
    res.method = method
    res.extra["classical_value"] = "无"
    res.extra["_slices"], res.extra["_idx"] = [np.zeros((64, 64), np.float32)] * 8, list(range(8))
    res.extra["_per"] = [{"base_sd": 10.0} for _ in range(8)]
    res.extra["_trunc"] = {"trunc_slices": 8.0, "trunc_frac": 1.0, "trunc_rim_med": rim, "trunc_touch_med": touch,
                           "trunc_slice": 0.0, "trunc_rim_near_med": near}
    res.extra["_edge"] = {"trunc_edge_med": edge, "trunc_edge_slices": 8.0, "trunc_edge_frac": 1.0}
    return res


def test_grazing_body_makes_no_classical_truncation_call():
    p = {**A.DEFAULTS, "ct_trunc_min_touch": 0.22}
    # a clean off-centre body grazing the circle: the near rim reads skin over fat (i9218 E00081)
    res = _graze_res("无", touch=0.13, rim=-58.0, near=82.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "无"
    # ... and the edge reading likewise (i9218 E00684)
    res = _graze_res("无", touch=0.16, rim=1.0, near=-5.0, edge=136.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "无"
    # a body cut along a long arc keeps the call
    res = _graze_res("无", touch=0.45, rim=-58.0, near=82.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备" and res.kind == "truncation"
    # the key off: the older behaviour
    res = _graze_res("无", touch=0.13, rim=-58.0, near=82.0)
    A._ct_truncation_rule(res, {**p, "ct_trunc_min_touch": None})
    assert res.value == "设备"


def test_grazing_learned_truncation_needs_a_ray_rim():
    p = {**A.DEFAULTS, "ct_trunc_min_touch": 0.22}
    res = _graze_res("设备", touch=0.19, rim=-258.0, near=-123.0)  # i9218 E00549
    A._ct_truncation_rule(res, p)
    assert res.value == "无" and res.extra["dropped"]["kind"] == "truncation_without_rim"
    res = _graze_res("设备", touch=0.219, rim=-2.0, near=30.0)  # a true cut grazing (9152 E00064)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备"
    res = _graze_res("设备", touch=0.40, rim=-258.0, near=-123.0)  # a long arc: the net's call stands
    A._ct_truncation_rule(res, p)
    assert res.value == "设备"
