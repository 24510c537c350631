"""``radqc eval items``: top-1 accuracy of exam-item normalisation (issue #6).

Two sources of truth, neither used to tune the held-out figure:

* ``data/item_names.yaml`` — hand-written hospital names with their standard items; the
  ``heldout`` half was fixed (by sha256 of the name) when the list was written and is never
  looked at while growing the lexicon; the ``tune`` half is reported separately;
* order strings of the synthetic generator (``radqc.datasets.synthetic.clinical`` planner,
  seeds ``SYNTH_SEEDS``): one name per ordered string with the items it stands for.

An input is right when its set of ``(code, laterality)`` equals the truth's. Also reported:
accuracy per modality and per style (single / combined / english / variant), the review rate
(names sent to review) and the accuracy of the names that were *not* sent to review (what a
region gets without a human).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from radqc.datasets.evaluation.harness import EvalContext, EvalReport
from radqc.datasets.evaluation.metrics import Rate
from radqc.datasets.evaluation.registry import register

NAMES_FILE = Path(__file__).resolve().parent.parent / "data" / "item_names.yaml"
#: Generator seeds for the synthetic order strings (not the corpus seeds used for training).
SYNTH_SEEDS = (9301, 9302)
SIDES = {"L": "左", "R": "右"}


def load_names(path: Path = NAMES_FILE) -> list[dict[str, Any]]:
    """The hand-written list: [{name, truth: [(code, laterality)], style, split}]."""
    rows = []
    for row in yaml.safe_load(path.read_text(encoding="utf-8"))["names"]:
        truth = []
        for t in row["truth"]:
            code, _, side = str(t).partition(":")
            truth.append((code.strip(), side.strip() or None))
        rows.append({"name": str(row["name"]), "truth": truth, "style": row["style"], "split": row["split"],
                     "modality": truth[0][0].split(".")[0]})
    return rows


def synthetic_orders(n: int = 300, seeds: tuple[int, ...] = SYNTH_SEEDS) -> list[dict[str, Any]]:
    """Order strings rendered by the generator's planner, with the items each stands for."""
    from radqc.datasets.synthetic.clinical.planner import plan_set

    out: list[dict[str, Any]] = []
    per_seed = max(1, n // len(seeds))
    for seed in seeds:
        for plan in plan_set(seed, per_seed):
            for t in plan.order.truth():
                truth = [(s["code"], SIDES.get(s.get("laterality") or "", None)) for s in t["standard_items"]]
                style = "combined" if len(truth) > 1 else "single"
                out.append({"name": t["text"], "truth": truth, "style": style, "split": "synthetic",
                            "modality": truth[0][0].split(".")[0], "order_style": t["style"]})
    return out


def score(rows: list[dict[str, Any]], use_embeddings: bool = True) -> dict[str, Any]:
    """Normalise every row and compare; returns counts per split/modality/style and the failures."""
    from radqc.pipelines.items.normalise import normalise

    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    for row in rows:
        result = normalise(row["name"], use_embeddings=use_embeddings)
        got = {(i["code"], i["laterality"]) for i in result["items"]}
        right = got == set(row["truth"])
        review = bool(result["needs_review"])
        split = row["split"]
        for key in (split, f"{split}/modality/{row['modality']}", f"{split}/style/{row['style']}"):
            tallies[key][0] += int(right)
            tallies[key][1] += 1
        tallies[f"{split}/review"][0] += int(review)
        tallies[f"{split}/review"][1] += 1
        if not review:
            tallies[f"{split}/auto"][0] += int(right)
            tallies[f"{split}/auto"][1] += 1
        if not right:
            failures.append({"split": split, "name": row["name"], "truth": sorted(row["truth"], key=str),
                             "got": sorted(got, key=str), "status": result["status"],
                             "evidence": result["evidence"][-3:]})
    return {"tallies": dict(tallies), "failures": failures, "seconds": time.perf_counter() - started,
            "n": len(rows)}


@register("items", "Exam-item normalisation: top-1 on held-out hand-written names and generator orders",
          requires=("radqc.pipelines.items.normalise",), needs_data=False)
def evaluate(ctx: EvalContext) -> EvalReport:
    quick = bool(ctx.options.get("quick"))
    use_embeddings = not bool(ctx.options.get("no_embeddings"))
    rows = load_names()
    rows += synthetic_orders(60 if quick else 300)
    result = score(rows, use_embeddings=use_embeddings)
    report = EvalReport(stage="items", n=result["n"], unit="name")
    for key, (num, den) in sorted(result["tallies"].items()):
        name = "top1_" + key.replace("/", "_") if not key.endswith(("review", "auto")) else key.replace("/", "_")
        if key.endswith("/auto"):
            name = key.split("/")[0] + "_top1_not_reviewed"
        elif key.endswith("/review"):
            name = key.split("/")[0] + "_review_rate"
        report.rates[name] = Rate(num, den)
    for split in ("heldout", "tune", "synthetic"):
        num, den = result["tallies"].get(split, [0, 0])
        report.counts[f"{split}_names"] = den
        if den:
            report.notes.append(f"{split}: top-1 {num}/{den} = {num / den:.3f}")
    report.notes.append(f"embeddings {'on' if use_embeddings else 'off'}; {result['n']} names in "
                        f"{result['seconds']:.1f} s")
    # Held-out failures are listed for the record (never used to tune the lexicon).
    for f in result["failures"]:
        report.fail(**f)
    report.details["failures"] = result["failures"][:200]
    return report
