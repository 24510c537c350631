"""The catalogue schema: what the product knows about every exam, and where its bytes are.

Patient identifiers never appear in clear: a patient row carries an HMAC-SM3 pseudonym
and an SM4 ciphertext of the identifiers (see ``radqc.crypto``). Original DICOM bytes live
in the object store; an instance row points at them by content hash. Nothing here is
updated in place by pipeline stages: stages write ledger rows and their own results.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware, on every backend.

    SQLite keeps no offset (it returns naive values) while PostgreSQL returns aware ones;
    without this, the same exam time compares 8 h apart depending on the catalogue. Aware
    input is converted to UTC; naive input is taken to be UTC already (convert local times,
    e.g. China Standard Time from DICOM, with ``pipelines.ingest.service.catalogue_time``).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Hospital(Base):
    __tablename__ = "hospital"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Institution code (机构代码 / unified social credit code), or a name-derived code when unknown.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Patient(Base):
    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: HMAC-SM3(hospital code, hospital patient ID): stable, not reversible without the key.
    pseudo_key: Mapped[str] = mapped_column(String(64), unique=True)
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"))
    #: HMAC-SM3(national ID number) when known: links one person across hospitals.
    person_key: Mapped[str | None] = mapped_column(String(64), index=True)
    #: SM4-CBC ciphertext of {patient_id, name, id_number, phone, birth_date}.
    identifiers_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    sex: Mapped[str | None] = mapped_column(String(1))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    hospital: Mapped[Hospital | None] = relationship()


class Exam(Base):
    """One imaging study (检查) at one hospital, keyed by StudyInstanceUID and/or accession."""

    __tablename__ = "exam"
    __table_args__ = (Index("ix_exam_hospital_accession", "hospital_id", "accession_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), unique=True)
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(64))
    exam_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    study_description: Mapped[str | None] = mapped_column(String(512))
    #: Ordered exam items exactly as the hospital wrote them (from HIS/RIS or StudyDescription).
    ordered_items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    urgency: Mapped[str | None] = mapped_column(String(16))
    #: Pipeline status per stage name: {"index": "succeeded", ...}; a cache of the ledger.
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    hospital: Mapped[Hospital | None] = relationship()
    patient: Mapped[Patient | None] = relationship()
    series: Mapped[list[Series]] = relationship(back_populates="exam", order_by="Series.series_number")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exam.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(String(512))
    body_part: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    exam: Mapped[Exam] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """One stored version of one SOP instance.

    The same SOP Instance UID arriving with different bytes becomes a new row with a
    higher ``version``; the old row and its bytes stay.
    """

    __tablename__ = "instance"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "content_hash", name="uq_instance_uid_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    sop_class_uid: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    #: SHA-256 of the bytes as received (the original).
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    size_original: Mapped[int] = mapped_column(BigInteger)
    #: Where the bytes are now, and their hash/syntax/size there (differs after archive compression).
    storage_key: Mapped[str] = mapped_column(String(128))
    stored_hash: Mapped[str] = mapped_column(String(64))
    stored_transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    size_stored: Mapped[int] = mapped_column(BigInteger)
    #: SHA-256 of the data set without its file meta header (duplicate detection across senders).
    dataset_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    #: SHA-256 of the decoded pixel data, for reuse detection and lossless verification.
    pixel_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str | None] = mapped_column(String(32))
    source_ref: Mapped[str | None] = mapped_column(Text)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Small header facts later stages need without re-reading the file (geometry, timing).
    header: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    series: Mapped[Series] = relationship(back_populates="instances")


class ExamRecord(Base):
    """A HIS/RIS exam record: the order, its times and people, and the report text."""

    __tablename__ = "exam_record"
    __table_args__ = (UniqueConstraint("hospital_code", "accession_number", name="uq_record_hosp_acc"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Identity of the record: SHA-256 of (hospital, accession) or, without an accession, of
    #: (hospital, patient pseudonym, exam time, modality). A re-sent record finds its row by it.
    record_key: Mapped[str] = mapped_column(String(64), unique=True)
    #: HMAC-SM3 of the last applied version as received; earlier ones are in extra["history"].
    content_hash: Mapped[str | None] = mapped_column(String(64))
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    hospital_code: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    exam_id: Mapped[int | None] = mapped_column(ForeignKey("exam.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    exam_items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    urgency: Mapped[str | None] = mapped_column(String(16))
    order_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    exam_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    report_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    upload_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    technician: Mapped[str | None] = mapped_column(String(64))
    report_doctor: Mapped[str | None] = mapped_column(String(64))
    review_doctor: Mapped[str | None] = mapped_column(String(64))
    findings: Mapped[str | None] = mapped_column(Text)
    impression: Mapped[str | None] = mapped_column(Text)
    #: Fields beyond the documented schema, kept as received (identifiers removed).
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_ref: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ChargeLine(Base):
    """One HIS charge line (收费明细) for an exam, linked to the exam by accession number."""

    __tablename__ = "charge_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    accession_number: Mapped[str] = mapped_column(String(64), index=True)
    exam_id: Mapped[int | None] = mapped_column(ForeignKey("exam.id"), index=True)
    hospital_code: Mapped[str | None] = mapped_column(String(64))
    #: The HIS's own charge line ID (收费明细流水号) when it sends one.
    charge_id: Mapped[str | None] = mapped_column(String(64))
    charge_code: Mapped[str] = mapped_column(String(64))
    charge_name: Mapped[str] = mapped_column(String(256))
    quantity: Mapped[float] = mapped_column(Float)
    unit_price: Mapped[float | None] = mapped_column(Float)
    amount: Mapped[float] = mapped_column(Float)
    charge_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    catalogue: Mapped[str | None] = mapped_column(String(32))
    province: Mapped[str | None] = mapped_column(String(32))
    #: Identity of the line: SHA-256 of (hospital, accession, charge_id) when the HIS sends a
    #: charge_id, else of the canonical line and its occurrence in the file, so re-ingesting the
    #: same file is a no-op while two identical lines in one file stay two charges.
    line_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: SHA-256 of the canonical line as last received (a changed charge_id line is an update).
    content_hash: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_ref: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class QuarantineItem(Base):
    """Input that could not be ingested, with why; its bytes are kept whenever that is safe."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # folder, zip, scp, pull, records
    source_ref: Mapped[str | None] = mapped_column(Text)  # path, zip member, peer AE, file:line
    reason_code: Mapped[str] = mapped_column(String(48), index=True)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    storage_key: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerEntry(Base):
    """One run of one pipeline stage over one exam: the processing ledger."""

    __tablename__ = "ledger"
    __table_args__ = (Index("ix_ledger_exam_stage", "exam_id", "stage"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[int | None] = mapped_column(ForeignKey("exam.id"))
    stage: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # running, succeeded, failed, skipped
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    #: Manifest of the run: code/rule-set/model versions, device, timings, input fingerprint.
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PullJob(Base):
    """A resumable pull from a PACS: its query, and which studies are already complete."""

    __tablename__ = "pull_job"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_key: Mapped[str] = mapped_column(String(64), unique=True)
    protocol: Mapped[str] = mapped_column(String(16))  # dicomweb, dimse
    peer: Mapped[str] = mapped_column(Text)
    query: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: {study_uid: {"state": "pending|done", "instances": n}}
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Setting(Base):
    """Workspace-level facts (schema creation time, generated ids)."""

    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# ------------------------------------------------------------ standard items and series (#6)


class ItemMapping(Base):
    """A confirmed mapping of one hospital's exam item onto standard items (院内编码/名称 ↔ 标准编码).

    Looked up before any parsing, so each hospital's mapping converges as reviewers confirm
    names. ``hospital_id`` NULL is a region-wide mapping. ``region_code`` is the imaging
    cloud's generated institution-level code for the hospital's item, when the region issues
    one. ``name_key`` is the normalised name (NFKC, noise stripped) the lookup uses.
    """

    __tablename__ = "item_mapping"
    __table_args__ = (Index("ix_item_mapping_lookup", "hospital_id", "name_key"),
                      Index("ix_item_mapping_code", "hospital_id", "local_code"))

    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"))
    local_code: Mapped[str | None] = mapped_column(String(64))
    region_code: Mapped[str | None] = mapped_column(String(64), index=True)
    local_name: Mapped[str | None] = mapped_column(String(512))
    name_key: Mapped[str | None] = mapped_column(String(512))
    #: Standard item codes, with laterality when the item is lateral: [{"code": ..., "laterality": "左"}].
    standard_items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="confirmed")  # confirmed, retired
    source: Mapped[str] = mapped_column(String(32), default="review")  # review, import, code_2012
    confirmed_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ItemReview(Base):
    """An exam-item name the normaliser could not map with confidence: the human review queue."""

    __tablename__ = "item_review"
    __table_args__ = (Index("ix_item_review_lookup", "hospital_id", "name_key", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"))
    local_code: Mapped[str | None] = mapped_column(String(64))
    local_name: Mapped[str] = mapped_column(String(512))
    name_key: Mapped[str] = mapped_column(String(512))
    #: What the normaliser proposed: [{"code", "name", "confidence", "source"}...] best first.
    candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open, confirmed, rejected
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    first_exam_id: Mapped[int | None] = mapped_column(ForeignKey("exam.id"))
    decision: Mapped[list[Any]] = mapped_column(JSON, default=list)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StandardSeries(Base):
    """A standard series of one standard item, made by the split: it points at original instances.

    A combined exam's long acquisition becomes one row per item (a slab: ``z_from_mm`` to
    ``z_to_mm``); an ordinary series becomes one row under the item it belongs to. The original
    series and instances are never changed. Rows are replaced whenever the ``series`` stage
    re-runs for the exam (``ledger_id`` says which run made them).
    """

    __tablename__ = "standard_series"
    __table_args__ = (Index("ix_standard_series_item", "item_code", "category"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exam.id"), index=True)
    source_series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"), index=True)
    #: A new UID for the standard series (2.25 form), stable for the same exam, item and source.
    standard_series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    item_code: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(32))
    z_from_mm: Mapped[float | None] = mapped_column(Float)
    z_to_mm: Mapped[float | None] = mapped_column(Float)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    #: The series label (plane, sequence, phase, confidence, evidence) as the stage wrote it.
    label: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ledger_id: Mapped[int | None] = mapped_column(ForeignKey("ledger.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StandardSeriesInstance(Base):
    """Which original instances a standard series is made of."""

    __tablename__ = "standard_series_instance"

    standard_series_id: Mapped[int] = mapped_column(ForeignKey("standard_series.id", ondelete="CASCADE"),
                                                    primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), primary_key=True, index=True)


class ExamTag(Base):
    """A tag of the TAG dictionary (影像特征标签 / 数据质量标签) assigned to an exam."""

    __tablename__ = "exam_tag"
    __table_args__ = (UniqueConstraint("exam_id", "tag", name="uq_exam_tag"), Index("ix_exam_tag_tag", "tag", "value"))

    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exam.id"), index=True)
    tag: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(String(128))
    #: The stage whose result set the tag (one stage owns a tag; its re-run replaces it).
    stage: Mapped[str] = mapped_column(String(64))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ledger_id: Mapped[int | None] = mapped_column(ForeignKey("ledger.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# ------------------------------------------------------------ QC results and serving (#7, #8)


class QcResult(Base):
    """The exam's current QC result (质控结果): the ``image_qc`` stage's roll-up, projected.

    The full result (every dimension's details, deductions, evidence keys) stays in the ledger
    entry ``ledger_id`` points at; this row holds what search, statistics and the doctor's
    badge need, one row per exam, replaced whenever the stage re-runs. ``score``/``grade`` are
    the final score (rule QC combined with image QC); the parts are kept beside them.
    """

    __tablename__ = "qc_result"
    __table_args__ = (Index("ix_qc_result_grade", "grade", "score"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exam.id"), unique=True)
    ledger_id: Mapped[int | None] = mapped_column(ForeignKey("ledger.id"))
    stage_version: Mapped[str | None] = mapped_column(String(32))
    standard: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float, index=True)
    #: 甲/乙/丙/丁 (radiographs) or 0-3 (CT/MR), as text.
    grade: Mapped[str | None] = mapped_column(String(8))
    image_score: Mapped[float | None] = mapped_column(Float)
    image_grade: Mapped[str | None] = mapped_column(String(8))
    rule_score: Mapped[float | None] = mapped_column(Float)
    #: {dimension: value} with the public vocabulary (正常/过小/..., 无法评估, 不适用).
    dimension_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    deduction_count: Mapped[int] = mapped_column(Integer, default=0)
    evidence_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AppUser(Base):
    """A person or system account of the service (服务用户). Passwords only as an Argon2id hash."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    #: doctor, qc_expert_l1, qc_expert_l2, data_engineer, auditor, hospital_admin, admin (serving/roles.yaml).
    role: Mapped[str] = mapped_column(String(32), index=True)
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Incremented to invalidate every token issued before (password change, lock-out).
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    hospital: Mapped[Hospital | None] = relationship()


class ApiKey(Base):
    """A system's API key (系统接入密钥). Only an HMAC-SM3 of the key is stored; ``prefix`` finds it."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[AppUser] = relationship()


class PatientAuthorisation(Base):
    """A patient's consent that doctors of other hospitals may view their exams (患者授权调阅).

    Keyed by ``person_key`` (the cross-hospital pseudonym of the national ID), so it covers the
    patient's exams everywhere. ``grantee_hospital_id`` NULL authorises every hospital of the
    region. Revocable: ``revoked_at`` ends it; rows are never deleted (they are evidence).
    """

    __tablename__ = "patient_authorisation"
    __table_args__ = (Index("ix_patient_authorisation_lookup", "person_key", "grantee_hospital_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64))
    grantee_hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"))
    channel: Mapped[str | None] = mapped_column(String(32))  # app, kiosk, paper, api
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)


class Recognition(Base):
    """A doctor's decision on another hospital's exam (互认 / 不互认), with the reason."""

    __tablename__ = "recognition"
    __table_args__ = (Index("ix_recognition_time", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exam.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    #: The deciding doctor's hospital (the exam's hospital is on the exam).
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))  # 互认, 不互认
    reason_code: Mapped[str | None] = mapped_column(String(64), index=True)
    #: quality or clinical (serving/recognition_reasons.yaml); NULL for 互认.
    reason_category: Mapped[str | None] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    #: The standard item the doctor was ordering when deciding (repeated-exam reminder context).
    ordered_item: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AccessLogEntry(Base):
    """One line of the access log (访问日志): append-only, chained by SM3.

    ``hash`` = SM3(prev_hash || canonical JSON of the entry's fields); ``radqc audit-log
    verify`` recomputes the chain, so an edited, deleted or reordered row is detected.
    """

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(48), index=True)
    exam_id: Mapped[int | None] = mapped_column(Integer, index=True)
    target: Mapped[str | None] = mapped_column(String(512))
    client: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), default="ok")  # ok, denied, error
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
