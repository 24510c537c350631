"""Train the CT organ model from scratch on synthetic cases (``python -m radqc.models.segmentation.train``).

Patches of ``network.PATCH`` voxels are drawn half around a voxel of a randomly chosen
structure (so small organs — trachea, pancreas, prostate, femoral heads — are seen as
often as the liver) and half anywhere in the case, then augmented with MONAI transforms:
affine (rotation, scaling), noise, smoothing, contrast and intensity shifts, which stand in
for vendors, kernels, contrast timing and patient size that the generator varies less
than hospitals do. Loss: Dice + cross-entropy (MONAI ``DiceCELoss``). Deterministic seeds.

The run stops at ``--iterations`` or ``--minutes``, whichever comes first, and writes
``ckpt.pt`` (resumable) and the training log; ``export.py`` turns it into ONNX.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.registry import load_label_set
from radqc.models.segmentation import network
from radqc.models.segmentation.preprocess import normalise_hu

log = logging.getLogger(__name__)


class CaseBank:
    """All training cases in memory with, per structure, a sample of voxel positions."""

    def __init__(self, paths: list[Path], n_classes: int, rng: np.random.Generator) -> None:
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.loaded: set[Path] = set()
        self.rng = rng
        self.where: dict[int, list[tuple[int, np.ndarray]]] = {c: [] for c in range(1, n_classes)}
        self.add(paths)

    def add(self, paths: list[Path]) -> int:
        """Load cases not loaded yet (the renderer may still be writing the set while training starts)."""
        rng = self.rng
        new = [p for p in paths if p not in self.loaded]
        for p in new:
            self.loaded.add(p)
            i = len(self.images)
            d = np.load(p)
            self.images.append(normalise_hu(d["hu"]))
            lab = d["labels"]
            self.labels.append(lab)
            flat = lab.ravel()
            order = np.argsort(flat, kind="stable")  # one pass instead of one scan per class
            counts = np.bincount(flat, minlength=256)
            starts = np.concatenate([[0], np.cumsum(counts)])
            for c in np.flatnonzero(counts):
                if c == 0 or c not in self.where:
                    continue
                idx = order[starts[c]:starts[c + 1]]
                take = rng.choice(idx, size=min(len(idx), 3000), replace=False)
                self.where[int(c)].append((i, np.stack(np.unravel_index(take, lab.shape), axis=1)))
        self.classes = [c for c, v in self.where.items() if v]
        return len(new)

    def sample(self, rng: np.random.Generator, size: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < 0.6:
            c = int(rng.choice(self.classes))
            case, pts = self.where[c][int(rng.integers(len(self.where[c])))]
            centre = pts[int(rng.integers(len(pts)))]
        else:
            case = int(rng.integers(len(self.images)))
            centre = np.array([int(rng.integers(n)) for n in self.images[case].shape])
        img, lab = self.images[case], self.labels[case]
        lo = [int(np.clip(c - s // 2 + rng.integers(-s // 4, s // 4 + 1), 0, max(0, n - s)))
              for c, s, n in zip(centre, size, img.shape, strict=True)]
        sl = tuple(slice(a, a + s) for a, s in zip(lo, size, strict=True))
        x, y = img[sl], lab[sl]
        pad = [(0, s - n) for s, n in zip(size, x.shape, strict=True)]
        if any(p[1] for p in pad):
            x = np.pad(x, pad, constant_values=-1.0)
            y = np.pad(y, pad, constant_values=0)
        return x, y


def augmentation(patch: tuple[int, int, int]) -> Any:
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    return Compose([
        RandAffined(keys=["image", "label"], prob=0.7, rotate_range=(0.25, 0.08, 0.08), scale_range=(0.15, 0.15, 0.15),
                    spatial_size=patch, mode=("bilinear", "nearest"), padding_mode="border"),
        RandGaussianSmoothd(keys=["image"], prob=0.2, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0)),
        RandGaussianNoised(keys=["image"], prob=0.3, std=0.03),
        RandAdjustContrastd(keys=["image"], prob=0.2, gamma=(0.8, 1.25)),
        RandScaleIntensityd(keys=["image"], prob=0.3, factors=0.08),
        RandShiftIntensityd(keys=["image"], prob=0.3, offsets=0.04),
    ])


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[int, float]:
    out = {}
    for c in range(1, n_classes):
        t = truth == c
        if not t.any():
            continue
        p = pred == c
        out[c] = float(2 * (p & t).sum() / (p.sum() + t.sum()))
    return out


def validate(net: Any, paths: list[Path], n_classes: int) -> dict[str, float]:
    """Dice on the model grid for a few held-out cases (progress signal while training)."""
    import torch

    from radqc.models.segmentation.infer import sliding_window_probabilities

    label_set = load_label_set("ct_organs")
    names = {s.label: s.name for s in label_set.structures}
    net.eval()
    scores: dict[str, list[float]] = {}
    with torch.no_grad():
        def predict(x: np.ndarray) -> np.ndarray:
            return net(torch.from_numpy(x)).numpy()

        for p in paths:
            d = np.load(p)
            prob = sliding_window_probabilities(normalise_hu(d["hu"]), predict, network.PATCH, n_classes)
            pred = prob.argmax(0)
            for c, v in dice_per_class(pred, d["labels"], n_classes).items():
                scores.setdefault(names[c], []).append(v)
    net.train()
    return {k: float(np.mean(v)) for k, v in scores.items()}


def _cases(data: Path) -> list[Path]:
    return [p for p in sorted(data.glob("*.npz")) if not p.name.endswith(".tmp.npz")]


def train(data: Path, out: Path, iterations: int, minutes: float, batch: int, lr: float, seed: int,
          threads: int, val: list[Path]) -> None:
    import torch
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    label_set = load_label_set("ct_organs")
    n_classes = label_set.max_label + 1
    paths = _cases(data)
    log.info("loading %d cases", len(paths))
    bank = CaseBank(paths, n_classes, rng)
    net = network.build_network(n_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=True)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "ckpt.pt"
    start = 0
    history: list[dict[str, Any]] = []
    if ckpt.exists():
        start, history = load_checkpoint(ckpt, net, opt)
    aug = augmentation(network.PATCH)
    aug.set_random_state(seed=seed)
    big = tuple(int(s * 1.25) for s in network.PATCH)
    t0 = time.time()
    running = []
    it = start
    for it in range(start, iterations):
        if (time.time() - t0) / 60 > minutes:
            log.info("time budget reached at iteration %d", it)
            break
        xs, ys = [], []
        for _ in range(batch):
            x, y = bank.sample(rng, big)  # type: ignore[arg-type]
            d = aug({"image": x[None], "label": y[None].astype(np.float32)})
            xs.append(np.asarray(d["image"], np.float32))
            ys.append(np.asarray(d["label"], np.float32))
        for g in opt.param_groups:
            g["lr"] = lr * (1 - it / iterations) ** 0.9
        xb, yb = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)).round()
        loss = loss_fn(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        if (it + 1) % 25 == 0:
            log.info("it %d loss %.4f (%.1f s/it)", it + 1, np.mean(running[-25:]), (time.time() - t0) / (it + 1 - start))
        if (it + 1) % 200 == 0:
            added = bank.add(_cases(data))
            if added:
                log.info("added %d new cases (%d in all)", added, len(bank.images))
        if (it + 1) % 200 == 0 or it + 1 == iterations:
            entry: dict[str, Any] = {"iteration": it + 1, "loss": float(np.mean(running[-50:]))}
            if val and (it + 1) % 400 == 0:
                dice = validate(net, val, n_classes)
                entry["val_dice_mean"] = float(np.mean(list(dice.values())))
                entry["val_dice"] = dice
                log.info("val mean dice %.3f %s", entry["val_dice_mean"], json.dumps({k: round(v, 2) for k, v in dice.items()}))
            history.append(entry)
            save_checkpoint(ckpt, net, opt, it + 1, history)
    save_checkpoint(ckpt, net, opt, it + 1, history)
    (out / "history.json").write_text(json.dumps(history, indent=1))


def run_cli(train_fn: Any, description: str, run_name: str, batch: int, lr: float, threads: int,
            iterations: int = 3000) -> None:
    """The command line shared by the 3-D and 2.5-D trainers (same data layout, same knobs)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", type=Path, default=Path("~/.cache/radqc/train/ct_organs").expanduser(),
                    help="folder with train/ and val/ npz cases (models/segmentation/data.py)")
    ap.add_argument("--out", type=Path, default=Path(f"~/.cache/radqc/train/ct_organs/{run_name}").expanduser())
    ap.add_argument("--iterations", type=int, default=iterations)
    ap.add_argument("--minutes", type=float, default=600.0)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--lr", type=float, default=lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=threads)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    val = sorted((args.data / "val").glob("*.npz"))[:2]
    train_fn(args.data / "train", args.out, args.iterations, args.minutes, args.batch, args.lr, args.seed,
             args.threads, val)


def load_checkpoint(path: Path, net: Any, opt: Any) -> tuple[int, list[dict[str, Any]]]:
    """Resume: weights and optimiser state in place; returns (iteration, history)."""
    import torch

    state = torch.load(path, weights_only=False)
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    log.info("resumed at iteration %d", int(state["iteration"]))
    return int(state["iteration"]), list(state.get("history", []))


def save_checkpoint(path: Path, net: Any, opt: Any, iteration: int, history: list[dict[str, Any]]) -> None:
    import torch

    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "iteration": iteration, "history": history}, path)


def main() -> None:
    run_cli(train, "Train the 3-D CT organ model on synthetic cases", "run", batch=2, lr=3e-3, threads=2)


if __name__ == "__main__":
    main()
