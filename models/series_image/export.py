"""ONNX export and registration of the series thumbnail network.

The registry entry carries the head table (``output.heads``: group, field, values, in logit
order) and the thumbnail shape next to the weights' sha256, so a retrained network with a
changed vocabulary cannot be served with a stale one.

    python -m radqc.models.series_image.export --from build/series_image   # install + register
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.series_image.thumbnail import HU_WINDOWS, THUMB_SHAPE

NAME = "series_image"
VERSION = "1.0.0"
WEIGHTS = "weights/series_image.onnx"
#: Largest accepted |torch - onnxruntime| logit difference after fp16 weight storage.
MAX_EXPORT_DIFF = 0.05


def load_net(out: Path) -> tuple[Any, dict[str, Any]]:
    """The trained torch network of a training folder and its checkpoint dict."""
    import torch

    from radqc.models.series_image.heads import table_from_dict
    from radqc.models.series_image.network import ThumbNet

    ck = torch.load(out / "net.pt", map_location="cpu")
    table = table_from_dict(ck["heads"])
    net = ThumbNet(THUMB_SHAPE[0], table.n_logits, widths=tuple(ck["widths"]))
    net.load_state_dict(ck["state"])
    net.eval()
    return net, ck


def export(out: Path) -> tuple[Path, float]:
    """Write ``out/series_image.onnx`` (fp16-stored weights); returns it and the export difference."""
    from radqc.models.onnx_utils import export_onnx, max_abs_difference, store_weights_fp16

    net, _ = load_net(out)
    example = np.random.default_rng(0).random((4, *THUMB_SHAPE), dtype=np.float32)
    path = out / "series_image.onnx"
    export_onnx(net, example, path, dynamic_batch=True)
    store_weights_fp16(path)
    diff = max_abs_difference(net, path, example)
    if diff > MAX_EXPORT_DIFF:
        raise RuntimeError(f"ONNX export differs from torch by {diff:.4f} (> {MAX_EXPORT_DIFF})")
    return path, diff


def model_info(report: dict[str, Any], heads: dict[str, Any], metrics: dict[str, Any] | None = None) -> Any:
    from radqc.models.registry import ModelInfo

    training_keys = ("train_sets", "train_seeds", "val_sets", "val_seeds", "n_train", "n_val", "epochs", "best_epoch",
                     "batch", "lr", "seed", "widths", "parameters", "data_s", "train_s", "threads", "val_accuracy")
    return ModelInfo(
        name=NAME,
        version=VERSION,
        task="classification",
        modality="CT,MR,DX",
        weights=WEIGHTS,
        sha256="",
        labels=None,
        input={
            "name": "input", "layout": "NCHW", "shape": list(THUMB_SHAPE), "dtype": "float32",
            "instances": "pick_instances: first quartile, middle, third quartile by InstanceNumber",
            "kinds": {
                "hu": "CT in HU: middle [-1000,1000], [-160,240], [0,400]; q1, q3 [-100,400]; texture |x-box3| /150 HU",
                "mr/xr/picture": "/ joint 99.5th percentile: middle, q1, q3, middle equalised, middle own scale, texture",
            },
            "hu_windows": [list(w) for w in HU_WINDOWS],
            "resampling": "square field of the larger physical side (PixelSpacing), block mean + bilinear",
            "dynamic_batch": True, "opset": 17, "weights_storage": "float16",
        },
        output={"name": "logits", "kind": "one softmax per head (concatenated logits)", "heads": heads},
        metrics=metrics or {},
        card="cards/series_image.md",
        training={k: report[k] for k in training_keys if k in report}
        | {"command": "python -m radqc.models.series_image.data && "
                      "python -m radqc.models.series_image.train --out build/series_image --register"},
        description="Series classification from pixels: a 6-channel thumbnail -> role, derived type, plane, "
                    "contrast phase, kernel class, MR sequence, radiograph view, region (per modality group)",
    )


def install(out: Path, report: dict[str, Any] | None = None) -> Path:
    """Export, copy the ONNX file into models/weights and write the registry entry."""
    import shutil

    from radqc.models.registry import MODELS_DIR, register_model

    report = report or json.loads((out / "report.json").read_text(encoding="utf-8"))
    _, ck = load_net(out)
    path, diff = export(out)
    report = dict(report, export_max_abs_diff=round(diff, 5))
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    dst = MODELS_DIR / WEIGHTS
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dst)
    register_model(model_info(report, ck["heads"], metrics))
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", type=Path, required=True, help="training output folder")
    a = ap.parse_args(argv)
    print(install(a.src))


if __name__ == "__main__":
    main()
