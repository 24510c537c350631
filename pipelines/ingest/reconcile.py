"""``radqc reconcile``: find what a PACS holds that the catalogue lacks (防漏传), and back-fill
it (补传).

Hospitals push exams to the cloud; pushes get lost (a modality that retried and gave up, a
network outage, a forwarding rule that skipped a series). Reconciliation asks the PACS what
it holds for a StudyDate window — studies with their instance counts, then series counts
only for studies the catalogue knows, then instance lists only for series whose counts
disagree — and reports the gaps at each level. Unless told not to, it then fetches exactly
the missing studies, series and instances through the pull path (same ingest rules) and
checks again, so ``backfilled`` reports what is really in the catalogue afterwards, not
what was requested.

The catalogue itself is the resume state: re-running a reconcile that was interrupted
recomputes the gaps and fetches only what is still missing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from radqc.pipelines.ingest.pull import (
    STATE_DONE,
    PacsPeer,
    PullError,
    PullProgress,
    PullQuery,
    Sink,
    StudyGap,
    StudyInfo,
    catalogue_index,
    study_gap,
)
from radqc.pipelines.ingest.service import IngestSummary
from radqc.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    peer: str
    protocol: str
    since: str | None
    until: str | None
    pacs_studies: int = 0
    pacs_instances: int = 0
    gaps: list[StudyGap] = field(default_factory=list)
    backfill: dict[str, Any] = field(default_factory=lambda: {"performed": False})
    remaining: list[StudyGap] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        missing_studies, missing_series, missing_instances = [], [], []
        for gap in self.gaps:
            s = gap.study
            if not gap.in_catalogue:
                missing_studies.append(
                    {
                        "study_uid": s.study_uid,
                        "accession": s.accession,
                        "study_date": s.study_date,
                        "series": s.series_count,
                        "instances": s.instance_count,
                    }
                )
                continue
            for series_uid, count in sorted(gap.missing_series.items()):
                missing_series.append(
                    {
                        "study_uid": s.study_uid,
                        "accession": s.accession,
                        "series_uid": series_uid,
                        "instances": count,
                    }
                )
            for series_uid, sops in sorted(gap.missing_instances.items()):
                pacs_count, held_count = gap.short_counts.get(series_uid, (None, 0))
                missing_instances.append(
                    {
                        "study_uid": s.study_uid,
                        "accession": s.accession,
                        "series_uid": series_uid,
                        "pacs_instances": pacs_count,
                        "catalogue_instances": held_count,
                        "missing": len(sops),
                        "sop_instance_uids": sops,
                    }
                )
        remaining = self.remaining if self.remaining is not None else self.gaps
        return {
            "peer": self.peer,
            "protocol": self.protocol,
            "since": self.since,
            "until": self.until,
            "pacs_studies": self.pacs_studies,
            "pacs_instances": self.pacs_instances,
            "missing_studies": missing_studies,
            "missing_series": missing_series,
            "missing_instances": missing_instances,
            "counts": {
                "missing_studies": len(missing_studies),
                "missing_series": len(missing_series),
                "missing_instances": sum(row["missing"] for row in missing_instances),
                "instances_to_fetch": sum(g.missing_count for g in self.gaps),
            },
            "backfilled": self.backfill,
            "remaining_gaps": sum(1 for g in remaining if not g.complete),
            "seconds": round(self.seconds, 3),
        }


def find_gaps(workspace: Workspace, peer: PacsPeer, studies: list[StudyInfo]) -> list[StudyGap]:
    """Gaps of the given PACS studies against the catalogue (complete studies left out)."""
    held = catalogue_index(workspace, [s.study_uid for s in studies])
    gaps = [study_gap(peer, study, held.get(study.study_uid)) for study in studies]
    return [g for g in gaps if not g.complete]


def reconcile(
    workspace: Workspace,
    peer: PacsPeer,
    since: date,
    until: date | None = None,
    *,
    backfill: bool = True,
    progress: PullProgress | None = None,
) -> ReconcileReport:
    """Compare the PACS's studies in [since, until] with the catalogue; back-fill unless told not to."""
    started = time.perf_counter()
    progress = progress or PullProgress()
    report = ReconcileReport(
        peer=peer.peer,
        protocol=peer.protocol,
        since=since.isoformat(),
        until=until.isoformat() if until else None,
    )
    try:
        studies = peer.find_studies(PullQuery(since=since, until=until))
        report.pacs_studies = len(studies)
        report.pacs_instances = sum(s.instance_count or 0 for s in studies)
        report.gaps = find_gaps(workspace, peer, studies)
        if backfill and report.gaps:
            report.backfill = _backfill(workspace, peer, report.gaps, progress)
            gappy = [g.study for g in report.gaps]
            report.remaining = find_gaps(workspace, peer, gappy)
            report.backfill["remaining_missing_instances"] = sum(g.missing_count for g in report.remaining)
            report.backfill["complete"] = not report.remaining
    finally:
        peer.close()
    report.seconds = time.perf_counter() - started
    return report


def _backfill(
    workspace: Workspace, peer: PacsPeer, gaps: list[StudyGap], progress: PullProgress
) -> dict[str, Any]:
    summary = IngestSummary()
    sink = Sink(workspace, f"{peer.protocol}:{peer.peer} reconcile", progress, summary)
    studies_done, errors = 0, []
    for gap in gaps:
        units = gap.units()
        sink.begin(gap.study)
        progress.study_started(gap.study, sum(u.expected or 0 for u in units))
        try:
            for unit in units:
                peer.fetch(unit, sink)
        except PullError as exc:  # one study failing does not stop the others
            errors.append(str(exc))
            progress.study_finished(gap.study, "failed", sink.tally)
            continue
        studies_done += 1
        progress.study_finished(gap.study, STATE_DONE, sink.tally)
    return {
        "performed": True,
        "studies": studies_done,
        "instances_ingested": summary.ingested,
        "instances_duplicate": summary.duplicate,
        "instances_quarantined": summary.quarantined,
        "quarantine_reasons": dict(summary.reasons),
        "errors": errors,
    }
