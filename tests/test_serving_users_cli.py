"""``radqc users`` and ``radqc authorise``: accounts and authorisations from the command line."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from radqc.catalogue import models as m
from radqc.cli.main import app as cli
from tests.serving_support import add_exam, login, make_client


def test_users_and_authorisations_cli(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    exam_b = add_exam(workspace, "H_B", person_key="person-7")
    add_exam(workspace, "H_A")
    monkeypatch.setenv("DR_PW", "a-long-password-1")
    r = runner.invoke(cli, ["users", "add", "dr_a", "--role", "doctor", "--hospital", "H_A", "--password-env", "DR_PW"])
    assert r.exit_code == 0, r.output
    bad = runner.invoke(cli, ["users", "add", "dr_x", "--role", "doctor", "--password-env", "DR_PW"])
    assert bad.exit_code == 2 and "hospital" in bad.output
    unknown = runner.invoke(cli, ["users", "add", "dr_c", "--role", "doctor", "--hospital", "H_C", "--password-env", "DR_PW"])
    assert unknown.exit_code == 2 and "H_C" in unknown.output
    new = runner.invoke(cli, ["users", "add", "dr_c", "--role", "doctor", "--hospital", "H_C", "--hospital-name",
                              "丙市人民医院", "--password-env", "DR_PW"])
    assert new.exit_code == 0, new.output
    with workspace.sessions() as s:
        assert s.scalar(select(m.Hospital.name).where(m.Hospital.code == "H_C")) == "丙市人民医院"
    client = make_client(workspace)
    headers = login(client, "dr_a", "a-long-password-1")
    assert client.get(f"/api/exams/{exam_b}", headers=headers).status_code == 404
    granted = runner.invoke(cli, ["authorise", "grant", "--exam", str(exam_b), "--hospital", "H_A", "--json"])
    assert granted.exit_code == 0, granted.output
    auth_id = json.loads(granted.stdout)["id"]
    assert client.get(f"/api/exams/{exam_b}", headers=headers).status_code == 200
    assert runner.invoke(cli, ["authorise", "revoke", str(auth_id)]).exit_code == 0
    assert client.get(f"/api/exams/{exam_b}", headers=headers).status_code == 404
    assert runner.invoke(cli, ["authorise", "revoke", "999"]).exit_code == 2
    # disabling ends the user's tokens at once; a new password too
    assert runner.invoke(cli, ["users", "disable", "dr_a"]).exit_code == 0
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert runner.invoke(cli, ["users", "enable", "dr_a"]).exit_code == 0
    monkeypatch.setenv("DR_PW2", "another-long-password")
    assert runner.invoke(cli, ["users", "passwd", "dr_a", "--password-env", "DR_PW2"]).exit_code == 0
    assert client.post("/api/auth/token", data={"username": "dr_a", "password": "a-long-password-1"}).status_code == 401
    login(client, "dr_a", "another-long-password")
    # a system account: its API key is shown once, stored only as an HMAC, revocable
    assert runner.invoke(cli, ["users", "add", "portal", "--role", "patient_portal", "--no-password"]).exit_code == 0
    key = json.loads(runner.invoke(cli, ["users", "api-key", "portal", "--name", "app", "--json"]).stdout)
    assert client.get("/api/auth/me", headers={"X-API-Key": key["api_key"]}).status_code == 200
    with workspace.sessions() as s:
        assert key["api_key"] not in (s.scalar(select(m.ApiKey.key_hash)) or "")
    assert runner.invoke(cli, ["users", "revoke-key", key["prefix"]]).exit_code == 0
    assert client.get("/api/auth/me", headers={"X-API-Key": key["api_key"]}).status_code == 401
    listed = json.loads(runner.invoke(cli, ["users", "list", "--json"]).stdout)
    assert {u["username"] for u in listed} == {"dr_a", "dr_c", "portal"}
