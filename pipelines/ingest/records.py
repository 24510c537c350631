"""HIS/RIS exam records and charge lines: ``radqc ingest-records FILE``.

Hospitals send three things besides images: the order (检查申请), the report (报告) and the
charges (收费明细). They arrive as JSON Lines or CSV exports of the HIS/RIS, often in GB18030,
with naive local times and the odd broken line. This module turns each line into a validated
:class:`ExamRecordIn` or :class:`ChargeLineIn` (pydantic v2; the field names are a public
contract, see docs/records-schema.md), writes it to the catalogue and links it to the exam
its images belong to.

Rules that keep the catalogue trustworthy:

* a malformed line is quarantined (reason ``bad_record``, the line's bytes kept in the object
  store, ``source_ref`` = ``FILE:LINE``) and the rest of the file goes on;
* patient identifiers never reach the catalogue in clear: the patient row is found by the
  same HMAC-SM3 pseudonym DICOM ingest uses (:func:`~radqc.pipelines.ingest.service.patient_for`)
  and identifiers are SM4-encrypted;
* re-ingesting a file is a no-op; a re-sent record with new content updates the row and keeps
  what it replaced in ``extra["history"]`` (reports get amended; auditors need the history);
* records and images link by accession number (the record's hospital is authoritative over a
  DICOM ``NAME:``/``UNKNOWN`` placeholder), or by patient + exam time when there is no
  accession, in whichever order they arrive.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.crypto import IdentifierVault
from radqc.dicom.parse import ParsedInstance, reason_text
from radqc.pipelines.ingest.service import (
    catalogue_time,
    from_catalogue_time,
    patient_for,
    patient_pseudonym,
)
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

SCHEMA_FILE = Path(__file__).with_name("records_schema.yaml")
SOURCE = "records"
REASON_CODE = "bad_record"

INGESTED = "ingested"
UPDATED = "updated"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"

EXAM = "exam"
CHARGE = "charge"

#: Documented identifier fields of an exam record: stored only SM4-encrypted on the patient row.
IDENTIFIER_FIELDS = ("patient_id", "patient_name", "patient_sex", "patient_birth_date", "id_number", "phone")
#: Exam-record fields kept as ExamRecord columns (compared field by field on a re-send).
RECORD_COLUMNS = (
    "accession_number",
    "modality",
    "exam_items",
    "urgency",
    "order_time",
    "exam_time",
    "report_time",
    "review_time",
    "upload_time",
    "technician",
    "report_doctor",
    "review_doctor",
    "findings",
    "impression",
)
#: Documented optional exam-record fields with no column of their own: kept in extra["fields"].
OPTIONAL_FIELDS = (
    "hospital_name",
    "study_instance_uid",
    "department",
    "ordering_doctor",
    "clinical_diagnosis",
    "patient_type",
)
CHARGE_COLUMNS = (
    "accession_number",
    "hospital_code",
    "charge_id",
    "charge_code",
    "charge_name",
    "quantity",
    "unit_price",
    "amount",
    "charge_time",
    "catalogue",
    "province",
)
PLACEHOLDER_PREFIX = "NAME:"
PLACEHOLDER_UNKNOWN = "UNKNOWN"
UTF8_BOM = b"\xef\xbb\xbf"
GB18030_BOM = b"\x84\x31\x95\x33"


class RecordsFileError(ValueError):
    """The file as a whole cannot be read as records (not one bad line: that is quarantined)."""


# -- vocabularies ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocabulary:
    """The data half of the schema (records_schema.yaml): aliases, tolerances, error texts."""

    naive_offset: timedelta
    link_tolerance: timedelta
    amount_tolerance: float
    record_types: dict[str, str]
    sex_aliases: dict[str, str]
    urgency_aliases: dict[str, str]
    modality_group: dict[str, str]
    extra_identifier_fields: frozenset[str]
    charge_identifier_fields: frozenset[str]
    error_texts_zh: dict[str, str]
    bad_record_codes: dict[str, tuple[str, str]]


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    data = yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))
    groups: dict[str, str] = {}
    for group in data["modality_groups"]:
        for name in group:
            groups[str(name).upper()] = str(group[0]).upper()
    return Vocabulary(
        naive_offset=timedelta(hours=float(data["naive_time_utc_offset_hours"])),
        link_tolerance=timedelta(hours=float(data["link_time_tolerance_hours"])),
        amount_tolerance=float(data["amount_tolerance"]),
        record_types={str(k).lower(): v for k, v in data["record_types"].items()},
        sex_aliases={str(k).lower(): v for k, v in data["sex_aliases"].items()},
        urgency_aliases={str(k).lower(): v for k, v in data["urgency_aliases"].items()},
        modality_group=groups,
        extra_identifier_fields=frozenset(str(f).lower() for f in data["extra_identifier_fields"]),
        charge_identifier_fields=frozenset(str(f).lower() for f in data["charge_identifier_fields"]),
        error_texts_zh=dict(data["error_texts_zh"]),
        bad_record_codes={k: (v[0], v[1]) for k, v in data["bad_record_codes"].items()},
    )


# -- value parsing --------------------------------------------------------------------------
_SLASH_DATE = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})")
_DATE_ONLY = re.compile(r"^\d{4}-?\d{2}-?\d{2}$")
TIME_ERROR = (
    "时间格式错误，应为 ISO 8601 日期时间（如 2024-03-05T10:20:00+08:00）"
    " / not an ISO 8601 date-time (e.g. 2024-03-05T10:20:00+08:00)"
)


def _slash_to_dash(text: str) -> str:
    match = _SLASH_DATE.match(text)
    if not match:
        return text
    y, mo, d = match.groups()
    return f"{y}-{int(mo):02d}-{int(d):02d}" + text[match.end() :]


def parse_time(value: Any) -> datetime:
    """ISO 8601 date-time -> aware UTC; a naive time is China Standard Time (+08:00).

    Also accepted, because Chinese HIS exports write them: ``2024/03/05 10:20:00``. A date
    without a time of day is refused: linking by time needs the time.
    """
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        text = _slash_to_dash(value.strip())
        if _DATE_ONLY.match(text):
            raise ValueError("只有日期，缺少时刻 / a date without a time of day")
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(TIME_ERROR) from None
    else:
        raise ValueError(TIME_ERROR)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone(vocabulary().naive_offset))
    return stamp.astimezone(UTC)


def parse_birth_date(value: Any) -> date:
    """``YYYY-MM-DD``, ``YYYYMMDD`` or ``YYYY/MM/DD`` (a date-time keeps its date)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = _slash_to_dash(value.strip())
        try:
            return date.fromisoformat(text)
        except ValueError:
            try:
                return datetime.fromisoformat(text).date()
            except ValueError:
                pass
    raise ValueError("出生日期格式错误，应为 YYYY-MM-DD / birth date must be YYYY-MM-DD")


def parse_items(value: Any) -> list[str]:
    """A list as JSON array or ``|``-separated text (CSV cells); item names kept as written."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError("exam_items 不是有效的 JSON 数组 / exam_items is not a valid JSON array") from None
        else:
            return [part.strip() for part in text.split("|") if part.strip()]
    if isinstance(value, list):
        items = []
        for item in value:
            if item is None or (isinstance(item, str) and not item.strip()):
                continue
            if isinstance(item, (dict, list)):
                raise ValueError("exam_items 的元素必须是文本 / exam_items entries must be text")
            items.append(str(item).strip())
        return items
    raise ValueError("exam_items 必须是列表或以 | 分隔的文本 / exam_items must be a list or |-separated text")


# -- record models (the public schema) ------------------------------------------------------
Str16 = Annotated[str, StringConstraints(max_length=16)]
Str32 = Annotated[str, StringConstraints(max_length=32)]
Str64 = Annotated[str, StringConstraints(max_length=64)]
Str256 = Annotated[str, StringConstraints(max_length=256)]


class _RecordIn(BaseModel):
    model_config = ConfigDict(
        extra="allow", str_strip_whitespace=True, allow_inf_nan=False, coerce_numbers_to_str=True
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        """An empty CSV cell or empty string means "not given", never "set to empty"."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None or (isinstance(v, str) and not v.strip()))}
        return data

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ExamRecordIn(_RecordIn):
    """One exam record: the order, its times and people, and the report (检查申请/报告)."""

    accession_number: Str64 | None = None
    hospital_code: Str64
    hospital_name: Str256 | None = None
    study_instance_uid: Str64 | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    patient_sex: Literal["M", "F", "O"] | None = None
    patient_birth_date: date | None = None
    id_number: str | None = None
    phone: str | None = None
    modality: Str16 | None = None
    exam_items: list[Str256] = []
    urgency: Literal["emergency", "routine"] | None = None
    order_time: datetime | None = None
    exam_time: datetime | None = None
    report_time: datetime | None = None
    review_time: datetime | None = None
    upload_time: datetime | None = None
    technician: Str64 | None = None
    report_doctor: Str64 | None = None
    review_doctor: Str64 | None = None
    findings: str | None = None
    impression: str | None = None
    department: Str256 | None = None
    ordering_doctor: Str64 | None = None
    clinical_diagnosis: str | None = None
    patient_type: Str32 | None = None

    @field_validator("order_time", "exam_time", "report_time", "review_time", "upload_time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime:
        return parse_time(value)

    @field_validator("patient_birth_date", mode="before")
    @classmethod
    def _birth(cls, value: Any) -> date:
        return parse_birth_date(value)

    @field_validator("exam_items", mode="before")
    @classmethod
    def _items(cls, value: Any) -> list[str]:
        return parse_items(value)

    @field_validator("patient_sex", mode="before")
    @classmethod
    def _sex(cls, value: Any) -> Any:
        return vocabulary().sex_aliases.get(str(value).strip().lower(), value) if isinstance(value, str) else value

    @field_validator("urgency", mode="before")
    @classmethod
    def _urgency(cls, value: Any) -> Any:
        return vocabulary().urgency_aliases.get(str(value).strip().lower(), value) if isinstance(value, str) else value

    @field_validator("modality", mode="before")
    @classmethod
    def _modality(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("hospital_code")
    @classmethod
    def _real_hospital(cls, value: str) -> str:
        if value.startswith(PLACEHOLDER_PREFIX) or value == PLACEHOLDER_UNKNOWN:
            raise ValueError(
                "hospital_code 不能是占位编码 NAME:… 或 UNKNOWN，应为机构代码"
                " / hospital_code must be the institution code, not a NAME:… or UNKNOWN placeholder"
            )
        return value

    @model_validator(mode="after")
    def _identity(self) -> ExamRecordIn:
        if not self.accession_number and not (self.patient_id and self.exam_time):
            raise ValueError(
                "缺少 accession_number，且未同时提供 patient_id 与 exam_time"
                " / accession_number missing, and not both patient_id and exam_time given"
            )
        return self

    def identifiers(self) -> dict[str, str]:
        """Everything that identifies the patient: encrypted on the patient row, nowhere else."""
        vocab = vocabulary()
        out = {
            "patient_id": self.patient_id,
            "patient_name": self.patient_name,
            "patient_sex": self.patient_sex,
            "patient_birth_date": self.patient_birth_date.isoformat() if self.patient_birth_date else None,
            "id_number": self.id_number,
            "phone": self.phone,
        }
        for key, value in self.extra_fields().items():
            if key.lower() in vocab.extra_identifier_fields:
                out[key] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return {k: v for k, v in out.items() if v}

    def stored_fields(self) -> dict[str, Any]:
        """Optional documented fields and unknown fields (identifiers removed), for extra["fields"]."""
        vocab = vocabulary()
        out: dict[str, Any] = {k: getattr(self, k) for k in OPTIONAL_FIELDS if getattr(self, k) is not None}
        for key, value in self.extra_fields().items():
            if key.lower() not in vocab.extra_identifier_fields:
                out[key] = value
        return out

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), ensure_ascii=False, sort_keys=True)


class ChargeLineIn(_RecordIn):
    """One charge line (收费明细): what the hospital billed for an exam."""

    accession_number: Str64
    hospital_code: Str64 | None = None
    charge_id: Str64 | None = None
    charge_code: Str64
    charge_name: Str256
    quantity: float
    unit_price: float | None = None
    amount: float
    charge_time: datetime | None = None
    catalogue: Str32 | None = None
    province: Str32 | None = None

    @field_validator("charge_time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime:
        return parse_time(value)

    def stored_fields(self) -> tuple[dict[str, Any], list[str]]:
        """Unknown fields to keep, and names of identifier fields dropped (never stored)."""
        vocab = vocabulary()
        kept: dict[str, Any] = {}
        dropped: list[str] = []
        for key, value in self.extra_fields().items():
            if key.lower() in vocab.charge_identifier_fields or key.lower() in vocab.extra_identifier_fields:
                dropped.append(key)
            else:
                kept[key] = value
        return kept, sorted(dropped)

    def canonical(self) -> str:
        kept, _ = self.stored_fields()
        body = {**self.model_dump(mode="json", exclude=set(self.extra_fields())), "extra": kept}
        return json.dumps(body, ensure_ascii=False, sort_keys=True)

    def warnings(self) -> list[dict[str, Any]]:
        """Checks that do not reject a line: a mismatch is itself evidence for the charge audit."""
        out: list[dict[str, Any]] = []
        if self.unit_price is not None:
            expected = round(self.quantity * self.unit_price, 6)
            if abs(expected - self.amount) > vocabulary().amount_tolerance + 1e-9:
                out.append(
                    {
                        "code": "amount_mismatch",
                        "message": "金额与数量×单价不符 / amount differs from quantity × unit_price",
                        "expected": expected,
                        "amount": self.amount,
                    }
                )
        return out


# -- reading files --------------------------------------------------------------------------
@dataclass
class RawRecord:
    """One record as read from the file, before validation."""

    line: int
    raw: bytes
    fields: dict[str, Any] | None = None
    encoding: str | None = None
    error: tuple[str, str] | None = None  # (bad_record sub-code, detail)


def _decode_line(raw: bytes) -> tuple[str, str | None]:
    """UTF-8 first, then GB18030 (Chinese HIS exports); ``None`` when neither decodes."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), None


def _strip_bom(raw: bytes) -> bytes:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RecordsFileError(
            "文件是 UTF-16 编码，请导出为 UTF-8 或 GB18030 / the file is UTF-16; export it as UTF-8 or GB18030"
        )
    for bom in (UTF8_BOM, GB18030_BOM):
        if raw.startswith(bom):
            return raw[len(bom) :]
    return raw


def _normalise_keys(fields: dict[Any, Any]) -> dict[str, Any]:
    return {str(k).strip().lstrip("\ufeff").lower(): v for k, v in fields.items()}


def read_jsonl(handle: BinaryIO) -> Iterator[RawRecord]:
    """One JSON object per line; blank lines are skipped and not counted."""
    first = True
    for number, raw in enumerate(handle, 1):
        if first:
            raw = _strip_bom(raw)
        content = raw.strip()
        if not content:
            continue
        if first and content.startswith(b"["):
            raise RecordsFileError(
                "文件是 JSON 数组而非 JSON Lines（每行一个对象）"
                " / the file is a JSON array, not JSON Lines (one object per line)"
            )
        first = False
        text, encoding = _decode_line(content)
        if encoding is None:
            yield RawRecord(number, raw, error=("encoding", ""))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRecord(number, raw, encoding=encoding, error=("not_json", f"{exc.msg} (col {exc.colno})"))
            continue
        if not isinstance(value, dict):
            yield RawRecord(number, raw, encoding=encoding, error=("not_object", type(value).__name__))
            continue
        yield RawRecord(number, raw, _normalise_keys(value), encoding)


def read_csv(handle: BinaryIO) -> Iterator[RawRecord]:
    """A header row, then one record per row (quoted cells may span lines, e.g. findings)."""
    consumed: list[tuple[int, bytes, str | None]] = []

    def lines() -> Iterator[str]:
        for number, raw in enumerate(handle, 1):
            if number == 1:
                raw = _strip_bom(raw)
            text, encoding = _decode_line(raw)
            consumed.append((number, raw, encoding))
            yield text

    csv.field_size_limit(64 * 1024 * 1024)
    reader = csv.reader(lines())
    header: list[str] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            spanned, consumed[:] = consumed[:], []
            if header is None:
                raise RecordsFileError(f"CSV 表头无法解析 / cannot parse the CSV header: {exc}") from exc
            yield RawRecord(spanned[0][0] if spanned else 0, b"".join(r for _, r, _ in spanned), error=("csv_columns", str(exc)))
            continue
        spanned, consumed[:] = consumed[:], []
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lstrip("\ufeff").lower() for cell in row]
            named = [h for h in header if h]
            duplicates = sorted({h for h in named if named.count(h) > 1})
            if duplicates:
                raise RecordsFileError(f"CSV 表头有重复列 / duplicate CSV header columns: {', '.join(duplicates)}")
            if any(e is None for _, _, e in spanned):
                raise RecordsFileError("CSV 表头无法解码 / the CSV header cannot be decoded")
            continue
        line = spanned[0][0]
        raw = b"".join(r for _, r, _ in spanned)
        encodings = {e for _, _, e in spanned}
        if None in encodings:
            yield RawRecord(line, raw, error=("encoding", ""))
            continue
        encoding = "gb18030" if "gb18030" in encodings else "utf-8"
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header) :]):
            yield RawRecord(line, raw, encoding=encoding, error=("csv_columns", f"{len(row)} > {len(header)}"))
            continue
        fields = {name: cell for name, cell in zip(header, row, strict=False) if name}
        yield RawRecord(line, raw, fields, encoding)


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with path.open("rb") as handle:
        head = _strip_bom(handle.read(4096)).lstrip()
    return "jsonl" if head.startswith(b"{") else "csv"


# -- validation -----------------------------------------------------------------------------
@dataclass
class Item:
    """One record on its way into the catalogue: validated, or the reason it is quarantined."""

    raw: RawRecord
    source_ref: str
    kind: str | None = None
    record: ExamRecordIn | ChargeLineIn | None = None
    occurrence: int = 1
    error_code: str | None = None
    errors: list[str] = field(default_factory=list)
    error_fields: list[str] = field(default_factory=list)
    #: Where the quarantined record's bytes went in the object store.
    raw_key: str | None = None
    raw_digest: str | None = None


def _kind_of(fields: dict[str, Any], forced: str) -> tuple[str | None, str]:
    vocab = vocabulary()
    declared_raw = fields.pop("record_type", None)
    declared = None
    if declared_raw not in (None, ""):
        declared = vocab.record_types.get(str(declared_raw).strip().lower())
        if declared is None:
            return None, f"record_type {str(declared_raw)[:32]!r} 无法识别 / unknown record_type"
    auto = CHARGE if fields.get("charge_code") not in (None, "") else EXAM
    if forced in (EXAM, CHARGE):
        if declared is not None and declared != forced:
            return None, f"record_type={declared} 与 --kind {forced} 冲突 / record_type={declared} conflicts with --kind {forced}"
        return forced, ""
    return declared or auto, ""


def _error_lines(exc: ValidationError) -> tuple[list[str], list[str]]:
    """Bilingual per-field messages; values of identifier fields are never echoed."""
    vocab = vocabulary()
    texts: list[str] = []
    fields: list[str] = []
    hidden = set(IDENTIFIER_FIELDS) | vocab.extra_identifier_fields
    for err in exc.errors(include_url=False):
        name = ".".join(str(part) for part in err["loc"]) or "(record)"
        top = str(err["loc"][0]) if err["loc"] else "(record)"
        kind = err["type"]
        if kind == "value_error":
            text = err["msg"].removeprefix("Value error, ")
        else:
            zh = vocab.error_texts_zh.get(kind, vocab.error_texts_zh["default"])
            text = f"{zh} / {err['msg']}"
            value = err.get("input")
            if kind != "missing" and top not in hidden and isinstance(value, (str, int, float)):
                text += f" (got {str(value)[:40]!r})"
        texts.append(f"字段 {name} / field {name}: {text}")
        fields.append(name)
    return texts, fields


def validate(raw: RawRecord, source_ref: str, forced_kind: str = "auto") -> Item:
    item = Item(raw, source_ref)
    if raw.error is not None:
        item.error_code = raw.error[0]
        zh, en = vocabulary().bad_record_codes[raw.error[0]]
        item.errors = [f"{zh} / {en}" + (f": {raw.error[1]}" if raw.error[1] else "")]
        return item
    assert raw.fields is not None
    fields = dict(raw.fields)
    kind, problem = _kind_of(fields, forced_kind)
    if kind is None:
        item.error_code, item.errors, item.error_fields = "kind", [problem], ["record_type"]
        return item
    item.kind = kind
    model = ExamRecordIn if kind == EXAM else ChargeLineIn
    try:
        item.record = model.model_validate(fields)
    except ValidationError as exc:
        item.error_code = "invalid_field"
        item.errors, item.error_fields = _error_lines(exc)
    return item


# -- the summary ----------------------------------------------------------------------------
@dataclass
class RecordsSummary:
    """Counts of one run. ``exam_records + charge_lines + updated + duplicate + quarantined ==
    records_seen`` always (``exam_records``/``charge_lines`` count new rows only)."""

    file: str = ""
    format: str = ""
    records_seen: int = 0
    exam_records: int = 0
    charge_lines: int = 0
    updated: int = 0
    duplicate: int = 0
    quarantined: int = 0
    linked_to_images: int = 0
    seconds: float = 0.0
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: {EXAM: Counter(), CHARGE: Counter()})
    reasons: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    encodings: Counter[str] = field(default_factory=Counter)
    links: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def add(self, item: Item, outcome: str) -> None:
        self.records_seen += 1
        if item.raw.encoding:
            self.encodings[item.raw.encoding] += 1
        if outcome == QUARANTINED:
            self.quarantined += 1
            self.reasons[item.error_code or "unknown"] += 1
            return
        assert item.kind is not None
        self.by_kind[item.kind][outcome] += 1
        if outcome == INGESTED:
            if item.kind == EXAM:
                self.exam_records += 1
            else:
                self.charge_lines += 1
        elif outcome == UPDATED:
            self.updated += 1
        else:
            self.duplicate += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "records_seen": self.records_seen,
            "exam_records": self.exam_records,
            "charge_lines": self.charge_lines,
            "updated": self.updated,
            "duplicate": self.duplicate,
            "quarantined": self.quarantined,
            "linked_to_images": self.linked_to_images,
            "by_kind": {k: {o: v.get(o, 0) for o in (INGESTED, UPDATED, DUPLICATE)} for k, v in self.by_kind.items()},
            "links": dict(self.links),
            "quarantine_reasons": dict(self.reasons),
            "warnings": dict(self.warnings),
            "encodings": dict(self.encodings),
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_seen / self.seconds, 1) if self.seconds else None,
            "notes": self.notes,
        }


# -- linking helpers (shared with DICOM ingest) ---------------------------------------------
def is_placeholder(code: str | None) -> bool:
    """A hospital code DICOM ingest made up because the header had no institution code."""
    return code is None or code == PLACEHOLDER_UNKNOWN or code.startswith(PLACEHOLDER_PREFIX)


def _hospital_rule(code: str) -> Any:
    """SQL: the exam's hospital is ``code`` or a placeholder (so the record may claim it)."""
    return or_(
        m.Hospital.code == code,
        m.Hospital.code.like(PLACEHOLDER_PREFIX + "%"),
        m.Hospital.code == PLACEHOLDER_UNKNOWN,
        m.Exam.hospital_id.is_(None),
    )


def modalities_compatible(a: str | None, b: str | None) -> bool:
    """Either side unknown, or the two share a modality group (DR~DX~CR, MR~MRI, ...)."""
    groups = vocabulary().modality_group
    left = {groups.get(x.strip().upper(), x.strip().upper()) for x in (a or "").split(",") if x.strip()}
    right = {groups.get(x.strip().upper(), x.strip().upper()) for x in (b or "").split(",") if x.strip()}
    return not left or not right or bool(left & right)


def _same_patient(
    vault: IdentifierVault, exam_hospital: str | None, pseudo_key: str | None, person_key: str | None,
    patient_id: str | None, record_person_key: str | None,
) -> bool:
    """Same person: the exam's patient pseudonym under the exam's own hospital code matches the
    record's patient ID, or both sides carry the same national-ID pseudonym."""
    if patient_id and exam_hospital and pseudo_key and vault.pseudonym(exam_hospital, patient_id) == pseudo_key:
        return True
    return bool(record_person_key and person_key and record_person_key == person_key)


def exam_waiting_for_images(s: Session, vault: IdentifierVault, p: ParsedInstance, hospital: m.Hospital) -> m.Exam | None:
    """For DICOM ingest of a new study: the exam a HIS/RIS record created before the images came.

    By accession number (the record's hospital must be the images' hospital, unless the images'
    hospital is a ``NAME:``/``UNKNOWN`` placeholder), else by patient + study time within the
    tolerance and a compatible modality. Only exams without images are considered.
    """
    placeholder = is_placeholder(hospital.code)
    person = vault.pseudonym("id_number", p.patient["id_number"]) if p.patient.get("id_number") else None
    pid = p.patient.get("patient_id")
    if p.accession_number:
        q = (
            select(m.Exam, m.Hospital.code, m.Patient.pseudo_key, m.Patient.person_key)
            .outerjoin(m.Hospital, m.Exam.hospital_id == m.Hospital.id)
            .outerjoin(m.Patient, m.Exam.patient_id == m.Patient.id)
            .where(m.Exam.accession_number == p.accession_number, m.Exam.study_instance_uid.is_(None))
            .order_by(m.Exam.id)
        )
        if not placeholder:
            q = q.where(m.Hospital.code == hospital.code)
        rows = list(s.execute(q).all())
        if len(rows) > 1:  # the same accession at two hospitals: prefer the same patient
            rows.sort(key=lambda r: not _same_patient(vault, r[1], r[2], r[3], pid, person))
        if rows:
            return rows[0][0]
    when = catalogue_time(p.study_datetime)
    if not (pid or person) or when is None:
        return None
    tolerance = vocabulary().link_tolerance
    q = (
        select(m.Exam, m.Hospital.code, m.Patient.pseudo_key, m.Patient.person_key)
        .join(m.Hospital, m.Exam.hospital_id == m.Hospital.id)
        .join(m.Patient, m.Exam.patient_id == m.Patient.id)
        .where(m.Exam.study_instance_uid.is_(None), m.Exam.exam_time.between(when - tolerance, when + tolerance))
    )
    if not placeholder:
        q = q.where(m.Hospital.code == hospital.code)
    if p.accession_number:
        q = q.where(m.Exam.accession_number.is_(None))
    best: tuple[timedelta, m.Exam] | None = None
    for exam, code, pseudo, person_key in s.execute(q).all():
        if not modalities_compatible(exam.modality, p.modality):
            continue
        if not _same_patient(vault, code, pseudo, person_key, pid, person):
            continue
        gap = abs(from_catalogue_time(exam.exam_time) - when)  # type: ignore[operator]
        if best is None or gap < best[0]:
            best = (gap, exam)
    return best[1] if best else None


def _utc(value: datetime | None) -> datetime | None:
    """A catalogue time read back (naive on SQLite means UTC) as aware UTC, ready to store again."""
    return catalogue_time(from_catalogue_time(value))


def _sha(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return from_catalogue_time(value).isoformat()  # type: ignore[union-attr]
    if isinstance(value, date):
        return value.isoformat()
    return value


def _same_value(old: Any, new: Any) -> bool:
    if isinstance(old, datetime) or isinstance(new, datetime):
        return (from_catalogue_time(old) if isinstance(old, datetime) else old) == (
            from_catalogue_time(new) if isinstance(new, datetime) else new
        )
    return old == new


# -- writing ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: str
    kind: str | None = None
    row_id: int | None = None
    link: str | None = None
    warnings: list[str] = field(default_factory=list)


class RecordsWriter:
    """Writes validated records into the catalogue, a batch per transaction."""

    MAX_RETRIES = 6

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.vault = workspace.vault
        self.vocab = vocabulary()
        #: Hospital rows of the current transaction, by code (a file mostly names a few).
        self._hospitals: dict[str, m.Hospital] = {}

    # -- batches ------------------------------------------------------------------------
    def commit(self, batch: Sequence[Item]) -> list[Outcome]:
        """Record a batch in one transaction; isolate a record the database refuses.

        A unique-key race with another writer rolls the batch back and retries it. If the
        batch still fails, each record gets its own transaction so one bad record (a value
        the database rejects) is quarantined instead of sinking its neighbours.
        """
        for item in batch:  # bytes first, durable before any row points at them
            if item.record is None and item.raw.raw:
                put = self.ws.store.put(item.raw.raw)
                item.raw_key, item.raw_digest = put.key, put.digest
        try:
            return self._retrying(batch)
        except DBAPIError as exc:
            if len(batch) == 1:
                item = batch[0]
                item.record, item.error_code = None, "invalid_field"
                item.errors = [f"数据库拒绝写入 / the database refused the record: {type(exc.orig).__name__}"]
                put = self.ws.store.put(item.raw.raw)
                item.raw_key, item.raw_digest = put.key, put.digest
                return self._retrying(batch)
            log.warning("records batch refused by the database (%s); retrying record by record", type(exc).__name__)
            return [self.commit([item])[0] for item in batch]

    def _retrying(self, batch: Sequence[Item]) -> list[Outcome]:
        delay = 0.05
        for attempt in range(self.MAX_RETRIES):
            try:
                self._hospitals = {}
                with self.ws.transaction() as session:
                    return [self._one(session, item) for item in batch]
            except (IntegrityError, OperationalError):
                if attempt == self.MAX_RETRIES - 1:
                    raise
                time.sleep(delay)  # back off from a concurrent writer, then re-read
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def _one(self, s: Session, item: Item) -> Outcome:
        if item.record is None:
            self._quarantine(s, item)
            return Outcome(QUARANTINED)
        now = datetime.now(UTC)
        if isinstance(item.record, ExamRecordIn):
            return self._exam_record(s, item.record, item.source_ref, now)
        return self._charge_line(s, item.record, item.occurrence, item.source_ref, now)

    # -- quarantine -----------------------------------------------------------------------
    def _quarantine(self, s: Session, item: Item) -> None:
        digest = item.raw_digest
        existing = s.scalar(
            select(m.QuarantineItem.id).where(
                m.QuarantineItem.source == SOURCE,
                m.QuarantineItem.source_ref == item.source_ref,
                m.QuarantineItem.content_hash == digest,
                m.QuarantineItem.resolved_at.is_(None),
            )
        )
        if existing:
            return
        detail = f"第 {item.raw.line} 行 / line {item.raw.line}: " + "; ".join(item.errors)
        s.add(
            m.QuarantineItem(
                source=SOURCE,
                source_ref=item.source_ref,
                reason_code=REASON_CODE,
                reason=reason_text(REASON_CODE, detail),
                size=len(item.raw.raw),
                content_hash=digest,
                storage_key=item.raw_key,
                detail={
                    "code": item.error_code,
                    "line": item.raw.line,
                    "kind": item.kind,
                    "fields": item.error_fields,
                    "errors": item.errors,
                    "encoding": item.raw.encoding,
                },
            )
        )
        s.flush()

    # -- hospitals and exams ----------------------------------------------------------------
    def _hospital(self, s: Session, code: str, name: str | None = None) -> m.Hospital:
        hospital = self._hospitals.get(code)
        if hospital is None:
            hospital = s.scalar(select(m.Hospital).where(m.Hospital.code == code))
            if hospital is None:
                hospital = m.Hospital(code=code, name=name)
                s.add(hospital)
                s.flush()
            self._hospitals[code] = hospital
        if name and not hospital.name:
            hospital.name = name
        return hospital

    def _not_linked_elsewhere(self, record_id: int) -> Any:
        return ~exists().where(m.ExamRecord.exam_id == m.Exam.id, m.ExamRecord.id != record_id)

    def _candidate_exam(
        self, s: Session, record: m.ExamRecord, rec: ExamRecordIn, patient: m.Patient | None
    ) -> tuple[m.Exam | None, str | None]:
        """The exam this record belongs to, best first: images over none, then closest time."""
        code = record.hospital_code
        uid = rec.study_instance_uid or (record.extra or {}).get("fields", {}).get("study_instance_uid")
        if uid:
            exam = s.scalar(select(m.Exam).where(m.Exam.study_instance_uid == uid))
            if exam is not None:
                return exam, "study_instance_uid"
        if record.accession_number:
            exam = s.scalars(
                select(m.Exam)
                .outerjoin(m.Hospital, m.Exam.hospital_id == m.Hospital.id)
                .where(m.Exam.accession_number == record.accession_number, _hospital_rule(code))
                .where(self._not_linked_elsewhere(record.id))
                .order_by(m.Exam.study_instance_uid.is_(None), m.Exam.id)
            ).first()
            if exam is not None:
                return exam, "accession"
        when = from_catalogue_time(record.exam_time)
        pid = rec.patient_id
        person = patient.person_key if patient is not None else None
        if when is None or not (pid or person):
            return None, None
        tolerance = self.vocab.link_tolerance
        q = (
            select(m.Exam, m.Hospital.code, m.Patient.pseudo_key, m.Patient.person_key)
            .outerjoin(m.Hospital, m.Exam.hospital_id == m.Hospital.id)
            .join(m.Patient, m.Exam.patient_id == m.Patient.id)
            .where(m.Exam.exam_time.between(when - tolerance, when + tolerance), _hospital_rule(code))
            .where(self._not_linked_elsewhere(record.id))
        )
        if record.accession_number:
            q = q.where(or_(m.Exam.accession_number.is_(None), m.Exam.accession_number == record.accession_number))
        best: tuple[tuple[bool, timedelta, int], m.Exam] | None = None
        for exam, hcode, pseudo, person_key in s.execute(q).all():
            if not modalities_compatible(exam.modality, record.modality):
                continue
            if not _same_patient(self.vault, hcode, pseudo, person_key, pid, person):
                continue
            rank = (exam.study_instance_uid is None, abs(from_catalogue_time(exam.exam_time) - when), exam.id)  # type: ignore[operator]
            if best is None or rank < best[0]:
                best = (rank, exam)
        return (best[1], "patient_time") if best else (None, None)

    def _link(self, s: Session, record: m.ExamRecord, rec: ExamRecordIn, patient: m.Patient | None, changed: bool) -> str:
        """Attach the record to its exam (creating an image-less one if none is known yet)."""
        current = s.get(m.Exam, record.exam_id) if record.exam_id else None
        method = (record.extra or {}).get("link")
        target = current
        if current is None or current.study_instance_uid is None:
            found, how = self._candidate_exam(s, record, rec, patient)
            if found is not None and (current is None or (found.id != current.id and found.study_instance_uid)):
                target, method = found, how
        if target is None:
            target = m.Exam(
                hospital_id=None, accession_number=record.accession_number, ordered_items=[], status={},
                exam_time=_utc(record.exam_time), modality=record.modality,
            )
            s.add(target)
            s.flush()
            method = "created"
        moved = current is not None and current.id != target.id
        if target.id != record.exam_id or changed:
            record.exam_id = target.id
            self._apply_to_exam(s, record, target)
            record.extra = {**(record.extra or {}), "link": method}
            s.flush()
        if moved:
            assert current is not None
            s.execute(update(m.ChargeLine).where(m.ChargeLine.exam_id == current.id).values(exam_id=target.id))
            self._retire(s, current, target)
        if record.accession_number:
            s.execute(
                update(m.ChargeLine)
                .where(
                    m.ChargeLine.accession_number == record.accession_number,
                    m.ChargeLine.exam_id.is_(None),
                    or_(m.ChargeLine.hospital_code == record.hospital_code, m.ChargeLine.hospital_code.is_(None)),
                )
                .values(exam_id=target.id, hospital_code=record.hospital_code)
            )
        return method or "created"

    def _apply_to_exam(self, s: Session, record: m.ExamRecord, exam: m.Exam) -> None:
        """The record is authoritative for hospital, patient, ordered items and urgency."""
        hospital = self._hospital(s, record.hospital_code)
        exam.hospital_id = hospital.id
        if record.patient_id is not None:
            exam.patient_id = record.patient_id
        if record.accession_number and not exam.accession_number:
            exam.accession_number = record.accession_number
        if record.exam_items:
            exam.ordered_items = list(record.exam_items)
        if record.urgency:
            exam.urgency = record.urgency
        if exam.exam_time is None and record.exam_time is not None:
            exam.exam_time = _utc(record.exam_time)
        if not exam.modality and record.modality:
            exam.modality = record.modality

    def _retire(self, s: Session, orphan: m.Exam, into: m.Exam) -> None:
        """An image-less exam the record no longer needs: delete it if nothing else points at it."""
        s.flush()
        for table in m.Base.metadata.tables.values():
            for fk in table.foreign_keys:
                if fk.column.table.name == m.Exam.__tablename__:
                    if s.scalar(select(func.count()).select_from(table).where(fk.parent == orphan.id)):
                        orphan.status = {**(orphan.status or {}), "merged_into": into.id}
                        return
        s.delete(orphan)
        s.flush()

    # -- exam records ---------------------------------------------------------------------
    def _exam_record(self, s: Session, rec: ExamRecordIn, ref: str, now: datetime) -> Outcome:
        hospital = self._hospital(s, rec.hospital_code, rec.hospital_name)
        identifiers = rec.identifiers()
        fallback = "accession:" + (rec.accession_number or "")
        pseudo = patient_pseudonym(self.vault, hospital.code, rec.patient_id, fallback) if rec.patient_id else None
        acc_key = _sha("acc", hospital.code, rec.accession_number) if rec.accession_number else None
        pt_key = (
            _sha("pt", hospital.code, pseudo, rec.exam_time.isoformat(), rec.modality or "")
            if pseudo and rec.exam_time
            else None
        )
        found = {
            r.record_key: r
            for r in s.scalars(select(m.ExamRecord).where(m.ExamRecord.record_key.in_([k for k in (acc_key, pt_key) if k])))
        }
        record = found.get(acc_key) if acc_key else None
        if record is None and pt_key in found:
            candidate = found[pt_key]  # sent before without an accession number: the same record
            if candidate.accession_number is None or not rec.accession_number:
                record = candidate
        content = self.vault.pseudonym("exam-record", rec.canonical())
        stored = rec.stored_fields()

        if record is None:
            patient = (
                patient_for(s, self.vault, hospital, identifiers, fallback, merge=True)[0] if identifiers else None
            )
            record = m.ExamRecord(
                record_key=acc_key or pt_key,
                content_hash=content,
                hospital_code=hospital.code,
                patient_id=patient.id if patient else None,
                extra={"fields": stored, "history": []},
                source_ref=ref,
                **{col: getattr(rec, col) for col in RECORD_COLUMNS},
            )
            s.add(record)
            s.flush()
            link = self._link(s, record, rec, patient, changed=True)
            return Outcome(INGESTED, EXAM, record.id, link)

        patient = s.get(m.Patient, record.patient_id) if record.patient_id else None
        history = list((record.extra or {}).get("history", []))
        if content == record.content_hash or content in {h.get("content_hash") for h in history}:
            link = self._link(s, record, rec, patient, changed=False)
            return Outcome(DUPLICATE, EXAM, record.id, link)

        # A re-send: fields it carries replace the stored ones; fields it omits are kept.
        previous: dict[str, Any] = {}
        for col in RECORD_COLUMNS:
            new = getattr(rec, col)
            if new is None or new == []:
                continue
            old = getattr(record, col)
            if not _same_value(old, new):
                previous[col] = _jsonable(old)
                setattr(record, col, new)
        old_fields = dict((record.extra or {}).get("fields", {}))
        new_fields = {**old_fields, **stored}
        for key in sorted(set(new_fields) - set(old_fields) | {k for k in old_fields if new_fields[k] != old_fields[k]}):
            previous[f"fields.{key}"] = old_fields.get(key)
        identifiers_changed: list[str] = []
        if identifiers:
            new_patient, identifiers_changed = patient_for(s, self.vault, hospital, identifiers, fallback, merge=True)
            if record.patient_id != new_patient.id:
                identifiers_changed = sorted({*identifiers_changed, "patient"})
                record.patient_id = new_patient.id
            patient = new_patient
        if acc_key and record.record_key != acc_key:
            record.record_key = acc_key
        if not previous and not identifiers_changed:
            link = self._link(s, record, rec, patient, changed=False)
            return Outcome(DUPLICATE, EXAM, record.id, link)
        history.append(
            {
                "replaced_at": now.isoformat(),
                "source_ref": record.source_ref,
                "content_hash": record.content_hash,
                "replaced_by": ref,
                "previous": previous,
                "identifiers_changed": identifiers_changed,
            }
        )
        record.content_hash = content
        record.source_ref = ref
        record.extra = {**(record.extra or {}), "fields": new_fields, "history": history}
        record.updated_at = now
        s.flush()
        link = self._link(s, record, rec, patient, changed=True)
        return Outcome(UPDATED, EXAM, record.id, link)

    # -- charge lines ---------------------------------------------------------------------
    def exam_for_charge(self, s: Session, accession: str, hospital_code: str | None) -> tuple[int, str | None] | None:
        """The exam (id, hospital code) a charge line belongs to, by accession (+ hospital); None
        when unknown or ambiguous (one accession at two hospitals, no hospital_code on the line)."""
        q = (
            select(m.Exam.id, m.Hospital.code)
            .outerjoin(m.Hospital, m.Exam.hospital_id == m.Hospital.id)
            .where(m.Exam.accession_number == accession)
        )
        if hospital_code:
            q = q.where(_hospital_rule(hospital_code))
        rows = s.execute(q.order_by(m.Exam.id)).all()
        if len(rows) == 1:
            return rows[0][0], rows[0][1]
        if hospital_code:
            exact = [r for r in rows if r[1] == hospital_code]
            if len(exact) == 1:
                return exact[0][0], exact[0][1]
        with_record = [
            r for r in rows if s.scalar(select(m.ExamRecord.id).where(m.ExamRecord.exam_id == r[0]).limit(1))
        ]
        return (with_record[0][0], with_record[0][1]) if len(with_record) == 1 else None

    def _link_charge(self, s: Session, row: m.ChargeLine) -> None:
        found = self.exam_for_charge(s, row.accession_number, row.hospital_code)
        if found is not None:
            row.exam_id = found[0]
            if row.hospital_code is None and not is_placeholder(found[1]):
                row.hospital_code = found[1]

    def _charge_line(self, s: Session, rec: ChargeLineIn, occurrence: int, ref: str, now: datetime) -> Outcome:
        canonical = rec.canonical()
        content = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        if rec.charge_id:
            line_hash = _sha("id", rec.hospital_code or "", rec.accession_number, rec.charge_id)
        else:
            line_hash = _sha("line", content, str(occurrence))
        kept, dropped = rec.stored_fields()
        warnings = rec.warnings()
        row = s.scalar(select(m.ChargeLine).where(m.ChargeLine.line_hash == line_hash))
        if row is None:
            extra: dict[str, Any] = {"fields": kept, "history": []}
            if warnings:
                extra["warnings"] = warnings
            if dropped:
                extra["identifiers_dropped"] = dropped
            row = m.ChargeLine(
                line_hash=line_hash, content_hash=content, extra=extra, source_ref=ref,
                **{col: getattr(rec, col) for col in CHARGE_COLUMNS},
            )
            self._link_charge(s, row)
            s.add(row)
            s.flush()
            return Outcome(INGESTED, CHARGE, row.id, warnings=[w["code"] for w in warnings])
        history = list((row.extra or {}).get("history", []))
        if row.exam_id is None:
            self._link_charge(s, row)
        if content == row.content_hash or content in {h.get("content_hash") for h in history}:
            return Outcome(DUPLICATE, CHARGE, row.id)
        previous = {}
        for col in CHARGE_COLUMNS:
            new, old = getattr(rec, col), getattr(row, col)
            if not _same_value(old, new):
                previous[col] = _jsonable(old)
                setattr(row, col, new)
        history.append(
            {"replaced_at": now.isoformat(), "source_ref": row.source_ref, "content_hash": row.content_hash,
             "replaced_by": ref, "previous": previous}
        )
        extra = {**(row.extra or {}), "fields": kept, "history": history}
        extra.pop("warnings", None)
        if warnings:
            extra["warnings"] = warnings
        row.extra = extra
        row.content_hash = content
        row.source_ref = ref
        row.updated_at = now
        s.flush()
        return Outcome(UPDATED, CHARGE, row.id, warnings=[w["code"] for w in warnings])

    # -- after the file ---------------------------------------------------------------------
    def link_waiting_charges(self) -> int:
        """Charge lines that arrived before their exam: link those whose exam is known now."""
        linked = 0
        with self.ws.transaction() as s:
            # Only accessions some exam now carries: a backlog of charges for exams never
            # imaged costs one indexed join, not a query per line.
            pairs = s.execute(
                select(m.ChargeLine.accession_number, m.ChargeLine.hospital_code)
                .join(m.Exam, m.Exam.accession_number == m.ChargeLine.accession_number)
                .where(m.ChargeLine.exam_id.is_(None))
                .distinct()
            ).all()
            for accession, hospital_code in pairs:
                found = self.exam_for_charge(s, accession, hospital_code)
                if found is None:
                    continue
                cond = [m.ChargeLine.accession_number == accession, m.ChargeLine.exam_id.is_(None)]
                cond.append(
                    m.ChargeLine.hospital_code == hospital_code
                    if hospital_code is not None
                    else m.ChargeLine.hospital_code.is_(None)
                )
                values: dict[str, Any] = {"exam_id": found[0]}
                if hospital_code is None and not is_placeholder(found[1]):
                    values["hospital_code"] = found[1]
                result = s.execute(update(m.ChargeLine).where(*cond).values(**values))
                linked += result.rowcount or 0
        return linked

    def count_linked_to_images(self, touched: dict[str, set[int]]) -> tuple[int, int]:
        """How many of the given exam records / charge lines point at an exam with images."""
        counts = []
        for model, ids in ((m.ExamRecord, touched[EXAM]), (m.ChargeLine, touched[CHARGE])):
            total = 0
            ordered = sorted(ids)
            with self.ws.sessions() as s:
                for start in range(0, len(ordered), 500):
                    chunk = ordered[start : start + 500]
                    total += s.scalar(
                        select(func.count(model.id))
                        .join(m.Exam, model.exam_id == m.Exam.id)
                        .where(model.id.in_(chunk), m.Exam.study_instance_uid.is_not(None))
                    ) or 0
            counts.append(total)
        return counts[0], counts[1]


# -- the entry point ------------------------------------------------------------------------
ProgressFn = Callable[[RecordsSummary], None]


def iter_items(path: Path, fmt: str, kind: str) -> Iterator[Item]:
    """Read and validate every record of the file, in order (streaming: any file size)."""
    ref_base = str(path)
    occurrences: Counter[str] = Counter()
    with path.open("rb") as handle:
        reader = read_jsonl(handle) if fmt == "jsonl" else read_csv(handle)
        for raw in reader:
            item = validate(raw, f"{ref_base}:{raw.line}", kind)
            if isinstance(item.record, ChargeLineIn) and not item.record.charge_id:
                # Identical lines inside one file are separate charges (double billing is what
                # the audit looks for); the same line in another file is a re-send.
                key = item.record.canonical()
                occurrences[key] += 1
                item.occurrence = occurrences[key]
            yield item


def ingest_records(
    workspace: Workspace,
    path: str | Path,
    *,
    fmt: str | None = None,
    kind: str = "auto",
    batch_size: int = 200,
    progress: ProgressFn | None = None,
) -> RecordsSummary:
    """Ingest one JSON Lines or CSV file of exam records and/or charge lines.

    Never raises for a bad record (it is quarantined); raises :class:`RecordsFileError` when
    the file as a whole cannot be read (missing, UTF-16, a JSON array, a broken CSV header).
    """
    file = Path(path)
    if not file.is_file():
        raise RecordsFileError(f"文件不存在 / no such file: {file}")
    if fmt is None or fmt == "auto":
        fmt = detect_format(file)
    if fmt not in ("jsonl", "csv"):
        raise RecordsFileError(f"未知格式 / unknown format {fmt!r} (jsonl, csv)")
    if kind not in ("auto", EXAM, CHARGE):
        raise RecordsFileError(f"未知记录类型 / unknown kind {kind!r} (auto, exam, charge)")
    file = file.resolve()
    summary = RecordsSummary(file=str(file), format=fmt)
    writer = RecordsWriter(workspace)
    touched: dict[str, set[int]] = {EXAM: set(), CHARGE: set()}
    started = time.perf_counter()
    batch: list[Item] = []

    def flush() -> None:
        for item, outcome in zip(batch, writer.commit(batch), strict=True):
            summary.add(item, outcome.status)
            if outcome.status == QUARANTINED:
                continue
            assert outcome.kind is not None and outcome.row_id is not None
            touched[outcome.kind].add(outcome.row_id)
            if outcome.link and outcome.status != DUPLICATE:
                summary.links[outcome.link] += 1
            for code in outcome.warnings:
                summary.warnings[code] += 1
        batch.clear()
        if progress:
            progress(summary)

    for item in iter_items(file, fmt, kind):
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    waiting = writer.link_waiting_charges()
    if waiting:
        summary.notes.append(f"charge lines linked to exams that arrived since: {waiting}")
    exams_linked, charges_linked = writer.count_linked_to_images(touched)
    summary.linked_to_images = exams_linked + charges_linked
    summary.links["exam_records_with_images"] = exams_linked
    summary.links["charge_lines_with_images"] = charges_linked
    summary.seconds = time.perf_counter() - started
    return summary

