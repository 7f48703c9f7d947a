"""Small synthetic data sets in Fashion-MNIST's format, for fast tests and grading without the real data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import Dataset

from .fashion_mnist import CLASS_NAMES

# The class templates never change with the seed, so a train set and a test set
# made with different seeds share the same ten "garments".
_TEMPLATE_SEED = 20061
IMAGE_SIZE = 28


def class_templates() -> torch.Tensor:
    """Ten smooth, clearly different 28x28 patterns in [0, 1], one per class."""
    generator = torch.Generator().manual_seed(_TEMPLATE_SEED)
    coarse = torch.rand(len(CLASS_NAMES), 1, 7, 7, generator=generator)
    smooth = torch.nn.functional.interpolate(
        coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False
    )
    smooth = (smooth - smooth.amin(dim=(2, 3), keepdim=True)) / (
        smooth.amax(dim=(2, 3), keepdim=True) - smooth.amin(dim=(2, 3), keepdim=True)
    )
    return smooth[:, 0]


def make_synthetic_tensors(
    num_images: int = 600, seed: int = 0, noise: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, 28, 28]`` and int64 labels ``[N]``: class templates with noise and small shifts."""
    if num_images < 1:
        raise ValueError(f"num_images must be positive, got {num_images}")
    generator = torch.Generator().manual_seed(seed)
    # Every class appears: labels cycle through 0..9, then are shuffled.
    labels = torch.arange(num_images) % len(CLASS_NAMES)
    labels = labels[torch.randperm(num_images, generator=generator)]
    images = class_templates()[labels]
    shifts = torch.randint(-2, 3, (num_images, 2), generator=generator)
    images = torch.stack(
        [torch.roll(img, (int(dy), int(dx)), dims=(0, 1)) for img, (dy, dx) in zip(images, shifts)]
    )
    images = images + noise * torch.randn(images.shape, generator=generator)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels.to(torch.int64)


class SyntheticFashionMNIST(Dataset):
    """A stand-in for ``torchvision.datasets.FashionMNIST`` with ``ToTensor()``: same attributes, same items."""

    classes: ClassVar[list[str]] = list(CLASS_NAMES)

    def __init__(self, num_images: int = 600, seed: int = 0, train: bool = True) -> None:
        # The test split gets its own images by default, as the real one does.
        self.train = train
        self.data, self.targets = make_synthetic_tensors(num_images, seed=seed if train else seed + 1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.data[index].unsqueeze(0).to(torch.float32) / 255.0
        return image, int(self.targets[index])


def write_idx_files(
    folder: str | Path, images: torch.Tensor, labels: torch.Tensor, train: bool = True, compress: bool = False
) -> list[Path]:
    """Write images and labels as the original IDX files (``train-*`` or ``t10k-*``), optionally gzipped."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if train else "t10k"
    n, rows, cols = images.shape
    contents = {
        f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, rows, cols)
        + images.to(torch.uint8).numpy().tobytes(),
        f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.to(torch.uint8).numpy().tobytes(),
    }
    written = []
    for name, payload in contents.items():
        path = folder / (f"{name}.gz" if compress else name)
        if compress:
            with gzip.open(path, "wb") as f:
                f.write(payload)
        else:
            path.write_bytes(payload)
        written.append(path)
    return written
