"""What every bring-your-own adapter shares: bilingual errors, label mapping, geometry, hashes.

Kept free of torch/monai/nnunetv2 so the slot resolver and ``radqc models`` can describe a
configured folder (its names, version, hash) without loading any of them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from radqc.models.registry import LabelSet, ModelError, load_label_set, sha256_file
from radqc.text import bilingual

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import SimpleITK as sitk

NAMES_FILE = Path(__file__).resolve().parent / "totalsegmentator_names.yaml"
OUR_LABEL_SET = "ct_organs"
BODY = "body"

#: Reason codes of the adapters' errors, Chinese first (radqc.text convention).
MESSAGES: dict[str, tuple[str, str]] = {
    "bundle_layout": (
        "不是 MONAI bundle 目录（需要 configs/metadata.json 与 configs/inference.json 或 .yaml）",
        "not a MONAI bundle folder (needs configs/metadata.json and configs/inference.json or .yaml)",
    ),
    "bundle_config": ("MONAI bundle 的推理配置无法改写输入/输出", "cannot point the bundle's inference config at our image"),
    "bundle_failed": ("MONAI bundle 推理失败", "the MONAI bundle's inference failed"),
    "bundle_output": ("MONAI bundle 推理没有写出分割结果", "the MONAI bundle's inference wrote no label map"),
    "monai_missing": (
        "缺少 monai / pytorch-ignite / nibabel，无法运行 MONAI bundle",
        "monai, pytorch-ignite and nibabel are needed to run a MONAI bundle "
        "(pip install 'radqc-workbench[bundle]')",
    ),
    "nnunet_missing": (
        "未安装 nnunetv2，无法运行 nnU-Net / TotalSegmentator 权重",
        "nnunetv2 is not installed, cannot run nnU-Net / TotalSegmentator weights "
        "(pip install 'radqc-workbench[nnunet]')",
    ),
    "nnunet_layout": (
        "不是 nnU-Net 训练结果目录（需要 dataset.json、plans.json 与 fold_N/checkpoint_final.pth）",
        "not an nnU-Net results folder (needs dataset.json, plans.json and fold_N/checkpoint_final.pth)",
    ),
    "nnunet_failed": ("nnU-Net 推理失败", "nnU-Net inference failed"),
    "label_map": ("标签映射无效", "invalid label map"),
    "no_labels": (
        "模型未声明输出标签名称，请在配置中给出 label_map",
        "the model declares no output label names; give a label_map in the slot configuration",
    ),
    "not_3d": ("输入不是三维 CT 体数据", "the input is not a 3D CT volume"),
}


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Keep a foreign model's chatter off stdout for the duration of a call.

    ``radqc segment --json`` owns stdout, but nnU-Net ``print``s and MONAI's module loggers
    hold a ``StreamHandler(sys.stdout)`` created when they were imported (a redirect of
    ``sys.stdout`` alone misses them): both go to stderr here, and back afterwards."""
    original = sys.stdout
    swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (original, sys.__stdout__):
                swapped.append((handler, handler.stream))
                handler.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)


def byo_error(code: str, detail: str = "") -> ModelError:
    """A :class:`ModelError` whose message is the bilingual text of ``code``."""
    return ModelError(bilingual(MESSAGES, code, detail))


# --------------------------------------------------------------------------------------------
# label mapping


def normalise_name(name: str) -> str:
    """Case-insensitive, spaces and hyphens as underscores: ``"Left Kidney"`` -> ``left_kidney``."""
    return re.sub(r"[\s\-]+", "_", str(name).strip()).lower()


@dataclass(frozen=True)
class NameTable:
    """The foreign-name vocabulary of :data:`NAMES_FILE`."""

    names: dict[str, str]
    patterns: tuple[tuple[re.Pattern[str], str], ...]
    background: frozenset[str]


@functools.cache
def load_name_table(path: Path = NAMES_FILE) -> NameTable:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    ours = load_label_set(OUR_LABEL_SET).by_name()
    names = {normalise_name(k): str(v) for k, v in (raw.get("names") or {}).items()}
    patterns = tuple(
        (re.compile(normalise_name(p["match"])), str(p["to"])) for p in (raw.get("patterns") or [])
    )
    targets = set(names.values()) | {t for _, t in patterns}
    unknown = sorted(t for t in targets if t not in ours)
    if unknown:  # a typo in the data file must not silently send a structure to `body`
        raise ModelError(f"{path.name} maps to names not in our label set: {unknown}")
    background = frozenset(normalise_name(b) for b in raw.get("background") or [])
    return NameTable(names=names, patterns=patterns, background=background)


@dataclass(frozen=True)
class MappedLabel:
    """How one foreign label value became one of ours (``how`` says which rule decided)."""

    their_label: int
    their_name: str | None
    our_label: int
    our_name: str
    how: str  # label_map | same_name | names_file | pattern | background | unmapped

    def to_dict(self) -> dict[str, Any]:
        return {
            "their_label": self.their_label, "their_name": self.their_name, "our_label": self.our_label,
            "our_name": self.our_name, "how": self.how,
        }


@dataclass(frozen=True)
class LabelMapping:
    """Foreign label values -> our label values, with the record of every decision."""

    entries: tuple[MappedLabel, ...]
    body_label: int
    label_set: LabelSet = field(repr=False)

    @property
    def unmapped(self) -> list[str]:
        """Foreign structures our label set has no name for (they count as ``body``)."""
        return [e.their_name or str(e.their_label) for e in self.entries if e.how == "unmapped"]

    def lookup(self) -> dict[int, int]:
        return {e.their_label: e.our_label for e in self.entries}

    def apply(self, their: np.ndarray) -> np.ndarray:
        """Map a foreign label array to ours (uint8). Values the model never declared -> body."""
        import numpy as np

        their = np.asarray(their)
        if their.size and int(their.min()) < 0:
            raise byo_error("label_map", f"negative label value {int(their.min())} in the model output")
        top = max(max((e.their_label for e in self.entries), default=0), int(their.max()) if their.size else 0)
        lut = np.full(top + 1, self.body_label, dtype=np.uint8)
        lut[0] = 0
        for e in self.entries:
            lut[e.their_label] = e.our_label
        return lut[their.astype(np.int64, copy=False)]

    def to_dict(self) -> dict[str, Any]:
        return {"labels": [e.to_dict() for e in self.entries], "unmapped": self.unmapped}


def _our_target(value: Any, ours: LabelSet, background: frozenset[str]) -> tuple[int, str] | None:
    """A label_map value (our name, our label value, or a background word) -> (label, name)."""
    by_name, by_label = ours.by_name(), ours.by_label()
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        v = int(value)
        if v == 0:
            return 0, "background"
        return (v, by_label[v].name) if v in by_label else None
    name = normalise_name(value)
    if name in background:
        return 0, "background"
    return (by_name[name].label, name) if name in by_name else None


def build_label_mapping(
    their: Mapping[int, str | None],
    label_map: Mapping[Any, Any] | None = None,
    label_set: LabelSet | None = None,
    table: NameTable | None = None,
) -> LabelMapping:
    """Decide, for every foreign label value, which of our labels it becomes.

    ``their`` maps the foreign model's output values to its names (None when unnamed).
    ``label_map`` (from the slot configuration) maps foreign values *or* names to our names,
    our label values, or ``background``; it wins over every other rule, and a key that names
    no foreign label is an error (a typo would otherwise silently do nothing)."""
    ours = label_set or load_label_set(OUR_LABEL_SET)
    table = table or load_name_table()
    by_name = ours.by_name()
    if BODY not in by_name:
        raise ModelError(f"label set {ours.name} has no {BODY!r} structure")
    body = by_name[BODY].label
    declared: dict[int, str | None] = {int(k): (str(v) if v is not None else None) for k, v in their.items()}

    overrides: dict[int, tuple[int, str]] = {}
    names_to_values: dict[str, list[int]] = {}
    for value, name in declared.items():
        if name is not None:
            names_to_values.setdefault(normalise_name(name), []).append(value)
    for key, target in (label_map or {}).items():
        resolved = _our_target(target, ours, table.background)
        if resolved is None:
            raise byo_error(
                "label_map", f"{key!r} -> {target!r}: not one of our structures ({', '.join(sorted(by_name))})"
            )
        if isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
            value = int(key)
            declared.setdefault(value, None)  # an unnamed output the user names for us
            overrides[value] = resolved
        else:
            values = names_to_values.get(normalise_name(key))
            if not values:
                known = ", ".join(sorted(names_to_values)) or "none"
                raise byo_error("label_map", f"the model has no label named {key!r} (its names: {known})")
            for value in values:
                overrides[value] = resolved

    entries: list[MappedLabel] = []
    for value in sorted(declared):
        name = declared[value]
        norm = normalise_name(name) if name is not None else None
        if value in overrides:
            label, ours_name = overrides[value]
            entries.append(MappedLabel(value, name, label, ours_name, "label_map"))
        elif value == 0:
            entries.append(MappedLabel(0, name, 0, "background", "background"))
        elif norm is not None and norm in by_name:
            entries.append(MappedLabel(value, name, by_name[norm].label, norm, "same_name"))
        elif norm is not None and norm in table.names:
            target = table.names[norm]
            entries.append(MappedLabel(value, name, by_name[target].label, target, "names_file"))
        elif norm is not None and (hit := next((t for p, t in table.patterns if p.fullmatch(norm)), None)):
            entries.append(MappedLabel(value, name, by_name[hit].label, hit, "pattern"))
        elif norm is not None and norm in table.background:
            entries.append(MappedLabel(value, name, 0, "background", "background"))
        else:
            entries.append(MappedLabel(value, name, body, BODY, "unmapped"))
    return LabelMapping(entries=tuple(entries), body_label=body, label_set=ours)


# --------------------------------------------------------------------------------------------
# geometry


def check_volume(image: sitk.Image) -> None:
    """Refuse what no 3D CT segmenter can take (2D or vector images) with a clear reason."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise byo_error(
            "not_3d", f"dimension {image.GetDimension()}, {image.GetNumberOfComponentsPerPixel()} component(s)"
        )


def resample_labels_like(labels: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``labels`` (any geometry, any integer-valued pixel type) resampled nearest-neighbour onto
    ``reference``'s grid, as UInt16; voxels the model's output does not cover become 0."""
    import SimpleITK as sitk

    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise byo_error("bundle_output", "the output has several channels, not one label map")
    if labels.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        labels = sitk.Round(labels)
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    same = (
        labels.GetSize() == reference.GetSize()
        and _close(labels.GetSpacing(), reference.GetSpacing())
        and _close(labels.GetOrigin(), reference.GetOrigin())
        and _close(labels.GetDirection(), reference.GetDirection())
    )
    if same:
        out = sitk.Image(labels)
        out.CopyInformation(reference)
        return out
    return sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)


def _close(a: Iterable[float], b: Iterable[float], tol: float = 1e-4) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def fill_body(ours: np.ndarray, hu: np.ndarray, body_label: int, threshold_hu: float = -500.0) -> np.ndarray:
    """Give ``body`` to unlabelled voxels inside the patient.

    Foreign models segment organs, not the body outline, but our label set's ``body`` is "other
    tissue inside the patient" (scan range and centring need the outline). Inside = the
    largest connected component of (HU above ``threshold_hu``, or any structure)."""
    import numpy as np
    import SimpleITK as sitk

    inside = (hu > threshold_hu) | (ours > 0)
    if not inside.any():
        return ours
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(inside.astype(np.uint8))),
                               sortByObjectSize=True)
    largest = sitk.GetArrayViewFromImage(cc) == 1
    out = ours.copy()
    out[largest & (ours == 0)] = body_label
    return out


def finish(their_on_grid: sitk.Image, image: sitk.Image, mapping: LabelMapping, body_fill: bool) -> sitk.Image:
    """Foreign labels already on ``image``'s grid -> our uint8 label map with its geometry."""
    import numpy as np
    import SimpleITK as sitk

    ours = mapping.apply(sitk.GetArrayViewFromImage(their_on_grid))
    if body_fill:
        ours = fill_body(ours, sitk.GetArrayViewFromImage(image).astype(np.float32), mapping.body_label)
    out = sitk.GetImageFromArray(ours.astype(np.uint8))
    out.CopyInformation(image)
    return out


# --------------------------------------------------------------------------------------------
# fingerprints


def files_hash(root: Path, files: Iterable[Path]) -> str:
    """sha256 over (relative path, file sha256) of ``files``: one value per set of weights, so
    the pipeline's fingerprint changes when any config or checkpoint of a folder changes.
    File hashes are cached by (path, size, mtime) in the registry module."""
    h = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(sha256_file(path).encode())
        h.update(b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# several part models as one


class MergedSegmenter:
    """Several segmenters of one CT, merged into one label map in our label set.

    TotalSegmentator v2 splits its ``total`` task into part models (organs, vertebrae, cardiac,
    muscles, ribs), one nnU-Net results folder each; a slot configured with a list of paths
    runs every part and merges them. A voxel takes the first part's specific structure (not
    background, not ``body``); ``body`` where any part says body; then ``body_fill`` once.
    Build the parts with ``body_fill=False`` so one part's body never hides another's organ."""

    def __init__(self, parts: list[Any], body_fill: bool = True, name: str | None = None) -> None:
        if not parts:
            raise ModelError("MergedSegmenter needs at least one part")
        self.parts = list(parts)
        self.name = name or "+".join(str(p.name) for p in self.parts)
        self.version = "+".join(str(p.version) for p in self.parts)
        self.body_fill = body_fill
        self.last_run: dict[str, Any] = {}

    @property
    def label_set(self) -> LabelSet:
        return load_label_set(OUR_LABEL_SET)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "merged", "name": self.name, "version": self.version,
                "parts": [p.fingerprint() if hasattr(p, "fingerprint") else p.name for p in self.parts]}

    def segment(self, image: sitk.Image) -> sitk.Image:
        import numpy as np
        import SimpleITK as sitk

        check_volume(image)
        body = self.label_set.by_name()[BODY].label
        out: np.ndarray | None = None
        any_body: np.ndarray | None = None
        for part in self.parts:
            arr = sitk.GetArrayFromImage(part.segment(image))
            if out is None:
                out = np.zeros_like(arr, dtype=np.uint8)
                any_body = np.zeros(arr.shape, dtype=bool)
            specific = (arr != 0) & (arr != body) & ((out == 0) | (out == body))
            out[specific] = arr[specific]
            any_body |= arr == body
        assert out is not None and any_body is not None
        out[(out == 0) & any_body] = body
        if self.body_fill:
            out = fill_body(out, sitk.GetArrayViewFromImage(image).astype(np.float32), body)
        result = sitk.GetImageFromArray(out.astype(np.uint8))
        result.CopyInformation(image)
        self.last_run = {"parts": [getattr(p, "last_run", {}) for p in self.parts],
                         "unmapped": sorted({n for p in self.parts for n in getattr(p, "last_run", {}).get("unmapped", [])})}
        return result


def split_label_map(label_map: Mapping[Any, Any] | None, parts: list[dict[int, str | None]]) -> list[dict[Any, Any]]:
    """One slot label_map -> one per part: each part gets the name keys it declares.

    A key no part declares is an error (a typo would otherwise do nothing); value keys (their
    label numbers) are refused, since parts number their labels independently."""
    label_map = dict(label_map or {})
    per_part: list[dict[Any, Any]] = [{} for _ in parts]
    for key, target in label_map.items():
        if isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
            raise byo_error("label_map", f"{key!r}: with several parts, name their labels, not their numbers")
        hit = False
        for i, declared in enumerate(parts):
            if normalise_name(key) in {normalise_name(n) for n in declared.values() if n is not None}:
                per_part[i][key] = target
                hit = True
        if not hit:
            raise byo_error("label_map", f"no part has a label named {key!r}")
    return per_part
