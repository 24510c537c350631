"""CT motion and equipment artifacts from the pixels (CT运动伪影 / 设备伪影): a small CNN, served with ONNX Runtime.

Why pixels here: the measured CT features (edge doubling, ghost axis, streak energy, the rim at the
field's edge) each need their own limit, and a mild motion ghost (weight 0.35-0.47, 6-9 mm), a
small clip with weak streaks or a body just cut by the field stay under all of them: CT 设备 -> 无
was 9 exams and 运动 -> 无 7 on held-out 9223, most of the misses behind the CT items below the 90%
bar. A network sees the shape of a ghosted outline or of a streak fan where a threshold sees one
number.

The network reads each slice at a common pixel size (``SPACING_MM``) as HU/1000; its first layer
(fixed, inside the ONNX file) turns that into three windows: air-to-tissue (outline, ghosts, the
cut edge), soft tissue, and bone-to-metal (streaks). It gives a map of logits per class
(``CLASSES``: motion, equipment, foreign object); a series reads, per class, the highest cell of any
slice (multiple-instance learning: training knows which series carry an artifact, not where).
Foreign objects are an output so that the net learns to tell a necklace from an implant; serving
uses the motion and equipment outputs.

    net = CtArtifactNet.shared()                          # None when not registered / weights missing
    probs, where, share = net.probabilities(slices, spacing)  # {class: p}, {class: (slice, row, col)},
                                                              # {class: share of slices showing it}

Motion counts only on part of the scan (``MOTION_PART_MAX``): a blurred series is soft on every
slice and the net, which reads one slice at a time, scores blur much as a ghost.

Training: ``ct_net_train.py`` (generator renders, ``radqc synth --profile qc-ct``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from radqc.models.artifact.pixel_mil import canvas, resample
from radqc.models.runtime import RegisteredModel

MODEL_NAME = "ct_artifact_net"
#: the output maps' classes, in order
CLASSES = ("motion", "equipment", "foreign_object")
#: the slices are resampled to this pixel size before the network reads them (the generator's CT
#: matrix is 4.4 mm; a real 0.8-mm matrix is averaged down: streaks, ghosted outlines and a cut body
#: are broad; 3 mm cost 1.8x the training time for nothing a synthetic slice holds)
SPACING_MM = 4.0
#: the longest side after resampling (a 528-mm field at 4 mm); larger fields are cropped centrally
MAX_SIDE = 132
#: the logit map is this many times coarser than the resampled slice (two 2x poolings)
STRIDE = 4
#: slices read per series (evenly spaced; the artifact measure reads at most 48): a small clip's
#: streaks show on one slice, so serving reads every slice the measure read
MAX_SLICES = 48
#: what the canvas holds where a slice does not reach (air, HU/1000)
FILL = -1.0
#: the net reads the body and this many pixels (4 mm each) round it; what lies further out (a head
#: holder, a table, a second object) reads as air. A motion ghost lies within 9 mm of the outline.
BODY_MARGIN_PX = 2
#: a pixel belongs to the body at or above this (HU/1000)
BODY_ABOVE = -0.5
#: a slice "shows" a class when its own map's highest cell reaches this probability; the share of
#: such slices is the series' ``share`` (:meth:`CtArtifactNet.read`)
SLICE_PROB = 0.5
#: motion counts only when at most this share of the series' slices shows it (registry
#: ``output.motion_part_max`` wins): a patient moves during part of a scan, a blurred reconstruction
#: is soft on every slice. On validation 7533 the moved series the net found showed motion on
#: 0.2-0.6 of their slices (182 of 186), the blurred clean series it read as moved on 0.5-1.0.
MOTION_PART_MAX = 0.7


def pick_slices(n: int, max_slices: int = MAX_SLICES) -> np.ndarray:
    """Evenly spaced slice positions (all when there are few)."""
    return np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int)) if n else np.zeros(0, dtype=int)


def prepare(slices: Sequence[np.ndarray], spacing: tuple[float, float] | None) -> np.ndarray:
    """The network's input for one series (its slices in HU): float32 (N, 1, H, W) of HU/1000,
    clipped to [-1, 4] (outside the reconstruction circle reads as air), H and W multiples of
    ``STRIDE``, only the body and its margin kept (:func:`keep_body`)."""
    if not slices:
        raise ValueError("a series with no slices")
    sp = spacing if spacing and min(spacing) > 0 else (SPACING_MM, SPACING_MM)
    res = [resample(np.clip(np.asarray(s, dtype=np.float32), -1000.0, 4000.0) / 1000.0, (float(sp[0]), float(sp[1])), SPACING_MM)
           for s in slices]
    return keep_body(canvas(res, MAX_SIDE, STRIDE, FILL)[:, 0])[:, None]


def keep_body(stack: np.ndarray, margin_px: int = BODY_MARGIN_PX) -> np.ndarray:
    """Slices (N, H, W) of HU/1000 with everything beyond ``margin_px`` of each slice's body (its
    largest part above ``BODY_ABOVE``, holes filled) set to air.

    Why: trained on the generator's bodies, whose only other object is a flat table, the first net
    read the curved head holder behind a real head CT (invesalius) as a motion ghost at 0.91. A
    ghost is a shifted copy of the outline, within the shift (6-9 mm) of it; a holder, a table or
    a cable further out is none of the net's business (the measured rules judge skin objects)."""
    from scipy import ndimage

    out = np.array(stack, dtype=np.float32, copy=True)
    for sl in out:
        lab, n = ndimage.label(sl > BODY_ABOVE)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        body = ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))
        if margin_px > 0:  # a round margin (a cross-shaped dilation reaches less far on the diagonals)
            body = ndimage.distance_transform_edt(~body) <= margin_px
        sl[~body] = FILL
    return out


def hu_windows() -> Any:
    """The fixed first layer: HU/1000 -> (air-to-tissue, soft tissue, bone-to-metal) in [0, ~1]."""
    import torch
    from torch import nn

    class HuWindows(nn.Module):
        def forward(self, x: Any) -> Any:
            hu = x * 1000.0
            return torch.cat([((hu + 1000.0) / 1000.0).clamp(0.0, 1.2),
                              ((hu - 40.0) / 400.0 + 0.5).clamp(0.0, 1.0),
                              ((hu - 200.0) / 2800.0).clamp(0.0, 1.0)], dim=1)

    return HuWindows()


class CtArtifactNet(RegisteredModel):
    """The registered CT artifact CNN (weights sha256-checked by the registry)."""

    MODEL_NAME = MODEL_NAME

    def limit(self, cls: str) -> float:
        """The probability at which a series reads ``cls`` (registry ``output.thresholds``, chosen on validation)."""
        out = getattr(self.info, "output", None) or {}
        return float((out.get("thresholds") or {}).get(cls, 0.5))

    @property
    def motion_part_max(self) -> float:
        """The largest share of slices showing motion that still reads as motion (registry ``output.motion_part_max``)."""
        out = getattr(self.info, "output", None) or {}
        return float(out.get("motion_part_max", MOTION_PART_MAX))

    def read(self, x: np.ndarray) -> tuple[dict[str, float], dict[str, tuple[int, int, int]], dict[str, float]]:
        """Per class, from the prepared slices ``x`` (N, 1, H, W): the series' probability (its
        highest cell), the map cell (slice, row, col) it comes from, and the share of slices whose
        own highest cell reaches ``SLICE_PROB``."""
        maps = np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)
        probs: dict[str, float] = {}
        where: dict[str, tuple[int, int, int]] = {}
        share: dict[str, float] = {}
        for j, cls in enumerate(CLASSES[:maps.shape[1]]):
            m = maps[:, j]
            k, r, c = np.unravel_index(int(np.argmax(m)), m.shape)
            probs[cls] = float(1.0 / (1.0 + np.exp(-float(m[k, r, c]))))
            where[cls] = (int(k), int(r), int(c))
            per_slice = 1.0 / (1.0 + np.exp(-m.reshape(m.shape[0], -1).max(axis=1)))
            share[cls] = float(np.mean(per_slice >= SLICE_PROB))
        return probs, where, share

    def probabilities(self, slices: Sequence[np.ndarray], spacing: tuple[float, float] | None
                      ) -> tuple[dict[str, float], dict[str, tuple[int, float, float]], dict[str, float]]:
        """Per class, the chance that the series shows it, where its strongest evidence lies
        (position in ``slices``, row, col in the slice's own pixels) and the share of the read
        slices that show it. At most ``MAX_SLICES`` evenly spaced slices are read."""
        picked = pick_slices(len(slices))
        probs, cells, share = self.read(prepare([slices[int(i)] for i in picked], spacing))
        sp = spacing if spacing and min(spacing) > 0 else (SPACING_MM, SPACING_MM)
        shape = np.asarray(slices[0]).shape
        # the canvas crops a large slice centrally: map back to the slice's own pixels
        h_res, w_res = shape[0] * float(sp[0]) / SPACING_MM, shape[1] * float(sp[1]) / SPACING_MM
        r0, c0 = max(0.0, (h_res - MAX_SIDE) / 2), max(0.0, (w_res - MAX_SIDE) / 2)
        where = {}
        for cls, (k, r, c) in cells.items():
            row = ((r + 0.5) * STRIDE + r0) * SPACING_MM / float(sp[0])
            col = ((c + 0.5) * STRIDE + c0) * SPACING_MM / float(sp[1])
            where[cls] = (int(picked[k]), float(row), float(col))
        return probs, where, share
