"""Header rules: the rule file is well-formed, vendor kernels map to their class, MR signatures fire."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from radqc.pipelines.series.categories import categories, category_code, expand
from radqc.pipelines.series.features import SeriesHeader
from radqc.pipelines.series.rules import RULES_FILE, RuleSet, load_rules
from radqc.pipelines.series.types import DERIVED_TYPES, PHASES, PLANES, ROLES, SEQUENCES

VENDORS = Path(__file__).resolve().parents[1] / "datasets" / "synthetic" / "imaging" / "vendors.yaml"


def scores(h: SeriesHeader, field: str) -> dict[object, float]:
    return load_rules().apply(h).scores("header_rule").get(field, {})


def top(h: SeriesHeader, field: str) -> object:
    s = scores(h, field)
    return max(s.items(), key=lambda kv: kv[1])[0] if s else None


def test_rule_file_is_consistent_with_the_public_vocabularies() -> None:
    rules = load_rules()
    assert len(rules.rules) > 60 and rules.version
    allowed = {"role": set(ROLES), "derived_type": set(DERIVED_TYPES), "plane": set(PLANES), "sequence": set(SEQUENCES),
               "phase": set(PHASES)}
    for r in rules.rules:
        assert r.source in ("header_rule", "description")
        for field, value in r.vote.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if field in allowed and v is not None and not str(v).startswith("@"):
                    assert v in allowed[field], (r.id, field, v)


@pytest.mark.parametrize("bad", [{"id": "x", "when": {"no_such_condition": 1}, "vote": {"role": "original"}},
                                 {"id": "x", "source": "gut_feeling", "vote": {"role": "original"}},
                                 {"id": "x", "when": {"text_re": "a", "text_in": ["nowhere"]}, "vote": {}}])
def test_malformed_rules_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RuleSet({"rules": [bad]})


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        RuleSet({"rules": [{"id": "a", "vote": {}}, {"id": "a", "vote": {}}]})


def test_every_generator_vendor_kernel_maps_to_its_class() -> None:
    """The kernel names the generator writes (real vendors' names) all vote for their class."""
    vendors = yaml.safe_load(VENDORS.read_text(encoding="utf-8"))["vendors"]
    checked = 0
    for vendor, spec in vendors.items():
        for kclass, names in spec["kernels"].items():
            for name in names:
                fov = 230.0 if kclass == "head" else 380.0
                h = SeriesHeader(series_uid="1", modality="CT", kernel=name.upper(), recon_diameter=fov,
                                 image_type=["ORIGINAL", "PRIMARY", "AXIAL"])
                assert top(h, "kernel_class") == kclass, (vendor, name, scores(h, "kernel_class"))
                checked += 1
    assert checked >= 40


@pytest.mark.parametrize("params, sequence", [
    ({"tr": 550, "te": 12}, "T1W"),
    ({"tr": 4000, "te": 100, "echo_train_length": 16}, "T2W"),
    ({"tr": 9000, "te": 120, "ti": 2500}, "FLAIR"),
    ({"tr": 4000, "te": 60, "ti": 160}, "STIR"),
    ({"tr": 3000, "te": 30, "scan_options": ["FS"]}, "PD"),
    ({"tr": 5000, "te": 80, "b_values": [0.0, 1000.0], "scanning_sequence": ["EP"]}, "DWI"),
    ({"tr": 5000, "te": 80, "image_type": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]}, "ADC"),
    ({"tr": 25, "te": 3.5, "angio_flag": "Y"}, "TOF"),
    ({"tr": 4500, "te": 700}, "MRCP"),
    ({"tr": 40, "te": 25, "flip_angle": 15, "image_type": ["ORIGINAL", "PRIMARY", "SWI"]}, "SWI"),
])
def test_mr_signatures(params: dict[str, object], sequence: str) -> None:
    base: dict[str, object] = {"image_type": ["ORIGINAL", "PRIMARY", "M", "ND"]}
    base.update(params)
    h = SeriesHeader(series_uid="1", modality="MR", **base)  # type: ignore[arg-type]
    assert top(h, "sequence") == sequence, scores(h, "sequence")


def test_post_contrast_t1_needs_the_exam_order_when_every_series_carries_the_agent() -> None:
    pre = SeriesHeader(series_uid="1", modality="MR", tr=550, te=12, contrast_agent="Gd",
                       exam_context={"exam_contrast": 1, "mr_after_other": 0})
    post = SeriesHeader(series_uid="2", modality="MR", tr=550, te=12, contrast_agent="Gd",
                        exam_context={"exam_contrast": 1, "mr_after_other": 1})
    assert top(pre, "sequence") == "T1W" and top(post, "sequence") == "T1C"


def test_description_votes_are_marked_as_description() -> None:
    h = SeriesHeader(series_uid="1", modality="CT", description="门脉期 5mm", protocol="Abdomen Routine")
    res = load_rules().apply(h)
    phase_votes = [v for v in res.votes if v.field == "phase" and "portal" in v.values]
    assert phase_votes and all(v.source == "description" for v in phase_votes)
    assert "门脉期" in phase_votes[0].detail


def test_category_vocabulary() -> None:
    cats = categories()
    assert len(cats) > 100
    for code, info in cats.items():
        assert code.isascii() and " " not in code and info.zh and info.en
    assert category_code({"role": "original", "plane": "axial", "kernel_class": "lung", "thickness_class": "thin"}, "CT") == "CT.AX.LUNG.THIN"
    assert category_code({"role": "derived", "derived_type": "mpr", "plane": "coronal"}, "CT") == "CT.MPR.COR"
    assert category_code({"role": "original", "sequence": "T2W", "plane": "sagittal"}, "MR") == "MR.T2W.SAG"
    assert category_code({"role": "original", "view": "PA", "region": "chest"}, "CR") == "DX.CHEST.PA"
    assert category_code({"role": "dose_report"}, "SR") == "CT.DOSE"
    assert category_code({"role": "original", "special": "perfusion", "plane": "axial"}, "CT") == "CT.PERF"
    assert category_code({"role": "unknown"}, "CT") is None
    assert category_code({"role": "original", "sequence": "T1W"}, "XX") is None


def test_category_families_refuse_duplicates() -> None:
    raw = {"families": [{"code": "A.B", "match": {}}, {"code": "A.B", "match": {"role": "x"}}]}
    with pytest.raises(ValueError, match="twice"):
        expand(raw)


def test_rules_file_path() -> None:
    assert RULES_FILE.is_file()


def test_batch_evaluation_equals_one_by_one() -> None:
    """apply_batch (column-wise) gives exactly the votes of apply (per header), details included."""
    rules = load_rules()
    headers = [
        SeriesHeader(series_uid="1", modality="MR", tr=9000, te=120, ti=2500, description="FLAIR_TRA", protocol="x",
                     orientation=[1, 0, 0, 0, 1, 0], image_type=["ORIGINAL", "PRIMARY", "M", "ND"]),
        SeriesHeader(series_uid="2", modality="CT", kernel="B70F", slice_thickness=1.0, window_center=-600,
                     window_width=1500, image_type=["ORIGINAL", "PRIMARY", "AXIAL"], description="Lung 1mm",
                     orientation=[1, 0, 0, 0, 1, 0], contrast_agent="Iohexol",
                     exam_context={"ct_enh_rank": 0, "ct_enh_count": 2, "ct_contrast_all": 0}),
        SeriesHeader(series_uid="3", modality="DX", view_position="PA", description="胸部正位", body_part="CHEST"),
        SeriesHeader(series_uid="4"),
        SeriesHeader(series_uid="5", modality="MR", tr=float("nan"), b_values=[0.0, 1000.0], scanning_sequence=["EP"]),
    ]
    one = [[(v.rule, v.field, v.values, v.detail) for v in rules.apply(h).votes] for h in headers]
    batch = [[(v.rule, v.field, v.values, v.detail) for v in r.votes] for r in rules.apply_batch(headers)]
    assert one == batch
    assert any(v[0] == "ct.phase.enh0" for v in batch[1])


def test_an_absent_value_fails_range_conditions_except_zero_meaning_ones() -> None:
    """No window preset is not a lung window; no b-value is b = 0."""
    h = SeriesHeader(series_uid="1", modality="CT", kernel="B70S", slice_thickness=1.0,
                     image_type=["ORIGINAL", "PRIMARY", "AXIAL"])
    assert top(h, "kernel_class") == "bone"
    assert "lung" not in scores(h, "kernel_class")
    t2 = SeriesHeader(series_uid="2", modality="MR", tr=4000, te=100, image_type=["ORIGINAL"])
    assert top(t2, "sequence") == "T2W"  # the T2 rule requires b_max <= 1: satisfied by no b-values
    rules = load_rules()
    assert [v.rule for v in rules.apply_batch([h])[0].votes] == [v.rule for v in rules.apply(h).votes]
