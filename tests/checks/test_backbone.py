"""``autograder.checks.backbone`` (lesson 02): other correct backbones pass; each typical bug fails what it breaks."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_fails_exactly
from helpers.checks import fails
from torch import nn

from autograder.checks import backbone as backbone_checks

# ---------------------------------------------------------------- lesson 02: CNNBackbone


class SeparateAttributesBackbone(nn.Module):
    """Layers as separate attributes, ReLU and pooling functional, pooling before ReLU (equivalent)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=(5, 5), padding="same")
        self.conv3 = nn.Conv2d(128, 256, 3, 1, 1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), kernel_size=2, stride=2)
        return F.relu(F.max_pool2d(self.conv3(x), 2))


class FunctionalBackbone(nn.Module):
    """Weights as nn.Parameters, biases registered first, convolutions as F.conv2d."""

    def __init__(self):
        super().__init__()
        self.b1, self.b2, self.b3 = (nn.Parameter(torch.zeros(c)) for c in (64, 128, 256))
        self.w1 = nn.Parameter(torch.randn(64, 1, 5, 5) * 0.2)
        self.w2 = nn.Parameter(torch.randn(128, 64, 5, 5) * 0.025)
        self.w3 = nn.Parameter(torch.randn(256, 128, 3, 3) * 0.03)
        with torch.no_grad():
            for b in (self.b1, self.b2, self.b3):
                b.uniform_(-0.1, 0.1)

    def forward(self, x):
        for w, b, p in ((self.w1, self.b1, 2), (self.w2, self.b2, 2), (self.w3, self.b3, 1)):
            x = F.max_pool2d(torch.relu(F.conv2d(x, w, b, padding=p)), 2, 2)
        return x


class OutOfOrderAttributesBackbone(nn.Module):
    """The third convolution registered first: ``forward`` decides the order, not ``__init__``."""

    def __init__(self):
        super().__init__()
        self.conv3 = nn.Conv2d(128, 256, 3, padding=1)
        self.conv1 = nn.Conv2d(1, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 128, 5, padding=2)

    def forward(self, x):
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return x


class ModuleListBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(i, o, k, padding=p), nn.ReLU(inplace=True), nn.MaxPool2d(2))
            for i, o, k, p in [(1, 64, 5, 2), (64, 128, 5, 2), (128, 256, 3, 1)]
        )

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class SequentialSubclassBackbone(nn.Sequential):
    def __init__(self):
        super().__init__(
            nn.Conv2d(1, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )


class ConfigurableBackbone(nn.Module):
    def __init__(
        self, relu=(True, True, True), pool=nn.MaxPool2d, padding=(2, 2, 1), kernels=(5, 5, 3), pools=3
    ):
        super().__init__()
        layers = []
        for k, (cin, cout) in enumerate([(1, 64), (64, 128), (128, 256)]):
            layers.append(nn.Conv2d(cin, cout, kernels[k], padding=padding[k]))
            if relu[k]:
                layers.append(nn.ReLU())
            if k < pools:
                layers.append(pool(2, 2))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class PlainListBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [
            nn.Conv2d(1, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class NoSuperInit(nn.Module):
    def __init__(self):
        self.conv = nn.Conv2d(1, 64, 5)


BACKBONE_CHECKS = [
    backbone_checks.check_backbone_shapes,
    backbone_checks.check_backbone_layers,
    backbone_checks.check_backbone_forward,
]


@pytest.mark.parametrize(
    "cls",
    [
        SeparateAttributesBackbone,
        OutOfOrderAttributesBackbone,
        FunctionalBackbone,
        ModuleListBackbone,
        SequentialSubclassBackbone,
    ],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("check", BACKBONE_CHECKS, ids=lambda c: c.__name__)
def test_other_correct_backbones_pass(cls, check):
    check(cls, hidden=False)
    check(cls, hidden=True)


bug = functools.partial


BACKBONE_CHECKS = [
    backbone_checks.check_backbone_shapes,
    backbone_checks.check_backbone_layers,
    backbone_checks.check_backbone_forward,
]

# Each single bug → {the check it fails: a fragment of that check's message}; every other check passes. A layer that
# differs also changes the forward pass, and a layer that changes the output size fails every check that runs it.
BACKBONE_BUGS = {
    "no_relu_2": (
        bug(ConfigurableBackbone, relu=(True, False, True)),
        {"backbone_forward": "missing ReLU after the second convolution"},
    ),
    "no_relu_1": (
        bug(ConfigurableBackbone, relu=(False, True, True)),
        {"backbone_forward": "missing ReLU after the first convolution"},
    ),
    "no_last_relu": (
        bug(ConfigurableBackbone, relu=(True, True, False)),
        {"backbone_forward": "forgot the last ReLU"},
    ),
    "avg_pool": (
        bug(ConfigurableBackbone, pool=nn.AvgPool2d),
        {
            "backbone_layers": "avg pool instead of max pool",
            "backbone_forward": "avg pool instead of max pool",
        },
    ),
    "padding_1": (
        bug(ConfigurableBackbone, padding=(2, 1, 1)),
        {"backbone_layers": "layer 2 differs", "backbone_forward": "compare your layer order"},
    ),
    "kernel_5": (
        bug(ConfigurableBackbone, kernels=(5, 5, 5), padding=(2, 2, 2)),
        {"backbone_layers": "layer 3 differs", "backbone_forward": "run check_backbone_layers"},
    ),
    "two_pools": (
        bug(ConfigurableBackbone, pools=2),
        {
            "backbone_shapes": "a MaxPool2d(2, 2) is missing",
            "backbone_forward": "a MaxPool2d(2, 2) is missing",
        },
    ),
    "no_padding": (
        bug(ConfigurableBackbone, padding=(0, 0, 0)),
        dict.fromkeys(("backbone_shapes", "backbone_layers", "backbone_forward"), "padding"),
    ),
    "plain_list": (
        PlainListBackbone,
        {
            "backbone_shapes": "raised",
            "backbone_layers": "a plain python list",
            "backbone_forward": "run check_backbone_layers",
        },
    ),
    "no_super_init": (
        NoSuperInit,
        dict.fromkeys(("backbone_shapes", "backbone_layers", "backbone_forward"), "super().__init__()"),
    ),
}


@pytest.mark.parametrize("name", BACKBONE_BUGS)
def test_a_backbone_bug_fails_exactly_the_checks_it_breaks(name):
    cls, expected = BACKBONE_BUGS[name]
    assert_fails_exactly(BACKBONE_CHECKS, expected, cls)


class PaddingLayersBackbone(nn.Module):
    """The right shapes, but the padding in ZeroPad2d layers where the exercise asks for the convolutions' own."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            *(nn.ZeroPad2d(2), nn.Conv2d(1, 64, 5), nn.ReLU(), nn.MaxPool2d(2, 2)),
            *(nn.ZeroPad2d(2), nn.Conv2d(64, 128, 5), nn.ReLU(), nn.MaxPool2d(2, 2)),
            *(nn.ZeroPad2d(1), nn.Conv2d(128, 256, 3), nn.ReLU(), nn.MaxPool2d(2, 2)),
        )

    def forward(self, x):
        return self.layers(x)


def test_padding_in_separate_layers_is_told_where_the_padding_goes():
    """The shapes pass; the layers check says the padding is the convolution's argument, not 'keep the size'."""
    backbone_checks.check_backbone_shapes(PaddingLayersBackbone)
    fails(backbone_checks.check_backbone_layers, PaddingLayersBackbone, match="not a separate padding layer")
