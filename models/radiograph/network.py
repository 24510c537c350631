"""The network of ``cxr_anatomy``: a small MONAI 2-D U-Net with one sigmoid output per channel.

Projections overlap (a scapula lies over a lung, ribs over everything), so the output is
multi-label: one independent sigmoid per structure of :data:`radqc.models.radiograph.data.CHANNELS`,
not a softmax. Channels are kept few and narrow so the ONNX file stays well under 5 MB and
a 192 x 192 forward pass costs tens of milliseconds on one CPU core.
"""

from __future__ import annotations

from typing import Any

INPUT_SIZE = 192
FEATURES: tuple[int, ...] = (24, 48, 96, 128, 160)


def build_network(out_channels: int) -> Any:
    """MONAI ``UNet``: 4 down-samplings (the receptive field covers a whole chest), no residual units.

    Residual units cost ~3x per training step on one CPU core for little gain here; the
    saved time buys 2x wider layers and ~4x more steps inside the 35-minute budget."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=out_channels,
        channels=FEATURES,
        strides=(2, 2, 2, 2),
        num_res_units=0,
        norm="batch",
        dropout=0.0,
    )
