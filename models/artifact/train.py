"""Train the artifact detector: one tiny MLP per modality class over the classical features.

Why an MLP over measured features rather than a CNN over pixels: the artifacts differ in
where they show (a metal streak on 3 slices, ghosts in the MR background, a grid pattern
across a radiograph) and the classical measures already find those places; what they lack
is a weighing that holds across regions and scanners (a knee radiograph is anisotropic
without any motion, a tight CT field touches the FOV circle without truncation). A few
thousand series train it in seconds on one thread, and the network stays tiny (< 20 kB).

    python -m radqc.models.artifact.data /work/cache/q3/train /work/cache/q3/feat_train
    python -m radqc.models.artifact.data /work/cache/q3/val /work/cache/q3/feat_val
    python -m radqc.models.artifact.train --train /work/cache/q3/feat_train --val /work/cache/q3/feat_val --register

1.2.0 (radiograph motion features; CT and MR nets kept bit-identical from 1.1.0):

    python -m radqc.models.artifact.data SET_7203 FEAT_7203 DX    # and 7204; 7201/8201/8202 refreshed the same way
    python -m radqc.models.artifact.train --train FEAT_7201 FEAT_7203 FEAT_7204 --val FEAT_VAL \
        --keep-from artifact_1.1.0.onnx --keep CT MR --keep-threshold 0.8 --register

One ONNX file serves all three: its input is [one-hot(CT, MR, DX), CT features, MR features,
DX features] and each modality's MLP only sees its own block (normalisation inside the graph).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.artifact.data import FEATURES

MODALITIES = ("CT", "MR", "DX")
CLASSES = ("none", "motion", "equipment", "foreign_object")
HIDDEN = 16
WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "artifact.onnx"


def input_size() -> int:
    return len(MODALITIES) + sum(len(FEATURES[m]) for m in MODALITIES)


def pack(modality: str, x: np.ndarray) -> np.ndarray:
    """Rows of one modality's features -> the network's input rows."""
    out = np.zeros((len(x), input_size()), dtype=np.float32)
    out[:, MODALITIES.index(modality)] = 1.0
    start = len(MODALITIES)
    for m in MODALITIES:
        n = len(FEATURES[m])
        if m == modality:
            out[:, start:start + n] = x
        start += n
    return out


def build_net(stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlps = nn.ModuleList()
            self.slices: list[tuple[int, int]] = []
            start = len(MODALITIES)
            for i, m in enumerate(MODALITIES):
                n = len(FEATURES[m])
                self.slices.append((start, start + n))
                start += n
                mean, std = stats[m]
                self.register_buffer(f"mean{i}", torch.from_numpy(mean.astype(np.float32)))
                self.register_buffer(f"std{i}", torch.from_numpy(std.astype(np.float32)))
                self.mlps.append(nn.Sequential(nn.Linear(n, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                                               nn.Linear(HIDDEN, len(CLASSES))))

        def forward(self, x: Any) -> Any:
            out = 0
            for i, (a, b) in enumerate(self.slices):
                z = (x[:, a:b] - getattr(self, f"mean{i}")) / getattr(self, f"std{i}")
                out = out + x[:, i:i + 1] * self.mlps[i](z)
            return out

    return Net()


def load(dirpath: Path | list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Cached features of one or several sets (concatenated per modality)."""
    dirs = dirpath if isinstance(dirpath, list) else [dirpath]
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for d in dirs:
        for m in MODALITIES:
            f = d / f"{m}.npz"
            if f.is_file():
                z = np.load(f)
                parts.setdefault(m, []).append((z["x"].astype(np.float32), z["y"].astype(np.int64), z["ids"]))
    return {m: (np.concatenate([p[0] for p in ps]), np.concatenate([p[1] for p in ps]), np.concatenate([p[2] for p in ps]))
            for m, ps in parts.items()}


def train(train_dir: Path | list[Path], epochs: int = 500, seed: int = 0, balance: bool = True) -> tuple[Any, dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = load(train_dir)
    stats = {}
    for m in MODALITIES:
        x = data[m][0] if m in data else np.zeros((1, len(FEATURES[m])), np.float32)
        stats[m] = (x.mean(axis=0), np.maximum(x.std(axis=0), 1e-3))
    net = build_net(stats)
    xs = np.concatenate([pack(m, data[m][0]) for m in data])
    ys = np.concatenate([data[m][1] for m in data])
    # class weights per modality (1/sqrt frequency): rare artifacts matter as much as clean series.
    # Each modality's weights sum to len(ys) / n_modalities, so its MLP sees the same gradient
    # whatever the other modalities' row counts are (more radiographs do not move the CT net)
    w = np.ones(len(ys), dtype=np.float32)
    start = 0
    for m in data:
        y = data[m][1]
        counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float32)
        cw = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        cw = cw / cw[y].mean()
        w[start:start + len(y)] = cw[y] * (len(ys) / (len(data) * len(y)) if balance else 1.0)
        start += len(y)
    xt, yt, wt = torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(w)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-3)
    t0 = time.time()
    for _ in range(epochs):
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(net(xt), yt, reduction="none") * wt).mean()
        loss.backward()
        opt.step()
    net.eval()
    return net, {"train_s": round(time.time() - t0, 1), "epochs": epochs, "n_train": {m: int(len(data[m][1])) for m in data},
                 "final_loss": round(float(loss), 4)}


def keep_weights(net: Any, onnx_path: Path, modalities: list[str]) -> None:
    """Copy the given modalities' MLPs and normalisation from an earlier ONNX export into ``net``.

    Why: a retraining for one modality's new features should leave the other modalities'
    decisions bit-identical (their features did not change, and their validated figures
    stay true); the per-modality blocks of the graph are independent, so this is exact."""
    import onnx
    import torch
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    state = net.state_dict()
    for m in modalities:
        i = MODALITIES.index(m)
        names = [f"mean{i}", f"std{i}"] + [k for k in state if k.startswith(f"mlps.{i}.")]
        for k in names:
            if k not in init or tuple(init[k].shape) != tuple(state[k].shape):
                raise ValueError(f"{onnx_path}: no {k} of shape {tuple(state[k].shape)} to keep for {m}")
            state[k] = torch.from_numpy(np.array(init[k]))
    net.load_state_dict(state)


def best_thresholds(net: Any, val_dir: Path, grid: list[float]) -> dict[str, float]:
    """Per modality, the per-series limit with the best exam accuracy over that modality's
    validation exams (an exam holds one modality; the roll-up over its series is "any")."""
    data = load(val_dir)
    exams = {e["exam"]: e["truth"] for e in json.loads((val_dir / "exams.json").read_text()) if e["truth"]}
    value_of = {"none": "无", "motion": "运动", "equipment": "设备", "foreign_object": "异物"}
    order = ("motion", "equipment", "foreign_object", "none")
    out: dict[str, float] = {}
    for m, (x, _y, ids) in data.items():
        probs = predict(net, m, x)
        keys = [str(i).split(":")[0] for i in ids]
        scores = {}
        for t in grid:
            pred = decide(probs, t)
            by_exam: dict[str, str] = {}
            for k, p in zip(keys, pred, strict=True):
                cur = by_exam.get(k, "none")
                by_exam[k] = CLASSES[p] if order.index(CLASSES[p]) < order.index(cur) else cur
            ok = [value_of[v] == exams[k] for k, v in by_exam.items() if k in exams]
            scores[t] = float(np.mean(ok)) if ok else 0.0
        out[m] = max(grid, key=lambda t: (scores[t], -abs(t - 0.5)))
    return out


def predict(net: Any, modality: str, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(pack(modality, x))), dim=1).numpy()


def decide(probs: np.ndarray, threshold: float) -> np.ndarray:
    """The serving rule: the likeliest artifact class when its probability reaches ``threshold``."""
    k = 1 + probs[:, 1:].argmax(axis=1)
    return np.where(probs[np.arange(len(probs)), k] >= threshold, k, 0)


def evaluate(predict_fn: Any, feat_dir: Path, threshold: float | dict[str, float] = 0.5) -> dict[str, Any]:
    """Series accuracy and per-class recall per modality, and the exam roll-up vs the truth."""
    data = load(feat_dir)
    res: dict[str, Any] = {}
    by_exam: dict[str, str] = {}
    order = ("motion", "equipment", "foreign_object", "none")
    for m, (x, y, ids) in data.items():
        pred = decide(predict_fn(m, x), threshold.get(m, 0.5) if isinstance(threshold, dict) else threshold)
        rec = {CLASSES[c]: round(float((pred[y == c] == c).mean()), 4) for c in range(len(CLASSES)) if (y == c).any()}
        res[m] = {"series": int(len(y)), "accuracy": round(float((pred == y).mean()), 4), "recall": rec,
                  "confusion": np.bincount(y * 4 + pred, minlength=16).reshape(4, 4).tolist()}
        for i, p in zip(ids, pred, strict=True):
            key = str(i).split(":")[0]
            cur = by_exam.get(key, "none")
            by_exam[key] = CLASSES[p] if order.index(CLASSES[p]) < order.index(cur) else cur
    value_of = {"none": "无", "motion": "运动", "equipment": "设备", "foreign_object": "异物"}
    if not (feat_dir / "exams.json").is_file():  # a one-modality refresh (data.py ... DX): series figures only
        return res
    exams = json.loads((feat_dir / "exams.json").read_text())
    truth = {e["exam"]: e["truth"] for e in exams if e["truth"]}
    ok = [value_of[by_exam.get(k, "none")] == t for k, t in truth.items()]
    per_value: dict[str, list[bool]] = {}
    for k, t in truth.items():
        per_value.setdefault(t, []).append(value_of[by_exam.get(k, "none")] == t)
    res["exam"] = {"exams": len(ok), "accuracy": round(float(np.mean(ok)), 4),
                   "recall": {v: round(float(np.mean(r)), 4) for v, r in sorted(per_value.items())},
                   "support": {v: len(r) for v, r in sorted(per_value.items())}}
    return res


def classical_predict(modality: str, x: np.ndarray) -> np.ndarray:
    """The classical rule on cached feature rows (for comparison in the card)."""
    from radqc.pipelines.image_qc import artifact as art

    out = np.zeros((len(x), len(CLASSES)), dtype=np.float32)
    for i, row in enumerate(x):
        feats = dict(zip(FEATURES[modality], (float(v) for v in row), strict=True))
        if modality == "DX":
            cls = art.dx_classify(feats, art.DEFAULTS)[0]
        elif modality == "MR":
            cls = art.mr_classify(feats, [{"ghost": 0.0, "void_frac": 0.0}], art.DEFAULTS)[0]
        else:
            cls = art.ct_classify(feats, [{"ghost_width": 0.0, "metal_px": 0.0, "streak": 0.0, "rim_touch": 0.0,
                                           "metal_r": -1.0, "metal_c": -1.0}], art.DEFAULTS)[0]
        out[i, CLASSES.index(cls)] = 1.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=Path, required=True, nargs="+", help="one or more feature folders")
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--check", type=Path, nargs="*", help="further feature folders scored at the chosen limits (series level)")
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--register", action="store_true")
    ap.add_argument("--data", default="radqc synth --profile qc --size small, seed 7201 (600 exams)",
                    help="how the training sets were made (recorded in the registry)")
    ap.add_argument("--keep-from", type=Path, default=None, help="earlier ONNX export whose --keep modalities stay as they are")
    ap.add_argument("--keep", nargs="*", default=[], choices=MODALITIES, help="modalities whose nets and limit are kept")
    ap.add_argument("--keep-threshold", type=float, default=None, help="the kept modalities' per-series limit")
    ap.add_argument("--keep-thresholds", nargs="*", default=[], metavar="MOD=LIMIT",
                    help="a kept modality's own limit (1.3.0: MR=0.8 DX=0.85, the limits 1.2.0 registered for them)")
    ap.add_argument("--val-data", default=None, help="how the validation set was made (recorded in the registry)")
    args = ap.parse_args()
    net, info = train(args.train, args.epochs)
    info["data"] = args.data
    if args.val_data:
        info["val_data"] = args.val_data
    if args.keep_from and args.keep:
        keep_weights(net, args.keep_from, list(args.keep))
        info["kept"] = {"from": args.keep_from.name, "modalities": list(args.keep)}
    # the per-series limit that gives the best exam accuracy on validation (the roll-up is "any")
    grid = [round(float(t), 2) for t in np.arange(0.3, 0.96, 0.05)]
    scores = {t: evaluate(lambda m, x: predict(net, m, x), args.val, t)["exam"]["accuracy"] for t in grid}
    best = max(grid, key=lambda t: (scores[t], -abs(t - 0.5)))
    info["threshold"] = best if args.keep_threshold is None else args.keep_threshold
    info["threshold_scan"] = scores
    # per modality: the kept modalities keep their limit, the others get their own best one
    per = best_thresholds(net, args.val, grid)
    info["thresholds"] = {m: (info["threshold"] if m in args.keep else per[m]) for m in per}
    # a kept net keeps the limit it was validated with (per modality; --keep-threshold is one for all)
    for item in args.keep_thresholds:
        mod, _, value = item.partition("=")
        if mod in args.keep:
            info["thresholds"][mod] = float(value)
    val = evaluate(lambda m, x: predict(net, m, x), args.val, info["thresholds"])
    classical = evaluate(classical_predict, args.val)
    for extra in args.check or []:
        info.setdefault("check", {})[extra.name] = {k: v for k, v in evaluate(lambda m, x: predict(net, m, x), extra,
                                                                               info["thresholds"]).items() if k != "exam"}
    print(json.dumps({"train": info, "val": val, "val_classical": classical}, indent=1, ensure_ascii=False))
    from radqc.models.artifact.export import export

    export(net, args.out, info, val, register=args.register)


if __name__ == "__main__":  # pragma: no cover
    main()
