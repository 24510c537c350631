"""Image artifacts applied to rendered slices, and the measurements that label them.

Each function takes its already-drawn parameters (the drawing happens in the renderer,
from the exam's seeded streams) and returns the artifact; the renderer records it with
:meth:`ExamContext.record`. Measurements (body centroid, noise SD, edge sharpness) are
computed on the pixels that are actually written.
"""

from __future__ import annotations

import math

import numpy as np

from .image_ops import erode2d

F = np.float32


def streak_pattern(shape: tuple[int, int], centres: list[tuple[float, float]], amplitude: float, rng: np.random.Generator, n_lines: int = 14, width_px: float = 1.2) -> np.ndarray:
    """Metal streaks: bright/dark lines through each metal centre plus a dark band between pairs."""
    ny, nx = shape
    yy = np.arange(ny, dtype=F).reshape(-1, 1)
    xx = np.arange(nx, dtype=F).reshape(1, -1)
    out = np.zeros(shape, dtype=F)
    for cy, cx in centres:
        for _ in range(n_lines):
            theta = float(rng.uniform(0, math.pi))
            dist = np.abs((xx - cx) * F(math.sin(theta)) - (yy - cy) * F(math.cos(theta)))
            along = np.hypot(xx - cx, yy - cy)
            amp = F(amplitude * rng.uniform(0.3, 1.0) * (1 if rng.random() < 0.45 else -1))
            out += amp * np.exp(-0.5 * (dist / F(width_px)) ** 2) * np.exp(-along / F(max(nx, ny) * 0.6))
    if len(centres) >= 2:
        (y0, x0), (y1, x1) = centres[0], centres[1]
        theta = math.atan2(y1 - y0, x1 - x0)
        dist = np.abs((xx - x0) * F(math.sin(theta)) - (yy - y0) * F(math.cos(theta)))
        t = ((xx - x0) * F(math.cos(theta)) + (yy - y0) * F(math.sin(theta))) / F(max(math.hypot(x1 - x0, y1 - y0), 1))
        band = (t > 0) & (t < 1)
        out -= F(amplitude * 0.8) * np.exp(-0.5 * (dist / F(width_px * 4)) ** 2) * band
    return out


def motion_double(img: np.ndarray, shift_px: tuple[float, float], weight: float) -> np.ndarray:
    """Edge doubling: a ghost of the slice displaced by the motion during the rotation."""
    dy, dx = int(round(shift_px[0])), int(round(shift_px[1]))
    ghost = np.roll(img, (dy, dx), axis=(0, 1))
    return (1 - F(weight)) * img + F(weight) * ghost


def motion_streaks(shape: tuple[int, int], rng: np.random.Generator, amplitude: float, n: int = 3) -> np.ndarray:
    """Faint straight streaks tangent to moving edges (CT motion during the gantry rotation)."""
    ny, nx = shape
    yy = np.arange(ny, dtype=F).reshape(-1, 1)
    xx = np.arange(nx, dtype=F).reshape(1, -1)
    out = np.zeros(shape, dtype=F)
    for _ in range(n):
        cy, cx = float(rng.uniform(0.3, 0.7) * ny), float(rng.uniform(0.3, 0.7) * nx)
        theta = float(rng.uniform(0, math.pi))
        dist = np.abs((xx - cx) * F(math.sin(theta)) - (yy - cy) * F(math.cos(theta)))
        out += F(amplitude * (1 if rng.random() < 0.5 else -1)) * np.exp(-0.5 * (dist / F(1.0)) ** 2)
    return out


def mr_ghosting(img: np.ndarray, rng: np.random.Generator, strength: float, axis: int = 0, period: int | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """Phase-encode ghosting: periodic phase errors on k-space lines replicate the object.

    ``axis`` is the phase-encode direction (rows = 0). Returns the ghosted magnitude image
    and the measured ghost-to-signal ratio outside the object.
    """
    k = np.fft.fft2(img.astype(np.complex64))
    n = img.shape[axis]
    period = period or int(rng.integers(3, 7))
    lines = np.arange(n)
    phase = strength * np.pi * (lines % period == 0).astype(F) * F(rng.uniform(0.6, 1.0))
    phase += F(strength) * F(0.4) * np.sin(2 * np.pi * lines / period + rng.uniform(0, 6.28)).astype(F)
    shape = [1, 1]
    shape[axis] = n
    k *= np.exp(1j * phase.reshape(shape)).astype(np.complex64)
    out = np.abs(np.fft.ifft2(k)).astype(F)
    return out, {"period_lines": float(period), "phase_error_rad": float(strength * np.pi)}


def body_centroid_mm(mask: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Centroid (x, y) in patient mm of a 3-D (or 2-D) body mask on a grid with coordinates x, y."""
    if mask.ndim == 2:
        mask = mask[None]
    counts_y = mask.sum(axis=(0, 2)).astype(np.float64)
    counts_x = mask.sum(axis=(0, 1)).astype(np.float64)
    total = counts_x.sum()
    if total == 0:
        return None
    return float((counts_x * x).sum() / total), float((counts_y * y).sum() / total)


def roi_sd(pixels_hu: np.ndarray, mask: np.ndarray, erode_px: int = 2) -> tuple[float, int]:
    """Standard deviation inside an eroded ROI (homogeneous tissue), and the pixel count."""
    roi = erode2d(mask, erode_px) if erode_px else mask
    n = int(roi.sum())
    if n < 8:
        return float("nan"), n
    return float(pixels_hu[roi].std()), n


def edge_sharpness(img: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude on the mask boundary divided by the contrast across it.

    Roughly the inverse edge width in pixels: a blurred image scores lower. Used to label
    the sharpness dimension on the same scale for normal and blurred exams.
    """
    m = mask.astype(bool)
    inner = erode2d(m, 1)
    boundary = m & ~inner
    if boundary.sum() < 8:
        return float("nan")
    gy, gx = np.gradient(img.astype(F))
    grad = np.hypot(gx, gy)
    far_in = erode2d(m, 4)
    outside = ~m
    outside_far = erode2d(outside, 4)
    if far_in.sum() == 0 or outside_far.sum() == 0:
        return float("nan")
    contrast = abs(float(np.median(img[far_in])) - float(np.median(img[outside_far])))
    if contrast < 1e-3:
        return float("nan")
    ring = boundary | (m & ~erode2d(m, 2)) | (~m & ~erode2d(outside, 2))
    return float(np.percentile(grad[ring], 90) / contrast)
