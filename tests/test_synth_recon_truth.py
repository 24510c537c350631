"""F11 (thin-slice add-on billed, no thin series) and the reconstruction truth (generator 0.1.9).

F11 drops every thin axial series. On a chest that was its only lung-kernel reconstruction (on a
head or spine its only bone-kernel one), which the item's standard requires (domain qc-items.md:
chest "lung kernel + soft kernel; thin recon <= 1.5 mm"; head and spine "bone kernel"); the truth
said reconstruction 正常 (seed 9202 E00059). It now carries a ``recon_series_missing``
deviation, recorded by the renderer only when no axial series of that kernel class was written.
A dropped soft thin series leaves a soft thick one (neck, abdomen, pelvis): no deviation.
"""

from __future__ import annotations

from pathlib import Path

from radqc.datasets.synthetic.clinical.imaging_qc import expected_result
from radqc.datasets.synthetic.clinical.planner import _lost_kernels, plan_set
from radqc.datasets.synthetic.imaging.render import render_exam
from radqc.datasets.synthetic.spec import SeriesRole


def _r(role: str, **params: object) -> SeriesRole:
    return SeriesRole(role, dict(params))


def test_lost_kernels_only_when_no_axial_series_of_that_class_remains() -> None:
    chest_thin = _r("axial_lung_thin", thickness_mm=1.25, kernel="lung")
    soft_thick = _r("axial_soft_thick", thickness_mm=5.0, kernel="soft")
    assert _lost_kernels([chest_thin], [soft_thick]) == ["lung"]
    assert _lost_kernels([_r("axial_bone_thin", thickness_mm=1.0, kernel="bone")], [_r("axial_head_thick")]) == ["bone"]
    # neck / abdomen: the soft thin series goes, a soft thick one stays
    assert _lost_kernels([_r("axial_soft_thin", thickness_mm=1.25, kernel="soft")], [soft_thick]) == []
    # a lung series of another thickness still there: nothing lost
    assert _lost_kernels([chest_thin], [soft_thick, _r("axial_lung_thick", thickness_mm=5.0, kernel="lung")]) == []


def _f11_plans(seed: int, n: int, profile: str):  # type: ignore[no-untyped-def]
    return [p for p in plan_set(seed, n, profile) if any(i["id"] == "F11" for i in p.irregularities)]


def test_f11_chest_is_planned_and_rendered_as_reconstruction_deviation(tmp_path: Path) -> None:
    # 8348 E00019: a chest CT with F11 (generator 0.1.12 deals one more DX item, so 8341's first F11
    # exam, a chest + upper abdomen before, is now a cervical spine: its lost class is bone)
    plans = [p for p in _f11_plans(8348, 24, "qc-items") if "胸部" in "".join(p.order.exam_items)]
    assert plans, "seed 8348 qc-items has an F11 chest exam among its first 24"
    plan = plans[0]
    planned = [d for d in plan.spec.defects if d.params.get("kind") == "recon_series_missing"]
    assert [d.params["kernel_classes"] for d in planned] == [["lung"]]
    assert not any(float(r.params.get("thickness_mm", 99)) < 2.0 for r in plan.spec.series)
    result = render_exam(plan.spec, tmp_path)
    applied = [d for d in result.applied_defects if d.params.get("kind") == "recon_series_missing"]
    assert len(applied) == 1 and applied[0].params["kernel_classes"] == ["lung"]
    assert all(s["kernel_class"] != "lung" for s in applied[0].params["axial_series"])
    qc = expected_result(plan.modality, result.applied_defects, exam_items=list(plan.order.exam_items))
    assert qc["dimensions"]["reconstruction"] == "deviation"
    assert any(d["dimension"] == "reconstruction" and d["points"] > 0 for d in qc["deductions"])


def test_exams_without_f11_get_no_recon_series_missing() -> None:
    for p in plan_set(8341, 40, "qc-items"):
        if not any(i["id"] == "F11" for i in p.irregularities):
            assert not any(d.params.get("kind") == "recon_series_missing" for d in p.spec.defects), p.exam_key
