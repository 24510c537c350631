"""Train the radiograph-motion CNN (``dx_motion.py``) on generator renders.

    python -m radqc.models.artifact.dx_motion_train views SET OUT.npz        # each view + its truth
    python -m radqc.models.artifact.dx_motion_train fit --train A.npz B.npz --val C.npz [--register]

Labels come from ``imaging.applied_defects`` through ``data.series_truth``: a motion defect marks
the one view it smeared. Views with other defects (isotropic blur, grid lines, steel) are the
negatives the net must not call motion. Training crops 80-px patches (flips only: the smear's
axis is the signal, so no transposes); validation scores whole views, as serving does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.artifact.dx_motion import MODEL_NAME, prepare
from radqc.models.artifact.pixel_net_cli import binary_metrics, choose_limit, parse_args, training_data

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "dx_motion.onnx"
VERSION = "1.0.0"
CROP = 80


def extract_views(root: Path, out: Path) -> Path:
    """Every radiograph view of a ``radqc synth`` set, prepared, with its motion truth."""
    from radqc.models.artifact.data import exam_from_folder, iter_exams, series_truth

    views, labels, ids, kinds = [], [], [], []
    started = time.time()
    for n, (key, folder, truth) in enumerate(iter_exams(root)):
        if truth.get("expected_qc", {}).get("qc_class") != "DX":
            continue
        labs = series_truth(truth)
        other = sorted({str(d.get("params", {}).get("kind") or d.get("kind")) for d in truth.get("imaging", {}).get("applied_defects", [])})
        try:
            exam = exam_from_folder(folder)
        except Exception:  # noqa: BLE001 - a folder that does not read is no training data
            continue
        for s in exam.series:
            if s.header.modality not in ("DX", "CR"):
                continue
            try:
                x = prepare(np.asarray(s.radiograph().pixels, dtype=np.float32))[0, 0]
            except Exception:  # noqa: BLE001 - broken view
                continue
            if min(x.shape) < CROP:
                continue
            views.append(x.astype(np.float16))
            labels.append(int(labs.get(s.header.series_uid or "", "none") == "motion"))
            ids.append(f"{root.name}:{key}:{s.header.series_uid}")
            kinds.append(",".join(other))
        if (n + 1) % 200 == 0:
            print(f"[{n + 1}] {len(views)} views, {sum(labels)} with motion, {time.time() - started:.0f} s", flush=True)
    arr = np.empty(len(views), dtype=object)
    arr[:] = views
    np.savez(out, views=arr, y=np.array(labels), ids=np.array(ids), kinds=np.array(kinds))
    print(f"{out}: {len(views)} views, {sum(labels)} with motion")
    return out


def load_views(paths: list[Path]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    views: list[np.ndarray] = []
    ys, ids = [], []
    for p in paths:
        d = np.load(p, allow_pickle=True)
        views += [v.astype(np.float32) for v in d["views"]]
        ys.append(d["y"])
        ids.append(d["ids"])
    return views, np.concatenate(ys), np.concatenate(ids)


def build_net() -> Any:
    from torch import nn

    def block(cin: int, cout: int) -> list[Any]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    # full resolution first (a 2-px smear lives in the finest scale), then two poolings;
    # global average pooling lets one network score any view size
    return nn.Sequential(*block(1, 16), *block(16, 16), nn.MaxPool2d(2), *block(16, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 48), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 1))


def _crops(views: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((len(idx), 1, CROP, CROP), dtype=np.float32)
    for j, i in enumerate(idx):
        v = views[i]
        r = int(rng.integers(0, v.shape[0] - CROP + 1))
        c = int(rng.integers(0, v.shape[1] - CROP + 1))
        patch = v[r:r + CROP, c:c + CROP]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[::-1, :]
        out[j, 0] = patch
    return out


def score_views(net: Any, views: list[np.ndarray]) -> np.ndarray:
    import torch

    net.eval()
    out = np.empty(len(views))
    with torch.no_grad():
        for i, v in enumerate(views):
            out[i] = float(torch.sigmoid(net(torch.from_numpy(v[None, None].copy()))).item())
    return out


def fit(views: list[np.ndarray], y: np.ndarray, steps: int = 3000, batch: int = 32, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    net = build_net()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    started = time.time()
    for step in range(steps):
        net.train()
        # balanced batches: motion is rare among the views
        idx = np.concatenate([rng.choice(pos, batch // 2), rng.choice(neg, batch - batch // 2)])
        x = torch.from_numpy(_crops(views, idx, rng))
        t = torch.from_numpy(y[idx].astype(np.float32))[:, None]
        loss = loss_fn(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 250 == 0:
            print(f"step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - started:.0f} s)", flush=True)
    return net


def metrics(p: np.ndarray, y: np.ndarray, limit: float) -> dict[str, float]:
    return binary_metrics(p, y, limit, "views", "motion")


def export(net: Any, out: Path) -> None:
    import torch

    net.eval()
    example = torch.zeros(1, 1, 128, 96)
    torch.onnx.export(net, (example,), str(out), input_names=["image"], output_names=["logit"],
                      dynamic_axes={"image": {2: "height", 3: "width"}}, opset_version=17, dynamo=False)


def register(out: Path, limit: float, val: dict[str, float], val_names: list[str], data: Any, steps: int) -> None:
    """Add the exported weights to models/registry.yaml with the limit chosen on validation."""
    from radqc.models.registry import ModelInfo, register_model

    register_model(ModelInfo(
        name=MODEL_NAME, version=VERSION, task="classification", modality="DX,CR",
        weights=f"weights/{out.name}", sha256="",
        input={"name": "image", "shape": [1, 1, "height", "width"], "min_side_px": CROP,
               "preprocessing": "radqc.models.artifact.dx_motion.prepare (integer block mean to <= 320 px, "
                                "1st-99th percentile scaling)"},
        output={"name": "logit", "threshold": limit, "rule": "motion when sigmoid(logit) >= threshold"},
        metrics={"validation": val, "validation_data": val_names},
        card="cards/dx_motion.md",
        training={"data": data, "steps": steps, "crop": CROP, "batch": 32, "threads": 2,
                  "command": "python -m radqc.models.artifact.dx_motion_train fit --train TRAIN.npz ... --val VAL.npz --register"},
        description="Radiograph motion smear per view from the pixels (small CNN, global average pooling)"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__ or "", "views", 3000, WEIGHTS, argv)
    if args.cmd == "views":
        extract_views(args.set, args.out)
        return 0
    views, y, _ = load_views(args.train)
    print(f"train: {len(views)} views, {int(y.sum())} with motion")
    if not y.any() or y.all():
        raise SystemExit("the training views need both smeared and still views (render more with --profile qc-dx)")
    if args.init is not None:
        raise SystemExit("--init: the radiograph motion trainer starts from scratch (fine-tuning is for the series nets)")
    net = fit(views, y, args.steps)
    vviews, vy, _ = load_views(args.val)
    p = score_views(net, vviews)
    limit, scan = choose_limit(p, vy, "views", "motion")
    np.save(args.out.with_suffix(".val_probs.npy"), p)
    export(net, args.out)
    if args.register:
        register(args.out, float(limit), scan[limit], [x.name for x in args.val], training_data(args),
                 args.steps)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
