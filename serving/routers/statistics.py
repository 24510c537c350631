"""Statistics: recognition decisions and reasons, QC score distributions (``stats.read``);
``format=csv`` exports them (``stats.export``, logged as "stats.export").

Rows are limited to the caller's exam scope, so a hospital_admin sees their own hospital's
exams only. Aggregation is SQL (serving/services/stats.py).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from sqlalchemy.orm import Session

from radqc.serving import accesslog
from radqc.serving.security.deps import db, require, service
from radqc.serving.security.principal import Principal
from radqc.serving.services import stats

router = APIRouter(prefix="/api/stats", tags=["statistics / 统计"])


def _csv_allowed(request: Request, principal: Principal) -> None:
    """``format=csv`` needs stats.export on top of stats.read; a refusal is logged like any other."""
    if not principal.can("stats.export"):
        accesslog.record(service(request).workspace.sessions, action="denied", user_id=principal.user_id,
                         username=principal.username, role=principal.role.name, target=str(request.url.path),
                         client=principal.client, outcome="denied", detail={"permission": "stats.export"})
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="permission stats.export required / 无导出权限")


def _csv_response(request: Request, principal: Principal, kind: str, data: dict[str, Any],
                  params: dict[str, Any]) -> Response:
    ctx = service(request)
    body = stats.to_csv(kind, data, ctx.recognition_reasons())
    accesslog.record(ctx.workspace.sessions, action="stats.export", user_id=principal.user_id,
                     username=principal.username, role=principal.role.name, target=str(request.url.path),
                     client=principal.client, detail={"kind": kind, **params, "rows": len(data["rows"])})
    filename = f"radqc-{kind}-stats-by-{data['by']}.csv"
    return Response(content=body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/recognition", summary="Recognition statistics / 互认统计",
            responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
def recognition_stats(
    request: Request,
    by: Literal["hospital", "item", "reason", "month", "doctor_hospital"] = Query("hospital"),
    date_from: date | None = Query(None, description="decisions from (inclusive, UTC)"),
    date_to: date | None = Query(None, description="decisions to (inclusive, UTC)"),
    format: Literal["json", "csv"] = Query("json"),
    principal: Principal = Depends(require("stats.read")),
    session: Session = Depends(db),
) -> Any:
    params = {"by": by, "date_from": date_from.isoformat() if date_from else None,
              "date_to": date_to.isoformat() if date_to else None}
    if format == "csv":
        _csv_allowed(request, principal)
    data = stats.recognition_stats(session, principal, by, service(request).recognition_reasons(), date_from, date_to)
    if format == "csv":
        return _csv_response(request, principal, "recognition", data, params)
    return data


@router.get("/qc", summary="QC score distributions / 质控评分分布",
            responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
def qc_stats(
    request: Request,
    by: Literal["hospital", "modality", "item"] = Query("hospital"),
    format: Literal["json", "csv"] = Query("json"),
    principal: Principal = Depends(require("stats.read")),
    session: Session = Depends(db),
) -> Any:
    if format == "csv":
        _csv_allowed(request, principal)
    data = stats.qc_stats(session, principal, by)
    if format == "csv":
        return _csv_response(request, principal, "qc", data, {"by": by})
    return data
