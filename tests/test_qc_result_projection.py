"""The ``image_qc`` stage projects its roll-up into ``qc_result`` (one row per exam) in the same
transaction as its ledger entry: what search, statistics and the doctor's badge read. A re-run
replaces the row; the backfill projects results recorded before the projection existed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from radqc.catalogue import models as m
from radqc.pipelines.image_qc.types import DIMENSIONS
from radqc.pipelines.ingest.folder import ingest_path
from radqc.pipelines.runner.local import run_pipeline
from radqc.pipelines.stages.image_qc import backfill, qc_result_fields


def _render(out: Path, key: str, defects: list[Any], seed: int) -> None:
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec

    spec = ImagingSpec(exam_key=key, seed=seed, modality="DX", regions=["chest"], size="small",
                       header={"StudyDescription": "胸部正位", "AccessionNumber": f"ACC-QCR-{key}"},
                       defects=defects)
    render_exam(spec, out, labels_dir=out.parent / f"labels-{key}")


def _latest(s: Any) -> dict[int, m.LedgerEntry]:
    rows = s.execute(select(m.LedgerEntry).where(m.LedgerEntry.stage == "image_qc",
                                                 m.LedgerEntry.status == "succeeded")
                     .order_by(m.LedgerEntry.id)).scalars().all()
    return {int(r.exam_id): r for r in rows}


def test_image_qc_projects_replaces_and_backfills(workspace: Any, tmp_path: Path) -> None:
    from radqc.datasets.synthetic.spec import Defect

    _render(tmp_path / "gen", "P1", [Defect("centring", "偏左", {"offset_mm": 70})], seed=31)
    ingest_path(workspace, tmp_path / "gen", workers=1)
    summary = run_pipeline(workspace, ["image_qc"], workers=1).to_dict()
    assert summary["stages"]["image_qc"]["succeeded"] == 1, summary

    with workspace.sessions() as s:
        latest = _latest(s)
        rows = s.execute(select(m.QcResult)).scalars().all()
        assert len(rows) == 1
        row = rows[0]
        entry = latest[row.exam_id]
        result = entry.result
        assert row.ledger_id == entry.id
        # every column comes from the ledger result, not from constants
        assert row.score == float(result["score"]) and row.grade == str(result["grade"])
        assert row.grade in ("甲", "乙", "丙", "丁")
        assert row.image_score == float(result["image_score"]) and row.image_grade == str(result["image_grade"])
        assert result["combined"] is True and row.rule_score == float(result["rule_qc"]["score"])
        assert row.standard == result["standard"] == "DX-CHEST-PA"
        assert row.modality == result["modality"] and row.stage_version == result["version"]
        assert row.dimension_values == {d: result[d]["value"] for d in DIMENSIONS}
        assert row.deduction_count == len(result["deductions"]) and row.deduction_count > 0
        assert row.evidence_count == sum(len(d.get("evidence") or []) for d in result["deductions"])

    # a re-run replaces the row (one per exam) and points it at the new ledger entry
    again = run_pipeline(workspace, ["image_qc"], workers=1, force=True).to_dict()
    assert again["stages"]["image_qc"]["succeeded"] == 1, again
    with workspace.sessions() as s:
        rows = s.execute(select(m.QcResult)).scalars().all()
        assert len(rows) == 1
        assert rows[0].ledger_id == _latest(s)[rows[0].exam_id].id != entry.id

    # a catalogue whose results predate the projection: the backfill adds the missing row once
    with workspace.transaction() as s:
        s.execute(delete(m.QcResult))
    with workspace.transaction() as s:
        assert backfill(s) == 1
    with workspace.transaction() as s:
        assert backfill(s) == 0
        row = s.execute(select(m.QcResult)).scalar_one()
        assert row.ledger_id == _latest(s)[row.exam_id].id and row.score is not None


def test_fields_of_an_uncombined_or_odd_result() -> None:
    """rule_score only when the final score combined rule QC; non-results project nothing."""
    result = {"version": "1.2", "score": 88, "grade": 1, "image_score": 88, "image_grade": 1, "combined": False,
              "standard": "CT-CHEST", "modality": "CT", "deductions": [{"evidence": [{"image": "k"}, {}]}, "x"],
              "noise": {"value": "正常"}}
    fields = qc_result_fields(result)
    assert fields is not None
    assert fields["grade"] == "1" and fields["score"] == 88.0 and fields["rule_score"] is None
    assert fields["deduction_count"] == 1 and fields["evidence_count"] == 2
    assert fields["dimension_values"] == {"noise": "正常"}
    assert qc_result_fields({}) is None and qc_result_fields(None) is None
