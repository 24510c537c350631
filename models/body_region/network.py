"""The slice-score network: a small 2D CNN, HU in, one body-position score out (training only).

Windowing is part of the network, so the ONNX file takes plain HU and serving code cannot
disagree with training about windows: three channels (air/lung -1000..0, soft tissue
-200..300, bone 150..1650 HU), each scaled to 0..1. Five conv blocks (the first strided),
global average pooling and one linear layer: about 80k parameters, ~20 MMAC per 96x96
slice, small enough for CPU serving of a 300-slice CT in well under a second.
"""

from __future__ import annotations

import torch
from torch import nn

#: (low, high) HU of each input channel.
WINDOWS: tuple[tuple[float, float], ...] = ((-1000.0, 0.0), (-200.0, 300.0), (150.0, 1650.0))


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SliceScoreNet(nn.Module):
    """(B, 1, H, W) HU -> (B,) score. H = W = 96 at 5 mm in the shipped model."""

    lo: torch.Tensor
    span: torch.Tensor

    def __init__(self, widths: tuple[int, ...] = (16, 24, 48, 64, 96)) -> None:
        super().__init__()
        lo = torch.tensor([w[0] for w in WINDOWS]).view(1, -1, 1, 1)
        hi = torch.tensor([w[1] for w in WINDOWS]).view(1, -1, 1, 1)
        self.register_buffer("lo", lo)
        self.register_buffer("span", hi - lo)
        layers: list[nn.Module] = [_block(len(WINDOWS), widths[0], stride=2)]
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers.append(_block(cin, cout))
            if cout != widths[-1]:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], 1)

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        x = torch.clamp((hu - self.lo) / self.span, 0.0, 1.0)
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        return 50.0 + 30.0 * self.head(x).squeeze(1)  # scores span about -5..110: keep the head's output O(1)
