"""F1/F2 evidence: an exam whose pixel data are another exam's, under this patient's identity.

``ImagingSpec.evidence = {"reuse_pixels_from": "<exam_key>"}`` copies every series of the
already rendered exam ``out_dir/<exam_key>`` (render it first) with new UIDs, this exam's
patient/study attributes, and the same pixel bytes, so the pixel hashes collide across
patients. ``"near_identical": true`` changes a few pixels so the hashes differ while the
images stay visually identical (the harder case for a hash-only check).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from ..spec import ImagingResult, SeriesTruth
from .context import ExamContext
from .dicom_writer import study_dataset

#: study-level attributes replaced by this exam's identity
IDENTITY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDescription", "InstitutionName", "StationName", "DeviceSerialNumber",
    "OtherPatientIDs",
)


def find_exam(ctx: ExamContext, key: str) -> Path | None:
    """The source exam folder: ``evidence["reuse_pixels_path"]``, else ``<key>`` next to this exam.

    A generated set puts each exam under its own accession folder, so the source may sit
    beside an ancestor of ``out_dir``; up to three levels up and two levels down are searched.
    """
    explicit = ctx.spec.evidence.get("reuse_pixels_path")
    if explicit:
        path = Path(explicit) if Path(explicit).is_absolute() else ctx.out_dir / explicit
        return path if path.is_dir() else None
    base = ctx.out_dir
    for _ in range(4):
        for pattern in (key, f"*/{key}", f"*/*/{key}"):
            for hit in sorted(base.glob(pattern)):
                if hit.is_dir() and hit != ctx.exam_dir:
                    return hit
        base = base.parent
    return None


def render_reused(ctx: ExamContext) -> ImagingResult:
    key = str(ctx.spec.evidence["reuse_pixels_from"])
    src = find_exam(ctx, key)
    if src is None:
        raise ValueError(f"reuse_pixels_from={key!r}: no folder {key!r} under {ctx.out_dir} or its parents (3 levels); render that exam first")
    near = bool(ctx.spec.evidence.get("near_identical"))
    study = study_dataset(ctx)
    uid_map: dict[str, str] = {}

    def new_uid(old: str, kind: str) -> str:
        if old not in uid_map:
            uid_map[old] = ctx.uid("reuse", kind, old)
        return uid_map[old]

    folders = sorted(p for p in src.iterdir() if p.is_dir() and p.name != "labels")
    truths: list[SeriesTruth] = []
    hashes: dict[str, str] = {}
    rng = ctx.rng("reuse")
    # first pass: map every SOP/series UID so references can be rewritten in any order
    datasets: list[tuple[str, list[tuple[str, Any]]]] = []
    for folder in folders:
        items = []
        for f in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            new_uid(str(ds.SOPInstanceUID), "sop")
            items.append((f.name, ds))
        datasets.append((folder.name, items))
    for name, items in datasets:
        if not items:
            continue
        out = ctx.exam_dir / name
        out.mkdir(parents=True, exist_ok=True)
        files = []
        first = items[0][1]
        for fname, ds in items:
            old_sop = str(ds.SOPInstanceUID)
            for kw in IDENTITY:
                if kw in study:
                    setattr(ds, kw, study.data_element(kw).value)
                elif kw in ds:
                    del ds[kw]
            ds.SeriesInstanceUID = new_uid(str(ds.SeriesInstanceUID), "series")
            if "FrameOfReferenceUID" in ds:
                ds.FrameOfReferenceUID = new_uid(str(ds.FrameOfReferenceUID), "frame")
            ds.SOPInstanceUID = uid_map[old_sop]
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for item in ds.get("SourceImageSequence", []):
                item.ReferencedSOPInstanceUID = uid_map.get(str(item.ReferencedSOPInstanceUID), str(item.ReferencedSOPInstanceUID))
            if near and not ds.file_meta.TransferSyntaxUID.is_compressed:
                arr = ds.pixel_array.copy()
                r, c = int(rng.integers(arr.shape[0])), int(rng.integers(arr.shape[1]))
                arr[r, c] = arr[r, c] + 1 if arr[r, c] < np.iinfo(arr.dtype).max else arr[r, c] - 1
                ds.PixelData = arr.tobytes()
            hashes[str(ds.SOPInstanceUID)] = hashlib.sha256(ds.PixelData).hexdigest()
            path = out / fname
            ds.save_as(path, enforce_file_format=True)
            files.append(str(path.relative_to(ctx.out_dir)))
        role = name.split("_", 1)[1] if "_" in name else name
        truths.append(SeriesTruth(
            series_instance_uid=str(uid_map.get(str(first.SeriesInstanceUID), first.SeriesInstanceUID)),
            role=role,
            description=str(first.get("SeriesDescription", "")),
            modality=str(first.Modality),
            n_instances=len(files),
            files=files,
            extra={"reused_from": key, "series_number": int(first.get("SeriesNumber", 0) or 0)},
        ))
    labels_src = src / "labels"
    if labels_src.is_dir():
        ctx.labels_dir.mkdir(parents=True, exist_ok=True)
        for f in labels_src.iterdir():
            shutil.copy2(f, ctx.labels_dir / f.name)
    ctx.measurements["reused_pixels_from"] = key
    ctx.measurements["near_identical"] = near
    # the copied pixels carry whatever defects the source had; the planner passes the same list
    for p in ctx.defects:
        ctx.record(p, inherited_from=key)
    return ImagingResult(study_instance_uid=str(study.StudyInstanceUID), series=truths, structures={}, applied_defects=ctx.applied, measurements=ctx.measurements, pixel_hashes=hashes)
