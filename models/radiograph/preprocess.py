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
#: a border row/column whose values spread over at most this fraction of the image's range is
#: constant fill (an electronic shutter, a console's padding, the real-derived shift variants'
#: background fill), not exposed detector. Real exposure and the synthetic collimated border both
#: carry quantum noise far above it: no DX/CR view of validation sets 8275-8277 (187 views) has such
#: a line, and the analyser's output on every chest view there is unchanged (compared bit for bit).
FLAT_FILL_SPREAD = 1e-3


@dataclass(frozen=True)
class Frame:
    """Where the image lies in the model grid: ``scale`` model px per image px, size in the grid."""

    shape: tuple[int, int]  # original (rows, cols)
    scale: float
    inner: tuple[int, int]  # (rows, cols) occupied in the model grid
    size: int
    #: (r0, r1, c0, c1) in the model grid of the image inside its constant-fill border, when it has one
    part: tuple[int, int, int, int] | None = None


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


def flat_fill_box(image: np.ndarray, tol: float = FLAT_FILL_SPREAD) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1), half-open: the image without its constant-fill border.

    Why: padding changes the network's input (the rank transform gives the fill a large share
    of the scale, and the anatomy shrinks in the 256 grid), and on the padded real CR the
    network's lungs spread into the fill (230-380 px past the real lungs, docs/image-qc-accuracy.md).
    The fill holds no anatomy, so the analyser reads the image inside it and puts the masks back
    in the full frame (the detector centre, hence centring, is still the full image's). Lines are
    peeled from each side while the line is constant to ``tol`` of the image's value range."""
    a = np.asarray(image, dtype=np.float32)
    nr, nc = a.shape[:2]
    spread = float(a.max()) - float(a.min())
    if spread <= BLANK_SPREAD:
        return 0, nr, 0, nc
    flat_rows = np.ptp(a, axis=1) <= tol * spread
    flat_cols = np.ptp(a, axis=0) <= tol * spread
    r0 = int(np.argmin(flat_rows)) if not flat_rows.all() else nr
    r1 = nr - int(np.argmin(flat_rows[::-1])) if not flat_rows.all() else nr
    c0 = int(np.argmin(flat_cols)) if not flat_cols.all() else nc
    c1 = nc - int(np.argmin(flat_cols[::-1])) if not flat_cols.all() else nc
    if r1 <= r0 or c1 <= c0:
        return 0, nr, 0, nc
    return r0, r1, c0, c1


def is_blank(image: np.ndarray) -> bool:
    return bool(image.size == 0 or float(image.max()) - float(image.min()) <= BLANK_SPREAD)
