"""MR susceptibility void from the pixels (MR金属/设备伪影): a small CNN, served with ONNX Runtime.

Why pixels here: a metal implant (aneurysm clip, dental work, spinal screws, a knee prosthesis)
leaves a signal void with a bright pile-up crescent beside it along the frequency-encode axis.
The measured void feature (``artifact.mr_crescent_void``) needs both the dark hole and the
crescent above fixed limits, and a small void on a coarse matrix, or one blurred by a second
defect, passes under them: MR 设备 -> 无 was 11 exams on three training renders and 4 on
held-out 9222, the misses behind MR.KNEE.PLAIN and MR.LSPINE.PLAIN below the 90% bar.

The network reads one slice at a time at a common pixel size (``SPACING_MM``, so a 7-mm void
has the same size in pixels on a 0.9-mm real matrix and a 3.6-mm synthetic one) and gives a
map of logits; the series reads the highest logit of any slice, and where it lies is the
evidence (multiple-instance learning: training knows only which series show a void).

    net = MrVoidNet.shared()                    # None when not registered / weights missing
    p, where = net.probability(slices, spacing)  # chance of a void, (slice, row, col) of the peak

Training: ``mr_void_train.py`` (generator renders; truth ``applied_defects[...].void_px``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radqc.models.artifact.pixel_mil import canvas, resample
from radqc.models.runtime import RegisteredModel

MODEL_NAME = "mr_void"
#: the slices are resampled to this pixel size before the network reads them
SPACING_MM = 2.5
#: the longest side after resampling (a 400-mm field at 2.5 mm); larger fields are cropped centrally
MAX_SIDE = 160
#: the logit map is this many times coarser than the resampled slice (two 2x poolings)
STRIDE = 4
#: a void counts only with a pile-up this many times the series' 98th-percentile tissue within
#: PILE_UP_RADIUS_PX (2.5-mm pixels) of its map cell (the registry's ``output.pile_up_min`` wins)
PILE_UP_MIN = 1.3
PILE_UP_RADIUS_PX = 8


def prepare(slices: Sequence[np.ndarray], spacing: tuple[float, float] | None) -> np.ndarray:
    """The network's input for one series: float32 (N, 1, H, W), H and W multiples of ``STRIDE``.

    Every slice is scaled by the series' 99.5th percentile (a void is dark relative to the
    series' tissue, not to its own slice, whose end slices hold little tissue)."""
    if not slices:
        raise ValueError("a series with no slices")
    sp = spacing if spacing and min(spacing) > 0 else (SPACING_MM, SPACING_MM)
    out = canvas([resample(s, (float(sp[0]), float(sp[1])), SPACING_MM) for s in slices], MAX_SIDE, STRIDE, 0.0)
    top = float(np.percentile(out[out > 0], 99.5)) if np.any(out > 0) else 1.0
    return np.clip(out / max(top, 1e-3), 0.0, 2.5).astype(np.float32)


class MrVoidNet(RegisteredModel):
    """The registered MR susceptibility-void CNN (weights sha256-checked by the registry)."""

    MODEL_NAME = MODEL_NAME

    @property
    def limit(self) -> float:
        """The probability at which a series reads 设备 (registry ``output.threshold``, chosen on validation)."""
        out = getattr(self.info, "output", None) or {}
        return float(out.get("threshold", 0.5))

    @property
    def pile_up(self) -> float:
        """How much brighter than the series' 98th-percentile tissue the brightest pixel near a
        void must be (registry ``output.pile_up_min``): the displaced signal piles up above any
        tissue (generator: 1.8 x the 98th percentile), while the fat beside the air of a real skull
        base reads 1.2 and its dark-and-bright pattern fooled the net (the real PD brain read 0.99)."""
        out = getattr(self.info, "output", None) or {}
        return float(out.get("pile_up_min", PILE_UP_MIN))

    def logit_maps(self, slices: Sequence[np.ndarray], spacing: tuple[float, float] | None) -> np.ndarray:
        x = prepare(slices, spacing)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)[:, 0]

    def read(self, x: np.ndarray, pile_up: float | None = None) -> tuple[float, tuple[int, int, int]]:
        """The series' void probability from its prepared slices ``x`` (N, 1, H, W), and the map
        cell (slice, row, col) it comes from: the highest logit among cells with a pile-up next to
        them (``pile_up``; None: the registered one), 0 where no cell has one."""
        maps = np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)[:, 0]
        return _gated_peak(x, maps, self.pile_up if pile_up is None else pile_up)

    def probability(self, slices: Sequence[np.ndarray], spacing: tuple[float, float] | None,
                    pile_up: float | None = None) -> tuple[float, tuple[int, float, float]]:
        """Chance that the series shows a susceptibility void, and where its strongest evidence lies:
        (slice position in ``slices``, row, col in the slice's own pixels)."""
        prob, (k, r, c) = self.read(prepare(slices, spacing), pile_up)
        sp = spacing if spacing and min(spacing) > 0 else (SPACING_MM, SPACING_MM)
        row = (r + 0.5) * STRIDE * SPACING_MM / float(sp[0])
        col = (c + 0.5) * STRIDE * SPACING_MM / float(sp[1])
        return prob, (int(k), float(row), float(col))


def _gated_peak(x: np.ndarray, maps: np.ndarray, pile_up: float) -> tuple[float, tuple[int, int, int]]:
    from scipy import ndimage

    img = x[:, 0]
    tissue = img[img > 0.05]
    ref = float(np.percentile(tissue, 98)) if tissue.size else 1.0
    # the brightest pixel within PILE_UP_RADIUS_PX of each map cell's centre
    size = 2 * PILE_UP_RADIUS_PX + 1
    bright = ndimage.maximum_filter(img, size=(1, size, size), mode="constant")
    centre = STRIDE // 2
    near = bright[:, centre::STRIDE, centre::STRIDE][:, :maps.shape[1], :maps.shape[2]]
    ok = near >= pile_up * ref
    if not ok.any():
        return 0.0, (0, 0, 0)
    gated = np.where(ok, maps[:, :near.shape[1], :near.shape[2]], -np.inf)
    k, r, c = np.unravel_index(int(np.argmax(gated)), gated.shape)
    return float(1.0 / (1.0 + np.exp(-float(gated[k, r, c])))), (int(k), int(r), int(c))
