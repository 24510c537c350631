"""CT range, noise and sharpness (helper CR, 2026-11-23 night; worn held-out i9206): a short spine that
the lungs show complete, the scorer's implausible slope replaced by the adult typical one. Small
hand-made inputs: no corpus, no model files."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params


def _spine(monkeypatch: Any, length: float, lungs: dict[str, float | None], lung_value: Any = None,
           **range_change: Any) -> str:
    """The T-spine range by length with the lung reading stubbed: ``lungs`` the lung margins (mm) the
    reader would report, ``lung_value`` what :func:`ct._spine_lung_ends` returns."""
    params = load_params("CT", "CT-SPINE")
    params["range"] = {**params["range"], **range_change}
    series = SimpleNamespace(header=SimpleNamespace(series_uid="1.2.3"), labels={})
    monkeypatch.setattr(ct, "_length_plan", lambda *a, **k: [("TSPINE", series, length)])
    monkeypatch.setattr(ct, "_load", lambda *a, **k: RuntimeError("no pixels in this test"))
    called: list[bool] = []

    def lung_ends(exam: Any, s: Any, part: str, p: dict[str, Any], row: dict[str, Any]) -> Any:
        called.append(True)
        row["lung_margin_mm"] = dict(lungs)
        return lung_value

    monkeypatch.setattr(ct, "_spine_lung_ends", lung_ends)
    result = ct._range_by_length(SimpleNamespace(item_codes=["CT.TSPINE.PLAIN"]), params, None, {},
                                 dict(params["range"]["length_mm"]))
    assert result is not None
    return f"{result.value}{'+lungs' if called else ''}"


def test_a_slightly_short_spine_with_both_lung_ends_inside_is_a_small_patient(monkeypatch: Any) -> None:
    # i9206 E00221: 279.7 mm against 282, lung apex and base read 18 and 30 mm inside the scan
    assert _spine(monkeypatch, 279.7, {"top": 18.2, "bottom": 30.4}) == "正常+lungs"


def test_a_short_spine_stays_too_small_when_the_lungs_do_not_show_it_complete(monkeypatch: Any) -> None:
    assert _spine(monkeypatch, 279.7, {"top": None, "bottom": 30.4}) == "过小+lungs"  # one end not read
    # i9206 E00272, cut 21 mm at the bottom: the lung base's small tip read only 5.9 mm inside
    assert _spine(monkeypatch, 273.4, {"top": 17.8, "bottom": 5.9}) == "过小+lungs"
    assert _spine(monkeypatch, 279.7, {"top": 0.0, "bottom": 30.4}, ("过小", "top", 0.0)) == "过小+lungs"  # end slice shows lung
    # far shorter than any patient's T-spine: the length decides, the lungs are not asked
    assert _spine(monkeypatch, 250.0, {"top": 18.2, "bottom": 30.4}) == "过小"


def test_the_rule_is_data(monkeypatch: Any) -> None:
    assert float(load_params("CT", "CT-SPINE")["range"]["length_short_lungs_clear_mm"]) > 0
    assert _spine(monkeypatch, 279.7, {"top": 18.2, "bottom": 30.4}, length_short_lungs_clear_mm=0.0) == "过小"


class _Scorer:
    """A body-region scorer stub: score = a + b z on every slice (a flattened, blurred-looking profile)."""

    def __init__(self, a: float, b: float) -> None:
        self.a, self.b = a, b

    def score(self, image: Any) -> Any:
        z = np.asarray(self.z, dtype=float)
        return SimpleNamespace(scores=self.a + self.b * z, z_mm=z)


def test_a_landmark_is_missing_only_when_missing_at_the_typical_slope_too(monkeypatch: Any) -> None:
    """An upper abdomen scanned from 15 mm above the dome to 16 mm below the lower renal pole (i9206
    E00225) read at 10.4 mm per score unit: at the bound 9.6 the lower renal pole reads missing, at
    the typical 8.35 through the same centre it lies within the tolerance."""
    params = load_params("CT", "CT-UABD")
    scores = params["landmark_scores"]
    z_top, z_bottom = -383.4, -588.8
    # the scorer's line as read on E00225: 10.4 mm/unit, the lower renal pole extrapolated 49.6 mm below
    # its true z (the scan runs 16.4 mm past it)
    mid = (z_top + z_bottom) / 2
    renal_read = (z_bottom + 16.4) - 49.6
    b = -1.0 / 10.4
    s_mid = float(scores["lower_renal_pole"]) - (mid - renal_read) / 10.4
    a = s_mid - b * mid
    z = np.linspace(z_top, z_bottom, 10)
    stack = SimpleNamespace(z=z, hu=np.zeros((10, 4, 4)), uid="1.2.3", image=None, spacing=(3.0, 3.0), source_index=None,
                            instance_index=lambda k: k)
    scorer = _Scorer(a, b)
    scorer.z = z
    group = [SimpleNamespace(header=SimpleNamespace(z_max=z_top, z_min=z_bottom, series_uid="1.2.3", n_instances=10), labels={})]
    monkeypatch.setattr(ct, "_kernel_class", lambda s: "soft")
    monkeypatch.setattr(ct, "_scorer", lambda: scorer)
    monkeypatch.setattr(ct, "_axial", lambda exam: group)
    monkeypatch.setattr(ct, "_acquisitions", lambda axial: [group])
    monkeypatch.setattr(ct, "_first_in_order", lambda g, cache: stack)
    monkeypatch.setattr(ct, "_score_image", lambda st: None)
    monkeypatch.setattr(ct, "_note_regions", lambda *a, **k: None)
    monkeypatch.setattr(ct, "add_picture", lambda *a, **k: None)
    exam = SimpleNamespace(item_codes=["CT.UABD.PLAIN"])
    r = ct._range_by_scorer(exam, params, None, {})
    assert r.value == "正常", r.details
    # at the bound the pole reads 22.7 mm missing; at the typical slope it lies inside the tolerance
    assert r.details["bottom_margin_mm"] < -15.0 < r.details["typical_slope_margin_mm"]["bottom"]
    params["range"] = {**params["range"], "clamp_outside_to_mm_per_unit": None}
    assert ct._range_by_scorer(exam, params, None, {}).value == "过小"  # the bound: the renal pole "missing"


def test_the_expected_noise_model_decides_a_knee_bone_kernel_only() -> None:
    p = load_params("CT", None)["noise"]
    assert ct._expected_decide(p, "bone", "knee") == "ratio"
    # a bone-only spine is judged by its ratio too (CTN2, 2026-11-24); the default stays "report"
    assert ct._expected_decide(p, "bone", "lumbar_spine") == "ratio" and p["expected"]["decide"] == "report"
    assert ct._expected_decide(p, "soft", "knee") == "report"
    assert ct._expected_decide({"expected": {"decide": "both", "decide_by_class": {"head": "ratio"}}}, "head", "head") == "ratio"
    assert ct._expected_decide({"expected": {"decide": "both"}}, "head", "head") == "both"


def test_a_clean_knee_under_the_expected_level_is_not_flagged_by_the_fixed_bone_limit() -> None:
    """i9206 E00098: a 1 mm bone-kernel knee read 49.5 HU against the fixed 49.2; at its CTDIvol the
    model expects 52.4 (ratio 0.95, limit 1.5 x). The model's limit decides a knee's bone kernel."""
    model = ct.ct_noise.NoiseModel(load_params("CT", None)["noise"]["expected"], load_params("CT", None)["dose"])
    got = model.limit("bone", "knee", 113.9, 4.37, model.ctdi_ref("knee"), 1.0)
    assert got is not None
    expected, max_ratio, limit = got
    assert 45.0 < expected < 60.0 and limit > 49.54 * 1.3
    assert 100.04 > limit  # i9206 E00123, excess x 2.51: 100 HU stays above it
