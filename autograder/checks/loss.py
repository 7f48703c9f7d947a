"""Checks for lesson 04: ``contrastive_loss(out1, out2, label, margin=2.0)``.

The loss is the batch mean of ``(1 - y) d² + y max(margin - d, 0)²`` with ``d`` the Euclidean
distance, ``y`` = 0 for same-class and 1 for different-class pairs. Expected values come from a
plain Python loop (as pytorch-metric-learning's loss tests do), with a tolerance that accepts
``F.pairwise_distance``'s ``eps = 1e-6`` as well as ``torch.norm`` or a manual square root.
When a value is wrong, the check recomputes the usual mistakes and names the one that matches.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .report import check, describe, fail, passed, run_student, tolerance, type_name
from .transcript import generator_for, judge_only, probing

EXERCISE = "contrastive_loss (exercise 4.1)"
PAIRWISE_EPS = 1e-6  # F.pairwise_distance adds it to the difference


@judge_only
def loop_loss(out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float = 2.0) -> float:
    """The contrastive loss computed by a plain Python loop over the pairs, in double precision."""
    a, b = out1.detach().double().tolist(), out2.detach().double().tolist()
    y = label.detach().double().reshape(-1).tolist()
    total = 0.0
    for ai, bi, yi in zip(a, b, y):
        d = math.sqrt(sum((p - q) ** 2 for p, q in zip(ai, bi)))
        total += (1 - yi) * d ** 2 + yi * max(margin - d, 0.0) ** 2
    return total / len(a)


@judge_only
def _mistakes(out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float) -> list[tuple[str, float]]:
    """What common mistakes would return on these inputs (float64)."""
    o1, o2 = out1.detach().double(), out2.detach().double()
    d = (o1 - o2).pow(2).sum(1).sqrt()
    d2 = d.pow(2)
    y = label.detach().double().reshape(-1)
    hinge = torch.clamp(margin - d, min=0)
    pos, neg = (1 - y) * d2, y * hinge.pow(2)
    mistakes = [
        ("labels are inverted: 1 should mean different (the d² term is for y = 0, the hinge for y = 1)",
         (y * d2 + (1 - y) * hinge.pow(2)).mean()),
        ("margin term not squared: use max(margin - d, 0)**2", (pos + y * hinge).mean()),
        ("missing square on the distance of similar pairs: use d**2 for y = 0", ((1 - y) * d + neg).mean()),
        ("missing square: both terms must be squared, d**2 and max(margin - d, 0)**2", ((1 - y) * d + y * hinge).mean()),
        ("sum instead of mean: average the per-pair losses over the batch (.mean())", (pos + neg).sum()),
        ("squared distance used in the hinge: it is max(margin - d, 0)**2 with d, not d**2",
         (pos + y * torch.clamp(margin - d2, min=0).pow(2)).mean()),
        ("forgot the square root: d is the Euclidean distance, sqrt of the sum of squares",
         ((1 - y) * d2.pow(2) + y * torch.clamp(margin - d2, min=0).pow(2)).mean()),
        ("the max(·, 0) is missing: pairs farther apart than the margin must cost nothing",
         (pos + y * (margin - d).pow(2)).mean()),
        ("the [B,1] label broadcast against [B] distances gives a [B,B] matrix: flatten the label "
         "(label.view(-1)) or keep the distance as [B, 1] (keepdim=True)",
         ((1 - y[:, None]) * d2[None, :] + y[:, None] * hinge.pow(2)[None, :]).mean()),
        ("a factor 1/2 too much: this course uses (1 - y) d² + y max(m - d, 0)² without the 1/2", 0.5 * (pos + neg).mean()),
        ("the margin argument is ignored (2.0 used instead)", ((1 - y) * d2 + y * torch.clamp(2.0 - d, min=0).pow(2)).mean()),
    ]
    return [(message, float(value)) for message, value in mistakes]


@judge_only
def allowed_error(out1: torch.Tensor, out2: torch.Tensor, expected: float, margin: float, dtype: torch.dtype) -> float:
    """Tolerance: the dtype's rounding plus the effect of ``F.pairwise_distance``'s eps on d."""
    rtol, atol = tolerance(dtype)
    d = (out1.detach().double() - out2.detach().double()).pow(2).sum(1).sqrt()
    dim = out1.shape[1] if out1.dim() == 2 else 1
    eps_effect = 4 * (float(d.max()) + margin + 1) * math.sqrt(dim) * PAIRWISE_EPS
    return atol + rtol * abs(expected) + eps_effect


def _call(loss_fn: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float | None) -> Any:
    what = f"contrastive_loss(out1, out2, label{'' if margin is None else f', margin={margin:g}'})"
    if margin is None:
        return run_student(EXERCISE, what, loss_fn, out1, out2, label)
    return run_student(EXERCISE, what, loss_fn, out1, out2, label, margin=margin)


def _input_text(out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float | None) -> str:
    return (f"out1 = {describe(out1)}; out2 = {describe(out2)}; label = {describe(label)}; "
            f"margin = {2.0 if margin is None else margin:g}")


def _scalar(result: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float | None) -> float:
    """The loss as a float, after checking it is a one-element tensor."""
    where = _input_text(out1, out2, label, margin)
    batch = out1.shape[0]
    if not isinstance(result, torch.Tensor):
        fail("contrastive_loss returns a tensor", input=where, expected="a 0-d tensor", got=type_name(result),
             hint="do not call .item(), float() or NumPy inside the loss: backward() needs the tensor")
    if result.numel() != 1:
        hint = "take the mean over the batch (.mean())"
        if tuple(result.shape) == (batch, batch) and batch > 1:
            hint = "the [B,1] label broadcast against [B] distances gives a [B,B] matrix: flatten the label (label.view(-1))"
        fail("contrastive_loss returns a single number (the mean over the batch)", input=where,
             expected="a 0-d tensor", got=f"shape {list(result.shape)}", hint=hint)
    return float(result.detach().double().reshape(-1)[0])


def _check_value(loss_fn: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, margin: float | None,
                 what: str) -> None:
    m = 2.0 if margin is None else margin
    value = _scalar(_call(loss_fn, out1, out2, label, margin), out1, out2, label, margin)
    if probing():
        return  # the expected value is the judge's to compute
    expected = loop_loss(out1, out2, label, m)
    allowed = allowed_error(out1, out2, expected, m, out1.dtype)
    if math.isfinite(value) and abs(value - expected) <= allowed:
        return
    hint = None
    for message, candidate in _mistakes(out1, out2, label, m):
        if abs(candidate - expected) > 10 * allowed and abs(candidate - value) <= max(allowed, 1e-4 * abs(candidate)):
            if "broadcast" in message and label.dim() != 2:
                message = ("the label [B] broadcast against [B, 1] distances gives a [B,B] matrix: "
                           "use distances of shape [B] (no keepdim) or reshape the label to match")
            hint = message
            break
    if hint is None and not math.isfinite(value):
        hint = "the loss is not a finite number"
    fail(f"contrastive loss value ({what})", input=_input_text(out1, out2, label, margin),
         expected=f"{expected:.6g} (mean of (1 - y)·d² + y·max(margin - d, 0)²)", got=f"{value:.6g}", hint=hint)


def _t(rows: list[list[float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def _random_case(generator: torch.Generator, batch: int, dim: int, dtype: torch.dtype, spread: float = 0.6,
                 nonnegative: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out1 = torch.randn(batch, dim, generator=generator, dtype=torch.float64) * spread
    out2 = torch.randn(batch, dim, generator=generator, dtype=torch.float64) * spread
    if nonnegative:
        out1, out2 = out1.abs(), out2.abs()
    label = (torch.arange(batch) % 2).double()[torch.randperm(batch, generator=generator)]
    return out1.to(dtype), out2.to(dtype), label


@check
def check_loss_values(contrastive_loss: Any, hidden: bool = False) -> None:
    """Values against a plain loop on hand-built and random embeddings; names the usual mistakes."""
    generator = generator_for(9)
    # Hand-built 2-D pairs: same at d = 0, same at d = √2, different at d = 0.5 (inside the margin), different at d = 3.
    out1 = _t([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    out2 = _t([[0.0, 0.0], [0.0, 1.0], [0.5, 0.0], [2.0, 5.0]])
    label = _t([[0.0], [0.0], [1.0], [1.0]])
    _check_value(contrastive_loss, out1, out2, label, None, "hand-built 2-D embeddings, label [B, 1]")
    # 3-D: an identical same-class pair costs 0; different pairs beyond the margin cost 0.
    same = _t([[0.3, -1.2, 2.0]])
    _check_value(contrastive_loss, same, same.clone(), _t([[0.0]]), None, "an identical same-class pair costs 0")
    far1, far2 = _t([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), _t([[3.0, 0.0, 0.0], [-1.0, 3.0, 1.0]])
    _check_value(contrastive_loss, far1, far2, _t([[1.0], [1.0]]), None, "different pairs beyond the margin cost 0")
    near1, near2 = _t([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), _t([[1.0, 0.0, 0.0], [1.0, 1.0, 1.5]])
    _check_value(contrastive_loss, near1, near2, _t([[1.0], [0.0]]), None, "hand-built 3-D embeddings")
    a, b, y = _random_case(generator, 8, 16, torch.float32)
    _check_value(contrastive_loss, a, b, y.reshape(-1, 1).float(), None, "random 16-d embeddings, label [B, 1]")
    if hidden:
        for margin in (1.0, 3.0, 0.5):
            a, b, y = _random_case(generator, 6, 5, torch.float32)
            _check_value(contrastive_loss, a, b, y.reshape(-1, 1).float(), margin, f"random embeddings, margin={margin}")
        a, b, y = _random_case(generator, 7, 8, torch.float64)
        _check_value(contrastive_loss, a, b, y.reshape(-1, 1), None, "float64 embeddings")
        a, b, y = _random_case(generator, 64, 256, torch.float32, spread=0.15, nonnegative=True)
        _check_value(contrastive_loss, a, b, y.reshape(-1, 1).float(), None, "a batch of 64 non-negative 256-d embeddings")
        a, b, y = _random_case(generator, 5, 4, torch.float32)
        _check_value(contrastive_loss, a, b, y.long(), None, "integer labels of shape [B]")
        _check_value(contrastive_loss, a, b, torch.zeros(5, 1), None, "all pairs same-class")
        _check_value(contrastive_loss, a, b, torch.ones(5, 1), 1.5, "all pairs different-class, margin=1.5")
        a, b, _ = _random_case(generator, 1, 3, torch.float32)
        _check_value(contrastive_loss, a, b, torch.ones(1, 1), 4.0, "a batch of one different-class pair")
    passed("contrastive_loss: values match a plain loop (mean of (1 - y)·d² + y·max(margin - d, 0)²)"
           + (" [with hidden cases]" if hidden else ""))


def _check_shapes_case(loss_fn: Any, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor, what: str) -> None:
    flat = label.reshape(-1)
    column = label.reshape(-1, 1)
    results = []
    for name, y in (("[B]", flat), ("[B, 1]", column)):
        result = _call(loss_fn, out1, out2, y, None)
        where = f"{what}, label of shape {name}: " + _input_text(out1, out2, y, None)
        if not isinstance(result, torch.Tensor):
            fail("contrastive_loss returns a tensor", input=where, expected="a 0-d tensor", got=type_name(result),
                 hint="do not call .item() or float() inside the loss: backward() needs the tensor")
        if result.dim() != 0:
            hint = None
            if result.dim() == 2 and tuple(result.shape) == (out1.shape[0],) * 2:
                hint = ("the [B,1] label broadcast against [B] distances gives a [B,B] matrix (or a [B] label against "
                        "[B, 1] distances): bring label and distances to the same shape, e.g. label.view(-1)")
            elif result.numel() == 1:
                hint = ("the mean of a [B, 1] tensor with keepdim, or a [1]-shaped result: "
                        "return a 0-d tensor (.mean() of a [B] tensor)")
            elif result.numel() == out1.shape[0]:
                hint = "take the mean over the batch (.mean())"
            fail("contrastive_loss returns a 0-d tensor (a scalar)", input=where, expected="shape []",
                 got=f"shape {list(result.shape)}", hint=hint)
        if not result.dtype.is_floating_point:
            fail("the loss is a floating-point tensor", input=where, expected="a float dtype", got=str(result.dtype))
        results.append(float(result.detach().double()))
    if probing():
        return
    expected = loop_loss(out1, out2, flat)
    allowed = allowed_error(out1, out2, expected, 2.0, out1.dtype)
    for name, value in zip(("[B]", "[B, 1]"), results):
        if abs(value - expected) > allowed:
            broadcast = [c for m, c in _mistakes(out1, out2, column, 2.0) if "broadcast" in m][0]
            hint = None
            if abs(value - broadcast) <= allowed and abs(broadcast - expected) > allowed:
                hint = ("the [B,1] label broadcast against [B] distances gives a [B,B] matrix: flatten the label "
                        "(label.view(-1)), or use keepdim distances [B, 1] with a [B, 1] label")
            fail("labels of shape [B] and [B, 1] give the same, correct loss", input=f"{what}, label of shape {name}: "
                 + _input_text(out1, out2, flat if name == "[B]" else column, None),
                 expected=f"{expected:.6g}", got=f"[B] → {results[0]:.6g}, [B, 1] → {results[1]:.6g}", hint=hint)


@check
def check_loss_label_shapes(contrastive_loss: Any, hidden: bool = False) -> None:
    """Labels ``[B]`` and ``[B, 1]`` give the same scalar; the result is a 0-d tensor; a batch of one works."""
    generator = generator_for(10)
    a, b, y = _random_case(generator, 4, 3, torch.float32)
    _check_shapes_case(contrastive_loss, a, b, y.float(), "a batch of 4")
    a, b, _ = _random_case(generator, 1, 3, torch.float32, spread=0.3)
    _check_shapes_case(contrastive_loss, a, b, torch.ones(1), "a batch of 1, different classes")
    if hidden:
        _check_shapes_case(contrastive_loss, a, b, torch.zeros(1), "a batch of 1, same class")
        a, b, y = _random_case(generator, 9, 7, torch.float32)
        _check_shapes_case(contrastive_loss, a, b, y.float(), "a batch of 9")
        a, b, y = _random_case(generator, 5, 2, torch.float64)
        _check_shapes_case(contrastive_loss, a, b, y, "a batch of 5 in float64")
    passed("contrastive_loss: a 0-d tensor, the same for labels [B] and [B, 1], also for a batch of one"
           + (" [with hidden cases]" if hidden else ""))


def _backward(loss: torch.Tensor, out1: torch.Tensor, out2: torch.Tensor) -> tuple[Any, Any]:
    """``loss.backward()``, then the gradients it left on both embeddings."""
    loss.backward()
    return out1.grad, out2.grad


def _check_margin_value(value: float, a: torch.Tensor, b: torch.Tensor, label: torch.Tensor, margin: float | None,
                        dtype: torch.dtype) -> None:
    m = 2.0 if margin is None else margin
    expected = loop_loss(a, b, label, m)
    allowed = allowed_error(a, b, expected, m, dtype)
    if abs(value - expected) > allowed:
        hint = None
        wrong_margin = loop_loss(a, b, label, 2.0)
        if margin is not None and abs(value - wrong_margin) <= allowed and abs(wrong_margin - expected) > allowed:
            hint = f"the margin argument is ignored: use `margin`, not 2.0 (called with margin={m:g})"
        fail(f"the loss honours the margin argument (margin={m:g})", input=_input_text(a, b, label, margin),
             expected=f"{expected:.6g}", got=f"{value:.6g}", hint=hint)


def _gradient_case(loss_fn: Any, generator: torch.Generator, batch: int, dim: int, margin: float | None,
                   dtype: torch.dtype = torch.float64) -> None:
    m = 2.0 if margin is None else margin
    # Keep d away from 0 (where the square root's gradient is undefined) and from the margin (the hinge's kink).
    for _ in range(1000):
        a, b, y = _random_case(generator, batch, dim, torch.float64, spread=0.5 * m / math.sqrt(dim) * 1.4)
        d = (a - b).norm(dim=1)
        if bool((d > 0.3).all()) and bool(((d - m).abs() > 0.05).all()) and (batch == 1 or bool((y[d < m] == 1).any())):
            break
    a, b = a.to(dtype), b.to(dtype)
    label = y.reshape(-1, 1).to(torch.float32)
    a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    a2, b2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    where = _input_text(a, b, label, margin)
    result = _call(loss_fn, a1, b1, label, margin)
    value = _scalar(result, a, b, label, margin)
    if not probing():  # the expected value is the judge's to compute
        _check_margin_value(value, a, b, label, margin, dtype)
    if not result.requires_grad:
        fail("the loss can be differentiated with respect to the embeddings", input=where,
             expected="a tensor with requires_grad=True", got="a tensor without gradient",
             hint="the loss is not connected to out1/out2: no .item(), .detach(), torch.tensor(...) or NumPy inside")
    grads = run_student(EXERCISE, "loss.backward()", _backward, result, a1, b1)
    if probing():
        return  # the reference's gradients are the judge's to compute
    from solutions.loss import contrastive_loss as reference

    reference(a2, b2, label, m).backward()
    rtol, atol = tolerance(dtype)
    for name, got, want in (("out1", grads[0], a2.grad), ("out2", grads[1], b2.grad)):
        if got is None:
            fail(f"the gradient reaches {name}", input=where, expected=describe(want), got="None",
                 hint="the loss is not connected to the embeddings: no .item(), .detach() or NumPy inside")
        size = float(want.abs().max())
        limit = 1e-4 * max(size, 1.0) + atol + 100 * rtol * size
        if not bool(torch.isfinite(got).all()) or float((got.double() - want.double()).abs().max()) > limit:
            fail(f"the gradient with respect to {name} matches the reference's ({dtype})", input=where,
                 expected=describe(want), got=describe(got), hint=None)


@check
def check_loss_gradients(contrastive_loss: Any, hidden: bool = False) -> None:
    """float64 gradients w.r.t. both embeddings match the reference's, for the default margin and margins 1 and 3."""
    generator = generator_for(11)
    _gradient_case(contrastive_loss, generator, 6, 4, None)
    _gradient_case(contrastive_loss, generator, 6, 4, 1.0)
    _gradient_case(contrastive_loss, generator, 6, 4, 3.0)
    if hidden:
        _gradient_case(contrastive_loss, generator, 1, 3, None)
        _gradient_case(contrastive_loss, generator, 10, 16, 1.5)
        _gradient_case(contrastive_loss, generator, 8, 32, 2.0, dtype=torch.float32)
    passed("contrastive_loss: gradients match the reference's, and the margin argument is honoured (margins 1, 2, 3)"
           + (" [with hidden cases]" if hidden else ""))
