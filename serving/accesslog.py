"""The access log (访问日志): every exam view and decision, append-only, tamper-evident.

Each entry's ``hash`` is SM3(``prev_hash`` || canonical JSON of its fields), so editing,
deleting or reordering any row breaks the chain from there on, and :func:`verify_chain`
(``radqc audit-log verify``) names the first broken entry. The chain head is also kept in the
``setting`` row ``access_log_head``; an append first updates that row, which takes the write
lock on SQLite and the row lock on PostgreSQL, so concurrent workers never fork the chain.
Cutting entries off the end is detected by comparing with the head row. An attacker who edits
a row *and* recomputes every later hash and the head row defeats any check inside the
database; :func:`make_anchor` (``radqc audit-log anchor``) therefore writes (entries, head) with
an HMAC-SM3 under a key derived from the workspace secret to a file meant to be kept elsewhere,
and ``verify --anchors`` proves every anchored prefix of the chain unchanged.

Entries are written in their own short transaction: a denied attempt is logged even though
the request that caused it fails. Concurrent views of one process share that transaction
(group commit, :class:`_GroupWriter`): each still returns only after its entry is committed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from radqc.catalogue import models as m
from radqc.crypto import derive_key, hmac_sm3, sm3_hex

GENESIS = "0" * 64
HEAD_KEY = "access_log_head"

#: The tables themselves: the writer runs Core statements on a plain connection (no ORM
#: session, unit of work or bulk-persistence layer for rows nobody reads back).
_SETTING: Table = m.Setting.__table__  # type: ignore[assignment]
_LOG: Table = m.AccessLogEntry.__table__  # type: ignore[assignment]
_HEAD_LOCK = (update(_SETTING).where(_SETTING.c.key == HEAD_KEY).values(value=_SETTING.c.value)
              .returning(_SETTING.c.value))
_HEAD_WRITE = update(_SETTING).where(_SETTING.c.key == HEAD_KEY)


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_digest(prev_hash: str, fields: dict[str, Any]) -> str:
    """SM3 over the previous hash and the entry's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return sm3_hex(prev_hash.encode("ascii") + canonical.encode("utf-8"))


def _fields(entry: m.AccessLogEntry) -> dict[str, Any]:
    return {"at": _timestamp(entry.at), "user_id": entry.user_id, "username": entry.username, "role": entry.role,
            "action": entry.action, "exam_id": entry.exam_id, "target": entry.target, "client": entry.client,
            "outcome": entry.outcome, "detail": entry.detail or {}}


def _row_fields(row: dict[str, Any]) -> dict[str, Any]:
    """:func:`_fields` of a row about to be inserted (the same canonical form verify recomputes)."""
    return {"at": _timestamp(row["at"]), "user_id": row["user_id"], "username": row["username"], "role": row["role"],
            "action": row["action"], "exam_id": row["exam_id"], "target": row["target"], "client": row["client"],
            "outcome": row["outcome"], "detail": row["detail"] or {}}


def _lock_head(db: Session | Connection) -> str:
    """Take the chain-head lock (write lock on SQLite, row lock on PostgreSQL); the head hash.

    One statement: the no-op UPDATE takes the lock and RETURNING reads the value under it."""
    head = db.execute(_HEAD_LOCK).scalar()
    if head is None:
        db.execute(insert(_SETTING).values(key=HEAD_KEY, value=GENESIS))
        head = db.execute(_HEAD_LOCK).scalar()
    return head or GENESIS


def append_many(db: Session | Connection, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append entries in order inside ``db``'s transaction (the caller commits): the head is
    locked and read once, each entry chained to the one before, the head written once.

    Core statements on the tables, not ORM objects: the log is written on every exam view,
    and the unit of work's bookkeeping for rows nobody reads back cost more than the hashing.
    ``db`` is a session or a connection. Returns the rows as written (column -> value)."""
    prev = _lock_head(db)
    rows: list[dict[str, Any]] = []
    for fields in entries:
        target, client = fields.get("target"), fields.get("client")
        row: dict[str, Any] = {
            "at": datetime.now(UTC), "user_id": fields.get("user_id"), "username": fields.get("username"),
            "role": fields.get("role"), "action": fields["action"], "exam_id": fields.get("exam_id"),
            "target": (target or None) and str(target)[:512], "client": (client or None) and str(client)[:64],
            "outcome": fields.get("outcome", "ok"), "detail": fields.get("detail") or {}, "prev_hash": prev}
        row["hash"] = prev = entry_digest(prev, _row_fields(row))
        rows.append(row)
    if rows:
        db.execute(insert(_LOG), rows)
    db.execute(_HEAD_WRITE.values(value=prev))
    return rows


class _GroupWriter:
    """Group commit for one process: whoever holds the commit lock writes every waiting entry.

    A view must not return before its entry is durable, but one transaction per view made the
    log the service's bottleneck (each commit takes the chain-head lock and an fsync; threads
    queued on SQLite's busy handler and on the connection pool). Here each caller queues its
    entry and then either becomes the writer (taking the lock, writing the whole queue in one
    transaction) or finds its entry already written by the writer before it. One connection per
    process is ever used for the log; the chain order is the order entries leave the queue.
    The batch is written on a plain connection from the sessions' engine (no ORM session).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.engine = sessions.kw["bind"]  # the workspace binds its sessionmaker to its engine
        self.commit_lock = threading.Lock()
        self.queue_lock = threading.Lock()
        self.queue: list[_Ticket] = []
        self.host_lock = _HostLock.for_sessions(sessions)

    def write(self, fields: dict[str, Any]) -> None:
        ticket = _Ticket(fields)
        with self.queue_lock:
            self.queue.append(ticket)
        while not ticket.done.is_set():
            with self.commit_lock:
                if ticket.done.is_set():
                    break
                with self.queue_lock:
                    batch, self.queue = self.queue, []
                error: BaseException | None = None
                try:
                    with self.host_lock:
                        self._append([item.fields for item in batch])
                except BaseException as exc:  # noqa: BLE001 - handed to every caller in the batch
                    error = exc
                for item in batch:
                    item.error = error
                    item.done.set()
        if ticket.error is not None:
            raise ticket.error

    def _append(self, entries: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            append_many(connection, entries)


class _HostLock:
    """On SQLite, the worker processes of one host take turns at the log through a file lock.

    Every process's group writer needs SQLite's write lock for its batch. A writer that finds it
    taken does not wait for it: SQLite's busy handler polls, sleeping 1, 2, 5, 10 ... 100 ms
    between tries, so two workers appending at 300 views/s kept missing each other's commits
    and their views waited out those sleeps (the long tail of the latency). ``flock`` wakes the
    waiter the moment the other commit ends. PostgreSQL queues on the head row's lock itself:
    no file lock there (nor on systems without ``fcntl``).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._local = threading.Lock()

    @classmethod
    def for_sessions(cls, sessions: sessionmaker[Session]) -> _HostLock:
        bind = sessions.kw.get("bind")
        url = getattr(bind, "url", None)
        database = getattr(url, "database", None)
        if url is None or url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return cls(None)
        try:
            import fcntl  # noqa: F401
        except ImportError:  # pragma: no cover - Windows
            return cls(None)
        return cls(f"{database}.accesslog.lock")

    def __enter__(self) -> _HostLock:
        if self.path is None:
            return self
        import fcntl

        self._local.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._local.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        import fcntl

        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._local.release()


class _Ticket:
    __slots__ = ("fields", "done", "error")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.done = threading.Event()
        self.error: BaseException | None = None


_WRITERS: dict[int, tuple[sessionmaker[Session], _GroupWriter]] = {}
_WRITERS_LOCK = threading.Lock()


def record(sessions: sessionmaker[Session], **kwargs: Any) -> None:
    """Append one entry, durably, before returning (group-committed with concurrent callers)."""
    with _WRITERS_LOCK:
        entry = _WRITERS.get(id(sessions))
        if entry is None or entry[0] is not sessions:
            entry = (sessions, _GroupWriter(sessions))
            _WRITERS[id(sessions)] = entry
    entry[1].write(kwargs)


@dataclass
class ChainReport:
    entries: int = 0
    ok: bool = True
    head: str = GENESIS
    problems: list[dict[str, Any]] = field(default_factory=list)
    anchors_checked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "ok": self.ok, "head": self.head, "problems": self.problems,
                "anchors_checked": self.anchors_checked}


def _iter_entries(session: Session, batch: int = 5000) -> Iterator[m.AccessLogEntry]:
    last = 0
    while True:
        rows = session.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.id > last)
                               .order_by(m.AccessLogEntry.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()


def _anchor_mac(key: bytes, entries: int, head: str, at: str) -> str:
    return hmac_sm3(derive_key(key, "access-log-anchor", 32), f"{entries}|{head}|{at}".encode("ascii"))


def make_anchor(session: Session, key: bytes) -> dict[str, Any]:
    """The chain's current (entries, head), stamped and MACed: one line for the anchors file.

    ``key`` is the workspace secret; the MAC lets ``verify`` refuse an anchor forged by someone
    who can write the file but does not hold the secret. The anchors file is only worth as much
    as the place it is kept: copy it where the database administrators cannot write."""
    report = verify_chain(session)
    at = _timestamp(datetime.now(UTC))
    return {"at": at, "entries": report.entries, "head": report.head, "chain_ok": report.ok,
            "mac": _anchor_mac(key, report.entries, report.head, at)}


def verify_chain(session: Session, *, max_problems: int = 20, anchors: list[dict[str, Any]] | None = None,
                 key: bytes | None = None) -> ChainReport:
    """Recompute the whole chain; report every break (edited fields, removed or reordered rows).

    With ``anchors`` (lines of :func:`make_anchor`; ``key`` checks their MACs) the hash after
    entry number ``entries`` must equal each anchor's ``head``: a chain rewritten consistently
    after the anchor was taken still fails here."""
    report = ChainReport()
    prev = GENESIS
    expected: dict[int, list[dict[str, Any]]] = {}
    for anchor in anchors or []:
        problem = _anchor_problem(anchor, key)
        if problem:
            report.ok = False
            report.problems.append({"id": None, "anchor": anchor.get("at"), "problem": problem})
            continue
        expected.setdefault(int(anchor["entries"]), []).append(anchor)
    for anchor in expected.pop(0, []):
        _check_anchor(report, anchor, prev)
    for entry in _iter_entries(session):
        report.entries += 1
        problem = None
        if entry.prev_hash != prev:
            problem = "link broken: a row before this one was removed, inserted or edited / 链接断开"
        elif entry_digest(prev, _fields(entry)) != entry.hash:
            problem = "content changed after it was written / 内容被修改"
        if problem:
            report.ok = False
            if len(report.problems) < max_problems:
                report.problems.append({"id": entry.id, "at": _timestamp(entry.at), "problem": problem})
        prev = entry.hash
        for anchor in expected.pop(report.entries, []):
            _check_anchor(report, anchor, prev, entry.id)
    report.head = prev
    for missing in expected.values():
        for anchor in missing:
            report.ok = False
            report.problems.append({"id": None, "anchor": anchor["at"], "problem":
                                    f"the log has {report.entries} entries, the anchor of {anchor['at']} counted "
                                    f"{anchor['entries']}: entries were removed / 日志条目少于锚定时"})
    head_row = session.scalar(select(m.Setting.value).where(m.Setting.key == HEAD_KEY))
    if (head_row or GENESIS) != prev:
        report.ok = False
        report.problems.append({"id": None, "problem": "chain head does not match the last entry: entries were "
                                "cut off the end or the head was edited / 链尾与记录不一致"})
    return report


def _anchor_problem(anchor: dict[str, Any], key: bytes | None) -> str | None:
    try:
        entries, head, at = int(anchor["entries"]), str(anchor["head"]), str(anchor["at"])
    except (KeyError, TypeError, ValueError):
        return "unreadable anchor (needs at, entries, head, mac) / 锚点格式错误"
    if key is not None and anchor.get("mac") != _anchor_mac(key, entries, head, at):
        return "anchor MAC does not match: not made with this workspace's secret / 锚点校验码不符"
    return None


def _check_anchor(report: ChainReport, anchor: dict[str, Any], prev: str, entry_id: int | None = None) -> None:
    report.anchors_checked += 1
    if anchor["head"] != prev:
        report.ok = False
        report.problems.append({"id": entry_id, "anchor": anchor["at"], "problem":
                                f"the chain up to entry number {anchor['entries']} differs from its anchor of "
                                f"{anchor['at']}: the log was rewritten / 与锚点不一致，日志被改写"})
