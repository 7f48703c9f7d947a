"""solutions.backbone and solutions.model: shapes, parameter count and weight sharing (lessons 02-03)."""

import pytest
import torch
from torch import nn

from solutions.backbone import CNNBackbone
from solutions.model import EmbeddingHead, SiameseNetwork, count_parameters


@pytest.fixture(scope="module")
def net():
    """A freshly initialised network (seeded)."""
    torch.manual_seed(0)
    return SiameseNetwork()


@pytest.fixture(scope="module")
def images():
    """A batch of 4 random images [4, 1, 28, 28] in [0, 1]."""
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_backbone_output_shape(images):
    """The backbone maps [B, 1, 28, 28] to [B, 256, 3, 3]."""
    assert CNNBackbone()(images).shape == (4, 256, 3, 3)


def test_backbone_spatial_sizes(images):
    """Each max-pool halves the size: 28 → 14 → 7 → 3."""
    backbone = CNNBackbone()
    sizes = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: sizes.append(tuple(out.shape[-2:])))
        for m in backbone.modules()
        if isinstance(m, nn.MaxPool2d)
    ]
    backbone(images)
    for hook in hooks:
        hook.remove()
    assert sizes == [(14, 14), (7, 7), (3, 3)]


def test_head_shape_and_non_negative():
    """The head maps [B, 256, 3, 3] to non-negative [B, 256] embeddings."""
    out = EmbeddingHead()(torch.randn(5, 256, 3, 3))
    assert out.shape == (5, 256)
    assert bool((out >= 0).all())


def test_parameter_count(net):
    """The whole network has exactly 3,124,480 trainable parameters, as the original."""
    assert count_parameters(net) == 3_124_480


def test_count_parameters_skips_frozen():
    """count_parameters counts only parameters that require gradients."""
    layer = nn.Linear(3, 2)
    layer.bias.requires_grad_(False)
    assert count_parameters(layer) == 6


def test_forward_shapes(net, images):
    """forward_ind gives [B, 256]; forward gives two [B, 256] embeddings."""
    assert net.forward_ind(images).shape == (4, 256)
    out1, out2 = net(images, images.flip(0))
    assert out1.shape == out2.shape == (4, 256)


def test_forward_uses_shared_weights(net, images):
    """forward(a, b) equals (forward_ind(a), forward_ind(b)): one set of weights for both images."""
    other = images.flip(0)
    with torch.no_grad():
        out1, out2 = net(images, other)
        assert torch.allclose(out1, net.forward_ind(images), atol=1e-6)
        assert torch.allclose(out2, net.forward_ind(other), atol=1e-6)
        assert torch.allclose(out1.flip(0), out2, atol=1e-5)


def branch_grads(net, loss):
    """Gradients of ``loss`` for every parameter (zeros where none flows)."""
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(net.parameters(), grads)]


def test_both_branches_train_the_same_parameters(net, images):
    """Each branch alone sends gradient to every parameter, and the pair's gradient is their sum."""
    out1, out2 = net(images, images.flip(0) * 0.5)
    grad1, grad2 = branch_grads(net, out1.sum()), branch_grads(net, out2.sum())
    both = branch_grads(net, out1.sum() + out2.sum())
    for (name, _), g1, g2, g in zip(net.named_parameters(), grad1, grad2, both):
        assert g1.abs().sum() > 0 and g2.abs().sum() > 0, f"{name} gets no gradient from one branch"
        assert torch.allclose(g, g1 + g2, rtol=1e-4, atol=1e-6), name
