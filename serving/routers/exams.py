"""Exams: search, detail (series, standard items, rule and image QC, report), evidence pictures,
a person's exams across hospitals (permission ``exam.read``, scoped).

An exam outside the caller's scope answers 404 exactly like a missing one, so its existence is
not revealed. The detail view is written to the access log ("exam.view") with ids only.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving import accesslog
from radqc.serving.security.deps import db, require, service
from radqc.serving.security.principal import Principal
from radqc.serving.security.scope import exam_scope_clause, is_other_hospital
from radqc.serving.services import exam_views as views
from radqc.serving.services.jsonout import bytes_response

router = APIRouter(tags=["exams / 检查"])

#: Catalogue ids are 32-bit integers on PostgreSQL: larger values are refused (422) before
#: they reach the database, where they would be an error instead of "not found".
MAX_ID = 2_147_483_647
#: Text parameters: no NUL (PostgreSQL refuses it in text; a fuzzer's favourite).
NO_NUL = r"^[^\x00]*$"

NOT_FOUND = "exam not found / 检查不存在或无权查看"
PATIENT_NOT_FOUND = "patient not found / 患者不存在或无权查看"


def not_found(detail: str = NOT_FOUND) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=detail)


@router.get("/api/exams", summary="Search exams / 检查检索")
def search_exams(
    request: Request,
    patient_id: int | None = Query(None, ge=1, le=MAX_ID, description="catalogue patient id"),
    hospital: str | None = Query(None, max_length=64, pattern=NO_NUL, description="hospital code"),
    modality: str | None = Query(None, max_length=16, pattern=NO_NUL, description="DX also finds CR/DR"),
    item: str | None = Query(None, max_length=64, pattern=NO_NUL, description="standard exam item code (radqc.vocab)"),
    grade: str | None = Query(None, max_length=8, pattern=NO_NUL, description="QC grade: 甲/乙/丙/丁 or 3/2/1/0"),
    date_from: date | None = Query(None, description="exam date from (inclusive, UTC)"),
    date_to: date | None = Query(None, description="exam date to (inclusive, UTC)"),
    q: str | None = Query(None, max_length=128, pattern=NO_NUL, description="accession number or description contains"),
    other_hospitals: bool = Query(False, description="only exams of hospitals other than the caller's"),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    principal: Principal = Depends(require("exam.read")),
    session: Session = Depends(db),
) -> dict[str, Any]:
    filters = views.ExamFilters(patient_id=patient_id, hospital=hospital, modality=modality, item=item, grade=grade,
                                date_from=date_from, date_to=date_to, q=q or None, other_hospitals=other_hospitals)
    return views.search(session, service(request), principal, filters, limit=limit, offset=offset)


@router.get("/api/exams/{exam_id}", summary="Exam detail with QC / 检查详情与质控结果")
def exam_detail(request: Request, exam_id: int = Path(..., ge=1, le=MAX_ID), principal: Principal = Depends(require("exam.read")),
                session: Session = Depends(db)) -> dict[str, Any]:
    ctx = service(request)
    row = views.scoped_exam_row(session, principal, exam_id)
    if row is None:
        raise not_found()
    body = views.detail_json(session, ctx, principal, row)
    accesslog.record(ctx.workspace.sessions, action="exam.view", user_id=principal.user_id,
                     username=principal.username, role=principal.role.name, exam_id=exam_id,
                     target=f"/api/exams/{exam_id}", client=principal.client,
                     detail={"own_hospital": not is_other_hospital(principal, row[0].hospital_id), "via": principal.via})
    return bytes_response(body)  # type: ignore[return-value]  # same JSON, without jsonable_encoder's walk


@router.get("/api/exams/{exam_id}/evidence/{n}", summary="Image-QC evidence picture / 质控证据图",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def exam_evidence(request: Request, exam_id: int = Path(..., ge=1, le=MAX_ID), n: int = Path(..., ge=0, le=100_000), principal: Principal = Depends(require("exam.read")),
                  session: Session = Depends(db)) -> Response:
    ctx = service(request)
    if not session.scalar(select(m.Exam.id).where(m.Exam.id == exam_id, exam_scope_clause(principal))):
        raise not_found()
    key = views.evidence_key(session, exam_id, n)
    if key is None:
        raise not_found("evidence image not found / 无此证据图")
    try:
        data = ctx.workspace.store.get(key)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise not_found("evidence image not found / 无此证据图") from exc
    return Response(content=data, media_type="image/png",
                    headers={"Cache-Control": "no-store", "Content-Disposition": "inline"})


def person_patient_ids(session: Session, patient: m.Patient) -> list[int]:
    """The patient rows of the same person (same ``person_key``; the row alone without one)."""
    if not patient.person_key:
        return [patient.id]
    return list(session.scalars(select(m.Patient.id).where(m.Patient.person_key == patient.person_key)))


def visible_patient(session: Session, principal: Principal, patient_id: int) -> m.Patient:
    """The patient row, when the caller may see it: it is registered at the caller's hospital, or
    one of its exams is in the caller's scope (region roles see all). 404 otherwise."""
    patient = session.get(m.Patient, patient_id)
    if patient is None:
        raise not_found(PATIENT_NOT_FOUND)
    if principal.role.scope == "region":
        return patient
    if principal.hospital_id is not None and patient.hospital_id == principal.hospital_id \
            and principal.role.scope != "none":
        return patient
    seen = session.scalar(select(m.Exam.id).where(m.Exam.patient_id == patient.id, exam_scope_clause(principal))
                          .limit(1))
    if seen is None:
        raise not_found(PATIENT_NOT_FOUND)
    return patient


@router.get("/api/patients/{patient_id}/exams", summary="A person's exams at every hospital / 患者跨院检查")
def patient_exams(request: Request, patient_id: int = Path(..., ge=1, le=MAX_ID), limit: int = Query(200, ge=1, le=500),
                  principal: Principal = Depends(require("exam.read")),
                  session: Session = Depends(db)) -> dict[str, Any]:
    ctx = service(request)
    patient = visible_patient(session, principal, patient_id)
    ids = person_patient_ids(session, patient)
    rows = session.execute(views.exam_rows([m.Exam.patient_id.in_(ids), exam_scope_clause(principal)])
                           .order_by(m.Exam.exam_time.desc().nulls_last(), m.Exam.id.desc()).limit(limit)).all()
    hospital_code = session.scalar(select(m.Hospital.code).where(m.Hospital.id == patient.hospital_id)) \
        if patient.hospital_id else None
    out = {"patient": views.patient_out(ctx, principal, patient, hospital_code),
           "items": views.summaries(session, ctx, principal, [tuple(r) for r in rows])}
    # The cross-hospital history shows which exams a person had where: logged like a view.
    accesslog.record(ctx.workspace.sessions, action="patient.history", user_id=principal.user_id,
                     username=principal.username, role=principal.role.name, target=f"/api/patients/{patient_id}/exams",
                     client=principal.client, detail={"patient_id": patient_id, "exams": [r[0].id for r in rows],
                                                      "via": principal.via})
    return out
