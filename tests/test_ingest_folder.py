"""Folder and zip ingest: counts, duplicates, versions, and every kind of bad input."""

from __future__ import annotations

import dataclasses
import io
import shutil
import struct
import zipfile
from pathlib import Path

import pydicom
from sqlalchemy import func, select

from radqc.catalogue import models as m
from radqc.pipelines.ingest.folder import ingest_path


def _ct_bytes(pydicom_test_files: Path, **changes: object) -> bytes:
    ds = pydicom.dcmread(pydicom_test_files / "CT_small.dcm")
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_ingest_counts_add_up_and_reingest_is_a_no_op(workspace, pydicom_test_files, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(pydicom_test_files, src)
    first = ingest_path(workspace, src, workers=2)
    assert first.files_seen > 100
    assert first.ingested + first.duplicate + first.quarantined == first.files_seen
    assert first.ingested > 50 and first.quarantined > 0
    status = workspace.status()
    second = ingest_path(workspace, src, workers=1)
    assert second.ingested == 0
    assert second.duplicate == first.ingested + first.duplicate
    assert second.quarantined == first.quarantined
    assert workspace.status() == status  # nothing new, not even quarantine rows


def test_same_sop_uid_with_new_bytes_is_kept_as_a_new_version(workspace, pydicom_test_files, tmp_path):
    original = _ct_bytes(pydicom_test_files)
    changed = _ct_bytes(pydicom_test_files, SeriesDescription="re-sent after correction")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.dcm").write_bytes(original)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "1.dcm").write_bytes(changed)
    ingest_path(workspace, tmp_path / "a")
    summary = ingest_path(workspace, tmp_path / "b")
    assert summary.ingested == 1 and summary.new_versions == 1
    with workspace.sessions() as s:
        rows = s.scalars(select(m.Instance).order_by(m.Instance.version)).all()
        assert [r.version for r in rows] == [1, 2]
        assert rows[0].content_hash != rows[1].content_hash
        for row in rows:  # both versions' bytes are still there, unmodified
            assert workspace.store.verify(row.storage_key)


def _wrong_vr_length(data: bytes) -> bytes:
    at = data.find(b"\x28\x00\x10\x00US")
    return data[: at + 6] + struct.pack("<H", 3) + b"\x80\x00\x00" + data[at + 10 :]


def _no_pixels(pydicom_test_files: Path) -> bytes:
    ds = pydicom.dcmread(pydicom_test_files / "CT_small.dcm")
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _missing_uid(pydicom_test_files: Path) -> bytes:
    ds = pydicom.dcmread(pydicom_test_files / "CT_small.dcm")
    del ds.SeriesInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_every_kind_of_bad_file_is_quarantined_with_its_reason(workspace, pydicom_test_files, tmp_path):
    good = _ct_bytes(pydicom_test_files)
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "good.dcm").write_bytes(good)
    (folder / "truncated.dcm").write_bytes(good[: len(good) // 2])
    (folder / "zero.dcm").write_bytes(b"")
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 not an image" * 50)
    (folder / "badvr.dcm").write_bytes(_wrong_vr_length(good))
    (folder / "nopixels.dcm").write_bytes(_no_pixels(pydicom_test_files))
    (folder / "nouid.dcm").write_bytes(_missing_uid(pydicom_test_files))
    (folder / "huge.dcm").write_bytes(good + b"\0" * 4096)
    with zipfile.ZipFile(folder / "export.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ok/CT1.dcm", _ct_bytes(pydicom_test_files, SOPInstanceUID="1.2.3.4.5.6.7.8.9"))
        archive.writestr("../../etc/evil.dcm", good)
        archive.writestr("bomb.dcm", b"\0" * 5_000_000)
    (folder / "broken.zip").write_bytes(b"PK\x03\x04" + b"garbage" * 100)
    workspace.settings = dataclasses.replace(workspace.settings, max_file_bytes=len(good) + 1000)
    summary = ingest_path(workspace, folder, workers=1)
    assert summary.ingested == 2
    assert summary.ingested + summary.duplicate + summary.quarantined == summary.files_seen
    with workspace.sessions() as s:
        reasons = {
            q.source_ref.split("!", 1)[1] if "!" in q.source_ref else Path(q.source_ref).name: q.reason_code
            for q in s.scalars(select(m.QuarantineItem))
        }
    assert reasons["truncated.dcm"] == "pixel_data_short"
    assert reasons["zero.dcm"] == "empty_file"
    assert reasons["report.pdf"] == "not_dicom"
    assert reasons["badvr.dcm"] == "invalid_element"
    assert reasons["nopixels.dcm"] == "no_pixel_data"
    assert reasons["nouid.dcm"] == "missing_tag"
    assert reasons["huge.dcm"] == "oversized"
    assert reasons["../../etc/evil.dcm"] == "unsafe_path"
    assert reasons["bomb.dcm"] == "zip_bomb"
    assert reasons["broken.zip"] in ("bad_zip", "not_dicom")
    with workspace.sessions() as s:
        kept = s.scalars(select(m.QuarantineItem).where(m.QuarantineItem.reason_code == "pixel_data_short")).one()
        assert workspace.store.get(kept.storage_key) == good[: len(good) // 2]  # nothing lost


def test_patient_identifiers_are_never_stored_in_clear(workspace, pydicom_test_files, tmp_path):
    data = _ct_bytes(pydicom_test_files, PatientName="Zhang^San", PatientID="P-778899")
    (tmp_path / "x.dcm").write_bytes(data)
    ingest_path(workspace, tmp_path / "x.dcm")
    with workspace.sessions() as s:
        patient = s.scalars(select(m.Patient)).one()
        assert b"Zhang" not in patient.identifiers_enc and "P-778899" not in patient.pseudo_key
        assert workspace.vault.decrypt(patient.identifiers_enc)["patient_id"] == "P-778899"
        assert s.scalar(select(func.count(m.Exam.id))) == 1
    if workspace.settings.is_sqlite:
        raw = Path(workspace.settings.database_url.split("///", 1)[1]).read_bytes()
        raw += b"".join(p.read_bytes() for p in Path(workspace.settings.database_url.split("///", 1)[1]).parent.glob("*-wal"))
        assert b"P-778899" not in raw and b"Zhang" not in raw


def test_ingest_pixel_hash_is_layout_independent_and_matches_the_archive_definition(pydicom_test_files):
    """Big-endian and colour-by-plane files hash like their little-endian, interleaved twin."""
    from radqc.dicom.parse import InvalidDicom, parse_instance
    from radqc.pipelines.archive.transcode import stored_pixel_hash

    compared = 0
    for path in sorted(pydicom_test_files.glob("*.dcm")):
        data = path.read_bytes()
        try:
            parsed = parse_instance(data)
        except InvalidDicom:
            continue
        if parsed.pixel_hash is None:
            continue
        try:
            reference = stored_pixel_hash(data)
        except Exception:  # the archive refuses some layouts; nothing to compare then
            continue
        assert parsed.pixel_hash == reference, path.name
        compared += 1
    assert compared >= 10
    little = parse_instance((pydicom_test_files / "MR_small.dcm").read_bytes()).pixel_hash
    big = parse_instance((pydicom_test_files / "MR_small_bigendian.dcm").read_bytes()).pixel_hash
    assert little == big


def test_same_data_set_with_another_file_header_is_a_duplicate_not_a_version(workspace, pydicom_test_files, tmp_path):
    """A PACS re-writes the Part-10 header; the data set is what identifies a re-send."""
    ds = pydicom.dcmread(pydicom_test_files / "CT_small.dcm")
    (tmp_path / "cd").mkdir()
    (tmp_path / "pacs").mkdir()
    ds.save_as(tmp_path / "cd" / "1.dcm", enforce_file_format=True)
    ds.file_meta.ImplementationVersionName = "OTHER_PACS_1"
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    ds.save_as(tmp_path / "pacs" / "1.dcm", enforce_file_format=True)
    assert (tmp_path / "cd" / "1.dcm").read_bytes() != (tmp_path / "pacs" / "1.dcm").read_bytes()
    assert ingest_path(workspace, tmp_path / "cd").ingested == 1
    second = ingest_path(workspace, tmp_path / "pacs")
    assert (second.ingested, second.duplicate) == (0, 1)
    assert workspace.status()["instances"] == 1


def test_cli_ingest_with_archive_compresses_only_what_it_added(workspace, tmp_path):
    """`radqc ingest --archive`: the pipeline option of the lossless archive."""
    import json

    from typer.testing import CliRunner

    from radqc.cli.main import app
    from tests.dicom_factory import ct_series

    ct_series(tmp_path / "old", n_slices=3, size=64, accession="OLD1")
    ingest_path(workspace, tmp_path / "old")
    ct_series(tmp_path / "new", n_slices=4, size=64, accession="NEW1")
    out = CliRunner().invoke(app, ["ingest", str(tmp_path / "new"), "--archive", "--json", "--workers", "1"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["ingested"] == 4
    assert doc["archive"]["archived"] == 4 and doc["archive"]["failed"] == 0
    with workspace.sessions() as s:
        by_accession = {
            acc: archived
            for acc, archived in s.execute(
                select(m.Exam.accession_number, m.Instance.archived_at)
                .join(m.Series, m.Series.exam_id == m.Exam.id)
                .join(m.Instance, m.Instance.series_id == m.Series.id)
            )
        }
    assert by_accession["NEW1"] is not None and by_accession["OLD1"] is None
