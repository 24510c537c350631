"""Held-out accuracy of a CT segmenter (``radqc eval anatomy`` calls :func:`evaluate`).

Cases are drawn with :func:`data.plan_case` from ``HELDOUT_SEEDS`` — seeds never used in
training or progress checks — rendered at full size, read back from DICOM, segmented
through the same :class:`~radqc.models.interfaces.Segmenter` call the pipeline uses, and
scored **in the source geometry** (the label map a user gets), not on the coarse model grid.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.registry import load_label_set
from radqc.models.segmentation.data import HELDOUT_SEEDS, CasePlan, plan_case, render_native

log = logging.getLogger(__name__)

#: The structures the issue names; the headline mean is over these.
CORE_STRUCTURES = (
    "body", "brain", "skull", "lung_left", "lung_right", "trachea", "heart", "aorta", "liver", "spleen", "pancreas",
    "kidney_left", "kidney_right", "stomach", "bladder", "vertebrae_cervical", "vertebrae_thoracic",
    "vertebrae_lumbar", "sacrum", "ribs", "pelvis_bones", "femoral_head_left", "femoral_head_right", "prostate",
    "uterus",
)


def confusion(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """n×n confusion matrix (truth rows, prediction columns) in one pass."""
    idx = truth.astype(np.int64).ravel() * n + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def dice_from_confusion(cm: np.ndarray, label: int) -> float | None:
    t, p, tp = cm[label, :].sum(), cm[:, label].sum(), cm[label, label]
    if t == 0:
        return None
    return float(2 * tp / (t + p))


def body_dice(cm: np.ndarray) -> float | None:
    """Dice of the body outline (every foreground label together)."""
    t, p = cm[1:, :].sum(), cm[:, 1:].sum()
    tp = cm[1:, 1:].sum()
    return float(2 * tp / (t + p)) if t else None


def evaluate(segmenter: Any = None, seeds: list[int] | None = None, n: int = 8, quick: bool = False,
             progress: Any = None) -> dict[str, Any]:
    """Per-structure Dice over held-out cases (mean over cases where the structure is present)."""
    import SimpleITK as sitk

    if segmenter is None:
        from radqc.models.slots import resolve

        segmenter = resolve("ct_organs")
    label_set = load_label_set("ct_organs")
    n_lab = label_set.max_label + 1
    names = {s.label: s.name for s in label_set.structures}
    if seeds is None:
        seeds = list(HELDOUT_SEEDS)[: (3 if quick else n)]
    plans: list[CasePlan] = [plan_case(s) for s in seeds]
    if quick:  # small coverages only: a CI-sized check of the same code path
        plans = [CasePlan(p.seed, r, p.phase, p.sex, p.age, p.vendor, 2.5, None)
                 for p, r in zip(plans, [("chest",), ("head",), ("pelvis",)], strict=False)]
    per: dict[str, list[float]] = {}
    cases = []
    with tempfile.TemporaryDirectory(prefix="radqc-seg-eval-") as tmp:
        for i, plan in enumerate(plans):
            t0 = time.time()
            image, truth, meta = render_native(plan, Path(tmp), label_set)
            t1 = time.time()
            pred = sitk.GetArrayFromImage(segmenter.segment(image))
            t2 = time.time()
            cm = confusion(truth, pred, n_lab)
            case = {"seed": plan.seed, "regions": list(plan.regions), "phase": plan.phase, "shape": list(truth.shape),
                    "seconds_segment": round(t2 - t1, 2), "dice": {}}
            for lab in range(2, n_lab):
                d = dice_from_confusion(cm, lab)
                if d is not None:
                    case["dice"][names[lab]] = round(d, 4)
            bd = body_dice(cm)
            if bd is not None:
                case["dice"]["body"] = round(bd, 4)
            for k, v in case["dice"].items():
                per.setdefault(k, []).append(v)
            cases.append(case)
            log.info("held-out case %d/%d seed %d (%s): render %.1fs, segment %.1fs, mean dice %.3f", i + 1, len(plans),
                     plan.seed, "+".join(plan.regions), t1 - t0, t2 - t1, np.mean(list(case["dice"].values())))
            if progress:
                progress(i + 1, len(plans))
    per_structure = {k: {"dice": round(float(np.mean(v)), 4), "cases": len(v)} for k, v in sorted(per.items())}
    core = [per_structure[k]["dice"] for k in CORE_STRUCTURES if k in per_structure]
    return {
        "model": f"{getattr(segmenter, 'name', '?')} {getattr(segmenter, 'version', '?')}",
        "seeds": [p.seed for p in plans],
        "geometry": "source (native DICOM grid)",
        "mean_dice": round(float(np.mean(core)), 4) if core else None,
        "structures_scored": len(core),
        "per_structure": per_structure,
        "cases": cases,
    }
