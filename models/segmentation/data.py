"""Training and held-out cases for the CT organ model, rendered by the synthetic generator.

Each case is a full-size CT (512² matrix, vendor-style headers, random habitus, contrast
phase, region coverage and a share of image defects) written as DICOM, read back with
SimpleITK as a hospital's series would be, resampled to the model grid and stored as a
small ``.npz`` (int16 HU, uint8 labels in our label set). The DICOM is deleted after
conversion: only the resampled arrays are kept (~1 MB per case).

Seeds: training uses ``TRAIN_SEEDS``; evaluation uses ``HELDOUT_SEEDS`` — disjoint ranges,
never mixed (the model card quotes both).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.registry import LabelSet, load_label_set
from radqc.models.segmentation.preprocess import model_grid, resample_image_to, resample_labels_to

log = logging.getLogger(__name__)

TRAIN_SEEDS = range(5000, 5200)
HELDOUT_SEEDS = range(9000, 9100)
#: Progress checks during training only (never the held-out seeds, so nothing is tuned on them).
VAL_SEEDS = range(8000, 8050)

#: Region sets a case covers, with weights: whole-body scans teach every structure at once,
#: partial ones teach the model to work on truncated anatomy.
COVERAGE = [
    (["head", "neck", "chest", "abdomen", "pelvis"], 0.35),
    (["chest", "abdomen", "pelvis"], 0.2),
    (["head"], 0.1),
    (["head", "neck"], 0.05),
    (["chest"], 0.1),
    (["abdomen", "pelvis"], 0.1),
    (["abdomen"], 0.05),
    (["pelvis"], 0.05),
]
PHASES = ["native", "arterial", "portal", "delayed"]
VENDORS = ["GE", "Siemens", "Philips", "UIH", "Canon"]
DEFECTS = [
    None, None, None, None,
    ("centring", "偏左", {"kind": "off_centre", "offset_mm": 40}),
    ("artifact", "设备", {"kind": "metal"}),
    ("noise", "excess", {"kind": "excess_noise"}),
    ("artifact", "运动", {"kind": "motion"}),
]


@dataclass(frozen=True)
class CasePlan:
    seed: int
    regions: tuple[str, ...]
    phase: str
    sex: str
    age: int
    vendor: str
    thickness_mm: float
    defect: tuple | None


def plan_case(seed: int) -> CasePlan:
    rng = np.random.default_rng(seed)
    weights = np.array([w for _, w in COVERAGE])
    regions = COVERAGE[int(rng.choice(len(COVERAGE), p=weights / weights.sum()))][0]
    return CasePlan(
        seed=seed,
        regions=tuple(regions),
        phase=str(rng.choice(PHASES)),
        sex=str(rng.choice(["M", "F"])),
        age=int(rng.integers(8, 88)),
        vendor=str(rng.choice(VENDORS)),
        thickness_mm=float(rng.choice([1.25, 2.5, 2.5, 2.5])),
        defect=DEFECTS[int(rng.integers(len(DEFECTS)))],
    )


def generator_lut(label_set: LabelSet) -> np.ndarray:
    """256-entry look-up table: generator label id → our label (before the side split)."""
    lut = np.zeros(256, np.uint8)
    body = label_set.by_name()["body"].label
    lut[1:62] = body  # any tissue inside the patient not listed below is "body"
    lut[62] = 0  # foreign object on the skin / table
    lut[63] = 0  # table
    for s in label_set.structures:
        for g in s.from_generator:
            lut[g] = s.label
    return lut


def map_generator_labels(gen: np.ndarray, x_mm: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """Generator label ids (z, y, x array) → our label set. ``x_mm``: LPS x of each column."""
    out = generator_lut(label_set)[gen]
    for gid, sides in label_set.split_by_side.items():
        sel = gen == gid
        if sel.any():
            left = np.broadcast_to(x_mm[None, None, :] > 0, gen.shape)  # LPS +x = patient left
            out[sel & left] = sides["left"]
            out[sel & ~left] = sides["right"]
    return out


def render_native(plan: CasePlan, work: Path, label_set: LabelSet) -> tuple[Any, np.ndarray, dict]:
    """Render one case; return the CT as read from its DICOM (SimpleITK), our labels on that
    exact grid (z, y, x) and metadata (plan, landmarks). The DICOM folder is deleted."""
    import SimpleITK as sitk

    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import Defect, ImagingSpec, SeriesRole

    defects = [Defect(plan.defect[0], plan.defect[1], dict(plan.defect[2]))] if plan.defect else []
    spec = ImagingSpec(
        exam_key=f"S{plan.seed}", seed=plan.seed, modality="CT", regions=list(plan.regions), size="full",
        vendor=plan.vendor, sex=plan.sex, age=plan.age, phases=[plan.phase],  # type: ignore[arg-type]
        acquisition="one_acquisition", series=[SeriesRole("axial_soft_thin", {"thickness_mm": plan.thickness_mm})],
        defects=defects, evidence={"derived": False},
    )
    out = work / f"S{plan.seed}"
    try:
        result = render_exam(spec, out, labels_dir=out / "labels")
        series = [s for s in result.series if s.role == "axial_soft_thin"][0]
        folder = out / Path(series.files[0]).parent
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        sitk.ProcessObject.SetGlobalWarningDisplay(False)
        image = reader.Execute()
        label_path = Path(series.label_map) if series.label_map else None
        if label_path is not None and not label_path.is_absolute():
            label_path = out / label_path
        gen = sitk.Resample(sitk.ReadImage(str(label_path)), image, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                            sitk.sitkUInt8)
        size, origin, spacing = image.GetSize(), image.GetOrigin(), image.GetSpacing()
        x_mm = origin[0] + np.arange(size[0]) * spacing[0] * image.GetDirection()[0]
        labels = map_generator_labels(sitk.GetArrayFromImage(gen), x_mm, label_set)
        meta = {"plan": plan.__dict__, "landmarks_mm": result.measurements.get("landmarks_mm", {}),
                "series_uid": series.series_instance_uid}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return image, labels, meta


def render_case(plan: CasePlan, work: Path, spacing_mm: float, label_set: LabelSet) -> dict:
    """Render one case and return arrays on the model grid plus its metadata."""
    import SimpleITK as sitk

    image, labels_native, meta = render_native(plan, work, label_set)
    native = sitk.GetImageFromArray(labels_native)
    native.CopyInformation(image)
    ref = model_grid(image, spacing_mm)
    hu = sitk.GetArrayFromImage(resample_image_to(image, ref))
    labels = sitk.GetArrayFromImage(resample_labels_to(native, ref))
    return {
        "hu": np.clip(np.rint(hu), -1024, 3071).astype(np.int16),
        "labels": labels,
        "origin": np.asarray(ref.GetOrigin()),
        "spacing": float(spacing_mm),
        "meta": json.dumps(meta),
    }


def build(out_dir: Path, seeds: list[int], spacing_mm: float = 3.0) -> list[Path]:
    """Render ``seeds`` into ``out_dir/<seed>.npz`` (skips ones already there: resumable)."""
    label_set = load_label_set("ct_organs")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(prefix="radqc-seg-") as tmp:
        for i, seed in enumerate(seeds):
            path = out_dir / f"{seed}.npz"
            paths.append(path)
            if path.exists():
                continue
            t0 = time.time()
            plan = plan_case(seed)
            arrays = render_case(plan, Path(tmp), spacing_mm, label_set)
            np.savez_compressed(path.with_suffix(".tmp.npz"), **arrays)
            path.with_suffix(".tmp.npz").rename(path)
            log.info("case %d/%d seed %d %s %s: %s in %.1fs", i + 1, len(seeds), seed, "+".join(plan.regions),
                     plan.phase, arrays["hu"].shape, time.time() - t0)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description="Render synthetic CT cases for the organ model")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--split", choices=["train", "val", "heldout"], default="train")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--spacing", type=float, default=3.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    seeds = list({"train": TRAIN_SEEDS, "val": VAL_SEEDS, "heldout": HELDOUT_SEEDS}[args.split])[: args.n]
    build(args.out / args.split, seeds, args.spacing)


if __name__ == "__main__":
    main()
