"""Metrics checked against hand-computed examples; the registry; ``radqc eval`` on a set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radqc.datasets.evaluation import metrics as mt
from radqc.datasets.evaluation import registry


# -- metrics -------------------------------------------------------------------------------
def test_confusion_matrix_and_per_class_scores_by_hand() -> None:
    truth = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    labels, matrix = mt.confusion_matrix(truth, pred)
    assert labels == ["a", "b", "c"]
    assert matrix == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    res = mt.classification("t", truth, pred)
    # a: P 2/2, R 2/3, F1 0.8; b: P 1/2, R 1/2, F1 0.5; c: P 1/2, R 1/1, F1 2/3
    assert res.per_class["a"].precision == 1.0 and res.per_class["a"].recall == pytest.approx(2 / 3)
    assert res.per_class["a"].f1 == pytest.approx(0.8)
    assert res.per_class["b"].f1 == pytest.approx(0.5)
    assert res.per_class["c"].f1 == pytest.approx(2 / 3)
    assert res.accuracy == pytest.approx(4 / 6) and res.n == 6
    assert res.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert res.kappa is None


def test_class_never_predicted_or_never_true() -> None:
    res = mt.classification("t", ["x", "x"], ["x", "y"], labels=["x", "y", "z"])
    assert res.per_class["y"].precision == 0.0 and res.per_class["y"].recall is None
    assert res.per_class["z"].precision is None and res.per_class["z"].f1 is None
    assert res.per_class["x"].f1 == pytest.approx(2 / 3)
    assert res.macro_f1 == pytest.approx(2 / 3)  # only classes with support count


def test_unweighted_kappa_from_a_known_matrix() -> None:
    # Classic 2x2 example: po = 0.7, pe = 0.5*0.6 + 0.5*0.4 = 0.5 -> kappa 0.4
    assert mt.kappa_from_matrix([[20, 5], [10, 15]]) == pytest.approx(0.4)
    # perfect agreement and agreement no better than chance
    assert mt.kappa_from_matrix([[5, 0], [0, 5]]) == pytest.approx(1.0)
    assert mt.kappa_from_matrix([[1, 1], [1, 1]]) == pytest.approx(0.0)
    assert mt.kappa_from_matrix([[4]]) is None and mt.kappa_from_matrix([[0, 0], [0, 0]]) is None


def test_weighted_kappa_by_hand() -> None:
    m = [[3, 1, 0], [1, 2, 1], [0, 1, 1]]  # n=10, rows 4,4,2 cols 4,4,2
    # linear weights 0, .5, 1: observed = (0.5*4 + 1*0)/10 = 0.2
    # expected = sum w_ij r_i c_j / n^2 = (0.5*(16+16+8+8) + 1*(8+8)) / 100 = 0.4 -> kappa 0.5
    assert mt.kappa_from_matrix(m, "linear") == pytest.approx(0.5)
    # quadratic weights 0, .25, 1: observed 0.1; expected (0.25*48 + 16)/100 = 0.28 -> 1 - 0.1/0.28
    assert mt.kappa_from_matrix(m, "quadratic") == pytest.approx(1 - 0.1 / 0.28)
    grades = ["甲", "乙", "丙", "丁"]
    res = mt.classification("grade", ["甲", "乙", "丙"], ["甲", "丙", "丙"], labels=grades, ordinal=True)
    assert res.kappa_weights == "quadratic" and res.kappa is not None and 0 < res.kappa < 1
    assert mt.cohen_kappa(["甲", "乙"], ["甲", "乙"], labels=grades, weights="linear") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mt.kappa_from_matrix(m, "cubic")


def test_dice_by_hand() -> None:
    import numpy as np

    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 voxels
    b[:2, :3] = True  # 6 voxels, overlap 4
    assert mt.dice(a, b) == pytest.approx(2 * 4 / 10)
    assert mt.dice(np.zeros(3, bool), np.zeros(3, bool)) is None
    t = np.array([[0, 1, 1], [2, 2, 0]])
    p = np.array([[0, 1, 0], [2, 2, 2]])
    d = mt.dice_per_structure(t, p, {"liver": 1, "spleen": 2, "kidney": 3})
    assert d["liver"] == pytest.approx(2 / 3) and d["spleen"] == pytest.approx(0.8) and d["kidney"] is None
    with pytest.raises(ValueError):
        mt.dice(np.zeros(3), np.zeros(4))


def test_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        mt.confusion_matrix([1, 2], [1])


# -- registry ------------------------------------------------------------------------------
def test_registry_offers_only_existing_stages() -> None:
    names = [e.name for e in registry.available()]
    assert "ingest" in names and "records" in names
    with pytest.raises(KeyError, match="available"):
        registry.get("segmentation")

    @registry.register("future_stage", "a stage whose code is not there", requires=("radqc.no_such_stage_module",))
    def _future(ctx):  # type: ignore[no-untyped-def]
        raise AssertionError("must not run")

    try:
        assert "future_stage" not in [e.name for e in registry.available()]
        with pytest.raises(KeyError):
            registry.get("future_stage")
    finally:
        registry._REGISTRY.pop("future_stage", None)


# -- evaluators on a generated set ------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radqc.datasets.synthetic.generate import generate_set
    from tests.synth_stub import stub_render

    out = tmp_path_factory.mktemp("evalset") / "set"
    generate_set(out, 40, seed=5, profile_name="mixed", renderer=stub_render)
    return out


def test_eval_ingest_and_records_on_a_generated_set(labelled_set: Path, workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.datasets.evaluation.harness import run_evaluation
    from radqc.datasets.synthetic.generate import load_manifest

    manifest = load_manifest(labelled_set)
    report = run_evaluation("ingest", labelled_set, options={"workers": 1}, workspace_factory=lambda: workspace)
    d = report.to_dict()
    assert d["rates"]["instances_catalogued"]["value"] == 1.0
    assert d["rates"]["exams_complete"]["value"] == 1.0
    assert d["rates"]["accession_match"]["value"] == 1.0
    assert d["rates"]["hospital_code_match"]["value"] == 1.0
    n_bad = len(manifest["malformed_files"])
    assert d["rates"]["malformed_quarantined"]["denominator"] == n_bad
    if n_bad:
        assert d["rates"]["malformed_quarantined"]["value"] == 1.0
    fo = d["classifications"]["file_outcome"]
    assert fo["n"] == report.n == manifest["counts"]["files"] + n_bad
    assert fo["per_class"]["missing"]["predicted"] == 0


def test_eval_records_reports_linkage(labelled_set: Path, workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.datasets.evaluation.harness import run_evaluation
    from radqc.datasets.synthetic.generate import load_manifest

    manifest = load_manifest(labelled_set)
    d = run_evaluation("records", labelled_set, options={"workers": 1}, workspace_factory=lambda: workspace).to_dict()
    assert d["rates"]["accession_linkage"]["value"] == 1.0
    assert d["rates"]["charge_linkage"]["value"] == 1.0
    assert d["rates"]["exam_items_kept_as_written"]["value"] == 1.0
    assert d["rates"]["valid_accepted"]["value"] == 1.0
    assert d["rates"]["malformed_quarantined"]["denominator"] == len(manifest["malformed_records"])
    ro = d["classifications"]["record_outcome"]
    assert ro["accuracy"] == 1.0


def test_eval_detects_a_dropped_record(labelled_set: Path, tmp_path: Path, workspace) -> None:  # type: ignore[no-untyped-def]
    """The evaluator is not a rubber stamp: remove one record and linkage drops below 1."""
    import shutil

    from radqc.datasets.evaluation.harness import run_evaluation

    copy = tmp_path / "copy"
    shutil.copytree(labelled_set, copy)
    path = copy / "records/exams.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    first = json.loads(lines[0])
    lines[0] = "\n"  # the line is gone (a blank line keeps the other line numbers)
    path.write_text("".join(lines), encoding="utf-8")
    d = run_evaluation("records", copy, options={"workers": 1}, workspace_factory=lambda: workspace).to_dict()
    rate = d["rates"]["accession_linkage"]
    assert rate["numerator"] == rate["denominator"] - 1
    assert any(f["kind"] == "record_missing" and f["accession"] == first["accession_number"] for f in d["failures"])


def test_cli_eval_list_and_json(labelled_set: Path) -> None:
    from typer.testing import CliRunner

    from radqc.cli.main import app

    runner = CliRunner()
    listed = runner.invoke(app, ["eval", "--list", "--json"])
    assert listed.exit_code == 0
    assert {"ingest", "records"} <= {row["stage"] for row in json.loads(listed.stdout)}
    unknown = runner.invoke(app, ["eval", "segmentation", "--data", str(labelled_set)])
    assert unknown.exit_code == 2
    result = runner.invoke(app, ["eval", "ingest", "--data", str(labelled_set), "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stage"] == "ingest" and data["rates"]["instances_catalogued"]["value"] == 1.0


def test_failures_past_the_cap_are_still_counted() -> None:
    # a reader comparing two runs' failure lists must know where each list stops
    from radqc.datasets.evaluation.harness import EvalReport

    report = EvalReport(stage="x", n=0)
    for i in range(report.MAX_FAILURES + 7):
        report.fail(case=i)
    d = report.to_dict()
    assert len(d["failures"]) == report.MAX_FAILURES
    assert d["failures_total"] == report.MAX_FAILURES + 7
    assert d["failures"][-1]["case"] == report.MAX_FAILURES - 1
