"""Killing an import mid-way (SIGKILL) loses nothing, duplicates nothing, leaves no half object."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from radqc.catalogue import models as m
from tests.dicom_factory import ct_series

N_FILES = 1500


def _catalogued(workspace) -> int:
    with workspace.sessions() as s:
        return s.scalar(select(func.count(m.Instance.id))) or 0


def test_sigkill_during_ingest_then_rerun_loses_and_duplicates_nothing(workspace, tmp_path):
    src = tmp_path / "export"
    for k in range(N_FILES // 100):
        ct_series(src / f"study{k}", n_slices=100, size=64, accession=f"ACC{k:04d}", seed=k)
    env = {**os.environ, "RADQC_WORKERS": "1"}
    cmd = [sys.executable, "-m", "radqc.cli.main", "ingest", str(src), "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        count = _catalogued(workspace)
        if count >= 64:  # at least one batch committed: kill in the middle of the import
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = count
            break
        time.sleep(0.02)  # polling a condition, not synchronising on time
    proc.wait(timeout=30)
    assert killed_at is not None, "ingest finished before it could be killed; enlarge the data"
    partial = _catalogued(workspace)
    assert partial < N_FILES, "the import must have been interrupted"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with workspace.sessions() as s:
        assert s.scalar(select(func.count(m.Instance.id))) == N_FILES
        assert s.scalar(select(func.count(func.distinct(m.Instance.sop_instance_uid)))) == N_FILES
        keys = s.scalars(select(m.Instance.storage_key)).all()
        assert s.scalar(select(func.count(m.QuarantineItem.id))) == 0
    for key in keys:  # every catalogued object is whole and hashes to its key
        assert workspace.store.verify(key)
    leftovers = [p for p in Path(workspace.settings.objects_dir).rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
    # a temp file may survive the kill, but never under a final key; `radqc init` sweeps them
    workspace.initialise()
    assert not [p for p in leftovers if p.exists()]
