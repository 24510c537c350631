"""The learned artifact net needs a higher probability when no classical measure backs its call
(qc_rules/image_qc/artifact.yaml ``model_unconfirmed_threshold``): its unsupported calls were
mostly false alarms on validation, its supported ones stay at the registered threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from radqc.pipelines.image_qc import artifact as art
from tests.test_image_qc_artifact import _ct, _dx


class Fixed:
    """A stand-in net: the same probabilities (none, motion, equipment, foreign object) for every series."""

    threshold = 0.5

    def __init__(self, probs: list[float]) -> None:
        self.probs = np.array(probs)

    def predict(self, modality: str, features: dict[str, Any]) -> np.ndarray:
        return self.probs


def test_the_file_sets_a_margin_per_modality() -> None:
    assert art.unconfirmed_threshold(art.DEFAULTS, "CT", "motion") == 0.9
    assert art.unconfirmed_threshold(art.DEFAULTS, "MR", "equipment") == 0.9
    assert art.unconfirmed_threshold(art.DEFAULTS, "DX", "foreign_object") == 0.95
    assert art.unconfirmed_threshold(art.DEFAULTS, "DX", "motion") is None  # radiograph motion: registered limit
    assert art.unconfirmed_threshold({"model_unconfirmed_threshold": 0.7}, "US", "motion") == 0.7
    assert art.unconfirmed_threshold({"model_unconfirmed_threshold": None}, "CT", "motion") is None


def test_an_unconfirmed_call_needs_the_margin() -> None:
    clean = _ct("clean")
    p = {**art.DEFAULTS, "model_unconfirmed_threshold": {"CT": 0.9}}
    low = art.analyse_series(clean, "CT", p, Fixed([0.15, 0.85, 0.0, 0.0]))
    assert low.extra["classical_value"] == "无" and low.value == "无" and low.kind is None
    high = art.analyse_series(clean, "CT", p, Fixed([0.05, 0.95, 0.0, 0.0]))
    assert high.value == "运动" and high.method == "learned"
    off = art.analyse_series(clean, "CT", {**p, "model_unconfirmed_threshold": None}, Fixed([0.15, 0.85, 0.0, 0.0]))
    assert off.value == "运动"  # without the margin the registered 0.5 decides


def test_a_call_a_classical_measure_backs_keeps_the_registered_threshold() -> None:
    p = {**art.DEFAULTS, "model_unconfirmed_threshold": {"CT": 0.99}}
    res = art.analyse_series(_ct("motion"), "CT", p, Fixed([0.15, 0.85, 0.0, 0.0]))
    assert res.extra["classical_value"] == "运动" and res.value == "运动"


@pytest.mark.parametrize("probs, value", [([0.1, 0.9, 0.0, 0.0], "运动"), ([0.1, 0.0, 0.0, 0.9], "无")])
def test_radiograph_margin_is_per_class(probs: list[float], value: str) -> None:
    """The file's DX margin covers equipment and foreign objects, not motion (the motion CNN off: it
    reads the detail-free smooth test image as smeared; tests/test_dx_motion_net.py)."""
    res = art.analyse_series(_dx(False), "DX", {**art.DEFAULTS, "dx_motion_net": False}, Fixed(probs))
    assert res.extra["classical_value"] == "无" and res.value == value


def test_mr_crescent_constants_come_from_the_file() -> None:
    d = art.DEFAULTS
    assert (art.MR_VOID_DARK, art.MR_CRESCENT_LEVEL, art.MR_CRESCENT_PX) == (d["mr_void_dark"], d["mr_crescent_level"], d["mr_crescent_px"])


def _read(value: str, **features: float) -> art.SeriesArtifact:
    return art.SeriesArtifact("1.2.3.4", "CT", dict(features), {"motion": 0.0, "equipment": 0.4, "foreign_object": 0.0}, value,
                              method="learned")


def test_truncation_on_the_median_slice_overrules_a_learned_none() -> None:
    p = art.DEFAULTS
    cut = _read("无", rim_touch_med=0.26, rim_excess_med=31.2)
    art._ct_truncation_rule(cut, p)
    assert cut.value == "设备" and cut.kind == "truncation" and cut.limit == p["ct_trunc_excess_med"]
    assert cut.extra["learned_value"] == "无" and cut.method == "classical"
    # a large clean patient: the rim touches the circle but is no brighter than the tissue inside it
    big = _read("无", rim_touch_med=0.35, rim_excess_med=28.2)
    art._ct_truncation_rule(big, p)
    assert big.value == "无"
    # a rim on a few slices only (median touch small) is not truncation
    few = _read("无", rim_touch_med=0.05, rim_excess_med=120.0)
    art._ct_truncation_rule(few, p)
    assert few.value == "无"
    # a stricter reading stays; the limit is data (null: off)
    moving = _read("运动", rim_touch_med=0.3, rim_excess_med=80.0)
    art._ct_truncation_rule(moving, p)
    assert moving.value == "运动"
    off = _read("无", rim_touch_med=0.3, rim_excess_med=80.0)
    art._ct_truncation_rule(off, {**p, "ct_trunc_excess_med": None})
    assert off.value == "无"
