"""Held-out evaluation of the slice body-region scorer.

    from radqc.models.body_region.evaluate import evaluate
    report = evaluate(range(900001, 900011), size="full")            # ~1-2 min on 2 cores
    report = evaluate(quick=True)                                     # CI-sized, < 1 min

Synthetic (held out): exams rendered by the full generator (``render_exam``: DICOM written
and read back, scanner FOV/matrix/noise/kernels), seeds never used in training (training
paints phantoms of seeds 1000..1139 directly; these are renderer seeds >= 900000). Per
seed: a whole-body acquisition (head to pelvis) and, unless ``quick``, a chest-only, a
head-only and an abdomen-pelvis acquisition (they test null landmarks outside the scan).
Thick 5 mm axial series (the master grid is set by the requested thickness).

Real: the InVesalius head CT (``radqc.samples``; its lower 54 slices were seen unlabelled by
the self-supervised loss, the upper 54 are held out, both reported) and, when present in the
cache, the TotalSegmentator CT brain atlas (skull-stripped template, background 0 HU: out of
distribution, reported for completeness); monotonic fraction of consecutive slices.

    python -m radqc.models.body_region.evaluate [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.interfaces import CT_LANDMARKS

DEFAULT_SEEDS = tuple(range(900001, 900011))
CASES: dict[str, list[str]] = {
    "whole_body": ["head", "neck", "chest", "abdomen", "pelvis"],
    "chest": ["chest"],
    "head": ["head"],
    "abdomen_pelvis": ["abdomen", "pelvis"],
}
CACHE = Path(os.environ.get("RADQC_CACHE", Path.home() / ".cache" / "radqc"))
INVESALIUS = CACHE / "samples" / "invesalius-cranium"
#: The TotalSegmentator wheel's CT brain atlas (``pip download --no-deps totalsegmentator``,
#: unzip under this folder; never committed). A skull-stripped template: background 0 HU.
ATLAS = CACHE / "totalsegmentator-wheel" / "totalsegmentator" / "resources" / "ct_brain_atlas_1mm.nii.gz"


def _scorer(model: Any = None) -> Any:
    from radqc.models.body_region.infer import OnnxBodyRegionScorer
    from radqc.models.registry import ModelInfo, get_model

    if model is None or isinstance(model, (str, ModelInfo)):
        info = get_model(model or "body_region") if not isinstance(model, ModelInfo) else model
        return OnnxBodyRegionScorer(info)
    return model


def render_case(seed: int, regions: list[str], out_dir: Path, size: str = "full") -> tuple[Any, dict[str, Any]]:
    """Render one held-out CT exam; returns the axial series (SimpleITK) and its truth."""
    import SimpleITK as sitk

    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec, SeriesRole

    key = f"BR{seed}_{'_'.join(regions)}"
    spec = ImagingSpec(
        exam_key=key, seed=seed, modality="CT", regions=list(regions), acquisition="one_acquisition", size=size,  # type: ignore[arg-type]
        sex="M" if seed % 2 else "F", age=20 + (seed * 7) % 70,
        series=[SeriesRole("axial_soft_thin", {"thickness_mm": 5.0})], evidence={"derived": False},
    )
    res = render_exam(spec, out_dir, labels_dir=out_dir / "labels" / key)
    axial = [s for s in res.series if s.role.startswith("axial_")][0]
    folder = out_dir / Path(axial.files[0]).parent
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    truth = {
        "landmarks_mm": {k: float(v) for k, v in res.measurements["landmarks_mm"].items()},
        "in_range": set(res.measurements["landmarks_in_range"]["0"]),
        "slice_regions": list(axial.slice_regions),
    }
    return image, truth


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "max": None}
    a = np.abs(np.asarray(values, dtype=np.float64))
    return {"n": int(a.size), "median": round(float(np.median(a)), 2), "p90": round(float(np.percentile(a, 90)), 2), "max": round(float(a.max()), 2)}


def _load_real(path: Path) -> Any:
    import SimpleITK as sitk

    if path.is_dir():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(str(path)))
        return r.Execute()
    return sitk.ReadImage(str(path))


def evaluate_real(model: Any = None, extra: Iterable[Path] = ()) -> dict[str, Any]:
    """Monotonic fraction and landmarks on the real CT volumes found in the cache."""
    from radqc.models.body_region.infer import monotonic_fraction, rank_correlation

    scorer = _scorer(model)
    found = {"invesalius_head_ct": INVESALIUS, "totalsegmentator_ct_brain_atlas": ATLAS}
    found.update({Path(p).name: Path(p) for p in extra})
    out: dict[str, Any] = {}
    for name, path in found.items():
        if not path.exists():
            out[name] = {"available": False, "path": str(path)}
            continue
        img = _load_real(path)
        t = time.perf_counter()
        r = scorer.score(img)
        out[name] = {
            "available": True,
            "slices": len(r.scores),
            "monotonic_fraction": r.monotonic_fraction,
            "non_monotonic_fraction": None if r.monotonic_fraction is None else round(1.0 - r.monotonic_fraction, 4),
            "monotonic_fraction_tolerance_1": monotonic_fraction(np.asarray(r.z_mm), np.asarray(r.scores), 1.0),
            "rank_correlation": rank_correlation(np.asarray(r.z_mm), np.asarray(r.scores)),
            "score_range": [round(min(r.scores), 2), round(max(r.scores), 2)],
            "landmarks": r.landmarks,
            "regions": sorted(set(r.regions)),
            "seconds": round(time.perf_counter() - t, 3),
        }
        if name == "invesalius_head_ct":
            # slices 0..53 were seen (unlabelled) by the self-supervised loss; 54.. are held out
            from radqc.models.body_region.train import REAL_SLICES

            cut = int(REAL_SLICES.split(":")[1])
            z, s = np.asarray(r.z_mm), np.asarray(r.scores)
            out[name]["monotonic_fraction_seen_unlabelled"] = monotonic_fraction(z[:cut], s[:cut])
            out[name]["monotonic_fraction_held_out"] = monotonic_fraction(z[cut:], s[cut:])
            out[name]["monotonic_fraction_tolerance_1_seen_unlabelled"] = monotonic_fraction(z[:cut], s[:cut], 1.0)
            out[name]["monotonic_fraction_tolerance_1_held_out"] = monotonic_fraction(z[cut:], s[cut:], 1.0)
            out[name]["rank_correlation_held_out"] = rank_correlation(z[cut:], s[cut:])
            out[name]["seen_slices"] = f"0:{cut}"
    return out


def evaluate(
    seeds: Iterable[int] = DEFAULT_SEEDS, size: str = "full", quick: bool = False, model: Any = None,
    real: bool = True, cases: Iterable[str] | None = None, blur_mm: float = 0.0,
) -> dict[str, Any]:
    """Landmark z-errors (median/p90 per landmark, mm) on held-out generator CT, null-landmark
    accuracy, per-slice region accuracy, monotonic fractions, and the real-CT report.

    ``quick``: the first two seeds, whole-body and chest-only acquisitions only.
    ``blur_mm``: blur every rendered series in-plane (Gaussian sigma in mm, no blur along z)
    before scoring: a stress test for blurred CT (the generator's blur defect reaches 5-9 mm
    on coarse grids); applied after the scanner noise, so it also smooths the noise."""
    from radqc.models.body_region.infer import monotonic_fraction

    scorer = _scorer(model)
    seeds = list(seeds)
    names = list(cases or (["whole_body", "chest"] if quick else list(CASES)))
    if blur_mm:
        import SimpleITK as sitk
    if quick:
        seeds = seeds[:2]
    errors: dict[str, list[float]] = {n: [] for n in CT_LANDMARKS}
    null_ok = null_n = 0
    missed: dict[str, int] = {n: 0 for n in CT_LANDMARKS}
    spurious: dict[str, int] = {n: 0 for n in CT_LANDMARKS}
    region_ok = region_n = 0
    mono: list[float] = []
    mono_tol: list[float] = []
    per_case: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    score_s = 0.0
    with tempfile.TemporaryDirectory(prefix="radqc-bodyregion-eval-") as tmp:
        for seed in seeds:
            for case in names:
                image, truth = render_case(seed, CASES[case], Path(tmp), size)
                if blur_mm:
                    image = sitk.DiscreteGaussian(image, [blur_mm**2, blur_mm**2, 0.0], 64, 0.01, True)
                t = time.perf_counter()
                r = scorer.score(image)
                score_s += time.perf_counter() - t
                case_err: dict[str, float | None] = {}
                for n in CT_LANDMARKS:
                    inside = n in truth["in_range"]
                    pred = r.landmarks.get(n)
                    if inside and pred is not None:
                        e = float(pred) - truth["landmarks_mm"][n]
                        errors[n].append(e)
                        case_err[n] = round(e, 1)
                    elif inside:
                        missed[n] += 1
                    elif pred is not None:
                        spurious[n] += 1
                    else:
                        null_ok += 1
                    null_n += 0 if inside else 1
                want = truth["slice_regions"]
                got = ["pelvis" if g == "legs" else g for g in r.regions]
                # the reader sorts slices by position; the truth is in acquisition (head-first) order
                if r.z_mm and len(r.z_mm) > 1 and r.z_mm[0] < r.z_mm[-1]:
                    got = got[::-1]
                if len(got) == len(want):
                    region_ok += sum(a == b for a, b in zip(got, want, strict=True))
                    region_n += len(want)
                if r.monotonic_fraction is not None:
                    mono.append(r.monotonic_fraction)
                    mono_tol.append(monotonic_fraction(np.asarray(r.z_mm), np.asarray(r.scores), 1.0) or 0.0)
                per_case.append({"seed": seed, "case": case, "slices": len(r.scores), "errors_mm": case_err, "monotonic_fraction": r.monotonic_fraction})
    all_err = [e for v in errors.values() for e in v]
    report: dict[str, Any] = {
        "model": f"{scorer.name} {scorer.version}",
        "synthetic_held_out": {
            "seeds": seeds,
            "size": size,
            "cases": names,
            "blur_mm": blur_mm,
            "landmark_error_mm": {n: _summary(v) for n, v in errors.items()},
            "all_landmarks_error_mm": _summary(all_err),
            "signed_mean_error_mm": {n: (round(float(np.mean(v)), 2) if v else None) for n, v in errors.items()},
            "missed_in_range": missed,
            "reported_out_of_range": spurious,
            "null_correct_fraction": round(null_ok / null_n, 4) if null_n else None,
            "region_accuracy": round(region_ok / region_n, 4) if region_n else None,
            "monotonic_fraction_mean": round(float(np.mean(mono)), 4) if mono else None,
            "monotonic_fraction_min": round(float(np.min(mono)), 4) if mono else None,
            "monotonic_fraction_tolerance_1_mean": round(float(np.mean(mono_tol)), 4) if mono_tol else None,
            "per_case": per_case,
        },
        "seconds": {"total": round(time.perf_counter() - t0, 1), "scoring": round(score_s, 2)},
    }
    if real:
        report["real"] = evaluate_real(scorer)
    return report


def time_scoring(n_slices: int = 300, repeats: int = 3, model: Any = None, seed: int = 990777) -> dict[str, Any]:
    """Seconds to score every slice of a 512 x 512 x ``n_slices`` CT (held-out whole body,
    slice spacing chosen so the series has ``n_slices`` slices). Best of ``repeats``."""
    import SimpleITK as sitk

    scorer = _scorer(model)
    with tempfile.TemporaryDirectory(prefix="radqc-bodyregion-time-") as tmp:
        image, _ = render_case(seed, CASES["whole_body"], Path(tmp))
    size = image.GetSize()
    # resample along z only to exactly n_slices (geometry stays axial 512 x 512)
    length = (size[2] - 1) * image.GetSpacing()[2]
    ref = sitk.Image(size[0], size[1], n_slices, image.GetPixelID())
    ref.SetSpacing((image.GetSpacing()[0], image.GetSpacing()[1], length / (n_slices - 1)))
    ref.SetOrigin(image.GetOrigin())
    ref.SetDirection(image.GetDirection())
    vol = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, -1024.0)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        scorer.score(vol)
        times.append(time.perf_counter() - t)
    return {"size": list(vol.GetSize()), "seconds_best": round(min(times), 3), "seconds_all": [round(t, 3) for t in times],
            "threads_env": os.environ.get("RADQC_ONNX_THREADS", "")}


def _figure(image: Any, result: Any, title: str, path: Path, truth: dict[str, float] | None = None) -> Path:
    """Score curve beside a sagittal MIP with the detected (and true) landmarks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image).astype(np.float32)  # (z, y, x)
    sp = image.GetSpacing()
    z = np.asarray(result.z_mm)
    order = np.argsort(-z)  # head at the top
    mip = np.clip(arr.max(axis=2), -200, 1500)[order]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 6), gridspec_kw={"width_ratios": [1.2, 1]})
    extent = (0.0, arr.shape[1] * sp[1], float(z.min()), float(z.max()))
    ax0.imshow(mip, cmap="gray", extent=extent, aspect="equal")
    ax0.set_xlabel("y (mm, anterior to posterior)")
    ax0.set_ylabel("patient z (mm)")
    ax0.set_title("sagittal MIP, detected landmarks" + (" (dashed: truth)" if truth else ""), fontsize=9)
    colours = plt.get_cmap("tab10")
    for i, n in enumerate(CT_LANDMARKS):
        c = colours(i % 10)
        v = result.landmarks.get(n)
        if v is not None:
            ax0.axhline(v, color=c, lw=1.2)
            ax0.text(extent[1], v, f" {n}", color=c, fontsize=7, va="center", ha="left", clip_on=False)
            ax1.axhline(v, color=c, lw=0.8)
        if truth and n in truth and extent[2] <= truth[n] <= extent[3]:
            ax0.axhline(truth[n], color=c, lw=1.0, ls="--")
    ax1.plot(np.asarray(result.scores)[order], z[order], ".", ms=3, color="k", label="slice score")
    ax1.set_ylim(extent[2], extent[3])
    ax1.set_xlabel("score (vertex 0, pubic symphysis 100)")
    ax1.set_title(f"monotonic fraction {result.monotonic_fraction}", fontsize=9)
    ax1.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def figures(out_dir: Path, model: Any = None, seed: int = DEFAULT_SEEDS[0]) -> list[Path]:
    """Card figures: the real head CT and one held-out synthetic whole-body CT."""
    scorer = _scorer(model)
    made = []
    if INVESALIUS.is_dir():
        img = _load_real(INVESALIUS)
        made.append(_figure(img, scorer.score(img), f"real head CT (InVesalius sample): body_region {scorer.version}",
                            out_dir / "body_region_real_head_ct.png"))
    with tempfile.TemporaryDirectory(prefix="radqc-bodyregion-fig-") as tmp:
        img, truth = render_case(seed, CASES["whole_body"], Path(tmp))
        made.append(_figure(img, scorer.score(img), f"held-out synthetic whole-body CT (seed {seed})",
                            out_dir / "body_region_synthetic_whole_body.png", truth["landmarks_mm"]))
    return made


def compact_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The registry's ``metrics`` block: held-out synthetic landmark errors and real-CT order."""
    syn = report["synthetic_held_out"]
    out: dict[str, Any] = {
        "synthetic_held_out_seeds": [min(syn["seeds"]), max(syn["seeds"])],
        "synthetic_cases": syn["cases"],
        "landmark_error_mm_median": {k: v["median"] for k, v in syn["landmark_error_mm"].items()},
        "landmark_error_mm_p90": {k: v["p90"] for k, v in syn["landmark_error_mm"].items()},
        "all_landmarks_error_mm": syn["all_landmarks_error_mm"],
        "null_correct_fraction": syn["null_correct_fraction"],
        "region_accuracy": syn["region_accuracy"],
        "synthetic_monotonic_fraction_mean": syn["monotonic_fraction_mean"],
        "synthetic_monotonic_fraction_tolerance_1_mean": syn["monotonic_fraction_tolerance_1_mean"],
    }
    inv = (report.get("real") or {}).get("invesalius_head_ct") or {}
    if inv.get("available"):
        out["real_head_ct"] = {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in inv.items()
            if k.startswith(("monotonic", "non_monotonic", "rank")) or k in ("seen_slices", "slices")
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="*", default=list(DEFAULT_SEEDS))
    ap.add_argument("--size", default="full", choices=["full", "small"])
    ap.add_argument("--weights", type=Path, default=None, help="evaluate an unregistered ONNX file (training output)")
    ap.add_argument("--training", type=Path, default=None, help="training.json of --weights (calibration)")
    ap.add_argument("--cases", nargs="*", default=None, choices=list(CASES), help="acquisitions per seed (default: all)")
    ap.add_argument("--blur-mm", type=float, default=0.0, help="blur each series in-plane first (Gaussian sigma, mm)")
    ap.add_argument("--no-real", action="store_true", help="skip the real-CT report")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--metrics", type=Path, default=None, help="write the registry metrics block (metrics.json) here")
    ap.add_argument("--figures", type=Path, default=None, help="write the card figures into this folder and stop")
    a = ap.parse_args(argv)
    model: Any = None
    if a.weights is not None:
        from radqc.models.body_region.export import model_info

        report_t = json.loads((a.training or a.weights.with_name("training.json")).read_text(encoding="utf-8"))
        from dataclasses import replace

        model = replace(model_info(report_t), weights=str(a.weights.resolve()), sha256="")
    if a.figures is not None:
        print([str(p) for p in figures(a.figures, model)])
        return
    rep = evaluate(a.seeds, a.size, a.quick, model, real=not a.no_real, cases=a.cases, blur_mm=a.blur_mm)
    text = json.dumps(rep, indent=1, default=sorted)
    if a.json:
        a.json.write_text(text, encoding="utf-8")
    if a.metrics:
        a.metrics.write_text(json.dumps(compact_metrics(rep), indent=1), encoding="utf-8")
    summary = {k: v for k, v in rep["synthetic_held_out"].items() if k != "per_case"}
    print(json.dumps({"synthetic_held_out": summary, "real": rep.get("real"), "seconds": rep["seconds"]}, indent=1, default=sorted))


if __name__ == "__main__":
    main()
