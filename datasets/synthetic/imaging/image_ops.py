"""Pixel operations shared by CT, MR and radiographs: blur, noise texture, erosion, text.

All work on float32 2-D or 3-D arrays with numpy only (no scipy on the target machines):
separable binomial/Gaussian filters by shifted sums and FFT-shaped noise fields. Noise is
drawn once into a small bank of correlated fields per series and each slice takes a
randomly shifted one, which keeps a 300-slice series cheap while neighbouring slices
still differ.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

F = np.float32


def gaussian_kernel(sigma_px: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma_px)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma_px, 1e-3)) ** 2)
    return (k / k.sum()).astype(F)


def convolve_axis(a: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """1-D convolution along ``axis`` with edge replication, by shifted sums (small kernels)."""
    r = len(kernel) // 2
    if r == 0:
        return a.astype(F, copy=True)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="edge")
    n = a.shape[axis]
    out = np.zeros(a.shape, dtype=F)
    for i, w in enumerate(kernel):
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(i, i + n)
        out += F(w) * p[tuple(sl)]
    return out


def binomial_pass(a: np.ndarray, axis: int) -> np.ndarray:
    """One [1, 2, 1] / 4 pass along ``axis`` (variance 0.5 px^2), edges replicated."""
    out = a * F(2)
    n = a.shape[axis]
    if n < 2:
        return a.copy()

    def sl(s: slice) -> tuple[slice, ...]:
        idx = [slice(None)] * a.ndim
        idx[axis] = s
        return tuple(idx)

    out[sl(slice(1, None))] += a[sl(slice(0, -1))]
    out[sl(slice(0, 1))] += a[sl(slice(0, 1))]
    out[sl(slice(0, -1))] += a[sl(slice(1, None))]
    out[sl(slice(-1, None))] += a[sl(slice(-1, None))]
    out *= F(0.25)
    return out


def blur2d(a: np.ndarray, sigma_px: float | tuple[float, float]) -> np.ndarray:
    """Gaussian blur over the last two axes (in-plane).

    Small sigmas (the common kernel blur, ~1 px) use repeated binomial passes, which are
    several times cheaper than a sampled Gaussian; larger ones a sampled Gaussian kernel.
    """
    sy, sx = (sigma_px, sigma_px) if np.isscalar(sigma_px) else sigma_px  # type: ignore[misc]
    out = a.astype(F, copy=True)
    for axis, sigma in ((a.ndim - 2, float(sy or 0)), (a.ndim - 1, float(sx or 0))):
        if sigma <= 0.2:
            continue
        passes = int(round(2 * sigma * sigma))
        if passes <= 8:
            for _ in range(max(1, passes)):
                out = binomial_pass(out, axis)
        elif out.ndim == 2 and out.size > 250_000:
            return fft_blur2d(out, max(float(sy or 0), float(sx or 0)))  # large sigma on a large image
        else:
            out = convolve_axis(out, gaussian_kernel(sigma), axis)
    return out


def fft_blur2d(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of 2-D images via FFT (any sigma, any size)."""
    ny, nx = a.shape[-2:]
    fy = np.fft.fftfreq(ny).reshape(-1, 1)
    fx = np.fft.rfftfreq(nx).reshape(1, -1)
    g = np.exp(-2 * (math.pi * sigma_px) ** 2 * (fx**2 + fy**2)).astype(F)
    return np.fft.irfft2(np.fft.rfft2(a) * g, s=(ny, nx)).astype(F)


def noise_bank(rng: np.random.Generator, shape: tuple[int, int], n: int, peak: float, width: float) -> np.ndarray:
    """``n`` unit-SD correlated noise fields with a ring-shaped noise power spectrum.

    ``peak`` (cycles/pixel) sets the texture grain: a soft CT kernel peaks low (~0.08), a
    sharp lung/bone kernel high (~0.25); this is the domain randomisation of noise texture.
    """
    ny, nx = shape
    fy = np.fft.fftfreq(ny).reshape(-1, 1)
    fx = np.fft.rfftfreq(nx).reshape(1, -1)
    f = np.sqrt(fx**2 + fy**2)
    nps = (f / max(peak, 1e-3)) * np.exp(-0.5 * ((f - peak) / max(width, 1e-3)) ** 2) + 0.05
    nps[0, 0] = 0
    white = rng.standard_normal((n, ny, nx), dtype=F)
    fields = np.fft.irfft2(np.fft.rfft2(white) * np.sqrt(nps).astype(F), s=(ny, nx)).astype(F)
    fields /= fields.std(axis=(1, 2), keepdims=True) + F(1e-6)
    return fields


class NoiseSource:
    """Per-slice correlated noise from a bank: each call draws a bank field and a shift."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], peak: float, width: float, bank: int = 6) -> None:
        self.fields = noise_bank(rng, shape, bank, peak, width)
        self.rng = rng

    def next(self) -> np.ndarray:
        return self.draw(self.rng)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One field from the bank, shifted and flipped by ``rng`` (a per-image stream)."""
        k = int(rng.integers(len(self.fields)))
        dy, dx = (int(v) for v in rng.integers(0, self.fields.shape[1:], size=2))
        out = np.roll(self.fields[k], (dy, dx), axis=(0, 1))
        if rng.random() < 0.5:
            out = out[::-1]
        return out

    def volume(self, n: int) -> np.ndarray:
        return np.stack([self.next() for _ in range(n)]) if n else np.zeros((0, *self.fields.shape[1:]), F)


def erode2d(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion of the last two axes by a (2r+1)^2 square, via shifted ANDs."""
    out = mask.copy()
    for axis in (mask.ndim - 2, mask.ndim - 1):
        cur = out.copy()
        for s in range(1, r + 1):
            sl_a = [slice(None)] * mask.ndim
            sl_b = [slice(None)] * mask.ndim
            sl_a[axis], sl_b[axis] = slice(s, None), slice(None, -s)
            shifted = np.zeros_like(out)
            shifted[tuple(sl_a)] = out[tuple(sl_b)]
            cur &= shifted
            shifted = np.zeros_like(out)
            shifted[tuple(sl_b)] = out[tuple(sl_a)]
            cur &= shifted
        out = cur
    return out


def centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(row, col) centroid of a 2-D mask, or None when empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return float(ys.mean()), float(xs.mean())


# ------------------------------------------------------------------------------------ text


# The renderer burns text only with the two font subsets in ``fonts/`` (DejaVu Sans Bold for
# Latin text, Droid Sans Fallback for lines with Chinese characters), never with whatever the
# machine has installed: the first system font found used to decide the glyphs, and installing
# fonts-droid-fallback (2026-11-23 16:28) changed the burned-in 立位/卧位 and Chinese names of
# every radiograph, so one seed rendered different pixels before and after. The layout engine is
# pinned too (Raqm, i.e. kerning by HarfBuzz; the basic engine spaces "AP" or "LAT" differently).
FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT_FILES = {False: FONT_DIR / "radqc-latin.ttf", True: FONT_DIR / "radqc-cjk.ttf"}


def _has_cjk(text: str) -> bool:
    return any(ord(c) > 0x2E80 for c in text)


@lru_cache(maxsize=32)
def _font(size: int, cjk: bool = False):  # type: ignore[no-untyped-def]
    """The bundled TrueType font for ``size`` (CJK-capable when needed) and its file name.

    A missing font file is an error, not a reason to fall back to another font: a silent
    fallback is exactly what made renders depend on the machine.
    """
    import warnings

    from PIL import ImageFont, features

    path = FONT_FILES[bool(cjk)]
    if not path.exists():
        raise FileNotFoundError(f"synthetic renderer font missing: {path} (see fonts/build_fonts.py)")
    layout = ImageFont.Layout.RAQM
    if not features.check_feature("raqm"):
        warnings.warn("Pillow has no Raqm layout (libfribidi missing?): burned-in text is laid out by the basic engine and its pixels differ from reference renders", RuntimeWarning, stacklevel=2)
        layout = ImageFont.Layout.BASIC
    return ImageFont.truetype(str(path), size, layout_engine=layout), path.name


@lru_cache(maxsize=256)
def text_mask(text: str, size: int) -> np.ndarray:
    """A boolean bitmap of ``text`` (read-only: it is cached and shared between calls)."""
    from PIL import Image, ImageDraw

    font, _ = _font(max(6, size), _has_cjk(text))
    left, top, right, bottom = font.getbbox(text)
    w, h = max(1, right - left + 2), max(1, bottom - top + 2)
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).text((1 - left, 1 - top), text, fill=255, font=font)
    mask = np.asarray(img) > 96
    mask.flags.writeable = False
    return mask


def font_name(cjk: bool = True) -> str:
    return _font(12, cjk)[1]


def burn_text(img: np.ndarray, lines: list[str], value: float, corner: str = "tl", size: int | None = None) -> list[dict[str, object]]:
    """Draw text lines into ``img`` in place; return each line's bounding box (row, col, h, w)."""
    ny, nx = img.shape
    size = size or max(7, ny // 28)
    boxes = []
    y = 2 if corner[0] == "t" else ny - 2
    for line in lines if corner[0] == "t" else list(reversed(lines)):
        m = text_mask(line, size)
        h, w = m.shape
        h, w = min(h, ny - 2), min(w, nx - 2)
        m = m[:h, :w]
        x = 2 if corner[1] == "l" else nx - w - 2
        r0 = y if corner[0] == "t" else y - h
        if r0 < 0 or r0 + h > ny:
            break
        region = img[r0 : r0 + h, x : x + w]
        region[m] = value
        boxes.append({"text": line, "row": int(r0), "col": int(x), "height": int(h), "width": int(w)})
        y = r0 + h + 1 if corner[0] == "t" else r0 - 1
    return boxes
