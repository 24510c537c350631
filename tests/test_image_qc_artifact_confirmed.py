"""The learned artifact net may be less sure when the classical measure names the same class
(qc_rules/image_qc/artifact.yaml ``model_confirmed_threshold``): on validation the CT series the
net read at 0.6-0.8 for the class the classical rule also gave were blurred motions and metal
foreign objects, no clean series. A class the classical rule does not name keeps the registered
threshold, and the margin never raises the threshold."""

from __future__ import annotations

import pytest

from radqc.pipelines.image_qc import artifact as art
from tests.test_image_qc_artifact import _ct, _dx
from tests.test_image_qc_artifact_unconfirmed import Fixed


class Registered(Fixed):
    """A stand-in net with a registered threshold of 0.8 (the CT limit of the real registry entry)."""

    threshold = 0.8


def test_the_file_sets_confirmed_thresholds_for_ct_and_dx_motion() -> None:
    v = art.confirmed_threshold(art.DEFAULTS, "CT", "motion")
    assert v is not None and 0.5 <= v < 0.8
    assert art.confirmed_threshold(art.DEFAULTS, "CT", "equipment") is None  # truncation readings: no
    assert art.confirmed_threshold(art.DEFAULTS, "DX", "motion") == 0.6
    assert art.confirmed_threshold(art.DEFAULTS, "DX", "foreign_object") is None
    assert art.confirmed_threshold(art.DEFAULTS, "MR", "equipment") is None
    assert art.confirmed_threshold({"model_confirmed_threshold": {"CT": {"motion": 0.55}}}, "CT", "motion") == 0.55
    assert art.confirmed_threshold({"model_confirmed_threshold": {"CT": {"motion": 0.55}}}, "CT", "equipment") is None
    assert art.confirmed_threshold({"model_confirmed_threshold": None}, "CT", "motion") is None


def test_a_confirmed_call_passes_below_the_registered_threshold() -> None:
    # the motion-axis rescue off (ct_ghost_axis_motion, tests/test_image_qc_ct_motion.py): the margin alone
    # (and the echo on 8-15 slices off: this 12-slice motion series reads echo t 25, tests/test_image_qc_ct_motion2.py)
    p = {**art.DEFAULTS, "model_confirmed_threshold": {"CT": 0.6}, "ct_ghost_axis_motion": None, "ct_echo_short_min_slices": None, "ct_axis_step_t": None}  # and the axis step (session 20)
    res = art.analyse_series(_ct("motion"), "CT", p, Registered([0.28, 0.7, 0.02, 0.0]))
    assert res.extra["classical_value"] == "运动" and res.value == "运动" and res.method == "learned"
    # without the margin the registered 0.8 decides
    off = art.analyse_series(_ct("motion"), "CT", {**p, "model_confirmed_threshold": None}, Registered([0.28, 0.7, 0.02, 0.0]))
    assert off.value == "无"
    # below the confirmed threshold too: none
    weak = art.analyse_series(_ct("motion"), "CT", p, Registered([0.45, 0.55, 0.0, 0.0]))
    assert weak.value == "无"


@pytest.mark.parametrize("probs", [[0.28, 0.02, 0.7, 0.0], [0.28, 0.0, 0.02, 0.7]])
def test_a_class_the_classical_rule_does_not_name_keeps_the_registered_threshold(probs: list[float]) -> None:
    p = {**art.DEFAULTS, "model_confirmed_threshold": {"CT": 0.6}, "ct_echo_short_min_slices": None, "ct_axis_step_t": None}  # the echo on 12 slices and the axis step off
    res = art.analyse_series(_ct("motion"), "CT", p, Registered(probs))
    assert res.extra["classical_value"] == "运动" and res.value == "无"


def test_clean_series_are_untouched() -> None:
    """A classical 无 keeps the unconfirmed margin: the confirmed threshold cannot lower it."""
    p = {**art.DEFAULTS, "model_confirmed_threshold": {"CT": 0.6}}
    res = art.analyse_series(_ct("clean"), "CT", p, Registered([0.2, 0.8, 0.0, 0.0]))
    assert res.extra["classical_value"] == "无" and res.value == "无"


def test_the_margin_never_raises_the_registered_threshold() -> None:
    p = {**art.DEFAULTS, "model_confirmed_threshold": {"CT": 0.95}}
    res = art.analyse_series(_ct("motion"), "CT", p, Registered([0.15, 0.85, 0.0, 0.0]))
    assert res.value == "运动"


def test_radiographs_keep_their_threshold() -> None:
    # (the motion CNN off: it reads the detail-free smooth test image as smeared; tests/test_dx_motion_net.py)
    res = art.analyse_series(_dx(False), "DX", {**art.DEFAULTS, "model_confirmed_threshold": {"CT": 0.5}, "dx_motion_net": False},
                             Registered([0.4, 0.6, 0.0, 0.0]))
    assert res.value == "无"  # the CT margin does not reach a radiograph read at 0.6 < 0.8


def _learned_fo(metal_px: float) -> art.SeriesArtifact:
    import math

    return art.SeriesArtifact("1.2.3.4", "CT", {"metal_px_max": math.log1p(metal_px)}, {"motion": 0.0, "equipment": 0.0, "foreign_object": 0.9},
                              "异物", "foreign_object", method="learned")


def test_a_learned_foreign_object_without_metal_reads_none() -> None:
    p = art.DEFAULTS
    assert p["ct_fo_min_metal_px"] is not None
    bare = _learned_fo(0.0)
    art._ct_fo_metal_rule(bare, p)
    assert bare.value == "无" and bare.kind is None and bare.extra["learned_value"] == "异物"
    assert bare.extra["dropped"]["kind"] == "foreign_object_without_metal"
    # two metal pixels (the generator's smallest skin objects at 128 px): kept
    small = _learned_fo(2.0)
    art._ct_fo_metal_rule(small, p)
    assert small.value == "异物"
    # off (null) keeps the net's call
    off = _learned_fo(0.0)
    art._ct_fo_metal_rule(off, {**p, "ct_fo_min_metal_px": None})
    assert off.value == "异物"


def test_the_metal_rule_runs_in_the_ct_decision() -> None:
    """Through decide_series: a clean series the net reads 异物 without metal ends 无."""
    res = art.analyse_series(_ct("clean"), "CT", art.DEFAULTS, Registered([0.02, 0.0, 0.0, 0.98]))
    assert res.value == "无"
    kept = art.analyse_series(_ct("foreign"), "CT", art.DEFAULTS, Registered([0.02, 0.0, 0.0, 0.98]))
    assert kept.value == "异物"


def test_a_body_touching_the_field_circle_gets_no_confirmed_margin() -> None:
    """The classical measures read the field edge there (a truncated, blurred body reads 运动)."""
    p = {**art.DEFAULTS, "model_confirmed_threshold": {"CT": 0.6}, "ct_echo_short_min_slices": None, "ct_axis_step_t": None}  # the echo on 12 slices and the axis step off
    assert p["ct_confirmed_rim_touch_med"] is not None
    touching = art.SeriesArtifact("1.2.3.4", "CT", {"rim_touch_med": 0.24}, {}, "运动")
    clear = art.SeriesArtifact("1.2.3.4", "CT", {"rim_touch_med": 0.0}, {}, "运动")
    assert not art._confirmable(touching, p) and art._confirmable(clear, p)
    assert art._confirmable(touching, {**p, "ct_confirmed_rim_touch_med": None})
    assert art._confirmable(art.SeriesArtifact("1.2.3.4", "MR", {"rim_touch_med": 0.5}, {}, "运动"), p)
    # through the decision: the motion series' features say touching -> the registered 0.8 decides
    res = art.measure_series(_ct("motion"), "CT", p)
    assert res.value == "运动"
    res.features["rim_touch_med"] = 0.3
    out = art.decide_series(res, p, Registered([0.28, 0.7, 0.02, 0.0]))
    assert out.value == "无"


def _soft(contrast: float, q50: float = 2.7, motion: float = 0.6, touch: float = 0.0, value: str = "无") -> art.SeriesArtifact:
    return art.SeriesArtifact("1.2.3.4", "CT", {"ghost_contrast": contrast, "ghost_q50": q50, "rim_touch_med": touch},
                              {"motion": motion, "equipment": 0.02, "foreign_object": 0.02}, value, method="learned")


def test_motion_under_a_blurring_kernel() -> None:
    """Every edge soft (q50 2.7 px), some slices wider still, the net ranking motion first: 运动.

    The rule ships off (``ct_soft_motion_prob: null``); the test switches it on at its documented 0.5.
    """
    p = {**art.DEFAULTS, "ct_soft_motion_prob": 0.5}
    hit = _soft(0.46)
    art._ct_soft_motion_rule(hit, p)
    assert hit.value == "运动" and hit.kind == "ghosting" and hit.limit == p["ct_soft_motion_contrast"]
    assert hit.extra["learned_value"] == "无"
    for kw in ({"contrast": 0.2}, {"contrast": 0.46, "q50": 0.5}, {"contrast": 0.46, "motion": 0.4},
               {"contrast": 0.46, "touch": 0.25}):
        miss = _soft(**kw)  # type: ignore[arg-type]
        art._ct_soft_motion_rule(miss, p)
        assert miss.value == "无", kw
    stays = _soft(0.46, value="设备")  # only a 无 reading is changed
    art._ct_soft_motion_rule(stays, p)
    assert stays.value == "设备"
    off = _soft(0.46)
    art._ct_soft_motion_rule(off, {**p, "ct_soft_motion_prob": None})
    assert off.value == "无"
