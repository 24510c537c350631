"""CT foreign object (异物) vs implant (设备), and truncation through fat (helper CE2, session 18).

The measures of ``ct_artifact_rules``: ``padding_mask``, ``outside_air``, ``streak_in_air``, the near
truncation rim of ``series_truncation``; and the rules of ``artifact.py`` that read them
(``_ct_on_skin_rule`` with ``ct_metal_air_open`` / ``ct_metal_streak_air``, ``_ct_truncation_rule``
with ``ct_trunc_rim_near_hu``)."""

from __future__ import annotations

import math

import numpy as np

from radqc.pipelines.image_qc import artifact as A
from radqc.pipelines.image_qc.ct_artifact_rules import (
    outside_air,
    padding_mask,
    series_truncation,
    streak_in_air,
)

PAD = -3024.0


def _body(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy elliptical body in air (slice, body mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    body = ((yy - n / 2) / (0.3 * n)) ** 2 + ((xx - n / 2) / (0.4 * n)) ** 2 < 1
    img = np.where(body, 40.0, -1000.0).astype(np.float32) + rng.normal(0, 10, (n, n)).astype(np.float32)
    return img, body


def _button(img: np.ndarray, body: np.ndarray) -> tuple[int, int]:
    """A 2x3 px metal object on the front skin, half in the air (returns its centre)."""
    n = img.shape[0]
    top = int(np.nonzero(body[:, n // 2])[0].min())
    img[top - 2:top, n // 2 - 1:n // 2 + 2] = 3071.0
    return top - 1, n // 2


def _streaks(img: np.ndarray, cy: float, cx: float, amp: float = 400.0, seed: int = 1) -> np.ndarray:
    """The generator's kind of metal streaks: straight lines through the metal over the whole slice."""
    rng = np.random.default_rng(seed)
    n = img.shape[0]
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    out = img.copy()
    for _ in range(14):
        th = float(rng.uniform(0, math.pi))
        dist = np.abs((xx - cx) * math.sin(th) - (yy - cy) * math.cos(th))
        a = amp * float(rng.uniform(0.3, 1.0)) * (1 if rng.random() < 0.45 else -1)
        out += (a * np.exp(-0.5 * (dist / 1.2) ** 2) * np.exp(-np.hypot(xx - cx, yy - cy) / (0.6 * n))).astype(np.float32)
    out[img >= 2500] = img[img >= 2500]  # the metal itself stays metal
    return out


def test_padding_mask_is_the_constant_minimum_only():
    img, _ = _body()
    assert not padding_mask(img).any()  # no padding stored: nothing is padding
    yy, xx = np.mgrid[:96, :96]
    padded = img.copy()
    padded[np.hypot(yy - 47.5, xx - 47.5) > 46] = PAD
    # a sharp kernel's undershoot next to metal (-1500) is not padding
    padded[10, 48] = -1500.0
    m = padding_mask(padded)
    assert m[0, 0] and not m[48, 48] and not m[10, 48]


def test_outside_air_is_connected_to_the_border():
    img, body = _body()
    # a dark pocket inside the body (a streak band between two screws): not outside air
    img[46:50, 46:50] = -900.0
    out = outside_air(img)
    assert out[2, 2] and not out[48, 48]
    assert not (out & body).any()


def test_streak_in_air_separates_an_implant_from_a_button():
    img, body = _body()
    cy, cx = _button(img, body)
    clean = streak_in_air(img)
    streaked = streak_in_air(_streaks(img, cy, cx))
    assert clean < 2.0 <= streaked
    assert streak_in_air(_body()[0]) == 0.0  # no metal: 0


def test_slice_features_read_the_button_in_the_outside_air():
    img, body = _body()
    _button(img, body)
    f = A.ct_slice_features(img, dict(A.DEFAULTS))
    assert f["metal_air"] >= 0.5  # half its ring or more in the outside air
    assert f["streak_air"] < float(A.DEFAULTS["ct_metal_streak_air"])


def _res(value: str, air: float, streak_air: float, metal_px: float = 12.0, inside: float = 0.0) -> A.SeriesArtifact:
    feats = {"metal_air_max": air, "streak_air_max": streak_air, "metal_px_max": math.log1p(metal_px), "metal_inside_mean": inside}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.99}, value, "metal", None, None, None, None)
    res.method = "learned"
    return res


def test_large_metal_in_the_air_without_streaks_reads_foreign_object():
    p = dict(A.DEFAULTS)
    res = _res("设备", air=0.8, streak_air=0.7)
    A._ct_on_skin_rule(res, p)
    assert res.value == "异物"
    # with streaks through the air (a pacemaker bulging from a thin chest) it stays 设备
    res = _res("设备", air=0.8, streak_air=50.0)
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备"
    # below the open-air limit a large object partly inside the body stays 设备 (pacemakers read up to
    # 0.65 outside air, and inside 0.10-0.37 on qc-items 7501)
    res = _res("设备", air=0.6, streak_air=0.7, inside=0.3)
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备"
    # ... but with none of it inside the body it lies on the skin (ct_metal_air_outside_inside)
    res = _res("设备", air=0.6, streak_air=0.7)
    A._ct_on_skin_rule(res, p)
    assert res.value == "异物"
    res = _res("设备", air=0.6, streak_air=0.7)
    A._ct_on_skin_rule(res, {**p, "ct_metal_air_outside_inside": None})
    assert res.value == "设备"
    # streaks through the air keep an implant whose metal the body outline misses (7501 E00547: screws,
    # inside 0.00, air 0.42, streak_air 179)
    res = _res("设备", air=0.42, streak_air=179.0)
    A._ct_on_skin_rule(res, p)
    assert res.value == "设备"
    # the keys off: the older behaviour (large metal keeps 设备)
    res = _res("设备", air=0.8, streak_air=0.7)
    A._ct_on_skin_rule(res, {**p, "ct_metal_air_open": None, "ct_metal_air_outside_inside": None})
    assert res.value == "设备"


def _fat_cut(n: int = 96, rim_hu: float = 0.0, fat_px: int = 4) -> np.ndarray:
    """A body wider than the field, cut by the circle in its subcutaneous fat (-100 HU over muscle
    at 40), with the generator's rim (``rim_hu`` fading over 1.9 px inward) and padding outside."""
    r = (n - 1) / 2.0
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    ey, ex = 0.5 * r, 1.25 * r
    q = ((yy - r) / ey) ** 2 + ((xx - r) / ex) ** 2
    img = np.full((n, n), -1000.0, np.float32)
    img[q < 1] = -100.0
    inner = ((yy - r) / (ey - fat_px)) ** 2 + ((xx - r) / (r - fat_px)) ** 2 < 1  # muscle fat_px inside the cut
    img[inner] = 40.0
    dist_edge = r - np.hypot(yy - r, xx - r)
    img += np.where((q < 1) & (dist_edge >= 0), rim_hu * np.exp(-np.maximum(dist_edge, 0) / 1.9), 0.0).astype(np.float32)
    img[dist_edge < 0] = PAD
    return img


def test_near_rim_reads_a_cut_through_fat():
    cut = series_truncation([_fat_cut(rim_hu=220.0)] * 6)
    clean = series_truncation([_fat_cut(rim_hu=0.0)] * 6)
    near = float(A.DEFAULTS["ct_trunc_rim_near_hu"])
    assert cut["trunc_rim_near_med"] >= near
    assert clean["trunc_rim_near_med"] < near
    assert cut["trunc_rim_med"] < float(A.DEFAULTS["ct_trunc_rim_hu"])  # the deep reading misses it


def test_truncation_rule_uses_the_near_rim():
    slices = [_fat_cut(rim_hu=220.0)] * 6
    res = A.SeriesArtifact("1.2.3", "CT", {"rim_touch_med": 0.0, "rim_excess_med": 0.0}, {}, "无", None, None, None, None, None)
    res.extra["_slices"], res.extra["_idx"] = slices, list(range(6))
    A._ct_truncation_rule(res, dict(A.DEFAULTS))
    assert res.value == "设备" and res.kind == "truncation"
    res = A.SeriesArtifact("1.2.3", "CT", {"rim_touch_med": 0.0, "rim_excess_med": 0.0}, {}, "无", None, None, None, None, None)
    res.extra["_slices"], res.extra["_idx"] = slices, list(range(6))
    # with the near reading off, only the edge rim (session 20) still reads this real cut
    A._ct_truncation_rule(res, {**A.DEFAULTS, "ct_trunc_rim_near_hu": None, "ct_trunc_edge_hu": None})
    assert res.value == "无"


def _fo_res(inside: float, air: float, metal_px: float = 6.0, shape: tuple[int, int] = (64, 64)) -> A.SeriesArtifact:
    """A learned 异物 series with the given metal features (helper CTA2, session 18)."""
    feats = {"metal_air_max": air, "streak_air_max": 1.0, "metal_px_max": math.log1p(metal_px), "metal_inside_mean": inside}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"foreign_object": 1.0}, "异物", "foreign_object", None, None, None, None)
    res.method = "learned"
    res.extra["_slices"] = [np.zeros(shape, np.float32)]
    return res


def test_enclosed_metal_called_foreign_object_reads_equipment():
    p = dict(A.DEFAULTS)
    # an aneurysm clip inside the skull: all its metal in the eroded body, no outside air
    res = _fo_res(inside=1.0, air=0.0)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "设备" and res.kind == "metal"
    # a button on the skin: its ring is in the outside air
    res = _fo_res(inside=1.0, air=0.8)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "异物"
    # a button on the table: not inside the body
    res = _fo_res(inside=0.13, air=0.0)
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "异物"
    # a reformat (not square) is left alone, and so is everything with the key off
    res = _fo_res(inside=1.0, air=0.0, shape=(24, 64))
    A._ct_enclosed_metal_rule(res, p)
    assert res.value == "异物"
    res = _fo_res(inside=1.0, air=0.0)
    A._ct_enclosed_metal_rule(res, {**p, "ct_fo_enclosed_reads_equipment": False})
    assert res.value == "异物"


def _trunc_res(value: str, excess: float, rim_hu: float, equipment: float = 0.95, method: str = "learned") -> A.SeriesArtifact:
    """A series over ``_fat_cut`` slices (its ray rims) with the band excess ``excess`` and the net's
    equipment probability (helper CTA3, session 19)."""
    feats = {"rim_touch_med": 0.3, "rim_excess_med": excess, "metal_px_max": 0.0, "hu_outlier": math.log1p(100)}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": equipment, "motion": 0.0, "foreign_object": 0.0}, value,
                           "truncation" if value == "设备" else None, None, None, None, None)
    res.method = method
    res.extra["classical_value"] = "无"
    res.extra["_slices"], res.extra["_idx"] = [_fat_cut(rim_hu=rim_hu)] * 6, list(range(6))
    return res


def test_rimless_learned_truncation_reads_none():
    p = dict(A.DEFAULTS)
    # a clean body touching the circle (no rim on the rays, band excess 31): the net's 设备 is dropped
    res = _trunc_res("设备", excess=31.0, rim_hu=0.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "无" and res.extra["dropped"]["kind"] == "truncation_without_rim"
    # a rim on the rays (a cut through fat) keeps it
    res = _trunc_res("设备", excess=31.0, rim_hu=220.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备"
    # a band excess of 50+ (a head cut, whose ray rims read negative) keeps it
    res = _trunc_res("设备", excess=56.0, rim_hu=0.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备"
    # the keys off: the net's call stands
    res = _trunc_res("设备", excess=31.0, rim_hu=0.0)
    A._ct_truncation_rule(res, {**p, "ct_trunc_norim_excess": None})
    assert res.value == "设备"


def test_band_reading_needs_the_net_and_a_rim():
    p = dict(A.DEFAULTS)
    # an off-centre head: the band excess reads the skull (70 HU), the net says 0.006: stays 无
    res = _trunc_res("无", excess=70.0, rim_hu=0.0, equipment=0.006)
    A._ct_truncation_rule(res, p)
    assert res.value == "无"
    # the same band with the net leaning to 设备 (0.79) makes the call
    res = _trunc_res("无", excess=70.0, rim_hu=0.0, equipment=0.79)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备" and res.kind == "truncation"
    # a band excess of 35 without a ray rim is no rim: stays 无 even where the net leans to it
    res = _trunc_res("无", excess=35.0, rim_hu=0.0, equipment=0.7)
    A._ct_truncation_rule(res, p)
    assert res.value == "无"
    # the gate off: the band alone decides again
    res = _trunc_res("无", excess=70.0, rim_hu=0.0, equipment=0.006)
    A._ct_truncation_rule(res, {**p, "ct_trunc_med_min_prob": None})
    assert res.value == "设备"
