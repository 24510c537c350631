"""The ``image_qc`` stage over ingested exams: the contract JSON in the ledger, evidence PNGs in the
object store, the item's standard taken from rule QC, bad input (unknown item) scored, never failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.pipelines.image_qc.types import DIMENSIONS, NOT_APPLICABLE, NOT_ASSESSABLE, VALUES
from radqc.pipelines.ingest.folder import ingest_path
from radqc.pipelines.runner.local import run_pipeline
from radqc.pipelines.runner.registry import default_registry


def _render(out: Path, key: str, description: str, defects: list[Any], seed: int) -> Any:
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec

    spec = ImagingSpec(exam_key=key, seed=seed, modality="DX", regions=["chest"], size="small",
                       header={"StudyDescription": description, "AccessionNumber": f"ACC-IQC-{key}"},
                       defects=defects)
    return render_exam(spec, out, labels_dir=out.parent / f"labels-{key}")


def _results(workspace: Any) -> dict[str, dict[str, Any]]:
    with workspace.sessions() as s:
        rows = s.execute(select(m.Exam.study_instance_uid, m.LedgerEntry.result)
                         .join(m.Exam, m.Exam.id == m.LedgerEntry.exam_id)
                         .where(m.LedgerEntry.stage == "image_qc", m.LedgerEntry.status == "succeeded")).all()
    return {str(uid): res for uid, res in rows}


def test_stage_declares_its_inputs() -> None:
    stage = default_registry().get("image_qc")
    assert set(stage.depends) == {"index", "series", "rule_qc", "anatomy"}
    versions = stage.resolved_versions()
    assert {"standards", "image_qc"} <= set(versions)


def test_stage_scores_ingested_exams_with_evidence_in_the_store(workspace: Any, tmp_path: Path) -> None:
    from radqc.datasets.synthetic.spec import Defect

    _render(tmp_path / "gen", "S1", "胸部正位", [Defect("centring", "偏左", {"offset_mm": 70})], seed=21)
    _render(tmp_path / "gen", "S2", "心理咨询", [], seed=22)
    ingest_path(workspace, tmp_path / "gen", workers=1)
    summary = run_pipeline(workspace, ["image_qc"], workers=1).to_dict()
    assert summary["stages"]["image_qc"]["succeeded"] == 2, summary
    results = _results(workspace)
    by_key = {}
    for res in results.values():
        by_key["S1" if res["item"].get("code") else "S2"] = res
    for res in results.values():
        for dim in DIMENSIONS:
            value = res[dim]["value"]
            assert value in VALUES[dim] or value in (NOT_ASSESSABLE, NOT_APPLICABLE), (dim, value)
            if value in (NOT_ASSESSABLE, NOT_APPLICABLE):
                assert " / " in res[dim]["reason"]
        assert res["grade"] in ("甲", "乙", "丙", "丁") and isinstance(res["score"], (int, float))
        assert all({"check_id", "dimension", "points", "reason_zh", "reason_en", "evidence"} <= set(d)
                   for d in res["deductions"])
        assert res["inputs_used"]["series"] is True and res["inputs_used"]["rule_qc"] is True

    known = by_key["S1"]
    assert known["item"]["code"] == "DX-CHEST-PA" and known["standard"] == "DX-CHEST-PA"
    assert known["combined"] is True and known["score"] <= known["image_score"]
    # every evidence picture named in the result is a PNG in the object store
    store = workspace.store
    keys = [e["image"] for d in known["deductions"] for e in d["evidence"] if e.get("image")]
    keys += [f["key"] for f in known["evidence_objects"]]
    for key in keys:
        assert store.get(key).startswith(b"\x89PNG")
    assert set(known["evidence_images"]) <= {o["key"] for o in known["evidence_objects"]}
    if known["centring"]["value"] not in (NOT_ASSESSABLE,):
        assert known["centring"]["value"] == "偏左"

    odd = by_key["S2"]  # an item with no standard: item-dependent dimensions cannot be assessed, rest scored
    assert odd["item"]["code"] is None and odd["item"]["value"] == NOT_ASSESSABLE
    assert odd["range"]["value"] == NOT_ASSESSABLE and "unknown" in odd["range"]["reason"]
    assert odd["standard"] is None and odd["grading"] == "radiograph"

    # radqc demo's summary shows the QC result of each exam (grade, score, non-normal dimensions)
    import io

    from rich.console import Console

    from radqc.cli import cmd_demo

    rows = cmd_demo.image_qc_summary(workspace)
    assert len(rows) == 2 and {r["standard"] for r in rows} == {"DX-CHEST-PA", None}
    for row in rows:
        assert row["grade"] in ("甲", "乙", "丙", "丁") and row["combined"] is True
        assert "range" in row["not_assessed"] or row["standard"] is not None
    screen = io.StringIO()
    original = cmd_demo.stdout
    cmd_demo.stdout = Console(file=screen, width=200)
    try:
        cmd_demo._human_image_qc(rows)
    finally:
        cmd_demo.stdout = original
    shown = screen.getvalue()
    assert "image QC / 影像质控" in shown and "DX-CHEST-PA" in shown and "无法评估 / unknown item" in shown
