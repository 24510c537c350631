"""A fixed-rate (open-loop) HTTP load generator: latency at a given request rate.

Why not only wrk: wrk is closed-loop — each connection sends its next request when the last
answer arrives, so a run measures the latency at whatever rate the service saturates at, and
a slow answer silently lowers the offered load ("coordinated omission"). The issue's target
is a latency *at* a rate (p99 <= 50 ms at >= 300 requests/s), which is what wrk2 measures;
wrk2 is not packaged for Debian, so this is its model in a page of asyncio:

* requests are scheduled at a constant rate, ``start + n / rate`` for the n-th request, spread
  round-robin over a fixed set of keep-alive connections (as wrk2 does);
* a connection that is still waiting for an answer when its next request is due sends it as
  soon as it is free, and that request's latency is counted **from its scheduled time**, so
  queueing caused by a slow answer is in the figures, not hidden;
* the service time (send to answer) is reported beside it.

HTTP/1.1 with ``Content-Length`` answers only (what the service sends); anything else is
counted as an error, never silently dropped. Runs in the benchmark's own process; at 300
requests/s it takes a few percent of one core.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    """What one fixed-rate run measured (latencies in ms, from the scheduled send time)."""

    rate: float
    duration_s: float
    connections: int
    scheduled: int = 0
    answered: int = 0
    non_2xx: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    service_ms: list[float] = field(default_factory=list)
    late_sends: int = 0
    elapsed_s: float = 0.0

    @staticmethod
    def _pct(values: Sequence[float], q: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))], 1)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": "fixed-rate", "rate": self.rate, "connections": self.connections,
            "duration_s": self.duration_s, "scheduled": self.scheduled, "requests": self.answered,
            "rps": round(self.answered / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": self._pct(self.latencies_ms, 50), "p90_ms": self._pct(self.latencies_ms, 90),
            "p99_ms": self._pct(self.latencies_ms, 99), "p999_ms": self._pct(self.latencies_ms, 99.9),
            "max_ms": round(max(self.latencies_ms), 1) if self.latencies_ms else None,
            "service_p99_ms": self._pct(self.service_ms, 99),
            "late_sends": self.late_sends, "non_2xx": self.non_2xx, "socket_errors": self.errors,
        }


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 answer; returns its status. Raises ValueError when it has no Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError(f"answer without Content-Length (status {status})")
    if length:
        await reader.readexactly(length)
    return status


async def _connection(index: int, url: Any, make_path: Callable[[random.Random], str], headers: dict[str, str],
                      rate: float, connections: int, start: float, end: float, warmup_end: float,
                      result: LoadResult, seed: int) -> None:
    rng = random.Random(seed + index)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    n = index
    loop = asyncio.get_running_loop()
    try:
        while True:
            due = start + n / rate
            if due >= end:
                return
            n += connections
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            measured = due >= warmup_end
            if measured:
                result.scheduled += 1
                if wait < -0.001:
                    result.late_sends += 1
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
                assert reader is not None
                sent = loop.time()
                writer.write(f"GET {make_path(rng)} HTTP/1.1\r\nHost: {url.netloc}\r\n{extra}\r\n".encode("latin-1"))
                status = await asyncio.wait_for(_read_answer(reader), timeout=10.0)
            except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                if measured:
                    result.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            done = loop.time()
            if measured:
                result.answered += 1
                result.latencies_ms.append((done - due) * 1000.0)
                result.service_ms.append((done - sent) * 1000.0)
                if not 200 <= status < 300:
                    result.non_2xx += 1
    finally:
        if writer is not None:
            writer.close()


async def _run(url: str, make_path: Callable[[random.Random], str], headers: dict[str, str], rate: float,
               duration_s: float, connections: int, warmup_s: float, seed: int) -> LoadResult:
    parsed = urlsplit(url)
    result = LoadResult(rate=rate, duration_s=duration_s, connections=connections)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    warmup_end = start + warmup_s
    end = warmup_end + duration_s
    await asyncio.gather(*(_connection(i, parsed, make_path, headers, rate, connections, start, end, warmup_end,
                                       result, seed) for i in range(connections)))
    result.elapsed_s = max(1e-9, loop.time() - warmup_end)
    return result


def fixed_rate(url: str, make_path: Callable[[random.Random], str], *, rate: float, duration_s: float,
               headers: dict[str, str] | None = None, connections: int = 32, warmup_s: float = 2.0,
               seed: int = 1) -> dict[str, Any]:
    """Offer ``rate`` requests/s for ``duration_s`` (after ``warmup_s`` not counted); the summary.

    ``make_path(rng)`` gives each request's path (e.g. a random visible exam)."""
    try:
        import uvloop  # the service's own event loop; optional here
        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    started = time.perf_counter()
    result = runner(_run(url, make_path, headers or {}, rate, duration_s, connections, warmup_s, seed))
    summary = result.summary()
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    return summary
