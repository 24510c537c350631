"""Local-filesystem object store, the embedded default.

Writes go to a temporary file in the same directory, are fsynced, then renamed into place
(and the directory fsynced), so a crash at any instant leaves either no object or the
whole object — never a half-written one under its final key.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from radqc.objectstore.base import ObjectStore, PutResult, content_hash, key_for

_TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectStore(ObjectStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"invalid object key {key!r}")
        return self.root / key

    def put(self, data: bytes) -> PutResult:
        digest = content_hash(data)
        key = key_for(digest)
        final = self._path(key)
        if final.exists() and final.stat().st_size == len(data):
            return PutResult(key=key, digest=digest, size=len(data), created=False)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, final)
            _fsync_dir(final.parent)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
        return PutResult(key=key, digest=digest, size=len(data), created=True)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def local_path(self, key: str) -> Path:
        """Filesystem path of an object (local backend only; for zero-copy readers)."""
        return self._path(key)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def iter_keys(self) -> Iterator[str]:
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith(_TMP_PREFIX):
                yield path.relative_to(self.root).as_posix()

    def sweep_temporaries(self) -> int:
        """Remove temp files left by a killed writer; they never carry a final key."""
        removed = 0
        for path in self.root.rglob(f"{_TMP_PREFIX}*"):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed
