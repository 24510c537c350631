"""Charge lines for an exam, with add-ons, in the hospital's catalogue, and seeded irregularities.

The planner decides what was *imaged* (standard items, series, phases, evidence) and what
is *billed*. A clean exam bills exactly what the images support; an irregular one (F-ids of
charges-and-audit.md) bills more, and the imaging side is set so that the evidence is
really missing (no thin series for F11, no contrast phase for F5...). Every irregular line
is labelled with its F-id, so the audit stage can be scored line by line.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.clinical.hospitals import Hospital
from radqc.datasets.synthetic.clinical.items import OrderedItem, item

#: F-ids the planner can seed (the issue's list); F1 and F3 involve two exams.
IRREGULARITY_IDS: tuple[str, ...] = ("F1", "F3", "F4", "F5", "F7", "F9", "F10", "F11", "F12", "F13", "F17")
CROSS_EXAM_IDS = ("F1", "F3")


def irregularity_info(fid: str) -> dict[str, Any]:
    return load("irregularities")[fid]


@dataclass
class ChargeLine:
    charge_code: str
    charge_name: str
    quantity: float
    unit_price: float
    charge_time: datetime
    catalogue: str
    province: str
    #: Planner-side labels (not written to the record): which price key and standard items.
    key: str = ""
    items: list[int] = field(default_factory=list)
    irregularity: str | None = None

    @property
    def amount(self) -> float:
        return round(self.quantity * self.unit_price, 2)

    def record(self, accession: str) -> dict[str, Any]:
        """The charge line as the HIS writes it (the records schema)."""
        return {
            "accession_number": accession,
            "charge_code": self.charge_code,
            "charge_name": self.charge_name,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "amount": self.amount,
            "charge_time": self.charge_time.isoformat(),
            "catalogue": self.catalogue,
            "province": self.province,
        }


def applicable_irregularities(hospital: Hospital, modality: str, items: list[OrderedItem]) -> list[str]:
    """F-ids that can be seeded on an exam of this hospital/modality/items (single-exam ones)."""
    out = []
    for fid in IRREGULARITY_IDS:
        info = irregularity_info(fid)
        if modality not in info["modalities"] or fid in CROSS_EXAM_IDS:
            continue
        if info.get("catalogue") and info["catalogue"] != hospital.catalogue:
            continue
        if info.get("parts") and not any(oi.item.part in info["parts"] for oi in items):
            continue
        if fid == "F5" and not any(oi.item.enhanced for oi in items):
            continue
        if fid == "F13" and not any(oi.item.price == "ct_plain" and oi.item.part == "胸部" for oi in items):
            continue
        out.append(fid)
    return out


def _price(hospital: Hospital, base: float) -> float:
    factor = hospital.price_factor * float(load("prices")["province_factor"].get(hospital.province, 1.0))
    return round(base * factor * 2) / 2


def _entry(hospital: Hospital, key: str) -> dict[str, Any]:
    cat = load("prices")["catalogues"][hospital.catalogue]
    if key in cat:
        return cat[key]
    if key in cat["addons"]:
        return cat["addons"][key]
    return cat["forbidden"][key]


def has_entry(hospital: Hospital, key: str) -> bool:
    cat = load("prices")["catalogues"][hospital.catalogue]
    return key in cat or key in cat["addons"] or key in cat["forbidden"]


def line(hospital: Hospital, key: str, quantity: float, when: datetime, items: list[int],
         irregularity: str | None = None) -> ChargeLine:
    e = _entry(hospital, key)
    return ChargeLine(
        charge_code=str(e["code"]), charge_name=e["name"], quantity=float(quantity),
        unit_price=_price(hospital, float(e["price"])), charge_time=when, catalogue=hospital.catalogue,
        province=hospital.province, key=key, items=items, irregularity=irregularity,
    )


@dataclass
class Billing:
    """What the hospital bills: the main items (after F4/F7 changes) and the add-ons."""

    lines: list[ChargeLine]
    irregularities: list[dict[str, Any]]


def bill(
    rng: random.Random,
    hospital: Hospital,
    items: list[OrderedItem],
    facts: dict[str, Any],
    when: datetime,
    irregularity: str | None = None,
    extra_items: list[OrderedItem] | None = None,
) -> Billing:
    """Charge lines for ``items`` given the imaging ``facts`` (spec.evidence) and one seeded F-id.

    ``extra_items`` are billed but were never imaged (F7). Legitimate add-ons are charged
    only when ``facts`` supports them, so an exam without a seeded irregularity is clean.
    """
    lines: list[ChargeLine] = []
    irr: list[dict[str, Any]] = []
    t = when + timedelta(minutes=rng.randint(-40, -5))  # charged at registration, before the scan

    # Main lines: one per standard item (DX: quantity = views), grouped by price key.
    for i, oi in enumerate(items):
        qty = len(oi.item.views) if oi.item.price == "xray" else 1
        lines.append(line(hospital, oi.item.price, qty, t, [i]))
    if irregularity == "F4":
        # 串换: bill the same part under another modality's item (CT <-> MR, DX -> CT).
        swap = {"ct_plain": "mr_plain", "ct_enhanced": "mr_enhanced", "mr_plain": "ct_plain",
                "mr_enhanced": "ct_enhanced", "xray": "ct_plain"}
        target = lines[0]
        new_key = swap[target.key]
        lines[0] = line(hospital, new_key, 1, t, target.items, "F4")
        irr.append({"id": "F4", "lines": [0], "detail": {"imaged_modality": items[0].item.modality,
                                                        "charged_item": lines[0].charge_name}})
    if irregularity == "F5":
        # 平扫按增强: the enhanced item is billed, the images are native only.
        for i, ln in enumerate(lines):
            if items[ln.items[0]].item.enhanced:
                ln.irregularity = "F5"
                irr.append({"id": "F5", "lines": [i], "detail": {"item": items[ln.items[0]].label,
                                                                 "phases_imaged": ["native"]}})
                break
    if irregularity == "F7" and extra_items:
        for oi in extra_items:
            lines.append(line(hospital, oi.item.price, 1, t, [], "F7"))
            irr.append({"id": "F7", "lines": [len(lines) - 1], "detail": {"billed_part": oi.item.part,
                        "imaged_parts": [x.item.part for x in items]}})

    # Add-ons supported by the images.
    ct_lines = [i for i, ln in enumerate(lines) if ln.key in ("ct_plain", "ct_enhanced") and ln.irregularity is None]
    modality = items[0].item.modality
    if modality == "CT" and ct_lines:
        if hospital.catalogue == "guideline-2024":
            if facts.get("thin_series") and rng.random() < 0.5:
                lines.append(line(hospital, "thin_slice", 1, t, lines[ct_lines[0]].items))
            if facts.get("spectral") and rng.random() < 0.8:
                lines.append(line(hospital, "spectral", 1, t, lines[ct_lines[0]].items))
            if facts.get("ecg_gating"):
                lines.append(line(hospital, "calcium_score", 1, t, lines[ct_lines[0]].items))
        else:
            if rng.random() < 0.5:
                lines.append(line(hospital, "helical", len(ct_lines), t, [j for i in ct_lines for j in lines[i].items]))
            if facts.get("derived_series") and rng.random() < 0.5:
                lines.append(line(hospital, "reconstruction_3d", 1, t, lines[ct_lines[0]].items))
            if facts.get("ecg_gating"):
                lines.append(line(hospital, "ecg_gating", 1, t, lines[ct_lines[0]].items))
    if modality == "MR" and hospital.catalogue == "guideline-2024" and facts.get("special_techniques"):
        if rng.random() < 0.6:
            lines.append(line(hospital, "mr_special", len(facts["special_techniques"]), t, [0]))
    if modality == "DX" and facts.get("mobile_device"):
        lines.append(line(hospital, "bedside", 1, t, [0]))

    # Add-ons that are not supported by the images (the evidence was removed by the planner).
    addon_for = {"F10": "reconstruction_3d", "F11": "thin_slice", "F12": "spectral"}
    if irregularity in addon_for:
        target_index = ct_lines[0] if ct_lines else 0
        lines.append(line(hospital, addon_for[irregularity], 1, t, lines[target_index].items, irregularity))
        irr.append({"id": irregularity, "lines": [len(lines) - 1],
                    "detail": {"charged": lines[-1].charge_name, "evidence": {_evidence_key(irregularity): False}}})
    if irregularity == "F13":
        key = "calcium_score" if hospital.catalogue == "guideline-2024" else "ecg_gating"
        lines.append(line(hospital, key, 1, t, lines[ct_lines[0]].items if ct_lines else [0], "F13"))
        irr.append({"id": "F13", "lines": [len(lines) - 1],
                    "detail": {"charged": lines[-1].charge_name, "evidence": {"ecg_gating": False}}})
    if irregularity == "F17":
        views = facts.get("views", [])
        if facts.get("mobile_device") is False and rng.random() < 0.5:
            lines.append(line(hospital, "bedside", 1, t, [0], "F17"))
            irr.append({"id": "F17", "lines": [len(lines) - 1], "variant": "bedside_fixed_room",
                        "detail": {"charged": lines[-1].charge_name, "device_mobile": False}})
        else:
            main = lines[0]
            main.quantity = main.quantity + rng.randint(1, 2)
            main.irregularity = "F17"
            irr.append({"id": "F17", "lines": [0], "variant": "extra_views",
                        "detail": {"views_charged": int(main.quantity), "views_imaged": len(views)}})
    if irregularity == "F9":
        variants = ["duplicate_line", "cloud_film"]
        if any(oi.item.enhanced for oi in items):
            variants.append("plain_plus_enhanced")
        if modality == "CT" and hospital.catalogue == "guideline-2024":
            variants.append("reconstruction_3d")
        variant = rng.choice(variants)
        if variant == "duplicate_line":
            dup = lines[0]
            lines.append(line(hospital, dup.key, dup.quantity, dup.charge_time + timedelta(minutes=rng.randint(1, 90)),
                              dup.items, "F9"))
        elif variant == "cloud_film":
            lines.append(line(hospital, "cloud_film", 1, t, [], "F9"))
        elif variant == "plain_plus_enhanced":
            i = next(i for i, oi in enumerate(items) if oi.item.enhanced)
            plain = "ct_plain" if items[i].item.modality == "CT" else "mr_plain"
            lines.append(line(hospital, plain, 1, t, [i], "F9"))
        else:
            lines.append(line(hospital, "reconstruction_3d", 1, t, [0], "F9"))
        irr.append({"id": "F9", "lines": [len(lines) - 1], "variant": variant,
                    "detail": {"charged": lines[-1].charge_name}})
    return Billing(lines, irr)


def _evidence_key(fid: str) -> str:
    return {"F10": "derived_series", "F11": "thin_series", "F12": "spectral", "F13": "ecg_gating",
            "F5": "contrast"}[fid]


__all__ = ["IRREGULARITY_IDS", "CROSS_EXAM_IDS", "ChargeLine", "Billing", "bill", "applicable_irregularities",
           "irregularity_info", "item"]
