"""Train the MR susceptibility-void CNN (``mr_void.py``) on generator renders.

    python -m radqc.models.artifact.mr_void_train series SET OUT.npz      # each MR series + its truth
    python -m radqc.models.artifact.mr_void_train fit --train A.npz B.npz --val C.npz [--register]

Labels: the generator records, per sequence and plane, how many pixels of the implant's void it
drew (``applied_defects[kind=metal].params.void_px``); a series is positive when its own entry is
above 0 (an ADC map inherits its DWI's). The other series of an implant exam are negatives, as are
series with flow voids, ghosting, blur or noise. Computed maps (ADC) are left out, as serving
leaves them to their DWI. Series are read as the artifact measure reads
them (``artifact._slices``), so training and serving see the same slices.

Multiple-instance learning: a positive series has a void in some slice, the net is not told
which; its series logit is the highest of its slices' logit maps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.artifact.mr_void import MODEL_NAME, PILE_UP_MIN, _gated_peak, prepare
from radqc.models.artifact.pixel_mil import build_fcn, export_fcn, fit_mil
from radqc.models.artifact.pixel_net_cli import binary_metrics, choose_limit, parse_args, training_data

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "mr_void.onnx"
VERSION = "1.0.0"
MAX_SLICES = 48


def void_labels(truth: dict[str, Any]) -> dict[str, int]:
    """Series UID -> void pixels the generator drew in that series (0: none)."""
    im = truth.get("imaging", {})
    series = im.get("series", [])
    drawn: dict[str, int] = {}
    for d in im.get("applied_defects", []):
        params = d.get("params", {})
        if d.get("dimension") == "artifact" and params.get("kind") == "metal":
            for k, v in (params.get("void_px") or {}).items():
                drawn[k] = drawn.get(k, 0) + int(v)
    by_uid = {s["series_instance_uid"]: s for s in series}
    out = {}
    for s in series:
        src = by_uid.get(s.get("derived_from") or "", s)
        out[s["series_instance_uid"]] = drawn.get(f"{src.get('role')}:{src.get('plane')}", 0)
    return out


def extract_series(root: Path, out: Path) -> Path:
    """Every analysed MR series of a ``radqc synth`` set, prepared, with its void truth."""
    from radqc.models.artifact.data import iter_series_slices
    from radqc.pipelines.image_qc.artifact import mr_computed_map, pixel_spacing

    stacks, voids, ids = [], [], []
    started, shown = time.time(), 0
    for n, key, truth, s, slices, first in iter_series_slices(root, "MR", MAX_SLICES):
        if first is not None and mr_computed_map(first):
            continue  # serving leaves ADC maps to their DWI (artifact._mr_void_net_rule)
        try:
            x = prepare(slices, pixel_spacing(first))[:, 0]
        except Exception:  # noqa: BLE001 - broken series
            continue
        stacks.append(x.astype(np.float16))
        voids.append(void_labels(truth).get(s.header.series_uid or "", 0))
        ids.append(f"{root.name}:{key}:{s.header.series_uid}")
        if n // 200 > shown:
            shown = n // 200
            print(f"[{n}] {len(stacks)} series, {sum(v > 0 for v in voids)} with a void, {time.time() - started:.0f} s", flush=True)
    arr = np.empty(len(stacks), dtype=object)
    arr[:] = stacks
    np.savez(out, stacks=arr, void_px=np.array(voids), ids=np.array(ids))
    print(f"{out}: {len(stacks)} series, {sum(v > 0 for v in voids)} with a void")
    return out


def load_series(paths: list[Path]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    stacks: list[np.ndarray] = []
    vs, ids = [], []
    for p in paths:
        d = np.load(p, allow_pickle=True)
        stacks += list(d["stacks"])
        vs.append(d["void_px"])
        ids.append(d["ids"])
    return stacks, np.concatenate(vs), np.concatenate(ids)


def build_net() -> Any:
    """One channel in, one logit per 4x4 block of the slice (the void's place is the evidence)."""
    return build_fcn(1, 1)


def _augment(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = stack.astype(np.float32)
    if rng.random() < 0.5:
        a = a[:, :, ::-1]
    if rng.random() < 0.5:
        a = a[:, ::-1, :]
    if rng.random() < 0.5:  # the frequency-encode axis is rows on some scanners
        a = a.transpose(0, 2, 1)
    return a * np.float32(rng.uniform(0.85, 1.15))


def score_series(net: Any, stacks: list[np.ndarray], pile_up: float = PILE_UP_MIN) -> np.ndarray:
    """Each series' probability as serving reads it (the highest logit among cells with a pile-up)."""
    import torch

    net.eval()
    out = np.empty(len(stacks))
    with torch.no_grad():
        for i, s in enumerate(stacks):
            x = s.astype(np.float32)[:, None].copy()
            maps = net(torch.from_numpy(x)).numpy()[:, 0]
            out[i] = _gated_peak(x, maps, pile_up)[0]
    return out


def fit(stacks: list[np.ndarray], y: np.ndarray, steps: int = 2000, batch: int = 8, seed: int = 0, init: Any = None) -> Any:
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def draw(rng: np.random.Generator, step: int) -> np.ndarray:
        # balanced batches: a void is rare among the series
        return np.concatenate([rng.choice(pos, batch // 2), rng.choice(neg, batch - batch // 2)])

    return fit_mil(build_net(), stacks, y[:, None], draw, _augment, steps, seed=seed, init=init)


def metrics(p: np.ndarray, y: np.ndarray, limit: float) -> dict[str, float]:
    return binary_metrics(p, y, limit, "series", "void")


def export(net: Any, out: Path) -> None:
    export_fcn(net, out)


def register(out: Path, limit: float, val: dict[str, float], val_names: list[str], data: Any, steps: int) -> None:
    """Add the exported weights to models/registry.yaml with the limit chosen on validation."""
    from radqc.models.registry import ModelInfo, register_model

    register_model(ModelInfo(
        name=MODEL_NAME, version=VERSION, task="classification", modality="MR",
        weights=f"weights/{out.name}", sha256="",
        input={"name": "slices", "shape": ["slices", 1, "height", "width"],
               "preprocessing": "radqc.models.artifact.mr_void.prepare (2.5 mm pixels, series 99.5th percentile scaling)"},
        output={"name": "logit_map", "threshold": limit, "pile_up_min": PILE_UP_MIN,
                "rule": "void when sigmoid(max logit over cells with a pile-up >= pile_up_min x the series' p98) >= threshold"},
        metrics={"validation": val, "validation_data": val_names},
        card="cards/mr_void.md",
        training={"data": data, "steps": steps, "batch": 8, "threads": 2,
                  "command": "python -m radqc.models.artifact.mr_void_train fit --train TRAIN.npz ... --val VAL.npz --register"},
        description="MR susceptibility void per series from the pixels (small fully convolutional CNN, max over slices)"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__ or "", "series", 2000, WEIGHTS, argv)
    if args.cmd == "series":
        extract_series(args.set, args.out)
        return 0
    stacks, vpx, _ = load_series(args.train)
    y = (vpx > 0).astype(int)
    print(f"train: {len(stacks)} series, {int(y.sum())} with a void")
    if not y.any() or y.all():
        raise SystemExit("the training series need both void and clean series (render more with --profile qc-mr)")
    net = fit(stacks, y, args.steps, init=args.init)
    vstacks, vvpx, _ = load_series(args.val)
    vy = (vvpx > 0).astype(int)
    p = score_series(net, vstacks)
    limit, scan = choose_limit(p, vy, "series", "void")
    np.save(args.out.with_suffix(".val_probs.npy"), p)
    import torch

    torch.save(net.state_dict(), args.out.with_suffix(".pt"))  # for a later fine-tuning (hard negatives)
    export(net, args.out)
    if args.register:
        register(args.out, float(limit), scan[limit], [x.name for x in args.val], training_data(args),
                 args.steps)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
