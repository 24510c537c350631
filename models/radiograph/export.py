"""ONNX export and registration of ``cxr_anatomy`` (torch needed here only).

The exported graph takes ``image`` (1, 1, 192, 192) float32 — the rank-normalised input of
:mod:`.preprocess` — and returns ``probs`` (1, C, 192, 192), the per-channel sigmoid, so
serving needs no torch and no post-activation.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .data import CHANNELS
from .network import FEATURES, INPUT_SIZE, build_network

NAME, VERSION = "cxr_anatomy", "1.0.0"
WEIGHTS = "weights/cxr_anatomy.onnx"


def export(checkpoint: Path, onnx_path: Path) -> Path:
    import torch

    net = build_network(len(CHANNELS))
    net.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    net.eval()

    class WithSigmoid(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.inner(x))

    x = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(WithSigmoid(net), (x,), str(onnx_path), input_names=["image"], output_names=["probs"],
                      opset_version=17, dynamo=False)
    return onnx_path


def install(onnx_path: Path, meta: dict[str, Any], metrics: dict[str, Any] | None = None) -> None:
    """Copy the ONNX file into ``models/weights`` and register it (sha256 computed)."""
    from radqc.models.registry import MODELS_DIR, ModelInfo, register_model

    dest = MODELS_DIR / WEIGHTS
    dest.parent.mkdir(parents=True, exist_ok=True)
    if Path(onnx_path).resolve() != dest.resolve():
        shutil.copyfile(onnx_path, dest)
    register_model(ModelInfo(
        name=NAME, version=VERSION, task="segmentation", modality="DX",
        weights=WEIGHTS, sha256="",
        input={"size": [INPUT_SIZE, INPUT_SIZE], "channels": 1, "normalisation": "rank (histogram equalisation) of the "
               "MONOCHROME2-oriented image, longest side scaled to 192, zero-padded bottom/right",
               "views": ["PA", "AP", "LAT"], "regions": ["chest", "knee", "spine", "abdomen", "pelvis"]},
        output={"kind": "multi-label sigmoid", "channels": list(CHANNELS), "threshold": 0.5},
        metrics=metrics or {}, card="cards/cxr_anatomy.md",
        training={**meta, "network": f"monai UNet 2D channels={list(FEATURES)} strides=2x4 res_units=0",
                  "command": "python -m radqc.models.radiograph.train --out DIR --register"},
        description="Radiograph anatomy: lung fields, heart, clavicles, scapulae, ribs, spine, pelvis, knee bones, "
                    "L/R marker, foreign objects (masks); landmarks and positioning measurements in infer.py",
    ))
