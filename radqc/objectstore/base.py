"""The object-store interface every backend (local filesystem, S3-compatible) implements.

Objects are content-addressed: the key is derived from the SHA-256 of the bytes, so a
write of the same bytes twice is a no-op and an object can never be silently replaced.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_for(digest: str, namespace: str = "sha256") -> str:
    """Storage key of a digest: ``sha256/ab/cd/abcd…`` (two fan-out levels keep folders small)."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return f"{namespace}/{digest[:2]}/{digest[2:4]}/{digest}"


@dataclass(frozen=True)
class PutResult:
    key: str
    digest: str
    size: int
    created: bool  # False when the object already existed (deduplicated)


class ObjectStore(ABC):
    """Content-addressed, write-once blob storage."""

    @abstractmethod
    def put(self, data: bytes) -> PutResult:
        """Store bytes durably and atomically; return their key. Idempotent."""

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object. Only storage policy (archive, retention) calls this, never a stage."""

    @abstractmethod
    def iter_keys(self) -> Iterator[str]: ...

    def verify(self, key: str) -> bool:
        """True when the stored bytes still hash to the digest in their key."""
        digest = key.rsplit("/", 1)[-1]
        return content_hash(self.get(key)) == digest
