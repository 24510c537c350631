"""Train the series thumbnail network on the synthetic corpus's thumbnail caches.

    python -m radqc.models.series_image.data                   # build the caches first
    python -m radqc.models.series_image.train --out build/series_image [--register]

Training sets ``train_mixed`` + ``train_mr`` (generator seeds 7001, 7002); model selection
on ``val_mixed`` + ``val_mr`` (8101, 8102): the epoch with the best mean per-head
validation accuracy is kept. Held-out sets are never read here (``evaluate.py`` does that
for the model card only).

One softmax head per (modality group, field) with a masked cross-entropy: a head's loss
covers only series of its group whose label is in the head's vocabulary. Augmentations
stand in for what the small synthetic images do not vary: scale and shift (matrix and FOV),
q1/q3 channel swap (instances sorted head-first or feet-first), left-right flips for
cross-sections, a few HU of calibration offset, gamma for MR/radiograph contrast, texture
channel gain (reconstruction kernels at other pixel sizes) and noise.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.series_image.data import CACHE, load_cache
from radqc.models.series_image.heads import HeadTable, load_heads
from radqc.models.series_image.thumbnail import HU_WINDOWS, THUMB_SHAPE

#: The lead's corpus (/work/cache/series, seeds 7001, 7002) plus extra generator sets made for
#: this model (``radqc synth --profile ct|mr|dx``, seeds 7003-7005; ``extra.py``, seed 7100:
#: CT exams with every derived series in every region; see the model card).
TRAIN_SETS = ("train_mixed", "train_mr", "train_ct", "train_mr2", "train_dx", "train_ct_derived")
TRAIN_SEEDS = {"train_mixed": 7001, "train_mr": 7002, "train_ct": 7003, "train_mr2": 7004, "train_dx": 7005,
               "train_ct_derived": 7100}
VAL_SETS = ("val_mixed", "val_mr")
IGNORE = -1
#: Heads trained with class weights ~ 1/sqrt(frequency).
BALANCED_FIELDS = ("phase", "sequence")


def encode_labels(metas: list[dict[str, Any]], table: HeadTable) -> np.ndarray:
    """(N, n_heads) int64 target index per head, ``IGNORE`` where the head does not apply."""
    y = np.full((len(metas), len(table.heads)), IGNORE, dtype=np.int64)
    for i, m in enumerate(metas):
        group = table.group_of(m.get("modality"))
        if not m.get("ok", True):
            continue
        for j, h in enumerate(table.heads):
            if h.group != group:
                continue
            t = h.target(m.get("label") or {})
            if t is not None:
                y[i, j] = t
    return y


def load_sets(names: tuple[str, ...], cache: Path = CACHE) -> tuple[np.ndarray, list[dict[str, Any]]]:
    xs, ms = [], []
    for n in names:
        x, m = load_cache(n, cache)
        xs.append(x)
        ms.extend(m)
    return np.concatenate(xs), ms


def _kind_codes(metas: list[dict[str, Any]]) -> np.ndarray:
    codes = {"hu": 0, "mr": 1, "xr": 2, "picture": 3}
    return np.array([codes.get(str(m.get("kind")), 3) for m in metas], dtype=np.int64)


def augment(x: Any, kinds: Any, gen: Any) -> Any:
    """Batch augmentation (torch tensors): see the module docstring for why each one."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    hu = kinds == 0
    xr = kinds == 2
    # q1 / q3 swap
    swap = torch.rand(n, generator=gen) < 0.5
    if swap.any():
        x = x.clone()
        s_hu = swap & hu
        s_ot = swap & ~hu
        x[s_hu, 3], x[s_hu, 4] = x[s_hu, 4].clone(), x[s_hu, 3].clone()
        x[s_ot, 1], x[s_ot, 2] = x[s_ot, 2].clone(), x[s_ot, 1].clone()
    # left-right flip of cross-sections (not radiographs: a flipped chest film is a different picture)
    flip = (torch.rand(n, generator=gen) < 0.5) & ~xr
    if flip.any():
        x[flip] = torch.flip(x[flip], dims=[3])
    # HU calibration offset (+-12 HU) on the windowed channels
    delta = (torch.rand(n, generator=gen) - 0.5) * 24.0
    widths = torch.tensor([hi - lo for lo, hi in HU_WINDOWS], dtype=x.dtype)
    for c in range(5):
        inside = (x[:, c] > 0) & (x[:, c] < 1)
        shift = (delta / widths[c])[:, None, None] * hu[:, None, None]
        x[:, c] = torch.where(inside, (x[:, c] + shift).clamp(0, 1), x[:, c])
    # gamma for non-HU intensities
    gamma = torch.exp((torch.rand(n, generator=gen) - 0.5) * 0.6)[:, None, None, None]
    ot = (~hu)[:, None, None, None]
    chans = torch.zeros(1, x.shape[1], 1, 1, dtype=torch.bool)
    chans[0, [0, 1, 2, 4]] = True
    x = torch.where(ot & chans, x.clamp_min(1e-6) ** gamma, x)
    # texture gain
    gain = torch.exp((torch.rand(n, generator=gen) - 0.5) * 0.8)[:, None, None]
    x[:, 5] = (x[:, 5] * gain).clamp(0, 1)
    # scale and shift
    scale = 1.0 + (torch.rand(n, generator=gen) - 0.5) * 0.3
    tx = (torch.rand(n, generator=gen) - 0.5) * 0.16
    ty = (torch.rand(n, generator=gen) - 0.5) * 0.16
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = 1.0 / scale
    theta[:, 1, 1] = 1.0 / scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # noise
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * 0.03
    x = (x + sigma * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x


def head_accuracy(logits: np.ndarray, y: np.ndarray, table: HeadTable) -> dict[str, float]:
    """Accuracy per ``group.field`` over the series the head applies to."""
    out = {}
    for j, h in enumerate(table.heads):
        m = y[:, j] != IGNORE
        if m.any():
            pred = logits[m, h.start:h.stop].argmax(1)
            out[f"{h.group}.{h.field}"] = float((pred == y[m, j]).mean())
    return out


def predict_logits(net: Any, x: np.ndarray, batch: int = 512) -> np.ndarray:
    import torch

    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(net(torch.from_numpy(x[i:i + batch].astype(np.float32))).numpy())
    return np.concatenate(outs)


def train(out: Path, epochs: int = 30, batch: int = 64, lr: float = 3e-3, seed: int = 0,
          cache: Path = CACHE, widths: tuple[int, int, int, int] = (16, 32, 64, 128),
          train_sets: tuple[str, ...] = TRAIN_SETS) -> dict[str, Any]:
    """Train, keep the best validation epoch, write ``out/net.pt`` and ``out/report.json``."""
    import torch

    from radqc.models.series_image.network import ThumbNet

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    t0 = time.time()
    table = load_heads()
    train_sets = tuple(t for t in train_sets if (cache / f"{t}.npz").is_file())
    xtr, mtr = load_sets(train_sets, cache)
    xva, mva = load_sets(VAL_SETS, cache)
    ytr, yva = encode_labels(mtr, table), encode_labels(mva, table)
    keep = (ytr != IGNORE).any(1)
    xtr, ytr, ktr = xtr[keep], ytr[keep], _kind_codes(mtr)[keep]
    data_s = time.time() - t0
    net = ThumbNet(THUMB_SHAPE[0], table.n_logits, widths=widths)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = int(np.ceil(len(xtr) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(xtr.astype(np.float32))
    yt = torch.from_numpy(ytr)
    kt = torch.from_numpy(ktr)
    # class weights ~ 1/sqrt(frequency) for the balanced fields: the rare contrast phases still
    # count. Not for role/derived type: a spectral mono image looks like a soft-kernel axial
    # one, and up-weighting "mono" only moved soft axial series to it (run r2).
    ces = []
    for j, h in enumerate(table.heads):
        counts = np.bincount(ytr[:, j][ytr[:, j] != IGNORE], minlength=len(h.values)).astype(np.float64)
        w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
        if h.field not in BALANCED_FIELDS:
            w = np.ones_like(counts)
        w = w / max(1e-12, float((w * counts).sum() / max(1.0, counts.sum())))
        ces.append(torch.nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32), ignore_index=IGNORE,
                                             label_smoothing=0.05, reduction="sum"))
    best: dict[str, Any] = {"score": -1.0}
    history = []
    t1 = time.time()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * batch:(s + 1) * batch]
            xb = augment(xt[idx], kt[idx], gen)
            z = net(xb)
            loss = torch.zeros(())
            for j, h in enumerate(table.heads):
                yj = yt[idx, j]
                n_valid = int((yj != IGNORE).sum())
                if n_valid:
                    loss = loss + ces[j](z[:, h.start:h.stop], yj) / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        acc = head_accuracy(predict_logits(net, xva), yva, table)
        score = float(np.mean(list(acc.values())))
        history.append({"epoch": epoch, "loss": round(total / steps_per_epoch, 4), "val_mean": round(score, 4)})
        print(f"epoch {epoch:2d} loss {total / steps_per_epoch:.4f} val {score:.4f} "
              + " ".join(f"{k}={v:.3f}" for k, v in acc.items()), flush=True)
        if score >= best["score"]:
            best = {"score": score, "epoch": epoch, "acc": acc,
                    "state": {k: v.clone() for k, v in net.state_dict().items()}}
    train_s = time.time() - t1
    net.load_state_dict(best["state"])
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"state": best["state"], "widths": widths, "heads": table.to_dict()}, out / "net.pt")
    report = {
        "train_sets": list(train_sets), "val_sets": list(VAL_SETS),
        "train_seeds": [TRAIN_SEEDS.get(t) for t in train_sets],
        "val_seeds": [8101, 8102], "n_train": int(len(xtr)), "n_val": int(len(xva)), "epochs": epochs,
        "best_epoch": best["epoch"], "batch": batch, "lr": lr, "seed": seed, "widths": list(widths),
        "parameters": int(sum(p.numel() for p in net.parameters())), "data_s": round(data_s, 1),
        "train_s": round(train_s, 1), "val_accuracy": {k: round(v, 4) for k, v in best["acc"].items()},
        "history": history, "threads": 1,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("build/series_image"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--widths", type=int, nargs=4, default=[16, 32, 64, 128])
    ap.add_argument("--train-sets", nargs="+", default=list(TRAIN_SETS))
    ap.add_argument("--register", action="store_true", help="export ONNX and register it (export.py)")
    args = ap.parse_args(argv)
    report = train(args.out, args.epochs, args.batch, args.lr, args.seed, args.cache,
                   tuple(args.widths), tuple(args.train_sets))  # type: ignore[arg-type]
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=1))
    if args.register:
        from radqc.models.series_image.export import install

        install(args.out, report)


if __name__ == "__main__":
    main()
