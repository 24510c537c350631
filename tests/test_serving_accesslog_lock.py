"""Worker processes of one host take turns at the SQLite access log through a file lock
(serving/accesslog.py ``_HostLock``): a writer waits while another process holds it, and
writes as soon as it is released; the chain stays whole."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from radqc.catalogue import models as m
from radqc.serving import accesslog

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def _count(ws) -> int:  # type: ignore[no-untyped-def]
    with ws.sessions() as s:
        return int(s.scalar(select(func.count(m.AccessLogEntry.id))) or 0)


def test_a_writer_waits_for_another_process_holding_the_log_lock(workspace) -> None:  # type: ignore[no-untyped-def]
    writer = accesslog._GroupWriter(workspace.sessions)
    if writer.host_lock.path is None:
        pytest.skip("the host lock applies to SQLite catalogues only")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, writer.host_lock.path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = _count(workspace)
        done = threading.Event()

        def append() -> None:
            writer.write({"action": "exam.view", "exam_id": 1})
            done.set()

        thread = threading.Thread(target=append)
        thread.start()
        time.sleep(0.5)
        assert not done.is_set() and _count(workspace) == before  # still waiting for the other process
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        thread.join(timeout=30)
        assert done.is_set() and _count(workspace) == before + 1
    finally:
        holder.kill()
        holder.wait()
    with workspace.sessions() as s:
        assert accesslog.verify_chain(s).ok


def test_no_file_lock_for_a_server_database() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    engine = create_engine("postgresql+psycopg://u:p@localhost:1/x")
    assert accesslog._HostLock.for_sessions(sessionmaker(bind=engine)).path is None
