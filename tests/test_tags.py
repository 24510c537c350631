"""The TAG dictionary and automatic tag assignment from hand-built series labels."""

from __future__ import annotations

import re
from typing import Any

import pytest

from radqc.pipelines.series import tags as tagmod
from radqc.pipelines.series.features import SeriesHeader
from radqc.pipelines.series.tags import assign_tags
from radqc.pipelines.series.types import SeriesLabel
from radqc.vocab.tags import GROUPS, TYPES, format_set, normalise_query_value, tag, tags, value_matches


def _by_tag(result: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["tag"]: t for t in result}


def ct(uid: str, role: str = "original", **kw: Any) -> SeriesLabel:
    return SeriesLabel(series_uid=uid, modality="CT", role=role, confidence=kw.pop("confidence", 0.95), **kw)


def mr(uid: str, sequence: str, **kw: Any) -> SeriesLabel:
    return SeriesLabel(series_uid=uid, modality="MR", role="original", sequence=sequence, plane="axial",
                       confidence=0.97, **kw)


# --------------------------------------------------------------------------- dictionary


def test_tag_definitions_are_valid() -> None:
    defs = tags()
    required = {"thin_slices_present", "enhanced", "multiphase", "reconstructions_present", "spectral",
                "perfusion", "ecg_gated", "mr_sequences", "has_dwi", "has_swi", "has_t1c", "localizer_only",
                "dose_report_present", "combined_exam", "item_mismatch", "unknown_series_present",
                "description_overruled", "qc_grade", "regions_imaged", "modality", "vendor"}
    assert required <= set(defs)
    for code, d in defs.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code)
        assert d.group in GROUPS and d.type in TYPES, code
        assert d.zh and d.en and d.rule and d.derive_from, code
        assert all(re.match(r"(labels|headers|split|rule_qc|anatomy)\.", f) for f in d.derive_from), code
        if d.type in ("enum", "set"):
            assert d.values, code
            assert len({v.value for v in d.values}) == len(d.values), code
        # every tag has its deriver (the dictionary and the code cannot drift apart silently)
        assert code in tagmod.DERIVERS, code
    assert set(tagmod.DERIVERS) == set(defs)
    with pytest.raises(KeyError, match="unknown tag"):
        tag("no_such_tag")


def test_set_values_and_queries() -> None:
    d = tag("regions_imaged")
    assert format_set(d, ["abdomen", "chest", "chest"]) == "chest,abdomen"
    assert value_matches(d, "chest,abdomen", "abdomen")
    assert not value_matches(d, "chest,abdomen", "pelvis")
    b = tag("thin_slices_present")
    assert normalise_query_value(b, "是") == "true"
    assert value_matches(b, "true", None) and not value_matches(b, "false", None)
    assert normalise_query_value(tag("modality"), "ct") == "CT"
    with pytest.raises(ValueError, match="takes one of"):
        normalise_query_value(tag("qc_grade"), "戊")
    with pytest.raises(ValueError, match="true or false"):
        normalise_query_value(b, "maybe")


# --------------------------------------------------------------------------- assignment


def test_thin_axial_and_mpr_give_thin_and_reconstruction_tags() -> None:
    labels = [
        ct("loc", role="localizer"),
        ct("thin", plane="axial", thickness_class="thin", kernel_class="lung", phase="native"),
        ct("thick", plane="axial", thickness_class="standard", kernel_class="soft", phase="native"),
        ct("mpr", role="derived", derived_type="mpr", plane="coronal"),
        ct("dose", role="dose_report"),
    ]
    headers = [SeriesHeader(series_uid="thin", slice_thickness=1.25, manufacturer="GE MEDICAL SYSTEMS"),
               SeriesHeader(series_uid="thick", slice_thickness=5.0, manufacturer="GE MEDICAL SYSTEMS")]
    got = _by_tag(assign_tags(labels, headers=headers))
    assert got["thin_slices_present"]["value"] == "true"
    assert got["thin_slices_present"]["evidence"]["series"] == ["thin"]
    assert got["reconstructions_present"]["value"] == "true"
    assert got["reconstruction_types"]["value"] == "mpr"
    assert got["dose_report_present"]["value"] == "true"
    assert got["localizer_only"]["value"] == "false"
    assert got["enhanced"]["value"] == "false"
    assert got["multiphase"]["value"] == "false"
    assert got["vendor"]["value"] == "GE"
    assert got["modality"]["value"] == "CT"
    # MR-only and radiograph-only tags are not assigned to a CT exam
    assert "mr_sequences" not in got and "has_dwi" not in got and "dx_views" not in got


def test_no_derived_series_means_no_reconstructions() -> None:
    labels = [ct("thick", plane="axial", thickness_class="standard", phase="native")]
    headers = [SeriesHeader(series_uid="thick", slice_thickness=5.0)]
    got = _by_tag(assign_tags(labels, headers=headers))
    assert got["reconstructions_present"]["value"] == "false"
    assert "reconstruction_types" not in got
    assert got["thin_slices_present"]["value"] == "false"  # only a 5 mm original axial
    assert got["dose_report_present"]["value"] == "false"


def test_undecidable_tags_are_absent_not_false() -> None:
    # a CT exam with only a localizer: no original axial -> thin slices unknown, not "false"
    got = _by_tag(assign_tags([ct("loc", role="localizer")]))
    assert "thin_slices_present" not in got
    assert got["localizer_only"]["value"] == "true"
    assert "item_mismatch" not in got and "qc_grade" not in got and "combined_exam" not in got
    assert assign_tags([]) == []


def test_multiphase_enhanced_spectral_gated_perfusion() -> None:
    labels = [ct("n", plane="axial", phase="native"), ct("a", plane="axial", phase="arterial"),
              ct("p", plane="axial", phase="portal"), ct("mono", role="derived", derived_type="mono"),
              ct("perf", plane="axial", phase="arterial")]
    headers = [SeriesHeader(series_uid="a", trigger_time=350.0, slice_thickness=0.625),
               SeriesHeader(series_uid="perf", temporal_positions=30, n_instances=600, n_positions=20),
               SeriesHeader(series_uid="p", description="Abd 1.25 iDose")]
    got = _by_tag(assign_tags(labels, headers=headers))
    assert got["enhanced"]["value"] == "true"
    assert got["contrast_phases"]["value"] == "native,arterial,portal"
    assert got["multiphase"]["value"] == "true"
    assert got["spectral"]["value"] == "true" and "mono" in got["spectral"]["evidence"]["series"]
    assert got["ecg_gated"]["value"] == "true"
    assert got["perfusion"]["value"] == "true" and list(got["perfusion"]["evidence"]["series"]) == ["perf"]


def test_spectral_words_match_whole_tokens_only() -> None:
    labels = [ct("h", plane="axial", phase="native")]
    plain = _by_tag(assign_tags(labels, headers=[SeriesHeader(series_uid="h", description="Head 5mm")]))
    assert plain["spectral"]["value"] == "false"
    de = _by_tag(assign_tags(labels, headers=[SeriesHeader(series_uid="h", description="DE Head MonoE 70keV")]))
    assert de["spectral"]["value"] == "true"


def test_mr_sequence_tags() -> None:
    labels = [mr("t1", "T1W"), mr("t2", "T2W"), mr("dwi", "DWI"), mr("adc", "ADC"),
              SeriesLabel(series_uid="x", modality="MR", role="unknown", unknown_reason="no sequence facts")]
    headers = [SeriesHeader(series_uid="t1", scan_options=["RG"], manufacturer="SIEMENS")]
    got = _by_tag(assign_tags(labels, headers=headers))
    assert got["mr_sequences"]["value"] == "T1W,T2W,DWI,ADC"
    assert got["has_dwi"]["value"] == "true"
    assert got["has_swi"]["value"] == "false"
    assert got["has_t1c"]["value"] == "false"
    assert got["enhanced"]["value"] == "false"
    assert got["respiratory_gated"]["value"] == "true"
    assert got["unknown_series_present"]["value"] == "true"
    assert got["unknown_series_present"]["evidence"]["series"] == {"x": "no sequence facts"}
    assert got["low_confidence_series"]["value"] == "true"  # the unknown has confidence 0
    assert "thin_slices_present" not in got and "spectral" not in got
    post = _by_tag(assign_tags([mr("t1", "T1W"), mr("t1c", "T1C")]))
    assert post["enhanced"]["value"] == "true" and post["has_t1c"]["value"] == "true"


def test_split_rule_qc_and_anatomy_inputs() -> None:
    labels = [ct("c", plane="axial", phase="native", region="chest"),
              ct("h", plane="axial", phase="native", region="head", description_overruled=True)]
    split = {"standard_items": [{"code": "CT.HEAD.PLAIN", "series": [{"series_uid": "h"}]},
                                {"code": "CT.CHEST.PLAIN", "series": [{"series_uid": "c"}]},
                                {"code": "CT.UABD.PLAIN", "series": []}],
             "mismatch": [{"kind": "ordered_part_not_imaged", "item": "CT.UABD.PLAIN", "evidence": "..."}],
             "unassigned": [], "no_order": False}
    anatomy = {"analysed": [{"body_region": {"regions": [{"region": "chest"}, {"region": "abdomen"}]}}]}
    got = _by_tag(assign_tags(labels, split=split, rule_qc={"grade": "2", "score": 81.0}, anatomy=anatomy))
    assert got["combined_exam"]["value"] == "true"
    assert got["standard_item_count"]["value"] == "2"
    assert got["item_mismatch"]["value"] == "true"
    assert got["mismatch_kinds"]["value"] == "ordered_part_not_imaged"
    assert got["unassigned_series_present"]["value"] == "false"
    assert got["no_order"]["value"] == "false"
    assert got["qc_grade"]["value"] == "乙" and got["qc_grade"]["evidence"]["grade"] == "2"
    assert got["regions_imaged"]["value"] == "head,chest,abdomen"
    assert got["description_overruled"]["value"] == "true"
    one = _by_tag(assign_tags(labels[:1], split={"standard_items": [{"code": "CT.CHEST.PLAIN",
                                                                       "series": [{"series_uid": "c"}]}],
                                                  "mismatch": [], "unassigned": []},
                              rule_qc={"grade": "甲"}))
    assert one["combined_exam"]["value"] == "false" and one["item_mismatch"]["value"] == "false"
    assert "mismatch_kinds" not in one and one["qc_grade"]["value"] == "甲"


def test_radiograph_views_and_bad_input_never_crash() -> None:
    labels = [SeriesLabel(series_uid="pa", modality="DX", role="original", view="PA", region="chest"),
              SeriesLabel(series_uid="lat", modality="CR", role="original", view="LAT", region="chest")]
    got = _by_tag(assign_tags(labels, split={"no_order": True, "standard_items": []},
                              rule_qc={"grade": None}, anatomy={"analysed": "garbage"}, headers=[{"junk": 1}]))
    assert got["dx_views"]["value"] == "PA,LAT"
    assert got["modality"]["value"] == "DX"
    assert got["no_order"]["value"] == "true"
    assert "item_mismatch" not in got and "qc_grade" not in got and "dose_report_present" not in got
    # dict labels and odd values are read defensively
    dict_labels = [{"series_uid": "a", "modality": "CT", "role": "derived", "derived_type": "vr"}]
    got2 = _by_tag(assign_tags(dict_labels, split="not a dict", rule_qc=["x"]))  # type: ignore[arg-type]
    assert got2["reconstructions_present"]["value"] == "true"


def test_values_are_legal_for_their_definitions() -> None:
    labels = [ct("n", plane="axial", phase="native", region="chest", thickness_class="thin"),
              ct("v", role="derived", derived_type="vr"), mr("d", "DWI")]
    for t in assign_tags(labels, rule_qc={"grade": "0"}):
        d = tag(t["tag"])
        assert isinstance(t["evidence"], dict)
        if d.type == "bool":
            assert t["value"] in ("true", "false")
        elif not d.open and d.type in ("enum", "set"):
            members = t["value"].split(",") if d.type == "set" else [t["value"]]
            assert set(members) <= set(d.allowed()), t
