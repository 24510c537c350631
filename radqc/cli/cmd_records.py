"""``radqc ingest-records FILE``: HIS/RIS orders, reports and charges / 导入 HIS/RIS 检查记录与收费明细."""

from __future__ import annotations

from pathlib import Path

import typer

from radqc.cli.output import console, emit, progress_bar, stdout


def register(app: typer.Typer) -> None:
    app.command("ingest-records")(ingest_records)


def ingest_records(
    file: Path = typer.Argument(..., help="A JSON Lines or CSV export (UTF-8, UTF-8 with BOM, or GB18030)."),
    fmt: str = typer.Option(
        "auto", "--format", "-f", help="jsonl | csv (default: by extension, else by content)."
    ),
    kind: str = typer.Option(
        "auto", "--kind", "-k", help="auto | exam | charge (auto: record_type, else charge_code present => charge)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary on stdout."),
) -> None:
    """Ingest exam records and charge lines; bad lines are quarantined and the file goes on.

    Schema, time zone rule and linking rules: docs/records-schema.md.
    """
    from radqc.pipelines.ingest.records import RecordsFileError
    from radqc.pipelines.ingest.records import ingest_records as run_ingest
    from radqc.workspace import Workspace

    if fmt not in ("auto", "jsonl", "csv"):
        console.print(f"[red]未知格式 / unknown --format {fmt!r}: jsonl, csv")
        raise typer.Exit(2)
    if kind not in ("auto", "exam", "charge"):
        console.print(f"[red]未知类型 / unknown --kind {kind!r}: auto, exam, charge")
        raise typer.Exit(2)
    ws = Workspace.open()
    if not file.is_file():
        console.print(f"[red]文件不存在 / no such file: {file}")
        raise typer.Exit(2)
    try:
        with progress_bar("records / 记录", enabled=not as_json) as update:
            summary = run_ingest(ws, file, fmt=fmt, kind=kind, progress=lambda s: update(s.records_seen, None))  # type: ignore[arg-type]
    except RecordsFileError as exc:
        console.print(f"[red]error / 错误: {exc}")
        raise typer.Exit(2) from exc
    data = summary.to_dict()

    def human(d: dict) -> None:
        stdout.print(
            f"records / 记录 {d['records_seen']}: new exam records / 新检查记录 {d['exam_records']}, "
            f"new charge lines / 新收费明细 {d['charge_lines']}, updated / 更新 {d['updated']}, "
            f"duplicate / 重复 {d['duplicate']}, quarantined / 隔离 {d['quarantined']}; "
            f"linked to images / 已关联影像 {d['linked_to_images']} — {d['records_per_second']} records/s"
        )
        for code, count in d["quarantine_reasons"].items():
            stdout.print(f"  quarantined / 隔离 bad_record.{code}: {count}")
        for code, count in d["warnings"].items():
            stdout.print(f"  warning / 警告 {code}: {count}")
        for note in d["notes"]:
            stdout.print(f"  note: {note}")

    emit(data, as_json, human)
