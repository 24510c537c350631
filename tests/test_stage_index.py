"""The ``index`` stage: counts, numbering and geometry measured right on known series."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from radqc.catalogue import models as m
from radqc.dicom.factory import ct_slice
from radqc.pipelines.ingest.folder import ingest_path
from radqc.pipelines.runner.execute import RetryPolicy
from radqc.pipelines.runner.local import LocalRunner
from radqc.pipelines.runner.registry import StageRegistry
from radqc.pipelines.runner.stage import InstanceInfo, SeriesInfo
from radqc.pipelines.stages import index as index_stage
from radqc.pipelines.stages.index import STAGES, _stack_geometry, scan_plane

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
C45, S45 = math.cos(math.radians(45)), math.sin(math.radians(45))
OBLIQUE = [1.0, 0.0, 0.0, 0.0, C45, S45]


def _slice(
    path: Path, *, study: str, series: str, series_number: int, number: int | None, position: list[float],
    orientation: list[float], image_type: list[str], description: str, seed: int, sop_uid: str | None = None,
    thickness: float = 2.5,
) -> str:
    ds = ct_slice(
        study_uid=study, series_uid=series, sop_uid=sop_uid, series_number=series_number, instance_number=number,
        position=position, orientation=orientation, image_type=image_type, pixel_spacing=(0.7, 0.8),
        slice_thickness=thickness, patient_id="IDX001", accession="IDXACC1", study_date="20260102",
        institution="Index Hospital", SeriesDescription=description,
        pixels=np.random.default_rng(seed).integers(-1000, 1000, (32, 32), dtype=np.int16),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds.SOPInstanceUID


@pytest.fixture
def indexed_study(tmp_path):
    """One CT study: 10 axial slices (2.5 mm) with slice 5 missing, a coronal localizer,
    a sagittal stack, a 45° oblique stack, and an axial stack with one irregular gap."""
    study = generate_uid()
    src = tmp_path / "study"
    axial = generate_uid()
    seed = 0
    for i in range(10):
        if i == 4:
            continue  # the missing slice (z = -10 mm, InstanceNumber 5)
        seed += 1
        _slice(src / f"ax{i}.dcm", study=study, series=axial, series_number=2, number=i + 1,
               position=[-120.0, -120.0, -i * 2.5], orientation=AXIAL, image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
               description="Abdomen 2.5mm", seed=seed)
    _slice(src / "loc.dcm", study=study, series=generate_uid(), series_number=1, number=1,
           position=[-250.0, 0.0, 100.0], orientation=CORONAL, image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"],
           description="Topogram 0.6 T20f", seed=100)
    sag = generate_uid()
    for i in range(4):
        _slice(src / f"sag{i}.dcm", study=study, series=sag, series_number=3, number=i + 1,
               position=[-5.0 + i * 3.0, -120.0, 100.0], orientation=SAGITTAL, image_type=["DERIVED", "SECONDARY", "MPR"],
               description="Sag MPR 3mm", seed=200 + i, thickness=3.0)
    obl = generate_uid()
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    for i in range(3):
        _slice(src / f"obl{i}.dcm", study=study, series=obl, series_number=4, number=i + 1,
               position=list(map(float, normal * i * 2.0)), orientation=OBLIQUE, image_type=["DERIVED", "SECONDARY"],
               description="Oblique MPR", seed=300 + i)
    irr = generate_uid()
    for i, z in enumerate([0.0, 5.0, 10.0, 17.0, 22.0]):  # one 7 mm gap in a 5 mm stack: irregular
        _slice(src / f"irr{i}.dcm", study=study, series=irr, series_number=5, number=i + 1,
               position=[0.0, 0.0, z], orientation=AXIAL, image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
               description="Chest 5mm", seed=400 + i, thickness=5.0)
    return study, src


def _run_index(workspace, force: bool = False):
    reg = StageRegistry(STAGES)
    return LocalRunner(workspace, reg, workers=2, retry=RetryPolicy(attempts=1, backoff_s=0)).run(force=force)


def _result(workspace, study_uid: str) -> dict:
    with workspace.sessions() as s:
        exam_id = s.scalar(select(m.Exam.id).where(m.Exam.study_instance_uid == study_uid))
        return s.scalars(
            select(m.LedgerEntry.result)
            .where(m.LedgerEntry.exam_id == exam_id, m.LedgerEntry.stage == "index", m.LedgerEntry.status == "succeeded")
            .order_by(m.LedgerEntry.id.desc())
        ).first()


def test_index_measures_geometry_of_generated_series(workspace, indexed_study, tmp_path):
    study, src = indexed_study
    assert ingest_path(workspace, src, workers=1).ingested == 9 + 1 + 4 + 3 + 5
    summary = _run_index(workspace)
    assert summary.succeeded == 1 and summary.failed == 0
    result = _result(workspace, study)
    assert result["schema"] == 1
    by_number = {s["series_number"]: s for s in result["series"]}

    axial = by_number[2]
    assert axial["instances"] == 9 and axial["plane"] == "axial" and axial["tilt_deg"] == 0
    geo = axial["geometry"]
    assert geo["slice_spacing_mm"] == pytest.approx(2.5)
    assert geo["z_extent_mm"] == pytest.approx(22.5)
    assert geo["z_range_mm"] == pytest.approx([-22.5, 0.0])
    assert geo["missing_slices"] == 1 and not geo["irregular_spacing"]
    assert geo["gaps"] == [{"after_mm": -12.5, "gap_mm": 5.0, "kind": "missing", "missing": 1}]
    assert axial["instance_numbers"]["missing"] == [5] and axial["instance_numbers"]["duplicate_count"] == 0
    assert axial["pixel_spacing_mm"] == [0.7, 0.8] and axial["slice_thickness_mm"] == 2.5
    assert (axial["rows"], axial["columns"]) == (32, 32) and axial["fov_mm"] == [22.4, 25.6]
    assert axial["flags"] == ["missing_slices", "instance_number_gaps"]
    assert not axial["localizer"]

    loc = by_number[1]
    assert loc["localizer"] and loc["localizer_by"] == "image_type"
    assert loc["plane"] == "coronal" and loc["flags"] == ["localizer"]

    sag = by_number[3]
    assert sag["plane"] == "sagittal" and sag["geometry"]["slice_spacing_mm"] == pytest.approx(3.0)
    assert sag["geometry"]["z_extent_mm"] == pytest.approx(9.0) and sag["flags"] == []

    obl = by_number[4]
    assert obl["plane"] == "oblique" and obl["tilt_deg"] == pytest.approx(45.0)
    assert obl["geometry"]["slice_spacing_mm"] == pytest.approx(2.0)

    irr = by_number[5]
    assert irr["geometry"]["irregular_spacing"] and irr["geometry"]["missing_slices"] == 0
    assert irr["geometry"]["slice_spacing_mm"] == pytest.approx(5.0)
    assert irr["geometry"]["spacing_max_mm"] == pytest.approx(7.0)
    assert irr["flags"] == ["irregular_spacing"]

    totals = result["totals"]
    assert totals["series"] == 5 and totals["instances"] == 22 and totals["localizer_series"] == 1
    assert totals["planes"] == {"axial": 2, "oblique": 1, "sagittal": 1}
    assert totals["missing_slices"] == 1 and totals["series_with_missing_slices"] == 1
    assert totals["series_with_irregular_spacing"] == 1 and totals["duplicate_sop_uids"] == 0
    assert totals["modalities"] == ["CT"]


def test_index_counts_only_the_newest_version_of_each_instance(workspace, indexed_study, tmp_path):
    study, src = indexed_study
    ingest_path(workspace, src, workers=1)
    _run_index(workspace)
    # re-send the first axial slice with corrected numbering: same SOP UID, new bytes
    first = pydicom.dcmread(src / "ax0.dcm")
    first.InstanceNumber = 5
    (tmp_path / "resend").mkdir()
    first.save_as(tmp_path / "resend" / "ax0.dcm", enforce_file_format=True)
    assert ingest_path(workspace, tmp_path / "resend", workers=1).new_versions == 1
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Instance.id))) == 23  # both versions are kept
    summary = _run_index(workspace)
    assert summary.succeeded == 1  # the new version made the exam pending
    axial = {s["series_number"]: s for s in _result(workspace, study)["series"]}[2]
    assert axial["instances"] == 9  # not 10: the old version is not counted
    numbers = axial["instance_numbers"]
    assert (numbers["min"], numbers["missing"], numbers["duplicate_count"]) == (2, [], 0)
    assert axial["sop_uid_duplicates"] == []


def test_index_runs_on_every_bundled_pydicom_file(workspace, pydicom_test_files, tmp_path):
    """Real headers of every kind (MR, US, CR, multi-frame, odd values) never fail the stage."""
    ingest_path(workspace, pydicom_test_files, workers=1)
    summary = _run_index(workspace)
    assert summary.failed == 0 and summary.succeeded == summary.exams > 10
    with workspace.sessions() as s:
        rows = s.execute(select(m.LedgerEntry.exam_id, m.LedgerEntry.result).where(m.LedgerEntry.stage == "index")).all()
        planes = set()
        notes = set()
        for exam_id, result in rows:
            newest = s.scalar(
                select(func.count(func.distinct(m.Instance.sop_instance_uid))).join(m.Series)
                .where(m.Series.exam_id == exam_id)
            )
            assert result["totals"]["instances"] == newest
            for series in result["series"]:
                planes.add(series["plane"])
                notes.add(series["geometry_note"])
    assert "axial" in planes  # CT_small and friends
    assert None in planes and "no_geometry" in notes  # projection images, secondary captures


def test_scan_plane_and_stack_rules():
    assert scan_plane(AXIAL)[0] == "axial"
    assert scan_plane(CORONAL)[0] == "coronal"
    assert scan_plane(SAGITTAL)[0] == "sagittal"
    assert scan_plane(OBLIQUE)[:2] == ("oblique", 45.0)
    tilt = math.radians(20)  # a CT gantry tilt stays axial
    plane, angle, _ = scan_plane([1, 0, 0, 0, math.cos(tilt), math.sin(tilt)])
    assert plane == "axial" and angle == pytest.approx(20.0)
    assert scan_plane([1, 0, 0, 1, 0, 0]) is None  # degenerate orientation
    # two images at each position (e.g. two phases in one series): spacing on unique positions
    stack = _stack_geometry([[0, 0, z] for z in (0, 0, 1, 1, 2, 2, 5)], [0, 0, 1])
    assert stack["duplicate_positions"] == 3 and stack["slice_spacing_mm"] == 1.0
    assert stack["missing_slices"] == 2 and stack["z_extent_mm"] == 5.0
    single = _stack_geometry([[0, 0, 7]], [0, 0, 1])
    assert single["slice_spacing_mm"] is None and single["z_extent_mm"] == 0.0
    assert set(index_stage.FLAGS) >= {"missing_slices", "irregular_spacing", "localizer"}


def _series(description: str, orientations: list[list[float]], image_type: list[str] | None = None) -> SeriesInfo:
    instances = tuple(
        InstanceInfo(
            id=k, sop_instance_uid=f"1.2.{k}", sop_class_uid=None, version=1, instance_number=k + 1,
            content_hash=f"{k:064x}", storage_key="", transfer_syntax=None, stored_transfer_syntax=None,
            pixel_hash=None,
            header={"ImageOrientationPatient": o, "ImagePositionPatient": [0.0, 0.0, float(k)],
                    **({"ImageType": image_type} if image_type else {})},
        )
        for k, o in enumerate(orientations)
    )
    return SeriesInfo(id=1, series_instance_uid="1.2", modality="MR", series_number=1, description=description,
                      body_part=None, instances=instances)


@pytest.mark.parametrize(
    ("description", "orientations", "image_type", "expected"),
    [
        ("T/S/C RF FAST PILOT", [AXIAL] * 3, None, "description"),
        ("3-pl loc", [AXIAL] * 3, None, "description"),
        ("Survey_32ch_HeadCoil", [CORONAL] * 3, None, "description"),
        ("", [AXIAL, CORONAL, SAGITTAL], None, "three_plane"),
        ("t2_tse_tra", [AXIAL] * 3, ["ORIGINAL", "PRIMARY", "LOCALIZER"], "image_type"),
        ("t2_tse_tra", [AXIAL] * 3, ["ORIGINAL", "PRIMARY", "M"], None),
        ("block of slices", [AXIAL] * 3, None, None),  # "loc" inside a word is not a localizer
        ("RT planning CT", [AXIAL] * 3, None, None),
    ],
)
def test_localizer_detection_rules(description, orientations, image_type, expected):
    out = index_stage.index_series(_series(description, orientations, image_type))
    assert out["localizer_by"] == expected
    assert out["localizer"] is (expected is not None)
    assert ("localizer" in out["flags"]) is (expected is not None)
