"""Settings of the service, from the environment (``RADQC_*``); secrets never from files in git.

The token-signing key is ``RADQC_JWT_SECRET`` when set, otherwise derived from the workspace
master secret (``RADQC_SECRET_KEY`` or the generated workspace secret) for the purpose
"jwt-signing", so the embedded default needs no extra set-up and no key is reused directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from radqc.config import env_bool, env_int
from radqc.crypto import derive_key

DEFAULT_TOKEN_MINUTES = 30
DEFAULT_REPEAT_WINDOW_DAYS = 180
DEFAULT_LOCKOUT_ATTEMPTS = 5
DEFAULT_LOCKOUT_MINUTES = 15
DEFAULT_THREADS = 12
#: MB per worker when RADQC_DETAIL_CACHE_MB is not set: ~11,000 exams of the measured 14 KB mean
#: entry (10,000-exam benchmark catalogue), so a region catalogue of that size stays warm.
DEFAULT_DETAIL_CACHE_MB = 160


@dataclass(frozen=True)
class ServingSettings:
    """What a deployment of the service can turn (each field's environment variable in brackets).

    * ``token_minutes`` [RADQC_TOKEN_MINUTES]: lifetime of a login token (short-lived: 30).
    * ``allow_original_download`` [RADQC_ALLOW_ORIGINAL_DOWNLOAD]: 可见不可存 — when false
      (default) no role downloads original DICOM of another hospital's exam; the role's
      ``image.download_original`` permission is needed in any case.
    * ``watermark`` [RADQC_WATERMARK]: stamp rendered frames with the viewer's identity.
    * ``repeat_window_days`` [RADQC_REPEAT_WINDOW_DAYS]: the repeated-exam reminder's window.
    * ``lockout_attempts`` / ``lockout_minutes``: failed logins before a temporary lock.
    * ``recognition_reasons`` [RADQC_RECOGNITION_REASONS]: the reason list (YAML).
    """

    signing_key: bytes
    #: Keys the stored HMAC-SM3 of API keys (derived from the master secret: rotating the JWT
    #: secret must not invalidate every system's key).
    api_key_secret: bytes
    token_minutes: int = DEFAULT_TOKEN_MINUTES
    allow_original_download: bool = False
    watermark: bool = True
    repeat_window_days: int = DEFAULT_REPEAT_WINDOW_DAYS
    lockout_attempts: int = DEFAULT_LOCKOUT_ATTEMPTS
    lockout_minutes: int = DEFAULT_LOCKOUT_MINUTES
    recognition_reasons: Path = Path(__file__).with_name("recognition_reasons.yaml")
    #: [RADQC_SERVE_THREADS] request threads per worker process; keep below the catalogue
    #: engine's connection pool (5 + 10): each thread holds one connection, the access log one.
    threads: int = DEFAULT_THREADS
    #: [RADQC_DETAIL_CACHE_MB] per-worker cache of the exam detail's exam-wide part, checked
    #: against the exam's version on every request (serving/services/detail_cache.py); 0: off.
    detail_cache_mb: int = DEFAULT_DETAIL_CACHE_MB


def load_serving_settings(master_key: bytes) -> ServingSettings:
    """Resolve the service settings; ``master_key`` is the workspace secret (``Workspace.vault``'s)."""
    raw = os.environ.get("RADQC_JWT_SECRET")
    if raw:
        if len(raw) < 32:
            raise ValueError("RADQC_JWT_SECRET must be at least 32 characters")
        signing_key = raw.encode("utf-8")
    else:
        signing_key = derive_key(master_key, "jwt-signing", 32)
    reasons = os.environ.get("RADQC_RECOGNITION_REASONS")
    return ServingSettings(
        signing_key=signing_key,
        api_key_secret=derive_key(master_key, "api-keys", 32),
        token_minutes=env_int("RADQC_TOKEN_MINUTES", DEFAULT_TOKEN_MINUTES),
        allow_original_download=env_bool("RADQC_ALLOW_ORIGINAL_DOWNLOAD", False),
        watermark=env_bool("RADQC_WATERMARK", True),
        repeat_window_days=env_int("RADQC_REPEAT_WINDOW_DAYS", DEFAULT_REPEAT_WINDOW_DAYS),
        lockout_attempts=env_int("RADQC_LOCKOUT_ATTEMPTS", DEFAULT_LOCKOUT_ATTEMPTS),
        lockout_minutes=env_int("RADQC_LOCKOUT_MINUTES", DEFAULT_LOCKOUT_MINUTES),
        recognition_reasons=Path(reasons) if reasons else Path(__file__).with_name("recognition_reasons.yaml"),
        threads=max(1, env_int("RADQC_SERVE_THREADS", DEFAULT_THREADS)),
        detail_cache_mb=max(0, env_int("RADQC_DETAIL_CACHE_MB", DEFAULT_DETAIL_CACHE_MB)),
    )
