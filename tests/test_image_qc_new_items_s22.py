"""QC of the two items added in session 22 (helper NEWI): DX.TSPINE.APLAT rotation and
MR.CSPINE.PLAIN artifact limits.

* A rotated thoracic AP is read from the chest's two signs on the analyser's masks (heart shadow vs
  the vertebral midline, spine vs the medial clavicle ends; radiograph_rotation.heart_clavicle_score).
* Cervical sagittal series are held to a lower replica limit (ghosted 0.193 / 0.229 missed at 0.25),
  axial series keep 0.25, and an axial cervical series needs a crescent of 0.02 for 设备."""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc import radiograph as rg
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.radiograph_rotation import clavicle_spine_offset, heart_clavicle_score


def _masks(shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 60 x 60 frontal view: a vertical spine at column 30 + shift, clavicles whose medial ends
    lie at columns 26 and 34 (midpoint 30)."""
    spine = np.zeros((60, 60), bool)
    spine[5:55, 28 + shift:33 + shift] = True
    cr = np.zeros((60, 60), bool)
    cr[10:13, 10:27] = True     # image left clavicle (patient right): medial end at column 26
    cl = np.zeros((60, 60), bool)
    cl[10:13, 34:50] = True     # medial end at column 34
    return cr, cl, spine


def test_clavicle_spine_offset_follows_the_spine() -> None:
    cr, cl, spine = _masks(0)
    assert abs(clavicle_spine_offset(cr, cl, spine, 2.0)) < 1.0
    cr, cl, spine = _masks(-4)
    assert clavicle_spine_offset(cr, cl, spine, 2.0) < -6.0
    assert clavicle_spine_offset(None, cl, spine, 2.0) is None
    assert clavicle_spine_offset(cr, cl, spine, None) is None


def test_heart_clavicle_score_sums_both_signs_and_drops_implausible_ones() -> None:
    cfg = rg.load_params("DX-TSPINE-APLAT")["positioning"]["heart_clavicle"]
    h, c = cfg["heart"], cfg["clavicle"]
    assert heart_clavicle_score(h["baseline"], c["baseline"], cfg) == 0.0
    # a turn moves the heart away from the spine and the spine toward one clavicle: both add up
    both = heart_clavicle_score(h["baseline"] + 2 * h["spread"], c["baseline"] - 3 * c["spread"], cfg)
    assert abs(both - 5.0) < 0.01
    # a clavicle reading beyond max_plausible (a wrong mask, t9301 E00041-like 21.6 mm) is left out
    assert heart_clavicle_score(h["baseline"], c["baseline"] + 30.0, cfg) == 0.0
    assert heart_clavicle_score(None, None, cfg) is None


def test_thoracic_ap_has_a_rotation_limit_other_spines_do_not() -> None:
    t = rg.load_params("DX-TSPINE-APLAT")["positioning"]
    assert t["max_heart_clavicle_score"] is not None
    assert float(t["max_heart_clavicle_score"]) > 4.36    # the highest straight view of t9301/s9302
    for code in ("DX-LSPINE-APLAT", "DX-CSPINE-APLAT", "DX-CHEST-PA"):
        assert rg.load_params(code)["positioning"].get("max_heart_clavicle_score") is None


def _series(**feats: float) -> art.SeriesArtifact:
    base = {"ghost_lag_med": 0.0, "ghost_q75": 0.0, "void_crescent_max": 0.0, "void_max": 0.0,
            "fat_suppressed": 0.0, "plane_axial": -1.0, "computed_map": 0.0}
    base.update(feats)
    return art.SeriesArtifact("1.2.3", "MR", base, {}, art.VALUE_OF["none"], None, None, None, None, None)


def test_cervical_sagittal_replicas_under_the_common_limit_are_motion() -> None:
    cs = {**art.DEFAULTS, **(load_params("MR", "MR-CSPINE").get("artifact") or {})}
    sag = _series(ghost_lag_med=0.193, ghost_q75=0.206, plane_axial=0.0)     # 9300 E00000
    art._mr_replica_rule(sag, cs)
    assert sag.value == art.VALUE_OF["motion"]
    clean = _series(ghost_lag_med=0.087, ghost_q75=0.167, plane_axial=0.0)   # highest clean sagittal
    art._mr_replica_rule(clean, cs)
    assert clean.value == art.VALUE_OF["none"]
    ax = _series(ghost_lag_med=0.204, plane_axial=1.0)                        # clean axial, kept at 0.25
    art._mr_replica_rule(ax, cs)
    assert ax.value == art.VALUE_OF["none"]


def test_cervical_axial_crescent_needs_the_axial_limit() -> None:
    cs = {**art.DEFAULTS, **(load_params("MR", "MR-CSPINE").get("artifact") or {})}
    ax = _series(void_crescent_max=0.0179, void_crescent_inner_max=0.0179, void_max=0.0177, plane_axial=1.0)
    art._mr_void_rule(ax, cs)
    assert ax.value == art.VALUE_OF["none"]                                   # 9300 E00032, clean
    ax2 = _series(void_crescent_max=0.0179, void_crescent_inner_max=0.0179, void_max=0.0177, plane_axial=1.0)
    art._mr_void_rule(ax2, dict(art.DEFAULTS))
    assert ax2.value == art.VALUE_OF["equipment"]                             # the common limit calls it
