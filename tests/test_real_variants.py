"""Real-derived QC variants: each operation really produces the defect its truth claims.

A tiny CT series stands in for the real samples (CI has no sample cache); the table in the
repository is checked for consistency with the operations and the public vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import yaml

from radqc.datasets.real_variants import make
from radqc.pipelines.image_qc.types import VALUES
from tests.dicom_factory import ct_series


def test_repository_table_is_consistent() -> None:
    table = make.load_table()
    names = [v["name"] for v in table["variants"]]
    assert len(names) == len(set(names))
    for row in table["variants"]:
        assert row["source"] in table["sources"], row["name"]
        for op in row["ops"]:
            assert op["op"] in make.OPS, op
        for dim, value in row["truth"].items():
            assert value in VALUES[dim], (row["name"], dim, value)
    # every source has an untouched base that states the normal value of what its variants control
    for source in table["sources"]:
        base = [r for r in table["variants"] if r["source"] == source and not r["ops"]]
        assert len(base) == 1, source
        assert base[0]["truth"], source


def _phantom(paths: list[Path]) -> None:
    """A head-like phantom (air, a 1000 HU ring, 40 HU inside, mild noise), a little off centre, in place of the
    factory's random pixels, so body-dependent operations have a body to move."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    r = np.hypot((yy - 24) / 16.0, (xx - 20) / 13.0)  # 3.5 px (8.75 mm) left of the centre
    for p in paths:
        ds = pydicom.dcmread(p)
        img = np.where(r < 1.0, 1000.0, -1000.0)
        img = np.where(r < 0.85, 40.0, img) + rng.normal(0, 3, img.shape)
        ds.PixelData = np.rint(img).astype(np.int16).tobytes()
        ds.PixelRepresentation, ds.BitsStored, ds.BitsAllocated, ds.HighBit = 1, 16, 16, 15
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.save_as(p, enforce_file_format=True)


def _setup(tmp_path: Path, variants: list[dict[str, Any]]) -> tuple[Path, Path, list[dict[str, Any]]]:
    samples = tmp_path / "samples"
    _phantom(ct_series(samples / "tiny-ct", n_slices=12, size=48, spacing_mm=2.5, seed=3))
    table = {
        "sources": {"ct": {"sample": "tiny-ct", "glob": "*.dcm", "modality": "CT", "item": "头颅CT平扫",
                           "standard": "CT-HEAD-PLAIN",
                           "series": [{"role": "axial_soft", "set": {"CTDIvol": 55.0, "WindowCenter": 40, "WindowWidth": 80}},
                                      {"role": "axial_bone", "set": {"WindowCenter": 500, "WindowWidth": 2000}}]}},
        "variants": variants,
    }
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(table, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"
    make.make_variants(out, samples, table_path=path)
    return out, samples, make.iter_variants(out)


def _series(folder: Path) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        out[sub.name.split("_", 1)[1]] = [pydicom.dcmread(p) for p in sorted(sub.glob("*.dcm"))]
    return out


def _centroid_col(ds: pydicom.Dataset) -> float:
    arr = ds.pixel_array.astype(float)
    body = arr > -500
    return float(np.nonzero(body)[1].mean()) / arr.shape[1]


def test_operations_produce_their_defects(tmp_path: Path) -> None:
    variants: list[dict[str, Any]] = [
        {"name": "ct_base", "source": "ct", "ops": [], "truth": {"range": "正常", "centring": "正常"}},
        {"name": "ct_top", "source": "ct", "ops": [{"op": "crop_z", "end": "top", "fraction": 0.25}], "truth": {"range": "过小"}},
        {"name": "ct_left", "source": "ct", "ops": [{"op": "shift", "direction": "left", "mm": 20}], "truth": {"centring": "偏左"}},
        {"name": "ct_noise", "source": "ct", "ops": [{"op": "noise", "sigma": 40.0}], "truth": {"noise": "异常"}},
        {"name": "ct_blur", "source": "ct", "ops": [{"op": "blur", "sigma_mm": 3.0}], "truth": {"sharpness": "异常"}},
        {"name": "ct_streaks", "source": "ct", "ops": [{"op": "streaks", "amplitude": 400.0, "fraction": 0.5}], "truth": {"artifact": "设备"}},
        {"name": "ct_window", "source": "ct", "ops": [{"op": "set", "tags": {"WindowCenter": 300, "WindowWidth": 200}}], "truth": {"window": "异常"}},
        {"name": "ct_dose", "source": "ct", "ops": [{"op": "delete", "tags": ["CTDIvol"]}], "truth": {"dose": "异常"}},
        {"name": "ct_drop", "source": "ct", "ops": [{"op": "drop_series", "role": "axial_bone"}], "truth": {"reconstruction": "异常"}},
    ]
    out, samples, truths = _setup(tmp_path, variants)
    by = {t["variant"]: t for t in truths}
    assert set(by) == {v["name"] for v in variants}
    assert all(t["real_derived"] is True for t in truths)
    series = {name: _series(Path(t["path"])) for name, t in by.items()}
    base = series["ct_base"]["axial_soft"]
    source_uids = {pydicom.dcmread(p).SOPInstanceUID for p in (samples / "tiny-ct").glob("*.dcm")}

    # new UIDs everywhere, one study per variant
    studies = {ds.StudyInstanceUID for s in series.values() for v in s.values() for ds in v}
    assert len(studies) == len(variants)
    assert not source_uids & {ds.SOPInstanceUID for s in series.values() for v in s.values() for ds in v}

    # crop: the superior slices are gone
    top = series["ct_top"]["axial_soft"]
    zs = [float(d.ImagePositionPatient[2]) for d in top]
    base_zs = [float(d.ImagePositionPatient[2]) for d in base]
    assert len(top) == 9 and max(zs) < max(base_zs) and min(zs) == min(base_zs)

    # shift: the body's centroid moves towards the image left, nothing of it is cut
    left = series["ct_left"]["axial_soft"][6]
    assert _centroid_col(left) < _centroid_col(base[6]) - 0.1
    assert (left.pixel_array > -500).sum() == (base[6].pixel_array > -500).sum()
    # ... and ends 20 mm off the image centre whatever the base's own offset was
    shift = by["ct_left"]["details"]["shift"][0]
    assert shift["body_offset_mm"] == pytest.approx(20, abs=2.5)
    spacing = float(left.PixelSpacing[1])
    off_mm = (_centroid_col(left) * left.Columns - (left.Columns - 1) / 2) * spacing
    assert off_mm == pytest.approx(-20, abs=2.5)  # image left: lower columns
    assert shift["mm"] == pytest.approx(20 - shift["base_offset_mm"], abs=1.0)

    # noise up, sharpness down (mean gradient magnitude)
    def grad(ds: pydicom.Dataset) -> float:
        a = ds.pixel_array.astype(float)
        return float(np.abs(np.diff(a, axis=1)).mean())

    noisy = series["ct_noise"]["axial_soft"][6].pixel_array.astype(float)
    assert np.std(noisy - base[6].pixel_array) == pytest.approx(40, rel=0.2)
    assert grad(series["ct_blur"]["axial_soft"][6]) < 0.8 * grad(base[6])

    # streaks: a dense point and bright/dark rays on the middle slices only
    streaked = series["ct_streaks"]["axial_soft"]
    diffs = [np.abs(s.pixel_array.astype(float) - b.pixel_array).max() for s, b in zip(streaked, base, strict=True)]
    assert sum(d > 1000 for d in diffs) == 6 and diffs[0] == 0

    # header defects
    assert float(series["ct_window"]["axial_soft"][0].WindowCenter) == 300
    assert "CTDIvol" not in series["ct_dose"]["axial_soft"][0] and "CTDIvol" in base[0]
    assert set(series["ct_drop"]) == {"axial_soft"} and by["ct_drop"]["details"]["dropped_series"] == ["axial_bone"]


def test_missing_sample_is_skipped_not_guessed(tmp_path: Path) -> None:
    table = {"sources": {"gone": {"sample": "absent", "glob": "*.dcm", "modality": "CT", "item": "x", "standard": "y",
                                  "series": [{"role": "a"}]}},
             "variants": [{"name": "gone_base", "source": "gone", "ops": [], "truth": {"range": "正常"}}]}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(table, allow_unicode=True), encoding="utf-8")
    manifest = make.make_variants(tmp_path / "out", tmp_path / "samples", table_path=path)
    assert manifest["variants"] == [] and manifest["skipped"][0]["variant"] == "gone_base"


def test_variant_evaluation_scores_controlled_dimensions(tmp_path: Path) -> None:
    from radqc.datasets.evaluation.evaluators import image_qc as ev

    variants: list[dict[str, Any]] = [
        {"name": "ct_base", "source": "ct", "ops": [], "truth": {"noise": "正常"}},
        {"name": "ct_noise", "source": "ct", "ops": [{"op": "noise", "sigma": 40.0}], "truth": {"noise": "异常"}},
    ]
    out, _, _ = _setup(tmp_path, variants)

    def measuring(path: Path, items: list[str] | None, item: str | None) -> list[dict[str, Any]]:
        # a stand-in measure: noise from the pixels, so the plumbing is checked on real files
        first = sorted(p for p in path.iterdir() if p.is_dir())[0]
        arr = pydicom.dcmread(sorted(first.glob("*.dcm"))[0]).pixel_array.astype(float)
        sd = float(np.std(arr[20:28, 20:28]))  # inside the phantom: 3 HU base, ~40 HU noisy
        return [{"noise": {"value": "异常" if sd > 20 else "正常"}, "score": 80 if sd > 20 else 100}]

    report = ev.evaluate_variants(out, runner=measuring)
    assert report.n == 2
    assert report.rates["dim:noise"].value == 1.0
    assert report.rates["score_drops_vs_base"].value == 1.0
    assert any("REAL-DERIVED" in n for n in report.notes)


def test_motion_smears_along_the_columns_and_keeps_the_noise_level() -> None:
    """op_motion (cr_motion): the anatomy is soft along the columns only, the noise stays sharp."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    from scipy import ndimage as ndi

    from radqc.datasets.real_variants.make import Exam, Series, op_motion

    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:200, 0:200]
    anatomy = 2000.0 + 300.0 * ((rows // 20) % 2) + 300.0 * ((cols // 20) % 2)  # edges both ways
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 16, 16, 15, 0, 1
    ds.PhotometricInterpretation, ds.ImagerPixelSpacing = "MONOCHROME2", [0.5, 0.5]
    noisy = np.clip(anatomy + rng.normal(0, 20.0, anatomy.shape), 0, 65535)
    ds.Rows, ds.Columns, ds.PixelData = 200, 200, np.rint(noisy).astype(np.uint16).tobytes()
    exam = Exam(source="cr", modality="CR", series=[Series(role="pa", datasets=[ds])])
    op_motion(exam, mm=4.0)
    out = ds.pixel_array.astype(float)
    assert exam.details["motion"]["smear_px"] == 8

    def edge(a: np.ndarray, axis: int) -> float:  # the steepest step along one axis
        return float(np.percentile(np.abs(np.diff(ndi.gaussian_filter(a, 0.7), axis=axis)), 99.5))

    assert edge(out, 0) < 0.3 * edge(noisy, 0)  # the edges across the columns are smeared ...
    assert edge(out, 1) > 0.8 * edge(noisy, 1)  # ... the edges along them are not

    def noise(a: np.ndarray) -> float:
        return float(np.median(np.abs(np.diff(a, axis=1)))) / (0.6745 * np.sqrt(2.0))

    # the fresh noise keeps the image's own level (a smeared noise would drop by sqrt(8))
    assert noise(out - ndi.uniform_filter1d(noisy, 8, axis=0)) == pytest.approx(noise(noisy - anatomy), rel=0.35)
