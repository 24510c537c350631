"""Radiograph short motion smears read on the Nyquist lines (helper DXM, session 19).

A vertical box smear of 2 px (before the detector noise) leaves the vertical Nyquist line of the
2-D power spectrum flat (white noise only) while the horizontal one keeps the anatomy:
``artifact.dx_nyquist_smear`` reads ``nyq_fy`` near 0 and ``nyq_fx`` above it, and
``_dx_nyquist_motion_rule`` turns a 无 reading into 运动 at the limits of qc_rules/image_qc/dx.yaml
(``artifact:``). Worn h9211 E00009 / E00095 and i9212 E00233 / E00321 were 2-px smears the net
read at 0.00-0.15."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc import radiograph


def _view(smear_axis: int | None, length: int = 2) -> np.ndarray:
    """A radiograph-like view with fine isotropic detail; ``smear_axis`` adds the generator's
    motion (a ``length``-px box along that axis, before the detector noise)."""
    rng = np.random.default_rng(21)
    yy, xx = np.mgrid[:160, :128]
    img = 1500 + 700 * np.exp(-(((yy - 80) / 60) ** 2 + ((xx - 64) / 45) ** 2))
    texture = ndi.gaussian_filter(rng.normal(size=img.shape), 0.5)
    img = img + 100 * texture / texture.std()
    if smear_axis is not None:
        img = sum(np.roll(img, k, axis=smear_axis) for k in range(length)) / length
    return (img + rng.normal(0, 25.0, img.shape)).astype(np.float32)


def _params() -> dict[str, Any]:
    return {**art.DEFAULTS, **(radiograph.load_params("DX-CHEST-PA").get("artifact") or {})}


def test_the_item_data_switch_the_rule_on() -> None:
    p = _params()
    assert p["dx_motion_nyquist"] == 1.0
    assert p["dx_motion_nyquist_max_fy"] == 0.15


def test_a_two_pixel_vertical_smear_flattens_the_vertical_nyquist_line_only() -> None:
    clean = art.dx_nyquist_smear(_view(None))
    vertical = art.dx_nyquist_smear(_view(0))
    horizontal = art.dx_nyquist_smear(_view(1))
    p = _params()
    assert vertical["nyq_fy"] <= p["dx_motion_nyquist_max_fy"]
    assert art.dx_nyquist_score(vertical, p) >= p["dx_motion_nyquist"]
    # the unsmeared view keeps detail on both lines: no smear reading
    assert clean["nyq_fy"] > p["dx_motion_nyquist_max_fy"]
    assert art.dx_nyquist_score(clean, p) < p["dx_motion_nyquist"]
    # a smear along the rows is the other line: not read as the (vertical) smear
    assert art.dx_nyquist_score(horizontal, p) < 0.0


def test_a_negative_vertical_reading_counts_as_flat_not_as_more_evidence() -> None:
    assert art.dx_nyquist_score({"nyq_fx": 0.6, "nyq_fy": -0.5}, {}) == 0.6
    assert art.dx_nyquist_score({"nyq_fx": 1.6, "nyq_fy": 0.25}, {}) == 1.1


def _res(value: str, fy: float, fx: float) -> art.SeriesArtifact:
    feats = {"nyq_fy": fy, "nyq_fx": fx, "grid_rows": 0.1, "vspec_rel": 0.5, "vspec_snr": 1.0}
    return art.SeriesArtifact("1.2.3", "DX", feats, {}, art.VALUE_OF[value], None, None, None, None, None)


def test_the_rule_turns_a_clean_reading_into_motion_only_when_both_lines_agree() -> None:
    p = _params()
    res = _res("none", 0.02, 1.05)  # worn h9211 E00095's smeared AP view
    art._dx_nyquist_motion_rule(res, p)
    assert res.value == art.VALUE_OF["motion"] and res.kind == "short_smear"
    assert res.measured == 1.01 and res.limit == 1.0
    # worn i9210 E00020 (a clean view of a foreign-object exam): strong horizontal-line anatomy,
    # but the vertical line is not flat
    res = _res("none", 0.23, 1.70)
    art._dx_nyquist_motion_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
    # below the limit: no call
    res = _res("none", -0.01, 0.87)
    art._dx_nyquist_motion_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
    # only a 无 reading changes
    res = _res("foreign_object", 0.0, 2.5)
    art._dx_nyquist_motion_rule(res, p)
    assert res.value == art.VALUE_OF["foreign_object"]
    # null limit: off
    res = _res("none", 0.0, 2.5)
    art._dx_nyquist_motion_rule(res, {**p, "dx_motion_nyquist": None})
    assert res.value == art.VALUE_OF["none"]


def test_decide_series_lets_the_grid_rule_overrule_the_smear_reading() -> None:
    p = {**_params(), "use_model": False}
    res = _res("none", 0.0, 2.5)
    res.features["grid_rows"] = 0.9
    out = art.decide_series(res, p, None)
    assert out.value == art.VALUE_OF["equipment"]


def _with_text(img: np.ndarray, value: float = 45.0) -> np.ndarray:
    """Burned-in text: constant-valued glyph strokes (no detector noise) in two top lines, one
    stroke every 4 px (as the ID lines of a 104 x 128 px pelvis AP)."""
    out = img.copy()
    for row in (4, 14):
        for col in range(6, 120, 4):
            out[row:row + 7, col:col + 1] = value
    return out


def test_text_free_spectrum_finds_constant_glyphs_and_leaves_clean_views_alone() -> None:
    clean = _view(None)
    plain = art.dx_text_free_spectrum(clean)
    assert plain["text_frac"] == 0.0 and plain["vspec_rel_notext"] == art.directional_spectrum(clean)["vspec_rel"]
    texted = art.dx_text_free_spectrum(_with_text(clean))
    assert 0.005 <= texted["text_frac"] <= 0.25
    # the glyphs alone make the plain ratio read motion; with them filled it is back at the clean view's
    assert -art.directional_spectrum(_with_text(clean))["vspec_rel"] >= art.DEFAULTS["dx_motion_spectrum"]
    assert abs(texted["vspec_rel_notext"] - plain["vspec_rel_notext"]) < 0.15


def _motion(rel: float, notext: float, frac: float) -> art.SeriesArtifact:
    feats = {"vspec_rel": rel, "vspec_rel_notext": notext, "text_frac": frac, "vspec_snr": 1.0, "grid_rows": 0.1,
             "nyq_fy": 0.8, "nyq_fx": 1.0}
    res = art.SeriesArtifact("1.2.3", "DX", feats, {"motion": 1.0}, art.VALUE_OF["motion"], "motion_blur", 0, None, None, None)
    res.method = "learned"
    return res


def test_a_motion_reading_made_by_text_is_dropped_and_a_real_smear_kept() -> None:
    p = _params()
    assert p["dx_motion_text_free_max"] == 1.0
    res = _motion(-7.52, 0.27, 0.094)  # worn h9211 E00010, a clean pelvis AP
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["none"] and res.extra["dropped"]["rule"] == "burned_in_text"
    res = _motion(-2.03, 0.13, 0.34)  # worn i9210 E00041: a real smear, 'text' mostly clipped speckle
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    res = _motion(-4.43, -2.05, 0.032)  # the text-free ratio still reads motion
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    res = _motion(-1.2, 0.3, 0.1)  # the ratio did not read motion: the net's call is left alone
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    res = _motion(-7.52, 0.27, 0.094)
    art._dx_text_motion_rule(res, {**p, "dx_motion_text_free_max": None})
    assert res.value == art.VALUE_OF["motion"]
