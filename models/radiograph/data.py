"""Training and evaluation cases from the synthetic generator's radiographs (DX / CR).

Each case is one projection: the stored pixels (as the DICOM would carry them, MONOCHROME1
inverted for Philips/Canon/CR), the pixel spacing, a stack of binary masks in *our* channel
order (:data:`CHANNELS`) and the renderer's measured positioning truth. The renderer is
called in-process (``DXRenderer``) rather than through ``render_exam`` so that no DICOM or
NIfTI is written: the pixels are the same arrays the writer would store.

Defects are drawn per exam from a seeded stream, so a seed list fully determines a data
set; training and held-out evaluation use disjoint seed ranges (:data:`TRAIN_SEEDS`,
:data:`HELDOUT_SEEDS`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Output channels of the network, in order. Generator structures map onto them by
#: :data:`FROM_GENERATOR`; ``marker`` is the lead L/R marker's glyph, ``field`` the exposed
#: (collimated) area of the detector.
CHANNELS: tuple[str, ...] = (
    "lung_left", "lung_right", "heart", "scapula_left", "scapula_right", "clavicle_left", "clavicle_right",
    "ribs", "vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar", "pelvis", "femur", "tibia",
    "fibula", "patella", "marker", "foreign_object", "field",
)
FROM_GENERATOR: dict[str, str] = {
    "pelvis_bones": "pelvis", "sacrum": "pelvis", "femur_left": "femur", "femur_right": "femur",
}

#: Seeds: training draws from [0, 100000), held-out evaluation from [900000, ...).
TRAIN_SEEDS = range(0, 100_000)
HELDOUT_SEEDS = range(900_000, 1_000_000)

#: (region, views, weight) mixture of the training set.
MIXTURE: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("chest", ("PA", "LAT"), 0.6),
    ("knee", ("AP", "LAT"), 0.15),
    ("lumbar_spine", ("AP", "LAT"), 0.08),
    ("thoracic_spine", ("AP", "LAT"), 0.07),
    ("cervical_spine", ("AP", "LAT"), 0.05),
    ("abdomen", ("AP",), 0.03),
    ("pelvis", ("AP",), 0.02),
)
#: DX defect kinds drawn for training (each independently with probability ``DEFECT_P``).
DEFECTS: tuple[str, ...] = (
    "rotation", "scapula_over_lung", "shallow_inspiration", "costophrenic_cutoff", "collimation_too_wide",
    "marker_missing", "marker_wrong", "foreign_object", "off_centre", "motion", "grid_lines", "excess_noise", "blur",
)
DEFECT_P = 0.14
VENDORS = ("GE", "Siemens", "Philips", "UIH", "Canon")


@dataclass
class Case:
    """One projection with its truth."""

    seed: int
    region: str
    view: str
    pixels: np.ndarray  # stored values (uint16), MONOCHROME1 already inverted when mono1
    mono1: bool
    spacing_mm: float
    masks: np.ndarray  # (len(CHANNELS), rows, cols) uint8
    truth: dict[str, Any] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)


def draw_defects(rng: np.random.Generator, region: str) -> list[Any]:
    """A random subset of DX defects (as spec ``Defect`` objects) for one exam."""
    from radqc.datasets.synthetic.spec import Defect

    out = []
    for kind in DEFECTS:
        if rng.random() >= DEFECT_P:
            continue
        params: dict[str, Any] = {"kind": kind}
        if kind == "off_centre":
            params["direction"] = str(rng.choice(["left", "right", "up", "down"]))
        if kind == "costophrenic_cutoff" and region == "chest" and rng.random() < 0.4:
            params["missing"] = ["costophrenic_angle_right"]
        out.append(Defect("positioning", "不标准", params))
    return out


def render_cases(seed: int, region: str = "chest", views: tuple[str, ...] = ("PA", "LAT"), size: str = "small",
                 defects: list[Any] | None = None, vendor: str | None = None, modality: str | None = None) -> list[Case]:
    """Render one exam (one or more views) and return its projections as :class:`Case`s.

    ``defects`` None draws a random defect set from the seed; pass ``[]`` for a standard exam."""
    from radqc.datasets.synthetic.imaging.context import ExamContext
    from radqc.datasets.synthetic.imaging.radiograph import DXRenderer
    from radqc.datasets.synthetic.spec import ImagingSpec, SeriesRole

    rng = np.random.default_rng([seed, 7])
    if defects is None:
        defects = draw_defects(rng, region)
    vendor = vendor or str(rng.choice(VENDORS))
    modality = modality or ("CR" if rng.random() < 0.15 else "DX")
    spec = ImagingSpec(exam_key=f"cxr{seed}", seed=int(seed), modality=modality, regions=[region], size=size,  # type: ignore[arg-type]
                       vendor=vendor, sex="F" if rng.random() < 0.5 else "M", age=int(rng.integers(18, 85)),
                       series=[SeriesRole(v) for v in views], defects=list(defects))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ExamContext.create(spec, Path(tmp))
        series = DXRenderer(ctx).render()
    out = []
    for s in series:
        pixels = np.asarray(s.images[0].pixels)
        mono1 = s.attrs.get("PhotometricInterpretation") == "MONOCHROME1"
        lab, _, spacing, _ = s.label_volume
        names = list(s.truth.get("label_channels") or [])
        masks = np.zeros((len(CHANNELS),) + pixels.shape, np.uint8)
        for k, name in enumerate(names):
            ch = FROM_GENERATOR.get(name, name)
            if ch in CHANNELS and k < lab.shape[0]:
                masks[CHANNELS.index(ch)] |= lab[k].astype(np.uint8)
        marker = s.truth.get("marker") or {}
        if marker.get("present") and marker.get("box"):
            r, c, h, w = (int(v) for v in marker["box"])
            mono2 = (4095 - pixels) if mono1 else pixels
            glyph = mono2[r:r + h, c:c + w] >= 4040
            masks[CHANNELS.index("marker"), r:r + h, c:c + w] = glyph.astype(np.uint8)
        col = s.truth.get("collimation_px")
        if col:
            masks[CHANNELS.index("field"), col["rows"][0]:col["rows"][1], col["cols"][0]:col["cols"][1]] = 1
        out.append(Case(seed=int(seed), region=region, view=str(s.truth.get("view")), pixels=pixels, mono1=bool(mono1),
                        spacing_mm=float(spacing[0]), masks=masks, truth=dict(s.truth),
                        defects=[str(d.params.get("kind")) for d in defects]))
    return out


def pick_region(rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    w = np.array([m[2] for m in MIXTURE])
    i = int(rng.choice(len(MIXTURE), p=w / w.sum()))
    return MIXTURE[i][0], MIXTURE[i][1]


def training_cases(n_exams: int, first_seed: int = 0, full_fraction: float = 0.12) -> list[Case]:
    """``n_exams`` exams from consecutive training seeds (region, size and defects drawn per seed)."""
    out: list[Case] = []
    for seed in range(first_seed, first_seed + n_exams):
        if seed not in TRAIN_SEEDS:
            raise ValueError(f"seed {seed} is outside the training range")
        rng = np.random.default_rng([seed, 11])
        region, views = pick_region(rng)
        size = "full" if rng.random() < full_fraction else "small"
        out.extend(render_cases(seed, region, views, size))
    return out
