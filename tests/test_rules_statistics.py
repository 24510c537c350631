"""Statistics over stored rule-QC results: numbers per grouping, CSV, PNG plots, the CLI.

Ledger rows of stage ``rule_qc`` are written directly here (the shape the stage stores: an
ExamResult as JSON), on both catalogue backends.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.qc_rules import statistics as st


def _failure(rule: str, dimension: str, points: float = 5.0) -> dict[str, Any]:
    return {"rule_id": rule, "dimension": dimension, "fields": [], "points": points, "reason": rule,
            "reason_zh": rule, "reason_en": rule, "evidence": {}}


#: (hospital, modality, items, technician, report, review, standard, score, failures)
EXAMS = [
    ("H1", "CT", ["胸部CT平扫"], "李娜", "赵强", "钱文", "CT-CHEST-PLAIN", 100.0, []),
    ("H1", "CT", ["胸部CT平扫"], "李娜", "赵强", "赵强", "CT-CHEST-PLAIN", 90.0,
     [_failure("IDX-CONS-001", "consistency", 10.0)]),
    ("H1", "DX", ["胸部正位"], "周涛", "吴敏", "钱文", None, 85.0,
     [_failure("IDX-TIME-001", "timeliness"), _failure("IDX-TIME-002", "timeliness"), _failure("IDX-COMP-001", "completeness")]),
    ("H2", "MR", ["头颅MR平扫", "颈椎MR平扫"], "孙立", "吴敏", "钱文", "general", 95.0,
     [_failure("IDX-TIME-001", "timeliness")]),
    ("H2", "MR", ["头颅MR平扫"], None, "吴敏", "钱文", None, 100.0,
     [{**_failure("IDX-STD-052", "standardisation", 0.0), "severity": "info"}]),  # a note: not failed
]


@pytest.fixture
def stats_workspace(workspace):  # type: ignore[no-untyped-def]
    with workspace.transaction() as s:
        hospitals = {code: m.Hospital(code=code, name=f"医院{code}") for code in ("H1", "H2")}
        s.add_all(hospitals.values())
        s.flush()
        for i, (hosp, modality, items, tech, rep, rev, standard, score, failures) in enumerate(EXAMS):
            exam = m.Exam(accession_number=f"A{i}", hospital_id=hospitals[hosp].id, modality=modality, ordered_items=items,
                          exam_time=datetime(2026, 3, 1 + i, 2, 0, tzinfo=UTC))
            s.add(exam)
            s.flush()
            s.add(m.ExamRecord(record_key=f"k{i}", accession_number=f"A{i}", hospital_code=hosp, exam_id=exam.id,
                               modality=modality, exam_items=items, technician=tech, report_doctor=rep, review_doctor=rev))
            result = {"accession_number": f"A{i}", "score": score, "grade": "3" if score >= 90 else "2",
                      "failures": failures, "ruleset_version": "v2", "standard": standard}
            # an older succeeded result (superseded) and a later failed run (ignored)
            s.add(m.LedgerEntry(exam_id=exam.id, stage="rule_qc", version="1", status="succeeded",
                                result={**result, "score": 0.0, "failures": [_failure("OLD", "accuracy")],
                                        "ruleset_version": "v1"}))
            s.add(m.LedgerEntry(exam_id=exam.id, stage="rule_qc", version="1", status="succeeded", result=result))
            s.add(m.LedgerEntry(exam_id=exam.id, stage="rule_qc", version="1", status="failed", result={}))
            s.add(m.LedgerEntry(exam_id=exam.id, stage="index", version="1", status="succeeded",
                                result={"score": 1, "failures": [_failure("NOT-RULE-QC", "accuracy")]}))
    return workspace


def _table(ws: Any, by: str) -> dict[str, dict[str, Any]]:
    with ws.sessions() as s:
        data = st.statistics(s, by)
    return {row["group"]: row for row in data["groups"]}


def test_overall_uses_latest_succeeded_rule_qc_result(stats_workspace: Any) -> None:
    with stats_workspace.sessions() as s:
        data = st.statistics(s, "hospital")
    assert data["overall"] == {"exams": 5, "failed_exams": 3, "failure_rate": 0.6, "mean_score": 94.0,
                               "grades": {"2": 1, "3": 4}, "ruleset_versions": ["v2"]}


def test_by_hospital_modality_and_people(stats_workspace: Any) -> None:
    hosp = _table(stats_workspace, "hospital")
    assert hosp["H1"] | {} == {**hosp["H1"], "exams": 3, "failed_exams": 2, "failures": 4, "points": 25.0,
                               "mean_score": 91.667, "label": "医院H1 (H1)"}
    assert hosp["H1"]["failure_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert (hosp["H2"]["exams"], hosp["H2"]["failed_exams"], hosp["H2"]["failure_rate"]) == (2, 1, 0.5)
    modality = _table(stats_workspace, "modality")
    assert {k: (v["exams"], v["failed_exams"]) for k, v in modality.items()} == {"CT": (2, 1), "DX": (1, 1), "MR": (2, 1)}
    tech = _table(stats_workspace, "technician")
    assert {k: (v["exams"], v["failed_exams"]) for k, v in tech.items()} == {
        "李娜": (2, 1), "周涛": (1, 1), "孙立": (1, 1), st.NONE_LABEL: (1, 0)}
    report = _table(stats_workspace, "report_doctor")
    assert {k: (v["exams"], v["failed_exams"]) for k, v in report.items()} == {"赵强": (2, 1), "吴敏": (3, 2)}
    review = _table(stats_workspace, "review_doctor")
    assert {k: (v["exams"], v["failed_exams"]) for k, v in review.items()} == {"钱文": (4, 2), "赵强": (1, 1)}


def test_by_item_prefers_the_standard_then_items_as_written(stats_workspace: Any) -> None:
    items = _table(stats_workspace, "item")
    assert {k: (v["exams"], v["failed_exams"]) for k, v in items.items()} == {
        "CT-CHEST-PLAIN": (2, 1), "胸部正位": (1, 1), "头颅MR平扫": (2, 1), "颈椎MR平扫": (1, 1)}


def test_by_rule_and_dimension_rate_over_all_exams(stats_workspace: Any) -> None:
    rules = _table(stats_workspace, "rule")
    assert {k: (v["failed_exams"], v["exams"], v["failure_rate"], v["points"]) for k, v in rules.items()} == {
        "IDX-TIME-001": (2, 5, 0.4, 10.0), "IDX-TIME-002": (1, 5, 0.2, 5.0),
        "IDX-COMP-001": (1, 5, 0.2, 5.0), "IDX-CONS-001": (1, 5, 0.2, 10.0), "IDX-STD-052": (1, 5, 0.2, 0.0)}
    assert "OLD" not in rules and "NOT-RULE-QC" not in rules
    dims = _table(stats_workspace, "dimension")
    assert {k: (v["failed_exams"], v["failures"], v["failure_rate"]) for k, v in dims.items()} == {
        "timeliness": (2, 3, 0.4), "consistency": (1, 1, 0.2), "completeness": (1, 1, 0.2),
        "standardisation": (1, 1, 0.2)}
    assert dims["timeliness"]["label"] == "及时性 timeliness"
    with stats_workspace.sessions() as s:
        ordered = [r["group"] for r in st.statistics(s, "rule")["groups"]]
    assert ordered[0] == "IDX-TIME-001"


def test_unknown_grouping_is_refused() -> None:
    with pytest.raises(st.StatisticsError, match="unknown grouping"):
        st.compute([], "colour")


def test_csv_and_png_written(stats_workspace: Any, tmp_path: Path) -> None:
    with stats_workspace.sessions() as s:
        data = st.statistics(s, "hospital")
    path = st.write_csv(data["groups"], tmp_path / "by_hospital.csv")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["group"] for r in rows] == ["H1", "H2"]
    assert rows[0]["failed_exams"] == "2" and float(rows[0]["failure_rate"]) == pytest.approx(0.666667)
    for by in ("hospital", "rule", "dimension"):
        with stats_workspace.sessions() as s:
            table = st.statistics(s, by)["groups"]
        png = st.plot(table, by, tmp_path / f"{by}.png")
        head = png.read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    empty = st.plot([], "hospital", tmp_path / "empty.png")
    assert empty.read_bytes()[:4] == b"\x89PNG"


def test_cli_qc_stats(stats_workspace: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from radqc.cli.main import app

    out = CliRunner().invoke(app, ["qc-stats", "--by", "dimension", "--json", "--csv", str(tmp_path / "d.csv"),
                                   "--plot", str(tmp_path / "d.png")])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["overall"]["exams"] == 5
    assert [g["group"] for g in data["groups"]] == ["timeliness", "completeness", "consistency", "standardisation"]
    assert Path(data["plot"]).stat().st_size > 0 and Path(data["csv"]).exists()
    human = CliRunner().invoke(app, ["qc-stats", "--by", "report_doctor"])
    assert human.exit_code == 0 and "吴敏: 2/3" in human.stdout
    bad = CliRunner().invoke(app, ["qc-stats", "--by", "colour"])
    assert bad.exit_code == 2


def test_no_results_gives_empty_tables(workspace: Any) -> None:
    with workspace.sessions() as s:
        data = st.statistics(s, "rule")
    assert data["overall"]["exams"] == 0 and data["groups"] == []


# -- through the runner: the rule_qc stage writes the results, statistics read them ------------
STAGE_LIBRARY = """
library: index
rules:
  - id: ST-DOC
    name: {zh: 报告与审核医生不同, en: Report and review doctor differ}
    dimension: consistency
    severity: major
    points: 10
    fields: [report_doctor, review_doctor]
    when: "review_doctor != None"
    expr: "report_doctor != review_doctor"
    message: {zh: "报告医生与审核医生相同：{value}", en: "same doctor: {value}"}
    examples: {pass: [{report_doctor: a, review_doctor: b}], fail: [{report_doctor: a, review_doctor: a}]}
  - id: ST-PHONE
    name: {zh: 电话11位, en: Phone has 11 digits}
    dimension: completeness
    severity: minor
    points: 2
    fields: [phone]
    expr: "len(strip(phone)) == 11"
    message: {zh: "电话号码长度错误：{value}", en: "phone length wrong: {value}"}
    examples: {pass: [{phone: "13912345678"}], fail: [{phone: "0571"}, {}]}
"""


def test_statistics_of_stage_results_and_hospital_check_agree(workspace: Any, tmp_path: Path) -> None:
    from radqc.datasets.synthetic.generate import generate_set, ingest_generated_set
    from radqc.pipelines.runner.local import run_pipeline
    from radqc.qc_rules.engine.evaluate import evaluate_exam
    from radqc.qc_rules.engine.loader import load_ruleset_documents, parse_text
    from radqc.qc_rules.engine.store import RulesetStore
    from radqc.qc_rules.hospital.check import run_check

    out = tmp_path / "set"
    generate_set(out, 8, seed=5)
    lines = (out / "records" / "exams.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines if x.strip().startswith("{") and x.strip().endswith("}")]
    rows = [r for r in rows if r.get("hospital_code") and r.get("accession_number")]
    # seed violations the tiny ruleset sees: same doctor on two exams, a short phone on one
    for r in rows[:2]:
        r["review_doctor"] = r["report_doctor"]
    rows[3]["phone"] = "0571"
    (out / "records" / "exams.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                                 encoding="utf-8")
    ingest_generated_set(workspace, out, workers=1)

    def ruleset():  # type: ignore[no-untyped-def]
        return load_ruleset_documents([(parse_text(STAGE_LIBRARY, "stats-lib"), "stats-lib")], functions={})

    store = RulesetStore(workspace.settings.home / "rulesets", functions={}, bootstrap=ruleset)
    store.ensure_initialised("qc-admin")
    summary = run_pipeline(workspace, ["rule_qc"], workers=1).to_dict()
    assert summary["stages"]["rule_qc"]["succeeded"] == len(rows), summary

    # expected figures straight from the records file
    by_acc = {r["accession_number"]: r for r in rows}
    doc_fail = {a for a, r in by_acc.items() if r["report_doctor"] == r["review_doctor"]}
    phone_fail = {a for a, r in by_acc.items() if len(str(r.get("phone") or "").strip()) != 11}
    failing = doc_fail | phone_fail
    with workspace.sessions() as s:
        data = st.statistics(s, "hospital")
        rules = {g["group"]: g for g in st.statistics(s, "rule")["groups"]}
        dims = {g["group"]: g for g in st.statistics(s, "dimension")["groups"]}
        reviewers = {g["group"]: g for g in st.statistics(s, "review_doctor")["groups"]}
    assert data["overall"]["exams"] == len(rows) and data["overall"]["failed_exams"] == len(failing)
    assert data["overall"]["ruleset_versions"] == ["1"]
    hospitals = {g["group"]: g for g in data["groups"]}
    for code in {r["hospital_code"] for r in rows}:
        mine = [a for a, r in by_acc.items() if r["hospital_code"] == code]
        assert hospitals[code]["exams"] == len(mine)
        assert hospitals[code]["failed_exams"] == len([a for a in mine if a in failing])
    assert rules["ST-DOC"]["failed_exams"] == len(doc_fail) >= 2
    with workspace.sessions() as s:
        named = st.statistics(s, "rule", rule_names=st.published_rule_names())["groups"]
    assert {g["group"]: g["label"] for g in named}["ST-DOC"] == "ST-DOC 报告与审核医生不同"
    assert rules.get("ST-PHONE", {"failed_exams": 0})["failed_exams"] == len(phone_fail) >= 1
    assert dims["consistency"]["failed_exams"] == len(doc_fail)
    for reviewer, group in reviewers.items():
        mine = [a for a, r in by_acc.items() if r["review_doctor"] == reviewer]
        assert group["exams"] == len(mine) and group["failed_exams"] == len([a for a in mine if a in failing])
    with workspace.sessions() as s:
        png = st.plot(st.compute(st.load_rows(s), "hospital"), "hospital", tmp_path / "h.png")
    assert png.read_bytes()[:4] == b"\x89PNG"

    # the hospital-side check with the same ruleset finds exactly what the platform stage found
    published = store.ruleset(1)
    check = run_check(out / "dicom", out / "records" / "exams.jsonl", lambda f: evaluate_exam(f, published))
    with workspace.sessions() as s:
        stage_rows = st.load_rows(s)
        accs = dict(s.execute(select(m.Exam.id, m.Exam.accession_number)).all())
    platform = {accs[r.exam_id]: sorted(f["rule_id"] for f in r.failures) for r in stage_rows}
    hospital = {e.accession_number: sorted(f["rule_id"] for f in e.failures) for e in check.exams}
    assert hospital == platform
    assert {a for a, ids in hospital.items() if ids} == failing


def test_filters_by_hospital_modality_and_period(stats_workspace: Any) -> None:
    with stats_workspace.sessions() as s:
        h2 = st.statistics(s, "modality", hospital="H2")
        ct = st.statistics(s, "hospital", modality="ct")
        march = st.statistics(s, "hospital", since=datetime(2026, 3, 2, tzinfo=UTC), until=datetime(2026, 3, 4, tzinfo=UTC))
    assert h2["overall"]["exams"] == 2 and [g["group"] for g in h2["groups"]] == ["MR"]
    assert ct["overall"]["exams"] == 2 and ct["overall"]["failed_exams"] == 1
    assert march["overall"]["exams"] == 2  # exams 1 and 2 (2 and 3 March)
    from typer.testing import CliRunner

    from radqc.cli.main import app

    out = CliRunner().invoke(app, ["qc-stats", "--json", "--since", "2026-03-02", "--until", "2026/3/4 10:00"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["overall"]["exams"] == 2 and data["filters"]["since"] == "2026-03-02"
    assert CliRunner().invoke(app, ["qc-stats", "--since", "soon"]).exit_code == 2
