"""CT noise: patient size from the AP localizer where the axial series gives none (CTN4, 2026-11-24):
ct_noise.localizer_width and the model's localizer_size term (ct.yaml noise.difference)."""

from __future__ import annotations

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct_noise
from radqc.pipelines.image_qc.measure_common import load_params


def _topogram(half_width_mm: float, col_mm: float = 10.0, n_rows: int = 20, n_cols: int = 48,
              arms: bool = True, text_row: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """AP projection of an elliptic trunk (path length ~ sqrt(1 - (x / a)^2)), scaled to 3000 at its
    peak, with arms apart from it by air; rows run down in z from 0 mm by ``col_mm``."""
    x = (np.arange(n_cols) - (n_cols - 1) / 2) * col_mm
    row = 3000.0 * np.sqrt(np.clip(1 - (x / half_width_mm) ** 2, 0, None))
    if arms:
        for side in (-1, 1):
            row[np.abs(x - side * (half_width_mm + 40.0)) <= 15.0] = 180.0
    img = np.tile(row, (n_rows, 1))
    if text_row is not None:
        img[text_row, 1:8:2] = 4095.0  # burned-in patient text at full white, over the air beside the body
    z = -np.arange(n_rows) * col_mm
    return img, z


def test_width_tracks_the_trunk_and_leaves_the_arms_out() -> None:
    widths = []
    for a in (130.0, 160.0, 190.0):
        img, z = _topogram(a)
        got = ct_noise.localizer_width(img, z, 10.0, -100.0, 0.0)
        assert got is not None
        # the 25 %-of-peak edge of an ellipse lies at 0.97 a: arms (180 of 3000) never count
        assert got == pytest.approx(2 * 0.968 * a, rel=0.06)
        widths.append(got)
    assert widths[0] < widths[1] < widths[2]


def test_rows_outside_the_range_and_text_rows_are_skipped() -> None:
    img, z = _topogram(160.0, text_row=5)
    assert ct_noise.localizer_width(img, z, 10.0, 500.0, 600.0) is None  # no row in the series' z range
    only_text = ct_noise.localizer_width(img, z, 10.0, -50.0, -50.0, saturated=4095.0)
    assert only_text is None
    # without the saturation guard the text row is read (its peak is a text pixel): a wrong width
    misread = ct_noise.localizer_width(img, z, 10.0, -50.0, -50.0)
    assert misread is not None and misread < 200.0
    clean = ct_noise.localizer_width(img, z, 10.0, -100.0, 0.0, saturated=4095.0)
    assert clean == pytest.approx(2 * 0.968 * 160.0, rel=0.06)


def test_localizer_term_scales_the_expected_level() -> None:
    p = load_params("CT", None)["noise"]
    block = {**p["expected"], **p["difference"], "enabled": True}
    model = ct_noise.NoiseModel(block, load_params("CT", None).get("dose"))
    ref = block["localizer_size"]["width_ref_mm"]["abdomen"]
    assert model.localizer_term("soft", "abdomen", ref) == pytest.approx(1.0)
    small = model.localizer_term("soft", "abdomen", 0.85 * ref)
    large = model.localizer_term("soft", "abdomen", 1.1 * ref)
    assert small is not None and large is not None and small < 1.0 < large
    # no size law for a bone kernel or an unlisted region; a misread width gives no term
    assert model.localizer_term("bone", "abdomen", 0.85 * ref) is None
    assert model.localizer_term("soft", "knee", 120.0) is None
    assert model.localizer_term("soft", "abdomen", 0.4 * ref) is None
    # the model without the block (noise.expected) has no localizer term at all
    plain = ct_noise.NoiseModel(p["expected"], load_params("CT", None).get("dose"))
    assert plain.localizer_term("soft", "abdomen", 0.85 * ref) is None
