"""``radqc init``, ``radqc status`` and ``radqc quarantine ...``: the workspace itself."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy import select

from radqc.cli.output import emit, stdout


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("status")(status)
    quarantine = typer.Typer(help="Inspect quarantined input / 查看隔离区", no_args_is_help=True)
    quarantine.command("list")(quarantine_list)
    app.add_typer(quarantine, name="quarantine")


def init(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Create or upgrade the workspace (catalogue schema, object store, secret) / 初始化工作区."""
    from radqc.workspace import Workspace

    ws = Workspace.open(create=True)
    info = {"home": str(ws.settings.home), "database": _safe_url(ws.settings.database_url), "objects": str(ws.settings.objects_dir)}
    emit(info, as_json, lambda d: stdout.print(f"workspace ready / 工作区就绪: {d['home']} ({d['database']})"))


def _safe_url(url: str) -> str:
    """A database URL without its password, for display."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Counts of exams, series, instances, bytes and quarantine / 工作区统计."""
    from radqc.workspace import Workspace

    ws = Workspace.open()
    data = ws.status()

    def human(d: dict) -> None:
        table = Table(title="RadQC workspace / 工作区")
        table.add_column("item")
        table.add_column("value", justify="right")
        for key, value in d.items():
            table.add_row(key, f"{value:,}")
        stdout.print(table)

    emit(data, as_json, human)


def quarantine_list(
    reason: str = typer.Option(None, "--reason", help="Only this reason code."),
    limit: int = typer.Option(200, "--limit"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List quarantined inputs with their reasons / 列出隔离的文件及原因."""
    from radqc.catalogue import models as m
    from radqc.workspace import Workspace

    ws = Workspace.open()
    with ws.sessions() as s:
        query = select(m.QuarantineItem).where(m.QuarantineItem.resolved_at.is_(None)).order_by(m.QuarantineItem.id)
        if reason:
            query = query.where(m.QuarantineItem.reason_code == reason)
        rows = [
            {
                "id": q.id,
                "source": q.source,
                "source_ref": q.source_ref,
                "reason_code": q.reason_code,
                "reason": q.reason,
                "size": q.size,
                "content_hash": q.content_hash,
                "bytes_kept": q.storage_key is not None,
                "created_at": q.created_at,
            }
            for q in s.scalars(query.limit(limit))
        ]

    def human(items: list[dict]) -> None:
        table = Table(title=f"Quarantine / 隔离区 ({len(items)})")
        for col in ("id", "source", "reason_code", "source_ref", "reason"):
            table.add_column(col, overflow="fold")
        for q in items:
            table.add_row(str(q["id"]), q["source"], q["reason_code"], q["source_ref"] or "", q["reason"])
        stdout.print(table)

    emit(rows, as_json, human)
