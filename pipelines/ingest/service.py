"""The one path every DICOM instance takes into the product, whatever its source.

Ingest is split in two so that it is both fast and crash-safe:

1. :func:`prepare_bytes` (pure, runs in worker processes): parse and validate the file,
   then write its bytes to the content-addressed object store (atomic, fsynced).
2. :class:`CatalogueWriter` (one writer per process): record instances, series, exams,
   patients and quarantine items in the catalogue, a batch per transaction.

Bytes are durable before any catalogue row points at them, so a process killed at any
instant leaves at worst an unreferenced object, which the next run of the same input
picks up (same hash, no second copy). Folder import, the C-STORE receiver and the PACS
pull all call these two functions, so the rules for duplicates, versions and quarantine
are the same everywhere.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.crypto import IdentifierVault
from radqc.dicom.parse import InvalidDicom, ParsedInstance, parse_instance, reason_text
from radqc.objectstore import ObjectStore
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

INGESTED = "ingested"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"


@dataclass
class Prepared:
    """One file after validation and storage, ready to be catalogued (no bytes held)."""

    source: str
    source_ref: str
    size: int
    digest: str | None = None
    storage_key: str | None = None
    parsed: ParsedInstance | None = None
    reason_code: str | None = None
    reason_detail: str = ""

    @property
    def ok(self) -> bool:
        return self.parsed is not None


def prepare_bytes(store: ObjectStore, data: bytes, source: str, source_ref: str) -> Prepared:
    """Validate one file and store its bytes; bad files are stored too, for the quarantine."""
    try:
        parsed = parse_instance(data)
    except InvalidDicom as exc:
        return quarantine_bytes(store, data, source, source_ref, exc.reason_code, exc.detail)
    put = store.put(data)
    return Prepared(source, source_ref, len(data), put.digest, put.key, parsed)


def quarantine_bytes(
    store: ObjectStore, data: bytes | None, source: str, source_ref: str, reason_code: str, detail: str = "",
    size: int | None = None,
) -> Prepared:
    """A rejected input. Its bytes are kept (content-addressed) unless there are none or too many."""
    if data:
        put = store.put(data)
        return Prepared(source, source_ref, len(data), put.digest, put.key, None, reason_code, detail)
    return Prepared(source, source_ref, size if size is not None else 0, None, None, None, reason_code, detail)


@dataclass
class IngestSummary:
    """Counts of one ingest run. ``ingested + duplicate + quarantined == files_seen`` always."""

    files_seen: int = 0
    ingested: int = 0
    new_versions: int = 0
    duplicate: int = 0
    quarantined: int = 0
    bytes_seen: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    exams: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def add(self, prepared: Prepared, outcome: str, new_version: bool = False) -> None:
        self.files_seen += 1
        self.bytes_seen += prepared.size
        if outcome == INGESTED:
            self.ingested += 1
            self.new_versions += int(new_version)
        elif outcome == DUPLICATE:
            self.duplicate += 1
        else:
            self.quarantined += 1
            self.reasons[prepared.reason_code or "unknown"] += 1
        if prepared.parsed is not None:
            self.exams.add(prepared.parsed.study_instance_uid)

    def merge(self, other: IngestSummary) -> None:
        for name in ("files_seen", "ingested", "new_versions", "duplicate", "quarantined", "bytes_seen"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.exams |= other.exams
        self.notes.extend(other.notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_seen": self.files_seen,
            "ingested": self.ingested,
            "new_versions": self.new_versions,
            "duplicate": self.duplicate,
            "quarantined": self.quarantined,
            "bytes_seen": self.bytes_seen,
            "exams_touched": len(self.exams),
            "seconds": round(self.seconds, 3),
            "instances_per_second": round(self.files_seen / self.seconds, 1) if self.seconds else None,
            "quarantine_reasons": dict(self.reasons),
            "notes": self.notes,
        }


class CatalogueWriter:
    """Writes prepared files into the catalogue; safe to use from several processes at once."""

    MAX_RETRIES = 8

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        #: SeriesInstanceUID -> series.id of rows known to be committed. Series rows are never
        #: deleted, so the receiver can skip the series/exam look-ups for every later instance.
        self._known_series: dict[str, int] = {}

    def commit(self, batch: Sequence[Prepared]) -> list[tuple[str, bool]]:
        """Record a batch in one transaction; return (outcome, is_new_version) per item.

        A unique-key race with another writer (the receiver and a folder import creating
        the same series at once) rolls the batch back and retries it; the bytes are
        already stored, so a retry costs only SQL.
        """
        delay = 0.05
        for attempt in range(self.MAX_RETRIES):
            new_series: dict[str, int] = {}
            try:
                with self.ws.transaction() as session:
                    outcomes = self._commit(session, batch, new_series)
                self._known_series.update(new_series)  # only once committed
                return outcomes
            except (IntegrityError, OperationalError) as exc:
                if attempt == self.MAX_RETRIES - 1:
                    raise
                log.debug("catalogue write conflict (%s); retrying batch", type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    # -- internals ----------------------------------------------------------------------
    def _commit(self, s: Session, batch: Sequence[Prepared], new_series: dict[str, int]) -> list[tuple[str, bool]]:
        cache: dict[tuple[str, str], Any] = {}
        seen_in_batch: set[tuple[str, str | None]] = set()
        out: list[tuple[str, bool]] = []
        for item in batch:
            if not item.ok:
                self._quarantine(s, item)
                out.append((QUARANTINED, False))
                continue
            p = item.parsed
            assert p is not None and item.digest is not None and item.storage_key is not None
            key = (p.sop_instance_uid, item.digest)
            versions = s.execute(
                select(m.Instance.content_hash, m.Instance.dataset_hash, m.Instance.version).where(
                    m.Instance.sop_instance_uid == p.sop_instance_uid
                )
            ).all()
            same_dataset = p.dataset_hash is not None and any(v.dataset_hash == p.dataset_hash for v in versions)
            dataset_key = (p.sop_instance_uid, p.dataset_hash)
            if (
                key in seen_in_batch
                or (p.dataset_hash is not None and dataset_key in seen_in_batch)
                or same_dataset
                or any(v.content_hash == item.digest for v in versions)
            ):
                out.append((DUPLICATE, False))
                continue
            seen_in_batch.update((key, dataset_key))
            series_id = self._series_id(s, p, cache, new_series)
            prior = max((v.version for v in versions), default=None)
            s.add(
                m.Instance(
                    series_id=series_id,
                    sop_instance_uid=p.sop_instance_uid,
                    sop_class_uid=p.sop_class_uid,
                    version=(prior or 0) + 1,
                    instance_number=p.instance_number,
                    content_hash=item.digest,
                    transfer_syntax=p.transfer_syntax,
                    size_original=item.size,
                    storage_key=item.storage_key,
                    stored_hash=item.digest,
                    stored_transfer_syntax=p.transfer_syntax,
                    size_stored=item.size,
                    pixel_hash=p.pixel_hash,
                    dataset_hash=p.dataset_hash,
                    source=item.source,
                    source_ref=item.source_ref,
                    header=p.header,
                )
            )
            s.flush()
            out.append((INGESTED, prior is not None))
        return out

    def _quarantine(self, s: Session, item: Prepared) -> None:
        existing = None
        if item.digest is not None:
            existing = s.scalar(
                select(m.QuarantineItem.id).where(
                    m.QuarantineItem.content_hash == item.digest,
                    m.QuarantineItem.reason_code == item.reason_code,
                    m.QuarantineItem.resolved_at.is_(None),
                )
            )
        elif item.source_ref:
            existing = s.scalar(
                select(m.QuarantineItem.id).where(
                    m.QuarantineItem.source_ref == item.source_ref,
                    m.QuarantineItem.reason_code == item.reason_code,
                    m.QuarantineItem.resolved_at.is_(None),
                )
            )
        if existing:
            return
        s.add(
            m.QuarantineItem(
                source=item.source,
                source_ref=item.source_ref,
                reason_code=item.reason_code or "unknown",
                reason=reason_text(item.reason_code or "unknown", item.reason_detail),
                size=item.size,
                content_hash=item.digest,
                storage_key=item.storage_key,
                detail={"detail": item.reason_detail} if item.reason_detail else {},
            )
        )

    def _hospital(self, s: Session, code: str, name: str | None, cache: dict) -> m.Hospital:
        ck = ("hospital", code)
        if ck in cache:
            return cache[ck]
        hospital = s.scalar(select(m.Hospital).where(m.Hospital.code == code))
        if hospital is None:
            hospital = m.Hospital(code=code, name=name)
            s.add(hospital)
            s.flush()
        cache[ck] = hospital
        return hospital

    def _patient(self, s: Session, p: ParsedInstance, hospital: m.Hospital, cache: dict) -> m.Patient:
        pseudo = patient_pseudonym(self.ws.vault, hospital.code, p.patient.get("patient_id"), "study:" + p.study_instance_uid)
        ck = ("patient", pseudo)
        if ck in cache:
            return cache[ck]
        patient, _ = patient_for(s, self.ws.vault, hospital, p.patient, "study:" + p.study_instance_uid)
        cache[ck] = patient
        return patient

    def _exam(self, s: Session, p: ParsedInstance, cache: dict) -> m.Exam:
        ck = ("exam", p.study_instance_uid)
        if ck in cache:
            return cache[ck]
        exam = s.scalar(select(m.Exam).where(m.Exam.study_instance_uid == p.study_instance_uid))
        if exam is None:
            hospital = self._hospital(s, p.institution_code, p.institution_name, cache)
            # A HIS/RIS record may have created the exam first (no images yet): find it by
            # accession (+ hospital) or patient + time; the rules live with the records ingest.
            from radqc.pipelines.ingest.records import exam_waiting_for_images

            exam = exam_waiting_for_images(s, self.ws.vault, p, hospital)
            if exam is None:
                exam = m.Exam(hospital_id=hospital.id, ordered_items=[], status={})
                s.add(exam)
            exam.study_instance_uid = p.study_instance_uid
            exam.accession_number = exam.accession_number or p.accession_number
            if exam.patient_id is None:  # a record's patient is authoritative
                exam.patient_id = self._patient(s, p, hospital, cache).id
            exam.exam_time = exam.exam_time or catalogue_time(p.study_datetime)
            exam.study_description = exam.study_description or p.study_description
            if not exam.ordered_items and p.study_description:
                exam.ordered_items = [p.study_description]
            s.flush()
        if p.modality and p.modality not in (exam.modality or "").split(","):
            exam.modality = ",".join(sorted(filter(None, [*(exam.modality or "").split(","), p.modality])))
        cache[ck] = exam
        return exam

    def _series_id(self, s: Session, p: ParsedInstance, cache: dict, new_series: dict[str, int]) -> int:
        known = self._known_series.get(p.series_instance_uid)
        if known is not None:
            return known
        series_id = self._series(s, p, cache).id
        new_series[p.series_instance_uid] = series_id
        return series_id

    def _series(self, s: Session, p: ParsedInstance, cache: dict) -> m.Series:
        ck = ("series", p.series_instance_uid)
        if ck in cache:
            return cache[ck]
        series = s.scalar(select(m.Series).where(m.Series.series_instance_uid == p.series_instance_uid))
        exam = self._exam(s, p, cache)
        if series is None:
            series = m.Series(
                exam_id=exam.id,
                series_instance_uid=p.series_instance_uid,
                modality=p.modality,
                series_number=p.series_number,
                description=p.series_description,
                body_part=p.body_part,
            )
            s.add(series)
            s.flush()
        cache[ck] = series
        return series


def patient_pseudonym(vault: IdentifierVault, hospital_code: str, patient_id: str | None, fallback_ref: str) -> str:
    """HMAC-SM3(hospital code, hospital patient ID); without a patient ID, of a per-source fallback."""
    return vault.pseudonym(hospital_code, patient_id) if patient_id else vault.pseudonym(hospital_code, fallback_ref)


def patient_for(
    s: Session,
    vault: IdentifierVault,
    hospital: m.Hospital,
    identifiers: dict[str, str],
    fallback_ref: str,
    *,
    merge: bool = False,
) -> tuple[m.Patient, list[str]]:
    """The patient row for a hospital's patient, created when new; one scheme for every source.

    DICOM headers and HIS/RIS records both come here, so the same hospital patient ID always
    maps to the same row. Identifiers are stored only SM4-encrypted. With ``merge`` (HIS/RIS,
    which knows more than a DICOM header), identifiers given here are merged into an existing
    row. Returns the row and the names of identifier fields that were new or changed.
    """
    pseudo = patient_pseudonym(vault, hospital.code, identifiers.get("patient_id"), fallback_ref)
    patient = s.scalar(select(m.Patient).where(m.Patient.pseudo_key == pseudo))
    if patient is None:
        patient = m.Patient(
            pseudo_key=pseudo,
            hospital_id=hospital.id,
            person_key=vault.pseudonym("id_number", identifiers["id_number"]) if identifiers.get("id_number") else None,
            identifiers_enc=vault.encrypt(identifiers) if identifiers else None,
            sex=(identifiers.get("patient_sex") or "")[:1] or None,
            birth_year=_birth_year(identifiers.get("patient_birth_date")),
        )
        s.add(patient)
        s.flush()
        return patient, sorted(k for k, v in identifiers.items() if v)
    if not merge:
        return patient, []
    current = vault.decrypt(patient.identifiers_enc) if patient.identifiers_enc else {}
    changed = sorted(k for k, v in identifiers.items() if v and current.get(k) != v)
    if changed:
        merged = {**current, **{k: v for k, v in identifiers.items() if v}}
        patient.identifiers_enc = vault.encrypt(merged)
        if merged.get("id_number"):
            patient.person_key = vault.pseudonym("id_number", merged["id_number"])
        patient.sex = (merged.get("patient_sex") or "")[:1] or patient.sex
        patient.birth_year = _birth_year(merged.get("patient_birth_date")) or patient.birth_year
    return patient, changed


#: Naive source times (DICOM StudyDate/StudyTime without TimezoneOffsetFromUTC, HIS exports
#: without an offset) are China Standard Time.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")


def catalogue_time(value: datetime | None) -> datetime | None:
    """A time as the catalogue stores it: timezone-aware UTC (naive input is China Standard Time).

    SQLite keeps no offset, so every writer must hand it UTC for times to compare correctly.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA_STANDARD_TIME)
    return value.astimezone(UTC)


def from_catalogue_time(value: datetime | None) -> datetime | None:
    """A time read back from the catalogue, timezone-aware (SQLite returns naive UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _birth_year(value: str | None) -> int | None:
    if value and len(value) >= 4 and value[:4].isdigit():
        return int(value[:4])
    return None


def ingest_prepared(writer: CatalogueWriter, batch: Sequence[Prepared], summary: IngestSummary) -> None:
    for item, (outcome, new_version) in zip(batch, writer.commit(batch), strict=True):
        summary.add(item, outcome, new_version)


def ingest_one(
    workspace: Workspace, data: bytes, source: str, source_ref: str, writer: CatalogueWriter | None = None
) -> tuple[str, Prepared]:
    """Ingest a single instance durably (bytes fsynced, catalogue committed) before returning.

    The C-STORE receiver acknowledges an instance only after this returns; it passes one
    long-lived ``writer`` so known series skip their look-ups.
    """
    prepared = prepare_bytes(workspace.store, data, source, source_ref)
    outcome, _ = (writer or CatalogueWriter(workspace)).commit([prepared])[0]
    return outcome, prepared
