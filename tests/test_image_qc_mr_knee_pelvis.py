"""Knee MR and pelvis AP misses of worn i9208 (helper MX, 2026-11-24 small hours).

Radiograph motion needs a direction: an isotropic blur removes the mid-band detail on both axes,
and the motion ratio of two noise-level residues then reads as missing vertical detail (i9208
E00094, a blurred pelvis AP the net called 运动 at 0.99). ``_dx_isotropic_blur_rule`` turns a
运动 call whose stronger direction has no mid-band detail above the noise (``vspec_snr`` below
``dx_motion_min_snr``) into 无."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from radqc.pipelines.image_qc import artifact as art


def _scene(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.zeros((192, 192))
    for _ in range(60):
        r, c = rng.integers(0, 180, 2)
        h, w = rng.integers(4, 40, 2)
        base[r:r + h, c:c + w] += rng.uniform(100, 400)
    return base, rng.normal(0, 25, base.shape)


def _motion_series(snr: float) -> art.SeriesArtifact:
    feats = {"vspec_snr": snr, "vspec_rel": -4.0, "grid_rows": 0.1, "fo_sat_n": 0.0}
    return art.SeriesArtifact("1.2.3", "DX", feats, {"motion": 0.99}, art.VALUE_OF["motion"], "motion_blur",
                              0, None, 4.0, 1.9, method="learned")


def test_the_file_sets_the_limit_between_blur_and_motion() -> None:
    limit = art.DEFAULTS["dx_motion_min_snr"]
    assert limit is not None and -2.0 <= float(limit) <= -0.3


def test_blur_loses_mid_detail_on_both_axes_and_a_smear_keeps_one() -> None:
    base, noise = _scene()
    blurred = (ndi.gaussian_filter(base, 2.0) + noise).astype(np.float32)
    smeared = (sum(np.roll(base, k - 3, axis=0) for k in range(7)) / 7 + noise).astype(np.float32)
    limit = float(art.DEFAULTS["dx_motion_min_snr"])
    b, m = art.directional_spectrum(blurred), art.directional_spectrum(smeared)
    assert b["vspec_snr"] < limit < m["vspec_snr"]
    assert m["vspec_rel"] < -float(art.DEFAULTS["dx_motion_spectrum"])  # the smear still reads as motion


def test_a_motion_call_without_mid_detail_reads_none() -> None:
    p: dict[str, Any] = dict(art.DEFAULTS)
    res = _motion_series(-2.5)
    art._dx_isotropic_blur_rule(res, p)
    assert res.value == art.VALUE_OF["none"] and res.kind is None
    assert res.extra["dropped"]["rule"] == "isotropic_blur"


def test_a_motion_call_with_one_sharp_direction_stays() -> None:
    p: dict[str, Any] = dict(art.DEFAULTS)
    res = _motion_series(0.3)
    art._dx_isotropic_blur_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]


def test_the_rule_is_off_when_the_limit_is_null() -> None:
    p: dict[str, Any] = {**art.DEFAULTS, "dx_motion_min_snr": None}
    res = _motion_series(-5.0)
    art._dx_isotropic_blur_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]


def test_decide_series_applies_it_to_a_learned_call() -> None:
    class Net:
        threshold = 0.5

        def predict(self, modality: str, features: dict[str, Any]) -> np.ndarray:
            return np.array([0.01, 0.99, 0.0, 0.0])

    p: dict[str, Any] = dict(art.DEFAULTS)
    for snr, want in ((-2.5, "none"), (0.5, "motion")):
        feats = {"vspec_snr": snr, "vspec_rel": -4.0, "grid_rows": 0.1, "fo_sat_n": 0.0, "fo_m15_lat": 0.0}
        cls, kind, scores, measured, limit = art.dx_classify(feats, p)
        res = art.SeriesArtifact("1.2.3", "DX", feats, scores, art.VALUE_OF[cls], kind, None, None, measured, limit)
        assert art.decide_series(res, p, Net()).value == art.VALUE_OF[want]


def _mr_series(value: str, method: str, crescent: float, void: float) -> art.SeriesArtifact:
    feats = {"void_crescent_max": crescent, "void_max": void, "ghost_lag_med": 0.05, "ghost_q75": 0.25}
    return art.SeriesArtifact("1.2.4", "MR", feats, {"equipment": 0.82}, art.VALUE_OF[value], "metal", 0, None,
                              None, None, method=method)


def test_a_learned_mr_equipment_call_without_a_void_reads_none() -> None:
    p: dict[str, Any] = dict(art.DEFAULTS)
    assert p["mr_equipment_needs_void"] is True
    res = _mr_series("equipment", "learned", 0.0, 0.0028)
    art._mr_equipment_void_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
    assert res.extra["dropped"]["rule"] == "mr_equipment_without_void"


def test_a_learned_mr_equipment_call_with_a_void_stays() -> None:
    p: dict[str, Any] = dict(art.DEFAULTS)
    for crescent, void in ((0.006, 0.0), (0.0, float(p["mr_void_px_frac"]))):
        res = _mr_series("equipment", "learned", crescent, void)
        art._mr_equipment_void_rule(res, p)
        assert res.value == art.VALUE_OF["equipment"]


def test_the_void_rule_leaves_classical_calls_and_can_be_switched_off() -> None:
    res = _mr_series("equipment", "classical", 0.0, 0.0)
    art._mr_equipment_void_rule(res, dict(art.DEFAULTS))
    assert res.value == art.VALUE_OF["equipment"]
    res = _mr_series("equipment", "learned", 0.0, 0.0)
    art._mr_equipment_void_rule(res, {**art.DEFAULTS, "mr_equipment_needs_void": False})
    assert res.value == art.VALUE_OF["equipment"]


def test_decide_series_drops_the_net_equipment_call_without_a_void() -> None:
    class Net:
        threshold = 0.5

        def threshold_for(self, modality: str) -> float:
            return 0.8

        def predict(self, modality: str, features: dict[str, Any]) -> np.ndarray:
            return np.array([0.17, 0.0, 0.83, 0.0])

    p: dict[str, Any] = {**art.DEFAULTS, "mr_ghost_lag": None}
    feats = {"ghost_q75": 0.25, "void_max": 0.0028, "void_crescent_max": 0.0, "ghost_lag_med": 0.07}
    cls, kind, scores, k, measured, limit = art.mr_classify(feats, [{"ghost": 0.25, "void_frac": 0.0}], p)
    assert cls == "motion"  # the classical reading differs, so the net's own threshold applies
    res = art.SeriesArtifact("1.2.4", "MR", feats, scores, art.VALUE_OF[cls], kind, None, None, measured, limit)
    assert art.decide_series(res, p, Net()).value == art.VALUE_OF["none"]


def _fake_sequences(monkeypatch: Any, series: list[tuple[str, str]], parts: set[str]) -> Any:
    from radqc.pipelines.image_qc import mr

    monkeypatch.setattr(mr, "_image_series", lambda exam: list(series))
    monkeypatch.setattr(mr, "label_of", lambda s, key: s[0])
    monkeypatch.setattr(mr, "_plane", lambda s: s[1])
    monkeypatch.setattr(mr, "_ordered_parts", lambda exam: set(parts))
    return mr


HEAD_LUMBAR = [("T1W", "axial"), ("T2W", "axial"), ("DWI", "axial"), ("ADC", "axial"), ("T2W", "sagittal"),
               ("T1W", "sagittal"), ("STIR", "sagittal")]


def test_a_combined_order_needs_the_other_parts_required_sequences(monkeypatch: Any) -> None:
    """i9208 E00284: head + lumbar ordered, scored as MR-LSPINE, the head's axial FLAIR missing."""
    from radqc.pipelines.image_qc.measure_common import load_params

    mr = _fake_sequences(monkeypatch, HEAD_LUMBAR, {"颅脑", "腰椎"})
    res = mr._sequences(object(), load_params("MR", "MR-LSPINE"))
    assert res.value == "不完整"
    assert [(m["sequence"], m["plane"]) for m in res.details["missing"]] == [("FLAIR", "axial")]
    assert set(res.details["parts"]) == {"MR-LSPINE", "MR-BRAIN"}


def test_a_combined_order_with_every_sequence_is_complete(monkeypatch: Any) -> None:
    from radqc.pipelines.image_qc.measure_common import load_params

    mr = _fake_sequences(monkeypatch, HEAD_LUMBAR + [("FLAIR", "axial")], {"颅脑", "腰椎"})
    assert mr._sequences(object(), load_params("MR", "MR-LSPINE")).value == "完整"


def test_a_lumbar_order_alone_is_not_held_to_the_head_set(monkeypatch: Any) -> None:
    from radqc.pipelines.image_qc.measure_common import load_params

    mr = _fake_sequences(monkeypatch, HEAD_LUMBAR, {"腰椎"})
    res = mr._sequences(object(), load_params("MR", "MR-LSPINE"))
    assert res.value == "完整" and "parts" not in res.details


def test_a_motion_call_the_spectral_ratio_does_not_back_is_left_to_the_net() -> None:
    """Only the misleading ratio is vetoed: a smooth view whose ratio reads no motion keeps the net's
    call (the documented test radiograph: snr -1.9, ratio +4.6) unless no mid-band detail is left at
    all (below ``dx_motion_no_detail_snr``, session 21: then nothing can show a one-axis smear)."""
    p: dict[str, Any] = dict(art.DEFAULTS)
    res = _motion_series(-1.9)
    res.features["vspec_rel"] = 4.6
    art._dx_isotropic_blur_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    res = _motion_series(float(p["dx_motion_no_detail_snr"]) - 0.5)
    res.features["vspec_rel"] = 4.6
    art._dx_isotropic_blur_rule(res, p)
    assert res.value == art.VALUE_OF["none"] and res.extra["dropped"]["rule"] == "no_detail"
