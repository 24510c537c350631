"""Radiograph artifact, second round of session 18 (DXR).

A learned radiograph 运动 that the classical vertical-detail spectrum also reads as motion is backed
twice, so the net may need only a ``model_confirmed_threshold`` DX motion entry (0.6, proposed; not
yet in artifact.yaml because tests/test_image_qc_artifact_confirmed.py pins "CT only") instead of its
registered threshold (worn i9210 E00041: a knee AP smeared 9.4 mm, net 0.79, ``vspec_rel`` -2.03). A net call
without that backing keeps the registered threshold, and an isotropic blur (no mid-band detail in
either direction) is still dropped by ``_dx_isotropic_blur_rule`` after the lower threshold."""

from __future__ import annotations

from typing import Any

import numpy as np

from radqc.pipelines.image_qc import artifact as art


class _Net:
    threshold = 0.85

    def __init__(self, motion: float) -> None:
        self.motion = motion

    def threshold_for(self, modality: str) -> float:
        return self.threshold

    def predict(self, modality: str, features: dict[str, Any]) -> np.ndarray:
        return np.array([1.0 - self.motion - 0.02, self.motion, 0.01, 0.01])


#: the proposed file setting: the CT entries as they are, plus DX motion 0.6
CONFIRMED = {"CT": {"motion": 0.6, "foreign_object": 0.6}, "DX": {"motion": 0.6}}


def _decide(vspec_rel: float, vspec_snr: float, motion: float, confirmed: Any = CONFIRMED) -> str:
    p: dict[str, Any] = {**art.DEFAULTS, "model_confirmed_threshold": confirmed}
    feats = {"vspec_snr": vspec_snr, "vspec_rel": vspec_rel, "grid_rows": 0.1, "fo_sat_n": 0.0, "fo_m15_lat": 0.0}
    cls, kind, scores, measured, limit = art.dx_classify(feats, p)
    res = art.SeriesArtifact("1.2.3", "DX", feats, scores, art.VALUE_OF[cls], kind, None, None, measured, limit)
    return art.decide_series(res, p, _Net(motion)).value


def test_the_setting_lowers_the_threshold_for_confirmed_dx_motion_only() -> None:
    p = {"model_confirmed_threshold": CONFIRMED}
    assert art.confirmed_threshold(p, "DX", "motion") == 0.6
    assert art.confirmed_threshold(p, "DX", "equipment") is None
    assert art.confirmed_threshold(p, "DX", "foreign_object") is None


def test_a_net_motion_backed_by_the_spectrum_reads_motion() -> None:
    # i9210 E00041: vspec_rel -2.03 (limit 1.9), vspec_snr 2.24, net 0.787
    assert _decide(-2.03, 2.24, 0.787) == art.VALUE_OF["motion"]
    # without a DX entry the registered 0.85 decides
    assert _decide(-2.03, 2.24, 0.787, {"CT": {"motion": 0.6}}) == art.VALUE_OF["none"]


def test_the_same_net_probability_without_the_spectrum_reads_none() -> None:
    assert _decide(-0.5, 2.24, 0.787) == art.VALUE_OF["none"]


def test_below_the_confirmed_threshold_reads_none() -> None:
    assert _decide(-2.03, 2.24, 0.45) == art.VALUE_OF["none"]


def test_an_isotropic_blur_is_still_dropped_after_the_lower_threshold() -> None:
    # i9208 E00004: a blurred pelvis AP, classical 运动 (vspec_rel -5.08), vspec_snr -1.44, net 0.49
    assert _decide(-5.08, -1.44, 0.7) == art.VALUE_OF["none"]
