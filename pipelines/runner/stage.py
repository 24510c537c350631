"""What a pipeline stage is, and what it sees: the contract between stage code and runners.

A stage is a pure, versioned function over one exam. It receives an :class:`ExamContext`
(plain, picklable data built by the runner: the exam's ids, its series and newest
instances with their header facts, optionally its HIS/RIS records and charge lines, the
results of the stages it depends on, and a :class:`StoreRef` able to read object bytes)
and returns a JSON-serialisable result. It never opens the catalogue: the runner records
the result in the ledger. That separation is what lets the in-process runner and a Ray
runner execute the very same function (see docs/pipeline-runner.md).

This module imports nothing heavy (no SQLAlchemy, no numpy, no torch) so that stage
registries load instantly; stage functions import what they need when they run.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from radqc.objectstore import ObjectStore

#: Stage names appear in CLI lists, JSON keys and Exam.status: keep them simple identifiers.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: LedgerEntry.version is String(32).
MAX_VERSION_LENGTH = 32

#: What a stage may declare it reads. ``instances`` (series + newest instances) is what
#: image stages need; ``records`` (HIS/RIS records: report text, ordered items, times) and
#: ``charges`` (charge lines) are loaded only for stages that ask, and only what a stage
#: reads enters its input fingerprint, so a new charge line does not re-run image QC.
INPUT_KINDS = ("instances", "records", "charges")


class TransientStageError(RuntimeError):
    """Raise from a stage when a retry may succeed (a model server busy, a store timeout).

    The runner retries it (as it does ``OSError``, ``TimeoutError`` and SQLAlchemy's
    ``OperationalError``) with backoff; any other exception is a permanent failure,
    recorded with its reason, and the runner moves on.
    """


@dataclass(frozen=True)
class Resources:
    """What one execution of a stage needs; the local runner and a Ray runner both read it.

    ``process``: run in a worker process instead of a thread (CPU-bound pure-Python
    code that would hold the GIL). ``cpus``: worker slots one execution occupies locally
    (``num_cpus`` on Ray). ``gpu``: needs an accelerator (locally: at most ``gpu_slots``
    such executions at once; on Ray ``num_gpus=1``). ``memory_mb``: informative locally,
    Ray's ``memory=``. ``model``: the model-registry name the stage loads (Ray keeps it
    in a long-lived actor; recorded in the manifest).
    """

    cpus: int = 1
    gpu: bool = False
    memory_mb: int | None = None
    model: str | None = None
    process: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cpus, int) or self.cpus < 1:
            raise ValueError(f"resources.cpus must be a positive integer, got {self.cpus!r}")
        if self.memory_mb is not None and (not isinstance(self.memory_mb, int) or self.memory_mb <= 0):
            raise ValueError(f"resources.memory_mb must be a positive integer, got {self.memory_mb!r}")

    @classmethod
    def of(cls, value: Resources | Mapping[str, Any] | None) -> Resources:
        if value is None:
            return cls()
        if isinstance(value, Resources):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown resource keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


StageFunction = Callable[["ExamContext"], Any]


@dataclass(frozen=True)
class Stage:
    """One registered stage: its identity, what it depends on and needs, and its function.

    ``version`` is the stage's own version: bump it whenever the code's output can change;
    the runner re-processes every exam whose last result came from another version.
    ``versions`` names the rule-set/model versions the result depends on (or a function
    returning them, evaluated once per run, e.g. the hash of a YAML rule library); a
    change there re-processes too, and they are written into every run's manifest.
    ``fn`` must be importable by module and qualified name (a module-level function), so
    a process pool or a Ray worker can receive it by reference.
    """

    name: str
    version: str
    fn: StageFunction
    depends: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    reads: tuple[str, ...] = ("instances",)
    versions: Mapping[str, str] | Callable[[], Mapping[str, str]] = field(default_factory=dict)
    description: str = ""
    #: Optional catalogue projection: a module-level ``fn(session, exam_id, ledger_id, result)``
    #: called in the same transaction that records a succeeded result. It turns the result into
    #: catalogue rows other parts of the product query (split standard series, exam tags, the
    #: item review queue). The stage function itself still never opens the catalogue; a
    #: projection must be idempotent per exam (replace the exam's rows), because a re-run
    #: projects again.
    project: Callable[[Any, int, int, Any], None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ValueError(f"stage name {self.name!r} must match {NAME_PATTERN.pattern}")
        if not isinstance(self.version, str) or not self.version or len(self.version) > MAX_VERSION_LENGTH:
            raise ValueError(f"stage {self.name}: version must be a non-empty string of at most {MAX_VERSION_LENGTH} characters")
        if not callable(self.fn):
            raise ValueError(f"stage {self.name}: fn must be callable")
        depends = (self.depends,) if isinstance(self.depends, str) else tuple(self.depends)
        object.__setattr__(self, "depends", depends)
        if len(set(depends)) != len(depends):
            raise ValueError(f"stage {self.name}: dependency listed twice in {list(depends)}")
        if self.name in depends:
            raise ValueError(f"stage {self.name} depends on itself (cycle {self.name} -> {self.name})")
        object.__setattr__(self, "resources", Resources.of(self.resources))
        reads = (self.reads,) if isinstance(self.reads, str) else tuple(self.reads)
        bad = [r for r in reads if r not in INPUT_KINDS]
        if bad:
            raise ValueError(f"stage {self.name}: unknown input kinds {bad}; known: {list(INPUT_KINDS)}")
        object.__setattr__(self, "reads", reads)

    def resolved_versions(self) -> dict[str, str]:
        """Rule-set/model versions as plain strings (evaluated now when given as a function)."""
        raw = self.versions() if callable(self.versions) else self.versions
        return {str(k): str(v) for k, v in dict(raw).items()}


@dataclass
class StageOutput:
    """Optional richer return value: the result plus facts for the run's manifest.

    Use it when the stage learns something about *how* it ran that belongs in the manifest
    rather than the result (the device a model actually used, the weights' sha256).
    """

    result: Any
    manifest: dict[str, Any] = field(default_factory=dict)


# -- what a stage sees ------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceInfo:
    """The newest stored version of one SOP instance (older versions are never shown)."""

    id: int
    sop_instance_uid: str
    sop_class_uid: str | None
    version: int
    instance_number: int | None
    content_hash: str
    storage_key: str
    transfer_syntax: str | None
    stored_transfer_syntax: str | None
    pixel_hash: str | None
    header: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeriesInfo:
    id: int
    series_instance_uid: str
    modality: str | None
    series_number: int | None
    description: str | None
    body_part: str | None
    instances: tuple[InstanceInfo, ...] = ()


_STORES: dict[tuple[str, str], ObjectStore] = {}
_STORES_LOCK = threading.Lock()


@dataclass(frozen=True)
class StoreRef:
    """A serialisable pointer to an object store; opened lazily where the stage runs.

    ``kind`` ``local`` is a filesystem root (shared disk on a cluster); an S3-compatible
    backend adds its own kind with endpoint and bucket in ``location`` without changing
    any stage.
    """

    kind: str
    location: str

    def open(self) -> ObjectStore:
        key = (self.kind, self.location)
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is None:
                if self.kind != "local":
                    raise ValueError(f"unsupported object store kind {self.kind!r}")
                from radqc.objectstore import LocalObjectStore

                store = LocalObjectStore(self.location)
                _STORES[key] = store
            return store

    @classmethod
    def for_store(cls, store: ObjectStore) -> StoreRef:
        root = getattr(store, "root", None)
        if root is None:
            raise ValueError(f"cannot describe object store {type(store).__name__} by reference")
        return cls("local", str(root))


_WORKSPACES: dict[str, Any] = {}
_WORKSPACES_LOCK = threading.Lock()


def process_workspace(store: StoreRef | None = None) -> Any | None:
    """The workspace this process can open (``RADQC_HOME``), opened once and kept; else None.

    For the few stages that read catalogue tables beside their inputs (rule QC decrypts
    identifiers, item normalisation reads the confirmed mappings). With ``store``, only when
    that store is this workspace's local object store: a remote worker (another store, no
    workspace here) gets None and the stage says what it could not read.
    """
    from radqc.config import load_settings
    from radqc.workspace import Workspace

    try:
        settings = load_settings()
    except Exception:  # noqa: BLE001 - no configuration here: no workspace
        return None
    if store is not None and (store.kind != "local"
                              or Path(store.location).resolve() != settings.objects_dir.resolve()):
        return None
    key = f"{settings.home}|{settings.database_url}"
    with _WORKSPACES_LOCK:
        ws = _WORKSPACES.get(key)
        if ws is None:
            try:
                ws = Workspace.open(settings.home)
            except Exception:  # noqa: BLE001 - not initialised here
                return None
            _WORKSPACES[key] = ws
        return ws


@dataclass(frozen=True)
class ExamContext:
    """Everything a stage may read about one exam; built by the runner, read-only for stages.

    Instances are the newest version of each SOP instance only. ``inputs`` maps each
    dependency's name to its latest succeeded result. ``records`` and ``charges`` are
    filled only for stages that declare they read them. Times are ISO-8601 strings so the
    context survives JSON as well as pickle.
    """

    exam_id: int
    study_instance_uid: str | None
    accession_number: str | None
    modality: str | None
    exam_time: str | None
    study_description: str | None
    ordered_items: tuple[Any, ...]
    hospital_code: str | None
    patient_sex: str | None
    patient_birth_year: int | None
    series: tuple[SeriesInfo, ...]
    store: StoreRef
    records: tuple[dict[str, Any], ...] = ()
    charges: tuple[dict[str, Any], ...] = ()
    inputs: dict[str, Any] = field(default_factory=dict)

    # -- convenience for stage code -----------------------------------------------------
    def instances(self) -> Iterator[tuple[SeriesInfo, InstanceInfo]]:
        for series in self.series:
            for instance in series.instances:
                yield series, instance

    def read(self, instance: InstanceInfo | str) -> bytes:
        """The stored bytes of an instance (or of any object key, e.g. a dependency's output)."""
        key = instance.storage_key if isinstance(instance, InstanceInfo) else instance
        return self.store.open().get(key)

    def dataset(self, instance: InstanceInfo, *, stop_before_pixels: bool = False) -> Any:
        """The instance parsed by pydicom (imported here, not at module import)."""
        import io

        import pydicom

        return pydicom.dcmread(io.BytesIO(self.read(instance)), stop_before_pixels=stop_before_pixels)

    def input(self, stage: str) -> Any:
        """A dependency's result; a clear error when the stage did not declare it."""
        try:
            return self.inputs[stage]
        except KeyError:
            raise KeyError(f"no result of stage {stage!r} in this context; declare it in depends") from None

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExamContext:
        values = dict(data)
        values["series"] = tuple(
            SeriesInfo(**{**s, "instances": tuple(InstanceInfo(**i) for i in s["instances"])}) for s in data["series"]
        )
        values["store"] = StoreRef(**data["store"])
        values["ordered_items"] = tuple(data.get("ordered_items") or ())
        values["records"] = tuple(data.get("records") or ())
        values["charges"] = tuple(data.get("charges") or ())
        values["inputs"] = dict(data.get("inputs") or {})
        return cls(**values)
