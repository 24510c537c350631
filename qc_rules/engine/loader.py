"""Load and validate rule libraries and scoring standards (YAML or JSON), all or nothing.

Why so strict: a rule library is edited by people and imported from hospitals' files; a
typo (``exprr``) silently ignored would turn a rule off. Every document is parsed with a
YAML loader that records line numbers, every field is checked against a whitelist, every
expression is compiled (:mod:`expr`), every message placeholder resolved, and every rule's
embedded examples are run. Errors are collected (up to :data:`MAX_ERRORS`) and raised
together in one :class:`RuleLoadError`; nothing of a failing load is returned, so a library
is never half-applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from radqc.qc_rules.engine.expr import Compiled, EvalError, ExprError, Scope, compile_expr
from radqc.qc_rules.engine.model import (
    DEFAULT_THRESHOLDS,
    DIMENSIONS,
    GRADINGS,
    LIBRARIES,
    PLACEHOLDER,
    SEVERITIES,
    STANDARD_ITEM_TYPES,
    Rule,
    Ruleset,
    Standard,
    StandardItem,
)
from radqc.qc_rules.engine.names import FACT_NAMES, neutral_facts

MAX_ERRORS = 50
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
LIBRARY_DIR = PACKAGE_ROOT / "library"
STANDARDS_DIR = PACKAGE_ROOT / "standards"

RULE_FIELDS = frozenset({
    "id", "name", "library", "dimension", "applies_to", "severity", "points", "fields", "when", "expr",
    "message", "params", "examples", "enabled", "description", "tags", "references", "evidence",
})
REQUIRED_RULE_FIELDS = ("id", "name", "dimension", "severity", "points", "expr", "message")
LIBRARY_FIELDS = frozenset({"library", "version", "rules", "description", "name"})
STANDARD_FIELDS = frozenset({
    "item", "name", "modality", "grading", "total", "thresholds", "items", "aliases", "description", "version",
})
STANDARD_ITEM_FIELDS = frozenset({"id", "type", "category", "points", "name", "description"})
MAX_PARAM_ITEMS = 1000


class RuleLoadError(ValueError):
    """One or more problems in rule/standard documents; ``errors`` lists them all."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        head = f"{len(errors)} problem(s) in the rule library / 规则库有 {len(errors)} 处错误:"
        super().__init__(head + "\n  " + "\n  ".join(errors[:MAX_ERRORS]))


# -- YAML with line numbers ---------------------------------------------------------------------

class LineDict(dict):
    """A mapping that remembers where it and each of its keys start (1-based lines)."""

    line: int | None = None
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "unhashable key", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} / 重复的键", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_text(text: str, source: str = "<text>") -> Any:
    """YAML (or JSON, a YAML subset) with line numbers; a clear error naming the line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RuleLoadError([f"{source}: malformed YAML/JSON{line} / 文件格式错误（第 {mark.line + 1 if mark else '?'} 行）: "
                             f"{exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise RuleLoadError([f"{source}: malformed YAML/JSON / 文件格式错误: {exc}"]) from None


def _line(obj: Any, key: str | None = None) -> int | None:
    if isinstance(obj, LineDict):
        if key is not None and key in obj.key_lines:
            return obj.key_lines[key]
        return obj.line
    return None


def _where(source: str, obj: Any, key: str | None = None) -> str:
    line = _line(obj, key)
    return f"{source}:{line}" if line else source


def _plain(value: Any) -> Any:
    """LineDicts back to plain dicts (examples and params are stored as data)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _default_functions() -> Mapping[str, Callable[..., Any]]:
    try:
        from radqc.qc_rules.functions import FUNCTIONS
    except ImportError:
        return {}
    return FUNCTIONS


# -- validation ---------------------------------------------------------------------------------

class _Collector:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)


def _bilingual(value: Any, label: str, where: str, errs: _Collector) -> tuple[str, str] | None:
    if isinstance(value, str) and value.strip():
        return value, value
    if isinstance(value, dict) and isinstance(value.get("zh"), str) and isinstance(value.get("en"), str):
        extra = set(value) - {"zh", "en"}
        if extra:
            errs.add(f"{where}: {label}: unknown key(s) {sorted(extra)}; use zh and en / 只允许 zh、en")
            return None
        return value["zh"], value["en"]
    errs.add(f"{where}: {label} must be {{zh: ..., en: ...}} / {label} 须含中文 zh 与英文 en")
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _param_ok(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (str, bool)) or _number(value):
        return not (isinstance(value, str) and len(value) > 10_000)
    if isinstance(value, list) and depth == 0:
        return len(value) <= MAX_PARAM_ITEMS and all(_param_ok(v, 1) for v in value)
    return False


def _rule(raw: Any, library: str, source: str, functions: Mapping[str, Callable[..., Any]],
          errs: _Collector) -> Rule | None:
    if not isinstance(raw, dict):
        errs.add(f"{source}: a rule must be a mapping / 规则须为映射, got {type(raw).__name__}")
        return None
    rid = raw.get("id")
    label = f"rule {rid}" if isinstance(rid, str) else "rule (no id)"
    where = f"{_where(source, raw)}: {label} at line {_line(raw)}" if _line(raw) else f"{source}: {label}"
    before = len(errs.errors)
    for key in raw:
        if key not in RULE_FIELDS:
            errs.add(f"{where}: unknown field {key!r} (line {_line(raw, str(key))}) / 未知字段 {key!r}")
    for key in REQUIRED_RULE_FIELDS:
        if key not in raw:
            errs.add(f"{where}: missing field {key!r} / 缺少字段 {key!r}")
    if len(errs.errors) > before:
        return None
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 64:
        errs.add(f"{where}: id must be text of at most 64 characters / id 须为不超过 64 字符的文本")
        return None
    lib = raw.get("library", library)
    if lib not in LIBRARIES:
        errs.add(f"{where}: library {lib!r} is not one of {list(LIBRARIES)}")
    if lib != library and "library" in raw:
        errs.add(f"{where}: library {lib!r} differs from its file's library {library!r}")
    names = _bilingual(raw["name"], "name", where, errs)
    message = _bilingual(raw["message"], "message", where, errs)
    dimension = raw["dimension"]
    if dimension not in DIMENSIONS:
        errs.add(f"{where}: dimension {dimension!r} is not one of {list(DIMENSIONS)} / 维度取值错误")
    severity = raw["severity"]
    if severity not in SEVERITIES:
        errs.add(f"{where}: severity {severity!r} is not one of {list(SEVERITIES)} / 严重程度取值错误")
    points = raw["points"]
    if not _number(points) or points < 0:
        errs.add(f"{where}: points must be a number >= 0 / 分值须为非负数")
    applies = raw.get("applies_to") or {}
    modalities: list[str] = []
    items: list[str] = []
    if not isinstance(applies, dict) or set(applies) - {"modalities", "items"}:
        errs.add(f"{where}: applies_to takes only modalities and items / applies_to 只允许 modalities、items")
    else:
        for key, out in (("modalities", modalities), ("items", items)):
            values = applies.get(key) or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                errs.add(f"{where}: applies_to.{key} must be a list of text")
            else:
                out.extend(v.upper() if key == "modalities" else v for v in values)
    fields = raw.get("fields") or []
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        errs.add(f"{where}: fields must be a list of field names / fields 须为字段名列表")
        fields = []
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        errs.add(f"{where}: params must be a mapping / params 须为映射")
        params = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            errs.add(f"{where}: param name {key!r} is not a valid name")
        elif key in FACT_NAMES:
            errs.add(f"{where}: param {key!r} shadows a fact of the same name / 参数名与事实字段重名")
        elif not _param_ok(value):
            errs.add(f"{where}: param {key!r} must be a number, text, bool or a flat list of them")
    params = _plain(params)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        errs.add(f"{where}: enabled must be true or false")
    examples = raw.get("examples") or {}
    ex_pass: list[dict[str, Any]] = []
    ex_fail: list[dict[str, Any]] = []
    if not isinstance(examples, dict) or set(examples) - {"pass", "fail"}:
        errs.add(f"{where}: examples takes only pass and fail lists / examples 只允许 pass、fail")
    else:
        for key, ex_out in (("pass", ex_pass), ("fail", ex_fail)):
            ex_values = examples.get(key) or []
            if not isinstance(ex_values, list) or not all(isinstance(v, dict) for v in ex_values):
                errs.add(f"{where}: examples.{key} must be a list of fact mappings")
            else:
                ex_out.extend(_plain(v) for v in ex_values)
    expr_src, when_src = raw["expr"], raw.get("when")
    compiled = compiled_when = None
    known = FACT_NAMES
    try:
        compiled = compile_expr(expr_src, functions=functions, params=params, known_names=known, rule_id=rid,
                                where="expr")
        if when_src is not None:
            compiled_when = compile_expr(when_src, functions=functions, params=params, known_names=known,
                                         rule_id=rid, where="when")
    except ExprError as exc:
        line = _line(raw, exc.where)
        errs.add(f"{source}:{line}: {exc}" if line else f"{source}: {exc}")
    evidence_src = raw.get("evidence") or {}
    compiled_evidence = {}
    if not isinstance(evidence_src, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in evidence_src.items()
    ):
        errs.add(f"{where}: evidence must map names to expressions / evidence 须为 名称: 表达式")
        evidence_src = {}
    for ev_name, ev_src in evidence_src.items():
        try:
            compiled_evidence[ev_name] = compile_expr(
                ev_src, functions=functions, params=params, known_names=known, rule_id=rid, where=f"evidence.{ev_name}"
            )
        except ExprError as exc:
            line = _line(raw, "evidence")
            errs.add(f"{source}:{line}: {exc}" if line else f"{source}: {exc}")
    if message is not None:
        allowed = set(FACT_NAMES) | set(params) | {"value"}
        for text in message:
            for ph in PLACEHOLDER.findall(text):
                if ph not in allowed:
                    errs.add(f"{where}: message placeholder {{{ph}}} is not a fact, param or value / 消息占位符未知")
    if len(errs.errors) > before or names is None or message is None or compiled is None:
        return None
    rule = Rule(
        id=rid.strip(), name_zh=names[0], name_en=names[1], library=lib, dimension=dimension, severity=severity,
        points=float(points), expr=expr_src, message_zh=message[0], message_en=message[1],
        modalities=tuple(modalities), items=tuple(items), fields=tuple(fields), when=when_src, params=params,
        examples_pass=tuple(ex_pass), examples_fail=tuple(ex_fail), enabled=enabled,
        description=raw.get("description"), line=_line(raw), compiled=compiled, compiled_when=compiled_when,
        evidence=dict(evidence_src), compiled_evidence=compiled_evidence,
    )
    _self_test(rule, where, errs)
    if len(errs.errors) > before:
        return None
    return rule


def run_example(rule: Rule, example: Mapping[str, Any]) -> bool | None:
    """True pass / False fail / None skipped (``when`` false). Raises EvalError on errors."""
    facts = neutral_facts()
    facts.update(example)
    scope = Scope(facts, rule.params)
    try:
        if rule.compiled_when is not None and not rule.compiled_when.fn(scope):
            return None
        assert rule.compiled is not None
        return bool(rule.compiled.fn(scope))
    except EvalError:
        raise
    except Exception as exc:  # noqa: BLE001 - a function error is an example failure, reported
        raise EvalError(f"{type(exc).__name__}: {exc}") from exc


def _self_test(rule: Rule, where: str, errs: _Collector) -> None:
    """Every embedded example must behave as declared; a rule whose own example fails is refused."""
    for kind, examples in (("pass", rule.examples_pass), ("fail", rule.examples_fail)):
        for n, example in enumerate(examples, 1):
            unknown = set(example) - set(FACT_NAMES)
            if unknown:
                errs.add(f"{where}: examples.{kind}[{n}] has unknown fact(s) {sorted(unknown)} / 示例含未知字段")
                continue
            try:
                outcome = run_example(rule, example)
            except EvalError as exc:
                errs.add(f"{where}: examples.{kind}[{n}] raises: {exc} / 示例执行出错")
                continue
            if kind == "pass" and outcome is False:
                errs.add(f"{where}: examples.pass[{n}] fails but must pass / 应通过的示例未通过: {example}")
            if kind == "fail" and outcome is not False:
                got = "is skipped by 'when'" if outcome is None else "passes"
                errs.add(f"{where}: examples.fail[{n}] {got} but must fail / 应不通过的示例未被检出: {example}")


def _standard(raw: Any, source: str, errs: _Collector) -> Standard | None:
    if not isinstance(raw, dict):
        errs.add(f"{source}: a standard must be a mapping / 评分标准须为映射")
        return None
    where = _where(source, raw)
    before = len(errs.errors)
    for key in raw:
        if key not in STANDARD_FIELDS:
            errs.add(f"{where}: standard: unknown field {key!r} (line {_line(raw, str(key))}) / 未知字段 {key!r}")
    item = raw.get("item")
    if not isinstance(item, str) or not item.strip():
        errs.add(f"{where}: standard: item (the exam item code) is required / 缺少检查项目编码 item")
        return None
    where = f"{where}: standard {item}"
    names = _bilingual(raw.get("name"), "name", where, errs)
    grading = raw.get("grading", "ct_mr")
    if grading not in GRADINGS:
        errs.add(f"{where}: grading {grading!r} is not one of {list(GRADINGS)}")
        grading = "ct_mr"
    total = raw.get("total", 100)
    if not _number(total) or total <= 0:
        errs.add(f"{where}: total must be a positive number")
    thresholds = raw.get("thresholds") or DEFAULT_THRESHOLDS[grading]
    if not isinstance(thresholds, dict) or not thresholds or not all(_number(v) for v in thresholds.values()):
        errs.add(f"{where}: thresholds must map grades to numbers / 等级阈值须为 等级: 分数")
        thresholds = DEFAULT_THRESHOLDS[grading]
    else:
        expected = set(DEFAULT_THRESHOLDS[grading])
        got = {str(k) for k in thresholds}
        if got != expected:
            errs.add(f"{where}: thresholds for grading {grading} must name exactly {sorted(expected)}, got {sorted(got)}")
    items: list[StandardItem] = []
    seen: set[str] = set()
    raw_items = raw.get("items") or []
    if not isinstance(raw_items, list):
        errs.add(f"{where}: items must be a list")
        raw_items = []
    for it in raw_items:
        iw = _where(source, it)
        if not isinstance(it, dict):
            errs.add(f"{iw}: standard item must be a mapping")
            continue
        unknown = set(it) - STANDARD_ITEM_FIELDS
        if unknown:
            errs.add(f"{iw}: standard {item}: unknown field(s) {sorted(unknown)} / 未知字段")
        cid, ctype, pts = it.get("id"), it.get("type"), it.get("points")
        if not isinstance(cid, str) or not cid:
            errs.add(f"{iw}: standard {item}: item id is required")
            continue
        if cid in seen:
            errs.add(f"{iw}: standard {item}: duplicate item {cid} / 重复的质控项")
        seen.add(cid)
        if ctype not in STANDARD_ITEM_TYPES:
            errs.add(f"{iw}: standard {item}: item {cid}: type must be one of {list(STANDARD_ITEM_TYPES)}")
        if not _number(pts) or float(pts) < 0:  # type: ignore[arg-type]
            errs.add(f"{iw}: standard {item}: item {cid}: points must be a number >= 0")
            continue
        items.append(StandardItem(id=cid, type=str(ctype), category=str(it.get("category") or ""),
                                  points=float(pts)))  # type: ignore[arg-type]
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        errs.add(f"{where}: aliases must be a list of item names")
        aliases = []
    modality = raw.get("modality")
    if len(errs.errors) > before or names is None:
        return None
    return Standard(item=item.strip(), name_zh=names[0], name_en=names[1],
                    modality=modality.upper() if isinstance(modality, str) else None, grading=grading,
                    total=float(total), thresholds={str(k): float(v) for k, v in thresholds.items()},
                    items=tuple(items), aliases=tuple(aliases), line=_line(raw))


# -- documents -> ruleset -----------------------------------------------------------------------

def _split_documents(doc: Any, source: str, errs: _Collector) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """A document is a library ({library, rules}), a standard ({item, ...}), or a bundle
    ({libraries: [...], standards: [...]}, the export format)."""
    libs: list[tuple[Any, str]] = []
    stds: list[tuple[Any, str]] = []
    if isinstance(doc, dict) and ("libraries" in doc or "standards" in doc) and "rules" not in doc:
        unknown = set(doc) - {"libraries", "standards", "ruleset_version", "exported_at", "format"}
        if unknown:
            errs.add(f"{_where(source, doc)}: unknown top-level field(s) {sorted(unknown)}")
        for lib in doc.get("libraries") or []:
            libs.append((lib, source))
        for std in doc.get("standards") or []:
            stds.append((std, source))
    elif isinstance(doc, dict) and "rules" in doc:
        libs.append((doc, source))
    elif isinstance(doc, dict) and "item" in doc:
        stds.append((doc, source))
    elif isinstance(doc, list):
        for d in doc:
            a, b = _split_documents(d, source, errs)
            libs += a
            stds += b
    else:
        errs.add(f"{source}: not a rule library, a standard or a ruleset bundle / 既非规则库也非评分标准")
    return libs, stds


def load_ruleset_documents(
    documents: Iterable[tuple[Any, str]],
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    version: str = "unversioned",
) -> Ruleset:
    """Validate parsed documents (each with its source name) into one :class:`Ruleset`.

    Raises :class:`RuleLoadError` listing every problem; nothing is returned on error.
    """
    functions = _default_functions() if functions is None else functions
    errs = _Collector()
    libs: list[tuple[Any, str]] = []
    stds: list[tuple[Any, str]] = []
    for doc, source in documents:
        a, b = _split_documents(doc, source, errs)
        libs += a
        stds += b
    rules: dict[str, Rule] = {}
    first_seen: dict[str, str] = {}
    headers: dict[str, dict[str, Any]] = {}
    for lib, source in libs:
        if not isinstance(lib, dict):
            errs.add(f"{source}: a library must be a mapping")
            continue
        unknown = set(lib) - LIBRARY_FIELDS
        if unknown:
            errs.add(f"{_where(source, lib)}: library: unknown field(s) {sorted(unknown)} / 未知字段")
        name = lib.get("library")
        if not isinstance(name, str) or name not in LIBRARIES:
            errs.add(f"{_where(source, lib, 'library')}: library must be one of {list(LIBRARIES)}, got {name!r}")
            continue
        headers[name] = {"version": lib.get("version", 1)}
        raw_rules = lib.get("rules") or []
        if not isinstance(raw_rules, list):
            errs.add(f"{_where(source, lib, 'rules')}: rules must be a list")
            continue
        for raw in raw_rules:
            rule = _rule(raw, name, source, functions, errs)
            rid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(rid, str):
                here = _where(source, raw)
                if rid in first_seen:
                    errs.add(f"{here}: duplicate rule id {rid} (first at {first_seen[rid]}) / 规则编号重复")
                    continue
                first_seen[rid] = here
            if rule is not None:
                rules[rule.id] = rule
    standards: dict[str, Standard] = {}
    for raw, source in stds:
        std = _standard(raw, source, errs)
        if std is None:
            continue
        if std.item in standards:
            errs.add(f"{_where(source, raw)}: duplicate standard for item {std.item} / 评分标准重复")
            continue
        standards[std.item] = std
    if errs.errors:
        raise RuleLoadError(errs.errors)
    return Ruleset(rules=rules, standards=standards, version=version, libraries=headers, functions=functions)


def read_documents(paths: Iterable[Path]) -> list[tuple[Any, str]]:
    """Parse files (YAML or JSON) into documents; malformed files are errors with their line."""
    docs: list[tuple[Any, str]] = []
    errors: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{path}: cannot read / 无法读取: {exc}")
            continue
        try:
            docs.append((parse_text(text, str(path)), str(path)))
        except RuleLoadError as exc:
            errors.extend(exc.errors)
    if errors:
        raise RuleLoadError(errors)
    return docs


def _ruleset_files(folder: Path) -> list[Path]:
    """The YAML/JSON files directly in a folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if folder.is_dir() else []


def bundled_paths(library_dir: Path | None = None, standards_dir: Path | None = None) -> list[Path]:
    return _ruleset_files(library_dir or LIBRARY_DIR) + _ruleset_files(standards_dir or STANDARDS_DIR)


def load_library(
    paths: Iterable[str | Path] | None = None,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    version: str | None = None,
) -> Ruleset:
    """The bundled library (``qc_rules/library`` + ``qc_rules/standards``) or the given files.

    Its version is ``bundled:<sha256[:12]>`` unless given: the ruleset store assigns real
    version numbers (see :mod:`store`).
    """
    files = [Path(p) for p in paths] if paths is not None else bundled_paths()
    expanded: list[Path] = []
    for p in files:
        expanded += _ruleset_files(p) if p.is_dir() else [p]
    documents = read_documents(expanded)
    ruleset = load_ruleset_documents(documents, functions=functions)
    exported = {str(d["ruleset_version"]) for d, _ in documents if isinstance(d, dict) and d.get("ruleset_version")}
    if version is None and len(exported) == 1 and len(documents) == 1:
        version = exported.pop()  # an export of a store version keeps its number
    ruleset.version = version or f"bundled:{ruleset.content_hash()[:12]}"
    return ruleset


def documents_to_text(documents: Any, fmt: str = "yaml") -> str:
    """Serialise a ruleset bundle (``Ruleset.documents()``) as YAML or JSON."""
    if fmt == "json":
        return json.dumps(documents, ensure_ascii=False, indent=2, default=str) + "\n"
    return yaml.safe_dump(documents, allow_unicode=True, sort_keys=False, width=120)


def compiled_names(compiled: Compiled | None) -> frozenset[str]:
    return compiled.names if compiled is not None else frozenset()
