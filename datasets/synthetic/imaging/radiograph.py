"""Radiographs (DX / CR): line integrals of attenuation through the same phantoms.

A view paints the phantom on a coarse 3-D grid aligned with the beam, sums the linear
attenuation along the beam (log transmission), and processes it the way a DR console does
(normalisation inside the collimated field, edge enhancement, 12-bit output, quantum
noise set by the exposure index). Positioning is physical: patient rotation turns the
phantom, shallow inspiration raises the diaphragm, scapulae are placed over or lateral to
the lungs, foreign objects are metal shapes on the skin. Their truth is measured on the
projected structure masks (lung fields, scapulae, costophrenic angles) and geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import SeriesRole
from .anatomy import Materials, structure_ids
from .context import ExamContext, protocols, resolve_landmark
from .geometry import Capsule, Ellipsoid, Grid, Phantom, Placement, Shape, paint
from .image_ops import blur2d, burn_text, text_mask
from .phantom_body import Habitus, build_body, draw_habitus
from .phantom_knee import build_knee
from .series import CR_IMAGE, DX_IMAGE, ImageOut, SeriesOut, describe, words

F = np.float32
MU_WATER = 0.0195  # 1/mm
#: metal (steel, jewellery, ECG electrode snaps) relative to water on a radiograph: real steel
#: at 60 keV attenuates ~46x water (bone ~3x); CT's 3071 HU clamp would make it only ~4x
METAL_MU_WATER = float(protocols()["radiograph"]["metal_mu_water"])

#: detector field (width x height, mm), centre landmark (depth) and SID (mm) per region
FIELDS: dict[str, dict[str, Any]] = {
    "chest": {"size": (430, 430), "centre": "chest", "sid": 1800, "code": ("43799004", "Chest")},
    "abdomen": {"size": (350, 430), "centre": "L3_center", "sid": 1100, "code": ("818981001", "Abdomen")},
    "pelvis": {"size": (430, 350), "centre": "pelvis", "sid": 1100, "code": ("816092008", "Pelvis")},
    "cervical_spine": {"size": (180, 240), "centre": "C4_center", "sid": 1500, "code": ("122494005", "Cervical spine")},
    "thoracic_spine": {"size": (300, 430), "centre": "T7_center", "sid": 1100, "code": ("122495006", "Thoracic spine")},
    "lumbar_spine": {"size": (300, 430), "centre": "L3_center", "sid": 1100, "code": ("122496007", "Lumbar spine")},
    "knee": {"size": (240, 300), "centre": "joint_line", "sid": 1100, "code": ("72696002", "Knee")},
}
LUNGS = ("lung_left", "lung_right")
#: structures whose projections are written as label channels (in this order, when present)
PROJECTED = ("lung_left", "lung_right", "heart", "scapula_left", "scapula_right", "clavicle_left", "clavicle_right", "ribs", "vertebrae_cervical", "vertebrae_thoracic", "vertebrae_lumbar", "pelvis_bones", "sacrum", "femur_left", "femur_right", "tibia", "fibula", "patella", "foreign_object")


@dataclass
class View:
    role: str
    view: str  # PA, AP, LAT, OBL
    axis: str  # beam axis: "y" (frontal) or "x" (lateral)


class DXRenderer:
    def __init__(self, ctx: ExamContext) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.region = self.spec.regions[0]
        if self.region not in FIELDS:
            raise ValueError(f"radiograph of {self.region!r} is not modelled: use {', '.join(FIELDS)}")
        self.rng = ctx.rng("dx")
        self.m = Materials()
        arng = ctx.rng("anatomy")
        self.sizes = ctx.size_table
        self.defects: dict[str, Any] = {k: ctx.take(k) for k in ("rotation", "scapula_over_lung", "shallow_inspiration", "costophrenic_cutoff", "collimation_too_wide", "marker_missing", "marker_wrong", "foreign_object", "off_centre", "excess_noise", "blur", "motion", "grid_lines", "dose_above_reference", "dose_not_recorded")}
        if self.region == "knee":
            self.laterality = str(self.spec.header.get("Laterality") or self.spec.evidence.get("laterality") or ("R" if arng.random() < 0.5 else "L"))
            self.phantom: Phantom = build_knee(self.m, self.laterality, arng)
            self.habitus: Habitus | None = None
        else:
            self.laterality = "U"
            h = draw_habitus(arng, self.spec.sex, self.spec.age)
            if self.defects["shallow_inspiration"]:
                p = self.defects["shallow_inspiration"]
                h.inspiration_ribs = float(p.params.get("ribs") or self.rng.uniform(7.2, 8.6))
            if self.defects["scapula_over_lung"]:
                h.scapula_over_lung = True
            self.habitus = h
            self.phantom = build_body(h, self.m, with_table=False, rng=arng)
        self.foreign: list[dict[str, Any]] = []
        if self.defects["foreign_object"] and self.region != "knee":
            self._add_foreign()
        self.rotation = 0.0
        if self.defects["rotation"]:
            p = self.defects["rotation"]
            self.rotation = float(p.params.get("degrees") or self.rng.uniform(6, 12) * (1 if self.rng.random() < 0.5 else -1))
        else:
            self.rotation = float(self.rng.normal(0, 1.0))
        self.series: list[SeriesOut] = []

    # ------------------------------------------------------------------ planning
    def views(self) -> list[View]:
        if self.spec.series:
            names = [r.role for r in self.spec.series]
        else:
            names = list(protocols()["default_series"]["DX"].get(self.region, ["AP"]))
        extra = self.spec.evidence.get("extra_views") or []
        names += [str(v) for v in extra]
        if self.spec.evidence.get("duplicate_view") and names:
            names.append(names[0])
        out = []
        for i, n in enumerate(names):
            view = n.upper()
            if view in ("LL", "RL", "LATERAL"):
                view = "LAT"
            if view not in ("PA", "AP", "LAT", "OBL"):
                raise ValueError(f"radiograph view {n!r}: expected PA, AP, LAT or OBL")
            role = n if names.count(n) == 1 else f"{n}_{i + 1}"
            out.append(View(role, view, "x" if view == "LAT" else "y"))
        return out

    def _add_foreign(self) -> None:
        p = self.defects["foreign_object"]
        assert p is not None and self.habitus is not None
        h = self.habitus
        kind = p.params.get("object") or str(self.rng.choice(["necklace", "buttons", "ecg_leads", "coin"]))
        ant = -(112 * h.depth + h.fat_mm + 4)
        sd = h.height
        shapes: list[Shape] = []
        if kind == "necklace":
            for t in np.linspace(-1, 1, 15):
                shapes.append(Ellipsoid((float(70 * t * h.width), ant + 10 * t * t, (300 + 60 * (1 - t * t)) * sd), (4, 4, 4)))
        elif kind == "buttons":
            side = 1 if self.rng.random() < 0.5 else -1  # a coat's buttons, off the midline
            for k in range(4):
                shapes.append(Ellipsoid((side * 55 * h.width + float(self.rng.normal(0, 4)), ant, (330 + 45 * k) * sd), (7, 4, 7)))
        elif kind == "ecg_leads":
            for x, d in ((-60, 350), (60, 350), (-50, 480), (70, 470)):
                c = (x * h.width, ant, d * sd)
                shapes.append(Ellipsoid(c, (9, 4, 9)))
                shapes.append(Capsule(c, (x * 0.3 * h.width, ant - 5, 560 * sd), 1.2))
        elif kind == "bra_clip":
            back = 108 * h.depth + h.fat_mm + 3
            for x in (-90, 90):
                shapes.append(Capsule((x * h.width, back - 20, 420 * sd), (x * 0.2 * h.width, back, 425 * sd), 1.5))
            shapes.append(Ellipsoid((0, back, 425 * sd), (12, 2, 7)))
        else:
            shapes.append(Ellipsoid((float(self.rng.uniform(-80, 80)), ant, float(self.rng.uniform(380, 470)) * sd), (11, 4, 11)))
        for s in shapes:
            self.phantom.add(s, self.m("foreign_object", "metal"))
        self.foreign.append({"object": kind, "count": len(shapes)})

    def centre_depth(self) -> float:
        lm = self.phantom.landmarks
        key = FIELDS[self.region]["centre"]
        if key == "chest":
            return (lm["lung_apex"] + lm["lung_base"]) / 2
        if key == "pelvis":
            return (lm["iliac_crest"] + lm["pubic_symphysis"]) / 2 + 15
        return lm[key]

    # ------------------------------------------------------------------ projection
    def project(self, v: View, width: float, height: float, centre_d: float, step: float, lateral_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Line integral image (rows: head->feet, cols: viewer left->right) and structure masks."""
        full = self.spec.size == "full"
        depth_extent = 420.0 if self.region != "knee" else 200.0
        dstep = 3.0 if full else 5.0
        nr, nc = max(8, int(height / step)), max(8, int(width / step))
        nd = max(8, int(depth_extent / dstep))
        lateral = (np.linspace(-width / 2, width / 2, nc) + lateral_offset).astype(F)
        beam = np.linspace(-depth_extent / 2, depth_extent / 2, nd).astype(F)
        z_vertex = 0.0
        rows = (z_vertex - (centre_d - height / 2 + np.arange(nr) * (height / max(nr - 1, 1)))).astype(F)
        if v.axis == "y":
            grid = Grid(x=lateral, y=beam, z=rows)
        else:
            grid = Grid(x=beam, y=lateral, z=rows)
        rot = self.rotation + (45.0 if v.view == "OBL" else 0.0)
        placement = Placement(z_vertex=z_vertex, rotation_deg=rot if self.region != "knee" else 0.0)
        vol = paint(self.phantom, grid, placement)  # (rows, y, x)
        hu = self.m.hu_lut("native")[vol]
        mu = np.maximum(hu / 1000.0 + 1.0, 0) * MU_WATER
        metal_ids = self.m.tissue_ids({"metal"})
        if metal_ids:
            # metal is clamped at 3071 HU for CT; on a radiograph it attenuates like steel
            # (~40x water at 60 keV), far above bone, so it is written separately
            mu[np.isin(vol, metal_ids)] = F(METAL_MU_WATER * MU_WATER)
        axis = 1 if v.axis == "y" else 2
        proj = mu.sum(axis=axis) * dstep  # (rows, cols)
        # one pass: each projected structure is a bit; OR along the beam
        ids = structure_ids()
        bit_of = {ids[name]: k for k, name in enumerate(PROJECTED)}
        lut = np.zeros(256, dtype=np.uint32)
        for mat, sid in enumerate(self.m.label_lut()):
            if int(sid) in bit_of:
                lut[mat] = np.uint32(1) << np.uint32(bit_of[int(sid)])
        bits = np.bitwise_or.reduce(lut[vol], axis=axis)
        masks = {name: ((bits >> np.uint32(k)) & 1).astype(bool) for k, name in enumerate(PROJECTED) if ((bits >> np.uint32(k)) & 1).any()}
        # frontal: columns run patient right -> left; lateral: anterior -> posterior
        return proj.astype(F), np.asarray(rows), masks

    # ------------------------------------------------------------------ render
    def render(self) -> list[SeriesOut]:
        full = self.spec.size == "full"
        matrix_choices = self.sizes["dx_matrix"]
        for idx, v in enumerate(self.views()):
            width, height = FIELDS[self.region]["size"]
            if v.view == "LAT" and self.region == "chest":
                width = 400
            n = int(self.ctx.rng(f"dxmatrix:{idx}").choice(matrix_choices))
            pitch = max(width, height) / n
            step = max(pitch, 1.6 if full else 3.0)
            centre_d = self.centre_depth()
            offset = self._centring()
            proj, rows_z, masks = self.project(v, width, height, centre_d + offset[1], step, offset[0])
            self.series.append(self._series(idx, v, proj, masks, width, height, pitch, centre_d, offset))
        for k, p in self.defects.items():
            if p is not None and not p.applied:
                self.ctx.skip(p, f"{k} not applicable to {self.region} {self.spec.modality}")
        return self.series

    def _centring(self) -> tuple[float, float]:
        p = self.defects["off_centre"]
        if not p:
            return (float(self.rng.normal(0, 5)), float(self.rng.normal(0, 6)))
        direction = p.params["direction"]
        mm = float(p.params.get("offset_mm") or self.rng.uniform(40, 70))
        # the central ray / field moves that way; the anatomy appears shifted the opposite way
        return {"left": (-mm, 0.0), "right": (mm, 0.0), "up": (0.0, -mm), "down": (0.0, mm)}[direction]

    def _series(self, idx: int, v: View, proj: np.ndarray, masks: dict[str, np.ndarray], width: float, height: float, pitch: float, centre_d: float, offset: tuple[float, float]) -> SeriesOut:
        ctx = self.ctx
        rng = ctx.rng(f"dx:{idx}")
        nr, nc = int(round(height / pitch)), int(round(width / pitch))
        img = _resize(proj, (nr, nc))
        masks = {k: _resize_nearest(m, (nr, nc)) for k, m in masks.items()}
        lung = masks.get("lung_left", np.zeros((nr, nc), bool)) | masks.get("lung_right", np.zeros((nr, nc), bool))
        truth: dict[str, Any] = {"view": v.view, "region": self.region, "pixel_spacing_mm": round(pitch, 4), "rotation_deg": round(self.rotation, 2), "field_shift_mm": {"x": round(offset[0], 1), "y": round(offset[1], 1)}}
        self._field_geom = (centre_d + offset[1], height)
        # --- collimation
        field = self._collimation(v, lung, masks, nr, nc, pitch, truth)
        r0, r1, c0, c1 = field
        # --- exposure and processing
        ei_target = 400.0
        di = float(rng.normal(0, 0.6))
        if self.defects["excess_noise"]:
            pn = self.defects["excess_noise"].params
            di = float(pn.get("deviation_index") or (-20 * math.log10(float(pn["factor"])) if pn.get("factor") else rng.uniform(-5.5, -3.5)))
        if self.defects["dose_above_reference"]:
            di = float(rng.uniform(3.5, 5.0))
        ei = ei_target * 10 ** (di / 10)
        inside = np.zeros((nr, nc), bool)
        inside[r0:r1, c0:c1] = True
        fo_mask = masks.get("foreign_object")
        if fo_mask is not None and fo_mask.any() and (inside & ~fo_mask).any():
            # the console's histogram analysis leaves the saturated metal out of the normalisation
            sample_from = inside & ~fo_mask
            sample = img[sample_from][:: max(1, int(sample_from.sum()) // 200000)]
        else:
            sample = img[inside][:: max(1, int(inside.sum()) // 200000)] if inside.any() else img.ravel()
        lo, hi = np.percentile(sample, [1, 99.5])
        norm = np.clip((img - lo) / max(hi - lo, 1e-3), 0, 1.2)
        # console edge enhancement: the low-pass is computed on the coarse projection (cheap at 2k px)
        coarse_pitch = width / proj.shape[1]
        low = _resize(blur2d(np.clip((proj - lo) / max(hi - lo, 1e-3), 0, 1.2), max(0.5, 3.0 / coarse_pitch)), (nr, nc))
        enhanced = norm + 0.6 * (norm - low)
        if self.defects["blur"] or self.defects["motion"]:
            pb = self.defects["blur"] or self.defects["motion"]
            sigma = float(pb.params.get("sigma_px") or max(1.5, float(pb.params.get("sigma_mm") or 2.0) / pitch))
            if pb is self.defects["blur"]:
                enhanced = blur2d(enhanced, sigma)
                ctx.record(pb, sigma_px=round(sigma, 3), view=v.view)
            else:
                # motion smears along one axis by the distance moved during the exposure (smear_mm,
                # from the defect's severity); without it the older fixed 2-sigma box (about 4 mm)
                smear_px = int(round(float(pb.params["smear_mm"]) / pitch)) if pb.params.get("smear_mm") else int(max(2, sigma * 2))
                enhanced = _motion_blur(enhanced, max(2, smear_px))
                ctx.record(pb, sigma_px=round(sigma, 3), smear_px=max(2, smear_px), smear_mm=round(max(2, smear_px) * pitch, 2), view=v.view)
            self.defects["blur" if pb is self.defects["blur"] else "motion"] = None
        values = np.clip(enhanced, 0, 1.1) ** 0.85 * 3300 + 300
        noise_sd = 25.0 * math.sqrt(ei_target / ei)
        values = values + rng.normal(0, noise_sd, values.shape).astype(F)
        if self.defects["grid_lines"]:
            p = self.defects["grid_lines"]
            period = int(p.params.get("period_px") or 3)
            values = values + 60.0 * ((np.arange(nc) % period) == 0).astype(F)[None, :]
            ctx.record(p, period_px=period, amplitude=60.0, view=v.view)
            self.defects["grid_lines"] = None
        outside_value = 4000.0 if rng.random() < 0.6 else 50.0
        values[~inside] = outside_value + rng.normal(0, 10, int((~inside).sum()))
        # --- markers and annotations
        self._marker(v, values, lung, field, truth, pitch)
        ann = [{"PA": "PA", "AP": "AP", "LAT": "LAT", "OBL": "OBL"}[v.view], "立位" if self.region == "chest" else "卧位"]
        boxes = burn_text(values, ann, 3900, "br", size=max(7, nr // 40))
        truth["annotations"] = boxes
        # --- measured positioning truth
        self._positioning_truth(v, masks, lung, field, truth, pitch, nr, nc)
        pixels = np.clip(np.rint(values), 0, 4095).astype(np.uint16)
        mono1 = ctx.vendor_key in ("Philips", "Canon") or self.spec.modality == "CR"
        if mono1:
            pixels = (4095 - pixels).astype(np.uint16)
        # --- label map: projections overlap, so one binary channel per structure
        channels = [name for name in PROJECTED if name in masks and masks[name].any()]
        lab = np.stack([masks[name] for name in channels]).astype(np.uint8) if channels else np.zeros((1, nr, nc), np.uint8)
        truth["label_channels"] = channels
        attrs = self._attrs(v, pitch, ei, ei_target, di, field, mono1)
        region_words = words("region", self.region)
        desc = describe(ctx, "dx", ctx.rng(f"desc:dx:{idx}"), region=self.region, view=v.view)
        truth["exposure_index"] = round(ei, 1)
        truth["deviation_index"] = round(di, 2)
        truth["noise_sd"] = round(noise_sd, 2)
        modality = "CR" if self.spec.modality == "CR" else "DX"
        image = ImageOut(pixels, attrs={})
        s = SeriesOut(role=v.role, modality=modality, sop_class=CR_IMAGE if modality == "CR" else DX_IMAGE, description=desc, images=[image], attrs=attrs, plane="projection", body_part=region_words.get("body_part"), protocol=desc, burn_identifiers=True, truth=truth, label_volume=(lab, (0.0, 0.0, 0.0), (pitch, pitch, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)), slice_regions=[self.region])
        self.ctx.measurements.setdefault("radiograph", {})[v.role] = {k: v2 for k, v2 in truth.items() if k not in ("annotations",)}
        return s

    def _collimation(self, v: View, lung: np.ndarray, masks: dict[str, np.ndarray], nr: int, nc: int, pitch: float, truth: dict[str, Any]) -> tuple[int, int, int, int]:
        """Collimated field (rows r0:r1, cols c0:c1): anatomy plus margins, unless a defect says otherwise."""
        target = lung if (self.region == "chest" and lung.any()) else np.ones((nr, nc), bool)
        rows = np.nonzero(target.any(axis=1))[0]
        cols = np.nonzero(target.any(axis=0))[0]
        if self.region == "chest" and len(rows):
            margin = [int(round(m / pitch)) for m in self.rng.uniform(12, 30, size=4)]
            r0, r1 = rows[0] - margin[0], rows[-1] + 1 + margin[1]
            c0, c1 = cols[0] - margin[2], cols[-1] + 1 + margin[3]
        else:
            inset = [int(round(m / pitch)) for m in self.rng.uniform(5, 20, size=4)]
            r0, r1, c0, c1 = inset[0], nr - inset[1], inset[2], nc - inset[3]
        p = self.defects["collimation_too_wide"]
        if p:
            extra = float(p.params.get("margin_mm") or self.rng.uniform(60, 110))
            e = int(round(extra / pitch))
            r0, r1, c0, c1 = r0 - e, r1 + e, c0 - e, c1 + e
        p_cut = self.defects["costophrenic_cutoff"]
        cut_mm = 0.0
        wanted = [str(n) for n in (p_cut.params.get("missing") or [])] if p_cut else []
        if p_cut and self.region == "chest" and len(rows):
            cut_mm = float(p_cut.params.get("cut_mm") or self.rng.uniform(15, 35))
            right_only = wanted == ["costophrenic_angle_right"]
            if right_only and "lung_right" in masks and v.view in ("PA", "AP"):
                # the patient's right lung lies on the image left (PA/AP): cut the lateral edge there
                rl = masks["lung_right"]
                lo_rows = np.nonzero(rl.any(axis=1))[0]
                base = rl[lo_rows[-1] - max(1, int(round(30 / pitch))) :]
                lateral = np.nonzero(base.any(axis=0))[0]
                if len(lateral):
                    c0 = int(lateral[0]) + int(round(cut_mm / pitch))
            else:
                r1 = rows[-1] + 1 - int(round(cut_mm / pitch))
        elif p_cut and self.region != "chest":
            cut_mm = float(p_cut.params.get("cut_mm") or self.rng.uniform(10, 30))
            lm = self.phantom.landmarks
            top_d, height = self._field_geom[0] - self._field_geom[1] / 2, self._field_geom[1]
            for name in wanted or ["__bottom__"]:
                key = resolve_landmark(name, lm) if name != "__bottom__" else None
                if key is None and name == "lesser_trochanter":
                    lm["lesser_trochanter"] = lm["pubic_symphysis"] + 45.0 * (self.habitus.height if self.habitus else 1.0)
                    key = "lesser_trochanter"
                if key is None:
                    r1 = int(nr * 0.8)
                    continue
                row = int(round((lm[key] - top_d) / height * nr))
                if row < nr / 2:
                    r0 = max(r0, row + int(round(cut_mm / pitch)))
                else:
                    r1 = min(r1, row - int(round(cut_mm / pitch)))
            truth["range_cut"] = {"missing": wanted, "cut_mm": round(cut_mm, 1)}
        r0, r1, c0, c1 = max(0, r0), min(nr, r1), max(0, c0), min(nc, c1)
        has = self.region == "chest" and len(rows) > 0
        margins = {"top": (rows[0] - r0) * pitch if has else None, "bottom": (r1 - 1 - rows[-1]) * pitch if has else None, "left": (cols[0] - c0) * pitch if has else None, "right": (c1 - 1 - cols[-1]) * pitch if has else None}
        truth["collimation_px"] = {"rows": [int(r0), int(r1)], "cols": [int(c0), int(c1)]}
        truth["collimation_margin_mm"] = {k: (round(float(val), 1) if val is not None else None) for k, val in margins.items()}
        if p and v.view == self.views()[0].view:
            self.ctx.record(p, margin_added_mm=round(extra, 1), collimation_margin_mm=truth["collimation_margin_mm"], view=v.view)
        if p_cut and self.region != "chest" and v.view == self.views()[0].view:
            self.ctx.record(p_cut, missing=wanted, cut_mm=round(cut_mm, 1), field_rows=[int(max(0, r0)), int(min(nr, r1))], view=v.view)
        if p_cut and self.region == "chest" and len(rows):
            cut_sides = []
            for side in LUNGS:
                m = masks.get(side)
                if m is not None and m.any():
                    outside = m.copy()
                    outside[r0:r1, c0:c1] = False
                    if outside.any():
                        cut_sides.append(side)
            truth["costophrenic_cut"] = {"cut_mm": round(cut_mm, 1), "lungs_cut": cut_sides}
            if v.view in ("PA", "AP"):
                self.ctx.record(p_cut, cut_mm=round(cut_mm, 1), lungs_cut=cut_sides, lung_rows_outside_field=int(max(0, rows[-1] + 1 - r1)), view=v.view)
        return int(r0), int(r1), int(c0), int(c1)

    def _marker(self, v: View, values: np.ndarray, lung: np.ndarray, field: tuple[int, int, int, int], truth: dict[str, Any], pitch: float) -> None:
        """Lead L/R marker on the correct side (patient left = image right on PA/AP), unless a defect."""
        r0, r1, c0, c1 = field
        size = max(8, int(round(14 / pitch)))
        if v.view in ("PA", "AP"):
            true_side = "L" if self.rng.random() < 0.5 else "R"
            col_right = true_side == "L"  # patient's left appears on the image right
        else:
            true_side = "L" if self.rng.random() < 0.7 else "R"  # side against the detector
            col_right = True
        text = true_side
        missing = self.defects["marker_missing"]
        wrong = self.defects["marker_wrong"]
        if missing:
            truth["marker"] = {"present": False, "expected": true_side}
            self.ctx.record(missing, present=False, view=v.view)
            self.defects["marker_missing"] = None
            return
        if wrong:
            text = "R" if true_side == "L" else "L"
        m = text_mask(text, size)
        h, w = m.shape
        row = r0 + max(2, int(0.04 * (r1 - r0)))
        col = (c1 - w - max(2, int(0.04 * (c1 - c0)))) if col_right else (c0 + max(2, int(0.04 * (c1 - c0))))
        row, col = max(0, min(row, values.shape[0] - h)), max(0, min(col, values.shape[1] - w))
        values[row : row + h, col : col + w][m] = 4050
        over_lung = bool(lung[row : row + h, col : col + w][m].any())
        truth["marker"] = {"present": True, "text": text, "side_of_image": "right" if col_right else "left", "correct": text == true_side, "over_lung": over_lung, "box": [int(row), int(col), int(h), int(w)]}
        if wrong:
            self.ctx.record(wrong, text=text, expected=true_side, side_of_image=truth["marker"]["side_of_image"], view=v.view)
            self.defects["marker_wrong"] = None

    def _positioning_truth(self, v: View, masks: dict[str, np.ndarray], lung: np.ndarray, field: tuple[int, int, int, int], truth: dict[str, Any], pitch: float, nr: int, nc: int) -> None:
        ph = self.phantom
        if self.region == "chest" and self.habitus is not None and v.view in ("PA", "AP"):
            # inspiration: posterior ribs whose back segment lies above the right dome
            ribs = ph.extra["ribs"]
            dome = ph.extra["domes"]["right"]
            count = sum(1 for k in range(12) if ribs.rib_depth(k, 0.6) < dome)  # type: ignore[attr-defined]
            truth["posterior_ribs_above_right_dome"] = count
            # rotation: spinous process vs midpoint of the medial clavicle ends
            th = math.radians(self.rotation)
            y_sp = ph.extra["spinous_y"]["T3"] + 20.0
            clav = ph.extra["clavicles"]
            mids = [clav[k][0] for k in ("clavicle_left", "clavicle_right")]
            xs = [math.cos(th) * x - math.sin(th) * y for x, y, _ in mids]
            sp = -math.sin(th) * y_sp
            truth["spinous_to_clavicle_midpoint_mm"] = round(sp - (xs[0] + xs[1]) / 2, 2)
            # scapula over the lung fields: fraction of each scapula's projection inside the lungs
            frac = {}
            for side in ("scapula_left", "scapula_right"):
                sm = masks.get(side)
                frac[side] = round(float((sm & lung).sum() / max(sm.sum(), 1)), 4) if sm is not None else 0.0
            truth["scapula_in_lung_fraction"] = frac
            # centring: lung-field centroid vs image centre
            if lung.any():
                ys, xs_ = np.nonzero(lung)
                truth["lung_centroid_offset_mm"] = {"x": round(float(xs_.mean() - (nc - 1) / 2) * pitch, 1), "y": round(float(ys.mean() - (nr - 1) / 2) * pitch, 1)}
        fo = masks.get("foreign_object")
        if fo is not None and fo.any():
            r0, r1, c0, c1 = field
            truth["foreign_object_px"] = int(fo.sum())
            truth["foreign_object_over_lung_px"] = int((fo & lung).sum())
            truth["foreign_object_in_field_px"] = int(fo[r0:r1, c0:c1].sum())
        if self.defects["rotation"] and v.view in ("PA", "AP"):
            self.ctx.record(self.defects["rotation"], degrees=round(self.rotation, 2), spinous_to_clavicle_midpoint_mm=truth.get("spinous_to_clavicle_midpoint_mm"), view=v.view)
            self.defects["rotation"] = None
        if self.defects["scapula_over_lung"] and "scapula_in_lung_fraction" in truth:
            self.ctx.record(self.defects["scapula_over_lung"], scapula_in_lung_fraction=truth["scapula_in_lung_fraction"], view=v.view)
            self.defects["scapula_over_lung"] = None
        if self.defects["shallow_inspiration"] and "posterior_ribs_above_right_dome" in truth:
            self.ctx.record(self.defects["shallow_inspiration"], posterior_ribs_above_right_dome=truth["posterior_ribs_above_right_dome"], view=v.view)
            self.defects["shallow_inspiration"] = None
        if self.defects["foreign_object"] and self.foreign and v.view in ("PA", "AP") and truth.get("foreign_object_in_field_px", 0) > 0:
            # recorded only where the object lies inside the exposed field of a frontal view
            self.ctx.record(self.defects["foreign_object"], objects=self.foreign, foreign_object_px=truth.get("foreign_object_px", 0), over_lung_px=truth.get("foreign_object_over_lung_px", 0), in_field_px=truth["foreign_object_in_field_px"], attenuation_x_water=METAL_MU_WATER, view=v.view)
            self.defects["foreign_object"] = None
        if self.defects["off_centre"] and v.view in ("PA", "AP"):
            p = self.defects["off_centre"]
            self.ctx.record(p, direction_image=p.params["direction"], field_shift_mm=truth.get("field_shift_mm"), lung_centroid_offset_mm=truth.get("lung_centroid_offset_mm"), view=v.view)
            self.defects["off_centre"] = None
        if self.defects["excess_noise"]:
            self.ctx.record(self.defects["excess_noise"], deviation_index=truth.get("deviation_index"), view=v.view)
            self.defects["excess_noise"] = None
        if self.defects["dose_above_reference"]:
            self.ctx.record(self.defects["dose_above_reference"], view=v.view)
            self.defects["dose_above_reference"] = None

    def _attrs(self, v: View, pitch: float, ei: float, ei_target: float, di: float, field: tuple[int, int, int, int], mono1: bool) -> dict[str, Any]:
        from pydicom.dataset import Dataset

        code = FIELDS[self.region]["code"]
        region_item = Dataset()
        region_item.CodeValue, region_item.CodingSchemeDesignator, region_item.CodeMeaning = code[0], "SCT", code[1]
        view_position = {"PA": "PA", "AP": "AP", "LAT": "LL", "OBL": "LAO"}[v.view]
        orientation = ["L", "F"] if v.view in ("PA", "AP", "OBL") else ["P", "F"]
        r0, r1, c0, c1 = field
        sid = FIELDS[self.region]["sid"]
        kvp = 120 if self.region == "chest" else (65 if self.region == "knee" else 80)
        attrs: dict[str, Any] = {
            "ImageType": ["ORIGINAL", "PRIMARY"],
            "PresentationIntentType": "FOR PRESENTATION",
            "DetectorType": "SCINTILLATOR",
            "ImagerPixelSpacing": [round(pitch, 4), round(pitch, 4)],
            "PixelSpacing": [round(pitch, 4), round(pitch, 4)],
            "ViewPosition": view_position,
            "ImageLaterality": self.laterality if self.region == "knee" else "U",
            "PatientOrientation": orientation,
            "PixelIntensityRelationship": "LOG",
            "PixelIntensityRelationshipSign": 1 if mono1 else -1,
            "PhotometricInterpretation": "MONOCHROME1" if mono1 else "MONOCHROME2",
            "RescaleIntercept": 0,
            "RescaleSlope": 1,
            "RescaleType": "US",
            "PresentationLUTShape": "INVERSE" if mono1 else "IDENTITY",
            "LossyImageCompression": "00",
            "BitsStored": 12,
            "WindowCenter": 2048,
            "WindowWidth": 4096,
            "KVP": kvp,
            "ExposureInuAs": int(ei * 8),
            "DistanceSourceToDetector": float(sid),
            "DistanceSourceToPatient": float(sid - 150),
            "EstimatedRadiographicMagnificationFactor": sid / (sid - 150),
            "Grid": "FOCUSED" if self.region != "knee" else "NONE",
            "PositionerType": "COLUMN",
            "AcquisitionContextSequence": [],
            "ExposureIndex": round(ei, 1),
            "TargetExposureIndex": ei_target,
            "DeviationIndex": round(di, 2),
            "AnatomicRegionSequence": [region_item],
            "CollimatorShape": "RECTANGULAR",
            "CollimatorLeftVerticalEdge": int(c0),
            "CollimatorRightVerticalEdge": int(c1 - 1),
            "CollimatorUpperHorizontalEdge": int(r0),
            "CollimatorLowerHorizontalEdge": int(r1 - 1),
        }
        if self.spec.modality == "CR":
            for key in ("PresentationIntentType", "DetectorType", "PixelIntensityRelationshipSign", "DeviationIndex", "PositionerType", "AcquisitionContextSequence", "PixelSpacing"):
                attrs.pop(key, None)
        if self.defects.get("dose_not_recorded"):
            p = self.defects["dose_not_recorded"]
            for key in ("ExposureIndex", "TargetExposureIndex", "DeviationIndex", "ExposureInuAs"):
                attrs.pop(key, None)
            self.ctx.record(p, exposure_index_in_header=False)
            self.defects["dose_not_recorded"] = None
        return attrs


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (numpy only)."""
    nr, nc = shape
    r = np.linspace(0, a.shape[0] - 1, nr)
    c = np.linspace(0, a.shape[1] - 1, nc)
    r0 = np.floor(r).astype(int)
    c0 = np.floor(c).astype(int)
    r1 = np.minimum(r0 + 1, a.shape[0] - 1)
    c1 = np.minimum(c0 + 1, a.shape[1] - 1)
    wr = (r - r0).astype(F)[:, None]
    wc = (c - c0).astype(F)[None, :]
    a = a.astype(F)
    top = a[r0][:, c0] * (1 - wc) + a[r0][:, c1] * wc
    bot = a[r1][:, c0] * (1 - wc) + a[r1][:, c1] * wc
    return top * (1 - wr) + bot * wr


def _resize_nearest(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a mask (index look-up, no arithmetic)."""
    ri = np.minimum((np.arange(shape[0]) * m.shape[0] / shape[0]).astype(int), m.shape[0] - 1)
    ci = np.minimum((np.arange(shape[1]) * m.shape[1] / shape[1]).astype(int), m.shape[1] - 1)
    return m[np.ix_(ri, ci)]


def _motion_blur(img: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros_like(img)
    for k in range(length):
        out += np.roll(img, k - length // 2, axis=0)
    return out / length


def render_radiographs(ctx: ExamContext) -> list[SeriesOut]:
    return DXRenderer(ctx).render()


__all__ = ["render_radiographs", "SeriesRole"]
