"""Minimal, valid CT slices built in code: test fixtures, benchmarks and smoke checks.

Not the synthetic exam generator (``radqc.datasets.synthetic`` draws anatomy, defects and
ground truth): this writes one plain axial int16 CT slice with whatever identifiers and
geometry the caller names, so tests and benchmarks share one correct header instead of
each carrying its own copy.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_slice(
    *,
    study_uid: str,
    series_uid: str,
    pixels: np.ndarray,
    sop_uid: str | None = None,
    instance_number: int | None = 1,
    series_number: int = 1,
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: Sequence[float] = (0.7, 0.7),
    slice_thickness: float = 2.5,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    patient_id: str = "PID0001",
    patient_name: str = "Test^Patient",
    patient_sex: str = "M",
    patient_birth_date: str = "19700101",
    accession: str = "ACC0001",
    study_date: str = "20260101",
    study_time: str = "083000",
    institution: str = "Test Hospital",
    rescale_intercept: float = 0,
    **extra: Any,
) -> Dataset:
    """One CT Image Storage data set (explicit VR little endian) around an int16 2-D array.

    ``extra`` sets any further keyword, e.g. ``SeriesDescription="axial 5mm"``.
    """
    if pixels.ndim != 2:
        raise ValueError(f"pixels must be 2-D (rows, columns), got shape {pixels.shape}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid) if sop_uid else generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientSex = patient_sex
    ds.PatientBirthDate = patient_birth_date
    ds.AccessionNumber = accession
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.InstitutionName = institution
    ds.SeriesNumber = series_number
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = slice_thickness
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = rescale_intercept
    ds.RescaleSlope = 1
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Part-10 file bytes of a data set."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ct_series_datasets(
    n_slices: int,
    *,
    size: int = 32,
    spacing_mm: float = 2.5,
    study_uid: str | None = None,
    series_uid: str | None = None,
    seed: int = 0,
    **identity: Any,
) -> list[Dataset]:
    """An axial series of random-HU slices, ``spacing_mm`` apart, new UIDs unless given."""
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    return [
        ct_slice(
            study_uid=study_uid,
            series_uid=series_uid,
            pixels=rng.integers(-1000, 1500, size=(size, size), dtype=np.int16),
            instance_number=i + 1,
            position=(0.0, 0.0, -i * spacing_mm),
            slice_thickness=spacing_mm,
            **identity,
        )
        for i in range(n_slices)
    ]
