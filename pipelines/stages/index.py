"""Stage ``index``: what each series of an exam contains, and whether its geometry is whole.

Everything is measured from the header facts ingest keeps on each instance
(``Instance.header``), so the stage reads no pixel bytes and runs in milliseconds per exam.
Later stages (rule QC, series splitting, image QC) start from its output instead of
re-deriving counts and geometry. Only the newest version of each SOP instance is counted
(the runner's context never shows older versions).

Per series: instance and frame counts, InstanceNumber gaps and duplicates, SOP Instance
UID duplicates, images with identical pixels, scan plane from ImageOrientationPatient
(axial / coronal / sagittal / oblique), slice spacing (median of the sorted position
differences along the slice normal), z-extent, missing slices and irregular spacing,
pixel spacing, slice thickness, matrix, and localizer detection. The result schema is
documented in docs/pipeline-runner.md.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from radqc.pipelines.runner.stage import ExamContext, InstanceInfo, Resources, SeriesInfo, Stage

VERSION = "1"
SCHEMA = 1

#: Normal's dominant patient axis (DICOM LPS: 0 = x, 1 = y, 2 = z) -> scan plane.
PLANE_BY_AXIS = ("sagittal", "coronal", "axial")
#: A normal further than this from every patient axis makes the series oblique (degrees).
#: Gantry tilts of CT (typically up to ~25°) stay in their plane.
OBLIQUE_BEYOND_DEG = 30.0
#: Two slice positions closer than this along the normal are the same position (mm).
SAME_POSITION_MM = 0.01
#: A gap deviating from the median spacing by more than this fraction (and by more than
#: ``SPACING_ABS_TOLERANCE_MM``) is irregular, unless it is a whole multiple of the spacing,
#: which means slices are missing.
SPACING_REL_TOLERANCE = 0.10
SPACING_ABS_TOLERANCE_MM = 0.02
#: A gap of at least this many median spacings is read as missing slices.
MISSING_SLICE_RATIO = 1.5
#: Orientation vectors equal to this many decimals belong to one stack.
ORIENTATION_DECIMALS = 3
#: How many gap details / instance numbers to list before only counting.
MAX_LISTED = 50

#: ImageType values that mark a localizer (scout, topogram, surview).
LOCALIZER_IMAGE_TYPES = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW", "SCANOGRAM"})
#: Series-description substrings that mark a localizer when ImageType does not (MR surveys).
LOCALIZER_DESCRIPTION_WORDS = ("localizer", "localiser", "scout", "topogram", "surview", "survey", "scanogram",
                               "3-plane", "3plane", "tri-plane", "triplane", "定位")
#: Whole words (split on anything not a letter or digit) that mark a localizer: too short or
#: too common to match inside other words ("loc" in "block", "pilot" is safe only whole).
LOCALIZER_DESCRIPTION_TOKENS = frozenset({"loc", "pilot", "3pl"})
#: A series whose stacks cover all three planes with at most this many images is a
#: three-plane localizer even when nothing in its header says so.
THREE_PLANE_MAX_IMAGES = 60

#: Flags a series may carry: code -> (Chinese, English).
FLAGS: dict[str, tuple[str, str]] = {
    "localizer": ("定位像", "localizer / scout image"),
    "missing_slices": ("层面缺失", "missing slices in the stack"),
    "irregular_spacing": ("层间距不均匀", "irregular slice spacing"),
    "duplicate_positions": ("同一位置有多幅图像", "several images at the same slice position"),
    "mixed_orientation": ("序列内方向不一致", "more than one orientation in the series"),
    "instance_number_gaps": ("图像编号不连续", "InstanceNumber gaps"),
    "instance_number_duplicates": ("图像编号重复", "duplicate InstanceNumber"),
    "sop_uid_duplicates": ("SOP 实例 UID 重复", "duplicate SOP Instance UID"),
    "pixel_duplicates": ("像素完全相同的图像", "images with identical pixel data"),
    "thickness_varies": ("层厚不一致", "slice thickness varies within the series"),
    "no_geometry": ("无空间定位信息", "no position/orientation (projection image or missing tags)"),
}


def _floats(value: Any, n: int) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split("\\")
    if not isinstance(value, (list, tuple)):
        value = [value]
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(out) != n or any(v != v or v in (float("inf"), float("-inf")) for v in out):
        return None
    return out


def _number(value: Any) -> float | None:
    out = _floats(value, 1)
    return out[0] if out else None


def _image_type(header: dict[str, Any]) -> list[str]:
    value = header.get("ImageType")
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split("\\")
    return [str(v).strip().upper() for v in value]


def scan_plane(orientation: list[float]) -> tuple[str, float, list[float]] | None:
    """(plane, angle in degrees between the slice normal and the nearest patient axis, normal)."""
    import numpy as np

    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:], dtype=float)
    normal = np.cross(row, col)
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        return None
    normal /= length
    axis = int(np.argmax(np.abs(normal)))
    angle = float(np.degrees(np.arccos(min(1.0, abs(float(normal[axis]))))))
    plane = PLANE_BY_AXIS[axis] if angle <= OBLIQUE_BEYOND_DEG else "oblique"
    return plane, round(angle, 2), [round(float(v), 6) for v in normal]


def _localizer(series: SeriesInfo, image_types: list[list[str]], planes: set[str]) -> str | None:
    """How the series was recognised as a localizer (``image_type``, ``description``,
    ``three_plane``), or None."""
    if image_types and sum(1 for t in image_types if LOCALIZER_IMAGE_TYPES & set(t)) * 2 > len(image_types):
        return "image_type"
    text = (series.description or "").casefold()
    if any(word in text for word in LOCALIZER_DESCRIPTION_WORDS):
        return "description"
    if LOCALIZER_DESCRIPTION_TOKENS & set(re.split(r"[^0-9a-z]+", text)):
        return "description"
    if {"axial", "coronal", "sagittal"} <= planes and len(series.instances) <= THREE_PLANE_MAX_IMAGES:
        return "three_plane"
    return None


def _most_common(values: list[Any]) -> tuple[Any, bool]:
    """The most common value and whether the values vary (None ignored)."""
    present = [v for v in values if v is not None]
    if not present:
        return None, False
    counts = Counter(tuple(v) if isinstance(v, list) else v for v in present)
    value = counts.most_common(1)[0][0]
    return (list(value) if isinstance(value, tuple) else value), len(counts) > 1


def _instance_numbers(instances: tuple[InstanceInfo, ...]) -> dict[str, Any]:
    numbers = [i.instance_number for i in instances if i.instance_number is not None]
    counts = Counter(numbers)
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    gaps: list[int] = []
    gap_count = 0
    if numbers:
        present = set(numbers)
        lo, hi = min(present), max(present)
        # A numbering range far larger than the series (numbers across series) is not
        # enumerated; only counted.
        gap_count = (hi - lo + 1) - len(present)
        if gap_count and hi - lo <= 100_000:
            gaps = [n for n in range(lo, hi + 1) if n not in present][:MAX_LISTED]
    return {
        "min": min(numbers) if numbers else None,
        "max": max(numbers) if numbers else None,
        "missing_count": gap_count,
        "missing": gaps,
        "duplicates": duplicates[:MAX_LISTED],
        "duplicate_count": sum(c - 1 for c in counts.values() if c > 1),
        "without_number": sum(1 for i in instances if i.instance_number is None),
    }


def _stack_geometry(positions: list[list[float]], normal: list[float]) -> dict[str, Any]:
    """Spacing, extent, missing slices and irregular gaps of one stack of slice positions."""
    import numpy as np

    along = np.sort(np.asarray(positions, dtype=float) @ np.asarray(normal, dtype=float))
    unique = [along[0]]
    for value in along[1:]:
        if value - unique[-1] > SAME_POSITION_MM:
            unique.append(value)
    points = np.asarray(unique)
    out: dict[str, Any] = {
        "slices": int(len(points)),
        "duplicate_positions": int(len(along) - len(points)),
        "z_range_mm": [round(float(points[0]), 3), round(float(points[-1]), 3)],
        "z_extent_mm": round(float(points[-1] - points[0]), 3),
        "slice_spacing_mm": None,
        "spacing_min_mm": None,
        "spacing_max_mm": None,
        "missing_slices": 0,
        "irregular_spacing": False,
        "gaps": [],
    }
    if len(points) < 2:
        return out
    diffs = np.diff(points)
    spacing = float(np.median(diffs))
    out["slice_spacing_mm"] = round(spacing, 4)
    out["spacing_min_mm"] = round(float(diffs.min()), 4)
    out["spacing_max_mm"] = round(float(diffs.max()), 4)
    tolerance = max(SPACING_REL_TOLERANCE * spacing, SPACING_ABS_TOLERANCE_MM)
    missing = 0
    irregular = False
    gaps: list[dict[str, Any]] = []
    for start, gap in zip(points[:-1], diffs, strict=True):
        if abs(gap - spacing) <= tolerance:
            continue
        ratio = gap / spacing
        whole = round(ratio)
        if ratio >= MISSING_SLICE_RATIO and abs(gap - whole * spacing) <= tolerance * whole:
            kind, count = "missing", whole - 1
            missing += count
        else:
            kind, count = "irregular", 0
            irregular = True
        if len(gaps) < MAX_LISTED:
            gaps.append({"after_mm": round(float(start), 3), "gap_mm": round(float(gap), 4), "kind": kind,
                         "missing": int(count)})
    out.update(missing_slices=int(missing), irregular_spacing=irregular, gaps=gaps)
    return out


def index_series(series: SeriesInfo) -> dict[str, Any]:
    instances = series.instances
    headers = [i.header or {} for i in instances]
    image_types = [_image_type(h) for h in headers]
    frames = [int(_number(h.get("NumberOfFrames")) or 1) for h in headers]
    uid_counts = Counter(i.sop_instance_uid for i in instances)
    pixel_counts = Counter(i.pixel_hash for i in instances if i.pixel_hash)
    pixel_spacing, _ = _most_common([_floats(h.get("PixelSpacing"), 2) for h in headers])
    thickness, thickness_varies = _most_common([_number(h.get("SliceThickness")) for h in headers])
    rows, _ = _most_common([_number(h.get("Rows")) for h in headers])
    columns, _ = _most_common([_number(h.get("Columns")) for h in headers])

    out: dict[str, Any] = {
        "series_id": series.id,
        "series_instance_uid": series.series_instance_uid,
        "series_number": series.series_number,
        "modality": series.modality,
        "description": series.description,
        "body_part": series.body_part,
        "instances": len(instances),
        "frames": int(sum(frames)),
        "multiframe": any(f > 1 for f in frames),
        "instance_numbers": _instance_numbers(instances),
        "sop_uid_duplicates": sorted(u for u, c in uid_counts.items() if c > 1)[:MAX_LISTED],
        "pixel_duplicates": int(sum(c - 1 for c in pixel_counts.values() if c > 1)),
        "localizer": False,
        "localizer_by": None,
        "image_type": _most_common([t for t in image_types if t])[0],
        "rows": int(rows) if rows is not None else None,
        "columns": int(columns) if columns is not None else None,
        "pixel_spacing_mm": pixel_spacing,
        "fov_mm": (
            [round(rows * pixel_spacing[0], 2), round(columns * pixel_spacing[1], 2)]
            if rows and columns and pixel_spacing else None
        ),
        "slice_thickness_mm": thickness,
        "plane": None,
        "tilt_deg": None,
        "orientations": 0,
        "geometry": None,
        "geometry_note": None,
    }

    # Stacks: instances grouped by orientation; geometry is measured on the largest one.
    stacks: dict[tuple[float, ...], list[list[float]]] = {}
    with_geometry = 0
    for header in headers:
        orientation = _floats(header.get("ImageOrientationPatient"), 6)
        position = _floats(header.get("ImagePositionPatient"), 3)
        if orientation is None or position is None:
            continue
        with_geometry += 1
        key = tuple(round(v, ORIENTATION_DECIMALS) + 0.0 for v in orientation)
        stacks.setdefault(key, []).append(position)
    out["orientations"] = len(stacks)
    planes = {p[0] for p in (scan_plane(list(o)) for o in stacks) if p is not None}
    localizer = _localizer(series, image_types, planes)
    out["localizer"], out["localizer_by"] = localizer is not None, localizer
    if not stacks:
        out["geometry_note"] = "multiframe" if out["multiframe"] else "no_geometry"
    else:
        main_orientation, positions = max(stacks.items(), key=lambda kv: len(kv[1]))
        plane = scan_plane(list(main_orientation))
        if plane is None:
            out["geometry_note"] = "degenerate_orientation"
        else:
            out["plane"], out["tilt_deg"], normal = plane
            geometry = _stack_geometry(positions, normal)
            geometry["normal"] = normal
            geometry["instances_used"] = len(positions)
            geometry["instances_without_geometry"] = len(instances) - with_geometry
            out["geometry"] = geometry
            if out["multiframe"]:
                out["geometry_note"] = "multiframe: per-frame positions are not in the header"

    geometry = out["geometry"] or {}
    checks = {
        "localizer": out["localizer"],
        # a localizer's slices are not a stack: its gaps mean nothing
        "missing_slices": not out["localizer"] and geometry.get("missing_slices", 0) > 0,
        "irregular_spacing": not out["localizer"] and bool(geometry.get("irregular_spacing")),
        "duplicate_positions": not out["localizer"] and geometry.get("duplicate_positions", 0) > 0,
        "mixed_orientation": not out["localizer"] and out["orientations"] > 1,
        "instance_number_gaps": out["instance_numbers"]["missing_count"] > 0,
        "instance_number_duplicates": out["instance_numbers"]["duplicate_count"] > 0,
        "sop_uid_duplicates": bool(out["sop_uid_duplicates"]),
        "pixel_duplicates": out["pixel_duplicates"] > 0,
        "thickness_varies": thickness_varies,
        "no_geometry": out["geometry"] is None and not out["multiframe"],
    }
    out["flags"] = [code for code in FLAGS if checks.get(code)]
    return out


def index_exam(ctx: ExamContext) -> dict[str, Any]:
    """Per-series counts and geometry of one exam, with exam totals."""
    series = [index_series(s) for s in ctx.series]
    uid_counts = Counter(i.sop_instance_uid for _, i in ctx.instances())
    imaging = [s for s in series if not s["localizer"]]
    totals = {
        "series": len(series),
        "instances": sum(s["instances"] for s in series),
        "frames": sum(s["frames"] for s in series),
        "localizer_series": len(series) - len(imaging),
        "modalities": sorted({s["modality"] for s in series if s["modality"]}),
        "planes": dict(sorted(Counter(s["plane"] or "none" for s in imaging).items())),
        "missing_slices": sum(s["geometry"]["missing_slices"] for s in imaging if s["geometry"]),
        "series_with_missing_slices": sum(1 for s in series if "missing_slices" in s["flags"]),
        "series_with_irregular_spacing": sum(1 for s in series if "irregular_spacing" in s["flags"]),
        "series_with_instance_number_gaps": sum(1 for s in series if "instance_number_gaps" in s["flags"]),
        "series_with_instance_number_duplicates": sum(1 for s in series if "instance_number_duplicates" in s["flags"]),
        "duplicate_sop_uids": sum(c - 1 for c in uid_counts.values() if c > 1),
        "flags": dict(sorted(Counter(f for s in series for f in s["flags"]).items())),
    }
    return {"schema": SCHEMA, "exam_id": ctx.exam_id, "totals": totals, "series": series}


STAGES = [
    Stage(
        name="index",
        version=VERSION,
        fn=index_exam,
        resources=Resources(cpus=1, memory_mb=256),
        description="series counts, numbering and geometry / 序列计数、编号与空间几何",
    )
]
