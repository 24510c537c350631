"""The image-QC evaluator: truth vocabulary mapping, per-dimension and grade metrics.

The pipeline is replaced by runners that answer from the truth (perfect, or with chosen
errors), so these tests check the scoring itself and do not depend on the measures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from radqc.datasets.evaluation import registry
from radqc.datasets.evaluation.evaluators import image_qc as ev
from radqc.datasets.evaluation.harness import EvalReport
from radqc.pipelines.image_qc.types import VALUES


def _truth(qc_class: str, dims: dict[str, str], grade: Any, key: str = "E1") -> dict[str, Any]:
    return {"exam_key": key, "expected_qc": {"qc_class": qc_class, "dimensions": dims, "grade": grade, "score": 80.0}}


def test_every_generator_value_maps_into_the_public_vocabulary() -> None:
    from radqc.datasets.synthetic.spec import QC_DIMENSIONS

    for dim, values in QC_DIMENSIONS.items():
        for value in values:
            assert ev.truth_value(dim, value) in VALUES[dim], (dim, value)
    assert ev.truth_value("dose", "not_recorded") == "异常"
    assert ev.truth_value("sequences", "missing") == "不完整"
    assert ev.truth_value("range", "过小") == "过小"


def test_truth_case_maps_values_and_grade() -> None:
    case = ev.truth_case(_truth("CT", {"noise": "excess", "window": "ok", "range": "过大"}, 2))
    assert case is not None
    assert case.dimensions == {"noise": "异常", "window": "正常", "range": "过大"}
    assert case.grade == "2" and case.grade_scale == "CT/MR"
    assert ev.truth_case({"exam_key": "X"}) is None


def _scored(cases: Sequence[tuple[dict[str, Any], dict[str, Any] | None]]) -> EvalReport:
    scored = []
    for truth, result in cases:
        case = ev.truth_case(truth)
        assert case is not None
        scored.append(ev.Scored(case, result))
    return ev.score_cases(scored, EvalReport(stage="image-qc", n=0))


def test_perfect_predictions_score_one() -> None:
    report = _scored([
        (_truth("DX", {"range": "正常", "positioning": "不标准"}, "乙"),
         {"range": {"value": "正常"}, "positioning": {"value": "不标准"}, "grade": "乙"}),
        (_truth("CT", {"range": "过小", "noise": "ok"}, 3, "E2"),
         {"range": {"value": "过小"}, "noise": {"value": "正常"}, "grade": 3}),
        (_truth("MR", {"sequences": "missing"}, 1, "E3"), {"sequences": {"value": "不完整"}, "grade": "1"}),
        # combined with rule QC: the image-only grade is what the truth grades
        (_truth("CT", {"dose": "ok"}, 2, "E4"), {"dose": {"value": "正常"}, "grade": 0, "image_grade": 2}),
    ])
    assert report.n == 4
    assert report.rates["dim:range"].value == 1.0
    assert report.rates["grade_exact"].value == 1.0
    assert report.failures == []


def test_errors_lower_accuracy_recall_and_kappa() -> None:
    truths = [("DX", "甲"), ("DX", "乙"), ("DX", "丙"), ("DX", "丁"), ("CT", 3), ("CT", 0)]
    cases = []
    for i, (qc_class, grade) in enumerate(truths):
        truth = _truth(qc_class, {"noise": "excess" if i % 2 else "ok"}, grade, f"E{i}")
        # the predictor never sees excess noise and puts every radiograph one grade too high
        pred_grade: Any = {"甲": "甲", "乙": "甲", "丙": "乙", "丁": "丙"}.get(str(grade), grade)
        cases.append((truth, {"noise": {"value": "正常"}, "grade": pred_grade}))
    report = _scored(cases)
    noise = report.classifications["dim:noise"]
    assert report.rates["dim:noise"].value == pytest.approx(0.5)
    assert noise.per_class["异常"].recall == 0.0 and noise.per_class["正常"].recall == 1.0
    assert report.rates["grade_exact:DX"].value == pytest.approx(0.25)
    assert report.rates["grade_exact:CT/MR"].value == 1.0
    kappa = report.classifications["grade:all"].kappa
    assert kappa is not None and 0.0 < kappa < 1.0
    assert any("mismatches" in f for f in report.failures)


def test_not_assessable_and_failures_are_counted_as_wrong() -> None:
    report = _scored([
        (_truth("CT", {"dose": "ok"}, 3), {"dose": {"value": "无法评估", "reason": "no CTDIvol"}, "grade": 3}),
        (_truth("CT", {"dose": "ok"}, 3, "E2"), None),
    ])
    assert report.rates["dim:dose"].value == 0.0
    assert report.counts["dose:无法评估"] == 1
    assert report.counts["failed_exams"] == 1
    assert "无法评估" in report.classifications["dim:dose"].labels


def test_evaluate_folder_reads_a_generated_set(tmp_path: Path) -> None:
    """Over a real (tiny) generated QC set, a runner answering the truth scores 100%: the
    folder, records and truth plumbing is right; one answering all-normal scores lower."""
    from radqc.datasets.synthetic.generate import generate_set, iter_truth

    root = tmp_path / "set"
    generate_set(root, 4, 8299, "qc", "small")
    by_dir = {}
    for t in iter_truth(root):
        case = ev.truth_case(t, root)
        if case is not None:
            assert case.exam_dir is not None and case.exam_dir.is_dir()
            by_dir[case.exam_dir] = case
    assert by_dir
    seen_items: list[list[str]] = []

    def oracle(path: Path, exam_items: list[str] | None, item: str | None) -> list[dict[str, Any]]:
        case = by_dir[path]
        seen_items.append(list(exam_items or []))
        return [{**{d: {"value": v} for d, v in case.dimensions.items()}, "grade": case.grade}]

    report = ev.evaluate_folder(root, runner=oracle)
    assert report.n == len(by_dir)
    # the placeholder row compares with the old table a 0.1.4 truth keeps: it may differ
    assert all(r.value == 1.0 for k, r in report.rates.items() if k != "grade_exact_vs_placeholder")
    assert report.details["scoring_versions"] == {"item-standard": len(by_dir)}
    assert report.details["grade_attribution"]["misses"] == 0
    assert seen_items and all(seen_items)  # the order's items reach the pipeline

    def all_normal(path: Path, exam_items: list[str] | None, item: str | None) -> list[dict[str, Any]]:
        case = by_dir[path]
        normal = {"range": "正常", "positioning": "标准", "artifact": "无", "centring": "正常", "sequences": "完整"}
        return [{**{d: {"value": normal.get(d, "正常")} for d in case.dimensions}, "grade": "甲"}]

    worse = ev.evaluate_folder(root, runner=all_normal)
    defective = [c for c in by_dir.values() if c.defects]
    if defective:
        assert min(r.value or 0.0 for k, r in worse.rates.items() if k.startswith("dim:")) < 1.0


def test_registered_without_data() -> None:
    info = registry.get("image-qc")
    assert info.needs_data is False
    with pytest.raises(ValueError):
        ev.render_heldout(Path("unused"), 1, seed=7201)


@pytest.mark.parametrize("seed, worn", [(None, False), (9202, True), (9240, False)])
def test_heldout_seed_option_and_worn_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           seed: int | None, worn: bool) -> None:
    """``--seed`` picks the rendered held-out seed; the default is an unpublished one; a worn seed is said so."""
    from radqc.datasets.evaluation.harness import EvalContext

    rendered: list[int] = []

    def fake_render(out: Path, n: int, s: int = ev.DEFAULT_HELDOUT_SEED) -> Path:
        rendered.append(s)
        return out

    monkeypatch.setattr(ev, "render_heldout", fake_render)
    monkeypatch.setattr(ev, "evaluate_folder", lambda root, report=None, **_kw: report)
    report = ev.evaluate(EvalContext(data=tmp_path / "none", options={"cases": 1, "seed": seed}))
    expected = seed or ev.DEFAULT_HELDOUT_SEED
    assert rendered == [expected]
    assert ev.DEFAULT_HELDOUT_SEED not in ev.WORN_HELDOUT_SEEDS
    assert any(f"--seed {expected}" in n for n in report.notes)
    assert any("worn" in n for n in report.notes) is worn


def test_markdown_tables_carry_the_figures() -> None:
    report = _scored([
        (_truth("CT", {"noise": "excess"}, 2), {"noise": {"value": "异常"}, "grade": 2}),
        (_truth("CT", {"noise": "ok"}, 3, "E2"), {"noise": {"value": "无法评估"}, "grade": 3}),
    ])
    text = ev.markdown(report, "synthetic held-out")
    assert "| noise | 50.0% | 2 |" in text
    assert "异常 100.0% (1)" in text and "noise:无法评估 1" in text
    assert "| CT/MR | 100.0% | 2 |" in text


def test_grade_against_the_truth_rolled_up_under_the_standard() -> None:
    """With every dimension right, the standard roll-up of the truth equals the pipeline's own
    roll-up, even where the generator's placeholder points table grades differently."""
    normal = {"range": "正常", "artifact": "无", "noise": "ok", "dose": "ok"}
    defect = {**normal, "noise": "excess"}
    report = _scored([
        (_truth("CT", normal, 3), {"modality": "CT", "grade": 3, **{d: {"value": ev.truth_value(d, v)} for d, v in normal.items()}}),
        (_truth("CT", defect, 0, "E2"), {"modality": "CT", "grade": 0, **{d: {"value": ev.truth_value(d, v)} for d, v in defect.items()}}),
    ])
    assert report.rates["grade_exact_vs_standard"].denominator == 2
    assert report.rates["grade_exact_vs_standard"].numerator == 1  # all-normal -> 3 under any standard
    assert "grade_vs_standard:all" in report.classifications


def test_every_error_is_counted_beyond_the_failure_cap() -> None:
    cases = [(_truth("CT", {"noise": "ok"}, 3, f"E{i}"), {"noise": {"value": "异常"}, "grade": 3}) for i in range(60)]
    report = _scored(cases)
    assert report.details["errors"] == {"CT noise: 正常 -> 异常": 60}
    assert len(report.failures) == EvalReport.MAX_FAILURES
    assert "CT noise: 正常 -> 异常 (60)" in ev.markdown(report, "t")


def _with_items(truth: dict[str, Any], *codes: str) -> dict[str, Any]:
    truth["order"] = {"imaged_items": [{"code": c, "name_zh": f"项目{c}"} for c in codes]}
    return truth


def test_per_item_table_counts_combined_orders_for_each_item() -> None:
    """Accuracy per exam item (the tenders' unit): a combined order counts for each of its items;
    an item with too few exams is listed but not counted as shown."""
    ok = {"range": {"value": "正常"}, "noise": {"value": "正常"}, "grade": 3}
    wrong_range = {"range": {"value": "过大"}, "noise": {"value": "正常"}, "grade": 2}
    cases = []
    for i in range(ev.ITEM_MIN_EXAMS):
        cases.append((_with_items(_truth("CT", {"range": "正常", "noise": "ok"}, 3, f"A{i}"), "CT.CHEST.PLAIN"), ok))
        cases.append((_with_items(_truth("CT", {"range": "正常", "noise": "ok"}, 3, f"B{i}"), "CT.HEAD.PLAIN",
                                  "CT.CHEST.PLAIN"), wrong_range if i == 0 else ok))
    cases.append((_with_items(_truth("CT", {"range": "正常", "noise": "ok"}, 3, "C0"), "CT.NECK.PLAIN"), wrong_range))
    report = _scored(cases)
    rows = report.details["by_item"]
    chest, head, neck = rows["CT.CHEST.PLAIN"], rows["CT.HEAD.PLAIN"], rows["CT.NECK.PLAIN"]
    assert chest["exams"] == 2 * ev.ITEM_MIN_EXAMS and head["exams"] == ev.ITEM_MIN_EXAMS and neck["exams"] == 1
    assert chest["cells"] == 4 * ev.ITEM_MIN_EXAMS and chest["cells_right"] == 4 * ev.ITEM_MIN_EXAMS - 1
    assert head["grade_exact"] == pytest.approx(1 - 1 / ev.ITEM_MIN_EXAMS)
    assert neck["dimension_accuracy"] == 0.5 and neck["grade_exact"] == 0.0
    cov = ev.summary(report)["items"]
    assert (cov["items"], cov["items_shown"]) == (3, 2)  # the neck's single exam says nothing about the item
    # head: 1 of 5 grades wrong = 80% < 90%, so it is listed below the bar; chest's 1/10 is exactly 90%
    assert cov["below"] == ["CT.HEAD.PLAIN"] and cov["items_meeting"] == 1
    text = ev.markdown(report, "t")
    assert "| CT.NECK.PLAIN | 项目CT.NECK.PLAIN | CT | 1 | 50.0% | 0/1 | 0.0% | 0–79% |" in text


def test_per_item_intervals_separate_sampling_from_real_shortfalls() -> None:
    """Ten exams cannot show an item at 90%: the table carries each item's 95% grade interval,
    and the coverage says which items below the bar are below beyond sampling."""
    ok = {"range": {"value": "正常"}, "noise": {"value": "正常"}, "grade": 3}
    wrong = {"range": {"value": "过大"}, "noise": {"value": "正常"}, "grade": 2}
    cases = []
    for i in range(10):  # head: 8 of 10 grades right -> below the bar, but the interval reaches 90%
        cases.append((_with_items(_truth("CT", {"range": "正常", "noise": "ok"}, 3, f"H{i}"), "CT.HEAD.PLAIN"),
                      wrong if i < 2 else ok))
    for i in range(10):  # neck: 3 of 10 right -> below beyond doubt
        cases.append((_with_items(_truth("CT", {"range": "正常", "noise": "ok"}, 3, f"N{i}"), "CT.NECK.PLAIN"),
                      wrong if i < 7 else ok))
    for i in range(40):  # chest: 40 of 40 right -> meets the bar with confidence
        cases.append((_with_items(_truth("CT", {"range": "正常", "noise": "ok"}, 3, f"C{i}"), "CT.CHEST.PLAIN"), ok))
    report = _scored(cases)
    lo, hi = report.details["by_item"]["CT.HEAD.PLAIN"]["grade_exact_ci95"]
    assert lo < 0.8 < 0.9 < hi
    cov = ev.summary(report)["items"]
    assert cov["below"] == ["CT.HEAD.PLAIN", "CT.NECK.PLAIN"]
    assert cov["below_clearly"] == ["CT.NECK.PLAIN"]
    assert cov["meeting_with_confidence"] == ["CT.CHEST.PLAIN"]
    text = ev.markdown(report, "t")
    assert "| CT.CHEST.PLAIN | 项目CT.CHEST.PLAIN | CT | 40 | 100.0% | 40/40 | 100.0% | 91–100% |" in text
    assert "1 of the 2 items below the bar lie wholly under 90%" in text
    assert ev.exams_to_show(0.9, 0) == 35 and ev.exams_to_show(0.9, 1) > 35


def test_wilson_interval_matches_hand_values() -> None:
    from radqc.datasets.evaluation.metrics import Rate, wilson_interval
    lo, hi = wilson_interval(9, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.596, 0.982)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 0) is None and Rate(3, 4).interval() == wilson_interval(3, 4)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
