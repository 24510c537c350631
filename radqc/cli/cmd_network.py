"""DICOM networking commands / DICOM 网络命令:

* ``radqc receive``   — C-STORE receiver (storage SCP) / 接收 PACS 或设备推送
* ``radqc pull``      — pull from a PACS by DICOMweb or C-FIND/C-MOVE, resumable / 从 PACS 拉取（可断点续传）
* ``radqc reconcile`` — find studies/series/instances the catalogue lacks, back-fill them / 防漏传与补传

pynetdicom and dicomweb-client are imported inside the commands, not at CLI start-up.
"""

from __future__ import annotations

import signal
from datetime import date
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout


def register(app: typer.Typer) -> None:
    app.command("receive")(receive)
    app.command("pull")(pull)
    app.command("reconcile")(reconcile)


def _date(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{name} must be an ISO date such as 2026-01-31 / 日期格式应为 2026-01-31", param_hint=name
        ) from exc


def _split_aes(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


class _Bars:
    """One progress bar per study on stderr (``--json`` output on stdout stays clean)."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from radqc.pipelines.ingest.pull import PullProgress

        self.enabled = enabled
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not enabled,
        )
        bars = self
        self.tasks: dict[str, Any] = {}

        class Hooks(PullProgress):
            def study_started(self, study, expected):  # type: ignore[no-untyped-def]
                bars.tasks[study.study_uid] = bars.bar.add_task(
                    f"study / 检查 {study.label()}", total=expected or None
                )

            def instance(self, study, received):  # type: ignore[no-untyped-def]
                task = bars.tasks.get(study.study_uid)
                if task is not None:
                    bars.bar.update(task, completed=received)

            def study_finished(self, study, state, tally):  # type: ignore[no-untyped-def]
                task = bars.tasks.get(study.study_uid)
                if task is not None:
                    bars.bar.update(task, description=f"study / 检查 {study.label()} [{state}]")

        self.hooks = Hooks()

    def __enter__(self) -> _Bars:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]


def _peer(
    ws: Any,
    dicomweb: str | None,
    dimse: str | None,
    called_ae: str | None,
    ae_title: str,
    move_port: int,
    bind: str,
):  # type: ignore[no-untyped-def]
    from radqc.pipelines.ingest.pull import DicomWebPeer, DimsePeer, parse_peer

    if bool(dicomweb) == bool(dimse):
        console.print(
            "[red]give exactly one of --dicomweb URL or --dimse HOST:PORT / 请指定 --dicomweb 或 --dimse 之一"
        )
        raise typer.Exit(2)
    if dicomweb:
        return DicomWebPeer(dicomweb)
    try:
        _, host, port = parse_peer(dimse or "")
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    if not called_ae:
        console.print(
            "[red]--dimse needs --called-ae (the PACS AE title) / 需要 --called-ae 指定 PACS 的 AE 名称"
        )
        raise typer.Exit(2)
    return DimsePeer(ws, host, int(port or 0), called_ae, ae_title=ae_title, move_port=move_port, bind=bind)


# -- receive ---------------------------------------------------------------------------------------
def receive(
    ae_title: str = typer.Option("RADQC", "--ae-title", help="Our AE title / 本机 AE 名称."),
    port: int = typer.Option(11112, "--port", help="TCP port to listen on / 监听端口."),
    bind: str = typer.Option(
        "127.0.0.1", "--bind", help="Address to listen on (0.0.0.0 for the hospital network) / 监听地址."
    ),
    allowed_aes: list[str] = typer.Option(
        None,
        "--allowed-aes",
        help="Calling AE titles allowed to send (comma-separated or repeated; default any).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary when stopped."),
) -> None:
    """Receive DICOM by C-STORE; each instance is acknowledged only once durably stored.

    接收 C-STORE 推送；实例落盘并写入目录后才回复成功，无法解析的实例隔离并回复失败状态。
    """
    from radqc.pipelines.ingest.scp import StorageSCP
    from radqc.workspace import Workspace

    ws = Workspace.open()
    aes = _split_aes(allowed_aes)
    scp = StorageSCP(ws, ae_title=ae_title, port=port, bind=bind, allowed_aes=aes or None)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Both stop the receiver cleanly (and print the totals), also when started in the
    # background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        scp.start()
    except OSError as exc:
        console.print(f"[red]cannot listen on {bind}:{port}: {exc} / 无法监听端口")
        raise typer.Exit(2) from exc
    console.print(
        f"receiving as AE {ae_title} on {bind}:{scp.port}"
        + (f", accepting {', '.join(aes)}" if aes else "")
        + " — Ctrl-C to stop / 正在接收，按 Ctrl-C 停止"
    )
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        scp.stop()
    data = scp.stats.to_dict()

    def human(d: dict) -> None:
        stdout.print(
            f"received {d['files_seen']}: ingested {d['ingested']}, duplicate {d['duplicate']}, "
            f"quarantined {d['quarantined']}, storage failures {d['failed']} ({d['associations']} associations)"
        )

    emit(data, as_json, human)


# -- pull ------------------------------------------------------------------------------------------
def pull(
    dicomweb: str = typer.Option(None, "--dicomweb", help="DICOMweb root URL, e.g. http://pacs/dicom-web"),
    dimse: str = typer.Option(None, "--dimse", help="PACS DIMSE address HOST:PORT (C-FIND + C-MOVE)."),
    called_ae: str = typer.Option(None, "--called-ae", help="The PACS AE title (with --dimse)."),
    ae_title: str = typer.Option("RADQC", "--ae-title", help="Our AE title, also the C-MOVE destination."),
    move_port: int = typer.Option(
        11113, "--move-port", help="Port our C-MOVE receiver listens on during the pull."
    ),
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address of the C-MOVE receiver."),
    accession: str = typer.Option(None, "--accession", help="AccessionNumber / 检查号."),
    patient_id: str = typer.Option(None, "--patient-id", help="PatientID / 患者 ID."),
    since: str = typer.Option(None, "--since", help="StudyDate from (ISO date, inclusive)."),
    until: str = typer.Option(None, "--until", help="StudyDate to (ISO date, inclusive)."),
    study_uid: list[str] = typer.Option(None, "--study-uid", help="Explicit StudyInstanceUID (repeatable)."),
    max_studies: int = typer.Option(None, "--max-studies", hidden=True, help="Stop after N fetched studies."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary on stdout."),
) -> None:
    """Pull studies from a PACS; re-running the same pull resumes and skips completed studies.

    从 PACS 拉取检查；中断后以相同条件重新运行即可续传，已完成的检查不会重复拉取。
    """
    from radqc.pipelines.ingest.pull import PullError, PullQuery
    from radqc.pipelines.ingest.pull import pull as run_pull
    from radqc.workspace import Workspace

    query = PullQuery(
        accession=accession,
        patient_id=patient_id,
        since=_date(since, "--since"),
        until=_date(until, "--until"),
        study_uids=tuple(study_uid or ()),
    )
    if query.is_empty():
        console.print(
            "[red]give at least one of --accession, --patient-id, --since/--until, --study-uid "
            "/ 请至少指定一个查询条件（不允许拉取整个 PACS）"
        )
        raise typer.Exit(2)
    ws = Workspace.open()
    peer = _peer(ws, dicomweb, dimse, called_ae, ae_title, move_port, bind)
    try:
        with _Bars(enabled=not as_json) as bars:
            result = run_pull(ws, peer, query, progress=bars.hooks, max_studies=max_studies)
    except PullError as exc:
        console.print(f"[red]pull failed / 拉取失败: {exc}")
        raise typer.Exit(1) from exc
    data = result.to_dict()

    def human(d: dict) -> None:
        stdout.print(
            f"studies found {d['studies_found']}: done {d['studies_done']}, skipped {d['studies_skipped']}, "
            f"failed {d['studies_failed']}; instances ingested {d['instances_ingested']}, "
            f"duplicate {d['instances_duplicate']}, quarantined {d['instances_quarantined']}"
        )
        for error in d["errors"]:
            stdout.print(f"  [red]error / 错误: {error}")
        if d["interrupted"]:
            stdout.print(
                "  stopped early; run the same command again to continue / 已中断，重新运行同一命令即可续传"
            )

    emit(data, as_json, human)
    if result.studies_failed:
        raise typer.Exit(1)


# -- reconcile -------------------------------------------------------------------------------------
def reconcile(
    pacs: str = typer.Option(..., "--pacs", help="DICOMweb URL (http://...) or DIMSE HOST:PORT."),
    called_ae: str = typer.Option(None, "--called-ae", help="The PACS AE title (DIMSE)."),
    ae_title: str = typer.Option("RADQC", "--ae-title", help="Our AE title, also the C-MOVE destination."),
    move_port: int = typer.Option(
        11113, "--move-port", help="Port our C-MOVE receiver listens on while back-filling."
    ),
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address of the C-MOVE receiver."),
    since: str = typer.Option(..., "--since", help="StudyDate from (ISO date, inclusive)."),
    until: str = typer.Option(
        None, "--until", help="StudyDate to (ISO date, inclusive; default: no upper bound)."
    ),
    no_pull: bool = typer.Option(
        False, "--no-pull", help="Report gaps only, do not back-fill / 只报告，不补传."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report on stdout."),
) -> None:
    """Compare the PACS with the catalogue for a StudyDate window; back-fill what is missing.

    对比 PACS 与本地目录（按检查日期），报告缺失的检查、序列和实例，并补传（--no-pull 只报告）。
    Exit status 1 when gaps remain afterwards / 仍有缺失时退出码为 1。
    """
    from radqc.pipelines.ingest.pull import PullError, parse_peer
    from radqc.pipelines.ingest.reconcile import reconcile as run_reconcile
    from radqc.workspace import Workspace

    try:
        protocol, _, _ = parse_peer(pacs)
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    start, end = _date(since, "--since"), _date(until, "--until")
    assert start is not None
    ws = Workspace.open()
    peer = _peer(
        ws,
        pacs if protocol == "dicomweb" else None,
        pacs if protocol == "dimse" else None,
        called_ae,
        ae_title,
        move_port,
        bind,
    )
    try:
        with _Bars(enabled=not as_json) as bars:
            report = run_reconcile(ws, peer, start, end, backfill=not no_pull, progress=bars.hooks)
    except PullError as exc:
        console.print(f"[red]reconcile failed / 对账失败: {exc}")
        raise typer.Exit(1) from exc
    data = report.to_dict()

    def human(d: dict) -> None:
        c = d["counts"]
        stdout.print(
            f"PACS studies {d['pacs_studies']} ({d['pacs_instances']} instances): missing studies "
            f"{c['missing_studies']}, missing series {c['missing_series']}, missing instances "
            f"{c['missing_instances']} — {c['instances_to_fetch']} instances to fetch / 待补传实例"
        )
        for row in d["missing_studies"]:
            stdout.print(
                f"  missing study / 缺失检查 {row['accession'] or row['study_uid']} ({row['instances']} instances)"
            )
        for row in d["missing_series"]:
            stdout.print(
                f"  missing series / 缺失序列 {row['series_uid']} of {row['accession'] or row['study_uid']}"
            )
        for row in d["missing_instances"]:
            stdout.print(
                f"  series {row['series_uid']}: {row['catalogue_instances']} of {row['pacs_instances']} "
                f"instances, {row['missing']} missing / 缺失实例"
            )
        b = d["backfilled"]
        if b.get("performed"):
            stdout.print(
                f"back-filled / 已补传: {b['instances_ingested']} ingested, {b['instances_duplicate']} duplicate, "
                f"{b['instances_quarantined']} quarantined; still missing / 仍缺失: {b['remaining_missing_instances']}"
            )

    emit(data, as_json, human)
    if data["remaining_gaps"]:
        raise typer.Exit(1)
