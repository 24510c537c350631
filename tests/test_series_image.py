"""Series thumbnail network: thumbnails of rendered series and odd pixels, the registered model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from radqc.datasets.synthetic.imaging import render_exam
from radqc.datasets.synthetic.spec import ImagingSpec, SeriesRole
from radqc.models.series_image import (
    THUMB_SHAPE,
    SeriesImageModel,
    make_thumbnail,
    make_thumbnail_ex,
    pick_instances,
)


def _series(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    """Rendered series of an exam folder: folder name (NNN_role) -> picked instances (by InstanceNumber)."""
    out = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name[:3].isdigit()):
        files = sorted(d.glob("*.dcm"))
        dss = sorted((pydicom.dcmread(f) for f in files), key=lambda ds: int(ds.InstanceNumber))
        out[d.name] = [dss[i] for i in pick_instances(len(dss))]
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[pydicom.Dataset]]:
    root = tmp_path_factory.mktemp("series_image")
    specs = [
        ImagingSpec(exam_key="CT1", seed=11, modality="CT", regions=["chest"], phases=["native", "arterial"],
                    series=[SeriesRole("localizer"), SeriesRole("axial_soft_thick"), SeriesRole("axial_lung_thin"),
                            SeriesRole("mpr_coronal"), SeriesRole("dose_report"),
                            SeriesRole("vr")]),
        ImagingSpec(exam_key="MR1", seed=12, modality="MR", regions=["head"],
                    series=[SeriesRole("T1W", {"plane": "axial"}), SeriesRole("T2W", {"plane": "axial"}),
                            SeriesRole("FLAIR", {"plane": "axial"}), SeriesRole("DWI", {"plane": "axial", "b_values": [0, 1000]}),
                            SeriesRole("ADC", {"plane": "axial"})]),
        ImagingSpec(exam_key="DX1", seed=13, modality="DX", regions=["chest"], vendor="Philips",
                    series=[SeriesRole("PA"), SeriesRole("LAT")]),
    ]
    out: dict[str, list[pydicom.Dataset]] = {}
    for spec in specs:
        render_exam(spec, root, labels_dir=root / "labels" / spec.exam_key)
        for folder, dss in _series(root / spec.exam_key).items():
            out[f"{spec.modality}:{folder.split('_', 1)[1]}:{folder[:3]}"] = dss
    return out


def _one(rendered: dict[str, list[pydicom.Dataset]], prefix: str) -> list[pydicom.Dataset]:
    return next(v for k, v in rendered.items() if k.startswith(prefix + ":"))


def test_pick_instances() -> None:
    assert pick_instances(0) == []
    assert pick_instances(1) == [0]
    assert pick_instances(2) == [0, 1]
    assert pick_instances(24) == [6, 12, 18]
    assert all(0 <= i < n for n in range(1, 50) for i in pick_instances(n))


def test_thumbnails_of_rendered_series(rendered: dict[str, list[pydicom.Dataset]]) -> None:
    for key, dss in rendered.items():
        t = make_thumbnail_ex(dss)
        assert t.ok, (key, t.reason)
        assert t.array.shape == THUMB_SHAPE and t.array.dtype == np.float32
        assert float(t.array.min()) >= 0.0 and float(t.array.max()) <= 1.0
        assert float(t.array.std()) > 0.01, key
    assert make_thumbnail_ex(_one(rendered, "CT:axial_soft_thick")).kind == "hu"
    assert make_thumbnail_ex(_one(rendered, "CT:vr")).kind == "picture"  # secondary capture
    assert make_thumbnail_ex(_one(rendered, "MR:T2W")).kind == "mr"
    assert make_thumbnail_ex(_one(rendered, "DX:PA")).kind == "xr"


def test_contrast_phase_visible_in_vessel_window(rendered: dict[str, list[pydicom.Dataset]]) -> None:
    """Fixed HU windows: the arterial phase (aorta ~300 HU) has more bright vessel-window
    pixels than the native phase (aorta ~40 HU) of the same chest, whatever the header says."""
    by_phase: dict[str, list[np.ndarray]] = {"enhanced": [], "native": []}
    for key, dss in rendered.items():
        if key.startswith("CT:axial_soft"):
            by_phase["enhanced" if "ContrastBolusAgent" in dss[0] else "native"].append(make_thumbnail(dss))
    assert by_phase["enhanced"] and by_phase["native"], sorted(rendered)
    bright = {k: np.mean([(t[2] > 0.6).sum() for t in v]) for k, v in by_phase.items()}
    assert bright["enhanced"] > bright["native"], bright


def test_monochrome1_is_inverted(rendered: dict[str, list[pydicom.Dataset]]) -> None:
    ds = _one(rendered, "DX:PA")[0]
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    a = make_thumbnail([ds])
    flipped = ds.copy()
    flipped.PhotometricInterpretation = "MONOCHROME2"
    b = make_thumbnail([flipped])
    inside = (a[0] > 0) & (b[0] > 0)
    assert np.corrcoef(a[0][inside], b[0][inside])[0, 1] < -0.5


def _dataset(pixels: np.ndarray | None, photometric: str = "MONOCHROME2", modality: str = "OT") -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality = modality
    if pixels is None:
        return ds
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    return ds


def test_odd_pixels_never_raise() -> None:
    rng = np.random.default_rng(0)
    rgb = _dataset(rng.integers(0, 255, (40, 60, 3)), photometric="RGB")
    t = make_thumbnail_ex([rgb])
    assert t.ok and t.kind == "picture" and t.array.shape == THUMB_SHAPE
    for odd in ([], [_dataset(None)], [_dataset(np.zeros((1, 1)))]):
        t = make_thumbnail_ex(odd)
        assert not t.ok and t.reason
        assert t.array.shape == THUMB_SHAPE and not t.array.any()
    broken = _dataset(np.zeros((8, 8)))
    broken.PixelData = b"\x01\x02\x03"  # truncated
    t = make_thumbnail_ex([broken])
    assert not t.ok and "decodable" in (t.reason or "")
    mono1 = _dataset(rng.integers(0, 255, (30, 30)), photometric="MONOCHROME1", modality="CR")
    assert make_thumbnail_ex([mono1]).ok


@pytest.fixture(scope="module")
def model() -> SeriesImageModel:
    m = SeriesImageModel.load()
    assert m is not None, "the committed series_image model must load from the registry"
    return m


def test_registered_model_gives_distributions(model: SeriesImageModel,
                                              rendered: dict[str, list[pydicom.Dataset]]) -> None:
    keys = sorted(rendered)
    thumbs = np.stack([make_thumbnail(rendered[k]) for k in keys])
    mods = [k.split(":")[0] for k in keys]
    probs = model.predict(thumbs, mods)
    assert len(probs) == len(keys)
    for k, p in zip(keys, probs, strict=True):
        assert p, k
        for field, dist in p.items():
            assert abs(sum(dist.values()) - 1.0) < 1e-5, (k, field)
            assert all(0.0 <= v <= 1.0 for v in dist.values())
        if k.startswith("MR:"):
            assert "sequence" in p and "phase" not in p and "view" not in p
        if k.startswith("CT:"):
            assert "phase" in p and "sequence" not in p
        if k.startswith("DX:"):
            assert set(p) <= {"view", "region"}


def test_model_abstains_on_blank_or_unknown_modality(model: SeriesImageModel) -> None:
    rng = np.random.default_rng(1)
    thumbs = np.stack([np.zeros(THUMB_SHAPE, np.float32), rng.random(THUMB_SHAPE, dtype=np.float32)])
    assert model.predict(thumbs, ["CT", "US"]) == [{}, {}]


def _top(p: dict[str, dict[str | None, float]], field: str) -> str | None:
    return max(p[field].items(), key=lambda kv: kv[1])[0]


def test_model_reads_pixels(model: SeriesImageModel, rendered: dict[str, list[pydicom.Dataset]]) -> None:
    """Behaviour the held-out figures say is reliable: MR sequence of a brain T2W/FLAIR, a CT
    localizer, a VR rendering, a coronal MPR, a chest PA film's region."""
    cases = {
        "MR:T2W": ("sequence", "T2W"), "MR:FLAIR": ("sequence", "FLAIR"), "MR:T1W": ("sequence", "T1W"),
        "MR:DWI": ("sequence", "DWI"), "MR:ADC": ("sequence", "ADC"),
        "CT:localizer": ("role", "localizer"), "CT:dose_report": ("role", "dose_report"), "CT:vr": ("derived_type", "vr"),
        "CT:mpr_coronal": ("plane", "coronal"), "DX:PA": ("region", "chest"),
    }
    for prefix, (field, want) in cases.items():
        dss = _one(rendered, prefix)
        p = model.predict(make_thumbnail(dss)[None], [prefix.split(":")[0]])[0]
        assert _top(p, field) == want, (prefix, p[field])


def _disc(n: int, fov_mm: float, hu_inside: float, hu_outside: float) -> tuple[np.ndarray, tuple[float, float]]:
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) * (fov_mm / n) - fov_mm / 2
    img = np.where(xx ** 2 + (yy / 0.7) ** 2 < 120.0 ** 2, hu_inside, hu_outside).astype(np.float32)
    return img, (fov_mm / n, fov_mm / n)


@pytest.mark.parametrize("kind", ["hu", "mr"])
def test_thumbnail_is_matrix_size_independent(kind: str) -> None:
    """The same physical field at 64 px and at 512 px gives (nearly) the same thumbnail, and a
    rectangular field keeps its physical aspect (a 24 x 128 MPR at 14 x 2.7 mm pixels is square)."""
    small, sp_small = _disc(64, 350.0, 60.0, -1000.0)
    large, sp_large = _disc(512, 350.0, 60.0, -1000.0)
    if kind == "mr":
        small, large = small + 1000.0, large + 1000.0
    from radqc.models.series_image import thumbnail_from_frames

    a = thumbnail_from_frames([small], sp_small, kind)
    b = thumbnail_from_frames([large], sp_large, kind)
    assert float(np.abs(a[:5] - b[:5]).mean()) < 0.03
    rng = np.random.default_rng(0)
    if kind == "hu":
        strip = (60.0 + 20.0 * rng.random((24, 128))).astype(np.float32)
        strip[:, :3] = -1000.0  # some air: read as HU
    else:
        strip = (1000.0 + 500.0 * rng.random((24, 128))).astype(np.float32)
    t = thumbnail_from_frames([strip], (350.0 / 24, 350.0 / 128), kind)
    filled = t[1] > 0.2 if kind == "hu" else t[0] > 0.2
    assert filled.mean() > 0.85  # fills the square: physical 350 x 350 mm
