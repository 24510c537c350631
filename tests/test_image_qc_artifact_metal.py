"""Artifact dimension: steel on radiographs (saturated compact objects) and MR susceptibility voids
(a dark hole with a pile-up crescent along the frequency-encode axis), as generator 0.1.5 draws them."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from radqc.dicom.factory import ct_slice
from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc.types import EvidenceSink, ExamImages, SeriesImages
from radqc.pipelines.series.features import from_datasets

N = 64


def _series(slices: list[np.ndarray], modality: str, **extra: Any) -> SeriesImages:
    study, series = generate_uid(), generate_uid()
    dss = [ct_slice(study_uid=study, series_uid=series, pixels=np.clip(np.rint(s), 0, 32767).astype(np.int16),
                    instance_number=i + 1, position=(0.0, 0.0, -5.0 * i), pixel_spacing=(2.0, 2.0), Modality=modality, **extra)
           for i, s in enumerate(slices)]
    from radqc.dicom.volume import load_radiograph

    return SeriesImages(header=from_datasets(dss), label=None, datasets=lambda: dss, volume=lambda: None,
                        radiograph=lambda: load_radiograph(dss[0]))


def _exam(s: SeriesImages, modality: str) -> ExamImages:
    return ExamImages(study_uid="1.2.3", modality=modality, standard_code=None, series=[s])


# ------------------------------------------------------------------------------ radiographs


def _chest(beads: int, bead_value: float = 3900.0, marker: bool = True, written: bool = False) -> SeriesImages:
    """A frontal chest-like radiograph (MONOCHROME2, bone bright) with ``beads`` 2x2 steel beads
    over the left and right lung zones and a side marker written at the display maximum. Steel
    carries the detector noise; ``written``: the dots are burned-in text (one constant value)."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:200, :160]
    img = 1500 + 800 * np.exp(-(((yy - 100) / 70) ** 2 + ((xx - 80) / 55) ** 2)) + 300 * np.sin(yy / 9.0)
    img = img + rng.normal(0, 25, img.shape)
    for k in range(beads):  # a necklace's beads, alternating over both lungs
        r, c = 40 + 12 * (k // 2), (35 if k % 2 == 0 else 120)
        img[r:r + 2, c:c + 2] = bead_value if written else bead_value + rng.normal(0, 25, (2, 2))
    if marker:
        img[4:10, 4:10] = 4050.0  # the "L" marker at the display maximum, outside the inner field
    return _series([img.astype(np.float32)], "DX")


def test_saturated_beads_over_the_lungs_are_a_foreign_object() -> None:
    """Steel beads near (not at) the image maximum, over both lungs: counted, above the limit,
    异物 with the box on a bead; the clean image reads 0 and stays 无; the limit is a parameter."""
    p = {"use_model": False}
    clean = art.measure_artifact(_exam(_chest(0), "DX"), p, EvidenceSink())["artifact"]
    assert clean.value == "无"
    assert clean.details["per_series"][0]["features"]["fo_sat_n"] == 0
    sink = EvidenceSink()
    beads = art.measure_artifact(_exam(_chest(8), "DX"), p, sink)["artifact"]
    assert beads.details["per_series"][0]["features"]["fo_sat_n"] == 8
    assert beads.value == "异物" and beads.details["kind"] == "foreign_object"
    ev = beads.findings[0].evidence[0]
    assert ev.measured == 8 and ev.limit == art.DEFAULTS["dx_sat_objects"]
    assert ev.box is not None and ev.box[0] <= 40 <= ev.box[2] and ev.box[1] <= 35 <= ev.box[3]
    assert "异物" in beads.findings[0].reason_zh and "foreign-object" in beads.findings[0].reason_en
    off = art.measure_artifact(_exam(_chest(8), "DX"), {**p, "dx_sat_objects": None}, EvidenceSink())["artifact"]
    assert off.value == "无"  # the older top-hat count (limit 100) never fires on 8 beads
    assert art.measure_artifact(_exam(_chest(8), "DX"), {**p, "dx_sat_objects": 9}, EvidenceSink())["artifact"].value == "无"


def test_annotations_at_the_display_maximum_and_faint_dots_are_not_metal() -> None:
    """Dots written at one constant value (the image's maximum here) are burned-in text (the count's
    false alarms on validation), and dots as faint as bone do not saturate: neither is counted."""
    text = art.analyse_series(_chest(8, bead_value=4050.0, marker=False, written=True), "DX", {**art.DEFAULTS, "use_model": False})
    assert text.features["fo_sat_n"] == 0 and text.value == "无"
    faint = art.analyse_series(_chest(8, bead_value=2600.0), "DX", {**art.DEFAULTS, "use_model": False})
    assert faint.features["fo_sat_n"] == 0


def test_the_learned_none_is_overruled_but_a_stricter_value_stays() -> None:
    res = art.SeriesArtifact("1.2", "DX", {"fo_sat_n": 6.0}, {"foreign_object": 0.1}, "无", method="learned")
    art._dx_object_rule(res, art.DEFAULTS)
    assert (res.value, res.kind, res.extra["learned_value"]) == ("异物", "foreign_object", "无")
    grid = art.SeriesArtifact("1.2", "DX", {"fo_sat_n": 6.0}, {"equipment": 0.9}, "设备", "grid_lines", method="learned")
    art._dx_object_rule(grid, art.DEFAULTS)
    assert grid.value == "设备"


# ------------------------------------------------------------------------------ MR


def _mr(void: str, n: int = 6) -> SeriesImages:
    """Axial MR slices (phase encoding along the columns: frequency encoding along image rows'
    direction, axis 1). ``void``: "metal" (a 7-px-wide void with a bright crescent beside it along
    axis 1 on slices 2-3), "no_crescent" (the same hole, no pile-up: CSF/air), "flow" (a 2x2 flow
    void with a bright neighbour), "pe_crescent" (the crescent along the phase-encode axis only),
    or "none"."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:N, :N]
    body = ((yy - N / 2) / 26) ** 2 + ((xx - N / 2) / 24) ** 2 <= 1
    slices = []
    for k in range(n):
        img = np.where(body, 600.0, 0.0) + 120.0 * np.sin(xx / 5.0) * body
        if k in (2, 3) and void != "none":
            if void == "flow":
                img[30:32, 30:32] = 18.0
                img[30:32, 32:34] = 1300.0
            else:
                hole = ((yy - 30) / 3.5) ** 2 + ((xx - 28) / 3.5) ** 2 <= 1
                img[hole] = 18.0
                if void == "metal":
                    img[28:33, 32:34] = 1300.0  # 10 px: the pile-up beside the void along axis 1
                elif void == "pe_crescent":
                    img[34:36, 26:31] = 1300.0
        # magnitude image: Rayleigh-like noise floor everywhere (the void holds only this)
        noisy = np.hypot(img + rng.normal(0, 12, img.shape), rng.normal(0, 12, img.shape))
        slices.append(noisy)
    return _series(slices, "MR", InPlanePhaseEncodingDirection="COL")


def test_susceptibility_void_with_its_crescent_is_equipment() -> None:
    p = {"use_model": False}
    sink = EvidenceSink()
    res = art.measure_artifact(_exam(_mr("metal"), "MR"), p, sink)["artifact"]
    assert res.value == "设备" and res.details["kind"] == "susceptibility_void"
    ev = res.findings[0].evidence[0]
    assert ev.instance_index in (2, 3) and ev.limit == art.DEFAULTS["mr_void_crescent"]
    assert ev.measured is not None and ev.measured >= ev.limit
    assert ev.box is not None and ev.box[0] <= 30 <= ev.box[2] and ev.box[1] <= 28 <= ev.box[3]
    assert "磁化率" in res.findings[0].reason_zh
    off = art.measure_artifact(_exam(_mr("metal"), "MR"), {**p, "mr_void_crescent": None}, EvidenceSink())["artifact"]
    assert off.value == "无"  # the older void measure: the noise floor sits above its darkness cut


def test_dark_structures_without_a_crescent_and_flow_voids_are_not_metal() -> None:
    p = {"use_model": False}
    for kind in ("none", "no_crescent", "flow", "pe_crescent"):
        res = art.measure_artifact(_exam(_mr(kind), "MR"), p, EvidenceSink())["artifact"]
        assert res.value == "无", kind
        assert res.details["per_series"][0]["features"]["void_crescent_max"] == 0.0, kind


def test_fine_speckle_reaching_the_top_of_the_range_is_not_steel() -> None:
    """A radiograph with strong fine isotropic speckle (SD 400) has isolated dots near the image
    maximum everywhere: soft bumps, not the sharp step of steel, so none is counted; the same
    image with steel beads still counts them."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(21)
    yy, xx = np.mgrid[:192, :160]
    img = 1500 + 700 * np.exp(-(((yy - 96) / 70) ** 2 + ((xx - 80) / 55) ** 2)) + 250 * np.sin(yy / 9.0)
    texture = ndi.gaussian_filter(rng.normal(size=img.shape), 0.8)
    img = img + 400 * texture / texture.std() + rng.normal(0, 25, img.shape)
    feats, _ = art.dx_features(img.astype(np.float32))
    assert feats["fo_sat_n"] < art.DEFAULTS["dx_sat_objects"]
    top = float(img.max())
    for k in range(6):
        r, c = 40 + 14 * (k // 2), (30 if k % 2 == 0 else 125)
        img[r:r + 2, c:c + 2] = top * 0.985 + rng.normal(0, 10, (2, 2))  # steel: not one constant value
    img[2:6, 2:6] = top * 1.02  # the side marker at the display maximum
    beads, _ = art.dx_features(img.astype(np.float32))
    assert beads["fo_sat_n"] >= art.DEFAULTS["dx_sat_objects"]


def _field_with(objects: str) -> np.ndarray:
    """A 192 px radiograph: dark collimation/air frame round a body (MONOCHROME2, bone bright);
    ``objects``: "buttons" (four 6x6 px discs, ~28 px: bigger than the old 25 px cap, below the
    field's maximum), "clip_at_max" (steel segments that are the field's maximum, no brighter
    marker), "text" (noisy burned-in glyph dots at the maximum on the dark frame inside the field)."""
    rng = np.random.default_rng(31)
    yy, xx = np.mgrid[:192, :192]
    img: np.ndarray = np.full((192, 192), 60.0)
    body = (np.abs(yy - 100) < 75) & (np.abs(xx - 96) < 70)
    img[body] = 1700 + 500 * np.exp(-(((yy[body] - 100) / 60) ** 2 + ((xx[body] - 96) / 50) ** 2)) + 200 * np.sin(yy[body] / 9.0)
    img = img + rng.normal(0, 20, img.shape)
    if objects == "buttons":
        disc = ((np.mgrid[:6, :6] - 2.5) ** 2).sum(axis=0) <= 9
        for r in (50, 75, 100, 125):
            img[r:r + 6, 120:126][disc] = 3900 + rng.normal(0, 15, int(disc.sum()))
        img[30:36, 30:36] = 4050.0  # the side marker at the display maximum (flat)
    elif objects == "clip_at_max":
        for c in (45, 60, 80, 110, 130):
            img[100:102, c:c + 5] = 4000 + rng.normal(0, 15, (2, 5))
    elif objects == "text":
        for r in (4, 11, 18):  # three lines of glyph dots on the frame: they widen the field, the last is inside it
            for c in range(30, 90, 6):
                img[r:r + 2, c:c + 2] = 4000 + rng.normal(0, 15, (2, 2))
    return img.astype(np.float32)


def test_buttons_and_steel_at_the_field_maximum_count_but_text_on_the_background_does_not() -> None:
    """Validation 8245/8264 misses: 14 mm buttons (24-50 px) above the old fixed 25 px cap, and a
    bra clip whose segments are the field's maximum (the old rule took everything at the maximum
    for text); burned-in text on the background (validation 8241) must not count."""
    limit = art.DEFAULTS["dx_sat_objects"]
    buttons, _ = art.dx_features(_field_with("buttons"))
    assert buttons["fo_sat_n"] == 4
    clip, _ = art.dx_features(_field_with("clip_at_max"))
    assert clip["fo_sat_n"] >= limit
    text, _ = art.dx_features(_field_with("text"))
    assert text["fo_sat_n"] < limit
    # the size cap is data: at the old 25 px scale (0.0008 of this field) the buttons are dropped
    small, _ = art.dx_features(_field_with("buttons"), {**art.DEFAULTS, "dx_sat_max_frac": 0.0008})
    assert small["fo_sat_n"] == 0
    # without the ring rule the text counts
    loose, _ = art.dx_features(_field_with("text"), {**art.DEFAULTS, "dx_sat_ring": None})
    assert loose["fo_sat_n"] >= limit
