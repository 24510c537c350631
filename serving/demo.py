"""Demo access to the service: one account per role and the patients' authorisations.

``radqc demo`` ends with the service running on the demo catalogue; people trying it need
accounts, and a doctor needs a returning patient who authorised their hospital, or the
recognition (互认) view has nothing from another hospital to show. This module creates both,
idempotently, from what the catalogue holds (no hospital codes are hard-coded: the synthetic
generator's hospitals, or whatever was ingested).

Passwords: ``RADQC_DEMO_PASSWORD`` when set (every demo account gets it), otherwise random per
workspace (``secrets.token_urlsafe``), saved with mode 0600 in
``<home>/.secrets/demo-accounts.json`` beside the workspace secret, so a second run prints the
same ones. They are demo credentials for a loopback service, never real users' passwords.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m
from radqc.workspace import Workspace

PASSWORD_ENV = "RADQC_DEMO_PASSWORD"
ACCOUNTS_FILE = "demo-accounts.json"
#: The channel recorded on the demo's authorisations (so they can be told from real ones).
DEMO_CHANNEL = "demo"


@dataclass(frozen=True)
class DemoAccount:
    """One demo account to create. ``hospital`` is 'a' / 'b' (the two doctors' hospitals) or None."""

    username: str
    role: str
    display_zh: str
    hospital: str | None = None


#: One account per role; doctors at the two hospitals that share the most returning patients.
ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("doctor_a", "doctor", "演示医生甲", "a"),
    DemoAccount("doctor_b", "doctor", "演示医生乙", "b"),
    DemoAccount("qc_l1", "qc_expert_l1", "一级质控专家（演示）"),
    DemoAccount("qc_l2", "qc_expert_l2", "二级质控专家（演示）"),
    DemoAccount("data_engineer", "data_engineer", "数据工程师（演示）"),
    DemoAccount("auditor", "auditor", "医保稽核员（演示）"),
    DemoAccount("hospital_admin", "hospital_admin", "医院管理员（演示）", "a"),
    DemoAccount("admin", "admin", "平台管理员（演示）"),
)


def accounts_path(ws: Workspace) -> Path:
    return ws.settings.home / ".secrets" / ACCOUNTS_FILE


def _load_saved(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in (data.get("passwords") or {}).items()} if isinstance(data, dict) else {}


def _save(path: Path, passwords: dict[str, str]) -> None:
    """Write the file 0600 from the start (never world-readable, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"note": "demo accounts of this workspace / 本工作区的演示账号", "passwords": passwords}, handle,
                  ensure_ascii=False, indent=1)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _persons_across_hospitals(session: Session) -> dict[str, list[tuple[datetime | None, int, int]]]:
    """person_key -> [(exam_time, exam id, hospital id)] for persons with exams at >= 2 hospitals."""
    rows = session.execute(
        select(m.Patient.person_key, m.Exam.exam_time, m.Exam.id, m.Exam.hospital_id)
        .join(m.Patient, m.Patient.id == m.Exam.patient_id)
        .where(m.Patient.person_key.is_not(None), m.Exam.hospital_id.is_not(None))).all()
    by_person: dict[str, list[tuple[datetime | None, int, int]]] = {}
    for key, when, exam_id, hospital_id in rows:
        by_person.setdefault(str(key), []).append((when, int(exam_id), int(hospital_id or 0)))
    return {k: sorted(v, key=_time_key) for k, v in by_person.items() if len({h for _, _, h in v}) >= 2}


def _time_key(item: tuple[datetime | None, int, int]) -> tuple[float, int]:
    when, exam_id, _ = item
    return (when.timestamp() if when is not None else float("-inf"), exam_id)


def _doctor_hospitals(session: Session, persons: dict[str, list[tuple[datetime | None, int, int]]]) -> list[int]:
    """The two hospitals sharing the most returning persons (else the two with most exams)."""
    pairs: Counter[tuple[int, int]] = Counter()
    for exams in persons.values():
        for pair in combinations(sorted({h for _, _, h in exams}), 2):
            pairs[pair] += 1
    if pairs:
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        # hospital "a" is the one whose doctors decide more often (it holds more later exams)
        later = Counter(exams[-1][2] for exams in persons.values())
        return [a, b] if later[a] >= later[b] else [b, a]
    counts = Counter(h for (h,) in session.execute(select(m.Exam.hospital_id).where(m.Exam.hospital_id.is_not(None))))
    found = [int(h) for h, _ in counts.most_common(2) if h is not None]
    if not found:
        return []
    return found if len(found) == 2 else found * 2


def _authorise(session: Session, persons: dict[str, list[tuple[datetime | None, int, int]]]) -> int:
    """For each returning person, authorise the hospital of their latest exam (the doctor there
    decides whether to accept the earlier exams). Existing active grants are kept. Returns new rows."""
    active = {(a.person_key, a.grantee_hospital_id) for a in session.scalars(
        select(m.PatientAuthorisation).where(m.PatientAuthorisation.revoked_at.is_(None)))}
    added = 0
    for key, exams in sorted(persons.items()):
        grantee = exams[-1][2]
        if (key, grantee) in active:
            continue
        session.add(m.PatientAuthorisation(person_key=key, grantee_hospital_id=grantee, channel=DEMO_CHANNEL,
                                           note="demo: the patient authorised the hospital of the later exam "
                                                "/ 演示：患者授权后一次就诊的医院调阅"))
        added += 1
    session.flush()
    return added


def seed_demo_access(ws: Workspace) -> list[dict[str, Any]]:
    """Create the demo accounts and authorisations (idempotent); return the accounts to print:
    ``[{"role", "username", "password", "hospital", "hospital_name", "display_name"}]``.

    Existing users are kept; one whose saved password is missing (or differs from
    ``RADQC_DEMO_PASSWORD``) gets the password printed now, so what is printed always works.
    Accounts needing a hospital are skipped when the catalogue has no hospital yet.
    """
    from radqc.serving.accounts import create_user, set_password

    path = accounts_path(ws)
    saved = _load_saved(path)
    forced = os.environ.get(PASSWORD_ENV) or None
    out: list[dict[str, Any]] = []
    with ws.transaction() as s:
        persons = _persons_across_hospitals(s)
        hospital_ids = _doctor_hospitals(s, persons)
        hospitals = {h.id: h for h in s.scalars(select(m.Hospital).where(m.Hospital.id.in_(hospital_ids)))}
        slot = {"a": hospitals.get(hospital_ids[0]) if hospital_ids else None,
                "b": hospitals.get(hospital_ids[1]) if len(hospital_ids) > 1 else None}
        for spec in ACCOUNTS:
            hospital = slot.get(spec.hospital) if spec.hospital else None
            if spec.hospital and hospital is None:
                continue
            display = spec.display_zh + (f"（{hospital.name or hospital.code}）" if hospital is not None else "")
            password = forced or saved.get(spec.username) or secrets.token_urlsafe(12)
            user = s.scalar(select(m.AppUser).where(m.AppUser.username == spec.username))
            if user is None:
                create_user(s, spec.username, spec.role, password=password,
                            hospital_code=hospital.code if hospital is not None else None, display_name=display)
            elif saved.get(spec.username) != password:
                set_password(s, spec.username, password)
            saved[spec.username] = password
            out.append({"role": spec.role, "username": spec.username, "password": password,
                        "hospital": hospital.code if hospital is not None else None,
                        "hospital_name": hospital.name if hospital is not None else None,
                        "display_name": display})
        _authorise(s, persons)
    _save(path, saved)
    return out


def demo_patient_link(ws: Workspace, accounts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A patient to try as the first demo doctor: one of that hospital's patients whose person
    has an authorised exam at another hospital. ``{"username", "patient_id", "exam_id",
    "other_exam_id", "path"}`` (``path`` is the web UI's deep link), or None."""
    doctor = next((a for a in accounts if a["role"] == "doctor" and a.get("hospital")), None)
    if doctor is None:
        return None
    with ws.sessions() as s:
        hospital_id = s.scalar(select(m.Hospital.id).where(m.Hospital.code == doctor["hospital"]))
        persons = _persons_across_hospitals(s)
        granted = {a.person_key for a in s.scalars(select(m.PatientAuthorisation).where(
            m.PatientAuthorisation.revoked_at.is_(None), m.PatientAuthorisation.grantee_hospital_id == hospital_id))}
        for key in sorted(persons):
            exams = persons[key]
            own = [e for e in exams if e[2] == hospital_id]
            other = [e for e in exams if e[2] != hospital_id]
            if key not in granted or not own or not other:
                continue
            patient_id = s.scalar(select(m.Exam.patient_id).where(m.Exam.id == own[-1][1]))
            return {"username": doctor["username"], "patient_id": patient_id, "exam_id": own[-1][1],
                    "other_exam_id": other[-1][1], "path": f"/#/patient/{patient_id}"}
    return None
