"""Radiograph motion calls the spectrum contradicts (helper DXM4, session 21).

* ``_dx_detail_kept_rule`` (``dx_motion_detail_kept``): a 运动 whose columns keep their mid-band
  detail (``vspec_rel`` +1.0 or more, read above the noise floor) reads 无. The bundled real CR
  sample RG3 (a lower-leg AP whose long bones run down the image) read net 运动 1.00 at +2.32.
* ``dx_motion_no_detail_snr`` (in ``_dx_isotropic_blur_rule``): a 运动 on a view with no mid-band
  detail above the noise on either axis (``vspec_snr`` below -2.0) reads 无 whatever the ratio says
  (fresh i9216 E00180, a clean C-spine lateral, net 0.90 at -2.58)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import ndimage as ndi

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc import radiograph


def _params() -> dict[str, Any]:
    return {**art.DEFAULTS, **(radiograph.load_params("DX-KNEE-APLAT").get("artifact") or {})}


def _motion(rel: float, snr: float, **extra: float) -> art.SeriesArtifact:
    feats = {"vspec_rel": rel, "vspec_snr": snr, "vspec_rel_notext": rel, "text_frac": 0.0, "grid_rows": 0.1,
             "nyq_fy": 0.6, "nyq_fx": 0.4, "nyq_fy_edge": 0.57, **extra}
    res = art.SeriesArtifact("1.2.3", "DX", feats, {"motion": 1.0}, art.VALUE_OF["motion"], "motion_blur", 0, None, None, None)
    res.method = "learned"
    return res


def test_a_motion_call_whose_columns_keep_their_detail_reads_none() -> None:
    p = _params()
    assert p["dx_motion_detail_kept"] == 1.0
    res = _motion(2.32, 1.57)  # the real CR sample RG3
    art._dx_detail_kept_rule(res, p)
    assert res.value == art.VALUE_OF["none"]
    assert res.extra["learned_value"] == art.VALUE_OF["motion"]
    assert res.extra["dropped"]["rule"] == "vertical_detail_kept"
    # a real smear the net catches reads the ratio negative (highest of ~2,100 views: -0.33): kept
    res = _motion(-0.33, 0.83)
    art._dx_detail_kept_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    # below the noise floor the ratio compares noise residues: not judged (i9216 E00277, a 7-px
    # smear at snr -1.38; here with a ratio above the limit)
    res = _motion(1.5, -1.38)
    art._dx_detail_kept_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    # the rule off, or another reading: unchanged
    res = _motion(2.32, 1.57)
    art._dx_detail_kept_rule(res, {**p, "dx_motion_detail_kept": None})
    assert res.value == art.VALUE_OF["motion"]
    res = _motion(2.32, 1.57)
    res.value = art.VALUE_OF["foreign_object"]
    art._dx_detail_kept_rule(res, p)
    assert res.value == art.VALUE_OF["foreign_object"]


def test_a_motion_call_with_no_detail_above_the_noise_reads_none() -> None:
    p = _params()
    assert p["dx_motion_no_detail_snr"] == -2.0
    res = _motion(-0.94, -2.58)  # fresh i9216 E00180, LL view
    art._dx_isotropic_blur_rule(res, p)
    assert res.value == art.VALUE_OF["none"] and res.extra["dropped"]["rule"] == "no_detail"
    # the lowest smeared view (i9216 E00277, 7 px, net 1.00): kept, the ratio does not read motion
    res = _motion(0.87, -1.38)
    art._dx_isotropic_blur_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    # off: the ratio-backed isotropic-blur rule alone, which leaves E00180 to the net
    res = _motion(-0.94, -2.58)
    art._dx_isotropic_blur_rule(res, {**p, "dx_motion_no_detail_snr": None})
    assert res.value == art.VALUE_OF["motion"]


class _Net:
    def __init__(self, probs: list[float]) -> None:
        self.probs = np.array(probs)

    def predict(self, modality: str, feats: dict[str, float]) -> np.ndarray:
        return self.probs

    def threshold_for(self, modality: str) -> float:
        return 0.85


def test_decide_series_drops_the_nets_call_but_keeps_the_short_smear_rules() -> None:
    p = _params()
    none = art.VALUE_OF["none"]
    res = art.SeriesArtifact("1.2.3", "DX", dict(_motion(2.32, 1.57).features), {}, none, None, None, None, None, None)
    assert art.decide_series(res, p, _Net([0.0, 1.0, 0.0, 0.0])).value == none
    # a 2-px smear the net misses at ratio +1.61 (fresh d8933 E00109): the edge rule still reads it
    feats = dict(_motion(1.61, 1.0).features, nyq_fy=0.61, nyq_fx=2.67, nyq_fy_edge=0.03)
    res = art.SeriesArtifact("1.2.3", "DX", feats, {}, none, None, None, None, None, None)
    assert art.decide_series(res, p, _Net([1.0, 0.0, 0.0, 0.0])).value == art.VALUE_OF["motion"]


def _leg(smear: int | None) -> np.ndarray:
    """Long bones running down the image (strong horizontal gradients, little vertical detail)
    with fine isotropic texture; ``smear``: the generator's motion, a box along the columns."""
    rng = np.random.default_rng(9100)
    ny, nx = 256, 192
    xx = np.arange(nx)[None, :].repeat(ny, 0).astype(np.float64)
    img = 1200 + 900 * (np.abs(xx - 70) < 14) + 700 * (np.abs(xx - 120) < 8)
    img = ndi.gaussian_filter(img, 1.0)
    texture = ndi.gaussian_filter(rng.normal(size=img.shape), 0.8)
    img = img + 80 * texture / texture.std()
    if smear:
        img = sum(np.roll(img, k, axis=0) for k in range(smear)) / smear
    return (img + rng.normal(0, 20.0, img.shape)).astype(np.float32)


def test_the_ratio_reads_kept_detail_on_vertical_anatomy_and_missing_detail_under_a_smear() -> None:
    p = _params()
    clean = art.directional_spectrum(_leg(None))
    # the anatomy leans to one axis, but the columns keep their detail: the rule's side
    assert clean["vspec_rel"] >= p["dx_motion_detail_kept"] and clean["vspec_snr"] >= p["dx_motion_min_snr"]
    # 3- and 4-px smears remove column detail: the ratio falls by 2 or more, below 0
    for n in (3, 4):
        smeared = art.directional_spectrum(_leg(n))
        assert smeared["vspec_rel"] < 0 and smeared["vspec_rel"] < clean["vspec_rel"] - 2.0


def test_the_real_cr_sample_rg3_reads_no_motion() -> None:
    from radqc.samples import sample_file

    path = sample_file("pydicom-data", "RG3_UNCR.dcm")
    if path is None:
        pytest.skip("real sample pydicom-data RG3_UNCR.dcm not cached (radqc.samples)")
    import pydicom

    feats, _ = art.dx_radiograph_features(pydicom.dcmread(path).pixel_array.astype(np.float32))
    assert feats["vspec_rel"] > 2.0 and feats["vspec_snr"] > 1.0
    p = _params()
    res = art.SeriesArtifact("1.2.3", "DX", feats, {}, art.VALUE_OF["none"], None, None, None, None, None)
    assert art.decide_series(res, p, _Net([0.0, 1.0, 0.0, 0.0])).value == art.VALUE_OF["none"]
