"""Issue #5 end to end with the **default** model slots: the bundled registry models, no test
doubles, no models.yaml — what a site gets after installing RadQC.

* ``radqc segment`` on a full-size generator CT (chest + abdomen, one 5 mm axial series):
  files in the source geometry, a DICOM SEG that highdicom reads and that references every
  source instance, the JSON contract, and anatomy a competent model gets right (compared
  with the generator's own label map and landmarks).
* the ``anatomy`` stage through the local runner on the same exam, ingested: the result in
  the ledger, the label map and SEG as content-addressed objects in the store.
* a chest radiograph through ``radqc segment`` (once ``cxr_anatomy`` is registered).
* the real head CT sample (InVesalius cranium) through ``radqc segment``.

The anatomical assertions are written for the released models; nothing here is an
expected failure. Seeds are outside every training and held-out range of the models
(CT organs 5000-5199 / 8000-8049 / 9000-9099, body region 1000-1139 / 900001-900010,
radiographs 0-99999 / 900000+).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from radqc.models.interfaces import CT_LANDMARKS

CT_SEED = 7301
CXR_SEED = 731_001
#: The structures every result row must carry (docs/anatomy.md, public contract).
CONTRACT_KEYS = {"name", "label", "volume_ml", "z_min_mm", "z_max_mm"}
#: Chest/abdomen/pelvis structures: a head CT holding more than this of them is wrong.
BODY_TRUNK = ("lung_left", "lung_right", "heart", "aorta", "liver", "spleen", "pancreas", "kidney_left",
              "kidney_right", "stomach", "bladder", "pelvis_bones", "femoral_head_left", "femoral_head_right")


def _registered() -> set[str]:
    from radqc.models.registry import list_models

    return {info.name for info in list_models()}


def _default_slots(mp: pytest.MonkeyPatch, home: Path) -> None:
    """No site configuration: every slot resolves to its registry default."""
    mp.setenv("RADQC_HOME", str(home))
    for name in ("RADQC_MODELS_CONFIG", "RADQC_MODEL_CT_ORGANS", "RADQC_MODEL_BODY_REGION",
                 "RADQC_MODEL_RADIOGRAPH_ANATOMY"):
        mp.delenv(name, raising=False)


@pytest.fixture
def default_slots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _default_slots(monkeypatch, tmp_path / "home")


def segment(path: Path, out: Path, home: Path) -> tuple[int, dict[str, Any]]:
    """``radqc segment PATH --out OUT --json`` in-process with the default slots."""
    from radqc.cli.main import app

    with pytest.MonkeyPatch.context() as mp:
        _default_slots(mp, home)
        result = CliRunner().invoke(app, ["segment", str(path), "--out", str(out), "--json"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout)


def _by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in result["structures"]}


def _under(root: Path, path: object) -> Path:
    """A path the generator recorded (relative to its output folder, or absolute)."""
    p = Path(str(path))
    return p if p.is_absolute() else root / p


def _read_series(folder: Path) -> tuple[Any, list[pydicom.Dataset]]:
    """The series as a hospital reader sees it (SimpleITK/GDCM), and its headers by z."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    headers: list[pydicom.Dataset] = sorted(
        (pydicom.dcmread(f, stop_before_pixels=True) for f in folder.iterdir()),
        key=lambda ds: float(ds.ImagePositionPatient[2]))
    return image, headers


# -- the generator CT --------------------------------------------------------------------------
@dataclass
class GeneratorCT:
    root: Path  # the exam folder (one series)
    folder: Path  # the series folder
    image: Any  # SimpleITK image of the series
    headers: list[pydicom.Dataset]
    truth: np.ndarray  # generator labels mapped to our label set, (z, y, x) on the image grid
    landmarks_mm: dict[str, float]
    voxel_ml: float


@pytest.fixture(scope="module")
def generator_ct(tmp_path_factory: pytest.TempPathFactory) -> GeneratorCT:
    """A full-size chest + abdomen CT, one 5 mm axial series, with its generator truth."""
    import SimpleITK as sitk

    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec, SeriesRole
    from radqc.models.registry import load_label_set
    from radqc.models.segmentation.data import map_generator_labels

    work = tmp_path_factory.mktemp("generator_ct")
    spec = ImagingSpec(exam_key="E2E", seed=CT_SEED, modality="CT", regions=["chest", "abdomen"], size="full",
                       phases=["native"], acquisition="one_acquisition",
                       series=[SeriesRole("axial_soft_thin", {"thickness_mm": 5.0})], evidence={"derived": False})
    rendered = render_exam(spec, work / "dicom", labels_dir=work / "labels")
    (series,) = rendered.series
    folder = work / "dicom" / Path(series.files[0]).parent
    image, headers = _read_series(folder)
    gen = sitk.Resample(sitk.ReadImage(str(_under(work / "dicom", series.label_map))), image, sitk.Transform(),
                        sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    size, origin, spacing = image.GetSize(), image.GetOrigin(), image.GetSpacing()
    x_mm = origin[0] + np.arange(size[0]) * spacing[0] * image.GetDirection()[0]
    truth = map_generator_labels(sitk.GetArrayFromImage(gen), x_mm, load_label_set("ct_organs"))
    return GeneratorCT(root=work / "dicom", folder=folder, image=image, headers=headers, truth=truth,
                       landmarks_mm=dict(rendered.measurements["landmarks_mm"]),
                       voxel_ml=float(np.prod(spacing)) / 1000.0)


@pytest.fixture(scope="module")
def segmented_ct(generator_ct: GeneratorCT, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, Path]:
    out = tmp_path_factory.mktemp("segmented_ct") / "out"
    code, result = segment(generator_ct.folder, out, tmp_path_factory.mktemp("home"))
    return code, result, out


def test_segment_generator_ct_writes_the_contract(generator_ct: GeneratorCT, segmented_ct: tuple) -> None:
    import SimpleITK as sitk

    code, result, out = segmented_ct
    assert code == 0, result.get("error")
    assert result["status"] == "ok" and result["error"] is None and result["kind"] == "ct"
    assert result["models"]["ct_organs"]["status"] == "ok" and result["models"]["body_region"]["status"] == "ok"
    assert result["series_instance_uid"] == generator_ct.headers[0].SeriesInstanceUID
    assert result["instances"] == len(generator_ct.headers)

    # labels.nii.gz: in the source geometry, its values are the JSON's labels.
    labels = sitk.ReadImage(str(out / "labels.nii.gz"))
    src = generator_ct.image
    assert labels.GetSize() == src.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), src.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(labels.GetSpacing(), src.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(labels.GetDirection(), src.GetDirection(), atol=1e-6)
    array = sitk.GetArrayFromImage(labels)
    counts = np.bincount(array.ravel(), minlength=256)
    for s in result["structures"]:
        assert CONTRACT_KEYS <= set(s), s
        if s["name"] == "body":  # the union of every foreground label
            assert s["label"] == 1 and s["voxels"] == int((array > 0).sum())
        else:
            assert s["voxels"] == int(counts[s["label"]]) > 0, s["name"]
        assert s["volume_ml"] == pytest.approx(s["voxels"] * generator_ct.voxel_ml, rel=1e-3, abs=1e-3)
        assert src.GetOrigin()[2] - 1e-3 <= s["z_min_mm"] <= s["z_max_mm"] <= result["scan"]["z_max_mm"] + 1e-3
    assert set(result["landmarks"]) == set(CT_LANDMARKS) and len(CT_LANDMARKS) == 8
    on_disk = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert on_disk["structures"] == result["structures"] and on_disk["landmarks"] == result["landmarks"]


def test_segment_generator_ct_seg_references_the_source(generator_ct: GeneratorCT, segmented_ct: tuple) -> None:
    import highdicom as hd
    import SimpleITK as sitk

    code, result, out = segmented_ct
    assert code == 0, result.get("error")
    seg = hd.seg.segread(out / "seg.dcm")
    sources = {h.SOPInstanceUID for h in generator_ct.headers}
    referenced = seg.get_source_image_uids()
    assert {sop for _, _, sop in referenced} == sources
    assert {series for _, series, _ in referenced} == {generator_ct.headers[0].SeriesInstanceUID}
    assert seg.FrameOfReferenceUID == generator_ct.headers[0].FrameOfReferenceUID
    present = {s["label"] for s in result["structures"]}
    assert set(seg.get_segment_numbers()) == present  # LABELMAP: segment number = label value
    liver = _by_name(result).get("liver")
    assert liver is not None, "no liver in a chest + abdomen CT"
    description = seg.get_segment_description(liver["label"])
    assert description.segment_label == "liver"
    # The SEG holds the label map's pixels: the liver on the slice through its centroid.
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    k = int(np.argmin([abs(float(h.ImagePositionPatient[2]) - liver["centroid_mm"][2]) for h in generator_ct.headers]))
    frame = seg.get_pixels_by_source_instance(source_sop_instance_uids=[generator_ct.headers[k].SOPInstanceUID],
                                              segment_numbers=[liver["label"]], combine_segments=True,
                                              skip_overlap_checks=True)
    assert np.array_equal(frame[0] > 0, array[k] == liver["label"]) and (array[k] == liver["label"]).any()


def test_segment_generator_ct_anatomy_is_right(generator_ct: GeneratorCT, segmented_ct: tuple) -> None:
    """What a competent model gets right on a chest + abdomen CT, against the generator's truth."""
    from radqc.models.registry import load_label_set

    code, result, _ = segmented_ct
    assert code == 0, result.get("error")
    found = _by_name(result)
    names = load_label_set("ct_organs").by_name()
    for organ in ("lung_left", "lung_right", "liver"):
        assert organ in found, f"{organ} missing; found {sorted(found)}"
        truth_ml = int((generator_ct.truth == names[organ].label).sum()) * generator_ct.voxel_ml
        assert 0.75 * truth_ml <= found[organ]["volume_ml"] <= 1.25 * truth_ml, (organ, found[organ]["volume_ml"],
                                                                               truth_ml)
    for lung in ("lung_left", "lung_right"):
        assert 300 <= found[lung]["volume_ml"] <= 5000
        assert found[lung]["z_min_mm"] > found["liver"]["z_min_mm"]  # lungs end above the liver's lowest point
        assert found[lung]["z_max_mm"] > found["liver"]["z_max_mm"]
        assert (found[lung]["centroid_mm"][0] > 0) == (lung == "lung_left")  # LPS +x is the patient's left
    assert 600 <= found["liver"]["volume_ml"] <= 4000
    assert found.get("brain", {}).get("volume_ml", 0.0) < 10.0, "brain found in a chest + abdomen CT"

    # Landmarks: present inside the scan, null outside it, near the generator's truth.
    marks, scan = result["landmarks"], result["scan"]
    top, bottom, step = scan["z_max_mm"], scan["z_min_mm"], scan["spacing_mm"][2]
    assert marks["vertex"] is None and marks["skull_base"] is None
    assert marks["lung_apex"] is not None and bottom <= marks["lung_apex"] <= top
    for name in CT_LANDMARKS:
        z_true = generator_ct.landmarks_mm[name]
        if z_true > top + 2 * step or z_true < bottom - 2 * step:
            assert marks[name] is None, (name, marks[name], z_true)
        elif bottom + 2 * step <= z_true <= top - 2 * step:
            assert marks[name] is not None and abs(marks[name] - z_true) <= 25.0, (name, marks[name], z_true)
    coverage = result["coverage"]
    assert coverage["text"]["en"].startswith("covers") and coverage["text"]["zh"].startswith("覆盖")
    assert "lung_apex" in coverage["landmarks_in_range"]


# -- the anatomy stage -------------------------------------------------------------------------
def test_anatomy_stage_with_default_models_on_an_ingested_generator_exam(  # type: ignore[no-untyped-def]
        workspace, generator_ct: GeneratorCT, default_slots: None, tmp_path: Path) -> None:
    import SimpleITK as sitk
    from sqlalchemy import select

    from radqc.catalogue import models as m
    from radqc.pipelines.ingest.folder import ingest_path
    from radqc.pipelines.runner.local import run_pipeline

    ingest_path(workspace, generator_ct.root, workers=1)
    summary = run_pipeline(workspace, ["anatomy"], workers=1).to_dict()
    assert summary["stages"]["anatomy"]["succeeded"] == 1, summary
    with workspace.sessions() as s:
        (entry,) = s.scalars(select(m.LedgerEntry).where(m.LedgerEntry.stage == "anatomy")).all()
        result, manifest = entry.result, entry.manifest
        hashes = sorted(s.scalars(select(m.Instance.content_hash)).all())
    assert result["status"] == "ok", [a.get("error") for a in result["analysed"]]
    (done,) = result["analysed"]
    assert done["series_instance_uid"] == generator_ct.headers[0].SeriesInstanceUID
    assert done["sources"]["content_hashes"] == hashes and done["sources"]["instances"] == len(generator_ct.headers)
    found = _by_name(done)
    assert {"body", "lung_left", "lung_right", "liver"} <= set(found), sorted(found)
    assert set(done["landmarks"]) == set(CT_LANDMARKS) and done["landmarks"]["lung_apex"] is not None
    assert done["coverage"]["text"]["en"].startswith("covers")
    for slot in ("ct_organs", "body_region"):
        assert manifest["versions"][slot].startswith("registry"), manifest["versions"]
        assert done["models"][slot]["status"] == "ok"

    # Derived objects: content-addressed in the store, the label map in the source geometry.
    store = workspace.store
    labels_obj, seg_obj = done["objects"]["labels"], done["objects"]["seg"]
    data = store.get(labels_obj["key"])
    assert hashlib.sha256(data).hexdigest() == labels_obj["sha256"] and labels_obj["key"].endswith(labels_obj["sha256"])
    (tmp_path / "labels.nii.gz").write_bytes(data)
    labels = sitk.ReadImage(str(tmp_path / "labels.nii.gz"))
    assert labels.GetSize() == generator_ct.image.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), generator_ct.image.GetOrigin(), atol=1e-3)
    array = sitk.GetArrayFromImage(labels)
    assert int((array == found["liver"]["label"]).sum()) == found["liver"]["voxels"]
    seg = pydicom.dcmread(io.BytesIO(store.get(seg_obj["key"])))
    assert seg.Modality == "SEG" and seg.SOPInstanceUID == done["seg_sop_instance_uid"]
    assert {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == {
        h.SOPInstanceUID for h in generator_ct.headers}


# -- a chest radiograph ------------------------------------------------------------------------
CXR_MODEL = "cxr_anatomy"
needs_cxr = pytest.mark.skipif(CXR_MODEL not in _registered(),
                               reason=f"{CXR_MODEL} is not in models/registry.yaml yet (radiograph_anatomy slot default)")


@needs_cxr
def test_segment_generator_chest_pa(tmp_path: Path) -> None:
    import highdicom as hd
    import SimpleITK as sitk

    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec, SeriesRole

    spec = ImagingSpec(exam_key="CXR", seed=CXR_SEED, modality="DX", regions=["chest"], size="full",
                       series=[SeriesRole("PA")], evidence={"derived": False})
    rendered = render_exam(spec, tmp_path / "dicom", labels_dir=tmp_path / "labels")
    (series,) = rendered.series
    folder = tmp_path / "dicom" / Path(series.files[0]).parent
    source = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
    code, result = segment(folder, tmp_path / "out", tmp_path / "home")
    assert code == 0, result.get("error")
    assert result["status"] == "ok" and result["kind"] == "radiograph"
    assert result["models"]["radiograph_anatomy"]["status"] == "ok"
    found = _by_name(result)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(_under(tmp_path / "dicom", series.label_map))))
    channels = list(series.extra["label_channels"])
    for lung in ("lung_left", "lung_right"):
        assert lung in found, sorted(found)
        true_px = int((truth[channels.index(lung)] > 0).sum())
        assert 0.75 * true_px <= found[lung]["area_px"] <= 1.25 * true_px, (lung, found[lung]["area_px"], true_px)
    # PA view: the patient's left lung is on the image's right.
    centre = {k: (found[k]["bbox"][1] + found[k]["bbox"][3]) / 2 for k in ("lung_left", "lung_right")}
    assert centre["lung_left"] > centre["lung_right"]
    labels = sitk.ReadImage(str(tmp_path / "out" / "labels.nii.gz"))
    assert labels.GetSize()[:2] == (source.Columns, source.Rows)
    seg = hd.seg.segread(tmp_path / "out" / "seg.dcm")
    assert {sop for _, _, sop in seg.get_source_image_uids()} == {source.SOPInstanceUID}


@needs_cxr
def test_segment_real_chest_cr(tmp_path: Path) -> None:
    from radqc.samples import sample_file

    path = sample_file("pydicom-data", "RG1_UNCR.dcm")
    if path is None:
        pytest.skip("real sample pydicom-data RG1_UNCR.dcm not cached (radqc.samples)")
    code, result = segment(path, tmp_path / "out", tmp_path / "home")
    assert code == 0, result.get("error")
    assert result["status"] == "ok" and result["view"] == "PA"
    assert (tmp_path / "out" / "labels.nii.gz").exists() and (tmp_path / "out" / "seg.dcm").exists()
    # A normal adult PA chest (MONOCHROME1 CR): each lung field covers well over 4 % of the
    # image (about 12-15 % here), the patient's left lung on the image's right.
    found = _by_name(result)
    pixels = result["image"]["rows"] * result["image"]["columns"]
    for lung in ("lung_left", "lung_right"):
        assert lung in found, sorted(found)
        assert found[lung]["area_px"] >= 0.04 * pixels, (lung, found[lung]["area_px"], pixels)
    centre = {k: (found[k]["bbox"][1] + found[k]["bbox"][3]) / 2 for k in ("lung_left", "lung_right")}
    assert centre["lung_left"] - centre["lung_right"] >= 0.2 * result["image"]["columns"], centre


# -- the real head CT --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def head_ct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict, Path]]:
    from radqc.samples import is_cached, samples_dir

    root = samples_dir()
    if not is_cached(root, "invesalius-cranium"):
        pytest.skip("real sample invesalius-cranium not cached (radqc.samples)")
    out = tmp_path_factory.mktemp("head_ct") / "out"
    code, result = segment(root / "invesalius-cranium", out, tmp_path_factory.mktemp("home"))
    yield code, result, out


def test_segment_real_head_ct(head_ct: tuple) -> None:
    code, result, out = head_ct
    assert code == 0, result.get("error")
    assert result["status"] == "ok" and (out / "labels.nii.gz").exists() and (out / "seg.dcm").exists()
    found = _by_name(result)
    assert {"brain", "skull"} <= set(found), sorted(found)
    marks, scan = result["landmarks"], result["scan"]
    assert marks["vertex"] is not None and marks["skull_base"] is not None
    assert marks["skull_base"] < marks["vertex"]
    assert marks["lung_apex"] is None and marks["pubic_symphysis"] is None  # a head scan
    assert abs(marks["vertex"] - found["body"]["z_max_mm"]) <= 15.0  # the top of the head
    assert found["skull"]["z_max_mm"] >= scan["z_max_mm"] - 20.0
    # A whole adult brain (the scan runs from the vertex to below the skull base).
    assert 800 <= found["brain"]["volume_ml"] <= 1800, found["brain"]["volume_ml"]
    assert found["skull"]["volume_ml"] >= 100
    trunk = sum(found[n]["volume_ml"] for n in BODY_TRUNK if n in found)
    assert trunk < 20.0, {n: found[n]["volume_ml"] for n in BODY_TRUNK if n in found}
