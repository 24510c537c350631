"""``radqc segment PATH --out DIR [--json]``: the public contract (docs/anatomy.md).

Models are plugged in the way a site plugs in its own — a models.yaml naming ``python``
factories — here the test doubles of tests/test_anatomy_engine.py. Without a model the
command says so (exit 3, ``model_unavailable``) and invents nothing; bad input exits 2 with
a bilingual ``error`` and never a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from radqc.cli.main import app
from radqc.models.interfaces import CT_LANDMARKS, RadiographResult
from tests.test_volume import _radiograph, series


class HalfAnalyser:
    """Radiograph test double: 'lung_left'/'lung_right' are the image's right/left halves."""

    name = "test-half-analyser"
    version = "0"

    def __init__(self, **_: Any) -> None:
        pass

    def analyse(self, pixels, spacing_mm, view, body_part=None):  # type: ignore[no-untyped-def]
        rows, cols = pixels.shape
        left = np.zeros(pixels.shape, bool)
        left[:, cols // 2 :] = True
        return RadiographResult(view=view, masks={"lung_left": left, "lung_right": ~left},
                                landmarks={"carina": (rows / 2, cols / 2), "marker": None},
                                measurements={"test": 1}, model=self.name, version=self.version)


def _config(tmp_path: Path, slots: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(json.dumps({"slots": slots}), encoding="utf-8")  # JSON is YAML
    monkeypatch.setenv("RADQC_MODELS_CONFIG", str(path))
    for slot in ("CT_ORGANS", "BODY_REGION", "RADIOGRAPH_ANATOMY"):
        monkeypatch.delenv(f"RADQC_MODEL_{slot}", raising=False)


DOUBLES = {
    "ct_organs": {"kind": "python", "factory": "tests.test_anatomy_engine:ThresholdSegmenter", "version": "t1"},
    "body_region": {"kind": "python", "factory": "tests.test_anatomy_engine:SliceFractionScorer"},
    "radiograph_anatomy": {"kind": "python", "factory": "tests.test_segment_cli:HalfAnalyser"},
}


@pytest.fixture
def doubles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, DOUBLES, monkeypatch)


def _body_series(folder: Path, n: int = 8, **kwargs: Any) -> list[pydicom.Dataset]:
    """An axial CT series whose pixels hold a body (10 HU) with a liver-HU block (60 HU)."""
    datasets = series(n, size=24, spacing=3.0, **kwargs)
    for ds in datasets:
        arr = np.full((24, 24), 24, np.int16)
        arr[4:20, 4:20] = 1024 + 10
        arr[8:14, 6:12] = 1024 + 60
        ds.PixelData = arr.tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(datasets):
        ds.save_as(folder / f"IM{i:04d}.dcm", enforce_file_format=True)
    return datasets


def invoke(*args: str) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(app, ["segment", *args])
    assert "Traceback" not in result.output, result.output
    data = None
    if "--json" in args:
        data = json.loads(result.stdout)
    return result.exit_code, data, result.output


def test_segment_json_contract(tmp_path: Path, doubles: None) -> None:
    import SimpleITK as sitk

    datasets = _body_series(tmp_path / "ct")
    out = tmp_path / "out"
    code, data, _ = invoke(str(tmp_path / "ct"), "--out", str(out), "--json")
    assert code == 0, data
    assert data is not None and data["status"] == "ok" and data["error"] is None
    assert data["series_instance_uid"] == datasets[0].SeriesInstanceUID and data["modality"] == "CT"
    names = [s["name"] for s in data["structures"]]
    assert names == ["body", "liver"]
    for s in data["structures"]:
        assert {"name", "label", "volume_ml", "z_min_mm", "z_max_mm", "mean_hu", "sd_hu", "centroid_mm"} <= set(s)
    liver = data["structures"][1]
    assert liver["label"] == 9 and liver["volume_ml"] == pytest.approx(8 * 36 * 0.6 * 0.8 * 3.0 / 1000, abs=1e-3)
    assert liver["z_min_mm"] == pytest.approx(-21.0) and liver["z_max_mm"] == pytest.approx(0.0)
    assert list(data["landmarks"]) == list(CT_LANDMARKS)
    assert data["landmarks"]["lung_apex"] == pytest.approx(0.0) and data["landmarks"]["vertex"] is None
    assert data["coverage"]["text"]["en"].startswith("covers lung apex to")
    assert data["models"]["ct_organs"]["name"] == "test-threshold-segmenter"
    assert isinstance(data["warnings"], list)
    # files: the label map in the source geometry, the SEG beside it, the result
    labels = sitk.ReadImage(str(out / "labels.nii.gz"))
    assert labels.GetSize() == (24, 24, 8)
    assert labels.GetOrigin() == pytest.approx((-50.0, -60.0, -21.0))
    arr = sitk.GetArrayFromImage(labels)
    assert int((arr == liver["label"]).sum()) == 8 * 36
    seg = pydicom.dcmread(out / "seg.dcm")
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in datasets}
    assert json.loads((out / "result.json").read_text(encoding="utf-8"))["structures"] == data["structures"]


def test_segment_human_output(tmp_path: Path, doubles: None) -> None:
    _body_series(tmp_path / "ct")
    code, _, output = invoke(str(tmp_path / "ct"), "--out", str(tmp_path / "out"))
    assert code == 0
    assert "liver" in output and "labels.nii.gz" in output and "coverage" in output


def test_missing_model_is_reported_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(tmp_path, {"ct_organs": {"kind": "python", "factory": "tests.no_such_module:Nothing"},
                       "body_region": DOUBLES["body_region"]}, monkeypatch)
    _body_series(tmp_path / "ct")
    out = tmp_path / "out"
    code, data, output = invoke(str(tmp_path / "ct"), "--out", str(out), "--json")
    assert code == 3
    assert data is not None and data["status"] == "model_unavailable"
    assert data["error"]["code"] == "model_unavailable" and "模型不可用" in data["error"]["message"]
    assert data["models"]["ct_organs"]["status"] == "unavailable"
    assert data["structures"] == [] and not (out / "labels.nii.gz").exists()
    assert data["landmarks"]["lung_apex"] is not None  # the scorer that is there still ran


def _bad(kind: str, folder: Path) -> None:
    if kind == "non_axial":
        _body_series(folder, orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    elif kind == "gantry_tilt":
        tilt = math.radians(12)
        _body_series(folder, orientation=(1.0, 0.0, 0.0, 0.0, math.cos(tilt), math.sin(tilt)))
    elif kind == "missing_slices":
        _body_series(folder, z=[0.0, -3.0, -6.0, -12.0, -15.0])
    elif kind == "inconsistent_spacing":
        _body_series(folder, z=[0.0, -3.0, -6.0, -10.0, -13.0])
    elif kind == "single_slice":
        _body_series(folder, n=1)
    elif kind == "not_ct":
        _body_series(folder, Modality="MR")
    elif kind == "no_dicom":
        folder.mkdir(parents=True)
        (folder / "readme.txt").write_text("nothing here")


@pytest.mark.parametrize("kind", ["non_axial", "gantry_tilt", "missing_slices", "inconsistent_spacing",
                                  "single_slice", "not_ct", "no_dicom"])
def test_bad_input_exits_2_with_a_bilingual_error(tmp_path: Path, doubles: None, kind: str) -> None:
    _bad(kind, tmp_path / "in")
    out = tmp_path / "out"
    code, data, output = invoke(str(tmp_path / "in"), "--out", str(out), "--json")
    assert code == 2
    assert data is not None and data["status"] == "unsuitable"
    assert data["error"]["code"] == kind
    message = data["error"]["message"]
    assert " / " in message and any("\u4e00" <= ch <= "\u9fff" for ch in message)
    assert data["structures"] == [] and list(data["landmarks"]) == list(CT_LANDMARKS)
    assert not (out / "labels.nii.gz").exists()
    code, _, output = invoke(str(tmp_path / "in"), "--out", str(out))
    assert code == 2 and kind in output


def test_path_that_does_not_exist(tmp_path: Path, doubles: None) -> None:
    code, data, _ = invoke(str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--json")
    assert code == 2 and data is not None and data["error"]["code"] == "no_dicom"


def test_segment_radiograph(tmp_path: Path, doubles: None) -> None:
    import SimpleITK as sitk

    folder = tmp_path / "dx"
    folder.mkdir()
    ds = _radiograph()
    ds.save_as(folder / "dx.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    code, data, _ = invoke(str(folder), "--out", str(out), "--json")
    assert code == 0, data
    assert data is not None and data["kind"] == "radiograph" and data["view"] == "PA"
    assert [(s["name"], s["label"]) for s in data["structures"]] == [("lung_left", 1), ("lung_right", 2)]
    assert data["structures"][0]["area_mm2"] == pytest.approx(16 * 8 * 0.04)
    assert data["landmarks"]["carina"] == [8.0, 8.0] and data["landmarks"]["marker"] is None
    stack = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    assert stack.shape == (2, 16, 16) and stack[0, :, 8:].all() and not stack[0, :, :8].any()
    assert not [w for w in data["warnings"] if "SEG" in w]
    seg = pydicom.dcmread(out / "seg.dcm")
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID


def test_bad_seg_type_option(tmp_path: Path, doubles: None) -> None:
    _body_series(tmp_path / "ct")
    code, data, _ = invoke(str(tmp_path / "ct"), "--out", str(tmp_path / "o"), "--seg-type", "fractional", "--json")
    assert code == 2 and data is not None and data["error"]["code"] == "bad_option"


def test_series_option_selects_or_refuses(tmp_path: Path, doubles: None) -> None:
    thin = _body_series(tmp_path / "in" / "thin")
    thick = _body_series(tmp_path / "in" / "thick", n=4, SliceThickness=5.0)
    code, data, _ = invoke(str(tmp_path / "in"), "--out", str(tmp_path / "o1"), "--json",
                           "--series", thick[0].SeriesInstanceUID)
    assert code == 0 and data is not None and data["series_instance_uid"] == thick[0].SeriesInstanceUID
    assert len(data["series_in_folder"]) == 2
    code, data, _ = invoke(str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--json", "--series", "1.2.3")
    assert code == 2 and data is not None and data["error"]["code"] == "series_not_found"
    del thin
