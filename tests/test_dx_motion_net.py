"""Radiograph motion from the pixels (models/artifact/dx_motion.py; artifact.py _dx_motion_net_rule).

The CNN must read the generator's motion smear on a view and not the same view rendered still
(same seed, same anatomy, same noise draw apart from the smear), and the rule must turn a view
the features read 无 into 运动 with the probability as its evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radqc.models.artifact.dx_motion import DxMotionNet, prepare
from radqc.pipelines.image_qc import artifact as art


def test_prepare_scales_large_views_by_whole_blocks_and_ignores_exposure() -> None:
    big = np.random.default_rng(0).normal(2000.0, 300.0, (1000, 700)).astype(np.float32)
    x = prepare(big)
    assert x.shape == (1, 1, 250, 175)  # factor 4: the longer side at most 320
    assert x.dtype == np.float32
    np.testing.assert_allclose(prepare(big * 3.0 + 500.0), x, atol=1e-4)  # exposure and offset do not matter
    small = prepare(big[:200, :150])
    assert small.shape == (1, 1, 200, 150)  # already small: untouched size
    lo, hi = np.percentile(small, [1, 99])
    assert lo == pytest.approx(0.0, abs=0.02) and hi == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="2-D"):
        prepare(np.zeros((4, 100, 100)))


class _Net:
    limit = 0.65

    def __init__(self, prob: float) -> None:
        self.prob = prob
        self.seen: list[tuple[int, ...]] = []

    def probability(self, img: np.ndarray) -> float:
        self.seen.append(img.shape)
        return self.prob


def _view(value: str = "无", shape: tuple[int, int] = (192, 144)) -> art.SeriesArtifact:
    img = np.random.default_rng(1).normal(2000.0, 50.0, shape).astype(np.float32)
    return art.SeriesArtifact("1.2.3", "DX", {"vspec_rel": 0.5}, {"motion": 0.1}, value, None, None, None, None, None, image=img)


def test_the_rule_calls_motion_at_the_limit_and_keeps_the_reading_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    p = dict(art.DEFAULTS)
    assert p["dx_motion_net"] is True
    monkeypatch.setattr(art, "_dx_motion_net", lambda _p: _Net(0.9))
    res = _view()
    art._dx_motion_net_rule(res, p)
    assert res.value == art.VALUE_OF["motion"] and res.kind == "motion_smear"
    assert (res.measured, res.limit, res.slice_index) == (0.9, 0.65, 0)
    assert res.features["motion_net"] == 0.9
    assert res.extra["classical_value"] == art.VALUE_OF["none"]  # what it replaced stays visible
    # a stricter finding of the features is not touched; a 异物 becomes 运动 (the stricter value)
    res = _view(art.VALUE_OF["foreign_object"])
    art._dx_motion_net_rule(res, p)
    assert res.value == art.VALUE_OF["motion"]
    # below the limit: unchanged, the probability recorded for the reviewer
    monkeypatch.setattr(art, "_dx_motion_net", lambda _p: _Net(0.3))
    res = _view()
    art._dx_motion_net_rule(res, p)
    assert res.value == art.VALUE_OF["none"] and res.features["motion_net"] == 0.3
    # a department's own limit (artifact.yaml) wins over the registered one
    res = _view()
    art._dx_motion_net_rule(res, {**p, "dx_motion_net_limit": 0.25})
    assert res.value == art.VALUE_OF["motion"] and res.limit == 0.25


def test_the_rule_leaves_narrow_views_and_switched_off_nets_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _Net(0.99)
    monkeypatch.setattr(art, "_dx_motion_net", lambda _p: net)
    res = _view(shape=(128, 64))  # narrower than the 80-px training crops
    art._dx_motion_net_rule(res, dict(art.DEFAULTS))
    assert res.value == art.VALUE_OF["none"] and "motion_net" not in res.features and not net.seen
    monkeypatch.undo()
    res = _view()
    art._dx_motion_net_rule(res, {**art.DEFAULTS, "dx_motion_net": False})
    assert res.value == art.VALUE_OF["none"] and "motion_net" not in res.features


def _render(out: Path, seed: int, region: str, motion: bool) -> Path:
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import Defect, ImagingSpec

    defects = [Defect("artifact", "运动", {"kind": "motion", "severity": 0.9})] if motion else []
    key = f"M{seed}{'m' if motion else 's'}"
    spec = ImagingSpec(exam_key=key, seed=seed, modality="DX", regions=[region], size="small",
                       header={"AccessionNumber": f"ACC-{key}"}, defects=defects)
    render_exam(spec, out, labels_dir=out.parent / f"labels-{key}")
    return out / key


def _views(folder: Path) -> list[np.ndarray]:
    from radqc.models.artifact.data import exam_from_folder

    return [np.asarray(s.radiograph().pixels, dtype=np.float32) for s in exam_from_folder(folder).series]


@pytest.fixture(scope="module")
def net() -> DxMotionNet:
    loaded = DxMotionNet.load()
    assert loaded is not None, "the registered dx_motion weights must load (models/registry.yaml)"
    return loaded


@pytest.mark.parametrize(("seed", "region"), [(5101, "chest"), (5102, "cervical_spine"), (5103, "knee")])
def test_the_registered_net_reads_the_smear_and_not_the_same_view_still(tmp_path: Path, net: DxMotionNet, seed: int,
                                                                        region: str) -> None:
    moved = _views(_render(tmp_path / "moved", seed, region, True))
    still = _views(_render(tmp_path / "still", seed, region, False))
    assert moved and len(moved) == len(still)
    p_moved = [net.probability(v) for v in moved]
    p_still = [net.probability(v) for v in still]
    assert max(p_still) < net.limit, p_still
    # the generator smears one view of the exam: that one reads motion
    assert max(p_moved) >= net.limit, p_moved


def test_the_exam_reads_motion_through_the_pipeline(tmp_path: Path) -> None:
    from radqc.pipelines.image_qc.run import analyse_path

    folder = _render(tmp_path / "moved", 5104, "chest", True)
    result: dict[str, Any] = analyse_path(folder, item="胸部正侧位")["exams"][0]
    assert result["artifact"]["value"] == "运动", result["artifact"]
    per = result["artifact"]["per_series"]
    # the smeared view reads motion on the pixels too, the still one does not
    nets = sorted(s["features"]["motion_net"] for s in per)
    assert len(nets) == 2 and nets[0] < 0.7 <= nets[1], per
    assert "运动" in result["artifact"]["findings"][0]["reason_zh"]
