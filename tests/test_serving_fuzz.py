"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis 4): no 5xx.

The real app runs in-process (ASGI) over the seeded catalogue of tests/test_serving_security.py,
once with an admin's token (region scope, every permission of the platform) and once with a
doctor's (own hospital plus authorised patients), on both catalogue backends. Schemathesis draws
valid requests (and, for the admin, invalid ones: wrong types, missing fields, out-of-range
values) from the schema; the ``not_a_server_error`` check fails on any 5xx. Every failure is
collected with its reproducing request (credentials filtered) and reported together, so one
run names every broken operation. Hypothesis is derandomised: CI runs the same examples each
time, and a failure here is a real regression, not bad luck.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.test_serving_security import Seed, seed_catalogue

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

#: Examples per operation and caller. Small: 30-odd operations x 3 runs must stay under a minute
#: on two shared cores; derandomised, so the same cases run every time.
EXAMPLES = {"admin": 10, "doctor": 6}
NEGATIVE_EXAMPLES = 6


def answer_500_instead_of_raising(app: ASGIApp) -> ASGIApp:
    """The app as a deployed server behaves: an unhandled exception becomes a 500 response.

    The in-process transport would re-raise it instead, which stops the run at the first
    failure; with this wrapper the check sees the 500 and the run goes on to list them all.
    """

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive, watch)
        except Exception:
            if scope["type"] != "http" or started:
                return
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"Internal Server Error"})

    return wrapped


def fuzz(seed: Seed, role: str, examples: int, negative: bool = False) -> tuple[int, list[str]]:
    """Run every operation ``examples`` times as ``role``; return (cases run, failures)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup  # a BaseExceptionGroup, not an Exception

    schema = schemathesis.openapi.from_asgi("/openapi.json", answer_500_instead_of_raising(seed.app))  # type: ignore[arg-type]
    headers = seed.headers[role]
    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE
    failures: list[str] = []
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err would raise here, naming the schema error
        label = operation.label
        if label == "POST /api/auth/token":
            # Fuzzing the login would lock the seeded accounts out (and costs an Argon2 hash per case);
            # tests/test_serving_auth.py and the enumeration test cover it.
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            nonlocal count
            count += 1
            response = case.call(headers=headers)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except FailureGroup:  # collect, report all at the end
                curl = case.as_curl_command(headers=headers).replace(headers.get("Authorization", "-"), "[token]")
                failures.append(f"{case.operation.label} -> {response.status_code}: {curl}")

        try:
            run()
        except Exception as exc:  # e.g. hypothesis could not draw a case for this operation at all
            if "Unsatisfiable" not in type(exc).__name__:
                raise
    return count, failures


@pytest.mark.timeout(300)
def test_schemathesis_no_server_errors_as_admin_and_doctor(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed = seed_catalogue(workspace, tmp_path)
    operations = len(seed.app.openapi()["paths"])
    report: list[str] = []
    total = 0
    for role, examples in EXAMPLES.items():
        count, failures = fuzz(seed, role, examples)
        total += count
        report += [f"[{role}] {f}" for f in failures]
    count, failures = fuzz(seed, "admin", NEGATIVE_EXAMPLES, negative=True)
    total += count
    report += [f"[admin, invalid data] {f}" for f in failures]
    assert total >= operations, f"only {total} cases over {operations} paths: the schema was not fuzzed"
    unique = list(dict.fromkeys(report))
    assert not unique, f"{len(unique)} server errors:\n" + "\n".join(unique[:40])
