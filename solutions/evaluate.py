"""Lesson 06: embeddings at inference time, similarity scores and verification metrics."""

from __future__ import annotations

import torch
from torch import nn

from .data import PairSampler


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` → float32 ``[N, 1, 28, 28]`` in [0, 1], as ``ToTensor()`` gives."""
    if images.dtype == torch.uint8:
        images = images.to(torch.float32) / 255.0
    return images.reshape(-1, 1, images.shape[-2], images.shape[-1])


def embed(
    net: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 1024
) -> torch.Tensor:
    """Embeddings ``[N, D]`` (float32, on the CPU) of images, in eval mode and without gradients."""
    net.eval()  # layers like dropout or batch norm behave differently at inference
    chunks = []
    with torch.no_grad():  # no graph to keep: faster and far less memory
        for start in range(0, len(images), batch_size):
            batch = to_float_images(images[start : start + batch_size]).to(device)
            chunks.append(net.forward_ind(batch).float().cpu())
    return torch.cat(chunks)


def similarity(distance: torch.Tensor) -> torch.Tensor:
    """The original notebook's similarity score ``exp(-d)``: 1 for identical embeddings, → 0 far apart."""
    return torch.exp(-distance)


def make_balanced_pairs(
    labels: torch.Tensor, num_pairs: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed set of pairs, exactly half same-class: ``(first, second, pair_label)`` with 0 = same, 1 = different."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(len(labels), (num_pairs,), generator=generator)
    same = torch.arange(num_pairs) < (num_pairs + 1) // 2
    same = same[torch.randperm(num_pairs, generator=generator)]
    second, pair_label = PairSampler(labels).sample(first, generator=generator, same=same)
    return first, second, pair_label


def pair_distances(embeddings: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between the embeddings of each pair."""
    return torch.linalg.vector_norm(embeddings[first] - embeddings[second], dim=1)


def verification_accuracy(distances: torch.Tensor, pair_labels: torch.Tensor, threshold: float) -> float:
    """Fraction of pairs classified right when "same" means ``distance < threshold``."""
    predicted_different = distances >= threshold
    return (predicted_different == pair_labels.reshape(-1).bool()).float().mean().item()


def best_threshold(distances: torch.Tensor, pair_labels: torch.Tensor) -> float:
    """A distance threshold with the highest verification accuracy on these pairs (choose it on validation pairs)."""
    d, order = torch.sort(distances.double())
    different = pair_labels.reshape(-1).double()[order]
    # Threshold below d[k]: pairs 0..k-1 are called "same". Count the right calls for every k at once.
    same_right = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1 - different, 0)])
    different_right = different.sum() - torch.cat(
        [torch.zeros(1, dtype=torch.float64), torch.cumsum(different, 0)]
    )
    correct = same_right + different_right
    # Only cut between distinct distances, so that tied pairs always get the same call.
    allowed = torch.ones(len(d) + 1, dtype=torch.bool)
    allowed[1:-1] = d[1:] > d[:-1]
    k = int(torch.argmax(torch.where(allowed, correct, torch.full_like(correct, -1.0))))
    if k == 0:
        return float(d[0]) - 1e-6
    if k == len(d):
        return float(d[-1]) + 1e-6
    return float((d[k - 1] + d[k]) / 2)


def roc_auc(distances: torch.Tensor, pair_labels: torch.Tensor) -> float:
    """Area under the ROC curve of "distance predicts different": P(d_different > d_same), ties counting 1/2."""
    different = pair_labels.reshape(-1).bool()
    num_diff, num_same = int(different.sum()), int((~different).sum())
    if num_diff == 0 or num_same == 0:
        raise ValueError("ROC AUC needs both same-class and different-class pairs")
    d = distances.double()
    order = torch.argsort(d)
    ranks = torch.empty_like(d)
    ranks[order] = torch.arange(1, len(d) + 1, dtype=torch.float64)
    # Tied distances share their average rank (the Mann-Whitney statistic's tie rule).
    unique, inverse = torch.unique(d, return_inverse=True)
    rank_sum = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    tie_count = torch.bincount(inverse, minlength=len(unique)).double()
    ranks = (rank_sum / tie_count)[inverse]
    u = ranks[different].sum() - num_diff * (num_diff + 1) / 2
    return float(u / (num_diff * num_same))


def overlap_best_accuracy(shift: float, width: float) -> float:
    """Question 6.4: the best accuracy when same-class distances fill [0, width] and different ones [shift,
    shift + width]."""
    return (
        1 + min(shift / width, 1.0)
    ) / 2  # any threshold in the overlap [shift, width] gets every pair outside it right


def overlap_auc(shift: float, width: float) -> float:
    """Question 6.5: the ROC AUC of the same two uniform blocks of distances."""
    return 1 - (1 - min(shift / width, 1.0)) ** 2 / 2  # P(different > same) = 1 - P(same - different >= 0)


def nearest_neighbour_accuracy(
    train_embeddings: torch.Tensor,
    train_labels: torch.Tensor,
    test_embeddings: torch.Tensor,
    test_labels: torch.Tensor,
    chunk: int = 1024,
) -> float:
    """Class accuracy of labelling each test embedding with its nearest training embedding's class."""
    correct = 0
    for start in range(0, len(test_embeddings), chunk):
        d = torch.cdist(test_embeddings[start : start + chunk], train_embeddings)
        predicted = train_labels[d.argmin(dim=1)]
        correct += int((predicted == test_labels[start : start + chunk]).sum())
    return correct / len(test_embeddings)


def evaluate(
    net: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    validation_images: torch.Tensor,
    validation_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    device: torch.device | str = "cpu",
    num_pairs: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Verification accuracy on training, validation and test pairs (the threshold chosen on validation
    pairs), ROC AUC."""
    return evaluate_embeddings(
        embed(net, train_images, device),
        train_labels,
        embed(net, validation_images, device),
        validation_labels,
        embed(net, test_images, device),
        test_labels,
        num_pairs=num_pairs,
        seed=seed,
    )


def evaluate_embeddings(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    validation_emb: torch.Tensor,
    validation_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    num_pairs: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """``evaluate`` on embeddings computed already."""
    # The threshold is chosen on validation pairs: images the network never trained on, and never the test images.
    v_first, v_second, v_label = make_balanced_pairs(validation_labels, num_pairs, seed=seed + 2)
    validation_distances = pair_distances(validation_emb, v_first, v_second)
    threshold = best_threshold(validation_distances, v_label)
    t_first, t_second, t_label = make_balanced_pairs(train_labels, num_pairs, seed=seed + 1)
    first, second, pair_label = make_balanced_pairs(test_labels, num_pairs, seed=seed)
    distances = pair_distances(test_emb, first, second)
    return {
        "threshold": threshold,
        "train_pair_accuracy": verification_accuracy(
            pair_distances(train_emb, t_first, t_second), t_label, threshold
        ),
        "validation_accuracy": verification_accuracy(validation_distances, v_label, threshold),
        "test_accuracy": verification_accuracy(distances, pair_label, threshold),
        "roc_auc": roc_auc(distances, pair_label),
        "nearest_neighbour_accuracy": nearest_neighbour_accuracy(
            train_emb, train_labels, test_emb, test_labels
        ),
        "mean_similarity_same": similarity(distances[pair_label == 0]).mean().item(),
        "mean_similarity_different": similarity(distances[pair_label == 1]).mean().item(),
        "num_test_pairs": num_pairs,
    }
