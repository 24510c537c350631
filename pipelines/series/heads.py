"""The output heads of the learned header classifier: one softmax per label field.

Index 0 of every head is ``None`` (not applicable / unknown), so the model can say that a
field does not apply (no MR sequence for a CT series, no phase for a VR rendering) instead
of being forced to pick a value. The value lists are public vocabularies
(:mod:`radqc.pipelines.series.types`) plus the regions and views seen in training.
"""

from __future__ import annotations

from typing import Any

from radqc.pipelines.series.types import (
    DERIVED_TYPES,
    KERNEL_CLASSES,
    PHASES,
    PLANES,
    ROLES,
    SEQUENCES,
    THICKNESS_CLASSES,
)

REGIONS = ("head", "neck", "chest", "abdomen", "pelvis", "cervical_spine", "thoracic_spine", "lumbar_spine", "knee",
           "shoulder", "hip", "hand", "wrist", "elbow", "ankle", "foot", "breast", "legs")

HEADS: dict[str, tuple[Any, ...]] = {
    "role": (None, *[r for r in ROLES if r != "unknown"]),
    "derived_type": (None, *DERIVED_TYPES),
    "plane": (None, *PLANES),
    "sequence": (None, *SEQUENCES),
    "phase": (None, *PHASES),
    "kernel_class": (None, *KERNEL_CLASSES),
    "thickness_class": (None, *THICKNESS_CLASSES),
    "view": (None, "PA", "AP", "LAT", "OBL", "CC", "MLO"),
    "region": (None, *REGIONS),
}


def slices() -> dict[str, tuple[int, int]]:
    """Column range of each head in the concatenated output."""
    out, start = {}, 0
    for name, values in HEADS.items():
        out[name] = (start, start + len(values))
        start += len(values)
    return out


def target_index(field: str, value: Any) -> int:
    """Index of ``value`` in the head (unknown values -> 0 = None)."""
    values = HEADS[field]
    return values.index(value) if value in values else 0
