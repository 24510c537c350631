"""Training data for the artifact detector: generator exams -> per-series features and labels.

Why per series: the generator applies an artifact to an acquisition (CT: every reconstruction
of it), to one MR sequence (motion ghosting) or to one radiograph view, and records which in
``imaging.applied_defects``; labelling each series with what it really carries keeps clean
series of a defective exam from teaching the detector that clean images are defective.

Features are the classical measures of ``radqc.pipelines.image_qc.artifact`` (cached as
``.npz`` under ``--cache``), so training, the classical rule and serving read one thing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radqc.pipelines.image_qc.types import ExamImages, SeriesImages

#: generator defect kind -> detector class, per modality class
KIND_CLASS = {"motion": "motion", "metal": "equipment", "truncation": "equipment", "grid_lines": "equipment",
              "foreign_object": "foreign_object"}
#: feature order per modality: the learned model's input vector
FEATURES = {
    "CT": ("metal_px_max", "metal_slice_frac", "streak_max", "streak_med", "metal_inside_mean", "rim_touch_max",
           "rim_touch_frac", "rim_excess_max", "ghost_q90", "ghost_q50", "ghost_contrast", "ghost_hi_frac", "hu_outlier", "rim_excess_med", "rim_touch_med"),
    "MR": ("ghost_med", "ghost_q75", "ghost_any_med", "bg_ratio_med", "void_max", "void_q90", "void_slice_frac"),
    "DX": tuple(f"fo_{t}_{k}" for t in ("s8", "s15", "m8", "m15") for k in ("n", "lat", "px"))
    + tuple(f"{b}_{k}" for b in ("b1", "b3") for k in ("n15", "n30", "n60", "top5"))
    + ("grid_peak", "grid_rows", "grid_x", "grid_y", "grad_y", "grad_x", "anisotropy", "sharp", "aniso_fine", "smear_ratio", "aspect",
          "vspec_mid", "vspec_low", "vspec_rel", "vspec_snr"),
}


def vector(modality: str, feats: dict[str, float]) -> np.ndarray:
    """The model's input vector for one series (missing features are 0)."""
    return np.array([float(feats.get(k, 0.0)) for k in FEATURES[modality]], dtype=np.float32)


def exam_from_folder(path: str | Path, modality: str | None = None) -> ExamImages:
    """An ExamImages over a folder of DICOM files (no labels; series sorted by number).

    A minimal reader for training and tests: the image-QC runner builds the real one."""
    import pydicom

    from radqc.pipelines.series.features import from_datasets

    groups: dict[str, list[Any]] = defaultdict(list)
    for f in sorted(Path(path).rglob("*")):
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(str(f))
        except Exception:  # noqa: BLE001 - broken files are skipped, as the CLI does
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if uid and "PixelData" in ds:
            groups[uid].append(ds)
        elif uid:
            groups.setdefault(uid, [])
    series = []
    study = None
    mod = modality
    for _uid, items in groups.items():
        if not items:
            continue
        items.sort(key=lambda d: (float(d.ImagePositionPatient[2]) if "ImagePositionPatient" in d else 0.0,
                                  int(d.get("InstanceNumber", 0) or 0)))
        header = from_datasets(items)
        study = study or str(items[0].get("StudyInstanceUID", ""))
        mod = mod or header.modality
        series.append(_series_images(header, items))
    series.sort(key=lambda s: s.header.series_number or 0)
    return ExamImages(study_uid=study, modality=mod, standard_code=None, series=series)


def _series_images(header: Any, items: list[Any]) -> SeriesImages:
    from radqc.dicom.volume import build_volume, load_radiograph

    return SeriesImages(header=header, label=None, datasets=lambda: items, volume=lambda: build_volume(items),
                        radiograph=lambda: load_radiograph(items[0]))


def series_truth(truth: dict[str, Any]) -> dict[str, str]:
    """Detector class of every series of one generated exam (series UID -> class)."""
    im = truth.get("imaging", {})
    series = im.get("series", [])
    qc_class = truth.get("expected_qc", {}).get("qc_class")
    out = {s["series_instance_uid"]: "none" for s in series}
    for d in im.get("applied_defects", []):
        if d.get("dimension") != "artifact":
            continue
        params = d.get("params", {})
        cls = KIND_CLASS.get(str(params.get("kind")))
        if cls is None:
            continue
        for s in series:
            if qc_class == "MR" and params.get("kind") == "motion":
                if s.get("role") != params.get("sequence") or (params.get("plane") and s.get("plane") != params.get("plane")):
                    continue
            if qc_class == "DX" and params.get("view") and str(s.get("view", s.get("role", ""))).upper() != str(params["view"]).upper():
                if str(s.get("role", "")).upper() != str(params["view"]).upper():
                    continue
            if _stricter(cls, out[s["series_instance_uid"]]):
                out[s["series_instance_uid"]] = cls
    return out


def _stricter(a: str, b: str) -> bool:
    order = ("motion", "equipment", "foreign_object", "none")
    return order.index(a) < order.index(b)


def iter_exams(root: Path) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(exam key, DICOM folder, truth) for every exam of a ``radqc synth`` set."""
    for t in sorted((root / "truth").glob("*.json")):
        key = t.stem
        folders = list((root / "dicom").glob(f"*/{key}"))
        if folders:
            yield key, folders[0], json.loads(t.read_text())


def iter_series_slices(root: Path, qc_class: str, max_slices: int
                       ) -> Iterator[tuple[int, str, dict[str, Any], SeriesImages, list[np.ndarray], Any]]:
    """(exam number, exam key, truth, series, slices, first dataset) for every series of modality
    ``qc_class`` that the artifact measure analyses in the exams of that class of a ``radqc synth``
    set, read as the measure reads them (``select_series``, ``_slices``). The pixel-CNN trainers'
    one reader: training must see what serving sees. Folders and series that do not read are
    skipped (they are no training data)."""
    from radqc.pipelines.image_qc.artifact import DEFAULTS, _series_modality, _slices, select_series

    for n, (key, folder, truth) in enumerate(iter_exams(root)):
        if truth.get("expected_qc", {}).get("qc_class") != qc_class:
            continue
        try:
            exam = exam_from_folder(folder)
        except Exception:  # noqa: BLE001 - a folder that does not read is no training data
            continue
        for s in select_series(exam, DEFAULTS):
            if _series_modality(s, exam.modality) != qc_class:
                continue
            try:
                slices, _, first = _slices(s, max_slices)
            except Exception:  # noqa: BLE001 - broken series
                continue
            if slices:
                yield n, key, truth, s, slices, first


def extract_set(root: Path, cache: Path, only: str | None = None) -> Path:
    """Features + labels of every analysed series of a set, cached as one ``.npz`` per modality.

    ``only`` (CT, MR or DX) refreshes that modality's file alone (after a feature change)."""
    from radqc.pipelines.image_qc.artifact import DEFAULTS, _series_modality, analyse_series, select_series

    cache.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[tuple[np.ndarray, int, str]]] = defaultdict(list)
    exam_rows: list[dict[str, Any]] = []
    classes = ("none", "motion", "equipment", "foreign_object")
    for key, folder, truth in iter_exams(root):
        if only and truth.get("expected_qc", {}).get("qc_class") != only:
            continue
        labels = series_truth(truth)
        exam = exam_from_folder(folder)
        chosen = select_series(exam, DEFAULTS)
        per = []
        for s in chosen:
            mod = _series_modality(s, exam.modality)
            try:
                res = analyse_series(s, mod, DEFAULTS, None)
            except Exception:  # noqa: BLE001 - broken series are not training data
                continue
            lab = labels.get(s.header.series_uid, "none")
            rows[mod].append((vector(mod, res.features), classes.index(lab), f"{key}:{s.header.series_uid}"))
            per.append({"series": s.header.series_uid, "modality": mod, "truth": lab, "classical": res.value})
        exam_rows.append({"exam": key, "truth": truth.get("expected_qc", {}).get("dimensions", {}).get("artifact"), "series": per})
    for mod, items in rows.items():
        np.savez(cache / f"{mod}.npz", x=np.stack([r[0] for r in items]), y=np.array([r[1] for r in items]),
                 ids=np.array([r[2] for r in items]))
    if not only:
        (cache / "exams.json").write_text(json.dumps(exam_rows, ensure_ascii=False))
    return cache


if __name__ == "__main__":  # pragma: no cover - python -m radqc.models.artifact.data SET CACHE
    import sys

    extract_set(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
