"""The exam detail's per-process cache (serving/services/detail_cache.py): it may only ever
serve what the catalogue holds now. Each test fills the cache with a first view, changes the
exam the way a pipeline, an upload or a records import does, and expects the next view to show
the change; per-caller parts must never leak between callers through the cached part."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from sqlalchemy import select

from radqc.catalogue import models as m
from radqc.serving.services.detail_cache import DetailCache, ExamStatic
from tests.serving_exam_support import add_full_exam
from tests.serving_support import add_user, login, make_client, sql_statements


def _view(client: Any, headers: dict[str, str], exam_id: int) -> dict[str, Any]:
    r = client.get(f"/api/exams/{exam_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _cache(client: Any) -> DetailCache:
    return client.app.state.ctx.detail_cache  # type: ignore[no-any-return]


def test_second_view_is_served_from_the_cache_with_the_same_content(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    exam = add_full_exam(workspace, "H_A")
    client = make_client(workspace)
    headers = login(client, "dr_a")
    with sql_statements(workspace.engine) as statements:
        first = _view(client, headers, exam.exam_id)
        cold = len(statements)
        statements.clear()
        before = _cache(client).stats()
        second = _view(client, headers, exam.exam_id)
        warm = len(statements)
    after = _cache(client).stats()
    assert after["hits"] == before["hits"] + 1 and after["entries"] == 1
    assert warm <= cold - 5, (cold, warm)  # ledger, standard series, series, counts, report not read again
    assert first == second
    assert first["image_qc"]["deductions"][0]["evidence"][0]["series_id"] == exam.series_ids[0]
    assert [s["instances"] for s in first["series"]] == [4, 2]


def test_a_new_stage_result_is_shown_at_once(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    exam = add_full_exam(workspace, "H_A", score=80.0)
    client = make_client(workspace)
    headers = login(client, "dr_a")
    assert _view(client, headers, exam.exam_id)["image_qc"]["score"] == 80.0
    with workspace.transaction() as s:  # a re-run of image QC, as the pipeline writes it
        latest = s.scalars(select(m.LedgerEntry).where(m.LedgerEntry.exam_id == exam.exam_id,
                                                       m.LedgerEntry.stage == "image_qc",
                                                       m.LedgerEntry.status == "succeeded")
                           .order_by(m.LedgerEntry.id.desc())).first()
        assert latest is not None
        s.add(m.LedgerEntry(exam_id=exam.exam_id, stage="image_qc", version="2", status="succeeded",
                            result={**latest.result, "score": 55.0, "grade": "0"}))
    assert _view(client, headers, exam.exam_id)["image_qc"]["score"] == 55.0


def test_new_images_and_a_new_report_are_shown_at_once(workspace) -> None:  # type: ignore[no-untyped-def]
    add_user(workspace, "dr_a", "doctor", "H_A")
    exam = add_full_exam(workspace, "H_A")
    client = make_client(workspace)
    headers = login(client, "dr_a")
    first = _view(client, headers, exam.exam_id)
    assert first["series"][1]["instances"] == 2
    assert first["report"]["impression"] == "胸部CT平扫未见异常。"
    with workspace.transaction() as s:  # an upload adds an image to the second series
        digest = hashlib.sha256(b"late image").hexdigest()
        s.add(m.Instance(series_id=exam.series_ids[1], sop_instance_uid="2.25.424242.1", instance_number=3,
                         content_hash=digest, size_original=100, storage_key=digest, stored_hash=digest,
                         size_stored=100))
    assert _view(client, headers, exam.exam_id)["series"][1]["instances"] == 3
    with workspace.transaction() as s:  # the hospital re-sends the report, corrected
        record = s.scalars(select(m.ExamRecord).where(m.ExamRecord.exam_id == exam.exam_id)).one()
        record.impression = "右肺上叶小结节。"
    assert _view(client, headers, exam.exam_id)["report"]["impression"] == "右肺上叶小结节。"


def test_callers_parts_are_not_shared_through_the_cache(workspace) -> None:  # type: ignore[no-untyped-def]
    """The first viewer may see identifiers; a later one without ``patient.identity`` must not,
    although the exam-wide part now comes from the cache."""
    add_user(workspace, "dr_a", "doctor", "H_A")
    add_user(workspace, "expert", "qc_expert_l1")
    exam = add_full_exam(workspace, "H_A", patient_name="王五")
    client = make_client(workspace)
    doctor = _view(client, login(client, "dr_a"), exam.exam_id)
    assert doctor["rule_qc"]["failures"][0]["evidence"] == {"patient_name": "王五"}
    assert doctor["permissions"]["recognise"] is False  # own hospital's exam
    hits = _cache(client).stats()["hits"]
    r = client.get(f"/api/exams/{exam.exam_id}", headers=login(client, "expert"))
    assert _cache(client).stats()["hits"] == hits + 1
    assert "王五" not in r.text
    assert r.json()["rule_qc"]["failures"][0]["evidence"] != {"patient_name": "王五"}


def test_the_cache_is_bounded_in_bytes_and_evicts_the_least_recently_used() -> None:
    def entry(n: int, size: int) -> ExamStatic:
        return ExamStatic(version=(n,), items=[], members=b"x" * size, rule_qc_full=b"null", rule_qc_redacted=b"null")

    cache = DetailCache(capacity_bytes=3000)
    for n in (1, 2, 3):
        cache.put(n, entry(n, 700))
    assert cache.get(1, (1,)) is not None  # 1 is now the most recently used
    cache.put(4, entry(4, 700))
    stats = cache.stats()
    assert stats["bytes"] <= 3000
    assert cache.get(2, (2,)) is None  # the least recently used went first
    assert cache.get(1, (1,)) is not None and cache.get(4, (4,)) is not None
    assert cache.get(4, (5,)) is None  # another version of the exam is a miss, never the old entry
    cache.put(9, entry(9, 10_000))  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.get(9, (9,)) is None and cache.get(4, (4,)) is not None
    assert DetailCache(0).get(1, (1,)) is None


def test_the_cache_can_be_turned_off(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RADQC_DETAIL_CACHE_MB", "0")
    add_user(workspace, "dr_a", "doctor", "H_A")
    exam = add_full_exam(workspace, "H_A")
    client = make_client(workspace)
    headers = login(client, "dr_a")
    assert _view(client, headers, exam.exam_id) == _view(client, headers, exam.exam_id)
    assert _cache(client).stats()["entries"] == 0


def _decide(workspace: Any, exam_id: int, username: str, decision: str, reason: str | None = None) -> None:
    """A 互认 decision row as the recognition route writes it (decisions are insert-only)."""
    with workspace.transaction() as s:
        user = s.scalars(select(m.AppUser).where(m.AppUser.username == username)).one()
        s.add(m.Recognition(exam_id=exam_id, user_id=user.id, hospital_id=user.hospital_id, decision=decision,
                            reason_code=reason, reason_category="quality" if reason else None))


def test_a_new_decision_is_shown_at_once_and_only_to_whom_it_belongs(workspace) -> None:  # type: ignore[no-untyped-def]
    """The decision list is cached with the exam; a new decision changes the version. The
    summary's ``recognition`` stays the caller's hospital's newest decision."""
    add_user(workspace, "dr_a", "doctor", "H_A")
    add_user(workspace, "dr_b", "doctor", "H_B")
    add_user(workspace, "dr_c", "doctor", "H_C")
    add_user(workspace, "de", "data_engineer")
    exam = add_full_exam(workspace, "H_A")
    client = make_client(workspace)
    owner = login(client, "dr_a")
    first = _view(client, owner, exam.exam_id)
    assert first["recognitions"] == [] and first["recognition"] is None
    _decide(workspace, exam.exam_id, "dr_b", "不互认", "image_quality")
    second = _view(client, owner, exam.exam_id)
    assert [(r["decision"], r["by"]["hospital"]) for r in second["recognitions"]] == [("不互认", "H_B")]
    assert second["recognition"] is None  # H_B's decision is not H_A's
    _decide(workspace, exam.exam_id, "dr_c", "互认")
    _decide(workspace, exam.exam_id, "dr_a", "互认")
    third = _view(client, owner, exam.exam_id)
    assert [r["by"]["hospital"] for r in third["recognitions"]] == ["H_A", "H_C", "H_B"]
    assert third["recognition"]["by"]["hospital"] == "H_A"
    hits = _cache(client).stats()["hits"]
    engineer = client.get(f"/api/exams/{exam.exam_id}", headers=login(client, "de"))
    assert _cache(client).stats()["hits"] == hits + 1
    assert engineer.status_code == 200, engineer.text
    body = engineer.json()
    assert body["recognitions"] == []  # no recognition.read
    assert body["recognition"]["by"]["hospital"] == "H_A"  # a region role: the newest of any hospital


def test_an_edited_reason_list_is_shown_at_once(workspace, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The decisions' reason texts come from the reason list file: editing it changes the version."""
    reasons = tmp_path / "reasons.yaml"
    reasons.write_text("reasons:\n  - {code: Q_ONE, category: quality, zh: 第一版, en: First wording}\n",
                       encoding="utf-8")
    monkeypatch.setenv("RADQC_RECOGNITION_REASONS", str(reasons))
    add_user(workspace, "dr_a", "doctor", "H_A")
    add_user(workspace, "dr_b", "doctor", "H_B")
    exam = add_full_exam(workspace, "H_A")
    client = make_client(workspace)
    headers = login(client, "dr_a")
    _decide(workspace, exam.exam_id, "dr_b", "不互认", "Q_ONE")
    assert _view(client, headers, exam.exam_id)["recognitions"][0]["reason"]["en"] == "First wording"
    assert _view(client, headers, exam.exam_id)["recognitions"][0]["reason"]["en"] == "First wording"
    reasons.write_text("reasons:\n  - {code: Q_ONE, category: quality, zh: 第二版, en: Second wording}\n",
                       encoding="utf-8")
    stat = reasons.stat()  # a later mtime even on a coarse-grained file system clock
    os.utime(reasons, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _view(client, headers, exam.exam_id)["recognitions"][0]["reason"]["en"] == "Second wording"
