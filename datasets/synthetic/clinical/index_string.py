"""The imaging-cloud index string (影像云索引串) a hospital sends with each exam.

Five parts of fixed length, joined by ``|``: insured-person code (26), exam date-time
``YYYYMMDDhhmm`` (12), body-part code (9), device code (13), the storage unit's unified social
credit code (18, GB 32100 check character). The body-part codes here are synthetic stand-ins
of the right shape, not WS/T 364.8-2023 codes (that table is not available offline); replace
``BODY_PART_CODES`` when it is.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

#: Synthetic 9-digit body-part codes per billing part (shape only; not WS/T 364.8 values).
BODY_PART_CODES_PREFIX = "36480"

_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code(org_code: str, area: str = "330100", registration: str = "12") -> str:
    """An 18-character unified social credit code around a 9-character organisation code."""
    body = (registration + area + org_code.upper())[:17].ljust(17, "0")
    total = sum(_CREDIT_CHARS.index(c) * w for c, w in zip(body, _CREDIT_WEIGHTS, strict=True))
    return body + _CREDIT_CHARS[(31 - total % 31) % 31]


def _alnum(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest().upper()
    return (digest * (length // len(digest) + 1))[:length]


def body_part_code(part: str) -> str:
    return BODY_PART_CODES_PREFIX + str(int(hashlib.sha256(part.encode("utf-8")).hexdigest(), 16) % 10_000).zfill(4)


def index_string(*, id_number: str, exam_time: datetime, part: str, device_serial: str, org_code: str) -> str:
    """The five parts joined by ``|`` (lengths 26-12-9-13-18)."""
    insured = _alnum("insured:" + id_number, 26)
    device = (device_serial.upper() + _alnum("device:" + device_serial, 13))[:13]
    parts = [insured, exam_time.strftime("%Y%m%d%H%M"), body_part_code(part), device, credit_code(org_code)]
    assert [len(p) for p in parts] == [26, 12, 9, 13, 18]
    return "|".join(parts)
