"""The hospital-side check (院端质控): ``radqc check [PATH] --records FILE``, as a library.

Runs the same published ruleset the platform runs, offline, over what a hospital is about to
upload: a folder of DICOM studies and/or its HIS/RIS records file. Each exam gets the score,
grade and deductions of the rule engine, plus check-level findings no single rule can see
(a record line the platform would quarantine, images without a record, a record without
images). The result feeds the feedback report (:mod:`.report`) and ``--json``.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from radqc.qc_rules.hospital.facts import (
    ExamInput,
    FileProblem,
    RecordEntry,
    build_facts,
    match,
    read_records,
    scan_folder,
)
from radqc.qc_rules.hospital.normalise import CST, iso_time

CHECK_FILE = Path(__file__).with_name("check.yaml")
DIMENSIONS = ("completeness", "timeliness", "consistency", "standardisation", "accuracy")
DIMENSION_ZH = {"completeness": "完整性", "timeliness": "及时性", "consistency": "一致性",
                "standardisation": "规范性", "accuracy": "准确性"}

#: facts -> an ExamResult (the engine's dataclass) or a dict of the same shape.
Evaluator = Callable[[dict[str, Any]], Any]


@lru_cache(maxsize=1)
def check_data() -> dict[str, Any]:
    return yaml.safe_load(CHECK_FILE.read_text(encoding="utf-8"))


def fix_hint(failure: dict[str, Any]) -> str:
    """How to fix a failure (the rule's own ``fix`` when it has one, else by field, then dimension)."""
    data = check_data()
    fix = failure.get("fix")
    if isinstance(fix, dict):
        return f"{fix.get('zh', '')} / {fix.get('en', '')}"
    if isinstance(fix, str) and fix:
        return fix
    for name in failure.get("fields") or []:
        hint = data["fix_by_field"].get(name)
        if hint:
            return f"{hint['zh']} / {hint['en']}"
    hint = data["fix_by_dimension"].get(failure.get("dimension"))
    return f"{hint['zh']} / {hint['en']}" if hint else ""


def is_blocking(failure: dict[str, Any]) -> bool:
    """Whether a failure fails the exam (every one except rules of severity ``info``)."""
    return failure.get("severity") != "info"


def check_finding(finding_id: str, reason_detail: str = "", fields: list[str] | None = None) -> dict[str, Any]:
    """A check-level failure in the public failure shape (``rule_id, dimension, fields, points, reason``)."""
    spec = check_data()["findings"][finding_id]
    zh, en = spec["message"]["zh"], spec["message"]["en"]
    failure = {
        "rule_id": finding_id,
        "dimension": spec["dimension"],
        "fields": list(fields if fields is not None else spec["fields"]),
        "points": float(spec["points"]),
        "reason": f"{zh} / {en}" + (f": {reason_detail}" if reason_detail else ""),
        "reason_zh": zh,
        "reason_en": en,
        "evidence": {"detail": reason_detail} if reason_detail else {},
        "blocking": True,
        "fix": spec.get("fix"),
    }
    return failure


def failure_dict(failure: Any) -> dict[str, Any]:
    """An engine Failure (dataclass) or dict -> a JSON-able dict with the public keys first."""
    data = dataclasses.asdict(failure) if dataclasses.is_dataclass(failure) and not isinstance(failure, type) else dict(failure)
    out = {
        "rule_id": data.get("rule_id"),
        "dimension": data.get("dimension"),
        "fields": list(data.get("fields") or []),
        "points": float(data.get("points") or 0.0),
        "reason": data.get("reason") or " / ".join(x for x in (data.get("reason_zh"), data.get("reason_en")) if x),
    }
    for key, value in data.items():
        out.setdefault(key, value)
    return out


def result_dict(result: Any) -> dict[str, Any]:
    data = dataclasses.asdict(result) if dataclasses.is_dataclass(result) and not isinstance(result, type) else dict(result)
    data["failures"] = [failure_dict(f) for f in data.get("failures") or []]
    return data


@dataclass
class ExamOutcome:
    """One exam's result in the feedback report."""

    key: str
    accession_number: str | None
    score: float | None
    grade: str | None
    failures: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    link: str
    source: dict[str, Any]
    standard: str | None = None
    ruleset_version: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    #: The record as it should be sent (normalised, completed from DICOM); None without a record.
    normalised_record: dict[str, Any] | None = None
    #: Rules that raised while evaluating (the engine's ``errors``): not deductions, but shown.
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No failure but notes: a rule of severity ``info`` informs, it does not fail an exam."""
        return not any(is_blocking(f) for f in self.failures)

    def to_dict(self, with_facts: bool = False) -> dict[str, Any]:
        out = {
            "accession_number": self.accession_number,
            "score": self.score,
            "grade": self.grade,
            "passed": self.passed,
            "failures": self.failures,
            "changes": self.changes,
            "key": self.key,
            "link": self.link,
            "source": self.source,
            "standard": self.standard,
            "ruleset_version": self.ruleset_version,
            "errors": self.errors,
        }
        if with_facts:
            out["facts"] = self.facts
        return out


@dataclass
class CheckResult:
    """Everything ``radqc check`` found: per exam, plus files and lines that were not usable."""

    exams: list[ExamOutcome]
    file_problems: list[FileProblem]
    checked_at: str
    path: str | None
    records: str | None
    ruleset_version: str | None = None
    charge_lines_skipped: int = 0

    @property
    def failed(self) -> list[ExamOutcome]:
        return [e for e in self.exams if not e.passed]

    def summary(self) -> dict[str, Any]:
        by_dimension: Counter[str] = Counter()
        by_rule: Counter[str] = Counter()
        for exam in self.exams:
            for f in exam.failures:
                by_dimension[f["dimension"]] += 1
                by_rule[f["rule_id"]] += 1
        return {
            "exams": len(self.exams),
            "passed": len(self.exams) - len(self.failed),
            "failed": len(self.failed),
            "failures": sum(by_rule.values()),
            "changes": sum(len(e.changes) for e in self.exams),
            "files_not_read": len(self.file_problems),
            "charge_lines_skipped": self.charge_lines_skipped,
            "by_dimension": {d: by_dimension.get(d, 0) for d in DIMENSIONS if by_dimension.get(d)},
            "by_rule": dict(by_rule.most_common()),
            "ruleset_version": self.ruleset_version,
            "checked_at": self.checked_at,
            "path": self.path,
            "records": self.records,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "exams": [e.to_dict() for e in self.exams],
            "files_not_read": [
                {"path": p.path, "code": p.code, "reason": p.reason()} for p in self.file_problems
            ],
        }


def _source(exam: ExamInput) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if exam.record is not None:
        out["record"] = exam.record.source_ref
        if exam.record.resends:
            out["resends"] = list(exam.record.resends)
    if exam.studies:
        out["study_instance_uids"] = [s.uid for s in exam.studies]
        folders = sorted({f for s in exam.studies for f in s.folders})
        out["folder"] = os.path.commonpath(folders) if folders else None
    return out


def _record_findings(entry: RecordEntry) -> list[dict[str, Any]]:
    out = []
    for problem in entry.problems:
        finding = "CHK-REC-UNREADABLE" if entry.unreadable else "CHK-REC-INVALID"
        out.append(check_finding(finding, problem.message, problem.fields or None))
    return out


def run_check(
    path: Path | None,
    records: Path | list[Path] | None,
    evaluator: Evaluator,
    now: datetime | None = None,
    ruleset_version: str | None = None,
    records_format: str = "auto",
) -> CheckResult:
    """Check a hospital folder and/or records file; ``evaluator`` scores one exam's facts.

    Raise :class:`~radqc.pipelines.ingest.records.RecordsFileError` (or FileNotFoundError)
    when an input as a whole is unusable: the CLI turns that into exit status 2.
    """
    now = now or datetime.now(CST)
    studies: dict[str, Any] = {}
    problems: list[FileProblem] = []
    if path is not None:
        if not path.exists():
            raise FileNotFoundError(f"路径不存在 / no such file or folder: {path}")
        studies, problems = scan_folder(path)
    entries: list[RecordEntry] = []
    charges = 0
    files = [records] if isinstance(records, Path) else list(records or [])
    for file in files:  # several files (orders, then reports) are read in order, like re-sends
        more, skipped = read_records(file, records_format)
        entries += more
        charges += skipped
    outcomes: list[ExamOutcome] = []
    for exam in match(entries, studies):
        source = _source(exam)
        if exam.record is not None and exam.record.unreadable:
            outcomes.append(ExamOutcome(exam.key, None, None, None, _record_findings(exam.record), [], exam.link, source))
            continue
        facts = build_facts(exam, now)
        try:
            result = result_dict(evaluator(facts))
        except Exception as exc:  # one exam the engine cannot score must not stop the batch
            result = {"score": None, "grade": None, "standard": None, "ruleset_version": ruleset_version,
                      "failures": [check_finding("CHK-EVAL-ERROR", f"{type(exc).__name__}: {exc}"[:300])]}
        failures = list(result.get("failures") or [])
        if exam.record is not None:
            failures = _record_findings(exam.record) + failures
        uids = {st.uid for st in exam.studies}
        for problem in problems:
            if problem.study_uid is not None and problem.study_uid in uids:
                failures.append(check_finding("CHK-FILE-REJECTED", f"{problem.path}: {problem.reason()}"))
        if exam.record is None:
            failures.insert(0, check_finding("CHK-NO-RECORD"))
        elif path is not None and not exam.studies:
            failures.insert(0, check_finding("CHK-NO-IMAGES"))
        for f in failures:
            f["fix_hint"] = f.get("fix_hint") or fix_hint(f)
        outcomes.append(
            ExamOutcome(
                key=exam.key,
                accession_number=facts.get("accession_number"),
                score=result.get("score"),
                grade=result.get("grade"),
                failures=failures,
                changes=[c.to_dict() for c in exam.changes],
                link=exam.link,
                source=source,
                standard=result.get("standard"),
                ruleset_version=result.get("ruleset_version") or ruleset_version,
                facts=facts,
                normalised_record=exam.normalised_record,
                errors=list(result.get("errors") or []),
            )
        )
    version = ruleset_version or next((o.ruleset_version for o in outcomes if o.ruleset_version), None)
    return CheckResult(outcomes, problems, iso_time(now), str(path) if path else None,
                       ", ".join(str(f) for f in files) or None, version, charges)
