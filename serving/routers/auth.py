"""Login (OAuth2 password flow → short-lived bearer token) and who-am-I.

Failed logins count per user; after ``lockout_attempts`` the account is locked for
``lockout_minutes`` (the response does not say whether the user exists). Every login, good or
bad, is written to the access log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving import accesslog
from radqc.serving.accounts import user_summary
from radqc.serving.security.deps import authenticate, client_address, db, service
from radqc.serving.security.passwords import hash_password, needs_rehash, verify_password
from radqc.serving.security.principal import Principal
from radqc.serving.security.tokens import issue_token

router = APIRouter(prefix="/api/auth", tags=["auth / 认证"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    user: dict[str, Any]


@router.post("/token", response_model=TokenResponse, summary="Log in (OAuth2 password flow) / 登录")
def login(request: Request, form: OAuth2PasswordRequestForm = Depends(), session: Session = Depends(db)) -> TokenResponse:
    ctx = service(request)
    client = client_address(request)
    now = datetime.now(UTC)
    row = session.execute(select(m.AppUser, m.Hospital.code).outerjoin(m.Hospital, m.Hospital.id == m.AppUser.hospital_id)
                          .where(m.AppUser.username == form.username[:64])).first()
    user, hospital_code = (row[0], row[1]) if row else (None, None)
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    good = verify_password(user.password_hash if user else None, form.password)
    if user is None or not user.active or locked or not good:
        reason = "locked" if locked else "bad credentials"
        if user is not None and not locked and not good:
            user.failed_logins += 1
            if user.failed_logins >= ctx.settings.lockout_attempts:
                user.locked_until = now + timedelta(minutes=ctx.settings.lockout_minutes)
                user.failed_logins = 0
            session.commit()
        accesslog.record(ctx.workspace.sessions, action="login", username=form.username[:64], client=client,
                         outcome="denied", detail={"reason": reason})
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            detail="wrong username or password, or account locked / 用户名或密码错误，或账户已锁定",
                            headers={"WWW-Authenticate": "Bearer"})
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(form.password)
    token, expires = issue_token(ctx.settings.signing_key, user_id=user.id, role=user.role,
                                 hospital_id=user.hospital_id, token_version=user.token_version,
                                 minutes=ctx.settings.token_minutes)
    summary = user_summary(user, hospital_code)
    session.commit()
    accesslog.record(ctx.workspace.sessions, action="login", user_id=user.id, username=user.username,
                     role=user.role, client=client)
    return TokenResponse(access_token=token, expires_at=expires, user=summary)


@router.get("/me", summary="The current user, role and permissions / 当前用户")
def me(principal: Principal = Depends(authenticate)) -> dict[str, Any]:
    return {"id": principal.user_id, "username": principal.username, "display_name": principal.display_name,
            "role": principal.role.name, "role_label": {"zh": principal.role.label_zh, "en": principal.role.label_en},
            "hospital": principal.hospital_code, "permissions": sorted(principal.role.permissions),
            "scope": principal.role.scope, "via": principal.via}
