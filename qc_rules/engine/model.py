"""Rules, scoring standards, failures and exam results (CONTRACT §2, §4, §5).

Plain dataclasses: the loader validates the raw documents field by field (so an error can
name the line), and these objects are immutable once built. ``to_dict`` gives the
canonical JSON form used by the store, exports and diff summaries.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from radqc.qc_rules.engine.expr import Compiled

DIMENSIONS = ("completeness", "timeliness", "consistency", "standardisation", "accuracy")
DIMENSION_ZH = {"completeness": "完整性", "timeliness": "及时性", "consistency": "一致性",
                "standardisation": "规范性", "accuracy": "准确性"}
SEVERITIES = ("critical", "major", "minor", "info")
LIBRARIES = ("index", "image", "report")
GRADINGS = ("ct_mr", "radiograph")
STANDARD_ITEM_TYPES = ("image", "report", "index")

#: Grade thresholds when an exam has no item standard (data, not code): score >= threshold.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "ct_mr": {"3": 90, "2": 75, "1": 60, "0": 0},
    "radiograph": {"甲": 90, "乙": 75, "丙": 60, "丁": 0},
}
#: Which grading a modality uses by default (anything else: ct_mr).
DEFAULT_GRADING_BY_MODALITY: dict[str, str] = {
    "CT": "ct_mr", "MR": "ct_mr", "DX": "radiograph", "DR": "radiograph", "CR": "radiograph",
    "MG": "radiograph", "RF": "radiograph",
}
DEFAULT_TOTAL = 100.0

#: Modalities treated as one for ``applies_to`` (HIS says DR, the header says DX).
MODALITY_EQUIVALENTS: tuple[frozenset[str], ...] = (frozenset({"DX", "DR"}),)

PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Rule:
    id: str
    name_zh: str
    name_en: str
    library: str
    dimension: str
    severity: str
    points: float
    expr: str
    message_zh: str
    message_en: str
    modalities: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    when: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    examples_pass: tuple[dict[str, Any], ...] = ()
    examples_fail: tuple[dict[str, Any], ...] = ()
    enabled: bool = True
    description: str | None = None
    line: int | None = None
    compiled: Compiled | None = field(default=None, compare=False, repr=False)
    compiled_when: Compiled | None = field(default=None, compare=False, repr=False)
    #: Named expressions evaluated only when the rule fails, added to the failure's evidence
    #: (e.g. the report-text spans a report rule objects to).
    evidence: dict[str, str] = field(default_factory=dict)
    compiled_evidence: dict[str, Compiled] = field(default_factory=dict, compare=False, repr=False)

    def modality_set(self) -> frozenset[str]:
        out = set(self.modalities)
        for group in MODALITY_EQUIVALENTS:
            if out & group:
                out |= group
        return frozenset(out)

    def to_dict(self) -> dict[str, Any]:
        """The rule as it is written in a library file (round-trips through the loader)."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": {"zh": self.name_zh, "en": self.name_en},
            "dimension": self.dimension,
            "applies_to": {"modalities": list(self.modalities), "items": list(self.items)},
            "severity": self.severity,
            "points": self.points,
            "fields": list(self.fields),
        }
        if self.when is not None:
            data["when"] = self.when
        data["expr"] = self.expr
        data["message"] = {"zh": self.message_zh, "en": self.message_en}
        if self.evidence:
            data["evidence"] = dict(self.evidence)
        if self.params:
            data["params"] = dict(self.params)
        data["examples"] = {"pass": [dict(e) for e in self.examples_pass], "fail": [dict(e) for e in self.examples_fail]}
        if not self.enabled:
            data["enabled"] = False
        if self.description:
            data["description"] = self.description
        return data


@dataclass(frozen=True)
class StandardItem:
    id: str
    type: str
    category: str
    points: float


@dataclass(frozen=True)
class Standard:
    item: str
    name_zh: str
    name_en: str
    modality: str | None
    grading: str
    total: float
    thresholds: dict[str, float]
    items: tuple[StandardItem, ...] = ()
    aliases: tuple[str, ...] = ()
    line: int | None = None

    def points_for(self, check_id: str) -> float | None:
        for it in self.items:
            if it.id == check_id:
                return it.points
        return None

    def grade(self, score: float) -> str:
        return grade_for(score, self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "item": self.item, "name": {"zh": self.name_zh, "en": self.name_en}, "modality": self.modality,
            "grading": self.grading, "total": self.total, "thresholds": dict(self.thresholds),
            "items": [asdict(i) for i in self.items],
        }
        if self.aliases:
            data["aliases"] = list(self.aliases)
        return data


def grade_for(score: float, thresholds: dict[str, float]) -> str:
    """The best grade whose threshold the score reaches (thresholds sorted high to low)."""
    ordered = sorted(thresholds.items(), key=lambda kv: -kv[1])
    for grade, floor in ordered:
        if score >= floor:
            return grade
    return ordered[-1][0] if ordered else ""


def default_standard(modality: str | None) -> Standard:
    grading = DEFAULT_GRADING_BY_MODALITY.get((modality or "").upper(), "ct_mr")
    return Standard(item="general", name_zh="通用标准", name_en="general standard", modality=modality,
                    grading=grading, total=DEFAULT_TOTAL, thresholds=dict(DEFAULT_THRESHOLDS[grading]))


@dataclass
class Failure:
    """One deduction (CONTRACT §5). ``severity``/``scope`` are additive fields."""

    rule_id: str
    dimension: str
    fields: list[str]
    points: float
    reason: str
    reason_zh: str
    reason_en: str
    evidence: dict[str, Any]
    severity: str = "major"
    scope: str = "standard"  # "standard" (listed in the exam's item standard) | "general"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExamResult:
    """The score of one exam (CONTRACT §5). ``errors``/``skipped``/``total``/``grading`` are additive."""

    accession_number: str | None
    score: float
    grade: str
    failures: list[Failure]
    ruleset_version: str
    standard: str | None
    total: float = DEFAULT_TOTAL
    grading: str = "ct_mr"
    errors: list[dict[str, Any]] = field(default_factory=list)  # rules that raised: not deductions
    skipped: list[dict[str, Any]] = field(default_factory=list)  # rules not evaluable here (e.g. identifiers)
    evaluated: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [f.to_dict() for f in self.failures]
        return data


@dataclass
class Ruleset:
    """A loaded, validated set of rules and standards, identified by ``version``."""

    rules: dict[str, Rule]
    standards: dict[str, Standard]
    version: str = "unversioned"
    libraries: dict[str, dict[str, Any]] = field(default_factory=dict)  # library name -> file header
    #: the functions the expressions were compiled against (batch evaluation re-plans with them)
    functions: Any = field(default=None, repr=False, compare=False)

    def enabled_rules(self) -> list[Rule]:
        return [r for r in self.rules.values() if r.enabled]

    def standard_for(self, exam_items: list[str] | None, item_codes: list[str] | None = None) -> Standard | None:
        """The item standard for an exam: by standard code, then by its Chinese/English name or aliases."""
        wanted = [str(x).strip() for x in list(item_codes or []) + list(exam_items or []) if x]
        if not wanted:
            return None
        for w in wanted:
            if w in self.standards:
                return self.standards[w]
        index = self._name_index()
        for w in wanted:
            hit = index.get(w) or index.get(w.replace(" ", "").upper())
            if hit is not None:
                return hit
        return None

    def _name_index(self) -> dict[str, Standard]:
        cached = self.__dict__.get("_names")
        if cached is None:
            cached = {}
            for std in self.standards.values():
                for key in (std.name_zh, std.name_en, *std.aliases):
                    if key:
                        cached.setdefault(key, std)
                        cached.setdefault(key.replace(" ", "").upper(), std)
            self.__dict__["_names"] = cached
        return cached

    def documents(self) -> dict[str, Any]:
        """The canonical JSON form: what the store keeps per version and what export writes."""
        libs: dict[str, list[dict[str, Any]]] = {}
        for rule in self.rules.values():
            libs.setdefault(rule.library, []).append(rule.to_dict())
        return {
            "libraries": [
                {"library": name, "version": self.libraries.get(name, {}).get("version", 1), "rules": rules}
                for name, rules in sorted(libs.items())
            ],
            "standards": [s.to_dict() for s in sorted(self.standards.values(), key=lambda s: s.item)],
        }

    def content_hash(self) -> str:
        text = json.dumps(self.documents(), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()
