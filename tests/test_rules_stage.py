"""The ``rule_qc`` stage end to end: synthetic set -> ingest -> run -> results per exam with
the published ruleset version; identifiers decrypted; drafts not used; publishing re-runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.pipelines.runner.local import run_pipeline
from radqc.qc_rules import api
from radqc.qc_rules.engine.evaluate import evaluate_exam
from radqc.qc_rules.engine.loader import load_ruleset_documents, parse_text
from radqc.qc_rules.engine.store import RulesetStore

# Only engine built-ins: this test does not depend on the library part's functions.
LIBRARY = textwrap.dedent("""\
    library: index
    rules:
      - id: S-ACC
        name: {zh: 检查号必填, en: Accession present}
        dimension: completeness
        severity: major
        points: 5
        fields: [accession_number]
        expr: "len(strip(accession_number)) > 0"
        message: {zh: 检查号缺失, en: accession number missing}
        examples: {pass: [{accession_number: A1}], fail: [{accession_number: " "}]}
      - id: S-DOC
        name: {zh: 报告与审核医生不同, en: Report and review doctor differ}
        dimension: consistency
        severity: major
        points: 10
        fields: [report_doctor, review_doctor]
        when: "review_doctor != None"
        expr: "report_doctor != review_doctor"
        message: {zh: "报告医生与审核医生相同：{value}", en: "same doctor: {value}"}
        examples: {pass: [{report_doctor: a, review_doctor: b}], fail: [{report_doctor: a, review_doctor: a}]}
      - id: S-ID
        name: {zh: 身份证号18位, en: ID number has 18 characters}
        dimension: completeness
        severity: major
        points: 5
        fields: [id_number]
        expr: "len(id_number) == 18"
        message: {zh: "身份证号长度错误：{value}", en: "ID number length wrong: {value}"}
        examples: {pass: [{id_number: "330102198005061234"}], fail: [{id_number: "3301"}, {}]}
      - id: S-NAME
        name: {zh: 姓名必填, en: Patient name present}
        dimension: completeness
        severity: major
        points: 5
        fields: [patient_name]
        expr: "len(strip(patient_name)) > 0"
        message: {zh: 姓名缺失, en: patient name missing}
        examples: {pass: [{patient_name: 王}], fail: [{}]}
      - id: S-IMG
        name: {zh: 有影像, en: Has images}
        dimension: accuracy
        severity: info
        points: 0
        fields: [series_count, instance_count]
        expr: "series_count != None and instance_count >= series_count"
        message: {zh: 无影像, en: no images}
        examples: {pass: [{series_count: 1, instance_count: 3}], fail: [{}]}
    """)
CHECKED = ("S-ACC", "S-DOC", "S-ID", "S-NAME")


def stage_ruleset():  # noqa: ANN201
    return load_ruleset_documents([(parse_text(LIBRARY, "stage-lib"), "stage-lib")], functions={})


@pytest.fixture
def generated(workspace, tmp_path: Path):  # type: ignore[no-untyped-def]
    from radqc.datasets.synthetic.generate import generate_set, ingest_generated_set

    out = tmp_path / "set"
    generate_set(out, 6, seed=7, profile_name="mixed")
    ingest_generated_set(workspace, out, workers=1)
    store = RulesetStore(workspace.settings.home / "rulesets", functions={}, bootstrap=stage_ruleset)
    store.ensure_initialised("qc-admin")
    records = {}
    for line in (out / "records" / "exams.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("hospital_code") and rec.get("accession_number"):
            records.setdefault(rec["accession_number"], rec)  # the first (good) line of a re-send
    return store, records


def _results(workspace) -> dict[int, m.LedgerEntry]:  # type: ignore[no-untyped-def]
    with workspace.sessions() as s:
        rows = s.scalars(select(m.LedgerEntry).where(m.LedgerEntry.stage == "rule_qc", m.LedgerEntry.status == "succeeded")
                         .order_by(m.LedgerEntry.id)).all()
        return {r.exam_id: r for r in rows}


def test_rule_qc_stage_end_to_end(workspace, generated) -> None:  # type: ignore[no-untyped-def]
    store, records = generated
    with workspace.sessions() as s:
        n_exams = s.scalar(select(m.Exam.id).order_by(m.Exam.id.desc()).limit(1))
        exam_count = len(s.scalars(select(m.Exam.id)).all())
    assert n_exams
    summary = run_pipeline(workspace, ["rule_qc"], workers=2).to_dict()
    assert summary["stages"]["rule_qc"]["succeeded"] == exam_count, summary["errors"]
    rows = _results(workspace)
    assert len(rows) == exam_count
    compared = 0
    for row in rows.values():
        result = row.result
        assert result["ruleset_version"] == "1" and row.manifest["versions"]["ruleset"] == "1"
        assert row.manifest["stage_manifest"]["ruleset_version"] == "1"
        assert result["identifiers_available"] is True and result["skipped"] == []
        assert 0 <= result["score"] <= 100 and result["grade"]
        record = records.get(result["accession_number"])
        if record is None:
            continue
        # the catalogue path (ingest -> encrypted identifiers -> facts) agrees with the raw record
        expected = evaluate_exam(record, store.ruleset(1))
        want = {f.rule_id for f in expected.failures} & set(CHECKED)
        got = {f["rule_id"] for f in result["failures"]} & set(CHECKED)
        assert got == want, (result["accession_number"], got, want)
        assert "S-IMG" not in {f["rule_id"] for f in result["failures"]}  # images were linked
        compared += 1
    assert compared >= 4

    # the same version re-run over the catalogue from the CLI gives the stage's outcome per exam
    from typer.testing import CliRunner

    from radqc.cli.main import app

    out = CliRunner().invoke(app, ["rules", "test", "--version", "1", "--exams", "all", "--json", "--user", "qc-admin"])
    assert out.exit_code == 0, out.output
    rerun = {r["exam_id"]: r for r in json.loads(out.stdout)["results"]}
    assert set(rerun) == set(rows)
    for exam_id, row in rows.items():
        assert rerun[exam_id]["ruleset_version"] == "1"
        assert {f["rule_id"] for f in rerun[exam_id]["failures"]} == {f["rule_id"] for f in row.result["failures"]}
        assert rerun[exam_id]["score"] == row.result["score"]
    bad = CliRunner().invoke(app, ["rules", "test", "--exams", "NO-SUCH-EXAM", "--user", "qc-admin"])
    assert bad.exit_code == 2

    # unchanged on a second run; a draft is not used; publishing re-runs every exam
    again = run_pipeline(workspace, ["rule_qc"]).to_dict()
    assert again["stages"]["rule_qc"]["unchanged"] == exam_count
    draft = api.disable_rule(store, "S-DOC", user="qc-admin")
    assert draft["version"] == 2
    assert run_pipeline(workspace, ["rule_qc"]).to_dict()["stages"]["rule_qc"]["unchanged"] == exam_count
    api.publish(store, 2, user="qc-admin")
    third = run_pipeline(workspace, ["rule_qc"]).to_dict()
    assert third["stages"]["rule_qc"]["succeeded"] == exam_count
    for row in _results(workspace).values():
        assert row.result["ruleset_version"] == "2"
        assert "S-DOC" not in {f["rule_id"] for f in row.result["failures"]}


def test_stage_without_the_workspace_skips_identifier_rules(workspace, generated, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A worker that cannot open the workspace (a remote node) reports identifier rules as skipped."""
    from radqc.pipelines.stages import rule_qc as stage

    monkeypatch.setattr(stage, "process_workspace", lambda store=None: None)
    summary = run_pipeline(workspace, ["rule_qc"]).to_dict()
    assert summary["stages"]["rule_qc"]["failed"] == 0
    for row in _results(workspace).values():
        assert row.result["identifiers_available"] is False
        assert {s["rule_id"] for s in row.result["skipped"]} == {"S-ID", "S-NAME"}
        assert not {"S-ID", "S-NAME"} & {f["rule_id"] for f in row.result["failures"]}
