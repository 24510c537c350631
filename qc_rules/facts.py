"""Facts per exam from the catalogue (CONTRACT §1): what a rule sees about one exam.

Two entry points share one builder:

* :func:`facts_from_context` — from a pipeline :class:`ExamContext` (the ``rule_qc`` stage):
  the exam's HIS/RIS record(s), the instance header facts ingest keeps, and the header of one
  instance per exam read from the object store (patient sex, accession, study time, body
  part: facts the catalogue does not keep in columns).
* :func:`facts_for_exam` — from an open workspace and an exam id (API/CLI), which also
  decrypts the patient's identifiers with the workspace vault.

Identifiers (name, ID number, phone, patient ID, birth date) are stored SM4-encrypted in
``Patient.identifiers_enc``; the builders take them as an explicit ``identifiers`` argument so
a caller without the vault passes ``None`` and the engine reports identifier rules as
*skipped* rather than failing every exam for "missing ID number".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from radqc.qc_rules.engine.names import IDENTIFIER_FIELDS, neutral_facts

log = logging.getLogger(__name__)

#: Record columns copied as they are (ExamRecord columns named as in the records schema).
RECORD_COLUMNS = (
    "accession_number", "hospital_code", "modality", "exam_items", "urgency", "order_time", "exam_time",
    "report_time", "review_time", "upload_time", "technician", "report_doctor", "review_doctor", "findings",
    "impression",
)
#: Identifier payload keys (as ingest encrypts them) -> fact names.
IDENTIFIER_KEYS = {"patient_id": "patient_id", "name": "patient_name", "patient_name": "patient_name",
                   "id_number": "id_number", "phone": "phone", "birth_date": "patient_birth_date",
                   "patient_birth_date": "patient_birth_date"}
#: DICOM keywords read from one instance per exam (not kept as catalogue columns).
STUDY_TAGS = {"PatientSex": "dicom_patient_sex", "AccessionNumber": "dicom_accession_number",
              "PatientID": "dicom_patient_id", "PatientBirthDate": "dicom_patient_birth_date",
              "InstitutionName": "dicom_institution"}


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _num_list(value: Any) -> list[Any]:
    out = []
    for v in _as_list(value):
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(v)
    return out


def _first(value: Any) -> Any:
    values = _as_list(value)
    return values[0] if values else None


def _dicom_time(date: Any, time: Any) -> str | None:
    """DICOM DA + TM as ISO 8601 in China Standard Time (headers carry no offset)."""
    if not date:
        return None
    d = str(date).strip()
    t = str(time or "").strip().split(".")[0].ljust(6, "0")[:6]
    try:
        return datetime.strptime(d + t, "%Y%m%d%H%M%S").isoformat() + "+08:00"
    except ValueError:
        return None


def series_facts(series: Any) -> dict[str, Any]:
    """One series of the context as the CONTRACT's ``series`` item (from the first instance header)."""
    header: Mapping[str, Any] = series.instances[0].header if series.instances else {}
    return {
        "series_instance_uid": series.series_instance_uid,
        "modality": series.modality,
        "description": series.description,
        "body_part": series.body_part,
        "n_instances": len(series.instances),
        "slice_thickness": _to_float(header.get("SliceThickness")),
        "pixel_spacing": _num_list(header.get("PixelSpacing")),
        "kernel": _first(header.get("ConvolutionKernel")),
        "window_centers": _num_list(header.get("WindowCenter")),
        "window_widths": _num_list(header.get("WindowWidth")),
        "image_type": [str(v) for v in _as_list(header.get("ImageType"))],
        "protocol_name": header.get("ProtocolName"),
        "manufacturer": header.get("Manufacturer"),
    }


def _to_float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def build_facts(
    *,
    exam: Mapping[str, Any],
    records: list[Mapping[str, Any]],
    series: list[Any],
    study_header: Mapping[str, Any] | None = None,
    identifiers: Mapping[str, Any] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """The facts dict. ``exam``: accession_number, modality, exam_time, ordered_items,
    hospital_code, patient_sex, study_instance_uid, urgency. ``records``: ExamRecord rows as
    dicts (the newest is used). ``series``: SeriesInfo-like objects."""
    facts = neutral_facts()
    record = dict(records[-1]) if records else {}
    for key in RECORD_COLUMNS:
        if record.get(key) not in (None, "", []):
            facts[key] = record[key]
    extra = record.get("extra") or {}
    for key, value in (extra.get("fields") or {}).items():  # extra fields as sent, then documented optional ones
        if key not in facts or facts[key] in (None, []):
            facts[key] = value
    # exam-level fallbacks: what the catalogue knows from the images or the order
    fallbacks = {"accession_number": exam.get("accession_number"), "modality": exam.get("modality"),
                 "exam_time": exam.get("exam_time"), "hospital_code": exam.get("hospital_code"),
                 "urgency": exam.get("urgency"), "exam_items": list(exam.get("ordered_items") or [])}
    for key, value in fallbacks.items():
        if facts.get(key) in (None, "", []) and value not in (None, "", []):
            facts[key] = value
    facts["patient_sex"] = exam.get("patient_sex")
    facts["study_instance_uid"] = exam.get("study_instance_uid") or facts.get("study_instance_uid")
    facts["record_count"] = len(records)
    if identifiers:
        for key, value in identifiers.items():
            name = IDENTIFIER_KEYS.get(key)
            if name and value not in (None, ""):
                facts[name] = value
    if series:
        header = dict(study_header or {})
        facts["dicom_modalities"] = sorted({s.modality for s in series if s.modality})
        facts["series_count"] = len(series)
        facts["instance_count"] = sum(len(s.instances) for s in series)
        facts["body_parts"] = sorted({s.body_part for s in series if s.body_part})
        facts["series"] = [series_facts(s) for s in series]
        facts["duplicate_sop_uids"] = 0  # the catalogue keeps one (newest) version per SOP UID
        for tag, name in STUDY_TAGS.items():
            value = header.get(tag)
            facts[name] = str(value) if value not in (None, "") else None
        facts["dicom_study_time"] = _dicom_time(header.get("StudyDate"), header.get("StudyTime"))
        if facts["dicom_accession_number"] is None and exam.get("study_instance_uid"):
            facts["dicom_accession_number"] = None
    facts["now"] = now or datetime.now(UTC).isoformat()
    return facts


def study_header(ctx: Any) -> dict[str, Any]:
    """Study-level tags from one instance (header only, no pixels); {} when unreadable."""
    for _series, instance in ctx.instances():
        try:
            ds = ctx.dataset(instance, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - a damaged object is a missing fact, not a crash
            log.debug("cannot read header of %s: %s", instance.sop_instance_uid, exc)
            continue
        out = {}
        for tag in (*STUDY_TAGS, "StudyDate", "StudyTime"):
            value = ds.get(tag)
            if value not in (None, ""):
                out[tag] = str(value)
        return out
    return {}


def facts_from_context(ctx: Any, identifiers: Mapping[str, Any] | None = None, now: str | None = None) -> dict[str, Any]:
    """Facts for a pipeline context (the stage path)."""
    exam = {"accession_number": ctx.accession_number, "modality": ctx.modality, "exam_time": ctx.exam_time,
            "ordered_items": list(ctx.ordered_items), "hospital_code": ctx.hospital_code,
            "patient_sex": ctx.patient_sex, "study_instance_uid": ctx.study_instance_uid}
    return build_facts(exam=exam, records=list(ctx.records), series=list(ctx.series),
                       study_header=study_header(ctx) if ctx.series else None, identifiers=identifiers, now=now)


def decrypt_identifiers(session: Any, vault: Any, patient_ids: list[int]) -> dict[str, Any] | None:
    """The newest patient's identifiers, decrypted; None when no patient has any."""
    from sqlalchemy import select

    from radqc.catalogue import models as m

    ids = [int(p) for p in patient_ids if p]
    if not ids:
        return None
    rows = session.execute(select(m.Patient.id, m.Patient.identifiers_enc).where(m.Patient.id.in_(ids))).all()
    blobs = {pid: blob for pid, blob in rows if blob}
    for pid in reversed(ids):
        if pid in blobs:
            return vault.decrypt(blobs[pid])
    return None


def facts_for_exam(workspace: Any, exam_id: int, now: str | None = None) -> dict[str, Any]:
    """Facts for one catalogue exam, identifiers decrypted with the workspace vault."""
    from radqc.pipelines.runner.ledger import load_exams
    from radqc.pipelines.runner.stage import StoreRef

    with workspace.sessions() as session:
        loaded = load_exams(session, [exam_id], StoreRef.for_store(workspace.store), ("instances", "records"))
        if exam_id not in loaded:
            raise KeyError(f"no exam {exam_id} / 检查不存在")
        ctx = loaded[exam_id].ctx
        patient_ids = [r.get("patient_id") for r in ctx.records]
        identifiers = decrypt_identifiers(session, workspace.vault, patient_ids)
    return facts_from_context(ctx, identifiers, now=now)


__all__ = ["IDENTIFIER_FIELDS", "build_facts", "decrypt_identifiers", "facts_for_exam", "facts_from_context"]
