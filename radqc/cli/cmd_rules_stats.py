"""``radqc qc-stats``: statistics over stored rule-QC results / 规则质控统计.

Groups the latest ``rule_qc`` result of every exam by hospital, modality, exam item,
technician, report doctor, reviewing doctor, rule or dimension; exports CSV and draws a PNG.
(Named ``qc-stats`` so it does not clash with the engine's ``radqc rules ...`` group.)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout


def register(app: typer.Typer) -> None:
    app.command("qc-stats")(qc_stats)


def qc_stats(
    by: str = typer.Option("hospital", "--by", help="hospital|modality|item|technician|report_doctor|review_doctor|rule|dimension"),
    csv_path: Path = typer.Option(None, "--csv", help="Write the table as CSV (UTF-8 with BOM)."),
    plot_path: Path = typer.Option(None, "--plot", help="Write a PNG bar chart of the failure rate per group."),
    top: int = typer.Option(20, "--top", help="Groups shown in the plot and the table on screen."),
    hospital: str = typer.Option(None, "--hospital", help="Only this hospital (institution code)."),
    modality: str = typer.Option(None, "--modality", help="Only this modality (CT, MR, DX...)."),
    since: str = typer.Option(None, "--since", help="Only exams at or after this time (ISO 8601 date or date-time)."),
    until: str = typer.Option(None, "--until", help="Only exams before this time (ISO 8601 date or date-time)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output on stdout."),
) -> None:
    """Failure rates and deductions of rule QC, grouped / 按维度统计规则质控结果."""
    from radqc.qc_rules import statistics as st
    from radqc.workspace import Workspace

    if by not in st.GROUPINGS:
        console.print(f"[red]unknown --by / 未知分组: {by} (one of {', '.join(st.GROUPINGS)})")
        raise typer.Exit(2)
    from radqc.qc_rules.hospital.normalise import CST, parse_loose_date, parse_loose_time

    period: dict[str, Any] = {}
    for name, text in (("since", since), ("until", until)):
        if text:
            stamp = parse_loose_time(text)
            if stamp is None:
                day = parse_loose_date(text)
                stamp = datetime(day.year, day.month, day.day, tzinfo=CST) if day else None
            if stamp is None:
                console.print(f"[red]--{name} is not a date or date-time / 时间格式错误: {text}")
                raise typer.Exit(2)
            period[name] = stamp
    ws = Workspace.open()
    with ws.sessions() as session:
        data = st.statistics(session, by, rule_names=st.published_rule_names() if by == "rule" else None,
                             hospital=hospital, modality=modality, **period)
    data["filters"] = {"hospital": hospital, "modality": modality, "since": since, "until": until}
    if csv_path is not None:
        data["csv"] = str(st.write_csv(data["groups"], csv_path))
    if plot_path is not None:
        data["plot"] = str(st.plot(data["groups"], by, plot_path, top=top))

    def human(d: dict[str, Any]) -> None:
        o = d["overall"]
        stdout.print(
            f"exams / 检查 {o['exams']}: failed / 未通过 {o['failed_exams']} ({100 * o['failure_rate']:.1f}%), "
            f"mean score / 平均分 {o['mean_score']}"
        )
        for row in d["groups"][:top]:
            stdout.print(
                f"  {row['label']}: {row['failed_exams']}/{row['exams']} ({100 * row['failure_rate']:.1f}%), "
                f"failures {row['failures']}, points {row['points']}, mean score {row['mean_score']}",
                markup=False,
            )
        for key in ("csv", "plot"):
            if key in d:
                stdout.print(f"{key}: {d[key]}")

    emit(data, as_json, human)
