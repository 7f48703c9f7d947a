"""solutions.plots: the three figures of the reference run are written as real PNG files."""

import pytest
import torch
from helpers import png_ok

from solutions.model import SiameseNetwork
from solutions.plots import pca_2d, plot_embeddings, plot_loss_history, plot_similarity_pairs


def test_loss_history_png(tmp_path):
    """plot_loss_history writes a PNG (two epochs of logged losses)."""
    path = tmp_path / "loss.png"
    plot_loss_history([2.0 - 0.1 * k for k in range(12)], steps_per_epoch=60, log_every=10, path=path)
    assert png_ok(path)


def test_loss_history_empty_does_not_crash(tmp_path):
    """An empty history still gives a figure (nothing logged yet)."""
    path = tmp_path / "empty.png"
    plot_loss_history([], steps_per_epoch=10, path=path)
    assert png_ok(path)


def test_similarity_pairs_png(tmp_path, synthetic_test):
    """plot_similarity_pairs writes a PNG of one image against the next ten."""
    torch.manual_seed(0)
    path = tmp_path / "pairs.png"
    plot_similarity_pairs(SiameseNetwork(), synthetic_test.data, synthetic_test.targets, "cpu", path=path)
    assert png_ok(path)


def test_embeddings_png(tmp_path):
    """plot_embeddings writes a PNG of 2-D projected embeddings coloured by class."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(100) % 10
    embeddings = labels.float().unsqueeze(1) + torch.rand(100, 256, generator=g)
    path = tmp_path / "emb.png"
    plot_embeddings(embeddings, labels, path=path)
    assert png_ok(path)


def test_pca_2d_shape_and_centring():
    """pca_2d gives float32 [N, 2] points centred on 0, the first axis holding the most variance."""
    g = torch.Generator().manual_seed(1)
    embeddings = torch.randn(50, 8, generator=g) * torch.tensor([5.0, 1, 1, 1, 1, 1, 1, 0.1]) + 3
    points = pca_2d(embeddings)
    assert points.shape == (50, 2) and points.dtype == torch.float32
    assert points.mean(dim=0).abs().max() < 1e-4
    assert points[:, 0].var() >= points[:, 1].var()


@pytest.mark.parametrize("path_type", [str, lambda p: p], ids=["str", "Path"])
def test_paths_as_str_or_path(tmp_path, path_type):
    """The path may be a str or a Path."""
    path = tmp_path / "loss.png"
    plot_loss_history([1.0, 0.5], steps_per_epoch=5, path=path_type(path))
    assert png_ok(path)
