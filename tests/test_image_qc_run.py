"""Image-QC integration: item -> standard, the roll-up (points from the item standard, grades,
rule-QC combination), measures that are missing or raise, unknown items, evidence PNGs."""

from __future__ import annotations

import io
import sys
import types
from typing import Any

import numpy as np
import pytest
from PIL import Image

from radqc.pipelines.image_qc import rollup as rollup_mod
from radqc.pipelines.image_qc import run as run_mod
from radqc.pipelines.image_qc.evidence import MAX_SIDE, FileSink, MemorySink, StoreSink, render_png
from radqc.pipelines.image_qc.exam import resolve_standard
from radqc.pipelines.image_qc.rollup import rollup, score_values
from radqc.pipelines.image_qc.types import (
    DIMENSIONS,
    NOT_APPLICABLE,
    NOT_ASSESSABLE,
    DimensionResult,
    Evidence,
    ExamImages,
    Finding,
)

# ---------------------------------------------------------------- item -> standard

@pytest.mark.parametrize(("modality", "names", "code"), [
    ("CT", ["CT-CHEST-PLAIN"], "CT-CHEST-PLAIN"),          # the code itself
    ("CT", ["胸部CT平扫"], "CT-CHEST-PLAIN"),               # the standard's name
    ("DX", ["胸部正位片"], "DX-CHEST-PA"),                  # an alias
    ("CR", ["胸部正位片"], "DX-CHEST-PA"),                  # CR is a radiograph
    ("MR", ["头颅MR平扫"], "MR-BRAIN"),                     # the lexicon (parts + keywords)
])
def test_item_resolves_to_its_standard(modality: str, names: list[str], code: str) -> None:
    assert resolve_standard(modality, names).code == code


def test_unknown_item_and_wrong_modality_give_no_standard_with_a_reason() -> None:
    unknown = resolve_standard("CT", ["心理咨询"])
    assert unknown.code is None and " / " in (unknown.reason or "")
    assert unknown.to_dict()["value"] == NOT_ASSESSABLE
    wrong = resolve_standard("MR", ["胸部CT平扫"])  # a CT item on MR images is not scored as CT
    assert wrong.code is None and "CT" in (wrong.reason or "")
    nothing = resolve_standard("CT", [])
    assert nothing.code is None and nothing.reason


@pytest.mark.parametrize(("modality", "names", "named", "plain"), [
    # no standard alias matches: the lexicon path must not score these under the images' modality
    ("DX", ["膝关节CT"], "CT", "膝关节正侧位"),
    ("CT", ["胸部DR正位"], "DX", "胸部平扫"),
    ("CR", ["腰椎MR平扫"], "MR", "腰椎正侧位"),
])
def test_lexicon_refuses_an_item_that_names_another_modality(modality: str, names: list[str], named: str,
                                                             plain: str) -> None:
    refused = resolve_standard(modality, names)
    assert refused.code is None and named in (refused.reason or "") and modality in (refused.reason or "")
    # the same part without another modality's word still resolves under the images' modality
    assert resolve_standard(modality, [plain]).code is not None


# ---------------------------------------------------------------- roll-up

def _normal_ct() -> dict[str, DimensionResult]:
    dims = {d: DimensionResult(value=rollup_mod.normal_value(d)) for d in DIMENSIONS}
    dims["positioning"] = DimensionResult(value=NOT_APPLICABLE, reason="不适用 / n/a")
    dims["sequences"] = DimensionResult(value=NOT_APPLICABLE, reason="不适用 / n/a")
    return dims


def test_normal_exam_scores_full_marks_and_ct_grade_is_an_integer() -> None:
    res = rollup(_normal_ct(), "CT-CHEST-PLAIN", "CT")
    assert res["score"] == 100.0 and res["grade"] == 3 and isinstance(res["grade"], int)
    assert res["deductions"] == [] and {n["dimension"] for n in res["not_assessed"]} == {"positioning", "sequences"}


def test_points_come_from_the_items_standard_and_value_shares() -> None:
    dims = _normal_ct()
    ev = Evidence(series_uid="1.2.3", instance_index=0, measured=41.0, limit=0.0, unit="mm")
    dims["range"] = DimensionResult(value="过小", findings=[
        Finding("IQC-RANGE", "range", "过小", 0, "扫描范围过小：未包括肺底", "scan range too small: lung base missing", [ev])])
    dims["artifact"] = DimensionResult(value="异物")  # no finding: a generic reason, still deducted
    res = rollup(dims, "CT-CHEST-PLAIN", "CT")
    by_check = {d["check_id"]: d for d in res["deductions"]}
    assert by_check["IQC-RANGE"]["points"] == 15.0  # CT-CHEST-PLAIN: IQC-RANGE 15, 过小 = full points
    assert by_check["IQC-RANGE"]["evidence"][0]["measured"] == 41.0
    assert by_check["IQC-ARTIFACT"]["points"] == pytest.approx(15.0 * 0.5)  # 异物 = half of 15
    assert by_check["IQC-ARTIFACT"]["reason_zh"] and by_check["IQC-ARTIFACT"]["reason_en"]
    assert res["score"] == pytest.approx(100 - 15 - 7.5) and res["grade"] == 2  # 77.5 >= 75
    # the same range defect costs a MR brain exam its own standard's points (IQC-RANGE 10)
    mr = rollup({"range": DimensionResult(value="过小")}, "MR-BRAIN", "MR")
    assert mr["deductions"][0]["points"] == 10.0 and mr["score"] == 90.0 and mr["grade"] == 3


def test_radiograph_grades_and_checks_under_their_own_ids() -> None:
    dims = {"positioning": DimensionResult(value="不标准", findings=[
        Finding("IQC-MARKER", "positioning", "不标准", 0, "缺少左右标记", "L/R marker missing")]),
        "noise": DimensionResult(value="异常"), "sharpness": DimensionResult(value="异常")}
    res = rollup(dims, "DX-CHEST-PA", "DX")
    by_check = {d["check_id"]: d["points"] for d in res["deductions"]}
    # the marker finding keeps its own check (5 points); noise deducts under IQC-EXPOSURE (DX has no IQC-NOISE)
    assert by_check == {"IQC-MARKER": 5.0, "IQC-EXPOSURE": 10.0, "IQC-SHARPNESS": 10.0}
    assert res["score"] == 75.0 and res["grade"] == "乙"
    worse = rollup({**dims, "range": DimensionResult(value="过小"), "artifact": DimensionResult(value="运动")},
                   "DX-CHEST-PA", "DX")
    assert worse["score"] == 50.0 and worse["grade"] == "丁"


def test_not_assessable_never_deducts_and_unknown_item_uses_the_default_standard() -> None:
    dims = {d: DimensionResult(value=NOT_ASSESSABLE, reason="无法评估 / cannot assess") for d in DIMENSIONS}
    dims["artifact"] = DimensionResult(value="运动")
    res = rollup(dims, None, "CT")
    assert res["standard"] is None and res["total"] == 100.0
    assert [d["scope"] for d in res["deductions"]] == ["general"]  # general points (rollup.yaml)
    assert res["score"] == 85.0 and res["grade"] == 2
    assert len(res["not_assessed"]) == len(DIMENSIONS) - 1


def test_several_findings_of_one_check_deduct_once_with_all_evidence() -> None:
    f1 = Finding("IQC-ARTIFACT", "artifact", "异物", 0, "异物", "foreign object", [Evidence(series_uid="a")])
    f2 = Finding("IQC-ARTIFACT", "artifact", "运动", 0, "运动伪影", "motion", [Evidence(series_uid="b")])
    res = rollup({"artifact": DimensionResult(value="运动", findings=[f1, f2])}, "CT-HEAD-PLAIN", "CT")
    (d,) = res["deductions"]
    assert d["points"] == 15.0 and d["value"] == "运动" and {e["series_uid"] for e in d["evidence"]} == {"a", "b"}


def test_rule_qc_combines_into_one_final_score() -> None:
    rule = {"score": 95.0, "grade": "3", "standard": "CT-CHEST-PLAIN", "ruleset_version": "bundled:x",
            "failures": [{"rule_id": "RPT-CONS-012", "dimension": "consistency", "points": 5.0,
                          "reason": "性别不符 / sex mismatch", "reason_zh": "性别不符", "reason_en": "sex mismatch",
                          "evidence": {"patient_sex": "M"}}]}
    dims = _normal_ct()
    dims["noise"] = DimensionResult(value="异常")
    res = rollup(dims, "CT-CHEST-PLAIN", "CT", rule_qc=rule)
    assert res["combined"] is True and res["image_score"] == 90.0
    assert res["score"] == 85.0 and res["grade"] == 2
    assert {d["source"] for d in res["deductions"]} == {"image_qc", "rule_qc"}
    assert res["rule_qc"]["points"] == 5.0


def test_score_values_scores_truth_values_under_the_same_standard() -> None:
    out = score_values({"range": "过大", "centring": "偏左", "noise": "正常"}, "CT-ABD-PELVIS", "CT")
    assert out["score"] == 90.0 and out["grade"] == 3  # overscan: a third of IQC-RANGE's 15, centring 5
    kinds = score_values({"positioning": ("不标准", "scapula_over_lung")}, "DX-CHEST-PA", "DX")
    assert kinds["score"] == 95.0


# ---------------------------------------------------------------- measures: missing, raising, unknown item

class _Header:
    def __init__(self, modality: str) -> None:
        self.modality = modality
        self.series_uid = "9.9"
        self.n_instances = 1


def _exam(modality: str = "CT", code: str | None = "CT-CHEST-PLAIN") -> ExamImages:
    from radqc.pipelines.image_qc.types import SeriesImages

    def nothing() -> Any:
        raise AssertionError("pixels not expected")

    s = SeriesImages(header=_Header(modality), label=None, datasets=nothing, volume=nothing, radiograph=nothing)
    return ExamImages(study_uid="1.2", modality=modality, standard_code=code, series=[s])


@pytest.fixture()
def fake_measures(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = types.ModuleType("radqc_test_fake_measure")

    def measure(exam: ExamImages, params: dict[str, Any], sink: Any) -> dict[str, DimensionResult]:
        mod.calls.append(params)  # type: ignore[attr-defined]
        return {"range": DimensionResult(value="过小"), "noise": DimensionResult(value="正常"),
                "sharpness": DimensionResult(value="ok"),  # old vocabulary: never passed on
                "dose": DimensionResult(value=NOT_APPLICABLE),  # no reason given: one is supplied
                "artifact": DimensionResult(value="运动")}  # artifact is the artifact measure's: ignored

    def load_params(modality: str, code: str | None) -> dict[str, Any]:
        return {"code": code, "artifact": {"threshold": 0.5}}

    def boom(exam: ExamImages, params: dict[str, Any], sink: Any) -> dict[str, DimensionResult]:
        raise RuntimeError("decoder exploded")

    mod.calls = []  # type: ignore[attr-defined]
    mod.measure, mod.load_params, mod.boom = measure, load_params, boom  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "radqc_test_fake_measure", mod)
    monkeypatch.setitem(run_mod.MEASURES, "CT", [("radqc_test_fake_measure", "measure", "load_params", ("CT",))])
    monkeypatch.setattr(run_mod, "ARTIFACT_MEASURE", ("radqc_test_fake_measure", "boom"))
    return mod


def test_missing_dimensions_and_a_raising_measure_read_cannot_assess(fake_measures: types.ModuleType) -> None:
    dims = run_mod.assess(_exam())
    assert fake_measures.calls == [{"code": "CT-CHEST-PLAIN", "artifact": {"threshold": 0.5}}]  # type: ignore[attr-defined]
    assert dims["range"].value == "过小" and dims["noise"].value == "正常"
    assert dims["artifact"].value == NOT_ASSESSABLE and "decoder exploded" in (dims["artifact"].reason or "")
    assert dims["window"].value == NOT_ASSESSABLE and " / " in (dims["window"].reason or "")
    assert set(dims) == set(DIMENSIONS)
    assert dims["sharpness"].value == NOT_ASSESSABLE and "vocabulary" in (dims["sharpness"].reason or "")
    assert dims["dose"].value == NOT_APPLICABLE and " / " in (dims["dose"].reason or "")


def test_unknown_item_makes_item_dependent_dimensions_cannot_assess(fake_measures: types.ModuleType) -> None:
    dims = run_mod.assess(_exam(code=None))
    assert dims["range"].value == NOT_ASSESSABLE and "unknown" in (dims["range"].reason or "")
    assert dims["noise"].value == "正常"  # item-independent: still scored


def test_a_measure_module_that_does_not_exist_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_mod.MEASURES, "CT", [("radqc.pipelines.image_qc.no_such_measure", "m", "p", ())])
    monkeypatch.setattr(run_mod, "ARTIFACT_MEASURE", ("radqc.pipelines.image_qc.no_such_artifact", "m"))
    dims = run_mod.assess(_exam())
    assert all(d.value == NOT_ASSESSABLE for d in dims.values())
    assert "measure not available" in (dims["range"].reason or "")


def test_no_supported_modality_and_the_result_json_contract() -> None:
    exam = _exam(modality="US", code=None)
    dims = run_mod.assess(exam)
    assert all(d.value == NOT_ASSESSABLE for d in dims.values())
    item = resolve_standard("US", ["腹部超声"])
    out = run_mod.build_result(exam, dims, item=item, series_rows=[])
    assert all(out[d]["value"] == NOT_ASSESSABLE and out[d]["reason"] for d in DIMENSIONS)
    assert out["deductions"] == [] and out["item"]["value"] == NOT_ASSESSABLE
    # nothing assessed: no grade rather than the best one
    assert out["score"] is None and out["grade"] is None and " / " in out["grade_reason"]


def test_jsonable_turns_numpy_and_nan_into_json() -> None:
    assert run_mod.jsonable({"a": np.float32(1.5), "b": np.arange(2), "c": float("nan"), "d": (1, np.int64(2))}) == {
        "a": 1.5, "b": [0, 1], "c": None, "d": [1, 2]}


# ---------------------------------------------------------------- evidence pictures

def test_evidence_png_is_small_windowed_and_marked(tmp_path: Any) -> None:
    hu = np.full((512, 400), -1000.0, dtype=np.float32)
    hu[100:400, 50:350] = 40.0
    data = render_png(hu, box=[200, 100, 300, 200], window=(40, 400))
    assert data is not None
    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert max(img.shape[:2]) == MAX_SIDE and img.shape[0] > img.shape[1]  # aspect kept
    red = (img[..., 0] > 200) & (img[..., 1] < 100)
    assert red.any() and red.sum() < 0.05 * red.size  # an outline, not a flood
    assert img[5, 5].max() == 0  # air is black in a soft-tissue window
    mask = np.zeros_like(hu, dtype=bool)
    mask[150:250, 150:250] = True
    marked = np.asarray(Image.open(io.BytesIO(render_png(hu, mask=mask) or b"")).convert("RGB"))
    assert ((marked[..., 0] > 200) & (marked[..., 1] < 100)).any()
    assert render_png(np.zeros((3, 3, 3))) is None  # not 2-D: no picture, no error

    files = FileSink(tmp_path / "ev")
    p1 = files.add(hu, name="range top")
    p2 = files.add(hu, name="range top")
    assert p1 and p2 and p1 != p2 and all(tmp_path.joinpath("ev").joinpath(x.rsplit("/", 1)[-1]).is_file()
                                          for x in (p1, p2))

    class _Store:
        def __init__(self) -> None:
            self.data: dict[str, bytes] = {}

        def put(self, data: bytes) -> Any:
            key = f"k{len(self.data)}"
            self.data[key] = data
            return types.SimpleNamespace(key=key, digest="d", size=len(data))

    store = _Store()
    sink = StoreSink(store)
    key = sink.add(hu, name="x", box=[0, 0, 10, 10])
    assert key == "k0" and store.data["k0"].startswith(b"\x89PNG") and sink.objects[0]["media_type"] == "image/png"
    assert MemorySink().add(np.zeros((0, 0)), name="empty") is None


def test_unlisted_checks_deduct_general_points_only_where_the_class_scores_them() -> None:
    # CT standards list no IQC-SHARPNESS: CT sharpness is scored for CT, so general points apply
    ct = rollup({"sharpness": DimensionResult(value="异常"), "positioning": DimensionResult(value="不标准")},
                "CT-CHEST-PLAIN", "CT")
    assert [(d["check_id"], d["scope"], d["points"]) for d in ct["deductions"]] == [("IQC-SHARPNESS", "general", 10.0)]
    # CT positioning is not in the item's standard nor scored for CT: reported, no points
    assert [(d["dimension"], d["scope"]) for d in ct["not_scored"]] == [("positioning", "not_scored")]
    assert ct["score"] == 90.0
    # a MR brain standard lists IQC-POSITION: there positioning deducts
    mr = rollup({"positioning": DimensionResult(value="不标准")}, "MR-BRAIN", "MR")
    assert mr["deductions"][0]["points"] == 5.0 and mr["not_scored"] == []


def test_a_findings_evidence_kind_refines_the_share() -> None:
    scap = Finding("IQC-POSITION", "positioning", "不标准", 0, "肩胛骨未拉开", "scapulae over the lungs",
                   [Evidence(series_uid="s", extra={"kind": "scapula_over_lung"})])
    res = rollup({"positioning": DimensionResult(value="不标准", findings=[scap])}, "DX-CHEST-PA", "DX")
    assert res["deductions"][0]["points"] == 5.0  # half of IQC-POSITION's 10
