"""DICOM series -> one SimpleITK volume in Hounsfield units, or a clear reason why not.

Every model of the anatomy engine (``radqc.models.interfaces``) takes a SimpleITK image in
DICOM LPS orientation. Building that image is where most real-world failures happen, so the
checks live here, once, and each failure is an :class:`UnsuitableSeries` with a stable
``reason_code`` (recorded by the pipeline stage, printed by ``radqc segment``) and a
bilingual message:

* the series must be one stack: one Series Instance UID, one orientation, one image size
  and pixel spacing, at least two slices at distinct positions;
* axial (slice normal within :data:`OBLIQUE_BEYOND_DEG` of the patient z axis), not
  gantry-tilted (normal within :data:`TILT_TOLERANCE_DEG` of z) and not sheared (slice
  origins move along the normal only, within the same tolerance);
* evenly spaced: a gap that is a whole multiple of the spacing means missing slices, any
  other deviation beyond :data:`SPACING_REL_TOLERANCE` is inconsistent spacing;
* CT (when the caller asks for CT) and decodable.

Slices are sorted by their position along the slice normal, never by InstanceNumber
(which scanners number head-first or feet-first, and restart per acquisition). Enhanced
(multi-frame) CT is expanded frame by frame from its functional groups.

:func:`scan_folder` groups a folder of files into series from headers alone, and
:func:`pick_series` chooses the one to segment: the thinnest original axial CT series with
the most slices, or a radiograph when the folder holds projections only.
"""

from __future__ import annotations

import io
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from radqc.text import bilingual

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

#: Reason codes of :class:`UnsuitableSeries`: code -> (Chinese, English).
REASONS: dict[str, tuple[str, str]] = {
    "no_images": ("没有可用的图像", "no images to build a volume from"),
    "no_dicom": ("路径中没有 DICOM 文件", "no DICOM files at this path"),
    "unreadable": ("文件无法按 DICOM 读取", "file is not readable as DICOM"),
    "mixed_series": ("输入包含多个序列", "input holds more than one series"),
    "not_ct": ("非 CT 序列不能送入 CT 模型", "not a CT series; the CT model needs CT"),
    "localizer": ("定位像不是断层容积", "localizer / scout image, not a tomographic volume"),
    "no_geometry": ("缺少空间定位信息（方向/位置）", "no image orientation / position in the header"),
    "single_slice": ("只有一幅图像，无法构成容积", "a single slice is not a volume"),
    "mixed_sizes": ("图像尺寸或像素间距不一致", "images differ in size or pixel spacing"),
    "mixed_orientation": ("序列内图像方向不一致", "images of the series have different orientations"),
    "non_axial": ("非轴位序列", "not an axial series"),
    "gantry_tilt": ("机架倾斜或层面错位（斜切堆叠）", "gantry-tilted or sheared slice stack"),
    "duplicate_positions": ("多幅图像位于同一层面位置", "several images at the same slice position"),
    "missing_slices": ("层面缺失", "missing slices in the stack"),
    "inconsistent_spacing": ("层间距不一致", "inconsistent slice spacing"),
    "undecodable": ("像素数据无法解码", "pixel data cannot be decoded"),
    "not_radiograph": ("不是可分析的X线平片", "not a radiograph that can be analysed"),
    "series_not_found": ("路径中没有指定的序列", "the requested series is not at this path"),
}

#: A slice normal further than this from the patient z axis is not axial (degrees).
OBLIQUE_BEYOND_DEG = 30.0
#: An axial normal (or slice-origin drift) further than this from z is a gantry tilt (degrees).
TILT_TOLERANCE_DEG = 1.0
#: Orientation cosines equal within this belong to one stack.
ORIENTATION_TOLERANCE = 1e-3
#: Pixel spacings equal within this (mm) are the same.
PIXEL_SPACING_TOLERANCE_MM = 1e-3
#: Two slice positions closer than this along the normal are the same position (mm).
SAME_POSITION_MM = 0.01
#: Gaps deviating from the median by more than this fraction (and ``SPACING_ABS_TOLERANCE_MM``)
#: are irregular; whole multiples of the spacing are missing slices.
SPACING_REL_TOLERANCE = 0.10
SPACING_ABS_TOLERANCE_MM = 0.02
MISSING_SLICE_RATIO = 1.5
#: ImageType values of a localizer.
LOCALIZER_IMAGE_TYPES = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW", "SCANOGRAM"})
#: Projection modalities :func:`pick_series` may choose when a folder holds no CT volume.
RADIOGRAPH_MODALITIES = ("DX", "CR", "RG", "DR")
#: Decoder plugin per transfer syntax: pydicom's default order picks pylibjpeg-libjpeg for
#: JPEG-LS, ~3x slower than pyjpegls (../shared/ENVIRONMENT.md); the archive stores JPEG-LS.
DECODING_PLUGIN = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
}


class UnsuitableSeries(ValueError):
    """The series cannot be turned into the volume a model needs; ``reason_code`` says why.

    ``message`` is the bilingual text (Chinese / English: detail)."""

    def __init__(self, reason_code: str, detail: str = "") -> None:
        if reason_code not in REASONS:
            raise ValueError(f"unknown reason code {reason_code!r}")
        self.reason_code = reason_code
        self.detail = detail
        self.message = bilingual(REASONS, reason_code, detail)
        super().__init__(self.message)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.reason_code, "message": self.message, "detail": self.detail}


# -- reading -----------------------------------------------------------------------------------


def read_dataset(source: Dataset | bytes | str | os.PathLike[str], *, stop_before_pixels: bool = False) -> Dataset:
    """One data set from a pydicom Dataset, Part-10 bytes or a file path."""
    if isinstance(source, Dataset):
        return source
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return pydicom.dcmread(io.BytesIO(bytes(source)), stop_before_pixels=stop_before_pixels)
        return pydicom.dcmread(os.fspath(source), stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, AttributeError) as exc:
        name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
        raise UnsuitableSeries("unreadable", f"{name}: {type(exc).__name__}: {exc}"[:300]) from exc


def _floats(value: Any, n: int) -> list[float] | None:
    if value is None:
        return None
    try:
        out = [float(v) for v in (value if isinstance(value, (list, tuple)) or hasattr(value, "__iter__")
                                  and not isinstance(value, str) else [value])]
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _number(value: Any, default: float) -> float:
    out = _floats(value, 1)
    return out[0] if out else default


def _image_type(ds: Dataset) -> list[str]:
    value = ds.get("ImageType")
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split("\\")
    return [str(v).strip().upper() for v in value]


@dataclass(frozen=True)
class Frame:
    """One 2-D image of the stack: a single-frame instance, or one frame of an enhanced one."""

    dataset_index: int
    frame: int | None  # index into a multi-frame instance; None for a single-frame one
    sop_instance_uid: str
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm
    rows: int
    columns: int
    slope: float
    intercept: float


def _item(seq: Any) -> Dataset | None:
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _functional(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """An item of a functional-group macro for one frame: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        item = _item(per_frame[index].get(sequence))
        if item is not None:
            return item
    shared = _item(ds.get("SharedFunctionalGroupsSequence"))
    return _item(shared.get(sequence)) if shared is not None else None


def _frames_of(ds: Dataset, index: int) -> list[Frame]:
    """The frames of one data set with their geometry; raises ``no_geometry`` when absent."""
    uid = str(ds.get("SOPInstanceUID", ""))
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n_frames = int(_number(ds.get("NumberOfFrames"), 1))
    if n_frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        out = []
        for f in range(n_frames):
            plane_pos = _functional(ds, f, "PlanePositionSequence")
            plane_ori = _functional(ds, f, "PlaneOrientationSequence")
            measures = _functional(ds, f, "PixelMeasuresSequence")
            rescale = _functional(ds, f, "PixelValueTransformationSequence")
            position = _floats(plane_pos.get("ImagePositionPatient") if plane_pos else None, 3)
            orientation = _floats(plane_ori.get("ImageOrientationPatient") if plane_ori else None, 6)
            spacing = _floats(measures.get("PixelSpacing") if measures else ds.get("PixelSpacing"), 2)
            if position is None or orientation is None or spacing is None:
                raise UnsuitableSeries("no_geometry", f"instance {uid} frame {f + 1}")
            src = rescale if rescale is not None else ds
            out.append(Frame(index, f, uid, tuple(position), tuple(orientation), (spacing[0], spacing[1]),  # type: ignore[arg-type]
                             rows, columns, _number(src.get("RescaleSlope"), 1.0),
                             _number(src.get("RescaleIntercept"), 0.0)))
        return out
    position = _floats(ds.get("ImagePositionPatient"), 3)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    if position is None or orientation is None or spacing is None:
        missing = [k for k, v in (("ImagePositionPatient", position), ("ImageOrientationPatient", orientation),
                                  ("PixelSpacing", spacing)) if v is None]
        raise UnsuitableSeries("no_geometry", f"instance {uid}: no {', '.join(missing)}")
    return [Frame(index, None, uid, tuple(position), tuple(orientation), (spacing[0], spacing[1]),  # type: ignore[arg-type]
                  rows, columns, _number(ds.get("RescaleSlope"), 1.0), _number(ds.get("RescaleIntercept"), 0.0))]


# -- geometry checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StackGeometry:
    """Sorted frames and the stack's direction cosines and spacing."""

    frames: tuple[Frame, ...]
    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    slice_spacing_mm: float
    tilt_deg: float


def _angle_to_z(vector: np.ndarray) -> float:
    return float(np.degrees(np.arccos(min(1.0, abs(float(vector[2])) / float(np.linalg.norm(vector))))))


def check_stack(frames: Sequence[Frame]) -> StackGeometry:
    """Order ``frames`` along the slice normal and check they form a regular axial stack."""
    if not frames:
        raise UnsuitableSeries("no_images")
    if len(frames) == 1:
        raise UnsuitableSeries("single_slice", f"instance {frames[0].sop_instance_uid}")
    sizes = Counter((f.rows, f.columns) for f in frames)
    if len(sizes) > 1:
        raise UnsuitableSeries("mixed_sizes", "sizes " + ", ".join(f"{r}x{c} ({n})" for (r, c), n in sizes.items()))
    spacings = np.asarray([f.pixel_spacing for f in frames])
    if float(np.ptp(spacings, axis=0).max()) > PIXEL_SPACING_TOLERANCE_MM:
        raise UnsuitableSeries("mixed_sizes", f"pixel spacing varies {spacings.min(0).tolist()}..{spacings.max(0).tolist()} mm")
    orientations = np.asarray([f.orientation for f in frames])
    if float(np.ptp(orientations, axis=0).max()) > ORIENTATION_TOLERANCE:
        kinds = Counter(tuple(round(v, 3) for v in f.orientation) for f in frames)
        raise UnsuitableSeries("mixed_orientation", f"{len(kinds)} orientations")
    row = orientations[0, :3] / np.linalg.norm(orientations[0, :3])
    col = orientations[0, 3:] / np.linalg.norm(orientations[0, 3:])
    normal = np.cross(row, col)
    if float(np.linalg.norm(normal)) < 1e-6:
        raise UnsuitableSeries("no_geometry", "degenerate ImageOrientationPatient")
    normal /= np.linalg.norm(normal)
    tilt = _angle_to_z(normal)
    if tilt > OBLIQUE_BEYOND_DEG:
        axis = int(np.argmax(np.abs(normal)))
        plane = ("sagittal", "coronal", "axial")[axis] if max(abs(normal)) > math.cos(math.radians(OBLIQUE_BEYOND_DEG)) else "oblique"
        raise UnsuitableSeries("non_axial", f"{plane} (normal {tilt:.1f}° from the patient z axis)")
    if tilt > TILT_TOLERANCE_DEG:
        raise UnsuitableSeries("gantry_tilt", f"slice normal tilted {tilt:.1f}° from z")
    positions = np.asarray([f.position for f in frames], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    positions = positions[order]
    diffs = np.diff(along)
    if float(diffs.min()) <= SAME_POSITION_MM:
        dup = int((diffs <= SAME_POSITION_MM).sum())
        raise UnsuitableSeries("duplicate_positions", f"{dup} image(s) share a slice position (several phases or echoes?)")
    # Shear: slice origins must move along the normal; an in-plane drift means a tilted gantry
    # written with untilted orientation cosines (or a stack built from different acquisitions).
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    extent = float(along[-1] - along[0])
    drift = float(np.linalg.norm(in_plane, axis=1).max())
    shear = float(np.degrees(np.arctan2(drift, extent)))
    if shear > TILT_TOLERANCE_DEG:
        raise UnsuitableSeries("gantry_tilt", f"sheared stack: slice origins drift {drift:.1f} mm over {extent:.1f} mm ({shear:.1f}°)")
    spacing = float(np.median(diffs))
    tolerance = max(SPACING_REL_TOLERANCE * spacing, SPACING_ABS_TOLERANCE_MM)
    bad = np.abs(diffs - spacing) > tolerance
    if bad.any():
        missing = 0
        irregular = []
        for i in np.flatnonzero(bad):
            gap = float(diffs[i])
            whole = round(gap / spacing)
            if gap / spacing >= MISSING_SLICE_RATIO and abs(gap - whole * spacing) <= tolerance * whole:
                missing += whole - 1
            else:
                irregular.append(f"{gap:.2f} mm after z={along[i]:.1f}")
        if irregular:
            raise UnsuitableSeries("inconsistent_spacing", f"spacing {spacing:.2f} mm but gaps " + "; ".join(irregular[:5]))
        raise UnsuitableSeries("missing_slices", f"{missing} slice(s) missing at spacing {spacing:.2f} mm")
    return StackGeometry(tuple(frames[i] for i in order), row, col, normal, spacing, round(tilt, 3))


# -- the volume --------------------------------------------------------------------------------


@dataclass
class Volume:
    """A CT volume in HU with the source facts the writers need.

    ``image`` is int16 when the rescale keeps HU integral (every real CT), else float32.
    ``datasets`` are the source instances; ``frames`` the slices in image index order
    (k = 0 is the lowest position along the slice normal, i.e. the feet for axial LPS)."""

    image: sitk.Image
    datasets: list[Dataset]
    frames: tuple[Frame, ...]
    series_instance_uid: str
    study_instance_uid: str
    modality: str
    slice_spacing_mm: float
    warnings: list[str] = field(default_factory=list)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [f.sop_instance_uid for f in self.frames]

    @property
    def z_mm(self) -> list[float]:
        """Patient z (LPS, + towards the head) of every slice in index order."""
        return [float(f.position[2]) for f in self.frames]

    def source_datasets_in_order(self) -> list[Dataset]:
        """Source instances in slice order (each once; a multi-frame instance appears once)."""
        seen: dict[int, None] = {}
        for f in self.frames:
            seen.setdefault(f.dataset_index, None)
        return [self.datasets[i] for i in seen]


def decode(ds: Dataset) -> np.ndarray:
    """Stored pixel values (frames, rows, columns) or (rows, columns); ``undecodable`` on error.

    Uses the transfer syntax's decoder directly (not ``ds.pixel_array``), so the decoded
    array is not cached inside the data set: a 300-slice series would otherwise hold its
    pixels twice (~150 MB) for as long as the data sets live (they do, for the SEG)."""
    from pydicom.pixels import get_decoder

    try:
        syntax = ds.file_meta.TransferSyntaxUID if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else None
        if syntax is None:
            return np.asarray(ds.pixel_array)
        decoder = get_decoder(syntax)
        plugin = DECODING_PLUGIN.get(str(syntax), "")
        if plugin and plugin not in decoder.available_plugins:
            plugin = ""
        arr, _meta = decoder.as_array(ds, decoding_plugin=plugin)
        return np.asarray(arr)
    except Exception as exc:  # noqa: BLE001 - every decoder failure is one reason for the user
        raise UnsuitableSeries("undecodable", f"instance {ds.get('SOPInstanceUID', '?')}: {type(exc).__name__}: {exc}"[:300]) from exc


def _modality(datasets: Sequence[Dataset]) -> str:
    values = Counter(str(ds.get("Modality", "") or "").upper() for ds in datasets)
    return values.most_common(1)[0][0] if values else ""


def build_volume(
    sources: Iterable[Dataset | bytes | str | os.PathLike[str]], *, require_ct: bool = True,
) -> Volume:
    """One SimpleITK image (HU, LPS) from the instances of ONE series, after every check.

    Raises :class:`UnsuitableSeries` with the first problem found, in this order: nothing
    readable, several series, not CT, localizer, no geometry, a single slice, mixed sizes,
    mixed orientation, non-axial, gantry tilt / shear, duplicate positions, inconsistent
    spacing / missing slices, undecodable pixels."""
    import SimpleITK as sitk

    datasets = [read_dataset(s) for s in sources]
    if not datasets:
        raise UnsuitableSeries("no_images")
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for ds in datasets)
    if len(series) > 1:
        raise UnsuitableSeries("mixed_series", f"{len(series)} Series Instance UIDs")
    modality = _modality(datasets)
    if require_ct and modality != "CT":
        raise UnsuitableSeries("not_ct", f"modality {modality or 'unknown'}")
    if sum(1 for ds in datasets if LOCALIZER_IMAGE_TYPES & set(_image_type(ds))) * 2 > len(datasets):
        raise UnsuitableSeries("localizer", "ImageType " + "\\".join(_image_type(datasets[0])))
    frames = [f for i, ds in enumerate(datasets) for f in _frames_of(ds, i)]
    geometry = check_stack(frames)

    first = geometry.frames[0]
    n = len(geometry.frames)
    slopes = {f.slope for f in geometry.frames}
    intercepts = {f.intercept for f in geometry.frames}
    integral = all(float(s).is_integer() for s in slopes | intercepts)
    decoded: dict[int, np.ndarray] = {}
    lo, hi = math.inf, -math.inf
    for f in geometry.frames:
        if f.dataset_index not in decoded:
            arr = decode(datasets[f.dataset_index])
            if arr.ndim == 3 and f.frame is None or arr.ndim not in (2, 3):
                raise UnsuitableSeries("undecodable", f"instance {f.sop_instance_uid}: pixel array of shape {arr.shape}")
            decoded[f.dataset_index] = arr
    for arr in decoded.values():
        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    extremes = [lo * s + b for s in slopes for b in intercepts] + [hi * s + b for s in slopes for b in intercepts]
    dtype = np.int16 if integral and min(extremes) >= -32768 and max(extremes) <= 32767 else np.float32
    volume = np.empty((n, first.rows, first.columns), dtype=dtype)
    for k, f in enumerate(geometry.frames):
        arr = decoded[f.dataset_index]
        plane = arr[f.frame] if f.frame is not None and arr.ndim == 3 else arr
        if plane.shape != (first.rows, first.columns):
            raise UnsuitableSeries("undecodable", f"instance {f.sop_instance_uid}: {plane.shape} pixels, header says "
                                   f"{first.rows}x{first.columns}")
        if f.slope == 1.0 and dtype == np.int16:
            np.add(plane, np.int32(f.intercept), out=volume[k], casting="unsafe")
        else:
            volume[k] = plane.astype(np.float32) * f.slope + f.intercept
    image = sitk.GetImageFromArray(volume)
    image.SetOrigin(tuple(float(v) for v in first.position))
    image.SetSpacing((float(first.pixel_spacing[1]), float(first.pixel_spacing[0]), geometry.slice_spacing_mm))
    r, c, nrm = geometry.row, geometry.col, geometry.normal
    image.SetDirection(tuple(float(v) for v in (r[0], c[0], nrm[0], r[1], c[1], nrm[1], r[2], c[2], nrm[2])))
    warnings = []
    numbers = [datasets[f.dataset_index].get("InstanceNumber") for f in geometry.frames if f.frame is None]
    numbers = [int(x) for x in numbers if x is not None]
    if len(numbers) > 2 and numbers != sorted(numbers) and numbers != sorted(numbers, reverse=True):
        warnings.append("InstanceNumber order differs from slice position order; sorted by position")
    return Volume(
        image=image, datasets=datasets, frames=geometry.frames,
        series_instance_uid=str(datasets[0].get("SeriesInstanceUID", "")),
        study_instance_uid=str(datasets[0].get("StudyInstanceUID", "")),
        modality=modality, slice_spacing_mm=geometry.slice_spacing_mm, warnings=warnings,
    )


# -- radiographs -------------------------------------------------------------------------------


@dataclass
class Radiograph:
    """One projection image: pixels with higher = denser (MONOCHROME1 inverted), and facts."""

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    view: str | None
    body_part: str | None
    modality: str
    dataset: Dataset
    inverted: bool = False

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.get("SOPInstanceUID", ""))

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.get("SeriesInstanceUID", ""))


def load_radiograph(source: Dataset | bytes | str | os.PathLike[str]) -> Radiograph:
    """A projection (DX/CR) image for the radiograph-anatomy slot."""
    ds = read_dataset(source)
    modality = str(ds.get("Modality", "") or "").upper()
    if modality not in RADIOGRAPH_MODALITIES:
        raise UnsuitableSeries("not_radiograph", f"modality {modality or 'unknown'}")
    arr = decode(ds)
    if arr.ndim == 3:
        if int(_number(ds.get("SamplesPerPixel"), 1)) > 1:
            raise UnsuitableSeries("not_radiograph", "colour image")
        arr = arr[0]
    pixels = arr.astype(np.float32) * _number(ds.get("RescaleSlope"), 1.0) + _number(ds.get("RescaleIntercept"), 0.0)
    inverted = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    if inverted:
        pixels = float(pixels.max()) + float(pixels.min()) - pixels
    spacing = next((v for v in (_floats(ds.get("ImagerPixelSpacing"), 2), _floats(ds.get("PixelSpacing"), 2))
                    if v and min(v) > 0), None)  # "0\\0" (seen on real CR) means unknown
    view = str(ds.get("ViewPosition", "") or "").strip() or None
    body_part = str(ds.get("BodyPartExamined", "") or "").strip() or None
    return Radiograph(pixels=pixels, spacing_mm=(spacing[0], spacing[1]) if spacing else None, view=view,
                      body_part=body_part, modality=modality, dataset=ds, inverted=inverted)


# -- folders -----------------------------------------------------------------------------------


@dataclass
class SeriesGroup:
    """The files of one series in a folder, with the header facts used to pick one."""

    series_instance_uid: str
    modality: str
    files: list[Path] = field(default_factory=list)
    description: str = ""
    series_number: int | None = None
    slice_thickness_mm: float | None = None
    original: bool = False
    localizer: bool = False
    axial: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"series_instance_uid": self.series_instance_uid, "modality": self.modality,
                "instances": len(self.files), "description": self.description,
                "series_number": self.series_number, "slice_thickness_mm": self.slice_thickness_mm,
                "original": self.original, "localizer": self.localizer, "axial": self.axial}


def _is_axial(ds: Dataset) -> bool:
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    if orientation is None:
        shared = _item(ds.get("SharedFunctionalGroupsSequence"))
        plane = _item(shared.get("PlaneOrientationSequence")) if shared is not None else None
        orientation = _floats(plane.get("ImageOrientationPatient"), 6) if plane is not None else None
    if orientation is None:
        return False
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.linalg.norm(normal)) > 1e-6 and _angle_to_z(normal) <= OBLIQUE_BEYOND_DEG


def scan_folder(path: str | os.PathLike[str]) -> list[SeriesGroup]:
    """Every readable DICOM image under ``path`` (a file or a folder), grouped by series.

    Files that are not DICOM (DICOMDIR, reports, thumbnails) are ignored; header-only reads
    keep this fast on big folders."""
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR")
    else:
        raise UnsuitableSeries("no_dicom", str(root))
    groups: dict[str, SeriesGroup] = {}
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: skip it
            continue
        if "SeriesInstanceUID" not in ds or ("Rows" not in ds and "NumberOfFrames" not in ds):
            continue  # no image (SR, presentation state, ...)
        uid = str(ds.SeriesInstanceUID)
        group = groups.get(uid)
        if group is None:
            types = _image_type(ds)
            number = ds.get("SeriesNumber")
            group = SeriesGroup(
                series_instance_uid=uid, modality=str(ds.get("Modality", "") or "").upper(),
                description=str(ds.get("SeriesDescription", "") or ""),
                series_number=int(number) if number not in (None, "") else None,
                slice_thickness_mm=_number(ds.get("SliceThickness"), math.nan),
                original=bool(types) and types[0] == "ORIGINAL",
                localizer=bool(LOCALIZER_IMAGE_TYPES & set(types)),
                axial=_is_axial(ds),
            )
            if group.slice_thickness_mm is not None and math.isnan(group.slice_thickness_mm):
                group.slice_thickness_mm = None
            groups[uid] = group
        group.files.append(file)
    return sorted(groups.values(), key=lambda g: (g.series_number if g.series_number is not None else 1 << 30,
                                                  g.series_instance_uid))


def ct_preference(group: SeriesGroup) -> tuple[Any, ...]:
    """Sort key, best first: original, axial, not a localizer, thinnest, most slices."""
    thickness = group.slice_thickness_mm if group.slice_thickness_mm and group.slice_thickness_mm > 0 else math.inf
    return (not group.original, not group.axial, group.localizer, len(group.files) < 2, thickness, -len(group.files))


def pick_series(groups: Sequence[SeriesGroup], series_instance_uid: str | None = None) -> tuple[SeriesGroup, str]:
    """The series to segment and its kind (``ct`` or ``radiograph``).

    ``series_instance_uid`` when given; else the thinnest original axial CT series with the
    most slices; else, when the folder holds projections, a radiograph; else the largest
    series, so that the volume checks say why it cannot be used (``not_ct``) instead of a
    vague "nothing found"."""
    if not groups:
        raise UnsuitableSeries("no_dicom", "no DICOM images found")
    if series_instance_uid:
        for group in groups:
            if group.series_instance_uid == series_instance_uid:
                return group, "radiograph" if group.modality in RADIOGRAPH_MODALITIES else "ct"
        raise UnsuitableSeries("series_not_found", f"{series_instance_uid} (found {len(groups)} series)")
    ct = [g for g in groups if g.modality == "CT" and not g.localizer]
    if ct:
        return min(ct, key=ct_preference), "ct"
    radiographs = [g for g in groups if g.modality in RADIOGRAPH_MODALITIES]
    if radiographs:
        return radiographs[0], "radiograph"
    return max(groups, key=lambda g: len(g.files)), "ct"
