"""Login, tokens, API keys, lock-out, scope and the SM3-chained access log."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from radqc.catalogue import models as m
from tests.serving_support import PASSWORD, add_exam, add_user, login, make_client


def test_login_me_and_bad_password(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    client = make_client(workspace)
    assert client.get("/api/auth/me").status_code == 401
    bad = client.post("/api/auth/token", data={"username": "dr_a", "password": "wrong-password-1"})
    assert bad.status_code == 401
    unknown = client.post("/api/auth/token", data={"username": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401 and unknown.json()["detail"] == bad.json()["detail"]
    me = client.get("/api/auth/me", headers=login(client, "dr_a")).json()
    assert me["role"] == "doctor" and me["hospital"] == "H_A" and "recognition.write" in me["permissions"]
    assert "image.download_original" not in me["permissions"]
    with workspace.sessions() as s:
        user = s.scalar(select(m.AppUser).where(m.AppUser.username == "dr_a"))
        assert user is not None and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


def test_lockout_after_failed_logins(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RADQC_LOCKOUT_ATTEMPTS", "3")
    add_user(workspace, "dr_b", "doctor", "H_A")
    client = make_client(workspace)
    for _ in range(3):
        assert client.post("/api/auth/token", data={"username": "dr_b", "password": "nope-nope-nope"}).status_code == 401
    # locked: even the right password is refused now
    assert client.post("/api/auth/token", data={"username": "dr_b", "password": PASSWORD}).status_code == 401


def test_password_change_ends_old_tokens_and_disable(workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.serving.accounts import set_active, set_password

    add_user(workspace, "dr_c", "doctor", "H_A")
    client = make_client(workspace)
    headers = login(client, "dr_c")
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    with workspace.transaction() as s:
        set_password(s, "dr_c", "another-long-password")
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    headers = login(client, "dr_c", "another-long-password")
    with workspace.transaction() as s:
        set_active(s, "dr_c", False)
    assert client.get("/api/auth/me", headers=headers).status_code == 401


def test_tampered_and_expired_tokens_rejected(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import jwt

    add_user(workspace, "dr_d", "doctor", "H_A")
    client = make_client(workspace)
    token = login(client, "dr_d")["Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "role": "admin"}, b"not-the-key-not-the-key-not-the-key", algorithm="HS256")
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    none_alg = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {none_alg}"}).status_code == 401
    monkeypatch.setenv("RADQC_TOKEN_MINUTES", "-1")
    expired_client = make_client(workspace)
    expired = login(expired_client, "dr_d")
    assert expired_client.get("/api/auth/me", headers=expired).status_code == 401


def test_api_key_for_systems(workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.serving.accounts import create_api_key, create_user, revoke_api_key
    from radqc.serving.settings import load_serving_settings

    settings = load_serving_settings(workspace.master_key)
    with workspace.transaction() as s:
        create_user(s, "portal", "patient_portal")
        key, full = create_api_key(s, "portal", "云胶片 app", settings.api_key_secret)
        prefix = key.prefix
    client = make_client(workspace)
    me = client.get("/api/auth/me", headers={"X-API-Key": full})
    assert me.status_code == 200 and me.json()["via"] == "api_key" and me.json()["scope"] == "none"
    assert client.get("/api/auth/me", headers={"X-API-Key": full[:-2] + "xx"}).status_code == 401
    with workspace.sessions() as s:
        stored = s.scalar(select(m.ApiKey.key_hash).where(m.ApiKey.prefix == prefix))
        assert stored and full.split("_", 2)[2] not in stored
    with workspace.transaction() as s:
        revoke_api_key(s, prefix)
    assert client.get("/api/auth/me", headers={"X-API-Key": full}).status_code == 401


def test_scope_clause_follows_patient_authorisation(workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.serving.accounts import grant_authorisation, revoke_authorisation
    from radqc.serving.security.principal import Principal
    from radqc.serving.security.roles import load_roles
    from radqc.serving.security.scope import exam_in_scope

    own = add_exam(workspace, "H_A", person_key="person-1")
    other = add_exam(workspace, "H_B", person_key="person-1")
    stranger = add_exam(workspace, "H_B", person_key="person-2")
    roles = load_roles()
    with workspace.sessions() as s:
        ha = s.scalar(select(m.Hospital.id).where(m.Hospital.code == "H_A"))
    doctor = Principal(1, "dr", roles.role("doctor"), ha, "H_A", None, "token")
    admin = Principal(2, "ha", roles.role("hospital_admin"), ha, "H_A", None, "token")
    expert = Principal(3, "qc", roles.role("qc_expert_l1"), None, None, None, "token")
    with workspace.sessions() as s:
        assert exam_in_scope(s, doctor, own) and not exam_in_scope(s, doctor, other)
        assert all(exam_in_scope(s, expert, e) for e in (own, other, stranger))
    with workspace.transaction() as s:
        auth_id = grant_authorisation(s, "person-1", "H_A", channel="app").id
    with workspace.sessions() as s:
        assert exam_in_scope(s, doctor, other) and not exam_in_scope(s, doctor, stranger)
        assert not exam_in_scope(s, admin, other), "a hospital admin never sees other hospitals' exams"
    with workspace.transaction() as s:
        revoke_authorisation(s, auth_id)
    with workspace.sessions() as s:
        assert not exam_in_scope(s, doctor, other)


def test_access_log_chain_detects_edits_deletions_and_truncation(workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.serving import accesslog

    for i in range(5):
        accesslog.record(workspace.sessions, action="exam.view", user_id=1, username="dr", role="doctor",
                         exam_id=i, client="127.0.0.1", detail={"n": i, "说明": "查看"})
    with workspace.sessions() as s:
        report = accesslog.verify_chain(s)
        assert report.ok and report.entries == 5
        ids = list(s.scalars(select(m.AccessLogEntry.id).order_by(m.AccessLogEntry.id)))
    with workspace.transaction() as s:  # an edit
        s.execute(update(m.AccessLogEntry).where(m.AccessLogEntry.id == ids[2]).values(exam_id=99))
    with workspace.sessions() as s:
        report = accesslog.verify_chain(s)
        assert not report.ok and report.problems[0]["id"] == ids[2]
    with workspace.transaction() as s:  # undo the edit, then delete a middle row
        s.execute(update(m.AccessLogEntry).where(m.AccessLogEntry.id == ids[2]).values(exam_id=2))
    with workspace.sessions() as s:
        assert accesslog.verify_chain(s).ok
    with workspace.transaction() as s:
        s.delete(s.get(m.AccessLogEntry, ids[1]))
    with workspace.sessions() as s:
        report = accesslog.verify_chain(s)
        assert not report.ok and report.problems[0]["id"] == ids[2]


def test_access_log_truncation_detected(workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.serving import accesslog

    for i in range(3):
        accesslog.record(workspace.sessions, action="exam.view", exam_id=i)
    with workspace.transaction() as s:
        last = s.scalar(select(m.AccessLogEntry).order_by(m.AccessLogEntry.id.desc()))
        s.delete(last)
    with workspace.sessions() as s:
        report = accesslog.verify_chain(s)
    assert not report.ok and report.problems[-1]["id"] is None


@pytest.mark.parametrize("role", ["doctor", "hospital_admin"])
def test_hospital_roles_need_a_hospital(workspace, role) -> None:  # type: ignore[no-untyped-def]
    from radqc.serving.accounts import AccountError, create_user

    with pytest.raises(AccountError), workspace.transaction() as s:
        create_user(s, "x_" + role, role, password=PASSWORD)


def test_access_log_group_commit_keeps_every_entry_and_the_chain(workspace) -> None:  # type: ignore[no-untyped-def]
    """Concurrent views share commits (group commit); every entry lands once, the chain verifies."""
    from concurrent.futures import ThreadPoolExecutor

    from radqc.serving import accesslog

    def view(i: int) -> None:
        accesslog.record(workspace.sessions, action="exam.view", user_id=i % 3, exam_id=i, client="10.0.0.1")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(view, range(60)))
    with workspace.sessions() as s:
        report = accesslog.verify_chain(s)
        exam_ids = sorted(s.scalars(select(m.AccessLogEntry.exam_id)))
    assert report.ok and report.entries == 60
    assert exam_ids == list(range(60))


def test_access_log_write_failure_reaches_the_caller(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A log entry that cannot be written fails the request rather than being lost silently."""
    from radqc.serving import accesslog

    def broken(*_a, **_k):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(accesslog, "append_many", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        accesslog.record(workspace.sessions, action="exam.view", exam_id=1)
