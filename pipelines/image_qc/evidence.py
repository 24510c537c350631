"""Evidence pictures: a small PNG (<= 256 px) with the display window applied and the region marked.

A doctor deciding whether to accept another hospital's exam looks at *where* the problem
is, not at numbers: every deduction's evidence carries one such picture. The measures call
``sink.add(image, name=..., box=..., mask=..., window=...)`` and put the returned reference
into ``Evidence.image``; where the picture goes is the sink's business:

* :class:`FileSink` — files in a folder next to the CLI's JSON (``--evidence-dir``); the
  reference is the file path;
* :class:`StoreSink` — the object store (content-addressed, like the anatomy stage's label
  maps); the reference is the object key;
* :class:`MemorySink` — kept in memory (tests, benchmarks).

Rendering is shared (:func:`render_png`): window (centre, width) — or the 1st-99th percentile
when none is given — downscaled so the longer side is at most :data:`MAX_SIDE`, the box
drawn as a red rectangle and the mask as a red outline over a tint. A picture that cannot be
rendered (not 2-D, empty) gives None: evidence storage never fails a measure.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from pathlib import Path
from typing import Any

from radqc.pipelines.image_qc.types import EvidenceSink

log = logging.getLogger(__name__)

#: Longest side of an evidence picture, pixels.
MAX_SIDE = 256
MARK_RGB = (255, 40, 40)


def _to_uint8(image: Any, window: tuple[float, float] | None) -> Any:
    import numpy as np

    arr = np.asarray(image, dtype=np.float32)
    if window is not None:
        centre, width = float(window[0]), max(float(window[1]), 1e-3)
        lo, hi = centre - width / 2.0, centre + width / 2.0
    else:
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = (float(v) for v in np.percentile(finite, (1, 99)))
            if hi <= lo:
                hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(arr, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def render_png(image: Any, *, box: list[float] | None = None, mask: Any = None,
               window: tuple[float, float] | None = None, max_side: int = MAX_SIDE) -> bytes | None:
    """The PNG bytes of a 2-D image with its window applied and the region marked (None if not 2-D)."""
    import numpy as np
    from PIL import Image, ImageDraw

    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        return None
    rows, cols = arr.shape
    gray = _to_uint8(arr, window)
    scale = min(1.0, float(max_side) / float(max(rows, cols)))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    picture = Image.fromarray(gray, mode="L").resize(size, Image.Resampling.BILINEAR).convert("RGB")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape == arr.shape and m.any():
            small = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
            rgb = np.asarray(picture).copy()
            # a light tint inside and a solid outline: the anatomy stays visible under the mark
            rgb[small] = (0.7 * rgb[small] + 0.3 * np.array(MARK_RGB)).astype(np.uint8)
            inner = small.copy()
            inner[1:, :] &= small[:-1, :]
            inner[:-1, :] &= small[1:, :]
            inner[:, 1:] &= small[:, :-1]
            inner[:, :-1] &= small[:, 1:]
            rgb[small & ~inner] = MARK_RGB
            picture = Image.fromarray(rgb)
    if box is not None and len(box) == 4:
        r0, c0, r1, c1 = (float(v) * scale for v in box)
        draw = ImageDraw.Draw(picture)
        draw.rectangle([min(c0, c1), min(r0, r1), max(c0, c1), max(r0, r1)], outline=MARK_RGB, width=2)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "evidence"
    return cleaned[:80]


class MemorySink(EvidenceSink):
    """Keeps the PNGs in memory (``self.images``: name -> bytes); the reference is the name."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _unique(self, name: str) -> str:
        base = _safe_name(name)
        candidate, n = base, 1
        while candidate in self.images:
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def add(self, image: Any, *, name: str, box: list[float] | None = None,
            window: tuple[float, float] | None = None, mask: Any = None) -> str | None:
        try:
            data = render_png(image, box=box, mask=mask, window=window)
        except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn is no evidence, not an error
            log.warning("evidence %s not rendered: %s", name, exc)
            return None
        if data is None:
            return None
        with self._lock:
            key = self._unique(name)
            self.images[key] = data
        return key


class FileSink(MemorySink):
    """Writes each PNG into ``folder`` (created on first use); the reference is the file path."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.paths: list[str] = []

    def add(self, image: Any, *, name: str, box: list[float] | None = None,
            window: tuple[float, float] | None = None, mask: Any = None) -> str | None:
        key = super().add(image, name=name, box=box, window=window, mask=mask)
        if key is None:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{key}.png"
            path.write_bytes(self.images.pop(key))
            self.images[key] = b""  # keep the name taken, drop the bytes
        except OSError as exc:
            log.warning("evidence %s not written: %s", name, exc)
            return None
        self.paths.append(str(path))
        return str(path)


class StoreSink(MemorySink):
    """Puts each PNG into an object store; the reference is the content-addressed key.

    ``objects`` lists what was stored (key, sha256, size, name), so the stage result can name
    every evidence object it created."""

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store
        self.objects: list[dict[str, Any]] = []

    def add(self, image: Any, *, name: str, box: list[float] | None = None,
            window: tuple[float, float] | None = None, mask: Any = None) -> str | None:
        key = super().add(image, name=name, box=box, window=window, mask=mask)
        if key is None:
            return None
        data = self.images.pop(key)
        self.images[key] = b""
        put = self.store.put(data)
        with self._lock:
            self.objects.append({"key": put.key, "sha256": put.digest, "size": put.size, "name": key,
                                 "media_type": "image/png"})
        return str(put.key)
