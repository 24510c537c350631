"""The demo's ``serve`` step: demo accounts (one per role, passwords saved 0600 and stable across
runs), patient authorisations for returning patients, and the service started in the background
(``radqc serve --detach``) that answers a demo doctor's login; ``radqc serve --stop`` ends it."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
from typing import Any

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from radqc.catalogue import models as m
from radqc.cli import cmd_demo
from radqc.cli.cmd_demo import DemoContext, run_steps
from radqc.serving.demo import ACCOUNTS, accounts_path, seed_demo_access
from tests.serving_support import add_exam


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _regional(ws: Any) -> dict[str, int]:
    """Two returning persons seen first at H-EARLY then at H-LATE, one at H-EARLY and H-THIRD
    (later at H-THIRD), and a person seen at one hospital only."""
    return {
        "p1_early": add_exam(ws, "H-EARLY", person_key="person-1", days_ago=40),
        "p1_late": add_exam(ws, "H-LATE", person_key="person-1", days_ago=2),
        "p2_early": add_exam(ws, "H-EARLY", person_key="person-2", days_ago=30),
        "p2_late": add_exam(ws, "H-LATE", person_key="person-2", days_ago=3),
        "p3_early": add_exam(ws, "H-EARLY", person_key="person-3", days_ago=20),
        "p3_late": add_exam(ws, "H-THIRD", person_key="person-3", days_ago=1),
        "single": add_exam(ws, "H-LATE", person_key="person-4", days_ago=5),
    }


def test_seed_demo_access_accounts_authorisations_and_idempotence(workspace: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("RADQC_DEMO_PASSWORD", raising=False)
    _regional(workspace)
    accounts = seed_demo_access(workspace)
    by_user = {a["username"]: a for a in accounts}
    assert {a["role"] for a in accounts} == {"doctor", "qc_expert_l1", "qc_expert_l2", "data_engineer", "auditor",
                                             "hospital_admin", "admin"}
    assert set(by_user) == {a.username for a in ACCOUNTS}
    # the doctors work at the two hospitals sharing the most returning patients; "a" decides more
    assert by_user["doctor_a"]["hospital"] == "H-LATE" and by_user["doctor_b"]["hospital"] == "H-EARLY"
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in a["display_name"]) for a in accounts)  # Chinese names
    assert len({a["password"] for a in accounts}) == len(accounts)  # random, one per account
    path = accounts_path(workspace)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["passwords"] == {a["username"]: a["password"] for a in accounts}

    with workspace.sessions() as s:
        grants = {(g.person_key, code) for g, code in s.execute(
            select(m.PatientAuthorisation, m.Hospital.code)
            .join(m.Hospital, m.Hospital.id == m.PatientAuthorisation.grantee_hospital_id))}
        users = {u.username: u for u in s.scalars(select(m.AppUser))}
    # the hospital of the later exam is authorised; a one-hospital person is not
    assert grants == {("person-1", "H-LATE"), ("person-2", "H-LATE"), ("person-3", "H-THIRD")}
    assert users["doctor_a"].display_name and users["doctor_a"].password_hash.startswith("$argon2id$")

    again = seed_demo_access(workspace)  # a re-run keeps users and prints the same passwords
    assert again == accounts
    with workspace.sessions() as s:
        assert s.query(m.PatientAuthorisation).count() == 3
        assert s.query(m.AppUser).count() == len(ACCOUNTS)
        assert s.scalar(select(m.AppUser.token_version).where(m.AppUser.username == "doctor_a")) == 0

    monkeypatch.setenv("RADQC_DEMO_PASSWORD", "demo-password-from-env-1")
    forced = seed_demo_access(workspace)
    assert {a["password"] for a in forced} == {"demo-password-from-env-1"}


def test_demo_serve_step_runs_a_detached_service_and_stop_ends_it(workspace: Any, monkeypatch: Any) -> None:
    from radqc.cli.main import app

    monkeypatch.delenv("RADQC_DEMO_PASSWORD", raising=False)
    exams = _regional(workspace)
    port = _port()
    steps = [step for step in cmd_demo.STEPS if step.name in ("init", "serve")]
    ctx = DemoContext(fetch=False, workers=1, show_progress=False, log=lambda line: None, serve_port=port)
    home = workspace.settings.home
    try:
        doc = run_steps(ctx, steps)
        ctx.workspace.close()
        service = doc["service"]
        assert service["port"] == port and service["url"] == f"http://127.0.0.1:{port}/"
        assert int((home / "serve.pid").read_text()) == service["pid"]
        patient = service["patient"]
        assert patient["username"] == "doctor_a" and patient["url"].startswith(service["url"].rstrip("/"))
        assert {patient["exam_id"], patient["other_exam_id"]} in (
            {exams["p1_late"], exams["p1_early"]}, {exams["p2_late"], exams["p2_early"]})
        doctor = next(a for a in service["accounts"] if a["username"] == "doctor_a")
        screen = io.StringIO()
        monkeypatch.setattr(cmd_demo, "stdout", Console(file=screen, width=100))
        cmd_demo._human_service(service)  # what people read: URL, patient link, every account's password
        shown = screen.getvalue()
        assert service["url"] in shown and patient["url"] in shown
        assert all(a["username"] in shown and a["password"] in shown for a in service["accounts"])
        with httpx.Client(base_url=service["url"], timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            r = client.post("/api/auth/token", data={"username": "doctor_a", "password": doctor["password"]})
            assert r.status_code == 200, r.text
            me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
            assert me.status_code == 200 and me.json()["username"] == "doctor_a"
            assert client.post("/api/auth/token", data={"username": "doctor_a", "password": "wrong"}).status_code == 401

        # a second demo run stops the first service and starts a new one (the port is free again)
        ctx2 = DemoContext(fetch=False, workers=1, show_progress=False, log=lambda line: None, serve_port=port)
        doc2 = run_steps(ctx2, steps)
        ctx2.workspace.close()
        assert doc2["service"]["stopped_previous"] is True and doc2["service"]["pid"] != service["pid"]
        assert doc2["service"]["accounts"] == service["accounts"]
        with pytest.raises(ProcessLookupError):
            os.kill(service["pid"], 0)
    finally:
        out = CliRunner().invoke(app, ["serve", "--stop", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["stopped"] is True
    assert not (home / "serve.pid").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    again = CliRunner().invoke(app, ["serve", "--stop", "--json"])
    assert json.loads(again.stdout)["stopped"] is False
