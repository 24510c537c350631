"""Assign an exam's series to its ordered standard items; cut one long acquisition into slabs.

Pure functions, no I/O: the CLI (:mod:`radqc.pipelines.series.run`), the ``series`` stage and
``radqc eval series`` all call :func:`split_exam` with what they already have (labels from the
classifier, header facts, slice positions, optionally the anatomy engine's body regions).

Why it works the way it does (docs/series.md has the long form):

* Regions come from the images first: the classifier's ``region`` per series (image model +
  header model), the per-slice body regions of the anatomy engine when they exist. The
  header's BodyPartExamined is only a weak hint (wrong in ~15% of exams), so it is never the
  only reason for an assignment.
* CT originals that overlap in z are one acquisition (a 5 mm soft and a 1.25 mm lung
  reconstruction of the same helical scan). When an acquisition is the only one whose
  region fits an item and it is long enough to cover the item's neighbour in z too, it
  covers several ordered items and is cut into slabs at anatomical boundaries: the body-region
  result's region limits / landmarks when present (``boundary_source: "body_region"``),
  otherwise typical part lengths along the scan (``"z_coverage"``, lower confidence).
* Derived series follow their source series, a localizer the acquisition it plans (the next
  acquisition in series-number order), a dose report covers the imaged items of its modality.
* Nothing is guessed silently: a series that fits no item is ``unassigned`` with its reason,
  an ordered item that no series covers is a ``mismatch`` with the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radqc.pipelines.series.types import SeriesLabel

SPLIT_VERSION = "1"

#: Billing-part facts used when ``radqc.vocab`` cannot answer: part -> (region, z_order).
#: z_order runs from 0 (vertex) to 100 (pubic symphysis) for trunk parts, as in the vocab.
FALLBACK_PARTS: dict[str, tuple[str, int]] = {
    "颅脑": ("head", 5), "颅底": ("head", 12), "眼部": ("head", 10), "中耳乳突": ("head", 12),
    "鼻窦": ("head", 14), "鼻咽部": ("head", 16), "颌面部": ("head", 16), "齿科": ("head", 17),
    "颈部软组织": ("neck", 22), "颈部": ("neck", 22), "颈椎": ("cervical_spine", 22),
    "胸部": ("chest", 40), "心脏": ("chest", 42), "胸椎": ("thoracic_spine", 40),
    "上腹部": ("abdomen", 60), "下腹部": ("abdomen", 72), "腰椎": ("lumbar_spine", 70),
    "骶尾椎": ("pelvis", 88), "盆腔": ("pelvis", 88), "髋关节": ("pelvis", 92),
    "骶髂关节": ("pelvis", 86), "膝关节": ("knee", 130), "踝关节": ("legs", 150),
}

#: Item region -> series regions that may image it. A thoracic-spine CT looks like a chest
#: slab to a body-region model, a lumbar spine like abdomen (+ pelvis): both are legitimate.
COMPATIBLE_REGIONS: dict[str, tuple[str, ...]] = {
    "head": ("head",),
    "neck": ("neck",),
    "chest": ("chest",),
    "abdomen": ("abdomen",),
    "pelvis": ("pelvis",),
    "cervical_spine": ("cervical_spine", "neck", "spine"),
    "thoracic_spine": ("thoracic_spine", "chest", "spine"),
    "lumbar_spine": ("lumbar_spine", "abdomen", "spine"),
    "spine": ("spine", "cervical_spine", "thoracic_spine", "lumbar_spine", "neck", "chest", "abdomen"),
    "knee": ("knee", "legs"),
    "legs": ("legs", "knee"),
}

#: Typical scanned length (mm) of one item of a region: the z-coverage fallback cuts a long
#: acquisition in these proportions, and decides whether a scan is long enough to cover a
#: neighbouring ordered part. Medians measured on the generator's training set (train_mixed),
#: in line with adult anatomy (chest ~30 cm, abdomen ~20 cm).
TYPICAL_LENGTH_MM: dict[str, float] = {
    "head": 145.0, "neck": 190.0, "chest": 300.0, "abdomen": 200.0, "pelvis": 190.0,
    "cervical_spine": 170.0, "thoracic_spine": 300.0, "lumbar_spine": 205.0, "knee": 160.0, "legs": 400.0,
}
#: An acquisition covers extra ordered parts when its length reaches this share of the parts'
#: summed typical lengths (chest alone: median 302 mm; chest + upper abdomen in one scan: >= 367).
COVER_FRACTION = 0.75
#: Adult kidney length (mm): 下腹部 starts at the upper renal pole, the scorer finds the lower one.
KIDNEY_LENGTH_MM = 110.0
#: Confidence of a slab boundary by its source.
BOUNDARY_CONFIDENCE = {"body_region": 0.95, "z_coverage": 0.7}
#: Modalities that are the same thing for an order (a DR item is imaged by DX or CR objects).
MODALITY_GROUPS: dict[str, str] = {"DX": "DX", "CR": "DX", "DR": "DX", "RG": "DX", "MG": "MG", "CT": "CT",
                                   "MR": "MR", "RF": "RF", "XA": "XA", "US": "US", "NM": "NM", "PT": "PT"}
#: Body region per BodyPartExamined value (weak hint only).
BODY_PART_REGION: dict[str, str] = {
    "HEAD": "head", "BRAIN": "head", "SKULL": "head", "NECK": "neck", "CSPINE": "cervical_spine",
    "CHEST": "chest", "THORAX": "chest", "LUNG": "chest", "TSPINE": "thoracic_spine", "ABDOMEN": "abdomen",
    "LIVER": "abdomen", "PELVIS": "pelvis", "LSPINE": "lumbar_spine", "KNEE": "knee", "CHESTABDOMEN": "chest",
}
#: Reasons a series is not assigned: code -> (Chinese, English).
UNASSIGNED_REASONS: dict[str, tuple[str, str]] = {
    "modality_not_ordered": ("该模态无医嘱项目", "no ordered item of this modality"),
    "region_not_ordered": ("该部位未开医嘱", "the imaged region is not ordered"),
    "region_unknown": ("无法确定序列部位", "the series' region could not be determined"),
    "ambiguous_items": ("多个医嘱项目同样匹配", "several ordered items fit equally well"),
    "source_unassigned": ("源序列未分配", "the source series is unassigned"),
}


def _bilingual(table: Mapping[str, tuple[str, str]], code: str, detail: str = "") -> str:
    zh, en = table[code]
    text = f"{zh} / {en}"
    return f"{text}: {detail}" if detail else text


def _modality_group(modality: str | None) -> str:
    m = (modality or "").upper()
    return MODALITY_GROUPS.get(m, m)


def part_facts(name: str) -> tuple[str | None, int | None]:
    """(region, z_order) of a billing part: the vocabulary when it knows it, else the fallback."""
    try:
        import importlib

        bp = importlib.import_module("radqc.vocab").part(name)
        if bp is not None:
            return getattr(bp, "region", None), getattr(bp, "z_order", None)
    except Exception:  # vocab not installed yet or unknown part name: the fallback table
        pass
    region, z = FALLBACK_PARTS.get(name, (None, None))
    return region, z


@dataclass
class ItemInfo:
    """An ordered standard item plus the region facts the split needs."""

    index: int
    item: dict[str, Any]
    region: str | None
    z_order: float

    @property
    def code(self) -> str:
        return str(self.item.get("code") or f"item{self.index}")


def item_info(index: int, item: Mapping[str, Any],
              facts: Callable[[str], tuple[str | None, int | None]] = part_facts) -> ItemInfo:
    """Resolve an item's body region and z order (its first part's, the trunk order)."""
    parts = list(item.get("parts") or ([item["part"]] if item.get("part") else []))
    region = item.get("region")
    z_order: float | None = None
    for p in parts:
        r, z = facts(str(p))
        region = region or r
        if z is not None:
            z_order = float(z) if z_order is None else min(z_order, float(z))
    if z_order is None:
        z_order = float({"head": 5, "neck": 22, "chest": 40, "abdomen": 62, "pelvis": 88}.get(str(region), 200 + index))
    return ItemInfo(index=index, item=dict(item), region=str(region) if region else None, z_order=z_order)


def regions_compatible(item_region: str | None, series_region: str | None) -> bool:
    if not item_region or not series_region:
        return False
    return series_region in COMPATIBLE_REGIONS.get(item_region, (item_region,))


@dataclass
class _Series:
    uid: str
    label: SeriesLabel
    header: Any
    z: list[float]
    region: str | None
    region_conf: float

    @property
    def number(self) -> int:
        n = getattr(self.header, "series_number", None)
        return int(n) if isinstance(n, (int, float)) else 1 << 30

    @property
    def z_range(self) -> tuple[float, float] | None:
        if self.z:
            return min(self.z), max(self.z)
        lo, hi = getattr(self.header, "z_min", None), getattr(self.header, "z_max", None)
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return float(min(lo, hi)), float(max(lo, hi))
        return None


@dataclass
class _Cluster:
    """One CT acquisition: original axial series that overlap in z."""

    members: list[_Series] = field(default_factory=list)
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, s: _Series, zr: tuple[float, float]) -> None:
        self.members.append(s)
        self.lo, self.hi = min(self.lo, zr[0]), max(self.hi, zr[1])

    @property
    def length(self) -> float:
        return max(0.0, self.hi - self.lo)

    def region(self) -> tuple[str | None, float]:
        votes: dict[str, float] = {}
        for m in self.members:
            if m.region:
                votes[m.region] = votes.get(m.region, 0.0) + max(m.region_conf, 0.05)
        if not votes:
            return None, 0.0
        best = max(votes, key=lambda k: votes[k])
        return best, votes[best] / sum(votes.values())


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Overlap of two z ranges as a share of the shorter one."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    shorter = max(min(a[1] - a[0], b[1] - b[0]), 1e-6)
    return inter / shorter if inter > 0 else (1.0 if inter == 0 and shorter <= 1e-6 else 0.0)


def _series_region(label: SeriesLabel, header: Any) -> tuple[str | None, float]:
    if label.region:
        return label.region, float(label.field_confidence.get("region", label.confidence or 0.5))
    bp = str(getattr(header, "body_part", None) or "").upper().replace(" ", "")
    if bp in BODY_PART_REGION:  # weak hint: low confidence, never decisive alone for a mismatch
        return BODY_PART_REGION[bp], 0.3
    return None, 0.0


def _entry(s: _Series, by: str, confidence: float, slab: dict[str, Any] | None = None,
           note: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"series_uid": s.uid, "category": s.label.category, "role": s.label.role,
                           "slab": slab, "assigned_by": by, "confidence": round(float(confidence), 3)}
    if note:
        out["note"] = note
    return out


def slab_boundaries(items: Sequence[ItemInfo], lo: float, hi: float,
                    body_regions: Mapping[str, Any] | None) -> tuple[list[float], str]:
    """Cut points (descending z, one fewer than ``items``) between consecutive items top to bottom.

    With the anatomy engine's regions: the midpoint between where the upper item's region
    ends and the lower item's begins (two items of one region, e.g. 上腹部 + 下腹部, split
    that region at the upper renal pole — the lower pole the scorer finds plus a kidney's
    length — when known, else in typical-length proportion).
    Otherwise typical part lengths scaled to the scan (``z_coverage``).
    """
    regions = list((body_regions or {}).get("regions") or [])
    landmarks = dict((body_regions or {}).get("landmarks") or {})
    zones: dict[str, tuple[float, float]] = {}
    for r in regions:
        try:
            name, zlo, zhi = str(r["region"]), float(r["z_min_mm"]), float(r["z_max_mm"])
        except (KeyError, TypeError, ValueError):
            continue
        old = zones.get(name)
        zones[name] = (min(zlo, old[0]), max(zhi, old[1])) if old else (zlo, zhi)

    def zone(item: ItemInfo) -> tuple[float, float] | None:
        found = [zones[r] for r in COMPATIBLE_REGIONS.get(item.region or "", (item.region or "",)) if r in zones]
        if not found:
            return None
        return min(z[0] for z in found), max(z[1] for z in found)

    cuts: list[float] = []
    source = "body_region" if zones else "z_coverage"
    if zones:
        for upper, lower in zip(items, items[1:], strict=False):
            zu, zl = zone(upper), zone(lower)
            if zu and zl and zu != zl:
                cuts.append((zu[0] + zl[1]) / 2.0)
            elif zu and zl:  # same region (上腹部 + 下腹部): landmark or proportion inside it
                renal = landmarks.get("lower_renal_pole")
                upper_pole = float(renal) + KIDNEY_LENGTH_MM if isinstance(renal, (int, float)) else None
                if upper_pole is not None and zu[0] < upper_pole < zu[1]:
                    cuts.append(upper_pole)
                else:
                    cuts.append(zu[1] - (zu[1] - zu[0]) * 0.55)
            else:
                source = "z_coverage"
                cuts = []
                break
        if cuts and not all(lo < c < hi for c in cuts):
            source, cuts = "z_coverage", []
    if not cuts:
        lengths = [TYPICAL_LENGTH_MM.get(i.region or "", 200.0) for i in items]
        same: dict[str | None, int] = {}
        for i in items:  # two items of one region share its length
            same[i.region] = same.get(i.region, 0) + 1
        lengths = [length / same[i.region] for i, length in zip(items, lengths, strict=True)]
        total = sum(lengths)
        acc = 0.0
        for length in lengths[:-1]:
            acc += length
            cuts.append(hi - (hi - lo) * acc / total)
        source = "z_coverage"
    return sorted(cuts, reverse=True), source


def slab_members(z_positions: Sequence[float], z_from_mm: float, z_to_mm: float) -> list[int]:
    """Indices of the slices inside a slab (inclusive: boundaries lie between slices)."""
    return [i for i, z in enumerate(z_positions) if z_from_mm - 1e-3 <= z <= z_to_mm + 1e-3]


def _snap(z_sorted_desc: Sequence[float], cut: float) -> float:
    """A cut moved halfway between the two slices around it, so no slice lies on a boundary."""
    above = [z for z in z_sorted_desc if z >= cut]
    below = [z for z in z_sorted_desc if z < cut]
    if not above or not below:
        return cut
    return (min(above) + max(below)) / 2.0


def _slabs_for(s: _Series, cuts: Sequence[float], source: str) -> list[dict[str, Any] | None]:
    """The series' own slab per item (top to bottom); None where the slab holds no slice.

    Each slab's ``z_from_mm``/``z_to_mm`` are its lowest/highest slice, so
    :func:`slab_members` over the same positions gives back exactly its slices.
    """
    zs = sorted(s.z, reverse=True)
    if not zs:
        return [None for _ in range(len(cuts) + 1)]
    snapped = [_snap(zs, c) for c in cuts]
    out: list[dict[str, Any] | None] = []
    for k in range(len(snapped) + 1):
        upper = math.inf if k == 0 else snapped[k - 1]
        lower = -math.inf if k == len(snapped) else snapped[k]
        members = [z for z in zs if lower < z <= upper]
        if not members:
            out.append(None)
            continue
        out.append({"z_from_mm": round(min(members), 3), "z_to_mm": round(max(members), 3),
                    "instances": len(members), "boundary_source": source})
    return out


def split_exam(
    labels: Sequence[SeriesLabel],
    items: Sequence[Mapping[str, Any]],
    *,
    headers: Mapping[str, Any] | None = None,
    slice_z: Mapping[str, Sequence[float]] | None = None,
    body_regions: Mapping[str, Any] | None = None,
    part_lookup: Callable[[str], tuple[str | None, int | None]] = part_facts,
) -> dict[str, Any]:
    """Assign every series to the ordered standard item(s) it belongs to (result: docs/series.md).

    ``labels``: the classifier's labels; ``items``: the ordered standard items (the items
    stage's ``standard_items`` or the normaliser's matches: code, name, modality, parts,
    method, laterality); ``headers``: series uid -> header facts (``series_number``,
    ``z_min``/``z_max``, ``source_series_uids``, ``laterality``, ``body_part``);
    ``slice_z``: series uid -> patient z of each instance (slab membership and counts);
    ``body_regions``: the anatomy engine's ``body_region`` (regions with ``z_min_mm``/
    ``z_max_mm``) and ``landmarks`` of one CT series of the exam, when it ran.
    """
    headers = headers or {}
    slice_z = slice_z or {}
    series = []
    for lab in labels:
        h = headers.get(lab.series_uid)
        region, conf = _series_region(lab, h)
        zs = [float(z) for z in (slice_z.get(lab.series_uid) or []) if isinstance(z, (int, float))]
        series.append(_Series(lab.series_uid, lab, h, zs, region, conf))
    by_uid = {s.uid: s for s in series}
    infos = [item_info(i, it, part_lookup) for i, it in enumerate(items)]
    result_items: list[dict[str, Any]] = [
        {k: info.item.get(k) for k in ("code", "name", "modality", "parts", "method", "laterality")}
        | {"region": info.region, "series": []} for info in infos]
    unassigned: list[dict[str, Any]] = []
    mismatch: list[dict[str, Any]] = []
    assigned: dict[str, list[int]] = {}

    def put(idx: int, entry: dict[str, Any]) -> None:
        result_items[idx]["series"].append(entry)
        assigned.setdefault(entry["series_uid"], []).append(idx)

    def drop(s: _Series, code: str, detail: str = "") -> None:
        unassigned.append({"series_uid": s.uid, "category": s.label.category, "role": s.label.role,
                           "reason": code, "message": _bilingual(UNASSIGNED_REASONS, code, detail)})

    if not infos:
        return _no_order(series)

    ordered_groups = {_modality_group(i.item.get("modality")) for i in infos}
    imaged_groups = {_modality_group(s.label.modality) for s in series}
    for it in infos:
        group = _modality_group(it.item.get("modality"))
        if group and group not in imaged_groups and series:
            mismatch.append({"kind": "modality_mismatch", "item": it.code,
                             "evidence": f"ordered {group}, images are {sorted(g for g in imaged_groups if g)}"})

    primaries = [s for s in series if s.label.role in ("original", "unknown")]
    acquisitions: list[tuple[_Cluster, list[int]]] = []
    for group in sorted(g for g in {_modality_group(s.label.modality) for s in primaries}):
        cands = [it for it in infos if _modality_group(it.item.get("modality")) == group]
        members = [s for s in primaries if _modality_group(s.label.modality) == group]
        if not cands:
            for s in members:
                drop(s, "modality_not_ordered", str(s.label.modality))
            continue
        if group == "CT":
            acquisitions = _assign_ct(members, cands, body_regions, put, drop)
        else:
            _assign_stations(members, cands, put, drop)

    # derived series follow their sources; localizers the acquisition they plan
    for s in sorted(series, key=lambda x: x.number):
        if s.label.role != "derived":
            continue
        sources = [u for u in (getattr(s.header, "source_series_uids", None) or []) if u in by_uid]
        targets = sorted({i for u in sources for i in assigned.get(u, [])})
        if targets:
            for idx in targets:
                put(idx, _entry(s, "source_series", 0.95))
            continue
        cands = [it for it in infos if _modality_group(it.item.get("modality")) == _modality_group(s.label.modality)]
        if not cands:
            drop(s, "modality_not_ordered", str(s.label.modality))
        elif sources:
            drop(s, "source_unassigned", ", ".join(sources))
        elif (hit := _same_acquisition(s, acquisitions)) is not None:
            cluster, idxs = hit
            if len(idxs) > 1 and s.label.plane == "axial" and s.z:  # an axial derived stack (spectral): slabs too
                its = [i for i in infos if i.index in idxs]
                cuts, source = slab_boundaries(its, cluster.lo, cluster.hi,
                                               _cluster_body_regions(cluster, body_regions))
                _put_slabs(s, its, cuts, source, put)
            else:
                for idx in idxs:
                    put(idx, _entry(s, "same_acquisition", 0.85))
        else:  # no SourceImageSequence: place it like an original, by region and z
            _assign_each([s], cands, put, drop, by_suffix="(no source reference)")
    for s in series:
        if s.label.role != "localizer":
            continue
        idxs = [i.index for i in infos if _modality_group(i.item.get("modality")) == _modality_group(s.label.modality)]
        if not idxs:
            drop(s, "modality_not_ordered", str(s.label.modality))
            continue
        later = sorted((o for o in primaries if o.uid in assigned and o.number > s.number), key=lambda o: o.number)
        earlier = sorted((o for o in primaries if o.uid in assigned and o.number < s.number), key=lambda o: -o.number)
        plan = (later or earlier)[0] if (later or earlier) else None
        if plan is None:
            for idx in idxs:
                put(idx, _entry(s, "exam_wide", 0.5))
        else:
            planned = set(assigned[plan.uid])
            for cluster, c_idxs in acquisitions:  # it plans the whole acquisition, every slab of it
                if any(m.uid == plan.uid for m in cluster.members):
                    planned |= set(c_idxs)
            for idx in sorted(planned):
                put(idx, _entry(s, "localizer_plans", 0.9, note=plan.uid))
    imaged_items = {i for i, out in enumerate(result_items) if out["series"]}
    for s in series:
        if s.label.role not in ("dose_report", "screen_capture"):
            continue
        idxs = [i.index for i in infos if _modality_group(i.item.get("modality")) == _modality_group(s.label.modality)]
        if not idxs and len(ordered_groups) == 1:
            idxs = [i.index for i in infos]
        # it reports on what was imaged: the items with images, all of them when none has
        idxs = [i for i in idxs if i in imaged_items] or idxs
        if not idxs:
            drop(s, "modality_not_ordered", str(s.label.modality))
        for idx in idxs:
            put(idx, _entry(s, "exam_wide", 0.9))

    imaged_regions = {s.region for s in series if s.region and s.label.role in ("original", "unknown")}
    for info, out in zip(infos, result_items, strict=True):
        if not any(e.get("assigned_by") not in ("exam_wide",) for e in out["series"]):
            if not any(m["kind"] == "modality_mismatch" and m["item"] == info.code for m in mismatch):
                mismatch.append({"kind": "ordered_part_not_imaged", "item": info.code,
                                 "evidence": f"no series images {info.region or '?'}; imaged regions: "
                                             f"{sorted(imaged_regions) or 'none'}"})
    for u in unassigned:
        if u["reason"] == "region_not_ordered":
            s = by_uid[u["series_uid"]]
            mismatch.append({"kind": "imaged_part_not_ordered", "region": s.region,
                             "evidence": f"series {s.uid} ({s.label.category}) images {s.region} "
                                         f"(confidence {s.region_conf:.2f}); ordered: "
                                         f"{[i.region for i in infos]}"})
    return {"version": SPLIT_VERSION, "standard_items": result_items, "unassigned": unassigned,
            "mismatch": mismatch, "no_order": False}


#: Series whose image centres lie within this distance along z are one table station (an MR
#: head and its sagittals; a lumbar spine station sits ~60 cm lower).
STATION_GAP_MM = 120.0


def _assign_stations(members: Sequence[_Series], cands: Sequence[ItemInfo],
                     put: Callable[[int, dict[str, Any]], None], drop: Callable[..., None]) -> None:
    """Non-CT series (MR, ...) of an exam with several ordered items of the modality.

    One item: every series goes to it unless its region clearly says otherwise. Several: the
    series are grouped into table stations by the z of their image centres; a station's
    region (labels, confidence-weighted) picks its items; stations and items that region
    cannot match pair up top to bottom when their numbers agree; the rest are placed one by
    one (a BodyPartExamined hint alone never decides: low confidence, noted).
    """
    with_z = [s for s in members if s.z]
    if len(cands) < 2 or not with_z:
        _assign_each(members, cands, put, drop)
        return
    stations: list[list[_Series]] = []
    for s in sorted(with_z, key=lambda x: -(sum(x.z) / len(x.z))):
        centre = sum(s.z) / len(s.z)
        if stations:
            last = stations[-1]
            last_centre = sum(sum(m.z) / len(m.z) for m in last) / len(last)
            if abs(last_centre - centre) <= STATION_GAP_MM:
                last.append(s)
                continue
        stations.append([s])
    owner: dict[int, list[int]] = {}
    for k, st in enumerate(stations):
        votes: dict[str, float] = {}
        for m in st:
            if m.region and m.region_conf >= 0.5:
                votes[m.region] = votes.get(m.region, 0.0) + m.region_conf
        if votes:
            reg = max(votes, key=lambda r: votes[r])
            owner[k] = [it.index for it in cands if regions_compatible(it.region, reg)]
    claimed = {i for v in owner.values() for i in v}
    ordered = sorted(cands, key=lambda it: it.z_order)
    if len(stations) == len(cands) and (len(claimed) < len(cands) or any(not owner.get(k) for k in range(len(stations)))):
        owner = {k: [it.index] for k, it in enumerate(ordered)}
        how = "z_order"
    else:
        how = "region"
    for k, st in enumerate(stations):
        idxs = owner.get(k) or []
        if not idxs:
            _assign_each(st, cands, put, drop)
            continue
        for m in st:
            for idx in idxs:
                put(idx, _entry(m, f"station_{how}", 0.8 if how == "region" else 0.65))
    _assign_each([s for s in members if not s.z], cands, put, drop)


def _same_acquisition(s: _Series, acquisitions: Sequence[tuple[_Cluster, list[int]]]
                      ) -> tuple[_Cluster, list[int]] | None:
    """The CT acquisition a derived series without source reference lies in (z overlap)."""
    zr = s.z_range
    if zr is None or _modality_group(s.label.modality) != "CT":
        return None
    best = max(((_overlap((c.lo, c.hi), zr), (c, idxs)) for c, idxs in acquisitions if idxs),
               key=lambda t: t[0], default=None)
    return best[1] if best is not None and best[0] >= 0.5 else None


def _no_order(series: Sequence[_Series]) -> dict[str, Any]:
    """No ordered item: the series grouped by region, explicitly flagged, nothing invented."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in series:
        key = s.region or "unknown"
        groups.setdefault(key, []).append(_entry(s, "region", s.region_conf))
    return {"version": SPLIT_VERSION, "standard_items": [], "unassigned": [], "mismatch": [], "no_order": True,
            "regions": [{"region": k, "series": v} for k, v in groups.items()]}


def _laterality_pick(s: _Series, fits: list[ItemInfo]) -> list[ItemInfo]:
    lat = str(getattr(s.header, "laterality", None) or "").upper()
    side = {"L": "左", "R": "右"}.get(lat)
    if side is None:
        return fits
    same = [it for it in fits if it.item.get("laterality") in (side, "双侧")]
    return same or fits


def _assign_each(members: Sequence[_Series], cands: Sequence[ItemInfo], put: Callable[[int, dict[str, Any]], None],
                 drop: Callable[..., None], by_suffix: str = "") -> None:
    """Series placed one by one by region (MR, DX, ...; or a derived series with no source)."""
    for s in members:
        fits = [it for it in cands if regions_compatible(it.region, s.region)]
        if len(cands) == 1 and (not fits) and s.region_conf < 0.6:
            put(cands[0].index, _entry(s, "single_item", 0.5, note=f"region {s.region or 'unknown'} unconfirmed"))
            continue
        if len(cands) > 1 and s.region_conf < 0.5:  # a BodyPartExamined hint alone never decides
            drop(s, "region_unknown", f"only a weak hint ({s.region or 'none'}, BodyPartExamined) for "
                                      f"{[c.code for c in cands]}")
            continue
        if not fits:
            drop(s, "region_unknown" if not s.region else "region_not_ordered",
                 f"{s.region or '?'} vs {[c.region for c in cands]}")
            continue
        fits = _laterality_pick(s, fits)
        if len(fits) > 1 and len({it.region for it in fits}) == 1 and len({it.item.get("laterality") for it in fits}) > 1:
            drop(s, "ambiguous_items", ", ".join(it.code for it in fits))
            continue
        for it in fits:
            put(it.index, _entry(s, "region" + (f" {by_suffix}" if by_suffix else ""), s.region_conf))


def _cluster_ct(members: Sequence[_Series]) -> tuple[list[_Cluster], list[_Series]]:
    """CT original axial series grouped into acquisitions by z overlap; the rest set aside."""
    clusters: list[_Cluster] = []
    loose: list[_Series] = []
    for s in sorted(members, key=lambda x: x.number):
        zr = s.z_range
        if zr is None or s.label.plane not in ("axial", None) or s.label.role != "original":
            loose.append(s)
            continue
        for c in clusters:
            if _overlap((c.lo, c.hi), zr) >= 0.5:
                c.add(s, zr)
                break
        else:
            c = _Cluster()
            c.add(s, zr)
            clusters.append(c)
    return clusters, loose


def ct_acquisitions(labels: Sequence[SeriesLabel], headers: Mapping[str, Any] | None = None,
                    slice_z: Mapping[str, Sequence[float]] | None = None) -> list[list[str]]:
    """The exam's CT acquisitions as lists of series uids (what the body-region scorer should
    see once per acquisition: callers score the longest member of each)."""
    headers = headers or {}
    slice_z = slice_z or {}
    members = [_Series(lab.series_uid, lab, headers.get(lab.series_uid),
                       [float(z) for z in (slice_z.get(lab.series_uid) or [])], lab.region, 0.0)
               for lab in labels if _modality_group(lab.modality) == "CT"]
    clusters, _ = _cluster_ct(members)
    return [[m.uid for m in c.members] for c in clusters]


def _cluster_body_regions(c: _Cluster, body_regions: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The body regions that describe this acquisition: its own scored member's, or the
    anatomy engine's exam-wide answer (same frame of reference) when it overlaps."""
    if not body_regions:
        return None
    uids = {m.uid for m in c.members}
    for acq in body_regions.get("acquisitions") or []:
        if isinstance(acq, Mapping) and acq.get("regions") and (
                acq.get("series_uid") in uids or uids & set(acq.get("acquisition") or ())):
            return dict(acq)
    if body_regions.get("regions"):
        return dict(body_regions)
    return None


def _zones(regions: Mapping[str, Any] | None, lo: float, hi: float) -> dict[str, float]:
    """Region -> mm of it inside [lo, hi] (each zone widened by half a slice gap is not needed:
    zone limits are slice centres, so a one-slice zone counts as 0 mm and never owns an item)."""
    out: dict[str, float] = {}
    for r in (regions or {}).get("regions") or []:
        try:
            name, zlo, zhi = str(r["region"]), float(r["z_min_mm"]), float(r["z_max_mm"])
        except (KeyError, TypeError, ValueError):
            continue
        inside = min(zhi, hi) - max(zlo, lo)
        if inside > 0:
            out[name] = out.get(name, 0.0) + inside
    return out


#: A body region inside an acquisition makes it image an ordered item of that region when
#: the region spans at least this share of the item's typical length (the chest slices at
#: the top of an abdomen scan, ~6 cm, do not make it a chest exam; a chest-abdomen-pelvis
#: scan's ~19 cm of pelvis do).
ZONE_OWNS_FRACTION = 0.5
#: Item regions a body-region zone can vouch for. A spine item is a targeted reconstruction of a
#: scan whose zones say chest / abdomen either way: zones never add one.
ZONE_REGIONS = ("head", "neck", "chest", "abdomen", "pelvis")
#: A zone this long (mm) of a missing item's region lets the length rule add the item even
#: when the scorer ran (its boundary can sit a few cm off; the length rule confirms).
ZONE_PRESENT_MM = 30.0
#: Mean region confidence of an acquisition's series above which their region (rather than
#: the body-region scorer's largest zone) names the acquisition's main region.
LABEL_REGION_SURE = 0.8


def _assign_ct(members: Sequence[_Series], cands: Sequence[ItemInfo], body_regions: Mapping[str, Any] | None,
               put: Callable[[int, dict[str, Any]], None], drop: Callable[..., None]) -> list[tuple[_Cluster, list[int]]]:
    """CT: acquisitions by z overlap, matched to items by region, long ones cut into slabs.

    Order of evidence: (1) the acquisition's main region (the series labels' region when
    they are sure, else the body-region scorer's largest zone) matches an item's region; (2) another body region inside it spans at least half
    an item's typical length (body-region items only, not spine), or the item lies between
    two items the acquisition images;
    (3) acquisitions and items pair up by z order when their numbers agree and the region
    evidence does not pair them one to one (or, otherwise, the unclaimed ones when their
    numbers agree); (4) an acquisition long enough to
    cover a neighbouring ordered part (typical lengths) takes it, when the scorer (if it ran)
    saw at least a few cm of that part's region. Returns each acquisition
    with its items.
    """
    clusters, loose = _cluster_ct(members)
    by_index = {it.index: it for it in cands}
    regions_of = [_cluster_body_regions(c, body_regions) for c in clusters]
    main: list[tuple[str | None, float, str]] = []
    for c, regs in zip(clusters, regions_of, strict=True):
        zones = _zones(regs, c.lo, c.hi)
        reg, conf = c.region()
        sure = sum(m.region_conf for m in c.members if m.region == reg) / max(1, len(c.members))
        if reg and sure >= LABEL_REGION_SURE:
            # the classifier's series region (image + header models, trained per series) is
            # preferred: the body-region scorer reads small-FOV bone spine stacks poorly
            main.append((reg, sure, "label"))
        elif zones:
            top = max(zones, key=lambda k: zones[k])
            main.append((top, 0.9, "body_region"))
        else:
            main.append((reg, conf, "label"))
    cluster_items: dict[int, list[int]] = {}
    how: dict[tuple[int, int], str] = {}
    owned: set[int] = set()

    def own(ci: int, idx: int, by: str) -> None:
        if idx not in cluster_items.setdefault(ci, []):
            cluster_items[ci].append(idx)
            how[(ci, idx)] = by
        owned.add(idx)

    for ci, (reg, _conf, _src) in enumerate(main):  # (1)
        for it in cands:
            if regions_compatible(it.region, reg):
                own(ci, it.index, "region")
    for ci, c in enumerate(clusters):  # (2)
        zones = _zones(regions_of[ci], c.lo, c.hi)
        for it in cands:
            if it.index in owned or it.region not in ZONE_REGIONS:
                continue
            for name, mm in zones.items():
                if regions_compatible(it.region, name) and mm >= ZONE_OWNS_FRACTION * TYPICAL_LENGTH_MM.get(
                        it.region or "", 200.0):
                    own(ci, it.index, "body_region")
                    break
    ordered = sorted(cands, key=lambda x: x.z_order)
    for ci in range(len(clusters)):  # an item between two items of one acquisition lies in it
        zs = [by_index[i].z_order for i in cluster_items.get(ci, [])]
        for it in ordered:
            if it.index not in owned and len(zs) >= 2 and min(zs) < it.z_order < max(zs):
                own(ci, it.index, "between_items")
    claims = [i for v in cluster_items.values() for i in v]
    one_to_one = (len(claims) == len(set(claims)) == len(cands)
                  and all(len(cluster_items.get(ci, [])) == 1 for ci in range(len(clusters))))
    if len(clusters) == len(cands) > 1 and not one_to_one:
        # as many acquisitions as items but the regions do not pair them one to one (a lumbar
        # scan that looks like chest next to a thoracic one that looks like neck): separate
        # acquisitions never overlap in z, so they pair with the items top to bottom
        cluster_items.clear()
        owned.clear()
        for ci, it in zip(sorted(range(len(clusters)), key=lambda ci: -clusters[ci].hi), ordered, strict=True):
            own(ci, it.index, "z_order")
    free_c = sorted((ci for ci in range(len(clusters)) if not cluster_items.get(ci)), key=lambda ci: -clusters[ci].hi)
    free_i = sorted((it for it in cands if it.index not in owned), key=lambda it: it.z_order)
    if free_c and len(free_c) == len(free_i) and not any(main[ci][0] and main[ci][2] == "body_region"
                                                          for ci in free_c):  # (3)
        for ci, it in zip(free_c, free_i, strict=True):
            own(ci, it.index, "z_order")
    for it in ordered:  # (4)
        if it.index in owned:
            continue
        best: tuple[float, int] | None = None
        pos = ordered.index(it)
        for ci, c in enumerate(clusters):
            have = [by_index[i] for i in cluster_items.get(ci, [])]
            if not have:
                continue
            if regions_of[ci]:  # body regions seen: the item's region must be there too
                zones = _zones(regions_of[ci], c.lo, c.hi)
                if it.region not in ZONE_REGIONS or not any(
                        regions_compatible(it.region, n) and mm >= ZONE_PRESENT_MM for n, mm in zones.items()):
                    continue
            adjacent = any(n.index in cluster_items.get(ci, []) for n in ordered[max(0, pos - 1):pos + 2]
                           if n is not it)
            if not adjacent or min(abs(it.z_order - h.z_order) for h in have) > 60:
                continue
            need = sum(TYPICAL_LENGTH_MM.get(h.region or "", 200.0) for h in have + [it])
            if c.length >= COVER_FRACTION * need and (best is None or c.length / need > best[0]):
                best = (c.length / need, ci)
        if best is not None:
            own(best[1], it.index, "z_coverage")
    out: list[tuple[_Cluster, list[int]]] = []
    for ci, c in enumerate(clusters):
        idxs = sorted(set(cluster_items.get(ci, [])), key=lambda i: by_index[i].z_order)
        out.append((c, idxs))
        reg, conf, _src = main[ci]
        if not idxs:
            for s in c.members:
                drop(s, "region_unknown" if not reg else "region_not_ordered",
                     f"{reg or '?'} vs {[x.region for x in cands]}")
            continue
        if len(idxs) == 1:
            by = how.get((ci, idxs[0]), "region")
            for s in c.members:
                put(idxs[0], _entry(s, by, max(conf, s.region_conf) if by == "region" else 0.6))
            continue
        its = [by_index[i] for i in idxs]
        cuts, source = slab_boundaries(its, c.lo, c.hi, regions_of[ci])
        for s in c.members:
            _put_slabs(s, its, cuts, source, put)
    for s in loose:  # non-axial or no geometry: by region like the other modalities
        _assign_each([s], cands, put, drop)
    return out


def _put_slabs(s: _Series, its: Sequence[ItemInfo], cuts: Sequence[float], source: str,
               put: Callable[[int, dict[str, Any]], None]) -> None:
    if not s.z:
        for it in its:
            put(it.index, _entry(s, "acquisition_covers_items", BOUNDARY_CONFIDENCE[source] * 0.8,
                                 note="no slice positions: whole series under each item"))
        return
    for it, slab in zip(its, _slabs_for(s, cuts, source), strict=True):
        if slab is not None:
            put(it.index, _entry(s, f"slab_{source}", BOUNDARY_CONFIDENCE[source], slab=slab))
