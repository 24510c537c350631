"""The synthetic renderer: determinism, valid DICOM, and labels that agree with the pixels.

Every exam here is ``size="small"`` so the module runs in seconds. The assertions read the
written files back (pydicom, SimpleITK) and check them against the ground truth the
renderer returned, because that truth is what every model will be trained and scored on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from radqc.datasets.synthetic.imaging import render_exam
from radqc.datasets.synthetic.imaging.anatomy import structure_ids
from radqc.datasets.synthetic.spec import Defect, ImagingResult, ImagingSpec, SeriesRole, SeriesTruth

# ------------------------------------------------------------------------------ helpers

#: Type 1/2 attributes of the modules every image IOD here must carry (PS3.3), by SOP class.
COMMON_REQUIRED = [
    "SOPClassUID", "SOPInstanceUID",  # SOP Common
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",  # Patient
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",  # General Study
    "Modality", "SeriesInstanceUID", "SeriesNumber",  # General Series
    "Manufacturer",  # General Equipment
    "InstanceNumber",  # General Image
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData",  # Image Pixel
]
PLANE = ["FrameOfReferenceUID", "PositionReferenceIndicator", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness"]
REQUIRED = {
    "1.2.840.10008.5.1.4.1.1.2": COMMON_REQUIRED + PLANE + ["ImageType", "RescaleIntercept", "RescaleSlope", "KVP", "AcquisitionNumber", "PatientPosition"],
    "1.2.840.10008.5.1.4.1.1.4": COMMON_REQUIRED + PLANE + ["ImageType", "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength", "PatientPosition"],
    "1.2.840.10008.5.1.4.1.1.1.1": COMMON_REQUIRED + ["ImageType", "PresentationIntentType", "ImageLaterality", "PixelIntensityRelationship", "PixelIntensityRelationshipSign", "RescaleIntercept", "RescaleSlope", "RescaleType", "PresentationLUTShape", "LossyImageCompression", "BurnedInAnnotation", "ImagerPixelSpacing", "DetectorType", "PatientOrientation"],
    "1.2.840.10008.5.1.4.1.1.1": COMMON_REQUIRED + ["BodyPartExamined", "ViewPosition", "ImagerPixelSpacing", "PatientOrientation"],
    "1.2.840.10008.5.1.4.1.1.7": COMMON_REQUIRED + ["ConversionType", "PatientOrientation"],
}


def render(tmp: Path, **kw) -> ImagingResult:  # type: ignore[no-untyped-def]
    spec = ImagingSpec(**{"exam_key": "E", "seed": 1, "modality": "CT", "regions": ["chest"], "size": "small", **kw})
    return render_exam(spec, tmp)


def series(result: ImagingResult, role: str, phase: str | None = None) -> SeriesTruth:
    found = [s for s in result.series if s.role == role and (phase is None or s.phase == phase)]
    assert found, f"no {role} series; have {[s.role for s in result.series]}"
    return found[0]


def volume(root: Path, s: SeriesTruth) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    """HU (or stored) volume of a series in file order, and its data sets."""
    dss = [pydicom.dcmread(root / f) for f in s.files]
    arr = np.stack([d.pixel_array.astype(np.float32) * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0)) for d in dss])
    return arr, dss


def labels(root: Path, s: SeriesTruth) -> tuple[np.ndarray, sitk.Image]:
    assert s.label_map, f"{s.role} has no label map"
    img = sitk.ReadImage(str(root / s.label_map))
    return sitk.GetArrayFromImage(img), img


def body_mask(lab: np.ndarray) -> np.ndarray:
    ids = structure_ids()
    return (lab != 0) & (lab != ids["table"]) & (lab != ids["foreign_object"])


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="module")
def cap(out: Path) -> ImagingResult:
    """Chest + abdomen + pelvis, one acquisition, native and arterial phases."""
    return render_exam(ImagingSpec(exam_key="cap", seed=11, modality="CT", regions=["chest", "abdomen", "pelvis"], acquisition="one_acquisition", phases=["native", "arterial"], size="small", vendor="Siemens"), out)


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_pixels_and_uids(tmp_path: Path) -> None:
    a = render(tmp_path / "a", seed=7)
    b = render(tmp_path / "b", seed=7)
    assert a.pixel_hashes == b.pixel_hashes
    assert a.study_instance_uid == b.study_instance_uid
    assert [s.files for s in a.series] == [s.files for s in b.series]


def test_different_seed_gives_different_pixels(tmp_path: Path) -> None:
    a = render(tmp_path / "a", seed=7)
    b = render(tmp_path / "b", seed=8)
    assert set(a.pixel_hashes.values()).isdisjoint(b.pixel_hashes.values())
    assert a.study_instance_uid != b.study_instance_uid


# ------------------------------------------------------------------------------ valid DICOM


def check_required(ds: pydicom.Dataset) -> list[str]:
    required = REQUIRED.get(str(ds.SOPClassUID), COMMON_REQUIRED)
    return [k for k in required if k not in ds]


def test_every_file_is_readable_and_has_its_iod_attributes(cap: ImagingResult, out: Path) -> None:
    assert cap.pixel_hashes
    seen = 0
    for s in cap.series:
        for f in s.files:
            ds = pydicom.dcmread(out / f)
            assert not check_required(ds), (f, check_required(ds))
            assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
            assert ds.SeriesInstanceUID == s.series_instance_uid
            seen += 1
    assert seen == len(cap.pixel_hashes)


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None and not os.environ.get("CI"), reason="dicom3tools' dciodvfy not installed"
)
def test_dciodvfy_reports_no_errors(cap: ImagingResult, out: Path) -> None:
    for s in cap.series:
        proc = subprocess.run(["dciodvfy", str(out / s.files[0])], capture_output=True, text=True)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (s.role, errors)


# ------------------------------------------------------------------------------ CT truth vs pixels


def test_whole_acquisition_has_slice_regions_and_landmarks(cap: ImagingResult) -> None:
    thin = series(cap, "axial_soft_thin", "native")
    assert thin.slice_regions[0] in ("neck", "chest") and thin.slice_regions[-1] == "pelvis"
    assert {"chest", "abdomen", "pelvis"} <= set(thin.slice_regions)
    lm = cap.measurements["landmarks_mm"]
    # one body along z: vertex above the lung apex above the diaphragm ... above the symphysis
    order = ["vertex", "foramen_magnum", "lung_apex", "diaphragm_dome", "lung_base", "lower_renal_pole", "pubic_symphysis"]
    zs = [lm[k] for k in order]
    assert zs == sorted(zs, reverse=True)


def test_lung_label_voxels_have_lung_hu(cap: ImagingResult, out: Path) -> None:
    s = series(cap, "axial_soft_thin", "native")
    hu, _ = volume(out, s)
    lab, _ = labels(out, s)
    ids = structure_ids()
    for name in ("lung_left", "lung_right"):
        m = lab == ids[name]
        assert m.sum() > 100
        assert -900 < float(np.median(hu[m])) < -750, name


def test_arterial_aorta_is_brighter_than_native(cap: ImagingResult, out: Path) -> None:
    ids = structure_ids()
    med = {}
    for phase in ("native", "arterial"):
        s = series(cap, "axial_soft_thick", phase)
        hu, _ = volume(out, s)
        lab, _ = labels(out, s)
        med[phase] = float(np.median(hu[lab == ids["aorta"]]))
    assert med["native"] < 80
    assert med["arterial"] > 200
    assert med["arterial"] > med["native"] + 150


def test_derived_series_point_at_existing_source_instances(cap: ImagingResult, out: Path) -> None:
    by_uid = {s.series_instance_uid: s for s in cap.series}
    derived = [s for s in cap.series if s.derived_from]
    assert {s.role for s in derived} >= {"mpr_coronal", "mpr_sagittal"}
    for s in derived:
        source = by_uid[s.derived_from]
        source_uids = {pydicom.dcmread(out / f, stop_before_pixels=True).SOPInstanceUID for f in source.files}
        ds = pydicom.dcmread(out / s.files[0], stop_before_pixels=True)
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        refs = {item.ReferencedSOPInstanceUID for item in ds.SourceImageSequence}
        assert refs and refs <= source_uids


def test_localizer_and_dose_report_present(cap: ImagingResult, out: Path) -> None:
    loc = pydicom.dcmread(out / series(cap, "localizer").files[0])
    assert list(loc.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    dose = series(cap, "dose_report")
    ds = pydicom.dcmread(out / dose.files[0])
    assert str(ds.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.7"
    assert "DLP" in ds.ImageComments
    axial = pydicom.dcmread(out / series(cap, "axial_soft_thick").files[0], stop_before_pixels=True)
    assert float(axial.CTDIvol) > 0
    assert axial.ConvolutionKernel in ("B30f", "Br40", "Br36")


def test_off_centre_body_centroid_is_off_by_the_labelled_mm(tmp_path: Path) -> None:
    r = render(tmp_path, defects=[Defect("centring", "偏左", {"offset_mm": 45})])
    truth = next(d for d in r.applied_defects if d.dimension == "centring")
    assert truth.params["direction_image"] == "left" and truth.params["direction_patient"] == "patient_right"
    s = series(r, "axial_soft_thin")
    lab, img = labels(tmp_path, s)
    body = body_mask(lab)
    xs = img.GetOrigin()[0] + np.arange(lab.shape[2]) * img.GetSpacing()[0]
    cx = float((body.sum(axis=(0, 1)) * xs).sum() / body.sum())
    # image left = patient right = -x
    assert cx == pytest.approx(-truth.params["measured_offset_mm"], abs=1.0)
    assert truth.params["measured_offset_mm"] == pytest.approx(45, abs=12)
    assert truth.params["fraction_of_fov"] > 0.08
    # the pixels agree: body (HU > -500, table excluded by the label) is left of centre
    hu, _ = volume(tmp_path, s)
    px_body = (hu > -500) & body_mask(lab)
    cx_px = float((px_body.sum(axis=(0, 1)) * xs).sum() / px_body.sum())
    assert cx_px < -25


def test_normal_exam_is_centred(cap: ImagingResult) -> None:
    centring = series(cap, "axial_soft_thin").extra["centring"]
    assert centring["offset_fraction"] < 0.08


def test_range_too_small_lacks_the_landmark_slices(tmp_path: Path, ) -> None:
    r = render(tmp_path, defects=[Defect("range", "过小", {"missing": ["lung_base"]})])
    truth = next(d for d in r.applied_defects if d.dimension == "range")
    assert truth.params["missing"] == ["lung_base"]
    lm_z = r.measurements["landmarks_mm"]["lung_base"]
    thin = series(r, "axial_soft_thin")
    zs = [float(pydicom.dcmread(tmp_path / f, stop_before_pixels=True).ImagePositionPatient[2]) for f in thin.files]
    assert lm_z < min(zs) - 5  # the lung base lies below the last slice
    lab, _ = labels(tmp_path, thin)
    ids = structure_ids()
    assert np.isin(lab[-1], [ids["lung_left"], ids["lung_right"]]).any()  # lungs are cut off
    assert "lung_base" not in r.measurements.get("landmarks_in_range", {}).get("0", [])


def test_range_too_large_names_the_excess_region(tmp_path: Path) -> None:
    r = render(tmp_path, defects=[Defect("range", "过大", {"excess_mm": 90, "side": "inferior"})])
    truth = next(d for d in r.applied_defects if d.dimension == "range")
    assert "abdomen" in truth.params["excess_regions"]
    assert "abdomen" in series(r, "axial_soft_thin").slice_regions


def test_excess_noise_measured_sd_is_above_normal(tmp_path: Path) -> None:
    normal = render(tmp_path / "n", seed=3)
    noisy = render(tmp_path / "x", seed=3, defects=[Defect("noise", "excess", {"factor": 3.0})])
    key = next(k for k in normal.measurements["noise_sd_hu"] if k.endswith("axial_soft_thin"))
    sd_normal = normal.measurements["noise_sd_hu"][key]
    truth = next(d for d in noisy.applied_defects if d.dimension == "noise")
    assert truth.params["measured_sd_hu"][key] > 2 * sd_normal
    # and the files agree: SD of a homogeneous ROI (liver or muscle) in HU
    s = series(noisy, "axial_soft_thin")
    assert s.extra["measured_noise_sd_hu"] == truth.params["measured_sd_hu"][key]


def test_blur_lowers_measured_sharpness(tmp_path: Path) -> None:
    normal = render(tmp_path / "n", seed=3)
    blurred = render(tmp_path / "b", seed=3, defects=[Defect("sharpness", "blur", {"sigma_mm": 2.0})])
    key = next(k for k in normal.measurements["sharpness"] if k.endswith("axial_soft_thin"))
    truth = next(d for d in blurred.applied_defects if d.dimension == "sharpness")
    assert truth.params["measured_sharpness"][key] < 0.85 * normal.measurements["sharpness"][key]


def test_window_preset_missing_is_really_missing(tmp_path: Path) -> None:
    r = render(tmp_path, defects=[Defect("window", "deviation", {"mode": "missing"})])
    truth = next(d for d in r.applied_defects if d.dimension == "window")
    role = truth.params["series"][0]["role"]
    ds = pydicom.dcmread(tmp_path / series(r, role).files[0], stop_before_pixels=True)
    assert "WindowCenter" not in ds and "WindowWidth" not in ds


def test_metal_defect_puts_metal_and_streaks_in_the_pixels(tmp_path: Path) -> None:
    r = render(tmp_path, regions=["pelvis"], defects=[Defect("artifact", "设备", {})])
    truth = next(d for d in r.applied_defects if d.dimension == "artifact")
    assert truth.params["kind"] == "metal" and truth.params["object"] == "hip prosthesis"
    s = series(r, "axial_soft_thin")
    hu, _ = volume(tmp_path, s)
    lab, _ = labels(tmp_path, s)
    metal = lab == structure_ids()["metal_implant"]
    assert metal.any() and float(hu[metal].max()) > 2000


def test_thin_slices_absent_and_derived_omitted_by_evidence(tmp_path: Path) -> None:
    r = render(tmp_path, evidence={"thin_slices": False, "derived": False})
    roles = {s.role for s in r.series}
    assert not any(role.endswith("_thin") for role in roles)
    assert not roles & {"mpr_coronal", "mpr_sagittal", "mip", "vr"}
    for s in r.series:
        if s.role.startswith("axial_"):
            assert s.slice_thickness_mm >= 2


def test_spectral_and_ecg_evidence_tags(tmp_path: Path) -> None:
    r = render(tmp_path, evidence={"spectral": True, "ecg_gating": True}, vendor="Philips")
    mono = pydicom.dcmread(tmp_path / series(r, "spectral_mono").files[0], stop_before_pixels=True)
    assert "MONOE" in list(mono.ImageType) and "70keV" in mono.SeriesDescription
    iodine = pydicom.dcmread(tmp_path / series(r, "spectral_iodine").files[0], stop_before_pixels=True)
    assert "IODINE" in list(iodine.ImageType)
    ax = pydicom.dcmread(tmp_path / series(r, "axial_soft_thick").files[0], stop_before_pixels=True)
    assert ax[0x0071, 0x1001].value == "MULTI_ENERGY"
    assert ax.Manufacturer == "Philips" and ax[0x2005, 0x0010].value == "Philips MR Imaging DD 001"
    assert "TriggerTime" in ax and "HeartRate" in ax and "NominalPercentageOfCardiacPhase" in ax
    plain = render(tmp_path / "plain")
    ax = pydicom.dcmread(tmp_path / "plain" / series(plain, "axial_soft_thick").files[0], stop_before_pixels=True)
    assert "TriggerTime" not in ax and (0x0071, 0x1001) not in ax


def test_contrast_absent_evidence_leaves_vessels_unenhanced(tmp_path: Path) -> None:
    r = render(tmp_path, phases=["portal"], evidence={"contrast_absent": True})
    s = series(r, "axial_soft_thick")
    ds = pydicom.dcmread(tmp_path / s.files[0], stop_before_pixels=True)
    assert "ContrastBolusAgent" not in ds
    assert s.extra["aorta_hu"] < 80
    assert s.phase == "portal"  # the series still claims the billed phase


def test_all_required_structures_in_whole_body_acquisition(tmp_path: Path) -> None:
    required = {
        "body", "subcutaneous_fat", "brain", "skull", "lung_left", "lung_right", "trachea", "heart", "aorta", "liver",
        "spleen", "pancreas", "kidney_left", "kidney_right", "stomach", "bladder", "vertebrae_cervical", "vertebrae_thoracic",
        "vertebrae_lumbar", "sacrum", "ribs", "pelvis_bones", "femoral_head_left", "femoral_head_right",
    }
    for sex, organ in (("M", "prostate"), ("F", "uterus")):
        r = render(tmp_path / sex, sex=sex, regions=["head", "neck", "chest", "abdomen", "pelvis"], acquisition="one_acquisition", series=[SeriesRole("axial_soft_thin")])
        present = set(r.structures)
        assert required | {organ} <= present, sorted(required | {organ} - present)
        assert ({"prostate", "uterus"} - {organ}).isdisjoint(present)


def test_header_noise_is_applied_and_recorded(tmp_path: Path) -> None:
    r = render(tmp_path, header_noise={"body_part_missing": ["axial_soft_thick"], "body_part_wrong": ["axial_lung_thin"], "description_wrong": ["axial_lung_thick"]})
    thick = series(r, "axial_soft_thick")
    ds = pydicom.dcmread(tmp_path / thick.files[0], stop_before_pixels=True)
    assert "BodyPartExamined" not in ds and thick.extra["body_part_true"] == "CHEST"
    lung = series(r, "axial_lung_thin")
    ds = pydicom.dcmread(tmp_path / lung.files[0], stop_before_pixels=True)
    assert ds.BodyPartExamined != "CHEST" and lung.extra["body_part_wrong"]
    wrong = series(r, "axial_lung_thick")
    assert wrong.extra["description_wrong"] and wrong.description != wrong.extra["description_true"]


def test_header_identity_and_burned_in_identifiers(tmp_path: Path) -> None:
    header = {"PatientName": "王^小明", "PatientID": "HZ0012345", "AccessionNumber": "ACC778899", "StudyDate": "20260301", "StudyTime": "101500", "InstitutionName": "杭州市第一人民医院", "uid_prefix": "1.2.826.0.1.3680043.10.999"}
    r = render(tmp_path, header=header, burned_in_identifiers=True)
    loc = series(r, "localizer")
    ds = pydicom.dcmread(tmp_path / loc.files[0])
    assert str(ds.PatientName) == "王^小明" and ds.PatientID == "HZ0012345" and ds.StudyDate == "20260301"
    assert ds.StudyInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    assert ds.BurnedInAnnotation == "YES"
    box = loc.extra["burned_in"]["boxes"][1]
    patch = ds.pixel_array[box["row"] : box["row"] + box["height"], box["col"] : box["col"] + box["width"]]
    assert int(patch.max()) == int(ds.pixel_array.max())  # the text is drawn in the brightest value


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"])
def test_transfer_syntaxes(tmp_path: Path, ts: str) -> None:
    r = render(tmp_path, transfer_syntax=ts, series=[SeriesRole("axial_soft_thick")])
    s = series(r, "axial_soft_thick")
    ds = pydicom.dcmread(tmp_path / s.files[0])
    assert ds.file_meta.TransferSyntaxUID == ts
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns)


# ------------------------------------------------------------------------------ MR


@pytest.fixture(scope="module")
def brain(out: Path) -> ImagingResult:
    return render_exam(ImagingSpec(exam_key="brain", seed=21, modality="MR", regions=["head"], size="small", vendor="GE"), out)


def mean_by_label(root: Path, s: SeriesTruth, names: list[str]) -> dict[str, float]:
    """Mean written pixel value per structure, from the files and the label map only."""
    vals, dss = volume(root, s)
    lab, _ = labels(root, s)
    vals = vals[: lab.shape[0]]  # DWI: first b-value block
    ids = structure_ids()
    return {n: float(vals[lab == ids[n]].mean()) for n in names if (lab == ids[n]).sum() > 20}


def test_mr_contrast_follows_weighting(brain: ImagingResult, out: Path) -> None:
    names = ["brain_ventricles", "brain", "white_matter"]
    t1 = mean_by_label(out, series(brain, "T1W"), names)
    t2 = mean_by_label(out, series(brain, "T2W"), names)
    flair = mean_by_label(out, series(brain, "FLAIR"), names)
    assert t1["brain_ventricles"] < t1["brain"] < t1["white_matter"]  # CSF dark, WM brighter than GM on T1
    assert t2["brain_ventricles"] > 1.5 * t2["brain"] and t2["brain"] > t2["white_matter"]  # CSF bright on T2
    assert flair["brain_ventricles"] < 0.6 * flair["brain"]  # CSF suppressed on FLAIR


def test_mr_headers_match_the_sequence(brain: ImagingResult, out: Path) -> None:
    flair = pydicom.dcmread(out / series(brain, "FLAIR").files[0], stop_before_pixels=True)
    assert "IR" in list(flair.ScanningSequence) and 1800 <= float(flair.InversionTime) <= 2800 and float(flair.RepetitionTime) >= 6000
    t1 = pydicom.dcmread(out / series(brain, "T1W").files[0], stop_before_pixels=True)
    assert t1.ScanningSequence == "SE" and 400 <= float(t1.RepetitionTime) <= 800 and float(t1.EchoTime) < 20
    assert "InversionTime" not in t1
    sag = pydicom.dcmread(out / [s for s in brain.series if s.role == "T1W" and s.plane == "sagittal"][0].files[0], stop_before_pixels=True)
    assert [float(v) for v in sag.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    assert float(t1.MagneticFieldStrength) in (1.5, 3.0)
    dwi = series(brain, "DWI")
    bvals = sorted({float(pydicom.dcmread(out / f, stop_before_pixels=True).DiffusionBValue) for f in dwi.files})
    assert bvals == [0.0, 500.0, 1000.0]
    assert pydicom.dcmread(out / dwi.files[0], stop_before_pixels=True).ScanningSequence == "EP"
    adc = series(brain, "ADC")
    assert adc.derived_from == dwi.series_instance_uid
    ds = pydicom.dcmread(out / adc.files[0], stop_before_pixels=True)
    assert list(ds.ImageType)[0] == "DERIVED" and "ADC" in list(ds.ImageType)
    dwi_uids = {pydicom.dcmread(out / f, stop_before_pixels=True).SOPInstanceUID for f in dwi.files}
    assert {i.ReferencedSOPInstanceUID for i in ds.SourceImageSequence} <= dwi_uids
    # ADC of CSF above that of brain tissue
    m = mean_by_label(out, adc, ["brain_ventricles", "white_matter"])
    assert m["brain_ventricles"] > m["white_matter"]


def test_stir_and_fat_suppression_darken_fat(out: Path) -> None:
    r = render_exam(ImagingSpec(exam_key="lspine", seed=5, modality="MR", regions=["lumbar_spine"], size="small"), out)
    stir = series(r, "STIR")
    ds = pydicom.dcmread(out / stir.files[0], stop_before_pixels=True)
    assert 130 <= float(ds.InversionTime) <= 230
    fat_t1 = mean_by_label(out, series(r, "T1W"), ["subcutaneous_fat", "muscle"])
    fat_stir = mean_by_label(out, stir, ["subcutaneous_fat", "muscle", "spinal_canal"])
    assert fat_t1["subcutaneous_fat"] > fat_t1["muscle"]
    assert fat_stir["subcutaneous_fat"] < fat_stir["spinal_canal"]


def test_missing_sequence_exam_really_lacks_the_series(out: Path) -> None:
    r = render_exam(ImagingSpec(exam_key="brain_noflair", seed=21, modality="MR", regions=["head"], size="small", defects=[Defect("sequences", "missing", {"sequence": "FLAIR"})]), out)
    truth = next(d for d in r.applied_defects if d.dimension == "sequences")
    assert truth.params["sequence"] == "FLAIR"
    assert "FLAIR" not in {s.role for s in r.series}
    for s in r.series:
        ds = pydicom.dcmread(out / s.files[0], stop_before_pixels=True)
        assert "InversionTime" not in ds or float(ds.InversionTime) < 1000  # no FLAIR-like series hides under another role


def test_a_removed_adc_map_is_not_exported(out: Path) -> None:
    # The ADC map is made together with its DWI: removing ADC alone must still leave it out.
    r = render_exam(ImagingSpec(exam_key="brain_noadc", seed=21, modality="MR", regions=["head"], size="small",
                                defects=[Defect("sequences", "missing", {"sequence": "ADC"})]), out)
    truth = next(d for d in r.applied_defects if d.dimension == "sequences")
    assert [x["sequence"] for x in truth.params["removed"]] == ["ADC"]
    roles = {s.role for s in r.series}
    assert "ADC" not in roles and "DWI" in roles
    assert not any(p.name.endswith("_ADC") for p in (out / "brain_noadc").iterdir())


def test_mr_motion_adds_ghosts_in_the_background(out: Path) -> None:
    clean = render_exam(ImagingSpec(exam_key="k_clean", seed=8, modality="MR", regions=["knee"], size="small"), out)
    moved = render_exam(ImagingSpec(exam_key="k_motion", seed=8, modality="MR", regions=["knee"], size="small", defects=[Defect("artifact", "运动", {"sequence": "PD_FS", "strength": 0.6})]), out)
    truth = next(d for d in moved.applied_defects if d.dimension == "artifact")
    assert truth.params["sequence"] == "PD_FS"

    def background(r: ImagingResult) -> float:
        s = series(r, "PD_FS")
        vals, _ = volume(out, s)
        lab, _ = labels(out, s)
        return float(vals[lab == 0].mean())

    assert background(moved) > 1.5 * background(clean)


def test_knee_laterality_in_headers(out: Path) -> None:
    r = render_exam(ImagingSpec(exam_key="kneeL", seed=3, modality="MR", regions=["knee"], size="small", header={"Laterality": "L"}), out)
    ds = pydicom.dcmread(out / r.series[0].files[0], stop_before_pixels=True)
    assert ds.Laterality == "L" and ds.BodyPartExamined == "KNEE"
    assert "femur_left" in r.series[0].extra["tissue_signal"]


# ------------------------------------------------------------------------------ radiographs


def dx(out: Path, key: str, **kw) -> ImagingResult:  # type: ignore[no-untyped-def]
    return render_exam(ImagingSpec(**{"exam_key": key, "seed": 4, "modality": "DX", "regions": ["chest"], "size": "small", **kw}), out)


def test_chest_pa_headers_and_normal_positioning(out: Path) -> None:
    r = dx(out, "dx_normal")
    pa = series(r, "PA")
    ds = pydicom.dcmread(out / pa.files[0])
    assert ds.Modality == "DX" and ds.ViewPosition == "PA" and ds.ImageLaterality == "U"
    assert float(ds.ExposureIndex) > 0 and "DeviationIndex" in ds
    assert not check_required(ds)
    t = pa.extra
    assert t["posterior_ribs_above_right_dome"] >= 10
    assert max(t["scapula_in_lung_fraction"].values()) < 0.15
    assert abs(t["spinous_to_clavicle_midpoint_mm"]) < 10
    assert t["marker"]["present"] and t["marker"]["correct"]
    lat = pydicom.dcmread(out / series(r, "LAT").files[0], stop_before_pixels=True)
    assert lat.ViewPosition == "LL"


def test_scapula_over_lung_pixels_lie_in_the_lung_field(out: Path) -> None:
    r = dx(out, "dx_scap", defects=[Defect("positioning", "不标准", {"kind": "scapula_over_lung"})])
    truth = next(d for d in r.applied_defects if d.params["kind"] == "scapula_over_lung")
    assert min(truth.params["scapula_in_lung_fraction"].values()) > 0.3
    pa = series(r, "PA")
    stack, _ = labels(out, pa)  # one binary channel per projected structure
    ch = {name: stack[i].astype(bool) for i, name in enumerate(pa.extra["label_channels"])}
    lungs = ch["lung_left"] | ch["lung_right"]
    for side in ("scapula_left", "scapula_right"):
        assert (ch[side] & lungs).sum() > 0.3 * ch[side].sum()
    normal = series(dx(out, "dx_scap_normal"), "PA")
    stack, _ = labels(out, normal)
    ch = {name: stack[i].astype(bool) for i, name in enumerate(normal.extra["label_channels"])}
    lungs = ch["lung_left"] | ch["lung_right"]
    assert (ch["scapula_left"] & lungs).sum() < 0.15 * ch["scapula_left"].sum()


def test_shallow_inspiration_counts_fewer_ribs(out: Path) -> None:
    r = dx(out, "dx_insp", defects=[Defect("positioning", "不标准", {"kind": "shallow_inspiration", "ribs": 8})])
    truth = next(d for d in r.applied_defects if d.params["kind"] == "shallow_inspiration")
    assert truth.params["posterior_ribs_above_right_dome"] == 8


def test_rotation_offsets_spinous_processes(out: Path) -> None:
    r = dx(out, "dx_rot", defects=[Defect("positioning", "不标准", {"degrees": 10})])
    truth = next(d for d in r.applied_defects if d.params["kind"] == "rotation")
    assert abs(truth.params["spinous_to_clavicle_midpoint_mm"]) > 15


def test_costophrenic_cutoff_cuts_the_lung_bases(out: Path) -> None:
    r = dx(out, "dx_cut", defects=[Defect("range", "过小", {})])
    truth = next(d for d in r.applied_defects if d.dimension == "range")
    assert truth.params["kind"] == "costophrenic_cutoff" and truth.params["lungs_cut"]
    pa = series(r, "PA")
    stack, _ = labels(out, pa)
    ds = pydicom.dcmread(out / pa.files[0])
    lower = int(ds.CollimatorLowerHorizontalEdge)
    lung = stack[pa.extra["label_channels"].index("lung_left")] | stack[pa.extra["label_channels"].index("lung_right")]
    lung_rows = np.nonzero(lung.any(axis=1))[0]
    assert lung_rows.max() > lower  # the lungs continue below the collimated field
    below = ds.pixel_array[lower + 1 :].astype(float)
    assert np.percentile(np.abs(below - np.median(below)), 90) < 50  # nothing exposed there (text annotations aside)


def test_collimation_too_wide_has_large_margins(out: Path) -> None:
    normal = series(dx(out, "dx_n2"), "PA").extra["collimation_margin_mm"]
    wide = series(dx(out, "dx_wide", defects=[Defect("range", "过大", {"margin_mm": 80})]), "PA").extra["collimation_margin_mm"]
    assert min(v for v in wide.values() if v is not None) > max(v for v in normal.values() if v is not None)


@pytest.mark.parametrize("value,kind", [("缺失", "marker_missing"), ("错误", "marker_wrong")])
def test_marker_defects(out: Path, value: str, kind: str) -> None:
    r = dx(out, f"dx_{kind}", defects=[Defect("marker", value, {})])
    truth = next(d for d in r.applied_defects if d.dimension == "marker")
    assert truth.params["kind"] == kind
    marker = series(r, "PA").extra["marker"]
    if kind == "marker_missing":
        assert not marker["present"]
    else:
        assert marker["present"] and not marker["correct"] and marker["text"] != truth.params["expected"]
        ds = pydicom.dcmread(out / series(r, "PA").files[0])
        row, col, h, w = marker["box"]
        patch = ds.pixel_array[row : row + h, col : col + w]
        assert patch.max() >= 4000  # burned in as lead (MONOCHROME2 bright)


def test_foreign_objects_over_the_lungs(out: Path) -> None:
    r = dx(out, "dx_fo", defects=[Defect("artifact", "异物", {"object": "buttons"})])
    truth = next(d for d in r.applied_defects if d.dimension == "artifact")
    assert truth.params["over_lung_px"] > 0
    assert "foreign_object" in r.structures or truth.params["foreign_object_px"] > 0


def test_extra_views_evidence(out: Path) -> None:
    r = dx(out, "dx_views", evidence={"extra_views": ["OBL"]})
    views = [pydicom.dcmread(out / s.files[0], stop_before_pixels=True).ViewPosition for s in r.series]
    assert views == ["PA", "LL", "LAO"]
    dup = dx(out, "dx_dup", evidence={"duplicate_view": True})
    views = [pydicom.dcmread(out / s.files[0], stop_before_pixels=True).ViewPosition for s in dup.series]
    assert len(views) == 3 and len(set(views)) == 2


def test_knee_radiograph_laterality_and_cr(out: Path) -> None:
    r = render_exam(ImagingSpec(exam_key="cr_knee", seed=2, modality="CR", regions=["knee"], size="small", header={"Laterality": "R"}), out)
    ds = pydicom.dcmread(out / r.series[0].files[0])
    assert ds.Modality == "CR" and str(ds.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.1"
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert ds.ImageLaterality == "R"
    assert not check_required(ds)


# ------------------------------------------------------------------------------ reuse (F1/F2)


def test_reused_pixels_collide_across_patients(tmp_path: Path) -> None:
    src = render(tmp_path, exam_key="src", header={"PatientID": "P1"})
    copy = render(tmp_path, exam_key="copy", header={"PatientID": "P2", "PatientName": "李^四"}, evidence={"reuse_pixels_from": "src"})
    assert set(copy.pixel_hashes.values()) == set(src.pixel_hashes.values())
    assert copy.study_instance_uid != src.study_instance_uid
    ds = pydicom.dcmread(tmp_path / copy.series[0].files[0], stop_before_pixels=True)
    assert ds.PatientID == "P2" and ds.SOPInstanceUID not in src.pixel_hashes
    near = render(tmp_path, exam_key="near", header={"PatientID": "P3"}, evidence={"reuse_pixels_from": "src", "near_identical": True})
    assert set(near.pixel_hashes.values()).isdisjoint(src.pixel_hashes.values())
    with pytest.raises(ValueError, match="render that exam first"):
        render(tmp_path, exam_key="bad", evidence={"reuse_pixels_from": "nope"})


def test_bad_spec_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown vendor"):
        render(tmp_path, vendor="Acme")
    with pytest.raises(ValueError, match="not modelled"):
        render_exam(ImagingSpec(exam_key="x", seed=1, modality="MR", regions=["chest"]), tmp_path)
    r = render(tmp_path, exam_key="unk", defects=[Defect("sequences", "missing", {})])
    assert r.measurements["defects_not_applied"][0]["dimension"] == "sequences"


# ------------------------------------------------------------------------------ every defect kind


from radqc.datasets.synthetic.spec import DEFECT_KINDS  # noqa: E402

KIND_CASES = [("CT", "chest", k) for k in DEFECT_KINDS["CT"]] + [("MR", "head", k) for k in DEFECT_KINDS["MR"]] + [("DX", "chest", k) for k in DEFECT_KINDS["DX"]]


@pytest.mark.parametrize("modality,region,kind", KIND_CASES, ids=[f"{m}-{k}" for m, _, k in KIND_CASES])
def test_every_defect_kind_is_applied_and_recorded(tmp_path: Path, modality: str, region: str, kind: str) -> None:
    dimension = {"missing_sequence": "sequences", "excess_noise": "noise", "blur": "sharpness"}.get(kind, "artifact")
    r = render_exam(ImagingSpec(exam_key=f"k_{kind}", seed=13, modality=modality, regions=[region], size="small", defects=[Defect(dimension, "x", {"kind": kind})]), tmp_path)
    applied = [d for d in r.applied_defects if d.params.get("kind") == kind]
    assert len(applied) == 1, (kind, r.measurements.get("defects_not_applied"))
    assert not r.measurements.get("defects_not_applied")
    for s in r.series:
        assert s.n_instances == len(s.files) > 0
