"""Grade-miss attribution in the image-QC evaluator, truth scoring versions, and the roll-up of
truth kinds that name their own standard check (L/R marker -> IQC-MARKER)."""

from __future__ import annotations

from typing import Any

from radqc.datasets.evaluation.evaluators import image_qc as ev
from radqc.datasets.evaluation.harness import EvalReport
from radqc.pipelines.image_qc.rollup import kind_check, score_values


def _truth(dims: dict[str, str], grade: str, defects: list[dict[str, Any]], key: str,
           version: str = "item-standard:DX-CHEST-PA", placeholder: str | None = None) -> dict[str, Any]:
    qc: dict[str, Any] = {"qc_class": "DX", "dimensions": dims, "grade": grade, "score": 0.0,
                          "scoring_version": version}
    if version.startswith("item-standard:"):
        qc["standard"] = version.split(":", 1)[1]
    if placeholder:
        qc["placeholder"] = {"grade": placeholder}
    return {"exam_key": key, "expected_qc": qc, "imaging": {"applied_defects": defects}}


NORMAL = {"range": "正常", "positioning": "标准", "artifact": "无", "centring": "正常", "noise": "ok", "sharpness": "ok"}


def _result(values: dict[str, str], deductions: list[dict[str, Any]], grade: str) -> dict[str, Any]:
    score = 100.0 - sum(float(d["points"]) for d in deductions if d["dimension"] in values)
    return {**{d: {"value": v} for d, v in values.items()}, "standard": "DX-CHEST-PA", "modality": "DX",
            "grade": grade, "deductions": deductions, "image_score": score, "total": 100.0,
            "thresholds": {"甲": 90, "乙": 75, "丙": 60, "丁": 0}}


def _row(dim: str, check: str, points: float) -> dict[str, Any]:
    return {"dimension": dim, "check_id": check, "points": points, "scope": "standard", "source": "image_qc"}


def test_marker_kind_rolls_up_under_iqc_marker() -> None:
    assert kind_check("positioning", "marker_missing") == "IQC-MARKER" and kind_check("positioning", "rotation") is None
    out = score_values({"positioning": ("不标准", "marker_missing")}, "DX-CHEST-PA", "DX")
    assert out["score"] == 95.0 and out["deductions"][0]["check_id"] == "IQC-MARKER"
    # a standard without IQC-MARKER: the dimension's next listed check (CT has neither: not scored)
    rot = score_values({"positioning": ("不标准", "rotation")}, "DX-CHEST-PA", "DX")
    assert rot["score"] == 90.0 and rot["deductions"][0]["check_id"] == "IQC-POSITION"


def test_grade_misses_are_attributed_to_the_dimensions_whose_points_differ() -> None:
    cases = [
        # 1: range 过小 missed (value) -> truth 85 乙, pipeline 100 甲
        (_truth({**NORMAL, "range": "过小"}, "乙", [{"dimension": "range", "value": "过小", "params": {"kind": "costophrenic_cutoff"}}],
                "E1", placeholder="乙"),
         _result(NORMAL, [], "甲")),
        # 2: same value, other points: truth scapulae (half of 10) + artifact 异物 5 + range 15 = 75 乙;
        #    the pipeline's scapula finding without a kind costs 10 -> 70 丙
        (_truth({**NORMAL, "range": "过小", "positioning": "不标准", "artifact": "异物"}, "乙",
                [{"dimension": "positioning", "value": "不标准", "params": {"kind": "scapula_over_lung"}},
                 {"dimension": "range", "value": "过小", "params": {"kind": "costophrenic_cutoff"}},
                 {"dimension": "artifact", "value": "异物", "params": {"kind": "foreign_object"}}], "E2"),
         _result({**NORMAL, "range": "过小", "positioning": "不标准", "artifact": "异物"},
                 [_row("range", "IQC-RANGE", 15), _row("positioning", "IQC-POSITION", 10), _row("artifact", "IQC-ARTIFACT", 5)],
                 "丙")),
        # 3: a deduction on a dimension the truth does not state (radiograph dose) plus a missed blur
        (_truth({**NORMAL, "sharpness": "blur"}, "甲", [{"dimension": "sharpness", "value": "blur", "params": {"kind": "blur"}}],
                "E3", version="placeholder-2026.1"),
         _result({**NORMAL, "sharpness": "异常"}, [_row("sharpness", "IQC-SHARPNESS", 10), _row("dose", "IQC-EXPOSURE", 10)],
                 "乙")),
        # 4: agreement
        (_truth(NORMAL, "甲", [], "E4"), _result(NORMAL, [], "甲")),
    ]
    scored = []
    for truth, result in cases:
        case = ev.truth_case(truth)
        assert case is not None
        scored.append(ev.Scored(case, result))
    report = ev.score_cases(scored, EvalReport(stage="image-qc", n=0))
    misses = {m["exam"]: m["dimensions"] for m in report.details["grade_misses"]}
    assert set(misses) == {"E1", "E2", "E3"}
    assert misses["E1"] == {"range": {"points": -15.0, "truth": "过小", "pred": "正常", "cause": "value",
                                      "checks": {"IQC-RANGE": -15.0}}}
    assert misses["E2"] == {"positioning": {"points": 5.0, "truth": "不标准", "pred": "不标准", "cause": "points",
                                            "checks": {"IQC-POSITION": 5.0}}}
    assert misses["E3"] == {"dose": {"points": 10.0, "truth": None, "pred": "无法评估", "cause": "not_compared",
                                     "checks": {"IQC-EXPOSURE": 10.0}}}
    att = report.details["grade_attribution"]
    assert att["misses"] == 3 and att["by_class"] == {"DX": 3}
    assert att["by_dimension"]["range"]["alone"] == 1 and att["by_dimension"]["range"]["points_less"] == 15.0
    assert att["by_dimension"]["positioning"]["cause"] == {"points": 1}
    # correcting the one differing dimension turns each of these misses right (E3: 80 -> 90 甲)
    fixed = {m["exam"]: m["fixed_by"] for m in report.details["grade_misses"]}
    assert fixed == {"E1": ["range"], "E2": ["positioning"], "E3": ["dose"]}
    assert att["by_dimension"]["range"]["fixes"] == 1
    # scoring versions are counted, the placeholder row is kept where the truth has one
    assert report.details["scoring_versions"] == {"item-standard": 3, "placeholder-2026.1": 1}
    assert report.rates["grade_exact_vs_placeholder"].denominator == 1
    assert report.rates["grade_exact_vs_standard"].numerator == 1
    text = ev.markdown(report, "t")
    assert "| range | 1 | 1 | 1 | DX 1 | 1 / 0 / 0 / 0 | 0 / 15 |" in text
    assert "mixed: item-standard 3, placeholder-2026.1 1" in text and "placeholder table (kept" in text


def test_standard_differing_from_the_truths_is_counted() -> None:
    case = ev.truth_case(_truth(NORMAL, "甲", [], "E1"))
    assert case is not None
    other = {**_result(NORMAL, [], "甲"), "standard": "DX-CHEST-PALAT"}
    report = ev.score_cases([ev.Scored(case, other)], EvalReport(stage="image-qc", n=0))
    assert report.counts["standard_differs_from_truth"] == 1


def test_a_miss_that_no_single_dimension_explains() -> None:
    # truth: range 15 + positioning 10 + blur 10 = 65 丙; the pipeline sees only the blur: 90 甲.
    # Right range alone gives 75 乙, right positioning alone 80 乙: neither turns the grade right.
    truth = _truth({**NORMAL, "range": "过小", "positioning": "不标准", "sharpness": "blur"}, "丙",
                   [{"dimension": "range", "value": "过小", "params": {"kind": "costophrenic_cutoff"}},
                    {"dimension": "positioning", "value": "不标准", "params": {"kind": "rotation"}},
                    {"dimension": "sharpness", "value": "blur", "params": {"kind": "blur"}}], "E5")
    case = ev.truth_case(truth)
    assert case is not None
    result = _result({**NORMAL, "sharpness": "异常"}, [_row("sharpness", "IQC-SHARPNESS", 10)], "甲")
    report = ev.score_cases([ev.Scored(case, result)], EvalReport(stage="image-qc", n=0))
    (miss,) = report.details["grade_misses"]
    assert set(miss["dimensions"]) == {"range", "positioning"} and miss["fixed_by"] == []
    att = report.details["grade_attribution"]["by_dimension"]
    assert att["range"]["alone"] == 0 and att["range"]["fixes"] == 0 and att["positioning"]["misses"] == 1


def test_a_check_only_one_side_deducts_is_told_from_a_share() -> None:
    # truth: scapulae over the lungs (half of IQC-POSITION: 5) -> 95 甲; the pipeline also reads a
    # wrong L/R marker (IQC-MARKER 5) and gives the scapula finding no kind (10): 85 乙
    truth = _truth({**NORMAL, "positioning": "不标准"}, "甲",
                   [{"dimension": "positioning", "value": "不标准", "params": {"kind": "scapula_over_lung"}}], "E6")
    case = ev.truth_case(truth)
    assert case is not None
    result = _result({**NORMAL, "positioning": "不标准"},
                     [_row("positioning", "IQC-POSITION", 10), _row("positioning", "IQC-MARKER", 5)], "乙")
    report = ev.score_cases([ev.Scored(case, result)], EvalReport(stage="image-qc", n=0))
    (miss,) = report.details["grade_misses"]
    row = miss["dimensions"]["positioning"]
    assert row["cause"] == "check+points" and row["checks"] == {"IQC-MARKER": 5.0, "IQC-POSITION": 5.0}
    assert report.details["grade_attribution"]["by_dimension"]["positioning"]["cause"] == {"check": 1, "points": 1}


def test_grade_misses_against_the_generator_are_classed_by_cause() -> None:
    blur = [{"dimension": "sharpness", "value": "blur", "params": {"kind": "blur"}}]
    cases = [
        # detection: range 过小 missed
        (_truth({**NORMAL, "range": "过小"}, "乙", [{"dimension": "range", "value": "过小", "params": {}}], "D1"),
         _result(NORMAL, [], "甲")),
        # finding: the same values; the pipeline's extra IQC-MARKER finding costs 5 more -> 85 乙, truth
        # (scapulae 5 + overscan 5) 90 甲
        (_truth({**NORMAL, "positioning": "不标准", "range": "过大"}, "甲",
                [{"dimension": "positioning", "value": "不标准", "params": {"kind": "scapula_over_lung"}},
                 {"dimension": "range", "value": "过大", "params": {}}], "F1"),
         None),
        # truth_scoring: an item without a standard graded by the placeholder table (blur 15 -> 85 乙);
        # the same value under the pipeline's standard costs 10 -> 90 甲, the pipeline's grade
        (_truth({**NORMAL, "sharpness": "blur"}, "乙", blur, "T1", version="placeholder-2026.1"),
         _result({**NORMAL, "sharpness": "异常"}, [_row("sharpness", "IQC-SHARPNESS", 10)], "甲")),
        # failed: no result at all
        (_truth(NORMAL, "甲", [], "X1"), None),
        # agreement: not a miss
        (_truth(NORMAL, "甲", [], "A1"), _result(NORMAL, [], "甲")),
    ]
    f1_values = {**NORMAL, "positioning": "不标准", "range": "过大"}
    cases[1] = (cases[1][0], _result(f1_values, [_row("positioning", "IQC-POSITION", 5),
                                                 _row("positioning", "IQC-MARKER", 5),
                                                 _row("range", "IQC-RANGE", 5)], "乙"))
    scored = []
    for truth, result in cases:
        case = ev.truth_case(truth)
        assert case is not None
        scored.append(ev.Scored(case, result, None if result is not None else "boom"))
    report = ev.score_cases(scored, EvalReport(stage="image-qc", n=0))
    causes = report.details["grade_miss_causes"]
    assert {c: e["exams"] for c, e in causes.items()} == {"failed": ["X1"], "detection": ["D1"], "finding": ["F1"],
                                                          "truth_scoring": ["T1"]}
    assert list(causes) == ["failed", "detection", "finding", "truth_scoring"]  # worst first
    assert causes["detection"]["by_class"] == {"DX": 1}
    assert ev.summary(report)["grade_miss_causes"] == {"failed": 1, "detection": 1, "finding": 1, "truth_scoring": 1}
    assert "truth_scoring 1 (DX 1)" in ev.markdown(report, "t")
    # the class function alone
    assert ev.miss_cause(None, "甲", None) == "failed"
    assert ev.miss_cause("乙", "甲", {"noise": {"cause": "not_compared"}}) == "unscored_dimension"
    assert ev.miss_cause("乙", "甲", {}) == "unexplained"
