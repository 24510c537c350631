"""Seeded rule-QC violations (规则质控): which ones fit an exam, and the times and people.

Each violation id is a key of ``data/violations.yaml``. The planner draws them first and
then builds the record so that the violation is really there and nothing else is wrong:
a clean exam has a valid ID and phone, two different doctors, ordered timestamps,
exam-to-review within 2 hours and a timely upload.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from radqc.datasets.synthetic.clinical._data import load
from radqc.datasets.synthetic.clinical.hospitals import Hospital

#: Minutes an acquisition takes, per modality (uniform range): the device is busy for it.
DURATION_MIN = {"CT": (4, 15), "MR": (15, 40), "DX": (2, 6), "CR": (2, 6)}
#: Rule thresholds the clean exams respect (qc-items.md): exam-to-report and exam-to-review
#: at most 2 h; upload within 1 min (emergency) or 5 min (routine).
REVIEW_LIMIT = timedelta(hours=2)
UPLOAD_LIMIT = {"emergency": timedelta(minutes=1), "routine": timedelta(minutes=5)}


def violation_info(vid: str) -> dict[str, Any]:
    return load("violations")[vid]


def violation_ids() -> list[str]:
    return list(load("violations"))


def applicable(has_sex_part: bool, has_lateral: bool) -> list[str]:
    out = []
    for vid, info in load("violations").items():
        if info.get("needs") == "sex_part" and not has_sex_part:
            continue
        if info.get("needs") == "lateral" and not has_lateral:
            continue
        out.append(vid)
    return out


def draw(rng: random.Random, options: list[str], k: int) -> list[str]:
    """``k`` violations from ``options``, at most one per group."""
    table = load("violations")
    chosen: list[str] = []
    groups: set[str] = set()
    pool = list(options)
    while pool and len(chosen) < k:
        vid = rng.choices(pool, weights=[table[v]["weight"] for v in pool], k=1)[0]
        chosen.append(vid)
        groups.add(table[vid]["group"])
        pool = [v for v in pool if table[v]["group"] not in groups]
    return chosen


@dataclass
class Timeline:
    order_time: datetime
    exam_time: datetime
    exam_end: datetime
    report_time: datetime
    review_time: datetime
    upload_time: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, str]:
        """The record's times; ``exam_end_time`` (检查结束时间) is an optional field hospitals send."""
        out = {k: getattr(self, k).replace(microsecond=0).isoformat()
               for k in ("order_time", "exam_time", "report_time", "review_time", "upload_time")}
        out["exam_end_time"] = self.exam_end.replace(microsecond=0).isoformat()
        return out


def timeline(rng: random.Random, modality: str, urgency: str, exam_time: datetime, violations: list[str],
             duration_min: float | None = None) -> Timeline:
    """Times of one exam; clean unless a timing violation is in ``violations``."""
    lo, hi = DURATION_MIN.get(modality, (5, 15))
    duration = timedelta(minutes=duration_min if duration_min is not None else rng.uniform(lo, hi))
    exam_end = exam_time + duration
    if urgency == "emergency":
        order = exam_time - timedelta(minutes=rng.uniform(5, 30))
        report = exam_end + timedelta(minutes=rng.uniform(5, 25))
        upload = exam_end + timedelta(seconds=rng.uniform(5, 50))
    else:
        order = exam_time - timedelta(minutes=rng.uniform(10, 3 * 24 * 60))
        report = exam_end + timedelta(minutes=rng.uniform(8, 60))
        upload = exam_end + timedelta(seconds=rng.uniform(20, 270))
    # Review 2–30 min after the report, but never past the 2 h limit for a clean exam.
    review = min(report + timedelta(minutes=rng.uniform(2, 30)), exam_time + REVIEW_LIMIT - timedelta(minutes=rng.uniform(1, 5)))
    review = max(review, report + timedelta(minutes=1))
    details: dict[str, Any] = {}
    if "report_late" in violations:
        report = exam_time + timedelta(hours=rng.uniform(2.3, 20))
        review = report + timedelta(minutes=rng.uniform(2, 40))
        details["report_late"] = {"hours": round((report - exam_time).total_seconds() / 3600, 2)}
    if "review_late" in violations:
        review = exam_time + timedelta(hours=rng.uniform(2.3, 30))
        report = min(report, review - timedelta(minutes=5))
        details["review_late"] = {"hours": round((review - exam_time).total_seconds() / 3600, 2)}
    if "time_order" in violations:
        variant = rng.choice(("report_before_exam", "review_before_report", "exam_before_order"))
        if variant == "report_before_exam":
            report = exam_time - timedelta(minutes=rng.uniform(5, 60))
            review = report + timedelta(minutes=rng.uniform(2, 20))
        elif variant == "review_before_report":
            review = report - timedelta(minutes=rng.uniform(2, 30))
        else:
            order = exam_time + timedelta(minutes=rng.uniform(10, 120))
        details["time_order"] = {"variant": variant}
    if "upload_late" in violations:
        upload = exam_end + (timedelta(minutes=rng.uniform(2, 30)) if urgency == "emergency"
                             else timedelta(minutes=rng.uniform(10, 48 * 60)))
        details["upload_late"] = {"minutes": round((upload - exam_end).total_seconds() / 60, 1)}
    return Timeline(order, exam_time, exam_end, report, review, upload, details)


def doctors(rng: random.Random, hospital: Hospital, same: bool) -> tuple[str, str]:
    report_doctor, review_doctor = rng.sample(list(hospital.doctors), 2)
    return (report_doctor, report_doctor) if same else (report_doctor, review_doctor)


def labelled(vid: str, **detail: Any) -> dict[str, Any]:
    info = violation_info(vid)
    return {"rule": vid, "dimension": info["dimension"], "name_zh": info["name_zh"], "name_en": info["name_en"],
            "detail": detail}
