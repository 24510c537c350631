"""``radqc items``: exam-item normalisation, the review queue and per-hospital mappings / 检查项目标准化.

``radqc items normalise NAME...`` works without a workspace (pure normalisation); when a
workspace is present (``RADQC_HOME`` or ``./radqc-data`` initialised) it also consults the
hospital's confirmed mappings first. ``review`` and ``mappings`` need the workspace. See
docs/items.md for the JSON contract and the review round trip.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout

JSON_HELP = "Machine-readable output / 输出 JSON"


def register(app: typer.Typer) -> None:
    items = typer.Typer(help="Exam-item normalisation and review / 检查项目标准化与审核", no_args_is_help=True)
    items.command("normalise")(items_normalise)
    items.command("normalize", hidden=True)(items_normalise)
    review = typer.Typer(help="Review queue of low-confidence names / 待审核项目队列", no_args_is_help=True)
    review.command("list")(review_list)
    review.command("confirm")(review_confirm)
    review.command("reject")(review_reject)
    items.add_typer(review, name="review")
    items.command("mappings")(mappings_list)
    items.command("import-mappings")(import_mappings)
    app.add_typer(items, name="items")


def _workspace(required: bool) -> Any | None:
    """The workspace when one is initialised here; None (or an error when ``required``) otherwise."""
    from radqc.workspace import Workspace, WorkspaceError

    try:
        return Workspace.open()
    except WorkspaceError:
        if required:
            raise
        return None
    except Exception:  # noqa: BLE001 - a broken workspace must not stop pure normalisation
        if required:
            raise
        return None


def items_normalise(
    names: list[str] = typer.Argument(..., help="Hospital item names / 院内检查项目名称"),
    hospital: str | None = typer.Option(None, "--hospital", help="Hospital code: use its confirmed mappings / 医院代码"),
    local_code: str | None = typer.Option(None, "--local-code", help="The hospital's item code (or an old 2012 code) / 院内项目编码"),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="Parser and fuzzy matching only / 不用语义向量"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Normalise hospital item names onto standard items / 将院内检查项目名称映射为标准检查项目."""
    from radqc.pipelines.items.normalise import normalise

    mappings = None
    ws = _workspace(required=False)
    if ws is not None:
        from radqc.pipelines.items.mappings import MappingTable

        with ws.sessions() as session:
            mappings = MappingTable.load(session, hospital)
    results = [normalise(n, hospital=hospital, local_code=local_code, mappings=mappings,
                         use_embeddings=not no_embeddings) for n in names]
    emit(results, as_json, _print_results)


STATUS_ZH = {"mapped": "已映射", "review": "待审核", "unknown": "未识别"}


def _print_results(results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="standard items / 标准检查项目")
    for col in ("input / 输入", "code / 编码", "name / 名称", "modality / 类型", "parts / 部位", "method / 方式",
                "side / 侧别", "conf / 置信度", "source / 来源", "status / 状态"):
        table.add_column(col)
    for r in results:
        status = f"{r['status']} / {STATUS_ZH.get(r['status'], r['status'])}"
        if not r["items"]:
            table.add_row(r["input"], "-", "-", "-", "-", "-", "-", "-", "-", status)
        for k, it in enumerate(r["items"]):
            table.add_row(r["input"] if k == 0 else "", it["code"], it["name"], it["modality"], "、".join(it["parts"]),
                          it["method"], it["laterality"] or "-", f"{it['confidence']:.2f}", it["source"],
                          status if k == 0 else "")
    stdout.print(table)
    for r in results:
        if r["needs_review"]:
            for e in r["evidence"][-3:]:
                console.print(f"[dim]{r['input']}: {e}[/dim]")


def review_list(
    hospital: str | None = typer.Option(None, "--hospital", help="Hospital code / 医院代码"),
    status: str = typer.Option("open", "--status", help="open | confirmed | rejected | all"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Names waiting for a reviewer, most frequent first / 待审核的项目名称."""
    from radqc.pipelines.items.mappings import review_rows

    ws = _workspace(required=True)
    assert ws is not None
    with ws.sessions() as session:
        rows = review_rows(session, hospital=hospital, status=None if status == "all" else status)

    def human(data: list[dict[str, Any]]) -> None:
        from rich.table import Table

        table = Table(title=f"item review / 项目审核 ({len(data)})")
        for col in ("id", "hospital / 医院", "local code / 院内编码", "name / 名称", "count / 次数",
                    "best candidate / 候选", "status / 状态"):
            table.add_column(col)
        for r in data:
            cand = r["candidates"][0] if r["candidates"] else None
            best = f"{cand['code']} {cand['confidence']:.2f} ({cand['source']})" if cand else "-"
            table.add_row(str(r["id"]), r["hospital"] or "-", r["local_code"] or "-", r["local_name"],
                          str(r["occurrences"]), best, r["status"])
        stdout.print(table)

    emit(rows, as_json, human)


def review_confirm(
    review_id: int = typer.Argument(..., help="Review id / 审核记录号"),
    codes: list[str] = typer.Argument(..., help="Standard codes, CODE[:左|右|双侧] / 标准编码"),
    by: str | None = typer.Option(None, "--by", help="Reviewer / 审核人"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Confirm a name as standard items; used first from now on / 确认映射（此后优先使用）."""
    from radqc.pipelines.items.mappings import MappingError, confirm

    ws = _workspace(required=True)
    assert ws is not None
    try:
        with ws.transaction() as session:
            mapping = confirm(session, review_id, codes, by=by)
            data = {"review_id": review_id, "status": "confirmed", "mapping_id": mapping.id,
                    "standard_items": mapping.standard_items}
    except MappingError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    emit(data, as_json, lambda d: stdout.print(
        f"review #{review_id} confirmed / 已确认 -> mapping #{d['mapping_id']}: "
        + ", ".join(f"{e['code']}{':' + e['laterality'] if e['laterality'] else ''}" for e in d["standard_items"])))


def review_reject(
    review_id: int = typer.Argument(..., help="Review id / 审核记录号"),
    by: str | None = typer.Option(None, "--by", help="Reviewer / 审核人"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Reject a name (not mapped) / 驳回（不建立映射）."""
    from radqc.pipelines.items.mappings import MappingError, reject

    ws = _workspace(required=True)
    assert ws is not None
    try:
        with ws.transaction() as session:
            reject(session, review_id, by=by)
    except MappingError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    emit({"review_id": review_id, "status": "rejected"}, as_json,
         lambda d: stdout.print(f"review #{review_id} rejected / 已驳回"))


def mappings_list(
    hospital: str | None = typer.Option(None, "--hospital", help="Hospital code / 医院代码"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Confirmed per-hospital mappings / 已确认的院内项目映射."""
    from radqc.pipelines.items.mappings import mapping_rows

    ws = _workspace(required=True)
    assert ws is not None
    with ws.sessions() as session:
        rows = mapping_rows(session, hospital=hospital)

    def human(data: list[dict[str, Any]]) -> None:
        from rich.table import Table

        table = Table(title=f"item mappings / 项目映射 ({len(data)})")
        for col in ("id", "hospital / 医院", "local code / 院内编码", "region code / 区域编码", "name / 名称",
                    "standard / 标准编码", "source / 来源"):
            table.add_column(col)
        for r in data:
            std = ", ".join(f"{e['code']}{':' + e['laterality'] if e.get('laterality') else ''}" for e in r["standard_items"])
            table.add_row(str(r["id"]), r["hospital"] or "(region / 区域)", r["local_code"] or "-", r["region_code"] or "-",
                          r["local_name"] or "-", std, r["source"])
        stdout.print(table)

    emit(rows, as_json, human)


def import_mappings(
    path: str = typer.Argument(..., help="CSV: hospital, local_code, local_name, region_code, standard_codes"),
    by: str | None = typer.Option(None, "--by", help="Who imports / 导入人"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Load a region's existing mapping table / 导入区域已有的项目对照表."""
    from radqc.pipelines.items.mappings import MappingError, import_csv

    ws = _workspace(required=True)
    assert ws is not None
    try:
        with ws.transaction() as session:
            result = import_csv(session, path, by=by)
    except (MappingError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from None
    emit(result, as_json, lambda d: stdout.print(
        f"imported / 已导入 {d['imported']} rows; errors / 错误 {len(d['errors'])}"
        + "".join(f"\n  line {e['line']}: {e['error']}" for e in d["errors"])))
    if result["errors"]:
        sys.exit(1)
