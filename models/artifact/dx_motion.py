"""Radiograph motion from the pixels (X线运动伪影): a small CNN, served with ONNX Runtime.

Why pixels here, when the rest of the artifact detector reads measured features: a patient who
moves during a radiograph smears the image along one axis, and the measured features
(gradient anisotropy, a directional band of the spectrum) cannot tell that from anatomy that is
anisotropic on its own (a spine, a knee's cortices). Across four held-out renders radiograph
motion was the largest single artifact miss (运动 -> 无: recall 0.43 on qc-items seed 7502).
The smear shows as structure that is sharp across and soft along one axis *under noise that
is equally sharp in both* (the detector's noise comes after the motion), which a few
convolutions learn from examples and a hand-made limit does not.

    net = DxMotionNet.shared()             # None when not registered / weights missing
    p = net.probability(radiograph_pixels)  # chance the view is smeared by motion

Training: ``dx_motion_train.py`` (generator renders, truth from ``applied_defects``).
"""

from __future__ import annotations

import numpy as np

from radqc.models.runtime import RegisteredModel

MODEL_NAME = "dx_motion"
#: the view is scaled so that its longer side is at most this many pixels (the renders' size);
#: larger real radiographs are reduced by an integer factor first
MAX_SIDE = 320


def prepare(img: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """The network's input: one view as float32 (1, 1, H, W), robustly scaled to about 0..1.

    Integer block-averaging keeps a large detector image's smear direction (no interpolation
    blurs one axis more than the other); the 1st/99th percentiles make exposure irrelevant."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"a radiograph view is 2-D, got shape {a.shape}")
    f = int(np.ceil(max(a.shape) / max_side))
    if f > 1:
        h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
        a = a[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    lo, hi = np.percentile(a, [1.0, 99.0])
    a = (a - lo) / max(float(hi - lo), 1e-3)
    return np.clip(a, -0.5, 1.5)[None, None].astype(np.float32)


class DxMotionNet(RegisteredModel):
    """The registered radiograph-motion CNN (weights sha256-checked by the registry)."""

    MODEL_NAME = MODEL_NAME

    @property
    def limit(self) -> float:
        """The probability at which a view reads 运动 (registry ``output.threshold``, chosen on validation)."""
        out = getattr(self.info, "output", None) or {}
        return float(out.get("threshold", 0.5))

    def probability(self, img: np.ndarray) -> float:
        """Chance that the view carries a motion smear."""
        x = prepare(img)
        logit = float(np.asarray(self.session.run(None, {self.input_name: x})[0]).reshape(-1)[0])
        return float(1.0 / (1.0 + np.exp(-logit)))
