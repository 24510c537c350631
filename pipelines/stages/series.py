"""The ``series`` stage: every series' standard category, the exam split into its standard items.

Per exam (after ``index``, ``items`` and ``rule_qc``):

1. header facts of each series from the catalogue (no pixels: ``features.from_catalogue``;
   derived series' sources resolved through the exam's SOP instance UIDs);
2. thumbnails from the few stored instances the image model looks at (``pick_instances``);
3. classify (header rules + header model + image model, fused);
4. when several CT items are ordered, the body-region scorer on the longest original axial
   CT series gives the anatomical boundaries for slabs (z-coverage fallback otherwise);
5. split with the ``items`` stage's ``standard_items``;
6. exam tags (``radqc.pipelines.series.tags.assign_tags``, with rule QC's grade).

Dependencies, and why: ``items`` (the ordered items) and ``index`` are required inputs.
``rule_qc`` is declared because the QC-grade tag needs it; it is a cheap header/report
stage that records bad input as results rather than failing. The ``anatomy`` stage is NOT
declared: it segments every CT (seconds per exam), a dependency would pull it into every
``radqc run series`` and skip this stage whenever segmentation failed; the body-region
scorer the split needs costs ~0.5 s and runs here only for exams that may need a cut.

The projection (:func:`radqc.pipelines.series.store.project`) writes the standard series
with their instance links and the exam tags in the transaction that records the result.
Result schema: docs/series.md.
"""

from __future__ import annotations

import io
import threading
from typing import Any

from radqc.pipelines.runner.stage import ExamContext, InstanceInfo, Resources, SeriesInfo, Stage

VERSION = "2"  # 2: description_overruled from SeriesDescription alone
RESULT_SCHEMA = 1
_LOCK = threading.Lock()


def model_versions() -> dict[str, str]:
    """Classifier models, vocabularies and the split, for the run's fingerprint (never raises)."""
    out: dict[str, str] = {}
    try:
        from radqc.pipelines.series.split import SPLIT_VERSION

        out["split"] = SPLIT_VERSION
        from radqc.pipelines.series.run import classifier

        with _LOCK:
            clf = classifier(True)
            getattr(clf, "image_model", None)  # loaded lazily: load it so its version is in the fingerprint
        versions = getattr(clf, "versions", None)
        raw = versions() if callable(versions) else versions
        for k, v in dict(raw or {}).items():
            out[f"classifier.{k}"] = str(v)
    except Exception as exc:  # noqa: BLE001 - a missing model is a recorded version, not a crash
        out["classifier"] = f"unavailable: {type(exc).__name__}"
    try:
        import importlib

        vocab = importlib.import_module("radqc.vocab")
        version = getattr(vocab, "VERSION", None) or getattr(vocab, "version", None)
        out["vocab"] = str(version() if callable(version) else version)
    except Exception:  # noqa: BLE001
        out["vocab"] = "unavailable"
    try:
        from radqc.pipelines.series.run import _scorer

        scorer = _scorer()
        out["body_region"] = "unavailable" if scorer is None else f"{scorer.name} {scorer.version}"
    except Exception:  # noqa: BLE001
        out["body_region"] = "unavailable"
    return out


def _ordered(series: SeriesInfo) -> list[InstanceInfo]:
    return sorted(series.instances, key=lambda i: (i.instance_number if i.instance_number is not None else 1 << 30,
                                                   i.sop_instance_uid))


def _z(instance: InstanceInfo) -> float | None:
    from radqc.pipelines.series.run import image_centre_z

    return image_centre_z(instance.header or {})


def _thumbnail(ctx: ExamContext, series: SeriesInfo) -> Any:
    import pydicom

    from radqc.models.series_image.thumbnail import make_thumbnail, pick_instances

    ordered = _ordered(series)
    picked = []
    for i in pick_instances(len(ordered)):
        try:
            picked.append(pydicom.dcmread(io.BytesIO(ctx.read(ordered[i]))))
        except Exception:  # noqa: BLE001 - unreadable pixels: the header path still labels it
            continue
    try:
        return make_thumbnail(picked) if picked else None
    except Exception:  # noqa: BLE001
        return None


def _tags(labels: list[Any], split: dict[str, Any], rule_qc: Any, headers: list[Any],
          body_regions: dict[str, Any] | None) -> tuple[list[dict[str, Any]], str | None]:
    try:
        from radqc.pipelines.series.tags import assign_tags
    except ImportError as exc:
        return [], f"tags unavailable: {exc}"
    anatomy = None
    if body_regions:  # the anatomy result's shape; a region of one slice (the neck above a chest) is no region
        anatomy = {"analysed": [{"body_region": {"regions": [r for r in acq.get("regions") or []
                                                             if int(r.get("slices") or 0) >= 2]}}
                                for acq in body_regions.get("acquisitions") or [] if acq.get("status") == "ok"]}
    return list(assign_tags(labels, split=split, rule_qc=rule_qc, anatomy=anatomy, headers=headers)), None


def series_exam(ctx: ExamContext) -> dict[str, Any]:
    """Classify and split one exam (see the module docstring)."""
    from radqc.pipelines.series.features import from_catalogue
    from radqc.pipelines.series.run import body_regions_for, classifier, label_row, needs_body_regions
    from radqc.pipelines.series.split import slab_members, split_exam

    items_result = ctx.inputs.get("items") or {}
    items = [dict(i) for i in items_result.get("standard_items") or [] if isinstance(i, dict)]
    series = sorted(ctx.series, key=lambda s: (s.series_number if s.series_number is not None else 1 << 30,
                                               s.series_instance_uid))
    sop_index = {inst.sop_instance_uid: s.series_instance_uid for s, inst in ctx.instances()}
    headers = [from_catalogue(s, ctx.study_description, sop_index=sop_index) for s in series]
    images = {s.series_instance_uid: img for s in series if (img := _thumbnail(ctx, s)) is not None}
    with _LOCK:
        clf = classifier(True)
    labels = clf.classify(headers, images)
    by_uid = {s.series_instance_uid: s for s in series}
    positions: dict[str, list[tuple[float, int]]] = {}
    for s in series:
        positions[s.series_instance_uid] = [(z, inst.id) for inst in _ordered(s) if (z := _z(inst)) is not None]
    zmap = {uid: [z for z, _ in pos] for uid, pos in positions.items()}
    regions: dict[str, Any] | None = None
    if needs_body_regions(labels, items):
        regions = body_regions_for(labels, zmap, lambda uid: [ctx.read(i) for i in _ordered(by_uid[uid])],
                                   {h.series_uid: h for h in headers})
    usable = regions if regions and regions.get("status") == "ok" else None
    split = split_exam(labels, items, headers={h.series_uid: h for h in headers}, slice_z=zmap, body_regions=usable)
    # instance ids per standard series, for the projection (originals are linked, never copied)
    for item in split.get("standard_items") or []:
        for entry in item["series"]:
            src = by_uid.get(entry["series_uid"])
            if src is None:
                continue
            entry["series_id"] = src.id
            slab = entry.get("slab")
            if slab:
                pos = positions.get(entry["series_uid"]) or []
                keep = slab_members([z for z, _ in pos], slab["z_from_mm"], slab["z_to_mm"])
                entry["instance_ids"] = [pos[k][1] for k in keep]
            else:
                entry["instance_ids"] = [i.id for i in _ordered(src)]
    tags, tag_error = _tags(labels, split, ctx.inputs.get("rule_qc"), headers, usable)
    return {
        "schema": RESULT_SCHEMA, "exam_id": ctx.exam_id, "study_instance_uid": ctx.study_instance_uid,
        "items_no_order": bool(items_result.get("no_order")) if items_result else None,
        "series": [label_row(lab, h) for lab, h in zip(labels, headers, strict=True)],
        "split": split, "body_regions": regions, "tags": tags, "warnings": [tag_error] if tag_error else [],
    }


def _project(session: Any, exam_id: int, ledger_id: int, result: Any) -> None:
    from radqc.pipelines.series.store import project

    project(session, exam_id, ledger_id, result)


STAGES = [
    Stage(
        name="series",
        version=VERSION,
        fn=series_exam,
        depends=("index", "items", "rule_qc"),
        reads=("instances",),
        resources=Resources(cpus=1, memory_mb=1024, model="series_image"),
        versions=model_versions,
        description="Series categories and combined-exam split into standard items / 序列分类与组合检查拆分",
        project=_project,
    )
]
