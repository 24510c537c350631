"""The ``rule_qc`` stage: score every exam with the *published* rule-QC ruleset (规则质控).

Per exam: build the facts (CONTRACT §1) from the exam's HIS/RIS record, the header facts
ingest keeps and one instance's study-level header, then :func:`evaluate_exam`. The result is
the :class:`ExamResult` as JSON (score, grade, failures with reasons and evidence, errors,
skipped rules) with ``ruleset_version``; the version is also in the run's manifest
(``versions.ruleset``), so publishing a new ruleset re-runs every exam on the next
``radqc run`` and every stored result says which version produced it.

Identifiers (name, ID number, phone...) are SM4-encrypted in the catalogue. The stage decrypts
them with the workspace vault when it runs beside the workspace (the local runner: the
workspace of ``RADQC_HOME`` whose object store is the context's). This is a read-only
lookup of one patient row, the only catalogue access of the stage; a remote worker without
the workspace gets none and reports identifier rules as *skipped*, never as failures.
"""

from __future__ import annotations

import threading
from typing import Any

from radqc.pipelines.runner.stage import ExamContext, Resources, Stage, StageOutput, process_workspace

RESULT_SCHEMA = 1
_LOCK = threading.Lock()
_RULESETS: dict[tuple[str, int], Any] = {}


def _store() -> Any:
    from radqc.qc_rules.engine.store import RulesetStore

    return RulesetStore.for_home()


def ruleset_versions() -> dict[str, str]:
    """What the stage's results depend on: the published ruleset's number and content hash.

    Never raises: a ruleset that cannot be loaded must not stop the other stages of a run;
    the stage then fails per exam with the loader's message (and is retried next run)."""
    try:
        store = _store()
        n = store.published_version()
        return {"ruleset": str(n), "ruleset_sha256": str(store.meta(n).get("content_sha256", ""))[:16]}
    except Exception as exc:  # noqa: BLE001
        return {"ruleset": "unavailable", "error": f"{type(exc).__name__}: {exc}"[:300]}


def _published() -> Any:
    store = _store()
    n = store.published_version()
    key = (str(store.root), n)
    with _LOCK:
        if key not in _RULESETS:
            _RULESETS[key] = store.ruleset(n)
        return _RULESETS[key]


def _identifiers(ctx: ExamContext) -> dict[str, Any] | None:
    from sqlalchemy import select

    from radqc.catalogue import models as m
    from radqc.qc_rules.facts import decrypt_identifiers

    ws = process_workspace(ctx.store)
    if ws is None:
        return None
    with ws.sessions() as session:
        patient_ids = [r.get("patient_id") for r in ctx.records]
        exam_patient = session.scalar(select(m.Exam.patient_id).where(m.Exam.id == ctx.exam_id))
        ids = ([exam_patient] if exam_patient else []) + [p for p in patient_ids if p]
        found = decrypt_identifiers(session, ws.vault, ids)
    return found or {}


def rule_qc(ctx: ExamContext) -> StageOutput:
    """Score one exam with the published ruleset (规则质控评分)."""
    from radqc.qc_rules.engine.evaluate import evaluate_exam
    from radqc.qc_rules.engine.names import IDENTIFIER_FIELDS
    from radqc.qc_rules.facts import facts_from_context

    ruleset = _published()
    identifiers = _identifiers(ctx)
    facts = facts_from_context(ctx, identifiers)
    result = evaluate_exam(facts, ruleset, unavailable=IDENTIFIER_FIELDS if identifiers is None else ())
    data = {"schema": RESULT_SCHEMA, "exam_id": ctx.exam_id, **result.to_dict(),
            "identifiers_available": identifiers is not None}
    return StageOutput(data, manifest={"ruleset_version": ruleset.version})


STAGES = [
    Stage(
        name="rule_qc",
        version="1",
        fn=rule_qc,
        depends=("index",),
        reads=("instances", "records"),
        resources=Resources(cpus=1, memory_mb=256),
        versions=ruleset_versions,
        description="Rule QC: index, header and report rules scored by the item standards / 规则质控评分",
    )
]
