"""The TAG dictionary (影像特征标签 / 数据质量标签): tag definitions loaded from ``tags.yaml``.

Why a dictionary: tags are what users search exams by (``radqc exams search --tag``) and what
audit rules read (thin slices present, reconstructions present, ...). Defining each tag once
— name in both languages, value type, allowed values, the inputs it is derived from and the
numbers its rule uses — keeps the assignment code (:mod:`radqc.pipelines.series.tags`), the
command line and the documentation saying the same thing.

Value encoding in the catalogue (``ExamTag.value``, 128 characters): ``bool`` tags store
``"true"``/``"false"``; ``enum`` one value; ``set`` the members sorted in dictionary order and
joined by commas (``"chest,abdomen"``) — :func:`value_matches` lets a search for one member
match such a row.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from radqc.vocab.items import TAGS_FILE

GROUPS = ("image_feature", "data_quality", "content")
TYPES = ("bool", "enum", "set", "text")
MAX_VALUE_LEN = 128


@dataclass(frozen=True)
class TagValue:
    """One allowed value of an enum/set tag."""

    value: str
    zh: str
    en: str
    match: tuple[str, ...] = ()


@dataclass(frozen=True)
class TagDef:
    """One tag of the dictionary."""

    code: str
    zh: str
    en: str
    group: str
    type: str
    values: tuple[TagValue, ...] = ()
    #: Values outside ``values`` are allowed (vendor names, new regions).
    open: bool = False
    #: Assigned only to exams with one of these modalities; empty: any.
    modalities: tuple[str, ...] = ()
    derive_from: tuple[str, ...] = ()
    rule: str = ""
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def allowed(self) -> tuple[str, ...]:
        """The legal stored values of a bool/enum/set tag (empty for open text)."""
        if self.type == "bool":
            return ("true", "false")
        return tuple(v.value for v in self.values)

    def label(self, value: str | None = None) -> str:
        """Bilingual display: ``薄层图像 / Thin slices present`` (``= 是 / yes`` with a value)."""
        head = f"{self.zh} / {self.en}"
        if value is None:
            return head
        return f"{head} = {display_value(self, value)}"


def _load() -> dict[str, Any]:
    with TAGS_FILE.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


@functools.lru_cache(maxsize=1)
def tags() -> dict[str, TagDef]:
    """Every tag definition by code, in file order."""
    out: dict[str, TagDef] = {}
    for row in _load()["tags"]:
        derive = row.get("derive") or {}
        out[row["code"]] = TagDef(
            code=row["code"], zh=row["zh"], en=row["en"], group=row["group"], type=row["type"],
            values=tuple(TagValue(value=str(v["value"]), zh=str(v["zh"]), en=str(v["en"]),
                                  match=tuple(str(m) for m in v.get("match") or ())) for v in row.get("values") or ()),
            open=bool(row.get("open", False)), modalities=tuple(row.get("modalities") or ()),
            derive_from=tuple(derive.get("from") or ()), rule=str(derive.get("rule", "")),
            params=dict(row.get("params") or {}))
    return out


def tag(code: str) -> TagDef:
    """The definition of one tag; KeyError with a bilingual message when unknown."""
    found = tags().get(code)
    if found is None:
        raise KeyError(f"未知的标签 / unknown tag: {code!r} (radqc/vocab/tags.yaml)")
    return found


def format_set(tagdef: TagDef, members: Iterable[str]) -> str:
    """Store a set value: members de-duplicated, dictionary order first, unknown ones after (sorted)."""
    uniq = {str(m) for m in members if m is not None and str(m) != ""}
    order = {v.value: i for i, v in enumerate(tagdef.values)}
    ranked = sorted(uniq, key=lambda m: (order.get(m, len(order)), m))
    return ",".join(ranked)[:MAX_VALUE_LEN]


def parse_value(tagdef: TagDef, stored: str | None) -> list[str]:
    """The members of a stored value (one element for bool/enum/text, several for a set)."""
    if stored is None:
        return []
    if tagdef.type == "set":
        return [m for m in stored.split(",") if m]
    return [stored]


def normalise_query_value(tagdef: TagDef, value: str) -> str:
    """A user's value as stored: yes/是/1 -> "true" for bool tags, the case of the dictionary
    for enum/set values (``ct`` -> ``CT``). Unknown values of closed tags raise ValueError
    (bilingual) so a typo is reported instead of silently matching nothing."""
    v = value.strip()
    if tagdef.type == "bool":
        low = v.lower()
        if low in ("true", "yes", "y", "1", "是", "有"):
            return "true"
        if low in ("false", "no", "n", "0", "否", "无"):
            return "false"
        raise ValueError(f"标签 {tagdef.code} 只接受 true/false / tag {tagdef.code} takes true or false, not {value!r}")
    for allowed in tagdef.values:
        if v.casefold() in (allowed.value.casefold(), allowed.zh.casefold(), allowed.en.casefold()):
            return allowed.value
    if tagdef.open or tagdef.type == "text":
        return v
    choices = ", ".join(tagdef.allowed())
    raise ValueError(f"标签 {tagdef.code} 的取值不对（可选：{choices}）/ tag {tagdef.code} takes one of {choices}, not {value!r}")


def value_matches(tagdef: TagDef, stored: str | None, wanted: str | None) -> bool:
    """Whether a stored value satisfies a search for ``wanted`` (None: any value; bool tags:
    None means "true", since ``--tag thin_slices_present`` asks for exams that have it)."""
    if wanted is None:
        return stored == "true" if tagdef.type == "bool" else stored is not None
    if tagdef.type == "set":
        return wanted in parse_value(tagdef, stored)
    return stored == wanted


def display_value(tagdef: TagDef, stored: str | None) -> str:
    """Bilingual rendering of a stored value (是 / yes; 胸部 / chest, 腹部 / abdomen)."""
    if stored is None:
        return "-"
    if tagdef.type == "bool":
        return {"true": "是 / yes", "false": "否 / no"}.get(stored, stored)
    names = {v.value: v for v in tagdef.values}
    parts = []
    for m in parse_value(tagdef, stored):
        tv = names.get(m)
        parts.append(m if tv is None or tv.zh == tv.en == m else f"{tv.zh} / {tv.en}" if tv.zh != tv.en else tv.zh)
    return ", ".join(parts)
