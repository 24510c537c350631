"""Extra CT training exams for the thumbnail network: every derived series type in every region.

The planner's exams (``radqc synth``) carry sagittal MPRs, MIPs and enhanced phases only for
some regions (e.g. sagittal MPRs mostly of spines), so a sagittal reformat of an abdomen was
never seen and read as coronal. This renders CT exams straight from
:class:`~radqc.datasets.synthetic.spec.ImagingSpec` with random region sets, phase sets,
vendors, habitus and kernels, and every derived role, into the layout
:mod:`.data` reads (``DIR/dicom/<exam>/...``, ``DIR/truth/<exam>.json``).

    python -m radqc.models.series_image.extra --out /work/cache/series_image/corpus/train_ct_derived --exams 300 --seed 7100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REGION_SETS = (["head"], ["neck"], ["chest"], ["abdomen"], ["pelvis"], ["chest", "abdomen"],
               ["abdomen", "pelvis"], ["chest", "abdomen", "pelvis"])
PHASE_SETS = (["native"], ["arterial"], ["portal"], ["native", "arterial", "portal"], ["native", "portal", "delayed"],
              ["native", "arterial", "portal", "delayed"], ["native", "delayed"])
VENDORS = ("GE", "Siemens", "Philips", "UIH", "Canon")


def render_set(out: Path, n_exams: int, seed: int) -> int:
    """Render ``n_exams`` small CT exams under ``out``; returns the number of series written."""
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec, SeriesRole

    rng = np.random.default_rng(seed)
    dicom, truth = out / "dicom", out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    n_series = 0
    for i in range(n_exams):
        key = f"X{seed}_{i:05d}"
        regions = list(REGION_SETS[rng.integers(len(REGION_SETS))])
        phases = list(PHASE_SETS[rng.integers(len(PHASE_SETS))])
        extra_kernel = "head" if regions == ["head"] else ("lung" if "chest" in regions else "bone")
        roles = ["localizer", "axial_soft_thick", "axial_soft_thin", f"axial_{extra_kernel}_thin", "mpr_coronal",
                 "mpr_sagittal", "dose_report"]
        if rng.random() < 0.5:
            roles.append("mip")
        if rng.random() < 0.5:
            roles.append("vr")
        spec = ImagingSpec(exam_key=key, seed=int(seed * 1000 + i), modality="CT", regions=regions,
                           vendor=str(VENDORS[rng.integers(len(VENDORS))]), sex="M" if rng.random() < 0.5 else "F",
                           age=int(rng.integers(18, 90)), phases=phases, acquisition="one_acquisition",
                           series=[SeriesRole(r) for r in roles], size="small")
        try:
            result = render_exam(spec, dicom, labels_dir=out / "labels" / key)
        except Exception as exc:  # noqa: BLE001 - a spec the renderer refuses is skipped, and said
            print(f"{key}: not rendered ({exc})")
            continue
        doc = {"exam_key": key, "export_dir": "dicom", "spec": spec.to_dict(), "imaging": result.to_dict()}
        (truth / f"{key}.json").write_text(json.dumps(doc, ensure_ascii=False, default=str), encoding="utf-8")
        n_series += len(result.series)
    return n_series


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--exams", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7100)
    a = ap.parse_args(argv)
    t0 = time.time()
    n = render_set(a.out, a.exams, a.seed)
    print(f"{a.exams} exams, {n} series in {time.time() - t0:.0f} s -> {a.out}")


if __name__ == "__main__":
    main()
