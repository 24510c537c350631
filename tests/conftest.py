"""Fixtures shared by every suite: workspaces on both catalogue backends, real DICOM data.

Every test that takes ``workspace`` runs twice: on the embedded SQLite catalogue and on a
real PostgreSQL server started on loopback for the session. Set
``RADQC_TEST_BACKENDS=sqlite`` to run one backend only while developing.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RADQC_SECRET_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")

BACKENDS = [b.strip() for b in os.environ.get("RADQC_TEST_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    from tests.services.postgres import start_postgres

    server = start_postgres()
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries are missing; .ci/run must install them")
        pytest.skip("PostgreSQL is not installed")
    yield server
    server.stop()
    shutil.rmtree(server.datadir, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalogue database per test, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"radqc_test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def workspace(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """An initialised workspace (catalogue + object store) in a temporary directory."""
    from radqc.workspace import Workspace

    home = tmp_path / "ws"
    monkeypatch.setenv("RADQC_HOME", str(home))
    monkeypatch.setenv("RADQC_DATABASE_URL", database_url)
    monkeypatch.delenv("RADQC_OBJECTS_DIR", raising=False)
    ws = Workspace.open(home, create=True)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def pydicom_test_files() -> Path:
    """pydicom's own bundled test files (real CT/MR slices in many encodings; MIT)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm")).parent
