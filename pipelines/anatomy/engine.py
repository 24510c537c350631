"""The anatomy engine: models in, label map + statistics + landmarks + coverage out.

One function per input kind, shared by ``radqc segment`` and the ``anatomy`` stage:

* :func:`analyse_ct` — a CT volume (``radqc.dicom.volume``) through the ``ct_organs``
  segmenter and the ``body_region`` scorer;
* :func:`analyse_radiograph` — a projection through the ``radiograph_anatomy`` analyser.

The engine never loads a model itself (callers pass what :func:`resolve_slot` gave them, so
a worker loads each model once) and never invents one: an :class:`Unavailable` slot leaves
its part of the result empty and sets ``status: model_unavailable`` with the reason. A model
that raises or returns a label map of the wrong geometry is ``status: model_error``. The
result is plain JSON (schema in docs/anatomy.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from radqc.models.interfaces import CT_LANDMARKS, BodyRegionResult
from radqc.pipelines.anatomy.coverage import describe_coverage
from radqc.pipelines.anatomy.models import Unavailable, describe
from radqc.pipelines.anatomy.stats import Geometry, structure_statistics
from radqc.text import bilingual

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from radqc.dicom.volume import Radiograph
    from radqc.models.registry import LabelSet

RESULT_SCHEMA = 1

#: Result statuses: code -> (Chinese, English).
STATUSES: dict[str, tuple[str, str]] = {
    "ok": ("完成", "done"),
    "model_unavailable": ("模型不可用", "model unavailable"),
    "model_error": ("模型运行出错", "model failed"),
    "unsuitable": ("序列不适合分析", "series unsuitable for analysis"),
}
#: A label map's origin/spacing/direction may differ from the image's by float noise only.
GEOMETRY_TOLERANCE = 1e-3


class ModelOutputError(RuntimeError):
    """A model returned something the engine cannot use (wrong geometry, wrong type)."""


@dataclass
class Analysis:
    """The engine's output: ``labels`` (uint8 label map in the source geometry, or None when no
    segmenter ran; for radiographs a stack of binary channels) and the JSON ``result``."""

    result: dict[str, Any]
    labels: sitk.Image | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.result.get("status"))


def _label_set(segmenter: Any, label_set: LabelSet | None) -> LabelSet:
    if label_set is not None:
        return label_set
    if segmenter is not None and not isinstance(segmenter, Unavailable):
        ls = getattr(segmenter, "label_set", None)
        if ls is not None:
            return ls
    from radqc.models.registry import load_label_set

    return load_label_set("ct_organs")


def _checked_labels(labels: Any, image: sitk.Image) -> sitk.Image:
    """The segmenter's output as uint8 with exactly the image's geometry, or ModelOutputError."""
    import SimpleITK as sitk

    if isinstance(labels, np.ndarray):
        if labels.shape != tuple(reversed(image.GetSize())):
            raise ModelOutputError(f"label array shape {labels.shape} differs from the image {tuple(reversed(image.GetSize()))}")
        out = sitk.GetImageFromArray(labels.astype(np.uint8, copy=False))
        out.CopyInformation(image)
        return out
    if not isinstance(labels, sitk.Image):
        raise ModelOutputError(f"segmenter returned {type(labels).__name__}, not a SimpleITK image")
    if labels.GetSize() != image.GetSize():
        raise ModelOutputError(f"label map size {labels.GetSize()} differs from the image {image.GetSize()}")
    for what, a, b in (("origin", labels.GetOrigin(), image.GetOrigin()), ("spacing", labels.GetSpacing(), image.GetSpacing()),
                       ("direction", labels.GetDirection(), image.GetDirection())):
        if not np.allclose(a, b, atol=GEOMETRY_TOLERANCE, rtol=GEOMETRY_TOLERANCE):
            raise ModelOutputError(f"label map {what} {tuple(round(v, 4) for v in a)} differs from the image's "
                                   f"{tuple(round(v, 4) for v in b)}")
    if labels.GetPixelID() != sitk.sitkUInt8:
        labels = sitk.Cast(labels, sitk.sitkUInt8)
    labels.CopyInformation(image)  # float noise in the model's header must not shift the output
    return labels


def _landmarks(body: BodyRegionResult | None, z_lo: float, z_hi: float, tolerance: float,
               warnings: list[str]) -> dict[str, float | None]:
    """All contract landmarks: z in mm when inside the scan (± ``tolerance``), else None."""
    out: dict[str, float | None] = {name: None for name in CT_LANDMARKS}
    if body is None:
        return out
    for name in CT_LANDMARKS:
        value = (body.landmarks or {}).get(name)
        if value is None:
            continue
        z = float(value)
        if not np.isfinite(z):
            continue
        if z < z_lo - tolerance or z > z_hi + tolerance:
            warnings.append(f"landmark {name} at z={z:.1f} mm lies outside the scan ({z_lo:.1f}..{z_hi:.1f}); reported as null")
            continue
        out[name] = round(z, 2)
    return out


def _error(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "message": bilingual(STATUSES, code, detail)}


def analyse_ct(
    image: sitk.Image, *, segmenter: Any, scorer: Any, label_set: LabelSet | None = None,
) -> Analysis:
    """Segment ``image`` (HU, LPS) and describe its anatomy.

    ``segmenter`` follows :class:`radqc.models.interfaces.Segmenter`, ``scorer``
    :class:`~radqc.models.interfaces.BodyRegionScorer`; either may be an :class:`Unavailable`
    (or None: not asked for). Returns the label map in the image's exact geometry and a
    result with ``structures`` (statistics of every structure present; ``body`` is the union
    of all foreground labels), ``landmarks`` (all contract names, z or null), ``coverage``
    (z-range in anatomy words), ``scan`` facts, ``models`` and ``warnings``."""
    import SimpleITK as sitk

    timings: dict[str, float] = {}
    warnings: list[str] = []
    errors: list[dict[str, str]] = []
    geometry = Geometry.of(image)
    z = geometry.slice_z_mm()
    z_lo, z_hi = float(z.min()), float(z.max())
    labels_set = _label_set(segmenter, label_set)
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "kind": "ct",
        "status": "ok",
        "structures": [],
        "landmarks": {name: None for name in CT_LANDMARKS},
        "coverage": None,
        "scan": {
            "size": list(image.GetSize()),
            "spacing_mm": [round(float(v), 4) for v in image.GetSpacing()],
            "slices": int(image.GetSize()[2]),
            "z_min_mm": round(z_lo, 2),
            "z_max_mm": round(z_hi, 2),
        },
        "label_set": labels_set.name,
        "models": {"ct_organs": describe("ct_organs", segmenter), "body_region": describe("body_region", scorer)},
        "warnings": warnings,
        "error": None,
    }
    unavailable = [m for m in (segmenter, scorer) if isinstance(m, Unavailable)]

    labels_img: sitk.Image | None = None
    if segmenter is not None and not isinstance(segmenter, Unavailable):
        t0 = time.perf_counter()
        try:
            labels_img = _checked_labels(segmenter.segment(image), image)
        except Exception as exc:  # noqa: BLE001 - a failing model is a recorded result
            errors.append(_error("model_error", f"ct_organs {getattr(segmenter, 'name', '?')}: {type(exc).__name__}: {exc}"[:500]))
            result["models"]["ct_organs"]["status"] = "error"
        timings["segment_s"] = round(time.perf_counter() - t0, 3)
    body: BodyRegionResult | None = None
    if scorer is not None and not isinstance(scorer, Unavailable):
        t0 = time.perf_counter()
        try:
            body = scorer.score(image)
            if not isinstance(body, BodyRegionResult):
                raise ModelOutputError(f"scorer returned {type(body).__name__}, not a BodyRegionResult")
        except Exception as exc:  # noqa: BLE001
            body = None
            errors.append(_error("model_error", f"body_region {getattr(scorer, 'name', '?')}: {type(exc).__name__}: {exc}"[:500]))
            result["models"]["body_region"]["status"] = "error"
        timings["body_region_s"] = round(time.perf_counter() - t0, 3)
    if labels_img is not None and body is not None and body.regions and len(body.regions) == len(z):
        labels_img = _drop_implausible(labels_img, body, z, labels_set, warnings, result)
    if labels_img is not None:
        t0 = time.perf_counter()
        labels = sitk.GetArrayViewFromImage(labels_img)
        hu = sitk.GetArrayViewFromImage(image)
        structures, unknown = structure_statistics(labels, geometry, labels_set, hu=hu)
        if unknown:
            warnings.append(f"label values not in label set {labels_set.name}: {unknown}")
        result["structures"] = structures
        timings["statistics_s"] = round(time.perf_counter() - t0, 3)

    tolerance = float(geometry.spacing[2])
    result["landmarks"] = _landmarks(body, z_lo, z_hi, tolerance, warnings)
    if body is not None:
        regions = list(body.regions) if body.regions and len(body.regions) == len(z) else None
        result["coverage"] = describe_coverage(z.tolist(), result["landmarks"], regions)
        result["body_region"] = {
            "monotonic_fraction": body.monotonic_fraction,
            "regions": _region_runs(regions, z) if regions else [],
        }
    if errors:
        result["status"], result["error"] = "model_error", errors[0]
        if len(errors) > 1:
            result["errors"] = errors
    elif unavailable:
        result["status"] = "model_unavailable"
        detail = "; ".join(f"{u.slot}: {u.reason}" for u in unavailable)
        result["error"] = _error("model_unavailable", detail)
    result["timings_s"] = timings
    return Analysis(result=result, labels=labels_img)


def _polarity_hint(analyser: Any) -> dict[str, Any]:
    """The loader already turned MONOCHROME1 the right way (higher = denser): say so to
    analysers that accept it, so they do not guess the polarity (a guess failed on real CR)."""
    import inspect

    try:
        params = inspect.signature(analyser.analyse).parameters
    except (TypeError, ValueError):
        return {}
    return {"mono1": False} if "mono1" in params else {}


def _drop_implausible(labels_img: sitk.Image, body: BodyRegionResult, z: np.ndarray, labels_set: LabelSet,
                      warnings: list[str], result: dict[str, Any]) -> sitk.Image:
    """Structures on slices where anatomy forbids them (lung in a head) become ``body``; reported."""
    import SimpleITK as sitk

    from radqc.models.segmentation.plausibility import remove_implausible

    arr = sitk.GetArrayFromImage(labels_img)
    removed = remove_implausible(arr, list(body.regions), np.asarray(z, float), labels_set)
    if not removed:
        return labels_img
    voxel_ml = float(np.prod(labels_img.GetSpacing())) / 1000.0
    result["implausible_removed_ml"] = {k: round(v * voxel_ml, 2) for k, v in removed.items()}
    warnings.append("relabelled as body (outside their body regions): "
                    + ", ".join(f"{k} {v * voxel_ml:.1f} ml" for k, v in removed.items()))
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(labels_img)
    return out


def _region_runs(regions: list[str], z: np.ndarray) -> list[dict[str, Any]]:
    """Consecutive slices of one body region as {region, z_min_mm, z_max_mm, slices}."""
    runs: list[dict[str, Any]] = []
    for k, region in enumerate(regions):
        if runs and runs[-1]["region"] == region:
            run = runs[-1]
            run["z_min_mm"] = round(min(run["z_min_mm"], float(z[k])), 2)
            run["z_max_mm"] = round(max(run["z_max_mm"], float(z[k])), 2)
            run["slices"] += 1
        else:
            runs.append({"region": region, "z_min_mm": round(float(z[k]), 2), "z_max_mm": round(float(z[k]), 2), "slices": 1})
    return runs


def analyse_radiograph(radiograph: Radiograph, *, analyser: Any) -> Analysis:
    """Masks and landmarks of one projection through the ``radiograph_anatomy`` slot.

    ``structures`` lists each mask as {name, label (its channel, 1-based, in the label
    stack), area_px, area_mm2, bbox [row0, col0, row1, col1]}; ``landmarks`` are (row, col)
    pixels or null; ``measurements`` come from the analyser unchanged."""
    warnings: list[str] = []
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "kind": "radiograph",
        "status": "ok",
        "view": radiograph.view,
        "body_part": radiograph.body_part,
        "image": {"rows": int(radiograph.pixels.shape[0]), "columns": int(radiograph.pixels.shape[1]),
                  "spacing_mm": list(radiograph.spacing_mm) if radiograph.spacing_mm else None,
                  "inverted_monochrome1": radiograph.inverted},
        "structures": [],
        "landmarks": {},
        "measurements": {},
        "models": {"radiograph_anatomy": describe("radiograph_anatomy", analyser)},
        "warnings": warnings,
        "error": None,
    }
    if analyser is None or isinstance(analyser, Unavailable):
        if isinstance(analyser, Unavailable):
            result["status"] = "model_unavailable"
            result["error"] = _error("model_unavailable", f"radiograph_anatomy: {analyser.reason}")
        return Analysis(result=result)
    t0 = time.perf_counter()
    try:
        out = analyser.analyse(radiograph.pixels, radiograph.spacing_mm, radiograph.view, radiograph.body_part,
                               **_polarity_hint(analyser))
    except Exception as exc:  # noqa: BLE001
        result["status"] = "model_error"
        result["models"]["radiograph_anatomy"]["status"] = "error"
        result["error"] = _error("model_error", f"radiograph_anatomy: {type(exc).__name__}: {exc}"[:500])
        return Analysis(result=result)
    result["timings_s"] = {"analyse_s": round(time.perf_counter() - t0, 3)}
    if out.view and not radiograph.view:
        result["view"] = out.view
    masks: dict[str, np.ndarray] = {}
    area = float(np.prod(radiograph.spacing_mm)) if radiograph.spacing_mm else None
    for name, mask in sorted((out.masks or {}).items()):
        m = np.asarray(mask).astype(bool)
        if m.shape != radiograph.pixels.shape:
            warnings.append(f"mask {name} has shape {m.shape}, image {radiograph.pixels.shape}: dropped")
            continue
        masks[name] = m
        channel = len(masks)
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        px = int(m.sum())
        result["structures"].append({
            "name": name, "label": channel, "area_px": px,
            "area_mm2": round(px * area, 2) if area else None,
            "bbox": [int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])] if px else None,
        })
    result["landmarks"] = {k: (None if v is None else [round(float(v[0]), 1), round(float(v[1]), 1)])
                           for k, v in (out.landmarks or {}).items()}
    result["measurements"] = dict(out.measurements or {})
    return Analysis(result=result, masks=masks)
