"""``radqc ingest PATH``: folders and zip files, recursively, in parallel, with progress.

Zip members are read into memory and never extracted to disk, so a ``../`` name cannot
write outside the workspace; such members are still quarantined, because a hospital
export that contains them is broken or hostile. A member that expands far beyond its
compressed size (or a zip whose total does) is quarantined as a zip bomb before it is read.
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from radqc.config import Settings
from radqc.objectstore import LocalObjectStore, ObjectStore
from radqc.pipelines.ingest.service import (
    CatalogueWriter,
    IngestSummary,
    Prepared,
    ingest_prepared,
    prepare_bytes,
    quarantine_bytes,
)
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

DICOMDIR_NAMES = {"DICOMDIR"}
BATCH = 64


@dataclass(frozen=True)
class FileTask:
    """One file to ingest: a path, or a member of a zip file."""

    path: str
    member: str | None = None
    size: int = 0
    #: Set when the walk already knows the file must be quarantined (oversized, unsafe name...).
    reject: str | None = None
    reject_detail: str = ""

    @property
    def ref(self) -> str:
        return f"{self.path}!{self.member}" if self.member is not None else self.path


@dataclass
class WalkReport:
    dicomdirs: list[str]
    dicomdir_missing: list[str]


def _unsafe_member(name: str) -> bool:
    posix = PurePosixPath(name.replace("\\", "/"))
    return posix.is_absolute() or ".." in posix.parts or (len(name) > 1 and name[1] == ":")


def walk(root: Path, settings: Settings, report: WalkReport) -> Iterator[FileTask]:
    """Yield every file under ``root`` (recursing into zips), flagging what must be refused."""
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    for path in paths:
        if path.name in DICOMDIR_NAMES:
            report.dicomdirs.append(str(path))
            report.dicomdir_missing.extend(_dicomdir_missing(path))
            continue
        try:
            size = path.stat().st_size
        except OSError as exc:
            yield FileTask(str(path), reject="unreadable", reject_detail=str(exc))
            continue
        if size > 0 and zipfile.is_zipfile(path):
            # A zip is judged by its members (each under the file limit, all under the zip total).
            yield from _walk_zip(path, settings)
            continue
        if size > settings.max_file_bytes:
            yield FileTask(str(path), size=size, reject="oversized", reject_detail=f"{size} > {settings.max_file_bytes} bytes")
            continue
        yield FileTask(str(path), size=size)


def _walk_zip(path: Path, settings: Settings) -> Iterator[FileTask]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield FileTask(str(path), size=path.stat().st_size, reject="bad_zip", reject_detail=str(exc))
        return
    total = 0
    for info in infos:
        task = FileTask(str(path), member=info.filename, size=info.file_size)
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if _unsafe_member(info.filename):
            yield FileTask(task.path, task.member, task.size, "unsafe_path", info.filename)
        elif (info.file_size > 1_000_000 and ratio > settings.max_zip_ratio) or total > settings.max_zip_total:
            yield FileTask(
                task.path, task.member, task.size, "zip_bomb",
                f"{info.file_size} bytes from {info.compress_size} (ratio {ratio:.0f}); zip total so far {total}",
            )
        elif info.file_size > settings.max_file_bytes:
            yield FileTask(task.path, task.member, task.size, "oversized", f"{info.file_size} bytes uncompressed")
        elif PurePosixPath(info.filename).name in DICOMDIR_NAMES:
            continue
        else:
            yield task


def _dicomdir_missing(path: Path) -> list[str]:
    """Files a DICOMDIR references that are not on the medium (reported, not silently ignored)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path)
        missing = []
        for record in ds.get("DirectoryRecordSequence", []):
            file_id = record.get("ReferencedFileID")
            if not file_id:
                continue
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            target = path.parent.joinpath(*parts)
            if not target.exists():
                missing.append(str(target))
        return missing
    except Exception as exc:  # a broken DICOMDIR is reported, the files are still walked
        log.warning("cannot read DICOMDIR %s: %s", path, exc)
        return []


# -- worker side (runs in a separate process) ----------------------------------------------
_STORE: ObjectStore | None = None
_MAX_BYTES = 0


def _init_worker(objects_dir: str, max_bytes: int) -> None:
    global _STORE, _MAX_BYTES
    _STORE = LocalObjectStore(objects_dir)
    _MAX_BYTES = max_bytes


def _prepare_task(task: FileTask, store: ObjectStore | None = None) -> Prepared:
    store = store or _STORE
    assert store is not None
    source = "zip" if task.member is not None else "folder"
    if task.reject:
        data = None
        if task.reject in ("unsafe_path",):  # small and harmless to keep
            data = _read_task(task)
        return quarantine_bytes(store, data, source, task.ref, task.reject, task.reject_detail, size=task.size)
    try:
        data = _read_task(task)
    except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        return quarantine_bytes(store, None, source, task.ref, "unreadable", f"{type(exc).__name__}: {exc}", task.size)
    return prepare_bytes(store, data, source, task.ref)


def _read_task(task: FileTask) -> bytes:
    if task.member is None:
        return Path(task.path).read_bytes()
    with zipfile.ZipFile(task.path) as archive:
        with archive.open(task.member) as handle:
            # Read at most the declared size + 1: a lying header cannot make us expand a bomb.
            data = handle.read(task.size + 1)
    if len(data) > task.size:
        raise ValueError("zip member larger than declared")
    return data


def _prepare_chunk(tasks: list[FileTask]) -> list[Prepared]:
    return [_prepare_task_safely(t) for t in tasks]


def _prepare_task_safely(task: FileTask, store: ObjectStore | None = None) -> Prepared:
    """Never let one file end the batch: anything unexpected becomes a quarantine record."""
    try:
        return _prepare_task(task, store)
    except Exception as exc:  # noqa: BLE001 - the reason is recorded, not swallowed
        log.exception("unexpected error preparing %s", task.ref)
        return quarantine_bytes(
            store or _STORE, None, "zip" if task.member else "folder", task.ref, "corrupt",  # type: ignore[arg-type]
            f"{type(exc).__name__}: {exc}", task.size,
        )


ProgressFn = Callable[[int, IngestSummary], None]


def ingest_path(
    workspace: Workspace,
    root: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> IngestSummary:
    """Ingest every file under ``root``. Never raises for one bad file; see the summary."""
    root_path = Path(root)
    if not root_path.exists():
        raise FileNotFoundError(f"no such file or folder: {root_path}")
    settings = workspace.settings
    report = WalkReport([], [])
    tasks = list(walk(root_path, settings, report))
    summary = IngestSummary()
    writer = CatalogueWriter(workspace)
    started = time.perf_counter()
    workers = workers if workers is not None else settings.workers
    chunks = [tasks[i : i + BATCH] for i in range(0, len(tasks), BATCH)]
    if workers <= 1 or len(tasks) < 2 * BATCH:
        for chunk in chunks:
            ingest_prepared(writer, [_prepare_task_safely(t, workspace.store) for t in chunk], summary)
            if progress:
                progress(len(tasks), summary)
    else:
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(str(settings.objects_dir), settings.max_file_bytes)
        ) as pool:
            pending: list[Future[list[Prepared]]] = []
            it = iter(chunks)
            for chunk in it:
                pending.append(pool.submit(_prepare_chunk, chunk))
                if len(pending) >= workers * 3:
                    break
            while pending:
                prepared = pending.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(_prepare_chunk, nxt))
                ingest_prepared(writer, prepared, summary)
                if progress:
                    progress(len(tasks), summary)
    summary.seconds = time.perf_counter() - started
    if report.dicomdirs:
        summary.notes.append(f"DICOMDIR index files read: {len(report.dicomdirs)}")
    for missing in report.dicomdir_missing:
        summary.notes.append(f"DICOMDIR references a missing file: {missing}")
    return summary
