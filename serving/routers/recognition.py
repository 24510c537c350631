"""Recognition (互认): the reason list, recording and reading decisions, the repeated-exam reminder.

Rules (《检查检验结果互认管理办法》): a decision is about ANOTHER hospital's exam (own-hospital
exams: 409); 不互认 needs a reason from the configured list (serving/recognition_reasons.yaml;
quality reasons feed the hospital statistics, clinical ones do not), 互认 takes none. Every
decision is written to the access log ("recognition.record") with ids and codes only: the
free-text comment may name the patient and is never logged.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving import accesslog
from radqc.serving.routers.exams import MAX_ID, NO_NUL, not_found, person_patient_ids, visible_patient
from radqc.serving.security.deps import authenticate, db, require, service
from radqc.serving.security.principal import Principal
from radqc.serving.services import exam_views as views
from radqc.serving.services.repeat import item_parts, repeat_candidates

router = APIRouter(tags=["recognition / 互认"])

RECOGNISED = "互认"
NOT_RECOGNISED = "不互认"


class RecognitionIn(BaseModel):
    decision: Literal["互认", "不互认"]
    reason_code: str | None = Field(None, max_length=64, pattern=NO_NUL)
    comment: str | None = Field(None, max_length=2000, pattern=NO_NUL)
    ordered_item: str | None = Field(None, max_length=64, pattern=NO_NUL)


@router.get("/api/recognition/reasons", summary="不互认 reasons / 不互认原因列表")
def reasons(request: Request, principal: Principal = Depends(authenticate)) -> dict[str, Any]:
    """Any authenticated user: the UI needs the list, and it holds no patient data."""
    return {"reasons": [{"code": r["code"], "category": r["category"], "zh": r.get("zh"), "en": r.get("en")}
                        for r in service(request).recognition_reasons()]}


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(422, detail=message)


@router.post("/api/exams/{exam_id}/recognition", status_code=status.HTTP_201_CREATED,
             summary="Record 互认 / 不互认 / 记录互认决定")
def record_decision(request: Request, body: RecognitionIn,
                    exam_id: int = Path(..., ge=1, le=MAX_ID),
                    principal: Principal = Depends(require("recognition.write")),
                    session: Session = Depends(db)) -> dict[str, Any]:
    ctx = service(request)
    row = views.scoped_exam_row(session, principal, exam_id)
    if row is None:
        raise not_found()
    exam, hospital = row[0], row[1]
    if principal.hospital_id is None or exam.hospital_id == principal.hospital_id:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail="recognition applies to another hospital's exam / 本院检查无需互认")
    known = views.reason_index(ctx)
    reason = None
    if body.decision == NOT_RECOGNISED:
        if not body.reason_code or body.reason_code not in known:
            raise _unprocessable("不互认 needs a reason_code from GET /api/recognition/reasons / 不互认须选择原因")
        reason = known[body.reason_code]
    elif body.reason_code:
        raise _unprocessable("互认 takes no reason_code / 互认无需原因")
    if body.ordered_item and item_parts(body.ordered_item) is None:
        raise _unprocessable("unknown ordered_item (standard item code) / 未知的标准检查项目编码")
    rec = m.Recognition(exam_id=exam.id, user_id=principal.user_id, hospital_id=principal.hospital_id,
                        decision=body.decision, reason_code=body.reason_code if reason else None,
                        reason_category=str(reason["category"]) if reason else None,
                        comment=(body.comment or "").strip() or None, ordered_item=body.ordered_item)
    session.add(rec)
    session.commit()
    accesslog.record(ctx.workspace.sessions, action="recognition.record", user_id=principal.user_id,
                     username=principal.username, role=principal.role.name, exam_id=exam.id,
                     target=f"/api/exams/{exam.id}/recognition", client=principal.client,
                     detail={"recognition_id": rec.id, "decision": rec.decision, "reason_code": rec.reason_code,
                             "exam_hospital": hospital.code if hospital is not None else None})
    user = session.get(m.AppUser, principal.user_id)
    own = session.get(m.Hospital, principal.hospital_id)
    return views.recognition_out(rec, user, own, known)


@router.get("/api/exams/{exam_id}/recognition", summary="Decisions on an exam / 互认记录")
def list_decisions(request: Request, exam_id: int = Path(..., ge=1, le=MAX_ID), principal: Principal = Depends(require("recognition.read")),
                   session: Session = Depends(db)) -> dict[str, Any]:
    if views.scoped_exam_row(session, principal, exam_id) is None:
        raise not_found()
    return {"items": views.exam_recognitions(session, service(request), exam_id)}


@router.get("/api/patients/{patient_id}/repeat-check", summary="Repeated-exam reminder / 重复检查提醒")
def repeat_check(request: Request, patient_id: int = Path(..., ge=1, le=MAX_ID),
                 item: str = Query(..., max_length=64, pattern=NO_NUL, description="the standard item about to be ordered"),
                 window_days: int | None = Query(None, ge=1, le=3650,
                                                 description="default: RADQC_REPEAT_WINDOW_DAYS (180)"),
                 principal: Principal = Depends(require("exam.read")),
                 session: Session = Depends(db)) -> dict[str, Any]:
    from radqc import vocab

    ctx = service(request)
    spec = item_parts(item)
    if spec is None:
        raise _unprocessable("unknown item code (radqc.vocab standard items) / 未知的标准检查项目编码")
    patient = visible_patient(session, principal, patient_id)
    window = window_days or ctx.settings.repeat_window_days
    it = vocab.item(item)
    matches = repeat_candidates(session, ctx, principal, person_patient_ids(session, patient), item, window)
    return {"item": {"code": it.code, "name": it.name_zh, "name_en": it.name_en, "modality": it.modality,
                     "parts": list(it.parts)},
            "window_days": window, "items": matches}
