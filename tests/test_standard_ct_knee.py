"""Knee CT (膝关节CT平扫) has its own scoring standard.

Why it matters: CT knee is one of the exam items hospitals order every day (and one of the 26 the
per-item accuracy is shown on). Without a standard its exams were graded by the general points
table, a table no department uses, and their reconstruction checks could not ask for the bone
kernel a knee is read on."""

from __future__ import annotations

import pytest

from radqc.datasets.synthetic.clinical.imaging_qc import item_standard
from radqc.pipelines.image_qc.exam import resolve_standard
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.rollup import rollup
from radqc.pipelines.image_qc.types import DimensionResult

#: spellings of the generator's hospitals and of real orders (full-width, urgency and clinic tags)
KNEE_CT_ORDERS = ["右膝关节CT平扫", "【急】右膝关节ＣＴ平扫", "右膝ＣＴ平扫＋三维重建", "右膝CT平扫+三维重建(门诊)",
                  "膝关节CT(左)", "膝关节CT(右)", "左膝CT平扫+三维重建", "膝关节CT平扫"]


@pytest.mark.parametrize("order", KNEE_CT_ORDERS)
def test_knee_ct_orders_resolve_to_the_knee_standard(order: str) -> None:
    assert resolve_standard("CT", [order]).code == "CT-KNEE"
    assert item_standard("CT", [order]) == "CT-KNEE"  # the generator's truth is graded by the same standard


def test_other_knee_orders_keep_their_own_standards() -> None:
    assert resolve_standard("MR", ["右膝关节MR平扫"]).code == "MR-KNEE"
    assert resolve_standard("DX", ["右膝关节正侧位"]).code == "DX-KNEE-APLAT"
    # a CT knee order over MR images is not scored as CT
    refused = resolve_standard("MR", ["右膝关节CT平扫"])
    assert refused.code is None and "CT" in (refused.reason or "")


def test_knee_ct_params_ask_for_thin_bone_reconstructions() -> None:
    params = load_params("CT", "CT-KNEE")
    assert params["_standard_code"] == "CT-KNEE" and not params["_notes"]
    assert params["reconstruction"]["kernels_required"] == ["bone"]
    assert params["reconstruction"]["thin_required"] is True
    assert params["dose"]["ctdivol_ref_mgy"] == 10.0


def test_knee_ct_deducts_under_its_own_standard() -> None:
    dims = {"centring": DimensionResult(value="偏上"), "window": DimensionResult(value="异常"),
            "range": DimensionResult(value="正常"), "artifact": DimensionResult(value="无")}
    rolled = rollup(dims, resolve_standard("CT", ["右膝关节CT平扫"]).code, "CT")
    scopes = {d["check_id"]: d["scope"] for d in rolled["deductions"]}
    assert scopes == {"IQC-CENTRING": "standard", "IQC-WINDOW": "standard"}
    assert rolled["score"] == 90.0 and rolled["grade"] == 3
