"""Files of an analysis: ``labels.nii.gz`` (source geometry), ``seg.dcm`` (DICOM SEG), ``result.json``.

* The NIfTI is written by SimpleITK from the LPS label map, so its affine is the source
  series' geometry (SimpleITK converts LPS to NIfTI's RAS); every voxel lines up with the
  source slice it came from.
* The DICOM SEG is built by highdicom (``hd.seg.Segmentation``, LABELMAP compressed with
  lossless JPEG-LS by default, BINARY on request; never FRACTIONAL) with one segment per structure present, each described by its
  SNOMED CT code from the label set, and references to every source instance (highdicom
  writes the Referenced Series and per-frame Source Image sequences). BINARY segment
  numbers must run 1..N, so they are *not* the label values: ``segment_map`` in the result
  says which segment number holds which label. LABELMAP segmentations keep the label
  values as segment numbers.
* UIDs are derived from the source series and the label map's content, so the same input
  and model give the same SEG UIDs (and re-runs do not pile up distinct objects).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk
    from pydicom.dataset import Dataset

    from radqc.dicom.volume import Radiograph, Volume
    from radqc.models.registry import LabelSet

SEG_SERIES_NUMBER = 9001
SEG_MANUFACTURER = "RadQC"
SEG_MODEL_NAME = "RadQC anatomy engine"
#: Category of every segment: SNOMED CT "Anatomical structure".
ANATOMY_CATEGORY = ("123037004", "SCT", "Anatomical Structure")


def nifti_bytes(image: sitk.Image) -> bytes:
    """``.nii.gz`` bytes of a SimpleITK image (SimpleITK writes only to files)."""
    import SimpleITK as sitk

    fd, name = tempfile.mkstemp(suffix=".nii.gz")
    os.close(fd)
    try:
        sitk.WriteImage(image, name, useCompression=True)
        return Path(name).read_bytes()
    finally:
        os.unlink(name)


def write_nifti(image: sitk.Image, path: str | os.PathLike[str]) -> Path:
    import SimpleITK as sitk

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(out), useCompression=True)
    return out


def radiograph_label_stack(masks: dict[str, np.ndarray], spacing_mm: tuple[float, float] | None) -> sitk.Image:
    """Binary masks of a projection as a stack (channel c+1 = the c-th mask, in result order)."""
    import SimpleITK as sitk

    arrays = [m.astype(np.uint8) for m in masks.values()]
    image = sitk.GetImageFromArray(np.stack(arrays) if arrays else np.zeros((1, 1, 1), np.uint8))
    if spacing_mm:
        image.SetSpacing((float(spacing_mm[1]), float(spacing_mm[0]), 1.0))
    return image


#: Type-2 attributes highdicom copies from the source; absent ones are added empty (real
#: exports often lack StudyID or ReferringPhysicianName, which must not cost the SEG).
SOURCE_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _header_only(ds: Dataset) -> Dataset:
    """A shallow copy of a source instance without pixels, type-2 attributes present."""
    from pydicom.dataset import Dataset as DicomDataset

    out = DicomDataset()
    for element in ds:
        if element.tag != 0x7FE00010:
            out.add(element)
    if hasattr(ds, "file_meta"):
        out.file_meta = ds.file_meta
    for keyword in SOURCE_TYPE2:
        if keyword not in out:
            setattr(out, keyword, "")
    if "FrameOfReferenceUID" not in out:
        # The SEG IOD requires one; a series without it gets one derived from its own UIDs
        # (the same for every instance of the series).
        out.FrameOfReferenceUID = _uid(str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")), "for")
    return out


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[p for p in parts]))


def _algorithm(model: dict[str, Any]) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(
        name=str(model.get("name") or "unknown")[:64], family=codes.cid7162.ArtificialIntelligence,
        version=str(model.get("version") or "0")[:64],
    )


def _description(number: int, name: str, snomed: str | None, algorithm: Any, uid_seed: str) -> Any:
    import highdicom as hd
    from highdicom.sr import CodedConcept

    category = CodedConcept(*ANATOMY_CATEGORY)
    prop = CodedConcept(snomed, "SCT", name) if snomed else CodedConcept("85756007", "SCT", "Tissue")
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=name[:64], segmented_property_category=category,
        segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm, tracking_uid=_uid(uid_seed, name), tracking_id=name[:64],
    )


def ct_seg(
    labels: np.ndarray, volume: Volume, label_set: LabelSet, model: dict[str, Any], *, seg_type: str = "LABELMAP",
) -> tuple[Dataset, dict[int, int]]:
    """A DICOM SEG of ``labels`` (z, y, x; index k = ``volume.frames[k]``) over the source series.

    Returns the data set and ``segment_map`` {segment number: label value}. Raises
    ValueError when nothing is segmented (a SEG needs at least one segment) or when the
    source mixes single- and multi-frame instances."""
    import highdicom as hd

    from radqc import __version__

    by_label = label_set.by_label()
    present = [int(v) for v in np.unique(labels) if v and int(v) in by_label]
    if not present:
        raise ValueError("no structure in the label map; a DICOM SEG needs at least one segment")
    seg_type = seg_type.upper()
    if seg_type == "LABELMAP":
        segment_map = {v: v for v in present}
        known = np.zeros(max(256, int(labels.max()) + 1), bool)
        known[present] = True
        pixels = np.where(known[labels], labels, 0).astype(np.uint8 if max(present) < 256 else np.uint16)
    else:
        segment_map = {i + 1: v for i, v in enumerate(present)}
        lut = np.zeros(max(256, int(labels.max()) + 1), np.uint8)
        for number, value in segment_map.items():
            lut[value] = number
        pixels = lut[labels]
    multi = [f for f in volume.frames if f.frame is not None]
    if multi and len(multi) != len(volume.frames):
        raise ValueError("source mixes single-frame and multi-frame instances")
    if multi:
        if len({f.dataset_index for f in multi}) != 1:
            raise ValueError("source holds several multi-frame instances")
        sources = [_header_only(volume.datasets[multi[0].dataset_index])]
        order = np.empty(len(multi), np.intp)
        for k, f in enumerate(volume.frames):
            order[f.frame] = k  # type: ignore[index]
        pixels = pixels[order]
    else:
        sources = [_header_only(ds) for ds in volume.source_datasets_in_order()]
    seed = f"{volume.series_instance_uid}|{hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()}|" \
           f"{model.get('name')}|{model.get('version')}"
    algorithm = _algorithm(model)
    descriptions = [
        _description(number, by_label[value].name, by_label[value].snomed, algorithm, seed)
        for number, value in sorted(segment_map.items())
    ]
    kwargs: dict[str, Any] = dict(
        source_images=sources, pixel_array=pixels, segmentation_type=seg_type,
        segment_descriptions=descriptions, series_instance_uid=_uid(seed, "series"),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=_uid(seed, "instance"), instance_number=1,
        manufacturer=SEG_MANUFACTURER, manufacturer_model_name=SEG_MODEL_NAME, software_versions=str(__version__),
        device_serial_number="0", fractional_type=None,
        series_description=f"{label_set.name} ({model.get('name')} {model.get('version')})"[:64],
        content_label="ANATOMY", content_description=f"{label_set.name} segmentation"[:64],
        omit_empty_frames=True,
    )
    if seg_type == "LABELMAP":
        from pydicom.uid import JPEGLSLossless

        try:  # lossless JPEG-LS: ~100x smaller than uncompressed 8-bit frames
            with _source_names_as_given():
                return hd.seg.Segmentation(**kwargs, transfer_syntax_uid=JPEGLSLossless), segment_map
        except (RuntimeError, ValueError, ImportError):  # no JPEG-LS encoder here: uncompressed
            pass
    with _source_names_as_given():
        return hd.seg.Segmentation(**kwargs), segment_map


def radiograph_seg(masks: dict[str, np.ndarray], radiograph: Radiograph, model: dict[str, Any]) -> tuple[Dataset, dict[int, str]]:
    """A BINARY DICOM SEG of a projection's masks (overlapping allowed), one segment per mask."""
    import highdicom as hd


    names = [n for n, m in masks.items() if m.any()]
    if not names:
        raise ValueError("no mask to write")
    src = _header_only(radiograph.dataset)
    stack = np.stack([masks[n] for n in names], axis=-1)[None].astype(np.uint8)
    seed = f"{radiograph.sop_instance_uid}|{hashlib.sha256(stack.tobytes()).hexdigest()}|{model.get('name')}|{model.get('version')}"
    algorithm = _algorithm(model)
    descriptions = [_description(i + 1, n, None, algorithm, seed) for i, n in enumerate(names)]
    with _source_names_as_given():
        seg = _radiograph_segmentation(hd, src, stack, descriptions, seed)
    return seg, {i + 1: n for i, n in enumerate(names)}


def _radiograph_segmentation(hd: Any, src: Dataset, stack: np.ndarray, descriptions: list[Any], seed: str) -> Any:
    from radqc import __version__

    return hd.seg.Segmentation(
        source_images=[src], pixel_array=stack, segmentation_type="BINARY", segment_descriptions=descriptions,
        series_instance_uid=_uid(seed, "series"), series_number=SEG_SERIES_NUMBER, sop_instance_uid=_uid(seed, "instance"),
        instance_number=1, manufacturer=SEG_MANUFACTURER, manufacturer_model_name=SEG_MODEL_NAME,
        software_versions=str(__version__), device_serial_number="0", content_label="ANATOMY", omit_empty_frames=True,
    )


@contextlib.contextmanager
def _source_names_as_given() -> Any:
    """Silence highdicom's warning on single-component person names.

    The SEG copies the patient's name from the source images, and Chinese names are
    routinely stored as one component (e.g. "杨婷华"); the warning would repeat for every
    SEG in a batch and bury real warnings. The name is copied as the hospital sent it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent the intended person name",
                                category=UserWarning)
        yield


def dataset_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_json(data: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return out
