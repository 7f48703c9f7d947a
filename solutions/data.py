"""Lesson 01: pairs of images labelled 0 (same class) or 1 (different class)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """The integer class label of every item, read from ``.targets`` when the dataset has it."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets, dtype=torch.int64)
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.int64)


class SiameseDataset(Dataset):
    """Item ``i``: image ``i``, a second image of the same class with probability 1/2 (else of another class),
    and the label.

    The label is a float32 tensor of shape ``[1]``: 0 = same class, 1 = different class.
    With ``seed`` set, every item is reproducible; call ``set_epoch`` to get fresh pairs each epoch.
    """

    def __init__(self, dataset: Dataset, seed: int | None = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        labels = dataset_labels(dataset)
        classes = labels.unique().tolist()
        if len(classes) < 2:
            raise ValueError(f"SiameseDataset needs images of at least two classes, got only {classes}")
        # Drawing uniformly from these index lists gives the same distribution as the
        # original's rejection sampling, without its unbounded loop.
        self.same_class = {c: torch.nonzero(labels == c).flatten() for c in classes}
        self.other_class = {c: torch.nonzero(labels != c).flatten() for c in classes}

    def set_epoch(self, epoch: int) -> None:
        """Use the pairs of another epoch (only matters when seeded)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.seed is None:
            coin, u = torch.rand(2).tolist()
        else:
            coin, u = np.random.default_rng([self.seed, self.epoch, index]).random(2)
        image1, label1 = self.dataset[index]
        candidates = self.same_class[int(label1)] if coin < 0.5 else self.other_class[int(label1)]
        image2, label2 = self.dataset[int(candidates[int(u * len(candidates))])]
        label = torch.tensor([float(int(label1) != int(label2))], dtype=torch.float32)
        return image1, image2, label


class PairSampler:
    """Draws pair partners for many images at once by tensor indexing (the fast path of ``SiameseDataset``).

    For image ``i`` a fair coin picks "same" or "different"; the partner is uniform over the images of
    the same class, or over all images of other classes, exactly as in ``SiameseDataset``.
    """

    def __init__(self, labels: torch.Tensor) -> None:
        labels = labels.to(torch.int64)
        self.labels = labels
        num_classes = int(labels.max()) + 1
        self.order = torch.argsort(labels, stable=True)  # image indices grouped by class
        self.count = torch.bincount(labels, minlength=num_classes)
        self.start = torch.cumsum(self.count, 0) - self.count
        if int((self.count > 0).sum()) < 2:
            raise ValueError("PairSampler needs images of at least two classes")

    def sample(
        self, index: torch.Tensor, generator: torch.Generator | None = None, same: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Partners of the images ``index`` and the pair labels (float32, 0 = same, 1 = different).

        ``same`` (bool, one per index) fixes the coin instead of flipping it, for balanced test pairs.
        """
        device = self.labels.device
        index = index.to(device)
        c = self.labels[index]
        if same is None:
            same = torch.rand(len(index), generator=generator, device=device) < 0.5
        same = same.to(device)
        u = torch.rand(len(index), generator=generator, device=device, dtype=torch.float64)
        count, start = self.count[c], self.start[c]
        # Same class: a uniform position inside the class's block of `order`.
        same_pos = start + (u * count).long().clamp(max=count - 1)
        # Different class: a uniform position among the N - count positions outside that block.
        outside = len(self.labels) - count
        r = (u * outside).long().clamp(max=(outside - 1).clamp(min=0))
        other_pos = torch.where(r >= start, r + count, r)
        partner = self.order[torch.where(same, same_pos, other_pos)]
        return partner, (~same).to(torch.float32)


def expected_draws(k: int) -> float:
    """Question 1.2: the mean number of random picks rejection sampling makes per pair, for ``k`` balanced classes."""
    # A pick fits with probability 1/k (same class) or (k - 1)/k (another class); the number of picks until one
    # fits is geometric, with mean 1/p; the fair coin takes each case half the time.
    return 0.5 * k + 0.5 * k / (k - 1)


def always_different_accuracy(k: int) -> float:
    """Question 1.3: how often "different" is right on random pairs of ``k`` balanced classes (many images each)."""
    return (k - 1) / k  # the partner's class is any of the k classes, the anchor's only 1 time in k
