"""The C-STORE receiver against real senders: a pynetdicom SCU, Orthanc, and a folder import
running in another process at the same time."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select

from radqc.catalogue import models as m
from radqc.pipelines.ingest.scp import CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS, StorageSCP
from tests.services import orthanc as orthanc_service
from tests.services.orthanc import RADQC_AET, RADQC_MODALITY, synthetic_study, uids_of

pytestmark = pytest.mark.orthanc
orthanc = orthanc_service.orthanc  # fixture: one real Orthanc for the session
pacs = orthanc_service.pacs  # fixture: that Orthanc, emptied before each test

#: pydicom test files covering the transfer syntaxes a hospital sends (bytes go through as-is).
SAMPLES = {
    "CT_small.dcm": "explicit VR little endian",
    "MR_small_implicit.dcm": "implicit VR little endian",
    "MR_small_bigendian.dcm": "explicit VR big endian",
    "image_dfl.dcm": "deflated explicit VR little endian",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG baseline",
    "JPGExtended.dcm": "JPEG extended",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "MR_small_jp2klossless.dcm": "JPEG 2000 lossless",
    "MR_small_RLE.dcm": "RLE lossless",
    "rtplan.dcm": "non-image storage class",
}


@pytest.fixture(autouse=True)
def _send_files_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pynetdicom send a file's data set bytes as they are on disk (no decode/re-encode)."""
    import pynetdicom._config as config

    monkeypatch.setattr(config, "STORE_SEND_CHUNKED_DATASET", True)


def dataset_bytes(part10: bytes) -> bytes:
    """The bytes after the file meta information (what travels over DIMSE)."""
    assert part10[128:132] == b"DICM"
    group_length = struct.unpack("<I", part10[140:144])[0]
    return part10[144 + group_length :]


def scu(*contexts: tuple[str, str], ae_title: str = "SENDER"):  # type: ignore[no-untyped-def]
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=ae_title)
    ae.add_requested_context(Verification)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    return ae


def contexts_for(paths: list[Path]) -> list[tuple[str, str]]:
    out = set()
    for path in paths:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        out.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    return sorted(out)


def catalogue_rows(workspace) -> list[m.Instance]:  # type: ignore[no-untyped-def]
    with workspace.sessions() as s:
        return list(s.scalars(select(m.Instance)))


def test_echo_and_store_keep_the_data_set_bytes(workspace, pydicom_test_files):
    paths = [pydicom_test_files / name for name in SAMPLES]
    with StorageSCP(workspace, port=0) as scp:
        ae = scu(*contexts_for(paths))
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="RADQC")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        statuses = {p.name: int(assoc.send_c_store(p).Status) for p in paths}
        assoc.release()
    assert statuses == {name: 0x0000 for name in SAMPLES}

    # Several samples are one MR instance in different encodings: same SOP Instance UID,
    # different bytes, so each is kept as a new version. One row per send, in send order.
    rows = sorted(catalogue_rows(workspace), key=lambda r: r.id)
    assert len(rows) == len(SAMPLES)
    for path, row in zip(paths, rows, strict=True):
        original = path.read_bytes()
        assert row.sop_instance_uid == str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        stored = workspace.store.get(row.storage_key)
        # The catalogue hash is the hash of the stored Part-10 file...
        assert hashlib.sha256(stored).hexdigest() == row.content_hash
        # ...whose data set is byte for byte what the sender holds (same hash), in its syntax.
        assert (
            hashlib.sha256(dataset_bytes(stored)).hexdigest()
            == hashlib.sha256(dataset_bytes(original)).hexdigest()
        )
        assert row.transfer_syntax == str(
            pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        )
        assert (
            pydicom.dcmread(workspace.store.local_path(row.storage_key)).SOPInstanceUID
            == row.sop_instance_uid
        )
        assert row.source == "scp" and row.source_ref == "SENDER@127.0.0.1"


def test_resent_instance_from_another_node_is_a_duplicate(workspace, pydicom_test_files):
    path = pydicom_test_files / "CT_small.dcm"
    with StorageSCP(workspace, port=0) as scp:
        for caller in ("MODALITY1", "FORWARDER"):
            assoc = scu(*contexts_for([path]), ae_title=caller).associate(
                "127.0.0.1", scp.port, ae_title="RADQC"
            )
            assert int(assoc.send_c_store(path).Status) == 0x0000
            assoc.release()
        assert scp.stats.summary.ingested == 1 and scp.stats.summary.duplicate == 1
    rows = catalogue_rows(workspace)
    assert len(rows) == 1 and rows[0].version == 1


def _part10_with_raw_data_set(tmp_path: Path, name: str, data_set: bytes, sop_uid: str) -> Path:
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = DicomBytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta)
    buf.write(data_set)
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return path


def test_bad_instances_are_quarantined_and_refused(workspace, pydicom_test_files, tmp_path):
    good = pydicom_test_files / "CT_small.dcm"
    original = good.read_bytes()
    # 1. a data set pydicom cannot decode: Rows (US, 2 bytes) sent with a length of 3
    at = original.find(b"\x28\x00\x10\x00US")
    bad_vr = dataset_bytes(original[: at + 6] + struct.pack("<H", 3) + b"\x80\x00\x00" + original[at + 10 :])
    unparseable = _part10_with_raw_data_set(tmp_path, "bad_vr.dcm", bad_vr, generate_uid())
    # 2. noise where the data set should be
    noise = _part10_with_raw_data_set(tmp_path, "noise.dcm", bytes(range(256)) * 4, generate_uid())
    # 3. a CT image without pixel data: parses, but does not match its SOP class
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    no_pixels = tmp_path / "no_pixels.dcm"
    ds.save_as(no_pixels, enforce_file_format=True)

    with StorageSCP(workspace, port=0) as scp:
        assoc = scu(*contexts_for([good])).associate("127.0.0.1", scp.port, ae_title="RADQC")
        statuses = [assoc.send_c_store(p) for p in (unparseable, noise, no_pixels, good)]
        assoc.release()  # the association went on after each refusal

    codes = [int(st.Status) for st in statuses]
    assert codes[0] == CANNOT_UNDERSTAND
    assert codes[1] in (CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS)
    assert codes[2] == DOES_NOT_MATCH_SOP_CLASS
    assert codes[3] == 0x0000
    assert all(st.ErrorComment.startswith("quarantined:") for st in statuses[:3])
    with workspace.sessions() as s:
        quarantined = list(s.scalars(select(m.QuarantineItem).order_by(m.QuarantineItem.id)))
        assert [q.source for q in quarantined] == ["scp"] * 3
        assert quarantined[0].reason_code == "invalid_element"
        assert quarantined[2].reason_code == "no_pixel_data"
        for q in quarantined:  # the refused bytes are kept for inspection
            assert q.storage_key and workspace.store.exists(q.storage_key)
            assert q.source_ref == "SENDER@127.0.0.1"
        assert s.scalar(select(func.count(m.Instance.id))) == 1
    assert workspace.status()["quarantined"] == 3


def test_unknown_calling_ae_is_rejected(workspace, pydicom_test_files):
    path = pydicom_test_files / "CT_small.dcm"
    with StorageSCP(workspace, port=0, allowed_aes=["PACS1"]) as scp:
        refused = scu(*contexts_for([path]), ae_title="INTRUDER").associate(
            "127.0.0.1", scp.port, ae_title="RADQC"
        )
        assert not refused.is_established
        allowed = scu(*contexts_for([path]), ae_title="PACS1").associate(
            "127.0.0.1", scp.port, ae_title="RADQC"
        )
        assert allowed.is_established
        assert int(allowed.send_c_store(path).Status) == 0x0000
        allowed.release()
    assert len(catalogue_rows(workspace)) == 1


def test_orthanc_sends_a_study_to_the_receiver(workspace, pacs):
    files = synthetic_study(accession="SCP-ORTHANC", series=2, slices=4)
    orthanc_ids = pacs.upload(files)
    with StorageSCP(workspace, ae_title=RADQC_AET, port=pacs.radqc_port):
        answer = pacs.send_to_modality(RADQC_MODALITY, orthanc_ids)
    assert answer.get("FailedInstancesCount", 0) == 0
    rows = catalogue_rows(workspace)
    assert sorted(r.sop_instance_uid for r in rows) == sorted(uids_of(f)[2] for f in files)
    originals = {uids_of(f)[2]: f for f in files}
    for row in rows:
        assert row.source_ref.startswith("ORTHANC@")
        stored = workspace.store.get(row.storage_key)
        assert dataset_bytes(stored) == dataset_bytes(originals[row.sop_instance_uid])
    status = workspace.status()
    assert (status["exams"], status["series"], status["instances"]) == (1, 2, 8)


def test_receiving_while_a_folder_import_runs(workspace, tmp_path):
    """Two writers (receiver in this process, `radqc ingest` in another) into the same exams
    and series at once: every instance ends up catalogued exactly once, nothing quarantined."""
    studies = [synthetic_study(accession=f"CONC{i}", series=2, slices=12, seed=i) for i in range(3)]
    folder = tmp_path / "import"
    folder.mkdir()
    to_send = []
    for study in studies:
        # Half of every series goes through the folder, the other half through C-STORE,
        # so both writers create/look up the same exam and series rows concurrently.
        for i, data in enumerate(study):
            if i % 2:
                to_send.append(data)
            else:
                (folder / f"{uids_of(data)[2]}.dcm").write_bytes(data)
    send_dir = tmp_path / "send"
    send_dir.mkdir()
    send_paths = []
    for data in to_send:
        path = send_dir / f"{uids_of(data)[2]}.dcm"
        path.write_bytes(data)
        send_paths.append(path)

    statuses: list[int] = []
    with StorageSCP(workspace, port=0) as scp:
        ae = scu(*contexts_for(send_paths[:1]))

        def send() -> None:
            assoc = ae.associate("127.0.0.1", scp.port, ae_title="RADQC")
            statuses.extend(int(assoc.send_c_store(p).Status) for p in send_paths)
            assoc.release()

        sender = threading.Thread(target=send)
        env = {**os.environ}  # RADQC_HOME / RADQC_DATABASE_URL of this workspace
        importer = subprocess.Popen(
            [sys.executable, "-m", "radqc.cli.main", "ingest", str(folder), "--workers", "2", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        sender.start()
        out, err = importer.communicate(timeout=300)
        sender.join(timeout=300)
    assert importer.returncode == 0, err.decode()
    assert statuses == [0x0000] * len(send_paths)

    expected = sorted(uids_of(d)[2] for study in studies for d in study)
    with workspace.sessions() as s:
        uids = list(s.scalars(select(m.Instance.sop_instance_uid)))
        assert sorted(uids) == expected
        assert max(Counter(uids).values()) == 1
        assert s.scalar(select(func.count(m.Series.id))) == 6
        assert s.scalar(select(func.count(m.Exam.id))) == 3
        assert s.scalar(select(func.count(m.QuarantineItem.id))) == 0
        sources = Counter(s.scalars(select(m.Instance.source)))
    assert sources == {"folder": len(expected) - len(send_paths), "scp": len(send_paths)}
