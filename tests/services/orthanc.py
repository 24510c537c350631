"""A throw-away Orthanc PACS on loopback, started from the Debian ``orthanc`` package.

Orthanc plays the hospital PACS in the networking tests and the ingest benchmark: it
receives C-STORE and REST uploads, answers C-FIND/C-MOVE, serves QIDO-RS/WADO-RS through
its DICOMweb plugin, and sends to our receiver when asked. Each server gets its own
JSON configuration, storage and index folders in a temporary directory and free ports.

``TCP_NODELAY=1`` is set in Orthanc's environment: DCMTK (Orthanc's network layer) leaves
Nagle's algorithm on otherwise, which stalls ~45 ms per instance on loopback.

Also here: :func:`synthetic_study`, small CT studies with fresh UIDs, so tests and the
benchmark can make as many distinct studies/series as they need.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ORTHANC_BINARIES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
DICOMWEB_PLUGINS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
#: AE title of the Orthanc server and of the RadQC receiver it knows as a modality.
ORTHANC_AET = "ORTHANC"
RADQC_AET = "RADQC"
RADQC_MODALITY = "radqc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def orthanc_binary() -> str | None:
    for candidate in ORTHANC_BINARIES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("Orthanc")


def dicomweb_plugin() -> str | None:
    for candidate in DICOMWEB_PLUGINS:
        if Path(candidate).exists():
            return candidate
    found = sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))
    return str(found[0]) if found else None


@dataclass
class OrthancServer:
    """A running Orthanc; ``radqc_port`` is where it sends C-MOVE/store for AE ``RADQC``."""

    workdir: Path
    http_port: int
    dicom_port: int
    radqc_port: int
    process: subprocess.Popen[bytes] | None = None
    aet: str = ORTHANC_AET
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "orthanc.log"

    # -- addresses -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"127.0.0.1:{self.dicom_port}"

    # -- lifecycle -----------------------------------------------------------------------
    def config(self) -> dict:
        plugins = [p for p in [dicomweb_plugin()] if p]
        return {
            "Name": "radqc-test-pacs",
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "Plugins": plugins,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "StudiesMetadata": "Full",
            },
            "DicomModalities": {RADQC_MODALITY: [RADQC_AET, "127.0.0.1", self.radqc_port]},
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowGet": True,
            "DicomCheckModalityHost": False,
            "DicomCheckCalledAet": False,
            "UnknownSopClassAccepted": True,
            "StorageCompression": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "ConcurrentJobs": 2,
            "HttpThreadsCount": 8,
            "DicomScpTimeout": 30,
            "DicomAssociationCloseDelay": 0,
            "SaveJobs": False,
            "StableAge": 1,
        }

    def start(self, timeout: float = 60.0) -> None:
        import httpx

        binary = orthanc_binary()
        if binary is None:
            raise RuntimeError("Orthanc is not installed")
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
        (self.workdir / "index").mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        env = {**os.environ, "TCP_NODELAY": "1"}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, str(config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/system").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"Orthanc did not answer /system within {timeout} s:\n{self.log_tail()}"
                    )
                # Polling interval while the server starts (readiness is decided by /system).
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # -- REST helpers used by tests and the benchmark ----------------------------------------
    def client(self, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        import httpx

        return httpx.Client(base_url=self.url, timeout=timeout)

    def upload(self, files: list[bytes] | list[Path]) -> list[str]:
        """POST each Part-10 file to ``/instances``; return Orthanc's instance ids."""
        import httpx

        ids = []
        with self.client() as client:
            for item in files:
                data = item.read_bytes() if isinstance(item, Path) else item
                for attempt in range(3):
                    try:
                        response = client.post(
                            "/instances", content=data, headers={"Content-Type": "application/dicom"}
                        )
                        break
                    except httpx.RemoteProtocolError:
                        # Orthanc's HTTP server may close a kept-alive connection just as the next
                        # request goes out (seen once in CI after 26 uploads). Storing the same
                        # instance again is harmless (Orthanc keeps one copy), so send it again.
                        if attempt == 2:
                            raise
                response.raise_for_status()
                ids.append(response.json()["ID"])
        return ids

    def clear(self) -> None:
        """Delete every patient (and so every study) so the next test starts from an empty PACS."""
        with self.client() as client:
            for patient in client.get("/patients").json():
                client.delete(f"/patients/{patient}").raise_for_status()

    def instance_count(self) -> int:
        with self.client() as client:
            return int(client.get("/statistics").json()["CountInstances"])

    def set_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        """Declare (or re-point) a DICOM modality Orthanc may send to."""
        with self.client() as client:
            client.put(
                f"/modalities/{name}", json={"AET": aet, "Host": host, "Port": port}
            ).raise_for_status()

    def send_to_modality(self, name: str, orthanc_ids: list[str]) -> dict:
        """Ask Orthanc to C-STORE resources to a modality (synchronously)."""
        with self.client(timeout=300.0) as client:
            response = client.post(
                f"/modalities/{name}/store", json={"Resources": orthanc_ids, "Synchronous": True}
            )
            response.raise_for_status()
            return response.json()

    def study_ids(self) -> list[str]:
        with self.client() as client:
            return list(client.get("/studies").json())


def start_orthanc(radqc_port: int | None = None) -> OrthancServer | None:
    """Start a server on free loopback ports, or return None when Orthanc is not installed."""
    if orthanc_binary() is None or dicomweb_plugin() is None:
        return None
    workdir = Path(tempfile.mkdtemp(prefix="radqc-orthanc-"))
    server = OrthancServer(
        workdir=workdir, http_port=free_port(), dicom_port=free_port(), radqc_port=radqc_port or free_port()
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def orthanc() -> Iterator[OrthancServer]:
    """One real Orthanc for the session; missing Orthanc fails under CI and skips elsewhere."""
    server = start_orthanc()
    if server is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Orthanc (Debian orthanc + orthanc-dicomweb) is missing; CI must install it")
        pytest.skip("Orthanc is not installed")
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def pacs(orthanc: OrthancServer) -> Iterator[OrthancServer]:
    """The session's Orthanc, emptied before each test so tests never see each other's studies."""
    orthanc.clear()
    orthanc.set_modality(RADQC_MODALITY, RADQC_AET, orthanc.radqc_port)
    yield orthanc


# -- synthetic studies --------------------------------------------------------------------------
def synthetic_study(
    *,
    accession: str,
    study_date: str = "20260115",
    patient_id: str = "P0001",
    series: int = 2,
    slices: int = 3,
    size: int = 64,
    seed: int = 0,
    institution: str = "Test Hospital",
) -> list[bytes]:
    """One CT study as Part-10 files (explicit VR little endian, new UIDs on every call).

    ``series`` series of ``slices`` axial int16 slices of ``size`` x ``size`` pixels.
    """
    import numpy as np
    from pydicom.uid import generate_uid

    from radqc.dicom.factory import ct_slice, to_bytes

    rng = np.random.default_rng(seed)
    study_uid = generate_uid()
    out: list[bytes] = []
    for s in range(series):
        series_uid = generate_uid()
        for i in range(slices):
            ds = ct_slice(
                study_uid=study_uid, series_uid=series_uid,
                pixels=rng.integers(0, 2000, size=(size, size), dtype=np.int16),
                instance_number=i + 1, series_number=s + 1, position=(0.0, 0.0, -2.5 * i),
                patient_id=patient_id, patient_sex="F", patient_birth_date="19800101",
                accession=accession, study_date=study_date, study_time="090000", institution=institution,
                rescale_intercept=-1024, StudyDescription="CT chest", SeriesDescription=f"axial {s + 1}",
            )
            out.append(to_bytes(ds))
    return out


def uids_of(data: bytes) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of one Part-10 file."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
