"""The versioned ruleset store: every change is a new version with who/when/what.

Kept as files in the workspace (``RADQC_HOME/rulesets/``), not catalogue tables, because a
ruleset is a document (rules + standards, ~100 KB) that must be diffable, exportable and
identical on SQLite and PostgreSQL deployments; the hospital-side check reads the same files
offline. Layout::

    rulesets/
      versions/000001.json   immutable snapshot: documents + who/when/what + parent
      state.json             {"published": N, "published_at", "published_by"}
      history.jsonl          one line per event (create, edit, publish, grant) — the audit trail
      roles.yaml             user -> view | edit | publish (issue 8's auth replaces this table)
      .lock                  fcntl lock serialising writers

Versions are numbered 1, 2, 3...; a new version is a *draft* until someone with the
``publish`` permission publishes it; pipelines use only the published version. Version 1 is
the bundled library (``qc_rules/library`` + ``qc_rules/standards``), created on first use.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from radqc.qc_rules.engine.loader import load_library, load_ruleset_documents
from radqc.qc_rules.engine.model import Ruleset

LEVELS = ("view", "edit", "publish")
SYSTEM_USER = "system"


class PermissionDenied(PermissionError):
    """The user lacks the permission level an operation needs."""


class StoreError(ValueError):
    """An operation on the store that cannot be done (unknown version, nothing to publish)."""


def current_user(explicit: str | None = None) -> str:
    """``--user``, else $RADQC_USER, else the OS user."""
    if explicit:
        return explicit
    env = os.environ.get("RADQC_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in a container
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def diff_documents(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed between two ruleset bundles: rule and standard ids added/removed/changed,
    and for changed rules which fields changed."""
    def rules_of(doc: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for lib in (doc or {}).get("libraries", []):
            for r in lib.get("rules", []):
                out[r["id"]] = r
        return out

    def stds_of(doc: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
        return {s["item"]: s for s in (doc or {}).get("standards", [])}

    a, b = rules_of(old), rules_of(new)
    changed = {}
    for rid in sorted(set(a) & set(b)):
        if _canonical(a[rid]) != _canonical(b[rid]):
            keys = sorted(k for k in set(a[rid]) | set(b[rid]) if _canonical(a[rid].get(k)) != _canonical(b[rid].get(k)))
            changed[rid] = keys
    sa, sb = stds_of(old), stds_of(new)
    return {
        "rules_added": sorted(set(b) - set(a)),
        "rules_removed": sorted(set(a) - set(b)),
        "rules_changed": changed,
        "standards_added": sorted(set(sb) - set(sa)),
        "standards_removed": sorted(set(sa) - set(sb)),
        "standards_changed": sorted(k for k in set(sa) & set(sb) if _canonical(sa[k]) != _canonical(sb[k])),
    }


def summarise(diff: Mapping[str, Any]) -> str:
    parts = []
    for key, label in (("rules_added", "+rules"), ("rules_removed", "-rules"), ("standards_added", "+standards"),
                       ("standards_removed", "-standards"), ("standards_changed", "~standards")):
        if diff.get(key):
            count = f"({len(diff[key])}) " if len(diff[key]) > 10 else ""
            parts.append(f"{label} {count}{', '.join(diff[key][:10])}{' …' if len(diff[key]) > 10 else ''}")
    if diff.get("rules_changed"):
        items = [f"{rid}({','.join(keys)})" for rid, keys in list(diff["rules_changed"].items())[:10]]
        parts.append("~rules " + ", ".join(items))
    return "; ".join(parts) or "no change"


class RulesetStore:
    """Versioned rulesets and the role table under ``root`` (normally ``RADQC_HOME/rulesets``)."""

    def __init__(self, root: str | os.PathLike[str], *, functions: Mapping[str, Callable[..., Any]] | None = None,
                 bootstrap: Callable[[], Ruleset] | None = None) -> None:
        self.root = Path(root)
        self.functions = functions
        self._bootstrap = bootstrap or (lambda: load_library(functions=self.functions))
        self._cache: dict[int, Ruleset] = {}

    @classmethod
    def for_home(cls, home: str | os.PathLike[str] | None = None, **kw: Any) -> RulesetStore:
        from radqc.config import load_settings

        return cls(load_settings(home).home / "rulesets", **kw)

    # -- files --------------------------------------------------------------------------
    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def _version_path(self, n: int) -> Path:
        return self.versions_dir / f"{n:06d}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write_json(self, path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)

    def _event(self, event: dict[str, Any]) -> None:
        with open(self.root / "history.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")

    def _state(self) -> dict[str, Any]:
        path = self.root / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def version_numbers(self) -> list[int]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(p.stem) for p in self.versions_dir.glob("*.json") if p.stem.isdigit())

    # -- bootstrap ----------------------------------------------------------------------
    def ensure_initialised(self, user: str | None = None) -> None:
        """First use: the bundled library becomes version 1, published; the first user
        (or $RADQC_USER / the OS user) holds ``publish`` in the new role table."""
        if self.version_numbers():
            return
        with self._locked():
            if self.version_numbers():
                return
            ruleset = self._bootstrap()
            docs = ruleset.documents()
            who = current_user(user)
            meta = {"version": 1, "parent": None, "created_by": SYSTEM_USER, "created_at": _now(),
                    "action": "init", "message": "bundled rule library / 内置规则库",
                    "diff": diff_documents(None, docs), "content_sha256": ruleset.content_hash()}
            meta["summary"] = summarise(meta["diff"])
            self._write_json(self._version_path(1), {**meta, "documents": docs})
            self._write_json(self.root / "state.json", {"published": 1, "published_by": SYSTEM_USER,
                                                        "published_at": meta["created_at"]})
            roles_path = self.root / "roles.yaml"
            if not roles_path.exists():
                roles_path.write_text(yaml.safe_dump({"default": "view", "users": {who: "publish"}},
                                                     allow_unicode=True), encoding="utf-8")
            self._event({k: v for k, v in meta.items() if k != "diff"} | {"event": "create"})
            self._event({"event": "publish", "version": 1, "by": SYSTEM_USER, "at": meta["created_at"]})

    # -- permissions --------------------------------------------------------------------
    def roles(self) -> dict[str, Any]:
        path = self.root / "roles.yaml"
        if not path.exists():
            return {"default": "view", "users": {}}
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return {"default": data.get("default", "view"), "users": dict(data.get("users") or {})}

    def level_of(self, user: str) -> str | None:
        roles = self.roles()
        return roles["users"].get(user, roles["default"])

    def require(self, user: str, level: str) -> None:
        have = self.level_of(user)
        if have not in LEVELS or LEVELS.index(have) < LEVELS.index(level):
            raise PermissionDenied(
                f"user {user!r} has permission {have or 'none'!r}, {level!r} is needed / "
                f"用户 {user} 的权限为 {have or '无'}，此操作需要 {level} 权限")

    def grant(self, target: str, level: str | None, *, user: str | None = None) -> dict[str, Any]:
        """Set (or with ``None`` remove) a user's level; needs ``publish``."""
        who = current_user(user)
        self.ensure_initialised(who)
        self.require(who, "publish")
        if level is not None and level not in LEVELS:
            raise StoreError(f"unknown permission {level!r}; one of {list(LEVELS)}")
        with self._locked():
            roles = self.roles()
            if level is None:
                roles["users"].pop(target, None)
            else:
                roles["users"][target] = level
            (self.root / "roles.yaml").write_text(yaml.safe_dump(roles, allow_unicode=True), encoding="utf-8")
            self._event({"event": "grant", "user": target, "level": level, "by": who, "at": _now()})
        return roles

    # -- reading ------------------------------------------------------------------------
    def head(self) -> int:
        self.ensure_initialised()
        return self.version_numbers()[-1]

    def published_version(self) -> int:
        self.ensure_initialised()
        return int(self._state()["published"])

    def meta(self, version: int) -> dict[str, Any]:
        path = self._version_path(version)
        if not path.exists():
            raise StoreError(f"no ruleset version {version} / 规则集版本 {version} 不存在 "
                             f"(versions: {self.version_numbers()})")
        data = json.loads(path.read_text(encoding="utf-8"))
        data["status"] = self._status(version)
        return data

    def _status(self, version: int) -> str:
        published = int(self._state().get("published", 0))
        if version == published:
            return "published"
        history = [e for e in self.events() if e.get("event") == "publish"]
        if any(e.get("version") == version for e in history):
            return "superseded"
        return "draft"

    def documents(self, version: int | None = None) -> dict[str, Any]:
        return self.meta(version or self.head())["documents"]

    def ruleset(self, version: int | None = None) -> Ruleset:
        """A version loaded and validated (cached per store object)."""
        n = version or self.head()
        if n not in self._cache:
            docs = self.documents(n)
            rs = load_ruleset_documents([(docs, f"ruleset v{n}")], functions=self.functions, version=str(n))
            self._cache[n] = rs
        return self._cache[n]

    def published(self) -> Ruleset:
        return self.ruleset(self.published_version())

    def events(self) -> list[dict[str, Any]]:
        path = self.root / "history.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def history(self) -> list[dict[str, Any]]:
        """Versions with who/when/what and their status, oldest first."""
        self.ensure_initialised()
        out = []
        for n in self.version_numbers():
            meta = self.meta(n)
            out.append({k: meta.get(k) for k in ("version", "parent", "status", "created_by", "created_at", "action",
                                                  "message", "summary", "content_sha256")})
        return out

    # -- writing ------------------------------------------------------------------------
    def commit(self, documents: Mapping[str, Any], *, user: str | None, action: str, message: str = "",
               base: int | None = None) -> dict[str, Any]:
        """Validate ``documents`` (all or nothing) and store them as a new draft version."""
        who = current_user(user)
        self.ensure_initialised(who)
        self.require(who, "edit")
        ruleset = load_ruleset_documents([(documents, f"{action}")], functions=self.functions)
        docs = ruleset.documents()
        with self._locked():
            head = self.version_numbers()[-1]
            parent = base or head
            diff = diff_documents(self.documents(parent), docs)
            if not any(diff.values()):
                raise StoreError("no change / 内容无变化: nothing to save")
            n = head + 1
            meta = {"version": n, "parent": parent, "created_by": who, "created_at": _now(), "action": action,
                    "message": message, "diff": diff, "summary": summarise(diff),
                    "content_sha256": ruleset.content_hash()}
            self._write_json(self._version_path(n), {**meta, "documents": docs})
            self._event({k: v for k, v in meta.items() if k != "diff"} | {"event": "create"})
        ruleset.version = str(n)
        self._cache[n] = ruleset
        return {**meta, "status": "draft"}

    def publish(self, version: int | None = None, *, user: str | None = None) -> dict[str, Any]:
        """Make ``version`` (default: the newest) the one pipelines use; needs ``publish``."""
        who = current_user(user)
        self.ensure_initialised(who)
        self.require(who, "publish")
        with self._locked():
            n = version or self.version_numbers()[-1]
            self.meta(n)  # exists?
            self.ruleset(n)  # still loads with today's functions (all or nothing)
            state = {"published": n, "published_by": who, "published_at": _now()}
            self._write_json(self.root / "state.json", state)
            self._event({"event": "publish", "version": n, "by": who, "at": state["published_at"]})
        return state
