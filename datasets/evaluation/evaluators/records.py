"""``radqc eval records``: are HIS/RIS records accepted, broken lines quarantined, and every
record linked to its images?

The export is ingested first (images), then ``records/exams.jsonl`` and
``records/charges.jsonl`` with ``radqc ingest-records``' own code, into a scratch
workspace. Every line is a sample labelled ``valid`` or ``malformed`` (seeded broken
re-sends) with an outcome ``accepted`` or ``quarantined``. Linkage: an exam record is
correctly linked when its exam is the study the generator rendered for that accession
(accession linkage rate); a charge line when it points at that exam too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from radqc.datasets.evaluation.evaluators.ingest import ingest_dicom
from radqc.datasets.evaluation.harness import EvalContext, EvalReport
from radqc.datasets.evaluation.metrics import Rate, classification
from radqc.datasets.evaluation.registry import register

VALID = "valid"
MALFORMED = "malformed"
ACCEPTED = "valid"  # an accepted line is predicted valid
QUARANTINED = "malformed"


def _line_count(path: Any) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


@register("records", "HIS/RIS record ingest: broken lines quarantined, records and charges linked to their images",
          requires=("radqc.pipelines.ingest.records",))
def evaluate(ctx: EvalContext) -> EvalReport:
    from radqc.catalogue import models as m
    from radqc.pipelines.ingest.records import ingest_records

    ws = ctx.workspace()
    root = ctx.data.resolve()
    manifest = ctx.manifest
    report = EvalReport(stage="records", n=0, unit="record line")
    if ctx.options.get("with_images", True):
        images = ingest_dicom(ctx, ws)
        report.counts["image_files_ingested"] = images["ingested"]
    files = {"exams": root / manifest["layout"]["exam_records"], "charges": root / manifest["layout"]["charge_lines"]}
    for kind, path in files.items():
        summary = ingest_records(ws, path).to_dict()
        report.counts[f"{kind}_seen"] = summary["records_seen"]
        report.counts[f"{kind}_quarantined"] = summary["quarantined"]

    malformed = {(str(root / r["file"]), r["line"]) for r in manifest.get("malformed_records", [])}
    with ws.sessions() as s:
        quarantined_refs = {row for row in s.scalars(select(m.QuarantineItem.source_ref).where(m.QuarantineItem.source == "records"))}
        truth_labels: list[str] = []
        outcomes: list[str] = []
        for path in files.values():
            with open(path, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    label = MALFORMED if (str(path), number) in malformed else VALID
                    got = QUARANTINED if f"{path}:{number}" in quarantined_refs else ACCEPTED
                    truth_labels.append(label)
                    outcomes.append(got)
                    if label != got:
                        report.fail(kind="valid_line_quarantined" if label == VALID else "malformed_line_accepted",
                                    file=str(path.relative_to(root)), line=number)

        records = {(r.hospital_code, r.accession_number): r for r in s.scalars(select(m.ExamRecord))}
        exam_uid = {e.id: e.study_instance_uid for e in s.scalars(select(m.Exam))}
        charges: dict[str, list[Any]] = {}
        for c in s.scalars(select(m.ChargeLine)):
            charges.setdefault(c.accession_number, []).append(c)

        linked = Rate(0, 0)
        items_kept = Rate(0, 0)
        charge_linked = Rate(0, 0)
        charge_count = Rate(0, 0)
        for truth in ctx.truths():
            acc = truth["exam"]["accession_number"]
            study = (truth.get("imaging") or {}).get("study_instance_uid")
            rec = records.get((truth["hospital"]["code"], acc))
            linked.denominator += 1
            items_kept.denominator += 1
            if rec is None:
                report.fail(kind="record_missing", exam=truth["exam_key"], accession=acc)
            else:
                if study and exam_uid.get(rec.exam_id) == study:
                    linked.numerator += 1
                else:
                    report.fail(kind="record_not_linked", exam=truth["exam_key"], accession=acc)
                # ingest strips surrounding whitespace of every value; nothing else may change
                if [i.strip() for i in rec.exam_items or []] == [i.strip() for i in truth["order"]["exam_items"]]:
                    items_kept.numerator += 1
                else:
                    report.fail(kind="exam_items_changed", exam=truth["exam_key"], got=rec.exam_items,
                                expected=truth["order"]["exam_items"])
            lines = charges.get(acc, [])
            charge_count.denominator += 1
            charge_count.numerator += int(len(lines) == len(truth["charges"]["lines"]))
            for line in lines:
                charge_linked.denominator += 1
                charge_linked.numerator += int(bool(study) and exam_uid.get(line.exam_id) == study)

    report.n = len(truth_labels)
    report.classifications["record_outcome"] = classification("record_outcome", truth_labels, outcomes,
                                                              labels=[VALID, MALFORMED])
    report.rates = {
        "accession_linkage": linked,
        "charge_linkage": charge_linked,
        "charge_lines_per_exam_match": charge_count,
        "exam_items_kept_as_written": items_kept,
        "malformed_quarantined": Rate(sum(1 for t, o in zip(truth_labels, outcomes, strict=True) if t == o == MALFORMED),
                                      truth_labels.count(MALFORMED)),
        "valid_accepted": Rate(sum(1 for t, o in zip(truth_labels, outcomes, strict=True) if t == o == VALID),
                               truth_labels.count(VALID)),
    }
    return report
