"""Dimension results -> deductions, score and grade under the exam item's scoring standard.

Why here and not in each measure: the measures say *what* is wrong (a dimension value and its
findings, points 0); how much that costs is the item's scoring standard
(qc_rules/standards/<code>.yaml, its ``IQC-*`` items: 单项分值配置), the same standard rule QC
scores with, so one exam's final score can combine both (:func:`rollup` with ``rule_qc``).
Which standard item a dimension deducts under and what share of its points a value costs are
data (qc_rules/image_qc/rollup.yaml), never code.

Rules:

* one deduction per check id (the worst value's share; every finding's evidence kept), also
  across dimensions (:func:`merge_shared_checks`: radiograph noise and dose share IQC-EXPOSURE);
* a non-normal dimension without a finding still deducts (generic bilingual reason);
* 无法评估 / 不适用 never deduct (nothing is guessed); they are listed in ``not_assessed``;
* a check the item's standard does not list deducts general points only when its dimension is
  scored for the exam's class (rollup.yaml ``scored``), else it is listed in ``not_scored``;
* score = total − Σ points, floored at 0; grade = the best grade whose threshold the score
  reaches: 甲/乙/丙/丁 for radiographs, 3/2/1/0 (integers) for CT/MR; when no dimension at all
  could be assessed, image score and grade are None with ``grade_reason`` (with rule QC
  combined, the final score is rule QC's alone);
* unknown item: the default standard of the modality (total 100, the usual thresholds) with
  ``general`` points, so the rest is still scored and the result says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from radqc.pipelines.image_qc.types import (
    DIMENSIONS,
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    VALUE_EN,
    VALUES,
    DimensionResult,
    Finding,
)

ROLLUP_FILE = Path(__file__).resolve().parents[2] / "qc_rules" / "image_qc" / "rollup.yaml"


@lru_cache(maxsize=1)
def rollup_table() -> dict[str, Any]:
    """qc_rules/image_qc/rollup.yaml (check ids per dimension, general points, value shares)."""
    path = ROLLUP_FILE
    if not path.is_file():  # installed layout: qc_rules is the radqc.qc_rules package
        import importlib

        package = importlib.import_module("radqc.qc_rules")
        path = Path(str(package.__file__)).resolve().parent / "image_qc" / "rollup.yaml"
    with path.open(encoding="utf-8") as handle:
        return dict(yaml.safe_load(handle))


def normal_value(dimension: str) -> str:
    """The value meaning "nothing wrong" (the first of the dimension's vocabulary)."""
    return VALUES[dimension][0]


def is_deficient(dimension: str, value: str | None) -> bool:
    """A value that costs points: in the vocabulary and not the normal one."""
    return value is not None and value in VALUES.get(dimension, ()) and value != normal_value(dimension)


def share(dimension: str, value: str, kind: str | None = None) -> float:
    """The share of the check's points a value costs (rollup.yaml ``factors``), at most 1."""
    factors = rollup_table().get("factors") or {}
    row = factors.get(dimension) or {}
    out: Any = None
    if kind and isinstance(row.get("kind"), Mapping) and kind in row["kind"]:
        out = row["kind"][kind]
    elif value in row:
        out = row[value]
    elif "default" in row:
        out = row["default"]
    else:
        out = factors.get("default", 1.0)
    return max(0.0, min(1.0, float(out)))


def scored(dimension: str, qc_class: str | None) -> bool:
    """Whether a dimension is scored for the class (rollup.yaml ``scored``; unknown class: yes)."""
    table = rollup_table().get("scored") or {}
    dims = table.get(qc_class or "")
    return dims is None or dimension in dims


def vocab_item_suffices(qc_class: str | None, item_codes: Sequence[str] = ()) -> tuple[str, ...]:
    """Item-dependent dimensions that stay assessed when the ordered item is a known exam item
    (``ExamImages.item_codes``, radqc.vocab codes such as ``CT.KNEE.PLAIN``) without a scoring
    standard (rollup.yaml ``vocab_item_suffices``); none unless one of ``item_codes`` is an item
    of the exam's own class (an MR order on CT images stays unknown).

    Why: "unknown item" meant two things — an order nobody can read (nothing to measure
    against: 无法评估) and an item the vocabulary knows but the standards do not score (CT knee).
    In the second case the CT measures still have the part's landmarks and the modality's
    default limits, so reading 无法评估 would drop correct values (and their deductions)."""
    if not qc_class or not any(str(c).upper().startswith(f"{qc_class.upper()}.") for c in item_codes):
        return ()
    table = rollup_table().get("vocab_item_suffices") or {}
    dims = table.get(qc_class) if isinstance(table, Mapping) else None
    return tuple(str(d) for d in dims or ())


def check_for(dimension: str, finding_check: str | None, standard: Any | None,
              qc_class: str | None = None) -> tuple[str, float, str]:
    """(check id, full points, scope) a deduction of ``dimension`` is made under.

    The finding's own check id when the standard lists it, else the first check id of the
    dimension the standard lists (``scope`` "standard"); else, when the dimension is scored
    for the exam's class, the general points of the finding's (or the dimension's first)
    check id (``scope`` "general"); else no points (``scope`` "not_scored")."""
    table = rollup_table()
    ids = list(table.get("check_ids", {}).get(dimension) or [])
    candidates = ([finding_check] if finding_check else []) + [i for i in ids if i != finding_check]
    if standard is not None:
        for cid in candidates:
            pts = standard.points_for(cid)
            if pts is not None:
                return cid, float(pts), "standard"
    cid = finding_check or (ids[0] if ids else f"IQC-{dimension.upper()}")
    if not scored(dimension, qc_class):
        return cid, 0.0, "not_scored"
    general = table.get("general_points") or {}
    return cid, float(general.get(cid, general.get(ids[0], 0) if ids else 0)), "general"


def kind_check(dimension: str, kind: str | None) -> str | None:
    """The check id a defect kind names (rollup.yaml ``kind_check_ids``), for a finding without one."""
    if not kind:
        return None
    row = (rollup_table().get("kind_check_ids") or {}).get(dimension) or {}
    cid = row.get(kind) if isinstance(row, Mapping) else None
    return str(cid) if cid else None


def _kind(result: DimensionResult, finding: Finding | None = None) -> str | None:
    """The defect kind that refines a value's share: the dimension's ``details.kind``, else the
    finding's first evidence ``extra.kind`` (e.g. artifact metal / grid_lines, marker_wrong)."""
    if finding is not None:
        for ev in finding.evidence:
            extra = getattr(ev, "extra", None) if not isinstance(ev, Mapping) else ev.get("extra")
            if isinstance(extra, Mapping) and isinstance(extra.get("kind"), str):
                return str(extra["kind"])
    kind = result.details.get("kind") if isinstance(result.details, Mapping) else None
    return kind if isinstance(kind, str) else None


def _evidence_dict(ev: Any) -> dict[str, Any]:
    if is_dataclass(ev) and not isinstance(ev, type):
        return asdict(ev)
    return dict(ev) if isinstance(ev, Mapping) else {"measured": ev}


def _names(dimension: str) -> tuple[str, str]:
    names = (rollup_table().get("dimension_names") or {}).get(dimension) or [dimension, dimension]
    return str(names[0]), str(names[1])


def _generic_reason(dimension: str, value: str, reason: str | None) -> tuple[str, str]:
    if reason and " / " in reason:
        zh, en = reason.split(" / ", 1)
        return zh.strip(), en.strip()
    zh_name, en_name = _names(dimension)
    tmpl = rollup_table().get("generic_reason") or {"zh": "{dimension_zh}：{value}", "en": "{dimension_en}: {value_en}"}
    values = {"dimension_zh": zh_name, "dimension_en": en_name, "value": value, "value_en": VALUE_EN.get(value, value)}
    return str(tmpl["zh"]).format(**values), str(tmpl["en"]).format(**values)


def dimension_deductions(dimension: str, result: DimensionResult, standard: Any | None,
                         qc_class: str | None = None) -> list[dict[str, Any]]:
    """The deductions of one dimension (one per check id, worst share, all evidence kept)."""
    if not is_deficient(dimension, result.value):
        return []
    findings = [f for f in result.findings if isinstance(f, Finding)] or [
        Finding(check_id="", dimension=dimension, value=result.value, points=0.0,
                reason_zh=_generic_reason(dimension, result.value, result.reason)[0],
                reason_en=_generic_reason(dimension, result.value, result.reason)[1])]
    by_check: dict[str, dict[str, Any]] = {}
    for f in findings:
        value = f.value if is_deficient(dimension, f.value) else result.value
        kind = _kind(result, f)
        cid, full, scope = check_for(dimension, f.check_id or kind_check(dimension, kind), standard, qc_class)
        pts = round(full * share(dimension, value, kind), 2)
        row = by_check.get(cid)
        evidence = [_evidence_dict(e) for e in f.evidence]
        if row is None:
            by_check[cid] = {"check_id": cid, "dimension": dimension, "value": value, "points": pts,
                             "reason_zh": f.reason_zh, "reason_en": f.reason_en, "evidence": evidence, "scope": scope,
                             "source": "image_qc"}
            continue
        row["evidence"].extend(evidence)
        if pts > row["points"]:
            row.update(value=value, points=pts, reason_zh=f.reason_zh, reason_en=f.reason_en)
        elif f.reason_zh and f.reason_zh not in row["reason_zh"]:
            row["reason_zh"] += "；" + f.reason_zh
            row["reason_en"] += "; " + f.reason_en
    return list(by_check.values())


def merge_shared_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One deduction per check id per exam, also across dimensions.

    Why: two dimensions can deduct under the same standard item — on a radiograph both noise
    (under-exposure) and dose (over-exposure, exposure index not recorded) fall under
    IQC-EXPOSURE — and a standard item never costs more than its points. The row with the most
    points stays (its dimension and value); the other rows' reasons and evidence join it and their
    dimensions are listed in ``also``."""
    kept: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for row in rows:
        cid = str(row.get("check_id") or "")
        first = kept.get(cid)
        if not cid or first is None:
            if cid:
                kept[cid] = row
            out.append(row)
            continue
        main, other = (first, row) if float(first["points"]) >= float(row["points"]) else (row, first)
        merged = {**main, "evidence": list(main.get("evidence") or []) + list(other.get("evidence") or []),
                  "also": list(main.get("also") or []) + [{"dimension": other["dimension"], "value": other["value"],
                                                           "points": other["points"]}] + list(other.get("also") or [])}
        if other.get("reason_zh") and other["reason_zh"] not in str(main.get("reason_zh") or ""):
            merged["reason_zh"] = f"{main.get('reason_zh') or ''}；{other['reason_zh']}"
            merged["reason_en"] = f"{main.get('reason_en') or ''}; {other.get('reason_en') or ''}"
        out[next(i for i, r in enumerate(out) if r is first)] = merged
        kept[cid] = merged
    return out


def grade_value(grade: str, grading: str) -> str | int:
    """甲/乙/丙/丁 stay text; CT/MR grades are the integers 0-3 of the public contract."""
    if grading != "radiograph":
        try:
            return int(grade)
        except (TypeError, ValueError):
            return grade
    return grade


def standard_or_default(code: str | None, modality: str | None) -> tuple[Any, bool]:
    """(Standard, known): the item's standard, or the modality's default standard."""
    from radqc.pipelines.image_qc.exam import modality_group, standard
    from radqc.qc_rules.engine.model import default_standard

    std = standard(code)
    if std is not None:
        return std, True
    group = modality_group(modality)
    return default_standard("DX" if group == "DX" else modality), False


def rollup(dimensions: Mapping[str, DimensionResult], standard_code: str | None, modality: str | None, *,
           rule_qc: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Deductions, score and grade of one exam (see the module docstring).

    ``rule_qc``: a rule-QC result (``ExamResult.to_dict()``: ``failures`` with points, ``score``,
    ``grade``, ``ruleset_version``); its deductions join the image deductions under the same
    standard so the exam has one final score, and the parts stay visible
    (``image_score``/``image_grade``, ``rule_qc``).
    """
    from radqc.pipelines.image_qc.exam import modality_group

    std, known = standard_or_default(standard_code, modality)
    qc_class = modality_group(modality)
    deductions: list[dict[str, Any]] = []
    not_scored: list[dict[str, Any]] = []
    not_assessed: list[dict[str, Any]] = []
    for dim in DIMENSIONS:
        res = dimensions.get(dim)
        if res is None:
            continue
        if res.value in (NOT_ASSESSABLE, NOT_APPLICABLE):
            not_assessed.append({"dimension": dim, "value": res.value, "reason": res.reason})
            continue
        for row in dimension_deductions(dim, res, std, qc_class):
            (not_scored if row["scope"] == "not_scored" else deductions).append(row)
    deductions = merge_shared_checks(deductions)
    image_points = round(sum(d["points"] for d in deductions), 2)
    # nothing assessed (no image of a kind image QC reads, every measure failed): no grade is
    # better than the best grade — nothing is guessed
    assessed = any(res is not None and res.value in VALUES.get(dim, ()) for dim, res in dimensions.items())
    image_score: float | None = max(0.0, round(float(std.total) - image_points, 2)) if assessed else None
    out: dict[str, Any] = {
        "standard": std.item if known else None, "grading": std.grading, "total": float(std.total),
        "thresholds": {str(k): v for k, v in std.thresholds.items()},
        "image_score": image_score,
        "image_grade": grade_value(std.grade(image_score), std.grading) if image_score is not None else None,
        "deductions": deductions, "not_assessed": not_assessed, "not_scored": not_scored,
    }
    if not assessed:
        out["grade_reason"] = "没有可评估的影像质控维度 / no image-QC dimension could be assessed"
    if rule_qc is not None:
        rule_rows = [_rule_deduction(f, std) for f in rule_qc.get("failures") or [] if isinstance(f, Mapping)]
        rule_points = round(sum(r["points"] for r in rule_rows), 2)
        score: float | None = max(0.0, round(float(std.total) - image_points - rule_points, 2))
        out["deductions"] = deductions + rule_rows
        out["rule_qc"] = {"score": rule_qc.get("score"), "grade": rule_qc.get("grade"),
                          "standard": rule_qc.get("standard"), "ruleset_version": rule_qc.get("ruleset_version"),
                          "points": rule_points, "deductions": len(rule_rows)}
        out["combined"] = True
    else:
        score = image_score
        out["combined"] = False
    out["score"] = score
    out["grade"] = grade_value(std.grade(score), std.grading) if score is not None else None
    return out


def _rule_deduction(failure: Mapping[str, Any], std: Any) -> dict[str, Any]:
    """A rule-QC failure as a deduction row; re-pointed under the image standard when it lists the rule."""
    pts = std.points_for(str(failure.get("rule_id"))) if std is not None else None
    points = float(pts) if pts is not None else float(failure.get("points") or 0)
    return {"check_id": failure.get("rule_id"), "dimension": failure.get("dimension"), "value": None,
            "points": points, "reason_zh": failure.get("reason_zh") or failure.get("reason"),
            "reason_en": failure.get("reason_en") or failure.get("reason"),
            "evidence": [failure.get("evidence")] if failure.get("evidence") else [],
            "scope": failure.get("scope") or ("standard" if pts is not None else "general"), "source": "rule_qc"}


def score_values(values: Mapping[str, str | tuple[str, str | None]], standard_code: str | None,
                 modality: str | None) -> dict[str, Any]:
    """Score plain dimension values (``{dim: value}`` or ``{dim: (value, kind)}``) under a standard.

    For evaluation: the expert truth's dimension values scored with the same standard and
    the same shares give the grade an expert applying that standard would give, so grade
    agreement measures detection, not two different points tables."""
    dims: dict[str, DimensionResult] = {}
    for dim, v in values.items():
        value, kind = (v if isinstance(v, tuple) else (v, None))
        dims[dim] = DimensionResult(value=value, details={"kind": kind} if kind else {})
    res = rollup(dims, standard_code, modality)
    return {"score": res["score"], "grade": res["grade"], "deductions": res["deductions"]}
