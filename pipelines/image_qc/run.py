"""One exam end to end: series classification, item -> scoring standard, measures, roll-up.

Shared by ``radqc qc PATH`` (a folder, no server, no catalogue), the ``image_qc`` pipeline
stage and ``radqc eval image-qc``, so the command line, the catalogue and the reported
figures run the same code. Steps per exam (one StudyInstanceUID):

1. read every file's header (``radqc.pipelines.series.run.scan``); non-DICOM and corrupt
   files are listed with their reason, never fatal;
2. classify the series (#6) and resolve the ordered item to a scoring standard
   (``--item``, else the records' ``exam_items``, else the StudyDescription);
3. the measures of the exam's modality (CT/MR: ``ct``/``mr``, radiographs: ``radiograph``;
   ``artifact`` for all), each given the item's parameters and an evidence sink. A measure
   that is missing or raises makes its dimensions 无法评估 with the reason — never a crash;
4. unknown item: every item-dependent dimension (rollup.yaml ``item_dependent``) is 无法评估
   with the reason, the rest is still scored under the modality's default standard; an item the
   vocabulary knows but no standard scores keeps the dimensions rollup.yaml
   ``vocab_item_suffices`` names for its class (CT knee: range, reconstruction, window, dose);
5. roll-up (:mod:`radqc.pipelines.image_qc.rollup`): deductions with the standard's points,
   score and grade, combined with rule QC when its result is given.

Result schema (public contract): docs/image-qc.md.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from radqc.pipelines.image_qc.types import (
    DIMENSIONS,
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    VALUES,
    DimensionResult,
    EvidenceSink,
    ExamImages,
)

log = logging.getLogger(__name__)

#: Bump when the result of the same input can change (the stage's version follows it).
VERSION = "1"

#: The measures per modality group: (module, function, params loader, loader's leading args).
#: Modules are imported lazily: one that does not exist yet is "measure not available".
MEASURES: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {
    "CT": [("radqc.pipelines.image_qc.ct", "measure_ct", "load_params", ("CT",))],
    "MR": [("radqc.pipelines.image_qc.mr", "measure_mr", "load_params", ("MR",))],
    "DX": [("radqc.pipelines.image_qc.radiograph", "measure_radiograph", "load_params", ())],
}
ARTIFACT_MEASURE = ("radqc.pipelines.image_qc.artifact", "measure_artifact")

#: Dimensions whose limits or required content come from the exam item: without a known item
#: they cannot be assessed (the others use modality defaults). Data: rollup.yaml may override.
ITEM_DEPENDENT = ("range", "positioning", "reconstruction", "window", "sequences", "dose")

#: Bilingual reasons of this module: code -> (Chinese, English).
REASONS: dict[str, tuple[str, str]] = {
    "measure_unavailable": ("该项测量尚不可用", "measure not available"),
    "measure_failed": ("测量出错", "measure failed"),
    "not_returned": ("测量未给出该维度结果", "the measure gave no result for this dimension"),
    "no_modality": ("无可评估的影像（CT、MR或X线）", "no image of a modality image QC assesses (CT, MR, radiograph)"),
    "unknown_item": ("检查项目未知，无法按标准评估", "exam item unknown: cannot assess against the item's standard"),
    "bad_value": ("测量给出的结果不在规定取值内", "the measure returned a value outside the dimension's vocabulary"),
    "no_reason": ("测量未说明原因", "the measure gave no reason"),
}


def reason(code: str, detail: str = "") -> str:
    zh, en = REASONS[code]
    return f"{zh} / {en}" + (f": {detail}" if detail else "")


def item_dependent() -> tuple[str, ...]:
    from radqc.pipelines.image_qc.rollup import rollup_table

    dims = rollup_table().get("item_dependent")
    return tuple(dims) if dims else ITEM_DEPENDENT


# ---------------------------------------------------------------- the measures


def _load(module: str, name: str) -> Callable[..., Any] | None:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.startswith(exc.name):
            return None  # the measure's module does not exist (yet)
        raise
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


def measure_params(group: str | None, code: str | None) -> dict[str, Any]:
    """The item's image-QC parameters from the modality's measure module (defaults when unknown)."""
    for module, _fn, loader, lead in MEASURES.get(group or "", []):
        try:
            load = _load(module, loader)
            if load is not None:
                return dict(load(*lead, code) or {})
        except Exception as exc:  # noqa: BLE001 - no parameters: the measure uses its defaults
            log.warning("parameters of %s for %s: %s", module, code, exc)
    return {}


def _all(dims: Sequence[str], value: str, why: str) -> dict[str, DimensionResult]:
    return {d: DimensionResult(value=value, reason=why) for d in dims}


def _call(module: str, name: str, exam: ExamImages, params: dict[str, Any], sink: EvidenceSink,
          dims: Sequence[str], timings: dict[str, float]) -> dict[str, DimensionResult]:
    started = time.perf_counter()
    try:
        fn = _load(module, name)
    except Exception as exc:  # noqa: BLE001 - a module that fails to import is a failed measure
        return _all(dims, NOT_ASSESSABLE, reason("measure_failed", f"{module}: {type(exc).__name__}: {exc}"[:300]))
    if fn is None:
        return _all(dims, NOT_ASSESSABLE, reason("measure_unavailable", module.rsplit(".", 1)[-1]))
    try:
        out = dict(fn(exam, params, sink) or {})
    except Exception as exc:  # noqa: BLE001 - one measure never stops the exam
        log.exception("measure %s.%s failed", module, name)
        out = _all(dims, NOT_ASSESSABLE, reason("measure_failed", f"{name}: {type(exc).__name__}: {exc}"[:300]))
    timings[name] = round(time.perf_counter() - started, 3)
    return {k: v for k, v in out.items() if isinstance(v, DimensionResult)}


def assess(exam: ExamImages, sink: EvidenceSink | None = None,
           timings: dict[str, float] | None = None) -> dict[str, DimensionResult]:
    """Every dimension of :data:`DIMENSIONS` for one exam (never raises for bad input)."""
    from radqc.pipelines.image_qc.exam import modality_group

    sink = sink or EvidenceSink()
    timings = timings if timings is not None else {}
    group = modality_group(exam.modality)
    if group not in MEASURES or not exam.series:
        return _all(DIMENSIONS, NOT_ASSESSABLE, reason("no_modality", str(exam.modality or "")))
    params = measure_params(group, exam.standard_code)
    results: dict[str, DimensionResult] = {}
    for module, fn, _loader, _lead in MEASURES[group]:
        own = [d for d in DIMENSIONS if d != "artifact"]
        for dim, res in _call(module, fn, exam, params, sink, own, timings).items():
            if dim != "artifact" or "artifact" not in results:
                results[dim] = res
    art_params = dict(params.get("artifact") or {}) if isinstance(params.get("artifact"), Mapping) else {}
    art = _call(*ARTIFACT_MEASURE, exam, art_params, sink, ("artifact",), timings)
    if "artifact" in art:
        results["artifact"] = art["artifact"]
    for dim in DIMENSIONS:
        results.setdefault(dim, DimensionResult(value=NOT_ASSESSABLE, reason=reason("not_returned")))
        res = results[dim]
        if res.value not in VALUES[dim] and res.value not in (NOT_ASSESSABLE, NOT_APPLICABLE):
            # the value vocabulary is a public contract: an unknown value is never passed on
            results[dim] = DimensionResult(value=NOT_ASSESSABLE, reason=reason("bad_value", repr(res.value)[:80]),
                                           details={"measured": jsonable(res.to_dict())})
        elif res.value in (NOT_ASSESSABLE, NOT_APPLICABLE) and not res.reason:
            res.reason = reason("no_reason")
    if exam.standard_code is None:
        from radqc.pipelines.image_qc.rollup import vocab_item_suffices

        # a vocabulary item without a scoring standard (CT knee): the dimensions its measures
        # can still judge keep their values (rollup.yaml vocab_item_suffices)
        keep = vocab_item_suffices(group, exam.item_codes)
        for dim in item_dependent():
            if dim in keep:
                continue
            if results[dim].value != NOT_APPLICABLE:
                results[dim] = DimensionResult(value=NOT_ASSESSABLE, reason=reason("unknown_item"),
                                               details={"measured": jsonable(results[dim].to_dict())})
    return results


# ---------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """Plain JSON values (numpy scalars/arrays, dataclasses, tuples, non-finite floats -> None)."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return jsonable(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return jsonable(item())
    return str(value)


def dimension_json(dim: str, res: DimensionResult, points: Mapping[tuple[str, str], float]) -> dict[str, Any]:
    """``{"value": ..., **details, "reason"?, "findings"?, "confidence"?}`` (contract shape)."""
    out: dict[str, Any] = {"value": res.value}
    for k, v in (res.details or {}).items():
        if k != "value":
            out[k] = jsonable(v)
    if res.reason:
        out["reason"] = res.reason
    if res.findings:
        rows = []
        for f in res.findings:
            row = jsonable(f)
            row["points"] = points.get((dim, f.check_id), 0.0) if row.get("points") in (None, 0, 0.0) else row["points"]
            rows.append(row)
        out["findings"] = rows
    if res.confidence is not None:
        out["confidence"] = jsonable(res.confidence)
    return out


def build_result(exam: ExamImages, dims: Mapping[str, DimensionResult], *, item: Any,
                 series_rows: Sequence[Mapping[str, Any]], rule_qc: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The result JSON of one exam (docs/image-qc.md)."""
    from radqc.pipelines.image_qc.rollup import rollup

    rolled = rollup(dims, exam.standard_code, exam.modality, rule_qc=rule_qc)
    points = {(d["dimension"], d["check_id"]): d["points"] for d in rolled["deductions"] if d.get("source") == "image_qc"}
    out: dict[str, Any] = {"version": VERSION, "study_instance_uid": exam.study_uid, "modality": exam.modality,
                           "item": item.to_dict() if hasattr(item, "to_dict") else item}
    for dim in DIMENSIONS:
        out[dim] = dimension_json(dim, dims[dim], points)
    out["grade"] = rolled["grade"]
    out["score"] = rolled["score"]
    out["deductions"] = jsonable(rolled["deductions"])
    for key in ("standard", "grading", "total", "thresholds", "image_score", "image_grade", "combined", "not_assessed",
                "not_scored"):
        out[key] = jsonable(rolled[key])
    if "rule_qc" in rolled:
        out["rule_qc"] = jsonable(rolled["rule_qc"])
    if "grade_reason" in rolled:
        out["grade_reason"] = rolled["grade_reason"]
    out["series"] = [jsonable({k: r.get(k) for k in ("series_uid", "series_number", "modality", "description",
                                                        "category", "role", "plane", "sequence", "phase", "view",
                                                        "n_instances")})
                     for r in series_rows]
    out["evidence_images"] = sorted({e.get("image") for d in rolled["deductions"] for e in d.get("evidence") or []
                                     if isinstance(e, Mapping) and e.get("image")})
    if extra:
        out.update(jsonable(dict(extra)))
    return out


# ---------------------------------------------------------------- one folder


def records_lookup(path: str | Path, records: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Rule QC of the folder with its records (the hospital check's matching and facts), keyed
    by StudyInstanceUID: ``exam_items``, the rule-QC result (score, grade, failures, standard)."""
    from radqc.cli.cmd_check import engine_evaluator
    from radqc.qc_rules.hospital.check import run_check

    evaluator, version = engine_evaluator(None)
    checked = run_check(Path(path), [Path(r) for r in records], evaluator, ruleset_version=version)
    out: dict[str, dict[str, Any]] = {}
    for exam in checked.exams:
        items = exam.facts.get("exam_items") or []
        rule = {"score": exam.score, "grade": exam.grade, "failures": exam.failures, "standard": exam.standard,
                "ruleset_version": exam.ruleset_version}
        for uid in exam.source.get("study_instance_uids") or []:
            out[str(uid)] = {"exam_items": [str(i) for i in items if i], "rule_qc": rule,
                             "accession_number": exam.accession_number}
    return out


def analyse_files(files: Any, *, item: str | None = None, record: Mapping[str, Any] | None = None,
                  sink: EvidenceSink | None = None, image_model: bool = True,
                  log_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One exam read by ``scan`` -> result dict. ``item`` (``--item``) overrides the record's items."""
    from radqc.pipelines.image_qc.exam import exam_from_files

    started = time.perf_counter()
    step = log_step or (lambda _msg: None)
    timings: dict[str, float] = {}
    names: list[str] = [item] if item else list((record or {}).get("exam_items") or [])
    source = "--item" if item else ("records" if names else None)
    t0 = time.perf_counter()
    folder = exam_from_files(files, item_names=names, item_source=source, image_model=image_model)
    timings["series"] = round(time.perf_counter() - t0, 3)
    exam = folder.exam
    step(f"series / 序列: {len(exam.series)} classified / 已分类, modality / 模态 {exam.modality}, "
         f"item / 项目 {folder.item.code or '无法评估 / unknown'} ({timings['series']:.2f} s)")
    t0 = time.perf_counter()
    dims = assess(exam, sink, timings)
    timings["measures"] = round(time.perf_counter() - t0, 3)
    step(f"measures / 测量: {', '.join(f'{d}={dims[d].value}' for d in DIMENSIONS)} ({timings['measures']:.2f} s)")
    rule = (record or {}).get("rule_qc") if record else None
    result = build_result(exam, dims, item=folder.item, series_rows=folder.series_rows, rule_qc=rule,
                          extra={"warnings": folder.warnings, "instances": files.instances()})
    if record and record.get("accession_number"):
        result["accession_number"] = record["accession_number"]
    timings["total"] = round(time.perf_counter() - started, 3)
    result["timings"] = timings
    result["seconds"] = timings["total"]
    step(f"roll-up / 汇总: score / 得分 {result['score']}, grade / 等级 {result['grade']}")
    return result


def analyse_path(path: str | Path, *, item: str | None = None, records: Sequence[str | Path] = (),
                 sink_for: Callable[[str], EvidenceSink] | None = None, image_model: bool = True,
                 log_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every exam (StudyInstanceUID) under ``path``: ``{"path", "exams": [result...], "bad_files": [...]}``.

    ``sink_for(study_uid)`` gives each exam its evidence sink (the CLI: a folder per exam).
    A records file that cannot be read is reported in ``records_error`` and the exams are
    scored without rule QC (the item then comes from ``--item`` or the StudyDescription).
    """
    from radqc.pipelines.series.run import scan

    step = log_step or (lambda _msg: None)
    t0 = time.perf_counter()
    exams, bad = scan(path)
    step(f"scan / 读取: {len(exams)} exam(s) / 个检查, {len(bad)} bad file(s) / 个无法读取的文件 "
         f"({time.perf_counter() - t0:.2f} s)")
    lookup: dict[str, dict[str, Any]] = {}
    records_error = None
    if records:
        try:
            lookup = records_lookup(path, records)
            step(f"records / 记录: {len(lookup)} exam(s) matched / 个检查已匹配, rule QC / 规则质控 done")
        except Exception as exc:  # noqa: BLE001 - unusable records: image QC still runs
            records_error = f"records not usable / 记录无法使用: {type(exc).__name__}: {exc}"[:400]
            step(records_error)
    out = []
    for k, files in enumerate(sorted(exams, key=lambda e: e.study_uid)):
        if len(exams) > 1:
            step(f"[{k + 1}/{len(exams)}] exam / 检查 {files.study_uid}")
        sink = sink_for(files.study_uid) if sink_for else None
        record = lookup.get(files.study_uid)
        try:
            res = analyse_files(files, item=item, record=record, sink=sink, image_model=image_model, log_step=step)
        except Exception as exc:  # noqa: BLE001 - one exam that breaks is reported, the others go on
            log.exception("image QC of %s failed", files.study_uid)
            res = failed_result(files.study_uid, f"{type(exc).__name__}: {exc}")
        study_bad = [b for b in bad if b.get("study_uid") == files.study_uid]
        if study_bad:
            res["bad_files"] = study_bad
        out.append(res)
    result: dict[str, Any] = {"path": str(path), "exams": out, "bad_files": bad}
    if records_error:
        result["records_error"] = records_error
    return result


def failed_result(study_uid: str | None, detail: str) -> dict[str, Any]:
    """The result of an exam the pipeline itself could not process: every dimension 无法评估."""
    why = reason("measure_failed", detail[:300])
    out: dict[str, Any] = {"version": VERSION, "study_instance_uid": study_uid, "modality": None,
                           "item": {"code": None, "value": NOT_ASSESSABLE, "reason": why}}
    for dim in DIMENSIONS:
        out[dim] = {"value": NOT_ASSESSABLE, "reason": why}
    out.update(grade=None, score=None, deductions=[], error=why)
    return out
