"""The course's splits: a validation split of the images, and held-out splits of the classes.

Of Fashion-MNIST's 60,000 training images, 5,000 are set aside. Lesson 5 and the reference run train
on the other 55,000; lesson 6 and the reference run choose their decision threshold on pairs of the
5,000, and report accuracy on training, validation and test pairs side by side. The split depends on
the number of images only, so it is the same on every machine and in every run.

``HOLDOUT_SPLITS`` hold five of the ten classes out of training entirely, for recognising classes
never seen (``solutions.oneshot``, ``python -m solutions.train --recipe improved``).
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


# ---------------------------------------------------------------- classes never seen in training

#: Splits of the ten classes for one-shot recognition: the network trains on the other five classes and is
#: evaluated on these five only (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
#: 7 Sneaker, 8 Bag, 9 Ankle boot).
HOLDOUT_SPLITS: dict[str, tuple[int, ...]] = {
    # A public project's split (Siamese network 45%, a CNN on the five support images 66%, 5-way 1-shot): the
    # three confusable tops (T-shirt, Coat, Shirt) and two of the three shoes are unseen; the network learns
    # from Trouser, Pullover, Dress, Bag and Ankle boot.
    "anchor": (0, 4, 5, 6, 7),
    # Every unseen class but Bag has a look-alike among the seen (Pullover and Shirt ~ Coat and T-shirt, Dress ~
    # T-shirt, Ankle boot ~ Sneaker and Sandal): does what the network learned on a cousin carry over?
    "look-alikes": (2, 3, 6, 8, 9),
    # Training sees only garments for the upper body and dresses (the hardest classes); the unseen are other
    # kinds of thing: trousers, a bag and three shoes, easy apart from each other except the shoes.
    "new-kinds": (1, 5, 7, 8, 9),
}
NUM_CLASSES = 10


def seen_classes(split: str) -> tuple[int, ...]:
    """The classes a network trains on under ``split``: those it does not hold out."""
    held_out = HOLDOUT_SPLITS[split]
    return tuple(c for c in range(NUM_CLASSES) if c not in held_out)


def with_classes(dataset: Dataset, classes: tuple[int, ...]) -> ImageSubset:
    """The images of ``dataset`` whose class is one of ``classes`` (their positions in ``dataset``: ``.indices``)."""
    targets = torch.as_tensor(dataset.targets)
    keep = torch.isin(targets, torch.tensor(classes, dtype=targets.dtype))
    return ImageSubset(dataset, keep.nonzero().flatten())
