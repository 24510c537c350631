"""Radiograph motion smear (伪影 运动): the directional spectrum the DX artifact check reads.

The generator smears a moving radiograph with a short box along the columns before the detector
noise (datasets/synthetic/imaging/radiograph.py ``_motion_blur``: 3-4 px). These tests pin what
``directional_spectrum`` must keep doing: the smeared image reads well beyond the limit
``dx_motion_spectrum`` and the same image unsmeared does not.

Known limit (helper M, 2026-11-23): anatomy that is smoother along the columns at fine scales
only (a texture stretched 1.6x vertically) reads like a smear (vspec_rel about -3): the mid-band
loss is the same, so this measure alone cannot overrule the learned net's 无."""
import numpy as np
from scipy import ndimage as ndi

from pipelines.image_qc import artifact as art


def _texture(seed: int, shape=(192, 192), stretch=(1.0, 1.0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.normal(0, 1, shape), (0.9 * stretch[0], 0.9 * stretch[1]))
    return 1800.0 + 600.0 * base / base.std()


def _smear(img: np.ndarray, length: int = 3) -> np.ndarray:
    return sum(np.roll(img, k - length // 2, axis=0) for k in range(length)) / length


def _noisy(img: np.ndarray, seed: int) -> np.ndarray:
    return img + np.random.default_rng(seed + 100).normal(0, 25.0, img.shape)


def test_vertical_smear_reads_beyond_the_limit_and_clean_does_not():
    limit = float(art.DEFAULTS["dx_motion_spectrum"])
    for seed in range(3):
        clean = _texture(seed)
        moved = art.directional_spectrum(_noisy(_smear(clean), seed))["vspec_rel"]
        still = art.directional_spectrum(_noisy(clean, seed))["vspec_rel"]
        assert -moved > limit, (seed, moved)
        assert -still < limit / 2, (seed, still)

