"""The stage registry and the in-process runner: order, no-ops, versions, retries, failures.

Every test builds its own :class:`StageRegistry` (never the global one), on real catalogues
(SQLite and PostgreSQL) filled by the real ingest from generated DICOM series.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from radqc.catalogue import models as m
from radqc.pipelines.ingest.folder import ingest_path
from radqc.pipelines.runner.execute import RetryPolicy
from radqc.pipelines.runner.local import LocalRunner
from radqc.pipelines.runner.registry import StageRegistry
from radqc.pipelines.runner.stage import ExamContext, Resources, Stage, TransientStageError
from tests.dicom_factory import ct_series

NO_WAIT = RetryPolicy(attempts=3, backoff_s=0.0)


# -- stage functions (module level, so a worker process can receive them by reference) ----------


def count_instances(ctx: ExamContext) -> dict:
    """Instances per exam (newest versions)."""
    return {"n": sum(len(s.instances) for s in ctx.series), "uids": sorted(i.sop_instance_uid for _, i in ctx.instances())}


def double_count(ctx: ExamContext) -> dict:
    return {"n2": ctx.input("count")["n"] * 2}


def constant(ctx: ExamContext) -> dict:
    return {"ok": True}


def hash_bytes_in_process(ctx: ExamContext) -> dict:
    """Reads every instance's bytes through the store reference, in a worker process."""
    return {
        "pid": os.getpid(),
        "hashes": {i.sop_instance_uid: hashlib.sha256(ctx.read(i)).hexdigest() for _, i in ctx.instances()},
    }


def dies_on_marked_exam(ctx: ExamContext) -> dict:
    """Kills its worker process for the exam whose accession ends in 1 (a native crash, OOM)."""
    if (ctx.accession_number or "").endswith("1"):
        os._exit(3)
    return {"pid": os.getpid()}


# -- fixtures ---------------------------------------------------------------------------------


def _ingest_exams(workspace, tmp_path: Path, n_exams: int = 3, n_slices: int = 3) -> list[int]:
    for k in range(n_exams):
        ct_series(tmp_path / "src" / f"exam{k}", n_slices=n_slices, size=8, accession=f"ACC{k:04d}",
                  patient_id=f"PID{k:04d}", seed=k)
    summary = ingest_path(workspace, tmp_path / "src", workers=1)
    assert summary.ingested == n_exams * n_slices
    with workspace.sessions() as s:
        return list(s.scalars(select(m.Exam.id).order_by(m.Exam.id)))


def _registry(*stages: Stage) -> StageRegistry:
    reg = StageRegistry()
    reg.register_all(stages)
    return reg


def _ledger(workspace, exam_id: int | None = None, stage: str | None = None) -> list[m.LedgerEntry]:
    with workspace.sessions() as s:
        q = select(m.LedgerEntry).order_by(m.LedgerEntry.id)
        if exam_id is not None:
            q = q.where(m.LedgerEntry.exam_id == exam_id)
        if stage is not None:
            q = q.where(m.LedgerEntry.stage == stage)
        return list(s.scalars(q))


def _exam_status(workspace, exam_id: int) -> dict:
    with workspace.sessions() as s:
        return s.get(m.Exam, exam_id).status


# -- the registry (no catalogue needed) ---------------------------------------------------------


def test_plan_is_dependency_ordered_and_pulls_in_dependencies():
    reg = StageRegistry()
    # registered dependants first: the plan must still put dependencies first
    reg.register(Stage("report", "1", constant, depends=("qc", "anatomy")))
    reg.register(Stage("qc", "1", constant, depends=("index",)))
    reg.register(Stage("anatomy", "1", constant, depends=("index",)))
    reg.register(Stage("index", "1", constant))
    reg.register(Stage("unrelated", "1", constant))
    names = [s.name for s in reg.plan()]
    assert set(names) == {"report", "qc", "anatomy", "index", "unrelated"}
    for stage in reg:
        for dep in stage.depends:
            assert names.index(dep) < names.index(stage.name)
    assert [s.name for s in reg.plan(["qc"])] == ["index", "qc"]
    assert [s.name for s in reg.plan(["report"])] == ["index", "qc", "anatomy", "report"]
    assert reg.dependants("index") == {"qc", "anatomy", "report"}


def test_registry_rejects_duplicates_cycles_and_unknown_dependencies():
    reg = StageRegistry([Stage("a", "1", constant)])
    with pytest.raises(ValueError, match="duplicate"):
        reg.register(Stage("a", "2", constant))
    with pytest.raises(ValueError, match="itself"):
        Stage("b", "1", constant, depends=("b",))
    with pytest.raises(ValueError, match="must match"):
        Stage("Bad Name", "1", constant)
    with pytest.raises(ValueError, match="version"):
        Stage("b", "", constant)
    with pytest.raises(ValueError, match="unknown resource"):
        Stage("b", "1", constant, resources={"gpus": 2})
    # a table with a cycle is refused as a whole, and leaves the registry as it was
    with pytest.raises(ValueError, match=r"cycle: (x -> z -> y -> x|z -> y -> x -> z|y -> x -> z -> y)"):
        reg.register_all([Stage("x", "1", constant, depends=("z",)), Stage("y", "1", constant, depends=("x",)),
                          Stage("z", "1", constant, depends=("y",))])
    assert reg.names() == ["a"]
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        reg.register_all([Stage("c", "1", constant, depends=("nope",))])
    assert reg.names() == ["a"]
    with pytest.raises(ValueError, match="unknown stage 'missing'"):
        reg.plan(["missing"])
    # the decorator allows forward references; the plan catches what is still unknown
    reg.stage("d", version="1", depends="later")(constant)
    with pytest.raises(ValueError, match="depends on unknown stage 'later'"):
        reg.plan()


def test_decorator_returns_the_function_so_it_pickles_by_reference():
    reg = StageRegistry()
    fn = reg.stage("count", version="1", resources={"process": True, "cpus": 1})(count_instances)
    assert fn is count_instances
    stage = reg.get("count")
    assert stage.resources.process and stage.description.startswith("Instances per exam")
    assert pickle.loads(pickle.dumps(stage)).fn is count_instances


def test_registry_and_builtin_stages_import_without_heavy_libraries():
    code = (
        "import sys\n"
        "from radqc.pipelines.runner.registry import default_registry\n"
        "reg = default_registry()\n"
        "assert 'index' in reg, reg.names()\n"
        "heavy = sorted(m for m in ('torch', 'monai', 'numpy', 'sqlalchemy', 'pydicom', 'ray') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_exam_context_survives_json_and_pickle(workspace, tmp_path):
    _ingest_exams(workspace, tmp_path, n_exams=1)
    from radqc.pipelines.runner import ledger
    from radqc.pipelines.runner.stage import StoreRef

    with workspace.sessions() as s:
        exam_id = s.scalar(select(m.Exam.id))
        loaded = ledger.load_exams(s, [exam_id], StoreRef.for_store(workspace.store), ["instances", "records", "charges"])
    ctx = loaded[exam_id].ctx
    assert ExamContext.from_dict(json.loads(json.dumps(ctx.to_dict()))) == ctx
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    series, instance = next(ctx.instances())
    assert hashlib.sha256(ctx.read(instance)).hexdigest() == instance.content_hash
    assert ctx.dataset(instance, stop_before_pixels=True).SOPInstanceUID == instance.sop_instance_uid


# -- the runner ------------------------------------------------------------------------------------


def test_stages_run_in_dependency_order_and_every_run_is_in_the_ledger(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path)
    seen_running: list[str] = []
    lock = threading.Lock()

    def checks_own_running_row(ctx: ExamContext) -> dict:
        # test-only peek: while a stage runs, the ledger already says "running" for it
        with workspace.sessions() as s:
            status = s.scalar(
                select(m.LedgerEntry.status).where(m.LedgerEntry.exam_id == ctx.exam_id, m.LedgerEntry.stage == "peek")
            )
        with lock:
            seen_running.append(status)
        return {"count_seen": ctx.input("count")["n"]}

    reg = _registry(
        Stage("double", "1", double_count, depends=("count",)),
        Stage("count", "1", count_instances),
        Stage("peek", "1", checks_own_running_row, depends=("count",)),
    )
    summary = LocalRunner(workspace, reg, workers=2, retry=NO_WAIT).run()
    data = summary.to_dict()
    assert data["exams"] == 3 and data["runs"] == 9 and data["succeeded"] == 9
    assert data["failed"] == data["skipped"] == data["unchanged"] == 0
    assert data["stages"]["count"] == {"succeeded": 3, "failed": 0, "skipped": 0, "unchanged": 0}
    assert seen_running == ["running"] * 3
    for exam_id in exam_ids:
        rows = {r.stage: r for r in _ledger(workspace, exam_id)}
        assert set(rows) == {"count", "double", "peek"}
        count, double = rows["count"], rows["double"]
        assert count.status == double.status == "succeeded"
        assert count.result["n"] == 3 and double.result == {"n2": 6}
        assert double.started_at >= count.finished_at  # ran after its dependency finished
        assert count.version == "1" and count.attempts == 1 and count.error is None
        man = double.manifest
        assert man["stage_version"] == "1" and man["code_version"]
        assert len(man["input_fingerprint"]) == 64 and len(man["result_sha256"]) == 64
        assert man["dependencies"]["count"]["ledger_id"] == count.id
        assert man["device"]["executor"] == "thread" and man["device"]["host"]
        assert man["timings"]["run_seconds"] >= 0 and man["timings"]["finished_at"]
        assert _exam_status(workspace, exam_id) == {"count": "succeeded", "double": "succeeded", "peek": "succeeded"}
    assert workspace.status()["ledger_entries"] == 9


def test_asking_for_a_dependant_pulls_in_its_pending_dependencies(workspace, tmp_path):
    _ingest_exams(workspace, tmp_path, n_exams=2)
    reg = _registry(Stage("count", "1", count_instances), Stage("double", "1", double_count, depends=("count",)),
                    Stage("other", "1", constant))
    first = LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run(["double"])
    assert first.to_dict()["stages"].keys() == {"count", "double"}
    assert first.succeeded == 4
    assert not _ledger(workspace, stage="other")
    # the dependency is done now: asking again runs nothing, it is all unchanged
    again = LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run(["double"])
    assert again.runs == 0 and again.unchanged == 4


def test_rerun_is_a_no_op_and_a_new_version_reprocesses(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path)
    reg = _registry(Stage("count", "1", count_instances), Stage("double", "1", double_count, depends=("count",)))
    LocalRunner(workspace, reg, workers=2, retry=NO_WAIT).run()
    rows_before = len(_ledger(workspace))
    again = LocalRunner(workspace, reg, workers=2, retry=NO_WAIT).run()
    assert (again.runs, again.unchanged) == (0, 6)
    assert len(_ledger(workspace)) == rows_before

    # count v2 gives the same result: count re-runs, double (same input) stays unchanged
    reg2 = _registry(Stage("count", "2", count_instances), Stage("double", "1", double_count, depends=("count",)))
    bumped = LocalRunner(workspace, reg2, workers=2, retry=NO_WAIT).run()
    assert bumped.to_dict()["stages"]["count"]["succeeded"] == 3
    assert bumped.to_dict()["stages"]["double"]["unchanged"] == 3
    assert {r.version for r in _ledger(workspace, stage="count")} == {"1", "2"}

    # a new rule-set version re-processes too, and lands in the manifest
    reg3 = _registry(Stage("count", "2", count_instances, versions={"rules": "2026.1"}),
                     Stage("double", "1", double_count, depends=("count",)))
    LocalRunner(workspace, reg3, workers=2, retry=NO_WAIT).run(["count"])
    latest = _ledger(workspace, exam_ids[0], "count")[-1]
    assert latest.manifest["versions"] == {"rules": "2026.1"}

    # --force re-runs the requested stage regardless
    forced = LocalRunner(workspace, reg3, workers=2, retry=NO_WAIT).run(["double"], force=True)
    assert forced.to_dict()["stages"] == {
        "count": {"succeeded": 0, "failed": 0, "skipped": 0, "unchanged": 3},
        "double": {"succeeded": 3, "failed": 0, "skipped": 0, "unchanged": 0},
    }
    assert _ledger(workspace, exam_ids[0], "double")[-1].manifest["forced"] is True


def test_dependency_with_a_changed_result_reprocesses_dependants(workspace, tmp_path):
    _ingest_exams(workspace, tmp_path, n_exams=2)

    def count_v2(ctx: ExamContext) -> dict:
        return {"n": 10 * sum(len(s.instances) for s in ctx.series)}

    reg = _registry(Stage("count", "1", count_instances), Stage("double", "1", double_count, depends=("count",)))
    LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run()
    reg2 = _registry(Stage("count", "2", count_v2), Stage("double", "1", double_count, depends=("count",)))
    summary = LocalRunner(workspace, reg2, workers=1, retry=NO_WAIT).run()
    assert summary.succeeded == 4 and summary.unchanged == 0
    assert [r.result for r in _ledger(workspace, stage="double")][-2:] == [{"n2": 60}, {"n2": 60}]


def test_new_instances_make_an_exam_pending_again(workspace, tmp_path, pydicom_test_files):
    exam_ids = _ingest_exams(workspace, tmp_path, n_exams=2)
    reg = _registry(Stage("count", "1", count_instances))
    LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run()
    with workspace.sessions() as s:
        exam = s.get(m.Exam, exam_ids[0])
        study_uid = exam.study_instance_uid
        first = s.scalars(
            select(m.Instance).join(m.Series).where(m.Series.exam_id == exam.id).order_by(m.Instance.id)
        ).first()
        first_bytes = workspace.store.get(first.storage_key)
    # a new slice arrives for exam 0
    ct_series(tmp_path / "late", n_slices=1, size=8, study_uid=study_uid, accession="ACC0000", patient_id="PID0000")
    ingest_path(workspace, tmp_path / "late", workers=1)
    summary = LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run()
    assert (summary.succeeded, summary.unchanged) == (1, 1)
    assert _ledger(workspace, exam_ids[0], "count")[-1].result["n"] == 4

    # a re-sent instance with new bytes (same SOP UID: a new version) makes it pending again,
    # and only the newest version is counted
    ds = pydicom.dcmread(__import__("io").BytesIO(first_bytes))
    ds.SeriesDescription = "corrected"
    (tmp_path / "resend").mkdir()
    ds.save_as(tmp_path / "resend" / "1.dcm", enforce_file_format=True)
    assert ingest_path(workspace, tmp_path / "resend", workers=1).new_versions == 1
    summary = LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run()
    assert (summary.succeeded, summary.unchanged) == (1, 1)
    assert _ledger(workspace, exam_ids[0], "count")[-1].result["n"] == 4


def test_transient_failures_are_retried_and_attempts_recorded(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path, n_exams=2)
    calls: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(ctx: ExamContext) -> dict:
        with lock:
            calls[ctx.exam_id] = calls.get(ctx.exam_id, 0) + 1
            n = calls[ctx.exam_id]
        if ctx.exam_id == exam_ids[0] and n == 1:
            raise TransientStageError("model server busy")
        if ctx.exam_id == exam_ids[0] and n == 2:
            raise OSError("store timed out")
        return {"calls": n}

    def always_busy(ctx: ExamContext) -> dict:
        raise TimeoutError("still busy")

    reg = _registry(Stage("flaky", "1", flaky), Stage("busy", "1", always_busy))
    summary = LocalRunner(workspace, reg, workers=2, retry=NO_WAIT).run()
    assert summary.to_dict()["stages"]["flaky"]["succeeded"] == 2
    row = _ledger(workspace, exam_ids[0], "flaky")[-1]
    assert row.status == "succeeded" and row.attempts == 3 and row.result == {"calls": 3}
    log = row.manifest["attempt_log"]
    assert [a.get("error", "").split(":")[0] for a in log] == ["TransientStageError", "OSError", ""]
    assert _ledger(workspace, exam_ids[1], "flaky")[-1].attempts == 1
    busy = _ledger(workspace, exam_ids[0], "busy")[-1]
    assert busy.status == "failed" and busy.attempts == 3
    assert "after 3 attempts" in busy.error and "TimeoutError: still busy" in busy.error


def test_permanent_failure_is_recorded_dependants_skipped_and_other_exams_continue(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path)
    bad = exam_ids[1]

    def picky(ctx: ExamContext) -> dict:
        if ctx.exam_id == bad:
            raise ValueError("slice thickness tag unreadable")
        return {"fine": True}

    reg = _registry(
        Stage("count", "1", count_instances),
        Stage("picky", "1", picky, depends=("count",)),
        Stage("after", "1", constant, depends=("picky",)),
        Stage("last", "1", constant, depends=("after",)),
        Stage("sibling", "1", constant, depends=("count",)),
    )
    summary = LocalRunner(workspace, reg, workers=2, retry=NO_WAIT).run()
    data = summary.to_dict()
    assert (data["failed"], data["skipped"], data["succeeded"]) == (1, 2, 12)
    rows = {r.stage: r for r in _ledger(workspace, bad)}
    assert rows["picky"].status == "failed" and rows["picky"].attempts == 1  # permanent: no retry
    assert rows["picky"].error == "ValueError: slice thickness tag unreadable"
    assert "Traceback" in rows["picky"].manifest["traceback"]
    assert rows["after"].status == "skipped" and "dependency picky failed" in rows["after"].error
    assert rows["last"].status == "skipped" and "dependency after was skipped" in rows["last"].error
    assert rows["sibling"].status == "succeeded"
    assert _exam_status(workspace, bad) == {
        "count": "succeeded", "picky": "failed", "after": "skipped", "last": "skipped", "sibling": "succeeded"
    }
    for good in (exam_ids[0], exam_ids[2]):
        assert {r.status for r in _ledger(workspace, good)} == {"succeeded"}
    assert {e["stage"] for e in data["errors"]} == {"picky", "after", "last"}
    # the failed exam stays pending: the next run tries it again, the others are no-ops
    again = LocalRunner(workspace, reg, workers=2, retry=NO_WAIT).run()
    assert (again.failed, again.skipped, again.unchanged) == (1, 2, 12)


def test_unserialisable_result_is_a_clear_failure(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path, n_exams=1)

    def returns_nan(ctx: ExamContext) -> dict:
        return {"noise": float("nan")}

    def returns_numpy(ctx: ExamContext) -> dict:
        import numpy as np

        return {"mean": np.float32(1.5), "counts": np.arange(3), "n": np.int64(7)}

    reg = _registry(Stage("nan", "1", returns_nan), Stage("np", "1", returns_numpy))
    LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run()
    row = _ledger(workspace, exam_ids[0], "nan")[-1]
    assert row.status == "failed" and "not JSON-serialisable" in row.error
    assert _ledger(workspace, exam_ids[0], "np")[-1].result == {"mean": 1.5, "counts": [0, 1, 2], "n": 7}


def test_a_process_stage_runs_in_a_worker_process_and_reads_bytes(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path, n_exams=2)
    reg = _registry(Stage("hash", "1", hash_bytes_in_process, resources=Resources(process=True),
                          versions=lambda: {"model": "none"}))
    summary = LocalRunner(workspace, reg, workers=2, retry=NO_WAIT).run()
    assert summary.succeeded == 2
    with workspace.sessions() as s:
        for exam_id in exam_ids:
            expected = {
                uid: digest
                for uid, digest in s.execute(
                    select(m.Instance.sop_instance_uid, m.Instance.content_hash).join(m.Series)
                    .where(m.Series.exam_id == exam_id)
                )
            }
            row = _ledger(workspace, exam_id, "hash")[-1]
            assert row.result["hashes"] == expected
            assert row.result["pid"] != os.getpid()
            assert row.manifest["device"]["executor"] == "process"
            assert row.manifest["versions"] == {"model": "none"}


def test_a_dead_worker_process_fails_its_exam_and_the_run_goes_on(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path, n_exams=3)
    reg = _registry(Stage("fragile", "1", dies_on_marked_exam, resources=Resources(process=True)),
                    Stage("after", "1", constant, depends=("fragile",)))
    summary = LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run()
    assert (summary.succeeded, summary.failed, summary.skipped) == (4, 1, 1)
    dead = _ledger(workspace, exam_ids[1], "fragile")[-1]
    assert dead.status == "failed" and "BrokenProcessPool" in dead.error
    assert _ledger(workspace, exam_ids[1], "after")[-1].status == "skipped"
    for exam_id in (exam_ids[0], exam_ids[2]):
        assert _ledger(workspace, exam_id, "fragile")[-1].status == "succeeded"


def test_selecting_exams_by_id_uid_or_accession(workspace, tmp_path):
    exam_ids = _ingest_exams(workspace, tmp_path)
    with workspace.sessions() as s:
        uid = s.get(m.Exam, exam_ids[1]).study_instance_uid
    reg = _registry(Stage("count", "1", count_instances))
    summary = LocalRunner(workspace, reg, workers=1, retry=NO_WAIT).run(exams=[str(exam_ids[0]), uid, "ACC0002"])
    assert summary.exams == 3 and summary.succeeded == 3
    with pytest.raises(ValueError, match="unknown exam"):
        LocalRunner(workspace, reg, workers=1).run(exams=["no-such-exam"])
    one = LocalRunner(workspace, reg, workers=1).run(exams=[str(exam_ids[0])], force=True)
    assert (one.exams, one.succeeded) == (1, 1)


def test_cli_run_json_and_status(workspace, tmp_path):
    from typer.testing import CliRunner

    from radqc.cli.main import app

    exam_ids = _ingest_exams(workspace, tmp_path)
    cli = CliRunner()
    result = cli.invoke(app, ["run", "--json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"exams", "runs", "succeeded", "failed", "skipped", "unchanged", "seconds", "stages"} <= data.keys()
    assert data["exams"] == 3 and data["succeeded"] == data["runs"] == 3 * len(data["stages"])
    assert data["stages"]["index"]["succeeded"] == 3
    again = json.loads(cli.invoke(app, ["run", "--json", "--stages", "index", "--exams", str(exam_ids[0])]).stdout)
    assert (again["exams"], again["runs"], again["unchanged"]) == (1, 0, 1)
    forced = json.loads(cli.invoke(app, ["run", "--json", "--stages", "index", "--all", "--force"]).stdout)
    assert forced["stages"]["index"]["succeeded"] == 3
    status = json.loads(cli.invoke(app, ["status", "--json"]).stdout)
    with workspace.sessions() as s:
        assert status["ledger_entries"] == s.scalar(select(func.count(m.LedgerEntry.id))) == data["runs"] + 3
    bad = cli.invoke(app, ["run", "--json", "--stages", "no_such_stage"])
    assert bad.exit_code == 2 and "unknown stage" in bad.output
    both = cli.invoke(app, ["run", "--json", "--all", "--exams", str(exam_ids[0])])
    assert both.exit_code == 2 and "--all" in both.output
    unknown = cli.invoke(app, ["run", "--json", "--exams", "NO-SUCH-ACCESSION"])
    assert unknown.exit_code == 2 and "NO-SUCH-ACCESSION" in unknown.output
    listed = json.loads(cli.invoke(app, ["stages", "--json"]).stdout)
    assert any(s["name"] == "index" and s["version"] for s in listed)
