"""Exam-item parser: slots and combined-order splitting on the domain notes' examples."""

from __future__ import annotations

from radqc.pipelines.items.parser import clean, parse, rule_method


def _segs(name: str) -> list[dict]:
    return [s.to_dict() for s in parse(name).segments]


def test_clean_strips_noise_and_full_width() -> None:
    text, noise = clean("*腰椎间盘ＣＴ平扫（含三个椎间盘）（云胶片）【急】")
    assert text == "腰椎间盘ct平扫"
    assert "(云胶片)" in noise and "(含三个椎间盘)" in noise and "*" in noise


def test_radiograph_with_repeated_part() -> None:
    (seg,) = _segs("胸部正位拍片（胸部）")
    assert seg["modality"] == "DX" and seg["parts"] == ["胸部"] and seg["views"] == ["正位"]


def test_shared_modality_and_method_in_brackets() -> None:
    segs = _segs("计算机体层成像（CT）增强(胸部+上腹)")
    assert [s["parts"] for s in segs] == [["胸部"], ["上腹部"]]
    assert all(s["modality"] == "CT" and s["method_terms"] == ["增强"] for s in segs)
    assert segs[1]["inherited"] == ["modality", "method"]


def test_underscore_joined_items_keep_plain_plus_enhanced_whole() -> None:
    segs = _segs("下腹部CT平扫+增强(能量成像)_上腹部CT平扫+增强(能量成像)")
    assert [s["parts"] for s in segs] == [["下腹部"], ["上腹部"]]
    for s in segs:
        assert rule_method(s["method_terms"]) == "平扫+增强"
        assert "能谱" in s["method_terms"]


def test_sides_per_segment() -> None:
    segs = _segs("右侧肩关节MR平扫,左侧肩关节MR平扫")
    assert [(s["parts"], s["sides"]) for s in segs] == [(["肩关节"], ["右"]), (["肩关节"], ["左"])]
    assert all(s["modality"] == "MR" for s in segs)


def test_two_items_joined_by_plus() -> None:
    segs = _segs("头颅CT平扫+胸部CT平扫")
    assert [s["parts"] for s in segs] == [["颅脑"], ["胸部"]]


def test_space_and_plus_without_a_part_do_not_split() -> None:
    (seg,) = _segs("副鼻窦CT平扫 增强+三维")
    assert seg["parts"] == ["鼻窦"] and rule_method(seg["method_terms"]) == "平扫+增强"
    assert seg["postprocessing"] == ["三维重建"]


def test_distributed_method_written_after_the_parts() -> None:
    segs = _segs("胸部+上腹部CT平扫")
    assert [s["parts"] for s in segs] == [["胸部"], ["上腹部"]]
    assert segs[0]["modality"] == "CT" and segs[0]["method_terms"] == ["平扫"]


def test_english_protocol_name() -> None:
    (seg,) = _segs("Tri Phase Liver")
    assert seg["modality"] == "CT" and seg["parts"] == ["上腹部"] and rule_method(seg["method_terms"]) == "多期增强"


def test_device_tier_and_laterality_in_brackets() -> None:
    (seg,) = _segs("64排头颅CT平扫")
    assert "CT_64" in seg["tiers"] and seg["residue"] == ""
    (knee,) = _segs("膝关节MRI(左)")
    assert knee["sides"] == ["左"]


def test_angio_pair_stays_whole() -> None:
    (seg,) = _segs("头颅CTA+CTV")
    assert seg["method_terms"] == ["CTA", "CTV"]


def test_empty_and_garbage_never_raise() -> None:
    assert parse("").segments == []
    assert parse("   ").segments == []
    (seg,) = _segs("挂号费")
    assert seg["parts"] == [] and seg["modality"] is None
