"""Chinese radiology reports in the layouts hospitals really use, with exact split truth.

A report is built as a list of *segments* (text, parts, kind); the findings and impression
fields are the concatenation of their segments, so the split truth — one span per
segment with its character offsets and the parts it is about — rebuilds each field
exactly: nothing invented, nothing lost. Layouts (series-and-reports.md):

* ``single`` — one part.
* ``A`` part sub-headers (``头颅CT平扫：…胸部CT平扫：…``, ``[胸部]…``).
* ``B`` one anatomy-ordered block without headers, with carry sentences (``其内…``, ``余…``).
* ``C`` a numbered impression mixing parts (``1.`` ``1、`` ``（1）`` ``①`` ``一、``).
* ``D`` statements spanning parts (``胸腰椎退行性变``, ``余未见异常``): several labels.
* ``E`` several complete reports concatenated (title, 检查所见, 诊断意见 per part).
* ``F`` one item name covering several parts (the order is written ``CT增强(胸部+上腹)``).

Span kinds: ``section_header`` (检查所见：), ``part_header``, ``report_title``, ``statement``,
``carry``, ``comparison``, ``spanning``, ``separator`` (whitespace). Only ``separator`` and
``section_header`` spans have no parts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.clinical.items import SIDES

#: Anatomical order used to sort report parts (head to foot).
ANATOMY_ORDER = ("颅脑", "颈部软组织", "颈椎", "胸部", "胸椎", "上腹部", "下腹部", "腰椎", "盆腔", "骨盆", "膝关节")
LAYOUTS = ("single", "A", "B", "C", "D", "E", "F")
OPPOSITE = {"左": "右", "右": "左"}


@dataclass
class Segment:
    text: str
    parts: list[str]
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportPart:
    """One part the report is about (normally the imaged parts, in order)."""

    part: str
    modality: str
    title: str  # e.g. 头颅CT平扫, 左膝关节MR平扫
    side: str | None = None  # "L"/"R" for lateral items


@dataclass
class ReportOptions:
    layout: str = "single"
    sex: str = "M"
    exam_date: date = date(2026, 1, 1)
    findings_header: bool = True
    impression_header: bool = True
    abnormal_rate: float = 0.4
    #: Seeded laterality contradiction: "findings" (ordered side vs findings) or "impression"
    #: (findings vs impression); applied to the part named in ``laterality_part``.
    laterality_flip: str | None = None
    laterality_part: str | None = None
    #: Seeded sex contradiction in this part (an organ of the other sex).
    sex_contradiction_part: str | None = None


@dataclass
class Report:
    findings: str
    impression: str
    layout: str
    features: list[str]
    parts: list[str]
    findings_spans: list[dict[str, Any]]
    impression_spans: list[dict[str, Any]]
    #: Per part: abnormal finding templates used, comparisons, sides mentioned.
    facts: dict[str, Any]

    def truth(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "features": self.features,
            "parts": self.parts,
            "findings": self.findings_spans,
            "impression": self.impression_spans,
            "facts": self.facts,
        }


def spans_of(segments: list[Segment], field_name: str) -> tuple[str, list[dict[str, Any]]]:
    """Join segments into the field text and its span truth (offsets in characters)."""
    spans = []
    pos = 0
    for seg in segments:
        if not seg.text:
            continue
        spans.append({"start": pos, "end": pos + len(seg.text), "text": seg.text, "parts": list(seg.parts),
                      "kind": seg.kind, **seg.extra})
        pos += len(seg.text)
    return "".join(s.text for s in segments), spans


def part_terms(part: str) -> list[str]:
    return list(load("reports")["parts"][part]["terms"])


# -- one part's content -----------------------------------------------------------------
@dataclass
class _PartContent:
    part: str
    title: str
    findings: list[Segment]
    impressions: list[Segment]
    carry: list[Segment]
    facts: dict[str, Any]


def _fill(rng: random.Random, template: str, side: str, spec: dict[str, Any], choice: dict[str, int]) -> str:
    """Fill {side}, {size}, {level}/{seg}/... and side-dependent {lobe} placeholders.

    ``choice`` keeps the indices drawn, so the impression of a finding names the same
    lobe/level as its findings sentence (or the mirrored one when the side is flipped).
    """
    text = template.replace("{side}", side)
    for name, options in (spec.get("side_terms") or {}).items():
        opts = options[side]
        idx = choice.setdefault(name, rng.randrange(len(opts)))
        text = text.replace("{" + name + "}", opts[idx % len(opts)])
    for name, options in (spec.get("vars") or {}).items():
        idx = choice.setdefault(name, rng.randrange(len(options)))
        text = text.replace("{" + name + "}", str(options[idx]))
    if "{size}" in text:
        size = choice.setdefault("size", rng.randint(4, 28))
        text = text.replace("{size}", str(size))
    return text


def _part_content(rng: random.Random, rp: ReportPart, opts: ReportOptions, force_lateral: bool = False) -> _PartContent:
    data = load("reports")
    pdata = data["parts"][rp.part]
    modality = rp.modality if rp.modality in pdata["normal"] else next(iter(pdata["normal"]))
    ordered_side = SIDES[rp.side] if rp.side else None
    flip = opts.laterality_flip if opts.laterality_part == rp.part else None
    # The side written in the findings: the ordered side, or its opposite when the
    # contradiction "exam name vs findings" is seeded.
    f_side = ordered_side or rng.choice(("左", "右"))
    if flip == "findings" and ordered_side:
        f_side = OPPOSITE[ordered_side]
    facts: dict[str, Any] = {"part": rp.part, "abnormal": [], "comparison": None, "sides": {}}

    candidates = [
        a for a in pdata.get("abnormal", [])
        if modality in a["modalities"] and a.get("sex", opts.sex) == opts.sex
    ]
    if force_lateral:
        candidates = [a for a in candidates if a.get("lateral")]
    chosen: list[dict[str, Any]] = []
    if candidates and (force_lateral or rng.random() < opts.abnormal_rate):
        chosen = [rng.choice(candidates)]
        if len(candidates) > 1 and rng.random() < 0.25:
            second = rng.choice([c for c in candidates if c is not chosen[0]])
            chosen.append(second)

    findings: list[Segment] = []
    impressions: list[Segment] = []
    comparison_done = False
    for spec in chosen:
        choice: dict[str, int] = {}
        f_text = _fill(rng, spec["findings"], f_side, spec, choice)
        i_side = f_side
        if flip == "impression" and spec.get("lateral"):
            i_side = OPPOSITE[f_side]
        i_text = _fill(rng, spec["impression"], i_side, spec, choice)
        if spec.get("comparison") and not comparison_done and rng.random() < 0.35:
            comparison_done = True
            prior = opts.exam_date - timedelta(days=rng.randint(30, 720))
            prefix = rng.choice(data["comparison"]["prefix"]).format(date=prior.isoformat(), title=rp.title)
            change = rng.choice(data["comparison"]["change"])
            findings.append(Segment(prefix, [rp.part], "comparison", {"prior_date": prior.isoformat()}))
            f_text = f_text.rstrip("。") + "，" + change + "。"
            facts["comparison"] = {"prior_date": prior.isoformat(), "change": change}
        findings.append(Segment(f_text, [rp.part], "statement", {"abnormal": True}))
        impressions.append(Segment(i_text, [rp.part], "statement", {"abnormal": True}))
        facts["abnormal"].append(spec["impression"])
        if spec.get("lateral"):
            facts["sides"] = {"findings": f_side, "impression": i_side}

    normal = list(pdata["normal"][modality])
    sex_sentences = list((pdata.get("sex") or {}).get(opts.sex) or [])
    if chosen:
        # A normal sentence about the same structure as an abnormal finding would contradict
        # it: drop those sharing a specific term (not the part name) or a listed phrase.
        specific = pdata["terms"][1:]
        abnormal_text = "".join(s["findings"] for s in chosen)
        hit = [t for t in specific if t in abnormal_text]
        drops = [d for s in chosen for d in s.get("drop", [])]
        normal = [n for n in normal if not any(t in n for t in hit) and not any(d in n for d in drops)]
        sex_sentences = [n for n in sex_sentences if not any(t in n for t in hit) and not any(d in n for d in drops)]
    keep = sorted(rng.sample(range(len(normal)), k=rng.randint(min(2, len(normal)), len(normal))))
    normal_sentences = [normal[i] for i in keep]
    if sex_sentences and (modality == "CT" or rng.random() < 0.3):
        normal_sentences += sex_sentences
    if opts.sex_contradiction_part == rp.part:
        wrong = rng.choice(data["sex_contradiction"][rp.part][opts.sex])
        normal_sentences.insert(rng.randrange(len(normal_sentences) + 1), "\0" + wrong)
    for text in normal_sentences:
        if text.startswith("\0"):
            findings.append(Segment(text[1:], [rp.part], "statement", {"violation": "sex_contradiction"}))
        else:
            findings.append(Segment(text.replace("{side}", f_side), [rp.part], "statement"))
    if ordered_side or any(s.get("lateral") for s in chosen):
        facts["sides"].setdefault("findings", f_side)
    if not impressions:
        text = rng.choice(pdata["normal_impression"][modality]).replace("{side}", f_side)
        impressions.append(Segment(text, [rp.part], "statement", {"abnormal": False}))
    carry = [Segment(rng.choice(pdata["carry"]), [rp.part], "carry")] if pdata.get("carry") else []
    return _PartContent(rp.part, rp.title, findings, impressions, carry, facts)


# -- layouts ------------------------------------------------------------------------------
def _number(style: str, n: int) -> str:
    data = load("reports")
    return style.format(n=n, c=data["circled"][n - 1], cn=data["chinese_numerals"][n - 1])


def _header(rng: random.Random, which: str, modality: str) -> Segment:
    data = load("reports")["headers"]
    word = rng.choice(data[which]).replace("{modality}", data["modality"].get(modality, modality))
    return Segment(word + rng.choice(data["separators"]), [], "section_header", {"section": which})


def _numbered(rng: random.Random, items: list[Segment], sep: str) -> list[Segment]:
    style = rng.choice(load("reports")["numbering"])
    out: list[Segment] = []
    for n, seg in enumerate(items, 1):
        number = _number(style, n)
        out.append(Segment(number + seg.text, seg.parts, seg.kind, {**seg.extra, "number": number}))
        if n < len(items) and sep:
            out.append(Segment(sep, [], "separator"))
    return out


def _impression_items(rng: random.Random, items: list[Segment]) -> list[Segment]:
    if len(items) == 1:
        return items
    return _numbered(rng, items, rng.choice(["\n", "\n", " ", ""]))


def _spanning(rng: random.Random, section: str, parts: list[str], modality: str) -> list[Segment]:
    """Spanning statements that fit this report's parts (a part-specific one needs all its parts)."""
    out = []
    for row in load("reports")["spanning"]:
        if row["section"] != section or modality not in row.get("modalities", [modality]):
            continue
        if row["parts"] == "all":
            if len(parts) >= 1:
                out.append(Segment(row["text"], list(parts), "spanning"))
        elif all(p in parts for p in row["parts"]):
            out.append(Segment(row["text"], list(row["parts"]), "spanning"))
    return out


def write_report(rng: random.Random, parts: list[ReportPart], opts: ReportOptions) -> Report:
    """Build the findings and impression text of one exam, with their split truth."""
    parts = sorted(parts, key=lambda rp: ANATOMY_ORDER.index(rp.part) if rp.part in ANATOMY_ORDER else 99)
    modality = parts[0].modality
    layout = opts.layout if len(parts) > 1 else "single"
    contents = [
        _part_content(rng, rp, opts, force_lateral=(opts.laterality_flip == "impression" and opts.laterality_part == rp.part))
        for rp in parts
    ]
    names = [c.part for c in contents]
    features: list[str] = []
    f: list[Segment] = []
    imp: list[Segment] = []

    if layout == "E":
        # Several complete reports, one per part, each with its own title and sections.
        features.append("concatenated_reports")
        for k, c in enumerate(contents):
            extra = {"report": k}
            f.append(Segment(c.title, [c.part], "report_title", extra))
            f.append(Segment("\n", [], "separator"))
            h = _header(rng, "findings", modality)
            f.append(Segment(h.text, [], "section_header", {**h.extra, **extra}))
            f += [Segment(s.text, s.parts, s.kind, {**s.extra, **extra}) for s in c.findings]
            f.append(Segment("\n", [], "separator"))
            h = _header(rng, "impression", modality)
            f.append(Segment(h.text, [], "section_header", {**h.extra, **extra}))
            f += [Segment(s.text, s.parts, s.kind, {**s.extra, **extra}) for s in _impression_items(rng, c.impressions)]
            if k < len(contents) - 1:
                f.append(Segment("\n\n", [], "separator"))
        # The RIS copies the diagnoses of every report into the impression field.
        all_imp = [s for c in contents for s in c.impressions]
        imp = _impression_items(rng, all_imp)
        findings, f_spans = spans_of(f, "findings")
        impression, i_spans = spans_of(imp, "impression")
        return Report(findings, impression, layout, features, names, f_spans, i_spans,
                      {"parts": [c.facts for c in contents]})

    if opts.findings_header:
        f.append(_header(rng, "findings", modality))
    if opts.impression_header:
        imp.append(_header(rng, "impression", modality))

    use_headers = layout == "A" or (layout in ("C", "D") and rng.random() < 0.5)
    if use_headers:
        features.append("part_subheaders")
        bracket = rng.random() < 0.25
        for k, c in enumerate(contents):
            title = f"[{c.part}]" if bracket else c.title + rng.choice(["：", ":", "："])
            f.append(Segment(title, [c.part], "part_header"))
            f += c.findings
            if k < len(contents) - 1:
                f.append(Segment(rng.choice(["\n", "\n", " "]), [], "separator"))
    else:
        if len(contents) > 1:
            features.append("anatomy_block")
        for c in contents:
            f += c.findings
            if layout == "B" and c.carry and rng.random() < 0.6:
                f += c.carry
                features.append("carry") if "carry" not in features else None

    impressions = [s for c in contents for s in c.impressions]
    if layout == "D":
        features.append("spanning")
        f_span = _spanning(rng, "findings", names, modality)
        if f_span:
            f.append(rng.choice(f_span))
        i_span = _spanning(rng, "impression", names, modality)
        specific = [s for s in i_span if len(s.parts) < len(names) or len(names) == 1]
        if specific:
            # A spanning diagnosis replaces the per-part normal impressions of its parts.
            chosen = rng.choice(specific)
            impressions = [s for s in impressions if not (s.parts[0] in chosen.parts and not s.extra.get("abnormal"))]
            impressions.insert(0, chosen)
        generic = [s for s in i_span if len(s.parts) == len(names) and s not in specific]
        if generic and any(s.extra.get("abnormal") for s in impressions):
            impressions = [s for s in impressions if s.extra.get("abnormal") or s.kind == "spanning"]
            impressions.append(rng.choice(generic))
    if layout == "C":
        features.append("numbered_mixed_impression")
        rng.shuffle(impressions)
        imp += _numbered(rng, impressions, rng.choice(["\n", " ", ""]))
    else:
        imp += _impression_items(rng, impressions)
    if layout == "F":
        features.append("one_name_several_parts")

    findings, f_spans = spans_of(f, "findings")
    impression, i_spans = spans_of(imp, "impression")
    return Report(findings, impression, layout, features, names, f_spans, i_spans,
                  {"parts": [c.facts for c in contents]})


def pick_layout(rng: random.Random, weights: dict[str, float], n_parts: int, can_share_name: bool) -> str:
    """A layout for a combined exam (``single`` for one part); F needs items that can share one name."""
    if n_parts <= 1:
        return "single"
    options = {k: v for k, v in weights.items() if k != "F" or can_share_name}
    return rng.choices(list(options), weights=list(options.values()), k=1)[0]
