"""Password hashing with Argon2id (RFC 9106), the memory-hard KDF OWASP recommends first.

Parameters are argon2-cffi's defaults (t=3, m=64 MiB, p=4); ``needs_rehash`` lets a login
upgrade an old hash when the defaults move.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
MIN_PASSWORD_LENGTH = 10

# A fixed hash to verify against when the user does not exist, so a wrong username costs the
# same time as a wrong password (no user enumeration by timing).
_DUMMY_HASH = _HASHER.hash("radqc-no-such-user-dummy-password")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters / 密码至少 {MIN_PASSWORD_LENGTH} 位")
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
