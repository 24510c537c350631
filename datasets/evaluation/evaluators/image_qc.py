"""``radqc eval image-qc``: held-out accuracy of image QC (issue #7) against the generator's truth.

Truth is the generator's expert-style result (``expected_qc`` in every truth JSON, written by
``radqc.datasets.synthetic.clinical.imaging_qc.expected_result`` from the defects the renderer
*actually applied*). It uses an older value vocabulary for five dimensions (``ok``/``excess``/
``blur``/``deviation``/``complete``/``missing``/``above_reference``/``not_recorded``);
:data:`TRUTH_VALUE_MAP` maps it onto the fixed public vocabulary of ``radqc qc``
(``radqc.pipelines.image_qc.types.VALUES``). Only the dimensions the truth scores for an exam's
QC class are compared (CT: range, artifact, centring, noise, sharpness, reconstruction, window,
dose; MR: range, artifact, noise, sharpness, sequences; radiographs: range, positioning,
artifact, centring, noise, sharpness) plus any dimension a defect was applied to outside that set
(e.g. CT patient rotation -> positioning); a dimension the truth does not state is not guessed.

Metrics: per dimension accuracy, per-class recall and the confusion matrix (predicted
无法评估 / 不适用 are kept as their own columns and counted); grade exact agreement and
quadratic-weighted kappa, per grade scale (radiographs 甲/乙/丙/丁, CT/MR 0-3) and over both on
one ordinal scale (甲=3 ... 丁=0).

Which scoring made the truth's grade: generator 0.1.4+ grades by the exam item's scoring standard
(``expected_qc.scoring_version`` ``item-standard:<code>``, the same roll-up as the pipeline);
older sets by a placeholder points table (``placeholder-2026.1``). The report counts exams per
scoring version, always also gives the grade of the truth's values rolled up under the standard
the pipeline resolved (for old sets the only grade comparable with the pipeline's), and the
placeholder grade where a 0.1.4 truth keeps it for comparison. Every grade miss against that
roll-up is attributed to the dimensions whose points differ (:func:`attribute_miss`).

Without ``--data`` the evaluator renders its own held-out cases with ``radqc synth --profile qc``
from seeds 9201-9299, which no training or threshold tuning uses; ``--quick`` renders a few.
The pipeline is called through :func:`default_runner` (in-process ``radqc.pipelines.image_qc.run``
when it imports, else the ``radqc qc PATH --json`` CLI), so the truth side is testable alone.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radqc.datasets.evaluation.harness import EvalContext, EvalReport
from radqc.datasets.evaluation.metrics import Rate, classification, wilson_interval
from radqc.datasets.evaluation.registry import register

log = logging.getLogger(__name__)

#: Generator vocabulary (datasets/synthetic/spec.py QC_DIMENSIONS, clinical/data/qc.yaml) ->
#: the public ``radqc qc`` vocabulary. Values already in the public vocabulary (range,
#: positioning, artifact, centring) pass through unchanged.
TRUTH_VALUE_MAP: dict[str, dict[str, str]] = {
    "noise": {"ok": "正常", "excess": "异常"},
    "sharpness": {"ok": "正常", "blur": "异常"},
    "reconstruction": {"ok": "正常", "deviation": "异常"},
    "window": {"ok": "正常", "deviation": "异常"},
    "sequences": {"complete": "完整", "missing": "不完整"},
    "dose": {"ok": "正常", "above_reference": "异常", "not_recorded": "异常"},
}
#: Grades on one ordinal scale (worst 0 .. best 3) so both scales share one kappa.
GRADE_ORDINAL: dict[str, int] = {"甲": 3, "乙": 2, "丙": 1, "丁": 0, "3": 3, "2": 2, "1": 1, "0": 0}
GRADE_LABELS: dict[str, list[str]] = {"DX": ["丁", "丙", "乙", "甲"], "CT/MR": ["0", "1", "2", "3"]}
#: Held-out seeds (never used in training or tuning) and cases rendered per seed by default.
HELDOUT_SEEDS = range(9201, 9300)
#: Seeds whose figures have been published: a seed is read once for a final figure, then it is worn
#: (later changes were checked against it), so the default moves on to the next unread seed.
WORN_HELDOUT_SEEDS: tuple[int, ...] = (9201, 9202, 9203, 9204, 9205, 9206, 9207, 9208, 9209, 9210, 9211, 9212, 9213, 9214, 9215, 9216, 9217, 9218, 9219, 9220, 9221, 9222, 9223, 9224, 9225, 9226, 9227, 9228, 9229)
DEFAULT_HELDOUT_SEED = 9230
DEFAULT_CASES, QUICK_CASES = 100, 6
FAILED = "(失败 failed)"
NOT_ASSESSABLE, NOT_APPLICABLE = "无法评估", "不适用"


def truth_value(dimension: str, value: str) -> str:
    """One truth value in the public vocabulary (unknown values pass through, then show up
    as their own confusion column rather than being silently dropped)."""
    return TRUTH_VALUE_MAP.get(dimension, {}).get(value, value)


def grade_label(grade: Any) -> str | None:
    """A grade as its label text (CT/MR integers as '0'..'3'); None when absent."""
    if grade is None:
        return None
    if isinstance(grade, float) and grade.is_integer():
        grade = int(grade)
    return str(grade).strip()


@dataclass
class TruthCase:
    """What the evaluation needs from one truth file."""

    exam_key: str
    qc_class: str  # DX, CT or MR
    dimensions: dict[str, str]  # public vocabulary
    grade: str
    score: float | None = None
    exam_dir: Path | None = None
    records_line: dict[str, Any] | None = None
    defects: list[dict[str, Any]] = field(default_factory=list)
    #: how the truth was graded: ``item-standard:<code>`` (0.1.4+) or ``placeholder-2026.1``
    scoring_version: str = "placeholder-2026.1"
    standard: str | None = None  # the item standard the generator graded by (0.1.4+)
    placeholder_grade: str | None = None  # the placeholder table's grade a 0.1.4 truth keeps
    #: the standard exam items (检查项目) imaged, code -> Chinese name; a combined order has several
    items: dict[str, str] = field(default_factory=dict)

    @property
    def grade_scale(self) -> str:
        return "DX" if self.qc_class == "DX" else "CT/MR"


def truth_case(truth: Mapping[str, Any], root: Path | None = None) -> TruthCase | None:
    """The :class:`TruthCase` of one generator truth JSON; None when it has no ``expected_qc``
    (a set generated before issue #7, or a malformed exam with no images)."""
    expected = truth.get("expected_qc")
    if not isinstance(expected, Mapping) or not expected.get("dimensions"):
        return None
    dims = {d: truth_value(d, str(v)) for d, v in expected["dimensions"].items()}
    exam_dir = None
    record = None
    if root is not None and truth.get("export_dir"):
        exam_dir = root / str(truth["export_dir"]) / str(truth["exam_key"])
        record = _record_line(root, truth.get("records") or {})
    defects = list((truth.get("imaging") or {}).get("applied_defects") or [])
    placeholder = expected.get("placeholder")
    imaged = (truth.get("order") or {}).get("imaged_items") or []
    items = {str(i["code"]): str(i.get("name_zh") or i["code"]) for i in imaged if isinstance(i, Mapping) and i.get("code")}
    return TruthCase(
        exam_key=str(truth.get("exam_key")), qc_class=str(expected.get("qc_class")), dimensions=dims,
        grade=grade_label(expected.get("grade")) or "", score=expected.get("score"), exam_dir=exam_dir,
        records_line=record, defects=defects,
        scoring_version=str(expected.get("scoring_version") or "placeholder-2026.1"),
        standard=expected.get("standard") if isinstance(expected.get("standard"), str) else None,
        placeholder_grade=(grade_label(placeholder.get("grade")) if isinstance(placeholder, Mapping) else None),
        items=items,
    )


def _record_line(root: Path, ref: Mapping[str, Any]) -> dict[str, Any] | None:
    """The exam's HIS/RIS record (so ``radqc qc --records`` knows the ordered item)."""
    name, line = ref.get("exams_file"), ref.get("exam_line")
    if not name or not isinstance(line, int):
        return None
    try:
        with open(root / str(name), encoding="utf-8") as fh:
            for i, text in enumerate(fh, start=1):
                if i == line:
                    value = json.loads(text)
                    return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None
    return None


# ---------------------------------------------------------------- the pipeline under test

#: runner(exam_dir, exam_items, item) -> one result dict per study in the folder. ``exam_items``
#: are the order's item names (what ``--records`` would supply); ``item`` overrides them.
Runner = Callable[[Path, list[str] | None, str | None], list[dict[str, Any]]]


def _as_list(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict) and isinstance(result.get("exams"), list):
        result = result["exams"]  # analyse_path's {"path", "exams": [...], "bad_files"}
    if isinstance(result, list):
        return [r for r in result if isinstance(r, dict)]
    if isinstance(result, dict):
        return [result]
    to_dict = getattr(result, "to_dict", None)
    return [to_dict()] if callable(to_dict) else []


def _in_process_runner() -> Runner | None:
    """``radqc.pipelines.image_qc.run.analyse_files`` over ``series.run.scan`` (the same code as
    ``radqc qc``), given the order's items only: the records' rule QC is not run, since the
    truth grades the images alone."""
    try:
        from radqc.pipelines.image_qc import run as qc_run
        from radqc.pipelines.series.run import scan
    except ImportError:
        return None
    analyse_files = getattr(qc_run, "analyse_files", None)
    if not callable(analyse_files):
        return None

    def runner(path: Path, exam_items: list[str] | None, item: str | None) -> list[dict[str, Any]]:
        exams, _bad = scan(path)
        record = {"exam_items": list(exam_items or [])}
        return [analyse_files(files, item=item, record=record) for files in sorted(exams, key=lambda e: e.study_uid)]

    return runner


def cli_runner(path: Path, exam_items: list[str] | None, item: str | None) -> list[dict[str, Any]]:
    """``radqc qc PATH --json`` in a subprocess (the public contract, independent of internals).
    The order's first item is passed as ``--item`` (the records would add rule QC)."""
    cmd = [sys.executable, "-m", "radqc.cli.main", "qc", str(path), "--json"]
    chosen = item or (exam_items[0] if exam_items else None)
    if chosen is not None:
        cmd += ["--item", chosen]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0 and not proc.stdout.strip():
        raise RuntimeError(f"radqc qc exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return _as_list(json.loads(proc.stdout))


def default_runner() -> Runner:
    """In-process when ``radqc.pipelines.image_qc.run`` exists (models load once), else the CLI.
    ``RADQC_EVAL_QC_RUNNER=cli`` forces the CLI."""
    if os.environ.get("RADQC_EVAL_QC_RUNNER") != "cli":
        runner = _in_process_runner()
        if runner is not None:
            return runner
    return cli_runner


def predicted_grade(result: Mapping[str, Any]) -> Any:
    """The image-QC grade: ``image_grade`` when the result combined rule QC, else ``grade``."""
    return result.get("image_grade", result.get("grade"))


def predicted_value(result: Mapping[str, Any], dimension: str) -> str:
    """The value a result gives a dimension (``{"value": ...}`` or a bare string)."""
    entry = result.get(dimension)
    if isinstance(entry, Mapping):
        entry = entry.get("value")
    return str(entry) if entry is not None else NOT_ASSESSABLE


def result_standard(result: Mapping[str, Any]) -> str | None:
    """The scoring-standard code the pipeline resolved for an exam (None when it found none)."""
    code = result.get("standard")
    if not isinstance(code, str):
        item = result.get("item")
        code = item.get("code") if isinstance(item, Mapping) else None
    return code if isinstance(code, str) else None


def standard_rollup(case: TruthCase, result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The truth's dimension values (with the applied defect kinds) scored under the exam item's
    scoring standard (``rollup.score_values``: the same points and shares as the pipeline):
    ``{"score", "grade", "deductions"}``. The standard is the one the pipeline resolved from the
    order's items (deterministic input handling, not a measurement), else the truth's own."""
    try:
        from radqc.pipelines.image_qc.rollup import score_values
    except ImportError:
        return None
    code = result_standard(result) or case.standard
    kinds = {str(d.get("dimension")): (d.get("params") or {}).get("kind") for d in case.defects}
    values = {d: (v, kinds.get(d)) for d, v in case.dimensions.items()}
    try:
        return score_values(values, code, result.get("modality") or case.qc_class)
    except Exception:  # noqa: BLE001 - no standard grade is a missing figure, not a crash
        log.exception("standard grade of %s", case.exam_key)
        return None


def standard_grade(case: TruthCase, result: Mapping[str, Any]) -> str | None:
    """The grade of :func:`standard_rollup`: agreement with it measures detection alone (for sets
    made before generator 0.1.4 the truth's own grade also carries the difference between the
    placeholder points table and the item standards)."""
    scored = standard_rollup(case, result)
    return grade_label(scored.get("grade")) if scored is not None else None


def _points_by_check(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{dimension: {check id: points}}`` of the image-QC deductions that cost points."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.get("source", "image_qc") != "image_qc" or row.get("scope") == "not_scored":
            continue
        checks = out.setdefault(str(row.get("dimension")), {})
        cid = str(row.get("check_id") or "")
        checks[cid] = round(checks.get(cid, 0.0) + float(row.get("points") or 0.0), 2)
    return out


def attribute_miss(case: TruthCase, result: Mapping[str, Any], truth_rows: Iterable[Mapping[str, Any]]
                   ) -> dict[str, dict[str, Any]]:
    """Why the pipeline's grade differs from the truth rolled up under the same standard: every
    dimension whose deducted points differ, with ``points`` (pipeline minus truth: positive = the
    pipeline deducts more), the per-check differences and ``cause``: ``value`` (the dimension
    value differs: a detection error); with the same value, ``points`` (the same check costs
    other points: the kind that refines its share differs) and/or ``check`` (a check deducted
    on one side only: a finding the other side lacks, hidden by an agreeing dimension value, e.g.
    a false L/R-marker finding on a radiograph also rotated); or ``not_compared`` (the pipeline
    deducts on a dimension the truth does not state)."""
    truth_pts = _points_by_check(truth_rows)
    pred_pts = _points_by_check(result.get("deductions") or [])
    out: dict[str, dict[str, Any]] = {}
    for dim in sorted(set(truth_pts) | set(pred_pts)):
        t_checks, p_checks = truth_pts.get(dim, {}), pred_pts.get(dim, {})
        checks = {cid: round(p_checks.get(cid, 0.0) - t_checks.get(cid, 0.0), 2)
                  for cid in sorted(set(t_checks) | set(p_checks))}
        checks = {cid: d for cid, d in checks.items() if d != 0}
        diff = round(sum(p_checks.values()) - sum(t_checks.values()), 2)
        if diff == 0:
            continue
        truth = case.dimensions.get(dim)
        pred = predicted_value(result, dim)
        if truth is None:
            cause = "not_compared"
        elif truth != pred:
            cause = "value"
        else:
            parts = [("check" if (cid in t_checks) != (cid in p_checks) else "points") for cid in checks]
            cause = "+".join(sorted(set(parts))) or "points"
        out[dim] = {"points": diff, "truth": truth, "pred": pred, "cause": cause, "checks": checks}
    return out


def grade_at(result: Mapping[str, Any], score: float) -> str | None:
    """The grade a score gets under the thresholds the pipeline's result states (its standard)."""
    thresholds = result.get("thresholds")
    if not isinstance(thresholds, Mapping) or not thresholds:
        return None
    passed = [(float(v), str(k)) for k, v in thresholds.items() if isinstance(v, int | float) and score >= float(v)]
    return max(passed)[1] if passed else None


def corrected_alone(result: Mapping[str, Any], dims: Mapping[str, Mapping[str, Any]], truth_grade: str) -> list[str]:
    """The dimensions that alone turn a missed grade right when their points are the truth's
    (the pipeline's image score minus that dimension's difference, graded by its thresholds)."""
    score = result.get("image_score", result.get("score"))
    if not isinstance(score, int | float):
        return []
    total = float(result.get("total") or 100.0)
    out = []
    for dim, row in dims.items():
        fixed = min(total, max(0.0, float(score) + float(row["points"])))
        if grade_at(result, round(fixed, 2)) == truth_grade:
            out.append(dim)
    return out


def summarise_attribution(misses: list[dict[str, Any]]) -> dict[str, Any]:
    """``dimension -> grade misses it takes part in`` (all, alone, per QC class, by cause, and
    the points it moved), over the per-exam :func:`attribute_miss` rows."""
    by_dim: dict[str, dict[str, Any]] = {}
    unexplained = 0
    for miss in misses:
        dims = miss["dimensions"]
        if not dims:
            unexplained += 1
        for dim, row in dims.items():
            entry = by_dim.setdefault(dim, {"misses": 0, "alone": 0, "fixes": 0, "by_class": Counter(),
                                            "cause": Counter(), "points_more": 0.0, "points_less": 0.0})
            entry["misses"] += 1
            entry["alone"] += int(len(dims) == 1)
            entry["fixes"] += int(dim in (miss.get("fixed_by") or ()))
            entry["by_class"][miss["qc_class"]] += 1
            for cause in str(row["cause"]).split("+"):
                entry["cause"][cause] += 1
            key = "points_more" if row["points"] > 0 else "points_less"
            entry[key] = round(entry[key] + abs(row["points"]), 2)
    ordered = dict(sorted(by_dim.items(), key=lambda kv: (-kv[1]["misses"], kv[0])))
    for entry in ordered.values():
        entry["by_class"] = dict(sorted(entry["by_class"].items()))
        entry["cause"] = dict(entry["cause"].most_common())
    return {"misses": len(misses), "by_class": dict(Counter(m["qc_class"] for m in misses)),
            "no_points_difference": unexplained, "by_dimension": ordered}


#: Why a grade differs from the generator's, worst first (:func:`miss_cause`).
MISS_CAUSES = ("failed", "detection", "finding", "unscored_dimension", "truth_scoring", "unexplained")


def miss_cause(pred_grade: str | None, standard_grade: str | None, dims: Mapping[str, Mapping[str, Any]] | None
               ) -> str:
    """The class of one grade miss against the generator's grade (what can fix it, and where):

    * ``failed`` — the pipeline gave no grade;
    * ``detection`` — a dimension value differs from the truth's (the measure's owner);
    * ``finding`` — the values agree but a check deducts other points (an extra or missing
      finding under an agreeing value, or another kind's share: the measure or the roll-up);
    * ``unscored_dimension`` — the pipeline deducts on a dimension the truth does not state;
    * ``truth_scoring`` — the truth's own values rolled up under the standard the pipeline
      resolved give the pipeline's grade: the generator graded by another table (the placeholder
      table of an item without a standard) or another standard — nothing the images can fix;
    * ``unexplained`` — none of these (should not happen; read the exam).
    """
    if pred_grade is None:
        return "failed"
    if standard_grade is not None and pred_grade == standard_grade:
        return "truth_scoring"
    causes = {part for row in (dims or {}).values() for part in str(row.get("cause", "")).split("+")}
    if "value" in causes:
        return "detection"
    if causes & {"points", "check"}:
        return "finding"
    if "not_compared" in causes:
        return "unscored_dimension"
    return "unexplained"


# ---------------------------------------------------------------- scoring


@dataclass
class Scored:
    """Truth and prediction of one case, as :func:`score_cases` reads them."""

    case: TruthCase
    result: Mapping[str, Any] | None  # None = the pipeline failed on this exam
    error: str | None = None


def score_cases(scored: Iterable[Scored], report: EvalReport) -> EvalReport:
    """Fill ``report`` with per-dimension and grade metrics of ``scored`` cases."""
    truth_by_dim: dict[str, list[str]] = {}
    pred_by_dim: dict[str, list[str]] = {}
    by_class: dict[tuple[str, str], list[bool]] = {}
    grade_truth: dict[str, list[str]] = {"DX": [], "CT/MR": []}
    grade_pred: dict[str, list[str]] = {"DX": [], "CT/MR": []}
    ord_truth: list[str] = []
    ord_pred: list[str] = []
    special: Counter[str] = Counter()
    std_truth: list[str] = []
    std_pred: list[str] = []
    errors: Counter[str] = Counter()  # every dimension error by class and value pair (failures are capped)
    versions: Counter[str] = Counter()  # scoring of the truth grade: item-standard / placeholder-2026.1
    misses: list[dict[str, Any]] = []  # grade misses vs the standard roll-up, attributed
    causes: dict[str, dict[str, Any]] = {}  # grade misses vs the generator's grade, by cause class
    ph_truth: list[str] = []
    ph_pred: list[str] = []
    by_item: dict[str, dict[str, Any]] = {}  # per exam item: exams, dimension cells right/total, grades right
    cases = 0
    for s in scored:
        cases += 1
        case = s.case
        if s.result is None:
            report.counts["failed_exams"] = report.counts.get("failed_exams", 0) + 1
            report.fail(exam=case.exam_key, error=s.error or "no result")
        result = s.result or {}
        mismatches: dict[str, dict[str, Any]] = {}
        for dim, truth in case.dimensions.items():
            pred = predicted_value(result, dim) if s.result is not None else FAILED
            truth_by_dim.setdefault(dim, []).append(truth)
            pred_by_dim.setdefault(dim, []).append(pred)
            by_class.setdefault((dim, case.qc_class), []).append(pred == truth)
            if pred in (NOT_ASSESSABLE, NOT_APPLICABLE):
                special[f"{dim}:{pred}"] += 1
            if pred != truth:
                mismatches[dim] = {"truth": truth, "pred": pred}
                errors[f"{case.qc_class} {dim}: {truth} -> {pred}"] += 1
        pg = grade_label(predicted_grade(result)) if s.result is not None else None
        pg_text = pg if pg is not None else FAILED
        grade_truth[case.grade_scale].append(case.grade)
        grade_pred[case.grade_scale].append(pg_text)
        if case.grade in GRADE_ORDINAL and pg in GRADE_ORDINAL:
            ord_truth.append(str(GRADE_ORDINAL[case.grade]))
            ord_pred.append(str(GRADE_ORDINAL[str(pg)]))
        else:
            report.counts["grade_not_ordinal"] = report.counts.get("grade_not_ordinal", 0) + 1
        versions[case.scoring_version.split(":", 1)[0]] += 1
        rolled = standard_rollup(case, s.result) if s.result is not None and case.grade else None
        std = grade_label(rolled.get("grade")) if rolled is not None else None
        if std in GRADE_ORDINAL:
            std_truth.append(str(GRADE_ORDINAL[str(std)]))
            std_pred.append(str(GRADE_ORDINAL[str(pg)]) if pg in GRADE_ORDINAL else FAILED)
            if pg != std and s.result is not None and rolled is not None:
                dims = attribute_miss(case, s.result, rolled.get("deductions") or [])
                misses.append({"exam": case.exam_key, "qc_class": case.qc_class, "truth": std, "pred": pg_text,
                               "dimensions": dims, "fixed_by": corrected_alone(s.result, dims, str(std))})
        if case.standard and s.result is not None and result_standard(s.result) != case.standard:
            report.counts["standard_differs_from_truth"] = report.counts.get("standard_differs_from_truth", 0) + 1
        if case.placeholder_grade in GRADE_ORDINAL:
            ph_truth.append(str(GRADE_ORDINAL[str(case.placeholder_grade)]))
            ph_pred.append(str(GRADE_ORDINAL[str(pg)]) if pg in GRADE_ORDINAL else FAILED)
        if case.grade and pg_text != case.grade:
            dims_now = (attribute_miss(case, s.result, rolled.get("deductions") or [])
                        if s.result is not None and rolled is not None else None)
            cause = miss_cause(pg, std, dims_now)
            entry = causes.setdefault(cause, {"misses": 0, "by_class": Counter(), "exams": []})
            entry["misses"] += 1
            entry["by_class"][case.qc_class] += 1
            entry["exams"].append(case.exam_key)
        for code, name in case.items.items():
            row = by_item.setdefault(code, {"name": name, "qc_class": case.qc_class, "exams": 0, "cells": 0,
                                            "cells_right": 0, "grades_right": 0, "exams_all_right": 0})
            right = sum(1 for dim in case.dimensions if dim not in mismatches)
            row["exams"] += 1
            row["cells"] += len(case.dimensions)
            row["cells_right"] += right
            row["grades_right"] += int(pg_text == case.grade)
            row["exams_all_right"] += int(right == len(case.dimensions))
        if pg_text != case.grade:
            mismatches["grade"] = {"truth": case.grade, "pred": pg_text, "score_truth": case.score,
                                   "score_pred": result.get("image_score", result.get("score"))}
        if mismatches and s.result is not None:
            report.fail(exam=case.exam_key, qc_class=case.qc_class, mismatches=mismatches,
                        defects=[{k: d.get(k) for k in ("dimension", "value")} | {"kind": (d.get("params") or {}).get("kind")}
                                 for d in case.defects])
    report.n += cases
    for dim, truths in truth_by_dim.items():
        preds = pred_by_dim[dim]
        labels = _labels(dim, truths, preds)
        report.classifications[f"dim:{dim}"] = classification(dim, truths, preds, labels)
        report.rates[f"dim:{dim}"] = Rate(sum(t == p for t, p in zip(truths, preds, strict=True)), len(truths))
    for (dim, qc_class), hits in sorted(by_class.items()):
        report.rates[f"dim:{dim}@{qc_class}"] = Rate(sum(hits), len(hits))
    for scale, truths in grade_truth.items():
        if not truths:
            continue
        preds = grade_pred[scale]
        labels = GRADE_LABELS[scale] + sorted({p for p in preds if p not in GRADE_LABELS[scale]})
        # kappa over the ordinal labels only (a failed/missing grade has no place on the scale)
        pairs = [(t, p) for t, p in zip(truths, preds, strict=True) if p in GRADE_LABELS[scale]]
        result_cls = classification(f"grade {scale}", truths, preds, labels)
        if pairs:
            ordinal_cls = classification(f"grade {scale}", [t for t, _ in pairs], [p for _, p in pairs],
                                         GRADE_LABELS[scale], ordinal=True)
            result_cls.kappa, result_cls.kappa_weights = ordinal_cls.kappa, ordinal_cls.kappa_weights
        report.classifications[f"grade:{scale}"] = result_cls
        report.rates[f"grade_exact:{scale}"] = Rate(sum(t == p for t, p in zip(truths, preds, strict=True)), len(truths))
    all_truth = grade_truth["DX"] + grade_truth["CT/MR"]
    all_pred = grade_pred["DX"] + grade_pred["CT/MR"]
    if all_truth:
        report.rates["grade_exact"] = Rate(sum(t == p for t, p in zip(all_truth, all_pred, strict=True)), len(all_truth))
    if ord_truth:
        report.classifications["grade:all"] = classification("grade (甲=3..丁=0)", ord_truth, ord_pred,
                                                             ["0", "1", "2", "3"], ordinal=True)
    _grade_rows(report, "vs_standard", "grade vs the truth rolled up under the item standard (甲=3..丁=0)",
                std_truth, std_pred)
    _grade_rows(report, "vs_placeholder", "grade vs the placeholder table the truth keeps (甲=3..丁=0)",
                ph_truth, ph_pred)
    for key, count in sorted(special.items()):
        report.counts[key] = count
    report.details["errors"] = dict(errors.most_common())
    report.details["by_item"] = {code: {**row, "dimension_accuracy": row["cells_right"] / row["cells"] if row["cells"] else None,
                                        "grade_exact": row["grades_right"] / row["exams"],
                                        "grade_exact_ci95": wilson_interval(row["grades_right"], row["exams"])}
                                 for code, row in sorted(by_item.items())}
    report.details["scoring_versions"] = dict(versions.most_common())
    report.details["grade_misses"] = misses
    report.details["grade_attribution"] = summarise_attribution(misses)
    report.details["grade_miss_causes"] = {c: {**causes[c], "by_class": dict(sorted(causes[c]["by_class"].items()))}
                                           for c in MISS_CAUSES if c in causes}
    return report


def truth_scoring(report: EvalReport) -> str:
    """How the truth grades of a report were made, for the grade rows' labels."""
    versions = report.details.get("scoring_versions") or {}
    if set(versions) == {"item-standard"}:
        return "item standard"
    if set(versions) <= {"placeholder-2026.1"}:
        return "placeholder table"
    return "mixed: " + ", ".join(f"{k} {v}" for k, v in versions.items())


def _labels(dim: str, truths: list[str], preds: list[str]) -> list[str]:
    try:
        from radqc.pipelines.image_qc.types import VALUES

        base = list(VALUES.get(dim, ()))
    except ImportError:  # pragma: no cover - the contract module is part of this issue
        base = []
    extra = sorted({v for v in truths + preds if v not in base})
    return base + extra


def _grade_rows(report: EvalReport, name: str, title: str, truth: list[str], pred: list[str]) -> None:
    """``grade_exact_<name>`` (failed exams count as wrong) and ``grade_<name>:all`` (answered only)."""
    if not truth:
        return
    report.rates[f"grade_exact_{name}"] = Rate(sum(t == p for t, p in zip(truth, pred, strict=True)), len(truth))
    pairs = [(t, p) for t, p in zip(truth, pred, strict=True) if p != FAILED]
    if pairs:
        report.classifications[f"grade_{name}:all"] = classification(
            title, [t for t, _ in pairs], [p for _, p in pairs], ["0", "1", "2", "3"], ordinal=True)


def summary(report: EvalReport) -> dict[str, Any]:
    """The headline figures (what docs/image-qc-accuracy.md quotes) of a scored report."""
    dims = {k.split(":", 1)[1]: r.value for k, r in report.rates.items() if k.startswith("dim:") and "@" not in k}
    kappa = report.classifications.get("grade:all")
    return {
        "n": report.n,
        "dimension_accuracy": dims,
        "min_dimension_accuracy": min((v for v in dims.values() if v is not None), default=None),
        "grade_exact": report.rates["grade_exact"].value if "grade_exact" in report.rates else None,
        "grade_kappa_quadratic": kappa.kappa if kappa is not None else None,
        "grade_exact_vs_standard": (report.rates["grade_exact_vs_standard"].value
                                    if "grade_exact_vs_standard" in report.rates else None),
        "grade_kappa_vs_standard": (report.classifications["grade_vs_standard:all"].kappa
                                    if "grade_vs_standard:all" in report.classifications else None),
        "grade_exact_vs_placeholder": (report.rates["grade_exact_vs_placeholder"].value
                                       if "grade_exact_vs_placeholder" in report.rates else None),
        "truth_scoring": report.details.get("scoring_versions"),
        "grade_miss_causes": {c: e["misses"] for c, e in (report.details.get("grade_miss_causes") or {}).items()},
        "targets": {"dimension": 0.95, "grade_exact": 0.90, "kappa": 0.80},
        "items": item_coverage(report),
    }


#: The tenders' per-item bar: QC accuracy and AI-vs-expert agreement >= 90% on >= 25 exam items.
ITEM_TARGET, ITEM_MIN_EXAMS, ITEMS_REQUIRED = 0.90, 5, 25


def item_coverage(report: EvalReport) -> dict[str, Any]:
    """How many exam items the set shows and how many of them meet the tenders' bar.

    An item counts as *shown* with at least ``ITEM_MIN_EXAMS`` exams (fewer say nothing about an
    item); it *meets* the bar when both its dimension accuracy and its grade agreement are >= 90%."""
    rows = report.details.get("by_item") or {}
    shown = {c: r for c, r in rows.items() if r["exams"] >= ITEM_MIN_EXAMS}
    meets = [c for c, r in shown.items() if (r["dimension_accuracy"] or 0) >= ITEM_TARGET and r["grade_exact"] >= ITEM_TARGET]
    below = sorted(set(shown) - set(meets))
    # Sampling: an item read from 10 exams carries a wide interval. "Clearly below" items have a
    # grade interval wholly under the bar (fixing them needs better QC, not more exams); items
    # "shown with confidence" have the interval's lower end at the bar or above.
    bounds = {c: _grade_interval(r) for c, r in shown.items()}
    return {"items": len(rows), "items_shown": len(shown), "items_meeting": len(meets),
            "min_exams": ITEM_MIN_EXAMS, "target": ITEM_TARGET, "required": ITEMS_REQUIRED,
            "below": below,
            "below_clearly": [c for c in below if bounds[c][1] < ITEM_TARGET],
            "meeting_with_confidence": sorted(c for c in meets if bounds[c][0] >= ITEM_TARGET)}


def exams_to_show(target: float, misses: int) -> int:
    """The fewest exams, with ``misses`` grade misses among them, whose 95% interval clears ``target``."""
    n = misses + 1
    while (wilson_interval(n - misses, n) or (0.0, 0.0))[0] < target:
        n += 1
    return n


def _grade_interval(row: dict[str, Any]) -> tuple[float, float]:
    """The row's 95% grade-agreement interval (recomputed for reports saved before it was stored)."""
    ci = row.get("grade_exact_ci95") or wilson_interval(row["grades_right"], row["exams"])
    return (float(ci[0]), float(ci[1]))


def markdown(report: EvalReport, title: str) -> str:
    """Tables of a scored report for docs/image-qc-accuracy.md (so the doc's figures are the
    evaluator's output, not retyped): per dimension accuracy and per-class recall, per QC
    class, grades, and the 无法评估/不适用 counts."""
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}%"

    lines = [f"### {title}", "", f"{report.n} exams. {' '.join(report.notes)}", "",
             "| dimension | accuracy | n | per-class recall (support) | by class |", "| --- | ---: | ---: | --- | --- |"]
    for key, cls in report.classifications.items():
        if not key.startswith("dim:"):
            continue
        dim = key[4:]
        rate = report.rates[key]
        recall = ", ".join(f"{lab} {pct(c.recall)} ({c.support})" for lab, c in cls.per_class.items() if c.support)
        by = ", ".join(f"{k.split('@')[1]} {pct(r.value)} ({r.denominator})" for k, r in sorted(report.rates.items())
                       if k.startswith(f"dim:{dim}@"))
        lines.append(f"| {dim} | {pct(rate.value)} | {rate.denominator} | {recall} | {by} |")
    grades = [(k, c) for k, c in report.classifications.items() if k.startswith("grade")]
    if grades:
        lines += ["", "| grade | exact agreement | n | quadratic-weighted kappa |", "| --- | ---: | ---: | ---: |"]
        for key, cls in grades:
            scale = key.split(":", 1)[1]
            if key.startswith("grade_vs_standard"):
                scale, rate = "all, vs the truth rolled up under the item standard", report.rates.get("grade_exact_vs_standard")
            elif key.startswith("grade_vs_placeholder"):
                scale = "all, vs the placeholder table (kept in the truth for comparison)"
                rate = report.rates.get("grade_exact_vs_placeholder")
            elif scale == "all":
                scale, rate = f"all, vs the generator's grade ({truth_scoring(report)})", report.rates.get("grade_exact")
            else:
                rate = report.rates.get(f"grade_exact:{scale}")
            kappa = "—" if cls.kappa is None else f"{cls.kappa:.3f}"
            lines.append(f"| {scale} | {pct(rate.value if rate else None)} | {cls.n} | {kappa} |")
    if "score_drops_vs_base" in report.rates:
        r = report.rates["score_drops_vs_base"]
        lines += ["", f"Defect variants scoring lower than their untouched base: {r.numerator}/{r.denominator} ({pct(r.value)})."]
    versions = report.details.get("scoring_versions") or {}
    if versions:
        lines += ["", "Truth grades by scoring: " + ", ".join(f"{k} {v}" for k, v in versions.items())
                  + (f"; the pipeline resolved another standard than the generator for "
                     f"{report.counts['standard_differs_from_truth']} exams" if report.counts.get("standard_differs_from_truth")
                     else "") + "."]
    lines += item_markdown(report)
    lines += attribution_markdown(report)
    errors = report.details.get("errors") or {}
    if errors:
        lines += ["", "Most frequent dimension errors (class dimension: truth -> predicted, count): "
                  + "; ".join(f"{k} ({v})" for k, v in list(errors.items())[:12]) + "."]
    special = {k: v for k, v in report.counts.items() if ":" in k}
    if special:
        lines += ["", "Predicted 无法评估 / 不适用 where the truth has a value: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(special.items())) + "."]
    return "\n".join(lines)


def item_markdown(report: EvalReport) -> list[str]:
    """The per-exam-item table (检查项目): the tenders judge accuracy item by item."""
    rows = report.details.get("by_item") or {}
    if not rows:
        return []
    cov = item_coverage(report)
    lines = ["", f"Per exam item (检查项目; an exam of a combined order counts for each of its items): "
             f"{cov['items']} items, {cov['items_shown']} with >= {cov['min_exams']} exams, "
             f"{cov['items_meeting']} of those with dimension accuracy and grade agreement both >= "
             f"{100 * cov['target']:.0f}% (tenders: >= {cov['required']} items).",
             "", f"Sampling (95% Wilson interval of each item's grade agreement): "
             f"{len(cov['below_clearly'])} of the {len(cov['below'])} items below the bar lie wholly under "
             f"{100 * cov['target']:.0f}%; {len(cov['meeting_with_confidence'])} items meet it with the "
             f"interval's lower end at {100 * cov['target']:.0f}% or above (that takes >= {exams_to_show(cov['target'], 0)} "
             f"exams with none missed, or >= {exams_to_show(cov['target'], 1)} with one).", "",
             "| item | 名称 | class | exams | dimension accuracy | all dimensions right | grade exact | grade exact 95% CI |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for code, r in rows.items():
        acc = "—" if r["dimension_accuracy"] is None else f"{100 * r['dimension_accuracy']:.1f}%"
        lo, hi = _grade_interval(r)
        lines.append(f"| {code} | {r['name']} | {r['qc_class']} | {r['exams']} | {acc} | "
                     f"{r['exams_all_right']}/{r['exams']} | {100 * r['grade_exact']:.1f}% | "
                     f"{100 * lo:.0f}–{100 * hi:.0f}% |")
    return lines


def attribution_markdown(report: EvalReport) -> list[str]:
    """The grade-miss attribution table: which dimension's points moved the missed grades."""
    lines: list[str] = []
    causes = report.details.get("grade_miss_causes") or {}
    if causes:
        lines += ["", "Grade misses vs the generator's grade by cause (detection: a dimension value differs; "
                  "finding: values agree, a check's points differ; truth_scoring: the truth's values under the "
                  "pipeline's standard give the pipeline's grade): "
                  + "; ".join(f"{c} {e['misses']} (" + ", ".join(f"{k} {v}" for k, v in e["by_class"].items()) + ")"
                              for c, e in causes.items()) + "."]
    att = report.details.get("grade_attribution") or {}
    if not att.get("misses"):
        return lines
    by_class = ", ".join(f"{k} {v}" for k, v in sorted((att.get("by_class") or {}).items()))
    lines += ["", f"Grade misses vs the truth rolled up under the item standard: {att['misses']} ({by_class}); "
             "each is attributed to every dimension whose deducted points differ (a miss can have several).", "",
             "| dimension | grade misses | alone | right if this alone were right | by class "
             "| cause (value / points / check / not compared) | points the pipeline deducted more / less |",
             "| --- | ---: | ---: | ---: | --- | --- | --- |"]
    for dim, e in (att.get("by_dimension") or {}).items():
        cause = e.get("cause") or {}
        lines.append(f"| {dim} | {e['misses']} | {e['alone']} | {e['fixes']} | "
                     + ", ".join(f"{k} {v}" for k, v in (e.get("by_class") or {}).items())
                     + f" | {cause.get('value', 0)} / {cause.get('points', 0)} / {cause.get('check', 0)} / "
                     f"{cause.get('not_compared', 0)} | "
                     f"{e['points_more']:g} / {e['points_less']:g} |")
    if att.get("no_points_difference"):
        lines.append(f"| (no dimension's points differ) | {att['no_points_difference']} | | | | | |")
    return lines


# ---------------------------------------------------------------- the evaluation


def evaluate_folder(root: Path, runner: Runner | None = None, limit: int | None = None,
                    report: EvalReport | None = None, progress: Callable[[str], None] | None = None) -> EvalReport:
    """Run image QC over every exam of a generated set at ``root`` and score it."""
    runner = runner or default_runner()
    report = report or EvalReport(stage="image-qc", n=0, unit="exam")
    from radqc.datasets.synthetic.generate import iter_truth

    cases = [c for c in (truth_case(t, root) for t in iter_truth(root)) if c is not None]
    if limit:
        cases = cases[:limit]
    scored: list[Scored] = []
    for i, case in enumerate(cases):
        if progress:
            progress(f"[{i + 1}/{len(cases)}] {case.exam_key}")
        if case.exam_dir is None or not case.exam_dir.is_dir():
            scored.append(Scored(case, None, "exam folder missing"))
            continue
        items = [str(x) for x in (case.records_line or {}).get("exam_items") or []]
        try:
            results = runner(case.exam_dir, items, None)
        except Exception as exc:  # noqa: BLE001 - one exam failing is a measured failure, not a crash
            log.exception("image QC failed on %s", case.exam_key)
            scored.append(Scored(case, None, f"{type(exc).__name__}: {exc}"))
            continue
        scored.append(Scored(case, results[0] if results else None, None if results else "no result"))
        if len(results) > 1:
            report.counts["exams_with_several_results"] = report.counts.get("exams_with_several_results", 0) + 1
        seconds = results[0].get("seconds") if results else None
        if isinstance(seconds, int | float):
            report.details.setdefault("seconds_per_exam", []).append(round(float(seconds), 3))
    score_cases(scored, report)
    report.counts["exams"] = len(cases)
    return report


def evaluate_variants(root: Path, runner: Runner | None = None, report: EvalReport | None = None,
                      progress: Callable[[str], None] | None = None) -> EvalReport:
    """Real-derived accuracy: run image QC over the variants written by
    :mod:`radqc.datasets.real_variants` and score the dimensions each variant controls.

    No grade truth exists for a real image, so instead of grade agreement this reports how
    often a defect variant scored lower than its untouched base (``score_drops``)."""
    from radqc.datasets.real_variants.make import iter_variants

    runner = runner or default_runner()
    report = report or EvalReport(stage="image-qc", n=0, unit="exam")
    variants = iter_variants(root)
    scored: list[Scored] = []
    scores: dict[str, float | None] = {}
    for i, v in enumerate(variants):
        if progress:
            progress(f"[{i + 1}/{len(variants)}] {v['variant']}")
        case = TruthCase(exam_key=str(v["variant"]), qc_class="DX" if v["modality"] in ("CR", "DX") else v["modality"],
                         dimensions=dict(v["truth"]), grade="", exam_dir=Path(v["path"]))
        try:
            results = runner(Path(v["path"]), [str(v["item"])], None)
        except Exception as exc:  # noqa: BLE001 - measured failure, not a crash
            log.exception("image QC failed on variant %s", v["variant"])
            scored.append(Scored(case, None, f"{type(exc).__name__}: {exc}"))
            continue
        result = results[0] if results else None
        scored.append(Scored(case, result, None if result else "no result"))
        value = (result or {}).get("image_score", (result or {}).get("score"))
        scores[str(v["variant"])] = float(value) if isinstance(value, int | float) else None
        report.details.setdefault("variants", []).append({
            "variant": v["variant"], "truth": v["truth"], "details": v.get("details"),
            "predicted": {d: predicted_value(result or {}, d) for d in v["truth"]}, "score": scores[str(v["variant"])],
        })
    _score_dimensions_only(scored, report)
    drops = total = 0
    for name, value in scores.items():
        base = scores.get(name.split("_", 1)[0] + "_base")
        if name.endswith("_base") or base is None or value is None:
            continue
        total += 1
        drops += int(value < base)
    if total:
        report.rates["score_drops_vs_base"] = Rate(drops, total)
    report.notes.append(f"REAL-DERIVED: {len(variants)} variants of the real samples ({root}); only the dimensions "
                        "each variant controls are scored; no grade truth exists for real images")
    return report


def _score_dimensions_only(scored: list[Scored], report: EvalReport) -> None:
    """:func:`score_cases` without the grade part (cases with no grade truth)."""
    tmp = EvalReport(stage=report.stage, n=0, unit=report.unit)
    score_cases(scored, tmp)
    report.n += tmp.n
    report.classifications.update({k: v for k, v in tmp.classifications.items() if k.startswith("dim:")})
    report.rates.update({k: v for k, v in tmp.rates.items() if k.startswith("dim:")})
    report.counts.update({k: v for k, v in tmp.counts.items() if k != "grade_not_ordinal"})
    for f in tmp.failures:
        if isinstance(f.get("mismatches"), dict):
            f = {**f, "mismatches": {k: v for k, v in f["mismatches"].items() if k != "grade"}}
            if not f["mismatches"]:
                continue
        report.fail(**f)


def render_heldout(out: Path, n: int, seed: int = DEFAULT_HELDOUT_SEED) -> Path:
    """Render ``n`` held-out QC exams (``--profile qc``) from ``seed`` into ``out``."""
    if seed not in HELDOUT_SEEDS:
        raise ValueError(f"seed {seed} is not a held-out image-QC seed (9201-9299)")
    from radqc.datasets.synthetic.generate import generate_set

    generate_set(out, n, seed, "qc", "small", force=True)
    return out


def _is_variant_set(root: Path) -> bool:
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("schema", "")).startswith("radqc.real_variant/")


@register("image-qc", "Image QC: per-dimension accuracy/recall/confusion and grade agreement (exact, quadratic kappa) "
          "vs the generator's expected_qc; renders a held-out seed (--seed, 9201-9299) without --data",
          requires=("radqc.pipelines.image_qc.types",), needs_data=False)
def evaluate(ctx: EvalContext) -> EvalReport:
    quick = bool(ctx.options.get("quick"))
    cases = ctx.options.get("cases")
    report = EvalReport(stage="image-qc", n=0, unit="exam")
    if (ctx.data / "manifest.json").is_file() and _is_variant_set(ctx.data):
        evaluate_variants(ctx.data, report=report)
        report.details["summary"] = summary(report)
        return report
    if (ctx.data / "manifest.json").is_file():
        manifest = ctx.manifest
        seed = (manifest.get("set") or manifest).get("seed") if isinstance(manifest, dict) else None
        if isinstance(seed, int) and not (9200 <= seed < 9300 or 8200 <= seed < 8300):
            report.notes.append(f"data seed {seed} is outside the image-QC validation/held-out seeds (82xx/92xx)")
        report.notes.append(f"data: {ctx.data} (synthetic, generator truth expected_qc)")
        evaluate_folder(ctx.data, limit=(QUICK_CASES if quick else cases), report=report)
        report.details["summary"] = summary(report)
        return report
    n = int(cases or (QUICK_CASES if quick else DEFAULT_CASES))
    seed = int(ctx.options.get("seed") or DEFAULT_HELDOUT_SEED)
    with tempfile.TemporaryDirectory(prefix="radqc-eval-qc-heldout-") as tmp:
        root = render_heldout(Path(tmp) / "set", n, seed)
        report.notes.append(f"synthetic held-out: {n} exams rendered with radqc synth --profile qc --seed "
                            f"{seed} (seeds 9201-9299 are never used for training or tuning)")
        if seed in WORN_HELDOUT_SEEDS:
            report.notes.append(f"seed {seed} has been read for published figures before (worn): "
                                f"a figure on it is not a fresh held-out figure")
        evaluate_folder(root, report=report)
    report.details["summary"] = summary(report)
    return report
