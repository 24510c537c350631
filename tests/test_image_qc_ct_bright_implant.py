"""CT implants blurred below the metal threshold (helper CTA5, session 21).

Clips and screws blurred by the kernel reach 1900-2500 HU on one slice, below ``ct_metal_hu``, so the
metal measures read nothing. ``bright_outlier`` reads the one slice whose maximum stands far above the
series' bone; ``_ct_bright_implant_rule`` calls it 设备 when the object lies inside the body (not on the
skin, where the generator's buttons and electrodes lie) or streaks the air round the patient.
"""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc import artifact as A
from radqc.pipelines.image_qc.ct_artifact_rules import bright_outlier

N = 96


def _slice(spot: tuple[int, int] | None = None, spot_hu: float = 2300.0, seed: int = 0) -> np.ndarray:
    """An elliptic body (40 HU) in air with a vertebra (bone 1200 HU) and an optional 3x3 bright spot."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:N, :N].astype(np.float32)
    img = np.full((N, N), -1000.0, np.float32)
    body = ((yy - 48) / 30) ** 2 + ((xx - 48) / 40) ** 2 < 1
    img[body] = 40.0
    img[(np.hypot(yy - 62, xx - 48) < 5)] = 1200.0
    if spot is not None:
        r, c = spot
        img[r - 1:r + 2, c - 1:c + 2] = spot_hu
    return img + rng.normal(0.0, 10.0, img.shape).astype(np.float32)


def _series(spot: tuple[int, int] | None, n: int = 12, metal_px: float = 0.0) -> A.SeriesArtifact:
    slices = [_slice(spot if k == 5 else None, seed=k) for k in range(n)]
    per = [{"hu_max": float(s.max()), "metal_px": 0.0} for s in slices]
    feats = {"metal_px_max": float(np.log1p(metal_px)), "streak_air_max": 0.0, "metal_air_max": 0.0}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.01, "motion": 0.0, "foreign_object": 0.0},
                           "无", None, None, None, None, None)
    res.method = "learned"
    res.extra["_slices"], res.extra["_idx"], res.extra["_per"] = slices, list(range(n)), per
    return res


def test_bright_outlier_reads_depth_inside_and_on_the_skin():
    deep = [_slice((48, 30) if k == 5 else None, seed=k) for k in range(12)]
    skin = [_slice((18, 48) if k == 5 else None, seed=k) for k in range(12)]  # at the top skin line
    hm = lambda sl: [float(s.max()) for s in sl]  # noqa: E731
    b = bright_outlier(deep, hm(deep), 1000.0)
    assert b["bright_excess"] > 1000.0 and b["bright_slice"] == 5.0
    assert 1 <= b["bright_px"] <= 12
    assert b["bright_depth"] > 0.3
    s = bright_outlier(skin, hm(skin), 1000.0)
    assert s["bright_excess"] > 1000.0 and s["bright_depth"] < 0.1
    # bone alone: no excess, the slice is not read
    clean = [_slice(None, seed=k) for k in range(12)]
    c = bright_outlier(clean, hm(clean), 1000.0)
    assert c["bright_excess"] < 200.0 and c["bright_px"] == 0.0 and c["bright_depth"] == -1.0


def test_rule_calls_a_deep_blurred_implant_and_not_a_skin_object():
    p = dict(A.DEFAULTS)
    res = _series((48, 30))
    A._ct_bright_implant_rule(res, p)
    assert res.value == "设备" and res.kind == "metal" and res.slice_index == 5
    skin = _series((18, 48))
    A._ct_bright_implant_rule(skin, {**p, "ct_bright_skin_fo": False})
    assert skin.value == "无"  # never an implant
    # since session 22 a shallow bright spot with little streaking in the air is a skin object
    # (ct_bright_skin_fo; tests/test_image_qc_ct_metal_s22.py)
    skin = _series((18, 48))
    A._ct_bright_implant_rule(skin, p)
    assert skin.value == "异物"
    clean = _series(None)
    A._ct_bright_implant_rule(clean, p)
    assert clean.value == "无"


def test_rule_leaves_short_series_metal_series_and_other_readings_alone():
    p = dict(A.DEFAULTS)
    short = _series((48, 30), n=4)  # a 4-slice reformat: its quartile is no bone level
    A._ct_bright_implant_rule(short, p)
    assert short.value == "无"
    metal = _series((48, 30), metal_px=2.0)  # the metal rules judge series with 2+ metal pixels
    A._ct_bright_implant_rule(metal, p)
    assert metal.value == "无"
    motion = _series((48, 30))
    motion.value = "运动"
    A._ct_bright_implant_rule(motion, p)
    assert motion.value == "运动"
    off = _series((48, 30))
    A._ct_bright_implant_rule(off, {**p, "ct_bright_excess_hu": None})
    assert off.value == "无"


def _metal_series(streak_air: float, inside: float = 0.0) -> A.SeriesArtifact:
    feats = {"metal_px_max": float(np.log1p(4.0)), "metal_inside_mean": inside, "metal_air_max": 0.0,
             "streak_air_max": streak_air, "streak_max": 0.0, "metal_slice_frac": 0.04}
    res = A.SeriesArtifact("1.2.3", "CT", feats, {"equipment": 0.01, "motion": 0.0, "foreign_object": 0.1},
                           "无", None, None, None, None, None)
    res.method = "learned"
    res.extra["_per"] = [{"metal_px": 4.0 if k == 3 else 0.0, "base_sd": 20.0, "metal_r": 10.0, "metal_c": 10.0} for k in range(8)]
    res.extra["_idx"] = list(range(8))
    return res


def test_metal_in_the_skin_layer_without_streaks_reads_foreign_object():
    p = dict(A.DEFAULTS)
    button = _metal_series(streak_air=0.46)  # fresh 9216 E00162: a button pressed into the fat
    A._ct_on_skin_rule(button, p)
    assert button.value == "异物"
    implant = _metal_series(streak_air=5.0)  # streaks through the outside air: an implant
    A._ct_on_skin_rule(implant, p)
    assert implant.value == "设备"
    deep = _metal_series(streak_air=0.46, inside=0.9)  # wrapped in the body: an implant
    A._ct_on_skin_rule(deep, p)
    assert deep.value == "设备"
    off = _metal_series(streak_air=0.46)
    A._ct_on_skin_rule(off, {**p, "ct_implant_skin_layer_fo": False})
    assert off.value == "设备"


def test_one_metal_pixel_does_not_stop_the_reading():
    res = _series((48, 30), metal_px=1.0)  # fresh 9216 E00181: 1 px at 2521 HU
    A._ct_bright_implant_rule(res, dict(A.DEFAULTS))
    assert res.value == "设备"
