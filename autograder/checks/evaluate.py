"""Checks for lesson 06: ``embed``, ``verification_accuracy``, ``best_threshold`` and ``roc_auc``.

``embed(net, images, device)`` must run the network in eval mode without tracking gradients: the
check's network contains Dropout and records the mode and the gradient switch on every call.
``best_threshold`` is judged by the accuracy its threshold achieves (any threshold in the optimal
interval is right), ``roc_auc`` against the reference and a brute-force pairwise count.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import syllabus
from . import questions
from .report import (
    check,
    close,
    describe,
    differs,
    fail,
    images,
    max_error,
    passed,
    require_refusal,
    run_student,
    to_float,
    type_name,
)
from .transcript import generator_for, judge_only, probing

EMBED_EXERCISE = syllabus.label("6.1")
ACCURACY_EXERCISE = syllabus.label("6.2")
THRESHOLD_EXERCISE = syllabus.label("6.2", "best_threshold")
AUC_EXERCISE = syllabus.label("6.3")
ACCURACY_QUESTION = "overlap_best_accuracy (question 6.4)"
AUC_QUESTION = "overlap_auc (question 6.5)"


# ---------------------------------------------------------------- embed


class DropoutNet(nn.Module):
    """A small network with Dropout (so that a missing ``eval()`` changes the result) that records how it is called."""

    def __init__(self, embedding_dim: int = 6) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, 24), nn.ReLU(), nn.Dropout(0.5), nn.Linear(24, embedding_dim)
        )
        # (gradients enabled, training mode, images) of each forward_ind
        self.calls: list[tuple[bool, bool, int]] = []

    def forward_ind(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of a batch of images."""
        grad = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        self.calls.append((grad, self.training, len(x)))
        return self.body(x)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of both images of each pair."""
        return self.forward_ind(img1), self.forward_ind(img2)


def _observed_embed(
    embed: Any, net: DropoutNet, x: torch.Tensor, device: Any, options: dict
) -> tuple[Any, list, bool]:
    """``embed(net, x, device, **options)``, how it called the network, and whether it left gradients off."""
    try:
        result = embed(net, x, device, **options)
    finally:
        grad_left_off = not torch.is_grad_enabled()
        torch.set_grad_enabled(True)
    return result, list(net.calls), grad_left_off


def _embed_case(
    embed: Any,
    generator: torch.Generator,
    count: int,
    device: Any,
    train_mode: bool = True,
    batch_size: int | None = None,
    raw: bool = False,
) -> None:
    """One call of ``embed``: float images ``[N, 1, 28, 28]``, or with ``raw`` the dataset's uint8 ``[N, 28, 28]``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=generator)))
        net = DropoutNet()
    reference = copy.deepcopy(net).eval()
    net.train(train_mode)
    x = images(count, generator)
    if raw:
        x = (x * 255).round().to(torch.uint8).reshape(count, 28, 28)
    mode = "training" if train_mode else "eval"
    options = {} if batch_size is None else {"batch_size": batch_size}
    where = (
        f"{count} {'uint8 ' if raw else ''}images {list(x.shape)}, device={device!r}"
        + (f", batch_size={batch_size}" if batch_size is not None else "")
        + f", a network with Dropout in {mode} mode"
    )
    call = f"embed(net, images, {device!r}" + (f", batch_size={batch_size})" if batch_size else ")")
    result, calls, grad_left_off = run_student(
        EMBED_EXERCISE, call, _observed_embed, embed, net, x, device, options
    )
    if grad_left_off:
        fail(
            "embed leaves gradient tracking as it was",
            input=where,
            expected="torch.is_grad_enabled() still True afterwards",
            got="gradients switched off globally",
            hint="use `with torch.no_grad():` (a block), not torch.set_grad_enabled(False)",
        )
    if not isinstance(result, torch.Tensor):
        fail(
            "embed returns a tensor of embeddings",
            input=where,
            expected="a float32 tensor [N, D]",
            got=type_name(result),
            hint="concatenate the batches with torch.cat" if isinstance(result, (list, tuple)) else None,
        )
    with torch.no_grad():
        floats = x.float().div(255).reshape(count, 1, 28, 28) if raw else x
        expected = reference.forward_ind(floats)
        unscaled = reference.forward_ind(x.float().reshape(count, 1, 28, 28)) if raw else None
    _check_batches(calls, 1024 if batch_size is None else batch_size, where)
    hint = None
    if unscaled is not None and isinstance(result, torch.Tensor) and close(result, unscaled):
        hint = (
            "uint8 pixels go from 0 to 255: turn each batch into float images in [0, 1] with to_float_images"
        )
    _check_embeddings(result, expected, calls, where, hint)


def _check_batches(calls: list, batch_size: int, where: str) -> None:
    """No call of ``forward_ind`` on more than ``batch_size`` images."""
    sizes = [size for *_, size in calls]
    if sizes and max(sizes) > batch_size:
        fail(
            "embed never runs more than batch_size images through the network in one call",
            input=where,
            expected=f"calls of at most {batch_size} images",
            got=f"calls of {sizes} images",
            hint="take the images in slices, images[start : start + batch_size], and embed each slice",
        )


def _check_embeddings(
    result: torch.Tensor, expected: torch.Tensor, calls: list, where: str, hint: str | None = None
) -> None:
    """Shape, dtype and device of what ``embed`` returned, how it ran the network, and its values."""
    if tuple(result.shape) != tuple(expected.shape):
        fail(
            "embed returns one embedding per image, [N, D]",
            input=where,
            expected=f"shape {list(expected.shape)}",
            got=f"shape {list(result.shape)}",
        )
    if result.dtype != torch.float32:
        fail(
            "the embeddings are float32",
            input=where,
            expected="float32",
            got=str(result.dtype),
            hint="call .float()",
        )
    if result.device.type != "cpu":
        fail(
            "the embeddings are on the CPU",
            input=where,
            expected="cpu",
            got=str(result.device),
            hint="call .cpu()",
        )
    if any(training for _, training, *_ in calls):
        fail(
            "embed runs the network in eval mode",
            input=where,
            expected="net.eval() before the forward pass",
            got="forward_ind called in training mode",
            hint="forgetting eval(): model left in training mode, Dropout (and batch norm) change the embeddings",
        )
    if any(grad for grad, *_ in calls) or result.requires_grad:
        fail(
            "embed does not track gradients",
            input=where,
            expected="forward_ind under torch.no_grad() (or inference_mode)",
            got="gradients tracked" + (" (the result requires grad)" if result.requires_grad else ""),
            hint="gradients tracked in embed: wrap the forward pass in `with torch.no_grad():` "
            "(it saves memory and time; .detach() afterwards is too late)",
        )
    if not calls and not close(result, expected):
        fail("embed uses net.forward_ind", input=where, expected=describe(expected), got=describe(result))
    if not close(result, expected):
        fail(
            "embed(net, images) equals net.forward_ind(images) in eval mode",
            input=where,
            expected=describe(expected),
            got=describe(result) + f" (largest difference {max_error(result, expected):.3g})",
            hint=hint or "embed every image once, in order, and concatenate the batches",
        )


@check
def check_embed(embed: Any, hidden: bool = False) -> None:
    """Shape ``[N, D]``, float32 on the CPU, eval mode, no gradients, equal to ``forward_ind`` in eval mode."""
    generator = generator_for(15)
    _embed_case(embed, generator, 10, torch.device("cpu"))
    _embed_case(embed, generator, 12, "cpu", raw=True)
    _embed_case(embed, generator, 10, "cpu", batch_size=4)
    if hidden:
        _embed_case(embed, generator, 1, "cpu")
        _embed_case(embed, generator, 37, torch.device("cpu"), train_mode=False)
        _embed_case(embed, generator, 130, "cpu")
        _embed_case(embed, generator, 29, "cpu", batch_size=7, raw=True)
    passed(
        "embed: float32 [N, D] embeddings on the CPU, in eval mode, without gradients, at most batch_size images "
        "a call, equal to forward_ind (uint8 images scaled to [0, 1])"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- verification accuracy and threshold


@judge_only
def _accuracy(distances: torch.Tensor, labels: torch.Tensor, threshold: float) -> float:
    from solutions.evaluate import verification_accuracy

    return verification_accuracy(distances, labels, threshold)


@judge_only
def achievable(distances: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The best and the worst accuracy over all thresholds (brute force over every cut between distinct distances)."""
    values = torch.unique(distances.double())
    cuts = (
        [float(values[0]) - 1.0]
        + [float(v) for v in (values[1:] + values[:-1]) / 2]
        + [float(values[-1]) + 1.0]
    )
    accuracies = [_accuracy(distances, labels, t) for t in cuts]
    return max(accuracies), min(accuracies)


def _number(result: Any, what: str, where: str, exercise_hint: str) -> float:
    if isinstance(
        result, (torch.Tensor, np.ndarray)
    ):  # the judge reads an array back as a tensor: the same verdict
        fail(
            f"{what} returns a Python float",
            input=where,
            expected="a float",
            got=describe(result),
            hint=f"convert with .item() ({exercise_hint})",
        )
    value = to_float(result)
    if value is None:
        fail(f"{what} returns a Python float", input=where, expected="a float", got=type_name(result))
    if math.isnan(value):  # an infinite threshold is right where every pair is called the same
        fail(f"{what} returns a number", input=where, expected="a float (not NaN)", got=repr(value))
    return value


def _accuracy_case(
    verification_accuracy: Any, distances: torch.Tensor, labels: torch.Tensor, threshold: float, what: str
) -> None:
    where = f"distances = {describe(distances)}; pair_labels = {describe(labels)}; threshold = {threshold:g} ({what})"
    result = run_student(
        ACCURACY_EXERCISE,
        f"verification_accuracy(distances, pair_labels, {threshold:g})",
        verification_accuracy,
        distances,
        labels,
        threshold,
    )
    value = _number(result, "verification_accuracy", where, "the accuracy of the calls")
    if probing():
        return  # the reference's accuracy is the judge's to compute
    expected = _accuracy(distances, labels, threshold)
    if differs(value, expected, 1e-6):
        hint = None
        flat = labels.reshape(-1)
        reversed_ = float(((distances.reshape(-1) < threshold) == flat.bool()).double().mean())
        at_threshold = bool((distances == threshold).any())
        le = float(((distances.reshape(-1) > threshold) == flat.bool()).double().mean())
        if abs(value - reversed_) <= 1e-6 and abs(reversed_ - expected) > 1e-6:
            hint = (
                "threshold direction reversed: a pair is called 'same' (label 0) when its distance is SMALLER than "
                "the threshold"
            )
        elif at_threshold and abs(value - le) <= 1e-6:
            hint = "a pair exactly at the threshold counts as 'different': same means distance < threshold (strictly)"
        elif abs(value - 100 * expected) <= 1e-4:
            hint = "return a fraction between 0 and 1, not a percentage"
        fail(
            "verification accuracy: the fraction of pairs called right, 'same' when distance < threshold",
            input=where,
            expected=f"{expected:.6g}",
            got=f"{value:.6g}",
            hint=hint,
        )


def _threshold_case(best_threshold: Any, distances: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    where = f"distances = {describe(distances)}; pair_labels = {describe(labels)} ({what})"
    result = run_student(
        THRESHOLD_EXERCISE, "best_threshold(distances, pair_labels)", best_threshold, distances, labels
    )
    threshold = _number(result, "best_threshold", where, "the threshold")
    if probing():
        return
    best, worst = achievable(distances, labels)
    got = _accuracy(distances, labels, threshold)
    if got < best - 1e-9:
        hint = None
        if abs(got - worst) <= 1e-9 and worst < best:
            hint = (
                "threshold direction reversed: 'same' means distance < threshold, "
                "so maximise the accuracy of that rule"
            )
        fail(
            "best_threshold gives the highest verification accuracy achievable on these pairs",
            input=where,
            expected=f"a threshold with accuracy {best:.6g}",
            got=f"threshold {threshold:.6g} with accuracy {got:.6g}",
            hint=hint,
        )


@check
def check_verification(verification_accuracy: Any, best_threshold: Any, hidden: bool = False) -> None:
    """Known accuracies; ``best_threshold``'s threshold reaches the best achievable accuracy."""
    generator = generator_for(16)
    d = torch.tensor([0.1, 0.5, 0.9, 1.5])
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    for t in (1.0, 0.3, 2.0, 0.05):
        _accuracy_case(verification_accuracy, d, y, t, "hand-made")
    _accuracy_case(verification_accuracy, d, y.reshape(-1, 1), 0.7, "labels of shape [N, 1]")
    mixed = torch.tensor([0.2, 1.1, 0.4, 2.5, 0.8, 1.9])
    _accuracy_case(
        verification_accuracy, mixed, torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 1.0]), 1.0, "hand-made, mixed"
    )
    same = torch.rand(20, generator=generator)
    different = 2 + torch.rand(20, generator=generator)
    separable = torch.cat([same, different])
    separable_labels = torch.cat([torch.zeros(20), torch.ones(20)])
    order = torch.randperm(40, generator=generator)
    _threshold_case(best_threshold, separable[order], separable_labels[order], "separable: same pairs closer")
    noisy_labels = (torch.rand(40, generator=generator) < 0.5).float()
    noisy = torch.rand(40, generator=generator) + 0.6 * noisy_labels
    _threshold_case(best_threshold, noisy, noisy_labels, "random, overlapping")
    ends = torch.rand(12, generator=generator)
    _threshold_case(best_threshold, ends, torch.zeros(12), "every pair same-class: the best calls all 'same'")
    if hidden:
        _threshold_case(
            best_threshold, ends, torch.ones(12), "every pair different: the best calls all 'different'"
        )
        # Two different pairs closer than every same pair: calling every pair 'same' (10 of 12) beats any cut.
        close_different = torch.cat(
            [0.5 + 0.5 * torch.rand(10, generator=generator), torch.tensor([0.1, 0.2])]
        )
        _threshold_case(
            best_threshold,
            close_different,
            torch.cat([torch.zeros(10), torch.ones(2)]),
            "the best threshold is above every distance",
        )
        _accuracy_case(verification_accuracy, d, y, 0.5, "a pair exactly at the threshold")
        labels = (torch.rand(50, generator=generator) < 0.5).float()
        distances = torch.rand(50, generator=generator, dtype=torch.float64) * 3
        _accuracy_case(
            verification_accuracy, distances, labels.reshape(-1, 1), 1.3, "random, float64, labels [N, 1]"
        )
        _threshold_case(
            best_threshold, separable[order], separable_labels[order].reshape(-1, 1), "labels of shape [N, 1]"
        )
        tied = torch.round(torch.rand(60, generator=generator) * 5) / 5
        tied_labels = ((tied + 0.3 * torch.randn(60, generator=generator)) > 0.5).float()
        _threshold_case(best_threshold, tied, tied_labels, "many tied distances")
        unbalanced_labels = (torch.rand(80, generator=generator) < 0.2).float()
        unbalanced = torch.rand(80, generator=generator, dtype=torch.float64) + 0.4 * unbalanced_labels
        _threshold_case(best_threshold, unbalanced, unbalanced_labels, "unbalanced, float64")
    passed(
        "verification_accuracy and best_threshold: right accuracies, and a threshold with the best achievable accuracy"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- ROC AUC


@judge_only
def pairwise_auc(distances: torch.Tensor, labels: torch.Tensor) -> float:
    """P(d of a different pair > d of a same pair), ties counting 1/2, by comparing every pair of pairs."""
    d = distances.double().reshape(-1)
    different = labels.reshape(-1).bool()
    diff, same = d[different], d[~different]
    greater = (diff[:, None] > same[None, :]).double()
    ties = (diff[:, None] == same[None, :]).double()
    return float((greater + 0.5 * ties).mean())


def _auc_case(
    roc_auc: Any, distances: torch.Tensor, labels: torch.Tensor, what: str, expected: float | None = None
) -> None:
    where = f"distances = {describe(distances)}; pair_labels = {describe(labels)} ({what})"
    result = run_student(AUC_EXERCISE, "roc_auc(distances, pair_labels)", roc_auc, distances, labels)
    value = _number(result, "roc_auc", where, "the area")
    if probing():
        return
    from solutions.evaluate import roc_auc as reference

    want = reference(distances, labels) if expected is None else expected
    if differs(value, want, 1e-6):
        hint = None
        no_ties = pairwise_auc(distances, labels)
        d = distances.double().reshape(-1)
        different = labels.reshape(-1).bool()
        strict = float((d[different][:, None] > d[~different][None, :]).double().mean())
        ties_one = float((d[different][:, None] >= d[~different][None, :]).double().mean())
        if abs(value - (1 - want)) <= 1e-6:
            hint = (
                "inverted: the AUC is P(distance of a different pair > distance of a same pair); "
                "a small distance means 'same' (label 0)"
            )
        elif abs(value - strict) <= 1e-6 or abs(value - ties_one) <= 1e-6:
            hint = "ties count 1/2: a different pair and a same pair at equal distance add 0.5"
        fail(
            "ROC AUC = P(d of a different pair > d of a same pair), ties counting 1/2",
            input=where,
            expected=f"{want:.6g}" + (f" (brute force {no_ties:.6g})" if expected is None else ""),
            got=f"{value:.6g}",
            hint=hint,
        )


@check
def check_roc_auc(roc_auc: Any, hidden: bool = False) -> None:
    """1.0 when separable, 0.0 inverted, 0.5 for all ties, the reference's value on random pairs."""
    generator = generator_for(17)
    d = torch.tensor([0.1, 0.4, 0.35, 1.2, 1.5, 2.0])
    y = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    _auc_case(roc_auc, d, y, "separable: every same pair closer", expected=1.0)
    _auc_case(roc_auc, d, 1 - y, "inverted: every same pair farther", expected=0.0)
    _auc_case(roc_auc, torch.full((6,), 0.7), y, "all distances tied", expected=0.5)
    labels = (torch.rand(60, generator=generator) < 0.5).float()
    distances = torch.rand(60, generator=generator) + 0.5 * labels
    _auc_case(roc_auc, distances, labels, "random, overlapping")
    _auc_case(roc_auc, distances, labels.reshape(-1, 1), "labels of shape [N, 1]")
    if hidden:
        tied = torch.round(torch.rand(80, generator=generator) * 4) / 4
        tied_labels = (torch.rand(80, generator=generator) < 0.5).float()
        _auc_case(roc_auc, tied, tied_labels, "many tied distances")
        _auc_case(
            roc_auc,
            torch.tensor([0.3, 0.3]),
            torch.tensor([0.0, 1.0]),
            "one pair of each kind, tied",
            expected=0.5,
        )
        unbalanced_labels = (torch.rand(300, generator=generator) < 0.15).float()
        unbalanced = torch.rand(300, generator=generator, dtype=torch.float64) + 0.3 * unbalanced_labels
        _auc_case(roc_auc, unbalanced, unbalanced_labels, "unbalanced, float64")
    passed(
        "roc_auc: P(d different > d same) with ties counting 1/2 (1.0 separable, 0.0 inverted, 0.5 all tied)"
        + (" [with hidden cases]" if hidden else "")
    )


@check
def check_roc_auc_one_kind(roc_auc: Any, hidden: bool = False) -> None:
    """Pairs of one kind only (no same-class or no different-class pair): the AUC is undefined, a ``ValueError``."""
    cases = [
        ("only different-class pairs", torch.tensor([0.2, 0.9, 1.4]), torch.ones(3)),
        ("only same-class pairs", torch.tensor([0.2, 0.9, 1.4]), torch.zeros(3)),
    ]
    if hidden:
        cases += [
            ("one same-class pair, labels [N, 1]", torch.tensor([0.5]), torch.zeros(1, 1)),
            ("no pairs at all", torch.zeros(0), torch.zeros(0)),
        ]
    for what, distances, labels in cases:
        call = f"roc_auc(distances, pair_labels) with {what}: distances = {describe(distances)}"
        require_refusal(
            ValueError,
            AUC_EXERCISE,
            call,
            roc_auc,
            distances,
            labels,
            prop="roc_auc raises ValueError when there are no same-class or no different-class pairs",
            expected="ValueError (the AUC compares the two kinds: with one kind it is undefined)",
            hint="count both kinds first and `raise ValueError(...)` when one of them is empty "
            "(the mean over no combinations would be NaN, or a division by zero)",
        )
    passed("roc_auc: pairs of one kind only raise ValueError" + (" [with hidden cases]" if hidden else ""))


# ---------------------------------------------------------------- questions 6.4 and 6.5


def overlap_cases(generator: torch.Generator, count: int) -> list[tuple[float, float]]:
    """``(shift, width)`` pairs with the two blocks overlapping (0 < shift < width), drawn per run."""
    cases = []
    for _ in range(count):
        width = questions.draw(generator, 0.5, 3.0)
        cases.append((round(width * questions.draw(generator, 0.05, 0.95), 3), width))
    return cases


@judge_only
def best_overlap_accuracy(shift: float, width: float) -> float:
    """``(1 + shift/width) / 2``: a threshold anywhere in the overlap errs on the pairs inside it only."""
    return (1 + shift / width) / 2


OVERLAP_ACCURACY_WHY = (
    "with a threshold t in the overlap [shift, width], a share t/width of the same-class pairs is "
    "called same and a share (shift + width - t)/width of the different ones is called different; "
    "their mean, (1 + shift/width)/2, does not depend on t. Outside the overlap it is lower. Half "
    "the pairs inside the overlap are called wrong, whatever t"
)


@check
def check_overlap_best_accuracy(overlap_best_accuracy: Any, hidden: bool = False) -> None:
    """Question 6.4: the best verification accuracy of two overlapping uniform blocks, for sizes drawn per run."""
    cases = overlap_cases(generator_for(42), 3 if not hidden else 5)
    answers = questions.answers(ACCURACY_QUESTION, overlap_best_accuracy, "overlap_best_accuracy", cases)
    if probing():
        return
    questions.verdict(
        "overlap_best_accuracy",
        answers,
        cases,
        best_overlap_accuracy,
        OVERLAP_ACCURACY_WHY,
        "the best accuracy for every overlap" + (" [with hidden cases]" if hidden else ""),
    )


@judge_only
def auc_of_overlap(shift: float, width: float) -> float:
    """``1 - (1 - shift/width)² / 2``: the chance that a different pair is farther apart than a same one."""
    return 1 - (1 - shift / width) ** 2 / 2


OVERLAP_AUC_WHY = (
    "the AUC is P(D > S) for a different-class distance D = shift + width·U and a same-class one "
    "S = width·V, with U, V uniform on [0, 1]. D <= S means V - U >= r, with r = shift/width: a triangle "
    "of the unit square with area (1 - r)²/2. So the AUC is 1 - (1 - r)²/2"
)


@check
def check_overlap_auc(overlap_auc: Any, hidden: bool = False) -> None:
    """Question 6.5: the ROC AUC of two overlapping uniform blocks, for sizes drawn per run."""
    cases = overlap_cases(generator_for(43), 3 if not hidden else 5)
    answers = questions.answers(AUC_QUESTION, overlap_auc, "overlap_auc", cases)
    if probing():
        return
    questions.verdict(
        "overlap_auc",
        answers,
        cases,
        auc_of_overlap,
        OVERLAP_AUC_WHY,
        "the ROC AUC for every overlap" + (" [with hidden cases]" if hidden else ""),
    )
