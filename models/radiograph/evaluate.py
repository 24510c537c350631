"""Held-out evaluation of ``cxr_anatomy`` on generator seeds never used in training.

``evaluate(seeds, quick=False)`` renders, per seed, a chest PA + lateral (positioning
defects drawn more often than in training, so that each measurement meets abnormal cases),
and for every third seed a knee AP + lateral and a lumbar-spine AP, runs
:class:`~radqc.models.radiograph.infer.RadiographAnatomyModel` on the stored pixels, and
compares with the renderer's truth:

* per-structure Dice (truth masks clipped to the exposed field, at the image's size);
* landmark errors in mm (apices, costophrenic angles, medial clavicle ends: the same
  derivation applied to the truth masks);
* derived measurements vs the generator's recorded positioning truth: rotation
  (``spinous_to_clavicle_midpoint_mm``), scapula over lung (``scapula_in_lung_fraction``),
  inspiration (``posterior_ribs_above_right_dome``), costophrenic angles cut, L/R marker,
  lung-centroid offset.

Seeds must lie in :data:`~radqc.models.radiograph.data.HELDOUT_SEEDS`. ``quick`` renders
small images only and stops after 8 seeds (well under 2 minutes on one core).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import classical
from .data import CHANNELS, HELDOUT_SEEDS, Case, render_cases
from .preprocess import resize, to_mono2

#: defects drawn per evaluation chest exam (each with probability EVAL_DEFECT_P)
EVAL_DEFECTS = ("rotation", "scapula_over_lung", "shallow_inspiration", "costophrenic_cutoff", "marker_missing",
                "marker_wrong", "off_centre", "foreign_object")
EVAL_DEFECT_P = 0.3
ROTATION_FLAG_MM = 10.0  # |spinous - clavicle midpoint| above this counts as rotated (for agreement)
SCAPULA_FLAG = 0.15
INSPIRATION_MIN_RIBS = 10
QUICK_SEEDS = 8


#: first held-out seed of the reported evaluation. Seeds 900000-900039 were looked at while
#: developing (two gross rotation failures led to the plausibility limit in classical.py),
#: so the card's final numbers come from 900200 on, never looked at before.
REPORT_START = HELDOUT_SEEDS.start + 200


def default_seeds(n: int = 40, start: int = REPORT_START) -> list[int]:
    return list(range(start, start + n))


def eval_defects(seed: int) -> list[Any]:
    from radqc.datasets.synthetic.spec import Defect

    rng = np.random.default_rng([seed, 23])
    out = []
    for kind in EVAL_DEFECTS:
        if rng.random() < EVAL_DEFECT_P:
            params: dict[str, Any] = {"kind": kind}
            if kind == "off_centre":
                params["direction"] = str(rng.choice(["left", "right", "up", "down"]))
            if kind == "costophrenic_cutoff" and rng.random() < 0.4:
                params["missing"] = ["costophrenic_angle_right"]
            out.append(Defect("positioning", "不标准", params))
    if any(d.params["kind"] == "marker_missing" for d in out):
        out = [d for d in out if d.params["kind"] != "marker_wrong"]
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    s = int(a.sum()) + int(b.sum())
    return None if s == 0 else 2.0 * float((a & b).sum()) / s


def _truth_masks(case: Case) -> dict[str, np.ndarray]:
    from .train import clip_to_field

    t = clip_to_field(case).astype(bool)
    return {name: t[k] for k, name in enumerate(CHANNELS)}


def _grid_masks(masks: dict[str, np.ndarray], inner: tuple[int, int]) -> dict[str, np.ndarray]:
    return {k: resize(v.astype(np.float32), inner, "box") > 0.5 for k, v in masks.items()}


def evaluate(seeds: Iterable[int] | None = None, quick: bool = False, model: Any = None) -> dict[str, Any]:
    """Held-out metrics (see module docstring); JSON-serialisable."""
    from .infer import RadiographAnatomyModel

    t0 = time.time()
    seeds = list(seeds) if seeds is not None else default_seeds(8 if quick else 40)
    if quick:
        seeds = seeds[:QUICK_SEEDS]
    bad = [s for s in seeds if s not in HELDOUT_SEEDS]
    if bad:
        raise ValueError(f"seeds {bad[:5]} are not held-out seeds ({HELDOUT_SEEDS.start}..{HELDOUT_SEEDS.stop - 1})")
    model = model or RadiographAnatomyModel()
    dice: dict[str, list[float]] = defaultdict(list)
    lm_err: dict[str, list[float]] = defaultdict(list)
    meas: dict[str, list[Any]] = defaultdict(list)
    n_images = 0
    for i, seed in enumerate(seeds):
        size = "small" if quick or i % 4 else "full"
        cases = render_cases(seed, "chest", ("PA", "LAT"), size, defects=eval_defects(seed))
        if i % 3 == 0:
            cases += render_cases(seed, "knee", ("AP", "LAT"), "small", defects=[])
            cases += render_cases(seed, "lumbar_spine", ("AP",), "small", defects=[])
        for case in cases:
            n_images += 1
            res = model.analyse(case.pixels, (case.spacing_mm, case.spacing_mm), case.view, case.region,
                                mono1=case.mono1)
            truth = _truth_masks(case)
            for name in CHANNELS:
                d = _dice(res.masks.get(name, np.zeros_like(truth[name])), truth[name])
                if d is not None and truth[name].sum() >= 20:
                    dice[f"{case.region}/{name}"].append(d)
            if case.region == "chest" and case.view == "PA":
                _chest_pa(case, res, truth, model, lm_err, meas)
    summary: dict[str, Any] = {
        "seeds": [seeds[0], seeds[-1]] if seeds else [], "n_seeds": len(seeds), "n_images": n_images, "quick": quick,
        "dice": {k: round(float(np.mean(v)), 4) for k, v in sorted(dice.items())},
        "dice_n": {k: len(v) for k, v in sorted(dice.items())},
        "landmark_error_mm": {k: {"median": round(float(np.median(v)), 2), "p90": round(float(np.percentile(v, 90)), 2),
                                  "n": len(v)} for k, v in sorted(lm_err.items())},
    }
    main = [k for k in summary["dice"] if k.startswith("chest/") and k.split("/")[1] in
            ("lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right", "scapula_left", "scapula_right")]
    summary["chest_main_mean_dice"] = round(float(np.mean([summary["dice"][k] for k in main])), 4) if main else None
    summary["measurements"] = _summarise(meas)
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def _chest_pa(case: Case, res: Any, truth: dict[str, np.ndarray], model: Any, lm_err: dict[str, list[float]],
              meas: dict[str, list[Any]]) -> None:
    t = case.truth
    m = res.measurements
    # landmarks: same derivation on the truth masks (model grid), errors in mm
    image = to_mono2(case.pixels, case.mono1)
    _, frame, x = model.probabilities(image)
    inner = frame.inner
    tg = _grid_masks(truth, inner)
    tg["marker_prob"] = tg["marker"].astype(np.float32)
    px_mm = case.spacing_mm / frame.scale
    lm_t, meas_t, _ = classical.chest_frontal(tg, x[: inner[0], : inner[1]], px_mm)
    for k in ("lung_apex_right", "lung_apex_left", "costophrenic_angle_right", "costophrenic_angle_left",
              "clavicle_medial_end_right", "clavicle_medial_end_left"):
        p, q = res.landmarks.get(k), lm_t.get(k)
        if p is not None and q is not None:
            q_img = (q[0] / frame.scale, q[1] / frame.scale)
            lm_err[k].append(float(np.hypot(p[0] - q_img[0], p[1] - q_img[1])) * case.spacing_mm)
    # rotation
    tr = t.get("spinous_to_clavicle_midpoint_mm")
    if tr is not None:
        meas["rotation"].append((tr, m.get("rotation_offset_mm"), m.get("rotation_raw_mm"), meas_t.get("rotation_raw_mm")))
    # scapula
    sf = t.get("scapula_in_lung_fraction") or {}
    for side in ("left", "right"):
        tv = sf.get(f"scapula_{side}")
        if tv is not None:
            meas["scapula"].append((tv, (m.get("scapula_in_lung_fraction") or {}).get(side),
                                    (meas_t.get("scapula_in_lung_fraction") or {}).get(side)))
    # inspiration
    if t.get("posterior_ribs_above_right_dome") is not None:
        meas["inspiration"].append((t["posterior_ribs_above_right_dome"], m.get("posterior_ribs_above_right_dome"),
                                    meas_t.get("posterior_ribs_above_right_dome")))
    # costophrenic angles inside the field
    cut = set((t.get("costophrenic_cut") or {}).get("lungs_cut") or [])
    for side in ("left", "right"):
        meas["costophrenic"].append((f"lung_{side}" not in cut, (m.get("costophrenic_angle_in_field") or {}).get(side)))
    # marker
    tm = t.get("marker") or {}
    pm = m.get("marker") or {}
    meas["marker"].append((bool(tm.get("present")), bool(pm.get("present")), tm.get("side_of_image"),
                           pm.get("side_of_image"), tm.get("text"), pm.get("text")))
    # centring
    tc = t.get("lung_centroid_offset_mm")
    pc = m.get("lung_centroid_offset_mm")
    if tc and pc:
        meas["centroid"].append((tc["x"], pc["x"], tc["y"], pc["y"]))


def _summarise(meas: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rot = [r for r in meas.get("rotation", []) if r[1] is not None]
    if rot:
        tr, pr = np.array([r[0] for r in rot]), np.array([r[1] for r in rot])
        out["rotation_mm"] = {
            "n": len(rot), "found": round(len(rot) / max(len(meas["rotation"]), 1), 3),
            "mae": round(float(np.mean(np.abs(tr - pr))), 2),
            "corr": round(float(np.corrcoef(tr, pr)[0, 1]), 3) if len(rot) > 2 and tr.std() > 0 and pr.std() > 0 else None,
            "flag_agreement": round(float(np.mean((np.abs(tr) > ROTATION_FLAG_MM) == (np.abs(pr) > ROTATION_FLAG_MM))), 3),
            "n_rotated": int((np.abs(tr) > ROTATION_FLAG_MM).sum()),
        }
    sc = [s for s in meas.get("scapula", []) if s[1] is not None]
    if sc:
        tv, pv = np.array([s[0] for s in sc]), np.array([s[1] for s in sc])
        out["scapula_in_lung_fraction"] = {
            "n": len(sc), "mae": round(float(np.mean(np.abs(tv - pv))), 4),
            "flag_agreement": round(float(np.mean((tv > SCAPULA_FLAG) == (pv > SCAPULA_FLAG))), 3),
            "n_over": int((tv > SCAPULA_FLAG).sum()),
        }
    ins = [s for s in meas.get("inspiration", []) if s[1] is not None]
    if ins:
        tv, pv = np.array([s[0] for s in ins]), np.array([s[1] for s in ins])
        out["posterior_ribs"] = {
            "n": len(ins), "found": round(len(ins) / max(len(meas["inspiration"]), 1), 3),
            "mae": round(float(np.mean(np.abs(tv - pv))), 2), "within_1": round(float(np.mean(np.abs(tv - pv) <= 1)), 3),
            "flag_agreement": round(float(np.mean((tv < INSPIRATION_MIN_RIBS) == (pv < INSPIRATION_MIN_RIBS))), 3),
            "n_shallow": int((tv < INSPIRATION_MIN_RIBS).sum()),
        }
    cp = [c for c in meas.get("costophrenic", []) if c[1] is not None]
    if cp:
        out["costophrenic_in_field"] = {"n": len(cp), "accuracy": round(float(np.mean([a == b for a, b in cp])), 3),
                                        "n_cut": int(sum(1 for a, _ in cp if not a))}
    mk = meas.get("marker", [])
    if mk:
        present = [(a, b) for a, b, *_ in mk]
        side = [(c, d) for a, b, c, d, *_ in mk if a and b]
        text = [(e, f) for a, b, c, d, e, f in mk if a and b]
        out["marker"] = {
            "n": len(mk), "present_accuracy": round(float(np.mean([a == b for a, b in present])), 3),
            "n_missing": int(sum(1 for a, _ in present if not a)),
            "side_accuracy": round(float(np.mean([a == b for a, b in side])), 3) if side else None,
            "letter_accuracy": round(float(np.mean([a == b for a, b in text])), 3) if text else None,
        }
    ce = meas.get("centroid", [])
    if ce:
        arr = np.array(ce, dtype=float)
        out["lung_centroid_offset_mm"] = {"n": len(ce), "mae_x": round(float(np.mean(np.abs(arr[:, 0] - arr[:, 1]))), 2),
                                          "mae_y": round(float(np.mean(np.abs(arr[:, 2] - arr[:, 3]))), 2)}
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    p = argparse.ArgumentParser(description="held-out evaluation of cxr_anatomy")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(evaluate(default_seeds(a.n), quick=a.quick), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()


#: overlay colours (RGB 0-1) of the channels drawn in the figures
_COLOURS: dict[str, tuple[float, float, float]] = {
    "lung_left": (0.2, 0.6, 1.0), "lung_right": (0.1, 0.9, 0.6), "heart": (1.0, 0.5, 0.1),
    "scapula_left": (0.9, 0.2, 0.9), "scapula_right": (0.6, 0.2, 1.0), "clavicle_left": (1.0, 0.9, 0.1),
    "clavicle_right": (1.0, 0.7, 0.2), "ribs": (1.0, 0.3, 0.3), "vertebrae_cervical": (0.5, 1.0, 0.2),
    "vertebrae_thoracic": (0.3, 1.0, 0.9), "vertebrae_lumbar": (0.2, 0.8, 0.2), "femur": (0.2, 0.6, 1.0),
    "tibia": (0.1, 0.9, 0.6), "fibula": (1.0, 0.5, 0.1), "patella": (0.9, 0.2, 0.9), "marker": (1.0, 0.0, 0.0),
    "foreign_object": (1.0, 1.0, 1.0), "pelvis": (0.6, 0.4, 1.0),
}


def overlay(path: Any, image: np.ndarray, res: Any, title: str, structures: tuple[str, ...] | None = None) -> None:
    """PNG: the image (MONOCHROME2 display) with mask outlines, landmarks and the main numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .preprocess import fit

    fr = fit(image.shape, 512)
    small = resize(image, fr.inner, "box")
    lo, hi = np.percentile(small, [1, 99])
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.8))
    for ax in axes:
        ax.imshow(small, cmap="gray", vmin=lo, vmax=hi)
        ax.set_axis_off()
    axes[0].set_title(title, fontsize=9)
    names = structures or tuple(k for k in _COLOURS if k in res.masks)
    for name in names:
        mk = res.masks.get(name)
        if mk is None or not mk.any():
            continue
        ms = resize(mk.astype(np.float32), fr.inner, "box")
        axes[1].contour(ms, levels=[0.5], colors=[_COLOURS.get(name, (1, 1, 1))], linewidths=0.9)
    for p in res.landmarks.values():
        if p is not None:
            axes[1].plot(p[1] * fr.scale, p[0] * fr.scale, "+", color="red", ms=9, mew=1.6)
    m = res.measurements
    lines = [f"{k}: {m[k]}" for k in ("rotation_offset_mm", "rotation_ratio", "posterior_ribs_above_right_dome",
                                      "scapula_in_lung_fraction", "costophrenic_angle_in_field", "joint_space_mm",
                                      "fibula_tibia_overlap_fraction") if k in m]
    mk_info = m.get("marker") or {}
    lines.append(f"marker: {'found ' + str(mk_info.get('text')) + ' ' + str(mk_info.get('side_of_image')) if mk_info.get('present') else 'not found'}")
    axes[1].set_title("\n".join(lines), fontsize=7, loc="left")
    handles = [plt.Line2D([0], [0], color=_COLOURS.get(n, (1, 1, 1)), lw=2, label=n) for n in names
               if n in res.masks and res.masks[n].any()]
    if handles:
        axes[1].legend(handles=handles, fontsize=6, loc="lower right", framealpha=0.6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def real_images(out_dir: Any, model: Any = None, samples: Any = None) -> dict[str, Any]:
    """Run on the real CR samples (pydicom-data RG1 chest PA, RG3 extremity); write overlay PNGs.

    There is no ground truth for these: the figures are for a human to judge."""
    from pathlib import Path

    import pydicom

    from .infer import RadiographAnatomyModel

    model = model or RadiographAnatomyModel()
    samples = Path(samples or Path.home() / ".cache/radqc/samples/pydicom-data")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    for stem, fig in (("RG1_UNCR", "cxr_real_rg1_chest_pa.png"), ("RG3_UNCR", "cxr_real_rg3_extremity.png")):
        f = samples / f"{stem}.dcm"
        if not f.is_file():
            report[stem] = {"status": "missing", "path": str(f)}
            continue
        ds = pydicom.dcmread(f)
        px = ds.pixel_array
        sp = ds.get("ImagerPixelSpacing") or ds.get("PixelSpacing")
        spacing = (float(sp[0]), float(sp[1])) if sp and float(sp[0]) > 0 else None
        t = time.perf_counter()
        res = model.analyse(px, spacing, ds.get("ViewPosition"), ds.get("BodyPartExamined"),
                            photometric=str(ds.PhotometricInterpretation))
        secs = time.perf_counter() - t
        image = to_mono2(px, str(ds.PhotometricInterpretation) == "MONOCHROME1")
        overlay(out_dir / fig, image, res, f"{stem} ({ds.Modality} {ds.get('BodyPartExamined')} {ds.get('ViewPosition')}, "
                f"{px.shape[1]}x{px.shape[0]}, {ds.PhotometricInterpretation}) - real image, no ground truth")
        report[stem] = {"shape": list(px.shape), "seconds": round(secs, 3),
                        "measurements": {k: v for k, v in res.measurements.items() if k not in ("spine_midline",)},
                        "landmarks": res.landmarks, "figure": str(out_dir / fig)}
    return report


#: tuning seeds: inside the training range but never rendered for training (n_exams <= 70000)
TUNING_SEEDS = range(70_000, 70_060)


def calibrate(seeds: Iterable[int] = TUNING_SEEDS, model: Any = None) -> dict[str, Any]:
    """Fit the rotation weights of :mod:`.classical` on tuning seeds (never the held-out ones).

    truth ``spinous_to_clavicle_midpoint_mm`` ~ A x clavicle_raw_mm + B x thorax_raw_mm,
    least squares through the origin on the network's own masks; half the seeds rotated.
    The result is written into classical.py by hand and quoted in the model card."""
    from radqc.datasets.synthetic.spec import Defect

    from .infer import RadiographAnatomyModel

    model = model or RadiographAnatomyModel()
    rows, ribs, detail = [], [], []
    for i, seed in enumerate(seeds):
        # the evaluation's defect mixture (other defects disturb the features too), half rotated
        defects = [d for d in eval_defects(seed) if d.params["kind"] != "rotation"]
        if i % 2:
            defects.append(Defect("positioning", "不标准", {"kind": "rotation"}))
        case = render_cases(seed, "chest", ("PA",), "small" if i % 4 else "full", defects=defects)[0]
        res = model.analyse(case.pixels, (case.spacing_mm,) * 2, "PA", "chest", mono1=case.mono1)
        m = res.measurements
        if m.get("rotation_raw_mm") is not None:
            th = m.get("rotation_thorax_raw_mm")
            rows.append((float(case.truth["spinous_to_clavicle_midpoint_mm"]), float(m["rotation_raw_mm"]),
                         float(th) if th is not None else np.nan))
            detail.append((rows[-1], m.get("rotation_offset_mm"), [str(d.params["kind"]) for d in defects]))
        ribs.append((case.truth.get("posterior_ribs_above_right_dome"), m.get("posterior_ribs_above_right_dome")))
    arr = np.array(rows)
    out: dict[str, Any] = {"n": len(rows)}
    if len(rows) >= 4:
        both = ~np.isnan(arr[:, 2])
        t, x = arr[both, 0], arr[both, 1:]
        (a, b), *_ = np.linalg.lstsq(x, t, rcond=None)
        ta, ra = arr[:, 0], arr[:, 1]
        gain = float((ta * ra).sum() / max(float((ra**2).sum()), 1e-9))
        pred = np.where(both, arr[:, 1] * a + np.nan_to_num(arr[:, 2]) * b, gain * ra)
        out.update({"A": round(float(a), 3), "B": round(float(b), 3), "C": round(gain, 3), "n_thorax": int(both.sum()),
                    "mae_combined": round(float(np.mean(np.abs(ta - pred))), 2),
                    "mae_clavicle_only": round(float(np.mean(np.abs(ta - gain * ra))), 2),
                    "corr_clavicle_raw": round(float(np.corrcoef(ta, ra)[0, 1]), 3),
                    "corr_thorax_raw": round(float(np.corrcoef(t, x[:, 1])[0, 1]), 3)})
    rib_pairs = [(a_, b_) for a_, b_ in ribs if a_ is not None and b_ is not None]
    out["rib_bias"] = round(float(np.mean([b_ - a_ for a_, b_ in rib_pairs])), 2) if rib_pairs else None
    out["rib_pairs"] = rib_pairs
    out["detail"] = detail
    return out
