"""``radqc synth``: plan a set of exams, render their images, write records and ground truth.

Layout of a generated set (documented in docs/synthetic-data.md)::

    DIR/manifest.json                       seed, profile, counts, generator version, exams
    DIR/dicom/<hospital_code>/<exam_key>/   the hospital export: what render_exam wrote
    DIR/labels/<exam_key>/                  label maps (NIfTI), kept out of the export
    DIR/records/exams.jsonl                 HIS/RIS exam records (orders, times, reports)
    DIR/records/charges.jsonl               charge lines
    DIR/truth/<exam_key>.json               the ground truth of one exam

The planner is pure and fast; rendering is the costly part. Everything is deterministic by
seed: the same (seed, n, profile, size) writes byte-identical records and truth.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from radqc.datasets.synthetic.clinical.identities import id_number_is_valid, phone_is_valid
from radqc.datasets.synthetic.clinical.imaging_qc import expected_result
from radqc.datasets.synthetic.clinical.planner import GENERATOR_VERSION, ExamPlan, plan_set, profile
from radqc.datasets.synthetic.spec import Defect, ImagingResult

TRUTH_SCHEMA = "radqc.synthetic.truth/1"
MANIFEST_SCHEMA = "radqc.synthetic.manifest/1"
DICOM_DIR = "dicom"
RECORDS_DIR = "records"
TRUTH_DIR = "truth"
LABELS_DIR = "labels"
EXAMS_FILE = "exams.jsonl"
CHARGES_FILE = "charges.jsonl"
#: Quarantine reasons ingest may give to each kind of deliberately broken file.
MALFORMED_FILE_REASONS = {
    "truncated": ["truncated", "pixel_data_short", "corrupt", "invalid_element"],
    "not_dicom": ["not_dicom"],
    "empty_file": ["empty_file"],
}

Renderer = Callable[..., ImagingResult]  # render_exam(spec, out_dir, *, labels_dir=None)
Progress = Callable[[int, int], None]


class GenerateError(RuntimeError):
    pass


def default_renderer() -> Renderer:
    """The real renderer (``datasets/synthetic/imaging``), imported only when rendering."""
    try:
        from radqc.datasets.synthetic.imaging import render_exam  # type: ignore[attr-defined]
    except ImportError:
        try:
            from radqc.datasets.synthetic.imaging.render import render_exam  # type: ignore[no-redef]
        except ImportError as exc:
            raise GenerateError(
                "the image renderer (datasets/synthetic/imaging: render_exam) is not available"
                " / 影像渲染器不可用"
            ) from exc
    return render_exam


def safe_name(text: str) -> str:
    """A folder name for an accession number (hospital formats may contain any character)."""
    return re.sub(r"[^0-9A-Za-z_.-]", "_", text) or "_"


def export_dir(plan: ExamPlan) -> str:
    """The folder render_exam writes into (it adds ``<exam_key>/``); one per hospital, so an
    F1 exam finds the exam whose pixels it reuses (same hospital) in the same folder."""
    return f"{DICOM_DIR}/{safe_name(plan.hospital.code)}"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def _applied_defects(result: ImagingResult | None) -> list[Any]:
    """Defects truly in the images: what the renderer reports it applied (the contract)."""
    return list(result.applied_defects) if result is not None else []


def _as_defects(items: list[Any]) -> list[Defect]:
    return [d if isinstance(d, Defect) else Defect(d["dimension"], d["value"], dict(d.get("params") or {})) for d in items]


def exam_truth(plan: ExamPlan, result: ImagingResult | None, set_info: dict[str, Any],
               lines: dict[str, Any], malformed_files: list[dict[str, Any]]) -> dict[str, Any]:
    """The ground truth of one exam (schema ``radqc.synthetic.truth/1``)."""
    ident = plan.identity
    applied = _as_defects(_applied_defects(result))
    return {
        "schema": TRUTH_SCHEMA,
        "generator_version": GENERATOR_VERSION,
        "set": set_info,
        "exam_key": plan.exam_key,
        "index": plan.index,
        "hospital": plan.hospital.to_dict(),
        "patient": {
            "patient_id": plan.patient_id,
            "name": ident.name,
            "name_pinyin": ident.name_pinyin,
            "sex": ident.sex,
            "birth_date": ident.birth_date.isoformat(),
            "age": ident.age_at(plan.timeline.exam_time.date()),
            "id_number": ident.id_number,
            "id_status": ident.id_status,
            "id_valid": id_number_is_valid(ident.id_number),
            "phone": ident.phone,
            "phone_status": ident.phone_status,
            "phone_valid": phone_is_valid(ident.phone),
            "same_person_as": plan.same_person_as,
        },
        "exam": {
            "accession_number": plan.accession,
            "modality": plan.modality,
            "urgency": plan.urgency,
            "device": plan.device.to_dict(),
            "times": plan.timeline.record(),
            "exam_end": plan.timeline.exam_end.replace(microsecond=0).isoformat(),
            "technician": plan.technician,
            "report_doctor": plan.report_doctor,
            "review_doctor": plan.review_doctor,
        },
        "order": {
            "exam_items": plan.order.exam_items,
            "style": plan.order.style,
            "noise": plan.order.noise,
            "items": plan.order.truth(),
            "imaged_items": [oi.to_dict() for oi in plan.imaged],
            "imaged_parts": sorted({oi.item.part for oi in plan.imaged}),
        },
        "spec": plan.spec.to_dict(),
        "export_dir": export_dir(plan),
        "imaging": result.to_dict() if result is not None else None,
        "expected_qc": expected_result(plan.modality, applied, exam_items=list(plan.order.exam_items)),
        "report": plan.report.truth(),
        "rule_qc": {"violations": plan.violations, "clean": not plan.violations},
        "charges": {
            "catalogue": plan.hospital.catalogue,
            "lines": [
                {**rec, "irregularity": ln.irregularity, "price_key": ln.key}
                for rec, ln in zip(plan.charge_records, plan.billing.lines, strict=True)
            ],
            "irregularities": plan.irregularities,
            "related": plan.related,
            "evidence": plan.facts,
            "clean": not plan.irregularities,
        },
        "records": lines,
        "malformed_files": malformed_files,
    }


def _verify_overlap(plan: ExamPlan, windows: dict[str, tuple[str, str]]) -> None:
    """F3: record the overlap the written headers really show (renderer acquisition windows)."""
    from datetime import datetime

    for irr in plan.irregularities:
        if irr["id"] != "F3":
            continue
        a = windows.get(irr["detail"]["partner_exam"])
        b = windows.get(plan.exam_key)
        if not a or not b:
            irr["detail"]["dicom_overlap_seconds"] = None
            continue
        start = max(datetime.fromisoformat(a[0]), datetime.fromisoformat(b[0]))
        end = min(datetime.fromisoformat(a[1]), datetime.fromisoformat(b[1]))
        irr["detail"]["dicom_overlap_seconds"] = round((end - start).total_seconds(), 1)
        irr["detail"]["acquisition_windows"] = {"partner": list(a), "this": list(b)}


# -- malformed inputs ------------------------------------------------------------------------
def _broken_exam_line(kind: str, record: dict[str, Any]) -> str:
    if kind == "bad_json":
        text = _dump(record)
        return text[: max(10, len(text) // 2)]
    broken = dict(record)
    if kind == "missing_hospital_code":
        broken.pop("hospital_code")
    elif kind == "bad_time":
        broken["exam_time"] = "2026-13-45 25:61"
    elif kind == "bad_sex":
        broken["patient_sex"] = "X"
    return _dump(broken)


def _broken_charge_line(kind: str, record: dict[str, Any]) -> str:
    broken = dict(record)
    broken["charge_id"] = str(record.get("charge_id", "")) + "-R"
    if kind == "bad_quantity":
        broken["quantity"] = "两次"
        return _dump(broken)
    text = _dump(broken)
    return text[: max(10, len(text) // 2)]


def _malformed_file_entry(plan: ExamPlan, result: ImagingResult | None) -> dict[str, Any] | None:
    """Where the exam's seeded broken file will go (written after every exam is rendered,
    so a broken file never sits in a folder another exam reuses pixels from)."""
    kind = plan.malformed_file
    if not kind:
        return None
    files = [f for s in (result.series if result else []) for f in s.files]
    exam_dir = f"{export_dir(plan)}/{plan.exam_key}"
    if kind == "truncated" and files:
        source = f"{export_dir(plan)}/{files[0]}"
        path = source.rsplit("/", 1)[0] + "/IM_TRUNC.dcm"
        return {"path": path, "kind": kind, "source": source, "expected_reasons": MALFORMED_FILE_REASONS[kind]}
    if kind == "empty_file":
        return {"path": f"{exam_dir}/IM_EMPTY.dcm", "kind": kind, "expected_reasons": MALFORMED_FILE_REASONS[kind]}
    return {"path": f"{exam_dir}/readme.txt", "kind": "not_dicom", "expected_reasons": MALFORMED_FILE_REASONS["not_dicom"]}


def _write_malformed_file(entry: dict[str, Any], set_root: Path) -> None:
    target = set_root / entry["path"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry["kind"] == "truncated":
        data = (set_root / entry["source"]).read_bytes()
        target.write_bytes(data[: max(200, int(len(data) * 0.6))])
    elif entry["kind"] == "empty_file":
        target.write_bytes(b"")
    else:
        target.write_text("云胶片导出说明 / cloud film export notes\n", encoding="utf-8")


# -- the set ---------------------------------------------------------------------------------
def _prepare(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        ours = {DICOM_DIR, RECORDS_DIR, TRUTH_DIR, LABELS_DIR, "manifest.json"}
        present = {p.name for p in out.iterdir()}
        if not force:
            raise GenerateError(f"output folder is not empty (use --force to replace a generated set) / 输出目录非空: {out}")
        if present - ours:
            raise GenerateError(f"refusing to clear a folder that is not a generated set / 目录不是生成的数据集: {out}")
        for name in present:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate_set(
    out: str | Path,
    n: int,
    seed: int,
    profile_name: str = "mixed",
    size: str = "small",
    *,
    progress: Progress | None = None,
    renderer: Renderer | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Generate ``n`` exams into ``out``; return the manifest (also written to manifest.json).

    This is the one function ``radqc demo`` and tests call to get a labelled set.
    """
    if n < 1:
        raise GenerateError("--exams must be at least 1 / 检查数至少为 1")
    if size not in ("small", "full"):
        raise GenerateError(f"unknown size {size!r} (small, full)")
    profile(profile_name)  # validates the name
    out = Path(out)
    _prepare(out, force)
    render = renderer or default_renderer()
    plans = plan_set(seed, n, profile_name, size)
    set_info = {"seed": seed, "profile": profile_name, "size": size, "n_exams": n}
    (out / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    (out / TRUTH_DIR).mkdir(parents=True, exist_ok=True)

    counts: Counter[str] = Counter()
    malformed_records: list[dict[str, Any]] = []
    all_malformed_files: list[dict[str, Any]] = []
    exams_index: list[dict[str, Any]] = []
    exam_line = charge_line = 0
    windows: dict[str, tuple[str, str]] = {}
    with (out / RECORDS_DIR / EXAMS_FILE).open("w", encoding="utf-8") as exams_out, \
            (out / RECORDS_DIR / CHARGES_FILE).open("w", encoding="utf-8") as charges_out:
        for done, plan in enumerate(plans, 1):
            exam_root = out / export_dir(plan)
            exam_root.mkdir(parents=True, exist_ok=True)
            result = render(plan.spec, exam_root, labels_dir=out / LABELS_DIR / plan.exam_key)
            window = (result.measurements or {}).get("acquisition_window") if result is not None else None
            if window:
                windows[plan.exam_key] = (str(window[0]), str(window[1]))
            _verify_overlap(plan, windows)
            malformed_files = []
            entry = _malformed_file_entry(plan, result)
            if entry is not None:
                malformed_files.append(entry)
                all_malformed_files.append({"exam_key": plan.exam_key, **entry})

            # records: the good lines, then a broken re-send when one is seeded
            exam_line += 1
            exams_out.write(_dump(plan.exam_record) + "\n")
            lines: dict[str, Any] = {"exams_file": f"{RECORDS_DIR}/{EXAMS_FILE}", "exam_line": exam_line,
                                     "charges_file": f"{RECORDS_DIR}/{CHARGES_FILE}", "charge_lines": [], "malformed": []}
            for rec in plan.charge_records:
                charge_line += 1
                charges_out.write(_dump(rec) + "\n")
                lines["charge_lines"].append(charge_line)
            kind = plan.malformed_record
            if kind in ("bad_quantity", "charge_bad_json") and plan.charge_records:
                charge_line += 1
                charges_out.write(_broken_charge_line(kind, plan.charge_records[0]) + "\n")
                entry = {"file": f"{RECORDS_DIR}/{CHARGES_FILE}", "line": charge_line, "kind": kind}
                lines["malformed"].append(entry)
                malformed_records.append({"exam_key": plan.exam_key, **entry})
            elif kind in ("bad_json", "missing_hospital_code", "bad_time", "bad_sex"):
                exam_line += 1
                exams_out.write(_broken_exam_line(kind, plan.exam_record) + "\n")
                entry = {"file": f"{RECORDS_DIR}/{EXAMS_FILE}", "line": exam_line, "kind": kind}
                lines["malformed"].append(entry)
                malformed_records.append({"exam_key": plan.exam_key, **entry})

            truth = exam_truth(plan, result, set_info, lines, malformed_files)
            (out / TRUTH_DIR / f"{plan.exam_key}.json").write_text(
                json.dumps(truth, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

            counts[f"modality:{plan.modality}"] += 1
            counts[f"layout:{plan.report.layout}"] += 1
            for irr in plan.irregularities:
                counts[f"irregularity:{irr['id']}"] += 1
            for v in plan.violations:
                counts[f"violation:{v['rule']}"] += 1
            for d in truth["expected_qc"]["deductions"]:
                counts[f"defect:{d['dimension']}:{d['value']}"] += 1
            counts[f"grade:{truth['expected_qc']['grade']}"] += 1
            if result is not None:
                counts["series"] += len(result.series)
                counts["instances"] += sum(s.n_instances for s in result.series)
                counts["files"] += sum(len(s.files) for s in result.series)
            counts["charge_lines"] += len(plan.charge_records)
            exams_index.append({"exam_key": plan.exam_key, "accession_number": plan.accession,
                                "hospital_code": plan.hospital.code, "modality": plan.modality,
                                "export_dir": export_dir(plan),
                                "study_instance_uid": result.study_instance_uid if result else None})
            if progress:
                progress(done, n)

    for entry in all_malformed_files:
        _write_malformed_file(entry, out)

    manifest = {
        "schema": MANIFEST_SCHEMA,
        "generator_version": GENERATOR_VERSION,
        **set_info,
        "layout": {"dicom": f"{DICOM_DIR}/<hospital_code>/<exam_key>/", "labels": f"{LABELS_DIR}/<exam_key>/",
                   "exam_records": f"{RECORDS_DIR}/{EXAMS_FILE}",
                   "charge_lines": f"{RECORDS_DIR}/{CHARGES_FILE}", "truth": f"{TRUTH_DIR}/<exam_key>.json"},
        "counts": {"exams": n, "exam_records": exam_line - sum(1 for m in malformed_records if m["file"].endswith(EXAMS_FILE)),
                   "malformed_records": len(malformed_records), "malformed_files": len(all_malformed_files),
                   **dict(sorted(counts.items()))},
        "malformed_records": malformed_records,
        "malformed_files": all_malformed_files,
        "exams": exams_index,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


def load_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise GenerateError(f"no manifest.json in {root}: not a generated set / 不是生成的数据集")
    return json.loads(path.read_text(encoding="utf-8"))


def iter_truth(root: str | Path):  # type: ignore[no-untyped-def]
    """Yield every exam's truth dict of a generated set, in exam order."""
    for path in sorted((Path(root) / TRUTH_DIR).glob("*.json")):
        yield json.loads(path.read_text(encoding="utf-8"))


def ingest_generated_set(workspace: Any, root: str | Path, workers: int | None = None) -> dict[str, Any]:
    """Ingest a generated set into ``workspace``: the DICOM export, then the records.

    What ``radqc demo`` does after :func:`generate_set`; only the deliberately broken inputs
    listed in the manifest end in the quarantine.
    """
    from radqc.pipelines.ingest.folder import ingest_path
    from radqc.pipelines.ingest.records import ingest_records

    root = Path(root)
    manifest = load_manifest(root)
    images = ingest_path(workspace, root / DICOM_DIR, workers=workers).to_dict()
    exams = ingest_records(workspace, root / manifest["layout"]["exam_records"]).to_dict()
    charges = ingest_records(workspace, root / manifest["layout"]["charge_lines"]).to_dict()
    return {"images": images, "exam_records": exams, "charge_lines": charges}
