"""What every request handler shares: the workspace, the service settings, the role book."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from radqc.serving.security.roles import RoleBook, load_roles
from radqc.serving.settings import ServingSettings, load_serving_settings
from radqc.workspace import Workspace


@dataclass
class ServiceContext:
    workspace: Workspace
    settings: ServingSettings
    roles: RoleBook

    @classmethod
    def create(cls, workspace: Workspace, settings: ServingSettings | None = None) -> ServiceContext:
        return cls(workspace, settings or load_serving_settings(workspace.master_key), load_roles())

    def recognition_reasons(self) -> list[dict[str, Any]]:
        """The configured 不互认 reasons (code, category quality|clinical, zh, en)."""
        raw = yaml.safe_load(self.settings.recognition_reasons.read_text(encoding="utf-8")) or {}
        return [dict(r) for r in raw.get("reasons") or ()]
