"""Review round trip on a workspace (low confidence -> confirmed -> reused at that hospital only),
the items stage (no order, combined order, re-runs after a confirmation) and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from radqc.catalogue import models as m
from radqc.pipelines.items import mappings as mp
from radqc.pipelines.items.normalise import normalise
from radqc.pipelines.runner.local import run_pipeline

ODD = "头部特检（甲类）"  # no modality word: the parser cannot map it with confidence


@pytest.fixture(autouse=True)
def _no_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADQC_ITEMS_NO_EMBEDDINGS", "1")


def _add_exams(ws, rows: list[tuple[str, str, list]]) -> None:  # type: ignore[no-untyped-def]
    with ws.transaction() as s:
        hospitals: dict[str, int] = {}
        for hosp, acc, items in rows:
            if hosp not in hospitals:
                h = m.Hospital(code=hosp)
                s.add(h)
                s.flush()
                hospitals[hosp] = h.id
            s.add(m.Exam(accession_number=acc, hospital_id=hospitals[hosp], ordered_items=items, status={}))


def _results(ws) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with ws.sessions() as s:
        rows = s.execute(select(m.Exam.accession_number, m.LedgerEntry.result, m.LedgerEntry.id)
                         .join(m.Exam, m.Exam.id == m.LedgerEntry.exam_id)
                         .where(m.LedgerEntry.stage == "items", m.LedgerEntry.status == "succeeded")
                         .order_by(m.LedgerEntry.id)).all()
    return {acc: result for acc, result, _ in rows}


def test_review_round_trip(workspace) -> None:  # type: ignore[no-untyped-def]
    first = normalise(ODD, use_embeddings=False)
    assert first["needs_review"]
    with workspace.transaction() as s:
        review = mp.enqueue(s, first, hospital="H1", local_code="X-17")
        again = mp.enqueue(s, first, hospital="H1")
        assert review is not None and again is not None and again.id == review.id
        assert again.occurrences == 2
        rid = review.id
    with workspace.transaction() as s:
        with pytest.raises(mp.MappingError):
            mp.confirm(s, rid, ["NO.SUCH.CODE"])
    with workspace.transaction() as s:
        mp.confirm(s, rid, ["CT.HEAD.PLAIN"], by="dr-li")
    with workspace.sessions() as s:
        table = mp.MappingTable.load(s, "H1")
        row = s.get(m.ItemReview, rid)
        assert row is not None and row.status == "confirmed" and row.resolved_by == "dr-li"
    reused = normalise(ODD, hospital="H1", mappings=table, use_embeddings=False)
    assert reused["status"] == "mapped" and not reused["needs_review"]
    assert [(i["code"], i["source"], i["confidence"]) for i in reused["items"]] == [("CT.HEAD.PLAIN", "hospital_mapping", 1.0)]
    # the local code alone finds it too; another hospital does not get H1's decision
    by_code = normalise("whatever", hospital="H1", local_code="X-17", mappings=table, use_embeddings=False)
    assert by_code["items"][0]["source"] == "hospital_mapping"
    with workspace.sessions() as s:
        other = mp.MappingTable.load(s, "H2")
    assert normalise(ODD, hospital="H2", mappings=other, use_embeddings=False)["needs_review"]
    with workspace.transaction() as s, pytest.raises(mp.MappingError):
        mp.confirm(s, rid, ["CT.HEAD.PLAIN"])  # already decided


def test_reject_and_laterality_validation(workspace) -> None:  # type: ignore[no-untyped-def]
    with workspace.transaction() as s:
        rid = mp.enqueue(s, normalise("挂号费", use_embeddings=False), hospital="H1").id  # type: ignore[union-attr]
        with pytest.raises(mp.MappingError):
            mp.parse_codes("CT.HEAD.PLAIN:左")  # not a lateral item
        assert mp.parse_codes("MR.KNEE.PLAIN:右;CT.CHEST.PLAIN") == [
            {"code": "MR.KNEE.PLAIN", "laterality": "右"}, {"code": "CT.CHEST.PLAIN", "laterality": None}]
        mp.reject(s, rid, by="dr-wang")
    with workspace.sessions() as s:
        assert mp.review_rows(s, status="open") == []
        assert mp.mapping_rows(s) == []


def test_import_csv(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "map.csv"
    path.write_text("hospital,local_code,local_name,region_code,standard_codes\n"
                    "H1,250301,头颅平扫（特需）,R-0001,CT.HEAD.PLAIN\n"
                    ",,全院通用胸腹,,CT.CHEST.PLAIN;CT.UABD.PLAIN\n"
                    "H1,999,坏行,,NOPE\n", encoding="utf-8")
    with workspace.transaction() as s:
        out = mp.import_csv(s, path)
    assert out["imported"] == 2 and [e["line"] for e in out["errors"]] == [4]
    with workspace.sessions() as s:
        table = mp.MappingTable.load(s, "H9")
    r = normalise("全院通用胸腹", hospital="H9", mappings=table, use_embeddings=False)
    assert {i["code"] for i in r["items"]} == {"CT.CHEST.PLAIN", "CT.UABD.PLAIN"}
    # the region's generated institution code resolves to the hospital's own row
    with workspace.sessions() as s:
        h1 = mp.MappingTable.load(s, "H1")
    r = normalise("x", hospital="H1", local_code="R-0001", mappings=h1, use_embeddings=False)
    assert [(i["code"], i["source"]) for i in r["items"]] == [("CT.HEAD.PLAIN", "hospital_mapping")]


def test_stage_no_order_combined_order_and_rerun_after_confirmation(workspace) -> None:  # type: ignore[no-untyped-def]
    _add_exams(workspace, [("H1", "A1", ["头颅CT平扫+胸部CT平扫"]), ("H1", "A2", []), ("H1", "A3", [ODD, "胸部CT平扫"]),
                           ("H2", "B1", [ODD])])
    summary = run_pipeline(workspace, ["items"], workers=1).to_dict()
    assert summary["stages"]["items"]["succeeded"] == 4, summary
    res = _results(workspace)
    assert res["A2"]["no_order"] is True and res["A2"]["standard_items"] == [] and res["A2"]["ordered"] == []
    assert [(i["code"], i["from_text_index"]) for i in res["A1"]["standard_items"]] == [
        ("CT.HEAD.PLAIN", 0), ("CT.CHEST.PLAIN", 0)]
    assert {"code", "name", "modality", "parts", "method", "laterality", "confidence", "source"} <= set(
        res["A1"]["standard_items"][0])
    assert [i["code"] for i in res["A3"]["standard_items"]] == ["CT.CHEST.PLAIN"]  # no silent guess for ODD
    assert res["A3"]["unmapped"][0]["text"] == ODD
    # forced re-run: the projection counts each exam once
    run_pipeline(workspace, ["items"], workers=1, force=True)
    with workspace.sessions() as s:
        reviews = {(r["hospital"], r["local_name"]): r for r in mp.review_rows(s)}
    assert reviews[("H1", ODD)]["occurrences"] == 1 and reviews[("H2", ODD)]["occurrences"] == 1
    with workspace.transaction() as s:
        mp.confirm(s, reviews[("H1", ODD)]["id"], ["CT.HEAD.PLAIN"])
    # a confirmation changes the stage's versions: a plain run re-runs and uses it, at H1 only
    summary = run_pipeline(workspace, ["items"], workers=1).to_dict()
    assert summary["stages"]["items"]["succeeded"] == 4
    res = _results(workspace)
    assert [(i["code"], i["source"]) for i in res["A3"]["standard_items"]] == [
        ("CT.HEAD.PLAIN", "hospital_mapping"), ("CT.CHEST.PLAIN", "parser")]
    assert res["B1"]["standard_items"] == [] and res["B1"]["ordered"][0]["needs_review"]


def test_cli_contract(workspace) -> None:  # type: ignore[no-untyped-def]
    from radqc.cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["items", "normalise", "右侧肩关节MR平扫,左侧肩关节MR平扫", ODD, "--json", "--hospital", "H1"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [d["input"] for d in data] == ["右侧肩关节MR平扫,左侧肩关节MR平扫", ODD]
    for d in data:
        assert {"input", "items", "status", "needs_review", "slots", "evidence"} <= set(d)
        assert d["status"] in ("mapped", "review", "unknown")
        for it in d["items"]:
            assert {"code", "name", "modality", "parts", "method", "laterality", "confidence", "source"} <= set(it)
            assert it["laterality"] in ("左", "右", "双侧", None) and 0.0 <= it["confidence"] <= 1.0
    assert [(i["code"], i["laterality"]) for i in data[0]["items"]] == [("MR.SHOULDER.PLAIN", "右"), ("MR.SHOULDER.PLAIN", "左")]
    with workspace.transaction() as s:
        rid = mp.enqueue(s, data[1], hospital="H1").id  # type: ignore[union-attr]
    listed = json.loads(runner.invoke(app, ["items", "review", "list", "--json"]).stdout)
    assert [r["id"] for r in listed] == [rid]
    ok = runner.invoke(app, ["items", "review", "confirm", str(rid), "CT.HEAD.PLAIN", "--by", "dr-li"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["items", "review", "reject", str(rid)])
    assert bad.exit_code == 2
    again = json.loads(runner.invoke(app, ["items", "normalise", ODD, "--hospital", "H1", "--json"]).stdout)
    assert again[0]["items"][0]["source"] == "hospital_mapping"
    maps = json.loads(runner.invoke(app, ["items", "mappings", "--json"]).stdout)
    assert maps[0]["standard_items"] == [{"code": "CT.HEAD.PLAIN", "laterality": None}]


def test_ordered_entries_with_local_codes() -> None:
    from radqc.pipelines.runner.stage import ExamContext, StoreRef
    from radqc.pipelines.stages.items import ordered_entries

    ctx = ExamContext(exam_id=1, study_instance_uid=None, accession_number="A", modality="CT", exam_time=None,
                      study_description=None, ordered_items=("头颅CT平扫", {"name": "胸部CT平扫", "code": "L2"}, "", None),
                      hospital_code="H1", patient_sex=None, patient_birth_year=None, series=(),
                      store=StoreRef("local", "/nonexistent"),
                      records=({"exam_items": ["头颅CT平扫", "胸部CT平扫"], "extra": {"exam_item_codes": ["L1", "X"]}},))
    assert ordered_entries(ctx) == [("头颅CT平扫", "L1"), ("胸部CT平扫", "L2")]


def test_a_name_without_modality_takes_the_modality_of_the_images() -> None:
    from radqc.pipelines.items.normalise import normalise
    from radqc.pipelines.stages.items import _with_image_modality

    bare = normalise("THORAX", use_embeddings=False)
    assert bare["status"] != "mapped"
    r = _with_image_modality(bare, "CR", normalise, False)
    assert r["status"] == "mapped" and [i["code"] for i in r["items"]] == ["DX.CHEST.PA"]
    assert r["input"] == "THORAX" and any("检查类型取自影像" in e for e in r["evidence"])
    assert _with_image_modality(bare, None, normalise, False) is bare  # no images' modality: no guess
    vague = normalise("MRI", use_embeddings=False)
    assert _with_image_modality(vague, "MR", normalise, False)["status"] != "mapped"  # still nothing to map
    named = normalise("胸部CT平扫", use_embeddings=False)
    assert _with_image_modality(named, "MR", normalise, False) is named  # the name's own modality wins
