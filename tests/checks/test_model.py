"""``autograder.checks.model`` (lesson 03): other correct heads and networks pass; typical bugs fail what they break."""

from __future__ import annotations

import functools
import inspect

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_fails_exactly, failed_checks
from helpers.checks import fails
from torch import nn

from autograder.checks import model as model_checks
from solutions import backbone as ref_backbone
from solutions import model as ref_model

bug = functools.partial  # a class with some of its options changed: a typical mistake


# ---------------------------------------------------------------- lesson 03: EmbeddingHead, SiameseNetwork


class ViewHead(nn.Module):
    def __init__(self, in_features=2304, embedding_dim=256):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 1024)
        self.fc2 = nn.Linear(1024, embedding_dim)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return F.relu(self.fc2(F.relu(self.fc1(x))))


class ConfigurableHead(nn.Module):
    def __init__(self, relu1=True, relu2=True, in_features=2304, embedding_dim=256):
        super().__init__()
        layers = (
            [nn.Flatten(), nn.Linear(in_features, 1024)]
            + ([nn.ReLU()] if relu1 else [])
            + [nn.Linear(1024, embedding_dim)]
        )
        self.layers = nn.Sequential(*layers, *([nn.ReLU()] if relu2 else []))

    def forward(self, x):
        return self.layers(x)


class SqueezeHead(ConfigurableHead):
    def forward(self, x):
        return self.layers[1:](x.reshape(-1, 2304).squeeze())


class OriginalSiamese(nn.Module):
    """The original notebook's attribute names and style."""

    def __init__(self):
        super().__init__()
        self.cnn1 = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=5, stride=1, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, stride=2),
            nn.Conv2d(64, 128, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, stride=2),
            nn.Conv2d(128, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, stride=2),
        )
        self.fc1 = nn.Sequential(
            nn.Linear(2304, 1024), nn.ReLU(inplace=True), nn.Linear(1024, 256), nn.ReLU(inplace=True)
        )

    def forward_ind(self, x):
        output = self.cnn1(x)
        output = output.view(output.size()[0], -1)
        return self.fc1(output)

    def forward(self, input1, input2):
        return self.forward_ind(input1), self.forward_ind(input2)


class ConcatSiamese(ref_model.SiameseNetwork):
    """Both images in one pass through the same weights (equivalent)."""

    def forward(self, img1, img2):
        out = self.forward_ind(torch.cat([img1, img2]))
        return out[: len(img1)], out[len(img1) :]


class TwoNetworks(nn.Module):
    def __init__(self):
        super().__init__()
        self.net1 = ref_model.SiameseNetwork()
        self.net2 = ref_model.SiameseNetwork()

    def forward_ind(self, x):
        return self.net1.forward_ind(x)

    def forward(self, a, b):
        return self.net1.forward_ind(a), self.net2.forward_ind(b)


class TwoBackbones(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone1, self.backbone2 = ref_backbone.CNNBackbone(), ref_backbone.CNNBackbone()
        self.head = ref_model.EmbeddingHead()

    def forward_ind(self, x):
        return self.head(self.backbone1(x))

    def forward(self, a, b):
        return self.head(self.backbone1(a)), self.head(self.backbone2(b))


class FirstTwice(ref_model.SiameseNetwork):
    def forward(self, img1, img2):
        return self.forward_ind(img1), self.forward_ind(img1)


class NoForwardInd(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone, self.head = ref_backbone.CNNBackbone(), ref_model.EmbeddingHead()

    def forward(self, a, b):
        return self.head(self.backbone(a)), self.head(self.backbone(b))


class PermutedFlattenSiamese(OriginalSiamese):
    """Flattens the features channels last before its own fully connected layers (an equivalent network)."""

    def forward_ind(self, x):
        return self.fc1(self.cnn1(x).permute(0, 2, 3, 1).flatten(1))


class NoHeadReLU(ref_model.SiameseNetwork):
    """A head built in the network, not the student's EmbeddingHead: no other check tests it, so this one does."""

    def __init__(self):
        super().__init__()
        self.head = ConfigurableHead(relu2=False)


@pytest.mark.parametrize("cls", [ViewHead, bug(ConfigurableHead)], ids=["view", "sequential"])
def test_other_correct_heads_pass(cls):
    model_checks.check_head(cls)
    model_checks.check_head(cls, hidden=True)


@pytest.mark.parametrize(
    "cls", [OriginalSiamese, ConcatSiamese, PermutedFlattenSiamese], ids=lambda c: c.__name__
)
@pytest.mark.parametrize(
    "check", [model_checks.check_siamese_network, model_checks.check_shared_weights], ids=lambda c: c.__name__
)
def test_other_correct_networks_pass(cls, check):
    check(cls)
    check(cls, hidden=True)


@pytest.mark.parametrize(
    "check, cls, match, hidden",
    [
        (model_checks.check_head, bug(ConfigurableHead, relu2=False), "forgot the last ReLU", False),
        (model_checks.check_head, bug(ConfigurableHead, relu1=False), "missing ReLU between", False),
        (model_checks.check_head, SqueezeHead, "batch dimension was lost", True),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_head_bugs_fail(check, cls, match, hidden):
    fails(check, cls, match=match, hidden=hidden)


NETWORK_CHECKS = [model_checks.check_siamese_network, model_checks.check_shared_weights]

# Each single bug of exercise 3.2 → {the check it fails: a fragment of its message}; every other check passes.
# A second backbone or network breaks both properties: the structure, and the weights shared by both images.
NETWORK_BUGS = {
    TwoNetworks: {"siamese_network": "two separate networks", "shared_weights": "two separate networks"},
    TwoBackbones: {"siamese_network": "two separate backbones", "shared_weights": "two separate backbones"},
    FirstTwice: {"shared_weights": "compute both embeddings with forward_ind"},
    NoHeadReLU: {"siamese_network": "forgot the last ReLU"},
    ref_backbone.CNNBackbone: {
        "siamese_network": "only the backbone is registered",
        "shared_weights": "raised TypeError",
    },
    NoForwardInd: {
        "siamese_network": "define `def forward_ind(self, x):`",
        "shared_weights": "define `def forward_ind(self, x):`",
    },
}


@pytest.mark.parametrize("cls", NETWORK_BUGS, ids=lambda c: c.__name__)
def test_a_network_bug_fails_exactly_the_checks_it_breaks(cls):
    assert_fails_exactly(NETWORK_CHECKS, NETWORK_BUGS[cls], cls)


FINAL_HEAD_RELU = "            nn.ReLU(),  # as in the original: embeddings are non-negative\n"


def lesson_03_classes(
    head_source: str | None = None, network_source: str | None = None, own_backbone: bool = False
):
    """``(EmbeddingHead, SiameseNetwork)`` as a lesson-03 notebook defines them: the exercise cells' code run in one
    namespace, with ``CNNBackbone`` imported from the reference, or (``own_backbone``) a copy of it, another class
    object, as the graded cells' fresh import of ``solutions`` makes the reference's classes differ from the notebook's.
    """
    namespace = {"__name__": "__main__", "torch": torch, "nn": nn}
    if own_backbone:
        exec(inspect.getsource(ref_backbone.CNNBackbone), namespace)
    else:
        namespace["CNNBackbone"] = ref_backbone.CNNBackbone
    exec(head_source or inspect.getsource(ref_model.EmbeddingHead), namespace)
    exec(network_source or inspect.getsource(ref_model.SiameseNetwork), namespace)
    return namespace["EmbeddingHead"], namespace["SiameseNetwork"]


def head_without_final_relu() -> str:
    """The reference head's code (the solution of exercise 3.1) without its final ReLU."""
    source = inspect.getsource(ref_model.EmbeddingHead)
    assert source.count(FINAL_HEAD_RELU) == 1
    return source.replace(FINAL_HEAD_RELU, "")


@pytest.mark.parametrize("own_backbone", [False, True], ids=["imported_backbone", "copied_backbone"])
def test_lesson_03_solution_passes(own_backbone, capsys):
    EmbeddingHead, SiameseNetwork = lesson_03_classes(own_backbone=own_backbone)
    for check, cls in (
        (model_checks.check_head, EmbeddingHead),
        (model_checks.check_siamese_network, SiameseNetwork),
        (model_checks.check_shared_weights, SiameseNetwork),
    ):
        check(cls)
        check(cls, hidden=True)
    assert capsys.readouterr().out.count("[PASS]") == 6


@pytest.mark.parametrize("own_backbone", [False, True], ids=["imported_backbone", "copied_backbone"])
def test_a_head_bug_costs_only_the_head_exercise(own_backbone, capsys):
    """A head without its final ReLU (exercise 3.1) in an otherwise correct SiameseNetwork (3.2): only
    check_head fails."""
    EmbeddingHead, SiameseNetwork = lesson_03_classes(head_without_final_relu(), own_backbone=own_backbone)
    fails(model_checks.check_head, EmbeddingHead, match="forgot the last ReLU")
    fails(model_checks.check_head, EmbeddingHead, match="forgot the last ReLU", hidden=True)
    for check in (model_checks.check_siamese_network, model_checks.check_shared_weights):
        check(SiameseNetwork)
        check(SiameseNetwork, hidden=True)
    assert capsys.readouterr().out.count("[PASS]") == 4


def network_source(forward_ind: str, backbone: str = "CNNBackbone()") -> str:
    """A lesson-03 SiameseNetwork with the given backbone and forward_ind body; EmbeddingHead as the exercise says."""
    return f"""
class SiameseNetwork(nn.Module):
    def __init__(self, embedding_dim=256):
        super().__init__()
        self.backbone = {backbone}
        self.head = EmbeddingHead(embedding_dim=embedding_dim)

    def forward_ind(self, x):
        return {forward_ind}

    def forward(self, img1, img2):
        return self.forward_ind(img1), self.forward_ind(img2)
"""


NORMALISED_EMBEDDINGS = network_source("nn.functional.normalize(self.head(self.backbone(x)))")
BACKBONE_WITHOUT_LAST_RELU = network_source(
    "self.head(self.backbone(x))",
    backbone="""nn.Sequential(
            nn.Conv2d(1, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding=1), nn.MaxPool2d(2))""",
)
SKIPS_HEAD_RELU = network_source("self.head.layers[:-1](self.backbone(x))")


@pytest.mark.parametrize(
    "head_source", [None, "no_final_relu"], ids=["correct_head", "head_without_final_relu"]
)
@pytest.mark.parametrize(
    "source, match",
    [
        (NORMALISED_EMBEDDINGS, "the checks' stand-in head"),
        (BACKBONE_WITHOUT_LAST_RELU, "on the reference backbone's features"),
    ],
    ids=["normalised_embeddings", "inline_backbone_without_last_relu"],
)
def test_network_bugs_fail_against_the_stand_in_head(head_source, source, match):
    """The network is built around the checks' stand-in head, so the student's head, right or wrong, plays no part."""
    _, SiameseNetwork = lesson_03_classes(head_without_final_relu() if head_source else None, source)
    message = fails(
        model_checks.check_siamese_network, SiameseNetwork, match="forward_ind(x) is head(backbone(x))"
    )
    assert match in message, message


def test_a_network_that_reaches_into_its_head_is_told_to_call_it():
    EmbeddingHead, SiameseNetwork = lesson_03_classes(network_source=SKIPS_HEAD_RELU)
    model_checks.check_head(EmbeddingHead, hidden=True)
    fails(model_checks.check_siamese_network, SiameseNetwork, match="use the head only by calling it")


def head_with_embedding_size(size: int) -> str:
    """The reference head's code with its embedding size fixed at ``size`` (``embedding_dim`` ignored)."""
    source = inspect.getsource(ref_model.EmbeddingHead)
    assert source.count("nn.Linear(1024, embedding_dim)") == 1, source
    return source.replace("nn.Linear(1024, embedding_dim)", f"nn.Linear(1024, {size})")


def test_a_wrong_embedding_size_costs_only_the_head_exercise():
    EmbeddingHead, SiameseNetwork = lesson_03_classes(head_with_embedding_size(128))
    assert set(failed_checks([model_checks.check_head], EmbeddingHead)) == {"head"}
    assert (
        failed_checks([model_checks.check_siamese_network, model_checks.check_shared_weights], SiameseNetwork)
        == {}
    )


def test_the_stand_in_head_is_taken_away_again():
    """Building the network swaps the name EmbeddingHead in the notebook's namespace for a moment only."""
    EmbeddingHead, SiameseNetwork = lesson_03_classes()
    model_checks.check_siamese_network(SiameseNetwork)
    assert SiameseNetwork.__init__.__globals__["EmbeddingHead"] is EmbeddingHead
    assert ref_model.SiameseNetwork().head.__class__ is ref_model.EmbeddingHead


def test_separate_networks_with_the_right_count_are_caught():
    """A second branch that differs without extra parameters cannot be told by the count; its outputs can."""

    class Split(ref_model.SiameseNetwork):
        def forward(self, a, b):
            return self.forward_ind(a), self.head(self.backbone(b) * 1.5)

    fails(model_checks.check_shared_weights, Split, match="forward_ind")


class HeadIgnoringInFeatures(nn.Module):
    """Wrong: takes in_features but always builds Linear(2304, ...)."""

    def __init__(self, in_features=2304, embedding_dim=256):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(2304, 1024), nn.ReLU(), nn.Linear(1024, embedding_dim), nn.ReLU()
        )

    def forward(self, x):
        return self.layers(x)


class NetworkIgnoringEmbeddingDim(nn.Module):
    """Wrong: takes embedding_dim but builds the head with its default size."""

    def __init__(self, embedding_dim=256):
        super().__init__()
        self.backbone = ref_backbone.CNNBackbone()
        self.head = ref_model.EmbeddingHead()

    def forward_ind(self, x):
        return self.head(self.backbone(x))

    def forward(self, img1, img2):
        return self.forward_ind(img1), self.forward_ind(img2)


def test_a_size_argument_taken_and_ignored_fails_the_hidden_cases():
    """The visible cases use the default sizes; the graded ones ask for others, as the exercises' contracts allow."""
    model_checks.check_head(HeadIgnoringInFeatures)
    fails(model_checks.check_head, HeadIgnoringInFeatures, match="nn.Linear(in_features, 1024)", hidden=True)
    model_checks.check_siamese_network(NetworkIgnoringEmbeddingDim)
    fails(
        model_checks.check_siamese_network, NetworkIgnoringEmbeddingDim, match="pass the size on", hidden=True
    )
