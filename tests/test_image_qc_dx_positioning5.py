"""Radiograph positioning/range of session 21 (DXP5): the rib count checked against the lung's height
in rib spacings both ways (a low count on a full-height lung, a count at the limit on a short one),
and the chest's collimation margins from each lung mask's largest part."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from radqc.pipelines.image_qc import radiograph as rq


def _rib_analysis(height_in_ribs: float, ribs_counted: int, left_cols: tuple[int, int] = (60, 105),
                  top: int = 20, dome_row: int = 110) -> SimpleNamespace:
    """Right lung from ``top`` to below the right dome, rib bands spaced so that the apex-to-dome
    height is ``height_in_ribs`` spacings; the analyser's count is ``ribs_counted``. With the default
    left lung the fields are 1.05 x as high as wide (short of the 1.1 'tall' limit)."""
    shape = (300, 120)
    right = np.zeros(shape, bool)
    right[top:dome_row + 10, 10:55] = True
    left = np.zeros(shape, bool)
    left[top:dome_row + 10, left_cols[0]:left_cols[1]] = True
    ribs = np.zeros(shape, bool)
    spacing = (dome_row - top) / height_in_ribs
    for k in range(40):
        r = int(round(top + (k + 0.5) * spacing))
        if r + 2 < shape[0]:
            ribs[r:r + 2, :] = True
    meas = {"rotation_offset_mm": None, "posterior_ribs_above_right_dome": ribs_counted, "rib_profile_col": 40.0,
            "scapula_in_lung_fraction": {}}
    return SimpleNamespace(masks={"lung_right": right, "lung_left": left, "ribs": ribs},
                           landmarks={"diaphragm_dome_right": (float(dome_row), 35.0)}, measurements=meas)


def _judge(a: SimpleNamespace, **positioning: Any) -> rq._View:
    p = rq._merge(rq.load_params("DX-CHEST-PA"), {"positioning": {"check_marker": False, **positioning}})
    v = rq._View("1.9", "PA", None)
    v.set("range", "正常", {"cut_at": {}, "field_px": [0, 300, 0, 120]})
    rq._positioning(v, a, a.measurements, 1.0, p, True, lambda *x, **k: None)
    return v


def test_a_low_count_on_a_full_height_lung_is_not_a_shallow_breath() -> None:
    p = rq.load_params("DX-CHEST-PA")["positioning"]
    h_lim = float(p["low_count_max_height_in_ribs"])
    a = _rib_analysis(h_lim + 0.5, int(p["min_posterior_ribs"]) - 2)
    assert rq.lung_height_in_ribs(a) >= h_lim
    assert _judge(a).values["positioning"] == "标准"
    # without the height check the count of 8 decides
    assert _judge(a, low_count_max_height_in_ribs=None).values["positioning"] == "不标准"
    # a short lung in rib spacings keeps the low count
    assert _judge(_rib_analysis(7.8, int(p["min_posterior_ribs"]) - 2)).values["positioning"] == "不标准"


def test_a_count_at_the_limit_on_short_fields_is_overruled_by_the_height() -> None:
    p = rq.load_params("DX-CHEST-PA")["positioning"]
    lim = int(p["min_posterior_ribs"])
    a = _rib_analysis(float(p["inspiration_height"]["max_ribs"]) - 0.5, lim)
    v = _judge(a)
    assert v.values["positioning"] == "不标准" and v.details["positioning"]["inspiration_by_height"] is True
    assert _judge(a, inspiration_height={**p["inspiration_height"], "overrule_count_at_limit": False}
                  ).values["positioning"] == "标准"
    # tall fields (a narrow left lung: height / width >= max_aspect) keep the count
    tall = _rib_analysis(float(p["inspiration_height"]["max_ribs"]) - 0.5, lim, left_cols=(60, 75))
    assert _judge(tall).details["positioning"]["lung_height_to_width"] >= p["inspiration_height"]["max_aspect"]
    assert _judge(tall).values["positioning"] == "标准"
    # a count above the limit is never overruled
    assert _judge(_rib_analysis(8.5, lim + 1)).values["positioning"] == "标准"


def test_inspiration_by_height_at_the_limit_needs_short_fields() -> None:
    insp = rq.load_params("DX-CHEST-PA")["positioning"]["inspiration_height"]
    a = _rib_analysis(8.5, 10)
    field = [0, 300, 0, 120]
    assert rq.inspiration_by_height(a, 8.5, 10, 10, field, 1.0, insp, aspect=1.0) is True
    assert rq.inspiration_by_height(a, 8.5, 10, 10, field, 1.0, insp, aspect=1.2) is False
    assert rq.inspiration_by_height(a, 8.5, 10, 10, field, 1.0, insp) is False
    assert rq.inspiration_by_height(a, 8.5, 11, 10, field, 1.0, insp, aspect=1.0) is False


def test_lung_box_ignores_stray_lung_fragments() -> None:
    right = np.zeros((100, 100), bool)
    right[20:80, 10:45] = True
    left = np.zeros((100, 100), bool)
    left[20:80, 55:80] = True
    left[5:8, 95:98] = True  # a fragment beside the marker / shoulder
    a = SimpleNamespace(masks={"lung_right": right, "lung_left": left})
    assert rq._structure_box(a, ["lung_left", "lung_right"])[1] == [5.0, 10.0, 79.0, 97.0]
    assert rq._lung_box(a) == [20.0, 10.0, 79.0, 79.0]
    assert rq._lung_box(SimpleNamespace(masks={})) is None


def test_collimation_margin_uses_the_largest_lung_parts() -> None:
    """Lungs 60 px from each side of the field (1 mm pixels, limit 50 mm lateral mean) are too wide
    a field; the stray fragment at the field's right edge would have read that margin as 1 mm."""
    shape = (200, 200)
    right = np.zeros(shape, bool)
    right[40:160, 60:95] = True
    left = np.zeros(shape, bool)
    left[40:160, 105:140] = True
    left[30:33, 195:198] = True
    a = SimpleNamespace(masks={"lung_right": right, "lung_left": left}, measurements={})
    v = rq._View("1.9", "PA", None)
    p = rq.load_params("DX-CHEST-PA")
    rq._range(v, a, {}, np.zeros(shape), (0, 200, 0, 200), {"top": True, "bottom": True, "left": True, "right": True},
              "pixels", 1.0, p, True, lambda *x, **k: None, [0.0, 0.0, 199.0, 199.0])
    assert v.details["range"]["collimation_margin_mm"]["right"] == 60.0
    assert v.values["range"] == "过大"


def _lumbar_view(po_raw: float | None, sp_raw: float | None) -> rq._View:
    p = rq._merge(rq.load_params("DX-LSPINE-APLAT"), {"positioning": {"check_marker": False}})
    pe, so = p["positioning"]["posterior_offset"], p["positioning"]["spinous_offset"]
    outline: dict[str, Any] = {}
    if po_raw is not None:
        outline.update(posterior_offset_raw_mm=po_raw, posterior_offset_mm=round(po_raw - pe["baseline_mm"], 2))
    if sp_raw is not None:
        outline.update(spinous_offset_raw_mm=sp_raw, spinous_offset_mm=round(sp_raw - so["baseline_mm"], 2))
    v = rq._View("1.9", "AP", None)
    a = SimpleNamespace(masks={}, landmarks={}, measurements={})
    rq._positioning(v, a, {}, 2.0, p, False, lambda *x, **k: None, None, outline)
    return v


def test_lumbar_spine_signs_are_judged_together() -> None:
    cfg = rq.load_params("DX-LSPINE-APLAT")["positioning"]["spine_rotation_score"]
    assert cfg is not None and rq.load_params("DX-PELVIS-AP")["positioning"]["spine_rotation_score"] is None
    # i9216 E00095 (straight): posterior -4.79 mm raw alone beyond its limit, spinous the other way
    v = _lumbar_view(-4.79, -0.92)
    assert v.values["positioning"] == "标准" and abs(v.details["positioning"]["spine_rotation_score"]) < cfg["max_score"]
    # a turn moves both signs: i9214 E00237 (15 degrees) read -11.0 / -10.8 raw
    v = _lumbar_view(-11.0, -10.8)
    assert v.values["positioning"] == "不标准" and v.details["positioning"]["spine_rotation_score"] < -cfg["max_score"]
    # two signs agreeing add up, each within its own limit (7.0 and 4.4 mm from those baselines)
    assert _lumbar_view(10.0, 2.4).values["positioning"] == "不标准"
    # one sign only: its own limit (posterior 7.5 mm from its baseline of 3.0)
    assert _lumbar_view(-4.79, None).values["positioning"] == "不标准"
    assert _lumbar_view(-3.0, None).values["positioning"] == "标准"
    assert rq._spine_rotation_score({"posterior_offset_raw_mm": 1.0}, cfg) is None
    assert rq._spine_rotation_score({"posterior_offset_raw_mm": 1.0, "spinous_offset_raw_mm": 0.0}, None) is None


def test_a_chest_image_under_the_lumbar_item_is_measured_as_a_chest(monkeypatch: Any) -> None:
    """With other_chest_reanalyse, a view of a lumbar item that shows a chest (lungs over the image,
    no lumbar column) is analysed with the chest region and measured with the chest item's
    parameters: its range is judged by the lung margins, not by the missing lumbar column."""
    from pydicom.dataset import Dataset

    from radqc.dicom.volume import Radiograph
    from radqc.pipelines.image_qc.types import EvidenceSink, ExamImages, SeriesImages
    from radqc.pipelines.series.features import SeriesHeader

    shape = (200, 200)
    right = np.zeros(shape, bool)
    right[30:150, 40:95] = True
    left = np.zeros(shape, bool)
    left[30:150, 105:160] = True
    lumbar_analysis = SimpleNamespace(masks={"lung_right": right, "lung_left": left}, measurements={"region": "spine"},
                                      landmarks={}, view="PA")
    chest_analysis = SimpleNamespace(masks={"lung_right": right, "lung_left": left},
                                     measurements={"region": "chest"}, landmarks={}, view="PA")
    asked: list[str | None] = []

    def fake_analyse(rg: Any, exam: Any, uid: str, region: str | None) -> Any:
        asked.append(region)
        return chest_analysis if region == "chest" else lumbar_analysis

    monkeypatch.setattr(rq, "_analyse", fake_analyse)
    ds = Dataset()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.9", "1.9.1"
    img = np.full(shape, 1000.0)
    series = SeriesImages(header=SeriesHeader(series_uid="1.9", modality="DX"), label=None, datasets=lambda: [],
                          volume=None, radiograph=lambda: Radiograph(pixels=img, spacing_mm=(1.0, 1.0), view="PA",
                                                                      body_part="LSPINE", modality="DX", dataset=ds))
    exam = ExamImages(study_uid=None, modality="DX", standard_code="DX-LSPINE-APLAT", series=[series])

    def measured(reanalyse: str | None) -> Any:
        asked.clear()
        params = rq._merge(rq.load_params("DX-LSPINE-APLAT"),
                           {"positioning": {"check_marker": False, "other_chest_reanalyse": reanalyse}})
        return rq._measure_view(series, exam, params, EvidenceSink())

    assert rq.load_params("DX-LSPINE-APLAT")["positioning"]["other_chest_reanalyse"] == "DX-CHEST-PA"
    v = measured("DX-CHEST-PA")
    assert asked == ["lumbar_spine", "chest"]
    assert "collimation_margin_mm" in v.details["range"] and v.values["range"] != "过小"
    v = measured(None)
    assert asked == ["lumbar_spine"]
    assert v.values["range"] == "过小"  # the lumbar column is "not included"


def test_the_analysers_letter_alone_does_not_judge_the_side() -> None:
    net = {"present": True, "text": "L", "side_of_image": "left"}
    assert rq._combined_marker(net, None)["text"] == "L"
    out = rq._combined_marker(net, None, net_letter_alone=False)
    assert out["present"] is True and out["text"] is None and out["letter_unread"] is True
    assert rq.load_params("DX-KNEE-APLAT")["positioning"]["marker_analyser_letter_alone"] is False
    # a letter read from the pixels still decides
    pix = {"present": True, "text": "R", "side_of_image": "left", "box": [1, 2, 3, 4]}
    assert rq._combined_marker(net, pix, net_letter_alone=False)["text"] == "R"


def test_a_stray_lung_fragment_on_the_field_edge_does_not_cut_a_costophrenic_angle() -> None:
    """qc-items 7504 E00324/E00694: fields collimated 70-90 mm below the lungs read 过小 because a few
    pixels of the lung channel lay on the field's bottom edge; the lungs' largest parts decide, as
    for the collimation margins."""
    left = np.zeros((200, 160), bool)
    left[30:120, 90:140] = True  # the lung, well above the field's bottom edge (row 189)
    right = np.zeros((200, 160), bool)
    right[30:120, 20:70] = True
    box = (0, 190, 0, 160)
    a = SimpleNamespace(masks={"lung_left": left, "lung_right": right})
    assert rq._lung_bases_in_field(a, box, "PA") == {"costophrenic_angle_right": None, "costophrenic_angle_left": None}
    stray = left.copy()
    stray[186:190, 100:130] = True  # a fragment along the bottom edge
    a = SimpleNamespace(masks={"lung_left": stray, "lung_right": right})
    assert rq._lung_bases_in_field(a, box, "PA")["costophrenic_angle_left"] is None
    cut = left.copy()
    cut[120:190, 90:140] = True  # the lung itself runs down to the edge: cut
    a = SimpleNamespace(masks={"lung_left": cut, "lung_right": right})
    assert rq._lung_bases_in_field(a, box, "PA")["costophrenic_angle_left"] == "bottom"
