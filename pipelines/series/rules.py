"""Header rules: deterministic, explainable votes on each label field from a SeriesHeader.

The rules are data (``rules.yaml`` beside this module): each names its conditions, the
field values it votes for, a weight and whether its evidence is a hard header fact
(``header_rule``) or a description word (``description``). Votes are additive log-odds so
the fusion in :mod:`radqc.pipelines.series.classify` can combine them with the learned
models, and scale description votes down when an image model contradicts them. The rule
file's version and hash are part of the classifier's version, so a rule change re-runs
the pipeline stage.

Rules are compiled once into small predicate closures; evaluating them is plain Python
comparisons and a few cached regexes per series, so the header path stays far above the
issue's 10,000 series/s.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .features import SeriesHeader

RULES_FILE = Path(__file__).with_name("rules.yaml")

#: numeric conditions -> how to read them from a header
NUMERIC: dict[str, Callable[[SeriesHeader], float | None]] = {
    "tr": lambda h: h.tr,
    "te": lambda h: h.te,
    "ti": lambda h: h.ti,
    "etl": lambda h: h.echo_train_length,
    "flip_angle": lambda h: h.flip_angle,
    "thickness": lambda h: h.slice_thickness,
    "b_max": lambda h: max(h.b_values) if h.b_values else None,
    "n_instances": lambda h: float(h.n_instances),
    "repeats": lambda h: h.repeats,
    "recon_diameter": lambda h: h.recon_diameter,
    "window_center": lambda h: h.window_center,
    "window_width": lambda h: h.window_width,
    "temporal_positions": lambda h: float(h.temporal_positions) if h.temporal_positions is not None else None,
    "n_frames": lambda h: float(h.n_frames),
    "rows": lambda h: float(h.rows) if h.rows is not None else None,
}

#: ``present``/``absent`` names -> header value
PRESENCE: dict[str, Callable[[SeriesHeader], Any]] = {
    "ti": lambda h: h.ti,
    "contrast_agent": lambda h: h.contrast_agent,
    "derivation": lambda h: h.derivation,
    "plane": lambda h: h.plane,
    "view_position": lambda h: h.view_position,
    "b_values": lambda h: h.b_values,
    "kernel": lambda h: h.kernel,
    "orientation": lambda h: h.orientation,
    "temporal_positions": lambda h: h.temporal_positions,
}

TEXT_FIELDS: dict[str, Callable[[SeriesHeader], str | None]] = {
    "description": lambda h: h.description,
    "protocol": lambda h: h.protocol,
    "study_description": lambda h: h.study_description,
}

VIEW_POSITION = {"PA": "PA", "AP": "AP", "LL": "LAT", "RL": "LAT", "LAT": "LAT", "LATERAL": "LAT", "RLD": "LAT",
                 "LLD": "LAT", "OBL": "OBL", "LAO": "OBL", "RAO": "OBL", "LPO": "OBL", "RPO": "OBL", "CC": "CC",
                 "MLO": "MLO"}

#: vote values read from the header ("@name")
DYNAMIC: dict[str, Callable[[SeriesHeader], Any]] = {
    "@plane": lambda h: h.plane,
    "@view": lambda h: VIEW_POSITION.get((h.view_position or "").strip().upper()),
}


_SOP_CLASS: Callable[[SeriesHeader], Any] = lambda h: h.sop_class_uid or ""  # noqa: E731
_PLANE: Callable[[SeriesHeader], Any] = lambda h: h.plane  # noqa: E731
_ANGIO: Callable[[SeriesHeader], Any] = lambda h: (h.angio_flag or "").upper() or None  # noqa: E731


def _member(getter: Callable[[SeriesHeader], Any], allowed: frozenset[Any]) -> Callable[[SeriesHeader], bool]:
    def pred(h: SeriesHeader) -> bool:
        return getter(h) in allowed
    return pred


def _presence(getters: list[Callable[[SeriesHeader], Any]], present: bool) -> Callable[[SeriesHeader], bool]:
    def pred(h: SeriesHeader) -> bool:
        for g in getters:
            v = g(h)
            if (v is None or v == "" or v == []) == present:
                return False
        return True
    return pred


def _search(pat: re.Pattern[str], attr: str) -> Callable[[SeriesHeader], bool]:
    def pred(h: SeriesHeader) -> bool:
        return bool(pat.search(getattr(h, attr) or ""))
    return pred


@dataclass(slots=True)
class Vote:
    """One rule's vote for one field: values (several = "one of these"), weight, evidence text.

    The evidence text is formatted only when read (most votes never reach the evidence).
    """

    rule: str
    source: str
    field: str
    values: tuple[Any, ...]
    weight: float
    template: str = ""
    text: str = ""
    header: SeriesHeader | None = None

    @property
    def detail(self) -> str:
        if self.header is None:
            return self.template or self.text
        return _fill(self.template, self.header, self.text)


@dataclass
class RuleResult:
    """All votes for one series, and the summed log-odds per field and source."""

    votes: list[Vote] = field(default_factory=list)

    def scores(self, source: str | None = None) -> dict[str, dict[Any, float]]:
        out: dict[str, dict[Any, float]] = {}
        for v in self.votes:
            if source is not None and v.source != source:
                continue
            f = out.setdefault(v.field, {})
            for value in v.values:
                f[value] = f.get(value, 0.0) + v.weight
        return out


@dataclass(frozen=True)
class Rule:
    id: str
    source: str
    weight: float
    vote: dict[str, Any]
    detail: str
    check: Callable[[SeriesHeader], bool]
    texts: tuple[tuple[str, re.Pattern[str]], ...]  # (text field, pattern): one vote per matching text
    text_not: re.Pattern[str] | None
    modalities: frozenset[str] | None = None  # None: any modality (rules are indexed by it)
    votes: tuple[tuple[str, Any], ...] = ()
    #: the same conditions as ``check``, as (kind, key, argument) specs for batch evaluation
    specs: tuple[tuple[str, str, Any], ...] = ()


class RuleSet:
    """The compiled rules plus the field vocabularies and applicability tables of rules.yaml."""

    def __init__(self, raw: Mapping[str, Any], digest: str = "") -> None:
        self.version = str(raw.get("version", "0"))
        self.digest = digest
        # strongest first (stable): votes come out in this order, so evidence lists the strongest reasons first
        self.rules = sorted((self._compile(r) for r in raw.get("rules") or []), key=lambda r: -r.weight)
        self._by_modality: dict[str, tuple[Rule, ...]] = {}
        self._text_cache: dict[tuple[str | None, str, str], frozenset[str]] = {}
        ids = [r.id for r in self.rules]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate rule ids in rules.yaml: {sorted(dupes)}")
        self.applicable: dict[str, dict[str, tuple[str, ...]]] = {
            fam: {role: tuple(fields) for role, fields in roles.items()} for fam, roles in (raw.get("applicable") or {}).items()}
        self.derived_overrides = {k: tuple(v) for k, v in (raw.get("derived_overrides") or {}).items()}
        self.confidence_fields = {k: tuple(v) for k, v in (raw.get("confidence_fields") or {}).items()}
        self.values: dict[str, tuple[Any, ...]] = {k: tuple(v) for k, v in (raw.get("values") or {}).items()}

    # -------------------------------------------------------------------- compiling
    @staticmethod
    def _compile(r: Mapping[str, Any]) -> Rule:
        when = dict(r.get("when") or {})
        preds: list[Callable[[SeriesHeader], bool]] = []
        rid = str(r["id"])

        def tokens_pred(getter: Callable[[SeriesHeader], list[str]], wanted: Sequence[str], mode: str) -> Callable[[SeriesHeader], bool]:
            want = frozenset(str(w).upper() for w in wanted)
            if mode == "any":
                return lambda h: not want.isdisjoint(getter(h))
            if mode == "all":
                return lambda h: want.issubset(getter(h))
            return lambda h: want.isdisjoint(getter(h))

        token_fields: dict[str, Callable[[SeriesHeader], list[str]]] = {
            "image_type": lambda h: h.image_type, "scanning_sequence": lambda h: h.scanning_sequence,
            "sequence_variant": lambda h: h.sequence_variant, "scan_options": lambda h: h.scan_options}
        texts: list[tuple[str, re.Pattern[str]]] = []
        text_not = None
        specs: list[tuple[str, str, Any]] = []
        for key, cond in when.items():
            if key == "modality":
                continue  # indexed: see RuleSet.rules_for
            elif key == "sop_class":
                classes = frozenset(str(c) for c in cond)
                preds.append(_member(_SOP_CLASS, classes))
                specs.append(("member", "sop_class_uid", classes))
            elif key.rsplit("_", 1)[0] in token_fields and key.rsplit("_", 1)[1] in ("any", "all", "none"):
                name, mode = key.rsplit("_", 1)
                preds.append(tokens_pred(token_fields[name], cond, mode))
                specs.append(("tokens", name, (mode, frozenset(str(w).upper() for w in cond))))
            elif key in NUMERIC:
                lo, hi = (cond + [None, None])[:2] if isinstance(cond, list) else (cond, cond)
                getter = NUMERIC[key]
                specs.append(("range", key, (lo, hi)))

                def num(h: SeriesHeader, getter: Callable[[SeriesHeader], float | None] = getter,
                        lo: float | None = lo, hi: float | None = hi, key: str = key) -> bool:
                    v = getter(h)
                    if v is None or (isinstance(v, float) and math.isnan(v)):
                        return _missing_holds(key, lo, hi)
                    return (lo is None or v >= lo) and (hi is None or v <= hi)

                preds.append(num)
            elif key == "present":
                getters = [PRESENCE[n] for n in cond]
                preds.append(_presence(getters, True))
                specs += [("present", n, True) for n in cond]
            elif key == "absent":
                getters = [PRESENCE[n] for n in cond]
                preds.append(_presence(getters, False))
                specs += [("present", n, False) for n in cond]
            elif key == "plane":
                planes = frozenset(cond)
                preds.append(_member(_PLANE, planes))
                specs.append(("member", "@plane", planes))
            elif key == "angio_flag":
                flags = frozenset(None if c is None else str(c).upper() for c in cond)
                preds.append(_member(_ANGIO, flags))
                specs.append(("member", "@angio", flags))
            elif key in ("sequence_name_re", "kernel_re", "derivation_re", "body_part_re"):
                pat = re.compile(str(cond), re.IGNORECASE)
                attr = {"sequence_name_re": "sequence_name", "kernel_re": "kernel", "derivation_re": "derivation",
                        "body_part_re": "body_part"}[key]
                preds.append(_search(pat, attr))
                specs.append(("search", attr, pat))
            elif key == "text_re":
                pat = re.compile(str(cond), re.IGNORECASE)
                for name in when.get("text_in") or ("description", "protocol"):
                    if name not in TEXT_FIELDS:
                        raise ValueError(f"rule {rid}: unknown text field {name!r}")
                    texts.append((str(name), pat))
            elif key == "text_not_re":
                text_not = re.compile(str(cond), re.IGNORECASE)
            elif key.startswith("ctx_"):
                name = key[4:]
                lo, hi = (cond + [None, None])[:2] if isinstance(cond, list) else (cond, cond)

                def ctxp(h: SeriesHeader, name: str = name, lo: float | None = lo, hi: float | None = hi) -> bool:
                    v = h.exam_context.get(name)
                    if v is None:
                        return False
                    return (lo is None or v >= lo) and (hi is None or v <= hi)

                preds.append(ctxp)
                specs.append(("ctx", name, (lo, hi)))
            elif key == "text_in":
                continue
            else:
                raise ValueError(f"rule {rid}: unknown condition {key!r}")

        def check(h: SeriesHeader, preds: list[Callable[[SeriesHeader], bool]] = preds) -> bool:
            for p in preds:
                if not p(h):
                    return False
            return True

        source = str(r.get("source", "header_rule"))
        if source not in ("header_rule", "description"):
            raise ValueError(f"rule {rid}: source must be header_rule or description")
        mods = frozenset(str(m).upper() for m in when["modality"]) if "modality" in when else None
        vote = dict(r.get("vote") or {})
        votes = tuple((f, tuple(v) if isinstance(v, list) else v) for f, v in vote.items())
        return Rule(id=rid, source=source, weight=float(r.get("weight", 1.0)), vote=vote,
                    detail=str(r.get("detail", "")), check=check, texts=tuple(texts), text_not=text_not,
                    modalities=mods, votes=votes, specs=tuple(specs))

    def _text_hits(self, modality: str | None, name: str, text: str) -> frozenset[str]:
        """Ids of the text rules whose pattern matches ``text`` in field ``name`` (cached).

        Descriptions repeat across series and exams (a site has a few hundred protocol
        names), so each distinct text is searched by the rule patterns once.
        """
        key = (modality, name, text)
        hit = self._text_cache.get(key)
        if hit is None:
            ids = []
            for rule in self.rules_for(modality):
                for fname, pat in rule.texts:
                    if fname == name and pat.search(text) and not (rule.text_not and rule.text_not.search(text)):
                        ids.append(rule.id)
                        break
            hit = frozenset(ids)
            if len(self._text_cache) > 200_000:
                self._text_cache.clear()
            self._text_cache[key] = hit
        return hit

    def _matched_texts(self, rule: Rule, h: SeriesHeader) -> list[str]:
        """Evidence texts of the text fields ``rule`` matched ([""] for a rule without text
        conditions; [] when its text conditions match nothing)."""
        if not rule.texts:
            return [""]
        matched: list[str] = []
        for name, _ in rule.texts:
            text = TEXT_FIELDS[name](h)
            if text and rule.id in self._text_hits(h.modality, name, text):
                matched.append(f"{_TEXT_LABEL[name]} '{text}'")
        return matched

    def rules_for(self, modality: str | None) -> tuple[Rule, ...]:
        """The rules that can fire for a modality (cached): most rules name one."""
        key = (modality or "").upper()
        hit = self._by_modality.get(key)
        if hit is None:
            hit = tuple(r for r in self.rules if r.modalities is None or key in r.modalities)
            self._by_modality[key] = hit
        return hit

    def description_scores(self, h: SeriesHeader) -> dict[str, dict[Any, float]]:
        """Votes of the description-word rules on SeriesDescription alone (ProtocolName left out).

        The fused description score mixes SeriesDescription and ProtocolName; when they disagree
        (a wrong description beside a right protocol) the "description overruled" check must
        look at what SeriesDescription by itself says.
        """
        text = h.description
        out: dict[str, dict[Any, float]] = {}
        if not text:
            return out
        hits = self._text_hits(h.modality, "description", text)
        if not hits:
            return out
        for rule in self.rules_for(h.modality):
            if rule.source != "description" or rule.id not in hits:
                continue
            try:
                if not rule.check(h):
                    continue
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
            for fname, value in rule.votes:
                if isinstance(value, str) and value[:1] == "@":
                    continue
                for v in value if isinstance(value, tuple) else (value,):
                    f = out.setdefault(fname, {})
                    f[v] = f.get(v, 0.0) + rule.weight
        return out

    # -------------------------------------------------------------------- applying
    def apply(self, h: SeriesHeader) -> RuleResult:
        """Every vote the rules give this header (never raises on odd headers)."""
        out = RuleResult()
        append = out.votes.append
        for rule in self.rules_for(h.modality):
            try:
                if not rule.check(h):
                    continue
                matched = self._matched_texts(rule, h)
                if not matched:
                    continue
                for vote in _rule_votes(rule, h, matched):
                    append(vote)
            except (TypeError, ValueError, KeyError, AttributeError):
                continue  # a malformed header value never stops classification
        return out

    def apply_batch(self, headers: Sequence[SeriesHeader]) -> list[RuleResult]:
        return self.apply_batch_scored(headers)[0]

    def apply_batch_scored(self, headers: Sequence[SeriesHeader], columns: Mapping[tuple[str, Any], int] | None = None,
                           n_columns: int = 0) -> tuple[list[RuleResult], np.ndarray, np.ndarray]:
        """The votes of every header, with the conditions evaluated column-wise over the batch.

        Same result as ``[self.apply(h) for h in headers]`` (a test checks it on generated
        exams); each condition is one comprehension or numpy comparison over the batch instead
        of a Python call per header and rule, which is what keeps classification above
        10,000 series/s.
        """
        n = len(headers)
        out = [RuleResult() for _ in range(n)]
        hard = np.zeros((n, n_columns))
        desc = np.zeros((n, n_columns))
        if n == 0:
            return out, hard, desc
        cols = columns or {}
        acc: dict[str, tuple[list[int], list[int], list[float]]] = {"header_rule": ([], [], []), "description": ([], [], [])}
        batch = _Batch(headers)
        mods = [(h.modality or "").upper() for h in headers]
        by_mod: dict[str, list[int]] = {}
        for k, m in enumerate(mods):
            by_mod.setdefault(m, []).append(k)
        mod_masks = {m: np.isin(np.arange(n), idx) for m, idx in by_mod.items()}
        text_sets: dict[str, list[frozenset[str]]] = {}
        any_mask = np.ones(n, bool)
        for rule in self.rules:
            if rule.modalities is None:
                mask = any_mask.copy()
            else:
                mask = np.zeros(n, bool)
                for m in rule.modalities:
                    if m in mod_masks:
                        mask |= mod_masks[m]
            if not mask.any():
                continue
            try:
                for spec in rule.specs:
                    mask &= batch.condition(spec)
                    if not mask.any():
                        break
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
            if rule.texts and mask.any():
                tmask = np.zeros(n, bool)
                for name, _ in rule.texts:
                    sets = text_sets.get(name)
                    if sets is None:
                        sets = text_sets[name] = [self._text_hits(h.modality, name, t) if (t := TEXT_FIELDS[name](h)) else _EMPTY
                                                  for h in headers]
                    tmask |= np.fromiter((rule.id in x for x in sets), bool, n)
                mask &= tmask
            hits = np.flatnonzero(mask)
            if not len(hits):
                continue
            for k in hits.tolist():
                h = headers[k]
                matched = self._matched_texts(rule, h)
                if not matched:
                    continue
                append = out[k].votes.append
                rows, cs, ws = acc[rule.source]
                for vote in _rule_votes(rule, h, matched):
                    append(vote)
                    if cols:
                        for v in vote.values:
                            c = cols.get((vote.field, v))
                            if c is not None:
                                rows.append(k)
                                cs.append(c)
                                ws.append(rule.weight)
        if cols:
            for source, target in (("header_rule", hard), ("description", desc)):
                rows, cs, ws = acc[source]
                if rows:
                    np.add.at(target, (np.asarray(rows), np.asarray(cs)), np.asarray(ws))
        # the vote order is that of ``apply``: rules are visited in the same order
        return out, hard, desc

    def fields_for(self, modality: str | None, role: str | None, derived_type: str | None = None) -> tuple[str, ...]:
        """The label fields that apply to a series of this modality family and role."""
        fam = family(modality)
        table = self.applicable.get(fam) or self.applicable.get("OT") or {}
        fields = table.get(role or "unknown") or table.get("unknown") or ("role",)
        if role == "derived" and derived_type in self.derived_overrides:
            fields = tuple(f for f in fields if f in self.derived_overrides[derived_type])
        return fields


_EMPTY: frozenset[str] = frozenset()

#: numeric facts whose absence means zero (no b-values, no repeats): a range containing 0 holds
#: for them; any other absent value (no TR, no window preset) fails every range condition.
ZERO_WHEN_MISSING = frozenset({"b_max", "temporal_positions"})


def _rule_votes(rule: Rule, h: SeriesHeader, matched: list[str]) -> Iterator[Vote]:
    """The votes one firing rule gives ``h``, once per text field it matched (dynamic values such
    as ``@plane`` resolved from the header; a dynamic value the header cannot give is no vote)."""
    for m in matched:
        for fname, value in rule.votes:
            if isinstance(value, str) and value[:1] == "@":
                value = DYNAMIC[value](h)
                if value is None:
                    continue
            values = value if isinstance(value, tuple) else (value,)
            yield Vote(rule.id, rule.source, fname, values, rule.weight, rule.detail, m, h)


def _missing_holds(key: str, lo: float | None, hi: float | None) -> bool:
    return key in ZERO_WHEN_MISSING and (lo is None or lo <= 0) and (hi is None or hi >= 0)


class _Batch:
    """Columns of a batch of headers, computed once per attribute and condition (see apply_batch)."""

    def __init__(self, headers: Sequence[SeriesHeader]) -> None:
        self.headers = headers
        self._cols: dict[Any, np.ndarray] = {}

    def _numeric(self, key: str) -> np.ndarray:
        col = self._cols.get(("num", key))
        if col is None:
            get = NUMERIC[key]
            vals = []
            for h in self.headers:
                try:
                    v = get(h)
                except (TypeError, ValueError):
                    v = None
                vals.append(np.nan if v is None else float(v))
            col = np.asarray(vals, np.float64)
            self._cols[("num", key)] = col
        return col

    def _ctx(self, key: str) -> np.ndarray:
        col = self._cols.get(("ctx", key))
        if col is None:
            col = np.asarray([h.exam_context.get(key, np.nan) for h in self.headers], np.float64)
            self._cols[("ctx", key)] = col
        return col

    @staticmethod
    def _range(col: np.ndarray, lo: float | None, hi: float | None, missing: bool) -> np.ndarray:
        ok = np.ones(len(col), bool)
        with np.errstate(invalid="ignore"):
            if lo is not None:
                ok &= col >= lo
            if hi is not None:
                ok &= col <= hi
        nan = np.isnan(col)
        return np.where(nan, missing, ok)

    def condition(self, spec: tuple[str, str, Any]) -> np.ndarray:
        hit = self._cols.get(spec)
        if hit is not None:
            return hit
        kind, key, arg = spec
        hs = self.headers
        if kind == "range":
            lo, hi = arg
            hit = self._range(self._numeric(key), lo, hi, _missing_holds(key, lo, hi))
        elif kind == "ctx":
            lo, hi = arg
            hit = self._range(self._ctx(key), lo, hi, False)
        elif kind == "tokens":
            mode, want = arg
            lists = [getattr(h, key) for h in hs]
            if mode == "any":
                hit = np.fromiter((not want.isdisjoint(v) for v in lists), bool, len(hs))
            elif mode == "all":
                hit = np.fromiter((want.issubset(v) for v in lists), bool, len(hs))
            else:
                hit = np.fromiter((want.isdisjoint(v) for v in lists), bool, len(hs))
        elif kind == "present":
            get = PRESENCE[key]
            hit = np.fromiter(((get(h) in (None, "", [])) != arg for h in hs), bool, len(hs))
        elif kind == "member":
            special = {"@plane": _PLANE, "@angio": _ANGIO}.get(key)
            vals = [special(h) for h in hs] if special else [getattr(h, key) or "" for h in hs]
            hit = np.fromiter((v in arg for v in vals), bool, len(hs))
        elif kind == "search":
            cache: dict[str, bool] = {}
            vals = []
            for h in hs:
                t = getattr(h, key) or ""
                r = cache.get(t)
                if r is None:
                    r = cache[t] = bool(arg.search(t))
                vals.append(r)
            hit = np.asarray(vals, bool)
        else:  # pragma: no cover - _compile only writes the kinds above
            raise ValueError(kind)
        self._cols[spec] = hit
        return hit


_TEXT_LABEL = {"description": "SeriesDescription", "protocol": "ProtocolName", "study_description": "StudyDescription"}
_FIELD_RE = re.compile(r"\{(\w+)(?::([^}]*))?\}")


@functools.lru_cache(maxsize=1024)
def _parts(template: str) -> tuple[tuple[str, str | None, str | None], ...]:
    """A detail template split once into (literal, placeholder, format) parts."""
    out: list[tuple[str, str | None, str | None]] = []
    pos = 0
    for m in _FIELD_RE.finditer(template):
        out.append((template[pos:m.start()], m.group(1), m.group(2)))
        pos = m.end()
    out.append((template[pos:], None, None))
    return tuple(out)


def _value(name: str, fmt: str | None, h: SeriesHeader, text: str) -> str:
    if name == "text":
        return text
    value: Any
    if name in NUMERIC:
        value = NUMERIC[name](h)
    elif name == "plane":
        value = h.plane
    elif name in h.exam_context:
        value = int(h.exam_context[name])
    else:
        value = getattr(h, name, None)
    if value is None:
        return "?"
    try:
        return format(value, fmt) if fmt else (f"{value:g}" if isinstance(value, float) else str(value))
    except (TypeError, ValueError):
        return str(value)


def _fill(template: str, h: SeriesHeader, text: str) -> str:
    """The rule's detail with {field} placeholders from the header ({text}: the matched text)."""
    if not template:
        return text
    parts = _parts(template)
    if len(parts) == 1:
        return template
    if len(parts) == 2 and parts[0][1] == "text" and not parts[0][0] and not parts[1][0]:
        return text
    return "".join(lit + (_value(name, fmt, h, text) if name else "") for lit, name, fmt in parts)


MODALITY_FAMILY = {"CT": "CT", "MR": "MR", "DX": "DX", "CR": "DX", "DR": "DX", "RG": "DX", "MG": "DX", "SR": "OT"}


def family(modality: str | None) -> str:
    """Modality family of the applicability tables (CR/DR/RG/MG read as DX)."""
    return MODALITY_FAMILY.get((modality or "").upper(), "OT")


@functools.cache
def load_rules(path: str | None = None) -> RuleSet:
    """The compiled rule set (cached); ``path`` overrides rules.yaml (tests)."""
    p = Path(path) if path else RULES_FILE
    data = p.read_bytes()
    return RuleSet(yaml.safe_load(data.decode("utf-8")), hashlib.sha256(data).hexdigest()[:12])


__all__ = ["RuleSet", "RuleResult", "Vote", "load_rules", "family", "RULES_FILE"]
