"""Radiograph positioning measures of session 17 (DP): the spine's outline read over the vertebra
mask's rows, the lumbar posterior elements against the bodies' pixel edges, and the inspiration
from the lung's height in rib spacings where the rib count cannot be used."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from radqc.pipelines.image_qc.radiograph import inspiration_by_height, load_params
from radqc.pipelines.image_qc.radiograph_rotation import outline_rows, posterior_element_offset

INSP = load_params("DX-CHEST-PA")["positioning"]["inspiration_height"]


# ---------------------------------------------------------------- outline rows


def test_outline_rows_follow_the_vertebra_mask_inside_the_field():
    mask = np.zeros((100, 60), bool)
    mask[30:70, 25:35] = True
    assert outline_rows((10, 90, 0, 60), mask) == (30, 70)
    # the part of the column outside the field does not count
    assert outline_rows((40, 90, 0, 60), mask) == (40, 70)


def test_outline_rows_fall_back_to_the_field():
    assert outline_rows((10, 90, 0, 60), None) == (10, 90)
    mask = np.zeros((100, 60), bool)
    mask[50:52, 25:35] = True  # two rows: too few to be a column
    assert outline_rows((10, 90, 0, 60), mask) == (10, 90)


def test_cervical_spine_reads_outline_over_the_column():
    p = load_params("DX-CSPINE-APLAT")["positioning"]
    assert p["spine_outline"]["structure"] == "vertebrae_cervical"
    assert load_params("DX-LSPINE-APLAT")["positioning"]["spine_outline"].get("structure") is None


# ---------------------------------------------------------------- lumbar posterior elements


def _lumbar(spinous_shift_px: float = 0.0, mask_shift: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 120 x 100 frontal 'lumbar spine': soft tissue, vertebral bodies (rounded profile with a
    bright cortex at columns 35-65) and a small bright spinous process at the middle +
    ``spinous_shift_px``; the mask is the body, ``mask_shift`` px off (the analyser's coarse edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:100].astype(float)
    img = 800.0 * np.clip(1.0 - ((xx - 50) / 60.0) ** 2, 0, None)
    body = (xx >= 35) & (xx <= 65) & ((yy % 20) < 16)
    img += body * (300.0 * np.sqrt(np.clip(1 - ((xx - 50) / 15.5) ** 2, 0, None)) + 150.0)
    img += 250.0 * ((np.abs(xx - (50 + spinous_shift_px)) <= 1.5) & ((yy % 20) > 1) & ((yy % 20) < 14))
    img += rng.normal(0, 8.0, img.shape)
    mask = np.zeros(img.shape, bool)
    mask[5:115, 35 + mask_shift:66 + mask_shift] = True
    return img, mask


def test_posterior_offset_centred_on_a_straight_spine_even_with_a_shifted_mask():
    for ms in (0, -3, 3):
        img, mask = _lumbar(0.0, ms)
        off, n = posterior_element_offset(img, mask, 2.0, (0, 120, 0, 100))
        assert off is not None and n >= 5
        assert abs(off) <= 2.0, (ms, off)


def test_posterior_offset_follows_the_spinous_process():
    img, mask = _lumbar(5.0, 2)
    off, _ = posterior_element_offset(img, mask, 2.0, (0, 120, 0, 100))
    assert off is not None and 7.0 <= off <= 13.0
    img, mask = _lumbar(-5.0, -2)
    off, _ = posterior_element_offset(img, mask, 2.0, (0, 120, 0, 100))
    assert off is not None and -13.0 <= off <= -7.0


def test_posterior_offset_none_without_a_column():
    img, _ = _lumbar()
    assert posterior_element_offset(img, None, 2.0) == (None, 0)
    assert posterior_element_offset(img, np.zeros(img.shape, bool), 2.0)[0] is None


def test_lumbar_limit_is_set():
    p = load_params("DX-LSPINE-APLAT")["positioning"]
    assert p["max_posterior_offset_mm"] is not None and p["posterior_offset"]["structure"] == "vertebrae_lumbar"
    assert load_params("DX-PELVIS-AP")["positioning"]["max_posterior_offset_mm"] is None


# ---------------------------------------------------------------- inspiration by height


def _analysis(dome_row: float) -> SimpleNamespace:
    return SimpleNamespace(landmarks={"diaphragm_dome_right": (dome_row, 40.0)})


def test_short_lung_in_rib_spacings_is_shallow_when_the_count_fails():
    lim = float(INSP["max_ribs"])
    field = [20, 120, 10, 110]
    # a cut base or implausible count: the height alone decides
    assert inspiration_by_height(_analysis(90), lim - 1.5, 5, 10, field, 2.0, INSP) is True
    assert inspiration_by_height(_analysis(90), lim - 1.5, None, 10, field, 2.0, INSP) is True
    assert inspiration_by_height(_analysis(90), lim + 1.0, 5, 10, field, 2.0, INSP) is False


def test_height_does_not_overrule_a_high_count_or_a_dome_at_the_field_edge():
    lim = float(INSP["max_ribs"])
    field = [20, 120, 10, 110]
    assert inspiration_by_height(_analysis(90), lim - 1.5, 11, 10, field, 2.0, INSP) is False
    assert inspiration_by_height(_analysis(90), lim - 0.3, 10, 10, field, 2.0, INSP) is False
    # dome within dome_margin_mm of the field's bottom edge: it may lie below the field
    assert inspiration_by_height(_analysis(117), lim - 1.5, 7, 10, field, 2.0, INSP) is None
    assert inspiration_by_height(_analysis(90), None, 7, 10, field, 2.0, INSP) is None
    assert inspiration_by_height(_analysis(90), lim - 1.5, 7, 10, field, 2.0, None) is None
    # shorter than any breath: a misread dome, not judged
    assert inspiration_by_height(_analysis(90), float(INSP["min_ribs"]) - 0.5, 7, 10, field, 2.0, INSP) is None


def test_posterior_offset_needs_enough_rows():
    img, mask = _lumbar(5.0)
    short = np.zeros_like(mask)
    short[50:56] = mask[50:56]  # a few rows of column (a chest filed under the lumbar item)
    min_rows = int(load_params("DX-LSPINE-APLAT")["positioning"]["posterior_offset"]["min_rows"])
    assert posterior_element_offset(img, short, 2.0, min_rows=min_rows)[0] is None
