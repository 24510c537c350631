"""Lexicons (qc_rules/lexicons/*.yaml) loaded once, with the matchers built from them.

The vocabularies are data so that a hospital's or a province's words can be added without
touching code. Matchers are compiled once per process (``functools.cache``): the rule
functions are called millions of times in a benchmark run.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import yaml

LEXICON_DIR = Path(__file__).resolve().parent.parent / "lexicons"


@cache
def load(name: str) -> dict[str, Any]:
    """The lexicon ``qc_rules/lexicons/<name>.yaml`` as a dict (read once)."""
    with open(LEXICON_DIR / f"{name}.yaml", encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"lexicon {name}.yaml is not a mapping")
    return data


def nfkc(text: str) -> str:
    """NFKC-normalised text: full-width letters, digits and colons become half-width.

    NFKC keeps the string length for the CJK text of reports (every full-width character maps
    to one half-width one), so spans found on the normalised text are spans of the original.
    """
    out = unicodedata.normalize("NFKC", text)
    return out if len(out) == len(text) else _width_only(text)


def _width_only(text: str) -> str:
    """Fallback that never changes the length: map only full-width ASCII (U+FF01..FF5E)."""
    return "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else ("　" == c and " " or c) for c in text)


def _is_ascii_word(term: str) -> bool:
    return bool(re.search(r"[A-Za-z0-9]", term))


def term_regex(terms: list[str], *, ignore_case: bool = False) -> re.Pattern[str]:
    """One alternation of ``terms``, longest first; ASCII terms must not touch letters/digits."""
    parts = []
    for term in sorted(set(terms), key=lambda t: (-len(t), t)):
        esc = re.escape(term)
        if _is_ascii_word(term):
            esc = rf"(?<![A-Za-z0-9]){esc}(?![A-Za-z0-9])" if re.fullmatch(r"[A-Za-z0-9/\- ]+", term) else esc
        parts.append(esc)
    return re.compile("|".join(parts) or r"(?!x)x", re.IGNORECASE if ignore_case else 0)


@cache
def anatomy() -> tuple[re.Pattern[str], dict[str, frozenset[str]]]:
    """Matcher over every anatomy term, and term -> the billing parts it names."""
    data = load("anatomy")
    aliases: dict[str, list[str]] = data.get("aliases", {})
    term_parts: dict[str, set[str]] = {}
    for part, terms in data["parts"].items():
        targets = aliases.get(part, [part])
        for term in terms:
            term_parts.setdefault(term, set()).update(targets)
    for group, terms in data.get("generic_terms", {}).items():
        for term in terms:
            term_parts.setdefault(term, set()).update(aliases.get(group, [group]))
    frozen = {t: frozenset(p) for t, p in term_parts.items()}
    return term_regex(list(frozen)), frozen


@cache
def lateral_parts() -> frozenset[str]:
    return frozenset(load("anatomy").get("lateral_parts", []))


@cache
def umbrella_keywords() -> frozenset[str]:
    """Item keywords of umbrella parts (腹部): used only when nothing more specific is named."""
    data = load("items")
    return frozenset(w.lower() for part in data.get("umbrella", {}) for w in data["parts"].get(part, []))


@cache
def item_matchers() -> tuple[re.Pattern[str], dict[str, frozenset[str]], re.Pattern[str], dict[str, str]]:
    """(part keyword matcher, keyword -> parts, modality keyword matcher, keyword -> modality)."""
    data = load("items")
    umbrella = data.get("umbrella", {})
    kw_parts: dict[str, set[str]] = {}
    for part, words in data["parts"].items():
        for word in words:
            kw_parts.setdefault(word.lower(), set()).update(umbrella.get(part, [part]))
    kw_mod: dict[str, str] = {}
    for mod, words in data["modalities"].items():
        for word in words:
            kw_mod[word.lower()] = mod
    part_re = _ci_regex(list(kw_parts))
    mod_re = _ci_regex(list(kw_mod))
    return part_re, {k: frozenset(v) for k, v in kw_parts.items()}, mod_re, kw_mod


def _ci_regex(words: list[str]) -> re.Pattern[str]:
    parts = []
    for word in sorted(set(words), key=lambda t: (-len(t), t)):
        esc = re.escape(word)
        if re.fullmatch(r"[a-z0-9\- ]+", word):
            esc = rf"(?<![a-z]){esc}(?![a-z])"
        parts.append(esc)
    return re.compile("|".join(parts), re.IGNORECASE)


@cache
def modality_group_of() -> dict[str, str]:
    out: dict[str, str] = {}
    for group, codes in load("items")["modality_groups"].items():
        for code in codes:
            out[code.upper()] = group
    return out


@cache
def dicom_body_parts() -> dict[str, frozenset[str]]:
    return {k.upper(): frozenset(v) for k, v in load("items")["dicom_body_parts"].items()}


@cache
def cue_matchers() -> dict[str, Any]:
    """Negation / uncertainty / laterality / section matchers from cues.yaml."""
    data = load("cues")
    sides: dict[str, str] = data["laterality"]
    headers: dict[str, str] = {}
    for section, words in data["sections"].items():
        for word in words:
            headers[word] = section
    header_alt = "|".join(re.escape(h) for h in sorted(headers, key=lambda t: (-len(t), t)))
    return {
        "negation": term_regex(data["negation"] + data["uncertainty"]),
        "negation_words": frozenset(data["negation"]),
        "negation_exceptions": term_regex(data.get("negation_exceptions", [])),
        "uncertainty": term_regex(data["uncertainty"]),
        "comparison": term_regex(data["comparison"]),
        "comparison_reference": re.compile("|".join(f"(?:{p})" for p in data["comparison_reference"])),
        "clause_breaks": frozenset(data["clause_breaks"]),
        "sentence_breaks": frozenset(data["sentence_breaks"]),
        "side": term_regex(list(sides)),
        "sides": sides,
        "side_exceptions": term_regex(data.get("laterality_exceptions", [])),
        # A header: at the start of the text or a line (after optional spaces / numbering
        # brackets), then a colon or a line break (or the end of the text).
        "header": re.compile(rf"(?m)^[ \t\u3000]*(?:[【\[](?P<hb>{header_alt})[】\]][ \t\u3000]*[:：]?"
                             rf"|(?P<h>{header_alt})[ \t\u3000]*(?:[:：]|\n|$))"),
        "header_section": headers,
        "modality": {m: re.compile("|".join(ps)) for m, ps in data["report_modality_patterns"].items()},
        "modality_skip": term_regex(data.get("report_modality_skip", [])),
        "incidental": term_regex(data.get("incidental", [])),
    }


@cache
def sex_matcher() -> tuple[re.Pattern[str], dict[str, str]]:
    data = load("sex_terms")
    term_sex = {t: s for s in ("M", "F") for t in data[s]}
    return term_regex(list(term_sex)), term_sex


@cache
def critical_matchers() -> list[tuple[str, re.Pattern[str]]]:
    return [(name, re.compile("|".join(f"(?:{p})" for p in pats))) for name, pats in load("critical_values")["critical"].items()]


@cache
def window_presets() -> dict[str, dict[str, list[float]]]:
    return load("windows")["windows"]


@cache
def kernel_table() -> tuple[dict[str, str], list[tuple[str, re.Pattern[str]]]]:
    names: dict[str, str] = {}
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for cls, spec in load("windows")["kernels"].items():
        for name in spec.get("names", []):
            names.setdefault(str(name).upper(), cls)
        for pat in spec.get("patterns", []):
            patterns.append((cls, re.compile(pat)))
    return names, patterns
