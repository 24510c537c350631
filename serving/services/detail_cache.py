"""The exam-wide part of the exam detail, encoded once per exam version and kept per process.

Why: the exam detail is the service's hot read (a doctor opens it for every 互认 decision; the
benchmark asks 300 requests/s), and most of its cost is the same for every caller — decoding
the four stage results from the ledger, series and instance counts, the standard split, the
report, reshaping the image-QC evidence, and encoding ~10 KB of JSON. Only the summary
(patient identity as the caller may see it, the caller's hospital's decision), the decision
list and the permissions differ per caller; they are built on every request and the cached
bytes are spliced in.

Correctness before speed: an entry is used only while the exam's *version* is unchanged. The
version is read on every request in one indexed statement (:func:`exam_version`): the exam
row's ``updated_at`` (the pipeline status cache is written with every stage), the newest ledger
row of the exam (every stage result, and the standard series its projection writes in the
same transaction), the report record (newest ``updated_at`` and count), the instance count
(an upload adding images), the newest 互认 decision (decisions are insert-only) and the
version of the reason list file their texts come from. A re-run, a new report or new images therefore change the version
and the next request rebuilds the entry; nothing needs to be told to invalidate, so it holds
across worker processes and with other writers (the pipeline CLI) on the same catalogue.

Capacity is in bytes (``RADQC_DETAIL_CACHE_MB``, default ``settings.DEFAULT_DETAIL_CACHE_MB``; 0 turns the cache
off), least recently used out first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m


def _version_statement() -> Any:
    exam_id: Any = bindparam("exam_id")
    ledger = select(func.max(m.LedgerEntry.id)).where(m.LedgerEntry.exam_id == exam_id).scalar_subquery()
    record_at = select(func.max(m.ExamRecord.updated_at)).where(m.ExamRecord.exam_id == exam_id).scalar_subquery()
    records = select(func.count(m.ExamRecord.id)).where(m.ExamRecord.exam_id == exam_id).scalar_subquery()
    instances = (select(func.count(m.Instance.id)).join(m.Series, m.Series.id == m.Instance.series_id)
                 .where(m.Series.exam_id == exam_id).scalar_subquery())
    decisions = select(func.max(m.Recognition.id)).where(m.Recognition.exam_id == exam_id).scalar_subquery()
    return select(ledger, record_at, records, instances, decisions)


#: Built once: constructing the statement cost more than running it.
_VERSION = _version_statement()


def exam_version(session: Session, exam: m.Exam, *extra: Any) -> tuple[Any, ...]:
    """What the exam-wide part of the detail depends on (one statement, all indexed look-ups).

    ``extra`` joins values from outside the catalogue (the reason list file's version)."""
    row = session.execute(_VERSION, {"exam_id": exam.id}).one()
    return (exam.updated_at, *tuple(row), *extra)


@dataclass(frozen=True)
class ExamStatic:
    """The exam-wide part of one exam's detail, as JSON text ready to splice.

    ``members`` is ``"series":[...],"standard_items":[...],"report":...,"image_qc":...`` (object
    members without braces); ``rule_qc`` holds the rule-QC member's value twice, as seen with
    and without the ``patient.identity`` permission (identifier evidence redacted).
    ``decisions`` are the exam's 互认 decisions, newest first, each with the deciding hospital's
    id (who sees which is the caller's part); ``decisions_json`` is their list, encoded.
    Decisions are insert-only rows, so the newest decision id in the version covers them."""

    version: tuple[Any, ...]
    items: list[dict[str, Any]]
    members: bytes
    rule_qc_full: bytes
    rule_qc_redacted: bytes
    decisions: tuple[tuple[int | None, dict[str, Any]], ...] = ()
    decisions_json: bytes = b"[]"

    @property
    def size(self) -> int:
        return (len(self.members) + len(self.rule_qc_full) + len(self.rule_qc_redacted) + len(self.decisions_json)
                + 200 * (len(self.items) + 1) + 300 * len(self.decisions))


class DetailCache:
    """A byte-bounded LRU of :class:`ExamStatic` per exam id, safe for the worker's threads."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = max(0, capacity_bytes)
        self._entries: OrderedDict[int, ExamStatic] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, exam_id: int, version: tuple[Any, ...]) -> ExamStatic | None:
        with self._lock:
            entry = self._entries.get(exam_id)
            if entry is None or entry.version != version:
                self.misses += 1
                return None
            self._entries.move_to_end(exam_id)
            self.hits += 1
            return entry

    def put(self, exam_id: int, entry: ExamStatic) -> None:
        size = entry.size
        if size > self.capacity:
            return
        with self._lock:
            old = self._entries.pop(exam_id, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[exam_id] = entry
            self._bytes += size
            while self._bytes > self.capacity and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "capacity": self.capacity,
                    "hits": self.hits, "misses": self.misses}
