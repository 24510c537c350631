"""Anatomical plausibility of a label map, checked against the body-region slot's slice regions.

A segmentation network trained on the generator's bodies has never seen a head CT with
air-filled sinuses next to a head rest: it may call that air "lung". The body-region model
knows the slice is head. Each structure of the label set lists the regions it can lie in
(``regions`` in ``models/labels/ct_organs.yaml``); voxels of it on slices farther than
``margin_mm`` from any such region are relabelled ``body`` and reported, never silently.
The margin absorbs the region model's boundary error (median landmark error ~5 mm).
"""

from __future__ import annotations

import numpy as np

from radqc.models.registry import LabelSet

MARGIN_MM = 30.0


def distance_to_allowed(z_mm: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per slice, |z| distance (mm) to the nearest slice whose region is allowed (inf if none)."""
    if not allowed.any():
        return np.full(z_mm.shape, np.inf)
    za = np.sort(z_mm[allowed])
    pos = np.searchsorted(za, z_mm)
    left = np.abs(z_mm - za[np.clip(pos - 1, 0, len(za) - 1)])
    right = np.abs(za[np.clip(pos, 0, len(za) - 1)] - z_mm)
    return np.minimum(left, right)


def remove_implausible(labels: np.ndarray, regions: list[str], z_mm: np.ndarray, label_set: LabelSet,
                       margin_mm: float = MARGIN_MM) -> dict[str, int]:
    """Relabel, in place, voxels of structures on slices where they cannot lie.

    ``labels``: (slices, rows, columns) in the same slice order as ``regions`` and ``z_mm``.
    Returns {structure name: voxels relabelled} for every structure touched."""
    if len(regions) != labels.shape[0] or len(z_mm) != labels.shape[0]:
        raise ValueError("one region and one z per slice are needed")
    body = label_set.by_name()["body"].label
    region_arr = np.asarray(regions)
    removed: dict[str, int] = {}
    for s in label_set.structures:
        if not s.regions:
            continue
        far = distance_to_allowed(np.asarray(z_mm, float), np.isin(region_arr, s.regions)) > margin_mm
        if not far.any():
            continue
        block = labels[far]
        hit = block == s.label
        n = int(hit.sum())
        if n:
            block[hit] = body
            labels[far] = block
            removed[s.name] = n
    return removed
