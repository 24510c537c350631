"""CT QC speed (CTSP, 2026-11-24): work shared within an exam must give the same numbers.

* ``ct_motion.work_slice``'s fast block sum must be bit-identical to the mean it replaces on
  stored CT values (integral HU), and fall back to the mean elsewhere;
* ``exam.with_pixels``: the scan's header data set completed with the pixel data of the full
  read reads the same elements and pixels as the full read, and a different instance is refused.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radqc.pipelines.image_qc import ct_motion
from radqc.pipelines.image_qc.exam import with_pixels


def _mean_reference(hu: np.ndarray, work_px: int = 128) -> np.ndarray:
    """work_slice as it was before the fast path (the mean over the blocks)."""
    factor = max(1, hu.shape[1] // work_px) if hu.shape[1] > work_px * 1.25 else 1
    if factor == 1:
        return np.asarray(hu, dtype=np.float32)
    h, w = hu.shape[0] // factor * factor, hu.shape[1] // factor * factor
    return np.asarray(hu[:h, :w], dtype=np.float32).reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


@pytest.mark.parametrize("shape", [(512, 512), (384, 384), (640, 640), (1024, 1024), (333, 517), (100, 100)])
@pytest.mark.parametrize("work_px", [128, 64])
def test_work_slice_fast_path_is_bit_identical_on_stored_values(shape: tuple[int, int], work_px: int) -> None:
    rng = np.random.default_rng(8990)
    stored = rng.integers(-3024, 3072, shape).astype(np.int16)
    for x in (stored, stored.astype(np.float32), stored.astype(np.float32) * np.float32(0.5)):
        got = ct_motion.work_slice(x, work_px)
        want = _mean_reference(x, work_px)
        assert got.dtype == want.dtype == np.float32
        assert np.array_equal(got, want)


def test_work_slice_non_integral_values_keep_the_mean() -> None:
    rng = np.random.default_rng(8991)
    x = (rng.standard_normal((512, 512)) * 300).astype(np.float32)
    assert np.array_equal(ct_motion.work_slice(x), _mean_reference(x))
    assert ct_motion.work_slice(x).shape == (128, 128)


def _write(tmp_path, uid: str) -> str:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, uid, "CT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 8, 8, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = (np.arange(64, dtype=np.int16).reshape(8, 8) * 7).tobytes()
    path = str(tmp_path / f"{uid[-6:]}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def test_with_pixels_completes_the_header_with_the_full_reads_pixels(tmp_path) -> None:
    path = _write(tmp_path, generate_uid())
    header = pydicom.dcmread(path, stop_before_pixels=True)
    assert "PixelData" not in header
    _ = header.Modality, header.RescaleIntercept  # converted by the scan / classification
    full = pydicom.dcmread(path)
    merged = with_pixels(full, header)
    assert merged is header
    assert np.array_equal(merged.pixel_array, pydicom.dcmread(path).pixel_array)
    assert sorted(merged.keys()) == sorted(full.keys())
    assert merged.RescaleIntercept == full.RescaleIntercept


def test_with_pixels_refuses_another_instance(tmp_path) -> None:
    a, b = _write(tmp_path, generate_uid()), _write(tmp_path, generate_uid())
    header = pydicom.dcmread(a, stop_before_pixels=True)
    full = pydicom.dcmread(b)
    assert with_pixels(full, header) is full
    assert "PixelData" not in header
    assert with_pixels(full, None) is full
