"""``radqc archive``: replace uncompressed stored objects by verified lossless copies.

Per instance, in a worker process: read the stored object, check it still hashes to
``stored_hash``, transcode and verify it (:mod:`.transcode`), and put the copy into the
content-addressed store. Only then, in the main process and one transaction per batch,
the instance row is switched to the copy (``storage_key``, ``stored_hash``,
``stored_transfer_syntax``, ``size_stored``, ``archived_at``). ``content_hash``,
``transfer_syntax`` and ``size_original`` keep describing the bytes as received.

Crash safety follows from that order: a crash before the commit leaves an unreferenced
copy (the next run makes the same bytes, same key, no second copy); a crash after the
commit but before the original is deleted leaves an unreferenced original. No instant
leaves a row pointing at bytes that are not there.

Whether the original object is deleted is ``settings.archive_keep_original``
(``RADQC_ARCHIVE_KEEP_ORIGINAL``): by default it is deleted after the commit, and only
when no instance or quarantine row still references it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select

from radqc import __version__
from radqc.catalogue import models as m
from radqc.objectstore import LocalObjectStore, ObjectStore, content_hash
from radqc.pipelines.archive.transcode import (
    ARCHIVED,
    CODECS,
    FAILED,
    SKIPPED_COMPRESSED,
    SKIPPED_NO_GAIN,
    SKIPPED_NON_IMAGE,
    SKIPPED_UNSUPPORTED,
    UNCOMPRESSED,
    codec_versions,
    reason_text,
    transcode,
)
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

#: Version of the archive stage's rules (verification, what may differ); goes in the ledger.
ARCHIVE_VERSION = "1"
STAGE = "archive"
#: Instances per worker task and per catalogue transaction.
CHUNK = 8
BATCH = 64
#: Below this many instances to transcode, a process pool costs more than it saves.
POOL_THRESHOLD = 16

ALREADY_ARCHIVED = "already_archived"

REASONS_EXTRA: dict[str, tuple[str, str]] = {
    "object_missing": ("存储对象缺失", "stored object is missing"),
    "object_hash_mismatch": ("存储对象哈希与记录不符（已损坏或被篡改）", "stored object does not hash to stored_hash (corrupt or tampered)"),
    "changed_concurrently": ("处理期间该实例已被修改", "the instance row changed while it was being archived"),
}


def _reason(code: str, detail: str = "") -> str:
    if code in REASONS_EXTRA:
        zh, en = REASONS_EXTRA[code]
        return f"{zh} / {en}" + (f": {detail}" if detail else "")
    return reason_text(code, detail)


@dataclass(frozen=True)
class ArchiveJob:
    """What a worker needs to archive one instance (no ORM objects cross processes)."""

    instance_id: int
    exam_id: int
    sop_instance_uid: str
    storage_key: str
    stored_hash: str
    size_stored: int
    pixel_hash: str | None


@dataclass
class ArchiveOutcome:
    job: ArchiveJob
    outcome: str
    reason_code: str | None = None
    detail: str = ""
    new_key: str | None = None
    new_hash: str | None = None
    new_size: int = 0
    new_syntax: str | None = None
    #: Canonical pixel hash to record (set when the row has none, or when ingest recorded
    #: the big-endian raw bytes' hash rather than the canonical one).
    pixel_hash: str | None = None
    bytes_read: int = 0


@dataclass
class ArchiveSummary:
    """Counts of one archive run (``radqc archive --json``; the keys are a public contract).

    ``instances_seen`` = ``archived + already_archived + skipped_compressed +
    skipped_no_gain + skipped_unsupported + skipped_non_image + failed``.
    ``bytes_before``/``bytes_after`` cover the instances archived in this run.
    """

    codec: str
    instances_seen: int = 0
    archived: int = 0
    already_archived: int = 0
    skipped_compressed: int = 0
    skipped_no_gain: int = 0
    skipped_unsupported: int = 0
    skipped_non_image: int = 0
    failed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    bytes_read: int = 0
    originals_deleted: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    exams: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    exam_errors: dict[int, str] = field(default_factory=dict)

    def count(self, outcome: ArchiveOutcome) -> None:
        self.instances_seen += 1
        key = outcome.outcome
        setattr(self, key, getattr(self, key) + 1)
        self.exams[outcome.job.exam_id][key] += 1
        self.bytes_read += outcome.bytes_read
        if key == ARCHIVED:
            self.bytes_before += outcome.job.size_stored
            self.bytes_after += outcome.new_size
        elif key != ALREADY_ARCHIVED and outcome.reason_code:
            self.reasons[outcome.reason_code] += 1
        if key == FAILED:
            self.exam_errors.setdefault(
                outcome.job.exam_id, f"{outcome.job.sop_instance_uid}: {_reason(outcome.reason_code or 'error', outcome.detail)}"
            )
            self.failures.append(
                {
                    "instance_id": outcome.job.instance_id,
                    "sop_instance_uid": outcome.job.sop_instance_uid,
                    "reason_code": outcome.reason_code,
                    "reason": _reason(outcome.reason_code or "error", outcome.detail),
                }
            )

    @property
    def saving_percent(self) -> float:
        return round(100.0 * (1 - self.bytes_after / self.bytes_before), 2) if self.bytes_before else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "instances_seen": self.instances_seen,
            "archived": self.archived,
            "already_archived": self.already_archived,
            "skipped_compressed": self.skipped_compressed,
            "skipped_no_gain": self.skipped_no_gain,
            "skipped_unsupported": self.skipped_unsupported,
            "skipped_non_image": self.skipped_non_image,
            "failed": self.failed,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "saving_percent": self.saving_percent,
            "originals_deleted": self.originals_deleted,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.bytes_read / 1e6 / self.seconds, 2) if self.seconds else None,
            "reasons": dict(self.reasons),
            "failures": self.failures,
        }


# -- worker side -----------------------------------------------------------------------------
_STORE: ObjectStore | None = None


def _init_worker(objects_dir: str) -> None:
    global _STORE
    _STORE = LocalObjectStore(objects_dir)


def archive_object(store: ObjectStore, job: ArchiveJob, codec: str) -> ArchiveOutcome:
    """Transcode one stored object and store the verified copy; never raises for bad input."""
    try:
        data = store.get(job.storage_key)
    except FileNotFoundError:
        return ArchiveOutcome(job, FAILED, "object_missing", job.storage_key)
    out = ArchiveOutcome(job, FAILED, bytes_read=len(data))
    if content_hash(data) != job.stored_hash:
        out.reason_code = "object_hash_mismatch"
        return out
    result = transcode(data, codec)
    out.outcome, out.reason_code, out.detail = result.outcome, result.reason_code, result.detail
    canonical = result.pixel_hash
    if canonical and job.pixel_hash and job.pixel_hash != canonical:
        if job.pixel_hash != result.raw_pixel_hash:
            # Ingest saw different pixels than we decode now: never archive over that.
            out.outcome, out.reason_code = FAILED, "pixel_hash_mismatch"
            out.detail = f"recorded {job.pixel_hash[:12]}…, decoded {canonical[:12]}…"
            return out
        out.pixel_hash = canonical  # big-endian original: ingest hashed the swapped bytes
    elif canonical and not job.pixel_hash:
        out.pixel_hash = canonical
    if result.outcome == ARCHIVED:
        assert result.data is not None
        put = store.put(result.data)
        out.new_key, out.new_hash, out.new_size = put.key, put.digest, put.size
        out.new_syntax = result.transfer_syntax
    return out


def _archive_chunk(jobs: list[ArchiveJob], codec: str) -> list[ArchiveOutcome]:
    assert _STORE is not None
    return [_safe(_STORE, job, codec) for job in jobs]


def _safe(store: ObjectStore, job: ArchiveJob, codec: str) -> ArchiveOutcome:
    try:
        return archive_object(store, job, codec)
    except Exception as exc:  # noqa: BLE001 - one instance never ends the run; it is reported
        log.exception("archiving instance %s failed", job.instance_id)
        return ArchiveOutcome(job, FAILED, "error", f"{type(exc).__name__}: {exc}"[:300])


# -- main side -------------------------------------------------------------------------------
def parse_exam_refs(values: Iterable[str] | None) -> list[str]:
    """``--exams 1,2 --exams 1.2.840...``: exam ids or Study Instance UIDs, comma-separated or repeated."""
    refs: list[str] = []
    for value in values or []:
        refs.extend(v.strip() for v in str(value).split(",") if v.strip())
    return refs


def _exam_filter(refs: Sequence[str]):  # type: ignore[no-untyped-def]
    ids = [int(r) for r in refs if r.isdigit()]
    uids = [r for r in refs if not r.isdigit()]
    return or_(m.Exam.id.in_(ids), m.Exam.study_instance_uid.in_(uids), m.Exam.accession_number.in_(uids))


@dataclass(frozen=True)
class InstanceRef:
    """The columns archive and verify read from one instance row, with its exam."""

    id: int
    exam_id: int
    sop_instance_uid: str
    storage_key: str
    stored_hash: str
    stored_transfer_syntax: str | None
    size_stored: int
    pixel_hash: str | None
    archived_at: datetime | None


def select_instances(ws: Workspace, exams: Sequence[str] | None = None, *, archived_only: bool = False) -> list[InstanceRef]:
    """Instance rows in scope (all, or those of the given exams), in id order."""
    cols = (
        m.Instance.id, m.Series.exam_id, m.Instance.sop_instance_uid, m.Instance.storage_key,
        m.Instance.stored_hash, m.Instance.stored_transfer_syntax, m.Instance.size_stored,
        m.Instance.pixel_hash, m.Instance.archived_at,
    )
    query = select(*cols).join(m.Series, m.Instance.series_id == m.Series.id)
    if exams:
        query = query.join(m.Exam, m.Series.exam_id == m.Exam.id).where(_exam_filter(exams))
    if archived_only:
        query = query.where(m.Instance.archived_at.is_not(None))
    with ws.sessions() as s:
        return [InstanceRef(*row) for row in s.execute(query.order_by(m.Instance.id))]


ProgressFn = Callable[[int, int], None]


def archive_instances(
    ws: Workspace,
    *,
    codec: str = "jpegls",
    exams: Sequence[str] | None = None,
    workers: int | None = None,
    keep_original: bool | None = None,
    progress: ProgressFn | None = None,
) -> ArchiveSummary:
    """Archive every uncompressed instance in scope; see the module docstring for the rules."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    keep = ws.settings.archive_keep_original if keep_original is None else keep_original
    summary = ArchiveSummary(codec=codec)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    todo: list[ArchiveJob] = []
    for inst in select_instances(ws, exams):
        job = ArchiveJob(
            inst.id, inst.exam_id, inst.sop_instance_uid, inst.storage_key, inst.stored_hash,
            inst.size_stored, inst.pixel_hash,
        )
        if inst.archived_at is not None:
            summary.count(ArchiveOutcome(job, ALREADY_ARCHIVED))
        elif inst.stored_transfer_syntax and inst.stored_transfer_syntax not in UNCOMPRESSED:
            summary.count(ArchiveOutcome(job, SKIPPED_COMPRESSED, "compressed"))
        else:
            todo.append(job)
    total = summary.instances_seen + len(todo)
    if progress:
        progress(summary.instances_seen, total)

    pending: list[ArchiveOutcome] = []

    def absorb(outcomes: list[ArchiveOutcome]) -> None:
        pending.extend(outcomes)
        if len(pending) >= BATCH:
            _apply(ws, pending, summary, keep)
            pending.clear()
        if progress:
            progress(summary.instances_seen + len(pending), total)

    workers = ws.settings.workers if workers is None else workers
    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    if workers <= 1 or len(todo) < POOL_THRESHOLD:
        for chunk in chunks:
            absorb([_safe(ws.store, job, codec) for job in chunk])
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(str(ws.settings.objects_dir),)
        ) as pool:
            queue: list[Future[list[ArchiveOutcome]]] = []
            it = iter(chunks)
            for chunk in it:
                queue.append(pool.submit(_archive_chunk, chunk, codec))
                if len(queue) >= workers * 3:
                    break
            while queue:
                done = queue.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    queue.append(pool.submit(_archive_chunk, nxt, codec))
                absorb(done)
    if pending:
        _apply(ws, pending, summary, keep)
    summary.seconds = time.perf_counter() - started
    _write_ledger(ws, summary, codec, keep, started_at)
    return summary


def _apply(ws: Workspace, outcomes: list[ArchiveOutcome], summary: ArchiveSummary, keep: bool) -> None:
    """Switch rows to their verified copies in one transaction; then drop unreferenced originals."""
    released: list[str] = []
    with ws.transaction() as s:
        for out in outcomes:
            if out.outcome == ARCHIVED or out.pixel_hash:
                row = s.get(m.Instance, out.job.instance_id)
                if row is None or row.storage_key != out.job.storage_key or row.archived_at is not None:
                    if out.outcome == ARCHIVED:
                        out.outcome, out.reason_code = FAILED, "changed_concurrently"
                    continue
                if out.pixel_hash:
                    row.pixel_hash = out.pixel_hash
                if out.outcome == ARCHIVED:
                    row.storage_key = out.new_key
                    row.stored_hash = out.new_hash
                    row.stored_transfer_syntax = out.new_syntax
                    row.size_stored = out.new_size
                    row.archived_at = datetime.now(UTC)
                    released.append(out.job.storage_key)
    for out in outcomes:
        summary.count(out)
    if keep:
        return
    # After the commit only: the copy is durable and referenced, the original may go.
    with ws.sessions() as s:
        for key in released:
            refs = s.scalar(select(func.count(m.Instance.id)).where(m.Instance.storage_key == key)) or 0
            refs += s.scalar(select(func.count(m.QuarantineItem.id)).where(m.QuarantineItem.storage_key == key)) or 0
            if refs == 0:
                ws.store.delete(key)
                summary.originals_deleted += 1


def _write_ledger(ws: Workspace, summary: ArchiveSummary, codec: str, keep: bool, started_at: datetime) -> None:
    """One ledger row per exam where something was archived or failed (re-runs add none)."""
    touched = {eid: c for eid, c in summary.exams.items() if c[ARCHIVED] or c[FAILED]}
    if not touched:
        return
    spec = CODECS[codec]
    manifest = {
        "codec": codec,
        "transfer_syntax": str(spec.transfer_syntax),
        "encoding_plugin": spec.encoding_plugin,
        "decoding_plugin": spec.decoding_plugin,
        "versions": {"radqc": __version__, **codec_versions(codec)},
        "keep_original": keep,
        "rules_version": ARCHIVE_VERSION,
    }
    finished = datetime.now(UTC)
    with ws.transaction() as s:
        for exam_id, counts in touched.items():
            status = "failed" if counts[FAILED] else "succeeded"
            s.add(
                m.LedgerEntry(
                    exam_id=exam_id,
                    stage=STAGE,
                    version=ARCHIVE_VERSION,
                    status=status,
                    started_at=started_at,
                    finished_at=finished,
                    error=summary.exam_errors.get(exam_id),
                    manifest=manifest,
                    result=dict(counts),
                )
            )
            exam = s.get(m.Exam, exam_id)
            if exam is not None:
                exam.status = {**(exam.status or {}), STAGE: status}


__all__ = [
    "ALREADY_ARCHIVED",
    "ARCHIVE_VERSION",
    "ArchiveJob",
    "ArchiveOutcome",
    "ArchiveSummary",
    "InstanceRef",
    "SKIPPED_COMPRESSED",
    "SKIPPED_NO_GAIN",
    "SKIPPED_NON_IMAGE",
    "SKIPPED_UNSUPPORTED",
    "archive_instances",
    "archive_object",
    "parse_exam_refs",
    "select_instances",
]
