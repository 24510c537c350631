"""MR image-QC measures: sequence completeness, noise, sharpness, reconstruction (slice thickness), range.

Range: the head's vertex coverage from the images' edges; knee, lumbar and cervical spine (and the
head's skull base) by registering each sagittal/coronal series' superior-inferior profile to an
atlas (:mod:`.mr_range_atlas`); a combined brain + spine order part by part.

The required sequence set per item is data (``qc_rules/image_qc/mr.yaml``) compared with the
series classification (sequence + plane); noise is the background noise sigma relative to the
brightest tissue, read on the exam's least noisy series; sharpness the body-edge gradient
relative to its contrast, averaged (geometric mean) over the series. ``artifact`` belongs to the
artifact detector; ``centring``, ``window`` and ``dose`` do not apply to MR.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from radqc.pipelines.image_qc.measure_common import (
    add_picture,
    edge_index,
    finding,
    header_of,
    label_of,
    largest_component,
    load_params,
    not_applicable,
    not_assessable,
    pick_slices,
    series_uid,
)
from radqc.pipelines.image_qc.types import (
    ABNORMAL,
    NORMAL,
    DimensionResult,
    Evidence,
    EvidenceSink,
    ExamImages,
    SeriesImages,
)

__all__ = ["measure_mr", "load_params"]

log = logging.getLogger(__name__)


def _image_series(exam: ExamImages) -> list[SeriesImages]:
    """Acquired MR image series (no localizers, screen captures, reports)."""
    out = []
    for s in exam.series:
        role = label_of(s, "role")
        if role in ("localizer", "screen_capture", "dose_report"):
            continue
        if (header_of(s, "n_instances") or 0) < 2:
            continue
        out.append(s)
    return out


def _plane(s: SeriesImages) -> str | None:
    return label_of(s, "plane") or header_of(s, "plane")


# ---------------------------------------------------------------- sequences


def _seq_name(params: dict[str, Any], seq: str, plane: str) -> tuple[str, str]:
    zh = (params.get("sequence_zh") or {}).get(seq, seq)
    pzh = (params.get("plane_zh") or {}).get(plane, plane)
    en = f"{plane} {seq}" if plane and plane != "any" else seq
    return f"{pzh}{zh}", en


def _sequences(exam: ExamImages, params: dict[str, Any]) -> DimensionResult:
    """Required sequences of every ordered part: a brain + lumbar spine exam scored as MR-LSPINE must
    also have the brain's own required set (``range.part_series``: the other part's standard when
    the order has an item of that part). Worn i9208 E00284: the axial FLAIR of the ordered 头颅平扫
    was missing and read 完整, because only the lumbar set was checked. Each set is looked for among
    all the exam's series, not only the series the classifier places in that part's region: the
    region label put lumbar sagittals and axials into the head there (a per-region check read the
    lumbar part 不完整). 不完整 when any ordered part misses a sequence."""
    own = str(params.get("_standard_code"))
    ordered = _ordered_parts(exam)
    others: dict[str, dict[str, Any]] = {}
    for spec in ((params.get("range") or {}).get("part_series") or {}).values():
        other = str(spec.get("standard") or "")
        if other and other != own and ordered.intersection(spec.get("parts") or []):
            from radqc.pipelines.image_qc.measure_common import load_params as _load

            others[other] = _load("MR", other)
    if not others:
        return _sequences_one(exam, params)
    results = {own: _sequences_one(exam, params), **{code: _sequences_one(exam, p_) for code, p_ in others.items()}}
    judged = [r for r in results.values() if r.value in ("完整", "不完整")]
    if not judged:
        return next(iter(results.values()))
    missing = [m for r in judged for m in r.details.get("missing", [])]
    details = {"present": judged[0].details.get("present", []), "missing": missing,
               "parts": {code: {"value": r.value, **r.details} for code, r in results.items()}}
    return DimensionResult("不完整" if missing else "完整", details,
                           findings=[f for r in results.values() for f in r.findings])


def _sequences_one(exam: ExamImages, params: dict[str, Any]) -> DimensionResult:
    p = params.get("sequences") or {}
    required = p.get("required") or []
    planes_required = p.get("planes_required") or []
    if not required and not planes_required:
        return not_assessable("no_required_set", "该检查项目未规定必需序列", "no required sequence set for this item")
    series = _image_series(exam)
    present = [(label_of(s, "sequence"), _plane(s)) for s in series]
    missing: list[dict[str, str]] = []
    findings = []
    for alternatives in required:
        ok = any(seq in alt.get("sequence", []) and (alt.get("plane", "any") in ("any", None) or plane == alt.get("plane"))
                 for seq, plane in present for alt in alternatives)
        if ok:
            continue
        alt = alternatives[0]
        seq, plane = str(alt["sequence"][0]), str(alt.get("plane") or "any")
        zh, en = _seq_name(params, seq, plane)
        missing.append({"sequence": seq, "plane": plane, "name_zh": zh, "name_en": en})
        findings.append(finding("IQC-SEQUENCE", "sequences", "不完整", f"缺少必需序列：{zh}", f"required sequence missing: {en}",
                                [Evidence(measured=[f"{p_} {s_}" for s_, p_ in present], limit=alternatives)]))
    planes = {pl for _, pl in present}
    for plane in planes_required:
        if plane not in planes:
            zh = (params.get("plane_zh") or {}).get(plane, plane)
            missing.append({"sequence": "any", "plane": plane, "name_zh": f"{zh}序列", "name_en": f"{plane} series"})
            findings.append(finding("IQC-SEQUENCE", "sequences", "不完整", f"缺少{zh}序列（需三个方位）",
                                    f"no {plane} series (three planes required)", [Evidence(measured=sorted(p_ for p_ in planes if p_), limit=planes_required)]))
    details = {"present": [{"sequence": s_, "plane": p_} for s_, p_ in present], "missing": missing}
    return DimensionResult("不完整" if missing else "完整", details, findings=findings)


# ---------------------------------------------------------------- pixels


def _stack(series: SeriesImages) -> np.ndarray:
    """The stored values (z, row, col) of one MR series, sorted as ``datasets()`` gives them."""
    arrays = []
    for ds in series.datasets():
        a = np.asarray(ds.pixel_array, dtype=np.float32)
        if a.ndim == 3:
            arrays.extend(list(a))
        else:
            arrays.append(a)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError("mixed_sizes")
    return np.stack(arrays)


def _foreground(img: np.ndarray) -> np.ndarray:
    # scipy's binary_opening / binary_fill_holes, identical and faster (measure_common)
    from radqc.pipelines.image_qc.measure_common import binary_opening, fill_holes

    hi = float(np.percentile(img, 99))
    if hi <= 0:
        return np.zeros(img.shape, dtype=bool)
    mask = img > 0.15 * hi
    mask = binary_opening(mask, iterations=1)
    mask = largest_component(mask)
    return fill_holes(mask)


#: median and median absolute deviation of a Rayleigh distribution / its sigma: the air background
#: of a magnitude image is Rayleigh-distributed, so either gives the noise sigma, robust to a few
#: pixels of ghost or wrap
_RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))
_RAYLEIGH_MAD = 0.449
#: MAD / median of a Rayleigh background is 0.38; above this the background is not Rayleigh
_RAYLEIGH_SHAPE_MAX = 0.6


def _background_sigma(img: np.ndarray, near: np.ndarray) -> float:
    """The air background's noise sigma, from the part a ghost cannot reach.

    Phase-encode ghosts copy the body along one image axis only, so background in the columns (or
    rows) with no body at all is ghost-free; of the two (each >= 50 pixels) the one with the lower
    median is used, else the whole background outside ``near`` (the body dilated by a few pixels).
    On a Rayleigh background (MAD / median ~ 0.38) sigma is median / 1.1774, the steadier of the two;
    a background whose spread is far wider than its median (MAD / median above
    ``_RAYLEIGH_SHAPE_MAX``: signed Gaussian noise around a small offset, as a post-processed or
    simulated image may carry) is not Rayleigh and reads MAD / 0.449; a zeroed background reads 0."""
    bg = ~near
    empty_cols = ~np.asarray(near.any(axis=0), dtype=bool)
    empty_rows = ~np.asarray(near.any(axis=1), dtype=bool)
    regions = [m for m in (bg & empty_cols[None, :], bg & empty_rows[:, None]) if m.sum() >= 50] or [bg]
    stats = []
    for m in regions:
        v = img[m].astype(np.float64)
        med = float(np.median(v))
        stats.append((med, float(np.median(np.abs(v - med)))))
    med, mad = min(stats)
    if med > 0 and mad / med <= _RAYLEIGH_SHAPE_MAX:
        return med / _RAYLEIGH_MEDIAN
    return mad / _RAYLEIGH_MAD


def _noise_and_edges(series: SeriesImages, noise_correction: float = 0.0) -> dict[str, Any]:
    """Per-slice noise ratio and edge index of one series (up to 6 slices).

    Noise: the air background's noise sigma (Rayleigh median / MAD of the ghost-free part,
    :func:`_background_sigma`) relative to the 99.5th percentile of the tissue, i.e. the series'
    brightest tissue: 1 / SNR at full signal, the same scale for every weighting (the median tissue
    signal, used before, is low on a T1W knee and high on a FLAIR head, so one limit could not
    serve all sequences). Edge: the body-boundary gradient relative to the tissue/background
    contrast (:func:`edge_index`), less ``noise_correction`` x sigma / contrast: noise adds to
    the boundary gradient's 90th percentile, so a blurred *and* noisy series read sharp."""
    from scipy import ndimage

    vol = _stack(series)
    ratios, edges = [], []
    for i in pick_slices(vol.shape[0], 6):
        img = vol[i]
        fg = _foreground(img)
        if fg.sum() < 0.02 * fg.size:
            continue
        near = ndimage.binary_dilation(fg, iterations=4)
        bg = ~near
        if bg.sum() < 50:
            continue
        tissue = img[fg]
        bright = float(np.percentile(tissue, 99.5))
        signal = float(np.median(tissue))
        if bright <= 0 or signal <= 0:
            continue
        sigma = _background_sigma(img, near)
        ratios.append((sigma / bright, i))
        contrast = signal - float(np.mean(img[bg]))
        e = edge_index(img, fg, contrast)
        if e is not None:
            edges.append((e - noise_correction * sigma / contrast, i))
    return {"ratios": ratios, "edges": edges, "vol": vol}


def _aggregate(values: list[float], how: str) -> float:
    """One exam value from per-series values: ``min``, ``median`` or ``gmean`` (geometric mean)."""
    if how == "min":
        return float(min(values))
    if how == "gmean":
        return float(np.exp(np.mean(np.log(np.maximum(values, 1e-9)))))
    return float(np.median(values))


def _pixel_dims(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink) -> dict[str, DimensionResult]:
    """Noise and sharpness, judged on the exam, not on its worst series.

    Too much noise (low field, wrong coil, too few averages) and blur (the reconstruction filter,
    motion-free smoothing) are properties of the acquisition that every series shares, while one
    series' background can rise through ghosting or wrap and one series' edges soften through its
    own contrast (a dark fat-suppressed boundary): so the exam's noise is its *least* noisy series
    (``noise.aggregate: min``) and its sharpness the typical series (``sharpness.aggregate``), each
    against one limit in ``mr.yaml`` (a blurred exam's noise against ``max_noise_ratio_blurred``:
    blur lowers the brightest tissue the noise is divided by). Every series' reading is in the details."""
    series = [s for s in _image_series(exam) if label_of(s, "sequence") not in ("ADC", "DWI")]
    if not series:
        na = not_assessable("no_image_series", "无可分析的磁共振序列", "no MR image series to analyse")
        return {"noise": na, "sharpness": na}
    noise_p = params.get("noise") or {}
    max_ratio = float(noise_p.get("max_noise_ratio") or 0.05)
    noise_how = str(noise_p.get("aggregate") or "min")
    sharp_p = params.get("sharpness") or {}
    min_edge = float(sharp_p.get("min_index", 0.3))
    sharp_how = str(sharp_p.get("aggregate") or "median")
    noise_correction = float(sharp_p.get("noise_correction") or 0.0)
    noise_rows: list[dict[str, Any]] = []
    edge_rows: list[dict[str, Any]] = []
    measured: dict[str, dict[str, Any]] = {}
    for s in series:
        try:
            m = _noise_and_edges(s, noise_correction)
        except Exception as exc:  # noqa: BLE001 - an undecodable series is skipped and said
            noise_rows.append({"series_uid": series_uid(s), "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        uid = series_uid(s)
        measured[uid] = m
        if m["ratios"]:
            noise_rows.append({"series_uid": uid, "sequence": label_of(s, "sequence"),
                               "noise_ratio": round(float(np.median([v for v, _ in m["ratios"]])), 4)})
        if m["edges"]:
            edge_rows.append({"series_uid": uid, "sequence": label_of(s, "sequence"),
                              "edge_index": round(float(np.median([v for v, _ in m["edges"]])), 4)})
    out: dict[str, DimensionResult] = {}
    judged = [r for r in noise_rows if "noise_ratio" in r]
    # a blurred exam (its sharpness below the limit) is held to ``max_noise_ratio_blurred`` (null: the
    # same limit): blur lowers the brightest tissue the noise is divided by (thin bright CSF and fat
    # spread out) while the air background keeps its noise. Fresh and worn sets i9214/i9216/h9213/h9215
    # + t9120-t9122 (234 MR exams): sharp clean <= 0.0457, sharp noisy >= 0.0445; blurred clean up to
    # 0.0561 (three read 异常 at 0.047: i9214 E00026, i9216 E00257, t9120 E00063), blurred noisy >= 0.0597
    blur_limit = noise_p.get("max_noise_ratio_blurred")
    # "blurred" here is surer than the sharpness call (``blurred_below_index``, default the sharpness
    # limit): a noisy ghosted exam read 0.326 against 0.35 (h9213 E00077), blurred ones <= 0.252
    blur_index = float(noise_p.get("blurred_below_index") or min_edge)
    blurred = bool(edge_rows) and _aggregate([r["edge_index"] for r in edge_rows], sharp_how) < blur_index
    if blurred and blur_limit is not None:
        max_ratio = max(max_ratio, float(blur_limit))
    if not judged:
        out["noise"] = not_assessable("no_readable_series", "无可测量背景噪声的序列", "no MR series with a measurable background",
                                      series=noise_rows)
    else:
        value = _aggregate([r["noise_ratio"] for r in judged], noise_how)
        details = {"series": noise_rows, "aggregate": noise_how, "noise_ratio": round(value, 4), "limit": max_ratio,
                   "blurred": blurred}
        findings = []
        if value > max_ratio:
            best = min(judged, key=lambda r: r["noise_ratio"])
            m = measured[best["series_uid"]]
            idx = min(m["ratios"])[1]
            pic = add_picture(sink, m["vol"][idx], f"noise_{best['series_uid']}")
            seq = best.get("sequence") or ""
            findings.append(finding(
                "IQC-NOISE", "noise", ABNORMAL,
                f"图像噪声过大：各序列背景噪声/最亮组织信号均超限（噪声最低的{seq}序列为 {best['noise_ratio']:.3f}，"
                f"检查值 {value:.3f}，限值 {max_ratio:.3f}）",
                f"image noise too high in every series: background noise / brightest tissue {value:.3f} "
                f"(the least noisy series, {seq}: {best['noise_ratio']:.3f}; limit {max_ratio:.3f})",
                [Evidence(series_uid=best["series_uid"], instance_index=idx, measured=round(value, 4), limit=max_ratio,
                          image=pic, extra={"aggregate": noise_how})]))
        out["noise"] = DimensionResult(ABNORMAL if findings else NORMAL, details, findings=findings)
    if not edge_rows:
        out["sharpness"] = not_assessable("no_body", "未检出组织边缘", "no tissue edge found")
    else:
        value = _aggregate([r["edge_index"] for r in edge_rows], sharp_how)
        details = {"series": edge_rows, "aggregate": sharp_how, "edge_index": round(value, 4), "limit": min_edge,
                   "noise_correction": noise_correction}
        findings = []
        if value < min_edge:
            worst = min(edge_rows, key=lambda r: r["edge_index"])
            m = measured[worst["series_uid"]]
            idx = min(m["edges"])[1]
            pic = add_picture(sink, m["vol"][idx], f"sharpness_{worst['series_uid']}")
            findings.append(finding(
                "IQC-SHARPNESS", "sharpness", ABNORMAL,
                f"图像清晰度不足：各序列边缘锐利度 {value:.2f}（限值 {min_edge:.2f}；最低为{worst.get('sequence') or ''}序列 "
                f"{worst['edge_index']:.2f}）",
                f"images not sharp: edge sharpness index over the series {value:.2f} (limit {min_edge:.2f}; lowest "
                f"{worst.get('sequence') or ''} {worst['edge_index']:.2f})",
                [Evidence(series_uid=worst["series_uid"], instance_index=idx, measured=round(value, 4), limit=min_edge,
                          image=pic, extra={"aggregate": sharp_how})]))
        out["sharpness"] = DimensionResult(ABNORMAL if findings else NORMAL, details, findings=findings)
    return out


# ---------------------------------------------------------------- reconstruction / range


def _reconstruction(exam: ExamImages, params: dict[str, Any]) -> DimensionResult:
    """Slice thickness of every image series against its part's limit (a combined brain + spine
    order holds the head's series to the brain's limit: :func:`_parts`)."""
    if not _image_series(exam):
        return not_assessable("no_image_series", "无可分析的磁共振序列", "no MR image series to analyse")
    findings = []
    rows = []
    limits = {}
    for code, part_exam, part_params in _parts(exam, params):
        limit = float((part_params.get("reconstruction") or {}).get("max_thickness_mm", 6.0))
        limits[code] = limit
        for s in _image_series(part_exam):
            t = header_of(s, "slice_thickness")
            rows.append({"series_uid": series_uid(s), "sequence": label_of(s, "sequence"), "slice_thickness_mm": t,
                         "limit_mm": limit})
            if t is not None and float(t) > limit:
                findings.append(finding("IQC-RECON", "reconstruction", ABNORMAL,
                                        f"层厚 {float(t):g} mm 超出标准（≤ {limit:g} mm）：{label_of(s, 'sequence') or ''} {_plane(s) or ''}",
                                        f"slice thickness {float(t):g} mm outside the standard (<= {limit:g} mm): "
                                        f"{_plane(s) or ''} {label_of(s, 'sequence') or ''}",
                                        [Evidence(series_uid=series_uid(s), measured=float(t), limit=limit, unit="mm")]))
    details: dict[str, Any] = {"series": rows, "limit_mm": limits.get(str(params.get("_standard_code")), next(iter(limits.values())))}
    if len(limits) > 1:
        details["limits_by_part"] = limits
    return DimensionResult(ABNORMAL if findings else NORMAL, details, findings=findings)


def _superior_first(series: SeriesImages) -> tuple[list[Any], str | None]:
    """The series' instances and which image edge is superior, so a cut at the top of the head can be seen.

    Axial stacks come back sorted superior slice first ("first_slice"); sagittal/coronal ones keep their
    order and say which row is superior ("row0"/"rowN") from the column direction cosine. ``None`` when
    the geometry does not say (oblique or no orientation): the series is then not used."""
    dss = list(series.datasets())
    if not dss:
        return dss, None
    iop = getattr(dss[0], "ImageOrientationPatient", None)
    plane = _plane(series)
    if iop is None:
        # DICOM display convention: sagittal/coronal rows run head to foot
        return dss, ("row0" if plane in ("sagittal", "coronal") else None)
    o = np.asarray([float(v) for v in iop], dtype=float)
    normal = np.cross(o[:3], o[3:])
    if abs(normal[2]) > 0.8:
        pos = [getattr(d, "ImagePositionPatient", None) for d in dss]
        if any(p_ is None for p_ in pos):
            return dss, None
        order = np.argsort([-float(p_[2]) for p_ in pos if p_ is not None])
        return [dss[int(i)] for i in order], "first_slice"
    col_z = float(o[5])
    if abs(col_z) < 0.7:
        return dss, None
    return dss, ("row0" if col_z < 0 else "rowN")


def _head_cut(series: SeriesImages) -> dict[str, Any] | None:
    """How much head tissue reaches the superior end of one series (None: not measurable).

    Sagittal/coronal: the fraction of the top image row (central slices) that is tissue; a head whose
    vertex is inside the field of view has air above it. Axial: the tissue area of the most superior
    slice relative to the largest slice; a stack starting at the vertex begins with a small cap."""
    dss, edge = _superior_first(series)
    if edge is None or len(dss) < 2:
        return None
    if edge == "first_slice":
        areas = [float(_foreground(np.asarray(d.pixel_array, dtype=np.float32)).mean()) for d in dss]
        if max(areas) <= 0.02:
            return None
        return {"series_uid": series_uid(series), "kind": "axial_first_slice_area", "value": round(areas[0] / max(areas), 3),
                "instance": 0, "image": np.asarray(dss[0].pixel_array, dtype=np.float32)}
    mid = len(dss) // 2
    best: tuple[float, int] = (0.0, mid)
    for i in sorted({max(0, mid - 1), mid, min(len(dss) - 1, mid + 1)}):
        m = _foreground(np.asarray(dss[i].pixel_array, dtype=np.float32))
        if m.mean() <= 0.02:
            continue
        rows = m[:2] if edge == "row0" else m[-2:]
        best = max(best, (float(rows.any(axis=0).mean()), i))
    return {"series_uid": series_uid(series), "kind": "top_row_tissue", "value": round(best[0], 3), "instance": best[1],
            "image": np.asarray(dss[best[1]].pixel_array, dtype=np.float32)}


def _range_atlas(exam: ExamImages, p: dict[str, Any], sink: EvidenceSink | None) -> DimensionResult:
    """Knee / spine range: the field's top and bottom edges on the anatomy, from the atlas profile match.

    Each sagittal/coronal series' superior-inferior profile is registered to the item's atlas
    (:mod:`radqc.pipelines.image_qc.mr_range_atlas`); its edges then lie at atlas positions, and the
    item's required landmarks (atlas positions in ``mr.yaml``) must lie inside them. The median edge
    over the matched series decides, so one poorly matched series does not."""
    from radqc.pipelines.image_qc import mr_range_atlas as atlas_mod

    region = str(p.get("atlas_region") or "")
    atlas = atlas_mod.load_atlas()
    skip = set(p.get("skip_sequences") or ["DWI", "ADC"])
    max_shift = float(p.get("max_shift_mm", 100.0))
    min_overlap = float(p.get("min_overlap_mm", 100.0))
    min_ncc = float(p.get("min_correlation", 0.6))
    rows: list[dict[str, Any]] = []
    for s in _image_series(exam):
        seq, plane = label_of(s, "sequence"), _plane(s)
        if seq in skip or plane not in ("sagittal", "coronal"):
            continue
        template = atlas.get(atlas_mod.atlas_key(region, plane, seq)) or atlas.get(atlas_mod.atlas_key(region, plane, None))
        if template is None:
            continue
        try:
            prof = atlas_mod.series_profile(s)
        except Exception as exc:  # noqa: BLE001 - an undecodable series is skipped and said
            rows.append({"series_uid": series_uid(s), "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        if prof is None:
            continue
        m = atlas_mod.match(prof, template, max_shift, min_overlap)
        if m is None:
            continue
        shift, ncc = m
        rows.append({"series_uid": series_uid(s), "sequence": seq, "plane": plane, "shift_mm": round(shift, 1),
                     "correlation": round(ncc, 3), "top_mm": round(shift - prof["half_mm"], 1),
                     "bottom_mm": round(shift + prof["half_mm"], 1), "used": ncc >= min_ncc})
    # a series matching far worse than the exam's best match (ghosting, a dark fat-suppressed
    # series) is not used beside it: the median of two series is their mean
    margin = p.get("max_correlation_below_best")
    best_ncc = max((r["correlation"] for r in rows if r.get("used")), default=None)
    if margin is not None and best_ncc is not None:
        for r in rows:
            if r.get("used") and r["correlation"] < best_ncc - float(margin):
                r["used"] = False
                r["not_used"] = "correlation_below_best"
    used = [r for r in rows if r.get("used")]
    landmarks = p.get("landmarks") or {}
    details: dict[str, Any] = {"method": "atlas_profile", "atlas_region": region, "series": rows,
                               "landmarks": landmarks, "min_correlation": min_ncc}
    if not used:
        return not_assessable("no_atlas_match", "无可与解剖图谱配准的矢状/冠状位序列，无法判断扫描范围",
                              "no sagittal/coronal series matched the anatomical atlas: scan range cannot be assessed",
                              **details)
    top = float(np.median([r["top_mm"] for r in used]))
    bottom = float(np.median([r["bottom_mm"] for r in used]))
    details["field_mm"] = {"top": round(top, 1), "bottom": round(bottom, 1)}
    findings = []
    missing = []
    for end, edge in (("top", top), ("bottom", bottom)):
        lm = landmarks.get(end)
        if not lm:
            continue
        at = float(lm["at_mm"])
        # top: the field must start above (smaller atlas mm than) the landmark; bottom: end below it
        short = edge - at if end == "top" else at - edge
        if short <= 0:
            continue
        missing.append({"landmark": lm.get("name"), "name_zh": lm.get("zh"), "name_en": lm.get("en"), "end": end,
                        "missing_mm": round(short, 1)})
        worst = max(used, key=lambda r: (r["top_mm"] - at) if end == "top" else (at - r["bottom_mm"]))
        pic = None
        if sink is not None:
            ser = next((s for s in exam.series if series_uid(s) == worst["series_uid"]), None)
            dss = list(ser.datasets()) if ser is not None else []
            if dss:
                pic = add_picture(sink, np.asarray(dss[len(dss) // 2].pixel_array, dtype=np.float32),
                                  f"range_{worst['series_uid']}_{end}")
        where_zh, where_en = ("上缘", "superior") if end == "top" else ("下缘", "inferior")
        findings.append(finding(
            "IQC-RANGE", "range", "过小",
            f"扫描范围过小：未包括{lm.get('zh')}（视野{where_zh}距其约 {short:.0f} mm，按解剖图谱配准测得）",
            f"scan range too small: {lm.get('en')} not covered (the {where_en} field edge misses it by about "
            f"{short:.0f} mm, measured by registration to the anatomical atlas)",
            [Evidence(series_uid=worst["series_uid"], measured=round(edge, 1), limit=at, unit="mm", image=pic,
                      extra={"landmark": lm.get("name"), "end": end, "coordinates": f"{region} atlas mm"})]))
    details["missing"] = missing
    return DimensionResult("过小" if findings else NORMAL, details, findings=findings)


def _ordered_parts(exam: ExamImages) -> set[str]:
    """The body parts (radqc.vocab, e.g. 颅脑) of the exam's ordered standard items."""
    from radqc.vocab import item as vocab_item

    parts: set[str] = set()
    for code in exam.item_codes or []:
        try:
            parts.update(str(p_) for p_ in (vocab_item(code).parts or []))
        except KeyError:
            continue
    return parts


def _parts(exam: ExamImages, params: dict[str, Any]) -> list[tuple[str, ExamImages, dict[str, Any]]]:
    """The exam's imaged parts: ``[(standard code, the part's exam, its parameters)]``.

    One part normally. A combined order (颅脑 + 腰椎 in one exam) scored under the non-head item:
    the series the classifier places in a region of ``range.part_series`` (the head) belong to that
    part's item (MR-BRAIN) when the order has an item of that part, the rest to the exam's item;
    a part left without image series is dropped."""
    own = str(params.get("_standard_code"))
    ordered = _ordered_parts(exam)
    for region, spec in ((params.get("range") or {}).get("part_series") or {}).items():
        other = str(spec.get("standard") or "")
        if not other or other == own or not ordered.intersection(spec.get("parts") or []):
            continue
        mine = [s for s in exam.series if label_of(s, "region") == region]
        if not mine:
            continue
        from radqc.pipelines.image_qc.measure_common import load_params as _load

        out = [(other, dataclasses.replace(exam, series=mine, standard_code=other), _load("MR", other))]
        rest = dataclasses.replace(exam, series=[s for s in exam.series if label_of(s, "region") != region])
        if _image_series(rest):
            out.append((own, rest, params))
        return out
    return [(own, exam, params)]


def _range(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink | None = None) -> DimensionResult:
    """Scan range, per imaged part (:func:`_parts`): a brain + lumbar spine exam scored as MR-LSPINE
    must not register head images to the lumbar atlas. A part without series is listed, not judged."""
    parts = _parts(exam, params)
    if len(parts) == 1 and parts[0][1] is exam:
        return _range_one(exam, params, sink)
    return _combine_parts({code: _range_one(e, p_, sink) for code, e, p_ in parts}, str(params.get("_standard_code")))


def _combine_parts(results: dict[str, DimensionResult], own: str) -> DimensionResult:
    """One range result from the parts' own: 过小/过大 when any part is; else 正常 when one was measured."""
    details: dict[str, Any] = {"parts": {code: {"value": r.value, "reason": r.reason, **r.details} for code, r in results.items()}}
    if own not in results:
        details["parts"][own] = {"value": None, "reason_code": "no_series_of_part",
                                 "reason": "该部位无序列（图像均属于另一检查部位） / no series of this part (every series belongs to the other ordered part)"}
    findings = [f for r in results.values() for f in r.findings]
    for bad in ("过小", "过大"):
        if any(r.value == bad for r in results.values()):
            details["missing"] = [m for r in results.values() for m in r.details.get("missing", [])]
            return DimensionResult(bad, details, findings=findings)
    measured = [r for r in results.values() if r.value == NORMAL]
    if measured:
        return DimensionResult(NORMAL, details)
    first = next(iter(results.values()))
    return DimensionResult(first.value, {**first.details, **details}, reason=first.reason, findings=findings)


def _range_one(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink | None = None) -> DimensionResult:
    """Scan range of one item: for the head, whether the vertex is inside every series (sagittal/coronal
    first); for knee and spine, the field edges on the anatomy by atlas profile registration.

    Items without an atlas (shoulder, liver, prostate) stay 无法评估 with the item's reason from the
    parameter file."""
    p = params.get("range") or {}
    if p.get("assess") and p.get("method") == "atlas":
        return _range_atlas(exam, p, sink)
    head = _head_range(exam, p, sink)
    base = p.get("atlas")
    if not p.get("assess") or not base:
        return head
    # the skull base: the neck always fills the lower image edge, so the image edges cannot tell a cut
    # at the foramen magnum; the atlas match of the sagittal head places the field's lower edge
    below = _range_atlas(exam, {"skip_sequences": p.get("skip_sequences"), **base}, sink)
    head.details["skull_base"] = {"value": below.value, **below.details}
    if below.value not in ("过小", NORMAL) and p.get("min_axial_span_mm") is not None and head.value == NORMAL:
        # no sagittal series placed the skull base: an axial stack too short for any brain says it
        below = _axial_span(exam, p, sink)
        head.details["axial_span"] = {"value": below.value, **below.details}
    if below.value != "过小":
        return head
    findings = list(head.findings) + list(below.findings)
    details = {k: v for k, v in head.details.items() if k != "reason_code"}
    details["missing"] = [*head.details.get("missing", []), *below.details.get("missing", [])]
    return DimensionResult("过小", details, findings=findings)


def _axial_span(exam: ExamImages, p: dict[str, Any], sink: EvidenceSink | None) -> DimensionResult:
    """The head's craniocaudal coverage of the axial series when no sagittal series shows the skull base.

    Why: the skull base is judged by registering a sagittal series to the head atlas; an exam without
    one (a contrast-enhanced brain whose post-contrast T1 series are missing, or one imaged native
    only) was judged at the vertex alone, so a stack cut above the foramen magnum read 正常 (h9215
    E00099, t9121 E00106, t9122 E00093). The axial stack of a brain from the vertex to the foramen
    magnum spans the brain's height (about 120-150 mm in adults); the span is the distance between
    the outermost slice positions plus one slice thickness, the longest over the axial image series
    (header positions only, no pixels). Below ``min_axial_span_mm`` the stack cannot hold the whole
    brain: 过小, at the bottom when the vertex is covered (the vertex measure found no cut).
    ``无法评估`` when no axial series has positions."""
    skip = set(p.get("skip_sequences") or ["DWI", "ADC"])
    limit = float(p["min_axial_span_mm"])
    best: tuple[float, Any] | None = None
    for s in _image_series(exam):
        if label_of(s, "sequence") in skip or _plane(s) != "axial":
            continue
        try:
            dss = list(s.datasets())
            z = [float(d.ImagePositionPatient[2]) for d in dss if getattr(d, "ImagePositionPatient", None) is not None]
            thick = float(getattr(dss[0], "SliceThickness", 0) or 0) if dss else 0.0
        except Exception:  # noqa: BLE001 - a series without usable positions is not used
            continue
        if len(z) < 2:
            continue
        span = max(z) - min(z) + thick
        if best is None or span > best[0]:
            best = (span, s)
    if best is None:
        return not_assessable("no_axial_positions", "轴位序列无层面位置，无法判断覆盖范围", "no axial series with slice positions")
    span, s = best
    details = {"measured": round(span, 1), "limit": limit, "series_uid": series_uid(s), "kind": "axial_span_mm"}
    if span >= limit:
        return DimensionResult(NORMAL, details)
    details["missing"] = [{"landmark": "foramen_magnum", "name_zh": "枕骨大孔（颅底）", "name_en": "foramen magnum (skull base)",
                           "end": "bottom", "missing_mm": round(limit - span, 1)}]
    f = finding("IQC-RANGE", "range", "过小",
                f"扫描范围过小：轴位覆盖仅 {span:.0f} mm（限值 {limit:.0f} mm），未能包括颅顶至颅底（枕骨大孔）",
                f"scan range too small: the axial stack covers {span:.0f} mm (limit {limit:.0f} mm), "
                "too short to reach from the vertex to the skull base (foramen magnum)",
                [Evidence(series_uid=series_uid(s), measured=round(span, 1), limit=limit, unit="mm",
                          extra={"landmark": "foramen_magnum", "end": "bottom"})])
    return DimensionResult("过小", details, findings=[f])


def _head_range(exam: ExamImages, p: dict[str, Any], sink: EvidenceSink | None) -> DimensionResult:
    """The head's vertex coverage (or the item's 无法评估 reason when the item has no range measure)."""
    if not p.get("assess"):
        return not_assessable(str(p.get("reason_code") or "no_mr_landmarks"),
                              str(p.get("reason_zh") or "磁共振解剖标志点模型尚未提供，无法判断扫描范围"),
                              str(p.get("reason_en") or "no MR landmark model yet: scan range cannot be assessed"))
    skip = set(p.get("skip_sequences") or ["DWI", "ADC"])
    series = [s for s in _image_series(exam) if label_of(s, "sequence") not in skip]
    rows: list[dict[str, Any]] = []
    for s in series:
        try:
            r = _head_cut(s)
        except Exception as exc:  # noqa: BLE001 - an undecodable series is skipped and said
            rows.append({"series_uid": series_uid(s), "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        if r is not None:
            rows.append(r)
    inplane = [r for r in rows if r.get("kind") == "top_row_tissue"]
    axial = [r for r in rows if r.get("kind") == "axial_first_slice_area"]
    top_limit = float(p.get("max_top_row_tissue", 0.1))
    area_limit = float(p.get("max_first_slice_area_ratio", 0.45))
    details: dict[str, Any] = {"series": [{k: v for k, v in r.items() if k != "image"} for r in rows],
                               "limits": {"max_top_row_tissue": top_limit, "max_first_slice_area_ratio": area_limit}}
    if inplane:
        worst = max(inplane, key=lambda r: r["value"])
        cut = worst["value"] > top_limit
        measured, limit = worst["value"], top_limit
        how_zh, how_en = f"矢状/冠状位图像顶边组织占 {measured:.0%}", f"tissue along the top edge of the sagittal/coronal image {measured:.0%}"
    elif axial:
        vals = sorted(r["value"] for r in axial)
        measured = float(np.median(vals))
        worst = max(axial, key=lambda r: r["value"])
        cut = measured > area_limit
        limit = area_limit
        how_zh, how_en = f"最上层轴位组织面积为最大层的 {measured:.0%}", f"top axial slice tissue area {measured:.0%} of the largest slice"
    else:
        return not_assessable("no_head_geometry", "无可判断头顶覆盖的序列", "no series whose geometry shows the vertex coverage",
                              **details)
    details["measured"] = measured
    if not cut:
        return DimensionResult(NORMAL, details)
    pic = add_picture(sink, worst["image"], f"range_{worst['series_uid']}") if sink is not None else None
    f = finding("IQC-RANGE", "range", "过小", f"扫描范围过小：未包括颅顶（{how_zh}，限值 {limit:.0%}）",
                f"scan range too small: vertex not covered ({how_en}, limit {limit:.0%})",
                [Evidence(series_uid=worst["series_uid"], instance_index=worst["instance"], measured=measured, limit=limit,
                          image=pic, extra={"landmark": "vertex", "end": "top"})])
    return DimensionResult("过小", details, findings=[f])


def measure_mr(exam: ExamImages, params: dict[str, Any], sink: EvidenceSink) -> dict[str, DimensionResult]:
    """All MR dimensions but ``artifact``: each measured, or with the reason it cannot be / does not apply.

    ``params`` come from :func:`load_params` ("MR", exam.standard_code)."""
    out: dict[str, DimensionResult] = {}
    steps = {
        "sequences": lambda: {"sequences": _sequences(exam, params)},
        "pixels": lambda: _pixel_dims(exam, params, sink),
        "reconstruction": lambda: {"reconstruction": _reconstruction(exam, params)},
        "range": lambda: {"range": _range(exam, params, sink)},
    }
    for name, fn in steps.items():
        try:
            out.update(fn())
        except Exception as exc:  # noqa: BLE001 - one failing measure must not lose the others
            log.exception("MR %s measure failed", name)
            dims = ("noise", "sharpness") if name == "pixels" else (name,)
            for d in dims:
                out[d] = not_assessable("measure_error", "测量出错", f"measure failed: {type(exc).__name__}: {exc}"[:300])
    if params.get("_notes"):
        for r in out.values():
            r.details.setdefault("notes", params["_notes"])
    out["centring"] = not_applicable("磁共振不评估偏中心", "centring is not assessed for MR")
    out["window"] = not_applicable("磁共振无固定窗宽窗位要求", "no fixed window presets for MR")
    out["dose"] = not_applicable("磁共振无电离辐射剂量", "MR has no ionising dose")
    out["positioning"] = not_applicable("磁共振体位暂未测量", "MR positioning not measured")
    return out
