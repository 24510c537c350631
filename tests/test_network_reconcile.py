"""``radqc reconcile`` against a real Orthanc: exact gaps at study, series and instance level,
then a back-fill that leaves the catalogue holding everything exactly once."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from radqc.catalogue import models as m
from radqc.pipelines.ingest.pull import DicomWebPeer, DimsePeer
from radqc.pipelines.ingest.reconcile import reconcile
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


@pytest.fixture
def gapped(workspace, pacs):  # type: ignore[no-untyped-def]
    """The PACS holds five studies; the catalogue got only part of what was pushed in March.

    * COMPLETE: everything arrived
    * LOST: nothing arrived (a missing study)
    * SERIES: its second series never arrived (a missing series)
    * SHORT: series 1 arrived whole, series 2 lacks 2 of its 4 slices (missing instances)
    * OUTSIDE: nothing arrived, but it is from February, outside the window
    """
    studies = {
        "COMPLETE": synthetic_study(accession="COMPLETE", study_date="20250303", seed=1),
        "LOST": synthetic_study(accession="LOST", study_date="20250305", series=3, slices=2, seed=2),
        "SERIES": synthetic_study(accession="SERIES", study_date="20250310", seed=3),
        "SHORT": synthetic_study(accession="SHORT", study_date="20250331", slices=4, seed=4),
        "OUTSIDE": synthetic_study(accession="OUTSIDE", study_date="20250227", seed=5),
    }
    pacs.upload([f for files in studies.values() for f in files])
    arrived = studies["COMPLETE"] + studies["SERIES"][:3] + studies["SHORT"][:4] + studies["SHORT"][5:7]
    for data in arrived:
        ingest_one(workspace, data, "scp", "HOSPITAL@10.0.0.1")
    return studies


def test_reconcile_reports_exact_gaps_without_pulling(workspace, pacs, gapped):
    report = reconcile(
        workspace, DicomWebPeer(pacs.dicomweb_url), date(2025, 3, 1), date(2025, 3, 31), backfill=False
    )
    data = report.to_dict()
    lost_uid = uids_of(gapped["LOST"][0])[0]
    assert data["pacs_studies"] == 4 and data["pacs_instances"] == 6 + 6 + 6 + 8
    assert [(r["study_uid"], r["series"], r["instances"]) for r in data["missing_studies"]] == [
        (lost_uid, 3, 6)
    ]
    assert [(r["accession"], r["series_uid"], r["instances"]) for r in data["missing_series"]] == [
        ("SERIES", uids_of(gapped["SERIES"][3])[1], 3)
    ]
    short = data["missing_instances"]
    assert len(short) == 1
    assert (short[0]["accession"], short[0]["series_uid"]) == ("SHORT", uids_of(gapped["SHORT"][4])[1])
    assert (short[0]["pacs_instances"], short[0]["catalogue_instances"], short[0]["missing"]) == (4, 2, 2)
    assert sorted(short[0]["sop_instance_uids"]) == sorted(
        uids_of(f)[2] for f in (gapped["SHORT"][4], gapped["SHORT"][7])
    )
    assert data["counts"] == {
        "missing_studies": 1,
        "missing_series": 1,
        "missing_instances": 2,
        "instances_to_fetch": 11,
    }
    assert data["backfilled"] == {"performed": False}
    assert workspace.status()["instances"] == 6 + 3 + 6  # nothing was fetched


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reconcile_backfills_exactly_what_is_missing(protocol, workspace, pacs, gapped):
    report = reconcile(workspace, make_peer(protocol, workspace, pacs), date(2025, 3, 1), date(2025, 3, 31))
    data = report.to_dict()
    assert data["counts"]["instances_to_fetch"] == 11
    backfilled = data["backfilled"]
    assert backfilled["performed"] and backfilled["complete"]
    assert backfilled["instances_ingested"] == 11
    assert backfilled["instances_duplicate"] == 0 and backfilled["instances_quarantined"] == 0
    assert backfilled["remaining_missing_instances"] == 0 and data["remaining_gaps"] == 0

    inside = [f for k, files in gapped.items() if k != "OUTSIDE" for f in files]
    with workspace.sessions() as s:
        uids = list(s.scalars(select(m.Instance.sop_instance_uid)))
        assert Counter(uids) == Counter(uids_of(f)[2] for f in inside)  # each exactly once
        assert s.scalar(select(func.max(m.Instance.version))) == 1
        assert s.scalar(select(func.count(m.Exam.id))) == 4
        back = Counter(s.scalars(select(m.Instance.source)))
    assert back == {"scp": 15, "pull": 11}

    # A second reconcile finds nothing left to do.
    again = reconcile(
        workspace, make_peer(protocol, workspace, pacs), date(2025, 3, 1), date(2025, 3, 31)
    ).to_dict()
    assert again["counts"]["instances_to_fetch"] == 0 and again["backfilled"] == {"performed": False}


def test_reconcile_cli_json(workspace, pacs, gapped):
    from radqc.cli.main import app

    runner = CliRunner()
    base = [
        "reconcile",
        "--pacs",
        pacs.dimse,
        "--called-ae",
        pacs.aet,
        "--ae-title",
        RADQC_AET,
        "--move-port",
        str(pacs.radqc_port),
        "--since",
        "2025-03-01",
        "--until",
        "2025-03-31",
        "--json",
    ]
    report_only = runner.invoke(app, [*base, "--no-pull"])
    assert report_only.exit_code == 1  # gaps remain
    data = json.loads(report_only.stdout)
    for key in ("missing_studies", "missing_series", "missing_instances", "backfilled"):
        assert key in data
    assert len(data["missing_studies"]) == 1 and data["backfilled"]["performed"] is False

    fixed = runner.invoke(app, base)
    assert fixed.exit_code == 0, fixed.output
    data = json.loads(fixed.stdout)
    assert data["backfilled"]["instances_ingested"] == 11 and data["remaining_gaps"] == 0
