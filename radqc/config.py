"""One settings object for the whole product, read from the environment.

Every knob a deployment turns lives here, with its environment variable, so that
operators never edit code and secrets never sit in files under version control.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = "./radqc-data"

#: Files larger than this are quarantined as "oversized" instead of ingested (bytes).
DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
#: A zip member whose uncompressed size exceeds its compressed size by this factor is a bomb.
DEFAULT_MAX_ZIP_RATIO = 200
#: Total uncompressed bytes one zip may expand to.
DEFAULT_MAX_ZIP_TOTAL = 20 * 1024**3


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment; a malformed value is an error, never the default."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def env_bool(name: str, default: bool) -> bool:
    """A yes/no setting from the environment (1/true/yes/on, anything else is no)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one workspace.

    ``home`` holds the SQLite catalogue (unless ``database_url`` points elsewhere) and the
    local object store. ``secret_key`` is the master secret from which the SM4 key for
    patient identifiers and the SM3-HMAC key for pseudonyms are derived.
    """

    home: Path
    database_url: str
    objects_dir: Path
    secret_key: bytes | None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_zip_ratio: int = DEFAULT_MAX_ZIP_RATIO
    max_zip_total: int = DEFAULT_MAX_ZIP_TOTAL
    workers: int = 2
    archive_keep_original: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secret_file(self) -> Path:
        """Where ``radqc init`` keeps a generated key when none is given (embedded default only)."""
        return self.home / ".secrets" / "master.key"


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Read settings from the environment (``RADQC_*``), optionally overriding the workspace."""
    home_path = Path(home or os.environ.get("RADQC_HOME") or DEFAULT_HOME).expanduser().resolve()
    database_url = os.environ.get("RADQC_DATABASE_URL") or f"sqlite:///{home_path / 'catalogue.sqlite'}"
    objects_dir = Path(os.environ.get("RADQC_OBJECTS_DIR") or home_path / "objects").expanduser().resolve()
    secret_hex = os.environ.get("RADQC_SECRET_KEY")
    secret: bytes | None = None
    if secret_hex:
        try:
            secret = bytes.fromhex(secret_hex)
        except ValueError as exc:
            raise ValueError("RADQC_SECRET_KEY must be hex (at least 32 hex digits)") from exc
        if len(secret) < 16:
            raise ValueError("RADQC_SECRET_KEY must be at least 16 bytes (32 hex digits)")
    return Settings(
        home=home_path,
        database_url=database_url,
        objects_dir=objects_dir,
        secret_key=secret,
        max_file_bytes=env_int("RADQC_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES),
        max_zip_ratio=env_int("RADQC_MAX_ZIP_RATIO", DEFAULT_MAX_ZIP_RATIO),
        max_zip_total=env_int("RADQC_MAX_ZIP_TOTAL", DEFAULT_MAX_ZIP_TOTAL),
        workers=env_int("RADQC_WORKERS", max(1, min(4, os.cpu_count() or 1))),
        archive_keep_original=os.environ.get("RADQC_ARCHIVE_KEEP_ORIGINAL", "0") in ("1", "true", "yes"),
    )
