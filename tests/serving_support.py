"""Helpers for the service's tests: an app over a test workspace, users, logins, a tiny catalogue.

Tests use FastAPI's TestClient (the real app, in-process) for API behaviour and a real uvicorn
server for the browser and fuzzing tests (tests/test_serving_browser.py, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from radqc.catalogue import models as m

PASSWORD = "correct-horse-battery-9"


@contextmanager
def sql_statements(engine: Any) -> Iterator[list[str]]:
    """Every SQL statement ``engine`` runs inside the block, in order (clear the list to restart)."""
    from sqlalchemy import event

    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def make_client(ws: Any) -> TestClient:
    from radqc.serving.app import create_app

    return TestClient(create_app(ws))


def add_user(ws: Any, username: str, role: str, hospital: str | None = None, password: str = PASSWORD) -> None:
    from radqc.serving.accounts import create_user, hospital_by_code

    with ws.transaction() as s:
        if hospital:
            hospital_by_code(s, hospital, create=True)
        create_user(s, username, role, password=password, hospital_code=hospital, display_name=username.title())


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    """Authorization headers for ``username`` (asserts the login worked)."""
    r = client.post("/api/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def add_exam(ws: Any, hospital: str, *, person_key: str | None = None, modality: str = "CT",
             days_ago: int = 1, description: str = "CT chest") -> int:
    """A bare exam row (no images) for scope and search tests; returns its id."""
    from radqc.serving.accounts import hospital_by_code

    with ws.transaction() as s:
        h = hospital_by_code(s, hospital, create=True)
        count = s.query(m.Patient).count()
        patient = m.Patient(pseudo_key=f"p{count}-{hospital}", hospital_id=h.id, person_key=person_key)
        s.add(patient)
        s.flush()
        exam = m.Exam(study_instance_uid=f"2.25.{count + 1}{abs(hash(hospital)) % 10**6}", hospital_id=h.id,
                      patient_id=patient.id, modality=modality, study_description=description,
                      exam_time=datetime.now(UTC) - timedelta(days=days_ago))
        s.add(exam)
        s.flush()
        return exam.id
