"""Input normalisation shared by training and serving (numpy + Pillow only).

Console processing differs by vendor (look-up tables, edge enhancement, MONOCHROME1 vs 2,
bright or dark shutter outside the collimation). The model therefore sees a *rank*
(histogram-equalised) image: any monotonic look-up table gives the same input, so a
Philips MONOCHROME1 image, a GE MONOCHROME2 one and a real CR map onto one scale. The
image keeps its aspect ratio: it is scaled so its longer side is ``size`` and padded
(value 0) at the bottom/right; :class:`Frame` maps model pixels back to image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: below this spread (max - min of the stored values) an image is treated as blank
BLANK_SPREAD = 1e-3


@dataclass(frozen=True)
class Frame:
    """Where the image lies in the model grid: ``scale`` model px per image px, size in the grid."""

    shape: tuple[int, int]  # original (rows, cols)
    scale: float
    inner: tuple[int, int]  # (rows, cols) occupied in the model grid
    size: int


def to_mono2(pixels: np.ndarray, mono1: bool) -> np.ndarray:
    """Float image where more attenuation (bone) is brighter, whatever the photometric interpretation."""
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim == 3:  # RGB or a frame stack: take the first frame / the luminance
        a = a.mean(axis=-1) if a.shape[-1] in (3, 4) else a[0]
    return (float(a.max()) - a + float(a.min())) if mono1 else a


def resize(a: np.ndarray, shape: tuple[int, int], resample: str = "box") -> np.ndarray:
    """Float resize with Pillow (``box`` averages when shrinking, ``bilinear`` otherwise)."""
    from PIL import Image

    if tuple(a.shape) == tuple(shape):
        return a.astype(np.float32, copy=False)
    mode = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}[resample]
    if resample == "box" and (shape[0] > a.shape[0] or shape[1] > a.shape[1]):
        mode = Image.Resampling.BILINEAR
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((int(shape[1]), int(shape[0])), mode), dtype=np.float32)


def fit(shape: tuple[int, int], size: int) -> Frame:
    scale = size / max(shape)
    inner = (max(1, min(size, int(round(shape[0] * scale)))), max(1, min(size, int(round(shape[1] * scale)))))
    return Frame(shape=(int(shape[0]), int(shape[1])), scale=scale, inner=inner, size=size)


def equalise(a: np.ndarray) -> np.ndarray:
    """Rank transform to [0, 1] (ties share a rank): invariant to any monotonic look-up table."""
    flat = a.ravel()
    sorted_ = np.sort(flat)
    lo = np.searchsorted(sorted_, flat, side="left")
    hi = np.searchsorted(sorted_, flat, side="right")
    return (((lo + hi) * 0.5) / max(len(flat), 1)).astype(np.float32).reshape(a.shape)


def prepare(image: np.ndarray, size: int) -> tuple[np.ndarray, Frame]:
    """(size, size) float32 model input from a mono2 float image, and its :class:`Frame`."""
    frame = fit(image.shape[:2], size)
    small = resize(image, frame.inner, "box")
    out = np.zeros((size, size), np.float32)
    out[: frame.inner[0], : frame.inner[1]] = equalise(small)
    return out, frame


def is_blank(image: np.ndarray) -> bool:
    return bool(image.size == 0 or float(image.max()) - float(image.min()) <= BLANK_SPREAD)
