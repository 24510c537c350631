"""MR artifact misses of worn i9212 (helper MRA, 2026-11-24 early morning).

* A fat-suppressed spin-echo series (STIR, ScanOptions FS) turns fat dark beside bright fluid: the
  suppressed orbit beside the vitreous reads as a susceptibility void with its pile-up crescent
  (i9212 E00072, E00283: clean combined head + lumbar exams read 设备 at 0.0145 / 0.0144). The
  crescent needs ``mr_void_crescent_fat_suppressed`` there.
* A ghosted axial T2 the background ghost measure read 运动 and the net 0.72 (i9212 E00026) was
  missed under the registered 0.8: an MR motion call both readings make needs
  ``model_confirmed_threshold.MR.motion``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pydicom

from radqc.pipelines.image_qc import artifact as art


def _ds(**kw: Any) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_stir_and_chemical_fat_saturation_are_fat_suppressed() -> None:
    assert art.mr_fat_suppressed(_ds(ScanningSequence=["SE", "IR"], InversionTime=155.2, ScanOptions="IR"))
    assert art.mr_fat_suppressed(_ds(ScanningSequence="SE", ScanOptions="FS"))
    assert art.mr_fat_suppressed(_ds(ScanningSequence="SE", ScanOptions=["PFP", "FS"]))


def test_flair_plain_spin_echo_and_epi_are_not() -> None:
    assert not art.mr_fat_suppressed(_ds(ScanningSequence=["SE", "IR"], InversionTime=2388.8, ScanOptions="IR"))
    assert not art.mr_fat_suppressed(_ds(ScanningSequence="SE", ScanOptions=""))
    assert not art.mr_fat_suppressed(_ds(ScanningSequence="EP", ScanOptions="FS"))  # DWI / ADC
    assert not art.mr_fat_suppressed(_ds(ScanningSequence=["SE", "IR"]))  # no inversion time: not STIR
    assert not art.mr_fat_suppressed(None)


def _void_series(crescent: float, fat_suppressed: bool) -> art.SeriesArtifact:
    feats = {"void_crescent_max": crescent, "void_max": 0.0, "fat_suppressed": 1.0 if fat_suppressed else 0.0}
    return art.SeriesArtifact("1.2.3", "MR", feats, {}, art.VALUE_OF["none"], None, None, None, None, None)


def test_the_file_holds_fat_suppressed_series_to_a_higher_crescent_limit() -> None:
    d = art.DEFAULTS
    assert d["mr_void_crescent_fat_suppressed"] is not None
    assert float(d["mr_void_crescent"]) < 0.0347 < float(d["mr_void_crescent_fat_suppressed"]) < 0.084
    assert 150 < float(d["mr_stir_max_ti_ms"]) < 2000


def test_a_stir_crescent_under_its_limit_reads_none_and_a_plain_one_equipment() -> None:
    p = dict(art.DEFAULTS)
    stir = _void_series(0.0145, True)
    art._mr_void_rule(stir, p)
    assert stir.value == art.VALUE_OF["none"]
    plain = _void_series(0.0145, False)
    art._mr_void_rule(plain, p)
    assert plain.value == art.VALUE_OF["equipment"] and plain.kind == "susceptibility_void"
    assert plain.limit == float(p["mr_void_crescent"])


def test_a_large_fat_suppressed_void_still_reads_equipment_and_null_switches_it_off() -> None:
    p = dict(art.DEFAULTS)
    big = _void_series(0.084, True)
    art._mr_void_rule(big, p)
    assert big.value == art.VALUE_OF["equipment"] and big.limit == float(p["mr_void_crescent_fat_suppressed"])
    off = _void_series(0.0145, True)
    art._mr_void_rule(off, {**p, "mr_void_crescent_fat_suppressed": None})
    assert off.value == art.VALUE_OF["equipment"]


class _Net:
    """A stand-in net with a fixed output and the registered MR threshold of 0.8."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = np.array(probs)

    def predict(self, modality: str, features: dict[str, float]) -> np.ndarray:
        return self.probs

    def threshold_for(self, modality: str) -> float:
        return 0.8


def _ghost_series(classical: str) -> art.SeriesArtifact:
    feats = {"ghost_q75": 0.40 if classical == "运动" else 0.05, "ghost_lag_med": 0.18, "void_crescent_max": 0.0,
             "void_max": 0.0, "fat_suppressed": 0.0}
    return art.SeriesArtifact("1.2.3", "MR", feats, {}, classical, None, None, None, None, None)


def test_the_file_sets_a_confirmed_mr_motion_threshold() -> None:
    v = art.confirmed_threshold(art.DEFAULTS, "MR", "motion")
    assert v is not None and 0.57 < v < 0.72
    assert art.confirmed_threshold(art.DEFAULTS, "MR", "equipment") is None


def test_a_ghost_both_readings_make_is_motion_below_the_registered_threshold() -> None:
    p = dict(art.DEFAULTS)
    res = art.decide_series(_ghost_series("运动"), p, _Net([0.28, 0.72, 0.0, 0.0]))
    assert res.value == "运动" and res.method == "learned"
    # the net alone (classical 无) at the same probability stays under its unconfirmed limit
    alone = art.decide_series(_ghost_series("无"), p, _Net([0.28, 0.72, 0.0, 0.0]))
    assert alone.value == "无"
    # a clean sagittal STIR of worn h9205 (E00032) read 0.57 with a background ghost: still 无
    clean = art.decide_series(_ghost_series("运动"), p, _Net([0.43, 0.57, 0.0, 0.0]))
    assert clean.value == "无"


def test_the_plane_comes_from_the_slice_normal() -> None:
    assert art.mr_slice_plane(_ds(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])) == "axial"
    assert art.mr_slice_plane(_ds(ImageOrientationPatient=[0, 1, 0, 0, 0, -1])) == "sagittal"
    assert art.mr_slice_plane(_ds(ImageOrientationPatient=[1, 0, 0, 0, 0, -1])) == "coronal"
    assert art.mr_slice_plane(_ds()) is None
    assert art.mr_header_features(None) == {"fat_suppressed": 0.0, "plane_axial": -1.0, "computed_map": 0.0}


def _bg_motion(lag: float, plane_axial: float, kind: str | None = "ghosting") -> art.SeriesArtifact:
    feats = {"ghost_q75": 0.48, "ghost_lag_med": lag, "void_crescent_max": 0.0, "void_max": 0.0,
             "fat_suppressed": 0.0, "plane_axial": plane_axial}
    return art.SeriesArtifact("1.2.3", "MR", feats, {"motion": 1.0}, art.VALUE_OF["motion"], kind, 0, None,
                              0.45, 0.2, method="learned")


def test_the_file_sets_the_replica_floor_between_clean_and_ghosted_sagittals() -> None:
    v = art.DEFAULTS["mr_nonaxial_ghost_min_lag"]
    assert v is not None and 0.115 < float(v) < 0.247


def test_a_sagittal_background_ghost_without_replicas_reads_none() -> None:
    p = dict(art.DEFAULTS)
    res = _bg_motion(0.068, 0.0)  # t8710 E00060: a clean sagittal post-contrast T1, net 运动 1.0
    art._mr_ghost_replica_support_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
    assert res.extra["dropped"]["rule"] == "mr_nonaxial_ghost_without_replicas"


def test_axial_unknown_plane_replicas_and_switched_off_keep_the_call() -> None:
    p = dict(art.DEFAULTS)
    for res in (_bg_motion(0.068, 1.0), _bg_motion(0.068, -1.0), _bg_motion(0.30, 0.0), _bg_motion(0.068, 0.0, "ghost_replicas")):
        art._mr_ghost_replica_support_rule(res, p)
        assert res.value == art.VALUE_OF["motion"]
    off = _bg_motion(0.068, 0.0)
    art._mr_ghost_replica_support_rule(off, {**p, "mr_nonaxial_ghost_min_lag": None})
    assert off.value == art.VALUE_OF["motion"]


def test_decide_series_drops_the_sagittal_call_and_the_replica_rule_still_decides() -> None:
    p = dict(art.DEFAULTS)
    feats = {"ghost_q75": 0.48, "ghost_lag_med": 0.068, "void_crescent_max": 0.0, "void_max": 0.0,
             "fat_suppressed": 0.0, "plane_axial": 0.0}
    res = art.decide_series(art.SeriesArtifact("1.2.3", "MR", dict(feats), {}, "运动", None, None, None, None, None),
                            p, _Net([0.0, 1.0, 0.0, 0.0]))
    assert res.value == "无"
    ghosted = art.decide_series(art.SeriesArtifact("1.2.3", "MR", {**feats, "ghost_lag_med": 0.30}, {}, "运动", None, None,
                                                   None, None, None), p, _Net([0.0, 1.0, 0.0, 0.0]))
    assert ghosted.value == "运动"
