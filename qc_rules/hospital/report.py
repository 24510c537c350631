"""The feedback report of ``radqc check`` (院端质控反馈报告): HTML, CSV and JSON.

Written for the person at the hospital who must fix the export before re-sending: failed
exams first, each failure with its reason (Chinese and English, naming the evidence) and how
to fix it; then what was normalised automatically (so the export can be corrected at its
source); then files that could not be read. The HTML is one self-contained file (inline
CSS, no scripts, no external assets) that opens offline on any hospital PC.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from radqc.qc_rules.hospital.check import DIMENSION_ZH, CheckResult, ExamOutcome, is_blocking

#: Files written into the output folder.
HTML_NAME = "report.html"
JSON_NAME = "report.json"
FAILURES_CSV = "failures.csv"
EXAMS_CSV = "exams.csv"
CHANGES_CSV = "changes.csv"
NORMALISED_RECORDS = "records.normalised.jsonl"

FAILURE_COLUMNS = ("accession_number", "exam_key", "rule_id", "dimension", "fields", "points", "reason", "fix_hint", "record")
EXAM_COLUMNS = ("accession_number", "exam_key", "passed", "score", "grade", "failures", "points_deducted", "standard",
                "link", "record", "study_instance_uids")
CHANGE_COLUMNS = ("accession_number", "exam_key", "field", "old", "new", "source", "explain")


def _ordered(result: CheckResult) -> list[ExamOutcome]:
    """Failed exams first (lowest score first), then passed ones, each in input order."""
    failed = sorted(result.failed, key=lambda e: (e.score if e.score is not None else -1.0))
    return failed + [e for e in result.exams if e.passed]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def write_csv(result: CheckResult, out: Path) -> list[Path]:
    """``failures.csv`` (one row per failure), ``exams.csv`` (one per exam), ``changes.csv``.

    UTF-8 with a byte-order mark, so Excel on a Chinese Windows PC opens it correctly.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / FAILURES_CSV, out / EXAMS_CSV, out / CHANGES_CSV]
    with paths[0].open("w", encoding="utf-8-sig", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(FAILURE_COLUMNS)
        for exam in _ordered(result):
            for f in exam.failures:
                w.writerow([_cell(v) for v in (exam.accession_number, exam.key, f["rule_id"], f["dimension"], f["fields"],
                                               f["points"], f["reason"], f.get("fix_hint"), exam.source.get("record"))])
    with paths[1].open("w", encoding="utf-8-sig", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(EXAM_COLUMNS)
        for exam in _ordered(result):
            w.writerow([_cell(v) for v in (
                exam.accession_number, exam.key, exam.passed, exam.score, exam.grade, len(exam.failures),
                round(sum(f["points"] for f in exam.failures), 3), exam.standard, exam.link,
                exam.source.get("record"), exam.source.get("study_instance_uids"),
            )])
    with paths[2].open("w", encoding="utf-8-sig", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(CHANGE_COLUMNS)
        for exam in result.exams:
            for c in exam.changes:
                w.writerow([_cell(v) for v in (exam.accession_number, exam.key, c["field"], c["old"], c["new"],
                                               c["source"], c["explain"])])
    return paths


def write_json(result: CheckResult, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / JSON_NAME
    path.write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return path


_CSS = """
body{font-family:"Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:2px solid #ddd}
table{border-collapse:collapse;margin:8px 0 16px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.fail{color:#b00020;font-weight:bold}.pass{color:#1b7f3b;font-weight:bold}
.exam{border:1px solid #e0c0c0;border-radius:6px;padding:8px 12px;margin:12px 0;background:#fffafa}
.exam.ok{border-color:#c0e0c8;background:#fafffb}.muted{color:#777;font-size:12px}
code{background:#f4f4f4;padding:0 3px}
"""


def _e(value: Any) -> str:
    return html.escape(_cell(value))


def _failure_rows(exam: ExamOutcome) -> str:
    rows = []
    for f in exam.failures:
        dim = f.get("dimension") or ""
        rows.append(
            "<tr>"
            f"<td><code>{_e(f['rule_id'])}</code>{'' if is_blocking(f) else ' 提示 note'}</td>"
            f"<td>{_e(DIMENSION_ZH.get(dim, dim))} {_e(dim)}</td>"
            f"<td>{_e(', '.join(f.get('fields') or []))}</td>"
            f"<td>{_e(f['points'])}</td>"
            f"<td>{_e(f['reason'])}</td>"
            f"<td>{_e(f.get('fix_hint'))}</td>"
            "</tr>"
        )
    return (
        "<table><tr><th>规则 Rule</th><th>维度 Dimension</th><th>字段 Fields</th><th>扣分 Points</th>"
        "<th>原因 Reason</th><th>如何修正 How to fix</th></tr>" + "".join(rows) + "</table>"
    )


def _change_rows(exam: ExamOutcome) -> str:
    if not exam.changes:
        return ""
    rows = "".join(
        f"<tr><td>{_e(c['field'])}</td><td>{_e(c['old'])}</td><td>{_e(c['new'])}</td><td>{_e(c['explain'])}</td></tr>"
        for c in exam.changes
    )
    return (
        "<p class='muted'>已自动标准化/补全 Normalised automatically (please correct the export at its source):</p>"
        "<table><tr><th>字段 Field</th><th>原值 Was</th><th>现值 Now</th><th>说明 Why</th></tr>" + rows + "</table>"
    )


def _exam_block(exam: ExamOutcome) -> str:
    status = "<span class='pass'>通过 PASS</span>" if exam.passed else "<span class='fail'>未通过 FAIL</span>"
    where = " · ".join(
        x for x in (exam.source.get("record"), exam.source.get("folder")) if x
    )
    head = (
        f"<h3>{status} 检查号 Accession: <code>{_e(exam.accession_number or exam.key)}</code> "
        f"— 得分 score {_e(exam.score)} · 等级 grade {_e(exam.grade)}"
        f"{(' · 标准 standard ' + _e(exam.standard)) if exam.standard else ''}</h3>"
        f"<p class='muted'>{_e(where)}</p>"
    )
    body = _failure_rows(exam) if exam.failures else ""
    return f"<div class='exam{'' if not exam.passed else ' ok'}'>{head}{body}{_change_rows(exam)}</div>"


def render_html(result: CheckResult) -> str:
    s = result.summary()
    dims = "".join(
        f"<tr><td>{_e(DIMENSION_ZH.get(d, d))} {_e(d)}</td><td>{n}</td></tr>" for d, n in s["by_dimension"].items()
    )
    rules = "".join(f"<tr><td><code>{_e(r)}</code></td><td>{n}</td></tr>" for r, n in list(s["by_rule"].items())[:20])
    failed = [e for e in _ordered(result) if not e.passed]
    passed = [e for e in result.exams if e.passed]
    files = "".join(
        f"<tr><td>{_e(p.path)}</td><td>{_e(p.reason())}</td></tr>" for p in result.file_problems
    )
    parts = [
        "<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'>",
        "<title>院端质控反馈报告 Hospital-side QC feedback</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>院端质控反馈报告 / Hospital-side QC feedback report</h1>",
        f"<p class='muted'>检查时间 Checked at {_e(s['checked_at'])} · 规则集版本 ruleset {_e(s['ruleset_version'])}"
        f" · 影像 images {_e(s['path'])} · 记录 records {_e(s['records'])}</p>",
        "<h2>汇总 Summary</h2><table>",
        f"<tr><th>检查数 Exams</th><td>{s['exams']}</td></tr>",
        f"<tr><th>通过 Passed</th><td class='pass'>{s['passed']}</td></tr>",
        f"<tr><th>未通过 Failed</th><td class='fail'>{s['failed']}</td></tr>",
        f"<tr><th>问题数 Failures</th><td>{s['failures']}</td></tr>",
        f"<tr><th>自动标准化 Normalised values</th><td>{s['changes']}</td></tr>",
        f"<tr><th>无法读取的文件 Files not read</th><td>{s['files_not_read']}</td></tr>",
        "</table>",
    ]
    if dims:
        parts.append("<h3>按维度 By dimension</h3><table><tr><th>维度 Dimension</th><th>问题数 Failures</th></tr>"
                     + dims + "</table>")
    if rules:
        parts.append("<h3>常见问题 Most frequent rules</h3><table><tr><th>规则 Rule</th><th>次数 Count</th></tr>"
                     + rules + "</table>")
    parts.append(f"<h2>未通过的检查 Failed exams ({len(failed)})</h2>")
    parts.extend(_exam_block(e) for e in failed)
    if not failed:
        parts.append("<p class='pass'>全部通过 / every exam passed</p>")
    if files:
        parts.append(f"<h2>无法读取的文件 Files not read ({len(result.file_problems)})</h2>"
                     "<table><tr><th>文件 File</th><th>原因 Reason</th></tr>" + files + "</table>")
    parts.append(f"<h2>通过的检查 Passed exams ({len(passed)})</h2>")
    parts.extend(_exam_block(e) for e in passed)
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(result: CheckResult, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / HTML_NAME
    path.write_text(render_html(result), encoding="utf-8")
    return path


def write_normalised_records(result: CheckResult, out: Path) -> Path:
    """The exam records as they should be sent: normalised, completed from DICOM (every change
    is in changes.csv), one JSON object per line in input order, readable by ``ingest-records``.
    Values the upload would reject are kept as written (nothing is dropped): fix them first."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / NORMALISED_RECORDS
    with path.open("w", encoding="utf-8") as handle:
        for exam in result.exams:
            if exam.normalised_record is not None:
                handle.write(json.dumps(exam.normalised_record, ensure_ascii=False, default=str) + "\n")
    return path


def write_report(result: CheckResult, out: Path) -> dict[str, str]:
    """Write every format into ``out``; return {format: path}."""
    paths = {"html": write_html(result, out), "json": write_json(result, out),
             "normalised_records": write_normalised_records(result, out)}
    for p in write_csv(result, out):
        paths[p.stem + "_csv"] = p
    return {k: str(v) for k, v in paths.items()}
