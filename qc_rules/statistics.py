"""Statistics over stored rule-QC results (质控统计): who and what fails, and how often.

The platform's ``rule_qc`` stage stores one ExamResult per exam in the ledger (stage
``rule_qc``, its JSON as the row's result). Department heads and the regional cloud ask the
same questions of them: which hospital, modality, exam item, technician, report doctor or
reviewing doctor fails most, and on which rules and dimensions. This module answers them from
the latest succeeded result per exam, exports CSV, and draws PNG bar charts (matplotlib, Agg
backend, imported only when a plot is asked for).

Definitions (the same for every grouping, so tables can be compared):

* ``exams``: exams with a result in the group; ``failed_exams``: those with at least one
  failure other than a note (a rule of severity ``info``, as in ``radqc check``); ``failure_rate`` = failed_exams / exams; ``mean_score``; ``failures`` and
  ``points`` (deducted) summed over the group.
* For ``rule`` and ``dimension``, an exam belongs to a group when it failed that rule /
  dimension, and the rate is over *all* exams with a result (``exams`` is that total):
  ``failure_rate`` = share of exams failing the rule. ``mean_score`` is that of the failing
  exams.
* ``item``: the standard item code the result was scored under when there is one, else each
  ordered item as the hospital wrote it (an exam with two items counts in both).
* People come from the exam's HIS/RIS record; a missing value is grouped as ``(none)``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from radqc.catalogue import models as m

STAGE = "rule_qc"
GROUPINGS = ("hospital", "modality", "item", "technician", "report_doctor", "review_doctor", "rule", "dimension")
GROUPING_ZH = {
    "hospital": "医院", "modality": "设备类型", "item": "检查项目", "technician": "技师", "report_doctor": "报告医生",
    "review_doctor": "审核医生", "rule": "规则", "dimension": "维度",
}
DIMENSION_ZH = {"completeness": "完整性", "timeliness": "及时性", "consistency": "一致性",
                "standardisation": "规范性", "accuracy": "准确性"}
NONE_LABEL = "(none)"
COLUMNS = ("by", "group", "label", "exams", "failed_exams", "failure_rate", "mean_score", "failures", "points")


class StatisticsError(ValueError):
    """A grouping that does not exist, or nothing to count."""


@dataclass
class ExamRow:
    """One exam's latest rule-QC result with the attributes statistics group by."""

    exam_id: int
    hospital: str
    hospital_name: str | None
    modality: str
    items: list[str]
    technician: str
    report_doctor: str
    review_doctor: str
    score: float | None
    grade: str | None
    failures: list[dict[str, Any]]
    ruleset_version: str | None = None
    exam_time: datetime | None = None

    @property
    def failed(self) -> bool:
        """At least one failure that is not a note (rules of severity ``info`` only inform)."""
        return any(f.get("severity") != "info" for f in self.failures)


@dataclass
class Group:
    key: str
    label: str
    exams: int = 0
    failed_exams: int = 0
    failures: int = 0
    points: float = 0.0
    scores: list[float] = field(default_factory=list)

    def row(self, by: str, denominator: int | None = None) -> dict[str, Any]:
        n = denominator if denominator is not None else self.exams
        return {
            "by": by,
            "group": self.key,
            "label": self.label,
            "exams": n,
            "failed_exams": self.failed_exams,
            "failure_rate": round(self.failed_exams / n, 6) if n else 0.0,
            "mean_score": round(sum(self.scores) / len(self.scores), 3) if self.scores else None,
            "failures": self.failures,
            "points": round(self.points, 3),
        }


def exam_result(result: Any) -> dict[str, Any] | None:
    """The ExamResult dict inside a ledger result (the stage may wrap it), or None."""
    if not isinstance(result, dict):
        return None
    if "failures" in result and "score" in result:
        return result
    for key in ("exam_result", "result"):
        inner = result.get(key)
        if isinstance(inner, dict) and "failures" in inner:
            return inner
    return None


def _text(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    return text or NONE_LABEL


def load_rows(session: Session, stage: str = STAGE) -> list[ExamRow]:
    """The latest succeeded ``stage`` result per exam, with hospital, modality, items and people.

    Two queries of plain columns (no ORM objects): the newest succeeded ledger row per exam
    joined to its exam and hospital, then the exams' HIS/RIS records.
    """
    L, E, H, R = m.LedgerEntry, m.Exam, m.Hospital, m.ExamRecord
    # A run that finds nothing changed writes no row, so the newest succeeded row per exam
    # holds the exam's current result.
    newest = (
        select(func.max(L.id).label("id"))
        .where(L.stage == stage, L.status == "succeeded", L.exam_id.is_not(None))
        .group_by(L.exam_id)
        .subquery()
    )
    results = session.execute(
        select(L.exam_id, L.result, E.modality, E.ordered_items, E.exam_time, H.code, H.name)
        .join(newest, newest.c.id == L.id)
        .outerjoin(E, E.id == L.exam_id)
        .outerjoin(H, H.id == E.hospital_id)
        .order_by(L.exam_id)
    ).all()
    records: dict[int, Any] = {}
    for rec in session.execute(
        select(R.exam_id, R.modality, R.exam_items, R.technician, R.report_doctor, R.review_doctor, R.exam_time)
        .where(R.exam_id.in_(select(L.exam_id).join(newest, newest.c.id == L.id)))
        .order_by(R.id)
    ):
        records[rec.exam_id] = rec  # the latest record of the exam wins
    rows = []
    for exam_id, result, modality, ordered_items, exam_time, code, name in results:
        res = exam_result(result)
        if res is None:
            continue
        record = records.get(exam_id)
        standard = res.get("standard")
        if standard and standard != "general":
            items = [str(standard)]
        else:
            written = (record.exam_items if record is not None and record.exam_items else None) or ordered_items or []
            items = [_text(i) for i in written] or [NONE_LABEL]
        rows.append(
            ExamRow(
                exam_id=exam_id,
                hospital=_text(code),
                hospital_name=name,
                modality=_text(modality or (record.modality if record is not None else None)),
                items=items,
                technician=_text(record.technician if record is not None else None),
                report_doctor=_text(record.report_doctor if record is not None else None),
                review_doctor=_text(record.review_doctor if record is not None else None),
                score=float(res["score"]) if res.get("score") is not None else None,
                grade=res.get("grade"),
                failures=[f for f in res.get("failures") or [] if isinstance(f, dict)],
                ruleset_version=res.get("ruleset_version"),
                exam_time=exam_time or (record.exam_time if record is not None else None),
            )
        )
    return rows


def _keys(row: ExamRow, by: str) -> Iterable[tuple[str, str]]:
    if by == "hospital":
        yield row.hospital, f"{row.hospital_name} ({row.hospital})" if row.hospital_name else row.hospital
    elif by == "item":
        for item in dict.fromkeys(row.items):
            yield item, item
    elif by in ("modality", "technician", "report_doctor", "review_doctor"):
        value = getattr(row, by)
        yield value, value
    elif by == "rule":
        for rule in dict.fromkeys(_text(f.get("rule_id")) for f in row.failures):
            yield rule, rule
    elif by == "dimension":
        for dim in dict.fromkeys(_text(f.get("dimension")) for f in row.failures):
            yield dim, f"{DIMENSION_ZH.get(dim, dim)} {dim}"


def compute(rows: list[ExamRow], by: str) -> list[dict[str, Any]]:
    """One row per group (see the module docstring), highest failure rate first."""
    if by not in GROUPINGS:
        raise StatisticsError(f"未知分组 / unknown grouping {by!r}: one of {', '.join(GROUPINGS)}")
    groups: dict[str, Group] = {}
    per_failure = by in ("rule", "dimension")
    for row in rows:
        for key, label in _keys(row, by):
            g = groups.get(key)
            if g is None:
                g = groups[key] = Group(key, label)
            g.exams += 1
            if per_failure:
                mine = [f for f in row.failures if _text(f.get("rule_id" if by == "rule" else "dimension")) == key]
                g.failed_exams += 1
            else:
                mine = row.failures
                g.failed_exams += 1 if row.failed else 0
            g.failures += len(mine)
            g.points += sum(float(f.get("points") or 0) for f in mine)
            if row.score is not None:
                g.scores.append(row.score)
    total = len(rows)
    table = [g.row(by, total if per_failure else None) for g in groups.values()]
    table.sort(key=lambda r: (-r["failure_rate"], -r["failures"], str(r["group"])))
    return table


def overall(rows: list[ExamRow]) -> dict[str, Any]:
    failed = sum(1 for r in rows if r.failed)
    scores = [r.score for r in rows if r.score is not None]
    grades: dict[str, int] = defaultdict(int)
    for r in rows:
        grades[_text(r.grade)] += 1
    return {
        "exams": len(rows),
        "failed_exams": failed,
        "failure_rate": round(failed / len(rows), 6) if rows else 0.0,
        "mean_score": round(sum(scores) / len(scores), 3) if scores else None,
        "grades": dict(sorted(grades.items())),
        "ruleset_versions": sorted({r.ruleset_version for r in rows if r.ruleset_version}),
    }


def write_csv(table: list[dict[str, Any]], path: Path) -> Path:
    """The table as CSV (UTF-8 with BOM: Excel on a Chinese PC opens it as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in table:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    return path


def _cjk_font() -> str | None:
    """A system font that has Chinese glyphs (labels are names of people and hospitals)."""
    from matplotlib import font_manager

    wanted = ("Noto Sans CJK", "Source Han Sans", "WenQuanYi", "Droid Sans Fallback", "SimHei", "Microsoft YaHei",
              "PingFang", "AR PL")
    for entry in font_manager.fontManager.ttflist:
        if any(w.lower() in entry.name.lower() for w in wanted):
            return entry.name
    for path in font_manager.findSystemFonts():
        lower = path.lower()
        if any(key in lower for key in ("droidsansfallback", "notosanscjk", "wqy", "simhei", "sourcehan")):
            try:
                font_manager.fontManager.addfont(path)
                return font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError):
                continue
    return None


def plot(table: list[dict[str, Any]], by: str, path: Path, top: int = 20) -> Path:
    """A horizontal bar chart of the failure rate per group (the ``top`` highest), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    font = _cjk_font()
    # Glyph-level fallback (matplotlib >= 3.6): Latin from DejaVu, Chinese from the CJK font.
    rc: dict[str, Any] = {"font.family": ["DejaVu Sans", font] if font else ["DejaVu Sans"], "axes.unicode_minus": False}
    shown = table[:top][::-1]
    with plt.rc_context(rc):  # type: ignore[arg-type]
        fig, ax = plt.subplots(figsize=(9, max(2.5, 0.38 * len(shown) + 1.4)), dpi=110)
        try:
            labels = [str(r["label"]) for r in shown]
            rates = [100.0 * r["failure_rate"] for r in shown]
            bars = ax.barh(range(len(shown)), rates, color="#c0392b" if by in ("rule", "dimension") else "#2e86c1")
            ax.set_yticks(range(len(shown)), labels)
            ax.set_xlim(0, max(rates, default=0.0) * 1.2 + 8)
            ax.set_xlabel("未通过率 failure rate (% of exams)")
            ax.set_title(f"规则质控 按{GROUPING_ZH[by]} / rule QC by {by}")
            for bar, r in zip(bars, shown, strict=True):
                ax.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2,
                        f"{100.0 * r['failure_rate']:.1f}% ({r['failed_exams']}/{r['exams']})",
                        va="center", fontsize=8)
            if not shown:
                ax.text(0.5, 0.5, "无数据 / no data", ha="center", va="center", transform=ax.transAxes)
            fig.tight_layout()
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="png")
        finally:
            plt.close(fig)
    return path


def select_rows(
    rows: list[ExamRow],
    hospital: str | None = None,
    modality: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ExamRow]:
    """Rows of one hospital / modality and exam time in [since, until) (exams without a time
    are left out when a period is asked for)."""
    out = []
    for r in rows:
        if hospital and r.hospital != hospital:
            continue
        if modality and r.modality.upper() != modality.upper():
            continue
        if since is not None or until is not None:
            if r.exam_time is None:
                continue
            if since is not None and r.exam_time < since:
                continue
            if until is not None and r.exam_time >= until:
                continue
        out.append(r)
    return out


def statistics(
    session: Session,
    by: str,
    stage: str = STAGE,
    rule_names: dict[str, str] | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """Everything ``radqc qc-stats`` prints: the overall figures and the table for ``by``.

    ``rule_names`` (rule id -> name) labels rule groups readably (results store only ids);
    ``filters``: hospital, modality, since, until (see :func:`select_rows`)."""
    rows = select_rows(load_rows(session, stage), **filters)
    table = compute(rows, by)
    if by == "rule" and rule_names:
        for row in table:
            name = rule_names.get(str(row["group"]))
            if name:
                row["label"] = f"{row['group']} {name}"
    return {"by": by, "overall": overall(rows), "groups": table}


def published_rule_names() -> dict[str, str]:
    """Rule id -> Chinese name from the workspace's published ruleset ({} when unavailable)."""
    try:
        from radqc.qc_rules.engine.store import RulesetStore

        store = RulesetStore.for_home()
        if not (store.root / "state.json").is_file():
            return {}
        return {rid: rule.name_zh for rid, rule in store.published().rules.items()}
    except Exception:  # noqa: BLE001 - labels are a convenience; ids stay correct without them
        return {}
