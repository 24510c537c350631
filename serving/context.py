"""What every request handler shares: the workspace, the service settings, the role book."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from radqc.serving.security.roles import RoleBook, load_roles
from radqc.serving.services.detail_cache import DetailCache
from radqc.serving.settings import ServingSettings, load_serving_settings
from radqc.workspace import Workspace


@dataclass
class ServiceContext:
    workspace: Workspace
    settings: ServingSettings
    roles: RoleBook
    #: (mtime_ns, reasons) of the last parse of the reasons file.
    _reasons: tuple[int, list[dict[str, Any]]] | None = field(default=None, repr=False)
    #: The exam detail's exam-wide part per exam version (this process only), sized by the settings.
    detail_cache: DetailCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.detail_cache = DetailCache(self.settings.detail_cache_mb * 1024 * 1024)

    @classmethod
    def create(cls, workspace: Workspace, settings: ServingSettings | None = None) -> ServiceContext:
        return cls(workspace, settings or load_serving_settings(workspace.master_key), load_roles())

    def recognition_reasons_version(self) -> int:
        """The reason list file's version (mtime), part of the cached exam detail's version."""
        return self.settings.recognition_reasons.stat().st_mtime_ns

    def recognition_reasons(self) -> list[dict[str, Any]]:
        """The configured 不互认 reasons (code, category quality|clinical, zh, en), as fresh copies.

        Parsed once per file version: parsing the YAML on every request cost more than all the
        SQL of the exam detail, and keying by mtime keeps an edited file effective without a
        restart. A missing or unreadable file raises its own clear error."""
        path = self.settings.recognition_reasons
        mtime = path.stat().st_mtime_ns
        if self._reasons is None or self._reasons[0] != mtime:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            self._reasons = (mtime, [dict(r) for r in raw.get("reasons") or ()])
        return [dict(r) for r in self._reasons[1]]
