"""Lesson 04: the contrastive loss (Hadsell, Chopra & LeCun 2006, without the 1/2 factor) and its gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def contrastive_loss(
    out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float = 2.0
) -> torch.Tensor:
    """Mean over the batch of ``(1 - y) d² + y max(margin - d, 0)²``, with ``d`` the Euclidean distance.

    ``label`` (0 = same, 1 = different) may have shape ``[B]`` or ``[B, 1]``.
    """
    if label.numel() != out1.shape[0]:
        raise ValueError(
            f"expected one label per pair ({out1.shape[0]}), got label of shape {tuple(label.shape)}"
        )
    # Flattening the label avoids the silent [B, 1] x [B] -> [B, B] broadcast.
    y = label.reshape(-1).to(out1.dtype)
    d = F.pairwise_distance(out1, out2)  # [B]
    return torch.mean((1 - y) * d.pow(2) + y * torch.clamp(margin - d, min=0).pow(2))


def contrastive_loss_gradient(
    out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float = 2.0
) -> torch.Tensor:
    """``∂L/∂out1`` of the batch-mean contrastive loss, written by hand, for pairs at distance ``d > 0``."""
    y = label.reshape(-1, 1).to(out1.dtype)
    diff = out1 - out2
    d = torch.linalg.vector_norm(diff, dim=1, keepdim=True)
    pull = 2 * diff  # ∂(d²)/∂out1
    push = -2 * torch.clamp(margin - d, min=0) * diff / d  # ∂(max(m - d, 0)²)/∂out1, with ∂d/∂out1 = diff / d
    return ((1 - y) * pull + y * push) / out1.shape[0]


def numerical_gradient(f: Callable[[torch.Tensor], float], x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """The gradient of the scalar function ``f`` at ``x`` by central differences, one element at a time."""
    point = x.detach().clone()
    grad = torch.zeros_like(point)
    flat_point, flat_grad = point.view(-1), grad.view(-1)
    for i in range(flat_point.numel()):
        old = float(flat_point[i])
        flat_point[i] = old + h
        above = float(f(point))
        flat_point[i] = old - h
        below = float(f(point))
        flat_point[i] = old  # leave the point as it was for the next element
        flat_grad[i] = (above - below) / (2 * h)
    return grad


def distance_after_step(d: float, y: int, margin: float, lr: float) -> float:
    """The distance of a lone pair after one gradient-descent step of size ``lr`` on both embeddings (d > 0)."""
    if y == 0:
        return abs(1 - 4 * lr) * d  # each embedding moves 2·lr·d towards the other
    return d + 4 * lr * max(margin - d, 0.0)  # each moves 2·lr·(m - d) away, until the margin


def collapsed_loss(p: float, margin: float) -> float:
    """The loss of a batch whose embeddings all coincide, when a share ``p`` of its pairs are different-class."""
    return p * margin**2  # same-class pairs cost d² = 0, different-class ones (m - 0)²


class ContrastiveLoss(nn.Module):
    """``nn.Module`` wrapper of ``contrastive_loss`` with a fixed margin."""

    def __init__(self, margin: float = 2.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """The mean contrastive loss of a batch of embedding pairs."""
        return contrastive_loss(out1, out2, label, self.margin)
