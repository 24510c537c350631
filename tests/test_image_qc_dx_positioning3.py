"""Pelvis AP mirror asymmetry: the compared width comes from the wing rows of the pelvis mask.

Why: stray mask fragments below the wings widened the compared span on a view shifted sideways
until it reached the skin/air edge on one side, which has no mirror partner, and a straight
pelvis read as rotated (worn i9212 E00016)."""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc.radiograph_rotation import pelvis_mirror_asymmetry, pelvis_mirror_from_params


def _pelvis(turned: bool = False) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """A 104 x 128 view: air beyond column 93 on the right, two iliac
    wings (bright blobs) mirrored about column 50 in rows 25-55 (narrower on the right when
    ``turned``), and a stray mask fragment low on the right (rows 75-80, columns 96-100)."""
    rng = np.random.default_rng(5)
    h, w = 104, 128
    img = np.full((h, w), 1000.0)
    img[:, 93:] = 100.0  # air beyond the skin edge
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), bool)
    for cx, rx in ((32, 16), (68, 8 if turned else 16)):
        wing = ((xx - cx) / rx) ** 2 + ((yy - 40) / 14.0) ** 2 <= 1.0
        img[wing] += 400.0
        mask |= wing
    mask[70:90, 40:60] = True  # sacrum / pubis
    mask[75:80, 96:101] = True  # stray fragment by the skin edge
    img += rng.normal(0, 5, img.shape)
    return img, mask, (0, h, 0, w)


def test_wing_columns_ignore_a_stray_fragment_near_the_skin_edge():
    img, mask, box = _pelvis()
    whole = pelvis_mirror_asymmetry(img, mask, 3.36, box=box, wing_columns=False)
    wings = pelvis_mirror_asymmetry(img, mask, 3.36, box=box, wing_columns=True)
    assert whole is not None and wings is not None
    assert wings < 0.2
    assert whole > wings + 0.1


def test_a_turned_pelvis_still_reads_asymmetric():
    img, mask, box = _pelvis(turned=True)
    straight_img, straight_mask, _ = _pelvis()
    turned = pelvis_mirror_asymmetry(img, mask, 3.36, box=box)
    straight = pelvis_mirror_asymmetry(straight_img, straight_mask, 3.36, box=box)
    assert turned is not None and straight is not None
    assert turned > straight + 0.2


def test_params_switch_and_default():
    img, mask, box = _pelvis()
    p = {"band_mm": 8.0, "fine_px": 1.5, "rows": [0.0, 0.5], "search": 0.15, "edge_px": 2}
    assert pelvis_mirror_from_params(img, mask, 3.36, p, box) == pelvis_mirror_asymmetry(img, mask, 3.36, box=box)
    off = pelvis_mirror_from_params(img, mask, 3.36, dict(p, wing_columns=False), box)
    assert off == pelvis_mirror_asymmetry(img, mask, 3.36, box=box, wing_columns=False)
