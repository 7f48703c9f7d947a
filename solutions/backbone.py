"""Lesson 02: the convolutional backbone shared by both images of a pair."""

from __future__ import annotations

import torch
from torch import nn


class CNNBackbone(nn.Module):
    """Three conv → ReLU → max-pool blocks: ``[B, 1, 28, 28]`` → ``[B, 256, 3, 3]``."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=5, stride=1, padding=2),  # 28 x 28, size kept by padding
            nn.ReLU(),
            nn.MaxPool2d(2, stride=2),  # → 14 x 14
            nn.Conv2d(64, 128, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2, stride=2),  # → 7 x 7
            nn.Conv2d(128, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, stride=2),  # → 3 x 3 (the odd row and column are dropped)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps ``[B, 256, 3, 3]`` of a batch of images ``[B, 1, 28, 28]``."""
        return self.layers(x)


def backbone_side(side: int) -> int:
    """The side of the backbone's feature maps for a square input of side ``side`` (at least 8)."""
    for _ in range(
        3
    ):  # each block: the padded convolution keeps the side, the pooling halves it, rounding down
        side = side // 2
    return side


def conv_parameters(in_channels: int, out_channels: int, kernel: int) -> int:
    """Question 2.3: the parameters of ``Conv2d(in_channels, out_channels, kernel)``: weights and biases."""
    return out_channels * (
        in_channels * kernel * kernel + 1
    )  # a kernel per input channel, and a bias, per output
