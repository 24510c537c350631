"""MR exams of the brain, spine and knee: tissue contrast from relaxation times.

Each series samples the phantom on its own plane (axial, sagittal, coronal) and turns
materials into signal with the spin-echo / inversion-recovery equations

    SE:  S = PD (1 - exp(-TR/T1)) exp(-TE/T2)
    IR:  S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)
    DWI: S(b) = S_EPI(TR, TE) exp(-b ADC)          ADC map derived from b = 0 and b = 1000

with fat suppression (fat PD x 0.08), flow voids in moving blood and gadolinium shortening
T1 (1/T1' = 1/T1 + r1 C, tabulated per tissue as ``gd``) for post-contrast T1. Then the
acquisition: partial-volume blur, a smooth coil bias field, Rician noise, vendor scaling.
Headers carry the parameters the signal was computed with (TR/TE/TI, ScanningSequence,
SequenceVariant, ScanOptions, DiffusionBValue, orientation, field strength).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..spec import SeriesRole
from .anatomy import Materials, mr_flag_lut, mr_lut, region_of_depth, structure_ids, structure_names
from .context import ExamContext, protocols, resolve_landmark, vendor_private
from .defects import mr_ghosting
from .geometry import Box, Capsule, Ellipsoid, Grid, Phantom, Placement, Shape, paint
from .image_ops import blur2d
from .phantom_body import build_body, draw_habitus, vertebra_table
from .phantom_knee import build_knee
from .series import MR_IMAGE, ORIENTATIONS, ImageOut, LazyImages, SeriesOut, describe

F = np.float32
GAMMA_MHZ_T = 42.577


@dataclass
class Plan:
    """Where one series' slices lie: plane, FOV centre (world), FOV, slice positions."""

    plane: str
    centre: tuple[float, float, float]
    fov: float
    matrix: int
    thickness: float
    positions: np.ndarray  # along the slice normal (x for sagittal, y for coronal, z for axial)


class MRRenderer:
    def __init__(self, ctx: ExamContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.region = self.spec.regions[0]
        if self.region not in ("head", "knee", "lumbar_spine", "cervical_spine", "thoracic_spine"):
            raise ValueError(f"MR of {self.region!r} is not modelled: use head, knee, cervical/thoracic/lumbar_spine")
        self.rng = ctx.rng("mr")
        self.field = float(ctx.model.get("field", 1.5))
        self.m = Materials()
        arng = ctx.rng("anatomy")
        if self.region == "knee":
            side = str(self.spec.header.get("Laterality") or self.spec.evidence.get("laterality") or ("R" if arng.random() < 0.5 else "L"))
            self.phantom = build_knee(self.m, side, arng, effusion=bool(arng.random() < 0.3))
            self.placement = Placement(z_vertex=float(arng.uniform(-50, 50)))
            self.laterality: str | None = side
        else:
            self.habitus = draw_habitus(arng, self.spec.sex, self.spec.age)
            self.phantom = build_body(self.habitus, self.m, with_table=False, rng=arng)
            self.placement = Placement(z_vertex=float(arng.uniform(60, 200)), shift_x=float(arng.normal(0, 3)), shift_y=float(arng.normal(0, 3)))
            self.laterality = None
        self.sizes = ctx.size_table
        self.noise_factor = 1.0
        self.blur_px = 0.0
        self.ghost: dict[str, Any] | None = None
        self.metal: dict[str, Any] | None = None
        self.series: list[SeriesOut] = []
        self._setup_defects()

    # ------------------------------------------------------------------ planning
    def roles(self) -> list[SeriesRole]:
        if self.spec.series:
            roles = [SeriesRole(r.role, dict(r.params)) for r in self.spec.series]
        else:
            table = protocols()["default_series"]["MR"]
            key = self.region if self.region in table else "lumbar_spine"
            roles = [SeriesRole(d["role"], {"plane": d["plane"]}) for d in table[key]]
        for r in roles:
            r.params.setdefault("plane", "axial" if self.region == "head" else "sagittal")
        for p in self.ctx.pending("missing_sequence"):
            wanted = p.params.get("sequence")
            plane = p.params.get("plane")
            required = [tuple(x) for x in protocols()["mr_required"].get(self.region, [])]
            if not wanted:
                present = [(r.role, r.params["plane"]) for r in roles]
                options = [x for x in required if any(x[0] == q[0] and x[1] in ("any", q[1]) for q in present)]
                if not options:
                    self.ctx.skip(p, "no required sequence present to remove")
                    continue
                wanted, plane = options[int(self.rng.integers(len(options)))]
                plane = None if plane == "any" else plane
            hit = [r for r in roles if r.role == wanted and (plane is None or r.params["plane"] == plane)]
            if not hit:
                self.ctx.skip(p, f"sequence {wanted} {plane or ''} not in the protocol")
                continue
            removed = [{"sequence": r.role, "plane": r.params["plane"]} for r in hit]
            roles = [r for r in roles if r not in hit]
            if wanted == "DWI":  # the ADC map cannot exist without its DWI
                removed += [{"sequence": r.role, "plane": r.params["plane"]} for r in roles if r.role == "ADC"]
                roles = [r for r in roles if r.role != "ADC"]
            self.ctx.record(p, sequence=wanted, plane=plane, removed=removed, remaining=[f"{r.role}:{r.params['plane']}" for r in roles])
        return roles

    def _setup_defects(self) -> None:
        for p in self.ctx.pending("excess_noise"):
            self.noise_factor = float(p.params.get("factor") or self.rng.uniform(2.5, 3.5))
            self._noise_pending = p
        for p in self.ctx.pending("blur"):
            sigma_mm = p.params.get("sigma_mm")
            # MR pixels are ~0.5-1 mm at full size and ~3 mm at small size: at least 1.5 px either way
            self.blur_px = float(p.params.get("sigma_px") or max(1.5, float(sigma_mm or 0) / (3.0 if self.spec.size == "small" else 0.8)) or self.rng.uniform(1.5, 2.5))
            self.ctx.record(p, sigma_px=round(self.blur_px, 3))
        self.range_cut: dict[str, Any] | None = None
        for p in self.ctx.pending("range_too_small"):
            lm = self.phantom.landmarks
            names = p.params.get("missing") or []
            key = next((k for k in (resolve_landmark(str(n), lm) for n in names) if k), None)
            if key is None:
                defaults = {"head": "vertex", "knee": "knee_bottom", "lumbar_spine": "S1_top", "cervical_spine": "C1_top", "thoracic_spine": "T1_top"}
                key = defaults[self.region]
            end = p.params.get("end") or ("top" if key in ("vertex", "C1_top", "T1_top", "knee_top") else "bottom")
            cut = float(p.params.get("cut_mm") or self.rng.uniform(15, 35))
            self.range_cut = {"pending": p, "landmark": key, "end": end, "cut": cut, "coverage": {}}
        for p in self.ctx.pending("motion"):
            self.ghost = {"pending": p, "sequence": p.params.get("sequence"), "strength": float(p.params.get("strength") or self.rng.uniform(0.35, 0.6))}
        for p in self.ctx.pending("metal"):
            # the implant lies inside the volume every plane of the protocol images
            lm = self.phantom.landmarks
            if self.region == "knee":
                shapes: list[Shape] = [Ellipsoid((0, -10, -35), (4, 4, 4))]
                what = "metal implant"
            elif self.region == "head":
                d = (8 * self.habitus.height + lm["foramen_magnum"]) / 2  # mid-way down the axial stack
                shapes = [Capsule((12, -8, d), (20, 2, d), 2.5)]
                what = "aneurysm clip"
            else:
                level = {"lumbar_spine": "L4_center", "cervical_spine": "C5_center", "thoracic_spine": "T7_center"}[self.region]
                d = lm[level]
                shapes = [Capsule((side * 15, 60, d), (side * 25, 25, d), 3.5) for side in (-1, 1)]
                what = "pedicle screws"
            for sh in shapes:
                self.phantom.add(sh, self.m("metal_implant", "metal"))
            self.metal = {"pending": p, "shapes": shapes, "object": what, "centre": shapes[0].bbox(), "void_px": {}}

    def plan(self, plane: str, role: str) -> Plan:
        full = self.spec.size == "full"
        matrix = int(self.rng.choice(self.sizes["mr_matrix"]))
        if role in ("DWI", "ADC"):
            matrix = max(48, matrix // 2)
        max_slices = int(self.sizes["mr_max_slices"])
        lm = self.phantom.landmarks
        if self.region == "head":
            sd = self.habitus.height
            centre_d = 72 * sd
            fov = float(self.rng.uniform(220, 250))
            thk = float(self.rng.choice([5.0, 6.0]))
            gap = 1.0
            if plane == "axial":
                lo, hi = 8 * sd, lm["foramen_magnum"] + 2
            elif plane == "sagittal":
                lo, hi = -60.0, 60.0
            else:
                lo, hi = -90.0, 60.0
            cy = -5.0
        elif self.region == "knee":
            centre_d = -8.0
            fov = float(self.rng.uniform(150, 180))
            thk, gap = float(self.rng.choice([3.0, 3.5, 4.0])), 0.4
            lo, hi = {"axial": (-60.0, 45.0), "sagittal": (-48.0, 48.0), "coronal": (-40.0, 42.0)}[plane]
            cy = 2.0
        else:
            level = {"lumbar_spine": ("L3_center", "L1_top", "S1_top"), "cervical_spine": ("C4_center", "C2_top", "T1_bottom"), "thoracic_spine": ("T7_center", "T1_top", "T12_bottom")}[self.region]
            centre_d = lm[level[0]]
            fov = float(self.rng.uniform(260, 320)) if self.region != "cervical_spine" else float(self.rng.uniform(220, 250))
            thk, gap = float(self.rng.choice([3.0, 4.0])), 0.4
            vert = {str(v["name"]): v for v in vertebra_table(self.habitus)}
            cy = float(vert[level[0].split("_")[0]]["cy"]) + 15
            if plane == "axial":
                lo, hi = lm[level[1]], lm[level[2]]
                fov = float(self.rng.uniform(180, 220))
            elif plane == "sagittal":
                lo, hi = -32.0, 32.0
            else:
                lo, hi = cy - 40, cy + 20
        rc = self.range_cut
        if rc is not None:
            lmd = lm[rc["landmark"]]
            if plane == "axial" and self.region != "knee":
                if rc["end"] == "top":
                    lo = max(lo, lmd + rc["cut"])
                else:
                    hi = min(hi, lmd - rc["cut"])
            else:
                half = fov / 2
                centre_d = lmd + rc["cut"] + half if rc["end"] == "top" else lmd - rc["cut"] - half
        for p in self.ctx.pending("thickness_nonstandard"):
            new = float(p.params.get("slice_thickness_mm") or (8.0 if self.region == "head" else 6.0))
            self.ctx.record(p, sequence=role, plane=plane, slice_thickness_mm=new, standard_mm=thk)
            thk = new
        spacing = thk + gap
        n = max(3, int((hi - lo) // spacing) + 1)
        if not full:
            n = min(n, max_slices)
            spacing = (hi - lo) / max(n - 1, 1)
        positions = lo + np.arange(n) * spacing + ((hi - lo) - (n - 1) * spacing) / 2
        pz = self.placement.z_vertex
        if plane == "axial":
            positions = pz - positions  # depth -> world z (descending: head first)
        world_centre = (self.placement.shift_x, cy + self.placement.shift_y, pz - centre_d)
        return Plan(plane, world_centre, fov, matrix, thk, positions.astype(F))

    def grid(self, plan: Plan) -> tuple[Grid, np.ndarray]:
        """World grid for the plan and the axis permutation giving (slice, row, col)."""
        n, fov = plan.matrix, plan.fov
        offs = ((np.arange(n) - (n - 1) / 2) * (fov / n)).astype(F)
        cx, cy, cz = plan.centre
        if plan.plane == "axial":
            return Grid(x=cx + offs, y=cy + offs, z=plan.positions), np.array([0, 1, 2])
        rows = (cz - offs).astype(F)  # top row first
        if plan.plane == "sagittal":
            return Grid(x=(plan.positions + cx).astype(F), y=cy + offs, z=rows), np.array([2, 0, 1])
        return Grid(x=cx + offs, y=(plan.positions + cy).astype(F), z=rows), np.array([1, 0, 2])

    # ------------------------------------------------------------------ signal
    def signal_lut(self, role: str, params: dict[str, float]) -> np.ndarray:
        seq = protocols()["mr_sequences"][role]
        pd = mr_lut(self.m, "pd", self.field)
        t1 = mr_lut(self.m, "t1", self.field, 1000.0)
        t2 = mr_lut(self.m, "t2", self.field, 1.0)
        fat = mr_flag_lut(self.m, "fat")
        flow = mr_flag_lut(self.m, "flow_void")
        if seq.get("fs"):
            pd = np.where(fat, pd * F(0.08), pd)
        if seq.get("contrast"):
            gd = mr_lut(self.m, "gd", self.field)
            t1 = F(1000.0) / (F(1000.0) / np.maximum(t1, 1) + gd)
        tr, te = params["tr"], params["te"]
        e2 = np.exp(-te / np.maximum(t2, 1e-3))
        if seq["model"] == "ir":
            ti = params["ti"]
            s = pd * np.abs(1 - 2 * np.exp(-ti / t1) + np.exp(-tr / t1)) * e2
        else:
            s = pd * (1 - np.exp(-tr / t1)) * e2
        s = np.where(flow, s * F(0.05), s)
        return s.astype(F)

    def draw_params(self, role: str) -> dict[str, float]:
        seq = protocols()["mr_sequences"][role]
        rng = self.ctx.rng(f"mrparams:{role}")
        out = {"tr": float(rng.uniform(*seq["tr"])), "te": float(rng.uniform(*seq["te"]))}
        if "ti" in seq:
            out["ti"] = float(rng.uniform(*seq["ti"]))
        if self.field >= 2.9 and role == "T1W":
            out["tr"] *= 1.2
        return {k: round(v, 1) for k, v in out.items()}

    # ------------------------------------------------------------------ series
    def render(self) -> list[SeriesOut]:
        number = 0
        # the protocol after the missing_sequence defects: what make_series consults for ADC
        self._active_roles = self.roles()
        for r in self._active_roles:
            if r.role not in protocols()["mr_sequences"]:
                self.ctx.notes.append(f"MR role {r.role!r} is not modelled; skipped")
                continue
            if r.role == "ADC":
                continue  # made with its DWI
            made = self.make_series(r, number + 1)
            for s in made:
                number += 1
                s.series_number = number
                self.series.append(s)
        if self.ghost and not self.ghost["pending"].applied:
            self.ctx.skip(self.ghost["pending"], "motion target sequence not in the protocol")
        if self.metal:
            void_px = self.metal["void_px"]
            if any(v > 0 for v in void_px.values()):
                self.ctx.record(self.metal["pending"], object=f"{self.metal['object']} (susceptibility void)", bbox_mm=[round(v, 1) for v in self.metal["centre"]], void_px=void_px, series_with_void=[k for k, v in void_px.items() if v > 0])
            else:
                self.ctx.skip(self.metal["pending"], "the implant's susceptibility void falls in no imaged slice")
        if self.range_cut is not None:
            rc = self.range_cut
            covered = [k for k, inside in rc["coverage"].items() if inside]
            self.ctx.record(rc["pending"], missing=[rc["landmark"]], end=rc["end"], cut_mm=round(rc["cut"], 1), series_covering_landmark=covered, landmark_depth_mm=round(self.phantom.landmarks[rc["landmark"]], 1))
        if hasattr(self, "_noise_pending"):
            self.ctx.after_write.append(lambda: self.ctx.record(self._noise_pending, factor=round(self.noise_factor, 3), measured_background_sd=self.ctx.measurements.get("mr_background_sd", {})))
        return self.series

    def make_series(self, r: SeriesRole, number: int) -> list[SeriesOut]:
        role, plane = r.role, r.params["plane"]
        plan = self.plan(plane, role)
        grid, perm = self.grid(plan)
        vol = paint(self.phantom, grid, self.placement).transpose(perm)  # (slice, row, col)
        label_lut = self.m.label_lut()
        lab = label_lut[vol]
        params = self.draw_params(role)
        seq = protocols()["mr_sequences"][role]
        px = plan.fov / plan.matrix
        rng = self.ctx.rng(f"mrnoise:{role}:{plane}:{number}")
        bias = self._bias(plan.matrix, rng)
        snr = float(rng.uniform(22, 40)) / self.noise_factor
        void, rim = self._susceptibility(role, grid, perm, px) if self.metal else (None, None)
        if void is not None and self.metal is not None:
            self.metal["void_px"][f"{role}:{plane}"] = int(void.sum())
        cfg_s = protocols()["mr_susceptibility"]
        scale = float(rng.uniform(900, 3500))
        ghost = None
        if self.ghost and not self.ghost["pending"].applied and (self.ghost["sequence"] in (None, role)):
            ghost = self.ghost
        b_values = list(r.params.get("b_values") or seq.get("b", [0])) if role == "DWI" else [None]
        luts: dict[Any, np.ndarray] = {}
        if role == "DWI":
            base = self.signal_lut("DWI", params)
            adc = mr_lut(self.m, "adc", self.field)
            for b in b_values:
                luts[b] = base * np.exp(-float(b) * adc / 1000.0).astype(F)
        else:
            luts[None] = self.signal_lut(role, params)
        ref = float(max(np.percentile(luts[b_values[0]][np.unique(vol)], 98), 1e-3))
        n_slices = vol.shape[0]
        ns = len(b_values)
        orient = ORIENTATIONS[plan.plane]
        ghost_measure: dict[str, float] = {}

        def image(i: int) -> np.ndarray:
            b = b_values[i // n_slices]
            k = i % n_slices
            sig = luts[b][vol[k]] / ref
            if void is not None and rim is not None:
                sig = np.where(void[k], sig * F(cfg_s["void_signal"]), sig)
                sig = np.where(rim[k] & (vol[k] != 0), np.maximum(sig, F(cfg_s["rim_signal"])), sig).astype(F)
            sig = blur2d(sig, 0.6 + self.blur_px)
            sig = sig * bias
            if ghost is not None:
                sig, info = mr_ghosting(sig, self.ctx.rng(f"ghost:{role}:{k}"), ghost["strength"], axis=0)
                ghost_measure.update(info)
            sigma = 1.0 / snr
            nrng = self.ctx.rng(f"mr:{role}:{plane}:{number}:{i}")
            re = sig + nrng.normal(0, sigma, sig.shape).astype(F)
            im = nrng.normal(0, sigma, sig.shape).astype(F)
            mag = np.sqrt(re * re + im * im)
            return np.clip(np.rint(mag * scale), 0, 4095).astype(np.uint16)

        def position(k: int) -> tuple[float, float, float]:
            if plan.plane == "axial":
                return (float(grid.x[0]), float(grid.y[0]), float(grid.z[k]))
            if plan.plane == "sagittal":
                return (float(grid.x[k]), float(grid.y[0]), float(grid.z[0]))
            return (float(grid.x[0]), float(grid.y[k]), float(grid.z[0]))

        def make(i: int) -> ImageOut:
            k = i % n_slices
            attrs: dict[str, Any] = {}
            if role == "DWI":
                b = b_values[i // n_slices]
                attrs["DiffusionBValue"] = float(b)
                attrs["DiffusionDirectionality"] = "ISOTROPIC" if b else "NONE"
                attrs.update(self._private_b(b))
            return ImageOut(image(i), position=position(k), orientation=orient, spacing=(px, px), attrs=attrs)

        attrs = self._headers(role, plan, params)
        attrs["WindowCenter"], attrs["WindowWidth"] = int(scale * 0.45), int(scale * 0.9)
        desc = describe(self.ctx, "mr", self.ctx.rng(f"desc:{role}:{plane}"), mr_role=role, plane=plane)
        label_volume = (lab, position(0), (px, px, float(abs(plan.positions[1] - plan.positions[0])) if n_slices > 1 else plan.thickness), _direction(plan.plane))
        depth = self.placement.z_vertex - np.array([position(k)[2] for k in range(n_slices)]) if plan.plane == "axial" else np.full(n_slices, self.placement.z_vertex - plan.centre[2])
        if self.range_cut is not None:
            lmd = self.phantom.landmarks[self.range_cut["landmark"]]
            if plan.plane == "axial":
                span = (float(depth.min()) - plan.thickness / 2, float(depth.max()) + plan.thickness / 2)
            else:
                span = (float(self.placement.z_vertex - grid.z[0]), float(self.placement.z_vertex - grid.z[-1]))
            self.range_cut["coverage"][f"{role}:{plane}"] = bool(span[0] <= lmd <= span[1])
        regions = region_of_depth(self.phantom.landmarks, depth) if self.region != "knee" else ["knee"] * n_slices
        tissue = _TissueStats(lab, n_slices)
        truth: dict[str, Any] = {"sequence": role, "tr_ms": params["tr"], "te_ms": params["te"], "ti_ms": params.get("ti"), "fat_suppressed": bool(seq.get("fs")), "contrast": bool(seq.get("contrast")), "field_t": self.field, "b_values": [b for b in b_values if b is not None] or None, "slice_thickness_mm": plan.thickness, "laterality": self.laterality, "tissue_signal": tissue.means}
        s = SeriesOut(role=role, modality="MR", sop_class=MR_IMAGE, description=desc, images=LazyImages(n_slices * ns, make), attrs=attrs, plane=plane, kernel=None, thickness=plan.thickness, slice_regions=regions, label_volume=label_volume, truth=truth, body_part=self._body_part(), protocol=desc, on_image=tissue.hook)
        if ghost is not None:
            def _rec_ghost() -> None:
                self.ctx.record(ghost["pending"], sequence=role, plane=plane, phase_encode="COL", ghost_strength=round(ghost["strength"], 3), **{k: round(v, 3) for k, v in ghost_measure.items()}, ghost_to_signal=tissue.ghost_ratio())
            self.ctx.after_write.append(_rec_ghost)
            ghost["pending"].applied = True  # claimed by this series
            self._ghost_series = s
        bg = tissue
        self.ctx.after_write.append(lambda: self.ctx.measurements.setdefault("mr_background_sd", {}).__setitem__(f"{role}:{plane}", bg.background_sd()))
        out = [s]
        active = getattr(self, "_active_roles", None)
        if role == "DWI" and any(r2.role == "ADC" for r2 in (active if active is not None else self.roles_cache())):
            out.append(self._adc(s, luts, ref, vol, lab, plan, grid, position, orient, px, attrs, regions, label_volume))
        return out

    def _susceptibility(self, role: str, grid: Grid, perm: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
        """Signal void and pile-up crescent of the metal implant on this series' grid (slice, row, col).

        Metal dephases the spins around it: the void is the implant grown by a margin that
        scales with the field and the read-out (spin echo < EPI), displaced along the
        frequency-encode axis (columns), and the displaced signal piles up in a bright
        crescent on that side (protocols.yaml ``mr_susceptibility``).
        """
        assert self.metal is not None
        cfg = protocols()["mr_susceptibility"]
        grow = float(cfg["void_mm"].get(role, cfg["void_mm"]["default"])) * self.field / float(cfg["field_ref_t"])
        probe = Phantom()
        for sh in self.metal["shapes"]:
            probe.add(_grown(sh, grow), 1)
        void = paint(probe, grid, self.placement).transpose(perm) > 0
        shift = int(round(float(cfg["shift_mm"]) / px))
        void = _shift_cols(void, shift)
        width = max(1, int(round(float(cfg["rim_mm"]) / px)))
        rim = np.zeros_like(void)
        for w in range(1, width + 1):
            rim |= _shift_cols(void, w)
        return void, rim & ~void

    def roles_cache(self) -> list[SeriesRole]:
        if not hasattr(self, "_roles"):
            self._roles = self.spec.series and [SeriesRole(r.role, dict(r.params)) for r in self.spec.series] or [SeriesRole(d["role"], {"plane": d["plane"]}) for d in protocols()["default_series"]["MR"].get(self.region, [])]
        return self._roles

    def _adc(self, dwi: SeriesOut, luts, ref, vol, lab, plan, grid, position, orient, px, dwi_attrs, regions, label_volume) -> SeriesOut:  # type: ignore[no-untyped-def]
        """ADC map computed from the b=0 and highest-b images as the scanner would (derived)."""
        n = vol.shape[0]
        b_hi = max(b for b in luts if b)
        idx_hi = sorted(luts).index(b_hi)

        def make(k: int) -> ImageOut:
            s0 = dwi.images[k].pixels.astype(F)
            sb = dwi.images[idx_hi * n + k].pixels.astype(F)
            valid = s0 > max(20.0, float(np.percentile(s0, 60)) * 0.2)
            adc = np.where(valid, np.log(np.maximum(s0, 1) / np.maximum(sb, 1)) / b_hi, 0)
            stored = np.clip(np.rint(adc * 1e6), 0, 4095).astype(np.uint16)  # 1e-6 mm^2/s
            return ImageOut(stored, position=position(k), orientation=orient, spacing=(px, px), sources=[k, idx_hi * n + k])

        attrs = dict(dwi_attrs)
        attrs["ImageType"] = ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
        attrs["DerivationDescription"] = f"ADC from b=0 and b={b_hi} s/mm2 (mono-exponential)"
        attrs["WindowCenter"], attrs["WindowWidth"] = 1500, 3000
        attrs.pop("DiffusionBValue", None)
        desc = describe(self.ctx, "mr", self.ctx.rng(f"desc:ADC:{plan.plane}"), mr_role="ADC", plane=plan.plane)
        tissue = _TissueStats(lab, n)
        return SeriesOut(role="ADC", modality="MR", sop_class=MR_IMAGE, description=desc, images=LazyImages(n, make), attrs=attrs, plane=plan.plane, thickness=plan.thickness, derived_from=dwi, slice_regions=regions, label_volume=label_volume, truth={"sequence": "ADC", "units": "1e-6 mm2/s", "b_values": [0, b_hi], "tissue_signal": tissue.means}, body_part=dwi.body_part, protocol=dwi.protocol, on_image=tissue.hook)

    def _bias(self, n: int, rng: np.random.Generator) -> np.ndarray:
        yy, xx = np.mgrid[0:n, 0:n].astype(F) / F(max(n - 1, 1)) - F(0.5)
        a, b, c = (float(v) for v in rng.uniform(-0.15, 0.15, size=3))
        return (1 + a * xx + b * yy - abs(c) * (xx * xx + yy * yy) * 2).astype(F)

    def _private_b(self, b: float) -> dict[Any, Any]:
        return dict(vendor_private(self.ctx, b))

    def _headers(self, role: str, plan: Plan, params: dict[str, float]) -> dict[Any, Any]:
        seq = protocols()["mr_sequences"][role]
        rng = self.ctx.rng(f"hdr:{role}")

        def pick(v: Any) -> Any:
            return v

        ss = seq["ss"] if isinstance(seq["ss"], list) else [seq["ss"]]
        sv = seq["sv"] if isinstance(seq["sv"], list) else [seq["sv"]]
        so = seq["so"] if isinstance(seq["so"], list) else ([seq["so"]] if seq["so"] else [])
        attrs: dict[Any, Any] = {
            "ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"] if role == "DWI" else ["ORIGINAL", "PRIMARY", "M", "ND"],
            "ScanningSequence": pick(ss if len(ss) > 1 else ss[0]),
            "SequenceVariant": sv if len(sv) > 1 else sv[0],
            "ScanOptions": (so if len(so) > 1 else so[0]) if so else "",
            "MRAcquisitionType": "2D",
            "RepetitionTime": params["tr"],
            "EchoTime": params["te"],
            "EchoTrainLength": int(seq.get("etl", 1)),
            "MagneticFieldStrength": self.field,
            "ImagingFrequency": round(GAMMA_MHZ_T * self.field, 6),
            "ImagedNucleus": "1H",
            "FlipAngle": 90.0 if seq["model"] != "gre" else 20.0,
            "SliceThickness": plan.thickness,
            "SpacingBetweenSlices": round(float(abs(plan.positions[1] - plan.positions[0])) if len(plan.positions) > 1 else plan.thickness, 3),
            "NumberOfAverages": float(rng.choice([1, 2])),
            "PixelBandwidth": float(rng.uniform(130, 300)) if role != "DWI" else 1500.0,
            "AcquisitionMatrix": [0, plan.matrix, plan.matrix, 0],
            "InPlanePhaseEncodingDirection": "COL",
            "SequenceName": {"se": "*se2d1" if seq.get("etl", 1) == 1 else f"*tse2d1_{seq.get('etl', 1)}", "ir": "*tir2d1_16", "dwi": "*ep_b1000t", "adc": "*ep_b0_1000"}.get(seq["model"], "*se2d1"),
            "PatientPosition": "FFS" if self.region == "knee" else "HFS",
            "PhotometricInterpretation": "MONOCHROME2",
            "BitsStored": 12,
            "WindowCenter": 600,
            "WindowWidth": 1200,
        }
        if "ti" in params:
            attrs["InversionTime"] = params["ti"]
        if seq.get("contrast"):
            attrs.update({"ContrastBolusAgent": "Gd-DTPA" if self.ctx.language != "zh" else "钆喷酸葡胺", "ContrastBolusRoute": "IV", "ContrastBolusVolume": 15.0})
        if self.laterality:
            attrs["Laterality"] = self.laterality
        if self.ctx.vendor_key == "Philips":
            attrs["RescaleIntercept"] = 0
            attrs["RescaleSlope"] = round(float(rng.uniform(0.8, 3.0)), 5)
            attrs["RescaleType"] = "normalized"
        attrs.update(vendor_private(self.ctx))
        return attrs

    def _body_part(self) -> str:
        return {"head": "HEAD", "knee": "KNEE", "lumbar_spine": "LSPINE", "cervical_spine": "CSPINE", "thoracic_spine": "TSPINE"}[self.region]


class _TissueStats:
    """Mean written signal per structure, and background noise, collected from written pixels."""

    def __init__(self, lab: np.ndarray, n_slices: int) -> None:
        self.lab = lab
        self.n = n_slices
        self.sums: dict[int, float] = {}
        self.counts: dict[int, int] = {}
        self.means: dict[str, float] = {}
        self.bg: list[float] = []
        self.body_mean: list[float] = []
        self.ghost_bg: list[float] = []

    def hook(self, i: int, pixels: np.ndarray) -> None:
        k = i % self.n
        if i >= self.n:  # only the first image per slice (b = 0 for DWI)
            return
        lab = self.lab[k]
        flat = lab.ravel()
        vals = pixels.astype(np.float64).ravel()
        sums = np.bincount(flat, weights=vals, minlength=256)
        counts = np.bincount(flat, minlength=256)
        for sid in np.nonzero(counts)[0]:
            self.sums[int(sid)] = self.sums.get(int(sid), 0.0) + float(sums[sid])
            self.counts[int(sid)] = self.counts.get(int(sid), 0) + int(counts[sid])
        names = structure_names()
        for sid, c in self.counts.items():
            if sid:
                self.means[names.get(sid, str(sid))] = round(self.sums[sid] / c, 2)
        air = lab == 0
        if air.sum() > 50:
            self.bg.append(float(pixels[air].std()))
            self.ghost_bg.append(float(pixels[air].mean()))
        if (~air).sum() > 50:
            self.body_mean.append(float(pixels[~air].mean()))

    def background_sd(self) -> float:
        return round(float(np.median(self.bg)), 3) if self.bg else float("nan")

    def ghost_ratio(self) -> float:
        if not self.ghost_bg or not self.body_mean:
            return float("nan")
        return round(float(np.mean(self.ghost_bg) / max(np.mean(self.body_mean), 1e-6)), 4)


def _typed(vr: str, value: str) -> Any:
    """A private value in the Python type its VR needs."""
    if vr in ("SL", "SS", "UL", "US"):
        return int(float(value))
    if vr in ("FL", "FD"):
        return float(value)
    return value


def _direction(plane: str) -> tuple[float, ...]:
    return {"axial": (1, 0, 0, 0, 1, 0, 0, 0, -1), "sagittal": (0, 0, 1, 1, 0, 0, 0, -1, 0), "coronal": (1, 0, 0, 0, 0, 1, 0, -1, 0)}[plane]


def render_mr(ctx: ExamContext) -> list[SeriesOut]:
    return MRRenderer(ctx).render()


__all__ = ["render_mr", "MRRenderer", "structure_ids", "math"]


def _grown(shape: Shape, mm: float) -> Shape:
    """The shape enlarged by ``mm`` on every side (the susceptibility void around an implant)."""
    if isinstance(shape, Ellipsoid):
        return replace(shape, r=(shape.r[0] + mm, shape.r[1] + mm, shape.r[2] + mm))
    if isinstance(shape, Capsule):
        return replace(shape, r=shape.r + mm, r_b=(shape.r_b + mm) if shape.r_b is not None else None)
    if isinstance(shape, Box):
        return replace(shape, half=(shape.half[0] + mm, shape.half[1] + mm, shape.half[2] + mm))
    raise TypeError(f"no grown form for {type(shape).__name__}")


def _shift_cols(mask: np.ndarray, n: int) -> np.ndarray:
    """``mask`` moved ``n`` columns to the right (left when negative), zero-filled."""
    if n == 0:
        return mask.copy()
    out = np.zeros_like(mask)
    if n > 0:
        out[..., n:] = mask[..., :-n]
    else:
        out[..., :n] = mask[..., -n:]
    return out
