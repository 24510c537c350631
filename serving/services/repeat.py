"""重复检查提醒 (repeated-exam reminder): the person's recent exams at other hospitals that
cover what the doctor is about to order.

An earlier exam matches the ordered standard item (``radqc.vocab``) when

* its modality is the item's (DX also matches CR/DR: one class since the 2021 guideline), and
* one of its body parts overlaps one of the item's parts. Parts overlap when they are the
  same billing part or one lies inside the other in the parts hierarchy (``parts.yaml``
  ``hierarchy``: 上腹部 is inside 腹部; 颅脑 and 颈部 share only 头颈部 as an ancestor and do
  not overlap — a neck CT does not replace a head CT).

An exam's parts come from its standard items (see :mod:`exam_views`: the split's standard
series, else the items stage); an exam without any falls back to its series'
BodyPartExamined (a hint, wrong in ~15% of exams, but better than missing a repeat). The
candidates are one person's exams in a window, a few rows, so the part test runs in Python
after one SQL query that already applied scope, person, hospital, time and modality.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving.context import ServiceContext
from radqc.serving.security.principal import Principal
from radqc.serving.security.scope import exam_scope_clause
from radqc.serving.services import exam_views as views


def _part(name: str) -> Any | None:
    from radqc import vocab

    try:
        return vocab.part(name)
    except KeyError:
        return None


def parts_overlap(a: str, b: str) -> bool:
    """Same billing part, or one inside the other in the parts hierarchy."""
    pa, pb = _part(a), _part(b)
    if pa is None or pb is None:
        return a == b
    if pa.name == pb.name:
        return True
    return pa.name in pb.hierarchy[:-1] or pb.name in pa.hierarchy[:-1]


def item_parts(code: str) -> tuple[str, tuple[str, ...]] | None:
    """``(modality, parts)`` of a standard item code, or None when the code is unknown."""
    from radqc import vocab

    try:
        it = vocab.item(code)
    except KeyError:
        return None
    return it.modality, tuple(it.parts)


def repeat_candidates(session: Session, ctx: ServiceContext, principal: Principal, patient_ids: list[int],
                      item_code: str, window_days: int) -> list[dict[str, Any]]:
    """ExamSummary rows of matching exams, newest first."""
    spec = item_parts(item_code)
    if spec is None:
        return []
    modality, parts = spec
    since = datetime.now(UTC) - timedelta(days=window_days)
    where = [m.Exam.patient_id.in_(patient_ids), exam_scope_clause(principal), m.Exam.exam_time >= since,
             or_(*(views.member_clause(m.Exam.modality, mod) for mod in views.modality_set(modality)))]
    if principal.hospital_id is not None:
        where.append(or_(m.Exam.hospital_id.is_(None), m.Exam.hospital_id != principal.hospital_id))
    rows = [tuple(r) for r in session.execute(views.exam_rows(where)
                                              .order_by(m.Exam.exam_time.desc(), m.Exam.id.desc())).all()]
    if not rows:
        return []
    ids = [r[0].id for r in rows]
    items = views.exam_items(session, ids)
    body_parts: dict[int, set[str]] = {}
    for exam_id, body_part in session.execute(select(m.Series.exam_id, m.Series.body_part)
                                              .where(m.Series.exam_id.in_(ids), m.Series.body_part.is_not(None))):
        body_parts.setdefault(exam_id, set()).add(str(body_part))
    matched = []
    for row in rows:
        exam_id = row[0].id
        exam_parts: set[str] = set()
        for it in items.get(exam_id, []):
            spec_i = item_parts(it["code"])
            if spec_i is not None:
                exam_parts.update(spec_i[1])
        if not exam_parts:
            exam_parts = {p.name for bp in body_parts.get(exam_id, ()) if (p := _part(bp)) is not None}
        if any(parts_overlap(a, b) for a in exam_parts for b in parts):
            matched.append(row)
    decisions = views.latest_recognitions(session, principal, [r[0].id for r in matched])
    return [views.summary(ctx, principal, e, h, p, q, items.get(e.id, []), decisions.get(e.id))
            for e, h, p, q in matched]
