"""The ``radqc`` command-line tool. Each command family lives in its own module under
``radqc.cli`` and registers itself on :data:`app`; heavy imports stay inside commands."""

from __future__ import annotations

import logging
import os

import typer

from radqc import __version__

app = typer.Typer(
    name="radqc",
    help="RadQC Workbench — 影像质控与数据集工作台 (AI QC and dataset workbench for regional imaging clouds).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    home: str = typer.Option(None, "--home", envvar="RADQC_HOME", help="Workspace directory (default ./radqc-data)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("radqc").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # per-file value warnings are noise here
    if home:
        os.environ["RADQC_HOME"] = home


def _register() -> None:
    from radqc.cli import (
        cmd_archive,
        cmd_check,
        cmd_demo,
        cmd_ingest,
        cmd_models,
        cmd_network,
        cmd_records,
        cmd_rules,
        cmd_rules_stats,
        cmd_run,
        cmd_segment,
        cmd_serve,
        cmd_synth,
        cmd_workspace,
    )

    for module in (cmd_workspace, cmd_ingest, cmd_records, cmd_network, cmd_archive, cmd_run, cmd_demo, cmd_synth,
                   cmd_check, cmd_rules_stats, cmd_rules, cmd_segment, cmd_models, cmd_serve):
        module.register(app)
    import importlib

    for name in ("cmd_series", "cmd_items", "cmd_exams", "cmd_qc"):  # standard series / items / exam search (#6), image QC (#7)
        importlib.import_module(f"radqc.cli.{name}").register(app)


_register()


def run() -> None:
    """Console entry point: known user errors print one clear line instead of a traceback."""
    import sys

    from radqc.workspace import WorkspaceError

    try:
        app()
    except WorkspaceError as exc:
        sys.stderr.write(f"error / 错误: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    run()
