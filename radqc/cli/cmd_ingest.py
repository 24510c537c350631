"""``radqc ingest PATH``: import folders and zip files / 导入文件夹和压缩包."""

from __future__ import annotations

from pathlib import Path

import typer

from radqc.cli.output import console, emit, progress_bar, stdout


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def ingest(
    path: Path = typer.Argument(..., help="A folder (recursive, DICOMDIR-aware) or a zip file."),
    workers: int = typer.Option(None, "--workers", "-w", help="Parallel parser processes (default RADQC_WORKERS)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary on stdout."),
) -> None:
    """Ingest DICOM files; bad files are quarantined with a reason and the batch goes on."""
    from radqc.pipelines.ingest.folder import ingest_path
    from radqc.workspace import Workspace

    ws = Workspace.open()
    if not path.exists():
        console.print(f"[red]no such file or folder / 路径不存在: {path}")
        raise typer.Exit(2)
    with progress_bar("ingest / 导入", enabled=not as_json) as update:
        summary = ingest_path(ws, path, workers=workers, progress=lambda total, s: update(s.files_seen, total))
    data = summary.to_dict()

    def human(d: dict) -> None:
        stdout.print(
            f"files {d['files_seen']}: ingested {d['ingested']} (new versions {d['new_versions']}), "
            f"duplicate {d['duplicate']}, quarantined {d['quarantined']} "
            f"— {d['instances_per_second']} files/s"
        )
        for code, count in d["quarantine_reasons"].items():
            stdout.print(f"  quarantined / 隔离 {code}: {count}")
        for note in d["notes"]:
            stdout.print(f"  note: {note}")

    emit(data, as_json, human)
