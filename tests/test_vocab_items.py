"""Integrity of the standard vocabularies: parts, exam items, old 2012 codes (radqc.vocab)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import radqc.vocab as vocab
from radqc.vocab import build_exam_items
from radqc.vocab.items import MODALITIES, PART_KINDS, split_2012

ROOT = Path(__file__).resolve().parents[1]
SYNTH_ITEMS = ROOT / "datasets" / "synthetic" / "clinical" / "data" / "items.yaml"
QC_LEXICON = ROOT / "qc_rules" / "lexicons" / "items.yaml"


def test_dictionary_size_and_modalities() -> None:
    items = vocab.exam_items()
    assert len(items) >= 300
    assert {it.modality for it in items.values()} == set(MODALITIES)


def test_codes_follow_the_design_and_are_unique() -> None:
    items = vocab.exam_items()
    pat = re.compile(r"^(CT|MR|DX|MG|RF)(\.[A-Z0-9]+){2,3}$")
    raw = yaml.safe_load(vocab.items.ITEMS_FILE.read_text(encoding="utf-8"))["items"]
    codes = [r["code"] for r in raw]
    assert len(codes) == len(set(codes)) == len(items)
    for code, it in items.items():
        assert pat.match(code), code
        assert code.split(".")[0] == it.modality


def test_every_referenced_part_exists_and_fits_the_modality() -> None:
    parts = vocab.parts()
    for it in vocab.exam_items().values():
        assert it.parts, it.code
        for p in it.parts:
            assert p in parts, (it.code, p)
            assert it.modality in parts[p].modalities, (it.code, p)


def test_lateral_items_have_lateral_parts_only() -> None:
    parts = vocab.parts()
    for it in vocab.exam_items().values():
        if it.lateral:
            assert all(parts[p].lateral for p in it.parts), it.code
        else:
            assert not all(parts[p].lateral for p in it.parts), it.code


def test_parts_table_is_consistent() -> None:
    parts = vocab.parts()
    assert len({p.code for p in parts.values()}) == len(parts)
    seen: dict[str, str] = {}
    for p in parts.values():
        assert p.kind in PART_KINDS, p.name
        assert set(p.modalities) <= set(MODALITIES), p.name
        assert len(p.hierarchy) == 3 and p.hierarchy[-1] == p.name, p.name
        assert re.fullmatch(r"[A-Z0-9]+", p.code), p.code
        if p.snomed is not None:
            assert re.fullmatch(r"\d{6,18}", p.snomed), (p.name, p.snomed)
        if p.z_range is not None:
            assert p.z_range[0] < p.z_range[1], p.name
            assert p.z_order is not None and p.z_range[0] < p.z_order < p.z_range[1]
        for alias in (p.name, *p.aliases):
            key = vocab.norm_key(alias)
            assert seen.setdefault(key, p.name) == p.name, f"alias {alias!r} of {p.name} and {seen[key]}"
    # trunk parts are ordered head to feet
    order = [parts[n].z_order for n in ("颅脑", "颈部软组织", "胸部", "上腹部", "下腹部", "盆腔")]
    assert order == sorted(o for o in order if o is not None)
    for name in vocab.umbrella_words().get("CT", {}).get("腹部", ()):
        assert name in parts


def test_part_aliases_and_unknown_part() -> None:
    assert vocab.part("头颅").name == "颅脑"
    assert vocab.part("副鼻窦").name == "鼻窦"
    assert vocab.part("腰椎间盘").name == "腰椎"
    assert vocab.part("ＨＥＡＤ").name == "颅脑"  # full-width, case-folded
    assert vocab.part("UABD").name == "上腹部"
    with pytest.raises(KeyError, match="unknown billing part"):
        vocab.part("翅膀")
    with pytest.raises(KeyError, match="未知"):
        vocab.item("CT.WING.PLAIN")


def test_qc_lexicon_part_names_are_reused_exactly() -> None:
    lexicon = yaml.safe_load(QC_LEXICON.read_text(encoding="utf-8"))
    parts = vocab.parts()
    missing = [name for name in lexicon["parts"] if name not in parts]
    assert missing == []


def test_every_synthetic_item_exists_with_same_modality_part_method() -> None:
    synth = yaml.safe_load(SYNTH_ITEMS.read_text(encoding="utf-8"))["items"]
    assert len(synth) == 27
    for row in synth:
        it = vocab.item(row["code"])
        assert it.modality == row["modality"], row["code"]
        assert it.parts == (row["part"],), row["code"]
        assert it.method == row["method"], row["code"]
        assert it.lateral == bool(row.get("lateral", False)), row["code"]
        if row["modality"] == "DX":
            assert it.view_code == row["code"].split(".")[-1]
            assert it.view is not None


def test_find_items() -> None:
    assert [i.code for i in vocab.find_items("CT", ["头颅"], "平扫")] == ["CT.HEAD.PLAIN"]
    assert [i.code for i in vocab.find_items("CT", ["胸部"], "PLAIN")] == ["CT.CHEST.PLAIN", "CT.CHEST.PLAIN.VE"]
    assert [i.code for i in vocab.find_items("DR", ["胸部"], view="正侧位")] == []
    assert [i.code for i in vocab.find_items("DX", ["胸部"], view="PALAT")] == ["DX.CHEST.PALAT"]
    assert [i.code for i in vocab.find_items("DX", ["腰椎"], view="正侧位")] == ["DX.LSPINE.APLAT"]
    assert {i.code for i in vocab.find_items("CT", ["颈动脉", "颅内动脉"], "CTA")} == {"CT.HEADNECK.CTA"}
    assert vocab.find_items("MR", ["膝关节"], "平扫")[0].code == "MR.KNEE.PLAIN"
    assert vocab.find_items("MR", ["膝关节"], "CTA") == []


def test_2012_codes_are_well_formed_and_map_to_items() -> None:
    rows = vocab.catalogue_2012()
    keys = [(r.code, r.ext) for r in rows]
    assert len(keys) == len(set(keys))
    mains = {r.code for r in rows if not r.is_addon}
    modalities = set()
    for r in rows:
        assert re.fullmatch(r"21\d{7}", r.code) and re.fullmatch(r"\d{4}", r.ext)
        assert re.fullmatch(r"00\d{13}", r.full)
        assert r.code in mains, f"add-on {r.full} without its main row"
        for it in vocab.map_2012(r.full):
            assert it.code in vocab.exam_items()
            modalities.add(it.modality)
    assert {"CT", "MR", "DX"} <= modalities
    # every old code listed on an item is a main row of the table
    fulls = {r.full for r in rows if not r.is_addon}
    for it in vocab.exam_items().values():
        assert set(it.old_codes) <= fulls, it.code


def test_2012_main_and_addon_resolution() -> None:
    assert split_2012("002103000010003") == ("210300001", "0003")
    assert split_2012("210300001-3") == ("210300001", "0003")
    assert split_2012("210300001") == ("210300001", "0000")
    chest = vocab.map_2012("210300001", parts=["胸部"])
    assert "CT.CHEST.PLAIN" in {i.code for i in chest}
    assert all(i.price_item == "CT平扫" or i.method in ("低剂量", "HRCT") for i in chest)
    m = vocab.lookup_2012("002103000010003")  # 三维重建 add-on of CT平扫
    assert m.addon is not None and "三维重建" in m.addon.name
    assert m.addon.guideline_addon is None  # folded into the main price under the guideline
    assert {i.code for i in m.items} == {i.code for i in vocab.map_2012("210300001")}
    mr = vocab.map_2012("002102000010000", parts=["颅脑"])
    assert "MR.HEAD.PLAIN" in {i.code for i in mr}
    with pytest.raises(KeyError):
        vocab.lookup_2012("002103000019999")
    with pytest.raises(KeyError):
        vocab.map_2012("12345")


def test_generated_table_matches_its_source() -> None:
    assert build_exam_items.main(["--check"]) == 0


def test_build_refuses_duplicates_and_unknown_parts() -> None:
    src = yaml.safe_load(build_exam_items.SRC_FILE.read_text(encoding="utf-8"))
    dup = dict(src, items=[*src["items"], {"modality": "CT", "part": "颅脑", "method": "平扫"}])
    with pytest.raises(ValueError, match="duplicate"):
        build_exam_items.build(dup)
    bad = dict(src, items=[{"modality": "CT", "part": "翅膀", "method": "平扫"}])
    with pytest.raises(ValueError, match="unknown part"):
        build_exam_items.build(bad)


def test_version_is_stable_and_short() -> None:
    v = vocab.vocab_version()
    assert re.fullmatch(r"[0-9a-f]{12}", v)
    assert v == vocab.vocab_version()
