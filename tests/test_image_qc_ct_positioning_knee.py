"""CT positioning on a knee (CTN3, 2026-11-24): a knee's near-round section still gives its axis
(ct.yaml positioning.min_elongation_by_part), so a rotated knee reads 不标准 instead of 无法评估."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from radqc.pipelines.image_qc import ct
from radqc.pipelines.image_qc.measure_common import load_params
from tests.test_image_qc_ct import RecordingSink


def _ellipse_stack(deg: float, ratio: float = 1.03, n: int = 12, size: int = 128) -> SimpleNamespace:
    """Axial slices of a soft-tissue ellipse (second-moment ratio ``ratio``) turned by ``deg``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float) - size / 2.0
    t = math.radians(deg)
    u = xx * math.cos(t) + yy * math.sin(t)
    v = -xx * math.sin(t) + yy * math.cos(t)
    a = 40.0
    b = a / math.sqrt(ratio)
    img = np.where((u / a) ** 2 + (v / b) ** 2 <= 1.0, 40.0, -1000.0).astype(np.float32)
    hu = np.repeat(img[None], n, axis=0)
    return SimpleNamespace(hu=hu, spacing=(1.5, 1.5), uid="1.2.3", instance_index=lambda k: k)


def _run(monkeypatch: pytest.MonkeyPatch, codes: list[str], deg: float, ratio: float) -> ct.DimensionResult:
    stack = _ellipse_stack(deg, ratio)
    monkeypatch.setattr(ct, "_axial_stack", lambda exam, cache: stack)
    exam = SimpleNamespace(item_codes=codes)
    return ct._positioning(exam, load_params("CT", "CT-KNEE-PLAIN"), RecordingSink(), {})


def test_rules_lower_the_elongation_bar_for_knees() -> None:
    p = load_params("CT", "CT-KNEE-PLAIN")["positioning"]
    assert float(p["min_elongation_by_part"]["KNEE"]) < float(p["min_elongation"])


def test_rotated_knee_is_assessed(monkeypatch: pytest.MonkeyPatch) -> None:
    # a knee-like section (variance ratio ~1.07) turned 12 degrees: 不标准 on a knee
    res = _run(monkeypatch, ["CT.KNEE.PLAIN"], 12.0, 1.07)
    assert res.value == "不标准"
    assert 6.0 < abs(res.details["rotation_deg"]) < 14.0
    # the same section not turned: 标准
    assert _run(monkeypatch, ["CT.KNEE.PLAIN"], 0.0, 1.07).value == "标准"


def test_round_section_elsewhere_still_not_assessable(monkeypatch: pytest.MonkeyPatch) -> None:
    # the body bar is unchanged: the same near-round section on another item gives no axis
    res = _run(monkeypatch, ["CT.UABD.PLAIN"], 12.0, 1.07)
    assert res.value == "无法评估"
