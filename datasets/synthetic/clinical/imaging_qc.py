"""Image-QC defects to seed, and the expert result an exam with those defects should get.

:func:`draw_defects` picks :class:`~radqc.datasets.synthetic.spec.Defect` s for an exam from
``data/qc.yaml`` (dimension, value and parameters per spec.QC_DIMENSIONS).
:func:`expected_result` turns the defects the renderer *actually applied* into per-dimension
values, deductions with points and Chinese/English reasons, a score and a grade.

The scoring table is a documented PLACEHOLDER (``scoring.version``): issue 4 owns the real
scoring standards per exam item and will replace it.
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
    has_thin_or_lung: bool = True,
) -> list[Defect]:
    """Up to ``n`` defects on distinct dimensions that make sense for this exam."""
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
        row = rng.choices(options, weights=[d["weight"] for d in options], k=1)[0]
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


def expected_result(modality: str, applied: list[Defect] | list[dict[str, Any]]) -> dict[str, Any]:
    """The expert-style QC result for the defects actually applied to an exam's images."""
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
    return {
        "scoring_version": scoring["version"],
        "qc_class": qc_class,
        "dimensions": values,
        "deductions": deductions,
        "score": score,
        "grade": grade_for(qc_class, score),
        "grade_scale": "甲/乙/丙/丁" if qc_class == "DX" else "0-3",
    }
