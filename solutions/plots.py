"""Figures of the reference run: loss history, test pairs with similarity scores, 2-D embedding map."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from data_utils.fashion_mnist import CLASS_NAMES
from data_utils.plotting import show_pairs

from .evaluate import similarity, to_float_images


def plot_loss_history(
    loss_history: Sequence[float], steps_per_epoch: int, log_every: int = 10, path: str | Path | None = None
) -> plt.Figure:
    """The batch loss logged every ``log_every`` steps, with the epoch boundaries marked."""
    fig, ax = plt.subplots(figsize=(8, 4))
    steps = [k * log_every for k in range(len(loss_history))]
    ax.plot(steps, loss_history, linewidth=1, label="batch loss")
    last_step = steps[-1] if steps else 0
    # A dotted line where each epoch after the first begins (none after the last logged step).
    for epoch in range(1, math.ceil((last_step + 1) / max(steps_per_epoch, 1))):
        ax.axvline(epoch * steps_per_epoch, color="gray", linestyle=":", linewidth=1)
        ax.text(
            epoch * steps_per_epoch,
            ax.get_ylim()[1],
            f" epoch {epoch + 1}",
            fontsize=8,
            va="top",
            color="gray",
        )
    ax.set_xlabel("training step (batch)")
    ax.set_ylabel("contrastive loss")
    ax.set_title(f"Loss history (logged every {log_every} steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def gallery_partners(labels: torch.Tensor, first_index: int = 0, num_pairs: int = 10) -> torch.Tensor:
    """The first images after ``first_index`` of its own class (half the pairs) and of other classes (the rest)."""
    after = torch.arange(first_index + 1, len(labels))
    same = after[labels[after] == labels[first_index]][: num_pairs // 2]
    other = after[labels[after] != labels[first_index]][: num_pairs - len(same)]
    return torch.cat([same, other])


def plot_similarity_pairs(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device | str = "cpu",
    first_index: int = 0,
    num_pairs: int = 10,
    path: str | Path | None = None,
) -> plt.Figure:
    """One fixed test image against ``num_pairs`` others (half of its class), titled with ``exp(-d)`` and
    class names."""
    others = gallery_partners(labels, first_index, num_pairs)
    first = torch.full_like(others, first_index)
    # The few embeddings are computed here, not with ``evaluate.embed``: lesson 6 shows this figure before its
    # students write ``embed``, and while it is graded that reference is hidden from the notebook.
    net.eval()
    with torch.no_grad():
        batch = to_float_images(images[torch.cat([first[:1], others])]).to(device)
        emb = net.forward_ind(batch).float().cpu()
    distances = torch.linalg.vector_norm(emb[1:] - emb[:1], dim=1)
    titles = [
        f"sim {float(s):.2f}\n{CLASS_NAMES[int(labels[first_index])]}\nvs {CLASS_NAMES[int(labels[j])]}"
        for s, j in zip(similarity(distances), others)
    ]
    fig = show_pairs(to_float_images(images[first]), to_float_images(images[others]), titles)
    fig.suptitle("Test pairs: similarity = exp(-distance)", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def pca_2d(embeddings: torch.Tensor) -> torch.Tensor:
    """Project embeddings onto their two principal components."""
    centred = embeddings.double() - embeddings.double().mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ v[:2].T).float()


def plot_embeddings(
    embeddings: torch.Tensor, labels: torch.Tensor, path: str | Path | None = None
) -> plt.Figure:
    """Test embeddings projected to 2-D (PCA), coloured by class."""
    points = pca_2d(embeddings)
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(CLASS_NAMES):
        mask = labels == c
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=3, alpha=0.5, color=cmap(c), label=name)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title("Test embeddings (PCA to 2-D)")
    ax.legend(markerscale=4, fontsize=8, loc="best")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_episodes(
    embeddings: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[int, ...],
    num_episodes: int = 4,
    seed: int = 0,
    path: str | Path | None = None,
    episodes=None,
) -> plt.Figure:
    """One-shot episodes as a student would check them: per row the supports, then a query, framed green where the
    nearest support is its class, red where not. ``episodes`` (one-shot ``oneshot.Episodes``, lesson 7 passes the
    student's) defaults to ``num_episodes`` drawn here of all ``classes``."""
    if episodes is None:
        from .oneshot import sample_episodes

        episodes = sample_episodes(labels, classes, len(classes), 1, 1, num_episodes, seed=seed)
    episodes = type(episodes)(
        episodes.support[:num_episodes], episodes.query[:num_episodes], episodes.classes[:num_episodes]
    )
    num_episodes, n_way = len(episodes.classes), episodes.classes.shape[1]
    fig, axes = plt.subplots(
        num_episodes, n_way + 1, figsize=(1.6 * (n_way + 1), 1.8 * num_episodes), squeeze=False
    )
    for row, (support, query, chosen) in enumerate(
        zip(episodes.support[:, :, 0], episodes.query[:, :, 0], episodes.classes)
    ):
        asked = int(torch.randint(n_way, (1,), generator=torch.Generator().manual_seed(seed + row)))
        nearest = int(torch.cdist(embeddings[query[asked]][None], embeddings[support]).argmin())
        for column, index in enumerate([*support.tolist(), int(query[asked])]):
            ax = axes[row, column]
            ax.imshow(images[index].numpy(), cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            if column < n_way:
                ax.set_title(CLASS_NAMES[int(chosen[column])], fontsize=8)
        right = nearest == asked
        query_ax = axes[row, n_way]
        query_ax.set_title(
            f"query → {CLASS_NAMES[int(chosen[nearest])]}", fontsize=8, color="green" if right else "red"
        )
        for spine in query_ax.spines.values():
            spine.set_edgecolor("green" if right else "red")
            spine.set_linewidth(3)
    fig.suptitle(f"{n_way}-way one-shot episodes of classes the network never saw")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_few_shot(scores: dict, path: str | Path | None = None) -> plt.Figure:
    """Few-shot accuracies on unseen classes with their 95% intervals, raw pixels beside, chance marked."""
    bars = [
        ("5-way 1-shot", scores["five_way_one_shot"], 1 / 5),
        ("5-way 5-shot", scores["five_way_five_shot"], 1 / 5),
        ("10-way 1-shot\n(seen + unseen)", scores["ten_way_one_shot"], 1 / 10),
        ("5-way 1-shot,\nraw pixels", scores["pixels_five_way_one_shot"], 1 / 5),
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (name, found, chance) in enumerate(bars):
        ax.bar(
            k,
            found["accuracy"],
            yerr=found["ci95"],
            capsize=6,
            color="tab:gray" if "pixels" in name else "tab:blue",
        )
        ax.hlines(chance, k - 0.4, k + 0.4, colors="black", linestyles=":", linewidth=1)
        ax.text(k, found["accuracy"] + 0.03, f"{found['accuracy']:.1%}", ha="center", fontsize=9)
    ax.set_xticks(range(len(bars)), [name for name, _, _ in bars], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"accuracy over {scores['five_way_one_shot']['episodes']} episodes")
    ax.set_title(
        f"Classes never seen in training: {', '.join(CLASS_NAMES[c] for c in scores['unseen_classes'])}\n"
        "(dotted: chance; bars: 95% intervals)",
        fontsize=9,
    )
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
