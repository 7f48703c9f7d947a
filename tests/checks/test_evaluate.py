"""``autograder.checks.evaluate`` (lesson 06): other correct metrics pass; typical bugs fail what they break."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_fails_exactly
from helpers.checks import fails

from autograder.checks import evaluate as evaluate_checks
from solutions import evaluate as ref_evaluate

# ---------------------------------------------------------------- lesson 06: embed, verification, ROC AUC


def embed_inference_mode(net, images, device, batch_size=1024):
    """inference_mode instead of no_grad, tensor.split for the batches, the scaling written out."""
    net.eval()
    with torch.inference_mode():
        chunks = []
        for chunk in images.split(batch_size):
            if chunk.dtype == torch.uint8:
                chunk = chunk.float() / 255
            chunks.append(net.forward_ind(chunk.reshape(-1, 1, 28, 28).to(device)).float().cpu())
        return torch.cat(chunks)


def embed_unscaled(net, images, device, batch_size=1024):
    """Wrong: uint8 pixels go in as 0 to 255."""
    net.eval()
    with torch.no_grad():
        return torch.cat(
            [net.forward_ind(c.float().reshape(-1, 1, 28, 28)) for c in images.split(batch_size)]
        )


def embed_all_at_once(net, images, device, batch_size=1024):
    """Wrong: every image in one call, whatever batch_size says."""
    net.eval()
    with torch.no_grad():
        return net.forward_ind(ref_evaluate.to_float_images(images).to(device)).cpu()


def embed_no_eval(net, images, device):
    with torch.no_grad():
        return net.forward_ind(images.to(device)).cpu()


def embed_detach(net, images, device):
    net.eval()
    return net.forward_ind(images.to(device)).detach().cpu()


def embed_grad_off_globally(net, images, device):
    net.eval()
    torch.set_grad_enabled(False)
    return net.forward_ind(images.to(device)).cpu()


def embed_list(net, images, device):
    net.eval()
    with torch.no_grad():
        return [net.forward_ind(images[i : i + 1]) for i in range(len(images))]


def test_other_correct_embed_passes():
    evaluate_checks.check_embed(embed_inference_mode)
    evaluate_checks.check_embed(embed_inference_mode, hidden=True)


@pytest.mark.parametrize(
    "embed, match",
    [
        (embed_no_eval, "forgetting eval()"),
        (embed_detach, "gradients tracked in embed"),
        (embed_grad_off_globally, "torch.no_grad()"),
        (embed_list, "torch.cat"),
        (embed_unscaled, "uint8 pixels go from 0 to 255"),
        (embed_all_at_once, "never runs more than batch_size images"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_embed_bugs_fail(embed, match):
    fails(evaluate_checks.check_embed, embed, match=match)


def accuracy_numpy(distances, pair_labels, threshold):
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    y = np.asarray(pair_labels).reshape(-1)
    return float(np.mean(np.where(d < threshold, 0, 1) == y))


def threshold_loop(distances, pair_labels):
    """Try every distance (and one beyond the largest) as the threshold; keep the best."""
    d = distances.reshape(-1).tolist()
    candidates = sorted(set(d)) + [max(d) + 1.0]
    best_t, best_acc = candidates[0], -1.0
    for t in candidates:
        acc = accuracy_numpy(distances, pair_labels, t)
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t


def auc_brute_force(distances, pair_labels):
    d = distances.reshape(-1).tolist()
    y = pair_labels.reshape(-1).tolist()
    total = count = 0
    for di, yi in zip(d, y):
        if yi != 1:
            continue
        for dj, yj in zip(d, y):
            if yj == 0:
                total += 1.0 if di > dj else 0.5 if di == dj else 0.0
                count += 1
    if count == 0:
        raise ValueError("the AUC needs same-class and different-class pairs")
    return total / count


def test_other_correct_verification_and_auc_pass():
    evaluate_checks.check_verification(accuracy_numpy, threshold_loop)
    evaluate_checks.check_verification(accuracy_numpy, threshold_loop, hidden=True)
    for check in AUC_CHECKS:
        check(auc_brute_force)
        check(auc_brute_force, hidden=True)


def accuracy_reversed(distances, pair_labels, threshold):
    """Calls a pair 'same' when its distance is LARGER than the threshold."""
    return float(((distances.reshape(-1) < threshold) == pair_labels.reshape(-1).bool()).float().mean())


def accuracy_le(distances, pair_labels, threshold):
    return float(((distances.reshape(-1) > threshold) == pair_labels.reshape(-1).bool()).float().mean())


def accuracy_tensor(distances, pair_labels, threshold):
    return ((distances.reshape(-1) >= threshold) == pair_labels.reshape(-1).bool()).float().mean()


def threshold_reversed(distances, pair_labels):
    """Maximises the accuracy of the reversed rule ('same' when d > t)."""
    d = distances.reshape(-1).tolist()
    candidates = sorted(set(d)) + [max(d) + 1.0]
    return max(candidates, key=lambda t: accuracy_reversed(distances, pair_labels, t))


def auc_inverted(distances, pair_labels):
    return 1 - auc_brute_force(distances, pair_labels)


def auc_strict(distances, pair_labels):
    d, y = distances.reshape(-1), pair_labels.reshape(-1).bool()
    if y.all() or not y.any():
        raise ValueError("one kind of pair only")
    return float((d[y][:, None] > d[~y][None, :]).double().mean())


def auc_without_check(distances, pair_labels):
    d, y = distances.reshape(-1).double(), pair_labels.reshape(-1).bool()
    wins = (d[y][:, None] > d[~y][None, :]).double() + 0.5 * (d[y][:, None] == d[~y][None, :]).double()
    return float(wins.mean())  # NaN when one kind is missing


@pytest.mark.parametrize(
    "accuracy, threshold, match, hidden",
    [
        (accuracy_reversed, ref_evaluate.best_threshold, "threshold direction reversed", False),
        (ref_evaluate.verification_accuracy, threshold_reversed, "threshold direction reversed", False),
        (accuracy_tensor, ref_evaluate.best_threshold, ".item()", False),
        (accuracy_le, ref_evaluate.best_threshold, "exactly at the threshold", True),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_verification_bugs_fail(accuracy, threshold, match, hidden):
    fails(evaluate_checks.check_verification, accuracy, threshold, match=match, hidden=hidden)


AUC_CHECKS = [evaluate_checks.check_roc_auc, evaluate_checks.check_roc_auc_one_kind]
AUC_BUGS = {
    auc_inverted: {"roc_auc": "inverted"},
    auc_strict: {"roc_auc": "ties count 1/2"},
    auc_without_check: {"roc_auc_one_kind": "no same-class or no different-class pairs"},
}


@pytest.mark.parametrize("auc", AUC_BUGS, ids=lambda f: f.__name__)
def test_a_roc_auc_bug_fails_exactly_the_checks_it_breaks(auc):
    assert_fails_exactly(AUC_CHECKS, AUC_BUGS[auc], auc)


def test_pairwise_auc_matches_reference():
    generator = torch.Generator().manual_seed(0)
    d = torch.round(torch.rand(50, generator=generator) * 5) / 5
    y = (torch.rand(50, generator=generator) < 0.4).float()
    assert math.isclose(evaluate_checks.pairwise_auc(d, y), ref_evaluate.roc_auc(d, y), abs_tol=1e-12)


def threshold_without_the_ends(distances, pair_labels):
    """Wrong: tries only the midpoints between sorted distances, never a threshold that calls every pair the same."""
    d = torch.sort(distances.reshape(-1).double()).values
    candidates = ((d[1:] + d[:-1]) / 2).tolist()
    return max(candidates, key=lambda t: ref_evaluate.verification_accuracy(distances, pair_labels, t))


def threshold_with_infinite_ends(distances, pair_labels):
    """Right: the midpoints, and -inf and +inf for 'every pair different' and 'every pair same'."""
    d = torch.sort(distances.reshape(-1).double()).values
    candidates = [-math.inf, *((d[1:] + d[:-1]) / 2).tolist(), math.inf]
    return max(candidates, key=lambda t: ref_evaluate.verification_accuracy(distances, pair_labels, t))


def test_a_threshold_search_must_mind_the_ends():
    """Lesson 6: "mind the ends": pairs that are all same-class are best called all 'same' (an infinite threshold
    is a right answer there)."""
    accuracy = ref_evaluate.verification_accuracy
    fails(
        evaluate_checks.check_verification,
        accuracy,
        threshold_without_the_ends,
        match="every pair same-class",
    )
    evaluate_checks.check_verification(accuracy, threshold_with_infinite_ends)
    evaluate_checks.check_verification(accuracy, threshold_with_infinite_ends, hidden=True)
