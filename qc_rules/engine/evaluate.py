"""Evaluate a ruleset: one exam (:func:`evaluate_exam`) or many at once (:func:`evaluate_batch`).

Both paths run the *same* compiled closures, so they cannot disagree. The batch path is fast
because exam data repeats: for each rule it factorises the columns the rule reads (once per
column per batch, shared by all rules), finds the distinct combinations of those values with
numpy, evaluates the rule once per distinct combination, and scatters the outcome back to
every row. Pure-function results are memoised across rules (``sex_terms(findings)`` is
computed once per distinct report text however many rules call it). Work is split across
worker processes by rule (``workers``), each forked after the columns are factorised.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radqc.qc_rules.engine.expr import STEP_BUDGET, EvalError, Scope
from radqc.qc_rules.engine.model import (
    PLACEHOLDER,
    ExamResult,
    Failure,
    Rule,
    Ruleset,
    Standard,
    default_standard,
)
from radqc.qc_rules.engine.names import LIST_FACTS

EVIDENCE_TEXT_LIMIT = 200
MEMO_LIMIT = 300_000


# -- applicability ------------------------------------------------------------------------------

def exam_modalities(facts: Mapping[str, Any]) -> set[str]:
    out = set()
    if facts.get("modality"):
        out.add(str(facts["modality"]).upper())
    for m in facts.get("dicom_modalities") or ():
        if m:
            out.add(str(m).upper())
    return out


def applies(rule: Rule, modalities: set[str], items: set[str]) -> bool:
    """``applies_to``: an empty list means all; a listed modality/item must match one of the exam's."""
    if rule.modalities and not (rule.modality_set() & modalities):
        return False
    if rule.items and not (set(rule.items) & items):
        return False
    return True


def exam_item_keys(facts: Mapping[str, Any], standard: Standard | None) -> set[str]:
    keys = {str(x) for x in (facts.get("exam_items") or ()) if x}
    keys |= {str(x) for x in (facts.get("exam_item_codes") or ()) if x}
    if standard is not None and standard.item != "general":
        keys.add(standard.item)
    return keys


# -- messages and evidence ----------------------------------------------------------------------

def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > EVIDENCE_TEXT_LIMIT:
        return value[:EVIDENCE_TEXT_LIMIT] + "…"
    if isinstance(value, list) and len(value) > 20:
        return [_short(v) for v in value[:20]] + ["…"]
    if isinstance(value, list):
        return [_short(v) for v in value]
    return value


def _fmt_value(value: Any) -> str:
    if value is None:
        return "空/null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt_value(v) for v in value[:10])
    text = str(value)
    return text if len(text) <= 80 else text[:80] + "…"


def render_message(template: str, rule: Rule, facts: Mapping[str, Any]) -> str:
    """``{name}`` placeholders only (never ``str.format``: no attribute access through templates)."""
    first = facts.get(rule.fields[0]) if rule.fields else None

    def sub(match: Any) -> str:
        name = match.group(1)
        if name == "value":
            return _fmt_value(first)
        if name in rule.params:
            return _fmt_value(rule.params[name])
        return _fmt_value(facts.get(name))
    return PLACEHOLDER.sub(sub, template)


def evidence_for(rule: Rule, facts: Mapping[str, Any]) -> dict[str, Any]:
    names = list(rule.fields)
    for comp in (rule.compiled, rule.compiled_when):
        if comp is not None:
            names += sorted(comp.names - set(names))
    out = {n: _short(facts.get(n)) for n in names if n != "series"}
    if rule.params:
        out["params"] = dict(rule.params)
    return out


def make_failure(rule: Rule, facts: Mapping[str, Any], points: float, scope: str) -> Failure:
    zh = render_message(rule.message_zh, rule, facts)
    en = render_message(rule.message_en, rule, facts)
    return Failure(rule_id=rule.id, dimension=rule.dimension, fields=list(rule.fields), points=points,
                   reason=f"{zh} / {en}", reason_zh=zh, reason_en=en, evidence=evidence_for(rule, facts),
                   severity=rule.severity, scope=scope)


# -- scoring ------------------------------------------------------------------------------------

def points_for(rule_id: str, default: float, standard: Standard | None) -> tuple[float, str]:
    """单项分值配置: the standard's points override the rule's default; unlisted = general."""
    if standard is not None:
        pts = standard.points_for(rule_id)
        if pts is not None:
            return pts, "standard"
    return default, "general"


def score_exam(failures: Iterable[Failure], standard: Standard) -> tuple[float, str]:
    """Total minus the deductions, floored at 0, and its grade under the standard's thresholds."""
    deducted = sum(f.points for f in failures)
    score = max(0.0, standard.total - deducted)
    score = round(score, 4)
    return score, standard.grade(score)


def choose_standard(ruleset: Ruleset, facts: Mapping[str, Any], standard: Standard | str | None) -> Standard:
    if isinstance(standard, Standard):
        return standard
    if isinstance(standard, str):
        if standard not in ruleset.standards:
            raise KeyError(f"unknown standard {standard!r} / 未知评分标准")
        return ruleset.standards[standard]
    found = ruleset.standard_for(facts.get("exam_items"), facts.get("exam_item_codes"))
    if found is not None:
        return found
    modality = facts.get("modality") or next(iter(facts.get("dicom_modalities") or ()), None)
    return default_standard(modality)


# -- one exam -----------------------------------------------------------------------------------

def evaluate_exam(
    facts: Mapping[str, Any],
    ruleset: Ruleset,
    standard: Standard | str | None = None,
    *,
    extra_failures: Iterable[Failure] = (),
    unavailable: Iterable[str] = (),
    memo: dict | None = None,
) -> ExamResult:
    """Score one exam (CONTRACT §5).

    ``extra_failures``: deductions from other checks (image QC, a later issue) scored under
    the same standard. ``unavailable``: fact names this caller cannot know (identifiers on a
    platform without the vault); rules reading them are reported as skipped, not failed.
    A rule that raises is an evaluation-error entry in ``errors``, never a crash.
    """
    full = dict(facts)
    for name in LIST_FACTS:
        if full.get(name) is None:
            full[name] = []
    std = choose_standard(ruleset, full, standard)
    modalities = exam_modalities(full)
    items = exam_item_keys(full, std)
    missing = frozenset(unavailable)
    failures: list[Failure] = []
    errors: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    evaluated = 0
    for rule in ruleset.enabled_rules():
        if not applies(rule, modalities, items):
            continue
        if missing:
            reads = (set(rule.fields) | rule.compiled.names | (rule.compiled_when.names if rule.compiled_when else set())) & missing  # type: ignore[union-attr]
            if reads:
                skipped.append({"rule_id": rule.id, "reason": "facts unavailable / 数据不可用: " + ", ".join(sorted(reads))})
                continue
        scope = Scope(full, rule.params, memo)
        try:
            if rule.compiled_when is not None and not rule.compiled_when.fn(scope):
                continue
            evaluated += 1
            ok = rule.compiled.fn(scope)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - one bad rule never stops an exam
            errors.append(_error_entry(rule, exc))
            continue
        if not ok:
            pts, where = points_for(rule.id, rule.points, std)
            failures.append(make_failure(rule, full, pts, where))
    for extra in extra_failures:
        pts, where = points_for(extra.rule_id, extra.points, std)
        extra.points, extra.scope = pts, where
        failures.append(extra)
    score, grade = score_exam(failures, std)
    return ExamResult(
        accession_number=full.get("accession_number"), score=score, grade=grade, failures=failures,
        ruleset_version=ruleset.version, standard=None if std.item == "general" else std.item, total=std.total,
        grading=std.grading, errors=errors, skipped=skipped, evaluated=evaluated,
    )


def _error_entry(rule: Rule, exc: BaseException) -> dict[str, Any]:
    kind = "evaluation error" if isinstance(exc, EvalError) else f"evaluation error ({type(exc).__name__})"
    return {"rule_id": rule.id, "error": f"{kind} / 规则执行出错: {exc}"[:500]}


# -- many exams ---------------------------------------------------------------------------------

@dataclass
class BatchResult:
    """Scores for ``n`` exams; per-rule failing rows. Failures are materialised on request."""

    n: int
    scores: Any  # numpy float64 array
    grades: list[str]
    ruleset_version: str
    standards: list[str | None]
    failed_rows: dict[str, Any] = field(default_factory=dict)  # rule id -> int32 row indices
    error_rows: dict[str, Any] = field(default_factory=dict)  # rule id -> int32 row indices
    errors: dict[str, str] = field(default_factory=dict)  # rule id -> first error text
    seconds: dict[str, float] = field(default_factory=dict)

    def failure_counts(self) -> dict[str, int]:
        return {rid: int(len(rows)) for rid, rows in self.failed_rows.items() if len(rows)}


class _Columns:
    """Factorised columns: integer codes per row and the distinct values, built lazily."""

    def __init__(self, columns: Mapping[str, Sequence[Any]], n: int) -> None:
        self.raw = columns
        self.n = n
        self.codes: dict[str, Any] = {}
        self.uniques: dict[str, list[Any]] = {}
        self.combos: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def factorise(self, name: str) -> None:
        import numpy as np

        if name in self.codes:
            return
        values = self.raw.get(name)
        if values is None:
            self.codes[name] = np.zeros(self.n, dtype=np.int64)
            self.uniques[name] = [[] if name in LIST_FACTS else None]
            return
        index: dict[Any, int] = {}
        uniques: list[Any] = []
        codes = np.empty(self.n, dtype=np.int64)
        setdefault = index.setdefault
        for i, v in enumerate(values):
            try:
                key = v
                c = setdefault(key, len(uniques))
            except TypeError:  # lists/dicts: key by a frozen form
                key = _freeze(v)
                c = setdefault(key, len(uniques))
            if c == len(uniques):
                uniques.append(v)
            codes[i] = c
        self.codes[name] = codes
        self.uniques[name] = uniques

    def combine(self, names: tuple[str, ...]) -> tuple[Any, Any]:
        """(row -> combination id, combination id -> per-name unique index rows)."""
        import numpy as np

        if names in self.combos:
            return self.combos[names]
        if not names:
            result = (np.zeros(self.n, dtype=np.int64), np.zeros((1, 0), dtype=np.int64))
            self.combos[names] = result
            return result
        for name in names:
            self.factorise(name)
        if len(names) == 1:
            codes = self.codes[names[0]]
            table = np.arange(len(self.uniques[names[0]]), dtype=np.int64).reshape(-1, 1)
            result = (codes, table)
        else:
            prefix_ids, prefix_table = self.combine(names[:-1])
            last = self.codes[names[-1]]
            width = len(self.uniques[names[-1]])
            joint = prefix_ids * width + last
            ids, inverse = np.unique(joint, return_inverse=True)
            table = np.concatenate(
                [prefix_table[ids // width], (ids % width).reshape(-1, 1)], axis=1)
            result = (inverse.astype(np.int64, copy=False), table)
        self.combos[names] = result
        return result


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("__list__", tuple(_freeze(v) for v in value))
    return value


def _rule_names(rule: Rule) -> tuple[str, ...]:
    names = set(rule.compiled.names) if rule.compiled else set()
    if rule.compiled_when is not None:
        names |= rule.compiled_when.names
    return tuple(sorted(names))


def _evaluate_rules(cols: _Columns, rules: Sequence[Rule], row_items: Any, row_modalities: Any,
                    memo: dict) -> dict[str, tuple[Any, Any, str | None]]:
    """Per rule: (failing row indices, erroring row indices, first error)."""
    import numpy as np

    out: dict[str, tuple[Any, Any, str | None]] = {}
    for rule in rules:
        names = _rule_names(rule)
        applicable = _applicability_mask(rule, cols, row_items, row_modalities)
        ids, table = cols.combine(names)
        n_combos = table.shape[0]
        needed = np.zeros(n_combos, dtype=bool)
        if applicable is None:
            needed[:] = True
        else:
            needed[np.unique(ids[applicable])] = True
        status = np.zeros(n_combos, dtype=np.int8)  # 0 pass/skip, 1 fail, 2 error
        first_error: str | None = None
        uniques = [cols.uniques[n] for n in names]
        facts: dict[str, Any] = {}
        scope = Scope(facts, rule.params, memo)
        budget = scope.budget
        expr_fn = rule.compiled.fn  # type: ignore[union-attr]
        when_fn = rule.compiled_when.fn if rule.compiled_when is not None else None
        lookups = [(name, uniques[k], table[:, k].tolist()) for k, name in enumerate(names)]
        for combo in np.flatnonzero(needed).tolist():
            for name, values, index in lookups:
                facts[name] = values[index[combo]]
            budget.left = STEP_BUDGET
            scope.locals.clear()
            try:
                if when_fn is not None and not when_fn(scope):
                    continue
                if not expr_fn(scope):
                    status[combo] = 1
            except Exception as exc:  # noqa: BLE001
                status[combo] = 2
                if first_error is None:
                    first_error = _error_entry(rule, exc)["error"]
        row_status = status[ids]
        if applicable is not None:
            row_status = np.where(applicable, row_status, 0)
        if len(memo) > MEMO_LIMIT:  # bound memory: the memo only pays across rules
            memo.clear()
        out[rule.id] = (np.flatnonzero(row_status == 1).astype(np.int32), np.flatnonzero(row_status == 2).astype(np.int32),
                        first_error)
    return out


def _applicability_mask(rule: Rule, cols: _Columns, row_items: Any, row_modalities: Any) -> Any:
    import numpy as np

    mask = None
    if rule.modalities:
        codes, uniques = row_modalities
        ok = np.array([bool(rule.modality_set() & u) for u in uniques], dtype=bool)
        mask = ok[codes]
    if rule.items:
        codes, uniques = row_items
        wanted = set(rule.items)
        ok = np.array([bool(wanted & u) for u in uniques], dtype=bool)
        mask = ok[codes] if mask is None else (mask & ok[codes])
    return mask


def _factor_sets(values: Iterable[frozenset[str]], n: int) -> tuple[Any, list[frozenset[str]]]:
    import numpy as np

    index: dict[frozenset[str], int] = {}
    uniques: list[frozenset[str]] = []
    codes = np.empty(n, dtype=np.int64)
    for i, v in enumerate(values):
        c = index.setdefault(v, len(uniques))
        if c == len(uniques):
            uniques.append(v)
        codes[i] = c
    return codes, uniques


_FORK_STATE: dict[str, Any] = {}


def _worker(rule_ids: list[str]) -> dict[str, tuple[Any, Any, str | None]]:
    state = _FORK_STATE
    rules = [state["ruleset"].rules[r] for r in rule_ids]
    return _evaluate_rules(state["cols"], rules, state["items"], state["modalities"], {})


def evaluate_batch(
    columns: Mapping[str, Sequence[Any]],
    ruleset: Ruleset,
    *,
    workers: int = 1,
) -> BatchResult:
    """Evaluate every enabled rule over ``n`` exams given as columns (fact name -> values).

    Scores use each exam's item standard (found from ``exam_items``/``exam_item_codes``) or
    the default standard; the outcome per exam equals :func:`evaluate_exam`'s. ``workers`` > 1
    forks processes that each take a share of the rules (POSIX only; falls back to 1).
    """
    import time

    import numpy as np

    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    cols = _Columns(columns, n)
    t0 = time.perf_counter()
    # the standard per exam: by distinct (exam_items, exam_item_codes, modality)
    std_ids, std_table = cols.combine(tuple(sorted({"exam_items", "exam_item_codes", "modality", "dicom_modalities"})))
    combo_names = tuple(sorted({"exam_items", "exam_item_codes", "modality", "dicom_modalities"}))
    combo_standards: list[Standard] = []
    combo_items: list[frozenset[str]] = []
    combo_mods: list[frozenset[str]] = []
    for row in std_table:
        facts = {name: cols.uniques[name][row[k]] for k, name in enumerate(combo_names)}
        for name in LIST_FACTS & set(facts):
            facts[name] = facts[name] or []
        std = choose_standard(ruleset, facts, None)
        combo_standards.append(std)
        combo_items.append(frozenset(exam_item_keys(facts, std)))
        combo_mods.append(frozenset(exam_modalities(facts)))
    item_codes, item_uniques = _factor_sets(combo_items, len(combo_items))
    mod_codes, mod_uniques = _factor_sets(combo_mods, len(combo_mods))
    row_items = (item_codes[std_ids], item_uniques)
    row_mods = (mod_codes[std_ids], mod_uniques)
    rules = ruleset.enabled_rules()
    for rule in rules:  # factorise before forking so children share the codes copy-on-write
        cols.combine(_rule_names(rule))
    t_factor = time.perf_counter() - t0
    results: dict[str, tuple[Any, Any, str | None]] = {}
    workers = max(1, int(workers))
    if workers > 1 and len(rules) > 1:
        import multiprocessing as mp

        try:
            ctx = mp.get_context("fork")
        except ValueError:
            ctx = None
        if ctx is not None:
            _FORK_STATE.update(ruleset=ruleset, cols=cols, items=row_items, modalities=row_mods)
            costs = sorted(rules, key=lambda r: -cols.combine(_rule_names(r))[1].shape[0])
            shares: list[list[str]] = [[] for _ in range(workers)]
            for k, rule in enumerate(costs):  # snake order: big rules spread across workers
                lane = k % (2 * workers)
                shares[lane if lane < workers else 2 * workers - 1 - lane].append(rule.id)
            try:
                with ctx.Pool(workers) as pool:
                    for part in pool.map(_worker, [s for s in shares if s]):
                        results.update(part)
            finally:
                _FORK_STATE.clear()
    if not results:
        results = _evaluate_rules(cols, rules, row_items, row_mods, {})
    t_rules = time.perf_counter() - t0 - t_factor
    # scores: total - sum(points) per row, with the row's standard
    totals = np.array([s.total for s in combo_standards], dtype=np.float64)[std_ids]
    deducted = np.zeros(n, dtype=np.float64)
    std_index = {id(s): k for k, s in enumerate(combo_standards)}
    failed_rows: dict[str, Any] = {}
    error_rows: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for rule in rules:
        fail, err, first = results[rule.id]
        failed_rows[rule.id] = fail
        if len(err):
            error_rows[rule.id] = err
            errors[rule.id] = first or "evaluation error"
        if not len(fail):
            continue
        per_combo = np.array([points_for(rule.id, rule.points, s)[0] for s in combo_standards], dtype=np.float64)
        deducted[fail] += per_combo[std_ids[fail]]
    del std_index
    scores = np.maximum(0.0, totals - deducted).round(4)
    grades_by_combo: list[str] = []
    standards: list[str | None] = []
    grade_cache: dict[tuple[int, float], str] = {}
    std_of_row = std_ids
    for i in range(n):
        s = combo_standards[std_of_row[i]]
        key = (int(std_of_row[i]), float(scores[i]))
        g = grade_cache.get(key)
        if g is None:
            g = s.grade(scores[i])
            grade_cache[key] = g
        grades_by_combo.append(g)
    standards = [None if s.item == "general" else s.item for s in combo_standards]
    row_standards = [standards[c] for c in std_of_row] if n else []
    return BatchResult(
        n=n, scores=scores, grades=grades_by_combo, ruleset_version=ruleset.version, standards=row_standards,
        failed_rows=failed_rows, error_rows=error_rows, errors=errors,
        seconds={"factorise": round(t_factor, 3), "rules": round(t_rules, 3),
                 "total": round(time.perf_counter() - t0, 3)},
    )


def columns_from_facts(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    """Row dicts to columns (for tests and small batches)."""
    return {n: [r.get(n) for r in rows] for n in names}


def is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
