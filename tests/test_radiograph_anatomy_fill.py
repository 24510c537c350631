"""cxr_anatomy on padded images (constant fill) and the classical lung fields of a real CR.

Why these tests: the real-derived CR shift variants pad the real chest with a constant background
fill; the network read the padded image as a different picture and its lungs spread into the fill
(docs/image-qc-accuracy.md, "Real-derived CR chest"). The analyser now reads the image inside
the fill and puts the masks back in the full frame, so padding must move the masks, not change them.
The classical fallback used to drop every row that was mostly dark, which cut real lungs into slabs.
"""

from __future__ import annotations

import numpy as np
import pytest

from radqc.models.radiograph import classical
from radqc.models.radiograph.data import HELDOUT_SEEDS, render_cases
from radqc.models.radiograph.infer import RadiographAnatomyModel
from radqc.models.radiograph.preprocess import flat_fill_box
from radqc.models.registry import get_model
from tests.test_radiograph_anatomy import _dice

SEED = HELDOUT_SEEDS.start + 101


@pytest.fixture(scope="module")
def model() -> RadiographAnatomyModel:
    return RadiographAnatomyModel(get_model("cxr_anatomy"))


def test_flat_fill_box_finds_constant_padding_only() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 10.0, (60, 80)).astype(np.float32)
    assert flat_fill_box(img) == (0, 60, 0, 80)  # noisy border: nothing is fill
    padded = np.full((60 + 10 + 4, 80 + 0 + 20), 137.0, np.float32)
    padded[10:70, 0:80] = img
    assert flat_fill_box(padded) == (10, 70, 0, 80)
    assert flat_fill_box(np.zeros((20, 20), np.float32)) == (0, 20, 0, 20)  # blank: left alone


def test_padding_moves_the_masks_without_changing_them(model: RadiographAnatomyModel) -> None:
    case = render_cases(SEED, "chest", ("PA",), "small", defects=[], vendor="GE", modality="DX")[0]
    sp = (case.spacing_mm, case.spacing_mm)
    base = model.analyse(case.pixels, sp, case.view, case.region, mono1=case.mono1)
    nr, nc = case.pixels.shape
    pad = nc // 4
    fill = float(np.median(np.concatenate([case.pixels[0], case.pixels[-1]])))
    padded = np.full((nr + 2 * pad, nc + 2 * pad), fill, np.float32)
    padded[pad: pad + nr, 0:nc] = case.pixels  # body on the image left, as cr_shift_left
    res = model.analyse(padded, sp, case.view, case.region, mono1=case.mono1)
    for lung in ("lung_left", "lung_right"):
        back = res.masks[lung][pad: pad + nr, 0:nc]
        assert res.masks[lung].sum() == pytest.approx(back.sum(), rel=0.01)  # nothing in the fill
        assert _dice(back, base.masks[lung]) > 0.85, lung
    # the lung centroid is measured against the padded (detector) frame: it moved left by `pad`
    dx0 = base.measurements["lung_centroid_offset_px"]["x"]
    dx1 = res.measurements["lung_centroid_offset_px"]["x"]
    assert dx1 - dx0 == pytest.approx(-pad, abs=0.08 * pad)


def _two_lungs(width_each: float, band_rows: int = 0) -> np.ndarray:
    """Rank-like image (bone bright): two tall dark lung fields beside a bright mediastinum,
    bright chest walls, optionally a dark band of air across the top joining them to the sides."""
    h, w = 120, 120
    img = np.full((h, w), 0.8, np.float32)
    half = int(width_each * w)
    c = w // 2
    img[15:105, c - 4 - half: c - 4] = 0.2
    img[15:105, c + 4: c + 4 + half] = 0.2
    if band_rows:
        img[8: 8 + band_rows, :] = 0.1
    return img


def test_classical_lungs_keep_wide_lungs_whole() -> None:
    # lungs over 70 % of each row: the old "mostly dark row = air" rule removed every lung row
    lr, ll = classical.classical_lungs(_two_lungs(0.42))
    assert lr.any() and ll.any()
    for lung in (lr, ll):
        rows = np.nonzero(lung.any(axis=1))[0]
        assert rows[-1] - rows[0] >= 80  # the whole 90-row field, not slabs
        assert len(rows) == rows[-1] - rows[0] + 1
    assert classical.centroid(lr)[1] < classical.centroid(ll)[1]  # patient's right on image left


def test_classical_lungs_cut_the_air_band_above_the_shoulders() -> None:
    lr, ll = classical.classical_lungs(_two_lungs(0.3, band_rows=12))
    assert lr.any() and ll.any()
    for lung in (lr, ll):
        # the band beside the apices (air reaching the image sides) is not lung
        assert not lung[:, :3].any() and not lung[:, -3:].any()
        assert lung[60].sum() >= 30


def test_real_cr_padded_reads_like_the_real_cr(model: RadiographAnatomyModel) -> None:
    from radqc.dicom.volume import load_radiograph
    from radqc.samples import sample_file

    path = sample_file("pydicom-data", "RG1_UNCI.dcm")
    if path is None:
        pytest.skip("real sample pydicom-data RG1_UNCI.dcm not cached (radqc.samples)")
    rg = load_radiograph(path)
    img = rg.pixels
    base = model.analyse(img, (0.2, 0.2), "PA", "CHEST", mono1=False)
    pad = 250  # 50 mm at 0.2 mm, as the real-derived cr_shift_right variant
    padded = np.full((img.shape[0] + 2 * pad, img.shape[1] + 2 * pad), float(np.median(img[0])), np.float32)
    padded[pad: pad + img.shape[0], 2 * pad:] = img
    res = model.analyse(padded, (0.2, 0.2), "PA", "CHEST", mono1=False)
    for lung in ("lung_left", "lung_right"):
        assert res.masks[lung][:pad].sum() == 0 and res.masks[lung][:, : 2 * pad].sum() == 0
        back = res.masks[lung][pad: pad + img.shape[0], 2 * pad:]
        assert _dice(back, base.masks[lung]) > 0.8, lung
    off0, off1 = base.measurements["lung_centroid_offset_mm"], res.measurements["lung_centroid_offset_mm"]
    assert off1["x"] - off0["x"] == pytest.approx(50.0, abs=6.0)
    assert off1["y"] == pytest.approx(off0["y"], abs=6.0)
    # the apices reach the top of this image (variants.yaml): the lung fields start near it
    top = min(np.nonzero(base.masks[lung].any(axis=1))[0][0] for lung in ("lung_left", "lung_right"))
    assert top < 0.1 * img.shape[0]


def test_real_cr_cut_at_the_bottom_keeps_its_lung_bases(model: RadiographAnatomyModel) -> None:
    """The real-derived cr_range_bottom variant: a quarter of the rows cut off below. The left
    costophrenic angle lies below the cut, so the left lung field must run along the bottom edge
    (the Otsu-only lungs stopped about 40 mm above it and the range read 正常)."""
    from radqc.dicom.volume import load_radiograph
    from radqc.samples import sample_file

    path = sample_file("pydicom-data", "RG1_UNCI.dcm")
    if path is None:
        pytest.skip("real sample pydicom-data RG1_UNCI.dcm not cached (radqc.samples)")
    img = load_radiograph(path).pixels
    cut = img[: img.shape[0] - int(round(0.25 * img.shape[0]))]
    res = model.analyse(cut, (0.2, 0.2), "PA", "CHEST", mono1=False)
    assert res.measurements["lung_source"] == "classical"
    left = res.masks["lung_left"]
    cols = np.nonzero(left.any(axis=0))[0]
    assert left[-5:].any(axis=0).sum() >= 0.15 * (cols[-1] - cols[0] + 1)
    assert res.measurements["costophrenic_angle_in_field"]["left"] is False
    # the two lungs stay apart (no bridge across the mediastinum)
    assert not (res.masks["lung_left"] & res.masks["lung_right"]).any()
    assert classical.centroid(res.masks["lung_right"])[1] < img.shape[1] / 2 < classical.centroid(left)[1]
