"""Held-out figures of the series thumbnail network for its model card (ONNX, as served).

    python -m radqc.models.series_image.evaluate --from build/series_image [--sets heldout_mixed heldout_mr]

Writes ``<from>/metrics.json`` (read by ``export.install`` into the registry) and the
confusion-matrix figures ``models/cards/figures/series_image_{ct_phase,mr_sequence}.png``.
Held-out sets (generator seeds 9101, 9102) are read only here, never by training or
model selection. Speed is measured on one thread, thumbnails built from already decoded
pixels (the classifier's situation: the series stage decodes the picked instances once).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.series_image.data import CACHE, CORPUS
from radqc.models.series_image.heads import table_from_dict
from radqc.models.series_image.infer import SeriesImageModel
from radqc.models.series_image.train import IGNORE, encode_labels, load_sets

HELDOUT_SETS = ("heldout_mixed", "heldout_mr")
FIGURES = Path(__file__).resolve().parents[1] / "cards" / "figures"


def _model_from(out: Path) -> SeriesImageModel:
    import torch

    from radqc.models.runtime import session_for_path

    ck = torch.load(out / "net.pt", map_location="cpu")
    return SeriesImageModel(session_for_path(out / "series_image.onnx", ["CPUExecutionProvider"]),
                            table_from_dict(ck["heads"]))


def _confusion_png(y: list[str], p: list[str], labels: list[str], title: str, path: Path) -> list[list[int]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = {v: i for i, v in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for a, b in zip(y, p, strict=True):
        cm[idx[a], idx[b]] += 1
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    ax.imshow(cm / np.maximum(1, cm.sum(1, keepdims=True)), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > 0.6 * max(1, cm[i].sum()) else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return cm.tolist()


def accuracy_figures(model: SeriesImageModel, sets: tuple[str, ...], cache: Path = CACHE,
                     figures: Path | None = FIGURES) -> dict[str, Any]:
    """Per-head accuracy (all series, series with a wrong SeriesDescription), confident-subset
    accuracy, MR exam-level sequence sets, and confusion matrices for phase and MR sequence."""
    x, metas = load_sets(sets, cache)
    table = model.heads
    y = encode_labels(metas, table)
    probs = model.predict(x.astype(np.float32), [m["modality"] for m in metas])
    res: dict[str, Any] = {"sets": list(sets), "n_series": len(metas),
                           "thumbnail_failures": int(sum(not m["ok"] for m in metas))}
    acc: dict[str, Any] = {}
    conf: dict[str, Any] = {}
    for j, h in enumerate(table.heads):
        rows = [i for i in range(len(metas)) if y[i, j] != IGNORE and h.field in probs[i]]
        if not rows:
            continue
        truth = [h.values[y[i, j]] for i in rows]
        pred = [max(probs[i][h.field].items(), key=lambda kv: kv[1]) for i in rows]
        ok = np.array([p[0] == t for p, t in zip(pred, truth, strict=True)])
        pmax = np.array([p[1] for p in pred])
        wrong_desc = np.array([metas[i]["description_wrong"] for i in rows])
        key = f"{h.group}.{h.field}"
        acc[key] = {"n": len(rows), "accuracy": round(float(ok.mean()), 4)}
        if wrong_desc.any():
            acc[key]["n_description_wrong"] = int(wrong_desc.sum())
            acc[key]["accuracy_description_wrong"] = round(float(ok[wrong_desc].mean()), 4)
        sure = pmax >= 0.9
        conf[key] = {"coverage_p90": round(float(sure.mean()), 4),
                     "accuracy_p90": round(float(ok[sure].mean()), 4) if sure.any() else None}
        if figures is not None and key in ("ct.phase", "mr.sequence"):
            labels = [str(v) for v in h.values]
            cm = _confusion_png([str(t) for t in truth], [str(p[0]) for p in pred], labels,
                                f"series_image {key}\n({', '.join(sets)})",
                                figures / f"series_image_{key.replace('.', '_')}.png")
            res[f"confusion_{key}"] = {"labels": labels, "matrix": cm}
    res["accuracy"] = acc
    res["confident"] = conf
    # MR exam-level: the set of predicted sequences equals the truth set
    exams: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for i, m in enumerate(metas):
        if m["modality"] == "MR" and "sequence" in probs[i] and m["label"].get("sequence"):
            p = max(probs[i]["sequence"].items(), key=lambda kv: kv[1])[0]
            exams[m["exam"]].append((str(m["label"]["sequence"]), str(p)))
    if exams:
        res["mr_exam_sequence_set_correct"] = round(
            float(np.mean([{t for t, _ in v} == {p for _, p in v} for v in exams.values()])), 4)
        res["mr_exams"] = len(exams)
    return res


def _series_from_corpus(set_name: str, n: int, corpus: Path = CORPUS) -> list[tuple[list[Any], str]]:
    """``n`` series of a corpus set as (picked decoded datasets, modality), for timing."""
    import pydicom

    from radqc.models.series_image.thumbnail import pick_instances

    out: list[tuple[list[Any], str]] = []
    for truth in sorted((corpus / set_name / "truth").glob("*.json")):
        d = json.loads(truth.read_text(encoding="utf-8"))
        base = truth.parent.parent / str(d.get("export_dir") or "")
        for s in d["imaging"]["series"]:
            files = sorted(base / f for f in s["files"])
            dss = [pydicom.dcmread(files[i]) for i in pick_instances(len(files))]
            for ds in dss:
                _ = ds.pixel_array  # decode once (cached on the dataset)
            out.append((dss, str(s["modality"])))
            if len(out) >= n:
                return out
    return out


def _upsample_to_512(dss: list[Any]) -> list[Any]:
    """The same CT series at a real scanner's 512 x 512 matrix (pixel copies, spacing scaled)."""
    from pydicom.uid import ExplicitVRLittleEndian

    out = []
    for ds in dss:
        big = ds.copy()
        arr = ds.pixel_array
        f = max(1, 512 // arr.shape[1])
        a2 = np.kron(arr, np.ones((f, f), dtype=arr.dtype))
        big.Rows, big.Columns = a2.shape
        big.file_meta = ds.file_meta.copy()
        big.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        big.PixelData = a2.tobytes()
        if "PixelSpacing" in ds:
            big.PixelSpacing = [float(v) / f for v in ds.PixelSpacing]
        _ = big.pixel_array
        out.append(big)
    return out


def timing(model: SeriesImageModel, set_name: str = "val_mixed", n: int = 200, batch: int = 16) -> dict[str, Any]:
    """Milliseconds per series: thumbnail from decoded pixels + batched ONNX inference (1 thread)."""
    from radqc.models.series_image.thumbnail import make_thumbnail

    series = _series_from_corpus(set_name, n)
    ct = [s for s in series if s[1] == "CT" and s[0][0].get("SOPClassUID", "").endswith(".2")][:40]
    big = [(_upsample_to_512(dss), mod) for dss, mod in ct]
    res: dict[str, Any] = {"threads": 1, "batch": batch}
    for name, items in (("corpus_small", series), ("ct_512", big)):
        if not items:
            continue
        model.predict(np.stack([make_thumbnail(d) for d, _ in items[:batch]]), [m for _, m in items[:batch]])
        t0 = time.perf_counter()
        thumbs = [make_thumbnail(d) for d, _ in items]
        t1 = time.perf_counter()
        for i in range(0, len(items), batch):
            model.predict(np.stack(thumbs[i:i + batch]), [m for _, m in items[i:i + batch]])
        t2 = time.perf_counter()
        res[name] = {"n_series": len(items), "thumbnail_ms": round(1000 * (t1 - t0) / len(items), 2),
                     "inference_ms": round(1000 * (t2 - t1) / len(items), 2),
                     "total_ms": round(1000 * (t2 - t0) / len(items), 2)}
    return res


def fullsize_specs() -> list[Any]:
    """A few exams at scanners' matrix sizes (512 px CT, 256-320 px MR, 2 k radiographs)."""
    from radqc.datasets.synthetic.spec import ImagingSpec, SeriesRole

    ax = {"plane": "axial"}
    return [
        ImagingSpec(exam_key="F_CT_ABD", seed=950001, modality="CT", regions=["abdomen"], size="full",
                    phases=["native", "portal"], acquisition="one_acquisition",
                    series=[SeriesRole(r) for r in ("localizer", "axial_soft_thick", "axial_soft_thin", "axial_lung_thin",
                                                    "mpr_coronal", "mpr_sagittal", "vr", "dose_report")]),
        ImagingSpec(exam_key="F_CT_CHEST", seed=950002, modality="CT", regions=["chest"], size="full",
                    phases=["arterial"], vendor="Siemens",
                    series=[SeriesRole(r) for r in ("localizer", "axial_soft_thick", "axial_lung_thin", "axial_bone_thin",
                                                    "mpr_coronal")]),
        ImagingSpec(exam_key="F_MR_HEAD", seed=950003, modality="MR", regions=["head"], size="full",
                    series=[SeriesRole(r, ax) for r in ("T1W", "T2W", "FLAIR", "T1W_POST")]
                    + [SeriesRole("DWI", {"plane": "axial", "b_values": [0, 1000]}), SeriesRole("ADC", ax)]),
        ImagingSpec(exam_key="F_MR_LSPINE", seed=950004, modality="MR", regions=["lumbar_spine"], size="full",
                    series=[SeriesRole("T1W", {"plane": "sagittal"}), SeriesRole("T2W", {"plane": "sagittal"}),
                            SeriesRole("STIR", {"plane": "sagittal"}), SeriesRole("T2W", ax)]),
        ImagingSpec(exam_key="F_DX_CHEST", seed=950005, modality="DX", regions=["chest"], size="full", vendor="Philips",
                    series=[SeriesRole("PA"), SeriesRole("LAT")]),
    ]


def fullsize_check(model: SeriesImageModel, work: Path = CACHE / "fullsize") -> dict[str, Any]:
    """Rendered full-size exams (generator seeds 950001-950005): per series, the top value of
    each field against the expected label; the small-matrix training must carry over."""
    from dataclasses import asdict

    import pydicom

    from radqc.datasets.evaluation.series_truth import expected_label
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.models.series_image.thumbnail import make_thumbnail, pick_instances

    rows: list[dict[str, Any]] = []
    hits: dict[str, list[bool]] = defaultdict(list)
    for spec in fullsize_specs():
        result = render_exam(spec, work, labels_dir=work / "labels" / spec.exam_key)
        for s in result.series:
            files = sorted((work / f for f in s.files),
                           key=lambda f: int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber))
            dss = [pydicom.dcmread(files[i]) for i in pick_instances(len(files))]
            probs = model.predict(make_thumbnail(dss)[None], [s.modality])[0]
            truth = expected_label(asdict(s))
            row: dict[str, Any] = {"exam": spec.exam_key, "role": s.role, "rows": int(dss[0].Rows)}
            for h in model.heads.for_group(model.heads.group_of(s.modality)):
                t = h.target(truth)
                if t is None or h.field not in probs:
                    continue
                top = max(probs[h.field].items(), key=lambda kv: kv[1])[0]
                ok = top == h.values[t]
                hits[f"{h.group}.{h.field}"].append(ok)
                if not ok:
                    row.setdefault("wrong", {})[h.field] = {"truth": h.values[t], "predicted": top}
            rows.append(row)
    return {"n_series": len(rows), "accuracy": {k: round(float(np.mean(v)), 3) for k, v in sorted(hits.items())},
            "errors": [r for r in rows if "wrong" in r]}


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("RADQC_ONNX_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="src", type=Path, required=True)
    ap.add_argument("--sets", nargs="+", default=list(HELDOUT_SETS))
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-fullsize", action="store_true")
    a = ap.parse_args(argv)
    model = _model_from(a.src)
    res = accuracy_figures(model, tuple(a.sets), figures=None if a.no_figures else FIGURES)
    if not a.no_timing:
        res["timing"] = timing(model)
    if not a.no_fullsize:
        res["fullsize"] = fullsize_check(model)
    (a.src / "metrics.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("confusion")}, indent=1))


if __name__ == "__main__":
    main()
