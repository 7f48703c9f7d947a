"""Checks for lesson 05: ``get_device()`` and ``train_one_epoch(net, loader, optimizer, device, margin=2.0,
log_every=10)``.

The training checks use a tiny network with ``forward_ind``/``forward`` (an MLP with a layer that, like
dropout or batch norm, computes differently in eval mode, so that a missing ``net.train()`` shows) and a
loader that is a plain list of batches
``(img1 [B, 1, 28, 28], img2, label [B, 1])``. The student's loop runs on one copy of the network
and optimizer, the reference ``solutions.train.train_one_epoch`` on an identical copy, and the
parameters afterwards must agree. When they do not, the usual mistakes are replayed to name the cause.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from .. import syllabus
from . import questions
from .report import check, describe, differs, fail, passed, run_student, to_float, type_name
from .transcript import generator_for, judge_only, probing

DEVICE_EXERCISE = syllabus.label("5.1")
TRAIN_EXERCISE = syllabus.label("5.2")
ZERO_GRAD_QUESTION = "weight_without_zero_grad (question 5.3)"
LOGGED_QUESTION = "logged_losses (question 5.4)"
CPU = torch.device("cpu")
SIMULATED_GPU = "a simulated GPU (the check pretends CUDA is there)"


# ---------------------------------------------------------------- get_device


@contextlib.contextmanager
def simulated_devices(cuda: bool, mps: bool) -> Iterator[None]:
    """Pretend that a CUDA GPU and/or Apple MPS is (or is not) available, for the checks of ``get_device``."""
    accelerator = torch.device("cuda") if cuda else torch.device("mps") if mps else None
    patches: list[tuple[Any, str, Any]] = [
        (torch.cuda, "is_available", lambda: cuda),
        (torch.cuda, "device_count", lambda: int(cuda)),
        (torch.backends.mps, "is_available", lambda: mps),
        (torch.backends.mps, "is_built", lambda: mps),
    ]
    if cuda:  # what lesson 5 itself asks of a GPU: its name (a loop may print it)
        patches += [
            (torch.cuda, "current_device", lambda: 0),
            (torch.cuda, "get_device_name", lambda *a, **k: SIMULATED_GPU),
            (torch.cuda, "get_device_properties", lambda *a, **k: SimpleNamespace(name=SIMULATED_GPU)),
        ]
    if hasattr(torch, "accelerator"):
        patches += [
            (torch.accelerator, "is_available", lambda *a, **k: accelerator is not None),
            (torch.accelerator, "current_accelerator", lambda *a, **k: accelerator),
            (torch.accelerator, "device_count", lambda *a, **k: int(accelerator is not None)),
        ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches if hasattr(obj, name)]
    try:
        for obj, name, value in patches:
            if hasattr(obj, name):
                setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def _device_case(get_device: Any, cuda: bool, mps: bool, simulated: bool) -> None:
    situation = (
        "CUDA "
        + ("available" if cuda else "not available")
        + ", MPS "
        + ("available" if mps else "not available")
        + (" (simulated)" if simulated else " (this machine)")
    )
    call = f"get_device() with {situation}"
    if simulated:
        with simulated_devices(cuda, mps):
            device = run_student(DEVICE_EXERCISE, call, get_device)
    else:
        device = run_student(DEVICE_EXERCISE, call, get_device)
    if not isinstance(device, torch.device):
        fail(
            "get_device() returns a torch.device",
            input=situation,
            expected="torch.device(...)",
            got=type_name(device),
            hint="wrap the name: torch.device('cuda'), not the string 'cuda'"
            if isinstance(device, str)
            else None,
        )
    if cuda:
        allowed = {"cuda"}
        expected = "torch.device('cuda')"
    elif mps:
        allowed = {"mps", "cpu"}
        expected = "torch.device('mps') (or 'cpu')"
    else:
        allowed = {"cpu"}
        expected = "torch.device('cpu')"
    if device.type not in allowed or (device.type == "cuda" and device.index not in (None, 0)):
        hint = None
        if device.type == "cuda" and not cuda:
            hint = "never assume a GPU: check torch.cuda.is_available() first"
        elif device.type == "cpu" and cuda:
            hint = "use the GPU when torch.cuda.is_available() is True"
        elif device.type == "mps" and cuda:
            hint = "check CUDA before MPS"
        fail(
            "get_device() picks CUDA if available, else MPS, else the CPU",
            input=situation,
            expected=expected,
            got=repr(device),
            hint=hint,
        )


@check
def check_get_device(get_device: Any, hidden: bool = False) -> None:
    """CUDA when available, else MPS (or the CPU), else the CPU; a ``torch.device``."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    _device_case(get_device, cuda, mps, simulated=False)
    _device_case(get_device, True, False, simulated=True)
    _device_case(get_device, False, False, simulated=True)
    if hidden:
        _device_case(get_device, False, True, simulated=True)
        _device_case(get_device, True, True, simulated=True)
    passed(
        "get_device: a torch.device, CUDA when available, else MPS or the CPU"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- tiny problems


class HalvedInEval(nn.Module):
    """A layer that, like Dropout or batch norm, computes differently in eval mode (it halves its input there).

    Unlike batch norm it works image by image, so that a loop may embed a batch's two images in one call
    (``forward_ind(torch.cat([img1, img2]))``, lesson 5's section 10) or in two, as it likes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in training mode, ``x / 2`` in eval mode."""
        return x if self.training else 0.5 * x


class TinySiamese(nn.Module):
    """A small stand-in for ``SiameseNetwork``: the same interface, a few thousand parameters."""

    def __init__(self, hidden: int = 16, embedding_dim: int = 4, mode_dependent: bool = False) -> None:
        super().__init__()
        # No biases: a bias shifts both images of a pair alike, so it mostly cancels in out1 - out2 and its
        # gradient is 0 up to rounding; Adam turns rounding noise into full steps, and a loop that sums in
        # another order (both images in one call, say) would seem to train differently.
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(28 * 28, hidden, bias=False)]
        if mode_dependent:
            layers.append(HalvedInEval())
        layers += [nn.ReLU(), nn.Linear(hidden, embedding_dim, bias=False)]
        self.body = nn.Sequential(*layers)

    def forward_ind(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of one batch of images."""
        return self.body(x)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of both images of each pair, with the same weights."""
        return self.forward_ind(img1), self.forward_ind(img2)


def random_batches(
    generator: torch.Generator, sizes: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Batches ``(img1, img2, label [B, 1] float32)`` of random images, as a DataLoader over the pair dataset gives."""
    batches = []
    for size in sizes:
        img1 = torch.rand(size, 1, 28, 28, generator=generator)
        img2 = torch.rand(size, 1, 28, 28, generator=generator)
        label = (torch.rand(size, 1, generator=generator) < 0.5).float()
        if size >= 2:  # at least one pair of each kind
            label[0, 0], label[1, 0] = 0.0, 1.0
        batches.append((img1, img2, label))
    return batches


def _new_net(
    seed: int, mode_dependent: bool = False, hidden: int = 16, embedding_dim: int = 4
) -> TinySiamese:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinySiamese(hidden, embedding_dim, mode_dependent)


class NotOnDevice(torch.Tensor):
    """A batch tensor as a loader hands it out: not yet on the training device.

    On a CPU-only machine a loop that forgets ``.to(device)`` runs exactly like a correct one; with these,
    it fails as it would on a GPU. Alone, such a tensor can be reshaped or converted (the results stay
    "not on the device"); ``.to(device)``, ``.to(tensor)``, ``.type_as(tensor)`` with a tensor on the device
    (they move it there on a GPU) or any call given a ``device`` return a plain tensor; meeting a plain
    tensor (the network's weights, say) raises PyTorch's own device error.
    """

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        flat = [*args, *kwargs.values()]
        moving = "device" in kwargs or (
            func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.type_as)
            and any(
                isinstance(a, (torch.device, str, int))
                or (isinstance(a, torch.Tensor) and not isinstance(a, cls))
                for a in flat[1:]
            )
        )
        mixed = any(
            isinstance(a, torch.Tensor) and not isinstance(a, cls) and a.dim() > 0 for a in _tensors(flat)
        )
        if mixed and not moving:
            raise RuntimeError(
                "Expected all tensors to be on the same device, but a batch from the loader was "
                "never moved to the training device"
            )
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        return _plain(result) if moving else _keep_off_device(result, cls)


def _tensors(values: list) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += _tensors(list(value))
    return found


def _plain(result: Any) -> Any:
    if isinstance(result, torch.Tensor):
        return result.as_subclass(torch.Tensor)
    return type(result)(_plain(r) for r in result) if isinstance(result, (list, tuple)) else result


def _keep_off_device(result: Any, cls: type) -> Any:
    if isinstance(result, torch.Tensor) and not isinstance(result, cls):
        return result.as_subclass(cls)
    if isinstance(result, (list, tuple)):
        return type(result)(_keep_off_device(r, cls) for r in result)
    return result


def off_device(batches: list) -> list:
    """``batches`` as a loader on another device hands them out (see ``NotOnDevice``)."""
    return [tuple(t.as_subclass(NotOnDevice) for t in batch) for batch in batches]


def _trained(
    train_one_epoch: Any,
    net: nn.Module,
    batches: list,
    optimizer: torch.optim.Optimizer,
    kwargs: dict[str, Any],
    keep_parameters: bool,
) -> tuple[Any, list[torch.Tensor] | None]:
    """The student's epoch on ``net``, and (if asked) the parameters it left: the judge needs them as an answer."""
    result = train_one_epoch(net, off_device(batches), optimizer, CPU, **kwargs)
    return result, [p.detach().clone() for p in net.parameters()] if keep_parameters else None


def _call_train(
    train_one_epoch: Any,
    net: nn.Module,
    batches: list,
    optimizer: torch.optim.Optimizer,
    margin: float | None,
    log_every: int | None,
    keep_parameters: bool = False,
) -> Any:
    """``train_one_epoch`` on ``net``; with ``keep_parameters``, ``net`` holds the parameters it left afterwards."""
    kwargs: dict[str, Any] = {}
    args_text = "net, loader, optimizer, device"
    if margin is not None:
        kwargs["margin"] = margin
        args_text += f", margin={margin:g}"
    if log_every is not None:
        kwargs["log_every"] = log_every
        args_text += f", log_every={log_every}"
    result, parameters = run_student(
        TRAIN_EXERCISE,
        f"train_one_epoch({args_text}) on a tiny network and {len(batches)} batches",
        _trained,
        train_one_epoch,
        net,
        batches,
        optimizer,
        kwargs,
        keep_parameters,
    )
    if keep_parameters:  # while judging, the recorded parameters take the place of the student's updates
        _set_parameters(net, parameters)
    return result


def _set_parameters(net: nn.Module, values: Any) -> None:
    mine = list(net.parameters())
    if (
        not isinstance(values, list)
        or len(values) != len(mine)
        or not all(isinstance(v, torch.Tensor) and v.shape == p.shape for v, p in zip(values, mine))
    ):
        fail(
            "train_one_epoch keeps the network's parameters (same number and shapes)",
            expected=f"{len(mine)} parameter tensors",
            got=type_name(values),
        )
    with torch.no_grad():
        for p, v in zip(mine, values):
            p.copy_(v)


@judge_only
def _reference_loop(
    net: nn.Module,
    batches: list,
    optimizer: torch.optim.Optimizer,
    margin: float,
    log_every: int = 10,
    mistake: str | None = None,
) -> list[float]:
    """The reference loop, or the same loop with one ``mistake`` (to name the student's)."""
    from solutions.loss import contrastive_loss

    if mistake != "no_train":
        net.train()
    history = []
    for step, (img1, img2, label) in enumerate(batches):
        out1, out2 = net(img1, img2)
        loss = contrastive_loss(out1, out2, label, 2.0 if mistake == "margin" else margin)
        if mistake != "no_zero_grad":
            optimizer.zero_grad()
        loss.backward()
        if mistake != "no_step":
            optimizer.step()
        if step % log_every == 0:
            history.append(loss.item())
    return history


MISTAKES = {
    "no_zero_grad": "missing zero_grad: gradients accumulate over the steps "
    "(call optimizer.zero_grad() before loss.backward())",
    "no_step": "the parameters never change: no optimizer.step(), or step() runs while the gradients are zero "
    "(zero_grad() between backward() and step() erases them; step() right after zero_grad() comes "
    "before backward())",
    "margin": "the margin argument is ignored (2.0 used): pass `margin` to contrastive_loss",
    "no_train": "net.train() is missing: put the network in training mode at the start of the epoch",
}


@judge_only
def _parameter_gap(a: nn.Module, b: nn.Module, start: nn.Module) -> float:
    """Largest parameter difference between ``a`` and ``b``, relative to how far ``b`` moved from ``start``."""
    gap = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
    moved = max(float((q - s).abs().max()) for q, s in zip(b.parameters(), start.parameters()))
    return gap / max(moved, 1e-12)


def _history(result: Any, expected_length: int, log_every: int, steps: int, where: str) -> list[float]:
    if not isinstance(result, list):
        hint = "return the list of logged losses (return loss_history)" if result is None else None
        fail(
            "train_one_epoch returns a list of floats",
            input=where,
            expected="a list",
            got=type_name(result),
            hint=hint,
        )
    for value in result:
        if isinstance(value, torch.Tensor):
            fail(
                "the loss history holds Python floats",
                input=where,
                expected="floats (loss.item())",
                got=describe(value),
                hint="append loss.item(), not the tensor (a tensor keeps the whole graph alive)",
            )
        if not isinstance(value, float):
            fail(
                "the loss history holds Python floats",
                input=where,
                expected="floats (loss.item())",
                got=type_name(value),
            )
    if len(result) != expected_length:
        hint = None
        if len(result) == steps and log_every > 1:
            hint = f"logged every step: append only when step % log_every == 0 (log_every={log_every})"
        elif len(result) == steps // log_every:
            hint = "log when step % log_every == 0, counting the steps from 0 (steps 0, log_every, 2·log_every, ...)"
        elif len(result) == 0:
            hint = "nothing was logged: append loss.item() when step % log_every == 0"
        elif log_every != 10 and len(result) == math.ceil(steps / 10):
            hint = "the log_every argument is ignored (10 used)"
        fail(
            f"one logged loss every {log_every} steps (steps 0, {log_every}, ...)",
            input=where,
            expected=f"{expected_length} values for {steps} steps",
            got=f"{len(result)} values",
            hint=hint,
        )
    return result


@judge_only
def _first_loss(net: nn.Module, batches: list, margin: float, lr: float = 0.0) -> float:
    """The loss of the first batch under ``net``'s weights; with ``lr``, after one reference step on it."""
    from solutions.loss import contrastive_loss

    net = copy.deepcopy(net).train()
    if lr:
        _reference_loop(net, batches[:1], torch.optim.SGD(net.parameters(), lr=lr), margin)
    with torch.no_grad():
        out1, out2 = net(batches[0][0], batches[0][1])
        return float(contrastive_loss(out1, out2, batches[0][2], margin))


def _history_case(
    train_one_epoch: Any,
    generator: torch.Generator,
    steps: int,
    margin: float | None,
    log_every: int | None,
    compare_all: bool = False,
    lr: float = 0.0,
) -> None:
    net = _new_net(int(torch.randint(1 << 30, (1,), generator=generator)))
    batches = random_batches(generator, [4] * steps)
    # lr = 0: the weights never move, so each logged value is its batch's loss under the first weights
    # whatever the loop does with zero_grad() and step() (the update is check_train_step's property).
    # lr > 0 only tells whether the first value was measured before the first update, which needs nothing
    # of the update but that it changes the weights.
    if compare_all and lr:
        raise ValueError("only the first value of a moving network depends on the loop's logging alone")
    make = lambda model: torch.optim.SGD(model.parameters(), lr=lr)  # noqa: E731
    m = 2.0 if margin is None else margin
    k = 10 if log_every is None else log_every
    start = copy.deepcopy(net)
    where = (
        f"{steps} batches of 4 pairs, margin={m:g}, log_every={k}"
        + (" (defaults)" if margin is None and log_every is None else "")
        + f", SGD(lr={lr:g})"
    )
    result = _call_train(train_one_epoch, net, batches, make(net), margin, log_every)
    history = _history(result, math.ceil(steps / k), k, steps, where)
    if probing():
        return  # the reference's losses are the judge's to compute
    expected_first = _first_loss(start, batches, m)
    if differs(history[0], expected_first, 1e-5 * max(1.0, abs(expected_first))):
        hint = None
        if margin is not None and abs(history[0] - _first_loss(start, batches, 2.0)) <= 1e-5 * max(
            1.0, abs(history[0])
        ):
            hint = MISTAKES["margin"]
        elif lr and abs(history[0] - _first_loss(start, batches, m, lr)) <= 1e-5 * max(1.0, abs(history[0])):
            hint = (
                "this is the batch's loss after its update: log the loss you called backward() on "
                "(loss.item()), not one computed again after optimizer.step()"
            )
        fail(
            "the first logged value is the loss of the first batch, before any update",
            input=where,
            expected=f"{expected_first:.6g}",
            got=f"{history[0]:.6g}",
            hint=hint,
        )
    if compare_all:
        reference_net = copy.deepcopy(start)
        expected = _reference_loop(reference_net, batches, make(reference_net), m, k)
        for got, want in zip(history, expected):
            if differs(got, want, 1e-4 * max(1.0, abs(want))):
                fail(
                    "every logged value is the loss of its batch (steps 0, log_every, ...)",
                    input=where,
                    expected=describe(expected),
                    got=describe(history),
                )


@check
def check_train_history(train_one_epoch: Any, hidden: bool = False) -> None:
    """A list of Python floats, ``ceil(steps / log_every)`` long, starting with the first batch's loss before
    any update."""
    generator = generator_for(12)
    _history_case(train_one_epoch, generator, 12, None, None)
    _history_case(train_one_epoch, generator, 12, None, 3)
    _history_case(train_one_epoch, generator, 4, None, 1)
    _history_case(train_one_epoch, generator, 3, None, 1, lr=0.5)
    if hidden:
        _history_case(train_one_epoch, generator, 5, None, 1, compare_all=True)
        _history_case(train_one_epoch, generator, 11, None, 5, compare_all=True)
        _history_case(train_one_epoch, generator, 1, None, 10)
    passed(
        "train_one_epoch: returns the batch losses (Python floats, each before its update) of steps 0, "
        "log_every, 2·log_every, ..." + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- one epoch = the reference's updates


def _step_case(
    train_one_epoch: Any,
    generator: torch.Generator,
    sizes: list[int],
    margin: float,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    optimizer_text: str,
) -> None:
    start = _new_net(int(torch.randint(1 << 30, (1,), generator=generator)), mode_dependent=True)
    start.eval()  # the loop must switch to training mode itself
    batches = random_batches(generator, sizes)
    student_net, reference_net = copy.deepcopy(start), copy.deepcopy(start)
    _call_train(
        train_one_epoch, student_net, batches, make_optimizer(student_net), margin, None, keep_parameters=True
    )
    if probing():
        return
    _reference_loop(reference_net, batches, make_optimizer(reference_net), margin)
    gap = _parameter_gap(student_net, reference_net, start)
    if gap <= 1e-3:
        return
    hint = None
    for mistake, message in MISTAKES.items():
        variant = copy.deepcopy(start)
        try:
            _reference_loop(variant, batches, make_optimizer(variant), margin, mistake=mistake)
        except Exception:  # a mistake that PyTorch itself rejects cannot be the student's silent one
            continue
        if (
            _parameter_gap(student_net, variant, start) <= 1e-3
            and _parameter_gap(variant, reference_net, start) > 1e-2
        ):
            hint = message
            break
    if hint is None and _parameter_gap(student_net, start, reference_net) == 0:
        hint = MISTAKES["no_step"]
    fail(
        "after one epoch the parameters equal those of the reference loop (forward, loss, zero_grad, backward, step)",
        input=(
            f"a tiny network in eval mode, {len(batches)} batches of sizes {sizes}, "
            f"{optimizer_text}, margin={margin:g}"
        ),
        expected="the reference's parameters",
        got=f"parameters off by {gap:.3g} × the size of the reference's update",
        # The hint names what to check, not the loop itself: the loop is the exercise.
        hint=hint
        or "go through section 3's update for each batch: is the network in training mode, are the "
        "batch's tensors on the device, does the loss use `margin`, are the old gradients cleared "
        "before the new ones are computed, and does every batch take exactly one step?",
    )


@check
def check_train_step(train_one_epoch: Any, hidden: bool = False) -> None:
    """The parameters after one epoch equal those after the reference loop from identical copies."""
    generator = generator_for(13)
    sgd = lambda model: torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # noqa: E731
    _step_case(train_one_epoch, generator, [8, 8, 6], 1.0, sgd, "SGD(lr=0.1, momentum=0.9)")
    if hidden:
        adam = lambda model: torch.optim.Adam(model.parameters(), lr=1e-2)  # noqa: E731
        plain = lambda model: torch.optim.SGD(model.parameters(), lr=0.2)  # noqa: E731
        _step_case(train_one_epoch, generator, [6, 6, 6], 3.0, adam, "Adam(lr=0.01)")
        _step_case(train_one_epoch, generator, [5, 7], 2.0, plain, "SGD(lr=0.2)")
    passed(
        "train_one_epoch: the same updates as the reference loop (train mode, zero_grad, backward, step, margin)"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- it learns


def separable_pairs(
    generator: torch.Generator, num_batches: int, batch_size: int, num_classes: int = 4, noise: float = 0.2
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Balanced pairs of noisy class templates (easy to separate), as batches."""
    from data_utils.synthetic import class_templates

    templates = class_templates()[:num_classes].unsqueeze(1)  # [C, 1, 28, 28]
    batches = []
    for _ in range(num_batches):
        c1 = torch.randint(num_classes, (batch_size,), generator=generator)
        different = torch.arange(batch_size) % 2 == 1
        shift = torch.randint(1, num_classes, (batch_size,), generator=generator)
        c2 = torch.where(different, (c1 + shift) % num_classes, c1)
        img1 = templates[c1] + noise * torch.randn(batch_size, 1, 28, 28, generator=generator)
        img2 = templates[c2] + noise * torch.randn(batch_size, 1, 28, 28, generator=generator)
        batches.append((img1, img2, different.float().unsqueeze(1)))
    return batches


@judge_only
def _mean_loss(net: nn.Module, batches: list, margin: float) -> float:
    from solutions.loss import contrastive_loss

    net.eval()
    with torch.no_grad():
        return sum(float(contrastive_loss(*net(a, b), y, margin)) for a, b, y in batches) / len(batches)


def _learns_case(
    train_one_epoch: Any,
    generator: torch.Generator,
    epochs: int,
    margin: float | None,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    optimizer_text: str,
) -> None:
    m = 2.0 if margin is None else margin
    net = _new_net(int(torch.randint(1 << 30, (1,), generator=generator)), hidden=32, embedding_dim=8)
    batches = separable_pairs(generator, 8, 16)
    optimizer = make_optimizer(net)
    net.eval()  # as measuring the loss leaves it: the loop must switch to training mode itself
    before = None if probing() else _mean_loss(net, batches, m)
    for epoch in range(epochs):
        history = _call_train(
            train_one_epoch, net, batches, optimizer, margin, None, keep_parameters=epoch == epochs - 1
        )
        values = [to_float(v) for v in history] if isinstance(history, list) else []
        if not all(
            v is not None and math.isfinite(v) for v in values
        ):  # floats are check_train_history's property
            fail("the logged losses are finite numbers", input=f"epoch {epoch + 1}", got=describe(history))
    if probing():
        return  # the loss before and after is the judge's to compute
    after = _mean_loss(net, batches, m)
    if not after <= 0.5 * before:
        fail(
            "a few epochs on an easy problem lower the loss clearly (at least halve it)",
            input=f"a tiny network, 8 batches of 16 pairs of noisy templates of 4 classes, {optimizer_text}, "
            f"{epochs} epochs, margin={m:g}",
            expected=f"mean loss below {0.5 * before:.4g} (it was {before:.4g} before training)",
            got=f"{after:.4g}",
            hint="is optimizer.step() called after loss.backward()? is zero_grad() called every step? "
            "is the loss computed on the network's outputs for this batch?",
        )


@check
def check_train_learns(train_one_epoch: Any, hidden: bool = False) -> None:
    """On a tiny separable problem a few epochs at least halve the loss."""
    generator = generator_for(14)
    adam = lambda model: torch.optim.Adam(model.parameters(), lr=3e-3)  # noqa: E731
    _learns_case(train_one_epoch, generator, 3, None, adam, "Adam(lr=0.003)")
    if hidden:
        sgd = lambda model: torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)  # noqa: E731
        _learns_case(train_one_epoch, generator, 3, 1.0, sgd, "SGD(lr=0.02, momentum=0.9)")
    passed(
        "train_one_epoch: a few epochs on an easy problem clearly lower the loss"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- questions 5.3 and 5.4


@judge_only
def two_steps_without_zero_grad(a: float, w: float, lr: float) -> float:
    """``w₂ = w₁ - lr·(g₀ + g₁)`` with ``g = 2a²w``: the second step uses the sum of both gradients."""
    g0 = 2 * a**2 * w
    w1 = w - lr * g0
    return w1 - lr * (g0 + 2 * a**2 * w1)


ZERO_GRAD_WHY = (
    "the gradient of (a·w)² is 2a²·w. The first step is w₁ = w - lr·2a²·w. Without zero_grad(), the second "
    "backward() adds 2a²·w₁ to the gradient already stored, so the second step is w₂ = w₁ - lr·(2a²·w + "
    "2a²·w₁): it still pushes with the first step's gradient"
)


@check
def check_weight_without_zero_grad(weight_without_zero_grad: Any, hidden: bool = False) -> None:
    """Question 5.3: two SGD steps whose gradients pile up, for parameters drawn per run."""
    generator = generator_for(40)
    cases = [
        (
            questions.draw(generator, 0.5, 3.0),
            questions.draw(generator, -2.0, 2.0),
            questions.draw(generator, 0.01, 0.1),
        )
        for _ in range(3 if not hidden else 5)
    ]
    answers = questions.answers(
        ZERO_GRAD_QUESTION, weight_without_zero_grad, "weight_without_zero_grad", cases
    )
    if probing():
        return
    questions.verdict(
        "weight_without_zero_grad",
        answers,
        cases,
        two_steps_without_zero_grad,
        ZERO_GRAD_WHY,
        "the weight after two steps without zero_grad()" + (" [with hidden cases]" if hidden else ""),
    )


@judge_only
def logged_count(num_pairs: int, batch_size: int, log_every: int) -> int:
    """``ceil(ceil(n / b) / k)``: steps 0, k, 2k, ... among the epoch's ``ceil(n / b)`` steps."""
    return math.ceil(math.ceil(num_pairs / batch_size) / log_every)


LOGGED_WHY = (
    "an epoch of n pairs in batches of b has ceil(n / b) steps: the DataLoader keeps the last, smaller batch, "
    "and it is a step like the others. Counting steps from 0, the logged ones are 0, k, 2k, ... below that "
    "number: ceil(steps / k) of them"
)


@check
def check_logged_losses(logged_losses: Any, hidden: bool = False) -> None:
    """Question 5.4: the length of an epoch's loss history, for sizes drawn per run (often with a last,
    smaller batch)."""
    generator = generator_for(41)
    cases = [
        (
            questions.draw_int(generator, 100, 5_000),
            questions.draw_int(generator, 8, 128),
            questions.draw_int(generator, 2, 20),
        )
        for _ in range(3 if not hidden else 5)
    ]
    batch_size = cases[0][1]
    cases.append(
        (batch_size * questions.draw_int(generator, 10, 40), batch_size, 10)
    )  # one without a partial batch
    answers = questions.answers(LOGGED_QUESTION, logged_losses, "logged_losses", cases)
    if probing():
        return
    questions.verdict(
        "logged_losses",
        answers,
        cases,
        logged_count,
        LOGGED_WHY,
        "the number of logged losses for every epoch size" + (" [with hidden cases]" if hidden else ""),
    )
