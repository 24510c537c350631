"""The in-process runner: every selected exam through the planned stages, on one machine.

The coordinator (this module, main thread) is the only code that touches the catalogue.
For each exam it walks the plan in dependency order and decides, per stage:

* a dependency failed or was skipped → record ``skipped`` with the reason;
* same stage version, same rule-set/model versions, same input fingerprint as the latest
  succeeded run (and not ``--force``d) → ``unchanged``, nothing written;
* otherwise → build the stage's context (the exam plus its dependencies' results), write a
  ``running`` ledger row, and submit :func:`execute_stage` to a worker pool (threads, or
  processes for stages whose resources say ``process``); when it returns, the row becomes
  ``succeeded`` or ``failed`` with its manifest, and the exam's dependants become ready.

Exams run concurrently (a bounded window of them is loaded at a time, so memory does not
grow with the catalogue); within an exam, independent stages run concurrently too. Worker
slots follow each stage's ``resources.cpus``; ``gpu`` stages are limited to ``gpu_slots``
at once. A Ray runner replaces only the pools (see docs/pipeline-runner.md).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from radqc import __version__
from radqc.pipelines.runner import ledger
from radqc.pipelines.runner.execute import Outcome, RetryPolicy, execute_stage
from radqc.pipelines.runner.fingerprint import input_fingerprint
from radqc.pipelines.runner.registry import StageRegistry, default_registry
from radqc.pipelines.runner.stage import ExamContext, Stage, StoreRef
from radqc.workspace import Workspace

log = logging.getLogger(__name__)

SUCCEEDED, FAILED, SKIPPED, UNCHANGED, RUNNING = "succeeded", "failed", "skipped", "unchanged", "running"

ProgressFn = Callable[[int, int], None]

#: Plain tasks queued beyond the pool's width (at least ``workers``): keeps workers busy
#: while the coordinator writes the ledger, so one transaction records several results.
PREFETCH = 8


@dataclass
class RunSummary:
    """Counts of one ``radqc run``. ``runs`` = ledger rows this run wrote (succeeded + failed
    + skipped); ``unchanged`` = no-ops; ``runs + unchanged`` = exams × planned stages."""

    exams: int = 0
    stages_planned: list[str] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    per_stage: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    max_errors: int = 100

    @property
    def runs(self) -> int:
        return self.succeeded + self.failed + self.skipped

    def count(self, stage: str, status: str, exam_id: int | None = None, error: str | None = None) -> None:
        setattr(self, status, getattr(self, status) + 1)
        self.per_stage.setdefault(stage, Counter())[status] += 1
        if status in (FAILED, SKIPPED) and error and len(self.errors) < self.max_errors:
            self.errors.append({"exam_id": exam_id, "stage": stage, "status": status, "error": error})

    def to_dict(self) -> dict[str, Any]:
        """The public JSON summary of ``radqc run --json`` (keys are a contract)."""
        return {
            "exams": self.exams,
            "runs": self.runs,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "seconds": round(self.seconds, 3),
            "stages": {
                name: {k: self.per_stage.get(name, Counter())[k] for k in (SUCCEEDED, FAILED, SKIPPED, UNCHANGED)}
                for name in self.stages_planned
            },
            "errors": self.errors,
        }


@dataclass
class _Done:
    status: str
    version: str
    result_sha256: str | None
    ledger_id: int | None
    result: Any = None
    has_result: bool = False


@dataclass
class _ExamState:
    loaded: ledger.LoadedExam
    priors: dict[str, ledger.Prior]
    done: dict[str, _Done] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)

    @property
    def exam_id(self) -> int:
        return self.loaded.ctx.exam_id


@dataclass
class _Task:
    state: _ExamState
    stage: Stage
    ctx: ExamContext
    fingerprint: str
    dependencies: dict[str, dict[str, Any]]
    forced: bool
    queued_at: datetime
    row: ledger.NewRow | None = None


class LocalRunner:
    """Runs stages over exams with a thread pool (and a process pool when a stage asks)."""

    def __init__(
        self,
        workspace: Workspace,
        registry: StageRegistry | None = None,
        *,
        workers: int | None = None,
        retry: RetryPolicy | None = None,
        gpu_slots: int = 1,
        chunk_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.ws = workspace
        self.registry = registry if registry is not None else default_registry()
        self.workers = max(1, workers if workers is not None else workspace.settings.workers)
        self.retry = retry or RetryPolicy()
        self.gpu_slots = max(1, gpu_slots)
        self.chunk_size = chunk_size or max(16, self.workers * 4)
        self.progress = progress

    # -- public ---------------------------------------------------------------------------
    def run(
        self, stages: Sequence[str] | None = None, exams: Sequence[str] | None = None, *, force: bool = False
    ) -> RunSummary:
        """Run ``stages`` (all when None; dependencies pulled in) over ``exams`` (all when None).

        ``force`` re-runs the requested stages regardless of fingerprints; dependencies that
        were only pulled in still run only when pending.
        """
        started = time.perf_counter()
        plan = self.registry.plan(stages)
        requested = {s.name for s in plan} if stages is None else {self.registry.get(n).name for n in stages}
        forced = requested if force else set()
        versions = {s.name: s.resolved_versions() for s in plan}
        with self.ws.sessions() as s:
            exam_ids = ledger.resolve_exams(s, list(exams) if exams is not None else None)
        summary = RunSummary(exams=len(exam_ids), stages_planned=[s.name for s in plan])
        if not plan or not exam_ids:
            summary.seconds = time.perf_counter() - started
            return summary
        _Scheduler(self, plan, forced, versions, exam_ids, summary).run()
        summary.seconds = time.perf_counter() - started
        return summary


def run_pipeline(
    workspace: Workspace,
    stages: Sequence[str] | None = None,
    exams: Sequence[str] | None = None,
    *,
    registry: StageRegistry | None = None,
    force: bool = False,
    workers: int | None = None,
    retry: RetryPolicy | None = None,
    progress: ProgressFn | None = None,
) -> RunSummary:
    """One call for the CLI and services: run stages over exams in-process."""
    runner = LocalRunner(workspace, registry, workers=workers, retry=retry, progress=progress)
    return runner.run(stages, exams, force=force)


class _Scheduler:
    def __init__(
        self, runner: LocalRunner, plan: list[Stage], forced: set[str], versions: dict[str, dict[str, str]],
        exam_ids: list[int], summary: RunSummary,
    ) -> None:
        self.r = runner
        self.plan = plan
        self.forced = forced
        self.versions = versions
        self.summary = summary
        self.store = StoreRef.for_store(runner.ws.store)
        self.reads = sorted({k for s in plan for k in s.reads})
        self.pending_ids = deque(exam_ids)
        self.total = len(exam_ids) * len(plan)
        self.finished = 0
        self.active: dict[int, _ExamState] = {}
        self.ready: deque[_Task] = deque()
        self.inflight: dict[Future[Outcome], _Task] = {}
        self.used_slots = 0
        self.used_gpus = 0
        self.heavy_inflight = 0
        self.processes_broken = False
        self.prefetch = max(runner.workers, PREFETCH)
        self.batch = ledger.WriteBatch()
        self.threads: ThreadPoolExecutor | None = None
        self.processes: ProcessPoolExecutor | None = None
        self.base_manifest = {"code_version": __version__, "runner": "local"}

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while True:
                self._refill()
                submit = self._take_ready()
                if submit:
                    for task in submit:
                        task.row = ledger.NewRow(
                            exam_id=task.state.exam_id, stage=task.stage.name, version=task.stage.version,
                            status=RUNNING, started_at=datetime.now(UTC), attempts=0,
                            manifest=self._manifest(task),
                        )
                        self.batch.inserts.append(task.row)
                self._flush()
                for task in submit:
                    self._submit(task)
                if not self.inflight:
                    if not self.ready and not self.pending_ids:
                        break
                    continue
                done, _ = wait(list(self.inflight), return_when=FIRST_COMPLETED)
                for future in done:
                    self._complete(self.inflight.pop(future), future)
                self._retire()
            self._flush()
        finally:
            for pool in (self.threads, self.processes):
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)

    def _flush(self) -> None:
        if self.batch:
            ledger.flush(self.r.ws.sessions, self.batch)
            self.batch = ledger.WriteBatch()

    def _tick(self, n: int = 1) -> None:
        self.finished += n
        if self.r.progress:
            self.r.progress(self.finished, self.total)

    # -- loading exams ----------------------------------------------------------------------
    def _refill(self) -> None:
        window = self.r.chunk_size * 2
        while self.pending_ids and len(self.active) < window and len(self.ready) < window:
            chunk = [self.pending_ids.popleft() for _ in range(min(self.r.chunk_size, len(self.pending_ids)))]
            names = [s.name for s in self.plan]

            def load(
                chunk: list[int] = chunk, names: list[str] = names
            ) -> tuple[dict[int, ledger.LoadedExam], dict[tuple[int, str], ledger.Prior]]:
                with self.r.ws.sessions() as s:
                    return ledger.load_exams(s, chunk, self.store, self.reads), ledger.load_priors(s, chunk, names)

            loaded, priors = ledger.with_db_retry(load)
            for exam_id in chunk:
                if exam_id not in loaded:  # deleted between selection and loading: nothing to run
                    self._tick(len(self.plan))
                    continue
                state = _ExamState(loaded[exam_id], {st: p for (e, st), p in priors.items() if e == exam_id})
                self.active[exam_id] = state
                self._advance(state)
            self._retire()

    def _retire(self) -> None:
        for exam_id in [e for e, st in self.active.items() if len(st.done) == len(self.plan)]:
            del self.active[exam_id]

    # -- deciding ---------------------------------------------------------------------------
    def _advance(self, state: _ExamState) -> None:
        """Resolve every stage of this exam whose dependencies are resolved (plan order is
        topological, so one pass settles chains of skips and no-ops)."""
        for stage in self.plan:
            name = stage.name
            if name in state.done or name in state.started:
                continue
            if any(d not in state.done for d in stage.depends):
                continue
            blocked = [d for d in stage.depends if state.done[d].status in (FAILED, SKIPPED)]
            if blocked:
                dep = blocked[0]
                verb = "failed" if state.done[dep].status == FAILED else "was skipped"
                zh = "失败" if state.done[dep].status == FAILED else "被跳过"
                reason = f"dependency {dep} {verb} / 依赖阶段 {dep} {zh}"
                now = datetime.now(UTC)
                self.batch.inserts.append(
                    ledger.NewRow(
                        exam_id=state.exam_id, stage=name, version=stage.version, status=SKIPPED, started_at=now,
                        finished_at=now, attempts=0, error=reason,
                        manifest={**self.base_manifest, "stage_version": stage.version, "versions": self.versions[name],
                                  "blocked_by": blocked},
                    )
                )
                self._finish(state, stage, _Done(SKIPPED, stage.version, None, None), reason)
                continue
            deps = {d: state.done[d].result_sha256 or "" for d in stage.depends}
            fingerprint = input_fingerprint(state.loaded.parts, stage.reads, deps)
            prior = state.priors.get(name)
            if (
                name not in self.forced
                and prior is not None
                and prior.version == stage.version
                and prior.versions == self.versions[name]
                and prior.fingerprint == fingerprint
            ):
                self._finish(state, stage, _Done(UNCHANGED, prior.version, prior.result_sha256, prior.ledger_id))
                continue
            inputs = self._inputs(state, stage.depends)
            state.started.add(name)
            self.ready.append(
                _Task(
                    state=state, stage=stage, ctx=replace(state.loaded.ctx, inputs=inputs), fingerprint=fingerprint,
                    dependencies={
                        d: {"version": state.done[d].version, "result_sha256": state.done[d].result_sha256,
                            "ledger_id": state.done[d].ledger_id}
                        for d in stage.depends
                    },
                    forced=name in self.forced, queued_at=datetime.now(UTC),
                )
            )

    def _inputs(self, state: _ExamState, depends: Iterable[str]) -> dict[str, Any]:
        missing = [state.done[d].ledger_id for d in depends if not state.done[d].has_result]
        if missing:
            def fetch() -> dict[int, Any]:
                with self.r.ws.sessions() as s:
                    return ledger.fetch_results(s, [i for i in missing if i is not None])

            results = ledger.with_db_retry(fetch)
            for d in depends:
                done = state.done[d]
                if not done.has_result:
                    done.result, done.has_result = results.get(done.ledger_id), True
        return {d: state.done[d].result for d in depends}

    def _finish(self, state: _ExamState, stage: Stage, done: _Done, error: str | None = None) -> None:
        state.done[stage.name] = done
        self.summary.count(stage.name, done.status, state.exam_id, error)
        status = SUCCEEDED if done.status == UNCHANGED else done.status
        if state.loaded.status.get(stage.name) != status:
            state.loaded.status[stage.name] = status
            self.batch.set_status(state.exam_id, stage.name, status)
        self._tick()

    # -- executing --------------------------------------------------------------------------
    def _take_ready(self) -> list[_Task]:
        """Admit ready tasks, first come first served, while their slots fit.

        Plain tasks (one slot, a thread, no GPU) may be queued up to ``PREFETCH`` (at least
        ``workers``) beyond the pool's width, so the workers stay busy while this thread
        writes the ledger and each ledger transaction carries several results; a task needing more (several slots, a
        process, a GPU) is admitted only when it fits the real width, and nothing is queued
        ahead while such a task runs, so declared resources are honoured.
        """
        out: list[_Task] = []
        while self.ready:
            task = self.ready[0]
            res = task.stage.resources
            slots = min(res.cpus, self.r.workers)
            plain = slots == 1 and not res.process and not res.gpu
            limit = self.r.workers + self.prefetch if plain and not self.heavy_inflight else self.r.workers
            if self.used_slots + slots > limit:
                break
            if res.gpu and self.used_gpus >= self.r.gpu_slots:
                # wait for the GPU without blocking CPU work behind it
                later = self.ready.popleft()
                rest = self._take_ready()
                self.ready.appendleft(later)
                return out + rest
            self.ready.popleft()
            self.used_slots += slots
            self.used_gpus += 1 if res.gpu else 0
            self.heavy_inflight += 0 if plain else 1
            out.append(task)
        return out

    def _pool(self, stage: Stage) -> tuple[Executor, str]:
        if stage.resources.process:
            if self.processes is not None and self.processes_broken:
                # a worker process died (killed, out of memory, a crash in native code): the
                # pool is unusable; its in-flight tasks were recorded as failed, start afresh
                self.processes.shutdown(wait=False, cancel_futures=True)
                self.processes, self.processes_broken = None, False
            if self.processes is None:
                # forkserver, not fork: forking a coordinator that has worker threads and
                # open database connections can deadlock or share sockets with the child.
                self.processes = ProcessPoolExecutor(
                    max_workers=self.r.workers, mp_context=multiprocessing.get_context("forkserver")
                )
            return self.processes, "process"
        if self.threads is None:
            self.threads = ThreadPoolExecutor(max_workers=self.r.workers, thread_name_prefix="radqc-stage")
        return self.threads, "thread"

    def _submit(self, task: _Task) -> None:
        pool, kind = self._pool(task.stage)
        # A process receives the stage by pickling: drop ``versions`` (possibly a closure;
        # the coordinator already resolved it) so only the function travels, by reference.
        stage = replace(task.stage, versions={}) if kind == "process" else task.stage
        future = pool.submit(execute_stage, stage, task.ctx, self.r.retry, kind)
        self.inflight[future] = task

    def _complete(self, task: _Task, future: Future[Outcome]) -> None:
        res = task.stage.resources
        self.used_slots -= min(res.cpus, self.r.workers)
        self.used_gpus -= 1 if res.gpu else 0
        self.heavy_inflight -= 0 if (min(res.cpus, self.r.workers) == 1 and not res.process and not res.gpu) else 1
        stage, state = task.stage, task.state
        try:
            outcome = future.result()
        except Exception as exc:  # the worker itself died (a crashed process, an unpicklable stage)
            if isinstance(exc, BrokenProcessPool):
                self.processes_broken = True
            now = datetime.now(UTC)
            outcome = Outcome(
                exam_id=state.exam_id, stage=stage.name, status=FAILED, attempts=1, started_at=task.queued_at,
                finished_at=now, error=f"worker error / 执行进程异常: {type(exc).__name__}: {exc}",
            )
        manifest = self._manifest(task)
        manifest.update(outcome.manifest)
        manifest["result_sha256"] = outcome.result_sha256
        manifest["timings"] = {
            "queued_at": task.queued_at.isoformat(),
            "started_at": outcome.started_at.isoformat(),
            "finished_at": outcome.finished_at.isoformat(),
            "queue_seconds": round((outcome.started_at - task.queued_at).total_seconds(), 6),
            "run_seconds": outcome.manifest.get("run_seconds"),
        }
        manifest.pop("run_seconds", None)
        assert task.row is not None and task.row.ledger_id is not None
        self.batch.finishes.append(
            ledger.Finish(
                ledger_id=task.row.ledger_id, status=outcome.status, attempts=outcome.attempts,
                started_at=outcome.started_at, finished_at=outcome.finished_at, error=outcome.error,
                manifest=manifest, result=outcome.result if outcome.status == SUCCEEDED else {},
                project=stage.project, exam_id=task.state.exam_id,
            )
        )
        if outcome.status == SUCCEEDED:
            done = _Done(SUCCEEDED, stage.version, outcome.result_sha256, task.row.ledger_id, outcome.result, True)
        else:
            done = _Done(FAILED, stage.version, None, task.row.ledger_id)
            log.warning("stage %s failed on exam %s: %s", stage.name, state.exam_id, outcome.error)
        state.started.discard(stage.name)
        self._finish(state, stage, done, outcome.error)
        self._advance(state)

    def _manifest(self, task: _Task) -> dict[str, Any]:
        stage = task.stage
        return {
            **self.base_manifest,
            "stage_version": stage.version,
            "versions": self.versions[stage.name],
            "resources": stage.resources.to_dict(),
            "input_fingerprint": task.fingerprint,
            "dependencies": task.dependencies,
            "forced": task.forced,
        }
