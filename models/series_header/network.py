"""The header classifier network (torch; training only): an MLP with one softmax head per field."""

from __future__ import annotations

import torch
from torch import nn

from radqc.pipelines.series.heads import HEADS


class HeaderNet(nn.Module):
    """Linear(D, 256) - ReLU - Dropout - Linear(256, 128) - ReLU - heads; exported output:
    the per-head softmax probabilities concatenated in HEADS order."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, 128), nn.ReLU())
        self.heads = nn.ModuleList([nn.Linear(128, len(v)) for v in HEADS.values()])

    def logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        z = self.trunk(x)
        return [h(z) for h in self.heads]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.softmax(lg, dim=1) for lg in self.logits(x)], dim=1)
