"""Checks for lesson 03: ``EmbeddingHead()`` and ``SiameseNetwork()`` (one backbone and one head for both images).

The head maps features ``[B, 256, 3, 3]`` → flatten → Linear(2304, 1024) → ReLU → Linear(1024, 256)
→ ReLU → ``[B, 256]``; it is compared with the reference after giving both the same seeded weights.
The network has ``forward_ind(x)`` (one batch of images → embeddings) and ``forward(img1, img2)`` →
``(forward_ind(img1), forward_ind(img2))``. Its checks build it around a neutral stand-in head
(``StandInHead``, one Linear(2304, 256)) put in place of the student's ``EmbeddingHead`` while it is
built, so that exercise 3.2 is graded on how the network uses a head, never on exercise 3.1 again.
A network that builds its head some other way (an inline ``nn.Sequential``) keeps it, and is compared
with the reference network instead.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import syllabus
from . import questions
from .report import (
    check,
    close,
    copy_parameters_by_order,
    count_all_parameters,
    describe,
    fail,
    images,
    max_error,
    parameter_shapes,
    passed,
    run_student,
    seed_parameters,
    type_name,
)
from .transcript import generator_for, judge_only, probing

HEAD_EXERCISE = syllabus.label("3.1")
NETWORK_EXERCISE = syllabus.label("3.2")
BACKBONE_PARAMETERS = 501_760
HEAD_PARAMETERS = 2_622_720
NETWORK_PARAMETERS = 3_124_480
BACKBONE_SHAPES = sorted([[64, 1, 5, 5], [64], [128, 64, 5, 5], [128], [256, 128, 3, 3], [256]])
HEAD_SHAPES = sorted([[1024, 2304], [1024], [256, 1024], [256]])
NETWORK_SHAPES = [
    [64, 1, 5, 5],
    [64],
    [128, 64, 5, 5],
    [128],
    [256, 128, 3, 3],
    [256],
    [1024, 2304],
    [1024],
    [256, 1024],
    [256],
]  # in the reference's order


def _make(cls: Any, exercise: str, name: str) -> nn.Module:
    net = run_student(exercise, f"{name}()", cls)
    if not isinstance(net, nn.Module):
        fail(
            f"{name}() creates an nn.Module",
            expected="an nn.Module",
            got=type(net).__name__,
            hint=f"write `class {name}(nn.Module):` and call super().__init__() first in __init__",
        )
    return net


def _features(batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Backbone-like features: non-negative, ``[B, 256, 3, 3]``, contiguous."""
    return F.relu(torch.randn(batch, 256, 3, 3, generator=generator, dtype=torch.float64)).to(dtype)


# ---------------------------------------------------------------- head


@judge_only
def _head_forward(
    x: torch.Tensor,
    params: list[torch.Tensor],
    relu1: bool = True,
    relu2: bool = True,
    channels_last: bool = False,
) -> torch.Tensor:
    w1, b1, w2, b2 = params
    flat = x.permute(0, 2, 3, 1).flatten(1) if channels_last else x.flatten(1)
    h = F.linear(flat, w1, b1)
    if relu1:
        h = F.relu(h)
    h = F.linear(h, w2, b2)
    return F.relu(h) if relu2 else h


def _call_head(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = run_student(
        HEAD_EXERCISE, f"EmbeddingHead()(features) with features of shape {list(x.shape)}", head, x
    )
    if not isinstance(out, torch.Tensor):
        fail(
            "EmbeddingHead returns one tensor",
            input=describe(x),
            expected="a tensor [B, 256]",
            got=type_name(out),
        )
    return out


def _compare_head(head: nn.Module, batch: int, dtype: torch.dtype, generator: torch.Generator) -> None:
    seed_parameters(head, generator)
    x = _features(batch, generator, dtype)
    head.eval()
    with torch.no_grad():
        out = _call_head(head, x)
    if probing():
        return  # the reference's embeddings are the judge's to compute
    from solutions.model import EmbeddingHead as Reference

    reference = Reference().to(dtype)
    copy_parameters_by_order(head, reference)
    with torch.no_grad():
        expected = reference(x)
    if tuple(out.shape) != (batch, 256):
        hint = None
        if out.dim() == 1:
            hint = (
                "the batch dimension was lost (e.g. by squeeze() or view(-1)): "
                "flatten with x.flatten(1) or x.view(x.size(0), -1)"
            )
        elif out.dim() > 2:
            hint = "flatten the features first: x.flatten(1), x.view(x.size(0), -1) or nn.Flatten()"
        fail(
            "EmbeddingHead maps [B, 256, 3, 3] features to [B, 256] embeddings",
            input=f"features of shape {list(x.shape)}",
            expected=f"shape {[batch, 256]}",
            got=f"shape {list(out.shape)}",
            hint=hint,
        )
    if out.dtype != dtype:
        fail(
            "the embeddings have the features' dtype",
            input=f"features of dtype {dtype}",
            expected=str(dtype),
            got=str(out.dtype),
        )
    if close(out, expected, dtype):
        return
    params = [p.detach() for p in reference.parameters()]
    with torch.no_grad():
        if close(out, _head_forward(x, params, channels_last=True), dtype):
            return  # flattened in another (consistent) order: an equivalent network
        hint = None
        if bool((out < 0).any()):
            hint = "forgot the last ReLU: embeddings should be non-negative (Linear(1024, 256) → ReLU)"
        elif close(out, _head_forward(x, params, relu1=False), dtype):
            hint = "missing ReLU between Linear(2304, 1024) and Linear(1024, 256)"
    fail(
        "EmbeddingHead computes flatten → Linear(2304, 1024) → ReLU → Linear(1024, 256) → ReLU",
        input=f"random features {list(x.shape)} ({dtype}), random weights in your head and the reference",
        expected=describe(expected),
        got=describe(out) + f" (largest difference {max_error(out, expected):.3g})",
        hint=hint or "compare the order of your layers with flatten → Linear → ReLU → Linear → ReLU",
    )


def _check_embedding_dim(EmbeddingHead: Any, size: int, generator: torch.Generator) -> None:
    """``EmbeddingHead(embedding_dim=size)`` gives ``[B, size]`` embeddings (exercise 3.2 builds the head this way)."""
    head = run_student(
        HEAD_EXERCISE, f"EmbeddingHead(embedding_dim={size})", EmbeddingHead, embedding_dim=size
    )
    x = _features(2, generator)
    with torch.no_grad():
        out = (
            run_student(
                HEAD_EXERCISE,
                f"EmbeddingHead(embedding_dim={size})(features) with features of shape {list(x.shape)}",
                head,
                x,
            )
            if isinstance(head, nn.Module)
            else head
        )
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, size):
        fail(
            f"EmbeddingHead(embedding_dim={size}) gives embeddings of {size} coordinates",
            input=f"features of shape {list(x.shape)}",
            expected=f"shape [2, {size}]",
            got=f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type_name(out),
            hint="use the embedding_dim argument for the last layer: nn.Linear(1024, embedding_dim)",
        )


def _check_in_features(EmbeddingHead: Any, in_features: int, size: int, generator: torch.Generator) -> None:
    """``EmbeddingHead(in_features=..., embedding_dim=...)`` sizes both layers from its arguments (a backbone of
    another shape needs another ``in_features``)."""
    call = f"EmbeddingHead(in_features={in_features}, embedding_dim={size})"
    head = run_student(HEAD_EXERCISE, call, EmbeddingHead, in_features=in_features, embedding_dim=size)
    expected = sorted([[1024, in_features], [1024], [size, 1024], [size]])
    got = parameter_shapes(head) if isinstance(head, nn.Module) else type_name(head)
    if not isinstance(head, nn.Module) or sorted(parameter_shapes(head)) != expected:
        fail(
            f"{call} has layers Linear({in_features}, 1024) and Linear(1024, {size})",
            expected=f"parameter shapes {expected}",
            got=f"parameter shapes {got}",
            hint="size the first layer from the in_features argument: nn.Linear(in_features, 1024)",
        )
    x = F.relu(torch.randn(2, in_features // 4, 2, 2, generator=generator, dtype=torch.float64)).float()
    with torch.no_grad():
        out = run_student(HEAD_EXERCISE, f"{call}(features) with features of shape {list(x.shape)}", head, x)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, size):
        fail(
            f"{call} maps features {list(x.shape)} to embeddings [2, {size}]",
            expected=f"shape [2, {size}]",
            got=f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type_name(out),
        )


@check
def check_head(EmbeddingHead: Any, hidden: bool = False) -> None:
    """Shape ``[B, 256]``, 2,622,720 parameters, and the reference's output with the same weights."""
    generator = generator_for(6)
    head = _make(EmbeddingHead, HEAD_EXERCISE, "EmbeddingHead")
    total = count_all_parameters(head)
    if total != HEAD_PARAMETERS or sorted(parameter_shapes(head)) != HEAD_SHAPES:
        hint = (
            "no parameters are registered: keep the layers as attributes or in nn.Sequential"
            if total == 0
            else "the layers are Linear(2304, 1024) and Linear(1024, 256), both with bias"
        )
        fail(
            "EmbeddingHead has 2,622,720 parameters (2304·1024 + 1024 + 1024·256 + 256)",
            expected=f"{HEAD_PARAMETERS:,} in shapes [[1024, 2304], [1024], [256, 1024], [256]]",
            got=f"{total:,} in shapes {parameter_shapes(head)}",
            hint=hint,
        )
    _compare_head(head, 4, torch.float32, generator)
    _check_embedding_dim(EmbeddingHead, 64, generator)
    if hidden:
        _compare_head(head, 1, torch.float32, generator)
        _compare_head(copy.deepcopy(head).to(torch.float64), 6, torch.float64, generator)
        _check_in_features(EmbeddingHead, 128, 16, generator)
    passed(
        "EmbeddingHead: [B, 256, 3, 3] → flatten → Linear(2304, 1024) → ReLU → Linear(1024, 256) → ReLU → "
        "[B, 256]" + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- network


class StandInHead(nn.Module):
    """The checks' neutral head for exercise 3.2: one ``Linear(in_features, embedding_dim)`` on the flattened features.

    The network checks build the student's ``SiameseNetwork`` with this in place of their ``EmbeddingHead``,
    so that exercise 3.2 is graded on how the network uses a head, whatever exercise 3.1 got right or wrong.
    """

    def __init__(self, in_features: int = 256 * 3 * 3, embedding_dim: int = 256) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, embedding_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Flatten the features, then the one linear layer."""
        return self.linear(features.flatten(1))


STAND_IN_NAME = "StandInHead"
STAND_IN_SHAPES = sorted([[256, 2304], [256]])
STAND_IN_PARAMETERS = 2304 * 256 + 256


def _namespaces(SiameseNetwork: Any) -> list[dict]:
    """The global namespaces in which the network's methods (and its base classes' methods) look names up."""
    found: list[dict] = []
    cls = getattr(SiameseNetwork, "func", SiameseNetwork)  # functools.partial
    for klass in getattr(cls, "__mro__", ()):
        if klass in (nn.Module, object):
            continue
        for attribute in vars(klass).values():
            namespace = getattr(getattr(attribute, "__func__", attribute), "__globals__", None)
            if isinstance(namespace, dict) and all(namespace is not other for other in found):
                found.append(namespace)
    return found


@contextlib.contextmanager
def stand_in_head(SiameseNetwork: Any) -> Iterator[None]:
    """While the network is built, the name ``EmbeddingHead`` means ``StandInHead`` wherever its code looks it up."""
    swapped = [ns for ns in _namespaces(SiameseNetwork) if isinstance(ns.get("EmbeddingHead"), type)]
    saved = [ns["EmbeddingHead"] for ns in swapped]
    try:
        for namespace in swapped:
            namespace["EmbeddingHead"] = StandInHead
        yield
    finally:
        for namespace, value in zip(swapped, saved):
            namespace["EmbeddingHead"] = value


def _make_network(SiameseNetwork: Any) -> nn.Module:
    """The student's ``SiameseNetwork()``, built around the checks' stand-in head."""
    with stand_in_head(SiameseNetwork):
        return _make(SiameseNetwork, NETWORK_EXERCISE, "SiameseNetwork")


def _has_stand_in(net: nn.Module) -> bool:
    """Whether the network holds the stand-in head (a network that builds its head some other way does not)."""
    return any(type(module).__name__ == STAND_IN_NAME for module in net.modules())


def _layout(net: nn.Module) -> tuple[int, list[list[int]], str]:
    """The parameter count, the parameter shapes and the description the network should have."""
    if _has_stand_in(net):
        return (
            BACKBONE_PARAMETERS + STAND_IN_PARAMETERS,
            sorted(BACKBONE_SHAPES + STAND_IN_SHAPES),
            "a CNNBackbone (501,760) and the checks' stand-in head, Linear(2304, 256) (590,080)",
        )
    return (
        NETWORK_PARAMETERS,
        sorted(NETWORK_SHAPES),
        "a CNNBackbone (501,760) and a head built without EmbeddingHead (2,622,720)",
    )


def _count_hint(total: int, expected: int, head: int) -> str | None:
    hints = {
        expected
        + BACKBONE_PARAMETERS: "two separate backbones: create one CNNBackbone and use it for both images",
        expected + head: "two separate heads: create one EmbeddingHead and use it for both images",
        2
        * expected: "two separate networks (one per image): one backbone and one head must embed both images",
        BACKBONE_PARAMETERS: "only the backbone is registered: add the EmbeddingHead as an attribute",
        head: "only the head is registered: add the CNNBackbone as an attribute",
        0: "no parameters are registered: keep the backbone and the head as attributes (self.backbone = ...)",
    }
    return hints.get(total)


def _check_count(net: nn.Module) -> None:
    total = count_all_parameters(net)
    expected, _, parts = _layout(net)
    if total != expected:
        head = expected - BACKBONE_PARAMETERS
        fail(
            f"SiameseNetwork holds one backbone and one head: {parts}",
            expected=f"{expected:,} parameters",
            got=f"{total:,}",
            hint=_count_hint(total, expected, head),
        )


def _call_forward_ind(net: nn.Module, x: torch.Tensor) -> Any:
    if not callable(getattr(net, "forward_ind", None)):
        fail(
            "SiameseNetwork has a method forward_ind(x)",
            expected="net.forward_ind(images) → embeddings",
            got="no forward_ind method",
            hint="define `def forward_ind(self, x):` (backbone, then head)",
        )
    return net.forward_ind(x)


def _forward_ind(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = run_student(
        NETWORK_EXERCISE, f"net.forward_ind(x) with x of shape {list(x.shape)}", _call_forward_ind, net, x
    )
    if not isinstance(out, torch.Tensor):
        fail(
            "forward_ind returns one tensor",
            input=describe(x),
            expected="a tensor [B, 256]",
            got=type_name(out),
        )
    return out


def _forward(net: nn.Module, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = run_student(NETWORK_EXERCISE, f"net(img1, img2) with images of shape {list(a.shape)}", net, a, b)
    if (
        not isinstance(out, (tuple, list))
        or len(out) != 2
        or not all(isinstance(o, torch.Tensor) for o in out)
    ):
        fail(
            "forward(img1, img2) returns a tuple of two embedding tensors",
            input=f"two batches of shape {list(a.shape)}",
            expected="(embeddings of img1, embeddings of img2)",
            got=type_name(out)
            if not isinstance(out, (tuple, list))
            else f"{type(out).__name__} of {len(out)} items",
            hint="return self.forward_ind(img1), self.forward_ind(img2)",
        )
    return out[0], out[1]


@judge_only
def _as_reference(module: nn.Module, Reference: type, dtype: torch.dtype) -> nn.Module:
    reference = Reference().to(dtype)
    copy_parameters_by_order(module, reference)
    return reference


@judge_only
def _submodule(net: nn.Module, shapes: list[list[int]]) -> nn.Module | None:
    """The first submodule of ``net`` whose parameters have exactly ``shapes`` (a backbone or a head)."""
    return next((m for m in net.modules() if m is not net and sorted(parameter_shapes(m)) == shapes), None)


@judge_only
def _expected_embeddings(
    net: nn.Module, x: torch.Tensor, dtype: torch.dtype
) -> tuple[list[torch.Tensor], str]:
    """What ``forward_ind(x)`` may equal: the reference backbone, then the network's head, with the network's
    weights."""
    from solutions.backbone import CNNBackbone as ReferenceBackbone
    from solutions.model import EmbeddingHead as ReferenceHead

    stand_in = _has_stand_in(net)
    head_shapes, Head = (STAND_IN_SHAPES, StandInHead) if stand_in else (HEAD_SHAPES, ReferenceHead)
    backbone, head = _submodule(net, BACKBONE_SHAPES), _submodule(net, head_shapes)
    if backbone is None or head is None:  # parts not held as modules of their own: match the weights by order
        whole = nn.Sequential(ReferenceBackbone(), Head()).to(dtype)
        copy_parameters_by_order(net, whole)
        backbone, head = whole[0], whole[1]
    features = _as_reference(backbone, ReferenceBackbone, dtype)(x)
    if stand_in:
        return (
            [_as_reference(head, StandInHead, dtype)(features)],
            "the checks' stand-in head, Linear(2304, 256), on the reference backbone's features (the same weights)",
        )
    params = [p.detach() for p in _as_reference(head, ReferenceHead, dtype).parameters()]
    both_orders = [_head_forward(features, params), _head_forward(features, params, channels_last=True)]
    return both_orders, "the reference's head(backbone(x)) with the same weights"


def _network_case(net: nn.Module, batch: int, dtype: torch.dtype, generator: torch.Generator) -> None:
    seed_parameters(net, generator)
    x = images(batch, generator, dtype)
    net.eval()
    with torch.no_grad():
        out = _forward_ind(net, x)
        if tuple(out.shape) != (batch, 256):
            fail(
                "forward_ind maps [B, 1, 28, 28] images to [B, 256] embeddings",
                input=f"images of shape {list(x.shape)}",
                expected=f"shape {[batch, 256]}",
                got=f"shape {list(out.shape)}",
                hint="forward_ind(x) should return self.head(self.backbone(x))",
            )
        pair = _forward(net, x, images(batch, generator, dtype))
        for k, o in enumerate(pair, start=1):
            if tuple(o.shape) != (batch, 256):
                fail(
                    "forward(img1, img2) returns two [B, 256] embeddings",
                    input=f"two batches of shape {list(x.shape)}",
                    expected=f"shape {[batch, 256]}",
                    got=f"output {k} of shape {list(o.shape)}",
                )
        _, shapes, parts = _layout(net)
        if sorted(parameter_shapes(net)) != shapes:
            fail(
                f"SiameseNetwork holds {parts}",
                expected=f"parameter shapes {shapes}",
                got=f"parameter shapes {parameter_shapes(net)}",
            )
        if probing():
            return  # the expected embeddings are the judge's to compute
        expected, source = _expected_embeddings(net, x, dtype)
    if any(close(out, e, dtype) for e in expected):
        return
    hint = None
    if bool((out < 0).any()) and not bool((expected[0] < 0).any()):
        hint = "negative embeddings: forgot the last ReLU (in the head or the backbone)"
    fail(
        "forward_ind(x) is head(backbone(x))",
        input=f"random images {list(x.shape)} ({dtype}), random weights",
        expected=f"{source}: {describe(expected[0])}",
        got=describe(out) + f" (largest difference {max_error(out, expected[0]):.3g})",
        hint=hint
        or "forward_ind should apply the backbone, then the head (self.head(features)), and nothing else",
    )


def _takes_embedding_dim(SiameseNetwork: Any) -> bool:
    try:
        return "embedding_dim" in inspect.signature(SiameseNetwork).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


def _check_network_size(SiameseNetwork: Any, size: int, generator: torch.Generator) -> None:
    """``SiameseNetwork(embedding_dim=size)`` passes the size on to its head: ``[B, size]`` embeddings. (A network
    in the original notebook's style, without the argument, is not asked.)"""
    if not run_student(
        NETWORK_EXERCISE, "the arguments of SiameseNetwork", _takes_embedding_dim, SiameseNetwork
    ):
        return
    call = f"SiameseNetwork(embedding_dim={size})"
    with stand_in_head(SiameseNetwork):
        net = run_student(NETWORK_EXERCISE, call, SiameseNetwork, embedding_dim=size)
    if not isinstance(net, nn.Module):
        fail(f"{call} creates an nn.Module", expected="an nn.Module", got=type_name(net))
    x = images(2, generator)
    net.eval()
    with torch.no_grad():
        out = _forward_ind(net, x)
    if tuple(out.shape) != (2, size):
        fail(
            f"{call} gives embeddings of {size} coordinates",
            input=f"images of shape {list(x.shape)}",
            expected=f"shape [2, {size}]",
            got=f"shape {list(out.shape)}",
            hint="pass the size on: EmbeddingHead(embedding_dim=embedding_dim)",
        )


@check
def check_siamese_network(SiameseNetwork: Any, hidden: bool = False) -> None:
    """Built around a stand-in head: one backbone and one head; ``forward_ind`` is ``head(backbone(x))``,
    ``[B, 256]``."""
    generator = generator_for(7)
    net = _make_network(SiameseNetwork)
    _check_count(net)
    _network_case(net, 2, torch.float32, generator)
    if hidden:
        _network_case(net, 1, torch.float32, generator)
        _network_case(copy.deepcopy(net).to(torch.float64), 3, torch.float64, generator)
        _check_network_size(SiameseNetwork, 32, generator)
    passed(
        "SiameseNetwork (built around the checks' stand-in head, so that exercise 3.1 is not graded twice): "
        "one backbone and one head, forward_ind(x) = head(backbone(x)) → [B, 256], "
        "forward(img1, img2) → two embeddings" + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- shared weights


def _touched(net: nn.Module, output: torch.Tensor, retain_graph: bool) -> list[int]:
    net.zero_grad(set_to_none=True)
    output.sum().backward(retain_graph=retain_graph)
    touched = [k for k, p in enumerate(net.parameters()) if p.grad is not None and bool(p.grad.ne(0).any())]
    net.zero_grad(set_to_none=True)
    return touched


def _grad_params(net: nn.Module, output: torch.Tensor, retain_graph: bool = False) -> set[int]:
    """Indices of the parameters that receive a non-zero gradient from ``output.sum()``."""
    touched = run_student(
        NETWORK_EXERCISE, "backward() through the embeddings", _touched, net, output, retain_graph
    )
    if not isinstance(touched, list) or not all(isinstance(k, int) for k in touched):
        fail("the gradients of the embeddings reach the network's parameters", got=type_name(touched))
    return set(touched)


def _shared_case(
    net: nn.Module, batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> None:
    a, b = images(batch, generator, dtype), images(batch, generator, dtype)
    where = f"two batches of random images of shape {list(a.shape)}"
    net.eval()
    with torch.no_grad():
        o1, o2 = _forward(net, a, b)
        i1, i2 = _forward_ind(net, a), _forward_ind(net, b)
        if close(o1, i2, dtype) and close(o2, i1, dtype) and not close(o1, i1, dtype):
            fail(
                "forward(img1, img2) returns (forward_ind(img1), forward_ind(img2)) in that order",
                input=where,
                hint="the two embeddings are swapped",
            )
        if not (close(o1, i1, dtype) and close(o2, i2, dtype)):
            fail(
                "forward(img1, img2) equals (forward_ind(img1), forward_ind(img2))",
                input=where,
                expected=f"forward_ind(img2) = {describe(i2)}",
                got=f"second output = {describe(o2)}",
                hint=(
                    "compute both embeddings with forward_ind: "
                    "two separate networks (or layers) give different results"
                ),
            )
        s1, s2 = _forward(net, a, a)
        if not close(s1, s2, dtype):
            fail(
                "the same image gets the same embedding in both branches",
                input=f"net(x, x) with x of shape {list(a.shape)}",
                expected="two equal embeddings",
                got=f"largest difference {max_error(s1, s2):.3g}",
                hint="two separate networks: use one backbone and one head for both images",
            )
    o1, o2 = _forward(net, a, b)
    from_first = _grad_params(
        net, o1, retain_graph=True
    )  # the two outputs may share a graph (one pass for both)
    from_second = _grad_params(net, o2)
    every = set(range(len(list(net.parameters()))))
    if from_first != from_second or from_first != every:
        only_first = len(from_first - from_second)
        only_second = len(from_second - from_first)
        fail(
            "the gradients of both embeddings reach the same parameters (all of them)",
            input=where,
            expected=f"all {len(every)} parameter tensors from both outputs",
            got=f"{len(from_first)} from the first, {len(from_second)} from the second "
            f"({only_first} only from the first, {only_second} only from the second)",
            hint="two separate networks: both images must go through the same backbone and head",
        )


@check
def check_shared_weights(SiameseNetwork: Any, hidden: bool = False) -> None:
    """``forward(a, b) == (forward_ind(a), forward_ind(b))``; identical inputs, identical embeddings; shared
    gradients."""
    generator = generator_for(8)
    net = _make_network(SiameseNetwork)
    total = count_all_parameters(net)
    expected, _, parts = _layout(net)
    hint = _count_hint(total, expected, expected - BACKBONE_PARAMETERS)
    if total != expected and hint and "separate" in hint:
        fail(
            f"one backbone and one head embed both images: {parts}",
            expected=f"{expected:,} parameters",
            got=f"{total:,}",
            hint=hint,
        )
    _shared_case(net, 3, generator)
    if hidden:
        _shared_case(net, 1, generator)
        _shared_case(copy.deepcopy(net).to(torch.float64), 2, generator, torch.float64)
    passed(
        "SiameseNetwork: both images go through the same weights (forward = forward_ind twice, "
        "gradients of both outputs reach the same parameters)" + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- question 3.3

PARAMETERS_QUESTION = "head_parameters (question 3.3)"
PARAMETERS_WHY = (
    "Linear(n_in, n_out) has a weight matrix [n_out, n_in] and n_out biases; Flatten and ReLU have none: "
    "in·hidden + hidden + hidden·embedding_dim + embedding_dim"
)


@judge_only
def head_parameter_count(in_features: int, hidden: int, embedding_dim: int) -> int:
    """The head's parameters: two linear layers' weights and biases."""
    return in_features * hidden + hidden + hidden * embedding_dim + embedding_dim


@check
def check_head_parameters(head_parameters: Any, hidden: bool = False) -> None:
    """Question 3.3: the head's parameter count for layer sizes drawn per run."""
    g = generator_for(31)  # a short name: every parameter below is drawn from it
    cases = [
        (questions.draw_int(g, 16, 4096), questions.draw_int(g, 8, 2048), questions.draw_int(g, 2, 512))
        for _ in range(3 if not hidden else 5)
    ]
    answers = questions.answers(PARAMETERS_QUESTION, head_parameters, "head_parameters", cases)
    if probing():
        return
    questions.verdict(
        "head_parameters",
        answers,
        cases,
        head_parameter_count,
        PARAMETERS_WHY,
        "the right count for every size" + (" [with hidden cases]" if hidden else ""),
    )


# ---------------------------------------------------------------- question 3.4

ZERO_QUESTION = "all_zero_share (question 3.4)"
ZERO_WHY = (
    "an embedding is 0 everywhere when every one of its embedding_dim coordinates is cut; for independent cuts "
    "of probability p each, that is p · p · ... · p = p ** embedding_dim"
)


@judge_only
def zero_share(p: float, embedding_dim: int) -> float:
    """``p ** embedding_dim``: every coordinate cut, independently."""
    return p**embedding_dim


@check
def check_all_zero_share(all_zero_share: Any, hidden: bool = False) -> None:
    """Question 3.4: the share of all-zero embeddings under independent cuts, for values drawn per run."""
    g = generator_for(35)
    cases = [
        (questions.draw(g, 0.5, 0.99), questions.draw_int(g, 2, 6)) for _ in range(3 if not hidden else 5)
    ]
    answers = questions.answers(ZERO_QUESTION, all_zero_share, "all_zero_share", cases)
    if probing():
        return
    questions.verdict(
        "all_zero_share",
        answers,
        cases,
        zero_share,
        ZERO_WHY,
        "the right share for every case" + (" [with hidden cases]" if hidden else ""),
    )
