"""Get Fashion-MNIST onto disk in torchvision's layout, on any machine, and load it.

Sources, in order: files already under ``<root>/FashionMNIST/raw/``; a folder named by the
``FASHION_MNIST_DIR`` environment variable; Debian's ``dataset-fashion-mnist`` package; and
torchvision's download. Every unpacked file is checked against the MD5 of the original.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
from pathlib import Path

import torch

from .env import DATA_DIR_VAR, DATA_ROOT_VAR

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# MD5 of the *unpacked* originals. Debian recompressed the .gz files, so only the
# unpacked bytes can be compared with what Zalando published.
MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

ENV_VAR = DATA_DIR_VAR
ROOT_ENV_VAR = DATA_ROOT_VAR
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 30.0


class DataNotFoundError(RuntimeError):
    """Fashion-MNIST is not on disk and could not be fetched."""


class CorruptDataError(RuntimeError):
    """A Fashion-MNIST file exists but its contents are not the original's."""


def default_root() -> Path:
    """The data root: ``$SIAMESE_DATA_ROOT`` if set, else ``./data``."""
    return Path(os.environ.get(ROOT_ENV_VAR, "data"))


def raw_folder(root: str | Path) -> Path:
    """Where torchvision looks for the unpacked files under ``root``."""
    return Path(root) / "FashionMNIST" / "raw"


def md5sum(path: Path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing(raw: Path) -> list[str]:
    return [name for name in MD5 if not (raw / name).is_file()]


def verify_raw_folder(raw: Path) -> None:
    """Raise ``CorruptDataError`` naming the first file whose MD5 differs from the original."""
    for name, expected in MD5.items():
        path = raw / name
        actual = md5sum(path)
        if actual != expected:
            raise CorruptDataError(
                f"{path} is corrupt or truncated (MD5 {actual}, expected {expected}, "
                f"{path.stat().st_size} bytes). Delete it and run again to fetch a fresh copy."
            )


def _source_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _copy_from(folder: Path, raw: Path) -> None:
    """Unpack (or copy) the four files from ``folder`` into ``raw``, verifying each one."""
    raw.mkdir(parents=True, exist_ok=True)
    for name, expected in MD5.items():
        source = _source_file(folder, name)
        assert source is not None  # the caller checked that all four are there
        target = raw / name
        partial = raw / f"{name}.partial"
        try:
            if source.suffix == ".gz":
                with gzip.open(source, "rb") as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                shutil.copyfile(source, partial)
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            partial.unlink(missing_ok=True)
            raise CorruptDataError(
                f"{source} cannot be unpacked ({error}); it is corrupt or truncated."
            ) from error
        actual = md5sum(partial)
        if actual != expected:
            partial.unlink()
            raise CorruptDataError(
                f"{source} does not hold the original Fashion-MNIST data "
                f"(unpacked MD5 {actual}, expected {expected}); replace it with a fresh copy."
            )
        # Rename only once verified, so an interrupted copy never looks complete.
        partial.replace(target)


def _has_all(folder: Path) -> bool:
    return folder.is_dir() and all(_source_file(folder, name) for name in MD5)


def _download(root: Path) -> None:
    """Download with torchvision, failing fast instead of hanging when there is no network."""
    import torchvision

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        for train in (True, False):
            torchvision.datasets.FashionMNIST(str(root), train=train, download=True)
    finally:
        socket.setdefaulttimeout(previous)


def _not_found_message(root: Path, reason: str) -> str:
    return (
        f"Fashion-MNIST is not in {raw_folder(root)} and could not be fetched ({reason}).\n"
        "Any one of these fixes it:\n"
        f"  1. Put the four files (train-images-idx3-ubyte[.gz], ...) in {raw_folder(root)}.\n"
        f"  2. Point {ENV_VAR} at a folder that holds them: export {ENV_VAR}=/path/to/folder\n"
        f"  3. On Debian or Ubuntu: sudo apt-get install dataset-fashion-mnist (installs {DEBIAN_DIR}).\n"
        "  4. Connect to the internet: torchvision downloads them (about 30 MB)."
    )


def ensure_fashion_mnist(root: str | Path | None = None, download: bool = True) -> Path:
    """Make sure the verified, unpacked Fashion-MNIST files are in ``<root>/FashionMNIST/raw``; return that folder."""
    root = Path(root) if root is not None else default_root()
    raw = raw_folder(root)
    if not _missing(raw):
        verify_raw_folder(raw)
        return raw

    env_folder = os.environ.get(ENV_VAR)
    if env_folder:
        folder = Path(env_folder)
        if not _has_all(folder):
            missing = [name for name in MD5 if _source_file(folder, name) is None]
            raise DataNotFoundError(
                f"{ENV_VAR}={env_folder} but that folder lacks {', '.join(missing)} "
                "(plain or .gz). Fix the variable or unset it."
            )
        _copy_from(folder, raw)
        return raw

    if _has_all(DEBIAN_DIR):
        _copy_from(DEBIAN_DIR, raw)
        return raw

    if not download:
        raise DataNotFoundError(_not_found_message(root, "download=False"))
    try:
        _download(root)
    except Exception as error:  # torchvision raises RuntimeError, URLError, timeouts...
        raise DataNotFoundError(_not_found_message(root, f"download failed: {error}")) from error
    if _missing(raw):
        raise DataNotFoundError(_not_found_message(root, "download finished but files are missing"))
    verify_raw_folder(raw)
    return raw


def load_fashion_mnist(root: str | Path | None = None, train: bool = True, download: bool = True):
    """The torchvision ``FashionMNIST`` dataset with ``ToTensor()`` (pixels in [0, 1]), as in the original."""
    import torchvision
    from torchvision import transforms

    root = Path(root) if root is not None else default_root()
    ensure_fashion_mnist(root, download=download)
    return torchvision.datasets.FashionMNIST(
        str(root), train=train, download=False, transform=transforms.ToTensor()
    )


def load_fashion_mnist_tensors(
    root: str | Path | None = None, train: bool = True, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 ``[N, 28, 28]`` and labels as int64 ``[N]``."""
    dataset = load_fashion_mnist(root, train=train, download=download)
    return dataset.data.clone(), dataset.targets.clone()
