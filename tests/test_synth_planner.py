"""The planner's labels are true by construction: identities, orders, reports, charges,
violations and image-QC expectations agree with what is written."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest

from radqc.datasets.synthetic.clinical import identities as ids
from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.clinical.imaging_qc import expected_result, grade_for
from radqc.datasets.synthetic.clinical.items import OrderedItem, item, write_order
from radqc.datasets.synthetic.clinical.planner import plan_set
from radqc.datasets.synthetic.clinical.reports import (
    LAYOUTS,
    ReportOptions,
    ReportPart,
    part_terms,
    write_report,
)
from radqc.datasets.synthetic.spec import QC_DIMENSIONS, Defect


@pytest.fixture(scope="module")
def plans():
    return plan_set(20260101, 400, "mixed")


@pytest.fixture(scope="module")
def audit_plans():
    return plan_set(7, 300, "audit")


# -- identities -------------------------------------------------------------------------
def test_gb11643_reference_example_is_valid() -> None:
    # The worked example of GB 11643-1999.
    assert ids.id_number_is_valid("11010519491231002X")
    assert not ids.id_number_is_valid("110105194912310021")
    assert ids.id_check_char("11010519491231002") == "X"


@pytest.mark.parametrize("status", ids.ID_STATUSES)
def test_id_checksum_validity_matches_label(status: str) -> None:
    rng = random.Random(status)
    for _ in range(300):
        person = ids.draw_identity(rng, "330102", date(2026, 2, 1), id_status=status)
        assert ids.id_number_is_valid(person.id_number) == (status == "valid"), person.id_number
        if status == "valid":
            assert person.id_number[6:14] == f"{person.birth_date:%Y%m%d}"
            assert (int(person.id_number[16]) % 2 == 1) == (person.sex == "M")


@pytest.mark.parametrize("status", ids.PHONE_STATUSES)
def test_phone_validity_matches_label(status: str) -> None:
    rng = random.Random(status)
    for _ in range(200):
        phone = ids.make_phone(rng, status)
        assert ids.phone_is_valid(phone) == (status == "valid"), phone


def test_planned_identities_agree_with_records(plans) -> None:
    for p in plans:
        rec = p.exam_record
        assert rec["patient_sex"] == p.identity.sex == p.spec.sex
        assert rec["patient_birth_date"] == p.identity.birth_date.isoformat()
        assert ids.id_number_is_valid(rec["id_number"]) == (p.identity.id_status == "valid")
        labelled = {v["rule"] for v in p.violations}
        assert (p.identity.id_status == "empty") == ("id_empty" in labelled)
        assert (p.identity.id_status not in ("valid", "empty")) == ("id_invalid" in labelled)
        assert (not ids.phone_is_valid(rec["phone"])) == bool(labelled & {"phone_empty", "phone_invalid"})


# -- orders -------------------------------------------------------------------------------
def test_combined_orders_truth_lists_every_part(plans) -> None:
    aliases = load("items")["part_aliases"]
    combined = 0
    for p in plans:
        truth = p.order.truth()
        assert len(truth) == len(p.order.exam_items)
        listed = [si["part"] for t in truth for si in t["standard_items"]]
        ordered_parts = [oi.item.part for oi in p.order.items]
        assert sorted(listed) == sorted(ordered_parts)
        for oi in p.imaged:
            assert oi.item.part in listed
        for t in truth:
            assert t["standard_items"], t
            if t["style"] == "distributed":
                for si in t["standard_items"]:
                    assert any(a in t["text"] or a in t["text"].replace("＋", "+") for a in aliases[si["part"]]), t
        combined += len(ordered_parts) > 1
    assert combined >= 20


def test_distributed_name_shares_modality_and_method() -> None:
    rng = random.Random(3)
    items = [OrderedItem(item("CT.CHEST.ENH")), OrderedItem(item("CT.UABD.ENH"))]
    order = write_order(rng, items, force_style="distributed")
    assert order.style == "distributed" and len(order.exam_items) == 1
    assert order.item_index == [[0, 1]]
    assert "增强" in order.exam_items[0] or "ＣＴ" in order.exam_items[0]


def test_lateral_items_carry_their_side(plans) -> None:
    for p in plans:
        for oi in p.imaged:
            assert (oi.side is not None) == oi.item.lateral
            if oi.side:
                assert p.spec.header.get("Laterality") in ("L", "R")


# -- reports -------------------------------------------------------------------------------
def _check_spans(text: str, spans: list[dict]) -> None:
    assert "".join(s["text"] for s in spans) == text
    pos = 0
    for s in spans:
        assert s["start"] == pos and s["end"] == pos + len(s["text"]) and text[s["start"]:s["end"]] == s["text"]
        pos = s["end"]
        if s["kind"] in ("separator", "section_header"):
            assert not s["parts"]
        else:
            assert s["parts"], s
        # comparison prefixes (对比…旧片：) and carry sentences (其内…) refer to what follows/precedes
        if s["kind"] in ("statement", "part_header", "report_title") and len(s["parts"]) == 1:
            terms = part_terms(s["parts"][0])
            assert any(t in s["text"] for t in terms), s
    assert pos == len(text)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_report_spans_rebuild_the_text_and_name_their_parts(layout: str) -> None:
    rng = random.Random(layout)
    combos = [
        [("颅脑", "CT", "头颅CT平扫", None), ("胸部", "CT", "胸部CT平扫", None)],
        [("胸部", "CT", "胸部CT平扫+增强", None), ("上腹部", "CT", "上腹部CT平扫+增强", None), ("盆腔", "CT", "盆腔CT平扫", None)],
        [("胸椎", "CT", "胸椎CT平扫", None), ("腰椎", "CT", "腰椎CT平扫", None)],
        [("颅脑", "MR", "颅脑MR平扫", None), ("膝关节", "MR", "左膝关节MR平扫", "L")],
        [("胸部", "DX", "胸部正位", None), ("腰椎", "DX", "腰椎正侧位", None), ("骨盆", "DX", "骨盆正位", None)],
    ]
    for _ in range(40):
        for combo in combos:
            parts = [ReportPart(*c) for c in combo]
            opts = ReportOptions(layout=layout, sex=rng.choice("MF"), exam_date=date(2026, 3, 1),
                                 findings_header=rng.random() < 0.7, impression_header=rng.random() < 0.7,
                                 abnormal_rate=0.6)
            report = write_report(rng, parts, opts)
            _check_spans(report.findings, report.findings_spans)
            _check_spans(report.impression, report.impression_spans)
            described = {p for s in report.findings_spans for p in s["parts"]}
            assert described == {c[0] for c in combo}


def test_planned_reports_rebuild_their_record_fields(plans) -> None:
    layouts = set()
    for p in plans:
        _check_spans(p.exam_record["findings"], p.report.findings_spans)
        _check_spans(p.exam_record["impression"], p.report.impression_spans)
        layouts.add(p.report.layout)
    assert {"single", "A", "B", "C", "D", "E", "F"} <= layouts


def test_report_parts_follow_sex_and_side() -> None:
    rng = random.Random(11)
    for _ in range(100):
        male = write_report(rng, [ReportPart("盆腔", "CT", "盆腔CT平扫")], ReportOptions(sex="M"))
        assert "子宫" not in male.findings and "附件" not in male.findings + male.impression
        female = write_report(rng, [ReportPart("盆腔", "CT", "盆腔CT平扫")], ReportOptions(sex="F"))
        assert "前列腺" not in female.findings + female.impression
        knee = write_report(rng, [ReportPart("膝关节", "MR", "右膝关节MR平扫", "R")], ReportOptions(sex="F"))
        assert "左" not in knee.findings and "右膝" in knee.findings


def test_comparison_phrases_name_an_earlier_date() -> None:
    rng = random.Random(5)
    seen = 0
    for _ in range(300):
        r = write_report(rng, [ReportPart("胸部", "CT", "胸部CT平扫")], ReportOptions(exam_date=date(2026, 3, 1), abnormal_rate=1.0))
        for s in r.findings_spans:
            if s["kind"] == "comparison":
                seen += 1
                assert date.fromisoformat(s["prior_date"]) < date(2026, 3, 1)
                assert s["prior_date"] in s["text"]
    assert seen > 10


# -- violations ----------------------------------------------------------------------------
def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_violation_labels_are_true_and_clean_exams_are_clean(plans) -> None:
    seen = set()
    for p in plans:
        rec = p.exam_record
        rules = {v["rule"]: v for v in p.violations}
        seen |= set(rules)
        order, exam, report, review, upload = (_t(rec[k]) for k in ("order_time", "exam_time", "report_time", "review_time", "upload_time"))
        ordered = order <= exam <= report <= review
        assert ordered != ("time_order" in rules), (p.exam_key, rules)
        assert (review - exam > timedelta(hours=2)) == bool({"review_late", "report_late"} & set(rules)) or "time_order" in rules
        assert (rec["report_doctor"] == rec["review_doctor"]) == ("same_doctor" in rules)
        limit = timedelta(minutes=1 if p.urgency == "emergency" else 5)
        assert (upload - p.timeline.exam_end.replace(microsecond=0) > limit) == ("upload_late" in rules)
        assert rec["exam_time"].endswith("+08:00")
        if "sex_contradiction" in rules:
            wrong = load("reports")["sex_contradiction"][rules["sex_contradiction"]["detail"]["part"]][p.identity.sex]
            assert any(w in rec["findings"] for w in wrong)
        if "part_mismatch" in rules:
            d = rules["part_mismatch"]["detail"]
            assert d["reported_part"] in p.report.parts and d["imaged_part"] not in p.report.parts
        else:
            assert set(p.report.parts) == {oi.item.part for oi in p.imaged}
        if "laterality_contradiction" in rules:
            d = rules["laterality_contradiction"]["detail"]
            sides = d["sides"]
            if d["between"] == ["findings", "impression"]:
                assert sides["findings"] != sides["impression"]
            else:
                ordered_side = {"L": "左", "R": "右"}[d["ordered"]]
                assert sides["findings"] != ordered_side
                assert ordered_side + "膝" not in rec["findings"]
    assert len(seen) >= 10, seen


def test_no_unseeded_device_time_overlap(plans) -> None:
    by_device: dict[str, list] = {}
    for p in plans:
        by_device.setdefault(p.device.serial, []).append(p)
    overlaps = set()
    for exams in by_device.values():
        exams.sort(key=lambda p: p.timeline.exam_time)
        for a, b in zip(exams, exams[1:], strict=False):
            if b.timeline.exam_time < a.timeline.exam_end:
                overlaps.add(b.exam_key if b.index > a.index else a.exam_key)
    f3 = {p.exam_key for p in plans if p.planned_irregularity == "F3"}
    assert overlaps <= f3 | {p.exam_key for p in plans if any(r["id"] == "F3" for r in p.related)}


# -- charges -------------------------------------------------------------------------------
def test_charge_irregularities_have_their_evidence_in_the_spec(audit_plans) -> None:
    by_key = {p.exam_key: p for p in audit_plans}
    seen = set()
    for p in audit_plans:
        ev = p.spec.evidence
        roles = [r.role for r in p.spec.series]
        for irr in p.irregularities:
            fid = irr["id"]
            seen.add(fid)
            assert irr["lines"] and all(p.billing.lines[i].irregularity == fid for i in irr["lines"])
            if fid == "F1":
                src = by_key[irr["detail"]["partner_exam"]]
                assert ev["reuse_pixels_from"] == src.exam_key
                assert p.spec.regions == src.spec.regions and p.spec.modality == src.spec.modality
                assert p.identity.id_number != src.identity.id_number
            elif fid == "F3":
                src = by_key[irr["detail"]["partner_exam"]]
                assert ev["device_overlap_with"] == src.exam_key
                assert p.spec.header["DeviceSerialNumber"] == src.spec.header["DeviceSerialNumber"]
                assert src.timeline.exam_time < p.timeline.exam_end and p.timeline.exam_time < src.timeline.exam_end
            elif fid == "F4":
                charged = p.billing.lines[irr["lines"][0]].key
                assert charged.split("_")[0] != {"CT": "ct", "MR": "mr", "DX": "xray"}[p.modality]
            elif fid == "F5":
                assert p.spec.phases == ["native"] and ev["contrast"] is False
                assert "ContrastBolusAgent" not in p.spec.header
                assert not any(r == "T1W_POST" for r in roles)
            elif fid == "F7":
                assert irr["detail"]["billed_part"] not in {oi.item.part for oi in p.imaged}
            elif fid == "F10":
                assert ev["derived_series"] is False and not any(r.startswith(("mpr", "mip", "vr")) for r in roles)
            elif fid == "F11":
                assert ev["thin_series"] is False
                assert all(float(r.params.get("thickness_mm", 5)) >= 2 for r in p.spec.series)
            elif fid == "F12":
                assert ev["spectral"] is False
            elif fid == "F13":
                assert ev["ecg_gating"] is False
            elif fid == "F17":
                line = p.billing.lines[irr["lines"][0]]
                if irr["variant"] == "extra_views":
                    assert line.quantity > len(ev["views"])
                else:
                    assert ev["mobile_device"] is False
    assert {"F1", "F3", "F4", "F5", "F7", "F9", "F10", "F11", "F12", "F13", "F17"} <= seen, seen


def test_clean_exams_bill_only_what_the_images_show(plans) -> None:
    for p in plans:
        if p.irregularities:
            continue
        ev = p.spec.evidence
        assert all(ln.irregularity is None for ln in p.billing.lines)
        keys = [ln.key for ln in p.billing.lines]
        assert "cloud_film" not in keys
        if "thin_slice" in keys:
            assert ev["thin_series"]
        if "spectral" in keys:
            assert ev["spectral"]
        if "reconstruction_3d" in keys:
            assert p.hospital.catalogue == "legacy-2012" and ev["derived_series"]
        if {"calcium_score", "ecg_gating"} & set(keys):
            assert ev["ecg_gating"]
        if "bedside" in keys:
            assert ev["mobile_device"]
        for ln in p.billing.lines:
            assert ln.catalogue == p.hospital.catalogue
            if ln.catalogue == "legacy-2012":
                assert len(ln.charge_code) == 15 and ln.charge_code.startswith("00")
        main = [ln for ln in p.billing.lines if ln.key in ("ct_plain", "ct_enhanced", "mr_plain", "mr_enhanced", "xray")]
        assert len(main) == len(p.imaged)


def test_charge_records_have_the_schema_fields(plans) -> None:
    fields = {"accession_number", "charge_code", "charge_name", "quantity", "unit_price", "amount", "charge_time",
              "catalogue", "province"}
    for p in plans:
        for rec in p.charge_records:
            assert fields <= set(rec)
            assert rec["amount"] == round(rec["quantity"] * rec["unit_price"], 2)
            assert rec["charge_time"].endswith("+08:00")


# -- image QC --------------------------------------------------------------------------------
def test_defects_use_the_public_vocabulary(plans) -> None:
    n = 0
    for p in plans:
        for d in p.spec.defects:
            assert d.value in QC_DIMENSIONS[d.dimension]
            n += 1
    assert n > 50


def test_expected_result_hand_computed() -> None:
    clean = expected_result("DX", [])
    assert clean["score"] == 100 and clean["grade"] == "甲" and clean["deductions"] == []
    assert clean["dimensions"]["positioning"] == "标准"
    r = expected_result("DX", [Defect("positioning", "不标准", {"kind": "rotation", "degrees": 9}),
                               Defect("artifact", "异物", {"kind": "foreign_object", "object": "necklace"})])
    assert r["score"] == 80 and r["grade"] == "乙"
    assert r["dimensions"]["positioning"] == "不标准" and r["dimensions"]["artifact"] == "异物"
    assert "9" in r["deductions"][0]["reason_zh"] and "necklace" in r["deductions"][1]["reason_en"]
    ct = expected_result("CT", [Defect("artifact", "异物", {}), Defect("artifact", "运动", {"kind": "motion"}),
                                Defect("noise", "excess", {"factor": 2.5})])
    assert ct["dimensions"]["artifact"] == "运动"  # the strictest value wins
    assert ct["score"] == 100 - 10 - 20 - 10 and ct["grade"] == 1
    mr = expected_result("MR", [Defect("sequences", "missing", {"sequence": "FLAIR"})])
    assert mr["dimensions"]["sequences"] == "missing" and "FLAIR" in mr["deductions"][0]["reason_zh"]
    assert grade_for("DX", 59) == "丁" and grade_for("CT", 90) == 3 and grade_for("CT", 0) == 0


# -- determinism ------------------------------------------------------------------------------
def test_planning_is_deterministic_and_prefix_stable() -> None:
    a = plan_set(99, 60, "mixed")
    b = plan_set(99, 60, "mixed")
    c = plan_set(99, 30, "mixed")
    assert [p.exam_record for p in a] == [p.exam_record for p in b]
    assert [p.spec.to_dict() for p in a] == [p.spec.to_dict() for p in b]
    assert [p.charge_records for p in a[:30]] == [p.charge_records for p in c]
    assert [p.exam_record for p in plan_set(100, 10)] != [p.exam_record for p in a[:10]]


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        plan_set(1, 2, "nope")
