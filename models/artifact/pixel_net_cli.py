"""What the pixel-CNN trainers of the artifact detector share (``dx_motion_train``, ``mr_void_train``):
the command line (an extract command per set, then ``fit``), the validation metrics and the
choice of the limit on validation.

Why shared: each trainer differs in what it reads (views, series), its network and its truth; the
way a limit is chosen and reported must not differ, or two model cards would quote figures that
mean different things.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def binary_metrics(p: np.ndarray, y: np.ndarray, limit: float, unit: str, positive: str) -> dict[str, float]:
    """Counts, recall, false-positive rate and accuracy of ``p >= limit`` against ``y`` (1 = positive)."""
    pred = p >= limit
    return {unit: int(len(y)), positive: int(y.sum()),
            "recall": round(float(pred[y == 1].mean()), 4) if y.any() else 0.0,
            "false_positive_rate": round(float(pred[y == 0].mean()), 4) if (y == 0).any() else 0.0,
            "accuracy": round(float((pred == (y == 1)).mean()), 4)}


def choose_limit(p: np.ndarray, y: np.ndarray, unit: str, positive: str) -> tuple[float, dict[float, dict[str, float]]]:
    """The validation scan over limits 0.30-0.95 and the limit of best accuracy (ties: nearest 0.5)."""
    scan = {round(float(t), 2): binary_metrics(p, y, float(t), unit, positive) for t in np.arange(0.3, 0.96, 0.05)}
    limit = max(scan, key=lambda t: (scan[t]["accuracy"], -abs(t - 0.5)))
    print(json.dumps({"limit": limit, "val": scan[limit],
                      "scan": {k: (s["recall"], s["false_positive_rate"]) for k, s in scan.items()}}))
    return limit, scan


def parse_args(doc: str, extract_cmd: str, default_steps: int, weights: Path, argv: list[str] | None = None) -> argparse.Namespace:
    """``EXTRACT SET OUT.npz`` or ``fit --train ... --val ... [--steps] [--out] [--register] [--data] [--init]``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser(extract_cmd)
    v.add_argument("set", type=Path)
    v.add_argument("out", type=Path)
    f = sub.add_parser("fit")
    f.add_argument("--train", type=Path, nargs="+", required=True)
    f.add_argument("--val", type=Path, nargs="+", required=True)
    f.add_argument("--steps", type=int, default=default_steps)
    f.add_argument("--out", type=Path, default=weights)
    f.add_argument("--register", action="store_true")
    f.add_argument("--data", default="", help="how the training sets were made (recorded in the registry)")
    f.add_argument("--init", type=Path, default=None, help="fine-tune from these torch weights (the .pt a fit saved)")
    return ap.parse_args(argv)


def training_data(args: argparse.Namespace) -> Any:
    """What the registry records as the training data: ``--data`` or the training files' names."""
    return args.data or [x.name for x in args.train]
