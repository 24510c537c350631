"""A CT knee scanned too long (range 过大) is longer than the normal knee scan (generator 0.1.6).

Before 0.1.6 the superior extension was clamped at depth -5 mm, which is the body phantom's
vertex but lies below the knee phantom's femur (the knee's depths run -170..170 mm around the
joint line): the "too large" knee came out *shorter* than a normal one, and the image-QC
range measure was scored against a truth no image showed.
"""

from __future__ import annotations

from pathlib import Path

import pydicom

from radqc.datasets.synthetic.imaging import render_exam
from radqc.datasets.synthetic.spec import Defect, ImagingSpec


def _scan_length_mm(root: Path, files: list[str]) -> float:
    z = sorted(float(pydicom.dcmread(root / f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files)
    return z[-1] - z[0]


def _axial_length(tmp_path: Path, name: str, defects: list[Defect]) -> tuple[float, list[Defect]]:
    out = tmp_path / name
    r = render_exam(ImagingSpec(exam_key=name, seed=11, modality="CT", regions=["knee"], size="small",
                                defects=defects), out)
    axial = max((s for s in r.series if s.plane == "axial" and len(s.files) > 1), key=lambda s: len(s.files))
    return _scan_length_mm(out, axial.files), list(r.applied_defects)


def test_a_knee_scanned_too_long_is_longer_than_a_normal_knee(tmp_path: Path) -> None:
    normal, _ = _axial_length(tmp_path, "knee_ok", [])
    for side in ("superior", "inferior"):
        large, applied = _axial_length(tmp_path, f"knee_{side}", [
            Defect("range", "过大", {"kind": "range_too_large", "excess_mm": 60.0, "side": side})])
        assert any(d.dimension == "range" and d.value == "过大" for d in applied)
        assert large >= normal + 40.0, (side, normal, large)
