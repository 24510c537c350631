"""Renders ImagingSpec into DICOM: CT/MR phantoms, radiograph projections, image defects.

Entry point: :func:`render_exam` (see ``docs/synthetic-imaging.md``).
"""

from .render import render_exam

__all__ = ["render_exam"]
