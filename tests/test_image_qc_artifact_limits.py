"""Artifact limits are data: qc_rules/image_qc/artifact.yaml is what the measure reads."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydicom.uid import generate_uid

from radqc.dicom.factory import ct_slice
from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc.types import EvidenceSink, ExamImages, SeriesImages
from radqc.pipelines.series.features import from_datasets

N = 64


def _button_ct() -> ExamImages:
    """A CT series with a small metal button on the anterior skin (a foreign object, no streaks)."""
    rng = np.random.default_rng(5)
    study, uid = generate_uid(), generate_uid()
    yy, xx = np.mgrid[:N, :N]
    dss = []
    for k in range(10):
        img = np.where(((yy - N / 2) / 18) ** 2 + ((xx - N / 2) / 24) ** 2 <= 1, 40.0, -1000.0)
        img = img + rng.normal(0, 8, img.shape)
        if 4 <= k < 6:
            img[N // 2 - 19:N // 2 - 17, 31:33] = 3071.0
        dss.append(ct_slice(study_uid=study, series_uid=uid, pixels=np.rint(img).astype(np.int16), instance_number=k + 1,
                            position=(0.0, 0.0, -5.0 * k), pixel_spacing=(6.0, 6.0)))
    series = SeriesImages(header=from_datasets(dss), label=None, datasets=lambda: dss, volume=lambda: None,
                          radiograph=lambda: None)
    return ExamImages(study_uid=study, modality="CT", standard_code=None, series=[series])


def test_defaults_are_the_yaml_file() -> None:
    data = yaml.safe_load(art.PARAMS_FILE.read_text(encoding="utf-8"))
    assert art.DEFAULTS == data["defaults"]
    assert art.DEFAULTS["ct_metal_hu"] == 2500.0 and art.DEFAULTS["model_threshold"] is None


def test_every_limit_the_code_reads_is_in_the_file() -> None:
    """A limit read as p["..."] / p.get("...") that the file lacks would be a hidden code default."""
    src = Path(art.__file__).read_text(encoding="utf-8")
    read = set(re.findall(r'\bp\[\s*"([a-z_0-9]+)"\s*\]', src)) | set(re.findall(r'\bp\.get\(\s*"([a-z_0-9]+)"', src))
    assert read, "the parser found no limit reads"
    assert read <= set(art.DEFAULTS), sorted(read - set(art.DEFAULTS))


def test_a_changed_file_changes_the_decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exam = _button_ct()
    before = art.measure_artifact(exam, {"use_model": False}, EvidenceSink())["artifact"]
    assert before.value == "异物", before.details
    data = yaml.safe_load(art.PARAMS_FILE.read_text(encoding="utf-8"))
    data["defaults"]["ct_metal_hu"] = 4000.0  # the button (3071 HU) is no longer metal
    # ... nor a bright skin spot (session 22: ct_bright_skin_fo reads one as 异物 without metal pixels)
    data["defaults"]["ct_bright_skin_fo"] = False
    path = tmp_path / "artifact.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(art, "PARAMS_FILE", path)
    art.load_defaults.cache_clear()
    try:
        defaults = art.load_defaults()
        assert defaults["ct_metal_hu"] == 4000.0 and defaults["ct_bright_skin_fo"] is False
        after = art.measure_artifact(exam, {**defaults, "use_model": False}, EvidenceSink())["artifact"]
        assert after.value == "无", after.details
    finally:
        art.load_defaults.cache_clear()


def test_item_params_override_the_file() -> None:
    out = art.measure_artifact(_button_ct(), {"use_model": False, "ct_metal_hu": 4000.0, "ct_bright_skin_fo": False},
                               EvidenceSink())["artifact"]
    assert out.value == "无"
