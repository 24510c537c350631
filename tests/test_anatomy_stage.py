"""The ``anatomy`` stage through the local runner on ingested exams: the best CT series is
analysed, its label map and SEG become content-addressed objects pointing back at their
sources, unusable series are recorded with their reason, and no bad input fails the exam.

Models are the test doubles of tests/test_anatomy_engine.py, configured through models.yaml
(``python`` kind), as a site would configure its own.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.dicom.factory import ct_slice
from radqc.models.interfaces import CT_LANDMARKS
from radqc.pipelines.ingest.folder import ingest_path
from radqc.pipelines.runner.local import run_pipeline
from radqc.pipelines.runner.registry import default_registry
from tests.test_segment_cli import DOUBLES, _config
from tests.test_volume import _radiograph

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _write_series(folder: Path, *, study: str, accession: str, number: int, z: list[float], thickness: float,
                  orientation: tuple[float, ...] = AXIAL, modality: str = "CT", image_type: tuple[str, ...] = (
                      "ORIGINAL", "PRIMARY", "AXIAL"), description: str = "") -> str:
    uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for i, zi in enumerate(z):
        arr = np.full((24, 24), 24, np.int16)
        arr[4:20, 4:20] = 1024 + 10
        arr[8:14, 6:12] = 1024 + 60
        ds = ct_slice(study_uid=study, series_uid=uid, pixels=arr, instance_number=i + 1, series_number=number,
                      position=(-50.0, -60.0, zi), orientation=orientation, pixel_spacing=(0.8, 0.6),
                      slice_thickness=thickness, image_type=image_type, rescale_intercept=-1024,
                      accession=accession, patient_id=f"P-{accession}", SeriesDescription=description,
                      FrameOfReferenceUID=generate_uid(entropy_srcs=[study]))
        ds.Modality = modality
        ds.save_as(folder / f"{number:02d}_{i:03d}.dcm", enforce_file_format=True)
    return uid


@pytest.fixture
def exams(tmp_path: Path) -> dict[str, Any]:
    """Four exams: A (good thin CT + coronal MPR + localizer + thinner CT with a gap),
    B (a thin tilted CT and a thicker good one), C (MR only), D (a chest radiograph)."""
    root = tmp_path / "in"
    out: dict[str, Any] = {}
    study = generate_uid()
    tilt = math.radians(12)
    out["A"] = {
        "good": _write_series(root / "A", study=study, accession="ACC-A", number=2, z=[-3.0 * i for i in range(8)],
                              thickness=3.0),
        "coronal": _write_series(root / "A", study=study, accession="ACC-A", number=3,
                                 z=[0.0] * 4, thickness=3.0, orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
                                 image_type=("DERIVED", "SECONDARY", "MPR")),
        "localizer": _write_series(root / "A", study=study, accession="ACC-A", number=1, z=[0.0], thickness=1.0,
                                   image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")),
        "gap": _write_series(root / "A", study=study, accession="ACC-A", number=4, z=[0.0, -1.0, -2.0, -4.0, -5.0],
                             thickness=1.0),
    }
    study = generate_uid()
    out["B"] = {
        "tilted": _write_series(root / "B", study=study, accession="ACC-B", number=2, z=[-1.0 * i for i in range(6)],
                                thickness=1.0, orientation=(1.0, 0.0, 0.0, 0.0, math.cos(tilt), math.sin(tilt))),
        "good": _write_series(root / "B", study=study, accession="ACC-B", number=3, z=[-5.0 * i for i in range(5)],
                              thickness=5.0),
    }
    study = generate_uid()
    out["C"] = {"mr": _write_series(root / "C", study=study, accession="ACC-C", number=2, z=[-5.0 * i for i in range(4)],
                                    thickness=5.0, modality="MR")}
    dx = _radiograph()
    dx.AccessionNumber = "ACC-D"
    dx.PatientID = "P-ACC-D"
    dx.StudyInstanceUID = generate_uid()
    (root / "D").mkdir(parents=True)
    dx.save_as(root / "D" / "dx.dcm", enforce_file_format=True)
    out["D"] = {"dx": dx.SeriesInstanceUID}
    out["root"] = root
    return out


def _results(workspace) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with workspace.sessions() as s:
        rows = s.execute(
            select(m.Exam.accession_number, m.LedgerEntry.result, m.LedgerEntry.status, m.LedgerEntry.manifest)
            .join(m.LedgerEntry, m.LedgerEntry.exam_id == m.Exam.id)
            .where(m.LedgerEntry.stage == "anatomy").order_by(m.LedgerEntry.id)
        ).all()
    return {acc: {"result": result, "status": status, "manifest": manifest} for acc, result, status, manifest in rows}


def _reasons(result: dict) -> dict[str, str]:
    return {s["series_instance_uid"]: s["reason"]["code"] for s in result["skipped"]}


def test_stage_is_registered_after_index() -> None:
    stage = default_registry().get("anatomy")
    assert stage.depends == ("index",) and stage.resources.model == "ct_organs"


def test_anatomy_stage_end_to_end(workspace, exams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import SimpleITK as sitk

    _config(tmp_path, DOUBLES, monkeypatch)
    ingest_path(workspace, exams["root"], workers=1)
    summary = run_pipeline(workspace, ["anatomy"], workers=2).to_dict()
    assert summary["stages"]["anatomy"]["succeeded"] == 4, summary
    results = _results(workspace)

    a = results["ACC-A"]["result"]
    assert a["status"] == "ok" and len(a["analysed"]) == 1
    done = a["analysed"][0]
    assert done["series_instance_uid"] == exams["A"]["good"]
    reasons = _reasons(a)
    assert reasons[exams["A"]["localizer"]] == "localizer"
    assert reasons[exams["A"]["gap"]] == "not_selected"  # flagged by index: tried after the clean one
    assert reasons[exams["A"]["coronal"]] == "not_selected"
    assert [s["name"] for s in done["structures"]] == ["body", "liver"]
    assert set(done["landmarks"]) == set(CT_LANDMARKS)  # the ledger stores JSON with sorted keys
    assert done["coverage"]["text"]["en"].startswith("covers lung apex")
    # derived objects: content-addressed, in the store, pointing back at the sources
    store = workspace.store
    labels_obj = done["objects"]["labels"]
    data = store.get(labels_obj["key"])
    assert hashlib.sha256(data).hexdigest() == labels_obj["sha256"] and labels_obj["key"].endswith(labels_obj["sha256"])
    path = tmp_path / "labels.nii.gz"
    path.write_bytes(data)
    labels = sitk.ReadImage(str(path))
    assert labels.GetSize() == (24, 24, 8) and labels.GetOrigin() == pytest.approx((-50.0, -60.0, -21.0))
    assert int((sitk.GetArrayFromImage(labels) == 9).sum()) == 8 * 36
    assert store.exists(done["objects"]["seg"]["key"])
    with workspace.sessions() as s:
        hashes = s.scalars(select(m.Instance.content_hash).join(m.Series, m.Series.id == m.Instance.series_id)
                           .where(m.Series.series_instance_uid == exams["A"]["good"])).all()
    assert done["sources"]["content_hashes"] == sorted(hashes) and done["sources"]["instances"] == 8
    assert results["ACC-A"]["manifest"]["versions"]["ct_organs"].startswith("python")

    b = results["ACC-B"]["result"]
    assert b["status"] == "ok"
    assert _reasons(b)[exams["B"]["tilted"]] == "gantry_tilt"  # tried first (thinnest), refused, recorded
    assert b["analysed"][0]["series_instance_uid"] == exams["B"]["good"]
    tilted = next(s for s in b["skipped"] if s["series_instance_uid"] == exams["B"]["tilted"])
    assert "机架倾斜" in tilted["reason"]["message"]

    c = results["ACC-C"]["result"]
    assert c["status"] == "nothing_analysed" and c["analysed"] == []
    assert _reasons(c) == {exams["C"]["mr"]: "no_model_for_modality"}

    d = results["ACC-D"]["result"]
    assert d["status"] == "ok" and d["analysed"][0]["kind"] == "radiograph"
    assert [s["name"] for s in d["analysed"][0]["structures"]] == ["lung_left", "lung_right"]
    assert store.exists(d["analysed"][0]["objects"]["labels"]["key"])

    again = run_pipeline(workspace, ["anatomy"], workers=2).to_dict()
    assert again["stages"]["anatomy"].get("unchanged") == 4, again
    json.dumps(results)  # plain JSON throughout


def test_stage_without_models_records_model_unavailable(workspace, exams, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, {"ct_organs": {"kind": "python", "factory": "tests.no_such_module:Nothing"},
                       "body_region": {"kind": "python", "factory": "tests.no_such_module:Nothing"},
                       "radiograph_anatomy": {"kind": "python", "factory": "tests.no_such_module:Nothing"}},
            monkeypatch)
    ingest_path(workspace, exams["root"], workers=1)
    summary = run_pipeline(workspace, ["anatomy"], workers=1).to_dict()
    assert summary["stages"]["anatomy"]["succeeded"] == 4, summary
    results = _results(workspace)
    a = results["ACC-A"]["result"]
    assert a["status"] == "model_unavailable"
    only = a["analysed"][0]
    assert only["status"] == "model_unavailable" and only["structures"] == [] and only["objects"] == {}
    assert only["models"]["ct_organs"]["status"] == "unavailable"
    assert "no_such_module" in only["models"]["ct_organs"]["reason"]
    assert results["ACC-D"]["result"]["status"] == "model_unavailable"


def test_stage_on_an_ingested_generator_exam(workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A chest-abdomen CT from the synthetic generator (localizer, thin and thick
    reconstructions, dose report): the thin original series is analysed, the rest recorded."""
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec

    _config(tmp_path, DOUBLES, monkeypatch)
    spec = ImagingSpec(exam_key="E1", seed=7, modality="CT", regions=["chest", "abdomen"],
                       acquisition="one_acquisition", phases=["native"], size="small", evidence={"derived": False})
    render_exam(spec, tmp_path / "gen", labels_dir=tmp_path / "labels")
    ingest_path(workspace, tmp_path / "gen", workers=1)
    summary = run_pipeline(workspace, ["anatomy"], workers=1).to_dict()
    assert summary["stages"]["anatomy"]["succeeded"] == 1, summary
    (only,) = _results(workspace).values()
    result = only["result"]
    assert result["status"] == "ok" and len(result["analysed"]) == 1
    done = result["analysed"][0]
    from sqlalchemy import func

    with workspace.sessions() as s:
        rows = s.execute(
            select(m.Series.series_instance_uid, m.Series.modality, func.count(m.Instance.id))
            .join(m.Instance, m.Instance.series_id == m.Series.id).group_by(m.Series.id)
        ).all()
    counts = {uid: n for uid, _, n in rows}
    assert counts[done["series_instance_uid"]] == max(counts.values())  # the thin stack
    assert done["sources"]["instances"] == done["scan"]["slices"] == counts[done["series_instance_uid"]]
    body = {s["name"]: s for s in done["structures"]}["body"]
    assert body["volume_ml"] > 0 and body["z_min_mm"] < body["z_max_mm"]
    reasons = {s["series_instance_uid"]: s["reason"]["code"] for s in result["skipped"]}
    assert set(reasons) == set(counts) - {done["series_instance_uid"]}  # every other series has a reason
    assert "localizer" in reasons.values()
    assert set(done["landmarks"]) == set(CT_LANDMARKS)
