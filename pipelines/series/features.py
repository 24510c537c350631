"""What the series classifiers read about one series: a flat, JSON-able header summary.

Three places produce series headers and all must give the classifiers the same facts:
DICOM files on disk (``radqc series PATH``), pydicom datasets already in memory (tests,
the generator) and the catalogue's per-instance header facts (the pipeline stage, which
never re-reads the objects). Each is reduced here to one :class:`SeriesHeader`, so the
header rules, the learned header model and the benchmarks see one representation and a
series classified from the catalogue gets the label it gets from its files.

Values are summarised per series the way a reader would: the first instance for
series-level attributes, distinct values for what varies per image (b-values, positions).
Nothing here raises on bad input: a missing or malformed attribute becomes ``None``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

    from radqc.pipelines.runner.stage import ExamContext, SeriesInfo

log = logging.getLogger(__name__)

#: Vendor private b-value elements read when DiffusionBValue is absent: GE (0043,1039) first value,
#: Siemens (0019,100C), Philips (2001,1003). Same list as radqc/dicom/parse.py plus Philips.
PRIVATE_B_VALUE = ((0x0043, 0x1039), (0x0019, 0x100C), (0x2001, 0x1003))

#: DICOM keywords read per instance (everything else in SeriesHeader is derived from these).
INSTANCE_KEYWORDS = (
    "Modality", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "SeriesDescription", "ProtocolName",
    "StudyDescription", "BodyPartExamined", "ImageType", "SeriesNumber", "Rows", "Columns", "PixelSpacing",
    "SliceThickness", "SpacingBetweenSlices", "ImageOrientationPatient", "ImagePositionPatient",
    "ConvolutionKernel", "KVP", "Manufacturer", "ManufacturerModelName", "ContrastBolusAgent",
    "ContrastBolusRoute", "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "SequenceName", "RepetitionTime", "EchoTime", "InversionTime", "EchoTrainLength", "FlipAngle",
    "MagneticFieldStrength", "DiffusionBValue", "AngioFlag", "NumberOfTemporalPositions", "TriggerTime",
    "DerivationDescription", "ViewPosition", "ImageLaterality", "Laterality", "SeriesTime",
    "PhotometricInterpretation", "WindowCenter", "WindowWidth", "ReconstructionDiameter", "NumberOfFrames",
    "TemporalPositionIdentifier", "StudyInstanceUID",
)


@dataclass
class SeriesHeader:
    """Everything the classifiers read about one series (JSON-serialisable, see to_dict)."""

    series_uid: str
    modality: str | None = None
    sop_class_uid: str | None = None
    description: str | None = None
    protocol: str | None = None
    study_description: str | None = None
    body_part: str | None = None
    image_type: list[str] = field(default_factory=list)
    n_instances: int = 0
    series_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    pixel_spacing: float | None = None
    slice_thickness: float | None = None
    spacing_between: float | None = None
    orientation: list[float] | None = None
    z_min: float | None = None
    z_max: float | None = None
    kernel: str | None = None
    kvp: float | None = None
    manufacturer: str | None = None
    model: str | None = None
    contrast_agent: str | None = None
    scanning_sequence: list[str] = field(default_factory=list)
    sequence_variant: list[str] = field(default_factory=list)
    scan_options: list[str] = field(default_factory=list)
    mr_acquisition_type: str | None = None
    sequence_name: str | None = None
    tr: float | None = None
    te: float | None = None
    ti: float | None = None
    echo_train_length: float | None = None
    flip_angle: float | None = None
    field_strength: float | None = None
    b_values: list[float] = field(default_factory=list)
    angio_flag: str | None = None
    temporal_positions: int | None = None
    trigger_time: float | None = None
    derivation: str | None = None
    view_position: str | None = None
    laterality: str | None = None
    source_series_uids: list[str] = field(default_factory=list)
    series_time: str | None = None
    photometric: str | None = None
    # -- additions beyond the brief's list ------------------------------------------------
    #: first WindowCenter/WindowWidth: the kernel class shows in the preset when the kernel name does not
    window_center: float | None = None
    window_width: float | None = None
    #: ReconstructionDiameter (mm): head vs body field of view
    recon_diameter: float | None = None
    #: distinct slice positions along the normal: instances / positions > 1 means repeats (DWI b, dynamics)
    n_positions: int = 0
    #: frames of a multi-frame object (1 for single-frame)
    n_frames: int = 1
    #: distinct TemporalPositionIdentifier values seen
    n_temporal_ids: int = 0
    #: instances whose headers could not be read (reported, not fatal)
    notes: list[str] = field(default_factory=list)
    #: facts about this series' place in its exam (see annotate_exam); empty when classified alone
    exam_context: dict[str, float] = field(default_factory=dict)
    #: StudyInstanceUID: annotate_exam groups a mixed batch by study
    study_uid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeriesHeader:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # -- derived facts the rules and the model share ----------------------------------------
    @property
    def plane(self) -> str | None:
        """Scan plane from ImageOrientationPatient (None when absent or malformed)."""
        o = self.orientation
        if not o:
            return None
        key = tuple(o)
        hit = _PLANE_CACHE.get(key, "")
        if hit == "":
            hit = plane_of(o)
            if len(_PLANE_CACHE) < 4096:
                _PLANE_CACHE[key] = hit
        return hit

    @property
    def z_extent(self) -> float | None:
        if self.z_min is None or self.z_max is None:
            return None
        return self.z_max - self.z_min

    @property
    def repeats(self) -> float:
        """Images per slice position (1 for an ordinary stack; b-values, dynamics > 1)."""
        if self.n_positions <= 0:
            return 1.0
        return max(1.0, self.n_instances * max(self.n_frames, 1) / self.n_positions)


# ------------------------------------------------------------------------------ converters

_PLANE_CACHE: dict[tuple[float, ...], str | None] = {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="ignore")
    s = str(value).strip().strip("\x00").strip()
    return s or None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = list(value)
        if not value:
            return None
        value = value[0]
    if isinstance(value, bytes):
        value = value.decode(errors="ignore")
    try:
        f = float(str(value).strip().split("\\")[0]) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    f = _float(value)
    return int(f) if f is not None else None


def _tokens(value: Any) -> list[str]:
    """Multi-valued CS (ImageType, ScanningSequence, ...) as upper-case tokens."""
    if value is None or value == "":
        return []
    if isinstance(value, bytes):
        value = value.decode(errors="ignore")
    if isinstance(value, str):
        items: list[Any] = value.replace("/", "\\").split("\\")
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        items = [value]
    out = []
    for item in items:
        s = _text(item)
        if s:
            out.append(s.upper())
    return out


def _floats(value: Any) -> list[float] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts: list[Any] = value.split("\\")
    elif isinstance(value, Iterable) and not isinstance(value, bytes):
        parts = list(value)
    else:
        return None
    out = [_float(p) for p in parts]
    if any(v is None for v in out):
        return None
    return [float(v) for v in out if v is not None]


#: ContrastBolusAgent / Route values that mean "no contrast" (sites write them instead of leaving it empty)
NO_CONTRAST = frozenset({"NONE", "NO", "N", "NIL", "N/A", "NA", "-", "0", "无", "未用", "平扫"})


def _contrast(value: Any) -> str | None:
    s = _text(value)
    if not s or s.strip().upper() in NO_CONTRAST:
        return None
    return s


def plane_of(orientation: Sequence[float] | None) -> str | None:
    """axial / coronal / sagittal / oblique from ImageOrientationPatient (row, column cosines)."""
    if not orientation or len(orientation) != 6:
        return None
    r, c = orientation[:3], orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if norm < 1e-6:
        return None
    a = [abs(v) / norm for v in n]
    i = max(range(3), key=lambda k: a[k])
    if a[i] < 0.9:  # more than ~25 degrees off every main axis
        return "oblique"
    return ("sagittal", "coronal", "axial")[i]


# ------------------------------------------------------------------------------ builders


def _summarise(series_uid: str, items: Sequence[Mapping[str, Any]], *, modality: str | None = None,
               description: str | None = None, study_description: str | None = None,
               body_part: str | None = None, series_number: int | None = None,
               sop_classes: Sequence[str | None] = (), source_series: Sequence[str] = ()) -> SeriesHeader:
    """One SeriesHeader from per-instance keyword -> value mappings (pydicom or catalogue facts)."""
    items[0] if items else {}

    def pick(key: str) -> Any:
        for it in items[:3]:  # the first instance that has it (a b=0 image may lack some tags)
            v = it.get(key)
            if v not in (None, ""):
                return v
        return None

    image_types = Counter(tuple(_tokens(it.get("ImageType"))) for it in items)
    image_type = list(image_types.most_common(1)[0][0]) if image_types else []
    b_values: set[float] = set()
    positions: set[float] = set()
    zs: list[float] = []
    temporal: set[Any] = set()
    orientation = _floats(pick("ImageOrientationPatient"))
    normal = None
    if orientation and len(orientation) == 6:
        r, c = orientation[:3], orientation[3:]
        normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    for it in items:
        b = _float(it.get("DiffusionBValue"))
        if b is not None:
            b_values.add(round(b, 1))
        pos = _floats(it.get("ImagePositionPatient"))
        if pos and len(pos) == 3:
            zs.append(pos[2])
            d = sum(p * n for p, n in zip(pos, normal, strict=False)) if normal else pos[2]
            positions.add(round(d, 1))
        t = it.get("TemporalPositionIdentifier")
        if t not in (None, ""):
            temporal.add(t)
    spacing = _floats(pick("PixelSpacing"))
    frames = _int(pick("NumberOfFrames")) or 1
    mod = _text(modality) or _text(pick("Modality"))
    sop = next((s for s in sop_classes if s), None) or _text(pick("SOPClassUID"))
    return SeriesHeader(
        series_uid=series_uid,
        modality=mod.upper() if mod else None,
        sop_class_uid=sop,
        description=_text(description) if description is not None else _text(pick("SeriesDescription")),
        protocol=_text(pick("ProtocolName")),
        study_description=_text(study_description) if study_description is not None else _text(pick("StudyDescription")),
        body_part=_text(body_part) if body_part is not None else _text(pick("BodyPartExamined")),
        image_type=image_type,
        n_instances=len(items),
        series_number=series_number if series_number is not None else _int(pick("SeriesNumber")),
        rows=_int(pick("Rows")),
        columns=_int(pick("Columns")),
        pixel_spacing=spacing[0] if spacing else None,
        slice_thickness=_float(pick("SliceThickness")),
        spacing_between=_float(pick("SpacingBetweenSlices")),
        orientation=orientation if orientation and len(orientation) == 6 else None,
        z_min=min(zs) if zs else None,
        z_max=max(zs) if zs else None,
        kernel=(" ".join(_tokens(pick("ConvolutionKernel"))) or None),
        kvp=_float(pick("KVP")),
        manufacturer=_text(pick("Manufacturer")),
        model=_text(pick("ManufacturerModelName")),
        contrast_agent=_contrast(pick("ContrastBolusAgent")) or (_contrast(pick("ContrastBolusRoute")) and "route-only"),
        scanning_sequence=_tokens(pick("ScanningSequence")),
        sequence_variant=_tokens(pick("SequenceVariant")),
        scan_options=_tokens(pick("ScanOptions")),
        mr_acquisition_type=_text(pick("MRAcquisitionType")),
        sequence_name=_text(pick("SequenceName")),
        tr=_float(pick("RepetitionTime")),
        te=_float(pick("EchoTime")),
        ti=_float(pick("InversionTime")),
        echo_train_length=_float(pick("EchoTrainLength")),
        flip_angle=_float(pick("FlipAngle")),
        field_strength=_float(pick("MagneticFieldStrength")),
        b_values=sorted(b_values),
        angio_flag=_text(pick("AngioFlag")),
        temporal_positions=_int(pick("NumberOfTemporalPositions")),
        trigger_time=_float(pick("TriggerTime")),
        derivation=_text(pick("DerivationDescription")),
        view_position=_text(pick("ViewPosition")),
        laterality=_text(pick("ImageLaterality")) or _text(pick("Laterality")),
        source_series_uids=sorted({s for s in source_series if s and s != series_uid}),
        series_time=_text(pick("SeriesTime")),
        photometric=_text(pick("PhotometricInterpretation")),
        window_center=_float(pick("WindowCenter")),
        window_width=_float(pick("WindowWidth")),
        recon_diameter=_float(pick("ReconstructionDiameter")),
        n_positions=len(positions),
        n_frames=frames,
        n_temporal_ids=len(temporal),
        study_uid=_text(pick("StudyInstanceUID")),
    )


def _dataset_facts(ds: pydicom.Dataset) -> dict[str, Any]:
    """The keywords this module reads, from one dataset, never raising on a malformed element."""
    out: dict[str, Any] = {}
    for keyword in INSTANCE_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001 - a malformed element is treated as absent
            continue
        if value is not None and value != "":
            out[keyword] = value
    if "DiffusionBValue" not in out:
        for tag in PRIVATE_B_VALUE:
            try:
                element = ds.get(tag)
            except Exception:  # noqa: BLE001
                continue
            if element is None or element.value in (None, "", b""):
                continue
            value = element.value
            if isinstance(value, bytes):
                value = value.decode(errors="ignore").split("\\")[0]
            elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
                value = list(value)[0] if len(value) else None
            b = _float(value)
            if b is not None:
                out["DiffusionBValue"] = b
                break
    sources = []
    try:
        seq = ds.get("SourceImageSequence") or []
        for item in list(seq)[:4]:
            uid = _text(item.get("ReferencedSOPInstanceUID"))
            if uid:
                sources.append(uid)
    except Exception:  # noqa: BLE001
        pass
    if sources:
        out["SourceSOPInstanceUIDs"] = sources
    return out


def from_datasets(datasets: Sequence[pydicom.Dataset], study_description: str | None = None,
                  sop_index: Mapping[str, str] | None = None) -> SeriesHeader:
    """A SeriesHeader from the datasets of one series (pixels not needed).

    ``sop_index`` (SOPInstanceUID -> SeriesInstanceUID for the whole exam) resolves the
    SourceImageSequence of a derived series to its source series; without it the source
    series cannot be named and ``source_series_uids`` stays empty.
    """
    items = [_dataset_facts(ds) for ds in datasets]
    uid = next((_text(it.get("SeriesInstanceUID")) for it in items if it.get("SeriesInstanceUID")), None) or ""
    return _from_items(uid, items, study_description, sop_index)


def _from_items(uid: str, items: list[dict[str, Any]], study_description: str | None,
                sop_index: Mapping[str, str] | None) -> SeriesHeader:
    sources: list[str] = []
    if sop_index:
        for it in items:
            for ref in it.get("SourceSOPInstanceUIDs") or ():
                s = sop_index.get(str(ref))
                if s:
                    sources.append(s)
    return _summarise(uid, items, study_description=study_description, source_series=sources)


def headers_from_folder(path: str | Path, *, report: list[str] | None = None) -> list[SeriesHeader]:
    """Every series under ``path`` (recursive), grouped by SeriesInstanceUID, sorted by series number.

    Files that are not DICOM or cannot be read are skipped; their paths and reasons are
    appended to ``report`` when given (the CLI prints them) and logged. The derived
    series' sources are resolved within the folder.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    groups: dict[str, list[dict[str, Any]]] = {}
    study_desc: dict[str, str | None] = {}
    sop_index: dict[str, str] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=False)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as exc:
            msg = f"{f}: not readable as DICOM ({type(exc).__name__})"
            log.debug(msg)
            if report is not None:
                report.append(msg)
            continue
        facts = _dataset_facts(ds)
        uid = _text(facts.get("SeriesInstanceUID"))
        if not uid:
            if report is not None:
                report.append(f"{f}: no SeriesInstanceUID")
            continue
        groups.setdefault(uid, []).append(facts)
        study_desc.setdefault(uid, _text(facts.get("StudyDescription")))
        sop = _text(facts.get("SOPInstanceUID"))
        if sop:
            sop_index[sop] = uid
    out = [_from_items(uid, items, study_desc.get(uid), sop_index) for uid, items in groups.items()]
    out.sort(key=lambda h: (h.series_number if h.series_number is not None else 10**9, h.series_uid))
    return out


def from_catalogue(series: SeriesInfo, study_description: str | None, index_row: Mapping[str, Any] | None = None,
                   sop_index: Mapping[str, str] | None = None) -> SeriesHeader:
    """A SeriesHeader from the catalogue's facts about one series (the pipeline-stage path).

    Per-instance facts are ``InstanceInfo.header`` (keys are DICOM keywords, values as
    parsed at ingest). ``index_row`` may override series-level values (keys of
    SeriesHeader). ``sop_index`` resolves ``SourceSOPInstanceUIDs`` to source series.
    """
    items: list[dict[str, Any]] = []
    for inst in series.instances:
        facts = dict(inst.header or {})
        facts.setdefault("SOPClassUID", inst.sop_class_uid)
        facts.setdefault("SOPInstanceUID", inst.sop_instance_uid)
        items.append(facts)
    sources: list[str] = []
    if sop_index:
        for it in items:
            for ref in it.get("SourceSOPInstanceUIDs") or ():
                s = sop_index.get(str(ref))
                if s:
                    sources.append(s)
    header = _summarise(series.series_instance_uid, items, modality=series.modality, description=series.description,
                        study_description=study_description, body_part=series.body_part,
                        series_number=series.series_number,
                        sop_classes=[i.sop_class_uid for i in series.instances], source_series=sources)
    if index_row:
        known = {f.name for f in fields(SeriesHeader)}
        for k, v in index_row.items():
            if k in known and v is not None:
                setattr(header, k, v)
    return header


def headers_from_context(ctx: ExamContext) -> list[SeriesHeader]:
    """All series of a pipeline exam context, with derived series linked to their sources."""
    sop_index = {inst.sop_instance_uid: s.series_instance_uid for s in ctx.series for inst in s.instances}
    out = [from_catalogue(s, ctx.study_description, sop_index=sop_index) for s in ctx.series]
    for h in out:
        h.study_uid = h.study_uid or ctx.study_instance_uid
    return out


def _t1_like(h: SeriesHeader) -> bool:
    return h.tr is not None and h.te is not None and 250 <= h.tr <= 1000 and h.te <= 30 and h.ti is None and not h.b_values


def _time_key(h: SeriesHeader) -> tuple[str, int]:
    return (h.series_time or "", h.series_number if h.series_number is not None else 0)


def annotate_exam(headers: Sequence[SeriesHeader]) -> None:
    """Fill ``exam_context`` of each header from the other series of its exam (in place).

    Headers of several studies (``study_uid``) are annotated study by study.

    Some facts are only visible across series: scanners often copy ContrastBolusAgent onto
    every series once it is entered, so a post-contrast T1 is told from the pre-contrast T1
    by coming after the other sequences; CT contrast phases are successive blocks of the
    same reconstructions (soft 5 mm, soft 1 mm, lung ...) after injection. Keys:

    * ``exam_contrast``: 1 when any series of the exam carries contrast tags;
    * ``mr_after_other``: 1 when an original non-T1 MR series was acquired before this one;
    * ``ct_block_rank`` / ``ct_block_count``: rank of this original axial CT series' block (a run
      of distinct reconstructions; a repeated kernel + thickness starts the next block) among
      all blocks of the exam (-1: not an original axial series), and how many there are;
    * ``ct_enh_rank`` / ``ct_enh_count``: the same among the blocks whose series carry contrast tags;
    * ``ct_contrast_all``: 1 when every block carries contrast tags (the tags were copied
      study-wide, so they say nothing about a single series: the first block is then
      usually the plain scan).
    """
    studies: dict[str | None, list[SeriesHeader]] = {}
    for h in headers:
        studies.setdefault(h.study_uid, []).append(h)
    if len(studies) > 1:
        for group in studies.values():
            annotate_exam(group)
        return
    ordered = sorted(headers, key=_time_key)
    contrast = any(h.contrast_agent for h in headers)
    seen_other = False
    blocks: list[set[tuple[Any, Any]]] = []
    block_contrast: list[bool] = []
    block_of: dict[int, int] = {}
    for h in ordered:
        ctx = h.exam_context
        ctx["exam_contrast"] = 1.0 if contrast else 0.0
        if h.modality == "MR":
            ctx["mr_after_other"] = 1.0 if seen_other else 0.0
            if "ORIGINAL" in h.image_type and not _t1_like(h):
                seen_other = True
        if h.modality == "CT" and "ORIGINAL" in h.image_type and "LOCALIZER" not in h.image_type and h.plane == "axial":
            key = (h.kernel, round(h.slice_thickness or 0.0, 2))
            enhanced = bool(h.contrast_agent)
            if not blocks or key in blocks[-1] or block_contrast[-1] != enhanced:
                blocks.append(set())
                block_contrast.append(enhanced)
            blocks[-1].add(key)
            block_of[id(h)] = len(blocks) - 1
    enh_rank: dict[int, int] = {}
    for b, enhanced in enumerate(block_contrast):
        if enhanced:
            enh_rank[b] = len(enh_rank)
    contrast_all = bool(block_contrast) and all(block_contrast)
    for h in headers:
        if h.modality == "CT":
            b = block_of.get(id(h), -1)
            h.exam_context["ct_block_rank"] = float(b)
            h.exam_context["ct_block_count"] = float(len(blocks))
            h.exam_context["ct_enh_rank"] = float(enh_rank.get(b, -1))
            h.exam_context["ct_enh_count"] = float(len(enh_rank))
            h.exam_context["ct_contrast_all"] = 1.0 if contrast_all else 0.0


__all__ = ["SeriesHeader", "annotate_exam", "from_datasets", "headers_from_folder", "from_catalogue", "headers_from_context",
           "plane_of", "INSTANCE_KEYWORDS"]
