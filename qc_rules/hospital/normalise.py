"""Hospital-side normalisation (字段补全/格式标准化) before the rules run.

A hospital export writes the same fact many ways: sex as 男/1/M, times as ``2026/1/5 8:03``,
``20260105080300`` or ``2026年1月5日 8时3分``, codes in full-width characters, stray spaces.
Rules must judge the facts, not the spelling, so :func:`normalise_record` rewrites what can be
rewritten without guessing, and :func:`recover_from_dicom` fills fields the record left empty
from the study's DICOM tags. Nothing changes silently: every change is a :class:`Change`
(field, old, new, source) that the feedback report shows, so the hospital can fix its export.

What cannot be normalised (a time with month 13, an unknown sex code) is left as written; the
record validation of the ingest (:mod:`radqc.pipelines.ingest.records`) then reports it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from radqc.pipelines.ingest.records import vocabulary

VOCABULARY_FILE = Path(__file__).with_name("normalise.yaml")

#: China Standard Time: naive times are CST (docs/records-schema.md), output is ISO with +08:00.
CST = timezone(timedelta(hours=8))

#: Sources of a change (the report explains them).
SOURCE_TRIM = "normalise:trim"
SOURCE_WIDTH = "normalise:half_width"
SOURCE_SEX = "normalise:sex_code"
SOURCE_URGENCY = "normalise:urgency"
SOURCE_TIME = "normalise:time_format"
SOURCE_DATE = "normalise:date_format"
SOURCE_MODALITY = "normalise:upper_case"
SOURCE_DICOM = "dicom:"  # + the DICOM keyword
SOURCE_ALIAS = "alias:"  # + the field name the hospital used
SOURCE_NUMBER = "normalise:number"

#: Why a change was made, per source: (Chinese, English).
SOURCE_TEXT: dict[str, tuple[str, str]] = {
    SOURCE_TRIM: ("去除首尾空白", "surrounding whitespace removed"),
    SOURCE_WIDTH: ("全角字符转半角", "full-width characters made half-width"),
    SOURCE_SEX: ("性别代码标准化为 M/F/O", "sex code normalised to M/F/O"),
    SOURCE_URGENCY: ("急诊标志标准化", "urgency normalised to emergency/routine"),
    SOURCE_TIME: ("时间格式标准化为 ISO 8601 (+08:00)", "time normalised to ISO 8601 (+08:00)"),
    SOURCE_DATE: ("日期格式标准化为 YYYY-MM-DD", "date normalised to YYYY-MM-DD"),
    SOURCE_MODALITY: ("设备类型转大写", "modality upper-cased"),
    SOURCE_DICOM: ("由 DICOM 标签补全", "filled from the DICOM tag"),
    SOURCE_ALIAS: ("由同义字段取值", "taken from the synonymous field"),
    SOURCE_NUMBER: ("文本转为数字", "text made a number"),
}


@dataclass(frozen=True)
class Change:
    """One logged change: ``field`` went from ``old`` to ``new`` because of ``source``."""

    field: str
    old: Any
    new: Any
    source: str

    def explain(self) -> str:
        key = next((p for p in (SOURCE_DICOM, SOURCE_ALIAS) if self.source.startswith(p)), self.source)
        zh, en = SOURCE_TEXT.get(key, (self.source, self.source))
        if key in (SOURCE_DICOM, SOURCE_ALIAS):
            tag = self.source[len(key) :]
            return f"{zh} {tag} / {en} {tag}"
        return f"{zh} / {en}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "explain": self.explain()}


@dataclass(frozen=True)
class Rules:
    """The data of normalise.yaml merged with the ingest's record vocabulary."""

    sex_aliases: dict[str, str]
    urgency_aliases: dict[str, str]
    code_fields: frozenset[str]
    time_fields: tuple[str, ...]
    date_fields: tuple[str, ...]
    index_aliases: dict[str, tuple[str, ...]]
    dicom_recovery: dict[str, tuple[str, str]]


@lru_cache(maxsize=1)
def rules() -> Rules:
    data = yaml.safe_load(VOCABULARY_FILE.read_text(encoding="utf-8"))
    vocab = vocabulary()
    sex = dict(vocab.sex_aliases)
    sex.update({str(k).lower(): str(v) for k, v in data["sex_aliases"].items()})
    return Rules(
        sex_aliases=sex,
        urgency_aliases=dict(vocab.urgency_aliases),
        code_fields=frozenset(data["code_fields"]),
        time_fields=tuple(data["time_fields"]),
        date_fields=tuple(data["date_fields"]),
        index_aliases={k: tuple(str(a).lower() for a in v) for k, v in data["index_count_aliases"].items()},
        dicom_recovery={k: (v["fact"], v["keyword"]) for k, v in data["dicom_recovery"].items()},
    )


# -- text -----------------------------------------------------------------------------------
_WHITESPACE = " \t\r\n\u3000\u00a0\ufeff"


def to_half_width(text: str) -> str:
    """Full-width ASCII (U+FF01–U+FF5E) and the ideographic space to their half-width forms."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            out.append(chr(code - 0xFEE0))
        elif code == 0x3000:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


# -- times and dates ------------------------------------------------------------------------
_SEP_TIME = re.compile(
    r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<mo>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:\s*[T\s]\s*(?P<h>\d{1,2})\s*[:时點点]\s*(?P<mi>\d{1,2})\s*(?:[:分]\s*(?P<s>\d{1,2})(?P<frac>\.\d+)?\s*秒?|分)?)?"
    r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
_COMPACT_TIME = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})(?:[T\s]?(?P<h>\d{2})(?P<mi>\d{2})(?P<s>\d{2})?(?P<frac>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def _tz(text: str | None) -> timezone:
    if not text:
        return CST
    if text.upper() == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def _match_time(text: str) -> re.Match[str] | None:
    return _SEP_TIME.match(text) or _COMPACT_TIME.match(text)


def parse_loose_time(value: Any) -> datetime | None:
    """A date-time in any of the spellings hospital exports use -> aware datetime, else None.

    Accepted: ISO 8601 (``T`` or space, with or without seconds/fraction/offset), slashes or
    dots (``2026/1/5 8:03``), compact digits (``20260105080300``, ``202601050803``), Chinese
    (``2026年1月5日 8时3分``, ``2026年01月05日 08:03:00``). A naive time is China Standard Time.
    A date without a time of day is not a time (None): linking and timeliness need the time.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CST)
    if not isinstance(value, str):
        return None
    text = to_half_width(value).strip(_WHITESPACE)
    m = _match_time(text)
    if not m or m.group("h") is None:
        return None
    try:
        second = int(m.group("s") or 0)
        micro = int(round(float(m.group("frac")) * 1_000_000)) if m.group("frac") else 0
        stamp = datetime(
            int(m.group("y")), int(m.group("mo")), int(m.group("d")),
            int(m.group("h")), int(m.group("mi")), second, min(micro, 999_999),
            tzinfo=_tz(m.group("tz")),
        )
    except ValueError:
        return None
    return stamp


def iso_time(stamp: datetime) -> str:
    """The canonical form of a time in facts: ISO 8601 in China Standard Time."""
    local = stamp.astimezone(CST)
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds")


def parse_loose_date(value: Any) -> date | None:
    """A date (``1980-5-6``, ``1980/05/06``, ``19800506``, ``1980年5月6日``, or a date-time) or None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    text = to_half_width(value).strip(_WHITESPACE)
    m = _match_time(text)
    if not m:
        return None
    try:
        return date(int(m.group("y")), int(m.group("mo")), int(m.group("d")))
    except ValueError:
        return None


# -- records --------------------------------------------------------------------------------
def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip(_WHITESPACE)) or value == []


def normalise_value(field: str, value: Any) -> tuple[Any, list[Change]]:
    """Normalise one field's value; return the new value and the changes made (in order)."""
    r = rules()
    changes: list[Change] = []
    if isinstance(value, list):
        if field == "exam_items":
            items = [v.strip(_WHITESPACE) if isinstance(v, str) else v for v in value]
            if items != value:
                changes.append(Change(field, value, items, SOURCE_TRIM))
            return items, changes
        return value, changes
    if not isinstance(value, str):
        return value, changes

    current = value
    trimmed = current.strip(_WHITESPACE)
    if trimmed != current:
        changes.append(Change(field, current, trimmed, SOURCE_TRIM))
        current = trimmed
    if not current:
        return current, changes

    codeish = field in r.code_fields or field in r.time_fields or field in r.date_fields
    if codeish:
        half = to_half_width(current)
        if field in r.code_fields:
            half = re.sub(r"\s+", "", half)
        if half != current:
            changes.append(Change(field, current, half, SOURCE_WIDTH))
            current = half

    new: Any = current
    source = ""
    if field == "patient_sex":
        new, source = r.sex_aliases.get(current.lower(), current), SOURCE_SEX
    elif field == "urgency":
        new, source = r.urgency_aliases.get(current.lower(), current), SOURCE_URGENCY
    elif field == "modality":
        new, source = current.upper(), SOURCE_MODALITY
    elif field in r.time_fields:
        stamp = parse_loose_time(current)
        new, source = (iso_time(stamp) if stamp else current), SOURCE_TIME
    elif field in r.date_fields:
        day = parse_loose_date(current)
        new, source = (day.isoformat() if day else current), SOURCE_DATE
    if new != current:
        changes.append(Change(field, current, new, source))
        current = new
    return current, changes


def normalise_record(fields: dict[str, Any]) -> tuple[dict[str, Any], list[Change]]:
    """Normalise a record's fields (keys already lower-case, as the ingest readers give them).

    Blank values become None (the records schema: empty = not given); hospital index counts
    and the index string sent under another name are copied to their fact names.
    """
    r = rules()
    out: dict[str, Any] = {}
    changes: list[Change] = []
    for key, value in fields.items():
        new, log = normalise_value(key, value)
        changes.extend(log)
        out[key] = None if _is_blank(new) else new
    for fact, aliases in r.index_aliases.items():
        if out.get(fact) is None:
            for alias in aliases:
                if out.get(alias) is not None:
                    out[fact] = out[alias]
                    if alias != fact:
                        changes.append(Change(fact, None, out[alias], SOURCE_ALIAS + alias))
                    break
    for fact in ("index_series_count", "index_instance_count"):
        value = out.get(fact)
        if isinstance(value, str):
            try:
                out[fact] = int(float(to_half_width(value).strip()))
            except ValueError:
                continue
            changes.append(Change(fact, value, out[fact], SOURCE_NUMBER))
    return out, changes


def recover_from_dicom(fields: dict[str, Any], study: dict[str, Any]) -> list[Change]:
    """Fill record fields that are missing from the study's DICOM facts, in place; log each."""
    changes: list[Change] = []
    for target, (fact, keyword) in rules().dicom_recovery.items():
        if not _is_blank(fields.get(target)):
            continue
        value = study.get(fact)
        if _is_blank(value):
            continue
        if target == "hospital_code" and isinstance(value, str) and (value.startswith("NAME:") or value == "UNKNOWN"):
            continue
        old = fields.get(target)
        if isinstance(value, str):
            value = normalise_value(target, value)[0]  # DICOM codes/dates in the record's format
        fields[target] = value
        changes.append(Change(target, old, value, SOURCE_DICOM + keyword))
    return changes
