"""An ordered item the vocabulary knows but no scoring standard scores (CT knee): the CT
dimensions whose measures judge it from the part / the modality defaults keep their values
(rollup.yaml ``vocab_item_suffices``); an order nobody can read still makes every item-dependent
dimension 无法评估, and so does an item of another modality."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from radqc.pipelines.image_qc import rollup as rollup_mod
from radqc.pipelines.image_qc import run as run_mod
from radqc.pipelines.image_qc.types import NOT_ASSESSABLE, DimensionResult, ExamImages, Finding, SeriesImages


class _Header:
    modality = "CT"
    series_uid = "9.9"
    n_instances = 1


def _exam(item_codes: list[str], code: str | None = None) -> ExamImages:
    def nothing() -> Any:
        raise AssertionError("pixels not expected")

    s = SeriesImages(header=_Header(), label=None, datasets=nothing, volume=nothing, radiograph=nothing)
    return ExamImages(study_uid="1.2", modality="CT", standard_code=code, item_codes=item_codes, series=[s])


@pytest.fixture()
def knee_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CT measure that reads a knee scanned too short, dose not recorded, positioning unknown."""
    mod = types.ModuleType("radqc_test_knee_measure")

    def measure(exam: ExamImages, params: dict[str, Any], sink: Any) -> dict[str, DimensionResult]:
        short = Finding(check_id="IQC-RANGE", dimension="range", value="过小", points=0.0,
                        reason_zh="扫描范围过小", reason_en="scan range too small")
        return {"range": DimensionResult(value="过小", details={"part": "KNEE", "length_mm": 110.0}, findings=[short]),
                "reconstruction": DimensionResult(value="正常"), "window": DimensionResult(value="正常"),
                "dose": DimensionResult(value="异常", details={"not_recorded": True}),
                "positioning": DimensionResult(value="不标准"), "noise": DimensionResult(value="正常")}

    def load_params(modality: str, code: str | None) -> dict[str, Any]:
        return {}

    def no_artifact(exam: ExamImages, params: dict[str, Any], sink: Any) -> dict[str, DimensionResult]:
        return {"artifact": DimensionResult(value="无")}

    mod.measure, mod.load_params, mod.no_artifact = measure, load_params, no_artifact  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "radqc_test_knee_measure", mod)
    monkeypatch.setitem(run_mod.MEASURES, "CT", [("radqc_test_knee_measure", "measure", "load_params", ("CT",))])
    monkeypatch.setattr(run_mod, "ARTIFACT_MEASURE", ("radqc_test_knee_measure", "no_artifact"))


def test_the_table_names_ct_dimensions_only_for_an_item_of_the_exams_class() -> None:
    assert set(rollup_mod.vocab_item_suffices("CT", ["CT.KNEE.PLAIN"])) == {"range", "reconstruction", "window", "dose"}
    assert rollup_mod.vocab_item_suffices("CT", []) == ()
    assert rollup_mod.vocab_item_suffices("CT", ["MR.KNEE.PLAIN"]) == ()  # another modality's item
    assert rollup_mod.vocab_item_suffices("MR", ["MR.KNEE.PLAIN"]) == ()  # MR limits are keyed by the standard
    assert rollup_mod.vocab_item_suffices(None, ["CT.KNEE.PLAIN"]) == ()


def test_a_vocabulary_item_without_standard_keeps_the_measured_values_and_deducts_them(knee_measure: None) -> None:
    exam = _exam(["CT.KNEE.PLAIN"])
    dims = run_mod.assess(exam)
    assert dims["range"].value == "过小" and dims["range"].details["part"] == "KNEE"
    assert dims["dose"].value == "异常" and dims["window"].value == "正常"
    # positioning needs the item's standard: still 无法评估 with the unknown-item reason
    assert dims["positioning"].value == NOT_ASSESSABLE and "unknown" in (dims["positioning"].reason or "")
    rolled = rollup_mod.rollup(dims, None, "CT")
    by_check = {d["check_id"]: d for d in rolled["deductions"]}
    # the default standard's general points: IQC-RANGE 15 (过小 full share), IQC-DOSE 5
    assert by_check["IQC-RANGE"]["points"] == 15.0 and by_check["IQC-RANGE"]["scope"] == "general"
    assert by_check["IQC-DOSE"]["points"] == 5.0
    assert rolled["score"] == 80.0 and rolled["grade"] == 2


def test_an_unreadable_order_or_another_modalitys_item_still_reads_cannot_assess(knee_measure: None) -> None:
    for codes in ([], ["MR.KNEE.PLAIN"]):
        dims = run_mod.assess(_exam(codes))
        for dim in ("range", "reconstruction", "window", "dose", "positioning"):
            assert dims[dim].value == NOT_ASSESSABLE, (codes, dim)
        assert dims["range"].details["measured"]["value"] == "过小"  # kept for the reader, not scored
        assert dims["noise"].value == "正常"  # item-independent: scored either way
        assert rollup_mod.rollup(dims, None, "CT")["score"] == 100.0


def test_the_yaml_decides(knee_measure: None, monkeypatch: pytest.MonkeyPatch) -> None:
    table = dict(rollup_mod.rollup_table())
    table["vocab_item_suffices"] = {"CT": ["dose"]}
    monkeypatch.setattr(rollup_mod, "rollup_table", lambda: table)
    dims = run_mod.assess(_exam(["CT.KNEE.PLAIN"]))
    assert dims["dose"].value == "异常" and dims["range"].value == NOT_ASSESSABLE
