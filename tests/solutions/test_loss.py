"""solutions.loss: the contrastive loss against a plain-Python computation (lesson 04).

In the style of pytorch-metric-learning's ``test_contrastive_loss.py``: hand-built 2-D embeddings,
the expected value from a loop, tolerances per dtype.
"""

import math

import pytest
import torch

from solutions.loss import ContrastiveLoss, contrastive_loss

DTYPES = (torch.float32, torch.float64)
# float64 would allow much less, but F.pairwise_distance adds eps = 1e-6 to the difference, which
# moves these losses by about 1e-7 relative: 1e-6 accepts it (and an exact norm as well).
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-6, atol=1e-9)}

# Pairs of 2-D embeddings with distances 0.5, 1, 1.5 (< margin 2), 2.5 and 5 (> margin).
FIRST = [[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]
SECOND = [[0.3, 0.4], [1.6, 1.8], [-1.0, 0.5], [1.5, 1.0], [-2.5, 4.5]]
LABELS = [0.0, 1.0, 1.0, 1.0, 0.0]  # 0 = same class, 1 = different class


def expected_loss(first, second, labels, margin=2.0):
    """The mean contrastive loss, one pair at a time, in plain Python."""
    total = 0.0
    for a, b, y in zip(first, second, labels):
        d = math.sqrt(sum((x1 - x2) ** 2 for x1, x2 in zip(a, b)))
        total += (1 - y) * d**2 + y * max(margin - d, 0.0) ** 2
    return total / len(labels)


def tensors(dtype, first=FIRST, second=SECOND, labels=LABELS):
    """The embeddings [B, 2] and labels [B] as tensors of ``dtype``."""
    return (
        torch.tensor(first, dtype=dtype),
        torch.tensor(second, dtype=dtype),
        torch.tensor(labels, dtype=dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [2.0, 1.2])
def test_matches_plain_loop(dtype, margin):
    """The loss equals the loop's value for mixed pairs inside and beyond the margin."""
    out1, out2, label = tensors(dtype)
    loss = contrastive_loss(out1, out2, label, margin=margin)
    assert loss.dtype == dtype and loss.shape == ()
    torch.testing.assert_close(loss.item(), expected_loss(FIRST, SECOND, LABELS, margin), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_margin_is_two(dtype):
    """Without a margin argument the margin is 2.0."""
    out1, out2, label = tensors(dtype)
    torch.testing.assert_close(
        contrastive_loss(out1, out2, label).item(),
        expected_loss(FIRST, SECOND, LABELS, margin=2.0),
        **TOLERANCE[dtype],
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_identical_positives_give_zero(dtype):
    """Same-class pairs with identical embeddings cost (almost) nothing."""
    out1 = torch.tensor(FIRST, dtype=dtype)
    loss = contrastive_loss(out1, out1.clone(), torch.zeros(len(FIRST), dtype=dtype))
    assert abs(loss.item()) < 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
def test_negatives_beyond_margin_give_zero(dtype):
    """Different-class pairs farther apart than the margin cost nothing."""
    out1 = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=dtype)
    out2 = torch.tensor([[3.0, 0.0], [1.0, 2.5]], dtype=dtype)  # distances 3 and 3.5
    assert contrastive_loss(out1, out2, torch.ones(2, dtype=dtype), margin=2.0).item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_label_shapes_agree(dtype):
    """Labels of shape [B] and [B, 1] give the same loss (no [B, B] broadcast)."""
    out1, out2, label = tensors(dtype)
    assert torch.equal(contrastive_loss(out1, out2, label), contrastive_loss(out1, out2, label.unsqueeze(1)))


def test_float32_embeddings_with_float_labels_from_dataset():
    """The float32 [B, 1] labels of SiameseDataset work with float64 embeddings too."""
    out1, out2, _ = tensors(torch.float64)
    label = torch.tensor(LABELS, dtype=torch.float32).unsqueeze(1)
    torch.testing.assert_close(
        contrastive_loss(out1, out2, label).item(),
        expected_loss(FIRST, SECOND, LABELS),
        **TOLERANCE[torch.float64],
    )


@pytest.mark.parametrize("label_shape", [(4,), (5, 2), (6, 1)])
def test_wrong_label_count_raises(label_shape):
    """A label count other than one per pair raises ValueError."""
    out1, out2, _ = tensors(torch.float32)
    with pytest.raises(ValueError):
        contrastive_loss(out1, out2, torch.zeros(label_shape))


@pytest.mark.parametrize("margin", [2.0, 0.7])
def test_module_equals_function(margin):
    """ContrastiveLoss(margin) gives the same value as contrastive_loss(..., margin)."""
    out1, out2, label = tensors(torch.float32)
    assert torch.equal(
        ContrastiveLoss(margin)(out1, out2, label), contrastive_loss(out1, out2, label, margin)
    )


def test_module_default_margin():
    """ContrastiveLoss() uses margin 2.0."""
    assert ContrastiveLoss().margin == 2.0


def test_gradcheck_float64():
    """Analytic gradients match finite differences (no pair at d = 0 or d = margin)."""
    out1, out2, label = tensors(torch.float64)
    out1.requires_grad_(True)
    out2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: contrastive_loss(a, b, label, margin=2.0), (out1, out2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward(dtype):
    """backward() fills finite gradients of the embeddings' shape, zero for pairs beyond the margin."""
    out1, out2, label = tensors(dtype)
    out1.requires_grad_(True)
    contrastive_loss(out1, out2, label).backward()
    assert out1.grad.shape == out1.shape and torch.isfinite(out1.grad).all()
    assert torch.all(out1.grad[3] == 0)  # a different-class pair at distance 2.5 > margin 2
    assert out1.grad[0].abs().sum() > 0
