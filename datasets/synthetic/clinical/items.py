"""Ordered exam items: the standard item table, and how hospitals write combined orders.

An order is a list of :class:`StandardItem` (one modality x one billing part x one method).
The hospital writes it as one or more free-text strings (``exam_items`` of the exam
record): one string per item, several items joined by a separator
(``头颅CT平扫+胸部CT平扫``), or one name for several parts with a shared modality and
method (``计算机体层成像（CT）增强(胸部+上腹)``, ``胸部+上腹部CT平扫``), with noise such
as ``（云胶片）``, ``*`` or full-width characters. :func:`write_order` returns the strings
together with their truth: which standard items each string stands for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from radqc.datasets.synthetic.clinical._data import load

SIDES = {"L": "左", "R": "右"}
_FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+()"}


@dataclass(frozen=True)
class StandardItem:
    code: str
    name_zh: str
    name_en: str
    modality: str
    part: str
    method: str
    region: str
    body_part: str
    price: str
    names: tuple[str, ...]
    series: tuple[dict[str, Any], ...]
    phases: tuple[str, ...] = ("native",)
    lateral: bool = False
    required: tuple[str, ...] = ()
    views: tuple[str, ...] = ()

    @property
    def enhanced(self) -> bool:
        return "增强" in self.method

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code, "name_zh": self.name_zh, "name_en": self.name_en, "modality": self.modality,
            "part": self.part, "method": self.method, "region": self.region,
        }


@lru_cache(maxsize=1)
def standard_items() -> dict[str, StandardItem]:
    out: dict[str, StandardItem] = {}
    for row in load("items")["items"]:
        out[row["code"]] = StandardItem(
            code=row["code"], name_zh=row["name_zh"], name_en=row["name_en"], modality=row["modality"],
            part=row["part"], method=row["method"], region=row["region"], body_part=row["body_part"],
            price=row["price"], names=tuple(row["names"]), series=tuple(row["series"]),
            phases=tuple(row.get("phases", ["native"])), lateral=bool(row.get("lateral", False)),
            required=tuple(row.get("required", [])), views=tuple(row.get("views", [])),
        )
    return out


def item(code: str) -> StandardItem:
    return standard_items()[code]


@dataclass
class OrderedItem:
    """One standard item as ordered for this exam (with its side when lateral)."""

    item: StandardItem
    side: str | None = None  # "L" / "R"

    @property
    def label(self) -> str:
        """The standard name with its side, e.g. 左膝关节MR平扫."""
        return (SIDES[self.side] if self.side else "") + self.item.name_zh

    def to_dict(self) -> dict[str, Any]:
        d = self.item.to_dict()
        d["laterality"] = self.side
        d["label"] = self.label
        return d


@dataclass
class WrittenOrder:
    """The order as the hospital wrote it, with the truth of every string."""

    exam_items: list[str]
    #: One entry per string in ``exam_items``: the indices into ``items`` it stands for.
    item_index: list[list[int]]
    items: list[OrderedItem]
    style: str  # "single", "separate", "joined", "distributed"
    noise: list[str] = field(default_factory=list)

    def truth(self) -> list[dict[str, Any]]:
        return [
            {"text": text, "standard_items": [self.items[i].to_dict() for i in idx], "style": self.style}
            for text, idx in zip(self.exam_items, self.item_index, strict=True)
        ]


def _name(rng: random.Random, oi: OrderedItem) -> str:
    text = rng.choice(oi.item.names)
    return text.replace("{side}", SIDES[oi.side]) if oi.side else text.replace("{side}", "")


def _fullwidth(text: str) -> str:
    return "".join(_FULLWIDTH.get(c, c) for c in text)


def _noisy(rng: random.Random, text: str, noise: list[str]) -> str:
    cfg = load("items")["noise"]
    if rng.random() < cfg["prefix_rate"]:
        p = rng.choice(cfg["prefixes"])
        text = p + text
        noise.append(f"prefix:{p}")
    if rng.random() < cfg["suffix_rate"]:
        s = rng.choice(cfg["suffixes"])
        text = text + s
        noise.append(f"suffix:{s}")
    if rng.random() < cfg["fullwidth_rate"]:
        text = _fullwidth(text)
        noise.append("fullwidth")
    return text


def distributable(items: list[OrderedItem]) -> bool:
    """One shared name works when all items share modality and method and none is lateral."""
    return (
        len(items) > 1
        and len({oi.item.modality for oi in items}) == 1
        and len({oi.item.method for oi in items}) == 1
        and all(oi.item.method in load("items")["method_words"] for oi in items)
        and not any(oi.item.lateral for oi in items)
    )


def distributed_name(rng: random.Random, items: list[OrderedItem]) -> str:
    """``胸部+上腹部CT平扫`` or ``计算机体层成像（CT）增强(胸部+上腹)``: one name, several parts."""
    data = load("items")
    parts = [rng.choice(data["part_aliases"][oi.item.part]) for oi in items]
    modality = rng.choice(data["modality_words"][items[0].item.modality])
    method = rng.choice(data["method_words"][items[0].item.method])
    joiner = rng.choice(["+", "＋", "、"])
    if modality.startswith("计算机") or rng.random() < 0.3:
        return f"{modality}{method}({joiner.join(parts)})"
    return f"{joiner.join(parts)}{modality}{method}"


def write_order(rng: random.Random, items: list[OrderedItem], force_style: str | None = None) -> WrittenOrder:
    """Write ``items`` as hospital strings; the style is drawn unless ``force_style`` is given."""
    noise: list[str] = []
    if len(items) == 1:
        return WrittenOrder([_noisy(rng, _name(rng, items[0]), noise)], [[0]], items, "single", noise)
    styles = ["separate", "joined"] + (["distributed"] if distributable(items) else [])
    # One name for several parts is a property of the report layout F: only when asked.
    style = force_style if force_style in styles else rng.choice(["separate", "joined"])
    if style == "separate":
        texts = [_noisy(rng, _name(rng, oi), noise) for oi in items]
        return WrittenOrder(texts, [[i] for i in range(len(items))], items, style, noise)
    if style == "joined":
        sep = rng.choice(load("items")["separators"])
        text = sep.join(_name(rng, oi) for oi in items)
        return WrittenOrder([_noisy(rng, text, noise)], [list(range(len(items)))], items, style, noise)
    text = distributed_name(rng, items)
    return WrittenOrder([_noisy(rng, text, noise)], [list(range(len(items)))], items, style, noise)


def draw_combo(rng: random.Random, modality: str) -> tuple[list[str], str]:
    """A combination of standard item codes for ``modality`` and its acquisition mode."""
    combos = load("items")["combos"][modality]
    combo = rng.choices(combos, weights=[c["weight"] for c in combos], k=1)[0]
    return list(combo["items"]), combo.get("acquisition", "separate")
