"""Radiograph foreign objects (helper DXA5, session 22): ECG electrodes on a tightly collimated chest
are counted as steel (the blob-size cap), and the net's own 异物 without any saturated blob reads 无."""

from __future__ import annotations

from typing import Any

import numpy as np

from radqc.pipelines.image_qc import artifact as art


def _field(discs: int, radius: int = 5, big: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 143x163 chest field (i9218 E00641's collimated field at 256 px) with ``discs`` steel discs
    of ``radius`` px (an 18 mm ECG electrode is ~80 px there, 0.0034 of the field) and, with
    ``big``, a 24x24 px bright patch at the same level (a large dense region, not a compact object)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:143, :163]
    img = 1500 + 700 * np.exp(-(((yy - 70) / 60) ** 2 + ((xx - 80) / 50) ** 2)) + 250 * np.sin(yy / 8.0)
    img = img + rng.normal(0, 25, img.shape)
    centres = [(40, 40), (40, 120), (100, 45), (100, 118), (70, 80)]
    for r, c in centres[:discs]:
        disc = (yy - r) ** 2 + (xx - c) ** 2 <= radius ** 2
        img[disc] = 3900 + rng.normal(0, 25, int(disc.sum()))
    if big:
        img[60:84, 68:92] = 3900 + rng.normal(0, 25, (24, 24))
    zone = np.zeros(img.shape, bool)
    zone[11:-11, 13:-13] = True
    return img.astype(np.float32), zone


def test_electrode_sized_discs_on_a_tight_field_are_counted() -> None:
    img, zone = _field(4)
    # the field of a 256x256 image: the cap is 0.003 of 0.6 of the image (118 px)
    n, box = art.dx_saturated_objects(img, zone, art.DEFAULTS, 256 * 256)
    assert n == 4 and box is not None
    # the field alone (0.003 of it, 70 px here) drops every 81-px electrode
    assert art.dx_saturated_objects(img, zone, art.DEFAULTS)[0] == 0
    assert art.dx_saturated_objects(img, zone, {**art.DEFAULTS, "dx_sat_max_image_share": None}, 256 * 256)[0] == 0
    # a field that fills its image keeps the field's own cap
    assert art.dx_saturated_objects(img, zone, art.DEFAULTS, img.size)[0] == 0


def test_a_large_dense_patch_is_still_not_an_object() -> None:
    img, zone = _field(0, big=True)
    n, _ = art.dx_saturated_objects(img, zone, art.DEFAULTS, 256 * 256)
    assert n == 0


def _learned(fo_sat_n: float, classical: str = "无") -> Any:
    res = art.SeriesArtifact("1.2", "DX", {"fo_sat_n": fo_sat_n}, {"foreign_object": 0.98}, "异物", "foreign_object",
                             method="learned")
    res.extra["classical_value"] = classical
    return res


def test_a_net_foreign_object_without_steel_reads_none() -> None:
    # worn i9218 E00329 PA: a blurred clean chest, net 异物 0.98, no saturated blob
    res = _learned(0.0)
    art._dx_object_rule(res, art.DEFAULTS)
    assert res.value == "无" and res.extra["dropped"]["rule"] == "dx_net_object_without_steel"
    kept = _learned(1.0)
    art._dx_object_rule(kept, art.DEFAULTS)
    assert kept.value == "异物"
    confirmed = _learned(0.0, classical="异物")
    art._dx_object_rule(confirmed, art.DEFAULTS)
    assert confirmed.value == "异物"
    off = _learned(0.0)
    art._dx_object_rule(off, {**art.DEFAULTS, "dx_net_object_min_sat": None})
    assert off.value == "异物"
