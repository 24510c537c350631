"""Serving the slice body-region scorer with ONNX Runtime (no torch).

    scorer = OnnxBodyRegionScorer(get_model("body_region"))
    result = scorer.score(ct_image)          # BodyRegionResult (models/interfaces.py)

Scores come from the network slice by slice; everything else is derived from a monotone
fit of score against patient z, so one confused slice cannot move a landmark:

* the fit is an isotonic (pool-adjacent-violators) regression of score on -z over the
  non-empty slices (score must grow toward the feet whatever the slice order);
* a landmark's z is where the fitted curve crosses that landmark's standard score
  (registry ``output.landmark_scores``), or None when the standard score lies outside the
  scanned score range widened by ``output.landmark_margin``;
* a slice's region is read off the fitted score with ``regions.yaml`` (data, not code);
* the vertex, when the scan shows air above a head slice, is the top of the body.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from radqc.models.body_region import data as D
from radqc.models.interfaces import CT_LANDMARKS, BodyRegionResult

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from radqc.models.registry import ModelInfo

REGIONS_FILE = Path(__file__).with_name("regions.yaml")
#: Slices per ONNX Runtime call (bounds memory on very long series).
CHUNK = 256


@functools.cache
def region_table() -> list[dict[str, Any]]:
    """The region boundaries of ``regions.yaml``, head to feet."""
    raw = yaml.safe_load(REGIONS_FILE.read_text(encoding="utf-8"))
    return list(raw["regions"])


def isotonic_increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators fit of y non-decreasing in x; returns (block x-means, block values).

    Block centres give a strictly increasing x grid and a non-decreasing curve that can be
    inverted by linear interpolation (flat blocks collapse to one point each)."""
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    vals: list[float] = []
    wts: list[float] = []
    xsum: list[float] = []
    for xi, yi in zip(xs, ys, strict=True):
        vals.append(yi)
        wts.append(1.0)
        xsum.append(xi)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            sx = xsum[-2] + xsum[-1]
            vals[-2:], wts[-2:], xsum[-2:] = [v], [w], [sx]
    return np.array(xsum) / np.array(wts), np.array(vals)


def landmarks_from_scores(
    z_mm: np.ndarray, scores: np.ndarray, landmark_scores: dict[str, float], margin: float,
    names: tuple[str, ...] = CT_LANDMARKS,
) -> tuple[dict[str, float | None], np.ndarray]:
    """Landmark z (or None) and the fitted score per slice, from scores of non-empty slices."""
    out: dict[str, float | None] = {n: None for n in names}
    if len(z_mm) < 2 or float(np.ptp(z_mm)) <= 0:
        return out, np.asarray(scores, dtype=np.float64)
    bx, bv = isotonic_increasing(-np.asarray(z_mm, dtype=np.float64), scores)
    fitted = np.interp(-np.asarray(z_mm, dtype=np.float64), bx, bv)
    lo, hi = float(bv[0]), float(bv[-1])
    z_top, z_bottom = float(np.max(z_mm)), float(np.min(z_mm))
    for n in names:
        target = landmark_scores.get(n)
        if target is None or not (lo - margin <= target <= hi + margin):
            continue
        if len(bx) == 1:
            z = float(-bx[0])
        else:
            # np.interp needs increasing xp: bv is non-decreasing, strictly increasing after
            # dropping repeats, so invert on the unique values
            uv, first = np.unique(bv, return_index=True)
            z = float(-np.interp(target, uv, bx[first])) if len(uv) > 1 else float(-bx[0])
        out[n] = round(min(max(z, z_bottom), z_top), 2)
    return out, fitted


def regions_of_scores(fitted: np.ndarray, landmark_scores: dict[str, float], slope_per_mm: float) -> list[str]:
    """Region per slice: the last region of ``regions.yaml`` whose start score is <= the score."""
    starts: list[tuple[str, float]] = []
    for r in region_table():
        frm = r.get("from")
        s0 = -np.inf if frm is None else landmark_scores[frm] + float(r.get("offset_mm", 0.0)) * slope_per_mm
        starts.append((str(r["name"]), float(s0)))
    names = [n for n, _ in starts]
    bounds = np.array([s for _, s in starts[1:]])
    return [names[int(i)] for i in np.searchsorted(bounds, np.asarray(fitted, dtype=np.float64), side="right")]


def monotonic_fraction(z_mm: np.ndarray, scores: np.ndarray, tolerance: float = 0.0) -> float | None:
    """Fraction of consecutive slice pairs (index order) whose scores move toward the feet
    as z moves toward the feet; None when fewer than two slices.

    ``tolerance`` (score units, ~8 mm each) forgives reversals up to that size: with thin
    slices the true step (0.6 units at 5 mm, 0.2 at 1.5 mm) is below the per-slice noise of
    the network, so the strict fraction (the default, stored in the result) measures noise
    as much as order; evaluation reports both."""
    z = np.asarray(z_mm, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if len(z) < 2:
        return None
    dz, ds = np.diff(z), np.diff(s)
    ok = (ds * -np.sign(dz)) > -tolerance if tolerance > 0 else (ds * -np.sign(dz)) > 0
    return float(ok.mean())


def rank_correlation(z_mm: np.ndarray, scores: np.ndarray) -> float | None:
    """Spearman correlation of score with -z (1.0: perfectly ordered head to feet)."""
    z = np.asarray(z_mm, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if len(z) < 3:
        return None
    rz = np.argsort(np.argsort(-z)).astype(np.float64)
    rs = np.argsort(np.argsort(s)).astype(np.float64)
    c = np.corrcoef(rz, rs)[0, 1]
    return float(c) if np.isfinite(c) else None


class OnnxBodyRegionScorer:
    """The registered ``body_region`` model served by a cached ONNX Runtime session."""

    def __init__(self, info: ModelInfo, flip_average: bool | None = None) -> None:
        from radqc.models.runtime import session_for

        self.info = info
        self.name = info.name
        self.version = info.version
        self.session = session_for(info)  # loaded once per process (models.runtime)
        out = info.output or {}
        self.landmark_scores: dict[str, float] = {k: float(v) for k, v in (out.get("landmark_scores") or {}).items()}
        if not self.landmark_scores:
            raise ValueError(f"model {info.name} {info.version}: registry entry lacks output.landmark_scores")
        self.margin = float(out.get("landmark_margin", 1.0))
        self.empty_fraction = float(out.get("empty_fraction", D.EMPTY_FRACTION))
        self.flip_average = bool(out.get("flip_average", False)) if flip_average is None else flip_average
        std = out.get("standard_depth_mm") or {}
        self.slope_per_mm = 100.0 / float(std.get(D.REFERENCE, 800.0))
        inp = info.input or {}
        self.grid = int((inp.get("size") or [D.GRID])[0])
        self.pixel_mm = float(inp.get("pixel_mm", D.PIXEL_MM))
        self._input = self.session.get_inputs()[0].name

    def raw_scores(self, hu: np.ndarray) -> np.ndarray:
        """Network scores of prepared slices (n, grid, grid) HU.

        With ``flip_average`` (registry ``output.flip_average``) each slice is scored as is
        and mirrored left-right (a training augmentation) and the two are averaged: the
        per-slice noise drops, which is what orders neighbouring thin slices."""
        out = []
        for i in range(0, len(hu), CHUNK):
            x = np.ascontiguousarray(hu[i : i + CHUNK, None], dtype=np.float32)
            if self.flip_average:
                both = np.concatenate([x, x[..., ::-1]])
                s = np.asarray(self.session.run(None, {self._input: both})[0], dtype=np.float64).reshape(-1)
                out.append(0.5 * (s[: len(x)] + s[len(x) :]))
            else:
                out.append(np.asarray(self.session.run(None, {self._input: x})[0], dtype=np.float64).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0)

    def _vertex_from_air(self, z_mm: np.ndarray, body: np.ndarray, fitted: np.ndarray) -> float | None:
        """The vertex as the top of the body when the scan shows air above a head slice.

        Near the vertex a slice holds only a small skull cap whose score is the least
        certain of the head; when empty slices lie above the highest body slice and that
        slice scores as head (above the skull base), the top of the body is the vertex."""
        top = int(np.argmax(np.where(body, z_mm, -np.inf)))
        above = ~body & (z_mm > z_mm[top])
        if not above.any():
            return None
        if fitted[top] >= self.landmark_scores.get("skull_base", 0.0):
            return None
        # the vertex lies between the top body slice and the first empty slice above it
        return round(float(z_mm[top] + 0.5 * (np.min(z_mm[above]) - z_mm[top])), 2)

    def score(self, image: sitk.Image) -> BodyRegionResult:
        """Scores per slice (image index order), landmark z, regions, monotonic fraction.

        A single slice gets its score and region; its landmarks are all None and its
        monotonic fraction is None (a curve needs two slices). Non-axial or tilted images
        raise :class:`~radqc.models.body_region.data.BodyRegionInputError`."""
        prep = D.prepare_image(image, self.grid, self.pixel_mm)
        scores = self.raw_scores(prep.hu)
        body = prep.body_fraction >= self.empty_fraction
        lm, fitted_body = landmarks_from_scores(prep.z_mm[body], scores[body], self.landmark_scores, self.margin)
        fitted = scores.copy()
        if body.sum() >= 2:
            fitted = np.interp(-prep.z_mm, -prep.z_mm[body][np.argsort(-prep.z_mm[body])], fitted_body[np.argsort(-prep.z_mm[body])])
        if body.any() and lm.get("vertex") is None:
            lm["vertex"] = self._vertex_from_air(prep.z_mm, body, fitted)
        regions = regions_of_scores(fitted, self.landmark_scores, self.slope_per_mm)
        mono = monotonic_fraction(prep.z_mm[body], scores[body]) if body.sum() >= 2 else None
        return BodyRegionResult(
            scores=[round(float(s), 3) for s in scores],
            z_mm=[round(float(z), 3) for z in prep.z_mm],
            landmarks=lm,
            regions=regions,
            monotonic_fraction=None if mono is None else round(mono, 4),
            model=self.name,
            version=self.version,
        )
