"""The learned header classifier: registered weights load, predictions are distributions, and the
fused classifier labels freshly generated exams (seeds never used in training) correctly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radqc.datasets.evaluation.series_truth import expected_label
from radqc.datasets.synthetic.generate import generate_set
from radqc.models.series_header import SeriesHeaderModel
from radqc.models.series_header.featurize import Featurizer
from radqc.pipelines.series.categories import category_code
from radqc.pipelines.series.classify import SeriesClassifier
from radqc.pipelines.series.features import SeriesHeader, headers_from_folder
from radqc.pipelines.series.heads import HEADS


@pytest.fixture(scope="module")
def exams(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[list[SeriesHeader], dict[str, dict[str, object]]]]:
    """Headers and expected labels of 6 MR + 6 mixed generated exams (seeds 4242/4243)."""
    root = tmp_path_factory.mktemp("series_sets")
    out = []
    for name, seed, profile in (("mr", 4242, "mr"), ("mixed", 4243, "mixed")):
        generate_set(root / name, 6, seed=seed, profile_name=profile)
        for truth_path in sorted((root / name / "truth").glob("*.json")):
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            folders = list((root / name / "dicom").glob(f"*/{truth['exam_key']}"))
            if not folders:
                continue
            want = {s["series_instance_uid"]: expected_label(s) for s in truth["imaging"]["series"]
                    if "description_true" in (s.get("extra") or {})}
            out.append((headers_from_folder(folders[0]), want))
    return out


def test_registered_model_predicts_distributions() -> None:
    model = SeriesHeaderModel.load()
    h = SeriesHeader(series_uid="1", modality="MR", sop_class_uid="1.2.840.10008.5.1.4.1.1.4", tr=4000, te=100,
                     image_type=["ORIGINAL", "PRIMARY", "M", "ND"], orientation=[1, 0, 0, 0, 1, 0],
                     description="t2_tse_tra", protocol="t2_tse_tra", n_instances=20, n_positions=20, rows=256,
                     columns=256, pixel_spacing=0.9, slice_thickness=5.0, scanning_sequence=["SE"],
                     sequence_variant=["SK"], echo_train_length=16, flip_angle=90, field_strength=3.0,
                     manufacturer="SIEMENS", series_number=2)
    (probs,) = model.predict([h])
    assert set(probs) == set(HEADS)
    for field, dist in probs.items():
        assert abs(sum(dist.values()) - 1.0) < 1e-4, field
    assert max(probs["sequence"].items(), key=lambda kv: kv[1])[0] == "T2W"
    assert max(probs["phase"].items(), key=lambda kv: kv[1])[0] is None  # no phase for MR
    assert model.predict([]) == []


def test_featurizer_is_deterministic_and_text_noise_changes_only_text_columns() -> None:
    f1, f2 = Featurizer(), Featurizer()
    h = SeriesHeader(series_uid="1", modality="CT", description="胸部平扫 5mm", kernel="B30F", slice_thickness=5.0)
    a, b = f1.transform([h]), f2.transform([h])
    assert np.array_equal(a, b) and a.shape == (1, f1.dim)
    c = f1.transform([h], texts=[{"description": "Lung 1mm"}])
    changed = np.nonzero(a[0] != c[0])[0]
    lo, hi = f1.offsets["description"], f1.offsets["description"] + 384
    assert len(changed) and all(lo <= i < hi for i in changed)


def test_fused_classifier_on_fresh_generated_exams(exams: list[tuple[list[SeriesHeader], dict[str, dict[str, object]]]]) -> None:
    clf = SeriesClassifier(image_model=None)
    assert clf.header_model is not None
    n = ok = mr = mr_ok = 0
    for headers, want in exams:
        for lab in clf.classify(headers):
            truth = want.get(lab.series_uid)
            if truth is None:
                continue
            n += 1
            ok += lab.category == category_code(truth, lab.modality)
            assert 0.0 <= lab.confidence <= 1.0 and lab.evidence
            if lab.modality == "MR":
                mr += 1
                mr_ok += lab.sequence == truth["sequence"]
    assert n >= 40 and mr >= 20
    assert ok / n >= 0.95, (ok, n)
    assert mr_ok / mr >= 0.95, (mr_ok, mr)


def test_retraining_entry_points_exist() -> None:
    from radqc.models.series_header import train

    assert callable(train.train) and Path(train.DEFAULT_OUT).name == "series_header.onnx"
