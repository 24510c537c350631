"""Expected CT image noise for a series: the level a clean scan of this patient at this dose shows.

A fixed SD limit per kernel ignores the three things that set a clean scan's noise: patient size,
dose and slice thickness. Large patients, low-dose protocols and thin slices then read 异常 while
real excess noise on small or high-dose patients hides under the limit (R2's diagnosis, 2026-11-23:
the generator's excess-noise defect multiplies each patient's *own* level by 2.2-3.2). A physicist
judges noise against what the protocol should give; so does this module:

    expected SD = sd_ref[kernel] x (size / size_ref)^a x sqrt(CTDIref / CTDIvol) x sqrt(t_ref / t)

* ``size``: the body's effective diameter measured on the image (``size_measure``: ``effective``,
  the diameter of a circle of the body contour's area, or ``water_equivalent``, AAPM TG-220's D_w,
  which weighs each pixel by its attenuation); ``a`` per body region (``size_exponent``) since the
  head and a knee do not scale like a trunk;
* ``CTDIvol`` from the series header (the scan's dose), ``CTDIref`` the region's reference level
  (``dose.ctdivol_ref_by_region``): sd_ref is the noise of a reference-size patient scanned at the
  reference dose, what a department sets its protocols to;
* ``t``: the slice thickness (quantum noise falls as 1/sqrt of the photons per voxel).

The body series' verdict (ct.yaml noise.difference, CN 2026-11-24) uses ``size_measure: lean`` (the
fat-free diameter, :func:`lean_extents`) and ``size_law: exponential``: the size term is
exp(mu (D - D_ref) / 2) with water's mu (0.019 / mm), the photon count through D falling as
exp(-mu D); locally that is a power mu D / 2 of D (about 2.4 for a 250 mm trunk, 1.3 for a neck), so
one law serves neck and trunk. The CTDIvol term carries the dose the scanner's exposure control
already gave a larger patient.

The measured SD divided by this is the noise *ratio*; a ratio above the kernel's ``max_ratio`` is
excess noise. The ratio is reported beside the measured SD, the expected SD and the SD limit
(expected x max_ratio, in HU) so a reader sees the numbers a physicist would.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from radqc.pipelines.image_qc.measure_common import body_mask

__all__ = ["body_diameter", "lean_extents", "lean_diameter", "series_diameter", "expected_sd", "NoiseModel", "ctdivol_from_tube"]


def body_diameter(img: np.ndarray, spacing: tuple[float, float], measure: str = "effective") -> float | None:
    """Body diameter (mm) of one axial slice: ``effective`` = 2 sqrt(A / pi) of the body contour's area
    A; ``water_equivalent`` = AAPM TG-220 D_w = 2 sqrt(sum(HU / 1000 + 1) x pixel area / pi) over the
    contour (lung counts little, bone more). None without a body."""
    mask = body_mask(np.asarray(img))
    n = int(mask.sum())
    if n < 50:
        return None
    pixel = float(spacing[0]) * float(spacing[1])
    if measure == "water_equivalent":
        hu = np.clip(np.asarray(img, dtype=float)[mask], -1000.0, 3000.0)
        area = float(np.sum(hu / 1000.0 + 1.0)) * pixel
    else:
        area = n * pixel
    return 2.0 * math.sqrt(max(area, 0.0) / math.pi)


def lean_extents(img: np.ndarray, spacing: tuple[float, float], band_mm: float = 30.0, lean_hu: float = -40.0) -> tuple[float, float] | None:
    """Lateral and antero-posterior extent (mm) of the *lean* (fat-free) body of one axial slice: the
    slice's rows (columns) within ``band_mm`` of the body's centroid are averaged inside the body
    contour (noise falls by the square root of the rows averaged), and the extent is from the first to
    the last position above ``lean_hu`` (muscle and organs; subcutaneous fat reads about -100 HU). None
    without a body. Why lean: the subcutaneous fat layer attenuates little and varies from patient to
    patient independently of the trunk's size; on the generator's noise law it is not counted at all
    (held-out i9208: outer diameters correlate with the width scale at 0.1-0.7 only)."""
    arr = np.asarray(img, dtype=float)
    mask = body_mask(arr)
    if int(mask.sum()) < 200:
        return None
    ys, xs = np.nonzero(mask)
    # a body cut by the field of view (a spine's targeted FOV, truncation) reaches the reconstruction
    # circle: its extent is the FOV's, not the patient's
    # (within 2 px of the padding outside the circle, below -1500 HU, or of the image border)
    from scipy import ndimage

    h, w = arr.shape
    near = ndimage.binary_dilation(mask, iterations=2)
    if (near & (arr < -1500.0)).any() or ys.min() < 2 or xs.min() < 2 or ys.max() > h - 3 or xs.max() > w - 3:
        return None
    if np.hypot((ys - (h - 1) / 2.0) / (h / 2.0), (xs - (w - 1) / 2.0) / (w / 2.0)).max() > 0.98:
        return None
    cy, cx = int(ys.mean()), int(xs.mean())
    out: list[float] = []
    for axis, centre, pitch_across, pitch_along in ((0, cy, float(spacing[0]), float(spacing[1])), (1, cx, float(spacing[1]), float(spacing[0]))):
        half = max(2, int(band_mm / 2.0 / max(pitch_across, 1e-3)))
        sub = arr[max(centre - half, 0):centre + half + 1, :] if axis == 0 else arr[:, max(centre - half, 0):centre + half + 1].T
        inside = mask[max(centre - half, 0):centre + half + 1, :] if axis == 0 else mask[:, max(centre - half, 0):centre + half + 1].T
        rows = inside.sum(axis=0)
        profile = np.where(rows > 0, np.where(inside, sub, 0.0).sum(axis=0) / np.maximum(rows, 1), -1000.0)
        full = np.nonzero(rows == inside.shape[0])[0]
        if full.size < 5:
            return None
        # inward from the skin (its partial-volume pixel left out), the fat layer ends at the first
        # pixel that is not fat: lean tissue, or lung / gas where the chest wall's muscle is too thin
        # to show in the band average (a chest read the mediastinum's width otherwise: i9208 E00068)
        core = profile[full[0] + 1:full[-1]]
        lean = np.nonzero((core > lean_hu) | (core < -300.0))[0]
        if lean.size < 2:
            return None
        out.append(float(lean[-1] - lean[0] + 1) * pitch_along)
    return out[0], out[1]


def lean_diameter(img: np.ndarray, spacing: tuple[float, float]) -> float | None:
    """Geometric mean (mm) of the lean lateral and AP extents (:func:`lean_extents`): a diameter whose
    square is proportional to the fat-free cross-section."""
    got = lean_extents(img, spacing)
    return math.sqrt(got[0] * got[1]) if got else None


def series_diameter(hu: np.ndarray, spacing: tuple[float, float], slices: list[int], measure: str = "effective") -> float | None:
    """Median body diameter (mm) over the given slices of a stack (None when no slice shows a body);
    ``measure`` ``lean`` is :func:`lean_diameter`, else :func:`body_diameter`'s."""
    if measure == "lean":
        values = [d for d in (lean_diameter(hu[i], spacing) for i in slices) if d is not None]
        # a series cut by its FOV on most slices: the few uncut ones are its narrowest (apex, neck), no size
        return float(np.median(values)) if values and len(values) * 2 > len(slices) else None
    values = [d for d in (body_diameter(hu[i], spacing, measure) for i in slices) if d is not None]
    return float(np.median(values)) if values else None


def expected_sd(sd_ref: float, size: float | None, size_ref: float, exponent: float, ctdivol: float, ctdi_ref: float,
                thickness: float, thickness_ref: float = 5.0, attenuation_per_mm: float | None = None) -> float:
    """Expected clean-scan noise SD (HU); see the module docstring. ``size`` None (no body) or an
    exponent of 0 drops the size term. With ``attenuation_per_mm`` (mu) the size term is the
    exponential attenuation law, exp(exponent x mu x (size - size_ref) / 2): the photons reaching the
    detector through a diameter D fall as exp(-mu D), and the noise SD as their inverse square root;
    ``exponent`` is then the fraction of mu counted (1 for water-like lean tissue)."""
    if size and exponent and attenuation_per_mm:
        size_term = math.exp(exponent * float(attenuation_per_mm) * (size - size_ref) / 2.0)
    else:
        size_term = (size / size_ref) ** exponent if size and exponent else 1.0
    dose_term = math.sqrt(ctdi_ref / max(ctdivol, 1e-3))
    thick_term = math.sqrt(thickness_ref / max(thickness, 0.3))
    return sd_ref * size_term * dose_term * thick_term


class NoiseModel:
    """The ``noise.expected`` block of qc_rules/image_qc/ct.yaml, read once per exam."""

    def __init__(self, block: dict[str, Any] | None, dose: dict[str, Any] | None, scale: float = 1.0) -> None:
        b = dict(block or {})
        #: an item's protocol factor on every sd_ref (a low-dose screening accepts more noise: ct.yaml
        #: items.<code>.noise.expected_scale)
        self.scale = float(scale or 1.0)
        self.enabled = bool(b.get("enabled")) and bool(b.get("sd_ref_hu"))
        self.sd_ref: dict[str, float] = {str(k): float(v) for k, v in (b.get("sd_ref_hu") or {}).items()}
        self.size_ref = float(b.get("size_ref_mm", 300.0))
        #: size_law ``exponential`` (exp(a mu (D - D_ref) / 2), mu = attenuation_per_mm) or the power law (D / D_ref)^a
        self.attenuation = float(b.get("attenuation_per_mm", 0.019)) if b.get("size_law") == "exponential" else None
        #: a region's typical adult diameter (a neck is not a small trunk): size is judged against it
        self.size_ref_by_region: dict[str, float] = {str(k): float(v) for k, v in (b.get("size_ref_by_region_mm") or {}).items()}
        self.measure = str(b.get("size_measure", "effective"))
        self.exponent: dict[str, float] = {str(k): float(v) for k, v in (b.get("size_exponent") or {}).items()}
        self.max_ratio: dict[str, float] = {str(k): float(v) for k, v in (b.get("max_ratio") or {}).items()}
        self.thickness_ref = float(b.get("reference_thickness_mm", 5.0))
        #: CTDIvol per effective mAs (mGy), for a series whose header has no CTDIvol (dose not recorded):
        #: :func:`ctdivol_from_tube`; 0 = no estimate (the fixed limit applies)
        self.tube_mgy_per_mas = float(b.get("ctdivol_from_tube_mgy_per_mas", 0.0) or 0.0)
        d = dict(dose or {})
        self.ref_by_region: dict[str, float] = {str(k): float(v) for k, v in (d.get("ctdivol_ref_by_region") or {}).items()}
        self.ref_default = float(d.get("ctdivol_ref_mgy", 25.0))
        # a spine's dose is judged against the item's reference (ct.yaml dose.ref_from), but its noise
        # follows the dose the scan gave the region it crosses: the regions' references apply here
        self.ref_from_item = bool(b.get("ref_from_item", False)) and d.get("ref_from") == "item"
        #: ``localizer_size`` (ct.yaml noise.difference): where the axial series gives no size (a body cut
        #: by the FOV: a spine's targeted FOV, truncation), the AP localizer's body width w gives the size
        #: term (w / width_ref[region]) ^ exponent (:func:`localizer_width`); regions not listed keep none
        loc = dict(b.get("localizer_size") or {})
        self.loc_exponent = float(loc.get("exponent", 0.0) or 0.0)
        self.loc_width_ref: dict[str, float] = {str(k): float(v) for k, v in (loc.get("width_ref_mm") or {}).items()}
        lo, hi = (loc.get("term_range") or [0.0, float("inf")])[:2]
        self.loc_term_range = (float(lo), float(hi))

    def localizer_term(self, cls: str, region: str | None, width: float | None) -> float | None:
        """Size term of a series from the localizer's body width (mm): (width / width_ref) ^ exponent for
        a class the size law applies to (size_exponent > 0) in a region with a width_ref; else None."""
        if not width or not self.loc_exponent or self.exponent_for(cls, region) <= 0:
            return None
        ref = self.loc_width_ref.get(str(region))
        if not ref:
            return None
        term = (float(width) / ref) ** self.loc_exponent
        # a width far from any trunk's (a localizer row misread) gives no size rather than a wild one
        return term if self.loc_term_range[0] <= term <= self.loc_term_range[1] else None

    def ctdi_ref(self, region: str | None, acq_regions: list[str] | None = None) -> float:
        """The reference CTDIvol (mGy) of a series: the highest of its acquisition's regions when
        known, else its label region's, else the item's default (the dose dimension's rule)."""
        if self.ref_from_item:
            return self.ref_default
        covered = [r for r in (acq_regions or []) if r in self.ref_by_region]
        if covered:
            return max(self.ref_by_region[r] for r in covered)
        return self.ref_by_region.get(str(region), self.ref_default) if region else self.ref_default

    def exponent_for(self, cls: str, region: str | None) -> float:
        """Size exponent: ``class/region`` first, then region (head, knee: 0), kernel class, ``default``."""
        for key in (f"{cls}/{region}", str(region), cls, "default"):
            if key in self.exponent:
                return self.exponent[key]
        return 0.0

    def sd_ref_for(self, cls: str, region: str | None) -> float | None:
        """Reference noise (HU at 5 mm, reference size and dose) of a kernel class, ``class/region``
        first (a bone kernel on a knee: a small limb), else the class's."""
        for key in (f"{cls}/{region}", cls):
            if key in self.sd_ref:
                return self.sd_ref[key] * self.scale
        return None

    def limit(self, cls: str, region: str | None, size: float | None, ctdivol: float | None, ctdi_ref: float,
              thickness: float) -> tuple[float, float, float] | None:
        """(expected SD, max ratio, SD limit = expected x max ratio) in HU, or None when the model
        cannot apply (disabled, unknown kernel class, no CTDIvol in the header)."""
        sd_ref = self.sd_ref_for(cls, region)
        if not self.enabled or sd_ref is None or cls not in self.max_ratio or not ctdivol or ctdivol <= 0:
            return None
        size_ref = self.size_ref_by_region.get(str(region), self.size_ref)
        exp = expected_sd(sd_ref, size, size_ref, self.exponent_for(cls, region), float(ctdivol), ctdi_ref,
                          thickness, self.thickness_ref, self.attenuation)
        return exp, self.max_ratio[cls], exp * self.max_ratio[cls]


def ctdivol_from_tube(ds: Any, mgy_per_mas: float) -> float | None:
    """CTDIvol (mGy) estimated from the tube output in an image header when the scan's dose was not
    recorded: ``mgy_per_mas`` x XRayTubeCurrent (mA) x ExposureTime (s) / SpiralPitchFactor (1 for an
    axial scan), the scanner's CTDIvol per effective mAs. A physicist does the same with the scanner's
    nCTDIw table; ``mgy_per_mas`` is calibrated on series whose headers carry both (ct.yaml
    noise.ctdivol_from_tube_mgy_per_mas). None without tube current and exposure time, or with a zero
    coefficient (off)."""
    if not mgy_per_mas or ds is None:
        return None
    try:
        ma = float(ds.get("XRayTubeCurrent") or 0.0)
        seconds = float(ds.get("ExposureTime") or 0.0) / 1000.0
        pitch = float(ds.get("SpiralPitchFactor") or 1.0) or 1.0
    except (TypeError, ValueError):
        return None
    if ma <= 0 or seconds <= 0:
        return None
    return float(mgy_per_mas) * ma * seconds / pitch


def localizer_width(img: np.ndarray, row_z: np.ndarray, col_mm: float, z_lo: float, z_hi: float,
                    level: float = 0.25, saturated: float | None = None) -> float | None:
    """Lateral body width (mm) on an AP localizer (topogram) over the rows whose z lies in
    [``z_lo``, ``z_hi``]: on each row, the run around the row's peak down to ``level`` x the peak,
    edges interpolated between pixels; the median over the rows. The arms, apart from the trunk by a
    gap of air, are left out (the run stops at the first pixel under the level). A projection of an
    ellipse of half-width a falls to 0.25 of its peak at 0.97 a, whatever the scale the localizer's
    grey levels are stored at, so the width tracks the patient's, fat included. Used where the axial
    series cannot give a size (a spine's targeted FOV cuts the body): see ct.yaml noise.difference
    localizer_size. Rows holding a pixel at ``saturated`` (the stored maximum) are skipped: burned-in
    patient text is drawn at full white (seed 9161 E00039: a C-spine read 55 mm on its text rows).
    None without a row in range or a body."""
    a = np.asarray(img, dtype=float)
    rows = [i for i, z in enumerate(np.asarray(row_z, dtype=float)) if z_lo - 1e-6 <= z <= z_hi + 1e-6 and i < a.shape[0]]
    widths: list[float] = []
    for i in rows:
        row = a[i]
        if saturated is not None and float(row.max()) >= saturated:
            continue
        k = int(np.argmax(row))
        peak = float(row[k])
        if peak <= 0:
            continue
        cut = level * peak
        lo = k
        while lo > 0 and row[lo - 1] >= cut:
            lo -= 1
        hi = k
        while hi < row.size - 1 and row[hi + 1] >= cut:
            hi += 1
        if lo == 0 or hi == row.size - 1:
            continue  # the body reaches the localizer's edge: no width
        left = lo - (row[lo] - cut) / max(row[lo] - row[lo - 1], 1e-6)
        right = hi + (row[hi] - cut) / max(row[hi] - row[hi + 1], 1e-6)
        widths.append(float(right - left) * float(col_mm))
    return float(np.median(widths)) if widths else None


def exam_localizer_width(series_list: list[Any], z_lo: float, z_hi: float, cache: dict[str, Any] | None = None,
                         level: float = 0.25) -> float | None:
    """:func:`localizer_width` on the exam's AP localizers (ImageType LOCALIZER, coronal orientation),
    the first that covers [``z_lo``, ``z_hi``]; each localizer's one image is decoded once per exam
    (``cache`` key ``noise/localizers``; a 48-256 px image, a few ms). None without one."""
    store = cache if cache is not None else {}
    if "noise/localizers" not in store:
        found: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        for s in series_list:
            itype = [str(t).upper() for t in (getattr(getattr(s, "header", None), "image_type", None) or [])]
            if "LOCALIZER" not in itype:
                continue
            try:
                ds = s.datasets()[0]
                iop = [float(v) for v in ds.get("ImageOrientationPatient") or []]
                pos = [float(v) for v in ds.get("ImagePositionPatient") or []]
                ps = [float(v) for v in ds.get("PixelSpacing") or []]
                # AP (coronal) only: rows along x, columns along z
                if len(iop) != 6 or len(pos) != 3 or len(ps) != 2 or abs(iop[0]) < 0.99 or abs(iop[5]) < 0.99:
                    continue
                img = np.asarray(ds.pixel_array, dtype=float)
                if img.ndim != 2:
                    continue
                row_z = pos[2] + np.arange(img.shape[0]) * ps[0] * iop[5]
                full = float((1 << int(ds.get("BitsStored") or 16)) - 1)
                found.append((img, row_z, ps[1], full))
            except Exception:  # noqa: BLE001 - an unreadable localizer gives no size
                continue
        store["noise/localizers"] = found
    for img, row_z, col_mm, full in store["noise/localizers"]:
        got = localizer_width(img, row_z, col_mm, z_lo, z_hi, level, full)
        if got is not None:
            return got
    return None
