"""Lesson 03: the embedding head and the Siamese network (backbone + head, shared by both images)."""

from __future__ import annotations

import torch
from torch import nn

from .backbone import CNNBackbone

__all__ = ["CNNBackbone", "EmbeddingHead", "SiameseNetwork", "count_parameters"]


class EmbeddingHead(nn.Module):
    """Flatten → Linear(2304, 1024) → ReLU → Linear(1024, embedding_dim) → ReLU."""

    def __init__(self, in_features: int = 256 * 3 * 3, embedding_dim: int = 256) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, 1024),
            nn.ReLU(),
            nn.Linear(1024, embedding_dim),
            nn.ReLU(),  # as in the original: embeddings are non-negative
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[B, embedding_dim]`` of backbone features ``[B, 256, 3, 3]``."""
        return self.layers(features)


class SiameseNetwork(nn.Module):
    """One backbone and one head; the same weights embed both images of a pair."""

    def __init__(self, embedding_dim: int = 256) -> None:
        super().__init__()
        self.backbone = CNNBackbone()
        self.head = EmbeddingHead(embedding_dim=embedding_dim)

    def forward_ind(self, x: torch.Tensor) -> torch.Tensor:
        """Embed one batch of images ``[B, 1, 28, 28]`` → ``[B, embedding_dim]``."""
        return self.head(self.backbone(x))

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed both images of each pair with the same weights."""
        return self.forward_ind(img1), self.forward_ind(img2)


def count_parameters(net: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def head_parameters(in_features: int, hidden: int, embedding_dim: int) -> int:
    """The parameters of Flatten → Linear(in_features, hidden) → ReLU → Linear(hidden, embedding_dim) → ReLU."""
    return (in_features * hidden + hidden) + (hidden * embedding_dim + embedding_dim)  # weights and biases


def all_zero_share(p: float, embedding_dim: int) -> float:
    """Question 3.4: the share of all-zero embeddings if each coordinate were cut independently with probability p."""
    return p**embedding_dim  # independent events: the probabilities multiply
