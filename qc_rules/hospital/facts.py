"""Facts per exam (CONTRACT §1) from a hospital folder and a records file, offline.

The platform builds facts from the catalogue; before upload, the hospital has only files: a
folder of DICOM studies and a HIS/RIS export. This module reads both the way the platform
will (records through the ingest's own readers and validator, DICOM headers only), matches
records to studies the way the ingest links them (StudyInstanceUID, then accession number,
then patient + exam time within the link tolerance and a compatible modality), normalises
what can be normalised and fills missing record fields from DICOM tags, logging every change.

A record that the platform would refuse is not dropped here: its readable fields still make
an exam, and each field the validator rejects becomes a blocking problem the report lists
(the hospital must fix it before the upload, or the platform quarantines the record).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from radqc.pipelines.ingest.records import (
    ExamRecordIn,
    RawRecord,
    RecordsFileError,
    _error_lines,
    detect_format,
    is_placeholder,
    modalities_compatible,
    read_csv,
    read_jsonl,
    vocabulary,
)
from radqc.qc_rules.hospital.normalise import (
    CST,
    SOURCE_ALIAS,
    SOURCE_NUMBER,
    Change,
    iso_time,
    normalise_record,
    normalise_value,
    parse_loose_time,
    recover_from_dicom,
)

#: The exam-record fields of docs/records-schema.md that every facts dict carries (CONTRACT §1).
RECORD_FIELDS = (
    "accession_number", "hospital_code", "patient_id", "patient_name", "patient_sex",
    "patient_birth_date", "id_number", "phone", "modality", "exam_items", "urgency",
    "order_time", "exam_time", "report_time", "review_time", "upload_time", "technician",
    "report_doctor", "review_doctor", "findings", "impression",
)
#: DICOM-derived facts (None when the exam has no images).
DICOM_FIELDS = (
    "dicom_modalities", "series_count", "instance_count", "study_instance_uid",
    "dicom_accession_number", "dicom_patient_sex", "dicom_study_time", "body_parts", "series",
    "duplicate_sop_uids",
)
LIST_FIELDS = frozenset({"exam_items"})
#: Files never read as DICOM (exports put them beside the images).
SKIP_NAMES = frozenset({"dicomdir", "thumbs.db", ".ds_store"})


class FileRejected(ValueError):
    """A file the platform's ingest would quarantine; ``study_uid`` when its header was readable."""

    def __init__(self, code: str, detail: str = "", study_uid: str | None = None) -> None:
        super().__init__(code, detail)
        self.code, self.detail, self.study_uid = code, detail, study_uid


@dataclass
class FileProblem:
    """A file of the folder that is not a usable DICOM instance (reported, never fatal)."""

    path: str
    code: str  # a reason code of radqc.dicom.parse.REASONS (the quarantine's codes)
    detail: str = ""
    study_uid: str | None = None

    def reason(self) -> str:
        from radqc.dicom.parse import reason_text

        return reason_text(self.code, self.detail)


@dataclass
class SeriesAcc:
    uid: str
    modality: str | None = None
    description: str | None = None
    body_part: str | None = None
    n_instances: int = 0
    slice_thickness: float | None = None
    pixel_spacing: list[float] = field(default_factory=list)
    kernel: str | None = None
    window_centers: list[float] = field(default_factory=list)
    window_widths: list[float] = field(default_factory=list)
    image_type: list[str] = field(default_factory=list)
    protocol_name: str | None = None
    manufacturer: str | None = None

    def to_fact(self) -> dict[str, Any]:
        return {
            "series_instance_uid": self.uid, "modality": self.modality, "description": self.description,
            "body_part": self.body_part, "n_instances": self.n_instances,
            "slice_thickness": self.slice_thickness, "pixel_spacing": list(self.pixel_spacing),
            "kernel": self.kernel, "window_centers": list(self.window_centers),
            "window_widths": list(self.window_widths), "image_type": list(self.image_type),
            "protocol_name": self.protocol_name, "manufacturer": self.manufacturer,
        }


@dataclass
class Study:
    """What the folder holds of one StudyInstanceUID (headers only)."""

    uid: str
    accession_number: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    patient_sex: str | None = None
    patient_birth_date: str | None = None
    institution_code: str | None = None
    institution_name: str | None = None
    study_time: datetime | None = None
    series: dict[str, SeriesAcc] = field(default_factory=dict)
    sop_uids: Counter[str] = field(default_factory=Counter)
    folders: set[str] = field(default_factory=set)

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.series.values() if s.modality})


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _floats(value: Any) -> list[float]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, str)) else [value]
    out = []
    for v in items:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            continue
    return out


def _study_time(ds: Any) -> datetime | None:
    from radqc.dicom.parse import parse_dicom_datetime

    stamp = parse_dicom_datetime(_text(ds, "StudyDate"), _text(ds, "StudyTime"))
    if stamp is None:
        return None
    offset = _text(ds, "TimezoneOffsetFromUTC")
    if offset:
        aware = parse_loose_time(stamp.strftime("%Y%m%d%H%M%S") + (offset if offset[0] in "+-" else "+" + offset))
        if aware is not None:
            return aware
    return stamp.replace(tzinfo=CST)


def _institution(ds: Any) -> str | None:
    seq = ds.get("InstitutionCodeSequence")
    if seq:
        code = seq[0].get("CodeValue")
        if code:
            return str(code).strip()
    return None


#: Values longer than this are not read (pixel data): only their lengths, to spot truncation.
DEFER_BYTES = 256


def read_header(source: Path | bytes) -> Any:
    """The DICOM header of one file (a path, or a zip member's bytes) without reading its
    pixels; raise :class:`FileRejected`.

    Pixel data is deferred, not skipped, so its declared length is known: a file shorter than
    its pixel data says is truncated, and an image whose encapsulated pixel data ends before
    its delimiter has none; the platform's ingest quarantines both.
    """
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    from radqc.dicom.parse import requires_pixels

    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size == 0:
        raise FileRejected("empty_file")

    def target() -> Any:
        return str(source) if isinstance(source, Path) else io.BytesIO(source)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(target(), defer_size=DEFER_BYTES)
        except InvalidDicomError:
            try:
                ds = pydicom.dcmread(target(), defer_size=DEFER_BYTES, force=True)
            except Exception as exc:
                raise FileRejected("not_dicom", type(exc).__name__) from exc
            if "SOPInstanceUID" not in ds and "StudyInstanceUID" not in ds:
                raise FileRejected("not_dicom", "no DICM preamble and no DICOM identifiers") from None
        except (OSError, EOFError) as exc:
            raise FileRejected("truncated" if isinstance(exc, EOFError) else "unreadable", str(exc)[:200]) from exc
        except Exception as exc:  # pydicom raises many types on garbage
            raise FileRejected("corrupt", f"{type(exc).__name__}: {exc}"[:200]) from exc
    try:
        missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not _text(ds, k)]
    except Exception as exc:  # a UID value pydicom cannot decode
        raise FileRejected("corrupt", f"{type(exc).__name__}: {exc}"[:200]) from exc
    if missing:
        raise FileRejected("missing_tag", ", ".join(missing))
    study_uid = str(ds.StudyInstanceUID).strip()
    if "PixelData" in ds:
        item = ds.get_item("PixelData", keep_deferred=True)
        tell, length = getattr(item, "value_tell", None), getattr(item, "length", None)
        if tell is not None and length is not None and length != 0xFFFFFFFF and tell + length > size:
            raise FileRejected("truncated", f"{size} < {tell + length} bytes", study_uid)
    else:
        sop_class = _text(ds, "SOPClassUID") or str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "") or "")
        if requires_pixels(sop_class or None):
            raise FileRejected("no_pixel_data", "", study_uid)
    return ds


def scan_folder(root: Path) -> tuple[dict[str, Study], list[FileProblem]]:
    """Read every file under ``root`` (headers only) and group instances by StudyInstanceUID.

    Files are walked exactly as ``radqc ingest`` walks them (recursing into zip files, skipping
    DICOMDIR, refusing oversized files, unsafe zip member names and zip bombs), so what this
    reports as unreadable is what the upload would quarantine.
    """
    from radqc.config import load_settings
    from radqc.pipelines.ingest.folder import WalkReport, _read_task, walk

    studies: dict[str, Study] = {}
    problems: list[FileProblem] = []
    report = WalkReport([], [])
    for task in walk(root, load_settings(), report):
        if task.reject:
            problems.append(FileProblem(task.ref, task.reject, task.reject_detail))
            continue
        if Path(task.path).name.lower() in SKIP_NAMES and task.member is None:
            continue
        try:
            source: Path | bytes = Path(task.path) if task.member is None else _read_task(task)
            ds = read_header(source)
        except FileRejected as exc:
            problems.append(FileProblem(task.ref, exc.code, exc.detail, exc.study_uid))
            continue
        except (OSError, ValueError, RuntimeError, EOFError) as exc:  # zip member unreadable
            problems.append(FileProblem(task.ref, "unreadable", f"{type(exc).__name__}: {exc}"[:200]))
            continue
        try:
            _add_instance(studies, ds, Path(task.path) / task.member if task.member else Path(task.path))
        except Exception as exc:  # a value pydicom cannot convert: report the file, go on
            problems.append(FileProblem(task.ref, "corrupt", f"{type(exc).__name__}: {exc}"[:200]))
    for missing in report.dicomdir_missing:
        problems.append(FileProblem(missing, "unreadable", "referenced by DICOMDIR, not on the medium / DICOMDIR 引用的文件缺失"))
    return studies, problems


def _add_instance(studies: dict[str, Study], ds: Any, path: Path) -> None:
    uid = str(ds.StudyInstanceUID).strip()
    study = studies.get(uid)
    if study is None:
        study = studies[uid] = Study(uid)
    study.folders.add(str(path.parent))
    for attr, keyword in (
        ("accession_number", "AccessionNumber"), ("patient_id", "PatientID"), ("patient_name", "PatientName"),
        ("patient_sex", "PatientSex"), ("patient_birth_date", "PatientBirthDate"),
    ):
        if getattr(study, attr) is None:
            setattr(study, attr, _text(ds, keyword))
    if study.institution_code is None:
        study.institution_code = _institution(ds)
    if study.institution_name is None:
        study.institution_name = _text(ds, "InstitutionName")
    if study.study_time is None:
        study.study_time = _study_time(ds)
    study.sop_uids[str(ds.SOPInstanceUID).strip()] += 1
    suid = str(ds.SeriesInstanceUID).strip()
    series = study.series.get(suid)
    if series is None:
        series = study.series[suid] = SeriesAcc(suid)
    series.n_instances += 1
    for attr, keyword in (
        ("modality", "Modality"), ("description", "SeriesDescription"), ("body_part", "BodyPartExamined"),
        ("protocol_name", "ProtocolName"), ("manufacturer", "Manufacturer"),
    ):
        if getattr(series, attr) is None:
            setattr(series, attr, _text(ds, keyword))
    if series.n_instances > 1:
        return
    # Per-series header facts come from the series' first instance, as on the platform
    # (radqc.qc_rules.facts.series_facts), so both sides feed the rules the same values.
    kernel = ds.get("ConvolutionKernel")
    if kernel not in (None, ""):
        series.kernel = str(kernel[0]) if not isinstance(kernel, str) and hasattr(kernel, "__iter__") else str(kernel)
    thick = _floats(ds.get("SliceThickness"))
    series.slice_thickness = thick[0] if thick else None
    series.pixel_spacing = _floats(ds.get("PixelSpacing"))
    value = ds.get("ImageType")
    if value not in (None, ""):
        series.image_type = [str(v) for v in value] if not isinstance(value, str) else value.split("\\")
    series.window_centers = _floats(ds.get("WindowCenter"))
    series.window_widths = _floats(ds.get("WindowWidth"))


def _main_modality(series: list[SeriesAcc]) -> str | None:
    """The modality with the most instances (a CT with a dose-report SR series is a CT)."""
    counts: Counter[str] = Counter()
    for s in series:
        if s.modality:
            counts[s.modality] += s.n_instances
    return max(sorted(counts), key=lambda m: counts[m]) if counts else None


def study_facts(studies: list[Study]) -> dict[str, Any]:
    """The DICOM-derived facts of one exam (one or more studies sharing an accession)."""
    if not studies:
        return {**{k: None for k in DICOM_FIELDS}, "dicom_patient_id": None, "dicom_patient_birth_date": None,
                "dicom_modality": None, "dicom_institution_code": None, "dicom_patient_name": None,
                "dicom_institution": None}
    first = studies[0]
    series = [s for st in studies for s in st.series.values()]
    sops: Counter[str] = Counter()
    for st in studies:
        sops.update(st.sop_uids)
    modalities = sorted({m for st in studies for m in st.modalities})
    return {
        "dicom_modalities": modalities,
        "series_count": len(series),
        "instance_count": len(sops),  # distinct SOP instances, as the platform counts them
        "study_instance_uid": first.uid,
        "dicom_accession_number": first.accession_number,
        "dicom_patient_sex": first.patient_sex,
        "dicom_study_time": iso_time(first.study_time) if first.study_time else None,
        "body_parts": sorted({s.body_part for s in series if s.body_part}),
        "series": [s.to_fact() for s in series],
        "duplicate_sop_uids": sum(n - 1 for n in sops.values() if n > 1),
        "dicom_patient_id": first.patient_id,
        "dicom_patient_name": first.patient_name,
        "dicom_patient_birth_date": first.patient_birth_date,
        "dicom_institution": first.institution_name,
        "dicom_modality": _main_modality(series),
        "dicom_institution_code": first.institution_code,
        "study_instance_uids": [st.uid for st in studies],
    }


# -- records --------------------------------------------------------------------------------
@dataclass
class RecordProblem:
    """Why (part of) a record would be refused by the platform's records validation."""

    code: str  # the ingest's bad_record sub-code: encoding, not_json, not_object, csv_columns, kind, invalid_field
    fields: list[str]
    message: str


@dataclass
class RecordEntry:
    """One exam record of the records file, normalised and validated."""

    line: int
    source_ref: str
    fields: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    unreadable: bool = False
    #: Later lines of the same record (same hospital + accession): re-sends, applied as updates.
    resends: list[str] = field(default_factory=list)
    #: Values set aside because the ingest would reject them (kept for the normalised export).
    rejected: dict[str, Any] = field(default_factory=dict)


def read_records(path: Path, fmt: str = "auto") -> tuple[list[RecordEntry], int]:
    """Exam records of a records file (charge lines are counted and skipped).

    Raise :class:`RecordsFileError` when the file as a whole cannot be read (as the ingest does).
    """
    if not path.is_file():
        raise RecordsFileError(f"文件不存在 / no such file: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    reader = read_csv if fmt == "csv" else read_jsonl
    entries: list[RecordEntry] = []
    charges = 0
    vocab = vocabulary()
    with path.open("rb") as handle:
        for raw in reader(handle):
            ref = f"{path}:{raw.line}"
            if raw.error is not None or raw.fields is None:
                entries.append(_unreadable(raw, ref))
                continue
            fields = dict(raw.fields)
            declared = fields.pop("record_type", None)
            kind = vocab.record_types.get(str(declared).strip().lower()) if declared not in (None, "") else None
            if kind == "charge" or (kind is None and declared in (None, "") and fields.get("charge_code") not in (None, "")):
                charges += 1
                continue
            entries.append(validate_record(fields, raw.line, ref))
            if kind is None and declared not in (None, ""):
                entries[-1].problems.append(
                    RecordProblem("kind", ["record_type"], f"record_type {str(declared)[:32]!r} 无法识别 / unknown record_type")
                )
    return entries, charges


def _unreadable(raw: RawRecord, ref: str) -> RecordEntry:
    assert raw.error is not None
    zh, en = vocabulary().bad_record_codes.get(raw.error[0], (raw.error[0], raw.error[0]))
    message = f"第 {raw.line} 行 / line {raw.line}: {zh} / {en}" + (f": {raw.error[1]}" if raw.error[1] else "")
    entry = RecordEntry(raw.line, ref, {}, unreadable=True)
    entry.problems.append(RecordProblem(raw.error[0], [], message))
    return entry


def validate_record(fields: dict[str, Any], line: int, ref: str) -> RecordEntry:
    """Normalise, then validate with the ingest's own model; invalid fields are set aside."""
    normalised, changes = normalise_record(fields)
    entry = RecordEntry(line, ref, normalised, changes)
    candidate = {k: v for k, v in normalised.items() if v is not None}
    # Identity fields are checked by the completeness rules; fill stand-ins so the model
    # validates every other field instead of stopping at the first missing one.
    stand_ins = {"hospital_code": "-", "accession_number": "-"}
    for _ in range(len(candidate) + 1):
        probe = {**stand_ins, **candidate}
        try:
            model = ExamRecordIn.model_validate(probe)
        except ValidationError as exc:
            texts, names = _error_lines(exc)
            bad = {n.split(".")[0] for n in names}
            for text, name in zip(texts, names, strict=False):
                entry.problems.append(RecordProblem("invalid_field", [name.split(".")[0]], f"第 {line} 行 / line {line}: {text}"))
            removable = bad & set(candidate)
            if not removable:
                break
            for name in removable:
                candidate.pop(name, None)
            continue
        for name in RECORD_FIELDS:
            if name not in candidate:
                continue
            value = getattr(model, name, None)
            if isinstance(value, datetime):
                entry.fields[name] = iso_time(value)
            elif isinstance(value, date):
                entry.fields[name] = value.isoformat()
            elif value is not None:
                entry.fields[name] = value
        for name in {n for p in entry.problems for n in p.fields}:
            if entry.fields.get(name) is not None:
                entry.rejected[name] = entry.fields[name]
            entry.fields[name] = None  # a rejected value is not a fact; rules see it as missing
        break
    return entry


# -- matching -------------------------------------------------------------------------------
@dataclass
class ExamInput:
    """One exam to check: its record (if any), its studies (if any), and the facts built."""

    key: str
    record: RecordEntry | None
    studies: list[Study]
    link: str  # study_instance_uid | accession | patient_time | none | images_only
    facts: dict[str, Any] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    #: The record as it should be sent: normalised, completed from DICOM, rejected values kept.
    normalised_record: dict[str, Any] | None = None


def merge_resends(entries: list[RecordEntry]) -> list[RecordEntry]:
    """Lines of one record (same hospital + accession) as the ingest applies them: each valid
    line updates the fields it carries (omitted fields are kept); a line the ingest would
    quarantine changes nothing, and its problems are reported on the record."""
    out: list[RecordEntry] = []
    groups: dict[tuple[Any, Any], list[RecordEntry]] = {}
    for entry in entries:
        acc = entry.fields.get("accession_number")
        if entry.unreadable or not acc:
            out.append(entry)
            continue
        key = (entry.fields.get("hospital_code"), acc)
        if key not in groups:
            groups[key] = []
            out.append(entry)  # placeholder, replaced below
        groups[key].append(entry)
    merged: dict[int, RecordEntry] = {}
    for lines in groups.values():
        valid = [e for e in lines if not e.problems]
        base = valid[0] if valid else lines[0]
        record = RecordEntry(base.line, base.source_ref, dict(base.fields), list(base.changes), [], False,
                             rejected=dict(base.rejected))
        for e in lines:
            if e is base:
                continue
            record.resends.append(e.source_ref)
            if e.problems or base.problems:
                continue
            record.fields.update({k: v for k, v in e.fields.items() if v is not None})
            record.changes.extend(e.changes)
        for e in lines:
            record.problems.extend(e.problems)
        merged[id(lines[0])] = record
    return [merged.get(id(e), e) for e in out]


def match(records: list[RecordEntry], studies: dict[str, Study]) -> list[ExamInput]:
    """Pair records with studies like the ingest links them; leftovers stand alone."""
    records = merge_resends(records)
    free = dict(studies)
    exams: list[ExamInput] = []
    tolerance = vocabulary().link_tolerance
    for entry in records:
        f = entry.fields
        taken: list[Study] = []
        link = "none"
        uid = f.get("study_instance_uid")
        if not entry.unreadable and uid and uid in free:
            taken, link = [free.pop(uid)], "study_instance_uid"
        acc = f.get("accession_number")
        if not taken and acc:
            uids = [u for u, st in free.items() if st.accession_number and _same_code(st.accession_number, acc)
                    and _same_hospital(st, f.get("hospital_code"))]
            if uids:
                taken, link = [free.pop(u) for u in uids], "accession"
        if not taken and f.get("patient_id") and f.get("exam_time"):
            when = parse_loose_time(f["exam_time"])
            best: tuple[float, str] | None = None
            for u, st in free.items():
                if st.patient_id != f["patient_id"] or st.study_time is None or when is None:
                    continue
                if not _same_hospital(st, f.get("hospital_code")):  # a patient ID is per hospital
                    continue
                if f.get("modality") and st.modalities and not any(modalities_compatible(f["modality"], m) for m in st.modalities):
                    continue
                gap = abs((st.study_time - when).total_seconds())
                if gap <= tolerance.total_seconds() and (best is None or gap < best[0]):
                    best = (gap, u)
            if best is not None:
                taken, link = [free.pop(best[1])], "patient_time"
        key = acc or (f"line {entry.line}")
        exams.append(ExamInput(str(key), entry, taken, link))
    for st in free.values():
        exams.append(ExamInput(st.accession_number or st.uid, None, [st], "images_only"))
    return exams


def _same_hospital(study: Study, hospital_code: str | None) -> bool:
    """Images whose institution code is a different real hospital never join the record
    (the ingest's rule); images without a code (or only a name) may."""
    code = study.institution_code
    return not code or not hospital_code or is_placeholder(code) or code == hospital_code


def _same_code(a: str, b: str) -> bool:
    return normalise_value("accession_number", a)[0] == normalise_value("accession_number", b)[0]


def _neutral() -> dict[str, Any]:
    """The engine's neutral fact set (every known name, empty), so rules never miss a name."""
    try:
        from radqc.qc_rules.engine.names import neutral_facts
    except ImportError:  # the engine is optional for building facts
        return {}
    return neutral_facts()


def build_facts(exam: ExamInput, now: datetime) -> dict[str, Any]:
    """The CONTRACT §1 facts dict of one exam; fills ``exam.facts`` and ``exam.changes``."""
    record_fields = dict(exam.record.fields) if exam.record else {}
    changes = list(exam.record.changes) if exam.record else []
    dicom = study_facts(exam.studies)
    if exam.studies:
        changes.extend(recover_from_dicom(record_fields, dicom))
    facts: dict[str, Any] = _neutral()
    for key, value in record_fields.items():
        facts[key] = value
    for name in RECORD_FIELDS:
        value = facts.get(name)
        facts[name] = (value if value is not None else []) if name in LIST_FIELDS else value
    if isinstance(facts.get("exam_items"), str):
        facts["exam_items"] = [facts["exam_items"]]
    facts.setdefault("index_string", None)
    facts.setdefault("index_series_count", None)
    facts.setdefault("index_instance_count", None)
    record_uid = record_fields.get("study_instance_uid")
    facts.update(dicom)
    if not exam.studies:
        facts["study_instance_uid"] = record_uid
    facts["record_count"] = 1 if exam.record is not None else 0
    facts["now"] = iso_time(now)
    exam.facts, exam.changes = facts, changes
    if exam.record is not None:
        derived = {c.field for c in changes if c.source.startswith(SOURCE_ALIAS) or c.source == SOURCE_NUMBER}
        out = {k: v for k, v in record_fields.items() if v is not None and k not in derived}
        out.update(exam.record.rejected)
        exam.normalised_record = out
    return facts
