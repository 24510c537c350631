"""``radqc run``: run pending exams through the pipeline stages / 运行处理流水线.

``radqc stages`` lists the registered stages with their versions and dependencies.
"""

from __future__ import annotations

import typer

from radqc.cli.output import console, emit, progress_bar, stdout


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("stages")(stages_list)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def run(
    stages: str = typer.Option(None, "--stages", "-s", help="Comma-separated stage names (default: all); dependencies are pulled in."),
    exams: str = typer.Option(None, "--exams", "-e", help="Comma-separated exam ids, StudyInstanceUIDs or accession numbers."),
    all_exams: bool = typer.Option(False, "--all", help="Every exam in the catalogue (the default when --exams is not given)."),
    workers: int = typer.Option(None, "--workers", "-w", help="Parallel stage executions (default RADQC_WORKERS)."),
    force: bool = typer.Option(False, "--force", help="Re-run the requested stages even when nothing changed."),
    attempts: int = typer.Option(3, "--attempts", help="Tries per stage on transient errors (1 = no retry)."),
    backoff: float = typer.Option(0.5, "--backoff", help="Seconds before the first retry; doubles each time."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary on stdout."),
) -> None:
    """Run stages over exams; only what changed is re-run / 运行各处理阶段（仅处理有变化的检查）."""
    from radqc.pipelines.runner.execute import RetryPolicy
    from radqc.pipelines.runner.local import run_pipeline
    from radqc.pipelines.runner.registry import default_registry
    from radqc.workspace import Workspace

    if exams is not None and all_exams:
        console.print("[red]--exams and --all exclude each other / --exams 与 --all 不能同时使用")
        raise typer.Exit(2)
    ws = Workspace.open()
    try:
        registry = default_registry()
        retry = RetryPolicy(attempts=attempts, backoff_s=backoff)
        with progress_bar("run / 处理", enabled=not as_json) as update:
            summary = run_pipeline(
                ws, _split(stages), _split(exams), registry=registry, force=force, workers=workers, retry=retry,
                progress=update,
            )
    except ValueError as exc:  # unknown stage or exam, bad graph, bad option
        console.print(f"[red]error / 错误: {exc}")
        raise typer.Exit(2) from exc
    finally:
        ws.close()
    data = summary.to_dict()

    def human(d: dict) -> None:
        from rich.table import Table

        table = Table(title=f"run / 处理: {d['exams']} exams / 检查, {d['seconds']} s")
        for col in ("stage", "succeeded", "failed", "skipped", "unchanged"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for name, counts in d["stages"].items():
            table.add_row(name, *(str(counts[k]) for k in ("succeeded", "failed", "skipped", "unchanged")))
        stdout.print(table)
        for err in d["errors"][:20]:
            stdout.print(f"  exam {err['exam_id']} {err['stage']} {err['status']}: {err['error']}")
        if len(d["errors"]) > 20:
            stdout.print(f"  … {len(d['errors']) - 20} more (use --json)")

    emit(data, as_json, human)


def stages_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the registered stages / 列出已注册的处理阶段."""
    from radqc.pipelines.runner.registry import default_registry

    registry = default_registry()
    rows = [
        {
            "name": s.name,
            "version": s.version,
            "depends": list(s.depends),
            "reads": list(s.reads),
            "resources": s.resources.to_dict(),
            "versions": s.resolved_versions(),
            "description": s.description,
        }
        for s in registry.plan()
    ]

    def human(items: list[dict]) -> None:
        from rich.table import Table

        table = Table(title="stages / 处理阶段 (dependency order)")
        for col in ("name", "version", "depends", "description"):
            table.add_column(col, overflow="fold")
        for r in items:
            table.add_row(r["name"], r["version"], ", ".join(r["depends"]), r["description"])
        stdout.print(table)

    emit(rows, as_json, human)
