"""A DICOM folder -> per exam: series headers, thumbnails, labels, ordered items, split.

Shared by ``radqc series PATH`` and ``radqc eval series`` so the command line and the
reported figures run the same code. Steps per exam (one StudyInstanceUID):

1. read every file's header (no pixels); non-DICOM and corrupt files are listed with their
   reason, never fatal;
2. summarise each series (:func:`radqc.pipelines.series.features.from_datasets`, sources of
   derived series resolved within the exam);
3. read the few instances the image model looks at (:func:`pick_instances`) with pixels and
   make the thumbnail; a series whose pixels cannot be decoded is classified from its header
   alone (the label's evidence says so);
4. classify (:class:`radqc.pipelines.series.classify.SeriesClassifier`);
5. ordered items: the ``items`` given on the command line, else the StudyDescription,
   through the item normaliser; none -> ``no_order``;
6. split (:func:`radqc.pipelines.series.split.split_exam`) with the slices' patient z.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radqc.pipelines.series.split import split_exam
from radqc.pipelines.series.types import SeriesLabel

log = logging.getLogger(__name__)

#: Reasons a file is left out: code -> (Chinese, English).
BAD_FILE_REASONS: dict[str, tuple[str, str]] = {
    "not_dicom": ("不是DICOM文件", "not a DICOM file"),
    "corrupt": ("DICOM文件损坏或无法读取", "corrupt or unreadable DICOM file"),
    "no_series_uid": ("缺少SeriesInstanceUID", "no SeriesInstanceUID"),
}


def bad_file(path: Path | str, code: str, detail: str = "") -> dict[str, Any]:
    zh, en = BAD_FILE_REASONS[code]
    return {"path": str(path), "reason": code, "message": f"{zh} / {en}" + (f": {detail}" if detail else "")}


@dataclass
class ExamFiles:
    """The readable files of one exam, by series, with their header-only datasets."""

    study_uid: str
    study_description: str | None = None
    series: dict[str, list[tuple[Path, Any]]] = field(default_factory=dict)

    def instances(self) -> int:
        return sum(len(v) for v in self.series.values())


def _instance_key(item: tuple[Path, Any]) -> tuple[int, str]:
    n = item[1].get("InstanceNumber", None)
    try:
        return int(n), item[0].name
    except (TypeError, ValueError):
        return 1 << 30, item[0].name


def scan(path: str | Path) -> tuple[list[ExamFiles], list[dict[str, Any]]]:
    """Read every file's header under ``path``, grouped by study and series; bad files listed."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    exams: dict[str, ExamFiles] = {}
    bad: list[dict[str, Any]] = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except InvalidDicomError as exc:
            bad.append(bad_file(f, "not_dicom", type(exc).__name__))
            continue
        except Exception as exc:  # noqa: BLE001 - any parse failure is a listed bad file
            bad.append(bad_file(f, "corrupt", f"{type(exc).__name__}: {exc}"[:200]))
            continue
        series_uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not series_uid:
            bad.append(bad_file(f, "no_series_uid"))
            continue
        study_uid = str(ds.get("StudyInstanceUID", "") or "") or "unknown-study"
        exam = exams.setdefault(study_uid, ExamFiles(study_uid))
        if exam.study_description is None and ds.get("StudyDescription"):
            exam.study_description = str(ds.get("StudyDescription"))
        exam.series.setdefault(series_uid, []).append((f, ds))
    for exam in exams.values():
        for uid in exam.series:
            exam.series[uid].sort(key=_instance_key)
    return list(exams.values()), bad


def image_centre_z(header: Mapping[str, Any] | Any) -> float | None:
    """Patient z (mm) of an image's centre: ImagePositionPatient plus half the image along its
    row and column directions. For an axial slice this is its position's z; for a sagittal
    or coronal image it is where the picture sits along the body, which groups MR stations.
    Accepts a pydicom dataset or a mapping of keyword -> value (catalogue header facts)."""
    get = header.get
    pos: Any = get("ImagePositionPatient")
    iop: Any = get("ImageOrientationPatient")
    try:
        z = float(pos[2])
    except (TypeError, ValueError, IndexError):
        return None
    try:
        spacing: Any = get("PixelSpacing")
        rows, cols = int(get("Rows") or 0), int(get("Columns") or 0)
        dr, dc = float(spacing[0]), float(spacing[1])
        return z + float(iop[2]) * dc * cols / 2.0 + float(iop[5]) * dr * rows / 2.0
    except (TypeError, ValueError, IndexError):
        return z


def slice_z(datasets: Iterable[Any]) -> list[float]:
    """Image-centre z (mm) of each instance with an ImagePositionPatient, in the given order."""
    out = []
    for ds in datasets:
        z = image_centre_z(ds)
        if z is not None:
            out.append(z)
    return out


def normalise_items(names: Sequence[str], hospital_code: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Ordered standard items of ``names`` (the item normaliser's matches, in order).

    Returns (items, status): ``ok``, ``no_names``, ``unmapped`` (names given, nothing
    matched) or ``normaliser_unavailable``; without items the split says ``no_order``
    instead of guessing.
    """
    names = [n for n in names if n and n.strip()]
    if not names:
        return [], "no_names"
    try:
        from radqc.pipelines.items.normalise import normalise
    except ImportError as exc:
        log.warning("item normaliser unavailable: %s", exc)
        return [], "normaliser_unavailable"
    out: list[dict[str, Any]] = []
    for name in names:
        result = normalise(name, hospital=hospital_code)
        for m in result.get("items") or []:
            item = {k: m.get(k) for k in ("code", "name", "modality", "parts", "method", "laterality", "confidence")}
            item["source"] = m.get("source") or "normaliser"
            item["from_text"] = name
            out.append(item)
    return out, "ok" if out else "unmapped"


_CLASSIFIERS: dict[bool, Any] = {}


def classifier(image_model: bool = True) -> Any:
    """One classifier per process (loading the models is the slow part)."""
    if image_model not in _CLASSIFIERS:
        from radqc.pipelines.series.classify import SeriesClassifier

        _CLASSIFIERS[image_model] = SeriesClassifier(image_model="auto" if image_model else None)
    return _CLASSIFIERS[image_model]


def thumbnails(exam: ExamFiles, uids: Sequence[str]) -> dict[str, Any]:
    """The image model's thumbnail per series uid (left out where the pixels cannot be read)."""
    import pydicom

    from radqc.models.series_image.thumbnail import make_thumbnail, pick_instances

    out: dict[str, Any] = {}
    for uid in uids:
        members = exam.series[uid]
        picked = []
        for i in pick_instances(len(members)):
            try:
                picked.append(pydicom.dcmread(str(members[i][0])))
            except Exception:  # noqa: BLE001 - the header-only path still labels the series
                continue
        try:
            if picked:
                out[uid] = make_thumbnail(picked)
        except Exception as exc:  # noqa: BLE001
            log.debug("thumbnail of %s failed: %s", uid, exc)
    return out


_SCORER: list[Any] = []
#: The body-region scorer reads every slice of the stack it scores: at most this many when the
#: acquisition has a coarser stack covering the same range.
MAX_SCORED_SLICES = 400


def _scorer() -> Any:
    """The body-region scorer of the anatomy engine's slot (None when unavailable)."""
    if not _SCORER:
        try:
            from radqc.pipelines.anatomy.models import Unavailable, resolve_slot

            model = resolve_slot("body_region")
            _SCORER.append(None if isinstance(model, Unavailable) else model)
        except Exception as exc:  # noqa: BLE001 - no scorer means the z-coverage fallback
            log.warning("body-region scorer unavailable: %s", exc)
            _SCORER.append(None)
    return _SCORER[0]


def zones_of(result: Any) -> list[dict[str, Any]]:
    """Per-region z limits (``region``, ``z_min_mm``, ``z_max_mm``, ``slices``) of a
    :class:`~radqc.models.interfaces.BodyRegionResult` (the anatomy result's ``regions`` form),
    each slice widened by half the slice gap so a zone's length is the range it covers."""
    zones: dict[str, dict[str, Any]] = {}
    zs = [float(z) for z in result.z_mm or []]
    # each slice stands for half a slice gap either side: a zone is the range its slices cover
    half = (max(zs) - min(zs)) / (len(zs) - 1) / 2.0 if len(zs) > 1 else 0.0
    for region, z in zip(result.regions or [], zs, strict=False):
        zone = zones.setdefault(str(region), {"region": str(region), "z_min_mm": z - half, "z_max_mm": z + half,
                                              "slices": 0})
        zone["z_min_mm"] = round(min(zone["z_min_mm"], z - half), 3)
        zone["z_max_mm"] = round(max(zone["z_max_mm"], z + half), 3)
        zone["slices"] += 1
    return sorted(zones.values(), key=lambda r: -r["z_max_mm"])


def needs_body_regions(labels: Sequence[SeriesLabel], items: Sequence[Mapping[str, Any]]) -> bool:
    """Only an exam with several ordered CT items may hold one acquisition to cut into slabs."""
    ct_items = [i for i in items if str(i.get("modality") or "").upper() == "CT"]
    return len(ct_items) >= 2 and any(
        (lab.modality or "").upper() == "CT" and lab.role == "original" and lab.plane in ("axial", None)
        for lab in labels)


def body_regions_for(labels: Sequence[SeriesLabel], slice_z_map: Mapping[str, Sequence[float]],
                     load: Callable[[str], Sequence[Any]], headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the body-region scorer once per CT acquisition, on its longest member.

    ``load(series_uid)`` returns that series' instances (datasets, bytes or paths, with
    pixels). The answer always says what happened (``status`` ok / unavailable /
    no_candidate, and per acquisition ok / unsuitable); the split falls back to the labels and
    z-coverage for an acquisition without regions.
    """
    from radqc.pipelines.series.split import ct_acquisitions

    groups = ct_acquisitions(labels, headers, slice_z_map)
    groups = [[u for u in g if len(slice_z_map.get(u) or []) >= 2] for g in groups]
    groups = [g for g in groups if g]
    # axial derived stacks (spectral mono-energetic, ...) of the same range are fallbacks
    # when no original stack builds a volume (irregular spacing)
    spare = [lab.series_uid for lab in labels if (lab.modality or "").upper() == "CT" and lab.role == "derived"
             and lab.plane == "axial" and len(slice_z_map.get(lab.series_uid) or []) >= 2]
    if not groups:
        return {"status": "no_candidate", "acquisitions": []}
    scorer = _scorer()
    if scorer is None:
        return {"status": "unavailable", "acquisitions": []}
    from radqc.dicom.volume import build_volume

    def extent(uid: str) -> tuple[float, bool, int]:
        zs = slice_z_map[uid]
        n = len(zs)
        return round((max(zs) - min(zs)) / 10.0), n <= MAX_SCORED_SLICES, n if n <= MAX_SCORED_SLICES else -n

    out = []
    for group in groups:
        # the member covering the most z; among those the finest stack up to MAX_SCORED_SLICES
        # (finer slices place the boundary better), else the coarsest (reading 1500 thin
        # slices costs more than the cut gains); a member that does not build (gaps, tilt)
        # hands over to the next
        lo = min(min(slice_z_map[u]) for u in group)
        hi = max(max(slice_z_map[u]) for u in group)
        extra = [u for u in spare if min(slice_z_map[u]) < hi and max(slice_z_map[u]) > lo]
        for uid in sorted(group, key=extent, reverse=True)[:2] + sorted(extra, key=extent, reverse=True)[:1]:
            started = time.perf_counter()
            try:
                result = scorer.score(build_volume(load(uid)).image)
            except Exception as exc:  # noqa: BLE001 - an unsuitable series: the next, or the fallback
                out.append({"status": "unsuitable", "series_uid": uid, "reason": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            out.append({"status": "ok", "series_uid": uid, "acquisition": list(group), "regions": zones_of(result),
                        "landmarks": {k: (None if v is None else round(float(v), 1))
                                      for k, v in (result.landmarks or {}).items()},
                        "seconds": round(time.perf_counter() - started, 3)})
            break
    return {"status": "ok", "model": f"{getattr(scorer, 'name', '')} {getattr(scorer, 'version', '')}".strip(),
            "acquisitions": out}


def label_row(label: SeriesLabel, header: Any) -> dict[str, Any]:
    """The per-series JSON of ``radqc series --json`` (contract keys first, extras after)."""
    d = label.to_dict()
    row = {k: d.get(k) for k in ("series_uid", "role", "derived_type", "plane", "sequence", "phase", "category",
                                 "confidence", "evidence")}
    row.update(modality=label.modality, description=getattr(header, "description", None),
               series_number=getattr(header, "series_number", None),
               n_instances=getattr(header, "n_instances", None), region=label.region,
               kernel_class=label.kernel_class, thickness_class=label.thickness_class, view=label.view,
               description_overruled=label.description_overruled, unknown_reason=label.unknown_reason)
    return row


def analyse_exam(exam: ExamFiles, *, items: Sequence[str] | None = None, image_model: bool = True,
                 body_regions: Mapping[str, Any] | None = None,
                 ordered_items: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Classify and split one exam read by :func:`scan` (result: docs/series.md).

    ``ordered_items``: standard items already known (the evaluator passes the order's truth so
    the split is measured apart from item normalisation); otherwise ``items`` names or the
    StudyDescription are normalised.
    """
    from radqc.pipelines.series.features import from_datasets

    started = time.perf_counter()
    sop_index = {str(ds.get("SOPInstanceUID", "")): uid for uid, members in exam.series.items() for _, ds in members}
    headers = [from_datasets([ds for _, ds in members], exam.study_description, sop_index=sop_index)
               for members in exam.series.values()]
    headers.sort(key=lambda h: (h.series_number if h.series_number is not None else 1 << 30, h.series_uid))
    uids = [h.series_uid for h in headers]
    images = thumbnails(exam, uids) if image_model else None
    labels = classifier(image_model).classify(headers, images)
    names = list(items) if items else ([exam.study_description] if exam.study_description else [])
    if ordered_items is not None:
        ordered, items_status, names = [dict(i) for i in ordered_items], "given", []
    else:
        ordered, items_status = normalise_items(names)
    zmap = {uid: slice_z(ds for _, ds in exam.series[uid]) for uid in uids}
    regions_info: dict[str, Any] | None = dict(body_regions) if body_regions else None
    if regions_info is None and needs_body_regions(labels, ordered):
        regions_info = body_regions_for(labels, zmap, lambda uid: [str(f) for f, _ in exam.series[uid]],
                                        {h.series_uid: h for h in headers})
    usable = regions_info if regions_info and regions_info.get("status", "ok") == "ok" else None
    split = split_exam(labels, ordered, headers={h.series_uid: h for h in headers}, slice_z=zmap,
                       body_regions=usable)
    return {"study_instance_uid": exam.study_uid, "study_description": exam.study_description,
            "items_from": "given" if ordered_items is not None else ("--items" if items else "StudyDescription"),
            "item_names": names,
            "items_status": items_status, "instances": exam.instances(),
            "series": [label_row(lab, h) for lab, h in zip(labels, headers, strict=True)],
            **{k: v for k, v in split.items() if k != "version"}, "body_regions": regions_info,
            "seconds": round(time.perf_counter() - started, 3)}


def analyse_path(path: str | Path, *, items: Sequence[str] | None = None, image_model: bool = True,
                 progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every exam under ``path``; ``progress(done, total, exam_result)`` after each exam."""
    exams, bad = scan(path)
    out = []
    for k, exam in enumerate(sorted(exams, key=lambda e: e.study_uid)):
        res = analyse_exam(exam, items=items, image_model=image_model)
        out.append(res)
        if progress:
            progress(k + 1, len(exams), res)
    return {"path": str(path), "exams": out, "bad_files": bad}
