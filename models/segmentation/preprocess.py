"""Geometry and intensity conventions shared by training and serving (no torch here).

The model works on an axis-aligned grid at a coarse isotropic spacing (3 mm by default),
in LPS with identity direction, covering the source image's physical extent. Training
resamples the generator's full-size CT onto that grid exactly as serving resamples a
hospital's series, so the network never sees a geometry path it was not trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

#: HU window of the network input; values outside are clipped (metal, air).
HU_MIN, HU_MAX = -1000.0, 1600.0


def normalise_hu(hu: np.ndarray) -> np.ndarray:
    """HU → float32 roughly in [-1, 1]; the same function at training and at serving."""
    x = np.clip(hu.astype(np.float32), HU_MIN, HU_MAX)
    return (x - (HU_MIN + HU_MAX) / 2) / ((HU_MAX - HU_MIN) / 2)


def model_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An empty axis-aligned reference image at ``spacing_mm`` covering ``image``'s extent."""
    import SimpleITK as sitk

    size = image.GetSize()
    corners = []
    for i in (0, size[0] - 1):
        for j in (0, size[1] - 1):
            for k in (0, size[2] - 1):
                corners.append(image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k))))
    c = np.asarray(corners)
    lo, hi = c.min(axis=0), c.max(axis=0)
    n = np.maximum(1, np.ceil((hi - lo) / spacing_mm).astype(int) + 1)
    ref = sitk.Image([int(v) for v in n], sitk.sitkUInt8)
    ref.SetSpacing((spacing_mm,) * 3)
    ref.SetOrigin(tuple(float(v) for v in lo))
    ref.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return ref


def resample_image_to(image: sitk.Image, ref: sitk.Image, default_hu: float = -1024.0) -> sitk.Image:
    """Anti-aliased linear resampling of a CT image onto ``ref`` (float32 HU).

    A Gaussian of sigma ~ half the target spacing along each axis that is being downsampled
    stands in for the partial-volume averaging of a thick reconstruction."""
    import SimpleITK as sitk

    src = sitk.Cast(image, sitk.sitkFloat32)
    target = ref.GetSpacing()[0]
    sigmas = [max(0.0, (target**2 - s**2)) ** 0.5 / 2.355 for s in src.GetSpacing()]
    for axis, sigma in enumerate(sigmas):  # axis by axis: axes already coarser than the target stay untouched
        if sigma > 0.1 and src.GetSize()[axis] >= 4:
            src = sitk.RecursiveGaussian(src, sigma, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)
    return sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, default_hu, sitk.sitkFloat32)


def resample_labels_to(labels: sitk.Image, ref: sitk.Image) -> sitk.Image:
    import SimpleITK as sitk

    return sitk.Resample(labels, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
