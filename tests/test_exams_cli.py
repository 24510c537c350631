"""``radqc exams search|show|tags`` round trip over catalogue rows written directly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from radqc.cli.main import app


@pytest.fixture
def catalogue(workspace):  # type: ignore[no-untyped-def]
    """Two hospitals, three exams with tags and standard series as the series stage writes them."""
    from radqc.catalogue import models as m

    with workspace.transaction() as s:
        h1, h2 = m.Hospital(code="H001", name="一院"), m.Hospital(code="H002", name="二院")
        s.add_all([h1, h2])
        s.flush()
        e1 = m.Exam(study_instance_uid="1.2.3.1", accession_number="ACC1", hospital_id=h1.id, modality="CT,SR",
                    exam_time=datetime(2026, 3, 1, 9, 30, tzinfo=UTC), study_description="头颅CT平扫+胸部CT平扫")
        e2 = m.Exam(study_instance_uid="1.2.3.2", accession_number="ACC2", hospital_id=h2.id, modality="CT",
                    exam_time=datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
        e3 = m.Exam(study_instance_uid="1.2.3.3", accession_number="ACC3", hospital_id=h1.id, modality="DR",
                    exam_time=datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
        s.add_all([e1, e2, e3])
        s.flush()
        head = m.Series(exam_id=e1.id, series_instance_uid="1.2.3.1.2", modality="CT", series_number=2,
                        description="Head 5mm")
        chest = m.Series(exam_id=e1.id, series_instance_uid="1.2.3.1.3", modality="CT", series_number=3,
                         description="Chest 1.25 lung")
        s.add_all([head, chest])
        s.flush()
        s.add_all([
            m.StandardSeries(exam_id=e1.id, source_series_id=head.id, standard_series_uid="2.25.1",
                             item_code="CT.HEAD.PLAIN", category="CT.AX.HEAD.STD", role="original",
                             z_from_mm=-10.0, z_to_mm=-150.0, instance_count=30),
            m.StandardSeries(exam_id=e1.id, source_series_id=chest.id, standard_series_uid="2.25.2",
                             item_code="CT.CHEST.PLAIN", category="CT.AX.LUNG.THIN", role="original",
                             z_from_mm=-250.0, z_to_mm=-560.0, instance_count=250),
        ])

        def tag(exam: Any, code: str, value: str, **evidence: Any) -> Any:
            return m.ExamTag(exam_id=exam.id, tag=code, value=value, stage="series", evidence=evidence)

        s.add_all([
            tag(e1, "thin_slices_present", "true", series=["1.2.3.1.3"]),
            tag(e1, "combined_exam", "true", items=["CT.HEAD.PLAIN", "CT.CHEST.PLAIN"]),
            tag(e1, "regions_imaged", "head,chest"),
            tag(e1, "qc_grade", "乙", grade="2"),
            tag(e2, "thin_slices_present", "false"),
            tag(e2, "regions_imaged", "chest,abdomen"),
            tag(e2, "combined_exam", "false"),
            tag(e3, "dx_views", "PA,LAT"),
        ])
        ids = {"e1": e1.id, "e2": e2.id, "e3": e3.id}
    return ids


def run(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, ["exams", *args])
    assert result.exit_code == code, (args, result.output)
    if "--json" in args and code == 0:
        return json.loads(result.stdout)
    return result.output


def _ids(data: dict[str, Any]) -> list[int]:
    return [r["exam_id"] for r in data["exams"]]


def test_search_by_tags_items_modality_hospital(catalogue: dict[str, int]) -> None:
    e1, e2, e3 = catalogue["e1"], catalogue["e2"], catalogue["e3"]
    assert _ids(run("search", "--json")) == [e3, e2, e1]  # newest first
    got = run("search", "--tag", "thin_slices_present", "--json")
    assert _ids(got) == [e1]
    row = got["exams"][0]
    assert row["accession_number"] == "ACC1" and row["hospital_code"] == "H001"
    assert row["items"] == ["CT.HEAD.PLAIN", "CT.CHEST.PLAIN"]
    assert row["tags"]["qc_grade"] == "乙" and row["tags"]["thin_slices_present"] == "true"
    assert _ids(run("search", "--tag", "thin_slices_present=false", "--json")) == [e2]
    assert _ids(run("search", "--tag", "thin_slices_present=否", "--json")) == [e2]
    # set tags match one member; filters are AND-ed
    assert _ids(run("search", "--tag", "regions_imaged=chest", "--json")) == [e2, e1]
    assert _ids(run("search", "--tag", "regions_imaged=chest", "--tag", "combined_exam", "--json")) == [e1]
    assert _ids(run("search", "--tag", "regions_imaged=abdomen", "--tag", "combined_exam", "--json")) == []
    assert _ids(run("search", "--tag", "regions_imaged=head", "--json")) == [e1]
    assert _ids(run("search", "--tag", "qc_grade=乙", "--json")) == [e1]
    assert _ids(run("search", "--tag", "dx_views=LAT", "--json")) == [e3]
    assert _ids(run("search", "--item", "CT.CHEST.PLAIN", "--json")) == [e1]
    assert _ids(run("search", "--item", "ct.head.plain", "--json")) == [e1]
    assert _ids(run("search", "--item", "CT.UABD.PLAIN", "--json")) == []
    assert _ids(run("search", "--modality", "CT", "--json")) == [e2, e1]
    assert _ids(run("search", "--modality", "DX", "--json")) == [e3]  # DR stored, DX asked
    assert _ids(run("search", "--modality", "SR", "--json")) == [e1]
    assert _ids(run("search", "--hospital", "H001", "--json")) == [e3, e1]
    assert _ids(run("search", "--hospital", "H001", "--modality", "CT", "--json")) == [e1]
    assert _ids(run("search", "--limit", "1", "--json")) == [e3]


def test_search_rejects_unknown_tags_values_and_items(catalogue: dict[str, int]) -> None:
    assert "unknown tag" in run("search", "--tag", "no_such_tag", code=2)
    assert "qc_grade" in run("search", "--tag", "qc_grade=戊", code=2)
    assert "unknown standard exam item" in run("search", "--item", "CT.WING.PLAIN", code=2)


def test_human_output_is_bilingual(catalogue: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    from radqc.cli import output

    monkeypatch.setattr(output.stdout, "_width", 300)  # no wrapping inside table cells
    out = run("search", "--tag", "combined_exam")
    assert "检查号 / accession" in out and "ACC1" in out and "薄层图像" in out and "ACC2" not in out
    shown = run("show", "ACC1")
    assert "Standard series / 标准序列" in shown and "Tags / 标签" in shown
    assert "CT.CHEST.PLAIN" in shown and "Chest 1.25 lung" in shown and "质控等级" in shown
    assert "tag" in run("tags")


def test_show_lists_tags_and_standard_series(catalogue: dict[str, int]) -> None:
    e1 = catalogue["e1"]
    by_accession = run("show", "ACC1", "--json")
    by_id = run("show", str(e1), "--json")
    by_uid = run("show", "1.2.3.1", "--json")
    assert by_accession == by_id == by_uid
    d = by_id
    assert d["exam_id"] == e1 and d["hospital_code"] == "H001"
    assert [t["tag"] for t in d["tags"]] == ["regions_imaged", "thin_slices_present", "qc_grade", "combined_exam"]
    thin = next(t for t in d["tags"] if t["tag"] == "thin_slices_present")
    assert thin["zh"] == "薄层图像" and thin["evidence"] == {"series": ["1.2.3.1.3"]} and thin["stage"] == "series"
    ss = {r["item_code"]: r for r in d["standard_series"]}
    assert set(ss) == {"CT.HEAD.PLAIN", "CT.CHEST.PLAIN"}
    chest = ss["CT.CHEST.PLAIN"]
    assert chest["item_name"] == "胸部CT平扫" and chest["instance_count"] == 250
    assert chest["source_series_number"] == 3 and chest["source_series_description"] == "Chest 1.25 lung"
    assert chest["z_from_mm"] == -250.0 and chest["category"] == "CT.AX.LUNG.THIN"
    assert "no exam" in run("show", "NOPE", code=2)
    bare = run("show", "ACC3", "--json")
    assert bare["standard_series"] == [] and [t["tag"] for t in bare["tags"]] == ["dx_views"]
    assert [t["display"] for t in bare["tags"]] == ["后前位 / PA, 侧位 / lateral"]


def test_tags_dictionary_listing(catalogue: dict[str, int]) -> None:
    rows = run("tags", "--group", "data_quality", "--json")
    codes = {r["tag"] for r in rows}
    assert {"item_mismatch", "qc_grade", "localizer_only"} <= codes and "enhanced" not in codes
