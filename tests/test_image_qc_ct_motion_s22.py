"""CT motion (运动), session 22 (CTM6): the edge-doubling band's width read as a step over an inner
run of slices (``ct_motion.series_width_step``; qc_rules/image_qc/artifact.yaml ``ct_width_motion_*``).
It keeps the net's motion call on a body the field circle cuts (the cut-body veto,
``_cut_body_without_echo``) and turns a 无 the net ranks as motion into 运动 on a cut or blurred
body (``_ct_width_motion_rescue``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc import ct_motion
from tests.test_image_qc_artifact_unconfirmed import Fixed

#: a series whose other motion readings stay under their limits: weak echo, no measured axis
QUIET = {"echo_t": 1.5, "echo_step": 0.05, "echo_wt": 1.8, "echo_wstep": 0.07, "echo_run": 0.3, "echo_first": 3.0,
         "echo_wrun": 0.3, "echo_wfirst": 3.0, "ghost_axis_coh": 0.0, "ghost_axis_measured": 0.0, "ghost_q50": 0.02,
         "ghost_contrast": 0.9, "rim_touch_med": 0.0}
#: a spine field the circle cuts on most of its outline (the axis unmeasured)
CUT = {"rim_touch_med": 0.35}
#: soft edges of a blurring kernel, body clear of the circle
SOFT = {"ghost_q50": 2.7, "rim_touch_med": 0.0}


def _widths(n: int, run: range | None, inside: float = 1.0, outside: float = 0.01, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [max(0.0, (inside if run is not None and k in run else outside) + rng.normal(0, 0.02)) for k in range(n)]


def _per(widths: list[float]) -> list[dict[str, float]]:
    return [{"ghost_width": w, "ghost_axis": 0.0, "ghost_axis_phi": 0.0, "ghost_axis_ok": 0.0, "rim_touch": 0.3,
             "rim_excess": 0.0, "metal_px": 0.0, "streak": 0.0, "hu_max": 1200.0, "body_px": 5000.0} for w in widths]


def _decide(features: dict[str, float], widths: list[float], motion: float, p: dict[str, Any] | None = None) -> art.SeriesArtifact:
    feats = {**QUIET, **features, "n_slices": float(len(widths))}
    per = _per(widths)
    res = art.SeriesArtifact("1.2.3", "CT", feats, {}, "无", extra={"_per": per, "_idx": list(range(len(per))), "_slices": []})
    probs = [1.0 - motion - 0.02, motion, 0.01, 0.01]
    return art.decide_series(res, art.DEFAULTS if p is None else p, Fixed(probs))


def test_the_file_ships_the_width_keys() -> None:
    d = art.DEFAULTS
    for k in ("ct_width_motion_t", "ct_width_motion_px", "ct_width_motion_prob", "ct_width_motion_q50",
              "ct_width_motion_min_slices", "ct_width_motion_margin"):
        assert d[k] is not None, k
    # the rescue reads 无 calls the net ranks as motion below its own unconfirmed margin
    assert d["ct_width_motion_prob"] < art.unconfirmed_threshold(d, "CT", "motion")
    assert d["ct_width_motion_margin"] >= 1


def test_the_width_step_finds_an_inner_run_and_not_a_flat_band() -> None:
    w = ct_motion.series_width_step(_per(_widths(24, range(9, 15))))
    assert w["ghost_width_t"] > 10.0 and 0.9 < w["ghost_width_step"] < 1.1
    assert w["ghost_width_first"] == 9.0 and abs(w["ghost_width_run"] - 6 / 24) < 1e-9
    # a cut edge widens the band on every slice: no step
    flat = ct_motion.series_width_step(_per(_widths(24, range(24), inside=0.6)))
    assert flat["ghost_width_t"] < 2.0
    # too few slices: zeros
    assert ct_motion.series_width_step(_per(_widths(5, range(1, 3))))["ghost_width_t"] == 0.0


def test_the_cut_body_veto_keeps_a_motion_whose_band_steps_up() -> None:
    moving = _widths(24, range(9, 15))
    assert _decide(CUT, moving, motion=0.97).value == "运动"
    # the same call without the step (the cut edge on every slice) is still dropped
    assert _decide(CUT, _widths(24, None, outside=0.6), motion=0.97).value == "无"
    # a run reaching the series' end is a range running on into the chest, not motion
    assert _decide(CUT, _widths(24, range(19, 24)), motion=0.97).value == "无"
    # the keys off: the session-19 veto as it was
    off = {**art.DEFAULTS, "ct_width_motion_t": None}
    assert _decide(CUT, moving, motion=0.97, p=off).value == "无"


def test_a_net_ranked_motion_on_a_cut_or_blurred_body_is_rescued() -> None:
    moving = _widths(24, range(6, 16), inside=0.5, outside=0.02)
    assert _decide(CUT, _widths(24, range(6, 16), inside=0.9), motion=0.8).value == "运动"
    # a cut body's own inner plateau of about half a pixel (9142 E00094) is not enough there
    assert _decide(CUT, moving, motion=0.8).value == "无"
    res = _decide(SOFT, moving, motion=0.55)
    assert res.value == "运动" and res.extra["width_step"]["ghost_width_t"] >= art.DEFAULTS["ct_width_motion_t"]
    assert 6 <= int(res.slice_index) <= 16  # the evidence lies on the run
    # a sharp body clear of the circle: clean series step there too (shoulders), not read
    assert _decide({"rim_touch_med": 0.0, "ghost_q50": 0.3}, moving, motion=0.8).value == "无"
    # the net does not rank motion: not read
    assert _decide(SOFT, moving, motion=0.3).value == "无"
    # short series: the run's spread is poorly known
    assert _decide(SOFT, _widths(10, range(3, 7), inside=0.5), motion=0.8).value == "无"
    # a key off: off
    assert _decide(SOFT, moving, motion=0.55, p={**art.DEFAULTS, "ct_width_motion_prob": None}).value == "无"
