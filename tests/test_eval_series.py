"""``radqc eval series``: the truth it scores against, and a quick self-rendered run end to end."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from radqc.cli.main import app
from radqc.datasets.evaluation.evaluators.series import _slice_items, _truth_assignment


def _item(code: str, region: str) -> dict[str, Any]:
    return {"code": code, "region": region, "modality": "CT"}


def _series(uid: str, role: str, acquisition: int | None = None, regions: list[str] | None = None,
            slice_regions: list[str] | None = None, derived_from: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if acquisition is not None:
        extra["acquisition"] = acquisition
    if regions:
        extra["regions"] = regions
    return {"series_instance_uid": uid, "role": role, "modality": "CT", "extra": extra,
            "slice_regions": slice_regions or [], "derived_from": derived_from}


def test_truth_assignment_by_acquisition_and_without_acquisition_facts() -> None:
    imaged = [_item("CT.HEAD.PLAIN", "head"), _item("CT.CHEST.PLAIN", "chest")]
    series = [_series("loc1", "localizer", 0), _series("head", "axial_head_thick", 0, ["head"]),
              _series("loc2", "localizer", 1), _series("chest", "axial_soft_thick", 1, ["chest"]),
              _series("mpr", "mpr_coronal", 1), _series("dose", "dose_report")]
    truth = {"spec": {"modality": "CT", "acquisition": "separate", "regions": ["head", "chest"]},
             "imaging": {"series": series}}
    want = _truth_assignment(truth, imaged)
    assert want == {"loc1": {"CT.HEAD.PLAIN"}, "head": {"CT.HEAD.PLAIN"}, "loc2": {"CT.CHEST.PLAIN"},
                    "chest": {"CT.CHEST.PLAIN"}, "mpr": {"CT.CHEST.PLAIN"},
                    "dose": {"CT.HEAD.PLAIN", "CT.CHEST.PLAIN"}}
    # the same exam with its acquisition facts stripped (pixel-reuse evidence): runs from each localizer
    bare = [_series(s["series_instance_uid"], s["role"], derived_from="chest" if s["role"] == "mpr_coronal" else None)
            for s in series]
    truth["imaging"] = {"series": bare}
    assert _truth_assignment(truth, imaged) == want


def test_slice_items_take_the_nearest_item_for_regions_not_ordered() -> None:
    imaged = [_item("CT.CHEST.PLAIN", "chest"), _item("CT.UABD.PLAIN", "abdomen")]
    got = _slice_items(["neck", "chest", "chest", "abdomen", "pelvis"], imaged)
    assert got == ["CT.CHEST.PLAIN", "CT.CHEST.PLAIN", "CT.CHEST.PLAIN", "CT.UABD.PLAIN", "CT.UABD.PLAIN"]


def test_quick_evaluation_renders_held_out_cases_and_reports_every_figure() -> None:
    result = CliRunner().invoke(app, ["eval", "series", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    rates = {k: v["value"] for k, v in report["rates"].items()}
    for name in ("category", "mr_sequence", "mr_sequence_set", "assignment.all", "assignment.combined",
                 "assignment.slab_slices", "unknown", "field.role", "field.plane", "description_wrong.category"):
        assert name in rates, name
    assert report["n"] == 14 and any("seed 9301" in n for n in report["notes"])
    assert rates["category"] >= 0.9 and rates["assignment.all"] >= 0.9 and rates["assignment.slab_slices"] >= 0.9
    assert rates["unknown"] <= 0.1
