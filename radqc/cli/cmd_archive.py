"""``radqc archive`` and ``radqc verify``: lossless compression of stored objects and integrity checks
/ 无损归档压缩与存储校验."""

from __future__ import annotations

import logging

import typer

from radqc.cli.output import emit, progress_bar, stdout


def register(app: typer.Typer) -> None:
    app.command("archive")(archive)
    app.command("verify")(verify)


def _quiet_pydicom() -> None:
    """pydicom resets its logger to WARNING when first imported (after the CLI callback ran)."""
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def archive(
    codec: str = typer.Option("jpegls", "--codec", help="jpegls (JPEG-LS lossless, default) or j2k (JPEG 2000 lossless)."),
    exams: list[str] = typer.Option(None, "--exams", help="Exam ids or Study Instance UIDs (repeat or comma-separate); default all."),
    workers: int = typer.Option(None, "--workers", "-w", help="Parallel transcoding processes (default RADQC_WORKERS)."),
    keep_original: bool = typer.Option(
        None, "--keep-original/--delete-original", help="Keep the uncompressed object after archiving (default RADQC_ARCHIVE_KEEP_ORIGINAL)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary on stdout."),
) -> None:
    """Transcode uncompressed instances to a verified lossless codec / 无损压缩归档（逐一校验后才替换）."""
    from radqc.pipelines.archive.service import archive_instances, parse_exam_refs
    from radqc.pipelines.archive.transcode import CODECS
    from radqc.workspace import Workspace

    if codec not in CODECS:
        stdout.print(f"[red]unknown codec / 未知编码: {codec} (choose {', '.join(CODECS)})")
        raise typer.Exit(2)
    _quiet_pydicom()
    ws = Workspace.open()
    with progress_bar("archive / 归档", enabled=not as_json) as update:
        summary = archive_instances(
            ws, codec=codec, exams=parse_exam_refs(exams), workers=workers, keep_original=keep_original, progress=update
        )
    data = summary.to_dict()

    def human(d: dict) -> None:
        stdout.print(
            f"instances {d['instances_seen']}: archived / 已归档 {d['archived']}, already archived {d['already_archived']}, "
            f"compressed already / 已压缩 {d['skipped_compressed']}, no gain / 无收益 {d['skipped_no_gain']}, "
            f"unsupported / 不支持 {d['skipped_unsupported']}, non-image / 非图像 {d['skipped_non_image']}, "
            f"failed / 失败 {d['failed']}"
        )
        stdout.print(
            f"{_mb(d['bytes_before'])} -> {_mb(d['bytes_after'])} (saving / 节省 {d['saving_percent']}%), "
            f"{d['seconds']} s, {d['mb_per_s']} MB/s, originals deleted {d['originals_deleted']}"
        )
        for code, count in d["reasons"].items():
            stdout.print(f"  {code}: {count}")
        for failure in d["failures"][:20]:
            stdout.print(f"  [red]failed[/red] {failure['sop_instance_uid']}: {failure['reason']}")

    emit(data, as_json, human)
    if summary.failed:
        raise typer.Exit(1)


def verify(
    exams: list[str] = typer.Option(None, "--exams", help="Exam ids or Study Instance UIDs (repeat or comma-separate)."),
    all_instances: bool = typer.Option(False, "--all", help="Every instance (default: the archived ones)."),
    workers: int = typer.Option(None, "--workers", "-w", help="Parallel processes (default RADQC_WORKERS)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result on stdout."),
) -> None:
    """Re-check stored objects: hash, parse, decoded pixel hash; exit 1 on any failure / 存储完整性校验."""
    from radqc.pipelines.archive.service import parse_exam_refs
    from radqc.pipelines.archive.verify import verify_instances
    from radqc.workspace import Workspace

    _quiet_pydicom()
    ws = Workspace.open()
    with progress_bar("verify / 校验", enabled=not as_json) as update:
        summary = verify_instances(
            ws, exams=parse_exam_refs(exams), all_instances=all_instances, workers=workers, progress=update
        )
    data = summary.to_dict()

    def human(d: dict) -> None:
        stdout.print(f"checked / 已校验 {d['checked']}: ok {d['ok']}, failed / 失败 {len(d['failed'])} ({d['seconds']} s)")
        for failure in d["failed"][:50]:
            stdout.print(f"  [red]failed[/red] {failure['sop_instance_uid']}: {failure['reason']}")

    emit(data, as_json, human)
    if summary.failed:
        raise typer.Exit(1)
