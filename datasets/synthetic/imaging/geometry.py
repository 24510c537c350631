"""Parametric shapes evaluated on an image grid, and the painter that turns them into a volume.

Why this shape: a full CT exam is 512 x 512 x 300 voxels and must render in a few seconds,
so every shape is evaluated only inside its own bounding box, in z-chunks, with in-plane
coordinates kept as broadcastable 1-D rows/columns when the patient is not rotated (the
common case): an ellipsoid over its box then costs two small outer sums and one compare.

Coordinates (DICOM patient, LPS): +x = patient left, +y = posterior, +z = superior. Shapes
live in the *phantom frame* (x, y, d) where d is the depth below the vertex in mm
(d = z_vertex - z), so the anatomy is written top-down. A :class:`Placement` puts the
phantom into the scanner: vertex height, in-plane shift (table position, off-centre) and a
rotation about the long axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

F = np.float32
INF = 1e9


@dataclass
class Grid:
    """Voxel centres in patient coordinates (mm): columns ``x``, rows ``y``, slices ``z``."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    @classmethod
    def axial(cls, fov_mm: float, n: int, z: np.ndarray, centre: tuple[float, float] = (0.0, 0.0)) -> Grid:
        """Square axial grid of ``n`` x ``n`` pixels over ``fov_mm``, centred on ``centre``."""
        step = fov_mm / n
        offs = (np.arange(n, dtype=np.float64) - (n - 1) / 2) * step
        return cls(x=(centre[0] + offs).astype(F), y=(centre[1] + offs).astype(F), z=np.asarray(z, dtype=F))

    @property
    def spacing(self) -> tuple[float, float]:
        return (float(self.y[1] - self.y[0]) if len(self.y) > 1 else 1.0, float(self.x[1] - self.x[0]) if len(self.x) > 1 else 1.0)


@dataclass
class Placement:
    """Where the phantom lies in the scanner: vertex z, in-plane shift, rotation about z (deg)."""

    z_vertex: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    rotation_deg: float = 0.0

    def to_world(self, x: float, y: float, d: float) -> tuple[float, float, float]:
        c, s = math.cos(math.radians(self.rotation_deg)), math.sin(math.radians(self.rotation_deg))
        return (c * x - s * y + self.shift_x, s * x + c * y + self.shift_y, self.z_vertex - d)


# --------------------------------------------------------------------------------------- shapes


@dataclass
class Shape:
    """A solid in the phantom frame. ``mask`` receives broadcastable X, Y (in-plane) and D arrays."""

    def bbox(self) -> tuple[float, float, float, float, float, float]:  # x0, x1, y0, y1, d0, d1
        raise NotImplementedError

    def mask(self, X: np.ndarray, Y: np.ndarray, D: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __and__(self, other: Shape) -> Shape:
        return Intersect(self, other)

    def __sub__(self, other: Shape) -> Shape:
        return Subtract(self, other)


def _rot(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    u, v = X - F(cx), Y - F(cy)
    if angle_deg:
        c, s = F(math.cos(math.radians(angle_deg))), F(math.sin(math.radians(angle_deg)))
        u, v = c * u + s * v, -s * u + c * v
    return u, v


@dataclass
class Ellipsoid(Shape):
    """(Super)ellipsoid; ``angle`` rotates it in the axial plane; ``p`` > 2 squares it off."""

    c: tuple[float, float, float]
    r: tuple[float, float, float]
    angle: float = 0.0
    p: float = 2.0

    def bbox(self):  # type: ignore[no-untyped-def]
        cx, cy, cd = self.c
        rx, ry, rd = self.r
        if self.angle:
            rr = max(rx, ry)
            return (cx - rr, cx + rr, cy - rr, cy + rr, cd - rd, cd + rd)
        return (cx - rx, cx + rx, cy - ry, cy + ry, cd - rd, cd + rd)

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        u, v = _rot(X, Y, self.c[0], self.c[1], self.angle)
        w = (D - F(self.c[2])) / F(self.r[2])
        if self.p == 2.0:
            return (u / F(self.r[0])) ** 2 + (v / F(self.r[1])) ** 2 + w**2 <= 1
        p = F(self.p)
        return np.abs(u / F(self.r[0])) ** p + np.abs(v / F(self.r[1])) ** p + np.abs(w) ** p <= 1


@dataclass
class Tube(Shape):
    """A generalised elliptic cylinder along d: centre, radii and squareness interpolated at knots.

    Used for the body outline, airway, vessels and the thoracic/abdominal cavities, whose
    cross-sections change smoothly from head to pelvis.
    """

    d: list[float]
    cx: list[float]
    cy: list[float]
    rx: list[float]
    ry: list[float]
    p: list[float] | None = None

    def bbox(self):  # type: ignore[no-untyped-def]
        cx, cy, rx, ry = map(np.asarray, (self.cx, self.cy, self.rx, self.ry))
        return (float((cx - rx).min()), float((cx + rx).max()), float((cy - ry).min()), float((cy + ry).max()), self.d[0], self.d[-1])

    def params(self, D: np.ndarray) -> tuple[np.ndarray, ...]:
        d = D.reshape(-1)
        out = [np.interp(d, self.d, k).astype(F).reshape(-1, 1, 1) for k in (self.cx, self.cy, self.rx, self.ry)]
        p = np.interp(d, self.d, self.p).astype(F).reshape(-1, 1, 1) if self.p else None
        return (*out, p)  # type: ignore[return-value]

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        cx, cy, rx, ry, p = self.params(D)
        inside_d = (D >= F(self.d[0])) & (D <= F(self.d[-1]))
        if p is None:
            m = ((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 <= 1
        else:
            m = np.abs((X - cx) / rx) ** p + np.abs((Y - cy) / ry) ** p <= 1
        return m & inside_d


@dataclass
class Capsule(Shape):
    """All points within ``r`` of the segment a-b (bones, vessels, wires)."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    r: float
    r_b: float | None = None  # taper: radius at b

    def bbox(self):  # type: ignore[no-untyped-def]
        r = max(self.r, self.r_b or 0)
        lo = [min(p, q) - r for p, q in zip(self.a, self.b, strict=True)]
        hi = [max(p, q) + r for p, q in zip(self.a, self.b, strict=True)]
        return (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        ax, ay, ad = (F(v) for v in self.a)
        bx, by, bd = (F(v) for v in self.b)
        vx, vy, vd = bx - ax, by - ay, bd - ad
        ll = vx * vx + vy * vy + vd * vd or F(1e-6)
        px, py, pd = X - ax, Y - ay, D - ad
        t = np.clip((px * vx + py * vy + pd * vd) / ll, 0, 1)
        dist2 = (px - t * vx) ** 2 + (py - t * vy) ** 2 + (pd - t * vd) ** 2
        if self.r_b is None:
            return dist2 <= F(self.r * self.r)
        rad = F(self.r) + (F(self.r_b) - F(self.r)) * t
        return dist2 <= rad * rad


@dataclass
class Box(Shape):
    """Axis-aligned box (optionally rotated in the axial plane about its centre)."""

    c: tuple[float, float, float]
    half: tuple[float, float, float]
    angle: float = 0.0

    def bbox(self):  # type: ignore[no-untyped-def]
        cx, cy, cd = self.c
        hx, hy, hd = self.half
        if self.angle:
            rr = math.hypot(hx, hy)
            return (cx - rr, cx + rr, cy - rr, cy + rr, cd - hd, cd + hd)
        return (cx - hx, cx + hx, cy - hy, cy + hy, cd - hd, cd + hd)

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        u, v = _rot(X, Y, self.c[0], self.c[1], self.angle)
        return (np.abs(u) <= F(self.half[0])) & (np.abs(v) <= F(self.half[1])) & (np.abs(D - F(self.c[2])) <= F(self.half[2]))


@dataclass
class Dome(Shape):
    """The half-space below (``below=True``) or above a paraboloid dome d = top + k * rho^2.

    The diaphragm: lungs lie above it, liver/spleen/stomach below; rho is the normalised
    in-plane distance from the dome apex, so the costophrenic recesses reach ``top + k``.
    """

    cx: float
    cy: float
    top: float
    k: float
    rx: float
    ry: float
    below: bool = True

    def bbox(self):  # type: ignore[no-untyped-def]
        return (-INF, INF, -INF, INF, -INF, INF)

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        rho2 = ((X - F(self.cx)) / F(self.rx)) ** 2 + ((Y - F(self.cy)) / F(self.ry)) ** 2
        surface = F(self.top) + F(self.k) * np.minimum(rho2, F(1.6))
        return D >= surface if self.below else D < surface


@dataclass
class Intersect(Shape):
    a: Shape
    b: Shape

    def bbox(self):  # type: ignore[no-untyped-def]
        p, q = self.a.bbox(), self.b.bbox()
        return (max(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), min(p[3], q[3]), max(p[4], q[4]), min(p[5], q[5]))

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        return self.a.mask(X, Y, D) & self.b.mask(X, Y, D)


@dataclass
class Subtract(Shape):
    a: Shape
    b: Shape

    def bbox(self):  # type: ignore[no-untyped-def]
        return self.a.bbox()

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        return self.a.mask(X, Y, D) & ~self.b.mask(X, Y, D)


@dataclass
class Ribs(Shape):
    """Paired ribs as curved bands on an elliptic rib-cage wall that widens downwards.

    Rib k leaves its vertebra at depth ``d_post[k]`` and descends by ``drop[k]`` towards its
    anterior end; in a voxel, the angle around the cage and the depth give a fractional rib
    index, and bone is where that index is close to an integer and the voxel lies in the wall.
    """

    cy: float  # cage centre (y); x centre is 0
    cage_d: list[float]  # knots
    cage_rx: list[float]
    cage_ry: list[float]
    d_post: list[float]  # posterior depth of each rib (top to bottom)
    drop: list[float]  # how far each rib descends from back to front (mm)
    extent: list[float]  # angular extent from the spine (rad, up to pi = sternum)
    thickness: float = 9.0  # cranio-caudal height of a rib (mm)
    depth: float = 11.0  # radial thickness of the rib (mm)
    start: float = 0.35  # rib starts this angle (rad) away from the posterior midline

    def bbox(self):  # type: ignore[no-untyped-def]
        rx, ry = max(self.cage_rx) + self.depth, max(self.cage_ry) + self.depth
        return (-rx, rx, self.cy - ry, self.cy + ry, self.d_post[0] - 10, max(np.add(self.d_post, self.drop)) + 10)

    def rib_depth(self, k: int, phi: float) -> float:
        """Depth of rib k's centre line at angle phi (0 = posterior midline, pi = anterior)."""
        return float(self.d_post[k] + self.drop[k] * (1 - math.cos(min(phi, math.pi))) / 2)

    def mask(self, X, Y, D):  # type: ignore[no-untyped-def]
        Xb, Yb = np.broadcast_arrays(X, Y)
        phi = np.abs(np.arctan2(Xb, Yb - F(self.cy)))  # 0 at the back, pi at the front
        d = D.reshape(-1)
        rx = np.interp(d, self.cage_d, self.cage_rx).astype(F).reshape(-1, 1, 1)
        ry = np.interp(d, self.cage_d, self.cage_ry).astype(F).reshape(-1, 1, 1)
        rho = np.sqrt((Xb / rx) ** 2 + ((Yb - F(self.cy)) / ry) ** 2)
        radial = (rho - 1) * (rx + ry) / 2
        wall = (radial >= -self.depth / 2) & (radial <= self.depth / 2)
        shape = np.broadcast_shapes(wall.shape, D.shape)
        out = np.zeros(shape, dtype=bool)
        if not wall.any():
            return out
        idx = np.nonzero(np.broadcast_to(wall, shape))
        ph = np.broadcast_to(phi, shape)[idx]
        dd = np.broadcast_to(D, shape)[idx]
        hit = np.zeros(len(dd), dtype=bool)
        half_cos = (1 - np.cos(ph)) / 2
        for k in range(len(self.d_post)):
            centre = F(self.d_post[k]) + F(self.drop[k]) * half_cos
            hit |= (np.abs(dd - centre) <= self.thickness / 2) & (ph >= self.start) & (ph <= self.extent[k])
        out[tuple(i[hit] for i in idx)] = True
        return out


# -------------------------------------------------------------------------------------- painting


@dataclass
class PaintOp:
    shape: Shape
    material: int


@dataclass
class Phantom:
    """A list of paint operations (later ones win) plus named landmarks (depth, mm)."""

    ops: list[PaintOp] = field(default_factory=list)
    landmarks: dict[str, float] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def add(self, shape: Shape, material: int) -> None:
        self.ops.append(PaintOp(shape, material))

    def bbox_array(self) -> np.ndarray:
        """Bounding boxes of all operations (n x 6), cached until an operation is added."""
        cached = getattr(self, "_boxes", None)
        if cached is None or len(cached) != len(self.ops):
            cached = np.array([op.shape.bbox() for op in self.ops], dtype=np.float64).reshape(-1, 6)
            self._boxes = cached
        return cached


def _index_ranges(coords: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`_index_range` for many [lo, hi] intervals at once."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    c = coords.astype(np.float64)
    if c[0] <= c[-1]:
        return np.searchsorted(c, lo, "left"), np.searchsorted(c, hi, "right")
    rev = c[::-1]
    n = len(c)
    return n - np.searchsorted(rev, hi, "right"), n - np.searchsorted(rev, lo, "left")


def _index_range(coords: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """Indices [i0, i1) of sorted-or-reversed ``coords`` falling within [lo, hi]."""
    if coords[0] <= coords[-1]:
        return int(np.searchsorted(coords, lo, "left")), int(np.searchsorted(coords, hi, "right"))
    rev = coords[::-1]
    n = len(coords)
    return n - int(np.searchsorted(rev, hi, "right")), n - int(np.searchsorted(rev, lo, "left"))


def paint(phantom: Phantom, grid: Grid, placement: Placement, chunk: int = 48) -> np.ndarray:
    """Evaluate the phantom on ``grid``: a uint8 material volume (z, y, x).

    Each shape's index window is found once (its bounding box on the grid), then shapes are
    evaluated chunk by chunk in z so the temporaries stay small for 512 x 512 x 300 grids.
    """
    nz, ny, nx = grid.shape
    vol = np.zeros((nz, ny, nx), dtype=np.uint8)
    theta = math.radians(placement.rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    rotated = abs(placement.rotation_deg) > 1e-6
    gx = grid.x.astype(F) - F(placement.shift_x)
    gy = grid.y.astype(F) - F(placement.shift_y)
    depth = (F(placement.z_vertex) - grid.z.astype(F)).astype(F)
    boxes = phantom.bbox_array()
    k0s, k1s = _index_ranges(depth, boxes[:, 4], boxes[:, 5])
    if rotated:
        xs = np.stack([c * boxes[:, i] - s * boxes[:, j] for i in (0, 1) for j in (2, 3)], axis=1)
        ys = np.stack([s * boxes[:, i] + c * boxes[:, j] for i in (0, 1) for j in (2, 3)], axis=1)
        i0s, i1s = _index_ranges(gx, xs.min(axis=1), xs.max(axis=1))
        j0s, j1s = _index_ranges(gy, ys.min(axis=1), ys.max(axis=1))
    else:
        i0s, i1s = _index_ranges(gx, boxes[:, 0], boxes[:, 1])
        j0s, j1s = _index_ranges(gy, boxes[:, 2], boxes[:, 3])
    keep = np.nonzero((k1s > k0s) & (i1s > i0s) & (j1s > j0s))[0]
    windows = [(phantom.ops[n], int(k0s[n]), int(k1s[n]), int(j0s[n]), int(j1s[n]), int(i0s[n]), int(i1s[n])) for n in keep]
    for z0 in range(0, nz, chunk):
        z1 = min(nz, z0 + chunk)
        for op, k0, k1, j0, j1, i0, i1 in windows:
            a, b = max(k0, z0), min(k1, z1)
            if b <= a:
                continue
            D = depth[a:b].reshape(-1, 1, 1)
            if rotated:
                wx = gx[i0:i1].reshape(1, 1, -1)
                wy = gy[j0:j1].reshape(1, -1, 1)
                X = F(c) * wx + F(s) * wy
                Y = -F(s) * wx + F(c) * wy
            else:
                X = gx[i0:i1].reshape(1, 1, -1)
                Y = gy[j0:j1].reshape(1, -1, 1)
            m = op.shape.mask(X, Y, D)
            target = vol[a:b, j0:j1, i0:i1]
            target[np.broadcast_to(m, target.shape)] = op.material
    return vol


def depth_extent(shape: Shape, step_xy: float = 2.5, step_d: float = 0.5) -> tuple[float, float]:
    """Smallest and largest depth a shape reaches, evaluated on a coarse grid over its box.

    Landmarks such as the lung apex and base come from composite shapes (a tube cut by the
    diaphragm dome) with no closed form; this finds them to within ``step_d``.
    """
    x0, x1, y0, y1, d0, d1 = shape.bbox()
    X = np.arange(x0, x1 + step_xy, step_xy, dtype=F).reshape(1, 1, -1)
    Y = np.arange(y0, y1 + step_xy, step_xy, dtype=F).reshape(1, -1, 1)
    D = np.arange(d0, d1 + step_d, step_d, dtype=F).reshape(-1, 1, 1)
    hits = np.nonzero(np.broadcast_to(shape.mask(X, Y, D), (len(D.reshape(-1)), Y.size, X.size)).any(axis=(1, 2)))[0]
    if len(hits) == 0:
        return (float("nan"), float("nan"))
    d = D.reshape(-1)
    return (float(d[hits[0]]), float(d[hits[-1]]))
