"""Lesson 07: recognising classes never seen, from one example each (N-way K-shot episodes).

An *episode* draws ``n_way`` classes, ``k_shot`` support images of each (the examples the network is
shown) and ``n_query`` query images of each (the ones to recognise), all distinct. A query is
assigned to the class whose *prototype*, the mean embedding of its supports, is nearest; with one
shot the prototype is the support itself. Accuracy is averaged over many random episodes and
reported with a 95% confidence interval.

The two baselines are measured on the same episodes: raw pixels as the embedding, and a small CNN
trained from scratch on each episode's support images alone.

``batch_hard_loss`` is the recipe change lesson 7 has students write: in a batch of a few classes,
each image's hardest same-class and other-class partners (Hermans et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval


@dataclass(frozen=True)
class Episodes:
    """``num_episodes`` episodes as indices into one set of images."""

    support: torch.Tensor  # [E, N, K]: support images of each episode's N classes
    query: torch.Tensor  # [E, N, Q]: query images, in the same class order
    classes: torch.Tensor  # [E, N]: the class of each position

    def __len__(self) -> int:
        return len(self.classes)


def sample_episodes(
    labels: torch.Tensor,
    classes: tuple[int, ...],
    n_way: int,
    k_shot: int,
    n_query: int,
    num_episodes: int,
    seed: int = 0,
) -> Episodes:
    """Draw episodes from the images of ``classes``: per episode ``n_way`` distinct classes, then ``k_shot + n_query``
    distinct images of each, the first ``k_shot`` the supports."""
    if n_way > len(classes):
        raise ValueError(f"{n_way}-way episodes need at least {n_way} classes, got {len(classes)}")
    by_class = {c: (labels == c).nonzero().flatten() for c in classes}
    too_few = [c for c, found in by_class.items() if len(found) < k_shot + n_query]
    if too_few:
        raise ValueError(f"classes {too_few} have fewer than k_shot + n_query = {k_shot + n_query} images")
    generator = torch.Generator().manual_seed(seed)
    pool = torch.tensor(classes)
    chosen = torch.stack(
        [pool[torch.randperm(len(pool), generator=generator)[:n_way]] for _ in range(num_episodes)]
    )
    images = torch.stack(
        [
            torch.stack(
                [
                    by_class[int(c)][
                        torch.randperm(len(by_class[int(c)]), generator=generator)[: k_shot + n_query]
                    ]
                    for c in episode
                ]
            )
            for episode in chosen
        ]
    )  # [E, N, K + Q]
    return Episodes(images[:, :, :k_shot], images[:, :, k_shot:], chosen)


def episode_accuracies(embeddings: torch.Tensor, episodes: Episodes) -> torch.Tensor:
    """Each episode's share of queries whose nearest prototype (mean support embedding) is their own class's."""
    prototypes = embeddings[episodes.support].mean(dim=2)  # [E, N, D]
    queries = embeddings[episodes.query]  # [E, N, Q, D]
    num_episodes, n_way, n_query, dim = queries.shape
    distances = torch.cdist(queries.reshape(num_episodes, n_way * n_query, dim), prototypes)  # [E, N·Q, N]
    truth = torch.arange(n_way).repeat_interleave(n_query)
    return (distances.argmin(dim=2) == truth).float().mean(dim=1)


def mean_with_interval(values: torch.Tensor) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its 95% confidence interval (normal approximation)."""
    values = values.double()
    spread = float(values.std()) if len(values) > 1 else math.inf
    return float(values.mean()), Z_95 * spread / math.sqrt(len(values))


def few_shot_accuracy(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[int, ...],
    n_way: int,
    k_shot: int,
    num_episodes: int = 2000,
    n_query: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """N-way K-shot accuracy of ``embeddings`` over random episodes of ``classes``, with its 95% interval."""
    episodes = sample_episodes(labels, classes, n_way, k_shot, n_query, num_episodes, seed)
    accuracy, interval = mean_with_interval(episode_accuracies(embeddings.float(), episodes))
    return {"accuracy": accuracy, "ci95": interval, "episodes": num_episodes}


def pixel_embeddings(images: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline: each image as its 784 pixel values in [0, 1]."""
    return images.reshape(len(images), -1).float() / 255.0


def batch_hard_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """The contrastive loss of each image's hardest pairs in the batch, averaged: its farthest same-class image
    (pulled in) and its nearest other-class image (pushed out to ``margin``)."""
    squared = torch.cdist(embeddings.float(), embeddings.float()).pow(2)
    distances = squared.clamp_min(1e-12).sqrt()  # a finite gradient where two embeddings coincide
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    farthest_same = distances.masked_fill(~same | itself, 0).amax(dim=1)
    nearest_other = distances.masked_fill(same, math.inf).amin(dim=1)
    return (farthest_same.pow(2) + torch.relu(margin - nearest_other).pow(2)).mean()


# ---------------------------------------------------------------- baseline: a CNN trained on the supports alone


class SupportCNN(nn.Module):
    """A small classifier trained from scratch on one episode's support images."""

    def __init__(self, n_way: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 x 14
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7 x 7
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, n_way),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of a batch ``[B, 1, 28, 28]``."""
        return self.layers(x)


def support_cnn_accuracies(
    images: torch.Tensor,
    episodes: Episodes,
    steps: int = 50,
    lr: float = 1e-2,
    seed: int = 0,
    chunk: int = 250,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Each episode's accuracy of its own ``SupportCNN``, trained for ``steps`` Adam steps on its supports alone.

    The episodes' networks train side by side (``torch.func.vmap``): one optimiser over their stacked weights is
    the same as one per network, because each network's loss depends on its own weights only and Adam's update
    is elementwise.
    """
    from torch.func import functional_call, stack_module_state, vmap

    torch.manual_seed(seed)
    pixels = images.to(device).float().unsqueeze(1) / 255.0
    n_way, k_shot, n_query = episodes.support.shape[1], episodes.support.shape[2], episodes.query.shape[2]
    found = []
    for start in range(0, len(episodes), chunk):
        support = episodes.support[start : start + chunk].flatten(1).to(device)  # [E, N·K], class-major
        query = episodes.query[start : start + chunk].flatten(1).to(device)
        weights, buffers = stack_module_state([SupportCNN(n_way).to(device) for _ in range(len(support))])
        template = SupportCNN(n_way).to("meta")

        def scores(w: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            """Class scores of the episodes' networks, one per stacked weight set."""
            return functional_call(template, (w, b), (x,))  # noqa: B023 (used in this iteration only)

        optimizer = torch.optim.Adam(weights.values(), lr=lr)
        targets = torch.arange(n_way, device=device).repeat_interleave(k_shot).repeat(len(support))
        for _ in range(steps):
            logits = vmap(scores)(weights, buffers, pixels[support])  # [E, N·K, N]
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets) * len(
                support
            )  # sum of episodes' means
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            predicted = vmap(scores)(weights, buffers, pixels[query]).argmax(dim=2)  # [E, N·Q]
        truth = torch.arange(n_way, device=device).repeat_interleave(n_query)
        found.append((predicted == truth).float().mean(dim=1).cpu())
    return torch.cat(found)


# ---------------------------------------------------------------- a network scored on classes it never saw


def unseen_class_scores(
    net: nn.Module,
    validation,
    test,
    unseen: tuple[int, ...],
    device: torch.device | str = "cpu",
    num_episodes: int = 2000,
    num_pairs: int = 10_000,
) -> dict[str, dict[str, float] | float]:
    """How ``net``, trained without the classes ``unseen``, recognises them: 5-way 1-shot and 5-shot episodes of
    unseen test images, 10-way 1-shot over all ten test classes, and verification on balanced pairs of unseen test
    images with the threshold chosen on validation pairs of the seen classes (no unseen label is used to choose it)."""
    from data_utils.splits import NUM_CLASSES, with_classes

    from .evaluate import (
        best_threshold,
        embed,
        make_balanced_pairs,
        pair_distances,
        roc_auc,
        verification_accuracy,
    )

    seen = tuple(c for c in range(NUM_CLASSES) if c not in unseen)
    test_embeddings, test_labels = embed(net, test.data, device).float(), torch.as_tensor(test.targets)
    is_unseen = torch.isin(test_labels, torch.tensor(unseen))
    embeddings, labels = test_embeddings[is_unseen], test_labels[is_unseen]
    seen_validation = with_classes(validation, seen)
    v_first, v_second, v_label = make_balanced_pairs(seen_validation.targets, num_pairs, seed=2)
    v_distances = pair_distances(embed(net, seen_validation.data, device).float(), v_first, v_second)
    threshold = best_threshold(v_distances, v_label)
    first, second, pair_label = make_balanced_pairs(labels, num_pairs, seed=0)
    distances = pair_distances(embeddings, first, second)
    return {
        "unseen_classes": list(unseen),
        "five_way_one_shot": few_shot_accuracy(embeddings, labels, unseen, 5, 1, num_episodes),
        "five_way_five_shot": few_shot_accuracy(embeddings, labels, unseen, 5, 5, num_episodes),
        "ten_way_one_shot": few_shot_accuracy(
            test_embeddings, test_labels, tuple(range(NUM_CLASSES)), 10, 1, num_episodes
        ),
        "verification_accuracy": verification_accuracy(distances, pair_label, threshold),
        "roc_auc": roc_auc(distances, pair_label),
        "threshold": threshold,
    }
