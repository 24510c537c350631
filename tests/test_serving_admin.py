"""Users, patient authorisations and the access log over the API (serving/routers/admin.py)."""

from __future__ import annotations

from sqlalchemy import select, update

from radqc.catalogue import models as m
from radqc.serving.accounts import create_api_key
from radqc.serving.settings import load_serving_settings
from tests.serving_exam_support import add_full_exam
from tests.serving_support import PASSWORD, add_user, login, make_client


def test_user_management(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "root", "admin")
    add_user(workspace, "dr_a", "doctor", "H_A")
    client = make_client(workspace)
    admin = login(client, "root")
    assert client.get("/api/admin/users").status_code == 401
    assert client.get("/api/admin/users", headers=login(client, "dr_a")).status_code == 403
    users = {u["username"]: u for u in client.get("/api/admin/users", headers=admin).json()["items"]}
    assert set(users) == {"root", "dr_a"} and users["dr_a"]["hospital"] == "H_A"
    assert all("password" not in str(k) for u in users.values() for k in u)

    new = {"username": "dr_new", "role": "doctor", "password": "a-long-enough-pass", "hospital": "H_A",
           "display_name": "新医生"}
    r = client.post("/api/admin/users", json=new, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "doctor" and r.json()["hospital"] == "H_A" and "exam.read" in r.json()["permissions"]
    assert login(client, "dr_new", "a-long-enough-pass")  # the new user can log in
    assert client.post("/api/admin/users", json=new, headers=admin).status_code == 409  # exists
    assert client.post("/api/admin/users", json={**new, "username": "x1", "role": "wizard"},
                       headers=admin).status_code == 422
    assert client.post("/api/admin/users", json={**new, "username": "x2", "hospital": None},
                       headers=admin).status_code == 422  # a doctor needs a hospital
    assert client.post("/api/admin/users", json={**new, "username": "x3", "password": "short"},
                       headers=admin).status_code == 422
    assert client.post("/api/admin/users", json={**new, "username": "bad name;--"},
                       headers=admin).status_code == 422
    assert client.post("/api/admin/users", json={**new, "username": "x4", "hospital": "NOWHERE"},
                       headers=admin).status_code == 422
    with workspace.sessions() as s:
        stored = s.scalar(select(m.AppUser).where(m.AppUser.username == "dr_new"))
        assert stored is not None and "a-long-enough-pass" not in (stored.password_hash or "")
        logged = s.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.action == "user.create")).all()
        assert len(logged) == 1 and logged[0].username == "root"
        assert "a-long-enough-pass" not in str(logged[0].detail)


def test_authorisation_grant_and_revoke_change_scope(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    add_user(workspace, "root", "admin")
    with workspace.transaction() as s:
        s.add(m.AppUser(username="portal", role="patient_portal"))
    settings = load_serving_settings(workspace.master_key)
    with workspace.transaction() as s:
        _, portal_key = create_api_key(s, "portal", "云胶片", settings.api_key_secret)
    id_number = "110101199001011234"
    person_key = workspace.vault.pseudonym("id_number", id_number)
    exam = add_full_exam(workspace, "H_B", person_key=person_key, id_number=id_number)
    client = make_client(workspace)
    doctor = login(client, "dr_a")
    portal = {"X-API-Key": portal_key}
    assert client.get(f"/api/exams/{exam.exam_id}", headers=doctor).status_code == 404
    # the portal has no exam access at all, and a doctor cannot authorise
    assert client.get(f"/api/exams/{exam.exam_id}", headers=portal).status_code == 403
    assert client.post("/api/authorisations", json={"exam_id": exam.exam_id, "hospital": "H_A"},
                       headers=doctor).status_code == 403
    # exactly one patient reference
    assert client.post("/api/authorisations", json={"hospital": "H_A"}, headers=portal).status_code == 422
    assert client.post("/api/authorisations", json={"exam_id": exam.exam_id, "id_number": id_number},
                       headers=portal).status_code == 422
    assert client.post("/api/authorisations", json={"exam_id": exam.exam_id, "hospital": "NOWHERE"},
                       headers=portal).status_code == 422

    r = client.post("/api/authorisations", json={"id_number": id_number, "hospital": "H_A"}, headers=portal)
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["active"] is True and grant["hospital"] == "H_A" and id_number not in r.text
    assert client.get(f"/api/exams/{exam.exam_id}", headers=doctor).status_code == 200

    revoked = client.delete(f"/api/authorisations/{grant['id']}", headers=portal)
    assert revoked.status_code == 200 and revoked.json()["active"] is False and revoked.json()["revoked_at"]
    assert client.get(f"/api/exams/{exam.exam_id}", headers=doctor).status_code == 404
    assert client.delete("/api/authorisations/99999", headers=portal).status_code == 404

    # by exam id, expired on arrival: no access
    past = "2020-01-01T00:00:00Z"
    r = client.post("/api/authorisations", json={"exam_id": exam.exam_id, "hospital": "H_A", "expires_at": past},
                    headers=login(client, "root"))
    assert r.status_code == 201 and r.json()["active"] is False
    assert client.get(f"/api/exams/{exam.exam_id}", headers=doctor).status_code == 404

    with workspace.sessions() as s:
        entries = s.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.action.like("authorisation.%"))).all()
        assert [e.action for e in entries] == ["authorisation.grant", "authorisation.revoke", "authorisation.grant"]
        assert all(id_number not in str(e.detail) for e in entries)


def test_audit_log_read_and_verify(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "auditor", "auditor")
    add_user(workspace, "hadmin", "hospital_admin", "H_A")
    exam = add_full_exam(workspace, "H_A")
    client = make_client(workspace)
    h = login(client, "auditor")
    assert client.get("/api/audit-log", headers=login(client, "hadmin")).status_code == 403
    assert client.get(f"/api/exams/{exam.exam_id}", headers=h).status_code == 200
    entries = client.get("/api/audit-log", params={"exam_id": exam.exam_id}, headers=h).json()["items"]
    assert [e["action"] for e in entries] == ["exam.view"] and entries[0]["username"] == "auditor"
    latest = client.get("/api/audit-log", params={"limit": 2}, headers=h).json()["items"]
    assert len(latest) == 2 and latest[0]["id"] > latest[1]["id"]
    ok = client.get("/api/audit-log/verify", headers=h).json()
    assert ok["ok"] is True and ok["entries"] >= 3
    # an edited row is detected
    with workspace.transaction() as s:
        s.execute(update(m.AccessLogEntry).where(m.AccessLogEntry.id == entries[0]["id"])
                  .values(username="someone_else"))
    bad = client.get("/api/audit-log/verify", headers=h).json()
    assert bad["ok"] is False and bad["problems"][0]["id"] == entries[0]["id"]
    assert PASSWORD not in client.get("/api/audit-log", params={"limit": 1000}, headers=h).text
