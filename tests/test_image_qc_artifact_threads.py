"""The artifact stage analyses an exam's series in threads (``artifact_series_workers``): the result
must not depend on how many, nor on the order the threads finish in, and a series that fails is
still reported in its place."""

from __future__ import annotations

from typing import Any

from radqc.pipelines.image_qc import artifact as art
from radqc.pipelines.image_qc.types import EvidenceSink, SeriesImages
from tests.test_image_qc_artifact import _ct, _exam


def _broken() -> SeriesImages:
    s = _ct("clean", n=4)

    def fail() -> list[Any]:
        raise ValueError("truncated pixel data")

    s.datasets = fail  # type: ignore[method-assign]
    return s


def _strip(result: Any) -> dict[str, Any]:
    return {"value": result.value, "details": result.details, "findings": [f.reason_en for f in result.findings]}


def test_threads_give_the_same_result_as_one_after_the_other() -> None:
    exam = _exam(_ct("clean"), _ct("metal"), _ct("motion"), _broken())
    params = {"use_model": False, "max_series": 4}
    one = art.measure_artifact(exam, {**params, "artifact_series_workers": 1}, EvidenceSink())["artifact"]
    two = art.measure_artifact(exam, {**params, "artifact_series_workers": 2}, EvidenceSink())["artifact"]
    assert one.value != "无"  # the exam does carry an artifact: the comparison is not between two empty results
    assert _strip(one) == _strip(two)
    # per series in the order the stage selected them, the broken one reported as failed, not dropped
    order = [s.header.series_uid for s in art.select_series(exam, {**art.DEFAULTS, **params})]
    broken = exam.series[3].header.series_uid
    assert len(order) == 4
    assert [r["series_uid"] for r in two.details["per_series"]] == [u for u in order if u != broken]
    assert [f["series_uid"] for f in two.details["failed"]] == [broken]
