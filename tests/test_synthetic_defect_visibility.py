"""Metal and foreign-object defects are recorded only where an image shows them (generator 0.1.5).

The generator's artifact truth (``applied_defects`` -> ``expected_qc``) is what the image-QC
artifact measure is scored against, so a defect the renderer records must be in the pixels
of a series the QC reads: a radiograph object saturates like steel, a CT object lies in a
reconstructed slice, an MR implant leaves a susceptibility void with a bright pile-up rim.
An object that cannot be placed where the images reach is not recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from radqc.datasets.synthetic.imaging import render_exam
from radqc.datasets.synthetic.imaging.anatomy import structure_ids
from radqc.datasets.synthetic.imaging.context import ExamContext
from radqc.datasets.synthetic.imaging.ct import CTRenderer
from radqc.datasets.synthetic.imaging.geometry import Ellipsoid
from radqc.datasets.synthetic.imaging.mr import MRRenderer
from radqc.datasets.synthetic.spec import Defect, ImagingResult, ImagingSpec, SeriesTruth


def _artifact(r: ImagingResult) -> Defect | None:
    found = [d for d in r.applied_defects if d.dimension == "artifact"]
    return found[0] if found else None


def _display(path: Path) -> np.ndarray:
    """Stored pixels as displayed (bright = attenuating), whatever the photometric interpretation."""
    ds = pydicom.dcmread(path)
    px = ds.pixel_array.astype(np.float32)
    return 4095.0 - px if ds.PhotometricInterpretation == "MONOCHROME1" else px


def _labels(root: Path, s: SeriesTruth) -> np.ndarray:
    assert s.label_map
    return sitk.GetArrayFromImage(sitk.ReadImage(str(root / s.label_map)))


def _stack(root: Path, s: SeriesTruth) -> np.ndarray:
    dss = sorted((pydicom.dcmread(root / f) for f in s.files), key=lambda d: int(d.InstanceNumber))
    return np.stack([d.pixel_array.astype(np.float32) * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0)) for d in dss])


# ------------------------------------------------------------------------------ radiograph


@pytest.mark.parametrize("obj", ["necklace", "buttons", "coin"])
def test_radiograph_metal_is_brighter_than_anything_in_the_lungs(tmp_path: Path, obj: str) -> None:
    r = render_exam(ImagingSpec(exam_key=f"fo_{obj}", seed=4, modality="DX", regions=["chest"], size="small", defects=[Defect("artifact", "异物", {"kind": "foreign_object", "object": obj})]), tmp_path)
    d = _artifact(r)
    assert d is not None and d.params["in_field_px"] > 0 and d.params["attenuation_x_water"] >= 30
    pa = next(s for s in r.series if s.role == "PA")
    img = _display(tmp_path / pa.files[0])
    channels = r.measurements["radiograph"]["PA"]["label_channels"]
    lab = _labels(tmp_path, pa).reshape(len(channels), *img.shape).astype(bool)
    fo = lab[channels.index("foreign_object")]
    lung = (lab[channels.index("lung_left")] | lab[channels.index("lung_right")]) & ~fo
    # steel saturates: the object's core is at least as bright as the brightest 1% of the lungs
    # (ribs, vessels, the heart's edge), and far above the lung median
    core = img[fo]
    assert np.median(core) > np.percentile(img[lung], 99)
    assert np.median(core) > np.median(img[lung]) + 0.5 * (img.max() - np.median(img[lung]))


def test_radiograph_object_outside_the_field_is_not_recorded(tmp_path: Path) -> None:
    # a necklace hangs at the neck: an abdomen film's field does not reach it
    r = render_exam(ImagingSpec(exam_key="fo_abd", seed=4, modality="DX", regions=["abdomen"], size="small", defects=[Defect("artifact", "异物", {"kind": "foreign_object", "object": "necklace"})]), tmp_path)
    assert _artifact(r) is None
    assert [x["kind"] for x in r.measurements["defects_not_applied"]] == ["foreign_object"]


# ------------------------------------------------------------------------------ CT


@pytest.mark.parametrize("region,value,params,label", [
    ("abdomen", "异物", {"kind": "foreign_object", "object": "hairpin"}, "foreign_object"),
    ("chest", "异物", {"kind": "foreign_object", "object": "necklace"}, "foreign_object"),
    ("head", "设备", {"kind": "metal"}, "metal_implant"),
    ("thoracic_spine", "设备", {"kind": "metal"}, "metal_implant"),
])
def test_ct_object_lies_in_a_reconstructed_slice(tmp_path: Path, region: str, value: str, params: dict[str, str], label: str) -> None:
    r = render_exam(ImagingSpec(exam_key=f"ct_{region}", seed=7, modality="CT", regions=[region], size="small", defects=[Defect("artifact", value, params)]), tmp_path)
    d = _artifact(r)
    assert d is not None and d.params["voxels"] > 0
    if params.get("object") == "hairpin":
        assert d.params["object"] != "hairpin"  # a hairpin is not moved into the abdomen: a skin object instead
    axial = [s for s in r.series if s.role.startswith("axial_") and s.label_map]
    assert axial
    s = max(axial, key=lambda s: s.n_instances)
    lab = _labels(tmp_path, s)
    hu = _stack(tmp_path, s)
    mask = lab == structure_ids()[label]
    assert mask.sum() > 0 and float(hu[mask].max()) > 2000


def test_ct_object_bound_to_anatomy_outside_the_range_is_not_placed(tmp_path: Path) -> None:
    spec = ImagingSpec(exam_key="ct_place", seed=7, modality="CT", regions=["abdomen"], size="small")
    renderer = CTRenderer(ExamContext.create(spec, tmp_path))
    acq = renderer.plan()[0]
    head_depth = float(acq.depth.min()) - 200.0  # far above an abdomen scan
    bound = ("dental fillings", (lambda d: [Ellipsoid((20.0, -50.0, d), (5.0, 5.0, 4.0))], head_depth, -1.0))
    assert renderer._place([bound], acq) is None
    # a movable object is snapped onto a reconstructed slice inside the range
    movable = ("button", (lambda d: [Ellipsoid((0.0, 0.0, d), (3.0, 3.0, 1.0))], head_depth, 5.0))
    placed = renderer._place([movable], acq)
    assert placed is not None and placed[2] > 0


# ------------------------------------------------------------------------------ MR


def _mr(tmp: Path, region: str, defects: list[Defect]) -> ImagingResult:
    return render_exam(ImagingSpec(exam_key=f"mr_{region}", seed=5, modality="MR", regions=[region], size="small", defects=defects), tmp)


@pytest.mark.parametrize("region", ["head", "lumbar_spine", "knee"])
def test_mr_implant_leaves_a_void_larger_than_itself_with_a_bright_rim(tmp_path: Path, region: str) -> None:
    metal = _mr(tmp_path / "metal", region, [Defect("artifact", "设备", {"kind": "metal"})])
    clean = _mr(tmp_path / "clean", region, [])
    d = _artifact(metal)
    assert d is not None and d.params["series_with_void"]
    if region == "head":
        assert any(k.endswith(":axial") for k in d.params["series_with_void"])  # not below the brain's slices
    key = max(d.params["void_px"], key=lambda k: d.params["void_px"][k])
    role, plane = key.split(":")
    sm = next(s for s in metal.series if s.role == role and s.plane == plane)
    sc = next(s for s in clean.series if s.role == role and s.plane == plane)
    a, b = _stack(tmp_path / "metal", sm), _stack(tmp_path / "clean", sc)
    implant = int((_labels(tmp_path / "metal", sm) == structure_ids()["metal_implant"]).sum())
    tissue = b > np.percentile(b, 60)
    void = tissue & (a < 0.25 * b)
    rim = tissue & (a > 1.4 * b)
    assert void.sum() > max(implant, 4)  # the void is larger than the object
    assert rim.sum() > 0  # signal piled up beside it
    same = np.isclose(a, b)
    assert same.mean() > 0.8  # away from the implant the images are the same


def test_mr_implant_whose_void_shows_nowhere_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing(self, role, grid, perm, px):  # type: ignore[no-untyped-def]
        shape = (len(grid.z), len(grid.y), len(grid.x))
        empty = np.zeros(tuple(np.array(shape)[perm]), bool)
        return empty, empty

    monkeypatch.setattr(MRRenderer, "_susceptibility", nothing)
    r = _mr(tmp_path, "head", [Defect("artifact", "设备", {"kind": "metal"})])
    assert _artifact(r) is None
    assert "susceptibility void" in r.measurements["defects_not_applied"][0]["reason"]
