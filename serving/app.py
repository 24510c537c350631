"""The FastAPI application over one workspace (``radqc serve``).

``create_app(workspace)`` wires the routers in :data:`ROUTERS` (each module's ``router``),
security headers, and the web pages. Handlers read the catalogue through the workspace's
sessions; none loads a model.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from radqc import __version__
from radqc.serving.context import ServiceContext
from radqc.serving.settings import ServingSettings
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

#: Router modules under radqc.serving.routers, in the order their routes appear in the schema.
ROUTERS: tuple[str, ...] = ("auth",)
#: Optional routers: included when their module exists (lets areas land one at a time).
OPTIONAL_ROUTERS: tuple[str, ...] = ("exams", "recognition", "statistics", "dicomweb", "admin", "web")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; frame-ancestors 'none'",
}


def create_app(workspace: Workspace, settings: ServingSettings | None = None) -> FastAPI:
    ctx = ServiceContext.create(workspace, settings)
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync handlers run in anyio's thread pool (40 threads by default). Each holds one
        # catalogue connection and the access log one more per process: more threads than the
        # engine's pool (5 + 10) made every thread wait out the pool timeout under load.
        anyio.to_thread.current_default_thread_limiter().total_tokens = ctx.settings.threads
        _warm_caches(ctx)
        _freeze_startup_objects()
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="RadQC Workbench API / 影像质控服务接口",
        version=__version__,
        description=("QC results beside the images for recognition (互认) decisions, DICOMweb over the catalogue, "
                     "statistics. Every route needs a bearer token (POST /api/auth/token) or an X-API-Key."),
    )
    app.state.ctx = ctx
    for name in ROUTERS + OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(f"radqc.serving.routers.{name}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_ROUTERS and exc.name == f"radqc.serving.routers.{name}":
                continue
            raise
        app.include_router(module.router)
        if hasattr(module, "mount"):
            module.mount(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness for ``radqc serve --detach`` and load balancers: no data, no database."""
        return {"status": "ok"}

    app.add_exception_handler(DataError, _parameter_out_of_range)
    app.add_exception_handler(OverflowError, _parameter_out_of_range)

    app.add_middleware(ConcurrencyLimit, limit=ctx.settings.threads)
    app.add_middleware(SecurityHeaders)
    return app


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response a handler did not set them on.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` (BaseHTTPMiddleware) runs
    each request's handler in a separate task behind a memory stream, which cost about a tenth
    of the exam-detail route's CPU time under load.
    """

    _ENCODED = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in self._ENCODED if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ConcurrencyLimit:
    """At most ``limit`` requests of one worker past this point at a time; the rest wait here.

    A request holds its catalogue connection from the first query (authentication) to the end,
    but hops between threads on the way (authentication, permission, handler: each a separate
    thread-pool call). Without a bound, 50 concurrent requests each took a connection and then
    waited for a thread, and the 15-connection pool ran dry (0 requests/s, pool timeouts).
    Waiting here costs nothing: no connection, no thread is held yet.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = max(1, limit)
        self._semaphore: asyncio.Semaphore | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:  # created on the serving event loop
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            await self.app(scope, receive, send)


def _warm_caches(ctx: ServiceContext) -> None:
    """Parse the vocabularies and the reason list once at start-up, not in the first requests
    (the exam-item vocabulary takes ~0.7 s; concurrent cold requests each parsed it)."""
    from radqc import vocab

    vocab.exam_items()
    ctx.recognition_reasons()


def _freeze_startup_objects() -> None:
    """Move everything loaded at start-up (modules, vocabularies, models' metadata, SQLAlchemy's
    mappers) out of the cyclic garbage collector's reach.

    A full collection walks every tracked object; with the vocabularies and the ORM loaded that
    took several milliseconds, and under load one landed in some request every few hundred,
    stretching the exam detail's tail latency. Objects created later are collected as usual."""
    gc.collect()
    gc.freeze()


OUT_OF_RANGE = "a parameter is out of range for the catalogue / 参数超出数据库取值范围"


async def _parameter_out_of_range(request: Request, exc: Exception) -> Response:
    """422 for a value the catalogue cannot hold (an id past the integer column, a NUL in text).

    Path and query ids are plain ``int`` in the routes; PostgreSQL refuses one past int4
    (DataError) and SQLite's driver one past int64 (OverflowError), which would otherwise be a
    500 (found by tests/test_serving_fuzz.py). Such a row cannot exist, so every caller gets the
    same answer and nothing about existence leaks. An OverflowError from anywhere but the
    database driver is a bug and stays a 500.
    """
    if isinstance(exc, OverflowError) and not _raised_by_database(exc):
        raise exc
    log.info("rejected %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(status_code=422, content={"detail": OUT_OF_RANGE})


def _raised_by_database(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    frame_file = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return "sqlalchemy" in frame_file or "sqlite" in frame_file
