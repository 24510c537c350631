"""``radqc qc PATH``: AI image QC of one exam from a folder of DICOM files / 影像AI质控评分.

No server and no catalogue: the folder is read, its series classified, the ordered item
resolved to a scoring standard (``--item``, else ``--records``' exam items, else the
StudyDescription), every dimension measured, and the deductions rolled up to a score and a
grade (甲/乙/丙/丁 for radiographs, 0-3 for CT/MR). ``--records`` also runs rule QC on the
records and combines both into the exam's final score. JSON schema: docs/image-qc.md.

One study in PATH prints one JSON object; several studies print a list (one object per
StudyInstanceUID, in UID order). Corrupt and non-DICOM files are listed in ``bad_files`` and
never stop the run. Progress goes to stderr, one line per step.

Exit status: 0 done (also when dimensions could not be assessed: they say why); 2 nothing
readable (no DICOM study in PATH, or PATH missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout

EXIT_NOTHING_READABLE = 2


def register(app: typer.Typer) -> None:
    app.command("qc")(qc)


def qc(
    path: Path = typer.Argument(..., help="DICOM folder or file of one exam (several studies: one result each) / "
                                "一个检查的DICOM目录或文件"),
    item: str = typer.Option(None, "--item", help="Exam item name or standard code (e.g. 胸部CT平扫, CT-CHEST-PLAIN); "
                             "overrides the records / 检查项目名称或标准编码"),
    records: list[Path] = typer.Option(None, "--records", "-r", help="HIS/RIS records (JSON Lines or CSV): the ordered "
                                       "item, and rule QC combined into the score / 检查记录（医嘱项目与规则质控）"),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON result (docs/image-qc.md)."),
    evidence_dir: Path = typer.Option(None, "--evidence-dir", help="Write the evidence PNGs here (one folder per "
                                      "study) / 证据图片目录"),
    no_image_model: bool = typer.Option(False, "--no-image-model", help="Series classification from headers only / "
                                        "序列分类不使用图像模型"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr / 不输出进度"),
) -> None:
    """Score one exam's image quality: dimensions, deductions, score, grade / 影像质控评分."""
    from radqc.pipelines.image_qc.evidence import FileSink
    from radqc.pipelines.image_qc.run import analyse_path

    if not path.exists():
        console.print(f"error / 错误: {path} does not exist / 路径不存在", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_NOTHING_READABLE)
    for r in records or []:
        if not r.is_file():
            console.print(f"error / 错误: records file {r} does not exist / 记录文件不存在", markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_NOTHING_READABLE)

    def log_step(message: str) -> None:
        if not quiet:
            console.print(message, markup=False, highlight=False, soft_wrap=True)

    sinks: dict[str, FileSink] = {}

    def sink_for(study_uid: str) -> FileSink:
        assert evidence_dir is not None
        sinks[study_uid] = FileSink(evidence_dir / _folder_name(study_uid))
        return sinks[study_uid]

    result = analyse_path(path, item=item, records=list(records or []), image_model=not no_image_model,
                          sink_for=sink_for if evidence_dir is not None else None, log_step=log_step)
    exams = result["exams"]
    if not exams:
        data = {"error": "no DICOM study in PATH / 路径中无可读取的DICOM检查", "path": str(path),
                "bad_files": result["bad_files"]}
        emit(data, as_json, _human_empty)
        raise typer.Exit(EXIT_NOTHING_READABLE)
    for exam in exams:
        exam.setdefault("bad_files", result["bad_files"] if len(exams) == 1 else exam.get("bad_files", []))
        if len(exams) > 1 and result["bad_files"]:
            exam["folder_bad_files"] = result["bad_files"]
        if result.get("records_error"):
            exam["records_error"] = result["records_error"]
    emit(exams[0] if len(exams) == 1 else exams, as_json, _human)


def _folder_name(study_uid: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in study_uid)[:96] or "study"


def _p(text: str) -> None:
    stdout.print(text, markup=False, highlight=False)


def _human_empty(data: dict[str, Any]) -> None:
    _p(data["error"])
    for b in data.get("bad_files") or []:
        _p(f"  {b.get('path')}: {b.get('message')}")


def _human(data: Any) -> None:
    from rich.table import Table

    from radqc.pipelines.image_qc.types import DIMENSIONS, VALUE_EN

    for exam in data if isinstance(data, list) else [data]:
        item = exam.get("item") or {}
        name = item.get("name") or {}
        item_text = (f"{item.get('code')} {name.get('zh', '')} / {name.get('en', '')}" if item.get("code")
                     else f"无法评估 / unknown: {item.get('reason') or ''}")
        _p(f"exam / 检查 {exam.get('study_instance_uid')}  modality / 模态 {exam.get('modality')}")
        _p(f"item / 检查项目: {item_text}")
        _p(f"grade / 等级: {exam.get('grade')}   score / 得分: {exam.get('score')}"
           + (f"   (image / 影像 {exam.get('image_score')}, rule QC / 规则 {exam['rule_qc'].get('score')})"
              if exam.get("rule_qc") else ""))
        table = Table(show_lines=False)
        for col in ("dimension / 维度", "value / 结果", "detail / 说明"):
            table.add_column(col)
        for dim in DIMENSIONS:
            d = exam.get(dim) or {}
            value = str(d.get("value"))
            detail = d.get("reason") or ""
            if not detail and d.get("findings"):
                f = d["findings"][0]
                detail = f"{f.get('reason_zh')} / {f.get('reason_en')}"
            table.add_row(dim, f"{value} / {VALUE_EN.get(value, value)}", str(detail))
        stdout.print(table)
        for ded in exam.get("deductions") or []:
            _p(f"  -{ded.get('points')} {ded.get('check_id')} [{ded.get('dimension')}] "
               f"{ded.get('reason_zh')} / {ded.get('reason_en')}")
        for img in exam.get("evidence_images") or []:
            _p(f"  evidence / 证据: {img}")
        for b in exam.get("bad_files") or []:
            _p(f"  bad file / 无法读取: {b.get('path')}: {b.get('message')}")
