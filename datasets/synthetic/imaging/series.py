"""What a renderer hands to the writer: series with lazily rendered images, and their names.

Images are produced on demand (``LazyImages``) so a 300-slice 512 x 512 series is never
held in memory as a whole; a derived series refers to its source by object and image
indices, and the writer turns those into SourceImageSequence items once UIDs exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .context import ExamContext, vendors

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
ORIENTATIONS = {"axial": AXIAL, "coronal": CORONAL, "sagittal": SAGITTAL}


@dataclass
class ImageOut:
    """One image: stored pixel values plus its geometry and per-instance attributes."""

    pixels: np.ndarray
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    spacing: tuple[float, float] | None = None  # (row spacing, column spacing) mm
    attrs: dict[str, Any] = field(default_factory=dict)
    sources: list[int] = field(default_factory=list)  # indices into the derived-from series


class LazyImages(Sequence[ImageOut]):
    """A sequence whose items are rendered when read (and not kept)."""

    def __init__(self, n: int, make: Callable[[int], ImageOut]) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self.make(k) for k in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.make(i)


@dataclass
class SeriesOut:
    role: str
    modality: str
    sop_class: str
    description: str
    images: Sequence[ImageOut]
    attrs: dict[str, Any] = field(default_factory=dict)  # series-level DICOM attributes
    plane: str | None = None
    phase: str | None = None
    kernel: str | None = None
    thickness: float | None = None
    derived_from: SeriesOut | None = None
    slice_regions: list[str] = field(default_factory=list)
    #: (labels zyx uint8, origin xyz, spacing xyz, direction 9) for a NIfTI label map
    label_volume: tuple[np.ndarray, tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None = None
    truth: dict[str, Any] = field(default_factory=dict)
    body_part: str | None = None
    protocol: str | None = None
    burn_identifiers: bool = False
    kernel_class: str | None = None
    #: called by the writer with (index, stored pixels) of every image: measurements on written pixels
    on_image: Callable[[int, np.ndarray], None] | None = None
    # filled by the writer
    series_uid: str = ""
    sop_uids: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    series_number: int = 0


# --------------------------------------------------------------------------------- naming


def words(kind: str, key: str) -> dict[str, str]:
    return vendors()["words"].get(kind, {}).get(key, {})


def describe(ctx: ExamContext, role_class: str, rng: np.random.Generator, **values: Any) -> str:
    """A SeriesDescription in the exam's language and the vendor's style."""
    lang = ctx.language
    templates = vendors()["descriptions"][role_class]
    options = templates.get(lang) or templates["en"]
    template = str(options[int(rng.integers(len(options)))])
    fmt: dict[str, Any] = {"vendor_localizer": _pick(rng, ctx.vendor.get("localizer", ["Scout"]))}
    region = values.pop("region", None)
    if region:
        for k, v in words("region", region).items():
            fmt[f"region_{k}"] = v
    phase = values.pop("phase", None)
    for k, v in words("phase", phase or "native").items():
        fmt[f"phase_{k}"] = v
    plane = values.pop("plane", None)
    for k, v in words("plane", plane or "axial").items():
        fmt[f"plane_{k}"] = v
    kernel_class = values.pop("kernel_class", None)
    fmt["kernel_zh"] = words("kernel", kernel_class or "soft").get("zh", "")
    view = values.get("view")
    if view:
        for k, v in words("view", view).items():
            fmt[f"view_{k}"] = v
    mr_role = values.pop("mr_role", None)
    if mr_role:
        fmt["mr_zh"] = words("mr", mr_role).get("zh", mr_role)
        names = ctx.vendor.get("mr_names", {}).get(mr_role, [mr_role])
        fmt["vendor_mr"] = _pick(rng, names).format(**{f"plane_{k}": v for k, v in words("plane", plane or "axial").items()})
    fmt.update(values)
    try:
        text = template.format(**fmt)
    except (KeyError, IndexError):
        text = template
    text = " ".join(text.split())
    data = text.encode("utf-8")
    return data[:64].decode("utf-8", errors="ignore").rstrip() if len(data) > 64 else text


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def fmt_thk(t: float) -> str:
    return f"{t:g}"
