"""The anatomy engine (issue #5): CT organ label maps with per-structure statistics, slice
body-region landmarks and z-coverage in words, radiograph anatomy; NIfTI / DICOM SEG / JSON
writers. Shared by ``radqc segment`` and the ``anatomy`` pipeline stage; see docs/anatomy.md.

Heavy imports (SimpleITK, highdicom) happen inside the functions that need them.
"""

from radqc.pipelines.anatomy.engine import RESULT_SCHEMA, Analysis, analyse_ct, analyse_radiograph
from radqc.pipelines.anatomy.models import SLOTS, Unavailable, resolve_slot, slot_versions

__all__ = ["RESULT_SCHEMA", "SLOTS", "Analysis", "Unavailable", "analyse_ct", "analyse_radiograph", "resolve_slot",
           "slot_versions"]
