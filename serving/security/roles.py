"""Roles and permissions as data (serving/roles.yaml): who may do what, and which exams they see."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROLES_FILE = Path(__file__).resolve().parents[1] / "roles.yaml"
SCOPES = ("own_hospital_or_authorised", "own_hospital", "region", "none")


@dataclass(frozen=True)
class Role:
    name: str
    label_zh: str
    label_en: str
    scope: str
    permissions: frozenset[str]


@dataclass(frozen=True)
class RoleBook:
    permissions: dict[str, str]
    roles: dict[str, Role]

    def role(self, name: str) -> Role:
        try:
            return self.roles[name]
        except KeyError as exc:
            raise ValueError(f"unknown role {name!r}; known: {', '.join(self.roles)} / 未知角色") from exc


def _parse(raw: dict[str, Any]) -> RoleBook:
    permissions = {str(k): str(v) for k, v in (raw.get("permissions") or {}).items()}
    roles: dict[str, Role] = {}
    for name, spec in (raw.get("roles") or {}).items():
        scope = str(spec.get("scope"))
        if scope not in SCOPES:
            raise ValueError(f"role {name}: scope {scope!r} is not one of {SCOPES}")
        perms = frozenset(str(p) for p in spec.get("permissions") or ())
        unknown = perms - permissions.keys()
        if unknown:
            raise ValueError(f"role {name}: unknown permissions {sorted(unknown)}")
        label = spec.get("label") or {}
        roles[str(name)] = Role(str(name), str(label.get("zh", name)), str(label.get("en", name)), scope, perms)
    return RoleBook(permissions, roles)


@lru_cache(maxsize=4)
def load_roles(path: Path = ROLES_FILE) -> RoleBook:
    """The role book; a malformed file fails loudly at start-up, never at the first request."""
    return _parse(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


ROLE_NAMES = ("doctor", "qc_expert_l1", "qc_expert_l2", "data_engineer", "auditor", "hospital_admin", "admin",
              "patient_portal")
