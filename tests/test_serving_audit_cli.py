"""``radqc audit-log verify`` over an access log written by real API calls (issue #8).

The log is produced the way production produces it: logins, an exam view, a recognition
decision and a refused request through the app. The CLI then proves the chain intact (exit 0,
the head printed for anchoring), and names the entry when one row is edited in the database
(exit 1), when a row is deleted, and when the tail is cut off.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from radqc.catalogue import models as m
from radqc.cli.main import app as cli
from tests.test_serving_security import Seed, _a_reason_code, _grant, has_route, seed_catalogue


def _write_log_through_the_api(seed: Seed, workspace: Any) -> None:
    client = seed.client
    assert client.get("/api/auth/me", headers=seed.headers["doctor"]).status_code == 200
    if has_route(seed.app, "get", "/api/exams/{exam_id}"):
        assert client.get(f"/api/exams/{seed.exam_a.id}", headers=seed.headers["doctor"]).status_code == 200
    if has_route(seed.app, "post", "/api/exams/{exam_id}/recognition"):
        _grant(workspace, seed.person_key, "H_A")
        r = client.post(f"/api/exams/{seed.exam_b.id}/recognition", headers=seed.headers["doctor"],
                        json={"decision": "不互认", "reason_code": _a_reason_code(), "comment": "审计测试"})
        assert r.status_code == 201, r.text
    if has_route(seed.app, "get", "/api/audit-log"):  # a doctor may not read the log: a denied entry
        assert client.get("/api/audit-log", headers=seed.headers["doctor"]).status_code == 403
    assert client.post("/api/auth/token", data={"username": "sec_doctor", "password": "wrong-password-0"}).status_code == 401


def _verify(runner: CliRunner) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(cli, ["audit-log", "verify", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_audit_log_verify_detects_an_edited_row(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed = seed_catalogue(workspace, tmp_path)
    _write_log_through_the_api(seed, workspace)
    with workspace.sessions() as s:
        entries = s.execute(select(m.AccessLogEntry.id, m.AccessLogEntry.action, m.AccessLogEntry.outcome)
                            .order_by(m.AccessLogEntry.id)).all()
    actions = {(a, o) for _, a, o in entries}
    assert ("login", "ok") in actions and ("login", "denied") in actions
    if has_route(seed.app, "get", "/api/exams/{exam_id}"):
        assert ("exam.view", "ok") in actions and ("recognition.record", "ok") in actions
    runner = CliRunner()
    code, report = _verify(runner)
    assert code == 0 and report["ok"] and report["entries"] == len(entries) and report["problems"] == []
    human = runner.invoke(cli, ["audit-log", "verify"])
    assert human.exit_code == 0 and report["head"] in human.output.replace("\n", "")

    # someone with database access rewrites who viewed the exam
    victim = entries[len(entries) // 2][0]
    with workspace.transaction() as s:
        s.execute(update(m.AccessLogEntry).where(m.AccessLogEntry.id == victim).values(username="someone_else"))
    code, report = _verify(runner)
    assert code == 1 and not report["ok"]
    assert report["problems"][0]["id"] == victim
    human = runner.invoke(cli, ["audit-log", "verify"])
    assert human.exit_code == 1 and f"entry {victim}" in human.output

    # ... and then recomputes that row's hash to hide it: the next row's link still breaks
    from radqc.serving.accesslog import _fields, entry_digest

    with workspace.transaction() as s:
        row = s.get(m.AccessLogEntry, victim)
        assert row is not None
        row.hash = entry_digest(row.prev_hash, _fields(row))
    code, report = _verify(runner)
    assert code == 1 and report["problems"][0]["id"] == next(i for i, _, _ in entries if i > victim)


def test_audit_log_verify_detects_deleted_and_truncated_rows(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed = seed_catalogue(workspace, tmp_path)
    _write_log_through_the_api(seed, workspace)
    runner = CliRunner()
    code, report = _verify(runner)
    assert code == 0, report
    with workspace.sessions() as s:
        ids = list(s.scalars(select(m.AccessLogEntry.id).order_by(m.AccessLogEntry.id)))
    with workspace.transaction() as s:  # cut the last entry off: only the head row notices
        s.execute(delete(m.AccessLogEntry).where(m.AccessLogEntry.id == ids[-1]))
    code, report = _verify(runner)
    assert code == 1 and report["problems"][-1]["id"] is None
    with workspace.transaction() as s:  # a row removed from the middle: the next one is named
        s.execute(delete(m.AccessLogEntry).where(m.AccessLogEntry.id == ids[2]))
    code, report = _verify(runner)
    assert code == 1 and report["problems"][0]["id"] == ids[3]


def _rewrite_chain_consistently(workspace: Any, victim: int) -> None:
    """What a database administrator with the code in hand can do: edit a row, then recompute
    every later hash and the head row, so the chain inside the database verifies again."""
    from radqc.serving.accesslog import GENESIS, HEAD_KEY, _fields, entry_digest

    with workspace.transaction() as s:
        s.execute(update(m.AccessLogEntry).where(m.AccessLogEntry.id == victim).values(username="someone_else"))
        prev = GENESIS
        for row in s.scalars(select(m.AccessLogEntry).order_by(m.AccessLogEntry.id)):
            row.prev_hash = prev
            row.hash = prev = entry_digest(prev, _fields(row))
        s.execute(update(m.Setting).where(m.Setting.key == HEAD_KEY).values(value=prev))


def test_anchors_outside_the_database_catch_a_consistently_rewritten_chain(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed = seed_catalogue(workspace, tmp_path)
    _write_log_through_the_api(seed, workspace)
    runner = CliRunner()
    anchors = tmp_path / "elsewhere" / "anchors.jsonl"
    made = runner.invoke(cli, ["audit-log", "anchor", "--out", str(anchors), "--json"])
    assert made.exit_code == 0, made.output
    line = json.loads(anchors.read_text(encoding="utf-8").splitlines()[0])
    assert line["entries"] > 0 and len(line["head"]) == 64 and len(line["mac"]) == 64
    _write_log_through_the_api(seed, workspace)  # the log grows after the anchor
    result = runner.invoke(cli, ["audit-log", "verify", "--json", "--anchors", str(anchors)])
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"] and report["anchors_checked"] == 1
    assert report["entries"] > line["entries"]

    with workspace.sessions() as s:
        first = s.scalar(select(m.AccessLogEntry.id).order_by(m.AccessLogEntry.id))
    _rewrite_chain_consistently(workspace, first)
    code, plain = _verify(runner)
    assert code == 0 and plain["ok"]  # inside the database nothing shows ...
    result = runner.invoke(cli, ["audit-log", "verify", "--json", "--anchors", str(anchors)])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and not report["ok"]  # ... the anchor does
    assert any(p.get("anchor") == line["at"] for p in report["problems"])
    human = runner.invoke(cli, ["audit-log", "verify", "--anchors", str(anchors)])
    assert human.exit_code == 1 and "differs from its anchor" in human.output and line["at"] in human.output.replace("\n", "")


def test_a_forged_or_unreadable_anchor_is_refused(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed = seed_catalogue(workspace, tmp_path)
    _write_log_through_the_api(seed, workspace)
    runner = CliRunner()
    code, report = _verify(runner)
    assert code == 0
    forged = tmp_path / "forged.jsonl"
    forged.write_text(json.dumps({"at": "2026-01-01T00:00:00.000000Z", "entries": report["entries"],
                                  "head": report["head"], "mac": "0" * 64}) + "\n" + "not json\n", encoding="utf-8")
    result = runner.invoke(cli, ["audit-log", "verify", "--json", "--anchors", str(forged)])
    out = json.loads(result.stdout)
    assert result.exit_code == 1 and len(out["problems"]) == 2 and out["anchors_checked"] == 0
    assert "MAC" in out["problems"][0]["problem"] and "unreadable" in out["problems"][1]["problem"]
    # an anchor counting more entries than the log holds: entries were removed
    ok = tmp_path / "ok.jsonl"
    assert runner.invoke(cli, ["audit-log", "anchor", "--out", str(ok)]).exit_code == 0
    with workspace.transaction() as s:
        last = s.scalar(select(m.AccessLogEntry.id).order_by(m.AccessLogEntry.id.desc()))
        s.execute(delete(m.AccessLogEntry).where(m.AccessLogEntry.id == last))
    result = runner.invoke(cli, ["audit-log", "verify", "--json", "--anchors", str(ok)])
    assert result.exit_code == 1 and any("removed" in p["problem"] for p in json.loads(result.stdout)["problems"])
