"""``radqc eval rules``: does the rule library find the generator's seeded rule-QC violations?

For every exam of a generated set, the facts a rule sees (CONTRACT §1) are built from its
HIS/RIS record line (``records/exams.jsonl``) and, when the hospital-side facts builder is
installed, from its DICOM folder (headers only: series, UIDs, header sex, body parts). The
published library is evaluated with the real engine (``evaluate_exam``). Rules name the
seeded violation they detect with ``tags: [violation:<kind>]`` in the library files; each
exam's predicted kinds (tagged rules that failed) are compared with ``rule_qc.violations``
of its truth.

Reported per kind: precision and recall (a binary classification per kind over exams);
``deterministic`` kinds (times, people, identifiers) must reach 1.000, report-text kinds
(sex, laterality, body part) report what the text analysis gets. Also counted: failures of
untagged rules on clean exams (which rules would complain about a clean exam), and rules
that raised.
"""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from radqc.datasets.evaluation.harness import EvalContext, EvalReport
from radqc.datasets.evaluation.metrics import Rate, classification
from radqc.datasets.evaluation.registry import register

#: Kinds decided by record fields alone: the library must be exact on them.
DETERMINISTIC = ("same_doctor", "report_late", "review_late", "time_order", "id_empty", "id_invalid",
                 "phone_empty", "phone_invalid")
#: Kinds read from report text.
REPORT_TEXT = ("sex_contradiction", "laterality_contradiction", "part_mismatch")
#: Needs the end of the acquisition, which the record does not carry (see docs/rule-library.md).
APPROXIMATE = ("upload_late",)
NONE = "none"


def violation_tags(library_dir: Path | None = None) -> dict[str, str]:
    """Rule id -> seeded violation kind, from ``tags: [violation:<kind>]`` in the library files."""
    from radqc.qc_rules.engine.loader import LIBRARY_DIR

    root = library_dir or LIBRARY_DIR
    out: dict[str, str] = {}
    for path in sorted(root.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for rule in doc.get("rules") or []:
            for tag in rule.get("tags") or []:
                if isinstance(tag, str) and tag.startswith("violation:"):
                    out[str(rule["id"])] = tag.split(":", 1)[1]
    return out


def _record_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return handle.read().split("\n")


def _dicom_facts(folder: Path) -> dict[str, Any] | None:
    """DICOM-derived facts of one exam folder via the hospital-side builder (None if absent)."""
    try:
        from radqc.qc_rules.hospital.facts import scan_folder, study_facts
    except ImportError:
        return None
    if not folder.is_dir():
        return None
    studies, _problems = scan_folder(folder)
    return study_facts(list(studies.values())) if studies else None


def exam_facts(record: dict[str, Any], dicom: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The engine's neutral facts, the record's fields over them, then the DICOM facts."""
    from radqc.qc_rules.engine.names import FACT_NAMES, neutral_facts

    facts = neutral_facts()
    for key, value in record.items():
        if key in FACT_NAMES:
            facts[key] = value
    if isinstance(facts.get("exam_items"), str):
        facts["exam_items"] = [facts["exam_items"]]
    for key, value in (dicom or {}).items():
        if key in FACT_NAMES and value is not None:
            facts[key] = value
    facts["now"] = now
    return facts


@register("rules", "rule QC (规则质控): the library's tagged rules against the seeded rule-QC violations",
          requires=("radqc.qc_rules.engine", "radqc.qc_rules.functions"))
def evaluate(ctx: EvalContext) -> EvalReport:
    from radqc.qc_rules.engine import evaluate_exam, load_library

    ruleset = load_library()
    tags = violation_tags()
    root = ctx.data.resolve()
    manifest = ctx.manifest
    lines = _record_lines(root / manifest["layout"]["exam_records"])
    with_images = bool(ctx.options.get("with_images", True))
    now = datetime.now(UTC).isoformat()
    report = EvalReport(stage="rules", n=0, unit="exam")

    kinds = sorted(set(tags.values()))
    truth_by_kind: dict[str, list[str]] = {k: [] for k in kinds}
    pred_by_kind: dict[str, list[str]] = {k: [] for k in kinds}
    clean_alarms: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    failures_per_rule: collections.Counter[str] = collections.Counter()
    clean = 0
    with_dicom = 0
    for truth in ctx.truths():
        line = (truth.get("records") or {}).get("exam_line")
        if not line:
            continue
        record = json.loads(lines[line - 1])
        dicom = None
        if with_images and truth.get("export_dir"):
            dicom = _dicom_facts(root / truth["export_dir"] / truth["exam_key"])
            with_dicom += dicom is not None
        result = evaluate_exam(exam_facts(record, dicom, now), ruleset)
        report.n += 1
        for err in result.errors:
            errors[str(err.get("rule_id"))] += 1
        fired: dict[str, list[str]] = collections.defaultdict(list)
        for f in result.failures:
            failures_per_rule[f.rule_id] += 1
            if f.rule_id in tags:
                fired[tags[f.rule_id]].append(f.rule_id)
        seeded = {v["rule"] for v in (truth.get("rule_qc") or {}).get("violations", [])}
        if not seeded:
            clean += 1
            for f in result.failures:
                if f.rule_id not in tags:
                    clean_alarms[f.rule_id] += 1
        for kind in kinds:
            t, p = kind in seeded, kind in fired
            truth_by_kind[kind].append(kind if t else NONE)
            pred_by_kind[kind].append(kind if p else NONE)
            if t != p:
                detail = next((v.get("detail") for v in truth["rule_qc"]["violations"] if v["rule"] == kind), None) if t else None
                report.fail(exam=truth["exam_key"], kind=kind, error="missed" if t else "false_alarm",
                            rules=fired.get(kind, []), detail=detail,
                            reasons=[f.reason for f in result.failures if tags.get(f.rule_id) == kind][:3])

    for kind in kinds:
        res = classification(f"violation:{kind}", truth_by_kind[kind], pred_by_kind[kind], labels=[kind, NONE])
        report.classifications[f"violation:{kind}"] = res
        pairs = list(zip(truth_by_kind[kind], pred_by_kind[kind], strict=True))
        tp = sum(1 for t, p in pairs if t == kind and p == kind)
        report.rates[f"precision:{kind}"] = Rate(tp, sum(1 for _, p in pairs if p == kind))
        report.rates[f"recall:{kind}"] = Rate(tp, sum(1 for t, _ in pairs if t == kind))
    report.counts.update({"exams": report.n, "clean_exams": clean, "exams_with_dicom_facts": with_dicom,
                          "rules": len(ruleset.rules), "tagged_rules": len(tags), "rule_errors": sum(errors.values())})
    for rule_id, n in clean_alarms.most_common(15):
        report.counts[f"clean_exam_failures:{rule_id}"] = n
    report.notes.append("deterministic kinds (must be 1.000): " + ", ".join(k for k in DETERMINISTIC if k in kinds))
    report.notes.append("report-text kinds (text analysis): " + ", ".join(k for k in REPORT_TEXT if k in kinds))
    report.notes.append("upload_late: the record has no acquisition end; the rule allows the modality's longest "
                        "acquisition, so a late upload of a short scan can be missed")
    if errors:
        report.notes.append("rules that raised: " + ", ".join(f"{k} x{v}" for k, v in errors.most_common(10)))
    return report
