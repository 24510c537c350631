"""The web viewer's image routes: stack order, server-side window/level, watermark, thumbnails.

Same ingested catalogue as tests/test_serving_dicomweb.py (hospital A's series has its
InstanceNumbers against the slice order; hospital B's is archived to JPEG-LS).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.serving.imaging import render
from tests.serving_support import make_client
from tests.test_serving_dicomweb import NAME_B, PID_B, Logins, authorise_b_for_a, build_catalogue


@pytest.fixture
def setup(workspace, tmp_path):  # type: ignore[no-untyped-def]
    return workspace, build_catalogue(workspace, tmp_path), make_client(workspace), Logins(workspace)


def _series_id(ws: Any, exam_id: int) -> int:
    with ws.sessions() as s:
        return int(s.scalar(select(m.Series.id).where(m.Series.exam_id == exam_id)))  # type: ignore[arg-type]


def _png(response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def _linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear VOI function, written out independently of the renderer."""
    y = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(np.clip(y, 0, 255)).astype(np.uint8)


def test_stack_follows_slice_position_like_image_qc(setup) -> None:  # type: ignore[no-untyped-def]
    from radqc.pipelines.image_qc.exam import sort_datasets

    ws, cat, client, auth = setup
    h = auth(client, "dr_a")
    series_id = _series_id(ws, cat.exam_a)
    r = client.get(f"/api/series/{series_id}/stack", headers=h)
    assert r.status_code == 200, r.text
    stack = r.json()
    assert stack["series_instance_uid"] == cat.series_a and stack["modality"] == "CT"
    assert stack["rows"] == 32 and stack["columns"] == 32 and stack["pixel_spacing"] == [0.7, 0.7]
    assert stack["presets"]["lung"]["center"] == -600 and stack["presets"]["lung"]["width"] == 1500
    # no window in these headers: CT opens with the preset for the body part (CHEST -> mediastinum)
    assert stack["default_window"] == {"center": 40.0, "width": 400.0}
    # image QC's own ordering over the real files read from the object store
    with ws.sessions() as s:
        keys = s.scalars(select(m.Instance.storage_key).join(m.Series).where(m.Series.exam_id == cat.exam_a)
                         .order_by(m.Instance.instance_number, m.Instance.id)).all()
    datasets = [pydicom.dcmread(io.BytesIO(ws.store.get(k)), stop_before_pixels=True) for k in keys]
    expected = [str(ds.SOPInstanceUID) for ds in sort_datasets(datasets)]
    got = [i["sop_instance_uid"] for i in stack["instances"]]
    assert got == expected
    numbers = [i["instance_number"] for i in stack["instances"]]
    assert numbers == [6, 5, 4, 3, 2, 1]  # numbered against the slice order: position wins
    zs = [i["z"] for i in stack["instances"]]
    assert zs == sorted(zs, reverse=True) and len(set(zs)) == 6
    assert [i["index"] for i in stack["instances"]] == list(range(6))
    first = stack["instances"][0]
    assert first["rendered_url"] == f"/api/instances/{first['instance_id']}/rendered"
    assert stack["dicom_info"]["PatientName"] == "Li^Si"  # doctors hold patient.identity
    with ws.sessions() as s:
        views = s.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.action == "image.view")).all()
    assert len(views) == 1 and views[0].exam_id == cat.exam_a and views[0].username == "dr_a"


def test_rendered_window_level_matches_the_formula(setup) -> None:  # type: ignore[no-untyped-def]
    ws, cat, client, auth = setup
    h = auth(client, "dr_a")
    stack = client.get(f"/api/series/{_series_id(ws, cat.exam_a)}/stack", headers=h).json()
    entry = stack["instances"][2]
    source = next(pydicom.dcmread(p) for p in cat.files_a
                  if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) == entry["sop_instance_uid"])
    hu = source.pixel_array.astype(np.float64) * float(source.RescaleSlope) + float(source.RescaleIntercept)
    for center, width in ((40, 400), (-600, 1500), (300, 2)):
        img = _png(client.get(entry["rendered_url"], params={"window": f"{center},{width}"}, headers=h))
        assert img.shape == (32, 32)  # own hospital: no watermark, exact pixels
        assert np.array_equal(img, _linear(hu, center, width))
    default = _png(client.get(entry["rendered_url"], headers=h))
    assert np.array_equal(default, _linear(hu, 40, 400))  # the stack's default window
    jpeg = client.get(entry["rendered_url"], params={"window": "40,400", "format": "jpeg"}, headers=h)
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    big = _png(client.get(entry["rendered_url"], params={"viewport": "64,64"}, headers=h))
    assert big.shape == (64, 64)
    for garbage in ("abc", "40", "40,0", "40,-5", "1,2,3,4", "nan,400", "40,400,cubic", "1e400,5", ""):
        r = client.get(entry["rendered_url"], params={"window": garbage}, headers=h)
        assert r.status_code == (200 if garbage == "" else 422), (garbage, r.status_code)
    assert client.get(entry["rendered_url"], params={"viewport": "0,10"}, headers=h).status_code == 422
    assert client.get(entry["rendered_url"], params={"format": "gif"}, headers=h).status_code == 422
    assert client.get(entry["rendered_url"], params={"frame": 2}, headers=h).status_code == 404


def test_watermark_on_other_hospitals_exam_only(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ws, cat, client, auth = setup
    series_b = _series_id(ws, cat.exam_b)
    dr_a, dr_b = auth(client, "dr_a"), auth(client, "dr_b")
    # without the patient's authorisation hospital A sees nothing of B's exam
    assert client.get(f"/api/series/{series_b}/stack", headers=dr_a).status_code == 404
    assert client.get(f"/api/series/{series_b}/thumbnail", headers=dr_a).status_code == 404
    own = client.get(f"/api/series/{series_b}/stack", headers=dr_b).json()
    url = own["instances"][1]["rendered_url"]
    assert client.get(url, headers=dr_a).status_code == 404
    assert own["watermarked"] is False

    authorise_b_for_a(ws, cat.exam_b)
    other = client.get(f"/api/series/{series_b}/stack", headers=dr_a).json()
    assert other["watermarked"] is True and other["instances"][1]["rendered_url"] == url
    params = {"window": "40,400", "viewport": "128,128"}
    clean = _png(client.get(url, params=params, headers=dr_b)).astype(int)  # hospital B's own doctor
    stamped = _png(client.get(url, params=params, headers=dr_a)).astype(int)
    assert clean.shape == stamped.shape == (128, 128)
    changed = np.abs(clean - stamped) > 8
    assert 0.02 < changed.mean() < 0.6  # a visible, tiled, semi-transparent stamp over part of the image
    assert changed[:64].any() and changed[64:].any()  # tiled: both halves carry it
    monkeypatch.setenv("RADQC_WATERMARK", "0")
    off = _png(make_client(ws).get(url, params=params, headers=dr_a)).astype(int)
    assert np.array_equal(off, clean)


def test_watermark_text_depends_on_the_viewer() -> None:
    base = np.full((512, 512), 60, dtype=np.uint8)
    a = render.apply_watermark(base, "Dr A (dr_a@H_A)", "dr_a@H_A", "2026-01-01 08:00 UTC")
    b = render.apply_watermark(base, "Dr B (dr_b@H_B)", "dr_b@H_B", "2026-01-01 08:00 UTC")
    assert not np.array_equal(a, base) and not np.array_equal(a, b)


def test_thumbnail_and_identity_free_dicom_info(setup) -> None:  # type: ignore[no-untyped-def]
    ws, cat, client, auth = setup
    authorise_b_for_a(ws, cat.exam_b)
    series_b = _series_id(ws, cat.exam_b)
    thumb = _png(client.get(f"/api/series/{series_b}/thumbnail", headers=auth(client, "dr_a")))
    assert max(thumb.shape) <= 128 and thumb.std() > 0
    eng = client.get(f"/api/series/{series_b}/stack", headers=auth(client, "eng")).json()
    text = str(eng)
    assert PID_B not in text and NAME_B not in text and "PatientName" not in eng["dicom_info"]
    assert eng["dicom_info"]["Modality"] == "CT" and eng["dicom_info"]["NumberOfImages"] == 4
    doctor = client.get(f"/api/series/{series_b}/stack", headers=auth(client, "dr_a")).json()
    assert doctor["dicom_info"]["PatientName"] == NAME_B


@pytest.mark.parametrize("text,expected", [
    ("40,400", render.Window(40, 400)),
    (" -600 , 1500 ", render.Window(-600, 1500)),
    ("50,1,linear-exact", render.Window(50, 1, "linear-exact")),
    ("50,0.5,sigmoid", render.Window(50, 0.5, "sigmoid")),
    (None, None),
])
def test_parse_window(text: str | None, expected: render.Window | None) -> None:
    assert render.parse_window(text) == expected


def test_linear_exact_and_monochrome1() -> None:
    from radqc.serving.imaging.pixels import Decoded

    pixels = np.array([[[0, 100, 200, 300]]], dtype=np.uint16)
    decoded = Decoded(pixels, 1.0, 0.0, "MONOCHROME1", "CR", None, None, None)
    out = render.to_display(decoded, 0, render.Window(150, 300, "linear-exact"))
    expected = 255 - np.rint(np.clip((pixels[0].astype(float) - 150) / 300 + 0.5, 0, 1) * 255)
    assert np.array_equal(out, expected.astype(np.uint8)) and out.tolist() == [[255, 170, 85, 0]]


@pytest.mark.parametrize("shape", [(7, 5), (64, 33), (16, 9, 3)])
def test_png_encoder_is_lossless(shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(len(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    pixels[: shape[0] // 2] = 0  # long runs as well as noise
    decoded = np.asarray(Image.open(io.BytesIO(render.png_bytes(pixels))))
    assert decoded.shape == pixels.shape and np.array_equal(decoded, pixels)


def test_revoked_authorisation_closes_cached_images(setup) -> None:  # type: ignore[no-untyped-def]
    from radqc.serving.accounts import revoke_authorisation

    ws, cat, client, auth = setup
    authorise_b_for_a(ws, cat.exam_b)
    dr_a = auth(client, "dr_a")
    series_b = _series_id(ws, cat.exam_b)
    url = client.get(f"/api/series/{series_b}/stack", headers=dr_a).json()["instances"][0]["rendered_url"]
    first = client.get(url, params={"window": "40,400"}, headers=dr_a)
    again = client.get(url, params={"window": "40,400"}, headers=dr_a)  # served from the encoded-image cache
    assert first.status_code == again.status_code == 200 and first.content == again.content
    with ws.transaction() as s:
        revoke_authorisation(s, int(s.scalar(select(m.PatientAuthorisation.id))))  # type: ignore[arg-type]
    for path in (url, f"/api/series/{series_b}/stack", f"/api/series/{series_b}/thumbnail"):
        assert client.get(path, params={"window": "40,400"}, headers=dr_a).status_code == 404, path


def test_prefetch_decodes_the_stack_when_enabled(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time

    ws, cat, _client, auth = setup
    monkeypatch.setenv("RADQC_PREFETCH", "1")
    client = make_client(ws)
    stack = client.get(f"/api/series/{_series_id(ws, cat.exam_b)}/stack", headers=auth(client, "dr_b")).json()
    cache = client.app.state.pixel_cache  # type: ignore[attr-defined]
    with ws.sessions() as s:
        keys = [s.scalar(select(m.Instance.storage_key).where(m.Instance.id == i["instance_id"]))
                for i in stack["instances"]]
    deadline = time.monotonic() + 60  # a wait, not a timing assertion
    while not all(cache.cached(k) for k in keys) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(cache.cached(k) for k in keys)
    assert cache.stats()["misses"] == len(keys)  # each JPEG-LS instance decoded exactly once
    r = client.get(stack["instances"][0]["rendered_url"], headers=auth(client, "dr_b"))
    assert r.status_code == 200 and cache.stats()["misses"] == len(keys)
