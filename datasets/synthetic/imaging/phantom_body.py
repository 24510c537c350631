"""One continuous human body, vertex to upper thighs, built from parametric shapes.

The same body serves CT (sampled on axial grids), MR (same geometry, tissue relaxation
instead of HU) and radiographs (line integrals through it), so a chest + abdomen + pelvis
acquisition is one volume and every slice has a known body region and landmark distance.

The reference anatomy below is an adult male of 175 cm written in millimetres in the
phantom frame (x: patient left, y: posterior, d: depth below the vertex). A
:class:`Habitus` drawn per patient scales it (height, width, depth), sets the fat
thickness, organ sizes and the breathing state, so bodies differ with age and sex.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .anatomy import Materials
from .geometry import Box, Capsule, Dome, Ellipsoid, Phantom, Ribs, Shape, Tube, depth_extent

# Reference vertebral column: (name, body height, disc below, rx, ry) in mm.
_CERVICAL = [(f"C{i}", 13.0, 5.0, 9.0, 8.0) for i in range(1, 8)]
_THORACIC = [(f"T{i}", 19.0, 5.0, 12.0 + i * 0.35, 11.0 + i * 0.3) for i in range(1, 13)]
_LUMBAR = [(f"L{i}", 26.0, 9.0, 20.0 + i * 0.6, 15.0 + i * 0.3) for i in range(1, 6)]
#: Depth of the top of C1 (just below the foramen magnum) in the reference body.
_C1_TOP = 145.0

# Torso muscle boundary (inside the subcutaneous fat): depth knots and cross-section.
_TORSO_D = [165, 230, 262, 285, 305, 360, 420, 480, 540, 600, 660, 720, 780, 840, 885]
_TORSO_RX = [48, 52, 62, 145, 170, 170, 160, 156, 150, 145, 143, 150, 158, 160, 158]
_TORSO_RY = [48, 52, 56, 80, 98, 104, 107, 106, 103, 99, 97, 95, 93, 90, 86]
_TORSO_CY = [12, 12, 14, 14, 10, 6, 3, 1, 0, 0, 0, 1, 3, 5, 5]
_TORSO_P = [2.0, 2.0, 2.1, 2.4, 2.6, 2.5, 2.4, 2.35, 2.3, 2.3, 2.3, 2.4, 2.5, 2.6, 2.6]

# Rib cage (centre line of the ribs).
_CAGE_D = [262, 285, 320, 370, 430, 490, 545, 590, 630]
_CAGE_RX = [40, 82, 112, 128, 136, 140, 139, 133, 122]
_CAGE_RY = [32, 55, 74, 84, 89, 90, 88, 84, 78]
_CAGE_CY = 6.0

# Spine centre line (vertebral body centre y) along depth.
_SPINE_D = [145, 200, 260, 300, 400, 500, 560, 620, 700, 740]
_SPINE_Y = [8, 10, 14, 28, 48, 46, 40, 32, 34, 40]

# Heart/thorax landmarks (reference depths).
_LUNG_APEX = 268.0
_AORTIC_ARCH_TOP = 318.0
_CARINA = 372.0
_RIGHT_DOME = 505.0  # top of the right hemidiaphragm in a full inspiration
_LEFT_DOME_DELTA = 14.0  # left dome lower
_DOME_K = 36.0  # depth from dome top to the costophrenic recess at rho = 1
_ILIAC_CREST = 700.0
_SYMPHYSIS = 862.0
_BODY_BOTTOM = 955.0


@dataclass
class Habitus:
    """Patient-specific scaling and state, drawn from the exam seed (age and sex driven)."""

    sex: str = "M"
    age: int = 50
    height: float = 1.0  # depth scale
    width: float = 1.0  # x scale
    depth: float = 1.0  # y scale
    fat_mm: float = 15.0  # subcutaneous fat thickness at the waist
    visceral: float = 1.0  # visceral-fat driven abdominal depth factor
    organ: dict[str, float] = field(default_factory=dict)  # per-organ size factors
    inspiration_ribs: float = 10.3  # posterior ribs above the right dome (diaphragm level)
    scapula_over_lung: bool = False
    bladder_fill: float = 1.0
    atrophy_mm: float = 1.0  # brain atrophy (age): wider sulci and ventricles
    jitter: dict[str, float] = field(default_factory=dict)


def draw_habitus(rng: np.random.Generator, sex: str, age: int) -> Habitus:
    """Body size from age and sex, with population spread; children are smaller."""
    age = int(max(1, min(age, 100)))
    grow = 1.0 if age >= 18 else 0.45 + 0.55 * (age / 18.0)
    female = sex == "F"
    height = grow * (0.93 if female else 1.0) * float(rng.normal(1.0, 0.035))
    width = grow * (0.92 if female else 1.0) * float(rng.normal(1.0, 0.05))
    adult_fat = 8.0 + 0.25 * min(age, 65) + (6.0 if female else 0.0)
    fat = max(3.0, float(rng.normal(adult_fat * (grow if age < 18 else 1.0), 6.0)))
    visceral = 1.0 + (0.004 * max(0, age - 30) if not female else 0.002 * max(0, age - 40)) + float(rng.normal(0, 0.04))
    depth = width * float(rng.normal(1.0, 0.04)) * (1.0 + 0.25 * (visceral - 1.0))
    organs = {k: float(np.clip(rng.normal(1.0, 0.07), 0.8, 1.2)) for k in ("liver", "spleen", "kidney", "heart", "bladder")}
    return Habitus(
        sex=sex,
        age=age,
        height=height,
        width=width,
        depth=depth,
        fat_mm=fat,
        visceral=visceral,
        organ=organs,
        inspiration_ribs=float(rng.uniform(10.1, 10.8)),
        bladder_fill=float(rng.uniform(0.6, 1.2)),
        atrophy_mm=float(np.clip(0.5 + 0.06 * max(0, age - 40) + rng.normal(0, 0.3), 0.3, 4.0)),
        jitter={"organ_shift": float(rng.normal(0, 4)), "lung": float(rng.normal(1.0, 0.03))},
    )


class _Scaler:
    """Maps reference coordinates into this patient's body (x, y, depth scales)."""

    def __init__(self, h: Habitus) -> None:
        self.sx, self.sy, self.sd = h.width, h.depth, h.height

    def p(self, x: float, y: float, d: float) -> tuple[float, float, float]:
        return (x * self.sx, y * self.sy, d * self.sd)

    def r(self, rx: float, ry: float, rd: float) -> tuple[float, float, float]:
        return (rx * self.sx, ry * self.sy, rd * self.sd)

    def d(self, d: float) -> float:
        return d * self.sd


def vertebra_table(h: Habitus) -> list[dict[str, float | str]]:
    """Level name, top/bottom depth, centre y and radii of every vertebral body (C1..L5)."""
    sd = h.height
    out = []
    d = _C1_TOP
    for name, height, disc, rx, ry in _CERVICAL + _THORACIC + _LUMBAR:
        top, bottom = d, d + height
        centre = (top + bottom) / 2
        cy = float(np.interp(centre, _SPINE_D, _SPINE_Y))
        out.append({
            "name": name,
            "top": top * sd,
            "bottom": bottom * sd,
            "centre": centre * sd,
            "cy": cy * h.depth,
            "rx": rx * h.width,
            "ry": ry * h.depth,
            "disc": disc * sd,
        })
        d = bottom + disc
    return out


def _bone(ph: Phantom, m: Materials, structure: str, outer: Shape, inner: Shape | None, marrow: str = "cancellous_bone") -> None:
    ph.add(outer, m(structure, "cortical_bone"))
    if inner is not None:
        ph.add(inner, m(structure, marrow))


def _shrink(e: Ellipsoid, mm: float) -> Ellipsoid:
    return Ellipsoid(e.c, tuple(max(1.0, r - mm) for r in e.r), e.angle, e.p)  # type: ignore[arg-type]


def _tube(knots_d, cx, cy, rx, ry, p=None) -> Tube:  # type: ignore[no-untyped-def]
    return Tube(list(map(float, knots_d)), list(map(float, cx)), list(map(float, cy)), list(map(float, rx)), list(map(float, ry)), None if p is None else list(map(float, p)))


def build_body(h: Habitus, m: Materials, with_table: bool = True, rng: np.random.Generator | None = None) -> Phantom:
    """The whole-body phantom with its landmarks (depth below the vertex, mm)."""
    rng = rng or np.random.default_rng(0)
    S = _Scaler(h)
    ph = Phantom()
    sd, sx, sy = S.sd, S.sx, S.sy
    fat = h.fat_mm

    # ---- outer body: torso (fat layer), legs, head -------------------------------------
    td = [d * sd for d in _TORSO_D]
    trx = np.array(_TORSO_RX) * sx
    try_ = np.array(_TORSO_RY) * sy
    # visceral fat pushes the belly forward between the lower chest and the pelvis
    belly = np.interp(_TORSO_D, [420, 560, 660, 780, 860], [0, 1, 1, 0.6, 0.2]) * (h.visceral - 1.0) * 110.0
    tcy = np.array(_TORSO_CY) * sy - belly / 2
    try_ = try_ + belly / 2
    neck_fat = np.interp(_TORSO_D, [165, 262, 300], [0.35, 0.4, 1.0]) * fat
    outer = _tube(td, [0] * len(td), tcy, trx + neck_fat, try_ + neck_fat, _TORSO_P)
    inner = _tube(td, [0] * len(td), tcy, trx, try_, _TORSO_P)
    leg_d = [880 * sd, 1150 * sd]
    legs = []
    for side in (-1, 1):
        leg_o = _tube(leg_d, [side * 92 * sx] * 2, [5 * sy] * 2, [(75 + fat) * sx] * 2, [(70 + fat) * sy] * 2)
        leg_i = _tube(leg_d, [side * 92 * sx] * 2, [5 * sy] * 2, [72 * sx] * 2, [66 * sy] * 2)
        legs.append((leg_o, leg_i))
    head_c = S.p(0, -5, 110)
    head = Ellipsoid(head_c, S.r(74, 94, 112), p=2.3)

    if with_table:
        # curved carbon table under the back, moves with the patient
        back = float(try_.max() + fat + tcy.max())
        ph.add(_tube([-60, 1200], [0, 0], [back + 40, back + 40], [230, 230], [36, 36]) - _tube([-60, 1200], [0, 0], [back + 40, back + 40], [226, 226], [30, 30]) - Box((0, back + 60, 600), (400, 20, 800)), m("table", "plastic"))

    ph.add(outer, m("subcutaneous_fat", "fat"))
    for leg_o, _ in legs:
        ph.add(leg_o, m("subcutaneous_fat", "fat"))
    ph.add(head, m("subcutaneous_fat", "fat"))
    ph.add(inner, m("body", "muscle"))
    for _, leg_i in legs:
        ph.add(leg_i, m("muscle", "muscle"))
    ph.add(_shrink(head, 4), m("body", "soft_tissue"))
    neck = _tube([165 * sd, 262 * sd], [0, 0], [12 * sy, 14 * sy], [48 * sx, 62 * sx], [48 * sy, 56 * sy])
    ph.add(neck, m("body", "soft_tissue"))

    # ---- body cavities --------------------------------------------------------------------
    cav_d = [d * sd for d in (275, 320, 420, 520, 600, 700, 800, 870)]
    cav_rx = [v * sx for v in (75, 118, 134, 138, 132, 128, 128, 95)]
    cav_ry = [v * sy for v in (55, 76, 86, 88, 84, 80, 72, 55)]
    cav_cy = [v * sy for v in (4, 4, 4, 2, -2, -8, -12, -12)]
    cav_ry = [r + b / 2 for r, b in zip(cav_ry, np.interp([275, 320, 420, 520, 600, 700, 800, 870], _TORSO_D, belly), strict=True)]
    cav_cy = [c - b / 2 for c, b in zip(cav_cy, np.interp([275, 320, 420, 520, 600, 700, 800, 870], _TORSO_D, belly), strict=True)]
    cavity = _tube(cav_d, [0] * len(cav_d), cav_cy, cav_rx, cav_ry, [2.2] * len(cav_d))
    ph.add(cavity, m("visceral_fat", "fat"))

    # ---- muscles --------------------------------------------------------------------------
    ps_d = [d * sd for d in (170, 260, 350, 500, 650, 760, 820)]
    ps_cy = [v * sy for v in (42, 52, 84, 88, 82, 76, 70)]
    for side in (-1, 1):
        ph.add(_tube(ps_d, [side * v * sx for v in (22, 26, 38, 38, 40, 42, 40)], ps_cy, [v * sx for v in (14, 18, 24, 26, 30, 30, 24)], [v * sy for v in (14, 18, 20, 22, 26, 24, 18)]), m("muscle", "muscle"))
        ph.add(Capsule(S.p(side * 30, 36, 590), S.p(side * 55, 22, 720), 9 * sx, 21 * sx), m("muscle", "muscle"))
        ph.add(Capsule(S.p(side * 55, 22, 720), S.p(side * 72, -8, 840), 21 * sx, 15 * sx), m("muscle", "muscle"))
        ph.add(Ellipsoid(S.p(side * 78, -96, 345), S.r(70, 11, 52)), m("muscle", "muscle"))

    # ---- thorax ---------------------------------------------------------------------------
    # inspiration: dome level from the number of posterior ribs above it (vertebra table)
    verts = vertebra_table(h)
    tlevels = [v for v in verts if str(v["name"]).startswith("T")]
    rib_post = [float(v["centre"]) for v in tlevels]  # posterior rib k at the level of T_k
    k_float = float(np.clip(h.inspiration_ribs, 6.0, 11.8))
    k0 = int(math.floor(k_float))
    # the dome sits between the posterior parts of rib k and rib k+1 (k = ribs above it)
    right_dome = float(np.interp(k_float, [k0, k0 + 1], [rib_post[k0 - 1], rib_post[min(k0, 11)]])) + 10.0 * sd
    left_dome = right_dome + _LEFT_DOME_DELTA * sd
    lung_scale = h.jitter.get("lung", 1.0)
    dome_r = Dome(-55 * sx, 0, right_dome, _DOME_K * sd, 95 * sx, 95 * sy, below=False)
    dome_l = Dome(55 * sx, 0, left_dome, _DOME_K * sd, 95 * sx, 95 * sy, below=False)
    below_r = Dome(-55 * sx, 0, right_dome + 3, _DOME_K * sd, 95 * sx, 95 * sy, below=True)
    below_l = Dome(55 * sx, 0, left_dome + 3, _DOME_K * sd, 95 * sx, 95 * sy, below=True)
    apex = _LUNG_APEX * sd
    lung_d = [apex, apex + 12 * sd, 300 * sd, 340 * sd, 400 * sd, 470 * sd, 540 * sd, 620 * sd]
    cage_rx_at = np.interp([d / sd for d in lung_d], _CAGE_D, _CAGE_RX) * sx
    cage_ry_at = np.interp([d / sd for d in lung_d], _CAGE_D, _CAGE_RY) * sy
    shrink = np.array([0.05, 0.45, 0.78, 0.9, 0.94, 0.95, 0.95, 0.95]) * lung_scale
    lungs = {}
    for side, name, dome in ((-1, "lung_right", dome_r), (1, "lung_left", dome_l)):
        cx = side * cage_rx_at * 0.50
        lung = _tube(lung_d, cx, [_CAGE_CY * sy + 4] * len(lung_d), cage_rx_at * 0.44 * shrink, cage_ry_at * 0.86 * shrink, [2.15] * len(lung_d))
        lungs[name] = lung & dome
        ph.add(lungs[name], m(name, "lung"))
    ph.landmarks["diaphragm_dome"] = right_dome
    ph.extra["domes"] = {"right": right_dome, "left": left_dome}

    # pulmonary vessels: tapering branches from each hilum
    for side, name in ((-1, "lung_right"), (1, "lung_left")):
        hilum = (side * 45 * sx, 8 * sy, 405 * sd)
        for k in range(7):
            ang = -1.2 + k * 0.45 + float(rng.normal(0, 0.08))
            length = float(rng.uniform(70, 110))
            end = (hilum[0] + side * abs(math.cos(ang)) * length * sx * 0.9, hilum[1] + float(rng.normal(0, 25)) * sy, hilum[2] + math.sin(ang) * length * sd)
            ph.add(Capsule(hilum, end, 5.5, 1.5) & lungs[name], m("pulmonary_vessels", "blood_venous"))

    # heart (myocardium shell around blood pools)
    hs = h.organ.get("heart", 1.0)
    heart_c = S.p(16, -22, 447)
    heart = Ellipsoid(heart_c, (62 * sx * hs, 50 * sy * hs, 62 * sd * hs), angle=-35)
    ph.add(heart, m("heart", "myocardium"))
    ph.add(Ellipsoid(heart_c, (52 * sx * hs, 41 * sy * hs, 53 * sd * hs), angle=-35), m("heart", "blood_cardiac"))

    # airway and oesophagus
    ph.add(_tube([120 * sd, 232 * sd], [0, 0], [-8 * sy, -16 * sy], [9 * sx, 8 * sx], [7 * sy, 6 * sy]), m("pharynx", "air"))
    trachea = _tube([232 * sd, _CARINA * sd], [0, 0], [-24 * sy, -2 * sy], [9 * sx, 9.5 * sx], [8.5 * sy, 9 * sy])
    ph.add(_tube([232 * sd, _CARINA * sd], [0, 0], [-24 * sy, -2 * sy], [11 * sx, 11.5 * sx], [10.5 * sy, 11 * sy]), m("trachea", "soft_tissue"))
    ph.add(trachea, m("trachea", "air"))
    carina = S.p(0, -2, _CARINA)
    ph.add(Capsule(carina, S.p(-42, 4, 400), 7.0), m("trachea", "air"))
    ph.add(Capsule(carina, S.p(44, 6, 410), 6.0), m("trachea", "air"))
    ph.add(Capsule(S.p(8, -6, 240), S.p(14, 14, 400), 6.5) , m("esophagus", "muscle"))
    ph.add(Capsule(S.p(14, 14, 400), S.p(30, -6, 535), 6.5), m("esophagus", "muscle"))
    for side in (-1, 1):
        ph.add(Ellipsoid(S.p(side * 19, -22, 262), S.r(10, 9, 20)), m("thyroid", "thyroid"))

    # great vessels
    aorta_path = [((-4, -32, 452), 15), ((-6, -26, 350), 15), ((8, 4, _AORTIC_ARCH_TOP + 10), 14), ((27, 30, 350), 13), ((27, 30, 480), 12.5), ((14, 14, 600), 11.5), ((4, 4, 705), 10)]
    for (a, ra), (b, rb) in zip(aorta_path, aorta_path[1:], strict=False):
        ph.add(Capsule(S.p(*a), S.p(*b), ra * sx, rb * sx), m("aorta", "blood_arterial"))
    for side in (-1, 1):
        ph.add(Capsule(S.p(4, 4, 705), S.p(side * 48, 12, 790), 7 * sx, 6 * sx), m("aorta", "blood_arterial"))
    ivc = [((-22, -8, 485), 11), ((-22, 4, 600), 11), ((-16, 8, 705), 10)]
    for (a, ra), (b, rb) in zip(ivc, ivc[1:], strict=False):
        ph.add(Capsule(S.p(*a), S.p(*b), ra * sx, rb * sx), m("inferior_vena_cava", "blood_venous"))

    # ---- abdomen --------------------------------------------------------------------------
    jit = h.jitter.get("organ_shift", 0.0)
    lv = h.organ.get("liver", 1.0)
    liver = Ellipsoid(S.p(-52, -4, right_dome / sd + 78 + jit), (92 * sx * lv, 92 * sy * lv, 82 * sd * lv), p=2.3)
    ph.add(liver & below_r & cavity, m("liver", "liver"))
    ph.add(Capsule(S.p(-42, 2, 590), S.p(-8, -10, 615), 7.5 * sx), m("portal_vein", "blood_portal"))
    ph.add(Ellipsoid(S.p(-46, -58, 615), S.r(14, 14, 30)) & cavity, m("gallbladder", "bile"))
    spl = h.organ.get("spleen", 1.0)
    ph.add(Ellipsoid(S.p(88, 40, left_dome / sd + 55), (30 * sx * spl, 55 * sy * spl, 52 * sd * spl), angle=28) & below_l & cavity, m("spleen", "spleen"))
    stomach = Ellipsoid(S.p(48, -28, left_dome / sd + 60), S.r(48, 36, 50))
    ph.add(stomach & below_l & cavity, m("stomach", "gastric_content"))
    ph.add(stomach & below_l & Box((0, 0, (left_dome / sd + 22) * sd), (500, 500, 12 * sd)), m("stomach", "air"))
    panc = [(-24, -16, 612), (20, -2, 600), (68, 26, 585)]
    for a, b in zip(panc, panc[1:], strict=False):
        ph.add(Capsule(S.p(*a), S.p(*b), 13 * sx, 11 * sx), m("pancreas", "pancreas"))
    ks = h.organ.get("kidney", 1.0)
    for side, name, centre in ((1, "kidney_left", 622), (-1, "kidney_right", 638)):
        ph.add(Ellipsoid(S.p(side * 70, 46, centre), (30 * sx * ks, 24 * sy * ks, 55 * sd * ks), angle=side * -25), m(name, "kidney"))
    # bowel: small-bowel region, colon frame with gas, rectum
    ph.add(Ellipsoid(S.p(8, -38, 725), S.r(95, 42, 70)) & cavity, m("bowel", "bowel"))
    colon = [((-95, -5, 760), 21), ((-96, -22, 650), 21), ((0, -66, 655), 19), ((96, -22, 630), 18), ((92, 0, 765), 17), ((25, 52, 815), 16), ((0, 58, 905), 14)]
    for (a, ra), (b, rb) in zip(colon, colon[1:], strict=False):
        ph.add(Capsule(S.p(*a), S.p(*b), ra * sx, rb * sx) & cavity, m("bowel", "bowel"))
    for _ in range(6):
        i = int(rng.integers(0, len(colon) - 1))
        t = float(rng.uniform(0, 1))
        a, b = np.array(colon[i][0]), np.array(colon[i + 1][0])
        c = a + (b - a) * t
        ph.add(Ellipsoid(S.p(*c), S.r(11, 11, float(rng.uniform(8, 18)))) & cavity, m("bowel", "air"))
    bf = h.bladder_fill * h.organ.get("bladder", 1.0)
    ph.add(Ellipsoid(S.p(0, -46, 838 - 6 * (bf - 1)), (40 * sx * bf, 32 * sy * bf, 32 * sd * bf)), m("bladder", "urine"))
    if h.sex == "M":
        ph.add(Ellipsoid(S.p(0, -20, 882), S.r(18, 16, 17)), m("prostate", "prostate"))
    else:
        ph.add(Ellipsoid(S.p(0, 8, 795), S.r(32, 22, 40), angle=0), m("uterus", "uterus"))

    # ---- spine ----------------------------------------------------------------------------
    groups = {"C": "vertebrae_cervical", "T": "vertebrae_thoracic", "L": "vertebrae_lumbar"}
    canal_path = []
    for i, v in enumerate(verts):
        name = str(v["name"])
        structure = groups[name[0]]
        top, bot, cy, rx, ry = (float(v[k]) for k in ("top", "bottom", "cy", "rx", "ry"))
        body = _tube([top, bot], [0, 0], [cy, cy], [rx, rx], [ry, ry])
        core = _tube([top + 1.5, bot - 1.5], [0, 0], [cy, cy], [rx - 2, rx - 2], [ry - 2, ry - 2])
        if name != "C1":
            _bone(ph, m, structure, body, core)
        canal_r = (7.5 if name[0] != "L" else 9.0) * sx
        canal_cy = cy + ry + canal_r + 1.5
        canal_path.append((top, canal_cy, canal_r))
        arch_h = (bot - top) * 0.8
        mid = (top + bot) / 2
        ring = _tube([mid - arch_h / 2, mid + arch_h / 2], [0, 0], [canal_cy, canal_cy], [canal_r + 6, canal_r + 6], [canal_r + 6, canal_r + 6])
        hole = _tube([mid - arch_h, mid + arch_h], [0, 0], [canal_cy, canal_cy], [canal_r, canal_r], [canal_r, canal_r])
        back = Box((0, canal_cy + 40, mid), (60, 40 + 1.5, arch_h))
        ph.add((ring - hole) & back, m(structure, "cortical_bone"))
        # pedicles
        ph.add(Capsule((-canal_r - 2, cy, mid), (-canal_r - 2, canal_cy, mid), 3.5), m(structure, "cortical_bone"))
        ph.add(Capsule((canal_r + 2, cy, mid), (canal_r + 2, canal_cy, mid), 3.5), m(structure, "cortical_bone"))
        sp_len = {"C": 22, "T": 26, "L": 28}[name[0]] * sy
        sp_drop = {"C": 6, "T": 18, "L": 4}[name[0]] * sd
        ph.add(Capsule((0, canal_cy + canal_r + 4, mid), (0, canal_cy + canal_r + sp_len, mid + sp_drop), 4.0), m(structure, "cortical_bone"))
        tp = {"C": 22, "T": 28, "L": 40}[name[0]] * sx
        for side in (-1, 1):
            ph.add(Capsule((side * (canal_r + 3), canal_cy - 2, mid), (side * tp, canal_cy + (6 if name[0] == "T" else -4), mid), 3.5), m(structure, "cortical_bone"))
        if i + 1 < len(verts):
            nxt = verts[i + 1]
            ph.add(_tube([bot, float(nxt["top"])], [0, 0], [cy, float(nxt["cy"])], [rx, float(nxt["rx"])], [ry, float(nxt["ry"])]), m("intervertebral_disc", "disc"))
    l5 = verts[-1]
    s1_top = float(l5["bottom"]) + float(l5["disc"])
    ph.add(_tube([float(l5["bottom"]), s1_top], [0, 0], [float(l5["cy"]), float(l5["cy"]) + 4], [float(l5["rx"])] * 2, [float(l5["ry"])] * 2), m("intervertebral_disc", "disc"))
    cd = [p[0] for p in canal_path] + [s1_top + 40]
    ccy = [p[1] for p in canal_path] + [canal_path[-1][1] + 18]
    cr = [p[2] for p in canal_path] + [7.0]
    ph.add(_tube([140 * sd] + cd, [0] * (len(cd) + 1), [ccy[0] - 4] + ccy, [10.0 * sx] + cr, [10.0 * sx] + cr), m("spinal_canal", "csf"))
    conus = float(verts[19]["bottom"])  # cord ends at L1
    cord_n = [i for i, d in enumerate(cd) if d <= conus]
    ph.add(_tube([140 * sd] + [cd[i] for i in cord_n] + [conus], [0] * (len(cord_n) + 2), [ccy[0] - 4] + [ccy[i] for i in cord_n] + [ccy[cord_n[-1]]], [5.5 * sx] + [cr[i] * 0.6 for i in cord_n] + [2.0], [5.5 * sx] + [cr[i] * 0.55 for i in cord_n] + [2.0]), m("spinal_cord", "cord"))
    # sacrum: three tilted segments following the curve
    sac = [((0, 44, s1_top / sd + 14), (46, 17, 20)), ((0, 58, s1_top / sd + 50), (40, 15, 22)), ((0, 74, s1_top / sd + 88), (24, 11, 20))]
    for c, r in sac:
        e = Ellipsoid(S.p(*c), S.r(*r))
        _bone(ph, m, "sacrum", e, _shrink(e, 2.0))

    # ---- ribs, sternum, clavicles, scapulae -----------------------------------------------
    cage_d = [d * sd for d in _CAGE_D]
    rib_drop = [v * sd for v in (18, 35, 48, 58, 66, 72, 76, 78, 80, 76, 40, 25)]
    rib_ext = [2.2, 2.45, 2.55, 2.6, 2.65, 2.7, 2.7, 2.6, 2.4, 2.1, 1.4, 1.0]
    ribs = Ribs(cy=_CAGE_CY * sy, cage_d=cage_d, cage_rx=list(np.array(_CAGE_RX) * sx), cage_ry=list(np.array(_CAGE_RY) * sy), d_post=rib_post, drop=rib_drop, extent=rib_ext, thickness=9.0 * sd, depth=10.0)
    ph.add(ribs, m("ribs", "cortical_bone"))
    ph.extra["ribs"] = ribs
    stern = Box(S.p(0, -90, 395), S.r(13, 6, 90))
    _bone(ph, m, "sternum", stern, Box(S.p(0, -90, 395), (10 * sx, 3.5 * sy, 86 * sd)))
    clav = {}
    for side, name in ((1, "clavicle_left"), (-1, "clavicle_right")):
        medial, lateral = S.p(side * 16, -80, 300), S.p(side * 150, -8, 284)
        ph.add(Capsule(medial, lateral, 8.0), m(name, "cortical_bone"))
        ph.add(Capsule(medial, lateral, 5.0), m(name, "cancellous_bone"))
        clav[name] = (medial, lateral)
    ph.extra["clavicles"] = clav
    scap = {}
    for side, name in ((1, "scapula_left"), (-1, "scapula_right")):
        x_c = (100.0 if h.scapula_over_lung else 145.0) * sx
        d_c = 370 * sd
        cage_rx = float(np.interp(370, _CAGE_D, _CAGE_RX)) * sx
        cage_ry = float(np.interp(370, _CAGE_D, _CAGE_RY)) * sy
        u = min(abs(x_c) / cage_rx, 0.98)
        y_c = _CAGE_CY * sy + cage_ry * math.sqrt(1 - u * u) + 14
        angle = side * (40 if not h.scapula_over_lung else 22)
        plate = Ellipsoid((side * x_c, y_c, d_c), (44 * sx, 5.0, 78 * sd), angle=angle)
        ph.add(plate, m(name, "cortical_bone"))
        ph.add(Capsule((side * (x_c + 40 * sx), y_c - 25, d_c - 75 * sd), (side * (x_c + 5), y_c, d_c - 60 * sd), 9.0), m(name, "cortical_bone"))
        scap[name] = (side * x_c, y_c, d_c)
    ph.extra["scapulae"] = scap

    # ---- pelvis and hips ------------------------------------------------------------------
    for side, fh, fem in ((1, "femoral_head_left", "femur_left"), (-1, "femoral_head_right", "femur_right")):
        wing = Ellipsoid(S.p(side * 92, 22, 748), S.r(50, 11, 52), angle=side * 42)
        _bone(ph, m, "pelvis_bones", wing, _shrink(wing, 2.5))
        acet = Ellipsoid(S.p(side * 86, 2, 815), S.r(30, 30, 36))
        _bone(ph, m, "pelvis_bones", acet, _shrink(acet, 3))
        for a, b, r in (((side * 82, -12, 832), (side * 12, -62, 858), 9), ((side * 86, 16, 838), (side * 62, 30, 898), 11), ((side * 12, -62, 866), (side * 55, 26, 898), 7)):
            ph.add(Capsule(S.p(*a), S.p(*b), r * sx), m("pelvis_bones", "cortical_bone"))
            ph.add(Capsule(S.p(*a), S.p(*b), (r - 3) * sx), m("pelvis_bones", "cancellous_bone"))
        head_c = S.p(side * 92, 0, 850)
        ph.add(Ellipsoid(head_c, (24 * sx,) * 2 + (24 * sx,)), m(fh, "cortical_bone"))
        ph.add(Ellipsoid(head_c, (21 * sx,) * 2 + (21 * sx,)), m(fh, "cancellous_bone"))
        ph.add(Capsule(S.p(side * 106, 2, 856), S.p(side * 132, 8, 872), 14 * sx), m(fem, "cortical_bone"))
        ph.add(Ellipsoid(S.p(side * 140, 10, 870), S.r(20, 20, 22)), m(fem, "cortical_bone"))
        ph.add(Capsule(S.p(side * 134, 10, 872), S.p(side * 100, 6, 1150), 14 * sx), m(fem, "cortical_bone"))
        ph.add(Capsule(S.p(side * 134, 10, 878), S.p(side * 100, 6, 1150), 8 * sx), m(fem, "yellow_marrow"))

    # ---- head -----------------------------------------------------------------------------
    skull_outer = _shrink(head, 5)
    skull_inner = _shrink(head, 12)
    vault = Box((0, 0, 67 * sd), (400, 400, 67 * sd))  # above the skull base
    face = Box(S.p(0, -80, 125), S.r(62, 40, 55))  # orbits and face: no cranial vault here
    ph.add((skull_outer - skull_inner) & vault - face, m("skull", "cortical_bone"))
    ph.add((_shrink(head, 7.5) - _shrink(head, 9.5)) & vault - face, m("skull", "cancellous_bone"))
    base = _tube([122 * sd, 140 * sd], [0, 0], [8 * sy, 10 * sy], [58 * sx, 50 * sx], [72 * sy, 60 * sy])
    fm_hole = _tube([100 * sd, 160 * sd], [0, 0], [26 * sy, 26 * sy], [15 * sx, 15 * sx], [17 * sy, 17 * sy])
    ph.add(base - fm_hole, m("skull", "cortical_bone"))
    intracranial = skull_inner & Box((0, 0, 63 * sd), (400, 400, 63 * sd))
    ph.add(intracranial, m("csf_subarachnoid", "csf"))
    atrophy = h.atrophy_mm
    ph.add(_shrink(head, 12 + 2.0 + atrophy) & Box((0, 0, 63 * sd), (400, 400, 62 * sd)), m("brain", "grey_matter"))
    ph.add(Ellipsoid(S.p(0, 34, 118), S.r(48, 30, 20)), m("brain", "grey_matter"))
    ph.add(Capsule(S.p(0, 14, 95), S.p(0, 24, 142), 12 * sx), m("brain", "white_matter"))
    ph.add(Ellipsoid(S.p(0, -6, 68), S.r(47, 66, 42)), m("white_matter", "white_matter"))
    for side in (-1, 1):
        ph.add(Ellipsoid(S.p(side * (11 + atrophy * 0.5), -4, 66), (5.5 * sx + atrophy * 1.2, 28 * sy, 12 * sd + atrophy), angle=side * 8), m("brain_ventricles", "csf"))
        ph.add(Ellipsoid(S.p(side * 32, -62, 88), S.r(18, 24, 18)), m("body", "fat"))
    ph.add(Box(S.p(0, 6, 90), (1.5 + atrophy * 0.4, 9 * sy, 8 * sd)), m("brain_ventricles", "csf"))
    for side, name in ((1, "eye_left"), (-1, "eye_right")):
        ph.add(Ellipsoid(S.p(side * 32, -72, 88), (12.0, 12.0, 12.0)), m(name, "vitreous"))
    for side in (-1, 1):
        ph.add(Ellipsoid(S.p(side * 28, -52, 132), S.r(14, 16, 18)), m("paranasal_sinus", "air"))
    ph.add(Ellipsoid(S.p(0, -84, 52), S.r(14, 5, 9)), m("paranasal_sinus", "air"))
    ph.add(Box(S.p(0, -64, 120), S.r(7, 20, 18)), m("paranasal_sinus", "air"))
    mand = [(-38, 5, 172), (-34, -38, 200), (0, -60, 208), (34, -38, 200), (38, 5, 172)]
    for a, b in zip(mand, mand[1:], strict=False):
        ph.add(Capsule(S.p(*a), S.p(*b), 7.0), m("mandible", "cortical_bone"))
        ph.add(Capsule(S.p(*a), S.p(*b), 4.0), m("mandible", "cancellous_bone"))

    # ---- landmarks (depth, mm) ------------------------------------------------------------
    lm = ph.landmarks
    lm["vertex"] = 0.0
    lm["skull_base"] = 122 * sd
    lm["foramen_magnum"] = 140 * sd
    lm["lung_apex"] = apex
    lm["aortic_arch"] = (_AORTIC_ARCH_TOP - 4) * sd
    lm["carina"] = _CARINA * sd
    lm["diaphragm_dome"] = right_dome
    ext_r, ext_l = depth_extent(lungs["lung_right"], 4.0, 1.0), depth_extent(lungs["lung_left"], 4.0, 1.0)
    lm["lung_apex"] = min(ext_r[0], ext_l[0])
    lm["lung_base"] = max(ext_r[1], ext_l[1])
    kidney_bottom = [622 * sd + 55 * sd * ks, 638 * sd + 55 * sd * ks]
    lm["lower_renal_pole"] = max(kidney_bottom)
    lm["iliac_crest"] = (748 - 52) * sd
    lm["pubic_symphysis"] = _SYMPHYSIS * sd
    lm["body_bottom"] = _BODY_BOTTOM * sd
    for v in verts:
        lm[f"{v['name']}_center"] = float(v["centre"])
        lm[f"{v['name']}_bottom"] = float(v["bottom"])
        lm[f"{v['name']}_top"] = float(v["top"])
    lm["S1_top"] = s1_top
    ph.extra["vertebrae"] = verts
    ph.extra["lungs"] = lungs
    ph.extra["spinous_y"] = {str(v["name"]): float(v["cy"]) + float(v["ry"]) + 2 * 8 for v in verts}
    return ph
