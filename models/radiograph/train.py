"""Retrain ``cxr_anatomy`` from scratch: ``python -m radqc.models.radiograph.train --out DIR``.

Renders the training exams from the synthetic generator (seeds ``0..n_exams-1``, all inside
:data:`~radqc.models.radiograph.data.TRAIN_SEEDS`), trains the U-Net on one CPU thread with
fixed seeds, exports ONNX (:mod:`.export`) and, with ``--register``, writes the weights to
``models/weights/cxr_anatomy.onnx`` and registers them. The whole run is sized to stay
under 35 minutes of one CPU core (data ~4 min, training ~20 min).

Augmentation happens *before* the rank normalisation of :mod:`.preprocess`: random zoom
and shift, blur, extra noise and edge enhancement (what consoles and detectors vary), so
the network learns shapes rather than one vendor's look-up table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .data import CHANNELS, Case, training_cases
from .network import INPUT_SIZE, build_network
from .preprocess import equalise, fit, resize, to_mono2

STORE = 256  # longest side kept per case before augmentation


def clip_to_field(case: Case) -> np.ndarray:
    """Target masks: anatomy only where the detector was exposed (the net cannot see the rest)."""
    masks = case.masks.copy()
    col = case.truth.get("collimation_px")
    if col:
        r0, r1 = col["rows"]
        c0, c1 = col["cols"]
        keep = np.zeros(masks.shape[1:], bool)
        keep[r0:r1, c0:c1] = True
        masks[:, ~keep] = 0
    return masks


def store(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 mono2, masks uint8) at longest side ``STORE``."""
    img = to_mono2(case.pixels, case.mono1)
    fr = fit(img.shape, STORE)
    small = resize(img, fr.inner, "box")
    masks = clip_to_field(case)
    m = np.stack([resize(ch.astype(np.float32), fr.inner, "box") > 0.5 for ch in masks]).astype(np.uint8)
    return small, m


def augment(img: np.ndarray, masks: np.ndarray, rng: np.random.Generator, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Random zoom/shift into a ``size`` canvas, blur, noise, edge enhancement; then rank-normalise."""
    from scipy.ndimage import gaussian_filter

    zoom = float(rng.uniform(0.8, 1.2)) if rng.random() < 0.8 else 1.0
    fr = fit(img.shape, int(round(size * zoom)))
    a = resize(img, fr.inner, "box")
    m = np.stack([resize(ch.astype(np.float32), fr.inner, "bilinear") > 0.5 for ch in masks])
    spread = float(np.percentile(a, 95) - np.percentile(a, 5)) or 1.0
    if rng.random() < 0.5:
        a = gaussian_filter(a, float(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.4:
        low = gaussian_filter(a, float(rng.uniform(2, 8)))
        a = a + float(rng.uniform(0.2, 1.0)) * (a - low)
    if rng.random() < 0.5:
        a = a + rng.normal(0, spread * float(rng.uniform(0.005, 0.05)), a.shape).astype(np.float32)
    a = equalise(a)
    canvas = np.zeros((size, size), np.float32)
    target = np.zeros((masks.shape[0], size, size), np.float32)
    h, w = a.shape
    # place: top-left anchored (as at inference) half of the time, else a random offset
    if rng.random() < 0.5:
        oy = ox = 0
    else:
        oy = int(rng.integers(min(0, size - h), max(0, size - h) + 1))
        ox = int(rng.integers(min(0, size - w), max(0, size - w) + 1))
    ys, xs = max(0, oy), max(0, ox)
    ye, xe = min(size, oy + h), min(size, ox + w)
    canvas[ys:ye, xs:xe] = a[ys - oy:ye - oy, xs - ox:xe - ox]
    target[:, ys:ye, xs:xe] = m[:, ys - oy:ye - oy, xs - ox:xe - ox]
    return canvas, target


def train(out: Path, n_exams: int = 520, steps: int = 3500, batch: int = 6, lr: float = 3e-3, seed: int = 0,
          log: Any = print) -> dict[str, Any]:
    import torch
    from monai.losses import DiceLoss

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    items: list[tuple[np.ndarray, np.ndarray]] = []
    regions: dict[str, int] = {}
    chunk = 40
    for first in range(0, n_exams, chunk):
        for case in training_cases(min(chunk, n_exams - first), first_seed=first):
            items.append(store(case))
            regions[case.region] = regions.get(case.region, 0) + 1
        log(f"data: {min(first + chunk, n_exams)} exams, {len(items)} projections, {time.time() - t0:.0f} s")
    t_data = time.time() - t0
    net = build_network(len(CHANNELS))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-3, smooth_dr=1e-3)
    bce = torch.nn.BCEWithLogitsLoss()
    net.train()
    t1 = time.time()
    losses = []
    for step in range(steps):
        idx = rng.integers(0, len(items), batch)
        xs, ys = zip(*(augment(*items[int(i)], rng) for i in idx), strict=True)
        x = torch.from_numpy(np.stack(xs)[:, None])
        y = torch.from_numpy(np.stack(ys))
        logits = net(x)
        loss = bce(logits, y) + dice(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step} loss {np.mean(losses[-50:]):.4f} {time.time() - t1:.0f} s")
        if step % 500 == 499:
            torch.save(net.state_dict(), out / "cxr_anatomy.pt")  # a usable checkpoint while training runs
    t_train = time.time() - t1
    net.eval()
    torch.save(net.state_dict(), out / "cxr_anatomy.pt")
    meta = {"n_exams": n_exams, "seeds": [0, n_exams - 1], "projections": len(items), "regions": regions,
            "steps": steps, "batch": batch, "lr": lr, "seed": seed, "data_s": round(t_data, 1),
            "train_s": round(t_train, 1), "final_loss": round(float(np.mean(losses[-50:])), 4)}
    (out / "train_meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoint, the ONNX file and the log")
    p.add_argument("--exams", type=int, default=520)
    p.add_argument("--steps", type=int, default=3500)
    p.add_argument("--register", action="store_true", help="copy to models/weights/cxr_anatomy.onnx and register")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    logf = open(a.out / "train.log", "a", encoding="utf-8")  # noqa: SIM115

    def log(msg: str) -> None:
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    meta = train(a.out, n_exams=a.exams, steps=a.steps, log=log)
    from .export import export

    onnx_path = export(a.out / "cxr_anatomy.pt", a.out / "cxr_anatomy.onnx")
    log(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB)")
    if a.register:
        from .export import install

        install(onnx_path, meta)
        log("registered cxr_anatomy")


if __name__ == "__main__":
    main()
