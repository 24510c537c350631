"""Automatic exam tags (影像特征标签 / 数据质量标签) from the series labels, split, rule QC and anatomy.

A pure function: everything it needs comes in as arguments, so the ``series`` stage, the
command line and tests call the same code, and a re-run on the same inputs gives the same tags.
The tag definitions (names, value types, parameters, which inputs each is derived from) are in
``radqc/vocab/tags.yaml``; each tag here has one deriver that follows the rule written there.

Absent means unknown: a tag whose inputs cannot decide it is not assigned (a CT exam with no
original axial series gets no ``thin_slices_present`` at all, not ``false``), so a search for
``thin_slices_present=false`` finds only exams where thin slices are known to be missing.
Every assigned tag carries evidence: the series UIDs and facts behind it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from radqc.vocab.tags import TagDef, format_set, tags

#: DICOM modalities folded into the dictionary's groups (HIS says DR, the header CR/DX).
MODALITY_GROUPS = {"CR": "DX", "DR": "DX", "DX": "DX", "PX": "DX", "IO": "DX"}
#: Modalities that are not imaging acquisitions (dose reports, captures, documents).
NON_IMAGING = {"SR", "SC", "OT", "KO", "PR", "DOC", "REG", "SEG"}
RECON_TYPES = ("mpr", "mip", "minip", "vr", "cpr", "ssd", "ve")
SPECTRAL_TYPES = ("mono", "iodine", "vnc")
POST_CONTRAST = ("arterial", "portal", "delayed")
IMAGE_ROLES = ("original", "derived")
SPECTRAL_IMAGE_TYPES = ("MONOENERGETIC", "MONO_ENERGETIC", "IODINE", "VNC", "SPECTRAL", "MULTI_ENERGY",
                        "EFF_ATOMIC_NUMBER", "VIRTUAL_NON_CONTRAST")


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a dataclass or a dict (labels and headers come as either)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


@dataclass
class _Inputs:
    labels: list[Any]
    split: Mapping[str, Any] | None
    rule_qc: Mapping[str, Any] | None
    anatomy: Mapping[str, Any] | None
    headers: dict[str, Any]
    modalities: set[str]

    def header(self, uid: str) -> Any:
        return self.headers.get(uid)

    def by(self, *, roles: Iterable[str] | None = None, modality: str | None = None) -> list[Any]:
        out = []
        roles_set = set(roles) if roles is not None else None
        for lab in self.labels:
            if roles_set is not None and _get(lab, "role") not in roles_set:
                continue
            if modality is not None and _group(_get(lab, "modality")) != modality:
                continue
            out.append(lab)
        return out


def _group(modality: Any) -> str | None:
    if not modality:
        return None
    m = str(modality).strip().upper()
    return MODALITY_GROUPS.get(m, m)


def _uids(labels: Iterable[Any]) -> list[str]:
    return [str(_get(lab, "series_uid")) for lab in labels]


def _find_word(text: Any, words: Iterable[Any]) -> str | None:
    """The first of ``words`` in ``text``: ASCII words as whole tokens (so ``de`` does not match
    ``head``), multi-word and Chinese ones as substrings."""
    low = str(text or "").casefold()
    if not low:
        return None
    tokens = set(re.findall(r"[a-z0-9]+", low))
    spaced = " ".join(re.findall(r"[a-z0-9]+", low))
    for raw in words:
        w = str(raw).strip().casefold()
        if not w:
            continue
        if re.fullmatch(r"[a-z0-9]+", w):
            if w in tokens:
                return w
        elif re.fullmatch(r"[a-z0-9 ]+", w):
            if f" {w} " in f" {spaced} ":
                return w
        elif w in low:
            return w
    return None


def _tag(code: str, value: str, **evidence: Any) -> dict[str, Any]:
    return {"tag": code, "value": value, "evidence": evidence}


def _bool(code: str, flag: bool, **evidence: Any) -> dict[str, Any]:
    return _tag(code, "true" if flag else "false", **evidence)


# --------------------------------------------------------------------------- derivers
# Each returns one tag dict, or None when its inputs cannot decide it.

def _modality(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    mods = x.modalities or {m for lab in x.labels if (m := _group(_get(lab, "modality")))}
    if not mods:
        return None
    return _tag(d.code, format_set(d, mods), series=len(x.labels))


def _vendor(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    found: set[str] = set()
    raw: set[str] = set()
    unmatched: set[str] = set()
    for h in x.headers.values():
        name = _get(h, "manufacturer")
        if not name:
            continue
        raw.add(str(name))
        text = f" {str(name).casefold()} "
        hit = next((v.value for v in d.values if any(m.casefold() in text for m in v.match)), None)
        if hit is None:
            unmatched.add(str(name))
            hit = "OTHER"
        found.add(hit)
    if not found:
        return None
    return _tag(d.code, format_set(d, found), manufacturers=sorted(raw), unmatched=sorted(unmatched))


def _anatomy_regions(anatomy: Mapping[str, Any] | None) -> set[str]:
    if not isinstance(anatomy, Mapping):
        return set()
    blocks: list[Any] = [anatomy.get("body_region")]
    for a in anatomy.get("analysed") or []:
        if isinstance(a, Mapping):
            blocks.append(a.get("body_region"))
    out = set()
    for b in blocks:
        if isinstance(b, Mapping):
            for r in b.get("regions") or []:
                if isinstance(r, Mapping) and r.get("region"):
                    out.add(str(r["region"]))
    return out


def _regions(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    from_labels = {str(r) for lab in x.by(roles=IMAGE_ROLES) if (r := _get(lab, "region"))}
    from_anatomy = _anatomy_regions(x.anatomy)
    regions = from_labels | from_anatomy
    if not regions:
        return None
    return _tag(d.code, format_set(d, regions), from_labels=sorted(from_labels), from_anatomy=sorted(from_anatomy))


def _thin(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    thin_mm = float(d.params.get("thin_mm", 2.0))
    axial = [lab for lab in x.by(roles=("original",), modality="CT") if _get(lab, "plane") in ("axial", None)]
    if not axial:
        return None
    thin, facts = [], {}
    for lab in axial:
        uid = str(_get(lab, "series_uid"))
        st = _get(x.header(uid), "slice_thickness")
        facts[uid] = st
        if isinstance(st, (int, float)) and st > 0:
            if st < thin_mm:
                thin.append(uid)
        elif _get(lab, "thickness_class") == "thin":
            thin.append(uid)
    return _bool(d.code, bool(thin), series=thin, slice_thickness_mm=facts, thin_mm=thin_mm)


def _ct_phases(x: _Inputs) -> dict[str, list[str]]:
    phases: dict[str, list[str]] = {}
    for lab in x.by(roles=IMAGE_ROLES, modality="CT"):
        ph = _get(lab, "phase")
        if ph:
            phases.setdefault(str(ph), []).append(str(_get(lab, "series_uid")))
    return phases


def _mr_sequences(x: _Inputs) -> dict[str, list[str]]:
    seqs: dict[str, list[str]] = {}
    for lab in x.by(modality="MR"):
        if _get(lab, "role") not in IMAGE_ROLES:
            continue
        s = _get(lab, "sequence")
        if s:
            seqs.setdefault(str(s), []).append(str(_get(lab, "series_uid")))
    return seqs


def _enhanced(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    phases = _ct_phases(x)
    seqs = _mr_sequences(x)
    agents = sorted({str(a) for h in x.headers.values() if (a := _get(h, "contrast_agent"))})
    post_ct = {p: u for p, u in phases.items() if p in POST_CONTRAST}
    post_mr = {s: u for s, u in seqs.items() if s in ("T1C", "DCE")}
    if post_ct or post_mr:
        return _bool(d.code, True, ct_phases=post_ct, mr_sequences=post_mr, contrast_agent=agents)
    if phases or seqs:
        return _bool(d.code, False, ct_phases=phases, mr_sequences=sorted(seqs), contrast_agent=agents)
    return None


def _contrast_phases(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    phases = _ct_phases(x)
    if not phases:
        return None
    return _tag(d.code, format_set(d, phases), series=phases)


def _multiphase(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    phases = _ct_phases(x)
    if not phases:
        return None
    post = sorted(p for p in phases if p in POST_CONTRAST)
    need = int(d.params.get("min_contrast_phases", 2))
    return _bool(d.code, len(post) >= need, contrast_phases=post, min_contrast_phases=need)


def _recon_series(x: _Inputs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lab in x.by(roles=("derived",)):
        t = _get(lab, "derived_type")
        if t in RECON_TYPES:
            out.setdefault(str(t), []).append(str(_get(lab, "series_uid")))
    return out


def _recons(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    if not x.by(roles=IMAGE_ROLES):
        return None
    found = _recon_series(x)
    return _bool(d.code, bool(found), types=found)


def _recon_types(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    found = _recon_series(x)
    if not found:
        return None
    return _tag(d.code, format_set(d, found), series=found)


def _spectral(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    ct = x.by(roles=IMAGE_ROLES, modality="CT")
    if not ct:
        return None
    words = d.params.get("words", [])
    hits: dict[str, str] = {}
    for lab in ct:
        uid = str(_get(lab, "series_uid"))
        if _get(lab, "derived_type") in SPECTRAL_TYPES:
            hits[uid] = f"derived_type {_get(lab, 'derived_type')}"
            continue
        h = x.header(uid)
        itype = [str(t).upper() for t in (_get(h, "image_type") or [])]
        term = next((t for t in itype if t in SPECTRAL_IMAGE_TYPES), None)
        if term:
            hits[uid] = f"ImageType {term}"
            continue
        word = _find_word(_get(h, "description"), words)
        if word:
            hits[uid] = f"description contains {word!r}"
    return _bool(d.code, bool(hits), series=hits)


def _perfusion(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    cand = x.by(modality="CT") + x.by(modality="MR")
    if not cand:
        return None
    need = int(d.params.get("min_temporal_positions", 20))
    words = d.params.get("words", [])
    hits: dict[str, str] = {}
    for lab in cand:
        uid = str(_get(lab, "series_uid"))
        h = x.header(uid)
        if h is None:
            continue
        tp = max(int(_get(h, "temporal_positions") or 0), int(_get(h, "n_temporal_ids") or 0))
        n, pos = int(_get(h, "n_instances") or 0), int(_get(h, "n_positions") or 0)
        repeats = n // pos if pos > 0 else 0
        if tp >= need:
            hits[uid] = f"{tp} temporal positions"
        elif repeats >= need and _get(lab, "sequence") != "DWI":
            hits[uid] = f"{n} instances over {pos} positions"
        elif word := _find_word(_get(h, "description"), words):
            hits[uid] = f"description contains {word!r}"
    if not x.headers:
        return None
    return _bool(d.code, bool(hits), series=hits, min_temporal_positions=need)


def _gated(d: TagDef, x: _Inputs, ct_trigger: bool) -> dict[str, Any] | None:
    mods = [m for m in d.modalities if m in x.modalities] or list(d.modalities)
    cand = [lab for m in mods for lab in x.by(modality=m)]
    read = [lab for lab in cand if x.header(str(_get(lab, "series_uid"))) is not None]
    if not read:
        return None
    options = {str(o).upper() for o in d.params.get("scan_options", [])}
    hits: dict[str, str] = {}
    for lab in read:
        uid = str(_get(lab, "series_uid"))
        h = x.header(uid)
        so = {str(o).upper() for o in (_get(h, "scan_options") or [])}
        if so & options:
            hits[uid] = f"ScanOptions {sorted(so & options)}"
        elif ct_trigger and _group(_get(lab, "modality")) == "CT" and _get(h, "trigger_time") is not None:
            hits[uid] = f"TriggerTime {_get(h, 'trigger_time')}"
    return _bool(d.code, bool(hits), series=hits)


def _ecg(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    return _gated(d, x, ct_trigger=True)


def _resp(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    return _gated(d, x, ct_trigger=False)


def _mr_set(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    seqs = _mr_sequences(x)
    if not seqs:
        return None
    return _tag(d.code, format_set(d, seqs), series=seqs)


def _has_sequence(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    seqs = _mr_sequences(x)
    if not seqs:
        return None
    wanted = [str(s) for s in d.params.get("sequences", [])]
    hits = {s: seqs[s] for s in wanted if s in seqs}
    return _bool(d.code, bool(hits), series=hits, sequences_present=sorted(seqs))


def _dx_views(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    views: dict[str, list[str]] = {}
    for lab in x.by(modality="DX") + x.by(modality="MG"):
        v = _get(lab, "view")
        if v:
            views.setdefault(str(v), []).append(str(_get(lab, "series_uid")))
    if not views:
        return None
    return _tag(d.code, format_set(d, views), series=views)


def _localizer_only(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    cand = [lab for lab in x.labels if _group(_get(lab, "modality")) in d.modalities
            or _get(lab, "role") in ("localizer", "dose_report", "screen_capture")]
    if not cand:
        return None
    images = x.by(roles=IMAGE_ROLES)
    roles: dict[str, int] = {}
    for lab in x.labels:
        roles[str(_get(lab, "role"))] = roles.get(str(_get(lab, "role")), 0) + 1
    return _bool(d.code, not images, roles=roles)


def _dose_report(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    reports = x.by(roles=("dose_report",))
    return _bool(d.code, bool(reports), series=_uids(reports))


def _unknown(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    if not x.labels:
        return None
    unknown = x.by(roles=("unknown",))
    return _bool(d.code, bool(unknown), series={str(_get(lab, "series_uid")): _get(lab, "unknown_reason")
                                                 for lab in unknown})


def _overruled(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    if not x.labels:
        return None
    hits = [lab for lab in x.labels if _get(lab, "description_overruled")]
    return _bool(d.code, bool(hits), series=_uids(hits))


def _low_conf(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    if not x.labels:
        return None
    limit = float(d.params.get("min_confidence", 0.6))
    hits = {str(_get(lab, "series_uid")): round(float(_get(lab, "confidence") or 0.0), 3) for lab in x.labels
            if float(_get(lab, "confidence") or 0.0) < limit}
    return _bool(d.code, bool(hits), series=hits, min_confidence=limit)


def _split_ok(x: _Inputs) -> Mapping[str, Any] | None:
    return x.split if isinstance(x.split, Mapping) else None


def _mismatch_rows(split: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in split.get("mismatch") or [] if isinstance(m, Mapping)]


def _item_mismatch(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    split = _split_ok(x)
    if split is None or split.get("no_order"):
        return None
    rows = _mismatch_rows(split)
    return _bool(d.code, bool(rows), mismatch=[dict(m) for m in rows])


def _mismatch_kinds(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    split = _split_ok(x)
    if split is None:
        return None
    kinds = {str(m.get("kind")) for m in _mismatch_rows(split) if m.get("kind")}
    if not kinds:
        return None
    return _tag(d.code, format_set(d, kinds), count=len(_mismatch_rows(split)))


def _no_order(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    split = _split_ok(x)
    if split is None:
        return None
    return _bool(d.code, bool(split.get("no_order")))


def _unassigned(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    split = _split_ok(x)
    if split is None or split.get("no_order"):
        return None
    rows = [u for u in split.get("unassigned") or [] if isinstance(u, Mapping)]
    return _bool(d.code, bool(rows), series={str(u.get("series_uid")): u.get("reason") for u in rows})


def _qc_grade(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    qc = x.rule_qc
    if not isinstance(qc, Mapping):
        return None
    if qc.get("grade") is None and isinstance(qc.get("result"), Mapping):
        qc = qc["result"]
    raw = qc.get("grade")
    if raw is None or raw == "":
        return None
    allowed = {v.value for v in d.values}
    grade_map = {str(k): str(v) for k, v in (d.params.get("grade_map") or {}).items()}
    value = str(raw) if str(raw) in allowed else grade_map.get(str(raw))
    if value is None:
        return None
    return _tag(d.code, value, grade=raw, score=qc.get("score"), ruleset_version=qc.get("ruleset_version"))


def _items_with_series(split: Mapping[str, Any]) -> list[str]:
    return [str(i.get("code")) for i in split.get("standard_items") or []
            if isinstance(i, Mapping) and i.get("series")]


def _combined(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    split = _split_ok(x)
    if split is None or split.get("no_order"):
        return None
    codes = _items_with_series(split)
    return _bool(d.code, len(set(codes)) >= 2, items=codes)


def _item_count(d: TagDef, x: _Inputs) -> dict[str, Any] | None:
    split = _split_ok(x)
    if split is None or split.get("no_order"):
        return None
    codes = _items_with_series(split)
    return _tag(d.code, str(len(set(codes))), items=codes)


DERIVERS: dict[str, Callable[[TagDef, _Inputs], dict[str, Any] | None]] = {
    "modality": _modality, "vendor": _vendor, "regions_imaged": _regions,
    "thin_slices_present": _thin, "enhanced": _enhanced, "contrast_phases": _contrast_phases,
    "multiphase": _multiphase, "reconstructions_present": _recons, "reconstruction_types": _recon_types,
    "spectral": _spectral, "perfusion": _perfusion, "ecg_gated": _ecg, "respiratory_gated": _resp,
    "mr_sequences": _mr_set, "has_dwi": _has_sequence, "has_swi": _has_sequence, "has_t1c": _has_sequence,
    "has_tof": _has_sequence, "has_dce": _has_sequence, "dx_views": _dx_views,
    "localizer_only": _localizer_only, "dose_report_present": _dose_report,
    "unknown_series_present": _unknown, "description_overruled": _overruled,
    "low_confidence_series": _low_conf, "item_mismatch": _item_mismatch, "mismatch_kinds": _mismatch_kinds,
    "no_order": _no_order, "unassigned_series_present": _unassigned, "qc_grade": _qc_grade,
    "combined_exam": _combined, "standard_item_count": _item_count,
}


def assign_tags(labels: list[Any], split: dict[str, Any] | None = None, rule_qc: dict[str, Any] | None = None,
                anatomy: dict[str, Any] | None = None, headers: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """The exam's tags: ``[{"tag": code, "value": "true" | "false" | value, "evidence": {...}}]``.

    ``labels``: :class:`radqc.pipelines.series.types.SeriesLabel` (or their dicts); ``split``:
    the series stage's split (``standard_items``, ``mismatch``, ``unassigned``, ``no_order``);
    ``rule_qc``: the rule_qc stage result (``grade``, ``score``); ``anatomy``: the anatomy stage
    result or ``{"body_region": {"regions": [...]}}``; ``headers``: SeriesHeader objects or
    dicts (``series_uid``, ``slice_thickness``, ``manufacturer``, ``scan_options``, ...).
    Tags come in dictionary order; a tag restricted to modalities the exam lacks is skipped;
    a deriver that fails on malformed input leaves its tag out (the others still come).
    """
    labels = [lab for lab in labels or [] if lab is not None]
    header_map: dict[str, Any] = {}
    for h in headers or []:
        uid = _get(h, "series_uid")
        if uid:
            header_map[str(uid)] = h
    imaging = {g for lab in labels if (g := _group(_get(lab, "modality"))) and g not in NON_IMAGING
               and _get(lab, "role") not in ("dose_report", "screen_capture")}
    if not imaging:
        imaging = {g for lab in labels if (g := _group(_get(lab, "modality"))) and g not in NON_IMAGING}
    x = _Inputs(labels=labels, split=split, rule_qc=rule_qc, anatomy=anatomy, headers=header_map,
                modalities=imaging)
    out: list[dict[str, Any]] = []
    for code, d in tags().items():
        fn = DERIVERS.get(code)
        if fn is None:
            continue
        if d.modalities and not (set(d.modalities) & imaging):
            continue
        try:
            t = fn(d, x)
        except (TypeError, ValueError, AttributeError):
            continue
        if t is not None:
            out.append(t)
    return out
