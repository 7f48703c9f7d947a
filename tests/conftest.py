"""Shared fixtures: small synthetic data sets, isolated data roots, the real data where it exists."""

import ipaddress
import os
import socket

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: tests never open windows

import matplotlib.pyplot as plt
import pytest
import torch
from helpers import DATA_ENV_VARS

import data_utils.fashion_mnist as fm
from data_utils import DataNotFoundError, SyntheticFashionMNIST, ensure_fashion_mnist

# The suite runs on small, shared CPUs. When another job keeps the cores busy, two OpenMP threads
# wait on each other at every operation (measured: 60x slower on 2 cores); one thread does not.
# No test result depends on the thread count. Set OMP_NUM_THREADS to choose another.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)


def _is_local(sock, address):
    """Whether ``address`` is on this machine (a Unix socket or a loopback address)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    host = address[0]
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test may use the network: connecting anywhere but this machine fails at once."""
    for method in ("connect", "connect_ex"):
        real = getattr(socket.socket, method)

        def guarded(sock, address, _real=real):
            if not _is_local(sock, address):
                raise OSError(f"tests must not use the network (tried to connect to {address})")
            return _real(sock, address)

        monkeypatch.setattr(socket.socket, method, guarded)


@pytest.fixture(autouse=True)
def clean_data_env(monkeypatch):
    """Tests start without FASHION_MNIST_DIR / SIAMESE_DATA_ROOT; they set them when they need them."""
    for name in DATA_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test leaves open."""
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def synthetic_train():
    """200 synthetic training images, 20 of each class."""
    return SyntheticFashionMNIST(200, seed=0, train=True)


@pytest.fixture(scope="session")
def synthetic_test():
    """60 synthetic test images, 6 of each class."""
    return SyntheticFashionMNIST(60, seed=0, train=False)


@pytest.fixture
def data_root(tmp_path):
    """An empty data root in the test's tmp folder."""
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Debian copy and no download: only the root and FASHION_MNIST_DIR can provide data."""

    def no_download(root):
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian-package")
    monkeypatch.setattr(fm, "_download", no_download)


@pytest.fixture(scope="session")
def real_data_root(tmp_path_factory):
    """A data root holding the real, verified Fashion-MNIST files (copied from a local source, never downloaded)."""
    root = tmp_path_factory.mktemp("real-data")
    try:
        ensure_fashion_mnist(root, download=False)
    except DataNotFoundError as error:
        pytest.skip(
            f"real Fashion-MNIST not available offline (install dataset-fashion-mnist or set "
            f"{fm.ENV_VAR}): {str(error).splitlines()[0]}"
        )
    return root
