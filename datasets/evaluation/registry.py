"""Evaluators by stage name: what ``radqc eval STAGE`` can run.

An evaluator is registered with :func:`register` in a module listed in :data:`MODULES`
(later issues append their module there). A stage whose code does not exist yet is not
offered: an evaluator declares the modules it ``requires`` and is listed only when they
import. Importing this module is instant (no numpy, torch or database).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radqc.datasets.evaluation.harness import EvalContext, EvalReport

EvaluateFn = Callable[["EvalContext"], "EvalReport"]

#: Modules that register evaluators when imported. Later stages add theirs here
#: (rule_qc, image_qc, segmentation, series_classification, item_normalisation,
#: report_splitting, audit).
MODULES: tuple[str, ...] = (
    "radqc.datasets.evaluation.evaluators.ingest",
    "radqc.datasets.evaluation.evaluators.records",
    "radqc.datasets.evaluation.evaluators.rules",
    "radqc.datasets.evaluation.evaluators.anatomy",
    "radqc.datasets.evaluation.evaluators.series",
    "radqc.datasets.evaluation.evaluators.items",
    "radqc.datasets.evaluation.evaluators.image_qc",
)


@dataclass(frozen=True)
class EvaluatorInfo:
    name: str
    description: str
    fn: EvaluateFn
    #: Modules the stage under evaluation lives in; missing ones hide the evaluator.
    requires: tuple[str, ...] = field(default=())
    #: False for evaluators that render their own held-out cases (``--data`` optional).
    needs_data: bool = True

    def is_available(self) -> bool:
        for module in self.requires:
            try:
                if importlib.util.find_spec(module) is None:
                    return False
            except (ImportError, ValueError):
                return False
        return True


_REGISTRY: dict[str, EvaluatorInfo] = {}
_loaded = False


def register(name: str, description: str, requires: tuple[str, ...] = (),
             needs_data: bool = True) -> Callable[[EvaluateFn], EvaluateFn]:
    """Decorator: register ``fn(ctx) -> EvalReport`` as the evaluator of stage ``name``."""

    def deco(fn: EvaluateFn) -> EvaluateFn:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"an evaluator for stage {name!r} is already registered")
        _REGISTRY[name] = EvaluatorInfo(name, description, fn, tuple(requires), needs_data)
        return fn

    return deco


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for module in MODULES:
        try:
            if importlib.util.find_spec(module) is None:
                continue  # listed for a stage that is not in this installation
        except ModuleNotFoundError:
            continue
        importlib.import_module(module)
    _loaded = True


def available() -> list[EvaluatorInfo]:
    """Evaluators whose stage exists, sorted by name."""
    _load()
    return sorted((e for e in _REGISTRY.values() if e.is_available()), key=lambda e: e.name)


def get(name: str) -> EvaluatorInfo:
    """The evaluator of ``name``; KeyError (listing what is available) when not offered."""
    for info in available():
        if info.name == name:
            return info
    names = ", ".join(e.name for e in available()) or "(none)"
    raise KeyError(f"no evaluator for stage {name!r}; available: {names} / 该阶段无评估器")
