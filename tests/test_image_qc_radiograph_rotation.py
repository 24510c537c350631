"""Pelvis AP rotation from the pixels: the iliac wings' mirror asymmetry (radiograph_rotation)."""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc.radiograph import load_params
from radqc.pipelines.image_qc.radiograph_rotation import pelvis_mirror_asymmetry, pelvis_mirror_from_params

LIMIT = load_params("DX-PELVIS-AP")["positioning"]["max_pelvis_mirror_asymmetry"]


def _pelvis(left_w: float = 18.0, right_w: float = 18.0, shift: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 120 x 160 frontal 'pelvis': a soft-tissue dome, a bright sacrum in the middle and two
    iliac wings (bright rings, half-widths left_w / right_w px) either side; ``shift`` moves the
    whole anatomy sideways (a centring error). Returns (image, pelvis mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:160].astype(float)
    cx = 80.0 + shift
    img = 1000.0 * np.clip(1.0 - ((xx - cx) / 75.0) ** 2, 0, None)
    img += 300.0 * (np.abs(xx - cx) < 6) * (yy > 20) * (yy < 80)
    mask = np.zeros(img.shape, bool)
    for side, w in ((-1, left_w), (1, right_w)):
        r = np.sqrt(((xx - (cx + side * 45)) / w) ** 2 + ((yy - 45) / 22.0) ** 2)
        img += 400.0 * ((r > 0.8) & (r < 1.0)) + 150.0 * (r <= 0.8)
        mask |= r < 1.0
    mask |= (np.abs(xx - cx) < 30) & (yy > 50) & (yy < 100)
    img += rng.normal(0, 15.0, img.shape)
    return img, mask


def test_limit_is_set_for_pelvis_ap_only():
    assert LIMIT is not None and 0.3 < float(LIMIT) < 0.8
    assert load_params("DX-HIP")["positioning"]["max_pelvis_mirror_asymmetry"] is None


def test_straight_pelvis_reads_symmetric_even_when_off_centre():
    for shift in (0, -12, 12):
        img, mask = _pelvis(shift=shift)
        val = pelvis_mirror_asymmetry(img, mask, 2.0)
        assert val is not None and val < float(LIMIT), (shift, val)


def test_turned_pelvis_reads_asymmetric_either_way():
    # one wing face-on (wider), the other edge-on (narrower): a turn to either side
    for lw, rw in ((24.0, 14.0), (14.0, 24.0)):
        img, mask = _pelvis(lw, rw)
        val = pelvis_mirror_asymmetry(img, mask, 2.0)
        assert val is not None and val > float(LIMIT), (lw, rw, val)
    straight = pelvis_mirror_asymmetry(*_pelvis(), 2.0)
    turned = pelvis_mirror_asymmetry(*_pelvis(24.0, 14.0), 2.0)
    assert turned > straight + 0.2


def test_intensity_scale_and_inversion_do_not_matter():
    img, mask = _pelvis(22.0, 15.0)
    a = pelvis_mirror_asymmetry(img, mask, 2.0)
    assert abs(pelvis_mirror_asymmetry(4095.0 - 0.5 * img, mask, 2.0) - a) < 1e-3


def test_no_mask_no_measure():
    img, mask = _pelvis()
    assert pelvis_mirror_asymmetry(img, None, 2.0) is None
    assert pelvis_mirror_asymmetry(img, np.zeros_like(mask), 2.0) is None
    assert pelvis_mirror_asymmetry(img, mask[:60], 2.0) is None  # shape mismatch
    p = load_params("DX-PELVIS-AP")["positioning"]["pelvis_mirror"]
    assert pelvis_mirror_from_params(img, mask, 2.0, p) == pelvis_mirror_asymmetry(img, mask, 2.0)


def test_positioning_flags_the_pelvis_item_only_above_the_limit():
    """The measure reaches the positioning verdict through the outline measures of _positioning."""
    from typing import Any

    import radqc.pipelines.image_qc.radiograph as rq
    from radqc.pipelines.image_qc.types import Evidence

    analysis = type("A", (), {"masks": {}})()

    def judged(code: str, value: float) -> tuple[str, dict[str, Any]]:
        v = rq._View("1.3", "AP", None)
        p = rq._merge(rq.load_params(code), {"positioning": {"check_marker": False}})
        rq._positioning(v, analysis, {}, 1.0, p, False,
                        lambda *a, **k: Evidence(series_uid="1.3", instance_index=0, measured=a[1], limit=a[2]),
                        None, {"pelvis_mirror_asymmetry": value})
        return v.values["positioning"], v.details["positioning"]

    assert judged("DX-PELVIS-AP", float(LIMIT) + 0.05)[0] == "不标准"
    value, details = judged("DX-PELVIS-AP", float(LIMIT) - 0.05)
    assert value == "标准" and details["pelvis_mirror_asymmetry"] == float(LIMIT) - 0.05
    assert judged("DX-HIP", 0.9)[0] == "标准"


def test_shutter_edge_outside_the_field_is_not_asymmetry():
    """Outside the collimated field (a shutter with a bright strip under it, which the pelvis mask
    reaches into) nothing has a mirror partner; inside the field the straight pelvis stays symmetric."""
    img, mask = _pelvis()
    img[:, :14] = 0.0  # shutter over the left edge; the field is columns 14..159
    img[20:70, 3:9] = 3000.0
    mask[20:100, 4:20] = True
    box = (0, 120, 14, 160)
    with_box = pelvis_mirror_asymmetry(img, mask, 2.0, box=box)
    assert with_box is not None and with_box < float(LIMIT)
    assert with_box < pelvis_mirror_asymmetry(img, mask, 2.0)
