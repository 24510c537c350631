"""Rule QC operations for the CLI today and the web layer later (same functions, plain data).

Every function takes the store (or opens the workspace's), a ``user`` (checked against the
role table: view / edit / publish) and returns JSON-able dicts. Changes never edit a version
in place: they copy the newest version's documents, apply the change, validate the whole
ruleset (all or nothing) and save it as a new draft version (see :mod:`engine.store`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from radqc.qc_rules.engine.evaluate import evaluate_exam
from radqc.qc_rules.engine.expr import EvalError
from radqc.qc_rules.engine.loader import (
    RuleLoadError,
    documents_to_text,
    load_ruleset_documents,
    parse_text,
    run_example,
)
from radqc.qc_rules.engine.store import LEVELS, PermissionDenied, RulesetStore, StoreError, current_user

__all__ = [
    "LEVELS", "PermissionDenied", "RuleLoadError", "StoreError", "add_rules", "disable_rule", "edit_rule",
    "catalogue_facts", "evaluate_facts", "export_ruleset", "history", "import_bundled", "import_ruleset", "list_rules", "open_store", "publish",
    "set_points", "show_rule", "test_version",
]


def open_store(home: str | None = None) -> RulesetStore:
    store = RulesetStore.for_home(home)
    store.ensure_initialised()
    return store


def _view(store: RulesetStore, user: str | None) -> str:
    who = current_user(user)
    store.ensure_initialised(who)
    store.require(who, "view")
    return who


def _rule_row(rule: Any) -> dict[str, Any]:
    return {"id": rule.id, "library": rule.library, "dimension": rule.dimension, "severity": rule.severity,
            "points": rule.points, "enabled": rule.enabled, "name_zh": rule.name_zh, "name_en": rule.name_en,
            "modalities": list(rule.modalities), "items": list(rule.items)}


def list_rules(store: RulesetStore, *, version: int | None = None, user: str | None = None,
               library: str | None = None, dimension: str | None = None, include_disabled: bool = True) -> dict[str, Any]:
    _view(store, user)
    rs = store.ruleset(version)
    rows = [_rule_row(r) for r in rs.rules.values()
            if (library is None or r.library == library) and (dimension is None or r.dimension == dimension)
            and (include_disabled or r.enabled)]
    return {"version": int(rs.version), "status": store.meta(int(rs.version))["status"], "count": len(rows),
            "rules": rows, "standards": sorted(rs.standards)}


def show_rule(store: RulesetStore, rule_id: str, *, version: int | None = None, user: str | None = None) -> dict[str, Any]:
    _view(store, user)
    rs = store.ruleset(version)
    if rule_id in rs.rules:
        return {"version": int(rs.version), "kind": "rule", "library": rs.rules[rule_id].library,
                "rule": rs.rules[rule_id].to_dict()}
    if rule_id in rs.standards:
        return {"version": int(rs.version), "kind": "standard", "standard": rs.standards[rule_id].to_dict()}
    raise StoreError(f"no rule or standard {rule_id!r} in version {rs.version} / 规则或评分标准不存在")


def _rules_index(docs: Mapping[str, Any]) -> dict[str, tuple[dict[str, Any], int]]:
    out = {}
    for lib in docs.get("libraries", []):
        for k, r in enumerate(lib.get("rules", [])):
            out[r["id"]] = (lib, k)
    return out


def _lib(docs: dict[str, Any], name: str) -> dict[str, Any]:
    for lib in docs.setdefault("libraries", []):
        if lib.get("library") == name:
            return lib
    lib = {"library": name, "version": 1, "rules": []}
    docs["libraries"].append(lib)
    return lib


def _parse_input(text_or_data: str | Mapping[str, Any] | list[Any], source: str) -> Any:
    if isinstance(text_or_data, str):
        return parse_text(text_or_data, source)
    return text_or_data


def add_rules(store: RulesetStore, data: str | Mapping[str, Any] | list[Any], *, user: str | None = None,
              library: str | None = None, message: str = "", source: str = "<input>") -> dict[str, Any]:
    """Add rules: a single rule mapping (``library`` says where), a list of rules, or a
    library document ({library, rules}). An id that exists is an error (use edit)."""
    parsed = _parse_input(data, source)
    docs = copy.deepcopy(store.documents())
    index = _rules_index(docs)
    if isinstance(parsed, dict) and "rules" in parsed:
        target, rules = parsed.get("library"), parsed.get("rules") or []
    else:
        target, rules = library, parsed if isinstance(parsed, list) else [parsed]
    for r in rules:
        lib_name = (r.get("library") if isinstance(r, dict) else None) or target
        if lib_name is None:
            raise StoreError("say which library the rule belongs to (--library index|image|report) / 请指定规则库")
        rid = r.get("id") if isinstance(r, dict) else None
        if rid in index:
            raise StoreError(f"rule {rid} exists already; use edit / 规则 {rid} 已存在，请使用 edit")
        rule = {k: v for k, v in dict(r).items() if k != "library"} if isinstance(r, dict) else r
        _lib(docs, lib_name)["rules"].append(rule)
    return store.commit(docs, user=user, action="add", message=message)


def edit_rule(store: RulesetStore, rule_id: str, changes: Mapping[str, Any], *, user: str | None = None,
              replace: bool = False, message: str = "") -> dict[str, Any]:
    """Change fields of a rule (``replace``: the mapping is the whole new rule). Nested keys
    may be given dotted (``applies_to.modalities``, ``params.max_minutes``)."""
    docs = copy.deepcopy(store.documents())
    index = _rules_index(docs)
    if rule_id not in index:
        raise StoreError(f"no rule {rule_id!r} / 规则不存在")
    lib, k = index[rule_id]
    if replace:
        new = dict(changes)
        new.setdefault("id", rule_id)
    else:
        new = copy.deepcopy(lib["rules"][k])
        for key, value in changes.items():
            target = new
            parts = key.split(".")
            for p in parts[:-1]:
                target = target.setdefault(p, {})
            if value is None:
                target.pop(parts[-1], None)
            else:
                target[parts[-1]] = value
    lib["rules"][k] = new
    return store.commit(docs, user=user, action="edit", message=message or f"edit {rule_id}")


def disable_rule(store: RulesetStore, rule_id: str, *, user: str | None = None, enable: bool = False,
                 message: str = "") -> dict[str, Any]:
    return edit_rule(store, rule_id, {"enabled": None if enable else False}, user=user,
                     message=message or f"{'enable' if enable else 'disable'} {rule_id}")


def set_points(store: RulesetStore, item: str, check_id: str, points: float | None, *, user: str | None = None,
               check_type: str | None = None, category: str | None = None, message: str = "") -> dict[str, Any]:
    """单项分值配置: set, change or (``points=None``) remove a QC item's points in an item standard."""
    docs = copy.deepcopy(store.documents())
    stds = {s["item"]: s for s in docs.get("standards", [])}
    if item not in stds:
        raise StoreError(f"no standard for item {item!r} / 评分标准不存在")
    std = stds[item]
    items = std.setdefault("items", [])
    found = next((it for it in items if it["id"] == check_id), None)
    if points is None:
        if found is None:
            raise StoreError(f"{check_id} is not in standard {item} / 该质控项不在评分标准中")
        items.remove(found)
    elif found is not None:
        found["points"] = points
        if category:
            found["category"] = category
    else:
        rs = store.ruleset()
        rule = rs.rules.get(check_id)
        ctype = check_type or (rule.library if rule is not None else "image")
        items.append({"id": check_id, "type": ctype, "category": category or (rule.dimension if rule else "general"),
                      "points": points})
    return store.commit(docs, user=user, action="points", message=message or f"{item}: {check_id} -> {points}")


def import_ruleset(store: RulesetStore, path: str | Path, *, user: str | None = None, replace: bool = False,
                   message: str = "") -> dict[str, Any]:
    """Import a YAML/JSON file (a library, a standard, a list of them, or an exported bundle).

    Merge (default): rules and standards in the file replace those with the same id and are
    added otherwise. ``replace``: the file is the whole new ruleset. Validated as a whole first.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    parsed = rules_from_csv(text, str(path)) if path.suffix.lower() == ".csv" else parse_text(text, str(path))
    incoming = load_ruleset_documents([(parsed, str(path))], functions=store.functions).documents()
    if replace:
        docs = incoming
    else:
        docs = copy.deepcopy(store.documents())
        index = _rules_index(docs)
        for lib in incoming["libraries"]:
            for rule in lib["rules"]:
                if rule["id"] in index:
                    old_lib, k = index[rule["id"]]
                    old_lib["rules"][k] = rule
                else:
                    _lib(docs, lib["library"])["rules"].append(rule)
        stds = {s["item"]: k for k, s in enumerate(docs.setdefault("standards", []))}
        for std in incoming["standards"]:
            if std["item"] in stds:
                docs["standards"][stds[std["item"]]] = std
            else:
                docs["standards"].append(std)
    return store.commit(docs, user=user, action="import", message=message or f"import {path.name}")


def import_bundled(store: RulesetStore, *, user: str | None = None, message: str = "") -> dict[str, Any]:
    """The library shipped with this RadQC release as a new draft version (after an upgrade)."""
    from radqc.qc_rules.engine.loader import load_library

    docs = load_library(functions=store.functions).documents()
    return store.commit(docs, user=user, action="import", message=message or "bundled rule library / 内置规则库")


#: Spreadsheet columns (CSV, UTF-8 with BOM so Excel opens it); nested values are JSON cells.
CSV_COLUMNS = ("id", "library", "name_zh", "name_en", "dimension", "severity", "points", "modalities", "items",
               "fields", "when", "expr", "message_zh", "message_en", "params", "examples", "enabled")


def rules_to_csv(docs: Mapping[str, Any]) -> str:
    """The rules of a bundle as one spreadsheet row each (standards stay YAML/JSON)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for lib in docs.get("libraries", []):
        for r in lib.get("rules", []):
            applies = r.get("applies_to") or {}
            writer.writerow([
                r["id"], lib["library"], r["name"]["zh"], r["name"]["en"], r["dimension"], r["severity"], r["points"],
                "|".join(applies.get("modalities") or []), "|".join(applies.get("items") or []),
                "|".join(r.get("fields") or []), r.get("when") or "", r["expr"], r["message"]["zh"], r["message"]["en"],
                json.dumps(r.get("params") or {}, ensure_ascii=False),
                json.dumps(r.get("examples") or {}, ensure_ascii=False), "false" if r.get("enabled") is False else "true",
            ])
    return "\ufeff" + out.getvalue()


def rules_from_csv(text: str, source: str = "<csv>") -> dict[str, Any]:
    """A spreadsheet of rules (as :func:`rules_to_csv` writes it) back to a bundle; bad cells
    are errors naming the row."""
    import csv
    import io

    errors: list[str] = []
    libraries: dict[str, list[dict[str, Any]]] = {}
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
    if missing:
        raise RuleLoadError([f"{source}: missing column(s) {sorted(missing)} / 缺少列"])
    for line, row in enumerate(reader, 2):
        try:
            rule: dict[str, Any] = {
                "id": row["id"], "name": {"zh": row["name_zh"], "en": row["name_en"]},
                "dimension": row["dimension"], "severity": row["severity"], "points": float(row["points"]),
                "applies_to": {"modalities": [m for m in row["modalities"].split("|") if m],
                               "items": [i for i in row["items"].split("|") if i]},
                "fields": [f for f in row["fields"].split("|") if f], "expr": row["expr"],
                "message": {"zh": row["message_zh"], "en": row["message_en"]},
                "params": json.loads(row["params"] or "{}"), "examples": json.loads(row["examples"] or "{}"),
            }
        except (ValueError, TypeError) as exc:
            errors.append(f"{source}: row {line} (rule {row.get('id')}): bad cell / 单元格格式错误: {exc}")
            continue
        if row.get("when"):
            rule["when"] = row["when"]
        if (row.get("enabled") or "true").strip().lower() in ("false", "0", "no", "否"):
            rule["enabled"] = False
        libraries.setdefault(row["library"], []).append(rule)
    if errors:
        raise RuleLoadError(errors)
    return {"libraries": [{"library": name, "rules": rules} for name, rules in libraries.items()]}


def export_ruleset(store: RulesetStore, *, version: int | None = None, fmt: str = "yaml",
                   user: str | None = None) -> str:
    """YAML or JSON bundle (rules + standards), or ``csv``: the rules as a spreadsheet."""
    _view(store, user)
    n = version or store.head()
    docs = {"ruleset_version": n, **store.documents(n)}
    if fmt == "csv":
        return rules_to_csv(docs)
    return documents_to_text(docs, fmt)


def publish(store: RulesetStore, version: int | None = None, *, user: str | None = None) -> dict[str, Any]:
    return store.publish(version, user=user)


def history(store: RulesetStore, *, user: str | None = None) -> dict[str, Any]:
    _view(store, user)
    return {"published": store.published_version(), "head": store.head(), "versions": store.history()}


def test_version(store: RulesetStore, *, version: int | None = None, user: str | None = None,
                 facts: Iterable[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Re-run a version: every rule's embedded examples, and with ``facts`` each exam's score
    under that version (results carry ``ruleset_version``)."""
    _view(store, user)
    rs = store.ruleset(version)
    problems = []
    n_examples = 0
    for rule in rs.rules.values():
        for kind, examples in (("pass", rule.examples_pass), ("fail", rule.examples_fail)):
            for k, example in enumerate(examples, 1):
                n_examples += 1
                try:
                    got = run_example(rule, example)
                except EvalError as exc:
                    problems.append({"rule_id": rule.id, "example": f"{kind}[{k}]", "error": str(exc)})
                    continue
                if (kind == "pass" and got is False) or (kind == "fail" and got is not False):
                    problems.append({"rule_id": rule.id, "example": f"{kind}[{k}]", "error": "unexpected outcome"})
    out: dict[str, Any] = {"version": int(rs.version), "rules": len(rs.rules), "examples": n_examples,
                           "example_failures": problems}
    if facts is not None:
        out["results"] = []
        for f in facts:
            result = evaluate_exam(f, rs).to_dict()
            if "exam_id" in f:
                result["exam_id"] = f["exam_id"]
            out["results"].append(result)
    return out


def catalogue_facts(workspace: Any, exams: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Facts of catalogue exams (ids, StudyInstanceUIDs or accession numbers; None = all),
    identifiers decrypted with the workspace vault, for re-running a version over real exams."""
    from radqc.pipelines.runner.ledger import resolve_exams
    from radqc.qc_rules.facts import facts_for_exam

    with workspace.sessions() as session:
        ids = resolve_exams(session, list(exams) if exams is not None else None)
    out = []
    for exam_id in ids:
        facts = facts_for_exam(workspace, exam_id)
        facts["exam_id"] = exam_id
        out.append(facts)
    return out


def evaluate_facts(store: RulesetStore, facts: Mapping[str, Any], *, version: int | None = None) -> dict[str, Any]:
    """Score one exam's facts with the published ruleset (or a given version)."""
    rs = store.ruleset(version) if version else store.published()
    return evaluate_exam(facts, rs).to_dict()


def read_facts_file(path: str | Path) -> list[dict[str, Any]]:
    """JSON Lines or a JSON list of facts dicts (for ``radqc rules test --facts``)."""
    text = Path(path).read_text(encoding="utf-8-sig").strip()
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]
