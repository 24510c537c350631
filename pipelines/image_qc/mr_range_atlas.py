"""MR scan range for knee and spine: where the field of view lies on the anatomy, by profile registration.

Knee and spine MR have no landmark model, but their sagittal/coronal images show the anatomy along
the superior-inferior axis (femur, joint, tibia; lungs, vertebrae, abdomen, pelvis), so the rows of
one image, averaged across the columns, give an intensity profile along that axis. An *atlas
profile* per region, plane and sequence is the mean profile of correctly planned training exams in
millimetres from their field-of-view centre. Registering an image's profile to the atlas (the
shift with the highest normalised cross-correlation) says where the image's top and bottom edges
lie in atlas coordinates; the item's required landmarks are positions in the same coordinates
(``qc_rules/image_qc/mr.yaml``), so "the field reaches the landmark" becomes a comparison in mm.

The atlas is data (``qc_rules/image_qc/mr_range_atlas.json``), rebuilt with
``python -m radqc.pipelines.image_qc.mr_range_atlas build OUT.json DIR [DIR...]`` from generated
*training* sets (seeds 7xxx); only exams whose truth range is 正常 contribute. The clinical
planner orders no cervical-spine MR, so its training exams come from
``python -m radqc.pipelines.image_qc.mr_range_atlas render OUT SEED N cervical_spine``: the
generator's renderer given an ImagingSpec directly (half clean, a quarter cut at each end).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from radqc.pipelines.image_qc.types import SeriesImages

__all__ = ["STEP_MM", "ATLAS_REGIONS", "series_profile", "match", "load_atlas", "atlas_key", "build_atlas",
           "render_spine_set"]

#: profile sampling step (mm): finer than any small-image pixel matters little, the anatomy is coarse
STEP_MM = 2.0

#: generator region -> atlas region. No thoracic spine: no MR item standard asks for it, and the
#: generator's correctly planned thoracic field (centred on T7) reaches C7/L1 only by chance, so its
#: truth does not follow the field edges (training seed 7210: clean and cut tops overlap)
ATLAS_REGIONS = {"head": "head", "knee": "knee", "lumbar_spine": "lumbar_spine", "cervical_spine": "cervical_spine"}

#: the landmark each end of a spine range defect removes (the generator's qc.yaml ``landmarks``)
_SPINE_ENDS = {"cervical_spine": ("C1", "T1"), "thoracic_spine": ("C7", "L1"), "lumbar_spine": ("T12", "S1")}


def _superior_row(series: SeriesImages) -> tuple[list[Any], bool | None]:
    """The series' instances and whether row 0 is superior (None: axial, oblique or no geometry)."""
    dss = list(series.datasets())
    if not dss:
        return dss, None
    iop = getattr(dss[0], "ImageOrientationPatient", None)
    if iop is None:
        return dss, None
    o = np.asarray([float(v) for v in iop], dtype=float)
    col_z = float(o[5])
    if abs(col_z) < 0.7:
        return dss, None
    return dss, col_z < 0


def series_profile(series: SeriesImages, n_central: int = 3) -> dict[str, Any] | None:
    """Superior-to-inferior row profile of a sagittal/coronal series, on a ``STEP_MM`` grid.

    Returns {"offsets": mm from the field centre (positive = inferior), "values": column mean / 99th
    percentile, averaged over the central slices, "half_mm": half the field height}. ``None`` when the
    geometry does not give the superior direction (axial, oblique) or the pixels are empty."""
    dss, row0_superior = _superior_row(series)
    if row0_superior is None or len(dss) < 1:
        return None
    mid = len(dss) // 2
    lo = max(0, mid - n_central // 2)
    picked = dss[lo:lo + n_central]
    rows: list[np.ndarray] = []
    spacing = None
    for ds in picked:
        img = np.asarray(ds.pixel_array, dtype=np.float32)
        if img.ndim != 2:
            continue
        hi = float(np.percentile(img, 99))
        if hi <= 0:
            continue
        prof = img.mean(axis=1) / hi
        if not row0_superior:
            prof = prof[::-1]
        if rows and prof.shape != rows[0].shape:
            continue
        rows.append(prof)
        ps = getattr(ds, "PixelSpacing", None)
        spacing = float(ps[0]) if ps is not None else spacing
    if not rows or not spacing:
        return None
    prof = np.mean(rows, axis=0)
    n = prof.shape[0]
    centres = (np.arange(n) - (n - 1) / 2) * spacing
    half = n * spacing / 2
    grid = np.arange(np.ceil(-half / STEP_MM) * STEP_MM, half, STEP_MM)
    values = np.interp(grid, centres, prof)
    return {"offsets": grid, "values": values, "half_mm": half}


def match(profile: dict[str, Any], template: dict[str, Any], max_shift_mm: float,
          min_overlap_mm: float) -> tuple[float, float] | None:
    """The shift (mm) placing the image's field centre in atlas coordinates, and its correlation.

    For each candidate shift ``s`` the image offset ``y`` is compared with the atlas at ``y + s`` over
    the overlap (at least ``min_overlap_mm``); the shift with the highest normalised
    cross-correlation wins. ``None`` when no shift leaves enough overlap."""
    t_start = float(template["start_mm"])
    t_vals = np.asarray(template["values"], dtype=float)
    y = np.asarray(profile["offsets"], dtype=float)
    v = np.asarray(profile["values"], dtype=float)
    best: tuple[float, float] | None = None
    for s in np.arange(-max_shift_mm, max_shift_mm + STEP_MM / 2, STEP_MM):
        idx = np.round((y + s - t_start) / STEP_MM).astype(int)
        ok = (idx >= 0) & (idx < t_vals.size)
        if ok.sum() * STEP_MM < min_overlap_mm:
            continue
        a = v[ok] - v[ok].mean()
        b = t_vals[idx[ok]] - t_vals[idx[ok]].mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        if den <= 0:
            continue
        r = float((a * b).sum() / den)
        if best is None or r > best[1]:
            best = (float(s), r)
    return best


def atlas_key(region: str, plane: str | None, sequence: str | None) -> str:
    return f"{region}:{plane or 'any'}:{sequence or 'any'}"


def _atlas_path() -> Path:
    import radqc.qc_rules

    return Path(radqc.qc_rules.__file__).resolve().parent / "image_qc" / "mr_range_atlas.json"


@functools.lru_cache(maxsize=2)
def load_atlas(path: str | None = None) -> dict[str, Any]:
    """The atlas profiles ({key: {start_mm, values, n}}); empty when the file is absent."""
    p = Path(path) if path else _atlas_path()
    if not p.is_file():
        return {}
    with p.open(encoding="utf-8") as fh:
        return dict(json.load(fh).get("profiles") or {})


# ---------------------------------------------------------------- building (offline, training sets only)


def build_atlas(dirs: list[str], regions: dict[str, str], min_exams: int = 3) -> dict[str, Any]:
    """Mean profiles of the 正常-range exams of generated training sets, per region/plane/sequence.

    ``regions`` maps the generator's region to the atlas region name (e.g. ``lumbar_spine`` ->
    ``lumbar_spine``). Each key also gets a pooled ``<region>:<plane>:any`` profile, used for a
    sequence without its own."""
    from radqc.pipelines.image_qc.measure_common import exam_from_folder, label_of

    acc: dict[str, list[dict[str, Any]]] = {}
    exams: dict[str, set[str]] = {}
    for d in dirs:
        root = Path(d)
        for tf in sorted((root / "truth").glob("*.json")):
            truth = json.loads(tf.read_text(encoding="utf-8"))
            spec = truth.get("spec") or {}
            regs = spec.get("regions") or []
            if spec.get("modality") != "MR" or len(regs) != 1 or regs[0] not in regions:
                continue
            if (truth.get("expected_qc") or {}).get("dimensions", {}).get("range") != "正常":
                continue
            folders = list((root / "dicom").glob(f"*/{truth['exam_key']}"))
            if not folders:
                continue
            exam = exam_from_folder(folders[0], standard_code=None)
            region = regions[regs[0]]
            for s in exam.series:
                seq = label_of(s, "sequence")
                if seq in ("DWI", "ADC", None):
                    continue
                plane = label_of(s, "plane")
                prof = series_profile(s)
                if prof is None:
                    continue
                for key in (atlas_key(region, plane, seq), atlas_key(region, plane, None)):
                    acc.setdefault(key, []).append(prof)
                    exams.setdefault(key, set()).add(f"{root.name}/{truth['exam_key']}")
    out: dict[str, Any] = {}
    for key, profs in sorted(acc.items()):
        if len(exams[key]) < min_exams:
            continue
        lo = min(float(p["offsets"][0]) for p in profs)
        hi = max(float(p["offsets"][-1]) for p in profs)
        grid = np.arange(lo, hi + STEP_MM / 2, STEP_MM)
        total = np.zeros(grid.size)
        count = np.zeros(grid.size)
        for p in profs:
            idx = np.round((np.asarray(p["offsets"]) - lo) / STEP_MM).astype(int)
            total[idx] += np.asarray(p["values"])
            count[idx] += 1
        keep = count >= max(2, 0.2 * len(profs))
        first, last = int(np.argmax(keep)), int(keep.size - np.argmax(keep[::-1]) - 1)
        vals = total[first:last + 1] / np.maximum(count[first:last + 1], 1)
        out[key] = {"start_mm": round(float(grid[first]), 1), "values": [round(float(v), 4) for v in vals],
                    "n_series": len(profs), "n_exams": len(exams[key])}
    return out


def render_spine_set(out: str | Path, seed: int, n: int, regions: list[str]) -> int:
    """Render ``n`` spine MR exams straight from ImagingSpecs, in ``radqc synth``'s folder layout.

    The clinical planner orders no cervical-spine MR, so the atlas's training (and validation)
    exams of that region are rendered here: half clean, a quarter cut at the top landmark, a quarter
    at the bottom one (15-40 mm, as the planner's MR range defect). Writes ``dicom/H/<key>/``,
    ``truth/<key>.json`` (spec, expected_qc.dimensions.range, imaging.applied_defects) and a
    manifest naming this command; returns the number of exams."""
    from radqc.datasets.synthetic.imaging.render import render_exam
    from radqc.datasets.synthetic.spec import Defect, ImagingSpec

    root = Path(out)
    (root / "truth").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        region = regions[i % len(regions)]
        key = f"S{seed}_{i:04d}"
        r = float(rng.random())
        cut = float(rng.uniform(15, 40))
        top, bottom = _SPINE_ENDS[region]
        defects = []
        if r < 0.5:
            end, landmark = ("top", top) if r < 0.25 else ("bottom", bottom)
            defects = [Defect("range", "过小", {"kind": "range_too_small", "missing": [landmark], "end": end, "cut_mm": cut})]
        spec = ImagingSpec(exam_key=key, seed=int(seed) * 10000 + i, modality="MR", regions=[region], size="small",
                           vendor=str(rng.choice(["GE", "Siemens", "Philips", "UIH", "Canon"])),
                           sex="M" if rng.random() < 0.5 else "F", age=int(rng.integers(20, 80)), defects=defects)
        res = render_exam(spec, root / "dicom" / "H", labels_dir=root / "labels")
        applied = [{"dimension": d.dimension, "value": d.value, "params": d.params} for d in res.applied_defects]
        cut_applied = any(d["dimension"] == "range" for d in applied)
        truth = {"exam_key": key, "spec": {"modality": "MR", "regions": [region]},
                 "expected_qc": {"dimensions": {"range": "过小" if cut_applied else "正常"}},
                 "imaging": {"applied_defects": applied}}
        (root / "truth" / f"{key}.json").write_text(json.dumps(truth, ensure_ascii=False, default=str), encoding="utf-8")
    manifest = {"profile": "spine-mr", "seed": seed, "n_exams": n, "size": "small", "regions": regions,
                "command": f"python -m radqc.pipelines.image_qc.mr_range_atlas render OUT {seed} {n} {' '.join(regions)}"}
    (root / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return n


def _source(d: str) -> str:
    """A training set named by its generator seed and profile (the folder name says nothing)."""
    try:
        m = json.loads((Path(d) / "manifest.json").read_text(encoding="utf-8"))
        if m.get("command"):
            return f"{m['command']} (seed {m.get('seed')}, {m.get('n_exams')} exams, size {m.get('size')})"
        return f"radqc synth --profile {m.get('profile')} --seed {m.get('seed')} ({m.get('n_exams')} exams, size {m.get('size')})"
    except (OSError, ValueError):
        return Path(d).name


def main(argv: list[str]) -> int:
    """``build OUT.json DIR [DIR...]``: write the atlas from generated training sets;
    ``render OUT SEED N REGION [REGION...]``: render spine MR exams the planner does not order."""
    if len(argv) >= 4 and argv[0] == "render":
        n = render_spine_set(argv[1], int(argv[2]), int(argv[3]), argv[4:] or ["cervical_spine"])
        print(f"{n} exams -> {argv[1]}")
        return 0
    if len(argv) < 3 or argv[0] != "build":
        print("usage: python -m radqc.pipelines.image_qc.mr_range_atlas build OUT.json DIR [DIR...]\n"
              "       python -m radqc.pipelines.image_qc.mr_range_atlas render OUT SEED N REGION [REGION...]", file=sys.stderr)
        return 2
    profiles = build_atlas(argv[2:], ATLAS_REGIONS)
    doc = {"schema": "radqc.image_qc.mr_range_atlas/1",
           "what": "mean superior-inferior row profiles (column mean / 99th percentile) of sagittal/coronal MR "
                   "series of correctly planned exams, mm from the field centre (positive = inferior)",
           "step_mm": STEP_MM, "sources": [_source(d) for d in argv[2:]], "profiles": profiles}
    Path(argv[1]).write_text(json.dumps(doc, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{len(profiles)} profiles -> {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
