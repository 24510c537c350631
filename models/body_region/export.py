"""ONNX export and registration of the slice body-region scorer.

The registry entry carries everything serving needs besides the weights: the input spec
(grid, pixel size, HU input), the calibration (standard score of every landmark) and the
landmark margin, so a retrained model cannot be served with a stale calibration.

    python -m radqc.models.body_region.export --from build/body_region   # install + register
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from radqc.models.body_region import data as D

NAME = "body_region"
VERSION = "1.0.0"
WEIGHTS = "weights/body_region.onnx"
#: A landmark is reported when its standard score lies within the scanned score range
#: widened by this many score units (~8 mm each); otherwise it is null.
LANDMARK_MARGIN = 1.0
#: Score each slice as is and mirrored left-right, and average (less per-slice noise).
FLIP_AVERAGE = True


def export_onnx(model: Any, path: Path, opset: int = 17) -> Path:
    """Export ``model`` (eval mode) with a dynamic batch axis; checks the graph with onnx."""
    import onnx
    import torch

    model.eval()
    x = torch.full((2, 1, D.GRID, D.GRID), -1000.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (x,), str(path), input_names=["hu"], output_names=["score"], opset_version=opset,
        dynamic_axes={"hu": {0: "slices"}, "score": {0: "slices"}}, dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def model_info(report: dict[str, Any], metrics: dict[str, Any] | None = None) -> Any:
    from radqc.models.registry import ModelInfo

    cal = report["calibration"]
    return ModelInfo(
        name=NAME,
        version=VERSION,
        task="slice_regression",
        modality="CT",
        weights=WEIGHTS,
        sha256="",
        labels=None,
        input={
            "name": "hu", "layout": "NCHW", "channels": 1, "size": [D.GRID, D.GRID], "pixel_mm": D.PIXEL_MM,
            "units": "HU", "clip": [D.HU_MIN, D.HU_MAX], "plane": "axial",
            "resampling": "block mean to ~pixel_mm, bilinear onto a square centred on the body median",
            "dynamic_batch": True, "opset": 17,
        },
        output={
            "name": "score", "units": "standard body: vertex 0, pubic symphysis 100",
            "landmark_scores": {k: round(v, 3) for k, v in cal["landmark_scores"].items()},
            "landmark_score_sd": {k: round(v, 3) for k, v in cal["landmark_score_sd"].items()},
            "standard_depth_mm": {k: round(v, 2) for k, v in cal["standard_depth_mm"].items()},
            "landmark_margin": LANDMARK_MARGIN,
            "empty_fraction": D.EMPTY_FRACTION,
            "flip_average": FLIP_AVERAGE,
        },
        metrics=metrics or {},
        card="cards/body_region.md",
        training={
            k: report[k] for k in ("seeds", "n_subjects", "n_slices", "steps", "batch", "seed", "real_unlabelled", "data_s", "train_s")
        } | ({"blur": report["blur"]} if (report.get("blur") or {}).get("p") else {}) | {"command": "python -m radqc.models.body_region.train --out build/body_region --register"},
        description="Body-part regression: one continuous body-position score per axial CT slice, landmarks and regions from it.",
    )


def install(out: Path, report: dict[str, Any] | None = None) -> Path:
    """Copy ``out/body_region.onnx`` into models/weights and write the registry entry."""
    from radqc.models.registry import MODELS_DIR, register_model

    report = report or json.loads((out / "training.json").read_text(encoding="utf-8"))
    metrics_file = out / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    dst = MODELS_DIR / WEIGHTS
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "body_region.onnx", dst)
    register_model(model_info(report, metrics))
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", type=Path, required=True, help="training output folder")
    a = ap.parse_args(argv)
    print(install(a.src))


if __name__ == "__main__":
    main()
