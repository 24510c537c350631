"""Catalogue side of the runner: build exam contexts, read the ledger, record runs.

Only the coordinating process calls this module (the local runner's main thread, or a
Ray driver): stage code never sees a database session. Reads are batched per chunk of
exams (a handful of queries per chunk, whatever its size), and writes are batched per
scheduler step in one transaction, retried when the database is momentarily busy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

from radqc.catalogue import models as m
from radqc.pipelines.runner.fingerprint import instances_part, json_part
from radqc.pipelines.runner.stage import ExamContext, InstanceInfo, SeriesInfo, StoreRef

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Bookkeeping columns left out of the records/charges a stage sees: they change when a row is
#: touched without its content changing, and would make every touch re-run the stage.
BOOKKEEPING_COLUMNS = frozenset({"created_at", "updated_at", "source_ref"})


def _row_dict(row: Any) -> dict[str, Any]:
    """A catalogue row as plain JSON-able data (every column but bookkeeping, times as ISO)."""
    return {c.key: _plain(getattr(row, c.key)) for c in row.__mapper__.column_attrs if c.key not in BOOKKEEPING_COLUMNS}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


@dataclass
class LoadedExam:
    """A context plus what the scheduler needs to decide, without another query."""

    ctx: ExamContext
    #: digests of each input kind (see fingerprint.py)
    parts: dict[str, str]
    status: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prior:
    """The latest succeeded run of a stage over an exam (its result is fetched on demand)."""

    ledger_id: int
    version: str
    versions: dict[str, str]
    fingerprint: str | None
    result_sha256: str | None


def with_db_retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Run a catalogue operation, retrying when the database is busy or the link dropped."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            if attempt == attempts - 1:
                raise
            log.debug("catalogue busy (%s); retrying", exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


# -- selection ----------------------------------------------------------------------------------


def resolve_exams(session: Session, refs: Sequence[str] | None) -> list[int]:
    """Exam ids for the given references (catalogue id, StudyInstanceUID or accession number);
    all exams when ``refs`` is None. An unknown reference raises ValueError naming it."""
    if refs is None:
        return list(session.scalars(select(m.Exam.id).order_by(m.Exam.id)))
    ids: list[int] = []
    unknown: list[str] = []
    for ref in refs:
        ref = ref.strip()
        if not ref:
            continue
        found: list[int] = []
        if ref.isdigit():
            found = list(session.scalars(select(m.Exam.id).where(m.Exam.id == int(ref))))
        if not found:
            found = list(session.scalars(select(m.Exam.id).where(m.Exam.study_instance_uid == ref)))
        if not found:
            found = list(session.scalars(select(m.Exam.id).where(m.Exam.accession_number == ref)))
        if not found:
            unknown.append(ref)
        ids.extend(found)
    if unknown:
        raise ValueError(f"unknown exam(s) / 未找到检查: {', '.join(unknown)}")
    return sorted(set(ids))


# -- contexts -----------------------------------------------------------------------------------


def load_exams(
    session: Session, exam_ids: Sequence[int], store: StoreRef, reads: Iterable[str]
) -> dict[int, LoadedExam]:
    """Build contexts for a chunk of exams: newest instance versions only."""
    reads = set(reads)
    if not exam_ids:
        return {}
    exam_rows = session.execute(
        select(m.Exam, m.Hospital.code, m.Patient.sex, m.Patient.birth_year)
        .outerjoin(m.Hospital, m.Hospital.id == m.Exam.hospital_id)
        .outerjoin(m.Patient, m.Patient.id == m.Exam.patient_id)
        .where(m.Exam.id.in_(exam_ids))
    ).all()
    series_rows = session.execute(
        select(
            m.Series.id, m.Series.exam_id, m.Series.series_instance_uid, m.Series.modality, m.Series.series_number,
            m.Series.description, m.Series.body_part,
        )
        .where(m.Series.exam_id.in_(exam_ids))
        .order_by(m.Series.exam_id, m.Series.series_number, m.Series.id)
    ).all()
    newer = aliased(m.Instance)
    newest_version = (
        select(func.max(newer.version))
        .where(newer.sop_instance_uid == m.Instance.sop_instance_uid)
        .correlate(m.Instance)
        .scalar_subquery()
    )
    instance_rows = session.execute(
        select(
            m.Instance.id, m.Instance.series_id, m.Instance.sop_instance_uid, m.Instance.sop_class_uid,
            m.Instance.version, m.Instance.instance_number, m.Instance.content_hash, m.Instance.storage_key,
            m.Instance.transfer_syntax, m.Instance.stored_transfer_syntax, m.Instance.pixel_hash, m.Instance.header,
        )
        .join(m.Series, m.Series.id == m.Instance.series_id)
        .where(m.Series.exam_id.in_(exam_ids), m.Instance.version == newest_version)
        .order_by(m.Instance.series_id, m.Instance.instance_number, m.Instance.id)
    ).all()
    by_series: dict[int, list[InstanceInfo]] = {}
    for row in instance_rows:
        by_series.setdefault(row.series_id, []).append(
            InstanceInfo(
                id=row.id, sop_instance_uid=row.sop_instance_uid, sop_class_uid=row.sop_class_uid, version=row.version,
                instance_number=row.instance_number, content_hash=row.content_hash, storage_key=row.storage_key,
                transfer_syntax=row.transfer_syntax, stored_transfer_syntax=row.stored_transfer_syntax,
                pixel_hash=row.pixel_hash, header=dict(row.header or {}),
            )
        )
    series_by_exam: dict[int, list[SeriesInfo]] = {}
    for srow in series_rows:
        series_by_exam.setdefault(srow.exam_id, []).append(
            SeriesInfo(
                id=srow.id, series_instance_uid=srow.series_instance_uid, modality=srow.modality,
                series_number=srow.series_number, description=srow.description, body_part=srow.body_part,
                instances=tuple(by_series.get(srow.id, ())),
            )
        )
    records: dict[int, list[dict[str, Any]]] = {}
    if "records" in reads:
        for rec in session.scalars(select(m.ExamRecord).where(m.ExamRecord.exam_id.in_(exam_ids)).order_by(m.ExamRecord.id)):
            records.setdefault(int(rec.exam_id or 0), []).append(_row_dict(rec))
    charges: dict[int, list[dict[str, Any]]] = {}
    if "charges" in reads:
        for line in session.scalars(select(m.ChargeLine).where(m.ChargeLine.exam_id.in_(exam_ids)).order_by(m.ChargeLine.id)):
            charges.setdefault(int(line.exam_id or 0), []).append(_row_dict(line))

    out: dict[int, LoadedExam] = {}
    for exam, hospital_code, sex, birth_year in exam_rows:
        series = tuple(series_by_exam.get(exam.id, ()))
        ctx = ExamContext(
            exam_id=exam.id,
            study_instance_uid=exam.study_instance_uid,
            accession_number=exam.accession_number,
            modality=exam.modality,
            exam_time=_iso(exam.exam_time),
            study_description=exam.study_description,
            ordered_items=tuple(exam.ordered_items or ()),
            hospital_code=hospital_code,
            patient_sex=sex,
            patient_birth_year=birth_year,
            series=series,
            store=store,
            records=tuple(records.get(exam.id, ())),
            charges=tuple(charges.get(exam.id, ())),
        )
        parts = {"instances": instances_part((i.sop_instance_uid, i.content_hash) for s in series for i in s.instances)}
        if "records" in reads:
            parts["records"] = json_part(
                {
                    "exam": {
                        "accession_number": ctx.accession_number, "exam_time": ctx.exam_time,
                        "study_description": ctx.study_description, "ordered_items": list(ctx.ordered_items),
                        "urgency": exam.urgency,
                    },
                    "records": list(ctx.records),
                }
            )
        if "charges" in reads:
            parts["charges"] = json_part(list(ctx.charges))
        out[exam.id] = LoadedExam(ctx=ctx, parts=parts, status=dict(exam.status or {}))
    return out


# -- the ledger ---------------------------------------------------------------------------------


def load_priors(session: Session, exam_ids: Sequence[int], stages: Sequence[str]) -> dict[tuple[int, str], Prior]:
    """The latest succeeded run per (exam, stage), without its result."""
    if not exam_ids or not stages:
        return {}
    L = m.LedgerEntry
    latest = (
        select(func.max(L.id))
        .where(L.exam_id.in_(exam_ids), L.stage.in_(stages), L.status == "succeeded")
        .group_by(L.exam_id, L.stage)
    )
    out: dict[tuple[int, str], Prior] = {}
    for row in session.execute(select(L.id, L.exam_id, L.stage, L.version, L.manifest).where(L.id.in_(latest))):
        manifest = row.manifest or {}
        out[(row.exam_id, row.stage)] = Prior(
            ledger_id=row.id,
            version=row.version,
            versions=dict(manifest.get("versions") or {}),
            fingerprint=manifest.get("input_fingerprint"),
            result_sha256=manifest.get("result_sha256"),
        )
    return out


def fetch_results(session: Session, ledger_ids: Iterable[int]) -> dict[int, Any]:
    ids = sorted(set(ledger_ids))
    if not ids:
        return {}
    rows = session.execute(select(m.LedgerEntry.id, m.LedgerEntry.result).where(m.LedgerEntry.id.in_(ids)))
    return {ledger_id: result for ledger_id, result in rows}


def latest_results(session: Session, exam_id: int, stage: str) -> m.LedgerEntry | None:
    """The latest succeeded ledger entry of ``stage`` for an exam (for services and tests)."""
    L = m.LedgerEntry
    return session.scalar(
        select(L).where(L.exam_id == exam_id, L.stage == stage, L.status == "succeeded").order_by(L.id.desc()).limit(1)
    )


@dataclass
class NewRow:
    """A ledger row to insert; ``ledger_id`` is set once the batch is flushed."""

    exam_id: int
    stage: str
    version: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    attempts: int = 0
    error: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    ledger_id: int | None = None


@dataclass
class Finish:
    """The final state of a row inserted as ``running``."""

    ledger_id: int
    status: str
    attempts: int
    started_at: datetime
    finished_at: datetime
    error: str | None
    manifest: dict[str, Any]
    result: Any
    #: The stage's catalogue projection and the exam it runs for (succeeded results only).
    project: Callable[[Any, int, int, Any], None] | None = None
    exam_id: int | None = None


@dataclass
class WriteBatch:
    """Ledger writes and exam-status changes gathered during one scheduler step."""

    inserts: list[NewRow] = field(default_factory=list)
    finishes: list[Finish] = field(default_factory=list)
    #: exam id -> {stage: status} to merge into Exam.status
    statuses: dict[int, dict[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.inserts or self.finishes or self.statuses)

    def set_status(self, exam_id: int, stage: str, status: str) -> None:
        self.statuses.setdefault(exam_id, {})[stage] = status


def flush(sessions: Callable[[], Any], batch: WriteBatch) -> None:
    """Write one batch in one transaction (retried as a whole when the database is busy)."""
    if not batch:
        return

    def write() -> None:
        with sessions() as s:
            rows = []
            for item in batch.inserts:
                row = m.LedgerEntry(
                    exam_id=item.exam_id, stage=item.stage, version=item.version, status=item.status,
                    attempts=item.attempts, started_at=item.started_at, finished_at=item.finished_at,
                    error=item.error, manifest=item.manifest, result=item.result if item.result is not None else {},
                )
                s.add(row)
                rows.append(row)
            if rows:
                s.flush()
            for fin in batch.finishes:
                s.execute(
                    update(m.LedgerEntry)
                    .where(m.LedgerEntry.id == fin.ledger_id)
                    .values(
                        status=fin.status, attempts=fin.attempts, started_at=fin.started_at,
                        finished_at=fin.finished_at, error=fin.error, manifest=fin.manifest,
                        result=fin.result if fin.result is not None else {},
                    )
                )
            for fin in batch.finishes:
                if fin.project is not None and fin.status == "succeeded" and fin.exam_id is not None:
                    fin.project(s, fin.exam_id, fin.ledger_id, fin.result)
            if batch.statuses:
                current = {
                    exam_id: status
                    for exam_id, status in s.execute(
                        select(m.Exam.id, m.Exam.status).where(m.Exam.id.in_(list(batch.statuses)))
                    )
                }
                for exam_id, changes in batch.statuses.items():
                    if exam_id not in current:
                        continue  # the exam was deleted meanwhile; its ledger rows still say what ran
                    merged = {**(current[exam_id] or {}), **changes}
                    s.execute(update(m.Exam).where(m.Exam.id == exam_id).values(status=merged))
            s.commit()
            for item, row in zip(batch.inserts, rows, strict=True):
                item.ledger_id = row.id

    with_db_retry(write)
