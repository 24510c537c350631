"""``radqc exams search|show|tags``: find exams by their tags and standard items in the catalogue.

The tags (ExamTag rows, TAG dictionary ``radqc/vocab/tags.yaml``) and standard series
(StandardSeries rows) are written by the ``series`` stage; this command only reads them. Tag
filters are AND-ed; a filter's value is checked against the dictionary first, so a typo is an
error (exit 2) instead of an empty result that looks like "no such exams".

Set-valued tags (``regions_imaged=chest,abdomen``) match one member: ``--tag regions_imaged=chest``.
A bool tag without a value asks for ``true``: ``--tag thin_slices_present``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from rich.table import Table

from radqc.cli.output import console, emit, stdout

#: Modalities searched together (HIS writes DR, headers CR/DX).
MODALITY_EQUIVALENTS = {"DX": ("DX", "CR", "DR"), "CR": ("DX", "CR", "DR"), "DR": ("DX", "CR", "DR")}


def register(app: typer.Typer) -> None:
    exams = typer.Typer(help="Search exams by tag and standard item / 按标签与标准项目检索检查", no_args_is_help=True)
    exams.command("search")(search)
    exams.command("show")(show)
    exams.command("tags")(list_tags)
    app.add_typer(exams, name="exams")


@dataclass(frozen=True)
class TagFilter:
    """One ``--tag CODE[=VALUE]`` filter, checked against the dictionary."""

    code: str
    value: str | None  # as stored; None: bool -> "true", others -> any value
    type: str


def _fail(message: str) -> None:
    console.print(f"[red]error / 错误:[/] {message}")
    raise typer.Exit(2)


def parse_tag_filter(text: str) -> TagFilter:
    """``CODE`` or ``CODE=VALUE`` -> a checked filter (ValueError, bilingual, when invalid)."""
    from radqc.vocab.tags import normalise_query_value, tag

    code, sep, value = text.partition("=")
    code = code.strip()
    try:
        d = tag(code)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    if not sep:
        return TagFilter(code, "true" if d.type == "bool" else None, d.type)
    return TagFilter(code, normalise_query_value(d, value), d.type)


def _member_clause(column: Any, value: str) -> Any:
    """SQL: a comma-joined list column contains ``value`` as a whole member (LIKE wildcards escaped)."""
    from sqlalchemy import or_

    return or_(column == value, column.startswith(value + ",", autoescape=True),
               column.endswith("," + value, autoescape=True), column.contains("," + value + ",", autoescape=True))


def search_exams(session: Any, tag_filters: list[TagFilter], item: str | None = None, modality: str | None = None,
                 hospital: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Exams matching every filter, newest first, each with its tags and standard item codes."""
    from sqlalchemy import and_, exists, or_, select

    from radqc.catalogue import models as m

    query = select(m.Exam, m.Hospital.code).outerjoin(m.Hospital, m.Hospital.id == m.Exam.hospital_id)
    for f in tag_filters:
        cond = [m.ExamTag.exam_id == m.Exam.id, m.ExamTag.tag == f.code]
        if f.value is not None:
            cond.append(_member_clause(m.ExamTag.value, f.value) if f.type == "set" else m.ExamTag.value == f.value)
        query = query.where(exists().where(and_(*cond)))
    if item:
        query = query.where(exists().where(and_(m.StandardSeries.exam_id == m.Exam.id,
                                                m.StandardSeries.item_code == item)))
    if modality:
        mods = MODALITY_EQUIVALENTS.get(modality.upper(), (modality.upper(),))
        query = query.where(or_(*(_member_clause(m.Exam.modality, mod) for mod in mods)))
    if hospital:
        query = query.where(or_(m.Hospital.code == hospital, m.Hospital.name == hospital))
    query = query.order_by(m.Exam.exam_time.desc(), m.Exam.id.desc()).limit(limit)
    rows = session.execute(query).all()
    ids = [exam.id for exam, _ in rows]
    tags: dict[int, dict[str, str | None]] = {i: {} for i in ids}
    items: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for t in session.scalars(select(m.ExamTag).where(m.ExamTag.exam_id.in_(ids)).order_by(m.ExamTag.id)):
            tags[t.exam_id][t.tag] = t.value
        pairs = session.execute(select(m.StandardSeries.exam_id, m.StandardSeries.item_code)
                                .where(m.StandardSeries.exam_id.in_(ids)).order_by(m.StandardSeries.id)).all()
        for exam_id, code in pairs:
            if code and code not in items[exam_id]:
                items[exam_id].append(code)
    return [{"exam_id": exam.id, "accession_number": exam.accession_number, "hospital_code": hcode,
             "modality": exam.modality, "exam_time": exam.exam_time, "study_instance_uid": exam.study_instance_uid,
             "tags": _ordered_tags(tags[exam.id]), "items": items[exam.id]} for exam, hcode in rows]


def _ordered_tags(values: dict[str, str | None]) -> dict[str, str | None]:
    """Tags in dictionary order (unknown codes, e.g. from another stage, after them)."""
    from radqc.vocab.tags import tags

    order = {c: i for i, c in enumerate(tags())}
    return {k: values[k] for k in sorted(values, key=lambda c: (order.get(c, len(order)), c))}


def search(
    tag: list[str] = typer.Option(None, "--tag", "-t", help="CODE or CODE=VALUE (repeatable, AND-ed); "
                                  "`radqc exams tags` lists the codes / 标签，可重复"),
    item: str = typer.Option(None, "--item", help="Standard exam-item code, e.g. CT.CHEST.PLAIN / 标准检查项目编码"),
    modality: str = typer.Option(None, "--modality", help="CT, MR, DX (covers CR/DR), MG, RF / 设备类型"),
    hospital: str = typer.Option(None, "--hospital", help="Hospital code (or name) / 医院编码"),
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many exams, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Find exams by tags, standard item, modality and hospital / 按标签、标准项目、设备、医院检索检查."""
    from radqc.vocab import item as vocab_item
    from radqc.workspace import Workspace

    filters: list[TagFilter] = []
    for text in tag or []:
        try:
            filters.append(parse_tag_filter(text))
        except ValueError as exc:
            _fail(str(exc))
    code = None
    if item:
        try:
            code = vocab_item(item).code
        except KeyError as exc:
            _fail(str(exc.args[0]))
    ws = Workspace.open()
    with ws.sessions() as s:
        rows = search_exams(s, filters, item=code, modality=modality, hospital=hospital, limit=limit)
    data = {"count": len(rows), "limit": limit,
            "filters": {"tags": [{"tag": f.code, "value": f.value} for f in filters], "item": code,
                        "modality": modality, "hospital": hospital},
            "exams": rows}

    def human(d: dict[str, Any]) -> None:
        from radqc.vocab.tags import display_value, tags

        defs = tags()
        table = Table(title=f"Exams / 检查 ({d['count']})")
        for col in ("检查ID / exam", "检查号 / accession", "医院 / hospital", "设备 / modality",
                    "检查时间 / exam time", "标准项目 / items", "标签 / tags"):
            table.add_column(col)
        for r in d["exams"]:
            shown = []
            for k, v in r["tags"].items():
                td = defs.get(k)
                if td is not None and td.type == "bool":
                    if v == "true":
                        shown.append(td.zh)
                else:
                    shown.append(f"{td.zh if td else k}={display_value(td, v) if td else v}")
            table.add_row(str(r["exam_id"]), r["accession_number"] or "-", r["hospital_code"] or "-",
                          r["modality"] or "-", r["exam_time"].isoformat(sep=" ", timespec="minutes")
                          if r["exam_time"] else "-", ", ".join(r["items"]) or "-", "; ".join(shown) or "-")
        stdout.print(table)
        if d["count"] == d["limit"]:
            console.print(f"showing the first {d['limit']} / 仅显示前 {d['limit']} 条 (--limit)")

    emit(data, as_json, human)


def _find_exam(session: Any, key: str) -> Any:
    """The exam with this id, accession number or StudyInstanceUID (exits 2 when none or ambiguous)."""
    from sqlalchemy import or_, select

    from radqc.catalogue import models as m

    key = key.strip()
    if key.isdigit():
        exam = session.get(m.Exam, int(key))
        if exam is not None:
            return exam
    found = list(session.scalars(select(m.Exam).where(or_(m.Exam.accession_number == key,
                                                          m.Exam.study_instance_uid == key)).order_by(m.Exam.id)))
    if not found:
        _fail(f"没有这个检查 / no exam with id, accession number or StudyInstanceUID {key!r}")
    if len(found) > 1:
        _fail(f"检查号对应多个检查 / accession {key!r} matches several exams: ids {[e.id for e in found]}; "
              f"give the exam id")
    return found[0]


def exam_details(session: Any, exam: Any) -> dict[str, Any]:
    """The exam, its tags (with evidence and stage) and its standard series, as a dict."""
    from sqlalchemy import select

    from radqc.catalogue import models as m
    from radqc.vocab import exam_items
    from radqc.vocab.tags import display_value, tags

    defs = tags()
    hospital = session.get(m.Hospital, exam.hospital_id) if exam.hospital_id else None
    tag_rows = list(session.scalars(select(m.ExamTag).where(m.ExamTag.exam_id == exam.id).order_by(m.ExamTag.id)))
    order = {c: i for i, c in enumerate(defs)}
    tag_rows.sort(key=lambda t: (order.get(t.tag, len(order)), t.tag))
    out_tags = []
    for t in tag_rows:
        d = defs.get(t.tag)
        out_tags.append({"tag": t.tag, "value": t.value, "zh": d.zh if d else None, "en": d.en if d else None,
                         "group": d.group if d else None, "display": display_value(d, t.value) if d else t.value,
                         "stage": t.stage, "evidence": t.evidence or {}})
    items = exam_items()
    series_rows = session.execute(
        select(m.StandardSeries, m.Series.series_number, m.Series.description, m.Series.series_instance_uid)
        .outerjoin(m.Series, m.Series.id == m.StandardSeries.source_series_id)
        .where(m.StandardSeries.exam_id == exam.id).order_by(m.StandardSeries.item_code, m.StandardSeries.id)).all()
    standard = []
    for ss, number, desc, src_uid in series_rows:
        it = items.get(ss.item_code or "")
        standard.append({"standard_series_uid": ss.standard_series_uid, "item_code": ss.item_code,
                         "item_name": it.name_zh if it else None, "item_name_en": it.name_en if it else None,
                         "category": ss.category, "role": ss.role, "z_from_mm": ss.z_from_mm, "z_to_mm": ss.z_to_mm,
                         "instance_count": ss.instance_count, "source_series_number": number,
                         "source_series_description": desc, "source_series_uid": src_uid})
    return {"exam_id": exam.id, "accession_number": exam.accession_number,
            "hospital_code": hospital.code if hospital else None, "modality": exam.modality,
            "exam_time": exam.exam_time, "study_instance_uid": exam.study_instance_uid,
            "study_description": exam.study_description, "ordered_items": exam.ordered_items or [],
            "tags": out_tags, "standard_series": standard}


def show(
    exam: str = typer.Argument(..., help="Exam id, accession number or StudyInstanceUID / 检查ID或检查号"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """An exam's tags and standard series / 检查的标签与标准序列."""
    from radqc.workspace import Workspace

    ws = Workspace.open()
    with ws.sessions() as s:
        data = exam_details(s, _find_exam(s, exam))

    def human(d: dict[str, Any]) -> None:
        stdout.print(f"[bold]exam / 检查 {d['exam_id']}[/]  accession / 检查号 {d['accession_number'] or '-'}  "
                     f"hospital / 医院 {d['hospital_code'] or '-'}  modality / 设备 {d['modality'] or '-'}  "
                     f"time / 时间 {d['exam_time'] or '-'}")
        tags_table = Table(title="Tags / 标签")
        for col in ("标签 / tag", "名称 / name", "值 / value", "来源 / stage"):
            tags_table.add_column(col)
        for t in d["tags"]:
            name = f"{t['zh']} / {t['en']}" if t["zh"] else "-"
            tags_table.add_row(t["tag"], name, t["display"] or "-", t["stage"])
        stdout.print(tags_table)
        ss_table = Table(title="Standard series / 标准序列")
        for col in ("标准项目 / item", "类别 / category", "角色 / role", "z 范围 / z range (mm)",
                    "图像数 / instances", "原序列 / source series"):
            ss_table.add_column(col)
        for r in d["standard_series"]:
            z = (f"{r['z_from_mm']:.0f} … {r['z_to_mm']:.0f}" if r["z_from_mm"] is not None
                 and r["z_to_mm"] is not None else "-")
            item = f"{r['item_code']} {r['item_name'] or ''}".strip() if r["item_code"] else "-"
            src = f"#{r['source_series_number']} {r['source_series_description'] or ''}".strip() \
                if r["source_series_number"] is not None or r["source_series_description"] else "-"
            ss_table.add_row(item, r["category"] or "-", r["role"] or "-", z, str(r["instance_count"]), src)
        stdout.print(ss_table)
        if not d["standard_series"] and not d["tags"]:
            console.print("no tags or standard series yet: run `radqc run` / 尚无标签与标准序列，请先运行 radqc run")

    emit(data, as_json, human)


def list_tags(
    group: str = typer.Option(None, "--group", help="image_feature | data_quality | content"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The TAG dictionary: codes, names, value types and values / 标签字典."""
    from radqc.vocab.tags import tags

    rows = [{"tag": d.code, "zh": d.zh, "en": d.en, "group": d.group, "type": d.type,
             "values": [v.value for v in d.values] if d.values else (["true", "false"] if d.type == "bool" else []),
             "open": d.open, "modalities": list(d.modalities), "derived_from": list(d.derive_from), "rule": d.rule}
            for d in tags().values() if group is None or d.group == group]

    def human(data: list[dict[str, Any]]) -> None:
        table = Table(title="TAG dictionary / 标签字典")
        for col in ("tag", "名称 / name", "group", "type", "values"):
            table.add_column(col)
        for r in data:
            table.add_row(r["tag"], f"{r['zh']} / {r['en']}", r["group"], r["type"],
                          ", ".join(r["values"]) + (", …" if r["open"] else ""))
        stdout.print(table)

    emit(rows, as_json, human)
