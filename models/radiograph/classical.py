"""From masks to landmarks and positioning measurements (numpy + scipy, no learning).

The network says *where* the structures are; the positioning checks need *numbers*:
scapula over the lung fields, rotation (spinous processes vs the medial clavicle ends),
inspiration (posterior ribs above the right hemidiaphragm), costophrenic angles inside
the exposed field, lung-field centroid vs the detector centre, the L/R marker; for the
knee the joint space and fibular overlap, for the spine the midline. Every function works
on the model grid (one pixel = ``px_mm`` mm, ``None`` when the image has no spacing) and
returns plain Python values, so the results serialise to JSON as they are.

Notes are reason codes (``code`` or ``code:detail``); :mod:`.infer` turns them into
bilingual text.

Conventions (DICOM display of a frontal view): image columns run from the patient's right
to left, rows from head to feet; on a lateral view columns run anterior to posterior.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

Point = tuple[float, float]

#: rotation offset in mm = ROTATION_GAIN x (vertebral midline - clavicle-end midpoint). The
#: spinous process lies behind the vertebral body, so it moves further than the body's
#: projected centre when the patient turns. Fitted by least squares through the origin on
#: tuning seeds 70000-70029 (training range, never rendered for training), measuring on the
#: generator's truth masks: gain 1.288, correlation 0.998 (models/cards/cxr_anatomy.md).
ROTATION_GAIN = 1.288
#: the reported ``rotation_offset_mm`` combines the clavicle offset with the vertebral
#: midline's offset from the midpoint of the lateral lung edges (robust where a medial
#: clavicle end hides behind the spine): offset = A x clavicle_raw + B x thorax_raw, fitted
#: on tuning seeds 70000-70039 with the network's own masks (evaluate.calibrate; card). The
#: network pulls the medial clavicle ends toward symmetry, hence A > ROTATION_GAIN.
ROTATION_A = 3.794
ROTATION_B = 3.925
#: when a lung touches the field's lateral edge (cut off) the thorax feature is unusable:
#: offset = ROTATION_C x clavicle_raw, C fitted the same way on the network's masks.
ROTATION_C = 7.111
#: beyond this the spinous line would be more than 6 cm from the clavicle midpoint, an oblique
#: view rather than a rotated PA: the masks are wrong, so no rotation value is reported.
ROTATION_PLAUSIBLE_MM = 60.0
#: how far (fraction of the spine-to-lateral-lung-edge distance) from the spine the
#: posterior-rib profile is read: medial enough that no anterior rib crosses it.
RIB_PROFILE_AT = 0.3
#: classical lung fields: shortest vertical dark run (fraction of the field height) kept as lung.
#: Seen on the real CR (RG1_UNCI) and its real-derived variants: the band of air above the
#: shoulders is about 10% of the field high, the lung fields 60-75%.
LUNG_MIN_RUN = 0.2
#: classical lung fields, second pass: the Otsu threshold of a rank image sits near its median, so
#: it moves with what else the field holds (with the real CR's bright lower quarter cut off, its
#: lower lobes fall above it and the cut costophrenic angles were not seen). The lung fields found
#: are grown into the connected pixels darker than LUNG_GROW x their own median rank, a level tied to
#: the lungs rather than to the rest of the field. Chosen on the real CR (RG1_UNCI) and its
#: real-derived variants, viewed as overlays: 2.2 barely grows, 2.5 reaches the lung bases and the
#: cut edge, 2.8 starts to run into the gastric air, 3.1 into the soft tissue above the clavicles.
#: 0 turns the pass off. Used only where the network's lungs are implausible (real images).
LUNG_GROW = 2.5


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy.ndimage import label

    lab, n = label(mask)
    return lab, int(n)


def largest(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (a lung, a clavicle is one object)."""
    lab, n = components(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def centroid(mask: np.ndarray) -> Point | None:
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return float(ys.mean()), float(xs.mean())


def extreme_point(mask: np.ndarray, direction: tuple[float, float], band: float = 2.0) -> Point | None:
    """Mean position of the pixels within ``band`` px of the mask's extreme along ``direction`` (dy, dx)."""
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    proj = ys * direction[0] + xs * direction[1]
    keep = proj >= proj.max() - band
    return float(ys[keep].mean()), float(xs[keep].mean())


def spine_midline(spine: np.ndarray, min_width: int = 2) -> list[Point]:
    """Per-row centre of the vertebral column mask: a polyline (row, col) from head to feet."""
    pts: list[Point] = []
    for r in np.nonzero(spine.sum(axis=1) >= min_width)[0]:
        cols = np.nonzero(spine[r])[0]
        pts.append((float(r), float((cols[0] + cols[-1]) / 2)))
    return pts


def midline_col_at(line: list[Point], row: float, half_band: float) -> float | None:
    """Column of the midline near ``row`` (median over rows within ``half_band``)."""
    near = [c for r, c in line if abs(r - row) <= half_band]
    if not near:
        if len(line) < 2:
            return None
        rows = np.array([p[0] for p in line])
        cols = np.array([p[1] for p in line])
        a, b = np.polyfit(rows, cols, 1)
        return float(a * row + b)
    return float(np.median(near))


def thorax_offset(lung_r: np.ndarray, lung_l: np.ndarray, line: list[Point]) -> float | None:
    """Vertebral midline minus the midpoint of the lungs' lateral edges, mean over mid-lung rows (px).

    When the patient turns, the spine (posterior) swings one way while the lateral chest
    walls barely move, so this offset grows with rotation like the clavicle one does."""
    if not (lung_r.any() and lung_l.any()) or not line:
        return None
    rows = np.nonzero(lung_r.any(axis=1) & lung_l.any(axis=1))[0]
    if len(rows) < 5:
        return None
    sel = rows[int(0.3 * len(rows)) : int(0.7 * len(rows)) + 1]
    mid = {int(r): c for r, c in line}
    vals = []
    for r in sel:
        if int(r) in mid:
            edge_r = np.nonzero(lung_r[r])[0][0]
            edge_l = np.nonzero(lung_l[r])[0][-1]
            vals.append(mid[int(r)] - (edge_r + edge_l) / 2)
    return float(np.median(vals)) if vals else None


def field_box(field: np.ndarray) -> tuple[int, int, int, int] | None:
    """(r0, r1, c0, c1) of the exposed field (half-open), from its mask's rows/cols that are mostly exposed."""
    if field.sum() < 16:
        return None
    rows = np.nonzero(field.mean(axis=1) > 0.5 * field.mean(axis=1).max())[0]
    cols = np.nonzero(field.mean(axis=0) > 0.5 * field.mean(axis=0).max())[0]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def touches_edge(mask: np.ndarray, box: tuple[int, int, int, int], edges: tuple[str, ...], tol: int = 2) -> bool:
    """Whether ``mask`` reaches the field's ``edges`` (bottom/top/left/right) within ``tol`` px."""
    r0, r1, c0, c1 = box
    sl = {"top": (slice(r0, r0 + tol), slice(None)), "bottom": (slice(max(r1 - tol, 0), r1), slice(None)),
          "left": (slice(None), slice(c0, c0 + tol)), "right": (slice(None), slice(max(c1 - tol, 0), c1))}
    return any(bool(mask[sl[e]].any()) for e in edges)


def dome_row(image: np.ndarray, lung: np.ndarray) -> float | None:
    """Row of a hemidiaphragm dome: the strongest bright-going step down the lung's central third.

    Below the dome the beam crosses liver (right) or spleen/stomach as well as the lung
    recess, so the image brightens sharply there; ribs cross the band obliquely and average out."""
    from scipy.ndimage import gaussian_filter1d

    if lung.sum() < 30:
        return None
    rows = np.nonzero(lung.any(axis=1))[0]
    cols = np.nonzero(lung.any(axis=0))[0]
    c0, c1 = cols[0], cols[-1]
    w = c1 - c0 + 1
    band = slice(int(c0 + w / 3), int(c1 - w / 3) + 1)
    top, bottom = int(rows[0]), int(rows[-1])
    sub = image[top : bottom + 1, band]
    inside = lung[top : bottom + 1, band]
    n = inside.sum(axis=1)
    prof = np.where(n > 0, (sub * inside).sum(axis=1) / np.maximum(n, 1), np.nan)
    valid = ~np.isnan(prof)
    if valid.sum() < 8:
        return None
    prof = np.interp(np.arange(len(prof)), np.nonzero(valid)[0], prof[valid])
    grad = np.gradient(gaussian_filter1d(prof, 1.5))
    start = int(len(prof) * 0.45)  # the dome is in the lower half of the lung field
    if start >= len(grad) - 1:
        return None
    return float(top + start + int(np.argmax(grad[start:])))


def count_runs(profile: np.ndarray) -> list[float]:
    """Centres of the runs of True in a 1-D boolean profile."""
    p = np.concatenate([[False], profile.astype(bool), [False]])
    d = np.diff(p.astype(np.int8))
    starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
    return [float((s + e - 1) / 2) for s, e in zip(starts, ends, strict=True)]


def posterior_ribs_above(ribs: np.ndarray, col: float, top_row: float, limit_row: float, min_gap: int = 2) -> int:
    """Posterior ribs whose band crosses column ``col`` between ``top_row`` and ``limit_row``.

    Reads a 3-column median profile (noise-robust), merges runs closer than ``min_gap`` px."""
    c = int(round(col))
    if c < 1 or c >= ribs.shape[1] - 1:
        return 0
    prof = np.median(ribs[:, c - 1 : c + 2].astype(np.uint8), axis=1) > 0
    prof[: max(0, int(top_row))] = False
    # merge short gaps (a rib broken by thresholding)
    idx = np.nonzero(prof)[0]
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if 1 < b - a <= min_gap:
            prof[a:b] = True
    return sum(1 for centre in count_runs(prof) if centre < limit_row)


@cache
def _glyph(letter: str, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font: Any = ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:
        font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox(letter)
    img = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(img).text((-left, -top), letter, fill=255, font=font)
    return np.asarray(img) > 96


def read_letter(glyph: np.ndarray) -> tuple[str | None, float]:
    """'L' or 'R' by overlap with rendered glyphs of the same size; (None, score) when neither fits."""
    from .preprocess import resize

    if glyph.sum() < 6:
        return None, 0.0
    ys, xs = np.nonzero(glyph)
    crop = glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    best: tuple[str | None, float] = (None, 0.0)
    for letter in ("L", "R"):
        t = _glyph(letter, 48)
        a = resize(crop, t.shape, "bilinear") > 0.5
        iou = float((a & t).sum() / max((a | t).sum(), 1))
        if iou > best[1]:
            best = (letter, iou)
    return best if best[1] >= 0.45 else (None, best[1])


def marker(marker_prob: np.ndarray, image: np.ndarray, lungs: np.ndarray, view: str | None) -> dict[str, Any]:
    """The lead L/R marker: found or not, position (row, col), image side, letter, whether over a lung."""
    m = marker_prob > 0.5
    if m.sum() < 3:
        return {"present": False}
    lab, n = components(m)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    comp = lab == int(sizes.argmax())
    ys, xs = np.nonzero(comp)
    r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    # the glyph itself: the brightest (lead) pixels of the box on the model input
    box = image[r0:r1, c0:c1]
    glyph = box >= np.percentile(box, 50) if box.size else comp[r0:r1, c0:c1]
    letter, score = read_letter(comp[r0:r1, c0:c1] | (glyph & comp[r0:r1, c0:c1]))
    col = float(xs.mean())
    return {
        "present": True,
        "position": (float(ys.mean()), col),
        "side_of_image": "left" if col < image.shape[1] / 2 else "right",
        "text": letter,
        "text_score": round(score, 3),
        "over_lung": bool((comp & lungs).any()),
        "area_px": int(comp.sum()),
        "box": [int(r0), int(r1), int(c0), int(c1)],
    }


def read_marker_letter(image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[str | None, float]:
    """Read L/R from the full-resolution crop of the marker: lead is the brightest thing there."""
    r0, r1, c0, c1 = box
    crop = image[max(r0, 0) : r1, max(c0, 0) : c1]
    if crop.size < 16:
        return None, 0.0
    lo, hi = np.percentile(crop, [10, 99.5])
    glyph = crop >= lo + 0.6 * (hi - lo)
    lab, n = components(glyph)
    if n > 1:  # keep the largest blob (the letter), drop specks of noise
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        glyph = lab == int(sizes.argmax())
    return read_letter(glyph)


def mm(value: float | None, px_mm: float | None, nd: int = 1) -> float | None:
    return None if value is None or px_mm is None else round(float(value) * px_mm, nd)


def chest_frontal(m: dict[str, np.ndarray], image: np.ndarray, px_mm: float | None) -> tuple[dict[str, Point | None], dict[str, Any], list[str]]:
    """Landmarks, measurements and notes of a chest PA/AP from its masks (model grid)."""
    lm: dict[str, Point | None] = {}
    out: dict[str, Any] = {}
    notes: list[str] = []
    lung_l, lung_r = largest(m["lung_left"]), largest(m["lung_right"])
    lungs = lung_l | lung_r
    box = field_box(m["field"]) or (0, image.shape[0], 0, image.shape[1])
    out["field_px"] = {"rows": [box[0], box[1]], "cols": [box[2], box[3]]}
    # --- lung apices and costophrenic angles (image left = patient right on PA/AP)
    lm["lung_apex_right"] = extreme_point(lung_r, (-1.0, 0.0))
    lm["lung_apex_left"] = extreme_point(lung_l, (-1.0, 0.0))
    lm["costophrenic_angle_right"] = extreme_point(lung_r, (0.7071, -0.7071), band=1.5)
    lm["costophrenic_angle_left"] = extreme_point(lung_l, (0.7071, 0.7071), band=1.5)
    cp_in: dict[str, bool | None] = {}
    for side, lung, lateral in (("right", lung_r, "left"), ("left", lung_l, "right")):
        if not lung.any():
            cp_in[side] = None
            continue
        lower = lung.copy()
        rows = np.nonzero(lung.any(axis=1))[0]
        lower[: int(rows[0] + 0.6 * (rows[-1] - rows[0]))] = False
        cp_in[side] = not touches_edge(lower, box, ("bottom", lateral))
    out["costophrenic_angle_in_field"] = cp_in
    # --- scapulae over the lung fields
    sc_in, sc_over = {}, {}
    for side in ("left", "right"):
        sc = m[f"scapula_{side}"]
        lung = lung_l if side == "left" else lung_r
        sc_in[side] = round(float((sc & lungs).sum() / sc.sum()), 4) if sc.sum() else 0.0
        sc_over[side] = round(float((sc & lung).sum() / lung.sum()), 4) if lung.sum() else None
    out["scapula_in_lung_fraction"] = sc_in
    out["scapula_lung_overlap_fraction"] = sc_over
    # --- rotation: medial clavicle ends about the vertebral midline
    spine = m["vertebrae_cervical"] | m["vertebrae_thoracic"]
    line = spine_midline(spine)
    out["spine_midline"] = [(round(r, 1), round(c, 1)) for r, c in line[:: max(1, len(line) // 32)]]
    cl_r, cl_l = largest(m["clavicle_right"]), largest(m["clavicle_left"])
    lm["clavicle_medial_end_right"] = extreme_point(cl_r, (0.0, 1.0))  # toward image right = midline
    lm["clavicle_medial_end_left"] = extreme_point(cl_l, (0.0, -1.0))
    end_r, end_l = lm["clavicle_medial_end_right"], lm["clavicle_medial_end_left"]
    if end_r and end_l and line:
        row = (end_r[0] + end_l[0]) / 2
        sp = midline_col_at(line, row, half_band=max(3.0, 0.03 * image.shape[0]))
        if sp is not None:
            lm["spinous_process_line"] = (row, sp)
            mid = (end_r[1] + end_l[1]) / 2
            d_r, d_l = sp - end_r[1], end_l[1] - sp
            raw = sp - mid
            cut = touches_edge(lung_r, box, ("left",)) or touches_edge(lung_l, box, ("right",))
            thorax = None if cut else thorax_offset(lung_r, lung_l, line)
            combined = ROTATION_A * raw + ROTATION_B * thorax if thorax is not None else ROTATION_C * raw
            out["rotation_raw_px"] = round(raw, 2)
            out["rotation_raw_mm"] = mm(raw, px_mm, 2)
            out["rotation_thorax_raw_mm"] = mm(thorax, px_mm, 2)
            out["rotation_clavicle_mm"] = mm(raw * ROTATION_GAIN, px_mm, 2)
            out["rotation_offset_mm"] = mm(combined, px_mm, 2)
            if px_mm is not None and abs(combined * px_mm) > ROTATION_PLAUSIBLE_MM:
                out["rotation_offset_mm"] = None
                notes.append(f"rotation_implausible:{combined * px_mm:.0f} mm")
            out["clavicle_spine_distance_mm"] = {"right": mm(d_r, px_mm), "left": mm(d_l, px_mm)}
            out["rotation_ratio"] = round((d_l - d_r) / max(abs(d_l) + abs(d_r), 1e-6), 4)
    else:
        notes.append("rotation_not_found")
    # --- inspiration: posterior ribs above the right hemidiaphragm dome
    dome_r = dome_row(image, lung_r)
    dome_l = dome_row(image, lung_l)
    for name, d, lung in (("diaphragm_dome_right", dome_r, lung_r), ("diaphragm_dome_left", dome_l, lung_l)):
        if d is None:
            lm[name] = None
            continue
        dcols = np.nonzero(lung[int(d)])[0] if lung[int(d)].any() else np.nonzero(lung.any(axis=0))[0]
        lm[name] = (d, float(dcols.mean()))
    if dome_r is not None and line and lung_r.any():
        sp_col = midline_col_at(line, dome_r, half_band=6.0) or float(np.mean([c for _, c in line]))
        lat_col = float(np.nonzero(lung_r.any(axis=0))[0][0])
        col = sp_col - RIB_PROFILE_AT * (sp_col - lat_col)
        top = float(np.nonzero(lung_r.any(axis=1))[0][0]) - 0.04 * image.shape[0]
        top_spine = min((r for r, _ in line), default=top)
        out["posterior_ribs_above_right_dome"] = posterior_ribs_above(m["ribs"], col, max(min(top, top_spine), 0), dome_r)
        out["rib_profile_col"] = round(col, 1)
    else:
        out["posterior_ribs_above_right_dome"] = None
        notes.append("inspiration_not_found")
    # --- centring: lung-field centroid vs detector (image) centre
    c = centroid(lungs)
    if c is not None:
        dy, dx = c[0] - (image.shape[0] - 1) / 2, c[1] - (image.shape[1] - 1) / 2
        out["lung_centroid_offset_px"] = {"x": round(dx, 1), "y": round(dy, 1)}
        out["lung_centroid_offset_mm"] = {"x": mm(dx, px_mm), "y": mm(dy, px_mm)} if px_mm else None
    out["marker"] = marker(m["marker_prob"], image, lungs, "PA")
    out["foreign_object_over_lung_px"] = int((m["foreign_object"] & lungs).sum())
    return lm, out, notes


def chest_lateral(m: dict[str, np.ndarray], image: np.ndarray, px_mm: float | None) -> tuple[dict[str, Point | None], dict[str, Any], list[str]]:
    """Lateral chest: apex, posterior costophrenic angle (columns anterior -> posterior), field, centring."""
    lm: dict[str, Point | None] = {}
    out: dict[str, Any] = {}
    lungs = largest(m["lung_left"] | m["lung_right"])
    box = field_box(m["field"]) or (0, image.shape[0], 0, image.shape[1])
    out["field_px"] = {"rows": [box[0], box[1]], "cols": [box[2], box[3]]}
    lm["lung_apex"] = extreme_point(lungs, (-1.0, 0.0))
    lm["costophrenic_angle_posterior"] = extreme_point(lungs, (0.7071, 0.7071), band=1.5)
    lm["costophrenic_angle_anterior"] = extreme_point(lungs, (0.7071, -0.7071), band=1.5)
    if lungs.any():
        lower = lungs.copy()
        rows = np.nonzero(lungs.any(axis=1))[0]
        lower[: int(rows[0] + 0.6 * (rows[-1] - rows[0]))] = False
        out["costophrenic_angle_in_field"] = {"posterior": not touches_edge(lower, box, ("bottom", "right"))}
        out["apex_in_field"] = not touches_edge(lungs, box, ("top",))
    spine = m["vertebrae_cervical"] | m["vertebrae_thoracic"] | m["vertebrae_lumbar"]
    line = spine_midline(spine)
    out["spine_midline"] = [(round(r, 1), round(c, 1)) for r, c in line[:: max(1, len(line) // 32)]]
    c = centroid(lungs)
    if c is not None:
        dy, dx = c[0] - (image.shape[0] - 1) / 2, c[1] - (image.shape[1] - 1) / 2
        out["lung_centroid_offset_px"] = {"x": round(dx, 1), "y": round(dy, 1)}
        out["lung_centroid_offset_mm"] = {"x": mm(dx, px_mm), "y": mm(dy, px_mm)} if px_mm else None
    out["marker"] = marker(m["marker_prob"], image, lungs, "LAT")
    return lm, out, []


def knee(m: dict[str, np.ndarray], image: np.ndarray, px_mm: float | None, view: str | None) -> tuple[dict[str, Point | None], dict[str, Any], list[str]]:
    """Knee AP/LAT: femur, tibia, fibula, patella; joint space (femur-to-tibia gap) and fibular overlap."""
    lm: dict[str, Point | None] = {}
    out: dict[str, Any] = {}
    notes: list[str] = []
    fem, tib, fib, pat = largest(m["femur"]), largest(m["tibia"]), largest(m["fibula"]), largest(m["patella"])
    lm["femur_distal"] = extreme_point(fem, (1.0, 0.0))
    lm["tibia_proximal"] = extreme_point(tib, (-1.0, 0.0))
    lm["patella_centre"] = centroid(pat)
    lm["fibula_head"] = extreme_point(fib, (-1.0, 0.0))
    if fem.any() and tib.any():
        cols = np.nonzero(fem.any(axis=0) & tib.any(axis=0))[0]
        gaps = []
        for c in cols:
            f_rows = np.nonzero(fem[:, c])[0]
            t_rows = np.nonzero(tib[:, c])[0]
            gaps.append(float(t_rows[0] - f_rows[-1] - 1))
        if gaps:
            g = np.array(gaps)
            g = g[(g >= 0)]
            out["joint_space_px"] = {"min": float(g.min()), "median": float(np.median(g))} if len(g) else None
            out["joint_space_mm"] = ({"min": mm(g.min(), px_mm), "median": mm(np.median(g), px_mm)}
                                     if len(g) and px_mm else None)
            out["joint_line_row"] = (float(np.median([np.nonzero(fem[:, c])[0][-1] for c in cols])) if len(cols) else None)
    else:
        notes.append("knee_bones_not_found")
    if fib.any():
        out["fibula_tibia_overlap_fraction"] = round(float((fib & tib).sum() / fib.sum()), 4)
    out["patella_present"] = bool(pat.any())
    box = field_box(m["field"]) or (0, image.shape[0], 0, image.shape[1])
    out["field_px"] = {"rows": [box[0], box[1]], "cols": [box[2], box[3]]}
    out["marker"] = marker(m["marker_prob"], image, np.zeros_like(fem), view)
    return lm, out, notes


def spine(m: dict[str, np.ndarray], image: np.ndarray, px_mm: float | None, view: str | None) -> tuple[dict[str, Point | None], dict[str, Any], list[str]]:
    """Spine AP/LAT: the vertebral column's midline, its straightness and which segments are imaged."""
    lm: dict[str, Point | None] = {}
    out: dict[str, Any] = {}
    col = m["vertebrae_cervical"] | m["vertebrae_thoracic"] | m["vertebrae_lumbar"]
    line = spine_midline(col)
    out["segments_present"] = [s for s in ("vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar") if m[s].sum() >= 10]
    out["spine_midline"] = [(round(r, 1), round(c, 1)) for r, c in line[:: max(1, len(line) // 32)]]
    if len(line) >= 4:
        rows = np.array([p[0] for p in line])
        cols = np.array([p[1] for p in line])
        a, b = np.polyfit(rows, cols, 1)
        dev = cols - (a * rows + b)
        out["midline_max_deviation_px"] = round(float(np.abs(dev).max()), 2)
        out["midline_max_deviation_mm"] = mm(float(np.abs(dev).max()), px_mm)
        out["midline_tilt_deg"] = round(float(np.degrees(np.arctan(a))), 2)
        out["midline_offset_from_centre_mm"] = mm(float(np.median(cols) - (image.shape[1] - 1) / 2), px_mm)
        lm["spine_top"] = line[0]
        lm["spine_bottom"] = line[-1]
    out["pelvis_present"] = bool(m["pelvis"].sum() >= 10)
    box = field_box(m["field"]) or (0, image.shape[0], 0, image.shape[1])
    out["field_px"] = {"rows": [box[0], box[1]], "cols": [box[2], box[3]]}
    out["marker"] = marker(m["marker_prob"], image, np.zeros_like(col), view)
    return lm, out, []


def lungs_plausible(lung_r: np.ndarray, lung_l: np.ndarray) -> bool:
    """Whether the network's lung masks look like two lung fields (else the image is unlike its training data).

    Each lung must be one dominant connected piece (>= 85% of its pixels), cover >= 3% of
    the grid, and the patient's right lung must lie on the image left (PA/AP)."""
    for lung in (lung_r, lung_l):
        n = int(lung.sum())
        if n < 0.03 * lung.size or int(largest(lung).sum()) < 0.85 * n:
            return False
    cr, cl = centroid(lung_r), centroid(lung_l)
    return bool(cr and cl and cr[1] < cl[1])


def classical_lungs(image: np.ndarray, field: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lung fields without learning: the two largest dark regions inside the thorax (rank image, bone bright).

    Otsu threshold of the smoothed image inside the field; dark regions touching the field
    border (air beside the patient) are dropped; holes are filled; the piece on the image
    left is the patient's right lung. Used for real images where the network's lungs are
    implausible (``lungs_plausible``)."""
    from scipy.ndimage import gaussian_filter

    r0, r1, c0, c1 = field or (0, image.shape[0], 0, image.shape[1])
    sub = gaussian_filter(image[r0:r1, c0:c1].astype(np.float32), 1.5)
    vals = np.sort(sub.ravel())
    # Otsu on a 64-bin histogram
    hist, edges = np.histogram(vals, bins=64)
    p = hist / max(hist.sum(), 1)
    omega = np.cumsum(p)
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-9)
    t = float(edges[int(np.argmax(between)) + 1])
    pieces = _dark_pieces(sub, t)
    out_r = np.zeros(image.shape, bool)
    out_l = np.zeros(image.shape, bool)
    if len(pieces) != 2:
        return out_r, out_l
    if LUNG_GROW:
        seeds = pieces[0] | pieces[1]
        t2 = LUNG_GROW * float(np.median(sub[seeds]))
        grown = _dark_pieces(sub, t2, n=4)
        new = []
        for piece in pieces:
            # grown only into a region that holds this lung and not the other (no bridge across
            # the mediastinum), else kept as found
            over = [g for g in grown if (g & piece).any()]
            if len(over) == 1 and not (over[0] & (seeds & ~piece)).any():
                new.append(over[0] | piece)
            else:
                new.append(piece)
        pieces = new
    a, b = pieces
    ca, cb = centroid(a), centroid(b)
    assert ca is not None and cb is not None
    right, left = (a, b) if ca[1] < cb[1] else (b, a)
    out_r[r0:r1, c0:c1] = right
    out_l[r0:r1, c0:c1] = left
    return out_r, out_l


def _dark_pieces(sub: np.ndarray, t: float, n: int = 2) -> list[np.ndarray]:
    """The ``n`` largest dark (below ``t``) regions of ``sub`` where lung fields lie, holes filled."""
    from scipy.ndimage import binary_fill_holes, binary_opening

    dark = sub < t
    h, w = dark.shape
    my, mx = max(2, int(0.04 * h)), max(2, int(0.04 * w))
    dark[:my], dark[:, :mx], dark[:, w - mx :] = False, False, False  # air beside / above the patient
    # The air above the shoulders joins the apices to the outside air through a horizontal band a
    # few rows high. A lung field is a tall dark region: keeping only dark pixels on vertical runs of
    # at least LUNG_MIN_RUN of the field's height breaks that band beside the apices but keeps the lung
    # whole (dropping mostly-dark rows instead, as before, cut real lungs into slabs wherever a row is
    # mostly lung: the real CR's apices and, with its lower quarter cut off, its lower lobes).
    run = max(3, int(LUNG_MIN_RUN * h))
    dark = binary_opening(dark, structure=np.ones((run, 1), bool))
    dark = binary_opening(dark, iterations=3)  # break thin bridges (axillae) to the outside air
    lab, count = components(dark)
    keep = []
    for k in range(1, count + 1):
        comp = lab == k
        ys, xs = np.nonzero(comp)
        cy, cx = ys.mean() / h, xs.mean() / w
        if cy > 0.75 or not 0.1 < cx < 0.9 or xs.min() <= mx or xs.max() >= w - mx - 1:
            continue  # not where a lung field lies, or still joined to the air at the sides
        keep.append((int(comp.sum()), k))
    keep.sort(reverse=True)
    return [binary_fill_holes(lab == k) for size, k in keep[:n] if size >= 0.02 * sub.size]
