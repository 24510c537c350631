"""A small but complete catalogue exam for the exam/recognition/statistics API tests.

``add_full_exam`` writes what the pipeline would have written for one exam — series and
instances, the ``items`` / ``series`` / ``rule_qc`` / ``image_qc`` ledger results (the
image_qc result in the shape of docs/image-qc.md, with an evidence PNG in the object store),
standard series, the HIS/RIS record with its report, and the projected ``qc_result`` row — so
the API is tested against the real tables, not mocks.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from radqc.catalogue import models as m

_counter = iter(range(1, 10**9))


@dataclass
class FullExam:
    exam_id: int
    patient_id: int
    series_ids: list[int]
    series_uids: list[str]
    evidence_keys: list[str] = field(default_factory=list)


def png_bytes(value: int = 128) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8), color=value).save(buf, format="PNG")
    return buf.getvalue()


def _image_qc_result(exam_id: int, series_uid: str, sop_uid: str, evidence_key: str, *, score: float,
                     grade: str, standard: str, modality: str) -> dict[str, Any]:
    """An image_qc ledger result as the stage stores it (docs/image-qc.md)."""
    evidence = {"series_uid": series_uid, "instance_index": 3, "sop_instance_uid": sop_uid, "measured": 41.5,
                "limit": 25.0, "unit": "HU", "image": evidence_key, "box": [10, 12, 40, 60],
                "extra": {"kind": "streak"}}
    deduction = {"check_id": "IQC-NOISE", "dimension": "noise", "value": "异常", "points": 10.0,
                 "reason_zh": "图像噪声超出限值", "reason_en": "image noise above the limit",
                 "evidence": [evidence], "scope": "standard", "source": "image_qc"}
    normal = {"range": "正常", "positioning": "标准", "artifact": "无", "centring": "正常", "sharpness": "正常",
              "reconstruction": "正常", "window": "正常", "dose": "正常"}
    result: dict[str, Any] = {dim: {"value": v} for dim, v in normal.items()}
    result["noise"] = {"value": "异常", "measured_hu": 41.5, "limit_hu": 25.0, "findings": [deduction]}
    result["sequences"] = {"value": "不适用", "reason": "仅适用于MR检查 / applies to MR only"}
    result.update({
        "version": "1", "schema": 1, "exam_id": exam_id, "modality": modality,
        "item": {"code": standard, "name": {"zh": "胸部CT平扫", "en": "Chest CT"}, "source": "items"},
        "grade": grade, "score": score, "deductions": [deduction], "standard": standard, "grading": "ct_mr",
        "total": 100.0, "thresholds": {"3": 90, "2": 75, "1": 60, "0": 0}, "image_score": score + 2,
        "image_grade": grade, "combined": True,
        "not_assessed": [{"dimension": "sequences", "value": "不适用", "reason": "仅适用于MR检查 / applies to MR only"}],
        "evidence_images": [evidence_key],
        "evidence_objects": [{"key": evidence_key, "sha256": evidence_key, "size": 10, "name": "noise.png",
                              "media_type": "image/png"}],
    })
    return result


def add_full_exam(ws: Any, hospital: str, *, person_key: str | None = None, modality: str = "CT",
                  item: str = "CT.CHEST.PLAIN", standard: str = "CT-CHEST-PLAIN", score: float = 80.0,
                  grade: str = "2", days_ago: int = 5, accession: str | None = None, patient_name: str = "张三",
                  id_number: str | None = None, n_series: int = 2, instances: int = 4,
                  description: str = "胸部CT平扫", with_split: bool = True, body_part: str = "CHEST") -> FullExam:
    """One exam with everything the detail view reads; returns its ids."""
    from radqc.serving.accounts import hospital_by_code

    n = next(_counter)
    store = ws.store
    with ws.transaction() as s:
        h = hospital_by_code(s, hospital, create=True, name=f"{hospital} 医院")
        identifiers = {"patient_id": f"PID{n:05d}", "patient_name": patient_name, "patient_sex": "F"}
        if id_number:
            identifiers["id_number"] = id_number
        patient = m.Patient(pseudo_key=f"full-{n}-{hospital}", hospital_id=h.id,
                            person_key=person_key, identifiers_enc=ws.vault.encrypt(identifiers), sex="F",
                            birth_year=1970)
        s.add(patient)
        s.flush()
        exam = m.Exam(study_instance_uid=f"2.25.900{n}", accession_number=accession or f"ACC{n:05d}",
                      hospital_id=h.id, patient_id=patient.id, modality=modality, study_description=description,
                      exam_time=datetime.now(UTC) - timedelta(days=days_ago), ordered_items=[description])
        s.add(exam)
        s.flush()
        series_ids, series_uids = [], []
        first_sop = ""
        for k in range(n_series):
            se = m.Series(exam_id=exam.id, series_instance_uid=f"2.25.900{n}.{k + 1}", modality=modality,
                          series_number=k + 1, description=f"series {k + 1}", body_part=body_part)
            s.add(se)
            s.flush()
            series_ids.append(se.id)
            series_uids.append(se.series_instance_uid)
            for i in range(instances if k == 0 else 2):
                digest = hashlib.sha256(f"{n}.{k}.{i}".encode()).hexdigest()
                sop = f"2.25.900{n}.{k + 1}.{i + 1}"
                first_sop = first_sop or sop
                s.add(m.Instance(series_id=se.id, sop_instance_uid=sop, instance_number=i + 1, content_hash=digest,
                                 size_original=100, storage_key=digest, stored_hash=digest, size_stored=100))
        s.add(m.ExamRecord(record_key=f"rec-{n}", accession_number=exam.accession_number, hospital_code=h.code,
                           patient_id=patient.id, exam_id=exam.id, modality=modality, exam_items=[description],
                           findings="双肺纹理清晰。", impression="胸部CT平扫未见异常。", report_doctor="李医生",
                           report_time=exam.exam_time))
        items_result = {"schema": 1, "hospital": h.code, "no_order": False, "standard_items": [
            {"code": item, "name": item, "modality": modality, "parts": [], "method": "平扫", "laterality": None,
             "confidence": 0.98, "source": "lexicon", "from_text_index": 0}], "ordered": [], "unmapped": []}
        s.add(m.LedgerEntry(exam_id=exam.id, stage="items", version="2", status="succeeded", result=items_result))
        # an older failed and an older succeeded image_qc run: only the latest succeeded one counts
        s.add(m.LedgerEntry(exam_id=exam.id, stage="image_qc", version="1", status="succeeded",
                            result={"score": 1.0, "evidence_objects": [{"key": "stale"}]}))
        put = store.put(png_bytes(n % 250))
        iq = _image_qc_result(exam.id, series_uids[0], first_sop, put.key, score=score, grade=grade,
                              standard=standard, modality=modality)
        led = m.LedgerEntry(exam_id=exam.id, stage="image_qc", version="1", status="succeeded", result=iq)
        s.add(led)
        s.add(m.LedgerEntry(exam_id=exam.id, stage="image_qc", version="1", status="failed", result={}))
        s.add(m.LedgerEntry(exam_id=exam.id, stage="rule_qc", version="1", status="succeeded", result={
            "score": 95.0, "grade": "3", "standard": standard, "ruleset_version": "1", "failures": [
                {"rule_id": "IDX-COMP-001", "dimension": "completeness", "fields": ["patient_name"], "points": 3,
                 "reason": "x", "reason_zh": "姓名缺失", "reason_en": "name missing",
                 "evidence": {"patient_name": patient_name}}]}))
        s.flush()
        if with_split:
            for k, sid in enumerate(series_ids):
                s.add(m.StandardSeries(exam_id=exam.id, source_series_id=sid, standard_series_uid=f"2.25.77{n}{k}",
                                       item_code=item, category="CT.CHEST.AXIAL.LUNG", role="original",
                                       instance_count=instances, label={"plane": "axial", "kernel": "lung"}))
        s.add(m.QcResult(exam_id=exam.id, ledger_id=led.id, standard=standard, modality=modality, score=score,
                         grade=grade, image_score=score + 2, image_grade=grade, rule_score=95.0,
                         dimension_values={"noise": "异常"}, deduction_count=1, evidence_count=1))
        return FullExam(exam.id, patient.id, series_ids, series_uids, [put.key])
