"""The L/R lead marker read from the pixels (radiograph.find_marker) and combined with the analyser's."""

from __future__ import annotations

import numpy as np

from radqc.pipelines.image_qc import radiograph as rq


def _field(seed: int, size: int = 200) -> np.ndarray:
    return np.full((size, size), 1500.0) + np.random.default_rng(seed).normal(0, 20, (size, size))


def _glyph(letter: str, height: int = 14) -> np.ndarray:
    from radqc.datasets.synthetic.imaging.image_ops import text_mask  # the generator's glyph renderer

    return text_mask(letter, height)


def test_glyph_below_burned_text_filling_over_a_percent_of_the_field() -> None:
    """Burned-in text clipped at the maximum over > 1% of the field used to push the glyph (one
    level below) out of the top percentile: the glyph went unseen (held-out 9204 E00096)."""
    img = _field(1)
    rng = np.random.default_rng(2)
    img[2:32, 2:150] = np.where(rng.random((30, 148)) < 0.2, 4095, 1500)  # ~890 px of text at 4095 (> 2%)
    g = _glyph("L")
    img[60:60 + g.shape[0], 170:170 + g.shape[1]][g] = 4050
    m = rq.find_marker(img, (0, 200, 0, 200), 1.0)
    assert m is not None and m["present"] and m["text"] == "L" and m["side_of_image"] == "right"


def test_a_sliver_is_not_read_as_a_letter() -> None:
    """A 2-px wide strip at the maximum (the real CR's field-edge penumbra) is no glyph."""
    img = _field(3)
    img[100:132, 150:152] = 4095
    m = rq.find_marker(img, (0, 200, 0, 200), 1.0)
    assert m is None or not m.get("text")


def test_conclusive_absence_overrides_the_analyser() -> None:
    img = _field(4)
    m = rq.find_marker(img, (0, 200, 0, 200), 1.0)
    assert m is not None and m["present"] is False
    net = {"present": True, "text": "R", "side_of_image": "left", "box": [1, 5, 1, 5]}
    assert rq._combined_marker(net, m)["present"] is False


def test_text_at_the_maximum_leaves_the_search_inconclusive() -> None:
    """A glyph may lie under burned-in text clipped at the maximum: no verdict from the pixels,
    the analyser's reading stands."""
    img = _field(5)
    img[20:26, 20:60] = np.where(np.random.default_rng(6).random((6, 40)) < 0.5, 4095, 1500)
    m = rq.find_marker(img, (0, 200, 0, 200), 1.0)
    assert m is None or m.get("present") is not False
    net = {"present": True, "text": "L", "side_of_image": "right", "box": [1, 5, 1, 5]}
    assert rq._combined_marker(net, m)["present"] is True


def test_missing_marker_found_on_the_view() -> None:
    """End to end on a view: the analyser claims a marker, the pixels show none -> IQC-MARKER."""
    from radqc.pipelines.image_qc.types import Evidence

    img = _field(7)
    pix = rq.find_marker(img, (0, 200, 0, 200), 1.0)
    v = rq._View("1.5", "AP", None)
    params = rq.load_params("DX-LSPINE-APLAT")
    rq._positioning(v, type("A", (), {"masks": {}})(), {"marker": {"present": True, "text": None, "side_of_image": "left"}},
                    1.0, params, False,
                    lambda *a, **k: Evidence(series_uid="1.5", instance_index=0, measured=a[1], limit=a[2]),
                    pix, None)
    assert v.values["positioning"] == "不标准"
    assert v.details["positioning"]["marker"]["present"] is False
