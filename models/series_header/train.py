"""Train the header classifier on the generated corpus and export it to ONNX (one command).

    python -m radqc.models.series_header.train --out models/weights/series_header.onnx --register

Training data: the cached tables of ``train_mixed`` (seed 7001) and ``train_mr`` (seed 7002)
(:mod:`.data`); early stopping and the fusion weights use ``val_mixed``/``val_mr`` only;
held-out sets are never read here. Series whose truth is incomplete (exams that reuse
another exam's pixels) are left out of training.

Description noise: on top of the generator's ~10% wrong descriptions, each epoch swaps 10% of
SeriesDescriptions with another series' description of the same modality and blanks 5%
(ProtocolName 5% / 5%), so the network learns the header facts behind the words and can be
overruled by them. Header noise: in 20% of the series each optional attribute (``DROPPABLE``:
series number, matrix, window preset, FOV, kVp, manufacturer, body part, ...) is removed with
probability 0.3, so a site that does not send one does not confuse the model. Deterministic (seeded), single-threaded, a few minutes on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from radqc.pipelines.series.features import SeriesHeader, annotate_exam
from radqc.pipelines.series.heads import HEADS, target_index

from .data import load
from .featurize import FEATURE_VERSION, Featurizer

MODELS = Path(__file__).resolve().parents[1]
DEFAULT_OUT = MODELS / "weights" / "series_header.onnx"
VERSION = "1.0.0"


def table(sets: list[str]) -> tuple[list[SeriesHeader], np.ndarray, list[dict[str, Any]]]:
    """Headers (exam context filled), target indices ``[N, heads]`` and rows of ``sets``."""
    headers: list[SeriesHeader] = []
    targets: list[list[int]] = []
    rows: list[dict[str, Any]] = []
    for name in sets:
        by_exam: dict[str, list[tuple[SeriesHeader, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
        for h, label, row in load(name):
            by_exam[row["exam"]].append((h, label, row))
        for items in by_exam.values():
            annotate_exam([h for h, _, _ in items])
            for h, label, row in items:
                if not row.get("truth_complete", True):
                    continue
                headers.append(h)
                targets.append([target_index(f, label.get(f)) for f in HEADS])
                rows.append(row)
    return headers, np.asarray(targets, np.int64), rows


def noisy_texts(headers: list[SeriesHeader], rng: random.Random) -> list[dict[str, str | None]]:
    """Per-epoch description/protocol noise (see the module docstring)."""
    pool: dict[str | None, list[str]] = defaultdict(list)
    for h in headers:
        if h.description:
            pool[h.modality].append(h.description)
    out: list[dict[str, str | None]] = []
    for h in headers:
        t: dict[str, str | None] = {}
        r = rng.random()
        if r < 0.10 and pool[h.modality]:
            t["description"] = rng.choice(pool[h.modality])
        elif r < 0.15:
            t["description"] = None
        r = rng.random()
        if r < 0.05 and pool[h.modality]:
            t["protocol"] = rng.choice(pool[h.modality])
        elif r < 0.10:
            t["protocol"] = None
        out.append(t)
    return out


#: header attributes a site may not send (or send differently); dropped at random in training so the
#: model does not depend on them (a missing attribute becomes its "missing" feature)
DROPPABLE = ("series_number", "rows", "columns", "pixel_spacing", "window_center", "window_width", "recon_diameter",
             "kvp", "field_strength", "manufacturer", "model", "spacing_between", "body_part", "study_description",
             "protocol", "echo_train_length", "flip_angle", "photometric", "laterality", "series_time")


def noisy_headers(headers: list[SeriesHeader], rng: random.Random, p_row: float = 0.2, p_attr: float = 0.3) -> list[SeriesHeader]:
    """Per-epoch header noise: in ``p_row`` of the series, each droppable attribute is removed with ``p_attr``."""
    import dataclasses

    out = []
    for h in headers:
        if rng.random() < p_row:
            drop = {a: None for a in DROPPABLE if rng.random() < p_attr}
            h = dataclasses.replace(h, **drop) if drop else h
        out.append(h)
    return out


def train(epochs: int = 40, seed: int = 0, out: Path = DEFAULT_OUT, log_every: int = 5) -> dict[str, Any]:
    import torch
    from torch import nn

    from .network import HeaderNet

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    feat = Featurizer()
    t0 = time.time()
    tr_h, tr_y, _ = table(["train_mixed", "train_mr"])
    va_h, va_y, _ = table(["val_mixed", "val_mr"])
    x_val = torch.from_numpy(feat.transform(va_h))
    y_tr, y_val = torch.from_numpy(tr_y), torch.from_numpy(va_y)
    net = HeaderNet(feat.dim)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    ce = nn.CrossEntropyLoss()
    best: tuple[float, dict[str, Any]] = (-1.0, {})
    history = []
    for epoch in range(epochs):
        net.train()
        epoch_h = noisy_headers(tr_h, rng)
        x_tr = torch.from_numpy(feat.transform(epoch_h, noisy_texts(epoch_h, rng)))
        perm = torch.randperm(len(tr_h))
        total = 0.0
        for i in range(0, len(perm), 256):
            b = perm[i:i + 256]
            logits = net.logits(x_tr[b])
            loss = sum(ce(lg, y_tr[b, k]) for k, lg in enumerate(logits))
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            total += float(loss) * len(b)
        sched.step()
        net.eval()
        with torch.no_grad():
            preds = [lg.argmax(1) for lg in net.logits(x_val)]
        acc = {f: float((p == y_val[:, k]).float().mean()) for k, (f, p) in enumerate(zip(HEADS, preds, strict=True))}
        all_ok = float(torch.stack([p == y_val[:, k] for k, p in enumerate(preds)]).all(0).float().mean())
        history.append({"epoch": epoch, "loss": total / len(tr_h), "val_all_fields": all_ok})
        if epoch % log_every == 0 or epoch == epochs - 1:
            print(f"epoch {epoch} loss {total / len(tr_h):.4f} val all-fields {all_ok:.4f} " +
                  " ".join(f"{f}={a:.3f}" for f, a in acc.items()), flush=True)
        if all_ok >= best[0]:
            best = (all_ok, {k: v.detach().clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[1])
    net.eval()
    export(net, feat, out)
    return {"train_series": len(tr_h), "val_series": len(va_h), "val_all_fields": best[0], "epochs": epochs,
            "seconds": round(time.time() - t0, 1), "seed": seed}


def export(net: Any, feat: Featurizer, out: Path) -> None:
    import onnxruntime as ort
    import torch

    from radqc.models.onnx_utils import export_onnx

    example = np.zeros((4, feat.dim), np.float32)
    example[:, 0] = 1.0
    export_onnx(net, example, out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = net(torch.from_numpy(example)).numpy()
    got = sess.run(None, {"input": example})[0]
    diff = float(np.abs(ref - got).max())
    if diff > 1e-4:
        raise RuntimeError(f"ONNX export differs from torch by {diff}")


def register(out: Path, metrics: dict[str, Any], training: dict[str, Any]) -> None:
    from radqc.models.registry import ModelInfo, register_model
    from radqc.pipelines.series.heads import slices

    rel = out.resolve().relative_to(MODELS)
    register_model(ModelInfo(
        name="series_header", version=VERSION, task="classification", modality="CT,MR,DX",
        weights=str(rel), sha256="", labels=None,
        input={"name": "input", "features": "radqc.models.series_header.featurize", "feature_version": FEATURE_VERSION,
               "dim": Featurizer().dim, "dynamic_batch": True, "opset": 17},
        output={"name": "logits", "kind": "per-field softmax probabilities, concatenated",
                "heads": {f: {"columns": list(slices()[f]), "values": list(v)} for f, v in HEADS.items()}},
        metrics=metrics, card="cards/series_header.md", training=training,
        description="Series label fields (role, derived type, plane, MR sequence, CT phase, kernel, thickness, "
                    "view, region) from DICOM header facts and hashed description n-grams; fused with header rules."))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--register", action="store_true")
    ap.add_argument("--metrics", type=Path, help="JSON file of held-out metrics to put in the registry entry")
    a = ap.parse_args(argv)
    info = train(a.epochs, a.seed, a.out)
    print(json.dumps(info))
    if a.register:
        metrics = json.loads(a.metrics.read_text()) if a.metrics else {}
        register(a.out, metrics, {"sets": {"train": ["train_mixed (seed 7001)", "train_mr (seed 7002)"],
                                           "early_stopping": ["val_mixed (8101)", "val_mr (8102)"]},
                                  "epochs": a.epochs, "seed": a.seed, "command": "python -m radqc.models.series_header.train --register"})


if __name__ == "__main__":
    main()
