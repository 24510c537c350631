"""A large catalogue for the serving benchmarks, seeded fast by bulk inserts.

Why not run the pipeline 10,000 times: image QC of one small exam takes seconds, so a
10,000-exam catalogue would take hours. Instead a handful of *template* exams is generated
(``radqc synth``, profile ``regional``), ingested and run through every stage for real; then
each catalogue exam is a clone of a template with its own UIDs, accession, patient, hospital
and time, and *copies of the template's real ledger results* (image_qc, rule_qc, series,
items, anatomy, ...) with the UIDs rewritten, its ``qc_result`` row derived by the stage's own
projection mapping, its report, series and instance rows. The instance rows point at the
template's stored objects (the bytes are shared, content-addressed), which is what a detail
page or a stack request reads. What the API does per request is therefore exactly what it does
on a real catalogue of that size: same row counts, same JSON sizes, same indexes.

Persons: about a third of the patients return at a second or third hospital (same
``person_key``), so scope checks with patient authorisation have work to do.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from radqc.catalogue import models as m
from radqc.workspace import Workspace

TEMPLATE_EXAMS = 10
TEMPLATE_SEED = 8290  # a validation-range seed: never training data, never a held-out figure
CHUNK = 2000


def _rows(session: Any, model: Any, *where: Any) -> list[dict[str, Any]]:
    """Plain column dicts of ``model`` rows (what a bulk insert takes back)."""
    cols = [c.key for c in model.__table__.columns]
    return [dict(zip(cols, r, strict=True)) for r in session.execute(select(*[getattr(model, c) for c in cols])
                                                                         .where(*where)).all()]


def build_templates(ws: Workspace, work: Path, n: int = TEMPLATE_EXAMS, seed: int = TEMPLATE_SEED) -> dict[str, Any]:
    """Generate, ingest and run ``n`` small regional exams through every stage (real results)."""
    from radqc.datasets.synthetic.generate import generate_set, ingest_generated_set
    from radqc.pipelines.runner.local import run_pipeline

    t0 = time.perf_counter()
    out = work / "templates"
    generate_set(out, n, seed, "regional", "small", force=True)
    ingest_generated_set(ws, out, workers=1)
    summary = run_pipeline(ws, workers=1).to_dict()
    return {"seconds": round(time.perf_counter() - t0, 1), "run": {k: summary.get(k) for k in ("succeeded", "failed")}}


def _template_data(ws: Workspace) -> list[dict[str, Any]]:
    """Per template exam: its rows and the latest succeeded ledger entry of every stage."""
    out = []
    with ws.sessions() as s:
        exams = _rows(s, m.Exam)
        for exam in exams:
            if not exam["study_instance_uid"]:
                continue
            series = _rows(s, m.Series, m.Series.exam_id == exam["id"])
            ids = [x["id"] for x in series]
            instances = _rows(s, m.Instance, m.Instance.series_id.in_(ids)) if ids else []
            latest = (select(func.max(m.LedgerEntry.id)).where(m.LedgerEntry.exam_id == exam["id"],
                                                                m.LedgerEntry.status == "succeeded")
                      .group_by(m.LedgerEntry.stage))
            ledger = _rows(s, m.LedgerEntry, m.LedgerEntry.id.in_(latest))
            records = _rows(s, m.ExamRecord, m.ExamRecord.exam_id == exam["id"])
            patient = _rows(s, m.Patient, m.Patient.id == exam["patient_id"]) if exam["patient_id"] else []
            if not any(e["stage"] == "image_qc" for e in ledger):
                continue
            out.append({"exam": exam, "series": series, "instances": instances, "ledger": ledger,
                        "record": records[0] if records else None, "patient": patient[0] if patient else None})
    return out


def _next_id(session: Any, model: Any) -> int:
    return int(session.scalar(select(func.coalesce(func.max(model.id), 0))) or 0) + 1


def seed_catalogue(ws: Workspace, n_exams: int, *, seed: int = 1) -> dict[str, Any]:
    """Clone the workspace's template exams up to ``n_exams`` exams in total (see the module
    docstring). Explicit ids make it one INSERT per chunk per table; PostgreSQL sequences are
    moved past them afterwards."""
    from radqc.pipelines.stages.image_qc import qc_result_fields

    started = time.perf_counter()
    rng = random.Random(seed)
    templates = _template_data(ws)
    if not templates:
        raise RuntimeError("no template exam with an image_qc result; run build_templates first")
    with ws.sessions() as s:
        existing = int(s.scalar(select(func.count(m.Exam.id))) or 0)
        hospitals = [(h.id, h.code) for h in s.scalars(select(m.Hospital).order_by(m.Hospital.id))]
        ids = {model: _next_id(s, model) for model in (m.Patient, m.Exam, m.Series, m.Instance, m.LedgerEntry,
                                                         m.ExamRecord, m.QcResult)}
    todo = max(0, n_exams - existing)
    now = datetime.now(UTC)
    buffers: dict[Any, list[dict[str, Any]]] = {model: [] for model in ids}
    counts = dict.fromkeys(ids, 0)

    def flush() -> None:
        """Every buffer, parents first (foreign keys), in one transaction."""
        with ws.transaction() as s:
            for model in (m.Patient, m.Exam, m.Series, m.Instance, m.ExamRecord, m.LedgerEntry, m.QcResult):
                rows = buffers[model]
                if rows:
                    s.execute(insert(model.__table__), rows)  # type: ignore[arg-type]
                    counts[model] += len(rows)
                    buffers[model] = []

    person = 0
    k = 0
    while k < todo:
        person += 1
        visits = rng.choices([1, 2, 3], weights=[65, 25, 10])[0]
        person_key = f"bench-person-{seed}-{person:07d}"
        chosen = rng.sample(hospitals, min(visits, len(hospitals)))
        for h_id, h_code in chosen:
            if k >= todo:
                break
            k += 1
            tpl = templates[(k * 7919) % len(templates)]
            pid = ids[m.Patient]
            ids[m.Patient] += 1
            src_patient = tpl["patient"] or {}
            buffers[m.Patient].append({
                "id": pid, "pseudo_key": f"bench-{seed}-{pid:08d}", "hospital_id": h_id, "person_key": person_key,
                "identifiers_enc": src_patient.get("identifiers_enc"), "sex": src_patient.get("sex") or rng.choice("MF"),
                "birth_year": src_patient.get("birth_year") or rng.randint(1940, 2010), "created_at": now})
            exam_id = ids[m.Exam]
            ids[m.Exam] += 1
            study_uid = f"2.25.{seed}{exam_id:09d}"
            uid_map = {tpl["exam"]["study_instance_uid"]: study_uid}
            when = now - timedelta(days=rng.randint(1, 720), minutes=rng.randint(0, 1440))
            accession = f"BENCH{seed}{exam_id:08d}"
            exam = dict(tpl["exam"], id=exam_id, study_instance_uid=study_uid, accession_number=accession,
                        hospital_id=h_id, patient_id=pid, exam_time=when, created_at=now, updated_at=now)
            buffers[m.Exam].append(exam)
            series_ids: dict[int, int] = {}
            for x in tpl["series"]:
                sid = ids[m.Series]
                ids[m.Series] += 1
                series_ids[x["id"]] = sid
                new_uid = f"2.25.{seed}{exam_id:09d}{sid:07d}"
                uid_map[x["series_instance_uid"]] = new_uid
                buffers[m.Series].append(dict(x, id=sid, exam_id=exam_id, series_instance_uid=new_uid, created_at=now))
            instance_ids: dict[int, int] = {}
            for j, inst in enumerate(tpl["instances"]):
                iid = ids[m.Instance]
                ids[m.Instance] += 1
                instance_ids[inst["id"]] = iid
                new_uid = f"2.25.{seed}{exam_id:09d}{j:05d}"
                uid_map[inst["sop_instance_uid"]] = new_uid
                buffers[m.Instance].append(dict(inst, id=iid, series_id=series_ids[inst["series_id"]],
                                                sop_instance_uid=new_uid, received_at=now))
            ledger_of_stage: dict[str, int] = {}
            for entry in tpl["ledger"]:
                lid = ids[m.LedgerEntry]
                ids[m.LedgerEntry] += 1
                ledger_of_stage[entry["stage"]] = lid
                buffers[m.LedgerEntry].append(dict(entry, id=lid, exam_id=exam_id,
                                                   result=_rewrite(entry["result"], uid_map, tpl, exam_id,
                                                                   series_ids, instance_ids)))
            image_qc = next(e for e in buffers[m.LedgerEntry][-len(tpl["ledger"]):] if e["stage"] == "image_qc")
            fields = qc_result_fields(image_qc["result"])
            if fields is not None:
                qid = ids[m.QcResult]
                ids[m.QcResult] += 1
                buffers[m.QcResult].append({"id": qid, "exam_id": exam_id, "ledger_id": ledger_of_stage["image_qc"],
                                            "created_at": now, "updated_at": now, **fields})
            if tpl["record"] is not None:
                rid = ids[m.ExamRecord]
                ids[m.ExamRecord] += 1
                buffers[m.ExamRecord].append(dict(
                    tpl["record"], id=rid, record_key=f"bench-{seed}-{rid:09d}", accession_number=accession,
                    hospital_code=h_code, patient_id=pid, exam_id=exam_id, exam_time=when,
                    report_time=when + timedelta(hours=2), created_at=now, updated_at=now))
            if len(buffers[m.Instance]) >= CHUNK:
                flush()
    flush()
    with ws.transaction() as s:
        if ws.engine.dialect.name == "postgresql":
            for model in ids:
                table = model.__tablename__
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))
        else:
            s.execute(text("ANALYZE"))
    return {"exams_added": counts[m.Exam], "patients": counts[m.Patient], "persons": person,
            "series": counts[m.Series], "instances": counts[m.Instance], "ledger": counts[m.LedgerEntry],
            "reports": counts[m.ExamRecord], "qc_results": counts[m.QcResult], "templates": len(templates),
            "seconds": round(time.perf_counter() - started, 1)}


def _rewrite(result: Any, uid_map: dict[str, str], tpl: dict[str, Any], exam_id: int,
             series_ids: dict[int, int], instance_ids: dict[int, int]) -> Any:
    """The template's result with this clone's UIDs and catalogue ids (so evidence and series
    references resolve to the clone's own rows)."""
    if not isinstance(result, (dict, list)):
        return result
    doc = json.dumps(result, ensure_ascii=False)
    for old, new in uid_map.items():
        if old:
            doc = doc.replace(f'"{old}"', f'"{new}"')
    out = json.loads(doc)
    if isinstance(out, dict) and "exam_id" in out:
        out["exam_id"] = exam_id
    _remap_ids(out, series_ids, instance_ids)
    return out


def _remap_ids(node: Any, series_ids: dict[int, int], instance_ids: dict[int, int]) -> None:
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == "series_id" and isinstance(value, int) and value in series_ids:
                node[key] = series_ids[value]
            elif key == "instance_ids" and isinstance(value, list):
                node[key] = [instance_ids.get(v, v) if isinstance(v, int) else v for v in value]
            elif key == "instance_id" and isinstance(value, int) and value in instance_ids:
                node[key] = instance_ids[value]
            else:
                _remap_ids(value, series_ids, instance_ids)
    elif isinstance(node, list):
        for item in node:
            _remap_ids(item, series_ids, instance_ids)
