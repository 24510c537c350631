"""DICOMweb over the catalogue: QIDO-RS, WADO-RS metadata/frames/original, scope and identifiers.

The catalogue is built the real way: DICOM files ingested from a folder, one hospital's exam
archived to JPEG-LS (so frames are decoded from the archive's codec). A real DICOMweb client
(``dicomweb_client``) talks to a real uvicorn server to prove interoperability.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select

from radqc.catalogue import models as m
from tests.serving_support import add_user, login, make_client

H_A, H_B = "H_A", "H_B"
ID_NUMBER_B = "110101199001011234"
NAME_B = "Zhang^San"
PID_B = "PID-B-7788"


@dataclass
class Catalogue:
    """Two hospitals' CT exams (B's archived to JPEG-LS, its patient authorised for H_A later)."""

    study_a: str
    series_a: str
    study_b: str
    series_b: str
    exam_a: int
    exam_b: int
    files_a: list[Path]
    files_b: list[Path]


def _write_series(folder: Path, hospital: str, n: int, *, reverse_numbers: bool, seed: int, **identity: Any) -> list[Path]:
    from radqc.dicom.factory import ct_series_datasets

    folder.mkdir(parents=True, exist_ok=True)
    datasets = ct_series_datasets(n, size=32, seed=seed, series_number=2, **identity)
    paths = []
    for i, ds in enumerate(datasets):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = hospital, "99LOCAL", hospital
        ds.InstitutionCodeSequence = [code]
        if reverse_numbers:  # InstanceNumber against the slice order: the stack must follow position
            ds.InstanceNumber = n - i
        ds.BodyPartExamined = "CHEST"
        ds.add_new((0x0009, 0x0010), "LO", "ACME PRIVATE")
        ds.add_new((0x0009, 0x1001), "LO", "private payload")
        path = folder / f"CT{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def build_catalogue(ws: Any, tmp_path: Path) -> Catalogue:
    """Ingest two small CT series (two hospitals) and archive hospital B's to JPEG-LS."""
    from radqc.pipelines.archive.service import archive_instances
    from radqc.pipelines.ingest.folder import ingest_path

    files_a = _write_series(tmp_path / "src" / "a", H_A, 6, reverse_numbers=True, seed=1, accession="ACC-A1",
                            patient_id="PID-A-1", patient_name="Li^Si")
    files_b = _write_series(tmp_path / "src" / "b", H_B, 4, reverse_numbers=False, seed=2, accession="ACC-B1",
                            patient_id=PID_B, patient_name=NAME_B, OtherPatientIDs=ID_NUMBER_B,
                            PatientAddress="1 Secret Road")
    summary = ingest_path(ws, tmp_path / "src", workers=1)
    assert summary.ingested == 10, summary
    with ws.sessions() as s:
        exams = {e.hospital.code: e for e in s.scalars(select(m.Exam)).all()}  # type: ignore[union-attr]
        series = {sr.exam_id: sr for sr in s.scalars(select(m.Series)).all()}
        cat = Catalogue(exams[H_A].study_instance_uid, series[exams[H_A].id].series_instance_uid,
                        exams[H_B].study_instance_uid, series[exams[H_B].id].series_instance_uid,
                        exams[H_A].id, exams[H_B].id, files_a, files_b)  # type: ignore[arg-type]
    result = archive_instances(ws, codec="jpegls", exams=[str(cat.exam_b)], workers=1, keep_original=False)
    assert result.archived == 4 and result.failed == 0, result.to_dict()
    with ws.sessions() as s:
        syntaxes = set(s.scalars(select(m.Instance.stored_transfer_syntax).join(m.Series)
                                 .where(m.Series.exam_id == cat.exam_b)).all())
    assert syntaxes == {"1.2.840.10008.1.2.4.80"}, syntaxes  # JPEG-LS lossless in the store
    return cat


def authorise_b_for_a(ws: Any, exam_b: int) -> None:
    from radqc.serving.accounts import grant_authorisation, person_key_of_exam

    with ws.transaction() as s:
        grant_authorisation(s, person_key_of_exam(s, exam_b), H_A, channel="test")


USERS = {"dr_a": ("doctor", H_A), "dr_b": ("doctor", H_B), "expert": ("qc_expert_l1", None),
         "eng": ("data_engineer", None), "portal": ("patient_portal", None)}


class Logins:
    """Users made on first use (an Argon2id hash costs ~0.5 s: make only those a test needs)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.headers: dict[str, dict[str, str]] = {}

    def __call__(self, client: Any, name: str) -> dict[str, str]:
        if name not in self.headers:
            role, hospital = USERS[name]
            add_user(self.ws, name, role, hospital)
            self.headers[name] = login(client, name)  # tokens are valid for every app over this workspace
        return self.headers[name]


@pytest.fixture
def setup(workspace, tmp_path):  # type: ignore[no-untyped-def]
    cat = build_catalogue(workspace, tmp_path)
    return workspace, cat, make_client(workspace), Logins(workspace)


def _tag(ds: dict[str, Any], keyword: str) -> Any:
    from radqc.serving.imaging.dicomjson import tag_hex

    attr = ds.get(tag_hex(keyword))
    if not attr or "Value" not in attr:
        return None
    value = attr["Value"][0]
    return value.get("Alphabetic") if isinstance(value, dict) else value


def _studies(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/dicomweb/studies", headers=headers, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    return r.json()


# -- QIDO-RS and scope -------------------------------------------------------------------------------


def test_qido_lists_only_studies_in_scope_and_authorisation_opens_them(setup) -> None:  # type: ignore[no-untyped-def]
    ws, cat, client, auth = setup
    dr_a = auth(client, "dr_a")
    uids = {_tag(s, "StudyInstanceUID") for s in _studies(client, dr_a)}
    assert uids == {cat.study_a}  # hospital B's study is not even listed
    assert _studies(client, dr_a, StudyInstanceUID=cat.study_b) == []
    for path in (f"/dicomweb/studies/{cat.study_b}/series", f"/dicomweb/studies/{cat.study_b}/metadata",
                 f"/dicomweb/studies/{cat.study_b}/series/{cat.series_b}/metadata"):
        r = client.get(path, headers=dr_a)
        assert r.status_code == 404, (path, r.status_code)
    missing = client.get("/dicomweb/studies/1.2.3.4.5/series", headers=dr_a)
    assert missing.status_code == 404 and missing.json() == client.get(
        f"/dicomweb/studies/{cat.study_b}/series", headers=dr_a).json()  # looks exactly like a missing study

    authorise_b_for_a(ws, cat.exam_b)
    uids = {_tag(s, "StudyInstanceUID") for s in _studies(client, dr_a)}
    assert uids == {cat.study_a, cat.study_b}
    expert = auth(client, "expert")
    assert {_tag(s, "StudyInstanceUID") for s in _studies(client, expert)} == {cat.study_a, cat.study_b}


def test_qido_filters_counts_paging(setup) -> None:  # type: ignore[no-untyped-def]
    _ws, cat, client, auth = setup
    h = auth(client, "expert")
    both = _studies(client, h)
    assert len(both) == 2
    by_uid = {_tag(s, "StudyInstanceUID"): s for s in both}
    assert _tag(by_uid[cat.study_a], "NumberOfStudyRelatedInstances") == 6
    assert _tag(by_uid[cat.study_b], "NumberOfStudyRelatedSeries") == 1
    assert _tag(by_uid[cat.study_b], "ModalitiesInStudy") == "CT"
    assert [_tag(s, "AccessionNumber") for s in _studies(client, h, AccessionNumber="ACC-B1")] == ["ACC-B1"]
    assert {_tag(s, "AccessionNumber") for s in _studies(client, h, AccessionNumber="ACC-*")} == {"ACC-A1", "ACC-B1"}
    assert _studies(client, h, AccessionNumber="ACC-%") == []  # SQL wildcards are literal
    assert _studies(client, h, ModalitiesInStudy="MR") == []
    assert len(_studies(client, h, ModalitiesInStudy="CT")) == 2
    assert len(_studies(client, h, StudyDate="19000101-21000101")) == 2
    assert _studies(client, h, StudyDate="19000101") == []
    assert client.get("/dicomweb/studies", headers=h, params={"StudyDate": "yesterday"}).status_code == 400
    page1 = _studies(client, h, limit=1)
    page2 = _studies(client, h, limit=1, offset=1)
    assert len(page1) == len(page2) == 1 and _tag(page1[0], "StudyInstanceUID") != _tag(page2[0], "StudyInstanceUID")
    assert client.get("/dicomweb/studies", headers=h, params={"limit": 0}).status_code == 422

    series = client.get(f"/dicomweb/studies/{cat.study_a}/series", headers=h).json()
    assert [_tag(s, "SeriesInstanceUID") for s in series] == [cat.series_a]
    assert _tag(series[0], "NumberOfSeriesRelatedInstances") == 6
    assert _tag(series[0], "Modality") == "CT"
    instances = client.get(f"/dicomweb/studies/{cat.study_a}/series/{cat.series_a}/instances", headers=h).json()
    assert len(instances) == 6
    assert {_tag(i, "SOPInstanceUID") for i in instances} == {str(pydicom.dcmread(p).SOPInstanceUID)
                                                                for p in cat.files_a}
    assert _tag(instances[0], "Rows") == 32


def test_identifiers_only_for_patient_identity(setup) -> None:  # type: ignore[no-untyped-def]
    ws, cat, client, auth = setup
    authorise_b_for_a(ws, cat.exam_b)
    with ws.sessions() as s:
        pseudo = s.scalar(select(m.Patient.pseudo_key).join(m.Exam, m.Exam.patient_id == m.Patient.id)
                          .where(m.Exam.id == cat.exam_b))
    doctor, engineer = auth(client, "dr_a"), auth(client, "eng")  # doctors have patient.identity
    study = next(s for s in _studies(client, doctor) if _tag(s, "StudyInstanceUID") == cat.study_b)
    assert _tag(study, "PatientName") == NAME_B and _tag(study, "PatientID") == PID_B
    study = _studies(client, engineer, StudyInstanceUID=cat.study_b)[0]
    assert _tag(study, "PatientName") == pseudo and _tag(study, "PatientID") == pseudo

    url = f"/dicomweb/studies/{cat.study_b}/series/{cat.series_b}/metadata"
    full = client.get(url, headers=doctor)
    assert full.status_code == 200 and full.headers["content-type"].startswith("application/dicom+json")
    meta = full.json()
    assert len(meta) == 4
    assert _tag(meta[0], "PatientName") == NAME_B and _tag(meta[0], "PatientAddress") == "1 Secret Road"
    assert "7FE00010" in meta[0] and "BulkDataURI" in meta[0]["7FE00010"]
    hidden = client.get(url, headers=engineer).json()
    text = str(hidden)
    assert NAME_B.split("^")[0] not in text and PID_B not in text and ID_NUMBER_B not in text
    assert "Secret Road" not in text and "private payload" not in text
    assert _tag(hidden[0], "PatientName") == pseudo and _tag(hidden[0], "PatientID") == pseudo
    assert _tag(hidden[0], "SOPInstanceUID") == _tag(meta[0], "SOPInstanceUID")
    assert _tag(hidden[0], "Rows") == 32  # the rest of the header is there

    with ws.sessions() as s:
        views = s.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.action == "image.view")).all()
        assert len(views) == 2 and {v.exam_id for v in views} == {cat.exam_b}
        assert all(NAME_B not in str(v.detail) and PID_B not in (v.target or "") for v in views)


# -- frames and originals -----------------------------------------------------------------------------


def _frames(client: Any, headers: dict[str, str], url: str) -> list[bytes]:
    r = client.get(url, headers={**headers, "Accept": 'multipart/related; type="application/octet-stream"'})
    assert r.status_code == 200, r.text
    content_type = r.headers["content-type"]
    assert content_type.startswith("multipart/related") and 'type="application/octet-stream"' in content_type
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    parts = r.content.split(b"--" + boundary)
    out = []
    for part in parts[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"application/octet-stream" in head
        out.append(body[:-2])  # the CRLF before the next boundary
    return out


def test_frames_equal_the_decoded_pixels_including_jpegls_archive(setup) -> None:  # type: ignore[no-untyped-def]
    _ws, cat, client, auth = setup
    h = auth(client, "expert")
    for study, series, files in ((cat.study_a, cat.series_a, cat.files_a), (cat.study_b, cat.series_b, cat.files_b)):
        for path in files[:2]:
            ds = pydicom.dcmread(path)
            url = f"/dicomweb/studies/{study}/series/{series}/instances/{ds.SOPInstanceUID}/frames/1"
            (frame,) = _frames(client, h, url)
            assert frame == ds.pixel_array.astype("<i2").tobytes()
    ds = pydicom.dcmread(cat.files_a[0])
    base = f"/dicomweb/studies/{cat.study_a}/series/{cat.series_a}/instances/{ds.SOPInstanceUID}"
    assert len(_frames(client, h, base + "/frames/1,1")) == 2
    assert client.get(base + "/frames/2", headers=h).status_code == 404
    assert client.get(base + "/frames/abc", headers=h).status_code == 422
    assert client.get(base + "/frames/1", headers={**h, "Accept": "image/jls"}).status_code == 406
    ohif = "multipart/related; type=application/octet-stream; transfer-syntax=*"  # what OHIF sends
    assert client.get(base + "/frames/1", headers={**h, "Accept": ohif}).status_code == 200


def test_original_download_policy(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws, cat, client, auth = setup
    authorise_b_for_a(ws, cat.exam_b)
    ds_b = pydicom.dcmread(cat.files_b[0])
    url_b = f"/dicomweb/studies/{cat.study_b}/series/{cat.series_b}/instances/{ds_b.SOPInstanceUID}"
    ds_a = pydicom.dcmread(cat.files_a[0])
    url_a = f"/dicomweb/studies/{cat.study_a}/series/{cat.series_a}/instances/{ds_a.SOPInstanceUID}"
    # doctors have no image.download_original at all (可见不可存), not even for their own exams
    assert client.get(url_b, headers=auth(client, "dr_a")).status_code == 403
    assert client.get(url_a, headers=auth(client, "dr_a")).status_code == 403
    # a QC expert has the permission, but policy refuses other hospitals' originals by default
    expert = auth(client, "expert")
    refused = client.get(url_b, headers=expert)
    assert refused.status_code == 403 and "可见不可存" in refused.json()["detail"]
    monkeypatch.setenv("RADQC_ALLOW_ORIGINAL_DOWNLOAD", "1")
    allowed_client = make_client(ws)
    expert = auth(allowed_client, "expert")
    r = allowed_client.get(url_b, headers=expert)
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    got = pydicom.dcmread(io.BytesIO(r.content))
    assert got.SOPInstanceUID == ds_b.SOPInstanceUID
    assert np.array_equal(got.pixel_array, ds_b.pixel_array)  # lossless from the JPEG-LS archive
    assert str(got.PatientName) != NAME_B and got.PatientID != PID_B and "PatientAddress" not in got
    assert "OtherPatientIDs" not in got and (0x0009, 0x1001) not in got  # expert: no patient.identity
    multi = allowed_client.get(url_b, headers={**expert, "Accept": 'multipart/related; type="application/dicom"'})
    assert multi.status_code == 200 and multi.headers["content-type"].startswith("multipart/related")
    assert client.get(url_b + "x", headers=expert).status_code in (404, 422)
    # the whole series and the whole study, streamed as multipart/related
    assert client.get(f"/dicomweb/studies/{cat.study_b}/series/{cat.series_b}", headers=expert).status_code == 403
    for url in (f"/dicomweb/studies/{cat.study_b}/series/{cat.series_b}", f"/dicomweb/studies/{cat.study_b}"):
        whole = allowed_client.get(url, headers=expert)
        assert whole.status_code == 200 and 'type="application/dicom"' in whole.headers["content-type"]
        boundary = whole.headers["content-type"].split("boundary=")[1].encode()
        parts = [p.partition(b"\r\n\r\n")[2][:-2] for p in whole.content.split(b"--" + boundary)[1:-1]]
        got_all = [pydicom.dcmread(io.BytesIO(p)) for p in parts]
        assert len(got_all) == 4 and all(str(d.PatientID) != PID_B for d in got_all)
        assert {d.SOPInstanceUID for d in got_all} == {pydicom.dcmread(f).SOPInstanceUID for f in cat.files_b}
    with ws.sessions() as s:
        rows = s.execute(select(m.AccessLogEntry.action, m.AccessLogEntry.outcome)
                         .where(m.AccessLogEntry.action == "image.download")).all()
    assert sorted(rows) == sorted([("image.download", "denied")] * 2 + [("image.download", "ok")] * 4)


TRAVERSALS = (
    "/dicomweb/studies/..%2F..%2Fetc%2Fpasswd/series",
    "/dicomweb/studies/{study}/series/..%2F..%2Fobjects/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances/..%5C..%5Cx/frames/1",
    "/dicomweb/studies/{study}/series/{series}/instances/%2E%2E/rendered",
    "/dicomweb/studies/{study}%00/metadata",
    "/dicomweb/studies/1.2.3'%20OR%20'1'='1/series",
    "/dicomweb/studies/" + "1." * 40 + "1/series",
    "/api/instances/..%2F1/rendered",
    "/api/series/-1/stack",
)


def test_traversal_and_garbage_uids_rejected(setup) -> None:  # type: ignore[no-untyped-def]
    _ws, cat, client, auth = setup
    h = auth(client, "expert")
    for template in TRAVERSALS:
        path = template.format(study=cat.study_a, series=cat.series_a)
        r = client.get(path, headers=h)
        assert r.status_code in (404, 422), (path, r.status_code)
    bad = client.get("/dicomweb/studies", headers=h, params={"StudyInstanceUID": "1.2/../3"})
    assert bad.status_code == 400


def test_every_image_route_needs_a_login_and_image_read(setup) -> None:  # type: ignore[no-untyped-def]
    ws, cat, client, auth = setup
    portal = auth(client, "portal")  # authenticated, no image.read
    for path in ("/dicomweb/studies", f"/dicomweb/studies/{cat.study_a}/series",
                 f"/dicomweb/studies/{cat.study_a}/metadata", "/api/series/1/stack", "/api/series/1/thumbnail",
                 "/api/instances/1/rendered", f"/dicomweb/studies/{cat.study_a}",
                 f"/dicomweb/studies/{cat.study_a}/series/{cat.series_a}"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=portal).status_code == 403, path


# -- a real DICOMweb client against a real server ------------------------------------------------------


@pytest.fixture
def live_server(setup) -> Iterator[tuple[str, Any, Catalogue, Any]]:  # type: ignore[no-untyped-def]
    import uvicorn

    from radqc.serving.app import create_app

    ws, cat, _client, auth = setup
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ws), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        auth(_client, "expert")
        yield f"http://127.0.0.1:{port}", ws, cat, _client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_dicomweb_client_interoperates(live_server) -> None:  # type: ignore[no-untyped-def]
    import httpx
    from dicomweb_client.api import DICOMwebClient

    url, ws, cat, _client = live_server
    token = httpx.post(f"{url}/api/auth/token", data={"username": "expert", "password": "correct-horse-battery-9"})
    assert token.status_code == 200
    client = DICOMwebClient(url=f"{url}/dicomweb", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    studies = client.search_for_studies()
    assert {pydicom.Dataset.from_json(s).StudyInstanceUID for s in studies} == {cat.study_a, cat.study_b}
    series = client.search_for_series(study_instance_uid=cat.study_b)
    assert [pydicom.Dataset.from_json(s).SeriesInstanceUID for s in series] == [cat.series_b]
    metadata = client.retrieve_series_metadata(study_instance_uid=cat.study_b, series_instance_uid=cat.series_b)
    assert len(metadata) == 4
    by_uid = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in cat.files_b}
    for item in metadata:
        ds = pydicom.Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
        assert ds.SOPInstanceUID in by_uid and ds.Rows == 32
        assert ds.PatientName != NAME_B  # the expert has no patient.identity
    sop = next(iter(by_uid))
    frames = client.retrieve_instance_frames(study_instance_uid=cat.study_b, series_instance_uid=cat.series_b,
                                             sop_instance_uid=sop, frame_numbers=[1])
    original = pydicom.dcmread(by_uid[sop])
    assert frames == [original.pixel_array.astype("<i2").tobytes()]  # decoded from the JPEG-LS archive
    instances = client.search_for_instances(study_instance_uid=cat.study_b, series_instance_uid=cat.series_b)
    assert {pydicom.Dataset.from_json(i).SOPInstanceUID for i in instances} == set(by_uid)


def _secondary_capture(folder: Path, study: str, sop_class: str, pixels: np.ndarray, **attrs: Any) -> Path:
    """A multi-frame grey or an RGB secondary-capture image (no geometry), hospital A."""
    from radqc.dicom.factory import ct_slice

    ds = ct_slice(study_uid=study, series_uid=pydicom.uid.generate_uid(), pixels=np.zeros((4, 4), np.int16))
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "RescaleIntercept", "RescaleSlope"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(sop_class)
    ds.Modality = "OT"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = H_A, "99LOCAL", H_A
    ds.InstitutionCodeSequence = [code]
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_multiframe_and_colour_instances(workspace, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    monkeypatch.setenv("RADQC_WATERMARK", "0")  # exact pixels (the watermark is tested in test_serving_images)
    from radqc.pipelines.ingest.folder import ingest_path

    study = pydicom.uid.generate_uid()
    grey = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6) * 50
    rgb = np.random.default_rng(3).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    grey_path = _secondary_capture(tmp_path / "sc", study, "1.2.840.10008.5.1.4.1.1.7.3", grey, NumberOfFrames=3,
                                   Rows=8, Columns=6, PixelRepresentation=0)
    rgb_path = _secondary_capture(tmp_path / "sc", study, "1.2.840.10008.5.1.4.1.1.7", rgb, Rows=5, Columns=7,
                                  SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0,
                                  BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0)
    assert ingest_path(workspace, tmp_path / "sc", workers=1).ingested == 2
    client, auth = make_client(workspace), Logins(workspace)
    h = auth(client, "expert")
    grey_ds, rgb_ds = pydicom.dcmread(grey_path), pydicom.dcmread(rgb_path)
    base = f"/dicomweb/studies/{study}/series/{grey_ds.SeriesInstanceUID}/instances/{grey_ds.SOPInstanceUID}"
    frames = _frames(client, h, base + "/frames/3,1")
    assert frames == [grey[2].astype("<u2").tobytes(), grey[0].astype("<u2").tobytes()]
    assert client.get(base + "/frames/4", headers=h).status_code == 404
    second = client.get(base + "/frames/2/rendered", headers=h, params={"window": "500,1000"})
    shown = np.asarray(Image.open(io.BytesIO(second.content)))
    expected = np.rint(np.clip(((grey[1] - 499.5) / 999 + 0.5), 0, 1) * 255).astype(np.uint8)
    assert second.status_code == 200 and np.array_equal(shown, expected)
    meta = client.get(base + "/metadata", headers=h).json()
    assert meta[0]["7FE00010"]["BulkDataURI"].endswith("/frames/1,2,3")
    url = f"/dicomweb/studies/{study}/series/{rgb_ds.SeriesInstanceUID}/instances/{rgb_ds.SOPInstanceUID}/rendered"
    colour = client.get(url, headers=h)
    assert colour.status_code == 200
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(colour.content)).convert("RGB")), rgb)
