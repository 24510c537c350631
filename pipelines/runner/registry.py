"""The stage registry: which stages exist, what they depend on, and in which order they run.

Two ways to register, both validated eagerly (like highdicom, a mistake fails where it is
made, not in the middle of a night's run):

* a table: each module under ``radqc.pipelines.stages`` exposes ``STAGES = [Stage(...)]``
  and :func:`default_registry` collects them (plus any third-party package that declares
  an entry point in the ``radqc.stages`` group pointing at such a list);
* a decorator: ``@registry.stage("name", version="1", depends=("index",))`` on a
  module-level function (tests and notebooks use their own :class:`StageRegistry`, so
  they never leak stages into the global one).

Duplicate names and self-dependencies raise at registration; unknown dependency names
and cycles raise at registration of a table and at plan time (a decorator may name a
stage registered later in the same module). Importing this module costs only the
standard library and :mod:`radqc.pipelines.runner.stage`: stage modules keep torch and
friends inside their functions.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from radqc.pipelines.runner.stage import Resources, Stage, StageFunction

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "radqc.stages"
BUILTIN_PACKAGE = "radqc.pipelines.stages"


class StageRegistry:
    """An ordered set of stages with their dependency graph."""

    def __init__(self, stages: Iterable[Stage] = ()) -> None:
        self._stages: dict[str, Stage] = {}
        self.register_all(stages)

    # -- registration -------------------------------------------------------------------
    def register(self, stage: Stage) -> Stage:
        if not isinstance(stage, Stage):
            raise ValueError(f"expected a Stage, got {type(stage).__name__}")
        if stage.name in self._stages:
            raise ValueError(f"duplicate stage name {stage.name!r} (already registered)")
        self._stages[stage.name] = stage
        return stage

    def register_all(self, stages: Iterable[Stage]) -> None:
        """Register a table of stages, then check the whole graph (unknown names, cycles)."""
        added = []
        try:
            for stage in stages:
                added.append(self.register(stage))
            if added:
                self.validate()
        except ValueError:
            for stage in added:  # all or nothing: a bad table leaves the registry as it was
                self._stages.pop(stage.name, None)
            raise

    def stage(
        self,
        name: str,
        *,
        version: str,
        depends: Iterable[str] | str = (),
        resources: Resources | Mapping[str, Any] | None = None,
        reads: Iterable[str] | str = ("instances",),
        versions: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        description: str = "",
    ) -> Callable[[StageFunction], StageFunction]:
        """Decorator registering a module-level function; returns the function unchanged
        (so pickling it by reference, for worker processes and Ray, still works)."""

        def decorate(fn: StageFunction) -> StageFunction:
            self.register(
                Stage(
                    name=name,
                    version=version,
                    fn=fn,
                    depends=tuple([depends] if isinstance(depends, str) else depends),
                    resources=Resources.of(resources),
                    reads=tuple([reads] if isinstance(reads, str) else reads),
                    versions=versions or {},
                    description=description or (fn.__doc__ or "").strip().split("\n")[0],
                )
            )
            return fn

        return decorate

    # -- queries ------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._stages

    def __len__(self) -> int:
        return len(self._stages)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._stages.values())

    def names(self) -> list[str]:
        return list(self._stages)

    def get(self, name: str) -> Stage:
        try:
            return self._stages[name]
        except KeyError:
            raise ValueError(f"unknown stage {name!r}; registered: {', '.join(self._stages) or '(none)'}") from None

    # -- the graph ----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError on an unknown dependency name or a dependency cycle."""
        for stage in self._stages.values():
            for dep in stage.depends:
                if dep not in self._stages:
                    raise ValueError(f"stage {stage.name!r} depends on unknown stage {dep!r}")
        state: dict[str, int] = {}  # 1 visiting, 2 done
        path: list[str] = []

        def visit(name: str) -> None:
            state[name] = 1
            path.append(name)
            for dep in self._stages[name].depends:
                if state.get(dep) == 1:
                    cycle = path[path.index(dep) :] + [dep]
                    raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")
                if state.get(dep) is None:
                    visit(dep)
            path.pop()
            state[name] = 2

        for name in self._stages:
            if name not in state:
                visit(name)

    def plan(self, requested: Iterable[str] | None = None) -> list[Stage]:
        """The stages to run, dependencies first: the requested ones (all when None) plus
        everything they depend on, transitively. Ties keep registration order."""
        self.validate()
        wanted: set[str] = set()
        todo = list(self._stages) if requested is None else [self.get(n).name for n in requested]
        while todo:
            name = todo.pop()
            if name in wanted:
                continue
            wanted.add(name)
            todo.extend(self._stages[name].depends)
        order = {name: i for i, name in enumerate(self._stages)}
        indegree = {n: sum(1 for d in self._stages[n].depends if d in wanted) for n in wanted}
        ready = sorted((n for n, d in indegree.items() if d == 0), key=order.__getitem__)
        out: list[Stage] = []
        while ready:
            name = ready.pop(0)
            out.append(self._stages[name])
            for other in wanted:
                if name in self._stages[other].depends:
                    indegree[other] -= 1
                    if indegree[other] == 0:
                        ready.append(other)
            ready.sort(key=order.__getitem__)
        if len(out) != len(wanted):  # validate() makes this unreachable; keep the guard
            raise ValueError("dependency cycle among " + ", ".join(sorted(wanted - {s.name for s in out})))
        return out

    def dependants(self, name: str) -> set[str]:
        """Every stage that (transitively) depends on ``name``."""
        out: set[str] = set()
        frontier = {name}
        while frontier:
            frontier = {s.name for s in self._stages.values() if set(s.depends) & frontier} - out
            out |= frontier
        return out


_DEFAULT: StageRegistry | None = None
_DEFAULT_LOCK = threading.Lock()


def _builtin_stage_lists() -> list[tuple[str, list[Stage]]]:
    package = importlib.import_module(BUILTIN_PACKAGE)
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")
        stages = getattr(module, "STAGES", None)
        if stages:
            found.append((module.__name__, list(stages)))
    return found


def _plugin_stage_lists() -> list[tuple[str, list[Stage]]]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append((ep.value, list(ep.load())))
        except Exception as exc:  # a broken plug-in is reported and left out, never fatal
            log.error("cannot load stage plug-in %s (%s): %s", ep.name, ep.value, exc)
    return found


def default_registry(*, reload: bool = False) -> StageRegistry:
    """The product's stages: every ``STAGES`` table under ``radqc.pipelines.stages`` plus
    the ``radqc.stages`` entry points, validated as one graph."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or reload:
            registry = StageRegistry()
            for source, stages in _builtin_stage_lists() + _plugin_stage_lists():
                for stage in stages:
                    try:
                        registry.register(stage)
                    except ValueError as exc:
                        raise ValueError(f"{source}: {exc}") from exc
            registry.validate()
            _DEFAULT = registry
        return _DEFAULT
