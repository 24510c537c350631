"""Model slots: which model fills ``ct_organs``, ``body_region`` and ``radiograph_anatomy``.

By default each slot is filled by the bundled registry model (ONNX, sha256-checked). A site
replaces one by configuration only, never by code:

* an environment variable ``RADQC_MODEL_<SLOT>`` (``RADQC_MODEL_CT_ORGANS=/models/wholeBody``)
  holding a path (kind auto-detected) or a registry model name;
* or ``$RADQC_HOME/models.yaml`` (another file with ``RADQC_MODELS_CONFIG``)::

      slots:
        ct_organs:
          kind: monai_bundle            # monai_bundle | nnunet | registry | onnx | python
          path: /models/wholeBody_ct_segmentation
          label_map: {face: body}       # their value or name -> our structure
          device: cuda

  A bare string is a path: ``ct_organs: /models/Dataset291_TotalSegmentator``.

Precedence: environment variable, then models.yaml, then the default. A path is recognised by
its layout (:data:`DETECTORS`): a MONAI bundle folder (``configs/metadata.json`` and an
inference config), an nnU-Net results folder (``dataset.json``, ``plans.json``, ``fold_*``), an
``.onnx`` file; a folder holding exactly one of these (one or two levels down) counts too, so
``Dataset291_…/`` or a ``monai.bundle download`` target works as given. A *list* of paths
(``os.pathsep``-separated in the environment variable) runs several folders of one kind and
merges their maps (:class:`~radqc.models.byo.common.MergedSegmenter`): TotalSegmentator v2
ships its ``total`` task as five part models.

A resolved model is cached per process and configuration (:func:`resolve`): a worker loads it
once and reuses it for every exam. :func:`slot_versions` describes a slot's model (name,
version, sha256 or folder hash) *without* loading it, for the pipeline run's fingerprint.

Every error is a :class:`~radqc.models.registry.ModelError` with a Chinese and English message
that names the slot and where its configuration came from.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from radqc.models.registry import ModelError, ModelInfo, get_model, sha256_file
from radqc.text import bilingual

#: What fills each slot by default, and what a replacement must implement. Data, not code paths:
#: the default class is imported by dotted path only when the slot is resolved.
SLOTS: dict[str, dict[str, Any]] = {
    "ct_organs": {
        "zh": "CT 器官分割",
        "protocol": "Segmenter",
        "default_model": "ct_organs_3mm",
        "factory": "radqc.models.segmentation.infer:OnnxCTSegmenter",
        "kinds": ("registry", "onnx", "monai_bundle", "nnunet", "python"),
    },
    "body_region": {
        "zh": "体部区域评分",
        "protocol": "BodyRegionScorer",
        "default_model": "body_region",
        "factory": "radqc.models.body_region.infer:OnnxBodyRegionScorer",
        "kinds": ("registry", "onnx", "python"),
    },
    "radiograph_anatomy": {
        "zh": "平片解剖",
        "protocol": "RadiographAnalyser",
        "default_model": "cxr_anatomy",
        "factory": "radqc.models.radiograph.infer:RadiographAnatomyModel",
        "kinds": ("registry", "onnx", "python"),
    },
}

#: Per kind: what the entry must name, which other keys it may carry, and (for folder kinds)
#: the adapter class and the light function that describes a folder without loading it.
KINDS: dict[str, dict[str, Any]] = {
    "registry": {"needs": "name", "keys": ()},
    "onnx": {"needs": "path", "keys": ("sha256", "version", "based_on", "input", "output", "labels", "metrics")},
    "monai_bundle": {
        "needs": "path",
        "keys": ("label_map", "device", "config_file", "overrides", "body_fill", "output_key"),
        "factory": "radqc.models.byo.monai_bundle:MonaiBundleSegmenter",
        "describe": "radqc.models.byo.monai_bundle:bundle_info",
        "labels": "radqc.models.byo.monai_bundle:declared_labels",
    },
    "nnunet": {
        "needs": "path",
        "keys": ("label_map", "device", "folds", "checkpoint", "use_mirroring", "tile_step_size", "body_fill"),
        "factory": "radqc.models.byo.nnunet:NnUNetSegmenter",
        "describe": "radqc.models.byo.nnunet:nnunet_info",
        "labels": "radqc.models.byo.nnunet:declared_labels",
    },
    "python": {"needs": "factory", "keys": ("options", "version")},
}
COMMON_KEYS = ("kind", "path", "name", "factory")

#: Layout detectors for a bare path, tried in order: (kind, predicate dotted path).
DETECTORS: tuple[tuple[str, str], ...] = (
    ("monai_bundle", "radqc.models.byo.monai_bundle:is_monai_bundle"),
    ("nnunet", "radqc.models.byo.nnunet:is_nnunet_folder"),
    ("onnx", "radqc.models.slots:_is_onnx_file"),
)

#: Reason codes of slot errors, Chinese first (radqc.text convention).
MESSAGES: dict[str, tuple[str, str]] = {
    "unknown_slot": ("未知的模型槽位", "unknown model slot"),
    "unknown_kind": ("未知的模型类型", "unknown model kind"),
    "kind_not_allowed": ("该槽位不接受此类模型", "this slot does not take this kind of model"),
    "config_invalid": ("模型配置文件无效", "invalid model configuration file"),
    "entry_invalid": ("模型槽位配置无效", "invalid slot configuration"),
    "path_missing": ("模型路径不存在", "model path does not exist"),
    "not_detected": (
        "无法识别模型目录（应为 MONAI bundle、nnU-Net 结果目录或 .onnx 文件）",
        "cannot tell what model this is (expected a MONAI bundle folder, an nnU-Net results folder or an .onnx file)",
    ),
    "ambiguous": ("目录下有多个模型，请指定其中一个", "several models under this folder; point at one of them"),
    "default_missing": (
        "默认模型尚未注册或其类不可用",
        "the slot's default model is not registered or its class is unavailable",
    ),
    "factory_failed": ("模型加载失败", "the model failed to load"),
    "weights_refused": ("权重文件校验失败，拒绝加载", "weights file refused"),
    "protocol": ("模型未实现该槽位要求的接口", "the model does not implement the slot's interface"),
}


def _error(code: str, detail: str = "") -> ModelError:
    return ModelError(bilingual(MESSAGES, code, detail))


def _is_onnx_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".onnx"


def _import(dotted: str) -> Any:
    """``"package.module:attr"`` -> the attribute (imports the module on first use)."""
    module, _, attr = dotted.partition(":")
    if not module or not attr:
        raise ValueError(f"expected 'module:attribute', got {dotted!r}")
    return getattr(importlib.import_module(module), attr)


def env_var(slot: str) -> str:
    """``ct_organs`` -> ``RADQC_MODEL_CT_ORGANS``."""
    return f"RADQC_MODEL_{slot.upper()}"


def models_config_path() -> Path:
    """``RADQC_MODELS_CONFIG``, else ``$RADQC_HOME/models.yaml`` (home defaults like the workspace's)."""
    explicit = os.environ.get("RADQC_MODELS_CONFIG", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    from radqc.config import DEFAULT_HOME

    return Path(os.environ.get("RADQC_HOME") or DEFAULT_HOME).expanduser() / "models.yaml"


@dataclass(frozen=True)
class SlotConfig:
    """One slot's resolved configuration (nothing loaded yet)."""

    slot: str
    kind: str
    source: str  # "default" | "env:RADQC_MODEL_X" | "file:/path/models.yaml"
    path: Path | None = None
    name: str | None = None
    factory: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    parts: tuple[Path, ...] = ()  # several folders of one kind, merged (TotalSegmentator's part models)

    def key(self) -> str:
        """Cache key: two equal configurations share one loaded model in a process."""
        return json.dumps(
            [self.slot, self.kind, str(self.path) if self.path else None, self.name, self.factory, self.options,
             [str(p) for p in self.parts]],
            sort_keys=True, default=str,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot, "kind": self.kind, "source": self.source,
            "path": str(self.path) if self.path else None, "parts": [str(p) for p in self.parts],
            "name": self.name, "factory": self.factory, "options": self.options,
        }


def _slot_spec(slot: str) -> dict[str, Any]:
    if slot not in SLOTS:
        raise _error("unknown_slot", f"{slot!r} (slots: {', '.join(SLOTS)})")
    return SLOTS[slot]


def detect_kind(path: Path, where: str = "") -> tuple[str, Path]:
    """The kind of model at ``path`` and the exact folder/file to load.

    Tries the path itself, then its children, then grandchildren: a TotalSegmentator
    ``Dataset291_…`` folder holds one ``nnUNetTrainer…__3d_fullres`` results folder, and a
    bundle download folder holds one bundle. More than one candidate at the shallowest level
    is refused rather than guessed."""
    path = Path(path).expanduser()
    if not path.exists():
        raise _error("path_missing", f"{path}{where}")
    detectors = [(kind, _import(fn)) for kind, fn in DETECTORS]

    def kind_of(p: Path) -> str | None:
        return next((k for k, fn in detectors if fn(p)), None)

    found = kind_of(path)
    if found:
        return found, path.resolve()
    level = [path] if path.is_dir() else []
    for _depth in (1, 2):
        level = sorted(c for p in level for c in p.iterdir() if c.is_dir() or c.suffix.lower() == ".onnx")
        hits = [(k, p) for p in level if (k := kind_of(p))]
        if len(hits) == 1:
            return hits[0][0], hits[0][1].resolve()
        if len(hits) > 1:
            listed = ", ".join(f"{p.name} ({k})" for k, p in hits)
            raise _error("ambiguous", f"{path}: {listed}{where}")
        level = [p for p in level if p.is_dir()]
    raise _error("not_detected", f"{path}{where}")


def _load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise _error("config_invalid", f"{path}: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("slots", {}) or {}, dict):
        raise _error("config_invalid", f"{path}: expected a mapping with 'slots: {{slot: ...}}'")
    slots = raw.get("slots") or {}
    unknown = sorted(set(slots) - set(SLOTS))
    if unknown:
        raise _error("unknown_slot", f"{path}: {unknown} (slots: {', '.join(SLOTS)})")
    return slots


def _from_entry(slot: str, entry: Any, source: str, base: Path | None) -> SlotConfig:
    """One models.yaml entry (mapping or bare path) -> :class:`SlotConfig`, validated eagerly."""
    where = f" [{slot}, {source}]"
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, Mapping):
        raise _error("entry_invalid", f"expected a mapping or a path{where}")
    entry = dict(entry)
    kind = entry.get("kind")
    path: Path | None = None

    def absolute(value: Any) -> Path:
        p = Path(str(value)).expanduser()
        return base / p if base is not None and not p.is_absolute() else p  # relative to its models.yaml

    if isinstance(entry.get("path"), (list, tuple)):
        return _merged_entry(slot, entry, [absolute(v) for v in entry["path"]], source, where)
    if entry.get("path") is not None:
        path = absolute(entry["path"])
    if kind is None:
        if path is None:
            if entry.get("name"):
                kind = "registry"
            elif entry.get("factory"):
                kind = "python"
            else:
                raise _error("entry_invalid", f"give kind and path (or name){where}")
        else:
            kind, path = detect_kind(path, where)
    elif path is not None and kind in ("monai_bundle", "nnunet"):
        detected, resolved = detect_kind(path, where)
        if detected != kind:
            raise _error("entry_invalid", f"{path} looks like {detected}, not {kind}{where}")
        path = resolved
    if kind not in KINDS:
        raise _error("unknown_kind", f"{kind!r} (kinds: {', '.join(KINDS)}){where}")
    if kind not in SLOTS[slot]["kinds"]:
        raise _error("kind_not_allowed", f"{kind} (slot {slot} takes {', '.join(SLOTS[slot]['kinds'])}){where}")
    spec = KINDS[kind]
    allowed = set(COMMON_KEYS) | set(spec["keys"])
    extra = sorted(set(entry) - allowed)
    if extra:
        raise _error("entry_invalid", f"unknown key(s) {extra} for kind {kind} (allowed: {sorted(allowed)}){where}")
    needs = spec["needs"]
    if needs == "path" and (path is None or not path.exists()):
        raise _error("path_missing", f"{path}{where}")
    if kind == "onnx" and path is not None and not _is_onnx_file(path):
        raise _error("entry_invalid", f"{path} is not an .onnx file{where}")
    if needs == "name" and not entry.get("name"):
        raise _error("entry_invalid", f"kind registry needs 'name'{where}")
    if needs == "factory" and not entry.get("factory"):
        raise _error("entry_invalid", f"kind python needs 'factory: module:Class'{where}")
    options = {k: entry[k] for k in spec["keys"] if k in entry}
    name = str(entry["name"]) if entry.get("name") is not None else None
    return SlotConfig(slot=slot, kind=kind, source=source, path=path.resolve() if path else None, name=name,
                      factory=entry.get("factory"), options=options)


def _merged_entry(slot: str, entry: dict[str, Any], paths: list[Path], source: str, where: str) -> SlotConfig:
    """``path: [a, b, ...]``: several folders of one kind (bundle or nnU-Net) merged into one map."""
    if not paths:
        raise _error("entry_invalid", f"empty path list{where}")
    detected = [detect_kind(p, where) for p in paths]
    kinds = {k for k, _ in detected}
    kind = entry.get("kind") or next(iter(kinds))
    if len(kinds) != 1 or kind not in ("monai_bundle", "nnunet") or kinds != {kind}:
        found = ", ".join(f"{p.name} ({k})" for k, p in detected)
        raise _error("entry_invalid", f"a path list must be folders of one kind, monai_bundle or nnunet: {found}{where}")
    if kind not in SLOTS[slot]["kinds"]:
        raise _error("kind_not_allowed", f"{kind} (slot {slot} takes {', '.join(SLOTS[slot]['kinds'])}){where}")
    allowed = set(COMMON_KEYS) | set(KINDS[kind]["keys"])
    extra = sorted(set(entry) - allowed)
    if extra:
        raise _error("entry_invalid", f"unknown key(s) {extra} for kind {kind} (allowed: {sorted(allowed)}){where}")
    options = {k: entry[k] for k in KINDS[kind]["keys"] if k in entry}
    return SlotConfig(slot=slot, kind=kind, source=source, name=entry.get("name"), options=options,
                      parts=tuple(p.resolve() for _, p in detected))


def slot_config(slot: str) -> SlotConfig:
    """Where ``slot``'s model comes from: env var, then models.yaml, then the default."""
    spec = _slot_spec(slot)
    var = env_var(slot)
    value = os.environ.get(var, "").strip()
    if value:
        source = f"env:{var}"
        looks_like_path = os.sep in value or value.startswith((".", "~")) or Path(value).expanduser().exists()
        if not looks_like_path:
            return _from_entry(slot, {"kind": "registry", "name": value}, source, None)
        if os.pathsep in value:  # several part folders: /a/Dataset291_…:/a/Dataset292_…
            return _from_entry(slot, {"path": [v for v in value.split(os.pathsep) if v]}, source, None)
        return _from_entry(slot, value, source, None)
    cfg_path = models_config_path()
    slots = _load_config_file(cfg_path)
    if slots.get(slot) is not None:
        return _from_entry(slot, slots[slot], f"file:{cfg_path}", cfg_path.parent)
    return SlotConfig(slot=slot, kind="registry", source="default", name=spec["default_model"])


# --------------------------------------------------------------------------------------------
# building and caching

_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}
_LOADS: dict[str, int] = {}


def _registry_info(cfg: SlotConfig) -> ModelInfo:
    try:
        return get_model(str(cfg.name))
    except ModelError as exc:
        code = "default_missing" if cfg.source == "default" else "entry_invalid"
        raise _error(code, f"{cfg.slot}: {exc} [{cfg.source}]") from exc


def _onnx_info(cfg: SlotConfig) -> ModelInfo:
    """A ModelInfo for an ONNX file a user brings: the slot's default entry (or ``based_on``)
    supplies the input/output contract; the file, its sha256 and version are the user's."""
    assert cfg.path is not None
    opts = cfg.options
    base_name = opts.get("based_on") or SLOTS[cfg.slot]["default_model"]
    try:
        base = get_model(str(base_name))
    except ModelError:
        base = ModelInfo(name=str(base_name), version="", task=cfg.slot, modality="", weights="", sha256="")
    actual = sha256_file(cfg.path)
    info = replace(
        base,
        name=cfg.name or cfg.path.stem,
        version=str(opts.get("version") or f"byo-{actual[:12]}"),
        weights=str(cfg.path),
        sha256=str(opts.get("sha256") or actual),  # a given sha256 is checked by verified_weights()
        labels=opts.get("labels", base.labels),
        input={**base.input, **(opts.get("input") or {})},
        output={**base.output, **(opts.get("output") or {})},
        metrics=dict(opts.get("metrics") or {}),
        card=None,
        description=f"weights brought by the site for slot {cfg.slot}",
    )
    try:
        info.verified_weights()
    except ModelError as exc:
        raise _error("weights_refused", f"{exc} [{cfg.slot}, {cfg.source}]") from exc
    return info


def _factory_for(cfg: SlotConfig) -> Callable[[], Any]:
    spec = SLOTS[cfg.slot]
    if cfg.kind == "registry":
        info = _registry_info(cfg)
        return lambda: _import(spec["factory"])(info)
    if cfg.kind == "onnx":
        info = _onnx_info(cfg)
        return lambda: _import(spec["factory"])(info)
    if cfg.kind in ("monai_bundle", "nnunet") and cfg.parts:
        return lambda: _merged(cfg)
    if cfg.kind in ("monai_bundle", "nnunet"):
        cls_path = KINDS[cfg.kind]["factory"]
        return lambda: _import(cls_path)(cfg.path, **cfg.options)
    if cfg.kind == "python":
        options = dict(cfg.options.get("options") or {})
        return lambda: _import(str(cfg.factory))(**options)
    raise _error("unknown_kind", cfg.kind)


def _merged(cfg: SlotConfig) -> Any:
    """Build each part (body_fill off, its share of the label_map) and merge them."""
    from radqc.models.byo.common import MergedSegmenter, split_label_map

    cls = _import(KINDS[cfg.kind]["factory"])
    declared = _import(KINDS[cfg.kind]["labels"])
    options = {k: v for k, v in cfg.options.items() if k != "label_map"}
    body_fill = bool(options.pop("body_fill", True))
    maps = split_label_map(cfg.options.get("label_map"), [declared(p) for p in cfg.parts])
    parts = [cls(p, label_map=m or None, body_fill=False, **options) for p, m in zip(cfg.parts, maps, strict=True)]
    return MergedSegmenter(parts, body_fill=body_fill, name=cfg.name)


def _check_protocol(slot: str, obj: Any) -> None:
    from radqc.models import interfaces

    protocol = getattr(interfaces, SLOTS[slot]["protocol"])
    if not isinstance(obj, protocol):
        raise _error("protocol", f"{type(obj).__name__} is not a {protocol.__name__} (slot {slot})")


def resolve(slot: str) -> Any:
    """The model object filling ``slot`` (loaded once per process and configuration)."""
    cfg = slot_config(slot)
    key = cfg.key()
    with _LOCK:
        obj = _CACHE.get(key)
        if obj is not None:
            return obj
        make = _factory_for(cfg)
        try:
            obj = make()
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001  (a class missing or failing: one clear line)
            code = "default_missing" if cfg.source == "default" else "factory_failed"
            raise _error(code, f"{slot} ({cfg.kind}): {type(exc).__name__}: {exc} [{cfg.source}]") from exc
        _check_protocol(slot, obj)
        _CACHE[key] = obj
        _LOADS[slot] = _LOADS.get(slot, 0) + 1
        return obj


def load_count(slot: str) -> int:
    """How many times this process built a model for ``slot`` (tests prove reuse with it)."""
    with _LOCK:
        return _LOADS.get(slot, 0)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
        _LOADS.clear()


# --------------------------------------------------------------------------------------------
# description (no loading)


def slot_versions(slot: str) -> dict[str, Any]:
    """``{slot, kind, source, name, version, sha256 | bundle_hash}`` of the model filling ``slot``.

    Computed from the configuration and files, never by loading the model: the pipeline puts
    it in every run's fingerprint, so a swapped checkpoint or bundle config shows in the ledger."""
    cfg = slot_config(slot)
    out: dict[str, Any] = {"slot": slot, "kind": cfg.kind, "source": cfg.source}
    if cfg.kind in ("registry", "onnx"):
        info = _registry_info(cfg) if cfg.kind == "registry" else _onnx_info(cfg)
        out.update(name=info.name, version=info.version, sha256=info.sha256)
    elif cfg.kind in ("monai_bundle", "nnunet"):
        describe = _import(KINDS[cfg.kind]["describe"])
        kwargs: dict[str, Any] = {}
        if cfg.kind == "nnunet":
            kwargs = {k: cfg.options[k] for k in ("folds", "checkpoint") if k in cfg.options}
        infos = [describe(p, **kwargs) for p in (cfg.parts or (cfg.path,))]
        if len(infos) == 1:
            info = infos[0]
        else:  # merged parts: one identity over all of them, in order
            import hashlib

            info = {"name": cfg.name or "+".join(i["name"] for i in infos),
                    "version": "+".join(i["version"] for i in infos),
                    "bundle_hash": hashlib.sha256("".join(i["bundle_hash"] for i in infos).encode()).hexdigest()}
            out["parts"] = infos
        out.update(name=info["name"], version=info["version"], bundle_hash=info["bundle_hash"])
    else:
        out.update(name=cfg.factory, version=str(cfg.options.get("version") or "unversioned"))
    if cfg.path is not None:
        out["path"] = str(cfg.path)
    return out


def describe_slots() -> list[dict[str, Any]]:
    """Every slot's configuration and versions, errors included as text (for ``radqc models``)."""
    rows: list[dict[str, Any]] = []
    for slot, spec in SLOTS.items():
        row: dict[str, Any] = {"slot": slot, "zh": spec["zh"], "protocol": spec["protocol"]}
        try:
            row.update(slot_versions(slot))
            row["ok"] = True
        except ModelError as exc:
            row.update(ok=False, error=str(exc))
        rows.append(row)
    return rows
