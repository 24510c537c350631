"""One analysed series, end to end in memory: volume -> models -> result + file bytes.

Shared by ``radqc segment`` (which writes the files into a folder) and the ``anatomy``
stage (which puts them into the object store), so both produce byte-identical outputs for
the same input and models.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from radqc.pipelines.anatomy.engine import Analysis, analyse_ct, analyse_radiograph
from radqc.pipelines.anatomy.models import Unavailable, resolve_slot

if TYPE_CHECKING:  # pragma: no cover
    from radqc.dicom.volume import Radiograph, Volume

log = logging.getLogger(__name__)

#: File names of an analysis (public contract of ``radqc segment``).
LABELS_FILE = "labels.nii.gz"
SEG_FILE = "seg.dcm"
RESULT_FILE = "result.json"
#: DICOM SEG type written by default: LABELMAP keeps the label values as segment numbers and
#: compresses losslessly (JPEG-LS), ~0.8 MB for 300 slices of 512² against ~53 MB for BINARY
#: (1 bit per pixel, one frame per structure and slice, uncompressed: highdicom allows no
#: compressed syntax for BINARY). Viewers without LABELMAP support can ask for BINARY.
DEFAULT_SEG_TYPE = "LABELMAP"
SEG_TYPES = ("LABELMAP", "BINARY")

MODEL_SLOTS = {"ct": ("ct_organs", "body_region"), "radiograph": ("radiograph_anatomy",)}


@dataclass
class Outputs:
    """The result JSON and the derived files (name -> bytes) of one analysed series."""

    result: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.result.get("status"))


def load_models(kind: str) -> dict[str, Any]:
    """The model (or :class:`Unavailable`) of every slot ``kind`` ("ct" / "radiograph") uses."""
    return {slot: resolve_slot(slot) for slot in MODEL_SLOTS[kind]}


def _model_facts(analysis: Analysis, slot: str) -> dict[str, Any]:
    return dict(analysis.result.get("models", {}).get(slot) or {})


def run_ct(volume: Volume, models: dict[str, Any], *, seg_type: str = DEFAULT_SEG_TYPE, write_seg: bool = True) -> Outputs:
    """Analyse a CT volume; files: ``labels.nii.gz`` and (when something was segmented) ``seg.dcm``."""
    import SimpleITK as sitk

    from radqc.pipelines.anatomy.writers import ct_seg, dataset_bytes, nifti_bytes

    analysis = analyse_ct(volume.image, segmenter=models.get("ct_organs"), scorer=models.get("body_region"))
    result = {
        **_series_facts(volume.series_instance_uid, volume.study_instance_uid, volume.modality, len(volume.datasets)),
        **analysis.result,
    }
    result["warnings"] = list(volume.warnings) + list(result.get("warnings") or [])
    result["outputs"] = {}
    files: dict[str, bytes] = {}
    if analysis.labels is not None:
        t0 = time.perf_counter()
        files[LABELS_FILE] = nifti_bytes(analysis.labels)
        result["outputs"]["labels"] = LABELS_FILE
        if write_seg:
            segmenter = models.get("ct_organs")
            label_set = getattr(segmenter, "label_set", None)
            if label_set is None:
                from radqc.models.registry import load_label_set

                label_set = load_label_set("ct_organs")
            try:
                seg, segment_map = ct_seg(sitk.GetArrayViewFromImage(analysis.labels), volume, label_set,
                                          _model_facts(analysis, "ct_organs"), seg_type=seg_type)
                files[SEG_FILE] = dataset_bytes(seg)
                result["outputs"]["seg"] = SEG_FILE
                result["outputs"]["seg_type"] = seg_type.upper()
                result["outputs"]["segment_map"] = {str(k): v for k, v in sorted(segment_map.items())}
                result["outputs"]["seg_sop_instance_uid"] = str(seg.SOPInstanceUID)
            except Exception as exc:  # noqa: BLE001 - the label map and statistics stand without the SEG
                log.warning("DICOM SEG not written: %s", exc)
                result["warnings"].append(f"DICOM SEG not written / 未生成 DICOM SEG: {type(exc).__name__}: {exc}"[:400])
        result.setdefault("timings_s", {})["write_s"] = round(time.perf_counter() - t0, 3)
    return Outputs(result=result, files=files)


def run_radiograph(radiograph: Radiograph, models: dict[str, Any], *, write_seg: bool = True) -> Outputs:
    """Analyse one projection; files: ``labels.nii.gz`` (stack of binary masks) and ``seg.dcm``."""
    from radqc.pipelines.anatomy.writers import (
        dataset_bytes,
        nifti_bytes,
        radiograph_label_stack,
        radiograph_seg,
    )

    analysis = analyse_radiograph(radiograph, analyser=models.get("radiograph_anatomy"))
    ds = radiograph.dataset
    result = {
        **_series_facts(radiograph.series_instance_uid, str(ds.get("StudyInstanceUID", "")), radiograph.modality, 1),
        "sop_instance_uid": radiograph.sop_instance_uid,
        **analysis.result,
    }
    result["outputs"] = {}
    files: dict[str, bytes] = {}
    if analysis.masks:
        files[LABELS_FILE] = nifti_bytes(radiograph_label_stack(analysis.masks, radiograph.spacing_mm))
        result["outputs"]["labels"] = LABELS_FILE
        result["outputs"]["label_channels"] = list(analysis.masks)
        if write_seg:
            try:
                seg, segment_map = radiograph_seg(analysis.masks, radiograph, _model_facts(analysis, "radiograph_anatomy"))
                files[SEG_FILE] = dataset_bytes(seg)
                result["outputs"]["seg"] = SEG_FILE
                result["outputs"]["seg_type"] = "BINARY"
                result["outputs"]["segment_map"] = {str(k): v for k, v in segment_map.items()}
            except Exception as exc:  # noqa: BLE001
                result["warnings"].append(f"DICOM SEG not written / 未生成 DICOM SEG: {type(exc).__name__}: {exc}"[:400])
    return Outputs(result=result, files=files)


def _series_facts(series_uid: str, study_uid: str, modality: str, instances: int) -> dict[str, Any]:
    return {"series_instance_uid": series_uid, "study_instance_uid": study_uid, "modality": modality,
            "instances": instances}


def unavailable_models(models: dict[str, Any]) -> list[Unavailable]:
    return [m for m in models.values() if isinstance(m, Unavailable)]
