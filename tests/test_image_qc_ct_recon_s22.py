"""CT reconstruction per acquisition, the spine dose reference beside a head scan, and sections cut
by the reconstruction circle in the rotation reading (helper CTX6, session 22, validation i9218).

Hand-made headers and small drawn slices: no corpus, no model files."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from radqc.pipelines.image_qc.types import EvidenceSink, ExamImages, SeriesImages


def _series(uid: str, kernel: str, kclass: str, region: str, z: tuple[float, float], thickness: float = 1.25,
            phase: str | None = None, window: tuple[float, float] = (40.0, 400.0)) -> SeriesImages:
    header = SimpleNamespace(series_uid=uid, modality="CT", slice_thickness=thickness, n_instances=20, plane="axial",
                             z_min=z[0], z_max=z[1], window_center=window[0], window_width=window[1], kernel=kernel,
                             recon_diameter=None)
    label = SimpleNamespace(series_uid=uid, role="original", plane="axial", derived_type=None, kernel_class=kclass,
                            region=region, phase=phase,
                            evidence=[SimpleNamespace(field="kernel_class", rule=f"ct.kernel.{kclass}", value=kclass)])
    return SeriesImages(header=header, label=label, datasets=lambda: [], volume=None, radiograph=None)


def _exam(code: str, items: list[str], series: list[SeriesImages]) -> ExamImages:
    return ExamImages(study_uid="1", modality="CT", standard_code=code, item_codes=items, series=series)


def test_a_chest_scan_without_its_lung_series_beside_a_neck_scan_is_abnormal() -> None:
    # i9218 E00223: neck + chest order scored by CT-NECK; the chest's lung series written soft with a
    # wrong window (no lung preset to tell it by)
    params = load_params("CT", "CT-NECK")
    neck = [_series("n1", "STANDARD", "soft", "neck", (-100, 0), 5.0), _series("n2", "STANDARD", "soft", "neck", (-100, 0))]
    chest = [_series("c1", "STANDARD", "soft", "chest", (-400, -150), 5.0),
             _series("c2", "SOFT", "soft", "chest", (-400, -150), window=(273.0, 213.0))]
    r = ct._reconstruction(_exam("CT-NECK", ["CT.NECK.PLAIN", "CT.CHEST.PLAIN"], neck + chest), params, EvidenceSink())
    assert r.value == "异常" and any("lung-kernel" in f.reason_en for f in r.findings)
    lung = _series("c3", "LUNG", "lung", "chest", (-400, -150), window=(-600.0, 1500.0))
    ok = ct._reconstruction(_exam("CT-NECK", ["CT.NECK.PLAIN", "CT.CHEST.PLAIN"], neck + chest + [lung]), params,
                            EvidenceSink())
    assert ok.value == "正常"
    # a neck order alone needs no lung series
    assert ct._reconstruction(_exam("CT-NECK", ["CT.NECK.PLAIN"], neck), params, EvidenceSink()).value == "正常"


def test_each_contrast_phase_of_a_chest_needs_its_lung_series() -> None:
    # i9218 E00538: the enhanced phase's lung series met the exam-wide rule for the plain phase too
    params = load_params("CT", "CT-CHEST-PLAIN")
    plain = [_series("p1", "B", "soft", "chest", (-300, 0), 5.0, "plain"), _series("p2", "B", "soft", "chest", (-300, 0), phase="plain")]
    enh = [_series("e1", "B", "soft", "chest", (-300, 0), 5.0, "arterial"),
           _series("e2", "L", "lung", "chest", (-300, 0), phase="arterial", window=(-600.0, 1500.0))]
    exam = _exam("CT-CHEST-PLAIN", ["CT.CHEST.ENH"], plain + enh)
    assert ct._reconstruction(exam, params, EvidenceSink()).value == "异常"
    plain.append(_series("p3", "L", "lung", "chest", (-300, 0), phase="plain", window=(-600.0, 1500.0)))
    assert ct._reconstruction(_exam("CT-CHEST-PLAIN", ["CT.CHEST.ENH"], plain + enh), params, EvidenceSink()).value == "正常"


def test_a_spine_part_without_a_bone_series_is_abnormal_even_when_the_other_part_has_one() -> None:
    # i9218 E00356: T + L spine, the thoracic scan's bone series written soft (BR40)
    params = load_params("CT", "CT-SPINE")
    t = [_series("t1", "BR40", "soft", "chest", (-300, -100), 1.0)]
    lumbar = [_series("l1", "BR64", "bone", "abdomen", (-600, -350), 1.0, window=(500.0, 2000.0)),
              _series("l2", "BR40", "soft", "abdomen", (-600, -350), 3.0)]
    items = ["CT.TSPINE.PLAIN", "CT.LSPINE.PLAIN"]
    assert ct._reconstruction(_exam("CT-SPINE", items, t + lumbar), params, EvidenceSink()).value == "异常"
    t.append(_series("t2", "BR64", "bone", "chest", (-300, -100), 1.0, window=(500.0, 2000.0)))
    assert ct._reconstruction(_exam("CT-SPINE", items, t + lumbar), params, EvidenceSink()).value == "正常"


def test_a_head_scan_beside_a_cervical_spine_is_held_to_the_head_reference(monkeypatch: Any) -> None:
    # i9218 E00687 / E00702: 40-47 mGy on the head read against the spine standard's 25 mGy
    params = load_params("CT", "CT-SPINE")
    head = _series("h", "H", "head", "head", (-150, 0), 5.0)
    exam = _exam("CT-SPINE", ["CT.HEAD.PLAIN", "CT.CSPINE.PLAIN"], [head])
    monkeypatch.setattr(ct, "_ctdivol", lambda e: [(47.5, "h", "head")])
    assert ct._dose(exam, params, EvidenceSink(), {"item_regions": ["head"]}).value == "正常"
    # a spine-only order keeps the item's 25 mGy (47.5 > 1.3 x 25)
    assert ct._dose(exam, params, EvidenceSink(), {"item_regions": []}).value == "异常"
    # the item's region never lowers the reference: a chest (15) beside a T-spine stays at 25
    monkeypatch.setattr(ct, "_ctdivol", lambda e: [(30.0, "c", "chest")])
    assert ct._dose(exam, params, EvidenceSink(), {"item_regions": ["chest"]}).value == "正常"


def _disc(shift: int) -> np.ndarray:
    """A 64-px slice: a reconstruction circle (padding -3024 outside) and a 16-px-radius body shifted down."""
    yy, xx = np.mgrid[0:64, 0:64].astype(float)
    img = np.full((64, 64), -1000.0)
    img[((yy - 31.5 - shift) ** 2 + (xx - 31.5) ** 2) <= 16 ** 2] = 40.0
    img[((yy - 31.5) ** 2 + (xx - 31.5) ** 2) > 30 ** 2] = -3024.0
    return img


def test_cut_fraction_tells_a_section_cut_by_the_fov_from_a_whole_one() -> None:
    whole, cut = _disc(0), _disc(28)
    assert ct._cut_fraction(whole, whole > -500, -1500.0) == 0.0
    assert ct._cut_fraction(cut, cut > -500, -1500.0) > 0.45  # ct.yaml positioning.cut_fraction when on
