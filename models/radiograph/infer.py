"""Serving ``cxr_anatomy``: :class:`RadiographAnatomyModel` (the ``radiograph_anatomy`` slot).

One ONNX Runtime session per process (:func:`radqc.models.runtime.session_for`), no torch.
``analyse`` runs the U-Net once on the rank-normalised image (:mod:`.preprocess`), keeps
each channel's mask at the image's own size, and derives landmarks and positioning
measurements on the model grid (:mod:`.classical`), reported in image pixels and mm.

A blank or constant image, or an image too small to read, gives empty masks and a
recorded reason instead of an exception: the exam goes on through the other stages.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from radqc.models.interfaces import RadiographResult
from radqc.models.registry import ModelInfo, get_model
from radqc.text import bilingual

from . import classical
from .data import CHANNELS
from .preprocess import fit, flat_fill_box, is_blank, prepare, resize, to_mono2

NAME = "cxr_anatomy"
THRESHOLD = 0.5
MIN_SIDE = 16

REASONS: dict[str, tuple[str, str]] = {
    "blank": ("图像为空白或恒定值，无法分析解剖结构", "blank or constant image: no anatomy can be analysed"),
    "too_small": ("图像过小，无法分析", "image too small to analyse"),
    "no_spacing": ("缺少像素间距，毫米测量值为空", "no pixel spacing: measurements in mm are empty"),
    "no_lungs": ("未找到肺野", "no lung fields found"),
    "region_unknown": ("无法判断摄影部位", "body region could not be determined from the image"),
    "rotation_not_found": ("未找到锁骨内侧端或脊柱，无法测量旋转", "rotation: clavicles or spine not found"),
    "rotation_implausible": ("旋转测量值不合理，掩膜不可信", "rotation: implausible offset, masks unreliable"),
    "inspiration_not_found": ("未找到右膈顶或肋骨，无法计数后肋", "inspiration: right dome or ribs not found"),
    "knee_bones_not_found": ("未找到股骨或胫骨", "knee: femur or tibia not found"),
    "lungs_classical": ("模型肺野不可信，改用经典阈值分割", "network lung fields implausible: classical threshold segmentation used"),
}
#: header BodyPartExamined / region words -> the analysis used
REGION_OF_PART: dict[str, str] = {
    "CHEST": "chest", "THORAX": "chest", "LUNG": "chest", "KNEE": "knee", "LEG": "knee", "EXTREMITY": "extremity",
    "CSPINE": "spine", "TSPINE": "spine", "LSPINE": "spine", "SPINE": "spine", "CERVICAL_SPINE": "spine",
    "THORACIC_SPINE": "spine", "LUMBAR_SPINE": "spine", "ABDOMEN": "abdomen", "PELVIS": "pelvis",
}
FRONTAL = ("PA", "AP")


def _view(view: str | None) -> str | None:
    if not view:
        return None
    v = str(view).strip().upper()
    return {"LL": "LAT", "RL": "LAT", "LATERAL": "LAT", "LLD": "LAT", "RLD": "LAT", "LAO": "OBL", "RAO": "OBL"}.get(v, v)


class RadiographAnatomyModel:
    """Masks, landmarks and positioning measurements of a radiograph (``RadiographAnalyser``)."""

    def __init__(self, info: ModelInfo | None = None) -> None:
        self.info = info or get_model(NAME)
        self.name = self.info.name
        self.version = self.info.version
        self.channels: tuple[str, ...] = tuple(self.info.output.get("channels") or CHANNELS)
        self.size = int((self.info.input.get("size") or [256])[0])
        self._session: Any = None

    @property
    def session(self) -> Any:
        """The shared ONNX Runtime session (created on first use, reused for every image)."""
        if self._session is None:
            from radqc.models.runtime import session_for

            self._session = session_for(self.info)
        return self._session

    def probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray]:
        """(probs C x size x size, frame, model input) for a mono2 float image."""
        x, frame = prepare(image, self.size)
        probs = self.session.run(None, {"image": x[None, None]})[0][0]
        return probs, frame, x

    def framed_probabilities(self, image: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray]:
        """:meth:`probabilities` of the image inside its constant-fill border, in the full image's grid.

        The network and the rank transform see only the part that holds anatomy
        (:func:`.preprocess.flat_fill_box`); the probabilities are resized into that part's place
        in the full image's model grid and are 0 over the fill (no anatomy, unexposed). The model
        input returned is the part's own rank image placed the same way, the fill at the rank its
        value has among the part's pixels, so the classical steps see the part as if it stood alone."""
        nr, nc = image.shape[:2]
        r0, r1, c0, c1 = flat_fill_box(image)
        if (r0, r1, c0, c1) == (0, nr, 0, nc) or min(r1 - r0, c1 - c0) < MIN_SIDE:
            return self.probabilities(image)
        part = image[r0:r1, c0:c1]
        pc, fc, xc = self.probabilities(part)
        frame = fit((nr, nc), self.size)
        s = frame.scale
        gr0, gc0 = int(round(r0 * s)), int(round(c0 * s))
        gr1, gc1 = min(frame.inner[0], max(gr0 + 1, int(round(r1 * s)))), min(frame.inner[1], max(gc0 + 1, int(round(c1 * s))))
        probs = np.zeros((pc.shape[0], self.size, self.size), np.float32)
        for k in range(pc.shape[0]):
            probs[k, gr0:gr1, gc0:gc1] = resize(pc[k, : fc.inner[0], : fc.inner[1]], (gr1 - gr0, gc1 - gc0), "bilinear")
        fill = float(image[0, 0] if r0 > 0 or c0 > 0 else image[-1, -1])
        flat = np.sort(resize(part, fc.inner, "box").ravel())
        rank = float(np.searchsorted(flat, fill, side="left") + np.searchsorted(flat, fill, side="right")) * 0.5 / max(len(flat), 1)
        x = np.zeros((self.size, self.size), np.float32)
        x[: frame.inner[0], : frame.inner[1]] = rank
        x[gr0:gr1, gc0:gc1] = resize(xc[: fc.inner[0], : fc.inner[1]], (gr1 - gr0, gc1 - gc0), "bilinear")
        return probs, replace(frame, part=(gr0, gr1, gc0, gc1)), x

    def analyse(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None, view: str | None,
                body_part: str | None = None, *, mono1: bool | None = None,
                photometric: str | None = None) -> RadiographResult:
        """Analyse one projection.

        ``pixels`` are the stored values; pass ``photometric`` ("MONOCHROME1") or ``mono1``
        so that an inverted image is turned the right way (when neither is given, both
        polarities are run and the one the network is more decisive about is kept). ``spacing_mm``
        is (row, col) mm per pixel or None (then mm values are None)."""
        t0 = time.perf_counter()
        v = _view(view)
        arr = np.asarray(pixels)
        if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
            arr = arr[0]
        guessed = mono1 is None and not photometric
        if mono1 is None:
            mono1 = str(photometric).upper() == "MONOCHROME1"
        image = to_mono2(arr, bool(mono1))
        shape = image.shape[:2]
        empty = RadiographResult(view=v, masks={}, landmarks={}, model=self.name, version=self.version)
        if min(shape) < MIN_SIDE:
            empty.measurements = {"status": "skipped", "reason": bilingual(REASONS, "too_small", f"{shape}")}
            return empty
        if is_blank(image):
            empty.measurements = {"status": "skipped", "reason": bilingual(REASONS, "blank")}
            return empty
        probs, frame, x = self.framed_probabilities(image)
        if guessed:
            # photometric interpretation unknown: keep the polarity the network is surer about
            flipped = to_mono2(arr, True)
            p2, f2, x2 = self.framed_probabilities(flipped)
            if _decisiveness(p2) > _decisiveness(probs):
                mono1, image, probs, frame, x = True, flipped, p2, f2, x2
        ir, ic = frame.inner
        probs = probs[:, :ir, :ic]
        grid = x[:ir, :ic]
        m = {name: probs[k] > THRESHOLD for k, name in enumerate(self.channels)}
        m["marker_prob"] = probs[self.channels.index("marker")]
        px_mm = (float(spacing_mm[0]) / frame.scale) if spacing_mm and spacing_mm[0] else None
        region = self._region(body_part, m)
        notes: list[str] = []
        if px_mm is None:
            notes.append(bilingual(REASONS, "no_spacing"))
        lung_source = "network"
        if region == "chest" and (v in FRONTAL or v is None):
            if not classical.lungs_plausible(m["lung_right"], m["lung_left"]):
                # the image is unlike the training data (e.g. a real CR): classical lung fields
                lr, ll = classical.classical_lungs(grid, classical.field_box(m["field"]))
                if not lr.any():
                    # the network's field channel is as unreliable as its lungs here (on the
                    # bottom-cut real CR it ends short of the left chest wall, so the left lung
                    # "touches the field side" and is dropped): retry on the whole image, or on
                    # the part inside its constant-fill border
                    lr, ll = classical.classical_lungs(grid, frame.part)
                if lr.any():
                    m["lung_right"], m["lung_left"], lung_source = lr, ll, "classical"
                    probs[self.channels.index("lung_right")] = lr.astype(np.float32)
                    probs[self.channels.index("lung_left")] = ll.astype(np.float32)
                    notes.append(bilingual(REASONS, "lungs_classical"))
            lm, meas, n2 = classical.chest_frontal(m, grid, px_mm)
            if not (m["lung_left"].any() or m["lung_right"].any()):
                n2.append(bilingual(REASONS, "no_lungs"))
        elif region == "chest":
            lm, meas, n2 = classical.chest_lateral(m, grid, px_mm)
        elif region in ("knee", "extremity"):
            lm, meas, n2 = classical.knee(m, grid, px_mm, v)
        elif region in ("spine", "abdomen", "pelvis"):
            lm, meas, n2 = classical.spine(m, grid, px_mm, v)
        else:
            lm, meas, n2 = {}, {}, [bilingual(REASONS, "region_unknown")]
        notes += [n if n in notes or " / " in n else bilingual(REASONS, *n.split(":", 1)) for n in n2]
        # back to image pixels: landmarks, marker position, field box, polylines
        inv = 1.0 / frame.scale
        landmarks = {k: (None if p is None else (round(p[0] * inv, 1), round(p[1] * inv, 1))) for k, p in lm.items()}
        meas = _to_image_px(meas, inv)
        mk = meas.get("marker")
        if isinstance(mk, dict) and mk.get("box"):
            r0, r1, c0, c1 = mk["box"]
            pad = max(2, int(0.25 * max(r1 - r0, c1 - c0)))
            letter, score = classical.read_marker_letter(image, (r0 - pad, r1 + pad, c0 - pad, c1 + pad))
            if letter is not None or mk.get("text") is None:
                mk["text"], mk["text_score"] = letter, round(score, 3)
        masks = self._masks(probs, shape)
        meas.update({
            "status": "ok", "region": region, "lung_source": lung_source, "view": v, "mono1": bool(mono1), "polarity_guessed": guessed,
            "pixel_spacing_mm": float(spacing_mm[0]) if spacing_mm and spacing_mm[0] else None,
            "model_grid_mm": round(px_mm, 4) if px_mm else None,
            "structures_found": sorted(k for k, a in masks.items() if a.any()),
            "notes": notes, "seconds": round(time.perf_counter() - t0, 4),
        })
        return RadiographResult(view=v, masks=masks, landmarks=landmarks, measurements=meas, model=self.name,
                                version=self.version)

    def _region(self, body_part: str | None, m: dict[str, np.ndarray]) -> str:
        if body_part:
            key = str(body_part).strip().upper().replace(" ", "_")
            if key in REGION_OF_PART:
                got = REGION_OF_PART[key]
                return "knee" if got == "extremity" and (m["femur"].any() or m["tibia"].any()) else got
            if str(body_part).lower() in ("chest", "knee", "abdomen", "pelvis"):
                return str(body_part).lower()
            if "spine" in str(body_part).lower():
                return "spine"
        area = {k: int(v.sum()) for k, v in m.items() if k != "marker_prob"}
        if area["lung_left"] + area["lung_right"] > 0.08 * m["field"].size:
            return "chest"
        if area["femur"] + area["tibia"] > 0.03 * m["field"].size:
            return "knee"
        if area["vertebrae_cervical"] + area["vertebrae_thoracic"] + area["vertebrae_lumbar"] > 0.01 * m["field"].size:
            return "spine"
        return "unknown"

    def _masks(self, probs: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """Each channel's mask at the image's size.

        The 8-bit probability is resized bilinearly to at most 4x the model grid, cut at 0.5,
        then enlarged by nearest neighbour: boundaries stay smooth to a quarter of a model
        pixel, at a third of the cost of a bilinear resize straight to 2048 x 2048."""
        from PIL import Image

        out: dict[str, np.ndarray] = {}
        cut = int(round(THRESHOLD * 255))
        mid = (min(int(shape[0]), 4 * probs.shape[1]), min(int(shape[1]), 4 * probs.shape[2]))
        for k, name in enumerate(self.channels):
            p = probs[k]
            if not (p > THRESHOLD).any():
                out[name] = np.zeros(shape, bool)
                continue
            img = Image.fromarray(np.clip(p * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
            binary = Image.fromarray(
                (np.asarray(img.resize((mid[1], mid[0]), Image.Resampling.BILINEAR)) > cut).astype(np.uint8), mode="L")
            if mid != tuple(shape):
                binary = binary.resize((int(shape[1]), int(shape[0])), Image.Resampling.NEAREST)
            out[name] = np.asarray(binary).astype(bool)
        return out


def _decisiveness(probs: np.ndarray) -> float:
    """How far from 0.5 the anatomy channels are on average (higher: the input looks like training data)."""
    return float(np.abs(probs[:-1] - 0.5).mean())


def _to_image_px(meas: dict[str, Any], inv: float) -> dict[str, Any]:
    """Model-grid pixel quantities (names ending in _px, positions, polylines) in image pixels."""
    out: dict[str, Any] = {}
    for k, val in meas.items():
        if k in ("spine_midline",) and isinstance(val, list):
            out[k] = [(round(r * inv, 1), round(c * inv, 1)) for r, c in val]
        elif k == "field_px" and isinstance(val, dict):
            out[k] = {a: [int(round(x * inv)) for x in b] for a, b in val.items()}
        elif k.endswith("_px") and isinstance(val, dict):
            out[k] = {a: (round(b * inv, 1) if isinstance(b, float | int) and not isinstance(b, bool) else b) for a, b in val.items()}
        elif k.endswith("_px") and isinstance(val, float | int) and not isinstance(val, bool) and k != "foreign_object_over_lung_px":
            out[k] = round(val * inv, 2)
        elif k == "marker" and isinstance(val, dict) and val.get("position"):
            pos = val["position"]
            out[k] = {**val, "position": (round(pos[0] * inv, 1), round(pos[1] * inv, 1)),
                      "area_px": int(round(val.get("area_px", 0) * inv * inv)),
                      "box": [int(round(b * inv)) for b in val.get("box", [])]}
        elif k == "rib_profile_col":
            out[k] = round(val * inv, 1)
        else:
            out[k] = val
    return out
