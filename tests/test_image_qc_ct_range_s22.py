"""CT spine range / centring (CTR6, 2026-11-24): the air behind the back is not lung on a targeted FOV, and a
two-part order's centring is read against the part its measured series scanned."""

from __future__ import annotations

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from tests.test_image_qc_ct import exam, series


def _spine_fov_slice(band_behind: bool, lungs: bool, size: int = 64, px: float = 3.5) -> np.ndarray:
    """A targeted FOV (3.5 mm pixels, centre near the canal): a body filling the field, two lung sections
    beside and in front of the centre, and optionally a lung-like (-860 HU) band of blurred air behind the back."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    img = np.full((size, size), 40.0)
    if lungs:
        for col in (c - 14, c + 14):
            img[((yy - (c - 8)) / 9.0) ** 2 + ((xx - col) / 6.0) ** 2 <= 1.0] = -850.0
    if band_behind:
        img[int(c + 17):, :] = -860.0  # ~60-110 mm behind the centre
    return (img + np.random.default_rng(1).normal(0, 5.0, img.shape)).astype(np.float32)


@pytest.fixture
def lp() -> dict:
    p = load_params("CT", "CT-SPINE")["range"]
    limit = p["spine_lung_max_posterior_mm"]
    assert limit is not None and 20.0 <= float(limit) <= 60.0
    return {**p["lung_landmarks"], "open_fov": True, "open_fov_max_posterior_mm": limit}


def test_band_behind_the_back_is_not_lung(lp: dict) -> None:
    img = _spine_fov_slice(band_behind=True, lungs=False)
    without = {**lp, "open_fov_max_posterior_mm": None}
    assert max(ct._lung_areas(img, (3.5, 3.5), without), default=0.0) >= 300.0  # the old reading: "lung"
    assert max(ct._lung_areas(img, (3.5, 3.5), lp), default=0.0) < 300.0


def test_lungs_beside_the_spine_are_kept(lp: dict) -> None:
    img = _spine_fov_slice(band_behind=True, lungs=True)
    areas = ct._lung_areas(img, (3.5, 3.5), lp)
    assert len(areas) == 2 and min(areas) >= 300.0


def test_stack_part_pairs_acquisitions_head_to_foot() -> None:
    order = [str(x) for x in load_params("CT", "CT-SPINE")["range"]["part_order"]]
    t = series("t", z=[0.0 - 10.0 * i for i in range(30)])
    lumbar = series("l", z=[-280.0 - 10.0 * i for i in range(22)])
    e = exam(lumbar, t, code="CT-SPINE", item_codes=["CT.TSPINE.PLAIN", "CT.LSPINE.PLAIN"])
    assert ct._stack_part(e, order, "l") == "LSPINE"
    assert ct._stack_part(e, order, "t") == "TSPINE"
    # one acquisition for two parts: not paired (the first code's part stands, as before)
    assert ct._stack_part(exam(t, code="CT-SPINE", item_codes=["CT.TSPINE.PLAIN", "CT.LSPINE.PLAIN"]), order, "t") is None


def test_targeted_centre_follows_the_part() -> None:
    p = load_params("CT", "CT-SPINE")["centring"]
    e = exam(series("h"), code="CT-SPINE", item_codes=["CT.HEAD.PLAIN", "CT.CSPINE.PLAIN"])
    assert ct._targeted_centre(e, p) == tuple(float(v) for v in p["targeted_centre_mm"]["CSPINE"])
    assert ct._targeted_centre(e, p, "HEAD") is None  # a head series is read on its image centre
    assert ct._targeted_centre(e, p, "LSPINE") == tuple(float(v) for v in p["targeted_centre_mm"]["LSPINE"])


def test_targeted_fov_has_per_axis_limits() -> None:
    from radqc.pipelines.image_qc.types import EvidenceSink
    from tests.test_image_qc_ct import spine_series

    params = load_params("CT", "CT-SPINE")
    ey = params["centring"]["targeted_centre_mm"]["LSPINE"][1]
    lim = params["centring"]["targeted_axis_limit_mm"]
    codes = ["CT.LSPINE.PLAIN"]
    # 21 mm posterior and 7 mm lateral: 22.1 mm from the expected centre, past the 22 mm radius, within each axis
    r = ct.measure_ct(exam(spine_series((7.0, ey + 21.0)), code="CT-SPINE", item_codes=codes), params, EvidenceSink())["centring"]
    assert r.value == "正常", r.details
    assert r.details["offset_mm"] > float(params["centring"]["limit_mm"])
    down = ct.measure_ct(exam(spine_series((0.0, ey + float(lim["y"]) + 4.0)), code="CT-SPINE", item_codes=codes), params,
                         EvidenceSink())["centring"]
    assert down.value == "偏下"
