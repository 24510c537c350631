"""Series thumbnails: a few decoded instances of a series -> one fixed-size multi-channel array.

Training (on the synthetic generator's small 48-128 px images) and serving (real 512 px
scanners, 2000+ px radiographs) must see the same picture of a series, so everything that
depends on matrix size is done in physical units: the image is resampled onto a square
field whose side is the larger physical extent (PixelSpacing x rows/columns), so a 24 x 128
synthetic coronal MPR and a 300 x 512 real one both fill the thumbnail the same way.

Channel layout (``THUMB_SHAPE[0]`` channels, the meaning depends on the pixel *kind*):

* ``hu`` (CT images with a rescale to HU and air in the picture): fixed HU windows, because a per-image
  normalisation would erase exactly what the contrast phase is (aorta ~40 HU native,
  ~300 HU arterial, ~160-180 HU portal; docs/synthetic-imaging.md). Channels: middle
  instance in a wide window [-1000, 1000], a soft-tissue window [-160, 240] and a vessel
  window [0, 400]; the first- and third-quartile instances in a vessel/soft window
  [-100, 400] (more anatomy for region and phase); a texture channel (local high-pass
  magnitude in HU at native resolution: reconstruction kernel noise and edge enhancement).
  The HU channels are point-sampled (bilinear, no block mean): CT noise is a per-pixel
  quantity, so a 512 px lung-kernel image keeps the noise a 128 px one shows.
* ``mr`` / ``xr`` / ``picture`` (MR, radiographs, secondary captures, RGB): no absolute scale
  exists, so intensities are divided by a robust maximum (99.5th percentile) shared by the
  picked instances (relative signal between b-values or slices survives); channels: middle,
  first quartile, third quartile, middle histogram-equalised, middle with its own scale,
  texture. MONOCHROME1 is inverted first, RGB converted to grey.

Odd input (no pixel data, undecodable, 1 x 1, empty series) never raises: the result is an
all-zero thumbnail with ``ok=False`` and the reason, in English and Chinese because it can
reach a reader through the classifier's evidence (:func:`make_thumbnail_ex`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: (channels, H, W) of every thumbnail (the network's input without the batch axis).
THUMB_SHAPE: tuple[int, int, int] = (6, 64, 64)
#: Pixel kinds; the channel meaning per kind is in the module docstring.
KINDS = ("hu", "mr", "xr", "picture")
#: Modalities whose images are projection radiographs.
XR_MODALITIES = frozenset({"DX", "CR", "DR", "RG", "MG", "RF", "XA", "IO", "PX"})
#: HU windows (lo, hi) of the ``hu`` channels 0-4.
HU_WINDOWS: tuple[tuple[float, float], ...] = ((-1000.0, 1000.0), (-160.0, 240.0), (0.0, 400.0),
                                               (-100.0, 400.0), (-100.0, 400.0))
#: A CT frame is read as HU only when its 1st percentile is at most this (air or FOV padding
#: present); topograms stored as raw counts and iodine maps fall back to the ``picture`` layout.
AIR_HU_MAX = -500.0
#: High-pass magnitude (HU) mapped to 1.0 in the texture channel.
HU_TEXTURE_SCALE = 150.0
#: Fraction of the robust maximum mapped to 1.0 in the texture channel of non-HU kinds.
REL_TEXTURE_SCALE = 0.25
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture storage classes


@dataclass
class Thumbnail:
    """A thumbnail with how it was made: ``ok`` False means zeros and ``reason`` says why."""

    array: np.ndarray
    ok: bool
    kind: str | None = None
    reason: str | None = None
    frames_used: int = 0


def pick_instances(n_instances: int) -> list[int]:
    """Indices of the instances to decode, from a series of ``n_instances`` sorted by InstanceNumber.

    First quartile, middle and third quartile (sorted, unique): three decodes per series
    whatever its length, and the middle slice is where the anatomy of a scan is most
    typical. Sort the instances by InstanceNumber (file order when absent); a reversed
    order only swaps the quartile channels, which training augments against."""
    if n_instances <= 0:
        return []
    idx = {n_instances // 4, n_instances // 2, (3 * n_instances) // 4}
    return sorted(i for i in idx if 0 <= i < n_instances)


def _kind(ds: Any) -> str:
    """The pixel kind of one dataset (decides the channel layout)."""
    modality = str(getattr(ds, "Modality", "") or "").upper()
    sop = str(getattr(ds, "SOPClassUID", "") or "")
    photometric = str(getattr(ds, "PhotometricInterpretation", "") or "").upper()
    if sop.startswith(_SC_PREFIX) or not photometric.startswith("MONOCHROME"):
        return "picture"
    if modality == "CT" and "RescaleIntercept" in ds:
        return "hu"
    if modality == "MR":
        return "mr"
    if modality in XR_MODALITIES:
        return "xr"
    return "picture"


def _spacing(ds: Any) -> tuple[float, float]:
    """(row, column) spacing in mm; 1.0 when the header has none or nonsense."""
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        v = getattr(ds, kw, None)
        try:
            if v is not None and len(v) >= 2:
                r, c = float(v[0]), float(v[1])
                if r > 0 and c > 0 and np.isfinite(r) and np.isfinite(c):
                    return r, c
        except (TypeError, ValueError):
            continue
    return 1.0, 1.0


def _frames(ds: Any) -> list[np.ndarray]:
    """The 2D float32 frames of one dataset (rescaled; MONOCHROME1 inverted; RGB to grey)."""
    arr = np.asarray(ds.pixel_array)
    photometric = str(getattr(ds, "PhotometricInterpretation", "") or "").upper()
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if spp > 1 and arr.shape[-1] in (3, 4):
        if photometric.startswith("YBR"):
            try:
                from pydicom.pixels import convert_color_space

                arr = convert_color_space(arr, photometric, "RGB")
            except Exception:  # noqa: BLE001 - grey from the luma plane is good enough
                pass
        rgb = arr.astype(np.float32)[..., :3]
        arr = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 2:
        stack = [arr]
    elif arr.ndim == 3:
        stack = [arr[i] for i in range(arr.shape[0])]
    else:
        raise ValueError(f"pixel array of shape {arr.shape}")
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    out = []
    for f in stack:
        if slope != 1.0 or intercept != 0.0:
            f = f * slope + intercept
        if photometric == "MONOCHROME1":
            f = float(np.max(f)) + float(np.min(f)) - f
        out.append(f)
    return out


def _block_mean(img: np.ndarray, fy: int, fx: int) -> np.ndarray:
    h, w = (img.shape[0] // fy) * fy, (img.shape[1] // fx) * fx
    if h == 0 or w == 0:
        return img
    return img[:h, :w].reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))


def resample_square(img: np.ndarray, spacing: tuple[float, float], size: int, fill: float,
                    antialias: bool = True) -> np.ndarray:
    """``img`` on a ``size`` x ``size`` grid covering its larger physical side, centred.

    Integer block means first (anti-aliasing when shrinking a 512 px image by 8), then
    bilinear sampling; pixels outside the image get ``fill``. ``antialias=False`` skips the
    block means: CT noise is specified per pixel (scanners and the generator alike), so
    point sampling keeps the same noise level in the thumbnail of a 64 px and a 512 px
    image, where block means would average a 512 px image's kernel noise away."""
    sy, sx = spacing
    h, w = img.shape
    side = max(h * sy, w * sx)
    step = side / size
    fy, fx = max(1, int(step / sy)), max(1, int(step / sx))
    if antialias and (fy > 1 or fx > 1):
        img = _block_mean(img, fy, fx)
        h2, w2 = img.shape
        sy, sx = (h * sy) / h2, (w * sx) / w2
        h, w = h2, w2
    centres = (np.arange(size, dtype=np.float64) + 0.5) * step - side / 2.0
    ry = centres / sy + h / 2.0 - 0.5
    rx = centres / sx + w / 2.0 - 0.5
    y0 = np.floor(ry).astype(np.int64)
    x0 = np.floor(rx).astype(np.int64)
    wy = (ry - y0).astype(np.float32)
    wx = (rx - x0).astype(np.float32)
    y0c, y1c = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    x0c, x1c = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    top = img[y0c][:, x0c] * (1 - wx) + img[y0c][:, x1c] * wx
    bot = img[y1c][:, x0c] * (1 - wx) + img[y1c][:, x1c] * wx
    out = top * (1 - wy)[:, None] + bot * wy[:, None]
    inside_y = (ry >= -0.5) & (ry <= h - 0.5)
    inside_x = (rx >= -0.5) & (rx <= w - 0.5)
    out[~inside_y, :] = fill
    out[:, ~inside_x] = fill
    return out.astype(np.float32, copy=False)


def _highpass(img: np.ndarray) -> np.ndarray:
    """|img - 3x3 box mean| at native resolution (noise texture, edge enhancement)."""
    if img.shape[0] < 3 or img.shape[1] < 3:
        return np.zeros_like(img)
    p = np.pad(img, 1, mode="edge")
    box = np.zeros_like(img)
    for dy in range(3):
        for dx in range(3):
            box += p[dy:dy + img.shape[0], dx:dx + img.shape[1]]
    return np.abs(img - box / 9.0)


def _window(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


def _equalise(img: np.ndarray) -> np.ndarray:
    """Rank (histogram-equalised) image in [0, 1]: invariant to any monotone intensity scale."""
    flat = img.ravel()
    ranks = np.empty(flat.size, dtype=np.float32)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size, dtype=np.float32)
    return (ranks / max(1, flat.size - 1)).reshape(img.shape)


def _select(frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first quartile, middle, third quartile) frames; fewer than three repeat the last."""
    if len(frames) > 3:
        frames = [frames[i] for i in pick_instances(len(frames))]
    if len(frames) == 3:
        return frames[0], frames[1], frames[2]
    if len(frames) == 2:
        return frames[0], frames[1], frames[1]
    return frames[0], frames[0], frames[0]


def resolve_kind(kind: str, mid: np.ndarray) -> str:
    """``hu`` only when the middle frame shows air or padding; a "CT" without it is not HU
    (topograms stored as raw counts, iodine maps) and gets the ``picture`` layout."""
    if kind == "hu" and float(np.percentile(mid, 1.0)) > AIR_HU_MAX:
        return "picture"
    return kind


def thumbnail_from_frames(frames: Sequence[np.ndarray], spacing: tuple[float, float], kind: str) -> np.ndarray:
    """The thumbnail of already decoded, rescaled 2D frames (q1, middle, q3 picked here).

    ``frames`` are in instance order; more than three are reduced with :func:`pick_instances`."""
    c, size, _ = THUMB_SHAPE
    frames = [f for f in frames if f.ndim == 2 and min(f.shape) >= 1]
    if not frames:
        raise ValueError("no 2D frames")
    q1, mid, q3 = _select(frames)
    kind = resolve_kind(kind, mid)
    out = np.zeros(THUMB_SHAPE, dtype=np.float32)
    if kind == "hu":
        fill = -1000.0
        mids = resample_square(np.clip(mid, -1024.0, 3071.0), spacing, size, fill, antialias=False)
        for ch, (lo, hi) in enumerate(HU_WINDOWS[:3]):
            out[ch] = _window(mids, lo, hi)
        lo, hi = HU_WINDOWS[3]
        out[3] = _window(resample_square(np.clip(q1, -1024.0, 3071.0), spacing, size, fill, antialias=False), lo, hi)
        lo, hi = HU_WINDOWS[4]
        out[4] = _window(resample_square(np.clip(q3, -1024.0, 3071.0), spacing, size, fill, antialias=False), lo, hi)
        hp = _highpass(np.clip(mid, -1024.0, 3071.0))
        out[5] = np.clip(resample_square(hp, spacing, size, 0.0) / HU_TEXTURE_SCALE, 0.0, 1.0)
        return out
    # a series of one or two frames (a radiograph) repeats the same array: each distinct frame is
    # measured, scaled and resampled once (speed only: the values are those of the three-way loop)
    distinct = list({id(f): f for f in (q1, mid, q3)}.values())
    floor = min(float(np.percentile(f, 0.5)) for f in distinct)
    shifted_of = {id(f): f - floor for f in distinct}
    top = max(float(np.percentile(f, 99.5)) for f in shifted_of.values())
    scale = top if top > 0 else 1.0
    scaled_of = {k: f / scale for k, f in shifted_of.items()}
    resampled_of = {k: resample_square(f, spacing, size, 0.0) for k, f in scaled_of.items()}
    rq1, rmid, rq3 = (resampled_of[id(f)] for f in (q1, mid, q3))
    out[0] = np.clip(rmid, 0.0, 1.0)
    out[1] = np.clip(rq1, 0.0, 1.0)
    out[2] = np.clip(rq3, 0.0, 1.0)
    out[3] = _equalise(rmid)
    own = float(np.percentile(rmid, 99.5))
    out[4] = np.clip(rmid / own, 0.0, 1.0) if own > 0 else 0.0
    hp = _highpass(scaled_of[id(mid)])
    out[5] = np.clip(resample_square(hp, spacing, size, 0.0) / REL_TEXTURE_SCALE, 0.0, 1.0)
    if c != 6:  # pragma: no cover - THUMB_SHAPE and this layout change together
        raise AssertionError("THUMB_SHAPE channel count does not match the layout")
    return out


def make_thumbnail_ex(datasets: Sequence[Any]) -> Thumbnail:
    """The thumbnail of a series from a few of its instances (with pixels), and whether it worked.

    ``datasets``: the instances picked with :func:`pick_instances`, in instance order (all
    instances are accepted too; multi-frame datasets count each frame). Never raises."""
    zeros = np.zeros(THUMB_SHAPE, dtype=np.float32)
    if not datasets:
        return Thumbnail(zeros, False, None, "no instances / 无实例")
    frames: list[np.ndarray] = []
    kind: str | None = None
    spacing = (1.0, 1.0)
    reasons: list[str] = []
    for ds in datasets:
        try:
            if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
                reasons.append("no pixel data / 无像素数据")
                continue
            got = _frames(ds)
        except Exception as exc:  # noqa: BLE001 - odd pixels must not stop classification
            reasons.append(f"pixels not decodable / 像素无法解码: {type(exc).__name__}: {exc}"[:200])
            continue
        if kind is None:
            kind = _kind(ds)
            spacing = _spacing(ds)
        frames.extend(f for f in got if f.ndim == 2)
    frames = [f for f in frames if f.size > 1 and np.isfinite(f).all()]
    if not frames:
        reason = "; ".join(sorted(set(reasons))) or "no usable 2D frames (1 x 1 or non-finite) / 无可用二维图像"
        return Thumbnail(zeros, False, kind, reason)
    try:
        kind = resolve_kind(kind or "picture", _select(frames)[1])
        arr = thumbnail_from_frames(frames, spacing, kind)
    except Exception as exc:  # noqa: BLE001
        log.warning("thumbnail failed: %s", exc)
        return Thumbnail(zeros, False, kind, f"thumbnail failed / 缩略图生成失败: {type(exc).__name__}: {exc}"[:200])
    if not np.isfinite(arr).all():
        return Thumbnail(zeros, False, kind, "non-finite thumbnail / 缩略图含非有限值")
    return Thumbnail(arr, True, kind, None, len(frames))


def make_thumbnail(datasets: Sequence[Any]) -> np.ndarray:
    """``THUMB_SHAPE`` float32 array of a series (zeros when the pixels are unusable; see
    :func:`make_thumbnail_ex` for the flag and reason). An all-zero thumbnail makes
    :meth:`SeriesImageModel.predict` abstain for that series."""
    return make_thumbnail_ex(datasets).array
