"""Structure ids, tissue properties and regions, loaded from ``anatomy.yaml``.

A phantom voxel holds a *material*: a (structure, tissue) pair, because one structure is
made of several tissues (a vertebra: cortical shell + cancellous core) and one tissue fills
several structures. Look-up tables from material to label id, to HU per contrast phase
and to MR properties are built per phantom, so rendering is one ``np.take``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
PHASES = ("native", "arterial", "portal", "delayed")


@lru_cache(maxsize=1)
def anatomy() -> dict[str, Any]:
    return yaml.safe_load((HERE / "anatomy.yaml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def structure_ids() -> dict[str, int]:
    return {s["name"]: int(s["id"]) for s in anatomy()["structures"]}


@lru_cache(maxsize=1)
def structure_names() -> dict[int, str]:
    return {v: k for k, v in structure_ids().items()}


def tissues() -> dict[str, dict[str, Any]]:
    return anatomy()["tissues"]


@dataclass
class Materials:
    """Registry of (structure, tissue) pairs used by one phantom; id 0 is outside air."""

    pairs: list[tuple[str, str]] = field(default_factory=lambda: [("", "air")])
    index: dict[tuple[str, str], int] = field(default_factory=dict)
    #: per-material HU offset (patient-specific organ density jitter)
    hu_offset: dict[int, float] = field(default_factory=dict)

    def __call__(self, structure: str, tissue: str) -> int:
        key = (structure, tissue)
        if key not in self.index:
            if structure not in structure_ids():
                raise ValueError(f"unknown structure {structure!r}; add it to anatomy.yaml")
            if tissue not in tissues():
                raise ValueError(f"unknown tissue {tissue!r}; add it to anatomy.yaml")
            if len(self.pairs) >= 255:
                raise ValueError("more than 255 materials in one phantom")
            self.index[key] = len(self.pairs)
            self.pairs.append(key)
        return self.index[key]

    def id_of(self, structure: str, tissue: str) -> int | None:
        return self.index.get((structure, tissue))

    def label_lut(self) -> np.ndarray:
        ids = structure_ids()
        lut = np.zeros(256, dtype=np.uint8)
        for i, (structure, _) in enumerate(self.pairs):
            lut[i] = ids.get(structure, 0)
        return lut

    def hu_lut(self, phase: str, enhancement: float = 1.0, unenhanced: bool = False) -> np.ndarray:
        """HU per material for a contrast phase; ``enhancement`` scales the rise over native."""
        col = PHASES.index(phase) if phase in PHASES else 0
        lut = np.full(256, -1000, dtype=np.float32)
        for i, (_, tissue) in enumerate(self.pairs):
            hu = tissues()[tissue]["hu"]
            native = float(hu[0])
            value = native if unenhanced else native + (float(hu[col]) - native) * enhancement
            lut[i] = value + self.hu_offset.get(i, 0.0)
        return lut

    def tissue_of(self) -> list[str]:
        return [t for _, t in self.pairs]

    def structures_of(self, names: set[str]) -> list[int]:
        return [i for i, (s, _) in enumerate(self.pairs) if s in names]

    def tissue_ids(self, tissue_names: set[str]) -> list[int]:
        return [i for i, (_, t) in enumerate(self.pairs) if t in tissue_names]


def mr_lut(materials: Materials, key: str, field_t: float = 1.5, default: float = 0.0) -> np.ndarray:
    """Per-material MR property (pd, t1, t2, adc, gd) at a field strength."""
    scale = anatomy()["field_strength_scaling"].get(f"{field_t:.1f}", {"t1": 1.0, "t2": 1.0})
    lut = np.full(256, default, dtype=np.float32)
    for i, tissue in enumerate(materials.tissue_of()):
        props = tissues()[tissue].get("mr", {})
        value = float(props.get(key, default))
        if key in scale:
            value *= float(scale[key])
        lut[i] = value
    return lut


def mr_flag_lut(materials: Materials, key: str) -> np.ndarray:
    lut = np.zeros(256, dtype=bool)
    for i, tissue in enumerate(materials.tissue_of()):
        lut[i] = bool(tissues()[tissue].get("mr", {}).get(key, False))
    return lut


def region_of_depth(landmarks: dict[str, float], depth: np.ndarray) -> list[str]:
    """Body-part label per slice from the landmark table (``regions`` in anatomy.yaml)."""
    out = np.full(len(depth), "", dtype=object)
    regions = anatomy()["regions"]
    for i, reg in enumerate(regions):
        lo = landmarks.get(reg["from"], -1e9) if i else -1e9
        hi = landmarks.get(reg["to"], 1e9) if i < len(regions) - 1 else 1e9
        out[(depth >= lo) & (depth < hi)] = reg["name"]
    return [str(v) for v in out]
