"""Input fingerprints: how the runner knows that re-running a stage would change nothing.

A stage's run over an exam is a no-op when its version, its rule-set/model versions and
its *input fingerprint* equal those of its latest succeeded run. The fingerprint is a
SHA-256 over exactly what the stage may read:

* ``instances``: the sorted ``(SOPInstanceUID, content hash)`` pairs of the newest version
  of every instance, so a new instance, a re-sent instance with new bytes, or an instance
  moved away all change it (archive compression does not: it changes the stored bytes,
  not the original content hash, and is lossless);
* ``records`` / ``charges``: canonical JSON of the exam's HIS/RIS records or charge
  lines, only for stages that declare they read them;
* each dependency's name and the SHA-256 of its result. The result, not the dependency's
  version: a dependency re-run (new version, ``--force``) that produced the same result
  leaves its dependants untouched, which matters when the dependants are GPU models; one
  whose result changed re-runs them. (The dependency versions are still written into every
  run's manifest.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any


class NotSerialisable(TypeError):
    """A stage returned something that is not JSON (a set, an object, NaN)."""


def _default(value: Any) -> Any:
    # numpy scalars and arrays (and anything with the same protocol) become plain JSON
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise NotSerialisable(f"{type(value).__name__} is not JSON-serialisable")


def canonical_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys, no whitespace, no NaN/Infinity)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default)
    except ValueError as exc:  # NaN / Infinity
        raise NotSerialisable(f"result contains a non-finite number ({exc}); use null") from exc
    except NotSerialisable:
        raise
    except TypeError as exc:  # e.g. non-string dict keys that json cannot coerce
        raise NotSerialisable(str(exc)) from exc


def normalise_result(value: Any) -> tuple[Any, str]:
    """The result as the ledger will store it (plain JSON types) and its SHA-256."""
    text = canonical_json(value)
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def instances_part(pairs: Iterable[tuple[str, str]]) -> str:
    """Digest of the exam's newest instances: sorted ``uid:content_hash`` lines."""
    digest = hashlib.sha256()
    for uid, content in sorted(pairs):
        digest.update(f"{uid}:{content}\n".encode())
    return digest.hexdigest()


def json_part(rows: Any) -> str:
    return sha256_text(canonical_json(rows))


def input_fingerprint(parts: Mapping[str, str], reads: Iterable[str], dependencies: Mapping[str, str]) -> str:
    """Combine the parts a stage reads with its dependencies' result SHA-256s."""
    lines = [f"{kind}={parts[kind]}" for kind in sorted(set(reads))]
    lines += [f"dep:{name}={result}" for name, result in sorted(dependencies.items())]
    return sha256_text("\n".join(lines))
