"""Accuracy of the series classifier on a cached generated set (per field, category, MR sets).

Figures (same definitions in the model card and ``radqc eval series``):

* field accuracy: predicted value == expected value (``None`` included) over all series;
* category: predicted code == ``category_code(expected label)``;
* MR sequence per series: over MR series;
* exam-level MR sequence set: the set of (sequence, plane) pairs of an MR exam's series equals
  the expected set (and, looser, the set of sequences alone).

``truth_complete`` false marks series whose truth lacks generator facts (exams that reuse
another exam's pixels): they are counted separately, not silently dropped.

    python -m radqc.models.series_header.evaluate val_mixed val_mr [--rules-only]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from typing import Any

from radqc.pipelines.series.categories import category_code
from radqc.pipelines.series.classify import LABEL_FIELDS, SeriesClassifier

from .data import load


def image_thumbnails(set_name: str) -> dict[str, Any]:
    """Series UID -> thumbnail of a set, from the image model's cache (helper C's
    ``radqc.models.series_image.data``); empty when that cache is absent."""
    try:
        from radqc.models.series_image.data import load_cache

        x, metas = load_cache(set_name)
    except Exception:  # noqa: BLE001 - no image cache: header-only evaluation
        return {}
    return {m["series_uid"]: x[i].astype("float32") for i, m in enumerate(metas) if m.get("ok", True)}


def evaluate(sets: list[str], classifier: SeriesClassifier, errors: int = 0, with_images: bool = False) -> dict[str, Any]:
    """Metrics over the cached ``sets`` (see the module docstring); ``with_images``: thumbnails
    from the image model's cache go to the classifier too."""
    field_ok: Counter[str] = Counter()
    n = 0
    cat_ok = 0
    n_mr = mr_ok = 0
    exams: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"p": [], "t": [], "ps": [], "ts": []})
    confusion: Counter[tuple[Any, Any]] = Counter()
    incomplete = 0
    wrong_desc = wrong_desc_ok = 0
    examples: list[dict[str, Any]] = []
    elapsed = 0.0
    for name in sets:
        rows = list(load(name))
        thumbs = image_thumbnails(name) if with_images else {}
        # classify per exam (derived series look up their sources within the exam)
        by_exam: dict[str, list[int]] = defaultdict(list)
        for k, (_, _, row) in enumerate(rows):
            by_exam[row["exam"]].append(k)
        for exam, idx in by_exam.items():
            t0 = time.perf_counter()
            hs = [rows[k][0] for k in idx]
            imgs = {h.series_uid: thumbs[h.series_uid] for h in hs if h.series_uid in thumbs} or None
            labels = classifier.classify(hs, imgs)
            elapsed += time.perf_counter() - t0
            for k, lab in zip(idx, labels, strict=False):
                h, truth, row = rows[k]
                if not row.get("truth_complete", True):
                    incomplete += 1
                    continue
                n += 1
                for f in LABEL_FIELDS:
                    field_ok[f] += getattr(lab, f) == truth.get(f)
                want = category_code(truth, h.modality)
                ok = lab.category == want
                cat_ok += ok
                if row.get("description_wrong"):
                    wrong_desc += 1
                    wrong_desc_ok += ok
                if not ok:
                    confusion[(want, lab.category)] += 1
                    if len(examples) < errors:
                        examples.append({"exam": f"{name}/{exam}", "want": want, "got": lab.category,
                                         "description": h.description, "gen_role": row.get("gen_role"),
                                         "evidence": [e.detail for e in lab.evidence][:6]})
                if h.modality == "MR":
                    n_mr += 1
                    mr_ok += lab.sequence == truth.get("sequence")
                    ex = exams[f"{name}/{exam}"]
                    ex["p"].append((lab.sequence, lab.plane))
                    ex["t"].append((truth.get("sequence"), truth.get("plane")))
                    ex["ps"].append(lab.sequence)
                    ex["ts"].append(truth.get("sequence"))
    n_ex = len(exams)
    return {
        "sets": sets,
        "series": n,
        "series_truth_incomplete": incomplete,
        "category_accuracy": cat_ok / max(n, 1),
        "field_accuracy": {f: field_ok[f] / max(n, 1) for f in LABEL_FIELDS},
        "mr_series": n_mr,
        "mr_sequence_accuracy": mr_ok / max(n_mr, 1),
        "mr_exams": n_ex,
        "mr_exam_sequence_plane_set_accuracy": sum(set(e["p"]) == set(e["t"]) for e in exams.values()) / max(n_ex, 1),
        "mr_exam_sequence_set_accuracy": sum(set(e["ps"]) == set(e["ts"]) for e in exams.values()) / max(n_ex, 1),
        "with_images": with_images,
        "wrong_description_series": wrong_desc,
        "wrong_description_category_accuracy": wrong_desc_ok / max(wrong_desc, 1),
        "series_per_s": (n + incomplete) / max(elapsed, 1e-9),
        "top_confusions": [[a, b, c] for (a, b), c in confusion.most_common(15)],
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--rules-only", action="store_true")
    ap.add_argument("--errors", type=int, default=0)
    ap.add_argument("--images", action="store_true", help="fuse the image model (thumbnails from its cache)")
    a = ap.parse_args(argv)
    clf = SeriesClassifier(header_model=None if a.rules_only else "auto", image_model="auto" if a.images else None)
    print(json.dumps(evaluate(a.sets, clf, a.errors, with_images=a.images), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
