"""Radiograph positioning measures added for issue #7 (helper P): chest rotation from the heart
shadow and the clavicle sign together, the lung's height in rib spacings for a borderline rib
count, lungs cut by the collimator (no shallow-inspiration or scapula reading from them), and
header collimator edges written in another frame than the image's pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radqc.pipelines.image_qc import radiograph as rq
from radqc.pipelines.image_qc.types import Evidence


def _ev(*a: Any, **k: Any) -> Evidence:
    return Evidence(series_uid="1.9", instance_index=0, measured=a[1], limit=a[2], extra=dict(k))


class _Analysis:
    """A stand-in for the analyser's RadiographResult: masks, landmarks, measurements."""

    def __init__(self, masks: dict[str, np.ndarray], landmarks: dict[str, Any] | None = None,
                 measurements: dict[str, Any] | None = None) -> None:
        self.masks = masks
        self.landmarks = landmarks or {}
        self.measurements = measurements or {}


def _chest_masks(heart_shift_px: float = 0.0, shape: tuple[int, int] = (200, 200)) -> dict[str, np.ndarray]:
    """A straight vertical spine at column 100 and a heart whose centroid sits ``14 + shift`` px to
    the image right of it (1 mm pixels: the straight baseline of dx.yaml is 14.3 mm)."""
    spine = np.zeros(shape, bool)
    spine[20:180, 96:105] = True  # centre 100
    heart = np.zeros(shape, bool)
    c = 100 + 14 + heart_shift_px
    heart[100:150, int(round(c - 20)):int(round(c + 20)) + 1] = True
    return {"vertebrae_thoracic": spine, "heart": heart}


def _judge(meas: dict[str, Any], masks: dict[str, np.ndarray], cut_at: dict[str, str] | None = None,
           params: dict[str, Any] | None = None, landmarks: dict[str, Any] | None = None) -> rq._View:
    p = rq._merge(params or rq.load_params("DX-CHEST-PA"), {"positioning": {"check_marker": False}})
    v = rq._View("1.9", "PA", None)
    v.set("range", "正常", {"cut_at": cut_at or {}})
    meas = {"posterior_ribs_above_right_dome": 10, "scapula_in_lung_fraction": {}, **meas}
    rq._positioning(v, _Analysis(masks, landmarks, meas), meas, 1.0, p, True, _ev)
    return v


def test_spine_line_and_heart_offset_read_below_a_pixel() -> None:
    """The fitted midline of a slanted column is exact where per-row centres jump by pixels, and
    the heart's offset is its centroid against that line."""
    spine = np.zeros((100, 100), bool)
    for r in range(10, 90):
        c = 40 + 0.1 * r
        spine[r, int(round(c - 3)):int(round(c + 3)) + 1] = True
    a, b = rq.spine_line(spine)
    assert abs(a - 0.1) < 0.02 and abs(a * 50 + b - 45.0) < 0.3
    masks = _chest_masks(heart_shift_px=3.0)
    off = rq.heart_spine_offset(_Analysis(masks), 0.5)
    assert off is not None and abs(off - 0.5 * 17.0) < 0.3
    assert rq.heart_spine_offset(_Analysis({"vertebrae_thoracic": masks["vertebrae_thoracic"]}), 1.0) is None


def test_chest_rotation_adds_the_heart_and_clavicle_signs() -> None:
    """Rotated when the two standard scores, the clavicle's negated, add up beyond max_score and
    agree in sign; neither sign alone at that size suffices, a disagreeing pair is not judged."""
    p = rq.load_params("DX-CHEST-PA")
    cr = p["positioning"]["chest_rotation"]
    hs, os_ = float(cr["heart_spine_mm"]["spread"]), float(cr["offset_mm"]["spread"])
    hb, ob = float(cr["heart_spine_mm"]["baseline"]), float(cr["offset_mm"]["baseline"])
    lim = float(cr["max_score"])
    # each sign at 0.6 x the limit: together 1.2 x the limit
    dz = 0.6 * lim
    heart_shift = hb - 14.0 + dz * hs
    off = ob - dz * os_
    v = _judge({"rotation_offset_mm": off}, _chest_masks(heart_shift))
    assert v.values["positioning"] == "不标准"
    f = v.findings["positioning"][0]
    assert f.evidence[0].extra["kind"] == "rotation" and "heart" in f.reason_en and "心影" in f.reason_zh
    assert abs(abs(v.details["positioning"]["rotation_score"]) - 2 * dz) < 0.3
    # the heart sign alone (clavicle sign at baseline) is below the limit
    assert _judge({"rotation_offset_mm": ob}, _chest_masks(heart_shift)).values["positioning"] == "标准"
    # the two signs pointing opposite ways: not rotation
    v = _judge({"rotation_offset_mm": ob + 3 * dz * os_}, _chest_masks(heart_shift + 2 * dz * hs))
    assert v.values["positioning"] == "标准" and v.details["positioning"]["rotation_signs_agree"] is False
    # straight chest
    assert _judge({"rotation_offset_mm": ob}, _chest_masks(hb - 14.0)).values["positioning"] == "标准"


def test_chest_rotation_limit_is_data() -> None:
    """max_score in dx.yaml decides: a pair just over it flags, the same pair under a raised limit does not."""
    p = rq.load_params("DX-CHEST-PA")
    cr = p["positioning"]["chest_rotation"]
    meas = {"rotation_offset_mm": float(cr["offset_mm"]["baseline"]) - 3.5 * float(cr["offset_mm"]["spread"])}
    masks = _chest_masks(float(cr["heart_spine_mm"]["baseline"]) - 14.0 + 3.5 * float(cr["heart_spine_mm"]["spread"]))
    assert _judge(meas, masks, params=p).values["positioning"] == "不标准"
    raised = rq._merge(p, {"positioning": {"chest_rotation": {"max_score": 8.0}}})
    assert _judge(meas, masks, params=raised).values["positioning"] == "标准"


def test_a_laterally_cut_lung_uses_the_clavicle_part_and_drops_that_scapula() -> None:
    """With a lung cut at the field's side, the analyser's thorax part of the offset is spoilt: the
    clavicle part alone (its own gain) is used; the scapula on that side is not judged."""
    from radqc.models.radiograph.classical import ROTATION_C

    p = rq.load_params("DX-CHEST-PA")
    cr = p["positioning"]["chest_rotation"]
    # the heart one spread toward the turned side: a weak sign that agrees with the offset's
    straight = _chest_masks(float(cr["heart_spine_mm"]["baseline"]) - 14.0 + float(cr["heart_spine_mm"]["spread"]))
    meas = {"rotation_offset_mm": -60.0, "rotation_raw_mm": 0.1,
            "scapula_in_lung_fraction": {"right": 0.8, "left": 0.05}}
    cut = {"costophrenic_angle_right": "lateral"}
    v = _judge(meas, straight, cut_at=cut)
    d = v.details["positioning"]
    assert v.values["positioning"] == "标准"
    assert d["rotation_offset_source"] == "clavicle" and abs(d["rotation_offset_mm"] - ROTATION_C * 0.1) < 0.01
    assert "scapula" in d
    # the same view uncut: the offset and the scapula both count
    v = _judge(meas, straight)
    kinds = {f.evidence[0].extra.get("kind") for f in v.findings["positioning"]}
    assert v.values["positioning"] == "不标准" and kinds == {"rotation", "scapula_over_lung"}


def _rib_analysis(height_in_ribs: float, top: int = 20, dome_row: int = 110) -> _Analysis:
    """Right lung from ``top`` to below the right dome at ``dome_row``, rib bands (2 px) spaced so
    that the apex-to-dome height is ``height_in_ribs`` spacings, the rib-profile column in the
    lung; lung fields 1.05 x as high as their joint width (neither short nor tall)."""
    shape = (300, 120)
    lung = np.zeros(shape, bool)
    lung[top:dome_row + 10, 10:55] = True
    left = np.zeros(shape, bool)
    left[top:dome_row + 10, 60:105] = True
    ribs = np.zeros(shape, bool)
    spacing = (dome_row - top) / height_in_ribs
    for k in range(40):
        r = int(round(top + (k + 0.5) * spacing))
        if r + 2 < shape[0]:
            ribs[r:r + 2, :] = True
    return _Analysis({"lung_right": lung, "lung_left": left, "ribs": ribs},
                     {"diaphragm_dome_right": (float(dome_row), 35.0)}, {"rib_profile_col": 40.0})


def test_lung_height_in_rib_spacings() -> None:
    h = rq.lung_height_in_ribs(_rib_analysis(9.0))
    assert h is not None and abs(h - 9.0) < 0.2
    h = rq.lung_height_in_ribs(_rib_analysis(10.4))
    assert h is not None and abs(h - 10.4) < 0.3
    assert rq.lung_height_in_ribs(_Analysis({}, {}, {})) is None


def test_a_borderline_rib_count_is_shallow_when_the_lung_is_short_in_rib_spacings() -> None:
    """A count one below the limit is a shallow inspiration when the lung's height in rib spacings
    is under borderline_height_in_ribs, not when it is normal; a height far from the count is not believed."""
    p = rq.load_params("DX-CHEST-PA")
    lim = float(p["positioning"]["borderline_height_in_ribs"])
    ribs = int(p["positioning"]["min_posterior_ribs"]) - 1

    def judged(height: float) -> rq._View:
        a = _rib_analysis(height)
        return _judge({"rotation_offset_mm": None, "posterior_ribs_above_right_dome": ribs, "rib_profile_col": 40.0},
                      a.masks, landmarks=a.landmarks)

    v = judged(lim - 0.4)
    assert v.values["positioning"] == "不标准"
    ev = v.findings["positioning"][0].evidence[0]
    assert ev.extra["kind"] == "shallow_inspiration" and ev.extra["lung_height_in_ribs"] < lim
    assert judged(lim + 0.8).values["positioning"] == "标准"
    far = ribs - float(p["positioning"]["max_rib_disagreement"]) - 1.0
    assert judged(far).values["positioning"] == "标准"
    unset = rq._merge(p, {"positioning": {"borderline_height_in_ribs": None}})
    a = _rib_analysis(lim - 0.4)
    v = _judge({"rotation_offset_mm": None, "posterior_ribs_above_right_dome": ribs, "rib_profile_col": 40.0},
               a.masks, landmarks=a.landmarks, params=unset)
    assert v.values["positioning"] == "标准"


def test_lungs_cut_at_the_bottom_are_not_read_as_a_shallow_inspiration() -> None:
    """Lung fields short because the collimator cut their bases are a range error, not a breath."""
    p = rq.load_params("DX-CHEST-PA")
    lim = float(p["positioning"]["short_lung_aspect"])
    masks = {"lung_right": np.zeros((100, 100), bool), "lung_left": np.zeros((100, 100), bool)}
    masks["lung_right"][30:30 + int(80 * lim) - 8, 10:50] = True
    masks["lung_left"][30:30 + int(80 * lim) - 8, 50:90] = True
    meas = {"rotation_offset_mm": None, "posterior_ribs_above_right_dome": 10}
    assert _judge(meas, masks).values["positioning"] == "不标准"
    cut = {"costophrenic_angle_right": "bottom", "costophrenic_angle_left": "bottom"}
    assert _judge(meas, masks, cut_at=cut).values["positioning"] == "标准"


def test_header_collimator_edges_outside_the_image_are_ignored() -> None:
    """Edges are pixel positions of the image; a device writing them in a detector-centred frame
    (negative left edge) is not believed, and the field is found from the pixels."""
    ds = Dataset()
    ds.CollimatorShape = "RECTANGULAR"
    ds.CollimatorUpperHorizontalEdge, ds.CollimatorLowerHorizontalEdge = 907, 1299
    ds.CollimatorLeftVerticalEdge, ds.CollimatorRightVerticalEdge = -184, 184
    assert rq.header_collimation(ds, (1955, 1841)) is None
    ds.CollimatorLeftVerticalEdge, ds.CollimatorRightVerticalEdge = 100, 1700
    box, found = rq.header_collimation(ds, (1955, 1841))  # type: ignore[misc]
    assert box == (907, 1300, 100, 1701) and found["left"] and found["bottom"]
    image = np.zeros((120, 100), np.float32)
    image[10:110, 15:85] = np.random.default_rng(0).normal(500, 50, (100, 70))
    ds.CollimatorLeftVerticalEdge, ds.CollimatorRightVerticalEdge = -50, 50
    _, _, source = rq._field_box(image, ds)
    assert source == "pixels"


def test_an_implausible_heart_offset_is_not_a_rotation_sign() -> None:
    """A heart far beyond any turned chest's offset (a wrong mask) is dropped; the clavicle sign,
    if any, decides alone."""
    p = rq.load_params("DX-CHEST-PA")
    ho = p["positioning"]["chest_rotation"]["heart_spine_mm"]
    far = float(ho["baseline"]) - 14.0 + float(ho["max_deviation_mm"]) + 10.0
    v = _judge({"rotation_offset_mm": None}, _chest_masks(far))
    assert v.values["positioning"] == "标准" and "heart_spine" in v.details["positioning"]
    near = float(ho["baseline"]) - 14.0 + 6.0 * float(ho["spread"])
    assert _judge({"rotation_offset_mm": None}, _chest_masks(near)).values["positioning"] == "不标准"
