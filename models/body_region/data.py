"""Standard body coordinate, slice preprocessing and synthetic training subjects.

Why one module for all three: the scorer is only as good as the agreement between what it
saw in training and what it sees when serving, so the slice resampling used on a user's
CT (:func:`prepare_image`) and on a synthetic subject (:func:`synth_subject`) is the same
function (:func:`resample_slices`). Serving imports this module, so it needs numpy, scipy
and SimpleITK only; the generator (and torch) are imported inside the training helpers.

**Score.** A slice's score is its position in a *standard body*: the generator's landmarks
(vertex, skull base, lung apex, carina, diaphragm dome, iliac crest, pubic symphysis, body
bottom) are placed at their population-mean depths below the vertex, and a subject's depth
is mapped piecewise-linearly between its own landmarks onto those standard depths
(linear extrapolation beyond the ends). Scores are scaled so that the vertex is 0 and the
pubic symphysis 100; one score unit is about 8 mm in an adult.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

#: Model input: GRID x GRID pixels of PIXEL_MM in-plane, HU (windowing is inside the network).
GRID = 96
PIXEL_MM = 5.0
HU_MIN, HU_MAX = -1024.0, 3071.0
#: A pixel with more than this HU is "body" (or table); used for centring and empty slices.
BODY_HU = -500.0
#: Slices whose body fraction on the model grid is below this are empty (air above the head).
EMPTY_FRACTION = 0.004

#: Anchors of the standard body coordinate (ordered head to feet in every generator habitus).
ANCHORS: tuple[str, ...] = (
    "vertex", "skull_base", "lung_apex", "carina", "diaphragm_dome", "iliac_crest", "pubic_symphysis", "body_bottom",
)
#: Landmarks whose standard score is calibrated (population mean score) besides the anchors.
CALIBRATED: tuple[str, ...] = (
    "vertex", "skull_base", "foramen_magnum", "lung_apex", "carina", "diaphragm_dome", "lung_base",
    "lower_renal_pole", "iliac_crest", "pubic_symphysis", "body_bottom",
)
REFERENCE = "pubic_symphysis"  # score 100


class BodyRegionInputError(ValueError):
    """The image cannot be scored (not axial, gantry tilt, not 3D...); ``code`` names the reason."""

    MESSAGES: dict[str, tuple[str, str]] = {
        "not_axial": ("非轴位序列，无法计算层面体部位置", "not an axial series; slice body positions need axial slices"),
        "tilted": ("机架倾斜或斜位重建，无法计算层面体部位置", "gantry-tilted or oblique slices; body positions need axial slices"),
        "bad_dimension": ("图像维数不支持（需要二维层面或三维体数据）", "unsupported image dimension (2D slice or 3D volume expected)"),
        "empty": ("图像为空", "empty image"),
    }

    def __init__(self, code: str, detail: str = "") -> None:
        from radqc.text import bilingual

        self.code = code
        super().__init__(bilingual(self.MESSAGES, code, detail))


# ----------------------------------------------------------------------------- standard coordinate


def standard_depths(tables: list[dict[str, float]], names: tuple[str, ...] = CALIBRATED) -> dict[str, float]:
    """Population-mean depth (mm below the vertex) of each landmark over ``tables``."""
    return {n: float(np.mean([t[n] for t in tables])) for n in names}


def score_of_depth(depth: np.ndarray, landmarks: dict[str, float], standard: dict[str, float]) -> np.ndarray:
    """Scores of depths (mm below this subject's vertex), piecewise-linear between anchors."""
    xs = np.array([landmarks[a] for a in ANCHORS], dtype=np.float64)
    ys = np.array([standard[a] for a in ANCHORS], dtype=np.float64)
    if np.any(np.diff(xs) <= 0):
        raise ValueError(f"anchor landmarks out of order: {dict(zip(ANCHORS, xs.round(1), strict=True))}")
    d = np.asarray(depth, dtype=np.float64)
    s = np.interp(d, xs, ys)
    lo, hi = d < xs[0], d > xs[-1]
    s[lo] = ys[0] + (d[lo] - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
    s[hi] = ys[-1] + (d[hi] - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return 100.0 * s / standard[REFERENCE]


# ----------------------------------------------------------------------------- preprocessing


@dataclass
class Prepared:
    """Slices on the model grid, in the image's index order."""

    hu: np.ndarray  # (n, GRID, GRID) float32, rows = patient y (anterior -> posterior), cols = patient x (R -> L)
    z_mm: np.ndarray  # (n,) patient z of each slice
    body_fraction: np.ndarray  # (n,) fraction of grid pixels above BODY_HU


def resample_slices(
    arr: np.ndarray,
    spacing_xy: tuple[float, float],
    origin_xy: tuple[float, float],
    direction_2x2: np.ndarray,
    grid: int = GRID,
    pixel_mm: float = PIXEL_MM,
    centre_jitter_mm: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Resample axial slices ``arr`` (n, rows, cols; HU) onto the model grid.

    Block-average first (anti-aliasing: a 0.7 mm pixel becomes ~5 mm), then bilinear
    sampling of a ``grid`` x ``grid`` square of ``pixel_mm`` pixels in patient x/y, centred on
    the median of the body pixels of the whole volume (robust to the table and to FOV choice).
    Returns the slices (float32) and the body fraction per slice."""
    from scipy.ndimage import map_coordinates

    n, rows, cols = arr.shape
    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    fx, fy = max(1, int(pixel_mm / sx)), max(1, int(pixel_mm / sy))
    r2, c2 = (rows // fy) * fy, (cols // fx) * fx
    if r2 == 0 or c2 == 0:
        fx, fy, r2, c2 = 1, 1, rows, cols
    pooled = np.empty((n, r2 // fy, c2 // fx), dtype=np.float32)
    for k0 in range(0, n, 32):  # in chunks: a 512 x 512 x 300 CT never exists twice in float32
        chunk = np.clip(np.asarray(arr[k0 : k0 + 32, :r2, :c2], dtype=np.float32), HU_MIN, HU_MAX)
        m_ = len(chunk)
        pooled[k0 : k0 + m_] = chunk.reshape(m_, r2 // fy, fy, c2 // fx, fx).mean(axis=(2, 4), dtype=np.float32)
    arr = pooled
    d2 = np.asarray(direction_2x2, dtype=np.float64).reshape(2, 2)
    # physical (x, y) of pooled index (i=col, j=row): o + D @ diag(s') @ (i, j)
    o = np.asarray(origin_xy, dtype=np.float64) + d2 @ np.array([(fx - 1) / 2 * sx, (fy - 1) / 2 * sy])
    m = d2 @ np.diag([fx * sx, fy * sy])
    minv = np.linalg.inv(m)
    body = arr[:: max(1, n // 48)] > BODY_HU  # a subset of slices is enough for a median
    if body.any():
        _, jj, ii = np.nonzero(body)
        centre = o + m @ np.array([float(np.median(ii)), float(np.median(jj))])
    else:
        centre = o + m @ np.array([(arr.shape[2] - 1) / 2, (arr.shape[1] - 1) / 2])
    centre = centre + np.asarray(centre_jitter_mm, dtype=np.float64)
    offs = (np.arange(grid, dtype=np.float64) - (grid - 1) / 2) * pixel_mm
    px, py = np.meshgrid(centre[0] + offs, centre[1] + offs)  # (row=y, col=x)
    ij = minv @ (np.stack([px.ravel(), py.ravel()]) - o[:, None])  # (2, G*G): i (col), j (row)
    coords = np.stack([ij[1], ij[0]])
    out = np.empty((n, grid, grid), dtype=np.float32)
    for k in range(n):
        out[k] = map_coordinates(arr[k], coords, order=1, mode="constant", cval=HU_MIN).reshape(grid, grid)
    frac = (out > BODY_HU).mean(axis=(1, 2))
    return out, frac.astype(np.float32)


def _axial_check(direction: np.ndarray) -> None:
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    normal = d[:, 2]
    if abs(normal[2]) < math.cos(math.radians(30)):
        raise BodyRegionInputError("not_axial", f"slice normal {np.round(normal, 3).tolist()}")
    if abs(normal[2]) < math.cos(math.radians(3)) or abs(d[2, 0]) > 0.05 or abs(d[2, 1]) > 0.05:
        raise BodyRegionInputError("tilted", f"slice normal {np.round(normal, 3).tolist()}")


def prepare_image(image: sitk.Image, grid: int = GRID, pixel_mm: float = PIXEL_MM) -> Prepared:
    """A CT image (SimpleITK, HU, LPS) as model-grid slices in its own index order.

    A 2D image is one slice. Non-axial and tilted geometries raise :class:`BodyRegionInputError`."""
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim == 2:
        image = sitk.JoinSeries(image)
    elif dim != 3:
        raise BodyRegionInputError("bad_dimension", f"{dim}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise BodyRegionInputError("bad_dimension", f"{image.GetNumberOfComponentsPerPixel()} components")
    if 0 in image.GetSize():
        raise BodyRegionInputError("empty")
    d = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    _axial_check(d)
    sp = image.GetSpacing()
    org = np.asarray(image.GetOrigin(), dtype=np.float64)
    arr = sitk.GetArrayViewFromImage(image)  # (n, rows, cols)
    n = arr.shape[0]
    z = org[2] + d[2, 2] * sp[2] * np.arange(n)
    hu, frac = resample_slices(arr, (sp[0], sp[1]), (org[0], org[1]), d[:2, :2], grid, pixel_mm)
    return Prepared(hu=hu, z_mm=z.astype(np.float64), body_fraction=frac)


# ----------------------------------------------------------------------------- synthetic subjects


def draw_subject_params(seed: int) -> dict[str, Any]:
    """Sex, age and acquisition variation of one training subject (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 17])
    child = rng.random() < 0.1
    return {
        "sex": "M" if rng.random() < 0.5 else "F",
        "age": int(rng.integers(4, 18) if child else rng.integers(18, 92)),
        "table": bool(rng.random() < 0.75),
        "phase": str(rng.choice(["native", "native", "arterial", "portal", "delayed"])),
        "enhancement": float(rng.uniform(0.85, 1.15)),
        "scale": float(rng.uniform(0.9, 1.1)),
        "rotation_deg": float(rng.normal(0, 5)),
        "centre_jitter_mm": (float(rng.normal(0, 8)), float(rng.normal(0, 8))),
        "z_offset": float(rng.uniform(0, 1)),
    }


def subject_landmarks(seed: int) -> dict[str, float]:
    """Landmark depths (mm below the vertex) of the phantom of training subject ``seed``."""
    from radqc.datasets.synthetic.imaging.anatomy import Materials
    from radqc.datasets.synthetic.imaging.phantom_body import build_body, draw_habitus

    p = draw_subject_params(seed)
    rng = np.random.default_rng(seed)
    h = draw_habitus(rng, p["sex"], p["age"])
    ph = build_body(h, Materials(), with_table=p["table"], rng=rng)
    return {k: float(v) for k, v in ph.landmarks.items()}


def synth_subject(seed: int, z_step_mm: float = 4.0, super_px: float = 2.5) -> dict[str, Any]:
    """One whole-body synthetic subject painted straight from the generator's phantom.

    The body (vertex to thighs) is painted at ``super_px`` mm in-plane with the phantom's
    materials mapped to HU of a random contrast phase, then resampled by
    :func:`resample_slices` exactly as a real CT would be. Returns ``hu`` (n, GRID, GRID)
    int16, ``depth`` (n,) mm below the vertex, and ``landmarks`` (depths)."""
    from radqc.datasets.synthetic.imaging.anatomy import Materials
    from radqc.datasets.synthetic.imaging.geometry import Grid, Placement, paint
    from radqc.datasets.synthetic.imaging.phantom_body import build_body, draw_habitus

    p = draw_subject_params(seed)
    rng = np.random.default_rng(seed)
    h = draw_habitus(rng, p["sex"], p["age"])
    m = Materials()
    ph = build_body(h, m, with_table=p["table"], rng=rng)
    lm = {k: float(v) for k, v in ph.landmarks.items()}
    depth = np.arange(-15.0, lm["body_bottom"] - 2.0, z_step_mm) + p["z_offset"] * z_step_mm
    px = super_px * p["scale"]
    npx = int(round(600.0 / px))
    grid = Grid.axial(npx * px, npx, -depth)
    vol = paint(ph, grid, Placement(z_vertex=0.0, rotation_deg=p["rotation_deg"]))
    lut = m.hu_lut(p["phase"], p["enhancement"], False)
    hu = lut[vol]
    out, _ = resample_slices(
        hu, (px, px), (float(grid.x[0]), float(grid.y[0])), np.eye(2), centre_jitter_mm=p["centre_jitter_mm"]
    )
    return {"hu": np.rint(out).astype(np.int16), "depth": depth.astype(np.float32), "landmarks": lm, "params": p}
