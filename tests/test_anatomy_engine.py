"""The anatomy engine: statistics right on label maps of known volume and extent (in any grid
orientation), landmarks and coverage words, unavailable/failing models recorded, and the
writers' NIfTI and DICOM SEG line up with (and reference) the source series.

The model classes below are *test doubles* of the slot protocols (``radqc.models.interfaces``):
they stand in for trained models in unit tests only. The CLI and stage tests plug them in
through the slots' ``python`` kind (models.yaml), exactly as a site would plug in its own.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest

from radqc.models.interfaces import CT_LANDMARKS, BodyRegionResult, BodyRegionScorer, Segmenter
from radqc.models.registry import load_label_set
from radqc.pipelines.anatomy.coverage import describe_coverage
from radqc.pipelines.anatomy.engine import analyse_ct
from radqc.pipelines.anatomy.models import Unavailable
from radqc.pipelines.anatomy.stats import Geometry, structure_statistics

LABELS = load_label_set("ct_organs")
LIVER, SPLEEN, BODY = 9, 10, 1


# -- test doubles of the slot protocols ---------------------------------------------------------


class ThresholdSegmenter:
    """HU thresholds: air outside, body above -500 HU, 'liver' for 40..80 HU, 'ribs' above 300."""

    name = "test-threshold-segmenter"
    version = "0"

    def __init__(self, **_: Any) -> None:
        pass

    @property
    def label_set(self):  # type: ignore[no-untyped-def]
        return LABELS

    def segment(self, image):  # type: ignore[no-untyped-def]
        import SimpleITK as sitk

        hu = sitk.GetArrayViewFromImage(image)
        out = np.zeros(hu.shape, np.uint8)
        out[hu > -500] = BODY
        out[(hu >= 40) & (hu <= 80)] = LIVER
        out[hu > 300] = 20
        img = sitk.GetImageFromArray(out)
        img.CopyInformation(image)
        return img


class FixedSegmenter(ThresholdSegmenter):
    """Returns a given label array (z, y, x) on the input's grid."""

    name = "test-fixed-segmenter"

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def segment(self, image):  # type: ignore[no-untyped-def]
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(self.labels)
        img.CopyInformation(image)
        return img


class SliceFractionScorer:
    """Puts landmarks at fixed fractions of the scanned z-range (fraction 0 = top slice);
    landmarks given no fraction lie outside the scan."""

    name = "test-fraction-scorer"
    version = "0"

    def __init__(self, fractions: dict[str, float] | None = None, **_: Any) -> None:
        self.fractions = fractions if fractions is not None else {"lung_apex": 0.0, "carina": 0.3, "diaphragm_dome": 0.8}

    def score(self, image):  # type: ignore[no-untyped-def]
        n = image.GetSize()[2]
        z = [image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(n)]
        top, bottom = max(z), min(z)
        marks: dict[str, float | None] = {name: None for name in CT_LANDMARKS}
        for name, f in self.fractions.items():
            marks[name] = top - f * (top - bottom)
        return BodyRegionResult(scores=[float(v) for v in z], z_mm=z, landmarks=marks,
                                regions=["chest"] * n, monotonic_fraction=1.0, model=self.name, version=self.version)


class BrokenSegmenter(ThresholdSegmenter):
    name = "test-broken"

    def segment(self, image):  # type: ignore[no-untyped-def]
        raise RuntimeError("weights exploded")


def test_doubles_follow_the_protocols() -> None:
    assert isinstance(ThresholdSegmenter(), Segmenter)
    assert isinstance(SliceFractionScorer(), BodyRegionScorer)


# -- helpers ----------------------------------------------------------------------------------


def make_image(shape_zyx: tuple[int, int, int], spacing=(0.5, 0.8, 2.0), origin=(10.0, -20.0, -100.0),
               direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), hu: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    import SimpleITK as sitk

    arr = hu if hu is not None else np.full(shape_zyx, -1000, np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def by_name(structures: list[dict]) -> dict[str, dict]:
    return {s["name"]: s for s in structures}


# -- statistics ---------------------------------------------------------------------------------


def test_statistics_of_a_box_with_known_volume_extent_centroid_and_hu() -> None:
    shape = (20, 30, 40)  # z, y, x
    labels = np.zeros(shape, np.uint8)
    hu = np.full(shape, -1000, np.int16)
    labels[5:15, 3:9, 2:6] = LIVER  # k 5..14, j 3..8, i 2..5: 10*6*4 = 240 voxels
    hu[5:15, 3:9, 2:6] = 50
    hu[5:15, 3:9, 2:6][:, :, ::2] = 70  # half 50, half 70: mean 60, sd 10
    labels[0:2, 0:1, 0:5] = BODY  # 10 voxels of other tissue at HU 0
    hu[0:2, 0:1, 0:5] = 0
    image = make_image(shape, hu=hu)
    result = analyse_ct(image, segmenter=FixedSegmenter(labels), scorer=None).result
    assert result["status"] == "ok"
    s = by_name(result["structures"])
    assert set(s) == {"body", "liver"}
    liver = s["liver"]
    voxel_ml = 0.5 * 0.8 * 2.0 / 1000
    assert liver["label"] == LIVER and liver["voxels"] == 240
    assert liver["volume_ml"] == pytest.approx(240 * voxel_ml)
    assert liver["mean_hu"] == pytest.approx(60.0) and liver["sd_hu"] == pytest.approx(10.0)
    assert liver["z_min_mm"] == pytest.approx(-100 + 5 * 2.0) and liver["z_max_mm"] == pytest.approx(-100 + 14 * 2.0)
    assert liver["centroid_mm"] == pytest.approx([10 + 3.5 * 0.5, -20 + 5.5 * 0.8, -100 + 9.5 * 2.0])
    assert liver["snomed"] == "10200004"
    body = s["body"]  # the union of every foreground label: the body outline
    assert body["label"] == BODY and body["voxels"] == 250 and body["union_of_foreground"] is True
    assert body["z_min_mm"] == pytest.approx(-100.0) and body["z_max_mm"] == pytest.approx(-72.0)
    assert body["mean_hu"] == pytest.approx(240 * 60 / 250)


def test_statistics_equal_brute_force_on_any_grid_orientation() -> None:
    """Random labels on a rotated, flipped grid: every number equals a voxel-by-voxel count."""
    import SimpleITK as sitk

    rng = np.random.default_rng(5)
    shape = (7, 9, 11)
    labels = rng.integers(0, 5, shape).astype(np.uint8)
    labels[labels == 4] = SPLEEN
    hu = rng.integers(-200, 200, shape).astype(np.int16)
    c, s_ = np.cos(0.4), np.sin(0.4)
    # columns: a rotated row axis, a column axis, and the slice axis flipped (feet-first stack)
    direction = np.array([[c, 0, -s_], [0, 1, 0], [s_, 0, c]]) @ np.diag([1, -1, -1])
    image = make_image(shape, spacing=(0.7, 1.1, 2.5), origin=(3.0, 4.0, 5.0),
                       direction=tuple(direction.reshape(-1)), hu=hu)
    stats, unknown = structure_statistics(labels, Geometry.of(image), LABELS, hu=hu)
    assert unknown == []
    got = by_name(stats)
    points = np.array([[image.TransformIndexToPhysicalPoint((i, j, k)) for i in range(shape[2])]
                       for k in range(shape[0]) for j in range(shape[1])]).reshape(shape[0], shape[1], shape[2], 3)
    for name, mask in (("lung_left", labels == 4), ("lung_right", labels == 5), ("brain", labels == 2),
                       ("skull", labels == 3), ("spleen", labels == SPLEEN), ("body", labels > 0)):
        if not mask.any():
            continue
        entry = got[name]
        pts = points[mask]
        assert entry["voxels"] == int(mask.sum())
        assert entry["z_min_mm"] == pytest.approx(pts[:, 2].min(), abs=0.01)
        assert entry["z_max_mm"] == pytest.approx(pts[:, 2].max(), abs=0.01)
        assert entry["centroid_mm"] == pytest.approx(pts.mean(axis=0).tolist(), abs=0.01)
        assert entry["mean_hu"] == pytest.approx(float(hu[mask].mean()), abs=0.01)
        assert entry["sd_hu"] == pytest.approx(float(hu[mask].std()), abs=0.01)
        assert entry["volume_ml"] == pytest.approx(mask.sum() * 0.7 * 1.1 * 2.5 / 1000, abs=1e-3)
    del sitk


def test_labels_outside_the_label_set_are_reported() -> None:
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 1, 1] = 200
    image = make_image(labels.shape)
    result = analyse_ct(image, segmenter=FixedSegmenter(labels), scorer=None).result
    assert any("200" in w for w in result["warnings"])
    assert by_name(result["structures"])["body"]["voxels"] == 1


# -- landmarks and coverage ---------------------------------------------------------------------


def test_landmarks_all_named_and_null_outside_the_scan() -> None:
    image = make_image((11, 4, 4), spacing=(1, 1, 10.0), origin=(0, 0, -100.0))  # z -100 .. 0
    scorer = SliceFractionScorer({"lung_apex": 0.0, "diaphragm_dome": 0.5, "iliac_crest": 3.0})
    result = analyse_ct(image, segmenter=ThresholdSegmenter(), scorer=scorer).result
    assert list(result["landmarks"]) == list(CT_LANDMARKS)
    assert result["landmarks"]["lung_apex"] == pytest.approx(0.0)
    assert result["landmarks"]["diaphragm_dome"] == pytest.approx(-50.0)
    assert result["landmarks"]["iliac_crest"] is None  # the scorer put it 300 mm below the scan
    assert any("iliac_crest" in w for w in result["warnings"])
    assert result["landmarks"]["vertex"] is None


def test_coverage_in_anatomy_words() -> None:
    z = [float(v) for v in np.arange(-300.0, 1.0, 5.0)]  # top 0, bottom -300
    marks = {name: None for name in CT_LANDMARKS}
    marks.update(lung_apex=-4.0, carina=-90.0, diaphragm_dome=-280.0)
    cov = describe_coverage(z, marks)
    assert cov["text"]["en"] == "covers lung apex to 2 cm below the diaphragm dome"
    assert cov["text"]["zh"] == "覆盖肺尖至膈顶下方2 cm"
    assert cov["top"] == {"landmark": "lung_apex", "offset_mm": 4.0}
    assert cov["bottom"] == {"landmark": "diaphragm_dome", "offset_mm": -20.0}
    assert cov["landmarks_in_range"] == ["lung_apex", "carina", "diaphragm_dome"]
    marks.update(lung_apex=-35.0)
    assert describe_coverage(z, marks)["text"]["en"].startswith("covers 4 cm above the lung apex to")


def test_coverage_without_landmarks_names_regions() -> None:
    z = [0.0, -5.0, -10.0]
    cov = describe_coverage(z, {name: None for name in CT_LANDMARKS}, ["chest", "chest", "abdomen"])
    assert cov["text"]["en"] == "covers the chest to the abdomen (no landmark in range)"
    assert describe_coverage(z, {}, None)["text"] is None


def test_engine_reports_coverage_with_the_scorer() -> None:
    image = make_image((31, 4, 4), spacing=(1, 1, 10.0), origin=(0, 0, -300.0))
    scorer = SliceFractionScorer({"lung_apex": 0.0, "diaphragm_dome": 280 / 300})
    result = analyse_ct(image, segmenter=ThresholdSegmenter(), scorer=scorer).result
    assert result["coverage"]["text"]["en"] == "covers lung apex to 2 cm below the diaphragm dome"
    assert result["models"]["body_region"] == {"slot": "body_region", "status": "ok",
                                               "name": "test-fraction-scorer", "version": "0"}
    assert result["body_region"]["regions"] == [{"region": "chest", "z_min_mm": -300.0, "z_max_mm": 0.0, "slices": 31}]


# -- models that are missing or misbehave -------------------------------------------------------


def test_unavailable_model_is_recorded_not_replaced() -> None:
    image = make_image((3, 4, 4))
    analysis = analyse_ct(image, segmenter=Unavailable("ct_organs", "weights not trained yet"),
                          scorer=Unavailable("body_region", "no model"))
    result = analysis.result
    assert analysis.labels is None and result["structures"] == []
    assert result["status"] == "model_unavailable"
    assert result["error"]["code"] == "model_unavailable" and "weights not trained yet" in result["error"]["message"]
    assert "模型不可用" in result["error"]["message"]
    assert result["models"]["ct_organs"] == {"slot": "ct_organs", "status": "unavailable", "reason": "weights not trained yet"}
    assert all(v is None for v in result["landmarks"].values())


def test_failing_or_misshapen_model_output_is_a_model_error() -> None:
    image = make_image((3, 4, 4))
    result = analyse_ct(image, segmenter=BrokenSegmenter(), scorer=None).result
    assert result["status"] == "model_error" and "weights exploded" in result["error"]["message"]
    wrong = analyse_ct(image, segmenter=FixedSegmenter(np.zeros((3, 4, 5), np.uint8)), scorer=None).result
    assert wrong["status"] == "model_error" and "size" in wrong["error"]["message"]


def test_label_map_shifted_by_the_model_is_refused() -> None:
    import SimpleITK as sitk

    class Shifted(ThresholdSegmenter):
        def segment(self, image):  # type: ignore[no-untyped-def]
            out = super().segment(image)
            out.SetOrigin(tuple(v + 5.0 for v in image.GetOrigin()))
            return out

    result = analyse_ct(make_image((3, 4, 4)), segmenter=Shifted(), scorer=None).result
    assert result["status"] == "model_error" and "origin" in result["error"]["message"]
    del sitk


# -- writers: NIfTI and DICOM SEG over a real DICOM series --------------------------------------


@pytest.fixture
def ct_volume():  # type: ignore[no-untyped-def]
    """A 6-slice factory CT series (shuffled) with a liver-HU block, as a Volume."""
    from radqc.dicom.factory import ct_series_datasets
    from radqc.dicom.volume import build_volume

    datasets = ct_series_datasets(6, size=24, spacing_mm=3.0, seed=2, rescale_intercept=-1024)
    for ds in datasets:
        arr = np.full((24, 24), 24, np.int16)  # -1000 HU air
        arr[4:20, 4:20] = 1024 + 10  # body, 10 HU
        arr[8:14, 6:12] = 1024 + 60  # liver HU
        ds.PixelData = arr.tobytes()
    datasets[1], datasets[4] = datasets[4], datasets[1]
    return build_volume(datasets)


def test_nifti_labels_are_in_the_source_geometry(ct_volume, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import nibabel as nib
    import SimpleITK as sitk

    from radqc.pipelines.anatomy.run import run_ct

    out = run_ct(ct_volume, {"ct_organs": ThresholdSegmenter(), "body_region": SliceFractionScorer()})
    path = tmp_path / "labels.nii.gz"
    path.write_bytes(out.files["labels.nii.gz"])
    back = sitk.ReadImage(str(path))
    src = ct_volume.image
    assert back.GetSize() == src.GetSize()
    assert back.GetOrigin() == pytest.approx(src.GetOrigin())
    assert back.GetSpacing() == pytest.approx(src.GetSpacing())
    assert back.GetDirection() == pytest.approx(src.GetDirection())
    arr = sitk.GetArrayFromImage(back)
    assert set(np.unique(arr)) == {0, BODY, LIVER}
    # nibabel reads RAS: x and y flip sign against LPS, z stays
    affine = nib.load(str(path)).affine
    ox, oy, oz = src.GetOrigin()
    assert affine[:3, 3] == pytest.approx([-ox, -oy, oz])
    liver = by_name(out.result["structures"])["liver"]
    assert liver["voxels"] == 6 * 6 * 6 and liver["mean_hu"] == pytest.approx(60.0)
    assert out.result["series_instance_uid"] == ct_volume.series_instance_uid


@pytest.mark.parametrize("seg_type", ["LABELMAP", "BINARY"])
def test_dicom_seg_references_the_sources_and_decodes_to_the_same_mask(ct_volume, seg_type: str) -> None:  # type: ignore[no-untyped-def]
    import highdicom as hd
    import SimpleITK as sitk

    from radqc.pipelines.anatomy.run import run_ct

    out = run_ct(ct_volume, {"ct_organs": ThresholdSegmenter(), "body_region": None}, seg_type=seg_type)
    assert out.result["outputs"]["seg_type"] == seg_type
    raw = pydicom.dcmread(io.BytesIO(out.files["seg.dcm"]))
    seg = hd.seg.Segmentation.from_dataset(raw)
    source_uids = {ds.SOPInstanceUID for ds in ct_volume.datasets}
    referenced = {i.ReferencedSOPInstanceUID for s in raw.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == source_uids
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_volume.series_instance_uid
    segment_map = {int(k): v for k, v in out.result["outputs"]["segment_map"].items()}
    assert sorted(segment_map.values()) == [BODY, LIVER]
    for item in raw.SegmentSequence:
        if int(item.SegmentNumber) == 0:  # LABELMAP: highdicom's background segment
            assert seg_type == "LABELMAP"
            continue
        value = segment_map[int(item.SegmentNumber)]
        structure = LABELS.by_label()[value]
        assert item.SegmentLabel == structure.name
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == structure.snomed
        assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    labels = sitk.GetArrayFromImage(ThresholdSegmenter().segment(ct_volume.image))
    uids = ct_volume.sop_instance_uids
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                               assert_missing_frames_are_empty=True)
    decoded = np.zeros_like(labels)
    for number, value in segment_map.items():
        decoded[pixels == number] = value
    np.testing.assert_array_equal(decoded, labels)


def test_seg_uids_are_stable_for_the_same_input(ct_volume) -> None:  # type: ignore[no-untyped-def]
    from radqc.pipelines.anatomy.run import run_ct

    models = {"ct_organs": ThresholdSegmenter(), "body_region": None}
    a, b = run_ct(ct_volume, models), run_ct(ct_volume, models)
    assert a.result["outputs"]["seg_sop_instance_uid"] == b.result["outputs"]["seg_sop_instance_uid"]
    assert a.files["labels.nii.gz"] == b.files["labels.nii.gz"]


def test_seg_keeps_a_single_component_chinese_name_without_warning() -> None:
    """Chinese names arrive as one component ("杨婷华"): the SEG copies it as sent and
    highdicom's person-name warning does not repeat for every exam of a batch."""
    import warnings

    from radqc.dicom.factory import ct_series_datasets
    from radqc.dicom.volume import build_volume
    from radqc.pipelines.anatomy.run import run_ct

    datasets = ct_series_datasets(4, size=16, spacing_mm=3.0, seed=5, rescale_intercept=-1024)
    for ds in datasets:
        ds.PatientName = "杨婷华"
        ds.SpecificCharacterSet = "ISO_IR 192"
        arr = np.full((16, 16), 24, np.int16)
        arr[3:13, 3:13] = 1024 + 60
        ds.PixelData = arr.tobytes()
    volume = build_volume(datasets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_ct(volume, {"ct_organs": ThresholdSegmenter(), "body_region": None})
    assert not [w for w in caught if "person name" in str(w.message)]
    assert str(pydicom.dcmread(io.BytesIO(out.files["seg.dcm"])).PatientName) == "杨婷华"
