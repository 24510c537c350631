"""``radqc rules ...``: versions with who/when/what, permissions, validation errors, import/export,
re-running an old version, and single-item points — through the real CLI and workspace."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radqc.cli.main import app
from radqc.qc_rules.engine.loader import load_ruleset_documents, parse_text
from radqc.qc_rules.engine.store import RulesetStore
from tests.test_rules_stage import LIBRARY

STANDARD = textwrap.dedent("""\
    item: DX-CHEST-PA
    name: {zh: 胸部正位, en: Chest PA}
    modality: DX
    grading: radiograph
    total: 100
    thresholds: {甲: 90, 乙: 75, 丙: 60, 丁: 0}
    items:
      - {id: S-DOC, type: report, category: consistency, points: 20}
    """)

NEW_RULE = textwrap.dedent("""\
    id: S-IMP
    name: {zh: 诊断意见必填, en: Impression present}
    dimension: completeness
    severity: major
    points: 10
    fields: [impression]
    expr: "len(strip(impression)) > 0"
    message: {zh: 诊断意见缺失, en: impression missing}
    examples: {pass: [{impression: 未见异常}], fail: [{impression: ""}]}
    """)


def cli_ruleset():  # noqa: ANN201
    docs = [(parse_text(LIBRARY, "lib"), "lib"), (parse_text(STANDARD, "std"), "std")]
    return load_ruleset_documents(docs, functions={})


@pytest.fixture
def rules_cli(workspace, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RADQC_USER", "chief")
    store = RulesetStore(workspace.settings.home / "rulesets", functions={}, bootstrap=cli_ruleset)
    store.ensure_initialised()
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> dict | str:
        result = runner.invoke(app, ["rules", *args])
        assert result.exit_code == code, (args, result.output)
        if "--json" in args and code == 0:
            return json.loads(result.stdout)
        return result.output
    return run


def test_rules_cli_versions_permissions_and_validation(rules_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = rules_cli
    listed = run("list", "--json")
    assert listed["version"] == 1 and listed["status"] == "published" and listed["count"] == 5
    assert listed["standards"] == ["DX-CHEST-PA"]
    shown = run("show", "S-DOC", "--json")
    assert shown["rule"]["when"] == "review_doctor != None"

    # permissions: view by default; edit granted; publish reserved
    assert "permission" in run("disable", "S-DOC", "--user", "intern", code=2)
    run("grant", "editor", "edit", "--json")
    changed = run("disable", "S-DOC", "--user", "editor", "-m", "noisy", "--json")
    assert changed["version"] == 2 and changed["created_by"] == "editor" and changed["status"] == "draft"
    assert changed["summary"] == "~rules S-DOC(enabled)"
    assert "publish" in run("publish", "2", "--user", "editor", code=2)
    assert run("list", "--json", "--version", "1")["rules"][1]["enabled"] is True

    # validation: nothing saved on error
    out = run("edit", "S-ID", "--set", "exprr=len(id_number) == 18", "--user", "editor", code=2)
    assert "unknown field 'exprr'" in out
    out = run("edit", "S-ID", "--set", "expr=len(id_number) ** 2", "--user", "editor", code=2)
    assert "'**' is not allowed" in out
    out = run("edit", "S-ID", "--set", "expr=len(id_number) == 17", "--user", "editor", code=2)
    assert "must pass" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(NEW_RULE.replace("severity: major", "severity: [major"), encoding="utf-8")
    out = run("add", str(bad), "--library", "report", "--user", "editor", code=2)
    assert "malformed YAML" in out and "line" in out
    assert run("history", "--json")["head"] == 2

    edited = run("edit", "S-ID", "--set", "points=7", "--user", "editor", "--json")
    assert edited["version"] == 3 and edited["diff"]["rules_changed"] == {"S-ID": ["points"]}
    good = tmp_path / "new.yaml"
    good.write_text(NEW_RULE, encoding="utf-8")
    added = run("add", str(good), "--library", "report", "--user", "editor", "--json")
    assert added["version"] == 4 and added["diff"]["rules_added"] == ["S-IMP"]
    assert "exists" in run("add", str(good), "--library", "report", "--user", "editor", code=2)

    # single-item points in a standard
    pts = run("points", "DX-CHEST-PA", "--json")
    assert pts["items"] == [{"id": "S-DOC", "type": "report", "category": "consistency", "points": 20.0}]
    run("points", "DX-CHEST-PA", "S-IMP", "--set", "15", "--user", "editor", "--json")
    run("points", "DX-CHEST-PA", "S-DOC", "--remove", "--user", "editor", "--json")
    pts = run("points", "DX-CHEST-PA", "--json")
    assert [(i["id"], i["points"], i["type"]) for i in pts["items"]] == [("S-IMP", 15.0, "report")]

    # publish; history has who/when/what
    assert run("publish", "--json")["published"] == 6
    hist = run("history", "--json")
    assert [v["status"] for v in hist["versions"]] == ["superseded", "draft", "draft", "draft", "draft", "published"]
    assert hist["versions"][1]["created_by"] == "editor" and hist["versions"][1]["message"] == "noisy"
    assert all(v["created_at"] for v in hist["versions"])


def test_rules_cli_export_import_and_rerun_old_version(rules_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = rules_cli
    run("edit", "S-ACC", "--set", "points=9", "--json")
    exported = tmp_path / "v1.json"
    run("export", str(exported), "--version", "1")
    bundle = json.loads(exported.read_text(encoding="utf-8"))
    assert bundle["ruleset_version"] == 1 and bundle["libraries"][0]["rules"][0]["points"] == 5
    yaml_out = run("export", "-", "--format", "yaml")
    assert "S-ACC" in yaml_out and "points: 9" in yaml_out
    imported = run("import", str(exported), "--json")  # back to v1's content as v3
    assert imported["version"] == 3 and imported["diff"]["rules_changed"] == {"S-ACC": ["points"]}

    facts = tmp_path / "facts.jsonl"
    exam = {"accession_number": "DX1", "modality": "DX", "exam_items": ["胸部正位"], "report_doctor": "王",
            "review_doctor": "王", "id_number": "123", "patient_name": "李"}
    facts.write_text(json.dumps(exam, ensure_ascii=False) + "\n", encoding="utf-8")
    old = run("test", "--version", "1", "--facts", str(facts), "--json")
    assert old["version"] == 1 and old["example_failures"] == [] and old["examples"] > 0
    result = old["results"][0]
    assert result["ruleset_version"] == "1" and result["standard"] == "DX-CHEST-PA"
    by_id = {f["rule_id"]: f for f in result["failures"]}
    assert set(by_id) == {"S-DOC", "S-ID", "S-IMG"}
    assert by_id["S-DOC"]["points"] == 20 and by_id["S-ID"]["points"] == 5
    assert result["score"] == 75 and result["grade"] == "乙"
    assert by_id["S-ID"]["reason"] == "身份证号长度错误：123 / ID number length wrong: 123"
    assert run("test", "--version", "9", code=2).startswith("error")


def test_rules_cli_spreadsheet_round_trip(rules_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import csv

    run = rules_cli
    sheet = tmp_path / "rules.csv"
    run("export", str(sheet))
    raw = sheet.read_bytes()
    assert raw.startswith("\ufeff".encode())  # Excel opens UTF-8 with a BOM
    rows = list(csv.DictReader(sheet.read_text(encoding="utf-8-sig").splitlines()))
    assert [r["id"] for r in rows] == ["S-ACC", "S-DOC", "S-ID", "S-NAME", "S-IMG"]
    for r in rows:
        if r["id"] == "S-ID":
            r["points"] = "8"
    with sheet.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = run("import", str(sheet), "--json")
    assert meta["diff"]["rules_changed"] == {"S-ID": ["points"]}
    assert run("show", "S-ID", "--json")["rule"]["points"] == 8
    rows[0]["params"] = "{not json"
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert "row 2" in run("import", str(sheet), code=2)
