"""Build the exam view the image-QC measures read (:class:`~radqc.pipelines.image_qc.types.ExamImages`).

Two sources, one shape, so the measures never know where the pixels came from:

* :func:`exam_from_files` — a folder read by :func:`radqc.pipelines.series.run.scan` (the
  ``radqc qc PATH`` path: no server, no catalogue);
* :func:`exam_from_context` — a catalogue exam in a pipeline stage (instances read from the
  object store through ``ctx.read``), reusing the ``series`` and ``anatomy`` stage results
  when they ran.

Pixels are read lazily and at most once per series: a measure that only looks at headers
(dose, window, sequences) never decodes an image, and a series nobody asks for costs nothing.
The item -> scoring-standard lookup lives here too (:func:`resolve_standard`), because both
sources need it and its answer (or "unknown item") decides which dimensions can be assessed.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from radqc.pipelines.image_qc.types import ExamImages, SeriesImages

log = logging.getLogger(__name__)

#: Modality groups the scoring standards use (qc_rules/standards `modality`).
RADIOGRAPH_MODALITIES = ("DX", "CR", "DR", "RG")


# ---------------------------------------------------------------- lazy pixel access


class _Lazy:
    """Read a series' instances (with pixels) once, sorted by slice position, and build the
    volume / radiograph from them on demand. Thread-safe: the stage may run measures in threads."""

    def __init__(self, load: Callable[[], list[Any]], modality: str | None) -> None:
        self._load = load
        self._modality = (modality or "").upper()
        self._lock = threading.Lock()
        self._datasets: list[Any] | None = None
        self._volume: Any = None
        self._volume_error: BaseException | None = None
        self._radiograph: Any = None

    def datasets(self) -> list[Any]:
        with self._lock:
            if self._datasets is None:
                self._datasets = sort_datasets(self._load())
            return self._datasets

    def volume(self) -> Any:
        """The :class:`radqc.dicom.volume.Volume`; the same ``UnsuitableSeries`` on every call."""
        from radqc.dicom.volume import build_volume

        datasets = self.datasets()
        with self._lock:
            if self._volume is None and self._volume_error is None:
                try:
                    self._volume = build_volume(datasets, require_ct=self._modality == "CT")
                except Exception as exc:  # noqa: BLE001 - remembered and re-raised for each caller
                    self._volume_error = exc
            if self._volume_error is not None:
                raise self._volume_error
            return self._volume

    def radiograph(self) -> Any:
        """The :class:`radqc.dicom.volume.Radiograph` of the series' first image."""
        from radqc.dicom.volume import UnsuitableSeries, load_radiograph

        datasets = self.datasets()
        with self._lock:
            if self._radiograph is None:
                if not datasets:
                    raise UnsuitableSeries("no_images")
                self._radiograph = load_radiograph(datasets[0])
            return self._radiograph


def sort_datasets(datasets: Sequence[Any]) -> list[Any]:
    """Instances in slice order: position along the slice normal when every instance has one,
    else InstanceNumber (the order ``Evidence.instance_index`` refers to)."""
    import numpy as np

    def normal_pos(ds: Any) -> float | None:
        try:
            iop = [float(v) for v in ds.ImageOrientationPatient]
            pos = [float(v) for v in ds.ImagePositionPatient]
        except (AttributeError, TypeError, ValueError):
            return None
        n = np.cross(iop[:3], iop[3:])
        return float(np.dot(n, pos))

    keyed = [(normal_pos(ds), ds) for ds in datasets]
    if keyed and all(k is not None for k, _ in keyed):
        return [ds for _, ds in sorted(keyed, key=lambda kv: -float(kv[0]))]  # type: ignore[arg-type]

    def number(ds: Any) -> int:
        try:
            return int(ds.get("InstanceNumber"))
        except (TypeError, ValueError):
            return 1 << 30
    return sorted(datasets, key=number)


def series_images(header: Any, label: Any, load: Callable[[], list[Any]]) -> SeriesImages:
    """A :class:`SeriesImages` whose pixel accessors share one lazy reader."""
    lazy = _Lazy(load, getattr(header, "modality", None) or getattr(label, "modality", None))
    return SeriesImages(header=header, label=label, datasets=lazy.datasets, volume=lazy.volume,
                        radiograph=lazy.radiograph)


# ---------------------------------------------------------------- item -> scoring standard


@lru_cache(maxsize=1)
def standards_ruleset() -> Any:
    """The bundled scoring standards (qc_rules/standards), loaded once per process."""
    from radqc.qc_rules.engine.loader import STANDARDS_DIR, load_library

    return load_library([STANDARDS_DIR])


def standard(code: str | None) -> Any | None:
    """The :class:`~radqc.qc_rules.engine.model.Standard` of a code (None when unknown)."""
    if not code:
        return None
    return standards_ruleset().standards.get(code)


def modality_group(modality: str | None) -> str | None:
    """CT / MR / DX (radiographs of every kind), as the standards name them."""
    m = (modality or "").upper()
    if m in RADIOGRAPH_MODALITIES:
        return "DX"
    return m or None


@dataclass
class ItemResolution:
    """Which scoring standard an exam is judged by, and why (shown in the result's ``item``)."""

    code: str | None
    name_zh: str | None = None
    name_en: str | None = None
    source: str | None = None  # --item / records / order / split / StudyDescription / none
    from_text: list[str] = field(default_factory=list)
    reason: str | None = None  # bilingual, when no standard was found

    def to_dict(self) -> dict[str, Any]:
        from radqc.pipelines.image_qc.types import NOT_ASSESSABLE

        if self.code is None:
            return {"code": None, "value": NOT_ASSESSABLE, "source": self.source, "from_text": self.from_text,
                    "reason": self.reason}
        return {"code": self.code, "name": {"zh": self.name_zh, "en": self.name_en}, "source": self.source,
                "from_text": self.from_text}


def resolve_standard(modality: str | None, names: Sequence[str] = (), codes: Sequence[str] = (),
                     source: str | None = None) -> ItemResolution:
    """The scoring standard for an exam's item names / standard codes.

    Order: a standard code itself (``CT-CHEST-PLAIN``), a standard's name or alias
    (胸部CT平扫), then the lexicon's parts + keywords (``qc_rules`` ``standard_item``: the
    hospitals' own spellings, e.g. "LDCT胸部（云胶片）"). A standard of another modality than
    the images is refused (a CT order on an MR exam is not scored as CT). Nothing found ->
    ``code`` None with the reason: every item-dependent dimension is then 无法评估.
    """
    from radqc.qc_rules.functions.report import item_modalities, standard_item

    names = [str(n).strip() for n in names if n and str(n).strip()]
    codes = [str(c).strip() for c in codes if c and str(c).strip()]
    group = modality_group(modality)
    ruleset = standards_ruleset()
    texts = names + codes
    if not texts:
        return ItemResolution(None, source=source or "none",
                              reason="无检查项目（医嘱）可依 / no exam item (order) to score against")
    found = ruleset.standard_for(names, codes)
    if found is None:
        # The lexicon matches parts and keywords under the images' modality, so an order that
        # names another modality (膝关节CT on radiographs) would be scored as this modality's item.
        named = [m for m in item_modalities(names or codes) if m]
        if named and group and group not in named:
            return ItemResolution(None, source=source, from_text=texts,
                                  reason=(f"检查项目为{'/'.join(named)}检查，影像为{modality} / the item names "
                                          f"{'/'.join(named)} but the images are {modality}: " + "、".join(texts)))
        for candidate in (modality, group):
            try:
                code = standard_item(candidate, names or codes)
            except Exception as exc:  # noqa: BLE001 - a lexicon problem is an unknown item, not a crash
                log.warning("standard_item failed: %s", exc)
                code = None
            if code:
                found = ruleset.standards.get(code)
                break
    if found is not None and group and found.modality and modality_group(found.modality) != group:
        return ItemResolution(None, source=source, from_text=texts,
                              reason=(f"检查项目属于{found.modality}，影像为{modality} / the item is a {found.modality} "
                                      f"item but the images are {modality}: {found.item}"))
    if found is None:
        return ItemResolution(None, source=source, from_text=texts,
                              reason=("检查项目无对应的质控评分标准 / no image-QC scoring standard for the item: "
                                      + "、".join(texts)))
    return ItemResolution(found.item, found.name_zh, found.name_en, source, texts)


# ---------------------------------------------------------------- from a folder


def with_pixels(full: Any, header: Any) -> Any:
    """The scan's header data set of an instance completed with what its full read adds (the
    pixel data and any element after it), or ``full`` when they are not the same instance.

    Why: the scan (``stop_before_pixels``) and series classification have already parsed and
    converted the header elements; a fresh full read holds them raw again, and the volume
    builder, the measures and the evidence convert them a second time (on a 310-slice thin chest
    series ~0.75 s CPU of build_volume's 1.4 s). The elements are the same bytes of the same file,
    so every value read from the completed header is the value of the full read."""
    if header is None or full is None:
        return full
    try:
        if header.get("SOPInstanceUID") != full.get("SOPInstanceUID"):
            return full
        for tag in full.keys():
            if tag not in header:
                header[tag] = full.get_item(tag)  # raw: converted only if read
    except Exception:  # noqa: BLE001 - anything odd: the full read as it is
        return full
    return header


@dataclass
class FolderExam:
    """What :func:`exam_from_files` learned besides the :class:`ExamImages`."""

    exam: ExamImages
    item: ItemResolution
    series_rows: list[dict[str, Any]]
    split: dict[str, Any] | None
    ordered_items: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def main_modality(headers: Sequence[Any]) -> str | None:
    """The exam's imaging modality: the one with most instances among CT/MR/radiographs
    (a dose report (SR) or a secondary capture never decides)."""
    counts: dict[str, int] = {}
    for h in headers:
        m = (getattr(h, "modality", None) or "").upper()
        if m in ("CT", "MR", *RADIOGRAPH_MODALITIES):
            counts[m] = counts.get(m, 0) + int(getattr(h, "n_instances", 0) or 1)
    if not counts:
        return next(((getattr(h, "modality", None) or None) for h in headers), None)
    return max(counts.items(), key=lambda kv: kv[1])[0]


def exam_from_files(files: Any, *, item_names: Sequence[str] = (), item_codes: Sequence[str] = (),
                    item_source: str | None = None, image_model: bool = True) -> FolderExam:
    """One exam read by ``radqc.pipelines.series.run.scan`` -> classified, item resolved, lazy pixels.

    ``item_names``/``item_codes``: the ordered item (``--item`` or the records); without them
    the StudyDescription is used (it names the item at most hospitals), and said so.
    """
    import pydicom

    from radqc.pipelines.series.features import from_datasets
    from radqc.pipelines.series.run import classifier, label_row, normalise_items, slice_z, thumbnails
    from radqc.pipelines.series.split import split_exam

    sop_index = {str(ds.get("SOPInstanceUID", "")): uid for uid, members in files.series.items() for _, ds in members}
    headers = [from_datasets([ds for _, ds in members], files.study_description, sop_index=sop_index)
               for members in files.series.values()]
    headers.sort(key=lambda h: (h.series_number if h.series_number is not None else 1 << 30, h.series_uid))
    uids = [h.series_uid for h in headers]
    warnings: list[str] = []
    try:
        images = thumbnails(files, uids) if image_model else None
        labels = classifier(image_model).classify(headers, images)
    except Exception as exc:  # noqa: BLE001 - no labels: the measures fall back to headers
        warnings.append(f"series classification failed / 序列分类失败: {type(exc).__name__}: {exc}"[:300])
        labels = [None] * len(headers)
    modality = main_modality(headers)
    names = list(item_names)
    source = item_source
    if not names and not item_codes and files.study_description:
        names, source = [files.study_description], "StudyDescription"
    item = resolve_standard(modality, names, item_codes, source)
    ordered: list[dict[str, Any]] = []
    split: dict[str, Any] | None = None
    if any(lab is not None for lab in labels):
        try:
            ordered, _status = normalise_items(names)
            zmap = {uid: slice_z(ds for _, ds in files.series[uid]) for uid in uids}
            split = split_exam(labels, ordered, headers={h.series_uid: h for h in headers}, slice_z=zmap)
        except Exception as exc:  # noqa: BLE001 - the split is context, never required
            warnings.append(f"split failed / 拆分失败: {type(exc).__name__}: {exc}"[:300])

    def loader(uid: str) -> Callable[[], list[Any]]:
        def load() -> list[Any]:
            out = []
            for path, header in files.series[uid]:
                try:
                    out.append(with_pixels(pydicom.dcmread(str(path)), header))
                except Exception as exc:  # noqa: BLE001 - one unreadable file drops that instance
                    log.warning("cannot read %s: %s", path, exc)
            return out
        return load

    series = [series_images(h, lab, loader(h.series_uid)) for h, lab in zip(headers, labels, strict=True)]
    exam = ExamImages(study_uid=files.study_uid, modality=modality, standard_code=item.code,
                      item_codes=[str(i.get("code")) for i in ordered if i.get("code")], series=series, split=split)
    rows = [label_row(lab, h) if lab is not None else {"series_uid": h.series_uid, "modality": h.modality,
                                                       "description": h.description, "category": None}
            for lab, h in zip(labels, headers, strict=True)]
    return FolderExam(exam, item, rows, split, ordered, warnings)


# ---------------------------------------------------------------- from the catalogue


def anatomy_by_series(anatomy_result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The anatomy stage's result keyed by series UID (the shape ``ExamImages.anatomy`` holds):
    each analysed CT series' landmarks, coverage, structures and body regions."""
    out: dict[str, Any] = {}
    for row in (anatomy_result or {}).get("analysed") or []:
        if not isinstance(row, dict) or (row.get("modality") or "").upper() != "CT":
            continue
        uid = row.get("series_instance_uid")
        if uid and row.get("status", "ok") == "ok":
            out[str(uid)] = row
    return out


def exam_from_context(ctx: Any, *, series_result: Mapping[str, Any] | None = None,
                      anatomy_result: Mapping[str, Any] | None = None, image_model: bool = True,
                      item_names: Sequence[str] = (), item_codes: Sequence[str] = ()) -> FolderExam:
    """A catalogue exam (pipeline-stage ``ExamContext``) as :class:`ExamImages`.

    The ``series`` stage's labels are reused when given (no second classification); the
    scoring standard comes from ``item_codes`` (standard codes, e.g. the one rule QC chose) /
    ``item_names``, else ``ctx.ordered_items``, else the StudyDescription. ``ExamImages.item_codes``
    are the series stage's standard items (radqc.vocab codes) of the split.
    """
    import pydicom

    from radqc.pipelines.series.features import from_catalogue
    from radqc.pipelines.series.types import SeriesLabel

    series_sorted = sorted(ctx.series, key=lambda s: (s.series_number if s.series_number is not None else 1 << 30,
                                                      s.series_instance_uid))
    sop_index = {inst.sop_instance_uid: s.series_instance_uid for s, inst in ctx.instances()}
    headers = [from_catalogue(s, ctx.study_description, sop_index=sop_index) for s in series_sorted]
    warnings: list[str] = []
    labels: list[Any]
    rows: list[dict[str, Any]]
    known = {str(r.get("series_uid")): r for r in (series_result or {}).get("series") or [] if isinstance(r, dict)}
    if known and all(h.series_uid in known for h in headers):
        labels = [_label_from_row(SeriesLabel, known[h.series_uid]) for h in headers]
        rows = [known[h.series_uid] for h in headers]
    else:
        try:
            from radqc.pipelines.series.run import classifier, label_row
            from radqc.pipelines.stages.series import _thumbnail

            images = ({s.series_instance_uid: img for s in series_sorted if (img := _thumbnail(ctx, s)) is not None}
                      if image_model else None)
            labels = classifier(image_model).classify(headers, images)
            rows = [label_row(lab, h) for lab, h in zip(labels, headers, strict=True)]
        except Exception as exc:  # noqa: BLE001
            warnings.append(f"series classification failed / 序列分类失败: {type(exc).__name__}: {exc}"[:300])
            labels = [None] * len(headers)
            rows = [{"series_uid": h.series_uid, "modality": h.modality, "description": h.description,
                     "category": None} for h in headers]
    modality = main_modality(headers) or ctx.modality
    names = list(item_names)
    source = "items" if (item_names or item_codes) else None
    if not names and not item_codes:
        names = [str((i.get("name") or i.get("text") or i.get("item_name") or "") if isinstance(i, dict) else i)
                 for i in ctx.ordered_items or () if i]
        names = [n for n in names if n.strip()]
        source = "order" if names else None
    if not names and not item_codes and ctx.study_description:
        names, source = [ctx.study_description], "StudyDescription"
    item = resolve_standard(modality, names, item_codes, source)

    def loader(s: Any) -> Callable[[], list[Any]]:
        def load() -> list[Any]:
            out = []
            for inst in s.instances:
                try:
                    out.append(pydicom.dcmread(io.BytesIO(ctx.read(inst))))
                except Exception as exc:  # noqa: BLE001
                    log.warning("cannot read instance %s: %s", inst.sop_instance_uid, exc)
            return out
        return load

    series = [series_images(h, lab, loader(s)) for h, lab, s in zip(headers, labels, series_sorted, strict=True)]
    split = (series_result or {}).get("split") if series_result else None
    # the standard exam items (radqc.vocab codes, e.g. CT.CHEST.PLAIN) the series stage split the
    # exam into: a combined exam (chest + upper abdomen) is measured against all of them
    vocab_codes = [str(i.get("code")) for i in (split or {}).get("standard_items") or []
                   if isinstance(i, dict) and i.get("code")]
    exam = ExamImages(study_uid=ctx.study_instance_uid, modality=modality, standard_code=item.code,
                      item_codes=vocab_codes, series=series, anatomy=anatomy_by_series(anatomy_result),
                      split=split)
    return FolderExam(exam, item, rows, split, [], warnings)


def _label_from_row(cls: Any, row: Mapping[str, Any]) -> Any:
    """A SeriesLabel back from the series stage's JSON row (unknown keys ignored)."""
    from dataclasses import fields as dc_fields

    known = {f.name for f in dc_fields(cls)}
    values = {k: v for k, v in row.items() if k in known}
    try:
        return cls(**values)
    except TypeError:
        return None
