"""Train the CT artifact CNN (``ct_net.py``) on generator renders.

    python -m radqc.models.artifact.ct_net_train series SET OUT.npz      # each analysed CT series + its truth
    python -m radqc.models.artifact.ct_net_train fit --train A.npz B.npz --val C.npz [--register]
    python -m radqc.models.artifact.ct_net_train clean OUT.npz FOLDER... [--half lower|upper]  # clean real series

Labels: per series from the generator's applied defects (``radqc.models.artifact.data.series_truth``:
CT motion, metal, truncation and foreign objects mark every reconstruction of the acquisition).
Series are read as the artifact measure reads them (``artifact.select_series`` and ``_slices``, then
``ct_net.pick_slices``), so training and serving see the same slices. Render training data with
``radqc synth --profile qc-ct`` (artifacts six times as often as in the qc mix).

Multiple-instance learning (``pixel_mil``): a series' logit per class is the highest cell of any
of its slices' maps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.artifact.ct_net import (
    CLASSES,
    FILL,
    MODEL_NAME,
    MOTION_PART_MAX,
    SLICE_PROB,
    hu_windows,
    keep_body,
    pick_slices,
    prepare,
)
from radqc.models.artifact.pixel_mil import build_fcn, export_fcn, fit_mil
from radqc.models.artifact.pixel_net_cli import binary_metrics, parse_args, training_data

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "ct_artifact_net.onnx"
VERSION = "1.0.0"
#: a class's limit is the lowest that keeps false calls on validation series without that class at
#: or under this rate (a false call turns a clean exam's grade down; a miss leaves it as before)
MAX_FALSE_RATE = 0.005
#: label index of each series class in the stored files (0: none)
LABELS = ("none", *CLASSES)
#: the exam's other image defects that make a clean series a hard negative, drawn ``HARD_WEIGHT``
#: times as often: blur and noise soften the outline as a ghost does (the first net called 4 blurred
#: clean exams of validation 7533 运动), a rotated or off-centre body meets the field's edge
HARD_KINDS = ("blur", "excess_noise", "kernel_nonstandard", "patient_rotation", "off_centre", "thickness_nonstandard")
HARD_WEIGHT = 4.0
#: clean real series (``clean``) are few and unlike every generator body: drawn this many times as
#: often as a plain clean synthetic series (6 real series -> about a tenth of the clean draws)
REAL_WEIGHT = 100.0


def exam_defect_kinds(truth: dict[str, Any]) -> str:
    """The exam's image-defect kinds other than artifacts, comma-separated (stored per series)."""
    kinds = {str(d.get("params", {}).get("kind")) for d in truth.get("expected_qc", {}).get("deductions", [])
             if d.get("dimension") != "artifact"}
    return ",".join(sorted(k for k in kinds if k != "None"))


def extract_series(root: Path, out: Path) -> Path:
    """Every analysed CT series of a ``radqc synth`` set, prepared, with its artifact class."""
    from radqc.models.artifact.data import iter_series_slices, series_truth
    from radqc.pipelines.image_qc.artifact import DEFAULTS, pixel_spacing

    stacks, labels, ids, kinds = [], [], [], []
    started, shown = time.time(), 0
    for n, key, truth, s, slices, first in iter_series_slices(root, "CT", int(DEFAULTS["max_slices"])):
        try:
            x = prepare([slices[int(i)] for i in pick_slices(len(slices))], pixel_spacing(first))[:, 0]
        except Exception:  # noqa: BLE001 - broken series
            continue
        stacks.append(x.astype(np.float16))
        labels.append(LABELS.index(series_truth(truth).get(s.header.series_uid or "", "none")))
        ids.append(f"{root.name}:{key}:{s.header.series_uid}")
        kinds.append(exam_defect_kinds(truth))
        if n // 200 > shown:
            shown = n // 200
            print(f"[{n}] {len(stacks)} series, by class {np.bincount(labels, minlength=4).tolist()}, "
                  f"{time.time() - started:.0f} s", flush=True)
    arr = np.empty(len(stacks), dtype=object)
    arr[:] = stacks
    np.savez(out, stacks=arr, label=np.array(labels), ids=np.array(ids), defects=np.array(kinds), body_kept=True)
    print(f"{out}: {len(stacks)} series, by class {dict(zip(LABELS, np.bincount(labels, minlength=4).tolist(), strict=True))}")
    return out


def extract_clean(folders: list[Path], out: Path, half: str = "all") -> Path:
    """The CT series of DICOM folders known to be clean (a site's own exams, real images) as
    negatives, for fine-tuning (``fit --init``). ``half``: ``lower`` or ``upper`` keeps that half of
    each series' slices, so the other half can check the fine-tuned net on slices it never saw.

    Why: the generator's bodies lack what real scans hold beside the skin (a head rest, its pad, a
    real scalp); the first CT net read a clean real head CT (invesalius) as moved at 0.997."""
    from radqc.models.artifact.data import exam_from_folder
    from radqc.pipelines.image_qc.artifact import (
        DEFAULTS,
        _series_modality,
        _slices,
        pixel_spacing,
        select_series,
    )

    if half not in ("lower", "upper", "all"):
        raise SystemExit(f"--half must be lower, upper or all, not {half!r}")
    stacks, ids = [], []
    for folder in folders:
        try:
            exam = exam_from_folder(folder)
        except Exception as exc:  # noqa: BLE001 - one unreadable folder: say so, read the others
            print(f"{folder}: not read ({exc}); skipped")
            continue
        for s in select_series(exam, DEFAULTS):
            if _series_modality(s, exam.modality) != "CT":
                continue
            try:
                slices, _, first = _slices(s, int(DEFAULTS["max_slices"]))
                x = prepare([slices[int(i)] for i in pick_slices(len(slices))], pixel_spacing(first))[:, 0]
            except Exception as exc:  # noqa: BLE001 - a series without pixels
                print(f"{folder}: series {s.header.series_uid} not read ({exc}); skipped")
                continue
            n = len(x)
            x = x[: n // 2] if half == "lower" else x[n // 2:] if half == "upper" else x
            stacks.append(x.astype(np.float16))
            ids.append(f"{folder}:{half}:{s.header.series_uid}")
    if not stacks:
        raise SystemExit("no CT series read from the folders given")
    arr = np.empty(len(stacks), dtype=object)
    arr[:] = stacks
    np.savez(out, stacks=arr, label=np.zeros(len(stacks), dtype=int), ids=np.array(ids), body_kept=True,
             defects=np.full(len(stacks), "real_clean"))
    print(f"{out}: {len(stacks)} clean series")
    return out


def load_series(paths: list[Path]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Stacks, labels, ids and the exams' other defect kinds ('' where a file has none recorded).

    Files extracted before ``prepare`` kept only the body (no ``body_kept`` flag; the sets of
    session 25's first stage) get ``keep_body`` here, once, so that training reads what serving reads."""
    stacks: list[np.ndarray] = []
    labels, ids, kinds = [], [], []
    for p in paths:
        d = np.load(p, allow_pickle=True)
        if "body_kept" in d.files:
            stacks += list(d["stacks"])
        else:
            stacks += [keep_body(s.astype(np.float32)).astype(np.float16) for s in d["stacks"]]
        labels.append(d["label"])
        ids.append(d["ids"])
        kinds.append(d["defects"] if "defects" in d.files else np.full(len(d["label"]), ""))
    return stacks, np.concatenate(labels), np.concatenate(ids), np.concatenate(kinds)


def sampling_weights(label: np.ndarray, defects: np.ndarray) -> np.ndarray:
    """Within its class, how often a series is drawn: clean series of exams with a ``HARD_KINDS``
    defect ``HARD_WEIGHT`` times as often as the others, clean real series ``REAL_WEIGHT`` times."""
    hard = np.array([any(k in HARD_KINDS for k in str(d).split(",")) for d in defects])
    real = np.array([str(d) == "real_clean" for d in defects])
    return np.where((label == 0) & real, REAL_WEIGHT, np.where((label == 0) & hard, HARD_WEIGHT, 1.0))


def targets(label: np.ndarray) -> np.ndarray:
    """(n, len(CLASSES)) one-hot of the artifact classes (a clean series is all zeros)."""
    return np.stack([(label == LABELS.index(c)).astype(np.float32) for c in CLASSES], axis=1)


def build_net() -> Any:
    """HU/1000 in, fixed windows, one logit per class per 4x4 block of the slice."""
    return build_fcn(3, len(CLASSES), stem=hu_windows())


#: slices of a series one training step reads (a whole 24-slice series per step made a step 2.5 s)
TRAIN_SLICES = 8


def _augment(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random ``TRAIN_SLICES`` of the series' slices, always with its brightest slice (a small
    clip's streaks show on one slice; a motion ghost spans a third of the scan or more, so a random
    draw of a moved series holds ghosted slices), flipped left-right at random."""
    n = stack.shape[0]
    if n > TRAIN_SLICES:
        brightest = int(np.argmax(stack.reshape(n, -1).max(axis=1)))
        others = rng.choice(np.delete(np.arange(n), brightest), TRAIN_SLICES - 1, replace=False)
        stack = stack[np.sort(np.concatenate([[brightest], others]))]
    a = stack.astype(np.float32)
    if rng.random() < 0.5:  # left-right only: the table is always behind the patient
        a = a[:, :, ::-1]
    return a


def fit(stacks: list[np.ndarray], label: np.ndarray, steps: int = 2000, batch: int = 8, seed: int = 0,
        weights: np.ndarray | None = None, init: Any = None) -> Any:
    w = np.ones(len(label)) if weights is None else np.asarray(weights, dtype=float)
    present = [(ix, w[ix] / w[ix].sum()) for ix in (np.flatnonzero(label == k) for k in range(len(LABELS))) if len(ix)]

    def draw(rng: np.random.Generator, step: int) -> np.ndarray:
        # balanced batches: each class (clean included) equally often; within a class by ``weights``
        return np.concatenate([rng.choice(present[i % len(present)][0], 1, p=present[i % len(present)][1])
                               for i in range(batch)])

    return fit_mil(build_net(), stacks, targets(label), draw, _augment, steps, fill=FILL, seed=seed, init=init)


def score_series(net: Any, stacks: list[np.ndarray]) -> np.ndarray:
    """(n, len(CLASSES)) probabilities as serving reads them (the highest cell of any slice)."""
    import torch

    net.eval()
    out = np.empty((len(stacks), len(CLASSES)))
    with torch.no_grad():
        for i, s in enumerate(stacks):
            maps = net(torch.from_numpy(s.astype(np.float32)[:, None].copy())).numpy()
            out[i] = 1.0 / (1.0 + np.exp(-maps.max(axis=(0, 2, 3))))
    return out


def choose_limits(p: np.ndarray, label: np.ndarray) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per class, the lowest limit (0.30-0.99) whose false-call rate on the other series is at most
    ``MAX_FALSE_RATE``, and its validation metrics."""
    limits, val = {}, {}
    for j, cls in enumerate(CLASSES):
        y = (label == LABELS.index(cls)).astype(int)
        grid = [round(float(t), 2) for t in np.arange(0.30, 1.0, 0.01)]
        ok = [t for t in grid if binary_metrics(p[:, j], y, t, "series", cls)["false_positive_rate"] <= MAX_FALSE_RATE]
        limits[cls] = ok[0] if ok else 0.99
        val[cls] = binary_metrics(p[:, j], y, limits[cls], "series", cls)
    print(json.dumps({"limits": limits, "val": val}))
    return limits, val


def register(out: Path, limits: dict[str, float], val: dict[str, Any], val_names: list[str], data: Any, steps: int) -> None:
    """Add the exported weights to models/registry.yaml with the limits chosen on validation."""
    from radqc.models.registry import ModelInfo, register_model

    register_model(ModelInfo(
        name=MODEL_NAME, version=VERSION, task="classification", modality="CT",
        weights=f"weights/{out.name}", sha256="",
        input={"name": "slices", "shape": ["slices", 1, "height", "width"],
               "preprocessing": "radqc.models.artifact.ct_net.prepare (4 mm pixels, HU/1000 clipped to [-1, 4], body and a 2-px margin kept)"},
        output={"name": "logit_map", "classes": list(CLASSES), "thresholds": limits,
                "motion_part_max": MOTION_PART_MAX, "slice_prob": SLICE_PROB,
                "rule": "class when sigmoid(max logit of its map over the series' slices) >= its threshold; "
                        "motion only when at most motion_part_max of the slices reach slice_prob"},
        metrics={"validation": val, "validation_data": val_names},
        card="cards/ct_artifact_net.md",
        training={"data": data, "steps": steps, "batch": 8, "threads": 2,
                  "command": "python -m radqc.models.artifact.ct_net_train fit --train TRAIN.npz ... --val VAL.npz --register"},
        description="CT motion / equipment / foreign-object artifact per series from the pixels (small fully convolutional CNN, max over slices)"))


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["clean"]:  # clean OUT.npz FOLDER... [--half lower|upper|all]
        half = argv[argv.index("--half") + 1] if "--half" in argv else "all"
        rest = [a for i, a in enumerate(argv[1:], 1) if a != "--half" and argv[i - 1] != "--half"]
        if len(rest) < 2:
            raise SystemExit("usage: ct_net_train clean OUT.npz FOLDER... [--half lower|upper|all]")
        extract_clean([Path(f) for f in rest[1:]], Path(rest[0]), half)
        return 0
    args = parse_args(__doc__ or "", "series", 2000, WEIGHTS, argv)
    if args.cmd == "series":
        extract_series(args.set, args.out)
        return 0
    stacks, label, _, defects = load_series(args.train)
    print(f"train: {len(stacks)} series, by class {np.bincount(label, minlength=4).tolist()}")
    if not (label == 0).any() or (label == 0).all():
        raise SystemExit("the training series need both clean and artifact series (render more with --profile qc-ct)")
    net = fit(stacks, label, args.steps, weights=sampling_weights(label, defects), init=args.init)
    vstacks, vlabel, _, _ = load_series(args.val)
    p = score_series(net, vstacks)
    limits, val = choose_limits(p, vlabel)
    np.save(args.out.with_suffix(".val_probs.npy"), p)
    import torch

    torch.save(net.state_dict(), args.out.with_suffix(".pt"))
    export_fcn(net, args.out)
    if args.register:
        register(args.out, limits, val, [x.name for x in args.val], training_data(args), args.steps)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
