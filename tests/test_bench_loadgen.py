"""The fixed-rate load generator of the serving benchmark (benchmarks/loadgen.py) must count
a request's latency from its scheduled time: a stall in the service has to show in the
figures of the requests queued behind it (no coordinated omission), and answers it cannot
read are errors, never dropped. A small asyncio HTTP server in the test plays the service."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.loadgen import fixed_rate

BODY = b'{"ok":true}'


@contextmanager
def _server(stall_on: int | None = None, stall_s: float = 0.0, chunked: bool = False) -> Iterator[str]:
    """A keep-alive HTTP/1.1 server on a free port; request number ``stall_on`` waits ``stall_s``."""
    loop = asyncio.new_event_loop()
    count = {"n": 0}
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                count["n"] += 1
                if count["n"] == stall_on:
                    await asyncio.sleep(stall_s)
                if chunked:
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(BODY)
                                 + BODY + b"\r\n0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        stop = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["stop"] = stop
        ready.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
        thread.join(5)


def test_every_scheduled_request_is_answered_and_counted() -> None:
    with _server() as url:
        out = fixed_rate(url, lambda rng: "/x", rate=50, duration_s=1.0, connections=2, warmup_s=0.2)
    assert out["scheduled"] == 50 and out["requests"] == 50
    assert out["non_2xx"] == 0 and out["socket_errors"] == 0
    assert out["p50_ms"] is not None and out["p50_ms"] < out["max_ms"] + 1e-9


def test_a_stall_shows_in_the_requests_queued_behind_it() -> None:
    """One connection at 50/s: request 20 stalls 0.4 s, so the ~20 requests due during the
    stall are sent late, and their latencies (from their due time) carry the wait."""
    with _server(stall_on=20, stall_s=0.4) as url:
        out = fixed_rate(url, lambda rng: "/x", rate=50, duration_s=1.5, connections=1, warmup_s=0.0)
    assert out["requests"] == out["scheduled"] == 75
    assert out["max_ms"] >= 350  # the stalled request itself
    assert out["late_sends"] >= 10  # those due while it stalled went out late...
    assert out["p90_ms"] >= 100  # ...and their waiting is in the figures (service time alone is ~1 ms)


def test_answers_it_cannot_read_are_errors() -> None:
    with _server(chunked=True) as url:
        out = fixed_rate(url, lambda rng: "/x", rate=20, duration_s=0.5, connections=1, warmup_s=0.0)
    assert out["requests"] == 0 and out["socket_errors"] == out["scheduled"] == 10
