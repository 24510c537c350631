"""Users, API keys and patient authorisations: the writes behind ``radqc users`` / ``radqc authorise``
and the admin routes. Each function works inside the caller's session (the caller commits)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.serving.security.passwords import hash_password
from radqc.serving.security.roles import load_roles
from radqc.serving.security.tokens import api_key_hash, new_api_key


class AccountError(ValueError):
    pass


def hospital_by_code(session: Session, code: str, *, create: bool = False, name: str | None = None) -> m.Hospital:
    hospital = session.scalar(select(m.Hospital).where(m.Hospital.code == code))
    if hospital is None:
        if not create:
            raise AccountError(f"unknown hospital {code!r} / 未知医院")
        hospital = m.Hospital(code=code, name=name)
        session.add(hospital)
        session.flush()
    return hospital


def create_user(session: Session, username: str, role: str, *, password: str | None = None,
                hospital_code: str | None = None, display_name: str | None = None) -> m.AppUser:
    """A new user. Roles scoped to a hospital (doctor, hospital_admin) must name one."""
    book = load_roles()
    spec = book.role(role)
    if session.scalar(select(m.AppUser.id).where(m.AppUser.username == username)) is not None:
        raise AccountError(f"user {username!r} exists / 用户已存在")
    hospital_id = None
    if hospital_code:
        hospital_id = hospital_by_code(session, hospital_code).id
    elif spec.scope in ("own_hospital", "own_hospital_or_authorised"):
        raise AccountError(f"role {role} needs --hospital / 该角色须指定所属医院")
    user = m.AppUser(username=username, role=role, hospital_id=hospital_id, display_name=display_name,
                     password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, username: str, password: str) -> m.AppUser:
    user = _user(session, username)
    user.password_hash = hash_password(password)
    user.token_version += 1  # every token issued before ends now
    user.failed_logins = 0
    user.locked_until = None
    return user


def set_active(session: Session, username: str, active: bool) -> m.AppUser:
    user = _user(session, username)
    user.active = active
    user.token_version += 1
    return user


def create_api_key(session: Session, username: str, name: str, api_key_secret: bytes,
                   expires_at: datetime | None = None) -> tuple[m.ApiKey, str]:
    """A new API key for ``username``; the full key is returned once and never stored."""
    user = _user(session, username)
    full, prefix, secret = new_api_key()
    key = m.ApiKey(user_id=user.id, name=name, prefix=prefix, key_hash=api_key_hash(api_key_secret, secret),
                   expires_at=expires_at)
    session.add(key)
    session.flush()
    return key, full


def revoke_api_key(session: Session, prefix: str) -> m.ApiKey:
    key = session.scalar(select(m.ApiKey).where(m.ApiKey.prefix == prefix))
    if key is None:
        raise AccountError(f"no API key with prefix {prefix!r} / 无此密钥")
    key.revoked_at = key.revoked_at or datetime.now(UTC)
    return key


def _user(session: Session, username: str) -> m.AppUser:
    user = session.scalar(select(m.AppUser).where(m.AppUser.username == username))
    if user is None:
        raise AccountError(f"unknown user {username!r} / 用户不存在")
    return user


def person_key_of_exam(session: Session, exam_id: int) -> str:
    row = session.execute(select(m.Patient.person_key).join(m.Exam, m.Exam.patient_id == m.Patient.id)
                          .where(m.Exam.id == exam_id)).first()
    if row is None or not row[0]:
        raise AccountError(f"exam {exam_id} has no patient with a national ID; cannot authorise across hospitals "
                           "/ 该检查患者无身份证号，无法跨院授权")
    return str(row[0])


def grant_authorisation(session: Session, person_key: str, grantee_hospital_code: str | None, *,
                        channel: str | None = None, expires_at: datetime | None = None,
                        note: str | None = None) -> m.PatientAuthorisation:
    """The patient allows ``grantee_hospital_code`` (None: every hospital) to view their exams."""
    grantee = hospital_by_code(session, grantee_hospital_code).id if grantee_hospital_code else None
    row = m.PatientAuthorisation(person_key=person_key, grantee_hospital_id=grantee, channel=channel,
                                 expires_at=expires_at, note=note)
    session.add(row)
    session.flush()
    return row


def revoke_authorisation(session: Session, authorisation_id: int) -> m.PatientAuthorisation:
    row = session.get(m.PatientAuthorisation, authorisation_id)
    if row is None:
        raise AccountError(f"no authorisation {authorisation_id} / 无此授权")
    row.revoked_at = row.revoked_at or datetime.now(UTC)
    return row


def user_summary(user: m.AppUser, hospital_code: str | None = None) -> dict[str, Any]:
    role = load_roles().role(user.role)
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role,
            "role_label": {"zh": role.label_zh, "en": role.label_en}, "hospital": hospital_code,
            "active": user.active, "permissions": sorted(role.permissions), "scope": role.scope}
