"""A knee (distal femur to proximal tibia/fibula) from parametric shapes, for MR and radiographs.

Frame: x = patient left, y = posterior, d = distance below the joint line in mm (negative
above it). ``side`` picks the knee: the fibula lies lateral (right knee: -x, left knee: +x).
"""

from __future__ import annotations

import numpy as np

from .anatomy import Materials
from .geometry import Box, Capsule, Ellipsoid, Phantom, Tube

#: The knee phantom spans this far above and below the joint line (mm, depth axis).
KNEE_EXTENT_MM = 170.0


def build_knee(m: Materials, side: str, rng: np.random.Generator, effusion: bool = False) -> Phantom:
    ph = Phantom()
    s = float(rng.normal(1.0, 0.05))  # size
    lat = -1.0 if side == "R" else 1.0  # direction of the lateral side in x
    fat = float(rng.uniform(5, 14))
    femur = "femur_right" if side == "R" else "femur_left"
    d_knots = [-KNEE_EXTENT_MM, -60.0, 0.0, 60.0, KNEE_EXTENT_MM]
    rx = [62 * s, 58 * s, 56 * s, 52 * s, 46 * s]
    ry = [60 * s, 56 * s, 54 * s, 55 * s, 52 * s]
    ph.add(Tube(d_knots, [0] * 5, [2] * 5, [r + fat for r in rx], [r + fat for r in ry]), m("subcutaneous_fat", "fat"))
    ph.add(Tube(d_knots, [0] * 5, [2] * 5, rx, ry), m("muscle", "muscle"))
    # popliteal fossa fat and vessels behind the joint
    ph.add(Ellipsoid((0, 38 * s, 0), (24 * s, 16 * s, 70)), m("body", "fat"))
    ph.add(Capsule((lat * -4, 42 * s, -170), (lat * -2, 40 * s, 170), 4.0), m("body", "blood_arterial"))
    # joint capsule / fluid
    ph.add(Ellipsoid((0, -28 * s, -48 * s), (26 * s, 6 * s if effusion else 2.5 * s, 24 * s)), m("joint_fluid", "fluid"))
    # femur: shaft, metaphysis, condyles (medial = -lat side)
    ph.add(Capsule((0, 2, -170), (0, 4, -60 * s), 14 * s, 18 * s), m(femur, "cortical_bone"))
    ph.add(Capsule((0, 2, -170), (0, 4, -60 * s), 10 * s, 14 * s), m(femur, "yellow_marrow"))
    ph.add(Ellipsoid((0, 4 * s, -40 * s), (36 * s, 26 * s, 28 * s)), m(femur, "cortical_bone"))
    ph.add(Ellipsoid((0, 4 * s, -40 * s), (33 * s, 23 * s, 25 * s)), m(femur, "yellow_marrow"))
    condyles = []
    for sgn in (-1.0, 1.0):
        c = Ellipsoid((sgn * 21 * s, 8 * s, -14 * s), (17 * s, 27 * s, 15 * s))
        condyles.append(c)
        ph.add(Ellipsoid(c.c, tuple(r + 2.5 for r in c.r)) & Box((c.c[0], c.c[1], -2.0), (30, 40, 16)), m("articular_cartilage", "cartilage"))  # type: ignore[arg-type]
    for c in condyles:
        ph.add(c, m(femur, "cortical_bone"))
        ph.add(Ellipsoid(c.c, tuple(r - 2.0 for r in c.r)), m(femur, "yellow_marrow"))  # type: ignore[arg-type]
    ph.add(Box((0, 14 * s, -12 * s), (6 * s, 14 * s, 10 * s)), m("body", "fat"))  # intercondylar notch
    # tibia: plateau and shaft
    ph.add(Tube([1.5, 4.0], [0, 0], [6 * s, 6 * s], [38 * s, 38 * s], [27 * s, 27 * s]), m("articular_cartilage", "cartilage"))
    plateau = Tube([4.0, 34 * s], [0, 0], [6 * s, 6 * s], [38 * s, 26 * s], [27 * s, 22 * s])
    ph.add(plateau, m("tibia", "cortical_bone"))
    ph.add(Tube([6.0, 32 * s], [0, 0], [6 * s, 6 * s], [35 * s, 23 * s], [24 * s, 19 * s]), m("tibia", "yellow_marrow"))
    ph.add(Capsule((0, 6 * s, 34 * s), (0, 8 * s, 170), 16 * s, 13 * s), m("tibia", "cortical_bone"))
    ph.add(Capsule((0, 6 * s, 36 * s), (0, 8 * s, 170), 11 * s, 8 * s), m("tibia", "yellow_marrow"))
    ph.add(Box((0, -2 * s, 2.5), (4 * s, 6 * s, 3)), m("tibia", "cortical_bone"))  # tibial spines
    # fibula: head lateral-posterior, shaft
    ph.add(Ellipsoid((lat * 36 * s, 22 * s, 26 * s), (10 * s, 10 * s, 11 * s)), m("fibula", "cortical_bone"))
    ph.add(Capsule((lat * 36 * s, 22 * s, 30 * s), (lat * 32 * s, 18 * s, 170), 7 * s), m("fibula", "cortical_bone"))
    ph.add(Capsule((lat * 36 * s, 22 * s, 30 * s), (lat * 32 * s, 18 * s, 170), 4 * s), m("fibula", "yellow_marrow"))
    # menisci: C-shaped wedges on each plateau
    for sgn in (-1.0, 1.0):
        ring = Tube([-1.0, 3.5], [sgn * 20 * s] * 2, [7 * s] * 2, [19 * s] * 2, [24 * s] * 2) - Tube([-2.0, 5.0], [sgn * 20 * s] * 2, [7 * s] * 2, [11 * s] * 2, [15 * s] * 2)
        ph.add(ring - Box((sgn * 6 * s, 7 * s, 1.0), (5 * s, 10 * s, 4)), m("meniscus", "fibrocartilage"))
    # cruciate ligaments
    ph.add(Capsule((lat * 8 * s, 18 * s, -14 * s), (0, -4 * s, 3.0), 4.0), m("cruciate_ligament", "ligament"))
    ph.add(Capsule((-lat * 8 * s, 12 * s, -16 * s), (0, 22 * s, 6.0), 4.5), m("cruciate_ligament", "ligament"))
    # patella with its cartilage, patellar tendon
    ph.add(Ellipsoid((0, -43 * s, -32 * s), (22 * s, 11 * s, 21 * s)), m("articular_cartilage", "cartilage"))
    ph.add(Ellipsoid((0, -46 * s, -32 * s), (22 * s, 9 * s, 21 * s)), m("patella", "cortical_bone"))
    ph.add(Ellipsoid((0, -46 * s, -32 * s), (19 * s, 6.5 * s, 18 * s)), m("patella", "yellow_marrow"))
    ph.add(Capsule((0, -50 * s, -10 * s), (0, -26 * s, 40 * s), 5.0), m("body", "ligament"))  # patellar tendon
    ph.landmarks.update({"knee_top": -90.0 * s, "knee_bottom": 70.0 * s, "joint_line": 0.0, "patella_centre": -32 * s})
    ph.extra.update({"side": side, "size": s, "lateral_x": lat})
    return ph
