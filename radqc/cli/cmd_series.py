"""Placeholder: registers nothing until the series commands land (issue #6)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
