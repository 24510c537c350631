"""Recognition and QC statistics, aggregated in SQL (``GROUP BY``) so they stay fast at 10,000+
exams: a grouping costs two or three queries whatever the number of rows.

Recognition ``by``:

* ``hospital`` — the EXAM's hospital (whose exams were refused, e.g. for quality: the feedback
  the issue asks for);
* ``doctor_hospital`` — the deciding doctor's hospital;
* ``item`` — the standard item the doctor was ordering (``recognition.ordered_item``; decisions
  recorded without one group under the empty key);
* ``reason`` — the reason code (互认 rows under the empty key);
* ``month`` — ``YYYY-MM`` of the decision (UTC).

QC ``by`` groups ``qc_result`` rows: ``hospital`` (the exam's), ``modality`` (the QC row's),
``item`` (the scoring standard, ``qc_result.standard``). Scores fall into ten bins
``[0,10), [10,20) … [90,100]``. Both honour the caller's exam scope (a hospital_admin sees
their own hospital's exams only).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal_column, select
from sqlalchemy.orm import Session, aliased

from radqc.catalogue import models as m
from radqc.serving.security.principal import Principal
from radqc.serving.security.scope import exam_scope_clause
from radqc.serving.services.exam_views import day_end, day_start

RECOGNITION_GROUPS = ("hospital", "item", "reason", "month", "doctor_hospital")
QC_GROUPS = ("hospital", "modality", "item")
BINS = list(range(0, 101, 10))
RECOGNISED = "互认"
NOT_RECOGNISED = "不互认"
#: The deciding doctor's hospital (a second join of ``hospital``).
DOCTOR_HOSPITAL = aliased(m.Hospital, name="doctor_hospital")
#: Groupings name their key column ``k`` and GROUP BY / ORDER BY that output name: a key
#: expression repeated in GROUP BY would carry fresh bound parameters, which PostgreSQL does
#: not recognise as the same expression.
K: ColumnElement[Any] = literal_column("k")


def _month(session: Session, column: Any) -> ColumnElement[Any]:
    """``YYYY-MM`` of a timestamp, per SQL dialect (stored as UTC on both)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM'"))
    return func.strftime(literal_column("'%Y-%m'"), column)


def _recognition_key(session: Session, by: str) -> tuple[Any, Any]:
    """(key, label) expressions of a recognition grouping (the label is the key where there is no name)."""
    R = m.Recognition
    if by == "hospital":
        return m.Hospital.code, m.Hospital.name
    if by == "doctor_hospital":
        return DOCTOR_HOSPITAL.code, DOCTOR_HOSPITAL.name
    if by == "item":
        return R.ordered_item, R.ordered_item
    if by == "reason":
        return R.reason_code, R.reason_code
    month = _month(session, R.created_at)
    return month, month


def recognition_stats(session: Session, principal: Principal, by: str, reasons: Sequence[dict[str, Any]],
                      date_from: date | None = None, date_to: date | None = None) -> dict[str, Any]:
    R = m.Recognition
    key, label = _recognition_key(session, by)
    where: list[ColumnElement[bool]] = [exam_scope_clause(principal)]
    if date_from:
        where.append(R.created_at >= day_start(date_from))
    if date_to:
        where.append(R.created_at < day_end(date_to))

    def base(*cols: Any) -> Any:
        return (select(*cols).select_from(R).join(m.Exam, m.Exam.id == R.exam_id)
                .outerjoin(m.Hospital, m.Hospital.id == m.Exam.hospital_id)
                .outerjoin(DOCTOR_HOSPITAL, DOCTOR_HOSPITAL.id == R.hospital_id).where(*where))

    def count_if(cond: ColumnElement[bool]) -> Any:
        return func.sum(case((cond, 1), else_=0))

    totals = session.execute(base(
        key.label("k"), func.max(label).label("l"), func.count(R.id),
        count_if(R.decision == RECOGNISED), count_if(R.decision == NOT_RECOGNISED),
        count_if((R.decision == NOT_RECOGNISED) & (R.reason_category == "quality")),
        count_if((R.decision == NOT_RECOGNISED) & (R.reason_category == "clinical")),
    ).group_by(K).order_by(K)).all()
    per_reason: dict[Any, dict[str, int]] = {}
    for k, code, n in session.execute(base(key.label("k"), R.reason_code, func.count(R.id))
                                      .where(R.reason_code.is_not(None)).group_by(K, R.reason_code)):
        per_reason.setdefault(k, {})[code] = int(n)
    names = {str(r["code"]): r for r in reasons}
    rows = []
    for k, lab, decisions, yes, no, quality, clinical in totals:
        decisions, yes, no = int(decisions), int(yes or 0), int(no or 0)
        named = by in ("hospital", "doctor_hospital")
        rows.append({"key": k if k is not None else "", "label": lab if named else _label(by, k, names),
                     "decisions": decisions, "recognised": yes, "not_recognised": no,
                     "not_recognised_quality": int(quality or 0), "not_recognised_clinical": int(clinical or 0),
                     "recognition_rate": round(yes / decisions, 4) if decisions else None,
                     "reasons": per_reason.get(k, {})})
    return {"by": by, "date_from": date_from.isoformat() if date_from else None,
            "date_to": date_to.isoformat() if date_to else None, "rows": rows}


def _label(by: str, key: Any, reasons: dict[str, dict[str, Any]]) -> str | None:
    if key in (None, ""):
        return {"reason": "互认 / recognised", "item": "未填写 / not given"}.get(by)
    if by == "reason" and key in reasons:
        return f"{reasons[key].get('zh')} / {reasons[key].get('en')}"
    if by == "item":
        from radqc import vocab

        try:
            return vocab.item(str(key)).name_zh
        except KeyError:
            return None
    return None


def qc_stats(session: Session, principal: Principal, by: str) -> dict[str, Any]:
    Q = m.QcResult
    key: Any
    if by == "hospital":
        key = m.Hospital.code
    elif by == "modality":
        key = func.coalesce(Q.modality, m.Exam.modality)
    else:
        key = Q.standard
    binned = case(*((Q.score >= lo, lo // 10) for lo in reversed(BINS[1:-1])), else_=0)

    def base(*cols: Any) -> Any:
        return (select(*cols).select_from(Q).join(m.Exam, m.Exam.id == Q.exam_id)
                .outerjoin(m.Hospital, m.Hospital.id == m.Exam.hospital_id).where(exam_scope_clause(principal)))

    label = m.Hospital.name if by == "hospital" else key
    totals = session.execute(base(key.label("k"), func.max(label), func.count(Q.id), func.avg(Q.score))
                             .group_by(K).order_by(K)).all()
    grades: dict[Any, dict[str, int]] = {}
    for k, grade, n in session.execute(base(key.label("k"), Q.grade, func.count(Q.id))
                                       .where(Q.grade.is_not(None)).group_by(K, Q.grade)):
        grades.setdefault(k, {})[str(grade)] = int(n)
    hist: dict[Any, list[int]] = {}
    for k, b, n in session.execute(base(key.label("k"), binned.label("b"), func.count(Q.id))
                                   .where(Q.score.is_not(None)).group_by(K, literal_column("b"))):
        hist.setdefault(k, [0] * (len(BINS) - 1))[int(b)] += int(n)
    rows = []
    for k, lab, n, mean in totals:
        rows.append({"key": k if k is not None else "", "label": lab if by == "hospital" else None, "exams": int(n),
                     "mean_score": round(float(mean), 2) if mean is not None else None,
                     "grades": grades.get(k, {}),
                     "histogram": {"bins": BINS, "counts": hist.get(k, [0] * (len(BINS) - 1))}})
    return {"by": by, "rows": rows}


# ------------------------------------------------------------------ CSV

RECOGNITION_COLUMNS = [
    ("key", "分组 / group"), ("label", "名称 / label"), ("decisions", "决定数 / decisions"),
    ("recognised", "互认 / recognised"), ("not_recognised", "不互认 / not recognised"),
    ("not_recognised_quality", "不互认(质量) / not recognised (quality)"),
    ("not_recognised_clinical", "不互认(临床) / not recognised (clinical)"),
    ("recognition_rate", "互认率 / recognition rate"),
]
QC_COLUMNS = [("key", "分组 / group"), ("label", "名称 / label"), ("exams", "检查数 / exams"),
              ("mean_score", "平均分 / mean score")]


def to_csv(kind: str, data: dict[str, Any], reasons: Sequence[dict[str, Any]]) -> str:
    """The statistics as CSV with bilingual headers, UTF-8 with a BOM (Excel then reads Chinese)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    rows = data["rows"]
    if kind == "recognition":
        codes = [str(r["code"]) for r in reasons]
        extra = sorted({c for row in rows for c in row["reasons"]} - set(codes))
        codes += extra
        by_code = {str(r["code"]): r for r in reasons}
        header = [h for _, h in RECOGNITION_COLUMNS] + [
            f"原因 {c} {by_code[c]['zh']} / {by_code[c]['en']}" if c in by_code else f"原因 {c} / reason {c}"
            for c in codes]
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(row[k]) for k, _ in RECOGNITION_COLUMNS] + [row["reasons"].get(c, 0) for c in codes])
    else:
        grade_keys = sorted({g for row in rows for g in row["grades"]})
        header = [h for _, h in QC_COLUMNS] + [f"等级 {g} / grade {g}" for g in grade_keys] + [
            f"分数 {lo}-{hi} / score {lo}-{hi}" for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)]
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(row[k]) for k, _ in QC_COLUMNS] + [row["grades"].get(g, 0) for g in grade_keys]
                            + list(row["histogram"]["counts"]))
    return "\ufeff" + buf.getvalue()


def _cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (CSV injection: =, +, -, @ at the start)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
