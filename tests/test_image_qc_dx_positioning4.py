"""Radiograph positioning, session 20 (DXP4): the lead marker found under noise spikes above its
glyph, and a chest image filed under a non-chest item judged by the chest checks, not the item's
spine rotation signs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from radqc.pipelines.image_qc import radiograph as rg
from radqc.pipelines.image_qc.radiograph import load_params

GLYPH = load_params(None)["positioning"]["marker_glyph"]


def _view_with_l(spike: bool) -> np.ndarray:
    """A 120 x 120 field of noisy anatomy (max ~3500) with a flat 'L' glyph of lead at 4045 (the
    shape of held-out i9214 E00106's: a 6-pixel bar and a 4-pixel foot) and, optionally, one noise
    spike at 4054 elsewhere, just over a ``tol`` (7.4 here) above the glyph, as on E00106 (4050
    under 4064 at a tol of 13.2)."""
    rng = np.random.default_rng(3)
    img = 1500.0 + 15.0 * np.arange(120)[None, :] + rng.normal(0, 70, (120, 120))
    img = np.clip(img, 0, 3500)
    img[20:26, 90] = 4045.0
    img[25, 90:94] = 4045.0
    if spike:
        img[70, 40] = 4054.0
    return img.round()


def test_marker_read_without_a_spike():
    res = rg.find_marker(_view_with_l(False), (0, 120, 0, 120), 1.7, **GLYPH)
    assert res is not None and res["present"] and res["text"] == "L" and res["side_of_image"] == "right"


def test_marker_read_under_a_noise_spike_above_the_glyph():
    # before: the glyph's plateau rounded into a bin whose centre lay within the maximum's band,
    # was dropped, and the search came out conclusive: "no marker"
    res = rg.find_marker(_view_with_l(True), (0, 120, 0, 120), 1.7, **GLYPH)
    assert res is not None and res["present"] is True and res["text"] == "L"


def test_no_marker_still_conclusive():
    img = _view_with_l(False)
    img[20:26, 90] = img[20:26, 89]
    img[25, 90:94] = img[24, 90:94]
    res = rg.find_marker(img, (0, 120, 0, 120), 1.7, **GLYPH)
    assert res is None or not res.get("text")


def _analysis(lungs: bool, lumbar_centre: bool) -> SimpleNamespace:
    shape = (100, 100)
    masks = {k: np.zeros(shape, bool) for k in ("lung_left", "lung_right", "vertebrae_lumbar")}
    if lungs:
        masks["lung_right"][8:90, 15:45] = True
        masks["lung_left"][8:90, 55:85] = True
    if lumbar_centre:
        masks["vertebrae_lumbar"][20:80, 45:55] = True
    else:
        masks["vertebrae_lumbar"][95:99, 45:55] = True  # a few rows at the image bottom
    return SimpleNamespace(masks=masks, measurements={}, landmarks={})


def test_item_view_shows_chest():
    params = load_params("DX-LSPINE-APLAT")
    assert rg._item_view_shows_chest(_analysis(True, False), params)
    assert not rg._item_view_shows_chest(_analysis(False, True), params)
    # an item without its own centring structures is never re-read as a chest
    assert not rg._item_view_shows_chest(_analysis(True, False), load_params("DX-KUB"))


def _positioning(analysis: SimpleNamespace, other_chest: bool) -> rg._View:
    params = load_params("DX-LSPINE-APLAT")
    params["positioning"]["other_chest_checks"] = other_chest
    params["positioning"]["check_marker"] = False
    v = rg._View("1.2.3", "AP", None)
    v.set("range", "正常", {})
    rg._positioning(v, analysis, {}, 1.7, params, False, lambda *a, **k: None, None,
                    {"spinous_offset_mm": 9.0})
    return v


def test_chest_under_lumbar_item_skips_the_spine_signs():
    v = _positioning(_analysis(True, False), True)
    assert v.values["positioning"] == "标准"
    assert v.details["positioning"]["view_shows"] == "chest"
    assert "spinous_offset_mm" not in v.details["positioning"]


def test_chest_under_lumbar_item_old_behaviour_when_off():
    assert _positioning(_analysis(True, False), False).values["positioning"] == "不标准"


def test_lumbar_view_keeps_the_spine_signs():
    v = _positioning(_analysis(False, True), True)
    assert v.values["positioning"] == "不标准"
    assert "view_shows" not in v.details["positioning"]


def _cervical(outline_mm: float | None, spinous_mm: float) -> str:
    params = load_params("DX-CSPINE-APLAT")
    params["positioning"]["check_marker"] = False
    v = rg._View("1.2.3", "AP", None)
    rg._positioning(v, _analysis(False, True), {}, 1.0, params, False, lambda *a, **k: None, None,
                    {"spine_outline_offset_mm": outline_mm, "spinous_offset_mm": spinous_mm})
    return v.values["positioning"]


def test_cervical_spinous_offset_stands_in_only_without_an_outline():
    p = load_params("DX-CSPINE-APLAT")["positioning"]
    over = float(p["max_spinous_offset_mm"]) + 1.0  # the offset arrives baseline-subtracted
    # neck outline run off the field (no middle): the spinous offset decides
    assert _cervical(None, -over) == "不标准"
    assert _cervical(None, 1.0) == "标准"
    # outline readable and straight: the spinous offset is not judged
    assert _cervical(0.3, -over) == "标准"
    # outline readable and turned: flagged by the outline as before
    assert _cervical(-3.0, 0.0) == "不标准"


def test_chest_under_other_item_not_judged_rotated_by_the_heart_alone(monkeypatch):  # noqa: ANN001
    # 8900 E00102: a straight chest with a shallow breath read heart-spine 21.6 mm (5.2 spreads)
    monkeypatch.setattr(rg, "heart_spine_offset", lambda analysis, px: 22.0)
    v = _positioning(_analysis(True, False), True)
    assert v.values["positioning"] == "标准"
    assert "rotation" in v.details["positioning"]
