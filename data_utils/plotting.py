"""Plotting helpers shared by the lessons and the reference solution."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from .fashion_mnist import CLASS_NAMES


def _as_image(image: torch.Tensor):
    """A ``[1, 28, 28]`` or ``[28, 28]`` tensor as a 2-D array for ``imshow``."""
    return image.detach().float().cpu().reshape(image.shape[-2], image.shape[-1]).numpy()


def show_images(
    images: Sequence[torch.Tensor], titles: Sequence[str] | None = None, ncols: int = 10, size: float = 1.6
) -> plt.Figure:
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


def show_pairs(
    first: Sequence[torch.Tensor],
    second: Sequence[torch.Tensor],
    titles: Sequence[str],
    second_titles: Sequence[str] | None = None,
) -> plt.Figure:
    """Show pairs side by side, one pair per column (first image on top), each with a title (and one per
    second image)."""
    fig, axes = plt.subplots(2, len(first), figsize=(1.8 * len(first), 4.6), squeeze=False)
    for k in range(len(first)):
        for row, image in enumerate((first[k], second[k])):
            axes[row, k].imshow(_as_image(image), cmap="gray", vmin=0, vmax=1)
            axes[row, k].axis("off")
        axes[0, k].set_title(titles[k], fontsize=8)
        if second_titles is not None:
            axes[1, k].set_title(second_titles[k], fontsize=8)
    fig.tight_layout()
    return fig


def class_name(label: int) -> str:
    """The Fashion-MNIST class name of an integer label."""
    return CLASS_NAMES[int(label)]


def image_class(image: torch.Tensor, dataset) -> int | None:
    """The label of the first image of ``dataset`` (with uint8 ``.data``, ``.targets``) whose pixels equal ``image``."""
    # Read from the data, not from a pair's label, so that a figure of pairs shows what the pairs really hold.
    pixels = (image.detach().float().cpu().reshape(28, 28) * 255).round().to(torch.uint8)
    hits = torch.nonzero((torch.as_tensor(dataset.data) == pixels).flatten(1).all(dim=1)).flatten()
    return int(torch.as_tensor(dataset.targets)[hits[0]]) if len(hits) else None
