"""``radqc synth`` (synthetic exams with ground truth / 合成带标注的检查) and ``radqc eval``
(score a stage against that truth / 按真值评估各阶段)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from radqc.cli.output import console, emit, progress_bar, stdout
from radqc.datasets.synthetic.clinical._data import load as _load_data

#: The generator's profiles, as its data file names them (so a new profile needs no CLI change).
PROFILES = tuple(_load_data("profiles")["profiles"])


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("eval")(evaluate)


def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder of the generated set."),
    exams: int = typer.Option(20, "--exams", "-n", help="Number of exams."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same set."),
    profile: str = typer.Option("mixed", "--profile", help=f"What the set looks like: {', '.join(PROFILES)}."),
    size: str = typer.Option("small", "--size", help="small (64–128 px, few slices) or full (512², hundreds of slices)."),
    force: bool = typer.Option(False, "--force", help="Replace a set already generated in --out."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary on stdout."),
) -> None:
    """Generate synthetic exams: DICOM export, HIS/RIS records and ground truth / 生成合成检查及真值."""
    from radqc.datasets.synthetic.generate import GenerateError, generate_set

    if profile not in PROFILES:
        console.print(f"[red]unknown profile / 未知配置: {profile} ({', '.join(PROFILES)})")
        raise typer.Exit(2)
    if size not in ("small", "full"):
        console.print(f"[red]unknown size / 未知尺寸: {size} (small, full)")
        raise typer.Exit(2)
    started = time.perf_counter()
    try:
        with progress_bar("synth / 合成", enabled=not as_json) as update:
            manifest = generate_set(out, exams, seed, profile, size, progress=update, force=force)
    except GenerateError as exc:
        console.print(f"[red]error / 错误: {exc}")
        raise typer.Exit(2) from exc
    seconds = time.perf_counter() - started
    counts = manifest["counts"]
    data = {
        "out": str(out),
        "seed": seed,
        "profile": profile,
        "size": size,
        "generator_version": manifest["generator_version"],
        "exams": counts["exams"],
        "files": counts.get("files", 0),
        "series": counts.get("series", 0),
        "exam_records": counts["exam_records"],
        "charge_lines": counts.get("charge_lines", 0),
        "malformed_records": counts["malformed_records"],
        "malformed_files": counts["malformed_files"],
        "seconds": round(seconds, 2),
        "exams_per_second": round(exams / seconds, 2) if seconds else None,
        "counts": counts,
    }

    def human(d: dict) -> None:
        stdout.print(
            f"generated / 已生成 {d['exams']} exams, {d['series']} series, {d['files']} files, "
            f"{d['exam_records']} exam records, {d['charge_lines']} charge lines "
            f"({d['exams_per_second']} exams/s) -> {d['out']}"
        )
        stdout.print(f"seeded: {d['malformed_files']} broken files, {d['malformed_records']} broken record lines; "
                     f"truth in {d['out']}/truth/, manifest {d['out']}/manifest.json")

    emit(data, as_json, human)


def evaluate(
    stage: str = typer.Argument(None, help="Stage to evaluate (see --list)."),
    data: Path = typer.Option(None, "--data", "-d", help="A labelled folder (made by `radqc synth`)."),
    list_: bool = typer.Option(False, "--list", help="List the stages that can be evaluated."),
    workers: int = typer.Option(None, "--workers", "-w", help="Parallel processes for stages that ingest."),
    quick: bool = typer.Option(False, "--quick", help="Fewer, smaller held-out cases (self-generating evaluators)."),
    cases: int = typer.Option(None, "--cases", help="Held-out cases to render (self-generating evaluators)."),
    seed: int = typer.Option(None, "--seed", help="Held-out seed to render (self-generating evaluators; "
                             "image-qc: 9201-9299, default the first unpublished one)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report on stdout."),
) -> None:
    """Score a stage against ground truth: P/R/F1, confusion matrix, Dice, kappa / 按真值评估."""
    from radqc.datasets.evaluation import registry

    if list_ or stage is None:
        stages = [{"stage": e.name, "description": e.description} for e in registry.available()]

        def human_list(rows: list) -> None:
            for row in rows:
                stdout.print(f"{row['stage']:<24} {row['description']}")

        emit(stages, as_json, human_list)
        if stage is None and not list_:
            raise typer.Exit(2)
        return
    from radqc.datasets.evaluation.harness import render_human, run_evaluation

    try:
        report = run_evaluation(stage, data, options={"workers": workers, "quick": quick, "cases": cases,
                                                               "seed": seed})
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}")
        raise typer.Exit(2) from exc
    except (FileNotFoundError, ValueError) as exc:  # a missing folder, a --seed outside the held-out range
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    emit(report.to_dict(), as_json, lambda _d: render_human(report, stdout))
