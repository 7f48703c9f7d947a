"""What the lessons need to know about where they run: grading, tests, Colab."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from torch.utils.data import Dataset

from .env import DRIVE_ENV_VAR, GRADING_ENV_VAR, QUICK_ENV_VAR

DRIVE_FOLDER = "/content/drive/MyDrive/siamese-course"
CHECKPOINT_NAME = "siamese.pt"


def grading() -> bool:
    """True while nbgrader executes the notebook (autograde or validate)."""
    return bool(os.environ.get(GRADING_ENV_VAR))


def quick_mode() -> bool:
    """True while grading or when tests run the notebooks: synthetic data and tiny runs."""
    return grading() or os.environ.get(QUICK_ENV_VAR, "") not in ("", "0")


def setup() -> bool:
    """The lessons' setup: report torch, the GPU and quick mode; return whether quick mode is on."""
    import torch

    quick = quick_mode()  # grading or tests: small synthetic data and tiny runs
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, GPU: {gpu}" + (", quick mode (synthetic data)" if quick else ""))
    return quick


def checkpoint_path() -> Path:
    """Where lesson 5 saves the trained network and lesson 6 finds it.

    In Colab every notebook has a runtime of its own, so the file goes to Google Drive (Colab asks
    once for permission); ``SIAMESE_DRIVE_DIR`` names a folder that plays Drive's part; anywhere
    else it is ``siamese.pt`` in the working folder.
    """
    folder = os.environ.get(DRIVE_ENV_VAR)
    if not folder and "google.colab" in sys.modules and not grading():
        from google.colab import drive

        drive.mount("/content/drive")
        folder = DRIVE_FOLDER
    if not folder:
        return Path(CHECKPOINT_NAME)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / CHECKPOINT_NAME


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256: enough to tell two saved networks apart."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def course_dataset(split: str = "train", quiet: bool = False) -> Dataset:
    """One split of Fashion-MNIST (real, downloaded if needed), or of a small synthetic stand-in in quick mode.

    ``split`` is ``"train"`` (the training images less the validation ones), ``"validation"`` (a fixed twelfth of
    the training images, never trained on: ``data_utils.splits``) or ``"test"``.
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}")
    if quick_mode():
        from .synthetic import SyntheticFashionMNIST

        dataset = SyntheticFashionMNIST(660 if split != "test" else 200, seed=0, train=split != "test")
        kind = "synthetic stand-in (quick mode: grading or tests)"
    else:
        from .fashion_mnist import load_fashion_mnist

        dataset = load_fashion_mnist(train=split != "test")
        kind = "Fashion-MNIST"
    if split != "test":
        from .splits import split_training_set

        dataset = split_training_set(dataset)[0 if split == "train" else 1]
    if not quiet:
        print(f"{split} set: {kind}, {len(dataset)} images")
    return dataset
