"""The model registry: every learned model of the product, importable without torch.

Like TotalSegmentator's task registry, one data file (``models/registry.yaml``) lists each
model — name, version, task, modality, input spacing and size, label set (names, SNOMED
codes), weights file and its sha256, held-out metrics and the model card — so that the
CLI, the pipeline stages and the docs read the same facts. Weights are ONNX files served
by :mod:`radqc.models.runtime`; torch is needed only to (re)train them.

A weights file whose sha256 differs from the registry is refused: a silently swapped
model would change every QC score without a trace in the ledger.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODELS_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = MODELS_DIR / "registry.yaml"
LABELS_DIR = MODELS_DIR / "labels"


class ModelError(RuntimeError):
    """A model cannot be used: unknown name, missing weights, checksum mismatch, bad config."""


@dataclass(frozen=True)
class Structure:
    """One output label of a model: its value, English snake_case name, Chinese name, SNOMED CT."""

    label: int
    name: str
    zh: str = ""
    snomed: str | None = None
    from_generator: tuple[int, ...] = ()
    #: Body regions (head, neck, chest, abdomen, pelvis, legs) where the structure can lie; () = anywhere.
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    name: str
    structures: tuple[Structure, ...]
    split_by_side: dict[int, dict[str, int]] = field(default_factory=dict)

    def by_name(self) -> dict[str, Structure]:
        return {s.name: s for s in self.structures}

    def by_label(self) -> dict[int, Structure]:
        return {s.label: s for s in self.structures}

    @property
    def max_label(self) -> int:
        return max((s.label for s in self.structures), default=0)


@functools.cache
def load_label_set(name: str) -> LabelSet:
    """The label set ``models/labels/<name>.yaml``."""
    path = LABELS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ModelError(f"unknown label set {name!r} (no {path})")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    structures = tuple(
        Structure(
            label=int(s["label"]),
            name=str(s["name"]),
            zh=str(s.get("zh", "")),
            snomed=(str(s["snomed"]) if s.get("snomed") else None),
            from_generator=tuple(int(x) for x in s.get("from_generator", []) or []),
            regions=tuple(str(x) for x in s.get("regions", []) or []),
        )
        for s in raw.get("structures", [])
    )
    labels = [s.label for s in structures]
    if len(set(labels)) != len(labels) or len({s.name for s in structures}) != len(structures):
        raise ModelError(f"label set {name!r} repeats a label value or a name")
    split = {int(k): {str(a): int(b) for a, b in v.items()} for k, v in (raw.get("split_by_side") or {}).items()}
    return LabelSet(name=str(raw.get("name", name)), structures=structures, split_by_side=split)


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry. ``input`` and ``metrics`` are free-form mappings documented per task."""

    name: str
    version: str
    task: str  # segmentation | slice_regression | landmarks | classification | ...
    modality: str
    weights: str  # path relative to models/ (or absolute)
    sha256: str
    labels: str | None = None  # label-set name (models/labels/<name>.yaml)
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    card: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def weights_path(self) -> Path:
        p = Path(self.weights)
        return p if p.is_absolute() else MODELS_DIR / p

    @property
    def card_path(self) -> Path | None:
        return (MODELS_DIR / self.card) if self.card else None

    def label_set(self) -> LabelSet | None:
        return load_label_set(self.labels) if self.labels else None

    def verified_weights(self) -> Path:
        """The weights file after checking it exists and matches the registry's sha256."""
        path = self.weights_path
        if not path.is_file():
            raise ModelError(
                f"model {self.name} {self.version}: weights file {path} is missing "
                f"(retrain with the command in its model card)"
            )
        actual = _sha256_cached(str(path), path.stat().st_size, path.stat().st_mtime_ns)
        if self.sha256 and actual != self.sha256:
            raise ModelError(
                f"model {self.name} {self.version}: weights sha256 {actual[:12]}... does not match "
                f"the registry ({self.sha256[:12]}...); refusing to serve an unregistered model"
            )
        return path

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["weights_path"] = str(self.weights_path)
        return d


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def _load(path: Path) -> dict[str, ModelInfo]:
    if not path.is_file():
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, ModelInfo] = {}
    for entry in raw.get("models", []) or []:
        info = ModelInfo(**entry)
        if info.name in out:
            raise ModelError(f"registry lists model {info.name!r} twice")
        out[info.name] = info
    return out


def list_models(path: Path = REGISTRY_FILE) -> list[ModelInfo]:
    """Every registered model, in file order."""
    return list(_load(path).values())


def get_model(name: str, path: Path = REGISTRY_FILE) -> ModelInfo:
    models = _load(path)
    if name not in models:
        raise ModelError(f"unknown model {name!r}; registered: {sorted(models)}")
    return models[name]


def register_model(info: ModelInfo, path: Path = REGISTRY_FILE) -> None:
    """Add or replace ``info`` in the registry file (used by training/export commands).

    Entries keep their order; a replaced entry stays where it was. The sha256 is computed
    from the weights file when empty."""
    from dataclasses import asdict, replace

    if not info.sha256 and info.weights_path.is_file():
        info = replace(info, sha256=sha256_file(info.weights_path))
    with _LOCK:
        raw = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None) or {}
        entries = raw.get("models", []) or []
        new = asdict(info)
        for i, e in enumerate(entries):
            if e.get("name") == info.name:
                entries[i] = new
                break
        else:
            entries.append(new)
        raw["models"] = entries
        header = (
            "# The model registry (radqc.models.registry): written by each model's export command;\n"
            "# edit by hand only the descriptive fields. sha256 must match the weights file.\n"
        )
        path.write_text(header + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
