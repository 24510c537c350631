"""CT motion (运动), session 19: the cepstral echo (pipelines/image_qc/ct_motion.py) weighed with the
motion axis and the field circle in ``_ct_motion_axis_rule`` / ``_ct_echo_motion_rule``
(qc_rules/image_qc/artifact.yaml ``ct_cut_motion_*``, ``ct_echo_short_min_slices``,
``ct_echo_axis_*``): a net's motion call on a body the circle cuts needs the echo; a short series
needs both echo readings; a moderate echo counts with the axis behind it; a 设备 series with the
echo and the axis is a moving patient's streaks."""

from __future__ import annotations

from typing import Any

from radqc.pipelines.image_qc import artifact as art
from tests.test_image_qc_artifact_unconfirmed import Fixed

NONE = [0.97, 0.01, 0.01, 0.01]
MOTION = [0.02, 0.97, 0.01, 0.0]
EQUIPMENT = [0.15, 0.01, 0.8, 0.04]

#: a clean series' readings: no echo, no axis, body clear of the circle
CLEAN = {"n_slices": 24.0, "echo_t": 1.5, "echo_step": 0.05, "echo_wt": 2.0, "echo_wstep": 0.08, "echo_run": 0.3,
         "echo_first": 3.0, "echo_wrun": 0.3, "echo_wfirst": 3.0, "ghost_axis_coh": 0.0, "rim_touch_med": 0.0,
         "ghost_axis_measured": 1.0}


def _decide(features: dict[str, float], probs: list[float], p: dict[str, Any] | None = None, classical: str = "无") -> art.SeriesArtifact:
    feats = {**CLEAN, **features}
    n = int(feats["n_slices"])
    res = art.SeriesArtifact("1.2.3", "CT", feats, {}, classical, extra={"_per": [{} for _ in range(n)], "_idx": list(range(n)), "_slices": []})
    return art.decide_series(res, art.DEFAULTS if p is None else p, Fixed(probs))


def test_the_file_ships_the_session_19_keys() -> None:
    d = art.DEFAULTS
    assert d["ct_cut_motion_touch"] is not None and d["ct_cut_motion_echo_t"] < d["ct_cut_motion_short_echo_t"]
    assert d["ct_echo_short_min_slices"] < d["ct_echo_min_slices"]
    assert d["ct_echo_axis_t"] < d["ct_echo_t"] and d["ct_echo_axis_coh"] is not None


def test_a_net_motion_call_on_a_cut_body_without_echo_reads_none() -> None:
    """The circle cuts the body (axis unmeasured, so the axis veto keeps the call): the echo decides."""
    cut = {"rim_touch_med": 0.33, "ghost_axis_measured": 0.04}
    res = _decide(cut, MOTION)
    assert res.value == "无" and res.extra["dropped"]["kind"] == "motion_in_a_cut_body_without_echo"
    # the echo above the clean level keeps the net's call (worn i9212 E00186: 2.57)
    assert _decide({**cut, "echo_t": 2.6}, MOTION).value == "运动"
    # on a short series the echo must be higher (clean 9-slice calls read up to 3.87)
    assert _decide({**cut, "n_slices": 9.0, "echo_t": 3.9}, MOTION).value == "无"
    assert _decide({**cut, "n_slices": 9.0, "echo_t": 11.0}, MOTION).value == "运动"
    # a body clear of the circle, or a motion axis, keeps the call
    assert _decide({"rim_touch_med": 0.1, "ghost_axis_measured": 1.0, "ghost_axis_coh": 0.5}, MOTION).value == "运动"
    assert _decide({**cut, "ghost_axis_coh": 0.8}, MOTION).value == "运动"
    assert _decide(cut, MOTION, {**art.DEFAULTS, "ct_cut_motion_echo_t": None}).value == "运动"


def test_a_short_series_needs_both_echo_readings() -> None:
    both = {"n_slices": 10.0, "echo_t": 6.8, "echo_step": 0.19, "echo_wt": 9.0, "echo_wstep": 0.44}
    res = _decide(both, NONE)
    assert res.value == "运动" and res.extra["learned_value"] == "无" and res.slice_index is not None
    # one reading alone is what clean 9-10-slice series give
    assert _decide({**both, "echo_wt": 4.5}, NONE).value == "无"
    assert _decide({**both, "echo_t": 3.9}, NONE).value == "无"
    # below the short floor, or with the key off, the echo does not judge
    assert _decide({**both, "n_slices": 7.0}, NONE).value == "无"
    assert _decide(both, NONE, {**art.DEFAULTS, "ct_echo_short_min_slices": None}).value == "无"


def test_a_moderate_echo_counts_with_the_motion_axis() -> None:
    moderate = {"echo_t": 4.0, "echo_step": 0.38, "ghost_axis_coh": 0.71}
    res = _decide(moderate, NONE)
    assert res.value == "运动" and res.limit == art.DEFAULTS["ct_echo_axis_t"]
    assert _decide({**moderate, "ghost_axis_coh": 0.3}, NONE).value == "无"
    assert _decide({**moderate, "echo_t": 3.2}, NONE).value == "无"
    assert _decide({**moderate, "echo_step": 0.1}, NONE).value == "无"
    assert _decide(moderate, NONE, {**art.DEFAULTS, "ct_echo_axis_t": None}).value == "无"


def test_an_equipment_series_with_the_echo_and_the_axis_reads_motion() -> None:
    moving = {"echo_t": 6.2, "echo_step": 0.33, "ghost_axis_coh": 1.25, "rim_touch_med": 0.23, "ghost_axis_measured": 0.38}
    res = _decide(moving, EQUIPMENT, classical="设备")
    assert res.value == "运动" and res.extra["learned_value"] == "设备"
    # the echo without the axis, or a moderate echo, leaves the equipment call
    assert _decide({**moving, "ghost_axis_coh": 0.2}, EQUIPMENT, classical="设备").value == "设备"
    assert _decide({**moving, "echo_t": 4.5}, EQUIPMENT, classical="设备").value == "设备"
    assert _decide(moving, EQUIPMENT, {**art.DEFAULTS, "ct_echo_axis_coh": None}, classical="设备").value == "设备"
