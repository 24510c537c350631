"""Recognition (互认) decisions and the repeated-exam reminder (serving/routers/recognition.py)."""

from __future__ import annotations

from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.serving.accounts import grant_authorisation
from tests.serving_exam_support import add_full_exam
from tests.serving_support import add_user, login, make_client


def test_reasons_list_from_configuration(workspace, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "de", "data_engineer")
    client = make_client(workspace)
    assert client.get("/api/recognition/reasons").status_code == 401
    reasons = client.get("/api/recognition/reasons", headers=login(client, "de")).json()["reasons"]
    assert {r["category"] for r in reasons} == {"quality", "clinical"}
    assert any(r["code"] == "Q_ARTIFACT" and r["zh"] == "伪影影响诊断" for r in reasons)
    custom = tmp_path / "reasons.yaml"
    custom.write_text("reasons:\n  - {code: Q_ONLY, category: quality, zh: 只有一个, en: Only one}\n", encoding="utf-8")
    monkeypatch.setenv("RADQC_RECOGNITION_REASONS", str(custom))
    client2 = make_client(workspace)
    assert [r["code"] for r in client2.get("/api/recognition/reasons", headers=login(client2, "de")).json()["reasons"]] \
        == ["Q_ONLY"]


def test_record_decisions_rules(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    add_user(workspace, "de", "data_engineer")
    add_user(workspace, "expert", "qc_expert_l2")
    own = add_full_exam(workspace, "H_A", person_key="pk1")
    other = add_full_exam(workspace, "H_B", person_key="pk1")
    hidden = add_full_exam(workspace, "H_B", person_key="pk2")
    with workspace.transaction() as s:
        grant_authorisation(s, "pk1", "H_A")
    client = make_client(workspace)
    h = login(client, "dr_a")
    url = f"/api/exams/{other.exam_id}/recognition"

    # validation: 不互认 needs a known reason, 互认 takes none, decision vocabulary closed
    assert client.post(url, json={"decision": "不互认"}, headers=h).status_code == 422
    assert client.post(url, json={"decision": "不互认", "reason_code": "NOPE"}, headers=h).status_code == 422
    assert client.post(url, json={"decision": "互认", "reason_code": "Q_RANGE"}, headers=h).status_code == 422
    assert client.post(url, json={"decision": "maybe"}, headers=h).status_code == 422
    assert client.post(url, json={"decision": "互认", "ordered_item": "CT.NOPE"}, headers=h).status_code == 422
    # own hospital: 409; out of scope: 404; no permission: 403; anonymous: 401
    assert client.post(f"/api/exams/{own.exam_id}/recognition", json={"decision": "互认"},
                       headers=h).status_code == 409
    assert client.post(f"/api/exams/{hidden.exam_id}/recognition", json={"decision": "互认"},
                       headers=h).status_code == 404
    assert client.post(url, json={"decision": "互认"}, headers=login(client, "de")).status_code == 403
    assert client.post(url, json={"decision": "互认"}, headers=login(client, "expert")).status_code == 403
    assert client.post(url, json={"decision": "互认"}).status_code == 401

    r = client.post(url, json={"decision": "不互认", "reason_code": "Q_ARTIFACT", "comment": "患者张三 运动伪影",
                               "ordered_item": "CT.CHEST.PLAIN"}, headers=h)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["decision"] == "不互认" and out["reason_category"] == "quality"
    assert out["reason"] == {"zh": "伪影影响诊断", "en": "Artifacts impair diagnosis"}
    assert out["by"] == {"username": "dr_a", "display_name": "Dr_A", "hospital": "H_A"}
    assert out["exam_id"] == other.exam_id and out["ordered_item"] == "CT.CHEST.PLAIN"
    second = client.post(url, json={"decision": "互认"}, headers=h).json()
    assert second["reason_code"] is None and second["reason"] is None

    listed = client.get(url, headers=h).json()["items"]
    assert [d["id"] for d in listed] == [second["id"], out["id"]]  # newest first
    assert client.get(url, headers=login(client, "de")).status_code == 403  # no recognition.read
    assert len(client.get(url, headers=login(client, "expert")).json()["items"]) == 2
    # summary and detail carry the latest decision of the caller's hospital
    summary = next(e for e in client.get("/api/exams", headers=h).json()["items"] if e["id"] == other.exam_id)
    assert summary["recognition"]["decision"] == "互认"
    detail = client.get(f"/api/exams/{other.exam_id}", headers=h).json()
    assert detail["permissions"]["recognise"] is True and len(detail["recognitions"]) == 2

    with workspace.sessions() as s:
        logged = s.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.action == "recognition.record")).all()
        assert len(logged) == 2 and all(e.exam_id == other.exam_id for e in logged)
        assert logged[0].detail["reason_code"] == "Q_ARTIFACT"
        assert all("张三" not in str(e.detail) for e in logged)  # the comment is never logged


def test_repeat_check_window_and_parts(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    mine = add_full_exam(workspace, "H_A", person_key="pk5", days_ago=1)  # own hospital: never listed
    chest_b = add_full_exam(workspace, "H_B", person_key="pk5", days_ago=20, score=88)
    chest_old = add_full_exam(workspace, "H_B", person_key="pk5", days_ago=300)
    head_c = add_full_exam(workspace, "H_C", person_key="pk5", days_ago=5, item="CT.HEAD.PLAIN",
                           standard="CT-HEAD-PLAIN", description="颅脑CT平扫", body_part="HEAD")
    uabd_c = add_full_exam(workspace, "H_C", person_key="pk5", days_ago=6, item="CT.UABD.PLAIN",
                           standard="CT-UABD", description="上腹部CT平扫", body_part="ABDOMEN")
    xray_b = add_full_exam(workspace, "H_B", person_key="pk5", days_ago=7, modality="DR", item="DX.CHEST.PA",
                           standard="DX-CHEST-PA", grade="乙", description="胸部正位")
    # no standard items at all: the series' BodyPartExamined decides
    nosplit = add_full_exam(workspace, "H_D", person_key="pk5", days_ago=8, item="CT.UNKNOWN", with_split=False,
                            body_part="CHEST")
    other_person = add_full_exam(workspace, "H_B", person_key="pk6", days_ago=3)
    with workspace.transaction() as s:
        grant_authorisation(s, "pk5", None)
        grant_authorisation(s, "pk6", None)
    client = make_client(workspace)
    h = login(client, "dr_a")
    url = f"/api/patients/{mine.patient_id}/repeat-check"

    def ids(**params: object) -> list[int]:
        r = client.get(url, params=params, headers=h)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["items"]]

    # chest CT: same modality and part, inside the default window (180 days), newest first
    assert ids(item="CT.CHEST.PLAIN") == [nosplit.exam_id, chest_b.exam_id]
    assert ids(item="CT.CHEST.PLAIN", window_days=400) == [nosplit.exam_id, chest_b.exam_id, chest_old.exam_id]
    assert ids(item="CT.CHEST.PLAIN", window_days=7) == []
    assert ids(item="CT.HEAD.ENH") == [head_c.exam_id]  # another method of the same part still counts
    assert ids(item="DX.CHEST.PA") == [xray_b.exam_id]  # DX matches a DR exam, not the chest CT
    assert ids(item="CT.UABD.ENH") == [uabd_c.exam_id]
    assert other_person.exam_id not in ids(item="CT.CHEST.PLAIN", window_days=3650)
    body = client.get(url, params={"item": "CT.CHEST.PLAIN"}, headers=h).json()
    assert body["item"]["parts"] == ["胸部"] and body["item"]["modality"] == "CT" and body["window_days"] == 180
    assert body["items"][1]["qc"]["score"] == 88.0
    assert client.get(url, params={"item": "CT.NOPE"}, headers=h).status_code == 422
    assert client.get(url, headers=h).status_code == 422
    assert client.get(url, params={"item": "CT.CHEST.PLAIN", "window_days": 0}, headers=h).status_code == 422
    # another hospital's patient without authorisation is invisible (404, like a missing one)
    stranger = add_full_exam(workspace, "H_B", person_key="pk7")
    for pid in (stranger.patient_id, 987654):
        r = client.get(f"/api/patients/{pid}/repeat-check", params={"item": "CT.CHEST.PLAIN"}, headers=h)
        assert r.status_code == 404


def test_parts_overlap_hierarchy() -> None:
    from radqc.serving.services.repeat import parts_overlap

    assert parts_overlap("胸部", "胸部")
    assert parts_overlap("上腹部", "腹部") and parts_overlap("腹部", "上腹部")
    assert not parts_overlap("颅脑", "颈部")  # siblings under 头颈部
    assert not parts_overlap("胸部", "上腹部")
