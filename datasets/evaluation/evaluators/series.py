"""``radqc eval series``: series categories and the combined-exam split against the generator's truth.

Runs the very code ``radqc series PATH`` runs (:func:`radqc.pipelines.series.run.analyse_exam`)
on a generated set. The ordered items are given from the order's truth
(``order.items[*].standard_items``) so the split is measured apart from item normalisation
(``radqc eval items`` measures that). Without ``--data`` it renders its own cases from seeds
no training or tuning ever used (9301 mixed, 9302 MR; ``--quick``: a handful of each).

Figures (``rates``; series whose truth lacks the generator's per-series facts — exams that
reuse another exam's pixels — are counted in ``counts`` and not scored, as in the
``series_header`` evaluation):

* ``category``: the predicted category code equals ``category_code(expected_label(...))``;
* ``field.<name>``: per label field (role, derived_type, plane, sequence, phase, kernel_class,
  thickness_class, view, region);
* ``mr_sequence`` per MR series; ``mr_sequence_set``: per MR exam, the set of sequences equals
  the truth's;
* ``description_wrong.category``: category accuracy on series whose SeriesDescription the
  generator made wrong, ``description_wrong.overruled``: how often the label says the
  description was overruled there;
* ``unknown``: share of series labelled ``unknown``;
* ``assignment.combined``: share of series of exams with several ordered items whose set of
  assigned items equals the truth's (acquisition -> imaged items; a dose report covers all);
  ``assignment.all`` over every exam; ``assignment.slab_slices``: share of slices of
  one-acquisition series that fall in the slab of the right item (truth: per-slice
  ``slice_regions``; a slice of a region no item covers, e.g. the neck above a chest scan,
  belongs to the nearest item).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from radqc.datasets.evaluation.harness import EvalContext, EvalReport
from radqc.datasets.evaluation.metrics import Rate
from radqc.datasets.evaluation.registry import register

log = logging.getLogger(__name__)

FIELDS = ("role", "derived_type", "plane", "sequence", "phase", "kernel_class", "thickness_class", "view", "region")
#: Self-rendered held-out seeds (never used for training, tuning or progress checks).
OWN_SETS = (("mixed", 9301), ("mr", 9302))
OWN_SIZES = {True: (10, 4), False: (120, 40)}


class _Counts:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.total: Counter[str] = Counter()

    def add(self, name: str, ok: bool) -> None:
        self.total[name] += 1
        self.hits[name] += int(bool(ok))

    def rates(self) -> dict[str, Rate]:
        return {k: Rate(self.hits[k], self.total[k]) for k in sorted(self.total)}


def _truth_items(truth: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ordered standard items, imaged items) of an exam's truth, as split input dicts."""
    order = truth.get("order") or {}
    ordered = []
    for it in order.get("items") or []:
        for si in it.get("standard_items") or []:
            ordered.append({"code": si.get("code"), "name": si.get("name_zh"), "modality": si.get("modality"),
                            "parts": [si["part"]] if si.get("part") else [], "method": si.get("method"),
                            "laterality": si.get("laterality"), "region": si.get("region")})
    return ordered, list(order.get("imaged_items") or [])


def _truth_assignment(truth: dict[str, Any], imaged: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Series uid -> the codes of the imaged items it belongs to (series whose region the truth
    does not record in a multi-item exam are left out and counted as ``truth_unknown``)."""
    from radqc.datasets.evaluation.series_truth import expected_label
    from radqc.pipelines.series.split import BODY_PART_REGION, regions_compatible

    series = truth["imaging"]["series"]
    modality = str(truth.get("spec", {}).get("modality") or "")
    if modality == "CT" and not any("acquisition" in (s.get("extra") or {}) for s in series):
        return _truth_assignment_without_extras(truth, imaged)
    acq_regions: dict[Any, set[str]] = {}
    for s in series:
        extra = s.get("extra") or {}
        if "acquisition" in extra and extra.get("regions"):
            acq_regions.setdefault(extra["acquisition"], set()).update(extra["regions"])
    codes = {str(i["code"]) for i in imaged}
    out: dict[str, set[str]] = {}
    for s in series:
        extra = s.get("extra") or {}
        uid = s["series_instance_uid"]
        if s.get("role") == "dose_report":
            out[uid] = set(codes)
        elif "acquisition" in extra and extra["acquisition"] in acq_regions:
            regs = acq_regions[extra["acquisition"]]
            out[uid] = {str(i["code"]) for i in imaged if i.get("region") in regs}
        elif len(imaged) == 1:
            out[uid] = set(codes)
        else:
            # where the slices lie (their regions) and what the generator rendered (its true body
            # part); a series where the two name different items (an MR "lumbar" station rendered
            # from the head phantom) or neither is known (pixel-reuse exams) is not scorable
            fits = []
            for region in (expected_label(s).get("region"),
                           BODY_PART_REGION.get(str(extra.get("body_part_true") or "").upper())):
                fits.append({str(i["code"]) for i in imaged
                             if region and (i.get("region") == region or regions_compatible(i.get("region"), region))})
            if fits[0] and fits[1] and fits[0] != fits[1]:
                continue
            if not (fits[0] or fits[1]):
                continue
            out[uid] = fits[0] or fits[1]
            continue
        if not out[uid] and modality:
            out[uid] = set(codes) if len(codes) == 1 else set()
    return out


def _truth_assignment_without_extras(truth: dict[str, Any], imaged: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Some generated exams (pixel-reuse evidence) carry no per-series acquisition facts: one
    acquisition covers every item; separate acquisitions are the runs that start at each
    localizer, imaging the spec's regions in order; derived series follow ``derived_from``."""
    from collections import Counter as _C

    from radqc.pipelines.series.split import regions_compatible

    series = truth["imaging"]["series"]
    codes = {str(i["code"]) for i in imaged}
    if (truth.get("spec") or {}).get("acquisition") == "one_acquisition" or len(imaged) <= 1:
        return {s["series_instance_uid"]: set(codes) for s in series}
    spec_regions = list((truth.get("spec") or {}).get("regions") or [])
    group_of: dict[str, int] = {}
    regions: dict[int, _C[str]] = {}
    g = -1
    seen_axial = True
    for s in series:
        role = str(s.get("role") or "")
        if role == "dose_report":
            continue
        if role == "localizer" and seen_axial:
            g, seen_axial = g + 1, False
        if s.get("derived_from") in group_of:
            group_of[s["series_instance_uid"]] = group_of[s["derived_from"]]
            continue
        g = max(g, 0)
        group_of[s["series_instance_uid"]] = g
        if role.startswith("axial_"):
            seen_axial = True
            regions.setdefault(g, _C()).update(s.get("slice_regions") or [])
    out: dict[str, set[str]] = {}
    for s in series:
        uid = s["series_instance_uid"]
        if uid not in group_of:
            out[uid] = set(codes)
            continue
        g = group_of[uid]
        common = regions.get(g)
        region = spec_regions[g] if g < len(spec_regions) else (common.most_common(1)[0][0] if common else None)
        out[uid] = {str(i["code"]) for i in imaged
                    if i.get("region") == region or regions_compatible(i.get("region"), region)}
    return out


def _slice_items(regions: list[str], imaged: list[dict[str, Any]]) -> list[str | None]:
    """Truth item per slice: the item of its region, else the nearest slice's item."""
    by_region: dict[str, str] = {}
    for i in imaged:
        by_region.setdefault(str(i.get("region")), str(i["code"]))
    direct = [by_region.get(r) for r in regions]
    out: list[str | None] = []
    for k, code in enumerate(direct):
        if code is not None:
            out.append(code)
            continue
        near = [(abs(j - k), c) for j, c in enumerate(direct) if c is not None]
        out.append(min(near)[1] if near else None)
    return out


def evaluate_exam(exam_dir: Path, truth: dict[str, Any], counts: _Counts, report: EvalReport,
                  image_model: bool = True) -> None:
    """Analyse one generated exam folder and count every figure against its truth."""
    from radqc.datasets.evaluation.series_truth import expected_label
    from radqc.pipelines.series.categories import category_code
    from radqc.pipelines.series.run import analyse_exam, scan

    exams, _bad = scan(exam_dir)
    ordered, imaged = _truth_items(truth)
    truth_series = {s["series_instance_uid"]: s for s in truth["imaging"]["series"]}
    key = truth.get("exam_key")
    for exam in exams:
        res = analyse_exam(exam, ordered_items=ordered, image_model=image_model)
        rows = {r["series_uid"]: r for r in res["series"]}
        mr_pred: set[str] = set()
        mr_true: set[str] = set()
        for uid, ts in truth_series.items():
            row = rows.get(uid)
            if row is None:
                continue
            if "description_true" not in (ts.get("extra") or {}):
                # exams that reuse another exam's pixels keep no per-series generator facts (the
                # same rule as the series_header evaluation): not scored, counted
                counts.total["series.truth_incomplete"] += 1
                continue
            exp = expected_label(ts)
            modality = str(ts.get("modality") or "")
            want = category_code(exp, modality)
            ok = row.get("category") == want
            counts.add("category", ok)
            counts.add(f"category.{modality}", ok)
            if not ok:
                report.fail(exam=key, series=uid, description=ts.get("description"), role=ts.get("role"),
                            expected=want, predicted=row.get("category"))
            for f in FIELDS:
                if f == "region" and exp.get(f) is None:
                    continue
                counts.add(f"field.{f}", row.get(f) == exp.get(f))
            counts.add("unknown", row.get("role") == "unknown" or row.get("category") is None)
            if modality == "MR":
                counts.add("mr_sequence", row.get("sequence") == exp.get("sequence"))
                if exp.get("sequence"):
                    mr_true.add(str(exp["sequence"]))
                if row.get("sequence"):
                    mr_pred.add(str(row["sequence"]))
            if (ts.get("extra") or {}).get("description_wrong"):
                counts.add("description_wrong.category", ok)
                counts.add("description_wrong.overruled", bool(row.get("description_overruled")))
        if mr_true:
            counts.add("mr_sequence_set", mr_pred == mr_true)
        _count_assignment(res, truth, ordered, imaged, exam, counts, report)


def _count_assignment(res: dict[str, Any], truth: dict[str, Any], ordered: list[dict[str, Any]],
                      imaged: list[dict[str, Any]], exam: Any, counts: _Counts, report: EvalReport) -> None:
    want = _truth_assignment(truth, imaged)
    got: dict[str, set[str]] = {}
    slabs: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for item in res.get("standard_items") or []:
        for e in item["series"]:
            got.setdefault(e["series_uid"], set()).add(str(item["code"]))
            if e.get("slab"):
                slabs.setdefault(e["series_uid"], []).append((str(item["code"]), e["slab"]))
    combined = len(ordered) > 1
    key = truth.get("exam_key")
    counts.total["assignment.truth_unknown"] += sum(1 for s in truth["imaging"]["series"]
                                                    if s["series_instance_uid"] not in want)
    for uid, codes in want.items():
        ok = got.get(uid, set()) == codes
        counts.add("assignment.all", ok)
        if combined:
            counts.add("assignment.combined", ok)
            if not ok:
                report.fail(exam=key, series=uid, kind="assignment", expected=sorted(codes),
                            predicted=sorted(got.get(uid, set())))
    if (truth.get("spec") or {}).get("acquisition") != "one_acquisition":
        return
    for ts in truth["imaging"]["series"]:
        regions = ts.get("slice_regions") or []
        uid = ts["series_instance_uid"]
        members = exam.series.get(uid) or []
        if not regions or len(regions) != len(members) or not str(ts.get("role", "")).startswith("axial_"):
            continue
        names = [Path(f).name for f in ts.get("files") or []]
        z_by_name = {}
        for path, ds in members:
            pos = ds.get("ImagePositionPatient", None)
            if pos is not None:
                z_by_name[path.name] = float(pos[2])
        truth_items = _slice_items(list(regions), imaged)
        for name, code in zip(names, truth_items, strict=False):
            z = z_by_name.get(name)
            if z is None or code is None:
                continue
            pred = [c for c, slab in slabs.get(uid, []) if slab["z_from_mm"] - 1e-3 <= z <= slab["z_to_mm"] + 1e-3]
            if not slabs.get(uid):
                pred = sorted(got.get(uid, set()))
            counts.add("assignment.slab_slices", pred == [code])


def _exam_dirs(root: Path) -> dict[str, Path]:
    out = {}
    for hospital in sorted((root / "dicom").iterdir()) if (root / "dicom").is_dir() else []:
        for exam in sorted(hospital.iterdir()):
            if exam.is_dir():
                out[exam.name] = exam
    return out


def evaluate_set(root: Path, report: EvalReport, counts: _Counts, *, limit: int | None = None,
                 image_model: bool = True) -> int:
    """Every exam of one generated set (``radqc synth`` layout); returns how many were evaluated."""
    import json

    dirs = _exam_dirs(root)
    n = 0
    for truth_file in sorted((root / "truth").glob("*.json")):
        truth = json.loads(truth_file.read_text(encoding="utf-8"))
        folder = dirs.get(str(truth.get("exam_key")))
        if folder is None or not (truth.get("imaging") or {}).get("series"):
            continue
        try:
            evaluate_exam(folder, truth, counts, report, image_model=image_model)
        except Exception as exc:  # noqa: BLE001 - one broken exam is a recorded failure, not the end
            log.exception("series eval failed on %s", folder)
            report.fail(exam=truth.get("exam_key"), error=f"{type(exc).__name__}: {exc}")
            counts.add("exam_errors", False)
        n += 1
        if limit and n >= limit:
            break
    return n


@register("series", "Series categories (per field, MR sequences, wrong descriptions) and combined-exam split",
          requires=("radqc.pipelines.series.classify",), needs_data=False)
def evaluate(ctx: EvalContext) -> EvalReport:
    quick = bool(ctx.options.get("quick"))
    image_model = not bool(ctx.options.get("no_image_model"))
    report = EvalReport(stage="series", n=0, unit="exam")
    counts = _Counts()
    data = ctx.data
    if (data / "manifest.json").is_file():
        report.n = evaluate_set(data, report, counts, limit=ctx.options.get("cases"), image_model=image_model)
        report.notes.append(f"set {data} (seed {ctx.manifest.get('seed', '?')})")
    else:
        from radqc.datasets.synthetic.generate import generate_set

        with tempfile.TemporaryDirectory(prefix="radqc-eval-series-") as tmp:
            for (profile, seed), n in zip(OWN_SETS, OWN_SIZES[quick], strict=True):
                out = Path(tmp) / profile
                generate_set(out, n, seed, profile)
                report.n += evaluate_set(out, report, counts, image_model=image_model)
                report.notes.append(f"rendered {n} {profile} exams, seed {seed} (held out)")
    for name in ("assignment.truth_unknown", "series.truth_incomplete"):
        report.counts[name] = counts.total.pop(name, 0)
        counts.hits.pop(name, None)
    report.rates.update(counts.rates())
    report.counts.update({f"series.{k}": v for k, v in counts.total.items() if k in ("category", "mr_sequence")})
    for name, target in (("category", 0.99), ("mr_sequence", 0.99), ("mr_sequence_set", 0.97),
                         ("assignment.combined", 0.98)):
        value = report.rates[name].value if name in report.rates else None
        report.notes.append(f"{name}: {'—' if value is None else f'{value:.4f}'} (target >= {target})")
    return report
