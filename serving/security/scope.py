"""Which exams a principal may see (数据范围): one SQL clause for lists, one check for details.

* ``region``: every exam.
* ``own_hospital``: exams whose hospital is the user's.
* ``own_hospital_or_authorised``: those, plus exams of patients (by the cross-hospital
  ``person_key``) with an active authorisation for the user's hospital or for every hospital.
* ``none`` or a user without a hospital where one is needed: nothing.

Every route that touches an exam goes through :func:`exam_scope_clause` or
:func:`exam_in_scope`; there is no second place that decides visibility.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select, true
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving.security.principal import Principal


def authorised_person_keys(hospital_id: int, now: datetime | None = None) -> Select[Any]:
    """Person keys with an active authorisation for ``hospital_id`` (or for every hospital)."""
    now = now or datetime.now(UTC)
    auth = m.PatientAuthorisation
    return select(auth.person_key).where(
        or_(auth.grantee_hospital_id.is_(None), auth.grantee_hospital_id == hospital_id),
        auth.revoked_at.is_(None),
        or_(auth.expires_at.is_(None), auth.expires_at > now),
    )


def exam_scope_clause(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause over ``m.Exam`` limiting rows to what ``principal`` may see."""
    scope = principal.role.scope
    if scope == "region":
        return true()
    if principal.hospital_id is None:
        return false()
    own = m.Exam.hospital_id == principal.hospital_id
    if scope == "own_hospital":
        return own
    if scope == "own_hospital_or_authorised":
        authorised_patients = select(m.Patient.id).where(
            m.Patient.person_key.in_(authorised_person_keys(principal.hospital_id)))
        return or_(own, m.Exam.patient_id.in_(authorised_patients))
    return false()


def exam_in_scope(session: Session, principal: Principal, exam_id: int) -> bool:
    return bool(session.scalar(select(m.Exam.id).where(m.Exam.id == exam_id, exam_scope_clause(principal))))


def is_other_hospital(principal: Principal, exam_hospital_id: int | None) -> bool:
    """Another hospital's exam for this user (可见不可存 applies); region roles count as 'other'."""
    return principal.hospital_id is None or exam_hospital_id != principal.hospital_id
