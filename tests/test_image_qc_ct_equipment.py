"""CT equipment (truncation, small implants) and the measures of ct_artifact_rules (helper CE)."""

from __future__ import annotations

import math

import numpy as np

from radqc.pipelines.image_qc import artifact as A
from radqc.pipelines.image_qc.ct_artifact_rules import recon_circle, series_truncation, truncation_profile

PAD = -3024.0


def _cut_body(n: int = 64, rim_hu: float = 0.0, pad: bool = True, centre: tuple[float, float] | None = None,
              radius: float | None = None, body_scale: float = 1.3) -> np.ndarray:
    """A body wider than the field (ellipse past the circle left and right), cut by the circle,
    with the generator's truncation rim (``rim_hu`` fading over 1.5 px inward) on its tissue."""
    cy, cx = centre if centre is not None else ((n - 1) / 2.0, (n - 1) / 2.0)
    r = radius if radius is not None else (n - 1) / 2.0 - 1
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    img = np.full((n, n), -1000.0, np.float32)
    body = ((yy - cy) / (0.55 * r)) ** 2 + ((xx - cx) / (body_scale * r)) ** 2 < 1
    img[body] = 40.0
    dist_edge = r - np.hypot(yy - cy, xx - cx)
    img += np.where(body & (dist_edge >= 0), rim_hu * np.exp(-np.maximum(dist_edge, 0) / 1.5), 0.0).astype(np.float32)
    if pad:
        img[dist_edge < 0] = PAD
    return img


def _clean_body(n: int = 64) -> np.ndarray:
    """A body well inside the field: it never touches the circle."""
    return _cut_body(n, rim_hu=0.0, body_scale=0.6)


def test_recon_circle_fitted_to_padding_off_centre_and_smaller():
    img = _cut_body(64, centre=(30.0, 34.0), radius=22.0)
    cy, cx, r, fitted = recon_circle(img)
    assert fitted
    assert abs(cy - 30.0) < 1.0 and abs(cx - 34.0) < 1.0
    assert abs(r - 22.0) < 1.0


def test_recon_circle_without_padding_is_the_inscribed_circle():
    img = _cut_body(64, pad=False)
    cy, cx, r, fitted = recon_circle(img)
    assert not fitted and cy == cx == 31.5 and r == 32.0


def test_truncation_rim_read_on_a_field_inside_the_matrix():
    # the field circle well inside the image: the inscribed band would read air there
    rim = truncation_profile(_cut_body(64, rim_hu=250.0, centre=(30.0, 33.0), radius=24.0))
    flat = truncation_profile(_cut_body(64, rim_hu=0.0, centre=(30.0, 33.0), radius=24.0))
    assert rim["touch"] > 0.1 and flat["touch"] > 0.1
    assert rim["rim"] >= 30.0
    assert abs(flat["rim"]) < 10.0


def test_truncation_profile_ignores_reformats_and_untouched_bodies():
    assert truncation_profile(np.zeros((24, 64), np.float32))["touch"] == 0.0
    assert truncation_profile(_clean_body())["touch"] == 0.0


def test_series_truncation_counts_touching_slices():
    slices = [_cut_body(64, rim_hu=250.0)] * 5 + [_clean_body()] * 5
    t = series_truncation(slices)
    assert t["trunc_slices"] == 5 and abs(t["trunc_frac"] - 0.5) < 1e-9
    assert t["trunc_rim_med"] >= 30.0 and 0 <= t["trunc_slice"] < 5


def _res(slices, value="无", method="learned", **features) -> A.SeriesArtifact:
    feats = {"metal_px_max": 0.0, "hu_outlier": 2.0, "rim_touch_med": 0.0, "rim_excess_med": 0.0, "metal_air_max": 0.0}
    feats.update(features)
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"motion": 0.0, "equipment": 0.9 if value == "设备" else 0.0, "foreign_object": 0.0},
                           value, method=method)
    res.extra["_slices"] = list(slices)
    res.extra["_idx"] = list(range(len(slices)))
    res.extra["_per"] = [{"metal_px": 0.0, "rim_touch": 0.0, "metal_r": -1.0, "metal_c": -1.0} for _ in slices]
    return res


def test_truncation_rule_reads_the_rim_on_the_stored_circle():
    p = dict(A.DEFAULTS)
    res = _res([_cut_body(64, rim_hu=250.0)] * 8)
    A._ct_truncation_rule(res, p)
    assert res.value == "设备" and res.kind == "truncation"
    assert res.measured is not None and res.measured >= p["ct_trunc_rim_hu"]
    clean = _res([_cut_body(64, rim_hu=0.0)] * 8)  # touches the circle, no rim: an off-centre clean body
    A._ct_truncation_rule(clean, p)
    assert clean.value == "无"
    off = _res([_cut_body(64, rim_hu=250.0)] * 8)
    A._ct_truncation_rule(off, {**p, "ct_trunc_rim_hu": None})
    assert off.value == "无"


def test_truncation_medians_not_read_on_a_reformat():
    p = dict(A.DEFAULTS)
    mpr = np.full((24, 96), 40.0, np.float32)
    res = _res([mpr] * 4, rim_touch_med=0.43, rim_excess_med=38.0)
    A._ct_truncation_rule(res, p)
    assert res.value == "无"
    axial = _res([_clean_body()] * 4, rim_touch_med=0.43, rim_excess_med=60.0)
    A._ct_truncation_rule(axial, p)
    assert axial.value == "设备"  # the medians rule itself still works on axial slices


def test_learned_equipment_without_touch_or_metal_is_dropped():
    p = dict(A.DEFAULTS)
    res = _res([_clean_body()] * 6, value="设备")
    A._ct_truncation_rule(res, p)
    assert res.value == "无" and res.extra["dropped"]["kind"] == "truncation_without_touch"
    touching = _res([_cut_body(64, rim_hu=250.0)] * 6, value="设备")
    A._ct_truncation_rule(touching, p)
    assert touching.value == "设备"
    metal = _res([_clean_body()] * 6, value="设备", metal_px_max=math.log1p(4))
    A._ct_truncation_rule(metal, p)
    assert metal.value == "设备"


def test_small_implant_inside_the_body_reads_equipment():
    p = dict(A.DEFAULTS)
    two = _res([_clean_body()], metal_px_max=math.log1p(2), metal_air_max=0.0)
    A._ct_on_skin_rule(two, p)
    assert two.value == "设备" and two.kind == "metal"
    one = _res([_clean_body()], metal_px_max=math.log1p(1), metal_air_max=0.0)
    A._ct_on_skin_rule(one, p)
    assert one.value == "无"
    skin = _res([_clean_body()], metal_px_max=math.log1p(2), metal_air_max=0.8)
    A._ct_on_skin_rule(skin, p)
    assert skin.value == "异物"

