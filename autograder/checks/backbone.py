"""Checks for lesson 02: ``CNNBackbone()``, images ``[B, 1, 28, 28]`` → features ``[B, 256, 3, 3]``.

Three blocks Conv2d → ReLU → MaxPool2d(2, 2): convolutions 1 → 64 (5x5), 64 → 128 (5x5) and 128 → 256
(3x3), each padded to keep the side; 501,760 parameters. The forward check gives the
student's network and the reference the same random weights (by order and shape, whatever the
attribute names) and compares the outputs on the same images.
"""

from __future__ import annotations

import copy
import functools
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

EXERCISE = syllabus.label("2.1")
NUM_PARAMETERS = 501_760
#: (in_channels, out_channels, kernel_size) of the three convolutions; each is padded to keep the side.
CONVS = [(1, 64, 5), (64, 128, 5), (128, 256, 3)]
PAD_LAYERS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)


def side_keeping_padding(kernel_size: int) -> int:
    """The padding that keeps the side of a stride-1 convolution (the rule lesson 2 teaches)."""
    return (kernel_size - 1) // 2


def make_backbone(CNNBackbone: Any) -> nn.Module:
    """``CNNBackbone()``, checked to be an ``nn.Module``."""
    net = run_student(EXERCISE, "CNNBackbone()", CNNBackbone)
    if not isinstance(net, nn.Module):
        fail(
            "CNNBackbone() creates an nn.Module",
            expected="an nn.Module",
            got=type(net).__name__,
            hint="write `class CNNBackbone(nn.Module):` and call super().__init__() first in __init__",
        )
    return net


def shape_hint(shape: tuple[int, ...], batch: int) -> str | None:
    """The likely reason for a wrong output shape of the backbone."""
    if len(shape) == 2:
        return "the backbone flattens its output: leave flattening to the head (lesson 03), return [B, 256, 3, 3]"
    if len(shape) != 4:
        return None
    _, channels, height, width = shape
    if shape[0] != batch:
        return "the batch dimension changed: do not reshape the feature maps"
    if channels != 256:
        return "the last Conv2d must have 256 output channels (1 → 64 → 128 → 256)"
    if (height, width) == (7, 7):
        return "a MaxPool2d(2, 2) is missing (28 → 14 → 7 → 3 needs three of them)"
    if (height, width) == (14, 14):
        return "two MaxPool2d(2, 2) are missing (28 → 14 → 7 → 3 needs three of them)"
    if (height, width) == (28, 28):
        return "the MaxPool2d(2, 2) layers are missing"
    return (
        "check the padding (each convolution must keep the side: in + 2·padding − kernel + 1 = in) and the "
        "pooling (MaxPool2d(2, stride=2) halves it, rounding down)"
    )


def forward_student(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)``, checked to be a tensor."""
    out = run_student(EXERCISE, f"CNNBackbone()(x) with x of shape {list(x.shape)}", net, x)
    if not isinstance(out, torch.Tensor):
        fail(
            "forward returns one tensor",
            input=describe(x),
            expected="a tensor [B, 256, 3, 3]",
            got=type_name(out),
        )
    return out


def _check_shape(net: nn.Module, batch: int, dtype: torch.dtype, generator: torch.Generator) -> None:
    x = images(batch, generator, dtype)
    out = forward_student(net, x)
    if tuple(out.shape) != (batch, 256, 3, 3):
        fail(
            "CNNBackbone maps [B, 1, 28, 28] to [B, 256, 3, 3]",
            input=f"images of shape {list(x.shape)}",
            expected=f"shape {[batch, 256, 3, 3]}",
            got=f"shape {list(out.shape)}",
            hint=shape_hint(tuple(out.shape), batch),
        )
    if out.dtype != dtype:
        fail(
            "the features have the images' dtype",
            input=f"images of dtype {dtype} (network converted with .to({dtype}))",
            expected=str(dtype),
            got=str(out.dtype),
            hint="do not convert tensors inside forward",
        )


@check
def check_backbone_shapes(CNNBackbone: Any, hidden: bool = False) -> None:
    """The output of a batch ``[B, 1, 28, 28]`` has shape ``[B, 256, 3, 3]``."""
    generator = generator_for(2)
    net = make_backbone(CNNBackbone)
    _check_shape(net, 2, torch.float32, generator)
    if hidden:
        for batch in (1, 5):
            _check_shape(net, batch, torch.float32, generator)
        _check_shape(copy.deepcopy(net).to(torch.float64), 3, torch.float64, generator)
    passed(
        "CNNBackbone: [B, 1, 28, 28] images → [B, 256, 3, 3] features"
        + (" [with hidden cases]" if hidden else "")
    )


def _padding(conv: nn.Conv2d) -> tuple[int, int] | str:
    if isinstance(conv.padding, str):
        if conv.padding == "same":
            return (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
        return conv.padding
    return tuple(conv.padding)


def _check_conv(k: int, conv: nn.Conv2d, cin: int, cout: int, size: int, pad_layers: bool = False) -> None:
    """Convolution ``k``: channels, kernel, stride 1, a side-keeping padding and a bias (``pad_layers``: the network
    pads with layers of its own, which the hint then names)."""
    pad = side_keeping_padding(size)
    expected = f"Conv2d({cin}, {cout}, kernel_size={size}, stride=1, a padding that keeps the side)"
    got = (
        f"Conv2d({conv.in_channels}, {conv.out_channels}, kernel_size={tuple(conv.kernel_size)}, "
        f"stride={tuple(conv.stride)}, padding={conv.padding})"
    )
    if (conv.in_channels, conv.out_channels) != (cin, cout):
        fail(
            f"convolution {k} has {cin} input and {cout} output channels",
            expected=expected,
            got=got,
            hint=f"layer {k} differs: the channels go 1 → 64 → 128 → 256",
        )
    if tuple(conv.kernel_size) != (size, size):
        fail(
            f"convolution {k} has a {size}x{size} kernel",
            expected=expected,
            got=got,
            hint=f"layer {k} differs: kernel sizes are 5, 5, 3",
        )
    if tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1) or conv.groups != 1:
        fail(
            f"convolution {k} has stride 1 (the pooling halves the size, not the convolution)",
            expected=expected,
            got=got,
            hint=f"layer {k} differs: leave stride, dilation and groups at 1",
        )
    if _padding(conv) != (pad, pad):  # the number is the exercise's answer: the message names the rule only
        fail(
            f"convolution {k} keeps the image size (the shapes in the exercise's table)",
            expected=expected,
            got=got,
            hint="the padding is the convolution's own argument here (Conv2d(..., padding=...)), not a separate "
            "padding layer: the exercise asks you to choose it"
            if pad_layers
            else f"layer {k} differs: with stride 1 the side becomes in + 2·padding − {size} + 1; "
            "choose the padding that makes it equal to in",
        )
    if conv.bias is None:
        fail(
            f"convolution {k} has a bias",
            expected=expected,
            got=got + ", bias=False",
            hint=f"layer {k} differs: keep the default bias=True",
        )


def _note_call(order: list[int], index: int, module: nn.Module, args: Any) -> None:
    order.append(index)


def _call_order(net: nn.Module) -> list[int] | None:
    """The indices (in registration order) of ``net``'s convolutions in the order ``net(x)`` first applies them; None
    when its forward fails (the forward checks say why)."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    order: list[int] = []
    hooks = [
        conv.register_forward_pre_hook(functools.partial(_note_call, order, k))
        for k, conv in enumerate(convs)
    ]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 1, 28, 28))
    except Exception:
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


def _in_call_order(net: nn.Module, convs: list[nn.Conv2d]) -> list[nn.Conv2d]:
    """``convs`` in the order the forward pass applies them (attributes may be registered in any order), else as
    registered."""
    order = run_student(
        EXERCISE, "the order in which CNNBackbone()(x) applies its convolutions", _call_order, net
    )
    if isinstance(order, list) and sorted(o for o in order if isinstance(o, int)) == list(range(len(convs))):
        return [convs[k] for k in order]
    return convs


def _check_convolutions(net: nn.Module) -> None:
    """Three Conv2d layers as in the table; or, written with F.conv2d, three weights of those shapes."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        if len(convs) != 3:
            fail(
                "CNNBackbone has three Conv2d layers",
                expected=3,
                got=len(convs),
                hint="one Conv2d per block: 1 → 64 (5x5), 64 → 128 (5x5), 128 → 256 (3x3)",
            )
        for k, (conv, (cin, cout, size)) in enumerate(zip(_in_call_order(net, convs), CONVS), start=1):
            _check_conv(k, conv, cin, cout, size, any(isinstance(m, PAD_LAYERS) for m in net.modules()))
        return
    # Functional style (F.conv2d with nn.Parameters): check the weight shapes; padding shows in the output shape.
    weights = [list(p.shape) for p in net.parameters() if p.dim() == 4]
    expected_weights = [[cout, cin, size, size] for cin, cout, size in CONVS]
    if weights != expected_weights:
        fail(
            "CNNBackbone has three convolutions 1 → 64 (5x5), 64 → 128 (5x5), 128 → 256 (3x3)",
            expected=f"convolution weights of shapes {expected_weights}",
            got=f"{weights}",
            hint="no convolution weights are registered: layers kept in a plain Python list are not registered "
            "(use nn.Sequential, nn.ModuleList or attributes)"
            if not weights
            else None,
        )
    _check_shape(net, 2, torch.float32, generator_for(3))


def _check_pooling(net: nn.Module) -> None:
    """Max pooling only, each MaxPool2d with kernel 2 and stride 2."""
    avg = [
        type(m).__name__
        for m in net.modules()
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d))
    ]
    if avg:
        fail(
            "CNNBackbone pools with MaxPool2d(2, stride=2)",
            expected="MaxPool2d",
            got=", ".join(avg),
            hint="avg pool instead of max pool: the original uses nn.MaxPool2d(2, stride=2)",
        )
    for m in net.modules():
        if isinstance(m, nn.MaxPool2d):
            kernel = m.kernel_size if isinstance(m.kernel_size, int) else tuple(m.kernel_size)
            stride = m.stride if isinstance(m.stride, int) else tuple(m.stride)
            if kernel not in (2, (2, 2)) or stride not in (2, (2, 2)) or m.padding not in (0, (0, 0)):
                fail(
                    "every MaxPool2d has kernel 2 and stride 2",
                    expected="MaxPool2d(2, stride=2)",
                    got=f"MaxPool2d(kernel_size={m.kernel_size}, stride={m.stride}, padding={m.padding})",
                )


def _check_parameter_count(net: nn.Module) -> None:
    """501,760 parameters; else a hint naming the layers the original does not have."""
    total = count_all_parameters(net)
    if total == NUM_PARAMETERS:
        return
    extra = sorted(
        {
            type(m).__name__
            for m in net.modules()
            if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, nn.Conv2d)
        }
    )
    hint = None
    if total == 0:
        hint = (
            "no parameters are registered: keep the layers as attributes or in nn.Sequential, "
            "not in a plain list"
        )
    elif extra:
        hint = f"layers the original does not have: {', '.join(extra)}"
    fail(
        "CNNBackbone has 501,760 parameters (64·1·5·5 + 64 + 128·64·5·5 + 128 + 256·128·3·3 + 256)",
        expected=f"{NUM_PARAMETERS:,}",
        got=f"{total:,} (parameter shapes {parameter_shapes(net)})",
        hint=hint,
    )


def _check_registered(net: nn.Module, CNNBackbone: Any) -> None:
    """Every parameter trainable, and a copy made with ``load_state_dict`` computes the same features."""
    frozen = [list(p.shape) for p in net.parameters() if not p.requires_grad]
    if frozen:
        fail(
            "every parameter is trainable (requires_grad=True)",
            got=f"frozen parameters of shapes {frozen}",
        )
    # Weights registered as parameters travel with state_dict and .to(): a fresh instance loaded
    # from this one's state_dict computes the same features.
    twin = make_backbone(CNNBackbone)
    run_student(
        EXERCISE,
        "CNNBackbone().load_state_dict(net.state_dict())",
        twin.load_state_dict,
        net.state_dict(),
    )
    x = images(2, generator_for(4))
    net.eval()
    twin.eval()
    with torch.no_grad():
        a, b = forward_student(net, x), forward_student(twin, x)
    if not close(a, b):
        fail(
            "the weights are all registered (a copy made with load_state_dict computes the same features)",
            got=f"largest difference {max_error(a, b):.3g}",
            hint="a weight stored as a plain tensor is neither saved nor trained: use nn.Parameter or nn.Conv2d",
        )


@check
def check_backbone_layers(CNNBackbone: Any, hidden: bool = False) -> None:
    """Three convolutions with the right channels, kernel sizes and padding; max pooling; 501,760 parameters."""
    net = make_backbone(CNNBackbone)
    _check_convolutions(net)
    _check_pooling(net)
    _check_parameter_count(net)
    if hidden:
        _check_registered(net, CNNBackbone)
    passed(
        "CNNBackbone: Conv2d 1→64 (5x5, pad 2), 64→128 (5x5, pad 2), 128→256 (3x3, pad 1), max pooling, "
        "501,760 parameters" + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- forward


@judge_only
def reference_forward(
    x: torch.Tensor,
    params: list[torch.Tensor],
    relu: tuple[bool, bool, bool] = (True, True, True),
    pool: str = "max",
    activation: Any = F.relu,
) -> torch.Tensor:
    """The backbone as functional calls, with switches to reproduce common mistakes."""
    for k in range(3):
        weight, bias = params[2 * k], params[2 * k + 1]
        x = F.conv2d(x, weight, bias, padding=side_keeping_padding(CONVS[k][2]))
        if relu[k]:
            x = activation(x)
        x = F.max_pool2d(x, 2, 2) if pool == "max" else F.avg_pool2d(x, 2, 2)
    return x


@judge_only
def diagnose_forward(x: torch.Tensor, params: list[torch.Tensor], out: torch.Tensor) -> str | None:
    """Name the common mistake whose output matches ``out``, if any."""
    if bool((out < 0).any()):
        return "the output has negative values: forgot the last ReLU (after the third convolution)"
    variants = [
        ("avg pool instead of max pool (use nn.MaxPool2d(2, stride=2))", dict(pool="avg")),
        ("missing ReLU after the first convolution", dict(relu=(False, True, True))),
        ("missing ReLU after the second convolution", dict(relu=(True, False, True))),
        ("forgot the last ReLU (after the third convolution)", dict(relu=(True, True, False))),
        ("sigmoid instead of ReLU", dict(activation=torch.sigmoid)),
        ("tanh instead of ReLU", dict(activation=torch.tanh)),
    ]
    with torch.no_grad():
        for message, options in variants:
            candidate = reference_forward(x, params, **options)
            if close(out, candidate):
                return message
    return None


def _compare(
    net: nn.Module, batch: int, dtype: torch.dtype, generator: torch.Generator, scale: float = 1.0
) -> None:
    seed_parameters(net, generator)
    x = images(batch, generator, dtype) * scale
    net.eval()
    with torch.no_grad():
        out = forward_student(net, x)
    if probing():
        return  # the reference's features are the judge's to compute
    from solutions.backbone import CNNBackbone as Reference

    reference = Reference().to(dtype)
    if sorted(parameter_shapes(net)) != sorted(parameter_shapes(reference)):
        fail(
            "CNNBackbone has the reference's parameters (3 convolution weights and biases)",
            expected=f"parameter shapes {parameter_shapes(reference)}",
            got=f"parameter shapes {parameter_shapes(net)}",
            hint="run check_backbone_layers: it names the layer that differs",
        )
    copy_parameters_by_order(net, reference)
    with torch.no_grad():
        expected = reference(x)
    if out.shape != expected.shape:
        fail(
            "CNNBackbone maps [B, 1, 28, 28] to [B, 256, 3, 3]",
            input=f"images of shape {list(x.shape)}",
            expected=f"shape {list(expected.shape)}",
            got=f"shape {list(out.shape)}",
            hint=shape_hint(tuple(out.shape), batch),
        )
    if not close(out, expected, dtype):
        params = [p.detach() for p in reference.parameters()]
        fail(
            "CNNBackbone computes conv → ReLU → max-pool three times (same weights as the reference)",
            input=f"random images {list(x.shape)} ({dtype}), random weights in your network and the reference",
            expected=describe(expected),
            got=describe(out) + f" (largest difference {max_error(out, expected):.3g})",
            hint=diagnose_forward(x, params, out)
            or "compare your layer order with conv → ReLU → MaxPool2d(2, 2), three times",
        )


@check
def check_backbone_forward(CNNBackbone: Any, hidden: bool = False) -> None:
    """With the student's weights copied into the reference, both compute the same features."""
    generator = generator_for(5)
    net = make_backbone(CNNBackbone)
    _compare(net, 3, torch.float32, generator)
    if hidden:
        _compare(net, 1, torch.float32, generator)
        _compare(net, 2, torch.float32, generator, scale=-1.0)  # negative inputs: every ReLU matters
        _compare(copy.deepcopy(net).to(torch.float64), 4, torch.float64, generator)
    passed(
        "CNNBackbone: the same features as the reference with the same weights (conv → ReLU → max-pool, three times)"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- question 2.2

SIDE_QUESTION = "backbone_side (question 2.2)"
SIDE_WHY = (
    "each convolution keeps the side (padding (k - 1)/2 with stride 1), and each 2 × 2 max pooling with "
    "stride 2 halves it, rounding down: ⌊⌊⌊s/2⌋/2⌋/2⌋, which is ⌊s/8⌋"
)


@judge_only
def side_after_backbone(side: int) -> int:
    """The feature maps' side for an input of side ``side``: three halvings, each rounded down."""
    return side // 8


@check
def check_backbone_side(backbone_side: Any, hidden: bool = False) -> None:
    """Question 2.2: the feature maps' side for square inputs of sides drawn per run."""
    generator = generator_for(30)
    cases = [
        (questions.draw_int(generator, 8, 27),),
        (questions.draw_int(generator, 29, 100),),
        (questions.draw_int(generator, 101, 300),),
    ]
    if hidden:
        cases += [(questions.draw_int(generator, 8, 15),), (questions.draw_int(generator, 301, 1000),)]
    answers = questions.answers(SIDE_QUESTION, backbone_side, "backbone_side", cases)
    if probing():
        return
    questions.verdict(
        "backbone_side",
        answers,
        cases,
        side_after_backbone,
        SIDE_WHY,
        "the right side for every input" + (" [with hidden cases]" if hidden else ""),
    )


# ---------------------------------------------------------------- question 2.3

CONV_QUESTION = "conv_parameters (question 2.3)"
CONV_WHY = (
    "each of the out_channels output channels has one k × k kernel for every input channel and one bias: "
    "out_channels · (in_channels · k · k + 1). ReLU and pooling have none"
)


@judge_only
def conv_parameter_count(in_channels: int, out_channels: int, kernel: int) -> int:
    """The parameters of ``Conv2d(in, out, k)``: ``out · (in · k² + 1)``."""
    return out_channels * (in_channels * kernel * kernel + 1)


@check
def check_conv_parameters(conv_parameters: Any, hidden: bool = False) -> None:
    """Question 2.3: a convolution's parameter count, for layer sizes drawn per run."""
    g = generator_for(34)  # a short name: every parameter below is drawn from it
    cases = [
        (questions.draw_int(g, 1, 512), questions.draw_int(g, 1, 512), questions.draw_int(g, 1, 4) * 2 + 1)
        for _ in range(3 if not hidden else 5)
    ]
    answers = questions.answers(CONV_QUESTION, conv_parameters, "conv_parameters", cases)
    if probing():
        return
    questions.verdict(
        "conv_parameters",
        answers,
        cases,
        conv_parameter_count,
        CONV_WHY,
        "the right count for every convolution" + (" [with hidden cases]" if hidden else ""),
    )
