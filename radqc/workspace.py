"""The workspace: one directory (``RADQC_HOME``) with the catalogue and the object store.

Every command and service opens a :class:`Workspace`; it owns the settings, the database
engine, the object store and the identifier vault, so no module builds its own.
"""

from __future__ import annotations

import logging
import os
import secrets
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from radqc.catalogue import models as m
from radqc.catalogue.database import make_engine, migrate, session_factory, transaction
from radqc.config import Settings, load_settings
from radqc.crypto import IdentifierVault
from radqc.objectstore import LocalObjectStore, ObjectStore

log = logging.getLogger(__name__)


class WorkspaceError(RuntimeError):
    pass


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None, *, create: bool = False) -> Workspace:
        """Open (and with ``create`` initialise or upgrade) the workspace at ``home``."""
        ws = cls(load_settings(home))
        if create:
            ws.initialise()
        elif not ws.is_initialised():
            raise WorkspaceError(
                f"workspace {ws.settings.home} is not initialised; run `radqc init` first "
                f"/ 工作区未初始化，请先运行 `radqc init`"
            )
        return ws

    def initialise(self) -> None:
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        self.settings.objects_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.secret_key is None and not self.settings.secret_file.exists():
            self.settings.secret_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.settings.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            log.warning(
                "generated a workspace secret in %s; production deployments set RADQC_SECRET_KEY",
                self.settings.secret_file,
            )
        migrate(self.engine)
        removed = self.store.sweep_temporaries() if isinstance(self.store, LocalObjectStore) else 0
        if removed:
            log.info("removed %d temporary files left by an interrupted writer", removed)

    def is_initialised(self) -> bool:
        if self.settings.is_sqlite and not Path(self.settings.database_url.split("///", 1)[-1]).exists():
            return False
        return inspect(self.engine).has_table("exam")

    # -- shared resources ---------------------------------------------------------------
    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    def transaction(self):  # type: ignore[no-untyped-def]
        """Context manager: a session committed on success, rolled back on error."""
        return transaction(self.sessions)

    @cached_property
    def store(self) -> ObjectStore:
        return LocalObjectStore(self.settings.objects_dir)

    @cached_property
    def master_key(self) -> bytes:
        """The master secret every purpose-bound key is derived from (RADQC_SECRET_KEY or the workspace's)."""
        key = self.settings.secret_key
        if key is None:
            if not self.settings.secret_file.exists():
                raise WorkspaceError("no RADQC_SECRET_KEY and no workspace secret; run `radqc init`")
            key = bytes.fromhex(self.settings.secret_file.read_text().strip())
        return key

    @cached_property
    def vault(self) -> IdentifierVault:
        return IdentifierVault(self.master_key)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    # -- summaries ----------------------------------------------------------------------
    def status(self) -> dict[str, int]:
        """Counts behind ``radqc status --json`` (a public contract: keys are never renamed)."""
        with self.sessions() as s:
            current = select(m.Instance)
            instances = s.scalar(select(func.count()).select_from(current.subquery())) or 0
            return {
                "hospitals": s.scalar(select(func.count(m.Hospital.id))) or 0,
                "patients": s.scalar(select(func.count(m.Patient.id))) or 0,
                "exams": s.scalar(select(func.count(m.Exam.id))) or 0,
                "series": s.scalar(select(func.count(m.Series.id))) or 0,
                "instances": instances,
                "bytes_original": int(s.scalar(select(func.coalesce(func.sum(m.Instance.size_original), 0))) or 0),
                "bytes_stored": int(s.scalar(select(func.coalesce(func.sum(m.Instance.size_stored), 0))) or 0),
                "archived": s.scalar(select(func.count(m.Instance.id)).where(m.Instance.archived_at.is_not(None)))
                or 0,
                "quarantined": s.scalar(
                    select(func.count(m.QuarantineItem.id)).where(m.QuarantineItem.resolved_at.is_(None))
                )
                or 0,
                "exam_records": s.scalar(select(func.count(m.ExamRecord.id))) or 0,
                "charge_lines": s.scalar(select(func.count(m.ChargeLine.id))) or 0,
                "ledger_entries": s.scalar(select(func.count(m.LedgerEntry.id))) or 0,
            }
