"""Thumbnail caches of the synthetic series corpus (training, model selection, held-out figures).

One cache per ``radqc synth`` set: ``<cache>/<set>.npz`` with ``x`` (N, *THUMB_SHAPE, float16)
and ``<cache>/<set>.jsonl`` with one line per series: exam key, series UID, modality,
generator role, whether the written SeriesDescription is wrong, the thumbnail kind and the
expected label (:func:`radqc.datasets.evaluation.series_truth.expected_label`, the same
function ``radqc eval series`` scores against, so a label means one thing everywhere).

Instances are picked exactly as serving picks them (:func:`.thumbnail.pick_instances` over
the instances sorted by InstanceNumber), so the cache is what the model sees in production.

    python -m radqc.models.series_image.data --sets val_mixed val_mr heldout_mixed heldout_mr
    python -m radqc.models.series_image.data --sets train_mixed train_mr --variants 1
    python -m radqc.models.series_image.data --corpus /work/cache/series_image/corpus --sets train_ct train_mr2 train_dx --variants 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from radqc.models.series_image.thumbnail import THUMB_SHAPE, make_thumbnail_ex, pick_instances

CORPUS = Path(os.environ.get("RADQC_SERIES_CORPUS", "/work/cache/series"))
CACHE = Path(os.environ.get("RADQC_SERIES_IMAGE_CACHE", "/work/cache/series_image"))
#: Modalities whose multi-instance series get extra random-triple thumbnails (``--variants``):
#: a DWI series' instances mix b-values in vendor-specific orders.
VARIANT_MODALITIES = ("MR",)


def _instance_number(path: Path) -> tuple[int, str]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["InstanceNumber"])
        return int(ds.get("InstanceNumber") or 0), path.name
    except Exception:  # noqa: BLE001 - a malformed file sorts by name
        return 0, path.name


def series_thumbnail(files: list[Path], indices: list[int] | None = None
                     ) -> tuple[np.ndarray, bool, str | None, str | None]:
    """The thumbnail of one series on disk, picking instances as serving does (or ``indices``
    into the instances sorted by InstanceNumber)."""
    import pydicom

    ordered = sorted(files, key=_instance_number)
    picked = []
    for i in (pick_instances(len(ordered)) if indices is None else indices):
        try:
            picked.append(pydicom.dcmread(ordered[i]))
        except Exception:  # noqa: BLE001
            continue
    t = make_thumbnail_ex(picked)
    return t.array, t.ok, t.kind, t.reason


def _random_triple(n: int, key: str, variant: int) -> list[int]:
    """A sorted random triple of instance indices, fixed per (series, variant)."""
    import hashlib

    seed = int.from_bytes(hashlib.sha256(f"{key}/{variant}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=min(3, n), replace=False))


def _exam_rows(truth_path: Path, variants: int = 0,
               variant_modalities: tuple[str, ...] = VARIANT_MODALITIES) -> list[tuple[np.ndarray, dict[str, Any]]]:
    from radqc.datasets.evaluation.series_truth import expected_label

    d = json.loads(truth_path.read_text(encoding="utf-8"))
    base = truth_path.parent.parent / str(d.get("export_dir") or "")
    rows = []
    for s in (d.get("imaging") or {}).get("series") or []:
        files = [base / f for f in s.get("files") or []]
        files = [f for f in files if f.is_file()]
        if not files:
            continue
        arr, ok, kind, reason = series_thumbnail(files)
        extra = s.get("extra") or {}
        desc_true, desc_header = extra.get("description_true"), extra.get("description_header")
        meta = {
            "exam": d.get("exam_key"), "series_uid": s.get("series_instance_uid"),
            "modality": s.get("modality"), "gen_role": s.get("role"), "n_instances": len(files),
            "description_wrong": bool(desc_true and desc_header and desc_true != desc_header),
            "ok": ok, "kind": kind, "reason": reason, "label": expected_label(s),
        }
        rows.append((arr.astype(np.float16), meta))
        # extra thumbnails from other instance triples: DWI b-value order, interleaved series
        if len(files) > 3 and str(s.get("modality")) in variant_modalities:
            for v in range(1, variants + 1):
                idx = _random_triple(len(files), str(s.get("series_instance_uid")), v)
                arr_v, ok_v, kind_v, reason_v = series_thumbnail(files, idx)
                rows.append((arr_v.astype(np.float16), dict(meta, ok=ok_v, kind=kind_v, reason=reason_v, variant=v)))
    return rows


def _chunks(items: list[Path], n: int) -> Iterator[list[Path]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _work(job: tuple[list[Path], int]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    paths, variants = job
    out = []
    for p in paths:
        out.extend(_exam_rows(p, variants))
    return out


def build_cache(set_name: str, corpus: Path = CORPUS, cache: Path = CACHE, workers: int = 2,
                limit: int | None = None, variants: int = 0) -> Path:
    """Write ``cache/<set_name>.npz`` + ``.jsonl`` from ``corpus/<set_name>``; returns the npz path."""
    truths = sorted((corpus / set_name / "truth").glob("*.json"))[:limit]
    xs: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for rows in pool.map(_work, [(c, variants) for c in _chunks(truths, 20)]):
            for arr, meta in rows:
                xs.append(arr)
                metas.append(meta)
    cache.mkdir(parents=True, exist_ok=True)
    x = np.stack(xs) if xs else np.zeros((0, *THUMB_SHAPE), dtype=np.float16)
    npz = cache / f"{set_name}.npz"
    np.savez(npz, x=x)
    with (cache / f"{set_name}.jsonl").open("w", encoding="utf-8") as fh:
        for m in metas:
            fh.write(json.dumps(m, ensure_ascii=False) + "\n")
    print(f"{set_name}: {len(metas)} series from {len(truths)} exams in {time.time() - t0:.0f} s -> {npz}")
    return npz


def load_cache(set_name: str, cache: Path = CACHE) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(thumbnails float16 (N, C, H, W), metadata rows) of a built cache."""
    x = np.load(cache / f"{set_name}.npz")["x"]
    metas = [json.loads(line) for line in (cache / f"{set_name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return x, metas


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["train_mixed", "train_mr", "val_mixed", "val_mr"])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--variants", type=int, default=0,
                    help="extra thumbnails per multi-instance MR series from random instance triples (training sets)")
    args = ap.parse_args(argv)
    for s in args.sets:
        build_cache(s, args.corpus, args.cache, args.workers, args.limit, args.variants)


if __name__ == "__main__":
    main()
