"""Loading the planner's data files (YAML next to this module), once per process."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).with_name("data")


@cache
def load(name: str) -> Any:
    """Parse ``data/<name>.yaml``; cached, so callers must not mutate the result."""
    with (DATA_DIR / f"{name}.yaml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)
