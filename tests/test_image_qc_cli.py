"""``radqc qc PATH``: the JSON contract on a generated exam, bad files listed, evidence PNGs written,
``--item`` (known and unknown), ``--records`` (item from the order, rule QC combined), several
studies -> a list, bilingual human output, a missing path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from radqc.cli.main import app
from radqc.pipelines.image_qc.types import DIMENSIONS, NOT_APPLICABLE, NOT_ASSESSABLE, VALUES

CONTRACT = set(DIMENSIONS) | {"grade", "score", "deductions", "item", "series", "version"}
DEDUCTION = {"check_id", "dimension", "value", "points", "reason_zh", "reason_en", "evidence"}


def _render(out: Path, key: str, description: str, seed: int, defects: list[Any] | None = None) -> Any:
    from radqc.datasets.synthetic.imaging import render_exam
    from radqc.datasets.synthetic.spec import ImagingSpec

    spec = ImagingSpec(exam_key=key, seed=seed, modality="DX", regions=["chest"], size="small",
                       header={"StudyDescription": description, "AccessionNumber": f"ACC-QC-{key}"},
                       defects=defects or [])
    return render_exam(spec, out, labels_dir=out.parent / f"labels-{key}")


@pytest.fixture(scope="module")
def exams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One radiograph exam (with a text file and a broken DICOM beside it), and a folder of two."""
    from radqc.datasets.synthetic.spec import Defect

    root = tmp_path_factory.mktemp("qc-cli")
    one = _render(root / "one", "Q1", "胸部正位", 31, [Defect("centring", "偏右", {"offset_mm": 70})])
    folder = root / "one" / "Q1"
    (folder / "notes.txt").write_text("not an image / 不是图像", encoding="utf-8")
    first = next(folder.rglob("*.dcm"))
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + first.read_bytes()[132:300])
    _render(root / "two", "Q2", "胸部正位", 32)
    _render(root / "two", "Q3", "胸部正位", 33)
    return {"root": root, "one": folder, "one_truth": one, "two": root / "two"}


def _invoke(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, ["qc", *args])
    assert result.exit_code == code, result.output
    return result


def _json(*args: str) -> Any:
    out = _invoke(*args, "--json", "--quiet", "--no-image-model").stdout
    start = min(i for i in (out.find("{"), out.find("[")) if i >= 0)
    return json.loads(out[start:])


def _check_contract(res: dict[str, Any]) -> None:
    assert CONTRACT <= set(res)
    for dim in DIMENSIONS:
        d = res[dim]
        assert isinstance(d, dict) and "value" in d
        assert d["value"] in VALUES[dim] or d["value"] in (NOT_ASSESSABLE, NOT_APPLICABLE), (dim, d)
        if d["value"] in (NOT_ASSESSABLE, NOT_APPLICABLE):
            assert d.get("reason") and " / " in d["reason"], (dim, d)
    if res["centring"]["value"] not in ("正常", NOT_ASSESSABLE, NOT_APPLICABLE):
        assert "offset_mm" in res["centring"]
    if res["sequences"]["value"] == "不完整":
        assert res["sequences"].get("missing")
    for ded in res["deductions"]:
        assert DEDUCTION <= set(ded) and ded["points"] > 0 and ded["reason_zh"] and ded["reason_en"]


def test_json_contract_bad_files_and_evidence(exams: dict[str, Any], tmp_path: Path) -> None:
    res = _json(str(exams["one"]), "--evidence-dir", str(tmp_path / "ev"))
    assert isinstance(res, dict)
    _check_contract(res)
    assert res["modality"] in ("DX", "CR") and res["item"]["code"] == "DX-CHEST-PA"
    assert res["item"]["source"] == "StudyDescription"
    assert res["grade"] in ("甲", "乙", "丙", "丁")
    assert res["score"] == pytest.approx(100 - sum(d["points"] for d in res["deductions"]))
    assert {Path(b["path"]).name for b in res["bad_files"]} == {"notes.txt", "broken.dcm"}
    assert {s["series_uid"] for s in res["series"]} == {s.series_instance_uid for s in exams["one_truth"].series}
    for image in res["evidence_images"]:
        path = Path(image)
        assert path.is_file() and path.read_bytes().startswith(b"\x89PNG") and str(tmp_path / "ev") in image
    assert res["reconstruction"]["value"] in (NOT_APPLICABLE, NOT_ASSESSABLE)  # radiographs: no recon
    assert res["sequences"]["value"] in (NOT_APPLICABLE, NOT_ASSESSABLE)


def test_item_option_known_and_unknown(exams: dict[str, Any]) -> None:
    known = _json(str(exams["one"]), "--item", "DX-CHEST-PA")
    assert known["item"]["code"] == "DX-CHEST-PA" and known["item"]["source"] == "--item"
    unknown = _json(str(exams["one"]), "--item", "心理咨询")
    _check_contract(unknown)
    assert unknown["item"]["code"] is None and unknown["item"]["value"] == NOT_ASSESSABLE
    assert " / " in unknown["item"]["reason"]
    for dim in ("range", "positioning", "dose"):  # item-dependent: not guessed
        assert unknown[dim]["value"] in (NOT_ASSESSABLE, NOT_APPLICABLE), dim
    assert unknown["standard"] is None and unknown["grade"] in ("甲", "乙", "丙", "丁")


def test_records_give_the_item_and_combine_rule_qc(exams: dict[str, Any], tmp_path: Path) -> None:
    study_uid = exams["one_truth"].study_instance_uid
    record = {"accession_number": "ACC-QC-Q1", "hospital_code": "450067894", "study_instance_uid": study_uid,
              "modality": "DX", "exam_items": ["胸部正位片"], "patient_sex": "M"}
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    res = _json(str(exams["one"]), "--records", str(path))
    assert res["item"]["code"] == "DX-CHEST-PA" and res["item"]["source"] == "records"
    assert res["combined"] is True and res["rule_qc"]["deductions"] > 0  # a bare record fails completeness rules
    rule_rows = [d for d in res["deductions"] if d["source"] == "rule_qc"]
    assert rule_rows and res["score"] == pytest.approx(max(0.0, res["image_score"] - res["rule_qc"]["points"]))


def test_several_studies_give_one_result_each(exams: dict[str, Any]) -> None:
    res = _json(str(exams["two"]))
    assert isinstance(res, list) and len(res) == 2
    assert [r["study_instance_uid"] for r in res] == sorted(r["study_instance_uid"] for r in res)
    for r in res:
        _check_contract(r)


def test_human_output_is_bilingual_and_a_missing_path_is_an_error(exams: dict[str, Any], tmp_path: Path) -> None:
    out = _invoke(str(exams["one"]), "--no-image-model").output
    assert "grade / 等级" in out and "score / 得分" in out and "dimension / 维度" in out
    assert "scan / 读取" in out and "roll-up / 汇总" in out  # progress per stage
    missing = _invoke(str(tmp_path / "nothing-here"), code=2)
    assert "does not exist" in missing.output and "不存在" in missing.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x", encoding="utf-8")
    empty = CliRunner().invoke(app, ["qc", str(tmp_path / "empty"), "--json", "-q"])
    assert empty.exit_code == 2 and "no DICOM" in empty.stdout
