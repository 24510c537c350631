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

    net = CtArtifactNet.shared()                   # None when not registered / weights missing
    probs, where = net.probabilities(slices, spacing)  # {class: p}, {class: (slice, row, col)}

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
#: the slices are resampled to this pixel size before the network reads them
SPACING_MM = 3.0
#: the longest side after resampling (a 528-mm field at 3 mm); larger fields are cropped centrally
MAX_SIDE = 176
#: the logit map is this many times coarser than the resampled slice (two 2x poolings)
STRIDE = 4
#: slices read per series (evenly spaced): a motion ghost spans a third of a scan or more
MAX_SLICES = 16
#: what the canvas holds where a slice does not reach (air, HU/1000)
FILL = -1.0


def pick_slices(n: int, max_slices: int = MAX_SLICES) -> np.ndarray:
    """Evenly spaced slice positions (all when there are few)."""
    return np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int)) if n else np.zeros(0, dtype=int)


def prepare(slices: Sequence[np.ndarray], spacing: tuple[float, float] | None) -> np.ndarray:
    """The network's input for one series (its slices in HU): float32 (N, 1, H, W) of HU/1000,
    clipped to [-1, 4] (outside the reconstruction circle reads as air), H and W multiples of ``STRIDE``."""
    if not slices:
        raise ValueError("a series with no slices")
    sp = spacing if spacing and min(spacing) > 0 else (SPACING_MM, SPACING_MM)
    res = [resample(np.clip(np.asarray(s, dtype=np.float32), -1000.0, 4000.0) / 1000.0, (float(sp[0]), float(sp[1])), SPACING_MM)
           for s in slices]
    return canvas(res, MAX_SIDE, STRIDE, FILL)


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

    def read(self, x: np.ndarray) -> tuple[dict[str, float], dict[str, tuple[int, int, int]]]:
        """Per class, the series' probability from its prepared slices ``x`` (N, 1, H, W) and the
        map cell (slice, row, col) it comes from."""
        maps = np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)
        probs: dict[str, float] = {}
        where: dict[str, tuple[int, int, int]] = {}
        for j, cls in enumerate(CLASSES[:maps.shape[1]]):
            m = maps[:, j]
            k, r, c = np.unravel_index(int(np.argmax(m)), m.shape)
            probs[cls] = float(1.0 / (1.0 + np.exp(-float(m[k, r, c]))))
            where[cls] = (int(k), int(r), int(c))
        return probs, where

    def probabilities(self, slices: Sequence[np.ndarray], spacing: tuple[float, float] | None
                      ) -> tuple[dict[str, float], dict[str, tuple[int, float, float]]]:
        """Per class, the chance that the series shows it, and where its strongest evidence lies:
        (position in ``slices``, row, col in the slice's own pixels). At most ``MAX_SLICES``
        evenly spaced slices are read."""
        picked = pick_slices(len(slices))
        probs, cells = self.read(prepare([slices[int(i)] for i in picked], spacing))
        sp = spacing if spacing and min(spacing) > 0 else (SPACING_MM, SPACING_MM)
        shape = np.asarray(slices[0]).shape
        where = {}
        for cls, (k, r, c) in cells.items():
            # the canvas crops a large slice centrally: map back to the slice's own pixels
            h_res, w_res = shape[0] * float(sp[0]) / SPACING_MM, shape[1] * float(sp[1]) / SPACING_MM
            r0 = max(0.0, (h_res - MAX_SIDE) / 2) if h_res > MAX_SIDE else 0.0
            c0 = max(0.0, (w_res - MAX_SIDE) / 2) if w_res > MAX_SIDE else 0.0
            row = ((r + 0.5) * STRIDE + r0) * SPACING_MM / float(sp[0])
            col = ((c + 0.5) * STRIDE + c0) * SPACING_MM / float(sp[1])
            where[cls] = (int(picked[k]), float(row), float(col))
        return probs, where
