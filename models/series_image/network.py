"""The thumbnail CNN (torch; training and export only — serving runs the ONNX file).

Small on purpose (~0.2 M parameters, ~17 M multiply-adds per series): the issue's budget is
20 ms per series on one CPU core including the thumbnail, and the synthetic training set
is a few thousand series. The trunk is plain conv/BN/ReLU; the neck keeps both global
statistics (average and max pooling: "is there a 300 HU aorta anywhere") and a coarse 4 x 4
layout (plane, view and region depend on where things are). All heads read one shared
feature vector and are emitted as one concatenated logit vector (see :mod:`.heads`).
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ThumbNet(nn.Module):
    """(N, C, 64, 64) thumbnails -> (N, n_logits) concatenated head logits."""

    def __init__(self, in_channels: int, n_logits: int, widths: tuple[int, int, int, int] = (16, 32, 64, 128),
                 hidden: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.trunk = nn.Sequential(
            _block(in_channels, w1, stride=2),  # 32
            _block(w1, w2), nn.MaxPool2d(2),  # 16
            _block(w2, w3), nn.MaxPool2d(2),  # 8
            _block(w3, w4), nn.MaxPool2d(2),  # 4
            _block(w4, w4),
        )
        self.layout = nn.Sequential(nn.Conv2d(w4, 16, 1), nn.ReLU(inplace=True))
        self.fc = nn.Sequential(nn.Linear(2 * w4 + 16 * 16, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, n_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x)
        avg = f.mean(dim=(2, 3))
        mx = f.amax(dim=(2, 3))
        lay = self.layout(f).flatten(1)
        return self.out(self.fc(torch.cat([avg, mx, lay], dim=1)))
