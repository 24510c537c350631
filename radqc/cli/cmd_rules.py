"""``radqc rules ...``: manage the rule-QC ruleset / 规则库管理.

Thin wrappers over :mod:`radqc.qc_rules.api` (the web layer mounts the same functions).
Every change makes a new draft version recorded with who/when/what; ``publish`` makes a
version the one pipelines use. ``--user`` (default $RADQC_USER, else the OS user) must hold
the permission the operation needs (view / edit / publish) in the workspace's role table.
Exit status: 0 done, 2 refused (validation error, unknown rule/version, no permission).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout

USER_HELP = "Acting user (default $RADQC_USER, else the OS user) / 操作用户"
JSON_HELP = "Machine-readable output / 输出 JSON"


def register(app: typer.Typer) -> None:
    rules = typer.Typer(help="Rule-QC ruleset: rules, standards, versions / 规则质控规则库管理", no_args_is_help=True)
    for name, fn in (("list", rules_list), ("show", rules_show), ("add", rules_add), ("edit", rules_edit),
                     ("disable", rules_disable), ("import", rules_import), ("export", rules_export),
                     ("test", rules_test), ("history", rules_history), ("publish", rules_publish),
                     ("points", rules_points), ("grant", rules_grant)):
        rules.command(name)(fn)
    app.add_typer(rules, name="rules")


@contextmanager
def _store() -> Iterator[Any]:
    """Open the workspace's ruleset store; known errors become one clear line and exit 2."""
    from radqc.qc_rules.api import PermissionDenied, RuleLoadError, StoreError, open_store
    from radqc.workspace import Workspace

    ws = Workspace.open()  # the ruleset lives in this workspace (RADQC_HOME)
    ws.close()
    try:
        yield open_store(str(ws.settings.home))
    except RuleLoadError as exc:
        console.print(f"refused / 已拒绝: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    except (PermissionDenied, StoreError, KeyError, OSError) as exc:
        console.print(f"error / 错误: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def _emit_change(meta: dict[str, Any], as_json: bool) -> None:
    data = {k: v for k, v in meta.items() if k != "documents"}

    def human(d: dict[str, Any]) -> None:
        stdout.print(f"version {d['version']} ({d.get('status', 'draft')}) by {d['created_by']} at {d['created_at']}: "
                     f"{d['summary']}", markup=False, highlight=False, soft_wrap=True)
        stdout.print("not used by pipelines until published: radqc rules publish "
                     f"{d['version']} / 发布后才会生效", markup=False, highlight=False, soft_wrap=True)
    emit(data, as_json, human)


def rules_list(
    version: int = typer.Option(None, "--version", help="Ruleset version (default: newest)."),
    library: str = typer.Option(None, "--library", help="index | image | report"),
    dimension: str = typer.Option(None, "--dimension", help="completeness | timeliness | consistency | standardisation | accuracy"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List rules / 列出规则."""
    from radqc.qc_rules import api

    with _store() as store:
        data = api.list_rules(store, version=version, user=user, library=library, dimension=dimension)

    def human(d: dict[str, Any]) -> None:
        from rich.table import Table

        table = Table(title=f"ruleset v{d['version']} ({d['status']}): {d['count']} rules")
        for col in ("id", "library", "dimension", "severity", "points", "on"):
            table.add_column(col, no_wrap=True)
        table.add_column("name")
        for r in d["rules"]:
            table.add_row(r["id"], r["library"], r["dimension"], r["severity"], f"{r['points']:g}",
                          "yes" if r["enabled"] else "no", f"{r['name_zh']} / {r['name_en']}")
        stdout.print(table)
    emit(data, as_json, human)


def rules_show(
    rule_id: str = typer.Argument(..., help="Rule id or standard item code."),
    version: int = typer.Option(None, "--version"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a rule or an item standard / 查看规则或评分标准."""
    import yaml

    from radqc.qc_rules import api

    with _store() as store:
        data = api.show_rule(store, rule_id, version=version, user=user)
    emit(data, as_json, lambda d: stdout.print(yaml.safe_dump(d, allow_unicode=True, sort_keys=False),
                                               markup=False, highlight=False, soft_wrap=True))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        console.print(f"error / 错误: cannot read {path}: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def rules_add(
    file: Path = typer.Argument(..., help="YAML/JSON: one rule, a list of rules, or a library document."),
    library: str = typer.Option(None, "--library", help="Library for rules that do not say: index | image | report"),
    message: str = typer.Option("", "--message", "-m"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Add rules as a new draft version / 新增规则（生成草稿版本）."""
    from radqc.qc_rules import api

    text = _read(file)
    with _store() as store:
        meta = api.add_rules(store, text, user=user, library=library, message=message, source=str(file))
    _emit_change(meta, as_json)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            console.print(f"error / 错误: --set takes KEY=VALUE, got {pair!r}", markup=False, soft_wrap=True)
            raise typer.Exit(2)
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def rules_edit(
    rule_id: str = typer.Argument(...),
    sets: list[str] = typer.Option([], "--set", help="KEY=VALUE (YAML value; dotted keys: params.max_minutes=60)."),
    file: Path = typer.Option(None, "--file", help="YAML/JSON of the whole new rule."),
    message: str = typer.Option("", "--message", "-m"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Change a rule as a new draft version / 修改规则（生成草稿版本）."""
    from radqc.qc_rules import api
    from radqc.qc_rules.engine.loader import parse_text

    if not sets and file is None:
        console.print("error / 错误: give --set KEY=VALUE or --file", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    with _store() as store:
        if file is not None:
            changes = json.loads(json.dumps(parse_text(_read(file), str(file))))
            meta = api.edit_rule(store, rule_id, changes, user=user, replace=True, message=message)
        else:
            meta = api.edit_rule(store, rule_id, _parse_sets(sets), user=user, message=message)
    _emit_change(meta, as_json)


def rules_disable(
    rule_id: str = typer.Argument(...),
    enable: bool = typer.Option(False, "--enable", help="Enable it again."),
    message: str = typer.Option("", "--message", "-m"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Disable (or --enable) a rule as a new draft version / 停用或启用规则."""
    from radqc.qc_rules import api

    with _store() as store:
        meta = api.disable_rule(store, rule_id, user=user, enable=enable, message=message)
    _emit_change(meta, as_json)


def rules_import(
    file: Path = typer.Argument(None, help="YAML/JSON (library, standard, list, exported bundle) or a CSV of rules."),
    bundled: bool = typer.Option(False, "--bundled", help="Import the library shipped with this release instead."),
    replace: bool = typer.Option(False, "--replace", help="The file is the whole new ruleset (default: merge by id)."),
    message: str = typer.Option("", "--message", "-m"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Import rules and standards as a new draft version / 导入规则库."""
    from radqc.qc_rules import api

    if bundled == (file is not None):
        console.print("error / 错误: give a FILE or --bundled", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    if file is not None:
        _read(file)
    with _store() as store:
        if bundled:
            meta = api.import_bundled(store, user=user, message=message)
        else:
            meta = api.import_ruleset(store, file, user=user, replace=replace, message=message)
    _emit_change(meta, as_json)


def rules_export(
    file: str = typer.Argument("-", help="Output file, or - for stdout."),
    fmt: str = typer.Option(None, "--format", help="yaml | json | csv (rules as a spreadsheet; default from the file name, else yaml)."),
    version: int = typer.Option(None, "--version"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
) -> None:
    """Export a ruleset version as YAML or JSON / 导出规则库."""
    from radqc.qc_rules import api

    chosen = fmt or ("json" if file.endswith(".json") else "csv" if file.endswith(".csv") else "yaml")
    if chosen not in ("yaml", "json", "csv"):
        console.print("error / 错误: --format is yaml, json or csv", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    with _store() as store:
        text = api.export_ruleset(store, version=version, fmt=chosen, user=user)
    if file == "-":
        typer.echo(text, nl=False)
    else:
        Path(file).write_text(text, encoding="utf-8")
        console.print(f"exported to {file} / 已导出", markup=False, soft_wrap=True)


def rules_test(
    version: int = typer.Option(None, "--version", help="Ruleset version to (re-)run (default: newest)."),
    facts: Path = typer.Option(None, "--facts", help="JSON Lines (or a JSON list) of exam facts to score."),
    exams: str = typer.Option(None, "--exams", help="Catalogue exams to score: ids/UIDs/accession numbers, or 'all'."),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run a version's embedded examples, and score exam facts or catalogue exams with it / 测试规则集版本."""
    from radqc.qc_rules import api

    rows = api.read_facts_file(facts) if facts is not None else None
    with _store() as store:
        if exams is not None:
            from radqc.workspace import Workspace

            store.require(api.current_user(user), "view")
            ws = Workspace.open()
            try:
                refs = None if exams.strip().lower() == "all" else [e.strip() for e in exams.split(",") if e.strip()]
                try:
                    rows = (rows or []) + api.catalogue_facts(ws, refs)
                except ValueError as exc:  # unknown exam
                    console.print(f"error / 错误: {exc}", markup=False, soft_wrap=True)
                    raise typer.Exit(2) from exc
            finally:
                ws.close()
        data = api.test_version(store, version=version, user=user, facts=rows)

    def human(d: dict[str, Any]) -> None:
        ok = not d["example_failures"]
        stdout.print(f"ruleset v{d['version']}: {d['rules']} rules, {d['examples']} examples, "
                     f"{len(d['example_failures'])} failing {'✓' if ok else '✗'}", markup=False, soft_wrap=True)
        for p in d["example_failures"]:
            stdout.print(f"  {p['rule_id']} {p['example']}: {p['error']}", markup=False, soft_wrap=True)
        for r in d.get("results", []):
            stdout.print(f"{r['accession_number']}: {r['score']:g} ({r['grade']}), {len(r['failures'])} deduction(s)",
                         markup=False, soft_wrap=True)
            for f in r["failures"]:
                stdout.print(f"  -{f['points']:g} {f['rule_id']}: {f['reason']}", markup=False, soft_wrap=True)
    emit(data, as_json, human)
    if data["example_failures"]:
        raise typer.Exit(1)


def rules_history(
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ruleset versions with who/when/what / 版本历史."""
    from radqc.qc_rules import api

    with _store() as store:
        data = api.history(store, user=user)

    def human(d: dict[str, Any]) -> None:
        for v in d["versions"]:
            stdout.print(f"v{v['version']} [{v['status']}] {v['created_at']} {v['created_by']} {v['action']}: "
                         f"{v['summary']}{' — ' + v['message'] if v.get('message') else ''}", markup=False, soft_wrap=True)
    emit(data, as_json, human)


def rules_publish(
    version: int = typer.Argument(None, help="Version to publish (default: newest)."),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Publish a version: pipelines and the hospital check use it from now on / 发布规则集版本."""
    from radqc.qc_rules import api

    with _store() as store:
        data = api.publish(store, version, user=user)
    emit(data, as_json, lambda d: stdout.print(f"published v{d['published']} by {d['published_by']} / 已发布",
                                               markup=False, soft_wrap=True))


def rules_points(
    item: str = typer.Argument(..., help="Exam item standard code, e.g. CT-CHEST-PLAIN."),
    check: str = typer.Argument(None, help="Rule or image-check id (omit to list the standard's items)."),
    set_points: float = typer.Option(None, "--set", help="New points (单项分值)."),
    remove: bool = typer.Option(False, "--remove", help="Remove the item from the standard."),
    check_type: str = typer.Option(None, "--type", help="image | report | index (for a new item)."),
    category: str = typer.Option(None, "--category"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Query, set, change or remove a QC item's points in an item standard / 单项分值配置."""
    from radqc.qc_rules import api

    with _store() as store:
        if set_points is None and not remove:
            std = api.show_rule(store, item, user=user)
            if std["kind"] != "standard":
                console.print(f"error / 错误: {item} is not an item standard", markup=False, soft_wrap=True)
                raise typer.Exit(2)
            items = std["standard"]["items"]
            data: dict[str, Any] = {"version": std["version"], "item": item,
                                    "items": [i for i in items if check is None or i["id"] == check]}
            emit(data, as_json, lambda d: [stdout.print(f"{i['id']} [{i['type']}/{i['category']}]: {i['points']:g}",
                                                        markup=False, soft_wrap=True) for i in d["items"]])
            return
        if check is None:
            console.print("error / 错误: name the check to change", markup=False, soft_wrap=True)
            raise typer.Exit(2)
        meta = api.set_points(store, item, check, None if remove else set_points, user=user, check_type=check_type,
                              category=category)
    _emit_change(meta, as_json)


def rules_grant(
    target: str = typer.Argument(..., help="User name."),
    level: str = typer.Argument(..., help="view | edit | publish | none"),
    user: str = typer.Option(None, "--user", help=USER_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Set a user's permission level (needs publish) / 设置用户权限."""
    with _store() as store:
        roles = store.grant(target, None if level == "none" else level, user=user)
    emit(roles, as_json, lambda d: stdout.print(f"{target}: {level}", markup=False, soft_wrap=True))


