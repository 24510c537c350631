"""``python -m benchmarks [--quick] [NAME ...]``: run benchmarks and record them in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import benchmarks

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
MARK = "<!-- section:{} -->"


def _machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def _sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    parts = text.split("<!-- section:")
    for part in parts[1:]:
        name, body = part.split(" -->", 1)
        body = body.strip()
        # The "## name" heading is written back by main(); drop it here so it is not repeated.
        while body.startswith(f"## {name}"):
            body = body[len(f"## {name}") :].strip()
        out[name] = body
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark names (default: all), e.g. ingest compression")
    parser.add_argument("--quick", action="store_true", help="small inputs, for a smoke run")
    args = parser.parse_args(argv)
    available = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    names = args.names or available
    existing = _sections(DOC.read_text()) if DOC.exists() else {}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"== benchmark {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        body = module.run(quick=args.quick)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        existing[name] = (
            f"_Run {stamp} on {_machine()}, commit {commit}, command `python -m benchmarks {name}"
            f"{' --quick' if args.quick else ''}` ({time.perf_counter() - started:.0f} s)._\n\n{body.strip()}"
        )
    lines = [
        "# Benchmarks",
        "",
        "Speed and memory, measured against a peer tool in the same run. Regenerate with",
        "`make bench` (all) or `.venv/bin/python -m benchmarks NAME`. Each section records the",
        "machine, date, commit and command it came from.",
        "",
    ]
    for name in sorted(existing):
        lines += [MARK.format(name), f"## {name}", "", existing[name], ""]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
