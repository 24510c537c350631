"""CT lung-edge range reading on coarse grids and kernel-mismatch reconstruction (helper R, validation 9202).

Small hand-drawn slices: no corpus, no model files."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.types import EvidenceSink, ExamImages, SeriesImages


def _lp(**change: Any) -> dict[str, Any]:
    lp = dict(load_params("CT", "CT-CHEST-PLAIN")["range"]["lung_landmarks"])
    lp.update(change)
    return lp


def _chest(size: int = 64, wall_px: float = 4.0, septum_px: float = 4.0) -> np.ndarray:
    """A 64-px chest slice: a soft-tissue ellipse (40 HU) in air, two lungs (-850 HU) inside.

    ``wall_px``: thickness of the chest wall below the lungs; ``septum_px``: mediastinum width
    between them (0: the lungs touch on the midline)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c = (size - 1) / 2.0
    img = np.full((size, size), -1000.0)
    body = ((yy - c) / (size * 0.33)) ** 2 + ((xx - c) / (size * 0.45)) ** 2 <= 1.0
    img[body] = 40.0
    bottom = c + size * 0.33 - wall_px  # lowest row a lung may reach
    half = septum_px / 2.0
    for side in (-1, 1):
        cx = c + side * (half + size * 0.17)
        lung = (((yy - (c + 2)) / (size * 0.22)) ** 2 + ((xx - cx) / (size * 0.17)) ** 2 <= 1.0)
        lung &= (yy <= bottom) & (side * (xx - c) >= half) & body
        img[lung] = -850.0
    return img


def test_lungs_behind_a_thin_chest_wall_are_still_lung() -> None:
    # a 1-px wall below the lungs: the opened body contour breaks there and its fill leaves the lungs out
    img = _chest(wall_px=1.0)
    assert ct._lung_areas(img, (6.0, 6.0), _lp(enclosed_air_is_body=False, split_midline=False)) == []
    areas = ct._lung_areas(img, (6.0, 6.0), _lp())
    assert len(areas) == 2 and min(areas) > 1000


def test_lungs_joined_on_the_midline_are_not_taken_for_the_trachea() -> None:
    img = _chest(septum_px=0.0)
    assert ct._lung_areas(img, (6.0, 6.0), _lp(split_midline=False)) == []  # one central component
    areas = ct._lung_areas(img, (6.0, 6.0), _lp())
    assert len(areas) == 2 and min(areas) > 1000


def test_a_midline_trachea_is_still_not_lung_after_the_split() -> None:
    size = 64
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c = (size - 1) / 2.0
    img = np.full((size, size), -1000.0)
    img[((yy - c) / 20.0) ** 2 + ((xx - c) / 28.0) ** 2 <= 1.0] = 40.0
    img[((yy - c) / 2.5) ** 2 + ((xx - c) / 2.5) ** 2 <= 1.0] = -1000.0  # 30 mm trachea at 6 mm pixels
    assert ct._lung_areas(img, (6.0, 6.0), _lp(min_mean_hu=None)) == []


def _series(uid: str, kernel: str, evidence: list[tuple[str, str]], thickness: float = 1.0) -> SeriesImages:
    header = SimpleNamespace(series_uid=uid, modality="CT", slice_thickness=thickness, n_instances=20, plane="axial",
                             z_min=-100.0, z_max=0.0, window_center=500.0, window_width=2000.0, kernel=kernel,
                             recon_diameter=None)
    label = SimpleNamespace(series_uid=uid, role="original", plane="axial", derived_type=None, kernel_class="bone",
                            region="chest", evidence=[SimpleNamespace(field="kernel_class", rule=r, value=v)
                                                      for r, v in evidence])
    return SeriesImages(header=header, label=label, datasets=lambda: [], volume=None, radiograph=None)


def test_bone_window_series_with_an_unlisted_soft_kernel_name_is_a_kernel_deviation() -> None:
    # UIH B_SOFT_AA is not in the series classifier's vendor table (no ct.kernel evidence): ct.yaml's
    # kernel_names class it soft, and the bone window says the series was meant as bone
    params = load_params("CT", "CT-SPINE")
    soft_named = _series("t", "B_SOFT_AA", [("ct.window.bone", "bone")])
    bone = _series("l", "B_BONE_B", [("ct.kernel.bone", "bone"), ("ct.window.bone", "bone")])
    exam = ExamImages(study_uid="1", modality="CT", standard_code="CT-SPINE", item_codes=["CT.TSPINE.PLAIN"],
                      series=[soft_named, bone])
    r = ct._reconstruction(exam, params, EvidenceSink())
    assert r.value == "异常" and any("B_SOFT_AA" in f.reason_en for f in r.findings)
    clean = ExamImages(study_uid="1", modality="CT", standard_code="CT-SPINE", item_codes=["CT.TSPINE.PLAIN"], series=[bone])
    assert ct._reconstruction(clean, params, EvidenceSink()).value == "正常"


def _windowed(uid: str, kernel: str, center: float, width: float) -> SeriesImages:
    """A series whose classifier trusted its known kernel name (ct.kernel evidence only)."""
    s = _series(uid, kernel, [("ct.kernel.soft", "soft")], thickness=1.25)
    s.header.window_center, s.header.window_width = center, width
    s.label.kernel_class = "soft"
    return s


def test_a_soft_kernel_series_in_lung_window_is_a_kernel_deviation_not_a_window_one() -> None:
    # 9216 E00203: the lung series reconstructed with the soft kernel keeps W1500/L-600 beside the
    # soft series; read before as a soft series with a wrong window
    params = load_params("CT", "CT-CHEST-PLAIN")
    lung_soft = _windowed("a", "B", -600.0, 1500.0)
    soft = _windowed("b", "B", 40.0, 400.0)
    exam = ExamImages(study_uid="1", modality="CT", standard_code="CT-CHEST-PLAIN", item_codes=["CT.CHEST.PLAIN"],
                      series=[lung_soft, soft])
    recon = ct._reconstruction(exam, params, EvidenceSink())
    assert recon.value == "异常" and any("lung series reconstructed with a soft kernel" in f.reason_en
                                          for f in recon.findings)
    assert ct._window(exam, params, EvidenceSink()).value == "正常"
    # a wrong preset (the generator's window_wrong: centre 200-400, width 100-300) stays a window deviation
    odd = _windowed("c", "B", 267.0, 297.0)
    exam_odd = ExamImages(study_uid="1", modality="CT", standard_code="CT-CHEST-PLAIN", item_codes=["CT.CHEST.PLAIN"],
                          series=[odd, soft])
    assert ct._window(exam_odd, params, EvidenceSink()).value == "异常"
    assert ct._kernel_mismatch(odd, params["window"]) is None
    assert ct._preset_class(odd, params["window"]) is None and ct._preset_class(lung_soft, params["window"]) == "lung"
