"""Slice stacks for the 2.5-D CT organ network (no torch: shared by training and serving).

The network sees ``CONTEXT`` neighbouring 3-mm axial slices as channels, centre-cropped or
padded to ``SIZE``² pixels (480 mm: wider than any body field of view), and labels the
centre slice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CONTEXT = 5  # slices per input (the centre one is labelled)
SIZE = 160  # in-plane pixels at 3 mm


def slab(volume: np.ndarray, k: int, pad_value: float) -> np.ndarray:
    """``CONTEXT`` slices centred on ``k`` (edge slices repeated), shape (CONTEXT, y, x)."""
    half = CONTEXT // 2
    idx = np.clip(np.arange(k - half, k + half + 1), 0, volume.shape[0] - 1)
    return volume[idx]


def fit_plane(a: np.ndarray, size: int, value: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre-crop or pad the last two axes to ``size``; returns the array and the (y, x) offsets used."""
    out = a
    offs = []
    for axis in (-2, -1):
        n = out.shape[axis]
        if n > size:
            lo = (n - size) // 2
            out = np.take(out, np.arange(lo, lo + size), axis=axis)
            offs.append(-lo)
        else:
            lo = (size - n) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (lo, size - n - lo)
            out = np.pad(out, pad, constant_values=value)
            offs.append(lo)
    return out, (offs[0], offs[1])


def predict_volume(volume: np.ndarray, predict: Any, n_classes: int, batch: int = 16) -> np.ndarray:
    """Softmax probabilities (C, z, y, x) of a normalised 3-mm volume, slice by slice."""
    z, y, x = volume.shape
    out = np.zeros((n_classes, z, y, x), np.float32)
    for k0 in range(0, z, batch):
        ks = range(k0, min(z, k0 + batch))
        xs = []
        for k in ks:
            s, _ = fit_plane(slab(volume, k, -1.0), SIZE, -1.0)
            xs.append(s)
        logits = predict(np.stack(xs).astype(np.float32))
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        for j, k in enumerate(ks):
            back, _ = fit_plane(p[j], max(y, x, SIZE), 0.0)  # undo: pad/crop to the original plane
            ylo, xlo = (back.shape[1] - y) // 2, (back.shape[2] - x) // 2
            out[:, k] = back[:, ylo:ylo + y, xlo:xlo + x]
    return out
