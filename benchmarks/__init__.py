"""Benchmarks: speed and memory, measured against peer tools in the same run.

Each ``bench_*.py`` module exposes ``run(quick: bool = False) -> str`` returning a Markdown
section; ``python -m benchmarks`` runs them all and rewrites ``docs/benchmarks.md`` with the
machine, date and command.
"""
