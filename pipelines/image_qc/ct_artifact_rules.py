"""CT equipment measures (设备: truncation at the field-of-view edge).

Why a module of its own: the learned artifact net (``radqc.models.artifact``) reads a fixed set of
per-slice features (:func:`radqc.pipelines.image_qc.artifact.ct_slice_features`), and changing those
would need a retrained net. The measures here are read beside the net by the CT decision rules of
``artifact.py`` (``_ct_truncation_rule``, ``_ct_untouched_veto``), on the slices
the artifact measure already holds, so they add evidence without touching what the net reads.

What they measure (physical signatures, each shown on a slice with a measured value and a limit):

* **The reconstruction circle** (:func:`recon_circle`): scanners store the pixels outside the
  reconstructed field as a constant padding value far below air (-2000, -3024, the stored minimum).
  Where the padding is there, the circle is fitted to it (its centre and radius need not be the
  inscribed circle of the matrix); without padding the inscribed circle is the field.
* **Truncation** (:func:`truncation_profile`, :func:`series_truncation`): a body wider than the
  field is cut by the circle, and the missing projections raise the values just inside the cut
  (a bright rim of 150-300 HU that fades over 1.5-2.5 px inward). Read along rays from the circle
  inward where tissue meets it: the mean of the first 2 px of tissue minus the median of the tissue
  4-8 px deeper, per ray; the slice's value is the median over touching rays (one bright bone at the
  cut does not decide), the series' the median over the slices that touch. A clean body that only
  touches the circle (off-centre) has no rim: fat over muscle reads below zero.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

#: HU a padding value must be at or below (air is about -1000 with noise)
PAD_BELOW = -1100.0
#: tissue level: above it a pixel is body (skin, fat, muscle, bone), below it air or lung
TISSUE_HU = -400.0


def recon_circle(hu: np.ndarray, pad_below: float = PAD_BELOW) -> tuple[float, float, float, bool]:
    """The reconstruction circle of one axial CT slice: (centre row, centre column, radius, fitted).

    Where at least 2% of the slice holds one constant value at or below ``pad_below`` (the padding
    outside the field), the circle is the disc of the other pixels: centre at its centroid and the
    radius of a disc of its area, so a field smaller than the matrix or off its centre is measured
    where it is. Otherwise (no padding stored) the inscribed circle of the matrix (fitted False)."""
    ny, nx = hu.shape
    lo = float(np.min(hu))
    if lo <= pad_below:
        pad = hu <= lo + 0.5
        if pad.sum() >= 0.02 * hu.size:
            field = ndi.binary_fill_holes(~pad)
            area = float(field.sum())
            if area >= 0.2 * hu.size:
                rr, cc = np.nonzero(field)
                return float(rr.mean()), float(cc.mean()), math.sqrt(area / math.pi), True
    return (ny - 1) / 2.0, (nx - 1) / 2.0, min(ny, nx) / 2.0, False


def padding_mask(hu: np.ndarray, pad_below: float = PAD_BELOW, grow: int = 1) -> np.ndarray:
    """The pixels outside the reconstructed field (the stored padding), grown by ``grow`` px.

    Where at least 2% of the slice holds one constant minimum at or below ``pad_below`` (the
    scanner's padding: -2000, -3024, the stored minimum), those pixels and the
    ``grow`` px next to them (blocks averaged across the circle's edge lie between padding and
    air) are padding; otherwise none. Why: the padding is not the air round the patient. A metal
    implant cut by a small targeted field (cervical screws reaching the circle: worn 9208 E00244)
    has padding in its ring and read as metal touching the outside air (a foreign object)."""
    lo = float(np.min(hu))
    pad = hu <= lo + 0.5  # the constant itself: a sharp kernel's undershoot next to metal reads -1400..-1700
    if lo > pad_below or float(pad.mean()) < 0.02:
        return np.zeros(hu.shape, dtype=bool)
    return ndi.binary_dilation(pad, iterations=grow) if grow > 0 else pad


def outside_air(hu: np.ndarray, air_below: float = -600.0) -> np.ndarray:
    """The air round the patient: pixels below ``air_below`` connected to the slice's border, less
    the padding (:func:`padding_mask`).

    Why connected: metal streaks darken tissue (the generator's dark band between two screws is
    0.8 x 350-700 HU below it) and split the thresholded body, so dark pixels inside the patient
    read as "outside the body" next to an implant (worn 9208 E00244, E00046: cervical and lumbar
    screws read 0.31-0.73 of their ring as outside air). Air that reaches the border is outside."""
    air = hu < air_below
    if not air.any():
        return air
    lab, n = ndi.label(air)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    edge = edge[edge > 0]
    out = np.isin(lab, edge) if len(edge) else np.zeros(hu.shape, dtype=bool)
    return out & ~padding_mask(hu)


def streak_in_air(hu: np.ndarray, metal_hu: float = 2500.0, n_rays: int = 180, min_rays: int = 10) -> float:
    """Metal streaks in the air round the patient, read from one slice's metal: 0 without metal.

    Rays from the metal's centroid (4 px to 0.6 of the slice) sample the outside air
    (:func:`outside_air`, more than 3 px from the body and the metal: no edge undershoot); each ray
    with 6+ air samples gives the absolute median of its air minus the slice's air median. The value
    is the 90th percentile over those rays divided by the air's noise (MAD, at least 5 HU).

    Why: streaks run straight through the metal across the whole slice, and in the air they stand out
    against nothing; an object without streaks leaves the air as it was. The generator draws streaks
    (350-700 HU) for implants only: pacemakers and screws read 1.7-260 on worn 9208 and validation
    8520, buttons, electrodes and necklaces 0.4-1.5 where their ring lies mostly in the air."""
    metal = hu >= metal_hu
    if not metal.any():
        return 0.0
    body = ndi.binary_fill_holes(hu > TISSUE_HU)
    air = outside_air(hu) & ~ndi.binary_dilation(body | metal, iterations=3)
    if air.sum() < 50:
        return 0.0
    base = float(np.median(hu[air]))
    noise = max(1.4826 * float(np.median(np.abs(hu[air] - base))), 5.0)
    ny, nx = hu.shape
    rr, cc = np.nonzero(metal)
    cy, cx = float(rr.mean()), float(cc.mean())
    theta = np.linspace(0.0, 2 * math.pi, n_rays, endpoint=False)
    dist = np.arange(4.0, 0.6 * max(nx, ny), 0.5)
    yy = cy + dist[None, :] * np.sin(theta)[:, None]
    xx = cx + dist[None, :] * np.cos(theta)[:, None]
    ok = (yy >= 0) & (yy <= ny - 1) & (xx >= 0) & (xx <= nx - 1)
    yi = np.clip(np.rint(yy), 0, ny - 1).astype(int)
    xi = np.clip(np.rint(xx), 0, nx - 1).astype(int)
    use = ok & air[yi, xi]
    vals = hu[yi, xi]
    meds = [abs(float(np.median(vals[i][use[i]])) - base) for i in range(n_rays) if use[i].sum() >= 6]
    if len(meds) < min_rays:
        return 0.0
    return float(np.percentile(meds, 90)) / noise


def truncation_profile(hu: np.ndarray, n_rays: int = 180, outer_px: float = 2.0,
                       inner: tuple[float, float] = (4.0, 8.0), bone_hu: float = 350.0,
                       near: tuple[float, float] | None = None) -> dict[str, float]:
    """The truncation rim of one axial slice, read along rays from the reconstruction circle inward.

    Returns ``touch`` (fraction of the rays whose first pixels inside the field are tissue) and
    ``rim`` (median over touching rays of the mean HU of the first ``outer_px`` px of tissue minus
    the median of the tissue ``inner`` px deeper; 0 without touching rays). Rays whose deeper part is
    not tissue (lung, air) are not counted: a chest wall over lung is not a rim; nor rays whose outer or
    deep reading is above ``bone_hu`` (a skull or a rib at the cut is a natural bright edge, while the
    rim on soft tissue stays below it: 40-60 HU plus at most ~200). Square slices only
    (a reformat has no circle): others read touch 0. With ``near`` the same rays also give
    ``rim_near`` / ``touch_rays_near``, the rim against the tissue in that band (one sampling, see
    :func:`series_truncation`)."""
    f = {"touch": 0.0, "rim": 0.0, "touch_rays": 0.0}
    if near is not None:
        f.update(rim_near=0.0, touch_rays_near=0.0)
    ny, nx = hu.shape
    if ny != nx or nx < 24:
        return f
    cy, cx, r, fitted = recon_circle(hu)
    pad_level = float(np.min(hu)) + 0.5 if fitted else -np.inf
    theta = np.linspace(0.0, 2 * math.pi, n_rays, endpoint=False)
    depth = np.arange(0.5, max(inner[1], near[1] if near else 0.0) + outer_px + 4.0, 0.5)
    rad = r - depth[None, :]
    yy = cy + rad * np.sin(theta)[:, None]
    xx = cx + rad * np.cos(theta)[:, None]
    inside = (yy >= 0) & (yy <= ny - 1) & (xx >= 0) & (xx <= nx - 1)
    vals = ndi.map_coordinates(hu, [np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)], order=0, mode="nearest")
    valid = inside & (vals > pad_level)
    has = valid.any(axis=1)
    d0 = np.where(has, depth[np.argmax(valid, axis=1)], np.inf)[:, None]
    # the field's edge is where the circle says (first pixel inside within 2.5 px) on a usable ray
    ray_ok = (d0[:, 0] <= 2.5)
    outer = valid & (depth[None, :] >= d0) & (depth[None, :] < d0 + outer_px)
    nan = np.float32(np.nan)
    outer_v = np.where(outer, vals, nan)
    with warnings.catch_warnings():  # rays without outer samples give NaN: not counted below
        warnings.simplefilter("ignore", RuntimeWarning)
        o_med = np.nanmedian(outer_v, axis=1)
        o_mean = np.nanmean(outer_v, axis=1)
    touch = ray_ok & np.isfinite(o_med) & (o_med > TISSUE_HU)

    def rims_against(band: tuple[float, float]) -> list[float]:
        """Outer mean minus the median of the tissue ``band`` px deeper, per usable ray."""
        deep = valid & (depth[None, :] >= d0 + band[0]) & (depth[None, :] < d0 + band[1])
        with warnings.catch_warnings():  # rays without deep samples give NaN: not counted below
            warnings.simplefilter("ignore", RuntimeWarning)
            d_med = np.nanmedian(np.where(deep, vals, nan), axis=1)
        d_min = np.min(np.where(deep, vals, np.inf), axis=1)
        # bone at the cut (a skull, a rib under thin skin) is a natural bright edge: soft-tissue rays only
        use = touch & (deep.sum(axis=1) >= 3) & (d_min > TISSUE_HU) & (o_mean <= bone_hu) & (d_med <= bone_hu)
        return list((o_mean - d_med)[use])

    rims = rims_against(inner)
    f["touch"] = int(touch.sum()) / float(n_rays)
    f["touch_rays"] = float(len(rims))
    f["rim"] = float(np.median(rims)) if rims else 0.0
    if near is not None:
        near_rims = rims_against(near)
        f["touch_rays_near"] = float(len(near_rims))
        f["rim_near"] = float(np.median(near_rims)) if near_rims else 0.0
    return f


#: the near reading's deeper band (px from the cut): the tissue right under the rim
NEAR_INNER = (2.5, 4.5)


def series_truncation(slices: Sequence[np.ndarray], min_touch: float = 0.03, min_rays: int = 4) -> dict[str, float]:
    """Series truncation: the median rim over the slices whose body touches the circle (``touch`` at
    least ``min_touch`` and ``min_rays`` rays with a deep tissue reading), how many slices touch, and
    the slice (position in ``slices``) with the largest rim among them (-1: none).

    ``trunc_rim_near_med`` is the same median with the rim compared to the tissue right under it
    (:data:`NEAR_INNER`, 2.5-4.5 px) instead of 4-8 px deeper. Why: where the field cuts the body in
    its subcutaneous fat, the tissue 4-8 px deeper is muscle (140 HU above fat) and hides a rim of
    150-300 HU on the fat (worn 9208 E00021: -3 to 2 HU deep, 41-49 HU near); the layer right
    under the cut is mostly the same tissue. Clean bodies touching the circle read at most 4 HU near
    (worn 9206, 9208)."""
    per = [truncation_profile(np.asarray(s, dtype=np.float32), near=NEAR_INNER) for s in slices]
    idx = [k for k, x in enumerate(per) if x["touch"] >= min_touch and x["touch_rays"] >= min_rays]
    out = {"trunc_slices": float(len(idx)), "trunc_frac": len(idx) / max(len(per), 1), "trunc_rim_med": 0.0,
           "trunc_touch_med": 0.0, "trunc_slice": -1.0, "trunc_rim_near_med": 0.0}
    if idx:
        rims = np.array([per[k]["rim"] for k in idx])
        out["trunc_rim_med"] = float(np.median(rims))
        out["trunc_touch_med"] = float(np.median([per[k]["touch"] for k in idx]))
        out["trunc_slice"] = float(idx[int(np.argmax(rims))])
        near_rims = [per[k]["rim_near"] for k in idx if per[k]["touch_rays_near"] >= min_rays]
        out["trunc_rim_near_med"] = float(np.median(near_rims)) if near_rims else 0.0
    return out


#: the edge reading's bands (work-resolution px from the cut): the outermost pixel against the 1.5-3 px
#: right under it (see :func:`edge_profile`)
EDGE_OUTER = (0.0, 1.0)
EDGE_BAND = (1.5, 3.0)


def _work_scale(hu: np.ndarray, work_px: int) -> np.ndarray:
    """``hu`` block-averaged to about ``work_px`` columns (as :func:`artifact.ct_slice_features` does),
    the padding (:func:`padding_mask`, not grown) left out of each block's mean; blocks of padding
    only keep the padding value. Slices up to 1.25 ``work_px`` wide are returned as they are."""
    ny, nx = hu.shape
    f = max(1, nx // work_px) if nx > work_px * 1.25 else 1
    if f == 1:
        return hu
    h, w = ny // f * f, nx // f * f
    part = hu[:h, :w]
    pad = padding_mask(part, grow=0)
    lo = float(np.min(part))
    if not pad.any():
        return part.reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float32)
    keep = (~pad).reshape(h // f, f, w // f, f).sum(axis=(1, 3), dtype=np.int32)
    tot = np.where(pad, np.float32(0.0), part).reshape(h // f, f, w // f, f).sum(axis=(1, 3), dtype=np.float32)
    return np.where(keep > 0, tot / np.maximum(keep, 1), np.float32(lo)).astype(np.float32)


def edge_profile(hu: np.ndarray, work_px: int = 128, n_rays: int = 180, bone_hu: float = 350.0,
                 smooth: float = 1.0) -> tuple[float, int]:
    """The truncation rim at the very edge of the field: per ray from the reconstruction circle
    inward, the mean of the first work-resolution pixel of tissue (:data:`EDGE_OUTER`) minus the
    median of the tissue 1.5-3 px deeper (:data:`EDGE_BAND`); the slice's value is the median over
    the usable rays, returned with their count (0.0, 0 without any).

    Why: the generator's rim (150-300 HU) fades with a length of 1.5 px on a 64 px matrix (2.6 on
    128), so on small matrices it lives in the first one or two pixels. A field that cuts the body in
    a 3-4 px subcutaneous fat layer over muscle (fresh 9214 E00083, E00315; 9213 E00028, E00047:
    fat -100 HU, its first pixel -20..-55) reads below zero against the tissue 4-8 px deeper
    (muscle) and 2.5-4.5 px deeper (the fat-muscle boundary): ``trunc_rim_med`` -66..-105 HU, and
    the net read them at 0.00-0.46. Against the layer right under it the cut reads +32..+37 HU,
    clean bodies touching the circle about 0 (fat or skin at the edge).

    Usable rays: the first pixel inside the circle within 2.5 px of it, every sample of both bands
    soft tissue on a Gaussian-smoothed copy (``smooth`` px: choosing the rays on the noisy values
    themselves would keep the rays whose noise lifted the outer pixel above the tissue level, a bias
    of up to +46 HU on a noisy clean series, worn h9211 E00040) and no sample (raw or smoothed) above
    ``bone_hu``. Slices wider than 1.25 ``work_px`` are read block-averaged (:func:`_work_scale`),
    so the bands are in the same units as on a 128 px matrix. Square slices only (0.0, 0 otherwise)."""
    hu = _work_scale(np.asarray(hu, dtype=np.float32), work_px)
    ny, nx = hu.shape
    if ny != nx or nx < 24:
        return 0.0, 0
    cy, cx, r, fitted = recon_circle(hu)
    pad_level = float(np.min(hu)) + 0.5 if fitted else -np.inf
    theta = np.linspace(0.0, 2 * math.pi, n_rays, endpoint=False)
    depth = np.arange(0.5, EDGE_BAND[1] + 3.5, 0.5)
    rad = r - depth[None, :]
    yy = cy + rad * np.sin(theta)[:, None]
    xx = cx + rad * np.cos(theta)[:, None]
    inside = (yy >= 0) & (yy <= ny - 1) & (xx >= 0) & (xx <= nx - 1)
    coords = [np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)]
    vals = ndi.map_coordinates(hu, coords, order=0, mode="nearest")
    valid = inside & (vals > pad_level)
    filled = np.where(hu <= pad_level, np.float32(-1000.0), hu) if fitted else hu
    sv = ndi.map_coordinates(ndi.gaussian_filter(filled, smooth), coords, order=0, mode="nearest") if smooth > 0 else vals
    # the samples are 0.5 px apart: the outer band is the first 2 samples of tissue, the deeper band
    # the 3 samples from 1.5 px on (index arithmetic, no masked medians: this runs per slice)
    step = 0.5
    i0 = np.argmax(valid, axis=1)
    o_idx = i0[:, None] + np.arange(int(EDGE_OUTER[0] / step), int(EDGE_OUTER[1] / step))[None, :]
    b_idx = i0[:, None] + np.arange(int(EDGE_BAND[0] / step), int(EDGE_BAND[1] / step))[None, :]
    ok = valid.any(axis=1) & (depth[i0] <= 2.5) & (b_idx[:, -1] < len(depth))
    o_idx, b_idx = np.minimum(o_idx, len(depth) - 1), np.minimum(b_idx, len(depth) - 1)
    rows = np.arange(n_rays)[:, None]
    o_v, b_v = vals[rows, o_idx], vals[rows, b_idx]
    o_s, b_s = sv[rows, o_idx], sv[rows, b_idx]
    ok &= valid[rows, o_idx].all(axis=1) & valid[rows, b_idx].all(axis=1)
    ok &= (np.minimum(o_s.min(axis=1), b_s.min(axis=1)) > TISSUE_HU)
    ok &= (np.maximum(np.maximum(o_v, o_s).max(axis=1), np.maximum(b_v, b_s).max(axis=1)) <= bone_hu)
    rims = (o_v.mean(axis=1) - np.median(b_v, axis=1))[ok]
    return (float(np.median(rims)) if len(rims) else 0.0), int(len(rims))


def series_edge(slices: Sequence[np.ndarray], work_px: int = 128, min_rays: int = 4, max_slices: int = 24) -> dict[str, float]:
    """The edge rim of a series (:func:`edge_profile`) on at most ``max_slices`` evenly spaced slices
    (about 1-4 ms a slice; the default 24 halves a 48-slice series: fewer than 20 slices let the
    noise of one slice's median move a noisy clean series by +13 HU, worn h9211 E00040): the median over
    the slices with at least ``min_rays`` usable rays (``trunc_edge_med``, 0 without any), how many
    there are (``trunc_edge_slices``) and their fraction of the slices read (``trunc_edge_frac``)."""
    n = len(slices)
    ks = np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int)) if n else []
    per = [edge_profile(slices[int(k)], work_px) for k in ks]
    vals = [v for v, m in per if m >= min_rays]
    return {"trunc_edge_med": float(np.median(vals)) if vals else 0.0, "trunc_edge_slices": float(len(vals)),
            "trunc_edge_frac": len(vals) / max(len(per), 1)}


def bright_outlier(slices: Sequence[np.ndarray], hu_max: Sequence[float], min_excess: float) -> dict[str, float]:
    """A blurred implant below the metal threshold: one slice's maximum far above the series' bone.

    ``hu_max`` holds each slice's body maximum (``ct_slice_features``). The excess is the series'
    highest maximum minus the 75th percentile of the maxima (``bright_excess``); the object is the
    pixels of that slice at or above the halfway point between the two (``bright_px``). Its depth
    (``bright_depth``) is its smallest distance to the outside air (:func:`outside_air`) or to the
    field's edge (:func:`padding_mask`: a body the field cuts ends there) over the
    body's equivalent radius (sqrt of the area above -400 HU over pi): scale free, 0 on the skin.
    ``bright_streak_air`` is :func:`streak_in_air` with the halfway point as the metal threshold.

    Why: aneurysm clips and pedicle screws of 5-75 voxels are blurred by the kernel and the
    partial volume to 1900-2500 HU on one or two slices, below ``ct_metal_hu`` 2500, so the metal
    measures read nothing (fresh 9216 E00033, E00181; worn 9210 E00063). The clean slice maxima of
    bone stay within 860 HU of their series' upper quartile (8650, 8810, worn 9210-9214), and the
    bright spots of the generator's skin objects (buttons, electrodes) lie at depth 0.05-0.12.
    Only the series whose excess reaches ``min_excess`` read the slice (one slice: one labelling
    and one distance transform), the others return the excess alone."""
    hm = np.asarray(hu_max, dtype=float)
    out = {"bright_excess": 0.0, "bright_px": 0.0, "bright_depth": -1.0, "bright_streak_air": 0.0, "bright_slice": -1.0}
    if len(hm) < 3 or len(hm) != len(slices):
        return out
    k = int(np.argmax(hm))
    q = float(np.quantile(hm, 0.75))
    excess = float(hm[k] - q)
    out["bright_excess"], out["bright_slice"] = excess, float(k)
    if excess < min_excess:
        return out
    hu = np.asarray(slices[k], dtype=np.float32)
    level = q + 0.5 * excess
    blob = hu >= level
    out["bright_px"] = float(blob.sum())
    # the surface is the outside air and, where the field cuts the body, the field's edge (the
    # padding): a necklace on a neck the field cuts lies at that edge (i9218 E00234, depth 1.9 by
    # the air alone, 0 with the edge)
    air = outside_air(hu) | padding_mask(hu)
    body = hu > -400.0
    if blob.any() and body.any():
        if air.any():
            dist = ndi.distance_transform_edt(~air)
            out["bright_depth"] = float(dist[blob].min()) / math.sqrt(float(body.sum()) / math.pi)
        else:  # a targeted field inside the body: no skin on the slice for the object to lie on
            out["bright_depth"] = 1.0
    out["bright_streak_air"] = streak_in_air(hu, level)
    return out
