"""Checkpoint → ONNX → registry entry (``python -m radqc.models.segmentation.export``)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from radqc.models.onnx_utils import export_onnx, max_abs_difference, store_weights_fp16
from radqc.models.registry import MODELS_DIR, ModelInfo, get_model, load_label_set, register_model
from radqc.models.segmentation import network

log = logging.getLogger(__name__)

NAME = "ct_organs_3mm"


def export(ckpt: Path, version: str, metrics: dict | None = None, training: dict | None = None,
           arch: str = "2.5d") -> ModelInfo:
    import torch

    from radqc.models.segmentation import slices, train25d

    label_set = load_label_set("ct_organs")
    n_classes = label_set.max_label + 1
    if arch == "2.5d":
        net = train25d.build_network(n_classes)
        example_shape: tuple[int, ...] = (1, slices.CONTEXT, slices.SIZE, slices.SIZE)
        input_spec = {"spacing_mm": network.SPACING_MM, "layout": "N,C,y,x", "context_slices": slices.CONTEXT,
                      "plane": slices.SIZE}
        arch_info = {"network": "monai.networks.nets.UNet (spatial_dims=2)", "channels": list(train25d.CHANNELS),
                     "strides": list(train25d.STRIDES), "res_units": 0, "trainer": "radqc.models.segmentation.train25d"}
    else:
        net = network.build_network(n_classes)
        example_shape = (1, 1, *network.PATCH)
        input_spec = {"spacing_mm": network.SPACING_MM, "patch": list(network.PATCH), "overlap": 0.25,
                      "layout": "N,1,z,y,x"}
        arch_info = {"network": "monai.networks.nets.UNet (spatial_dims=3)", "channels": list(network.CHANNELS),
                     "strides": list(network.STRIDES), "res_units": network.RES_UNITS,
                     "trainer": "radqc.models.segmentation.train"}
    state = torch.load(ckpt, weights_only=False, map_location="cpu")
    net.load_state_dict(state["net"])
    weights = MODELS_DIR / "weights" / f"{NAME}.onnx"
    example = np.random.default_rng(0).normal(0, 0.5, example_shape).astype(np.float32)
    export_onnx(net, example, weights)
    store_weights_fp16(weights)
    diff = max_abs_difference(net, weights, example)
    log.info("exported %s (%.1f MB), max |torch - onnx| = %.4f", weights, weights.stat().st_size / 1e6, diff)
    if diff > 0.05:
        raise RuntimeError(f"ONNX output differs from torch by {diff:.4f} (> 0.05)")
    try:
        old = get_model(NAME)
        metrics = metrics if metrics is not None else old.metrics
        training = training if training is not None else old.training
    except Exception:  # noqa: BLE001 - first export
        pass
    info = ModelInfo(
        name=NAME, version=version, task="segmentation", modality="CT",
        weights=f"weights/{NAME}.onnx", sha256="", labels="ct_organs",
        input={**input_spec, "intensity": {"clip_hu": [-1000, 1600], "scale": "linear to [-1, 1]"}},
        output={"kind": "softmax logits", "classes": label_set.max_label + 1},
        metrics=metrics or {}, card=f"cards/{NAME}.md",
        training={**(training or {}), "iterations": int(state["iteration"]), **arch_info},
        description="Whole-body CT organ segmentation at 3 mm (25 structures), trained on the synthetic generator",
    )
    register_model(info)
    return get_model(NAME)


def main() -> None:
    ap = argparse.ArgumentParser(description="Export the CT organ checkpoint to ONNX and register it")
    ap.add_argument("--ckpt", type=Path, default=Path("~/.cache/radqc/train/ct_organs/run/ckpt.pt").expanduser())
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--arch", choices=["2.5d", "3d"], default="2.5d")
    ap.add_argument("--metrics", type=Path, help="JSON file of held-out metrics to put in the registry")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    info = export(args.ckpt, args.version, metrics, arch=args.arch)
    print(json.dumps({"name": info.name, "version": info.version, "sha256": info.sha256}))


if __name__ == "__main__":
    main()
