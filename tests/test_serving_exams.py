"""Exam search, detail, evidence pictures and a person's cross-hospital history (serving/routers/exams.py)."""

from __future__ import annotations

from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.serving.accounts import grant_authorisation, revoke_authorisation
from tests.serving_exam_support import add_full_exam, png_bytes
from tests.serving_support import add_exam, add_user, login, make_client, sql_statements


def _ids(payload: dict) -> set[int]:  # type: ignore[type-arg]
    return {e["id"] for e in payload["items"]}


def test_scope_own_other_and_authorised(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    own = add_full_exam(workspace, "H_A", person_key="pk1")
    other = add_full_exam(workspace, "H_B", person_key="pk1", days_ago=30)
    stranger = add_full_exam(workspace, "H_B", person_key="pk2")
    client = make_client(workspace)
    headers = login(client, "dr_a")

    listed = client.get("/api/exams", headers=headers).json()
    assert _ids(listed) == {own.exam_id} and listed["total"] == 1
    # another hospital's exam without authorisation looks exactly like a missing one
    r_other = client.get(f"/api/exams/{other.exam_id}", headers=headers)
    r_missing = client.get("/api/exams/999999", headers=headers)
    assert r_other.status_code == r_missing.status_code == 404
    assert r_other.json() == r_missing.json()
    assert client.get(f"/api/exams/{other.exam_id}/evidence/0", headers=headers).status_code == 404

    with workspace.transaction() as s:
        grant = grant_authorisation(s, "pk1", "H_A").id
    listed = client.get("/api/exams", headers=headers).json()
    assert _ids(listed) == {own.exam_id, other.exam_id}
    assert stranger.exam_id not in _ids(listed)
    by_id = {e["id"]: e for e in listed["items"]}
    assert by_id[own.exam_id]["own_hospital"] is True and by_id[other.exam_id]["own_hospital"] is False
    assert client.get(f"/api/exams/{other.exam_id}", headers=headers).status_code == 200
    only_other = client.get("/api/exams", params={"other_hospitals": "true"}, headers=headers).json()
    assert _ids(only_other) == {other.exam_id}

    with workspace.transaction() as s:
        revoke_authorisation(s, grant)
    assert client.get(f"/api/exams/{other.exam_id}", headers=headers).status_code == 404


def test_role_permissions(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "portal", "patient_portal")
    add_user(workspace, "hadmin_b", "hospital_admin", "H_B")
    add_user(workspace, "expert", "qc_expert_l1")
    a = add_full_exam(workspace, "H_A")
    b = add_full_exam(workspace, "H_B")
    client = make_client(workspace)
    assert client.get("/api/exams").status_code == 401
    assert client.get(f"/api/exams/{a.exam_id}").status_code == 401
    assert client.get("/api/exams", headers=login(client, "portal")).status_code == 403
    hadmin = login(client, "hadmin_b")
    assert _ids(client.get("/api/exams", headers=hadmin).json()) == {b.exam_id}
    assert client.get(f"/api/exams/{a.exam_id}", headers=hadmin).status_code == 404
    expert = login(client, "expert")
    assert _ids(client.get("/api/exams", headers=expert).json()) == {a.exam_id, b.exam_id}
    # a region role without patient.identity never sees the name
    detail = client.get(f"/api/exams/{a.exam_id}", headers=expert).json()
    assert "name" not in detail["patient"]
    assert "张三" not in client.get(f"/api/exams/{a.exam_id}", headers=expert).text
    # ... and rule-QC evidence on identifier fields is hidden from it
    assert detail["rule_qc"]["failures"][0]["evidence"] != {"patient_name": "张三"}
    assert detail["permissions"] == {"recognise": False, "download_original": False}


def test_search_filters(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "auditor", "auditor")
    ct = add_full_exam(workspace, "H_A", accession="ACC-CT-1", score=92, grade="3", days_ago=3,
                       description="胸部CT平扫")
    cr = add_full_exam(workspace, "H_B", modality="CR", item="DX.CHEST.PA", standard="DX-CHEST-PA", score=70,
                       grade="丙", days_ago=40, accession="X_100%", description="胸部正位")
    mr = add_full_exam(workspace, "H_B", modality="MR", item="MR.HEAD.PLAIN", standard="MR-BRAIN", score=50,
                       grade="0", days_ago=400, description="头颅MR平扫")
    bare = add_exam(workspace, "H_A", modality="CT,SR", days_ago=1, description="bare exam")
    client = make_client(workspace)
    h = login(client, "auditor")

    def ids(**params: object) -> set[int]:
        r = client.get("/api/exams", params=params, headers=h)
        assert r.status_code == 200, r.text
        return _ids(r.json())

    assert ids() == {ct.exam_id, cr.exam_id, mr.exam_id, bare}
    assert ids(hospital="H_B") == {cr.exam_id, mr.exam_id}
    assert ids(modality="DX") == {cr.exam_id}  # DX finds CR
    assert ids(modality="CT") == {ct.exam_id, bare}  # a member of "CT,SR"
    assert ids(item="DX.CHEST.PA") == {cr.exam_id}
    assert ids(grade="丙") == {cr.exam_id}
    assert ids(grade="3") == {ct.exam_id}
    assert ids(patient_id=mr.patient_id) == {mr.exam_id}
    assert ids(q="ACC-CT") == {ct.exam_id}
    assert ids(q="头颅") == {mr.exam_id}
    # LIKE wildcards are literal and injection is just text
    assert ids(q="%") == {cr.exam_id}
    assert ids(q="_100") == {cr.exam_id}
    assert ids(q="' OR 1=1 --") == set()
    from datetime import UTC, datetime, timedelta

    today = datetime.now(UTC).date()
    assert ids(date_from=(today - timedelta(days=60)).isoformat(),
               date_to=(today - timedelta(days=2)).isoformat()) == {ct.exam_id, cr.exam_id}
    # order: exam time, newest first; paging
    page = client.get("/api/exams", params={"limit": 2, "offset": 1}, headers=h).json()
    assert page["total"] == 4 and [e["id"] for e in page["items"]] == [ct.exam_id, cr.exam_id]
    assert client.get("/api/exams", params={"limit": 500}, headers=h).status_code == 422
    assert client.get("/api/exams", params={"date_from": "2024-13-40"}, headers=h).status_code == 422
    summary = next(e for e in client.get("/api/exams", headers=h).json()["items"] if e["id"] == cr.exam_id)
    assert summary["qc"] == {"score": 70.0, "grade": "丙", "image_score": 72.0, "image_grade": "丙",
                             "standard": "DX-CHEST-PA", "grading": "radiograph"}
    assert summary["items"] == [{"code": "DX.CHEST.PA", "name": "胸部正位"}]
    assert summary["patient"]["name"] == "张三"  # the auditor has patient.identity
    assert summary["hospital"] == {"code": "H_B", "name": "H_B 医院"}
    assert summary["recognition"] is None


def test_detail_contents_and_evidence(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    ex = add_full_exam(workspace, "H_A", instances=5)
    split_less = add_full_exam(workspace, "H_A", with_split=False, item="CT.HEAD.PLAIN")
    client = make_client(workspace)
    h = login(client, "dr_a")
    d = client.get(f"/api/exams/{ex.exam_id}", headers=h).json()
    assert d["patient"]["name"] == "张三"
    assert [s["id"] for s in d["series"]] == ex.series_ids
    assert [s["instances"] for s in d["series"]] == [5, 2]
    assert d["series"][0]["label"]["category"] == "CT.CHEST.AXIAL.LUNG" and d["series"][0]["label"]["plane"] == "axial"
    assert d["series"][0]["stack_url"] == f"/api/series/{ex.series_ids[0]}/stack"
    assert d["items"] == [{"code": "CT.CHEST.PLAIN", "name": "胸部CT平扫"}]
    assert d["standard_items"][0]["code"] == "CT.CHEST.PLAIN" and len(d["standard_items"][0]["standard_series"]) == 2
    assert d["report"]["impression"] == "胸部CT平扫未见异常。" and d["report"]["report_doctor"] == "李医生"
    assert d["rule_qc"]["score"] == 95.0
    iq = d["image_qc"]
    assert iq["score"] == 80.0 and iq["grade"] == "2" and iq["thresholds"]["3"] == 90
    assert set(iq["dimensions"]) == {"range", "positioning", "artifact", "centring", "noise", "sharpness",
                                     "reconstruction", "window", "sequences", "dose"}
    assert iq["dimensions"]["noise"]["measured_hu"] == 41.5 and "findings" not in iq["dimensions"]["noise"]
    ev = iq["deductions"][0]["evidence"][0]
    assert ev["series_id"] == ex.series_ids[0] and ev["series_uid"] == ex.series_uids[0]
    assert ev["instance_index"] == 3 and ev["image_url"] == f"/api/exams/{ex.exam_id}/evidence/0"
    assert ex.evidence_keys[0] not in client.get(f"/api/exams/{ex.exam_id}", headers=h).text  # keys never leave
    assert iq["not_assessed"][0]["dimension"] == "sequences"
    assert d["permissions"] == {"recognise": False, "download_original": False}  # own hospital
    assert d["recognitions"] == []

    img = client.get(ev["image_url"], headers=h)
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content == workspace.store.get(ex.evidence_keys[0])
    # only listed keys: other indexes, negative, traversal, other keys are all 404
    other_key = workspace.store.put(png_bytes(7)).key
    for bad in ("1", "-1", "../0", "..%2F..%2Fsecret", other_key, "0/../../1", "99999999999999999999"):
        assert client.get(f"/api/exams/{ex.exam_id}/evidence/{bad}", headers=h).status_code in (404, 422), bad
    assert client.get(f"/api/exams/{ex.exam_id}/evidence/0", headers=None).status_code == 401

    # items from the items stage when the series stage made no standard series
    d2 = client.get(f"/api/exams/{split_less.exam_id}", headers=h).json()
    assert d2["items"] == [{"code": "CT.HEAD.PLAIN", "name": "颅脑CT平扫"}]
    assert d2["standard_items"][0]["source"] == "items"

    with workspace.sessions() as s:
        views = s.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.action == "exam.view")).all()
        assert {v.exam_id for v in views} == {ex.exam_id, split_less.exam_id}
        for v in views:
            assert "张三" not in str(v.detail) and "张三" not in (v.target or "")


def test_patient_history_across_hospitals(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    own = add_full_exam(workspace, "H_A", person_key="pk9", days_ago=2)
    other_old = add_full_exam(workspace, "H_B", person_key="pk9", days_ago=100)
    other_new = add_full_exam(workspace, "H_C", person_key="pk9", days_ago=10)
    unrelated = add_full_exam(workspace, "H_B", person_key="pk10")
    client = make_client(workspace)
    h = login(client, "dr_a")
    r = client.get(f"/api/patients/{own.patient_id}/exams", headers=h).json()
    assert [e["id"] for e in r["items"]] == [own.exam_id]  # no authorisation yet
    assert r["patient"]["hospital"] == "H_A" and r["patient"]["name"] == "张三"
    with workspace.transaction() as s:
        grant_authorisation(s, "pk9", None)  # every hospital
    r = client.get(f"/api/patients/{own.patient_id}/exams", headers=h).json()
    assert [e["id"] for e in r["items"]] == [own.exam_id, other_new.exam_id, other_old.exam_id]
    with workspace.sessions() as s:  # the history view is in the access log, with what it showed
        entry = s.scalars(select(m.AccessLogEntry).where(m.AccessLogEntry.action == "patient.history")
                          .order_by(m.AccessLogEntry.id.desc())).first()
        assert entry is not None and entry.username == "dr_a"
        assert entry.detail["exams"] == [own.exam_id, other_new.exam_id, other_old.exam_id]
        assert "张三" not in str(entry.detail)
    assert client.get(f"/api/patients/{unrelated.patient_id}/exams", headers=h).status_code == 404
    assert client.get("/api/patients/424242/exams", headers=h).status_code == 404


def test_detail_and_search_query_count_independent_of_size(workspace) -> None:  # type: ignore[no-untyped-def]
    """No N+1: the same number of SQL statements for a 1-series and a 6-series exam, and for pages of 1 and 8."""
    add_user(workspace, "auditor", "auditor")
    small = add_full_exam(workspace, "H_A", n_series=1, instances=1)
    large = add_full_exam(workspace, "H_A", n_series=6, instances=30)
    for _ in range(6):
        add_full_exam(workspace, "H_B")
    client = make_client(workspace)
    h = login(client, "auditor")
    with sql_statements(workspace.engine) as statements:
        def n_for(url: str, **params: object) -> int:
            statements.clear()
            assert client.get(url, params=params, headers=h).status_code == 200
            return len(statements)

        n_small = n_for(f"/api/exams/{small.exam_id}")
        n_large = n_for(f"/api/exams/{large.exam_id}")
        n_page1 = n_for("/api/exams", limit=1)
        n_page8 = n_for("/api/exams", limit=8)
    assert n_small == n_large
    assert n_page1 == n_page8
    # authentication + the view + the access-log append: a fixed handful
    assert n_large <= 14, n_large


def test_hostile_inputs_are_refused_not_errors(workspace) -> None:  # type: ignore[no-untyped-def]
    """Out-of-range ids, NUL bytes, extreme dates: 404/422, never a 5xx (PostgreSQL included)."""
    add_user(workspace, "auditor", "auditor")
    add_user(workspace, "dr_a", "doctor", "H_A")
    ex = add_full_exam(workspace, "H_B")
    client = make_client(workspace)
    h = login(client, "auditor")
    doctor = login(client, "dr_a")
    cases = [
        ("get", "/api/exams/3000000000", {}, h), ("get", "/api/exams/0", {}, h),
        ("get", f"/api/exams/{ex.exam_id}/evidence/4294967296", {}, h),
        ("get", "/api/patients/99999999999/exams", {}, h),
        ("get", "/api/exams", {"q": "a\x00b"}, h), ("get", "/api/exams", {"hospital": "\x00"}, h),
        ("get", "/api/exams", {"patient_id": 2**40}, h),
        ("get", "/api/patients/1/repeat-check", {"item": "CT.CHEST.PLAIN\x00"}, h),
        ("post", "/api/exams/5000000000/recognition", {"decision": "互认"}, doctor),
    ]
    for method, url, params, headers in cases:
        if method == "get":
            r = client.get(url, params=params, headers=headers)
        else:
            r = client.post(url, json=params, headers=headers)
        assert r.status_code in (404, 422), (url, params, r.status_code, r.text)
    ok = client.get("/api/exams", params={"date_from": "0001-01-01", "date_to": "9999-12-31"}, headers=h)
    assert ok.status_code == 200 and ok.json()["total"] == 1
    r = client.post(f"/api/exams/{ex.exam_id}/recognition", json={"decision": "互认", "comment": "x\x00y"},
                    headers=doctor)
    assert r.status_code in (404, 422)
