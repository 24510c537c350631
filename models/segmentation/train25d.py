"""2.5-D variant of the CT organ model: whole axial slices with their neighbours as channels.

Why a second design: on two CPU cores a 3-D UNet sees few patches per minute; a 2-D UNet
over whole 3-mm axial slices (``CONTEXT`` neighbouring slices stacked as channels) sees the
full body cross-section at once — left/right and organ neighbourhoods in one view — at
about twice the voxels per second. Both are trained on the same cases; the model card
records which one was exported and why (held-out Dice).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.registry import load_label_set
from radqc.models.segmentation.slices import CONTEXT, SIZE, fit_plane, predict_volume, slab
from radqc.models.segmentation.train import (
    CaseBank,
    _cases,
    dice_per_class,
    load_checkpoint,
    run_cli,
    save_checkpoint,
)

log = logging.getLogger(__name__)

CHANNELS = (32, 64, 128, 256, 320)
STRIDES = (2, 2, 2, 2)


def build_network(n_classes: int) -> Any:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=CONTEXT, out_channels=n_classes, channels=CHANNELS, strides=STRIDES,
                num_res_units=0, norm="instance")


def train(data: Path, out: Path, iterations: int, minutes: float, batch: int, lr: float, seed: int, threads: int,
          val: list[Path]) -> None:
    import torch
    from monai.losses import DiceCELoss
    from monai.transforms import (
        Compose,
        RandAffined,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    from radqc.models.segmentation.preprocess import normalise_hu

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    ls = load_label_set("ct_organs")
    n_classes = ls.max_label + 1
    bank = CaseBank(_cases(data), n_classes, rng)
    net = build_network(n_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    aug = Compose([
        RandAffined(keys=["image", "label"], prob=0.5, rotate_range=(0.2,), scale_range=(0.15, 0.15),
                    mode=("bilinear", "nearest"), padding_mode="border"),
        RandGaussianSmoothd(keys=["image"], prob=0.2, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0)),
        RandGaussianNoised(keys=["image"], prob=0.3, std=0.03),
        RandScaleIntensityd(keys=["image"], prob=0.3, factors=0.08),
        RandShiftIntensityd(keys=["image"], prob=0.3, offsets=0.04),
    ])
    aug.set_random_state(seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "ckpt.pt"
    start, history = 0, []
    if ckpt.exists():
        start, history = load_checkpoint(ckpt, net, opt)
    t0 = time.time()
    running: list[float] = []
    it = start
    for it in range(start, iterations):
        if (time.time() - t0) / 60 > minutes:
            log.info("time budget reached at iteration %d", it)
            break
        xs, ys = [], []
        for _ in range(batch):
            if rng.random() < 0.6:
                c = int(rng.choice(bank.classes))
                case, pts = bank.where[c][int(rng.integers(len(bank.where[c])))]
                k = int(pts[int(rng.integers(len(pts)))][0])
            else:
                case = int(rng.integers(len(bank.images)))
                k = int(rng.integers(bank.images[case].shape[0]))
            x, _ = fit_plane(slab(bank.images[case], k, -1.0), SIZE, -1.0)
            y, _ = fit_plane(bank.labels[case][k][None], SIZE, 0)
            d = aug({"image": x, "label": y.astype(np.float32)})
            xs.append(np.asarray(d["image"], np.float32))
            ys.append(np.asarray(d["label"], np.float32))
        for g in opt.param_groups:
            g["lr"] = lr * (1 - it / iterations) ** 0.9
        loss = loss_fn(net(torch.from_numpy(np.stack(xs))), torch.from_numpy(np.stack(ys)).round())
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        if (it + 1) % 25 == 0:
            log.info("it %d loss %.4f (%.2f s/it)", it + 1, np.mean(running[-25:]), (time.time() - t0) / (it + 1 - start))
        if (it + 1) % 200 == 0:
            bank.add(_cases(data))
            entry: dict[str, Any] = {"iteration": it + 1, "loss": float(np.mean(running[-50:]))}
            if val and (it + 1) % 400 == 0:
                net.eval()
                names = {s.label: s.name for s in ls.structures}
                scores: dict[str, list[float]] = {}
                with torch.no_grad():
                    for p in val:
                        dv = np.load(p)
                        prob = predict_volume(normalise_hu(dv["hu"]), lambda a: net(torch.from_numpy(a)).numpy(), n_classes)
                        for c, v in dice_per_class(prob.argmax(0), dv["labels"], n_classes).items():
                            scores.setdefault(names[c], []).append(v)
                net.train()
                dice = {k: float(np.mean(v)) for k, v in scores.items()}
                entry["val_dice_mean"] = float(np.mean(list(dice.values())))
                entry["val_dice"] = dice
                log.info("val mean dice %.3f %s", entry["val_dice_mean"], json.dumps({k: round(v, 2) for k, v in dice.items()}))
            history.append(entry)
            save_checkpoint(ckpt, net, opt, it + 1, history)
    save_checkpoint(ckpt, net, opt, it + 1, history)
    (out / "history.json").write_text(json.dumps(history, indent=1))


def main() -> None:
    run_cli(train, "Train the 2.5-D CT organ model on synthetic cases", "run25d", batch=12, lr=2e-3, threads=1)


if __name__ == "__main__":
    main()
