"""Training and evaluation tables: one row per generated series (header + expected label).

A ``radqc synth`` set has ``dicom/<hospital>/<exam_key>/`` folders and ``truth/<exam_key>.json``
files; each truth ``imaging.series[*]`` entry names its SeriesInstanceUID, and
:func:`radqc.datasets.evaluation.series_truth.expected_label` turns it into the label a
correct classifier gives. Headers are read once (``stop_before_pixels``) and cached as JSON
lines under ``/work/cache/series_header/<set>.jsonl`` so training, tuning and evaluation
never re-read the DICOM files.

    python -m radqc.models.series_header.data /work/cache/series/train_mixed ...
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from radqc.datasets.evaluation.series_truth import expected_label
from radqc.pipelines.series.features import SeriesHeader, headers_from_folder

CACHE = Path(os.environ.get("RADQC_SERIES_CACHE", "/work/cache/series_header"))


def _exam_rows(args: tuple[str, str]) -> list[dict[str, Any]]:
    truth_path, set_root = args
    truth = json.loads(Path(truth_path).read_text(encoding="utf-8"))
    key = truth["exam_key"]
    exam_dir = Path(set_root) / "dicom" / str(truth.get("hospital") or "") / key
    if not exam_dir.is_dir():
        hits = list((Path(set_root) / "dicom").glob(f"*/{key}"))
        if not hits:
            return []
        exam_dir = hits[0]
    headers = {h.series_uid: h for h in headers_from_folder(exam_dir)}
    rows = []
    for s in truth["imaging"]["series"]:
        h = headers.get(s["series_instance_uid"])
        if h is None:
            continue
        extra = s.get("extra") or {}
        rows.append({"exam": key, "header": h.to_dict(), "label": expected_label(s), "gen_role": s.get("role"),
                     "description_wrong": bool(extra.get("description_wrong")),
                     "truth_complete": "description_true" in extra})
    return rows


def build(set_root: str | Path, out: Path | None = None, workers: int = 2) -> Path:
    """Read every exam of a synth set; write ``<cache>/<set>.jsonl``; return its path."""
    root = Path(set_root)
    out = out or CACHE / f"{root.name}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    tasks = [(str(p), str(root)) for p in sorted((root / "truth").glob("*.json"))]
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh, ProcessPoolExecutor(max_workers=workers) as pool:
        for rows in pool.map(_exam_rows, tasks, chunksize=8):
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out


def load(name: str) -> Iterator[tuple[SeriesHeader, dict[str, Any], dict[str, Any]]]:
    """(header, expected label, row) of a cached set."""
    path = CACHE / f"{name}.jsonl"
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            yield SeriesHeader.from_dict(row["header"]), row["label"], row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    for s in a.sets:
        print(build(s, workers=a.workers))


if __name__ == "__main__":
    main()
