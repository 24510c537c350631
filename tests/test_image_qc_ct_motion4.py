"""CT motion (运动), session 20: the motion axis read as a step over a run of slices
(``ct_motion.series_axis_step``) with the weighted echo behind it (``_ct_axis_step_motion_rule``;
qc_rules/image_qc/artifact.yaml ``ct_axis_step_*``): blurred motions whose echo and net readings
stay under their own limits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc import ct_motion
from tests.test_image_qc_artifact_unconfirmed import Fixed

NONE = [0.97, 0.01, 0.01, 0.01]

#: a blurred series' readings with every other motion measure under its limit
SOFT = {"n_slices": 24.0, "echo_t": 2.3, "echo_step": 0.09, "echo_wt": 4.0, "echo_wstep": 0.22, "echo_run": 0.3,
        "echo_first": 3.0, "echo_wrun": 0.3, "echo_wfirst": 3.0, "ghost_axis_coh": 0.2, "rim_touch_med": 0.0,
        "ghost_axis_measured": 1.0, "ghost_q50": 1.8}


def _per(n: int, run: range, amp_in: float, amp_out: float = 0.3, axis: float = 0.7, jitter: float = 0.05,
         seed: int = 0) -> list[dict[str, float]]:
    """Per-slice band harmonics: ``amp_in`` along ``axis`` (phase, rad) on ``run``, a body's own
    harmonic ``amp_out`` at a drifting phase elsewhere, with slice-to-slice noise."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if k in run:
            a, ph = amp_in + rng.normal(0, jitter), axis + rng.normal(0, 0.1)
        else:
            a, ph = amp_out + rng.normal(0, jitter), 2.5 + 0.05 * k + rng.normal(0, 0.1)
        out.append({"ghost_axis": max(0.0, a), "ghost_axis_phi": ph, "ghost_axis_ok": 1.0})
    return out


def _decide(features: dict[str, float], per: list[dict[str, float]], p: dict[str, Any] | None = None) -> art.SeriesArtifact:
    feats = {**SOFT, **features, "n_slices": float(len(per))}
    res = art.SeriesArtifact("1.2.3", "CT", feats, {}, "无", extra={"_per": per, "_idx": list(range(len(per))), "_slices": []})
    return art.decide_series(res, art.DEFAULTS if p is None else p, Fixed(NONE))


def test_the_file_ships_the_axis_step_keys() -> None:
    d = art.DEFAULTS
    assert d["ct_axis_step_t"] is not None and d["ct_axis_step_px"] is not None
    assert d["ct_axis_step_min_slices"] >= 6
    # the weighted echo needed beside the axis is below the echo's own limit (else it adds nothing)
    assert d["ct_axis_step_echo_wt"] < d["ct_echo_wt"]


def test_the_axis_step_finds_the_moving_run() -> None:
    per = _per(24, range(8, 16), amp_in=1.3)
    a = ct_motion.series_axis_step(per)
    assert a["ghost_axis_t"] > 5.0 and 1.0 < a["ghost_axis_step"] < 1.3 + 0.3 + 0.2  # the body harmonic points elsewhere
    assert 6 <= a["ghost_axis_first"] <= 10 and abs(a["ghost_axis_run"] - 8 / 24) < 0.1
    # the same amplitude on every slice (a body's own shape) is no step
    flat = [{"ghost_axis": 1.3, "ghost_axis_phi": 0.7, "ghost_axis_ok": 1.0} for _ in range(24)]
    assert ct_motion.series_axis_step(flat)["ghost_axis_t"] < 1.0
    # the harmonic changing slowly along the scan (anatomy) reads lower than the run
    slow = [{"ghost_axis": 0.3 + 0.05 * k, "ghost_axis_phi": 0.7, "ghost_axis_ok": 1.0} for k in range(24)]
    assert ct_motion.series_axis_step(slow)["ghost_axis_t"] < a["ghost_axis_t"] / 2
    # slices whose axis could not be measured are left out: too few, nothing read
    few = [{**x, "ghost_axis_ok": 0.0} if k % 5 else x for k, x in enumerate(per)]
    assert ct_motion.series_axis_step(few) == {"ghost_axis_step": 0.0, "ghost_axis_t": 0.0, "ghost_axis_run": 0.0, "ghost_axis_first": -1.0}
    assert ct_motion.series_axis_step([])["ghost_axis_t"] == 0.0


def test_the_axis_step_reads_an_axis_and_its_reverse_alike() -> None:
    """The harmonic's phase is twice the axis angle: a run whose phase wraps at +-pi is one axis."""
    per = _per(24, range(4, 12), amp_in=1.2, axis=math.pi - 0.05)
    wrapped = [{**x, "ghost_axis_phi": (x["ghost_axis_phi"] + math.pi) % (2 * math.pi) - math.pi} for x in per]
    assert abs(ct_motion.series_axis_step(per)["ghost_axis_t"] - ct_motion.series_axis_step(wrapped)["ghost_axis_t"]) < 1e-6


def test_a_blurred_series_with_the_axis_step_and_a_weighted_echo_reads_motion() -> None:
    per = _per(24, range(8, 16), amp_in=1.3)
    res = _decide({}, per)
    assert res.value == "运动" and res.extra["learned_value"] == "无"
    assert res.limit == art.DEFAULTS["ct_axis_step_t"] and res.extra["axis_step"]["ghost_axis_t"] >= res.limit
    assert res.slice_index is not None and 8 <= res.slice_index < 16  # the evidence lies in the run


def test_the_axis_alone_or_the_weak_echo_alone_reads_none() -> None:
    per = _per(24, range(8, 16), amp_in=1.3)
    # a clean blurred body's outline changing along the scan: the axis without the echo
    assert _decide({"echo_wt": 2.3}, per).value == "无"
    # the weighted echo without a step of the axis
    assert _decide({}, _per(24, range(8, 16), amp_in=0.3)).value == "无"
    # a step too small in px, too few measured slices, or the keys off
    # (the spread floor already bounds t by the step: a 0.2-px step reads under 2)
    small = [{"ghost_axis": (0.45 if 8 <= k < 16 else 0.25) + 0.01 * (k % 3), "ghost_axis_phi": 0.7, "ghost_axis_ok": 1.0} for k in range(24)]
    assert ct_motion.series_axis_step(small)["ghost_axis_t"] < 2.0 and _decide({}, small).value == "无"
    assert _decide({}, per, {**art.DEFAULTS, "ct_axis_step_px": 2.0}).value == "无"
    assert _decide({}, _per(7, range(2, 5), amp_in=1.3)).value == "无"
    assert _decide({}, per, {**art.DEFAULTS, "ct_axis_step_echo_wt": None}).value == "无"
    assert _decide({}, per, {**art.DEFAULTS, "ct_axis_step_t": None}).value == "无"
