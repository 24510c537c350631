"""CT foreign object (异物) vs implant (设备), second round (helper CTF2, session 20).

The rules of ``artifact.py``: ``_ct_noise_metal`` (a 1-2 px "metal" reading on a very noisy series),
``_ct_enclosed_metal_rule`` with ``ct_fo_enclosed_inside`` and ``ct_fo_streak_air_equipment``, and
``_ct_skin_layer_metal`` (metal in the skin layer or off the body, no streaks) via ``_ct_on_skin_rule``."""

from __future__ import annotations

import math

import numpy as np

from radqc.pipelines.image_qc import artifact as A


def _res(value: str, *, metal_px: float, inside: float = 0.0, air: float = 0.0, streak_air: float = 0.0,
         noise_sd: float = 15.0, square: bool = True) -> A.SeriesArtifact:
    feats = {"metal_px_max": math.log1p(metal_px), "metal_inside_mean": inside, "metal_air_max": air,
             "streak_air_max": streak_air}
    cls = {"异物": "foreign_object", "设备": "equipment", "无": "none"}[value]
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.0, "foreign_object": 0.0, "motion": 0.0, cls: 0.99},
                           value, "metal" if value == "设备" else ("foreign_object" if value == "异物" else None),
                           None, None, None, None)
    res.method = "learned"
    shape = (64, 64) if square else (24, 64)
    res.extra["_slices"] = [np.zeros(shape, np.float32) for _ in range(4)]
    res.extra["_per"] = [{"base_sd": noise_sd, "metal_px": metal_px if k == 1 else 0.0, "metal_r": 10.0, "metal_c": 10.0,
                          "metal_air": air, "streak_air": streak_air} for k in range(4)]
    res.extra["_idx"] = list(range(4))
    return res


def test_noise_peak_is_no_foreign_object():
    p = dict(A.DEFAULTS)
    # 2 px at 2500 HU on a series with body noise SD 262 (fresh 9214 E00343): no metal, no 异物
    res = _res("异物", metal_px=2, air=0.5, streak_air=0.8, noise_sd=262.0)
    A._ct_fo_metal_rule(res, p)
    assert res.value == "无"
    assert res.extra["dropped"]["kind"] == "foreign_object_on_noise"
    A._ct_on_skin_rule(res, p)  # and the on-skin rule does not read the noise peak back as 异物
    assert res.value == "无"
    # the same reading on an ordinary series (a 2-px necklace bead, SD 108: 8840 E00026) stays 异物
    res = _res("异物", metal_px=2, air=0.75, streak_air=0.7, noise_sd=108.0)
    A._ct_fo_metal_rule(res, p)
    assert res.value == "异物"
    # more metal than a noise peak stays 异物 even on a noisy series
    res = _res("异物", metal_px=6, air=1.0, streak_air=0.4, noise_sd=145.0 + 200.0)
    A._ct_fo_metal_rule(res, p)
    assert res.value == "异物"
    # off
    res = _res("异物", metal_px=2, air=0.5, streak_air=0.8, noise_sd=262.0)
    A._ct_fo_metal_rule(res, {**p, "ct_noise_metal_sd": None})
    assert res.value == "异物"


def test_pacemaker_half_inside_reads_equipment():
    p = dict(A.DEFAULTS)
    # a pacemaker of a 64-px field: inside 0.55, no outside air (fresh 9214 E00006)
    res = _res("异物", metal_px=11, inside=0.55, air=0.0, streak_air=0.0)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "设备"
    # with the old limit (ct_inside_fraction 0.6) it stayed 异物
    res = _res("异物", metal_px=11, inside=0.55, air=0.0, streak_air=0.0)
    A._ct_enclosed_metal_rule(res, {**p, "ct_fo_enclosed_inside": None})
    assert res.value == "异物"
    # a button on the skin (inside 0.0) stays 异物
    res = _res("异物", metal_px=11, inside=0.0, air=0.9, streak_air=0.6)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "异物"


def test_streaks_in_the_air_read_equipment():
    p = dict(A.DEFAULTS)
    # screws in a targeted field whose streak bands split the body (fresh 9214 E00257: 439)
    res = _res("异物", metal_px=101, inside=0.39, air=0.33, streak_air=438.6)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "设备" and res.kind == "metal"
    # a button's air shift (3.0 at most on axial series) keeps 异物
    res = _res("异物", metal_px=12, inside=0.0, air=0.5, streak_air=3.0)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "异物"
    # a reformat is left alone
    res = _res("异物", metal_px=12, inside=0.0, air=0.5, streak_air=50.0, square=False)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "异物"
    # an object wholly off the body (ring all outside air) is no implant, whatever its streaks (fresh 9216 E00243)
    res = _res("异物", metal_px=9, inside=0.0, air=1.0, streak_air=28.0)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "异物"
    res = _res("异物", metal_px=9, inside=0.0, air=1.0, streak_air=28.0)
    A._ct_enclosed_metal_rule(res, {**p, "ct_fo_streak_air_off_body": None})
    assert res.value == "设备"


def test_metal_in_the_skin_layer_without_streaks_reads_foreign_object():
    p = dict(A.DEFAULTS)
    # an electrode pressed into the fat, its ring not in the outside air (fresh 9214 E00331)
    res = _res("设备", metal_px=5, inside=0.0, air=0.0, streak_air=0.9)
    A._ct_on_skin_rule(res, p)
    assert res.value == "异物"
    assert res.extra["skin_layer_metal"]["streak_air"] == 0.9
    # a pacemaker out of the eroded body draws streaks through the air: stays 设备 (8840 E00071: 4.3)
    res = _res("设备", metal_px=20, inside=0.05, air=0.19, streak_air=4.3)
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备"
    # no outside air sampled (streak reading 0): nothing known, stays 设备
    res = _res("设备", metal_px=11, inside=0.0, air=0.0, streak_air=0.0)
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备"
    # a clip inside the skull (inside 1.0) stays 设备
    res = _res("设备", metal_px=6, inside=1.0, air=0.0, streak_air=1.5)
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备"
    # off
    res = _res("设备", metal_px=5, inside=0.0, air=0.0, streak_air=0.9)
    A._ct_on_skin_rule(res, {**p, "ct_skin_layer_inside": None})
    assert res.value == "设备"
