"""Administration: users (``users.manage``), patient authorisations (``authorisation.manage``:
the patient portal and platform admins), the access log and its chain check (``auditlog.read``).

Every write is itself written to the access log. An authorisation request may name the
patient by national ID number; the number is turned into the cross-hospital pseudonym at once
and never stored, returned or logged in clear.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving import accesslog, accounts
from radqc.serving.routers.exams import MAX_ID, NO_NUL
from radqc.serving.security.deps import db, require, service
from radqc.serving.security.principal import Principal
from radqc.serving.services.exam_views import iso

router = APIRouter(tags=["admin / 管理"])

MIN_PASSWORD = 12


class UserIn(BaseModel):
    username: str = Field(..., min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: str = Field(..., max_length=32, pattern=NO_NUL)
    password: str | None = Field(None, min_length=MIN_PASSWORD, max_length=256)
    hospital: str | None = Field(None, max_length=64, pattern=NO_NUL, description="hospital code (doctor, hospital_admin)")
    display_name: str | None = Field(None, max_length=128, pattern=NO_NUL)


class AuthorisationIn(BaseModel):
    exam_id: int | None = Field(None, ge=1, le=MAX_ID, description="any exam of the patient")
    id_number: str | None = Field(None, min_length=6, max_length=32, pattern=NO_NUL,
                                  description="national ID number (not stored)")
    hospital: str | None = Field(None, max_length=64, pattern=NO_NUL,
                                 description="grantee hospital code; null: every hospital")
    expires_at: datetime | None = Field(None, description="naive times are UTC")
    channel: str | None = Field(None, max_length=32, pattern=NO_NUL, description="app, kiosk, paper, api")
    note: str | None = Field(None, max_length=500, pattern=NO_NUL)

    @model_validator(mode="after")
    def one_patient_reference(self) -> AuthorisationIn:
        if (self.exam_id is None) == (self.id_number is None):
            raise ValueError("give exactly one of exam_id and id_number / exam_id 与 id_number 须且仅须给出一个")
        return self


def _log(request: Request, principal: Principal, action: str, *, exam_id: int | None = None,
         detail: dict[str, Any] | None = None) -> None:
    accesslog.record(service(request).workspace.sessions, action=action, user_id=principal.user_id,
                     username=principal.username, role=principal.role.name, exam_id=exam_id,
                     target=str(request.url.path), client=principal.client, detail=detail or {})


@router.get("/api/admin/users", summary="Users / 用户列表")
def list_users(principal: Principal = Depends(require("users.manage")),
               session: Session = Depends(db)) -> dict[str, Any]:
    rows = session.execute(select(m.AppUser, m.Hospital.code).outerjoin(m.Hospital, m.Hospital.id == m.AppUser.hospital_id)
                           .order_by(m.AppUser.username)).all()
    return {"items": [accounts.user_summary(u, code) | {"last_login_at": iso(u.last_login_at),
                                                         "created_at": iso(u.created_at)} for u, code in rows]}


@router.post("/api/admin/users", status_code=status.HTTP_201_CREATED, summary="Create a user / 新建用户")
def create_user(request: Request, body: UserIn, principal: Principal = Depends(require("users.manage")),
                session: Session = Depends(db)) -> dict[str, Any]:
    ctx = service(request)
    if body.role not in ctx.roles.roles:
        raise HTTPException(422,
                            detail=f"unknown role; known: {', '.join(ctx.roles.roles)} / 未知角色")
    try:
        user = accounts.create_user(session, body.username, body.role, password=body.password,
                                    hospital_code=body.hospital, display_name=body.display_name)
    except accounts.AccountError as exc:
        code = status.HTTP_409_CONFLICT if "exists" in str(exc) else 422
        raise HTTPException(code, detail=str(exc)) from exc
    session.commit()
    _log(request, principal, "user.create", detail={"new_user_id": user.id, "new_username": user.username,
                                                     "new_role": user.role, "hospital": body.hospital})
    return accounts.user_summary(user, body.hospital)


def _authorisation_out(row: m.PatientAuthorisation, hospital_code: str | None) -> dict[str, Any]:
    return {"id": row.id, "hospital": hospital_code, "channel": row.channel, "granted_at": iso(row.granted_at),
            "expires_at": iso(row.expires_at), "revoked_at": iso(row.revoked_at), "note": row.note,
            "active": row.revoked_at is None and (row.expires_at is None or row.expires_at > datetime.now(UTC))}


@router.post("/api/authorisations", status_code=status.HTTP_201_CREATED,
             summary="Record a patient's authorisation / 登记患者授权")
def grant(request: Request, body: AuthorisationIn, principal: Principal = Depends(require("authorisation.manage")),
          session: Session = Depends(db)) -> dict[str, Any]:
    ctx = service(request)
    try:
        if body.exam_id is not None:
            person_key = accounts.person_key_of_exam(session, body.exam_id)
        else:
            person_key = ctx.workspace.vault.pseudonym("id_number", str(body.id_number))
        expires = body.expires_at
        if expires is not None and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        row = accounts.grant_authorisation(session, person_key, body.hospital, channel=body.channel or principal.via,
                                           expires_at=expires, note=body.note)
    except accounts.AccountError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    session.commit()
    _log(request, principal, "authorisation.grant", exam_id=body.exam_id,
         detail={"authorisation_id": row.id, "hospital": body.hospital,
                 "by": "exam_id" if body.exam_id is not None else "id_number"})
    return _authorisation_out(row, body.hospital)


@router.delete("/api/authorisations/{authorisation_id}", summary="Revoke an authorisation / 撤销患者授权")
def revoke(request: Request, authorisation_id: int = Path(..., ge=1, le=MAX_ID), principal: Principal = Depends(require("authorisation.manage")),
           session: Session = Depends(db)) -> dict[str, Any]:
    try:
        row = accounts.revoke_authorisation(session, authorisation_id)
    except accounts.AccountError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    session.commit()
    code = session.scalar(select(m.Hospital.code).where(m.Hospital.id == row.grantee_hospital_id)) \
        if row.grantee_hospital_id else None
    _log(request, principal, "authorisation.revoke", detail={"authorisation_id": row.id})
    return _authorisation_out(row, code)


@router.get("/api/audit-log", summary="Access log / 访问日志")
def audit_log(limit: int = Query(100, ge=1, le=1000), exam_id: int | None = Query(None, ge=1, le=MAX_ID),
              action: str | None = Query(None, max_length=48, pattern=NO_NUL),
              before_id: int | None = Query(None, ge=1, le=MAX_ID),
              principal: Principal = Depends(require("auditlog.read")),
              session: Session = Depends(db)) -> dict[str, Any]:
    A = m.AccessLogEntry
    q = select(A).order_by(A.id.desc()).limit(limit)
    if exam_id is not None:
        q = q.where(A.exam_id == exam_id)
    if action:
        q = q.where(A.action == action)
    if before_id is not None:
        q = q.where(A.id < before_id)
    return {"items": [{"id": e.id, "at": iso(e.at), "user_id": e.user_id, "username": e.username, "role": e.role,
                       "action": e.action, "exam_id": e.exam_id, "target": e.target, "client": e.client,
                       "outcome": e.outcome, "detail": e.detail or {}, "hash": e.hash}
                      for e in session.scalars(q)]}


@router.get("/api/audit-log/verify", summary="Verify the access log's SM3 chain / 校验访问日志链")
def audit_log_verify(principal: Principal = Depends(require("auditlog.read")),
                     session: Session = Depends(db)) -> dict[str, Any]:
    return accesslog.verify_chain(session).as_dict()
