"""Short-lived bearer tokens (JWT, HS256) for the OAuth2 password flow, and API keys for systems.

A token names the user, their role, hospital and ``token_version``; every request reloads the
user, so disabling a user or bumping ``token_version`` (password change) ends their tokens at
once. API keys are ``rq_<prefix>_<secret>``; only HMAC-SM3(secret) is stored, found by prefix.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from radqc.crypto import hmac_sm3

ALGORITHM = "HS256"
ISSUER = "radqc"
API_KEY_PREFIX = "rq_"


class TokenError(ValueError):
    pass


def issue_token(signing_key: bytes, *, user_id: int, role: str, hospital_id: int | None, token_version: int,
                minutes: int) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=minutes)
    claims = {"sub": str(user_id), "role": role, "hid": hospital_id, "ver": token_version, "iss": ISSUER,
              "iat": int(now.timestamp()), "exp": int(expires.timestamp()), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM), expires


def read_token(signing_key: bytes, token: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, signing_key, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["sub", "exp", "iat", "ver"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired / 登录已过期") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid token / 无效令牌") from exc
    return dict(claims)


def new_api_key() -> tuple[str, str, str]:
    """A new key: (full key shown once, prefix stored in clear, secret part to hash)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}{prefix}_{secret}", prefix, secret


def split_api_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(API_KEY_PREFIX):].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


def api_key_hash(signing_key: bytes, secret: str) -> str:
    return hmac_sm3(signing_key, b"api-key/" + secret.encode("utf-8"))


def api_key_matches(signing_key: bytes, secret: str, stored: str) -> bool:
    return hmac.compare_digest(api_key_hash(signing_key, secret), stored)
