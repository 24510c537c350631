"""The generator's expected_qc is graded by the exam item's scoring standard (generator 0.1.4).

Hand-checked against qc_rules/standards (DX-CHEST-PA: IQC-POSITION 10, IQC-MARKER 5,
IQC-ARTIFACT 10, IQC-RANGE 15; CT-CHEST-PLAIN: IQC-ARTIFACT 15, IQC-NOISE 10, IQC-CENTRING 5, no
IQC-SHARPNESS, no IQC-POSITION) and the shares in qc_rules/image_qc/rollup.yaml (异物 0.5 of
IQC-ARTIFACT, overscan a third of IQC-RANGE, scapulae over the lungs half of IQC-POSITION)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radqc.datasets.synthetic.clinical.imaging_qc import expected_result, item_standard, public_value
from radqc.datasets.synthetic.spec import QC_DIMENSIONS, Defect
from radqc.pipelines.image_qc.rollup import score_values
from radqc.pipelines.image_qc.types import VALUES


def test_radiograph_graded_by_the_chest_pa_standard() -> None:
    applied = [Defect("positioning", "不标准", {"kind": "rotation", "degrees": 9}),
               Defect("artifact", "异物", {"kind": "foreign_object", "object": "necklace"})]
    r = expected_result("DX", applied, exam_items=["胸部正位"])
    assert r["standard"] == "DX-CHEST-PA" and r["scoring_version"] == "item-standard:DX-CHEST-PA"
    # IQC-POSITION 10 + half of IQC-ARTIFACT's 10 = 15 -> 85 乙
    assert r["score"] == 85.0 and r["grade"] == "乙"
    assert [(d["check_id"], d["points"]) for d in r["deductions"]] == [("IQC-POSITION", 10.0), ("IQC-ARTIFACT", 5.0)]
    # the generator's vocabulary and reasons are kept
    assert r["dimensions"]["positioning"] == "不标准" and r["dimensions"]["noise"] == "ok"
    assert "9" in r["deductions"][0]["reason_zh"] and "necklace" in r["deductions"][1]["reason_en"]
    assert r["placeholder"] == {"version": "placeholder-2026.1", "score": 80.0, "grade": "乙"}


def test_marker_and_scapula_kinds_deduct_like_the_pipelines_findings() -> None:
    # a wrong L/R marker: 40 points in the old table (丙), IQC-MARKER's 5 under the standard (甲)
    wrong = expected_result("DX", [Defect("positioning", "不标准", {"kind": "marker_wrong"})], exam_items=["胸部正位"])
    assert wrong["placeholder"]["grade"] == "丙"
    assert wrong["grade"] == "甲" and wrong["score"] == 95.0 and wrong["deductions"][0]["check_id"] == "IQC-MARKER"
    scap = expected_result("DX", [Defect("positioning", "不标准", {"kind": "scapula_over_lung"}),
                                  Defect("range", "过小", {"kind": "costophrenic_cutoff", "missing": ["costophrenic_angle_left"]})],
                           exam_items=["胸部正位"])
    assert scap["score"] == 100 - 5 - 15 and scap["grade"] == "乙"


def test_ct_graded_by_the_chest_standard_with_general_and_unscored_checks() -> None:
    applied = [Defect("artifact", "运动", {"kind": "motion"}), Defect("noise", "excess", {"kind": "excess_noise", "factor": 2.5}),
               Defect("centring", "偏左", {"kind": "off_centre", "direction": "left", "offset_mm": 40}),
               Defect("sharpness", "blur", {"kind": "blur"}), Defect("positioning", "不标准", {"kind": "patient_rotation"})]
    r = expected_result("CT", applied, exam_items=["胸部CT平扫"])
    assert r["standard"] == "CT-CHEST-PLAIN"
    # 15 + 10 + 5 + sharpness general 10 (scored for CT, not listed) = 40 -> 60 -> grade 1
    assert r["score"] == 60.0 and r["grade"] == 1
    rows = {d["dimension"]: (d["check_id"], d["points"], d["scope"]) for d in r["deductions"]}
    assert rows["sharpness"] == ("IQC-SHARPNESS", 10.0, "general")
    assert rows["positioning"] == ("IQC-POSITION", 0, "not_scored")  # CT positioning reported, no points
    # the same grade the evaluator's roll-up of the truth values gives
    values = {d: (public_value(d, v), next((x.params.get("kind") for x in applied if x.dimension == d), None))
              for d, v in r["dimensions"].items()}
    assert score_values(values, "CT-CHEST-PLAIN", "CT")["grade"] == r["grade"]


def test_fallback_without_a_standard_and_unknown_items_do_not_crash() -> None:
    applied = [Defect("noise", "excess", {"factor": 2.0})]
    plain = expected_result("CT", applied)  # no items: the old table, no standard key
    assert plain["scoring_version"] == "placeholder-2026.1" and "standard" not in plain and plain["score"] == 90
    for items in (["完全不存在的检查XYZ"], ["MR-BRAIN"], [], ["   "]):  # unknown; an MR standard; empty
        r = expected_result("CT", applied, exam_items=items)
        assert r["scoring_version"] == "placeholder-2026.1" and r["standard"] is None, items
        assert r["score"] == 90 and r["grade"] == 3 and "placeholder" not in r
    assert item_standard("CT", ["完全不存在的检查XYZ"]) is None
    assert item_standard("MR", ["头颅MR平扫"]) == "MR-BRAIN"


def test_public_values_cover_the_generator_vocabulary() -> None:
    from radqc.datasets.evaluation.evaluators.image_qc import truth_value

    for dim, values in QC_DIMENSIONS.items():
        for value in values:
            assert public_value(dim, value) in VALUES[dim], (dim, value)
            assert public_value(dim, value) == truth_value(dim, value)


@pytest.mark.parametrize("seed", [8299])
def test_generated_truth_grades_equal_the_standard_rollup(tmp_path: Path, seed: int) -> None:
    from radqc.datasets.synthetic.generate import generate_set, iter_truth

    root = tmp_path / "set"
    generate_set(root, 6, seed, "qc", "small")
    n = 0
    for t in iter_truth(root):
        qc = t["expected_qc"]
        assert tuple(int(x) for x in t["generator_version"].split(".")) >= (0, 1, 4)  # numeric: "0.1.10" > "0.1.4"
        code = item_standard(t["exam"]["modality"], t["order"]["exam_items"])
        if code is None:
            assert qc["scoring_version"] == "placeholder-2026.1"
            continue
        n += 1
        assert qc["scoring_version"] == f"item-standard:{code}" and qc["standard"] == code
        kinds = {d["dimension"]: (d.get("params") or {}).get("kind") for d in t["imaging"]["applied_defects"]}
        values = {d: (public_value(d, v), kinds.get(d)) for d, v in qc["dimensions"].items()}
        rolled = score_values(values, code, t["exam"]["modality"])
        assert (rolled["score"], rolled["grade"]) == (qc["score"], qc["grade"])
        assert qc["score"] == qc["total"] - sum(d["points"] for d in qc["deductions"])
    assert n >= 4


def test_collimation_reason_quotes_the_margin() -> None:
    # the range 过大 template names the excess anatomy, which a too-wide collimation has not
    r = expected_result("DX", [Defect("range", "过大", {"kind": "collimation_too_wide", "extra_mm": 72})],
                        exam_items=["胸部正位"])
    row = r["deductions"][0]
    assert "72" in row["reason_zh"] and "72 mm" in row["reason_en"] and "?" not in row["reason_en"]
    assert row["points"] == 5.0  # a third of IQC-RANGE's 15
