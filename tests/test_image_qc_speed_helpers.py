"""Speed-only helpers of the image-QC path (issue #7) give the same values as the code they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc.measure_common import fill_holes
from radqc.pipelines.image_qc.radiograph import spine_line


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_fill_holes_equals_scipy(ndim: int) -> None:
    rng = np.random.default_rng(8450 + ndim)
    for _ in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 40, size=ndim))
        mask = rng.random(shape) < rng.random()
        if rng.random() < 0.5:
            mask = ndi.binary_dilation(mask)
        assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))


def test_fill_holes_fills_a_ring_not_an_open_cup() -> None:
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[3:6, 3:6] = False
    assert fill_holes(ring)[4, 4]
    cup = ring.copy()
    cup[2, 4] = False  # opened to the outside through the top
    cup[3, 4] = False
    assert not fill_holes(cup)[4, 4]
    assert fill_holes(np.ones((3, 3), bool)).all() and not fill_holes(np.zeros((3, 3), bool)).any()


def test_dx_native_features_match_dx_features() -> None:
    rng = np.random.default_rng(8451)
    img = rng.normal(1000.0, 40.0, (200, 180)).astype(np.float32)
    img[:, ::4] += 60.0  # grid lines
    img[:10] = 0.0  # collimated border
    full, _ = art.dx_features(img)
    native = art.dx_native_features(img)
    assert set(native) == set(art.NATIVE_KEYS)
    assert all(native[k] == full[k] for k in art.NATIVE_KEYS)
    assert native["grid_rows"] > 0.5


def test_spine_line_equals_per_row_means() -> None:
    rng = np.random.default_rng(8452)
    m = np.zeros((120, 90), bool)
    for r in range(10, 110):
        c = int(40 + 0.1 * r + rng.normal())
        m[r, c:c + int(rng.integers(0, 7))] = True
    rows = np.nonzero(m.sum(axis=1) >= 2)[0]
    cents = np.array([np.nonzero(m[r])[0].mean() for r in rows])
    a, b = np.polyfit(rows.astype(float), cents, 1, w=np.sqrt(m[rows].sum(axis=1).astype(float)))
    assert spine_line(m) == (float(a), float(b))
    assert abs(a - 0.1) < 0.05


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_binary_opening_and_closing_equal_scipy(iterations: int) -> None:
    from radqc.pipelines.image_qc.measure_common import binary_closing, binary_opening

    rng = np.random.default_rng(8453 + iterations)
    for _ in range(80):
        shape = tuple(int(s) for s in rng.integers(1, 40, size=2))
        mask = rng.random(shape) < rng.random()
        assert np.array_equal(binary_opening(mask, iterations), ndi.binary_opening(mask, iterations=iterations))
        assert np.array_equal(binary_closing(mask, iterations), ndi.binary_closing(mask, iterations=iterations))
    # an isolated pixel opens away; a one-pixel gap closes
    dot = np.zeros((7, 7), bool)
    dot[3, 3] = True
    assert not binary_opening(dot).any()
    bar = np.zeros((7, 9), bool)
    bar[2:5, 1:8] = True
    bar[:, 4] = False
    assert binary_closing(bar)[3, 4]
