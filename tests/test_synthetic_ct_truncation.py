"""A CT truncation defect is truth only when the images show it (generator 0.1.7).

The renderer narrows the reconstruction field to a fraction of the *body's* width; a head is
much narrower than the trunk and can still fit inside it. Before 0.1.7 the defect was recorded
anyway (with ``truncated_slices: 0``), so the truth said 设备 artifact for images without one.
"""

from __future__ import annotations

from pathlib import Path

from radqc.datasets.synthetic.imaging import render_exam
from radqc.datasets.synthetic.spec import Defect, ImagingSpec

TRUNCATION = Defect("artifact", "设备", {"kind": "truncation", "fov_fraction": 0.8})


def _render(tmp_path: Path, name: str, regions: list[str]):  # type: ignore[no-untyped-def]
    return render_exam(ImagingSpec(exam_key=name, seed=5, modality="CT", regions=regions, size="small",
                                   defects=[TRUNCATION]), tmp_path / name)


def test_a_head_inside_the_reduced_field_records_no_truncation(tmp_path: Path) -> None:
    result = _render(tmp_path, "head", ["head"])
    assert not any(d.params.get("kind") == "truncation" for d in result.applied_defects)
    skipped = result.measurements.get("defects_not_applied", [])
    assert [s["kind"] for s in skipped] == ["truncation"]
    assert "reconstruction field" in skipped[0]["reason"]


def test_a_trunk_past_the_reduced_field_records_its_truncated_slices(tmp_path: Path) -> None:
    result = _render(tmp_path, "abdomen", ["abdomen"])
    applied = [d for d in result.applied_defects if d.params.get("kind") == "truncation"]
    assert len(applied) == 1 and applied[0].params["truncated_slices"] > 0
