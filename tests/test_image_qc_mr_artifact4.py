"""MR artifact misses of fresh i9216 (helper MRA3, 2026-11-24 late morning).

* A clean enhanced brain's ADC map read a crescent void of 0.0138 (i9216 E00320): a computed map
  carries no susceptibility pile-up, so it is not held to the crescent (``mr_void_skip_computed_map``).
* Ghosted lumbar sagittal series read replica peaks of 0.228 / 0.236 (i9216 E00156, t9120 E00019)
  under the 0.25 of every MR item; MR-LSPINE holds them to 0.22 while axial series keep 0.25."""

from __future__ import annotations

from pydicom.dataset import Dataset

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc.measure_common import load_params


def _series(**feats: float) -> art.SeriesArtifact:
    base = {"ghost_lag_med": 0.0, "ghost_q75": 0.0, "void_crescent_max": 0.0, "void_max": 0.0,
            "fat_suppressed": 0.0, "plane_axial": -1.0, "computed_map": 0.0}
    base.update(feats)
    return art.SeriesArtifact("1.2.3", "MR", base, {}, art.VALUE_OF["none"], None, None, None, None, None)


def _ds(image_type: list[str]) -> Dataset:
    ds = Dataset()
    ds.ImageType = image_type
    ds.ScanningSequence = "EP"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    return ds


def test_adc_map_is_a_computed_map_and_dwi_is_not() -> None:
    assert art.mr_computed_map(_ds(["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]))
    assert not art.mr_computed_map(_ds(["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]))
    assert art.mr_header_features(_ds(["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]))["computed_map"] == 1.0
    assert art.mr_header_features(None)["computed_map"] == 0.0


def test_crescent_on_a_computed_map_is_not_metal() -> None:
    p = dict(art.DEFAULTS)
    assert p["mr_void_skip_computed_map"] is True
    adc = _series(void_crescent_max=0.0138, void_crescent_inner_max=0.0138, plane_axial=1.0, computed_map=1.0)
    art._mr_void_rule(adc, p)
    assert adc.value == art.VALUE_OF["none"]
    dwi = _series(void_crescent_max=0.0138, void_crescent_inner_max=0.0138, plane_axial=1.0)
    art._mr_void_rule(dwi, p)
    assert dwi.value == art.VALUE_OF["equipment"]
    off = _series(void_crescent_max=0.0138, void_crescent_inner_max=0.0138, plane_axial=1.0, computed_map=1.0)
    art._mr_void_rule(off, {**p, "mr_void_skip_computed_map": False})
    assert off.value == art.VALUE_OF["equipment"]


def test_lumbar_sagittal_replicas_under_the_common_limit_are_motion() -> None:
    lumbar = {**art.DEFAULTS, **(load_params("MR", "MR-LSPINE").get("artifact") or {})}
    assert float(lumbar["mr_ghost_lag"]) < float(art.DEFAULTS["mr_ghost_lag"])
    sag = _series(ghost_lag_med=0.228, ghost_q75=0.25, plane_axial=0.0)
    art._mr_replica_rule(sag, lumbar)
    assert sag.value == art.VALUE_OF["motion"] and sag.kind == "ghost_replicas"
    brain = {**art.DEFAULTS, **(load_params("MR", "MR-BRAIN").get("artifact") or {})}
    head = _series(ghost_lag_med=0.228, ghost_q75=0.25, plane_axial=0.0)
    art._mr_replica_rule(head, brain)
    assert head.value == art.VALUE_OF["none"]
    # an axial lumbar series keeps the axial floor (clean axial lumbar T2 read up to 0.224)
    ax = _series(ghost_lag_med=0.228, plane_axial=1.0)
    art._mr_replica_rule(ax, lumbar)
    assert ax.value == art.VALUE_OF["none"]
