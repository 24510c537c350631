"""General helpers, identity checks (GB 11643 ID numbers, mobiles, institution codes, the
imaging-cloud index string) and time arithmetic for rule expressions.

Every function is pure and None-safe: a missing value never raises. Checks of a *format*
return False for None (a missing value is the completeness rules' business, and those rules
say so); extractors return None for None.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from radqc.qc_rules.functions.lexicon import modality_group_of, nfkc

CST = timezone(timedelta(hours=8))


# -- general ------------------------------------------------------------------------------
def is_blank(x: Any) -> bool:
    """True for None, "", whitespace-only text and empty lists/dicts (a field not given)."""
    if x is None:
        return True
    if isinstance(x, str):
        return not x.strip()
    if isinstance(x, dict):
        return len(x) == 0
    if isinstance(x, (list, tuple, set, frozenset)):
        return all(is_blank(v) for v in x)
    return False


def length(x: Any) -> int:
    """len() of a text or list; 0 for None and for non-sized values."""
    if x is None:
        return 0
    try:
        return len(x)
    except TypeError:
        return 0


def coalesce(*values: Any) -> Any:
    """The first argument that is not blank, else None (e.g. an end time or the start)."""
    for v in values:
        if not is_blank(v):
            return v
    return None


_BAD_PATTERN = re.compile(r"\([^)]*[+*][^)]*\)[+*{]")  # nested quantifiers: (a+)+ / (a*)*


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    if len(pattern) > 300:
        raise ValueError("pattern too long / 正则过长")
    if _BAD_PATTERN.search(pattern) or re.search(r"\\\d", pattern):
        raise ValueError(f"pattern {pattern!r} may backtrack catastrophically / 正则可能灾难性回溯")
    return re.compile(pattern)


def validate_pattern(pattern: str) -> None:
    """Raise ValueError for a pattern that is too long, unsafe or does not compile (for loaders)."""
    try:
        _compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc


def matches(x: Any, pattern: str) -> bool:
    """Full regex match of str(x) (False for None). Patterns are checked and compiled once:
    nested quantifiers and back-references are refused, so a rule cannot stall the engine."""
    if x is None:
        return False
    return _compile(pattern).fullmatch(str(x)) is not None


def contains(text: Any, sub: Any) -> bool:
    """``sub`` occurs in ``text`` (a string) or equals an element (a list); False for None."""
    if text is None or sub is None:
        return False
    if isinstance(text, (list, tuple, set)):
        return sub in text
    return str(sub) in str(text)


def join(items: Any, sep: str = " ") -> str:
    """A list of texts joined (None and blanks skipped); a text is returned as is; None → ""."""
    if items is None:
        return ""
    if isinstance(items, str):
        return items
    return sep.join(str(i) for i in items if not is_blank(i))


def to_number(x: Any) -> float | None:
    """A float from a number or numeric text; None when it is not one."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    try:
        return float(str(x).strip())
    except ValueError:
        return None


def has_duplicates(items: Any) -> bool:
    """True when a list holds the same non-blank value twice (UIDs must be unique)."""
    if not items:
        return False
    seen: set[Any] = set()
    for item in items:
        if is_blank(item):
            continue
        key = str(item)
        if key in seen:
            return True
        seen.add(key)
    return False


def pluck(items: Any, key: str) -> list[Any]:
    """``[d[key] for d in items]`` for a list of dicts (missing keys → None)."""
    if not items:
        return []
    return [d.get(key) if isinstance(d, dict) else None for d in items]


def normalise_text(x: Any) -> str | None:
    """NFKC (full-width → half-width) and trimmed text; None for None."""
    if x is None:
        return None
    return nfkc(str(x)).strip()


def has_fullwidth(x: Any) -> bool:
    """True when text contains full-width ASCII letters/digits/punctuation (Ａ１（ etc. are
    fine in Chinese prose but not in codes and identifiers)."""
    if x is None:
        return False
    return any(0xFF01 <= ord(c) <= 0xFF5E or c == "\u3000" for c in str(x))


# -- sex ----------------------------------------------------------------------------------
_SEX = {"M": "M", "MALE": "M", "男": "M", "男性": "M", "1": "M",
        "F": "F", "FEMALE": "F", "女": "F", "女性": "F", "2": "F",
        "O": "O", "U": "O", "OTHER": "O", "UNKNOWN": "O", "其他": "O", "未知": "O", "0": "O", "9": "O"}


def normalise_sex(x: Any) -> str | None:
    """M / F / O from the codes hospitals send (男, 女, male, 1/2 of GB/T 2261.1, U...); None
    for None, blank or an unknown code."""
    if x is None:
        return None
    return _SEX.get(nfkc(str(x)).strip().upper())


def sex_code_valid(x: Any) -> bool:
    """True when ``x`` is exactly one of the schema's codes M, F, O."""
    return x in ("M", "F", "O")


# -- identity -----------------------------------------------------------------------------
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def _id_text(x: Any) -> str | None:
    if x is None:
        return None
    s = nfkc(str(x)).strip().upper()
    return s or None


def _id_birth(s: str) -> date | None:
    try:
        return date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return None


def id_checksum_ok(x: Any) -> bool:
    """GB 11643 check character of an 18-character ID number (False for anything else)."""
    s = _id_text(x)
    if s is None or len(s) != 18 or not s[:17].isdigit() or s[17] not in "0123456789X":
        return False
    return ID_CHECK[sum(int(d) * w for d, w in zip(s[:17], ID_WEIGHTS, strict=True)) % 11] == s[17]


def id_number_valid(x: Any) -> bool:
    """An 18-character resident ID number (GB 11643): 17 digits + check character, a birth
    date that exists and is not in the future or before 1900, and the right check. False for
    None/blank."""
    s = _id_text(x)
    if s is None or len(s) != 18 or not s[:17].isdigit():
        return False
    born = _id_birth(s)
    if born is None or born.year < 1900 or born > date.today():
        return False
    return id_checksum_ok(s)


def id_birth_date(x: Any) -> str | None:
    """The birth date (ISO YYYY-MM-DD) in a valid ID number; None when the number is invalid."""
    s = _id_text(x)
    if not id_number_valid(s):
        return None
    born = _id_birth(s or "")
    return born.isoformat() if born else None


def id_sex(x: Any) -> str | None:
    """"M" (17th digit odd) or "F" (even) from a valid ID number; None when invalid."""
    s = _id_text(x)
    if not id_number_valid(s):
        return None
    return "M" if int((s or "0" * 17)[16]) % 2 else "F"


MOBILE_RE = re.compile(r"1[3-9]\d{9}")


def _phone_text(x: Any) -> str | None:
    if x is None:
        return None
    s = re.sub(r"[\s\-]", "", nfkc(str(x)))
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    return s or None


def mobile_valid(x: Any) -> bool:
    """An 11-digit mainland mobile number with an allocated prefix (lexicons/phone.yaml; +86/0086,
    spaces and hyphens tolerated). Landlines, 10/12-digit numbers and unallocated prefixes
    (10x, 12x, 140, 160 ...) are invalid."""
    s = _phone_text(x)
    return bool(s and MOBILE_RE.fullmatch(s) and s[:3] in _mobile_prefixes())


@lru_cache(maxsize=1)
def _mobile_prefixes() -> frozenset[str]:
    from radqc.qc_rules.functions.lexicon import load

    return frozenset(str(p) for p in load("phone")["mobile_prefixes"])


def landline_valid(x: Any) -> bool:
    """A landline with area code (0 + 2–3 digit area + 7–8 digit number, hyphen optional)."""
    s = _phone_text(x)
    return bool(s and re.fullmatch(r"0\d{2,3}\d{7,8}", s))


USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_valid(x: Any) -> bool:
    """An 18-character unified social credit code (统一社会信用代码, GB 32100) with a correct
    check character."""
    if x is None:
        return False
    s = nfkc(str(x)).strip().upper()
    if len(s) != 18 or any(c not in USCC_CHARS for c in s):
        return False
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(s[:17], USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31] == s[17]


def org_code_valid(x: Any) -> bool:
    """A 9-character organisation code (组织机构代码, GB 11714: 8 digits/letters + check;
    a hyphen before the check character is tolerated)."""
    if x is None:
        return False
    s = nfkc(str(x)).strip().upper().replace("-", "")
    if len(s) != 9 or not re.fullmatch(r"[0-9A-Z]{8}[0-9X]", s):
        return False
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum((int(c) if c.isdigit() else ord(c) - 55) * w for c, w in zip(s[:8], weights, strict=True))
    c9 = 11 - total % 11
    return s[8] == ("X" if c9 == 10 else "0" if c9 == 11 else str(c9))


def institution_code_valid(x: Any) -> bool:
    """A hospital code that is a valid USCC (18) or organisation code (9)."""
    return uscc_valid(x) or org_code_valid(x)


#: The imaging-cloud index string: insured-person code (26), exam date-time YYYYMMDDhhmm (12),
#: body-part code per WS/T 364.8-2023 (9), device code (13), storage unit's credit code (18).
INDEX_LENGTHS = (26, 12, 9, 13, 18)
_INDEX_SEPARATORS = ("|", "^", "-", "_", ",", ";", " ")


def index_string_parts(x: Any) -> list[str] | None:
    """The five parts of an index string, split at one separator (| ^ - _ , ; space) or, for a
    78-character string without separators, by the fixed lengths; None when it cannot be
    split into five."""
    if x is None:
        return None
    s = nfkc(str(x)).strip()
    if not s:
        return None
    for sep in _INDEX_SEPARATORS:
        if s.count(sep) == 4:
            return s.split(sep)
    if len(s) == sum(INDEX_LENGTHS) and not any(sep in s for sep in _INDEX_SEPARATORS):
        out, pos = [], 0
        for n in INDEX_LENGTHS:
            out.append(s[pos:pos + n])
            pos += n
        return out
    return None


def index_part(x: Any, n: int) -> str | None:
    """Part ``n`` (0–4) of an index string; None when it does not split."""
    parts = index_string_parts(x)
    if parts is None or not isinstance(n, int) or not 0 <= n < len(parts):
        return None
    return parts[n]


def index_datetime(x: Any) -> str | None:
    """The exam date-time of part 2 as ISO (China Standard Time); None when not a real time."""
    part = index_part(x, 1)
    if part is None or not re.fullmatch(r"\d{12}", part):
        return None
    try:
        return datetime.strptime(part, "%Y%m%d%H%M").replace(tzinfo=CST).isoformat()
    except ValueError:
        return None


def index_string_valid(x: Any) -> bool:
    """Five parts of lengths 26-12-9-13-18, alphanumeric, part 2 a real YYYYMMDDhhmm and part 5
    an 18-character credit code."""
    parts = index_string_parts(x)
    if parts is None or tuple(len(p) for p in parts) != INDEX_LENGTHS:
        return False
    if not all(re.fullmatch(r"[0-9A-Za-z]+", p) for p in parts):
        return False
    return index_datetime(x) is not None


# -- times --------------------------------------------------------------------------------
@lru_cache(maxsize=65536)
def _parse_time(s: str) -> datetime | None:
    s = nfkc(s).strip().replace("/", "-")
    if not s:
        return None
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    if re.fullmatch(r"\d{14}", s):
        s = f"{s[:4]}-{s[4:6]}-{s[6:8]}T{s[8:10]}:{s[10:12]}:{s[12:]}"
    elif re.fullmatch(r"\d{8}", s):
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=CST)


def parse_time(x: Any) -> datetime | None:
    """An aware datetime from ISO text (naive = China Standard Time), a datetime or a date;
    None when missing or unparsable."""
    if x is None:
        return None
    if isinstance(x, datetime):
        return x if x.tzinfo else x.replace(tzinfo=CST)
    if isinstance(x, date):
        return datetime(x.year, x.month, x.day, tzinfo=CST)
    return _parse_time(str(x))


def is_time(x: Any) -> bool:
    """True when ``x`` parses as a date-time with a time of day (a bare date is not a time)."""
    if x is None:
        return False
    if isinstance(x, datetime):
        return True
    s = str(x).strip()
    return len(s) > 10 and parse_time(s) is not None


def is_date(x: Any) -> bool:
    """True when ``x`` is a real calendar date (YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD)."""
    if x is None:
        return False
    s = nfkc(str(x)).strip().replace("/", "-")
    if re.fullmatch(r"\d{8}", s):
        s = f"{s[:4]}-{s[4:6]}-{s[6:]}"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return False
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return True


def minutes_between(a: Any, b: Any) -> float | None:
    """b − a in minutes (negative when b is earlier); None if either is missing/unparsable."""
    ta, tb = parse_time(a), parse_time(b)
    if ta is None or tb is None:
        return None
    return (tb - ta).total_seconds() / 60.0


def hours_between(a: Any, b: Any) -> float | None:
    """b − a in hours; None if either is missing."""
    m = minutes_between(a, b)
    return None if m is None else m / 60.0


def to_date(x: Any) -> str | None:
    """The calendar date (ISO) of a date or date-time in China Standard Time; None if missing."""
    if x is None:
        return None
    if is_date(x):
        s = nfkc(str(x)).strip().replace("/", "-")
        return f"{s[:4]}-{s[4:6]}-{s[6:]}" if len(s) == 8 else s
    t = parse_time(x)
    return t.astimezone(CST).date().isoformat() if t else None


def age_years(birth_date: Any, at_time: Any) -> int | None:
    """Whole years between a birth date and a time (age at the exam); None if either missing."""
    b, t = to_date(birth_date), to_date(at_time)
    if b is None or t is None:
        return None
    bd, td = date.fromisoformat(b), date.fromisoformat(t)
    return td.year - bd.year - ((td.month, td.day) < (bd.month, bd.day))


def parse_age(x: Any) -> float | None:
    """Years from a DICOM PatientAge (045Y, 006M, 003W, 010D) or a number; None otherwise."""
    if x is None:
        return None
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    s = nfkc(str(x)).strip().upper().replace("岁", "Y")
    m = re.fullmatch(r"(\d{1,3})\s*([YMWD])?", s)
    if not m:
        return None
    n = int(m.group(1))
    return {"Y": 1.0, None: 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}[m.group(2)] * n


# -- modality -----------------------------------------------------------------------------
def modality_group(x: Any) -> str | None:
    """The group of a modality code (DX for DX/CR/DR, CT, MR, ...); None for blank/unknown."""
    if x is None:
        return None
    code = nfkc(str(x)).strip().upper()
    return modality_group_of().get(code) if code else None


KNOWN_MODALITIES = frozenset({"CT", "MR", "DX", "CR", "DR", "MG", "RF", "XA", "US", "NM", "PT", "DSA", "OT"})


def modality_code_valid(x: Any) -> bool:
    """A DICOM-style modality code the cloud accepts (CT, MR, DX, CR, DR, MG, RF, XA, US, NM, PT)."""
    return x is not None and str(x).strip().upper() in KNOWN_MODALITIES
