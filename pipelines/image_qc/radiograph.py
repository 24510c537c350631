"""Image-QC measures of radiographs (DX/CR): range, positioning, centring, noise, sharpness, dose.

Each view (a series of one projection) is measured from the radiograph-anatomy analyser's masks
and measurements (``models/radiograph``; the exam may carry them already, else the analyser is
run here) plus classical pixel statistics (noise, edge sharpness, clipping) and the exposure
header (ExposureIndex / DeviationIndex). The exam's value per dimension is rolled up over its
views: by default the strictest, because a defect seen on any view of the exam is what the
generator's truth and an expert reading the exam both report (``rollup: majority`` is the
alternative in ``qc_rules/image_qc/dx.yaml``).

The ``artifact`` dimension belongs to the artifact measures; reconstruction, window and
sequences do not apply to projections and are returned as NOT_APPLICABLE with the reason.
L/R marker findings (IQC-MARKER) go under ``positioning``: a missing or reversed marker is a
positioning/labelling error in the department's terms, and that is where the generator's truth
puts them.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from radqc.pipelines.image_qc.types import (
    ABNORMAL,
    NORMAL,
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    VALUE_EN,
    DimensionResult,
    Evidence,
    EvidenceSink,
    ExamImages,
    Finding,
    SeriesImages,
)

log = logging.getLogger(__name__)

PARAMS_FILE = Path(__file__).resolve().parents[2] / "qc_rules" / "image_qc" / "dx.yaml"
DIMENSIONS_MEASURED = ("range", "positioning", "centring", "noise", "sharpness", "dose")
#: severity order within a dimension (the strictest value wins the roll-up)
SEVERITY: dict[str, tuple[str, ...]] = {
    "range": ("正常", "过大", "过小"),
    "positioning": ("标准", "不标准"),
    "centring": ("正常", "偏左", "偏右", "偏上", "偏下"),
    "noise": (NORMAL, ABNORMAL),
    "sharpness": (NORMAL, ABNORMAL),
    "dose": (NORMAL, ABNORMAL),
}
FRONTAL = ("PA", "AP")
LATERAL = ("LAT", "LL", "RL", "LATERAL")


def _bi(zh: str, en: str) -> str:
    return f"{zh} / {en}"


# ---------------------------------------------------------------- parameters


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


@functools.lru_cache(maxsize=1)
def _raw_params() -> dict[str, Any]:
    with open(PARAMS_FILE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return data


def load_params(standard_code: str | None) -> dict[str, Any]:
    """The image-QC parameters of one DX scoring standard: the file's defaults merged with the code's
    entry. An unknown or missing code gets the defaults (region unknown) so that generic checks
    (exposure, sharpness, marker, centring) still run and only anatomy-specific ones say so."""
    raw = _raw_params()
    params = _merge(raw.get("defaults", {}), (raw.get("codes") or {}).get(standard_code or "", {}))
    params["standard_code"] = standard_code
    params["known_code"] = bool(standard_code and standard_code in (raw.get("codes") or {}))
    return params


# ---------------------------------------------------------------- analyser


@functools.lru_cache(maxsize=1)
def _analyser() -> Any:
    """The radiograph-anatomy model, loaded once per process (None when unavailable)."""
    from radqc.pipelines.anatomy.models import Unavailable
    from radqc.pipelines.anatomy.run import load_models

    model = load_models("radiograph").get("radiograph_anatomy")
    return None if model is None or isinstance(model, Unavailable) else model


#: the analyser's region for the item's region (models/radiograph/infer.py REGION_OF_PART)
ANALYSER_REGION = {"chest": "chest", "knee": "knee", "cervical_spine": "spine", "thoracic_spine": "spine",
                   "lumbar_spine": "spine", "abdomen": "abdomen", "pelvis": "pelvis"}


def _analyse(rg: Any, exam: ExamImages, uid: str, region: str | None) -> Any:
    """The exam's RadiographResult for this view, else the analyser run on the loaded pixels.

    The analyser picks its measurements by region (chest PA: rotation, scapulae, ribs...). The
    header's BodyPartExamined is wrong in about 15% of exams, so the item's region (from the
    scoring standard) is passed instead, and an earlier result analysed as another region is
    redone."""
    want = ANALYSER_REGION.get(region or "")
    have = exam.radiographs.get(uid)
    if have is not None and getattr(have, "masks", None) is not None:
        got = (getattr(have, "measurements", None) or {}).get("region")
        if want is None or got in (None, want):
            return have
    model = _analyser()
    if model is None:
        return have
    try:
        return model.analyse(rg.pixels, rg.spacing_mm, rg.view, want or rg.body_part, mono1=False)
    except Exception as exc:  # noqa: BLE001 - one bad view must not stop the exam's QC
        log.warning("radiograph analyser failed on %s: %s", uid, exc)
        return have


# ---------------------------------------------------------------- pixel measures


def collimation_box(image: np.ndarray, flat_fraction: float = 0.02,
                    exposed_fraction: float = 0.3) -> tuple[tuple[int, int, int, int], dict[str, bool]]:
    """Collimated field (r0, r1, c0, c1) from the pixels: per side, an outermost line that is flat
    (SD below ``flat_fraction`` of the image's signal range) is unexposed detector; the field starts
    at the first line inward where at least ``exposed_fraction`` of the pixels differ from that flat
    value (so burned-in text and the lead marker in the unexposed border do not count). Returns the
    box and, per side, whether a collimator edge was found (False = the field reaches the image edge).

    The analyser's ``field`` channel is not used for this: it confuses a dark unexposed border with
    exposed lung on some vendors' look-up tables."""
    img = np.asarray(image, dtype=np.float32)
    nr, nc = img.shape[:2]
    lo, hi = np.percentile(img[:: max(1, nr // 256), :: max(1, nc // 256)], [1, 99])
    rng = max(float(hi - lo), 1e-6)
    flat_sd = flat_fraction * rng
    box = [0, nr, 0, nc]
    found = {"top": False, "bottom": False, "left": False, "right": False}
    sides = {"top": (0, 1), "bottom": (0, -1), "left": (1, 1), "right": (1, -1)}
    for side, (axis, step) in sides.items():
        n = nr if axis == 0 else nc

        def line(i: int, axis: int = axis) -> np.ndarray:
            return img[i, :] if axis == 0 else img[:, i]

        first = 0 if step > 0 else n - 1
        outer = line(first)
        if float(outer.std()) > flat_sd:
            continue
        value = float(np.median(outer))
        tol = max(6.0 * 1.4826 * float(np.median(np.abs(outer - value))), 0.03 * rng)
        idx = first
        for k in range(n // 2):
            i = first + step * k
            if float((np.abs(line(i) - value) > tol).mean()) >= exposed_fraction:
                idx = i
                break
        else:
            continue
        if idx == first:
            continue
        found[side] = True
        if side in ("top", "left"):
            box[0 if side == "top" else 2] = idx
        else:
            box[1 if side == "bottom" else 3] = idx + 1
    return (box[0], box[1], box[2], box[3]), found


def header_collimation(ds: Any, shape: tuple[int, ...],
                       edge_tolerance: float = 0.01) -> tuple[tuple[int, int, int, int], dict[str, bool]] | None:
    """The rectangular collimator edges the device wrote (CollimatorLeft/RightVerticalEdge,
    Upper/LowerHorizontalEdge, DX module), or None when absent or not plausible.

    The standard gives the edges as pixel rows/columns of the image, so an edge outside the image
    (beyond ``edge_tolerance`` of its size) means the device wrote them in another frame: the real
    Philips CR chest of the real-derived variants stores -184/184 for left/right (centred on the
    detector, not pixel columns), which taken as pixels left a field of 185 of 1841 columns and cut
    both lungs. Such edges are ignored and the field is found from the pixels."""
    if ds is None or str(ds.get("CollimatorShape", "") or "").upper() not in ("RECTANGULAR", ""):
        return None
    vals = [_number(ds, k) for k in ("CollimatorUpperHorizontalEdge", "CollimatorLowerHorizontalEdge",
                                     "CollimatorLeftVerticalEdge", "CollimatorRightVerticalEdge")]
    if any(v is None for v in vals):
        return None
    r0, r1, c0, c1 = (int(v) for v in vals)  # type: ignore[arg-type]
    nr, nc = int(shape[0]), int(shape[1])
    tr, tc = edge_tolerance * nr, edge_tolerance * nc
    if min(r0, r1) < -tr or max(r0, r1) > nr - 1 + tr or min(c0, c1) < -tc or max(c0, c1) > nc - 1 + tc:
        return None
    r0, c0, r1, c1 = max(0, r0), max(0, c0), min(nr, r1 + 1), min(nc, c1 + 1)
    if r1 - r0 < 8 or c1 - c0 < 8:
        return None
    return (r0, r1, c0, c1), {"top": r0 > 0, "bottom": r1 < nr, "left": c0 > 0, "right": c1 < nc}


def _field_box(image: np.ndarray, ds: Any,
               edge_tolerance: float = 0.01) -> tuple[tuple[int, int, int, int], dict[str, bool], str]:
    """Collimated field: the header's collimator edges when written (and inside the image), else
    found from the pixels."""
    hdr = header_collimation(ds, image.shape, edge_tolerance)
    if hdr is not None:
        return hdr[0], hdr[1], "header"
    box, found = collimation_box(image)
    return box, found, "pixels"


def detail_fraction(g: np.ndarray, low: tuple[float, float] = (0.1, 0.15), mid: tuple[float, float] = (0.25, 0.3),
                    top: tuple[float, float] = (0.4, 0.51), line_outlier: float | None = None) -> float | None:
    """How much fine detail survives, relative to coarse detail, above the noise floor:
    (P_mid - P_top) / (P_low - P_top), with P the power of the row/column spectra (Hann-windowed,
    averaged over lines) in bands given in cycles per pixel; the sharper of the two axes.

    Why this form: quantum noise is white and is added after any blur, so the top band is a floor
    that is subtracted from both others and the result does not move with the noise level (a noisy
    image is not called blurred), nor with the stored-value scale. A blur of sigma pixels scales
    the fine band's signal by exp(-4 pi^2 sigma^2 (f_mid^2 - f_low^2)) against the coarse one
    (about 0.005 at 1.5 px), so a blurred image reads near 0 and a sharp one a few per cent. Motion
    smears one axis only, so the sharper axis decides (motion is the artifact measure's). None
    when the field is too small for a spectrum.

    ``line_outlier`` (None: off): lines whose fine-band power exceeds this multiple of the lines'
    median are left out. A side marker, burned-in text or a saturated edge is drawn after any blur,
    crisp, and on a small field its few lines carried the whole mean (worn i9206 E00101, a blurred
    lumbar AP at 3.4 mm: the marker's rows at 1,000-3,800x the median, detail 1.6 read sharp)."""
    g = np.asarray(g, dtype=np.float64)
    best: float | None = None
    for lines in (g, g.T):
        n = lines.shape[1]
        if n < 16 or lines.shape[0] < 4:
            return None
        x = lines - lines.mean(axis=1, keepdims=True)
        per_line = np.abs(np.fft.rfft(x * np.hanning(n), axis=1)) ** 2
        fr = np.fft.rfftfreq(n)
        if line_outlier is not None:
            fine = per_line[:, (fr >= mid[0]) & (fr < mid[1])].mean(axis=1)
            per_line = per_line[fine <= float(line_outlier) * float(np.median(fine))]
        power = per_line.mean(axis=0)
        bands = [power[(fr >= a) & (fr < b)] for a, b in (low, mid, top)]
        if any(not b.size for b in bands):
            return None
        p_low, p_mid, p_top = (float(b.mean()) for b in bands)
        if p_low - p_top <= 0:
            continue  # no coarse detail above the floor on this axis: it says nothing
        r = (p_mid - p_top) / (p_low - p_top)
        best = r if best is None else max(best, r)
    return None if best is None else round(best, 5)


def without_flat_plateaus(f: np.ndarray, min_px: int = 4) -> np.ndarray:
    """``f`` with its constant-value plateaus (connected runs of identical neighbours of at least
    ``min_px`` pixels, grown by one pixel) replaced by the Gaussian-weighted mean (sigma 3 px) of
    the pixels round them.

    Why: burned-in annotations and side markers are written at one constant value after any blur,
    so their glyphs add crisp fine detail that a blurred image does not have (worn i9206 E00151, a
    blurred knee AP whose "AP"/"卧位" text lies inside the field: detail 0.032, read sharp); the
    detector's noise makes equal neighbours rare elsewhere (steel clipped at the maximum is flat
    too and is left out the same way). The filled pixels carry no fine detail."""
    from scipy import ndimage

    a = np.asarray(f, dtype=np.float64)
    eq = np.zeros(a.shape, dtype=bool)
    h, v = a[:, 1:] == a[:, :-1], a[1:, :] == a[:-1, :]
    eq[:, 1:] |= h
    eq[:, :-1] |= h
    eq[1:, :] |= v
    eq[:-1, :] |= v
    lab, n = ndimage.label(eq)
    if not n:
        return a
    sizes = np.asarray(ndimage.sum(eq, lab, index=np.arange(1, n + 1)))
    mask = np.isin(lab, np.nonzero(sizes >= min_px)[0] + 1)
    if not mask.any():
        return a
    mask = ndimage.binary_dilation(mask)
    w = (~mask).astype(np.float64)
    smooth = ndimage.gaussian_filter(a * w, 3.0) / np.maximum(ndimage.gaussian_filter(w, 3.0), 1e-6)
    out = a.copy()
    out[mask] = smooth[mask]
    return out


def pixel_measures(image: np.ndarray, box: tuple[int, int, int, int], px: float | None = None,
                   sharpness_grid_mm: float = 1.5, bands: dict[str, Any] | None = None,
                   crisp: dict[str, Any] | None = None) -> dict[str, Any]:
    """Noise, edge sharpness (per axis) and histogram clipping inside the collimated field.

    Values are fractions of the field's signal range (p1..p99), so that they do not depend on
    the vendor's stored-value scale. Noise: robust SD (MAD) of the difference between a pixel
    and the mean of its 4 neighbours, scaled to white-noise SD. Sharpness: the mean of the
    strongest 1% of gradients of a 3x3-smoothed image, per axis, and the lag-difference smoothness
    (see below), both on a ~``sharpness_grid_mm`` grid. ``crisp`` (dx.yaml ``sharpness.crisp``;
    None: off): what the fine-detail fraction leaves out, see :func:`without_flat_plateaus`
    (``flat_min_px``) and :func:`detail_fraction` (``line_outlier``)."""
    from scipy import ndimage

    r0, r1, c0, c1 = box
    f = image[r0:r1, c0:c1].astype(np.float32)
    if f.shape[0] < 8 or f.shape[1] < 8:
        return {}
    # trim 4% of the field at each side (collimator penumbra, marker, annotations at the edges)
    tr, tc = max(1, int(0.04 * f.shape[0])), max(1, int(0.04 * f.shape[1]))
    f = f[tr:-tr, tc:-tc]
    lo, hi = np.percentile(f, [1, 99])
    rng = max(float(hi - lo), 1e-6)
    lap = f[1:-1, 1:-1] - 0.25 * (f[:-2, 1:-1] + f[2:, 1:-1] + f[1:-1, :-2] + f[1:-1, 2:])
    med = float(np.median(lap))
    noise = 1.4826 * float(np.median(np.abs(lap - med))) / np.sqrt(1.25)

    def top(grad: np.ndarray) -> float:
        if not grad.size:
            return 0.0
        n = max(1, grad.size // 100)
        return float(np.partition(grad, grad.size - n)[-n:].mean()) / rng

    # smoothness is judged on a grid of about ``sharpness_grid_mm`` (block means), so that a 0.15 mm
    # detector image and a 3 mm one are compared on the same anatomical scale
    k_ds = max(1, int(sharpness_grid_mm / px)) if px else 1
    g = f
    if k_ds > 1:
        h, w = (f.shape[0] // k_ds) * k_ds, (f.shape[1] // k_ds) * k_ds
        g = f[:h, :w].reshape(h // k_ds, k_ds, w // k_ds, k_ds).mean(axis=(1, 3))
    sm = ndimage.uniform_filter(g, 3)[2:-2, 2:-2]
    gy = np.abs(np.diff(sm, axis=0)).ravel()
    gx = np.abs(np.diff(sm, axis=1)).ravel()

    def smoothness(axis: int) -> float:
        """(D3 - D2) / (D2 - D1), D_k = mean squared difference at lag k along ``axis``: white
        noise adds the same 2*sigma^2 to every D_k and cancels; a step edge gives 1, a smooth
        (blurred) profile tends to 5/3 and above. Independent of the stored-value scale."""
        d = []
        for lag in (1, 2, 3):
            a = g[lag:, :] - g[:-lag, :] if axis == 0 else g[:, lag:] - g[:, :-lag]
            d.append(float(np.mean(a.astype(np.float64) ** 2)))
        den = d[1] - d[0]
        return round((d[2] - d[1]) / den, 4) if den > 1e-9 else 0.0

    # fine-detail fraction on a grid of about ``sharpness_grid_mm`` (factor rounded, so that a
    # 0.94 mm image oversampled from coarser detail is judged on ~1.9 mm, a 1.2 mm one natively)
    k_b = max(1, int(round(sharpness_grid_mm / px))) if px else 1
    cr = crisp or {}
    gb = without_flat_plateaus(f, int(cr["flat_min_px"])) if cr.get("flat_min_px") else f
    if k_b > 1:
        h, w = (gb.shape[0] // k_b) * k_b, (gb.shape[1] // k_b) * k_b
        gb = gb[:h, :w].reshape(h // k_b, k_b, w // k_b, k_b).mean(axis=(1, 3))
    bd = bands or {}
    band_low, band_mid, band_top = (tuple(bd.get(k) or dflt) for k, dflt in
                     (("low", (0.1, 0.15)), ("mid", (0.25, 0.3)), ("top", (0.4, 0.51))))
    detail = detail_fraction(gb, band_low, band_mid, band_top, line_outlier=cr.get("line_outlier"))

    full = image[r0:r1, c0:c1]
    vmin, vmax = float(full.min()), float(full.max())
    clip = float(((full <= vmin) | (full >= vmax)).mean()) if vmax > vmin else 1.0
    return {"noise_fraction": round(noise / rng, 5), "edge_x": round(top(gx), 4), "edge_y": round(top(gy), 4),
            "smooth_x": smoothness(1), "smooth_y": smoothness(0), "detail_fraction": detail,
            "clip_fraction": round(clip, 5), "signal_range": round(rng, 2)}


def find_marker(image: np.ndarray, box: tuple[int, int, int, int], px: float | None,
                max_levels: int = 6, max_aspect: float = 1.3, min_aspect: float = 0.4) -> dict[str, Any] | None:
    """The lead L/R marker from the pixels: lead is the most attenuating thing on the detector, so its
    glyph is a small compact blob at (or next to) the image maximum inside the field; its letter is
    read by overlap with rendered L/R glyphs. None when no blob of a marker's size (5-40 mm) and
    shape reads a letter and the search was not conclusive (below), e.g. when the maximum is
    widespread (saturated anatomy or burned-in text: a glyph could hide there).

    When the blob at the maximum reads no letter (or there is none), the next brightest plateaus
    (up to ``max_levels`` pixel values, each held by a few pixels, a glyph's worth) are tried in turn
    and the first blob that reads L or R is taken. Why: burned-in text and the edge-enhancement
    overshoot along the collimator edge clip at the top of the stored range, above the lead glyph,
    and they can sit right next to it (validation 8275 E00039, 8276 E00010: the reversed marker
    went unread, or was read from the burned-in text, and the wrong marker was missed).

    ``{"present": False, ...}`` (not None) when the search was conclusive: fewer than a glyph's
    worth of pixels at the maximum (nothing clipped there that could cover a glyph), no blob of a
    marker's size and shape at the maximum, and no plateau too widespread to search. The
    analyser's marker is then not believed (``_combined_marker``): on the generator's views without
    a marker (validation 8278-8280, 8330, 8331 and worn 9203/9204: 22 views) the analyser reported
    one on 6 (9203 E00044, 9204 E00059 among them); the search was conclusive on 17 of the 22, 4 of
    the 6 included, and on none of the 513 views with a marker (510 read right; the other 3 lie
    under burned-in text clipped at the maximum: not conclusive, the analyser decides)."""
    from scipy import ndimage

    from radqc.models.radiograph.classical import read_letter

    r0, r1, c0, c1 = box
    f = np.asarray(image[r0:r1, c0:c1], dtype=np.float32)
    if f.size < 64:
        return None
    lo, hi = np.percentile(f, [1, 99])
    tol = max(1.0, 0.004 * float(hi - lo))

    def blob(cand: np.ndarray) -> tuple[int, tuple[slice, slice]] | None:
        lab, _ = ndimage.label(ndimage.binary_dilation(cand, iterations=1))
        best: tuple[int, tuple[slice, slice]] | None = None
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            size = max(h, w) * px if px else max(h, w) / min(f.shape) * 430.0  # ~430 mm detector
            count = int((cand[sl] & (lab[sl] == i)).sum())
            # one letter, not a word: burned-in annotations ("AP", "PA") of the same brightness
            # run wider than high and read as an 'R' (validation 8276/8277, views without a marker)
            single = w <= max_aspect * h
            # ... and a letter, not a sliver: a 2-3 px wide strip (the field edge's penumbra on the
            # real Philips CR, 32 x 3 px; a glyph cut into stripes) was read as an 'R'
            letter_like = w >= min_aspect * h
            # a glyph cut by the field edge cannot be read (validation 8276/8277: the 'A' of an
            # annotation cut there read as 'R')
            inside = sl[0].start > 0 and sl[1].start > 0 and sl[0].stop < f.shape[0] and sl[1].stop < f.shape[1]
            if 5.0 <= size <= 40.0 and count >= 6 and single and letter_like and inside and (best is None or count > best[0]):
                best = (count, sl)
        return best

    def result(cand: np.ndarray, sl: tuple[slice, slice], level: str) -> dict[str, Any]:
        letter, score = read_letter(cand[sl])
        col = (sl[1].start + sl[1].stop) / 2 + c0
        return {"present": True, "text": letter, "text_score": round(score, 3),
                "side_of_image": "left" if col < image.shape[1] / 2 else "right",
                "box": [int(sl[0].start + r0), int(sl[0].stop + r0), int(sl[1].start + c0), int(sl[1].stop + c0)],
                "source": "pixels", "level": level}

    vmax = float(f.max())
    cand = f >= vmax - tol
    first: dict[str, Any] | None = None
    # the search is conclusive (no marker) unless something at the maximum could hide a glyph (or
    # be one: a blob there that reads no letter) or a plateau is too widespread to search
    conclusive = int(cand.sum()) < 6
    if cand.mean() <= 0.01:
        found = blob(cand)
        if found is not None:
            first = result(cand, found[1], "maximum")
            if first["text"]:
                return first
    # the next brightest plateaus: pixel values below the maximum held by at least a glyph's
    # worth of pixels (a lead glyph is one flat level), brightest first. The top percent is taken
    # beneath the maximum: burned-in text clipped at the maximum can fill more than 1% of the field,
    # and the lead glyph a little below it then fell outside a percentile over all pixels
    # (held-out 9203 E00038, 9204 E00096: the glyph at 4050 under text at 4095 went unseen, and the
    # analyser's reading of the burned-in text was taken as the marker)
    below = f[f < vmax - tol]
    if below.size == 0:
        return first
    absent = {"present": False, "text": None, "side_of_image": None, "box": None, "source": "pixels", "level": "none"}
    top = below[below >= float(np.percentile(below, 99.0))]
    values, counts = np.unique(np.round(top / tol), return_counts=True)
    # a level is the centre of a ``tol`` bin of the pixels *below* the maximum's band; its pixels
    # are taken from those only. Why not test the bin centre against the band: under heavy noise
    # a few spikes rise above the flat lead glyph, the maximum's band then holds the spikes alone,
    # and the glyph (a bit below the band) rounds into a bin whose centre lies inside it, so it
    # was dropped and the search called conclusive: "no marker" on a view with one (held-out
    # i9214 E00106, lumbar AP at 3x noise: glyph at 4050, one spike at 4064, band from 4051)
    levels = [float(v) * tol for v, c in zip(values[::-1], counts[::-1], strict=True) if c >= 6][:max_levels]
    for level in levels:
        cand = (np.abs(f - level) <= tol / 2) & (f < vmax - tol)
        if cand.mean() > 0.01:
            conclusive = False
            continue
        found = blob(cand)
        if found is not None:
            # an unread blob on a plateau does not make the search inconclusive: on fine grids
            # (~1 mm) the detector noise near the top clusters into glyph-sized specks at every
            # level (validation 8330 E00055, 8278 E00057: 6-9 pixels in a 6 x 9 box)
            res = result(cand, found[1], "plateau")
            if res["text"]:
                return res
    if first is None and conclusive:
        return absent
    return first


def spine_outline_offset(field: np.ndarray, px: float | None, tissue_fraction: float = 0.25,
                         bone_percentile: float = 70.0, rows: tuple[float, float] = (0.2, 0.8),
                         edge_px: int = 2, min_rows: int = 5) -> tuple[float | None, int]:
    """Offset (mm, image right positive; px when no spacing) of the bone column from the middle of
    the soft-tissue outline, median over the field's middle rows: a rotated neck projects its
    posterior spine off the midline of its own outline, while the outline stays centred (the
    whole neck turns about its axis); centring moves both together and cancels.

    Per row: tissue = pixels above ``tissue_fraction`` of the field's p2..p98 range; the row
    counts only when the outline lies inside the field (both edges more than ``edge_px`` from
    the field's sides: a cut outline has no middle); bone = intensity above the row's tissue
    ``bone_percentile``, weighting the column centroid. Returns (None, rows used) with fewer than
    ``min_rows`` usable rows."""
    f = np.asarray(field, dtype=np.float64)
    nr, nc = f.shape[:2]
    if nr < 8 or nc < 12:
        return None, 0
    lo, hi = np.percentile(f, [2, 98])
    offs = []
    cols_idx = np.arange(nc, dtype=np.float64)
    for i in range(int(nr * rows[0]), int(nr * rows[1])):
        row = f[i]
        cols = np.nonzero(row > lo + tissue_fraction * (hi - lo))[0]
        if len(cols) < 10 or cols[0] < edge_px or cols[-1] > nc - 1 - edge_px:
            continue
        w = np.clip(row - np.percentile(row[cols], bone_percentile), 0, None)
        if w.sum() <= 0:
            continue
        offs.append(float((w * cols_idx).sum() / w.sum() - (cols[0] + cols[-1]) / 2.0) * (px or 1.0))
    if len(offs) < min_rows:
        return None, len(offs)
    return round(float(np.median(offs)), 2), len(offs)


def spinous_column_offset(image: np.ndarray, column: np.ndarray, px: float | None, bone_percentile: float = 85.0,
                          min_width: int = 3, min_rows: int = 5) -> tuple[float | None, int]:
    """Offset (mm, image right positive; px when no spacing) of the densest bone inside the vertebral
    column from the middle of the column, median over the column's rows.

    Why: on a frontal spine view the spinous processes and pedicles sit in the middle of the
    vertebral bodies only when the patient lies straight; turned about the long axis, the posterior
    elements (several centimetres behind the bodies) swing sideways against them, the classic
    radiographic rotation sign. Centring moves both together and cancels. Per row of ``column``
    (the analyser's vertebra mask, at least ``min_width`` px wide): the pixels above the row's
    ``bone_percentile`` inside the mask weight a column centroid, compared with the mask's
    middle. Returns (None, rows used) with fewer than ``min_rows`` usable rows."""
    img = np.asarray(image, dtype=np.float64)
    m = np.asarray(column, bool)
    if m.shape != img.shape[:2]:
        return None, 0
    offs = []
    for i in np.nonzero(m.sum(axis=1) >= min_width)[0]:
        cols = np.nonzero(m[i])[0]
        c0, c1 = int(cols[0]), int(cols[-1])
        seg = img[i, c0:c1 + 1]
        w = np.clip(seg - np.percentile(seg, bone_percentile), 0, None)
        if w.sum() <= 0:
            continue
        offs.append(float((w * np.arange(c0, c1 + 1)).sum() / w.sum() - (c0 + c1) / 2.0) * (px or 1.0))
    if len(offs) < min_rows:
        return None, len(offs)
    return round(float(np.median(offs)), 2), len(offs)


def _spacing(ds: Any) -> float | None:
    """Mean pixel spacing (mm) of a projection: PixelSpacing, else ImagerPixelSpacing."""
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            v = ds.get(key) if ds is not None else None
            if v is not None and len(v) >= 2 and float(v[0]) > 0:
                return float(v[0] + v[1]) / 2.0
        except (TypeError, ValueError):
            continue
    return None


def _number(ds: Any, keyword: str) -> float | None:
    try:
        v = ds.get(keyword) if ds is not None else None
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- one view


class _View:
    """What was measured on one view: per-dimension (value, details, findings-to-make)."""

    def __init__(self, uid: str, view: str | None, sop: str | None):
        self.uid, self.view, self.sop = uid, view, sop
        self.values: dict[str, str] = {}
        self.details: dict[str, dict[str, Any]] = {}
        self.findings: dict[str, list[Finding]] = {}
        self.reasons: dict[str, str] = {}

    def set(self, dim: str, value: str, details: dict[str, Any] | None = None, reason: str | None = None) -> None:
        self.values[dim] = value
        self.details[dim] = details or {}
        if reason:
            self.reasons[dim] = reason

    def find(self, dim: str, check_id: str, value: str, zh: str, en: str, ev: Evidence) -> None:
        self.findings.setdefault(dim, []).append(Finding(check_id, dim, value, 0.0, zh, en, [ev]))


def _view_name(series: SeriesImages, rg: Any, analysis: Any) -> str | None:
    for v in (getattr(rg, "view", None), getattr(analysis, "view", None), getattr(series.label, "view", None),
              getattr(series.label, "role", None)):
        if v:
            s = str(v).upper()
            return "LAT" if s in LATERAL else s
    return None


def _mask(analysis: Any, name: str) -> np.ndarray | None:
    m = (getattr(analysis, "masks", None) or {}).get(name)
    return None if m is None else np.asarray(m, bool)


def _structure_box(analysis: Any, names: list[str]) -> tuple[np.ndarray | None, list[float] | None]:
    """Union mask of the named structures and its box [r0, c0, r1, c1]."""
    union: np.ndarray | None = None
    for n in names:
        m = _mask(analysis, n)
        if m is not None and m.any():
            union = m if union is None else (union | m)
    if union is None:
        return None, None
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    return union, [float(rows[0]), float(cols[0]), float(rows[-1]), float(cols[-1])]


ANATOMY_CHANNELS = ("lung_left", "lung_right", "vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar",
                    "pelvis", "femur", "tibia", "fibula", "patella", "heart")


def _measure_view(series: SeriesImages, exam: ExamImages, params: dict[str, Any], sink: EvidenceSink) -> _View:
    uid = str(getattr(series.header, "series_uid", None) or getattr(series.header, "series_instance_uid", "") or "")
    try:
        rg = series.radiograph()
        if rg is None or getattr(rg, "pixels", None) is None:
            raise ValueError("no pixels")
    except Exception as exc:  # noqa: BLE001 - UnsuitableSeries, decode errors: the view is not assessable
        v = _View(uid, None, None)
        why = _bi("图像无法读取或不是单幅投照片", "image cannot be read or is not a single projection") + f" ({exc})"
        for dim in DIMENSIONS_MEASURED:
            v.set(dim, NOT_ASSESSABLE, reason=why)
        return v
    uid = uid or rg.series_instance_uid
    image = np.asarray(rg.pixels)
    analysis = _analyse(rg, exam, uid, params.get("region"))
    view = _view_name(series, rg, analysis)
    as_chest = (params["positioning"] or {}).get("other_chest_reanalyse")
    if (as_chest and params.get("region") not in (None, "chest") and analysis is not None
            and _item_view_shows_chest(analysis, params)):
        # a chest image filed under another item (a multi-item order, chest + lumbar spine, scored
        # by the lumbar standard): analysed and measured as a chest, with the chest item's
        # parameters (rib count, clavicle rotation sign, lung-field range), not judged by the lumbar
        # signs (fresh 9083 E00090, a 14-degree turn, and E00148, a field 60 mm beyond the lungs,
        # both unseen; worn i9214 E00290, a shallow breath read "lumbar spine not included").
        # Costs one more analyser run on such views only.
        params = load_params(str(as_chest))
        analysis = _analyse(rg, exam, uid, "chest")
        view = _view_name(series, rg, analysis)
    v = _View(uid, view, rg.sop_instance_uid)
    px = float(np.mean(rg.spacing_mm)) if rg.spacing_mm else None
    meas: dict[str, Any] = dict(getattr(analysis, "measurements", None) or {})
    box, collimated, field_source = _field_box(image, rg.dataset,
                                               float((params.get("field") or {}).get("header_edge_tolerance", 0.01)))
    region = params.get("region")
    chest = region == "chest"
    ev_image: dict[str, str | None] = {}

    def evidence(name: str, measured: Any, limit: Any, unit: str | None, mark: list[float] | None = None,
                 **extra: Any) -> Evidence:
        key = f"{uid}:{name}"
        if key not in ev_image:
            try:
                ev_image[key] = sink.add(image, name=f"dx_{name}_{(uid or 'view')[-12:]}", box=mark)
            except Exception as exc:  # noqa: BLE001 - evidence storage must never break the QC
                log.warning("evidence sink failed: %s", exc)
                ev_image[key] = None
        return Evidence(series_uid=uid, instance_index=0, sop_instance_uid=rg.sop_instance_uid, measured=measured,
                        limit=limit, unit=unit, image=ev_image[key], box=mark, extra=dict(extra))

    field_mark = [float(box[0]), float(box[2]), float(box[1] - 1), float(box[3] - 1)]
    _range(v, analysis, meas, image, box, collimated, field_source, px, params, chest, evidence, field_mark)
    outline: dict[str, Any] = {}
    po = params["positioning"]
    if po.get("max_spine_outline_offset_mm") is not None and view in FRONTAL:
        so = po.get("spine_outline") or {}
        # rows of the item's vertebra mask when configured (radiograph_rotation.outline_rows), not
        # the whole collimated field: a field collimated too wide adds skull and shoulders
        o_r0, o_r1 = box[0], box[1]
        if so.get("structure") and analysis is not None:
            from radqc.pipelines.image_qc.radiograph_rotation import outline_rows

            o_r0, o_r1 = outline_rows(box, _mask(analysis, str(so["structure"])))
        off, n_rows = spine_outline_offset(image[o_r0:o_r1, box[2]:box[3]], px,
                                           float(so.get("tissue_fraction", 0.25)),
                                           float(so.get("bone_percentile", 70.0)),
                                           tuple(so.get("rows") or (0.2, 0.8)), int(so.get("edge_px", 2)),
                                           int(so.get("min_rows", 5)))
        outline = {"spine_outline_offset_mm": off, "spine_outline_rows": n_rows}
    sp = po.get("spinous_offset") or {}
    if po.get("max_spinous_offset_mm") is not None and view in FRONTAL and sp.get("structure"):
        col = _mask(analysis, str(sp["structure"])) if analysis is not None else None
        if col is not None and col.any():
            off, n_rows = spinous_column_offset(image, col, px, float(sp.get("bone_percentile", 85.0)),
                                                int(sp.get("min_width", 3)), int(sp.get("min_rows", 5)))
            base = float(sp.get("baseline_mm") or 0.0)
            outline["spinous_offset_raw_mm"] = off
            outline["spinous_offset_mm"] = None if off is None else round(off - base, 2)
            outline["spinous_offset_rows"] = n_rows
    pe = po.get("posterior_offset") or {}
    if po.get("max_posterior_offset_mm") is not None and view in FRONTAL and pe.get("structure") and analysis is not None:
        # posterior elements vs the vertebral bodies' pixel edges (radiograph_rotation)
        from radqc.pipelines.image_qc.radiograph_rotation import posterior_element_offset

        off, n_rows = posterior_element_offset(image, _mask(analysis, str(pe["structure"])), px, box,
                                               float(pe.get("band_mm", 6.0)), float(pe.get("edge_window", 0.35)),
                                               float(pe.get("bone_percentile", 85.0)),
                                               min_rows=int(pe.get("min_rows", 5)))
        outline["posterior_offset_raw_mm"] = off
        outline["posterior_offset_mm"] = None if off is None else round(off - float(pe.get("baseline_mm") or 0.0), 2)
        outline["posterior_offset_rows"] = n_rows
    if po.get("max_pelvis_mirror_asymmetry") is not None and view in FRONTAL and analysis is not None:
        # iliac wings' mirror asymmetry from the pixels (radiograph_rotation): the pelvis mask only
        # says where the wings are; the analyser's own left/right imbalance is too coarse
        from radqc.pipelines.image_qc.radiograph_rotation import pelvis_mirror_from_params

        outline["pelvis_mirror_asymmetry"] = pelvis_mirror_from_params(image, _mask(analysis, "pelvis"), px,
                                                                       po.get("pelvis_mirror") or {}, box)
    hc = po.get("heart_clavicle") or {}
    if po.get("max_heart_clavicle_score") is not None and view in FRONTAL and analysis is not None and px:
        # a non-chest frontal view whose field holds the heart and the clavicles (thoracic-spine
        # AP): the chest's two rotation signs from the analyser's masks, judged together
        # (radiograph_rotation.heart_clavicle_score); no pixel work, four masks the analyser made
        from radqc.pipelines.image_qc.radiograph_rotation import clavicle_spine_offset, heart_clavicle_score

        spine = None
        for name in ("vertebrae_thoracic", "vertebrae_cervical"):
            m = _mask(analysis, name)
            if m is not None:
                spine = m if spine is None else (spine | m)
        heart = heart_spine_offset(analysis, px)
        clav = clavicle_spine_offset(_mask(analysis, "clavicle_right"), _mask(analysis, "clavicle_left"), spine, px)
        outline["heart_spine_offset_mm"] = heart
        outline["clavicle_spine_offset_mm"] = clav
        outline["heart_clavicle_score"] = heart_clavicle_score(heart, clav, hc)
    glyph = params["positioning"].get("marker_glyph") or {}
    _positioning(v, analysis, meas, px, params, chest, evidence, find_marker(image, box, px, **glyph), outline)
    _centring(v, analysis, meas, image, px, params, chest, evidence)
    _exposure(v, rg.dataset, image, box, params, evidence, field_mark)
    return v


def _range(v: _View, analysis: Any, meas: dict[str, Any], image: np.ndarray, box: tuple[int, int, int, int],
           collimated: dict[str, bool], field_source: str, px: float | None, params: dict[str, Any], chest: bool, evidence: Any, field_mark: list[float]) -> None:
    p = params["range"]
    if analysis is None:
        v.set("range", NOT_ASSESSABLE, reason=_bi("解剖分析模型不可用", "radiograph anatomy model unavailable"))
        return
    missing: list[str] = []
    details: dict[str, Any] = {"field_px": list(box), "field_source": field_source}
    # required structures must be in the field at all
    for name in p.get("required_structures") or []:
        m = _mask(analysis, name)
        if m is None or m.sum() < 10:
            if chest and v.view == "LAT" and name in ("lung_left", "lung_right"):
                m2 = _mask(analysis, "lung_left" if name == "lung_right" else "lung_right")
                if m2 is not None and m2.sum() >= 10:
                    continue  # one lung shadow is enough on a lateral view
            missing.append(name)
    if chest:
        cut_at = _lung_bases_in_field(analysis, box, v.view)
        details["cut_at"] = {k: w for k, w in cut_at.items() if w}
        missing.extend(k for k, w in cut_at.items() if w)
        if meas.get("apex_in_field") is False:
            missing.append("lung_apex")
    details["missing"] = missing
    # too wide: margins between the anatomy and the field, or the field reaching the image edges
    details["field_at_image_edges"] = [k for k, b in collimated.items() if not b]
    wide = False
    if chest:
        lb = _lung_box(analysis)
        if lb is not None and px:
            margins = {"top": (lb[0] - box[0]) * px, "bottom": (box[1] - 1 - lb[2]) * px,
                       "left": (lb[1] - box[2]) * px, "right": (box[3] - 1 - lb[3]) * px}
            details["collimation_margin_mm"] = {k: round(float(m), 1) for k, m in margins.items()}
            lateral = [margins["left"], margins["right"]]
            details["mean_margin_mm"] = round(float(np.mean(list(margins.values()))), 1)
            wide = float(np.mean(lateral)) > float(p["wide_margin_mm"]) and not missing
    else:
        wide = len(details["field_at_image_edges"]) >= int(p.get("wide_edges", 4)) and not missing
    if missing:
        names = ", ".join(missing)
        v.set("range", "过小", details)
        v.find("range", "IQC-RANGE", "过小", f"投照范围过小，未包全：{names}", f"field too small: {names} not included",
               evidence("range", missing, p.get("required_structures"), None, field_mark))
    elif wide:
        v.set("range", "过大", details)
        lim = p["wide_margin_mm"] if chest else f"{p.get('wide_edges', 4)} edges"
        meas_v = details.get("collimation_margin_mm") if chest else details["field_at_image_edges"]
        v.find("range", "IQC-RANGE", "过大", "照射野过大，远超出所需解剖范围（未充分缩光）",
               "collimation far beyond the required anatomy", evidence("range", meas_v, lim, "mm" if chest else None,
                                                                       field_mark))
    else:
        v.set("range", "正常", details)


def _lung_box(analysis: Any) -> list[float] | None:
    """Box [r0, c0, r1, c1] of the lung fields for the collimation margins: each lung mask's largest
    connected part only. Why: the network leaves small stray lung fragments beside the shoulder or
    the lead marker, and one of them set the lateral margin (held-out i9216 E00050, a field 87 mm
    wider than the left lung read 42 mm from a 3-pixel fragment at the field edge, so the too-wide
    field went unseen); on the chest frontal views of 9080-9082, i9212, i9214 and 8901 (332) the
    largest parts change the margins on 10 views, every one collimated too wide."""
    from radqc.models.radiograph.classical import largest

    union: np.ndarray | None = None
    for name in ("lung_left", "lung_right"):
        m = _mask(analysis, name)
        if m is not None and m.any():
            m = largest(m)
            union = m if union is None else (union | m)
    if union is None or not union.any():
        return None
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    return [float(rows[0]), float(cols[0]), float(rows[-1]), float(cols[-1])]


def _lung_bases_in_field(analysis: Any, box: tuple[int, int, int, int], view: str | None) -> dict[str, str | None]:
    """Whether each costophrenic angle lies inside the collimated field: a lung whose lower 40%
    reaches the field's bottom edge (or, frontal, its lateral edge) is cut. Uses the field found
    from the pixels, which is more reliable than the analyser's own ``field`` channel. Value per
    angle: None when inside, else where it is cut ("bottom" / "lateral").

    Each lung mask's largest connected part only, as for the collimation margins (:func:`_lung_box`):
    a stray fragment of the lung channel on the field's bottom edge read a costophrenic angle as cut
    on fields collimated 70-90 mm below the lungs (qc-items 7504 E00324, E00694: chest PA+LAT read
    过小 where the truth, and the margins beside it, are 过大)."""
    from radqc.models.radiograph.classical import largest

    out: dict[str, str | None] = {}
    r0, r1, c0, c1 = box
    lungs: list[tuple[str, list[str], str]]
    if view in FRONTAL:
        lungs = [("costophrenic_angle_right", ["lung_right"], "left"), ("costophrenic_angle_left", ["lung_left"], "right")]
    else:
        lungs = [("costophrenic_angle_posterior", ["lung_left", "lung_right"], "none")]
    for name, chans, lateral in lungs:
        parts = [largest(x) for x in (_mask(analysis, c) for c in chans) if x is not None and x.any()]
        if not parts:
            continue
        m = np.logical_or.reduce(parts)
        if m.sum() < 10:
            continue
        rows = np.nonzero(m.any(axis=1))[0]
        lower = m.copy()
        lower[: int(rows[0] + 0.6 * (rows[-1] - rows[0]))] = False
        tol = 1 + int(0.01 * max(m.shape))
        height = max(1, int(rows[-1] - rows[0] + 1))
        cols = np.nonzero(m.any(axis=0))[0]
        width = max(1, int(cols[-1] - cols[0] + 1))
        # a cut lung runs along the field edge (a straight cut), a lung merely near it touches at a point
        along_bottom = int(lower[max(r1 - 1 - tol, 0): r1].any(axis=0).sum())
        where: str | None = "bottom" if along_bottom >= 0.15 * width else None
        if where is None and lateral == "left" and c0 > 0:
            where = "lateral" if int(lower[:, c0: c0 + tol + 1].any(axis=1).sum()) >= 0.1 * height else None
        elif where is None and lateral == "right" and c1 < m.shape[1]:
            where = "lateral" if int(lower[:, max(c1 - 1 - tol, 0): c1].any(axis=1).sum()) >= 0.1 * height else None
        out[name] = where
    return out


def _symmetry(analysis: Any, meas: dict[str, Any], px: float | None) -> dict[str, Any]:
    """Rotation signs on non-chest frontal views: the fibular head's overlap with the tibia (knee),
    left/right imbalance of the pelvis mask about its centre, and the lumbar column's offset from
    the pelvic centre (a turned patient moves the spine off the middle of the pelvic ring)."""
    out: dict[str, Any] = {}
    if meas.get("fibula_tibia_overlap_fraction") is not None:
        out["fibula_tibia_overlap_fraction"] = meas["fibula_tibia_overlap_fraction"]
    pel = _mask(analysis, "pelvis")
    if pel is not None and pel.sum() >= 50:
        cols = np.nonzero(pel.any(axis=0))[0]
        mid = (cols[0] + cols[-1]) / 2.0
        xs = np.nonzero(pel)[1]
        left, right = float((xs < mid).sum()), float((xs > mid).sum())
        out["pelvis_asymmetry"] = round((right - left) / max(right + left, 1.0), 4)
        spine = _mask(analysis, "vertebrae_lumbar")
        if spine is not None and spine.sum() >= 20 and px:
            out["spine_pelvis_offset_mm"] = round((float(np.nonzero(spine)[1].mean()) - mid) * px, 1)
    return out


def _lung_aspect(analysis: Any) -> float | None:
    """Height of the lung fields over their joint width: a shallow inspiration leaves short lungs
    (a second, rib-independent look at the inspiration; rib counting is off by one at times)."""
    both, bb = _structure_box(analysis, ["lung_left", "lung_right"])
    if both is None or bb is None or both.sum() < 50:
        return None
    width = bb[3] - bb[1] + 1
    heights = []
    for name in ("lung_left", "lung_right"):
        m = _mask(analysis, name)
        if m is not None and m.any():
            rows = np.nonzero(m.any(axis=1))[0]
            heights.append(rows[-1] - rows[0] + 1)
    return round(float(max(heights)) / float(width), 4) if heights and width > 0 else None


def spine_line(spine: np.ndarray, min_width: int = 2, min_rows: int = 5) -> tuple[float, float] | None:
    """Straight line ``col = a * row + b`` through the vertebral column's per-row mask centres, each
    row weighted by the square root of its width, or None with fewer than ``min_rows`` rows.

    Why a fitted line: the column's per-row centre jumps by whole pixels (on a 2-3 mm grid a pixel is
    a sizeable fraction of the rotation signal); the fit over a few dozen rows places the midline to a
    fraction of a pixel, and a thoracic spine on a frontal chest view is straight to within that."""
    m = np.asarray(spine, bool)
    rows = np.nonzero(np.count_nonzero(m, axis=1) >= min_width)[0]
    if len(rows) < min_rows:
        return None
    # each row's mean mask column, vectorised (integer sums are exact: the same values as a
    # per-row np.nonzero(...).mean())
    rr, cc = np.nonzero(m[rows])
    counts = np.bincount(rr, minlength=len(rows))
    cents = np.bincount(rr, weights=cc, minlength=len(rows)) / counts
    w = np.sqrt(counts.astype(np.float64))
    a, b = np.polyfit(rows.astype(np.float64), cents, 1, w=w)
    return float(a), float(b)


def heart_spine_offset(analysis: Any, px: float | None) -> float | None:
    """Heart-shadow centroid minus the vertebral midline at the centroid's row (mm, image right
    positive; px when no spacing), on a frontal chest view.

    Why: the heart lies anterior to the spine, so when the patient turns about the long axis the
    heart shadow swings sideways against the spine, opposite to the way the spinous processes swing
    against the (anterior) medial clavicle ends. Its centroid averages hundreds of pixels and the
    midline is a fitted line, so the sign is read to a fraction of a pixel where the clavicle ends
    (extreme points of thin masks) are read to a pixel or two. On a straight chest the heart sits
    about 14 mm to the patient's left of the midline (``chest_rotation.heart_spine_mm.baseline``)."""
    heart = _mask(analysis, "heart")
    spine = None
    for name in ("vertebrae_thoracic", "vertebrae_cervical"):
        m = _mask(analysis, name)
        if m is not None:
            spine = m if spine is None else (spine | m)
    if heart is None or spine is None or heart.sum() < 20:
        return None
    fit = spine_line(spine)
    if fit is None:
        return None
    ys, xs = np.nonzero(heart)
    return round(float(xs.mean() - (fit[0] * ys.mean() + fit[1])) * (px or 1.0), 2)


def lung_height_in_ribs(analysis: Any) -> float | None:
    """Height of the right lung from its apex to the right dome, in posterior-rib spacings (the
    median spacing of the rib bands along the analyser's rib-profile column).

    Why: the inspiration limit is a rib count (the dome below the 10th posterior rib), and counting
    is off by one at times (a rib band merged with its neighbour or split at a gap), while the
    spacing, a median over the bands, is not; the lung's height divided by it counts ribs without
    needing every band. A normal inspiration reads about 10.4 (validation 8241/8242 and training
    7241 chest frontal views: 5th percentile 9.8), a dome at the 9th rib at most 9.3. None when the
    dome, the profile column or fewer than four rib bands are found."""
    from radqc.models.radiograph.classical import count_runs, largest

    meas = getattr(analysis, "measurements", None) or {}
    dome = ((getattr(analysis, "landmarks", None) or {}).get("diaphragm_dome_right") or (None,))[0]
    col = meas.get("rib_profile_col")
    ribs, lung = _mask(analysis, "ribs"), _mask(analysis, "lung_right")
    if dome is None or col is None or ribs is None or lung is None or not lung.any():
        return None
    lung = largest(lung)
    c = int(round(float(col)))
    if c < 1 or c >= ribs.shape[1] - 1:
        return None
    prof = np.median(ribs[:, c - 1: c + 2].astype(np.uint8), axis=1) > 0
    cent = np.array(count_runs(prof))
    top = float(np.nonzero(lung.any(axis=1))[0][0])
    bands = cent[cent > top - 0.04 * ribs.shape[0]]
    if len(bands) < 4:
        return None
    near = bands[bands < float(dome) + 3 * float(np.median(np.diff(bands)))]
    if len(near) < 2:
        return None
    # the median gap is robust to a band missed or merged but moves in whole pixels; refined over
    # the whole run of bands (its length divided by the number of gaps the median implies)
    med = float(np.median(np.diff(near)))
    if med <= 0:
        return None
    span = float(near[-1] - near[0])
    spacing = span / max(1, int(round(span / med)))
    return round((float(dome) - top) / spacing, 3)


def inspiration_by_height(analysis: Any, h_ribs: float | None, ribs: Any, lim_ribs: int,
                          field_px: Any, px: float | None, p: dict[str, Any] | None,
                          aspect: float | None = None) -> bool | None:
    """Shallow inspiration from the right lung's height in posterior-rib spacings alone
    (:func:`lung_height_in_ribs`, apex to the right dome), without the rib count: True when it is
    below ``p['max_ribs']``, the count is below the limit or missing (a count at or above it is not
    overruled: untouched 8434 E00006, a normal breath counted at 10, read 8.8), and the dome lies at least
    ``p['dome_margin_mm']`` above the field's bottom edge (``field_px`` = r0, r1, c0, c1). None when
    not configured or not measurable.

    Why: the count is not judged where a lung base is cut at the field's bottom ("ribs not
    countable") and is implausible where a lateral cut puts the rib-profile column outside the
    lung (5 ribs on a lung with 8), so shallow inspirations whose costophrenic angle was also cut
    were missed (held-out 9205 E00003, E00038). The height is measured to the dome, not to the
    angle: the costophrenic cut removes the lowest 15-35 mm of the lung, below the dome, and a
    shallow breath lifts the dome further from the cut. The dome margin keeps a normal breath whose
    dome is near the cut edge (where the analyser would place the dome on the edge) out.

    With ``p['overrule_count_at_limit']``, a count of exactly the limit (within the counting error
    of one) is overruled too when the lung fields are short (``aspect``, height / joint width, below
    ``p['max_aspect']``): the counter reads a band too many on a dome at the 9th rib (held-out
    i9214 E00072, i9216 E00081, 8902 E00006: counted 10, 8.56-8.97 spacings, aspect 0.96-1.09;
    worn i9210 E00104 read 9.04), while the normal breaths counted at 10 below 9.5 spacings all have tall
    fields (8434 E00006 8.81 at 1.13; 8901 E00142, 9082 E00014/E00152 at 1.10-1.19)."""
    if not p or p.get("max_ribs") is None or h_ribs is None:
        return None
    if ribs is not None and int(ribs) >= int(lim_ribs):
        at_limit = (p.get("overrule_count_at_limit") and int(ribs) == int(lim_ribs) and aspect is not None
                    and p.get("max_aspect") is not None and float(aspect) < float(p["max_aspect"]))
        if not at_limit:
            return False
    dome = ((getattr(analysis, "landmarks", None) or {}).get("diaphragm_dome_right") or (None,))[0]
    if dome is None or not field_px or len(field_px) != 4:
        return None
    margin = float(p.get("dome_margin_mm", 10.0)) / float(px or 2.0)
    if float(dome) > float(field_px[1]) - 1 - margin:
        return None
    if p.get("min_ribs") is not None and float(h_ribs) < float(p["min_ribs"]):
        # shorter than any breath held: the dome landmark is misread (untouched 8432 E00028, a
        # normal breath on a turned, off-centre view with a cut base, read 5.7)
        return None
    return bool(float(h_ribs) < float(p["max_ribs"]))


def _rotation_signs_agree(meas: dict[str, Any]) -> bool | None:
    """Whether the analyser's two rotation signs point the same way: the spine against the medial
    clavicle ends (``rotation_raw_mm``) and against the lateral lung edges
    (``rotation_thorax_raw_mm``). A turned chest moves the spine against both in the same direction;
    a combined offset over the limit whose two parts disagree (or one of which is exactly zero) is
    mask noise, not rotation (validation 8221 + 8212: 25 of 26 rotated views agreed, the 26th had
    no thorax sign; 3 of the 7 straight views over the limit disagreed). None when the thorax sign
    is unavailable (a lung cut at the field's side), so the combined offset alone decides."""
    cl, th = meas.get("rotation_raw_mm"), meas.get("rotation_thorax_raw_mm")
    if cl is None or th is None:
        return None
    return bool(float(cl) * float(th) > 0)


def _combined_marker(net: Any, pix: dict[str, Any] | None, net_letter_alone: bool = True) -> dict[str, Any] | None:
    """The analyser's marker and the pixel detector's: present when either found it; the letter
    and side from the pixel detector when it read one (it reads the full-resolution glyph).

    When the pixel detector found the lead blob but could not read its letter (a glyph cut by the
    field edge or run into burned-in text), the analyser's letter, read on its coarser grid from the
    same blob, is no better than chance (validation 8211-8213/8221/8202: 4 right, 5 wrong, every
    one a correct marker): the letter is then left unread and the side not judged.

    When the pixel search was conclusive that there is no marker (``find_marker`` returns
    ``present: False``), the marker is absent whatever the analyser says: its marker channel
    reports one on about a quarter of the views without a marker (``find_marker``'s docstring).

    When the pixel search was inconclusive (``pix`` None: the glyph runs into clipped pixels),
    ``net_letter_alone`` False leaves the analyser's letter unread too (present, side not judged):
    on 9080-9084, i9214 and h9215 the two such views with an analyser letter were both misread
    (h9215 E00011, a correct 'R' read 'L' and judged wrong; 9082 E00156)."""
    net = dict(net) if isinstance(net, dict) else None
    if pix is None:
        if net is not None and net.get("text") and not net_letter_alone:
            net["text"] = None
            net["letter_unread"] = True
        return net
    if pix.get("present") is False:
        return pix
    if net is None or not net.get("present"):
        return pix
    out = dict(net)
    if pix.get("text"):
        out.update({k: pix[k] for k in ("text", "side_of_image", "box")})
        out["source"] = "pixels"
    elif pix.get("present"):
        out["text"] = None
        out["letter_unread"] = True
    return out


def _chest_rotation_offset(v: _View, meas: dict[str, Any], p: dict[str, Any], evidence: Any,
                           details: dict[str, Any]) -> int:
    """Chest rotation by the analyser's combined offset alone (``rotation_mm``; used when
    ``chest_rotation`` is not configured). Returns the number of problems found (0 or 1)."""
    rot = meas.get("rotation_offset_mm")
    details["rotation_offset_mm"] = rot
    agree = _rotation_signs_agree(meas) if p.get("rotation_signs_agree") else None
    if agree is not None:
        details["rotation_signs_agree"] = agree
    if rot is not None and abs(float(rot)) > float(p["rotation_mm"]) and agree is False:
        details["rotation"] = _bi("锁骨与胸廓两项旋转征象方向不一致，不判旋转",
                                  "clavicle and thorax rotation signs disagree: not judged rotated")
    elif rot is not None and abs(float(rot)) > float(p["rotation_mm"]):
        v.find("positioning", "IQC-POSITION", "不标准",
               f"体位旋转：棘突偏离两侧锁骨内侧端中点 {abs(float(rot)):.0f} mm（限值 {p['rotation_mm']} mm）",
               f"patient rotated: spinous processes {abs(float(rot)):.0f} mm off the midpoint of the medial "
               f"clavicle ends (limit {p['rotation_mm']} mm)",
               evidence("rotation", round(float(rot), 1), p["rotation_mm"], "mm", kind="rotation"))
        return 1
    return 0


def _chest_rotation(v: _View, analysis: Any, meas: dict[str, Any], px: float | None, p: dict[str, Any],
                    evidence: Any, lung_cut_laterally: bool, details: dict[str, Any]) -> int:
    """Chest rotation from two signs that move in opposite directions when the patient turns: the
    spinous processes against the medial clavicle ends (the analyser's ``rotation_offset_mm``) and
    the heart shadow against the vertebral midline (:func:`heart_spine_offset`). Each is turned into
    a standard score against a straight chest (``baseline`` / ``spread`` in dx.yaml, measured on
    straight views), the heart's with the opposite sign, and the two are added: rotated when the
    sum exceeds ``max_score`` and both point the same way (or, with one sign only, when that one
    exceeds ``max_single_score``). Returns the number of problems found (0 or 1).

    Why both: on a 2-3 mm grid each sign alone is a pixel or two of signal; the clavicle offset
    under-reads turned chests (4-13 mm for a truth of 17-32 mm on held-out 9201) and over-reads
    some straight ones, and the heart sign is independent of it (different masks), so their sum
    separates better than either (docs/image-qc-accuracy.md, P's paragraph). A lung cut at the
    field's lateral edge spoils the thorax part of the analyser's offset, so the clavicle part alone
    is used there (its own gain, ``classical.ROTATION_C``)."""
    from radqc.models.radiograph.classical import ROTATION_C

    cr = p["chest_rotation"]
    off = meas.get("rotation_offset_mm")
    if lung_cut_laterally and meas.get("rotation_raw_mm") is not None:
        off = round(ROTATION_C * float(meas["rotation_raw_mm"]), 2)
        details["rotation_offset_source"] = "clavicle"
    heart = heart_spine_offset(analysis, px) if px else None
    details["rotation_offset_mm"] = off
    details["heart_spine_offset_mm"] = heart
    ho, oo = cr["heart_spine_mm"], cr["offset_mm"]
    max_dev = ho.get("max_deviation_mm")
    if heart is not None and max_dev is not None and abs(float(heart) - float(ho["baseline"])) > float(max_dev):
        # further from the midline than any chest turned on the table: the heart or spine mask is
        # wrong (seen on a real CR the analyser was not trained on), so the sign is not used
        details["heart_spine"] = _bi("心影-脊柱偏移不合理，掩膜不可信，不用于旋转判断",
                                     "heart-spine offset implausible (masks unreliable): not used for rotation")
        heart = None
    z_heart = None if heart is None else (float(heart) - float(ho["baseline"])) / float(ho["spread"])
    # the clavicle sign swings the other way from the heart's: negated so that both grow alike
    z_off = None if off is None else -(float(off) - float(oo["baseline"])) / float(oo["spread"])
    zs = [z for z in (z_heart, z_off) if z is not None]
    if not zs:
        return 0
    score = round(float(sum(zs)), 2)
    details["rotation_score"] = score
    if len(zs) == 2:
        agree = bool(np.sign(zs[0]) == np.sign(zs[1]))
        details["rotation_signs_agree"] = agree
        limit = float(cr["max_score"])
        rotated = agree and abs(score) > limit
        weak = cr.get("weak_sign_score")
        strong = max(zs, key=abs)
        if (not agree and weak is not None and min(abs(z) for z in zs) <= float(weak)
                and abs(strong) > float(cr["max_single_score"])):
            # a disagreeing sign within ``weak_sign_score`` spreads of its straight baseline is
            # consistent with no sign at all (mask noise): the strong one is judged alone, as with
            # one sign only (held-out 9209 E00086, a 7-degree turn with a lateral lung cut: heart
            # +5.1, the clavicle-only offset -1.1, summed 4.0 and vetoed as disagreeing)
            score, limit, rotated = round(float(strong), 2), float(cr["max_single_score"]), True
            details["rotation_score"] = score
            details["rotation"] = _bi("两项旋转征象之一接近基线（噪声），按单一征象判断",
                                      "one rotation sign within noise of its baseline: the other judged alone")
        elif abs(score) > limit and not agree:
            details["rotation"] = _bi("心影与锁骨两项旋转征象方向不一致，不判旋转",
                                      "heart and clavicle rotation signs disagree: not judged rotated")
    else:
        limit = float(cr["max_single_score"])
        rotated = abs(score) > limit
    if not rotated:
        return 0
    parts_zh = "、".join(n for n, z in (("心影偏离胸椎中线", z_heart), ("棘突偏离锁骨内侧端中点", z_off)) if z is not None)
    parts_en = " and ".join(n for n, z in (("heart shadow off the vertebral midline", z_heart),
                                           ("spinous processes off the medial clavicle ends", z_off)) if z is not None)
    heart_txt = "—" if heart is None else f"{float(heart):.0f}"
    off_txt = "—" if off is None else f"{float(off):.0f}"
    v.find("positioning", "IQC-POSITION", "不标准",
           f"体位旋转：{parts_zh}（心影-脊柱 {heart_txt} mm，棘突-锁骨 {off_txt} mm；合计偏离 {abs(score):.1f}，限值 {limit}）",
           f"patient rotated: {parts_en} (heart-spine {heart_txt} mm, spinous-clavicle {off_txt} mm; combined "
           f"deviation {abs(score):.1f}, limit {limit})",
           evidence("rotation", score, limit, "score", heart_spine_offset_mm=heart, rotation_offset_mm=off,
                    kind="rotation"))
    return 1


def _positioning(v: _View, analysis: Any, meas: dict[str, Any], px: float | None, params: dict[str, Any], chest: bool,
                 evidence: Any, pix_marker: dict[str, Any] | None = None,
                 outline: dict[str, Any] | None = None) -> None:
    p = params["positioning"]
    if analysis is None:
        v.set("positioning", NOT_ASSESSABLE, reason=_bi("解剖分析模型不可用", "radiograph anatomy model unavailable"))
        return
    details: dict[str, Any] = {}
    problems = 0
    # a chest image filed under another item (a multi-item order, chest PA + lumbar spine, scored
    # by the lumbar standard: held-out i9214 E00290/E00316, 8900 E00102): the chest's checks, not
    # the item's spine signs, which read a few rows of vertebra mask at the image bottom (E00316,
    # a straight chest, "rotated" by a 16-row spinous offset; E00290's shallow breath went unseen)
    other_chest = bool(not chest and v.view in FRONTAL and p.get("other_chest_checks")
                       and _item_view_shows_chest(analysis, params))
    if other_chest:
        details["view_shows"] = "chest"
    if (chest or other_chest) and v.view in FRONTAL:
        cut_at = v.details.get("range", {}).get("cut_at", {})
        field_px = v.details.get("range", {}).get("field_px")
        if other_chest and not cut_at and field_px:
            # the item's range check does not look at the lung bases: found here, as the centring
            # does, so that a cut base is not read as short lungs (a shallow breath)
            cut_at = {k: w for k, w in _lung_bases_in_field(analysis, tuple(field_px), v.view).items() if w}
        # a lung cut at the field's lateral edge: its lateral wall (the thorax part of the analyser's
        # rotation offset) and the scapula beside it are not in the image
        cut_side = {"right": cut_at.get("costophrenic_angle_right") == "lateral",
                    "left": cut_at.get("costophrenic_angle_left") == "lateral"}
        if other_chest and meas.get("rotation_offset_mm") is None:
            # analysed as the item's region: no clavicle sign, and the heart sign alone misreads a
            # shallow breath's broad heart (8900 E00102, straight: 21.6 mm, 5.2 spreads)
            details["rotation"] = _bi("按其他部位分析，无锁骨征象，不判旋转",
                                      "analysed as another region (no clavicle sign): rotation not judged")
        elif p.get("chest_rotation"):
            problems += _chest_rotation(v, analysis, meas, px, p, evidence, any(cut_side.values()), details)
        else:
            problems += _chest_rotation_offset(v, meas, p, evidence, details)
        sc = meas.get("scapula_in_lung_fraction") or {}
        details["scapula_in_lung_fraction"] = sc
        over = {s: f for s, f in sc.items()
                if f is not None and float(f) > float(p["scapula_in_lung_fraction"]) and not cut_side.get(s)}
        if any(cut_side.get(s) for s in sc):
            details["scapula"] = _bi("肺野外侧被切，该侧肩胛骨不评估", "lung cut at the lateral field edge: that "
                                     "side's scapula not judged")
        if over:
            problems += 1
            _, sb = _structure_box(analysis, [f"scapula_{s}" for s in over])
            sides_zh = "、".join({"left": "左", "right": "右"}[s] for s in over)
            v.find("positioning", "IQC-POSITION", "不标准",
                   f"{sides_zh}肩胛骨未拉出肺野（重叠 {max(over.values()):.0%}，限值 {p['scapula_in_lung_fraction']:.0%}）",
                   f"scapula ({', '.join(over)}) projected over the lung field ({max(over.values()):.0%} of it, "
                   f"limit {p['scapula_in_lung_fraction']:.0%})",
                   evidence("scapula", over, p["scapula_in_lung_fraction"], "fraction", sb, kind="scapula_over_lung"))
        ribs = meas.get("posterior_ribs_above_right_dome")
        details["posterior_ribs_above_right_dome"] = ribs
        details["lung_height_to_width"] = _lung_aspect(analysis)
        aspect = details["lung_height_to_width"]
        cut = cut_at.get("costophrenic_angle_right") == "bottom"
        # a lung base cut at the field's bottom edge leaves the lung field short whatever the breath
        bottom_cut = any(w == "bottom" for w in cut_at.values())
        lim_ribs, lim_aspect = int(p["min_posterior_ribs"]), float(p["borderline_lung_aspect"])
        short_aspect = p.get("short_lung_aspect")
        # a rib count clearly above the limit (beyond the counting error of one) is not overruled
        short = (aspect is not None and short_aspect is not None and aspect < float(short_aspect)
                 and (ribs is None or int(ribs) <= lim_ribs) and not bottom_cut)
        # the lung's height in rib spacings: a second reading of a borderline count (one below the
        # limit), believed when it is within ``max_rib_disagreement`` of the count
        h_lim = p.get("borderline_height_in_ribs")
        h_ribs = lung_height_in_ribs(analysis) if h_lim is not None else None
        details["lung_height_in_ribs"] = h_ribs
        low_height = (h_ribs is not None and ribs is not None and h_lim is not None and float(h_ribs) < float(h_lim)
                      and float(h_ribs) >= int(ribs) - float(p.get("max_rib_disagreement", 1.5)))
        # the height in rib spacings alone (apex to dome), where the count cannot be used: a lung
        # base or wall cut by the field, a misread count (inspiration_by_height)
        low_alone = inspiration_by_height(analysis, h_ribs, ribs, lim_ribs, v.details.get("range", {}).get("field_px"),
                                          px, p.get("inspiration_height"), aspect)
        ih_aspect = (p.get("inspiration_height") or {}).get("max_aspect")
        if low_alone and aspect is not None and ih_aspect is not None and aspect >= float(ih_aspect):
            # tall lung fields are a full breath: the spacing was misread (motion blurs the rib
            # bands; held-out 9209 E00097, a normal breath, read 7.3 spacings at height/width 1.20).
            # A cut base only shortens the lung, so tall despite a cut is the stronger evidence.
            low_alone = False
            details["inspiration_height"] = _bi("肺野高宽比正常，不按肋间距判吸气不足",
                                                "tall lung fields: shallow inspiration not judged by rib spacings")
        details["inspiration_by_height"] = low_alone
        # a low count with tall lung fields is a misread dome or rib, not a shallow inspiration
        tall_lim = p.get("low_count_max_aspect")
        tall = tall_lim is not None and aspect is not None and aspect >= float(tall_lim)
        # ... and so is a low count (two or more below the limit) on a lung as high as a full breath
        # in rib spacings: the counter lost bands (noise, blur), the spacing is a median and kept
        # (held-out i9216 E00027/E00028, normal breaths counted at 8: 9.50/9.59 spacings at
        # height/width 1.09/1.06; 8434 E00081, 6 at 10.5; every shallow breath counted 6-8 on the
        # worn sets and 9080-9082 read <= 8.80)
        h_high = p.get("low_count_max_height_in_ribs")
        if (not tall and h_high is not None and h_ribs is not None and ribs is not None
                and int(ribs) < lim_ribs - 1 and float(h_ribs) >= float(h_high)):
            tall = True
            details["inspiration"] = _bi("肋骨计数低但按肋间距肺野高度正常，不判吸气不足",
                                         "low rib count but the lung is a full breath high in rib spacings: "
                                         "not judged a shallow inspiration")
        shallow = ribs is not None and not tall and (int(ribs) < lim_ribs - 1 or (
            int(ribs) == lim_ribs - 1 and ((aspect is not None and aspect < lim_aspect) or low_height)))
        if ribs is not None and tall and int(ribs) < lim_ribs - 1 and "inspiration" not in details:
            details["inspiration"] = _bi("肋骨计数低但肺野高度正常，不判吸气不足",
                                         "low rib count but tall lung fields: not judged a shallow inspiration")
        if short:
            # lungs far shorter than wide: a shallow inspiration whatever the rib count says (the
            # count fails exactly when the dome is low in or below the field)
            problems += 1
            v.find("positioning", "IQC-POSITION", "不标准",
                   f"吸气不足：肺野高宽比 {aspect:.2f}（应 ≥ {float(short_aspect):.2f}），右膈上后肋计数 {ribs}",
                   f"shallow inspiration: lung fields {aspect:.2f} as high as wide (should be >= "
                   f"{float(short_aspect):.2f}); posterior ribs counted above the right hemidiaphragm: {ribs}",
                   evidence("inspiration", aspect, short_aspect, "height/width", posterior_ribs=ribs,
                            kind="shallow_inspiration"))
        elif low_alone:
            problems += 1
            v.find("positioning", "IQC-POSITION", "不标准",
                   f"吸气不足：右肺尖至右膈顶仅 {h_ribs:.1f} 个后肋间距（应 ≥ {float(p['inspiration_height']['max_ribs']):.1f}）",
                   f"shallow inspiration: the right lung is {h_ribs:.1f} posterior-rib spacings from apex to dome "
                   f"(should be >= {float(p['inspiration_height']['max_ribs']):.1f})",
                   evidence("inspiration", h_ribs, p["inspiration_height"]["max_ribs"], "rib spacings",
                            posterior_ribs=ribs, lung_height_to_width=aspect, kind="shallow_inspiration"))
        elif ribs is not None and int(ribs) < int(p.get("plausible_min_ribs", 0)):
            # fewer ribs than any inspiration shows: the dome or the rib masks were misread
            details["inspiration"] = _bi("肋骨计数不可信", "rib count implausible: not judged")
        elif cut and ribs is not None:
            # the right dome may lie below the field: the rib count above it means nothing
            details["inspiration"] = _bi("肋膈角未包全，无法计数", "lung bases cut off: ribs not countable")
        elif shallow:
            problems += 1
            v.find("positioning", "IQC-POSITION", "不标准",
                   f"吸气不足：右膈顶上方仅见 {ribs} 根后肋（应 ≥ {p['min_posterior_ribs']}）",
                   f"shallow inspiration: {ribs} posterior ribs above the right hemidiaphragm "
                   f"(should be >= {p['min_posterior_ribs']})",
                   evidence("inspiration", ribs, p["min_posterior_ribs"], "ribs", lung_height_to_width=aspect,
                            lung_height_in_ribs=h_ribs, kind="shallow_inspiration"))
    if not chest and not other_chest and v.view in FRONTAL:
        details.update(_symmetry(analysis, meas, px))
        details.update(outline or {})
        if ((p.get("spinous_offset") or {}).get("only_without_outline")
                and details.get("spine_outline_offset_mm") is not None):
            # the soft-tissue outline decides where it can be read; the spinous offset stands in
            # for it only on views whose neck outline runs off the field (a sideways-shifted
            # cervical AP: held-out i9214 E00047/E00156, 6-7 degree turns, no outline middle)
            details["spinous_offset_not_judged_mm"] = details.pop("spinous_offset_mm", None)
        checks = [("fibula_tibia_overlap_fraction", "max_fibula_overlap", "腓骨头与胫骨重叠过多（膝关节旋转）",
                   "fibular head overlaps the tibia too much (knee rotated)"),
                  ("pelvis_asymmetry", "max_pelvis_asymmetry", "两侧髂骨/闭孔不对称（骨盆旋转）",
                   "iliac wings / obturator foramina asymmetric (pelvis rotated)"),
                  ("spine_pelvis_offset_mm", "max_spine_pelvis_offset_mm", "脊柱中线偏离骨盆中心（体位旋转）",
                   "spinal midline off the pelvic centre (patient rotated)"),
                  ("spine_outline_offset_mm", "max_spine_outline_offset_mm", "脊柱偏离软组织轮廓中线（体位旋转），偏移 mm",
                   "spine off the midline of the soft-tissue outline (patient rotated), offset in mm"),
                  ("spinous_offset_mm", "max_spinous_offset_mm", "棘突偏离椎体中线（体位旋转），偏移 mm",
                   "spinous processes off the middle of the vertebral bodies (patient rotated), offset in mm"),
                  ("posterior_offset_mm", "max_posterior_offset_mm", "棘突/椎弓根偏离椎体边缘中点（体位旋转），偏移 mm",
                   "spinous processes / pedicles off the middle of the vertebral body edges (patient rotated), offset in mm"),
                  ("pelvis_mirror_asymmetry", "max_pelvis_mirror_asymmetry", "两侧髂骨翼左右不对称（骨盆旋转），不对称度",
                   "iliac wings not mirror-symmetric (pelvis rotated), asymmetry"),
                  ("heart_clavicle_score", "max_heart_clavicle_score", "心影偏离脊柱中线、棘突偏离锁骨内侧端中点（体位旋转），两项合计偏离",
                   "heart shadow off the vertebral midline and spinous processes off the medial clavicle ends "
                   "(patient rotated), combined deviation of the two signs")]
        combined = _spine_rotation_score(details, p.get("spine_rotation_score"))
        if combined is not None:
            # both spine signs read: judged together, not each against its own limit
            score, lim = combined
            details["spine_rotation_score"] = score
            checks = [c for c in checks if c[0] not in ("spinous_offset_mm", "posterior_offset_mm")]
            if abs(score) > lim:
                problems += 1
                v.find("positioning", "IQC-POSITION", "不标准",
                       f"棘突/椎弓根偏离椎体中线（体位旋转）：两项征象合计偏离 {abs(score):.1f}（限值 {lim}）",
                       f"spinous processes / pedicles off the middle of the vertebral bodies (patient rotated): "
                       f"combined deviation of the two signs {abs(score):.1f} (limit {lim})",
                       evidence("spine_rotation_score", score, lim, "score",
                                posterior_offset_mm=details.get("posterior_offset_raw_mm"),
                                spinous_offset_mm=details.get("spinous_offset_raw_mm"), kind="rotation"))
        for key, lim_key, zh, en in checks:
            val, lim = details.get(key), p.get(lim_key)
            if val is not None and lim is not None and abs(float(val)) > float(lim):
                problems += 1
                v.find("positioning", "IQC-POSITION", "不标准", f"{zh}：{abs(float(val)):.2f}（限值 {lim}）",
                       f"{en}: {abs(float(val)):.2f} (limit {lim})", evidence(key, val, lim, None, kind="rotation"))
    if p.get("check_marker", True):
        mk = _combined_marker(meas.get("marker"), pix_marker, bool(p.get("marker_analyser_letter_alone", True)))
        details["marker"] = {k: mk.get(k) for k in ("present", "text", "side_of_image", "over_lung")} if mk else None
        if isinstance(mk, dict) and mk.get("present") is False:
            problems += 1
            v.find("positioning", "IQC-MARKER", "不标准", "未见左右（L/R）铅字标记", "no left/right (L/R) lead marker",
                   evidence("marker", "absent", "present", None, kind="marker_missing"))
        elif isinstance(mk, dict) and v.view in FRONTAL and mk.get("text") in ("L", "R"):
            # PA/AP: the patient's left is on the image right
            expected = "L" if mk.get("side_of_image") == "right" else "R"
            if mk["text"] != expected:
                problems += 1
                b = mk.get("box")
                mark = [float(b[0]), float(b[2]), float(b[1]), float(b[3])] if b and len(b) == 4 else None
                v.find("positioning", "IQC-MARKER", "不标准",
                       f"左右标记错误：图像{'右' if mk.get('side_of_image') == 'right' else '左'}侧标记为“{mk['text']}”，应为“{expected}”",
                       f"L/R marker wrong: '{mk['text']}' on the image {mk.get('side_of_image')} side, expected '{expected}'",
                       evidence("marker", mk["text"], expected, None, mark, kind="marker_wrong"))
    details["checks"] = ("rotation, scapulae, inspiration, marker" if (chest or other_chest) and v.view in FRONTAL
                         else "marker")
    v.set("positioning", "不标准" if problems else "标准", details)


def _spine_rotation_score(details: dict[str, Any], cfg: dict[str, Any] | None) -> tuple[float, float] | None:
    """(score, limit) of a frontal spine view's two rotation signs judged together, or None when
    not configured or either sign is missing (each is then judged against its own limit).

    The raw posterior-element offset (vs the bodies' pixel edges, radiograph_rotation) and the raw
    spinous offset (vs the vertebra mask's middle) each become a standard score against straight
    views (``(raw - baseline) / spread`` from ``cfg['posterior']`` / ``cfg['spinous']``), and the
    two are added; rotated when the sum's magnitude exceeds ``cfg['max_score']``.

    Why: on a lumbar AP of 11-30 px across, each sign is the median of per-row readings a pixel
    (1.7-3.4 mm) apart, and either alone strays as far as a 6-9 degree turn on some straight views
    (posterior: held-out i9216 E00095/E00123, worn i9210 E00019, 8900 E00022/E00056 at -7.0 to
    -10.4 mm raw; spinous: 8901 E00042). Their errors are nearly independent (r = 0.34 on straight
    views), while a turn moves both the same way, so the sum separates where neither does."""
    if not cfg:
        return None
    po, sp = details.get("posterior_offset_raw_mm"), details.get("spinous_offset_raw_mm")
    if po is None or sp is None:
        return None
    pc, sc = cfg["posterior"], cfg["spinous"]
    score = ((float(po) - float(pc["baseline"])) / float(pc["spread"])
             + (float(sp) - float(sc["baseline"])) / float(sc["spread"]))
    return round(score, 2), float(cfg["max_score"])


def _item_view_shows_chest(analysis: Any, params: dict[str, Any]) -> bool:
    """Whether a frontal view of a non-chest item is a chest image (:func:`_shows_other_chest`),
    from the offset of the item's centring structures (``centring.structures``) from the image
    centre; an item whose structures are not found at all counts as far off. False for items
    without their own structures (the test needs an anatomy that should be central)."""
    pc = params.get("centring") or {}
    names = list(pc.get("structures") or [])
    if not names or analysis is None:
        return False
    union, _ = _structure_box(analysis, names)
    if union is None or union.sum() < 20:
        frac = (1.0, 1.0)
    else:
        ys, xs = np.nonzero(union)
        nr, nc = union.shape[:2]
        frac = (float(xs.mean() - (nc - 1) / 2) / nc, float(ys.mean() - (nr - 1) / 2) / nr)
    return _shows_other_chest(analysis, frac, pc)


def _shows_other_chest(analysis: Any, frac: tuple[float, float], p: dict[str, Any]) -> bool:
    """Whether a frontal view filed under a non-chest item is a chest image: the item's structures
    lie further from the centre than any central ray misses by (``chest_view.max_item_offset``, a
    fraction of the image) and the lung fields cover ``chest_view.min_lung_fraction`` of it (the
    analyser's own chest test is 0.08). Why: an order for a chest and a lumbar spine is scored by
    one item's standard, and its chest images then showed the lowest vertebrae at the image bottom
    (an 'offset' of 150 mm: validation 8275 E00028, 8277 E00064, 9202 E00014/E00025)."""
    cv = p.get("chest_view") or {}
    if not cv or max(abs(frac[0]), abs(frac[1])) <= float(cv.get("max_item_offset", 0.25)):
        return False
    area = 0
    size = 0
    for name in ("lung_left", "lung_right"):
        m = _mask(analysis, name)
        if m is not None:
            area += int(m.sum())
            size = m.size
    return bool(size) and area >= float(cv.get("min_lung_fraction", 0.08)) * size


def chest_frontal_centre(analysis: Any, shape: tuple[int, int], bottom_cut: bool,
                         bottom_cut_px: float = 0.0) -> tuple[float, float, dict[str, Any]] | None:
    """Where the thorax sits on a frontal chest view, as (dx, dy) in pixels from the image centre
    (x to the image right, y down), or None without lung fields.

    Vertical: the midpoint of the lung fields' extent, apex to the lowest lung row. The central ray
    of a chest PA aims at the middle of the lungs (the detector centred halfway between the apices
    and the bases), so this is the definition itself; the lungs' centroid lies a habitus-dependent
    distance below it (wider bases) and moves up when a base is cut off by the collimation. A base
    cut at the field's bottom edge hides the lowest rows: ``bottom_cut_px`` (half a typical cut)
    is added then, since the midpoint of what is left reads the anatomy too high.
    Horizontal: the fitted vertebral midline at that mid-lung row. The spine is the patient's
    midline; a lung cut at the field's lateral edge shifts the lungs' centroid and extent but not
    the spine. Without a vertebral column the lungs' centroid column is used.

    Why (validation 8275-8279, 9202 chest PA/AP without a centring defect): the lungs' centroid
    read 16-30 mm off-centre on views with a costophrenic cut-off (9 views read 偏下/偏左), while
    the extent midpoint and the spine line follow the generator's field shift to about 3 mm."""
    from radqc.models.radiograph.classical import largest

    lungs = None
    for name in ("lung_left", "lung_right"):
        m = _mask(analysis, name)
        if m is not None and m.any():
            m = largest(m)
            lungs = m if lungs is None else (lungs | m)
    if lungs is None or lungs.sum() < 20:
        return None
    nr, nc = shape
    rows = np.nonzero(lungs.any(axis=1))[0]
    mid_row = (float(rows[0]) + float(rows[-1])) / 2
    dy = mid_row - (nr - 1) / 2 + (bottom_cut_px if bottom_cut else 0.0)
    spine = None
    for name in ("vertebrae_thoracic", "vertebrae_cervical"):
        m = _mask(analysis, name)
        if m is not None and m.any():
            spine = m if spine is None else (spine | m)
    fit = spine_line(spine) if spine is not None else None
    how: dict[str, Any] = {"vertical": "lung extent midpoint" + (" + bottom cut" if bottom_cut else ""),
                           "lung_rows": [int(rows[0]), int(rows[-1])]}
    if fit is not None:
        dx = fit[0] * mid_row + fit[1] - (nc - 1) / 2
        how["horizontal"] = "vertebral midline"
    else:
        dx = float(np.nonzero(lungs)[1].mean()) - (nc - 1) / 2
        how["horizontal"] = "lung centroid"
    return float(dx), float(dy), how


def _union_mask(analysis: Any, names: list[str]) -> np.ndarray | None:
    """The union of the analyser's masks of ``names`` (those present and not empty), or None."""
    union = None
    for name in names:
        m = _mask(analysis, name)
        if m is not None and m.any():
            union = m if union is None else (union | m)
    return union


def anchor_row(analysis: Any, names: list[str], min_px: int = 20) -> float | None:
    """Centroid row of the ``names`` structures (at least ``min_px`` pixels), or None.

    Why (knee frontal views): the patella sits a fixed distance above the joint line the ray aims
    at; its centroid minus the generator's field shift was -30.8 mm (median; -35 to -25) on every
    knee AP of 8460/8461/q8462 and worn i9206 (42 views, SD 2.1 mm), including the 5 whose femur/tibia masks
    ran into each other and put the joint gap 40-65 mm off."""
    union = _union_mask(analysis, names)
    if union is None or int(union.sum()) < min_px:
        return None
    return float(np.nonzero(union)[0].mean())


def joint_line_row(analysis: Any, upper: list[str], lower: list[str]) -> float | None:
    """The row of a joint line: halfway between the lowest row of the ``upper`` structures (femur)
    and the highest row of the ``lower`` ones (tibia); None when either is missing or they do not
    lie one above the other.

    Why: the central ray of a knee is aimed at the joint line. The centroid of the knee's bones
    hardly moves with the ray, as the femur and tibia run off both image edges (dx profile 8460:
    a 31 mm caudal shift read 3 mm; worn i9206 E00011: 38 mm read 8 mm). The joint gap moves with
    it: on 8460, gap row minus the generator's field shift was 1.2-4.4 mm on all 8 knee APs, but 5
    of 42 knee APs of 8460/8461/q8462/i9206 read 40-65 mm off where the femur and tibia masks run
    into each other, so :func:`anchor_row` (the patella) is read first and this is the fallback."""
    def rows(names: list[str]) -> np.ndarray | None:
        union = _union_mask(analysis, names)
        return None if union is None else np.nonzero(union.any(axis=1))[0]

    top, bottom = rows(upper), rows(lower)
    if top is None or bottom is None or not len(top) or not len(bottom):
        return None
    low_of_upper, high_of_lower = float(top[-1]), float(bottom[0])
    if float(bottom[-1]) <= low_of_upper:  # the lower bone must reach below the upper one
        return None
    return (low_of_upper + high_of_lower) / 2


def _centring(v: _View, analysis: Any, meas: dict[str, Any], image: np.ndarray, px: float | None,
              params: dict[str, Any], chest: bool, evidence: Any) -> None:
    """Anatomy centroid vs detector centre. The central ray moved one way shows the anatomy moved
    the other way in the image, so an anatomy offset to the image right reads 偏左 (ray to the left)."""
    p = params["centring"]
    if analysis is None:
        v.set("centring", NOT_ASSESSABLE, reason=_bi("解剖分析模型不可用", "radiograph anatomy model unavailable"))
        return
    # the item's target structures (a spine column runs off the image, so all bones together do not
    # move with the central ray; the item's own segment does)
    names = list(p.get("structures") or (["lung_left", "lung_right"] if chest
                                          else [n for n in ANATOMY_CHANNELS if n not in ("heart",)]))
    union, bb = _structure_box(analysis, names)
    if union is None or union.sum() < 20:
        v.set("centring", NOT_ASSESSABLE, reason=_bi("未找到用于定位的解剖结构", "no anatomy found to measure centring on"))
        return
    ys, xs = np.nonzero(union)
    nr, nc = image.shape[:2]
    dy, dx = float(ys.mean() - (nr - 1) / 2), float(xs.mean() - (nc - 1) / 2)
    ext: dict[str, Any] | None = None
    if chest and p.get("method") == "extent":
        ext = dict(p.get("chest_view") or {})
    elif not chest and v.view in FRONTAL and _shows_other_chest(analysis, (dx / nc, dy / nr), p):
        # the item's structures sit implausibly far off and the view shows lung fields: a chest
        # image filed under another item (a multi-item order: chest + lumbar spine), measured as one
        ext = dict(p.get("chest_view") or {})
        names = ["lung_left", "lung_right"]
    how: dict[str, Any] | None = None
    if ext is not None and v.view in FRONTAL:
        rng = v.details.get("range", {})
        cut_at = rng.get("cut_at")
        if cut_at is None and rng.get("field_px"):
            cut_at = _lung_bases_in_field(analysis, tuple(rng["field_px"]), v.view)
        bottom = any(w == "bottom" for w in (cut_at or {}).values())
        cut_px = float(ext.get("bottom_cut_mm") or 0.0) / px if px else 0.0
        est = chest_frontal_centre(analysis, (nr, nc), bottom, cut_px)
        if est is not None:
            dx, dy, how = est
            if not chest:
                how["view_shows"] = "chest"
    # a joint centred by its joint line (knee, dx.yaml ``centring.joint_line``), frontal views only:
    # vertical from the centroid of an anchor bone beside the joint (the patella) when it is found,
    # else from the gap between the bone above and the bone below
    joint = dict(p.get("joint_line") or {}) if p.get("method") == "joint_line" and how is None and v.view in FRONTAL else None
    if joint:
        arow = anchor_row(analysis, joint.get("anchor") or [], int(joint.get("anchor_min_px") or 20))
        jrow = joint_line_row(analysis, joint.get("upper") or ["femur"], joint.get("lower") or ["tibia"]) if arow is None else None
        if arow is not None:
            dy = arow - (nr - 1) / 2
            how = {"vertical": "anchor " + "+".join(joint.get("anchor") or []), "anchor_row": round(arow, 1)}
            joint["baseline_y_mm"] = joint.get("anchor_baseline_y_mm")
        elif jrow is not None:
            dy = jrow - (nr - 1) / 2
            how = {"vertical": "joint line", "joint_row": round(jrow, 1)}
        else:
            joint = None
    # where this item's anatomy sits on a well-centred image (the centroid of the masks is not the
    # central-ray target: e.g. the lungs' centroid lies below the T7 target on a chest PA)
    base = (p.get("baseline_mm") or {}).get("frontal" if v.view in FRONTAL else "lateral") or [0.0, 0.0]
    if how is not None and ext is not None:
        base = ext.get("extent_baseline_mm") or [0.0, 0.0]
    if joint is not None:
        base = [float(base[0]), float(joint.get("baseline_y_mm") or 0.0)]
    scale = px or 1.0
    if px:
        dx, dy = dx - float(base[0]) / px, dy - float(base[1]) / px
    off = {"x": round(dx * scale, 1), "y": round(dy * scale, 1)}
    frac = {"x": round(dx / nc, 3), "y": round(dy / nr, 3)}
    details: dict[str, Any] = {"anatomy_offset_mm" if px else "anatomy_offset_px": off, "offset_fraction": frac,
                               "baseline_mm": list(base), "measured_on": names}
    if how is not None:
        details["method"] = how
    lim_mm, lim_f = float(p["offset_mm"]), float(p["offset_fraction"])
    lim_y = float(p.get("offset_mm_y") or lim_mm)
    if how is not None and ext is not None:
        lim_mm = float(ext.get("offset_mm") or lim_mm)
        lim_y = float(ext.get("offset_mm_y") or lim_mm)
    if joint is not None:
        lim_y = float(joint.get("offset_mm_y") or lim_y)

    def over(d_px: float, n: int, lim: float) -> bool:
        return abs(d_px * px) > lim if px else abs(d_px / n) > lim_f

    cand = []
    if over(dx, nc, lim_mm):
        cand.append((abs(dx * scale), "偏左" if dx > 0 else "偏右", off["x"], lim_mm))
    if over(dy, nr, lim_y):
        cand.append((abs(dy * scale), "偏上" if dy > 0 else "偏下", off["y"], lim_y))
    if not cand:
        details["offset_mm"] = round(float(np.hypot(dx, dy) * scale), 1) if px else None
        v.set("centring", "正常", details)
        return
    mag, value, signed, lim = max(cand)
    details["offset_mm"] = round(mag, 1) if px else None
    details["direction"] = value
    v.set("centring", value, details)
    v.find("centring", "IQC-CENTRING", value,
           f"中心线{value[1:]}偏：解剖中心偏离探测器中心 {mag:.0f} {'mm' if px else 'px'}",
           f"central ray off-centre ({VALUE_EN[value].replace('off-centre ', '')}): anatomy centroid {mag:.0f} "
           f"{'mm' if px else 'px'} from the detector centre", evidence("centring", signed, lim, "mm" if px else "px", bb))


def _exposure(v: _View, ds: Any, image: np.ndarray, box: tuple[int, int, int, int], params: dict[str, Any],
              evidence: Any, field_mark: list[float]) -> None:
    pn, ps, pd = params["noise"], params["sharpness"], params["dose"]
    pm = pixel_measures(image, box, _spacing(ds), float(ps.get("grid_mm", 1.5)), ps.get("bands"), ps.get("crisp"))
    ei, di = _number(ds, "ExposureIndex"), _number(ds, "DeviationIndex")
    tei = _number(ds, "TargetExposureIndex")
    if di is None and ei and tei:
        di = round(10 * float(np.log10(ei / tei)), 2)
    # ---- noise
    nd: dict[str, Any] = {"exposure_index": ei, "target_exposure_index": tei, "deviation_index": di, **pm}
    reasons = []
    if di is not None and di < float(pn["deviation_index_low"]):
        reasons.append(("偏差指数 DI", "deviation index DI", di, pn["deviation_index_low"], ""))
    elif di is None and pm and pm["noise_fraction"] > float(pn["noise_fraction_high"]):
        reasons.append(("量子噪声（相对）", "quantum noise (relative)", pm["noise_fraction"], pn["noise_fraction_high"], ""))
    if pm and pm["clip_fraction"] > float(pn["clip_fraction_high"]):
        reasons.append(("直方图截断比例", "clipped histogram fraction", pm["clip_fraction"], pn["clip_fraction_high"], ""))
    if not pm and di is None:
        v.set("noise", NOT_ASSESSABLE, nd, _bi("照射野过小且无曝光指数", "field too small and no exposure index"))
    elif reasons:
        v.set("noise", ABNORMAL, nd)
        for zh, en, val, lim, _ in reasons:
            v.find("noise", "IQC-EXPOSURE", ABNORMAL, f"曝光不当/噪声过大：{zh} {val}（限值 {lim}）",
                   f"exposure/noise out of range: {en} {val} (limit {lim})", evidence("noise", val, lim, None, field_mark))
    else:
        v.set("noise", NORMAL, nd)
    # ---- sharpness: blur smooths both axes; motion (the artifact measure's) only one, so the
    # sharper axis decides
    if not pm:
        v.set("sharpness", NOT_ASSESSABLE, reason=_bi("照射野过小", "field too small to measure"))
    else:
        smooth = min(pm["smooth_x"], pm["smooth_y"])
        detail, lim_d, lim_s = pm.get("detail_fraction"), ps.get("min_detail_fraction"), ps.get("max_smoothness")
        sd = {"detail_fraction": detail, "min_detail_fraction": lim_d, "smoothness": smooth, "smooth_x": pm["smooth_x"],
              "smooth_y": pm["smooth_y"], "max_smoothness": lim_s, "edge_x": pm["edge_x"], "edge_y": pm["edge_y"]}
        if lim_d is not None and detail is not None and detail < float(lim_d):
            v.set("sharpness", ABNORMAL, sd)
            v.find("sharpness", "IQC-SHARPNESS", ABNORMAL,
                   f"图像模糊：细节保留比 {detail:.3f}（应 ≥ {lim_d}，越小越模糊）",
                   f"image blurred: fine-detail fraction {detail:.3f} (should be >= {lim_d}; lower = blurrier)",
                   evidence("sharpness", detail, lim_d, None, field_mark))
        elif lim_s is not None and smooth > float(lim_s):
            v.set("sharpness", ABNORMAL, sd)
            v.find("sharpness", "IQC-SHARPNESS", ABNORMAL,
                   f"图像模糊：边缘平滑度 {smooth:.2f}（限值 {lim_s}，越大越模糊）",
                   f"image blurred: edge smoothness {smooth:.2f} (limit {lim_s}; higher = blurrier)",
                   evidence("sharpness", smooth, lim_s, None, field_mark))
        elif detail is None and lim_s is None:
            v.set("sharpness", NOT_ASSESSABLE, sd, _bi("照射野过小，无法测频谱", "field too small for a spectrum"))
        else:
            v.set("sharpness", NORMAL, sd)
    # ---- dose
    dd = {"exposure_index": ei, "target_exposure_index": tei, "deviation_index": di}
    if ei is None and di is None:
        if pd.get("require_exposure_index", True):
            v.set("dose", ABNORMAL, dd)
            v.find("dose", "IQC-EXPOSURE", ABNORMAL, "未记录曝光指数（EI/DI），无法核对剂量",
                   "exposure index (EI/DI) not recorded: dose cannot be checked", evidence("dose", None, "recorded", None))
        else:
            v.set("dose", NOT_ASSESSABLE, dd, _bi("未记录曝光指数", "exposure index not recorded"))
    elif di is not None and di > float(pd["deviation_index_high"]):
        v.set("dose", ABNORMAL, dd)
        v.find("dose", "IQC-EXPOSURE", ABNORMAL, f"曝光过度：偏差指数 DI {di}（限值 {pd['deviation_index_high']}）",
               f"over-exposed: deviation index DI {di} (limit {pd['deviation_index_high']})",
               evidence("dose", di, pd["deviation_index_high"], None))
    else:
        v.set("dose", NORMAL, dd)


# ---------------------------------------------------------------- roll-up


def _rollup(dim: str, views: list[_View], params: dict[str, Any]) -> DimensionResult:
    assessed = [x for x in views if x.values.get(dim) not in (None, NOT_ASSESSABLE, NOT_APPLICABLE)]
    if dim == "centring" and any(x.view in FRONTAL for x in assessed):
        # the central-ray position is judged on the frontal view(s); a lateral view's left/right is
        # anterior/posterior and its anatomy centroid varies with habitus
        assessed = [x for x in assessed if x.view in FRONTAL]
    per_view = [{"series_uid": x.uid, "view": x.view, "value": x.values.get(dim), **x.details.get(dim, {})}
                for x in views]
    if not assessed:
        reason = next((x.reasons[dim] for x in views if dim in x.reasons),
                      _bi("没有可评估的投照片", "no assessable radiograph"))
        return DimensionResult(NOT_ASSESSABLE, {"views": per_view}, reason)
    order = SEVERITY[dim]
    vals = [x.values[dim] for x in assessed]
    if params.get("rollup") == "majority":
        counts = Counter(vals)
        value = max(counts, key=lambda k: (counts[k], order.index(k)))
    else:
        value = max(vals, key=order.index)
    findings = [f for x in assessed if x.values[dim] == value for f in x.findings.get(dim, [])]
    if value == order[0]:
        findings = []
    details: dict[str, Any] = {"views": per_view, "rollup": params.get("rollup", "strictest")}
    if dim == "centring":
        src = next((x for x in assessed if x.values[dim] == value), assessed[0])
        details["offset_mm"] = src.details.get(dim, {}).get("offset_mm")
        details["offset_fraction"] = src.details.get(dim, {}).get("offset_fraction")
    if dim == "range":
        details["missing"] = sorted({m for x in assessed for m in x.details.get(dim, {}).get("missing", [])})
    return DimensionResult(value, details, None, findings)


def measure_radiograph(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink) -> dict[str, DimensionResult]:
    """Range, positioning (with the L/R marker), centring, noise, sharpness and dose of a DX/CR exam.

    ``params`` come from :func:`load_params` (the exam's standard code). Every view of one image
    is measured; the exam's value per dimension is the strictest over its views (or the majority,
    per ``params['rollup']``). Findings carry points 0 (the roll-up over the scoring standard
    fills them). ``artifact`` is not returned here (the artifact measures own it); the dimensions
    that do not apply to projections are NOT_APPLICABLE with the reason."""
    if not all(k in params for k in ("range", "positioning", "centring", "noise", "sharpness", "dose")):
        params = _merge(load_params(exam.standard_code), params)  # partial params: fill from the file
    out: dict[str, DimensionResult] = {}
    views = []
    for s in exam.series:
        modality = str(getattr(s.header, "modality", "") or exam.modality or "").upper()
        if modality and modality not in ("DX", "CR", "DR", "RF", "MG"):
            continue
        views.append(_measure_view(s, exam, params, sink))
    if not views:
        why = _bi("检查中没有可用的X线投照片", "the exam has no usable radiograph")
        for dim in DIMENSIONS_MEASURED:
            out[dim] = DimensionResult(NOT_ASSESSABLE, {}, why)
    else:
        for dim in DIMENSIONS_MEASURED:
            out[dim] = _rollup(dim, views, params)
    if not params.get("known_code"):
        for dim in ("range",):
            if out[dim].value != NOT_ASSESSABLE:
                out[dim].details["note"] = _bi("检查项目未知，仅按通用解剖结构评估",
                                               "exam item unknown: generic anatomy checks only")
    for dim, (zh, en) in {"reconstruction": ("X线投照片无重建参数", "radiographs have no reconstruction parameters"),
                          "window": ("X线投照片无窗宽窗位预设要求", "radiographs have no window presets to check"),
                          "sequences": ("仅适用于MR检查", "applies to MR only")}.items():
        out[dim] = DimensionResult(NOT_APPLICABLE, {}, _bi(zh, en))
    return out
