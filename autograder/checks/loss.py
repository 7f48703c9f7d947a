"""Checks for lesson 04: ``contrastive_loss(out1, out2, label, margin=2.0)``, its gradient by hand and by
central differences, and two questions that predict what the loss does.

The loss is the batch mean of ``(1 - y) d² + y max(margin - d, 0)²`` with ``d`` the Euclidean
distance, ``y`` = 0 for same-class and 1 for different-class pairs. Each check tests one property
on inputs built so that only that property decides the result: same-class pairs alone for the d²
term, different-class pairs inside the margin for the squared hinge, beyond it for the clamp,
margins and distances where only the margin argument matters, and labels whose shape changes the
value only when it is broadcast wrongly. So a wrong formula fails exactly the properties it breaks.

Expected values come from a plain Python loop (as pytorch-metric-learning's loss tests do), with a
tolerance that accepts ``F.pairwise_distance``'s ``eps = 1e-6`` as well as ``torch.norm`` or
``sqrt(sum + eps)`` with an ``eps`` up to 1e-6 (which moves d = 0 to 1e-3). When a value is wrong, the
check recomputes the usual mistakes and names the one that matches.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import syllabus
from . import questions
from .report import (
    check,
    describe,
    differs,
    fail,
    passed,
    run_student,
    run_student_expecting,
    tolerance,
    type_name,
)
from .transcript import generator_for, judge_only, probing

EXERCISE = syllabus.label("4.1")
PAIRWISE_EPS = 1e-6  # F.pairwise_distance adds it to the difference
SQRT_EPS = 1e-6  # the largest eps accepted in sqrt(sum of squares + eps), the hint of the check at d = 0


@judge_only
def loop_loss(out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float = 2.0) -> float:
    """The contrastive loss computed by a plain Python loop over the pairs, in double precision."""
    a, b = out1.detach().double().tolist(), out2.detach().double().tolist()
    y = label.detach().double().reshape(-1).tolist()
    total = 0.0
    for ai, bi, yi in zip(a, b, y):
        d = math.sqrt(sum((p - q) ** 2 for p, q in zip(ai, bi)))
        total += (1 - yi) * d**2 + yi * max(margin - d, 0.0) ** 2
    return total / len(a)


@judge_only
def _mistakes(
    out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float
) -> list[tuple[str, float]]:
    """What common mistakes would return on these inputs (float64)."""
    o1, o2 = out1.detach().double(), out2.detach().double()
    d = (o1 - o2).pow(2).sum(1).sqrt()
    d2 = d.pow(2)
    y = label.detach().double().reshape(-1)
    hinge = torch.clamp(margin - d, min=0)
    pos, neg = (1 - y) * d2, y * hinge.pow(2)
    mistakes = [
        (
            "labels are inverted: 1 should mean different (the d² term is for y = 0, the hinge for y = 1)",
            (y * d2 + (1 - y) * hinge.pow(2)).mean(),
        ),
        ("margin term not squared: use max(margin - d, 0)**2", (pos + y * hinge).mean()),
        ("missing square on the distance of similar pairs: use d**2 for y = 0", ((1 - y) * d + neg).mean()),
        (
            "missing square: both terms must be squared, d**2 and max(margin - d, 0)**2",
            ((1 - y) * d + y * hinge).mean(),
        ),
        ("sum instead of mean: average the per-pair losses over the batch (.mean())", (pos + neg).sum()),
        (
            "squared distance used in the hinge: it is max(margin - d, 0)**2 with d, not d**2",
            (pos + y * torch.clamp(margin - d2, min=0).pow(2)).mean(),
        ),
        (
            "forgot the square root: d is the Euclidean distance, sqrt of the sum of squares",
            ((1 - y) * d2.pow(2) + y * torch.clamp(margin - d2, min=0).pow(2)).mean(),
        ),
        (
            "the max(·, 0) is missing, or reversed: pairs farther apart than the margin must cost nothing "
            "(max(margin - d, 0)², not max(d - margin, 0)²)",
            (pos + y * (margin - d).pow(2)).mean(),
        ),
        (
            "the [B,1] label broadcast against [B] distances gives a [B,B] matrix: flatten the label "
            "(label.view(-1)) or keep the distance as [B, 1] (keepdim=True)",
            ((1 - y[:, None]) * d2[None, :] + y[:, None] * hinge.pow(2)[None, :]).mean(),
        ),
        (
            "a factor 1/2 too much: this course uses (1 - y) d² + y max(m - d, 0)² without the 1/2",
            0.5 * (pos + neg).mean(),
        ),
        (
            "the margin argument is ignored (2.0 used instead)",
            ((1 - y) * d2 + y * torch.clamp(2.0 - d, min=0).pow(2)).mean(),
        ),
    ]
    return [(message, float(value)) for message, value in mistakes]


@judge_only
def allowed_error(
    out1: torch.Tensor, out2: torch.Tensor, expected: float, margin: float, dtype: torch.dtype
) -> float:
    """Tolerance: the dtype's rounding plus the effect on d of ``F.pairwise_distance``'s eps or of an eps under the
    square root (up to ``SQRT_EPS``: d becomes sqrt(d² + eps), 1e-3 at d = 0)."""
    rtol, atol = tolerance(dtype)
    d = (out1.detach().double() - out2.detach().double()).pow(2).sum(1).sqrt()
    dim = out1.shape[1] if out1.dim() == 2 else 1
    eps_effect = 4 * (float(d.max()) + margin + 1) * math.sqrt(dim) * PAIRWISE_EPS
    # A pair's term moves by at most 2 (d + margin) Δd + Δd² when d moves by Δd; twice that, as a margin.
    shift = (d.pow(2) + SQRT_EPS).sqrt() - d
    sqrt_effect = 2 * float((2 * (d + margin) * shift + shift.pow(2)).mean()) if d.numel() else 0.0
    return atol + rtol * abs(expected) + max(eps_effect, sqrt_effect)


def _call(
    loss_fn: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float | None
) -> Any:
    what = f"contrastive_loss(out1, out2, label{'' if margin is None else f', margin={margin:g}'})"
    if margin is None:
        return run_student(EXERCISE, what, loss_fn, out1, out2, label)
    return run_student(EXERCISE, what, loss_fn, out1, out2, label, margin=margin)


def _input_text(out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float | None) -> str:
    return (
        f"out1 = {describe(out1)}; out2 = {describe(out2)}; label = {describe(label)}; "
        f"margin = {2.0 if margin is None else margin:g}"
    )


def _scalar(
    result: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float | None
) -> float:
    """The loss as a float, after checking it is a one-element tensor."""
    where = _input_text(out1, out2, label, margin)
    batch = out1.shape[0]
    if not isinstance(result, torch.Tensor):
        fail(
            "contrastive_loss returns a tensor",
            input=where,
            expected="a 0-d tensor",
            got=type_name(result),
            hint="do not call .item(), float() or NumPy inside the loss: backward() needs the tensor",
        )
    if result.numel() != 1:
        hint = "take the mean over the batch (.mean())"
        if tuple(result.shape) == (batch, batch) and batch > 1:
            hint = (
                "the [B,1] label broadcast against [B] distances gives a [B,B] matrix: "
                "flatten the label (label.view(-1))"
            )
        fail(
            "contrastive_loss returns a single number (the mean over the batch)",
            input=where,
            expected="a 0-d tensor",
            got=f"shape {list(result.shape)}",
            hint=hint,
        )
    return float(result.detach().double().reshape(-1)[0])


def _check_value(
    loss_fn: Any,
    out1: torch.Tensor,
    out2: torch.Tensor,
    label: torch.Tensor,
    margin: float | None,
    title: str,
    what: str,
    suspect: str = "",
) -> None:
    """The loss on one input equals the plain loop's value; ``title`` names the property under test.

    ``suspect`` names the mistake to name first when several fit the value (the one this input is built for).
    """
    m = 2.0 if margin is None else margin
    value = _scalar(_call(loss_fn, out1, out2, label, margin), out1, out2, label, margin)
    if probing():
        return  # the expected value is the judge's to compute
    expected = loop_loss(out1, out2, label, m)
    allowed = allowed_error(out1, out2, expected, m, out1.dtype)
    if math.isfinite(value) and abs(value - expected) <= allowed:
        return
    fail(
        f"{title} ({what})",
        input=_input_text(out1, out2, label, margin),
        expected=f"{expected:.6g} (mean of (1 - y)·d² + y·max(margin - d, 0)²)",
        got=f"{value:.6g}",
        hint=_likely_mistake(value, expected, allowed, out1, out2, label, m, suspect),
    )


@judge_only
def _likely_mistake(
    value: float,
    expected: float,
    allowed: float,
    out1: torch.Tensor,
    out2: torch.Tensor,
    label: torch.Tensor,
    margin: float,
    suspect: str = "",
) -> str | None:
    """The usual mistake that gives ``value`` on this input (``suspect`` first), if one does."""
    mistakes = sorted(_mistakes(out1, out2, label, margin), key=lambda mistake: suspect not in mistake[0])
    for message, candidate in mistakes:
        if abs(candidate - expected) > 10 * allowed and abs(candidate - value) <= max(
            allowed, 1e-4 * abs(candidate)
        ):
            if "broadcast" in message and label.dim() != 2:
                return (
                    "the label [B] broadcast against [B, 1] distances gives a [B,B] matrix: "
                    "use distances of shape [B] (no keepdim) or reshape the label to match"
                )
            return message
    if not math.isfinite(value):
        return "the loss is not a finite number"
    if (
        abs(value) <= allowed < expected
    ):  # the pairs cost nothing at all: the term their label selects is wrong
        y = label.reshape(-1)
        return INSIDE if bool((y == 1).all()) else SAME_FREE if bool((y == 0).all()) else None
    return None


INSIDE = (
    "a different-class pair inside the margin costs nothing: the second term is max(margin - d, 0)² "
    "(margin - d, not d - margin), selected by y = 1"
)
SAME_FREE = "same-class pairs cost nothing: the first term is (1 - y)·d², selected by y = 0"


def _check_positive(
    loss_fn: Any,
    out1: torch.Tensor,
    out2: torch.Tensor,
    label: torch.Tensor,
    margin: float | None,
    title: str,
    what: str,
    hint: str = INSIDE,
) -> None:
    """The loss on one input is above 0: a guard that a loss which returns 0 everywhere cannot pass a check of zeros."""
    value = _scalar(_call(loss_fn, out1, out2, label, margin), out1, out2, label, margin)
    if probing():
        return
    if not (math.isfinite(value) and value > 0):
        fail(
            f"{title} ({what})",
            input=_input_text(out1, out2, label, margin),
            expected="a loss above 0",
            got=f"{value:.6g}",
            hint=hint,
        )


def _t(rows: list[list[float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def _pairs_at(
    generator: torch.Generator, distances: list[float], dim: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs of ``dim``-d embeddings whose distances are exactly ``distances`` (up to rounding)."""
    out1 = torch.randn(len(distances), dim, generator=generator, dtype=torch.float64)
    direction = torch.randn(len(distances), dim, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    out2 = out1 + direction * torch.tensor(distances, dtype=torch.float64)[:, None]
    return out1.to(dtype), out2.to(dtype)


def _uniform(generator: torch.Generator, count: int, low: float, high: float) -> list[float]:
    return (low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)).tolist()


def _column(value: float, count: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``count`` labels equal to ``value``, of shape ``[count, 1]`` as a DataLoader gives them."""
    return torch.full((count, 1), value, dtype=dtype)


SAME = "same-class pairs cost the mean of d² (the first term)"


@check
def check_loss_similar_pairs(contrastive_loss: Any, hidden: bool = False) -> None:
    """Same-class pairs only (y = 0): the loss is the batch mean of d²."""
    generator = generator_for(9)
    # d = 0, √2 and 5: a square, a square root and the mean are all visible in the result.
    out1, out2 = _t([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]), _t([[0.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    _check_value(
        contrastive_loss, out1, out2, _column(0.0, 3), None, SAME, "hand-built 2-D pairs at d = 0, √2, 5"
    )
    a, b = _pairs_at(generator, _uniform(generator, 8, 0.2, 3.0), 16)
    _check_value(contrastive_loss, a, b, _column(0.0, 8), None, SAME, "random 16-d pairs")
    if hidden:
        a, b = _pairs_at(generator, _uniform(generator, 7, 0.1, 4.0), 8, torch.float64)
        _check_value(contrastive_loss, a, b, _column(0.0, 7, torch.float64), None, SAME, "float64 pairs")
        a, b = _pairs_at(generator, _uniform(generator, 64, 0.0, 2.5), 256)
        _check_value(
            contrastive_loss, a, b, _column(0.0, 64), 1.5, SAME, "a batch of 64 256-d pairs, margin=1.5"
        )
        a, b = _pairs_at(generator, [1.7], 3)
        _check_value(
            contrastive_loss, a, b, torch.zeros(1, dtype=torch.long), None, SAME, "one pair, integer label"
        )
    passed(
        "contrastive_loss: same-class pairs cost the mean of d²" + (" [with hidden cases]" if hidden else "")
    )


HINGE = "different-class pairs inside the margin cost the mean of (margin - d)²"


@check
def check_loss_hinge(contrastive_loss: Any, hidden: bool = False) -> None:
    """Different-class pairs closer than the margin (y = 1, d < 2): the loss is the batch mean of (2 - d)²."""
    generator = generator_for(10)
    # d = 0, 0.5 and 1.5 with the default margin 2: the squared hinge gives (4 + 2.25 + 0.25) / 3.
    out1, out2 = _t([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), _t([[0.0, 0.0], [0.5, 0.0], [1.0, -0.5]])
    _check_value(
        contrastive_loss, out1, out2, _column(1.0, 3), None, HINGE, "hand-built 2-D pairs at d = 0, 0.5, 1.5"
    )
    a, b = _pairs_at(generator, _uniform(generator, 8, 0.1, 1.9), 16)
    _check_value(contrastive_loss, a, b, _column(1.0, 8), None, HINGE, "random 16-d pairs, margin 2")
    _check_mixed_mean(contrastive_loss, generator)
    if hidden:
        a, b = _pairs_at(generator, _uniform(generator, 6, 0.05, 1.95), 5, torch.float64)
        _check_value(contrastive_loss, a, b, _column(1.0, 6, torch.float64), None, HINGE, "float64 pairs")
        a, b = _pairs_at(generator, _uniform(generator, 64, 0.5, 1.9), 256)
        _check_value(contrastive_loss, a, b, _column(1.0, 64), None, HINGE, "a batch of 64 256-d pairs")
        a, b = _pairs_at(generator, [0.8], 3)
        _check_value(
            contrastive_loss, a, b, torch.ones(1, dtype=torch.long), None, HINGE, "one pair, integer label"
        )
    passed(
        "contrastive_loss: different-class pairs inside the margin cost the mean of (margin - d)²"
        + (" [with hidden cases]" if hidden else "")
    )


def _check_mixed_mean(loss_fn: Any, generator: torch.Generator) -> None:
    """Different-class pairs inside the margin among same-class pairs at d = 0: the mean is over all pairs.

    The same-class pairs cost 0 whatever the formula, so only the averaging decides; the label is tried as [B]
    and as [B, 1], and either may give the right value, so that a label-shape slip is not counted here again.
    """
    a, b = _pairs_at(generator, [0.0] * 3 + _uniform(generator, 3, 0.2, 1.8), 8)
    label = torch.tensor([0.0] * 3 + [1.0] * 3)
    order = torch.randperm(6, generator=generator)
    a, b, label = a[order], b[order], label[order]
    values = [_scalar(_call(loss_fn, a, b, y, None), a, b, y, None) for y in (label, label.reshape(-1, 1))]
    if probing():
        return
    expected = loop_loss(a, b, label)
    allowed = allowed_error(a, b, expected, 2.0, a.dtype)
    if any(math.isfinite(v) and abs(v - expected) <= allowed for v in values):
        return
    hint = _likely_mistake(values[1], expected, allowed, a, b, label.reshape(-1, 1), 2.0)
    fail(
        f"{HINGE} (mixed with same-class pairs at d = 0: the mean is over all {len(label)} pairs)",
        input=_input_text(a, b, label, None),
        expected=f"{expected:.6g}",
        got=f"{values[0]:.6g} with label [B], {values[1]:.6g} with label [B, 1]",
        hint=hint or "average over the whole batch, both kinds of pairs together (not each kind apart)",
    )


BEYOND = "different-class pairs farther apart than the margin cost nothing"


@check
def check_loss_beyond_margin(contrastive_loss: Any, hidden: bool = False) -> None:
    """Different-class pairs at d > 2 cost exactly 0 (the clamp), while one inside the margin costs more than 0."""
    generator = generator_for(11)
    far1, far2 = _t([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), _t([[3.0, 0.0, 0.0], [-1.0, 3.0, 1.0]])
    _check_value(contrastive_loss, far1, far2, _column(1.0, 2), None, BEYOND, "3-D pairs at d = 3 and 2√2")
    a, b = _pairs_at(generator, _uniform(generator, 8, 2.2, 6.0), 16)
    _check_value(contrastive_loss, a, b, _column(1.0, 8), None, BEYOND, "random 16-d pairs at 2.2 < d < 6")
    a, b = _pairs_at(generator, [1.0], 4)
    _check_positive(
        contrastive_loss,
        a,
        b,
        _column(1.0, 1),
        None,
        "a different-class pair inside the margin costs more than 0",
        "one pair at d = 1",
    )
    if hidden:
        a, b = _pairs_at(generator, _uniform(generator, 6, 2.05, 10.0), 5, torch.float64)
        _check_value(contrastive_loss, a, b, _column(1.0, 6, torch.float64), None, BEYOND, "float64 pairs")
        a, b = _pairs_at(generator, [2.5], 3)
        _check_value(contrastive_loss, a, b, torch.ones(1), None, BEYOND, "one pair at d = 2.5, label [1]")
    passed(
        "contrastive_loss: different-class pairs beyond the margin cost nothing"
        + (" [with hidden cases]" if hidden else "")
    )


MARGIN = "the loss honours the margin argument"


def _margin_case(loss_fn: Any, generator: torch.Generator, distance: float, margin: float) -> None:
    # One pair, so that neither the mean nor a label's shape matters. Either d = margin, where the
    # cost is 0 with or without the square or the clamp, but not with 2.0 in place of the margin; or
    # a pair beyond 2 and inside a wider margin, which must cost something.
    a, b = _pairs_at(generator, [distance], 3)
    label, what = _column(1.0, 1), f"one different-class pair at d = {distance:g}, margin={margin:g}"
    if distance == margin:
        _check_value(
            loss_fn, a, b, label, margin, MARGIN, what + " (exactly at the margin)", suspect="margin argument"
        )
    else:
        _check_positive(loss_fn, a, b, label, margin, MARGIN, what + " (inside this margin, beyond 2)")


@check
def check_loss_margin_argument(contrastive_loss: Any, hidden: bool = False) -> None:
    """The margin argument decides where the cost ends: 0 at d = margin, more than 0 inside it (even beyond 2)."""
    generator = generator_for(12)
    for distance, margin in ((1.5, 1.5), (1.0, 1.0), (2.1, 5.0)):
        _margin_case(contrastive_loss, generator, distance, margin)
    if hidden:
        for distance, margin in ((1.25, 1.25), (1.75, 1.75), (2.5, 8.0)):
            _margin_case(contrastive_loss, generator, distance, margin)
    passed(
        "contrastive_loss: the margin argument is honoured (margins 1, 1.5 and 5)"
        + (" [with hidden cases]" if hidden else "")
    )


def _check_shape_case(
    loss_fn: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, what: str
) -> None:
    """One label form: the result is a 0-d float tensor of the right value."""
    result = _call(loss_fn, out1, out2, label, None)
    where = f"{what}: " + _input_text(out1, out2, label, None)
    if not isinstance(result, torch.Tensor):
        fail(
            "contrastive_loss returns a tensor",
            input=where,
            expected="a 0-d tensor",
            got=type_name(result),
            hint="do not call .item() or float() inside the loss: backward() needs the tensor",
        )
    if result.dim() != 0:
        hint = None
        if result.dim() == 2 and tuple(result.shape) == (out1.shape[0],) * 2:
            hint = (
                "the [B,1] label broadcast against [B] distances gives a [B,B] matrix (or a [B] label against "
                "[B, 1] distances): bring label and distances to the same shape, e.g. label.view(-1)"
            )
        elif result.numel() == 1:
            hint = (
                "the mean of a [B, 1] tensor with keepdim, or a [1]-shaped result: "
                "return a 0-d tensor (.mean() of a [B] tensor)"
            )
        elif result.numel() == out1.shape[0]:
            hint = "take the mean over the batch (.mean())"
        fail(
            "contrastive_loss returns a 0-d tensor (a scalar)",
            input=where,
            expected="shape []",
            got=f"shape {list(result.shape)}",
            hint=hint,
        )
    if not result.dtype.is_floating_point:
        fail(
            "the loss is a floating-point tensor",
            input=where,
            expected="a float dtype",
            got=str(result.dtype),
        )
    value = float(result.detach().double())
    if probing():
        return
    expected = loop_loss(out1, out2, label)
    allowed = allowed_error(out1, out2, expected, 2.0, out1.dtype)
    if differs(value, expected, allowed):
        hint = _likely_mistake(
            value, expected, allowed, out1, out2, label.reshape(-1, 1), 2.0, suspect="broadcast"
        )
        fail(
            "labels of shape [B] and [B, 1] give the same loss",
            input=where,
            expected=f"{expected:.6g}",
            got=f"{value:.6g}",
            hint=hint
            or "read the label as one value per pair, whatever its shape ([B], [B, 1], float or integer)",
        )


def _label_shape_pairs(
    generator: torch.Generator, same: int, different: int, dim: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same-class pairs at d = 0 and different-class pairs at d = 2, shuffled, with labels of shape [B].

    Every pair then costs 0 whatever squares or clamps the formula has, while a [B, B] broadcast
    of labels against distances pairs each label with the others' distances and costs more.
    """
    a, b = _pairs_at(generator, [0.0] * same + [2.0] * different, dim, dtype)
    label = torch.tensor([0.0] * same + [1.0] * different)
    order = torch.randperm(same + different, generator=generator)
    return a[order], b[order], label[order]


@check
def check_loss_label_shapes(contrastive_loss: Any, hidden: bool = False) -> None:
    """Labels ``[B]``, ``[B, 1]`` and integer give the same 0-d loss; a broadcast to ``[B, B]`` is caught."""
    generator = generator_for(13)
    cases = [(2, 2, 3, torch.float32, "a batch of 4")]
    if hidden:
        cases += [
            (3, 6, 7, torch.float32, "a batch of 9"),
            (1, 4, 2, torch.float64, "a batch of 5 in float64"),
        ]
    for same, different, dim, dtype, what in cases:
        a, b, label = _label_shape_pairs(generator, same, different, dim, dtype)
        for form, y in (
            ("label [B]", label),
            ("label [B, 1]", label.reshape(-1, 1)),
            ("integer label [B]", label.long()),
        ):
            _check_shape_case(contrastive_loss, a, b, y, f"{what}, {form}")
    a, b = _pairs_at(generator, [0.0], 3)
    _check_shape_case(
        contrastive_loss, a, b, torch.zeros(1, 1), "a batch of one same-class pair at d = 0, label [1, 1]"
    )
    a, b = _pairs_at(generator, [1.0], 3)
    _check_positive(
        contrastive_loss,
        a,
        b,
        torch.zeros(1),
        None,
        "the label is read",
        "a same-class pair at d = 1, label [1]",
        hint=SAME_FREE,
    )
    passed(
        "contrastive_loss: a 0-d tensor, the same for labels [B], [B, 1] and integer, also for a batch of one"
        + (" [with hidden cases]" if hidden else "")
    )


@check
def check_loss_label_count(contrastive_loss: Any, hidden: bool = False) -> None:
    """A label that does not hold one value per pair raises ``ValueError`` (instead of broadcasting silently)."""
    generator = generator_for(14)
    a, b = _pairs_at(generator, [0.5, 1.0, 3.0], 4)
    wrong = [("[B + 1]", torch.zeros(4)), ("[1]", torch.zeros(1))]
    if hidden:
        wrong += [("[B, 2]", torch.zeros(3, 2)), ("[0]", torch.zeros(0))]
    for shape, label in wrong:
        what = f"contrastive_loss(out1, out2, label) with label of shape {shape} for B = 3 pairs"
        outcome = run_student_expecting(ValueError, EXERCISE, what, contrastive_loss, a, b, label)
        if outcome is not None:
            fail(
                "a label that does not hold one value per pair raises ValueError",
                input=what,
                expected="ValueError",
                got=outcome,
                hint="compare label.numel() with out1.shape[0] and `raise ValueError(...)` when they differ",
            )
    passed(
        "contrastive_loss: a label without one value per pair raises ValueError"
        + (" [with hidden cases]" if hidden else "")
    )


def _backward(loss: torch.Tensor, out1: torch.Tensor, out2: torch.Tensor) -> tuple[Any, Any]:
    """``loss.backward()``, then the gradients it left on both embeddings."""
    loss.backward()
    return out1.grad, out2.grad


def _gradient_case(
    loss_fn: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, what: str
) -> None:
    """Both gradients exist, are opposite, and pull a same-class pair together or push a different-class pair apart."""
    a, b = out1.clone().requires_grad_(True), out2.clone().requires_grad_(True)
    where = f"{what}: " + _input_text(out1, out2, label, None)
    result = _call(loss_fn, a, b, label, None)
    _scalar(result, out1, out2, label, None)
    if not result.requires_grad:
        fail(
            "the loss can be differentiated with respect to the embeddings",
            input=where,
            expected="a tensor with requires_grad=True",
            got="a tensor without gradient",
            hint="the loss is not connected to out1/out2: no .item(), .detach(), torch.tensor(...) or NumPy inside",
        )
    grads = run_student(EXERCISE, "loss.backward()", _backward, result, a, b)
    if probing():
        return
    _judge_gradients(grads, out1, out2, label, where)


@judge_only
def _judge_gradients(
    grads: tuple[Any, Any], out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, where: str
) -> None:
    """Scale-free: each pair's gradient on out1 is a positive multiple of ±(out1 - out2), and out2's is its opposite."""
    sign = (
        1.0 if float(label.reshape(-1)[0]) == 0 else -1.0
    )  # same class: pull together; different: push apart
    want = sign * (out1 - out2).double()
    for name, got in (("out1", grads[0]), ("out2", grads[1])):
        if not isinstance(got, torch.Tensor):
            fail(
                f"the gradient reaches {name}",
                input=where,
                expected=f"a tensor of shape {list(out1.shape)}",
                got="None",
                hint="the loss is not connected to the embeddings: no .item(), .detach() or NumPy inside",
            )
    g1, g2 = grads[0].double(), grads[1].double()
    cosine = torch.nn.functional.cosine_similarity(g1, want, dim=1, eps=1e-30)
    direction = "towards each other" if sign > 0 else "away from each other"
    if not bool(torch.isfinite(g1).all()) or bool((cosine < 1 - 1e-4).any()):
        fail(
            f"the gradient moves each pair {direction}",
            input=where,
            expected=f"∂loss/∂out1 a positive multiple of {'+' if sign > 0 else '-'}(out1 - out2) for every pair",
            got=describe(grads[0]),
            hint="check the sign of each term and which label selects it (0 = same class)",
        )
    if not bool(torch.isfinite(g2).all()) or float((g1 + g2).abs().max()) > 1e-6 * max(
        1.0, float(g1.abs().max())
    ):
        fail(
            "the gradients on out1 and out2 are opposite (the loss depends only on out1 - out2)",
            input=where,
            expected=describe(-grads[0]),
            got=describe(grads[1]),
            hint="compute d from out1 - out2 only (e.g. F.pairwise_distance(out1, out2)), the same way for both",
        )


@check
def check_loss_gradients(contrastive_loss: Any, hidden: bool = False) -> None:
    """Gradients reach both embeddings and pull same-class pairs together, push close different-class pairs apart."""
    generator = generator_for(15)
    # Pairs of one kind per batch and 0.3 < d < 1.3, away from d = 0 and from the margin's kink: only the
    # direction of each term's gradient matters here (its size follows from the values checked above).
    kinds = [(0.0, 6, 4), (1.0, 6, 4)]
    if hidden:
        kinds += [(0.0, 1, 3), (1.0, 10, 16), (1.0, 1, 3)]
    for y, batch, dim in kinds:
        a, b = _pairs_at(generator, _uniform(generator, batch, 0.3, 1.3), dim, torch.float64)
        kind = "same-class" if y == 0 else "different-class"
        _gradient_case(contrastive_loss, a, b, _column(y, batch), f"{batch} {kind} pairs in float64")
    passed(
        "contrastive_loss: gradients reach both embeddings, pull same-class pairs together and push close "
        "different-class pairs apart" + (" [with hidden cases]" if hidden else "")
    )


AT_ZERO = "the gradients stay finite when two embeddings coincide (d = 0)"
SQRT_AT_ZERO = (
    "a bare square root at d = 0: the derivative of sqrt(x) at x = 0 is infinite, and 0 · ∞ gives NaN. "
    "Identical embeddings happen in training (an image paired with itself, two all-zero embeddings after "
    "the final ReLU) and one NaN step turns every weight into NaN: use F.pairwise_distance (its eps), "
    "torch.linalg.vector_norm (gradient 0 at 0) or sqrt(sum + eps) with a small eps (1e-6 or less)"
)


def _zero_case(loss_fn: Any, generator: torch.Generator, y: float, count: int, dim: int) -> None:
    """A batch of ``y``-labelled pairs, some identical (d = 0) and some at 0.3 < d < 1.3: every gradient is finite."""
    distances = [0.0] * count + _uniform(generator, count, 0.3, 1.3)
    order = torch.randperm(2 * count, generator=generator).tolist()
    out1, out2 = _pairs_at(generator, [distances[i] for i in order], dim, torch.float64)
    label = _column(y, 2 * count, torch.float64)
    kind = "same-class" if y == 0 else "different-class"
    where = (
        f"{2 * count} {kind} pairs in float64, rows {sorted(k for k, i in enumerate(order) if i < count)} "
        f"identical (d = 0): " + _input_text(out1, out2, label, None)
    )
    a, b = out1.clone().requires_grad_(True), out2.clone().requires_grad_(True)
    result = _call(loss_fn, a, b, label, None)
    _scalar(result, out1, out2, label, None)
    if not result.requires_grad:
        fail(
            AT_ZERO,
            input=where,
            expected="a tensor with requires_grad=True",
            got="a tensor without gradient",
            hint="the loss is not connected to out1/out2: no .item(), .detach(), torch.tensor(...) or NumPy inside",
        )
    grads = run_student(EXERCISE, "loss.backward()", _backward, result, a, b)
    if probing():
        return
    _judge_finite(grads, out1, out2, where, guard=y == 0)


@judge_only
def _judge_finite(
    grads: tuple[Any, Any], out1: torch.Tensor, out2: torch.Tensor, where: str, guard: bool
) -> None:
    """Every gradient is finite; with ``guard``, same-class pairs apart get one (so a constant loss cannot pass).

    Only same-class pairs guard: their d² term pulls at every d > 0, whatever the hinge does.
    """
    for name, got in (("out1", grads[0]), ("out2", grads[1])):
        if not isinstance(got, torch.Tensor):
            fail(
                AT_ZERO,
                input=where,
                expected=f"a gradient on {name}",
                got="None",
                hint="the loss is not connected to the embeddings: no .item(), .detach() or NumPy inside",
            )
        if not bool(torch.isfinite(got).all()):
            bad = sorted({int(row) for row in (~torch.isfinite(got)).nonzero()[:, 0]})
            fail(
                AT_ZERO,
                input=where,
                expected=f"finite values in ∂loss/∂{name}",
                got=f"non-finite values in rows {bad}: {describe(got)}",
                hint=SQRT_AT_ZERO,
            )
    apart = (out1 - out2).double().norm(dim=1) > 0
    if guard and float(grads[0].double()[apart].abs().max()) == 0.0:
        fail(
            AT_ZERO + ", and the pairs that are apart get a gradient",
            input=where,
            expected="∂loss/∂out1 not 0 for the same-class pairs at 0.3 < d < 1.3",
            got=describe(grads[0]),
            hint="the loss does not depend on the embeddings: compute it from the distances d",
        )


@check
def check_loss_gradient_at_zero(contrastive_loss: Any, hidden: bool = False) -> None:
    """Identical embeddings (d = 0), for both labels: the gradients are finite (their direction there is undefined)."""
    generator = generator_for(16)
    cases = [(0.0, 2, 4), (1.0, 2, 4)]
    if hidden:
        cases += [(0.0, 4, 16), (1.0, 4, 16), (1.0, 1, 2)]
    for y, count, dim in cases:
        _zero_case(contrastive_loss, generator, y, count, dim)
    passed(
        "contrastive_loss: finite gradients at d = 0, for same-class and different-class pairs"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- exercise 4.2: the gradient by hand

GRADIENT_EXERCISE = syllabus.label("4.2")
BY_HAND = "∂L/∂out1 written by hand equals the loss's gradient"


def _without_autograd(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` with autograd off: a gradient written by hand needs none."""
    try:
        with torch.inference_mode():
            return func(*args, **kwargs)
    except RuntimeError as error:
        if "grad" not in str(error):
            raise
        raise RuntimeError(
            f"{error} (the check runs contrastive_loss_gradient with autograd switched off: derive "
            "the gradient by hand, with tensor operations only)"
        ) from error


def _mixed_pairs(
    generator: torch.Generator, count: int, dim: int, margin: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` pairs of both labels in float64, different-class ones inside and beyond the margin (never at it)."""
    label = (torch.arange(count) % 2).to(torch.float64)[torch.randperm(count, generator=generator)]
    inside = _uniform(generator, count, 0.2, margin - 0.15)
    beyond = _uniform(generator, count, margin + 0.15, margin + 1.5)
    distances = [beyond[i] if label[i] == 1 and i % 3 == 0 else inside[i] for i in range(count)]
    out1, out2 = _pairs_at(generator, distances, dim, torch.float64)
    return out1, out2, label


@judge_only
def hand_gradient(out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """``∂L/∂out1`` of the batch-mean loss (float64): ``2(out1 - out2)/B`` or ``-2 max(m - d, 0)(out1 -
    out2)/(d B)``."""
    diff = (out1 - out2).double()
    d = diff.norm(dim=1, keepdim=True)
    y = label.double().reshape(-1, 1)
    return ((1 - y) * 2 * diff - y * 2 * torch.clamp(margin - d, min=0) * diff / d) / len(diff)


@judge_only
def _gradient_mistake(
    got: torch.Tensor, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float
) -> str | None:
    """The usual slip that gives ``got``, if one does."""
    diff, y = (out1 - out2).double(), label.double().reshape(-1, 1)
    d, batch = diff.norm(dim=1, keepdim=True), len(diff)
    right = hand_gradient(out1, out2, label, margin)
    hinge = torch.clamp(margin - d, min=0)
    candidates = [
        ("the loss is the batch *mean*: divide each pair's gradient by B", right * batch),
        ("this is ∂L/∂out2 (its opposite): the exercise asks for the gradient with respect to out1", -right),
        (
            "a factor 2 is missing: ∂(d²)/∂out1 = 2(out1 - out2), ∂(max(m - d, 0)²)/∂out1 = -2 max(m - d, 0) ∂d/∂out1",
            right / 2,
        ),
        (
            "labels inverted: y = 0 selects the d² term (same class), y = 1 the hinge",
            (y * 2 * diff - (1 - y) * 2 * hinge * diff / d) / batch,
        ),
        (
            "the clamp is missing: a different-class pair beyond the margin has no gradient",
            ((1 - y) * 2 * diff - y * 2 * (margin - d) * diff / d) / batch,
        ),
        (
            "∂d/∂out1 is the unit vector (out1 - out2)/d: divide by d",
            ((1 - y) * 2 * diff - y * 2 * hinge * diff) / batch,
        ),
        (
            "the hinge's gradient has the wrong sign: it pushes a close different-class pair apart",
            ((1 - y) * 2 * diff + y * 2 * hinge * diff / d) / batch,
        ),
    ]
    for message, candidate in candidates:
        if tuple(got.shape) == tuple(candidate.shape) and float(
            (got.double() - candidate).abs().max()
        ) <= 1e-5 * (1 + float(candidate.abs().max())):
            return message
    return None


def _by_hand_case(
    gradient_fn: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float, what: str
) -> None:
    call = f"contrastive_loss_gradient(out1, out2, label, margin={margin:.4g})"
    got = run_student(
        GRADIENT_EXERCISE, call, _without_autograd, gradient_fn, out1, out2, label, margin=margin
    )
    where = f"{what}: " + _input_text(out1, out2, label, margin)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(out1.shape):
        fail(
            BY_HAND,
            input=where,
            expected=f"a tensor of shape {list(out1.shape)}, like out1",
            got=type_name(got) if not isinstance(got, torch.Tensor) else f"shape {list(got.shape)}",
            hint="one gradient row per pair: the same shape as out1",
        )
    if probing():
        return
    expected = hand_gradient(out1, out2, label, margin)
    if float((got.double() - expected).abs().max()) <= 1e-5 * (1 + float(expected.abs().max())):
        return
    fail(
        BY_HAND,
        input=where,
        expected=describe(expected),
        got=describe(got),
        hint=_gradient_mistake(got, out1, out2, label, margin)
        or (
            "work out each kind of pair apart: ∂(d²)/∂out1, "
            "then ∂(max(m - d, 0)²)/∂out1 with ∂d/∂out1 = (out1 - out2)/d"
        ),
    )


@check
def check_loss_gradient_by_hand(contrastive_loss_gradient: Any, hidden: bool = False) -> None:
    """The hand-written ∂L/∂out1 equals the loss's gradient, for both kinds of pair, inside and beyond the margin.

    The function runs with autograd off (``torch.inference_mode``): the gradient is to be derived, not computed.
    """
    generator = generator_for(17)
    cases = [(6, 3, 2.0), (8, 5, 1.0 + 2.0 * float(torch.rand(1, generator=generator, dtype=torch.float64)))]
    if hidden:
        cases += [
            (1, 2, 2.0),
            (16, 8, 0.5 + 3.0 * float(torch.rand(1, generator=generator, dtype=torch.float64))),
        ]
    for count, dim, margin in cases:
        out1, out2, label = _mixed_pairs(generator, count, dim, margin)
        _by_hand_case(contrastive_loss_gradient, out1, out2, label, margin, f"{count} pairs of both kinds")
    passed(
        "contrastive_loss_gradient: ∂L/∂out1 by hand matches the loss's gradient for both kinds of pair"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- exercise 4.3: the numerical gradient

NUMERICAL_EXERCISE = syllabus.label("4.3")
NUMERICAL = "the central-difference gradient matches the exact one"


def _smooth_function(w: torch.Tensor, a: torch.Tensor, c: float) -> Any:
    """``f(x) = Σ w·sin(a·x) + c·(Σ x)²`` as a Python float, through NumPy: autograd cannot see inside it."""
    w_np, a_np = w.numpy(), a.numpy()

    def f(x: torch.Tensor) -> float:
        values = x.detach().cpu().double().numpy()
        return float((w_np * np.sin(a_np * values)).sum() + c * values.sum() ** 2)

    return f


@judge_only
def smooth_gradient(w: torch.Tensor, a: torch.Tensor, c: float, x: torch.Tensor) -> torch.Tensor:
    """The exact gradient of ``_smooth_function(w, a, c)`` at ``x``."""
    x = x.double()
    return w * a * torch.cos(a * x) + 2 * c * x.sum()


def _call_numerical(numerical_fn: Any, f: Any, x: torch.Tensor, h: float | None) -> tuple[Any, torch.Tensor]:
    """The student's gradient, and ``x`` as the call left it (it must be unchanged)."""
    got = numerical_fn(f, x) if h is None else numerical_fn(f, x, h=h)
    return got, x.clone()


def _numerical_case(
    numerical_fn: Any, generator: torch.Generator, shape: tuple[int, ...], h: float | None
) -> None:
    w = torch.randn(shape, generator=generator, dtype=torch.float64)
    a = 0.5 + 1.5 * torch.rand(shape, generator=generator, dtype=torch.float64)
    c = 0.25 + float(torch.rand(1, generator=generator, dtype=torch.float64))
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    start = x.clone()
    call = f"numerical_gradient(f, x{'' if h is None else f', h={h:g}'})"
    where = f"f(x) = Σ w·sin(a·x) + {c:.4g}·(Σ x)², w = {describe(w)}, a = {describe(a)}, x = {describe(x)}"
    got, after = run_student(
        NUMERICAL_EXERCISE, call, _call_numerical, numerical_fn, _smooth_function(w, a, c), x, h
    )
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape:
        fail(
            NUMERICAL,
            input=where,
            expected=f"a tensor of shape {list(shape)}, like x",
            got=type_name(got) if not isinstance(got, torch.Tensor) else f"shape {list(got.shape)}",
        )
    if not torch.equal(after, start):
        moved = (after.double() - start.double()).abs()
        tiny = bool(moved.max() < 1e-9 * max(1.0, float(start.abs().max())))
        fail(
            "numerical_gradient leaves x as it was",
            input=where,
            expected=describe(start),
            got=describe(after)
            + f" ({int((moved > 0).sum())} elements changed, by up to {float(moved.max()):.3g})",
            hint="x[i] += h, then -= 2h, then += h leaves rounding errors (x + h - 2h + h is not always x "
            "in floating point): keep the old value (old = x[i].item()) and put it back with x[i] = old, "
            "or work on x.clone()"
            if tiny
            else "put each element back after its two evaluations, or work on x.clone()",
        )
    if probing():
        return
    _judge_numerical(got, smooth_gradient(w, a, c, x), where, 1e-5 if h is None else h)


@judge_only
def _judge_numerical(got: torch.Tensor, exact: torch.Tensor, where: str, h: float) -> None:
    """Central differences are exact to O(h²); a one-sided difference is off by O(h), a shared step by much more."""
    error = float((got.double() - exact).abs().max())
    if error <= 1e-6 * (1 + float(exact.abs().max())):
        return
    hint = "perturb one element at a time by +h and -h, and divide the difference of f by 2h"
    if error <= 50 * h * (1 + float(exact.abs().max())):
        hint = (
            "a one-sided difference (f(x + h) - f(x)) / h is off by O(h): the central one (f(x + h) - f(x - h)) / 2h "
            "by O(h²) only"
        )
    fail(
        NUMERICAL,
        input=where,
        expected=describe(exact) + " (the exact gradient)",
        got=describe(got),
        hint=hint,
    )


@check
def check_numerical_gradient(numerical_gradient: Any, hidden: bool = False) -> None:
    """Central differences of a function autograd cannot see into match its exact gradient, and ``x`` is left
    as it was."""
    generator = generator_for(18)
    cases: list[tuple[tuple[int, ...], float | None]] = [((3,), None), ((2, 3), 1e-4)]
    if hidden:
        cases += [((5,), 1e-3), ((1, 4), None)]
    for shape, h in cases:
        _numerical_case(numerical_gradient, generator, shape, h)
    passed(
        "numerical_gradient: central differences match the exact gradient, and x is left as it was"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- questions 4.4 and 4.5

STEP_QUESTION = "distance_after_step (question 4.4)"
COLLAPSE_QUESTION = "collapsed_loss (question 4.5)"


@judge_only
def step_distance(d: float, y: int, margin: float, lr: float) -> float:
    """The distance after one step: ``|1 - 4 lr| d`` for y = 0, ``d + 4 lr max(m - d, 0)`` for y = 1."""
    return abs(1 - 4 * lr) * d if y == 0 else d + 4 * lr * max(margin - d, 0.0)


STEP_WHY = (
    "∂L/∂out1 = 2(out1 - out2) for a same-class pair and ∂L/∂out2 is its opposite, so one step moves each "
    "embedding 2·lr·d towards the other: d becomes |1 - 4·lr|·d (beyond lr = 0.25 they overshoot). For a "
    "different-class pair inside the margin each moves 2·lr·(m - d) away: d becomes d + 4·lr·(m - d); beyond "
    "the margin nothing moves"
)


@check
def check_distance_after_step(distance_after_step: Any, hidden: bool = False) -> None:
    """Question 4.4: the distance of a lone pair after one gradient-descent step, for parameters drawn per run."""
    g = generator_for(19)  # a short name: every parameter below is drawn from it
    margin = questions.draw(g, 1.0, 3.0)
    cases = [
        (questions.draw(g, 0.5, 2.0), 0, margin, questions.draw(g, 0.01, 0.2)),
        (questions.draw(g, 0.1, margin - 0.1), 1, margin, questions.draw(g, 0.01, 0.1)),
        (questions.draw(g, margin + 0.1, margin + 2.0), 1, margin, questions.draw(g, 0.01, 0.2)),
        (questions.draw(g, 0.5, 2.0), 0, margin, questions.draw(g, 0.3, 0.45)),
    ]
    if hidden:
        cases += [(questions.draw(g, 0.1, 0.5), 1, margin, questions.draw(g, 0.1, 0.2))]
    answers = questions.answers(STEP_QUESTION, distance_after_step, "distance_after_step", cases)
    if probing():
        return
    questions.verdict(
        "distance_after_step",
        answers,
        cases,
        step_distance,
        STEP_WHY,
        "the right distance after one step, for both kinds of pair"
        + (" [with hidden cases]" if hidden else ""),
    )


@judge_only
def collapse_value(p: float, margin: float) -> float:
    """The loss of a collapsed batch: ``p·m²``."""
    return p * margin**2


COLLAPSE_WHY = (
    "when every embedding is the same point, d = 0 for every pair: a same-class pair costs d² = 0 and a "
    "different-class pair max(m - 0, 0)² = m², so the batch mean is p·m²"
)


@check
def check_collapsed_loss(collapsed_loss: Any, hidden: bool = False) -> None:
    """Question 4.5: the loss of a batch whose embeddings all coincide, for parameters drawn per run."""
    generator = generator_for(20)
    cases = [
        (questions.draw(generator, 0.1, 0.9), questions.draw(generator, 0.5, 3.0))
        for _ in range(3 if not hidden else 5)
    ]
    answers = questions.answers(COLLAPSE_QUESTION, collapsed_loss, "collapsed_loss", cases)
    if probing():
        return
    questions.verdict(
        "collapsed_loss",
        answers,
        cases,
        collapse_value,
        COLLAPSE_WHY,
        "the loss of a collapsed network" + (" [with hidden cases]" if hidden else ""),
    )
