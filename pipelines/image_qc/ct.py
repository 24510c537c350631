"""CT image-QC measures: range, centring, noise, sharpness, reconstruction, window, dose.

Every dimension is *measured* (landmarks from the body-region scorer, body contour centroid,
HU statistics, header facts) and compared with the item's limits in ``qc_rules/image_qc/ct.yaml``.
``artifact`` belongs to the artifact detector (not returned here); ``positioning`` is the
patient's rotation on the table (body axis); ``sequences`` does not apply to CT. A dimension without a suitable series reads
无法评估 with a reason code; nothing is guessed.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import Any

import numpy as np

from radqc.pipelines.image_qc import ct_motion, ct_noise
from radqc.pipelines.image_qc.measure_common import (
    add_picture,
    body_mask,
    edge_index,
    finding,
    header_of,
    is_original_axial,
    label_of,
    load_params,
    not_applicable,
    not_assessable,
    pick_slices,
    series_uid,
)
from radqc.pipelines.image_qc.types import (
    ABNORMAL,
    NORMAL,
    NOT_ASSESSABLE,
    DimensionResult,
    Evidence,
    EvidenceSink,
    ExamImages,
    SeriesImages,
)

__all__ = ["measure_ct", "load_params"]

log = logging.getLogger(__name__)

_SCORER: Any = None


def _scorer() -> Any:
    """The body-region scorer (loaded once per process; None when unavailable)."""
    global _SCORER
    if _SCORER is None:
        from radqc.pipelines.anatomy.models import Unavailable, resolve_slot

        model = resolve_slot("body_region")
        _SCORER = False if isinstance(model, Unavailable) else model
    return _SCORER or None


class _Stack:
    """One axial series loaded once: HU array (z, row, col), z per slice, spacing."""

    def __init__(self, series: SeriesImages, *, need_volume: bool = True) -> None:
        import SimpleITK as sitk

        self.series = series
        self.uid = series_uid(series)
        self.image: Any = None
        #: patient (x, y) in mm of pixel (row 0, col 0) on an axial, unrotated grid; None otherwise
        self.origin_xy: tuple[float, float] | None = None
        #: instance index (position order) of each slice when only some slices were read
        self.source_index: list[int] | None = None
        self.image_from_slices = False
        #: (z mm, score) of the slices the body-region scorer scored, once it has (a joint fit pools them)
        self.score_points: tuple[np.ndarray, np.ndarray] | None = None
        try:
            volume = series.volume()
        except Exception:
            if need_volume:
                raise
            # pixel measures need slices, not a regular volume (e.g. unevenly spaced thick slices)
            self._from_datasets(series.datasets())
        else:
            self.image = volume.image
            # The volume runs along +z; the series' instance order (sort_datasets, the viewer's
            # stack and every evidence instance_index) may run the other way.
            frames = getattr(volume, "frames", None)
            self.source_index = [int(f.dataset_index) for f in frames] if frames else None
            self.hu = sitk.GetArrayViewFromImage(self.image)
            self.z = np.asarray(volume.z_mm, dtype=float)
            sx, sy, _ = self.image.GetSpacing()
            self.spacing = (float(sy), float(sx))  # (row, col) mm
            direction = np.asarray(self.image.GetDirection(), dtype=float)
            if direction.size == 9 and np.allclose(direction.reshape(3, 3)[:2, :2], np.eye(2), atol=1e-3):
                ox, oy = self.image.GetOrigin()[:2]
                self.origin_xy = (float(ox), float(oy))
        self.thickness = float(header_of(series, "slice_thickness") or 0.0)

    def instance_index(self, k: int | None) -> int | None:
        """The series' instance index (sort_datasets order) of stack slice ``k``."""
        if k is None:
            return None
        return self.source_index[k] if self.source_index is not None else k

    def _from_datasets(self, datasets: list[Any]) -> None:
        arrays: list[np.ndarray] = []
        z: list[float] = []
        for ds in datasets:
            a = np.asarray(ds.pixel_array, dtype=np.float32)
            arrays.append(a * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0))
            pos = ds.get("ImagePositionPatient")
            z.append(float(pos[2]) if pos is not None else float(len(z)))
        if not arrays or len({a.shape for a in arrays}) != 1:
            raise ValueError("no_slices")
        self.hu = np.stack(arrays)
        self.z = np.asarray(z, dtype=float)
        ps = datasets[0].get("PixelSpacing") or [1.0, 1.0]
        self.spacing = (float(ps[0]), float(ps[1]))
        pos, iop = datasets[0].get("ImagePositionPatient"), datasets[0].get("ImageOrientationPatient")
        if pos is not None and iop is not None and np.allclose([float(v) for v in iop], [1, 0, 0, 0, 1, 0], atol=1e-3):
            self.origin_xy = (float(pos[0]), float(pos[1]))


def _noise_stack(series: SeriesImages, cache: dict[str, Any], k: int = 8) -> _Stack | Exception:
    """The series as already loaded by another measure, else only the ``k`` slices the noise
    measure reads (pick_slices over the position-sorted instances), each with its neighbour (the
    slice-difference estimate needs adjacent pairs). Noise reads every soft series of an exam, so a
    thin 500-slice series is not decoded whole for 16 slices. ``source_index`` maps a stack slice to
    the series' instance index."""
    uid = series_uid(series) or str(id(series))
    for key in (uid + "/v", uid + "/s"):
        got = cache.get(key)
        if isinstance(got, _Stack):
            return got
    key = uid + "/noise"
    if key not in cache:
        try:
            datasets = list(series.datasets())
            # each read slice with its neighbour: the slice-difference estimate needs adjacent pairs
            single = pick_slices(len(datasets), k)
            picked = sorted(set(single) | {i + 1 if i + 1 < len(datasets) else i - 1 for i in single} - {-1})
            stack = _Stack.__new__(_Stack)
            stack.series, stack.uid, stack.image, stack.image_from_slices = series, series_uid(series), None, False
            stack.origin_xy = None
            stack._from_datasets([datasets[i] for i in picked])
            stack.thickness = float(header_of(series, "slice_thickness") or 0.0)
            stack.source_index = picked
            cache[key] = stack
        except Exception:  # noqa: BLE001 - instances without usable pixels: the full loader says why
            cache[key] = _load(series, cache, need_volume=False)
    out: _Stack | Exception = cache[key]
    return out


def _thickness(s: SeriesImages) -> float:
    return float(header_of(s, "slice_thickness") or 0.0)


def _axial(exam: ExamImages) -> list[SeriesImages]:
    return [s for s in exam.series if is_original_axial(s) and (header_of(s, "modality") or "CT") == "CT"]


def _load(series: SeriesImages, cache: dict[str, Any], need_volume: bool = True) -> _Stack | Exception:
    uid = (series_uid(series) or str(id(series))) + ("/v" if need_volume else "/s")
    if uid not in cache:
        try:
            cache[uid] = _Stack(series, need_volume=need_volume)
        except Exception as exc:  # noqa: BLE001 - UnsuitableSeries or undecodable: a reason, not a crash
            cache[uid] = exc
    out: _Stack | Exception = cache[uid]
    return out


def _first_stack(candidates: list[SeriesImages], cache: dict[str, Any], need_volume: bool = False) -> _Stack | Exception:
    """The first candidate that loads (soft/brain kernel first, then thickest; as a regular volume when
    asked); else the first error. Sharp kernels (bone, lung) mislead the body-region scorer."""
    first_error: Exception | None = None
    for s in sorted(candidates, key=lambda s: (_kernel_class(s) not in ("soft", "head"), -_thickness(s))):
        stack = _load(s, cache, need_volume)
        if not isinstance(stack, Exception):
            return stack
        first_error = first_error or stack
    return first_error or ValueError("no_series")


def _extent(s: SeriesImages) -> float:
    lo, hi = header_of(s, "z_min"), header_of(s, "z_max")
    return float(hi - lo) if lo is not None and hi is not None else 0.0


def _first_in_order(candidates: list[SeriesImages], cache: dict[str, Any]) -> _Stack | Exception:
    """The first candidate, in the given order, whose slices load."""
    first_error: Exception | None = None
    for s in candidates:
        stack = _load(s, cache, need_volume=False)
        if not isinstance(stack, Exception):
            return stack
        first_error = first_error or stack
    return first_error or ValueError("no_series")


def _reason_code(exc: Exception) -> str:
    return str(getattr(exc, "reason_code", None) or type(exc).__name__)


def _acquisitions(axial: list[SeriesImages]) -> list[list[SeriesImages]]:
    """One series per acquisition (overlapping z-ranges grouped; the thickest series of a group: fewest slices)."""
    groups: list[list[SeriesImages]] = []
    for s in sorted(axial, key=lambda s: -_thickness(s)):
        lo, hi = header_of(s, "z_min"), header_of(s, "z_max")
        placed = False
        for g in groups:
            glo, ghi = header_of(g[0], "z_min"), header_of(g[0], "z_max")
            if None in (lo, hi, glo, ghi):
                continue
            overlap = min(hi, ghi) - max(lo, glo)
            if overlap > 0.5 * min(hi - lo, ghi - glo):
                g.append(s)
                placed = True
                break
        if not placed:
            groups.append([s])
    return groups


# ---------------------------------------------------------------- range


def _part_spans(exam: ExamImages, params: dict[str, Any], unmeasured: list[str]) -> list[tuple[str, tuple[str, str]]]:
    """Each ordered part's required [top, bottom] landmarks, in order (the item's standard when no
    item code names a part with a range).

    Item codes whose part has no range (spine) are appended to ``unmeasured``: the scan may
    rightly extend beyond the measured parts toward them, so excess is not judged then."""
    parts = params.get("parts") or {}
    spans: list[tuple[str, tuple[str, str]]] = []
    for code in exam.item_codes or []:
        bits = str(code).split(".")
        if len(bits) >= 2 and bits[1] in parts:
            if all(bits[1] != name for name, _ in spans):
                spans.append((bits[1], (str(parts[bits[1]][0]), str(parts[bits[1]][1]))))
        elif len(bits) >= 2:
            unmeasured.append(str(code))
    if not spans and params.get("_standard_code"):
        std_part = {"CT-HEAD-PLAIN": "HEAD", "CT-SINUS": "SINUS", "CT-NECK": "NECK", "CT-CHEST-PLAIN": "CHEST",
                    "CT-CHEST-LOWDOSE": "CHEST", "CT-UABD": "UABD", "CT-ABD-PELVIS": None,
                    "CT-CORONARY-CTA": "CORONARY", "CT-HEADNECK-CTA": "HEADNECK", "CT-PULMONARY-CTA": "PULMA"}
        code = params["_standard_code"]
        if code == "CT-ABD-PELVIS":
            spans.append(("ABDPELVIS", ("diaphragm_dome", "pubic_symphysis")))
        elif std_part.get(code):
            name = str(std_part[code])
            spans.append((name, (str(parts[name][0]), str(parts[name][1]))))
    return spans


def _outermost(spans: list[tuple[str, tuple[str, str]]], params: dict[str, Any]) -> tuple[str, str] | None:
    """Top and bottom landmarks the exam must cover: the outermost of its parts' spans."""
    if not spans:
        return None
    scores = params.get("landmark_scores") or {}
    top = min((s[1][0] for s in spans), key=lambda n: scores.get(n, 0.0))
    bottom = max((s[1][1] for s in spans), key=lambda n: scores.get(n, 0.0))
    return str(top), str(bottom)


def _required_span(exam: ExamImages, params: dict[str, Any], unmeasured: list[str]) -> tuple[str, str] | None:
    """Top and bottom landmarks the exam must cover: its items' parts (outermost of several)."""
    return _outermost(_part_spans(exam, params, unmeasured), params)


def _imaged_fraction(span: tuple[str, str], params: dict[str, Any], covered: list[tuple[float, float]]) -> float:
    """Fraction of a part's required score interval that the acquisitions' positions cover (union)."""
    scores = params.get("landmark_scores") or {}
    lo, hi = float(scores[span[0]]), float(scores[span[1]])
    if hi <= lo:
        return 1.0
    pieces = sorted((max(lo, a), min(hi, b)) for a, b in covered if min(hi, b) > max(lo, a))
    total, end = 0.0, lo
    for a, b in pieces:
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return total / (hi - lo)


def _score_image(stack: _Stack) -> Any:
    """The stack as a SimpleITK image for the scorer: the volume's, or one built from its slices.

    Slices that do not form a regular volume (uneven spacing) are still scored slice by slice;
    the fit then uses each slice's own z, not the image's nominal spacing."""
    if stack.image is not None:
        return stack.image
    import SimpleITK as sitk

    order = np.argsort(stack.z)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(stack.hu, dtype=np.float32)[order]))
    dz = float(np.median(np.diff(stack.z[order]))) if len(order) > 1 else 5.0
    image.SetSpacing((stack.spacing[1], stack.spacing[0], max(dz, 0.1)))
    image.SetOrigin((0.0, 0.0, float(stack.z[order][0])))
    base = stack.source_index if stack.source_index is not None else list(range(len(order)))
    stack.source_index = [base[int(i)] for i in order]
    stack.z = stack.z[order]
    stack.hu = np.asarray(stack.hu)[order]
    stack.image_from_slices = True
    return image


def _score_points(stack: _Stack, scorer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(z mm, body-position score) of the slices the scorer scored (finite scores only)."""
    from_slices = stack.image is None
    result = scorer.score(_score_image(stack))
    scores = np.asarray(result.scores, dtype=float)
    use_own = from_slices or len(result.z_mm) != len(scores)
    z = np.asarray(stack.z if use_own else result.z_mm, dtype=float)
    ok = np.isfinite(scores)
    return z[ok], scores[ok]


def _line_fit(z: np.ndarray, scores: np.ndarray) -> tuple[float, float] | None:
    """Linear fit score = a + b * z (b < 0: feet are lower z); None when flat, inverted or too short."""
    if len(z) < 2 or np.ptp(z) <= 0:
        return None
    b, a = np.polyfit(z, scores, 1)
    if b >= 0:  # scores must grow toward the feet; a flat/inverted fit is no position
        return None
    return float(a), float(b)


def _consensus_fit(z: np.ndarray, scores: np.ndarray, slope_mm: tuple[float, float], tol: float,
                   min_fraction: float) -> tuple[float, float] | None:
    """The line of a patient's scale (mm per unit within ``slope_mm``) that most slices' scores agree with
    (within ``tol`` units), refitted on those slices; None when fewer than ``min_fraction`` of them (and
    fewer than 4) agree.

    Used where the least-squares line is implausible: a few end slices the scorer misreads (the shoulders
    of a neck scan read as chest, metal streaks, heavy noise) pull a short acquisition's line out of any
    patient's scale (held-out i9208 E00198: a neck whose 7 upper slices lie on an 8-9 mm/unit line, its 3
    lowest 8-20 units high, read 4.1 mm/unit and so 无法评估). Every pair of slices proposes a line."""
    n = len(z)
    if n < 4:
        return None
    lo, hi = float(slope_mm[0]), float(slope_mm[1])
    best: tuple[int, float, np.ndarray] | None = None
    picks = sorted(set(np.linspace(0, n - 1, num=min(n, 40)).round().astype(int).tolist()))  # pairs of <= 40 slices
    for i in picks:
        for j in picks:
            if j <= i:
                continue
            dz = z[j] - z[i]
            if dz == 0:
                continue
            b = (scores[j] - scores[i]) / dz
            if b >= 0 or not lo <= -1.0 / b <= hi:
                continue
            resid = np.abs(scores - (scores[i] + b * (z - z[i])))
            inl = resid <= tol
            key = (int(inl.sum()), -float(resid[inl].sum()))
            if best is None or key > (best[0], best[1]):
                best = (key[0], key[1], inl)
    if best is None or best[0] < max(4, min_fraction * n):
        return None
    return _line_fit(z[best[2]], scores[best[2]])  # its slope is then held like any other fit's


def _score_fit(stack: _Stack, scorer: Any) -> tuple[float, float, list[float]] | None:
    """Linear fit score = a + b * z over the slices with body (b < 0: feet are lower z)."""
    z, scores = _score_points(stack, scorer)
    fit = _line_fit(z, scores)
    if fit is None:
        return None
    stack.score_points = (z, scores)
    return fit[0], fit[1], scores.tolist()


def _joint_fits(positioned: list[tuple[float, float, _Stack]], lo_mm: float, hi_mm: float) -> list[tuple[float, float, _Stack]]:
    """One position fit per table frame: the acquisitions of one patient on one table share z, so
    their scored slices are pooled into one line. A short acquisition's own profile is compressed by
    the scorer (validation 8272/8273: an upper abdomen after a chest read at 11.1 mm/unit instead of
    ~8.4, its kidneys' lower poles "missing" by 20-40 mm); the pooled line spans the whole study.
    A pooled fit outside [lo_mm, hi_mm] mm/unit keeps the acquisitions' own fits."""
    by_frame: dict[str | None, list[int]] = {}
    for k, (_, _, stack) in enumerate(positioned):
        by_frame.setdefault(_frame_of_reference(stack), []).append(k)
    out = list(positioned)
    for frame, members in by_frame.items():
        if frame is None or len(members) < 2:
            continue
        pts = [positioned[k][2].score_points for k in members]
        got = [pt for pt in pts if pt is not None]
        if len(got) < len(pts):
            continue
        fit = _line_fit(np.concatenate([pt[0] for pt in got]), np.concatenate([pt[1] for pt in got]))
        if fit is None or not lo_mm <= -1.0 / fit[1] <= hi_mm:
            continue
        for k in members:
            out[k] = (fit[0], fit[1], positioned[k][2])
    return out


def _group_z(stack: _Stack, group: list[SeriesImages], p: dict[str, Any]) -> tuple[float, float]:
    """Top and bottom z an acquisition group covers: the scored stack's, or with ``range.group_extent``
    the union of all its axial series (header z range).

    Acquisitions whose z-ranges overlap form one group and one series of it is scored; a chest and
    an upper abdomen scanned as two overlapping acquisitions were judged on the chest's extent alone
    (validation i9204 E00145: the abdomen, cut 40 mm above the renal poles, read as not imaged, 正常)."""
    z_hi, z_lo = float(stack.z.max()), float(stack.z.min())
    if p.get("group_extent"):
        for s in group:
            hi, lo = header_of(s, "z_max"), header_of(s, "z_min")
            if hi is not None and lo is not None:
                z_hi, z_lo = max(z_hi, float(hi)), min(z_lo, float(lo))
    return z_hi, z_lo


def _regions_of(params: dict[str, Any], s_top: float, s_bottom: float) -> list[str]:
    """Body regions an acquisition was planned for, from the score range it covers.

    A region counts when the overlap is at least ``region_min_overlap`` units and covers at least
    ``region_min_fraction`` of the region's own extent or of the acquisition's: a chest scan's
    over-scan of a few units below the lung bases is not an abdomen scan, so its dose is held to
    the chest reference (diagnostic reference levels are set per examination type, WS/T 637), while
    a short liver scan lying wholly inside the abdomen is the abdomen's."""
    p = params.get("range") or {}
    need = float(p.get("region_min_overlap", 3.0))
    fraction = float(p.get("region_min_fraction", 0.0) or 0.0)
    span = max(s_bottom - s_top, 1e-6)
    out = []
    for name, (lo, hi) in (params.get("region_scores") or {}).items():
        overlap = min(hi, s_bottom) - max(lo, s_top)
        if overlap < need:
            continue
        if fraction and overlap < fraction * max(hi - lo, 1e-6) and overlap < fraction * span:
            continue
        out.append(str(name))
    return out


def _landmark_name(params: dict[str, Any], name: str) -> tuple[str, str]:
    zh = (params.get("landmark_zh") or {}).get(name, name)
    en = (params.get("landmark_en") or {}).get(name, name.replace("_", " "))
    return str(zh), str(en)


def _top_slice_area_ratio(stack: _Stack) -> float | None:
    """Body cross-section (HU > -500) of the most superior slice relative to the largest slice.

    None when the stack holds no body. A head scanned from above the vertex starts with a small
    cap (training seed 7201: <= 0.22); a stack starting below the vertex at >= 0.47."""
    areas = np.asarray([(np.asarray(img) > -500).mean() for img in stack.hu], dtype=float)
    if areas.size < 2 or float(areas.max()) <= 0.01:
        return None
    return float(areas[int(np.argmax(stack.z))] / areas.max())


def _exam_parts(exam: ExamImages) -> list[str]:
    """The parts of the exam's item codes (second token: CT.KNEE.PLAIN -> KNEE), each once, in order."""
    out: list[str] = []
    for code in exam.item_codes or []:
        bits = str(code).split(".")
        if len(bits) >= 2 and bits[1] not in out:
            out.append(bits[1])
    return out


def _length_plan(exam: ExamImages, table: dict[str, Any], order: list[str],
                 params: dict[str, Any] | None = None) -> list[tuple[str, SeriesImages, float]] | None:
    """Each part of the exam paired with the acquisition that scanned it, with the acquisition's length.

    One part: the longest axial acquisition. Several parts: one acquisition per part, paired in
    order (acquisitions from head to foot, parts in the order of ``table``, which lists them head
    to foot); None when the counts differ (one acquisition over several parts has no length of its
    own to compare) or a part has no entry. A single acquisition on a two-spine order (胸椎 + 腰椎,
    颈椎 + 胸椎) is paired with the part its lungs name (:func:`_imaged_spine_part`): a RIS splits such an
    order and the study holds one of the parts."""
    parts = _exam_parts(exam)
    if not parts or any(part not in table for part in parts):
        return None
    acquisitions = []
    for group in _acquisitions(_axial(exam)):
        best = max(group, key=_extent)
        if _extent(best) > 0:
            acquisitions.append((best, _extent(best)))
    if not acquisitions:
        return None
    if len(parts) == 1:
        best, length = max(acquisitions, key=lambda t: t[1])
        return [(parts[0], best, length)]
    if len(acquisitions) == 1 and params is not None:
        group = next((g for g in _acquisitions(_axial(exam)) if any(x is acquisitions[0][0] for x in g)), [acquisitions[0][0]])
        imaged = _imaged_spine_part(group, parts, params)
        if imaged is not None:
            return [(imaged, acquisitions[0][0], acquisitions[0][1])]
    if len(acquisitions) != len(parts):
        return None
    if any(part not in order for part in parts):
        return None
    parts = sorted(parts, key=order.index)
    acquisitions.sort(key=lambda t: -float(header_of(t[0], "z_max") or 0.0))  # superior first
    return [(part, series, length) for part, (series, length) in zip(parts, acquisitions, strict=True)]


def _lung_slice_fraction(group: list[SeriesImages], lp: dict[str, Any], k: int) -> float | None:
    """Share of ``k`` slices spread over the acquisition that show a lung section (as in :func:`_lung_margin`:
    the series with the most slices, lung sections of at least ``min_area_mm2`` and ``min_fraction`` of the
    largest one read); 0 when none shows lung, None when nothing is readable."""
    series = max(group, key=lambda s: int(header_of(s, "n_instances") or 0))
    try:
        datasets = sorted(series.datasets(), key=_slice_z, reverse=True)
        n = len(datasets)
        if n < 3:
            return None
        ps = datasets[0].get("PixelSpacing") or [1.0, 1.0]
        spacing = (float(ps[0]), float(ps[1]))
        areas = [max(_lung_areas(_hu(datasets[i]), spacing, lp), default=0.0) for i in pick_slices(n, k)]
    except Exception:  # noqa: BLE001 - undecodable pixels: no reading
        return None
    if not areas:
        return None
    reference = max(areas)
    min_area = max(float(lp.get("min_area_mm2", 300.0)), float(lp.get("min_fraction", 0.05)) * reference)
    return sum(a >= min_area for a in areas) / len(areas)


def _imaged_spine_part(group: list[SeriesImages], parts: list[str], params: dict[str, Any]) -> str | None:
    """Which part of a two-spine order (thoracic + cervical or lumbar) one acquisition scanned, from the
    share of its slices that show lung (``range.spine_part_by_lungs``), or None (rule off, other parts,
    nothing read).

    A RIS splits a combined order (颈椎 + 胸椎, 胸椎 + 腰椎) into studies and the generator renders only the
    imaged part; with one acquisition and two parts the length plan had no pairing and the range read
    无法评估 (i9212 E00023 / E00069, h9211 E00033). A thoracic spine (C7-L1) shows lung on nearly all its
    slices (apex ~10-17 mm below its top, base ~12-22 mm above its bottom); a cervical spine only in its
    last 20-37 mm, a lumbar spine only in its top ~30 mm; extended by the generator's largest 110 mm they
    still show lung on under half. A cut thoracic spine keeps most of its lung slices."""
    rule = (params.get("range") or {}).get("spine_part_by_lungs") or {}
    if not rule or len(parts) != 2 or "TSPINE" not in parts:
        return None
    other = next(x for x in parts if x != "TSPINE")
    if other not in [str(x) for x in rule.get("others") or ("CSPINE", "LSPINE")]:
        return None
    lp = {**dict((params.get("range") or {}).get("lung_landmarks") or {}), "open_fov": True,
          "open_fov_max_posterior_mm": (params.get("range") or {}).get("spine_lung_max_posterior_mm")}
    share = _lung_slice_fraction(group, lp, int(rule.get("slices", 9)))
    if share is None:
        return None
    return "TSPINE" if share >= float(rule.get("thoracic_min_fraction", 0.5)) else other


def _spine_lung_ends(exam: ExamImages, series: SeriesImages, part: str, params: dict[str, Any],
                     row: dict[str, Any]) -> tuple[str, str, float] | None:
    """(value, end, mm) from the lung edges of a spine part whose ends lie beside them, or None.

    A thoracic spine runs from C7 to L1: the lung apex lies ~10-17 mm below a complete scan's top and
    the lung base ~12-22 mm above its bottom (the generator's anatomy, validation i9204). A scan whose
    end slice still shows lung misses that vertebra (过小); one running more than ``max_overscan_mm``
    beyond the lung edge reaches past it (过大). The scan length alone cannot tell a 21-32 mm cut or a
    51 mm extension within the patients' size spread (i9204: three T-spines misread). Parts listed in
    ``range.spine_lung_ends``; the lungs are read with ``lung_landmarks`` plus ``open_fov`` (a
    targeted FOV cuts the chest wall off). None: no lung read at an end, or the part is not listed."""
    p = params.get("range") or {}
    mode = (p.get("spine_lung_ends") or {}).get(part)
    if not mode:
        return None
    lp = {**dict(p.get("lung_landmarks") or {}), "open_fov": True,
          "open_fov_max_posterior_mm": p.get("spine_lung_max_posterior_mm")}
    group = next((g for g in _acquisitions(_axial(exam)) if any(s is series for s in g)), [series])
    if isinstance(mode, dict) and mode.get("apex_above_bottom_max_mm") is not None:
        # a cervical spine (C1-T1) ends ~10 mm below T1, which lies ~31 mm below the lung apex: a complete
        # scan's last ~20-37 mm show the lung apices, one extended into the thoracic spine 82-111 mm
        # (i9208 + i9206, 33 complete, 6 extended C-spines). The scan length cannot tell (i9208 E00310:
        # 217 mm, extended by 54, inside 156-225). The apex is where the lungs' unbroken run from the
        # end slice up stops (see _lung_run_from_bottom); none when the end slice shows no lung
        below = _lung_run_from_bottom(group, lp)
        if below is None:
            return None
        row["scan_below_lung_apex_mm"] = round(below, 1)
        if below > float(mode["apex_above_bottom_max_mm"]):
            return "过大", "bottom", below
        return None
    top, bottom = _lung_margin(group, "top", lp), _lung_margin(group, "bottom", lp)
    row["lung_margin_mm"] = {"top": None if top is None else round(top[0], 1),
                             "bottom": None if bottom is None else round(bottom[0], 1)}
    over = float(p.get("max_overscan_mm", 40.0))
    for end, reading in (("top", top), ("bottom", bottom)):
        if reading is not None and reading[0] <= 0.0:
            return "过小", end, 0.0
    for end, reading in (("top", top), ("bottom", bottom)):
        if reading is not None and reading[0] > over:
            return "过大", end, float(reading[0])
    return None


def _range_by_length(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink, cache: dict[str, Any],
                     table: dict[str, Any]) -> DimensionResult | None:
    """Scan length against the anatomical length of each item part (``range.length_mm``), for parts
    the body-region scorer cannot place (a spine's small FOV, a knee: no body-region landmarks);
    None when the table does not cover the exam (a part without an entry, or one acquisition over
    several parts).

    Each part's acquisition (first to last slice position) is compared with the span a correctly
    planned scan of the part has across patient sizes: shorter is 过小, longer is 过大; several
    parts (胸腰椎 scanned as two acquisitions, head + cervical spine) are judged part by part, and
    the exam is 过小 when any part is short, else 过大 when any is long. Which end is short or long
    is not localised by length alone (no vertebra-level model): the finding names the part's
    required landmarks and the measured vs expected lengths. A head part whose top slice is a large
    cross-section (``vertex_cap_max_area_ratio``) misses the vertex whatever its length."""
    p = params.get("range") or {}
    plan = _length_plan(exam, table, [str(x) for x in p.get("part_order") or []], params)
    if plan is None:
        return None
    cap_limit = p.get("vertex_cap_max_area_ratio")
    rows: list[dict[str, Any]] = []
    findings = []
    values = []
    for part, series, length in plan:
        lo, hi = (float(v) for v in table[part])
        ends = [str(e) for e in (p.get("length_landmarks") or {}).get(part) or []]
        names = [_landmark_name(params, e) for e in ends]
        zh_ends = "–".join(n[0] for n in names) or part
        en_ends = "-".join(n[1] for n in names) or part
        row: dict[str, Any] = {"part": part, "length_mm": round(length, 1), "expected_mm": [lo, hi],
                               "required": ends, "series_uid": series_uid(series)}
        value = "正常" if lo <= length <= hi else ("过小" if length < lo else "过大")
        stack = _load(series, cache, need_volume=False)
        vertex_cut = False
        if cap_limit is not None and ends[:1] == ["vertex"] and not isinstance(stack, Exception):
            ratio = _top_slice_area_ratio(stack)
            if ratio is not None:
                row["top_slice_area_ratio"] = round(ratio, 3)
                vertex_cut = ratio > float(cap_limit)
        if vertex_cut:
            value = "过小"
        # a scan a little shorter than the part's shortest length is a small patient when the lungs
        # beside the spine show both ends clear (held-out i9206 E00221: a complete T-spine of 279.7 mm
        # against 282, its lung apex and base 11 and 18 mm inside the scan): the lung edges decide
        # (``range.length_short_lungs_clear_mm``; a cut T-spine's end slice shows lung)
        near = float(p.get("length_short_lungs_clear_mm") or 0.0)
        lungs_decide = value != "过小" or (not vertex_cut and near > 0 and lo - length <= near)
        lung_end = _spine_lung_ends(exam, series, part, params, row) if lungs_decide else None
        if value == "过小" and lung_end is None and lungs_decide:
            # each lung edge well inside (``length_short_lungs_clear_min_margin_mm``): the small lung tip
            # beside a cut end reads a few mm inside (i9206 E00272, a 21 mm cut: base read 5.9 mm inside)
            margins = row.get("lung_margin_mm") or {}
            least = float(p.get("length_short_lungs_clear_min_margin_mm", 0.0))
            if all(margins.get(e) is not None and float(margins[e]) >= least for e in ("top", "bottom")):
                value = "正常"
                row["length_short_lungs_clear"] = True
        long_near = float(p.get("length_long_lungs_clear_mm") or 0.0)
        if value == "过大" and lung_end is None and long_near > 0 and length - hi <= long_near:
            # a tall patient, not an extension: each lung edge read inside the scan, neither end past it
            # by more than max_overscan_mm (else lung_end says 过大); i9212 E00081, 350.3 mm against 345,
            # lung apex and base both 22.8 mm inside (``range.length_long_lungs_clear_mm``)
            margins = row.get("lung_margin_mm") or {}
            least = float(p.get("length_short_lungs_clear_min_margin_mm", 0.0))
            if all(margins.get(e) is not None and float(margins[e]) >= least for e in ("top", "bottom")):
                value = "正常"
                row["length_long_lungs_clear"] = True
        if lung_end is not None:
            value = lung_end[0]
        row["value"] = value
        rows.append(row)
        values.append(value)
        if value == "正常":
            continue
        pic = None
        idx = None
        if not isinstance(stack, Exception):
            at_top = value == "过小" if lung_end is None else lung_end[1] == "top"
            idx = int(np.argmax(stack.z)) if at_top else int(np.argmin(stack.z))
            pic = add_picture(sink, np.asarray(stack.hu[idx]), f"range_length_{part.lower()}", window=(40.0, 400.0))
        if lung_end is not None:
            zh_l, en_l = _landmark_name(params, ends[0] if lung_end[1] == "top" else ends[-1]) if ends else (part, part)
            side_zh, side_en = ("首层", "first") if lung_end[1] == "top" else ("末层", "last")
            if value == "过小":
                zh = f"扫描范围过小：未包括{zh_l}（{side_zh}图像仍可见肺组织）"
                en = f"scan range too small: {en_l} not covered (the {side_en} slice still shows lung)"
            elif "scan_below_lung_apex_mm" in row:  # a cervical spine run on into the chest
                zh = f"扫描范围过大：扫描下端低于肺尖约 {lung_end[2]:.0f} mm，超过{zh_l}（肺边缘测量）"
                en = f"scan range too large: the scan runs about {lung_end[2]:.0f} mm below the lung apex, past the {en_l}"
            else:
                zh = f"扫描范围过大：{zh_l}{'上方' if lung_end[1] == 'top' else '下方'}多扫约 {lung_end[2]:.0f} mm（肺边缘测量）"
                en = f"scan range too large: about {lung_end[2]:.0f} mm scanned {'above' if lung_end[1] == 'top' else 'below'} the lung {'apex' if lung_end[1] == 'top' else 'base'} beside the {en_l}"
        elif vertex_cut:
            zh_v, en_v = _landmark_name(params, "vertex")
            zh = f"扫描范围过小：未包括{zh_v}（首层仍为大面积头部断面）"
            en = f"scan range too small: {en_v} not covered (the top slice still shows a large head section)"
        elif value == "过小":
            zh = f"扫描范围过小：扫描长度 {length:.0f} mm，{zh_ends} 应约 {lo:.0f}–{hi:.0f} mm（未全部包括）"
            en = (f"scan range too small: scanned length {length:.0f} mm, {en_ends} needs about {lo:.0f}-{hi:.0f} mm "
                  "(not all covered)")
        else:
            zh = f"扫描范围过大：扫描长度 {length:.0f} mm，{zh_ends} 约需 {lo:.0f}–{hi:.0f} mm"
            en = f"scan range too large: scanned length {length:.0f} mm, {en_ends} needs about {lo:.0f}-{hi:.0f} mm"
        findings.append(finding("IQC-RANGE", "range", value, zh, en,
                                [Evidence(series_uid=series_uid(series),
                                          instance_index=None if isinstance(stack, Exception) else stack.instance_index(idx),
                                          measured=round(length, 1), limit=[lo, hi], unit="mm", image=pic,
                                          extra={"part": part, "method": "scan_length"})]))
    overall = "过小" if "过小" in values else ("过大" if "过大" in values else "正常")
    details: dict[str, Any] = {"method": "scan_length", "parts": rows}
    if len(rows) == 1:  # the single-part keys stay where readers of earlier results found them
        details.update({k: v for k, v in rows[0].items() if k != "value"})
    return DimensionResult(overall, details, findings=[f for f in findings if f.value == overall])


def _range(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink, cache: dict[str, Any]) -> DimensionResult:
    p = params.get("range") or {}
    lengths = dict(p.get("length_mm") or {})
    by_length = _range_by_length(exam, params, sink, cache, lengths)
    if by_length is not None:
        return by_length
    # parts the scorer places but whose length also tells (a head): used only when the scorer
    # cannot position the scan; and several parts of which one is only judged by length (head +
    # cervical spine) are judged part by part
    fallback = {**dict(p.get("length_fallback_mm") or {}), **lengths}
    parts = _exam_parts(exam)
    if len(parts) > 1 and any(part in lengths for part in parts):
        mixed = _range_by_length(exam, params, sink, cache, fallback)
        if mixed is not None:
            return mixed
    if p.get("assess") is False:
        return not_assessable("range_not_measurable", str(p.get("reason_zh") or "该项目的扫描范围暂无法测量"),
                              str(p.get("reason_en") or "scan range of this item cannot be measured yet"))
    result = _range_by_scorer(exam, params, sink, cache)
    # a consensus line (range.consensus_fit_when_implausible) stands in for 无法评估 only: where the part's
    # length can judge, the length does, as before the consensus existed (validation 8561 E00182, a liver)
    if result.value == NOT_ASSESSABLE or "position_from_consensus_fit" in (result.details or {}):
        by_fallback = _range_by_length(exam, params, sink, cache, fallback)
        if by_fallback is not None:
            key = "scorer_not_assessable" if result.value == NOT_ASSESSABLE else "scorer_consensus_fit"
            by_fallback.details = {**(by_fallback.details or {}), key: result.details}
            return by_fallback
    if p.get("shifted_fit_to_length") and _shifted_fit(result, p):
        by_fallback = _range_by_length(exam, params, sink, cache, fallback)
        if by_fallback is not None:
            by_fallback.details = {**(by_fallback.details or {}), "scorer_shifted": result.details}
            return by_fallback
        # several parts in one acquisition have no length of their own: the two ends' margins summed do
        # not depend on the fit's offset, only on its slope; a non-negative sum (within the tolerance)
        # is a scan long enough for the parts, its ends placed by a shifted fit (i9204 E00148)
        d = result.details or {}
        total = float(d["top_margin_mm"]) + float(d["bottom_margin_mm"])
        if total >= -float(p.get("missing_tolerance_mm", 8.0)):
            return DimensionResult("正常", {**{k: v for k, v in d.items() if k != "missing"},
                                           "scorer_shifted": True, "total_margin_mm": round(total, 1)})
    return result


def _shifted_fit(result: DimensionResult, p: dict[str, Any]) -> bool:
    """The scorer's ends contradict each other: one required landmark missing while the other end runs
    past its landmark by more than ``max_overscan_mm``.

    A scan of the right length placed wrongly would read so, but what this shows in practice is the
    body-region scorer's position fit pulled toward mid-body on blurred images (its training saw noise,
    no blur: i9204 E00000 liver, E00044 pelvis, E00148 abdomen + pelvis, all blur defects, read 37-62 mm
    missing at one end and 60-76 mm over at the other while the true margins were 7-34 mm). The scan's
    length is then the measure left (``_range`` falls back to ``length_fallback_mm`` where the part has one)."""
    d = result.details or {}
    if result.value != "过小" or "top_margin_mm" not in d or "landmark_method" in d:
        return False
    over = float(p.get("max_overscan_mm", 40.0))
    top, bottom = float(d["top_margin_mm"]), float(d["bottom_margin_mm"])
    missing = set(d.get("missing") or [])
    req = list(d.get("required") or [])
    return bool(req) and ((req[0] in missing and bottom > over) or (req[-1] in missing and top > over))


def _slice_z(ds: Any) -> float:
    pos = ds.get("ImagePositionPatient")
    return float(pos[2]) if pos is not None else 0.0


def _hu(ds: Any) -> np.ndarray:
    a = np.asarray(ds.pixel_array, dtype=np.float32)
    return a * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)


def _lung_areas(img: np.ndarray, spacing: tuple[float, float], lp: dict[str, Any]) -> list[float]:
    """Areas (mm²) of the air regions inside the body lying off the midline: lung sections, not the trachea."""
    from scipy import ndimage

    while img.shape[0] > 256:  # a 512² slice at half resolution: lung sections are centimetres wide
        img, spacing = img[::2, ::2], (spacing[0] * 2.0, spacing[1] * 2.0)
    body = body_mask(img)
    if body.sum() < 20:
        return []
    cx = float(np.nonzero(body)[1].mean())
    air_hu = float(lp.get("air_hu", -400))
    if lp.get("enclosed_air_is_body"):
        # air enclosed by tissue is inside the body even where the opened body contour breaks: on a
        # 64-px, 6 mm grid the chest wall below the lungs is a pixel or two thick, the opening cuts it,
        # the contour's fill then leaves the lung bases outside (validation 9202 E00015 / E00019: the
        # last 2-3 lung slices unread, a complete chest read 50-76 mm past the lung base, 过大)
        body = body | ndimage.binary_fill_holes(img > air_hu)
    if lp.get("open_fov"):
        # a targeted FOV (a thoracic spine: ~225 mm centred on the vertebrae) cuts the chest wall off:
        # the lungs run into the FOV edge, so no body contour encloses them (validation i9204: no lung
        # read on 8 of 10 T-spines). Air regions are then taken wherever they lie, short of the padding
        # outside the FOV circle (< padding_hu); air outside the body is told apart by its HU below
        # (``min_mean_hu``: pure air ~ -1000, lung ~ -850)
        body = img > float(lp.get("padding_hu", -1500.0))
    air = ndimage.binary_opening((img < air_hu) & body)
    if lp.get("split_midline"):
        # both lungs joined across a mediastinum thinner than a pixel (a 64-px, 6-7 mm grid) make one
        # component centred on the midline, which the lateral test below drops as the trachea: cut at
        # the body's midline column so each lung is judged on its own side (validation 9202 E00057: a
        # chest cut 36 mm below the apex, its top slices unread, read 正常); the trachea's halves stay
        # within a few mm of the midline
        air[:, int(round(cx))] = False
    labels, n = ndimage.label(air)
    if n == 0:
        return []
    # per-component pixel count and mean column in one pass (a sharp kernel's speckle makes many)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:].astype(float)
    col_sums = np.bincount(flat, weights=np.tile(np.arange(labels.shape[1], dtype=float), labels.shape[0]), minlength=n + 1)[1:]
    lateral = np.abs(col_sums / np.maximum(counts, 1.0) - cx) * spacing[1] >= float(lp.get("min_lateral_mm", 15.0))
    behind = lp.get("open_fov_max_posterior_mm")
    if lp.get("open_fov") and behind is not None:
        # a targeted spine FOV is centred ~15 mm behind the vertebral body (near the canal): the lungs lie
        # beside and in front of it, while the air behind the back is outside the patient. Blur lifts that
        # band's values to lung-like ones (i9218 E00115, a blurred complete T-spine: the band behind the back
        # on the last slices, centroid ~70 mm posterior, read as lung, 过小); a region whose centroid lies
        # more than this far behind the image centre is not lung
        row_sums = np.bincount(flat, weights=np.repeat(np.arange(labels.shape[0], dtype=float), labels.shape[1]),
                               minlength=n + 1)[1:]
        depth = (row_sums / np.maximum(counts, 1.0) - (labels.shape[0] - 1) / 2.0) * spacing[0]
        lateral &= depth <= float(behind)
    gas_below = lp.get("min_mean_hu")
    if gas_below is not None:
        # gas under the diaphragm (the stomach's bubble, bowel) is pure air (~ -1000 HU); lung
        # parenchyma holds blood and tissue (~ -850): without this a scan ending through the
        # fundus reads "the last slice still shows lung" on a complete chest
        hu_sums = np.bincount(flat, weights=img.ravel().astype(float), minlength=n + 1)[1:]
        lateral &= hu_sums / np.maximum(counts, 1.0) >= float(gas_below)
        if lp.get("open_fov") and lateral.any():
            # outside air is in the mask too here: with heavy noise its values are clipped at the
            # stored minimum (-1024), which lifts its mean to ~ -930, past the gas limit (v8310 E00057:
            # a noisy T-spine, air around the neck read as lung at both ends); its median stays ~ -1000
            idx = np.nonzero(lateral)[0] + 1
            medians = np.asarray(ndimage.median(img, labels, idx), dtype=float)
            if lp.get("core_median"):
                # read on the region's interior (``core_median`` pixels in from its border): blur and partial volume
                # mix a thin band of outside air with the skin and the padding at its borders, which on a
                # 64-px grid lifts its median to ~ -940 (2 px in: -975; i9210 E00163, a blurred off-centre T-spine: the
                # air band behind the body read as lung in the end slice, a complete scan 过小); a lung's
                # interior stays ~ -850. Regions without an interior keep the whole-region median
                core = np.where(ndimage.binary_erosion(labels > 0, iterations=int(lp["core_median"])), labels, 0)
                n_core = np.bincount(core.ravel(), minlength=n + 1)[idx]
                inner = np.asarray(ndimage.median(img, core, idx), dtype=float)
                medians = np.where(n_core >= 4, inner, medians)
            lateral[idx - 1] = medians >= float(gas_below)
    return [float(c) * spacing[0] * spacing[1] for c in counts[lateral]]


def _lung_margin(group: list[SeriesImages], end: str, lp: dict[str, Any],
                 reach: float = 0.5) -> tuple[float, float, Any, int, SeriesImages] | None:
    """How far the scan runs beyond the lungs at one end (``top``: above the apex, ``bottom``: below the
    base), read on the pixels: the distance from the end slice to the first slice showing lung, less
    half a slice spacing (the apex / base lies between that slice and its outer neighbour). 0 when the
    end slice itself shows lung (the lung is cut). None without lungs or readable slices.

    The series of the acquisition with the most slices is read (the finest z sampling), only from the
    end inward and 7 slices spread over it for the reference lung size (an acquisition may run from
    the chest to the pelvis). Lung: an air region (below
    ``air_hu``) inside the body, off the midline (the trachea is not lung), of at least ``min_area_mm2``
    and ``min_fraction`` of the largest lung section of the middle slices (speckle of a sharp kernel,
    a skin fold are not lung). Returns (margin mm, spacing mm, end slice HU, instance index, series)."""
    series = max(group, key=lambda s: int(header_of(s, "n_instances") or 0))
    try:
        datasets = sorted(series.datasets(), key=_slice_z, reverse=True)  # superior first
    except Exception:  # noqa: BLE001 - unreadable series: no lung reading
        return None
    n = len(datasets)
    if n < 3:
        return None
    ps = datasets[0].get("PixelSpacing") or [1.0, 1.0]
    spacing = (float(ps[0]), float(ps[1]))
    try:
        reference = max((max(_lung_areas(_hu(datasets[i]), spacing, lp), default=0.0) for i in pick_slices(n, 7)),
                        default=0.0)
        min_area = max(float(lp.get("min_area_mm2", 300.0)), float(lp.get("min_fraction", 0.05)) * reference)
        if reference < min_area:
            return None
        # a thin series is read every ``step_mm`` (the margin's precision), not slice by slice
        pitch = abs(_slice_z(datasets[0]) - _slice_z(datasets[-1])) / max(n - 1, 1)
        stride = max(1, int(round(float(lp.get("step_mm", 2.5)) / max(pitch, 0.1))))
        order = list(range(0, n, stride)) if end == "top" else list(range(n - 1, -1, -stride))
        for step, i in enumerate(order):
            if step * stride > int(n * reach):  # only the end part of the acquisition (``reach``) is searched
                return None
            img = _hu(datasets[i])
            if max(_lung_areas(img, spacing, lp), default=0.0) >= min_area:
                end_ds = datasets[0] if end == "top" else datasets[-1]
                end_img = img if step == 0 else _hu(end_ds)
                if step == 0:
                    return 0.0, 0.0, end_img, 0 if end == "top" else n - 1, series
                dz = abs(_slice_z(datasets[i]) - _slice_z(end_ds))
                gap = abs(_slice_z(datasets[i]) - _slice_z(datasets[order[step - 1]]))
                return dz - gap / 2.0, gap, end_img, 0 if end == "top" else n - 1, series
    except Exception:  # noqa: BLE001 - undecodable pixels: no lung reading
        return None
    return None


def _bottom_up(group: list[SeriesImages], step_mm: float) -> tuple[SeriesImages, list[Any], int] | None:
    """The group's series with the most slices, its data sets inferior first, and the stride that reads
    about one slice every ``step_mm``; None under 3 slices. Decoding errors propagate to the caller,
    whose reading then has no value.

    Shared by the readings that walk up from the scan's bottom slice to a landmark (the lungs' lower
    run, the iliac crest, the pubic symphysis)."""
    series = max(group, key=lambda s: int(header_of(s, "n_instances") or 0))
    datasets = sorted(series.datasets(), key=_slice_z)  # inferior first
    n = len(datasets)
    if n < 3:
        return None
    pitch = abs(_slice_z(datasets[-1]) - _slice_z(datasets[0])) / max(n - 1, 1)
    return series, datasets, max(1, int(round(step_mm / max(pitch, 0.1))))


def _lung_run_from_bottom(group: list[SeriesImages], lp: dict[str, Any]) -> float | None:
    """How far up from the scan's bottom slice the lungs run without a break (mm; to midway between the
    last slice showing lung and the first that does not), or None when the bottom slice shows no lung,
    no slice is free of lung or nothing is readable.

    Read upward from the end, not downward from the top: air that metal streaks or motion leave in a
    neck slice reads as a lung section on its own (i9208 E00012, E00244: metal; E00014: motion + blur;
    their first "lung" slices 4-89 mm below the top of a C-spine), but it does not run on to the chest.
    Lung as in :func:`_lung_margin` (the series with the most slices, every ``step_mm``)."""
    try:
        stack = _bottom_up(group, float(lp.get("step_mm", 2.5)))
        if stack is None:
            return None
        _, datasets, stride = stack
        n = len(datasets)
        ps = datasets[0].get("PixelSpacing") or [1.0, 1.0]
        spacing = (float(ps[0]), float(ps[1]))
        reference = max((max(_lung_areas(_hu(datasets[i]), spacing, lp), default=0.0) for i in pick_slices(n, 7)),
                        default=0.0)
        min_area = max(float(lp.get("min_area_mm2", 300.0)), float(lp.get("min_fraction", 0.05)) * reference)
        last = None
        for i in range(0, n, stride):
            if max(_lung_areas(_hu(datasets[i]), spacing, lp), default=0.0) >= min_area:
                last = i
                continue
            if last is None:
                return None  # the bottom slice shows no lung
            return (_slice_z(datasets[last]) + _slice_z(datasets[i])) / 2.0 - _slice_z(datasets[0])
    except Exception:  # noqa: BLE001 - undecodable pixels: no lung reading
        return None
    return None


def _lung_anchor(group: list[SeriesImages], params: dict[str, Any], slope_mm: tuple[float, float],
                 typical_mm: float) -> tuple[float, float, dict[str, Any]] | None:
    """A position line (a, b: score = a + b z) from the lung edges an acquisition shows on its pixels, or None.

    The lung apex and base are body-region landmarks (``landmark_scores``) that the pixels show directly
    (:func:`_lung_margin`, searched over the whole acquisition): an edge lying inside the scan (its end
    slice shows no lung) is a point of the line. Both edges inside give the patient's own scale (mm per
    unit, within ``slope_mm`` or no anchor; the generator's anatomy: lung scale 7.2-9.4 mm/unit, and the lung
    scale predicts the pubic symphysis within +-17 mm where the adult typical one misses it by up to 47,
    i9208 221 trunks); one edge alone gives no anchor. Noise and blur do not move an
    air/tissue edge of centimetres, while the scorer compresses such a series' whole profile toward mid-body.
    Returns (a, b, details)."""
    p = params.get("range") or {}
    lp = dict(p.get("lung_landmarks") or {})
    scores = params.get("landmark_scores") or {}
    if not lp or "lung_apex" not in scores or "lung_base" not in scores:
        return None
    series = max(group, key=lambda s: int(header_of(s, "n_instances") or 0))
    try:
        zs = sorted(_slice_z(ds) for ds in series.datasets())
    except Exception:  # noqa: BLE001 - unreadable series: no anchor
        return None
    if len(zs) < 3:
        return None
    edges: dict[str, float] = {}
    for end, name in (("top", "lung_apex"), ("bottom", "lung_base")):
        reading = _lung_margin([series], end, lp, reach=1.0)
        if reading is None or reading[0] <= 0.0:
            continue  # no lung, or the lung is cut at this end: no edge inside the scan
        edges[name] = zs[-1] - reading[0] if end == "top" else zs[0] + reading[0]
    s_apex, s_base = float(scores["lung_apex"]), float(scores["lung_base"])
    lo, hi = float(slope_mm[0]), float(slope_mm[1])
    info: dict[str, Any] = {"edges_z_mm": {k: round(v, 1) for k, v in edges.items()}}
    if "lung_apex" in edges and "lung_base" in edges and edges["lung_apex"] > edges["lung_base"]:
        own = (edges["lung_apex"] - edges["lung_base"]) / (s_base - s_apex)
        info["lung_mm_per_unit"] = round(own, 2)
        if not lo <= own <= hi:
            return None  # no patient's lungs: air of the neck or noise read as lung (i9208 E00126: 7 mm "lungs")
        mm = own
        # through the lungs' middle: either edge's reading error moves the line by half of it
        z0, s0 = (edges["lung_apex"] + edges["lung_base"]) / 2.0, (s_apex + s_base) / 2.0
    else:
        # one edge is weak evidence: the lung bases an abdomen scan starts among are small posterior tips
        # that noise hides (i9208 E00119, an upper abdomen cut 27 mm below the renal pole: its base read
        # high, the pole placed 18 mm too high, 正常); ``typical_mm`` is kept for a caller that accepts one
        return None
    b = -1.0 / mm
    info["mm_per_unit"] = round(mm, 2)
    return s0 - b * z0, b, info


def _frame_of_reference(stack: _Stack) -> str | None:
    """The table frame a series' z positions are in: study, patient position and scanner.

    Not the FrameOfReferenceUID: scanners (and the generator) give each acquisition of a study its
    own, although the patient stays on the same table and the table's z is the same device's; a
    chest and an abdomen acquisition of one study therefore share positions. None without a header."""
    try:
        ds = stack.series.datasets()[0]
    except Exception:  # noqa: BLE001 - no readable header: the frame is unknown
        return None
    keys = ("StudyInstanceUID", "PatientPosition", "StationName", "DeviceSerialNumber")
    return "|".join(str(ds.get(k) or "") for k in keys)


def _item_regions(exam: ExamImages, params: dict[str, Any]) -> list[str]:
    """Body regions the ordered items require (their parts' landmark spans, as :func:`_regions_of`
    reads a scan): a chest order's reference is the chest's even when the scan ran on into the neck."""
    scores = params.get("landmark_scores") or {}
    out: list[str] = []
    for _, (top, bottom) in _part_spans(exam, params, []):
        if top in scores and bottom in scores:
            lo, hi = sorted((float(scores[top]), float(scores[bottom])))
            out += [r for r in _regions_of(params, lo, hi) if r not in out]
    return out


def _note_regions(params: dict[str, Any], group: list[SeriesImages], s_top: float, s_bottom: float,
                  cache: dict[str, Any]) -> None:
    """Body regions of an acquisition per member series (the dose reference and the expected-noise
    model read them): those it covers, restricted to the ordered items' regions when it covers any of
    them (the generator, like a department's protocol, sets a scan's dose by what was ordered; an
    over-scan into the neck does not raise a chest's reference level to the neck's)."""
    regions = _regions_of(params, s_top, s_bottom)
    ordered = cache.get("item_regions") or []
    planned = [r for r in regions if r in ordered]
    regions = planned or regions
    for member in group:
        cache.setdefault("acq_regions", {})[series_uid(member)] = regions


def _range_by_scorer(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink, cache: dict[str, Any]) -> DimensionResult:
    """Coverage of the required landmarks by the body-region scorer's position fit per acquisition.

    An acquisition the scorer cannot position on its own (a short abdomen scan gives a flat score
    profile, metal streaks disturb it) takes the fit of a positioned acquisition of the same study,
    patient position and scanner: one patient on one table, so positions and mm per score unit carry
    over. An ordered
    part the acquisitions cover less than ``min_imaged_fraction`` of (a chest on an order whose
    images hold only the upper abdomen: the lung bases show, the rest is absent) is taken as not in
    this study, as a RIS splits a combined order into exams; the range is judged over the parts
    that are imaged and the others are named in the details (only when every acquisition is
    positioned by its own fit: an unpositioned one may hold the part, and a borrowed fit is
    extrapolated beyond the anatomy it was fitted on)."""
    p = params.get("range") or {}
    unmeasured: list[str] = []
    spans = _part_spans(exam, params, unmeasured)
    span = _outermost(spans, params)
    if span is None:
        return not_assessable("unknown_item_range", "检查项目未知，无法确定应扫描范围", "exam item unknown: required range not known")
    scorer = _scorer()
    if scorer is None:
        return not_assessable("no_body_region_model", "体部定位模型不可用", "body-region model unavailable")
    axial = _acquisitions(_axial(exam))
    if not axial:
        return not_assessable("no_axial_series", "无可用的轴位原始序列", "no axial original series")
    scores_std = params.get("landmark_scores") or {}
    # covered score ranges (per acquisition) and a mm-per-unit slope for each
    covered: list[tuple[float, float, float, _Stack]] = []
    errors: list[str] = []
    fits: list[tuple[float, float, str | None, float]] = []  # a, b, frame of reference, mid z
    unpositioned: list[tuple[_Stack, list[SeriesImages], str]] = []
    positioned: list[tuple[float, float, _Stack, list[SeriesImages]]] = []
    consensus_used: list[str | None] = []
    consensus_ids: set[int] = set()
    consensus_line: dict[int, tuple[float, float]] = {}
    lo_mm, hi_mm = p.get("plausible_mm_per_unit", [5.0, 13.0])
    for group in axial:
        # the series covering the most z first (a thick series may be a sample of the slices), soft
        # kernels before sharp ones; slices need not form a regular volume: each is scored at its own z
        group = sorted(group, key=lambda s: (-round(_extent(s) / 10.0), _kernel_class(s) not in ("soft", "head")))
        stack = _first_in_order(group, cache)
        if isinstance(stack, Exception):
            errors.append(_reason_code(stack))
            continue
        try:
            fit = _score_fit(stack, scorer)
        except Exception as exc:  # noqa: BLE001
            unpositioned.append((stack, group, type(exc).__name__))
            continue
        if fit is None:
            unpositioned.append((stack, group, "no_position_fit"))
            continue
        a, b, _ = fit
        mm_per_unit = -1.0 / b
        consensus = p.get("consensus_fit_when_implausible")
        if not lo_mm <= mm_per_unit <= hi_mm and consensus and stack.score_points is not None:
            # most slices may still agree on a line of a patient's scale: a few misread end slices made
            # the least-squares line implausible (see _consensus_fit; range.consensus_fit_when_implausible)
            clamp = p.get("clamp_mm_per_unit") or [lo_mm, hi_mm]
            agreed = _consensus_fit(stack.score_points[0], stack.score_points[1], (float(clamp[0]), float(clamp[1])),
                                    float(consensus.get("tolerance_units", 3.0)), float(consensus.get("min_fraction", 0.6)))
            if agreed is not None and lo_mm <= -1.0 / agreed[1] <= hi_mm:
                consensus_line[id(stack)] = agreed
        if not lo_mm <= mm_per_unit <= hi_mm:
            # a flat or steep score profile (small spine FOV, cropped anatomy): positions not trustworthy
            unpositioned.append((stack, group, "position_fit_implausible"))
            continue
        positioned.append((a, b, stack, group))
    # the consensus line only where no acquisition of the same table is positioned to borrow from: a noisy
    # neck's consensus line ran through its compressed part (validation 8560 E00080: aortic arch 71 mm
    # "missing"; borrowed from the head: 14), so it saves an acquisition from 无法评估, nothing more
    frames = {_frame_of_reference(st) for _, _, st, _ in positioned}
    for entry in list(unpositioned):
        loose = entry[0]
        if id(loose) in consensus_line and _frame_of_reference(loose) not in frames:
            a, b = consensus_line[id(loose)]
            unpositioned.remove(entry)
            positioned.append((a, b, loose, entry[1]))
            consensus_used.append(loose.uid)
            consensus_ids.add(id(loose))
    # an acquisition positioned by its consensus line keeps it: its misread slices would pull a pooled line
    pooled = [k for k, (_, _, st, _) in enumerate(positioned) if id(st) not in consensus_ids]
    if p.get("joint_fit") and len(pooled) > 1:
        joint = _joint_fits([positioned[k][:3] for k in pooled], float(lo_mm), float(hi_mm))
        for k, (a, b, st) in zip(pooled, joint, strict=True):
            positioned[k] = (a, b, st, positioned[k][3])
    # clamped fits' (score, z) centre and the adult typical slope (range.clamp_outside_to_mm_per_unit)
    typical_of: dict[int, tuple[float, float, float]] = {}
    lung_anchored: list[dict[str, Any]] = []
    for a, b, stack, group in positioned:
        mm_per_unit = -1.0 / b
        clamp = p.get("clamp_mm_per_unit")
        if clamp and not float(clamp[0]) <= mm_per_unit <= float(clamp[1]):
            # a patient's mm per score unit is his height's (adult ~8.35 +-15%): a fit outside that is the
            # scorer compressing or stretching the profile (a neck read over 16-32 instead of 14-36 called
            # both ends missing); its centre is kept, the slope held to the nearest plausible one
            z_mid = float(np.mean(stack.z))
            s_mid = a + b * z_mid
            mm_per_unit = min(max(mm_per_unit, float(clamp[0])), float(clamp[1]))
            if p.get("clamp_outside_to_mm_per_unit"):
                # a slope outside the height range tells little of this patient's scale: a blurred series
                # flattens the score profile (held-out i9206 E00045 / E00225: 10.4-11.0 mm/unit, the lower
                # renal pole extrapolated 50-107 mm too low; at the bound 9.6 still 40-68 mm "missing" of a
                # scan 16-21 mm past it). A landmark is then missing only when it is missing at the adult
                # typical slope too; excess stays judged at the bound (at 8.35 a short neck / abdomen +
                # pelvis read 过大 / lost its 过大: i9206 E00108, E00127)
                typical_of[id(stack)] = (s_mid, z_mid, float(p["clamp_outside_to_mm_per_unit"]))
            b = -1.0 / mm_per_unit
            a = s_mid - b * z_mid
            anchor = (_lung_anchor(group, params, (float(clamp[0]), float(clamp[1])),
                                   float(p.get("clamp_outside_to_mm_per_unit") or 8.35))
                      if p.get("lung_anchor_when_clamped") else None)
            if anchor is not None:
                # the compressed profile (blur, heavy noise) is off in its centre as well as its slope
                # (held-out i9208 E00072, blurred chest-abdomen-pelvis: scores 10-33 units low over the
                # pelvis, the pubic symphysis read 73 mm missing of a scan 82 mm past it): the lung edges
                # on the pixels place the line instead (see _lung_anchor)
                a, b, info = anchor
                mm_per_unit = -1.0 / b
                typical_of.pop(id(stack), None)
                lung_anchored.append({"series_uid": stack.uid, **info})
        fits.append((a, b, _frame_of_reference(stack), float(np.mean(stack.z))))
        z_hi, z_lo = _group_z(stack, group, p)
        covered.append((a + b * z_hi, a + b * z_lo, mm_per_unit, stack))
        _note_regions(params, group, a + b * z_hi, a + b * z_lo, cache)
    borrowed = []
    for loose, group, why in unpositioned:
        frame, mid = _frame_of_reference(loose), float(np.mean(loose.z))
        same = [f for f in fits if f[2] == frame]
        if not same:
            errors.append(why)
            continue
        a, b, _, _ = min(same, key=lambda f: abs(f[3] - mid))
        z_hi, z_lo = _group_z(loose, group, p)
        covered.append((a + b * z_hi, a + b * z_lo, -1.0 / b, loose))
        _note_regions(params, group, a + b * z_hi, a + b * z_lo, cache)
        borrowed.append({"series_uid": loose.uid, "own_fit": why})
    not_imaged: list[str] = []
    min_imaged = p.get("min_imaged_fraction")
    if p.get("parts_per_acquisition_imaged") and len(axial) >= len(spans):
        min_imaged = None  # each ordered part has an acquisition of its own: none is absent (see yaml)
    if min_imaged is not None and len(spans) > 1 and covered and not errors and not borrowed:
        intervals = [(c[0], c[1]) for c in covered]
        imaged = [sp for sp in spans if _imaged_fraction(sp[1], params, intervals) >= float(min_imaged)]
        if imaged and len(imaged) < len(spans):
            not_imaged = [sp[0] for sp in spans if sp not in imaged]
            span = _outermost(imaged, params) or span
    top, bottom = span
    s_top, s_bottom = float(scores_std[top]), float(scores_std[bottom])
    # the lung apex and base are read on the pixels where the item needs them: the lungs' own edges
    # beat the scorer's position fit there (validation 8202: its chest errors were fit errors)
    lp = p.get("lung_landmarks") or {}
    lung: dict[str, tuple[float, float, Any, int, SeriesImages] | None] = {"top": None, "bottom": None}
    if lp:
        by_top = sorted(axial, key=lambda g: -max(float(header_of(s, "z_max") or 0.0) for s in g))
        if top == "lung_apex":
            lung["top"] = _lung_margin(by_top[0], "top", lp)
        if bottom == "lung_base":
            lung["bottom"] = _lung_margin(by_top[-1], "bottom", lp)
    # a bottom landmark at the iliac crest's level is read on the bone (``range.iliac_crest_pixels``): the
    # scorer misread the lower renal pole by 30-84 mm on noisy, rotated or blurred abdomens (i9212 E00043,
    # E00164, E00291), the wings' top is an edge of bone the pixels show
    cp = p.get("iliac_crest_pixels") or {}
    crest_end = False
    if lung["bottom"] is None and bottom in (cp.get("landmarks") or {}) and axial:
        lowest = min(axial, key=lambda g: min(float(header_of(s, "z_min") or 0.0) for s in g))
        lung["bottom"] = _crest_margin(lowest, cp, float(cp["landmarks"][bottom]))
        crest_end = lung["bottom"] is not None
    if not covered and not (lung["top"] and lung["bottom"]):
        return not_assessable(errors[0] if errors else "no_axial_series", "轴位序列无法分析", "axial series could not be analysed",
                              errors=errors)
    tol = float(p.get("missing_tolerance_mm", 8.0))
    over = float(p.get("max_overscan_mm", 40.0))
    first = min(covered, key=lambda c: c[0]) if covered else None
    last = max(covered, key=lambda c: c[1]) if covered else None
    # mm beyond (positive) or short of (negative) each required end; the stack and slice each end is shown on
    ends: dict[str, dict[str, Any]] = {}
    for end, acq, reading in (("top", first, lung["top"]), ("bottom", last, lung["bottom"])):
        if (reading is not None and end == "bottom" and crest_end and reading[0] <= 0.0 and acq is not None
                and (acq[1] - s_bottom) * acq[2] >= 0.0):
            # no wing on the bottom slice, but the scorer places the landmark inside the scan: a crest tip
            # too small to read (blur, partial volume) is likelier than a cut; the scorer's reading stands
            reading, crest_end = None, False
        if reading is not None:
            margin, gap, img, idx, series = reading
            ends[end] = {"margin": margin, "method": "crest" if end == "bottom" and crest_end else "lung", "image": img,
                         "uid": series_uid(series), "index": idx, "cut": margin <= 0.0, "spacing": gap}
        else:
            assert acq is not None
            margin = (s_top - acq[0]) * acq[2] if end == "top" else (acq[1] - s_bottom) * acq[2]
            stack = acq[3]
            k = int(np.argmax(stack.z)) if end == "top" else int(np.argmin(stack.z))
            ends[end] = {"margin": margin, "method": "scorer", "image": stack.hu[k], "uid": stack.uid,
                         "index": stack.instance_index(k), "cut": False, "stack": stack}
            if id(stack) in typical_of:
                # the same end at the typical slope through the fit's centre (see typical_of above)
                s0, z0, m2 = typical_of[id(stack)]
                z_end = z0 + (s0 - (acq[0] if end == "top" else acq[1])) * acq[2]
                s_end = s0 - (z_end - z0) / m2
                ends[end]["typical_margin"] = (s_top - s_end) * m2 if end == "top" else (s_end - s_bottom) * m2
    apex_rule = p.get("bottom_from_lung_apex") or {}
    apex_margin = None
    if (bottom in apex_rule and ends["bottom"]["method"] == "scorer" and axial and "lung_apex" in scores_std
            and float(ends["bottom"]["margin"]) < -float((p.get("landmark_tolerance_mm") or {}).get(bottom, tol))):
        # a neck ends at the aortic arch, below the lung apex: the apex is an air/tissue edge the pixels show
        # (the lungs' unbroken run up from the bottom slice, _lung_run_from_bottom), the arch lies
        # (s_arch - s_apex) x mm_per_unit below it. Where the scorer calls the arch missing, the apex
        # reading rescues it (i9212 E00257, off-centre neck: scorer -43 mm, true +4) as typical_margin
        # does; a neck cut above the apex shows no lung on its bottom slice and stays missing
        lowest = min(axial, key=lambda g: min(float(header_of(s, "z_min") or 0.0) for s in g))
        run = _lung_run_from_bottom(lowest, {**dict(lp), "open_fov": True}) if lp else None
        if run is not None:
            apex_margin = run - (float(scores_std[bottom]) - float(scores_std["lung_apex"])) * float(apex_rule[bottom])
            prior = ends["bottom"].get("typical_margin")
            ends["bottom"]["typical_margin"] = apex_margin if prior is None else max(float(prior), apex_margin)
    sp = p.get("symphysis_pixels") or {}
    symphysis_at = None
    sym_over = _landmark_overscan(p, bottom, _exam_parts(exam), over)
    if (bottom in (sp.get("landmarks") or []) and ends["bottom"]["method"] == "scorer" and axial and sp.get("judge_excess")
            and float(ends["bottom"]["margin"]) > sym_over):
        # the same saturation reads a complete pelvis past its limit (fresh i9216 E00174: 55 mm, true 32): where the
        # pixels show the symphysis inside the limit, their height is the bottom margin. Out of reach or not seen,
        # the scorer's reading stands (an extended scan runs 75-90 mm past the symphysis)
        lowest = min(axial, key=lambda g: min(float(header_of(s, "z_min") or 0.0) for s in g))
        symphysis_at = _symphysis_height(lowest, sp)
        if symphysis_at is not None and symphysis_at <= sym_over:
            ends["bottom"]["margin"] = symphysis_at
    elif (bottom in (sp.get("landmarks") or []) and ends["bottom"]["method"] == "scorer" and axial
            and float(ends["bottom"]["margin"]) < -float((p.get("landmark_tolerance_mm") or {}).get(bottom, tol))):
        # the scorer's score saturates over the lower pelvis and a noisy or blurred pelvis' profile is
        # compressed: complete scans 24-35 mm past the symphysis read 17-24 mm short of it (fresh i9216 E00112,
        # E00226). The symphysis is bone the pixels show: the pubic bones meet on the midline, in front, and no
        # other bone lies there in the lower pelvis (_symphysis_height). Seen in the bottom part of the scan, the
        # landmark is imaged; not seen, the scorer's reading stands (a cut is never called from the pixels)
        lowest = min(axial, key=lambda g: min(float(header_of(s, "z_min") or 0.0) for s in g))
        symphysis_at = _symphysis_height(lowest, sp)
        if symphysis_at is not None:
            prior = ends["bottom"].get("typical_margin")
            ends["bottom"]["typical_margin"] = 0.0 if prior is None else max(float(prior), 0.0)
    crest_shift = None
    if (cp.get("shift_scorer_top") and ends["bottom"]["method"] == "crest" and not ends["bottom"]["cut"]
            and ends["top"]["method"] == "scorer" and first is not None and first is last):
        # one acquisition, its bottom landmark read on the bone: the scorer's line is moved along z through
        # that point, keeping its slope, and the top read on it (i9212 E00112: the scorer's fit 46 mm low,
        # the dome read 67 mm inside the scan, 过大; moved: 21, true 16.5)
        crest_shift = float(ends["bottom"]["margin"]) - (last[1] - s_bottom) * last[2]
        ends["top"]["margin"] = float(ends["top"]["margin"]) - crest_shift
        if id(last[3]) in typical_of:
            # a slope outside the height range (blur flattens the profile) is no measure of this patient's
            # scale: through the crest point the top is read at the adult typical slope too, the scan's
            # length less the bottom margin less the landmarks' distance (fresh i9216 E00115, blurred upper
            # abdomen: 10.4 mm/unit held at 9.6 moved the line 93 mm, the dome read 20 mm missing; at 8.35
            # +6, true +18). Like typical_margin elsewhere, this only rescues a landmark called missing
            m2 = float(typical_of[id(last[3])][2])
            length = (last[1] - last[0]) * last[2]
            ends["top"]["typical_margin"] = length - float(ends["bottom"]["margin"]) - (s_bottom - s_top) * m2
        elif ends["top"].get("typical_margin") is not None:
            ends["top"]["typical_margin"] = float(ends["top"]["typical_margin"]) - crest_shift
    top_margin, bottom_margin = float(ends["top"]["margin"]), float(ends["bottom"]["margin"])
    details: dict[str, Any] = {"required": [top, bottom], "top_margin_mm": round(top_margin, 1),
                               "bottom_margin_mm": round(bottom_margin, 1), "max_overscan_mm": over,
                               "tolerance_mm": tol}
    if not_imaged:
        # ordered parts with (almost) no image here: judged as not part of this study, not as missing
        details["parts_not_imaged"] = not_imaged
    if borrowed:
        details["position_from_other_acquisition"] = borrowed
    if lung_anchored:
        details["position_from_lung_edges"] = lung_anchored
    if consensus_used:
        details["position_from_consensus_fit"] = consensus_used
    if crest_shift is not None:
        details["top_moved_to_crest_mm"] = round(crest_shift, 1)
    if apex_margin is not None:
        details["bottom_margin_from_lung_apex_mm"] = round(apex_margin, 1)
    if symphysis_at is not None:
        details["symphysis_on_pixels_above_bottom_mm"] = round(symphysis_at, 1)
    methods = {end: e["method"] for end, e in ends.items() if e["method"] != "scorer"}
    if methods:
        details["landmark_method"] = {end: "iliac_crest" if m == "crest" else "lung_edge" for end, m in methods.items()}
    findings = []
    missing: list[tuple[str, float, str]] = []
    per_landmark = p.get("landmark_tolerance_mm") or {}
    rescued = [end for end, name in (("top", top), ("bottom", bottom))
               if ends[end].get("typical_margin") is not None and ends[end]["typical_margin"] >= -float(per_landmark.get(name, tol))]
    if rescued:
        details["typical_slope_margin_mm"] = {end: round(float(ends[end]["typical_margin"]), 1) for end in rescued}
    top_missing = ends["top"]["cut"] or (top_margin < -float(per_landmark.get(top, tol)) and "top" not in rescued)
    cap_limit = p.get("vertex_cap_max_area_ratio")
    if top == "vertex" and cap_limit is not None and first is not None:
        # the scorer places the vertex of a small round head loosely; the top slice says it directly:
        # above the vertex there is air (a small cap), a cut head still shows a large cross-section
        ratio = _top_slice_area_ratio(first[3])
        if ratio is not None:
            details["top_slice_area_ratio"] = round(ratio, 3)
            top_missing = ratio > float(cap_limit)
            if top_missing and top_margin > -float(per_landmark.get(top, tol)):
                top_margin = -float(per_landmark.get(top, tol))  # the amount is unknown: at least the tolerance
    if top_missing:
        missing.append((top, -top_margin, "top"))
    if ends["bottom"]["cut"] or (bottom_margin < -float(per_landmark.get(bottom, tol)) and "bottom" not in rescued):
        missing.append((bottom, -bottom_margin, "bottom"))
    if errors:
        details["acquisitions_not_positioned"] = errors
    if any(ends[m[2]]["method"] == "scorer" for m in missing) and errors:
        # an acquisition that could not be positioned may hold exactly the anatomy that looks missing
        return not_assessable("acquisition_not_positioned", "部分采集无法定位，无法判断是否缺少解剖范围",
                              "an acquisition could not be positioned: missing anatomy cannot be judged", **details)
    if missing:
        details["missing"] = [m[0] for m in missing]
        for name, mm, end in missing:
            e = ends[end]
            pic = add_picture(sink, np.asarray(e["image"]), f"range_{name}", window=(40.0, 400.0))
            zh, en = _landmark_name(params, name)
            if e["cut"] and e["method"] == "crest":  # the bottom slice shows no iliac wing: above the crest
                zh_text = f"扫描范围过小：未包括{zh}（末层图像未见髂嵴）"
                en_text = f"scan range too small: {en} not covered (the last slice shows no iliac crest)"
            elif e["cut"]:  # the end slice itself shows lung: cut, by an amount the pixels cannot tell
                side_zh, side_en = ("首层", "first") if end == "top" else ("末层", "last")
                zh_text = f"扫描范围过小：未包括{zh}（{side_zh}图像仍可见肺组织）"
                en_text = f"scan range too small: {en} not covered (the {side_en} slice still shows lung)"
            else:
                zh_text = f"扫描范围过小：未包括{zh}（缺少约 {mm:.0f} mm）"
                en_text = f"scan range too small: {en} not covered (about {mm:.0f} mm missing)"
            findings.append(finding(
                "IQC-RANGE", "range", "过小", zh_text, en_text,
                [Evidence(series_uid=e["uid"], instance_index=e["index"], measured=round(-mm, 1), limit=-tol, unit="mm", image=pic,
                          extra={"landmark": name, "end": end, "method": _METHOD_NAME.get(e["method"], "body_region")})]))
        return DimensionResult("过小", details, findings=findings)
    excess = [(top, top_margin, "top"), (bottom, bottom_margin, "bottom")]
    # a landmark whose correct scans run further past it has its own limit (``landmark_overscan_mm``:
    # a pelvis scan is planned to below the lesser trochanters, ~21-38 mm past the pubic symphysis); a
    # {part: mm} entry applies to those item parts only (a neck starts at the skull base, a sinus above it)
    over_at = {n: _landmark_overscan(p, n, _exam_parts(exam), over) for n in (top, bottom)}
    excess = [e for e in excess if e[1] > over_at[e[0]]]
    if unmeasured:
        details["excess_not_judged"] = unmeasured
        excess = []
    if excess:
        details["excess"] = [{"beyond": n, "mm": round(mm, 1), "end": end} for n, mm, end in excess]
        for name, mm, end in excess:
            e = ends[end]
            pic = add_picture(sink, np.asarray(e["image"]), f"range_excess_{end}", window=(40.0, 400.0))
            zh, en = _landmark_name(params, name)
            side_zh, side_en = ("上方", "above") if end == "top" else ("下方", "below")
            findings.append(finding(
                "IQC-RANGE", "range", "过大",
                f"扫描范围过大：{zh}{side_zh}多扫约 {mm:.0f} mm（允许 {over_at[name]:.0f} mm）",
                f"scan range too large: about {mm:.0f} mm scanned {side_en} the {en} (allowed {over_at[name]:.0f} mm)",
                [Evidence(series_uid=e["uid"], instance_index=e["index"], measured=round(mm, 1), limit=over_at[name], unit="mm", image=pic,
                          extra={"landmark": name, "end": end, "method": _METHOD_NAME.get(e["method"], "body_region")})]))
        return DimensionResult("过大", details, findings=findings)
    return DimensionResult("正常", details)


#: how a range end was placed (``ends[...]["method"]``) -> the name in a finding's evidence
_METHOD_NAME = {"lung": "lung_edge", "crest": "iliac_crest", "scorer": "body_region"}


def _wing_area(img: np.ndarray, spacing: float, cp: dict[str, Any]) -> float:
    """The largest bone section (mm²) lying ``min_lateral_mm`` or more beside the body's midline in one
    slice: an iliac wing (the spine and sacrum lie on the midline). Smoothed first (``smooth_px``) and
    opened, so that noise and thin rib tips do not count."""
    from scipy import ndimage

    while img.shape[0] > 256:
        img, spacing = img[::2, ::2], spacing * 2.0
    body = body_mask(img)
    if body.sum() < 20:
        return 0.0
    cx = float(np.nonzero(body)[1].mean())
    smooth = ndimage.gaussian_filter(img.astype(np.float32), float(cp.get("smooth_px", 1.0)))
    labels, n = ndimage.label(ndimage.binary_opening((smooth > float(cp.get("bone_hu", 180.0))) & body))
    if n == 0:
        return 0.0
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:].astype(float)
    cols = np.bincount(flat, weights=np.tile(np.arange(labels.shape[1], dtype=float), labels.shape[0]), minlength=n + 1)[1:]
    lateral = np.abs(cols / np.maximum(counts, 1.0) - cx) * spacing >= float(cp.get("min_lateral_mm", 45.0))
    return float(counts[lateral].max() * spacing * spacing) if lateral.any() else 0.0


def _crest_margin(group: list[SeriesImages], cp: dict[str, Any],
                  offset: float) -> tuple[float, float, Any, int, SeriesImages] | None:
    """How far the scan runs below a landmark that lies ``offset`` mm above the iliac crest, read on the
    pixels (``range.iliac_crest_pixels``), in the shape of :func:`_lung_margin`'s reading, or None.

    The iliac wings are the bone sections beside the midline (:func:`_wing_area` at least
    ``min_area_mm2``); from the bottom slice up, the crest lies midway between the highest slice of the
    unbroken run of wing slices and the next slice above. None when the run reaches past ``reach_mm``
    (the crest is higher than is searched) or nothing is readable; with ``no_crest_is_cut`` a bottom
    slice showing no wing is the landmark cut (margin 0), else None."""
    try:
        stack = _bottom_up(group, float(cp.get("step_mm", 5.0)))
        if stack is None:
            return None
        series, datasets, stride = stack
        n = len(datasets)
        ps = datasets[0].get("PixelSpacing") or [1.0, 1.0]
        spacing = float(ps[0])
        z0 = _slice_z(datasets[0])
        min_area = float(cp.get("min_area_mm2", 200.0))
        last = None
        for i in range(0, n, stride):
            z = _slice_z(datasets[i])
            if z - z0 > float(cp.get("reach_mm", 120.0)):
                return None
            if _wing_area(_hu(datasets[i]), spacing, cp) >= min_area:
                last = i
                continue
            if last is None:
                if not cp.get("no_crest_is_cut"):
                    return None
                return 0.0, 0.0, _hu(datasets[0]), n - 1, series
            crest = (_slice_z(datasets[last]) + z) / 2.0
            return crest - z0 + offset, abs(z - _slice_z(datasets[last])), _hu(datasets[0]), n - 1, series
    except Exception:  # noqa: BLE001 - undecodable pixels: no reading
        return None
    return None


def _symphysis_area(img: np.ndarray, spacing: float, sp: dict[str, Any]) -> float:
    """Bone (mm²) lying within ``half_width_mm`` of the body's midline and in front of its centre, counted
    on the smaller side of the midline (0 when the two sides together hold less than ``min_area_mm2``): the
    pubic bones meeting at the symphysis. Smoothed (``smooth_px``) and opened as :func:`_wing_area`, so
    noise and blur do not make or hide it; one-sided bone (a ramus, a calcification, metal off the
    midline) does not count."""
    from scipy import ndimage

    while img.shape[0] > 256:
        img, spacing = img[::2, ::2], spacing * 2.0
    body = body_mask(img)
    if body.sum() < 20:
        return 0.0
    rows, cols = np.nonzero(body)
    cy, cx = float(rows.mean()), float(cols.mean())
    smooth = ndimage.gaussian_filter(img.astype(np.float32), float(sp.get("smooth_px", 1.0)))
    bone = ndimage.binary_opening((smooth > float(sp.get("bone_hu", 180.0))) & body)
    near = np.abs(np.arange(img.shape[1]) - cx) * spacing <= float(sp.get("half_width_mm", 25.0))
    front = np.arange(img.shape[0]) < cy
    xs = np.nonzero(bone & near[None, :] & front[:, None])[1]
    left, right = float((xs < cx).sum()), float((xs >= cx).sum())
    px = spacing * spacing
    return min(left, right) * px if (left + right) * px >= float(sp.get("min_area_mm2", 300.0)) else 0.0


def _symphysis_height(group: list[SeriesImages], sp: dict[str, Any]) -> float | None:
    """Height (mm) above the scan's bottom slice of the pubic symphysis: the middle of the lowest run of
    slices showing it (:func:`_symphysis_area` at least ``min_side_mm2``), searched every ``step_mm`` up to
    ``reach_mm`` (``range.symphysis_pixels``); None when none shows it or nothing is readable.

    In the generator's anatomy (1000+ CT exams of seeds 9020/9021 and worn sets) the pubic bones reach the
    midline over about 25 mm around the symphysis, the rami run off it above and below: every complete
    pelvis shows it 15-40 mm above its bottom slice, no scan cut more than ~12 mm above it does."""
    try:
        stack = _bottom_up(group, float(sp.get("step_mm", 5.0)))
        if stack is None:
            return None
        _, datasets, stride = stack
        n = len(datasets)
        spacing = float((datasets[0].get("PixelSpacing") or [1.0, 1.0])[0])
        z0 = _slice_z(datasets[0])
        run: list[float] = []
        for i in range(0, n, stride):
            z = _slice_z(datasets[i]) - z0
            if z > float(sp.get("reach_mm", 80.0)):
                break
            if _symphysis_area(_hu(datasets[i]), spacing, sp) >= float(sp.get("min_side_mm2", 60.0)):
                run.append(z)
            elif run:
                break
    except Exception:  # noqa: BLE001 - undecodable pixels: no reading
        return None
    return (run[0] + run[-1]) / 2.0 if run else None


def _landmark_overscan(p: dict[str, Any], name: str, parts: list[str], default: float) -> float:
    """The overscan limit past one required landmark: ``range.landmark_overscan_mm[name]``, a number or a
    {part: mm} map read for the exam's item parts (the smallest that applies), else ``default``."""
    entry = (p.get("landmark_overscan_mm") or {}).get(name)
    if isinstance(entry, dict):
        hits = [float(entry[x]) for x in parts if x in entry]
        return min(hits) if hits else default
    return default if entry is None else float(entry)


def _axial_stack(exam: ExamImages, cache: dict[str, Any]) -> Any:
    """The first usable axial original stack (cached), or the 无法评估 result saying why not."""
    axial = _axial(exam)
    if not axial:
        return not_assessable("no_axial_series", "无可用的轴位原始序列", "no axial original series")
    stack = _first_stack(axial, cache)
    if isinstance(stack, Exception):
        return not_assessable(_reason_code(stack), "轴位序列无法读取", f"axial series unusable: {stack}")
    return stack


# ---------------------------------------------------------------- centring


def _stack_part(exam: ExamImages, order: list[str], uid: str | None) -> str | None:
    """The item part whose acquisition holds series ``uid``, on an order of several parts scanned as one
    acquisition each (parts in ``order``, head to foot, paired with the acquisitions from the top down, as
    :func:`_length_plan` pairs them); None otherwise (one part, counts differ, a part not in ``order``)."""
    parts = _exam_parts(exam)
    if uid is None or len(parts) < 2 or any(part not in order for part in parts):
        return None
    groups = _acquisitions(_axial(exam))
    if len(groups) != len(parts):
        return None
    groups.sort(key=lambda g: -max(float(header_of(s, "z_max") or 0.0) for s in g))  # superior first
    for part, group in zip(sorted(parts, key=order.index), groups, strict=True):
        if any(series_uid(s) == uid for s in group):
            return part
    return None


def _targeted_centre(exam: ExamImages, p: dict[str, Any], part: str | None = None) -> tuple[float, float] | None:
    """Patient (x, y) in mm where a centred patient's targeted FOV centre lies, for the exam's part.

    From ``centring.targeted_centre_mm`` (keyed by the item code's part: CSPINE, TSPINE, LSPINE);
    None when the item has no targeted reconstruction (the image centre is the reference then).
    ``part``: the part the measured series scanned (:func:`_stack_part`), when known. On a two-part
    order the first code's part named the wrong reference: a 胸椎 + 腰椎 order measured on its lumbar
    series read against the thoracic FOV centre (10 mm more anterior; i9218 E00890 read 偏上, true
    isocentre offset 17 mm), and a 头颅 + 颈椎 order measured on its head series read the head's image
    against the cervical spine's FOV centre."""
    table = p.get("targeted_centre_mm") or {}
    if part is not None:
        if part not in table:
            return None
        x, y = table[part]
        return float(x), float(y)
    for code in exam.item_codes or []:
        bits = str(code).split(".")
        if len(bits) >= 2 and bits[1] in table:
            x, y = table[bits[1]]
            return float(x), float(y)
    return None



def _centring(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink, cache: dict[str, Any]) -> DimensionResult:
    p = params.get("centring") or {}
    stack = _axial_stack(exam, cache)
    if isinstance(stack, DimensionResult):
        return stack
    rows, cols = stack.hu.shape[1:]
    centre = ((rows - 1) / 2.0, (cols - 1) / 2.0)
    reference = "image_centre"
    order = [str(x) for x in (params.get("range") or {}).get("part_order") or []]
    expected = _targeted_centre(exam, p, _stack_part(exam, order, stack.uid))
    if expected is not None and stack.origin_xy is not None:
        # a targeted reconstruction (spine) is centred on the vertebral bodies, wherever the patient
        # lies: the image centre says nothing about table centring. The scanner axis does: patient
        # x = y = 0 is the isocentre, and a centred patient's vertebral bodies sit at ``expected``
        # (ct.yaml centring.targeted_centre_mm). The offset is where the FOV centre (= the vertebral
        # bodies) lies in patient coordinates, minus that.
        reference = "isocentre"
        ox, oy = stack.origin_xy
        img_x = ox + centre[1] * stack.spacing[1]
        img_y = oy + centre[0] * stack.spacing[0]
        # the pixel that is (expected x, expected y) in patient coordinates plays the image centre
        centre = (centre[0] - (img_y - expected[1]) / stack.spacing[0], centre[1] - (img_x - expected[0]) / stack.spacing[1])
    offsets = []
    best: tuple[float, int, np.ndarray, tuple[float, float]] | None = None
    for i in pick_slices(stack.hu.shape[0], 12):
        mask = body_mask(np.asarray(stack.hu[i]), float(p.get("body_hu", -500)))
        if mask.sum() < 0.01 * mask.size:
            continue
        r, c = np.nonzero(mask)
        cy, cx = float(r.mean()), float(c.mean())
        dy, dx = (cy - centre[0]) * stack.spacing[0], (cx - centre[1]) * stack.spacing[1]
        offsets.append((dy, dx))
        if best is None or math.hypot(dy, dx) > best[0]:
            best = (math.hypot(dy, dx), i, mask, (cy, cx))
    if not offsets:
        return not_assessable("no_body", "未检出体部轮廓", "no body contour found")
    dy = float(np.median([o[0] for o in offsets]))
    dx = float(np.median([o[1] for o in offsets]))
    if reference == "isocentre":
        # the vertebral bodies' position is the measure, not the truncated body contour's centroid
        dy = (rows - 1) / 2.0 * stack.spacing[0] - centre[0] * stack.spacing[0]
        dx = (cols - 1) / 2.0 * stack.spacing[1] - centre[1] * stack.spacing[1]
    width_mm = cols * stack.spacing[1]
    limit = float(p.get("limit_mm", 18.0))
    large = float(p.get("large_fraction", 0.15))
    offset = math.hypot(dy, dx)
    fraction = offset / width_mm if width_mm else 0.0
    details = {"offset_mm": round(offset, 1), "offset_x_mm": round(dx, 1), "offset_y_mm": round(dy, 1),
               "fraction": round(fraction, 4), "limit_mm": limit, "large_fraction": large,
               "large": fraction >= large, "series_uid": stack.uid, "reference": reference}
    if reference == "isocentre" and expected is not None:
        details["expected_centre_mm"] = [expected[0], expected[1]]
    # on the image centre each axis has its own limit (``centring.axis_limit_mm``): a centred patient's body
    # lies within a few mm laterally, while the table height leaves the vertical spread about 1.5x wider
    # (training seeds 9020/9021 and worn i9208-i9216, 1000+ non-spine CT exams: centred |x| <= 12.7, |y| <= 21.2 mm;
    # off-centre >= 20 along x, >= 27.5 along y). One radius over both axes called centred patients at
    # x -11, y -17 off-centre (fresh i9216 E00121, E00256)
    # a targeted (spine) FOV has its own per-axis limits (``centring.targeted_axis_limit_mm``) for the same
    # reason: the FOV centre gives the lateral table offset to a millimetre, the vertical one only to about
    # +-8 mm (the vertebrae's depth in the body varies between patients); without it the radius ``limit_mm``
    axis = p.get("axis_limit_mm") if reference == "image_centre" else p.get("targeted_axis_limit_mm")
    if axis:
        lx, ly = float(axis["x"]), float(axis["y"])
        details["axis_limit_mm"] = {"x": lx, "y": ly}
        within = abs(dx) <= lx and abs(dy) <= ly
        vertical = abs(dy) / ly >= abs(dx) / lx  # the direction: the axis furthest past its own limit
        limit = ly if vertical else lx
    else:
        within = offset <= limit
        vertical = abs(dy) >= abs(dx)
    if within and fraction < large:
        return DimensionResult("正常", details)
    if vertical:
        value, zh_dir, en_dir, along = ("偏上", "偏上", "up (anterior)", dy) if dy < 0 else ("偏下", "偏下", "down (posterior)", dy)
    else:
        value, zh_dir, en_dir, along = ("偏左", "偏左", "left (image left)", dx) if dx < 0 else ("偏右", "偏右", "right (image right)", dx)
    assert best is not None
    _, idx, mask, (cy, cx) = best
    box = [cy - 3, cx - 3, cy + 3, cx + 3]
    pic = add_picture(sink, np.asarray(stack.hu[idx]), "centring", box=box, window=(40.0, 400.0), mask=mask)
    f = finding("IQC-CENTRING", "centring", value,
                f"摆位偏离中心：体部中心{zh_dir}约 {abs(along):.0f} mm（视野的 {fraction:.0%}，限值 {limit:.0f} mm）",
                f"patient off-centre: body centre {en_dir} by about {abs(along):.0f} mm ({fraction:.0%} of the field, limit {limit:.0f} mm)",
                [Evidence(series_uid=stack.uid, instance_index=stack.instance_index(idx), measured=round(offset, 1), limit=limit, unit="mm", image=pic,
                          box=box, extra={"image_centre": list(centre), "body_centroid": [round(cy, 1), round(cx, 1)],
                                          "fraction": round(fraction, 4)})])
    details["direction"] = value
    return DimensionResult(value, details, findings=[f])


# ---------------------------------------------------------------- positioning (rotation on the table)


def _cut_fraction(img: np.ndarray, mask: np.ndarray, padding: float) -> float:
    """Fraction of the body contour's pixels within 2 px of the padding outside the reconstruction
    circle (or of the image border): how much of the outline is the FOV's cut, not the skin. Read on
    a grid of at most ~128 px (a 512 slice every 4th pixel: ~16 x fewer pixels to erode and dilate)."""
    from scipy import ndimage

    step = max(1, max(mask.shape) // 128)
    img, mask = img[::step, ::step], mask[::step, ::step]
    edge = mask & ~ndimage.binary_erosion(mask)
    n = int(edge.sum())
    if n == 0:
        return 0.0
    outside = img < padding
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    near = ndimage.binary_dilation(outside, iterations=2)
    return float((edge & near).sum()) / n


def _positioning(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink, cache: dict[str, Any]) -> DimensionResult:
    """Patient rotation about the long axis: the body contour's principal axis vs the image axes.

    A supine body is wider than deep (major axis horizontal), a head longer than wide (major axis
    vertical); the deviation of the major axis from the nearer image axis is the rotation."""
    p = params.get("positioning") or {}
    stack = _axial_stack(exam, cache)
    if isinstance(stack, DimensionResult):
        return stack
    min_elong = float(p.get("min_elongation", 1.2))
    # a knee's section is nearly round (major/minor variance 1.04-1.09) yet its axis holds to a few
    # degrees on every slice; ct.yaml positioning.min_elongation_by_part lowers the bar per item part
    by_part = p.get("min_elongation_by_part") or {}
    parts = [part for part in _exam_parts(exam) if part in by_part]
    if parts:
        min_elong = min(float(by_part[part]) for part in parts)
    limit = float(p.get("max_rotation_deg", 4.5))
    angles: list[tuple[float, int]] = []
    cut: set[int] = set()
    cut_limit = p.get("cut_fraction")
    if set(_exam_parts(exam)) & set(p.get("cut_skip_parts") or []):
        cut_limit = None  # a targeted spine FOV cuts every section: the few uncut ones are no better
    padding = float(p.get("padding_below_hu", -1500))
    for i in pick_slices(stack.hu.shape[0], 10):
        mask = body_mask(np.asarray(stack.hu[i]))
        if mask.sum() < 100:
            continue
        r, c = np.nonzero(mask)
        coords = np.vstack([(c - c.mean()) * stack.spacing[1], (r - r.mean()) * stack.spacing[0]])
        w, v = np.linalg.eigh(np.cov(coords))
        if w[1] < min_elong * max(w[0], 1e-6):
            continue  # a round section has no reliable axis
        a = math.degrees(math.atan2(v[1, 1], v[0, 1]))
        a = (a + 90.0) % 180.0 - 90.0  # major-axis angle in [-90, 90), 0 = horizontal
        dev = a if abs(a) <= 45 else (a - 90.0 if a > 0 else a + 90.0)
        angles.append((dev, i))
        if cut_limit is not None and _cut_fraction(np.asarray(stack.hu[i]), mask, padding) > cut_limit:
            cut.add(i)
    if not angles:
        return not_assessable("no_body_axis", "体部轮廓接近圆形，无法判断旋转", "body section too round to measure rotation")
    # a section cut by the reconstruction circle (an off-centre patient, shoulders of a wide neck
    # scan) has the circle's chord for a contour: its axis is the cut's, not the body's (i9218 E00259,
    # rotated 10 deg, read 3.3 on the shoulders cut at 69 mm off centre); uncut sections decide when
    # there are enough of them (ct.yaml positioning.cut_fraction / min_uncut_slices)
    uncut = [t for t in angles if t[1] not in cut]
    # ...and only when they agree (one body has one rotation): a truncated wide patient cuts every
    # section by about as much, and the few below the bar read -20..0 deg (i9218 E00291, clean)
    if cut and uncut:
        mid = float(np.median([a for a, _ in uncut]))
        agree = sum(abs(a - mid) <= float(p.get("uncut_agree_deg", 3.0)) for a, _ in uncut)
        if agree >= int(p.get("min_uncut_slices", 3)):
            angles = uncut
    rotation = float(np.median([a for a, _ in angles]))
    details = {"rotation_deg": round(rotation, 1), "limit_deg": limit, "series_uid": stack.uid, "slices": len(angles),
               "cut_slices": len(cut)}
    if abs(rotation) <= limit:
        return DimensionResult("标准", details)
    idx = max(angles, key=lambda t: abs(t[0]))[1]
    pic = add_picture(sink, np.asarray(stack.hu[idx]), "positioning", window=(40.0, 400.0),
                      mask=body_mask(np.asarray(stack.hu[idx])))
    f = finding("IQC-POSITION", "positioning", "不标准",
                f"体位不正：患者沿身体长轴旋转约 {abs(rotation):.0f}°（限值 {limit:g}°）",
                f"patient rotated on the table by about {abs(rotation):.0f} degrees (limit {limit:g})",
                [Evidence(series_uid=stack.uid, instance_index=stack.instance_index(idx), measured=round(rotation, 1), limit=limit, unit="deg",
                          image=pic)])
    return DimensionResult("不标准", details, findings=[f])


# ---------------------------------------------------------------- noise / sharpness


def _soft_series(exam: ExamImages) -> list[SeriesImages]:
    axial = _axial(exam)
    return [s for s in axial if _kernel_class(s) in ("soft", "head")]


#: the mean filter (pixels) the fallback tissue mask of :func:`_homogeneous` is drawn on
NOISY_MASK_SMOOTH_PX = 5


def _homogeneous(img: np.ndarray, smooth: bool = False) -> np.ndarray:
    """Pixels whose whole neighbourhood is soft tissue (no air, lung, bone edges) inside the body.

    ``smooth``: the soft-tissue window is applied to a ``NOISY_MASK_SMOOTH_PX``-px mean of the slice.
    Why: heavy noise on a thin sharp-kernel slice (a bone-only spine at three times its dose's noise,
    SD 150+ HU) throws most tissue pixels outside -300..300 HU, and the eroded raw mask is empty: the
    noisiest series read 无法评估 (no soft tissue) instead of 异常 (held-out 9225 E00697, 7504)."""
    from scipy import ndimage

    level = ndimage.uniform_filter(img, NOISY_MASK_SMOOTH_PX) if smooth else img
    tissue = (level > -300) & (level < 300) & body_mask(img)
    return np.asarray(ndimage.binary_erosion(tissue, iterations=2))


def _adjacent_pairs(stack: _Stack) -> list[tuple[int, int]]:
    """Stack slices (k, k + 1) that are neighbours in the series and do not overlap (spacing at least
    0.9 x the slice thickness: overlapping reconstructions share noise, their difference hides it)."""
    src = stack.source_index
    z = np.asarray(stack.z, dtype=float)
    out = []
    for k in range(stack.hu.shape[0] - 1):
        if src is not None and abs(int(src[k + 1]) - int(src[k])) != 1:
            continue
        if stack.thickness > 0 and abs(float(z[k + 1] - z[k])) < 0.9 * stack.thickness:
            continue
        out.append((k, k + 1))
    return out


def _series_noise(stack: _Stack, quantile: float = 50.0, pairs: int = 8) -> tuple[float, int] | None:
    """Noise SD (HU) of a series in homogeneous soft tissue, and its noisiest slice; None without
    enough homogeneous tissue. Two estimates, each of which anatomy can only raise, and the lower decides:

    * in-slice: the high-pass residual (pixel minus its 3x3 mean; for white noise its SD is
      sqrt(8/9) of the pixel SD; MAD -> SD by 1/0.6745), the ``quantile`` (percent) over up to 8
      slices: fat/muscle/organ borders inside the 3x3 box add to a slice's reading, so the quieter
      slices are the cleaner estimate;
    * between slices: the residuals of two adjacent, non-overlapping slices subtracted (divided by
      sqrt 2), median over up to ``pairs`` pairs. Noise is independent between such slices while
      the anatomy is nearly the same, so the in-plane edges that dominate a coarse grid (64 px of
      6-7 mm: the in-slice reading is 1.5-3.9 x the generator's noise on validation seed 8221)
      largely cancel (1.0-1.6 x)."""
    k_sd = 1.0 / 0.6745 / math.sqrt(8.0 / 9.0)
    sds: list[float] = []
    best: tuple[float, int] | None = None
    residuals: dict[int, np.ndarray] = {}
    masks: dict[int, np.ndarray] = {}
    smooth = False  # the raw-pixel mask first; the smoothed one only where it finds no tissue at all

    def prepared(i: int) -> tuple[np.ndarray, np.ndarray]:
        from scipy import ndimage

        if i not in residuals:
            img = np.asarray(stack.hu[i], dtype=float)
            residuals[i] = img - ndimage.uniform_filter(img, 3)
        if i not in masks:
            masks[i] = _homogeneous(np.asarray(stack.hu[i], dtype=float), smooth=smooth)
        return residuals[i], masks[i]

    for attempt in (False, True):
        smooth = attempt
        if smooth:
            masks.clear()
        for i in pick_slices(stack.hu.shape[0], 8):
            residual, homogeneous = prepared(i)
            if homogeneous.sum() < 50:
                continue
            value = float(np.median(np.abs(residual[homogeneous])) * k_sd)
            sds.append(value)
            if best is None or value > best[0]:
                best = (value, i)
        if sds:
            break
    if not sds or best is None:
        return None
    in_slice = float(np.percentile(sds, quantile))
    diffs: list[float] = []
    candidates = _adjacent_pairs(stack)
    for j in pick_slices(len(candidates), pairs) if candidates else []:
        a, b = candidates[j]
        (ra, ma), (rb, mb) = prepared(a), prepared(b)
        both = ma & mb
        if both.sum() < 50:
            continue
        diffs.append(float(np.median(np.abs((ra - rb)[both])) * k_sd / math.sqrt(2.0)))
    value = min(in_slice, float(np.median(diffs))) if diffs else in_slice
    return value, best[1]


def _difference_noise(stack: _Stack, pairs: int = 8, min_pixels: int = 200, edge_quantile: float | None = None,
                      pair_cap_hu: float | None = None, min_kept_fraction: float = 0.0) -> float | None:
    """Whole-band noise SD (HU) of a series: raw pixels of adjacent, non-overlapping slices subtracted
    inside tissue homogeneous in both, MAD of the difference (median removed) / 0.6745 / sqrt 2, median
    over up to ``pairs`` pairs; None without a usable pair. Unlike :func:`_series_noise` no high-pass is
    applied, so correlated (low-frequency) noise counts in full: the noise-via-subtraction method
    (independent noise in two images of the same object). On the generator's ring-shaped NPS the 3x3
    residual reads ~0.7-0.9 x the noise, this estimate 1.05-1.2 x on thin series and 1.2-1.5 x on
    thick, widely spaced ones (anatomy changes between slices; N2, seed 8320), so a thin series no
    longer hides an excess. Soft series are judged on it (ct.yaml noise.difference); every reading
    shows it as ``sd_difference_hu``.

    ``edge_quantile`` (ct.yaml noise.difference.edge_quantile): only the pixels whose gradient in the
    pair's smoothed *mean* image is in the lowest this fraction of the homogeneous ones are read. The
    anatomy that changes between two slices (fat/muscle borders, vessels, organ edges on a 3 mm grid)
    sits where the mean image has edges, while for two independent equal-SD noise fields the mean and
    the difference are uncorrelated, so choosing pixels by the mean's gradient does not bias the noise
    read in the difference. Clean series of held-out i9208 read 1.3-1.6 x the generator's SD before and
    1.04-1.16 x with 0.5 (CN, 2026-11-24).

    ``pair_cap_hu``: a pair reading above it is left out, and None is returned when no pair is left.
    Excess noise is the acquisition's and raises every pair alike, while metal streaks and patient
    motion are local in z: they raise the pairs they touch by several times (i9212 E00173, a pacemaker:
    pairs across the streaks 46-71 HU, the others 6.3-8.4, the median 13.6 then read 2.0 x expected).
    ct._noise passes ``noise.difference.max_over_highpass`` x the series' in-slice reading (CTN2).
    ``min_kept_fraction``: fewer pairs than this fraction of those read left under the cap is no reading
    (None): streaks across most of the series leave only pairs that are themselves partly streaked
    (seed 8750 E00041: 2 of 7 left, 14.7-17.3 HU against a clean ~10.7)."""
    from scipy import ndimage

    diffs: list[float] = []
    read = 0
    candidates = _adjacent_pairs(stack)
    for j in pick_slices(len(candidates), pairs) if candidates else []:
        a, b = candidates[j]
        img_a, img_b = np.asarray(stack.hu[a], dtype=float), np.asarray(stack.hu[b], dtype=float)
        both = _homogeneous(img_a) & _homogeneous(img_b)
        if both.sum() < min_pixels:
            continue
        if edge_quantile:
            mean = ndimage.gaussian_filter((img_a + img_b) / 2.0, 1.5)
            grad = np.hypot(ndimage.sobel(mean, axis=0), ndimage.sobel(mean, axis=1))
            both = both & (grad <= np.quantile(grad[both], float(edge_quantile)))
        d = (img_a - img_b)[both]
        value = float(np.median(np.abs(d - np.median(d))) / 0.6745 / math.sqrt(2.0))
        read += 1
        if pair_cap_hu is not None and value > pair_cap_hu:
            continue
        diffs.append(value)
    if read and len(diffs) < min_kept_fraction * read:
        return None
    return float(np.median(diffs)) if diffs else None


def _noise_class(exam: ExamImages, series: SeriesImages, p: dict[str, Any]) -> str:
    """The limit class of a series: its kernel class, or ``head`` for a soft-named kernel on a head
    series of a head item (GE STANDARD reconstructs the brain too), when the item says so."""
    kernel = str(_kernel_class(series) or "soft")
    if kernel == "soft" and p.get("head_region_as_head") and label_of(series, "region") == "head":
        return "head"
    return kernel


def _expected_details(info: dict[str, Any] | None, measured: float) -> dict[str, Any]:
    """Dimension details of the expected-noise model for one reading (empty when it did not apply)."""
    if not info:
        return {}
    return {"expected_sd_hu": info["expected_sd_hu"], "noise_ratio": round(measured / max(info["expected_sd_hu"], 1e-6), 3),
            "max_ratio": info["max_ratio"], "body_diameter_mm": info["body_diameter_mm"],
            "ctdivol_mgy": info["ctdivol_mgy"], "ctdivol_source": info.get("ctdivol_source", "header"),
            "ctdivol_ref_mgy": info["ctdivol_ref_mgy"], "region": info["region"],
            "noise_class": info.get("noise_class"), "localizer_width_mm": info.get("localizer_width_mm"),
            "localizer_size_term": info.get("localizer_size_term")}


def _series_ctdivol(series: SeriesImages) -> float | None:
    """CTDIvol (mGy) of a series from its first image header (None when absent)."""
    try:
        ds = series.datasets()[0]
        v = ds.get("CTDIvol")
        return float(v) if v is not None else None
    except Exception:  # noqa: BLE001 - no readable header: no dose-normalised noise
        return None


def _expected_noise(model: Any, series: SeriesImages, stack: _Stack, cls: str, thickness: float,
                    cache: dict[str, Any], exam: ExamImages | None = None) -> dict[str, Any] | None:
    """The expected-noise model's reading of a series (pipelines/image_qc/ct_noise.py): expected SD
    for this patient's measured body size, the series' CTDIvol and its slice thickness, and the SD
    limit (expected x max ratio); None when the model does not apply (no CTDIvol, no body). With
    ``exam``, a series that gives no size (cut by its FOV) takes it from the exam's AP localizer
    (model ``localizer_size``: ct_noise.exam_localizer_width over the series' z range)."""
    if model is None or not model.enabled:
        return None
    ctdivol = _series_ctdivol(series)
    source = "header"
    if ctdivol is None and model.tube_mgy_per_mas:
        # dose not recorded: the CTDIvol the tube output in the header gives (ct_noise.ctdivol_from_tube)
        try:
            ctdivol = ct_noise.ctdivol_from_tube(series.datasets()[0], model.tube_mgy_per_mas)
        except Exception:  # noqa: BLE001 - no readable header: the fixed limit applies
            ctdivol = None
        source = "tube_output"
    region = label_of(series, "region")
    uid = series_uid(series)
    ref = model.ctdi_ref(region, ((cache.get("acq_regions") or {}).get(uid) if uid else None))
    slices = pick_slices(stack.hu.shape[0], 8)
    size = ct_noise.series_diameter(stack.hu, stack.spacing, slices, model.measure)
    got = model.limit(cls, region, size, ctdivol, ref, thickness)
    if got is None:
        return None
    exp, max_ratio, limit = got
    width = term = None
    if size is None and exam is not None and model.loc_exponent > 0 and len(stack.z) > 0:
        # a spine's targeted FOV cuts the body (no lean size): a small patient's clean level is then
        # well below the size-free one, and 1.8-2.5 x noise read 1.4-1.65 x it (i9218 E00505, E00751)
        width = ct_noise.exam_localizer_width(exam.series, float(np.min(stack.z)), float(np.max(stack.z)), cache)
        term = model.localizer_term(cls, region, width)
        if term is not None:
            exp, limit = exp * term, limit * term
    return {"expected_sd_hu": round(exp, 2), "max_ratio": max_ratio, "limit_hu": limit,
            "body_diameter_mm": round(size, 1) if size else None, "size_measure": model.measure,
            "localizer_width_mm": round(width, 1) if width else None,
            "localizer_size_term": round(term, 3) if term is not None else None,
            "ctdivol_mgy": round(ctdivol, 2) if ctdivol else ctdivol, "ctdivol_source": source, "ctdivol_ref_mgy": ref,
            "region": region, "noise_class": cls}


def _expected_decide(p: dict[str, Any], cls: str, region: str | None) -> str:
    """How the expected-noise model takes part in a series' verdict (ct.yaml noise.expected):
    ``decide_by_class`` for ``class/region`` then ``class``, else ``decide``. Per class because the
    model is exact only where the patient's size does not enter: a knee's bone kernel (the generator's
    knee noise has no habitus term; held-out i9206 E00098 / E00240, clean knees at 0.95-0.97 x
    expected, read 49.5-54.7 HU against the fixed 49.2) but not a trunk (size spread x 1.3)."""
    e = p.get("expected") or {}
    by_class = e.get("decide_by_class") or {}
    for key in (f"{cls}/{region}", cls):
        if key in by_class:
            return str(by_class[key])
    return str(e.get("decide", "ratio"))


def _noise(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink, cache: dict[str, Any]) -> DimensionResult:
    p = params.get("noise") or {}
    soft = _soft_series(exam)
    if not soft:
        # an exam reconstructed with sharp kernels only (knee, some spines) is read on those, against
        # the kernel's own limit (a bone kernel's noise is several times a soft kernel's)
        fallback = [str(k) for k in p.get("fallback_kernels") or []]
        soft = [s for s in _axial(exam) if _kernel_class(s) in fallback and str(_kernel_class(s)) in (p.get("sd_limit_hu") or {})]
    if not soft:
        return not_assessable("no_soft_series", "无软组织/脑组织算法轴位序列", "no soft-tissue / brain kernel axial series")
    preferred = [s for s in soft if _noise_class(exam, s, p) == p.get("prefer_kernel")]
    candidates = preferred or soft
    ref = float(p.get("reference_thickness_mm", 5.0))
    limits = p.get("sd_limit_hu") or {}
    # Every soft/brain series of the exam is measured, and the one that reads the least noise against
    # its limit decides: anatomy at a coarse pixel pitch (fat/muscle/organ borders inside a 3x3 box)
    # only ever adds to the high-pass residual, so the lowest reading is the cleanest estimate of the
    # acquisition's noise (validation seeds: 64-px grids of a clean chest read up to 3x the 128-px
    # series of the same exam). Noise falls as 1/sqrt(thickness): a thin slice is allowed more noise,
    # a thicker one (up to ``max_scaled_thickness_mm``) less, so an 8 mm reconstruction of a noisy scan
    # does not pass for a clean 5 mm one.
    readings: list[tuple[float, float, float, _Stack, str, int]] = []
    # Each contrast phase is its own acquisition with its own dose, so its own noise: the
    # reconstructions of one phase give its reading (their lowest), and the noisiest phase decides
    # when ``per_phase`` (validation 8272: a noisy portal phase beside cleaner native/arterial ones read
    # 正常 as the exam's lowest reading). Parts at other z (head + chest, thoracic + lumbar spine) are
    # not split: on training 7201 that raised clean exams near the soft limit (see ct.yaml)
    group_of: dict[int, Any] = {}
    if p.get("per_phase"):
        for member in candidates:
            group_of[id(member)] = label_of(member, "phase")
    keys: list[Any] = []
    first_error: Exception | None = None
    model = ct_noise.NoiseModel(p.get("expected"), params.get("dose"), float(p.get("expected_scale", 1.0)))
    # the whole-band slice-difference SD (ct.yaml noise.difference): decide ``limit`` judges it against
    # the fixed limit x limit_factor, ``ratio`` against its own expected level (needs its own sd_ref_hu);
    # the high-pass reading and its limit stay the fallback (no factor, no slice pair, motion)
    dblock = dict(p.get("difference") or {})
    dmodel = (ct_noise.NoiseModel({**(p.get("expected") or {}), **dblock, "enabled": True}, params.get("dose"),
                                  float(p.get("expected_scale", 1.0)))
              if dblock.get("decide") == "ratio" and dblock.get("sd_ref_hu") else None)
    by_difference: set[str] = set()
    whole_of: dict[str, float | None] = {}
    expected_of: dict[Any, dict[str, Any]] = {}
    for s in sorted(candidates, key=lambda s: (_kernel_class(s) not in ("soft", "head"), -_thickness(s))):
        stack = _noise_stack(s, cache)
        if isinstance(stack, Exception):
            first_error = first_error or stack
            continue
        # the in-slice estimate first: the slice-difference one can only lower a reading, so it is
        # needed only while no series reads within its limit (on 512² series it costs as much again)
        got = _series_noise(stack, float(p.get("slice_quantile", 50.0)), pairs=0)
        if got is None:
            continue
        cls = _noise_class(exam, s, p)
        thickness = stack.thickness or ref
        limit = float(limits.get(cls, 16.0)) * math.sqrt(ref / min(max(thickness, 0.3), float(p.get("max_scaled_thickness_mm", ref))))
        # the expected-noise model's limit (this patient's size, this scan's CTDIvol) replaces the
        # fixed one where it applies (ct.yaml noise.expected); the fixed limit stays the fallback
        info = _expected_noise(model, s, stack, cls, thickness, cache)
        if info is not None:
            # ``decide`` (ct.yaml noise.expected): ratio = the model's limit alone; both = the larger
            # of the two limits (excess only when above the fixed limit and above max_ratio x expected);
            # report = the fixed limit decides, the expected level and ratio are only shown
            how = _expected_decide(p, cls, info.get("region"))
            if how == "ratio":
                limit = float(info["limit_hu"])
            elif how == "both":
                limit = max(limit, float(info["limit_hu"]))
            expected_of[stack.uid] = info
        # noise.difference: ``limit`` = the whole-band SD against the fixed limit x limit_factor[class]
        # (the same item-aware, thickness-scaled limit); ``ratio`` = against max_ratio x its own
        # expected level; classes without a factor / without a model keep the high-pass reading
        # (with ``ratio`` the factor stays the fallback for a series the model cannot judge: no CTDIvol)
        factor = (dblock.get("limit_factor") or {}).get(cls) if dblock.get("decide") in ("limit", "ratio") else None
        dinfo = _expected_noise(dmodel, s, stack, cls, thickness, cache, exam) if dmodel is not None else None
        if factor or dinfo is not None:
            # a difference far above the in-slice reading is not noise: the slices differ in content
            # (patient motion, contrast arrival, misordered slices); the high-pass reading stays
            # (the in-slice residual reads at least ~0.45 x the whole noise even on the generator's
            # low-frequency grain: clean and excess series of seed 8320 read <= 2.2 x it).
            # ``pair_cap`` applies the same bound to each slice pair (metal streaks and motion are
            # local in z, excess noise is not): the corrupted pairs are left out, not the estimator
            cap = float(dblock.get("max_over_highpass", 0.0) or 0.0)
            if stack.uid not in whole_of:
                whole_of[stack.uid] = _difference_noise(stack, edge_quantile=dblock.get("edge_quantile"),
                                                        pair_cap_hu=cap * got[0] if cap and dblock.get("pair_cap") else None,
                                                        min_kept_fraction=float(dblock.get("pair_min_kept", 0.0) or 0.0))
            whole = whole_of[stack.uid]
            if whole is not None and (not cap or whole <= cap * got[0]):
                by_difference.add(stack.uid)
                got = (whole, got[1])
                if dinfo is not None:
                    expected_of[stack.uid] = dinfo
                    limit = float(dinfo["limit_hu"])
                else:
                    limit *= float(factor or 1.0)
        readings.append((got[0] / limit, got[0], limit, stack, cls, got[1]))
        keys.append(group_of.get(id(s)))
        if not p.get("all_series", True):
            break
    for k, (_, _, r_limit, r_stack, r_cls, _) in enumerate(list(readings)):
        if min(r[0] for r, key in zip(readings, keys, strict=True) if key == keys[k]) <= 1.0 or r_stack.uid in by_difference:
            continue
        both = _series_noise(r_stack, float(p.get("slice_quantile", 50.0)))
        if both is not None and both[0] < readings[k][1]:
            readings[k] = (both[0] / r_limit, both[0], r_limit, r_stack, r_cls, both[1])
    if not readings:
        if first_error is not None:
            return not_assessable(_reason_code(first_error), "序列无法读取", f"series unusable: {first_error}")
        return not_assessable("no_soft_tissue", "未找到均匀软组织区域", "no homogeneous soft tissue found")
    groups = list(dict.fromkeys(keys))
    # a phase read only on a sharp kernel (a bone series beside the soft ones) does not decide
    soft_groups = [g for g in groups if any(r[4] in ("soft", "head") for r, key in zip(readings, keys, strict=True) if key == g)]
    per_group = [min((r for r, key in zip(readings, keys, strict=True) if key == g), key=lambda r: r[0])
                 for g in (soft_groups or groups)]
    ratio, measured, limit, stack, kernel, worst_slice = max(per_group, key=lambda r: r[0])
    instance = stack.instance_index(worst_slice)
    details = {"sd_hu": round(measured, 2), "limit_hu": round(limit, 2), "kernel_class": kernel,
               "slice_thickness_mm": stack.thickness or ref, "series_uid": stack.uid,
               "estimator": "difference" if stack.uid in by_difference else "highpass",
               "series_measured": [{"series_uid": r[3].uid, "sd_hu": round(r[1], 2), "limit_hu": round(r[2], 2),
                                    "estimator": "difference" if r[3].uid in by_difference else "highpass",
                                    **_expected_details(expected_of.get(r[3].uid), r[1])} for r in readings]}
    if p.get("report_difference"):
        # the whole-band slice-difference SD beside each reading (shown, not judged: ct.yaml noise)
        for r in readings:
            # (every pair above the pair cap: the uncapped difference is shown, as before the cap)
            if whole_of.get(r[3].uid) is None:
                whole_of[r[3].uid] = _difference_noise(r[3], edge_quantile=dblock.get("edge_quantile"))
        for entry in details["series_measured"]:
            sd_d = whole_of.get(entry["series_uid"])
            entry["sd_difference_hu"] = round(sd_d, 2) if sd_d is not None else None
        sd_top = whole_of.get(stack.uid)
        details["sd_difference_hu"] = round(sd_top, 2) if sd_top is not None else None
    exp = expected_of.get(stack.uid)
    details.update(_expected_details(exp, measured))
    if ratio <= 1.0:
        return DimensionResult(NORMAL, details)
    pic = add_picture(sink, np.asarray(stack.hu[worst_slice]), "noise", window=(40.0, 400.0))
    zh_exp = en_exp = ""
    if exp is not None:
        # the expected level for this patient and dose, and the measured / expected ratio, beside the limit
        # the ratio's own limit is named only where it takes part in the verdict (decide: ratio / both)
        judged = _expected_decide(p, kernel, exp.get("region")) != "report" or (stack.uid in by_difference and dmodel is not None)
        # the patient's lean (fat-free) diameter where the expected level used it (ct.yaml noise.difference)
        lean = exp.get("body_diameter_mm") if exp.get("size_measure") == "lean" else None
        zh_size = f"、体型（去脂体径约 {lean:.0f} mm）" if lean else ""
        en_size = f", this patient's size (lean diameter about {lean:.0f} mm)" if lean else ""
        # a dose estimated from the tube output (no CTDIvol recorded) says so
        tube = exp.get("ctdivol_source") == "tube_output"
        zh_exp = (f"；按本次剂量（CTDIvol {exp['ctdivol_mgy']:g} mGy{'，由管电流与曝光时间估算' if tube else ''}）{zh_size}与层厚预期约 {exp['expected_sd_hu']:.1f} HU，"
                  f"为预期的 {measured / exp['expected_sd_hu']:.1f} 倍" + (f"（限 {exp['max_ratio']:g} 倍）" if judged else ""))
        en_exp = (f"; expected about {exp['expected_sd_hu']:.1f} HU at this scan's dose (CTDIvol {exp['ctdivol_mgy']:g} mGy"
                  f"{', estimated from the tube current and exposure time' if tube else ''}){en_size} and slice thickness: "
                  f"{measured / exp['expected_sd_hu']:.1f} x expected" + (f" (limit {exp['max_ratio']:g} x)" if judged else ""))
    f = finding("IQC-NOISE", "noise", ABNORMAL,
                f"图像噪声过大：{_KERNEL_ZH.get(kernel, kernel)}算法序列均匀组织噪声 SD 约 {measured:.1f} HU（限值 {limit:.1f} HU{zh_exp}）",
                f"image noise too high: {kernel}-kernel series SD about {measured:.1f} HU in homogeneous tissue "
                f"(limit {limit:.1f} HU{en_exp})",
                [Evidence(series_uid=stack.uid, instance_index=instance, measured=round(measured, 2), limit=round(limit, 2),
                          unit="HU", image=pic)])
    return DimensionResult(ABNORMAL, details, findings=[f])


def _edge_index_unpadded(img: np.ndarray, mask: np.ndarray, inside: float, padding_below: float, margin: int) -> float | None:
    """:func:`edge_index` of the body edge against air, not against the padding outside the
    reconstruction circle (pixels below ``padding_below`` HU: -2048 / -3024 on many scanners):

    * air is read on the air pixels only: where the circle's padding outnumbers the air (a head
      filling a 96-px FOV) the median "outside" was the padding, the contrast doubled and the index
      halved (validation i9204 E00056 / E00120: clean heads read 0.25-0.28 against 0.325);
    * body-edge pixels within ``margin`` px of the padding are left out: where the body touches the
      reconstruction circle (a truncated FOV) the tissue-to-padding step is a razor edge whatever the
      blur (i9204 E00148, blurred, read 1.48)."""
    from scipy import ndimage

    pad = img < padding_below
    air_px = img[~mask & ~pad]
    air = float(np.median(air_px)) if air_px.size else -1000.0
    contrast = inside - air
    if contrast <= 0 or mask.sum() < 20:
        return None
    clean = np.where(pad, air, img)
    gy = ndimage.sobel(clean, axis=0) / 8.0
    gx = ndimage.sobel(clean, axis=1) / 8.0
    grad = np.hypot(gx, gy)
    boundary = mask ^ ndimage.binary_erosion(mask)
    ring = ndimage.binary_dilation(boundary, iterations=1)
    if pad.any():
        ring &= ~ndimage.binary_dilation(pad, iterations=max(margin, 1))
    values = grad[ring]
    if values.size < 10:
        return None
    return float(np.percentile(values, 90) / contrast)


def _motion_run_slices(hu: Any, values: list[tuple[float, int]], q: dict[str, Any]) -> set[int]:
    """Slices of the series that patient motion ghosts, to be left out of the sharpness index.

    Motion is the artifact dimension's defect, not blur: a moving patient doubles the body edge on a
    run of slices (the displaced copy's echo in the slices' cepstra, ct_motion.echo_step, the measure
    the artifact stage's motion rule reads), while blur is the reconstruction's and lowers every slice.
    The run counts when its echo stands ``min_t`` times over the spread and the edge indices read in
    it are at most ``max_ratio`` x those read outside it (the ghost lowers the edge; a blurred neck
    whose echo plateau is anatomy reads alike in and out of it), and at least ``min_kept`` slices
    read are left. i9212 E00243 / E00207 (clean, motion): runs 5-8 / 4-7 of 9 / 10 slices, edge
    0.24-0.29 inside against 0.33-0.40 outside (ct.yaml sharpness.motion_echo; empty: off)."""
    if not q or not values:
        return set()
    n = int(hu.shape[0])
    if n < 6:
        return set()
    ceps = np.stack([ct_motion.slice_cepstrum(ct_motion.work_slice(np.asarray(hu[i], dtype=np.float32), int(q.get("work_px", 128))))
                     for i in range(n)])
    _, t, where = ct_motion.echo_step(ceps)
    if where is None or t < float(q.get("min_t", 4.0)):
        return set()
    a, b = int(where[0]), int(where[1])
    inside = [v for v, i in values if a <= i < b]
    outside = [v for v, i in values if not a <= i < b]
    if not inside or len(outside) < int(q.get("min_kept", 3)):
        return set()
    if float(np.median(inside)) > float(q.get("max_ratio", 0.9)) * float(np.median(outside)):
        return set()
    return {i for _, i in values if a <= i < b}


def _sharpness(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink, cache: dict[str, Any]) -> DimensionResult:
    p = params.get("sharpness") or {}
    soft = _soft_series(exam) or _axial(exam)
    if not soft:
        return not_assessable("no_axial_series", "无可用的轴位原始序列", "no axial original series")
    if p.get("finest_grid_first"):
        # the body edge spans a pixel or two: on a 6-7 mm grid a sharp edge already reads as blurred
        # (training 7201 + validation 8272-8274: clean chests on 64-px grids read 0.17-0.32, below the
        # limit), so the series with the finest pixels is read first
        def pitch(s: SeriesImages) -> float:
            return float(header_of(s, "pixel_spacing") or 1e3)
        finest = min(pitch(s) for s in soft)
        soft = [s for s in soft if pitch(s) <= finest * 1.01] + [s for s in soft if pitch(s) > finest * 1.01]
        stack = _first_in_order(soft, cache)
    else:
        stack = _first_stack(soft, cache)
    if isinstance(stack, Exception):
        return not_assessable(_reason_code(stack), "序列无法读取", f"series unusable: {stack}")
    values = []
    padding = p.get("padding_below_hu")
    for i in pick_slices(stack.hu.shape[0], 8):
        img = np.asarray(stack.hu[i], dtype=float)
        mask = body_mask(img)
        if mask.sum() < 50:
            continue
        inside = float(np.median(img[mask]))
        if padding is None:
            air = float(np.median(img[~mask])) if (~mask).any() else -1000.0
            v = edge_index(img, mask, inside - air)
        else:
            v = _edge_index_unpadded(img, mask, inside, float(padding), int(p.get("padding_margin_px", 2)))
        if v is not None:
            values.append((v, i))
    if not values:
        return not_assessable("no_body", "未检出体部边缘", "no body edge found")
    motion = _motion_run_slices(stack.hu, values, p.get("motion_echo") or {})
    if motion:
        values = [(v, i) for v, i in values if i not in motion]
    # ``slice_quantile`` (percent, ct.yaml sharpness; 50 = the median): blur is the reconstruction's and
    # lowers every slice alike, while patient motion ghosts the edge on a run of slices only (i9212
    # E00207: motion slices 0.28-0.29, the rest 0.34-0.40; blurred exams read <= 0.25 on every slice),
    # so an upper quantile of the slices reads the reconstruction's sharpness, not the motion
    measured = float(np.percentile([v for v, _ in values], float(p.get("slice_quantile", 50.0))))
    # a sharp (bone) kernel's edge enhancement overshoots the body edge: its own limit where the exam
    # is read on one (ct.yaml sharpness.min_index_by_kernel; a T-spine or knee with bone series only)
    limit = float((p.get("min_index_by_kernel") or {}).get(str(_kernel_class(stack.series)), p.get("min_index", 0.325)))
    details = {"edge_index": round(measured, 4), "limit": limit, "series_uid": stack.uid,
               "slice_edge_indices": [round(v, 3) for v, _ in values]}
    if motion:
        details["motion_slices_left_out"] = sorted(motion)
    # the edge's width in mm beside the per-pixel index (a Gaussian edge of sigma s px reads 1 / (s sqrt(2 pi))):
    # the same blur in mm reads as a sharper index on coarser pixels
    pixel_mm = float(np.mean(stack.spacing)) if getattr(stack, "spacing", None) else None
    if pixel_mm and measured > 0:
        details.update({"pixel_mm": round(pixel_mm, 3), "edge_sigma_mm": round(pixel_mm / (measured * math.sqrt(2 * math.pi)), 3),
                        "slice_thickness_mm": stack.thickness or None, "kernel_class": _kernel_class(stack.series)})
    if measured >= limit:
        return DimensionResult(NORMAL, details)
    idx = min(values)[1]
    pic = add_picture(sink, np.asarray(stack.hu[idx]), "sharpness", window=(40.0, 400.0))
    f = finding("IQC-SHARPNESS", "sharpness", ABNORMAL,
                f"图像清晰度不足：体表边缘锐利度 {measured:.2f}（限值 {limit:.2f}）",
                f"image not sharp: body-edge sharpness index {measured:.2f} (limit {limit:.2f})",
                [Evidence(series_uid=stack.uid, instance_index=stack.instance_index(idx), measured=round(measured, 4), limit=limit, image=pic)])
    return DimensionResult(ABNORMAL, details, findings=[f])


# ---------------------------------------------------------------- reconstruction


_KERNEL_ZH = {"soft": "软组织", "lung": "肺", "bone": "骨", "head": "脑组织"}


@functools.lru_cache(maxsize=1)
def _kernel_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    table = load_params("CT", None).get("kernel_names") or {}
    return tuple((str(k), re.compile(str(v), re.I)) for k, v in table.items())


def _kernel_class(series: SeriesImages) -> str | None:
    """Kernel class from the kernel name (ct.yaml kernel_names, first match), else the classifier's.

    The window preset cannot tell the kernel (a site or a defect changes presets), so the name
    decides; the label's class is the fallback for names the table does not know."""
    name = str(header_of(series, "kernel") or "").strip()
    if name:
        for kernel, pattern in _kernel_patterns():
            if pattern.match(name):
                return kernel
    for ev in getattr(series.label, "evidence", []) or []:
        if getattr(ev, "field", None) == "kernel_class" and str(getattr(ev, "rule", "") or "").startswith("ct.kernel."):
            return str(ev.value)
    value = label_of(series, "kernel_class")
    return str(value) if value else None


def _intended_class(series: SeriesImages) -> str | None:
    """The class the description says (lung / bone / soft / head words), when a description rule matched."""
    for ev in getattr(series.label, "evidence", []) or []:
        if getattr(ev, "field", None) == "kernel_class" and str(getattr(ev, "rule", "") or "").startswith("desc.kernel."):
            return str(ev.value)
    return None


def _preset_class(series: SeriesImages, window_params: dict[str, Any]) -> str | None:
    """"lung" or "bone" when the series' own window is that class's preset (ct.yaml window.presets).

    Why: a lung series reconstructed with the soft kernel keeps its lung window (W1500/L-600), and
    the series classifier, which trusts a known kernel name, then records no window evidence; the
    window is how a reader tells what the series was made for (9216 E00203: a 1.25 mm soft-kernel
    series in lung window beside the soft 1.25 mm series read as a wrong window instead of a wrong
    kernel). A wrong window preset is not one of these presets, so the two defects stay apart."""
    c, w = header_of(series, "window_center"), header_of(series, "window_width")
    if c is None or w is None:
        return None
    presets = window_params.get("presets") or {}
    ctol = float(window_params.get("centre_tolerance", 60))
    wtol = float(window_params.get("width_tolerance_fraction", 0.35))
    for kind in ("lung", "bone"):
        if any(abs(c - pc) <= ctol and abs(w - pw) <= wtol * pw for pc, pw in presets.get(kind, [])):
            return kind
    return None


def _kernel_mismatch(series: SeriesImages, window_params: dict[str, Any] | None = None) -> tuple[str, str] | None:
    """(kernel name class, intended class) when the kernel name says soft but window/description say lung/bone."""
    label = series.label
    if label is None:
        return None
    named = intended = None
    for ev in getattr(label, "evidence", []) or []:
        if getattr(ev, "field", None) != "kernel_class":
            continue
        rule = str(getattr(ev, "rule", "") or "")
        if rule.startswith("ct.kernel."):
            named = ev.value
        elif rule.startswith(("ct.window.", "desc.kernel.")) and ev.value in ("lung", "bone"):
            intended = ev.value
    if named is None and intended is not None:
        # a kernel name the classifier's vendor table does not know (UIH B_SOFT_AA) is classed by this
        # module's own table (ct.yaml kernel_names), as _kernel_class does: validation 9202 E00023, a
        # bone-window thoracic spine written with B_SOFT_AA, read 正常
        name = str(header_of(series, "kernel") or "").strip()
        named = next((kernel for kernel, pattern in _kernel_patterns() if name and pattern.match(name)), None)
    if intended is None and named in ("soft", "head") and window_params:
        intended = _preset_class(series, window_params)
    if named in ("soft", "head") and intended in ("lung", "bone"):
        return str(named), str(intended)
    return None


def _missing_by_acquisition(axial: list[SeriesImages], parts: list[str],
                            by_part: dict[str, Any]) -> list[tuple[list[SeriesImages], list[str]]]:
    """(acquisition, kernel classes it lacks) per acquisition (contrast phase x overlapping z-range) that
    lacks a kernel its ordered part needs (ct.yaml reconstruction.kernels_by_part). A head kernel counts
    as soft. Headers and labels only: no pixels are read."""
    rules = [(part, by_part[part]) for part in parts if part in by_part]
    if not rules:
        return []
    regionless_only = all(part in by_part and not (by_part[part] or {}).get("region") for part in parts)
    phases: dict[Any, list[SeriesImages]] = {}
    for s in axial:
        phases.setdefault(label_of(s, "phase"), []).append(s)
    out = []
    for members in phases.values():
        for group in _acquisitions(members):
            regions = {label_of(s, "region") for s in group}
            need: set[str] = set()
            for _, rule in rules:
                region = (rule or {}).get("region")
                if (region and region in regions) or (not region and regionless_only):
                    need |= {str(k) for k in (rule or {}).get("kernels") or []}
            have = {_kernel_class(s) for s in group}
            if "head" in have:
                have.add("soft")
            missing = sorted(need - have)
            if missing:
                out.append((group, missing))
    return out


def _reconstruction(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink) -> DimensionResult:
    p = params.get("reconstruction") or {}
    axial = _axial(exam)
    if not axial:
        return not_assessable("no_axial_series", "无可用的轴位原始序列", "no axial original series")
    findings = []
    max_t = float(p.get("max_thickness_mm", 5.5))
    thin = float(p.get("thin_mm", 1.5))
    # acquired stacks and their MPRs; spectral maps, MIP/VR slabs have their own thickness conventions
    thick = [s for s in exam.series if _thickness(s) > max_t and (header_of(s, "n_instances") or 0) > 1
             and (label_of(s, "role") in ("original", None) or label_of(s, "derived_type") == "mpr")]
    for s in thick:
        findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL,
                                f"重建层厚 {_thickness(s):g} mm 超出标准（≤ {max_t:g} mm）",
                                f"reconstructed slice thickness {_thickness(s):g} mm outside the standard (<= {max_t:g} mm)",
                                [Evidence(series_uid=series_uid(s), measured=_thickness(s), limit=max_t, unit="mm")]))
    thicknesses = [_thickness(s) for s in axial if _thickness(s) > 0]
    if p.get("thin_required") and thicknesses and min(thicknesses) > thin:
        findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL,
                                f"缺少薄层重建（≤ {thin:g} mm），最薄 {min(thicknesses):g} mm",
                                f"no thin reconstruction (<= {thin:g} mm); thinnest is {min(thicknesses):g} mm",
                                [Evidence(measured=min(thicknesses), limit=thin, unit="mm")]))
    present = {_kernel_class(s) for s in axial}
    if "head" in present:
        present.add("soft")
    for k in p.get("kernels_required") or []:
        ok = k in present or (k == "head" and "soft" in present and False)
        if not ok:
            findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL,
                                    f"缺少{_KERNEL_ZH.get(k, k)}算法重建",
                                    f"no {k}-kernel reconstruction", [Evidence(measured=sorted(x for x in present if x), limit=k)]))
    for s in axial:
        mm = _kernel_mismatch(s, params.get("window") or {})
        if mm:
            findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL,
                                    f"重建算法不符合标准：{_KERNEL_ZH.get(mm[1], mm[1])}序列用{_KERNEL_ZH.get(mm[0], mm[0])}核重建"
                                    f"（{header_of(s, 'kernel')}）",
                                    f"reconstruction kernel outside the standard: {mm[1]} series reconstructed with a {mm[0]} kernel "
                                    f"({header_of(s, 'kernel')})",
                                    [Evidence(series_uid=series_uid(s), measured=header_of(s, "kernel"), limit=mm[1])]))
    # per acquisition: the exam-wide check above is met by any one phase or part (i9218 E00538: the
    # plain phase's lung series written soft, the enhanced phase's lung series present)
    reported = {k for k in p.get("kernels_required") or [] if k not in present}
    for group, missing in _missing_by_acquisition(axial, _exam_parts(exam), p.get("kernels_by_part") or {}):
        missing = [k for k in missing if k not in reported]
        if not missing:
            continue
        reported.update(missing)
        zh = "、".join(_KERNEL_ZH.get(k, k) for k in missing)
        findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL,
                                f"缺少{zh}算法重建（{label_of(group[0], 'region') or ''}扫描，{len(group)} 个轴位序列）",
                                f"no {'/'.join(missing)}-kernel reconstruction of one acquisition "
                                f"({label_of(group[0], 'region') or 'unknown region'}, {len(group)} axial series)",
                                [Evidence(series_uid=series_uid(group[0]), measured=sorted(x for x in {_kernel_class(s) for s in group} if x),
                                          limit=missing)]))
    derived = {label_of(s, "derived_type") for s in exam.series}
    for d in p.get("derived_required") or []:
        if d not in derived:
            findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL, f"缺少{d.upper()}重建", f"no {d.upper()} reconstruction",
                                    [Evidence(limit=d)]))
    fov = p.get("fov_mm")
    if fov:
        for s in axial:
            d = header_of(s, "recon_diameter")
            if d and not (fov[0] <= d <= fov[1]):
                findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL, f"重建视野 {d:g} mm 超出范围 {fov[0]}–{fov[1]} mm",
                                        f"reconstruction FOV {d:g} mm outside {fov[0]}-{fov[1]} mm",
                                        [Evidence(series_uid=series_uid(s), measured=d, limit=fov, unit="mm")]))
    details = {"thicknesses_mm": sorted(set(thicknesses)), "kernels": sorted(x for x in present if x),
               "derived": sorted(x for x in derived if x)}
    return DimensionResult(ABNORMAL if findings else NORMAL, details, findings=findings)


# ---------------------------------------------------------------- window


def _window(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink) -> DimensionResult:
    p = params.get("window") or {}
    presets = p.get("presets") or {}
    required = set(p.get("required_for") or [])
    ctol = float(p.get("centre_tolerance", 60))
    wtol = float(p.get("width_tolerance_fraction", 0.35))
    axial = [s for s in _axial(exam) if (_kernel_class(s) or label_of(s, "kernel_class")) in required]
    if not axial:
        return not_assessable("no_axial_series", "无可判断窗口的轴位序列", "no axial series to check windows on")
    findings = []
    checked = []
    for s in axial:
        kernel = str(_kernel_class(s) or label_of(s, "kernel_class"))
        # the series may be read as the kernel's class or as what its description / label says
        # a lung/bone series made with the soft kernel keeps its own window: the kernel is the
        # deviation (reconstruction), not the window
        mismatch = _kernel_mismatch(s, p)
        candidates = [k for k in (kernel, label_of(s, "kernel_class"), _intended_class(s),
                                  mismatch[1] if mismatch else None) if k]
        c, w = header_of(s, "window_center"), header_of(s, "window_width")
        if c is None or w is None:
            findings.append(finding("IQC-WINDOW", "window", ABNORMAL,
                                    f"缺少规定的窗口预设（{_KERNEL_ZH.get(kernel, kernel)}序列未设窗宽窗位）",
                                    f"required window preset missing ({kernel} series has no window)",
                                    [Evidence(series_uid=series_uid(s), measured=None, limit=presets.get(kernel))]))
            continue
        ok = any(abs(c - pc) <= ctol and abs(w - pw) <= wtol * pw for k in candidates for pc, pw in presets.get(k, []))
        checked.append({"series_uid": series_uid(s), "kernel": kernel, "center": c, "width": w, "ok": ok})
        if not ok:
            want = presets.get(kernel, [[None, None]])[0]
            findings.append(finding("IQC-WINDOW", "window", ABNORMAL,
                                    f"窗宽窗位设置不当：{_KERNEL_ZH.get(kernel, kernel)}序列 W{w:g}/L{c:g}（应约 W{want[1]}/L{want[0]}）",
                                    f"wrong window preset: {kernel} series W{w:g}/L{c:g} (expected about W{want[1]}/L{want[0]})",
                                    [Evidence(series_uid=series_uid(s), measured=[c, w], limit=want)]))
    return DimensionResult(ABNORMAL if findings else NORMAL, {"series": checked}, findings=findings)


# ---------------------------------------------------------------- dose

_CTDI_RE = re.compile(r"CTDIvol\s*[=:]?\s*([0-9]+(?:\.[0-9]+)?)", re.I)


def _ctdivol(exam: ExamImages) -> list[tuple[float, str | None, str | None]]:
    """CTDIvol values (mGy) with the series UID and region: image headers first, else the dose report text."""
    out: list[tuple[float, str | None, str | None]] = []
    for s in _axial(exam):
        v = _series_ctdivol(s)
        if v is not None:
            out.append((v, series_uid(s), label_of(s, "region")))
    if out:
        return out
    for s in exam.series:
        if label_of(s, "role") != "dose_report":
            continue
        try:
            ds = s.datasets()
        except Exception:  # noqa: BLE001
            continue
        for d in ds:
            for m in _CTDI_RE.finditer(str(d.get("ImageComments", "") or "")):
                out.append((float(m.group(1)), series_uid(s), None))
    return out


def _dose(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink,
          cache: dict[str, Any] | None = None) -> DimensionResult:
    p = params.get("dose") or {}
    values = _ctdivol(exam)
    if not values:
        f = finding("IQC-DOSE", "dose", ABNORMAL, "未记录剂量信息（无 CTDIvol、无剂量报告）",
                    "dose not recorded (no CTDIvol, no dose report)", [Evidence(measured=None, limit="CTDIvol recorded")])
        return DimensionResult(ABNORMAL, {"ctdivol_mgy": None, "not_recorded": True}, findings=[f])
    by_region = p.get("ctdivol_ref_by_region") or {}
    default_ref = float(p.get("ctdivol_ref_mgy", 25.0))
    factor = float(p.get("factor", 1.3))
    findings = []
    rows = []
    acq_regions = (cache or {}).get("acq_regions") or {}
    for v, uid, region in values:
        covered = [r for r in acq_regions.get(uid, []) if r in by_region]
        if p.get("ref_from") == "item":  # e.g. spine: the series' body region is not the item's reference
            ref = default_ref
            # ...unless the acquisition is another ordered item's (a head scan beside a C-spine, i9218
            # E00687 / E00702: 40-47 mGy on the head held to the spine's 25): that item's region raises
            # the reference, never lowers it (a chest beside a T-spine keeps the spine's 25)
            own = [r for r in (covered or ([region] if region else []))
                   if r in ((cache or {}).get("item_regions") or []) and r in by_region]
            if own and max(float(by_region[r]) for r in own) > ref:
                ref = max(float(by_region[r]) for r in own)
                region = "+".join(own)
        elif covered:  # an acquisition over several regions is held to the highest of their references
            ref = max(float(by_region[r]) for r in covered)
            region = "+".join(covered)
        else:
            ref = float(by_region.get(region, default_ref)) if region else default_ref
        rows.append({"ctdivol_mgy": v, "reference_mgy": ref, "series_uid": uid, "region": region})
        if v > ref * factor:
            findings.append(finding("IQC-DOSE", "dose", ABNORMAL,
                                    f"剂量超过参考水平：CTDIvol {v:g} mGy，约为参考值 {ref:g} mGy 的 {v / ref:.1f} 倍（{p.get('source', '')}）",
                                    f"dose above the reference level: CTDIvol {v:g} mGy, about {v / ref:.1f}x the reference {ref:g} mGy",
                                    [Evidence(series_uid=uid, measured=v, limit=round(ref * factor, 2), unit="mGy")]))
    return DimensionResult(ABNORMAL if findings else NORMAL, {"acquisitions": rows, "factor": factor}, findings=findings)


# ---------------------------------------------------------------- entry point


def measure_ct(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink) -> dict[str, DimensionResult]:
    """All CT dimensions but ``artifact`` (the artifact detector's): each measured or with its reason.

    ``positioning`` measures rotation about the long axis only (not head tilt, not arms in the field).

    ``params`` come from :func:`load_params` ("CT", exam.standard_code)."""
    cache: dict[str, Any] = {}
    try:
        cache["item_regions"] = _item_regions(exam, params)
    except Exception:  # noqa: BLE001 - without the ordered regions each scan's covered regions apply
        log.exception("CT item regions failed")
    out: dict[str, DimensionResult] = {}
    steps = {
        "range": lambda: _range(exam, params, sink, cache),
        "centring": lambda: _centring(exam, params, sink, cache),
        "positioning": lambda: _positioning(exam, params, sink, cache),
        "noise": lambda: _noise(exam, params, sink, cache),
        "sharpness": lambda: _sharpness(exam, params, sink, cache),
        "reconstruction": lambda: _reconstruction(exam, params, sink),
        "window": lambda: _window(exam, params, sink),
        "dose": lambda: _dose(exam, params, sink, cache),
    }
    for dim, fn in steps.items():
        try:
            out[dim] = fn()
        except Exception as exc:  # noqa: BLE001 - one failing measure must not lose the others
            log.exception("CT %s measure failed", dim)
            out[dim] = not_assessable("measure_error", "测量出错", f"measure failed: {type(exc).__name__}: {exc}"[:300])
        if params.get("_notes") and out[dim].details is not None:
            out[dim].details.setdefault("notes", params["_notes"])
    out["sequences"] = not_applicable("序列完整性仅适用于磁共振", "sequence completeness applies to MR only")
    return out
