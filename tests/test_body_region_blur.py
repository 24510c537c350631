"""Training augmentation of the body-region scorer: the on-the-fly Gaussian blur.

Blurred CTs (the generator's blur defect: 1.5 px or more, ~5-9 mm on coarse grids) were placed
toward mid-body by a model trained without blur; the augmentation must actually soften edges,
keep the HU level, and be off when asked."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radqc.models.body_region import data as D  # noqa: E402
from radqc.models.body_region.train import BLUR_MM, BLUR_P, _augment, _gaussian_blur  # noqa: E402


def _square(b: int = 16) -> torch.Tensor:
    x = torch.full((b, 1, D.GRID, D.GRID), -1000.0)
    x[:, :, 30:60, 30:60] = 40.0
    return x


def _edge_step(x: torch.Tensor) -> np.ndarray:
    """Per slice: the largest horizontal step (HU per pixel) across the square's left edge,
    on the mean of its middle rows (averages the noise out)."""
    prof = x[:, 0, 38:52, 24:37].mean(dim=1)
    return (prof[:, 1:] - prof[:, :-1]).abs().amax(dim=1).numpy()


def test_blur_softens_edges_and_keeps_levels() -> None:
    x = _square(4)
    y = _gaussian_blur(x, np.random.default_rng(1), p=1.0, sigma_mm=(5.0, 5.0))  # 1 model pixel
    assert np.all(_edge_step(y) < 0.6 * _edge_step(x))
    # flat regions keep their HU (normalised kernel, replicated edges), the input is untouched
    assert float(y[0, 0, 45, 45]) == pytest.approx(40.0, abs=0.5)
    assert float(y[0, 0, 2, 2]) == pytest.approx(-1000.0, abs=0.5)
    assert float(x[0, 0, 45, 30]) == 40.0
    # a wider sigma blurs more
    z = _gaussian_blur(x, np.random.default_rng(1), p=1.0, sigma_mm=(10.0, 10.0))
    assert np.all(_edge_step(z) < _edge_step(y))


def test_blur_probability_zero_is_identity() -> None:
    x = _square(8)
    assert torch.equal(_gaussian_blur(x, np.random.default_rng(0), p=0.0), x)
    # blur off draws nothing from the generator: the default training stream (and so the
    # registered weights) stays reproducible
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    _augment(_square(4), a, blur=0.0)
    _augment(_square(4), b)
    assert a.random() == b.random()


def test_augment_blurs_a_share_of_slices() -> None:
    assert 0.0 <= BLUR_P < 1.0 and BLUR_MM[1] / D.PIXEL_MM >= 1.5  # reaches coarse-grid blur
    sharp = _edge_step(_augment(_square(32), np.random.default_rng(3), blur=0.0))
    soft = _edge_step(_augment(_square(32), np.random.default_rng(3), blur=1.0))
    # without blur every slice keeps a near-full 1040 HU step (gain ±3 %); with blur most drop
    assert np.all(sharp > 900.0)
    assert np.median(soft) < 0.8 * np.median(sharp)
