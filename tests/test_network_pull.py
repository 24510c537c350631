"""``radqc pull`` against a real Orthanc: DICOMweb and DIMSE, by accession and date window,
and resuming after an interruption without fetching anything twice."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from radqc.catalogue import models as m
from radqc.pipelines.ingest import pull as pull_module
from radqc.pipelines.ingest.pull import DicomWebPeer, DimsePeer, PullProgress, PullQuery, pull
from radqc.pipelines.ingest.service import ingest_one
from tests.services import orthanc as orthanc_service
from tests.services.orthanc import RADQC_AET, synthetic_study, uids_of

pytestmark = pytest.mark.orthanc
orthanc = orthanc_service.orthanc  # fixture: one real Orthanc for the session
pacs = orthanc_service.pacs  # fixture: that Orthanc, emptied before each test
PROTOCOLS = ["dicomweb", "dimse"]


def make_peer(protocol: str, workspace, server):  # type: ignore[no-untyped-def]
    if protocol == "dicomweb":
        return DicomWebPeer(server.dicomweb_url)
    host, port = server.dimse.split(":")
    return DimsePeer(workspace, host, int(port), server.aet, ae_title=RADQC_AET, move_port=server.radqc_port)


def held_uids(workspace) -> list[str]:  # type: ignore[no-untyped-def]
    with workspace.sessions() as s:
        return sorted(s.scalars(select(m.Instance.sop_instance_uid)))


def sop_uids(files: list[bytes]) -> list[str]:
    return sorted(uids_of(f)[2] for f in files)


@pytest.fixture
def three_studies(pacs):  # type: ignore[no-untyped-def]
    """Three studies on the PACS: January 5, 15 and 25 of 2025, two series of three slices."""
    studies = {
        "ACC-A": synthetic_study(accession="ACC-A", study_date="20250105", patient_id="P1", seed=1),
        "ACC-B": synthetic_study(accession="ACC-B", study_date="20250115", patient_id="P2", seed=2),
        "ACC-C": synthetic_study(accession="ACC-C", study_date="20250125", patient_id="P1", seed=3),
    }
    pacs.upload([f for files in studies.values() for f in files])
    return studies


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pull_by_accession(protocol, workspace, pacs, three_studies):
    result = pull(workspace, make_peer(protocol, workspace, pacs), PullQuery(accession="ACC-B"))
    assert (result.studies_found, result.studies_done, result.studies_failed) == (1, 1, 0)
    assert result.summary.ingested == 6 and result.summary.quarantined == 0
    assert held_uids(workspace) == sop_uids(three_studies["ACC-B"])
    if protocol == "dicomweb":  # WADO-RS with transfer-syntax=* hands back the stored bytes
        with workspace.sessions() as s:
            hashes = set(s.scalars(select(m.Instance.content_hash)))
        assert hashes == {hashlib.sha256(f).hexdigest() for f in three_studies["ACC-B"]}
    with workspace.sessions() as s:
        assert set(s.scalars(select(m.Instance.source))) == {"pull"}
        assert s.scalar(select(m.Exam.accession_number)) == "ACC-B"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pull_by_date_window_is_inclusive(protocol, workspace, pacs, three_studies):
    query = PullQuery(since=date(2025, 1, 10), until=date(2025, 1, 25))
    result = pull(workspace, make_peer(protocol, workspace, pacs), query)
    assert (result.studies_found, result.studies_done) == (2, 2)
    assert held_uids(workspace) == sop_uids(three_studies["ACC-B"] + three_studies["ACC-C"])
    # The same pull again: both studies are complete in its job, nothing is fetched.
    again = pull(workspace, make_peer(protocol, workspace, pacs), query)
    assert (again.studies_found, again.studies_done, again.studies_skipped) == (2, 0, 2)
    assert again.summary.files_seen == 0


def test_pull_by_patient_id_and_open_ended_window(workspace, pacs, three_studies):
    result = pull(
        workspace, DicomWebPeer(pacs.dicomweb_url), PullQuery(patient_id="P1", since=date(2025, 1, 20))
    )
    assert result.studies_found == 1
    assert held_uids(workspace) == sop_uids(three_studies["ACC-C"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_interrupted_pull_resumes_without_refetching(protocol, workspace, pacs, three_studies):
    query = PullQuery(since=date(2025, 1, 1), until=date(2025, 1, 31))
    first = pull(workspace, make_peer(protocol, workspace, pacs), query, max_studies=1)
    assert first.interrupted and first.studies_done == 1 and first.summary.ingested == 6
    done_study = first.studies[0]["study_uid"]
    with workspace.sessions() as s:
        job = s.scalar(select(m.PullJob))
        assert job.progress[done_study]["state"] == "done" and len(job.progress) == 1
        first_rows = {r.sop_instance_uid: r.received_at for r in s.scalars(select(m.Instance))}

    second = pull(workspace, make_peer(protocol, workspace, pacs), query)
    assert second.studies_skipped == 1 and second.studies_done == 2
    assert second.summary.ingested == 12
    assert second.summary.duplicate == 0  # nothing of the first study was fetched again
    assert [s["state"] for s in second.studies if s["study_uid"] == done_study] == ["skipped"]
    all_files = [f for files in three_studies.values() for f in files]
    assert held_uids(workspace) == sop_uids(all_files)
    with workspace.sessions() as s:
        assert s.scalar(select(func.max(m.Instance.version))) == 1
        assert s.scalar(select(func.count(m.PullJob.id))) == 1
        for row in s.scalars(select(m.Instance)):  # rows of the first run are untouched
            if row.sop_instance_uid in first_rows:
                assert row.received_at == first_rows[row.sop_instance_uid]


class StopAfter(PullProgress):
    """Simulates a crash (Ctrl-C, killed process) after ``n`` instances of the second study."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.studies = 0

    def study_started(self, study, expected):  # type: ignore[no-untyped-def]
        self.studies += 1

    def instance(self, study, received):  # type: ignore[no-untyped-def]
        if self.studies == 2 and received >= self.n:
            raise KeyboardInterrupt


def test_pull_interrupted_inside_a_study_fetches_only_the_rest(workspace, pacs, three_studies, monkeypatch):
    monkeypatch.setattr(pull_module, "COMMIT_BATCH", 2)
    query = PullQuery(since=date(2025, 1, 1), until=date(2025, 1, 31))
    with pytest.raises(KeyboardInterrupt):
        pull(workspace, DicomWebPeer(pacs.dicomweb_url), query, progress=StopAfter(4))
    held = held_uids(workspace)
    assert len(held) == 6 + 4  # study A whole, four instances of study B
    with workspace.sessions() as s:
        job = s.scalar(select(m.PullJob))
        assert [v["state"] for v in job.progress.values()] == ["done"]

    resumed = pull(workspace, DicomWebPeer(pacs.dicomweb_url), query)
    assert resumed.studies_skipped == 1 and resumed.studies_done == 2
    assert resumed.summary.ingested == 2 + 6 and resumed.summary.duplicate == 0
    assert held_uids(workspace) == sop_uids([f for files in three_studies.values() for f in files])


def test_instances_already_catalogued_are_not_fetched(workspace, pacs, three_studies):
    # One series of study B arrived earlier by another route (e.g. the hospital's push).
    for data in three_studies["ACC-B"][:3]:
        ingest_one(workspace, data, "folder", "earlier")
    result = pull(workspace, make_peer("dimse", workspace, pacs), PullQuery(accession="ACC-B"))
    assert result.studies_done == 1
    assert result.summary.ingested == 3 and result.summary.duplicate == 0
    assert held_uids(workspace) == sop_uids(three_studies["ACC-B"])


def test_pull_cli_json_summary(workspace, pacs, three_studies):
    from radqc.cli.main import app

    runner = CliRunner()
    args = [
        "pull",
        "--dimse",
        pacs.dimse,
        "--called-ae",
        pacs.aet,
        "--ae-title",
        RADQC_AET,
        "--move-port",
        str(pacs.radqc_port),
        "--accession",
        "ACC-A",
        "--json",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["studies_found"] == 1 and data["studies_done"] == 1 and data["studies_skipped"] == 0
    assert data["instances_ingested"] == 6 and data["instances_duplicate"] == 0
    assert data["instances_quarantined"] == 0
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["studies_skipped"] == 1 and again["instances_ingested"] == 0


def test_pull_cli_refuses_an_empty_query_and_bad_dates(workspace, pacs):
    from radqc.cli.main import app

    runner = CliRunner()
    empty = runner.invoke(app, ["pull", "--dicomweb", pacs.dicomweb_url])
    assert empty.exit_code == 2
    bad = runner.invoke(app, ["pull", "--dicomweb", pacs.dicomweb_url, "--since", "31/01/2025"])
    assert bad.exit_code == 2


def test_move_destination_unknown_to_the_pacs_is_a_clear_failure(workspace, pacs, three_studies):
    host, port = pacs.dimse.split(":")
    peer = DimsePeer(workspace, host, int(port), pacs.aet, ae_title="NOTKNOWN", move_port=pacs.radqc_port)
    result = pull(workspace, peer, PullQuery(accession="ACC-A"))
    assert result.studies_failed == 1 and result.studies_done == 0
    assert "NOTKNOWN" in result.errors[0]
    with workspace.sessions() as s:
        job = s.scalar(select(m.PullJob))
        assert [v["state"] for v in job.progress.values()] == ["failed"]  # retried on the next run


def test_move_port_in_use_is_a_clear_failure(workspace, pacs, three_studies):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        host, port = pacs.dimse.split(":")
        peer = DimsePeer(
            workspace, host, int(port), pacs.aet, ae_title=RADQC_AET, move_port=busy.getsockname()[1]
        )
        result = pull(workspace, peer, PullQuery(accession="ACC-A"))
    assert result.studies_failed == 1 and "cannot listen for C-MOVE" in result.errors[0]
    assert workspace.status()["instances"] == 0
