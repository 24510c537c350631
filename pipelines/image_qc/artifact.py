"""Artifact dimension (伪影): 无 / 运动 (motion) / 设备 (equipment) / 异物 (foreign object).

Why classical features first: every artifact the tender names has a physical signature that
can be measured and shown to a doctor (a bright metal object with streaks radiating from it,
a body touching the reconstruction circle with a bright rim, a ghost band outside the body
outline, phase-encode ghosts in the MR background, grid lines as a periodic column pattern).
The measured features are the evidence; the learned detector (``radqc.models.artifact``) only
weighs the same features, so a finding always points at a slice and a measured value.

Per series: features per slice/image -> series features -> scores per class -> value.
Roll-up over series: the strictest value (any motion/equipment/foreign-object finding), with
the severity order of the scoring table (运动 > 设备 > 异物 > 无).

Thresholds are data: ``qc_rules/image_qc/artifact.yaml`` (:data:`DEFAULTS`); the item's image-QC
data (``qc_rules/image_qc/*.yaml`` key ``artifact:``) may override any of them through ``params``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage as ndi

from radqc.pipelines.image_qc import ct_motion
from radqc.pipelines.image_qc.ct_artifact_rules import (
    bright_outlier,
    outside_air,
    padding_mask,
    series_edge,
    series_truncation,
    streak_in_air,
)

# scipy's hole filling, opening and closing, identical pixel for pixel and several times faster
from radqc.pipelines.image_qc.measure_common import binary_closing, binary_opening, fill_holes
from radqc.pipelines.image_qc.types import (
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    DimensionResult,
    Evidence,
    EvidenceSink,
    ExamImages,
    Finding,
    SeriesImages,
)

log = logging.getLogger(__name__)

CHECK_ID = "IQC-ARTIFACT"
DIMENSION = "artifact"
#: classes of the detector, in the order of the learned model's outputs
CLASSES = ("none", "motion", "equipment", "foreign_object")
VALUE_OF = {"none": "无", "motion": "运动", "equipment": "设备", "foreign_object": "异物"}
#: strictest first (the scoring table's severity order: 运动 > 设备 > 异物 > 无)
SEVERITY = ("运动", "设备", "异物", "无")
RADIOGRAPH_MODALITIES = ("DX", "CR", "DR", "RF", "MG", "XA")
#: MR object level, as a fraction of the 99.5th percentile (see :func:`mr_slice_features`)
MR_OBJECT_LEVEL = 0.5

#: the limits' data file (``defaults``): every classical threshold, with where it was chosen
PARAMS_FILE = Path(__file__).resolve().parents[2] / "qc_rules" / "image_qc" / "artifact.yaml"


@functools.lru_cache(maxsize=1)
def load_defaults() -> dict[str, Any]:
    """The artifact limits of ``qc_rules/image_qc/artifact.yaml`` (its ``defaults``).

    Why a file: the limits are department data (a finding quotes them as evidence), so they
    change without code; an item's ``artifact:`` params override them key by key. Falls back
    to the installed ``radqc.qc_rules`` package when the source tree layout is not there."""
    path = PARAMS_FILE
    if not path.is_file():  # installed layout: qc_rules is the radqc.qc_rules package
        import importlib

        package = importlib.import_module("radqc.qc_rules")
        path = Path(str(package.__file__)).resolve().parent / "image_qc" / "artifact.yaml"
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return dict(data.get("defaults") or {})


#: Classical thresholds (qc_rules/image_qc/artifact.yaml; the item's ``artifact:`` params override them).
DEFAULTS: dict[str, Any] = load_defaults()


@dataclass
class SeriesArtifact:
    """One series: its measured features, class scores, value and the slice to show."""

    series_uid: str | None
    modality: str
    features: dict[str, float]
    scores: dict[str, float]
    value: str
    kind: str | None = None
    slice_index: int | None = None
    box: list[float] | None = None
    measured: float | None = None
    limit: float | None = None
    method: str = "classical"
    image: Any = None  # the 2-D slice the evidence shows (not serialised)
    window: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"series_uid": self.series_uid, "modality": self.modality, "value": self.value, "kind": self.kind,
                "scores": {k: round(v, 4) for k, v in self.scores.items()}, "slice_index": self.slice_index,
                "measured": self.measured, "limit": self.limit, "method": self.method,
                "features": {k: round(float(v), 4) for k, v in self.features.items()}}


# ------------------------------------------------------------------------------ pixels


def _num(value: Any, default: float) -> float:
    try:
        v = float(value)
        return v if math.isfinite(v) else default
    except (TypeError, ValueError):
        return default


def _slices(series: SeriesImages, max_slices: int, use_volume: bool = True) -> tuple[list[np.ndarray], list[int], Any]:
    """Rescaled 2-D slices (HU for CT), their indices in the series, and the first dataset.

    CT/MR stacks come from ``series.volume()`` when it builds: the runner decodes a series once
    and shares the volume between measures, so the artifact measure adds no decoding (the
    slice index is the volume frame's instance index, i.e. the order of ``datasets()``).
    Otherwise ``series.datasets()`` (sorted, with pixels) are decoded; multi-frame instances
    give their frames."""
    from radqc.dicom.volume import decode

    if use_volume:
        try:
            vol = series.volume()
            import SimpleITK as sitk

            arr = sitk.GetArrayViewFromImage(vol.image)
            n = arr.shape[0]
            ks = np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int)) if n else []
            # copies: ``arr`` is a view into the SimpleITK buffer, freed with ``vol`` when the
            # series builds a fresh volume per call (float32 volumes were read back as garbage/NaN)
            out_v = [np.array(arr[int(k)], dtype=np.float32, copy=True) for k in ks]
            idx_v = [int(vol.frames[int(k)].dataset_index) for k in ks]
            if out_v:
                return out_v, idx_v, vol.datasets[0] if vol.datasets else None
        except Exception:  # noqa: BLE001 - not a volume (DWI b-values, mixed sizes...): decode below
            pass
    datasets = series.datasets()
    frames: list[tuple[int, Any, np.ndarray | None]] = []
    for i, ds in enumerate(datasets):
        frames.append((i, ds, None))
    if len(frames) > max_slices:
        pick = np.unique(np.linspace(0, len(frames) - 1, max_slices).round().astype(int))
        frames = [frames[int(i)] for i in pick]
    out: list[np.ndarray] = []
    idx: list[int] = []
    first = datasets[0] if datasets else None
    for i, ds, _ in frames:
        try:
            arr = decode(ds)
        except Exception as exc:  # noqa: BLE001 - one truncated/corrupt instance: read the others
            # (ingest quarantines the file with its reason; here it only costs this slice. Raising
            # dropped the whole series from the artifact stage: 7 exams in 15 synthetic sets lost
            # a ghosted or metal series to one truncated file, helper MRA3, session 21)
            log.info("artifact: slice %d of series %s not decodable (%s): skipped", i,
                     getattr(series.header, "series_uid", "?"), exc)
            continue
        slope, icpt = _num(ds.get("RescaleSlope"), 1.0), _num(ds.get("RescaleIntercept"), 0.0)
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(icpt)
        if arr.ndim == 3 and int(_num(ds.get("SamplesPerPixel"), 1)) == 1:
            for f in range(arr.shape[0]):
                out.append(arr[f])
                idx.append(i)
        elif arr.ndim == 2:
            out.append(arr)
            idx.append(i)
    return out, idx, first


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = ndi.sum(mask, lab, index=np.arange(1, n + 1))
    return np.asarray(lab == int(np.argmax(sizes)) + 1)


# ------------------------------------------------------------------------------ CT

#: angular sectors round the body centroid for :func:`ct_ghost_axis`, and the band's reach (px)
GHOST_AXIS_SECTORS = 16
GHOST_AXIS_REACH = 6


def ct_ghost_axis(hu: np.ndarray, solid: np.ndarray, dist_edge: np.ndarray) -> tuple[float, float, float]:
    """The edge-doubling band's modulation along one axis: (amplitude in px, the harmonic's phase
    in rad = twice the axis angle, so an axis and its reverse agree,
    1.0 when measured / 0.0 when too few sectors are clear of the field circle).

    Why: a patient moving during the rotation adds a displaced copy of the slice (the generator's
    ``motion_double``: the slice shifted 4-9 mm at weight 0.35-0.5). Along the shift the body edge
    doubles on both sides — a ghost outside the outline on one side, the dimmed original edge on
    the other, both at -780..-300 HU — while across it nothing changes, so the band's width round
    the body goes as |cos(angle - shift axis)|: a second angular harmonic. A blurring kernel widens
    every edge alike (no harmonic), and where the body meets the field-of-view circle the sectors
    are left out (their band is the cut, not a ghost). Measured per sector as band pixels per
    outline pixel, only the band that runs out from the outline (not the table nor noise specks),
    fitted by a0 + first + second harmonic over the sectors clear of the circle (at least half)."""
    nsec, reach = GHOST_AXIS_SECTORS, GHOST_AXIS_REACH
    if not solid.any():
        return 0.0, 0.0, 0.0
    ny, nx = hu.shape
    yy, xx = np.ogrid[:ny, :nx]
    outline = solid & ~ndi.binary_erosion(solid)
    ring = ndi.binary_dilation(solid, iterations=reach) & ~solid
    mid = ring & (hu > -780) & (hu < -300) & (dist_edge > 2)
    seed = mid & ndi.binary_dilation(solid)
    mid = ndi.binary_propagation(seed, mask=mid) if seed.any() else seed
    cy, cx = ndi.center_of_mass(solid)
    ang = np.arctan2(yy - cy, xx - cx)
    sec = ((ang + np.pi) / (2 * np.pi) * nsec).astype(int) % nsec
    ol = np.bincount(sec[outline], minlength=nsec).astype(float)
    clear = np.bincount(sec[outline & (dist_edge > reach + 2)], minlength=nsec).astype(float)
    band = np.bincount(sec[mid], minlength=nsec).astype(float)
    valid = (ol >= 2) & (clear >= 0.95 * ol)
    if valid.sum() < nsec // 2:
        return 0.0, 0.0, 0.0
    w = band[valid] / ol[valid]
    th = ((np.arange(nsec) + 0.5) / nsec * 2 * np.pi - np.pi)[valid]
    design = np.stack([np.ones_like(th), np.cos(th), np.sin(th), np.cos(2 * th), np.sin(2 * th)], 1)
    coef, *_ = np.linalg.lstsq(design, w, rcond=None)
    return float(np.hypot(coef[3], coef[4])), float(np.arctan2(coef[4], coef[3])), 1.0


def ct_ghost_axis_coherence(per: Sequence[dict[str, float]]) -> float:
    """The series' motion-axis coherence (px): the longest mean second-harmonic vector over a run
    of consecutive slices (a fifth and a third of the series), minus the median slice amplitude.

    Why: motion moves one contiguous part of the scan (25-50% of the slices) along one axis, so
    its slices' band harmonics add up in one direction; a body shape or the field circle gives
    harmonics of random axis from slice to slice (or on every slice alike: the median removes it)."""
    if not per:
        return 0.0
    a2 = np.array([x.get("ghost_axis", 0.0) for x in per])
    z = a2 * np.exp(1j * np.array([x.get("ghost_axis_phi", 0.0) for x in per]))
    n, best = len(z), 0.0
    for run in (max(2, n // 5), max(3, n // 3)):
        if run > n:
            continue
        mean = np.convolve(z, np.ones(run) / run, mode="valid")
        best = max(best, float(np.abs(mean).max()) - float(np.median(a2)))
    return best


def ct_slice_features(hu: np.ndarray, p: dict[str, Any]) -> dict[str, float]:
    """Metal, streak, truncation-rim and edge-doubling measures of one CT slice (HU).

    Slices wider than ``ct_work_px`` are measured on a block-averaged copy (the features are
    defined at the detector's training scale, ~64-128 px, and a 512² slice would cost 16x the
    time); metal is found on the full-resolution slice so small implants are not averaged away.
    Positions (``metal_r``/``metal_c``) are returned in full-resolution pixels."""
    work = int(p.get("ct_work_px", 128))
    factor = max(1, hu.shape[1] // work) if hu.shape[1] > work * 1.25 else 1
    full = hu
    full_metal = hu >= float(p["ct_metal_hu"])
    if factor > 1:
        h, w = hu.shape[0] // factor * factor, hu.shape[1] // factor * factor
        metal = full_metal[:h, :w].reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))
        hu = hu[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
        hu = np.where(metal, np.maximum(hu, float(p["ct_metal_hu"])), hu)
    else:
        metal = full_metal
    ny, nx = hu.shape
    body = fill_holes(hu > -400)
    body = _largest(body) if body.any() else body
    body_px = float(body.sum())
    f: dict[str, float] = {"body_px": body_px, "scale": float(factor)}
    n_metal = float(metal.sum())
    f["metal_px"] = n_metal
    f["metal_inside"] = 0.0
    f["streak"] = 0.0
    f["metal_r"], f["metal_c"] = -1.0, -1.0
    # a metal object touching the air around the patient lies on the skin (a button, an ECG electrode,
    # a hairpin: 异物); an implant is wrapped in tissue or lung (设备: lung is inside the filled body
    # outline, so it does not count as outside air). The generator's foreign objects are 2-3 mm
    # outside the skin and often too small (2 px at 128 px) for ct_metal_min_px: every metal pixel counts.
    # Outside air is air connected to the slice's border, not the padding of a targeted field nor the
    # dark streak bands inside the patient (outside_air: screws read 0.3-0.7 without it, 9208 E00244)
    f["metal_air"] = 0.0
    if n_metal >= 1:
        ring = ndi.binary_dilation(metal, iterations=2) & ~metal & ~padding_mask(hu)
        if ring.any():
            f["metal_air"] = float((ring & outside_air(hu) & ~body).sum()) / float(ring.sum())
        # streaks of the metal in the outside air (full resolution): an implant's, not a button's
        f["streak_air"] = streak_in_air(full, float(p["ct_metal_hu"]))
        rr0, cc0 = np.nonzero(metal)
        f["metal_r"], f["metal_c"] = float(rr0.mean()), float(cc0.mean())  # where the evidence box goes
    # body noise baseline: high-pass residual SD inside the eroded body
    med = ndi.median_filter(hu, size=5)
    resid = hu - med
    core = ndi.binary_erosion(body, iterations=3) & ~ndi.binary_dilation(metal, iterations=3)
    # robust (MAD) noise: streaks are sparse lines, so they barely move the median deviation
    base_sd = float(np.median(np.abs(resid[core])) * 1.4826) if core.sum() > 30 else 20.0
    base_sd = max(base_sd, 3.0)
    if n_metal >= float(p["ct_metal_min_px"]):
        core_body = ndi.binary_erosion(body, iterations=max(2, int(round(nx * 0.03))))
        f["metal_inside"] = float((metal & core_body).sum()) / n_metal
        rr, cc = np.nonzero(metal)
        cr, ccol = float(rr.mean()), float(cc.mean())
        f["metal_r"], f["metal_c"] = cr, ccol
        yy, xx = np.ogrid[:ny, :nx]
        dist = np.hypot(yy - cr, xx - ccol)
        ann = (dist > 3) & (dist < max(8.0, 0.3 * nx)) & body & ~ndi.binary_dilation(metal, iterations=3)
        if ann.sum() > 20:
            f["streak"] = float(np.std(resid[ann])) / base_sd
    # truncation: the body touching the reconstruction circle, with a bright rim
    r = (nx - 1) / 2.0
    yy, xx = np.ogrid[:ny, :nx]
    dist_edge = r - np.hypot(yy - (ny - 1) / 2.0, xx - r)
    band = (dist_edge >= 0) & (dist_edge < 2)
    inner = (dist_edge >= 3) & (dist_edge < 8)
    tissue = hu > -400
    f["rim_touch"] = float((band & tissue).sum()) / max(float(band.sum()), 1.0)
    f["rim_excess"] = 0.0
    if (band & tissue).sum() >= 5 and (inner & tissue).sum() >= 5:
        f["rim_excess"] = float(np.median(hu[band & tissue]) - np.median(hu[inner & tissue]))
    # edge doubling: width of the intermediate-HU band just outside the body outline
    solid = fill_holes(hu > -300)
    solid = _largest(solid) if solid.any() else solid
    outline = solid & ~ndi.binary_erosion(solid)
    ring = ndi.binary_dilation(solid, iterations=4) & ~solid & (dist_edge > 2)
    mid = ring & (hu > -850) & (hu < -300)
    f["ghost_width"] = float(mid.sum()) / max(float(outline.sum()), 1.0)
    # the band's modulation along one axis (motion doubles edges along its shift only)
    f["ghost_axis"], f["ghost_axis_phi"], f["ghost_axis_ok"] = ct_ghost_axis(hu, solid, dist_edge)
    f["base_sd"] = base_sd
    if factor == 1:
        f["hu_max"] = float(hu[body].max()) if body.any() else float(hu.max())
    else:  # the full-resolution maximum over the body's blocks
        big = np.repeat(np.repeat(body, factor, axis=0), factor, axis=1)
        part = full[:big.shape[0], :big.shape[1]]
        f["hu_max"] = float(part[big].max()) if big.any() else float(full.max())
    if factor > 1 and f["metal_r"] >= 0:
        f["metal_r"], f["metal_c"] = f["metal_r"] * factor + factor / 2, f["metal_c"] * factor + factor / 2
    return f


def ct_series_features(slices: Sequence[np.ndarray], p: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Series-level CT features (maxima, quantiles and contrasts over slices)."""
    per = [ct_slice_features(s, p) for s in slices]
    if not per:
        return {}, per
    metal = np.array([x["metal_px"] for x in per])
    streak = np.array([x["streak"] for x in per])
    inside = np.array([x["metal_inside"] for x in per])
    has_metal = metal >= float(p["ct_metal_min_px"])
    touch = np.array([x["rim_touch"] for x in per])
    excess = np.array([x["rim_excess"] for x in per])
    ghost = np.array([x["ghost_width"] for x in per])
    bodyp = np.array([x["body_px"] for x in per])
    valid = bodyp > 0.02 * slices[0].size
    g = ghost[valid] if valid.sum() >= 3 else ghost
    q25, q50, q90 = (float(np.quantile(g, q)) for q in (0.25, 0.5, 0.9))
    feats = {
        "metal_px_max": float(np.log1p(metal.max())),
        "metal_slice_frac": float(has_metal.mean()),
        "streak_max": float(streak[has_metal].max()) if has_metal.any() else 0.0,
        "streak_med": float(np.median(streak[has_metal])) if has_metal.any() else 0.0,
        "metal_inside_mean": float(inside[has_metal].mean()) if has_metal.any() else 0.0,
        "metal_air_max": float(max(x.get("metal_air", 0.0) for x in per)),
        "streak_air_max": float(max(x.get("streak_air", 0.0) for x in per)),
        "rim_touch_max": float(touch.max()),
        "rim_touch_frac": float((touch > float(p["ct_rim_touch"])).mean()),
        "rim_excess_max": float(excess[touch > 0.02].max()) if (touch > 0.02).any() else 0.0,
        "ghost_q90": q90,
        "ghost_q50": q50,
        "ghost_contrast": q90 - q25,
        "ghost_hi_frac": float((g > max(q50 * 1.5, q50 + 0.5)).mean()),
        "n_slices": float(len(per)),
    }
    # a bright object on a few slices only: the slice maximum far above the series' usual maximum
    hu_max = np.array([x["hu_max"] for x in per])
    feats["hu_outlier"] = float(np.log1p(max(0.0, float(hu_max.max() - np.median(hu_max)))))
    touching = touch > 0.05
    feats["rim_excess_med"] = float(np.median(excess[touching])) if touching.any() else 0.0
    feats["rim_touch_med"] = float(np.median(touch))
    # motion along one axis on a run of slices (not read by the learned net; see _ct_soft_motion_rule)
    feats["ghost_axis_coh"] = ct_ghost_axis_coherence(per)
    feats["ghost_axis_measured"] = float(np.mean([x.get("ghost_axis_ok", 0.0) for x in per]))
    # the displaced copy's echo in the slices' cepstra, on a run of slices (not read by the learned
    # net; see ct_motion.py and _ct_echo_motion_rule)
    feats.update(ct_motion.series_echo(slices, int(p.get("ct_work_px", 128))))
    # the same echo read on the slices' signal band only (noise and blur; see series_echo_weighted)
    feats.update(ct_motion.series_echo_weighted(slices, int(p.get("ct_work_px", 128))))
    return feats, per


def ct_classify(feats: dict[str, float], per: list[dict[str, float]], p: dict[str, Any]) -> tuple[str, str | None, dict[str, float], int | None, float | None, float | None]:
    """Classical decision: (class, kind, scores, slice position, measured, limit)."""
    scores = {"motion": 0.0, "equipment": 0.0, "foreign_object": 0.0}
    streak_lim, touch_lim = float(p["ct_streak_ratio"]), float(p["ct_rim_touch"])
    metal = feats.get("metal_px_max", 0.0) > math.log1p(float(p["ct_metal_min_px"]))
    scores["equipment"] = max(_sig(feats.get("streak_max", 0.0), streak_lim, 0.3) if metal else 0.0,
                              _sig(feats.get("rim_touch_max", 0.0), touch_lim, 0.03) * _sig(feats.get("rim_excess_max", 0.0), float(p["ct_rim_excess_hu"]), 20))
    if metal:
        on_skin = feats.get("metal_inside_mean", 0.0) < float(p["ct_inside_fraction"])
        no_streak = feats.get("streak_max", 0.0) < streak_lim
        scores["foreign_object"] = 0.9 if (on_skin or no_streak) else 0.3
        if on_skin:
            scores["equipment"] = min(scores["equipment"], 0.4)
    scores["motion"] = _sig(feats.get("ghost_contrast", 0.0), float(p["ct_ghost_contrast"]), 0.15) * _sig(feats.get("ghost_q90", 0.0), float(p["ct_ghost_width_px"]), 0.3)
    cls = max(scores, key=lambda k: scores[k])
    if scores[cls] < 0.5:
        return "none", None, scores, None, None, None
    if cls == "motion":
        k = int(np.argmax([x["ghost_width"] for x in per]))
        return cls, "ghosting", scores, k, round(per[k]["ghost_width"], 3), float(p["ct_ghost_width_px"])
    if cls == "foreign_object":
        k = int(np.argmax([x["metal_px"] for x in per]))
        return cls, "foreign_object", scores, k, round(per[k]["metal_px"], 1), float(p["ct_metal_min_px"])
    if metal and feats.get("streak_max", 0.0) >= streak_lim:
        k = int(np.argmax([x["streak"] for x in per]))
        return cls, "metal", scores, k, round(per[k]["streak"], 3), streak_lim
    k = int(np.argmax([x["rim_touch"] for x in per]))
    return cls, "truncation", scores, k, round(per[k]["rim_touch"], 3), touch_lim


# ------------------------------------------------------------------------------ MR


#: k-space line periods of the phase errors a moving patient causes (ghost replicas every N/P rows)
GHOST_PERIODS = (3, 4, 5, 6)


def ghost_replica_peak(img: np.ndarray, axis: int, periods: Sequence[int] = GHOST_PERIODS) -> float:
    """Height of the circular autocorrelation peak at lag N/P along the phase-encode ``axis``.

    Why: periodic phase errors on every P-th k-space line (breathing, swallowing, a patient who
    moves during the acquisition) replicate the whole object at shifts of N/P pixels along the
    phase-encode axis, wrapping round the field. Where the object fills the field along that
    axis (sagittal spines, knees) the replicas land on the object itself and no background is
    left to measure them in (:func:`mr_slice_features` ``ghost`` reads 0 there). The replicas
    are exact shifted copies, so the band-passed image correlates with itself at exactly that
    lag; anatomy gives a smooth autocorrelation with no sharp peak there. Structure that is
    constant along the axis (a spine running the whole field) is removed first, as it
    correlates at every lag. Returns the peak minus the mean of its two flanks' minima at
    3-5 px (0: no replica), the largest over ``periods``."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 2 or min(a.shape) < 24:
        return 0.0
    band = ndi.gaussian_filter(a, 1.0) - ndi.gaussian_filter(a, 4.0)
    band = band - band.mean(axis=axis, keepdims=True)
    n = a.shape[axis]
    spec = np.fft.fft(band, axis=axis)
    # the sum over the other axis before the inverse transform (linear: the same autocorrelation
    # to ~1e-16, one 1-D transform instead of one per column; speed only)
    ac = np.real(np.fft.ifft((np.abs(spec) ** 2).sum(axis=1 - axis)))
    if ac[0] <= 0:
        return 0.0
    ac = ac / ac[0]
    best = 0.0
    for period in periods:
        lag = int(round(n / period))
        if lag < 8:
            continue
        peak = max(ac[(lag + d) % n] for d in (-1, 0, 1))
        flank = 0.5 * (min(ac[(lag + d) % n] for d in (-5, -4, -3)) + min(ac[(lag + d) % n] for d in (3, 4, 5)))
        best = max(best, float(peak - flank))
    return best


#: susceptibility void with its pile-up crescent (see :func:`mr_crescent_void`): darker than this
#: fraction of the body median, a crescent brighter than this multiple of the body's 98th percentile,
#: within this many pixels along the frequency-encode axis (qc_rules/image_qc/artifact.yaml
#: ``mr_void_dark``, ``mr_crescent_level``, ``mr_crescent_px``; module-wide, as the per-slice
#: features are computed before an item's params are known)
MR_VOID_DARK = float(DEFAULTS.get("mr_void_dark", 0.3))
MR_CRESCENT_LEVEL = float(DEFAULTS.get("mr_crescent_level", 1.3))
MR_CRESCENT_PX = int(DEFAULTS.get("mr_crescent_px", 3))
#: the void's tissue mask (see :func:`mr_tissue_mask`): smoothed signal above this fraction of the
#: 99.5th percentile, and slices whose tissue is rougher than this (median neighbour difference /
#: median tissue) are noise, not anatomy (artifact.yaml ``mr_tissue_level``, ``mr_tissue_rough``)
MR_TISSUE_LEVEL = float(DEFAULTS.get("mr_tissue_level", 0.15))
MR_TISSUE_ROUGH = float(DEFAULTS.get("mr_tissue_rough", 0.25))


def _beside_void(obj: np.ndarray, bright: np.ndarray, fax: int, width: int) -> bool:
    """Whether a bright pixel lies within ``width // 2`` px of the void ``obj`` along axis ``fax``
    and not between two of its pixels on the same line (a pile-up beside the void, not a bright
    structure inside a dark region)."""
    st = np.ones((1, width), bool) if fax == 1 else np.ones((width, 1), bool)
    cand = ndi.binary_dilation(obj, structure=st) & ~obj & bright
    if not cand.any():
        return False
    o, c = (obj, cand) if fax == 1 else (obj.T, cand.T)
    has = o.any(axis=1)
    lo = np.where(has, np.argmax(o, axis=1), 0)
    hi = np.where(has, o.shape[1] - 1 - np.argmax(o[:, ::-1], axis=1), -1)
    rr, cc = np.nonzero(c)
    return bool((~((cc > lo[rr]) & (cc < hi[rr]))).any())


def mr_tissue_mask(img: np.ndarray) -> np.ndarray | None:
    """All tissue of one MR slice (not only the bright object the ghost measures use), holes
    filled, or None when the slice is noise (end slices of ADC/DWI maps).

    Why: the ghost measures' object (above 0.5 x the 99.5th percentile) leaves out grey muscle,
    fat-suppressed marrow and everything darker than a bright fluid: a knee's or a lumbar
    spine's implant void then lies outside that object and the crescent measure read 0 (9206
    E00089, E00168, E00279). Smoothed signal above ``MR_TISSUE_LEVEL`` x the 99.5th percentile
    keeps every tissue above the noise floor; a void inside it is a hole the fill closes."""
    a = np.asarray(img, dtype=np.float64)
    hi = float(np.percentile(a, 99.5))
    if hi <= 0:
        return None
    m = binary_opening(ndi.gaussian_filter(a, 1.0) > MR_TISSUE_LEVEL * hi, iterations=1)
    if m.sum() < 0.02 * m.size:
        return None
    body = fill_holes(binary_closing(_largest(m), iterations=2))
    inner = body[:, 1:] & body[:, :-1]
    d = np.abs(np.diff(a, axis=1))[inner]
    if d.size < 20 or float(np.median(d)) > MR_TISSUE_ROUGH * max(float(np.median(a[body])), 1e-6):
        return None
    return body


def mr_crescent_void(img: np.ndarray, body: np.ndarray, pe_axis: int | None, min_px: int = 8) -> tuple[float, list[float] | None]:
    """Largest susceptibility void of one slice, as a fraction of the body area, and its box.

    Why a crescent: a metal implant leaves a signal void larger than the object, shifted along
    the frequency-encode axis, and the displaced signal piles up in a bright crescent beside it
    (the generator: 1.8 x the 98th-percentile tissue; real scanners the same physics). The void
    itself holds only the noise floor, which on magnitude images reads about the old 0.06 x
    median darkness cut, so a strict cut missed it; CSF, cortical bone, sinus air and vessel
    flow voids are dark too, but nothing bright piles up beside them. A hole counts when it is
    darker than ``MR_VOID_DARK`` x the body median, has at least ``min_px`` pixels (a flow void
    is a few pixels) and a pixel above ``MR_CRESCENT_LEVEL`` x the body's 98th percentile lies
    within ``MR_CRESCENT_PX`` pixels of it along the frequency-encode axis (both axes when the
    phase-encode direction is unknown). The pile-up lies *beside* the void: a bright pixel with
    void on both sides of it along that axis (a bright eyeball or vessel inside a dark region,
    e.g. a lateral sagittal head slice, 9206 E00070) does not count."""
    if body.sum() < 50:
        return 0.0, None
    sig = float(np.median(img[body]))
    p98 = float(np.percentile(img[body], 98))
    core = ndi.binary_erosion(body, iterations=2)
    lab, n = ndi.label(core & (img < MR_VOID_DARK * sig))
    if not n:
        return 0.0, None
    width = 2 * MR_CRESCENT_PX + 1
    freq_axes = [1] if pe_axis == 0 else [0] if pe_axis == 1 else [1, 0]
    bright = img > MR_CRESCENT_LEVEL * p98
    best, box = 0.0, None
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        # the component's neighbourhood only (a padded window), not the whole slice
        r0, r1 = max(sl[0].start - MR_CRESCENT_PX, 0), sl[0].stop + MR_CRESCENT_PX
        c0, c1 = max(sl[1].start - MR_CRESCENT_PX, 0), sl[1].stop + MR_CRESCENT_PX
        obj = lab[r0:r1, c0:c1] == i
        area = float(obj.sum())
        if area < min_px:
            continue
        if not any(_beside_void(obj, bright[r0:r1, c0:c1], fax, width) for fax in freq_axes):
            continue
        frac = area / float(body.sum())
        if frac > best:
            best, box = frac, [float(sl[0].start), float(sl[1].start), float(sl[0].stop), float(sl[1].stop)]
    return best, box


def mr_slice_features(img: np.ndarray, pe_axis: int | None, min_void_px: int = 8) -> dict[str, float]:
    """Phase-encode ghosting and susceptibility-void measures of one MR slice."""
    hi = float(np.percentile(img, 99.5))
    f = {"ghost": 0.0, "ghost_any": 0.0, "void_frac": 0.0, "bg_ratio": 0.0, "void_crescent": 0.0}
    if hi <= 0:
        return f
    # replicas need no background (the object may fill the field): unknown axis -> the larger of both
    f["ghost_lag"] = (ghost_replica_peak(img, pe_axis) if pe_axis in (0, 1)
                      else max(ghost_replica_peak(img, 0), ghost_replica_peak(img, 1)))
    # susceptibility void inside all tissue (mr_tissue_mask), not only inside the bright object below
    tissue = mr_tissue_mask(img)
    if tissue is not None:
        f["void_crescent"], box = mr_crescent_void(img, tissue, pe_axis, min_void_px)
        if box is not None:
            f["void_r0"], f["void_c0"], f["void_r1"], f["void_c1"] = box
    # the object: the largest bright component (ghosts are fainter copies, kept out by the level).
    # At 0.35 x the 99.5th percentile, ghost copies of 0.2-0.4 x the object's signal joined the
    # object, which then spanned the whole phase-encode axis and left no background to measure
    # (ghost 0 on ghosted series); 0.5 keeps them out (validation 8201: 4/6 ghosted series
    # above every clean one instead of 2/6)
    body = fill_holes(binary_opening(img > MR_OBJECT_LEVEL * hi, iterations=1))
    if body.sum() < 0.02 * img.size:
        return f
    body = fill_holes(binary_closing(_largest(body), iterations=2))
    sig = float(np.median(img[body]))
    far = ~ndi.binary_dilation(body, iterations=max(2, img.shape[0] // 32))
    rows = np.nonzero(body.any(axis=1))[0]
    cols = np.nonzero(body.any(axis=0))[0]
    col_band = np.zeros_like(body)
    col_band[:, cols.min():cols.max() + 1] = True  # above/below the body: axis-0 ghosts land here
    row_band = np.zeros_like(body)
    row_band[rows.min():rows.max() + 1, :] = True  # left/right of the body: axis-1 ghosts land here
    a0 = far & col_band & ~row_band
    a1 = far & row_band & ~col_band
    bg = far & ~col_band & ~row_band
    m0 = float(img[a0].mean()) if a0.sum() > 10 else float("nan")
    m1 = float(img[a1].mean()) if a1.sum() > 10 else float("nan")
    mb = float(img[bg].mean()) if bg.sum() > 10 else float(np.nanmin([m0, m1, 0.0]))
    s = max(sig, 1e-6)
    g0 = (m0 - (m1 if math.isfinite(m1) else mb)) / s if math.isfinite(m0) else 0.0
    g1 = (m1 - (m0 if math.isfinite(m0) else mb)) / s if math.isfinite(m1) else 0.0
    f["ghost_any"] = max(g0, g1, 0.0)
    f["ghost"] = (g0 if pe_axis == 0 else g1) if pe_axis in (0, 1) else f["ghost_any"]
    f["bg_ratio"] = float(np.nanmax([m0, m1, mb])) / s if any(math.isfinite(v) for v in (m0, m1)) else 0.0
    # susceptibility void: compact dark holes inside the eroded body
    core = ndi.binary_erosion(body, iterations=max(2, img.shape[0] // 40))
    dark = core & (img < 0.06 * sig)
    if dark.any():
        lab, n = ndi.label(dark)
        sizes = ndi.sum(dark, lab, index=np.arange(1, n + 1))
        f["void_frac"] = float(sizes.max()) / float(body.sum())
    crescent, box = mr_crescent_void(img, body, pe_axis, min_void_px)
    if crescent > f["void_crescent"] and box is not None:  # the larger of the two objects' voids
        f["void_crescent"] = crescent
        f["void_r0"], f["void_c0"], f["void_r1"], f["void_c1"] = box
    return f


def mr_pe_axis(ds: Any) -> int | None:
    """Phase-encode axis of the image from InPlanePhaseEncodingDirection (COL: rows = axis 0)."""
    v = str(ds.get("InPlanePhaseEncodingDirection", "") or "").upper() if ds is not None else ""
    return 0 if v == "COL" else 1 if v == "ROW" else None


#: STIR: an inversion-recovery series whose inversion time is below this (ms) nulls fat (STIR
#: 130-180 ms at 1.5-3 T; FLAIR's 2000-2800 ms nulls fluid instead; artifact.yaml ``mr_stir_max_ti_ms``)
MR_STIR_MAX_TI_MS = float(DEFAULTS.get("mr_stir_max_ti_ms", 300.0))


def _mr_multi(ds: Any, tag: str) -> set[str]:
    """A multi-valued code string of the header as upper-case codes ("SE\\IR" or a list)."""
    v = ds.get(tag) if ds is not None else None
    if v is None:
        return set()
    vals = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else str(v).replace("\\", " ").split()
    return {str(x).strip().upper() for x in vals if str(x).strip()}


def mr_fat_suppressed(ds: Any) -> bool:
    """Whether a spin-echo MR series is fat-suppressed: STIR (ScanningSequence IR with
    InversionTime below ``MR_STIR_MAX_TI_MS``) or chemical fat saturation (ScanOptions FS),
    echo-planar series (ScanningSequence EP: DWI/ADC) excepted.

    Why: fat suppression turns fat dark beside bright fluid: orbital fat beside the vitreous,
    marrow beside CSF, which is what :func:`mr_crescent_void` looks for (a dark hole with a
    bright pile-up beside it along the read-out). Clean sagittal STIRs read crescent voids of
    0.014-0.035 on worn i9212/i9206, 8421, t8580 and t8710 (the eye beside the suppressed orbit),
    so the crescent needs a higher limit there (``_mr_void_rule``; a lumbar STIR whose screws read
    0.015, worn i9208 E00246, is lost with it). EPI is left out: its
    susceptibility void is the largest of any sequence and a DWI crescent was the only one
    above the limit in a clip exam (worn i9212 E00059, 0.023)."""
    seq = _mr_multi(ds, "ScanningSequence")
    if not seq or "EP" in seq:
        return False
    if "IR" in seq:
        try:
            ti = float(ds.get("InversionTime"))
        except (TypeError, ValueError):
            ti = float("nan")
        if ti < MR_STIR_MAX_TI_MS:
            return True
    return "FS" in _mr_multi(ds, "ScanOptions")


def mr_slice_plane(ds: Any) -> str | None:
    """axial / sagittal / coronal of the slice normal's nearest patient axis (the index stage's
    :func:`~radqc.pipelines.stages.index.scan_plane`; an oblique slice counts as its nearest
    plane), None without a usable orientation."""
    from radqc.pipelines.stages.index import PLANE_BY_AXIS, scan_plane

    try:
        o = [float(v) for v in ds.get("ImageOrientationPatient")]
        got = scan_plane(o[:6]) if len(o) >= 6 else None
    except Exception:  # noqa: BLE001 - absent or malformed: unknown
        return None
    if got is None or not np.isfinite(got[2]).all():
        return None
    return PLANE_BY_AXIS[int(np.argmax(np.abs(got[2])))]


#: ImageType values of a parameter map computed from other images (not acquired): see mr_computed_map
MR_COMPUTED_MAP_TYPES = frozenset({"ADC", "EADC", "FA", "T1_MAP", "T2_MAP"})


def mr_computed_map(ds: Any) -> bool:
    """Whether an MR series is a parameter map computed from other images (ImageType ADC, eADC,
    FA, T1/T2 map), not an acquired image.

    Why: the susceptibility pile-up is displaced signal of an acquisition; an ADC map is the log
    ratio of two diffusion images that carry the same void and the same pile-up, so the crescent
    cancels and the map shows none, while free water (CSF, high diffusivity) is its brightest
    tissue next to dark parenchyma and air. A clean enhanced brain's ADC map read a crescent void
    of 0.0138 (i9216 E00320, the exam's only crescent); the implant shows in the DWI it came from."""
    return bool(_mr_multi(ds, "ImageType") & MR_COMPUTED_MAP_TYPES)


def mr_header_features(ds: Any) -> dict[str, float]:
    """Header facts the MR artifact rules need beside the pixel measures: ``fat_suppressed``
    (:func:`mr_fat_suppressed`), ``plane_axial`` (1 axial, 0 sagittal/coronal, -1 unknown) and
    ``computed_map`` (:func:`mr_computed_map`)."""
    plane = mr_slice_plane(ds) if ds is not None else None
    return {"fat_suppressed": 1.0 if mr_fat_suppressed(ds) else 0.0,
            "plane_axial": -1.0 if plane is None else 1.0 if plane == "axial" else 0.0,
            "computed_map": 1.0 if ds is not None and mr_computed_map(ds) else 0.0}


def mr_series_features(slices: Sequence[np.ndarray], pe_axis: int | None, min_void_px: int = 8) -> tuple[dict[str, float], list[dict[str, float]]]:
    per = [mr_slice_features(s, pe_axis, min_void_px) for s in slices]
    if not per:
        return {}, per
    g = np.array([x["ghost"] for x in per])
    ga = np.array([x["ghost_any"] for x in per])
    v = np.array([x["void_frac"] for x in per])
    return {
        "ghost_med": float(np.median(g)), "ghost_q75": float(np.quantile(g, 0.75)), "ghost_any_med": float(np.median(ga)),
        "bg_ratio_med": float(np.median([x["bg_ratio"] for x in per])),
        "void_max": float(v.max()), "void_q90": float(np.quantile(v, 0.9)), "void_slice_frac": float((v > 0.002).mean()),
        "ghost_lag_med": float(np.median([x.get("ghost_lag", 0.0) for x in per])),
        "void_crescent_max": float(max(x.get("void_crescent", 0.0) for x in per)),
        # the same without the series' first and last slice (see _mr_void_rule; not a net input)
        "void_crescent_inner_max": float(max(x.get("void_crescent", 0.0) for x in (per[1:-1] if len(per) >= 3 else per))),
        "n_slices": float(len(per)),
    }, per


def mr_classify(feats: dict[str, float], per: list[dict[str, float]], p: dict[str, Any]) -> tuple[str, str | None, dict[str, float], int | None, float | None, float | None]:
    scores = {"motion": _sig(feats.get("ghost_q75", 0.0), float(p["mr_ghost_ratio"]), 0.02),
              "equipment": _sig(feats.get("void_max", 0.0), float(p["mr_void_px_frac"]), 0.001), "foreign_object": 0.0}
    cls = max(scores, key=lambda k: scores[k])
    if scores[cls] < 0.5:
        return "none", None, scores, None, None, None
    if cls == "motion":
        k = int(np.argmax([x["ghost"] for x in per]))
        return cls, "ghosting", scores, k, round(per[k]["ghost"], 4), float(p["mr_ghost_ratio"])
    k = int(np.argmax([x["void_frac"] for x in per]))
    return cls, "metal", scores, k, round(per[k]["void_frac"], 5), float(p["mr_void_px_frac"])


# ------------------------------------------------------------------------------ radiographs


def _field(img: np.ndarray) -> tuple[int, int, int, int]:
    """The exposed field: rows/columns with image structure (the collimated border is flat)."""
    rs = img.std(axis=1)
    cs = img.std(axis=0)
    thr_r = max(18.0, 0.15 * float(np.median(rs)))
    thr_c = max(18.0, 0.15 * float(np.median(cs)))
    rows = np.nonzero(rs > thr_r)[0]
    cols = np.nonzero(cs > thr_c)[0]
    if len(rows) < 16 or len(cols) < 16:
        return 0, 0, img.shape[0], img.shape[1]
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _comb(prof: np.ndarray, periods: range) -> float:
    """Strength of a strictly periodic pattern in a 1-D profile: the variance of the profile folded
    at period P, scaled so that noise gives about 1 (max over P)."""
    best = 0.0
    n = len(prof)
    var = float(np.var(prof))
    if var <= 0 or n < 24:
        return 0.0
    for per in periods:
        m = n // per * per
        folded = prof[:m].reshape(-1, per).mean(axis=0)
        best = max(best, float(np.var(folded)) * (m / per) / var)
    return best


def _phase_consistency(hp: np.ndarray) -> float:
    """Max over periods 2-8 of how often each row's brightest phase is the commonest one,
    rescaled so that chance gives 0 and a perfect grid 1."""
    best = 0.0
    nr, nc = hp.shape
    for per in range(2, 9):
        m = nc // per * per
        if m < 4 * per or nr < 8:
            continue
        folded = np.median(hp[:, :m].reshape(nr, m // per, per), axis=1)  # one edge column is not a grid
        arg = folded.argmax(axis=1)
        frac = float(np.bincount(arg, minlength=per).max()) / nr
        best = max(best, (frac - 1.0 / per) / (1.0 - 1.0 / per))
    return best


def dx_features(img: np.ndarray, p: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Foreign-object, grid-line and directional-blur measures of one radiograph (higher = denser).

    ``p``: the artifact limits (default :data:`DEFAULTS`); only the saturated-object count reads them."""
    lo, hi = np.percentile(img, [1, 99.9])
    r0, c0, r1, c1 = _field(img)
    sub = img[r0:r1, c0:c1].astype(np.float32)
    plo, phi = np.percentile(sub, [2, 99.5])
    scale = max(float(phi - plo), 1e-3)
    norm = (sub - plo) / scale
    feats: dict[str, float] = {}
    nr, nc = sub.shape
    # foreign objects: compact dense dots/discs (white top-hat), away from the field border (text,
    # markers) and counted apart from the central band (the spine's own dotted edges)
    inner = np.zeros_like(norm, dtype=bool)
    mr_, mc_ = max(2, int(nr * 0.08)), max(2, int(nc * 0.08))
    inner[mr_:nr - mr_, mc_:nc - mc_] = True
    lateral = inner.copy()
    lateral[:, int(nc * 0.42):int(nc * 0.58)] = False
    box: list[float] | None = None
    for size, tag in ((5, "s"), (9, "m")):
        tophat = norm - ndi.grey_opening(norm, size=(size, size))
        for t in (0.08, 0.15):
            bright = (tophat > t) & inner
            lab, n = ndi.label(bright)
            n_comp, n_lat, px = 0, 0, 0.0
            if n:
                for i, sl in enumerate(ndi.find_objects(lab), start=1):
                    h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
                    obj = lab[sl] == i
                    area = float(obj.sum())
                    if max(h, w) <= size and area / max(h * w, 1) >= 0.4:
                        n_comp += 1
                        px += area
                        cy, cx = sl[0].start + h // 2, sl[1].start + w // 2
                        if lateral[cy, cx]:
                            n_lat += 1
                            if tag == "m" and t == 0.15 and box is None:
                                box = [float(sl[0].start + r0), float(sl[1].start + c0), float(sl[0].stop + r0), float(sl[1].stop + c0)]
            feats[f"fo_{tag}{int(t * 100)}_n"] = float(np.log1p(n_comp))
            feats[f"fo_{tag}{int(t * 100)}_lat"] = float(np.log1p(n_lat))
            feats[f"fo_{tag}{int(t * 100)}_px"] = px / float(inner.sum())
    feats["fo_px_frac"] = feats["fo_m15_px"]
    n_sat, sat_box = dx_saturated_objects(sub, inner, p, img.size)
    feats["fo_sat_n"] = float(n_sat)
    # the same blobs at softer contrast limits (steel over the heart or spine stands less far above
    # its bright surroundings): read by _dx_object_rule only beside >= 2 strict blobs
    q = {**DEFAULTS, **(p or {})}
    if q.get("dx_sat_soft_tophat") is not None and n_sat:
        soft = {**q, "dx_sat_tophat": q["dx_sat_soft_tophat"], "dx_sat_step": q["dx_sat_soft_step"]}
        feats["fo_sat_soft_n"] = float(dx_saturated_objects(sub, inner, soft, img.size)[0])
    else:
        feats["fo_sat_soft_n"] = float(n_sat)
    if sat_box is not None and n_sat:
        sat_box = [sat_box[0] + r0, sat_box[1] + c0, sat_box[2] + r0, sat_box[3] + c0]
    # round dense objects (beads, buttons, electrodes): both Hessian eigenvalues strongly negative
    # (a rib or a vertebral edge is a line: one eigenvalue near zero), counted at local maxima
    for sigma, tag in ((1.2, "b1"), (3.0, "b3")):
        hrr = ndi.gaussian_filter(norm, sigma, order=(2, 0))
        hcc = ndi.gaussian_filter(norm, sigma, order=(0, 2))
        hrc = ndi.gaussian_filter(norm, sigma, order=(1, 1))
        lmax = (hrr + hcc) / 2 + np.sqrt(((hrr - hcc) / 2) ** 2 + hrc ** 2)
        blob = np.maximum(-lmax, 0) * sigma ** 2
        peaks = (blob == ndi.maximum_filter(blob, size=int(2 * sigma + 3))) & lateral
        vals = np.sort(blob[peaks])[::-1]
        for t in (0.015, 0.03, 0.06):
            feats[f"{tag}_n{int(t * 1000)}"] = float(np.log1p((vals > t).sum()))
        feats[f"{tag}_top5"] = float(vals[:5].mean()) if len(vals) else 0.0
        if tag == "b1" and len(vals) and vals[0] > 0.06 and box is None:
            rr, cc = np.nonzero(peaks & (blob >= vals[0]))
            box = [float(rr[0] + r0 - 4), float(cc[0] + c0 - 4), float(rr[0] + r0 + 5), float(cc[0] + c0 + 5)]
    feats.update(dx_grid_features(sub))
    # directional blur: gradient energy along the two axes on a 2x-averaged image (noise suppressed)
    small = sub[: nr // 2 * 2, : nc // 2 * 2]
    small = small.reshape(small.shape[0] // 2, 2, small.shape[1] // 2, 2).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, 0.7)
    gy = float(np.mean(np.abs(np.diff(small, axis=0)))) / scale
    gx = float(np.mean(np.abs(np.diff(small, axis=1)))) / scale
    feats["grad_y"], feats["grad_x"] = gy, gx
    feats["anisotropy"] = float(math.log(max(gy, 1e-6) / max(gx, 1e-6)))
    feats["sharp"] = float(math.log(max(gy + gx, 1e-6)))
    # fine-scale anisotropy (1-px differences on the full image): motion smears along one axis only
    fy = float(np.mean(np.abs(np.diff(norm, axis=0))))
    fx = float(np.mean(np.abs(np.diff(norm, axis=1))))
    feats["aniso_fine"] = float(math.log(max(fy, 1e-6) / max(fx, 1e-6)))
    # directional smear vs anatomy: how much larger 3-px than 1-px differences are, along rows vs
    # along columns. A smear of length L along one axis makes 1-px steps L times smaller there;
    # the anatomy's own edge orientation cancels (it scales both lags of an axis alike).
    sm = ndi.gaussian_filter(norm, 0.7)

    def lag_ratio(axis: int) -> float:
        a1 = float(np.mean(np.abs(np.diff(sm, axis=axis))))
        sl3 = [slice(None), slice(None)]
        sl0 = [slice(None), slice(None)]
        sl3[axis], sl0[axis] = slice(3, None), slice(None, -3)
        a3 = float(np.mean(np.abs(sm[tuple(sl3)] - sm[tuple(sl0)])))
        return a3 / max(a1, 1e-6)

    feats["smear_ratio"] = float(math.log(max(lag_ratio(0), 1e-6) / max(lag_ratio(1), 1e-6)))
    feats.update(directional_spectrum(sub))
    feats.update(dx_nyquist_smear(sub))
    feats.update(dx_text_free_spectrum(sub, feats["vspec_rel"]))
    feats["aspect"] = float(math.log(max(nr, 1) / max(nc, 1)))
    return feats, {"box": box, "sat_box": sat_box, "field": [r0, c0, r1, c1], "window": ((lo + hi) / 2.0, max(hi - lo, 1.0))}


def dx_grid_features(sub: np.ndarray) -> dict[str, float]:
    """The grid-line measures of :func:`dx_features` on its field ``sub`` (float32)."""
    feats: dict[str, float] = {}
    # grid lines: a strictly periodic pattern across columns (or rows), in every block of rows
    hp_x = sub - ndi.uniform_filter1d(sub, 7, axis=1)
    hp_y = sub - ndi.uniform_filter1d(sub, 7, axis=0)
    combs = []
    for hp, axis in ((hp_x, 0), (hp_y, 1)):
        blocks = np.array_split(hp, 3, axis=axis)
        combs.append(min(_comb(b.mean(axis=axis), range(2, 9)) for b in blocks))
    feats["grid_peak"] = float(np.log1p(max(combs)))
    # the same pattern row by row: grid lines put the brightest phase of every row at the same
    # column offset, anatomy edges (spine, rib ends) do not (robust where the anatomy is strong)
    feats["grid_rows"] = max(_phase_consistency(hp_x), _phase_consistency(hp_y.T))
    feats["grid_x"], feats["grid_y"] = float(np.log1p(combs[0])), float(np.log1p(combs[1]))
    return feats


def dx_native_features(img: np.ndarray) -> dict[str, float]:
    """The :data:`NATIVE_KEYS` of :func:`dx_features` alone (grid lines and the directional
    spectrum on the exposed field), without the foreign-object and blur measures the caller
    would discard: the native-resolution crop of :func:`dx_radiograph_features` (speed only;
    the same values as ``dx_features(img)[0]`` for these keys)."""
    r0, c0, r1, c1 = _field(img)
    sub = img[r0:r1, c0:c1].astype(np.float32)
    feats = dx_grid_features(sub)
    feats.update(directional_spectrum(sub))
    feats.update(dx_nyquist_smear(sub))
    feats.update(dx_text_free_spectrum(sub, feats["vspec_rel"]))
    return {k: feats[k] for k in NATIVE_KEYS}


def dx_saturated_objects(sub: np.ndarray, zone: np.ndarray, p: dict[str, Any] | None = None,
                         image_px: int | None = None) -> tuple[int, list[float] | None]:
    """Count of small saturated blobs in ``zone`` (the field without its border) and the first one's box.

    Why: steel attenuates ~40x water and is left out of the console's normalisation, so a bead,
    clip, button or electrode saturates near the image's maximum, while a rib or vertebral edge
    is a line and a bone island is faint. The older top-hat count (limit 100) counted every
    compact bright dot and a necklace's ~15 beads never reached it. Components must lie above
    ``dx_sat_level`` of the field's range (2nd percentile to maximum), reach ``dx_sat_peak``,
    stand out by ``dx_sat_tophat`` from their 9-px surroundings, be compact (``dx_sat_fill`` of
    their box) and small: at most ``dx_sat_max_frac`` of the field's area, a fraction so that the
    same button counts on a 192 px and a 256 px image (a 14 mm button is 24-32 px at 2.2 mm and
    ~50 px at 1.7 mm; the old 25 px cap dropped most buttons). ``image_px`` (the whole image's pixel
    count): on a tightly collimated field the cap is taken on ``dx_sat_max_image_share`` of the image
    instead (worn i9218 E00641: 18 mm ECG electrodes of 78-93 px on a 143x163 field of a 256 px image,
    cap 70 px: all four dropped). Steel is a sharp step: its peak
    stands ``dx_sat_step`` above the median of the 2-px ring round it (fine speckle reaching the
    top of the range is a soft bump). Not steel:

    * burned-in annotations and side markers: written at one constant value, so a component of
      3+ pixels that holds a single value is text (steel carries the detector's noise). The older
      rule dropped everything at the field maximum as text, which also dropped steel whenever no
      marker was brighter (validation 8245: a bra clip's segments at 0.99-1.0 of the range);
    * text on the background: the ring round the blob darker than ``dx_sat_ring`` (below the
      field's 2nd percentile: collimation or air, not the patient).

    The zone is the whole field less an 8% border (the older lateral lung zones missed necklace
    pendants and bra-clip hooks over the spine): on validation 8244/8245/8250/8263-8265 (461
    radiographs) every foreign-object view counts >= 3 and every view of a clean exam 0."""
    q = {**DEFAULTS, **(p or {})}
    if sub.size < 64:
        return 0, None
    level, peak_lo, tophat_lo = float(q["dx_sat_level"]), float(q["dx_sat_peak"]), float(q["dx_sat_tophat"])
    # the cap scales with the field, or with ``dx_sat_max_image_share`` of the whole image where the
    # field is collimated tighter than that (an object's size in pixels follows the pixel pitch,
    # i.e. the image, not the collimation)
    area = float(sub.size)
    share = q.get("dx_sat_max_image_share")
    if image_px is not None and share is not None:
        area = max(area, float(share) * float(image_px))
    step_lo, max_px, fill_lo = float(q["dx_sat_step"]), float(q["dx_sat_max_frac"]) * area, float(q["dx_sat_fill"])
    ring_lo = q.get("dx_sat_ring")
    plo, mx = float(np.percentile(sub, 2)), float(sub.max())
    norm = (sub - plo) / max(mx - plo, 1e-3)
    tophat = norm - ndi.grey_opening(norm, size=(9, 9))
    lab, _ = ndi.label(norm > level)
    n, box = 0, None
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        obj = lab[sl] == i
        area = int(obj.sum())
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if area > max_px or area / max(h * w, 1) < fill_lo:
            continue
        values = sub[sl][obj]
        if area >= 3 and float(values.max()) == float(values.min()):
            continue  # one constant value: burned-in text or a marker
        peak = float(norm[sl][obj].max())
        if peak < peak_lo or float(tophat[sl][obj].max()) < tophat_lo:
            continue
        if not zone[(sl[0].start + sl[0].stop) // 2, (sl[1].start + sl[1].stop) // 2]:
            continue
        # the 2-px ring round the blob, in a padded window of its own
        r0, c0 = max(sl[0].start - 2, 0), max(sl[1].start - 2, 0)
        win = lab[r0:sl[0].stop + 2, c0:sl[1].stop + 2] == i
        ring = ndi.binary_dilation(win, iterations=2) & ~win
        if not ring.any():
            continue
        ring_med = float(np.median(norm[r0:sl[0].stop + 2, c0:sl[1].stop + 2][ring]))
        if peak - ring_med < step_lo or (ring_lo is not None and ring_med < float(ring_lo)):
            continue
        n += 1
        if box is None:
            box = [float(sl[0].start - 3), float(sl[1].start - 3), float(sl[0].stop + 3), float(sl[1].stop + 3)]
    return n, box


GRID_KEYS = ("grid_peak", "grid_rows", "grid_x", "grid_y")
#: measures that need the native pixel pitch (taken on a native crop of a large radiograph)
NATIVE_KEYS = GRID_KEYS + ("vspec_mid", "vspec_low", "vspec_rel", "vspec_snr", "nyq_fy", "nyq_fx", "text_frac", "vspec_rel_notext", "nyq_fy_edge")
#: frequency bands (cycles/px) of :func:`directional_spectrum`
SPEC_LOW, SPEC_MID, SPEC_NOISE = (0.03, 0.13), (0.23, 0.31), (0.42, 0.5)


def directional_spectrum(sub: np.ndarray) -> dict[str, float]:
    """Vertical vs horizontal detail above the noise floor (radiograph motion smear).

    Why a spectrum and not gradients: motion smears the image along one axis with a short box
    (the generator: 3 px along columns, before the detector noise is added), which removes
    the mid frequencies (0.23-0.31 cycles/px: the box passes 5-11% of the power there) along
    that axis only, while the white noise stays the same in both directions. 1-px gradients
    are dominated by that noise, so they barely move (the old ``aniso_fine`` had recall ~0).
    The noise floor (the weaker direction's power at 0.42-0.5 cycles/px) is subtracted from
    both directions before the ratio; the anatomy's own anisotropy is read at low
    frequencies (0.03-0.13, where a 3-px box passes > 75%) and removed in ``vspec_rel``.
    Negative ``vspec_rel``: vertical detail missing (on training seed 7201: AUC 0.96 for
    motion against clean radiographs, vs 0.86 for the plain band ratio)."""
    out = {"vspec_mid": 0.0, "vspec_low": 0.0, "vspec_rel": 0.0, "vspec_snr": 0.0}
    ny, nx = sub.shape
    if ny < 24 or nx < 24:
        return out
    a = sub.astype(np.float64)
    py = (np.abs(np.fft.rfft((a - a.mean(axis=0)) * np.hanning(ny)[:, None], axis=0)) ** 2).mean(axis=1)
    px = (np.abs(np.fft.rfft((a - a.mean(axis=1, keepdims=True)) * np.hanning(nx)[None, :], axis=1)) ** 2).mean(axis=0)
    fy, fx = np.fft.rfftfreq(ny), np.fft.rfftfreq(nx)

    def band(f: np.ndarray, p: np.ndarray, lohi: tuple[float, float]) -> float:
        m = (f >= lohi[0]) & (f <= lohi[1])
        return float(p[m].mean()) if m.any() else 0.0

    noise = min(band(fy, py, SPEC_NOISE), band(fx, px, SPEC_NOISE))
    if noise <= 0:
        return out
    ey, ex = band(fy, py, SPEC_MID) - noise, band(fx, px, SPEC_MID) - noise
    floor = 1e-3 * noise
    out["vspec_mid"] = float(math.log(max(ey, floor) / max(ex, floor)))
    out["vspec_low"] = float(math.log(max(band(fy, py, SPEC_LOW), floor) / max(band(fx, px, SPEC_LOW), floor)))
    out["vspec_rel"] = out["vspec_mid"] - out["vspec_low"]
    out["vspec_snr"] = float(math.log(max(max(ey, ex), floor) / noise))
    return out


#: frequency boxes (cycles/px) of :func:`dx_nyquist_smear`: the Nyquist line, its low part, its corner
NYQ_LINE, NYQ_LOW, NYQ_CORNER = (0.44, 0.5), (0.02, 0.12), (0.38, 0.5)
#: the vertical Nyquist line's last rows (``nyq_fy_edge``)
NYQ_EDGE = (0.48, 0.5)


def dx_nyquist_smear(sub: np.ndarray) -> dict[str, float]:
    """Anatomy left on the vertical vs the horizontal Nyquist line (a short radiograph motion smear).

    Why: the generator's and a real short exposure's motion is a box smear of L pixels along the
    columns *before* the detector noise; a box of even length has an exact zero at 0.5 cycles/px
    (odd lengths: 1/L, and 1/L^2 of the power at 0.5), so the 2-D power spectrum along the line
    fy ~ 0.5 holds white noise only and is flat along fx. Unsmeared anatomy puts more power at low
    fx of that line (horizontal edges) than at its corner (fx ~ 0.5), and the horizontal Nyquist
    line (fx ~ 0.5) keeps its anatomy under a vertical smear. ``nyq_fy`` / ``nyq_fx``: log ratio of
    the median power at the line's low part to its corner, vertical and horizontal line; a smear of
    2-4 px reads ``nyq_fy`` near 0 with ``nyq_fx`` well above it. Medians (not means) so that a
    marker, a text box or one strong edge does not lift a whole box. The spectral ratio
    ``vspec_rel`` compares mid bands and misses 2-px smears on coarse small views (worn h9211 E00009,
    i9212 E00321: ``vspec_rel`` +0.75 and +0.28). Taken on the field less a 10% border."""
    out = {"nyq_fy": 0.0, "nyq_fx": 0.0, "nyq_fy_edge": 0.0}
    ny, nx = sub.shape
    a = sub[int(ny * 0.1):ny - int(ny * 0.1), int(nx * 0.1):nx - int(nx * 0.1)].astype(np.float64)
    ny, nx = a.shape
    if ny < 32 or nx < 32:
        return out
    win = np.hanning(ny)[:, None] * np.hanning(nx)[None, :]
    power = np.abs(np.fft.fft2((a - a.mean()) * win)) ** 2
    fy = np.abs(np.fft.fftfreq(ny))[:, None]
    fx = np.abs(np.fft.fftfreq(nx))[None, :]

    def med(ylim: tuple[float, float], xlim: tuple[float, float]) -> float:
        m = (fy >= ylim[0]) & (fy <= ylim[1]) & (fx >= xlim[0]) & (fx <= xlim[1])
        return max(float(np.median(power[m])), 1e-12) if m.any() else 1e-12

    out["nyq_fy"] = float(math.log(med(NYQ_LINE, NYQ_LOW) / med(NYQ_LINE, NYQ_CORNER)))
    out["nyq_fx"] = float(math.log(med(NYQ_LOW, NYQ_LINE) / med(NYQ_CORNER, NYQ_LINE)))
    # the same on the last rows of the line only (:data:`NYQ_EDGE`): a 2-px box passes sin^2(pi d)
    # of the power at 0.5 - d, 3.5% at 0.44 but < 0.4% from 0.48, so strong anatomy at low fx keeps
    # ``nyq_fy`` above 0 on a smeared view while ``nyq_fy_edge`` stays flat (see _dx_nyquist_edge_rule)
    out["nyq_fy_edge"] = float(math.log(med(NYQ_EDGE, NYQ_LOW) / med(NYQ_EDGE, NYQ_CORNER)))
    return out


#: the plain ``-vspec_rel`` from which :func:`dx_text_free_spectrum` looks for text
TEXT_CHECK_FROM = 1.0


def dx_text_free_spectrum(sub: np.ndarray, raw: float | None = None) -> dict[str, float]:
    """``vspec_rel`` of :func:`directional_spectrum` with burned-in text filled in, and the text's
    share of the field (``text_frac``; 0 and the plain ``vspec_rel`` when there is none). ``raw``:
    the plain ``vspec_rel`` when already taken; the text is only looked for where it leans to
    motion (``-raw`` >= :data:`TEXT_CHECK_FROM`, below any motion limit; speed only).

    Why: annotations are written at one constant value with no detector noise, and on a small view
    (a 104 x 128 px pelvis AP) the patient-ID lines fill a tenth of the field: their glyph edges
    put power at every frequency, in rows and columns unequally, and the ratio read missing vertical
    detail (worn h9211 E00010, dx 8730 E00015: clean pelvis APs at ``vspec_rel`` -7.5 / -7.7, net
    运动 1.00; with the text filled +0.27 / +0.13). Text: pixels at a value held by at least
    max(20, 0.4%) of the field, in components of at most 1% of it (clipped regions are larger),
    grown by 1 px and filled by normalised Gaussian interpolation (sigma 2 px)."""
    raw = directional_spectrum(sub)["vspec_rel"] if raw is None else float(raw)
    out = {"text_frac": 0.0, "vspec_rel_notext": raw}
    if sub.size < 64 or -raw < TEXT_CHECK_FROM:
        return out
    vals, cnt = np.unique(sub, return_counts=True)
    mask = np.isin(sub, vals[cnt >= max(20, 0.004 * sub.size)])
    if not mask.any():
        return out
    lab, n = ndi.label(mask)
    sizes = np.asarray(ndi.sum(mask, lab, index=np.arange(1, n + 1)))
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes <= 0.01 * sub.size
    mask = keep[lab]
    if not mask.any():
        return out
    mask = ndi.binary_dilation(mask, iterations=1)
    a = sub.astype(np.float64)
    w = (~mask).astype(np.float64)
    num, den = ndi.gaussian_filter(a * w, 2.0), ndi.gaussian_filter(w, 2.0)
    fill = np.where(den > 1e-3, num / np.maximum(den, 1e-3), float(np.median(a[~mask])) if (~mask).any() else 0.0)
    out["text_frac"] = float(mask.mean())
    out["vspec_rel_notext"] = directional_spectrum(np.where(mask, fill, a).astype(np.float32))["vspec_rel"]
    return out


def dx_radiograph_features(img: np.ndarray, work_px: int = 320, p: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """:func:`dx_features` at the detector's scale: a radiograph longer than ``work_px`` is
    block-averaged to it (the features were defined on 90-256 px images and a 3000 px detector
    image would cost ~100x), except the grid-line measures, which need the native pixel pitch
    and are taken on a central native-resolution crop of the field."""
    long_side = max(img.shape)
    if long_side <= work_px * 1.25:
        return dx_features(img, p)
    f = int(math.ceil(long_side / work_px))
    h, w = img.shape[0] // f * f, img.shape[1] // f * f
    small = img[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    feats, info = dx_features(small, p)
    r0, c0, r1, c1 = (v * f for v in info["field"])
    cr, cc, half = (r0 + r1) // 2, (c0 + c1) // 2, min(256, (r1 - r0) // 2, (c1 - c0) // 2)
    if half >= 32:
        crop = img[cr - half:cr + half, cc - half:cc + half]
        feats.update(dx_native_features(crop))
    info["field"] = [r0, c0, r1, c1]
    for key in ("box", "sat_box"):
        if info.get(key) is not None:
            info[key] = [v * f for v in info[key]]
    return feats, info


def dx_classify(feats: dict[str, float], p: dict[str, Any]) -> tuple[str, str | None, dict[str, float], float | None, float | None]:
    scores = {"motion": _sig(-feats.get("vspec_rel", 0.0), float(p["dx_motion_spectrum"]), 0.2),
              "equipment": _sig(feats.get("grid_rows", 0.0), float(p["dx_grid_rows"]), 0.05),
              "foreign_object": _sig(feats.get("fo_m15_lat", 0.0), math.log1p(float(p["dx_foreign_objects"])), 0.2)}
    cls = max(scores, key=lambda k: scores[k])
    # grid lines above their limit decide before the motion spectrum (artifact.yaml ``dx_grid_first``):
    # their periodic columns add horizontal power that reads as missing vertical detail (worn h9205
    # E00043/E00061, i9206 E00184: grid views at vspec_rel -4.2 to -4.8, read 运动)
    if p.get("dx_grid_first") and scores["equipment"] >= 0.5:
        cls = "equipment"
    if scores[cls] < 0.5:
        return "none", None, scores, None, None
    if cls == "motion":
        return cls, "motion_blur", scores, round(-feats["vspec_rel"], 3), float(p["dx_motion_spectrum"])
    if cls == "equipment":
        return cls, "grid_lines", scores, round(feats["grid_rows"], 3), float(p["dx_grid_rows"])
    return cls, "foreign_object", scores, round(math.expm1(feats["fo_m15_lat"])), float(p["dx_foreign_objects"])


def _sig(x: float, centre: float, width: float) -> float:
    """Soft threshold: 0.5 at the limit, towards 1 above it (a score, not a probability)."""
    z = (float(x) - float(centre)) / max(float(width), 1e-9)
    return float(1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0))))


# ------------------------------------------------------------------------------ series selection


def _is_image_series(s: SeriesImages) -> bool:
    h = s.header
    role = getattr(s.label, "role", None) if s.label is not None else None
    if role in ("localizer", "dose_report", "screen_capture"):
        return False
    itype = [str(t).upper() for t in (getattr(h, "image_type", None) or [])]
    if "LOCALIZER" in itype:
        return False
    sop = str(getattr(h, "sop_class_uid", "") or "")
    if sop.startswith("1.2.840.10008.5.1.4.1.1.88") or sop == "1.2.840.10008.5.1.4.1.1.7":  # SR, secondary capture
        return False
    return True


def _series_modality(s: SeriesImages, exam_modality: str | None) -> str:
    m = str(getattr(s.header, "modality", None) or exam_modality or "").upper()
    return "DX" if m in RADIOGRAPH_MODALITIES else m


def _ct_order(s: SeriesImages) -> tuple[int, int]:
    """Primary axial reconstructions first, then the most slices."""
    label = s.label
    plane = getattr(label, "plane", None) if label is not None else None
    derived = getattr(label, "role", None) == "derived" if label is not None else False
    primary = 0 if plane in (None, "axial") and not derived else 1
    return primary, -int(getattr(s.header, "n_instances", 0) or 0)


def select_series(exam: ExamImages, p: dict[str, Any]) -> list[SeriesImages]:
    """The image series worth reading: no localizers, dose reports or captures; for CT/MR the
    series with the most instances first (up to ``max_series`` per modality), axial preferred for CT.

    CT reformats (coronal / sagittal MPR, VR) are read only when the exam has no primary axial
    series, unless ``ct_reformats_beside_axial``. Why: every CT measure and both CT nets read axial
    slices (a ghost along the phase of the gantry rotation, the field circle, the echo between
    neighbouring slices); a 4-image coronal reformat of a 24-slice knee is stair-stepped along z,
    and held-out 9227 read two clean knees 运动 from it (feature net 0.93). On 9225 and 7504 no short
    reformat decided an exam right that the axial series would not have."""
    out: list[SeriesImages] = []
    by_mod: dict[str, list[SeriesImages]] = {}
    for s in exam.series:
        if not _is_image_series(s):
            continue
        by_mod.setdefault(_series_modality(s, exam.modality), []).append(s)
    for mod, items in by_mod.items():
        if mod == "DX":
            out.extend(items)
            continue
        if mod not in ("CT", "MR"):
            continue

        if mod == "CT":
            ranked = sorted(items, key=_ct_order)
            axial = [s for s in ranked if _ct_order(s)[0] == 0]
            read = ranked if p.get("ct_reformats_beside_axial", False) or not axial else axial
            out.extend(read[: int(p["max_series"])])
        else:
            out.extend(items)
    return out


# ------------------------------------------------------------------------------ per series


def _metal_box(feats: dict[str, float], image: Any) -> list[float]:
    """The evidence box round a slice's metal (``metal_r``/``metal_c``): 12% of the slice, at least 6 px
    each way from the centre."""
    r, c, h = feats["metal_r"], feats["metal_c"], max(6.0, np.asarray(image).shape[0] * 0.12)
    return [r - h, c - h, r + h, c + h]


def _show_metal_box(res: SeriesArtifact, shown: tuple[dict[str, float], Any] | None) -> None:
    """Box the metal of the slice :func:`_show_strongest_slice` chose, where that slice has metal."""
    if shown is not None and shown[1] is not None and shown[0].get("metal_r", -1.0) >= 0:
        res.box = _metal_box(shown[0], shown[1])


def analyse_series(s: SeriesImages, modality: str, p: dict[str, Any], model: Any = None) -> SeriesArtifact:
    """Features, scores and value of one series (raises on undecodable pixels)."""
    return decide_series(measure_series(s, modality, p), p, model)


def measure_series(s: SeriesImages, modality: str, p: dict[str, Any]) -> SeriesArtifact:
    """The classical stage of one series: its features and the classical thresholds' value
    (raises on undecodable pixels). Kept apart from :func:`decide_series` so that a learned
    model can be compared on the same measured series without reading the pixels again."""
    uid = getattr(s.header, "series_uid", None)
    if modality == "DX":
        try:
            rg = s.radiograph()
            img = np.asarray(rg.pixels, dtype=np.float32)
        except Exception:  # noqa: BLE001 - fall back to the stored values
            sl, _, _ = _slices(s, 1)
            if not sl:
                raise
            img = sl[0]
        feats, info = dx_radiograph_features(img, int(p.get("dx_work_px", 320)), p)
        cls, kind, scores, measured, limit = dx_classify(feats, p)
        res = SeriesArtifact(uid, modality, feats, scores, VALUE_OF[cls], kind, 0 if cls != "none" else None,
                             info["box"] if cls == "foreign_object" else None, measured, limit, image=img, window=info["window"])
        res.extra["_sat_box"] = info.get("sat_box")
    else:
        slices, idx, first = _slices(s, int(p["max_slices"]))
        if not slices:
            raise ValueError("no pixel data")
        if modality == "CT":
            feats, per = ct_series_features(slices, p)
            cls, kind, scores, k, measured, limit = ct_classify(feats, per, p)
            window = (40.0, 400.0) if kind != "metal" else (500.0, 3000.0)
        else:
            feats, per = mr_series_features(slices, mr_pe_axis(first), int(p.get("mr_void_min_px", 8)))
            feats.update(mr_header_features(first))  # fat suppression, plane (see _mr_void_rule, _mr_ghost_replica_support_rule)
            cls, kind, scores, k, measured, limit = mr_classify(feats, per, p)
            window = None
        box = None
        if k is not None and kind in ("metal", "foreign_object") and modality == "CT" and per[k]["metal_r"] >= 0:
            box = _metal_box(per[k], slices[k])
        res = SeriesArtifact(uid, modality, feats, scores, VALUE_OF[cls], kind, idx[k] if k is not None else None, box,
                             measured, limit, image=slices[k] if k is not None else slices[len(slices) // 2], window=window)
        res.extra["_per"], res.extra["_idx"], res.extra["_slices"] = per, idx, slices
        res.extra["_spacing"] = pixel_spacing(first)  # the pixel CNNs' pixel size (_mr_void_net_rule, _ct_net_rule)
    return res


def pixel_spacing(ds: Any) -> tuple[float, float] | None:
    """(row, column) pixel size in mm from ``PixelSpacing``, or None when it is not recorded."""
    try:
        sp = ds.PixelSpacing
        return float(sp[0]), float(sp[1])
    except Exception:  # noqa: BLE001 - no spacing recorded: the reader assumes its own pixel size
        return None


def decide_series(res: SeriesArtifact, p: dict[str, Any], model: Any = None) -> SeriesArtifact:
    """The series' value from its measured features: the learned net (when given) with its
    margins, then the classical rules beside it; drops the per-slice working data."""
    uid, modality = res.series_uid, res.modality
    if model is not None:
        try:
            probs = model.predict(modality, res.features)
        except Exception as exc:  # noqa: BLE001 - a model that does not fit the features: classical decides
            log.warning("artifact model failed on series %s (%s): classical thresholds decide", uid, exc)
            probs = None
        if probs is not None:
            res.method = "learned"
            res.extra["classical_value"] = res.value
            res.scores = {c: float(probs[i]) for i, c in enumerate(CLASSES) if c != "none"}
            # an artifact only when its probability reaches the limit: the exam takes the strictest
            # series, so a lenient per-series call would turn clean exams with many series abnormal
            k = 1 + int(np.argmax(probs[1:]))
            limit: Any = p.get("model_threshold")
            if limit is None:
                limit = model.threshold_for(modality) if hasattr(model, "threshold_for") else getattr(model, "threshold", 0.5)
            limit = float(limit)
            # no classical measure above its own limit: the net alone must be surer
            # (artifact.yaml ``model_unconfirmed_threshold``, per modality)
            if res.extra["classical_value"] == VALUE_OF["none"]:
                limit = max(limit, unconfirmed_threshold(p, modality, CLASSES[k]) or 0.0)
            # the classical measure reads the same artifact class as the net's strongest one: the
            # two agree, so the net may be less sure (artifact.yaml ``model_confirmed_threshold``)
            elif res.extra["classical_value"] == VALUE_OF[CLASSES[k]] and _confirmable(res, p):
                limit = min(limit, confirmed_threshold(p, modality, CLASSES[k]) or limit)
            cls = CLASSES[k] if float(probs[k]) >= limit else "none"
            res.value = VALUE_OF[cls]
            if cls == "none":
                res.kind, res.measured, res.limit, res.box, res.slice_index = None, None, None, None, None
            elif res.extra["classical_value"] != res.value:
                _learned_evidence(res, cls, p)
    if modality == "MR":
        _mr_equipment_void_rule(res, p)
        _mr_ghost_replica_support_rule(res, p)  # before the replica rule: it judges background-ghost calls
        _mr_replica_rule(res, p)
        _mr_axial_ghost_rule(res, p)
        _mr_void_rule(res, p)
        _mr_void_net_rule(res, p)  # last: a 无 every measured reading left
    elif modality == "CT":
        _ct_fo_metal_rule(res, p)
        _ct_enclosed_metal_rule(res, p)
        _ct_motion_axis_rule(res, p)  # before the soft-motion rule: it judges the net's motion calls
        _ct_soft_motion_rule(res, p)
        _ct_axis_step_motion_rule(res, p)  # after the echo (in the soft-motion rule): a 无 it left
        _ct_on_skin_rule(res, p)
        _ct_truncation_rule(res, p)
        _ct_bright_implant_rule(res, p)
        _ct_net_rule(res, p)  # last: a 无 every measured reading left
    elif modality == "DX":
        _dx_text_motion_rule(res, p)
        _dx_detail_kept_rule(res, p)  # before the short-smear rules: it judges the net's motion calls
        _dx_nyquist_motion_rule(res, p)  # before the grid rule: grid columns are 设备
        _dx_nyquist_edge_rule(res, p)
        _dx_grid_rule(res, p)
        _dx_isotropic_blur_rule(res, p)
        _dx_object_rule(res, p)
        _dx_motion_net_rule(res, p)  # last: motion is the strictest value, and the pixels have the last word on it
    for key in ("_per", "_idx", "_slices", "_sat_box", "_trunc", "_edge", "_spacing"):
        res.extra.pop(key, None)
    return res


def _threshold_for(v: Any, modality: str, cls: str) -> float | None:
    """A threshold setting read as a number, or a mapping per modality whose value may map artifact classes."""
    if isinstance(v, dict):
        v = v.get(modality)
    if isinstance(v, dict):
        v = v.get(cls)
    return None if v is None else float(v)


def unconfirmed_threshold(p: dict[str, Any], modality: str, cls: str) -> float | None:
    """The probability the learned net needs when every classical measure of the series is below
    its own limit (the classical reading is 无), or None (the registered threshold alone).

    Why: on validation the net's calls without any classical support were mostly false alarms
    (DX foreign objects counting 7-46 dots against 100, MR metal voids of 0.006 against 0.02)
    at probabilities 0.80-0.93, while the calls a classical measure backs stay at the registered
    threshold. A number applies to every modality; a mapping gives one per modality, whose
    value may again be a mapping per artifact class (``cls``, a CLASSES name: radiograph motion
    keeps the registered threshold, as its unconfirmed calls were mostly right)."""
    return _threshold_for(p.get("model_unconfirmed_threshold"), modality, cls)


def confirmed_threshold(p: dict[str, Any], modality: str, cls: str) -> float | None:
    """The probability the learned net needs when the series' classical reading is the net's own
    strongest artifact class (``cls``), or None (the registered threshold alone).

    Why: the net and the classical thresholds read the same measures from different angles; when
    both name one class the call is backed twice. On CT the series the net read at 0.6-0.8 for the
    motion or foreign object the classical rule also gave were motions under a blurring kernel (the
    edge ghost softened: net 0.71-0.74) and a hairpin seen by its metal (0.69), and no clean series
    (worn seed 9204 and validation 8300-8302). Not for CT equipment: the classical truncation reading
    (the body touching the field circle) is common on clean series, and the net read two of them
    (8300) at 0.74-0.78. Same shapes as :func:`unconfirmed_threshold` (a number, or a mapping per
    modality whose value may map artifact classes); it only ever lowers the registered threshold."""
    return _threshold_for(p.get("model_confirmed_threshold"), modality, cls)


def _confirmable(res: SeriesArtifact, p: dict[str, Any]) -> bool:
    """Whether the classical reading may back the net's call (see :func:`confirmed_threshold`).

    CT: not where the body touches the field-of-view circle on the median slice
    (``rim_touch_med`` >= ``ct_confirmed_rim_touch_med``; null: always). There the classical
    measures read the field edge: a truncated body under a blurring kernel has a wide band of
    intermediate HU at the cut (read as edge doubling) and its metal lies near the rim
    (validation 8302 E00060: truncation read 运动 at 0.69-0.72, rim touch 0.24; 8301 E00013: an
    aneurysm clip read 异物 at 0.63, rim touch 0.30); the right confirmed calls touched 0.00."""
    if res.modality != "CT":
        return True
    limit = p.get("ct_confirmed_rim_touch_med")
    return limit is None or float(res.features.get("rim_touch_med", 0.0)) < float(limit)


def _metal_px(features: dict[str, float]) -> float:
    """The largest metal pixel count of one slice (stored as log1p; rounded so that 2 reads 2)."""
    return round(math.expm1(float(features.get("metal_px_max", 0.0))), 3)


def _drop_learned(res: SeriesArtifact, dropped: dict[str, Any]) -> None:
    """A learned call a classical measure contradicts reads 无; the net's value and the reason stay
    in ``extra`` (``learned_value``, ``dropped``) for the reviewer."""
    res.extra["learned_value"] = res.value
    res.extra["dropped"] = dropped
    res.value, res.kind, res.method = VALUE_OF["none"], None, "classical"
    res.measured, res.limit, res.box, res.slice_index = None, None, None, None


def _once_per_series(res: SeriesArtifact, key: str, shown: str, compute: Any) -> dict[str, float]:
    """``compute(slices)`` of the series, computed once and kept in ``res.extra[key]`` (several rules
    read the same reading), with a rounded copy under ``shown`` for the finding's details."""
    value = res.extra.get(key)
    if value is None:
        value = compute(res.extra.get("_slices") or [])
        res.extra[key] = value
        res.extra[shown] = {k: round(float(v), 3) for k, v in value.items()}
    return value


def _series_truncation(res: SeriesArtifact, p: dict[str, Any]) -> dict[str, float]:
    """:func:`ct_artifact_rules.series_truncation` of the series' slices (the untouched veto and the
    truncation rule both read it)."""
    touch = float(p.get("ct_trunc_touch_min", 0.03))
    return _once_per_series(res, "_trunc", "truncation_rim", lambda slices: series_truncation(slices, touch))


def _ct_motion_axis_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """The motion axis (``ghost_axis_coh``, see :func:`ct_ghost_axis_coherence`) decides the net's
    motion calls it can judge:

    - a learned 运动 reads 无 when the axis coherence is below ``ct_ghost_axis_min``, the body
      touches the field-of-view circle on the median slice (``rim_touch_med`` >=
      ``ct_ghost_axis_touch``) and the axis could be measured on at least
      ``ct_ghost_axis_measured`` of the slices (half the sectors clear of the circle): the net
      read the cut edge as a ghost band. A body cut on most of its outline cannot be judged and
      keeps the net's call (motions and clean series both occur there: 8303 E00116, 9204 E00069
      vs 8304 E00056, E00103);
    - a learned 无 reads 运动 when the coherence reaches ``ct_ghost_axis_motion``, the net's motion
      probability ``ct_ghost_axis_prob`` and the body is clear of the circle (``rim_touch_med`` <
      ``ct_confirmed_rim_touch_med``): a ghost along one axis the net's width features missed.

    Any of a part's keys null: that part is off. Why: the net's ghost-width features count the
    band of intermediate HU round the whole body, which the field circle's cut (bodies touching
    it: net 0.81-1.0 on clean series, e.g. 8304 E00102, worn 9204 E00104, 9206 E00231, E00312 with
    an axis of 0.00-0.23) and blur also make; motion
    alone makes the band along one axis, coherently over a run of slices. The veto, chosen on
    validation 8300-8303 (285 -> 289 of 316 CT exams), fixed clean series on every set not tuned
    on and lost no motion (8304 66 -> 67/79, worn i9204 103 -> 105/116, i9206 209 -> 211/231). The
    rescue is shipped off: it raised clean blurred series on h9203 and i9206.

    First, a learned 运动 on a series of fewer than ``ct_motion_min_slices`` measured slices reads
    无 below the net's ``ct_short_motion_prob`` (either null: off): motion moves a quarter to a half
    of an acquisition's slices, one or two of a 4-slice series, and the ghost features' spread over
    four values is their range. The net read clean 4-slice series 0.55-0.94 for motion (worn i9208
    E00020 at 0.66, called through the confirmed margin; i9206 E00152 at 0.94; E00160, E00193,
    E00239; 8500 E00029; 8501 E00013); the motions among its short-series calls (i9208 E00348, 8501
    E00073, 8502 E00113) were read on the exam's long series as well."""
    if res.method != "learned":
        return
    f = res.features
    few, few_prob = p.get("ct_motion_min_slices"), p.get("ct_short_motion_prob")
    if (res.value == VALUE_OF["motion"] and few is not None and few_prob is not None and float(f.get("n_slices", 0.0)) < float(few)
            and float(res.scores.get("motion", 0.0)) < float(few_prob)):
        _drop_learned(res, {"kind": "motion_on_a_short_series", "n_slices": int(f.get("n_slices", 0.0)), "limit": float(few),
                            "motion_prob": round(float(res.scores.get("motion", 0.0)), 3)})
        return
    coh, touch = float(f.get("ghost_axis_coh", 0.0)), float(f.get("rim_touch_med", 0.0))
    lo, lo_touch, seen = p.get("ct_ghost_axis_min"), p.get("ct_ghost_axis_touch"), p.get("ct_ghost_axis_measured")
    if (res.value == VALUE_OF["motion"] and lo is not None and lo_touch is not None and seen is not None and coh < float(lo)
            and touch >= float(lo_touch) and float(f.get("ghost_axis_measured", 0.0)) >= float(seen)):
        _drop_learned(res, {"kind": "motion_without_axis", "ghost_axis_coh": round(coh, 3), "limit": float(lo),
                            "rim_touch_med": round(touch, 3)})
        return
    if res.value == VALUE_OF["motion"] and lo is not None and coh < float(lo) and _cut_body_without_echo(f, touch, p, res.extra.get("_per")):
        _drop_learned(res, {"kind": "motion_in_a_cut_body_without_echo", "ghost_axis_coh": round(coh, 3),
                            "rim_touch_med": round(touch, 3), "echo_t": round(float(f.get("echo_t", 0.0)), 3)})
        return
    hi, prob_lim, clear = p.get("ct_ghost_axis_motion"), p.get("ct_ghost_axis_prob"), p.get("ct_confirmed_rim_touch_med")
    if res.value != VALUE_OF["none"] or hi is None or prob_lim is None:
        return
    prob = float(res.scores.get("motion", 0.0))
    if coh < float(hi) or prob < float(prob_lim) or (clear is not None and touch >= float(clear)):
        return
    _overrule(res, "motion", "ghosting", round(coh, 3), float(hi), prob)
    _show_strongest_slice(res, "ghost_axis")


def _cut_body_without_echo(f: dict[str, float], touch: float, p: dict[str, Any],
                           per: Sequence[dict[str, float]] | None = None) -> bool:
    """The body touches the field circle (``rim_touch_med`` >= ``ct_cut_motion_touch``) and the
    cepstral echo gives the net's motion call no support: ``echo_t`` below ``ct_cut_motion_echo_t``
    on series of ``ct_echo_min_slices`` or more, below ``ct_cut_motion_short_echo_t`` on shorter
    ones (either key null: False, the veto off), and the band's width (``per``: the per-slice
    features) does not step up over a run of slices (:func:`_ct_width_step`: False, the net's call
    kept).

    Why: where the circle cuts the body on most of its outline the axis cannot be measured, so
    the axis veto keeps the net's call; the net reads the cut edge as a ghost band there (worn
    i9212 E00074, a lumbar spine whose range runs into the chest, 0.97 / 0.99; E00266 0.87; worn
    i9206 E00110, i9208 E00095, 8630 E00008 / E00025). The echo reads every internal edge, not the
    outline, and stays at the level of a clean series on those (t 1.17-1.71 on 24 slices), while
    the net's motion calls on cut bodies that were motion read 2.26-11.7 (worn h9211 E00036, i9212 E00186, i9206
    E00096, 8501 E00034, 8630 E00090). On short series the clean calls read up to 3.87 (i9208
    E00095, 9 slices), the motions 11.3 (8501 E00034).

    The width step (session 22, CTM6): the echo misses the generator's motion on spine fields the
    circle cuts (i9218 E00071, E00381, E00771: net 0.97-0.99, echo t 0.98-1.65; fresh 9150 E00000,
    9151 E00146), where the band widens on the moving run only (t 5.0-14.8, 0.9-1.5 px); no cut
    series of an exam without motion that the net called read the step on fresh 9140, 9150-9154."""
    lim_touch, lim_t, lim_short = p.get("ct_cut_motion_touch"), p.get("ct_cut_motion_echo_t"), p.get("ct_cut_motion_short_echo_t")
    if lim_touch is None or lim_t is None or lim_short is None or touch < float(lim_touch):
        return False
    long_series = float(f.get("n_slices", 0.0)) >= float(p.get("ct_echo_min_slices") or 0)
    if float(f.get("echo_t", 0.0)) >= float(lim_t if long_series else lim_short):
        return False
    return _ct_width_step(f, per, p, cut_body=True) is None


def _ct_width_step(f: dict[str, float], per: Sequence[dict[str, float]] | None, p: dict[str, Any],
                   cut_body: bool = False) -> dict[str, float] | None:
    """The band's width step (:func:`ct_motion.series_width_step`) when it reads motion: on a
    series of ``ct_width_motion_min_slices`` or more, ``ghost_width_t`` >= ``ct_width_motion_t``
    and the height >= ``ct_width_motion_px`` (``ct_width_motion_cut_px`` on a body the circle
    cuts, ``cut_body``: the cut edge itself makes inner plateaus of 0.5-0.62 px on clean series,
    9142 E00094 net 0.97 t 6.3, 9140 E00058, 9150 E00162, 9151 E00018 / E00101, where the motions
    read 0.73-1.53); None otherwise or with a key null. Used by
    :func:`_cut_body_without_echo` (the veto keeps the net's call) and :func:`_ct_soft_motion_rule`
    (a 无 the net ranks as motion on a cut or blurred body). Reads the per-slice features only
    (about 1 ms on 24 slices).

    The run must leave ``ct_width_motion_margin`` slices or more on either side (null: no
    condition): motion switches the doubling on and off again, while a range running on into the
    chest or the shoulders widens the band from some slice to the series' end (9141 E00085, clean,
    net 0.80, t 5.2 on slices 19-24 of 24; 9141 E00101, 9150 E00068, E00172, 9151 E00134). Of about
    70 motion series reading the step on 9140, 9141, 9150, 9151 and i9218, two ran to the end, each
    beside another series of the exam with an inner run."""
    lim_t, need = p.get("ct_width_motion_t"), p.get("ct_width_motion_min_slices")
    lim_px = p.get("ct_width_motion_cut_px" if cut_body else "ct_width_motion_px")
    if lim_t is None or lim_px is None or need is None or not per or float(f.get("n_slices", 0.0)) < float(need):
        return None
    w = ct_motion.series_width_step(per)
    if w["ghost_width_t"] < float(lim_t) or w["ghost_width_step"] < float(lim_px):
        return None
    margin = p.get("ct_width_motion_margin")
    if margin is not None:
        first, end = int(w["ghost_width_first"]), int(w["ghost_width_first"]) + int(round(w["ghost_width_run"] * len(per)))
        if first < int(margin) or end > len(per) - int(margin):
            return None
    return w


def _ct_echo_motion_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A series read 无 reads 运动 when the slices' cepstra show the displaced copy's echo on a run
    of slices (:mod:`ct_motion`): the plateau's height over its spread ``echo_t`` at least
    ``ct_echo_t`` and its height ``echo_step`` at least ``ct_echo_step``. Any key null: off.

    Why: the echo reads every edge of the slice, so it sees motion where the ghost-band measures
    and the net do not: under a blurring kernel (worn i9208 E00035, E00349: net 0.36-0.69, t
    6.2-6.4) and off-centre bodies near the field circle (E00068: net 0.81 under the unconfirmed
    0.9, t 8.7-10.7). Chosen on worn i9208 (231 CT exams): motions read t 5.6-15.9, height
    0.20-0.58; the highest clean, noisy, blurred or truncated series read t 4.0 (E00344, height
    0.12) and the highest height below t 5 was 0.25 (E00244, t 3.9). Only on series of at least
    ``ct_echo_min_slices`` measured slices: the spread of a run against the rest is poorly known on
    short series, and the highest clean readings all came from series of 9-10 slices (E00344,
    E00244, E00198, E00012); on 16+ slices the clean maximum was 3.9 (E00060). Not tuned on: CT
    artifact 8500 69 -> 71/79, 8502 69 -> 71/79, 8501 and i9206 unchanged by it, no exam wrong.

    The same echo read on the signal band only (``echo_wt`` >= ``ct_echo_wt`` and ``echo_wstep``
    >= ``ct_echo_wstep``; :func:`ct_motion.series_echo_weighted`; either null: that reading off)
    also counts: noise-only bins dilute the plain cepstrum (worn i9210 E00061: t 4.1, weighted
    7.7). Clean, noisy, blurred, truncated and metal series of 16+ slices read weighted t <= 5.8
    (8501 E00095, a 设备 series; 无 exams <= 5.4, worn i9206 E00108) on i9206/i9208/8500/8501.

    Session 19 (helper CTM3; each key null: that part off):

    - series of ``ct_echo_short_min_slices`` up to ``ct_echo_min_slices`` slices count when the
      plain and the weighted reading both fire: clean 9-10-slice series read one or the other high
      (i9206 E00108 t 5.49 / weighted 4.52, E00277 3.65 / 7.99, i9212 E00119 3.88 / 7.40) but not
      both, motions both (worn i9212 E00256 6.81 / 9.03, i9206 E00203 5.56 / 6.83);
    - a moderate plain echo (``echo_t`` >= ``ct_echo_axis_t``, height >= ``ct_echo_step``) counts
      when the motion axis backs it (``ghost_axis_coh`` >= ``ct_echo_axis_coh``): two readings of
      the doubled edges, one of every edge and one of the outline. Motions 3.7-5.0 with an axis
      0.55-1.07 (worn i9212 E00128, 8630 E00063); clean 16+-slice series with an axis of 0.4 or
      more read t <= 3.31 (i9206 E00254) on seven sets;
    - a 设备 series (net or classical) reads 运动 when the plain echo fires with the axis: the
      moving patient's streaks read as equipment (worn i9212 E00225, net 设备 0.80, t 6.16, axis
      1.25); no other 设备 series of seven sets reads t 4.5 or more."""
    t_lim, step_lim = p.get("ct_echo_t"), p.get("ct_echo_step")
    if t_lim is None or step_lim is None or res.value not in (VALUE_OF["none"], VALUE_OF["equipment"]) or res.modality != "CT":
        return
    f = res.features
    n = float(f.get("n_slices", 0.0))
    short_min = p.get("ct_echo_short_min_slices")
    long_series = n >= float(p.get("ct_echo_min_slices") or 0)
    if not long_series and (short_min is None or n < float(short_min)):
        return
    t, step = float(f.get("echo_t", 0.0)), float(f.get("echo_step", 0.0))
    wt_lim, wstep_lim = p.get("ct_echo_wt"), p.get("ct_echo_wstep")
    plain = t >= float(t_lim) and step >= float(step_lim)
    weighted = (wt_lim is not None and wstep_lim is not None and float(f.get("echo_wt", 0.0)) >= float(wt_lim)
                and float(f.get("echo_wstep", 0.0)) >= float(wstep_lim))
    axis_t, axis_coh = p.get("ct_echo_axis_t"), p.get("ct_echo_axis_coh")
    axis = axis_coh is not None and float(f.get("ghost_axis_coh", 0.0)) >= float(axis_coh)
    if res.value == VALUE_OF["equipment"]:  # streaks of a moving patient: the echo and the axis both
        if not (long_series and plain and axis):
            return
    elif not long_series:  # 8-15 slices: the run's spread is poorly known, both readings needed
        if not (plain and weighted):
            return
    elif not (plain or weighted):
        # a moderate echo the motion axis backs (two independent readings of the doubled edges)
        if not (axis and axis_t is not None and t >= float(axis_t) and step >= float(step_lim)):
            return
        plain, t_lim = True, axis_t
    if plain:
        _overrule(res, "motion", "ghosting", round(t, 2), float(t_lim), float(res.scores.get("motion", 0.0)))
    else:
        _overrule(res, "motion", "ghosting", round(float(f.get("echo_wt", 0.0)), 2), float(wt_lim or 0.0),
                  float(res.scores.get("motion", 0.0)))
    res.extra["echo"] = {k: round(float(f.get(k, 0.0)), 3) for k in ("echo_step", "echo_t", "echo_run", "echo_dy", "echo_dx", "echo_wt", "echo_wstep")}
    first, run = int(f.get("echo_first", -1.0)), float(f.get("echo_run", 0.0))
    if not plain:
        first, run = int(f.get("echo_wfirst", -1.0)), float(f.get("echo_wrun", 0.0))
    idx: list[int] = res.extra.get("_idx") or []
    slices = res.extra.get("_slices") or []
    if 0 <= first < len(idx):  # the evidence: the run's middle slice
        k = min(len(idx) - 1, first + int(run * len(idx)) // 2)
        res.slice_index = idx[k]
        if k < len(slices):
            res.image = slices[k]


def _ct_soft_motion_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """Motion under a blurring kernel: a series the net read 无 reads 运动 when every edge is soft
    (``ghost_q50`` >= ``ct_soft_motion_q50`` px of intermediate HU outside the outline on the
    median slice), some slices are wider still (``ghost_contrast`` >= ``ct_soft_motion_contrast``),
    the net's motion probability is at least ``ct_soft_motion_prob`` and the body does not touch
    the field circle (``rim_touch_med`` < ``ct_confirmed_rim_touch_med``). Any key null: off.

    Why: the generator's motion is an edge-doubling ghost of 4-9 mm applied before the kernel; a
    blurring kernel (sharpness defect) widens every edge to 2-3 px, so the motion slices stand only
    0.4-0.6 px above the rest and the classical contrast limit (0.6) and the net's threshold (0.8;
    0.9 unconfirmed) miss them, while the net still ranks motion first (0.57-0.62). Clean blurred
    series read contrast <= 0.35 or rank 无 first (validation 8300-8303, worn 9204).

    Second reading (session 22, CTM6): a learned 无 with the net's motion at least
    ``ct_width_motion_prob`` reads 运动 when the band's width steps up over a run of slices
    (:func:`_ct_width_step`) on a body the field circle cuts (``rim_touch_med`` >=
    ``ct_cut_motion_touch``; the step then at ``ct_width_motion_cut_px``) or with soft edges
    (``ghost_q50`` >= ``ct_width_motion_q50``): there the axis is unmeasured or blurred and the
    echo weak (i9218 E00530, E00608: net 0.55-0.57 under blur, width t 5.3-6.1, 0.47-0.49 px;
    fresh 9140 E00110, 9151 E00112). Clean cut or blurred series the net ranks at 0.4+ read t < 4
    (9140, 9150-9154); on sharp uncut bodies clean series read up to 9.2 (9154 E00052), so those are
    not read. A cut spine at net 0.84 with a 0.61-px step (i9218 E00092) stays missed: clean cut
    bodies make such plateaus (9142 E00094)."""
    _ct_echo_motion_rule(res, p)  # the cepstral echo first: it needs no net support
    _ct_width_motion_rescue(res, p)
    keys = ("ct_soft_motion_q50", "ct_soft_motion_contrast", "ct_soft_motion_prob")
    if any(p.get(k) is None for k in keys) or res.value != VALUE_OF["none"] or res.method != "learned":
        return
    f = res.features
    touch = p.get("ct_confirmed_rim_touch_med")
    if touch is not None and float(f.get("rim_touch_med", 0.0)) >= float(touch):
        return
    prob = float(res.scores.get("motion", 0.0))
    contrast = float(f.get("ghost_contrast", 0.0))
    if (float(f.get("ghost_q50", 0.0)) < float(p["ct_soft_motion_q50"]) or contrast < float(p["ct_soft_motion_contrast"])
            or prob < float(p["ct_soft_motion_prob"])):
        return
    _overrule(res, "motion", "ghosting", round(contrast, 3), float(p["ct_soft_motion_contrast"]), prob)
    res.extra["soft_edges_px"] = round(float(f.get("ghost_q50", 0.0)), 3)
    _show_strongest_slice(res, "ghost_width")


def _ct_width_motion_rescue(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """The second reading of :func:`_ct_soft_motion_rule` (see there): a learned 无 on a cut or
    blurred body with the net's motion >= ``ct_width_motion_prob`` and the band's width stepping
    up over a run of slices (:func:`_ct_width_step`) reads 运动. Any key null: off."""
    prob_lim, q50_lim, cut = p.get("ct_width_motion_prob"), p.get("ct_width_motion_q50"), p.get("ct_cut_motion_touch")
    if prob_lim is None or res.modality != "CT" or res.value != VALUE_OF["none"] or res.method != "learned":
        return
    f = res.features
    prob = float(res.scores.get("motion", 0.0))
    if prob < float(prob_lim):
        return
    cut_body = cut is not None and float(f.get("rim_touch_med", 0.0)) >= float(cut)
    soft = q50_lim is not None and float(f.get("ghost_q50", 0.0)) >= float(q50_lim)
    if not (cut_body or soft):
        return
    w = _ct_width_step(f, res.extra.get("_per"), p, cut_body=cut_body)
    if w is None:
        return
    _overrule(res, "motion", "ghosting", round(w["ghost_width_t"], 2), float(p["ct_width_motion_t"]), prob)
    res.extra["width_step"] = {k: round(float(v), 3) for k, v in w.items()}
    idx: list[int] = res.extra.get("_idx") or []
    slices = res.extra.get("_slices") or []
    n = len(res.extra.get("_per") or [])
    k = min(n - 1, int(w["ghost_width_first"]) + int(w["ghost_width_run"] * n) // 2)  # the run's middle slice
    if 0 <= k < len(idx):
        res.slice_index = idx[k]
        if k < len(slices):
            res.image = slices[k]


def _ct_axis_step_motion_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A CT series read 无 reads 运动 when two readings of the doubled edges agree:

    - the motion axis steps up over a run of slices (:func:`ct_motion.series_axis_step` of the
      per-slice band harmonics: ``ghost_axis_t`` at least ``ct_axis_step_t``, the height
      ``ghost_axis_step`` at least ``ct_axis_step_px``) on at least ``ct_axis_step_min_slices``
      slices whose axis was measured;
    - the echo on the signal band (``echo_wt``, :func:`ct_motion.series_echo_weighted`) is at
      least ``ct_axis_step_echo_wt``, below its own limit (``ct_echo_wt``).

    Any key null: off. Why: under a blurring kernel the displaced copy's echo weakens (the
    spectrum beyond the blur holds noise only) and the net's ghost-width features read every soft
    edge alike, so blurred motions went to 无 at net 0.0-0.5 (fresh 9214: 5 of its 7 CT 运动 -> 无
    had a blur defect; 8670 E00027: echo t 2.3, weighted 4.0, net 0.51), while the band round the
    outline still doubles along the motion's axis on the moving run. The axis alone is not enough:
    blurred clean bodies change their outline's harmonic along the scan (8870 E00127: axis t 5.81,
    step 2.61; worn i9206 E00318 3.71; 8630 E00069 3.59), but none of those reads a weighted echo
    of 3.0; clean, noisy, blurred, truncated and metal series of eleven sets (worn i9206 ... i9212,
    8500-8870, about 2500 series) with a weighted echo of 2.8+ read axis t <= 3.27 (8671 E00116),
    the blurred motions the other rules missed 3.9-5.9 with weighted 3.9-5.0."""
    lim, px, need, wt = p.get("ct_axis_step_t"), p.get("ct_axis_step_px"), p.get("ct_axis_step_min_slices"), p.get("ct_axis_step_echo_wt")
    if lim is None or px is None or need is None or wt is None or res.modality != "CT" or res.value != VALUE_OF["none"]:
        return
    if float(res.features.get("echo_wt", 0.0)) < float(wt):
        return
    per: list[dict[str, float]] = res.extra.get("_per") or []
    if sum(1 for x in per if float(x.get("ghost_axis_ok", 0.0)) > 0) < int(need):
        return
    a = ct_motion.series_axis_step(per)
    if a["ghost_axis_t"] < float(lim) or a["ghost_axis_step"] < float(px):
        return
    _overrule(res, "motion", "ghosting", round(a["ghost_axis_t"], 2), float(lim), float(res.scores.get("motion", 0.0)))
    res.extra["axis_step"] = {**{k: round(float(v), 3) for k, v in a.items()}, "echo_wt": round(float(res.features.get("echo_wt", 0.0)), 3)}
    idx: list[int] = res.extra.get("_idx") or []
    slices = res.extra.get("_slices") or []
    first = int(a["ghost_axis_first"])
    if 0 <= first < len(idx):  # the evidence: the run's first slice plus half its length
        k = min(len(idx) - 1, first + int(a["ghost_axis_run"] * len(per)) // 2)
        res.slice_index = idx[k]
        if k < len(slices):
            res.image = slices[k]


def _ct_fo_metal_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A CT 异物 needs metal: a series the net read 异物 without ``ct_fo_min_metal_px`` metal
    pixels (>= ``ct_metal_hu``) on any slice reads 无 (null: off).

    Why: every foreign object the generator puts on a patient is metal; the net's 异物 calls with
    no metal voxel at all were clean blurred, off-centre chests reading an unexplained bright
    outlier (worn 9204 E00122 at 0.85-0.90; validation 8300 E00002 at 0.57-0.67, below the
    threshold), while every right 异物 call had 2+ metal pixels. The evidence names the measure."""
    limit = p.get("ct_fo_min_metal_px")
    if limit is None or res.value != VALUE_OF["foreign_object"] or res.method != "learned":
        return
    metal = _metal_px(res.features)
    noise = _ct_noise_metal(res, p)
    if noise is not None:
        _drop_learned(res, {"kind": "foreign_object_on_noise", **noise})
        return
    if metal >= float(limit):
        return
    _drop_learned(res, {"kind": "foreign_object_without_metal", "metal_px": round(metal, 1), "limit": float(limit)})


def _series_noise_sd(res: SeriesArtifact) -> float:
    """The series' body noise: the median ``base_sd`` (MAD of the high-pass residual) of its slices, 0 without any."""
    per = res.extra.get("_per") or []
    return float(np.median([float(x.get("base_sd", 0.0)) for x in per])) if per else 0.0


def _ct_noise_metal(res: SeriesArtifact, p: dict[str, Any]) -> dict[str, Any] | None:
    """The readings when the series' metal is a noise peak, else None: at most
    ``ct_noise_metal_px`` pixels at ``ct_metal_hu`` on any slice of a series whose median body noise
    (``base_sd`` of its slices, the MAD of the high-pass residual) is ``ct_noise_metal_sd`` HU or more
    (either null: off).

    Why: under a sharp kernel with excess noise (SD 260-280 HU against 5-110 on the other series)
    bone at 1500-2000 HU reaches 2500 in single pixels. The net read such a pixel 异物 at 0.81-0.88
    (fresh 9214 E00343: 2 px, SD 262; 8840 E00039: 1 px, SD 281; worn i9212 E00150, 1 px, SD 265,
    read 无), and the on-skin rule read it as metal touching the outside air. Every foreign object
    of 1-2 px on worn h9211, i9210, i9212 and 8620, 8650, 8840 lies on a series with SD 11-108."""
    px_lim, sd_lim = p.get("ct_noise_metal_px"), p.get("ct_noise_metal_sd")
    per: list[dict[str, float]] = res.extra.get("_per") or []
    if px_lim is None or sd_lim is None or not per:
        return None
    metal = _metal_px(res.features)
    if metal < 1 or metal > float(px_lim):
        return None
    sd = _series_noise_sd(res)
    if sd < float(sd_lim):
        return None
    return {"metal_px": round(metal, 1), "noise_sd": round(sd, 1), "limits": [float(px_lim), float(sd_lim)]}


def _ct_enclosed_metal_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A learned CT 异物 on metal wrapped in the body reads 设备 (``ct_fo_enclosed_reads_equipment``;
    false or absent: off): on an axial series, at least ``ct_inside_fraction`` of the metal inside the
    eroded body (``metal_inside_mean``) and the metal's ring below ``ct_metal_air`` outside air
    (``metal_air_max``).

    Why: a foreign object lies on the skin or in the hair (generator 0.1.11 draws the hairpin on the
    scalp), so some of its ring is outside air or it sits at the body's edge; metal deep in the body
    is an implant. The net called aneurysm clips inside the skull 异物 at 1.0 (worn h9209 E00045:
    15 px, inside 1.0, air 0.00; worn i9210 E00025, both series: 6 px, inside 1.0) and a pacemaker
    (worn i9206 E00207: inside 1.0, air 0.00). No foreign-object series of worn i9206, i9208, i9210,
    h9209 or validation 8520 reads inside >= 0.6 with air below 0.4 but the pre-0.1.11 hairpins drawn
    inside the skull (i9208 E00070, E00318, already read 设备); a button on the table reads inside
    0.13 (i9206 E00054). A reformat (not square) is left alone: its body outline is partial.

    The inside limit is ``ct_fo_enclosed_inside`` (null: ``ct_inside_fraction``): pacemakers in the
    chest wall of a 64-px field read inside 0.55-0.57 with no outside air and were read 异物 at
    0.88-1.0 (fresh 9214 E00006, 8840 E00096); every foreign object the net read 异物 reads inside
    0.00-0.02 (worn h9211, i9210, i9212; 8620, 8650, 8840).

    Also on an axial series: metal whose streaks show in the outside air (``streak_air_max`` >=
    ``ct_fo_streak_air_equipment``; null: off) reads 设备 whatever its position. The generator draws
    streaks for implants only; pedicle screws in a 64-96 px targeted field, whose streak bands split
    the body so the metal reads outside it, were read 异物 at 0.98-1.0 with streak_air 48-439 (fresh
    9214 E00257, 8650 E00090, worn i9210 E00194); foreign objects read 0.4-3.0 on axial series."""
    if not p.get("ct_fo_enclosed_reads_equipment") or res.value != VALUE_OF["foreign_object"] or res.method != "learned":
        return
    slices = res.extra.get("_slices") or []
    if slices and np.asarray(slices[0]).shape[0] != np.asarray(slices[0]).shape[1]:
        return
    f = res.features
    # streaks through the air round the patient: an implant's, never a skin object's (ct_fo_streak_air_equipment)
    streak_lim, sair = p.get("ct_fo_streak_air_equipment"), float(f.get("streak_air_max", 0.0))
    inside, air = float(f.get("metal_inside_mean", 0.0)), float(f.get("metal_air_max", 0.0))
    # ... unless the metal's ring is all outside air: an object off the body (a button on the table,
    # fresh 9216 E00243: air 1.00, streak_air 28) cannot be an implant (screws read air 0.33-0.89)
    off_body = p.get("ct_fo_streak_air_off_body")
    if off_body is not None and air >= float(off_body):
        streak_lim = None
    if _metal_px(f) >= 1 and streak_lim is not None and sair >= float(streak_lim):
        _overrule(res, "equipment", "metal", round(sair, 1), float(streak_lim), _sig(sair, float(streak_lim), 2.0))
        _show_strongest_slice(res, "streak_air")
        res.window = (500.0, 3000.0)
        return
    in_lim = float(p.get("ct_fo_enclosed_inside") or p["ct_inside_fraction"])
    if _metal_px(f) < 1 or inside < in_lim or p.get("ct_metal_air") is None or air >= float(p["ct_metal_air"]):
        return
    _overrule(res, "equipment", "metal", round(inside, 3), in_lim, _sig(inside, in_lim, 0.1))
    _show_strongest_slice(res, "metal_px")
    res.window = (500.0, 3000.0)


def _ct_on_skin_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """Metal in contact with the air around the patient makes a series the net read 无 into 异物
    (a button, an ECG electrode, a hairpin on the skin). A 设备 reading turns 异物 only when its
    metal is below ``ct_metal_min_px`` on every slice and not inside the body: the net's metal
    features need that many pixels, the generator's skin objects are 2 px on a 128 px slice, and
    the net saw them as an unexplained bright outlier and called them 设备; a pacemaker in a thin
    patient also touches the outside air, but it is large (14+ px) and keeps 设备 (validation
    8202: 5 pacemakers read 0.28-0.67 outside air). Metal whose ring is mostly outside air
    (``ct_metal_air_open`` or more; null: off) is on the skin whatever its size: buttons and
    electrodes of 5-18 px the net read 设备 at 0.97-1.0 read 0.75-1.0 (worn 9208 E00262, E00280,
    E00298), while no pacemaker or screw of 8410, 8412, worn 9204, 9206 or 9208 read above 0.65
    (the outside air is the air connected to the slice's border: ``outside_air``).

    The other side of the same reading: metal that does not touch the outside air (below
    ``ct_metal_air``) with at least ``ct_implant_min_metal_px`` pixels on one slice makes a 无 reading
    设备 (an implant: a clip, a filling, a screw; null: off). The net needs ``ct_metal_min_px``
    pixels before its metal features count, and small implants (worn 9206 E00332, E00341, E00348:
    2 px) stay below; no clean series of 8410, 8301, worn 9204 or 9206 had 2 metal pixels.

    First: metal that is a noise peak (:func:`_ct_noise_metal`) is not read at all, and a 设备 on metal
    in the skin layer or off the body without streaks reads 异物 (:func:`_ct_skin_layer_metal`).

    Where the ring reaches the outside air: metal whose ring is ``ct_fo_streak_air_off_body`` or more
    outside air is never an implant (``ct_on_skin_off_body``), and a 无 on implant-size metal whose
    streaks reach ``ct_fo_streak_air_equipment`` in the outside air reads 设备 rather than 异物
    (``ct_on_skin_streak_implant``), the readings :func:`_ct_enclosed_metal_rule` applies to a learned 异物."""
    limit = p.get("ct_metal_air")
    measured = float(res.features.get("metal_air_max", 0.0))
    implant_px = p.get("ct_implant_min_metal_px")
    if _ct_noise_metal(res, p) is not None:  # a noise peak on bone is no metal (see _ct_noise_metal)
        return
    if _ct_skin_layer_metal(res, p):
        return
    if implant_px is not None and limit is not None and res.value == VALUE_OF["none"] and measured < float(limit):
        metal_px = _metal_px(res.features)
        if metal_px >= float(implant_px) and p.get("ct_implant_skin_layer_fo") and _in_skin_layer(res.features, p):
            # metal in the skin layer, no streaks through the air: an object on the skin, not an
            # implant (fresh 9216 E00162, a button: 4 px, inside 0.00, air 0.00, streak_air 0.46)
            _overrule(res, "foreign_object", "foreign_object", round(metal_px, 1), float(implant_px), 0.9)
            _show_metal_box(res, _show_strongest_slice(res, "metal_px"))
            return
        if metal_px >= float(implant_px):
            _overrule(res, "equipment", "metal", round(metal_px, 1), float(implant_px), _sig(metal_px, float(implant_px) - 0.5, 0.5))
            _show_metal_box(res, _show_strongest_slice(res, "metal_px"))
            res.window = (500.0, 3000.0)
            return
    if limit is None or measured < float(limit) or res.value in (VALUE_OF["motion"], VALUE_OF["foreign_object"]):
        return
    f = res.features
    implant = (f.get("metal_inside_mean", 0.0) >= float(p["ct_inside_fraction"])
               or f.get("metal_px_max", 0.0) >= math.log1p(float(p["ct_metal_min_px"])))
    # metal mostly surrounded by the outside air is on the skin whatever its size (ct_metal_air_open)
    # and draws no streaks through the air round the patient (ct_metal_streak_air; a pacemaker does)
    open_lim, streak_lim = p.get("ct_metal_air_open"), p.get("ct_metal_streak_air")
    if (implant and open_lim is not None and measured >= float(open_lim)
            and (streak_lim is None or float(res.features.get("streak_air_max", 0.0)) < float(streak_lim))):
        implant = False
    # metal partly in the outside air (from ct_metal_air), none of it inside the eroded body
    # (metal_inside_mean at most ct_metal_air_outside_inside) and no streaks through the air: on the
    # skin, whatever its size (qc-items 7501: 9 of 29 CT exam misses were skin objects of 10-23 px
    # the net read 设备 at 0.86-1.0, inside 0.00, air 0.43-0.68, streak_air 0.8-2.1)
    outside_lim = p.get("ct_metal_air_outside_inside")
    if (implant and outside_lim is not None and streak_lim is not None
            and float(f.get("metal_inside_mean", 0.0)) <= float(outside_lim)
            and float(f.get("streak_air_max", 0.0)) < float(streak_lim)):
        implant = False
    # metal whose ring is all outside air lies off the body whatever its streaks (ct_fo_streak_air_off_body,
    # as in _ct_enclosed_metal_rule): i9218 E00387, a button read 设备 at 0.90 (air 1.00, streak_air 205)
    off_body = p.get("ct_fo_streak_air_off_body") if p.get("ct_on_skin_off_body") else None
    if implant and off_body is not None and measured >= float(off_body):
        implant = False
    if res.value == VALUE_OF["equipment"] and implant:
        return
    # a 无 on implant-size metal that streaks the outside air (ct_fo_streak_air_equipment) is an implant
    # touching the air, not a skin object (i9218 E00390: pedicle screws in a spine pushed to the field's
    # edge, air 0.62, streak_air 208, read 异物), as _ct_enclosed_metal_rule reads a learned 异物
    sair, streak_eq = float(f.get("streak_air_max", 0.0)), p.get("ct_fo_streak_air_equipment") if p.get("ct_on_skin_streak_implant") else None
    if res.value == VALUE_OF["none"] and implant and streak_eq is not None and sair >= float(streak_eq):
        _overrule(res, "equipment", "metal", round(sair, 1), float(streak_eq), _sig(sair, float(streak_eq), 2.0))
        _show_metal_box(res, _show_strongest_slice(res, "streak_air"))
        res.window = (500.0, 3000.0)
        return
    _overrule(res, "foreign_object", "foreign_object", round(measured, 4), float(limit),
              _sig(measured, float(limit), 0.05))
    _show_metal_box(res, _show_strongest_slice(res, "metal_air"))


def _in_skin_layer(f: dict[str, float], p: dict[str, Any]) -> bool:
    """The metal of a series lies in the skin layer or off the body (see :func:`_ct_skin_layer_metal`):
    at least ``ct_metal_min_px`` metal pixels on one slice, below ``ct_skin_layer_inside`` of them inside
    the eroded body, below ``ct_metal_air`` of its ring outside air, and its streaks in the outside air
    measured but below ``ct_metal_streak_air`` (any of those keys null: False)."""
    in_lim, streak_lim, air_lim = p.get("ct_skin_layer_inside"), p.get("ct_metal_streak_air"), p.get("ct_metal_air")
    if in_lim is None or streak_lim is None or air_lim is None:
        return False
    inside, air, sair = float(f.get("metal_inside_mean", 0.0)), float(f.get("metal_air_max", 0.0)), float(f.get("streak_air_max", 0.0))
    if _metal_px(f) < float(p["ct_metal_min_px"]) or inside >= float(in_lim) or air >= float(air_lim):
        return False
    return 0.0 < sair < float(streak_lim)


def _ct_skin_layer_metal(res: SeriesArtifact, p: dict[str, Any]) -> bool:
    """A 设备 reading on metal in the skin layer or off the body reads 异物: at least ``ct_metal_min_px``
    metal pixels on one slice, below ``ct_skin_layer_inside`` of them inside the eroded body
    (``metal_inside_mean``), below ``ct_metal_air`` of its ring outside air, and its streaks in the
    outside air measured (above 0) but below ``ct_metal_streak_air`` (``ct_skin_layer_inside`` or
    ``ct_metal_streak_air`` null: off). True when it changed the series.

    Why: an object on the skin whose ring does not reach the outside air was read 设备 at 0.98-1.0:
    an ECG electrode pressed into the subcutaneous fat (fresh 9214 E00331: inside 0.00, air 0.00,
    streak_air 0.9-1.1) and a button lying off the body whose ring is the clipped undershoot that
    reads as padding (8840 E00021, both series: 0.00 / 0.00 / 0.7). Implants whose metal lies out of
    the eroded body and away from the outside air are pacemakers, and all of them draw streaks there:
    streak_air 4.3-422 (worn i9210 E00063, E00298; i9212 E00025, E00056, E00229, E00248; 8840
    E00071). Clips and screws read inside 0.84-1.0. A streak reading of 0 means no outside air was
    sampled (a field filled by the body), where nothing is known."""
    if res.value != VALUE_OF["equipment"] or not _in_skin_layer(res.features, p):
        return False
    f, in_lim = res.features, float(p["ct_skin_layer_inside"])
    inside, air, sair = float(f.get("metal_inside_mean", 0.0)), float(f.get("metal_air_max", 0.0)), float(f.get("streak_air_max", 0.0))
    _overrule(res, "foreign_object", "foreign_object", round(inside, 3), float(in_lim), _sig(float(in_lim) - inside, 0.0, 0.05))
    res.extra["skin_layer_metal"] = {"inside": round(inside, 3), "outside_air": round(air, 3), "streak_air": round(sair, 2)}
    _show_metal_box(res, _show_strongest_slice(res, "metal_px"))
    return True


def _ct_untouched_veto(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A learned CT 设备 with no metal behind it (no pixel at ``ct_metal_hu``, slice maxima within
    500 HU of each other: what :func:`_learned_evidence` names a truncation) reads 无 when fewer than
    ``ct_trunc_need_touch`` slices have the body touching the stored reconstruction circle
    (:func:`ct_artifact_rules.series_truncation`; null: off). A body that never reaches the field's
    edge cannot be cut by it: worn 9206 E00272 and 9204 E00142 (clean, net 0.90-0.94) touched on no
    slice, while every truncated series the net called on 8410, 9204 and 9206 touched on 3 or more
    but one series of an exam whose other series touched (9206 E00092)."""
    need = p.get("ct_trunc_need_touch")
    slices = res.extra.get("_slices") or []
    if need is None or res.value != VALUE_OF["equipment"] or res.method != "learned" or not slices:
        return
    f = res.features
    if _metal_px(f) >= 1 or float(f.get("hu_outlier", 0.0)) > math.log1p(500):
        return
    t = _series_truncation(res, p)
    if t["trunc_slices"] >= float(need):
        return
    _drop_learned(res, {"kind": "truncation_without_touch", "touching_slices": t["trunc_slices"], "limit": float(need)})


def _ct_rimless_veto(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A learned CT truncation 设备 (no metal, slice maxima within 500 HU of each other) on an axial
    series reads 无 when no reading shows the bright rim a cut leaves: the inscribed band's excess
    (``rim_excess_med``) below ``ct_trunc_norim_excess`` and both ray rims of
    :func:`ct_artifact_rules.series_truncation` (``trunc_rim_med``, ``trunc_rim_near_med``) below
    ``ct_trunc_norim_rays`` (either null: off).

    Why: the generator's truncation adds 150-300 HU fading inward from the circle; a clean
    off-centre body that only touches the circle has fat or skin at the edge and no rim. The net
    read such bodies 设备 at 0.89-0.97 (worn i9212 E00201: excess -1, rays -1 / 0; E00221: 31,
    -8 / -5; E00287: 41, -34 / -16), while every truncated series it called on worn i9212, h9211
    and 8620 read an excess of 50 or more or a ray rim of 14 or more (the head truncations whose ray
    rims read negative, i9212 E00003 and 8620 E00026 / E00050, read excess 55-58: a thin margin).
    A reformat (not square) has no circle and is left alone. The first (band medians) reading of
    :func:`_ct_truncation_rule` asks the same (:func:`_ct_rimless`).

    Also dropped: a learned truncation on a body that only grazes the circle
    (:func:`_ct_tangent_truncation`) with neither ray rim, whatever the band excess."""
    if res.value != VALUE_OF["equipment"] or res.method != "learned":
        return
    no_rim = _ct_rimless(res, p)
    if no_rim is not None:
        _drop_learned(res, {"kind": "truncation_without_rim", **no_rim})
        return
    # a learned truncation on a body that only grazes the circle, without the deep ray rim a cut leaves
    # (metal first: a series with metal never reads the rays here, as in _ct_rimless)
    if _metal_px(res.features) >= 1 or float(res.features.get("hu_outlier", 0.0)) > math.log1p(500):
        return
    graze = _ct_tangent_truncation(res, p)
    if graze is not None:
        # ... when neither ray reading shows a rim (deep below ct_trunc_rim_hu, near below
        # ct_trunc_rim_near_hu): fresh 9152 E00064, a cut grazing at 0.219 with a near rim of 30-38, keeps it
        t = _series_truncation(res, p)
        near = float(t.get("trunc_rim_near_med", 0.0))
        near_lim = p.get("ct_trunc_rim_near_hu")
        if float(t["trunc_rim_med"]) < float(p.get("ct_trunc_rim_hu") or 0.0) and (near_lim is None or near < float(near_lim)):
            _drop_learned(res, {"kind": "truncation_without_rim", "grazing": graze, "ray_rim": round(float(t["trunc_rim_med"]), 1),
                                "near_rim": round(near, 1)})


def _ct_tangent_truncation(res: SeriesArtifact, p: dict[str, Any]) -> dict[str, float] | None:
    """The readings when an axial CT series' body only grazes the stored field circle: the median
    share of the circle's rays that meet the body on its touching slices (``trunc_touch_med`` of
    :func:`ct_artifact_rules.series_truncation`) below ``ct_trunc_min_touch``; else None (null: off;
    a reformat has no circle, and a series touching on no slice is the untouched veto's: None).

    Why: a field smaller than the body cuts it along a long arc on every slice (the truncated series
    of own seeds 9150, 9151, 9153 read 0.30-0.83 but one, 0.18, whose other series reads 0.56), while
    a clean off-centre body pushed against the circle, or a small head filling a 64 px field,
    touches a short arc: 0.13-0.24. There the ray and edge readings read skin over fat or scalp over
    the skull as a rim: validation i9218 E00081 (near rim 83, touch 0.13), E00260 / E00684 (edge
    62-136, touch 0.14-0.16), 9151 E00065 (near rim 133, 0.16), 9153 E00123 (ray rim 39, 0.18); the
    band medians read 58 HU on 9153 E00099 (0.24); and the net read such bodies 设备 at 0.84-0.99
    (i9218 E00549: 0.19, rays -258 / -124; 9151 E00108: 0.20, rays -112 / -11; 9153 E00179: 0.13,
    rays -69 / 64, kept: its near ray rim reads one; 9150 E00141: 0.23). A true cut grazed at 0.219
    (fresh 9152 E00064, net 0.98, near rim 30-38): the veto of a learned call needs both ray rims low.
    The limit (0.22) leaves the two at 0.23-0.24 alone: a margin to the cuts (0.30) and to a body cut
    on two sides only (tests/test_image_qc_ct_foreign.py, 0.23).
    Used by :func:`_ct_truncation_rule` (its band, near-rim and edge readings; the deep ray rim still
    calls: validation i9218 E00472, a partial cut at 0.13 with ray rim 33-37, so 9153 E00123 stays) and
    :func:`_ct_rimless_veto` (a learned
    call with neither ray rim: deep below ``ct_trunc_rim_hu``, near below ``ct_trunc_rim_near_hu``)."""
    lim = p.get("ct_trunc_min_touch")
    slices = res.extra.get("_slices") or []
    if lim is None or not slices or np.asarray(slices[0]).shape[0] != np.asarray(slices[0]).shape[1]:
        return None
    t = _series_truncation(res, p)
    if t["trunc_slices"] < 1 or float(t["trunc_touch_med"]) >= float(lim):
        return None
    return {"trunc_touch_med": round(float(t["trunc_touch_med"]), 3), "limit": float(lim)}


def _ct_rimless(res: SeriesArtifact, p: dict[str, Any]) -> dict[str, Any] | None:
    """The readings of :func:`_ct_rimless_veto` when an axial series without metal shows no rim
    (band excess below ``ct_trunc_norim_excess``, both ray rims below ``ct_trunc_norim_rays``; or
    the excess above its limit but the edge reading of :func:`_series_edge` below
    ``ct_trunc_norim_edge``), else None (a rim, metal, a reformat, or either limit null)."""
    ex_lim, ray_lim = p.get("ct_trunc_norim_excess"), p.get("ct_trunc_norim_rays")
    slices = res.extra.get("_slices") or []
    if ex_lim is None or ray_lim is None or not slices:
        return None
    if np.asarray(slices[0]).shape[0] != np.asarray(slices[0]).shape[1]:
        return None
    f = res.features
    if _metal_px(f) >= 1 or float(f.get("hu_outlier", 0.0)) > math.log1p(500):
        return None
    excess = float(f.get("rim_excess_med", 0.0))
    t = _series_truncation(res, p)
    ray = max(float(t["trunc_rim_med"]), float(t.get("trunc_rim_near_med", 0.0)))
    if ray >= float(ray_lim):
        return None
    if excess >= float(ex_lim):
        # the band excess alone also reads a bright table or bone at the circle (fresh 9214 E00170:
        # 75 HU, rays -3 / -2): where the edge reading (ct_artifact_rules.series_edge) is measured
        # on the series and reads below ct_trunc_norim_edge too, no reading shows a rim (null: off)
        edge_lim = p.get("ct_trunc_norim_edge")
        if edge_lim is None:
            return None
        e = _series_edge(res, p)
        if not _edge_measured(e, p) or float(e["trunc_edge_med"]) >= float(edge_lim):
            return None
        return {"rim_excess_med": round(excess, 1), "ray_rim": round(ray, 1), "edge_rim": round(float(e["trunc_edge_med"]), 1),
                "limits": [float(ex_lim), float(ray_lim), float(edge_lim)]}
    return {"rim_excess_med": round(excess, 1), "ray_rim": round(ray, 1), "limits": [float(ex_lim), float(ray_lim)]}


def _series_edge(res: SeriesArtifact, p: dict[str, Any]) -> dict[str, float]:
    """:func:`ct_artifact_rules.series_edge` of the series' slices (the rimless check and the third
    truncation reading both read it)."""
    work_px = int(p.get("ct_work_px", 128))
    return _once_per_series(res, "_edge", "truncation_edge", lambda slices: series_edge(slices, work_px))


def _edge_measured(e: dict[str, float], p: dict[str, Any]) -> bool:
    """Whether the edge reading stands on enough slices: ``ct_trunc_min_slices`` and
    ``ct_trunc_min_frac`` of the slices it read (the ray readings' own conditions)."""
    return e["trunc_edge_slices"] >= float(p.get("ct_trunc_min_slices", 3)) and e["trunc_edge_frac"] >= float(p.get("ct_trunc_min_frac", 0.4))


def _ct_truncation_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A bright rim along the field-of-view circle on most slices makes a CT series the net read
    无 into 设备 (truncation). The net weighs the largest rim touch and excess of any slice, which
    clean large patients also reach on a slice or two; a body cut by a reduced reconstruction
    field touches the circle on every slice with the rim consistently brighter than the tissue
    inside it, so the series' medians decide: ``rim_touch_med`` >= ``ct_trunc_touch_med`` and
    ``rim_excess_med`` >= ``ct_trunc_excess_med`` (either null: off).

    Second reading, on the series' slices (:func:`ct_artifact_rules.series_truncation`): the rim
    read along rays from the reconstruction circle actually stored (fitted to the padding, so a
    field smaller than the matrix or off its centre is measured where it is), soft tissue only,
    on the slices whose body touches that circle. ``ct_trunc_rim_hu`` (null: off) is the median rim
    it needs, on at least ``ct_trunc_min_slices`` slices and ``ct_trunc_min_frac`` of the series:
    the medians above read the inscribed circle's whole band and miss bodies cut on one side or on
    part of the series (worn 9204 E00087: rim 158-378 HU, touch median 0.02-0.08). Or the rim
    against the tissue right under it (``trunc_rim_near_med`` >= ``ct_trunc_rim_near_hu``; null:
    off), for a cut through subcutaneous fat over muscle (worn 9208 E00021).
    Or, with both ray rims below their limits, the outermost pixel against the 1.5-3 px under it
    (:func:`_ct_edge_truncation`), for a cut through a fat layer thinner than the near band (fresh 9214
    E00083, E00315; 9213 E00028, E00047).

    The first reading also needs a rim (:func:`_ct_rimless` reads none: band excess below
    ``ct_trunc_norim_excess`` and ray rims below ``ct_trunc_norim_rays``) and, where the net decided,
    its equipment probability at ``ct_trunc_med_min_prob`` (null: always): the inscribed band reads
    the skull of an off-centre head at the field edge as a rim (worn i9212 E00044: 70 HU, net 0.006;
    worn h9209 E00046: 80 HU, net 0.03; worn i9210 E00279: 32-38 HU, ray rims -14..-6)."""
    touch_lim, excess_lim = p.get("ct_trunc_touch_med"), p.get("ct_trunc_excess_med")
    _ct_untouched_veto(res, p)
    _ct_rimless_veto(res, p)
    if res.value != VALUE_OF["none"]:
        return
    slices = res.extra.get("_slices") or []
    # the band medians read the skull of an off-centre head at the field edge as a rim: where the net
    # decided, they need its equipment probability at ct_trunc_med_min_prob (null: always); a call the
    # rimless veto just dropped is not made again from the same band
    min_prob = p.get("ct_trunc_med_min_prob")
    netted = "classical_value" in res.extra
    if min_prob is not None and netted and float(res.scores.get("equipment", 0.0)) < float(min_prob):
        touch_lim = None
    if (res.extra.get("dropped") or {}).get("kind") == "truncation_without_rim":
        touch_lim = None
    # a reformat (coronal/sagittal MPR: not square) has no reconstruction circle: the inscribed
    # circle's medians read its body edges (worn 9204 E00142, a 24x96 MPR: touch 0.43, excess 38 HU)
    axial = not slices or np.asarray(slices[0]).shape[0] == np.asarray(slices[0]).shape[1]
    if touch_lim is not None and excess_lim is not None and axial:
        touch, excess = float(res.features.get("rim_touch_med", 0.0)), float(res.features.get("rim_excess_med", 0.0))
        if (touch >= float(touch_lim) and excess >= float(excess_lim) and _ct_rimless(res, p) is None
                and _ct_tangent_truncation(res, p) is None):
            _overrule(res, "equipment", "truncation", round(excess, 1), float(excess_lim), _sig(excess, float(excess_lim), 10.0))
            _show_strongest_slice(res, "rim_touch")
            return
    rim_lim = p.get("ct_trunc_rim_hu")
    if rim_lim is None or not slices:
        return
    t = _series_truncation(res, p)
    if t["trunc_slices"] < float(p.get("ct_trunc_min_slices", 3)) or t["trunc_frac"] < float(p.get("ct_trunc_min_frac", 0.4)):
        return
    # the rim against the tissue right under it (a cut through subcutaneous fat; null: off)
    near_lim = p.get("ct_trunc_rim_near_hu")
    if t["trunc_rim_med"] >= float(rim_lim):
        _overrule(res, "equipment", "truncation", round(t["trunc_rim_med"], 1), float(rim_lim), _sig(t["trunc_rim_med"], float(rim_lim), 10.0))
    elif _ct_tangent_truncation(res, p) is not None:
        # a body that only grazes the circle: the near and edge readings read skin over fat or scalp
        # over the skull there; the deep ray rim still calls (i9218 E00472, a partial cut at touch 0.13,
        # ray rim 33-37) (see _ct_tangent_truncation; null: off)
        return
    elif near_lim is not None and t.get("trunc_rim_near_med", 0.0) >= float(near_lim):
        near = float(t["trunc_rim_near_med"])
        _overrule(res, "equipment", "truncation", round(near, 1), float(near_lim), _sig(near, float(near_lim), 10.0))
    elif not _ct_edge_truncation(res, p):
        return
    k = int(t["trunc_slice"])
    idx = res.extra.get("_idx") or []
    if 0 <= k < len(slices):
        res.slice_index = idx[k] if k < len(idx) else None
        res.image = slices[k]


def _ct_edge_truncation(res: SeriesArtifact, p: dict[str, Any]) -> bool:
    """Third truncation reading of :func:`_ct_truncation_rule` (its slice conditions met, both ray
    rims below their limits): the rim of the outermost pixel against the tissue 1.5-3 px under it
    (:func:`ct_artifact_rules.series_edge`). A series without metal reads 设备 (truncation) when that
    median is at least ``ct_trunc_edge_hu`` and at least ``ct_trunc_edge_noise`` times the series'
    body noise (median ``base_sd`` of its slices), on at least ``ct_trunc_min_slices`` slices and
    ``ct_trunc_min_frac`` of those read (either key null: off). Returns whether it called.

    Why: on small matrices the generator's rim fades within one or two pixels; where the field cuts a
    3-4 px fat layer over muscle the deeper readings compare the rim with muscle and read -30..-105 HU
    (fresh 9214 E00083, E00315, 9213 E00028 / E00047: net 0.00-0.46, read 无), while the outermost
    pixel stands 32-37 HU above the fat right under it. Clean series touching the circle with noise
    under 150 HU read at most 15 HU on 8650, 8810 and worn h9211 and 22 HU on worn i9212 (E00044,
    E00287): the limit 27 lies between. Noisier clean series reach 35 HU, but at 0.15 of their noise
    (8810 E00082, noise 234 HU), while the true cuts read 0.68 or more of theirs. A call the rimless
    veto just dropped is not made again."""
    lim, ratio = p.get("ct_trunc_edge_hu"), p.get("ct_trunc_edge_noise")
    slices = res.extra.get("_slices") or []
    if lim is None or ratio is None or not slices or _metal_px(res.features) >= 1:
        return False
    if (res.extra.get("dropped") or {}).get("kind") == "truncation_without_rim":
        return False
    e = _series_edge(res, p)
    noise = _series_noise_sd(res)
    edge = float(e["trunc_edge_med"])
    if not _edge_measured(e, p):
        return False
    if edge < float(lim) or edge < float(ratio) * noise:
        return False
    _overrule(res, "equipment", "truncation", round(edge, 1), float(lim), _sig(edge, float(lim), 5.0))
    return True


def _ct_bright_implant_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A CT series read 无 reads 设备 (metal) when one slice holds a blurred implant below the metal
    threshold (:func:`ct_artifact_rules.bright_outlier`): no slice with ``ct_bright_max_metal_px`` metal
    pixels (null: ``ct_metal_min_px``), at least ``ct_bright_min_slices`` slices, the series' highest slice maximum at least
    ``ct_bright_excess_hu`` above the 75th percentile of its slice maxima, and the bright object
    away from the skin (depth at least ``ct_bright_depth`` of the body's radius) or drawing streaks
    through the outside air (``ct_bright_streak_air``, as ``ct_fo_streak_air_equipment``). Any of the
    first three keys null: off.

    Why: clips and pedicle screws blurred to 1900-2500 HU leave every metal measure at 0 and the net
    reads 无 (fresh 9216 E00033, E00181: excess 1228-1294, depth 0.47-0.49; worn 9210 E00063: 1175,
    streaks 209 in the air). Clean and motion series of 8650, 8810 and worn 9210-9214 (1100 series)
    read at most 858 (4-slice reformats; 720 on 9+ slices), and the skin objects that reach
    1000 (buttons, electrodes: 8810 E00001, worn 9210 E00124, E00304; 8840 E00026) lie at depth 0.05-0.12 with
    streaks below 1. Short reformats are left out: their few slices make the quartile a soft-tissue
    level.

    The other side (``ct_bright_skin_fo``; false: off): the same outlier shallower than
    ``ct_bright_depth`` with streaks in the air below ``ct_metal_streak_air`` is a blurred object on
    the skin and reads 异物 (validation i9218 E00477, an ECG electrode: excess 1095, depth 0.04,
    streaks 0.8; E00742, a button: 1080, 0.04, 0.6; E00234, a necklace at the field's edge). Cost: the maxima are already measured; one slice is labelled only past the excess limit."""
    lim, n_min, depth_lim = p.get("ct_bright_excess_hu"), p.get("ct_bright_min_slices"), p.get("ct_bright_depth")
    if lim is None or n_min is None or depth_lim is None or res.value != VALUE_OF["none"]:
        return
    per: list[dict[str, float]] = res.extra.get("_per") or []
    slices = res.extra.get("_slices") or []
    if len(per) < int(n_min) or len(slices) != len(per):
        return
    if _metal_px(res.features) >= float(p.get("ct_bright_max_metal_px") or p["ct_metal_min_px"]):
        return  # metal that reached ct_metal_hu: the metal rules judge it (implant path, skin layer)
    b = bright_outlier(slices, [x.get("hu_max", 0.0) for x in per], float(lim))
    res.extra["bright"] = {k: round(v, 3) for k, v in b.items()}
    if b["bright_excess"] < float(lim) or b["bright_px"] < 1:
        return
    streak_lim = p.get("ct_bright_streak_air")
    deep = b["bright_depth"] >= float(depth_lim)
    streaks = streak_lim is not None and b["bright_streak_air"] >= float(streak_lim)
    if not (deep or streaks):
        # on the skin (or at the field's edge) without streaks through the air: a blurred button or
        # electrode (ct_bright_skin_fo; false: off), as the skin-layer reading of the metal rules
        skin_streak = p.get("ct_metal_streak_air")
        if p.get("ct_bright_skin_fo") and b["bright_depth"] >= 0.0 and (skin_streak is None or b["bright_streak_air"] < float(skin_streak)):
            _overrule(res, "foreign_object", "foreign_object", round(b["bright_excess"], 1), float(lim), _sig(b["bright_excess"], float(lim), 100.0))
            _show_strongest_slice(res, "hu_max")
        return
    _overrule(res, "equipment", "metal", round(b["bright_excess"], 1), float(lim), _sig(b["bright_excess"], float(lim), 100.0))
    _show_strongest_slice(res, "hu_max")
    res.window = (500.0, 3000.0)


def _mr_equipment_void_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A learned MR 设备 without any susceptibility void reads 无 (``mr_equipment_needs_void``;
    false or absent: off): neither a dark hole with its pile-up crescent (``void_crescent_max``
    above 0) nor the older dark-hole measure at its own limit (``void_max`` >= ``mr_void_px_frac``).

    Why: MR equipment artifacts in this product are metal, and metal shows as a void; the net's
    equipment probability on MR is weak (on i9206/i9208/8420/8421 it reached 0.80 on clean series
    as often as on metal ones), and it fires where the classical reading is 运动 and its own
    threshold applies: worn i9208 E00284, a clean sagittal T1 (net 设备 0.82, no void at all).
    Every right MR 设备 call on those sets came from a void measure. The replica and crescent
    rules run after this one and decide on their own evidence."""
    if not p.get("mr_equipment_needs_void") or res.value != VALUE_OF["equipment"] or res.method != "learned":
        return
    crescent = float(res.features.get("void_crescent_max", 0.0))
    void = float(res.features.get("void_max", 0.0))
    if crescent > 0.0 or void >= float(p.get("mr_void_px_frac", 0.02)):
        return
    _drop_learned(res, {"rule": "mr_equipment_without_void", "void_crescent_max": round(crescent, 4),
                        "void_max": round(void, 4)})


def _mr_replica_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """Phase-encode ghost replicas above the limit make the series 运动, whatever the learned net
    said: the net weighs background ghost energy only, which is zero where the object fills the
    field along the phase-encode axis (sagittal spines and knees), and the replica measure was
    chosen on validation to stay below the limit on every clean series.

    An axial series (``plane_axial`` 1) is held to at least ``mr_ghost_lag_axial`` (null: the
    item's limit alone): an item's lowered limit (the knee's 0.17, mr.yaml) was chosen on the
    sagittal series where its replicas land on the anatomy; an axial knee slice is a round
    cross-section in air, whose symmetric condyles and blur or noise raise the replica peak on
    clean series (0.071-0.146 on twelve cached sets; blurred i9214 E00196 0.172, noisy t8960
    E00006 0.19) while every knee ghost of those sets was drawn in a sagittal series.

    A sagittal or coronal series without fat suppression whose background ghost ``ghost_q75`` is
    below ``mr_ghost_lag_support_q75`` is held to at least ``mr_ghost_lag_unsuppressed`` (either
    null: off; set for MR-KNEE in mr.yaml): a knee T1's bright marrow and fat against dark cortex
    correlate at the replica lags by themselves. Clean knee T1 sagittals read 0.170-0.205 (t8711
    E00037, t8962 E00129, worn i9212 E00206, t8710 E00066, 8421 E00144) with ``ghost_q75`` 0.0-0.073;
    the ghosted T1 sagittals under 0.22 read ``ghost_q75`` 0.051 and 0.287 (8420 E00074, h9207 E00034)."""
    limit = p.get("mr_ghost_lag")
    axial_floor = p.get("mr_ghost_lag_axial")
    if limit is not None and axial_floor is not None and float(res.features.get("plane_axial", -1.0)) == 1.0:
        limit = max(float(limit), float(axial_floor))
    # a sagittal/coronal series without fat suppression needs a background ghost beside a replica
    # reading under ``mr_ghost_lag_unsuppressed`` (null: off; see the docstring's last paragraph)
    plain_lim, support = p.get("mr_ghost_lag_unsuppressed"), p.get("mr_ghost_lag_support_q75")
    if (limit is not None and plain_lim is not None and support is not None
            and float(res.features.get("plane_axial", -1.0)) == 0.0 and not res.features.get("fat_suppressed")
            and float(res.features.get("ghost_q75", 0.0)) < float(support)):
        limit = max(float(limit), float(plain_lim))
    measured = float(res.features.get("ghost_lag_med", 0.0))
    if limit is None or measured < float(limit) or res.value == VALUE_OF["motion"]:
        return
    _overrule(res, "motion", "ghost_replicas", round(measured, 4), float(limit), _sig(measured, float(limit), 0.03))
    _show_strongest_slice(res, "ghost_lag")


def _mr_axial_ghost_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """An axial MR series read 无 becomes 运动 when both classical ghost readings back it: the
    background ghost ``ghost_q75`` at ``mr_axial_ghost_q75`` or more and the replica measure
    ``ghost_lag_med`` at ``mr_axial_ghost_lag`` or more (either null: off).

    Why: on an axial slice the background round the head or knee is air, so the background-ghost
    measure reads the ghost itself (on sagittal/coronal slices the neck and trunk fill that band:
    :func:`_mr_ghost_replica_support_rule`); a moving patient's replicas raise the replica
    measure as well, below the replica rule's own limit when they are faint. The net weighed a
    ghosted axial T1 (h9213 E00023: ``ghost_q75`` 0.44, ``ghost_lag_med`` 0.24) at 0.05. On
    fifteen cached sets (worn i9206-i9212, h9205-h9211, 8420/8421, t8580, t8710/8711, t8960) no
    axial series of an exam without motion read ``ghost_q75`` >= 0.26 with ``ghost_lag_med`` >=
    0.14 (nearest: 0.259 / 0.136, 0.219 / 0.157), and every series that read both >= 0.25 / 0.15
    was a ghosted one (64)."""
    q_lim, lag_lim = p.get("mr_axial_ghost_q75"), p.get("mr_axial_ghost_lag")
    if q_lim is None or lag_lim is None or res.value != VALUE_OF["none"]:
        return
    if float(res.features.get("plane_axial", -1.0)) != 1.0:
        return
    q75, lag = float(res.features.get("ghost_q75", 0.0)), float(res.features.get("ghost_lag_med", 0.0))
    if q75 < float(q_lim) or lag < float(lag_lim):
        return
    _overrule(res, "motion", "ghosting", round(q75, 4), float(q_lim), _sig(q75, float(q_lim), 0.02))
    _show_strongest_slice(res, "ghost")


def _mr_ghost_replica_support_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A sagittal or coronal MR series read 运动 on its background ghost (the net or ``ghost_q75``),
    not on ghost replicas, reads 无 when its replica measure (``ghost_lag_med``) is below
    ``mr_nonaxial_ghost_min_lag`` (null: off). Axial series and series of unknown plane keep the call.

    Why: on sagittal and coronal slices the body runs on beyond the head or spine along the
    superior-inferior axis (neck, shoulders, trunk), so the band beside the bright object that the
    background-ghost measure takes as air holds tissue; post-contrast and FLAIR T1 and STIR sagittals
    of clean exams read ``ghost_q75`` 0.35-0.54 and the net 0.91-1.0 there (t8710 E00060, i9208
    E00159, t8580 E00005, i9206 E00070, 8420 E00004, 8421 E00028 / E00238) with ``ghost_lag_med``
    at most 0.115. A moving patient's phase errors replicate the whole object, which the replica
    measure reads wherever the copies land: every ghosted sagittal series of the eleven sets read
    0.247 or more."""
    floor = p.get("mr_nonaxial_ghost_min_lag")
    if floor is None or res.value != VALUE_OF["motion"] or res.kind == "ghost_replicas":
        return
    if float(res.features.get("plane_axial", -1.0)) != 0.0:
        return
    lag = float(res.features.get("ghost_lag_med", 0.0))
    if lag >= float(floor):
        return
    _drop_learned(res, {"rule": "mr_nonaxial_ghost_without_replicas", "ghost_lag_med": round(lag, 4),
                        "limit": float(floor), "ghost_q75": round(float(res.features.get("ghost_q75", 0.0)), 4)})


def _mr_void_net(p: dict[str, Any]) -> Any:
    """The MR susceptibility-void CNN, unless switched off (``mr_void_net``) or every learned model is (``use_model``)."""
    if not p.get("mr_void_net") or not p.get("use_model", True):
        return None
    return _shared_model("radqc.models.artifact.mr_void", "MrVoidNet")


def _mr_void_net_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """An MR series every other reading left 无 whose slices the void CNN
    (``models/artifact/mr_void.py``) reads as holding a susceptibility void at ``mr_void_net_limit``
    or more reads 设备, pointing at the slice and place of the net's strongest response; the
    probability is kept as the feature ``void_net`` either way.

    Why the pixels decide here: the measured void needs a dark hole and a bright pile-up crescent
    above fixed limits, and a small implant on a coarse matrix, or a void blurred by a second
    defect, stays under both (MR 设备 -> 无: 11 exams on qc-items 7501-7503, 4 on held-out 9222).
    Only adds: the measured void readings keep their own calls, and computed maps (ADC) are left
    to their DWI, as the crescent rule leaves them (``mr_void_skip_computed_map``)."""
    net = _mr_void_net(p)
    slices = res.extra.get("_slices") or []
    if net is None or not slices or res.value != VALUE_OF["none"]:
        return
    if p.get("mr_void_skip_computed_map", True) and res.features.get("computed_map", 0.0) >= 1.0:
        return
    try:
        prob, (k, row, col) = net.probability(slices, res.extra.get("_spacing"))
    except Exception as exc:  # noqa: BLE001 - slices the net cannot read: the measured features decide
        log.warning("MR void net failed on series %s (%s)", res.series_uid, exc)
        return
    res.features["void_net"] = round(prob, 4)
    limit = p.get("mr_void_net_limit")
    limit = float(limit) if limit is not None else net.limit
    if prob < limit:
        return
    _overrule(res, "equipment", "susceptibility_void", round(prob, 3), limit, prob)
    _point_at_net_peak(res, slices, k, row, col, float(p.get("mr_void_net_box_px", 12)))


def _point_at_net_peak(res: SeriesArtifact, slices: Sequence[np.ndarray], k: int, row: float, col: float, half: float) -> None:
    """A pixel CNN's call: the evidence is the read slice ``k`` and a box of ``half`` pixels each
    way round the net's strongest cell (``row``, ``col`` in the slice's own pixels)."""
    res.method = "learned"
    idx: list[int] = res.extra.get("_idx") or []
    res.slice_index = idx[k] if k < len(idx) else None
    res.image = slices[k]
    res.box = [max(0.0, row - half), max(0.0, col - half), row + half, col + half]


def _ct_net(p: dict[str, Any]) -> Any:
    """The CT artifact CNN, unless switched off (``ct_net``) or every learned model is (``use_model``)."""
    if not p.get("ct_net") or not p.get("use_model", True):
        return None
    return _shared_model("radqc.models.artifact.ct_net", "CtArtifactNet")


#: the CT net's classes that may turn a 无 series, in the order they are tried (the stricter first)
CT_NET_CALLS = (("motion", "motion_ghost_net"), ("equipment", "equipment_net"))


def _ct_net_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A CT series every measured reading left 无 whose slices the CT artifact CNN
    (``models/artifact/ct_net.py``) reads as moved or as carrying an equipment artifact (metal
    streaks, a body cut by the field) at its limit or more reads 运动 or 设备, boxed at the net's
    strongest response (``ct_net_box_px`` each way); the probabilities are kept as the features
    ``motion_net`` and ``equipment_net`` either way.

    Why the pixels decide here: each measured CT feature has its own limit, and a mild ghost, a small
    clip with weak streaks or a body just touching the field stays under all of them (held-out
    9223: 设备 -> 无 9 exams, 运动 -> 无 7). Only adds: a measured call stays as it was.
    ``ct_net_limits`` (per class; null: the registered ones, chosen on validation; false: that class
    is never called). Motion counts only when at most ``ct_net_motion_part_max`` of the read slices
    show it (null: the registered share): a blurred series is soft on every slice, a moved one on
    part of the scan. The shipped limits call motion only, strictly (artifact.yaml, session 26): at
    the registered limits, chosen on an artifact-heavy mix, its false calls outnumbered its fixes on
    the realistic held-out 9225 (session 25)."""
    net = _ct_net(p)
    slices = res.extra.get("_slices") or []
    if net is None or not slices or res.value != VALUE_OF["none"]:
        return
    try:
        probs, where, share = net.probabilities(slices, res.extra.get("_spacing"))
    except Exception as exc:  # noqa: BLE001 - slices the net cannot read: the measured features decide
        log.warning("CT artifact net failed on series %s (%s)", res.series_uid, exc)
        return
    for cls, _ in CT_NET_CALLS:
        res.features[f"{cls}_net"] = round(probs.get(cls, 0.0), 4)
        res.features[f"{cls}_net_share"] = round(share.get(cls, 0.0), 4)
    limits = p.get("ct_net_limits") or {}
    part_max = p.get("ct_net_motion_part_max")
    part_max = float(part_max) if part_max is not None else net.motion_part_max
    for cls, kind in CT_NET_CALLS:
        limit = limits.get(cls)
        if limit is False:  # this class is never called from the pixels (its probability is still kept)
            continue
        limit = float(limit) if limit is not None else net.limit(cls)
        prob = probs.get(cls, 0.0)
        if prob < limit or (cls == "motion" and share.get(cls, 0.0) > part_max):
            continue
        _overrule(res, cls, kind, round(prob, 3), limit, prob)
        k, row, col = where[cls]
        _point_at_net_peak(res, slices, k, row, col, float(p.get("ct_net_box_px", 16)))
        res.window = (40.0, 400.0) if cls == "motion" else (500.0, 3000.0)
        return


def _dx_motion_net(p: dict[str, Any]) -> Any:
    """The radiograph motion CNN, unless switched off (``dx_motion_net``) or every learned model is (``use_model``)."""
    if not p.get("dx_motion_net") or not p.get("use_model", True):
        return None
    return _shared_model("radqc.models.artifact.dx_motion", "DxMotionNet")


def _dx_motion_net_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A radiograph view whose pixels the motion CNN (``models/artifact/dx_motion.py``) reads as
    smeared at ``dx_motion_net_limit`` or more reads 运动; its probability is kept as the feature
    ``motion_net`` either way.

    Why the pixels decide here: the smear of a moving patient is sharp across and soft along one
    axis under noise that is sharp in both, and the measured features (gradient anisotropy, the
    directional spectrum) confuse it with anisotropic anatomy. Before the CNN, radiograph motion
    was the largest single artifact miss (运动 -> 无: 25 of 1,800 qc-items exams of seeds
    7501/7502, recall 0.43-0.74; a 10-px smear of a C-spine AP read 异物 by the feature net).
    Only adds: a motion call of the rules the CNN does not back stays (the validation set had none
    to learn a veto from)."""
    net = _dx_motion_net(p)
    img = res.image
    if net is None or img is None or np.ndim(img) != 2 or min(np.shape(img)) < int(p.get("dx_motion_net_min_px") or 0):
        return
    try:
        prob = net.probability(np.asarray(img, dtype=np.float32))
    except Exception as exc:  # noqa: BLE001 - a view the net cannot read: the features decide
        log.warning("radiograph motion net failed on series %s (%s)", res.series_uid, exc)
        return
    res.features["motion_net"] = round(prob, 4)
    limit = p.get("dx_motion_net_limit")
    limit = float(limit) if limit is not None else net.limit
    if prob < limit or res.value == VALUE_OF["motion"]:
        return
    _overrule(res, "motion", "motion_smear", round(prob, 3), limit, prob)
    res.method = "learned"
    res.slice_index = 0


def _dx_object_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """Saturated compact objects inside the field make a radiograph the net read 无 into
    异物 (steel beads, clips, buttons, electrodes: :func:`dx_saturated_objects`). Only a 无 reading
    changes: a grid-line or motion finding is the stricter value of the scoring table anyway.

    The reverse (``dx_net_object_min_sat``, null: off): the net's own 异物 with fewer saturated blobs
    than that and no classical 异物 beside it reads 无. Steel saturates (generator 0.1.5: ~40x water,
    left out of the console's normalisation); the net's 异物 probability carries no steel evidence
    of its own: on 39 foreign-object exams of the DXM3/DXM4 dumps it never reached 0.6, while clean
    blurred chests reach 0.9-0.98 (worn i9218 E00329 PA: 0.98, no saturated pixel)."""
    limit = p.get("dx_sat_objects")
    measured = float(res.features.get("fo_sat_n", 0.0))
    floor = p.get("dx_net_object_min_sat")
    if (floor is not None and res.value == VALUE_OF["foreign_object"] and measured < float(floor)
            and res.extra.get("classical_value") == VALUE_OF["none"] and "learned_value" not in res.extra):
        _drop_learned(res, {"rule": "dx_net_object_without_steel", "fo_sat_n": measured, "limit": float(floor)})
        return
    # ``dx_sat_soft_pair`` strict blobs and the limit plus ``dx_sat_soft_extra`` blobs at the softer
    # limits (``fo_sat_soft_n``) count as the limit: steel over the heart or spine (worn i9218 E00007:
    # a bra clip's dashes, 2 strict and 4 soft; t9150 E00102: buttons, 2 and 4)
    if limit is None:
        return
    lim = float(limit)
    extra, pair = p.get("dx_sat_soft_extra"), p.get("dx_sat_soft_pair")
    soft_n = None if extra is None else lim + float(extra)
    soft = (soft_n is not None and pair is not None and float(pair) <= measured < lim
            and float(res.features.get("fo_sat_soft_n", 0.0)) >= soft_n)
    if (measured < lim and not soft) or res.value != VALUE_OF["none"]:
        return
    _overrule(res, "foreign_object", "foreign_object", measured, lim, _sig(max(measured, lim), lim - 0.5, 0.5))
    if soft and soft_n is not None:
        res.extra["soft_objects"] = {"fo_sat_soft_n": float(res.features.get("fo_sat_soft_n", 0.0)), "limit": soft_n}
    res.slice_index, res.box = 0, res.extra.get("_sat_box")


def _dx_grid_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """Grid lines in (nearly) every row make a radiograph the net read 无 or 运动 into 设备
    (``grid_rows`` >= ``dx_grid_strong``; null: off).

    Why: the row-by-row phase consistency of a period 2-8 column pattern is the grid itself, while
    the net weighs spectral measures that the grid's columns corrupt: they add horizontal power,
    which reads as missing vertical detail (motion). Worn i9206 E00184 (net 运动 0.86) and h9205
    E00061 (net 设备 0.73, below its threshold, then 异物 by two saturated grid crossings) read
    0.82; every grid view of 8460/i9206/h9205 reads >= 0.80 and every other view <= 0.54 (motion
    views <= 0.48). A 异物 reading stays (steel is not explained by a grid)."""
    limit = p.get("dx_grid_strong")
    measured = float(res.features.get("grid_rows", 0.0))
    if limit is None or measured < float(limit) or res.value not in (VALUE_OF["none"], VALUE_OF["motion"]):
        return
    _overrule(res, "equipment", "grid_lines", round(measured, 3), float(limit), _sig(measured, float(limit), 0.05))
    res.slice_index = 0


def dx_nyquist_score(features: dict[str, float], p: dict[str, Any]) -> float:
    """The short-smear reading of :func:`dx_nyquist_smear`: ``nyq_fx - dx_motion_nyquist_fy_weight
    * nyq_fy`` (anatomy kept on the horizontal Nyquist line, less the weighted anatomy left on the
    vertical one: a clean view with strong horizontal-line anatomy also keeps some on the vertical
    line, a smeared one keeps none). ``nyq_fy`` counts from 0 up: a flat line is the smear's
    reading, and a line with less power at low fx than at its corner (blurred or noise-bound views,
    down to -0.5) is no stronger evidence of a smear than a flat one."""
    weight = float(p.get("dx_motion_nyquist_fy_weight", 2.0))
    return float(features.get("nyq_fx", 0.0)) - weight * max(float(features.get("nyq_fy", 0.0)), 0.0)


def _dx_nyquist_motion_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A radiograph read 无 becomes 运动 when its vertical Nyquist line is flat while the horizontal
    one keeps the anatomy (:func:`dx_nyquist_score` at ``dx_motion_nyquist`` or more; null: off).

    Why: a smear of 2-4 px removes the detail at 0.5 cycles/px along the columns but little of the
    mid band that ``vspec_rel`` and the net weigh, so the short smears of small coarse views were
    missed (worn h9211 E00009 and E00095, i9212 E00233 and E00321: net 0.00-0.15). Runs before the
    grid rule (grid columns are 设备 whatever this reads); only a 无 reading changes."""
    _dx_short_smear(res, p, "nyq_fy", "dx_motion_nyquist")


def _dx_short_smear(res: SeriesArtifact, p: dict[str, Any], fy_key: str, limit_key: str) -> None:
    """The short-smear call on one band of the vertical Nyquist line (``fy_key``): a 无 reads 运动
    when that band is flat (at most ``dx_motion_nyquist_max_fy``) and :func:`dx_nyquist_score` of it
    reaches ``p[limit_key]`` (null or the feature absent: off)."""
    limit = p.get(limit_key)
    if limit is None or res.value != VALUE_OF["none"] or fy_key not in res.features:
        return
    fy = float(res.features[fy_key])
    if fy > float(p.get("dx_motion_nyquist_max_fy", 1e9)):
        return
    measured = dx_nyquist_score({"nyq_fx": res.features.get("nyq_fx", 0.0), "nyq_fy": fy}, p)
    if measured < float(limit):
        return
    _overrule(res, "motion", "short_smear", round(measured, 3), float(limit), _sig(measured, float(limit), 0.2))
    res.slice_index = 0


def _dx_nyquist_edge_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A radiograph read 无 becomes 运动 when the last rows of its vertical Nyquist line are flat
    (``nyq_fy_edge`` at most ``dx_motion_nyquist_max_fy``) while the horizontal line keeps the
    anatomy: ``nyq_fx - fy_weight * max(nyq_fy_edge, 0)`` at ``dx_motion_nyquist_edge`` or more
    (null: off). The short-smear rule (:func:`_dx_nyquist_motion_rule`) with the narrow band.

    Why: a 2-px box removes all of the power at 0.5 cycles/px but passes 3.5% at 0.44, and on a
    view with strong low-fx anatomy (a small chest's ribs) that keeps ``nyq_fy`` above the short-
    smear rule's 0.15 (fresh d8933 E00109, a 2-px smear of a 128 px chest PA: ``nyq_fy`` 0.61,
    ``nyq_fy_edge`` 0.03; worn i9212 E00321). The narrow band holds fewer samples and clean views
    read flat there more often, so the limit is higher than the short-smear rule's 1.0: of about
    1,500 views of exams without motion (fresh t8930-t8932, d8933, d8934; worn i9212, i9210, i9208,
    h9211, h9209, 8730, 8731) those with a flat edge band read at most 1.70 (worn i9210 E00020;
    fresh at most 1.52), the smears it adds 2.62 (E00109) and 3.32 (worn i9212 E00321)."""
    _dx_short_smear(res, p, "nyq_fy_edge", "dx_motion_nyquist_edge")


def _dx_text_motion_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A radiograph 运动 (learned or classical) whose spectral ratio reads motion (``-vspec_rel`` at
    ``dx_motion_spectrum`` or more) only because of burned-in text reads 无: with the text filled in
    (:func:`dx_text_free_spectrum`) ``-vspec_rel_notext`` falls below ``dx_motion_text_free_max``
    (null: off), and the text holds ``dx_motion_text_frac`` [min, max] of the field.

    Why: the text's glyph edges made the ratio, and the net that weighs it, read motion on clean
    small pelvis APs (worn h9211 E00010, dx 8730 E00015: net 1.00, ``vspec_rel`` -7.5 / -7.7, +0.27 /
    +0.13 with the text filled). The upper bound keeps views whose 'text' is mostly clipped speckle
    (worn i9210 E00041, a real 9.4 mm smear: 0.34 of the field, ``vspec_rel`` -2.03 -> +0.13)."""
    limit = p.get("dx_motion_text_free_max")
    if limit is None or res.value != VALUE_OF["motion"]:
        return
    f = res.features
    lo, hi = (p.get("dx_motion_text_frac") or [0.005, 0.25])[:2]
    frac = float(f.get("text_frac", 0.0))
    if -float(f.get("vspec_rel", 0.0)) < float(p["dx_motion_spectrum"]) or not float(lo) <= frac <= float(hi):
        return
    free = -float(f.get("vspec_rel_notext", f.get("vspec_rel", 0.0)))
    if free >= float(limit):
        return
    # the short-smear measure sees a smear the text cannot make (medians of the Nyquist lines): keep
    # (``dx_motion_text_nyquist_keep``; null: never). Fresh t8930 E00081, a 3-px smear of a 128 px
    # knee lateral with 13% text (net 0.97, text-free -vspec_rel 0.58), reads 1.69; the clean views
    # the rule is for read -0.82 to -0.18 (worn h9211 E00010, dx 8730 E00015, 8731 E00017)
    keep = p.get("dx_motion_text_nyquist_keep")
    if keep is not None and dx_nyquist_score(f, p) >= float(keep):
        return
    # the text-free ratio still leans to motion (``-vspec_rel_notext`` at ``dx_motion_text_free_keep``
    # or more; null: never): the text does not explain the reading. Real smears under text read
    # 0.58 / 0.59 (fresh t8930 E00081; i9214 E00146, a 2-px smear of a pelvis AP with 4% text, net
    # 0.89, Nyquist score -0.36); the clean text views the rule is for read -1.19 to -0.13 and the
    # highest clean view meeting its conditions 0.24 (t8932 E00003, net 0.00)
    free_keep = p.get("dx_motion_text_free_keep")
    if free_keep is not None and free >= float(free_keep):
        return
    _drop_learned(res, {"rule": "burned_in_text", "text_frac": round(frac, 3), "vspec_rel": round(float(f["vspec_rel"]), 3),
                        "vspec_rel_notext": round(-free, 3), "limit": float(limit)})


def _dx_detail_kept_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A radiograph 运动 reads 无 when the view keeps its vertical mid-band detail: ``vspec_rel`` at
    ``dx_motion_detail_kept`` or more (null: off), read only where that band stands above the noise
    floor (``vspec_snr`` at ``dx_motion_min_snr`` or more; below it the ratio compares two noise
    residues). Runs before the short-smear rules, so the 2-px smears they add are not judged here.

    Why: a smear along the columns removes vertical detail, so ``vspec_rel`` (vertical against
    horizontal mid-band power, the anatomy's own ratio removed) goes negative; a positive ratio says
    the columns are sharp, and the net's call then rests on the other features (gradient
    anisotropy), which read the anatomy's own direction. The bundled real CR sample RG3 (pydicom-data
    ``RG3_UNCR.dcm``, an AP of the lower leg, 1760 x 1760 px: the long bones run down the image) read
    net 运动 1.00 on ``anisotropy`` -2.25 at ``vspec_rel`` +2.32 (``vspec_snr`` +1.57): a false call a
    doctor would see. On about 2,100 synthetic views (dumps of helpers DXM, DXM3, DXM4: dx 8730/8731/
    8933/8934/9101, qc-items 8930-8932/9100, worn 9208-9216) every smeared view the net read at 0.5 or
    more above the floor read ``vspec_rel`` -0.33 or less, and every view it read so +0.65 or less; the
    one smear above (i9216 E00277, 7 px, +0.87) reads ``vspec_snr`` -1.38, under the floor (helper DXM4,
    session 21). Every RG3 encoding (UNCR/UNCI/J2KR/J2KI) reads +2.09 to +2.32."""
    limit = p.get("dx_motion_detail_kept")
    if limit is None or res.value != VALUE_OF["motion"]:
        return
    f = res.features
    rel, snr = float(f.get("vspec_rel", 0.0)), float(f.get("vspec_snr", 0.0))
    floor = p.get("dx_motion_min_snr")
    if rel < float(limit) or (floor is not None and snr < float(floor)):
        return
    _drop_learned(res, {"rule": "vertical_detail_kept", "vspec_rel": round(rel, 3), "vspec_snr": round(snr, 3),
                        "limit": float(limit)})


def _dx_isotropic_blur_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A radiograph 运动 (learned or classical) whose spectral ratio reads motion (``-vspec_rel`` at
    ``dx_motion_spectrum`` or more) reads 无 when neither direction keeps mid-frequency detail above
    the noise floor (``vspec_snr`` below ``dx_motion_min_snr``; null: off): the ratio then compares
    two noise residues. A call the ratio does not back is left to the net.

    Why: motion smears along one axis, so the other axis keeps its mid-band detail and the
    stronger direction stands above the white-noise floor; an isotropic blur (the sharpness
    dimension's defect) removes it on both axes, and the ratio ``vspec_rel`` of two noise-level
    residues is then any large number, read as missing vertical detail. Worn i9208 E00094 (a
    blurred pelvis AP, net 运动 0.99, ``vspec_snr`` -2.50) and E00004 (blurred, -1.44, classical
    运动). 12 of the 19 blurred views of i9208/i9206 read below -1.0 (down to -6.9; a blur of a
    coarse view may leave some detail: up to +1.4); every motion view the net or the spectrum found
    there read -0.22 or more.

    Below ``dx_motion_no_detail_snr`` (null: off) the call reads 无 whatever the ratio says: with no
    mid-band detail at all above the noise there is no sharp axis left to show a one-axis smear.
    Fresh i9216 E00180 (a clean 256 px C-spine lateral beside a blurred, noisy AP: net 运动 0.90,
    ``vspec_snr`` -2.58, ``vspec_rel`` -0.94); of about 2,100 synthetic views (dumps of helpers DXM,
    DXM3 and DXM4) none of the 126 smeared views read below -1.38 (i9216 E00277, a 7-px smear the net
    reads 1.00), while 23 other views did (helper DXM4, session 21)."""
    limit = p.get("dx_motion_min_snr")
    if limit is None or res.value != VALUE_OF["motion"]:
        return
    measured = float(res.features.get("vspec_snr", 0.0))
    if measured < float(limit) and -float(res.features.get("vspec_rel", 0.0)) >= float(p["dx_motion_spectrum"]):
        _drop_learned(res, {"rule": "isotropic_blur", "vspec_snr": round(measured, 3), "limit": float(limit)})
        return
    none_left = p.get("dx_motion_no_detail_snr")
    if none_left is not None and measured < float(none_left):
        _drop_learned(res, {"rule": "no_detail", "vspec_snr": round(measured, 3), "limit": float(none_left)})


def _mr_void_rule(res: SeriesArtifact, p: dict[str, Any]) -> None:
    """A susceptibility void with its pile-up crescent (:func:`mr_crescent_void`) above the limit
    makes an MR series the net read 无 into 设备 (metal), shown on the slice where the void is
    largest with its box. The net weighs the older void measure, which missed voids holding the
    noise floor; a 运动 reading is stricter and stays. A fat-suppressed spin-echo series
    (``fat_suppressed``, :func:`mr_fat_suppressed`) is held to ``mr_void_crescent_fat_suppressed``
    when that is set: suppressed fat beside bright fluid reads as a void with its crescent.

    With ``mr_void_crescent_inner`` true the series' first and last slice do not count
    (``void_crescent_inner_max``): an end slice of a sagittal head series cuts the head's surface
    tangentially, a dark interior inside the scalp with the bright eye at its edge (t8961 E00104:
    a clean T2 sagittal read 0.045 on its last slice only). An implant lies inside the imaged
    volume: on fifteen cached sets no metal series read its largest crescent on an end slice.

    An axial series is held to at least ``mr_void_crescent_axial`` where an item sets it (null:
    off; MR-LSPINE in mr.yaml): the lumbar axial T2's bright CSF ring in a dark canal.

    With ``mr_void_skip_computed_map`` true a computed map (``computed_map``: an ADC map,
    :func:`mr_computed_map`) is not held to the crescent at all: it carries no pile-up."""
    limit = p.get("mr_void_crescent")
    if res.features.get("computed_map") and p.get("mr_void_skip_computed_map"):
        return  # an ADC map shows no pile-up: the implant is judged on the DWI it came from (mr_computed_map)
    if res.features.get("fat_suppressed") and p.get("mr_void_crescent_fat_suppressed") is not None and limit is not None:
        limit = max(float(limit), float(p["mr_void_crescent_fat_suppressed"]))
    if (float(res.features.get("plane_axial", -1.0)) == 1.0 and p.get("mr_void_crescent_axial") is not None
            and limit is not None):
        # an item's axial floor (MR-LSPINE, mr.yaml): CSF in the canal beside dark bone and ligament
        limit = max(float(limit), float(p["mr_void_crescent_axial"]))
    measured = float(res.features.get("void_crescent_max", 0.0))
    if p.get("mr_void_crescent_inner") and "void_crescent_inner_max" in res.features:
        measured = float(res.features["void_crescent_inner_max"])
    if limit is None or measured < float(limit) or res.value != VALUE_OF["none"]:
        return
    _overrule(res, "equipment", "susceptibility_void", round(measured, 4), float(limit),
              _sig(measured, float(limit), 0.002))
    shown = _show_strongest_slice(res, "void_crescent")
    if shown is not None and "void_r0" in shown[0]:
        feats = shown[0]
        res.box = [feats["void_r0"], feats["void_c0"], feats["void_r1"], feats["void_c1"]]


def _overrule(res: SeriesArtifact, cls: str, kind: str, measured: float, limit: float, score: float) -> None:
    """A classical rule sets the series to ``cls`` (a VALUE_OF key), keeping what was read before
    (``learned_value`` / ``classical_value``) so the result shows which reading it replaced."""
    res.extra.setdefault("classical_value" if res.method == "classical" else "learned_value", res.value)
    res.value, res.kind, res.method = VALUE_OF[cls], kind, "classical"
    res.measured, res.limit, res.box = measured, limit, None
    res.scores[cls] = max(res.scores.get(cls, 0.0), score)


def _show_strongest_slice(res: SeriesArtifact, feature: str) -> tuple[dict[str, float], Any] | None:
    """Point the evidence at the slice where the per-slice ``feature`` is largest; that slice's
    features and image (None when the image was not kept), or None without per-slice features."""
    per: list[dict[str, float]] = res.extra.get("_per") or []
    idx: list[int] = res.extra.get("_idx") or []
    slices = res.extra.get("_slices") or []
    if not per:
        return None
    k = int(np.argmax([x.get(feature, 0.0) for x in per]))
    res.slice_index = idx[k] if k < len(idx) else None
    image = slices[k] if k < len(slices) else None
    if image is not None:
        res.image = image
    return per[k], image


def _learned_evidence(res: SeriesArtifact, cls: str, p: dict[str, Any]) -> None:
    """When the learned detector overrules the classical rule, show the measure behind its class:
    the kind, the measured value vs its classical limit and the slice where it is largest."""
    f, mod = res.features, res.modality
    per: list[dict[str, float]] = res.extra.get("_per") or []
    idx: list[int] = res.extra.get("_idx") or []
    slices = res.extra.get("_slices") or []
    res.box = None
    key: str | None = None
    if mod == "DX":
        res.kind, res.measured, res.limit = {
            "motion": ("motion_blur", round(-f.get("vspec_rel", 0.0), 3), float(p["dx_motion_spectrum"])),
            "equipment": ("grid_lines", round(f.get("grid_rows", 0.0), 3), float(p["dx_grid_rows"])),
            "foreign_object": ("foreign_object", round(math.expm1(f.get("fo_m15_lat", 0.0))), float(p["dx_foreign_objects"])),
        }[cls]
        res.slice_index = 0
        return
    if mod == "MR":
        res.kind, key = ("ghosting", "ghost") if cls == "motion" else ("metal", "void_frac")
        res.limit = float(p["mr_ghost_ratio"] if cls == "motion" else p["mr_void_px_frac"])
    elif cls == "motion":
        res.kind, key, res.limit = "ghosting", "ghost_width", float(p["ct_ghost_width_px"])
    elif cls == "foreign_object":
        res.kind, key, res.limit = "foreign_object", "hu_max", float(p["ct_metal_hu"])
    elif f.get("metal_px_max", 0.0) > 0 or f.get("hu_outlier", 0.0) > math.log1p(500):
        res.kind, key, res.limit = "metal", "hu_max", float(p["ct_metal_hu"])
    else:
        res.kind, key, res.limit = "truncation", "rim_touch", float(p["ct_rim_touch"])
    if per and key is not None:
        k = int(np.argmax([x.get(key, 0.0) for x in per]))
        res.measured = round(float(per[k].get(key, 0.0)), 4)
        res.slice_index = idx[k] if k < len(idx) else None
        if k < len(slices):
            res.image = slices[k]
        if mod == "CT" and res.kind in ("metal", "foreign_object") and per[k].get("metal_r", -1.0) >= 0:
            res.box = _metal_box(per[k], slices[k])


# ------------------------------------------------------------------------------ the measure


REASONS = {
    "运动": ("{series}可见运动伪影（{kind}），测量值 {measured}，限值 {limit}", "motion artifact ({kind}) in {series}: measured {measured}, limit {limit}"),
    "设备": ("{series}可见设备伪影（{kind}），测量值 {measured}，限值 {limit}", "equipment artifact ({kind}) in {series}: measured {measured}, limit {limit}"),
    "异物": ("{series}可见异物伪影（{kind}），测量值 {measured}，限值 {limit}", "foreign-object artifact ({kind}) in {series}: measured {measured}, limit {limit}"),
}
KIND_ZH = {"ghosting": "伪影重影/边缘双影", "ghost_replicas": "相位编码方向重影复制", "metal": "金属条纹", "truncation": "视野截断", "foreign_object": "体外异物",
           "grid_lines": "滤线栅线", "motion_blur": "运动模糊", "motion_smear": "运动模糊（图像网络判读的概率）", "short_smear": "短程运动模糊（纵向奈奎斯特频率细节缺失）",
           "susceptibility_void": "金属磁化率伪影（信号缺失伴高信号边）",
           "motion_ghost_net": "运动伪影（图像网络判读的概率）", "equipment_net": "设备伪影：金属条纹或视野截断（图像网络判读的概率）"}


def _shared_model(module: str, name: str) -> Any:
    """A served model's process-wide instance, or None when it cannot be loaded: the features decide."""
    try:
        return getattr(importlib.import_module(module), name).shared()
    except Exception as exc:  # noqa: BLE001 - no weights / no runtime: the features decide
        log.debug("%s unavailable: %s", name, exc)
        return None


def _load_model(p: dict[str, Any]) -> Any:
    return _shared_model("radqc.models.artifact.infer", "ArtifactModel") if p.get("use_model", True) else None


def _analyse_all(series: Sequence[SeriesImages], exam_modality: str | None, p: dict[str, Any],
                 model: Any) -> list[SeriesArtifact | Exception]:
    """Each series' :func:`analyse_series` result, or the exception it raised, in the order given.

    Why threads: the series of an exam are independent, and their pixel work (NumPy, SciPy,
    onnxruntime) runs largely outside the GIL, so ``artifact_series_workers`` threads (default 2,
    the cores of the reference machine; 1 or null: one after the other) cut an MR exam's wall time
    about 1.4-fold (6 series of 320² slices: 3.2 -> 2.2 s) with every result unchanged: each
    series reads only its own pixels and the model sessions are safe to share."""
    def one(s: SeriesImages) -> SeriesArtifact | Exception:
        try:
            return analyse_series(s, _series_modality(s, exam_modality), p, model)
        except Exception as exc:  # noqa: BLE001 - returned, reported by the caller
            return exc

    workers = min(int(p.get("artifact_series_workers") or 1), len(series))
    if workers <= 1:
        return [one(s) for s in series]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="artifact") as pool:
        return list(pool.map(one, series))


def measure_artifact(exam: ExamImages, params: dict[str, Any] | None, sink: EvidenceSink) -> dict[str, DimensionResult]:
    """The artifact dimension of one exam: per series, then the strictest over series."""
    p = {**DEFAULTS, **(params or {})}
    series = select_series(exam, p)
    if not exam.series:
        return {DIMENSION: DimensionResult(NOT_ASSESSABLE, reason="检查无图像序列 / the exam has no image series")}
    if not series:
        mods = sorted({_series_modality(s, exam.modality) for s in exam.series})
        return {DIMENSION: DimensionResult(NOT_APPLICABLE if mods and all(m not in ("CT", "MR", "DX", "") for m in mods) else NOT_ASSESSABLE,
                                           reason=f"无可评估的CT/MR/X线图像序列 / no CT, MR or radiograph image series to assess ({', '.join(mods) or '-'})")}
    model = _load_model(p)
    results: list[SeriesArtifact] = []
    failed: list[dict[str, Any]] = []
    for s, outcome in zip(series, _analyse_all(series, exam.modality, p, model), strict=True):
        if isinstance(outcome, SeriesArtifact):
            results.append(outcome)
        else:  # one undecodable series is reported, the rest still count
            failed.append({"series_uid": getattr(s.header, "series_uid", None),
                           "reason": getattr(outcome, "reason_code", type(outcome).__name__), "detail": str(outcome)[:200]})
    if not results:
        return {DIMENSION: DimensionResult(NOT_ASSESSABLE, details={"failed": failed},
                                           reason="图像无法解码 / no series could be decoded: " + "; ".join(f["reason"] for f in failed))}
    worst = min(results, key=lambda r: SEVERITY.index(r.value))
    scores = {c: max(r.scores.get(c, 0.0) for r in results) for c in CLASSES if c != "none"}
    findings: list[Finding] = []
    for r in sorted(results, key=lambda r: SEVERITY.index(r.value)):
        if r.value == "无":
            continue
        name = f"series {r.series_uid}" if r.series_uid else "series"
        kind = r.kind or ""
        zh, en = REASONS[r.value]
        ev_img = None
        if r.image is not None:
            ev_img = sink.add(r.image, name=f"artifact_{(r.series_uid or 'series')[-12:]}_{r.slice_index}", box=r.box, window=r.window)
        findings.append(Finding(CHECK_ID, DIMENSION, r.value, 0,
                                zh.format(series=f"序列 {r.series_uid}", kind=KIND_ZH.get(kind, kind), measured=r.measured, limit=r.limit),
                                en.format(series=name, kind=kind.replace("_", " "), measured=r.measured, limit=r.limit),
                                [Evidence(series_uid=r.series_uid, instance_index=r.slice_index, measured=r.measured, limit=r.limit,
                                          image=ev_img, box=r.box, extra={"kind": kind, "method": r.method,
                                                                           "scores": {k: round(v, 3) for k, v in r.scores.items()}})]))
    details = {"per_series": [r.to_dict() for r in results], "scores": {k: round(v, 4) for k, v in scores.items()},
               "kind": worst.kind, "method": "learned" if any(r.method == "learned" for r in results) else "classical"}
    if failed:
        details["failed"] = failed
    conf = max(worst.scores.values()) if worst.value != "无" else 1.0 - max(scores.values(), default=0.0)
    return {DIMENSION: DimensionResult(worst.value, details=details, findings=findings, confidence=round(float(conf), 4))}
