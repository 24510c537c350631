"""Radiograph motion smears the short-smear rule missed (helper DXM3, session 20).

* ``nyq_fy_edge`` (``artifact.dx_nyquist_smear``): the vertical Nyquist line read on its last rows
  (fy 0.48-0.5) only. A 2-px box zeroes 0.5 cycles/px but passes 3.5% of the power at 0.44, so a
  view with strong anatomy just below the line keeps ``nyq_fy`` above the short-smear rule's 0.15
  (fresh d8933 E00109: 0.61) while the edge band stays flat (0.03); ``_dx_nyquist_edge_rule`` then
  reads 运动 at a higher limit (``dx_motion_nyquist_edge``).
* ``dx_motion_text_nyquist_keep`` / ``dx_motion_text_free_keep``: the burned-in-text rule keeps a 运动
  whose short-smear reading is strong (fresh t8930 E00081, a 3-px smear with 13% text: 1.69; the
  clean text views -0.82 to -0.18) or whose text-free ratio still reads motion (E00081 0.58, i9214
  E00146 0.59; the clean text views -1.19 to -0.13)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc import radiograph


def _params() -> dict[str, Any]:
    return {**art.DEFAULTS, **(radiograph.load_params("DX-CHEST-PA").get("artifact") or {})}


def _view(smear: int | None, ribs: bool = True) -> np.ndarray:
    """A radiograph-like field: fine isotropic detail, and (``ribs``) strong horizontal structure
    just below the vertical Nyquist frequency (fy 0.38-0.44, low fx); ``smear``: the generator's
    motion, a box of that many px along the columns before the detector noise."""
    rng = np.random.default_rng(7)
    ny, nx = 160, 128
    yy, xx = np.mgrid[:ny, :nx]
    img = 1500 + 700 * np.exp(-(((yy - 80) / 60) ** 2 + ((xx - 64) / 45) ** 2))
    texture = ndi.gaussian_filter(rng.normal(size=img.shape), 0.5)
    img = img + 60 * texture / texture.std()
    if ribs:
        spec = np.fft.fft2(rng.normal(size=img.shape))
        fy = np.abs(np.fft.fftfreq(ny))[:, None]
        fx = np.abs(np.fft.fftfreq(nx))[None, :]
        band = (fy >= 0.38) & (fy <= 0.44) & (fx >= 0.01) & (fx <= 0.13)
        rib = np.real(np.fft.ifft2(spec * band))
        img = img + 300 * rib / rib.std()
    if smear:
        img = sum(np.roll(img, k, axis=0) for k in range(smear)) / smear
    return (img + rng.normal(0, 25.0, img.shape)).astype(np.float32)


def test_the_edge_band_stays_flat_under_a_two_pixel_smear_where_the_full_line_does_not() -> None:
    p = _params()
    smeared = art.dx_nyquist_smear(_view(2))
    clean = art.dx_nyquist_smear(_view(None))
    # the anatomy just below the line leaks through the box into the full line...
    assert smeared["nyq_fy"] > p["dx_motion_nyquist_max_fy"]
    # ...but not into its last rows
    assert smeared["nyq_fy_edge"] <= p["dx_motion_nyquist_max_fy"]
    # an unsmeared view keeps detail on the edge band too
    assert clean["nyq_fy_edge"] > p["dx_motion_nyquist_max_fy"] + 0.5
    # the key is one of the native-resolution measures of a large radiograph
    assert "nyq_fy_edge" in art.NATIVE_KEYS
    assert "nyq_fy_edge" in art.dx_native_features(_view(2))


def _res(value: str, fy: float, fx: float, edge: float | None) -> art.SeriesArtifact:
    feats = {"nyq_fy": fy, "nyq_fx": fx, "grid_rows": 0.1, "vspec_rel": 0.5, "vspec_snr": 1.0}
    if edge is not None:
        feats["nyq_fy_edge"] = edge
    return art.SeriesArtifact("1.2.3", "DX", feats, {}, art.VALUE_OF[value], None, None, None, None, None)


def test_the_edge_rule_reads_motion_only_above_its_own_limit() -> None:
    p = _params()
    assert p["dx_motion_nyquist_edge"] == 2.4
    res = _res("none", 0.61, 2.67, 0.03)  # fresh d8933 E00109, a 2-px smear of a chest PA
    art._dx_nyquist_edge_rule(res, p)
    assert res.value == art.VALUE_OF["motion"] and res.kind == "short_smear"
    assert res.measured == 2.61 and res.limit == 2.4
    # the highest clean view (worn i9210 E00020): flat edge band, but below the limit
    res = _res("none", 0.23, 1.70, -0.16)
    art._dx_nyquist_edge_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
    # edge band not flat: no call whatever nyq_fx reads
    res = _res("none", 0.9, 3.5, 0.5)
    art._dx_nyquist_edge_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
    # features measured before the key existed, another reading, or the rule off: unchanged
    for res, q in ((_res("none", 0.61, 2.67, None), p), (_res("equipment", 0.61, 2.67, 0.03), p),
                   (_res("none", 0.61, 2.67, 0.03), {**p, "dx_motion_nyquist_edge": None})):
        before = res.value
        art._dx_nyquist_edge_rule(res, q)
        assert res.value == before


def test_decide_series_runs_the_edge_rule_and_the_grid_rule_still_wins() -> None:
    p = {**_params(), "use_model": False}
    out = art.decide_series(_res("none", 0.61, 2.67, 0.03), p, None)
    assert out.value == art.VALUE_OF["motion"]
    res = _res("none", 0.61, 2.67, 0.03)
    res.features["grid_rows"] = 0.9
    assert art.decide_series(res, p, None).value == art.VALUE_OF["equipment"]


def _motion(rel: float, notext: float, frac: float, fy: float, fx: float) -> art.SeriesArtifact:
    feats = {"vspec_rel": rel, "vspec_rel_notext": notext, "text_frac": frac, "vspec_snr": 1.0, "grid_rows": 0.1,
             "nyq_fy": fy, "nyq_fx": fx}
    res = art.SeriesArtifact("1.2.3", "DX", feats, {"motion": 1.0}, art.VALUE_OF["motion"], "motion_blur", 0, None, None, None)
    res.method = "learned"
    return res


def test_the_text_rule_keeps_a_smear_the_nyquist_lines_see() -> None:
    p = _params()
    assert p["dx_motion_text_nyquist_keep"] == 1.0
    # fresh t8930 E00081: a 3-px smear of a knee lateral under 13% text, net 0.97
    res = _motion(-2.13, -0.58, 0.126, 0.17, 2.03)
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    # either keep alone holds it (text-free 0.58 >= 0.4); without both it was dropped as text
    res = _motion(-2.13, -0.58, 0.126, 0.17, 2.03)
    art._dx_text_motion_rule(res, {**p, "dx_motion_text_free_keep": None})
    assert res.value == art.VALUE_OF["motion"]
    res = _motion(-2.13, -0.58, 0.126, 0.17, 2.03)
    art._dx_text_motion_rule(res, {**p, "dx_motion_text_nyquist_keep": None, "dx_motion_text_free_keep": None})
    assert res.value == art.VALUE_OF["none"]
    # worn h9211 E00010 (a clean pelvis AP whose text made the ratio read motion): still dropped
    res = _motion(-7.52, 0.27, 0.094, 0.89, 1.14)
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["none"] and res.extra["dropped"]["rule"] == "burned_in_text"


def test_the_text_rule_keeps_a_smear_whose_text_free_ratio_still_reads_motion() -> None:
    p = _params()
    assert p["dx_motion_text_free_keep"] == 0.4
    # i9214 E00146: a 2-px smear of a pelvis AP with 4% text, net 0.89; no Nyquist support (score -0.36)
    res = _motion(-7.88, -0.59, 0.039, 0.58, 0.80)
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    res = _motion(-7.88, -0.59, 0.039, 0.58, 0.80)
    art._dx_text_motion_rule(res, {**p, "dx_motion_text_free_keep": None})
    assert res.value == art.VALUE_OF["none"]
    # a text-free reading just leaning to motion, below the keep: dropped (t8932 E00003's 0.24)
    res = _motion(-4.54, -0.24, 0.034, 0.27, 0.37)
    art._dx_text_motion_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
