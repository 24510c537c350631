"""Per-series rows of the artifact decision beside the generator's truth (error analysis).

What the serving pipeline decided for every series it analysed -- its value, the net's
probabilities, every feature and every rule's readings -- next to the class the generator
really applied to that series (``data.series_truth``) and the exam's artifact truth. One JSON
line per series, so a miss can be read without re-running the pixels:

    python -m radqc.models.artifact.series_rows SET OUT.jsonl [--shard K/N]

Session 23 trained a second stage (gradient-boosted trees per modality) on these rows of two
fresh qc-items renders and checked it on a third: it did not beat the pipeline (exam artifact
0.951 -> 0.931 on seed 7503; cross-fitted rescue/veto policies gained < 0.2 points on CT and
MR). The misses are where every reading is flat, so the next gains need new measurements,
not a new weighing of the old ones (docs/image-qc-accuracy.md, "Changes, 2026-11-24 evening").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def exam_rows(exam_dir: Path, items: list[str], labels: dict[str, str]) -> list[dict[str, Any]]:
    """One row per series the artifact measure analyses, read exactly as ``radqc qc`` reads the exam."""
    from radqc.pipelines.image_qc.artifact import (
        DEFAULTS,
        _load_model,
        _series_modality,
        decide_series,
        measure_series,
        select_series,
    )
    from radqc.pipelines.image_qc.exam import exam_from_files, modality_group
    from radqc.pipelines.image_qc.run import measure_params
    from radqc.pipelines.series.run import scan

    rows: list[dict[str, Any]] = []
    exams, _bad = scan(exam_dir)
    for files in sorted(exams, key=lambda e: e.study_uid):
        folder = exam_from_files(files, item_names=items, item_source="records" if items else None, image_model=True)
        exam = folder.exam
        params = measure_params(modality_group(exam.modality), exam.standard_code)
        art = params.get("artifact") if isinstance(params.get("artifact"), dict) else {}
        p = {**DEFAULTS, **(art or {})}
        model = _load_model(p)
        for s in select_series(exam, p):
            mod = _series_modality(s, exam.modality)
            try:
                measured = measure_series(s, mod, p)
            except Exception:  # noqa: BLE001 - an undecodable series is no training row
                continue
            res = decide_series(measured, p, model)
            uid = s.header.series_uid
            rows.append({"series": uid, "modality": mod, "standard": exam.standard_code, "method": res.method,
                         "truth": labels.get(uid or "", "none"), **row_of(res),
                         "rules": sorted(k for k in res.extra if not k.startswith("_") and k != "classical_value")})
    return rows


def readings(extra: dict[str, Any]) -> dict[str, float]:
    """The numbers the rules measured on the way (``extra``'s dicts, flattened as ``rule.key``)."""
    out: dict[str, float] = {}
    for name, value in extra.items():
        if name.startswith("_") or not isinstance(value, dict):
            continue
        for key, v in value.items():
            if isinstance(v, bool | int | float):
                out[f"{name}.{key}"] = float(v)
    return out


def row_of(res: Any) -> dict[str, Any]:
    """One decided series (a ``SeriesArtifact``) as a row."""
    return {
        "features": {k: float(v) for k, v in res.features.items() if isinstance(v, bool | int | float)},
        "readings": readings(res.extra),
        "scores": {k: float(v) for k, v in res.scores.items()},
        "value": res.value,
        "classical_value": res.extra.get("classical_value", res.value),
        "learned_value": res.extra.get("learned_value"),
    }


def main(argv: list[str] | None = None) -> int:
    from radqc.datasets.evaluation.evaluators.image_qc import truth_case
    from radqc.datasets.synthetic.generate import iter_truth
    from radqc.models.artifact.data import series_truth

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--shard", default="0/1", help="K/N: every N-th exam from the K-th")
    args = ap.parse_args(argv)
    k, n = (int(x) for x in args.shard.split("/"))
    truths = list(iter_truth(args.set))[k::n]
    started = time.time()
    with args.out.open("w") as out:
        for i, truth in enumerate(truths):
            case = truth_case(truth, args.set)
            if case is None or case.exam_dir is None or not case.exam_dir.is_dir():
                continue
            items = [str(x) for x in (case.records_line or {}).get("exam_items") or []]
            try:
                rows = exam_rows(case.exam_dir, items, series_truth(truth))
            except Exception as exc:  # noqa: BLE001 - one exam never stops the extraction
                print(f"{case.exam_key}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            for r in rows:
                r.update(exam=case.exam_key, exam_truth=case.dimensions.get("artifact"), qc_class=case.qc_class)
                out.write(json.dumps(r, ensure_ascii=False) + "\n")
            if (i + 1) % 50 == 0:
                print(f"[{i + 1}/{len(truths)}] {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
