"""Decoded pixels of stored instances, kept in an in-process LRU so a scrolled stack is cheap.

The viewer asks for one rendered frame per slice and re-asks with every window change, so
the expensive part (object-store read + JPEG-LS decode, ~7 ms per 512² CT slice) must happen
once per instance, not once per request. :class:`PixelCache` holds decoded arrays up to a
byte budget (``RADQC_PIXEL_CACHE_MB``, default 768 MB: four 300-slice CT series), evicting the
least recently used; concurrent requests for the same instance wait for one decode instead
of decoding twice. :meth:`PixelCache.prefetch` can decode a whole series in one background
thread when its stack is opened (``RADQC_PREFETCH=1``; off by default, see ``__init__``).

Decoding reuses :func:`radqc.dicom.volume.decode` (the same decoder-plugin choice as the
pipelines: pyjpegls for the archive's JPEG-LS).
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from radqc.objectstore.base import ObjectStore

DEFAULT_CACHE_MB = 768
#: Encoded images (PNG/JPEG) kept for repeated identical requests (``RADQC_RENDER_CACHE_MB``).
DEFAULT_RENDER_CACHE_MB = 256
#: Header data sets kept for metadata requests (no pixels: a few kB each).
HEADER_CACHE_ENTRIES = 20_000


class PixelError(ValueError):
    """An instance whose pixels cannot be decoded (reason in the message, bilingual)."""


def _first_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0] if len(value) else None
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Decoded:
    """One instance's stored pixel values and what rendering needs from its header.

    ``frames`` is (frames, rows, columns) for monochrome and (frames, rows, columns, samples)
    for colour, in the decoder's native dtype (stored values, before the modality LUT)."""

    frames: np.ndarray
    slope: float
    intercept: float
    photometric: str
    modality: str
    window_center: float | None
    window_width: float | None
    body_part: str | None

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def monochrome(self) -> bool:
        return self.photometric.startswith("MONOCHROME")

    def frame_bytes(self, index: int) -> bytes:
        """Frame ``index`` (0-based) as native little-endian bytes (WADO-RS frames, Explicit VR LE)."""
        frame = self.frames[index]
        if frame.dtype.byteorder == ">" or (frame.dtype.byteorder == "=" and not np.little_endian):
            frame = frame.astype(frame.dtype.newbyteorder("<"))
        return np.ascontiguousarray(frame).tobytes()


def decode_dataset(ds: Dataset) -> Decoded:
    """Decode ``ds``'s pixel data into a :class:`Decoded` (frames first)."""
    from radqc.dicom.volume import UnsuitableSeries, decode

    if "PixelData" not in ds:
        raise PixelError("instance has no pixel data / 该实例没有像素数据")
    try:
        arr = decode(ds)
    except UnsuitableSeries as exc:
        raise PixelError(exc.message) from exc
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    n_frames = int(_first_float(ds.get("NumberOfFrames")) or 1)
    if samples == 1 and arr.ndim == 2:
        arr = arr[np.newaxis]
    elif samples > 1 and arr.ndim == 3 and n_frames == 1:
        arr = arr[np.newaxis]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    if samples > 1 and photometric.startswith("YBR"):
        photometric = "RGB"  # pydicom converts YCbCr to RGB when decoding
    return Decoded(
        frames=arr,
        slope=_first_float(ds.get("RescaleSlope")) or 1.0,
        intercept=_first_float(ds.get("RescaleIntercept")) or 0.0,
        photometric=photometric,
        modality=str(ds.get("Modality", "") or "").upper(),
        window_center=_first_float(ds.get("WindowCenter")),
        window_width=_first_float(ds.get("WindowWidth")),
        body_part=str(ds.get("BodyPartExamined", "") or "").upper() or None,
    )


class BytesLRU:
    """Encoded images by request key within a byte budget: a stack re-opened at the same window
    (another doctor, a page reload) is served without windowing or encoding again. Watermarked
    images carry the viewer and the minute in their key, so they are reused only by that viewer
    within that minute."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[Any, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: bytes) -> None:
        if len(value) > self.max_bytes // 16:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


class PixelCache:
    """Decoded instances by object-store key, LRU within ``max_bytes``; thread-safe.

    Keys are object-store keys, which are content-addressed: an instance re-stored by the
    archive gets a new key, so a cached entry can never be stale."""

    def __init__(self, store: ObjectStore, max_bytes: int | None = None) -> None:
        self.store = store
        if max_bytes is None:
            max_bytes = int(os.environ.get("RADQC_PIXEL_CACHE_MB", DEFAULT_CACHE_MB)) * 1024 * 1024
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._pixels: OrderedDict[str, Decoded] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, threading.Event] = {}
        self._headers: OrderedDict[str, Dataset] = OrderedDict()
        #: ``RADQC_PREFETCH=1`` decodes a series in the background when its stack is opened. Off by
        #: default: the viewer asks for every slice at once (6 at a time), which keeps both cores
        #: busy anyway (measured: no gain on a cold 300-slice stack), and with several API worker
        #: processes a prefetch in one decodes what the others are asked for (wasted CPU).
        self.prefetch_enabled = os.environ.get("RADQC_PREFETCH", "0").strip().lower() in ("1", "true", "yes", "on")
        render_mb = int(os.environ.get("RADQC_RENDER_CACHE_MB", DEFAULT_RENDER_CACHE_MB))
        self.rendered = BytesLRU(render_mb * 1024 * 1024)
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radqc-prefetch")
        self._prefetching: set[tuple[str, ...]] = set()
        self.hits = 0
        self.misses = 0

    # -- raw reads ----------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        return self.store.get(key)

    def dataset(self, key: str, *, stop_before_pixels: bool = False) -> Dataset:
        """The stored data set; header-only reads are cached (metadata of a series re-read often)."""
        if not stop_before_pixels:
            return pydicom.dcmread(io.BytesIO(self.store.get(key)))
        with self._lock:
            ds = self._headers.get(key)
            if ds is not None:
                self._headers.move_to_end(key)
                return ds
        local_path = getattr(self.store, "local_path", None)
        if callable(local_path):
            ds = pydicom.dcmread(str(local_path(key)), stop_before_pixels=True)
        else:
            ds = pydicom.dcmread(io.BytesIO(self.store.get(key)), stop_before_pixels=True)
        with self._lock:
            self._headers[key] = ds
            while len(self._headers) > HEADER_CACHE_ENTRIES:
                self._headers.popitem(last=False)
        return ds

    # -- decoded pixels -----------------------------------------------------------------
    def get(self, key: str) -> Decoded:
        """The decoded instance at ``key``, decoding it at most once at a time."""
        while True:
            with self._lock:
                hit = self._pixels.get(key)
                if hit is not None:
                    self._pixels.move_to_end(key)
                    self.hits += 1
                    return hit
                waiting = self._inflight.get(key)
                if waiting is None:  # nobody decodes it now: this caller does
                    event = threading.Event()
                    self._inflight[key] = event
                    self.misses += 1
                    break
            waiting.wait()  # then look again: decoded (hit), or that decode failed (decode here)
        try:
            decoded = decode_dataset(pydicom.dcmread(io.BytesIO(self.store.get(key))))
            self._put(key, decoded)
            return decoded
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()

    def _put(self, key: str, decoded: Decoded) -> None:
        if decoded.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._pixels:
                return
            self._pixels[key] = decoded
            self._bytes += decoded.nbytes
            while self._bytes > self.max_bytes and self._pixels:
                _, old = self._pixels.popitem(last=False)
                self._bytes -= old.nbytes

    def cached(self, key: str) -> bool:
        with self._lock:
            return key in self._pixels

    def prefetch(self, keys: Iterable[str]) -> None:
        """Decode ``keys`` in the background, in order (a series, when its stack is opened).

        At most one prefetch per distinct key list runs at a time; errors are left for the
        request that needs the instance to report."""
        todo = tuple(keys)
        if not todo or not self.prefetch_enabled:
            return
        with self._lock:
            if todo in self._prefetching:
                return
            self._prefetching.add(todo)

        def run() -> None:
            try:
                budget = self.max_bytes
                for key in todo:
                    if self.cached(key):
                        continue
                    try:
                        decoded = self.get(key)
                    except Exception:  # noqa: BLE001 - the viewer's own request reports it
                        continue
                    budget -= decoded.nbytes
                    if budget <= 0:  # never evict what this very prefetch decoded first
                        break
            finally:
                with self._lock:
                    self._prefetching.discard(todo)

        self._prefetcher.submit(run)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"entries": len(self._pixels), "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses, "headers": len(self._headers)}


_CACHE_LOCK = threading.Lock()


def cache_for(state: Any, store: ObjectStore) -> PixelCache:
    """The app's cache (kept on ``app.state``: one per app, freed with it)."""
    with _CACHE_LOCK:
        cache: PixelCache | None = getattr(state, "pixel_cache", None)
        if cache is None or cache.store is not store:
            cache = PixelCache(store)
            state.pixel_cache = cache
        return cache
