"""What the anatomy engine asks of a model, whoever trained it (us, MONAI, nnU-Net).

Three slots, each a small protocol, so the pipeline code (``radqc.pipelines.anatomy``)
never knows whether it runs our bundled ONNX weights or weights a user brought:

* ``ct_organs`` — :class:`Segmenter`: a CT volume in, a label map in *our* label set
  (``models/labels/ct_organs.yaml``) out, in the input's exact geometry.
* ``body_region`` — :class:`BodyRegionScorer`: one continuous body-position score per axial
  slice, and landmark z positions derived from the scores.
* ``radiograph_anatomy`` — :class:`RadiographAnalyser`: masks and landmarks on a projection.

Images are SimpleITK images in DICOM LPS orientation (what ``radqc.dicom.volume`` builds).
This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import SimpleITK as sitk

    from radqc.models.registry import LabelSet

#: Landmarks of the body-region slot, head to feet (public contract of ``radqc segment``).
CT_LANDMARKS: tuple[str, ...] = (
    "vertex", "skull_base", "lung_apex", "carina", "diaphragm_dome", "lower_renal_pole", "iliac_crest",
    "pubic_symphysis",
)


@runtime_checkable
class Segmenter(Protocol):
    """A CT organ segmenter in our label set."""

    name: str
    version: str

    @property
    def label_set(self) -> LabelSet: ...

    def segment(self, image: sitk.Image) -> sitk.Image:
        """uint8 label map with the geometry (size, origin, spacing, direction) of ``image``."""
        ...


@dataclass
class BodyRegionResult:
    """Per-slice scores (index order of the input volume) and landmark z (mm, patient LPS z).

    ``landmarks`` maps every name of :data:`CT_LANDMARKS` to a z in mm, or None when that
    landmark lies outside the scanned range. ``regions`` is the body region per slice
    (head / neck / chest / abdomen / pelvis / legs)."""

    scores: list[float]
    z_mm: list[float]
    landmarks: dict[str, float | None]
    regions: list[str] = field(default_factory=list)
    monotonic_fraction: float | None = None  # fraction of consecutive slice pairs in order
    model: str = ""
    version: str = ""


@runtime_checkable
class BodyRegionScorer(Protocol):
    name: str
    version: str

    def score(self, image: sitk.Image) -> BodyRegionResult: ...


@dataclass
class RadiographResult:
    """Masks (bool arrays, image shape) and landmarks ((row, col) pixel or None) of a projection.

    ``measurements`` holds derived numbers the positioning checks use (e.g. scapula overlap of
    the lung fields, clavicle-to-spine asymmetry, posterior ribs above the diaphragm)."""

    view: str | None
    masks: dict[str, np.ndarray]
    landmarks: dict[str, tuple[float, float] | None]
    measurements: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    version: str = ""


@runtime_checkable
class RadiographAnalyser(Protocol):
    name: str
    version: str

    def analyse(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None, view: str | None,
                body_part: str | None = None) -> RadiographResult: ...
