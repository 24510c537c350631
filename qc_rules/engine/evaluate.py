"""Evaluate a ruleset: one exam (:func:`evaluate_exam`) or many at once (:func:`evaluate_batch`).

Both paths run the *same* compiled closures, so they cannot disagree. The batch path is fast
because exam data repeats. Each rule is rewritten so that every library call over facts reads
a *derived column*, shared by all rules making the same call. A derived column is computed
once per distinct argument combination, or row by row in chunks when the arguments are
unique per row. Each rule is then evaluated once per distinct combination of the columns it
reads, and the outcome is scattered back to the rows with numpy. With ``workers`` > 1, forked
processes each take a contiguous range of rows end to end and return only row indices.
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
    for name, compiled in rule.compiled_evidence.items():
        try:  # evidence never turns a failure into an error: a broken expression just gives None
            out[name] = compiled.fn(Scope(facts, rule.params, None))
        except Exception:  # noqa: BLE001
            out[name] = None
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
    """Factorised columns: integer codes per row and the distinct values, built lazily.

    Derived columns (``__dN``) hold a function call's result per row, computed once per
    distinct combination of its arguments and shared by every rule that makes the call."""

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
            self.codes[name] = np.zeros(self.n, dtype=np.int32)
            self.uniques[name] = [[] if name in LIST_FACTS else None]
            return
        if self.n >= IDENTITY_MIN_ROWS and _mostly_unique(values):
            # (nearly) every value distinct: deduplicating would cost a dict insert per row and
            # save nothing; row i is its own "distinct value"
            self.codes[name] = np.arange(self.n, dtype=np.int32)
            self.uniques[name] = values if isinstance(values, list) else list(values)
            return
        self.codes[name], self.uniques[name] = _factorise_values(values, self.n)

    def combine(self, names: tuple[str, ...], cache: bool = False) -> tuple[Any, Any]:
        """(row -> combination id, combination id -> per-name unique index rows).

        Multi-column combinations are cached only on request: each costs 4 bytes a row and
        most are read by one rule once (memory stays flat in the number of rules)."""
        import numpy as np

        if names in self.combos:
            return self.combos[names]
        if not names:
            result = (np.zeros(self.n, dtype=np.int32), np.zeros((1, 0), dtype=np.int64))
        else:
            for name in names:
                self.factorise(name)
            if len(names) == 1:
                codes = self.codes[names[0]]
                table = np.arange(len(self.uniques[names[0]]), dtype=np.int64).reshape(-1, 1)
                result = (codes, table)
            else:
                prefix_ids, prefix_table = self.combine(names[:-1])
                width = len(self.uniques[names[-1]])
                joint = prefix_ids.astype(np.int64) * width + self.codes[names[-1]]
                span = prefix_table.shape[0] * width
                if span <= 4 * self.n + 1024:  # dense: O(n) marking instead of an O(n log n) sort
                    present = np.zeros(span, dtype=bool)
                    present[joint] = True
                    ids = np.flatnonzero(present)
                    remap = np.cumsum(present, dtype=np.int64) - 1
                    inverse = remap[joint]
                else:
                    ids, inverse = np.unique(joint, return_inverse=True)
                table = np.concatenate([prefix_table[ids // width], (ids % width).reshape(-1, 1)], axis=1)
                result = (inverse.astype(np.int32).reshape(-1), table)
        if cache or len(names) <= 1:
            self.combos[names] = result
        return result

    def derive(self, spec: _Derived) -> None:
        """Compute a derived column (its argument columns, derived ones included, first)."""
        if spec.name in self.codes:
            return
        ids, values = compute_derived(self, spec)
        self.codes[spec.name] = ids
        self.uniques[spec.name] = values


IDENTITY_MIN_ROWS = 50_000
IDENTITY_SAMPLE = 5_000


def _mostly_unique(values: Sequence[Any]) -> bool:
    """More than 90% distinct among a sample of hashable values."""
    sample = values[:IDENTITY_SAMPLE]
    try:
        return len(set(sample)) > 0.9 * len(sample)
    except TypeError:  # lists/dicts: factorise (they are often shared)
        return False


def _factorise_values(values: Sequence[Any], n: int) -> tuple[Any, list[Any]]:
    import numpy as np

    index: dict[Any, int] = {}
    by_identity: dict[int, int] = {}  # lists/dicts shared by reference: freeze once
    uniques: list[Any] = []
    codes = np.empty(n, dtype=np.int32)
    setdefault = index.setdefault
    for i, v in enumerate(values):
        try:
            c = setdefault(v, len(uniques))
        except TypeError:  # lists/dicts: key by a frozen form
            c = by_identity.get(id(v), -1)
            if c < 0:
                try:
                    key = ("list", tuple(v)) if type(v) is list else _freeze(v)  # == _freeze(v) for flat lists
                    hash(key)
                except TypeError:
                    key = _freeze(v)
                c = by_identity[id(v)] = setdefault(key, len(uniques))
        if c == len(uniques):
            uniques.append(v)
        codes[i] = c
    return codes, uniques


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return (type(value).__name__, tuple(_freeze(v) for v in items))
    if isinstance(value, float) and value != value:
        return ("nan",)
    return value


# -- batch plans: leaf function calls become shared derived columns --------------------------------

@dataclass
class _Derived:
    name: str
    fn: Any
    args: tuple[tuple[str, Any], ...]  # ("name", fact) | ("const", value)
    kwargs: tuple[tuple[str, str, Any], ...]  # (keyword, kind, value)
    depends: tuple[str, ...] = ()

    def arg_names(self) -> tuple[str, ...]:
        names: set[str] = set()
        for spec in [*self.args, *((k, v) for _, k, v in self.kwargs)]:
            _spec_names(spec, names)
        return tuple(sorted(names))


def _spec_names(spec: tuple[str, Any], out: set[str]) -> None:
    kind, value = spec
    if kind == "name":
        out.add(value)
    elif kind == "list":
        for item in value:
            _spec_names(item, out)


@dataclass
class _RulePlan:
    rule: Rule
    names: tuple[str, ...]
    expr: Any
    when: Any


def compute_derived(cols: _Columns, spec: _Derived) -> tuple[Any, list[Any]]:
    """Call ``spec.fn`` once per distinct argument combination; errors become :class:`Raised`."""
    import numpy as np

    from radqc.qc_rules.engine.expr import Raised

    names = spec.arg_names()
    ids, table = cols.combine(names)
    position = {n: k for k, n in enumerate(names)}
    columns = [cols.uniques[n] for n in names]
    index_cols = [table[:, k].tolist() for k in range(len(names))]
    fn = spec.fn
    results_index: dict[Any, int] = {}
    values: list[Any] = []
    combo_codes = np.empty(table.shape[0], dtype=np.int32)

    def arg(kind: str, v: Any, combo: int) -> Any:
        if kind == "name":
            k = position[v]
            value = columns[k][index_cols[k][combo]]
            if type(value) is Raised:
                raise EvalError(value.message)
            return value
        if kind == "list":
            return [arg(ik, iv, combo) for ik, iv in v]
        return list(v) if isinstance(v, list) else v

    for combo in range(table.shape[0]):
        try:
            args = [arg(kind, v, combo) for kind, v in spec.args]
            kw = {key: arg(kind, v, combo) for key, kind, v in spec.kwargs}
            value = fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - re-raised only where a rule reads it
            value = Raised(f"{type(exc).__name__}: {exc}" if not isinstance(exc, EvalError) else str(exc))
        try:
            c = results_index.setdefault(value, len(values)) if type(value) is not Raised else len(values)
        except TypeError:
            c = results_index.setdefault(_freeze(value), len(values))
        if c == len(values):
            values.append(value)
        combo_codes[combo] = c
    return combo_codes[ids], values


SPAN_ROWS = 200_000  # rows per worker task (memory: input + workers x one span)
ROWWISE_MIN_ROWS = 20_000  # below this, every derived column is computed per distinct combination
ROW_CHUNK = 8192  # rows per chunk in row-wise derivation (keeps functions' own parse caches warm)


def _call_value(fn: Any, spec: _Derived, getter: Any) -> Any:
    from radqc.qc_rules.engine.expr import Raised

    def arg(kind: str, v: Any) -> Any:
        if kind == "name":
            value = getter(v)
            if type(value) is Raised:
                raise EvalError(value.message)
            return value
        if kind == "list":
            return [arg(ik, iv) for ik, iv in v]
        return list(v) if isinstance(v, list) else v

    try:
        return fn(*[arg(kind, v) for kind, v in spec.args], **{key: arg(kind, v) for key, kind, v in spec.kwargs})
    except Exception as exc:  # noqa: BLE001 - re-raised only where a rule reads it
        return Raised(str(exc) if isinstance(exc, EvalError) else f"{type(exc).__name__}: {exc}")


def _spec_values(spec: _Derived, rows: Mapping[str, list[Any]], m: int) -> list[Any]:
    """``spec.fn`` over ``m`` rows. Plain positional calls over plain facts take a fast path
    (one list comprehension); any exception there re-runs the chunk row by row."""
    import itertools

    fn = spec.fn
    if not spec.kwargs and not spec.depends and all(kind != "list" for kind, _ in spec.args):
        columns = [rows[v] if kind == "name" else itertools.repeat(v, m) for kind, v in spec.args]
        if not any(kind == "const" and isinstance(v, list) for kind, v in spec.args):
            try:
                return [fn(*args) for args in zip(*columns, strict=False)]
            except Exception:  # noqa: BLE001 - redo row by row to place the error
                pass
    return [_call_value(fn, spec, lambda name, j=j: rows[name][j]) for j in range(m)]


def rowwise_derive(cols: _Columns, specs: Sequence[_Derived], start: int, end: int) -> list[tuple[str, Any, list[Any]]]:
    """Derived columns whose arguments are (nearly) unique per row: computed row by row, all
    specs chunk by chunk, so a value parsed by one call is still cached for the next.

    Results are deduplicated while that pays; a spec whose results turn out (nearly) unique
    switches to keeping one value per row (no dictionary of a million keys)."""
    import numpy as np

    # per spec: [index dict or None (unique mode), distinct values or per-row values, code chunks]
    state: dict[str, list[Any]] = {s.name: [{}, [], []] for s in specs}
    for lo in range(start, end, ROW_CHUNK):
        hi = min(end, lo + ROW_CHUNK)
        rows: dict[str, list[Any]] = {}
        for spec in specs:
            for name in spec.arg_names():
                if name not in rows:
                    values = cols.uniques[name]
                    codes = cols.codes[name][lo:hi]
                    if codes[0] == lo and codes[-1] == hi - 1 and len(values) == cols.n:  # identity column
                        rows[name] = values[lo:hi]
                    else:
                        rows[name] = [values[c] for c in codes.tolist()]
        for spec in specs:
            entry = state[spec.name]
            index, kept, chunks = entry
            values = _spec_values(spec, rows, hi - lo)
            if index is None:  # unique mode: row i's value is its own distinct value
                chunks.append(np.arange(len(kept), len(kept) + len(values), dtype=np.int32))
                kept.extend(values)
                continue
            setdefault = index.setdefault
            try:
                codes_list = [setdefault(v, len(index)) for v in values]
            except TypeError:  # an unhashable result somewhere in the chunk: key by frozen form
                codes_list = [setdefault(_freeze(v), len(index)) for v in values]
            chunks.append(np.asarray(codes_list, dtype=np.int32))
            processed = hi - start
            if processed >= 4 * ROW_CHUNK and len(index) > 0.8 * processed:
                # (nearly) every result distinct: switch to one value per row
                distinct = _unfreeze_keys(index)
                per_row = [distinct[c] for chunk in chunks for c in chunk.tolist()]
                entry[0], entry[1] = None, per_row
                entry[2] = [np.arange(len(per_row), dtype=np.int32)]
    result = []
    for spec in specs:
        index, kept, chunks = state[spec.name]
        uniques = kept if index is None else _unfreeze_keys(index)
        codes = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
        result.append((spec.name, codes, uniques))
    return result


def _unfreeze_keys(index: Mapping[Any, int]) -> list[Any]:
    return [_thaw(k) for k in index]


def _thaw(key: Any) -> Any:
    if isinstance(key, tuple) and len(key) == 2 and key[0] in ("list", "tuple", "__dict__", "set", "frozenset"):
        kind, items = key
        if kind == "__dict__":
            return {k: _thaw(v) for k, v in items}
        if kind == "list":
            return [_thaw(v) for v in items]
        if kind == "tuple":
            return tuple(_thaw(v) for v in items)
        return set(_thaw(v) for v in items) if kind == "set" else frozenset(_thaw(v) for v in items)
    if key == ("nan",):
        return float("nan")
    return key


class _Planner:
    """Rewrites rules so that every call whose arguments are facts/constants reads a derived
    column; identical calls across rules share one column."""

    def __init__(self, functions: Mapping[str, Any]) -> None:
        self.functions = functions
        self.derived: dict[str, _Derived] = {}  # key (ast dump) -> spec
        self.order: list[_Derived] = []

    def plan(self, rule: Rule) -> _RulePlan:
        import ast

        from radqc.qc_rules.engine.expr import compile_tree

        names: set[str] = set()
        fns = []
        for comp in (rule.compiled, rule.compiled_when):
            if comp is None or comp.tree is None:
                fns.append(None if comp is None else comp.fn)
                continue
            tree = _Rewriter(self, rule).visit(ast.parse(ast.unparse(comp.tree), mode="eval"))
            ast.fix_missing_locations(tree)
            names |= _free_names(tree, rule)
            fns.append(compile_tree(tree, functions=self.functions, params=rule.params))
        return _RulePlan(rule=rule, names=tuple(sorted(names)), expr=fns[0], when=fns[1])

    def register(self, key: str, fn: Any, args: tuple, kwargs: tuple) -> str:
        from radqc.qc_rules.engine.expr import DERIVED_PREFIX

        spec = self.derived.get(key)
        if spec is None:
            spec = _Derived(name=f"{DERIVED_PREFIX}{len(self.derived)}", fn=fn, args=args, kwargs=kwargs)
            spec.depends = tuple(n for n in spec.arg_names() if n.startswith(DERIVED_PREFIX))
            self.derived[key] = spec
            self.order.append(spec)
        return spec.name


def _free_names(tree: Any, rule: Rule) -> set[str]:
    """Fact and derived names a (rewritten) tree reads, minus params, constants and loop variables."""
    import ast

    from radqc.qc_rules.engine.expr import BUILTINS, CONSTANT_NAMES, GENERATOR_FUNCTIONS

    loop_vars = {g.target.id for n in ast.walk(tree) if isinstance(n, ast.GeneratorExp)
                 for g in n.generators if isinstance(g.target, ast.Name)}
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id not in loop_vars and n.id not in rule.params and n.id not in CONSTANT_NAMES:
            if n.id in called and (n.id in BUILTINS or n.id in GENERATOR_FUNCTIONS):
                continue
            out.add(n.id)
    return out - called


def _make_rewriter() -> type:
    import ast

    from radqc.qc_rules.engine.expr import BUILTINS, CONSTANT_NAMES, GENERATOR_FUNCTIONS

    class Rewriter(ast.NodeTransformer):
        def __init__(self, planner: _Planner, rule: Rule) -> None:
            self.planner = planner
            self.rule = rule

        def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.AST:
            return node  # loop variables: leave the body alone

        def _arg(self, node: ast.AST) -> tuple[str, Any] | None:
            if isinstance(node, ast.Constant):
                return ("const", node.value)
            if isinstance(node, ast.Name):
                if node.id in CONSTANT_NAMES:
                    return ("const", CONSTANT_NAMES[node.id])
                if node.id in self.rule.params:
                    return ("const", self.rule.params[node.id])
                return ("name", node.id)
            if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) <= 32:
                items = [self._arg(e) for e in node.elts]
                if any(i is None for i in items):
                    return None
                if all(kind == "const" for kind, _ in items):  # type: ignore[misc]
                    return ("const", [v for _, v in items])  # type: ignore[misc]
                return ("list", items)
            return None

        def visit_Call(self, node: ast.Call) -> ast.AST:
            self.generic_visit(node)
            if not isinstance(node.func, ast.Name) or node.func.id in GENERATOR_FUNCTIONS:
                return node
            fname = node.func.id
            fn = self.planner.functions.get(fname) or BUILTINS.get(fname)
            if fn is None:
                return node
            args = [self._arg(a) for a in node.args]
            kwargs = [(k.arg, self._arg(k.value)) for k in node.keywords]
            if any(a is None for a in args) or any(v is None for _, v in kwargs):
                return node
            key = repr((fname, args, kwargs))
            name = self.planner.register(key, fn, tuple(args),
                                         tuple((k, kind, v) for k, (kind, v) in kwargs))  # type: ignore[misc]
            return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    return Rewriter


_REWRITER: type | None = None


def _Rewriter(planner: _Planner, rule: Rule) -> Any:  # noqa: N802 - a lazily built class
    global _REWRITER
    if _REWRITER is None:
        _REWRITER = _make_rewriter()
    return _REWRITER(planner, rule)


def _evaluate_plans(cols: _Columns, plans: Sequence[_RulePlan], row_items: Any, row_modalities: Any,
                    ) -> dict[str, tuple[Any, Any, str | None]]:
    """Per rule: (failing row indices, erroring row indices, first error)."""
    import numpy as np

    out: dict[str, tuple[Any, Any, str | None]] = {}
    for plan in plans:
        rule = plan.rule
        applicable = _applicability_mask(rule, cols, row_items, row_modalities)
        ids, table = cols.combine(plan.names)
        n_combos = table.shape[0]
        if applicable is None:
            needed = np.ones(n_combos, dtype=bool)
        else:
            needed = np.zeros(n_combos, dtype=bool)
            needed[ids[applicable]] = True
        status = np.zeros(n_combos, dtype=np.int8)  # 0 pass/skip, 1 fail, 2 error
        first_error: str | None = None
        facts: dict[str, Any] = {}
        scope = Scope(facts, rule.params, None)
        budget = scope.budget
        expr_fn, when_fn = plan.expr, plan.when
        lookups = [(name, cols.uniques[name], table[:, k].tolist()) for k, name in enumerate(plan.names)]
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


def _pool(workers: int) -> Any:
    """Forked workers, one fresh process per task: the input pages a task touched (and so
    copied) are given back when it ends, so memory stays at input + workers x one span."""
    import multiprocessing as mp

    if workers <= 1:
        return None
    try:
        return mp.get_context("fork").Pool(workers, maxtasksperchild=1)
    except (ValueError, OSError):
        return None


def _range_worker(span: tuple[int, int]) -> tuple[dict[str, tuple[Any, Any, str | None]], dict[str, float]]:
    state = _FORK_STATE
    lo, hi = span
    columns = {k: v[lo:hi] for k, v in state["columns"].items()}
    items = (state["items"][0][lo:hi], state["items"][1])
    modalities = (state["modalities"][0][lo:hi], state["modalities"][1])
    results, phases = _evaluate_serial(columns, hi - lo, state["rules"], state["functions"], items, modalities)
    shifted = {rid: (fail + lo, err + lo, first) for rid, (fail, err, first) in results.items()}
    return shifted, phases


def _evaluate_serial(columns: Mapping[str, Sequence[Any]], n: int, rules: Sequence[Rule], functions: Mapping[str, Any],
                     row_items: Any, row_mods: Any) -> tuple[dict[str, tuple[Any, Any, str | None]], dict[str, float]]:
    """Plan, factorise, derive and evaluate every rule over ``n`` rows in this process."""
    import time

    t0 = time.perf_counter()
    cols = _Columns(columns, n)
    planner = _Planner(functions)
    plans = {rule.id: planner.plan(rule) for rule in rules}
    base = sorted({name for p in plans.values() for name in p.names if not name.startswith("__d")}
                  | {v for sp in planner.order for v in sp.arg_names() if not v.startswith("__d")})
    for name in base:
        cols.factorise(name)
    t1 = time.perf_counter()
    done: set[str] = set()
    read_by_rules = {name for p in plans.values() for name in p.names}
    while len(done) < len(planner.order):
        level = [sp for sp in planner.order if sp.name not in done and all(d in done for d in sp.depends)]
        rowwise = [sp for sp in level if n >= ROWWISE_MIN_ROWS and cols.combine(sp.arg_names(), cache=True)[1].shape[0] > n * 0.3]
        for sp in level:
            if sp not in rowwise:
                cols.derive(sp)
        for name, ids, values in rowwise_derive(cols, rowwise, 0, n):
            cols.codes[name], cols.uniques[name] = ids, values
        for sp in level:  # argument combinations of this level are no longer needed
            if len(sp.arg_names()) > 1:
                cols.combos.pop(sp.arg_names(), None)
        done |= {sp.name for sp in level}
        pending = [sp for sp in planner.order if sp.name not in done]
        still_needed = read_by_rules | {a for sp in pending for a in sp.arg_names()}
        for name in [d for d in done if d not in still_needed and d in cols.codes]:
            cols.codes.pop(name)  # an intermediate call result no rule reads: free it
            cols.uniques.pop(name)
            cols.combos.pop((name,), None)
    t2 = time.perf_counter()
    results = _evaluate_plans(cols, list(plans.values()), row_items, row_mods)
    t3 = time.perf_counter()
    return results, {"factorise": t1 - t0, "derived": t2 - t1, "rules": t3 - t2, "derived_columns": len(planner.order)}


def evaluate_batch(
    columns: Mapping[str, Sequence[Any]],
    ruleset: Ruleset,
    *,
    workers: int = 1,
) -> BatchResult:
    """Evaluate every enabled rule over ``n`` exams given as columns (fact name -> values).

    Scores use each exam's item standard (found from ``exam_items``/``exam_item_codes``) or
    the default standard; the outcome per exam equals :func:`evaluate_exam`'s. ``workers`` > 1
    forks processes (POSIX), each taking a contiguous range of rows end to end.
    """
    import time

    import numpy as np

    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    cols = _Columns(columns, n)
    t0 = time.perf_counter()
    combo_names = tuple(sorted({"exam_items", "exam_item_codes", "modality", "dicom_modalities"}))
    std_ids, std_table = cols.combine(combo_names)
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
    functions = ruleset.functions
    if functions is None:
        from radqc.qc_rules.engine.loader import _default_functions

        functions = _default_functions()
    workers = max(1, int(workers))
    t_standards = time.perf_counter() - t0
    phases: dict[str, float] = {}
    if workers > 1 and n >= 2 * workers and len(rules) > 0:
        # data-parallel: each forked worker takes a contiguous range of rows end to end
        # (factorise, derive, rules) and returns only failing/erroring row indices
        tasks = -(-n // (SPAN_ROWS * workers)) * workers  # a multiple of the workers: balanced
        step = -(-n // tasks)
        spans = [(lo, min(n, lo + step)) for lo in range(0, n, step)]
        _FORK_STATE.update(columns=columns, rules=rules, functions=functions, items=row_items, modalities=row_mods)
        import gc

        gc.freeze()  # children's garbage collections then never write to (and copy) the input's pages
        pool = _pool(workers)
        try:
            if pool is None:
                parts = [_range_worker(span) for span in spans]
            else:
                with pool:
                    parts = pool.map(_range_worker, spans, chunksize=1)
        finally:
            _FORK_STATE.clear()
            gc.unfreeze()
        results = {}
        for rule in rules:
            fails = [p[0][rule.id][0] for p in parts]
            errs = [p[0][rule.id][1] for p in parts]
            first = next((p[0][rule.id][2] for p in parts if p[0][rule.id][2]), None)
            results[rule.id] = (np.concatenate(fails), np.concatenate(errs), first)
        for p in parts:
            for key, value in p[1].items():
                phases[key] = value if key == "derived_columns" else phases.get(key, 0.0) + value  # summed over spans
    else:
        results, phases = _evaluate_serial(columns, n, rules, functions, row_items, row_mods)
    totals = np.array([s.total for s in combo_standards], dtype=np.float64)[std_ids]
    deducted = np.zeros(n, dtype=np.float64)
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
    scores = np.maximum(0.0, totals - deducted).round(4)
    grades: list[str] = []
    grade_cache: dict[tuple[int, float], str] = {}
    for c, score in zip(std_ids.tolist(), scores.tolist(), strict=True):
        g = grade_cache.get((c, score))
        if g is None:
            g = grade_cache[(c, score)] = combo_standards[c].grade(score)
        grades.append(g)
    standards = [None if s.item == "general" else s.item for s in combo_standards]
    return BatchResult(
        n=n, scores=scores, grades=grades, ruleset_version=ruleset.version,
        standards=[standards[c] for c in std_ids.tolist()], failed_rows=failed_rows, error_rows=error_rows,
        errors=errors,
        seconds={"standards": round(t_standards, 3), **{k: round(v, 3) for k, v in phases.items()},
                 "total": round(time.perf_counter() - t0, 3)},
    )


def columns_from_facts(rows: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    """Row dicts to columns (for tests and small batches)."""
    return {n: [r.get(n) for r in rows] for n in names}


def is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
