"""``radqc check [PATH] --records FILE``: the hospital-side check before upload / 院端上传前质控.

Works offline and never opens the catalogue: the ruleset is an exported one given with
``--ruleset``, else the published version of the local ruleset store (files under
``$RADQC_HOME/rulesets``, when there is one), else the library shipped with RadQC. Exit status: 0 when every
exam passes, 1 when some exam fails, 2 when an input is unusable as a whole.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def published_ruleset() -> Any | None:
    """The published version of this installation's ruleset store (``$RADQC_HOME/rulesets``),
    read without touching the catalogue; None when there is no store (then the bundled library)."""
    from radqc.qc_rules.engine.store import RulesetStore

    store = RulesetStore.for_home()
    if not (store.root / "state.json").is_file() or not store.version_numbers():
        return None
    return store.published()


def engine_evaluator(ruleset: Path | None) -> tuple[Any, str | None]:
    """An evaluator over the ruleset to use, and its version.

    ``--ruleset`` (an export, or a folder of library/standard files) wins; else the published
    version of the local ruleset store when there is one; else the library shipped with RadQC.
    """
    from radqc.qc_rules.engine import evaluate_exam, load_library

    if ruleset is not None and not ruleset.exists():
        raise FileNotFoundError(f"no such ruleset file or folder / 规则集不存在: {ruleset}")
    if ruleset is None:
        loaded = published_ruleset() or load_library()
    else:
        # A folder: its rule/standard files, and those of standards/ and library/ beneath it.
        files = [ruleset] if ruleset.is_file() else sorted(
            {p for p in ruleset.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json")}
        )
        if not files:
            raise FileNotFoundError(f"no rule files in / 规则集目录为空: {ruleset}")
        loaded = load_library(files)

    def evaluate(facts: dict[str, Any]) -> Any:
        return evaluate_exam(facts, loaded)  # the engine picks the exam item's standard

    return evaluate, getattr(loaded, "version", None)


def check(
    path: Path = typer.Argument(None, help="Hospital folder (or one file) of DICOM studies; omit to check records alone."),
    records: list[Path] = typer.Option(
        None, "--records", "-r",
        help="HIS/RIS exam records (JSON Lines or CSV, UTF-8/GB18030); repeat for several files, read in order.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Per exam: accession_number, score, grade, failures (JSON on stdout)."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for the feedback report (HTML, CSV, JSON); default ./radqc-check."),
    ruleset: Path = typer.Option(
        None, "--ruleset",
        help="Ruleset file or folder (an export); default: the local store's published version, else the bundled library.",
    ),
    records_format: str = typer.Option("auto", "--format", help="Records format: auto, jsonl or csv."),
    now: str = typer.Option(None, "--now", help="Check time (ISO 8601) for timeliness rules; default the current time."),
) -> None:
    """Check exams before upload: normalise, run the rules, write a feedback report."""
    from radqc.pipelines.ingest.records import RecordsFileError
    from radqc.qc_rules.hospital.check import run_check
    from radqc.qc_rules.hospital.normalise import parse_loose_time
    from radqc.qc_rules.hospital.report import write_report

    if path is None and not records:
        console.print("[red]nothing to check / 无检查对象: give PATH and/or --records FILE")
        raise typer.Exit(2)
    if records_format not in ("auto", "jsonl", "csv"):
        console.print(f"[red]unknown --format / 未知格式: {records_format}")
        raise typer.Exit(2)
    when: datetime | None = None
    if now:
        when = parse_loose_time(now)
        if when is None:
            console.print(f"[red]--now is not a date-time / 时间格式错误: {now}")
            raise typer.Exit(2)
    try:
        evaluator, version = engine_evaluator(ruleset)
    except Exception as exc:  # a ruleset that does not load is unusable input
        console.print(f"[red]ruleset cannot be loaded / 规则集无法加载: {exc}")
        raise typer.Exit(2) from exc
    try:
        result = run_check(path, list(records or []), evaluator, now=when, ruleset_version=version, records_format=records_format)
    except (RecordsFileError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    paths = write_report(result, out or Path("radqc-check"))
    data = result.to_dict()
    data["report"] = paths

    def human(d: dict[str, Any]) -> None:
        s = d["summary"]
        stdout.print(
            f"exams / 检查 {s['exams']}: passed / 通过 {s['passed']}, failed / 未通过 {s['failed']}, "
            f"failures / 问题 {s['failures']}, normalised / 自动标准化 {s['changes']}, "
            f"files not read / 无法读取 {s['files_not_read']}"
        )
        for exam in d["exams"]:
            if exam["passed"]:
                continue
            stdout.print(f"[bold red]✗ {exam['accession_number'] or exam['key']}[/] score {exam['score']} grade {exam['grade']}")
            for f in exam["failures"]:
                note = " (提示 note)" if f.get("severity") == "info" else ""
                stdout.print(f"   {f['rule_id']} [{f['dimension']}]{note} {f['reason']}", markup=False)
        stdout.print(f"report / 报告: {d['report']['html']}")

    emit(data, as_json, human)
    raise typer.Exit(1 if result.failed else 0)
