"""Writes qc_rules/library/{index,image,report}.yaml and qc_rules/standards/*.yaml from the
compact tables below.

The YAML files are the source of truth (they are what the engine loads, what people edit
and what `radqc rules export` round-trips); this script exists because many rules are
parameterised families (one per mandatory field, one per time pair, one per window preset)
and writing 150 rules by hand invites copy errors. Re-run it after changing a table:

    .venv/bin/python qc_rules/library/build_library.py

Every rule carries pass and fail examples; the engine refuses a rule whose own examples do
not behave. ``tags: [violation:<kind>]`` names the synthetic generator's seeded violation a
rule detects (datasets/synthetic/clinical/data/violations.yaml), for `radqc eval rules`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
STANDARDS = HERE.parent / "standards"

T0 = "2026-03-05T10:00:00+08:00"
T_MINUS_20 = "2026-03-05T09:40:00+08:00"
T_PLUS_10 = "2026-03-05T10:10:00+08:00"
T_PLUS_40 = "2026-03-05T10:40:00+08:00"
T_PLUS_60 = "2026-03-05T11:00:00+08:00"
T_PLUS_90 = "2026-03-05T11:30:00+08:00"
T_PLUS_180 = "2026-03-05T13:00:00+08:00"
T_PLUS_300 = "2026-03-05T15:00:00+08:00"
VALID_ID = "11010519491231002X"  # GB 11643 sample number (female, 1949-12-31)
VALID_ID_M = "110105194912310038"
ALL: list[str] = []
XRAY = ["DX", "CR", "DR"]
CT_MR = ["CT", "MR"]


def rule(rid: str, zh: str, en: str, dimension: str, expr: str, msg_zh: str, msg_en: str, *,
         fields: list[str], passes: list[dict[str, Any]], fails: list[dict[str, Any]],
         severity: str = "major", points: float = 5, modalities: list[str] | None = None,
         when: str | None = None, params: dict[str, Any] | None = None, tags: list[str] | None = None,
         description: str | None = None, evidence: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rid,
        "name": {"zh": zh, "en": en},
        "dimension": dimension,
        "applies_to": {"modalities": list(modalities or ALL), "items": []},
        "severity": severity,
        "points": points,
        "fields": fields,
    }
    if description:
        out["description"] = description
    if when:
        out["when"] = when
    out["expr"] = expr
    out["message"] = {"zh": msg_zh, "en": msg_en}
    if evidence:
        out["evidence"] = evidence
    if params:
        out["params"] = params
    if tags:
        out["tags"] = tags
    out["examples"] = {"pass": passes, "fail": fails}
    return out


# =========================================================================================
# index library (影像检查数据)
# =========================================================================================
MANDATORY = [
    # field, zh, en, good example value, severity, points, tag
    ("accession_number", "检查号", "accession number", "CT20260305001", "critical", 10, None),
    ("hospital_code", "机构代码", "institution code", "470012348", "critical", 10, None),
    ("patient_id", "患者ID", "patient ID", "P00012345", "major", 5, None),
    ("patient_name", "患者姓名", "patient name", "王小明", "major", 5, None),
    ("patient_sex", "性别", "sex", "M", "major", 3, None),
    ("patient_birth_date", "出生日期", "birth date", "1980-05-06", "major", 3, None),
    ("id_number", "身份证号", "ID number", VALID_ID, "major", 5, "violation:id_empty"),
    ("phone", "联系电话", "phone number", "13912345678", "major", 3, "violation:phone_empty"),
    ("modality", "设备类型", "modality", "CT", "major", 5, None),
    ("exam_items", "检查项目", "exam items", ["胸部CT平扫"], "critical", 10, None),
    ("urgency", "检查类别（急诊/平诊）", "urgency", "routine", "minor", 2, None),
    ("order_time", "申请时间", "order time", T_MINUS_20, "major", 3, None),
    ("exam_time", "检查时间", "exam time", T0, "critical", 5, None),
    ("report_time", "报告时间", "report time", T_PLUS_60, "major", 5, None),
    ("review_time", "审核时间", "review time", T_PLUS_90, "major", 5, None),
    ("upload_time", "上传时间", "upload time", T_PLUS_10, "major", 3, None),
    ("technician", "检查技师", "technician", "李娜", "minor", 2, None),
    ("report_doctor", "报告医师", "report doctor", "赵强", "major", 5, None),
    ("review_doctor", "审核医师", "reviewing doctor", "钱文", "major", 5, None),
    ("findings", "检查所见", "findings", "双肺纹理清晰。", "critical", 10, None),
    ("impression", "诊断意见", "impression", "胸部CT平扫未见明显异常。", "critical", 10, None),
]


def blank_of(value: Any) -> Any:
    return [] if isinstance(value, list) else ""


def index_rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n, (field, zh, en, good, sev, pts, tag) in enumerate(MANDATORY, 1):
        report_field = field in ("findings", "impression")
        out.append(rule(
            f"IDX-COMP-{n:03d}", f"{zh}必填", f"{en[0].upper() + en[1:]} present", "completeness",
            f"not is_blank({field})", f"{zh}缺失", f"{en} missing", fields=[field],
            severity=sev, points=pts, tags=[tag] if tag else None,
            passes=[{field: good}], fails=[{field: blank_of(good)}, {field: None}],
            description=("A report field: the report library checks its content." if report_field else None)))
    n = len(MANDATORY)

    def nxt() -> str:
        nonlocal n
        n += 1
        return f"IDX-COMP-{n:03d}"

    out += [
        rule(nxt(), "身份证号合法（GB 11643）", "ID number valid (GB 11643)", "completeness",
             "id_number_valid(id_number)", "身份证号 {id_number} 不合法（长度、出生日期或校验位错误）",
             "ID number {id_number} is invalid (length, birth date or check character)",
             fields=["id_number"], when="not is_blank(id_number)", points=5, tags=["violation:id_invalid"],
             passes=[{"id_number": VALID_ID}, {"id_number": VALID_ID_M}],
             fails=[{"id_number": "110105194912310021"}, {"id_number": "11010519491231002"},
                    {"id_number": "110105194902300020"}]),
        rule(nxt(), "联系电话为合法手机号", "Phone is a valid mobile number", "completeness",
             "mobile_valid(phone)", "联系电话 {phone} 不是合法的11位手机号", "phone {phone} is not a valid 11-digit mobile number",
             fields=["phone"], when="not is_blank(phone)", points=3, tags=["violation:phone_invalid"],
             passes=[{"phone": "13912345678"}, {"phone": "+86 139 1234 5678"}],
             fails=[{"phone": "1391234567"}, {"phone": "0571-87654321"}, {"phone": "12012345678"}]),
        rule(nxt(), "影像云索引串存在", "Imaging-cloud index string present", "completeness",
             "not is_blank(index_string)", "缺少影像云索引串", "imaging-cloud index string missing",
             fields=["index_string"], severity="minor", points=2,
             passes=[{"index_string": "A" * 26 + "|202603051000|110000000|DEV0000000001|" + "91330100MA27XXXX0B"}],
             fails=[{"index_string": None}, {"index_string": " "}],
             description="Tenders require the five-part index string on every uploaded exam."),
        rule(nxt(), "影像云索引串结构（26-12-9-13-18）", "Index string has five parts 26-12-9-13-18", "completeness",
             "index_string_valid(index_string)", "索引串 {index_string} 不符合五段 26-12-9-13-18 结构",
             "index string {index_string} is not five parts of 26-12-9-13-18 characters",
             fields=["index_string"], when="not is_blank(index_string)", points=3,
             passes=[{"index_string": "A" * 26 + "|202603051000|110000000|DEV0000000001|" + "9" * 18},
                     {"index_string": "A" * 26 + "202603051000" + "110000000" + "DEV0000000001" + "9" * 18}],
             fails=[{"index_string": "A" * 25 + "|202603051000|110000000|DEV0000000001|" + "9" * 18},
                    {"index_string": "A|B|C"}, {"index_string": "A" * 26 + "|202613051000|110000000|DEV0000000001|" + "9" * 18}]),
    ]
    lengths = [("参保人编码", "insured-person code", 0, 26), ("检查时间", "exam date-time", 1, 12),
               ("部位编码（WS/T 364.8）", "body-part code (WS/T 364.8)", 2, 9), ("设备编码", "device code", 3, 13),
               ("存储机构信用代码", "storage unit's credit code", 4, 18)]
    good = "A" * 26 + "|202603051000|110000000|DEV0000000001|" + "9" * 18
    for zh, en, k, ln in lengths:
        bad_parts = ["A" * 26, "202603051000", "110000000", "DEV0000000001", "9" * 18]
        bad_parts[k] = bad_parts[k][:-1]
        out.append(rule(nxt(), f"索引串第{k + 1}段{zh}长度为{ln}", f"Index part {k + 1} ({en}) has {ln} characters",
                        "completeness", f"length(index_part(index_string, {k})) == expected_length",
                        f"索引串第{k + 1}段{zh}长度应为 {{expected_length}}", f"index part {k + 1} ({en}) must have {{expected_length}} characters",
                        fields=["index_string"], params={"expected_length": ln},
                        when="length(index_string_parts(index_string)) == 5", severity="minor", points=1,
                        passes=[{"index_string": good}], fails=[{"index_string": "|".join(bad_parts)}]))
    out += [
        rule(nxt(), "索引串检查时间与检查时间一致", "Index string date-time matches the exam time", "consistency",
             "abs(minutes_between(index_datetime(index_string), exam_time)) < tolerance_minutes",
             "索引串时间与检查时间 {exam_time} 不一致", "index string time differs from the exam time {exam_time}",
             fields=["index_string", "exam_time"], params={"tolerance_minutes": 1},
             when="index_datetime(index_string) != None and not is_blank(exam_time)", points=2,
             passes=[{"index_string": good, "exam_time": T0}],
             fails=[{"index_string": good, "exam_time": T_PLUS_60}]),
        rule(nxt(), "索引串信用代码校验", "Index string credit code check character", "completeness",
             "uscc_valid(index_part(index_string, 4))", "索引串第5段统一社会信用代码校验位错误",
             "index part 5 is not a valid unified social credit code",
             fields=["index_string"], when="length(index_part(index_string, 4)) == 18", severity="minor", points=1,
             passes=[{"index_string": "A" * 26 + "|202603051000|110000000|DEV0000000001|91350100M000100Y43"}],
             fails=[{"index_string": "A" * 26 + "|202603051000|110000000|DEV0000000001|91350100M000100Y44"}]),
    ]

    # -- standardisation: formats --------------------------------------------------------------
    s = 0

    def sid() -> str:
        nonlocal s
        s += 1
        return f"IDX-STD-{s:03d}"

    out += [
        rule(sid(), "机构代码格式", "Institution code format", "standardisation",
             "institution_code_valid(hospital_code)", "机构代码 {hospital_code} 不是合法的统一社会信用代码或组织机构代码",
             "institution code {hospital_code} is neither a valid credit code nor an organisation code",
             fields=["hospital_code"], when="not is_blank(hospital_code)", points=3,
             passes=[{"hospital_code": "470012348"}, {"hospital_code": "91350100M000100Y43"}],
             fails=[{"hospital_code": "470012349"}, {"hospital_code": "HOSP-1"}]),
        rule(sid(), "检查号字符规范", "Accession number characters", "standardisation",
             "matches(accession_number, '[-0-9A-Za-z._]{1,64}')", "检查号 {accession_number} 含非法字符或过长",
             "accession number {accession_number} has invalid characters or is too long",
             fields=["accession_number"], when="not is_blank(accession_number)", severity="minor", points=2,
             passes=[{"accession_number": "CT20260305001"}], fails=[{"accession_number": "CT 2026（1）"}]),
        rule(sid(), "性别编码规范", "Sex code is M/F/O", "standardisation",
             "sex_code_valid(patient_sex)", "性别 {patient_sex} 不是标准编码 M/F/O", "sex {patient_sex} is not the code M/F/O",
             fields=["patient_sex"], when="not is_blank(patient_sex)", severity="minor", points=1,
             passes=[{"patient_sex": "F"}], fails=[{"patient_sex": "女"}, {"patient_sex": "X"}]),
        rule(sid(), "出生日期格式", "Birth date is a real date", "standardisation",
             "is_date(patient_birth_date)", "出生日期 {patient_birth_date} 不是合法日期", "birth date {patient_birth_date} is not a real date",
             fields=["patient_birth_date"], when="not is_blank(patient_birth_date)", points=2,
             passes=[{"patient_birth_date": "1980-05-06"}, {"patient_birth_date": "19800506"}],
             fails=[{"patient_birth_date": "1980-02-30"}, {"patient_birth_date": "80/5/6"}]),
        rule(sid(), "设备类型编码", "Modality code known", "standardisation",
             "modality_code_valid(modality)", "设备类型 {modality} 不是标准编码", "modality {modality} is not a standard code",
             fields=["modality"], when="not is_blank(modality)", points=2,
             passes=[{"modality": "CT"}, {"modality": "DR"}], fails=[{"modality": "CAT"}, {"modality": "核磁"}]),
        rule(sid(), "检查类别编码", "Urgency is emergency/routine", "standardisation",
             "urgency in ['emergency', 'routine']", "检查类别 {urgency} 应为 emergency/routine",
             "urgency {urgency} must be emergency or routine",
             fields=["urgency"], when="not is_blank(urgency)", severity="minor", points=1,
             passes=[{"urgency": "routine"}], fails=[{"urgency": "急"}]),
    ]
    for field, zh in (("order_time", "申请时间"), ("exam_time", "检查时间"), ("report_time", "报告时间"),
                      ("review_time", "审核时间"), ("upload_time", "上传时间")):
        out.append(rule(sid(), f"{zh}为合法时间", f"{field} is a date-time", "standardisation",
                        f"is_time({field})", f"{zh} {{{field}}} 不是合法的日期时间", f"{field} {{{field}}} is not a valid date-time",
                        fields=[field], when=f"not is_blank({field})", points=2,
                        passes=[{field: T0}, {field: "2026-03-05 10:00:00"}],
                        fails=[{field: "2026-13-45 25:61"}, {field: "2026-03-05"}]))
    for field, zh in (("patient_name", "患者姓名"), ("technician", "检查技师"), ("report_doctor", "报告医师"),
                      ("review_doctor", "审核医师")):
        out.append(rule(sid(), f"{zh}不含数字和占位符", f"{field} has no digits or placeholders", "standardisation",
                        "not matches(" + field + ", '.*([0-9]|[?]|未知|不详|test|TEST).*')",
                        f"{zh} {{{field}}} 含数字或占位符", f"{field} {{{field}}} contains digits or a placeholder",
                        fields=[field], when=f"not is_blank({field})", severity="minor", points=1,
                        passes=[{field: "王小明"}, {field: "WANG^XIAOMING"}], fails=[{field: "未知"}, {field: "医生1"}]))
    out += [
        rule(sid(), "检查项目可识别部位", "Exam items name a known body part", "standardisation",
             "length(item_body_parts(exam_items)) > 0", "检查项目 {exam_items} 无法识别检查部位，请使用标准项目名称",
             "exam items {exam_items} name no recognisable body part; use standard item names",
             fields=["exam_items"], when="not is_blank(exam_items)", severity="minor", points=2,
             passes=[{"exam_items": ["胸部CT平扫"]}, {"exam_items": ["Tri Phase Liver"]}],
             fails=[{"exam_items": ["CT平扫"]}]),
        rule(sid(), "检查项目可识别设备类型", "Exam items name a modality", "standardisation",
             "length(item_modalities(exam_items)) > 0", "检查项目 {exam_items} 未写明检查方式（CT/MR/DR…）",
             "exam items {exam_items} name no modality (CT/MR/DR...)",
             fields=["exam_items"], when="not is_blank(exam_items)", severity="info", points=0,
             passes=[{"exam_items": ["胸部CT平扫"]}], fails=[{"exam_items": ["胸部平扫"]}]),
        rule(sid(), "检查项目无噪声字符", "Exam item names without noise", "standardisation",
             "not any(matches(i, '.*([*]|云胶片|【|】|[?]).*') for i in exam_items)",
             "检查项目 {exam_items} 含非标准字符（*、云胶片、【】）", "exam items {exam_items} contain noise (*, 云胶片, 【】)",
             fields=["exam_items"], severity="info", points=0,
             passes=[{"exam_items": ["胸部CT平扫"]}], fails=[{"exam_items": ["*胸部CT平扫（云胶片）"]}]),
        rule(sid(), "编码字段无全角字符", "Codes without full-width characters", "standardisation",
             "not has_fullwidth(accession_number) and not has_fullwidth(id_number) and not has_fullwidth(phone)",
             "检查号/身份证号/电话含全角字符", "accession, ID number or phone contains full-width characters",
             fields=["accession_number", "id_number", "phone"], severity="minor", points=1,
             passes=[{"accession_number": "CT1", "phone": "13912345678"}],
             fails=[{"phone": "１３９１２３４５６７８"}]),
        rule(sid(), "标准检查项目编码存在", "Standard exam item code present", "standardisation",
             "not is_blank(exam_item_codes)", "检查项目 {exam_items} 未映射到标准项目编码", "exam items {exam_items} carry no standard item code",
             fields=["exam_item_codes", "exam_items"], when="not is_blank(exam_items)", severity="info", points=0,
             description="Filled by item normalisation (a later stage) or sent by the hospital.",
             passes=[{"exam_items": ["胸部CT平扫"], "exam_item_codes": ["CT.CHEST.PLAIN"]}],
             fails=[{"exam_items": ["胸部CT平扫"], "exam_item_codes": []}]),
    ]

    # -- timeliness ----------------------------------------------------------------------------------
    t = 0

    def tid() -> str:
        nonlocal t
        t += 1
        return f"IDX-TIME-{t:03d}"

    limits = {"max_minutes_emergency": 120, "max_minutes_routine": 120}
    out += [
        rule(tid(), "检查至报告时限", "Exam to report within the limit", "timeliness",
             "minutes_between(exam_time, report_time) <= (max_minutes_emergency if urgency == 'emergency' else max_minutes_routine)",
             "检查 {exam_time} 至报告 {report_time} 超过时限（急诊 {max_minutes_emergency} 分钟，平诊 {max_minutes_routine} 分钟）",
             "exam {exam_time} to report {report_time} exceeds the limit (emergency {max_minutes_emergency} min, routine {max_minutes_routine} min)",
             fields=["exam_time", "report_time", "urgency"], params=dict(limits), tags=["violation:report_late"],
             when="minutes_between(exam_time, report_time) != None and minutes_between(exam_time, report_time) >= 0",
             passes=[{"exam_time": T0, "report_time": T_PLUS_60}, {"exam_time": T0, "report_time": T_PLUS_90, "urgency": "emergency"}],
             fails=[{"exam_time": T0, "report_time": T_PLUS_180}, {"exam_time": T0, "report_time": T_PLUS_300, "urgency": "emergency"}]),
        rule(tid(), "检查至审核时限", "Exam to review within the limit", "timeliness",
             "minutes_between(exam_time, review_time) <= (max_minutes_emergency if urgency == 'emergency' else max_minutes_routine)",
             "检查 {exam_time} 至审核 {review_time} 超过时限（急诊 {max_minutes_emergency} 分钟，平诊 {max_minutes_routine} 分钟）",
             "exam {exam_time} to review {review_time} exceeds the limit (emergency {max_minutes_emergency} min, routine {max_minutes_routine} min)",
             fields=["exam_time", "review_time", "urgency"], params=dict(limits), tags=["violation:review_late"],
             when=("minutes_between(exam_time, review_time) != None and minutes_between(exam_time, review_time) >= 0 "
                   "and not (minutes_between(exam_time, report_time) > (max_minutes_emergency if urgency == 'emergency' else max_minutes_routine))"),
             description="Not charged again when the report itself was late (the exam-to-report rule already deducts).",
             passes=[{"exam_time": T0, "review_time": T_PLUS_90},
                     {"exam_time": T0, "report_time": T_PLUS_180, "review_time": T_PLUS_300}],
             fails=[{"exam_time": T0, "report_time": T_PLUS_60, "review_time": T_PLUS_180},
                    {"exam_time": T0, "review_time": T_PLUS_300, "urgency": "emergency"}]),
        rule(tid(), "影像上传时限", "Upload within the limit", "timeliness",
             "(minutes_between(exam_end_time, upload_time) if not is_blank(exam_end_time) else "
             "minutes_between(exam_time, upload_time) - lookup(modality_group(modality), acquisition_modalities, acquisition_minutes, default_acquisition_minutes)) "
             "<= (max_upload_minutes_emergency if urgency == 'emergency' else max_upload_minutes_routine)",
             "检查结束/检查 {exam_time} 后上传 {upload_time} 超时（急诊 {max_upload_minutes_emergency} 分钟，平诊 {max_upload_minutes_routine} 分钟）",
             "upload {upload_time} too late after the end of the exam {exam_time} (emergency {max_upload_minutes_emergency} min, routine {max_upload_minutes_routine} min)",
             fields=["exam_end_time", "exam_time", "upload_time", "urgency", "modality"],
             params={"max_upload_minutes_emergency": 1, "max_upload_minutes_routine": 5,
                     "acquisition_modalities": ["DX", "CT", "MR"], "acquisition_minutes": [6, 15, 40],
                     "default_acquisition_minutes": 15},
             when="minutes_between(exam_time, upload_time) != None", tags=["violation:upload_late"],
             description=("Upload latency to the provincial cloud (emergency <= 1 min, routine <= 5 min) runs from "
                          "the end of the acquisition: exact when the record sends exam_end_time (检查结束时间); "
                          "otherwise from the exam (start) time with the modality's longest acquisition "
                          "(acquisition_minutes) allowed on top, where a late upload of a short scan can hide."),
             passes=[{"exam_time": T0, "upload_time": "2026-03-05T10:04:00+08:00", "modality": "DX"},
                     {"exam_time": T0, "upload_time": "2026-03-05T10:16:00+08:00", "modality": "CT", "urgency": "emergency"},
                     {"exam_time": T0, "exam_end_time": "2026-03-05T10:03:00+08:00",
                      "upload_time": "2026-03-05T10:07:30+08:00", "modality": "CT"}],
             fails=[{"exam_time": T0, "upload_time": "2026-03-05T10:12:00+08:00", "modality": "DX"},
                    {"exam_time": T0, "upload_time": T_PLUS_60, "modality": "MR"},
                    {"exam_time": T0, "upload_time": "2026-03-05T10:17:00+08:00", "modality": "CT", "urgency": "emergency"},
                    {"exam_time": T0, "exam_end_time": "2026-03-05T10:03:00+08:00",
                     "upload_time": "2026-03-05T10:09:00+08:00", "modality": "CT"}]),
        rule(tid(), "申请至检查等待时间", "Order to exam waiting time", "timeliness",
             "minutes_between(order_time, exam_time) <= (max_wait_minutes_emergency if urgency == 'emergency' else max_wait_days_routine * 1440)",
             "申请 {order_time} 至检查 {exam_time} 等待过长", "waited too long from order {order_time} to exam {exam_time}",
             fields=["order_time", "exam_time", "urgency"], params={"max_wait_minutes_emergency": 60, "max_wait_days_routine": 30},
             when="minutes_between(order_time, exam_time) != None and minutes_between(order_time, exam_time) >= 0",
             severity="minor", points=2,
             passes=[{"order_time": T_MINUS_20, "exam_time": T0, "urgency": "emergency"}],
             fails=[{"order_time": "2026-03-05T07:00:00+08:00", "exam_time": T0, "urgency": "emergency"},
                    {"order_time": "2026-01-01T07:00:00+08:00", "exam_time": T0}]),
        rule(tid(), "报告至审核时限", "Report to review within the limit", "timeliness",
             "minutes_between(report_time, review_time) <= max_minutes",
             "报告 {report_time} 至审核 {review_time} 超过 {max_minutes} 分钟", "report {report_time} to review {review_time} over {max_minutes} min",
             fields=["report_time", "review_time"], params={"max_minutes": 1440},
             when="minutes_between(report_time, review_time) != None and minutes_between(report_time, review_time) >= 0",
             severity="minor", points=2,
             passes=[{"report_time": T_PLUS_60, "review_time": T_PLUS_90}],
             fails=[{"report_time": T0, "review_time": "2026-03-07T10:00:00+08:00"}]),
        rule(tid(), "急诊报告时限（30分钟）", "Emergency report within 30 min", "timeliness",
             "minutes_between(exam_time, report_time) <= max_minutes",
             "急诊检查 {exam_time} 至报告 {report_time} 超过 {max_minutes} 分钟", "emergency exam {exam_time} to report {report_time} over {max_minutes} min",
             fields=["exam_time", "report_time", "urgency"], params={"max_minutes": 30},
             when="urgency == 'emergency' and minutes_between(exam_time, report_time) != None and minutes_between(exam_time, report_time) >= 0",
             severity="info", points=0,
             description="Department target for emergencies (informational; the deduction is the exam-to-report rule).",
             passes=[{"exam_time": T0, "report_time": T_PLUS_10, "urgency": "emergency"}],
             fails=[{"exam_time": T0, "report_time": T_PLUS_60, "urgency": "emergency"}]),
    ]

    # -- consistency ------------------------------------------------------------------------------
    c = 0

    def cid() -> str:
        nonlocal c
        c += 1
        return f"IDX-CONS-{c:03d}"

    out += [
        rule(cid(), "报告医师与审核医师不同", "Report and review doctor differ", "consistency",
             "strip(report_doctor) != strip(review_doctor)", "报告医师与审核医师同为 {report_doctor}",
             "report and review doctor are both {report_doctor}",
             fields=["report_doctor", "review_doctor"], when="not is_blank(report_doctor) and not is_blank(review_doctor)",
             points=10, tags=["violation:same_doctor"],
             passes=[{"report_doctor": "赵强", "review_doctor": "钱文"}],
             fails=[{"report_doctor": "赵强", "review_doctor": "赵强"}, {"report_doctor": "赵强", "review_doctor": " 赵强"}]),
        rule(cid(), "检查技师不兼任报告医师", "Technician is not the report doctor", "consistency",
             "strip(technician) != strip(report_doctor)", "检查技师与报告医师同为 {technician}", "technician and report doctor are both {technician}",
             fields=["technician", "report_doctor"], when="not is_blank(technician) and not is_blank(report_doctor)",
             severity="minor", points=2,
             passes=[{"technician": "李娜", "report_doctor": "赵强"}], fails=[{"technician": "赵强", "report_doctor": "赵强"}]),
        rule(cid(), "身份证出生日期与出生日期一致", "ID number birth date matches", "consistency",
             "id_birth_date(id_number) == to_date(patient_birth_date)",
             "身份证号中的出生日期与出生日期 {patient_birth_date} 不一致", "birth date in the ID number differs from {patient_birth_date}",
             fields=["id_number", "patient_birth_date"], when="id_number_valid(id_number) and is_date(patient_birth_date)",
             points=5, passes=[{"id_number": VALID_ID, "patient_birth_date": "1949-12-31"}],
             fails=[{"id_number": VALID_ID, "patient_birth_date": "1950-12-31"}]),
        rule(cid(), "身份证性别与性别一致", "ID number sex matches", "consistency",
             "id_sex(id_number) == normalise_sex(patient_sex)", "身份证号性别与患者性别 {patient_sex} 不一致",
             "sex in the ID number differs from the patient sex {patient_sex}",
             fields=["id_number", "patient_sex"], when="id_number_valid(id_number) and normalise_sex(patient_sex) in ['M', 'F']",
             points=5, passes=[{"id_number": VALID_ID, "patient_sex": "F"}, {"id_number": VALID_ID_M, "patient_sex": "男"}],
             fails=[{"id_number": VALID_ID, "patient_sex": "M"}]),
        rule(cid(), "性别与DICOM一致", "Sex agrees with DICOM PatientSex", "consistency",
             "normalise_sex(patient_sex) == normalise_sex(dicom_patient_sex)",
             "记录性别 {patient_sex} 与DICOM性别 {dicom_patient_sex} 不一致", "record sex {patient_sex} differs from DICOM {dicom_patient_sex}",
             fields=["patient_sex", "dicom_patient_sex"],
             when="normalise_sex(patient_sex) in ['M', 'F'] and normalise_sex(dicom_patient_sex) in ['M', 'F']",
             points=5, passes=[{"patient_sex": "F", "dicom_patient_sex": "F"}], fails=[{"patient_sex": "F", "dicom_patient_sex": "M"}]),
        rule(cid(), "检查号与DICOM一致", "Accession number agrees with DICOM", "consistency",
             "strip(accession_number) == strip(dicom_accession_number)",
             "检查号 {accession_number} 与DICOM检查号 {dicom_accession_number} 不一致",
             "accession {accession_number} differs from the DICOM accession {dicom_accession_number}",
             fields=["accession_number", "dicom_accession_number"],
             when="not is_blank(accession_number) and not is_blank(dicom_accession_number)", points=5,
             passes=[{"accession_number": "CT1", "dicom_accession_number": "CT1"}],
             fails=[{"accession_number": "CT1", "dicom_accession_number": "CT2"}]),
        rule(cid(), "出生日期与DICOM一致", "Birth date agrees with DICOM", "consistency",
             "to_date(patient_birth_date) == to_date(dicom_patient_birth_date)",
             "出生日期 {patient_birth_date} 与DICOM {dicom_patient_birth_date} 不一致",
             "birth date {patient_birth_date} differs from DICOM {dicom_patient_birth_date}",
             fields=["patient_birth_date", "dicom_patient_birth_date"],
             when="is_date(patient_birth_date) and is_date(dicom_patient_birth_date)", points=3,
             passes=[{"patient_birth_date": "1980-05-06", "dicom_patient_birth_date": "19800506"}],
             fails=[{"patient_birth_date": "1980-05-06", "dicom_patient_birth_date": "19800605"}]),
        rule(cid(), "检查时间与DICOM检查时间一致", "Exam time agrees with DICOM study time", "consistency",
             "abs(minutes_between(exam_time, dicom_study_time)) <= tolerance_minutes",
             "检查时间 {exam_time} 与DICOM检查时间 {dicom_study_time} 相差超过 {tolerance_minutes} 分钟",
             "exam time {exam_time} and DICOM study time {dicom_study_time} differ by more than {tolerance_minutes} min",
             fields=["exam_time", "dicom_study_time"], params={"tolerance_minutes": 120},
             when="minutes_between(exam_time, dicom_study_time) != None", points=3,
             passes=[{"exam_time": T0, "dicom_study_time": T_PLUS_10}],
             fails=[{"exam_time": T0, "dicom_study_time": "2026-03-06T10:00:00+08:00"}]),
        rule(cid(), "设备类型与DICOM一致", "Modality agrees with the images", "consistency",
             "any(modality_group(m) == modality_group(modality) for m in dicom_modalities)",
             "记录设备类型 {modality} 与影像设备类型 {dicom_modalities} 不一致",
             "record modality {modality} differs from the images' {dicom_modalities}",
             fields=["modality", "dicom_modalities"],
             when="modality_group(modality) != None and length(dicom_modalities) > 0", points=10,
             passes=[{"modality": "DR", "dicom_modalities": ["DX"]}, {"modality": "CT", "dicom_modalities": ["CT", "SR"]}],
             fails=[{"modality": "CT", "dicom_modalities": ["MR"]}]),
        rule(cid(), "检查项目与设备类型一致", "Exam items agree with the modality", "consistency",
             "modality_group(modality) in item_modalities(exam_items)",
             "检查项目 {exam_items} 与设备类型 {modality} 不符", "exam items {exam_items} do not match the modality {modality}",
             fields=["exam_items", "modality"],
             when="modality_group(modality) != None and length(item_modalities(exam_items)) > 0", points=10,
             passes=[{"exam_items": ["胸部CT平扫"], "modality": "CT"}, {"exam_items": ["胸部正位"], "modality": "DR"}],
             fails=[{"exam_items": ["颅脑MR平扫"], "modality": "CT"}]),
        rule(cid(), "检查项目部位与DICOM部位一致", "Ordered body part agrees with the DICOM header", "consistency",
             "intersects(item_body_parts(exam_items), dicom_parts(body_parts))",
             "检查项目 {exam_items} 与DICOM检查部位 {body_parts} 不一致",
             "ordered items {exam_items} do not match the DICOM body part {body_parts}",
             fields=["exam_items", "body_parts"],
             when="length(item_body_parts(exam_items)) > 0 and length(dicom_parts(body_parts)) > 0", severity="minor", points=3,
             description="BodyPartExamined is wrong in about 15% of exams: minor, and the image-QC body-part check decides.",
             passes=[{"exam_items": ["胸部CT平扫"], "body_parts": ["CHEST"]}],
             fails=[{"exam_items": ["胸部CT平扫"], "body_parts": ["HEAD"]}]),
        rule(cid(), "外部患者ID与DICOM一致", "Patient ID agrees with DICOM", "consistency",
             "strip(patient_id) == strip(dicom_patient_id)", "患者ID {patient_id} 与DICOM患者ID {dicom_patient_id} 不一致",
             "patient ID {patient_id} differs from the DICOM patient ID {dicom_patient_id}",
             fields=["patient_id", "dicom_patient_id"], when="not is_blank(patient_id) and not is_blank(dicom_patient_id)",
             points=5, passes=[{"patient_id": "P1", "dicom_patient_id": "P1"}],
             fails=[{"patient_id": "P1", "dicom_patient_id": "P2"}]),
        rule(cid(), "医院名称与DICOM机构名称一致", "Hospital name agrees with DICOM InstitutionName", "consistency",
             "strip(hospital_name) == strip(dicom_institution)",
             "医院名称 {hospital_name} 与DICOM机构名称 {dicom_institution} 不一致", "hospital name {hospital_name} differs from DICOM {dicom_institution}",
             fields=["hospital_name", "dicom_institution"],
             when="not is_blank(hospital_name) and not is_blank(dicom_institution) and not matches(dicom_institution, '[ -~]+')",
             severity="info", points=0,
             description="Only when the header writes the name in Chinese (pinyin or English names are not compared).",
             passes=[{"hospital_name": "云溪市第一人民医院", "dicom_institution": "云溪市第一人民医院"},
                     {"hospital_name": "云溪市第一人民医院", "dicom_institution": "YUNXI FIRST HOSPITAL"}],
             fails=[{"hospital_name": "云溪市第一人民医院", "dicom_institution": "明江县人民医院"}]),
        rule(cid(), "年龄与出生日期合理", "Age at exam plausible", "accuracy",
             "age_years(patient_birth_date, exam_time) >= 0 and age_years(patient_birth_date, exam_time) <= max_age",
             "出生日期 {patient_birth_date} 与检查时间 {exam_time} 得出的年龄不合理", "age from birth date {patient_birth_date} at {exam_time} is implausible",
             fields=["patient_birth_date", "exam_time"], params={"max_age": 120},
             when="age_years(patient_birth_date, exam_time) != None", points=5,
             passes=[{"patient_birth_date": "1980-05-06", "exam_time": T0}],
             fails=[{"patient_birth_date": "2027-05-06", "exam_time": T0}, {"patient_birth_date": "1880-05-06", "exam_time": T0}]),
    ]

    # -- accuracy ------------------------------------------------------------------------------------
    a = 0

    def aid() -> str:
        nonlocal a
        a += 1
        return f"IDX-ACC-{a:03d}"

    pairs = [("order_time", "exam_time", "申请时间", "检查时间"), ("exam_time", "report_time", "检查时间", "报告时间"),
             ("report_time", "review_time", "报告时间", "审核时间"), ("exam_time", "review_time", "检查时间", "审核时间"),
             ("exam_time", "upload_time", "检查时间", "上传时间")]
    for first, second, zh1, zh2 in pairs:
        tag = ["violation:time_order"] if second != "upload_time" else None
        out.append(rule(aid(), f"{zh1}早于{zh2}", f"{first} before {second}", "accuracy",
                        f"minutes_between({first}, {second}) >= 0",
                        f"{zh2} {{{second}}} 早于{zh1} {{{first}}}", f"{second} {{{second}}} is before {first} {{{first}}}",
                        fields=[first, second], when=f"minutes_between({first}, {second}) != None", points=5, tags=tag,
                        passes=[{first: T0, second: T_PLUS_10}], fails=[{first: T_PLUS_10, second: T0}]))
    for field, zh in (("exam_time", "检查时间"), ("report_time", "报告时间"), ("review_time", "审核时间")):
        out.append(rule(aid(), f"{zh}不晚于质控时间", f"{field} not in the future", "accuracy",
                        f"minutes_between({field}, now) >= 0 - tolerance_minutes",
                        f"{zh} {{{field}}} 晚于当前时间 {{now}}", f"{field} {{{field}}} is in the future (now {{now}})",
                        fields=[field], params={"tolerance_minutes": 5}, when=f"minutes_between({field}, now) != None", points=3,
                        passes=[{field: T0, "now": T_PLUS_60}], fails=[{field: T_PLUS_60, "now": T0}]))
    out += [
        rule(aid(), "出生日期早于检查时间", "Birth date before the exam", "accuracy",
             "to_date(patient_birth_date) <= to_date(exam_time)", "出生日期 {patient_birth_date} 晚于检查时间 {exam_time}",
             "birth date {patient_birth_date} is after the exam {exam_time}",
             fields=["patient_birth_date", "exam_time"], when="is_date(patient_birth_date) and is_time(exam_time)", points=5,
             passes=[{"patient_birth_date": "1980-05-06", "exam_time": T0}], fails=[{"patient_birth_date": "2026-05-06", "exam_time": T0}]),
        rule(aid(), "SOP实例UID唯一", "SOP Instance UIDs unique", "accuracy",
             "duplicate_sop_uids == 0", "存在 {duplicate_sop_uids} 个重复的SOP实例UID", "{duplicate_sop_uids} duplicate SOP Instance UIDs",
             fields=["duplicate_sop_uids"], when="duplicate_sop_uids != None", points=10,
             passes=[{"duplicate_sop_uids": 0}], fails=[{"duplicate_sop_uids": 3}]),
        rule(aid(), "序列数与索引一致", "Series count matches the index", "accuracy",
             "series_count == index_series_count", "索引序列数 {index_series_count} 与实际序列数 {series_count} 不一致",
             "the index claims {index_series_count} series, the images have {series_count}",
             fields=["index_series_count", "series_count"], when="index_series_count != None and series_count != None", points=5,
             passes=[{"index_series_count": 4, "series_count": 4}], fails=[{"index_series_count": 5, "series_count": 4}]),
        rule(aid(), "图像数与索引一致", "Image count matches the index", "accuracy",
             "instance_count == index_instance_count", "索引图像数 {index_instance_count} 与实际图像数 {instance_count} 不一致",
             "the index claims {index_instance_count} images, the images number {instance_count}",
             fields=["index_instance_count", "instance_count"], when="index_instance_count != None and instance_count != None", points=5,
             passes=[{"index_instance_count": 300, "instance_count": 300}], fails=[{"index_instance_count": 300, "instance_count": 280}]),
        rule(aid(), "检查实例UID合法", "Study Instance UID well-formed", "accuracy",
             "uid_valid(study_instance_uid)", "检查实例UID {study_instance_uid} 格式不合法", "Study Instance UID {study_instance_uid} is malformed",
             fields=["study_instance_uid"], when="not is_blank(study_instance_uid)", points=3,
             passes=[{"study_instance_uid": "1.2.156.112605.1.20260305"}],
             fails=[{"study_instance_uid": "1.2.03.4"}, {"study_instance_uid": "abc"}]),
        rule(aid(), "序列实例UID唯一", "Series Instance UIDs unique", "accuracy",
             "series_uids_unique(series)", "存在重复的序列实例UID", "duplicate Series Instance UIDs",
             fields=["series"], when="length(series) > 0", points=5,
             passes=[{"series": [{"series_instance_uid": "1.2.1"}, {"series_instance_uid": "1.2.2"}]}],
             fails=[{"series": [{"series_instance_uid": "1.2.1"}, {"series_instance_uid": "1.2.1"}]}]),
        rule(aid(), "有检查记录即有影像", "Exam has images", "accuracy",
             "instance_count > 0", "检查 {accession_number} 无影像（实例数 {instance_count}）", "exam {accession_number} has no images ({instance_count} instances)",
             fields=["instance_count", "accession_number"], when="instance_count != None", severity="critical", points=20,
             passes=[{"instance_count": 120}], fails=[{"instance_count": 0}]),
        rule(aid(), "检查记录不重复", "One record per exam", "accuracy",
             "record_count <= 1", "同一检查有 {record_count} 条记录", "{record_count} records for one exam",
             fields=["record_count", "accession_number"], when="record_count != None", points=5,
             passes=[{"record_count": 1}], fails=[{"record_count": 2}]),
        rule(aid(), "报告时间晚于检查时间至少1分钟", "Report not written before acquisition could finish", "accuracy",
             "minutes_between(exam_time, report_time) >= min_minutes",
             "检查 {exam_time} 后 {min_minutes} 分钟内即出报告 {report_time}，时间可疑",
             "report {report_time} within {min_minutes} min of the exam {exam_time}: implausible",
             fields=["exam_time", "report_time"], params={"min_minutes": 1},
             when="minutes_between(exam_time, report_time) != None and minutes_between(exam_time, report_time) >= 0",
             severity="minor", points=2,
             passes=[{"exam_time": T0, "report_time": T_PLUS_10}], fails=[{"exam_time": T0, "report_time": "2026-03-05T10:00:20+08:00"}]),
    ]
    return out


# =========================================================================================
# image library (原始图像, header level)
# =========================================================================================
def s_ct(**kw: Any) -> dict[str, Any]:
    base = {"series_instance_uid": "1.2.3", "modality": "CT", "description": "Axial 1.25", "n_instances": 200,
            "slice_thickness": 1.25, "pixel_spacing": [0.7, 0.7], "kernel": "LUNG", "window_centers": [-600],
            "window_widths": [1500], "image_type": ["ORIGINAL", "PRIMARY", "AXIAL"], "protocol_name": "Chest",
            "manufacturer": "GE"}
    base.update(kw)
    return base


def s_mr(desc: str, **kw: Any) -> dict[str, Any]:
    base = {"series_instance_uid": "1.2.4", "modality": "MR", "description": desc, "n_instances": 24,
            "slice_thickness": 5.0, "pixel_spacing": [0.5, 0.5], "kernel": None, "window_centers": [300],
            "window_widths": [600], "image_type": ["ORIGINAL", "PRIMARY"], "protocol_name": desc, "manufacturer": "GE"}
    base.update(kw)
    return base


def s_dx(**kw: Any) -> dict[str, Any]:
    base = {"series_instance_uid": "1.2.5", "modality": "DX", "description": "PA", "n_instances": 1,
            "slice_thickness": None, "pixel_spacing": [0.143, 0.143], "kernel": None, "window_centers": [2048],
            "window_widths": [4096], "image_type": ["ORIGINAL", "PRIMARY"], "protocol_name": "Chest PA", "manufacturer": "UIH"}
    base.update(kw)
    return base


CHEST_CT = ["胸部CT平扫"]
HEAD_CT = ["头颅CT平扫"]


def image_rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    n = 0

    def nid(dim: str) -> str:
        nonlocal n
        n += 1
        return f"IMG-{dim}-{n:03d}"

    has_images = "length(series) > 0"
    out += [
        rule(nid("COMP"), "像素间距存在", "Pixel spacing present", "completeness",
             "count_missing(series, 'pixel_spacing') == 0", "有 {value} 个序列缺少像素间距（PixelSpacing）",
             "series without PixelSpacing", fields=["series"], when=has_images, modalities=["CT", "MR"],
             points=5, passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(pixel_spacing=[])]}]),
        rule(nid("ACC"), "像素间距合理（CT）", "Pixel spacing plausible (CT)", "accuracy",
             "pixel_spacing_ok(series, lo, hi)", "CT像素间距超出 {lo}–{hi} mm", "CT pixel spacing outside {lo}–{hi} mm",
             fields=["series"], when=has_images, modalities=["CT"], params={"lo": 0.1, "hi": 2.0}, points=3,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(pixel_spacing=[5.0, 5.0])]}]),
        rule(nid("ACC"), "像素间距合理（MR）", "Pixel spacing plausible (MR)", "accuracy",
             "pixel_spacing_ok(series, lo, hi)", "MR像素间距超出 {lo}–{hi} mm", "MR pixel spacing outside {lo}–{hi} mm",
             fields=["series"], when=has_images, modalities=["MR"], params={"lo": 0.1, "hi": 3.0}, points=3,
             passes=[{"series": [s_mr("T2W")]}], fails=[{"series": [s_mr("T2W", pixel_spacing=[4.0, 4.0])]}]),
        rule(nid("ACC"), "像素间距合理（X线）", "Pixel spacing plausible (radiographs)", "accuracy",
             "pixel_spacing_ok(series, lo, hi)", "X线像素间距超出 {lo}–{hi} mm", "radiograph pixel spacing outside {lo}–{hi} mm",
             fields=["series"], when=has_images, modalities=XRAY + ["MG"], params={"lo": 0.05, "hi": 1.0}, points=3,
             passes=[{"series": [s_dx()]}], fails=[{"series": [s_dx(pixel_spacing=[2.0, 2.0])]}]),
        rule(nid("COMP"), "层厚存在", "Slice thickness present", "completeness",
             "count_missing(series, 'slice_thickness') == 0", "有序列缺少层厚（SliceThickness）", "series without SliceThickness",
             fields=["series"], when=has_images, modalities=CT_MR, points=3,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(slice_thickness=None)]}]),
        rule(nid("ACC"), "层厚合理", "Slice thickness plausible", "accuracy",
             "min_thickness(series) >= lo and max_thickness(series) <= hi", "层厚超出 {lo}–{hi} mm", "slice thickness outside {lo}–{hi} mm",
             fields=["series"], when="min_thickness(series) != None", modalities=CT_MR, params={"lo": 0.3, "hi": 10.0}, points=3,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(slice_thickness=20.0)]}]),
        rule(nid("COMP"), "CT卷积核存在", "CT kernel present", "completeness",
             "count_missing(series, 'kernel') == 0", "CT序列缺少卷积核（ConvolutionKernel）", "CT series without ConvolutionKernel",
             fields=["series"], when=has_images, modalities=["CT"], points=3,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(kernel=None)]}]),
        rule(nid("STD"), "CT卷积核可识别", "CT kernel class recognised", "standardisation",
             "all(kernel_class(s['kernel']) != None for s in diagnostic_series(series) if s['modality'] == 'CT' and not is_blank(s['kernel']))",
             "CT卷积核名称无法识别为肺/骨/软组织/脑核", "a CT kernel name is not recognised as lung/bone/soft/head",
             fields=["series"], when=has_images, modalities=["CT"], severity="info", points=0,
             passes=[{"series": [s_ct(kernel="B70f")]}], fails=[{"series": [s_ct(kernel="QQ99")]}]),
        rule(nid("COMP"), "窗宽窗位存在", "Window presets present", "completeness",
             "count_missing(series, 'window_widths') == 0 and count_missing(series, 'window_centers') == 0",
             "有序列缺少窗宽窗位", "series without WindowCenter/WindowWidth",
             fields=["series"], when=has_images, modalities=["CT", "MR", "DX", "CR", "DR"], points=3,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(window_widths=[], window_centers=[])]}]),
        rule(nid("COMP"), "序列描述存在", "Series description present", "completeness",
             "count_missing(series, 'description') == 0", "有序列缺少序列描述（SeriesDescription）", "series without SeriesDescription",
             fields=["series"], when=has_images, severity="minor", points=1,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(description="")]}]),
        rule(nid("COMP"), "设备厂商存在", "Manufacturer present", "completeness",
             "count_missing(series, 'manufacturer') == 0", "有序列缺少设备厂商（Manufacturer）", "series without Manufacturer",
             fields=["series"], when=has_images, severity="minor", points=1,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(manufacturer=None)]}]),
        rule(nid("COMP"), "检查部位标签存在", "BodyPartExamined present", "completeness",
             "length(body_parts) > 0", "DICOM检查部位（BodyPartExamined）缺失", "BodyPartExamined missing",
             fields=["body_parts"], when=has_images, severity="minor", points=1,
             passes=[{"series": [s_ct()], "body_parts": ["CHEST"]}], fails=[{"series": [s_ct()], "body_parts": []}]),
        rule(nid("ACC"), "无空序列", "No empty series", "accuracy",
             "empty_series(series) == 0", "存在没有图像的序列", "a series has no images",
             fields=["series"], when=has_images, points=5,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(n_instances=0)]}]),
        rule(nid("CONS"), "影像设备类型与检查项目一致", "Image modality agrees with the ordered item", "consistency",
             "any(modality_group(m) in item_modalities(exam_items) for m in dicom_modalities)",
             "影像设备类型 {dicom_modalities} 与检查项目 {exam_items} 不符", "image modality {dicom_modalities} does not match the items {exam_items}",
             fields=["dicom_modalities", "exam_items"],
             when="length(dicom_modalities) > 0 and length(item_modalities(exam_items)) > 0", points=10,
             passes=[{"dicom_modalities": ["CT", "SR"], "exam_items": ["胸部CT平扫"]}],
             fails=[{"dicom_modalities": ["MR"], "exam_items": ["胸部CT平扫"]}]),
        rule(nid("ACC"), "诊断图像存在", "Diagnostic images present", "accuracy",
             "length(diagnostic_series(series)) > 0", "只有定位像或剂量报告，没有诊断图像", "only localizers or dose reports, no diagnostic images",
             fields=["series"], when=has_images, severity="critical", points=20,
             passes=[{"series": [s_ct()]}], fails=[{"series": [s_ct(description="Topogram", image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])]}]),
    ]

    # thin reconstruction / slice thickness per item (qc-items.md)
    thin = [
        ("胸部", "胸部CT", "chest CT", 1.5, "CT", ["胸部CT平扫"]),
        ("颅脑", "头颅CT", "head CT", 1.5, "CT", ["头颅CT平扫"]),
        ("鼻窦", "鼻窦CT", "sinus CT", 1.5, "CT", ["鼻窦CT平扫"]),
        ("心脏", "冠脉CTA", "coronary CTA", 1.0, "CT", ["冠状动脉CTA"]),
        ("颅脑", "颅脑MR", "brain MR", 6.0, "MR", ["颅脑MR平扫"]),
        ("膝关节", "膝关节MR", "knee MR", 4.0, "MR", ["左膝关节MR平扫"]),
        ("腰椎", "腰椎MR", "lumbar MR", 4.0, "MR", ["腰椎MR平扫"]),
        ("颈椎", "颈椎MR", "cervical MR", 3.0, "MR", ["颈椎MR平扫"]),
    ]
    for part, zh, en, mm, mod, items in thin:
        series_ok = [s_ct(slice_thickness=5.0), s_ct(slice_thickness=mm)] if mod == "CT" else [s_mr("T2W", slice_thickness=mm)]
        series_bad = [s_ct(slice_thickness=5.0)] if mod == "CT" else [s_mr("T2W", slice_thickness=mm + 2)]
        what = "薄层重建" if mod == "CT" else "层厚"
        out.append(rule(nid("ACC"), f"{zh}{what} ≤ {mm} mm", f"{en}: thinnest series <= {mm} mm", "accuracy",
                        "min_thickness(series) <= max_thickness_mm",
                        f"{zh}最薄层厚超过 {{max_thickness_mm}} mm", f"{en}: no series at or below {{max_thickness_mm}} mm",
                        fields=["series", "exam_items"], params={"max_thickness_mm": mm, "part": part},
                        when="part in item_body_parts(exam_items) and min_thickness(series) != None", modalities=[mod], points=10,
                        passes=[{"exam_items": items, "series": series_ok}], fails=[{"exam_items": items, "series": series_bad}]))

    # kernels per item
    kernels = [("胸部", "胸部CT", "chest CT", "lung", "肺", CHEST_CT), ("胸部", "胸部CT", "chest CT", "soft", "软组织", CHEST_CT),
               ("颅脑", "头颅CT", "head CT", "bone", "骨", HEAD_CT), ("鼻窦", "鼻窦CT", "sinus CT", "bone", "骨", ["鼻窦CT平扫"]),
               ("颈椎", "颈椎CT", "C-spine CT", "bone", "骨", ["颈椎CT平扫"]), ("腰椎", "腰椎CT", "L-spine CT", "bone", "骨", ["腰椎CT平扫"])]
    for part, zh, en, cls, czh, items in kernels:
        good_k = {"lung": "LUNG", "soft": "STANDARD", "bone": "BONE", "head": "H31s"}[cls]
        other = "BONE" if cls != "bone" else "STANDARD"
        out.append(rule(nid("COMP"), f"{zh}有{czh}算法重建", f"{en}: {cls} kernel series present", "completeness",
                        "kernel_class_required in kernel_classes(series)",
                        f"{zh}缺少{czh}算法（{{kernel_class_required}}）重建", f"{en}: no {{kernel_class_required}}-kernel reconstruction",
                        fields=["series", "exam_items"], params={"kernel_class_required": cls, "part": part},
                        when="part in item_body_parts(exam_items) and length(kernel_classes(series)) > 0", modalities=["CT"], points=5,
                        passes=[{"exam_items": items, "series": [s_ct(kernel=good_k), s_ct(kernel=other)]}],
                        fails=[{"exam_items": items, "series": [s_ct(kernel=other)]}]))

    # window presets per item
    windows = [("胸部", "胸部CT", "chest CT", "lung", "肺窗", [-600], [1500], [40], [400], CHEST_CT),
               ("胸部", "胸部CT", "chest CT", "mediastinum", "纵隔窗", [40], [350], [-600], [1500], CHEST_CT),
               ("颅脑", "头颅CT", "head CT", "brain", "脑窗", [35], [80], [500], [2000], HEAD_CT),
               ("颅脑", "头颅CT", "head CT", "bone", "骨窗", [500], [2000], [35], [80], HEAD_CT),
               ("上腹部", "上腹部CT", "upper abdomen CT", "soft", "软组织窗", [40], [400], [-600], [1500], ["上腹部CT平扫"]),
               ("腰椎", "腰椎CT", "L-spine CT", "bone", "骨窗", [500], [2000], [40], [80], ["腰椎CT平扫"]),
               ("颈椎", "颈椎CT", "C-spine CT", "bone", "骨窗", [500], [2000], [40], [80], ["颈椎CT平扫"]),
               ("颈部软组织", "颈部CT", "neck CT", "soft", "软组织窗", [40], [400], [500], [2000], ["颈部CT平扫"])]
    for part, zh, en, preset, wzh, gc, gw, bc, bw, items in windows:
        out.append(rule(nid("COMP"), f"{zh}{wzh}预设存在", f"{en}: {preset} window preset present", "completeness",
                        "has_window(series, window_preset)", f"{zh}缺少{wzh}（{{window_preset}}）预设", f"{en}: no {{window_preset}} window preset",
                        fields=["series", "exam_items"], params={"window_preset": preset, "part": part},
                        when="part in item_body_parts(exam_items) and length(diagnostic_series(series)) > 0", modalities=["CT"], points=3,
                        passes=[{"exam_items": items, "series": [s_ct(window_centers=gc, window_widths=gw)]}],
                        fails=[{"exam_items": items, "series": [s_ct(window_centers=bc, window_widths=bw)]}]))

    # instance counts per item
    out += [
        rule(nid("COMP"), "腹盆腔CT层数充足", "Abdomen-pelvis CT has at least 40 slices", "completeness",
             "max_instances(series) >= min_slices", "腹盆腔CT最多只有 {value} 层，少于 {min_slices} 层", "abdomen-pelvis CT has fewer than {min_slices} slices",
             fields=["series", "exam_items"], params={"min_slices": 40},
             when="'盆腔' in item_body_parts(exam_items) and '上腹部' in item_body_parts(exam_items) and length(diagnostic_series(series)) > 0",
             modalities=["CT"], points=5,
             passes=[{"exam_items": ["全腹部CT平扫"], "series": [s_ct(n_instances=300)]}],
             fails=[{"exam_items": ["全腹部CT平扫"], "series": [s_ct(n_instances=20)]}]),
        rule(nid("COMP"), "X线检查有图像", "Radiograph has an image per view", "completeness",
             "max_instances(series) >= 1", "X线检查没有图像", "the radiograph exam has no image",
             fields=["series"], when=has_images, modalities=XRAY, points=10,
             passes=[{"series": [s_dx()]}], fails=[{"series": [s_dx(n_instances=0)]}]),
        rule(nid("COMP"), "X线正侧位有两幅图像", "AP/LAT radiograph has two images", "completeness",
             "instance_count >= 2", "正侧位检查仅 {instance_count} 幅图像", "AP+LAT exam has only {instance_count} image(s)",
             fields=["instance_count", "exam_items"], when="any(contains(i, '正侧位') for i in exam_items) and instance_count != None",
             modalities=XRAY, points=10,
             passes=[{"exam_items": ["腰椎正侧位"], "instance_count": 2}], fails=[{"exam_items": ["腰椎正侧位"], "instance_count": 1}]),
    ]

    # MR sequence completeness (header level: SeriesDescription / ProtocolName / ImageType)
    seqs = [
        ("颅脑", "颅脑MR", "brain MR", "T1W", r"T1|SE_T1|FSPGR|MPRAGE", ["颅脑MR平扫"]),
        ("颅脑", "颅脑MR", "brain MR", "T2W", r"T2(?!.*FLAIR)|T2W|TSE", ["颅脑MR平扫"]),
        ("颅脑", "颅脑MR", "brain MR", "FLAIR", r"FLAIR|DARK.?FLUID|TIRM", ["颅脑MR平扫"]),
        ("颅脑", "颅脑MR", "brain MR", "DWI", r"DWI|DIFFUSION|TRACEW|弥散|EP2D_DIFF", ["颅脑MR平扫"]),
        ("颅脑", "颅脑MR", "brain MR", "ADC", r"ADC|表观弥散", ["颅脑MR平扫"]),
        ("膝关节", "膝关节MR", "knee MR", "PD/T2 FS", r"PD|FS|FAT.?SAT|STIR|T2W_FS|压脂", ["左膝关节MR平扫"]),
        ("膝关节", "膝关节MR", "knee MR", "T1W", r"T1", ["左膝关节MR平扫"]),
        ("腰椎", "腰椎MR", "lumbar MR", "T1W", r"T1", ["腰椎MR平扫"]),
        ("腰椎", "腰椎MR", "lumbar MR", "T2W", r"T2", ["腰椎MR平扫"]),
        ("颈椎", "颈椎MR", "cervical MR", "T2W", r"T2", ["颈椎MR平扫"]),
        ("肩关节", "肩关节MR", "shoulder MR", "FS fluid", r"PD|FS|FAT.?SAT|STIR|压脂", ["右肩关节MR平扫"]),
        ("上腹部", "肝脏MR", "liver MR", "DWI", r"DWI|DIFFUSION|TRACEW|弥散", ["肝脏MR平扫+增强"]),
        ("盆腔", "前列腺MR", "prostate MR", "DWI", r"DWI|DIFFUSION|TRACEW|弥散", ["前列腺MR平扫+增强"]),
        ("盆腔", "前列腺MR", "prostate MR", "T2W", r"T2", ["前列腺MR平扫+增强"]),
    ]
    for part, zh, en, seq, pattern, items in seqs:
        out.append(rule(nid("COMP"), f"{zh}含{seq}序列", f"{en}: {seq} sequence present", "completeness",
                        "has_series(series, sequence_pattern)", f"{zh}缺少{seq}序列", f"{en}: {seq} sequence missing",
                        fields=["series", "exam_items"], params={"sequence_pattern": pattern, "part": part},
                        when="part in item_body_parts(exam_items) and length(series) > 0", modalities=["MR"], severity="major", points=5,
                        description="Header-level check from SeriesDescription/ProtocolName (about 10% of descriptions are wrong); the image-QC sequence classifier supersedes it.",
                        passes=[{"exam_items": items, "series": [s_mr(seq.split("/")[0].split(" ")[0] if seq not in ("PD/T2 FS", "FS fluid") else "PD FS")]}],
                        fails=[{"exam_items": items, "series": [s_mr("Localizer XYZ")]}]))
    return out


# =========================================================================================
# report library (诊断报告)
# =========================================================================================
def report_rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    n = 0

    def nid(dim: str) -> str:
        nonlocal n
        n += 1
        return f"RPT-{dim}-{n:03d}"

    f_ok = "双肺纹理清晰，走行自然，未见明显实质性病变。纵隔内未见明显肿大淋巴结。"
    i_ok = "胸部CT平扫未见明显异常。"
    out += [
        rule(nid("COMP"), "检查所见有正文", "Findings have content", "completeness",
             "length(body(findings)) >= min_chars", "检查所见只有标题或过短（少于 {min_chars} 字）", "findings are only a header or shorter than {min_chars} characters",
             fields=["findings"], when="not is_blank(findings)", params={"min_chars": 8}, points=10,
             passes=[{"findings": "检查所见：" + f_ok}], fails=[{"findings": "检查所见："}, {"findings": "未见异常"}]),
        rule(nid("COMP"), "诊断意见有正文", "Impression has content", "completeness",
             "length(body(impression)) >= min_chars", "诊断意见只有标题或为空", "the impression is only a header or empty",
             fields=["impression"], when="not is_blank(impression)", params={"min_chars": 2}, points=10,
             passes=[{"impression": "诊断意见：" + i_ok}], fails=[{"impression": "诊断意见："}, {"impression": "印象:"}]),
        rule(nid("STD"), "检查所见长度合理", "Findings length plausible", "standardisation",
             "length(findings) <= max_chars", "检查所见超过 {max_chars} 字", "findings longer than {max_chars} characters",
             fields=["findings"], when="not is_blank(findings)", params={"max_chars": 6000}, severity="minor", points=2,
             passes=[{"findings": f_ok}], fails=[{"findings": "双肺纹理清晰。" * 1000}]),
        rule(nid("STD"), "诊断意见不长于检查所见", "Impression shorter than findings", "standardisation",
             "length(body(impression)) <= length(body(findings))", "诊断意见比检查所见还长", "the impression is longer than the findings",
             fields=["impression", "findings"], when="not is_blank(impression) and not is_blank(findings)", severity="minor", points=2,
             passes=[{"findings": f_ok, "impression": i_ok}], fails=[{"findings": "肺纹理清晰。", "impression": "双肺纹理清晰，走行自然，未见明显实质性病变，请结合临床。"}]),
        rule(nid("STD"), "诊断意见与检查所见不同", "Impression is not a copy of the findings", "standardisation",
             "strip(body(impression)) != strip(body(findings))", "诊断意见与检查所见完全相同", "the impression repeats the findings verbatim",
             fields=["impression", "findings"], when="not is_blank(impression) and not is_blank(findings)", points=3,
             passes=[{"findings": f_ok, "impression": i_ok}], fails=[{"findings": f_ok, "impression": f_ok}]),
        rule(nid("STD"), "诊断意见编号规范", "Impression numbered consistently", "standardisation",
             "numbering_consistent(impression)", "诊断意见编号不连续或格式混用", "impression items are not numbered 1, 2, 3 in one style",
             fields=["impression"], when="not is_blank(impression)", severity="minor", points=2,
             passes=[{"impression": "1.右肺上叶结节。\n2.脑萎缩。"}, {"impression": i_ok}],
             fails=[{"impression": "1.右肺上叶结节。\n3.脑萎缩。"}, {"impression": "1.右肺上叶结节。\n（2）脑萎缩。"}]),
        rule(nid("STD"), "检查所见编号规范", "Findings numbered consistently", "standardisation",
             "numbering_consistent(findings)", "检查所见编号不连续或格式混用", "findings items are not numbered 1, 2, 3 in one style",
             fields=["findings"], when="not is_blank(findings)", severity="info", points=0,
             passes=[{"findings": f_ok}], fails=[{"findings": "1.双肺纹理清晰。\n1.纵隔未见异常。"}]),
        rule(nid("STD"), "测量值带单位", "Measurements carry units", "standardisation",
             "length(missing_units(join([findings, impression], ' '))) == 0", "测量值缺少单位（mm/cm/HU）", "a measurement has no unit (mm/cm/HU)",
             fields=["findings", "impression"], severity="minor", points=2,
             passes=[{"findings": "右肺上叶见一结节，大小约8mm。"}, {"findings": "CT值约35HU。"}],
             fails=[{"findings": "右肺上叶见一结节，大小约8。"}, {"findings": "肝内低密度影，CT值约12，边界清。"}]),
        rule(nid("STD"), "无模板占位符", "No template placeholders", "standardisation",
             "length(placeholders(join([findings, impression], ' '))) == 0", "报告含未替换的模板占位符（XXX、***、【】）",
             "the report contains template placeholders (XXX, ***, 【】)",
             fields=["findings", "impression"], points=3,
             passes=[{"findings": f_ok}], fails=[{"findings": "右肺XXX叶见结节。"}, {"impression": "【请填写】"}]),
        rule(nid("STD"), "比较有参照检查", "Comparison names the earlier exam", "standardisation",
             "not comparison_without_prior(join([findings, impression], ' '))", "报告描述“较前”变化但未注明对比的既往检查",
             "the report compares with an earlier exam without naming it",
             fields=["findings", "impression"], severity="minor", points=1,
             passes=[{"findings": "对比2025-07-23胸部CT平扫：右肺上叶结节较前增大。"}, {"findings": f_ok}],
             fails=[{"findings": "右肺上叶结节较前增大。"}]),
        rule(nid("CONS"), "报告检查方式与设备类型一致", "Report modality matches the exam", "consistency",
             "subset(report_modalities(join([findings, impression], '。')), [modality_group(modality)])",
             "报告描述的检查方式与设备类型 {modality} 不符", "the report describes another modality than {modality}",
             fields=["findings", "impression", "modality"], when="modality_group(modality) in ['CT', 'MR', 'DX']", points=5,
             passes=[{"modality": "CT", "impression": "胸部CT平扫未见明显异常。"},
                     {"modality": "DR", "impression": "股骨头坏死可能，建议MR检查。"}],
             fails=[{"modality": "CT", "impression": "颅脑MR平扫未见明显异常。"}]),
    ]
    # sex terms
    for field, zh, en in (("findings", "检查所见", "findings"), ("impression", "诊断意见", "impression")):
        out.append(rule(nid("CONS"), f"{zh}性别用语与患者性别一致", f"Sex-specific anatomy in the {en} matches the patient", "consistency",
                        f"length(sex_conflict_terms({field}, patient_sex)) == 0",
                        f"{zh}出现与患者性别 {{patient_sex}} 不符的器官描述", f"the {en} describe an organ of the other sex than {{patient_sex}}",
                        fields=[field, "patient_sex"], when=f"normalise_sex(patient_sex) in ['M', 'F'] and not is_blank({field})",
                        points=10, severity="critical", tags=["violation:sex_contradiction"],
                        evidence={"terms": f"sex_conflict_terms({field}, patient_sex)"},
                        passes=[{field: "前列腺大小形态正常。", "patient_sex": "M"}, {field: "未见子宫。", "patient_sex": "M"},
                                {field: "双侧附件区未见明显异常密度影。", "patient_sex": "F"}],
                        fails=[{field: "子宫大小形态正常，宫壁密度均匀。", "patient_sex": "M"},
                               {field: "前列腺体积增大。", "patient_sex": "女"}]))
    out.append(rule(nid("CONS"), "报告性别用语与DICOM性别一致", "Sex-specific anatomy matches DICOM PatientSex", "consistency",
                    "length(sex_conflict_terms(join([findings, impression], '。'), dicom_patient_sex)) == 0",
                    "报告出现与DICOM性别 {dicom_patient_sex} 不符的器官描述", "the report describes an organ of the other sex than DICOM {dicom_patient_sex}",
                    fields=["findings", "impression", "dicom_patient_sex"],
                    when="normalise_sex(dicom_patient_sex) in ['M', 'F'] and normalise_sex(patient_sex) == None", points=10,
                    description="Used when the record has no sex: the header's PatientSex is the reference then.",
                    passes=[{"findings": "前列腺大小形态正常。", "dicom_patient_sex": "M"}],
                    fails=[{"findings": "子宫大小形态正常。", "dicom_patient_sex": "M"}]))
    out.append(rule(nid("CONS"), "报告不同时出现两性器官", "Report does not describe both sexes' organs", "consistency",
                    "length(sexes_mentioned(join([findings, impression], '。'))) < 2",
                    "报告同时描述了男性和女性器官", "the report describes organs of both sexes",
                    fields=["findings", "impression"], points=5,
                    passes=[{"findings": "子宫大小形态正常。双侧附件区未见异常。"}],
                    fails=[{"findings": "前列腺大小形态正常。子宫大小形态正常。"}]))
    # laterality
    lat_tag = ["violation:laterality_contradiction"]
    out += [
        rule(nid("CONS"), "检查所见左右与检查项目一致", "Findings side matches the ordered side", "consistency",
             "length(item_side_conflicts(exam_items, findings)) == 0", "检查项目 {exam_items} 的侧别与检查所见描述的侧别相反",
             "the findings describe the other side than ordered in {exam_items}",
             fields=["exam_items", "findings"], when="length(item_sides(exam_items)) > 0 and not is_blank(findings)",
             severity="critical", points=15, tags=lat_tag, evidence={"conflicts": "item_side_conflicts(exam_items, findings)"},
             passes=[{"exam_items": ["左膝关节MR平扫"], "findings": "左膝关节内侧半月板后角见线样高信号。"}],
             fails=[{"exam_items": ["左膝关节MR平扫"], "findings": "右膝关节内侧半月板后角见线样高信号，右膝关节腔少量积液。"}]),
        rule(nid("CONS"), "诊断意见左右与检查项目一致", "Impression side matches the ordered side", "consistency",
             "length(item_side_conflicts(exam_items, impression)) == 0", "检查项目 {exam_items} 的侧别与诊断意见的侧别相反",
             "the impression names the other side than ordered in {exam_items}",
             fields=["exam_items", "impression"], when="length(item_sides(exam_items)) > 0 and not is_blank(impression)",
             severity="critical", points=15, tags=lat_tag, evidence={"conflicts": "item_side_conflicts(exam_items, impression)"},
             passes=[{"exam_items": ["膝关节MR平扫(右)"], "impression": "右膝关节少量积液。"}],
             fails=[{"exam_items": ["膝关节MR平扫(右)"], "impression": "左膝关节少量积液。"}]),
        rule(nid("CONS"), "诊断意见左右与检查所见一致", "Impression side matches the findings", "consistency",
             "length(side_conflicts(findings, impression)) == 0", "诊断意见的侧别与检查所见不一致", "the impression names a side the findings do not",
             fields=["findings", "impression"], when="not is_blank(findings) and not is_blank(impression)",
             severity="critical", points=15, tags=lat_tag, evidence={"conflicts": "side_conflicts(findings, impression)"},
             passes=[{"findings": "左肺上叶见一实性结节，大小约8mm。双肺门不大。", "impression": "左肺上叶结节。"},
                     {"findings": "双肺纹理增多。", "impression": "双肺支气管炎。"}],
             fails=[{"findings": "左侧胸腔见弧形液体密度影。", "impression": "右侧胸腔少量积液。"},
                    {"findings": "L4/5椎间盘向左后方突出，左侧神经根受压。", "impression": "L4/5椎间盘突出（右后型）。"}]),
        rule(nid("COMP"), "单侧部位检查项目注明侧别", "One-sided items name the side", "completeness",
             "length(item_lateralities(exam_items)) > 0", "检查项目 {exam_items} 为单侧部位但未注明左/右", "exam items {exam_items} are one-sided but name no side",
             fields=["exam_items"], when="length(lateral_item_parts(exam_items)) > 0", points=5,
             passes=[{"exam_items": ["左膝关节MR平扫"]}], fails=[{"exam_items": ["膝关节MR平扫"]}]),
    ]
    # body parts
    part_tag = ["violation:part_mismatch"]
    out += [
        rule(nid("CONS"), "检查所见部位与检查项目一致", "Findings describe the ordered parts", "consistency",
             "length(parts_outside(findings, item_body_parts(exam_items))) == 0",
             "检查所见描述了未申请的部位（检查项目 {exam_items}）", "the findings describe parts not ordered ({exam_items})",
             fields=["findings", "exam_items"], when="length(item_body_parts(exam_items)) > 0 and not is_blank(findings)",
             severity="critical", points=15, tags=part_tag,
             evidence={"sentences": "sentences_outside(findings, item_body_parts(exam_items))"},
             passes=[{"exam_items": ["胸部CT平扫"], "findings": f_ok}],
             fails=[{"exam_items": ["胸部CT平扫"], "findings": "肝脏大小形态正常，肝实质密度均匀。胆囊不大。"}]),
        rule(nid("CONS"), "诊断意见部位与检查项目一致", "Impression about the ordered parts", "consistency",
             "length(parts_outside(impression, item_body_parts(exam_items))) == 0",
             "诊断意见涉及未申请的部位（检查项目 {exam_items}）", "the impression is about parts not ordered ({exam_items})",
             fields=["impression", "exam_items"], when="length(item_body_parts(exam_items)) > 0 and not is_blank(impression)",
             severity="critical", points=15, tags=part_tag,
             evidence={"sentences": "sentences_outside(impression, item_body_parts(exam_items))"},
             passes=[{"exam_items": ["头颅CT平扫+胸部CT平扫"], "impression": "1.脑萎缩。2.双肺纹理增多。"}],
             fails=[{"exam_items": ["头颅CT平扫"], "impression": "腰椎退行性变。"}]),
        rule(nid("CONS"), "诊断意见部位见于检查所见", "Impression parts are described in the findings", "consistency",
             "length(parts_outside(impression, report_parts(findings))) == 0",
             "诊断意见涉及检查所见未描述的部位", "the impression names a part the findings never describe",
             fields=["impression", "findings"],
             when="not is_blank(impression) and length(report_parts(findings)) > 0", points=5,
             passes=[{"findings": "脑实质未见异常。双肺纹理清晰。", "impression": "1.颅脑CT平扫未见明显异常。2.双肺未见异常。"}],
             fails=[{"findings": "脑实质未见异常。", "impression": "右肺上叶结节。"}]),
        rule(nid("COMP"), "报告覆盖全部申请部位", "Report covers every ordered part", "completeness",
             "length(parts_missing(join([findings, impression], '。'), item_body_parts(exam_items))) == 0",
             "报告未描述申请的部位（检查项目 {exam_items}）", "the report does not describe every ordered part ({exam_items})",
             fields=["exam_items", "findings", "impression"],
             when="length(item_body_parts(exam_items)) > 0 and not is_blank(findings) and length(report_parts(join([findings, impression], '。'))) > 0",
             points=5,
             passes=[{"exam_items": ["头颅CT平扫+胸部CT平扫"], "findings": "脑实质未见异常。双肺纹理清晰。"}],
             fails=[{"exam_items": ["头颅CT平扫+胸部CT平扫"], "findings": "脑实质未见异常。", "impression": "颅脑CT平扫未见明显异常。"}]),
        rule(nid("CONS"), "报告部位与DICOM检查部位一致", "Report parts agree with the DICOM header", "consistency",
             "length(parts_outside(join([findings, impression], '。'), dicom_parts(body_parts))) == 0",
             "报告描述的部位与DICOM检查部位 {body_parts} 不符", "the report describes parts other than the DICOM body part {body_parts}",
             fields=["findings", "impression", "body_parts"],
             when="length(dicom_parts(body_parts)) > 0 and not is_blank(findings)", severity="minor", points=3,
             description="BodyPartExamined is wrong in about 15% of exams: minor; the image classifier is the arbiter.",
             passes=[{"body_parts": ["CHEST"], "findings": f_ok}],
             fails=[{"body_parts": ["CHEST"], "findings": "脑实质内未见明显异常密度影。"}]),
    ]
    # critical values
    out += [
        rule(nid("ACC"), "危急值提示", "Critical finding flagged for notification", "accuracy",
             "length(critical_values(join([findings, impression], '。'))) == 0",
             "报告含危急值（{impression}），须按危急值流程通知临床并登记", "the report contains a critical finding: notify the clinician and register it",
             fields=["findings", "impression"], severity="critical", points=0,
             description="Informational deduction-free flag (points 0): every positive critical finding (危急值) is listed so the platform can check the notification log.",
             passes=[{"impression": "未见脑出血。"}, {"impression": "胸部CT平扫未见明显异常。"}],
             fails=[{"impression": "左侧基底节区脑出血。"}, {"findings": "考虑主动脉夹层（DeBakey III型）。"},
                    {"findings": "膈下见游离气体影。", "impression": "消化道穿孔可能。"}]),
        rule(nid("TIME"), "急诊危急值报告时限", "Emergency critical finding reported within 30 min", "timeliness",
             "minutes_between(exam_time, report_time) <= max_minutes",
             "危急值报告 {report_time} 距检查 {exam_time} 超过 {max_minutes} 分钟", "critical finding reported {report_time}, more than {max_minutes} min after the exam {exam_time}",
             fields=["exam_time", "report_time", "impression"], params={"max_minutes": 30},
             when="length(critical_values(join([findings, impression], '。'))) > 0 and minutes_between(exam_time, report_time) != None",
             severity="critical", points=10,
             passes=[{"impression": "脑出血。", "exam_time": T0, "report_time": T_PLUS_10}],
             fails=[{"impression": "脑出血。", "exam_time": T0, "report_time": T_PLUS_60}]),
    ]
    return out


# =========================================================================================
# scoring standards per exam item (qc-items.md; CONTRACT §4)
# =========================================================================================
IMAGE_QC = {
    # check id -> (category, default points) for the later image-QC issue (placeholders)
    "IQC-RANGE": "range", "IQC-POSITION": "positioning", "IQC-ARTIFACT": "artifact", "IQC-CENTRING": "centring",
    "IQC-SHARPNESS": "sharpness", "IQC-NOISE": "noise", "IQC-RECON": "reconstruction", "IQC-WINDOW": "window",
    "IQC-SEQUENCE": "sequence", "IQC-DOSE": "dose", "IQC-MARKER": "marker", "IQC-EXPOSURE": "exposure",
    "IQC-ENHANCEMENT": "enhancement",
}

# Checks every standard lists, by the rule's English name (ids are numbered by the tables above).
COMMON_INDEX = [("Accession number present", 3), ("ID number present", 3), ("Report doctor present", 2),
                ("ID number valid (GB 11643)", 2), ("Exam to report within the limit", 3),
                ("Exam to review within the limit", 2), ("Upload within the limit", 2),
                ("Report and review doctor differ", 3), ("order_time before exam_time", 2),
                ("exam_time before report_time", 2)]
COMMON_REPORT = [("Findings have content", 3), ("Impression has content", 3),
                 ("Sex-specific anatomy in the findings matches the patient", 5),
                 ("Sex-specific anatomy in the impression matches the patient", 5),
                 ("Impression side matches the findings", 5), ("Findings describe the ordered parts", 5)]


def std(code: str, zh: str, en: str, modality: str, image: list[tuple[str, float]], extra: list[tuple[str, str, float]],
        aliases: list[str], ids: dict[str, str], dims: dict[str, str]) -> dict[str, Any]:
    grading = "radiograph" if modality in ("DX", "CR", "DR", "MG") else "ct_mr"
    thresholds = {"甲": 90, "乙": 75, "丙": 60, "丁": 0} if grading == "radiograph" else {"3": 90, "2": 75, "1": 60, "0": 0}
    items: list[dict[str, Any]] = []
    for cid, pts in image:
        items.append({"id": cid, "type": "image", "category": IMAGE_QC[cid], "points": pts})
    for cid, typ, pts in extra:
        items.append({"id": cid, "type": typ, "category": dims[cid], "points": pts})
    for name, pts in COMMON_INDEX:
        items.append({"id": ids[name], "type": "index", "category": dims[ids[name]], "points": pts})
    for name, pts in COMMON_REPORT:
        items.append({"id": ids[name], "type": "report", "category": dims[ids[name]], "points": pts})
    return {"item": code, "name": {"zh": zh, "en": en}, "modality": modality, "grading": grading, "total": 100,
            "thresholds": thresholds, "aliases": aliases, "items": items}


XR_IMG = [("IQC-RANGE", 15), ("IQC-POSITION", 10), ("IQC-CENTRING", 5), ("IQC-EXPOSURE", 10), ("IQC-SHARPNESS", 10),
          ("IQC-ARTIFACT", 10), ("IQC-MARKER", 5)]
CT_IMG = [("IQC-RANGE", 15), ("IQC-ARTIFACT", 15), ("IQC-CENTRING", 5), ("IQC-NOISE", 10), ("IQC-RECON", 10),
          ("IQC-WINDOW", 5), ("IQC-DOSE", 5)]
MR_IMG = [("IQC-RANGE", 10), ("IQC-SEQUENCE", 15), ("IQC-ARTIFACT", 15), ("IQC-POSITION", 5), ("IQC-SHARPNESS", 10),
          ("IQC-NOISE", 5)]


def standards(rules_by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {r["name"]["en"]: r["id"] for r in rules_by_id.values()}
    dims = {r["id"]: r["dimension"] for r in rules_by_id.values()}

    def hdr(*names: str) -> list[tuple[str, str, float]]:
        return [(ids[n], "image", 5) for n in names]

    def item_rules(part: str, mod: str) -> list[tuple[str, str, float]]:
        return [(r["id"], "image", 5) for r in rules_by_id.values()
                if r["id"].startswith("IMG-") and (r.get("params") or {}).get("part") == part and mod in r["applies_to"]["modalities"]]

    xr_hdr = hdr("Pixel spacing present", "Pixel spacing plausible (radiographs)")
    ct_hdr = hdr("Pixel spacing present", "Pixel spacing plausible (CT)", "Slice thickness present", "CT kernel present")
    mr_hdr = hdr("Pixel spacing present", "Pixel spacing plausible (MR)", "Slice thickness present")
    lat = [(ids["Findings side matches the ordered side"], "report", 10),
           (ids["Impression side matches the ordered side"], "report", 10), (ids["One-sided items name the side"], "report", 5)]
    apl = hdr("AP/LAT radiograph has two images")
    table = [
        ("DX-CHEST-PA", "胸部正位", "Chest radiograph PA", "DX", XR_IMG, xr_hdr, ["胸部正位", "胸部正位片", "胸片", "DR胸部正位片", "胸部后前位", "X线胸部正位"]),
        ("DX-CHEST-LAT", "胸部侧位", "Chest radiograph lateral", "DX", XR_IMG, xr_hdr, ["胸部侧位", "胸部侧位片"]),
        ("DX-CHEST-PALAT", "胸部正侧位", "Chest radiograph PA + lateral", "DX", XR_IMG, xr_hdr + apl, ["胸部正侧位", "DR胸部正侧位", "胸片（正侧位）"]),
        ("DX-CSPINE-APLAT", "颈椎正侧位", "Cervical spine AP + lateral", "DX", XR_IMG, xr_hdr + apl, ["颈椎正侧位", "DR颈椎正侧位", "颈椎正侧位片"]),
        ("DX-TSPINE-APLAT", "胸椎正侧位", "Thoracic spine AP + lateral", "DX", XR_IMG, xr_hdr + apl, ["胸椎正侧位", "DR胸椎正侧位"]),
        ("DX-LSPINE-APLAT", "腰椎正侧位", "Lumbar spine AP + lateral", "DX", XR_IMG, xr_hdr + apl, ["腰椎正侧位", "DR腰椎正侧位", "腰椎正侧位片", "X线腰椎正侧位"]),
        ("DX-PELVIS-AP", "骨盆正位", "Pelvis AP", "DX", XR_IMG, xr_hdr, ["骨盆正位", "DR骨盆正位片", "骨盆平片", "X线骨盆正位"]),
        ("DX-KNEE-APLAT", "膝关节正侧位", "Knee AP + lateral", "DX", XR_IMG, xr_hdr + apl + lat, ["左膝关节正侧位", "右膝关节正侧位", "膝关节正侧位"]),
        ("DX-SHOULDER", "肩关节正位", "Shoulder radiograph", "DX", XR_IMG, xr_hdr + lat, ["左肩关节正位", "右肩关节正位", "肩关节正位"]),
        ("DX-HIP", "髋关节正位", "Hip radiograph", "DX", XR_IMG, xr_hdr + lat, ["左髋关节正位", "右髋关节正位", "髋关节正位"]),
        ("DX-HAND-WRIST", "手/腕关节正斜位", "Hand / wrist radiograph", "DX", XR_IMG, xr_hdr + lat, ["左手正斜位", "右手正斜位", "左腕关节正侧位", "右腕关节正侧位"]),
        ("DX-ANKLE-FOOT", "踝关节/足正侧位", "Ankle / foot radiograph", "DX", XR_IMG, xr_hdr + lat, ["左踝关节正侧位", "右踝关节正侧位", "左足正斜位", "右足正斜位"]),
        ("DX-KUB", "腹部平片（KUB）", "Abdomen KUB", "DX", XR_IMG, xr_hdr, ["腹部平片", "KUB", "腹部立位平片", "泌尿系平片"]),
        ("CT-HEAD-PLAIN", "颅脑CT平扫", "Head CT, non-contrast", "CT", CT_IMG, ct_hdr + item_rules("颅脑", "CT"), ["头颅CT平扫", "颅脑CT平扫", "头部CT平扫", "头颅CT", "Head Routine"]),
        ("CT-SINUS", "鼻窦CT平扫", "Sinus CT", "CT", CT_IMG, ct_hdr + item_rules("鼻窦", "CT"), ["鼻窦CT平扫", "副鼻窦CT平扫"]),
        ("CT-NECK", "颈部CT平扫", "Neck CT", "CT", CT_IMG, ct_hdr + item_rules("颈部软组织", "CT"), ["颈部CT平扫", "颈部软组织CT平扫", "甲状腺CT平扫"]),
        ("CT-CHEST-PLAIN", "胸部CT平扫", "Chest CT, non-contrast", "CT", CT_IMG, ct_hdr + item_rules("胸部", "CT"), ["胸部CT平扫", "胸部CT", "肺部CT平扫", "CT胸部平扫", "Chest Routine"]),
        ("CT-CHEST-LOWDOSE", "胸部低剂量CT", "Low-dose chest CT", "CT", CT_IMG, ct_hdr + item_rules("胸部", "CT"), ["胸部低剂量CT平扫", "低剂量肺部CT", "肺癌筛查低剂量CT", "LDCT胸部"]),
        ("CT-UABD", "上腹部CT", "Upper abdomen CT", "CT", CT_IMG, ct_hdr + item_rules("上腹部", "CT"), ["上腹部CT平扫", "上腹部CT平扫+增强", "上腹部CT增强", "肝胆胰脾CT平扫", "Tri Phase Liver"]),
        ("CT-ABD-PELVIS", "全腹部（腹部+盆腔）CT", "Abdomen + pelvis CT", "CT", CT_IMG, ct_hdr + hdr("Abdomen-pelvis CT has at least 40 slices"), ["全腹部CT平扫", "腹部+盆腔CT平扫", "全腹CT增强"]),
        ("CT-SPINE", "脊柱CT平扫", "Spine CT", "CT", CT_IMG, ct_hdr + item_rules("腰椎", "CT") + item_rules("颈椎", "CT"), ["腰椎CT平扫", "颈椎CT平扫", "胸椎CT平扫", "腰椎间盘CT平扫（含三个椎间盘）"]),
        ("CT-KNEE", "膝关节CT平扫", "Knee CT", "CT", CT_IMG, ct_hdr + item_rules("膝关节", "CT") + lat, ["膝关节CT平扫", "左膝关节CT平扫", "右膝关节CT平扫", "膝关节CT平扫+三维重建"]),
        ("CT-CORONARY-CTA", "冠状动脉CTA", "Coronary CTA", "CT", CT_IMG + [("IQC-ENHANCEMENT", 10)], ct_hdr + item_rules("心脏", "CT"), ["冠状动脉CTA", "冠脉CTA", "冠状动脉CT血管成像"]),
        ("CT-HEADNECK-CTA", "头颈CTA", "Head-neck CTA", "CT", CT_IMG + [("IQC-ENHANCEMENT", 10)], ct_hdr, ["头颈CTA", "头颈部CTA", "颈部及颅内动脉CTA"]),
        ("CT-PULMONARY-CTA", "肺动脉CTA", "Pulmonary CTA", "CT", CT_IMG + [("IQC-ENHANCEMENT", 10)], ct_hdr, ["肺动脉CTA", "肺动脉CT血管成像", "CTPA"]),
        ("MR-BRAIN", "颅脑MR平扫", "Brain MR", "MR", MR_IMG, mr_hdr + item_rules("颅脑", "MR"), ["颅脑MR平扫", "头颅MRI平扫", "头颅核磁共振平扫", "颅脑磁共振平扫+DWI", "BRAIN ROUTINE"]),
        ("MR-KNEE", "膝关节MR平扫", "Knee MR", "MR", MR_IMG, mr_hdr + item_rules("膝关节", "MR") + lat, ["左膝关节MR平扫", "右膝关节MR平扫", "膝关节MR平扫"]),
        ("MR-LSPINE", "腰椎MR平扫", "Lumbar spine MR", "MR", MR_IMG, mr_hdr + item_rules("腰椎", "MR"), ["腰椎MR平扫", "腰椎MRI平扫", "腰椎间盘核磁共振平扫", "L-SPINE MRI"]),
        ("MR-CSPINE", "颈椎MR平扫", "Cervical spine MR", "MR", MR_IMG, mr_hdr + item_rules("颈椎", "MR"), ["颈椎MR平扫", "颈椎MRI平扫", "颈椎磁共振平扫"]),
        ("MR-SHOULDER", "肩关节MR平扫", "Shoulder MR", "MR", MR_IMG, mr_hdr + item_rules("肩关节", "MR") + lat, ["左肩关节MR平扫", "右肩关节MR平扫", "肩关节MR平扫"]),
        ("MR-LIVER", "肝脏MR", "Liver MR", "MR", MR_IMG + [("IQC-ENHANCEMENT", 5)], mr_hdr + item_rules("上腹部", "MR"), ["肝脏MR平扫+增强", "上腹部MR平扫+增强", "肝脏MRI"]),
        ("MR-PROSTATE", "前列腺MR", "Prostate MR", "MR", MR_IMG + [("IQC-ENHANCEMENT", 5)], mr_hdr + item_rules("盆腔", "MR"), ["前列腺MR平扫+增强", "前列腺MRI", "前列腺多参数MR"]),
    ]
    return [std(code, zh, en, mod, image, extra, aliases, ids, dims) for code, zh, en, mod, image, extra, aliases in table]


# =========================================================================================
class _Dumper(yaml.SafeDumper):
    pass


def _repr_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> Any:
    # Small leaf mappings (names, messages, examples, applies_to, series dicts) in flow style.
    flow = all(not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))
               for v in data.values()) and len(data) <= 14
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=flow)


def _repr_list(dumper: yaml.SafeDumper, data: list[Any]) -> Any:
    flow = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(dict, _repr_dict)
_Dumper.add_representer(list, _repr_list)

HEADERS = {
    "index": "Exam index data (影像检查数据): completeness, timeliness, consistency, standardisation and accuracy of the HIS/RIS record and the imaging-cloud index.",
    "image": "Raw image data (原始图像), header level: pixel spacing, slice thickness, kernels, window presets, sequences, modality vs item.",
    "report": "Diagnostic reports (诊断报告): sections, numbering, units, sex terms, laterality, body parts, critical values.",
}


def dump(path: Path, data: Any, comment: str) -> None:
    text = yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=140)
    path.write_text(f"# {comment}\n# Generated by qc_rules/library/build_library.py; edit the tables there or this file.\n" + text,
                    encoding="utf-8")


PREFIX = {"index": "IDX", "image": "IMG", "report": "RPT"}
DIM_CODE = {"completeness": "COMP", "timeliness": "TIME", "consistency": "CONS", "standardisation": "STD",
            "accuracy": "ACC"}


def _shipped_ids(lib: str) -> dict[str, str]:
    """English rule name -> id in the library file as shipped (empty on the first build)."""
    path = HERE / f"{lib}.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {r["name"]["en"]: r["id"] for r in data.get("rules", [])}


def main() -> None:
    libraries = {"index": index_rules(), "image": image_rules(), "report": report_rules()}
    # Ids are public (results, standards and hospitals' scripts name them), so a rebuild never
    # renumbers: a rule keeps the id it has in the shipped YAML (matched by library and English
    # name); only a new rule gets a new id, the next free number of its library. The id is the
    # library prefix + the code of the rule's own dimension + that number.
    for lib, rules in libraries.items():
        shipped = _shipped_ids(lib)
        used = {int(rid.rsplit("-", 1)[1]) for rid in shipped.values()}
        for r in rules:
            rid = shipped.get(r["name"]["en"])
            if rid is None:
                number = max(used, default=0) + 1
                used.add(number)
                rid = f"{PREFIX[lib]}-{DIM_CODE[r['dimension']]}-{number:03d}"
            r["id"] = rid
    for lib, rules in libraries.items():
        names = [r["name"]["en"] for r in rules]
        if len(names) != len(set(names)):
            raise SystemExit(f"{lib}: English rule names must be unique (they carry the ids across rebuilds)")
    by_id: dict[str, dict[str, Any]] = {}
    for lib, rules in libraries.items():
        for r in rules:
            if r["id"] in by_id:
                raise SystemExit(f"duplicate rule id {r['id']}")
            by_id[r["id"]] = r
        dump(HERE / f"{lib}.yaml", {"library": lib, "version": 1, "description": HEADERS[lib], "rules": rules}, HEADERS[lib])
    STANDARDS.mkdir(exist_ok=True)
    for old in STANDARDS.glob("*.yaml"):
        old.unlink()
    stds = standards(by_id)
    for s in stds:
        for it in s["items"]:
            if it["type"] != "image" or it["id"].startswith("IMG-"):
                if it["id"] not in by_id:
                    raise SystemExit(f"standard {s['item']} names unknown rule {it['id']}")
        dump(STANDARDS / f"{s['item']}.yaml", s, f"Scoring standard for {s['name']['en']} ({s['name']['zh']}).")
    write_doc(libraries, stds)
    print(f"{len(by_id)} rules ({', '.join(f'{k}: {len(v)}' for k, v in libraries.items())}); {len(standards(by_id))} standards")


# =========================================================================================
# docs/rule-library.md: the narrative below plus tables generated from the files above
# =========================================================================================
DOC_HEAD = """# Rule library and scoring standards · 规则库与评分标准

The rule QC (规则质控) data of issue 4: three rule libraries, the scoring standards per exam
item, the vocabularies the rules' functions use, and how the library is measured. The engine
that loads and runs them is described in docs/rule-qc.md; the hospital-side check in
docs/hospital-check.md.

| what | where |
| --- | --- |
| exam index data 影像检查数据 | `qc_rules/library/index.yaml` |
| raw image data 原始图像 (header level) | `qc_rules/library/image.yaml` |
| diagnostic reports 诊断报告 | `qc_rules/library/report.yaml` |
| scoring standards per exam item | `qc_rules/standards/<item>.yaml` |
| built-in functions (`FUNCTIONS`) | `qc_rules/functions/` (`basic.py`, `report.py`, `dicom.py`) |
| vocabularies | `qc_rules/lexicons/*.yaml` (anatomy, items, cues, sex terms, critical values, windows/kernels, phone prefixes) |
| generator of the YAML and of this page | `qc_rules/library/build_library.py` |

The YAML files are the source of truth: the engine loads them, `radqc rules export` writes
them, people edit them. Many rules are parameterised families (one per mandatory field, per
time pair, per window preset, per MR sequence), so they are written from compact tables by
`build_library.py`; after editing a table run
`.venv/bin/python qc_rules/library/build_library.py` (it rewrites the libraries, the
standards and this page). Every rule carries `examples.pass` and `examples.fail`; the engine
refuses a rule whose own examples misbehave, and `tests/test_rules_library.py` runs them all.

## Conventions

* Ids: `IDX-`/`IMG-`/`RPT-` (library) + dimension code (`COMP` completeness, `TIME`
  timeliness, `CONS` consistency, `STD` standardisation, `ACC` accuracy) + number.
* `fields` names the record fields / DICOM facts a failure is about (the hospital sees them).
* `when` keeps a rule from judging what it cannot see: a format rule skips a blank field
  (the completeness rule reports it), an image rule skips exams without images, a
  per-item rule runs only when the ordered items name its body part (`part` param).
* Thresholds are `params` (configurable without touching the expression): e.g. the
  exam-to-report and exam-to-review rules have `max_minutes_emergency` /
  `max_minutes_routine` (both 120 by default, qc-items.md: > 2 h flagged).
* `tags: [violation:<kind>]` names the synthetic generator's seeded violation a rule
  detects; `radqc eval rules` scores by it.

## Adding or changing a rule

A rule is one YAML mapping (CONTRACT §2); for example the same-doctor rule:

```yaml
- id: IDX-CONS-059
  name: {zh: 报告医师与审核医师不同, en: Report and review doctor differ}
  dimension: consistency
  applies_to: {modalities: [], items: []}      # [] = all
  severity: major
  points: 10
  fields: [report_doctor, review_doctor]
  when: not is_blank(report_doctor) and not is_blank(review_doctor)
  expr: strip(report_doctor) != strip(review_doctor)
  message: {zh: 报告医师与审核医师同为 {report_doctor}, en: report and review doctor are both {report_doctor}}
  tags: [violation:same_doctor]
  examples:
    pass: [{report_doctor: 赵强, review_doctor: 钱文}]
    fail: [{report_doctor: 赵强, review_doctor: 赵强}]
```

Expressions may use the facts of CONTRACT §1, the rule's `params`, and the functions of
`FUNCTIONS` (below); `radqc rules add|edit|import` validate it (examples included) before a
new ruleset version is created. Put thresholds in `params`, vocabularies in
`qc_rules/lexicons/`, never in the expression.

## Report text analysis (`qc_rules/functions/report.py`)

* **Sections**: headers from `lexicons/cues.yaml` (findings: 检查所见, 影像所见, 影像学表现,
  影像表现, CT/MR/MRI/X线/DR表现, 所见, 描述; impression: 诊断意见, 影像诊断, 诊断结论,
  检查结论, 诊断, 印象, 意见, 结论, 提示; also 检查项目, 临床诊断, 建议, signatures) at the
  start of a line followed by a colon or line break; `sections(text)` returns each
  section's body text and exact `[start, end]` spans, `body(text)` strips a leading header.
* **Sentences / clauses**: split at 。；！？ and line breaks (clauses also at ，), with spans.
* **Negation**: a cue (未见(明显), 未发现, 未显示, 无(明显), 不伴, 排除, 除外, 阴性, 没有)
  opens a scope to the end of the clause; anatomy before the cue stays positive
  ("附件区未见异常" describes the adnexa); "子宫未见显示" / "…缺如" negate the term before
  them; 不除外/不排除 are uncertainty (longest cue wins); exceptions like 无名, 有无.
* **Laterality**: 左/右/双/两侧 attach to the nearest anatomy term at or after them in the
  clause (左肺上叶, 左侧胸腔), else the nearest before (甲状腺左叶, 椎间盘突出（左后型）), else
  the last anatomy named (carry). Direction words (向左, 偏右, 左右) and heart chambers
  (左心室, 右冠) are not sides. `part_sides(text)` gives part → sides; conflicts compare
  only left/right (双 never conflicts) and only for a part whose reference names a side.
* **Body parts**: the anatomy lexicon (`lexicons/anatomy.yaml`, series-and-reports.md) maps
  terms to billing parts, longest match first; spine words (椎体, 椎间盘) belong to every
  spine segment, joint words to every joint; ASCII terms need word boundaries (T1 in
  "长T1信号" is not a vertebra: only `T12椎`, disc levels `L4/5`). A sentence is about the
  union of its terms' parts; `parts_outside(text, ordered)` lists parts of sentences none of
  whose parts was ordered. Item names map to parts with `lexicons/items.yaml`
  (`item_body_parts`: 胸部+上腹部CT平扫, Tri Phase Liver, 腹部CT平扫(上腹) → only 上腹部).
* **Sex terms**: `lexicons/sex_terms.yaml` (前列腺, 精囊, 睾丸… / 子宫, 宫颈, 附件, 卵巢,
  节育环…); negated mentions ignored; `sex_conflict_terms(text, sex)` lists the other
  sex's organs with spans.
* **Critical values** (危急值): `lexicons/critical_values.yaml` patterns (张力性/大量气胸 or
  compression >= 30%, 主动脉夹层, 颅内出血, 急性脑梗死, 脑疝, 肺栓塞, 消化道穿孔/膈下游离气体,
  绞窄性肠梗阻, 实质脏器破裂, 心包填塞, 颈椎骨折脱位, 异位妊娠); positive and suspected
  mentions count, negated ones do not.

Identity functions: `id_number_valid` (GB 11643: 18 characters, a real birth date since
1900, ISO 7064 MOD 11-2 check), `id_birth_date`, `id_sex`, `mobile_valid` (11 digits with
an allocated prefix from `lexicons/phone.yaml`; +86 and separators tolerated),
`uscc_valid` (GB 32100), `org_code_valid` (GB 11714), `index_string_valid` (five parts
26-12-9-13-18 split at one of `| ^ - _ , ; space` or by fixed widths; part 2 a real
YYYYMMDDhhmm). Times: ISO 8601, naive = China Standard Time.

Names: the function for report body parts is registered as `report_parts` (CONTRACT §3
calls it `body_parts`, which is also the DICOM fact name; the engine resolves a name to
the function first, so the fact would be unreachable).

## Measured: `radqc eval rules`

MEASURED_PLACEHOLDER

## Known limits

* **upload_late** without `exam_end_time`: latency runs from the end of the acquisition;
  with only `exam_time` (the start) the rule allows the modality's longest acquisition
  (`acquisition_minutes`: DX 6, CT 15, MR 40 min) on top of 1 / 5 min, so a late upload of a
  short scan can hide inside the allowance. Hospitals that send `exam_end_time` get the exact
  check.
* Header rules on *small* synthetic sets: 64–128 px images give pixel spacings of 2–7 mm and
  few slices, so `IMG-ACC-002/003` (pixel spacing plausible) and the 40-slice abdomen rule
  fire on clean small exams; they pass on full-size sets.
* `BodyPartExamined` is wrong in about 15% of exams: the header-vs-order and
  report-vs-header rules are `minor`; the image classifier (later issue) decides.
* Report-text rules are lexicon based: a term missing from the anatomy lexicon is invisible;
  grow `lexicons/*.yaml` with the hospitals' vocabulary.
"""


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_doc(libraries: dict[str, list[dict[str, Any]]], stds: list[dict[str, Any]], measured: str | None = None) -> None:
    doc_path = HERE.parent.parent / "docs" / "rule-library.md"
    head = DOC_HEAD
    if measured is None and doc_path.exists():
        old = doc_path.read_text(encoding="utf-8")
        start = old.find("## Measured: `radqc eval rules`")
        end = old.find("## Known limits")
        measured = old[start + len("## Measured: `radqc eval rules`"):end].strip() if start >= 0 and end > start else None
    head = head.replace("MEASURED_PLACEHOLDER", measured or "(run `radqc eval rules --data DIR` and record the numbers here)")
    lines = [head]
    try:
        import inspect

        from radqc.qc_rules.functions import FUNCTIONS

        lines += [f"## Functions ({len(FUNCTIONS)})", "", "`qc_rules.functions.FUNCTIONS`, callable by bare name in "
                  "`expr`/`when` (the engine adds its own len, min, max, sum, abs, str, int, float, round, lower, "
                  "upper, strip, any, all). First line of each docstring:", "", "| function | returns |", "| --- | --- |"]
        for name, fn in sorted(FUNCTIONS.items()):
            doc = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
            sig = str(inspect.signature(fn)).replace(" -> ", " → ").replace("'", "")
            lines.append(f"| `{name}{_md(sig)}` | {_md(doc)} |")
        lines.append("")
    except ImportError:  # running outside the installed package
        pass
    lines += [f"## Rules ({sum(len(v) for v in libraries.values())})", ""]
    titles = {"index": "Exam index data 影像检查数据", "image": "Raw image data 原始图像 (header)",
              "report": "Diagnostic reports 诊断报告"}
    for lib, rules in libraries.items():
        lines += [f"### {titles[lib]} — `{lib}.yaml` ({len(rules)} rules)", "",
                  "| id | 名称 | name | dimension | severity / points | modalities | checks (pass when) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in rules:
            check = f"`{_md(r['expr'])}`"
            if r.get("when"):
                check += f" when `{_md(r['when'])}`"
            if r.get("params"):
                check += " · params " + ", ".join(f"{k}={_md(v)}" for k, v in r["params"].items())
            if r.get("tags"):
                check += " · " + ", ".join(r["tags"])
            mods = ", ".join(r["applies_to"]["modalities"]) or "all"
            lines.append(f"| {r['id']} | {_md(r['name']['zh'])} | {_md(r['name']['en'])} | {r['dimension']} | "
                         f"{r['severity']} / {r['points']} | {mods} | {check} |")
        lines.append("")
    lines += [f"## Scoring standards ({len(stds)} exam items)", "",
              "Each standard lists its QC items with points (单项分值配置: they override the rule's default); "
              "`IQC-*` items are the image-QC checks of the later issue (range, positioning, artifacts, centring, "
              "sharpness, noise, reconstruction, window, sequences, dose, marker, exposure, enhancement), "
              "placeholders of type `image`. Grades: radiographs 甲 >= 90, 乙 >= 75, 丙 >= 60, else 丁; "
              "CT/MR 3 >= 90, 2 >= 75, 1 >= 60, else 0. An exam finds its standard by item code or by an alias "
              "(the hospital spellings listed); for other spellings the function `standard_item(modality, exam_items)` "
              "maps modality + ordered parts + keywords to a standard code (`lexicons/standard_items.yaml`, first "
              "match wins: 'LDCT胸部（云胶片）' → CT-CHEST-LOWDOSE).", "",
              "| item | 名称 | name | modality | grading | image-QC items | header rules | index / report items | aliases |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in stds:
        iqc = ", ".join(f"{i['id'].removeprefix('IQC-').lower()} {i['points']:g}" for i in s["items"] if i["id"].startswith("IQC-"))
        hdr = ", ".join(i["id"] for i in s["items"] if i["id"].startswith("IMG-"))
        other = ", ".join(f"{i['id']} {i['points']:g}" for i in s["items"] if i["id"][:4] in ("IDX-", "RPT-"))
        lines.append(f"| {s['item']} | {s['name']['zh']} | {s['name']['en']} | {s['modality']} | {s['grading']} | "
                     f"{iqc} | {hdr} | {other} | {_md(', '.join(s['aliases']))} |")
    doc_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
