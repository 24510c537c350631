"""The ``series`` stage on an ingested combined exam: standard series per item, slabs that link the
right original instances, retrievable by standard series UID, originals untouched, re-runs idempotent."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import func, select

from radqc.catalogue import models as m
from radqc.pipelines.ingest.folder import ingest_path
from radqc.pipelines.runner.local import run_pipeline
from radqc.pipelines.runner.registry import default_registry
from radqc.pipelines.series.store import standard_series_instances, standard_series_uid


def _render(out: Path) -> Any:
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec

    spec = ImagingSpec(exam_key="E1", seed=7, modality="CT", regions=["chest", "abdomen"],
                       acquisition="one_acquisition", phases=["native"], size="small",
                       header={"StudyDescription": "胸部+上腹部CT平扫", "AccessionNumber": "ACC-SER-1"})
    return render_exam(spec, out, labels_dir=out.parent / "labels")


def _result(workspace) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with workspace.sessions() as s:
        return s.execute(select(m.LedgerEntry.result).where(m.LedgerEntry.stage == "series",
                                                            m.LedgerEntry.status == "succeeded")
                         .order_by(m.LedgerEntry.id.desc())).scalars().first()


def _originals(workspace) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    with workspace.sessions() as s:
        return [tuple(r) for r in s.execute(select(m.Instance.id, m.Instance.content_hash, m.Instance.series_id,
                                                   m.Instance.version).order_by(m.Instance.id)).all()]


def test_stage_declares_its_inputs() -> None:
    stage = default_registry().get("series")
    assert set(stage.depends) == {"index", "items", "rule_qc"} and stage.project is not None
    assert "split" in stage.resolved_versions()


def test_combined_exam_becomes_standard_series_with_slabs(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    truth = _render(tmp_path / "gen")
    ingest_path(workspace, tmp_path / "gen", workers=1)
    before = _originals(workspace)
    summary = run_pipeline(workspace, ["series"], workers=1).to_dict()
    assert summary["stages"]["series"]["succeeded"] == 1, summary
    result = _result(workspace)
    split = result["split"]
    assert [it["code"] for it in split["standard_items"]] == ["CT.CHEST.PLAIN", "CT.UABD.PLAIN"]
    assert split["mismatch"] == [] and result["body_regions"]["status"] == "ok"
    truth_series = {s.series_instance_uid: s for s in truth.series}

    with workspace.sessions() as s:
        rows = s.execute(select(m.StandardSeries)).scalars().all()
        exam_uid = s.execute(select(m.Exam.study_instance_uid)).scalar_one()
        by_item: dict[str | None, list[m.StandardSeries]] = {}
        for r in rows:
            by_item.setdefault(r.item_code, []).append(r)
        assert set(by_item) == {"CT.CHEST.PLAIN", "CT.UABD.PLAIN"}
        sources = {r.source_series_id for r in rows}
        uid_of = dict(s.execute(select(m.Series.id, m.Series.series_instance_uid)).all())
        assert {uid_of[i] for i in sources} == set(truth_series)  # every series lands under some item
        right = total = 0
        for r in rows:
            src_uid = uid_of[r.source_series_id]
            ts = truth_series[src_uid]
            assert r.standard_series_uid.startswith("2.25.") and len(r.standard_series_uid) <= 64
            insts = standard_series_instances(s, r.standard_series_uid)
            assert len(insts) == r.instance_count and all(i.series_id == r.source_series_id for i in insts)
            if not ts.role.startswith("axial_"):
                assert r.z_from_mm is None and r.instance_count == ts.n_instances
                continue
            # a slab: exactly the instances between its limits, and (mostly) of its item's region
            assert r.z_from_mm is not None and r.z_to_mm is not None and r.instance_count < ts.n_instances
            region_of = {}
            for rel, region in zip(ts.files, ts.slice_regions, strict=True):
                ds = pydicom.dcmread(tmp_path / "gen" / rel, stop_before_pixels=True)
                region_of[str(ds.SOPInstanceUID)] = region
            for inst in insts:
                ds = pydicom.dcmread(io.BytesIO(workspace.store.get(inst.storage_key)), stop_before_pixels=True)
                assert r.z_from_mm - 1e-3 <= float(ds.ImagePositionPatient[2]) <= r.z_to_mm + 1e-3
                want = "CT.UABD.PLAIN" if region_of[inst.sop_instance_uid] in ("abdomen", "pelvis") else "CT.CHEST.PLAIN"
                right += want == r.item_code
                total += 1
            assert r.standard_series_uid == standard_series_uid(
                exam_uid, r.item_code, src_uid, {"z_from_mm": r.z_from_mm, "z_to_mm": r.z_to_mm})
        assert total and right / total >= 0.9
        # slabs of one source series partition it
        for src in sources:
            slabbed = [r for r in rows if r.source_series_id == src and r.z_from_mm is not None]
            if slabbed:
                n = s.execute(select(func.count()).select_from(m.Instance).where(m.Instance.series_id == src)).scalar()
                assert sum(r.instance_count for r in slabbed) == n
        tags = s.execute(select(m.ExamTag.tag, m.ExamTag.stage)).all()
        assert all(stage == "series" for _, stage in tags)
        first_uids = sorted(r.standard_series_uid for r in rows)
    assert _originals(workspace) == before  # originals untouched

    # a forced re-run replaces the rows: same UIDs, no duplicates
    again = run_pipeline(workspace, ["series"], workers=1, force=True).to_dict()
    assert again["stages"]["series"]["succeeded"] == 1
    with workspace.sessions() as s:
        assert sorted(s.execute(select(m.StandardSeries.standard_series_uid)).scalars().all()) == first_uids
        links = s.execute(select(func.count()).select_from(m.StandardSeriesInstance)).scalar()
        assert links == sum(r.instance_count for r in s.execute(select(m.StandardSeries)).scalars().all())
        assert standard_series_instances(s, "2.25.0") == []
