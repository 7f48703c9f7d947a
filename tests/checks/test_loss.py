"""``autograder.checks.loss`` (lesson 04): other correct losses and gradients pass; typical bugs are named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_fails_exactly, failed_checks
from helpers.checks import LOSS_CHECKS, fails

from autograder.checks import loss as loss_checks
from solutions import loss as ref_loss

# ---------------------------------------------------------------- lesson 04: contrastive_loss


def loss_norm_relu(out1, out2, label, margin=2.0):
    if label.numel() != len(out1):
        raise ValueError("one label per pair")
    d = torch.norm(out1 - out2, dim=1)
    y = label.view(-1)
    return ((1 - y) * d**2 + y * F.relu(margin - d) ** 2).mean()


def loss_manual_sqrt(out1, out2, label, margin=2.0):
    d = (out1 - out2).pow(2).sum(1).sqrt()
    y = label.reshape(-1).to(out1.dtype)
    if y.shape != d.shape:
        raise ValueError(f"label {tuple(label.shape)} for {len(d)} pairs")
    hinge = torch.maximum(margin - d, torch.zeros_like(d))
    return torch.mean((1 - y) * d.pow(2) + y * hinge.pow(2))


def loss_sqrt_eps(out1, out2, label, margin=2.0):
    """A square root kept away from 0 by an epsilon: finite gradients at d = 0."""
    d = ((out1 - out2).pow(2).sum(1) + 1e-12).sqrt()
    y = label.reshape(-1).to(out1.dtype)
    if y.shape != d.shape:
        raise ValueError(f"label {tuple(label.shape)} for {len(d)} pairs")
    return torch.mean((1 - y) * d.pow(2) + y * torch.clamp(margin - d, min=0).pow(2))


def loss_sqrt_eps_1e6(out1, out2, label, margin=2.0):
    """The usual eps = 1e-6 under the root, as the check at d = 0 suggests: d = 0 becomes 1e-3, which the checks
    allow."""
    d = ((out1 - out2).pow(2).sum(1) + 1e-6).sqrt()
    y = label.reshape(-1).to(out1.dtype)
    if y.shape != d.shape:
        raise ValueError(f"label {tuple(label.shape)} for {len(d)} pairs")
    return torch.mean((1 - y) * d.pow(2) + y * torch.clamp(margin - d, min=0).pow(2))


def loss_original(out1, out2, label, margin=2.0):
    """The original's keepdim distance [B, 1], with the label brought to [B, 1]."""
    if label.numel() != out1.size(0):
        raise ValueError("expected one label per pair")
    d = F.pairwise_distance(out1, out2, keepdim=True)
    y = label.view(-1, 1)
    return torch.mean((1 - y) * torch.pow(d, 2) + y * torch.pow(torch.clamp(margin - d, min=0.0), 2))


class LabelCountError(ValueError):
    """A student's own error class: still a ValueError."""


def loss_cdist(out1, out2, label, margin=2.0):
    if label.flatten().shape[0] != out1.shape[0]:
        raise LabelCountError("one label per pair, please")
    d = torch.cdist(out1, out2).diagonal()
    y = label.flatten().float()
    per_pair = torch.where(y == 0, d**2, torch.clamp(margin - d, min=0) ** 2)
    return per_pair.sum() / len(per_pair)


def loss_linalg(out1, out2, label, margin=2.0):
    d = torch.linalg.vector_norm(out1 - out2, dim=-1)
    y = label.squeeze(-1) if label.dim() == 2 else label
    if y.shape != d.shape:
        raise ValueError("label and distances differ in shape")
    return torch.mean((1 - y) * d.square() + y * (margin - d).clamp_min(0).square())


CORRECT_LOSSES = [loss_norm_relu, loss_sqrt_eps, loss_sqrt_eps_1e6, loss_original, loss_cdist, loss_linalg]


@pytest.mark.parametrize("loss", CORRECT_LOSSES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("check", LOSS_CHECKS, ids=lambda c: c.__name__)
def test_other_correct_losses_pass(loss, check):
    check(loss)
    check(loss, hidden=True)


def _d(out1, out2, label):
    """The distances of a loss that is correct but for one bug (it checks the label count as the spec asks)."""
    if label.numel() != out1.shape[0]:
        raise ValueError("one label per pair")
    return F.pairwise_distance(out1, out2)


def loss_inverted(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label), label.view(-1)
    return (y * d**2 + (1 - y) * torch.clamp(margin - d, min=0) ** 2).mean()


def loss_margin_not_squared(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label), label.view(-1)
    return ((1 - y) * d**2 + y * torch.clamp(margin - d, min=0)).mean()


def loss_no_squares(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label), label.view(-1)
    return ((1 - y) * d + y * torch.clamp(margin - d, min=0)).mean()


def loss_sum(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label), label.view(-1)
    return ((1 - y) * d**2 + y * torch.clamp(margin - d, min=0) ** 2).sum()


def loss_broadcast(out1, out2, label, margin=2.0):
    d = _d(out1, out2, label)  # [B], label [B, 1] → [B, B]
    return torch.mean((1 - label) * d**2 + label * torch.clamp(margin - d, min=0) ** 2)


def loss_squared_hinge(out1, out2, label, margin=2.0):
    d2, y = _d(out1, out2, label).pow(2), label.view(-1)
    return ((1 - y) * d2 + y * torch.clamp(margin - d2, min=0) ** 2).mean()


def loss_fixed_margin(out1, out2, label, margin=2.0):
    return ref_loss.contrastive_loss(out1, out2, label, 2.0)


def loss_item(out1, out2, label, margin=2.0):
    return ref_loss.contrastive_loss(out1, out2, label, margin).item()


def loss_detached(out1, out2, label, margin=2.0):
    return ref_loss.contrastive_loss(out1.detach(), out2.detach(), label, margin)


def loss_half(out1, out2, label, margin=2.0):
    return 0.5 * ref_loss.contrastive_loss(out1, out2, label, margin)


def loss_keepdim_mean(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label)[:, None], label.view(-1, 1)
    return torch.mean((1 - y) * d**2 + y * torch.clamp(margin - d, min=0) ** 2, dim=0)  # shape [1]


def loss_distance_not_squared(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label), label.view(-1)
    return ((1 - y) * d + y * torch.clamp(margin - d, min=0) ** 2).mean()


def loss_no_clamp(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label), label.view(-1)
    return ((1 - y) * d**2 + y * (margin - d) ** 2).mean()


def loss_reversed_hinge(out1, out2, label, margin=2.0):
    d, y = _d(out1, out2, label), label.view(-1)
    return ((1 - y) * d**2 + y * torch.clamp(d - margin, min=0) ** 2).mean()


def loss_mean_per_kind(out1, out2, label, margin=2.0):
    """Averages each kind of pair apart: right for batches of one kind, wrong for a mixed one."""
    d, y = _d(out1, out2, label), label.view(-1)
    same, different = (1 - y) * d**2, y * torch.clamp(margin - d, min=0) ** 2
    return same.sum() / (1 - y).sum().clamp(min=1) + different.sum() / y.sum().clamp(min=1)


def loss_no_label_check(out1, out2, label, margin=2.0):
    d, y = F.pairwise_distance(out1, out2), label.view(-1)
    return ((1 - y) * d**2 + y * torch.clamp(margin - d, min=0) ** 2).mean()


# Each single bug → {the check it fails: a fragment of that check's message}; every other check passes.
LOSS_BUGS = {
    loss_inverted: {
        "similar_pairs": "labels are inverted",
        "hinge": "labels are inverted",
        "beyond_margin": "labels are inverted",
        "margin_argument": "labels are inverted",
        "label_shapes": "labels are inverted",
        "gradients": "towards each other",
    },
    loss_margin_not_squared: {"hinge": "margin term not squared"},
    loss_distance_not_squared: {"similar_pairs": "missing square on the distance of similar pairs"},
    loss_no_squares: {"similar_pairs": "missing square", "hinge": "margin term not squared"},
    loss_sum: {"similar_pairs": "sum instead of mean", "hinge": "sum instead of mean"},
    loss_half: {"similar_pairs": "1/2", "hinge": "1/2"},
    loss_broadcast: {"label_shapes": "[B,1] label broadcast against [B] distances gives a [B,B] matrix"},
    loss_keepdim_mean: {"label_shapes": "0-d tensor"},
    loss_squared_hinge: {"hinge": "squared distance used in the hinge"},
    loss_no_clamp: {"beyond_margin": "the max(·, 0) is missing"},
    loss_fixed_margin: {"margin_argument": "the margin argument is ignored"},
    loss_reversed_hinge: {
        "hinge": "margin - d, not d - margin",
        "beyond_margin": "not max(d - margin, 0)",
        "margin_argument": "margin - d, not d - margin",
        "gradients": "away from each other",
    },  # nothing pushes a close pair apart
    loss_mean_per_kind: {"hinge": "not each kind apart"},
    loss_no_label_check: {"label_count": "raises ValueError"},
    loss_detached: {"gradients": "not connected", "gradient_at_zero": "not connected"},
    loss_item: dict.fromkeys(
        (
            "similar_pairs",
            "hinge",
            "beyond_margin",
            "margin_argument",
            "label_shapes",
            "gradients",
            "gradient_at_zero",
        ),
        "returns a tensor",
    ),
    loss_manual_sqrt: {"gradient_at_zero": "derivative of sqrt(x) at x = 0 is infinite"},
}


@pytest.mark.parametrize("loss", LOSS_BUGS, ids=lambda f: f.__name__)
def test_a_loss_bug_fails_exactly_the_properties_it_breaks(loss):
    assert_fails_exactly(
        LOSS_CHECKS, {f"loss_{name}": fragment for name, fragment in LOSS_BUGS[loss].items()}, loss
    )


def loss_wrong_in_float64(out1, out2, label, margin=2.0):
    return ref_loss.contrastive_loss(out1, out2, label, margin) * (2 if out1.dtype == torch.float64 else 1)


def test_a_bug_only_the_hidden_cases_see():
    """The graded class's hidden_only_bug (tests/grading/test_run_robust.py) passes every visible check."""
    for check in LOSS_CHECKS:
        check(loss_wrong_in_float64)
    assert set(failed_checks(LOSS_CHECKS, loss_wrong_in_float64)) == {"loss_similar_pairs", "loss_hinge"}


def test_a_loss_that_returns_zero_fails_every_check():
    """The checks of zeros (beyond the margin, label shapes) have guards: a constant loss earns nothing."""
    assert set(failed_checks(LOSS_CHECKS, lambda out1, out2, label, margin=2.0: (out1 - out2).sum() * 0)) == {
        check.__name__.removeprefix("check_") for check in LOSS_CHECKS
    }


# ---------------------------------------------------------------- lesson 04: the gradient, by hand and numerically


def gradient_by_autograd(out1, out2, label, margin=2.0):
    """Autograd instead of a derivation: the check runs with autograd off, so it cannot."""
    a = out1.clone().requires_grad_(True)
    return torch.autograd.grad(ref_loss.contrastive_loss(a, out2, label, margin), a)[0]


def gradient_with_pairwise_distance(out1, out2, label, margin=2.0):
    """Another correct derivation: d from F.pairwise_distance (its eps), the two terms through torch.where."""
    diff, y = out1 - out2, label.reshape(-1, 1)
    d = F.pairwise_distance(out1, out2, keepdim=True)
    per_pair = torch.where(y == 0, 2 * diff, -2 * (margin - d).clamp(min=0) * diff / d)
    return per_pair / len(out1)


def _scaled_gradient(factor):
    return lambda out1, out2, label, margin=2.0: (
        factor * ref_loss.contrastive_loss_gradient(out1, out2, label, margin)
    )


def gradient_summed(out1, out2, label, margin=2.0):
    """The gradient of the sum, not of the mean."""
    return len(out1) * ref_loss.contrastive_loss_gradient(out1, out2, label, margin)


def gradient_without_clamp(out1, out2, label, margin=2.0):
    diff, y = out1 - out2, label.reshape(-1, 1)
    d = diff.norm(dim=1, keepdim=True)
    return ((1 - y) * 2 * diff - y * 2 * (margin - d) * diff / d) / len(out1)


def gradient_without_unit_vector(out1, out2, label, margin=2.0):
    diff, y = out1 - out2, label.reshape(-1, 1)
    d = diff.norm(dim=1, keepdim=True)
    return ((1 - y) * 2 * diff - y * 2 * (margin - d).clamp(min=0) * diff) / len(out1)


def test_another_correct_gradient_passes():
    loss_checks.check_loss_gradient_by_hand(gradient_with_pairwise_distance, hidden=True)


@pytest.mark.parametrize(
    "gradient, match",
    [
        (gradient_by_autograd, "autograd switched off"),
        (gradient_summed, "divide each pair's gradient by B"),
        (_scaled_gradient(-1), "with respect to out1"),
        (_scaled_gradient(0.5), "a factor 2 is missing"),
        (gradient_without_clamp, "the clamp is missing"),
        (gradient_without_unit_vector, "divide by d"),
        (lambda out1, out2, label, margin=2.0: (out1 - out2)[:1], "same shape as out1"),
    ],
    ids=["autograd", "sum_not_mean", "gradient_of_out2", "half", "no_clamp", "no_unit_vector", "one_row"],
)
def test_gradient_by_hand_mistakes_are_named(gradient, match):
    fails(loss_checks.check_loss_gradient_by_hand, gradient, match=match, hidden=True)


def numerical_one_sided(f, x, h=1e-5):
    point, grad = x.detach().clone(), torch.zeros_like(x)
    base = float(f(point))
    for i in range(point.numel()):
        old = float(point.view(-1)[i])
        point.view(-1)[i] = old + h
        grad.view(-1)[i] = (float(f(point)) - base) / h
        point.view(-1)[i] = old
    return grad


def numerical_in_place(f, x, h=1e-5):
    """Right values, but it moves x and does not put it back."""
    grad = ref_loss.numerical_gradient(f, x, h)
    x.add_(h)
    return grad


def numerical_drifting(f, x, h=1e-5):
    """Each element moved in place by +h, -2h, +h: back only up to rounding, which the check names."""
    grad = torch.zeros_like(x)
    flat, flat_grad = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        flat[i] += h
        plus = float(f(x))
        flat[i] -= 2 * h
        minus = float(f(x))
        flat[i] += h
        flat_grad[i] = (plus - minus) / (2 * h)
    return grad


def numerical_all_at_once(f, x, h=1e-5):
    """One shared step for every element: right only for functions of independent elements."""
    return torch.full_like(x, (float(f(x + h)) - float(f(x - h))) / (2 * h))


def numerical_by_autograd(f, x, h=1e-5):
    point = x.detach().clone().requires_grad_(True)
    value = f(point)
    return torch.autograd.grad(torch.as_tensor(value), point)[0]


@pytest.mark.parametrize(
    "numerical, match",
    [
        (numerical_one_sided, "one-sided difference"),
        (numerical_in_place, "put each element back after its two evaluations"),
        (numerical_drifting, "leaves rounding errors"),
        (numerical_all_at_once, "one element at a time"),
        (numerical_by_autograd, "raised RuntimeError"),
    ],
    ids=["one_sided", "moves_x", "drifts", "all_at_once", "autograd"],
)
def test_numerical_gradient_mistakes_are_named(numerical, match):
    fails(loss_checks.check_numerical_gradient, numerical, match=match, hidden=True)


def test_a_loss_with_a_bare_square_root_fails_only_at_zero():
    """The d = 0 case is the one place a bare square root differs; the other checks cannot see it."""
    failed = failed_checks(LOSS_CHECKS, loss_manual_sqrt)
    assert set(failed) == {"loss_gradient_at_zero"}, failed
    assert "rows" in failed["loss_gradient_at_zero"] and "square root" in failed["loss_gradient_at_zero"]
