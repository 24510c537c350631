"""The ``series`` stage's catalogue projection: standard series, their instances, exam tags.

The stage result (docs/series.md) is turned into rows other parts of the product query:

* one :class:`~radqc.catalogue.models.StandardSeries` per (standard item x assigned series or
  slab), with the instance links of exactly the original instances it is made of. Originals
  are never touched: a slab is a list of links, not a copy;
* the exam's :class:`~radqc.catalogue.models.ExamTag` rows owned by the stage ``series``.

Called by the runner inside the transaction that records the stage's succeeded result, so a
result and its rows never disagree; idempotent per exam (a re-run replaces the exam's rows).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

STAGE_NAME = "series"


def standard_series_uid(exam_key: str, item_code: str | None, source_series_uid: str,
                        slab: dict[str, Any] | None) -> str:
    """A 2.25 UID, stable for the same exam, item, source series and slab (re-runs keep it)."""
    span = "" if not slab else f"{slab.get('z_from_mm')}:{slab.get('z_to_mm')}"
    digest = hashlib.sha256(f"{exam_key}|{item_code}|{source_series_uid}|{span}".encode()).hexdigest()
    return "2.25." + str(int(digest[:32], 16))


def project(session: Session, exam_id: int, ledger_id: int, result: Any) -> None:
    """Replace the exam's standard series, their instance links and its ``series`` tags."""
    from radqc.catalogue import models as m

    old = select(m.StandardSeries.id).where(m.StandardSeries.exam_id == exam_id)
    session.execute(delete(m.StandardSeriesInstance).where(m.StandardSeriesInstance.standard_series_id.in_(old)))
    session.execute(delete(m.StandardSeries).where(m.StandardSeries.exam_id == exam_id))
    session.execute(delete(m.ExamTag).where(m.ExamTag.exam_id == exam_id, m.ExamTag.stage == STAGE_NAME))
    if not isinstance(result, dict):
        return
    labels = {s.get("series_uid"): s for s in result.get("series") or [] if isinstance(s, dict)}
    exam_key = str(result.get("study_instance_uid") or exam_id)
    split = result.get("split") or {}
    seen: set[str] = set()
    for item in split.get("standard_items") or []:
        for entry in item.get("series") or []:
            uid = standard_series_uid(exam_key, item.get("code"), entry["series_uid"], entry.get("slab"))
            if uid in seen:
                continue
            seen.add(uid)
            slab = entry.get("slab") or {}
            ids = [int(i) for i in entry.get("instance_ids") or []]
            label = dict(labels.get(entry["series_uid"]) or {})
            label.update(assigned_by=entry.get("assigned_by"), assignment_confidence=entry.get("confidence"),
                         boundary_source=slab.get("boundary_source"))
            row = m.StandardSeries(
                exam_id=exam_id, source_series_id=entry.get("series_id"), standard_series_uid=uid,
                item_code=item.get("code"), category=entry.get("category"), role=entry.get("role"),
                z_from_mm=slab.get("z_from_mm"), z_to_mm=slab.get("z_to_mm"), instance_count=len(ids),
                label=label, ledger_id=ledger_id)
            session.add(row)
            session.flush()
            session.add_all(m.StandardSeriesInstance(standard_series_id=row.id, instance_id=i) for i in sorted(set(ids)))
    tags: dict[str, dict[str, Any]] = {}
    for tag in result.get("tags") or []:
        if isinstance(tag, dict) and tag.get("tag"):
            tags[str(tag["tag"])] = tag  # one row per tag (unique per exam): the last value wins
    for name, tag in tags.items():
        value = tag.get("value")
        session.add(m.ExamTag(exam_id=exam_id, tag=name[:64], value=None if value is None else str(value)[:128],
                              stage=STAGE_NAME, evidence=_evidence(tag.get("evidence")), ledger_id=ledger_id))


def _evidence(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {"detail": value} if value is not None else {}


def standard_series_instances(session: Session, standard_series_uid: str) -> list[Any]:
    """The original instances of a standard series (catalogue ``Instance`` rows, z order kept
    by instance number); empty when the UID is unknown."""
    from radqc.catalogue import models as m

    rows = session.execute(
        select(m.Instance)
        .join(m.StandardSeriesInstance, m.StandardSeriesInstance.instance_id == m.Instance.id)
        .join(m.StandardSeries, m.StandardSeries.id == m.StandardSeriesInstance.standard_series_id)
        .where(m.StandardSeries.standard_series_uid == standard_series_uid)
        .order_by(m.Instance.instance_number, m.Instance.id)
    ).scalars().all()
    return list(rows)


def standard_series_of_exam(session: Session, exam_id: int) -> list[Any]:
    """The exam's standard series rows, by item then category."""
    from radqc.catalogue import models as m

    return list(session.execute(
        select(m.StandardSeries).where(m.StandardSeries.exam_id == exam_id)
        .order_by(m.StandardSeries.item_code, m.StandardSeries.category, m.StandardSeries.id)
    ).scalars().all())
