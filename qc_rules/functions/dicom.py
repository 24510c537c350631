"""Header-level helpers over the facts' ``series`` list (one dict per series: modality,
description, body_part, n_instances, slice_thickness, pixel_spacing, kernel, window_centers,
window_widths, image_type, protocol_name, manufacturer).

Localizers, dose reports and secondary captures are not diagnostic images: thickness,
kernel and window rules look at the diagnostic series only. All functions accept None
(no images) and then answer as "nothing to object to" (True / [] / None), so image rules
pass vacuously for exams without images; the index rules report the missing images.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from radqc.qc_rules.functions.basic import to_number
from radqc.qc_rules.functions.lexicon import kernel_table, window_presets

_NON_DIAGNOSTIC = re.compile(r"(?i)localizer|scout|topogram|surview|scanogram|topo\b|定位|dose|剂量|screen ?save|3 plane loc")
#: Derived renderings (3D volume rendering, surface, endoscopy views, screen captures): pictures
#: made for viewing, without the geometry and window attributes of slices.
_RENDERING = re.compile(r"(?i)\b(VOLUME|VR|SSD|VE|SCREEN|CAPTURE)\b")
_DIAG_MODALITIES = {"CT", "MR", "DX", "CR", "DR", "MG", "RF", "XA", "US", "NM", "PT"}


def _series(series: Any) -> list[dict[str, Any]]:
    return [s for s in (series or []) if isinstance(s, dict)]


def _list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, str):
        return [p for p in re.split(r"[\\,]", v) if p.strip()]
    return [v]


def is_diagnostic(s: Any) -> bool:
    """A series of diagnostic images: an imaging modality, not a localizer, dose report, 3D
    rendering (DERIVED\\SECONDARY\\VOLUME\\VR) or screen capture (by ImageType and description).
    Reformats (MPR) are diagnostic slices and count."""
    if not isinstance(s, dict):
        return False
    if str(s.get("modality") or "").upper() not in _DIAG_MODALITIES:
        return False
    types = [p for t in _list(s.get("image_type")) for p in str(t).upper().split("\\")]
    image_type = " ".join(types)
    if "SECONDARY" in types and _RENDERING.search(image_type):
        return False
    text = " ".join(str(s.get(k) or "") for k in ("description", "protocol_name")) + " " + image_type
    return not _NON_DIAGNOSTIC.search(text)


def diagnostic_series(series: Any) -> list[dict[str, Any]]:
    """The diagnostic series of an exam (see :func:`is_diagnostic`)."""
    return [s for s in _series(series) if is_diagnostic(s)]


def count_missing(series: Any, key: str) -> int:
    """How many diagnostic series lack ``key`` (None, "" or an empty list)."""
    n = 0
    for s in diagnostic_series(series):
        v = s.get(key)
        if v is None or (isinstance(v, (str, list, tuple)) and len(v) == 0):
            n += 1
    return n


def pixel_spacing_ok(series: Any, lo: Any = 0.05, hi: Any = 5.0) -> bool:
    """Every diagnostic series' PixelSpacing values (mm) lie within [lo, hi]; series without
    spacing are :func:`count_missing`'s business. True for None."""
    lo_f, hi_f = to_number(lo) or 0.0, to_number(hi) or 1e9
    for s in diagnostic_series(series):
        for v in _list(s.get("pixel_spacing")):
            x = to_number(v)
            if x is None or not lo_f <= x <= hi_f:
                return False
    return True


def thicknesses(series: Any) -> list[float]:
    """SliceThickness values (mm) of the diagnostic series, sorted (missing ones skipped)."""
    out = [to_number(s.get("slice_thickness")) for s in diagnostic_series(series)]
    return sorted(x for x in out if x is not None)


def min_thickness(series: Any) -> float | None:
    """The thinnest diagnostic series (mm); None without images or thickness values."""
    t = thicknesses(series)
    return t[0] if t else None


def max_thickness(series: Any) -> float | None:
    """The thickest diagnostic series (mm); None without values."""
    t = thicknesses(series)
    return t[-1] if t else None


def kernel_class(kernel: Any) -> str | None:
    """lung / bone / head / soft for a ConvolutionKernel value (vendor names and patterns in
    lexicons/windows.yaml); None for blank or unknown."""
    if kernel is None:
        return None
    return _kernel_class(" ".join(str(v) for v in _list(kernel)).strip())


@lru_cache(maxsize=4096)
def _kernel_class(k: str) -> str | None:
    if not k:
        return None
    names, patterns = kernel_table()
    if k.upper() in names:
        return names[k.upper()]
    for cls, regex in patterns:
        if regex.search(k):
            return cls
    return None


def kernel_classes(series: Any) -> list[str]:
    """Kernel classes of the diagnostic CT series, sorted."""
    out = {kernel_class(s.get("kernel")) for s in diagnostic_series(series)
           if str(s.get("modality") or "").upper() == "CT"}
    return sorted(c for c in out if c)


def has_window(series: Any, preset: str) -> bool:
    """True when a diagnostic series carries a (WindowCenter, WindowWidth) pair inside the
    preset's ranges (lung, mediastinum, soft, brain, bone in lexicons/windows.yaml)."""
    spec = window_presets().get(preset)
    if spec is None:
        raise ValueError(f"unknown window preset {preset!r}")
    (clo, chi), (wlo, whi) = spec["centre"], spec["width"]
    for s in diagnostic_series(series):
        centres, widths = _list(s.get("window_centers")), _list(s.get("window_widths"))
        for c, w in zip(centres, widths, strict=False):
            cf, wf = to_number(c), to_number(w)
            if cf is not None and wf is not None and clo <= cf <= chi and wlo <= wf <= whi:
                return True
    return False


def has_series(series: Any, pattern: str) -> bool:
    """True when a series' description, protocol name or image type matches the regular
    expression ``pattern`` (case-insensitive search), e.g. ``"DWI|TRACEW|弥散"``."""
    regex = _series_regex(pattern)
    for s in _series(series):
        text = " ".join([str(s.get("description") or ""), str(s.get("protocol_name") or "")]
                        + [str(t) for t in _list(s.get("image_type"))])
        if regex.search(text):
            return True
    return False


@lru_cache(maxsize=512)
def _series_regex(pattern: str) -> re.Pattern[str]:
    from radqc.qc_rules.functions.basic import validate_pattern

    validate_pattern(pattern)
    return re.compile(pattern, re.IGNORECASE)


def empty_series(series: Any) -> int:
    """How many series have no instances (n_instances 0 or missing)."""
    return sum(1 for s in _series(series) if not (to_number(s.get("n_instances")) or 0) > 0)


def max_instances(series: Any) -> int:
    """The largest instance count of a diagnostic series (0 without images)."""
    counts = [int(to_number(s.get("n_instances")) or 0) for s in diagnostic_series(series)]
    return max(counts) if counts else 0


def series_modalities(series: Any) -> list[str]:
    """Modalities of the series, sorted."""
    return sorted({str(s.get("modality")).upper() for s in _series(series) if s.get("modality")})


def series_uids_unique(series: Any) -> bool:
    """True when no SeriesInstanceUID repeats."""
    uids = [s.get("series_instance_uid") for s in _series(series) if s.get("series_instance_uid")]
    return len(uids) == len(set(uids))


_UID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")


def uid_valid(x: Any) -> bool:
    """A DICOM UID: digits and dots, components without leading zeros, at most 64 chars."""
    if x is None:
        return False
    s = str(x).strip()
    return 0 < len(s) <= 64 and _UID.fullmatch(s) is not None
