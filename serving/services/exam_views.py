"""The exam views of the API: search, ExamSummary and ExamDetail, assembled from the catalogue.

Why a module of its own: the exam, recognition and patient routes all return ExamSummary
objects, and the detail endpoint is benchmarked at 300 requests/s, so every shape is built
from a fixed handful of batched queries (one per table, ``GROUP BY`` for counts) however many
exams, series or instances there are — never a query per row.

Where an exam's standard items come from (most reliable first):

1. ``standard_series.item_code`` — the ``series`` stage's split: the items the images were
   actually assigned to (indexed; the search filter ``item`` uses it);
2. the latest succeeded ``items`` ledger result's ``standard_items`` — the order normalised to
   standard items (used when the series stage has not run or assigned nothing);
3. nothing (``[]``): the exam is never guessed into an item. ``qc_result.standard`` is a
   *scoring standard* code (``CT-CHEST-PLAIN``), a different code system, and is reported
   under ``qc.standard`` only.

Visibility is decided only by :mod:`radqc.serving.security.scope`; this module adds its
clause to every query that reads exams.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving.context import ServiceContext
from radqc.serving.security.principal import Principal
from radqc.serving.security.scope import (
    exam_scope_clause,
    is_other_hospital,
    scope_kind,
    scope_parameters,
    scope_template,
)
from radqc.serving.services.detail_cache import ExamStatic, exam_version
from radqc.serving.services.jsonout import encode

#: Modalities that are one class for search (the 2021 guideline merged DR and CR into DX);
#: the same table as ``radqc exams search`` (radqc/cli/cmd_exams.py).
MODALITY_EQUIVALENTS: dict[str, tuple[str, ...]] = {
    "DX": ("DX", "CR", "DR"), "CR": ("DX", "CR", "DR"), "DR": ("DX", "CR", "DR")}
#: Modalities graded 甲/乙/丙/丁 (the rest 3/2/1/0): docs/image-qc.md.
RADIOGRAPH_MODALITIES = frozenset({"DX", "CR", "DR", "MG"})
#: Stages whose latest succeeded result the detail shows.
DETAIL_STAGES = ("rule_qc", "image_qc", "items", "series")
#: Keys of the decrypted identifier payload (pipelines/ingest/records.py IDENTIFIER_FIELDS).
IDENTIFIER_FIELDS = frozenset({"patient_id", "patient_name", "name", "patient_sex", "patient_birth_date",
                               "id_number", "phone", "address"})
#: The image-QC dimensions (docs/image-qc.md), in display order.
DIMENSIONS = ("range", "positioning", "artifact", "centring", "noise", "sharpness", "reconstruction", "window",
              "sequences", "dose")


def modality_set(modality: str) -> tuple[str, ...]:
    code = modality.strip().upper()
    return MODALITY_EQUIVALENTS.get(code, (code,))


def member_clause(column: Any, value: str) -> ColumnElement[bool]:
    """``column`` (a comma-joined list such as ``CT,SR``) has ``value`` as a whole member (LIKE-escaped)."""
    return or_(column == value, column.startswith(value + ",", autoescape=True),
               column.endswith("," + value, autoescape=True), column.contains("," + value + ",", autoescape=True))


def modalities_of(value: str | None) -> set[str]:
    return {part.strip().upper() for part in (value or "").split(",") if part.strip()}


def grading_of(modality: str | None) -> str:
    return "radiograph" if (modality or "").upper() in RADIOGRAPH_MODALITIES else "ct_mr"


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, tzinfo=UTC)


def day_end(d: date) -> datetime:
    """The first instant after day ``d`` (UTC); the last representable day ends at its last instant."""
    if d >= date.max:
        return datetime.combine(d, time.max, tzinfo=UTC)
    return day_start(d) + timedelta(days=1)


# ------------------------------------------------------------------ search


@dataclass
class ExamFilters:
    """The search parameters of ``GET /api/exams`` (already validated by the router)."""

    patient_id: int | None = None
    hospital: str | None = None
    modality: str | None = None
    item: str | None = None
    grade: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    q: str | None = None
    other_hospitals: bool = False


def _like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` literally (``%``/``_`` escaped; bound, never spliced)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filter_clauses(principal: Principal, f: ExamFilters) -> list[ColumnElement[bool]]:
    """WHERE clauses over ``m.Exam`` (joined with Hospital and QcResult) for ``f``, scope first."""
    clauses: list[ColumnElement[bool]] = [exam_scope_clause(principal)]
    if f.patient_id is not None:
        clauses.append(m.Exam.patient_id == f.patient_id)
    if f.hospital:
        clauses.append(m.Hospital.code == f.hospital)
    if f.modality:
        clauses.append(or_(*(member_clause(m.Exam.modality, mod) for mod in modality_set(f.modality))))
    if f.item:
        clauses.append(m.Exam.id.in_(select(m.StandardSeries.exam_id).where(m.StandardSeries.item_code == f.item)))
    if f.grade:
        clauses.append(m.QcResult.grade == f.grade)
    if f.date_from:
        clauses.append(m.Exam.exam_time >= day_start(f.date_from))
    if f.date_to:
        clauses.append(m.Exam.exam_time < day_end(f.date_to))
    if f.q:
        pattern = _like_pattern(f.q.strip())
        clauses.append(or_(m.Exam.accession_number.ilike(pattern, escape="\\"),
                           m.Exam.study_description.ilike(pattern, escape="\\")))
    if f.other_hospitals and principal.hospital_id is not None:
        clauses.append(or_(m.Exam.hospital_id.is_(None), m.Exam.hospital_id != principal.hospital_id))
    return clauses


def exam_rows(where: Iterable[ColumnElement[bool]]) -> Any:
    return (select(m.Exam, m.Hospital, m.Patient, m.QcResult)
            .outerjoin(m.Hospital, m.Hospital.id == m.Exam.hospital_id)
            .outerjoin(m.Patient, m.Patient.id == m.Exam.patient_id)
            .outerjoin(m.QcResult, m.QcResult.exam_id == m.Exam.id)
            .where(and_(*where)))


def search(session: Session, ctx: ServiceContext, principal: Principal, f: ExamFilters, *, limit: int,
           offset: int) -> dict[str, Any]:
    """``{"total", "limit", "offset", "items"}``: one count, one page query, then the batched extras."""
    clauses = filter_clauses(principal, f)
    count_q = (select(func.count(m.Exam.id)).select_from(m.Exam)
               .outerjoin(m.Hospital, m.Hospital.id == m.Exam.hospital_id)
               .outerjoin(m.QcResult, m.QcResult.exam_id == m.Exam.id)
               .where(and_(*clauses)))
    total = int(session.scalar(count_q) or 0)
    rows = session.execute(exam_rows(clauses).order_by(m.Exam.exam_time.desc().nulls_last(), m.Exam.id.desc())
                           .limit(limit).offset(offset)).all()
    return {"total": total, "limit": limit, "offset": offset,
            "items": summaries(session, ctx, principal, [tuple(r) for r in rows])}


# ------------------------------------------------------------------ batched look-ups


def latest_results(session: Session, exam_ids: Sequence[int], stages: Sequence[str]) -> dict[int, dict[str, Any]]:
    """``{exam_id: {stage: result}}`` of the latest succeeded ledger entry per exam and stage (2 queries)."""
    if not exam_ids:
        return {}
    L = m.LedgerEntry
    latest = (select(func.max(L.id)).where(L.exam_id.in_(exam_ids), L.stage.in_(stages), L.status == "succeeded")
              .group_by(L.exam_id, L.stage))
    out: dict[int, dict[str, Any]] = {}
    for exam_id, stage, result in session.execute(select(L.exam_id, L.stage, L.result).where(L.id.in_(latest))):
        out.setdefault(exam_id, {})[stage] = result if isinstance(result, dict) else {}
    return out


def _item_name(code: str, fallback: Any = None) -> str | None:
    from radqc import vocab

    try:
        return vocab.item(code).name_zh
    except KeyError:
        if isinstance(fallback, dict):
            return fallback.get("zh") or fallback.get("en")
        return str(fallback) if fallback else None


def exam_items(session: Session, exam_ids: Sequence[int],
               items_results: dict[int, dict[str, Any]] | None = None) -> dict[int, list[dict[str, Any]]]:
    """Standard items per exam (module docstring: standard series first, else the items stage)."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in exam_ids}
    if not exam_ids:
        return out
    rows = session.execute(select(m.StandardSeries.exam_id, m.StandardSeries.item_code)
                           .where(m.StandardSeries.exam_id.in_(exam_ids), m.StandardSeries.item_code.is_not(None))
                           .group_by(m.StandardSeries.exam_id, m.StandardSeries.item_code)
                           .order_by(m.StandardSeries.exam_id, m.StandardSeries.item_code)).all()
    for exam_id, code in rows:
        out[exam_id].append({"code": code, "name": _item_name(str(code)), "source": "series"})
    missing = [i for i in exam_ids if not out[i]]
    if missing:
        results = items_results if items_results is not None else {
            k: v.get("items", {}) for k, v in latest_results(session, missing, ("items",)).items()}
        for exam_id in missing:
            seen: set[str] = set()
            for entry in (results.get(exam_id) or {}).get("standard_items") or []:
                code = entry.get("code") if isinstance(entry, dict) else None
                if code and code not in seen:
                    seen.add(code)
                    out[exam_id].append({"code": code, "name": _item_name(code, entry.get("name")), "source": "items"})
    return out


def _recognition_by(user: m.AppUser | None, hospital: m.Hospital | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"username": user.username, "display_name": user.display_name,
            "hospital": hospital.code if hospital is not None else None}


def latest_recognitions(session: Session, principal: Principal, exam_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The latest decision per exam by the caller's hospital (any hospital for region roles)."""
    if not exam_ids:
        return {}
    R = m.Recognition
    where = [R.exam_id.in_(exam_ids)]
    if principal.hospital_id is not None:
        where.append(R.hospital_id == principal.hospital_id)
    latest = select(func.max(R.id)).where(*where).group_by(R.exam_id)
    rows = session.execute(select(R, m.AppUser, m.Hospital).outerjoin(m.AppUser, m.AppUser.id == R.user_id)
                           .outerjoin(m.Hospital, m.Hospital.id == R.hospital_id).where(R.id.in_(latest))).all()
    return {r.exam_id: {"decision": r.decision, "reason_code": r.reason_code, "at": iso(r.created_at),
                        "by": _recognition_by(u, h)} for r, u, h in rows}


def patient_identity(ctx: ServiceContext, patient: m.Patient | None) -> dict[str, Any]:
    """The decrypted identifiers of ``patient`` ({} when none or unreadable). Never logged."""
    if patient is None or not patient.identifiers_enc:
        return {}
    try:
        return ctx.workspace.vault.decrypt(patient.identifiers_enc)
    except ValueError:
        return {}


def patient_out(ctx: ServiceContext, principal: Principal, patient: m.Patient | None,
                hospital_code: str | None = None) -> dict[str, Any] | None:
    if patient is None:
        return None
    out: dict[str, Any] = {"id": patient.id, "sex": patient.sex, "birth_year": patient.birth_year}
    if hospital_code is not None:
        out["hospital"] = hospital_code
    if principal.can("patient.identity"):
        ids = patient_identity(ctx, patient)
        out["name"] = ids.get("patient_name") or ids.get("name")
    return out


def qc_out(qc: m.QcResult | None) -> dict[str, Any] | None:
    if qc is None:
        return None
    return {"score": qc.score, "grade": qc.grade, "image_score": qc.image_score, "image_grade": qc.image_grade,
            "standard": qc.standard, "grading": grading_of(qc.modality)}


def summaries(session: Session, ctx: ServiceContext, principal: Principal,
              rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """ExamSummary per ``(Exam, Hospital, Patient, QcResult)`` row, in the given order (2-3 more queries)."""
    ids = [row[0].id for row in rows]
    items = exam_items(session, ids)
    decisions = latest_recognitions(session, principal, ids)
    return [summary(ctx, principal, exam, hospital, patient, qc, items.get(exam.id, []), decisions.get(exam.id))
            for exam, hospital, patient, qc in rows]


def summary(ctx: ServiceContext, principal: Principal, exam: m.Exam, hospital: m.Hospital | None,
            patient: m.Patient | None, qc: m.QcResult | None, items: list[dict[str, Any]],
            recognition: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": exam.id, "study_instance_uid": exam.study_instance_uid, "accession_number": exam.accession_number,
        "hospital": {"code": hospital.code, "name": hospital.name} if hospital is not None else None,
        "own_hospital": not is_other_hospital(principal, exam.hospital_id),
        "patient": patient_out(ctx, principal, patient),
        "modality": exam.modality, "exam_time": iso(exam.exam_time), "description": exam.study_description,
        "items": [{"code": i["code"], "name": i["name"]} for i in items],
        "qc": qc_out(qc), "recognition": recognition,
    }


@functools.cache
def _scoped_row_statement(kind: str) -> Any:
    return exam_rows([m.Exam.id == bindparam("exam_id"), scope_template(kind)])


def scoped_exam_row(session: Session, principal: Principal, exam_id: int) -> tuple[Any, ...] | None:
    """``(Exam, Hospital, Patient, QcResult)`` when the exam exists and is in scope, else None (-> 404).

    The statement is built once per scope kind (the exam detail's hot path); visibility is
    still :mod:`radqc.serving.security.scope`'s clause, with the caller's values bound."""
    kind = scope_kind(principal)
    if kind == "none":
        return None
    row = session.execute(_scoped_row_statement(kind), {"exam_id": exam_id, **scope_parameters(principal)}).first()
    return tuple(row) if row is not None else None


# ------------------------------------------------------------------ recognitions


def reason_index(ctx: ServiceContext) -> dict[str, dict[str, Any]]:
    return {str(r["code"]): r for r in ctx.recognition_reasons()}


def recognition_out(r: m.Recognition, user: m.AppUser | None, hospital: m.Hospital | None,
                    reasons: dict[str, dict[str, Any]]) -> dict[str, Any]:
    reason = reasons.get(r.reason_code or "")
    return {"id": r.id, "exam_id": r.exam_id, "decision": r.decision, "reason_code": r.reason_code,
            "reason_category": r.reason_category,
            "reason": {"zh": reason.get("zh"), "en": reason.get("en")} if reason else None,
            "comment": r.comment, "ordered_item": r.ordered_item, "by": _recognition_by(user, hospital),
            "at": iso(r.created_at)}


def exam_recognitions(session: Session, ctx: ServiceContext, exam_id: int) -> list[dict[str, Any]]:
    """Every decision on the exam, newest first (one query)."""
    return [d for _, d in exam_decisions(session, ctx, exam_id)]


def exam_decisions(session: Session, ctx: ServiceContext, exam_id: int) -> list[tuple[int | None, dict[str, Any]]]:
    """Every decision on the exam, newest first, each with the deciding hospital's id (one query)."""
    R = m.Recognition
    rows = session.execute(select(R, m.AppUser, m.Hospital).outerjoin(m.AppUser, m.AppUser.id == R.user_id)
                           .outerjoin(m.Hospital, m.Hospital.id == R.hospital_id)
                           .where(R.exam_id == exam_id).order_by(R.id.desc())).all()
    reasons = reason_index(ctx)
    return [(r.hospital_id, recognition_out(r, u, h, reasons)) for r, u, h in rows]


# ------------------------------------------------------------------ detail


def _series_infos(session: Session, exam_id: int, standard_series: Sequence[m.StandardSeries]
                  ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """SeriesInfo list and ``{series_uid: series_id}`` (2 queries: series, instance counts)."""
    series = session.scalars(select(m.Series).where(m.Series.exam_id == exam_id)
                             .order_by(m.Series.series_number.nulls_last(), m.Series.id)).all()
    ids = [s.id for s in series]
    counts: dict[int, int] = {}
    labels: dict[int, dict[str, Any]] = {}
    if ids:
        counts = {sid: int(n) for sid, n in session.execute(
            select(m.Instance.series_id, func.count(m.Instance.id)).where(m.Instance.series_id.in_(ids))
            .group_by(m.Instance.series_id))}
        for ss in standard_series:
            if ss.source_series_id is None or ss.source_series_id in labels:
                continue
            label = {k: v for k, v in (ss.label or {}).items() if k != "evidence"}
            label.update(role=ss.role, category=ss.category, item_code=ss.item_code)
            labels[ss.source_series_id] = label
    infos = [{"id": s.id, "series_instance_uid": s.series_instance_uid, "series_number": s.series_number,
              "modality": s.modality, "description": s.description, "body_part": s.body_part,
              "instances": counts.get(s.id, 0), "label": labels.get(s.id),
              "thumbnail_url": f"/api/series/{s.id}/thumbnail", "stack_url": f"/api/series/{s.id}/stack"}
             for s in series]
    return infos, {s.series_instance_uid: s.id for s in series}


def _standard_items(standard_series: Sequence[m.StandardSeries], items_result: dict[str, Any] | None,
                    series_result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The exam's standard items with their standard series (split) and the order they came from."""
    from radqc import vocab

    by_code: dict[str, dict[str, Any]] = {}
    for entry in (items_result or {}).get("standard_items") or []:
        if isinstance(entry, dict) and entry.get("code"):
            by_code.setdefault(entry["code"], {
                "code": entry["code"], "name": _item_name(entry["code"], entry.get("name")),
                "modality": entry.get("modality"), "parts": list(entry.get("parts") or []),
                "method": entry.get("method"), "laterality": entry.get("laterality"),
                "confidence": entry.get("confidence"), "source": "items", "standard_series": []})
    for ss in standard_series:
        if not ss.item_code:
            continue
        entry = by_code.get(ss.item_code)
        if entry is None:
            try:
                it = vocab.item(ss.item_code)
                modality, parts = it.modality, list(it.parts)
            except KeyError:
                modality, parts = None, []
            entry = by_code.setdefault(ss.item_code, {
                "code": ss.item_code, "name": _item_name(ss.item_code), "modality": modality, "parts": parts,
                "method": None, "laterality": None, "confidence": None, "source": "series", "standard_series": []})
        entry["standard_series"].append({
            "id": ss.id, "standard_series_uid": ss.standard_series_uid, "source_series_id": ss.source_series_id,
            "category": ss.category, "role": ss.role, "z_from_mm": ss.z_from_mm, "z_to_mm": ss.z_to_mm,
            "instances": ss.instance_count})
    if not by_code and series_result:
        for entry in ((series_result.get("split") or {}).get("standard_items") or []):
            code = entry.get("code") if isinstance(entry, dict) else None
            if code:
                by_code.setdefault(code, {"code": code, "name": _item_name(code, entry.get("name")),
                                          "modality": None, "parts": [], "method": None, "laterality": None,
                                          "confidence": None, "source": "series", "standard_series": []})
    return list(by_code.values())


def _evidence_out(exam_id: int, evidence: Any, series_ids: dict[str, int], object_index: dict[str, int]) -> list[Any]:
    out: list[dict[str, Any]] = []
    for ev in evidence or []:
        if not isinstance(ev, dict):
            continue
        uid = ev.get("series_uid")
        n = object_index.get(str(ev.get("image"))) if ev.get("image") else None
        out.append({"series_id": series_ids.get(uid) if uid else None, "series_uid": uid,
                    "instance_index": ev.get("instance_index"), "sop_instance_uid": ev.get("sop_instance_uid"),
                    "measured": ev.get("measured"), "limit": ev.get("limit"), "unit": ev.get("unit"),
                    "box": ev.get("box"),
                    "image_url": f"/api/exams/{exam_id}/evidence/{n}" if n is not None else None})
    return out


def image_qc_out(exam_id: int, result: dict[str, Any] | None, series_ids: dict[str, int]) -> dict[str, Any] | None:
    """The image_qc ledger result reshaped for the QC panel: evidence keys become URLs, series UIDs ids.

    Object-store keys never leave the service: a picture is reachable only as
    ``/api/exams/{id}/evidence/{n}``, n its index in ``evidence_objects``."""
    if not result:
        return None
    object_index = {str(o.get("key")): n for n, o in enumerate(result.get("evidence_objects") or [])
                    if isinstance(o, dict) and o.get("key")}
    dimensions: dict[str, Any] = {}
    for dim in DIMENSIONS:
        raw = result.get(dim)
        if not isinstance(raw, dict):
            continue
        dimensions[dim] = {k: v for k, v in raw.items() if k != "findings"}
    deductions = []
    for d in result.get("deductions") or []:
        if not isinstance(d, dict):
            continue
        deductions.append({k: d.get(k) for k in ("check_id", "dimension", "value", "points", "reason_zh", "reason_en",
                                                  "source", "scope")}
                          | {"evidence": _evidence_out(exam_id, d.get("evidence"), series_ids, object_index)})
    return {"score": result.get("score"), "grade": result.get("grade"), "image_score": result.get("image_score"),
            "image_grade": result.get("image_grade"), "standard": result.get("standard"),
            "grading": result.get("grading"), "thresholds": result.get("thresholds"), "total": result.get("total"),
            "combined": result.get("combined"), "item": result.get("item"), "version": result.get("version"),
            "grade_reason": result.get("grade_reason"),
            "dimensions": dimensions, "deductions": deductions, "not_assessed": result.get("not_assessed") or []}


def rule_qc_out(result: dict[str, Any] | None, see_identity: bool) -> dict[str, Any] | None:
    """The rule_qc ledger result; evidence of identifier rules hidden without ``patient.identity``."""
    if not result:
        return None
    if see_identity:
        return result
    out = dict(result)
    failures = []
    for f in result.get("failures") or []:
        if isinstance(f, dict) and IDENTIFIER_FIELDS.intersection(f.get("fields") or ()):
            f = {**f, "evidence": {"redacted": "identifier fields / 含身份信息，已隐藏"}}
        failures.append(f)
    out["failures"] = failures
    return out


def report_out(session: Session, exam_id: int) -> dict[str, Any] | None:
    rec = session.scalar(select(m.ExamRecord).where(m.ExamRecord.exam_id == exam_id)
                         .order_by(m.ExamRecord.updated_at.desc(), m.ExamRecord.id.desc()).limit(1))
    if rec is None:
        return None
    return {"findings": rec.findings, "impression": rec.impression, "report_time": iso(rec.report_time),
            "report_doctor": rec.report_doctor, "exam_items": rec.exam_items or [], "accession_number":
            rec.accession_number}


def build_exam_static(session: Session, ctx: ServiceContext, exam: m.Exam, version: tuple[Any, ...]) -> ExamStatic:
    """The exam-wide part of the detail (7 queries: ledger x2, standard series, series, instance
    counts, report, decisions), encoded: see :mod:`radqc.serving.services.detail_cache`."""
    stages = latest_results(session, [exam.id], DETAIL_STAGES).get(exam.id, {})
    standard_series = session.scalars(select(m.StandardSeries).where(m.StandardSeries.exam_id == exam.id)
                                      .order_by(m.StandardSeries.id)).all()
    series, series_ids = _series_infos(session, exam.id, standard_series)
    standard_items = _standard_items(standard_series, stages.get("items"), stages.get("series"))
    items = [{"code": i["code"], "name": i["name"]} for i in standard_items
             if i["standard_series"] or not any(j["standard_series"] for j in standard_items)]
    members = encode({"series": series, "standard_items": standard_items, "report": report_out(session, exam.id),
                      "image_qc": image_qc_out(exam.id, stages.get("image_qc"), series_ids)})[1:-1]
    rule_qc = stages.get("rule_qc")
    decisions = tuple(exam_decisions(session, ctx, exam.id))
    return ExamStatic(version=version, items=items, members=members,
                      rule_qc_full=encode(rule_qc_out(rule_qc, True)),
                      rule_qc_redacted=encode(rule_qc_out(rule_qc, False)),
                      decisions=decisions, decisions_json=encode([d for _, d in decisions]))


def exam_static(session: Session, ctx: ServiceContext, exam: m.Exam) -> ExamStatic:
    """The cached exam-wide part when the exam has not changed since, else built (and cached)."""
    version = exam_version(session, exam, ctx.recognition_reasons_version())
    cached = ctx.detail_cache.get(exam.id, version)
    if cached is not None:
        return cached
    built = build_exam_static(session, ctx, exam, version)
    ctx.detail_cache.put(exam.id, built)
    return built


def _latest_decision(principal: Principal, decisions: Sequence[tuple[int | None, dict[str, Any]]]
                     ) -> dict[str, Any] | None:
    """The newest decision by the caller's hospital (any hospital for region roles): the list's
    summary line, as :func:`latest_recognitions` gives it for lists."""
    for hospital_id, d in decisions:
        if principal.hospital_id is None or hospital_id == principal.hospital_id:
            return {"decision": d["decision"], "reason_code": d["reason_code"], "at": d["at"], "by": d["by"]}
    return None


def detail_json(session: Session, ctx: ServiceContext, principal: Principal, row: tuple[Any, ...]) -> bytes:
    """ExamDetail as JSON for a row from :func:`scoped_exam_row`.

    The caller's part (summary with the identity the caller may see, the caller's hospital's
    decision, whether the decision list is shown, permissions) is built here on every request;
    the exam-wide part (series, standard items, report, rule and image QC, the decisions) comes
    from :func:`exam_static`. Queries: the version; 7 more when the exam-wide part is rebuilt."""
    exam, hospital, patient, qc = row
    static = exam_static(session, ctx, exam)
    latest = _latest_decision(principal, static.decisions)
    out = summary(ctx, principal, exam, hospital, patient, qc, static.items, latest)
    other = is_other_hospital(principal, exam.hospital_id)
    out["permissions"] = {
        "recognise": principal.can("recognition.write") and other and principal.hospital_id is not None,
        "download_original": principal.can("image.download_original")
        and (not other or ctx.settings.allow_original_download)}
    decisions = static.decisions_json if principal.can("recognition.read") else b"[]"
    rule_qc = static.rule_qc_full if principal.can("patient.identity") else static.rule_qc_redacted
    return b"".join((encode(out)[:-1], b',"recognitions":', decisions, b",", static.members,
                     b',"rule_qc":', rule_qc, b"}"))


def evidence_key(session: Session, exam_id: int, n: int) -> str | None:
    """The object key of the exam's n-th image-QC evidence picture, or None.

    Only keys the exam's own latest image_qc result lists in ``evidence_objects`` are ever
    returned, so no caller-chosen key (``../``, another exam's object) can be read."""
    result = latest_results(session, [exam_id], ("image_qc",)).get(exam_id, {}).get("image_qc") or {}
    objects = result.get("evidence_objects") or []
    if n < 0 or n >= len(objects) or not isinstance(objects[n], dict):
        return None
    key = objects[n].get("key")
    return str(key) if key else None
