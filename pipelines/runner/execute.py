"""Worker side: run one stage over one exam context, with retries, and report the outcome.

:func:`execute_stage` is the whole unit of remote work. It takes only picklable data (the
:class:`Stage`, the :class:`ExamContext`, a :class:`RetryPolicy`) and returns a picklable
:class:`Outcome`; it never raises for a stage error and never touches the catalogue. A
thread, a worker process or a Ray task can therefore run it unchanged.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from radqc.pipelines.runner.fingerprint import NotSerialisable, normalise_result
from radqc.pipelines.runner.stage import ExamContext, Stage, StageOutput, TransientStageError


def transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions worth a retry: declared transient, I/O, time-outs, a locked/lost database."""
    from sqlalchemy.exc import OperationalError

    return (TransientStageError, OperationalError, OSError, TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in total (1 = no retry); waits ``backoff_s * factor**(n-1)``, capped."""

    attempts: int = 3
    backoff_s: float = 0.5
    factor: float = 2.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("retry attempts must be at least 1")
        if self.backoff_s < 0 or self.factor < 1:
            raise ValueError("backoff must be >= 0 and its factor >= 1")

    def delay(self, failed_attempts: int) -> float:
        return min(self.backoff_s * self.factor ** (failed_attempts - 1), self.max_backoff_s)


@dataclass
class Outcome:
    """What came of one execution: status ``succeeded`` or ``failed``, never an exception."""

    exam_id: int
    stage: str
    status: str
    attempts: int
    started_at: datetime
    finished_at: datetime
    result: Any = None
    result_sha256: str | None = None
    error: str | None = None
    transient: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:2000] + "…"


def _tail(exc: BaseException, lines: int = 12) -> str:
    return "".join(traceback.format_exception(exc)[-lines:])[-4000:]


def execute_stage(stage: Stage, ctx: ExamContext, policy: RetryPolicy, executor: str = "thread") -> Outcome:
    """Run ``stage.fn(ctx)``; retry transient errors per ``policy``; never raise for them."""
    transient = transient_errors()
    started = datetime.now(UTC)
    clock = time.perf_counter()
    attempt_log: list[dict[str, Any]] = []
    device = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "executor": executor,
        "worker": threading.current_thread().name,
        "gpu_requested": stage.resources.gpu,
    }
    attempts = 0
    while True:
        attempts += 1
        t0 = time.perf_counter()
        try:
            raw = stage.fn(ctx)
            extra: dict[str, Any] = {}
            if isinstance(raw, StageOutput):
                raw, extra = raw.result, dict(raw.manifest)
            try:
                result, digest = normalise_result(raw)
            except NotSerialisable as exc:
                return _failed(stage, ctx, started, clock, attempts, attempt_log, device,
                               f"result is not JSON-serialisable / 结果无法序列化为 JSON: {exc}", None)
            attempt_log.append({"attempt": attempts, "seconds": round(time.perf_counter() - t0, 6)})
            return Outcome(
                exam_id=ctx.exam_id, stage=stage.name, status="succeeded", attempts=attempts,
                started_at=started, finished_at=datetime.now(UTC), result=result, result_sha256=digest,
                manifest={"device": device, "attempt_log": attempt_log,
                          "run_seconds": round(time.perf_counter() - clock, 6), "stage_manifest": extra},
            )
        except transient as exc:
            attempt_log.append({"attempt": attempts, "seconds": round(time.perf_counter() - t0, 6),
                                "error": _describe(exc), "transient": True})
            if attempts >= policy.attempts:
                return _failed(stage, ctx, started, clock, attempts, attempt_log, device,
                               f"transient error persisted after {attempts} attempts / 重试后仍失败: {_describe(exc)}",
                               exc, transient=True)
            time.sleep(policy.delay(attempts))
        except Exception as exc:  # noqa: BLE001 - a permanent failure is recorded, not raised
            attempt_log.append({"attempt": attempts, "seconds": round(time.perf_counter() - t0, 6),
                                "error": _describe(exc), "transient": False})
            return _failed(stage, ctx, started, clock, attempts, attempt_log, device, _describe(exc), exc)


def _failed(
    stage: Stage, ctx: ExamContext, started: datetime, clock: float, attempts: int,
    attempt_log: list[dict[str, Any]], device: dict[str, Any], error: str, exc: BaseException | None,
    transient: bool = False,
) -> Outcome:
    manifest: dict[str, Any] = {"device": device, "attempt_log": attempt_log,
                                "run_seconds": round(time.perf_counter() - clock, 6)}
    if exc is not None:
        manifest["traceback"] = _tail(exc)
    return Outcome(
        exam_id=ctx.exam_id, stage=stage.name, status="failed", attempts=attempts, started_at=started,
        finished_at=datetime.now(UTC), error=error, transient=transient, manifest=manifest,
    )
