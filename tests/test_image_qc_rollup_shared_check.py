"""One deduction per standard check per exam, also across dimensions: a radiograph's noise
(under-exposure) and dose (over-exposure / exposure index not recorded) both deduct under
IQC-EXPOSURE, which never costs more than its 10 points."""

from __future__ import annotations

from radqc.pipelines.image_qc.rollup import merge_shared_checks, rollup
from radqc.pipelines.image_qc.types import DimensionResult, Evidence, Finding


def _finding(dim: str, zh: str, en: str, measured: float) -> Finding:
    return Finding(check_id="IQC-EXPOSURE", dimension=dim, value="异常", points=0.0, reason_zh=zh, reason_en=en,
                   evidence=[Evidence(measured=measured)])


def test_noise_and_dose_under_one_exposure_check_deduct_its_points_once() -> None:
    dims = {
        "noise": DimensionResult(value="异常", findings=[_finding("noise", "噪声过大", "excess noise", 0.12)]),
        "dose": DimensionResult(value="异常", findings=[_finding("dose", "曝光过度", "over-exposed", 3.1)]),
        "range": DimensionResult(value="过小"),
    }
    out = rollup(dims, "DX-CHEST-PA", "DX")
    exposure = [d for d in out["deductions"] if d["check_id"] == "IQC-EXPOSURE"]
    assert len(exposure) == 1 and exposure[0]["points"] == 10.0
    assert exposure[0]["dimension"] == "noise" and exposure[0]["also"] == [{"dimension": "dose", "value": "异常",
                                                                            "points": 10.0}]
    assert [e["measured"] for e in exposure[0]["evidence"]] == [0.12, 3.1]  # both findings' evidence kept
    assert "曝光过度" in exposure[0]["reason_zh"] and "over-exposed" in exposure[0]["reason_en"]
    assert out["score"] == 75.0 and out["grade"] == "乙"  # 100 - 15 (range) - 10 (exposure), not 65 丙


def test_the_costlier_row_stays_and_other_checks_are_untouched() -> None:
    rows = [{"check_id": "IQC-EXPOSURE", "dimension": "noise", "value": "异常", "points": 5.0, "evidence": []},
            {"check_id": "IQC-RANGE", "dimension": "range", "value": "过小", "points": 15.0, "evidence": []},
            {"check_id": "IQC-EXPOSURE", "dimension": "dose", "value": "异常", "points": 10.0, "evidence": []}]
    out = merge_shared_checks(rows)
    assert [(r["check_id"], r["dimension"], r["points"]) for r in out] == [("IQC-EXPOSURE", "dose", 10.0),
                                                                           ("IQC-RANGE", "range", 15.0)]
    assert out[0]["also"][0]["dimension"] == "noise"
    assert merge_shared_checks(rows[1:2]) == rows[1:2]
