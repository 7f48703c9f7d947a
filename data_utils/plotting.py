"""Plotting helpers shared by the lessons and the reference solution."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from .fashion_mnist import CLASS_NAMES


def _as_image(image: torch.Tensor):
    """A ``[1, 28, 28]`` or ``[28, 28]`` tensor as a 2-D array for ``imshow``."""
    return image.detach().float().cpu().reshape(image.shape[-2], image.shape[-1]).numpy()


def show_images(images: Sequence[torch.Tensor], titles: Sequence[str] | None = None, ncols: int = 10,
                size: float = 1.6) -> plt.Figure:
    """Show images in a grid with optional titles; returns the figure."""
    nrows = (len(images) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * 1.25 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(_as_image(images[k]), cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[k], fontsize=8)
    fig.tight_layout()
    return fig


def show_pairs(first: Sequence[torch.Tensor], second: Sequence[torch.Tensor], titles: Sequence[str]) -> plt.Figure:
    """Show pairs side by side, one pair per column (first image on top), each with a title."""
    fig, axes = plt.subplots(2, len(first), figsize=(1.8 * len(first), 4.2), squeeze=False)
    for k in range(len(first)):
        for row, image in enumerate((first[k], second[k])):
            axes[row, k].imshow(_as_image(image), cmap="gray", vmin=0, vmax=1)
            axes[row, k].axis("off")
        axes[0, k].set_title(titles[k], fontsize=8)
    fig.tight_layout()
    return fig


def class_name(label: int) -> str:
    """The Fashion-MNIST class name of an integer label."""
    return CLASS_NAMES[int(label)]
