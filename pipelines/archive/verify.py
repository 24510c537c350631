"""``radqc verify``: prove that what the catalogue says is stored is what is stored.

For each instance in scope:

1. its ``storage_key`` names ``stored_hash`` and the object there still hashes to it
   (catches bit rot, tampering, a missing object);
2. the object parses as an acceptable DICOM instance (the ingest parser's rules);
3. its transfer syntax is the recorded ``stored_transfer_syntax``;
4. for archived instances, the pixels decoded from the compressed object hash to the
   ``pixel_hash`` recorded from the original (catches a wrong ``pixel_hash`` as well as a
   copy that does not decode to the original pixels).

Scope: the instances of ``exams``; every instance with ``all_instances``; otherwise the
archived instances (the ones whose bytes the product rewrote).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from radqc.objectstore import LocalObjectStore, ObjectStore, content_hash
from radqc.pipelines.archive.service import CHUNK, POOL_THRESHOLD, InstanceRef, select_instances
from radqc.text import bilingual
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

#: reason code -> (Chinese, English)
REASONS: dict[str, tuple[str, str]] = {
    "stored_hash_mismatch": ("存储键与 stored_hash 不一致", "storage key does not name stored_hash"),
    "object_missing": ("存储对象缺失", "stored object is missing"),
    "object_hash_mismatch": ("存储对象哈希与 stored_hash 不符（已损坏或被篡改）", "stored object does not hash to stored_hash (corrupt or tampered)"),
    "unparseable": ("存储对象无法解析为 DICOM", "stored object does not parse as DICOM"),
    "syntax_mismatch": ("传输语法与记录不符", "transfer syntax differs from stored_transfer_syntax"),
    "pixel_hash_missing": ("归档实例缺少像素哈希", "archived instance has no pixel_hash"),
    "pixel_hash_mismatch": ("解码像素哈希与记录不符", "decoded pixels do not hash to pixel_hash"),
    "error": ("校验时发生意外错误", "unexpected error while verifying"),
}


def reason_text(code: str, detail: str = "") -> str:
    return bilingual(REASONS, code, detail)


@dataclass
class VerifySummary:
    """``radqc verify --json``: ``checked``, ``ok``, ``failed`` (list), ``seconds``."""

    checked: int = 0
    ok: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    bytes_checked: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "failed": self.failed,
            "bytes_checked": self.bytes_checked,
            "seconds": round(self.seconds, 3),
        }


def check_object(store: ObjectStore, ref: InstanceRef) -> tuple[str | None, str, int]:
    """(reason_code or None, detail, bytes read) for one instance."""
    from radqc.dicom.parse import InvalidDicom, parse_instance
    from radqc.pipelines.archive.transcode import stored_pixel_hash

    if ref.storage_key.rsplit("/", 1)[-1] != ref.stored_hash:
        return "stored_hash_mismatch", ref.storage_key, 0
    try:
        data = store.get(ref.storage_key)
    except FileNotFoundError:
        return "object_missing", ref.storage_key, 0
    if content_hash(data) != ref.stored_hash:
        return "object_hash_mismatch", ref.storage_key, len(data)
    try:
        parsed = parse_instance(data)
    except InvalidDicom as exc:
        return "unparseable", str(exc), len(data)
    if (parsed.transfer_syntax or None) != (ref.stored_transfer_syntax or None):
        return "syntax_mismatch", f"{parsed.transfer_syntax} != {ref.stored_transfer_syntax}", len(data)
    if ref.archived_at is not None:
        if not ref.pixel_hash:
            return "pixel_hash_missing", "", len(data)
        try:
            decoded = stored_pixel_hash(data)
        except Exception as exc:  # noqa: BLE001 - a decoder failure is a verification failure
            return "pixel_hash_mismatch", f"cannot decode: {type(exc).__name__}: {exc}"[:300], len(data)
        if decoded != ref.pixel_hash:
            return "pixel_hash_mismatch", f"recorded {ref.pixel_hash[:12]}…, decoded {str(decoded)[:12]}…", len(data)
    return None, "", len(data)


_STORE: ObjectStore | None = None


def _init_worker(objects_dir: str) -> None:
    global _STORE
    _STORE = LocalObjectStore(objects_dir)


def _safe(store: ObjectStore, ref: InstanceRef) -> tuple[str | None, str, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # value warnings on real files are not verification results
            return check_object(store, ref)
    except Exception as exc:  # noqa: BLE001
        log.exception("verifying instance %s", ref.id)
        return "error", f"{type(exc).__name__}: {exc}"[:300], 0


def _check_chunk(refs: list[InstanceRef]) -> list[tuple[str | None, str, int]]:
    assert _STORE is not None
    return [_safe(_STORE, ref) for ref in refs]


def verify_instances(
    ws: Workspace,
    *,
    exams: Sequence[str] | None = None,
    all_instances: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifySummary:
    started = time.perf_counter()
    refs = select_instances(ws, exams, archived_only=not exams and not all_instances)
    summary = VerifySummary()

    def absorb(chunk: list[InstanceRef], results: list[tuple[str | None, str, int]]) -> None:
        for ref, (code, detail, nbytes) in zip(chunk, results, strict=True):
            summary.checked += 1
            summary.bytes_checked += nbytes
            if code is None:
                summary.ok += 1
            else:
                summary.failed.append(
                    {
                        "instance_id": ref.id,
                        "sop_instance_uid": ref.sop_instance_uid,
                        "storage_key": ref.storage_key,
                        "reason_code": code,
                        "reason": reason_text(code, detail),
                    }
                )
        if progress:
            progress(summary.checked, len(refs))

    chunks = [refs[i : i + CHUNK] for i in range(0, len(refs), CHUNK)]
    workers = ws.settings.workers if workers is None else workers
    if workers <= 1 or len(refs) < POOL_THRESHOLD:
        for chunk in chunks:
            absorb(chunk, [_safe(ws.store, ref) for ref in chunk])
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(str(ws.settings.objects_dir),)
        ) as pool:
            futures: list[tuple[list[InstanceRef], Future[list[tuple[str | None, str, int]]]]] = [
                (chunk, pool.submit(_check_chunk, chunk)) for chunk in chunks
            ]
            for chunk, future in futures:
                absorb(chunk, future.result())
    summary.seconds = time.perf_counter() - started
    return summary
