"""MR artifact misses of fresh 9214 / h9213 on knees (helper MRA2, 2026-11-24 morning).

* The knee's lowered ghost-replica limit (MR-KNEE ``mr_ghost_lag`` 0.17) was chosen on sagittal
  series; a clean blurred or noisy axial knee T2 reads 0.17-0.19 (i9214 E00196, t8960 E00006) and
  was called 运动. Axial series keep ``mr_ghost_lag_axial`` (0.25).
* A knee implant's crescent void is a small fraction of a knee that fills the field (h9213 E00083:
  0.0108, worn i9208 E00218: 0.0100, under the 0.013 of every MR item) while no clean knee reads any
  crescent: MR-KNEE holds the crescent to its own ``mr_void_crescent``."""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc.measure_common import load_params


def _series(**feats: float) -> art.SeriesArtifact:
    base = {"ghost_lag_med": 0.0, "ghost_q75": 0.0, "void_crescent_max": 0.0, "void_max": 0.0,
            "fat_suppressed": 0.0, "plane_axial": -1.0}
    base.update(feats)
    return art.SeriesArtifact("1.2.3", "MR", base, {}, art.VALUE_OF["none"], None, None, None, None, None)


def _knee() -> dict:
    return {**art.DEFAULTS, **(load_params("MR", "MR-KNEE").get("artifact") or {})}


def test_the_files_keep_axial_series_at_the_general_replica_limit() -> None:
    p = _knee()
    assert float(p["mr_ghost_lag"]) < 0.172 < float(p["mr_ghost_lag_axial"]) <= 0.25


def test_a_clean_axial_knee_under_the_axial_floor_reads_none() -> None:
    s = _series(ghost_lag_med=0.19, plane_axial=1.0)
    art._mr_replica_rule(s, _knee())
    assert s.value == art.VALUE_OF["none"]


def test_a_sagittal_knee_at_the_same_replica_reading_reads_motion() -> None:
    s = _series(ghost_lag_med=0.19, plane_axial=0.0, fat_suppressed=1.0)  # the PD FS sagittal
    art._mr_replica_rule(s, _knee())
    assert s.value == art.VALUE_OF["motion"] and s.kind == "ghost_replicas"


def test_an_axial_series_above_the_floor_still_reads_motion() -> None:
    s = _series(ghost_lag_med=0.30, plane_axial=1.0)
    art._mr_replica_rule(s, _knee())
    assert s.value == art.VALUE_OF["motion"]


def test_without_the_axial_floor_the_item_limit_applies_to_axial_series() -> None:
    p = {**_knee(), "mr_ghost_lag_axial": None}
    s = _series(ghost_lag_med=0.19, plane_axial=1.0)
    art._mr_replica_rule(s, p)
    assert s.value == art.VALUE_OF["motion"]


def test_the_knee_holds_the_crescent_void_to_a_lower_limit_than_other_items() -> None:
    knee = _knee()
    assert 0.0019 < float(knee["mr_void_crescent"]) < 0.0079 < float(art.DEFAULTS["mr_void_crescent"])
    brain = {**art.DEFAULTS, **(load_params("MR", "MR-BRAIN").get("artifact") or {})}
    assert float(brain["mr_void_crescent"]) == float(art.DEFAULTS["mr_void_crescent"])


def test_a_knee_crescent_of_0_0108_reads_equipment_and_a_head_one_none() -> None:
    knee = _series(void_crescent_max=0.0108, plane_axial=1.0)
    art._mr_void_rule(knee, _knee())
    assert knee.value == art.VALUE_OF["equipment"] and knee.kind == "susceptibility_void"
    head = _series(void_crescent_max=0.0108, plane_axial=1.0)
    art._mr_void_rule(head, dict(art.DEFAULTS))
    assert head.value == art.VALUE_OF["none"]


def test_an_axial_ghost_both_classical_readings_back_reads_motion_against_the_net() -> None:
    # h9213 E00023: ghosted axial T1, ghost_q75 0.44, ghost_lag_med 0.24 (under the replica limit), net 0.05
    s = _series(ghost_q75=0.44, ghost_lag_med=0.24, plane_axial=1.0)
    art._mr_axial_ghost_rule(s, dict(art.DEFAULTS))
    assert s.value == art.VALUE_OF["motion"] and s.kind == "ghosting"


def test_the_axial_ghost_rule_needs_both_readings_and_an_axial_plane() -> None:
    p = dict(art.DEFAULTS)
    for feats in ({"ghost_q75": 0.259, "ghost_lag_med": 0.24, "plane_axial": 1.0},   # clean t8711 E00143's q75
                  {"ghost_q75": 0.44, "ghost_lag_med": 0.136, "plane_axial": 1.0},
                  {"ghost_q75": 0.44, "ghost_lag_med": 0.24, "plane_axial": 0.0},    # sagittal: trunk in the band
                  {"ghost_q75": 0.44, "ghost_lag_med": 0.24, "plane_axial": -1.0}):
        s = _series(**feats)
        art._mr_axial_ghost_rule(s, p)
        assert s.value == art.VALUE_OF["none"], feats
    off = _series(ghost_q75=0.44, ghost_lag_med=0.24, plane_axial=1.0)
    art._mr_axial_ghost_rule(off, {**p, "mr_axial_ghost_q75": None})
    assert off.value == art.VALUE_OF["none"]


def test_an_equipment_reading_is_left_to_the_void_rules() -> None:
    s = _series(ghost_q75=0.44, ghost_lag_med=0.24, plane_axial=1.0)
    s.value = art.VALUE_OF["equipment"]
    art._mr_axial_ghost_rule(s, dict(art.DEFAULTS))
    assert s.value == art.VALUE_OF["equipment"]


def test_a_crescent_on_an_end_slice_alone_does_not_make_metal() -> None:
    # t8961 E00104: the last (lateral) slice of a clean sagittal T2 head, 0.045 there, 0 inside
    p = dict(art.DEFAULTS)
    assert p["mr_void_crescent_inner"]
    edge = _series(void_crescent_max=0.045, void_crescent_inner_max=0.0, plane_axial=0.0)
    art._mr_void_rule(edge, p)
    assert edge.value == art.VALUE_OF["none"]
    inner = _series(void_crescent_max=0.045, void_crescent_inner_max=0.045, plane_axial=0.0)
    art._mr_void_rule(inner, p)
    assert inner.value == art.VALUE_OF["equipment"]
    every = _series(void_crescent_max=0.045, void_crescent_inner_max=0.0, plane_axial=0.0)
    art._mr_void_rule(every, {**p, "mr_void_crescent_inner": False})
    assert every.value == art.VALUE_OF["equipment"]


def _slice(void: bool, rng: np.random.Generator) -> np.ndarray:
    """A round body with (optionally) a dark hole and its bright pile-up beside it along the columns."""
    a = np.zeros((64, 64))
    yy, xx = np.mgrid[:64, :64]
    a[(yy - 32) ** 2 + (xx - 32) ** 2 < 24 ** 2] = 100.0
    if void:
        a[28:36, 26:32] = 2.0
        a[28:36, 32:34] = 250.0
    return a + rng.normal(0, 1, a.shape) + 5


def test_the_series_features_leave_the_end_slices_out_of_the_inner_crescent() -> None:
    rng = np.random.default_rng(0)
    assert art.mr_slice_features(_slice(True, rng), 0)["void_crescent"] > 0.013
    end, _ = art.mr_series_features([_slice(True, rng)] + [_slice(False, rng) for _ in range(3)], 0)
    assert end["void_crescent_max"] > 0.013 and end["void_crescent_inner_max"] == 0.0
    mid, _ = art.mr_series_features([_slice(False, rng), _slice(True, rng), _slice(False, rng), _slice(False, rng)], 0)
    assert mid["void_crescent_inner_max"] == mid["void_crescent_max"] > 0.013
    two, _ = art.mr_series_features([_slice(True, rng), _slice(False, rng)], 0)  # too few slices to leave any out
    assert two["void_crescent_inner_max"] == two["void_crescent_max"] > 0.013


def test_a_knee_t1_sagittal_needs_a_background_ghost_beside_a_weak_replica_reading() -> None:
    knee = _knee()
    assert float(knee["mr_ghost_lag"]) < 0.177 < float(knee["mr_ghost_lag_unsuppressed"])
    clean = _series(ghost_lag_med=0.177, ghost_q75=0.0126, plane_axial=0.0)  # t8962 E00129
    art._mr_replica_rule(clean, knee)
    assert clean.value == art.VALUE_OF["none"]
    ghosted = _series(ghost_lag_med=0.211, ghost_q75=0.051, plane_axial=0.0)  # 8420 E00074
    art._mr_replica_rule(ghosted, knee)
    assert ghosted.value == art.VALUE_OF["motion"]
    fs = _series(ghost_lag_med=0.19, ghost_q75=0.0, plane_axial=0.0, fat_suppressed=1.0)  # PD FS: the item limit
    art._mr_replica_rule(fs, knee)
    assert fs.value == art.VALUE_OF["motion"]
    strong = _series(ghost_lag_med=0.25, ghost_q75=0.0, plane_axial=0.0)
    art._mr_replica_rule(strong, knee)
    assert strong.value == art.VALUE_OF["motion"]
    head = _series(ghost_lag_med=0.177, ghost_q75=0.0, plane_axial=0.0)  # other items: off (their limit is 0.25)
    art._mr_replica_rule(head, dict(art.DEFAULTS))
    assert head.value == art.VALUE_OF["none"] and art.DEFAULTS["mr_ghost_lag_unsuppressed"] is None
