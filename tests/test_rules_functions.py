"""The built-in functions rule expressions call (qc_rules.functions): identity checks, times,
report text (sections, sentences, negation, laterality, parts, sex terms, critical values)
and header helpers. Each assertion is one a wrong implementation would fail."""

from __future__ import annotations

import inspect

import pytest

from radqc.qc_rules.functions import FUNCTIONS
from radqc.qc_rules.functions import basic as b
from radqc.qc_rules.functions import dicom as d
from radqc.qc_rules.functions import report as r

CONTRACT_NAMES = ["is_blank", "length", "matches", "id_number_valid", "id_birth_date", "id_sex", "mobile_valid",
                  "index_string_valid", "minutes_between", "age_years", "sections", "sentences", "sex_terms",
                  "lateralities", "item_body_parts", "critical_values", "normalise_sex"]


def test_contract_functions_registered_documented_and_none_safe():
    for name in CONTRACT_NAMES:
        assert name in FUNCTIONS, name
    for name, fn in FUNCTIONS.items():
        assert fn.__doc__ and fn.__doc__.strip(), f"{name} has no docstring"
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_POSITIONAL]
        if name in ("matches", "has_window", "has_series", "index_part"):
            continue  # second argument is a pattern / preset / index
        fn(*([None] * len(params)))  # must not raise


def test_is_blank_and_length():
    assert b.is_blank(None) and b.is_blank("  ") and b.is_blank([]) and b.is_blank(["", None])
    assert not b.is_blank("x") and not b.is_blank(0) and not b.is_blank(["a"])
    assert b.length(None) == 0 and b.length("abc") == 3 and b.length([1, 2]) == 2


def test_matches_refuses_catastrophic_patterns():
    assert b.matches("CT2026", "[A-Z]{2}[0-9]+")
    assert not b.matches(None, ".*")
    with pytest.raises(ValueError):
        b.matches("aaaa", "(a+)+$")
    with pytest.raises(ValueError):
        b.matches("aa", r"(a)\1")


@pytest.mark.parametrize("value, ok", [
    ("11010519491231002X", True), ("110105194912310038", True), ("11010519491231002x", True),
    ("110105194912310021", False),  # wrong check character
    ("11010519491231002", False),  # 17 characters
    ("110105194902300020", False),  # 30 February
    ("", False), (None, False), ("1101051949123100AX", False),
])
def test_id_number_gb11643(value, ok):
    assert b.id_number_valid(value) is ok


def test_id_birth_date_and_sex():
    assert b.id_birth_date("11010519491231002X") == "1949-12-31"
    assert b.id_sex("11010519491231002X") == "F"
    assert b.id_sex("110105194912310038") == "M"
    assert b.id_birth_date("110105194912310021") is None and b.id_sex(None) is None


@pytest.mark.parametrize("value, ok", [
    ("13912345678", True), ("+86 139-1234-5678", True), ("19912345678", True),
    ("1391234567", False), ("139123456789", False), ("12012345678", False), ("14012345678", False),
    ("0571-87654321", False), ("", False), (None, False), ("１３９１２３４５６７８", True),
])
def test_mobile_numbers(value, ok):
    assert b.mobile_valid(value) is ok


def test_institution_codes():
    assert b.org_code_valid("470012348") and not b.org_code_valid("470012349")
    assert b.uscc_valid("91350100M000100Y43") and not b.uscc_valid("91350100M000100Y44")
    assert b.institution_code_valid("470012348") and not b.institution_code_valid("HOSP")


def test_index_string_five_parts():
    parts = ["A" * 26, "202603051000", "110000000", "DEV0000000001", "9" * 18]
    assert b.index_string_valid("|".join(parts))
    assert b.index_string_valid("".join(parts))  # fixed-width, no separator
    assert b.index_part("^".join(parts), 3) == "DEV0000000001"
    assert b.index_datetime("|".join(parts)) == "2026-03-05T10:00:00+08:00"
    bad = list(parts)
    bad[2] = "11000000"
    assert not b.index_string_valid("|".join(bad))
    bad = list(parts)
    bad[1] = "202602301000"  # 30 February
    assert not b.index_string_valid("|".join(bad))
    assert not b.index_string_valid(None) and b.index_string_parts("a|b") is None


def test_times_and_age():
    assert b.minutes_between("2026-03-05T10:00:00+08:00", "2026-03-05T12:30:00+08:00") == 150
    # naive = China Standard Time, Z = UTC
    assert b.minutes_between("2026-03-05 10:00:00", "2026-03-05T02:00:00Z") == 0
    assert b.minutes_between(None, "2026-03-05 10:00:00") is None
    assert b.minutes_between("2026-13-45 25:61", "2026-03-05 10:00:00") is None
    assert b.age_years("1980-05-06", "2026-05-05T10:00:00+08:00") == 45
    assert b.age_years("1980-05-06", "2026-05-06T10:00:00+08:00") == 46
    assert b.is_time("2026-03-05T10:00") and not b.is_time("2026-03-05")
    assert b.is_date("20260305") and not b.is_date("2026-02-30")
    assert b.parse_age("045Y") == 45 and b.parse_age("006M") == 0.5


def test_normalise_sex_and_modality():
    assert [b.normalise_sex(x) for x in ("男", "female", "F", " m ", "未知", "X", None)] == ["M", "F", "F", "M", "O", None, None]
    assert b.modality_group("DR") == b.modality_group("CR") == "DX"
    assert b.modality_group("ct") == "CT" and b.modality_group(None) is None


# -- report text ----------------------------------------------------------------------------
REPORT = ("检查所见：\n双肺纹理清晰，右肺上叶见一实性结节，大小约8mm。\n纵隔内未见明显肿大淋巴结。\n"
          "诊断意见：\n1.右肺上叶结节，建议定期复查。\n2.纵隔未见异常。")


def test_sections_have_exact_spans():
    secs = r.sections(REPORT)
    assert set(secs) == {"findings", "impression"}
    for sec in secs.values():
        for start, end in sec["spans"]:
            assert REPORT[start:end].strip() in sec["text"]
    assert secs["findings"]["text"].startswith("双肺纹理清晰")
    assert secs["impression"]["text"].startswith("1.右肺上叶结节")
    assert secs["impression"]["headers"] == ["诊断意见"]
    # variants: CT表现 / 印象 with an ASCII colon; a word inside a sentence is not a header
    other = r.sections("CT表现:脑实质未见异常。\n印象:\n颅脑CT平扫未见明显异常，诊断明确。")
    assert other["findings"]["text"] == "脑实质未见异常。" and other["impression"]["text"].startswith("颅脑CT")
    assert r.sections(None) == {} and r.section_text(REPORT, "advice") is None
    bracketed = r.sections("【影像所见】双肺纹理清晰。\n【诊断意见】未见异常。")
    assert bracketed["findings"]["text"] == "双肺纹理清晰。" and bracketed["impression"]["text"] == "未见异常。"
    assert r.body("诊断意见：胸部CT平扫未见明显异常。") == "胸部CT平扫未见明显异常。"
    assert r.body("诊断意见：") == ""


def test_sentences_partition_text():
    sents = r.sentences("双肺纹理清晰。纵隔未见异常；心影不大\n肋膈角锐利。")
    assert [s["text"] for s in sents] == ["双肺纹理清晰。", "纵隔未见异常；", "心影不大\n", "肋膈角锐利。"]
    for s in sents:
        assert "双肺纹理清晰。纵隔未见异常；心影不大\n肋膈角锐利。"[s["start"]:s["end"]] == s["text"]


def test_negation_scope():
    assert r.is_negated("纵隔内未见明显肿大淋巴结。", "淋巴结") is True
    assert r.is_negated("附件区未见明显异常。", "附件") is False  # anatomy before the cue
    assert r.is_negated("右肺上叶见结节，不除外肿瘤。", "肿瘤") is False  # 不除外 is uncertainty
    assert r.is_negated("除外肺栓塞。", "肺栓塞") is True
    assert r.is_negated("双肺未见异常。", "肝") is None


def test_laterality_attached_to_anatomy():
    assert r.lateralities("左肺上叶见结节，双侧胸膜未见增厚。") == ["B", "L"]
    assert r.part_sides("甲状腺右叶见一结节。") == {"颈部软组织": ["R"]}
    assert r.part_sides("L4/5椎间盘突出（左后型）。") == {"腰椎": ["L"]}  # generic 椎间盘 narrowed by L4/5
    assert r.lateralities("心影向左下增大，左心室增大。") == []  # direction and chamber, not sides
    assert r.lateralities("未见左侧胸腔积液。") == []  # negated side
    assert r.side_conflicts("左侧胸腔见弧形液体密度影。", "右侧胸腔少量积液。")[0]["part"] == "胸部"
    assert r.side_conflicts("左侧胸腔积液。", "左侧胸腔少量积液。") == []
    assert r.side_conflicts("双肺纹理增多。", "右肺炎症。") == []  # no L/R in the reference


def test_items_parts_sides_and_modalities():
    assert r.item_body_parts(["计算机体层成像（CT）增强(胸部+上腹)"]) == ["上腹部", "胸部"]
    assert r.item_body_parts(["Tri Phase Liver"]) == ["上腹部"]
    assert r.item_body_parts(["腹部CT平扫(上腹)"]) == ["上腹部"]  # specific part beats the umbrella
    assert r.item_body_parts(["全腹部CT平扫"]) == ["上腹部", "下腹部", "盆腔"]
    assert r.item_body_parts(["腰椎间盘CT平扫（含三个椎间盘）"]) == ["腰椎"]
    assert r.item_sides(["左膝关节MR平扫"]) == {"膝关节": ["L"]}
    assert r.item_sides(["膝关节正侧位(右)"]) == {"膝关节": ["R"]}
    assert r.item_modalities(["胸部正位拍片（胸部）"]) == ["DX"]
    assert r.item_modalities(["ＣＴ胸部平扫"]) == ["CT"]  # full-width
    assert r.item_side_conflicts(["左膝关节MR平扫"], "右膝关节内侧半月板后角撕裂。")[0]["ordered"] == ["L"]
    assert r.item_side_conflicts(["左膝关节MR平扫"], "左膝关节内侧半月板后角撕裂。") == []
    assert r.lateral_item_parts(["膝关节MR平扫"]) == ["膝关节"]


def test_report_parts_and_mismatch():
    assert r.body_parts("肝脏大小形态正常。双肾未见异常。") == ["上腹部", "下腹部"]
    assert r.parts_outside("脑实质未见异常。肝脏大小形态正常。", ["颅脑"]) == ["上腹部"]
    assert r.parts_outside("各椎体骨质未见异常。", ["腰椎"]) == []  # 椎体 belongs to every spine segment
    assert r.parts_outside("长T1长T2信号。", ["颅脑"]) == []  # T1 is not a vertebra here
    assert r.parts_missing("脑实质未见异常。", ["颅脑", "胸部"]) == ["胸部"]
    assert r.parts_outside("双肺纹理清晰。扫描所及肝脏未见异常。", ["胸部"]) == []  # incidental
    assert r.parts_outside("双肺纹理清晰。建议腰椎MR检查。", ["胸部"]) == []
    assert r.dicom_parts(["CHEST"]) == ["心脏", "胸部"]


def test_sex_terms_ignore_negated_mentions():
    assert r.sex_terms("前列腺体积增大。") == "M"
    assert r.sex_terms("子宫大小形态正常。") == "F"
    assert r.sex_terms("未见子宫。") is None
    assert r.sex_terms("前列腺增大，子宫未见。") == "M"
    assert r.sexes_mentioned("前列腺正常。子宫正常。") == ["F", "M"]
    conflicts = r.sex_conflict_terms("膀胱充盈良好。双侧附件区未见明显异常密度影。", "男")
    assert [c["term"] for c in conflicts] == ["附件区"]
    assert r.sex_conflict_terms("子宫正常。", None) == []


def test_critical_values_positive_only():
    assert r.critical_values("左侧基底节区脑出血，破入脑室。") == ["颅内出血"]
    assert r.critical_values("未见脑出血。") == []
    assert r.critical_values("考虑主动脉夹层（DeBakey III型）。") == ["主动脉夹层"]
    assert r.critical_values("膈下见游离气体影。") == ["消化道穿孔"]
    assert r.critical_values("右侧气胸，肺组织压缩约40%。") == ["张力性气胸/大量气胸"]
    assert r.critical_values("右侧少量气胸，肺组织压缩约10%。") == []


def test_standardisation_helpers():
    assert r.numbering_consistent("1.右肺结节。\n2.脑萎缩。") and r.numbering_consistent("①右肺结节。②脑萎缩。")
    assert not r.numbering_consistent("1.右肺结节。\n3.脑萎缩。")
    assert not r.numbering_consistent("1.右肺结节。（2）脑萎缩。")
    assert r.numbering_consistent("结节大小约1.5cm。")  # a decimal is not an item number
    assert r.missing_units("大小约12，边界清。")[0]["text"] == "大小约12"
    assert r.missing_units("大小约12mm，CT值约35HU，大小约1.5cm。") == []
    assert r.report_modalities("颅脑MR平扫未见明显异常。") == ["MR"]
    assert r.report_modalities("股骨头坏死可能，建议MR检查。") == []
    assert r.comparison_without_prior("结节较前增大。") and not r.comparison_without_prior("对比2025-07-23胸部CT：结节较前增大。")
    assert r.placeholders("右肺XXX叶。") == ["XXX"]


# -- header helpers ---------------------------------------------------------------------------
def _series(**kw):
    base = {"modality": "CT", "description": "Axial", "n_instances": 100, "slice_thickness": 1.25,
            "pixel_spacing": [0.7, 0.7], "kernel": "LUNG", "window_centers": [-600], "window_widths": [1500],
            "image_type": ["ORIGINAL", "PRIMARY", "AXIAL"]}
    base.update(kw)
    return base


def test_header_helpers():
    loc = _series(description="Topogram", image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"], slice_thickness=None)
    series = [loc, _series(), _series(slice_thickness=5.0, kernel="B30f", window_centers=[40], window_widths=[350])]
    assert len(d.diagnostic_series(series)) == 2
    assert not d.is_diagnostic(_series(image_type=["DERIVED\\SECONDARY\\VOLUME\\VR"]))  # one backslash-joined value
    assert d.count_missing(series, "slice_thickness") == 0  # the localizer does not count
    assert d.min_thickness(series) == 1.25 and d.max_thickness(series) == 5.0
    assert d.kernel_classes(series) == ["lung", "soft"]
    assert d.kernel_class("FC52") == "lung" and d.kernel_class("H31s") == "head" and d.kernel_class(None) is None
    assert d.has_window(series, "lung") and d.has_window(series, "mediastinum") and not d.has_window(series, "bone")
    assert d.pixel_spacing_ok(series, 0.1, 2.0) and not d.pixel_spacing_ok([_series(pixel_spacing=[3, 3])], 0.1, 2.0)
    assert d.has_series([_series(modality="MR", description="ax DWI b1000")], "DWI|TRACEW")
    assert not d.series_uids_unique([{"series_instance_uid": "1.2"}, {"series_instance_uid": "1.2"}])
    assert d.uid_valid("1.2.840.10008.1") and not d.uid_valid("1.02.3")
    assert d.min_thickness(None) is None and d.has_window(None, "lung") is False


def test_analysis_is_fast_enough_to_cache():
    # the same text analysed twice returns the cached object (rules ask many questions of one text)
    assert r.analyse(REPORT) is r.analyse(REPORT)
