"""The standard series-category vocabulary: label fields -> category code, and the code's names.

The vocabulary is data (``radqc/vocab/series_categories.yaml``): families with axes expand
into concrete categories, each defined by the label fields it matches. Keeping it in a data
file means a hospital's new category (a new DX body part, a vendor's new derived type) is
a YAML line reviewed like any code table, and the classifier, the splitter, the catalogue
and the docs all read one definition. The CT contrast phase is deliberately not part of
the code (it is its own label field): see the header of the YAML file.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class CategoryInfo:
    """One standard series category: code, bilingual names, modality family, defining fields."""

    code: str
    zh: str
    en: str
    modality: str  # the code's family prefix: CT, MR, DX, MG, OT
    modalities: tuple[str, ...]  # DICOM modalities it applies to ("*" = any)
    match: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "zh": self.zh, "en": self.en, "modality": self.modality,
                "modalities": list(self.modalities), "match": dict(self.match), "description": self.description}


def vocab_path() -> Path:
    """Where the vocabulary lives (inside the radqc package, so installed copies carry it)."""
    return Path(str(resources.files("radqc") / "vocab" / "series_categories.yaml"))


@functools.cache
def _load() -> tuple[str, tuple[CategoryInfo, ...]]:
    raw = yaml.safe_load(vocab_path().read_text(encoding="utf-8"))
    return str(raw.get("version", "0")), tuple(expand(raw))


def expand(raw: Mapping[str, Any]) -> list[CategoryInfo]:
    """Concrete categories from the YAML's families and axes, in priority order."""
    axes = raw.get("axes") or {}
    out: list[CategoryInfo] = []
    seen: set[str] = set()
    for fam in raw.get("families") or []:
        names = list(fam.get("axes") or [])
        choices = [[(name, value, spec) for value, spec in axes[name]["values"].items()] for name in names]
        for combo in itertools.product(*choices) if names else [()]:
            code, zh, en = str(fam["code"]), str(fam.get("zh", "")), str(fam.get("en", ""))
            match = dict(fam.get("match") or {})
            for name, value, spec in combo:
                code = code.replace("{" + name + "}", str(spec["code"]))
                zh = zh.replace("{" + name + "}", str(spec.get("zh", spec["code"])))
                en = en.replace("{" + name + "}", str(spec.get("en", spec["code"])))
                match[axes[name]["field"]] = value
            if code in seen:
                raise ValueError(f"series category {code} defined twice in {vocab_path()}")
            seen.add(code)
            mods = tuple(str(m).upper() for m in fam.get("modalities") or ["*"])
            out.append(CategoryInfo(code=code, zh=zh, en=en, modality=code.split(".")[0], modalities=mods,
                                    match=match, description=str(fam.get("description", ""))))
    return out


def vocab_version() -> str:
    return _load()[0]


def categories() -> dict[str, CategoryInfo]:
    """Every standard series category, code -> info, in priority order."""
    return {c.code: c for c in _load()[1]}


@functools.cache
def _by_modality(modality: str) -> tuple[CategoryInfo, ...]:
    return tuple(c for c in _load()[1] if modality in c.modalities or "*" in c.modalities)


def category_code(label_fields: Mapping[str, Any], modality: str | None) -> str | None:
    """The standard category of a label (first matching category), or None when none fits.

    ``label_fields`` holds the label's fields (``role``, ``derived_type``, ``plane``,
    ``sequence``, ``kernel_class``, ``thickness_class``, ``view``, ``region``; optionally
    ``special``); a field a category matches on must be equal. A label with role
    ``unknown`` has no category.
    """
    role = label_fields.get("role")
    if not role or role == "unknown":
        return None
    mod = (modality or "").upper() or "*"
    key = (mod, tuple(label_fields.get(k) for k in _match_keys()))
    if key in _CODE_CACHE:
        return _CODE_CACHE[key]
    code = None
    for cat in _by_modality(mod):
        if all(label_fields.get(k) == v for k, v in cat.match.items()):
            code = cat.code
            break
    if len(_CODE_CACHE) < 50_000:
        _CODE_CACHE[key] = code
    return code


@functools.cache
def _match_keys() -> tuple[str, ...]:
    """Every label field some category matches on (the cache key of category_code)."""
    return tuple(sorted({k for c in _load()[1] for k in c.match}))


_CODE_CACHE: dict[tuple[str, tuple[Any, ...]], str | None] = {}


def category_info(code: str | None) -> CategoryInfo | None:
    return categories().get(code) if code else None


__all__ = ["CategoryInfo", "categories", "category_code", "category_info", "vocab_path", "vocab_version", "expand"]
