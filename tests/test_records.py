"""HIS/RIS record ingest (``radqc ingest-records``): formats, encodings, quarantine, idempotence,
history, linking to images in both orders, and that identifiers never reach the catalogue."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from sqlalchemy import func, inspect, select, text

from radqc.catalogue import models as m
from radqc.pipelines.ingest.folder import ingest_path
from radqc.pipelines.ingest.records import RecordsFileError, ingest_records
from radqc.pipelines.ingest.service import from_catalogue_time

HOSPITAL = "330100123"  # the hospital's institution code
NAME = "王小明"
ID_NUMBER = "330102198005061234"
PHONE = "13912345678"

FINDINGS = "双肺纹理清晰，未见明显实质性病变。纵隔内未见肿大淋巴结。"
IMPRESSION = "胸部CT平扫未见明显异常。"


def exam(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "accession_number": "ACC-001",
        "hospital_code": HOSPITAL,
        "hospital_name": "杭州市第一人民医院",
        "patient_id": "P0001",
        "patient_name": NAME,
        "patient_sex": "M",
        "patient_birth_date": "1980-05-06",
        "id_number": ID_NUMBER,
        "phone": PHONE,
        "modality": "CT",
        "exam_items": ["胸部CT平扫"],
        "urgency": "routine",
        "order_time": "2024-03-05T09:05:00+08:00",
        "exam_time": "2024-03-05T10:20:00+08:00",
        "technician": "李技师",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def charge(**overrides: object) -> dict[str, object]:
    line: dict[str, object] = {
        "accession_number": "ACC-001",
        "charge_code": "210300001",
        "charge_name": "X线计算机体层(CT)平扫",
        "quantity": 1,
        "unit_price": 150.0,
        "amount": 150.0,
        "charge_time": "2024-03-05T09:10:00+08:00",
        "catalogue": "guideline-2024",
        "province": "浙江",
    }
    line.update(overrides)
    return {k: v for k, v in line.items() if v is not None}


def write_jsonl(path: Path, records: list[dict[str, object]], encoding: str = "utf-8") -> Path:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode(encoding))
    return path


def write_csv(path: Path, records: list[dict[str, object]], encoding: str = "utf-8") -> Path:
    columns: list[str] = []
    for r in records:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: "|".join(v) if isinstance(v, list) else v for k, v in r.items()})
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def ct_folder(pydicom_test_files: Path, folder: Path, institution_code: str | None = None, **changes: object) -> Path:
    """pydicom's CT_small.dcm (PatientID 1CT1, study 2004-01-19 07:27:30, institution name
    only, so DICOM ingest codes its hospital NAME:JFK IMAGING CENTER) with changes."""
    ds = pydicom.dcmread(pydicom_test_files / "CT_small.dcm")
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if institution_code:
        item = Dataset()
        item.CodeValue = institution_code
        ds.InstitutionCodeSequence = Sequence([item])
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    (folder / "ct.dcm").write_bytes(buf.getvalue())
    return folder


def counts_add_up(summary) -> None:  # type: ignore[no-untyped-def]
    s = summary
    assert s.exam_records + s.charge_lines + s.updated + s.duplicate + s.quarantined == s.records_seen


# -- formats and encodings --------------------------------------------------------------------
def test_jsonl_exam_records_and_charge_lines(workspace, tmp_path):
    path = write_jsonl(
        tmp_path / "his.jsonl",
        [
            exam(findings=FINDINGS, impression=IMPRESSION, report_doctor="赵医生", ward="5病区", patient_address="西湖区某路1号"),
            charge(),
            charge(charge_code="250101001", charge_name="CT增强造影剂", quantity=2, unit_price=100, amount=150),
            {**exam(accession_number="ACC-002", patient_id="P0002", exam_items="上腹部CT平扫+增强|胸部CT平扫"),
             "record_type": "report"},
        ],
    )
    summary = ingest_records(workspace, path)
    counts_add_up(summary)
    assert (summary.records_seen, summary.exam_records, summary.charge_lines, summary.quarantined) == (4, 2, 2, 0)
    assert summary.warnings["amount_mismatch"] == 1
    with workspace.sessions() as s:
        record = s.scalar(select(m.ExamRecord).where(m.ExamRecord.accession_number == "ACC-001"))
        assert record.findings == FINDINGS and record.impression == IMPRESSION
        assert record.exam_items == ["胸部CT平扫"] and record.urgency == "routine"
        # naive or +08:00 input, stored as the same instant in UTC
        assert from_catalogue_time(record.exam_time) == datetime(2024, 3, 5, 2, 20, tzinfo=UTC)
        assert record.extra["fields"]["ward"] == "5病区"
        assert "patient_address" not in record.extra["fields"]  # an identifier: encrypted only
        patient = s.get(m.Patient, record.patient_id)
        assert patient.sex == "M" and patient.birth_year == 1980 and patient.person_key
        assert workspace.vault.decrypt(patient.identifiers_enc)["patient_address"] == "西湖区某路1号"
        second = s.scalar(select(m.ExamRecord).where(m.ExamRecord.accession_number == "ACC-002"))
        assert second.exam_items == ["上腹部CT平扫+增强", "胸部CT平扫"]
        exam_row = s.get(m.Exam, record.exam_id)  # records first: an exam without images yet
        assert exam_row.study_instance_uid is None and exam_row.ordered_items == ["胸部CT平扫"]
        assert s.get(m.Hospital, exam_row.hospital_id).code == HOSPITAL
        lines = s.scalars(select(m.ChargeLine).order_by(m.ChargeLine.id)).all()
        assert [line.exam_id for line in lines] == [record.exam_id, record.exam_id]
        assert [line.hospital_code for line in lines] == [HOSPITAL, HOSPITAL]
        assert lines[1].extra["warnings"][0]["code"] == "amount_mismatch"
        assert lines[1].extra["warnings"][0]["expected"] == 200.0


def test_naive_times_are_china_standard_time(workspace, tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            exam(accession_number="N1", exam_time="2024-03-05 10:20:00"),
            exam(accession_number="N2", exam_time="2024-03-05T02:20:00Z"),
            exam(accession_number="N3", exam_time="2024/03/05 10:20"),
        ],
    )
    assert ingest_records(workspace, path).exam_records == 3
    with workspace.sessions() as s:
        times = {r.accession_number: from_catalogue_time(r.exam_time) for r in s.scalars(select(m.ExamRecord))}
    assert set(times.values()) == {datetime(2024, 3, 5, 2, 20, tzinfo=UTC)}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_in_utf8_with_bom_and_gb18030(workspace, tmp_path, encoding):
    records = [
        exam(findings="肝脏大小形态正常，\n肝内未见异常密度影。", impression="上腹部CT平扫+增强未见明显异常。",
             exam_items=["上腹部CT平扫+增强", "胸部CT平扫"], urgency="急诊", patient_sex="女"),
        exam(accession_number="ACC-002", patient_id="P0002", exam_items='["胸部CT平扫"]'),
        charge(),
    ]
    path = write_csv(tmp_path / "his.csv", records, encoding)
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            path.read_bytes().decode("utf-8")  # really not UTF-8
    summary = ingest_records(workspace, path)
    counts_add_up(summary)
    assert (summary.exam_records, summary.charge_lines, summary.quarantined) == (2, 1, 0)
    assert summary.format == "csv"
    assert summary.encodings.get("gb18030", 0) == (3 if encoding == "gb18030" else 0)
    with workspace.sessions() as s:
        record = s.scalar(select(m.ExamRecord).where(m.ExamRecord.accession_number == "ACC-001"))
        assert record.exam_items == ["上腹部CT平扫+增强", "胸部CT平扫"]
        assert record.findings == "肝脏大小形态正常，\n肝内未见异常密度影。"  # a quoted cell over two lines
        assert record.urgency == "emergency"
        assert s.get(m.Patient, record.patient_id).sex == "F"
        other = s.scalar(select(m.ExamRecord).where(m.ExamRecord.accession_number == "ACC-002"))
        assert other.exam_items == ["胸部CT平扫"]  # a JSON array in a CSV cell
        assert s.scalar(select(m.ChargeLine.charge_name)) == "X线计算机体层(CT)平扫"


def test_kind_option_and_record_type(workspace, tmp_path):
    path = write_jsonl(tmp_path / "k.jsonl", [exam(), {**charge(), "record_type": "charge"}])
    summary = ingest_records(workspace, path, kind="exam")
    counts_add_up(summary)
    assert summary.exam_records == 1 and summary.quarantined == 1
    assert summary.reasons == {"kind": 1}


# -- bad input ---------------------------------------------------------------------------------
def test_malformed_lines_are_quarantined_with_line_numbers_and_the_rest_is_ingested(workspace, tmp_path):
    good = [json.dumps(exam(), ensure_ascii=False), json.dumps(charge(), ensure_ascii=False)]
    lines = [
        good[0],                                                                  # 1 ok
        "{not json",                                                              # 2 not_json
        "",                                                                       # 3 blank: skipped
        json.dumps([1, 2]),                                                       # 4 not_object
        json.dumps(exam(accession_number="ACC-009", patient_sex="X", urgency="soon")),  # 5 enums
        json.dumps(exam(accession_number=None, exam_time=None)),                  # 6 no identity
        json.dumps(exam(accession_number="ACC-010", exam_time="3/5/2024 10am")),  # 7 bad time
        json.dumps(charge(amount="一百五")),                                       # 8 bad number
        json.dumps({"record_type": "invoice", "hospital_code": HOSPITAL}),        # 9 unknown kind
        json.dumps(exam(accession_number="ACC-011", patient_birth_date="05/06/80")),  # 10 identifier
        good[1],                                                                  # 11 ok
    ]
    data = "\n".join(lines).encode("utf-8") + b"\n" + b'{"accession_number": "\xff\xfe"}\n'  # 12 encoding
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    summary = ingest_records(workspace, path)
    counts_add_up(summary)
    assert summary.records_seen == 11  # the blank line is not a record
    assert (summary.exam_records, summary.charge_lines, summary.quarantined) == (1, 1, 9)
    assert summary.reasons == {"not_json": 1, "not_object": 1, "invalid_field": 5, "kind": 1, "encoding": 1}
    with workspace.sessions() as s:
        rows = {q.source_ref: q for q in s.scalars(select(m.QuarantineItem))}
    expected_lines = {2, 4, 5, 6, 7, 8, 9, 10, 12}
    assert set(rows) == {f"{path.resolve()}:{n}" for n in expected_lines}
    raw_lines = data.split(b"\n")
    for n in expected_lines:
        row = rows[f"{path.resolve()}:{n}"]
        assert row.source == "records" and row.reason_code == "bad_record"
        assert row.detail["line"] == n and f"第 {n} 行" in row.reason and f"line {n}" in row.reason
        assert workspace.store.get(row.storage_key).rstrip(b"\n") == raw_lines[n - 1]  # the line's bytes
    enums = rows[f"{path.resolve()}:5"]
    assert set(enums.detail["fields"]) == {"patient_sex", "urgency"}
    assert "patient_sex" in enums.reason and "取值不在允许范围内" in enums.reason and "'soon'" in enums.reason
    assert "accession_number" in rows[f"{path.resolve()}:6"].reason
    assert "ISO 8601" in rows[f"{path.resolve()}:7"].reason and "时间格式错误" in rows[f"{path.resolve()}:7"].reason
    assert rows[f"{path.resolve()}:8"].detail["fields"] == ["amount"]
    birth = rows[f"{path.resolve()}:10"]
    assert birth.detail["fields"] == ["patient_birth_date"] and "05/06/80" not in birth.reason  # no identifier echoed
    # the same file again: the same bad lines are not quarantined twice
    again = ingest_records(workspace, path)
    counts_add_up(again)
    assert again.quarantined == 9 and again.duplicate == 2
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.QuarantineItem.id))) == 9


def test_csv_row_with_more_cells_than_header_is_quarantined(workspace, tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text(
        "accession_number,hospital_code,patient_id,exam_time\n"
        "A1,H1,P1,2024-03-05T10:00:00\n"
        "A2,H1,P2,2024-03-05T11:00:00,surplus\n"
        "A3,H1,P3,2024-03-05T12:00:00\n",
        encoding="utf-8",
    )
    summary = ingest_records(workspace, path)
    counts_add_up(summary)
    assert summary.exam_records == 2 and summary.reasons == {"csv_columns": 1}
    with workspace.sessions() as s:
        assert s.scalar(select(m.QuarantineItem.source_ref)) == f"{path.resolve()}:3"


def test_whole_file_problems_are_errors_not_quarantine(workspace, tmp_path):
    array = tmp_path / "array.json"
    array.write_text(json.dumps([exam()]), encoding="utf-8")
    with pytest.raises(RecordsFileError, match="JSON Lines"):
        ingest_records(workspace, array)
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("accession_number,hospital_code\nA,H\n".encode("utf-16"))
    with pytest.raises(RecordsFileError, match="UTF-16"):
        ingest_records(workspace, utf16)
    with pytest.raises(RecordsFileError):
        ingest_records(workspace, tmp_path / "missing.jsonl")


# -- idempotence and history --------------------------------------------------------------------
def test_reingest_is_a_no_op(workspace, tmp_path):
    path = write_jsonl(tmp_path / "his.jsonl", [exam(findings=FINDINGS), charge(), charge()])
    first = ingest_records(workspace, path)
    # two identical lines in one file are two charges (double billing is audit evidence)
    assert (first.exam_records, first.charge_lines) == (1, 2)
    status = workspace.status()
    second = ingest_records(workspace, path)
    counts_add_up(second)
    assert (second.exam_records, second.charge_lines, second.updated, second.duplicate) == (0, 0, 0, 3)
    assert workspace.status() == status
    # the same charge line in another file is a re-send, not a third charge
    other = write_jsonl(tmp_path / "again.jsonl", [charge()])
    assert ingest_records(workspace, other).duplicate == 1


def test_a_resent_record_updates_and_keeps_history(workspace, tmp_path):
    ordered = write_jsonl(tmp_path / "1-order.jsonl", [exam()])
    reported = write_jsonl(
        tmp_path / "2-report.jsonl",
        [exam(findings=FINDINGS, impression=IMPRESSION, report_time="2024-03-05T11:00:00+08:00", report_doctor="赵医生")],
    )
    amended = write_jsonl(
        tmp_path / "3-amended.jsonl",
        [exam(findings=FINDINGS, impression="右肺上叶小结节，建议随访。", report_time="2024-03-05T11:00:00+08:00",
              review_doctor="钱主任", review_time="2024-03-05T15:00:00+08:00", phone="13900000000")],
    )
    assert ingest_records(workspace, ordered).exam_records == 1
    second = ingest_records(workspace, reported)
    counts_add_up(second)
    assert second.updated == 1 and second.exam_records == 0
    third = ingest_records(workspace, amended)
    assert third.updated == 1
    # an old export re-sent after the amendment is a duplicate, not a revert
    stale = ingest_records(workspace, reported)
    assert stale.duplicate == 1 and stale.updated == 0
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.ExamRecord.id))) == 1
        record = s.scalar(select(m.ExamRecord))
        assert record.impression == "右肺上叶小结节，建议随访。" and record.findings == FINDINGS
        assert record.review_doctor == "钱主任" and record.technician == "李技师"  # omitted fields kept
        history = record.extra["history"]
        assert len(history) == 2
        assert history[0]["previous"]["impression"] is None and history[0]["previous"]["findings"] is None
        assert history[0]["source_ref"].endswith("1-order.jsonl:1")
        assert history[1]["previous"]["impression"] == IMPRESSION  # the amended text is kept
        assert history[1]["identifiers_changed"] == ["phone"]  # named, never the value
        assert "13900000000" not in json.dumps(history, ensure_ascii=False)
        assert all(datetime.fromisoformat(h["replaced_at"]).tzinfo for h in history)
        patient = s.get(m.Patient, record.patient_id)
        assert workspace.vault.decrypt(patient.identifiers_enc)["phone"] == "13900000000"


def test_charge_line_with_charge_id_is_updated_in_place(workspace, tmp_path):
    first = write_jsonl(tmp_path / "c1.jsonl", [charge(charge_id="C-1", hospital_code=HOSPITAL)])
    second = write_jsonl(tmp_path / "c2.jsonl", [charge(charge_id="C-1", hospital_code=HOSPITAL, quantity=-1, amount=-150)])
    assert ingest_records(workspace, first).charge_lines == 1
    summary = ingest_records(workspace, second)
    assert summary.updated == 1 and summary.charge_lines == 0
    with workspace.sessions() as s:
        line = s.scalar(select(m.ChargeLine))
        assert line.amount == -150 and line.extra["history"][0]["previous"]["amount"] == 150.0


# -- linking -------------------------------------------------------------------------------------
def test_records_first_then_images_link_by_accession(workspace, pydicom_test_files, tmp_path):
    path = write_jsonl(
        tmp_path / "his.jsonl",
        [exam(exam_items=["胸部CT平扫"], urgency="emergency", exam_time="2004-01-19T07:30:00"), charge()],
    )
    first = ingest_records(workspace, path)
    assert first.linked_to_images == 0
    images = ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "dcm", AccessionNumber="ACC-001"))
    assert images.ingested == 1
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 1  # the images joined the record's exam
        exam_row = s.scalar(select(m.Exam))
        record = s.scalar(select(m.ExamRecord))
        assert exam_row.study_instance_uid and record.exam_id == exam_row.id
        assert s.get(m.Hospital, exam_row.hospital_id).code == HOSPITAL  # not NAME:JFK...
        assert exam_row.patient_id == record.patient_id
        assert exam_row.ordered_items == ["胸部CT平扫"] and exam_row.urgency == "emergency"
        assert len(exam_row.series) == 1
        assert s.scalar(select(m.ChargeLine.exam_id)) == exam_row.id
    again = ingest_records(workspace, path)
    assert again.duplicate == 2 and again.linked_to_images == 2


def test_images_first_then_records_link_and_take_the_records_hospital(workspace, pydicom_test_files, tmp_path):
    ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "dcm", AccessionNumber="ACC-001"))
    with workspace.sessions() as s:
        exam_row = s.scalar(select(m.Exam))
        assert s.get(m.Hospital, exam_row.hospital_id).code == "NAME:JFK IMAGING CENTER"
        image_time = from_catalogue_time(exam_row.exam_time)
    assert image_time == datetime(2004, 1, 18, 23, 27, 30, tzinfo=UTC)  # 07:27:30 China time
    path = write_jsonl(tmp_path / "his.jsonl", [exam(exam_items=["胸部CT平扫"]), charge(hospital_code=HOSPITAL)])
    summary = ingest_records(workspace, path)
    counts_add_up(summary)
    assert summary.linked_to_images == 2 and summary.links["accession"] == 1
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 1
        exam_row = s.scalar(select(m.Exam))
        record = s.scalar(select(m.ExamRecord))
        assert record.exam_id == exam_row.id and record.extra["link"] == "accession"
        assert s.get(m.Hospital, exam_row.hospital_id).code == HOSPITAL
        assert exam_row.patient_id == record.patient_id
        assert exam_row.ordered_items == ["胸部CT平扫"]  # the order, not the StudyDescription guess
        assert from_catalogue_time(exam_row.exam_time) == image_time  # kept: the images know best
        assert s.scalar(select(m.ChargeLine.exam_id)) == exam_row.id


def test_a_record_moves_from_its_placeholder_exam_to_the_images_exam(workspace, pydicom_test_files, tmp_path, monkeypatch):
    """Heal path: images catalogued as their own exam although a record's image-less exam was
    waiting (ingested by a path that did not look for it): the next ingest of the record moves
    it, and its charges, to the images and removes the empty exam."""
    import radqc.pipelines.ingest.records as records

    path = write_jsonl(tmp_path / "his.jsonl", [exam(), charge()])
    ingest_records(workspace, path)
    monkeypatch.setattr(records, "exam_waiting_for_images", lambda *a, **k: None)
    ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "dcm", AccessionNumber="ACC-001"))
    monkeypatch.undo()
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 2
        placeholder_id = s.scalar(select(m.ExamRecord.exam_id))
    again = ingest_records(workspace, path)
    assert again.duplicate == 2 and again.linked_to_images == 2
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 1 and s.get(m.Exam, placeholder_id) is None
        exam_row = s.scalar(select(m.Exam))
        assert exam_row.study_instance_uid and s.get(m.Hospital, exam_row.hospital_id).code == HOSPITAL
        assert s.scalar(select(m.ExamRecord.exam_id)) == exam_row.id
        assert s.scalar(select(m.ChargeLine.exam_id)) == exam_row.id


def test_images_of_another_hospital_do_not_link(workspace, pydicom_test_files, tmp_path):
    ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "a", "OTHER-HOSP", AccessionNumber="ACC-001"))
    summary = ingest_records(workspace, write_jsonl(tmp_path / "his.jsonl", [exam()]))
    assert summary.linked_to_images == 0
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 2
    # and the other way round: another hospital's images do not join a record's exam
    ingest_path(
        workspace,
        ct_folder(pydicom_test_files, tmp_path / "b", "THIRD-HOSP", AccessionNumber="ACC-001",
                  StudyInstanceUID="1.2.826.0.1.3680043.8.498.1", SeriesInstanceUID="1.2.826.0.1.3680043.8.498.2",
                  SOPInstanceUID="1.2.826.0.1.3680043.8.498.3"),
    )
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 3
        record = s.scalar(select(m.ExamRecord))
        assert s.get(m.Exam, record.exam_id).study_instance_uid is None


def test_patient_and_time_link_without_accession(workspace, pydicom_test_files, tmp_path):
    ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "dcm"))  # no AccessionNumber
    records = [
        # another patient at the same time: never linked to these images
        exam(accession_number=None, patient_id="9XX9", exam_time="2004-01-19T07:30:00+08:00", modality="CT"),
        # the same patient within the window, but MR: not these CT images
        exam(accession_number=None, patient_id="1CT1", exam_time="2004-01-19T08:30:00+08:00", modality="MR"),
        # the same patient, CT, within ±2 h of the study time (07:27:30 China time): linked
        exam(accession_number=None, patient_id="1CT1", exam_time="2004-01-19T08:30:00+08:00", modality="CT"),
    ]
    summary = ingest_records(workspace, write_jsonl(tmp_path / "his.jsonl", records))
    counts_add_up(summary)
    assert summary.exam_records == 3 and summary.linked_to_images == 1 and summary.links["patient_time"] == 1
    with workspace.sessions() as s:
        image_exam = s.scalar(select(m.Exam).where(m.Exam.study_instance_uid.is_not(None)))
        linked = s.scalars(select(m.ExamRecord).where(m.ExamRecord.exam_id == image_exam.id)).all()
        assert len(linked) == 1 and linked[0].modality == "CT" and linked[0].extra["link"] == "patient_time"
        assert s.get(m.Patient, linked[0].patient_id).pseudo_key == workspace.vault.pseudonym(HOSPITAL, "1CT1")
        assert s.get(m.Hospital, image_exam.hospital_id).code == HOSPITAL
    # re-ingesting is still a no-op (records without accession are keyed by patient + time)
    again = ingest_records(workspace, write_jsonl(tmp_path / "his.jsonl", records))
    assert again.duplicate == 3 and again.linked_to_images == 1


def test_patient_and_time_link_records_first_and_outside_the_window(workspace, pydicom_test_files, tmp_path):
    records = [exam(accession_number=None, patient_id="1CT1", exam_time="2004-01-19T06:00:00", modality="CT")]
    ingest_records(workspace, write_jsonl(tmp_path / "his.jsonl", records))
    ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "dcm"))  # 07:27:30, within 2 h
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 1
        record = s.scalar(select(m.ExamRecord))
        assert s.get(m.Exam, record.exam_id).study_instance_uid is not None


def test_patient_and_time_outside_the_window_do_not_link(workspace, pydicom_test_files, tmp_path):
    ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "dcm"))
    records = [exam(accession_number=None, patient_id="1CT1", exam_time="2004-01-19T10:00:00", modality="CT")]
    summary = ingest_records(workspace, write_jsonl(tmp_path / "his.jsonl", records))
    assert summary.linked_to_images == 0
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Exam.id))) == 2


def test_charge_lines_before_their_exam_are_linked_later(workspace, pydicom_test_files, tmp_path):
    first = ingest_records(workspace, write_jsonl(tmp_path / "c.jsonl", [charge(accession_number="ACC-777")]))
    assert first.charge_lines == 1 and first.linked_to_images == 0
    ingest_path(workspace, ct_folder(pydicom_test_files, tmp_path / "dcm", AccessionNumber="ACC-777"))
    later = ingest_records(workspace, write_jsonl(tmp_path / "other.jsonl", [exam(accession_number="ACC-888")]))
    assert later.notes and "1" in later.notes[0]
    with workspace.sessions() as s:
        line = s.scalar(select(m.ChargeLine))
        assert s.get(m.Exam, line.exam_id).study_instance_uid is not None


# -- privacy ---------------------------------------------------------------------------------------
def test_no_clear_identifiers_in_the_catalogue(workspace, tmp_path):
    records = [exam(findings=FINDINGS), exam(accession_number="ACC-002", patient_id="P0002")]
    ingest_records(workspace, write_csv(tmp_path / "his.csv", records, "gb18030"))
    ingest_records(workspace, write_jsonl(tmp_path / "his.jsonl", [*records, charge(patient_name=NAME, phone=PHONE)]))
    needles = [NAME, ID_NUMBER, PHONE, "P0001", "P0002", "1980-05-06"]
    with workspace.sessions() as s:  # every text/JSON cell of every table, on either backend
        line = s.scalar(select(m.ChargeLine))
        assert line.extra["identifiers_dropped"] == ["patient_name", "phone"]
        for table in inspect(workspace.engine).get_table_names():
            for row in s.execute(text(f"SELECT * FROM {table}")):
                dumped = json.dumps([str(v) for v in row], ensure_ascii=False)
                for needle in needles:
                    assert needle not in dumped, (table, needle)
    if workspace.settings.is_sqlite:  # and the SQLite file itself, byte for byte
        workspace.close()
        db = Path(workspace.settings.database_url.split("///", 1)[1])
        blob = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        for needle in needles:
            for encoding in ("utf-8", "gb18030"):
                assert needle.encode(encoding) not in blob, needle


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_json_summary(workspace, tmp_path):
    from typer.testing import CliRunner

    from radqc.cli.main import app

    path = write_jsonl(tmp_path / "his.jsonl", [exam(), charge()])
    path.write_bytes(path.read_bytes() + b"oops\n")
    result = CliRunner().invoke(app, ["ingest-records", str(path), "--format", "jsonl", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("records_seen", "exam_records", "charge_lines", "updated", "duplicate", "quarantined", "linked_to_images"):
        assert key in data
    assert (data["records_seen"], data["exam_records"], data["charge_lines"], data["quarantined"]) == (3, 1, 1, 1)
    bad = CliRunner().invoke(app, ["ingest-records", str(path), "--kind", "invoice"])
    assert bad.exit_code == 2
    missing = CliRunner().invoke(app, ["ingest-records", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2


# -- the documentation's examples are real ----------------------------------------------------
def _doc_blocks(language: str) -> list[str]:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "records-schema.md").read_text(encoding="utf-8")
    blocks = doc.split(f"```{language}\n")[1:]
    return [block.split("```", 1)[0] for block in blocks]


def test_the_documented_examples_ingest_cleanly(workspace, tmp_path):
    (jsonl,) = _doc_blocks("jsonl")
    summary = ingest_records(workspace, write_text(tmp_path / "his-0305.jsonl", jsonl, "utf-8"))
    counts_add_up(summary)
    data = summary.to_dict()
    assert (data["records_seen"], data["exam_records"], data["charge_lines"], data["quarantined"]) == (5, 2, 3, 0)
    assert data["warnings"] == {"amount_mismatch": 1} and data["links"]["created"] == 2
    (table,) = _doc_blocks("csv")
    for encoding in ("gb18030", "utf-8-sig"):
        csv_summary = ingest_records(workspace, write_text(tmp_path / f"his-0306-{encoding}.csv", table, encoding))
        counts_add_up(csv_summary)
        assert csv_summary.quarantined == 0 and csv_summary.records_seen == 3
    with workspace.sessions() as s:
        dr = s.scalar(select(m.ExamRecord).where(m.ExamRecord.accession_number == "DR20240306008"))
        assert dr.exam_items == ["胸部正位片", "胸部侧位片"] and dr.urgency == "routine"
        assert from_catalogue_time(dr.exam_time) == datetime(2024, 3, 6, 0, 32, tzinfo=UTC)
        assert "\n" in dr.findings
        emergency = s.scalar(select(m.ExamRecord).where(m.ExamRecord.accession_number == "CT20240305017"))
        assert from_catalogue_time(emergency.exam_time) == datetime(2024, 3, 5, 14, 5, tzinfo=UTC)
        line = s.scalar(select(m.ChargeLine).where(m.ChargeLine.accession_number == "DR20240306008"))
        assert line.exam_id == dr.exam_id and line.amount == 120


def write_text(path: Path, content: str, encoding: str) -> Path:
    path.write_bytes(content.encode(encoding))
    return path
