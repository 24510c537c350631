"""Running an evaluator over a labelled folder, and printing what it found.

``radqc eval STAGE --data DIR`` builds an :class:`EvalContext` (the folder, its manifest
and truth files, and a *scratch workspace* where stages that need a catalogue run, so the
user's workspace is never touched) and calls the registered evaluator, which returns an
:class:`EvalReport`: classification results (per-class P/R/F1, confusion matrix, kappa),
Dice per structure, checked rates, and the sample count.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radqc.datasets.evaluation import registry
from radqc.datasets.evaluation.metrics import ClassificationResult, Rate


@dataclass
class EvalReport:
    stage: str
    n: int  # samples evaluated (exams, files, records... as the stage defines)
    unit: str = "exam"
    classifications: dict[str, ClassificationResult] = field(default_factory=dict)
    dice: dict[str, float | None] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # examples of what went wrong (capped)
    notes: list[str] = field(default_factory=list)
    #: Free-form structured results (per-case numbers, per-landmark errors) for JSON readers.
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: every failure reported, listed or not: ``failures`` keeps the first MAX_FAILURES only, and a
    #: reader comparing two runs' lists must know where each list stops (a case past the cap of one
    #: run is not "fixed" in it)
    failures_total: int = 0

    MAX_FAILURES = 50

    def fail(self, **detail: Any) -> None:
        self.failures_total += 1
        if len(self.failures) < self.MAX_FAILURES:
            self.failures.append(detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "n": self.n,
            "unit": self.unit,
            "classifications": {k: v.to_dict() for k, v in self.classifications.items()},
            "dice": self.dice,
            "rates": {k: v.to_dict() for k, v in self.rates.items()},
            "counts": self.counts,
            "failures": self.failures,
            "failures_total": self.failures_total,
            "notes": self.notes,
            "details": self.details,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class EvalContext:
    """What an evaluator gets: the labelled folder and a way to get a scratch workspace."""

    data: Path
    options: dict[str, Any] = field(default_factory=dict)
    #: Returns a fresh, initialised workspace; the default is a temporary SQLite one.
    workspace_factory: Callable[[], Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        from radqc.datasets.synthetic.generate import load_manifest

        return load_manifest(self.data)

    def truths(self) -> Iterator[dict[str, Any]]:
        from radqc.datasets.synthetic.generate import iter_truth

        return iter_truth(self.data)

    def workspace(self) -> Any:
        if self.workspace_factory is None:
            raise RuntimeError("no workspace factory configured")
        return self.workspace_factory()


@contextmanager
def scratch_workspace() -> Iterator[Callable[[], Any]]:
    """A factory of temporary SQLite workspaces, all removed on exit.

    It never reads ``RADQC_DATABASE_URL``/``RADQC_HOME``: evaluation must not write into the
    user's catalogue.
    """
    from radqc.config import load_settings
    from radqc.workspace import Workspace

    made: list[Any] = []
    root = Path(tempfile.mkdtemp(prefix="radqc-eval-"))

    def factory() -> Any:
        home = root / f"ws{len(made)}"
        base = load_settings(home)
        from dataclasses import replace

        # A throw-away key: nothing in a scratch catalogue must outlive the evaluation.
        settings = replace(base, database_url=f"sqlite:///{home / 'catalogue.sqlite'}", objects_dir=home / "objects",
                           secret_key=secrets.token_bytes(32))
        ws = Workspace(settings)
        ws.initialise()
        made.append(ws)
        return ws

    try:
        yield factory
    finally:
        for ws in made:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        shutil.rmtree(root, ignore_errors=True)


def run_evaluation(stage: str, data: str | Path | None, *, options: dict[str, Any] | None = None,
                   workspace_factory: Callable[[], Any] | None = None) -> EvalReport:
    """Evaluate ``stage`` on the labelled folder ``data`` (a generated set).

    Evaluators registered with ``needs_data=False`` render their own held-out cases and
    accept ``data=None``."""
    info = registry.get(stage)
    root = Path(data) if data is not None else Path(".")
    if data is None and info.needs_data:
        raise FileNotFoundError(f"stage {stage!r} needs --data DIR (a labelled set) / 该阶段需要 --data 目录")
    if info.needs_data and not (root / "manifest.json").is_file():
        raise FileNotFoundError(f"{root} has no manifest.json: not a labelled set / 不是带标注的数据集")
    started = time.perf_counter()
    if workspace_factory is not None:
        report = info.fn(EvalContext(root, options or {}, workspace_factory))
    else:
        with scratch_workspace() as factory:
            report = info.fn(EvalContext(root, options or {}, factory))
    report.seconds = time.perf_counter() - started
    return report


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render_human(report: EvalReport, console: Any) -> None:
    """Rich tables for people: rates, per-class scores, confusion matrices, Dice."""
    from rich.table import Table

    console.print(f"[bold]eval {report.stage}[/] — n = {report.n} {report.unit}(s), {report.seconds:.1f} s")
    if report.rates:
        table = Table(title="checks / 检查项")
        table.add_column("check")
        table.add_column("rate", justify="right")
        table.add_column("n", justify="right")
        for name, rate in report.rates.items():
            table.add_row(name, _fmt(rate.value), f"{rate.numerator}/{rate.denominator}")
        console.print(table)
    for name, res in report.classifications.items():
        table = Table(title=f"{name} — n={res.n}, accuracy {_fmt(res.accuracy)}, macro F1 {_fmt(res.macro_f1)}"
                      + (f", kappa ({res.kappa_weights}) {_fmt(res.kappa)}" if res.kappa_weights else ""))
        table.add_column("class")
        for col in ("precision", "recall", "F1", "support"):
            table.add_column(col, justify="right")
        for label, pc in res.per_class.items():
            table.add_row(label, _fmt(pc.precision), _fmt(pc.recall), _fmt(pc.f1), str(pc.support))
        console.print(table)
        cm = Table(title=f"{name}: confusion matrix (rows truth, columns prediction)")
        cm.add_column("truth \\ pred")
        for label in res.labels:
            cm.add_column(str(label), justify="right")
        for label, row in zip(res.labels, res.matrix, strict=True):
            cm.add_row(str(label), *(str(v) for v in row))
        console.print(cm)
    if report.dice:
        table = Table(title="Dice per structure")
        table.add_column("structure")
        table.add_column("Dice", justify="right")
        for name, value in report.dice.items():
            table.add_row(name, _fmt(value))
        console.print(table)
    if report.counts:
        console.print("counts: " + json.dumps(report.counts, ensure_ascii=False))
    shown = report.failures[:10]
    for failure in shown:
        console.print(f"  [yellow]failure[/]: {json.dumps(failure, ensure_ascii=False)}")
    if report.failures_total > len(shown):
        console.print(f"  failures shown / 已显示失败: {len(shown)} of {report.failures_total} "
                      f"({len(report.failures)} kept in the JSON report, the first {report.MAX_FAILURES})")
    for note in report.notes:
        console.print(f"  note: {note}")
