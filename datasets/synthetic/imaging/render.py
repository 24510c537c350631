"""``render_exam``: one ImagingSpec in, DICOM files + label maps + measured truth out."""

from __future__ import annotations

from pathlib import Path

from ..spec import ImagingResult, ImagingSpec
from .context import ExamContext
from .dicom_writer import SeriesWriter
from .series import SeriesOut


def render_exam(spec: ImagingSpec, out_dir: Path, *, labels_dir: Path | None = None) -> ImagingResult:
    """Render ``spec`` under ``out_dir/<exam_key>/`` and return what was written.

    Deterministic in ``spec.seed`` (and ``spec.exam_key``): the same spec gives identical
    pixel data and UIDs. File paths in the result are relative to ``out_dir``. Label maps
    (NIfTI) go to ``out_dir/<exam_key>/labels/`` unless ``labels_dir`` is given (keep them
    out of a folder that will be ingested as a hospital export).
    """
    out_dir = Path(out_dir)
    ctx = ExamContext.create(spec, out_dir, labels_dir)
    if spec.evidence.get("reuse_pixels_from"):
        from .reuse import render_reused

        return render_reused(ctx)
    series = _render_series(ctx)
    writer = SeriesWriter(ctx)
    writer.n_series = len(series)
    # sources before derived series, so SourceImageSequence can point at written instances
    for s in sorted(series, key=lambda s: (s.derived_from is not None, s.series_number)):
        writer.write(s)
    writer.truths.sort(key=lambda t: t.extra.get("series_number", 0))
    for hook in ctx.after_write:
        hook()
    ctx.finish_defects()
    if ctx.notes:
        ctx.measurements["notes"] = ctx.notes
    start = ctx.study_dt
    ctx.measurements["acquisition_window"] = [start.isoformat(timespec="seconds"), writer.clock.isoformat(timespec="seconds")]
    ctx.measurements["vendor"] = {"key": ctx.vendor_key, "manufacturer": ctx.vendor["manufacturer"], "model": ctx.model["name"], "language": ctx.language}
    return ImagingResult(
        study_instance_uid=str(writer.study.StudyInstanceUID),
        series=writer.truths,
        structures=ctx.structures,
        applied_defects=ctx.applied,
        measurements=ctx.measurements,
        pixel_hashes=writer.pixel_hashes,
    )


def _render_series(ctx: ExamContext) -> list[SeriesOut]:
    modality = ctx.spec.modality
    if modality == "CT":
        from .ct import render_ct

        return render_ct(ctx)
    if modality == "MR":
        from .mr import render_mr

        return render_mr(ctx)
    from .radiograph import render_radiographs

    return render_radiographs(ctx)
