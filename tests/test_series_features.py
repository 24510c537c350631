"""Series header summaries: the same facts from files, datasets and catalogue header facts."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radqc.dicom.parse import _header
from radqc.pipelines.runner.stage import InstanceInfo, SeriesInfo
from radqc.pipelines.series.features import (
    SeriesHeader,
    annotate_exam,
    from_catalogue,
    from_datasets,
    headers_from_folder,
    plane_of,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def _ds(series_uid: str, z: float, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = attrs.pop("SOPClassUID", CT)
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3.4"
    ds.Modality = attrs.pop("Modality", "CT")
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, z]
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _save(ds: Dataset, path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_plane_of_orientations() -> None:
    assert plane_of([1, 0, 0, 0, 1, 0]) == "axial"
    assert plane_of([1, 0, 0, 0, 0, -1]) == "coronal"
    assert plane_of([0, 1, 0, 0, 0, -1]) == "sagittal"
    assert plane_of([1, 0, 0, 0, 0.7071, -0.7071]) == "oblique"
    assert plane_of([0, 0, 0, 0, 0, 0]) is None and plane_of(None) is None and plane_of([1, 0]) is None


def test_dwi_summary_counts_b_values_and_repeats() -> None:
    uid = generate_uid()
    dsets = []
    for b in (0, 500, 1000):
        for z in (0.0, 5.0, 10.0):
            dsets.append(_ds(uid, z, Modality="MR", SOPClassUID=MR, DiffusionBValue=b, RepetitionTime="5000",
                             EchoTime=80, ImageType=["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]))
    h = from_datasets(dsets)
    assert h.b_values == [0.0, 500.0, 1000.0]
    assert h.n_instances == 9 and h.n_positions == 3 and h.repeats == 3.0
    assert h.tr == 5000.0 and h.plane == "axial" and (h.z_min, h.z_max) == (0.0, 10.0)
    assert h.image_type == ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]


def test_folder_groups_series_resolves_sources_and_reports_bad_files(tmp_path: Path) -> None:
    src_uid, mpr_uid = generate_uid(), generate_uid()
    src = [_ds(src_uid, float(z), SeriesNumber=2, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], SliceThickness=1.0,
               ConvolutionKernel="B30f", SeriesDescription="Abdomen 1mm") for z in range(3)]
    for i, ds in enumerate(src):
        _save(ds, tmp_path / "a" / f"{i}.dcm")
    ref = Dataset()
    ref.ReferencedSOPInstanceUID = src[1].SOPInstanceUID
    mpr = _ds(mpr_uid, 0.0, SeriesNumber=3, ImageType=["DERIVED", "SECONDARY", "MPR"], SourceImageSequence=[ref])
    mpr.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    _save(mpr, tmp_path / "b" / "0.dcm")
    (tmp_path / "b" / "junk.dcm").write_bytes(b"not a dicom file at all")
    report: list[str] = []
    headers = headers_from_folder(tmp_path, report=report)
    assert [h.series_uid for h in headers] == [src_uid, mpr_uid]  # series-number order
    assert headers[0].n_instances == 3 and headers[0].kernel == "B30F" and headers[0].slice_thickness == 1.0
    assert headers[1].source_series_uids == [src_uid]
    assert headers[1].plane == "coronal"
    assert len(report) == 1 and "junk.dcm" in report[0]


def test_catalogue_facts_give_the_same_summary_as_the_datasets() -> None:
    uid = generate_uid()
    dsets = [_ds(uid, float(z), Modality="MR", SOPClassUID=MR, RepetitionTime=9000, EchoTime=120, InversionTime=2500,
                 ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "SP"], ScanOptions="IR", SeriesNumber=4,
                 SeriesDescription="t2_tirm_tra_dark-fluid", BodyPartExamined="HEAD", SliceThickness=5,
                 EchoTrainLength=20, ContrastBolusAgent="Gd") for z in range(4)]
    direct = from_datasets(dsets, study_description="MR颅脑平扫")
    instances = tuple(InstanceInfo(id=i, sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=MR, version=1,
                                   instance_number=i + 1, content_hash="x", storage_key="k", transfer_syntax=None,
                                   stored_transfer_syntax=None, pixel_hash=None, header=_header(ds))
                      for i, ds in enumerate(dsets))
    info = SeriesInfo(id=1, series_instance_uid=uid, modality="MR", series_number=4,
                      description="t2_tirm_tra_dark-fluid", body_part="HEAD", instances=instances)
    cat = from_catalogue(info, "MR颅脑平扫")
    for key in ("modality", "description", "tr", "te", "ti", "echo_train_length", "scanning_sequence",
                "sequence_variant", "scan_options", "orientation", "n_positions", "slice_thickness", "body_part",
                "series_number", "study_description", "contrast_agent", "z_min", "z_max"):
        assert getattr(cat, key) == getattr(direct, key), key


def test_malformed_values_become_none() -> None:
    ds = _ds(generate_uid(), 0.0)
    # stored bytes that are not a number (as read from a broken file): converting them raises in pydicom
    ds[0x00180080] = RawDataElement(Tag(0x00180080), "DS", 4, b"abc ", 0, False, True)
    ds.add_new(0x00180081, "DS", "")  # empty EchoTime
    h = from_datasets([ds])
    assert h.tr is None and h.te is None
    assert SeriesHeader.from_dict({**h.to_dict(), "unknown_key": 1}) == h


def test_exam_context_orders_t1_after_other_sequences_and_ct_phase_blocks() -> None:
    def mr(t: str, tr: float, te: float) -> SeriesHeader:
        return SeriesHeader(series_uid=t, modality="MR", tr=tr, te=te, image_type=["ORIGINAL"], series_time=t,
                            contrast_agent="Gd")

    pre, t2, post = mr("100000", 500, 10), mr("100500", 4000, 100), mr("101000", 550, 12)
    annotate_exam([post, t2, pre])
    assert pre.exam_context["mr_after_other"] == 0 and post.exam_context["mr_after_other"] == 1

    def ct(t: str, kernel: str, thk: float, contrast: bool) -> SeriesHeader:
        return SeriesHeader(series_uid=t, modality="CT", series_time=t, image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
                            orientation=[1, 0, 0, 0, 1, 0], kernel=kernel, slice_thickness=thk,
                            contrast_agent="Iohexol" if contrast else None)

    series = [ct("1", "B30F", 5, False), ct("2", "B30F", 5, True), ct("3", "B30F", 1, True),
              ct("4", "B30F", 5, True), ct("5", "B30F", 1, True)]
    annotate_exam(series)
    assert [s.exam_context["ct_block_rank"] for s in series] == [0, 1, 1, 2, 2]
    assert [s.exam_context["ct_enh_rank"] for s in series] == [-1, 0, 0, 1, 1]
    assert all(s.exam_context["ct_enh_count"] == 2 and s.exam_context["ct_contrast_all"] == 0 for s in series)
    # tags copied onto every series (study-wide): they say nothing, the first block is the plain scan
    tagged = [ct("1", "B30F", 5, True), ct("2", "B30F", 1, True), ct("3", "B30F", 5, True), ct("4", "B30F", 1, True)]
    annotate_exam(tagged)
    assert [s.exam_context["ct_block_rank"] for s in tagged] == [0, 0, 1, 1]
    assert all(s.exam_context["ct_contrast_all"] == 1 for s in tagged)


def test_exam_context_is_per_study_in_a_mixed_batch() -> None:
    def mr(uid: str, study: str, t: str, tr: float, te: float) -> SeriesHeader:
        return SeriesHeader(series_uid=uid, study_uid=study, modality="MR", tr=tr, te=te, image_type=["ORIGINAL"],
                            series_time=t, contrast_agent="Gd")

    a_t2, a_t1 = mr("1", "A", "090000", 4000, 100), mr("2", "A", "091000", 500, 10)
    b_t1 = mr("3", "B", "120000", 500, 10)  # study B: its only series, acquired later than A's T2
    annotate_exam([a_t2, a_t1, b_t1])
    assert a_t1.exam_context["mr_after_other"] == 1 and b_t1.exam_context["mr_after_other"] == 0
