"""FastAPI dependencies: the database session, the caller (token or API key), permissions.

Every route declares ``Depends(require("permission"))``; the OpenAPI schema then lists both
security schemes on it, and the route-enumeration test proves none answers without them.
A caller who is authenticated but lacks the permission gets 403 and an access-log entry
(``outcome`` "denied"); an unauthenticated caller gets 401.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving import accesslog
from radqc.serving.context import ServiceContext
from radqc.serving.security.principal import Principal
from radqc.serving.security.tokens import TokenError, api_key_matches, read_token, split_api_key

TOKEN_URL = "/api/auth/token"
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


def service(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def db(request: Request) -> AsyncIterator[Session]:
    """One session per request; handlers that write commit explicitly.

    An *async* generator on purpose: FastAPI runs a sync generator dependency's clean-up in the
    thread pool, so under load requests that had finished held their connection while waiting
    for a thread, and the threads waited for a connection (a deadlock: 0 requests/s at 50
    connections). Here the clean-up (closing the session returns the connection; a rollback at
    most) runs on the event loop and never waits for a thread. The session itself is used by the
    sync handlers in the pool, one thread at a time.
    """
    session = service(request).workspace.sessions()
    try:
        yield session
    finally:
        session.close()


def client_address(request: Request) -> str | None:
    """The caller's address for the log: X-Forwarded-For's first hop when behind the region's proxy."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else None


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"})


#: The caller's row, reloaded on every request (a disabled user or a changed password ends
#: their tokens at once). Plain columns, built once: the ORM entity and the statement's
#: construction cost more than the look-up.
_USER = (select(m.AppUser.id, m.AppUser.username, m.AppUser.role, m.AppUser.hospital_id, m.AppUser.display_name,
                m.AppUser.active, m.AppUser.token_version, m.Hospital.code)
         .outerjoin(m.Hospital, m.Hospital.id == m.AppUser.hospital_id)
         .where(m.AppUser.id == bindparam("user_id")))


def _principal_for(session: Session, ctx: ServiceContext, user_id: int, via: str, client: str | None,
                   token_version: int | None = None) -> Principal:
    row = session.execute(_USER, {"user_id": user_id}).first()
    if row is None:
        raise _unauthorised("unknown user / 用户不存在")
    if not row.active:
        raise _unauthorised("user disabled / 用户已停用")
    if token_version is not None and token_version != row.token_version:
        raise _unauthorised("token revoked; log in again / 令牌已失效，请重新登录")
    return Principal(user_id=row.id, username=row.username, role=ctx.roles.role(row.role),
                     hospital_id=row.hospital_id, hospital_code=row.code, display_name=row.display_name,
                     via=via, client=client)


async def authenticate(request: Request, token: str | None = Depends(oauth2_scheme),
                       api_key: str | None = Depends(api_key_scheme), session: Session = Depends(db)) -> Principal:
    """The caller, from a bearer token (people) or an X-API-Key header (systems).

    Runs on the event loop, not in the thread pool: it is one indexed look-up by primary key
    (the user, or the key by its prefix), shorter than the hand-over to a pool thread and back
    that a sync dependency costs on every request (measured: the exam-detail route spent more
    CPU in thread hand-overs than in authentication)."""
    ctx = service(request)
    client = client_address(request)
    if token:
        try:
            claims = read_token(ctx.settings.signing_key, token)
            user_id = int(claims["sub"])
        except (TokenError, ValueError) as exc:
            raise _unauthorised(str(exc)) from exc
        return _principal_for(session, ctx, user_id, "token", client, int(claims["ver"]))
    if api_key:
        parts = split_api_key(api_key)
        if parts is None:
            raise _unauthorised("malformed API key / API 密钥格式错误")
        prefix, secret = parts
        key = session.scalar(select(m.ApiKey).where(m.ApiKey.prefix == prefix))
        now = datetime.now(UTC)
        if (key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now)
                or not api_key_matches(ctx.settings.api_key_secret, secret, key.key_hash)):
            raise _unauthorised("invalid or revoked API key / API 密钥无效或已撤销")
        return _principal_for(session, ctx, key.user_id, "api_key", client)
    raise _unauthorised("not authenticated / 未登录")


def require(permission: str) -> Callable[..., Principal]:
    """A dependency: the authenticated caller, who must hold ``permission`` (serving/roles.yaml)."""

    async def dependency(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
        if not principal.can(permission):
            # The denial is committed before answering (group commit may wait): off the loop.
            await run_in_threadpool(
                accesslog.record, service(request).workspace.sessions, action="denied", user_id=principal.user_id,
                username=principal.username, role=principal.role.name, target=str(request.url.path),
                client=principal.client, outcome="denied", detail={"permission": permission})
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"permission {permission} required / 无此权限")
        return principal

    dependency.__name__ = f"require_{permission.replace('.', '_')}"
    return dependency
