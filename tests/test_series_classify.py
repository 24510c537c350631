"""Series classification: header facts beat descriptions, bad input gives 'unknown', never a crash."""

from __future__ import annotations

from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from radqc.pipelines.series.classify import FusionWeights, SeriesClassifier
from radqc.pipelines.series.features import SeriesHeader, from_datasets

MR = "1.2.840.10008.5.1.4.1.1.4"
CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
AXIAL = [1, 0, 0, 0, 1, 0]
SAGITTAL = [0, 1, 0, 0, 0, -1]


def series(n: int = 3, **attrs: Any) -> list[Dataset]:
    """``n`` header-only datasets of one series with ``attrs`` (positions along the normal)."""
    uid = generate_uid()
    attrs.setdefault("ImageOrientationPatient", AXIAL)
    out = []
    for i in range(n):
        ds = Dataset()
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [0, 0, float(i * 5)] if attrs.get("ImageOrientationPatient", AXIAL) == AXIAL else [float(i * 5), 0, 0]
        for k, v in attrs.items():
            if isinstance(k, tuple):
                ds.add_new(k[0], k[1], v)
            else:
                setattr(ds, k, v)
        out.append(ds)
    return out


def mr(**attrs: Any) -> list[Dataset]:
    base: dict[str, Any] = {"Modality": "MR", "SOPClassUID": MR, "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
                            "ImageOrientationPatient": AXIAL, "ScanningSequence": "SE", "SequenceVariant": "SK"}
    base.update(attrs)
    return series(**base)


@pytest.fixture(scope="module")
def clf() -> SeriesClassifier:
    return SeriesClassifier(header_model=None, image_model=None)


def test_t2_tse_axial(clf: SeriesClassifier) -> None:
    h = from_datasets(mr(RepetitionTime=4000, EchoTime=100, EchoTrainLength=16, SeriesDescription="t2_tse_tra"))
    (lab,) = clf.classify([h])
    assert (lab.role, lab.sequence, lab.plane, lab.category) == ("original", "T2W", "axial", "MR.T2W.AX")
    assert 0.9 < lab.confidence <= 1.0
    assert any(e.rule == "mr.t2.tse" for e in lab.evidence)
    assert not lab.description_overruled


def test_flair_signature_overrules_a_wrong_description(clf: SeriesClassifier) -> None:
    h = from_datasets(mr(RepetitionTime=9000, EchoTime=120, InversionTime=2500, SeriesDescription="T1 SE",
                         ImageOrientationPatient=SAGITTAL))
    (lab,) = clf.classify([h])
    assert lab.sequence == "FLAIR" and lab.plane == "sagittal" and lab.category == "MR.FLAIR.SAG"
    assert lab.description_overruled
    assert any(e.source == "fusion" and "T1W" in e.detail for e in lab.evidence)


def test_a_right_protocol_name_does_not_hide_a_wrong_description(clf: SeriesClassifier) -> None:
    # The generator (and real sites) keep ProtocolName right when SeriesDescription is wrong:
    # the label must still say that the description was overruled, and quote it.
    h = from_datasets(mr(RepetitionTime=4000, EchoTime=100, EchoTrainLength=16, SeriesDescription="FLAIR",
                         ProtocolName="t2_tse_tra"))
    (lab,) = clf.classify([h])
    assert lab.sequence == "T2W"
    assert lab.description_overruled
    assert any(e.source == "fusion" and "'FLAIR'" in e.detail and "FLAIR" in e.detail for e in lab.evidence)


def test_a_vr_description_is_not_read_as_mpr(clf: SeriesClassifier) -> None:
    # "VR重建": 重建 alone means a reconstruction (MPR); beside VR it is the VR itself.
    assert clf.rules.description_scores(from_datasets(series(Modality="CT", SOPClassUID=CT, ImageType=["DERIVED", "SECONDARY"],
                                                             SeriesDescription="VR重建"))).get("derived_type") == {"vr": 2.5}


def test_without_facts_the_description_decides(clf: SeriesClassifier) -> None:
    h = from_datasets(mr(SeriesDescription="STIR cor", ImageOrientationPatient=[1, 0, 0, 0, 0, -1]))
    (lab,) = clf.classify([h])
    assert lab.sequence == "STIR" and lab.plane == "coronal"
    assert any(e.source == "description" and e.field == "sequence" for e in lab.evidence)


def test_dwi_from_a_private_siemens_b_value(clf: SeriesClassifier) -> None:
    dsets = mr(RepetitionTime=5000, EchoTime=80, ScanningSequence="EP", SeriesDescription="ep2d")
    for ds, b in zip(dsets, (0, 500, 1000), strict=True):
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", b)
    h = from_datasets(dsets)
    assert h.b_values == [0.0, 500.0, 1000.0]
    (lab,) = clf.classify([h])
    assert lab.sequence == "DWI" and lab.category == "MR.DWI.AX"


def test_ct_localizer_and_dose_report(clf: SeriesClassifier) -> None:
    loc = from_datasets(series(1, Modality="CT", SOPClassUID=CT, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                               SeriesDescription="胸部平扫 5mm", ImageOrientationPatient=[1, 0, 0, 0, 0, -1]))
    dose = from_datasets(series(1, Modality="CT", SOPClassUID=SC, ImageType=["DERIVED", "SECONDARY", "DOSE_INFO"],
                                SeriesDescription="Patient Protocol"))
    labels = clf.classify([loc, dose])
    assert [lab.category for lab in labels] == ["CT.LOC", "CT.DOSE"]
    assert labels[0].plane is None and labels[0].phase is None  # fields that do not apply stay null
    assert labels[0].description_overruled is False  # '平扫' speaks of the phase, which a localizer has not


def test_ct_axial_kernel_thickness_and_phase(clf: SeriesClassifier) -> None:
    common: dict[str, Any] = {"Modality": "CT", "SOPClassUID": CT, "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "ReconstructionDiameter": 380}
    lung = from_datasets(series(ConvolutionKernel="B70f", SliceThickness=1.0, WindowCenter=-600, WindowWidth=1500,
                                SeriesDescription="Chest 1mm", **common))
    soft = from_datasets(series(ConvolutionKernel="STANDARD", SliceThickness=5.0, WindowCenter=40, WindowWidth=400,
                                SeriesDescription="动脉期 5mm", ContrastBolusAgent="Iohexol", **common))
    a, b = clf.classify([lung, soft])
    assert a.category == "CT.AX.LUNG.THIN" and a.phase == "native"
    assert b.category == "CT.AX.SOFT.STD" and b.phase == "arterial"


def test_bad_input_is_unknown_not_an_exception(clf: SeriesClassifier) -> None:
    empty = SeriesHeader(series_uid="1.2.3")
    odd = from_datasets(series(2, Modality="XX", SeriesDescription=""))
    garbage = SeriesHeader(series_uid="1.2.4", modality="MR", tr=float("nan"), te=-1.0, orientation=[0, 0, 0, 0, 0, 0])
    labels = clf.classify([empty, odd, garbage])
    for lab in labels:
        assert lab.role == "unknown" and lab.category is None and lab.unknown_reason
        assert lab.confidence == 0.0
    assert "Modality" in (labels[0].unknown_reason or "")


def test_screen_capture_of_unknown_modality(clf: SeriesClassifier) -> None:
    h = from_datasets(series(1, Modality="OT", SOPClassUID=SC, SeriesDescription="report page"))
    (lab,) = clf.classify([h])
    assert lab.role == "screen_capture" and lab.category == "OT.SC"


def test_a_model_can_overrule_the_description() -> None:
    """An image-model distribution confidently against a description word wins over it."""

    class Stub:
        version = "stub"

        def predict(self, thumbs: Any, modalities: list[str]) -> list[dict[str, dict[Any, float]]]:
            return [{"phase": {"portal": 0.97, "arterial": 0.01, "native": 0.01, "delayed": 0.01}}] * len(thumbs)

    import numpy as np

    h = from_datasets(series(Modality="CT", SOPClassUID=CT, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
                             ConvolutionKernel="B30f", SliceThickness=5.0, ContrastBolusAgent="Iohexol",
                             SeriesDescription="Arterial Abdomen 5"))
    clf = SeriesClassifier(header_model=None, image_model=Stub(), weights=FusionWeights())
    (without,) = clf.classify([h])
    assert without.phase == "arterial"
    (with_image,) = clf.classify([h], images={h.series_uid: np.zeros((8, 8), np.float32)})
    assert with_image.phase == "portal" and with_image.description_overruled
    assert any(e.source == "image_model" and e.field == "phase" for e in with_image.evidence)


def test_header_roundtrip_json() -> None:
    h = from_datasets(mr(RepetitionTime=500, EchoTime=10, SeriesDescription="T1"))
    again = SeriesHeader.from_dict(h.to_dict())
    assert again == h
    assert isinstance(pydicom.__version__, str)


def test_sr_dose_report_multiframe_and_empty_series(clf: SeriesClassifier) -> None:
    from radqc.pipelines.runner.stage import SeriesInfo
    from radqc.pipelines.series.features import from_catalogue

    sr = from_datasets(series(1, Modality="SR", SOPClassUID="1.2.840.10008.5.1.4.1.1.88.67",
                              SeriesDescription="Radiation Dose Information", ImageOrientationPatient=None))
    enhanced = from_datasets(series(1, Modality="MR", SOPClassUID="1.2.840.10008.5.1.4.1.1.4.1", NumberOfFrames=40,
                                    ImageType=["ORIGINAL", "PRIMARY", "M", "NONE"], RepetitionTime=9000, EchoTime=110,
                                    InversionTime=2400, SeriesDescription=""))
    empty = from_catalogue(SeriesInfo(id=1, series_instance_uid="1.2.9", modality="CT", series_number=None,
                                      description=None, body_part=None, instances=()), None)
    dose, mf, none = clf.classify([sr, enhanced, empty])
    assert dose.role == "dose_report" and dose.category == "CT.DOSE"
    assert enhanced.n_frames == 40 and mf.sequence == "FLAIR" and mf.category == "MR.FLAIR.AX"
    assert none.role == "unknown" and none.unknown_reason and none.category is None


def test_derived_series_takes_the_phase_of_its_source(clf: SeriesClassifier) -> None:
    """An MPR named 'plain' in its description but reformatted from the arterial series is arterial."""
    axial = from_datasets(series(Modality="CT", SOPClassUID=CT, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
                                 ConvolutionKernel="B30f", SliceThickness=1.0, ContrastBolusAgent="Iohexol",
                                 SeriesDescription="Arterial 1mm", SeriesTime="100000"))
    mpr = from_datasets(series(Modality="CT", SOPClassUID=CT, ImageType=["DERIVED", "SECONDARY", "REFORMATTED", "MPR"],
                               ImageOrientationPatient=[1, 0, 0, 0, 0, -1], ContrastBolusAgent="Iohexol",
                               SeriesDescription="Coronal MPR plain", SeriesTime="100500"))
    mpr.source_series_uids = [axial.series_uid]
    a, m = clf.classify([axial, mpr])
    assert a.phase == "arterial"
    assert m.category == "CT.MPR.COR" and m.phase == "arterial"
    assert any(e.field == "phase" and axial.series_uid in e.detail for e in m.evidence)


def test_pydicom_bundled_files_never_raise_and_known_ones_are_right() -> None:
    """Real-world headers (pydicom's bundled test files: many vendors, modalities, broken files)."""
    import warnings
    from pathlib import Path

    from radqc.pipelines.series.features import headers_from_folder

    bundled = Path(pydicom.__file__).parent / "data" / "test_files"  # shipped in the wheel: no download
    clf = SeriesClassifier(image_model=None)  # with the registered header model
    paths = sorted(bundled.glob("*.dcm"))
    assert len(paths) > 20
    headers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in paths:
            headers += headers_from_folder(p)
        labels = clf.classify(headers)
    assert len(labels) == len(headers)
    for lab in labels:
        assert lab.role in ("localizer", "original", "derived", "dose_report", "screen_capture", "unknown")
        assert 0.0 <= lab.confidence <= 1.0
        assert lab.category is not None or lab.unknown_reason
    by_file = {}
    for name in ("CT_small.dcm", "MR_small.dcm"):
        (h,) = headers_from_folder(bundled / name)
        (by_file[name],) = clf.classify([h])
    assert by_file["CT_small.dcm"].category is not None and by_file["CT_small.dcm"].category.startswith("CT.AX")
    assert by_file["MR_small.dcm"].sequence == "T2W"  # TR 4000 ms, TE 240 ms


def test_sharp_siemens_kernels_are_not_soft(clf: SeriesClassifier) -> None:
    # B60f/B70f/I70f are sharp (lung) kernels; only B10f-B59f / I10f-I59f read as soft tissue.
    for kernel, expected in (("B60f", "lung"), ("B70f", "lung"), ("B30f", "soft"), ("I70f", "lung"), ("I40f", "soft")):
        h = from_datasets(series(Modality="CT", SOPClassUID=CT, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"],
                                 ConvolutionKernel=kernel, SliceThickness=1.0, ImageOrientationPatient=AXIAL))
        assert clf.rules.apply(h).scores("header_rule").get("kernel_class") == {expected: 4.0}, kernel
