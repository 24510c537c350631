"""Radiograph centring and marker changes for issue #7 (helper P): a chest PA/AP is read by the
midpoint of the lungs' extent and the vertebral midline (a cut-off base or lung does not move
it), a chest image filed under another item is measured as a chest, and the lead marker is found
below brighter burned-in text."""

from __future__ import annotations

from typing import Any

import numpy as np

from radqc.pipelines.image_qc import radiograph as rq
from radqc.pipelines.image_qc.types import Evidence


def _ev(*a: Any, **k: Any) -> Evidence:
    return Evidence(series_uid="1.9", instance_index=0, measured=a[1], limit=a[2], extra=dict(k))


class _Analysis:
    def __init__(self, masks: dict[str, np.ndarray]) -> None:
        self.masks = masks
        self.landmarks: dict[str, Any] = {}
        self.measurements: dict[str, Any] = {}


def _chest(shift_x: int = 0, shift_y: int = 0, cut_rows: int = 0, cut_left_cols: int = 0,
           shape: tuple[int, int] = (300, 300)) -> dict[str, np.ndarray]:
    """Two lungs (apex row 30, base row 270 before shifting: wider at the base, so the centroid
    lies below the extent midpoint) beside a spine at column 150, all moved by the shift, with
    ``cut_rows`` removed at the bottom and ``cut_left_cols`` at the image-left edge."""
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    r, c = rr - shift_y, cc - shift_x
    half_width = 20 + (r - 30) * 0.3  # widening downwards
    right = (r >= 30) & (r <= 270) & (c >= 140 - half_width * 2) & (c <= 140)
    left = (r >= 30) & (r <= 270) & (c >= 160) & (c <= 160 + half_width * 2)
    spine = (r >= 10) & (r <= 280) & (abs(c - 150) <= 5)
    masks = {"lung_right": right, "lung_left": left, "vertebrae_thoracic": spine}
    if cut_rows:
        bottom = 270 + shift_y - cut_rows
        for m in masks.values():
            m[bottom + 1:] = False
    if cut_left_cols:
        for m in masks.values():
            m[:, :cut_left_cols] = False
    return masks


def _centring(masks: dict[str, np.ndarray], code: str = "DX-CHEST-PA", cut_at: dict[str, str] | None = None,
              shape: tuple[int, int] = (300, 300)) -> tuple[str, dict[str, Any]]:
    params = rq.load_params(code)
    v = rq._View("1.9", "PA", None)
    v.set("range", "正常", {"cut_at": cut_at or {}, "field_px": [0, shape[0], 0, shape[1]]})
    rq._centring(v, _Analysis(masks), {}, np.zeros(shape), 1.0, params, code.startswith("DX-CHEST"), _ev)
    return v.values["centring"], v.details["centring"]


def test_chest_extent_reads_a_straight_chest_as_centred() -> None:
    value, details = _centring(_chest())
    assert value == "正常"
    assert details["method"]["horizontal"] == "vertebral midline"
    # the centroid lies ~25 px below the extent midpoint here; the extent does not see it
    assert abs(details["anatomy_offset_mm"]["y"]) < 5


def test_chest_extent_finds_a_shifted_ray() -> None:
    # anatomy 35 mm lower in the image: the central ray was moved up (偏上); to the right: 偏左
    assert _centring(_chest(shift_y=35))[0] == "偏上"
    assert _centring(_chest(shift_y=-35))[0] == "偏下"
    assert _centring(_chest(shift_x=35))[0] == "偏左"
    assert _centring(_chest(shift_x=-35))[0] == "偏右"


def test_cut_bases_do_not_read_as_off_centre() -> None:
    # 30 rows of the bases cut by the collimation: the centroid moved up, the extent midpoint only
    # by 15 and that is corrected by bottom_cut_mm
    value, details = _centring(_chest(cut_rows=30), cut_at={"costophrenic_angle_right": "bottom",
                                                            "costophrenic_angle_left": "bottom"})
    assert value == "正常", details
    assert "bottom cut" in details["method"]["vertical"]


def test_a_lung_cut_at_the_side_does_not_move_the_spine_reading() -> None:
    value, details = _centring(_chest(cut_left_cols=80), cut_at={"costophrenic_angle_right": "lateral"})
    assert value == "正常", details
    assert abs(details["anatomy_offset_mm"]["x"]) < 3


def test_centroid_method_is_kept_for_other_items() -> None:
    params = rq.load_params("DX-LSPINE-APLAT")["centring"]
    assert params["method"] == "centroid"
    assert rq.load_params("DX-CHEST-PALAT")["centring"]["method"] == "extent"


def test_chest_image_under_a_spine_item_is_measured_as_a_chest() -> None:
    masks = _chest()
    lumbar = np.zeros((300, 300), bool)
    lumbar[285:300, 140:160] = True  # the top of the lumbar column at the image bottom
    masks["vertebrae_lumbar"] = lumbar
    value, details = _centring(masks, code="DX-LSPINE-APLAT")
    assert value == "正常", details
    assert details["method"]["view_shows"] == "chest"
    assert details["measured_on"] == ["lung_left", "lung_right"]


def test_marker_found_below_brighter_burned_text() -> None:
    from radqc.datasets.synthetic.imaging.image_ops import text_mask

    img = np.full((200, 200), 1500.0) + np.random.default_rng(3).normal(0, 20, (200, 200))
    img[20:26, 20:60] = np.where(np.random.default_rng(4).random((6, 40)) < 0.5, 4095, 1500)  # burned text
    glyph = text_mask("R", 14)
    img[28:28 + glyph.shape[0], 25:25 + glyph.shape[1]][glyph] = 4050
    m = rq.find_marker(img, (0, 200, 0, 200), 1.0)
    assert m is not None and m["text"] == "R" and m["side_of_image"] == "left"
    # without the plateau search the burned text is all that is found
    first = rq.find_marker(img, (0, 200, 0, 200), 1.0, max_levels=0)
    assert first is None or first["text"] != "R" or first["box"] != m["box"]
