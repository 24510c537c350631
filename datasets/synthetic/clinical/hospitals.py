"""The fictional hospitals of a synthetic imaging cloud: codes, devices, staff and habits.

Each hospital has its own accession and patient-ID formats, price catalogue, name style in
DICOM (Chinese or pinyin), report-layout preferences and devices (with serial numbers, so
device-time conflicts F3 can be seeded). Staff names are derived from the hospital code,
so they are the same in every generated set.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.clinical.identities import draw_name

_SEQ = re.compile(r"\{seq:(\d+)\}")


@dataclass(frozen=True)
class Device:
    modality: str
    vendor: str
    model: str
    serial: str
    station: str
    spectral: bool = False
    mobile: bool = False
    field_strength: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Hospital:
    code: str
    name: str
    short: str
    province: str
    region_codes: tuple[str, ...]
    catalogue: str
    price_factor: float
    accession_pattern: str
    patient_id_pattern: str
    name_style: str
    report_style: dict[str, Any]
    devices: tuple[Device, ...]
    doctors: tuple[str, ...] = field(default=())
    technicians: tuple[str, ...] = field(default=())

    def devices_for(self, modality: str) -> list[Device]:
        return [d for d in self.devices if d.modality == modality]

    def accession(self, modality: str, when: datetime, seq: int) -> str:
        text = self.accession_pattern.replace("{M}", modality).replace("{date}", f"{when:%Y%m%d}")
        return _SEQ.sub(lambda m: f"{seq % 10 ** int(m.group(1)):0{m.group(1)}d}", text)

    def patient_id(self, seq: int) -> str:
        return _SEQ.sub(lambda m: f"{seq % 10 ** int(m.group(1)):0{m.group(1)}d}", self.patient_id_pattern)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "province": self.province, "catalogue": self.catalogue}


def _staff(code: str, n: int, salt: str) -> tuple[str, ...]:
    rng = random.Random(zlib.crc32(f"{code}:{salt}".encode()))
    names: list[str] = []
    while len(names) < n:
        name, _ = draw_name(rng, rng.choice("MF"))
        if name not in names:
            names.append(name)
    return tuple(names)


@lru_cache(maxsize=1)
def hospitals() -> tuple[Hospital, ...]:
    """All hospitals in the data file, in file order (the order is part of determinism)."""
    out = []
    for row in load("hospitals")["hospitals"]:
        out.append(
            Hospital(
                code=row["code"],
                name=row["name"],
                short=row["short"],
                province=row["province"],
                region_codes=tuple(row["region_codes"]),
                catalogue=row["catalogue"],
                price_factor=float(row["price_factor"]),
                accession_pattern=row["accession"],
                patient_id_pattern=row["patient_id"],
                name_style=row["name_style"],
                report_style=row["report_style"],
                devices=tuple(Device(**d) for d in row["devices"]),
                doctors=_staff(row["code"], 8, "doctor"),
                technicians=_staff(row["code"], 5, "technician"),
            )
        )
    return tuple(out)


def by_code(code: str) -> Hospital:
    for h in hospitals():
        if h.code == code:
            return h
    raise KeyError(code)
