"""``radqc series PATH``: the JSON contract, the combined-exam split on a generated exam, bad files listed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from radqc.cli.main import app
from radqc.pipelines.series.types import DERIVED_TYPES, PHASES, PLANES, ROLES, SEQUENCES

CONTRACT = ("series_uid", "role", "derived_type", "plane", "sequence", "phase", "category", "confidence", "evidence")


def _render(out: Path, header: dict[str, Any] | None, seed: int = 7) -> Any:
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec

    spec = ImagingSpec(exam_key="E1", seed=seed, modality="CT", regions=["chest", "abdomen"],
                       acquisition="one_acquisition", phases=["native"], size="small", header=header or {})
    return render_exam(spec, out, labels_dir=out.parent / f"{out.name}-labels")


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One chest + upper-abdomen CT in one helical acquisition, plus a text file and a broken DICOM."""
    root = tmp_path_factory.mktemp("series-cli") / "exam"
    truth = _render(root, {"StudyDescription": "胸部+上腹部CT平扫"})
    (root / "notes.txt").write_text("not an image / 不是图像", encoding="utf-8")
    first = next(root.rglob("*.dcm"))
    (root / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + first.read_bytes()[132:300])
    return root, truth


def _run(*args: str) -> Any:
    result = CliRunner().invoke(app, ["series", *args])
    assert result.exit_code == 0, result.output
    return result


def _json(*args: str) -> dict[str, Any]:
    out = _run(*args, "--json").stdout
    return json.loads(out[out.index("{"):])


def test_json_contract_split_into_slabs_and_bad_files_listed(combined: tuple[Path, Any]) -> None:
    root, truth = combined
    result = _json(str(root), "--items", "胸部+上腹部CT平扫", "--no-image-model")
    assert {Path(b["path"]).name for b in result["bad_files"]} == {"notes.txt", "broken.dcm"}
    assert all(b["reason"] in ("not_dicom", "corrupt", "no_series_uid") and " / " in b["message"]
               for b in result["bad_files"])
    (exam,) = result["exams"]
    truth_series = {s.series_instance_uid: s for s in truth.series}
    assert {s["series_uid"] for s in exam["series"]} == set(truth_series)
    for row in exam["series"]:
        assert all(k in row for k in CONTRACT)
        assert row["role"] in ROLES and (row["plane"] is None or row["plane"] in PLANES)
        assert row["phase"] is None or row["phase"] in PHASES
        assert row["sequence"] is None or row["sequence"] in SEQUENCES
        assert row["derived_type"] is None or row["derived_type"] in DERIVED_TYPES
        assert 0.0 <= row["confidence"] <= 1.0 and isinstance(row["evidence"], list)
    assert exam["items_from"] == "--items" and exam["no_order"] is False
    items = {it["code"]: it for it in exam["standard_items"]}
    assert list(items) == ["CT.CHEST.PLAIN", "CT.UABD.PLAIN"]
    assert exam["mismatch"] == [] and exam["unassigned"] == []
    # every original axial stack is cut in two slabs that hold all its slices, mostly the right ones
    right = total = 0
    for uid, ts in truth_series.items():
        if not ts.role.startswith("axial_"):
            continue
        slabs = {code: next(e["slab"] for e in items[code]["series"] if e["series_uid"] == uid) for code in items}
        assert all(s and s["boundary_source"] == "body_region" for s in slabs.values())
        assert sum(s["instances"] for s in slabs.values()) == ts.n_instances
        for rel, region in zip(ts.files, ts.slice_regions, strict=True):
            want = "CT.UABD.PLAIN" if region in ("abdomen", "pelvis") else "CT.CHEST.PLAIN"
            z = float(pydicom.dcmread(root / rel, stop_before_pixels=True).ImagePositionPatient[2])
            got = [c for c, s in slabs.items() if s["z_from_mm"] - 1e-3 <= z <= s["z_to_mm"] + 1e-3]
            right += got == [want]
            total += 1
    assert right / total >= 0.9
    # derived series follow their source into both items; localizer and dose report too
    by_role = {ts.role: uid for uid, ts in truth_series.items()}
    for role in ("mpr_coronal", "localizer", "dose_report"):
        for code in items:
            entry = next(e for e in items[code]["series"] if e["series_uid"] == by_role[role])
            assert entry["slab"] is None


def test_items_from_study_description_and_human_output(combined: tuple[Path, Any]) -> None:
    root, _ = combined
    result = _json(str(root), "--no-image-model")
    (exam,) = result["exams"]
    assert exam["items_from"] == "StudyDescription"
    assert [it["code"] for it in exam["standard_items"]] == ["CT.CHEST.PLAIN", "CT.UABD.PLAIN"]
    text = _run(str(root), "--no-image-model").stdout
    assert "item / 项目 CT.CHEST.PLAIN" in text and "skipped file / 跳过文件" in text


def test_no_order_and_nothing_readable(tmp_path: Path) -> None:
    root = tmp_path / "exam"
    _render(root, {"StudyDescription": ""}, seed=11)
    for f in root.rglob("*.dcm"):  # no StudyDescription at all: nothing to normalise
        ds = pydicom.dcmread(f)
        if "StudyDescription" in ds:
            del ds.StudyDescription
        if "RequestedProcedureDescription" in ds:
            del ds.RequestedProcedureDescription
        ds.save_as(f)
    (exam,) = _json(str(root), "--no-image-model")["exams"]
    assert exam["no_order"] is True and exam["standard_items"] == []
    assert sum(len(g["series"]) for g in exam["regions"]) == len(exam["series"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    result = CliRunner().invoke(app, ["series", str(empty), "--json"])
    assert result.exit_code == 2
    shutil.rmtree(empty)
