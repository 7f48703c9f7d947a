"""Lesson 04: the contrastive loss (Hadsell, Chopra & LeCun 2006, without the 1/2 factor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def contrastive_loss(out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float = 2.0) -> torch.Tensor:
    """Mean over the batch of ``(1 - y) d² + y max(margin - d, 0)²``, with ``d`` the Euclidean distance.

    ``label`` (0 = same, 1 = different) may have shape ``[B]`` or ``[B, 1]``.
    """
    if label.numel() != out1.shape[0]:
        raise ValueError(f"expected one label per pair ({out1.shape[0]}), got label of shape {tuple(label.shape)}")
    # Flattening the label avoids the silent [B, 1] x [B] -> [B, B] broadcast.
    y = label.reshape(-1).to(out1.dtype)
    d = F.pairwise_distance(out1, out2)  # [B]
    return torch.mean((1 - y) * d.pow(2) + y * torch.clamp(margin - d, min=0).pow(2))


class ContrastiveLoss(nn.Module):
    """``nn.Module`` wrapper of ``contrastive_loss`` with a fixed margin."""

    def __init__(self, margin: float = 2.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The mean contrastive loss of a batch of embedding pairs."""
        return contrastive_loss(out1, out2, label, self.margin)
