"""Report text analysis for rule expressions: sections, sentences, negation scope,
laterality attached to anatomy, body parts, sex-specific anatomy, critical values.

Everything works on spans of the original text (NFKC normalisation keeps lengths), so a
failure can quote exactly where the evidence is. The analysis of one text is cached: a
rule set asks many questions about the same findings.

Negation model (series-and-reports.md "Cues"): a negation cue (未见, 无, 除外 ...) opens a
scope that runs to the end of its clause; a term inside it is negated. Anatomy named before
the cue is a positive mention ("附件区未见异常" still describes the adnexa). 不除外 / 不排除
are uncertainty, not negation (longest cue wins).

Laterality model: a side word (左/右/双/两侧) attaches to the nearest anatomy term that
starts at or after it in the same clause (左肺上叶, 左侧胸腔), else the nearest one before
it (甲状腺左叶, 椎间盘突出（左后型）), else the last anatomy named earlier in the text
(carry). Direction words (向左, 左右) and heart chambers (左心室) are not sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from radqc.qc_rules.functions.lexicon import (
    anatomy,
    critical_matchers,
    cue_matchers,
    dicom_body_parts,
    item_matchers,
    lateral_parts,
    nfkc,
    sex_matcher,
    umbrella_keywords,
)


@dataclass(frozen=True)
class Mention:
    term: str
    parts: frozenset[str]
    start: int
    end: int
    negated: bool
    uncertain: bool


@dataclass(frozen=True)
class SideMention:
    side: str  # L / R / B
    start: int
    end: int
    parts: frozenset[str]
    negated: bool


@dataclass
class Analysis:
    text: str
    clauses: list[tuple[int, int]] = field(default_factory=list)
    sentences: list[tuple[int, int]] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    sides: list[SideMention] = field(default_factory=list)
    negation_scopes: list[tuple[int, int]] = field(default_factory=list)
    uncertain_scopes: list[tuple[int, int]] = field(default_factory=list)


def _text(x: Any) -> str:
    """Report text from a field: None → "", a list is joined with newlines."""
    if x is None:
        return ""
    if isinstance(x, (list, tuple)):
        return "\n".join(str(v) for v in x if v is not None)
    return str(x)


def _split(text: str, breaks: frozenset[str]) -> list[tuple[int, int]]:
    """Spans of pieces ending at (and including) a break character; blank pieces dropped."""
    out: list[tuple[int, int]] = []
    start = 0
    for i, ch in enumerate(text):
        if ch in breaks:
            if text[start:i + 1].strip() and text[start:i].strip():
                out.append((start, i + 1))
            start = i + 1
    if text[start:].strip():
        out.append((start, len(text)))
    return out


_POST_NEGATION = re.compile(r"(?<=[\u4e00-\u9fff])(未见显示|未见显影|未显示|未见|缺如)[，,。；;\s]*$", re.M)


def _in(spans: list[tuple[int, int]], pos: int) -> bool:
    return any(s <= pos < e for s, e in spans)


@lru_cache(maxsize=16384)
def analyse(raw: str) -> Analysis:
    """Clauses, sentences, anatomy mentions, negation/uncertainty scopes and sides of a text."""
    cues = cue_matchers()
    text = nfkc(raw)
    a = Analysis(text=raw)
    a.clauses = _split(text, cues["clause_breaks"])
    a.sentences = _split(text, cues["sentence_breaks"])
    exceptions = [(m.start(), m.end()) for m in cues["negation_exceptions"].finditer(text)]
    for cs, ce in a.clauses:
        clause = text[cs:ce]
        neg_start = unc_start = None
        for m in cues["negation"].finditer(clause):
            pos = cs + m.start()
            if _in(exceptions, pos):
                continue
            if m.group(0) in cues["negation_words"]:
                neg_start = pos if neg_start is None else neg_start
            else:
                unc_start = pos if unc_start is None else unc_start
        if neg_start is not None:
            a.negation_scopes.append((neg_start, ce))
        if unc_start is not None:
            a.uncertain_scopes.append((unc_start, ce))
    # Post-negation: a clause that ends "<term>未见(显示)" / "<term>缺如" negates the term itself.
    for cs, ce in a.clauses:
        m = _POST_NEGATION.search(text, cs, ce)
        if m:
            a.negation_scopes.append((cs, m.start()))
    regex, term_parts = anatomy()
    for m in regex.finditer(text):
        a.mentions.append(Mention(m.group(0), term_parts[m.group(0)], m.start(), m.end(),
                                  _in(a.negation_scopes, m.start()), _in(a.uncertain_scopes, m.start())))
    side_exc = [(m.start(), m.end()) for m in cues["side_exceptions"].finditer(text)]
    for m in cues["side"].finditer(text):
        if any(s <= m.start() < e for s, e in side_exc):
            continue
        a.sides.append(SideMention(cues["sides"][m.group(0)], m.start(), m.end(),
                                   _attach(a, m.start()), _in(a.negation_scopes, m.start())))
    return a


def _clause_of(a: Analysis, pos: int) -> tuple[int, int]:
    for s, e in a.clauses:
        if s <= pos < e:
            return s, e
    return pos, pos + 1


def _attach(a: Analysis, pos: int) -> frozenset[str]:
    """Parts of the anatomy term a side word at ``pos`` belongs to (see the module doc)."""
    cs, ce = _clause_of(a, pos)
    after = [m for m in a.mentions if pos <= m.start < ce or m.start <= pos < m.end]
    if after:
        return _narrow(a, pos, min(after, key=lambda m: abs(m.start - pos)).parts)
    before = [m for m in a.mentions if cs <= m.start < pos]
    if before:
        return _narrow(a, pos, max(before, key=lambda m: m.start).parts)
    earlier = [m for m in a.mentions if m.start < cs]
    return _narrow(a, pos, earlier[-1].parts) if earlier else frozenset()


def _narrow(a: Analysis, pos: int, parts: frozenset[str]) -> frozenset[str]:
    """A generic term (椎间盘: every spine segment) takes the specific part named in the same
    sentence (L5/S1 → 腰椎)."""
    if len(parts) < 2:
        return parts
    ss, se = next(((s, e) for s, e in a.sentences if s <= pos < e), (pos, pos + 1))
    specific: set[str] = set()
    for m in a.mentions:
        if ss <= m.start < se and m.parts < parts:
            specific |= m.parts
    return frozenset(parts & specific) or parts


# -- sections and sentences ---------------------------------------------------------------
def sections(text: Any) -> dict[str, Any]:
    """Report sections by header (findings: 检查所见, 影像所见, CT表现 ...; impression: 诊断意见,
    印象, 结论 ...; also exam, history, advice, signature). Each section is
    ``{"text": body text (several blocks joined by newlines), "spans": [[start, end], ...] of
    the bodies, "headers": [header words]}``; text before the first header is ``preamble``.
    {} for None/blank."""
    raw = _text(text)
    if not raw.strip():
        return {}
    cues = cue_matchers()
    norm = nfkc(raw)
    found = []
    for m in cues["header"].finditer(norm):
        word = m.group("h") or m.group("hb")
        found.append((m.start(), m.end(), cues["header_section"][word], word))
    out: dict[str, Any] = {}

    def add(name: str, start: int, end: int, header: str | None) -> None:
        body = raw[start:end]
        if not body.strip() and header is None:
            return
        sec = out.setdefault(name, {"text": "", "spans": [], "headers": []})
        sec["spans"].append([start, end])
        sec["text"] = (sec["text"] + "\n" + body.strip()) if sec["text"] else body.strip()
        if header:
            sec["headers"].append(header)

    first = found[0][0] if found else len(raw)
    add("preamble", 0, first, None)
    for i, (_, hend, name, word) in enumerate(found):
        end = found[i + 1][0] if i + 1 < len(found) else len(raw)
        add(name, hend, end, word)
    return out


def section_text(text: Any, name: str) -> str | None:
    """The body of section ``name`` (findings/impression/...), None when it has no header."""
    sec = sections(text).get(name)
    return None if sec is None else sec["text"]


def body(text: Any) -> str:
    """A field's text without its leading section header (诊断意见：...); "" for None."""
    raw = _text(text)
    m = cue_matchers()["header"].match(nfkc(raw))
    return (raw[m.end():] if m else raw).strip()


def sentences(text: Any) -> list[dict[str, Any]]:
    """Sentences (split at 。；！？ and line breaks) as ``{"text", "start", "end"}``; [] for None."""
    raw = _text(text)
    return [{"text": raw[s:e], "start": s, "end": e} for s, e in analyse(raw).sentences]


# -- anatomy ------------------------------------------------------------------------------
def body_parts(text: Any) -> list[str]:
    """(Registered as ``report_parts``: ``body_parts`` is the DICOM fact.) Billing parts whose anatomy the text describes (negated mentions count: "肝内未见异常"
    describes the liver), sorted; [] for None."""
    parts: set[str] = set()
    for m in analyse(_text(text)).mentions:
        parts |= m.parts
    return sorted(parts)


def anatomy_terms(text: Any) -> list[dict[str, Any]]:
    """Every anatomy term with its parts, span and negated/uncertain flags."""
    return [{"term": m.term, "parts": sorted(m.parts), "start": m.start, "end": m.end, "negated": m.negated,
             "uncertain": m.uncertain} for m in analyse(_text(text)).mentions]


def negated_spans(text: Any) -> list[list[int]]:
    """[start, end] of every negation scope (cue to clause end)."""
    return [[s, e] for s, e in analyse(_text(text)).negation_scopes]


def is_negated(text: Any, term: str) -> bool | None:
    """True when every occurrence of ``term`` lies in a negation scope, False when one is
    positive, None when the term does not occur."""
    raw = _text(text)
    a = analyse(raw)
    norm = nfkc(raw)
    hits = [m.start() for m in re.finditer(re.escape(nfkc(term)), norm)] if term else []
    if not hits:
        return None
    return all(_in(a.negation_scopes, h) for h in hits)


def sentence_parts(text: Any) -> list[dict[str, Any]]:
    """Per sentence the parts its anatomy names: ``{"text", "start", "end", "parts"}``."""
    raw = _text(text)
    a = analyse(raw)
    out = []
    for s, e in a.sentences:
        parts: set[str] = set()
        for m in a.mentions:
            if s <= m.start < e:
                parts |= m.parts
        out.append({"text": raw[s:e], "start": s, "end": e, "parts": sorted(parts)})
    return out


def parts_outside(text: Any, allowed: Any) -> list[str]:
    """Parts described by sentences none of whose parts is in ``allowed`` (the ordered or
    imaged parts): the report talks about anatomy that was not examined. Incidental sentences
    (扫描所及肝脏…, 建议…, 对比旧片…; lexicons/cues.yaml ``incidental``) are not held against
    it. [] when ``allowed`` is empty (nothing to compare with) or the text is None."""
    out: set[str] = set()
    for sent in sentences_outside(text, allowed):
        out |= set(sent["parts"])
    return sorted(out)


def sentences_outside(text: Any, allowed: Any) -> list[dict[str, Any]]:
    """The sentences (with spans) that :func:`parts_outside` objects to: the evidence."""
    allowed_set = set(allowed or [])
    if not allowed_set:
        return []
    incidental = cue_matchers()["incidental"]
    return [s for s in sentence_parts(text) if s["parts"] and not set(s["parts"]) & allowed_set
            and not incidental.search(nfkc(s["text"]))]


def parts_missing(text: Any, expected: Any) -> list[str]:
    """Expected parts (e.g. the ordered ones) that the text never describes."""
    described = set(body_parts(text))
    return sorted(p for p in set(expected or []) if p not in described)


# -- laterality ---------------------------------------------------------------------------
def lateralities(text: Any) -> list[str]:
    """Sides mentioned positively ("L", "R", "B"), sorted; negated sides ("未见左侧…") and
    direction words are ignored. [] for None."""
    return sorted({s.side for s in analyse(_text(text)).sides if not s.negated})


def part_sides(text: Any) -> dict[str, list[str]]:
    """Part → sides attached to its anatomy (positive mentions only)."""
    out: dict[str, set[str]] = {}
    for s in analyse(_text(text)).sides:
        if s.negated:
            continue
        for part in s.parts:
            out.setdefault(part, set()).add(s.side)
    return {k: sorted(v) for k, v in out.items()}


def _lr(sides: Any) -> set[str]:
    return {s for s in (sides or []) if s in ("L", "R")}


def side_conflicts(reference: Any, other: Any) -> list[dict[str, Any]]:
    """Parts where ``other`` names a left/right side that ``reference`` does not, although
    ``reference`` names a side for that part (findings 左肺… vs impression 右肺…). "双" never
    conflicts. [] when either is None."""
    ref, oth = part_sides(reference), part_sides(other)
    out = []
    for part, sides in sorted(oth.items()):
        ref_lr, oth_lr = _lr(ref.get(part)), _lr(sides)
        if ref_lr and oth_lr - ref_lr:
            out.append({"part": part, "reference": sorted(ref_lr), "other": sorted(oth_lr)})
    return out


def _item_texts(items: Any) -> list[str]:
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    return [str(i) for i in items if i is not None]


_ITEM_SPLIT = re.compile(r"[+,，、;；_/\n]|\s+")


@lru_cache(maxsize=8192)
def _item_analysis(joined: str) -> tuple[frozenset[str], tuple[tuple[str, frozenset[str]], ...], frozenset[str]]:
    """(parts, (side, parts) pairs, modalities) named by item strings (joined by \\x00)."""
    part_re, kw_parts, mod_re, kw_mod = item_matchers()
    umbrella = umbrella_keywords()
    cues = cue_matchers()
    parts: set[str] = set()
    sided: list[tuple[str, frozenset[str]]] = []
    mods: set[str] = set()
    for item in joined.split("\x00"):
        norm = nfkc(item)
        for m in mod_re.finditer(norm):
            mods.add(kw_mod[m.group(0).lower()])
        last: frozenset[str] = frozenset()
        for seg in _ITEM_SPLIT.split(norm):
            if not seg:
                continue
            seg_parts: set[str] = set()
            broad: set[str] = set()
            for m in part_re.finditer(seg):
                word = m.group(0).lower()
                (broad if word in umbrella else seg_parts).update(kw_parts[word])
            seg_parts = seg_parts or broad
            parts |= seg_parts
            if seg_parts:
                last = frozenset(seg_parts)
            exc = [(m.start(), m.end()) for m in cues["side_exceptions"].finditer(seg)]
            for m in cues["side"].finditer(seg):
                if not _in(exc, m.start()):
                    sided.append((cues["sides"][m.group(0)], frozenset(seg_parts) or last))
    return frozenset(parts), tuple(sided), frozenset(mods)


def item_body_parts(exam_items: Any) -> list[str]:
    """Billing parts named by the ordered item strings (胸部+上腹部CT平扫 → 胸部, 上腹部;
    Tri Phase Liver → 上腹部), sorted; [] for None or unknown names."""
    texts = _item_texts(exam_items)
    return sorted(_item_analysis("\x00".join(texts))[0]) if texts else []


def item_sides(exam_items: Any) -> dict[str, list[str]]:
    """Part → sides the order names for it (左膝关节MR平扫 → {膝关节: [L]})."""
    texts = _item_texts(exam_items)
    out: dict[str, set[str]] = {}
    if texts:
        for side, parts in _item_analysis("\x00".join(texts))[1]:
            for p in parts:
                out.setdefault(p, set()).add(side)
    return {k: sorted(v) for k, v in out.items()}


def item_lateralities(exam_items: Any) -> list[str]:
    """Sides named anywhere in the ordered items (L/R/B)."""
    return sorted({s for sides in item_sides(exam_items).values() for s in sides})


def item_modalities(exam_items: Any) -> list[str]:
    """Modality groups the item names say (CT, MR, DX, MG, US, RF); [] when none is named."""
    texts = _item_texts(exam_items)
    return sorted(_item_analysis("\x00".join(texts))[2]) if texts else []


def lateral_item_parts(exam_items: Any) -> list[str]:
    """Ordered parts that are one-sided (joints, limbs) — the order should name a side."""
    return sorted(p for p in item_body_parts(exam_items) if p in lateral_parts())


def item_side_conflicts(exam_items: Any, text: Any) -> list[dict[str, Any]]:
    """Parts for which the order names left or right (not both) and the text names the other
    side for that part's anatomy (order 左膝关节 vs findings 右膝关节...)."""
    ordered = item_sides(exam_items)
    reported = part_sides(text)
    out = []
    for part, sides in sorted(ordered.items()):
        o = _lr(sides)
        if "B" in sides or not o:
            continue
        extra = _lr(reported.get(part)) - o
        if extra:
            out.append({"part": part, "ordered": sorted(o), "reported": sorted(_lr(reported.get(part)))})
    return out


def dicom_parts(body_parts_values: Any) -> list[str]:
    """Billing parts of DICOM BodyPartExamined values (CHEST → 胸部, 心脏); unknown values ignored."""
    table = dicom_body_parts()
    out: set[str] = set()
    for v in _item_texts(body_parts_values):
        key = re.sub(r"[\s_\-]", "", v.upper())
        out |= table.get(key, frozenset())
    return sorted(out)


def overlaps(a: Any, b: Any) -> bool:
    """True when two lists share an element (or either is empty: nothing to compare)."""
    sa, sb = set(a or []), set(b or [])
    return not sa or not sb or bool(sa & sb)


# -- sex ----------------------------------------------------------------------------------
def _sex_hits(text: Any) -> list[tuple[str, str, int, int]]:
    raw = _text(text)
    a = analyse(raw)
    regex, term_sex = sex_matcher()
    norm = nfkc(raw)
    return [(m.group(0), term_sex[m.group(0)], m.start(), m.end()) for m in regex.finditer(norm)
            if not _in(a.negation_scopes, m.start())]


def sexes_mentioned(text: Any) -> list[str]:
    """Sexes implied by positively mentioned sex-specific anatomy ("M", "F"), sorted."""
    return sorted({s for _, s, _, _ in _sex_hits(text)})


def sex_terms(text: Any) -> str | None:
    """"M" (前列腺, 精囊...) or "F" (子宫, 卵巢, 附件...) implied by the text; None when none
    or both are mentioned (negated mentions ignored)."""
    found = sexes_mentioned(text)
    return found[0] if len(found) == 1 else None


def sex_conflict_terms(text: Any, sex: Any) -> list[dict[str, Any]]:
    """Positively mentioned anatomy of the other sex than ``sex`` (M/F or 男/女 ...), with
    spans; [] when the sex is unknown."""
    from radqc.qc_rules.functions.basic import normalise_sex

    s = normalise_sex(sex)
    if s not in ("M", "F"):
        return []
    return [{"term": t, "sex": ts, "start": a, "end": b} for t, ts, a, b in _sex_hits(text) if ts != s]


# -- critical values ----------------------------------------------------------------------
def critical_values(text: Any) -> list[str]:
    """Critical findings (危急值: 主动脉夹层, 颅内出血, 肺栓塞, 大量气胸, 膈下游离气体 ...)
    mentioned positively (suspected counts; "未见脑出血" does not), sorted; [] for None."""
    raw = _text(text)
    if not raw:
        return []
    a = analyse(raw)
    norm = re.sub(r"\s", " ", nfkc(raw))
    found = set()
    for name, regex in critical_matchers():
        for m in regex.finditer(norm):
            if not _in(a.negation_scopes, m.start()):
                found.add(name)
                break
    return sorted(found)


# -- standardisation ----------------------------------------------------------------------
_NUMBER_MARKERS = [
    ("arabic_dot", re.compile(r"(?:^|(?<=[\s。；;:：]))(\d{1,2})[.．](?!\d)")),
    ("arabic_comma", re.compile(r"(?:^|(?<=[\s。；;:：]))(\d{1,2})、")),
    ("paren", re.compile(r"[（(](\d{1,2})[)）]")),
    ("circled", re.compile(r"([①②③④⑤⑥⑦⑧⑨⑩])")),
    ("chinese", re.compile(r"(?:^|(?<=[\s。；;:：]))([一二三四五六七八九十])、")),
]
_CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩"
_CN = "一二三四五六七八九十"


def numbering(text: Any) -> list[dict[str, Any]]:
    """Item numbers found at item starts: ``{"style", "n", "start"}`` in text order."""
    raw = _text(text)
    out = []
    for style, regex in _NUMBER_MARKERS:
        for m in regex.finditer(raw):
            g = m.group(1)
            n = int(g) if g.isascii() and g.isdigit() else (_CIRCLED.index(g) + 1 if g in _CIRCLED else _CN.index(g) + 1)
            out.append({"style": style, "n": n, "start": m.start(1)})
    return sorted(out, key=lambda d: d["start"])


def numbering_consistent(text: Any) -> bool:
    """True when the items are unnumbered, or numbered 1, 2, 3 ... in one style (a report
    mixing ``1.`` and ``（2）`` or skipping a number is not standard). True for None."""
    nums = numbering(text)
    if not nums:
        return True
    if len({d["style"] for d in nums}) > 1:
        return False
    return [d["n"] for d in nums] == list(range(1, len(nums) + 1))


_MEASURE = re.compile(
    r"(?:大小约|大小|直径约|直径|长径约|长径|短径约|短径|厚约|宽约|深约|范围约|CT值约|CT值)\s*(\d+(?:\.\d+)?)"
    r"(?!\s*(?:\.\d|\d|mm|cm|毫米|厘米|m|×|x|X|\*|%|HU|Hu|hu|ml|mL|个|枚|次|度|级|岁|天|月|年|-|~|～|至))")


def missing_units(text: Any) -> list[dict[str, Any]]:
    """Measurements written without a unit (大小约12, CT值约35): ``{"text", "start", "end"}``."""
    raw = _text(text)
    norm = nfkc(raw)
    return [{"text": raw[m.start():m.end()], "start": m.start(), "end": m.end()} for m in _MEASURE.finditer(norm)]


def report_modalities(text: Any) -> list[str]:
    """Modalities the report text says it is (CT平扫, MR表现, 正位片 ...), skipping sentences
    that recommend or compare with another exam (建议MR检查, 对比旧片)."""
    raw = _text(text)
    cues = cue_matchers()
    norm = nfkc(raw)
    found: set[str] = set()
    for s, e in analyse(raw).sentences:
        sent = norm[s:e]
        if cues["modality_skip"].search(sent):
            continue
        for mod, regex in cues["modality"].items():
            if regex.search(sent):
                found.add(mod)
    return sorted(found)


def comparison_without_prior(text: Any) -> bool:
    """True when the text compares with an earlier exam (较前增大, 同前) but never says which
    one (对比2025-07-23胸部CT, 与旧片比较, 复查). False for None."""
    raw = nfkc(_text(text))
    if not raw:
        return False
    cues = cue_matchers()
    if not re.search(r"较前|同前|与前片|新发", raw):
        return False
    return cues["comparison_reference"].search(raw) is None


_PLACEHOLDER = re.compile(r"X{3,}|x{3,}|\*{3,}|＊{3,}|_{3,}|（请填写）|\(请填写\)|【[^】]{0,6}】|\?\?\?|？？？")


def placeholders(text: Any) -> list[str]:
    """Template leftovers (XXX, ***, ___, 【…】, （请填写）) in a report text."""
    return [m.group(0) for m in _PLACEHOLDER.finditer(_text(text))]


def standard_item(modality: Any, exam_items: Any) -> str | None:
    """The scoring-standard code (qc_rules/standards) for an exam from its modality and item
    names (lexicons/standard_items.yaml: parts, keywords; first match wins), e.g. CT +
    "LDCT胸部（云胶片）" → CT-CHEST-LOWDOSE; None when no entry fits. For engines that match
    standards by alias first and need a fallback for the hospitals' spellings."""
    from radqc.qc_rules.functions.basic import modality_group
    from radqc.qc_rules.functions.lexicon import load

    group = modality_group(modality)
    texts = _item_texts(exam_items)
    if group is None or not texts:
        return None
    parts = set(item_body_parts(texts))
    joined = nfkc(" ".join(texts)).lower()
    for entry in load("standard_items")["standards"]:
        if entry["modality"] != group or not set(entry["parts"]) <= parts:
            continue
        if entry.get("any") and not any(str(w).lower() in joined for w in entry["any"]):
            continue
        if entry.get("none") and any(str(w).lower() in joined for w in entry["none"]):
            continue
        return str(entry["code"])
    return None
