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
    archive: bool = typer.Option(
        False, "--archive", help="Then compress what this import added, losslessly and verified (as `radqc archive`)."
    ),
    codec: str = typer.Option("jpegls", "--codec", help="Archive codec with --archive: jpegls or j2k."),
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
    if archive and summary.exams:
        from radqc.pipelines.archive.service import archive_instances

        with progress_bar("archive / 归档", enabled=not as_json) as update:
            archived = archive_instances(ws, codec=codec, exams=sorted(summary.exams), workers=workers, progress=update)
        data["archive"] = archived.to_dict()

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
        if "archive" in d:
            a = d["archive"]
            stdout.print(
                f"archived / 归档 {a['archived']} of {a['instances_seen']}: "
                f"{a['bytes_before'] / 1e6:.1f} MB -> {a['bytes_after'] / 1e6:.1f} MB ({a['saving_percent']} % saved)"
            )

    emit(data, as_json, human)
