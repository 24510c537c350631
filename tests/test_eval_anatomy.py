"""``radqc eval anatomy --quick``: renders its own held-out cases and scores all three anatomy models."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from radqc.cli.main import app
from radqc.datasets.evaluation import registry


def test_anatomy_evaluator_needs_no_data_folder() -> None:
    info = registry.get("anatomy")
    assert info.needs_data is False
    assert registry.get("rules").needs_data is True


def test_eval_anatomy_quick_scores_every_part() -> None:
    result = CliRunner().invoke(app, ["eval", "anatomy", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["stage"] == "anatomy"
    details = report["details"]
    assert set(details) == {"ct_organs", "body_region", "radiograph_anatomy"}, report["notes"]
    ct = details["ct_organs"]
    assert ct["geometry"].startswith("source")
    assert all(9000 <= s < 9100 for s in ct["seeds"])  # held-out seeds only
    # the quick cases cover chest, head and pelvis: their big structures must be found
    for organ in ("lung_left", "lung_right", "brain", "skull", "pelvis_bones"):
        assert report["dice"][organ] > 0.6, (organ, report["dice"][organ])
    assert report["dice"]["body"] > 0.9
    assert report["rates"]["landmark_within_10mm"]["denominator"] > 0
    assert any(k.startswith("dx:chest/lung_left") for k in report["dice"])
