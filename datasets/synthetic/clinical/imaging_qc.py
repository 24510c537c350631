"""Image-QC defects to seed, and the expert result an exam with those defects should get.

:func:`draw_defects` picks :class:`~radqc.datasets.synthetic.spec.Defect` s for an exam from
``data/qc.yaml`` (dimension, value and parameters per spec.QC_DIMENSIONS).
:func:`expected_result` turns the defects the renderer *actually applied* into per-dimension
values, deductions with points and Chinese/English reasons, a score and a grade.

Points and grade come from the exam item's scoring standard (qc_rules/standards, issue 4),
applied by :func:`radqc.pipelines.image_qc.rollup.rollup` — the same code, check ids and value
shares ``radqc qc`` grades its findings with — so the truth grade is what an expert applying the
item's standard gives, and grade agreement measures detection, not two points tables. The item's
standard is found from the order's item names exactly as the pipeline finds it
(:func:`radqc.pipelines.image_qc.exam.resolve_standard`). Only an exam whose item has no standard
(or a caller that gives no items) is scored with the old points table in ``data/qc.yaml``
(``scoring_version`` says which: ``item-standard:<code>`` or ``placeholder-2026.1``).
"""

from __future__ import annotations

import random
from typing import Any

from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.spec import QC_DIMENSIONS, Defect

#: The QC class of a modality: radiographs are graded 甲/乙/丙/丁, CT and MR 0–3.
QC_CLASS = {"DX": "DX", "CR": "DX", "CT": "CT", "MR": "MR"}


def _draw_param(rng: random.Random, value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        lo, hi = value
        if isinstance(lo, int) and isinstance(hi, int):
            return rng.randint(lo, hi)
        return round(rng.uniform(lo, hi), 2)
    if isinstance(value, list):
        return rng.choice(value)
    return value


def _region_params(rng: random.Random, qc_class: str, params: dict[str, Any], regions: list[str],
                   required: list[str]) -> dict[str, Any] | None:
    data = load("qc")
    out = dict(params)
    if out.get("missing") == "by_region":
        if qc_class == "DX":
            region = rng.choice([r for r in regions if r in data["dx_landmarks"]] or [None])
            if region is None:
                return None
            out["missing"] = [rng.choice(data["dx_landmarks"][region])]
            out["region"] = region
        else:
            # A combined acquisition loses anatomy at its top or bottom end only.
            end = rng.choice(("top", "bottom"))
            region = regions[0] if end == "top" else regions[-1]
            out["missing"] = [data["landmarks"][region][end]]
            out["end"] = end
            out["region"] = region
    if out.get("excess") == "by_region":
        ends = [("top", regions[0]), ("bottom", regions[-1])]
        ends = [(e, r) for e, r in ends if data["excess"].get(r, {}).get(e)]
        if not ends:
            return None
        end, region = rng.choice(ends)
        out["excess"] = [data["excess"][region][end]]
        out["end"] = end
        out["region"] = region
    if out.get("sequence") == "by_item":
        if not required:
            return None
        out["sequence"] = rng.choice(required)
    return out


def draw_defects(
    rng: random.Random, modality: str, regions: list[str], required_sequences: list[str], n: int,
    has_thin_or_lung: bool = True, dimension_weights: dict[str, float] | None = None,
) -> list[Defect]:
    """Up to ``n`` defects on distinct dimensions that make sense for this exam.

    ``dimension_weights`` scales the table's weights per dimension (a profile that trains one
    detector draws its defects more often); without it the draws are those of every earlier set."""
    scale = dimension_weights or {}
    qc_class = QC_CLASS[modality]
    pool = [d for d in load("qc")["defects"][qc_class]
            if (not d.get("regions") or set(d["regions"]) & set(regions))
            and not set(d.get("not_regions") or ()) & set(regions)]
    chosen: list[Defect] = []
    used: set[str] = set()
    for _ in range(n * 4):
        if len(chosen) >= n:
            break
        options = [d for d in pool if d["dimension"] not in used]
        if not options:
            break
        row = rng.choices(options, weights=[d["weight"] * scale.get(d["dimension"], 1) for d in options], k=1)[0]
        params = {k: _draw_param(rng, v) for k, v in row["params"].items() if v not in ("by_region", "by_item")}
        params.update({k: v for k, v in row["params"].items() if v in ("by_region", "by_item")})
        resolved = _region_params(rng, qc_class, params, regions, required_sequences)
        if resolved is None:
            continue
        params = resolved
        assert row["value"] in QC_DIMENSIONS[row["dimension"]], row
        chosen.append(Defect(row["dimension"], row["value"], params))
        used.add(row["dimension"])
    return chosen


def _fmt(template: str, params: dict[str, Any], value: str) -> str:
    values = {k: ("、".join(map(str, v)) if isinstance(v, list) else v) for k, v in params.items()}
    values.setdefault("value", value)

    class _Safe(dict):
        def __missing__(self, key: str) -> str:
            return "?"

    return template.format_map(_Safe(values))


def _reason(dimension: str, value: str, params: dict[str, Any]) -> tuple[str, str]:
    table = load("qc")["scoring"]["reasons"].get(dimension, {})
    # Quote what the renderer measured on its pixels when it did, not what was planned.
    measured = params.get("measured_offset_mm", params.get("offset_mm"))
    if isinstance(measured, (int, float)):
        params = {**params, "offset_mm": int(round(abs(float(measured))))}
    kind = params.get("kind")
    row = table.get(kind) if isinstance(kind, str) and kind in table else table.get(value) or table.get("default")
    if not row:
        return f"{dimension}: {value}", f"{dimension}: {value}"
    return _fmt(row[0], params, value), _fmt(row[1], params, value)


def _points(dimension: str, value: str, params: dict[str, Any]) -> int:
    table = load("qc")["scoring"]["points"][dimension]
    kind = params.get("kind")
    if isinstance(table.get("kind"), dict) and kind in table["kind"]:
        return int(table["kind"][kind])
    if dimension == "centring" and float(params.get("offset_fraction", 0) or 0) >= 0.15:
        return int(table["large"])
    return int(table.get(value, 0))


def grade_for(qc_class: str, score: float) -> str | int:
    for threshold, grade in load("qc")["scoring"]["grades"][qc_class]:
        if score >= threshold:
            return grade
    return load("qc")["scoring"]["grades"][qc_class][-1][1]


def public_value(dimension: str, value: str) -> str:
    """A generator value in the public ``radqc qc`` vocabulary (qc.yaml ``scoring.public_values``)."""
    return str((load("qc")["scoring"].get("public_values") or {}).get(dimension, {}).get(value, value))


def item_standard(modality: str, exam_items: list[str] | None) -> str | None:
    """The scoring-standard code of the order's items, resolved as the pipeline resolves it.

    None when the items name no standard (or one of another modality), or when the scoring
    standards cannot be loaded: the caller then falls back to the points table."""
    if not exam_items:
        return None
    try:
        from radqc.pipelines.image_qc.exam import resolve_standard
    except ImportError:  # pragma: no cover - the pipeline ships with the generator
        return None
    return resolve_standard(modality, [str(i) for i in exam_items], (), "records").code


def _as_tuple(d: Defect | dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    if isinstance(d, Defect):
        return d.dimension, d.value, dict(d.params)
    return str(d["dimension"]), str(d["value"]), dict(d.get("params") or {})


def _standard_scoring(code: str, modality: str, values: dict[str, str],
                      applied: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """Score, grade and deductions of the truth values under the item standard ``code``.

    Each dimension is one :class:`DimensionResult` whose ``details.kind`` is the kind of the
    defect that set its value (the shares refine by kind, e.g. scapulae over the lungs) and whose
    findings carry the generator's bilingual reasons; the roll-up then makes one deduction per
    standard check with the item's points, exactly as for the pipeline's findings."""
    from radqc.pipelines.image_qc.rollup import rollup
    from radqc.pipelines.image_qc.types import DimensionResult, Finding

    by_dim: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for dim, value, params in applied:
        by_dim.setdefault(dim, []).append((value, params))
    dims: dict[str, DimensionResult] = {}
    for dim, value in values.items():
        defects = by_dim.get(dim, [])
        worst = next((p for v, p in defects if v == value), defects[0][1] if defects else {})
        kind = worst.get("kind")
        findings = []
        for v, p in defects:
            zh, en = _reason(dim, v, p)
            findings.append(Finding(check_id="", dimension=dim, value=public_value(dim, v), points=0.0,
                                    reason_zh=zh, reason_en=en))
        dims[dim] = DimensionResult(value=public_value(dim, value), findings=findings,
                                    details={"kind": kind} if isinstance(kind, str) else {})
    res = rollup(dims, code, modality)
    deductions = []
    for row in res["deductions"] + res["not_scored"]:
        dim = str(row["dimension"])
        params = next((p for v, p in by_dim.get(dim, []) if public_value(dim, v) == row["value"]),
                      by_dim.get(dim, [("", {})])[0][1])
        deductions.append({"dimension": dim, "value": values.get(dim, row["value"]),
                           "points": row["points"] if row["scope"] != "not_scored" else 0,
                           "reason_zh": row["reason_zh"], "reason_en": row["reason_en"], "params": params,
                           "check_id": row["check_id"], "scope": row["scope"]})
    return {"score": res["score"], "grade": res["grade"], "total": res["total"], "deductions": deductions}


def expected_result(modality: str, applied: list[Defect] | list[dict[str, Any]],
                    exam_items: list[str] | None = None) -> dict[str, Any]:
    """The expert-style QC result for the defects actually applied to an exam's images.

    ``exam_items``: the order's item names; their scoring standard grades the exam. Without
    items, or when they name no standard, the fallback points table does (``scoring_version``)."""
    scoring = load("qc")["scoring"]
    qc_class = QC_CLASS[modality]
    dims = list(scoring["dimensions"][qc_class])
    values: dict[str, str] = {d: scoring["normal"][d] for d in dims}
    deductions = []
    total = float(scoring["total"])
    for d in applied:
        dim, value, params = (d.dimension, d.value, d.params) if isinstance(d, Defect) else (d["dimension"], d["value"], d.get("params", {}))
        if dim not in values:
            # Applied but not scored for this class (e.g. positioning on CT): keep the
            # dimension visible with its value, without points.
            values[dim] = value
            continue
        order = scoring.get("severity", {}).get(dim)
        if order and values[dim] in order and value in order:
            if order.index(value) > order.index(values[dim]):
                values[dim] = value
        elif values[dim] == scoring["normal"][dim]:
            values[dim] = value
        points = _points(dim, value, params)
        zh, en = _reason(dim, value, params)
        deductions.append({"dimension": dim, "value": value, "points": points, "reason_zh": zh, "reason_en": en,
                           "params": params})
        total -= points
    score = max(0.0, total)
    out: dict[str, Any] = {
        "scoring_version": scoring["version"],
        "qc_class": qc_class,
        "dimensions": values,
        "deductions": deductions,
        "score": score,
        "grade": grade_for(qc_class, score),
        "grade_scale": "甲/乙/丙/丁" if qc_class == "DX" else "0-3",
    }
    if exam_items is None:
        return out
    code = item_standard(modality, exam_items)
    out["standard"] = code
    if code is None:
        return out
    std = _standard_scoring(code, modality, values, [_as_tuple(d) for d in applied])
    # the fallback table's figures stay visible for comparison with sets made before 0.1.4
    out["placeholder"] = {"version": scoring["version"], "score": score, "grade": out["grade"]}
    out.update(scoring_version=f"{scoring.get('standard_version_prefix', 'item-standard:')}{code}",
               deductions=std["deductions"], score=std["score"], grade=std["grade"], total=std["total"])
    return out
