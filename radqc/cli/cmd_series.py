"""``radqc series PATH``: every series' standard category, and the exam's items with their series.

PATH is a DICOM folder (one or more exams, grouped by StudyInstanceUID) or one file. The
ordered items come from ``--items`` (hospital item names, normalised) or, without it, from
each exam's StudyDescription. Non-DICOM and corrupt files are listed with their reason and
never stop the run. JSON schema: docs/series.md.

Exit status: 0 done (also when some files were bad: they are listed); 2 nothing readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout

EXIT_NOTHING_READABLE = 2


def register(app: typer.Typer) -> None:
    app.command("series")(series)


def series(
    path: Path = typer.Argument(..., help="DICOM folder or file (one or more exams) / DICOM 目录或文件"),
    items: list[str] = typer.Option(None, "--items", help="Ordered item name(s), e.g. 胸部+上腹部CT平扫 "
                                    "(default: the StudyDescription) / 医嘱检查项目名称"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (per series labels and the item split)."),
    no_image_model: bool = typer.Option(False, "--no-image-model",
                                        help="Header rules and model only, no thumbnails / 不使用图像模型"),
) -> None:
    """Classify every series and split the exam into its standard items / 序列分类与组合检查拆分."""
    from radqc.pipelines.series.run import analyse_path

    if not path.exists():
        console.print(f"error / 错误: {path} does not exist / 路径不存在", markup=False)
        raise typer.Exit(EXIT_NOTHING_READABLE)

    def progress(done: int, total: int, exam: dict[str, Any]) -> None:
        if total > 1:
            console.print(f"[{done}/{total}] exam / 检查 {exam['study_instance_uid']}: {len(exam['series'])} series / "
                          f"序列, {exam['seconds']:.2f} s", markup=False, highlight=False)

    result = analyse_path(path, items=items or None, image_model=not no_image_model, progress=progress)
    emit(result, as_json, _human)
    if not result["exams"]:
        raise typer.Exit(EXIT_NOTHING_READABLE)


def _p(text: str) -> None:
    stdout.print(text, markup=False, highlight=False)


def _human(result: dict[str, Any]) -> None:
    from rich.table import Table

    for exam in result["exams"]:
        _p(f"exam / 检查 {exam['study_instance_uid']}  {exam.get('study_description') or ''}")
        table = Table(show_lines=False)
        for col in ("#", "description / 描述", "category / 类别", "role / 角色", "plane / 方位",
                    "sequence|phase / 序列|期相", "conf / 置信度", "note / 说明"):
            table.add_column(col)
        for s in exam["series"]:
            note = "overruled description / 描述被图像推翻" if s.get("description_overruled") else (
                s.get("unknown_reason") or "")
            table.add_row(str(s.get("series_number") or ""), str(s.get("description") or ""),
                          str(s.get("category") or ""), str(s.get("role") or ""), str(s.get("plane") or ""),
                          str(s.get("sequence") or s.get("phase") or ""), f"{float(s.get('confidence') or 0):.2f}",
                          str(note))
        stdout.print(table)
        number = {s["series_uid"]: s.get("series_number") for s in exam["series"]}
        if exam.get("no_order"):
            _p("no order / 无医嘱项目: series grouped by region / 按部位分组")
            for g in exam.get("regions") or []:
                _p(f"  {g['region']}: " + ", ".join(f"#{number.get(e['series_uid'])}" for e in g["series"]))
        for item in exam.get("standard_items") or []:
            parts = []
            for e in item["series"]:
                slab = e.get("slab")
                where = (f"[{slab['z_from_mm']:.0f}..{slab['z_to_mm']:.0f} mm, {slab['instances']} img]"
                         if slab else "")
                parts.append(f"#{number.get(e['series_uid'])}{where}")
            _p(f"  item / 项目 {item.get('code')} {item.get('name') or ''}: {', '.join(parts) or '-'}")
        for u in exam.get("unassigned") or []:
            _p(f"  unassigned / 未分配 #{number.get(u['series_uid'])}: {u['message']}")
        for m in exam.get("mismatch") or []:
            _p(f"  mismatch / 不一致 {m['kind']} {m.get('item') or m.get('region') or ''}: {m['evidence']}")
    for b in result.get("bad_files") or []:
        _p(f"skipped file / 跳过文件 {b['path']}: {b['message']}")
