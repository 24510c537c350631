"""Write rendered series as DICOM files (plus NIfTI label maps) and return their truth.

One base data set per series carries the Patient, General Study, General Series, Frame of
Reference and General Equipment modules; per image only the SOP instance UID, instance
number, geometry, pixels and per-image attributes change, so writing costs about one
``dcmwrite`` per file. Header corruption (``ImagingSpec.header_noise``) is applied here
and recorded next to the true values.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..spec import SeriesTruth
from .context import ExamContext
from .image_ops import burn_text
from .series import SC_IMAGE, SeriesOut, words

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's root, used for the class UID of our writer
IMPLEMENTATION_VERSION = "RADQC_SYNTH_1"
NATIVE = {str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)}
#: header keys the planner may pass that are not DICOM keywords
NON_DICOM_HEADER_KEYS = {"uid_prefix", "language", "urgency", "institution_code", "acquisition_minutes", "body_parts", "laterality"}
BODY_PARTS = ["HEAD", "NECK", "CHEST", "ABDOMEN", "PELVIS", "CSPINE", "TSPINE", "LSPINE", "KNEE", "EXTREMITY", "SKULL", "HEART"]

_SLUG = re.compile(r"[^A-Za-z0-9_+-]+")
#: elements that change from one image of a series to the next (everything else is encoded once)
PER_IMAGE = {
    "SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation", "ImageOrientationPatient",
    "PixelSpacing", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "PixelData", "SourceImageSequence",
}


class _Encoder:
    """Encodes a series' constant elements once; per image only the changing ones.

    pydicom spends ~25 us per element per file; a 300-slice series with 80 elements each
    would spend most of its time re-encoding identical bytes. Per-image elements of simple
    VRs are encoded here directly (little endian, explicit or implicit VR) and merged in
    tag order, so the files are what a plain ``dcmwrite`` of the same data set gives.
    """

    def __init__(self, implicit: bool, charset: Any, sop_class: str, transfer_syntax: str) -> None:
        self.implicit = implicit
        self.encodings = convert_encodings(charset) if charset else None
        self.static: list[tuple[int, bytes]] = []
        self.static_tags: set[int] = set()
        self.dynamic: set[int] = set()
        self.meta_head, self.meta_tail = self._meta_parts(sop_class, transfer_syntax)
        self._seq_cache: dict[tuple[str, ...], bytes] = {}

    def _encode(self, elem) -> bytes:  # type: ignore[no-untyped-def]
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = self.implicit
        write_data_element(fp, elem, self.encodings)
        return fp.getvalue()

    def freeze(self, ds: Dataset, dynamic: set[int]) -> None:
        self.dynamic = dynamic
        self.static = [(int(e.tag), self._encode(e)) for e in ds if int(e.tag) not in dynamic]
        self.static_tags = {t for t, _ in self.static}

    def _element(self, keyword: Any, value: Any) -> tuple[int, bytes]:
        if isinstance(keyword, tuple):  # private (group, element, VR)
            group, element, vr = keyword
            ds = Dataset()
            ds.add_new((group, element), vr, value)
            return (group << 16) | element, self._encode(ds[(group, element)])
        tag, vr = _tag_vr(keyword)
        if keyword == "PixelData":
            vr = "OW" if self._pixel_wide else "OB"
            if isinstance(value, _EncapsulatedPixels):  # undefined length, OB
                return tag, struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00\xff\xff\xff\xff" + value.data
        if keyword == "SourceImageSequence":
            key = tuple(str(item.ReferencedSOPInstanceUID) for item in value)
            cached = self._seq_cache.get(key)
            if cached is None:
                ds = Dataset()
                ds.SourceImageSequence = value
                cached = self._seq_cache[key] = self._encode(ds["SourceImageSequence"])
            return tag, cached
        body = _value_bytes(vr, value)
        if body is None:
            ds = Dataset()
            _set(ds, keyword, value)
            return tag, self._encode(ds[tag])
        group, elem = tag >> 16, tag & 0xFFFF
        head = struct.pack("<HH", group, elem)
        if self.implicit:
            return tag, head + struct.pack("<I", len(body)) + body
        if vr in _LONG_VRS:
            return tag, head + vr.encode() + b"\x00\x00" + struct.pack("<I", len(body)) + body
        return tag, head + vr.encode() + struct.pack("<H", len(body)) + body

    _pixel_wide = True

    def dataset_bytes_from(self, values: dict[str, Any]) -> bytes:
        self._pixel_wide = int(values.get("BitsAllocated", 16)) > 8
        dyn = sorted((self._element(k, v) for k, v in values.items() if v is not None), key=lambda x: x[0])
        out: list[bytes] = []
        i = j = 0
        st = self.static
        while i < len(st) or j < len(dyn):
            if j >= len(dyn) or (i < len(st) and st[i][0] < dyn[j][0]):
                out.append(st[i][1])
                i += 1
            else:
                out.append(dyn[j][1])
                j += 1
        return b"".join(out)

    @staticmethod
    def _meta_parts(sop_class: str, transfer_syntax: str) -> tuple[bytes, bytes]:
        def el(elem: int, vr: str, body: bytes) -> bytes:
            if vr in _LONG_VRS:
                return struct.pack("<HH", 2, elem) + vr.encode() + b"\x00\x00" + struct.pack("<I", len(body)) + body
            return struct.pack("<HH", 2, elem) + vr.encode() + struct.pack("<H", len(body)) + body

        head = el(0x0001, "OB", b"\x00\x01") + el(0x0002, "UI", _pad_uid(sop_class))
        tail = el(0x0010, "UI", _pad_uid(str(transfer_syntax))) + el(0x0012, "UI", _pad_uid(IMPLEMENTATION_UID)) + el(0x0013, "SH", _pad_text(IMPLEMENTATION_VERSION))
        return head, tail

    def meta_bytes_for(self, sop_uid: str) -> bytes:
        body = _pad_uid(sop_uid)
        inst = struct.pack("<HH", 2, 3) + b"UI" + struct.pack("<H", len(body)) + body
        rest = self.meta_head + inst + self.meta_tail
        group_length = struct.pack("<HH", 2, 0) + b"UL" + struct.pack("<H", 4) + struct.pack("<I", len(rest))
        return b"\x00" * 128 + b"DICM" + group_length + rest


class _EncapsulatedPixels:
    """Compressed pixel data, already encapsulated (basic offset table + fragment + delimiter)."""

    def __init__(self, frame: bytes) -> None:
        from pydicom.encaps import encapsulate

        self.data = encapsulate([frame]) + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # + sequence delimiter


def _compress_frame(ts: UID, pixels: np.ndarray, values: dict[str, Any]) -> bytes | None:
    """One frame encoded with pydicom's encoder for ``ts``; None when no plugin can encode it."""
    from pydicom.pixels import get_encoder

    arr = np.ascontiguousarray(pixels)
    # A frame the plugin refuses (openjpeg: a small image with more resolution levels than its
    # tiles allow) is written uncompressed by the caller; the plugins log that refusal at ERROR
    # with a traceback, which read as a crashed render in the console. Quiet while encoding.
    quiet = [logging.getLogger(n) for n in ("pydicom.pixels.encoders.base", "openjpeg.encode", "openjpeg")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    try:
        return get_encoder(ts).encode(
            arr,
            rows=int(values["Rows"]), columns=int(values["Columns"]), samples_per_pixel=int(values["SamplesPerPixel"]),
            bits_allocated=int(values["BitsAllocated"]), bits_stored=int(values["BitsStored"]),
            pixel_representation=int(values["PixelRepresentation"]), photometric_interpretation=str(values["PhotometricInterpretation"]),
            number_of_frames=1, planar_configuration=int(values.get("PlanarConfiguration", 0)),
        )
    except (RuntimeError, ValueError):
        return None
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


@lru_cache(maxsize=512)
def _tag_vr(keyword: str) -> tuple[int, str]:
    return int(tag_for_keyword(keyword)), dictionary_VR(keyword)  # type: ignore[arg-type]


_LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UN", "UT", "UC", "UR"}


def _pad_uid(uid: str) -> bytes:
    b = uid.encode("ascii")
    return b + b"\x00" if len(b) % 2 else b


def _pad_text(text: str) -> bytes:
    b = text.encode("utf-8")
    return b + b" " if len(b) % 2 else b


def _value_bytes(vr: str, value: Any) -> bytes | None:
    """Encode simple VRs directly; None means 'let pydicom do it'."""
    if vr in ("OB", "OW") and isinstance(value, (bytes, bytearray)):
        return bytes(value) + (b"\x00" if len(value) % 2 else b"")
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if vr == "US":
        return struct.pack(f"<{len(values)}H", *(int(v) for v in values))
    if vr == "SS":
        return struct.pack(f"<{len(values)}h", *(int(v) for v in values))
    if vr == "UI":
        return _pad_uid(str(value))
    if vr in ("IS", "DS", "CS"):
        text = "\\".join(str(v) for v in values)
        return _pad_text(text)
    return None


def _dt(value: datetime) -> tuple[str, str]:
    return value.strftime("%Y%m%d"), value.strftime("%H%M%S")


def study_dataset(ctx: ExamContext) -> Dataset:
    """Patient / study / equipment attributes shared by every instance of the exam."""
    spec = ctx.spec
    h = spec.header
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    date, time = _dt(ctx.study_dt)
    digest = hashlib.sha256(f"{spec.seed}/{spec.exam_key}".encode()).hexdigest()
    ds.PatientName = h.get("PatientName") or f"SYNTH^{spec.exam_key[:24]}"
    ds.PatientID = h.get("PatientID") or f"P{int(digest[:10], 16) % 10**9:09d}"
    ds.PatientBirthDate = h.get("PatientBirthDate") or f"{ctx.study_dt.year - int(spec.age):04d}0101"
    ds.PatientSex = spec.sex
    ds.PatientAge = f"{int(spec.age):03d}Y"
    ds.StudyInstanceUID = h.get("StudyInstanceUID") or ctx.uid("study")
    ds.StudyDate, ds.StudyTime = date, time
    ds.AccessionNumber = h.get("AccessionNumber") or f"A{int(digest[10:20], 16) % 10**10:010d}"
    ds.StudyID = h.get("StudyID") or str(int(digest[20:26], 16) % 100000)
    ds.ReferringPhysicianName = h.get("ReferringPhysicianName", "")
    regions = "+".join(words("region", r).get("zh", r) for r in spec.regions)
    ds.StudyDescription = h.get("StudyDescription") or f"{regions} {spec.modality}"
    ds.Manufacturer = ctx.vendor["manufacturer"]
    ds.ManufacturerModelName = ctx.model["name"]
    ds.InstitutionName = h.get("InstitutionName") or "Synthetic Hospital"
    ds.StationName = h.get("StationName") or f"{ctx.vendor_key.upper()}{spec.modality}{int(digest[26:28], 16) % 9 + 1}"
    ds.DeviceSerialNumber = h.get("DeviceSerialNumber") or f"{int(digest[28:36], 16) % 10**8:08d}"
    sw = ctx.vendor.get("software", ["1.0"])
    ds.SoftwareVersions = sw[int(digest[36:38], 16) % len(sw)]
    if h.get("institution_code"):
        code = Dataset()
        code.CodeValue = str(h["institution_code"])[:16]
        code.CodingSchemeDesignator = "99RADQC"
        code.CodeMeaning = str(h.get("InstitutionName") or h["institution_code"])[:64]
        ds.InstitutionCodeSequence = [code]
    for key, value in h.items():
        if key in NON_DICOM_HEADER_KEYS or value is None:
            continue
        if tag_for_keyword(key) is None:
            ctx.notes.append(f"header key {key!r} is not a DICOM keyword; ignored")
            continue
        vr = dictionary_VR(key) if tag_for_keyword(key) is not None else ""
        setattr(ds, key, fit_text(vr, value))
    return ds


class SeriesWriter:
    """Writes every series of one exam; keeps the shared study data set and the truth list."""

    def __init__(self, ctx: ExamContext) -> None:
        self.ctx = ctx
        self.study = study_dataset(ctx)
        self.truths: list[SeriesTruth] = []
        self.pixel_hashes: dict[str, str] = {}
        self.noise_rng = ctx.rng("header_noise")
        self.clock = ctx.study_dt
        minutes = ctx.spec.header.get("acquisition_minutes")
        #: seconds per series when the planner fixed the exam's duration (device-time truth, F3)
        self.per_series_s: float | None = None
        if minutes:
            self.per_series_s = float(minutes) * 60.0
        ts = str(ctx.spec.transfer_syntax or ExplicitVRLittleEndian)
        if ts not in NATIVE and not UID(ts).is_compressed:
            raise ValueError(f"unsupported transfer syntax {ts}: use implicit/explicit little endian or a lossless compressed syntax")
        self.transfer_syntax = UID(ts)
        self.n_series = 1

    # ------------------------------------------------------------------ header noise
    def _header_noise(self, s: SeriesOut) -> dict[str, Any]:
        """Apply ImagingSpec.header_noise to one series; return the truth to record."""
        hn = self.ctx.spec.header_noise or {}
        truth: dict[str, Any] = {"body_part_true": s.body_part, "description_true": s.description}

        def hits(key: str) -> bool:
            value = hn.get(key)
            if value is None or value is False:
                return False
            if isinstance(value, (list, tuple, set)):
                return s.role in value
            if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < float(value) < 1:
                return bool(self.noise_rng.random() < float(value))
            return True

        if s.body_part is None:
            return truth
        if hits("body_part_missing"):
            s.body_part = None
            truth["body_part_header"] = None
            truth["body_part_missing"] = True
        elif hits("body_part_wrong"):
            given = hn.get("body_part_wrong")
            choices = [b for b in BODY_PARTS if b != truth["body_part_true"]]
            wrong = given if isinstance(given, str) else choices[int(self.noise_rng.integers(len(choices)))]
            s.body_part = wrong
            truth["body_part_header"] = wrong
            truth["body_part_wrong"] = True
        else:
            truth["body_part_header"] = s.body_part
        if hits("protocol_pinyin") and s.protocol:
            py = " ".join(words("region", r).get("py", r) for r in self.ctx.spec.regions)
            s.protocol = f"{py} changgui"
            truth["protocol_pinyin"] = True
        if hits("description_wrong"):
            given = hn.get("description_wrong")
            s.description = given if isinstance(given, str) else _wrong_description(s, self.noise_rng)
            truth["description_wrong"] = True
        truth["description_header"] = s.description
        return truth

    # ------------------------------------------------------------------ writing
    def write(self, s: SeriesOut) -> SeriesTruth:
        ctx = self.ctx
        s.series_number = s.series_number or ctx.next_series_number()
        header_part = ctx.spec.header.get("BodyPartExamined")
        if header_part and len(ctx.spec.regions) == 1 and s.body_part:
            s.body_part = str(header_part)  # the planner's body part for the ordered item is the truth
        s.series_uid = ctx.uid("series", s.series_number, s.role)
        noise_truth = self._header_noise(s)
        ds = Dataset()
        ds.update(self.study)
        default_s = s.truth.pop("duration_s", 20)
        step = self.per_series_s / max(self.n_series, 1) if self.per_series_s else default_s
        self.clock = self.clock + timedelta(seconds=float(step))
        series_date, series_time = _dt(self.clock)
        ds.Modality = s.modality
        ds.SeriesInstanceUID = s.series_uid
        ds.SeriesNumber = s.series_number
        ds.SeriesDescription = fit_text("LO", s.description)
        if s.protocol:
            ds.ProtocolName = fit_text("LO", s.protocol)
        if s.body_part:
            ds.BodyPartExamined = s.body_part
        elif "BodyPartExamined" in ds:
            del ds.BodyPartExamined  # header noise: missing
        if s.modality in ("DX", "CR") and "Laterality" in ds:
            del ds.Laterality  # radiographs carry ImageLaterality (Laterality there is a 2C error)
        elif (s.body_part in PAIRED_PARTS or not s.body_part) and "Laterality" not in ds and s.modality not in ("DX", "CR"):
            ds.Laterality = ""  # Type 2C: required (may be empty) for a paired body part
        ds.SeriesDate, ds.SeriesTime = series_date, series_time
        ds.ContentDate, ds.ContentTime = series_date, series_time
        if s.modality in ("CT", "MR") and s.sop_class != SC_IMAGE:
            ds.PatientPosition = ds.get("PatientPosition") or "HFS"
            ds.FrameOfReferenceUID = s.attrs.pop("FrameOfReferenceUID", None) or ctx.uid("for", s.series_number)
            ds.PositionReferenceIndicator = ""
        if s.modality in ("CT", "MR") or s.sop_class == SC_IMAGE:
            ds.AcquisitionDate, ds.AcquisitionTime = series_date, series_time
        if s.sop_class == SC_IMAGE:
            s.attrs.pop("FrameOfReferenceUID", None)
        for key, value in s.attrs.items():
            _set(ds, key, value)
        burned = None
        if s.burn_identifiers and ctx.spec.burned_in_identifiers:
            burned = {"text": [str(self.study.PatientName).replace("^", " "), str(self.study.PatientID), str(self.study.get("OtherPatientIDs", "")) or ds.AccessionNumber]}
            ds.BurnedInAnnotation = "YES"
        elif "BurnedInAnnotation" not in ds and s.modality in ("DX", "CR") or s.sop_class == SC_IMAGE:
            ds.BurnedInAnnotation = ds.get("BurnedInAnnotation", "NO")
        folder = ctx.exam_dir / f"{s.series_number:03d}_{_SLUG.sub('_', s.role)[:24]}"
        folder.mkdir(parents=True, exist_ok=True)
        s.sop_uids, s.files = [], []
        burn_boxes: list[dict[str, Any]] = []
        encoder: _Encoder | None = None
        used_ts: set[str] = set()
        ref_cache: dict[tuple[int, ...], list[Dataset]] = {}
        ref_class = s.derived_from.sop_class if s.derived_from else None
        ds.SOPClassUID = s.sop_class
        ds.InstanceCreationDate, ds.InstanceCreationTime = series_date, series_time
        fast = self.transfer_syntax in NATIVE
        series_ts = self.transfer_syntax
        implicit = self.transfer_syntax == ImplicitVRLittleEndian
        for i in range(len(s.images)):
            img = s.images[i]
            sop_uid = ctx.uid("sop", s.series_number, s.role, i)
            pixels = img.pixels
            if s.on_image is not None:
                s.on_image(i, pixels)
            if burned is not None:
                pixels = pixels.copy()
                bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
                top = float(2 ** (bits - (1 if pixels.dtype.kind == "i" else 0)) - 1)
                boxes = burn_text(pixels, burned["text"], top, "tl")
                if i == 0:
                    burn_boxes = boxes
            values: dict[str, Any] = {"SOPInstanceUID": sop_uid, "InstanceNumber": i + 1}
            if img.position is not None:
                values["ImagePositionPatient"] = [_ds(v) for v in img.position]
                if img.orientation is not None and tuple(img.orientation) == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
                    values["SliceLocation"] = _ds(img.position[2])
            if img.orientation is not None:
                values["ImageOrientationPatient"] = [_ds(v) for v in img.orientation]
            if img.spacing is not None:
                values["PixelSpacing"] = [_ds(img.spacing[0]), _ds(img.spacing[1])]
            for key, value in img.attrs.items():
                values[key] = _ds(value) if isinstance(key, str) and isinstance(value, float) and dictionary_VR(key) == "DS" else value
            values.update(_pixel_values(ds, pixels))
            if s.derived_from is not None and img.sources:
                src_key = tuple(img.sources)
                if src_key not in ref_cache:
                    refs = []
                    for k in img.sources:
                        item = Dataset()
                        item.ReferencedSOPClassUID = ref_class
                        item.ReferencedSOPInstanceUID = s.derived_from.sop_uids[k]
                        refs.append(item)
                    ref_cache[src_key] = refs
                values["SourceImageSequence"] = ref_cache[src_key]
            raw = values["PixelData"]
            self.pixel_hashes[sop_uid] = hashlib.sha256(raw).hexdigest()
            path = folder / f"IM{i + 1:05d}.dcm"
            if not fast and encoder is not None:
                frame = _compress_frame(series_ts, pixels, values)
                if frame is None:  # this image cannot be encoded: explicit VR from here on
                    fast, encoder, series_ts = True, None, ExplicitVRLittleEndian
                else:
                    values["PixelData"] = _EncapsulatedPixels(frame)
            if encoder is not None:
                data = encoder.meta_bytes_for(sop_uid) + encoder.dataset_bytes_from(values)
                path.write_bytes(data)
            else:
                for key, value in values.items():
                    _set(ds, key, value)
                ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID = s.sop_class
                meta.MediaStorageSOPInstanceUID = sop_uid
                meta.TransferSyntaxUID = series_ts if fast else ExplicitVRLittleEndian
                meta.ImplementationClassUID = IMPLEMENTATION_UID
                meta.ImplementationVersionName = IMPLEMENTATION_VERSION
                ds.file_meta = meta
                dynamic = {int(tag_for_keyword(k)) for k in PER_IMAGE | {k for k in values if isinstance(k, str)} if tag_for_keyword(k) is not None}
                dynamic |= {(k[0] << 16) | k[1] for k in values if isinstance(k, tuple)}
                if not fast:
                    frame = _compress_frame(series_ts, pixels, values)
                    if frame is None:
                        fast, series_ts = True, ExplicitVRLittleEndian
                    else:
                        values["PixelData"] = _EncapsulatedPixels(frame)
                encoder = _Encoder(implicit and series_ts == ImplicitVRLittleEndian, ds.get("SpecificCharacterSet"), s.sop_class, series_ts)
                encoder.freeze(ds, dynamic)
                path.write_bytes(encoder.meta_bytes_for(sop_uid) + encoder.dataset_bytes_from(values))
            used_ts.add(str(series_ts))
            s.sop_uids.append(sop_uid)
            s.files.append(str(path.relative_to(ctx.out_dir)))
        label_path = self._write_labels(s)
        extra: dict[str, Any] = {**s.truth, **noise_truth, "series_number": s.series_number, "sop_class_uid": s.sop_class}
        extra["transfer_syntax"] = sorted(used_ts) if used_ts else [str(self.transfer_syntax)]
        if burned is not None:
            extra["burned_in"] = {"text": burned["text"], "boxes": burn_boxes, "all_instances": True}
        truth = SeriesTruth(
            series_instance_uid=s.series_uid,
            role=s.role,
            description=s.description,
            modality=s.modality,
            n_instances=len(s.files),
            files=s.files,
            plane=s.plane,
            phase=s.phase,
            kernel=s.kernel,
            slice_thickness_mm=s.thickness,
            derived_from=s.derived_from.series_uid if s.derived_from else None,
            slice_regions=list(s.slice_regions),
            label_map=label_path,
            extra=extra,
        )
        self.truths.append(truth)
        return truth

    def _write_labels(self, s: SeriesOut) -> str | None:
        if s.label_volume is None:
            return None
        import SimpleITK as sitk

        labels, origin, spacing, direction = s.label_volume
        img = sitk.GetImageFromArray(np.ascontiguousarray(labels))
        img.SetOrigin(tuple(float(v) for v in origin))
        img.SetSpacing(tuple(float(v) for v in spacing))
        img.SetDirection(tuple(float(v) for v in direction))
        self.ctx.labels_dir.mkdir(parents=True, exist_ok=True)
        path = self.ctx.labels_dir / f"{s.series_number:03d}_{_SLUG.sub('_', s.role)[:24]}.nii.gz"
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(path))
        writer.SetUseCompression(True)
        writer.Execute(img)
        try:
            return str(path.relative_to(self.ctx.out_dir))
        except ValueError:
            return str(path)


#: maximum value length in bytes (UTF-8) per text VR, so multi-byte Chinese stays valid
MAX_BYTES = {"LO": 64, "SH": 16, "CS": 16, "PN": 64, "ST": 1024, "LT": 10240, "AE": 16}
#: body parts whose series need Laterality (General Series, Type 2C)
PAIRED_PARTS = {"EXTREMITY", "KNEE", "HIP", "SHOULDER", "ELBOW", "WRIST", "HAND", "ANKLE", "FOOT", "LEG", "ARM", "BREAST", "EYE", "EAR"}


def fit_text(vr: str, value: Any) -> Any:
    """Clip a text value to its VR's length (in UTF-8 bytes, on a character boundary)."""
    limit = MAX_BYTES.get(vr)
    if limit is None or not isinstance(value, str):
        return value
    data = value.encode("utf-8")
    if len(data) <= limit:
        return value
    return data[:limit].decode("utf-8", errors="ignore").rstrip()


def _ds(v: float) -> str:
    """DS string of at most 16 characters."""
    text = f"{float(v):.6g}"
    return text if len(text) <= 16 else f"{float(v):.8e}"[:16]


def _set(ds: Dataset, key: str, value: Any) -> None:
    if value is None:
        if key in ds:
            del ds[key]
        return
    if isinstance(key, tuple):  # private (group, element, VR)
        group, element, vr = key
        ds.add_new((group, element), vr, value)
        return
    if isinstance(value, str):
        value = fit_text(dictionary_VR(key), value)
    if isinstance(value, float) and dictionary_VR(key) == "DS":
        value = _ds(value)
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], float) and dictionary_VR(key) == "DS":
        value = [_ds(v) for v in value]
    setattr(ds, key, value)


def _pixel_values(ds: Dataset, pixels: np.ndarray) -> dict[str, Any]:
    """Image Pixel module values for ``pixels`` (BitsStored from the series if narrower)."""
    out: dict[str, Any] = {}
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        out.update(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0, BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0)
    else:
        bits = pixels.dtype.itemsize * 8
        stored = int(ds.get("BitsStored", bits) or bits)
        stored = min(stored, bits)
        out.update(SamplesPerPixel=1, PhotometricInterpretation=str(ds.get("PhotometricInterpretation") or "MONOCHROME2"), BitsAllocated=bits, BitsStored=stored, HighBit=stored - 1, PixelRepresentation=1 if pixels.dtype.kind == "i" else 0)
    out["Rows"], out["Columns"] = int(pixels.shape[0]), int(pixels.shape[1])
    out["PixelData"] = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)).tobytes()
    return out


def _wrong_description(s: SeriesOut, rng: np.random.Generator) -> str:
    pool = {
        "lung": ["STANDARD 5mm", "软组织 5mm", "Abdomen 5mm"],
        "soft": ["LUNG 1.25mm", "肺窗 1mm", "Bone 1mm"],
        "bone": ["Soft tissue 5mm", "STANDARD", "肺窗"],
    }
    if s.modality == "MR":
        options = ["T1 SE", "FLAIR", "DWI", "t2_tse_tra", "STIR"]
    else:
        options = pool.get(s.kernel or "", ["Head 5mm", "头颅平扫", "Knee"])
    return options[int(rng.integers(len(options)))]


def tag_keyword(tag: int) -> str:
    return keyword_for_tag(tag) or ""
