"""Lossless transcoding of one DICOM object, verified before anyone is allowed to trust it.

:func:`transcode` takes the bytes of one stored instance and returns either a verified
lossless copy (JPEG-LS or JPEG 2000 lossless) or a reason why the original must stay as
it is. "Verified" means, for the new bytes as they will be stored:

* they parse, and their transfer syntax is the codec's lossless one;
* decoding them with an explicitly chosen decoder plugin gives a pixel array identical,
  value for value and in the same container width, to the original's native pixels;
* every data element except Pixel Data is unchanged (see :data:`META_MAY_CHANGE`,
  :data:`META_MAY_ADD` and :data:`DATASET_MAY_CHANGE` for the complete list of what may
  differ); in particular Photometric Interpretation, SOP Instance UID and Lossy Image
  Compression keep their original values.

Nothing here touches the catalogue or the object store: this module is pure, so it runs
in worker processes and in the benchmarks unchanged.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
)

from radqc.text import bilingual

#: Transfer syntaxes whose pixel data are stored natively (not encapsulated) and that the
#: archive rewrites. Deflated Explicit VR is compressed already and is left alone.
UNCOMPRESSED = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian})


@dataclass(frozen=True)
class Codec:
    """One lossless codec: its transfer syntax and the pydicom plugins that encode/decode it.

    The decoder is named explicitly because pydicom's default order picks
    pylibjpeg-libjpeg for JPEG-LS, about 3x slower than pyjpegls (ENVIRONMENT.md).
    """

    name: str
    transfer_syntax: UID
    encoding_plugin: str
    decoding_plugin: str
    packages: tuple[str, ...]


CODECS: dict[str, Codec] = {
    "jpegls": Codec("jpegls", JPEGLSLossless, "pyjpegls", "pyjpegls", ("pyjpegls",)),
    "j2k": Codec("j2k", JPEG2000Lossless, "pylibjpeg", "pylibjpeg", ("pylibjpeg", "pylibjpeg-openjpeg")),
}

#: The only syntaxes an archive copy may have: lossless by definition of the standard.
LOSSLESS_SYNTAXES = frozenset({JPEGLSLossless, JPEG2000Lossless})

#: Which decoder plugin reads which lossless syntax when verifying stored objects.
DECODER_FOR_SYNTAX: dict[str, str] = {str(c.transfer_syntax): c.decoding_plugin for c in CODECS.values()}

#: File-meta elements the transcoder must change: the transfer syntax (to the codec's) and
#: the group length that follows from it.
META_MAY_CHANGE = frozenset({Tag(0x0002, 0x0000), Tag(0x0002, 0x0010)})
#: File-meta elements that may be *added* when the original lacked them (an original stored
#: without a Part-10 header is written back as a proper file); never changed if present.
META_MAY_ADD = frozenset(
    {
        Tag(0x0002, 0x0001),  # File Meta Information Version
        Tag(0x0002, 0x0002),  # Media Storage SOP Class UID
        Tag(0x0002, 0x0003),  # Media Storage SOP Instance UID
        Tag(0x0002, 0x0012),  # Implementation Class UID
        Tag(0x0002, 0x0013),  # Implementation Version Name
    }
)
#: Data-set elements that may differ: Pixel Data itself (compared after decoding), and the
#: Extended Offset Table pair that encapsulation adds for frames beyond 4 GiB.
DATASET_MAY_CHANGE = frozenset({Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0001), Tag(0x7FE0, 0x0002)})
#: Planar Configuration (0028,0006) of a colour image becomes 0 in the copy: PS3.5 8.2.3
#: (JPEG-LS) and 8.2.4 (JPEG 2000) require it, as the codestream orders the components.
PLANAR_CONFIGURATION = Tag(0x0028, 0x0006)
#: Retired Group Length elements (gggg,0000) outside the file meta state a group's byte
#: length in the original encoding; the writer drops them (their value could not survive a
#: change of VR encoding or of the pixel data anyway). They are the only other elements
#: that may be absent from the copy.
def _is_group_length(tag: int) -> bool:
    return (tag & 0xFFFF) == 0 and (tag >> 16) not in (0x0000, 0x0002)


#: Byte width of the values of binary VRs whose byte order follows the transfer syntax.
_WORD_SIZE = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}

ARCHIVED = "archived"
SKIPPED_COMPRESSED = "skipped_compressed"
SKIPPED_NON_IMAGE = "skipped_non_image"
SKIPPED_UNSUPPORTED = "skipped_unsupported"
SKIPPED_NO_GAIN = "skipped_no_gain"
FAILED = "failed"

#: reason code -> (Chinese, English); every skip and failure carries one of these.
REASONS: dict[str, tuple[str, str]] = {
    "compressed": ("已是压缩传输语法，保持原样", "already stored in a compressed transfer syntax; kept as is"),
    "non_image": ("无像素数据（非图像对象）", "no pixel data (not an image object)"),
    "float_pixels": ("浮点像素数据，编解码器不支持", "float pixel data; the codec cannot encode it"),
    "pixel_format": ("像素格式不被该编解码器支持", "pixel format not supported by the codec"),
    "high_bits": ("像素值超出 BitsStored 位数（高位含数据），无法无损编码", "pixel values use bits above Bits Stored; not losslessly encodable"),
    "pixel_data_short": ("像素数据长度不足", "pixel data shorter than the header requires"),
    "big_endian_un": ("大端文件含 UN 元素，字节序无法安全转换", "big-endian file with UN elements; their byte order cannot be converted safely"),
    "command_elements": ("文件含命令集元素 (0000,eeee)，不能写成 DICOM 文件", "file carries Command Set elements (0000,eeee); it cannot be written as a DICOM file"),
    "encoder_error": ("编码器拒绝该图像", "the encoder refused this image"),
    "error": ("处理时发生意外错误", "unexpected error while processing"),
    "no_gain": ("压缩后不更小，保留原件", "compressed copy is not smaller; original kept"),
    "unreadable": ("对象无法解析", "stored object cannot be parsed"),
    "verify_pixels": ("无损校验失败：解码像素与原件不同", "lossless check failed: decoded pixels differ from the original"),
    "verify_elements": ("无损校验失败：数据元素被改变", "lossless check failed: a data element changed"),
    "verify_syntax": ("无损校验失败：传输语法不是无损语法", "lossless check failed: transfer syntax is not the lossless one"),
    "pixel_hash_mismatch": ("像素哈希与入库记录不符", "pixel hash differs from the one recorded at ingest"),
}


def reason_text(code: str, detail: str = "") -> str:
    return bilingual(REASONS, code, detail)


@dataclass
class TranscodeResult:
    """What happened to one object. ``data`` is set only for a verified archive copy."""

    outcome: str
    reason_code: str | None = None
    detail: str = ""
    data: bytes | None = None
    transfer_syntax: str | None = None
    #: Canonical hash of the original's pixels (see :func:`pixel_hash_of`); None without pixels.
    pixel_hash: str | None = None
    #: Hash of the raw pixel bytes exactly as the original stored them (differs from
    #: ``pixel_hash`` only for big-endian originals).
    raw_pixel_hash: str | None = None
    original_size: int = 0
    encode_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def reason(self) -> str:
        return reason_text(self.reason_code, self.detail) if self.reason_code else ""


class _Skip(Exception):
    def __init__(self, outcome: str, code: str, detail: str = "") -> None:
        super().__init__(detail)
        self.outcome, self.code, self.detail = outcome, code, detail


# -- pixels ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelLayout:
    rows: int
    columns: int
    samples: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    planar: int

    @property
    def nbytes(self) -> int:
        return (self.rows * self.columns * self.samples * self.frames * self.bits_allocated + 7) // 8

    def dtype(self, little_endian: bool = True) -> np.dtype:
        kind = "i" if self.signed else "u"
        return np.dtype(f"{'<' if little_endian else '>'}{kind}{self.bits_allocated // 8}")


def _layout(ds: Dataset) -> PixelLayout:
    try:
        return PixelLayout(
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            samples=int(ds.get("SamplesPerPixel", 1) or 1),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            bits_allocated=int(ds.BitsAllocated),
            bits_stored=int(ds.get("BitsStored", ds.BitsAllocated) or ds.BitsAllocated),
            signed=int(ds.get("PixelRepresentation", 0) or 0) == 1,
            planar=int(ds.get("PlanarConfiguration", 0) or 0),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Skip(SKIPPED_UNSUPPORTED, "pixel_format", f"incomplete Image Pixel module: {exc}") from exc


def native_array(ds: Dataset, layout: PixelLayout, little_endian: bool) -> np.ndarray:
    """The stored native pixels as (frames, rows, columns, samples), container-width integers.

    Built from the raw bytes (not ``pixel_array``), so nothing is masked, sign-extended or
    colour-converted: this is exactly what a lossless copy must reproduce.
    """
    if layout.bits_allocated not in (8, 16, 32):
        raise _Skip(SKIPPED_UNSUPPORTED, "pixel_format", f"Bits Allocated {layout.bits_allocated}")
    raw = ds.PixelData
    if len(raw) < layout.nbytes:
        raise _Skip(SKIPPED_UNSUPPORTED, "pixel_data_short", f"{len(raw)} of {layout.nbytes} bytes")
    count = layout.nbytes * 8 // layout.bits_allocated
    if not little_endian and layout.bits_allocated == 8 and ds["PixelData"].VR == "OW":
        # 8-bit pixels in a big-endian OW value: each 16-bit word has its two pixels swapped.
        words = np.frombuffer(raw, dtype=">u2", count=len(raw) // 2).astype("<u2")
        arr = words.view(layout.dtype(True))[:count]
    else:
        arr = np.frombuffer(raw, dtype=layout.dtype(little_endian), count=count)
    f, r, c, s = layout.frames, layout.rows, layout.columns, layout.samples
    if s > 1 and layout.planar == 1:
        arr = arr.reshape(f, s, r, c).transpose(0, 2, 3, 1)
    else:
        arr = arr.reshape(f, r, c, s)
    return arr.astype(layout.dtype(True).newbyteorder("="), copy=False)


def pixel_hash_of(arr: np.ndarray, layout: PixelLayout) -> str:
    """SHA-256 of the native pixel bytes in Explicit VR Little Endian layout, colour-by-pixel.

    Container-width little-endian integers, frames in order, samples interleaved (Planar
    Configuration 0), pad byte excluded. For a little-endian original that is not colour-
    by-plane this equals ``sha256(PixelData[:expected])``, which is what ingest records;
    it is the same before and after lossless compression (where Planar Configuration must
    be 0), which is what lets ``radqc verify`` check archived objects.
    """
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=layout.dtype(True)).tobytes()).hexdigest()


def _check_high_bits(arr: np.ndarray, layout: PixelLayout) -> None:
    """Refuse pixels that use bits above Bits Stored: the codec would drop them."""
    if layout.bits_stored >= layout.bits_allocated or arr.size == 0:
        return
    bits = layout.bits_stored
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if layout.signed else (0, (1 << bits) - 1)
    amin, amax = int(arr.min()), int(arr.max())
    if amin < lo or amax > hi:
        raise _Skip(
            SKIPPED_UNSUPPORTED, "high_bits", f"values {amin}..{amax} outside {lo}..{hi} for Bits Stored {bits}"
        )


def decode_pixels(ds: Dataset, layout: PixelLayout, plugin: str) -> np.ndarray:
    """Decode encapsulated pixels with one named plugin, shaped like :func:`native_array`."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    arr, _meta = decoder.as_array(ds, raw=True, decoding_plugin=plugin)
    return arr.reshape(layout.frames, layout.rows, layout.columns, layout.samples).astype(
        layout.dtype(True).newbyteorder("="), copy=False
    )


def stored_pixel_hash(data: bytes) -> str | None:
    """Canonical pixel hash of stored bytes, native or archived (for ``radqc verify``)."""
    ds = _read(data)
    if "PixelData" not in ds:
        return None
    layout = _layout(ds)
    tsyntax = UID(ds.file_meta.get("TransferSyntaxUID") or ExplicitVRLittleEndian)
    if tsyntax in UNCOMPRESSED:
        arr = native_array(ds, layout, tsyntax != ExplicitVRBigEndian)
    else:
        arr = decode_pixels(ds, layout, DECODER_FOR_SYNTAX.get(str(tsyntax), ""))
    return pixel_hash_of(arr, layout)


# -- elements --------------------------------------------------------------------------------
def _binary_equal(a: DataElement, b: DataElement, a_le: bool, b_le: bool) -> bool:
    va, vb = a.value or b"", b.value or b""
    if a_le == b_le:
        return bytes(va) == bytes(vb)
    width = _WORD_SIZE.get(b.VR) or _WORD_SIZE.get(a.VR)
    if not width or len(va) != len(vb) or len(va) % width:
        return False
    dt = np.dtype(f"u{width}")
    return bool(
        np.array_equal(
            np.frombuffer(va, dt.newbyteorder("<" if a_le else ">")),
            np.frombuffer(vb, dt.newbyteorder("<" if b_le else ">")),
        )
    )


def _values_equal(a: DataElement, b: DataElement, a_le: bool, b_le: bool) -> bool:
    if a.VR in _WORD_SIZE or b.VR in _WORD_SIZE:
        return _binary_equal(a, b, a_le, b_le)
    va, vb = a.value, b.value
    if isinstance(va, (bytes, bytearray)) or isinstance(vb, (bytes, bytearray)):
        return bytes(va or b"") == bytes(vb or b"")
    if va == vb:
        return True
    # NaN never equals itself; compare float values by their text instead.
    return repr(va) == repr(vb) and "nan" in repr(va).lower()


def _raw_values_equal(ra: object, rb: object) -> bool:
    """Fast path: both elements still unparsed, little endian, with identical value bytes.

    Value bytes are the same in Implicit and Explicit VR Little Endian, so identical bytes
    mean an identical element (a nested sequence included); anything else is compared
    value by value.
    """
    if not (isinstance(ra, RawDataElement) and isinstance(rb, RawDataElement)):
        return False
    if ra.VR is not None and rb.VR is not None and ra.VR != rb.VR and "UN" not in (ra.VR, rb.VR):
        return False
    return ra.value is not None and ra.value == rb.value


def compare_elements(a: Dataset, b: Dataset, a_le: bool, b_le: bool, *, skip: frozenset = frozenset(), path: str = "") -> str | None:
    """First difference between two data sets' elements (recursing into sequences), or None."""
    for tag in sorted(set(a.keys()) | set(b.keys())):
        if tag in skip or (_is_group_length(tag) and tag not in b):
            continue
        where = f"{path}{Tag(tag)}"
        if tag not in b:
            return f"{where} removed"
        if tag not in a:
            return f"{where} added"
        if a_le and b_le and _raw_values_equal(a.get_item(tag), b.get_item(tag)):
            continue
        ea, eb = a[tag], b[tag]
        if ea.VR == "SQ" or eb.VR == "SQ":
            ia, ib = list(ea.value or []), list(eb.value or [])
            if ea.VR != eb.VR or len(ia) != len(ib):
                return f"{where} sequence changed"
            for n, (xa, xb) in enumerate(zip(ia, ib, strict=True)):
                diff = compare_elements(xa, xb, a_le, b_le, path=f"{where}[{n}]")
                if diff:
                    return diff
        elif not _values_equal(ea, eb, a_le, b_le):
            return f"{where} {ea.keyword or 'private'} changed"
    return None


def _compare_meta(a: Dataset, b: Dataset) -> str | None:
    meta_a, meta_b = getattr(a, "file_meta", Dataset()), getattr(b, "file_meta", Dataset())
    for tag in sorted(set(meta_a.keys()) | set(meta_b.keys())):
        if tag in META_MAY_CHANGE:
            continue
        if tag not in meta_a:
            if tag in META_MAY_ADD:
                continue
            return f"file meta {Tag(tag)} added"
        if tag not in meta_b:
            return f"file meta {Tag(tag)} removed"
        if not _values_equal(meta_a[tag], meta_b[tag], True, True):
            return f"file meta {Tag(tag)} {meta_a[tag].keyword} changed"
    return None


def _trailing_zero_padding(ds: Dataset, data: bytes) -> bool:
    """True when the file ends in zero bytes after its last element (media padding).

    Some exports pad files to a block size with zeros. They are not DICOM content, but the
    parser reads them as an empty (0000,0000) Command Group Length, which a file may not
    carry. When that is the only group-0000 element, it is empty and everything after the
    last real element is zero, the copy simply omits the padding.
    """
    command = [tag for tag in ds.keys() if (tag >> 16) == 0]
    if command != [0x00000000]:
        return False
    raw = ds.get_item(0x00000000)
    if getattr(raw, "length", None) not in (0, None) or getattr(raw, "value", b"") not in (b"", None):
        return False
    last = ds.get_item(max(tag for tag in ds.keys() if (tag >> 16) != 0))
    tell, length = getattr(last, "value_tell", None), getattr(last, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return False
    end = tell + length
    return end < len(data) and not data[end:].strip(b"\0")


def _has_un(ds: Dataset) -> bool:
    for elem in ds.iterall():
        if elem.VR == "UN":
            return True
    return False


def _swap_binary_to_little(ds: Dataset) -> None:
    """pydicom does not convert OW/OF/OL/OD/OV byte order when writing BE as LE; do it here."""
    for elem in ds.iterall():
        if elem.tag == 0x7FE00010:
            continue
        width = _WORD_SIZE.get(elem.VR)
        if width and elem.value:
            elem.value = np.frombuffer(elem.value, np.dtype(f">u{width}")).astype(f"<u{width}").tobytes()


# -- reading / writing ----------------------------------------------------------------------
def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(io.BytesIO(data))
        except pydicom.errors.InvalidDicomError:
            return pydicom.dcmread(io.BytesIO(data), force=True)


def _original_syntax(ds: Dataset) -> UID:
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax:
        return UID(tsyntax)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _profile_problem(layout: PixelLayout, photometric: str, codec: Codec) -> str | None:
    """Check the image against pydicom's table of what each lossless syntax may carry (PS3.5 §8.2)."""
    from pydicom.pixels.encoders.base import ENCODING_PROFILES

    profiles = ENCODING_PROFILES.get(codec.transfer_syntax)
    if profiles is None:
        return None
    for pi, spp, reprs, allocated, stored in profiles:
        if (
            photometric == pi
            and layout.samples == spp
            and int(layout.signed) in reprs
            and layout.bits_allocated in allocated
            and layout.bits_stored in stored
        ):
            return None
    return (
        f"{photometric}, {layout.samples} sample(s), Bits Allocated {layout.bits_allocated}, "
        f"Bits Stored {layout.bits_stored}, {'signed' if layout.signed else 'unsigned'} not allowed in {codec.transfer_syntax.name}"
    )


def transcode(data: bytes, codec: Codec | str = "jpegls") -> TranscodeResult:
    """Return a verified lossless copy of ``data``, or the reason it keeps its original form."""
    import time

    codec = CODECS[codec] if isinstance(codec, str) else codec
    result = TranscodeResult(outcome=FAILED, original_size=len(data))
    try:
        try:
            ds = _read(data)
        except Exception as exc:  # noqa: BLE001 - any parser failure is reported with its type
            raise _Skip(FAILED, "unreadable", f"{type(exc).__name__}: {exc}"[:300]) from exc
        tsyntax = _original_syntax(ds)
        if tsyntax not in UNCOMPRESSED:
            raise _Skip(SKIPPED_COMPRESSED, "compressed", tsyntax.name)
        if "PixelData" not in ds:
            if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
                raise _Skip(SKIPPED_UNSUPPORTED, "float_pixels")
            raise _Skip(SKIPPED_NON_IMAGE, "non_image")
        little = tsyntax != ExplicitVRBigEndian
        pixel_raw = ds.get_item(0x7FE00010)  # where the pixel element sits in ``data`` (before parsing it)
        padded = _trailing_zero_padding(ds, data)
        if padded:
            del ds[0x00000000]
        elif any((tag >> 16) == 0 for tag in ds.keys()):
            raise _Skip(SKIPPED_UNSUPPORTED, "command_elements")
        layout = _layout(ds)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        problem = _profile_problem(layout, photometric, codec)
        if problem:
            raise _Skip(SKIPPED_UNSUPPORTED, "pixel_format", problem)
        native = native_array(ds, layout, little)
        result.pixel_hash = pixel_hash_of(native, layout)
        result.raw_pixel_hash = hashlib.sha256(bytes(ds.PixelData[: layout.nbytes])).hexdigest()
        _check_high_bits(native, layout)
        if not little and _has_un(ds):
            raise _Skip(SKIPPED_UNSUPPORTED, "big_endian_un")

        started = time.perf_counter()
        new_bytes, rewritten = _encode(data, ds, pixel_raw, native, layout, codec, little)
        result.encode_seconds = time.perf_counter() - started
        if len(new_bytes) >= len(data):
            raise _Skip(SKIPPED_NO_GAIN, "no_gain", f"{len(new_bytes)} >= {len(data)} bytes")

        started = time.perf_counter()
        # The reference for every check: the parse we encoded from when it was left alone,
        # else a fresh, untouched parse.
        original = _read(data) if rewritten else ds
        problem_code, detail = verify_copy(
            original, little, native, layout, new_bytes, codec, padding=padded
        )
        result.verify_seconds = time.perf_counter() - started
        if problem_code:
            raise _Skip(FAILED, problem_code, detail)
        result.outcome = ARCHIVED
        result.data = new_bytes
        result.transfer_syntax = str(codec.transfer_syntax)
        return result
    except _Skip as skip:
        result.outcome, result.reason_code, result.detail = skip.outcome, skip.code, skip.detail
        return result
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a batch; it is reported
        result.outcome, result.reason_code, result.detail = FAILED, "error", f"{type(exc).__name__}: {exc}"[:300]
        return result


_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _meta_end(data: bytes) -> int | None:
    """Offset where the data set starts in a Part-10 file (the file meta is explicit VR LE)."""
    if data[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(data):
        group, _element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            return pos
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            (length,) = struct.unpack_from("<I", data, pos + 8)
            pos += 12 + length
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8 + length
    return None


def _splice_encode(data: bytes, ds: Dataset, raw: object, layout: PixelLayout, codec: Codec, little: bool) -> bytes | None:
    """Fast path for Explicit VR Little Endian files: keep every byte but the pixel element's.

    The data set bytes before Pixel Data (and any elements after it) are copied unchanged;
    only the file meta (new transfer syntax) and the Pixel Data element are written anew.
    This is both faster than re-serialising the data set and unchanged by construction;
    the copy is verified like any other. Returns None when the file does not qualify.
    """
    if not little or _original_syntax(ds) != ExplicitVRLittleEndian or 0x7FE00000 in ds:
        return None
    if layout.samples > 1 and layout.planar != 0:
        return None  # Planar Configuration must be rewritten (PS3.5 8.2.3/8.2.4)
    if not isinstance(raw, RawDataElement) or raw.VR not in ("OB", "OW") or raw.length == 0xFFFFFFFF:
        return None
    start, end = raw.value_tell - 12, raw.value_tell + raw.length
    header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, raw.VR.encode(), 0, raw.length)
    body = _meta_end(data)
    if body is None or body > start or data[start : raw.value_tell] != header:
        return None
    from pydicom.encaps import encapsulate
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.pixels import get_encoder

    frames = list(get_encoder(codec.transfer_syntax).iter_encode(ds, encoding_plugin=codec.encoding_plugin))
    if (len(frames) - 1) * 8 + sum(len(f) for f in frames[:-1]) > 2**32 - 1:
        return None  # needs an Extended Offset Table: let pydicom write it
    meta = pydicom.dataset.FileMetaDataset()
    for elem in ds.file_meta:  # shared elements, only read; the syntax element is a new object
        meta.add(elem)
    meta[0x00020010] = DataElement(0x00020010, "UI", codec.transfer_syntax)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=False)
    suffix = data[end:]
    if not suffix.strip(b"\0"):
        suffix = b""  # zero padding after the last element is not content (see _trailing_zero_padding)
    pixel = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + encapsulate(frames) + _SEQUENCE_DELIMITER
    return b"".join((data[:128], b"DICM", fp.getvalue(), data[body:start], pixel, suffix))


def encode_lossless(data: bytes, codec: Codec | str = "jpegls") -> bytes:
    """The archive's encoder alone (no checks, no verification), for benchmarks."""
    codec = CODECS[codec] if isinstance(codec, str) else codec
    ds = _read(data)
    pixel_raw = ds.get_item(0x7FE00010)
    tsyntax = _original_syntax(ds)
    little = tsyntax != ExplicitVRBigEndian
    layout = _layout(ds)
    return _encode(data, ds, pixel_raw, None, layout, codec, little)[0]


def _encode(
    data: bytes, ds: Dataset, pixel_raw: object, native: np.ndarray | None, layout: PixelLayout, codec: Codec, little: bool
) -> tuple[bytes, bool]:
    """Return (copy, whether ``ds`` was rewritten on the way)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spliced = _splice_encode(data, ds, pixel_raw, layout, codec, little)
    except Exception as exc:  # noqa: BLE001 - the codec's own message is the reason
        raise _Skip(SKIPPED_UNSUPPORTED, "encoder_error", f"{type(exc).__name__}: {exc}"[:300]) from exc
    if spliced is not None:
        return spliced, False
    if native is None:
        native = native_array(ds, layout, little)
    return _rewrite_encode(ds, native, layout, codec, little), True


def _rewrite_encode(ds: Dataset, native: np.ndarray, layout: PixelLayout, codec: Codec, little: bool) -> bytes:
    """General path: pydicom compresses the data set and writes it anew (implicit VR, big endian, no meta)."""
    had_meta = bool(getattr(ds, "file_meta", None)) and "TransferSyntaxUID" in ds.file_meta
    if not had_meta:
        ds.file_meta = ds.get("file_meta") or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = _original_syntax(ds)
    kwargs: dict[str, Any] = {"encoding_plugin": codec.encoding_plugin, "generate_instance_uid": False}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            colour_by_plane = layout.samples > 1 and layout.planar == 1
            if not little:
                # pydicom neither encodes big-endian pixels nor swaps OW/OF/... values when
                # writing little endian: convert the data set to little endian first.
                _swap_binary_to_little(ds)
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            if not little or colour_by_plane:
                # Hand the encoder little-endian, colour-by-pixel samples: PS3.5 8.2.3 (JPEG-LS)
                # and 8.2.4 (JPEG 2000) make Planar Configuration 0 in the compressed copy, and
                # pydicom's JPEG 2000 path does not reorder colour-by-plane input itself.
                ds.PixelData = np.ascontiguousarray(native, dtype=layout.dtype(True)).tobytes()
                ds["PixelData"].VR = "OB" if layout.bits_allocated <= 8 else "OW"
                if colour_by_plane:
                    ds.PlanarConfiguration = 0
            ds.compress(codec.transfer_syntax, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the codec's own message is the reason
        raise _Skip(SKIPPED_UNSUPPORTED, "encoder_error", f"{type(exc).__name__}: {exc}"[:300]) from exc
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmwrite(buf, ds, enforce_file_format=not had_meta)
    except Exception as exc:  # noqa: BLE001
        raise _Skip(SKIPPED_UNSUPPORTED, "encoder_error", f"writing: {type(exc).__name__}: {exc}"[:300]) from exc
    return buf.getvalue()


def verify_copy(
    original: Dataset,
    original_le: bool,
    native: np.ndarray,
    layout: PixelLayout,
    new_bytes: bytes,
    codec: Codec,
    *,
    padding: bool = False,
) -> tuple[str | None, str]:
    """Check a transcoded copy against its original; return (reason_code, detail) or (None, "").

    ``padding`` says the original ended in zero padding that the parser reads as an empty
    (0000,0000) element (see :func:`_trailing_zero_padding`); that pseudo-element is the
    one extra thing the copy may lack.
    """
    try:
        copy = _read(new_bytes)
    except Exception as exc:  # noqa: BLE001
        return "verify_syntax", f"copy does not parse: {type(exc).__name__}: {exc}"
    tsyntax = copy.file_meta.get("TransferSyntaxUID")
    if tsyntax != codec.transfer_syntax or tsyntax not in LOSSLESS_SYNTAXES:
        return "verify_syntax", f"{tsyntax} is not {codec.transfer_syntax.name}"
    skip = DATASET_MAY_CHANGE | ({Tag(0x0000, 0x0000)} if padding else frozenset())
    if layout.samples > 1 and "PlanarConfiguration" in original:
        # The one image attribute the codec must change: colour-by-plane becomes 0.
        if copy.get("PlanarConfiguration") != 0:
            return "verify_elements", "Planar Configuration of a compressed colour image must be 0"
        skip = skip | {PLANAR_CONFIGURATION}
    diff = _compare_meta(original, copy) or compare_elements(original, copy, original_le, True, skip=skip)
    if diff:
        return "verify_elements", diff
    try:
        decoded = decode_pixels(copy, layout, codec.decoding_plugin)
    except Exception as exc:  # noqa: BLE001
        return "verify_pixels", f"copy does not decode: {type(exc).__name__}: {exc}"[:300]
    if decoded.shape != native.shape or not np.array_equal(decoded, native):
        ndiff = int(np.count_nonzero(decoded != native)) if decoded.shape == native.shape else -1
        return "verify_pixels", f"{ndiff} pixel values differ" if ndiff >= 0 else f"shape {decoded.shape} != {native.shape}"
    return None, ""


@cache
def codec_versions(name: str) -> dict[str, str]:
    """Versions of everything that touched an archived object, for the ledger manifest."""
    codec = CODECS[name]
    out = {"pydicom": pydicom.__version__, "numpy": np.__version__}
    for package in codec.packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "missing"
    return out
