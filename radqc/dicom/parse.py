"""Read one uploaded file, decide whether it is an acceptable DICOM instance, and extract
what the catalogue needs.

Every rejection raises :class:`InvalidDicom` with a stable ``reason_code`` (used by the
quarantine, statistics and hospital feedback) and a readable reason in Chinese and English.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from radqc.text import bilingual

#: reason_code -> (Chinese, English) text shown to hospitals.
REASONS: dict[str, tuple[str, str]] = {
    "empty_file": ("空文件（0 字节）", "empty file (0 bytes)"),
    "not_dicom": ("不是 DICOM 文件", "not a DICOM file"),
    "truncated": ("DICOM 文件被截断", "truncated DICOM file"),
    "corrupt": ("DICOM 文件已损坏，无法解析", "corrupt DICOM file, cannot be parsed"),
    "invalid_element": ("DICOM 元素长度或取值非法", "invalid DICOM element length or value"),
    "missing_tag": ("缺少必需的 DICOM 标签", "required DICOM tag missing"),
    "no_pixel_data": ("图像类对象缺少像素数据", "image object without pixel data"),
    "pixel_data_short": ("像素数据长度不足", "pixel data shorter than the image size requires"),
    "oversized": ("文件超过大小上限", "file larger than the configured limit"),
    "unsafe_path": ("压缩包成员路径不安全（../ 或绝对路径）", "unsafe zip member path (../ or absolute)"),
    "zip_bomb": ("压缩包解压比例或总量异常（疑似压缩炸弹）", "zip expands beyond the allowed ratio or total (zip bomb)"),
    "bad_zip": ("压缩包损坏，无法读取", "corrupt zip archive"),
    "unreadable": ("文件无法读取", "file cannot be read"),
    "bad_record": ("HIS/RIS 记录格式错误", "malformed HIS/RIS record"),
}

REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")

#: Non-image storage classes that legitimately carry no pixels even though their names say "Image".
_PIXEL_FREE_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.11.1"}  # Grayscale Softcopy Presentation State


class InvalidDicom(ValueError):
    """The file is not an acceptable DICOM instance; ``reason_code`` says why."""

    def __init__(self, reason_code: str, detail: str = "") -> None:
        self.reason_code = reason_code
        self.detail = detail
        super().__init__(bilingual(REASONS, reason_code, detail))


def reason_text(reason_code: str, detail: str = "") -> str:
    return bilingual(REASONS, reason_code, detail)


@dataclass
class ParsedInstance:
    """What ingest keeps of one DICOM file (identifiers are encrypted before they are stored)."""

    sop_instance_uid: str
    sop_class_uid: str | None
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax: str | None
    modality: str | None
    accession_number: str | None
    study_datetime: datetime | None
    study_description: str | None
    series_number: int | None
    series_description: str | None
    body_part: str | None
    instance_number: int | None
    institution_code: str
    institution_name: str | None
    patient: dict[str, str] = field(default_factory=dict)
    pixel_hash: str | None = None
    #: SHA-256 of the data set without its Part-10 file header: the same instance written by
    #: two different nodes (a PACS, a CD export) has different meta headers but equal data sets.
    dataset_hash: str | None = None
    header: dict[str, Any] = field(default_factory=dict)


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset, keyword: str) -> list[float] | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, str):
            return [float(v) for v in value]
        return [float(value)]
    except (TypeError, ValueError):
        return None


def parse_dicom_datetime(date: str | None, time: str | None = None) -> datetime | None:
    if not date:
        return None
    try:
        stamp = datetime.strptime(date.strip()[:8], "%Y%m%d")
    except ValueError:
        return None
    if time:
        digits = time.strip().split(".")[0]
        try:
            hh, mm, ss = int(digits[0:2] or 0), int(digits[2:4] or 0), int(digits[4:6] or 0)
            stamp = stamp.replace(hour=hh, minute=mm, second=ss)
        except ValueError:
            pass
    return stamp


def requires_pixels(sop_class_uid: str | None) -> bool:
    """Image storage SOP classes must carry pixel data; SR, KOS, RT plans etc. need not."""
    if not sop_class_uid or sop_class_uid in _PIXEL_FREE_IMAGE_CLASSES:
        return False
    name = UID(sop_class_uid).name
    return "Image Storage" in name


def _read(data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), defer_size=None)
    except InvalidDicomError:
        pass
    except (EOFError, OSError) as exc:
        raise InvalidDicom("truncated", str(exc)) from exc
    except Exception as exc:  # pydicom raises many types on garbage
        raise InvalidDicom("corrupt", f"{type(exc).__name__}: {exc}") from exc
    # No 128-byte preamble: accept a raw data set only when it really looks like one.
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise InvalidDicom("not_dicom", f"{type(exc).__name__}") from exc
    if not all(k in ds for k in REQUIRED_UIDS[:1]) and "SOPInstanceUID" not in ds:
        raise InvalidDicom("not_dicom", "no DICM preamble and no DICOM identifiers")
    return ds


def _touch_all_elements(ds: Dataset) -> None:
    """Convert every element's raw bytes so a wrong VR length surfaces now, not in a later stage."""
    with warnings.catch_warnings():
        # Warnings (a malformed IS/DS string) are common in real exports and do not lose data;
        # only a value pydicom cannot convert at all is a reason to refuse the file.
        warnings.simplefilter("ignore")
        try:
            for elem in ds.iterall():
                _ = elem.value
        except InvalidDicom:
            raise
        except Exception as exc:
            raise InvalidDicom("invalid_element", f"{type(exc).__name__}: {exc}"[:500]) from exc


def _expected_native_bytes(ds: Dataset) -> int | None:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    total_bits = rows * cols * samples * frames * bits
    return (total_bits + 7) // 8


def _check_pixels(ds: Dataset) -> str | None:
    """Validate pixel data presence and length; return a hash of native pixel bytes."""
    sop_class = _text(ds, "SOPClassUID")
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_pixels:
        if requires_pixels(sop_class):
            raise InvalidDicom("no_pixel_data", f"SOP class {UID(sop_class).name if sop_class else '?'}")
        return None
    if "PixelData" not in ds:
        return None
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    raw = ds.PixelData
    if tsyntax is not None and UID(tsyntax).is_compressed:
        from pydicom.encaps import generate_fragments

        try:
            fragments = list(generate_fragments(raw))
        except Exception as exc:
            raise InvalidDicom("truncated", f"encapsulated pixel data: {exc}") from exc
        if not fragments or not any(len(f) for f in fragments):
            raise InvalidDicom("pixel_data_short", "no compressed fragments")
        return None
    expected = _expected_native_bytes(ds)
    if expected is not None and len(raw) < expected:
        raise InvalidDicom("pixel_data_short", f"{len(raw)} of {expected} bytes")
    return hashlib.sha256(_canonical_pixel_bytes(ds, raw, tsyntax)[: expected or len(raw)]).hexdigest()


def _canonical_pixel_bytes(ds: Dataset, raw: bytes, tsyntax: str | None) -> bytes:
    """Native pixels as little-endian, colour-by-pixel bytes: the one layout every pixel hash uses.

    The same image then hashes the same whether it arrived big-endian, colour-by-plane or
    little-endian, and after lossless archive compression (``radqc verify`` relies on it).
    """
    bits = int(ds.get("BitsAllocated", 8) or 8)
    big_endian = tsyntax is not None and UID(tsyntax) == "1.2.840.10008.1.2.2"
    if big_endian:
        # 8-bit pixels in an OW element are still swapped as 16-bit words in big endian.
        word = bits // 8 if bits in (16, 32, 64) else (2 if ds["PixelData"].VR == "OW" else 1)
        if word > 1:
            usable = len(raw) - len(raw) % word
            raw = np.frombuffer(raw[:usable], dtype=f">u{word}").astype(f"<u{word}").tobytes()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples > 1 and int(ds.get("PlanarConfiguration", 0) or 0) == 1 and bits % 8 == 0:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        width = bits // 8
        if len(raw) == frames * samples * rows * cols * width:
            planes = np.frombuffer(raw, dtype=np.uint8).reshape(frames, samples, rows * cols, width)
            raw = np.ascontiguousarray(planes.transpose(0, 2, 1, 3)).tobytes()
    return raw


def _institution(ds: Dataset) -> tuple[str, str | None]:
    name = _text(ds, "InstitutionName")
    seq = ds.get("InstitutionCodeSequence")
    if seq:
        code = seq[0].get("CodeValue")
        if code:
            return str(code).strip(), name
    if name:
        return f"NAME:{name}", name
    return "UNKNOWN", None


HEADER_KEYWORDS = (
    "ImageType",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
    "PhotometricInterpretation",
    "ConvolutionKernel",
    "KVP",
    "Manufacturer",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "StationName",
    "ProtocolName",
    "ViewPosition",
    "ImageLaterality",
    "AcquisitionDate",
    "AcquisitionTime",
    "ContentDate",
    "ContentTime",
    "WindowCenter",
    "WindowWidth",
    "RescaleSlope",
    "RescaleIntercept",
    "ContrastBolusAgent",
    "ScanningSequence",
    "SequenceVariant",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "MagneticFieldStrength",
    # series classification (pipelines/series): MR sequence family, derived series, dynamics
    "EchoTrainLength",
    "ScanOptions",
    "MRAcquisitionType",
    "SequenceName",
    "FlipAngle",
    "AngioFlag",
    "DiffusionBValue",
    "NumberOfTemporalPositions",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "NominalPercentageOfCardiacPhase",
    "DerivationDescription",
    "ReconstructionDiameter",
    "ContrastBolusRoute",
    "ContrastBolusVolume",
    "SeriesTime",
)

#: Vendor private b-value elements (GE (0043,1039) first value, Siemens (0019,100C)), read
#: when the standard DiffusionBValue is absent; stored as ``DiffusionBValue`` with
#: ``DiffusionBValueSource`` saying where it came from.
#: Referenced source SOP instances kept per derived image (enough to find the source series).
MAX_SOURCE_REFS = 2

PRIVATE_B_VALUE = (((0x0043, 0x1039), "GEMS_PARM_01"), ((0x0019, 0x100C), "SIEMENS MR HEADER"))


def _header(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword in HEADER_KEYWORDS:
        if keyword not in ds:
            continue
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            out[keyword] = [_jsonable(v) for v in value]
        else:
            out[keyword] = _jsonable(value)
    sources = ds.get("SourceImageSequence")
    if sources:
        # A derived series (MPR, MIP, ADC, VR) names its source images: the series classifier
        # links it to its source series (its phase and item follow the source).
        refs = [str(item.get("ReferencedSOPInstanceUID", "")) for item in list(sources)[:MAX_SOURCE_REFS]]
        refs = [r for r in refs if r]
        if refs:
            out["SourceSOPInstanceUIDs"] = refs
    if "DiffusionBValue" not in out:
        for tag, creator in PRIVATE_B_VALUE:
            element = ds.get(tag)
            if element is None or element.value in (None, "", b""):
                continue
            value = element.value
            first = value[0] if isinstance(value, (list, pydicom.multival.MultiValue)) else value
            try:
                out["DiffusionBValue"] = float(first.decode() if isinstance(first, bytes) else first)
                out["DiffusionBValueSource"] = creator
                break
            except (TypeError, ValueError):
                continue
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (int, float, str)):
        return value
    try:
        as_float = float(value)
        return int(as_float) if as_float.is_integer() and "." not in str(value) else as_float
    except (TypeError, ValueError):
        return str(value)


def parse_instance(data: bytes) -> ParsedInstance:
    """Parse and validate one file's bytes; raise :class:`InvalidDicom` when it is unacceptable."""
    if len(data) == 0:
        raise InvalidDicom("empty_file")
    ds = _read(data)
    try:
        parsed = _extract(ds)
        parsed.dataset_hash = hashlib.sha256(data[_dataset_offset(data) :]).hexdigest()
        return parsed
    except InvalidDicom:
        raise
    except Exception as exc:  # any other failure while reading values is a corrupt file
        raise InvalidDicom("corrupt", f"{type(exc).__name__}: {exc}"[:500]) from exc


def _dataset_offset(data: bytes) -> int:
    """Byte offset where the data set starts, after the preamble and the file meta group."""
    if len(data) >= 144 and data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00":
        group_length = int.from_bytes(data[140:144], "little")
        return min(144 + group_length, len(data))
    return 0


def _extract(ds: Dataset) -> ParsedInstance:
    _touch_all_elements(ds)
    missing = [k for k in REQUIRED_UIDS if not _text(ds, k)]
    if missing:
        raise InvalidDicom("missing_tag", ", ".join(missing))
    pixel_hash = _check_pixels(ds)
    code, inst_name = _institution(ds)
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    patient = {
        k: v
        for k, v in {
            "patient_id": _text(ds, "PatientID"),
            "patient_name": _text(ds, "PatientName"),
            "patient_birth_date": _text(ds, "PatientBirthDate"),
            "patient_sex": _text(ds, "PatientSex"),
            "id_number": _text(ds, "OtherPatientIDs"),
        }.items()
        if v
    }
    sop_class = _text(ds, "SOPClassUID") or (
        str(ds.file_meta.MediaStorageSOPClassUID) if "MediaStorageSOPClassUID" in getattr(ds, "file_meta", {}) else None
    )
    return ParsedInstance(
        sop_instance_uid=str(ds.SOPInstanceUID).strip(),
        sop_class_uid=sop_class,
        study_instance_uid=str(ds.StudyInstanceUID).strip(),
        series_instance_uid=str(ds.SeriesInstanceUID).strip(),
        transfer_syntax=str(tsyntax) if tsyntax else None,
        modality=_text(ds, "Modality"),
        accession_number=_text(ds, "AccessionNumber"),
        study_datetime=parse_dicom_datetime(_text(ds, "StudyDate"), _text(ds, "StudyTime")),
        study_description=_text(ds, "StudyDescription"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        body_part=_text(ds, "BodyPartExamined"),
        instance_number=_int(ds, "InstanceNumber"),
        institution_code=code,
        institution_name=inst_name,
        patient=patient,
        pixel_hash=pixel_hash,
        header=_header(ds),
    )
