"""Recognition and QC statistics, CSV export, hospital_admin scope (serving/routers/statistics.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.serving.accounts import grant_authorisation
from tests.serving_exam_support import add_full_exam
from tests.serving_support import add_user, login, make_client


def _decide(client, headers, exam_id: int, decision: str, reason: str | None = None,  # type: ignore[no-untyped-def]
            item: str | None = None) -> None:
    r = client.post(f"/api/exams/{exam_id}/recognition", headers=headers,
                    json={"decision": decision, "reason_code": reason, "ordered_item": item})
    assert r.status_code == 201, r.text


def _catalogue(workspace):  # type: ignore[no-untyped-def]
    """H_B's two exams and H_C's one, decided on by doctors of H_A and H_D."""
    add_user(workspace, "dr_a", "doctor", "H_A")
    add_user(workspace, "dr_d", "doctor", "H_D")
    b1 = add_full_exam(workspace, "H_B", person_key="pk1", score=95, grade="3")
    b2 = add_full_exam(workspace, "H_B", person_key="pk1", score=55, grade="0")
    c1 = add_full_exam(workspace, "H_C", person_key="pk1", modality="DR", item="DX.CHEST.PA", standard="DX-CHEST-PA",
                       score=100, grade="甲")
    with workspace.transaction() as s:
        grant_authorisation(s, "pk1", None)
    client = make_client(workspace)
    a, d = login(client, "dr_a"), login(client, "dr_d")
    _decide(client, a, b1.exam_id, "互认", item="CT.CHEST.PLAIN")
    _decide(client, a, b2.exam_id, "不互认", "Q_ARTIFACT", item="CT.CHEST.PLAIN")
    _decide(client, d, b2.exam_id, "不互认", "Q_ARTIFACT")
    _decide(client, d, c1.exam_id, "不互认", "C_CONDITION_CHANGED", item="DX.CHEST.PA")
    return client, (b1, b2, c1)


def test_recognition_stats_groupings(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "qc2", "qc_expert_l2")
    client, _ = _catalogue(workspace)
    h = login(client, "qc2")

    def rows(by: str, **params: str) -> dict[str, dict]:  # type: ignore[type-arg]
        r = client.get("/api/stats/recognition", params={"by": by, **params}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["by"] == by
        return {row["key"]: row for row in r.json()["rows"]}

    by_hospital = rows("hospital")
    assert set(by_hospital) == {"H_B", "H_C"}
    b = by_hospital["H_B"]
    assert (b["decisions"], b["recognised"], b["not_recognised"], b["not_recognised_quality"],
            b["not_recognised_clinical"]) == (3, 1, 2, 2, 0)
    assert b["recognition_rate"] == round(1 / 3, 4) and b["reasons"] == {"Q_ARTIFACT": 2}
    assert b["label"] == "H_B 医院"
    c = by_hospital["H_C"]
    assert (c["not_recognised_clinical"], c["reasons"]) == (1, {"C_CONDITION_CHANGED": 1})

    doctors = rows("doctor_hospital")
    assert doctors["H_A"]["decisions"] == 2 and doctors["H_D"]["decisions"] == 2
    reasons = rows("reason")
    assert reasons["Q_ARTIFACT"]["decisions"] == 2 and reasons[""]["recognised"] == 1
    assert reasons["Q_ARTIFACT"]["label"].startswith("伪影影响诊断")
    items = rows("item")
    assert items["CT.CHEST.PLAIN"]["decisions"] == 2 and items["CT.CHEST.PLAIN"]["label"] == "胸部CT平扫"
    assert items[""]["decisions"] == 1
    month = datetime.now(UTC).strftime("%Y-%m")
    assert rows("month")[month]["decisions"] == 4
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert rows("hospital", date_from=tomorrow) == {}
    today = datetime.now(UTC).date().isoformat()
    assert rows("hospital", date_from=today, date_to=today)["H_B"]["decisions"] == 3
    assert client.get("/api/stats/recognition", params={"by": "nope"}, headers=h).status_code == 422


def test_qc_stats_histogram_and_grades(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "qc1", "qc_expert_l1")
    _catalogue(workspace)
    client = make_client(workspace)
    h = login(client, "qc1")
    data = client.get("/api/stats/qc", params={"by": "hospital"}, headers=h).json()
    rows = {r["key"]: r for r in data["rows"]}
    assert rows["H_B"]["exams"] == 2 and rows["H_B"]["mean_score"] == 75.0
    assert rows["H_B"]["grades"] == {"3": 1, "0": 1}
    hist = rows["H_B"]["histogram"]
    assert hist["bins"] == list(range(0, 101, 10))
    assert hist["counts"][5] == 1 and hist["counts"][9] == 1 and sum(hist["counts"]) == 2
    assert rows["H_C"]["histogram"]["counts"][9] == 1  # a score of 100 is in the last bin
    by_mod = {r["key"]: r for r in client.get("/api/stats/qc", params={"by": "modality"}, headers=h).json()["rows"]}
    assert by_mod["CT"]["exams"] == 2 and by_mod["DR"]["grades"] == {"甲": 1}
    by_item = {r["key"]: r for r in client.get("/api/stats/qc", params={"by": "item"}, headers=h).json()["rows"]}
    assert set(by_item) == {"CT-CHEST-PLAIN", "DX-CHEST-PA"}


def test_csv_export_bom_headers_and_permission(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "qc1", "qc_expert_l1")  # stats.read, no stats.export
    add_user(workspace, "qc2", "qc_expert_l2")
    _catalogue(workspace)
    client = make_client(workspace)
    params = {"by": "hospital", "format": "csv"}
    assert client.get("/api/stats/recognition", params=params, headers=login(client, "qc1")).status_code == 403
    r = client.get("/api/stats/recognition", params=params, headers=login(client, "qc2"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    header = table[0]
    assert header[0] == "分组 / group" and "互认率 / recognition rate" in header
    assert any(h.startswith("原因 Q_ARTIFACT 伪影影响诊断") for h in header)
    body = {row[0]: dict(zip(header, row, strict=True)) for row in table[1:]}
    assert body["H_B"]["决定数 / decisions"] == "3"
    assert body["H_B"][next(h for h in header if "Q_ARTIFACT" in h)] == "2"
    qc = client.get("/api/stats/qc", params={"by": "modality", "format": "csv"}, headers=login(client, "qc2"))
    qtable = list(csv.reader(io.StringIO(qc.content.decode("utf-8-sig"))))
    assert "分数 90-100 / score 90-100" in qtable[0] and len(qtable) == 3
    with workspace.sessions() as s:
        actions = s.scalars(select(m.AccessLogEntry.action).where(m.AccessLogEntry.username == "qc2")).all()
        assert actions.count("stats.export") == 2


def test_hospital_admin_limited_and_doctor_refused(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "hadmin_c", "hospital_admin", "H_C")
    client, _ = _catalogue(workspace)
    h = login(client, "hadmin_c")
    rec = client.get("/api/stats/recognition", params={"by": "hospital"}, headers=h).json()
    assert [r["key"] for r in rec["rows"]] == ["H_C"]
    by_reason = client.get("/api/stats/recognition", params={"by": "reason"}, headers=h).json()
    assert {r["key"]: r["decisions"] for r in by_reason["rows"]} == {"C_CONDITION_CHANGED": 1}
    qc = client.get("/api/stats/qc", params={"by": "hospital"}, headers=h).json()
    assert [r["key"] for r in qc["rows"]] == ["H_C"]
    assert client.get("/api/stats/qc", headers=login(client, "dr_a")).status_code == 403
    assert client.get("/api/stats/qc").status_code == 401
