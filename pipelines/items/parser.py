"""Deterministic parser of hospital exam-item names into slots (issue #6, docs/items.md).

A hospital writes ``计算机体层成像（CT）增强(胸部+上腹)`` or ``右侧肩关节MR平扫,左侧肩关节MR平扫``;
QC, audit and datasets need standard items. This module does the first, explainable step:
clean the text (NFKC, noise), find every lexicon term (longest-first), split a combined order
where *both* sides name a part, and let parts that were written without their modality or
method borrow them from the nearest segment that has them (the shared-method pattern
``胸部+上腹部CT平扫``). Everything it knows is in ``lexicon.yaml``; the code only applies it.

Mapping the slots onto standard items lives in :mod:`radqc.pipelines.items.normalise`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LEXICON_PATH = Path(__file__).with_name("lexicon.yaml")
_ASCII = re.compile(r"[a-z]")
_MEANINGFUL = re.compile(r"[\u4e00-\u9fffa-z0-9]")


@dataclass
class Token:
    """One lexicon term found in the cleaned text, with every slot value it carries."""

    text: str
    start: int
    end: int
    meanings: list[tuple[str, Any]]

    def values(self, kind: str) -> list[Any]:
        return [v for k, v in self.meanings if k == kind]


@dataclass
class Segment:
    """One ordered item's worth of text (a part of a combined order) and its slots."""

    text: str
    modality: str | None = None
    modality_how: str | None = None  # explicit | implied | inherited | default
    tiers: list[str] = field(default_factory=list)
    #: Billing parts as written (multi-part words expanded; umbrella/vessel applied later).
    parts: list[str] = field(default_factory=list)
    #: Side per part index (左/右/双侧 or None).
    sides: list[str | None] = field(default_factory=list)
    method_terms: list[str] = field(default_factory=list)
    method_how: str | None = None  # explicit | inherited | default
    postprocessing: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    #: The words that named the parts (肝脏, 胰腺...): they choose among organ-specific items.
    part_words: list[str] = field(default_factory=list)
    #: The first word that named each part (modality-dependent words: "pelvis" in a CT is 盆腔).
    part_word: dict[str, str] = field(default_factory=dict)
    residue: str = ""
    inherited: list[str] = field(default_factory=list)
    #: A bare modality word before a separator and an item method (头颅MRI+MRA): main item too.
    main_implied: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ParsedName:
    """The parse of one input name: its cleaned form, the noise removed and its segments."""

    input: str
    cleaned: str
    noise: list[str]
    segments: list[Segment]
    evidence: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "cleaned": self.cleaned, "noise": self.noise,
                "segments": [s.to_dict() for s in self.segments], "evidence": self.evidence}


class Lexicon:
    """The compiled lexicon: a term table, one alternation regex and the rule tables."""

    def __init__(self, data: dict[str, Any], extra_part_aliases: dict[str, list[str]] | None = None) -> None:
        self.data = data
        self.version = str(data.get("version", "?"))
        self.thresholds: dict[str, float] = {k: float(v) for k, v in data["thresholds"].items()}
        self.conf: dict[str, float] = {k: float(v) for k, v in data["confidence"].items()}
        self.noise = [re.compile(p, re.IGNORECASE) for p in data["noise"]]
        self.typos = [(re.compile(t["pattern"]), str(t["repl"])) for t in data.get("typos", [])]
        self.tiers = [(re.compile(t["pattern"]), str(t["tier"])) for t in data["device_tiers"]]
        self.filler = sorted({_norm(f) for f in data["filler"]}, key=len, reverse=True)
        self.umbrella: dict[str, dict[str, list[str]]] = data["umbrella"]
        self.vessel_parts: dict[str, dict[str, str]] = data["vessel_parts"]
        self.method_by_modality: dict[str, dict[str, str]] = data["method_by_modality"]
        self.method_rules: list[dict[str, Any]] = data["method_rules"]
        self.item_methods: set[str] = set(data["item_methods"])
        self.addon_methods: set[str] = set(data["addon_methods"])
        self.method_fallbacks: dict[str, list[str | None]] = data["method_fallbacks"]
        self.default_method: dict[str, str] = data["default_method"]
        self.default_view: dict[str, str] = data["default_view"]
        self.implied: dict[str, Any] = data["implied_modality"]
        self.default_modality: dict[str, Any] = data["default_modality"]
        self.lateral_parts: set[str] = set(data["lateral_parts"])
        self.vessel_default_method: dict[str, str] = data["vessel_default_method"]
        self.separators: set[str] = set(data["separators"])
        self.part_names: set[str] = set(data["parts"])
        self.vessels: set[str] = {v for table in self.vessel_parts.values() for v in table.values()}
        terms: dict[str, list[tuple[str, Any]]] = {}

        def add(term: str, kind: str, value: Any) -> None:
            key = _norm(str(term))
            if key and (kind, value) not in terms.setdefault(key, []):
                terms[key].append((kind, value))

        for modality, words in data["modalities"].items():
            for w in words:
                add(w, "modality", modality)
        # the standard vocabulary's spellings win over this file's (one meaning per spelling)
        vocab_terms: dict[str, str] = {}
        for p, aliases in (extra_part_aliases or {}).items():
            self.part_names.add(p)
            for w in [p, *aliases]:
                vocab_terms.setdefault(_norm(w), p)
        for p, aliases in data["parts"].items():
            for w in [p, *aliases]:
                if vocab_terms.get(_norm(w), p) == p:
                    add(w, "part", p)
        for w, p in vocab_terms.items():
            add(w, "part", p)
        for word, ps in data["multi_part"].items():
            add(word, "parts", tuple(ps))
        for word, slots in data["compound"].items():
            for kind, value in slots.items():
                if kind == "method":
                    for m in value if isinstance(value, list) else [value]:
                        add(word, "method", m)
                else:
                    add(word, kind, value)
        for side, words in data["laterality"].items():
            for w in words:
                add(w, "side", side)
        for method, words in data["methods"].items():
            for w in words:
                add(w, "method", method)
        for post, words in data["postprocessing"].items():
            for w in words:
                add(w, "post", post)
        for view, words in data["views"].items():
            for w in words:
                add(w, "view", view)
        self.terms = terms
        alternatives = []
        for key in sorted(terms, key=len, reverse=True):
            pat = re.escape(key)
            if _ASCII.match(key[0]):
                pat = r"(?<![a-z])" + pat
            if _ASCII.match(key[-1]):
                pat = pat + r"(?![a-z])"
            alternatives.append(pat)
        self.regex = re.compile("|".join(alternatives))

    # -- helpers the normaliser uses ------------------------------------------------------
    def is_lateral(self, part: str) -> bool:
        return part in self.lateral_parts


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().strip()


def _vocab_part_aliases() -> dict[str, list[str]]:
    """The standard vocabulary's own part spellings (empty while radqc.vocab is unavailable)."""
    try:
        from radqc import vocab
    except ImportError:
        return {}
    try:
        return {p.name: list(p.aliases) for p in vocab.parts().values()}
    except Exception:  # noqa: BLE001 - a broken vocabulary must not stop parsing
        return {}


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The lexicon of ``lexicon.yaml`` plus the vocabulary's part aliases (loaded once)."""
    data = yaml.safe_load(LEXICON_PATH.read_text(encoding="utf-8"))
    return Lexicon(data, _vocab_part_aliases())


def clean(text: str, lex: Lexicon | None = None) -> tuple[str, list[str]]:
    """NFKC, lower case, noise removed; returns the cleaned text and the noise it removed."""
    lex = lex or lexicon()
    out = unicodedata.normalize("NFKC", text or "").lower()
    out = out.replace("\u3000", " ").replace("\t", " ")
    for pat, repl in lex.typos:
        out = pat.sub(repl, out)
    removed: list[str] = []
    for pat in lex.noise:
        found = [m.group(0) for m in pat.finditer(out)]
        if found:
            removed.extend(f.strip() for f in found if f.strip())
            out = pat.sub(" ", out)
    out = re.sub(r"[ ]{2,}", " ", out).strip(" +,;_/|&")
    if out.count(" ") >= 3 and out.count(" ") * 3 >= len(out.replace(" ", "")):
        out = out.replace(" ", "")  # "头 颅 CT 平 扫": spaces between letters, not between items
    out = re.sub(r"\(\s*\)", "", out)
    return out, removed


def tokens(text: str, lex: Lexicon | None = None) -> list[Token]:
    """Every lexicon term in ``text`` (already cleaned), longest-first, left to right."""
    lex = lex or lexicon()
    return [Token(m.group(0), m.start(), m.end(), lex.terms[m.group(0)]) for m in lex.regex.finditer(text)]


def _residue(text: str, toks: list[Token], lex: Lexicon, offset: int = 0) -> str:
    """Characters no term and no filler explains (what makes a parse uncertain)."""
    chars = list(text)
    for t in toks:
        for i in range(t.start - offset, t.end - offset):
            chars[i] = " "
    rest = "".join(chars)
    for pat, _tier in lex.tiers:
        rest = pat.sub(" ", rest)
    for f in lex.filler:
        if f:
            rest = rest.replace(f, " ")
    return "".join(_MEANINGFUL.findall(rest))


def _segment(text: str, toks: list[Token], lex: Lexicon, offset: int = 0) -> Segment:
    seg = Segment(text=text.strip(" +,;_/|&"))
    side_tokens = [(t.start, t.values("side")[0]) for t in toks if t.values("side")]
    explicit_modality: list[str] = []
    for t in toks:
        explicit_modality += t.values("modality")
        if t.values("part") or t.values("parts"):
            seg.part_words.append(t.text)
        seg.tiers += t.values("tier")
        for p in t.values("part") + [p for ps in t.values("parts") for p in ps]:
            if p in seg.parts:
                continue
            seg.parts.append(p)
            seg.part_word[p] = t.text
            before = [s for pos, s in side_tokens if pos <= t.start]
            after = [s for pos, s in side_tokens if pos > t.start]
            if {"左", "右"} <= {s for _, s in side_tokens}:
                seg.sides.append("双侧")  # 膝关节MR平扫(左+右): both sides of one part in one name
            else:
                seg.sides.append(before[-1] if before else (after[0] if after else None))
        for m in t.values("method"):
            if m not in seg.method_terms:
                seg.method_terms.append(m)
        for p in t.values("post"):
            if p not in seg.postprocessing:
                seg.postprocessing.append(p)
        for v in t.values("view"):
            if v not in seg.views:
                seg.views.append(v)
    if not seg.parts:
        for t in toks:
            for p in t.values("fallback_part"):
                if p not in seg.parts:
                    seg.parts.append(p)
                    seg.part_word[p] = t.text
                    seg.sides.append(None)
    # "头颅MRI+MRA": a bare modality word, a separator, then an item method: a main item too
    item_methods = lex.item_methods
    for m_tok in toks:
        if m_tok.values("modality") and not m_tok.values("method"):
            for x in toks:
                if x.start >= m_tok.end and any(v in item_methods for v in x.values("method")):
                    between = text[m_tok.end - offset:x.start - offset]
                    if any(ch in lex.separators and ch != " " for ch in between):
                        seg.main_implied = True
    for pat, tier in lex.tiers:
        if pat.search(text) and tier not in seg.tiers:
            seg.tiers.append(tier)
    if explicit_modality:
        # An explicit modality word wins over a word that only implies one (胸片 says DX, but
        # "胸片" inside "CT胸片" is rare; the first explicit word is the modality).
        seg.modality, seg.modality_how = explicit_modality[0], "explicit"
    if seg.method_terms:
        seg.method_how = "explicit"
    seg.residue = _residue(text, toks, lex, offset)
    return seg


def _implied_modality(seg: Segment, lex: Lexicon) -> str | None:
    for m in seg.method_terms:
        if m in lex.implied["methods"]:
            return str(lex.implied["methods"][m])
    for p in seg.parts:
        if p in lex.implied["parts"]:
            return str(lex.implied["parts"][p])
    if seg.views:
        return str(lex.implied["views"])
    return None


def split_segments(cleaned: str, lex: Lexicon | None = None) -> list[Segment]:
    """Split a cleaned name into segments: only at a separator with a part on both sides."""
    lex = lex or lexicon()
    toks = tokens(cleaned, lex)
    covered: set[int] = set()
    for t in toks:
        covered.update(range(t.start, t.end))
    cuts = [i for i, ch in enumerate(cleaned) if ch in lex.separators and i not in covered]
    bounds = [-1, *cuts, len(cleaned)]
    pieces: list[tuple[int, int]] = [(bounds[i] + 1, bounds[i + 1]) for i in range(len(bounds) - 1)]

    def has_part(a: int, b: int) -> bool:
        return any((t.values("part") or t.values("parts")) and a <= t.start and t.end <= b for t in toks)

    groups: list[tuple[int, int]] = []
    for a, b in pieces:
        if not cleaned[a:b].strip(" ()"):
            continue
        if groups and not (has_part(*groups[-1]) and has_part(a, b)):
            groups[-1] = (groups[-1][0], b)
        else:
            groups.append((a, b))
    if not groups:
        groups = [(0, len(cleaned))]
    return [_segment(cleaned[a:b], [t for t in toks if a <= t.start and t.end <= b], lex, a) for a, b in groups]


def _nearest(segs: list[Segment], i: int, has: Any) -> Segment | None:
    """The nearest other segment satisfying ``has``; on a tie the following one (胸部+上腹部CT平扫)."""
    best: tuple[int, int, Segment] | None = None
    for j, s in enumerate(segs):
        if j != i and has(s):
            key = (abs(j - i), 0 if j > i else 1, s)
            if best is None or key[:2] < best[:2]:
                best = key
    return best[2] if best else None


def distribute(segs: list[Segment], lex: Lexicon | None = None) -> None:
    """Give segments written without modality/method/view/tier those of their nearest neighbour."""
    lex = lex or lexicon()
    for i, seg in enumerate(segs):
        if seg.modality is None:
            src = _nearest(segs, i, lambda s: s.modality_how == "explicit")
            if src is not None and seg.parts:
                seg.modality, seg.modality_how = src.modality, "inherited"
                seg.inherited.append("modality")
    for i, seg in enumerate(segs):
        # a lateral part written without a side takes the side written for the same part nearby
        for k, (p, side) in enumerate(zip(seg.parts, seg.sides, strict=True)):
            if side is None:
                src = _nearest(segs, i, lambda s, p=p: any(q == p and x for q, x in zip(s.parts, s.sides, strict=True)))
                if src is not None:
                    seg.sides[k] = next(x for q, x in zip(src.parts, src.sides, strict=True) if q == p and x)
        if not seg.method_terms and seg.parts:
            src = _nearest(segs, i, lambda s: s.method_how == "explicit")
            if src is not None and (seg.modality is None or src.modality == seg.modality):
                seg.method_terms = list(src.method_terms)
                seg.method_how = "inherited"
                seg.inherited.append("method")
        if not seg.views and seg.parts and seg.modality_how != "explicit":
            src = _nearest(segs, i, lambda s: bool(s.views))
            if src is not None and (seg.modality in (None, "DX")) and src.modality == (seg.modality or src.modality):
                seg.views = list(src.views)
                seg.inherited.append("view")
        if not seg.tiers:
            src = _nearest(segs, i, lambda s: bool(s.tiers))
            if src is not None and src.modality == seg.modality:
                seg.tiers = list(src.tiers)
        if seg.postprocessing == [] and len(segs) > 1:
            src = _nearest(segs, i, lambda s: bool(s.postprocessing))
            if src is not None and src.modality == seg.modality and "method" in seg.inherited:
                seg.postprocessing = list(src.postprocessing)
    for seg in segs:
        if seg.modality is None:
            implied = _implied_modality(seg, lex)
            if implied:
                seg.modality, seg.modality_how = implied, "implied"
        if seg.modality is None and seg.parts:
            dm = lex.default_modality
            if any(rule_method(seg.method_terms, lex) == m for m in dm["when_methods"]):
                seg.modality, seg.modality_how = str(dm["modality"]), "default"


def rule_method(terms: list[str], lex: Lexicon | None = None) -> str | None:
    """The main item method from the method terms (平扫 + 增强 -> 平扫+增强), by ``method_rules``."""
    lex = lex or lexicon()
    present = set(terms)
    for rule in lex.method_rules:
        if set(rule["all"]) <= present:
            return str(rule["method"])
    return None


def parse(name: str, lex: Lexicon | None = None) -> ParsedName:
    """Parse one hospital item name into segments with slots (pure, no vocabulary needed)."""
    lex = lex or lexicon()
    cleaned, noise = clean(name, lex)
    segs = split_segments(cleaned, lex) if cleaned else []
    distribute(segs, lex)
    evidence = []
    if noise:
        evidence.append("noise removed / 去除噪声: " + ", ".join(noise))
    if len(segs) > 1:
        evidence.append(f"combined order split into {len(segs)} / 复合项目拆分为{len(segs)}段: "
                        + " | ".join(s.text for s in segs))
    for s in segs:
        if s.inherited:
            evidence.append(f"'{s.text}' borrowed {', '.join(s.inherited)} from its neighbour / 共享{'、'.join(s.inherited)}")
    return ParsedName(input=name, cleaned=cleaned, noise=noise, segments=segs, evidence=evidence)
