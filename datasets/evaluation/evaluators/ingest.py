"""``radqc eval ingest``: does ingest catalogue every generated instance and quarantine
every deliberately broken file, and does the catalogue agree with the truth?

The folder's ``dicom/`` export is ingested into a scratch workspace. Every file is a
sample with a truth label — ``valid`` (rendered by the generator) or ``malformed``
(truncated, empty, not DICOM) — and an outcome — ``catalogued``, ``quarantined`` or
``missing`` (neither: silently dropped, the worst case). The per-exam checks compare the
catalogue's exam with the truth: all instances present, accession number, hospital code,
patient sex, number of series.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from radqc.datasets.evaluation.harness import EvalContext, EvalReport
from radqc.datasets.evaluation.metrics import Rate, classification
from radqc.datasets.evaluation.registry import register

VALID = "valid"
MALFORMED = "malformed"
MISSING = "missing"


def _sop_uid(path: Path) -> str | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(ds.SOPInstanceUID)
    except Exception:  # noqa: BLE001 - a generated file that cannot be read is itself a finding
        return None


def ingest_dicom(ctx: EvalContext, ws: Any) -> dict[str, Any]:
    from radqc.pipelines.ingest.folder import ingest_path

    return ingest_path(ws, (ctx.data / "dicom").resolve(), workers=ctx.options.get("workers")).to_dict()


@register("ingest", "DICOM ingest of a generated export: every instance catalogued, every broken file quarantined")
def evaluate(ctx: EvalContext) -> EvalReport:
    from radqc.catalogue import models as m

    ws = ctx.workspace()
    summary = ingest_dicom(ctx, ws)
    manifest = ctx.manifest
    root = ctx.data.resolve()
    report = EvalReport(stage="ingest", n=0, unit="file")
    report.counts = {k: summary[k] for k in ("files_seen", "ingested", "duplicate", "quarantined")}

    with ws.sessions() as s:
        catalogued = set(s.scalars(select(m.Instance.sop_instance_uid)))
        quarantined = {row.source_ref: row.reason_code for row in s.execute(
            select(m.QuarantineItem.source_ref, m.QuarantineItem.reason_code))}
        exams = {row.study_instance_uid: row for row in s.scalars(select(m.Exam))}
        hospitals = {h.id: h.code for h in s.scalars(select(m.Hospital))}
        patients = {p.id: p.sex for p in s.scalars(select(m.Patient))}
        series_counts = dict(s.execute(select(m.Series.exam_id, func.count(m.Series.id)).group_by(m.Series.exam_id)).all())

        truth_labels: list[str] = []
        outcomes: list[str] = []
        exams_complete = Rate(0, 0)
        accession_ok = Rate(0, 0)
        hospital_ok = Rate(0, 0)
        sex_ok = Rate(0, 0)
        series_ok = Rate(0, 0)
        name_only = Rate(0, 0)
        for truth in ctx.truths():
            imaging = truth.get("imaging")
            if not imaging:
                continue
            base = root / truth["export_dir"]
            all_in = True
            for series in imaging["series"]:
                for rel in series["files"]:
                    path = base / rel
                    uid = _sop_uid(path)
                    truth_labels.append(VALID)
                    if uid is not None and uid in catalogued:
                        outcomes.append(VALID)
                    elif str(path) in quarantined:
                        outcomes.append(MALFORMED)
                        all_in = False
                        report.fail(kind="valid_file_quarantined", exam=truth["exam_key"], file=str(path.relative_to(root)),
                                    reason=quarantined[str(path)])
                    else:
                        outcomes.append(MISSING)
                        all_in = False
                        report.fail(kind="valid_file_missing", exam=truth["exam_key"], file=str(path.relative_to(root)))
            exams_complete.denominator += 1
            exams_complete.numerator += int(all_in)
            exam = exams.get(imaging["study_instance_uid"])
            for rate in (accession_ok, hospital_ok, sex_ok, series_ok, name_only):
                rate.denominator += 1
            if exam is None:
                report.fail(kind="exam_missing", exam=truth["exam_key"])
                continue
            if exam.accession_number == truth["exam"]["accession_number"]:
                accession_ok.numerator += 1
            else:
                report.fail(kind="accession_mismatch", exam=truth["exam_key"], got=exam.accession_number)
            code = hospitals.get(exam.hospital_id)
            if code == truth["hospital"]["code"]:
                hospital_ok.numerator += 1
            elif code == f"NAME:{truth['hospital']['name']}":
                # No InstitutionCodeSequence in the files: ingest keyed the hospital by name.
                name_only.numerator += 1
            else:
                report.fail(kind="hospital_mismatch", exam=truth["exam_key"], got=code)
            if patients.get(exam.patient_id) == truth["patient"]["sex"]:
                sex_ok.numerator += 1
            if series_counts.get(exam.id, 0) == len(imaging["series"]):
                series_ok.numerator += 1
            else:
                report.fail(kind="series_count", exam=truth["exam_key"], got=series_counts.get(exam.id, 0),
                            expected=len(imaging["series"]))

    reason_ok = Rate(0, 0)
    for bad in manifest.get("malformed_files", []):
        path = str(root / bad["path"])
        truth_labels.append(MALFORMED)
        if path in quarantined:
            outcomes.append(MALFORMED)
            reason_ok.denominator += 1
            reason_ok.numerator += int(quarantined[path] in bad["expected_reasons"])
        else:
            outcomes.append(MISSING)
            report.fail(kind="malformed_not_quarantined", file=bad["path"], expected=bad["expected_reasons"])
    report.n = len(truth_labels)
    report.classifications["file_outcome"] = classification(
        "file_outcome", truth_labels, outcomes, labels=[VALID, MALFORMED, MISSING])
    report.rates = {
        "instances_catalogued": Rate(sum(1 for t, o in zip(truth_labels, outcomes, strict=True) if t == VALID and o == VALID),
                                     truth_labels.count(VALID)),
        "malformed_quarantined": Rate(sum(1 for t, o in zip(truth_labels, outcomes, strict=True) if t == MALFORMED and o == MALFORMED),
                                      truth_labels.count(MALFORMED)),
        "quarantine_reason_expected": reason_ok,
        "exams_complete": exams_complete,
        "accession_match": accession_ok,
        "hospital_code_match": hospital_ok,
        "hospital_by_name_only": name_only,
        "patient_sex_match": sex_ok,
        "series_count_match": series_ok,
    }
    return report
