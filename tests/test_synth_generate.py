"""``radqc synth``: a generated set is deterministic, complete, and accepted by ingest.

Tests that only check the planner/generator plumbing use the tiny stand-in renderer in
tests/synth_stub.py; the end-to-end tests use the real renderer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from radqc.datasets.synthetic.generate import GenerateError, generate_set, iter_truth, load_manifest
from tests.synth_stub import stub_render


def _tree_digest(root: Path, *subdirs: str) -> dict[str, str]:
    out = {}
    for sub in subdirs:
        for path in sorted((root / sub).rglob("*")):
            if path.is_file():
                out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def stub_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate_set(out, 60, seed=42, profile_name="mixed", renderer=stub_render)
    return out


def test_same_seed_same_records_and_truth(stub_set: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_set(again, 60, seed=42, profile_name="mixed", renderer=stub_render)
    assert _tree_digest(stub_set, "records", "truth") == _tree_digest(again, "records", "truth")
    assert (stub_set / "manifest.json").read_bytes() == (again / "manifest.json").read_bytes()
    other = tmp_path / "other"
    generate_set(other, 60, seed=43, profile_name="mixed", renderer=stub_render)
    assert _tree_digest(stub_set, "records") != _tree_digest(other, "records")


def test_set_layout_manifest_and_truth(stub_set: Path) -> None:
    manifest = load_manifest(stub_set)
    assert manifest["n_exams"] == 60 and manifest["seed"] == 42 and manifest["generator_version"]
    truths = list(iter_truth(stub_set))
    assert [t["exam_key"] for t in truths] == [e["exam_key"] for e in manifest["exams"]]
    exam_lines = (stub_set / "records/exams.jsonl").read_text(encoding="utf-8").splitlines()
    charge_lines = (stub_set / "records/charges.jsonl").read_text(encoding="utf-8").splitlines()
    malformed = {(m["file"], m["line"]) for m in manifest["malformed_records"]}
    assert len(exam_lines) == 60 + sum(1 for f, _ in malformed if f.endswith("exams.jsonl"))
    for t in truths:
        line = t["records"]["exam_line"]
        record = json.loads(exam_lines[line - 1])
        assert record["accession_number"] == t["exam"]["accession_number"]
        assert record["findings"] == "".join(s["text"] for s in t["report"]["findings"])
        assert record["exam_items"] == t["order"]["exam_items"]
        for n, expected in zip(t["records"]["charge_lines"], t["charges"]["lines"], strict=True):
            got = json.loads(charge_lines[n - 1])
            assert got["charge_code"] == expected["charge_code"] and got["accession_number"] == record["accession_number"]
        for s in t["imaging"]["series"]:
            for f in s["files"]:
                assert (stub_set / t["export_dir"] / f).is_file()
        assert t["expected_qc"]["grade"] is not None
        assert t["patient"]["id_valid"] == (t["patient"]["id_status"] == "valid")
    for bad in manifest["malformed_files"]:
        assert (stub_set / bad["path"]).exists()


def test_f3_overlap_is_measured_on_the_written_windows(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    generate_set(out, 80, seed=9, profile_name="audit", renderer=stub_render)
    f3 = [irr for t in iter_truth(out) for irr in t["charges"]["irregularities"] if irr["id"] == "F3"]
    assert f3, "the audit profile seeds device-time conflicts in 80 exams"
    for irr in f3:
        assert irr["detail"]["dicom_overlap_seconds"] > 0, irr


def test_output_folder_is_protected(stub_set: Path, tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="not empty"):
        generate_set(stub_set, 2, seed=1, renderer=stub_render)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(GenerateError, match="not a generated set"):
        generate_set(foreign, 2, seed=1, renderer=stub_render, force=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_records_accepted_by_ingest_records_except_the_malformed(stub_set: Path, workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.catalogue import models as m
    from radqc.datasets.synthetic.generate import ingest_generated_set

    manifest = load_manifest(stub_set)
    summary = ingest_generated_set(workspace, stub_set, workers=1)
    exams, charges = summary["exam_records"], summary["charge_lines"]
    bad_exam = [m_ for m_ in manifest["malformed_records"] if m_["file"].endswith("exams.jsonl")]
    bad_charge = [m_ for m_ in manifest["malformed_records"] if m_["file"].endswith("charges.jsonl")]
    assert exams["quarantined"] == len(bad_exam)
    assert charges["quarantined"] == len(bad_charge)
    assert exams["exam_records"] == 60
    assert summary["images"]["quarantined"] == len(manifest["malformed_files"])
    with workspace.sessions() as s:
        refs = set(s.scalars(select(m.QuarantineItem.source_ref).where(m.QuarantineItem.source == "records")))
        expected = {f"{(stub_set / b['file']).resolve()}:{b['line']}" for b in manifest["malformed_records"]}
        assert refs == expected
        linked = s.scalar(select(func.count(m.ExamRecord.id)).where(m.ExamRecord.exam_id.is_not(None)))
        assert linked == 60
    assert manifest["malformed_records"], "the profile seeds some malformed lines in 60 exams"


# -- the real renderer --------------------------------------------------------------------
def _real_renderer_available() -> bool:
    try:
        from radqc.datasets.synthetic.generate import default_renderer

        default_renderer()
        return True
    except GenerateError:
        return False


needs_renderer = pytest.mark.skipif(not _real_renderer_available(), reason="the image renderer has not landed yet")


@needs_renderer
def test_radqc_synth_end_to_end_writes_readable_dicom_records_and_truth(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from radqc.cli.main import app

    out = tmp_path / "set"
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--exams", "6", "--size", "small", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["exams"] == 6 and summary["files"] > 0
    manifest = load_manifest(out)
    broken = {(out / b["path"]).resolve() for b in manifest["malformed_files"]}
    n = 0
    for path in (out / "dicom").rglob("*"):
        if path.is_file() and path.resolve() not in broken:
            ds = pydicom.dcmread(path)
            assert ds.SOPInstanceUID and ds.StudyInstanceUID
            n += 1
    assert n == summary["files"]
    for t in iter_truth(out):
        assert t["imaging"]["study_instance_uid"]
        acc = {pydicom.dcmread(out / t["export_dir"] / s["files"][0], stop_before_pixels=True).AccessionNumber
               for s in t["imaging"]["series"] if s["files"]}
        assert acc == {t["exam"]["accession_number"]}

    # radqc eval on the real set: every instance catalogued, every record linked
    for stage, rates in (("ingest", ("instances_catalogued", "exams_complete", "accession_match", "hospital_code_match")),
                         ("records", ("accession_linkage", "charge_linkage", "valid_accepted"))):
        evaluated = CliRunner().invoke(app, ["eval", stage, "--data", str(out), "--workers", "1", "--json"])
        assert evaluated.exit_code == 0, evaluated.output
        report = json.loads(evaluated.stdout)
        for rate in rates:
            assert report["rates"][rate]["value"] == 1.0, (stage, rate, report["rates"][rate], report["failures"][:3])


@needs_renderer
def test_charge_irregularities_are_true_in_the_written_dicom(tmp_path: Path) -> None:
    """With the real renderer: what each F-id says is missing really is missing in the files."""
    out = tmp_path / "audit"
    generate_set(out, 30, seed=6, profile_name="audit", size="small")  # seed 6 seeds F1 F3 F5 F10 F11
    truths = {t["exam_key"]: t for t in iter_truth(out)}

    def headers(t: dict) -> list:
        return [pydicom.dcmread(out / t["export_dir"] / s["files"][0], stop_before_pixels=True)
                for s in t["imaging"]["series"] if s["files"]]

    seen = set()
    for t in truths.values():
        assert len(t["expected_qc"]["deductions"]) == len(t["imaging"]["applied_defects"])
        for irr in t["charges"]["irregularities"]:
            fid = irr["id"]
            seen.add(fid)
            if fid == "F1":
                source = truths[irr["detail"]["partner_exam"]]
                mine = set(t["imaging"]["pixel_hashes"].values())
                assert mine and mine <= set(source["imaging"]["pixel_hashes"].values())
                assert t["imaging"]["study_instance_uid"] != source["imaging"]["study_instance_uid"]
            elif fid == "F3":
                assert irr["detail"]["dicom_overlap_seconds"] > 0
                partner = truths[irr["detail"]["partner_exam"]]
                assert {str(h.DeviceSerialNumber) for h in headers(t)} == {str(h.DeviceSerialNumber) for h in headers(partner)}
            elif fid == "F5":
                assert not any(h.get("ContrastBolusAgent") for h in headers(t))
                assert {s["phase"] for s in t["imaging"]["series"]} <= {None, "native"}
            elif fid == "F10":
                assert not any("DERIVED" in list(h.ImageType) for h in headers(t) if h.Modality == "CT" and "ImageType" in h
                               and h.SOPClassUID != "1.2.840.10008.5.1.4.1.1.7")
            elif fid == "F11":
                thick = [float(h.SliceThickness) for h in headers(t) if "ImageType" in h and "ORIGINAL" in list(h.ImageType)
                         and "AXIAL" in list(h.ImageType) and h.get("SliceThickness")]
                assert thick and min(thick) >= 2.0
    assert {"F1", "F3", "F5", "F10", "F11"} <= seen
