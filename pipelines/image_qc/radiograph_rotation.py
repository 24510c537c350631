"""Pelvis AP rotation from the pixels: left/right mirror asymmetry of the iliac wings.

Why: on a straight pelvis AP the two iliac wings (and the obturator foramina) are mirror images
about the midline (../shared/domain/qc-items.md: pelvis AP, obturator foramina symmetric). Each
wing is a plate turned about 40 degrees out of the coronal plane, so a patient turned by theta
about the long axis shows one wing more face-on (wider) and the other more edge-on (narrower):
at 10 degrees the projected widths differ by about a third. The analyser's pelvis mask is too
coarse to carry that (its left/right area imbalance does not separate turned from straight
views), but the bone edges in the pixels do.

Measure: the image is band-passed (fine smoothing ``fine_px`` minus a Gaussian of ``band_mm``,
which keeps the cortical edges of the wings and removes the soft-tissue thickness gradient),
the rows of the upper part of the analyser's pelvis mask (``rows``: fraction of its height, the
wings) are taken, and for every candidate axis within ``search`` of the mask's middle the left
half is mirrored onto the right half. The asymmetry is 1 - the best correlation over the axes.
It is sign-free: a turn either way breaks the symmetry, and a centring shift does not (the
axis is searched)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi


def pelvis_mirror_asymmetry(image: np.ndarray, mask: np.ndarray | None, px: float | None,
                            band_mm: float = 8.0, fine_px: float = 1.5,
                            rows: tuple[float, float] = (0.0, 0.5), search: float = 0.15,
                            min_half_px: int = 5, box: tuple[int, int, int, int] | None = None,
                            edge_px: int = 2, wing_columns: bool = True) -> float | None:
    """1 - best mirror correlation of the band-passed wing rows about a vertical axis (0 =
    perfectly symmetric, larger = more asymmetric); None when the mask is missing or too small.
    ``px`` is the pixel spacing in mm (2 mm assumed when unknown). ``box`` (r0, r1, c0, c1): the
    collimated field; only its pixels (``edge_px`` inside its edges) are compared, since a shutter
    edge on one side has no mirror partner and is not anatomy (a view shifted 35 mm sideways read
    0.51 with the shutter in, 0.36 without).

    ``wing_columns``: the compared width (and the axis search's centre) comes from the mask's
    columns within the wing rows only, not from the whole mask. Why: stray mask fragments below the
    wings (femoral heads, pubic rami at a field edge) widened the span, so that on a view shifted
    sideways it reached the skin/air edge on one side, which has no mirror partner (worn i9212
    E00016, a straight, blurred, off-centre pelvis AP: 0.645 -> 0.235; the rotated pelvis APs of
    the worn sets and dx renders 8770-8772 keep >= 0.53, straight ones <= 0.47)."""
    if mask is None:
        return None
    m = np.asarray(mask, bool)
    img = np.asarray(image, dtype=np.float64)
    if m.shape != img.shape[:2]:
        return None
    if box is not None:
        r0, r1, c0, c1 = (int(b) for b in box)
        r0, c0 = max(0, r0 + edge_px), max(0, c0 + edge_px)
        r1, c1 = min(img.shape[0], r1 - edge_px), min(img.shape[1], c1 - edge_px)
        if r1 - r0 < 8 or c1 - c0 < 8:
            return None
        img, m = img[r0:r1, c0:c1], m[r0:r1, c0:c1]
    if m.sum() < 50:
        return None
    rs = np.nonzero(m.any(axis=1))[0]
    cs = np.nonzero(m.any(axis=0))[0]
    r0 = int(rs[0] + rows[0] * (rs[-1] - rs[0]))
    r1 = int(rs[0] + rows[1] * (rs[-1] - rs[0]))
    if wing_columns:
        cs = np.nonzero(m[r0:r1 + 1].any(axis=0))[0]
        if cs.size == 0:
            return None
    c0, c1 = int(cs[0]), int(cs[-1])
    half = (c1 - c0) // 2
    if r1 - r0 < 3 or half < min_half_px:
        return None
    spacing = float(px) if px else 2.0
    hp = ndi.gaussian_filter(img, fine_px) - ndi.gaussian_filter(img, band_mm / spacing)
    band = hp[r0:r1 + 1]
    best = None
    reach = int(search * 2 * half)
    for x0 in range(c0 + half - reach, c0 + half + reach + 1):
        h = min(half, x0, band.shape[1] - 1 - x0)
        if h < min_half_px:
            continue
        a = band[:, x0 - h:x0][:, ::-1]
        b = band[:, x0 + 1:x0 + h + 1]
        a = a - a.mean()
        b = b - b.mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        if den <= 0:
            continue
        c = float((a * b).sum()) / den
        best = c if best is None else max(best, c)
    return None if best is None else round(1.0 - best, 4)


def pelvis_mirror_from_params(image: np.ndarray, mask: np.ndarray | None, px: float | None,
                              p: dict[str, Any], box: tuple[int, int, int, int] | None = None) -> float | None:
    """:func:`pelvis_mirror_asymmetry` with the settings of dx.yaml ``positioning.pelvis_mirror``."""
    return pelvis_mirror_asymmetry(image, mask, px, float(p.get("band_mm", 8.0)), float(p.get("fine_px", 1.5)),
                                   tuple(p.get("rows") or (0.0, 0.5)), float(p.get("search", 0.15)),
                                   box=box, edge_px=int(p.get("edge_px", 2)),
                                   wing_columns=bool(p.get("wing_columns", True)))


def outline_rows(box: tuple[int, int, int, int], mask: np.ndarray | None,
                 min_rows: int = 5) -> tuple[int, int]:
    """Rows (r0, r1) of the field over which a spine's soft-tissue outline is read: the rows of the
    item's vertebra ``mask`` inside the collimated field ``box``, else the field's own rows.

    Why: :func:`radiograph.spine_outline_offset` reads the middle rows of the field. With a field
    collimated too wide, those rows hold the skull base and the shoulders (whose outline is cut by
    the field or is far wider than the neck) instead of the neck: held-out 9205 E00040, a 9-degree
    turn, read -2.0 mm over the field against -2.9 mm over the cervical column's rows (limit 2.2).
    The outline's middle is a body measure, so it is read where the body part is."""
    r0, r1 = int(box[0]), int(box[1])
    if mask is None:
        return r0, r1
    m = np.asarray(mask, bool)
    rows = np.nonzero(m.any(axis=1))[0]
    rows = rows[(rows >= r0) & (rows < r1)]
    if len(rows) < min_rows:
        return r0, r1
    return int(rows[0]), int(rows[-1]) + 1


def posterior_element_offset(image: np.ndarray, column: np.ndarray | None, px: float | None,
                             box: tuple[int, int, int, int] | None = None, band_mm: float = 6.0,
                             edge_window: float = 0.35, bone_percentile: float = 85.0,
                             min_width: int = 3, min_rows: int = 5) -> tuple[float | None, int]:
    """Offset (mm, image right positive) of the posterior elements (spinous process, pedicles)
    from the middle of the vertebral bodies on a frontal spine view, the bodies' edges found in
    the pixels; median over the rows of ``column`` (the analyser's vertebra mask). Returns
    (None, rows used) with fewer than ``min_rows`` usable rows.

    Why: turned by theta about the long axis, the spinous process (5-6 cm behind the body's
    centre in the generator and in patients) swings sideways against the body by about
    sin(theta) x that lever, 6-10 mm at 6-12 degrees, the classic sign. The older
    :func:`radiograph.spinous_column_offset` takes the body's middle from the analyser's mask,
    whose edges are a pixel or two off on 2-3.4 mm grids and shift with the collimation (turned
    views with a wide field read -3.3 and -3.6 mm, under its 4.5 mm limit). Here, per row, each
    body edge is the strongest horizontal gradient within ``edge_window`` x the mask's width of
    the mask's edge (the cortex is the sharpest edge there), and the densest bone of the
    band-passed image (1 px Gaussian minus a ``band_mm`` Gaussian, which removes the body's own
    rounded profile and the soft-tissue gradient) between the edges weights a column centroid.
    Rows within 2 px of the field's top or bottom edge (``box``) are skipped."""
    if column is None:
        return None, 0
    img = np.asarray(image, dtype=np.float64)
    m = np.asarray(column, bool)
    if m.shape != img.shape[:2]:
        return None, 0
    spacing = float(px) if px else 2.0
    r0, r1, c0, c1 = (int(b) for b in box) if box is not None else (0, img.shape[0], 0, img.shape[1])
    fine = ndi.gaussian_filter(img, 1.0)
    hp = fine - ndi.gaussian_filter(img, band_mm / spacing)
    gx = np.abs(ndi.sobel(fine, axis=1))
    offs = []
    for i in np.nonzero(m.sum(axis=1) >= min_width)[0]:
        if i < r0 + 2 or i >= r1 - 2:
            continue
        cols = np.nonzero(m[i])[0]
        a, b = int(cols[0]), int(cols[-1])
        pad = max(2, int(edge_window * (b - a + 1)))
        la, lb = max(c0 + 1, a - pad), min(c1 - 1, a + pad)
        ra, rb = max(c0 + 1, b - pad), min(c1 - 1, b + pad)
        if lb <= la or rb <= ra:
            continue
        le = la + int(np.argmax(gx[i, la:lb]))
        re = ra + int(np.argmax(gx[i, ra:rb]))
        if re - le < 4:
            continue
        seg = hp[i, le + 1:re]
        w = np.clip(seg - np.percentile(seg, bone_percentile), 0, None)
        if w.sum() <= 0:
            continue
        offs.append(float((w * np.arange(le + 1, re)).sum() / w.sum() - (le + re) / 2.0) * spacing)
    if len(offs) < min_rows:
        return None, len(offs)
    return round(float(np.median(offs)), 2), len(offs)


def clavicle_spine_offset(clavicle_right: np.ndarray | None, clavicle_left: np.ndarray | None,
                          spine: np.ndarray | None, px: float | None) -> float | None:
    """Vertebral midline minus the midpoint of the medial clavicle ends (mm, image right positive)
    at the ends' row, from the analyser's masks: the chest's clavicle sign (the analyser's
    ``rotation_raw_mm``, which it reports for chest views only), read on any frontal view whose field
    holds both clavicles (a thoracic-spine AP). None when a mask is missing or empty.

    Why: on a thoracic AP the spinous processes swing against the anterior clavicle heads when the
    patient turns, as on a chest PA; the analyser computes the sign only in its chest branch, so it
    is recomputed here from the same masks with the same helpers (classical.spine_midline etc.)."""
    from radqc.models.radiograph.classical import extreme_point, largest, midline_col_at, spine_midline

    if clavicle_right is None or clavicle_left is None or spine is None or not px:
        return None
    cr, cl = np.asarray(clavicle_right, bool), np.asarray(clavicle_left, bool)
    sp = np.asarray(spine, bool)
    if not cr.any() or not cl.any() or not sp.any():
        return None
    line = spine_midline(sp)
    end_r = extreme_point(largest(cr), (0.0, 1.0))   # toward the image right = the midline
    end_l = extreme_point(largest(cl), (0.0, -1.0))
    if not line or end_r is None or end_l is None:
        return None
    row = (end_r[0] + end_l[0]) / 2
    col = midline_col_at(line, row, half_band=max(3.0, 0.03 * sp.shape[0]))
    if col is None:
        return None
    return round(float(col - (end_r[1] + end_l[1]) / 2) * float(px), 2)


def heart_clavicle_score(heart_mm: float | None, clavicle_mm: float | None,
                         cfg: dict[str, Any]) -> float | None:
    """Sum of the standard scores of the heart sign (heart-spine offset, ``cfg['heart']``) and the
    clavicle sign (:func:`clavicle_spine_offset`, ``cfg['clavicle']``, negated: it swings the other
    way), each ``(value - baseline) / spread`` against straight views; a sign further than its
    ``max_plausible`` from its baseline is a wrong mask and left out. None when neither is read.

    Why both (thoracic AP, helper NEWI, session 22): the heart sign alone put 7-8 degree turns at
    19.0-19.8 mm against straight views up to 19.0 (t9301, s9302); the clavicle sign is read from
    other masks, so its error is independent and the sum separates further."""
    zs = []
    for val, key, sign in ((heart_mm, "heart", 1.0), (clavicle_mm, "clavicle", -1.0)):
        c = cfg.get(key) or {}
        if val is None or not c:
            continue
        d = float(val) - float(c["baseline"])
        if c.get("max_plausible") is not None and abs(d) > float(c["max_plausible"]):
            continue
        zs.append(sign * d / float(c["spread"]))
    return round(float(sum(zs)), 2) if zs else None
