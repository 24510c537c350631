"""Rendering one frame for a screen: modality LUT, window/level, resize, watermark, PNG/JPEG.

Per request the work is: a cached decoded array (``pixels.PixelCache``) -> a uint8 lookup
table over every stored value (modality LUT and window in one ``np.take`` for 8/16-bit data)
-> encode. PNG is written by :func:`png_bytes` (Sub filter + run-length deflate, ~4 ms per
512² frame where Pillow's encoder takes ~9-16 ms); JPEG (quality 90) on request. The
watermark (可见不可存) is a tiled, semi-transparent text mask with the viewer's identity and
the time to the minute, built once per (text, size) and blended in numpy.

Window syntax follows PS3.18 §8.3.5.1.3: ``center,width[,function]`` with function
``linear`` (PS3.3 C.11.2.1.2.1, the default), ``linear-exact`` or ``sigmoid``.
"""

from __future__ import annotations

import io
import math
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFont

from radqc.serving.imaging.pixels import Decoded

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
FUNCTIONS = ("linear", "linear-exact", "sigmoid")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
#: Bounds that keep a request from asking the server for absurd work.
MAX_VIEWPORT = 4096
MAX_WINDOW_ABS = 1e7
JPEG_QUALITY = 90
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class RenderParameterError(ValueError):
    """A request parameter the renderer cannot use (the router answers 422 with this text)."""


@lru_cache(maxsize=1)
def presets_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PRESETS_FILE.read_text(encoding="utf-8")) or {}
    return data


def ct_presets() -> dict[str, dict[str, Any]]:
    """``{name: {"center", "width", "zh", "en"}}`` for the viewer's preset buttons."""
    return {name: dict(v) for name, v in (presets_data().get("ct_presets") or {}).items()}


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "linear"

    def as_dict(self) -> dict[str, float]:
        return {"center": self.center, "width": self.width}


def parse_window(text: str | None) -> Window | None:
    """``"C,W[,function]"`` -> :class:`Window`; None for an absent parameter."""
    if text is None or text == "":
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise RenderParameterError("window must be center,width[,linear|linear-exact|sigmoid] / "
                                   "窗口参数格式应为 窗位,窗宽[,函数]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise RenderParameterError("window center and width must be numbers / 窗位与窗宽必须是数字") from None
    function = parts[2].lower() if len(parts) == 3 else "linear"
    if function not in FUNCTIONS:
        raise RenderParameterError(f"window function must be one of {', '.join(FUNCTIONS)} / 未知的窗函数")
    if not (math.isfinite(center) and math.isfinite(width)) or abs(center) > MAX_WINDOW_ABS \
            or width > MAX_WINDOW_ABS:
        raise RenderParameterError("window values out of range / 窗口数值超出范围")
    if width <= 0 or (function == "linear" and width < 1):
        raise RenderParameterError("window width must be positive (>= 1 for linear) / 窗宽必须为正数")
    return Window(center, width, function)


def parse_viewport(text: str | None) -> tuple[int, int] | None:
    """``"w,h"`` (PS3.18 viewport; the image is fitted inside, aspect kept) -> (w, h)."""
    if text is None or text == "":
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        w, h = int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1] else int(parts[0])
    except (ValueError, IndexError):
        raise RenderParameterError("viewport must be width,height in pixels / 视口应为 宽,高（像素）") from None
    if not (1 <= w <= MAX_VIEWPORT and 1 <= h <= MAX_VIEWPORT):
        raise RenderParameterError(f"viewport must be within 1..{MAX_VIEWPORT} / 视口超出范围")
    return w, h


def parse_format(fmt: str | None, accept: str | None) -> str:
    """``png`` or ``jpeg``: the ``format`` parameter, else the Accept header, else PNG."""
    if fmt:
        value = fmt.lower()
        value = "jpeg" if value == "jpg" else value
        if value not in MEDIA_TYPES:
            raise RenderParameterError("format must be png or jpeg / 格式应为 png 或 jpeg")
        return value
    if accept:
        for item in accept.split(","):
            media = item.split(";")[0].strip().lower()
            if media == "image/png":
                return "png"
            if media in ("image/jpeg", "image/jpg"):
                return "jpeg"
    return "png"


def default_window(decoded: Decoded, frame: int = 0) -> Window:
    """The header's window, else the CT preset for the body part, else the frame's percentiles."""
    if decoded.window_center is not None and decoded.window_width is not None and decoded.window_width > 0:
        return Window(decoded.window_center, max(decoded.window_width, 1.0))
    data = presets_data()
    if decoded.modality == "CT":
        name = (data.get("ct_default_by_body_part") or {}).get(decoded.body_part or "", data.get("ct_default"))
        preset = (data.get("ct_presets") or {}).get(name)
        if preset:
            return Window(float(preset["center"]), float(preset["width"]))
    lo_p, hi_p = data.get("auto_window_percentiles") or (0.5, 99.5)
    values = decoded.frames[frame].astype(np.float32) * decoded.slope + decoded.intercept
    lo, hi = (float(v) for v in np.percentile(values[:: 4, :: 4], (lo_p, hi_p)))
    return Window((lo + hi) / 2, max(hi - lo, 1.0))


def _window_values(x: np.ndarray, window: Window) -> np.ndarray:
    """Modality values -> display 0..255 (float), per the PS3.3 VOI LUT functions."""
    c, w = window.center, window.width
    if window.function == "linear-exact":
        y = (x - c) / w + 0.5
    elif window.function == "sigmoid":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    else:
        y = (x - (c - 0.5)) / (w - 1) + 0.5
    return np.clip(y, 0.0, 1.0) * 255.0


@lru_cache(maxsize=64)
def _lut(dtype: str, slope: float, intercept: float, window: Window, invert: bool) -> np.ndarray:
    """A uint8 table over every stored value of a 8/16-bit dtype (index = value - dtype min)."""
    info = np.iinfo(np.dtype(dtype))
    stored = np.arange(info.min, info.max + 1, dtype=np.float64)
    out = _window_values(stored * slope + intercept, window)
    if invert:
        out = 255.0 - out
    return np.rint(out).astype(np.uint8)


def to_display(decoded: Decoded, frame: int, window: Window | None) -> np.ndarray:
    """Frame ``frame`` as uint8 (rows, columns) or (rows, columns, 3) for the screen."""
    if not 0 <= frame < decoded.n_frames:
        raise IndexError(frame)
    pixels = decoded.frames[frame]
    if not decoded.monochrome:
        if pixels.dtype == np.uint8:
            return pixels
        top = float(pixels.max()) or 1.0
        return np.clip(pixels.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    window = window or default_window(decoded, frame)
    invert = decoded.photometric == "MONOCHROME1"
    if pixels.dtype.kind in "iu" and pixels.dtype.itemsize <= 2:
        table = _lut(pixels.dtype.str, decoded.slope, decoded.intercept, window, invert)
        offset = int(np.iinfo(pixels.dtype).min)
        index = pixels.astype(np.int32) - offset if offset else pixels
        return np.take(table, index)
    out = _window_values(pixels.astype(np.float32) * decoded.slope + decoded.intercept, window)
    if invert:
        out = 255.0 - out
    return np.rint(out).astype(np.uint8)


def fit(image: Image.Image, viewport: tuple[int, int] | None) -> Image.Image:
    """Fit ``image`` inside ``viewport`` keeping its aspect ratio (no upscaling past 4x)."""
    if viewport is None:
        return image
    w, h = viewport
    scale = min(w / image.width, h / image.height, 4.0)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.BICUBIC)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A lossless 8-bit PNG (grey or RGB) written directly: "Sub" row filter in numpy, then
    deflate with the run-length strategy at level 1.

    Pillow's encoder spends ~9 ms per 512² frame choosing a filter per row even at
    ``compress_level=0``; this takes ~4 ms for the same bytes on screen (sizes within a few
    per cent), which is what lets a 300-slice stack load in seconds on two cores."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError("png_bytes takes uint8 (rows, columns[, 3])")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    flat = np.ascontiguousarray(pixels).reshape(height, width * channels)
    raw = np.empty((height, width * channels + 1), dtype=np.uint8)
    raw[:, 0] = 1  # filter type Sub: byte minus the byte one pixel to the left (mod 256)
    raw[:, 1:channels + 1] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=raw[:, channels + 1:])
    deflate = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = deflate.compress(raw.tobytes()) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def encode(image: Image.Image | np.ndarray, fmt: str) -> bytes:
    """PNG (lossless, fast path) or JPEG (quality 90) bytes of an 8-bit image."""
    if fmt == "png":
        array = np.asarray(image) if isinstance(image, Image.Image) else image
        if array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            return png_bytes(array)
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    if fmt == "jpeg":
        picture.convert("RGB" if picture.mode not in ("L", "RGB") else picture.mode).save(buf, "JPEG",
                                                                                          quality=JPEG_QUALITY)
    else:
        picture.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


# -- watermark (可见不可存) ------------------------------------------------------------------

_MASKS: OrderedDict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_MASKS_LOCK = threading.Lock()
_MASKS_MAX = 64


def _first_font(paths: list[str], size: int) -> Any | None:
    for path in paths:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    return None


@lru_cache(maxsize=8)
def _fonts(size: int) -> tuple[Any, Any | None]:
    """(Latin font, CJK font or None) from the configured lists; Pillow's own font as the last resort."""
    cfg = presets_data().get("watermark") or {}
    latin = _first_font(list(cfg.get("latin_fonts") or ()), size) or ImageFont.load_default(size=size)
    return latin, _first_font(list(cfg.get("cjk_fonts") or ()), size)


def _runs(text: str) -> list[tuple[str, bool]]:
    """``text`` split into runs of ASCII and non-ASCII characters: (run, is_ascii)."""
    runs: list[tuple[str, bool]] = []
    for ch in text:
        is_ascii = ord(ch) < 128
        if runs and runs[-1][1] == is_ascii:
            runs[-1] = (runs[-1][0] + ch, is_ascii)
        else:
            runs.append((ch, is_ascii))
    return runs


def _draw_runs(draw: ImageDraw.ImageDraw, xy: tuple[int, int], runs: list[tuple[str, Any]]) -> None:
    x, y = xy
    for text, font in runs:
        draw.text((x, y), text, font=font, fill=255)
        x += int(math.ceil(draw.textlength(text, font=font)))


def _masks(identity: str, ascii_identity: str, at: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (scale, offset) of the blend (x256) from the light-text and dark-outline alpha
    masks tiling the image with the rotated text."""
    key = (f"{identity}|{ascii_identity}|{at}", width, height)
    with _MASKS_LOCK:
        hit = _MASKS.get(key)
        if hit is not None:
            _MASKS.move_to_end(key)
            return hit
    cfg = presets_data().get("watermark") or {}
    size = max(9, round(float(cfg.get("size_px_at_512", 16)) * max(width, height) / 512))
    latin, cjk = _fonts(size)
    text = f"{identity if cjk is not None else ascii_identity}  {at}"
    runs = [(run, latin if is_ascii or cjk is None else cjk) for run, is_ascii in _runs(text)]
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    tw = sum(int(math.ceil(probe.textlength(run, font=font))) for run, font in runs) + 4
    th = size + 4
    tile_factor = float(cfg.get("tile_factor", 1.6))
    step_x, step_y = max(int(tw * tile_factor * 0.75), 8), max(int(th * 4 * tile_factor), 8)
    diag = int(math.hypot(width, height)) + 2 * max(tw, th)
    light = Image.new("L", (diag, diag), 0)
    dark = Image.new("L", (diag, diag), 0)
    dl, dd = ImageDraw.Draw(light), ImageDraw.Draw(dark)
    # one copy of the text is centred on the image, the tiling runs out from it, so even a
    # small image carries the whole identity where the eye looks first
    y0 = (diag // 2 - th // 2) % step_y
    x0 = (diag // 2 - tw // 2) % step_x - step_x
    centre_row = (diag // 2 - th // 2 - y0) // step_y
    for row, y in enumerate(range(y0, diag, step_y)):
        shift = ((row - centre_row) % 2) * step_x // 2
        for x in range(x0 - shift, diag, step_x):
            _draw_runs(dd, (x + 1, y + 1), runs)
            _draw_runs(dl, (x, y), runs)
    angle = float(cfg.get("angle_deg", 30))
    box = ((diag - width) // 2, (diag - height) // 2, (diag - width) // 2 + width, (diag - height) // 2 + height)
    light_a = np.asarray(light.rotate(angle, resample=Image.Resampling.BILINEAR).crop(box), dtype=np.float32) / 255
    dark_a = np.asarray(dark.rotate(angle, resample=Image.Resampling.BILINEAR).crop(box), dtype=np.float32) / 255
    opacity = float(cfg.get("opacity", 0.35))
    light_a, dark_a = light_a * opacity, dark_a * opacity
    # blend as one fixed-point multiply-add per pixel: out = p * (1-dark)(1-light) + 255 * light
    scale = np.rint((1 - dark_a) * (1 - light_a) * 256).astype(np.uint32)
    offset = np.rint(255.0 * light_a * 256 + 128).astype(np.uint32)
    out = (scale, offset)
    with _MASKS_LOCK:
        _MASKS[key] = out
        while len(_MASKS) > _MASKS_MAX:
            _MASKS.popitem(last=False)
    return out


def apply_watermark(pixels: np.ndarray, identity: str, ascii_identity: str, at: str) -> np.ndarray:
    """``pixels`` (uint8, grey or RGB) with the tiled identity text blended in (light on dark outline)."""
    height, width = pixels.shape[:2]
    scale, offset = _masks(identity, ascii_identity, at, width, height)
    if pixels.ndim == 3:
        scale, offset = scale[..., None], offset[..., None]
    out = pixels.astype(np.uint32)
    out *= scale
    out += offset
    out >>= 8
    return np.minimum(out, 255).astype(np.uint8)


def render(decoded: Decoded, frame: int = 0, *, window: Window | None = None,
           viewport: tuple[int, int] | None = None, fmt: str = "png",
           watermark: tuple[str, str, str] | None = None) -> bytes:
    """The encoded image of one frame; ``watermark`` is (identity, ascii identity, time)."""
    display = to_display(decoded, frame, window)
    if viewport is not None:
        display = np.asarray(fit(Image.fromarray(display), viewport))
    if watermark is not None:
        display = apply_watermark(display, *watermark)
    return encode(display, fmt)


def thumbnail(decoded: Decoded, size: int = 128) -> bytes:
    """A small PNG of the middle frame with the default window (the exam view's series tiles)."""
    display = to_display(decoded, decoded.n_frames // 2, None)
    image = Image.fromarray(display)
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return encode(image, "png")
