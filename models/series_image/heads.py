"""The network's output heads: (group, field, values), read from ``heads.yaml`` or a registry entry.

All heads' logits are concatenated in one ONNX output; a :class:`Head` knows its slice.
Kept as data so adding a value (a new derived type, a new radiograph region) is a table
edit plus a retrain, never a code change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HEADS_FILE = Path(__file__).with_name("heads.yaml")


@dataclass(frozen=True)
class Head:
    """One softmax head: ``values[i]`` is the value of logit ``start + i``."""

    group: str
    field: str
    values: tuple[str | None, ...]
    start: int
    #: label field -> values: a null label on such a series is unknown (masked), not a class.
    null_unknown_when: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def target(self, label: dict[str, Any]) -> int | None:
        """Index of this head's value in ``label`` (a series' expected label), None to ignore."""
        v = label.get(self.field)
        if v is None and any(label.get(f) in vals for f, vals in self.null_unknown_when):
            return None
        return self.values.index(v) if v in self.values else None

    @property
    def stop(self) -> int:
        return self.start + len(self.values)


@dataclass(frozen=True)
class HeadTable:
    heads: tuple[Head, ...]
    modality_group: dict[str, str]

    @property
    def n_logits(self) -> int:
        return self.heads[-1].stop if self.heads else 0

    def group_of(self, modality: str | None) -> str | None:
        return self.modality_group.get(str(modality or "").upper())

    def for_group(self, group: str | None) -> list[Head]:
        return [h for h in self.heads if h.group == group]

    def to_dict(self) -> dict[str, Any]:
        """The registry form (``output.heads``), round-trips through :func:`table_from_dict`."""
        groups: dict[str, Any] = {}
        for h in self.heads:
            g = groups.setdefault(h.group, {"modalities": sorted(m for m, gg in self.modality_group.items()
                                                                 if gg == h.group), "fields": {}})
            g["fields"][h.field] = ({"values": list(h.values),
                                     "null_unknown_when": {f: list(v) for f, v in h.null_unknown_when}}
                                    if h.null_unknown_when else list(h.values))
        return {"groups": groups}


def table_from_dict(raw: dict[str, Any]) -> HeadTable:
    heads: list[Head] = []
    mod: dict[str, str] = {}
    start = 0
    for group, spec in (raw.get("groups") or {}).items():
        for m in spec.get("modalities") or []:
            mod[str(m).upper()] = str(group)
        for field, spec_f in (spec.get("fields") or {}).items():
            values = (spec_f.get("values") if isinstance(spec_f, dict) else spec_f) or []
            unknown = (spec_f.get("null_unknown_when") or {}) if isinstance(spec_f, dict) else {}
            vals = tuple(None if v is None else str(v) for v in values)
            when = tuple((str(f), tuple(str(x) for x in v)) for f, v in unknown.items())
            heads.append(Head(str(group), str(field), vals, start, when))
            start += len(vals)
    return HeadTable(tuple(heads), mod)


def load_heads(path: Path = HEADS_FILE) -> HeadTable:
    return table_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
