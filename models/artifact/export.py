"""Export the artifact detector to ONNX and register it (torch needed only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.artifact.data import FEATURES

NAME = "artifact"
VERSION = "1.3.0"


def export(net: Any, out: Path, info: dict[str, Any], val: dict[str, Any], *, register: bool = False) -> Path:
    """Write ``out`` (ONNX, dynamic batch), check it against torch, optionally register it."""
    from radqc.models.artifact.train import CLASSES, MODALITIES, input_size, pack
    from radqc.models.onnx_utils import export_onnx, max_abs_difference

    example = np.concatenate([pack(m, np.random.default_rng(0).normal(size=(4, len(FEATURES[m]))).astype(np.float32))
                              for m in MODALITIES])
    export_onnx(net, example, out)
    diff = max_abs_difference(net, out, example)
    if diff > 1e-3:
        raise RuntimeError(f"ONNX export differs from torch by {diff}")
    if register:
        from radqc.models.registry import ModelInfo, register_model

        weights = str(out.relative_to(Path(__file__).resolve().parent.parent)) if out.is_absolute() else str(out)
        metrics = {"validation": {m: {k: v for k, v in val[m].items() if k != "confusion"} for m in MODALITIES if m in val},
                   "validation_exam": val.get("exam"),
                   "data": str(info.get("val_data") or "radqc synth --profile qc seed 8201 (200 exams, small)")}
        register_model(ModelInfo(
            name=NAME, version=VERSION, task="classification", modality="CT,MR,DX", weights=weights, sha256="",
            input={"name": "input", "shape": ["batch", input_size()], "layout": "[one-hot CT,MR,DX] + CT + MR + DX features",
                   "features": {m: list(FEATURES[m]) for m in MODALITIES},
                   "extractor": "radqc.pipelines.image_qc.artifact (ct_series_features, mr_series_features, dx_features)"},
            output={"name": "logits", "classes": list(CLASSES), "values": ["无", "运动", "设备", "异物"],
                    "threshold": float(info.get("threshold", 0.5)),
                    "thresholds": {m: float(t) for m, t in (info.get("thresholds") or {}).items()},
                    "rule": "likeliest artifact class when its softmax probability >= the modality's threshold "
                            "(thresholds, else threshold), else none"},
            metrics=metrics, card="cards/artifact.md",
            training={"data": "radqc synth --profile qc seed 7201 (600 exams, small)", **info, "threads": 1,
                      "command": "python -m radqc.models.artifact.data SET FEAT && python -m radqc.models.artifact.train "
                                 "--train FEAT_TRAIN --val FEAT_VAL --register"},
            description="Artifact detector per series: classical artifact features -> none / motion / equipment / "
                        "foreign object (one small MLP per modality class: CT, MR, radiograph)"))
    return out
