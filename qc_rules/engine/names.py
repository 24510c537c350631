"""The fact vocabulary (CONTRACT §1) as data: which names a rule may read, and their neutral
defaults (what an embedded example is merged over). Kept apart from ``qc_rules.facts`` so the
loader does not import the catalogue."""

from __future__ import annotations

from typing import Any

#: Exam-record fields of docs/records-schema.md (plus the optional documented ones).
RECORD_FIELDS = (
    "accession_number", "hospital_code", "hospital_name", "patient_id", "patient_name", "patient_sex",
    "patient_birth_date", "id_number", "phone", "modality", "exam_items", "urgency", "order_time", "exam_time",
    "report_time", "review_time", "upload_time", "technician", "report_doctor", "review_doctor", "findings",
    "impression", "study_instance_uid", "department", "ordering_doctor", "clinical_diagnosis", "patient_type",
    "exam_end_time",
)

#: DICOM-derived facts (None when the exam has no images).
DICOM_FACTS = (
    "dicom_modalities", "series_count", "instance_count", "dicom_accession_number", "dicom_patient_sex",
    "dicom_study_time", "dicom_patient_id", "dicom_patient_birth_date", "dicom_institution", "body_parts",
    "series", "duplicate_sop_uids", "index_series_count", "index_instance_count",
)

OTHER_FACTS = ("index_string", "now", "exam_item_codes", "record_count")

FACT_NAMES: tuple[str, ...] = RECORD_FIELDS + DICOM_FACTS + OTHER_FACTS

#: Facts whose neutral value is an empty list rather than None.
LIST_FACTS = frozenset({"exam_items", "dicom_modalities", "body_parts", "series", "exam_item_codes"})

#: Identifier fields: stored SM4-encrypted on the platform; unavailable without the vault.
IDENTIFIER_FIELDS = frozenset({"patient_id", "patient_name", "id_number", "phone", "patient_birth_date"})


def neutral_facts() -> dict[str, Any]:
    """All known facts, empty: the base an embedded example is merged over."""
    return {name: ([] if name in LIST_FACTS else None) for name in FACT_NAMES}
