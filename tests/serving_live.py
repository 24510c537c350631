"""A live service over a seeded synthetic catalogue, for the browser tests (and benchmarks).

Why a real server: the browser must talk HTTP to the real app (CSP headers, static files,
token handling, image responses), not to an in-process test client. The catalogue is real
too: synthetic DICOM exams generated, ingested and run through every pipeline stage, so the
QC panel shows what the stages actually produced.

The seed is chosen so that a returning patient (profile ``regional``: the same person at two
hospitals) had a CT at the first hospital and a later exam at a second one — the 互认 case.
Users:

* ``dr_later``: a doctor at the later hospital; the patient authorised that hospital.
* ``dr_third``: a doctor at a third hospital with no authorisation (must be refused).
* ``qc_l2``: a level-2 QC expert (region scope, stats.read + stats.export).

Everything lives in a temporary folder; the server runs in a background thread on a socket
bound to a free loopback port and is stopped when the session ends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The synthetic set: seed 1, 6 exams of profile "regional": exam E00002 (DX, hospital
#: 471023452) is the same person as E00000 (a head + chest CT at hospital 470012348).
SEED = 1
N_EXAMS = 6
PROFILE = "regional"
PASSWORD = "correct-horse-battery-9"


@dataclass
class LiveService:
    """What a browser test needs to know about the running service and its catalogue."""

    base_url: str
    workspace: Any
    #: the returning patient's earlier (other-hospital) CT exam, and the later exam
    ct_exam_id: int
    later_exam_id: int
    #: the later exam's patient row (what the doctor opens), and the CT's patient row
    later_patient_id: int
    ct_patient_id: int
    later_hospital: str
    ct_hospital: str
    third_hospital: str
    users: dict[str, str] = field(default_factory=dict)
    password: str = PASSWORD


def _free_socket() -> socket.socket:
    """A listening loopback socket on a port the OS picked (no race with parallel runs)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def _returning_pair(set_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (earlier CT truth, later exam truth) of a returning patient in the generated set."""
    from radqc.datasets.synthetic.generate import iter_truth

    truths = {t["exam_key"]: t for t in iter_truth(set_root)}
    for later in truths.values():
        earlier_key = later["patient"].get("same_person_as")
        if earlier_key and truths[earlier_key]["exam"]["modality"] == "CT":
            return truths[earlier_key], later
    raise AssertionError(f"seed {SEED} has no returning patient with an earlier CT; pick another seed")


def seed_catalogue(workspace: Any, set_root: Path) -> dict[str, Any]:
    """Generate, ingest and run every pipeline stage; return the returning patient's exam ids."""
    from sqlalchemy import select

    from radqc.catalogue import models as m
    from radqc.datasets.synthetic.generate import generate_set, ingest_generated_set, load_manifest
    from radqc.pipelines.runner.local import run_pipeline

    generate_set(set_root, N_EXAMS, SEED, PROFILE, "small", force=True)
    ingest_generated_set(workspace, set_root, workers=1)
    summary = run_pipeline(workspace, workers=1)
    assert summary.failed == 0, summary.errors
    earlier, later = _returning_pair(set_root)
    uids = {e["exam_key"]: e["study_instance_uid"] for e in load_manifest(set_root)["exams"]}
    with workspace.sessions() as s:
        rows = {key: s.execute(select(m.Exam.id, m.Exam.patient_id, m.Hospital.code)
                               .join(m.Hospital, m.Hospital.id == m.Exam.hospital_id)
                               .where(m.Exam.study_instance_uid == uids[key])).one()
                for key in (earlier["exam_key"], later["exam_key"])}
        hospitals = set(s.scalars(select(m.Hospital.code)))
    ct, lat = rows[earlier["exam_key"]], rows[later["exam_key"]]
    third = sorted(hospitals - {ct[2], lat[2]})[0]
    return {"ct_exam_id": ct[0], "ct_patient_id": ct[1], "ct_hospital": ct[2],
            "later_exam_id": lat[0], "later_patient_id": lat[1], "later_hospital": lat[2], "third_hospital": third}


def add_users_and_authorisation(workspace: Any, ids: dict[str, Any]) -> dict[str, str]:
    from radqc.serving.accounts import create_user, grant_authorisation, hospital_by_code, person_key_of_exam

    users = {"later": "dr_later", "third": "dr_third", "stats": "qc_l2"}
    with workspace.transaction() as s:
        for code in (ids["later_hospital"], ids["third_hospital"]):
            hospital_by_code(s, code, create=True)
        create_user(s, users["later"], "doctor", password=PASSWORD, hospital_code=ids["later_hospital"],
                    display_name="王医生")
        create_user(s, users["third"], "doctor", password=PASSWORD, hospital_code=ids["third_hospital"],
                    display_name="赵医生")
        create_user(s, users["stats"], "qc_expert_l2", password=PASSWORD, display_name="质控专家")
        # The patient allows the later hospital to view their exams (患者授权调阅).
        grant_authorisation(s, person_key_of_exam(s, ids["ct_exam_id"]), ids["later_hospital"], channel="test")
    return users


class _ServerThread:
    """uvicorn in a daemon thread, on a socket we bound; ``stop()`` asks it to exit and waits."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = _free_socket()
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="radqc-live-server")

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def _database_url(request: pytest.FixtureRequest, root: Path) -> str:
    """PostgreSQL (the deployed backend) when the run includes it, else the embedded SQLite.

    One backend per session: the browser tests are about the page and the HTTP contract (the
    API suites run on both backends); ``RADQC_TEST_BACKENDS=sqlite`` keeps them on SQLite.
    """
    backends = [b.strip() for b in os.environ.get("RADQC_TEST_BACKENDS", "sqlite,postgresql").split(",")]
    if "postgresql" in backends:
        try:
            server = request.getfixturevalue("postgres_server")
        except pytest.skip.Exception:  # PostgreSQL not installed here (CI fails in the fixture instead)
            server = None
        if server is not None:
            url: str = server.create_database(f"radqc_live_{os.getpid()}")
            return url
    return f"sqlite:///{root / 'catalogue.sqlite'}"


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[LiveService]:
    """The seeded catalogue behind a real uvicorn server on a free loopback port (session-wide)."""
    from radqc.serving.app import create_app
    from radqc.workspace import Workspace

    root = tmp_path_factory.mktemp("live")
    saved = {k: os.environ.get(k) for k in ("RADQC_HOME", "RADQC_DATABASE_URL", "RADQC_OBJECTS_DIR")}
    os.environ["RADQC_HOME"] = str(root / "ws")
    os.environ["RADQC_DATABASE_URL"] = _database_url(request, root)
    os.environ.pop("RADQC_OBJECTS_DIR", None)
    workspace = Workspace.open(root / "ws", create=True)
    server: _ServerThread | None = None
    try:
        ids = seed_catalogue(workspace, root / "set")
        users = add_users_and_authorisation(workspace, ids)
        server = _ServerThread(create_app(workspace))
        server.start()
        (root / "live.json").write_text(json.dumps(ids), encoding="utf-8")
        yield LiveService(base_url=f"http://127.0.0.1:{server.port}", workspace=workspace, users=users, **ids)
    finally:
        if server is not None:
            server.stop()
        workspace.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root / "set", ignore_errors=True)
