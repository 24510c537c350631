"""Per-structure statistics of a label map: volume, HU mean/SD, z-extent, centroid.

Two passes, each the fastest tool for its part (300 slices of 512², 23 structures: ~2 s on
two loaded cores, where one numpy pass per quantity took ~3.6 s):

* voxel counts and HU sums / squared sums per label: ``np.bincount`` over chunks of slices
  (bounded memory: never a float64 copy of the whole volume);
* centroids and index bounding boxes: ITK's ``LabelShapeStatisticsImageFilter`` (0.2 s),
  run once on the label map and once on its foreground (the ``body`` structure: the union
  of every foreground label, i.e. the body outline). ITK's own intensity statistics filter
  was far slower (8-11 s) and is not used.

Coordinates are DICOM patient coordinates (LPS, mm, +z towards the head) of voxel
*centres*: ``z_min_mm`` / ``z_max_mm`` are the z of the lowest and highest voxel centre
of the structure (on a grid whose slices are not perpendicular to z, computed voxel by voxel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from radqc.models.registry import LabelSet

#: Voxels per chunk of slices (bounds the temporary arrays to ~8 bytes x this).
CHUNK_VOXELS = 4_000_000
#: Label value whose reported structure is the union of all foreground labels.
BODY_NAME = "body"


@dataclass(frozen=True)
class Geometry:
    """Index -> patient coordinates of a SimpleITK grid (numpy order is z, y, x)."""

    origin: np.ndarray  # (3,)
    spacing: np.ndarray  # (sx, sy, sz)
    direction: np.ndarray  # 3x3, columns are the i, j, k axes
    size: tuple[int, int, int]  # (nx, ny, nz)

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(np.asarray(image.GetOrigin(), float), np.asarray(image.GetSpacing(), float),
                   np.asarray(image.GetDirection(), float).reshape(3, 3), tuple(image.GetSize()))  # type: ignore[arg-type]

    def to_patient(self, ijk: np.ndarray) -> np.ndarray:
        """Patient coordinates of continuous indices ``(..., 3)`` in (i, j, k) = (x, y, z) order."""
        return self.origin + (np.asarray(ijk, float) * self.spacing) @ self.direction.T

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def slice_z_mm(self) -> np.ndarray:
        """Patient z of the centre pixel of every slice (index k order)."""
        nx, ny, nz = self.size
        ijk = np.column_stack([np.full(nz, (nx - 1) / 2), np.full(nz, (ny - 1) / 2), np.arange(nz)])
        return self.to_patient(ijk)[:, 2]


@dataclass
class LabelSums:
    """Per-label voxel counts and HU sums (index = label value)."""

    count: np.ndarray  # (L,)
    hu_sum: np.ndarray | None
    hu_sq: np.ndarray | None


def label_sums(labels: np.ndarray, hu: np.ndarray | None = None, n_labels: int | None = None) -> LabelSums:
    """Counts (and HU sums when ``hu``, same shape, is given) of a (z, y, x) label map."""
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3-D (z, y, x), got shape {labels.shape}")
    if hu is not None and hu.shape != labels.shape:
        raise ValueError(f"HU volume shape {hu.shape} differs from labels {labels.shape}")
    nz, ny, nx = labels.shape
    top = int(labels.max()) if labels.size else 0
    n = max(top + 1, int(n_labels or 0))
    count = np.zeros(n, np.int64)
    hu_sum = np.zeros(n) if hu is not None else None
    hu_sq = np.zeros(n) if hu is not None else None
    step = max(1, CHUNK_VOXELS // max(1, ny * nx))
    for k0 in range(0, nz, step):
        flat = labels[k0 : k0 + step].reshape(-1)
        count += np.bincount(flat, minlength=n)
        if hu is not None and hu_sum is not None and hu_sq is not None:
            values = hu[k0 : k0 + step].reshape(-1).astype(np.float64)
            hu_sum += np.bincount(flat, weights=values, minlength=n)
            np.multiply(values, values, out=values)
            hu_sq += np.bincount(flat, weights=values, minlength=n)
    return LabelSums(count, hu_sum, hu_sq)


@dataclass(frozen=True)
class Shape:
    """Centroid (patient mm) and index bounding box (i0, j0, k0, i1, j1, k1) of one label."""

    centroid: tuple[float, float, float]
    box: tuple[int, int, int, int, int, int]


def label_shapes(labels: np.ndarray, geometry: Geometry) -> tuple[dict[int, Shape], Shape | None]:
    """Shapes of every label present, and of the foreground as a whole (None when empty)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(labels if labels.dtype in (np.uint8, np.uint16) else labels.astype(np.uint16))
    image.SetOrigin(tuple(float(v) for v in geometry.origin))
    image.SetSpacing(tuple(float(v) for v in geometry.spacing))
    image.SetDirection(tuple(float(v) for v in geometry.direction.reshape(-1)))
    f = sitk.LabelShapeStatisticsImageFilter()
    f.SetComputePerimeter(False)
    f.SetBackgroundValue(0)

    def shapes_of(img: sitk.Image) -> dict[int, Shape]:
        f.Execute(img)
        out = {}
        for v in f.GetLabels():
            i0, j0, k0, si, sj, sk = f.GetBoundingBox(v)
            out[int(v)] = Shape(tuple(f.GetCentroid(v)), (i0, j0, k0, i0 + si - 1, j0 + sj - 1, k0 + sk - 1))  # type: ignore[arg-type]
        return out

    per_label = shapes_of(image)
    foreground = shapes_of(sitk.Cast(image > 0, sitk.sitkUInt8)).get(1) if per_label else None
    return per_label, foreground


def _z_extremes(labels: np.ndarray, geometry: Geometry, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-label (min, max) patient z of voxel centres, for grids whose slices are not
    perpendicular to z (then z depends on the in-plane position too). Index 0 holds the
    union of the foreground labels. Slower than the axial path; real CT volumes take that."""
    from scipy import ndimage

    nz, ny, nx = labels.shape
    a, b, c = (geometry.direction[2] * geometry.spacing).tolist()
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    index = np.arange(1, n)
    step = max(1, CHUNK_VOXELS // max(1, ny * nx))
    plane = geometry.origin[2] + a * np.arange(nx)[None, :] + b * np.arange(ny)[:, None]
    for k0 in range(0, nz, step):
        chunk = labels[k0 : k0 + step]
        z = plane[None] + c * np.arange(k0, k0 + chunk.shape[0])[:, None, None]
        lo[1:] = np.minimum(lo[1:], np.asarray(ndimage.minimum(z, chunk, index), float))
        hi[1:] = np.maximum(hi[1:], np.asarray(ndimage.maximum(z, chunk, index), float))
    finite = np.isfinite(lo[1:])
    if finite.any():
        lo[0], hi[0] = lo[1:][finite].min(), hi[1:][finite].max()
    return lo, hi


def _stats(name: str, label: int, count: int, s_hu: float | None, s_sq: float | None, shape: Shape,
           z_range: tuple[float, float] | None, geometry: Geometry, extra: dict[str, Any]) -> dict[str, Any]:
    if z_range is None:  # slices perpendicular to z: the in-plane position does not change z
        k0, k1 = shape.box[2], shape.box[5]
        z = geometry.to_patient(np.array([[0, 0, k0], [0, 0, k1]], float))[:, 2]
    else:
        z = np.asarray(z_range, float)
    mean = sd = None
    if s_hu is not None and s_sq is not None:
        mean = s_hu / count
        sd = math.sqrt(max(s_sq / count - mean * mean, 0.0))
    return {
        "name": name,
        "label": label,
        **extra,
        "voxels": int(count),
        "volume_ml": round(count * geometry.voxel_ml, 4),
        "mean_hu": None if mean is None else round(mean, 2),
        "sd_hu": None if sd is None else round(sd, 2),
        "z_min_mm": round(float(z.min()), 2),
        "z_max_mm": round(float(z.max()), 2),
        "centroid_mm": [round(float(v), 2) for v in shape.centroid],
    }


def structure_statistics(
    labels: np.ndarray, geometry: Geometry, label_set: LabelSet, hu: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Statistics of every structure of ``label_set`` present in ``labels`` (z, y, x).

    Returns (structures in label-set order, label values present that the set does not
    know). The ``body`` structure is the union of all foreground labels (its own label
    value is "other tissue inside the patient")."""
    sums = label_sums(labels, hu, n_labels=label_set.max_label + 1)
    n = sums.count.size
    shapes, foreground = label_shapes(labels, geometry)
    tilted = bool(np.any(np.abs(geometry.direction[2, :2]) > 1e-6))
    extremes = _z_extremes(labels, geometry, n) if tilted else None

    def z_range(v: int) -> tuple[float, float] | None:
        return None if extremes is None else (float(extremes[0][v]), float(extremes[1][v]))

    by_label = label_set.by_label()
    unknown = [int(v) for v in np.flatnonzero(sums.count) if v and v not in by_label]
    out: list[dict[str, Any]] = []
    for structure in label_set.structures:
        v = structure.label
        extra = {"zh": structure.zh, "snomed": structure.snomed}
        if structure.name == BODY_NAME:
            count = int(sums.count[1:].sum())
            if not count or foreground is None:
                continue
            out.append(_stats(
                structure.name, v, count,
                float(sums.hu_sum[1:].sum()) if sums.hu_sum is not None else None,
                float(sums.hu_sq[1:].sum()) if sums.hu_sq is not None else None,
                foreground, z_range(0), geometry, {**extra, "union_of_foreground": True},
            ))
            continue
        if v >= n or not sums.count[v]:
            continue
        out.append(_stats(
            structure.name, v, int(sums.count[v]),
            float(sums.hu_sum[v]) if sums.hu_sum is not None else None,
            float(sums.hu_sq[v]) if sums.hu_sq is not None else None,
            shapes[v], z_range(v), geometry, extra,
        ))
    return out, unknown
