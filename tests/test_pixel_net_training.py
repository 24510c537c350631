"""The pixel-CNN trainers' shared parts (models/artifact/pixel_net_cli.py) and one end-to-end run of
the MR void trainer on a tiny set: extract, fit, export, and the exported ONNX read by the server
class with the serving gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radqc.models.artifact.pixel_net_cli import binary_metrics, choose_limit, parse_args


def test_metrics_and_the_limit_of_best_accuracy() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.6, 0.2, 0.1, 0.1, 0.0])
    m = binary_metrics(p, y, 0.5, "series", "void")
    assert m == {"series": 8, "void": 3, "recall": pytest.approx(0.6667), "false_positive_rate": 0.2, "accuracy": 0.75}
    limit, scan = choose_limit(p, y, "series", "void")
    # 0.40 (one false call) and 0.65 (one miss) both reach 7 of 8: the tie goes to the limit nearer 0.5
    assert limit == 0.4 and scan[limit]["accuracy"] == 0.875 == scan[0.65]["accuracy"]
    assert scan[0.95]["recall"] == 0.0 and scan[0.3]["false_positive_rate"] == 0.2
    assert binary_metrics(p, np.zeros(8, int), 0.5, "views", "motion")["recall"] == 0.0  # no positives: no division by zero


def test_the_command_line_is_one_for_both_trainers(tmp_path: Path) -> None:
    a = parse_args("x", "series", 2000, tmp_path / "w.onnx", ["fit", "--train", "a.npz", "b.npz", "--val", "c.npz"])
    assert (a.cmd, a.steps, a.out, a.register, [p.name for p in a.train]) == ("fit", 2000, tmp_path / "w.onnx", False, ["a.npz", "b.npz"])
    b = parse_args("x", "views", 3000, tmp_path / "w.onnx", ["views", "SET", "OUT.npz"])
    assert (b.cmd, b.set, b.out) == ("views", Path("SET"), Path("OUT.npz"))


def test_the_mr_void_trainer_runs_end_to_end_and_its_weights_serve(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from radqc.models.artifact import mr_void_train as T
    from radqc.models.artifact.mr_void import MrVoidNet
    from radqc.models.runtime import session_for_path

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    stacks, voids = [], []
    for i in range(8):
        s = (np.hypot(yy - 24, xx - 24) < 20).astype(np.float32)[None].repeat(3, axis=0) * 0.8
        s += rng.normal(0, 0.03, s.shape).astype(np.float32)
        if i % 2:
            s[1][np.hypot(yy - 20, xx - 28) < 4] = 0.02
            s[1][(np.hypot(yy - 20, xx - 31) < 5) & (xx > 31)] = 1.8
        stacks.append(s.astype(np.float16))
        voids.append(40 * (i % 2))
    arr = np.empty(len(stacks), dtype=object)
    arr[:] = stacks
    data = tmp_path / "m.npz"
    np.savez(data, stacks=arr, void_px=np.array(voids), ids=np.array([f"s:{i}" for i in range(8)]))
    out = tmp_path / "mr_void.onnx"
    assert T.main(["fit", "--train", str(data), "--val", str(data), "--steps", "3", "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".pt").is_file() and out.with_suffix(".val_probs.npy").is_file()
    net = MrVoidNet(session_for_path(out))
    prob, (k, row, col) = net.probability([s.astype(np.float32) for s in stacks[1]], (2.5, 2.5))
    assert 0.0 <= prob <= 1.0 and 0 <= k < 3 and 0 <= row < 48 and 0 <= col < 48
    with pytest.raises(SystemExit, match="both void and clean"):
        np.savez(data, stacks=arr, void_px=np.zeros(8, int), ids=np.array([f"s:{i}" for i in range(8)]))
        T.main(["fit", "--train", str(data), "--val", str(data), "--steps", "1", "--out", str(out)])
