"""Radiograph positioning, session 18 (DXP2): a chest rotation sign within noise of its baseline
does not veto the other one, and tall lung fields veto a shallow inspiration read from the rib
spacings alone."""

from __future__ import annotations

import copy

from radqc.pipelines.image_qc import radiograph as rg
from radqc.pipelines.image_qc.radiograph import load_params

POS = load_params("DX-CHEST-PA")["positioning"]


class _Sink:
    def __init__(self) -> None:
        self.found: list[str] = []

    def find(self, dim, check_id, value, zh, en, ev) -> None:  # noqa: ANN001
        self.found.append(value)


def _rotation(monkeypatch, heart: float, off: float, p: dict) -> tuple[int, dict]:  # noqa: ANN001
    monkeypatch.setattr(rg, "heart_spine_offset", lambda analysis, px: heart)
    details: dict = {}
    n = rg._chest_rotation(_Sink(), object(), {"rotation_offset_mm": off}, 2.0, p,
                           lambda *a, **k: None, False, details)
    return n, details


def test_weak_disagreeing_sign_lets_the_strong_one_decide(monkeypatch):  # noqa: ANN001
    # 9209 E00086: heart +5.1 spreads, clavicle offset -1.1 spreads (the other way, within noise)
    n, d = _rotation(monkeypatch, 21.5, 6.9, POS)
    assert n == 1 and d["rotation_score"] > POS["chest_rotation"]["max_single_score"]


def test_without_the_weak_sign_rule_the_disagreement_vetoes(monkeypatch):  # noqa: ANN001
    p = copy.deepcopy(POS)
    p["chest_rotation"]["weak_sign_score"] = None
    assert _rotation(monkeypatch, 21.5, 6.9, p)[0] == 0


def test_strong_disagreeing_signs_still_veto(monkeypatch):  # noqa: ANN001
    # heart +5.1 spreads against a clavicle offset 3 spreads the other way: not noise, not judged
    assert _rotation(monkeypatch, 21.5, 18.0, POS)[0] == 0


def test_straight_chest_not_flagged(monkeypatch):  # noqa: ANN001
    assert _rotation(monkeypatch, 15.0, 3.0, POS)[0] == 0


def test_inspiration_height_has_an_aspect_veto():
    assert float(POS["inspiration_height"]["max_aspect"]) >= float(POS["short_lung_aspect"])
