"""Synthetic patient identities: Chinese names, 18-digit ID numbers (GB 11643) and phones.

The ID number *is* the identity: birth date and sex are derived from it (digits 7–14 are
the birth date, the 17th digit is odd for men), so the record, the DICOM header and the ID
always agree unless a violation is seeded on purpose. A labelled fraction of ID numbers and
phone numbers is invalid, with the kind of invalidity as the label, so rule QC can be
scored against it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any, Literal

from radqc.datasets.synthetic.clinical._data import load

#: GB 11643-1999 weights for the first 17 digits, and the check character for sum mod 11.
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"

#: Labels for ID numbers. ``valid`` is the only one that passes GB 11643.
IdStatus = Literal["valid", "bad_checksum", "bad_length", "bad_birth_date", "empty"]
ID_STATUSES: tuple[str, ...] = ("valid", "bad_checksum", "bad_length", "bad_birth_date", "empty")
#: Labels for phone numbers. ``valid`` is an 11-digit mobile number with a carrier prefix.
PhoneStatus = Literal["valid", "bad_length", "bad_prefix", "landline", "empty"]
PHONE_STATUSES: tuple[str, ...] = ("valid", "bad_length", "bad_prefix", "landline", "empty")


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, got {first17!r}")
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def id_number_is_valid(value: str | None) -> bool:
    """True when ``value`` is an 18-character ID number with a real birth date and correct check."""
    if not value or len(value) != 18 or not value[:17].isdigit() or value[17] not in "0123456789X":
        return False
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return id_check_char(value[:17]) == value[17]


def phone_is_valid(value: str | None) -> bool:
    """True for an 11-digit mobile number with a carrier prefix from the data file."""
    if not value:
        return False
    return len(value) == 11 and value.isdigit() and value[:3] in set(load("hospitals")["mobile_prefixes"])


@dataclass
class Identity:
    """One synthetic patient as the hospital knows them (and the labels of what is wrong)."""

    name: str  # Chinese characters, surname first
    name_pinyin: str  # DICOM PN style: SURNAME^GIVEN
    sex: Literal["M", "F"]
    birth_date: date
    id_number: str
    id_status: str
    phone: str
    phone_status: str

    def age_at(self, when: date) -> int:
        years = when.year - self.birth_date.year
        return years - ((when.month, when.day) < (self.birth_date.month, self.birth_date.day))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["birth_date"] = self.birth_date.isoformat()
        return d


def _weighted(rng: random.Random, rows: list[list[Any]], weight_index: int) -> list[Any]:
    return rng.choices(rows, weights=[float(r[weight_index]) for r in rows], k=1)[0]


def draw_name(rng: random.Random, sex: str) -> tuple[str, str]:
    """A (Chinese, PN-style pinyin) name; given names are one or two characters."""
    data = load("names")
    surname, surname_py, _ = _weighted(rng, data["surnames"], 2)
    pool = data["given"]["common"] + data["given"]["male" if sex == "M" else "female"]
    n = 1 if rng.random() < 0.3 else 2
    chars = [rng.choice(pool) for _ in range(n)]
    given = "".join(c for c, _ in chars)
    given_py = "".join(p for _, p in chars)
    return surname + given, f"{surname_py}^{given_py}"


def make_id_number(rng: random.Random, region_code: str, birth: date, sex: str, status: str = "valid") -> str:
    """An ID number for ``birth``/``sex`` in ``region_code``, made invalid in the labelled way."""
    if status == "empty":
        return ""
    seq = rng.randrange(0, 100)
    sex_digit = rng.choice((1, 3, 5, 7, 9) if sex == "M" else (0, 2, 4, 6, 8))
    body = f"{region_code}{birth:%Y%m%d}{seq:02d}{sex_digit}"
    check = id_check_char(body)
    if status == "valid":
        return body + check
    if status == "bad_checksum":
        wrong = [c for c in ID_CHECK if c != check]
        return body + rng.choice(wrong)
    if status == "bad_length":
        return (body + check)[: rng.choice((15, 16, 17))] if rng.random() < 0.5 else body + check + str(rng.randrange(10))
    if status == "bad_birth_date":
        # A day that does not exist (Feb 30 / Apr 31 / month 13); the check digit is right for it.
        bad = rng.choice((f"{birth.year}0230", f"{birth.year}0431", f"{birth.year}1315"))
        body = f"{region_code}{bad}{seq:02d}{sex_digit}"
        return body + id_check_char(body)
    raise ValueError(f"unknown ID status {status!r}")


def make_phone(rng: random.Random, status: str = "valid") -> str:
    data = load("hospitals")
    if status == "empty":
        return ""
    if status == "valid":
        return rng.choice(data["mobile_prefixes"]) + f"{rng.randrange(10**8):08d}"
    if status == "bad_length":
        digits = rng.choice(data["mobile_prefixes"]) + f"{rng.randrange(10**8):08d}"
        return digits[: rng.choice((9, 10))] if rng.random() < 0.5 else digits + str(rng.randrange(10))
    if status == "bad_prefix":
        return rng.choice(data["invalid_prefixes"]) + f"{rng.randrange(10**8):08d}"
    if status == "landline":
        return f"0{rng.choice(('571', '574', '25', '20', '28', '27'))}-{rng.randrange(10**7, 10**8)}"
    raise ValueError(f"unknown phone status {status!r}")


def draw_identity(
    rng: random.Random,
    region_code: str,
    on: date,
    sex: str | None = None,
    age: int | None = None,
    id_status: str = "valid",
    phone_status: str = "valid",
) -> Identity:
    """A patient aged ``age`` (drawn 1–90 when None) on date ``on``."""
    sex = sex or rng.choice(("M", "F"))
    if age is None:
        age = max(1, min(92, int(rng.triangular(2, 92, 58))))
    birth = on - timedelta(days=int(age * 365.25) + rng.randrange(0, 365))
    name, pinyin = draw_name(rng, sex)
    return Identity(
        name=name,
        name_pinyin=pinyin,
        sex=sex,  # type: ignore[arg-type]
        birth_date=birth,
        id_number=make_id_number(rng, region_code, birth, sex, id_status),
        id_status=id_status,
        phone=make_phone(rng, phone_status),
        phone_status=phone_status,
    )
