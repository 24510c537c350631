"""CT exams: acquisitions over the body phantom, reconstructions, derived series, dose.

An *acquisition* is one helical scan: a depth range of the phantom sampled on a master
grid of thin slices (1 mm class at full size). Every reconstruction of it is computed
from that grid: thin and thick axials per kernel, MPR/MIP/VR, spectral maps, so the
series of an exam agree with each other the way a scanner's do. Pixels are made slice by
slice when the writer asks for them; only the material volume (uint8) and one blurred
soft-kernel volume per contrast phase (int16) are held in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ..spec import SeriesRole
from .anatomy import Materials, anatomy, region_of_depth, structure_ids, structure_names
from .context import ExamContext, PendingDefect, protocols, resolve_landmark, vendor_private
from .defects import body_centroid_mm, edge_sharpness, motion_double, motion_streaks, roi_sd, streak_pattern
from .geometry import Box, Capsule, Ellipsoid, Grid, Phantom, Placement, Shape, paint
from .image_ops import NoiseSource, blur2d, burn_text
from .phantom_body import Habitus, build_body, draw_habitus, vertebra_table
from .phantom_knee import KNEE_EXTENT_MM, build_knee
from .series import (
    AXIAL,
    CORONAL,
    CT_IMAGE,
    SAGITTAL,
    SC_IMAGE,
    ImageOut,
    LazyImages,
    SeriesOut,
    describe,
    fmt_thk,
    words,
)

F = np.float32
MU_WATER = 0.0195  # 1/mm at ~70 keV effective
EXCLUDED_FROM_BODY = {"table", "foreign_object"}
#: Named landmarks reported per acquisition (vertebral levels are reported separately).
NAMED_LANDMARKS = ("vertex", "skull_base", "foramen_magnum", "lung_apex", "aortic_arch", "carina", "diaphragm_dome", "lung_base", "lower_renal_pole", "iliac_crest", "pubic_symphysis", "body_bottom")
ORGAN_TISSUES = {"liver", "spleen", "kidney", "pancreas", "muscle", "soft_tissue", "myocardium", "fat"}


@dataclass
class Acquisition:
    index: int
    regions: list[str]
    d_start: float
    d_end: float
    nominal: tuple[float, float]
    fov: float
    matrix: int
    thin_mm: float
    placement: Placement
    grid: Grid
    kvp: int
    ctdi: float
    frame_uid: str
    vol: np.ndarray | None = None
    labels: np.ndarray | None = None
    truth: dict[str, Any] = field(default_factory=dict)
    soft: dict[str, np.ndarray] = field(default_factory=dict)
    motion: dict[str, Any] | None = None
    metal_slices: dict[int, np.ndarray] = field(default_factory=dict)
    truncation: dict[str, Any] | None = None

    @property
    def depth(self) -> np.ndarray:
        return self.placement.z_vertex - self.grid.z.astype(np.float64)

    @property
    def dz(self) -> float:
        return float(abs(self.grid.z[1] - self.grid.z[0])) if len(self.grid.z) > 1 else self.thin_mm


class CTRenderer:
    def __init__(self, ctx: ExamContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.rng = ctx.rng("ct")
        self.prot = protocols()["ct"]
        self.sizes = ctx.size_table
        arng = ctx.rng("anatomy")
        self.habitus: Habitus = draw_habitus(arng, self.spec.sex, self.spec.age)
        self.m = Materials()
        self.regions = list(self.spec.regions)
        self.knee = "knee" in self.regions
        if self.knee and len(self.regions) > 1:
            # one phantom per exam: a knee beside body regions is not rendered (and says so)
            self.regions = [r for r in self.regions if r != "knee"]
            self.knee = False
            ctx.measurements["regions_not_rendered"] = ["knee"]
            ctx.notes.append("CT knee combined with body regions: knee not rendered")
        if self.knee:
            side = str(self.spec.header.get("Laterality") or ("R" if arng.random() < 0.5 else "L"))
            self.phantom = build_knee(self.m, side, arng)
            self.laterality: str | None = side
        else:
            self.phantom = build_body(self.habitus, self.m, with_table=True, rng=arng)
            self.laterality = None
        for i, (_, tissue) in enumerate(self.m.pairs):
            if tissue in ORGAN_TISSUES:
                self.m.hu_offset[i] = float(arng.normal(0, 3.0))
        self.enhancement = float(arng.uniform(0.85, 1.15))
        self.unenhanced = bool(self.spec.evidence.get("contrast_absent") or self.spec.evidence.get("unenhanced"))
        self.rescale = dict(ctx.vendor["rescale"])
        self.padding_hu = ctx.vendor.get("padding_hu")
        self.noise_factor = 1.0
        self.blur_mm = 0.0
        self.window_defect: dict[str, Any] | None = None
        self.series: list[SeriesOut] = []
        self.dose_rows: list[dict[str, Any]] = []
        self.ecg = bool(self.spec.evidence.get("ecg_gating"))
        self.spectral = bool(self.spec.evidence.get("spectral"))
        if self.spectral and not ctx.model.get("spectral") and not self.spec.header.get("ManufacturerModelName"):
            capable = [m for m in ctx.vendor["models"]["CT"] if m.get("spectral")]
            if capable:
                ctx.model = dict(capable[0])
        self.measure: dict[str, Any] = {"noise_sd_hu": {}, "vessel_hu": {}, "sharpness": {}}

    # ------------------------------------------------------------------ planning
    def landmarks(self) -> dict[str, float]:
        return self.phantom.landmarks

    def standard_range(self, region: str) -> tuple[float, float]:
        start_lm, start_m, end_lm, end_m = anatomy()["ct_ranges"][region]
        lm = self.landmarks()
        j = self.rng.normal(0, 3, size=2)
        return lm[start_lm] - start_m + float(j[0]), lm[end_lm] + end_m + float(j[1])

    def plan(self) -> list[Acquisition]:
        spec = self.spec
        if spec.acquisition == "one_acquisition" or len(self.regions) == 1:
            groups = [list(self.regions)]
        else:
            groups = [[r] for r in self.regions]
        acqs = []
        z_vertex = float(self.rng.uniform(120, 320))
        for i, regions in enumerate(groups):
            ranges = [self.standard_range(r) for r in regions]
            d0, d1 = min(r[0] for r in ranges), max(r[1] for r in ranges)
            fov_lo, fov_hi = self.prot["fov_mm"][regions[0]]
            if len(regions) > 1:
                fov_lo, fov_hi = max(self.prot["fov_mm"][r][0] for r in regions), max(self.prot["fov_mm"][r][1] for r in regions)
            body_width = 2 * (175 * self.habitus.width + self.habitus.fat_mm) if regions[0] not in ("head", "neck", "cervical_spine") else 0
            fov = float(self.rng.uniform(fov_lo, fov_hi))
            if regions[0] in ("chest", "abdomen", "pelvis") or len(regions) > 1:
                fov = max(fov, body_width + 20)
            matrix = int(self.rng.choice(self.sizes["ct_matrix"]))
            thin = float(self.rng.choice(self.prot["thin_mm"]))
            if regions[0] == "head":
                thin = float(self.rng.choice([0.625, 1.0, 1.25]))
            asked = [float(r.params["thickness_mm"]) for r in self.spec.series if r.role.startswith("axial_") and r.role.endswith("_thin") and r.params.get("thickness_mm")]
            if asked:
                thin = min(asked)  # the thinnest requested reconstruction sets the master grid
            kvp = 120 if regions[0] == "head" else int(self.rng.choice(self.prot["kvp"]["default"]))
            ref = max(self.prot["ctdi_ref"][r] for r in regions)
            ctdi = ref * float(self.rng.uniform(0.45, 0.95)) * (self.habitus.width**2 if regions[0] != "head" else 1.0)
            # table position: the body centroid lands near the isocentre, within a normal spread
            c0 = self._phantom_centroid(d0, d1)
            want = (float(np.clip(self.rng.normal(0, 5), -12, 12)), float(np.clip(self.rng.normal(0, 8), -18, 18)))
            placement = Placement(z_vertex=z_vertex, shift_x=want[0] - c0[0], shift_y=want[1] - c0[1])
            acq = Acquisition(i, regions, d0, d1, (d0, d1), fov, matrix, thin, placement, Grid(np.zeros(1, F), np.zeros(1, F), np.zeros(1, F)), kvp, ctdi, self.ctx.uid("frame", i))
            acqs.append(acq)
        self._plan_defects(acqs)
        for acq in acqs:
            self._grid(acq)
        # objects are placed once the slices are known: each must show in the primary scan
        self._metal(acqs)
        self._foreign(acqs)
        return acqs

    def _phantom_centroid(self, d0: float, d1: float) -> tuple[float, float]:
        """Body centroid (x, y) of the unshifted phantom over a depth range, on a coarse grid."""
        key = (round(d0), round(d1))
        cache = self.__dict__.setdefault("_centroids", {})
        if key not in cache:
            z = -np.linspace(d0, d1, num=12)
            grid = Grid.axial(600.0, 100, z)
            labels = self.m.label_lut()[paint(self.phantom, grid, Placement())]
            c = body_centroid_mm(self._body_mask(labels), grid.x.astype(np.float64), grid.y.astype(np.float64))
            cache[key] = c or (0.0, 0.0)
        return cache[key]

    def _grid(self, acq: Acquisition) -> None:
        length = acq.d_end - acq.d_start
        n = int(round(length / acq.thin_mm)) + 1
        n = max(4, min(n, int(self.sizes["ct_max_slices"])))
        dz = length / (n - 1)
        if self.spec.size == "full":
            dz = acq.thin_mm
            n = int(round(length / dz)) + 1
        z_top = acq.placement.z_vertex - acq.d_start
        z = z_top - np.arange(n) * dz
        centre = (0.0, 0.0)
        if acq.regions[0] in ("cervical_spine", "thoracic_spine", "lumbar_spine") and not self.knee:
            # targeted reconstruction: the small spine FOV is centred on the vertebral bodies
            mid = (acq.d_start + acq.d_end) / 2
            vert = min(vertebra_table(self.habitus), key=lambda v: abs(float(v["centre"]) - mid))
            centre = (acq.placement.shift_x, float(vert["cy"]) + 15.0 + acq.placement.shift_y)
        acq.grid = Grid.axial(acq.fov, acq.matrix, z, centre=centre)
        acq.truth["reconstruction_centre_mm"] = [round(centre[0], 1), round(centre[1], 1)]
        acq.d_end = acq.d_start + (n - 1) * dz

    def _plan_defects(self, acqs: list[Acquisition]) -> None:
        ctx = self.ctx
        for p in ctx.pending("range_too_small"):
            self._range_small(p, acqs)
        for p in ctx.pending("range_too_large"):
            self._range_large(p, acqs)
        for p in ctx.pending("off_centre"):
            direction = p.params["direction"]
            if direction not in ("left", "right", "up", "down"):
                raise ValueError(f"off_centre direction {direction!r}: expected left, right, up or down (image display terms)")
            mm = float(p.params.get("offset_mm") or self.rng.uniform(35, 70))
            dx, dy = {"left": (-mm, 0.0), "right": (mm, 0.0), "up": (0.0, -mm), "down": (0.0, mm)}[direction]
            for acq in acqs:
                c0 = self._phantom_centroid(acq.d_start, acq.d_end)
                acq.placement.shift_x = dx - c0[0] + (0.0 if dx else float(self.rng.normal(0, 2)))
                acq.placement.shift_y = dy - c0[1] + (0.0 if dy else float(self.rng.normal(0, 2)))
            self._off_centre_pending = (p, direction, mm)
        for p in ctx.pending("patient_rotation"):
            deg = float(p.params.get("degrees") or self.rng.uniform(8, 15) * (1 if self.rng.random() < 0.5 else -1))
            for acq in acqs:
                acq.placement.rotation_deg = deg
            ctx.record(p, degrees=deg, axis="z")
        for p in ctx.pending("truncation"):
            for acq in acqs:
                width = 2 * (175 * self.habitus.width + self.habitus.fat_mm)
                acq.fov = float(min(acq.fov, width * float(p.params.get("fov_fraction", self.rng.uniform(0.78, 0.88)))))
            self._truncation_pending = p
        for p in ctx.pending("dose_above_reference"):
            factor = float(p.params.get("factor") or self.rng.uniform(1.6, 2.5))
            for acq in acqs:
                ref = max(self.prot["ctdi_ref"][r] for r in acq.regions)
                acq.ctdi = ref * factor
            ctx.record(p, ctdivol_mgy=[round(a.ctdi, 2) for a in acqs], reference_mgy=[max(self.prot["ctdi_ref"][r] for r in a.regions) for a in acqs], factor=factor)
        for p in ctx.pending("excess_noise"):
            self.noise_factor = float(p.params.get("factor") or self.rng.uniform(2.2, 3.2))
            self._noise_pending = p
        for p in ctx.pending("blur"):
            self.blur_mm = float(p.params.get("sigma_mm") or self.rng.uniform(1.2, 2.2))
            self._blur_pending = p
        for p in ctx.pending("window_wrong", "window_missing"):
            mode = p.params.get("mode") or ("missing" if p.kind == "window_missing" else "wrong")
            self.window_defect = {"pending": p, "mode": mode, "series": []}

    def _range_small(self, p: PendingDefect, acqs: list[Acquisition]) -> None:
        lm = self.landmarks()
        missing = p.params.get("missing")
        acq = acqs[0]
        if not missing:
            end_lm = anatomy()["ct_ranges"][acq.regions[-1]][2]
            missing = [end_lm]
        cut = float(p.params.get("cut_mm") or self.rng.uniform(20, 45))
        applied = []
        for requested in missing:
            name = resolve_landmark(str(requested), lm)
            if name is None:
                continue
            target = next((a for a in acqs if a.d_start - 40 <= lm[name] <= a.d_end + 40), acq)
            mid = (target.nominal[0] + target.nominal[1]) / 2
            end = p.params.get("end") or ("bottom" if lm[name] >= mid else "top")
            if end == "bottom":
                target.d_end = min(target.d_end, lm[name] - cut)
            else:
                target.d_start = max(target.d_start, lm[name] + cut)
            applied.append(name)
        if not applied:
            self.ctx.skip(p, f"landmarks {missing} unknown to the phantom")
            return
        self._range_pending = getattr(self, "_range_pending", []) + [(p, "small", applied, cut)]

    def _range_large(self, p: PendingDefect, acqs: list[Acquisition]) -> None:
        excess = float(p.params.get("excess_mm") or self.rng.uniform(50, 110))
        side = p.params.get("side") or ("inferior" if self.rng.random() < 0.6 else "superior")
        acq = acqs[-1] if side == "inferior" else acqs[0]
        # The phantom's ends: the body's are the vertex (depth 0) and its bottom; the knee's are
        # +-KNEE_EXTENT_MM around the joint line (clamping a knee at depth -5 cut the femur off
        # instead of extending the scan: a "过大" knee that was 75 mm long).
        top, bottom = ((-KNEE_EXTENT_MM + 5, KNEE_EXTENT_MM - 5) if self.knee
                       else (-5.0, self.landmarks().get("body_bottom", 1e9) - 5))
        if side in ("inferior", "both"):
            acq.d_end = min(acq.d_end + excess, bottom)
        if side in ("superior", "both"):
            acq.d_start = max(acq.d_start - excess, top)
        self._range_pending = getattr(self, "_range_pending", []) + [(p, "large", side, excess)]

    def _visible_voxels(self, shapes: list[Shape], acq: Acquisition) -> int:
        """Voxels the shapes occupy on the acquisition's grid (the slices that are reconstructed)."""
        probe = Phantom()
        for sh in shapes:
            probe.add(sh, 1)
        return int(paint(probe, acq.grid, acq.placement).sum())

    def _snap_depth(self, d: float, acq: Acquisition, margin: float = 0.0) -> float:
        """The reconstructed slice depth nearest ``d`` inside the scanned range (less ``margin``).

        Small sets have 24 slices over the whole range (10-15 mm apart): an object a few mm
        thick placed between two slices would be in the truth but in no image.
        """
        depth = acq.depth
        lo, hi = float(depth.min()) + margin, float(depth.max()) - margin
        if lo > hi:
            lo = hi = float(np.median(depth))
        inside = depth[(depth >= lo) & (depth <= hi)]
        pool = inside if len(inside) else depth
        return float(pool[int(np.argmin(np.abs(pool - min(max(d, lo), hi))))])

    def _place(self, candidates: list[tuple[str, Any]], acq: Acquisition) -> tuple[str, list[Shape], int] | None:
        """The first candidate (name, (depth -> shapes, natural depth, margin)) that shows in ``acq``.

        A negative margin marks an object bound to its anatomy (teeth, hair, neck): it is used
        only when its natural depth lies in the scanned range, never moved into another region.
        """
        for what, (make, natural, margin) in candidates:
            lo, hi = float(acq.depth.min()), float(acq.depth.max())
            if margin < 0 and not (lo <= natural <= hi):
                continue
            # the natural depth (brought inside the range) first: an object spanning several
            # slices keeps its extent; snapped onto the nearest slice only when it shows in none
            m = max(margin, 0.0)
            inside = min(max(natural, lo + m), hi - m) if lo + m <= hi - m else (lo + hi) / 2
            for d in (inside, self._snap_depth(natural, acq, m)):
                shapes = make(d)
                n = self._visible_voxels(shapes, acq)
                if n > 0:
                    return what, shapes, n
        return None

    def _metal(self, acqs: list[Acquisition]) -> None:
        acq = acqs[0]
        for p in self.ctx.pending("metal"):
            region = p.params.get("location") or acq.regions[0]
            sx, sd = self.habitus.width, self.habitus.height
            lm = self.landmarks()
            mid = (acq.d_start + acq.d_end) / 2
            cands: list[tuple[str, Any]] = []
            if self.knee:
                cands.append(("knee prosthesis", (lambda d, sx=sx, sd=sd: [Ellipsoid((0, 6, d), (38, 28, 8)), Capsule((0, 6, d + 18), (0, 8, d + 104), 6.0), Capsule((0, 2, d - 6), (0, 4, d - 96), 6.0)], -14.0, 0.0)))
            elif region in ("pelvis",):
                cands.append(("hip prosthesis", (lambda d, sx=sx, sd=sd: [Ellipsoid((-92 * sx, 0, d), (25, 25, 25)), Capsule((-132 * sx, 8, d + 22 * sd), (-112 * sx, 6, d + 105 * sd), 7.0)], 850 * sd, 0.0)))
            elif region in ("head",):
                # dental fillings only where the scan reaches the teeth; otherwise an aneurysm clip
                cands.append(("dental fillings", (lambda d, sx=sx, sd=sd: [Ellipsoid((side * 22 * sx, -52, d), (5, 5, 4)) for side in (-1, 1)], 190 * sd, -1.0)))
                cands.append(("aneurysm clip", (lambda d, sx=sx, sd=sd: [Capsule((12 * sx, -8, d), (20 * sx, 2, d), 2.5)], lm.get("skull_base", 110 * sd) - 25, 5.0)))
            elif region in ("chest", "neck"):
                cands.append(("pacemaker", (lambda d, sx=sx, sd=sd: [Box((-70 * sx, -95, d), (22, 5, 25)), Capsule((-60 * sx, -80, d), (-10, -20, d + 110 * sd), 1.5)], 330 * sd, 10.0)))
            if region in ("thoracic_spine", "cervical_spine"):
                cands.append(("pedicle screws", (lambda d, sx=sx, sd=sd: [Capsule((side * 14, 62, d), (side * 24, 20, d), 3.0) for side in (-1, 1)], mid, 5.0)))
            if not self.knee:  # the lumbar screws: abdomen and lumbar spine, and every other region's fallback
                l3 = lm.get("L3_center", mid)
                cands.append(("pedicle screws", (lambda d, sx=sx, sd=sd: [Capsule((side * 16, 60, d + dd), (side * 26, 20, d + dd), 3.0) for side in (-1, 1) for dd in (-12, 12)], l3 if acq.d_start <= l3 <= acq.d_end else mid, 5.0)))
            placed = self._place(cands, acq)
            if placed is None:
                self.ctx.skip(p, "no metal implant position inside the scanned range shows in its slices")
                continue
            what, shapes, n = placed
            for sh in shapes:
                self.phantom.add(sh, self.m("metal_implant", "metal"))
            self._metal_pending = (p, what)
            acq.truth["metal_voxels"] = n

    def _scalp_y(self, d: float) -> float:
        """The back of the head's skin at depth ``d`` (the phantom's head superellipsoid, centre
        (0, -5, 110), radii (74, 94, 112) mm scaled by the habitus, p 2.3): a hairpin lies in the hair
        on the scalp, outside the skull (0.1.11; it was drawn at y 60 mm, inside the skull near the vertex)."""
        sy, sd = self.habitus.depth, self.habitus.height
        t = min(abs(d - 110 * sd) / (112 * sd), 0.95)
        return -5 * sy + 94 * sy * (1 - t**2.3) ** (1 / 2.3)

    def _foreign(self, acqs: list[Acquisition]) -> None:
        acq = acqs[0]
        for p in self.ctx.pending("foreign_object"):
            sd = self.habitus.height
            region = acq.regions[0]
            d_mid = (acq.d_start + acq.d_end) / 2
            obj = p.params.get("object")
            ant = -(110 * self.habitus.depth + self.habitus.fat_mm + 2) if not self.knee else -68.0
            back = 105 * self.habitus.depth + self.habitus.fat_mm + 3
            jx, jd = float(self.rng.uniform(-60, 60)), float(self.rng.uniform(-30, 30))
            skin = "ECG electrode" if obj == "ecg_leads" else "button"
            cands: list[tuple[str, Any]] = []
            hairpin = ("hairpin", (lambda d: [Ellipsoid((0, self._scalp_y(d) + 3.5, d), (25, 3, 3))], 40 * sd, 3.0 if region == "head" else -1.0))
            necklace = ("necklace", (lambda d, sd=sd, back=back, jx=jx, ant=ant: [Ellipsoid((float(60 * t), -55 + 12 * t * t, d + 30 * (1 - t * t) * sd), (3.5, 3.5, 3.5)) for t in np.linspace(-1, 1, 13)], 250 * sd, -1.0))
            if region in ("head",) or (obj == "hairpin" and not self.knee):
                cands.append(hairpin)
            if obj == "necklace" and not self.knee:
                cands.append(necklace)
            if obj == "bra_clip":
                cands.append(("bra clip", (lambda d, sd=sd, back=back, jx=jx, ant=ant: [Box((0, back, d), (12, 2, 6))], 420 * sd, -1.0)))
            if region not in ("head",):
                # what is worn on the trunk lies on the skin of the scanned range: front, or the back
                # (a targeted spine reconstruction does not reach the anterior skin)
                cands.append((skin, (lambda d, sd=sd, back=back, jx=jx, ant=ant: [Ellipsoid((jx, ant, d), (11, 3.5, 11))], d_mid + jd, 11.0)))
                cands.append((skin, (lambda d, sd=sd, back=back, jx=jx, ant=ant: [Ellipsoid((jx / 3, back, d), (11, 3.5, 11))], d_mid + jd, 11.0)))
                if not self.knee:
                    cands.append(necklace)  # a neck scan whose skin lies outside the targeted field
            placed = self._place(cands, acq)
            if placed is None:
                self.ctx.skip(p, "no foreign-object position inside the scanned range shows in its slices")
                continue
            what, shapes, n = placed
            for sh in shapes:
                self.phantom.add(sh, self.m("foreign_object", "metal"))
            self._foreign_pending = (p, what)
            acq.truth["foreign_object_voxels"] = n

    # ------------------------------------------------------------------ rendering
    def render(self) -> list[SeriesOut]:
        acqs = self.plan()
        self._acqs = acqs
        lm = self.landmarks()
        label_lut = self.m.label_lut()
        for acq in acqs:
            acq.vol = paint(self.phantom, acq.grid, acq.placement)
            acq.labels = label_lut[acq.vol]
            self._measure_acquisition(acq)
            self._slice_defects(acq)
        self._record_plan_defects(acqs)
        self.ctx.measurements["landmarks_mm"] = {k: round(acqs[0].placement.z_vertex - v, 2) for k, v in lm.items()}
        self.ctx.measurements["landmarks_in_range"] = {str(a.index): a.truth["landmarks_in_range"] for a in acqs}
        self.ctx.measurements["vertebrae_in_range"] = {str(a.index): a.truth["vertebrae_in_range"] for a in acqs}
        self.ctx.measurements["acquisitions"] = [
            {"index": a.index, "regions": a.regions, "z_range_mm": a.truth["z_range_mm"], "depth_range_mm": a.truth["depth_range_mm"], "nominal_depth_range_mm": [round(v, 1) for v in a.nominal], "fov_mm": round(a.fov, 1), "body_centroid_mm": a.truth["body_centroid_mm"], "centroid_offset_mm": a.truth["centroid_offset_mm"], "centroid_offset_fraction": a.truth["centroid_offset_fraction"], "isocentre_offset_mm": a.truth.get("isocentre_offset_mm"), "truncated_slices": a.truth["truncated_slices"], "ctdivol_mgy": round(a.ctdi, 2), "reconstruction_centre_mm": a.truth.get("reconstruction_centre_mm")}
            for a in acqs
        ]
        self.ctx.measurements["landmarks_depth_mm"] = {k: round(v, 2) for k, v in lm.items()}
        self.ctx.measurements["habitus"] = {"height_scale": round(self.habitus.height, 3), "width_scale": round(self.habitus.width, 3), "fat_mm": round(self.habitus.fat_mm, 1)}
        number = 0
        for acq in acqs:
            roles = self._roles(acq)
            if any(r.role == "localizer" for r in roles):
                number += 1
                self._add(self.localizer(acq), number)
            phases = list(self.spec.phases or ["native"])
            made: list[SeriesOut] = []
            for phase in phases:
                for r in roles:
                    if r.role.startswith("axial_") and r.params.get("phase", phase) == phase:
                        number += 1
                        s = self.axial(acq, r, phase)
                        self._add(s, number)
                        made.append(s)
                if self.spectral:
                    for kind in ("mono", "iodine"):
                        number += 1
                        self._add(self.spectral_series(acq, phase, kind), number)
                grid = acq.grid
                self.dose_rows.append({"acquisition": acq.index, "phase": phase, "regions": acq.regions, "ctdivol": round(acq.ctdi, 2), "dlp": round(acq.ctdi * (abs(float(grid.z[0] - grid.z[-1])) + acq.thin_mm) / 10.0, 1), "z_range": [round(float(grid.z[0]), 1), round(float(grid.z[-1]), 1)]})
            # derived series come from the last phase's thinnest soft reconstruction
            last = [s for s in made if s.phase == phases[-1]] or made
            ranked = sorted(last, key=lambda s: (s.kernel_class not in ("soft", "head"), s.thickness or 99))
            source = ranked[0] if ranked else None
            for r in roles:
                if r.role in ("mpr_coronal", "mpr_sagittal", "mip", "vr") and source is not None:
                    number += 1
                    made = self.derived(acq, r, source)
                    for j, s in enumerate(made):
                        self._add(s, number + j)
                    number += len(made) - 1
        self._finish_defects(acqs)
        if not any(p.kind == "dose_not_recorded" for p in self.ctx.defects) and any(r.role == "dose_report" for a in acqs for r in self._roles(a)):
            self._add(self.dose_report(acqs), 999)
        else:
            for p in self.ctx.pending("dose_not_recorded"):
                for s in self.series:
                    s.attrs.pop("CTDIvol", None)
                    s.attrs.pop("CTDIPhantomTypeCodeSequence", None)
                self.ctx.record(p, dose_report_present=False, ctdivol_in_headers=False)
        self.ctx.measurements.update(self.measure)  # filled while the writer runs (on_image hooks)
        return self.series

    def _add(self, s: SeriesOut, number: int) -> None:
        s.series_number = number
        self.series.append(s)

    def _roles(self, acq: Acquisition) -> list[SeriesRole]:
        spec = self.spec
        if spec.series:
            roles = [r for r in spec.series if r.params.get("region") in (None, *acq.regions)]
        else:
            names: list[str] = []
            for reg in acq.regions:
                for n in protocols()["default_series"]["CT"].get(reg, []):
                    if n not in names:
                        names.append(n)
            roles = [SeriesRole(n) for n in names]
        ev = spec.evidence
        if ev.get("thin_slices") is False:
            roles = [r for r in roles if not (r.role.startswith("axial_") and r.role.endswith("_thin"))]
        if ev.get("derived") is False or ev.get("omit_derived"):
            roles = [r for r in roles if r.role not in ("mpr_coronal", "mpr_sagittal", "mip", "vr")]
        return roles

    # ------------------------------------------------------------------ measurements
    def _body_mask(self, labels: np.ndarray) -> np.ndarray:
        ids = structure_ids()
        excluded = np.zeros(256, dtype=bool)
        excluded[0] = True
        for name in EXCLUDED_FROM_BODY:
            excluded[ids[name]] = True
        return ~excluded[labels]

    def _measure_acquisition(self, acq: Acquisition) -> None:
        labels = acq.labels
        assert labels is not None
        body = self._body_mask(labels)
        c = body_centroid_mm(body, acq.grid.x.astype(np.float64), acq.grid.y.astype(np.float64))
        cx, cy = c if c else (0.0, 0.0)
        # image-based centring (what a slice-centroid rule measures): body centroid vs image centre;
        # isocentre offset: the whole body's centroid vs the scanner axis (table centring)
        rc = acq.truth.get("reconstruction_centre_mm", [0.0, 0.0])
        acq.truth["body_centroid_mm"] = {"x": round(cx, 2), "y": round(cy, 2)}
        acq.truth["centroid_offset_mm"] = {"x": round(cx - rc[0], 2), "y": round(cy - rc[1], 2)}
        acq.truth["centroid_offset_fraction"] = round(math.hypot(cx - rc[0], cy - rc[1]) / acq.fov, 4)
        if not self.knee:
            c0 = self._phantom_centroid(acq.d_start, acq.d_end)
            acq.truth["isocentre_offset_mm"] = {"x": round(c0[0] + acq.placement.shift_x, 2), "y": round(c0[1] + acq.placement.shift_y, 2)}
        depth = acq.depth
        acq.truth["slice_regions"] = self.slice_regions(depth)
        acq.truth["z_range_mm"] = [round(float(acq.grid.z[0]), 2), round(float(acq.grid.z[-1]), 2)]
        acq.truth["depth_range_mm"] = [round(float(depth[0]), 2), round(float(depth[-1]), 2)]
        lm = self.landmarks()
        acq.truth["landmarks_in_range"] = [k for k in (*NAMED_LANDMARKS, "knee_top", "joint_line", "knee_bottom") if k in lm and depth[0] <= lm[k] <= depth[-1]]
        acq.truth["vertebrae_in_range"] = [str(v["name"]) for v in self.phantom.extra.get("vertebrae", []) if depth[0] <= float(v["centre"]) <= depth[-1]]  # type: ignore[attr-defined]
        # structures: voxel counts and z extent
        names = structure_names()
        per_slice = np.stack([np.bincount(labels[k].ravel(), minlength=256) for k in range(labels.shape[0])])
        present = per_slice > 0
        voxel_ml = (acq.grid.spacing[0] * acq.grid.spacing[1] * acq.dz) / 1000.0
        for sid in np.nonzero(present.any(axis=0))[0]:
            if sid == 0:
                continue
            name = names.get(int(sid), f"id{sid}")
            rows = np.nonzero(present[:, sid])[0]
            entry = self.ctx.structures.setdefault(name, {"id": int(sid), "voxels": 0, "volume_ml": 0.0, "z_min_mm": 1e9, "z_max_mm": -1e9, "acquisitions": []})
            entry["voxels"] += int(per_slice[:, sid].sum())
            entry["volume_ml"] = round(entry["volume_ml"] + float(per_slice[:, sid].sum()) * voxel_ml, 2)
            zs = acq.grid.z[rows]
            entry["z_min_mm"] = round(min(entry["z_min_mm"], float(zs.min())), 2)
            entry["z_max_mm"] = round(max(entry["z_max_mm"], float(zs.max())), 2)
            entry["acquisitions"].append(acq.index)
        # is the structure cut by the range? (present on the first / last slice)
        acq.truth["cut_at_top"] = [names.get(int(s), str(s)) for s in np.nonzero(present[0])[0] if s and names.get(int(s)) not in ("body", "subcutaneous_fat", "table", "muscle", "visceral_fat")]
        acq.truth["cut_at_bottom"] = [names.get(int(s), str(s)) for s in np.nonzero(present[-1])[0] if s and names.get(int(s)) not in ("body", "subcutaneous_fat", "table", "muscle", "visceral_fat")]
        # truncation: body beyond the reconstruction circle
        nx = acq.grid.shape[2]
        yy, xx = np.mgrid[0:nx, 0:nx]
        r = (nx - 1) / 2
        outside = (yy - r) ** 2 + (xx - r) ** 2 > (r - 1) ** 2
        acq.truth["fov_circle_outside"] = outside
        edge_body = body[:, outside].any(axis=1) if outside.any() else np.zeros(len(depth), bool)
        acq.truth["truncated_slices"] = int(edge_body.sum())

    def _slice_defects(self, acq: Acquisition) -> None:
        """Motion, metal and truncation artifacts, drawn per acquisition."""
        n = acq.grid.shape[0]
        px = acq.fov / acq.matrix
        for p in self.ctx.pending("motion"):
            frac = float(p.params.get("fraction") or self.rng.uniform(0.25, 0.5))
            k0 = int(self.rng.integers(0, max(1, int(n * (1 - frac)))))
            k1 = min(n, k0 + max(1, int(round(n * frac))))
            shift_mm = float(p.params.get("shift_mm") or self.rng.uniform(4, 9))
            angle = float(self.rng.uniform(0, 2 * math.pi))
            acq.motion = {"pending": p, "k0": k0, "k1": k1, "shift_px": (shift_mm * math.sin(angle) / px, shift_mm * math.cos(angle) / px), "shift_mm": shift_mm, "weight": float(self.rng.uniform(0.35, 0.5))}
        if hasattr(self, "_metal_pending") and acq.vol is not None:
            metal_id = self.m.id_of("metal_implant", "metal")
            amp = float(self.rng.uniform(350, 700))
            if metal_id is not None:
                for k in range(n):
                    mk = acq.vol[k] == metal_id
                    if mk.any():
                        ys, xs = np.nonzero(mk)
                        # up to two separate metal centres per slice (left/right objects)
                        left = xs < np.median(xs) - 3
                        centres = [(float(ys.mean()), float(xs.mean()))] if not left.any() or left.all() else [(float(ys[left].mean()), float(xs[left].mean())), (float(ys[~left].mean()), float(xs[~left].mean()))]
                        acq.metal_slices[k] = streak_pattern(mk.shape, centres, amp, self.ctx.rng(f"metal:{acq.index}:{k}"), width_px=max(0.8, 1.0 * 512 / acq.matrix / 2))
            acq.truth["metal_streak_amplitude_hu"] = amp
        if hasattr(self, "_truncation_pending") and acq.truth.get("truncated_slices", 0) > 0:
            # drawn only where the body reaches past the reconstruction circle (a narrow head
            # inside even the reduced field is not truncated: nothing to draw, nothing recorded)
            nx = acq.grid.shape[2]
            r = (nx - 1) / 2
            yy, xx = np.mgrid[0:nx, 0:nx]
            dist_edge = r - np.hypot(yy - r, xx - r)
            rim = np.where(dist_edge >= 0, np.exp(-dist_edge / max(1.5, nx * 0.02)), 0).astype(F)
            acq.truncation = {"slices": acq.truth.get("truncated_slices", 0), "rim": rim * F(float(self.rng.uniform(150, 300)))}

    def _record_plan_defects(self, acqs: list[Acquisition]) -> None:
        ctx, lm = self.ctx, self.landmarks()
        for entry in getattr(self, "_range_pending", []):
            p, kind = entry[0], entry[1]
            acq_truth = [{"acquisition": a.index, "depth_range_mm": a.truth["depth_range_mm"], "nominal_depth_range_mm": [round(v, 1) for v in a.nominal]} for a in acqs]
            if kind == "small":
                missing = [name for name in entry[2] if not any(a.depth[0] <= lm[name] <= a.depth[-1] for a in acqs)]
                beyond = {name: round(min(min(abs(lm[name] - a.depth[0]), abs(lm[name] - a.depth[-1])) for a in acqs), 1) for name in missing}
                ctx.record(p, missing=missing, missing_by_mm=beyond, cut_mm=entry[3], cut_structures_bottom=acqs[0].truth["cut_at_bottom"], cut_structures_top=acqs[0].truth["cut_at_top"], acquisitions=acq_truth)
            else:
                side, excess = entry[2], entry[3]
                outside = {r for a in acqs for r, d in zip(a.truth["slice_regions"], a.depth, strict=True) if d < a.nominal[0] - 1 or d > a.nominal[1] + 1}
                extra_regions = sorted(outside - {self._region_label(r) for a in acqs for r in a.regions})
                ctx.record(p, side=side, excess_mm=round(excess, 1), excess_regions=extra_regions, acquisitions=acq_truth)
        if hasattr(self, "_off_centre_pending"):
            p, direction, mm = self._off_centre_pending
            a = acqs[0]
            c = a.truth["centroid_offset_mm"]
            measured = {"left": -c["x"], "right": c["x"], "up": -c["y"], "down": c["y"]}[direction]
            patient = {"left": "patient_right", "right": "patient_left", "up": "anterior", "down": "posterior"}[direction]
            ctx.record(p, direction_image=direction, direction_patient=patient, offset_mm=round(mm, 1), measured_offset_mm=round(measured, 2), measured_centroid_mm=c, fraction_of_fov=round(abs(measured) / a.fov, 4), offset_fraction=round(abs(measured) / a.fov, 4), fov_mm=round(a.fov, 1))
        if hasattr(self, "_truncation_pending"):
            a = acqs[0]
            if sum(x.truth["truncated_slices"] for x in acqs) == 0:
                ctx.skip(self._truncation_pending, "the body fits inside the reduced reconstruction field: no slice truncated")
            else:
                ctx.record(self._truncation_pending, fov_mm=round(a.fov, 1), truncated_slices=a.truth["truncated_slices"], total_slices=int(a.grid.shape[0]))
        if hasattr(self, "_foreign_pending"):
            p, what = self._foreign_pending
            ctx.record(p, object=what, label="foreign_object", label_id=structure_ids()["foreign_object"], present_in_labels="foreign_object" in ctx.structures, voxels=acqs[0].truth.get("foreign_object_voxels"))

    @staticmethod
    def _region_label(region: str) -> str:
        return {"cervical_spine": "neck", "thoracic_spine": "chest", "lumbar_spine": "abdomen"}.get(region, region)

    def _finish_defects(self, acqs: list[Acquisition]) -> None:
        ctx = self.ctx
        for a in acqs:
            if a.motion:
                ctx.record(a.motion["pending"], slices=[a.motion["k0"], a.motion["k1"]], z_range_mm=[round(float(a.grid.z[a.motion["k0"]]), 1), round(float(a.grid.z[a.motion["k1"] - 1]), 1)], shift_mm=round(a.motion["shift_mm"], 2), ghost_weight=round(a.motion["weight"], 3), acquisition=a.index)
                break
        if hasattr(self, "_metal_pending"):
            p, what = self._metal_pending
            slices = {a.index: sorted(a.metal_slices) for a in acqs}
            ctx.record(p, object=what, slices_with_metal={k: [v[0], v[-1]] if v else [] for k, v in slices.items()}, streak_amplitude_hu=acqs[0].truth.get("metal_streak_amplitude_hu"), voxels=acqs[0].truth.get("metal_voxels"))
        ctx.after_write.append(self._record_measured_defects)
        if self.window_defect:
            wd = self.window_defect
            ctx.record(wd["pending"], mode=wd["mode"], series=wd["series"])
        for p in ctx.pending("thickness_nonstandard", "kernel_nonstandard"):
            ctx.skip(p, "no thick or matching series to alter")
        for p in ctx.pending("recon_series_missing"):
            # planned when F11 dropped the thin series; recorded only if no axial original of the
            # kernel class was written (what the files show), with the axial series that were
            axial = [s for s in self.series if s.role.startswith("axial_")]
            missing = sorted(set(p.params.get("kernel_classes") or ()) - {s.kernel_class for s in axial})
            if missing:
                ctx.record(p, kernel_classes=missing, axial_series=[{"role": s.role, "kernel_class": s.kernel_class, "slice_thickness_mm": s.thickness} for s in axial])
            else:
                ctx.skip(p, "an axial series of that kernel class was written")

    def _record_measured_defects(self) -> None:
        """Noise and blur are labelled with values measured on the written pixels."""
        if hasattr(self, "_noise_pending"):
            self.ctx.record(self._noise_pending, factor=round(self.noise_factor, 3), measured_sd_hu=dict(self.measure["noise_sd_hu"]), expected_normal_sd_hu=self.measure.get("noise_sd_expected_normal"))
        if hasattr(self, "_blur_pending"):
            acq = self._acqs[0]
            self.ctx.record(self._blur_pending, sigma_mm=round(self.blur_mm, 3), sigma_px=round(self.blur_px(acq), 3), sigma_mm_effective=round(self.blur_px(acq) * acq.fov / acq.matrix, 3), measured_sharpness=dict(self.measure["sharpness"]))

    # ------------------------------------------------------------------ pixels
    def _lut(self, phase: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_luts", {})
        if phase not in cache:
            cache[phase] = self.m.hu_lut(phase, self.enhancement, self.unenhanced)
        return cache[phase]

    def raw(self, acq: Acquisition, k: int, phase: str) -> np.ndarray:
        """Object HU of slice k with acquisition artifacts (motion, metal), before the kernel."""
        assert acq.vol is not None
        img = self._lut(phase)[acq.vol[k]]
        if acq.motion and acq.motion["k0"] <= k < acq.motion["k1"]:
            img = motion_double(img, acq.motion["shift_px"], acq.motion["weight"])
            img += motion_streaks(img.shape, self.ctx.rng(f"motion:{acq.index}:{k}"), 60.0 * acq.motion["weight"])
        if k in acq.metal_slices:
            img = img + acq.metal_slices[k]
        if acq.truncation is not None:
            # truncation: missing projection data raise the values next to the FOV edge inside the body
            img = img + acq.truncation["rim"] * (acq.vol[k] != 0)
        if self.blur_mm:
            img = blur2d(img, self.blur_px(acq))
        return img

    def blur_px(self, acq: Acquisition) -> float:
        """Blur defect sigma in pixels: at least 1.5 px so it shows on coarse (small) grids too."""
        return max(self.blur_mm / (acq.fov / acq.matrix), 1.5)

    def soft_volume(self, acq: Acquisition, phase: str) -> np.ndarray:
        """Soft-kernel object volume (int16 HU), computed once per phase."""
        if phase not in acq.soft:
            sigma = 0.75 / (acq.fov / acq.matrix)
            out = np.empty(acq.grid.shape, dtype=np.int16)
            for k in range(out.shape[0]):
                out[k] = np.clip(np.rint(blur2d(self.raw(acq, k, phase), sigma)), -32768, 32767)
            acq.soft[phase] = out
        return acq.soft[phase]

    def kernel_image(self, acq: Acquisition, k: int, phase: str, kclass: str) -> np.ndarray:
        soft = self.soft_volume(acq, phase)[k].astype(F)
        if kclass in ("soft", "head", "mono"):
            return soft
        sharp = self.raw(acq, k, phase)
        if kclass == "lung":
            return sharp
        return sharp + F(0.6) * (sharp - soft)  # bone: edge enhancement

    def to_stored(self, hu: np.ndarray, acq: Acquisition) -> np.ndarray:
        intercept, slope = float(self.rescale["intercept"]), float(self.rescale["slope"])
        signed = int(self.rescale["pixel_representation"]) == 1
        if self.padding_hu is not None:
            hu = hu.copy()
            hu[acq.truth["fov_circle_outside"]] = float(self.padding_hu)
        stored = np.rint((hu - intercept) / slope)
        if signed:
            return np.clip(stored, -32768, 32767).astype(np.int16)
        return np.clip(stored, 0, 4095 if self.padding_hu is None else 65535).astype(np.uint16)

    def noise_sd(self, acq: Acquisition, kclass: str, thickness: float) -> float:
        base = float(self.prot["noise_sd"].get(kclass, 14.0))
        ref = max(self.prot["ctdi_ref"][r] for r in acq.regions)
        size = (self.habitus.width * self.habitus.depth) ** 1.5 if acq.regions[0] not in ("head", "knee") else (1.0 if not self.knee else 0.55)
        dose = math.sqrt(ref * 0.7 / max(acq.ctdi, 1e-3))
        return base * size * dose / math.sqrt(max(thickness, 0.5)) * self.noise_factor

    # ------------------------------------------------------------------ series builders
    def _common(self, acq: Acquisition, phase: str | None, kernel: str | None) -> dict[Any, Any]:
        attrs: dict[Any, Any] = {
            "FrameOfReferenceUID": acq.frame_uid,
            "KVP": acq.kvp,
            "AcquisitionNumber": acq.index + 1,
            "ReconstructionDiameter": round(acq.fov, 1),
            "DataCollectionDiameter": 500.0,
            "GantryDetectorTilt": 0.0,
            "TableHeight": round(150.0 - acq.placement.shift_y, 1),
            "RotationDirection": "CW",
            "XRayTubeCurrent": int(acq.ctdi * 12),
            "ExposureTime": 500,
            "SpiralPitchFactor": 0.984,
            "RescaleIntercept": self.rescale["intercept"],
            "RescaleSlope": self.rescale["slope"],
            "RescaleType": "HU",
            "PhotometricInterpretation": "MONOCHROME2",
            "PatientPosition": "HFS",
            "CTDIvol": round(acq.ctdi, 2),
            "CTDIPhantomTypeCodeSequence": [_code("113690" if acq.regions[0] == "head" else "113691", "DCM", "IEC Head Dosimetry Phantom" if acq.regions[0] == "head" else "IEC Body Dosimetry Phantom")],
        }
        if kernel:
            attrs["ConvolutionKernel"] = kernel
        if self.laterality:
            attrs["Laterality"] = self.laterality
        attrs.update(vendor_private(self.ctx))
        if phase and phase != "native" and not self.unenhanced:
            attrs.update({"ContrastBolusAgent": "Iohexol 350" if self.ctx.language != "zh" else "碘海醇", "ContrastBolusRoute": "IV", "ContrastBolusVolume": 80.0, "ContrastBolusStartTime": "000000"})
        if self.spectral:
            # vendor-style spectral marker (the standard Multi-energy CT modules are not modelled)
            attrs[(0x0071, 0x0010, "LO")] = "RADQC_SYNTH_SPECTRAL"
            attrs[(0x0071, 0x1001, "CS")] = "MULTI_ENERGY"
        if self.ecg and any(r in ("chest",) for r in acq.regions):
            attrs.update({"TriggerTime": 600.0, "HeartRate": 68, "NominalPercentageOfCardiacPhase": 75.0, "LowRRValue": 800, "HighRRValue": 950, "CardiacSynchronizationTechnique": "RETROSPECTIVE"})
        return attrs

    def _region_words(self, acq: Acquisition) -> str:
        return "chest_abdomen_pelvis" if len(acq.regions) > 1 and "chest" in acq.regions else acq.regions[0]

    def slice_regions(self, depth: np.ndarray) -> list[str]:
        """Body-part label per slice (the knee phantom is all knee)."""
        return ["knee"] * len(depth) if self.knee else region_of_depth(self.landmarks(), depth)

    def _body_part(self, acq: Acquisition) -> str:
        return words("region", self._region_words(acq)).get("body_part", "CHEST")

    def _windows(self, kclass: str) -> list[list[float]]:
        return protocols()["windows"].get(kclass, protocols()["windows"]["soft"])

    def _apply_window(self, attrs: dict[Any, Any], kclass: str, role: str) -> None:
        wins = self._windows(kclass)
        centres, widths = [w[0] for w in wins], [w[1] for w in wins]
        wd = self.window_defect
        if wd and role.startswith("axial_") and (not wd["series"] or kclass == "lung"):
            if wd["mode"] == "missing":
                wd["series"].append({"role": role, "window": None})
                return
            other = "soft" if kclass != "soft" else "lung"
            wrong = self._windows(other)
            centres, widths = [w[0] for w in wrong], [w[1] for w in wrong]
            given = wd["pending"].params
            if given.get("center") is not None and given.get("width") is not None:
                centres, widths = [float(given["center"])], [float(given["width"])]
            wd["series"].append({"role": role, "window": [centres[0], widths[0]], "expected": wins[0]})
        attrs["WindowCenter"] = centres if len(centres) > 1 else centres[0]
        attrs["WindowWidth"] = widths if len(widths) > 1 else widths[0]
        attrs["WindowCenterWidthExplanation"] = [f"WINDOW{i + 1}" for i in range(len(centres))] if len(centres) > 1 else "WINDOW1"

    def axial(self, acq: Acquisition, r: SeriesRole, phase: str) -> SeriesOut:
        parts = r.role.split("_")
        kclass = parts[1] if len(parts) > 1 else "soft"
        thin = parts[-1] == "thin"
        kclass = str(r.params.get("kernel") or kclass)
        if kclass not in ("soft", "lung", "bone", "head"):
            kclass = "soft"
        thickness = float(r.params.get("thickness_mm") or (acq.thin_mm if thin else float(self.rng.choice(self.prot["thick_mm"]))))
        deviation = None
        for p in self.ctx.pending("thickness_nonstandard"):
            if not thin:
                new = float(p.params.get("slice_thickness_mm") or self.rng.choice([8.0, 10.0]))
                deviation = {"role": r.role, "slice_thickness_mm": new, "standard_mm": thickness}
                thickness = new
                self.ctx.record(p, **deviation)
        kernel_class_written = kclass
        for p in self.ctx.pending("kernel_nonstandard"):
            if kclass in ("lung", "bone"):
                kernel_class_written = "soft"
                self.ctx.record(p, role=r.role, kernel_class=kclass, kernel_written="soft")
        kernel_names = self.ctx.vendor["kernels"][kernel_class_written]
        kernel = str(kernel_names[int(self.ctx.rng(f"kernel:{kclass}").integers(len(kernel_names)))])
        dz = acq.dz
        n_master = acq.grid.shape[0]
        if thin:
            idx_centres = list(range(n_master))
            slab = [[k] for k in idx_centres]
            spacing = dz
        else:
            length = (n_master - 1) * dz
            n = max(2, int(length // thickness) + 1)
            n = min(n, int(self.sizes["ct_thick_max_slices"]))
            spacing = length / max(n - 1, 1) if self.spec.size == "small" else thickness
            n = int(length // spacing) + 1
            centres = [k * spacing for k in range(n)]
            idx_centres = [int(round(c / dz)) for c in centres]
            half = max(0, int(round(thickness / dz / 2 - 0.5)))
            slab = [list(range(max(0, k - half), min(n_master, k + half + 1))) for k in idx_centres]
        sd = self.noise_sd(acq, kclass, thickness) * (1.8 if r.params.get("low_dose") else 1.0)
        nrng = self.ctx.rng(f"noise:{acq.index}:{phase}:{r.role}")
        peak = {"soft": 0.07, "head": 0.06, "lung": 0.22, "bone": 0.25}[kclass] * float(nrng.uniform(0.8, 1.25))
        noise = NoiseSource(nrng, (acq.matrix, acq.matrix), peak, peak * 0.6)
        px = acq.fov / acq.matrix
        grid = acq.grid

        def make(i: int) -> ImageOut:
            ks = slab[i]
            if len(ks) == 1:
                hu = self.kernel_image(acq, ks[0], phase, kclass)
            else:
                hu = np.mean([self.kernel_image(acq, k, phase, kclass) for k in ks], axis=0)
            hu = hu + F(sd) * noise.draw(self.ctx.rng(f"n:{acq.index}:{phase}:{r.role}:{i}"))
            z = float(grid.z[0] - (idx_centres[i] * dz))
            return ImageOut(self.to_stored(hu, acq), position=(float(grid.x[0]), float(grid.y[0]), z), orientation=AXIAL, spacing=(px, px), attrs={"SliceLocation": round(z, 3)})

        attrs = self._common(acq, phase, kernel)
        attrs.update({"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "SliceThickness": round(thickness, 3), "SpacingBetweenSlices": round(spacing, 3)})
        self._apply_window(attrs, kclass, r.role)
        region_key = self._region_words(acq)
        desc = describe(self.ctx, "axial", self.ctx.rng(f"desc:{r.role}:{phase}:{acq.index}"), region=region_key, phase=phase, thk=fmt_thk(thickness), kernel=kernel, kernel_class=kclass)
        if self.ecg and "chest" in acq.regions:
            desc = f"{desc} 75%"[:64]
        depth = acq.depth[idx_centres]
        labels = acq.labels[idx_centres] if acq.labels is not None else None
        s = SeriesOut(
            role=r.role,
            modality="CT",
            sop_class=CT_IMAGE,
            description=desc,
            images=LazyImages(len(idx_centres), make),
            attrs=attrs,
            plane="axial",
            phase=phase,
            kernel=kernel,
            thickness=round(thickness, 3),
            slice_regions=self.slice_regions(depth),
            label_volume=None if labels is None else (labels, (float(grid.x[0]), float(grid.y[0]), float(grid.z[idx_centres[0]])), (px, px, spacing), (1, 0, 0, 0, 1, 0, 0, 0, -1)),
            truth={"acquisition": acq.index, "kernel_class": kclass, "thin": thin, "nominal_noise_sd_hu": round(sd, 2), "ctdivol_mgy": round(acq.ctdi, 2), "window": self._windows(kclass)[0], "regions": acq.regions, "centring": {"body_centroid_mm": acq.truth["body_centroid_mm"], "offset_mm": acq.truth["centroid_offset_mm"], "offset_fraction": acq.truth["centroid_offset_fraction"], "isocentre_offset_mm": acq.truth.get("isocentre_offset_mm")}, "depth_range_mm": [round(float(depth[0]), 1), round(float(depth[-1]), 1)], "enhanced": phase != "native" and not self.unenhanced},
            body_part=self._body_part(acq),
            protocol=self._protocol(acq),
            kernel_class=kclass,
        )
        if kclass in ("soft", "head"):
            self._measure_hook(s, acq, phase, idx_centres, slab)
        return s

    def _protocol(self, acq: Acquisition) -> str:
        w = words("region", self._region_words(acq))
        return {"zh": f"{w.get('zh', '')}常规", "en": f"{w.get('en', '')} Routine", "py": f"{w.get('py', '')} changgui"}.get(self.ctx.language, w.get("en", ""))

    def _measure_hook(self, s: SeriesOut, acq: Acquisition, phase: str, idx: list[int], slab: list[list[int]] | None = None) -> None:
        """Measure noise SD in homogeneous tissue, vessel HU and edge sharpness on written pixels."""
        ids = structure_ids()
        assert acq.labels is not None
        intercept, slope = float(self.rescale["intercept"]), float(self.rescale["slope"])
        n = len(idx)
        picks = set(np.linspace(n * 0.25, n * 0.75, num=min(n, 5)).astype(int).tolist())
        sds: list[float] = []
        aorta: list[float] = []
        sharp: list[float] = []
        key = f"{acq.index}:{phase}:{s.role}"
        roi_tissues = ("liver", "brain", "spleen", "muscle", "body")
        roi_ids = [ids[t] for t in roi_tissues]
        body_excl = np.zeros(256, dtype=bool)
        for name in ("table", "foreign_object"):
            body_excl[ids[name]] = True
        body_excl[0] = True

        def hook(i: int, pixels: np.ndarray) -> None:
            lab = acq.labels[idx[i]]
            hu = pixels.astype(F) * F(slope) + F(intercept)
            if i in picks:
                # homogeneous through the whole slab: a thick slice averages its thin slices
                same = np.all(acq.labels[slab[i]] == lab, axis=0) if slab and len(slab[i]) > 1 else True
                for sid in roi_ids:
                    mask = (lab == sid) & same
                    if mask.sum() > 40:
                        sd, count = roi_sd(hu, mask, 2)
                        if count >= 20 and not math.isnan(sd):
                            sds.append(sd)
                            break
                es = edge_sharpness(hu, ~body_excl[lab])
                if not math.isnan(es):
                    sharp.append(es)
            am = lab == ids["aorta"]
            if am.sum() > 6:
                aorta.append(float(np.median(hu[am])))
            if i == n - 1:
                if sds:
                    self.measure["noise_sd_hu"][key] = round(float(np.median(sds)), 2)
                    s.truth["measured_noise_sd_hu"] = round(float(np.median(sds)), 2)
                if aorta:
                    self.measure["vessel_hu"][key] = round(float(np.median(aorta)), 1)
                    s.truth["aorta_hu"] = round(float(np.median(aorta)), 1)
                if sharp:
                    self.measure["sharpness"][key] = round(float(np.median(sharp)), 4)
                    s.truth["sharpness_index"] = round(float(np.median(sharp)), 4)
                if self.noise_factor != 1.0:
                    self.measure["noise_sd_expected_normal"] = round(s.truth["nominal_noise_sd_hu"] / self.noise_factor, 2)

        s.on_image = hook

    def localizer(self, acq: Acquisition) -> SeriesOut:
        """AP topogram: line integrals of attenuation through a coarse volume, longer than the scan."""
        margin = 60.0
        d0, d1 = (acq.d_start - margin if self.knee else max(-10.0, acq.d_start - margin)), acq.d_end + margin
        full = self.spec.size == "full"
        nx = 256 if full else 48
        width = max(acq.fov, 480.0)
        step_z = width / nx
        nz = max(8, int((d1 - d0) / step_z))
        ny = 96 if full else 32
        z = acq.placement.z_vertex - (d0 + np.arange(nz) * step_z)
        grid = Grid(x=((np.arange(nx) - (nx - 1) / 2) * step_z).astype(F), y=((np.arange(ny) - (ny - 1) / 2) * (width / ny)).astype(F), z=z.astype(F))
        vol = paint(self.phantom, grid, acq.placement)
        mu = np.maximum(self._lut("native")[vol] / 1000.0 + 1.0, 0) * MU_WATER
        proj = mu.sum(axis=1) * (width / ny)  # (nz, nx)
        img = proj / max(float(proj.max()), 1e-3) * 3000.0
        if full:
            img = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
            step = step_z / 2
        else:
            step = step_z
        img = img + self.ctx.rng("localizer").normal(0, 12, size=img.shape).astype(F)
        pixels = np.clip(np.rint(img), 0, 4095).astype(np.uint16)
        pos = (float(-(pixels.shape[1] - 1) / 2 * step), 0.0, float(z[0]))
        kernel = str(self.ctx.vendor["kernels"]["soft"][0])
        attrs = self._common(acq, None, kernel)
        for key in ("CTDIvol", "CTDIPhantomTypeCodeSequence", "ContrastBolusAgent", "ContrastBolusRoute", "ContrastBolusVolume", "ContrastBolusStartTime", "TriggerTime", "HeartRate", "NominalPercentageOfCardiacPhase", "LowRRValue", "HighRRValue", "CardiacSynchronizationTechnique"):
            attrs.pop(key, None)
        attrs.update({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "RescaleIntercept": 0, "RescaleSlope": 1, "RescaleType": "US", "SliceThickness": "", "XRayTubeCurrent": 30, "WindowCenter": 1500, "WindowWidth": 3000, "BitsStored": 12})
        img_out = ImageOut(pixels, position=pos, orientation=CORONAL, spacing=(step, step))
        desc = describe(self.ctx, "localizer", self.ctx.rng(f"desc:loc:{acq.index}"), region=self._region_words(acq))
        s = SeriesOut(role="localizer", modality="CT", sop_class=CT_IMAGE, description=desc, images=[img_out], attrs=attrs, plane="coronal", body_part=self._body_part(acq), protocol=self._protocol(acq), burn_identifiers=True, truth={"acquisition": acq.index, "depth_range_mm": [round(d0, 1), round(d1, 1)], "duration_s": 8})
        return s

    def derived(self, acq: Acquisition, r: SeriesRole, source: SeriesOut) -> list[SeriesOut]:
        phase = source.phase or "native"
        soft = self.soft_volume(acq, phase)
        grid = acq.grid
        px = acq.fov / acq.matrix
        dz = acq.dz
        nz, ny, nx = soft.shape
        intercept = float(self.rescale["intercept"])
        region_key = self._region_words(acq)
        base = self._common(acq, phase, source.kernel)
        base.pop("CTDIvol", None)
        base.pop("CTDIPhantomTypeCodeSequence", None)
        base["DerivationDescription"] = {"mpr_coronal": "Multiplanar reformat (coronal)", "mpr_sagittal": "Multiplanar reformat (sagittal)", "mip": "Maximum intensity projection", "vr": "Volume rendering"}[r.role]
        n_src = len(source.images)
        src_depth_idx = np.linspace(0, n_src - 1, num=min(n_src, 16)).astype(int).tolist()
        sd = self.noise_sd(acq, "soft", 3.0)
        if r.role in ("mpr_coronal", "mpr_sagittal"):
            plane = "coronal" if r.role == "mpr_coronal" else "sagittal"
            thk = float(r.params.get("thickness_mm") or self.rng.choice(protocols()["ct"]["mpr_mm"]))
            axis_len = ny if plane == "coronal" else nx
            n = max(1, int(acq.fov * 0.7 // thk))
            n = min(n, int(self.sizes["mpr_max_slices"]))
            centres = np.linspace(axis_len * 0.15, axis_len * 0.85, num=n).astype(int)
            half = max(0, int(round(thk / px / 2)))
            nrng = self.ctx.rng(f"noise:mpr:{r.role}:{acq.index}")
            noise = NoiseSource(nrng, (nz, nx if plane == "coronal" else ny), 0.08, 0.05)

            def make(i: int) -> ImageOut:
                c = int(centres[i])
                lo, hi = max(0, c - half), min(axis_len, c + half + 1)
                img = soft[:, lo:hi, :].mean(axis=1) if plane == "coronal" else soft[:, :, lo:hi].mean(axis=2)
                img = img.astype(F) + F(sd) * noise.draw(self.ctx.rng(f"n:mpr:{r.role}:{acq.index}:{i}"))
                stored = np.clip(np.rint(img - intercept), -32768, 32767)
                stored = stored.astype(np.int16) if int(self.rescale["pixel_representation"]) else np.clip(stored, 0, 4095).astype(np.uint16)
                if plane == "coronal":
                    pos = (float(grid.x[0]), float(grid.y[c]), float(grid.z[0]))
                    orient = CORONAL
                else:
                    pos = (float(grid.x[c]), float(grid.y[0]), float(grid.z[0]))
                    orient = SAGITTAL
                return ImageOut(stored, position=pos, orientation=orient, spacing=(dz, px), sources=src_depth_idx)

            attrs = dict(base)
            attrs.update({"ImageType": ["DERIVED", "SECONDARY", "REFORMATTED", "MPR"], "SliceThickness": thk})
            self._apply_window(attrs, "soft", r.role)
            desc = describe(self.ctx, "mpr", self.ctx.rng(f"desc:{r.role}:{acq.index}"), region=region_key, plane=plane, thk=fmt_thk(thk))
            return [SeriesOut(role=r.role, modality="CT", sop_class=CT_IMAGE, description=desc, images=LazyImages(len(centres), make), attrs=attrs, plane=plane, phase=phase, kernel=source.kernel, thickness=thk, derived_from=source, slice_regions=[], body_part=source.body_part, protocol=source.protocol, truth={"acquisition": acq.index, "derived": True, "duration_s": 60})]
        if r.role == "mip":
            thk = float(r.params.get("thickness_mm") or 10.0)
            step = max(dz, thk / 2) if self.spec.size == "full" else max(dz, (nz * dz) / min(self.sizes["ct_thick_max_slices"], 8))
            centres = np.arange(0, nz, max(1, int(round(step / dz))))
            half = max(0, int(round(thk / dz / 2)))

            def make_mip(i: int) -> ImageOut:
                c = int(centres[i])
                lo, hi = max(0, c - half), min(nz, c + half + 1)
                img = soft[lo:hi].max(axis=0).astype(F)
                stored = np.clip(np.rint(img - intercept), -32768, 32767)
                stored = stored.astype(np.int16) if int(self.rescale["pixel_representation"]) else np.clip(stored, 0, 4095).astype(np.uint16)
                z = float(grid.z[c])
                src = [int(round(k * (n_src - 1) / max(nz - 1, 1))) for k in range(lo, hi)][:20]
                return ImageOut(stored, position=(float(grid.x[0]), float(grid.y[0]), z), orientation=AXIAL, spacing=(px, px), sources=sorted(set(src)))

            attrs = dict(base)
            attrs.update({"ImageType": ["DERIVED", "SECONDARY", "REFORMATTED", "MIP"], "SliceThickness": thk})
            self._apply_window(attrs, "soft", r.role)
            desc = describe(self.ctx, "mip", self.ctx.rng(f"desc:mip:{acq.index}"), region=region_key, thk=fmt_thk(thk))
            return [SeriesOut(role="mip", modality="CT", sop_class=CT_IMAGE, description=desc, images=LazyImages(len(centres), make_mip), attrs=attrs, plane="axial", phase=phase, kernel=source.kernel, thickness=thk, derived_from=source, body_part=source.body_part, protocol=source.protocol, truth={"acquisition": acq.index, "derived": True, "duration_s": 60})]
        # volume rendering: depth-shaded first hit above a threshold, four views
        threshold = 180

        def make_vr(i: int) -> ImageOut:
            vol = soft if i < 2 else soft.transpose(0, 2, 1)
            hit = vol > threshold
            if i % 2 == 1:
                hit = hit[:, ::-1, :]
            first = np.argmax(hit, axis=1)
            any_hit = hit.any(axis=1)
            depth_n = first / max(hit.shape[1] - 1, 1)
            shade = np.where(any_hit, 255 * (1.0 - 0.85 * depth_n), 0).astype(F)
            # vertical rescale to square pixels
            rows = max(1, int(round(shade.shape[0] * dz / px)))
            ridx = np.clip((np.arange(rows) * shade.shape[0] / rows).astype(int), 0, shade.shape[0] - 1)
            img = shade[ridx]
            if i % 2 == 1:
                img = img[:, ::-1]
            return ImageOut(np.clip(img, 0, 255).astype(np.uint8), attrs={"PatientOrientation": ["L", "F"] if i < 2 else ["P", "F"]}, sources=src_depth_idx)

        attrs = {"ImageType": ["DERIVED", "SECONDARY", "VOLUME", "VR"], "ConversionType": "WSD", "DerivationDescription": base["DerivationDescription"], "FrameOfReferenceUID": acq.frame_uid}
        desc = describe(self.ctx, "vr", self.ctx.rng(f"desc:vr:{acq.index}"), region=region_key)
        return [SeriesOut(role="vr", modality="CT", sop_class=SC_IMAGE, description=desc, images=LazyImages(4, make_vr), attrs=attrs, plane=None, phase=phase, derived_from=source, body_part=source.body_part, protocol=source.protocol, burn_identifiers=True, truth={"acquisition": acq.index, "derived": True, "views": ["anterior", "posterior", "left", "right"], "duration_s": 120})]

    def spectral_series(self, acq: Acquisition, phase: str, kind: str) -> SeriesOut:
        """Virtual mono-energetic (70 keV) or iodine-map series of a spectral acquisition."""
        thickness = 1.25 if self.spec.size == "full" else max(1.25, acq.dz)
        grid = acq.grid
        px = acq.fov / acq.matrix
        native_lut = self.m.hu_lut("native")
        lut = self._lut(phase)
        nrng = self.ctx.rng(f"noise:spectral:{kind}:{phase}:{acq.index}")
        noise = NoiseSource(nrng, (acq.matrix, acq.matrix), 0.08, 0.05)
        sd = self.noise_sd(acq, "soft", thickness)

        def make(i: int) -> ImageOut:
            draw = noise.draw(self.ctx.rng(f"n:spec:{kind}:{phase}:{acq.index}:{i}"))
            if kind == "mono":
                hu = self.kernel_image(acq, i, phase, "mono") + F(sd * 0.8) * draw
                stored = self.to_stored(hu, acq)
            else:
                assert acq.vol is not None
                iodine = np.clip((lut[acq.vol[i]] - native_lut[acq.vol[i]]) / 25.0, 0, None)  # mg/mL
                iodine = blur2d(iodine, 0.75 / px) + F(0.3) * draw
                stored = np.clip(np.rint(iodine * 100), 0, 65535).astype(np.uint16)
            z = float(grid.z[i])
            return ImageOut(stored, position=(float(grid.x[0]), float(grid.y[0]), z), orientation=AXIAL, spacing=(px, px), attrs={"SliceLocation": round(z, 3)})

        attrs = self._common(acq, phase, self.ctx.vendor["kernels"]["soft"][0])
        kev = 70
        if kind == "mono":
            attrs.update({"ImageType": ["DERIVED", "PRIMARY", "AXIAL", "MONOE"], "SliceThickness": thickness})
            self._apply_window(attrs, "mono", "spectral_mono")
            name = self.ctx.vendor["spectral"]["mono"].format(kev=kev)
        else:
            attrs.update({"ImageType": ["DERIVED", "PRIMARY", "AXIAL", "IODINE"], "SliceThickness": thickness, "RescaleIntercept": 0, "RescaleSlope": 0.01, "RescaleType": "MGML", "WindowCenter": 2, "WindowWidth": 6})
            name = self.ctx.vendor["spectral"]["iodine"]
        desc = describe(self.ctx, "spectral", self.ctx.rng(f"desc:spec:{kind}"), vendor_spectral=name)
        return SeriesOut(role=f"spectral_{kind}", modality="CT", sop_class=CT_IMAGE, description=desc, images=LazyImages(grid.shape[0], make), attrs=attrs, plane="axial", phase=phase, kernel=attrs.get("ConvolutionKernel"), thickness=thickness, slice_regions=self.slice_regions(acq.depth), body_part=self._body_part(acq), protocol=self._protocol(acq), truth={"acquisition": acq.index, "spectral": kind, "kev": kev if kind == "mono" else None})

    def dose_report(self, acqs: list[Acquisition]) -> SeriesOut:
        """Secondary Capture 'Dose Report' page; the values are also in ImageComments."""
        n = 512 if self.spec.size == "full" else 128
        img = np.zeros((n, n), dtype=np.uint8)
        total = round(sum(r["dlp"] for r in self.dose_rows), 1)
        lines = ["Dose Report", f"Total DLP: {total} mGy-cm"]
        for row in self.dose_rows:
            lines.append(f"{'+'.join(row['regions'])[:16]} {row['phase'][:4]} CTDIvol {row['ctdivol']} DLP {row['dlp']}")
        burn_text(img, lines, 255, "tl", size=max(7, n // 30))
        comments = "; ".join(f"acq{r['acquisition'] + 1} {'+'.join(r['regions'])}/{r['phase']}: CTDIvol={r['ctdivol']} mGy DLP={r['dlp']} mGy-cm" for r in self.dose_rows)
        attrs = {"ImageType": ["DERIVED", "SECONDARY", "DOSE_INFO"], "ConversionType": "WSD", "ImageComments": f"Total DLP={total} mGy-cm; {comments}"[:10240], "PatientOrientation": ""}
        desc = describe(self.ctx, "dose_report", self.ctx.rng("desc:dose"))
        self.ctx.measurements["dose"] = {"total_dlp_mgy_cm": total, "series": self.dose_rows, "report": "secondary_capture"}
        return SeriesOut(role="dose_report", modality="CT", sop_class=SC_IMAGE, description=desc, images=[ImageOut(img, attrs={})], attrs=attrs, body_part=self._body_part(acqs[0]), burn_identifiers=True, truth={"total_dlp_mgy_cm": total, "rows": self.dose_rows, "duration_s": 5})


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def render_ct(ctx: ExamContext) -> list[SeriesOut]:
    return CTRenderer(ctx).render()
