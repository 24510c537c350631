"""The contract between the two halves of the synthetic exam generator.

* The *planner* (``datasets/synthetic/clinical/``) draws, from a seed, everything about an
  exam that is not pixels: hospital, patient identity, ordered items, charges, report,
  seeded rule-QC violations and charge irregularities — and the :class:`ImagingSpec` that
  says what must be imaged and which image defects to apply.
* The *renderer* (``datasets/synthetic/imaging/``) turns an :class:`ImagingSpec` into DICOM
  files and returns an :class:`ImagingResult`: what was really written, with the ground
  truth measured on the pixels it made.

Both are deterministic given ``ImagingSpec.seed``. Every applied defect is recorded with
its parameters (TorchIO-style history): that record *is* the ground truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Size = Literal["small", "full"]
Modality = Literal["CT", "MR", "DX", "CR"]

#: Body regions the renderer can image (CT/MR phantoms, radiograph projections).
REGIONS = ("head", "neck", "chest", "abdomen", "pelvis", "cervical_spine", "thoracic_spine", "lumbar_spine", "knee")

#: Image-QC dimensions and their values (qc-items.md); keys are public vocabulary.
QC_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "range": ("正常", "过小", "过大"),
    "positioning": ("标准", "不标准"),
    "artifact": ("无", "运动", "设备", "异物"),
    "centring": ("正常", "偏上", "偏下", "偏左", "偏右"),
    "noise": ("ok", "excess"),
    "sharpness": ("ok", "blur"),
    "reconstruction": ("ok", "deviation"),
    "window": ("ok", "deviation"),
    "sequences": ("complete", "missing"),
    "dose": ("ok", "above_reference", "not_recorded"),
}


#: Defect handlers the renderer implements, per modality group (``Defect.params["kind"]``).
#: When ``kind`` is absent the renderer picks one from (dimension, value); see
#: docs/synthetic-imaging.md for each kind's parameters and the measured truth it records.
DEFECT_KINDS: dict[str, tuple[str, ...]] = {
    "CT": (
        "range_too_small", "range_too_large", "off_centre", "patient_rotation", "motion", "metal", "truncation",
        "foreign_object", "excess_noise", "blur", "window_wrong", "window_missing", "thickness_nonstandard",
        "kernel_nonstandard", "dose_above_reference", "dose_not_recorded",
    ),
    "MR": ("missing_sequence", "range_too_small", "motion", "metal", "excess_noise", "blur", "thickness_nonstandard"),
    "DX": (
        "costophrenic_cutoff", "collimation_too_wide", "rotation", "scapula_over_lung", "shallow_inspiration",
        "marker_missing", "marker_wrong", "foreign_object", "off_centre", "motion", "grid_lines", "excess_noise", "blur",
        "dose_above_reference", "dose_not_recorded",
    ),
}

#: ImagingSpec.evidence keys the renderer acts on (charge-audit evidence, docs/synthetic-imaging.md).
EVIDENCE_KEYS: dict[str, str] = {
    "reuse_pixels_from": "F1/F2: copy the pixel data of the already rendered exam with this exam_key",
    "reuse_pixels_path": "F1/F2: explicit folder of the source exam (relative to out_dir or absolute)",
    "near_identical": "F1: with reuse, change one pixel per image so hashes differ",
    "contrast_absent": "F5: no contrast tags and unenhanced vessels whatever the phases say",
    "derived": "F10: False omits MPR/MIP/VR series",
    "thin_slices": "F11: False omits thin (< 2 mm) original axial series",
    "spectral": "F12: True adds mono-energetic and iodine series (spectral-capable model)",
    "ecg_gating": "F13: True adds TriggerTime/HeartRate/NominalPercentageOfCardiacPhase to chest CT",
    "extra_views": "F17: list of additional radiograph views (PA, AP, LAT, OBL)",
    "duplicate_view": "F17: True repeats the first view (fewer distinct ViewPositions than images)",
    "laterality": "knee: L or R when header has no Laterality",
}


@dataclass
class Defect:
    """One image-quality defect to apply: its QC dimension, value, and parameters.

    ``params`` are drawn by the planner (e.g. ``{"direction": "left", "offset_mm": 42}`` for
    centring, ``{"missing": ["lung_base"]}`` for range, ``{"sequence": "FLAIR"}`` for a
    missing MR sequence); the renderer records what it actually applied in
    :attr:`ImagingResult.applied_defects`.
    """

    dimension: str
    value: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SeriesRole:
    """A series the exam should contain (the renderer may add the localizer and dose report)."""

    role: str  # e.g. "localizer", "axial_soft_thick", "axial_lung_thin", "mpr_coronal", "mip", "vr", "dose_report", "T1W", "DWI", "PA", "LAT"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImagingSpec:
    exam_key: str  # unique within a generated set, used in file paths and ground truth
    seed: int
    modality: Modality
    regions: list[str]  # imaged regions in order, e.g. ["chest", "abdomen", "pelvis"]
    size: Size = "small"
    vendor: str = "GE"  # GE, Siemens, Philips, UIH, Canon
    sex: Literal["M", "F"] = "M"
    age: int = 50
    #: CT contrast phase per acquisition: "native", "arterial", "portal", "delayed".
    phases: list[str] = field(default_factory=lambda: ["native"])
    #: "one_acquisition" (chest+abdomen+pelvis in one long series) or "separate" (one per region).
    acquisition: Literal["one_acquisition", "separate"] = "separate"
    series: list[SeriesRole] = field(default_factory=list)
    defects: list[Defect] = field(default_factory=list)
    #: DICOM identity and header facts the planner owns (patient, accession, times, device, UIDs prefix).
    header: dict[str, Any] = field(default_factory=dict)
    #: Header corruption at realistic rates: {"body_part_wrong": True, "description_wrong": True, ...}
    header_noise: dict[str, Any] = field(default_factory=dict)
    #: Charge-irregularity evidence the pixels/headers must carry, e.g. {"reuse_pixels_from": "<exam_key>"}.
    evidence: dict[str, Any] = field(default_factory=dict)
    burned_in_identifiers: bool = False
    transfer_syntax: str = "1.2.840.10008.1.2.1"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SeriesTruth:
    series_instance_uid: str
    role: str
    description: str
    modality: str
    n_instances: int
    files: list[str]  # relative to the export folder
    plane: str | None = None
    phase: str | None = None
    kernel: str | None = None
    slice_thickness_mm: float | None = None
    derived_from: str | None = None  # source SeriesInstanceUID for MPR/MIP/VR
    #: Per-slice region label (z order) for CT/MR: e.g. ["chest", "chest", ..., "abdomen"].
    slice_regions: list[str] = field(default_factory=list)
    label_map: str | None = None  # NIfTI path of the structure label map, relative
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImagingResult:
    study_instance_uid: str
    series: list[SeriesTruth]
    #: Structures present with their label ids and voxel counts / z-extent in mm.
    structures: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every defect actually applied, with measured parameters (the ground truth).
    applied_defects: list[Defect] = field(default_factory=list)
    #: Measured facts for QC labels: body centroid offset (mm, fraction), noise SD (HU), z-range per region...
    measurements: dict[str, Any] = field(default_factory=dict)
    #: sha256 of the pixel data of each SOP instance, for reuse (F1/F2) truth.
    pixel_hashes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
