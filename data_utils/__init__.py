"""Fashion-MNIST on any machine, class names, synthetic stand-ins and shared plotting helpers."""

from .fashion_mnist import (
    CLASS_NAMES,
    CorruptDataError,
    DataNotFoundError,
    default_root,
    ensure_fashion_mnist,
    load_fashion_mnist,
    load_fashion_mnist_tensors,
)
from .synthetic import SyntheticFashionMNIST, make_synthetic_tensors, write_idx_files

__all__ = [
    "CLASS_NAMES",
    "CorruptDataError",
    "DataNotFoundError",
    "SyntheticFashionMNIST",
    "default_root",
    "ensure_fashion_mnist",
    "load_fashion_mnist",
    "load_fashion_mnist_tensors",
    "make_synthetic_tensors",
    "write_idx_files",
]
