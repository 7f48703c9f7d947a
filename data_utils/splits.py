"""The course's one validation split: a fixed twelfth of the training images, never trained on.

Of Fashion-MNIST's 60,000 training images, 5,000 are set aside. Lesson 5 and the reference run train
on the other 55,000; lesson 6 and the reference run choose their decision threshold on pairs of the
5,000, and report accuracy on training, validation and test pairs side by side. The split depends on
the number of images only, so it is the same on every machine and in every run.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

SPLIT_SEED = 2006  # the year of Hadsell, Chopra & LeCun's contrastive loss
VALIDATION_SHARE = 12  # one image in twelve: 5,000 of 60,000


def split_indices(num_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(training indices, validation indices)``, both sorted, disjoint, and together all ``num_images``."""
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(SPLIT_SEED))
    held_out = num_images // VALIDATION_SHARE
    return order[held_out:].sort().values, order[:held_out].sort().values


class ImageSubset(Dataset):
    """Some images of a Fashion-MNIST-like dataset, with its ``data``, ``targets`` and items (``ToTensor()`` images)."""

    def __init__(self, dataset: Dataset, indices: torch.Tensor) -> None:
        self.data = dataset.data[indices]
        self.targets = torch.as_tensor(dataset.targets)[indices]
        self.classes = getattr(dataset, "classes", None)
        self.indices = indices  # positions in the full training set, for tests and reports

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.data[index].unsqueeze(0).to(torch.float32) / 255.0
        return image, int(self.targets[index])


def split_training_set(dataset: Dataset) -> tuple[ImageSubset, ImageSubset]:
    """The training set without its validation images, and the validation images."""
    train, validation = split_indices(len(dataset))
    return ImageSubset(dataset, train), ImageSubset(dataset, validation)
