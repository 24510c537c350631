"""The combined-exam split: items get the right series, long acquisitions become slabs, bad input is explicit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from radqc.pipelines.series.split import item_info, slab_boundaries, slab_members, split_exam
from radqc.pipelines.series.types import SeriesLabel

CHEST = {"code": "CT.CHEST.PLAIN", "name": "胸部CT平扫", "modality": "CT", "parts": ["胸部"], "method": "平扫",
         "laterality": None}
UABD = {"code": "CT.UABD.PLAIN", "name": "上腹部CT平扫", "modality": "CT", "parts": ["上腹部"], "method": "平扫",
        "laterality": None}
PELVIS = {"code": "CT.PELVIS.PLAIN", "name": "盆腔CT平扫", "modality": "CT", "parts": ["盆腔"], "method": "平扫",
          "laterality": None}
HEAD = {"code": "CT.HEAD.PLAIN", "name": "颅脑CT平扫", "modality": "CT", "parts": ["颅脑"], "method": "平扫",
        "laterality": None}
BRAIN_MR = {"code": "MR.HEAD.PLAIN", "name": "颅脑MR平扫", "modality": "MR", "parts": ["颅脑"], "method": "平扫",
            "laterality": None}


def _label(uid: str, role: str = "original", region: str | None = None, modality: str = "CT",
           plane: str | None = "axial", conf: float = 0.95, **kw: Any) -> SeriesLabel:
    return SeriesLabel(series_uid=uid, modality=modality, role=role, plane=plane, region=region,
                       category=f"{modality}.{role}", confidence=conf, field_confidence={"region": conf}, **kw)


def _header(number: int, z: list[float] | None = None, sources: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(series_number=number, z_min=min(z) if z else None, z_max=max(z) if z else None,
                           source_series_uids=sources or [], laterality=None, body_part=None)


def _zs(top: float, bottom: float, step: float) -> list[float]:
    out, z = [], top
    while z >= bottom - 1e-6:
        out.append(round(z, 3))
        z -= step
    return out


def _items(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {it["code"]: it["series"] for it in result["standard_items"]}


def test_separate_acquisitions_go_to_their_region_items_with_localizers_derived_and_dose() -> None:
    head_z, chest_z = _zs(245, 100, 5), _zs(0, -300, 5)
    labels = [_label("loc1", "localizer", plane="coronal"), _label("head5", region="head"),
              _label("loc2", "localizer", plane="coronal"), _label("chest5", region="chest"),
              _label("chest1", region="chest"), _label("mpr", "derived", region="chest", plane="coronal"),
              _label("dose", "dose_report", plane=None)]
    headers = {"loc1": _header(1), "head5": _header(2, head_z), "loc2": _header(3), "chest5": _header(4, chest_z),
               "chest1": _header(5, _zs(0, -300, 1.25)), "mpr": _header(6, sources=["chest1"]), "dose": _header(999)}
    zmap = {"head5": head_z, "chest5": chest_z, "chest1": _zs(0, -300, 1.25)}
    result = split_exam(labels, [HEAD, CHEST], headers=headers, slice_z=zmap)
    items = _items(result)
    assert {e["series_uid"] for e in items["CT.HEAD.PLAIN"]} == {"loc1", "head5", "dose"}
    assert {e["series_uid"] for e in items["CT.CHEST.PLAIN"]} == {"loc2", "chest5", "chest1", "mpr", "dose"}
    assert all(e["slab"] is None for es in items.values() for e in es)
    assert result["unassigned"] == [] and result["mismatch"] == [] and result["no_order"] is False
    mpr = next(e for e in items["CT.CHEST.PLAIN"] if e["series_uid"] == "mpr")
    assert mpr["assigned_by"] == "source_series"


def test_one_long_acquisition_is_cut_into_slabs_by_z_coverage_when_no_body_regions() -> None:
    z = _zs(40, -540, 5)  # 117 slices, 580 mm: chest + upper abdomen + pelvis in one helical scan
    labels = [_label("ax", region="abdomen"), _label("cor", "derived", region="abdomen", plane="coronal")]
    headers = {"ax": _header(2, z), "cor": _header(3, sources=["ax"])}
    result = split_exam(labels, [CHEST, UABD, PELVIS], headers=headers, slice_z={"ax": z})
    items = _items(result)
    slabs = [next(e for e in items[c] if e["series_uid"] == "ax")["slab"] for c in
             ("CT.CHEST.PLAIN", "CT.UABD.PLAIN", "CT.PELVIS.PLAIN")]
    assert all(s is not None and s["boundary_source"] == "z_coverage" for s in slabs)
    assert sum(s["instances"] for s in slabs) == len(z)  # every slice in exactly one slab
    assert slabs[0]["z_from_mm"] > slabs[1]["z_to_mm"] > slabs[1]["z_from_mm"] > slabs[2]["z_to_mm"]
    # chest is the longest part: its slab holds the most slices
    assert slabs[0]["instances"] > slabs[1]["instances"]
    for s in slabs:
        assert len(slab_members(z, s["z_from_mm"], s["z_to_mm"])) == s["instances"]
    # the coronal reconstruction follows its source into all three items, uncut
    for c in ("CT.CHEST.PLAIN", "CT.UABD.PLAIN", "CT.PELVIS.PLAIN"):
        cor = next(e for e in items[c] if e["series_uid"] == "cor")
        assert cor["slab"] is None
    assert result["mismatch"] == []


def test_body_region_boundaries_are_used_when_the_anatomy_engine_ran() -> None:
    z = _zs(0, -450, 5)
    regions = {"regions": [{"region": "neck", "z_min_mm": -20, "z_max_mm": 0},
                           {"region": "chest", "z_min_mm": -230, "z_max_mm": -25},
                           {"region": "abdomen", "z_min_mm": -450, "z_max_mm": -235}], "landmarks": {}}
    result = split_exam([_label("ax", region="chest")], [CHEST, UABD], headers={"ax": _header(2, z)},
                        slice_z={"ax": z}, body_regions=regions)
    items = _items(result)
    chest, abd = items["CT.CHEST.PLAIN"][0]["slab"], items["CT.UABD.PLAIN"][0]["slab"]
    assert chest["boundary_source"] == abd["boundary_source"] == "body_region"
    assert chest["z_from_mm"] == -230 and abd["z_to_mm"] == -235
    assert chest["instances"] + abd["instances"] == len(z)


def test_short_scan_does_not_cover_an_ordered_part_it_did_not_image() -> None:
    z = _zs(0, -290, 5)  # a chest-only scan, billed as chest + upper abdomen
    result = split_exam([_label("ax", region="chest")], [CHEST, UABD], headers={"ax": _header(2, z)},
                        slice_z={"ax": z})
    items = _items(result)
    assert [e["series_uid"] for e in items["CT.CHEST.PLAIN"]] == ["ax"]
    assert items["CT.UABD.PLAIN"] == []
    assert [m["kind"] for m in result["mismatch"]] == ["ordered_part_not_imaged"]
    assert result["mismatch"][0]["item"] == "CT.UABD.PLAIN" and result["mismatch"][0]["evidence"]


def test_imaged_region_not_ordered_is_unassigned_with_a_mismatch() -> None:
    head_z, chest_z = _zs(245, 100, 5), _zs(0, -300, 5)
    labels = [_label("head", region="head"), _label("chest", region="chest")]
    result = split_exam(labels, [CHEST], headers={"head": _header(2, head_z), "chest": _header(3, chest_z)},
                        slice_z={"head": head_z, "chest": chest_z})
    assert [u["series_uid"] for u in result["unassigned"]] == ["head"]
    assert result["unassigned"][0]["reason"] == "region_not_ordered" and "/" in result["unassigned"][0]["message"]
    assert {m["kind"] for m in result["mismatch"]} == {"imaged_part_not_ordered"}


def test_no_order_groups_by_region_and_modality_mismatch_is_reported() -> None:
    labels = [_label("t1", region="head", modality="MR"), _label("t2", region="head", modality="MR"),
              _label("x", region=None, modality="MR", role="unknown", conf=0.1)]
    no_order = split_exam(labels, [])
    assert no_order["no_order"] is True and no_order["standard_items"] == []
    assert {g["region"]: len(g["series"]) for g in no_order["regions"]} == {"head": 2, "unknown": 1}
    mism = split_exam(labels[:2], [HEAD])
    assert [m["kind"] for m in mism["mismatch"]] == ["modality_mismatch"]
    assert {u["reason"] for u in mism["unassigned"]} == {"modality_not_ordered"}
    mr = split_exam(labels[:2], [BRAIN_MR])
    assert len(_items(mr)["MR.HEAD.PLAIN"]) == 2 and mr["mismatch"] == []


def test_fallback_z_coverage_cuts_follow_typical_lengths() -> None:
    its = [item_info(0, CHEST), item_info(1, UABD)]
    cuts, source = slab_boundaries(its, -500.0, 0.0, None)
    assert source == "z_coverage" and len(cuts) == 1
    assert -320 < cuts[0] < -280  # 300 of 500 typical mm are chest


TSPINE = {"code": "CT.TSPINE.PLAIN", "name": "胸椎CT平扫", "modality": "CT", "parts": ["胸椎"], "method": "平扫",
          "laterality": None}
LSPINE = {"code": "CT.LSPINE.PLAIN", "name": "腰椎CT平扫", "modality": "CT", "parts": ["腰椎"], "method": "平扫",
          "laterality": None}


def test_separate_acquisitions_pair_with_items_top_to_bottom_when_regions_do_not() -> None:
    t_z, l_z = _zs(-100, -330, 5), _zs(-350, -560, 5)
    labels = [_label("t", region="neck"), _label("l", region="chest"), _label("dose", "dose_report", plane=None)]
    result = split_exam(labels, [LSPINE, TSPINE], headers={"t": _header(2, t_z), "l": _header(3, l_z),
                                                          "dose": _header(999)}, slice_z={"t": t_z, "l": l_z})
    items = _items(result)
    assert [(e["series_uid"], e["assigned_by"]) for e in items["CT.TSPINE.PLAIN"] if e["series_uid"] != "dose"] == [
        ("t", "z_order")]
    assert [e["series_uid"] for e in items["CT.LSPINE.PLAIN"] if e["series_uid"] != "dose"] == ["l"]
    assert result["mismatch"] == []


def test_dose_report_covers_only_the_imaged_items() -> None:
    z = _zs(0, -290, 5)
    labels = [_label("ax", region="chest"), _label("dose", "dose_report", plane=None)]
    result = split_exam(labels, [CHEST, UABD], headers={"ax": _header(2, z), "dose": _header(999)}, slice_z={"ax": z})
    items = _items(result)
    assert [e["series_uid"] for e in items["CT.CHEST.PLAIN"]] == ["ax", "dose"]
    assert items["CT.UABD.PLAIN"] == []
