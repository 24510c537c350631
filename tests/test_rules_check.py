"""Hospital-side check (院端质控): normalisation with a change log, facts from a folder and a
records file, matching, the feedback report, and the ``radqc check`` round trip fail → fix → pass.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from radqc.qc_rules.hospital.check import run_check
from radqc.qc_rules.hospital.facts import RECORD_FIELDS, read_records, scan_folder, validate_record
from radqc.qc_rules.hospital.normalise import (
    CST,
    SOURCE_DICOM,
    SOURCE_SEX,
    SOURCE_TIME,
    SOURCE_WIDTH,
    normalise_record,
    normalise_value,
    parse_loose_time,
)
from radqc.qc_rules.hospital.report import render_html, write_report

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=CST)


# -- a stand-in evaluator for the parts that do not need the engine -------------------------
def stub_evaluator(facts: dict[str, Any]) -> dict[str, Any]:
    """Two deterministic rules of the library, written out: enough to test the plumbing."""
    failures = []
    if facts["report_doctor"] and facts["report_doctor"] == facts["review_doctor"]:
        failures.append({"rule_id": "STUB-SAME-DOCTOR", "dimension": "consistency", "fields": ["report_doctor", "review_doctor"],
                         "points": 5.0, "reason": f"报告医生与审核医生相同 / same doctor: {facts['report_doctor']}"})
    if not facts["accession_number"]:
        failures.append({"rule_id": "STUB-ACC", "dimension": "completeness", "fields": ["accession_number"],
                         "points": 5.0, "reason": "检查号缺失 / accession number missing"})
    score = 100.0 - sum(f["points"] for f in failures)
    return {"accession_number": facts["accession_number"], "score": score, "grade": "3" if score >= 90 else "2",
            "failures": failures, "ruleset_version": "stub-1", "standard": None}


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radqc.datasets.synthetic.generate import generate_set

    out = tmp_path_factory.mktemp("hospital") / "set"
    generate_set(out, 6, 7)
    return out


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_records(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _truth(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((root / "truth").glob("*.json"))]


# -- normalisation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [("男", "M"), ("女", "F"), ("1", "M"), ("2", "F"), ("M", "M"), ("f", "F"), ("female", "F"),
     ("未知", "O"), ("0", "O"), ("９", "O"), (" 男 ", "M"), ("Ｍ", "M")],
)
def test_sex_codes_normalised(raw: str, expected: str) -> None:
    value, changes = normalise_value("patient_sex", raw)
    assert value == expected
    assert (raw == expected) == (changes == [])
    assert all(c.field == "patient_sex" for c in changes)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2026/1/5 8:03", "2026-01-05T08:03:00+08:00"),
        ("2026/01/05 08:03:09", "2026-01-05T08:03:09+08:00"),
        ("20260105080300", "2026-01-05T08:03:00+08:00"),
        ("202601050803", "2026-01-05T08:03:00+08:00"),
        ("2026年1月5日 8时3分", "2026-01-05T08:03:00+08:00"),
        ("2026年01月05日 08:03:00", "2026-01-05T08:03:00+08:00"),
        ("2026-01-05 08:03", "2026-01-05T08:03:00+08:00"),
        ("2026.1.5 8:03", "2026-01-05T08:03:00+08:00"),
        ("2026-01-05T00:03:00Z", "2026-01-05T08:03:00+08:00"),
        ("２０２６－０１－０５　０８：０３", "2026-01-05T08:03:00+08:00"),
        ("2026-01-05T08:03:00+08:00", "2026-01-05T08:03:00+08:00"),
    ],
)
def test_time_formats_normalised(raw: str, expected: str) -> None:
    value, changes = normalise_value("exam_time", raw)
    assert value == expected
    if raw == expected:
        assert changes == []
    else:
        assert changes[-1].source == SOURCE_TIME and changes[-1].new == expected
        assert changes[0].old == raw


@pytest.mark.parametrize("raw", ["2026-13-45 25:61", "2026-01-05", "yesterday", "2026/02/30 10:00"])
def test_unparseable_times_left_as_written(raw: str) -> None:
    value, changes = normalise_value("exam_time", raw)
    assert value == raw and changes == []
    assert parse_loose_time(raw) is None


def test_full_width_codes_and_trimming_logged_free_text_kept() -> None:
    fields = {
        "accession_number": "ＣＴ２０２６ ００１",
        "phone": "１３９１２３４５６７８",
        "patient_birth_date": "1980年5月6日",
        "findings": "  双肺纹理清晰，未见异常。 ",
        "impression": "未见异常。",
        "report_doctor": "",
    }
    out, changes = normalise_record(fields)
    assert out["accession_number"] == "CT2026001"
    assert out["phone"] == "13912345678"
    assert out["patient_birth_date"] == "1980-05-06"
    assert out["findings"] == "双肺纹理清晰，未见异常。"  # full-width punctuation is correct Chinese: kept
    assert out["impression"] == "未见异常。"
    assert out["report_doctor"] is None
    logged = {(c.field, c.source) for c in changes}
    assert ("accession_number", SOURCE_WIDTH) in logged
    assert ("findings", "normalise:trim") in logged
    assert ("impression", "normalise:trim") not in logged
    for c in changes:
        assert c.old != c.new and c.explain()


def test_invalid_field_set_aside_with_reason_other_fields_kept() -> None:
    entry = validate_record(
        {"accession_number": "CT1", "hospital_code": "H1", "urgency": "soon", "patient_sex": "X",
         "exam_time": "2026/1/5 8:03", "report_doctor": "赵强"},
        line=3, ref="f.jsonl:3",
    )
    bad = {f for p in entry.problems for f in p.fields}
    assert bad == {"urgency", "patient_sex"}
    assert all("第 3 行" in p.message for p in entry.problems)
    assert entry.fields["urgency"] is None and entry.fields["patient_sex"] is None
    assert entry.fields["exam_time"] == "2026-01-05T08:03:00+08:00"
    assert entry.fields["report_doctor"] == "赵强"
    # identifier values are never echoed in reasons
    assert not any("'X'" in p.message for p in entry.problems)


# -- facts from a folder and records ------------------------------------------------------------
def test_folder_scan_counts_match_the_truth(synthetic_set: Path) -> None:
    studies, problems = scan_folder(synthetic_set / "dicom")
    truths = _truth(synthetic_set)
    by_uid = {t["imaging"]["study_instance_uid"]: t for t in truths}
    assert set(studies) == set(by_uid)
    for uid, study in studies.items():
        t = by_uid[uid]
        assert len(study.series) == len(t["imaging"]["series"])
        assert sum(study.sop_uids.values()) == sum(len(s["files"]) for s in t["imaging"]["series"])
        assert study.accession_number == t["exam"]["accession_number"]
    seeded = {str(synthetic_set / f["path"]) for t in truths for f in t["malformed_files"]}
    assert seeded <= {p.path for p in problems}
    assert all(p.reason() for p in problems)


def test_every_record_matched_and_facts_complete(synthetic_set: Path) -> None:
    result = run_check(synthetic_set / "dicom", synthetic_set / "records" / "exams.jsonl", stub_evaluator, now=NOW)
    truths = {t["exam"]["accession_number"]: t for t in _truth(synthetic_set)}
    assert {e.accession_number for e in result.exams} == set(truths)
    for exam in result.exams:
        t = truths[exam.accession_number]
        assert exam.link == "accession"
        f = exam.facts
        for name in RECORD_FIELDS:
            assert name in f
        assert f["study_instance_uid"] == t["imaging"]["study_instance_uid"]
        assert f["series_count"] == len(t["imaging"]["series"])
        assert f["dicom_modalities"] and f["dicom_accession_number"] == exam.accession_number
        assert f["dicom_patient_sex"] == t["patient"]["sex"]
        assert f["duplicate_sop_uids"] == 0
        assert f["now"] == "2026-06-01T12:00:00+08:00"
        assert all({"series_instance_uid", "modality", "n_instances", "slice_thickness", "pixel_spacing", "kernel",
                    "window_centers", "window_widths", "image_type"} <= set(s) for s in f["series"])
    assert result.summary()["charge_lines_skipped"] == 0


def test_missing_fields_recovered_from_dicom_and_logged(synthetic_set: Path, tmp_path: Path) -> None:
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    target = rows[0]
    acc, sex, when = target["accession_number"], target["patient_sex"], target["exam_time"]
    for key in ("accession_number", "patient_sex", "modality"):
        target.pop(key)
    target["exam_time"] = datetime.fromisoformat(when).strftime("%Y/%m/%d %H:%M:%S")  # hospital spelling
    records = _write_records(tmp_path / "exams.jsonl", rows)
    result = run_check(synthetic_set / "dicom", records, stub_evaluator, now=NOW)
    exam = next(e for e in result.exams if e.accession_number == acc)
    assert exam.link == "patient_time"
    assert exam.facts["patient_sex"] == sex and exam.facts["modality"]
    sources = {c["field"]: c["source"] for c in exam.changes}
    assert sources["accession_number"] == SOURCE_DICOM + "AccessionNumber"
    assert sources["patient_sex"] == SOURCE_DICOM + "PatientSex"
    assert sources["modality"] == SOURCE_DICOM + "Modality"
    assert sources["exam_time"] == SOURCE_TIME
    assert not any(f["rule_id"] == "STUB-ACC" for f in exam.failures)


def test_orphans_and_unreadable_lines_are_reported(synthetic_set: Path, tmp_path: Path) -> None:
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    dropped = rows.pop(1)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(2, '{"accession_number": "CUT-IN-HALF", "hosp')
    lines.append(json.dumps({"accession_number": "NO-IMAGES-1", "hospital_code": "H1", "modality": "CT"}))
    lines.append(json.dumps({"accession_number": "CT1", "charge_code": "210300001", "charge_name": "CT", "quantity": 1,
                             "amount": 1}))
    records = tmp_path / "exams.jsonl"
    records.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_check(synthetic_set / "dicom", records, stub_evaluator, now=NOW)
    by_key = {e.key: e for e in result.exams}
    assert [f["rule_id"] for f in by_key[dropped["accession_number"]].failures][0] == "CHK-NO-RECORD"
    assert by_key["NO-IMAGES-1"].failures[0]["rule_id"] == "CHK-NO-IMAGES"
    broken = by_key["line 3"]
    assert broken.score is None and broken.failures[0]["rule_id"] == "CHK-REC-UNREADABLE"
    assert "line 3" in broken.failures[0]["reason"]
    assert result.charge_lines_skipped == 1
    # records alone: no image findings at all
    alone = run_check(None, records, stub_evaluator, now=NOW)
    assert not any(f["rule_id"] == "CHK-NO-IMAGES" for e in alone.exams for f in e.failures)


def test_csv_gb18030_records_read_with_the_ingest_reader(tmp_path: Path) -> None:
    path = tmp_path / "his.csv"
    text = ("accession_number,hospital_code,patient_sex,exam_time,report_doctor,review_doctor,findings\n"
            'DR1,H1,男,2026/1/5 8:03,赵强,赵强,"双肺纹理增多。\n心影不大。"\n')
    path.write_bytes(text.encode("gb18030"))
    entries, charges = read_records(path)
    assert charges == 0 and len(entries) == 1
    assert entries[0].fields["patient_sex"] == "M"
    assert entries[0].fields["findings"] == "双肺纹理增多。\n心影不大。"
    result = run_check(None, path, stub_evaluator, now=NOW)
    assert [f["rule_id"] for f in result.exams[0].failures] == ["STUB-SAME-DOCTOR"]


# -- the report ---------------------------------------------------------------------------------
def test_report_lists_failed_exams_first_with_reason_and_fix(synthetic_set: Path, tmp_path: Path) -> None:
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    rows[-1]["review_doctor"] = rows[-1]["report_doctor"]
    rows[0]["patient_sex"] = "1"
    records = _write_records(tmp_path / "exams.jsonl", rows)
    result = run_check(synthetic_set / "dicom", records, stub_evaluator, now=NOW)
    failed_acc = rows[-1]["accession_number"]
    assert [e.accession_number for e in result.failed] == [failed_acc]
    paths = write_report(result, tmp_path / "out")
    page = Path(paths["html"]).read_text(encoding="utf-8")
    assert "<script" not in page and "http" not in page.split("<body>")[1]
    assert page.index(failed_acc) < min(page.index(r["accession_number"]) for r in rows[:-1])
    assert "STUB-SAME-DOCTOR" in page and "审核医生须为另一人" in page
    assert "未通过的检查 Failed exams (1)" in page
    with open(paths["failures_csv"], encoding="utf-8-sig", newline="") as handle:
        failures = list(csv.DictReader(handle))
    assert [(r["accession_number"], r["rule_id"], r["dimension"]) for r in failures] == [
        (failed_acc, "STUB-SAME-DOCTOR", "consistency")]
    assert failures[0]["fields"] == "report_doctor|review_doctor" and failures[0]["fix_hint"]
    with open(paths["changes_csv"], encoding="utf-8-sig", newline="") as handle:
        changes = list(csv.DictReader(handle))
    assert {"accession_number": rows[0]["accession_number"], "field": "patient_sex", "old": "1", "new": "M",
            "source": SOURCE_SEX} in [{k: r[k] for k in ("accession_number", "field", "old", "new", "source")} for r in changes]
    data = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert data["summary"]["failed"] == 1 and data["summary"]["by_dimension"] == {"consistency": 1}
    with open(paths["exams_csv"], encoding="utf-8-sig", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)


def test_html_escapes_hospital_text(tmp_path: Path) -> None:
    records = _write_records(tmp_path / "r.jsonl", [{"accession_number": "A<1>", "hospital_code": "H1",
                                                     "report_doctor": "<script>x</script>",
                                                     "review_doctor": "<script>x</script>"}])
    result = run_check(None, records, stub_evaluator, now=NOW)
    page = render_html(result)
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "A&lt;1&gt;" in page
    assert "every exam passed" in render_html(run_check(None, None, stub_evaluator, now=NOW))


# -- the CLI, through the real engine ---------------------------------------------------------
#: Two rules that use no library function, so these tests need the engine only.
MINI_RULESET = """
library: index
version: 1
rules:
  - id: T-CONS-DOCTOR
    name: {zh: 报告医生与审核医生不同, en: Report and review doctors differ}
    dimension: consistency
    severity: major
    points: 10
    fields: [report_doctor, review_doctor]
    when: "not (not report_doctor) and not (not review_doctor)"
    expr: "report_doctor != review_doctor"
    message: {zh: "报告医生与审核医生同为 {report_doctor}", en: "report and review doctor are both {report_doctor}"}
    examples:
      pass: [{report_doctor: 赵强, review_doctor: 钱文}]
      fail: [{report_doctor: 赵强, review_doctor: 赵强}]
  - id: T-COMP-ACC
    name: {zh: 检查号必填, en: Accession number present}
    dimension: completeness
    severity: major
    points: 5
    fields: [accession_number]
    expr: "not (not accession_number)"
    message: {zh: "检查号缺失", en: "accession number missing"}
    examples:
      pass: [{accession_number: CT1}]
      fail: [{accession_number: ""}]
"""
CLI_NOW = "2026-06-01T12:00:00+08:00"


def _check_cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from radqc.cli.main import app

    return CliRunner().invoke(app, ["check", *args])


def test_cli_json_contract_fail_fix_pass(synthetic_set: Path, tmp_path: Path) -> None:
    ruleset = tmp_path / "rules.yaml"
    ruleset.write_text(MINI_RULESET, encoding="utf-8")
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    target = rows[2]
    target["review_doctor"] = target["report_doctor"]
    records = _write_records(tmp_path / "exams.jsonl", rows)
    args = [str(synthetic_set / "dicom"), "--records", str(records), "--ruleset", str(ruleset), "--json",
            "--out", str(tmp_path / "report"), "--now", CLI_NOW]
    out = _check_cli(*args)
    assert out.exit_code == 1, out.output
    data = json.loads(out.stdout)
    exams = {e["accession_number"]: e for e in data["exams"]}
    assert set(exams) == {r["accession_number"] for r in rows}
    for exam in data["exams"]:
        assert {"accession_number", "score", "grade", "failures"} <= set(exam)
        for f in exam["failures"]:
            assert {"rule_id", "dimension", "fields", "points", "reason"} <= set(f)
            assert f["dimension"] in ("completeness", "timeliness", "consistency", "standardisation", "accuracy")
    failed = exams[target["accession_number"]]
    assert [f["rule_id"] for f in failed["failures"]] == ["T-CONS-DOCTOR"]
    f = failed["failures"][0]
    assert f["fields"] == ["report_doctor", "review_doctor"] and f["points"] == 10.0
    assert target["report_doctor"] in f["reason"] and " / " in f["reason"]
    assert failed["score"] == 90.0
    assert all(e["failures"] == [] for a, e in exams.items() if a != target["accession_number"])
    assert Path(data["report"]["html"]).is_file() and Path(data["report"]["failures_csv"]).is_file()

    # the hospital fixes the record and re-checks: the exam passes, exit 0
    target["review_doctor"] = "复核医生甲"
    _write_records(records, rows)
    again = _check_cli(*args)
    assert again.exit_code == 0, again.output
    fixed = {e["accession_number"]: e for e in json.loads(again.stdout)["exams"]}[target["accession_number"]]
    assert fixed["failures"] == [] and fixed["score"] == 100.0

    # a blank accession is recovered from DICOM (logged); human output names the failing exam
    rows[0]["accession_number"] = ""
    rows[1]["review_doctor"] = rows[1]["report_doctor"]
    _write_records(records, rows)
    human = _check_cli(str(synthetic_set / "dicom"), "--records", str(records), "--ruleset", str(ruleset),
                       "--out", str(tmp_path / "report2"), "--now", CLI_NOW)
    assert human.exit_code == 1
    assert "failed / 未通过 1" in human.stdout
    assert rows[1]["accession_number"] in human.stdout and "T-CONS-DOCTOR" in human.stdout
    with open(tmp_path / "report2" / "changes.csv", encoding="utf-8-sig", newline="") as handle:
        changes = list(csv.DictReader(handle))
    assert any(c["field"] == "accession_number" and c["source"] == "dicom:AccessionNumber" for c in changes)


def test_cli_records_alone_and_unusable_input(tmp_path: Path) -> None:
    ruleset = tmp_path / "rules.yaml"
    ruleset.write_text(MINI_RULESET, encoding="utf-8")
    records = _write_records(tmp_path / "r.jsonl", [
        {"accession_number": "CT1", "hospital_code": "H1", "report_doctor": "赵强", "review_doctor": "钱文"},
        {"accession_number": "", "patient_id": "P2", "exam_time": "2026/1/5 8:03", "hospital_code": "H1"},
    ])
    out = _check_cli("--records", str(records), "--ruleset", str(ruleset), "--json", "--out", str(tmp_path / "o"))
    assert out.exit_code == 1, out.output
    exams = json.loads(out.stdout)["exams"]
    assert [e["failures"] for e in exams][0] == []
    assert [f["rule_id"] for f in exams[1]["failures"]] == ["T-COMP-ACC"]
    assert exams[1]["accession_number"] is None
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("accession_number,hospital_code\nA,H\n".encode("utf-16"))
    for args in (
        ["--records", str(tmp_path / "missing.jsonl")],
        ["--records", str(utf16)],
        [str(tmp_path / "no-such-folder"), "--records", str(records)],
        [],
        ["--records", str(records), "--now", "not a time"],
    ):
        bad = _check_cli(*args, "--ruleset", str(ruleset), "--out", str(tmp_path / "o2"))
        assert bad.exit_code == 2, (args, bad.output)
    broken = tmp_path / "broken.yaml"
    broken.write_text(MINI_RULESET.replace('"report_doctor != review_doctor"', '"__import__(\'os\')"'), encoding="utf-8")
    assert _check_cli("--records", str(records), "--ruleset", str(broken), "--out", str(tmp_path / "o3")).exit_code == 2


def test_hospital_facts_equal_platform_facts(synthetic_set: Path, workspace: Any) -> None:
    """The check feeds the rules what the platform will feed them after upload (CONTRACT §1)."""
    from sqlalchemy import select

    from radqc.catalogue import models as m
    from radqc.datasets.synthetic.generate import ingest_generated_set
    from radqc.qc_rules.facts import facts_for_exam

    ingest_generated_set(workspace, synthetic_set, workers=1)
    hospital = run_check(synthetic_set / "dicom", synthetic_set / "records" / "exams.jsonl", stub_evaluator, now=NOW)
    with workspace.sessions() as s:
        exam_ids = dict(s.execute(select(m.Exam.accession_number, m.Exam.id)).all())
    compared = ("accession_number", "hospital_code", "patient_id", "patient_name", "patient_sex", "id_number",
                "phone", "modality", "exam_items", "urgency", "order_time", "exam_time", "report_time",
                "review_time", "upload_time", "technician", "report_doctor", "review_doctor", "findings",
                "impression", "dicom_modalities", "series_count", "instance_count", "study_instance_uid",
                "dicom_accession_number", "dicom_patient_sex", "dicom_study_time", "body_parts", "series",
                "dicom_patient_id", "dicom_patient_birth_date", "dicom_institution", "record_count")
    assert len(hospital.exams) == len(exam_ids)
    for exam in hospital.exams:
        platform = facts_for_exam(workspace, exam_ids[exam.accession_number], now=exam.facts["now"])
        ours = exam.facts
        for name in ("order_time", "exam_time", "report_time", "review_time", "upload_time"):
            if platform.get(name) is not None:  # the catalogue keeps UTC; compare instants
                assert datetime.fromisoformat(platform[name]) == datetime.fromisoformat(ours[name]), name
        platform_series = sorted(platform["series"], key=lambda x: x["series_instance_uid"])
        our_series = sorted(ours["series"], key=lambda x: x["series_instance_uid"])
        assert our_series == platform_series
        for name in compared:
            if name.endswith("_time") or name == "series":
                continue
            assert ours[name] == platform[name], (exam.accession_number, name, ours[name], platform[name])
        assert str(ours["patient_birth_date"]) == str(platform["patient_birth_date"])


def test_truncated_and_pixel_less_files_are_rejected_and_charged_to_their_exam(synthetic_set: Path, tmp_path: Path) -> None:
    import shutil

    from radqc.qc_rules.hospital.facts import FileRejected, read_header

    folder = tmp_path / "dicom"
    shutil.copytree(synthetic_set / "dicom", folder)
    files = sorted(p for p in folder.rglob("IM*.dcm") if p.stat().st_size > 0)
    native = next(p for p in files if read_header(p).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1")
    data = native.read_bytes()
    cut = native.with_name("IM_CUT.dcm")
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(FileRejected) as info:
        read_header(cut)
    assert info.value.code == "truncated" and info.value.study_uid
    result = run_check(folder, synthetic_set / "records" / "exams.jsonl", stub_evaluator, now=NOW)
    assert str(cut) in {p.path for p in result.file_problems}
    owner = next(e for e in result.exams if info.value.study_uid in e.source["study_instance_uids"])
    assert [f["rule_id"] for f in owner.failures] == ["CHK-FILE-REJECTED"]
    assert "IM_CUT.dcm" in owner.failures[0]["reason"] and "截断" in owner.failures[0]["reason"]
    # the good copy of the same instance still counts once
    assert owner.facts["instance_count"] == sum(1 for _ in native.parent.parent.rglob("IM0*.dcm"))


# -- end to end with the published library: fail -> fix -> pass -------------------------------
#: A valid imaging-cloud index string for an exam time (five parts, 26-12-9-13-18; a real
#: unified social credit code as part 5): synthetic exports carry none.
def test_round_trip_with_the_published_library(synthetic_set: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADQC_HOME", str(tmp_path / "no-store"))  # no local store: the bundled library
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    assert all(row.get("index_string") for row in rows)  # the generator sends one, like a hospital
    stripped = _write_records(tmp_path / "stripped.jsonl", [{k: v for k, v in r.items() if k != "index_string"} for r in rows])
    bare = _check_cli(str(synthetic_set / "dicom"), "--records", str(stripped),
                      "--json", "--out", str(tmp_path / "bare"), "--now", CLI_NOW)
    assert bare.exit_code == 1, bare.output  # without the index string every exam fails
    assert all("IDX-COMP-024" in {f["rule_id"] for f in e["failures"]} for e in json.loads(bare.stdout)["exams"])
    baseline = _write_records(tmp_path / "baseline.jsonl", rows)
    first = _check_cli(str(synthetic_set / "dicom"), "--records", str(baseline), "--json",
                       "--out", str(tmp_path / "first"), "--now", CLI_NOW)
    exams = json.loads(first.stdout)["exams"]
    candidates = [e for e in exams if e["passed"]]  # clean exams of the generator pass (notes allowed)
    assert candidates, [(e["accession_number"], [f["rule_id"] for f in e["failures"]]) for e in exams]
    target = next(r for r in rows if r["accession_number"] == candidates[0]["accession_number"])
    folder = candidates[0]["source"]["folder"]
    good_id, good_reviewer = target["id_number"], target["review_doctor"]

    # the hospital's export: an index string, its own spellings, and two real mistakes
    sent = dict(target)
    sent["patient_sex"] = {"M": "男", "F": "女"}[target["patient_sex"]]
    sent["exam_time"] = datetime.fromisoformat(target["exam_time"]).strftime("%Y/%m/%d %H:%M:%S")
    sent["review_doctor"] = target["report_doctor"]
    sent["id_number"] = good_id[:-1] + next(c for c in "0123456789X" if c != good_id[-1])
    records = _write_records(tmp_path / "exams.jsonl", [sent])
    args = [folder, "--records", str(records), "--json", "--out", str(tmp_path / "fb"), "--now", CLI_NOW]
    failed = _check_cli(*args)
    assert failed.exit_code == 1, failed.output
    (exam,) = json.loads(failed.stdout)["exams"]
    fields = {name for f in exam["failures"] for name in f["fields"]}
    assert {"review_doctor", "id_number"} <= fields, exam["failures"]
    assert not fields & {"patient_sex", "index_string"}  # normalised, and the index string is valid
    assert exam["score"] < 100
    for f in exam["failures"]:
        assert f["dimension"] in ("completeness", "timeliness", "consistency", "standardisation", "accuracy")
        assert " / " in f["reason"] and f["points"] >= 0
    assert {c["field"] for c in exam["changes"]} >= {"patient_sex", "exam_time"}
    page = (tmp_path / "fb" / "report.html").read_text(encoding="utf-8")
    assert target["accession_number"] in page and "未通过 FAIL" in page

    # the hospital fixes both mistakes and re-checks: the exam passes
    sent["review_doctor"], sent["id_number"] = good_reviewer, good_id
    _write_records(records, [sent])
    passed = _check_cli(*args)
    assert passed.exit_code == 0, passed.output
    (exam,) = json.loads(passed.stdout)["exams"]
    assert exam["passed"] and exam["score"] == 100.0
    assert all(f.get("severity") == "info" for f in exam["failures"])


def test_default_ruleset_is_the_published_version_of_the_local_store(synthetic_set: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from radqc.qc_rules import api
    from radqc.qc_rules.engine.loader import load_ruleset_documents, parse_text
    from radqc.qc_rules.engine.store import RulesetStore

    home = tmp_path / "home"
    monkeypatch.setenv("RADQC_HOME", str(home))
    store = RulesetStore(home / "rulesets", functions={},
                         bootstrap=lambda: load_ruleset_documents([(parse_text(MINI_RULESET, "mini"), "mini")], functions={}))
    store.ensure_initialised("qc-admin")
    rows = _records(synthetic_set / "records" / "exams.jsonl")[:1]
    rows[0]["review_doctor"] = rows[0]["report_doctor"]
    records = _write_records(tmp_path / "r.jsonl", rows)
    args = ["--records", str(records), "--json", "--out", str(tmp_path / "o"), "--now", CLI_NOW]
    out = _check_cli(*args)
    assert out.exit_code == 1, out.output
    data = json.loads(out.stdout)
    assert data["summary"]["ruleset_version"] == "1"
    assert [f["rule_id"] for f in data["exams"][0]["failures"]] == ["T-CONS-DOCTOR"]
    api.disable_rule(store, "T-CONS-DOCTOR", user="qc-admin")  # a draft: not used yet
    assert _check_cli(*args).exit_code == 1
    api.publish(store, 2, user="qc-admin")
    again = _check_cli(*args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["summary"]["ruleset_version"] == "2"


def test_resent_lines_update_their_record_and_bad_resends_are_reported_on_it(synthetic_set: Path, tmp_path: Path) -> None:
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    first = rows[0]
    amended = {"accession_number": first["accession_number"], "hospital_code": first["hospital_code"],
               "review_doctor": first["report_doctor"]}  # a re-send that only changes the reviewer
    broken = {**first, "patient_sex": "X"}  # a corrupted re-send: the platform quarantines it
    records = _write_records(tmp_path / "exams.jsonl", [*rows, amended, broken])
    result = run_check(synthetic_set / "dicom", records, stub_evaluator, now=NOW)
    assert len(result.exams) == len(rows)  # re-sends are not exams of their own
    exam = next(e for e in result.exams if e.accession_number == first["accession_number"])
    assert exam.facts["review_doctor"] == first["report_doctor"]  # the valid re-send applied
    assert exam.facts["patient_sex"] == first["patient_sex"]  # the quarantined one did not
    assert exam.facts["findings"] == first["findings"]  # omitted fields kept
    assert [f["rule_id"] for f in exam.failures] == ["CHK-REC-INVALID", "STUB-SAME-DOCTOR"]
    assert f"line {len(rows) + 2}" in exam.failures[0]["reason"] and "patient_sex" in exam.failures[0]["fields"]


def test_index_counts_and_string_under_hospital_field_names() -> None:
    out, changes = normalise_record({"series_count": "３", "图像数": "120", "影像云索引": " A|B ", "accession_number": "X"})
    assert out["index_series_count"] == 3 and out["index_instance_count"] == 120 and out["index_string"] == "A|B"
    logged = {(c.field, c.source) for c in changes}
    assert {("index_series_count", "alias:series_count"), ("index_instance_count", "alias:图像数"),
            ("index_string", "alias:影像云索引"), ("index_series_count", "normalise:number")} <= logged
    assert all(c.explain() for c in changes)


def test_zip_exports_are_read_like_the_ingest_reads_them(synthetic_set: Path, tmp_path: Path) -> None:
    import zipfile

    plain, _ = scan_folder(synthetic_set / "dicom")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted((synthetic_set / "dicom").rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(synthetic_set / "dicom").as_posix())
        z.writestr("../escape.dcm", b"x")
    zipped, problems = scan_folder(archive)
    assert set(zipped) == set(plain)
    for uid, study in zipped.items():
        assert study.sop_uids == plain[uid].sop_uids and set(study.series) == set(plain[uid].series)
    codes = {p.code for p in problems}
    assert "unsafe_path" in codes and "empty_file" in codes
    assert all("!" in p.path for p in problems)  # zip members are named ZIP!MEMBER, as in the quarantine


def test_images_of_another_hospital_never_join_a_record(synthetic_set: Path, tmp_path: Path) -> None:
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    other = next(r["hospital_code"] for r in rows if r["hospital_code"] != rows[0]["hospital_code"])
    rows[0]["hospital_code"] = other
    records = _write_records(tmp_path / "exams.jsonl", rows)
    result = run_check(synthetic_set / "dicom", records, stub_evaluator, now=NOW)
    mine = [e for e in result.exams if e.accession_number == rows[0]["accession_number"]]
    assert sorted(e.link for e in mine) == ["images_only", "none"]
    assert {e.failures[0]["rule_id"] for e in mine} == {"CHK-NO-RECORD", "CHK-NO-IMAGES"}


def test_normalised_records_file_is_what_the_ingest_accepts(synthetic_set: Path, tmp_path: Path, workspace: Any) -> None:
    from radqc.pipelines.ingest.records import ingest_records

    rows = _records(synthetic_set / "records" / "exams.jsonl")
    sent = [dict(r) for r in rows]
    sent[0]["patient_sex"] = {"M": "1", "F": "2"}[rows[0]["patient_sex"]]  # the ingest would quarantine "1"
    sent[1]["exam_time"] = datetime.fromisoformat(rows[1]["exam_time"]).strftime("%Y年%m月%d日 %H时%M分%S秒")
    sent[2].pop("accession_number")  # recovered from DICOM (matched by patient + time)
    sent[3]["urgency"] = "soon"  # cannot be normalised: kept as written, reported
    sent[4]["series_count"] = "３"
    records = _write_records(tmp_path / "sent.jsonl", sent)
    result = run_check(synthetic_set / "dicom", records, stub_evaluator, now=NOW)
    paths = write_report(result, tmp_path / "out")
    fixed = _records(Path(paths["normalised_records"]))
    assert len(fixed) == len(rows)
    assert fixed[0]["patient_sex"] == rows[0]["patient_sex"]
    assert datetime.fromisoformat(fixed[1]["exam_time"]) == datetime.fromisoformat(rows[1]["exam_time"])
    assert fixed[2]["accession_number"] == rows[2]["accession_number"]
    assert fixed[3]["urgency"] == "soon"
    assert fixed[4]["series_count"] == "３" and "index_series_count" not in fixed[4]
    summary = ingest_records(workspace, Path(paths["normalised_records"])).to_dict()
    assert summary["quarantined"] == 1 and summary["quarantine_reasons"] == {"invalid_field": 1}  # only "soon"
    assert summary["exam_records"] == len(rows) - 1


def test_orders_and_reports_in_separate_files(synthetic_set: Path, tmp_path: Path) -> None:
    rows = _records(synthetic_set / "records" / "exams.jsonl")
    report_keys = ("report_time", "review_time", "report_doctor", "review_doctor", "findings", "impression")
    orders = [{k: v for k, v in r.items() if k not in report_keys} for r in rows]
    reports = [{k: r[k] for k in ("accession_number", "hospital_code", *report_keys)} for r in rows]
    reports[0]["review_doctor"] = reports[0]["report_doctor"]
    a = _write_records(tmp_path / "orders.jsonl", orders)
    b = _write_records(tmp_path / "reports.jsonl", reports)
    out = _check_cli(str(synthetic_set / "dicom"), "--records", str(a), "--records", str(b), "--ruleset",
                     str(_mini(tmp_path)), "--json", "--out", str(tmp_path / "o"), "--now", CLI_NOW)
    assert out.exit_code == 1, out.output
    exams = {e["accession_number"]: e for e in json.loads(out.stdout)["exams"]}
    assert len(exams) == len(rows)
    assert [f["rule_id"] for f in exams[rows[0]["accession_number"]]["failures"]] == ["T-CONS-DOCTOR"]
    assert all(not e["failures"] for a_, e in exams.items() if a_ != rows[0]["accession_number"])


def _mini(tmp_path: Path) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(MINI_RULESET, encoding="utf-8")
    return path


def test_an_exam_the_engine_cannot_score_does_not_stop_the_batch(synthetic_set: Path) -> None:
    def flaky(facts: dict[str, Any]) -> dict[str, Any]:
        if facts["modality"] == "DX":
            raise RuntimeError("boom")
        return stub_evaluator(facts)

    result = run_check(synthetic_set / "dicom", synthetic_set / "records" / "exams.jsonl", flaky, now=NOW)
    broken = [e for e in result.exams if e.facts["modality"] == "DX"]
    assert broken and len(result.exams) == len(_records(synthetic_set / "records" / "exams.jsonl"))
    for exam in broken:
        assert exam.score is None and [f["rule_id"] for f in exam.failures] == ["CHK-EVAL-ERROR"]
        assert "boom" in exam.failures[0]["reason"]
    assert all(e.passed for e in result.exams if e not in broken)
