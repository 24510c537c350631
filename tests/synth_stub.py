"""A tiny stand-in for the image renderer, for planner/generator tests that do not need
real phantoms: one 8x8 instance per series role, with the planner's header written the
way the renderer does (institution code sequence, patient, accession). It returns an
:class:`ImagingResult` like ``render_exam``. The real renderer is used by the end-to-end
tests in test_synth_generate.py.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from radqc.datasets.synthetic.spec import ImagingResult, ImagingSpec, SeriesTruth

SOP = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}


def _uid(spec: ImagingSpec, *parts: object) -> str:
    digest = hashlib.sha256("/".join([str(spec.seed), spec.exam_key, *map(str, parts)]).encode()).hexdigest()
    return f"2.25.{int(digest[:30], 16)}"


def stub_render(spec: ImagingSpec, out_dir: Path, *, labels_dir: Path | None = None) -> ImagingResult:
    study = _uid(spec, "study")
    series_out = []
    hashes = {}
    for k, role in enumerate(spec.series, 1):
        if role.role == "dose_report":
            continue
        folder = out_dir / spec.exam_key / f"S{k:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        series_uid = _uid(spec, "series", k)
        sop_uid = _uid(spec, "sop", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP[spec.modality]
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = SOP[spec.modality]
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series_uid
        ds.Modality = spec.modality
        ds.SeriesNumber = k
        ds.InstanceNumber = 1
        ds.SeriesDescription = role.role
        h = spec.header
        for key in ("PatientName", "PatientID", "PatientSex", "PatientBirthDate", "AccessionNumber", "StudyDate",
                    "StudyTime", "StudyDescription", "InstitutionName", "OtherPatientIDs", "DeviceSerialNumber",
                    "BodyPartExamined"):
            if key in h:
                setattr(ds, key, h[key])
        code = Dataset()
        code.CodeValue = h["institution_code"]
        code.CodingSchemeDesignator = "99CNORG"
        code.CodeMeaning = h["InstitutionName"]
        ds.InstitutionCodeSequence = Sequence([code])
        source = spec.evidence.get("reuse_pixels_from")
        seed = int(hashlib.sha256((source or spec.exam_key).encode()).hexdigest()[:8], 16) + k
        pixels = np.random.default_rng(seed).integers(0, 1000, (8, 8), dtype=np.uint16)
        ds.Rows, ds.Columns = 8, 8
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.tobytes()
        path = folder / "IM_0001.dcm"
        ds.save_as(path, enforce_file_format=True)
        hashes[sop_uid] = hashlib.sha256(pixels.tobytes()).hexdigest()
        series_out.append(SeriesTruth(series_uid, role.role, role.role, spec.modality, 1,
                                      [path.relative_to(out_dir).as_posix()]))
    start = datetime.strptime(spec.header["StudyDate"] + spec.header["StudyTime"], "%Y%m%d%H%M%S")
    end = start + timedelta(minutes=float(spec.header.get("acquisition_minutes", 5)))
    window = [start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds")]
    return ImagingResult(study, series_out, applied_defects=list(spec.defects), pixel_hashes=hashes,
                         measurements={"acquisition_window": window})
