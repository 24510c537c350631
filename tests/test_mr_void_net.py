"""MR susceptibility void from the pixels (models/artifact/mr_void.py; artifact.py _mr_void_net_rule).

The CNN must read the generator's implant void in the series that show it and not the same exam
rendered without the implant (same seed, same anatomy), and the rule must turn a series every
measured reading left 无 into 设备, pointing at the slice and place of the void."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radqc.models.artifact.mr_void import SPACING_MM, STRIDE, MrVoidNet, prepare
from radqc.pipelines.image_qc import artifact as art


def test_prepare_brings_every_matrix_to_one_pixel_size_and_the_series_scale() -> None:
    rng = np.random.default_rng(0)
    real = [rng.normal(800.0, 40.0, (256, 256)).astype(np.float32) for _ in range(3)]
    x = prepare(real, (0.86, 0.86))
    # 256 x 0.86 mm = 220 mm -> 88 px at 2.5 mm (block means of 2, then a zoom), a multiple of the stride
    assert x.shape[:2] == (3, 1) and abs(x.shape[2] - 256 * 0.86 / SPACING_MM) <= STRIDE
    assert x.shape[2] % STRIDE == 0 and x.shape[3] % STRIDE == 0
    coarse = prepare([s[::4, ::4] for s in real], (3.44, 3.44))
    assert abs(coarse.shape[2] - x.shape[2]) <= STRIDE  # the same field, the same size in pixels
    # the series' 99.5th percentile is 1: signal units do not matter, a dark slice stays dark
    np.testing.assert_allclose(prepare([s * 7.0 for s in real], (0.86, 0.86)), x, atol=1e-4)
    dim = prepare([real[0], real[1] * 0.2], (0.86, 0.86))
    assert dim[1].mean() < 0.3 * dim[0].mean()
    with pytest.raises(ValueError, match="no slices"):
        prepare([], (1.0, 1.0))


class _Net:
    limit = 0.6

    def __init__(self, prob: float) -> None:
        self.prob = prob
        self.calls = 0

    def probability(self, slices: list[np.ndarray], spacing: Any) -> tuple[float, tuple[int, float, float]]:
        self.calls += 1
        return self.prob, (1, 40.0, 30.0)


def _series(value: str = "无", computed_map: float = 0.0) -> art.SeriesArtifact:
    slices = [np.full((96, 96), float(i), dtype=np.float32) for i in range(3)]
    res = art.SeriesArtifact("1.2.3", "MR", {"void_max": 0.0, "computed_map": computed_map}, {"equipment": 0.1}, value)
    res.extra.update({"_slices": slices, "_idx": [0, 4, 8], "_spacing": (2.5, 2.5)})
    return res


def test_the_rule_calls_equipment_at_the_limit_and_points_at_the_void(monkeypatch: pytest.MonkeyPatch) -> None:
    p = dict(art.DEFAULTS)
    assert p["mr_void_net"] is True
    monkeypatch.setattr(art, "_mr_void_net", lambda _p: _Net(0.8))
    res = _series()
    art._mr_void_net_rule(res, p)
    assert res.value == art.VALUE_OF["equipment"] and res.kind == "susceptibility_void"
    assert (res.measured, res.limit) == (0.8, 0.6)
    assert res.slice_index == 4 and float(res.image[0, 0]) == 1.0  # the net's slice, by its index in the series
    assert res.box == [40.0 - 12, 30.0 - 12, 40.0 + 12, 30.0 + 12]  # rows, cols round the peak
    assert res.features["void_net"] == 0.8 and res.extra["classical_value"] == art.VALUE_OF["none"]
    # below the limit: unchanged, the probability kept for the reviewer
    monkeypatch.setattr(art, "_mr_void_net", lambda _p: _Net(0.3))
    res = _series()
    art._mr_void_net_rule(res, p)
    assert res.value == art.VALUE_OF["none"] and res.features["void_net"] == 0.3
    # a department's own limit wins over the registered one
    res = _series()
    art._mr_void_net_rule(res, {**p, "mr_void_net_limit": 0.25})
    assert res.value == art.VALUE_OF["equipment"] and res.limit == 0.25


def test_the_rule_only_adds_and_leaves_computed_maps_and_switched_off_nets_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _Net(0.99)
    monkeypatch.setattr(art, "_mr_void_net", lambda _p: net)
    res = _series(art.VALUE_OF["motion"])  # a measured finding keeps its own call
    art._mr_void_net_rule(res, dict(art.DEFAULTS))
    assert res.value == art.VALUE_OF["motion"] and net.calls == 0
    res = _series(computed_map=1.0)  # an ADC map is left to its DWI
    art._mr_void_net_rule(res, dict(art.DEFAULTS))
    assert res.value == art.VALUE_OF["none"] and net.calls == 0
    monkeypatch.undo()
    res = _series()
    art._mr_void_net_rule(res, {**art.DEFAULTS, "mr_void_net": False})
    assert res.value == art.VALUE_OF["none"] and "void_net" not in res.features


def _render(out: Path, seed: int, region: str, metal: bool) -> tuple[Path, dict[str, Any]]:
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import Defect, ImagingSpec

    defects = [Defect("artifact", "设备", {"kind": "metal"})] if metal else []
    key = f"V{seed}{'m' if metal else 's'}"
    spec = ImagingSpec(exam_key=key, seed=seed, modality="MR", regions=[region], size="small",
                       header={"AccessionNumber": f"ACC-{key}"}, defects=defects)
    truth = render_exam(spec, out, labels_dir=out.parent / f"labels-{key}")
    return out / key, truth


def _series_probs(net: MrVoidNet, folder: Path) -> dict[str, float]:
    from radqc.models.artifact.data import exam_from_folder

    out = {}
    for s in exam_from_folder(folder).series:
        slices, _, first = art._slices(s, 48)
        if first is not None and art.mr_computed_map(first):
            continue
        out[f"{s.header.series_number}:{s.header.description}"] = net.probability(slices, art.pixel_spacing(first))[0]
    return out


@pytest.fixture(scope="module")
def net() -> MrVoidNet:
    loaded = MrVoidNet.load()
    assert loaded is not None, "the registered mr_void weights must load (models/registry.yaml)"
    return loaded


@pytest.mark.parametrize(("seed", "region", "found"), [(5201, "head", True), (5202, "knee", False)])
def test_the_registered_net_reads_the_void_and_not_the_same_exam_without_the_implant(tmp_path: Path, net: MrVoidNet, seed: int,
                                                                                     region: str, found: bool) -> None:
    with_metal, _ = _render(tmp_path / "metal", seed, region, True)
    without, _ = _render(tmp_path / "clean", seed, region, False)
    p_metal = _series_probs(net, with_metal)
    p_clean = _series_probs(net, without)
    assert p_metal and p_clean
    # never a call on the exam without the implant
    assert max(p_clean.values()) < net.limit, p_clean
    # the implant raises the exam's strongest series well above its twin's (series recall is 0.35 at
    # the registered limit on validation 7523: the measured void finds most implants, the net adds
    # the ones it misses, so not every implant series reaches the limit)
    assert max(p_metal.values()) > max(p_clean.values()) + 0.2, (p_metal, p_clean)
    assert (max(p_metal.values()) >= net.limit) == found, p_metal


def test_the_pile_up_gate_keeps_dark_air_beside_bright_fat_from_reading_as_metal(net: MrVoidNet) -> None:
    """A dark hole beside tissue no brighter than the series' own bright tissue (air at a skull base
    beside fat) is not a void, however the net scores it; the same hole with a pile-up is."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:96]
    head = (np.hypot(yy - 48, xx - 48) < 40).astype(np.float32) * 600.0
    slices = []
    for _ in range(6):
        img = head + rng.normal(0.0, 15.0, head.shape).astype(np.float32)
        img[(np.hypot(yy - 40, xx - 60) < 6)] = 20.0  # the dark hole
        slices.append(img)
    plain = net.probability(slices, (2.5, 2.5))[0]
    for img in slices:
        img[(np.hypot(yy - 40, xx - 60) >= 6) & (np.hypot(yy - 40, xx - 61) < 8) & (xx > 60)] = 1100.0  # its pile-up crescent
    piled, (k, row, col) = net.probability(slices, (2.5, 2.5))
    assert plain < net.limit
    assert piled > plain
    assert net.probability(slices, (2.5, 2.5), pile_up=10.0)[0] == 0.0  # no cell that bright: nothing to read
    if piled >= net.limit:  # where it is found, the evidence points at the hole
        assert abs(row - 40) <= 8 and abs(col - 60) <= 8


def test_the_exam_reads_equipment_through_the_pipeline(tmp_path: Path) -> None:
    from radqc.pipelines.image_qc.run import analyse_path

    folder, _ = _render(tmp_path / "metal", 5201, "head", True)
    result: dict[str, Any] = analyse_path(folder, item="头颅MR平扫")["exams"][0]
    assert result["artifact"]["value"] == "设备", result["artifact"]
    nets = [s["features"].get("void_net") for s in result["artifact"]["per_series"]]
    assert any(v is not None for v in nets), result["artifact"]["per_series"]
