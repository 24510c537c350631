"""The ``anatomy`` stage: organ label map, structure statistics, landmarks and coverage per exam.

Per exam (after ``index``):

1. choose what to analyse from the index result: the CT series most worth segmenting
   (original, axial, not a localizer, no gaps, thinnest, most slices — see
   :func:`ct_candidates`), and up to :data:`MAX_RADIOGRAPHS` DX/CR images;
2. build the volume from the stored instance bytes (``radqc.dicom.volume``); a series that
   cannot be used (non-axial, tilted, gaps, single slice, ...) is recorded with its reason
   and the next candidate is tried, up to :data:`MAX_CT_ATTEMPTS`;
3. run the engine with the models of the slots (``radqc.models.slots``; an unavailable
   model is a recorded ``model_unavailable``, never a stand-in);
4. put ``labels.nii.gz`` and ``seg.dcm`` into the object store as new content-addressed
   objects and return their keys with the statistics. The result names the source
   instances by content hash, so every derived object points back to what it came from.

Bad input never fails the stage: the exam gets a result that says why nothing (or only part)
was analysed, and continues through the other stages. Only an unexpected error (a bug, a
store that cannot be read) fails the run for that exam. Result schema: docs/anatomy.md.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from radqc.pipelines.runner.stage import ExamContext, Resources, SeriesInfo, Stage, StageOutput

VERSION = "1"
RESULT_SCHEMA = 1
#: CT series tried per exam before giving up (each unsuitable one is recorded).
MAX_CT_ATTEMPTS = 3
#: Radiographs analysed per exam (a chest PA + lateral, a spine series ...).
MAX_RADIOGRAPHS = 8
#: Index flags that make a CT series a poor first choice (it is still tried, later).
WEAK_FLAGS = ("missing_slices", "irregular_spacing", "duplicate_positions", "mixed_orientation")
SLOTS_USED = ("ct_organs", "body_region", "radiograph_anatomy")
RADIOGRAPH_MODALITIES = ("DX", "CR", "RG", "DR")

#: Reasons a series is not analysed without reading it: code -> (Chinese, English).
SKIP_REASONS: dict[str, tuple[str, str]] = {
    "not_selected": ("已选择更合适的序列", "another series of the exam was analysed"),
    "no_model_for_modality": ("该模态无解剖模型", "no anatomy model for this modality"),
    "localizer": ("定位像", "localizer / scout image"),
    "over_limit": ("超过每个检查的分析数量上限", "more than the per-exam limit"),
    "not_tried": ("已达尝试次数上限", "attempt limit reached before this series"),
}

_MODELS_LOCK = threading.Lock()


def model_versions() -> dict[str, str]:
    """The models behind the slots, for the run's fingerprint (never raises)."""
    from radqc.pipelines.anatomy.models import slot_versions

    return slot_versions(SLOTS_USED)


def _models(kind: str) -> dict[str, Any]:
    from radqc.pipelines.anatomy.run import load_models

    with _MODELS_LOCK:  # one load per process even when exams run in parallel threads
        return load_models(kind)


def _index_rows(ctx: ExamContext) -> dict[str, dict[str, Any]]:
    try:
        index = ctx.input("index") or {}
    except KeyError:
        index = {}
    return {str(s.get("series_instance_uid")): s for s in index.get("series", []) if isinstance(s, dict)}


def _skip(series: SeriesInfo, code: str, detail: str = "", message: str | None = None) -> dict[str, Any]:
    from radqc.text import bilingual

    return {"series_id": series.id, "series_instance_uid": series.series_instance_uid, "modality": series.modality,
            "series_number": series.series_number, "description": series.description,
            "reason": {"code": code, "message": message or bilingual(SKIP_REASONS, code, detail), "detail": detail}}


def ct_candidates(ctx: ExamContext) -> tuple[list[SeriesInfo], list[dict[str, Any]]]:
    """CT series worth trying, best first, and the CT series set aside (localizers)."""
    rows = _index_rows(ctx)
    out: list[tuple[tuple[Any, ...], SeriesInfo]] = []
    skipped = []
    for series in ctx.series:
        if (series.modality or "").upper() != "CT" or not series.instances:
            continue
        row = rows.get(series.series_instance_uid, {})
        if row.get("localizer"):
            skipped.append(_skip(series, "localizer", str(row.get("localizer_by") or "")))
            continue
        image_type = [str(v).upper() for v in (row.get("image_type") or [])]
        flags = set(row.get("flags") or [])
        thickness = row.get("slice_thickness_mm")
        key = (
            row.get("plane") not in (None, "axial"),
            bool(flags & set(WEAK_FLAGS)),
            not (image_type and image_type[0] == "ORIGINAL"),
            float(thickness) if isinstance(thickness, (int, float)) and thickness > 0 else math.inf,
            -len(series.instances),
            series.series_number if series.series_number is not None else 1 << 30,
        )
        out.append((key, series))
    out.sort(key=lambda kv: kv[0])
    return [s for _, s in out], skipped


def _store_files(ctx: ExamContext, files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    from radqc.pipelines.anatomy.run import LABELS_FILE, SEG_FILE

    media = {LABELS_FILE: "application/x-nifti+gzip", SEG_FILE: "application/dicom"}
    kinds = {LABELS_FILE: "labels", SEG_FILE: "seg"}
    store = ctx.store.open()
    out = {}
    for name, data in files.items():
        put = store.put(data)
        out[kinds.get(name, name)] = {"key": put.key, "sha256": put.digest, "size": put.size,
                                      "file": name, "media_type": media.get(name, "application/octet-stream")}
    return out


def _sources(series: SeriesInfo, instances: list[Any]) -> dict[str, Any]:
    return {"series_instance_uid": series.series_instance_uid, "instances": len(instances),
            "content_hashes": sorted(i.content_hash for i in instances)}


def _analysed(series: SeriesInfo, instances: list[Any], outputs: Any, objects: dict[str, Any]) -> dict[str, Any]:
    result = dict(outputs.result)
    files_meta = result.pop("outputs", {}) or {}
    result.update(series_id=series.id, series_number=series.series_number, description=series.description,
                  objects=objects, sources=_sources(series, instances))
    for extra in ("segment_map", "seg_type", "seg_sop_instance_uid", "label_channels"):
        if extra in files_meta:
            result[extra] = files_meta[extra]
    return result


def anatomy_exam(ctx: ExamContext) -> StageOutput:
    """Analyse one exam's anatomy (see the module docstring)."""
    from radqc.dicom.volume import UnsuitableSeries, build_volume, load_radiograph
    from radqc.pipelines.anatomy.run import run_ct, run_radiograph

    analysed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    used: dict[str, Any] = {}

    candidates, set_aside = ct_candidates(ctx)
    skipped.extend(set_aside)
    attempts = 0
    for series in candidates:
        if analysed:
            skipped.append(_skip(series, "not_selected", analysed[0]["series_instance_uid"]))
            continue
        if attempts >= MAX_CT_ATTEMPTS:
            skipped.append(_skip(series, "not_tried", f"{MAX_CT_ATTEMPTS} series tried"))
            continue
        attempts += 1
        instances = list(series.instances)
        try:
            volume = build_volume([ctx.read(i) for i in instances], require_ct=True)
        except UnsuitableSeries as exc:
            skipped.append(_skip(series, exc.reason_code, exc.detail, exc.message))
            continue
        models = _models("ct")
        used.update(models)
        outputs = run_ct(volume, models)
        del volume
        analysed.append(_analysed(series, instances, outputs, _store_files(ctx, outputs.files)))

    radiographs = 0
    for series in ctx.series:
        modality = (series.modality or "").upper()
        if modality == "CT":
            continue
        if modality not in RADIOGRAPH_MODALITIES:
            skipped.append(_skip(series, "no_model_for_modality", modality or "unknown"))
            continue
        for instance in series.instances:
            if radiographs >= MAX_RADIOGRAPHS:
                skipped.append(_skip(series, "over_limit", f"{MAX_RADIOGRAPHS} radiographs per exam"))
                break
            try:
                radiograph = load_radiograph(ctx.read(instance))
            except UnsuitableSeries as exc:
                skipped.append({**_skip(series, exc.reason_code, exc.detail, exc.message),
                                "sop_instance_uid": instance.sop_instance_uid})
                continue
            radiographs += 1
            models = _models("radiograph")
            used.update(models)
            outputs = run_radiograph(radiograph, models)
            analysed.append(_analysed(series, [instance], outputs, _store_files(ctx, outputs.files)))

    statuses = {a.get("status") for a in analysed}
    status = ("nothing_analysed" if not analysed else "model_error" if "model_error" in statuses
              else "model_unavailable" if "model_unavailable" in statuses else "ok")
    from radqc.pipelines.anatomy.models import describe

    result = {"schema": RESULT_SCHEMA, "exam_id": ctx.exam_id, "status": status, "analysed": analysed,
              "skipped": skipped}
    manifest = {"models": {slot: describe(slot, model) for slot, model in used.items()}}
    return StageOutput(result, manifest=manifest)


STAGES = [
    Stage(
        name="anatomy",
        version=VERSION,
        fn=anatomy_exam,
        depends=("index",),
        resources=Resources(cpus=2, memory_mb=4096, model="ct_organs"),
        versions=model_versions,
        description="Organ segmentation, landmarks and coverage / 器官分割、解剖标志与扫描覆盖范围",
    )
]
