"""``radqc segment PATH --out DIR [--json]``: anatomy of one CT series (or a radiograph) in a folder.

Public contract (docs/anatomy.md): writes ``DIR/labels.nii.gz`` in the source image's
geometry, ``DIR/seg.dcm`` (DICOM SEG referencing the source instances) beside it and
``DIR/result.json``; ``--json`` prints the result (``structures``, ``landmarks``,
``coverage``, ``series_instance_uid``, ``modality``, ``models``, ``warnings``, ``error``).

Exit status: 0 done; 2 bad input (no DICOM, unsuitable series: non-axial, tilted, gaps,
single slice, not CT ...); 3 a model slot is unavailable (nothing was invented in its
place); 4 a model failed; 1 anything unexpected. Errors never print a traceback: one
bilingual line on stderr and, with ``--json``, ``error: {code, message}`` on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from radqc.cli.output import console, emit, stdout

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_MODEL_UNAVAILABLE, EXIT_MODEL_ERROR = 0, 1, 2, 3, 4
EXIT_BY_STATUS = {"ok": EXIT_OK, "unsuitable": EXIT_BAD_INPUT, "model_unavailable": EXIT_MODEL_UNAVAILABLE,
                  "model_error": EXIT_MODEL_ERROR}


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)


def segment_path(path: Path, out: Path, *, seg_type: str = "LABELMAP", write_seg: bool = True,
                 series: str | None = None) -> dict[str, Any]:
    """Run the anatomy engine on the series ``path`` holds and write its files into ``out``.

    Returns the result (with ``status``; ``error`` set when it is not ``ok``); raises
    nothing for bad input."""
    from radqc.dicom.volume import UnsuitableSeries, build_volume, load_radiograph, pick_series, scan_folder
    from radqc.pipelines.anatomy.engine import RESULT_SCHEMA
    from radqc.pipelines.anatomy.run import (
        LABELS_FILE,
        RESULT_FILE,
        SEG_FILE,
        load_models,
        run_ct,
        run_radiograph,
    )
    from radqc.pipelines.anatomy.writers import write_json

    base: dict[str, Any] = {"schema": RESULT_SCHEMA, "path": str(path), "out": str(out)}
    try:
        groups = scan_folder(path)
        group, kind = pick_series(groups, series)
        base.update(kind=kind, series_instance_uid=group.series_instance_uid, modality=group.modality,
                    series_in_folder=[g.to_dict() for g in groups])
        if kind == "radiograph":
            radiograph = load_radiograph(group.files[0])
            outputs = run_radiograph(radiograph, load_models("radiograph"), write_seg=write_seg)
            if len(group.files) > 1:
                outputs.result["warnings"].append(f"{len(group.files)} images in the series; analysed the first")
        else:
            volume = build_volume(group.files, require_ct=True)
            outputs = run_ct(volume, load_models("ct"), seg_type=seg_type, write_seg=write_seg)
    except UnsuitableSeries as exc:
        result = {**base, "status": "unsuitable", "structures": [], "landmarks": _null_landmarks(base.get("kind")),
                  "warnings": [], "error": {"code": exc.reason_code, "message": exc.message}}
        _try_write(result, out / RESULT_FILE)
        return result
    result = {**base, **outputs.result, "series_in_folder": base.get("series_in_folder", [])}
    out.mkdir(parents=True, exist_ok=True)
    for name in (LABELS_FILE, SEG_FILE):
        stale = out / name
        if name not in outputs.files and stale.exists():
            stale.unlink()  # an output of an earlier run must not pass for this one's
    files = {}
    for name, data in outputs.files.items():
        (out / name).write_bytes(data)
        files[name] = str(out / name)
    result["files"] = {**files, RESULT_FILE: str(out / RESULT_FILE)}
    write_json(result, out / RESULT_FILE)
    return result


def _null_landmarks(kind: str | None) -> dict[str, None]:
    from radqc.models.interfaces import CT_LANDMARKS

    return {} if kind == "radiograph" else {name: None for name in CT_LANDMARKS}


def _try_write(result: dict[str, Any], path: Path) -> None:
    from radqc.pipelines.anatomy.writers import write_json

    try:
        write_json(result, path)
        result["files"] = {"result.json": str(path)}
    except OSError:
        pass


def segment(
    path: Path = typer.Argument(..., help="Folder (or file) holding one CT series or a radiograph / CT 序列或X线片所在目录"),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: labels.nii.gz, seg.dcm, result.json / 输出目录"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (structures, landmarks, ...)."),
    seg_type: str = typer.Option("labelmap", "--seg-type", help="DICOM SEG type: labelmap (compressed) or binary."),
    no_seg: bool = typer.Option(False, "--no-seg", help="Do not write the DICOM SEG."),
    series: str = typer.Option(None, "--series", help="SeriesInstanceUID to analyse (default: the best CT series)."),
) -> None:
    """Segment the anatomy of a CT series (organs, landmarks, coverage) or a radiograph / 解剖结构分割."""
    if seg_type.upper() not in ("LABELMAP", "BINARY"):
        _fail(as_json, "bad_option", f"--seg-type must be labelmap or binary, not {seg_type!r}", EXIT_BAD_INPUT)
    try:
        result = segment_path(path, out, seg_type=seg_type.upper(), write_seg=not no_seg, series=series)
    except Exception as exc:  # noqa: BLE001 - the contract: never a traceback
        _fail(as_json, "internal_error", f"{type(exc).__name__}: {exc}", EXIT_INTERNAL)
    status = str(result.get("status"))
    code = EXIT_BY_STATUS.get(status, EXIT_INTERNAL)
    if code != EXIT_OK and result.get("error"):
        console.print(f"error / 错误 ({result['error']['code']}): {result['error']['message']}", markup=False,
                      highlight=False, style="red", soft_wrap=True)
    emit(result, as_json, _human)
    raise typer.Exit(code)


def _fail(as_json: bool, code: str, detail: str, exit_code: int) -> None:
    from radqc.text import bilingual

    table = {"bad_option": ("参数错误", "bad option"), "internal_error": ("内部错误", "internal error")}
    message = bilingual(table, code, detail)
    console.print(f"error / 错误: {message}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        emit({"status": "error", "error": {"code": code, "message": message}}, True)
    raise typer.Exit(exit_code)


def _human(result: dict[str, Any]) -> None:
    stdout.print(f"series / 序列 {result.get('series_instance_uid')} ({result.get('modality')}): "
                 f"status / 状态 {result.get('status')}", markup=False, highlight=False)
    for s in result.get("structures") or []:
        if "volume_ml" in s:
            stdout.print(f"  {s['label']:>3} {s['name']:<20} {s['volume_ml']:>10.1f} ml  z {s['z_min_mm']:.1f} .. "
                         f"{s['z_max_mm']:.1f} mm", markup=False, highlight=False)
        else:
            stdout.print(f"  {s['label']:>3} {s['name']:<20} {s.get('area_mm2')} mm²", markup=False, highlight=False)
    marks = {k: v for k, v in (result.get("landmarks") or {}).items() if v is not None}
    if marks:
        stdout.print("landmarks / 解剖标志: " + ", ".join(f"{k} {v}" for k, v in marks.items()), markup=False,
                     highlight=False)
    text = (result.get("coverage") or {}).get("text")
    if text:
        stdout.print(f"coverage / 覆盖范围: {text['zh']} / {text['en']}", markup=False, highlight=False)
    for w in result.get("warnings") or []:
        stdout.print(f"warning / 警告: {w}", markup=False, highlight=False)
    for name, file in (result.get("files") or {}).items():
        stdout.print(f"{name}: {file}", markup=False, highlight=False)
