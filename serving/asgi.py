"""The ASGI entry point: ``uvicorn radqc.serving.asgi:app`` (used by ``radqc serve --workers N``).

The workspace comes from the environment (``RADQC_HOME``, ``RADQC_DATABASE_URL``...), like
every command's.
"""

from __future__ import annotations

from fastapi import FastAPI


def build() -> FastAPI:
    from radqc.serving.app import create_app
    from radqc.workspace import Workspace

    return create_app(Workspace.open())


def __getattr__(name: str) -> FastAPI:
    # Built lazily so importing this module (e.g. for the CLI) does not open a workspace.
    if name == "app":
        return build()
    raise AttributeError(name)
