"""The image-QC result: dimension values, findings (deductions) and their evidence.

The dimension keys and value vocabularies are the public contract of ``radqc qc PATH --json``
(issue #7): extend, never rename.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DIMENSIONS = ("range", "positioning", "artifact", "centring", "noise", "sharpness", "reconstruction", "window",
              "sequences", "dose")
NOT_ASSESSABLE = "无法评估"  # cannot assess (with a reason): bad input, no image of the required kind
NOT_APPLICABLE = "不适用"  # does not apply to this modality / item (with a reason)
NORMAL, ABNORMAL = "正常", "异常"
#: value vocabulary per dimension (besides NOT_ASSESSABLE / NOT_APPLICABLE).
VALUES: dict[str, tuple[str, ...]] = {
    "range": ("正常", "过小", "过大"),
    "positioning": ("标准", "不标准"),
    "artifact": ("无", "运动", "设备", "异物"),
    "centring": ("正常", "偏上", "偏下", "偏左", "偏右"),
    "noise": (NORMAL, ABNORMAL),
    "sharpness": (NORMAL, ABNORMAL),
    "reconstruction": (NORMAL, ABNORMAL),
    "window": (NORMAL, ABNORMAL),
    "sequences": ("完整", "不完整"),
    "dose": (NORMAL, ABNORMAL),
}
#: English for every value (user-facing text is bilingual).
VALUE_EN: dict[str, str] = {
    "正常": "normal", "过小": "too small", "过大": "too large", "标准": "standard", "不标准": "not standard",
    "无": "none", "运动": "motion", "设备": "equipment", "异物": "foreign object", "偏上": "off-centre up",
    "偏下": "off-centre down", "偏左": "off-centre left", "偏右": "off-centre right", "异常": "abnormal",
    "完整": "complete", "不完整": "incomplete", NOT_ASSESSABLE: "cannot assess", NOT_APPLICABLE: "not applicable",
}
RADIOGRAPH_GRADES = ("甲", "乙", "丙", "丁")
CT_MR_GRADES = (3, 2, 1, 0)


@dataclass
class Evidence:
    """Where a finding was seen and what was measured: enough for a viewer to show it."""

    series_uid: str | None = None
    instance_index: int | None = None  # slice / image index in the series (sorted by position)
    sop_instance_uid: str | None = None
    measured: Any = None  # the measured value (number, list, text)
    limit: Any = None  # the item's limit it was compared with
    unit: str | None = None
    #: a small PNG with the region marked: object-store key (stage) or file path (CLI)
    image: str | None = None
    box: list[float] | None = None  # [row0, col0, row1, col1] in pixels of that image, when localised
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    """One deduction (扣分项): check id, dimension, points, bilingual reason, evidence."""

    check_id: str  # e.g. IQC-RANGE, the scoring-standard item id
    dimension: str
    value: str  # the dimension value this finding supports
    points: float  # points deducted (filled by the roll-up from the item's standard)
    reason_zh: str
    reason_en: str
    evidence: list[Evidence] = field(default_factory=list)


@dataclass
class DimensionResult:
    """One dimension: its value, the details behind it, and its findings."""

    value: str  # one of VALUES[dimension], NOT_ASSESSABLE or NOT_APPLICABLE
    details: dict[str, Any] = field(default_factory=dict)  # e.g. offset_mm, missing, measured vs limit
    reason: str | None = None  # bilingual, required for NOT_ASSESSABLE / NOT_APPLICABLE
    findings: list[Finding] = field(default_factory=list)
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- what the measures read


@dataclass
class SeriesImages:
    """One series of the exam as the measures see it (pixels loaded lazily, once).

    ``header``/``label`` come from series classification (radqc.pipelines.series), so a measure
    knows which series is the thin lung kernel, the localizer, the DWI, the PA view.
    ``datasets()`` returns every instance WITH pixels, sorted (slice position, else
    InstanceNumber); ``volume()`` the ``radqc.dicom.volume.Volume`` (CT/MR stacks; raises
    ``UnsuitableSeries`` with its reason code for series that are not a volume); ``radiograph()``
    the ``radqc.dicom.volume.Radiograph`` of a single projection image (MONOCHROME1 inverted).
    """

    header: Any  # radqc.pipelines.series.features.SeriesHeader
    label: Any  # radqc.pipelines.series.types.SeriesLabel | None
    datasets: Any  # Callable[[], list[pydicom.Dataset]]
    volume: Any  # Callable[[], radqc.dicom.volume.Volume]
    radiograph: Any  # Callable[[], radqc.dicom.volume.Radiograph]


@dataclass
class ExamImages:
    """One exam for image QC: its series, what it was ordered as, and earlier results."""

    study_uid: str | None
    modality: str | None
    #: the scoring standard (qc_rules/standards/<code>.yaml), e.g. CT-CHEST-PLAIN; None = unknown item
    standard_code: str | None
    #: the standard exam items (radqc.vocab codes, e.g. CT.CHEST.PLAIN) of the order / split
    item_codes: list[str] = field(default_factory=list)
    series: list[SeriesImages] = field(default_factory=list)
    #: anatomy engine results (the anatomy stage's result, or run by the QC itself), keyed by series UID:
    #: {"landmarks": {name: z_mm | None}, "coverage": {...}, "structures": [...], "body_region": {...}, ...}
    anatomy: dict[str, Any] = field(default_factory=dict)
    #: radiograph analyses keyed by series UID: radqc.models.interfaces.RadiographResult
    radiographs: dict[str, Any] = field(default_factory=dict)
    #: the series stage's split (standard items with their series / slabs), when it ran
    split: dict[str, Any] | None = None


class EvidenceSink:
    """Where measures put evidence pictures (a small PNG with the region marked).

    The CLI writes files next to the JSON result, the stage puts them into the object store;
    measures only call :meth:`add` and put the returned reference into ``Evidence.image``.
    The default sink keeps nothing (returns None): measures never depend on evidence storage.
    """

    def add(self, image: Any, *, name: str, box: list[float] | None = None,
            window: tuple[float, float] | None = None, mask: Any = None) -> str | None:
        """``image``: a 2-D array (HU for CT, stored values otherwise); ``window`` (centre, width)
        to display it; ``box`` [row0, col0, row1, col1] or ``mask`` (bool array) to mark."""
        return None
