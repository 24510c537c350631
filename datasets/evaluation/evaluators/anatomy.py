"""``radqc eval anatomy``: held-out accuracy of the anatomy engine's three models.

Unlike the other evaluators this one renders its own cases from the generator's held-out
seeds (never used in training or progress checks), because the metrics need full-size
volumes and exact label maps that a ``radqc synth`` export does not keep:

* CT organ segmentation — Dice per structure **in the source geometry** (mean over the
  structures the issue names);
* body-region scores — landmark z-error (median, p90) and monotonicity;
* radiograph anatomy — Dice per projected structure and positioning measurements.

``--quick`` renders a few small cases (CI-sized); the full run is what the model cards quote.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from radqc.datasets.evaluation.harness import EvalContext, EvalReport
from radqc.datasets.evaluation.metrics import Rate
from radqc.datasets.evaluation.registry import register

log = logging.getLogger(__name__)

#: (part, module with ``evaluate(...) -> dict``)
PARTS = (
    ("ct_organs", "radqc.models.segmentation.evaluate"),
    ("body_region", "radqc.models.body_region.evaluate"),
    ("radiograph_anatomy", "radqc.models.radiograph.evaluate"),
)


def _run_part(module: str, quick: bool, cases: int | None) -> dict[str, Any]:
    mod = importlib.import_module(module)
    kwargs: dict[str, Any] = {"quick": quick}
    if cases and module.endswith("segmentation.evaluate"):
        kwargs["n"] = cases
    return dict(mod.evaluate(**kwargs))


@register("anatomy", "Anatomy engine: CT organ Dice (source geometry), body-region landmark error, radiograph anatomy",
          requires=("radqc.models.segmentation.evaluate",), needs_data=False)
def evaluate(ctx: EvalContext) -> EvalReport:
    quick = bool(ctx.options.get("quick"))
    cases = ctx.options.get("cases")
    report = EvalReport(stage="anatomy", n=0, unit="case")
    for part, module in PARTS:
        try:
            result = _run_part(module, quick, cases)
        except ModuleNotFoundError as exc:
            report.notes.append(f"{part}: not evaluated, model code missing ({exc.name})")
            continue
        except Exception as exc:  # noqa: BLE001 - one part failing must not hide the others
            log.exception("anatomy eval part %s failed", part)
            report.notes.append(f"{part}: evaluation failed: {type(exc).__name__}: {exc}")
            report.fail(part=part, error=f"{type(exc).__name__}: {exc}")
            continue
        report.details[part] = result
        if part == "ct_organs":
            n_cases = len(result.get("cases", []))
            report.n += n_cases
            report.counts["ct_cases"] = n_cases
            for name, v in result.get("per_structure", {}).items():
                report.dice[name] = v["dice"]
            report.notes.append(
                f"ct_organs: mean Dice {result.get('mean_dice')} over {result.get('structures_scored')} structures, "
                f"{n_cases} held-out cases, seeds {result.get('seeds')} ({result.get('geometry')})")
        elif part == "body_region":
            _body_region(report, result)
        else:
            _radiograph(report, result)
    return report


def _body_region(report: EvalReport, result: dict[str, Any]) -> None:
    held = result.get("synthetic_held_out", {})
    within = total = 0
    for case in held.get("per_case", []):
        for v in (case.get("errors_mm") or {}).values():
            if v is not None:
                total += 1
                within += int(abs(float(v)) <= 10.0)
    if total:
        report.rates["landmark_within_10mm"] = Rate(within, total)
    report.counts["body_region_cases"] = len(held.get("per_case", []))
    overall = held.get("all_landmarks_error_mm")
    report.notes.append(f"body_region: landmark |error| mm over all landmarks {overall}; "
                        f"monotonic fraction mean {held.get('monotonic_fraction_mean')}, "
                        f"null-landmark accuracy {held.get('null_correct_fraction')}")
    for name, real in (result.get("real") or {}).items():
        if isinstance(real, dict) and real.get("available", True):
            report.notes.append(f"body_region real {name}: monotonic fraction {real.get('monotonic_fraction')}")


def _radiograph(report: EvalReport, result: dict[str, Any]) -> None:
    dice = result.get("dice") or result.get("per_structure") or {}
    for name, v in dice.items():
        value = v.get("dice") if isinstance(v, dict) else v
        if isinstance(value, int | float):
            report.dice[f"dx:{name}"] = float(value)
    report.notes.append(f"radiograph_anatomy: {({k: v for k, v in result.items() if k not in ('dice', 'cases')})}")
