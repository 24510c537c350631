"""The series label: what the classifier says about one series, and the value vocabularies.

The value vocabularies below are public contracts of ``radqc series PATH --json`` (issue #6):
extend them, never rename. The category code built from the fields is defined by
``radqc/vocab/series_categories.yaml`` (see :func:`radqc.pipelines.series.categories.category_code`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("localizer", "original", "derived", "dose_report", "screen_capture", "unknown")
DERIVED_TYPES = ("mpr", "mip", "minip", "vr", "cpr", "ssd", "ve", "adc", "mono", "iodine", "vnc",
                 "subtraction", "other")
PLANES = ("axial", "coronal", "sagittal", "oblique")
SEQUENCES = ("T1W", "T2W", "PD", "FLAIR", "STIR", "DWI", "ADC", "SWI", "TOF", "T1C", "DCE", "MRCP", "other")
PHASES = ("native", "arterial", "portal", "delayed")
KERNEL_CLASSES = ("soft", "lung", "bone", "head")
THICKNESS_CLASSES = ("thin", "standard")  # thin: < 2 mm (the guideline's 薄层扫描 add-on)
VIEWS = ("PA", "AP", "LAT", "OBL")
#: Fields a classifier component may vote on; ``None`` is a legal value (not applicable).
FIELDS = ("role", "derived_type", "plane", "sequence", "phase", "kernel_class", "thickness_class", "view",
          "region")

#: Evidence sources, in the order a reader is shown them.
SOURCES = ("header_rule", "header_model", "image_model", "description", "fusion")


@dataclass
class Evidence:
    """One reason behind a field value: which component said it, how sure, and from what."""

    source: str  # one of SOURCES
    field: str  # one of FIELDS, or "category"
    value: Any
    confidence: float
    detail: str = ""  # e.g. "TR 3200 ms, TE 102 ms, ETL 16" or "SeriesDescription 't2_tse_tra'"
    rule: str | None = None  # rule id for header rules

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SeriesLabel:
    """The classification of one series (JSON keys are a public contract)."""

    series_uid: str
    modality: str | None
    role: str = "unknown"
    derived_type: str | None = None
    plane: str | None = None
    sequence: str | None = None  # MR only
    phase: str | None = None  # CT only
    kernel_class: str | None = None  # CT original axial
    thickness_class: str | None = None
    view: str | None = None  # DX/CR/MG
    region: str | None = None  # body region of the series (head, neck, chest, abdomen, pelvis, knee, ...)
    category: str | None = None
    confidence: float = 0.0
    evidence: list[Evidence] = field(default_factory=list)
    #: True when the image model (or header facts) overruled what SeriesDescription says.
    description_overruled: bool = False
    #: Why the series is "unknown" (or a field is null), when it is.
    unknown_reason: str | None = None
    #: Per-field confidence of the fused value.
    field_confidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = [e.to_dict() if isinstance(e, Evidence) else e for e in self.evidence]
        return d
