"""Radiograph (DX) artifact, centring and sharpness rules of helper DA (2026-11-23 night).

Grid lines: the row-by-row phase consistency of a column pattern (``grid_rows``) decides before
the motion spectrum, whose band ratio the grid's columns corrupt (worn i9206 E00184 and h9205
E00061 read 运动 / 异物), and a strong grid turns a learned 无 or 运动 into 设备."""

from __future__ import annotations

from typing import Any

import numpy as np

from radqc.pipelines.image_qc import artifact as art


class Fixed:
    """A stand-in net: the same probabilities (none, motion, equipment, foreign object) for every series."""

    threshold = 0.85

    def __init__(self, probs: list[float]) -> None:
        self.probs = np.array(probs)

    def predict(self, modality: str, features: dict[str, Any]) -> np.ndarray:
        return self.probs


def _feats(grid_rows: float, vspec_rel: float, sat: float = 0.0) -> dict[str, float]:
    return {"grid_rows": grid_rows, "vspec_rel": vspec_rel, "fo_m15_lat": 1.0, "fo_sat_n": sat}


def _series(feats: dict[str, float], p: dict[str, Any]) -> art.SeriesArtifact:
    cls, kind, scores, measured, limit = art.dx_classify(feats, p)
    return art.SeriesArtifact("1.2.3", "DX", feats, scores, art.VALUE_OF[cls], kind, None, None, measured, limit)


def test_the_file_sets_the_grid_keys() -> None:
    assert art.DEFAULTS["dx_grid_first"] is True
    assert float(art.DEFAULTS["dx_grid_rows"]) < float(art.DEFAULTS["dx_grid_strong"]) <= 0.8


def test_grid_lines_decide_before_the_motion_spectrum() -> None:
    p = dict(art.DEFAULTS)
    grid_and_spectrum = _feats(grid_rows=0.82, vspec_rel=-4.2)  # i9206 E00184's PA view
    assert art.dx_classify(grid_and_spectrum, p)[0] == "equipment"
    assert art.dx_classify(grid_and_spectrum, {**p, "dx_grid_first": False})[0] == "motion"
    # no grid: the spectrum still reads motion
    assert art.dx_classify(_feats(grid_rows=0.3, vspec_rel=-4.2), p)[0] == "motion"


def test_a_strong_grid_turns_a_learned_motion_into_equipment() -> None:
    p = dict(art.DEFAULTS)
    res = art.decide_series(_series(_feats(0.82, -4.2), p), p, Fixed([0.0, 0.86, 0.14, 0.0]))
    assert res.value == "设备" and res.kind == "grid_lines" and res.extra["learned_value"] == "运动"
    # off: the net's motion stands
    off = {**p, "dx_grid_strong": None, "dx_grid_first": False}
    assert art.decide_series(_series(_feats(0.82, -4.2), off), off, Fixed([0.0, 0.86, 0.14, 0.0])).value == "运动"


def test_a_strong_grid_turns_a_learned_none_into_equipment_before_the_object_count() -> None:
    """h9205 E00061: the net's 设备 0.73 is below its threshold, and two grid crossings saturate."""
    p = dict(art.DEFAULTS)
    res = art.decide_series(_series(_feats(0.82, -4.75, sat=3.0), p), p, Fixed([0.0, 0.27, 0.73, 0.0]))
    assert res.value == "设备"


def test_a_weak_pattern_leaves_the_net_alone() -> None:
    p = dict(art.DEFAULTS)
    moved = art.decide_series(_series(_feats(0.48, -3.8), p), p, Fixed([0.0, 1.0, 0.0, 0.0]))
    assert moved.value == "运动"  # h9205 E00053: a real motion at grid_rows 0.48
    clean = art.decide_series(_series(_feats(0.54, 1.6), p), p, Fixed([0.99, 0.0, 0.01, 0.0]))
    assert clean.value == "无"


# ------------------------------------------------------------------ centring: knee and pelvis

from radqc.pipelines.image_qc import radiograph as rq  # noqa: E402
from tests.test_image_qc_radiograph_centring import _Analysis, _ev  # noqa: E402


def _knee(shift_px: int, shape: tuple[int, int] = (256, 200), patella: bool = True) -> dict[str, np.ndarray]:
    """A knee AP at 1 mm/px: femur from the top edge to the joint gap (row 128 + the anatomy's shift),
    tibia below it to the bottom edge, a patella centred 31 rows above the gap. Long bones run off
    both edges, so their centroid hardly moves with the shift."""
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    gap = 128 + 2 + shift_px
    femur = (rr <= gap - 3) & (abs(cc - 100) <= 30)
    tibia = (rr >= gap + 3) & (abs(cc - 100) <= 28)
    masks = {"femur": femur, "tibia": tibia}
    if patella:
        masks["patella"] = ((rr - (gap - 31)) ** 2 + (cc - 100) ** 2) <= 12 ** 2
    return masks


def _knee_centring(masks: dict[str, np.ndarray], params: dict[str, Any] | None = None,
                   shape: tuple[int, int] = (256, 200)) -> tuple[str, dict[str, Any]]:
    p = params or rq.load_params("DX-KNEE-APLAT")
    v = rq._View("1.9", "AP", None)
    rq._centring(v, _Analysis(masks), {}, np.zeros(shape), 1.0, p, False, _ev)
    return v.values["centring"], v.details["centring"]


def test_knee_reads_a_caudal_ray_by_the_patella() -> None:
    # the ray 35 mm caudal: the anatomy appears 35 mm higher (偏下)
    value, details = _knee_centring(_knee(-35))
    assert value == "偏下" and details["method"]["vertical"].startswith("anchor")
    assert abs(details["anatomy_offset_mm"]["y"] + 35) <= 3
    assert _knee_centring(_knee(+35))[0] == "偏上"
    assert _knee_centring(_knee(0))[0] == "正常"
    assert _knee_centring(_knee(12))[0] == "正常"  # a straight knee varies by N(0, 6) mm


def test_knee_without_a_patella_reads_the_joint_gap() -> None:
    value, details = _knee_centring(_knee(-35, patella=False))
    assert value == "偏下" and details["method"]["vertical"] == "joint line"


def test_the_old_centroid_missed_the_caudal_knee() -> None:
    """Without the joint-line method the long bones' centroid hides the shift (the miss on i9206)."""
    p = rq.load_params("DX-KNEE-APLAT")
    p = {**p, "centring": {**p["centring"], "method": "centroid"}}
    assert _knee_centring(_knee(-35), p)[0] == "正常"


def test_joint_line_row_and_anchor_row() -> None:
    masks = _knee(0)
    assert rq.joint_line_row(_Analysis(masks), ["femur"], ["tibia"]) == 130.0
    assert abs(rq.anchor_row(_Analysis(masks), ["patella"]) - 99.0) < 0.5
    assert rq.anchor_row(_Analysis(masks), ["patella"], min_px=10_000) is None
    assert rq.joint_line_row(_Analysis(masks), ["femur"], ["missing"]) is None


def test_pelvis_baseline_was_recalibrated() -> None:
    base = rq.load_params("DX-PELVIS-AP")["centring"]["baseline_mm"]["frontal"]
    assert -3.0 <= base[1] <= 0.0


# ------------------------------------------------------------------ sharpness: crisp text


def _blurred_field(seed: int = 0, shape: tuple[int, int] = (110, 90), text: bool = True) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.normal(0, 1, shape), 2.5)
    img = 2000.0 + 600.0 * base / base.std()
    img = ndi.gaussian_filter(img, 1.5)  # the blur defect
    img = np.rint(img + rng.normal(0, 25.0, shape))
    if text:  # burned-in annotation: crisp strokes at one constant value, drawn after the blur
        for r0 in (90, 98):  # glyphs: a 1-px frame of 5 x 6 px every 8 columns
            for c0 in range(50, 86, 8):
                img[r0, c0:c0 + 5] = img[r0 + 5, c0:c0 + 5] = 3900.0
                img[r0:r0 + 6, c0] = img[r0:r0 + 6, c0 + 4] = 3900.0
        img[8:16, 8:10] = 4050.0  # marker
        img[8:10, 8:14] = 4050.0
    return img


def test_flat_plateaus_are_filled_and_noise_is_kept() -> None:
    img = _blurred_field()
    out = rq.without_flat_plateaus(img, 4)
    assert not np.isin(out, [3900.0, 4050.0]).any()  # the text and the marker are gone
    assert np.isin(img, [3900.0, 4050.0]).sum() > 50
    clean = _blurred_field(text=False)
    kept = rq.without_flat_plateaus(clean, 4)
    assert float(np.mean(kept != clean)) < 0.05  # noisy anatomy: few equal neighbours


def test_text_on_a_blurred_field_no_longer_reads_sharp() -> None:
    img = _blurred_field()
    box = (0, img.shape[0], 0, img.shape[1])
    limit = float(rq.load_params(None)["sharpness"]["min_detail_fraction"])
    # off in the file (it did not hold on the untouched seed 8462); the measure itself still works
    assert rq.load_params(None)["sharpness"].get("crisp") is None
    crisp = {"flat_min_px": 4, "line_outlier": 20}
    with_text = rq.pixel_measures(img, box, 1.5, 1.5, None)["detail_fraction"]
    without = rq.pixel_measures(img, box, 1.5, 1.5, None, crisp)["detail_fraction"]
    assert without < limit <= with_text, (with_text, without)


def test_outlier_lines_are_left_out() -> None:
    img = _blurred_field(text=False)
    img[20, :] += 1500.0 * np.cos(2 * np.pi * 0.275 * np.arange(img.shape[1]))  # one crisp line of fine detail
    assert rq.detail_fraction(img) > 0.05
    assert rq.detail_fraction(img, line_outlier=20) < 0.02
