"""MR artifact measures (helper MA, session 17): the susceptibility void inside all tissue, the
one-sided pile-up crescent, the noise gate of the tissue mask and the knee's ghost-replica limit."""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc import artifact as A
from radqc.pipelines.image_qc.measure_common import load_params


def _magnitude(sig: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    re = sig + rng.normal(0, sigma, sig.shape)
    im = rng.normal(0, sigma, sig.shape)
    return np.sqrt(re * re + im * im) * 1000.0


def _knee_slice(void: bool = True, inside_blob: bool = False) -> np.ndarray:
    """A field-filling limb (grey tissue 0.6, a bright fluid strip 1.0 that sets the 99.5th
    percentile) with a dark 'bone' (0.15) touching the field edge, and inside the tissue a void
    (0.03) with a 2-px pile-up crescent (1.8) on its +column side (the generator's geometry)."""
    n = 96
    yy, xx = np.mgrid[0:n, 0:n]
    sig = np.zeros((n, n))
    sig[:, 20:76] = 0.6
    sig[:, 24:27] = 1.0
    sig[:, 60:70] = 0.15  # dark marrow running off the field (fat-suppressed bone)
    if void:
        hole = (yy - 48) ** 2 + (xx - 42) ** 2 <= 25
        rim = np.zeros_like(hole)
        for w in (1, 2):
            rim |= np.roll(hole, w, axis=1)
        sig[hole] = 0.03
        sig[rim & ~hole] = 1.8
    if inside_blob:  # a dark region with a bright structure in its middle (no void beside it)
        region = (yy - 48) ** 2 + (xx - 42) ** 2 <= 64
        blob = (yy - 48) ** 2 + (xx - 42) ** 2 <= 4
        sig[region] = 0.03
        sig[blob] = 1.8
    return _magnitude(sig, 0.02)


def test_void_found_in_tissue_the_bright_object_leaves_out() -> None:
    img = _knee_slice()
    f = A.mr_slice_features(img, 0)
    assert f["void_crescent"] >= float(A.DEFAULTS["mr_void_crescent"])
    r0, c0, r1, c1 = f["void_r0"], f["void_c0"], f["void_r1"], f["void_c1"]
    assert r0 <= 48 <= r1 and c0 <= 42 <= c1
    clean = A.mr_slice_features(_knee_slice(void=False), 0)
    assert clean["void_crescent"] == 0.0


def test_bright_structure_inside_a_dark_region_is_no_crescent() -> None:
    img = _knee_slice(void=False, inside_blob=True)
    tissue = A.mr_tissue_mask(img)
    assert tissue is not None
    assert A.mr_crescent_void(img, tissue, 0)[0] == 0.0
    # the same dark region with the bright pixels on one side only is a void with its pile-up
    assert A.mr_crescent_void(_knee_slice(), tissue, 0)[0] > 0.0


def test_noise_slice_has_no_tissue_mask() -> None:
    rng = np.random.default_rng(3)
    noise = rng.exponential(1.0, (48, 48)) * 100.0
    assert A.mr_tissue_mask(noise) is None
    assert A.mr_tissue_mask(_knee_slice()) is not None


def test_knee_ghost_replica_limit_is_lower() -> None:
    knee = {**A.DEFAULTS, **(load_params("MR", "MR-KNEE").get("artifact") or {})}
    assert float(knee["mr_ghost_lag"]) < float(A.DEFAULTS["mr_ghost_lag"])

    def series(p: dict) -> str:
        res = A.SeriesArtifact("1.2", "MR", {"ghost_lag_med": 0.19}, {}, "无")
        A._mr_replica_rule(res, p)
        return res.value

    assert series(knee) == "运动"
    assert series(dict(A.DEFAULTS)) == "无"
