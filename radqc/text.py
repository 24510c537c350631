"""User-facing text: every message is Chinese first, with English beside it."""

from __future__ import annotations

from collections.abc import Mapping


def bilingual(table: Mapping[str, tuple[str, str]], code: str, detail: str = "") -> str:
    """``"中文 / English: detail"`` for a reason code from a (zh, en) table; unknown codes echo."""
    zh, en = table.get(code, (code, code))
    return f"{zh} / {en}" + (f": {detail}" if detail else "")
