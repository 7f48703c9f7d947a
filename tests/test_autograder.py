"""The autograder's checks: the reference passes, other correct solutions pass, typical bugs fail with a
useful message."""

from __future__ import annotations

import functools
import inspect
import json
import math
import random
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_fails_exactly, failed_checks
from torch import nn
from torch.utils.data import Dataset

import autograder
from autograder.checks import backbone as backbone_checks
from autograder.checks import data as data_checks
from autograder.checks import evaluate as evaluate_checks
from autograder.checks import loss as loss_checks
from autograder.checks import model as model_checks
from autograder.checks import oneshot as oneshot_checks
from autograder.checks import report, transcript
from autograder.checks import train as train_checks
from autograder.checks.report import CheckFailure
from solutions import backbone as ref_backbone
from solutions import data as ref_data
from solutions import evaluate as ref_evaluate
from solutions import loss as ref_loss
from solutions import model as ref_model
from solutions import oneshot as ref_oneshot
from solutions import train as ref_train

# ---------------------------------------------------------------- every check, with the reference

DATASET_CHECKS = [
    data_checks.check_pair_items,
    data_checks.check_pair_labels,
    data_checks.check_pair_balance,
    data_checks.check_pair_seeding,
    data_checks.check_pair_one_class,
]
LOSS_CHECKS = [
    loss_checks.check_loss_similar_pairs,
    loss_checks.check_loss_hinge,
    loss_checks.check_loss_beyond_margin,
    loss_checks.check_loss_margin_argument,
    loss_checks.check_loss_label_shapes,
    loss_checks.check_loss_label_count,
    loss_checks.check_loss_gradients,
    loss_checks.check_loss_gradient_at_zero,
]

REFERENCE_CASES = [
    *[(data_check, (ref_data.SiameseDataset,)) for data_check in DATASET_CHECKS],
    (data_checks.check_expected_draws, (ref_data.expected_draws,)),
    (data_checks.check_always_different_accuracy, (ref_data.always_different_accuracy,)),
    (backbone_checks.check_backbone_shapes, (ref_backbone.CNNBackbone,)),
    (backbone_checks.check_backbone_layers, (ref_backbone.CNNBackbone,)),
    (backbone_checks.check_backbone_forward, (ref_backbone.CNNBackbone,)),
    (backbone_checks.check_backbone_side, (ref_backbone.backbone_side,)),
    (backbone_checks.check_conv_parameters, (ref_backbone.conv_parameters,)),
    (model_checks.check_head, (ref_model.EmbeddingHead,)),
    (model_checks.check_head_parameters, (ref_model.head_parameters,)),
    (model_checks.check_siamese_network, (ref_model.SiameseNetwork,)),
    (model_checks.check_shared_weights, (ref_model.SiameseNetwork,)),
    (model_checks.check_all_zero_share, (ref_model.all_zero_share,)),
    *[(loss_check, (ref_loss.contrastive_loss,)) for loss_check in LOSS_CHECKS],
    (loss_checks.check_loss_gradient_by_hand, (ref_loss.contrastive_loss_gradient,)),
    (loss_checks.check_numerical_gradient, (ref_loss.numerical_gradient,)),
    (loss_checks.check_distance_after_step, (ref_loss.distance_after_step,)),
    (loss_checks.check_collapsed_loss, (ref_loss.collapsed_loss,)),
    (train_checks.check_get_device, (ref_train.get_device,)),
    (train_checks.check_train_history, (ref_train.train_one_epoch,)),
    (train_checks.check_train_step, (ref_train.train_one_epoch,)),
    (train_checks.check_train_learns, (ref_train.train_one_epoch,)),
    (train_checks.check_weight_without_zero_grad, (ref_train.weight_without_zero_grad,)),
    (train_checks.check_logged_losses, (ref_train.logged_losses,)),
    (evaluate_checks.check_embed, (ref_evaluate.embed,)),
    (evaluate_checks.check_verification, (ref_evaluate.verification_accuracy, ref_evaluate.best_threshold)),
    (evaluate_checks.check_roc_auc, (ref_evaluate.roc_auc,)),
    (evaluate_checks.check_roc_auc_one_kind, (ref_evaluate.roc_auc,)),
    (evaluate_checks.check_overlap_best_accuracy, (ref_evaluate.overlap_best_accuracy,)),
    (evaluate_checks.check_overlap_auc, (ref_evaluate.overlap_auc,)),
    (oneshot_checks.check_sample_episodes, (ref_oneshot.sample_episodes,)),
    (oneshot_checks.check_sample_episodes_refuses, (ref_oneshot.sample_episodes,)),
    (oneshot_checks.check_episode_accuracies, (ref_oneshot.episode_accuracies,)),
    (oneshot_checks.check_mean_with_interval, (ref_oneshot.mean_with_interval,)),
    (oneshot_checks.check_batch_hard_loss, (ref_oneshot.batch_hard_loss,)),
]


def _id(case):
    return case[0].__name__


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
@pytest.mark.parametrize("case", REFERENCE_CASES, ids=_id)
def test_reference_passes(case, hidden, capsys):
    check, args = case
    assert check(*args, hidden=hidden) is None
    out, err = capsys.readouterr()
    assert out.startswith("[PASS] ") and out.count("[PASS]") == 1
    assert err == ""


@pytest.mark.parametrize("seed", [1, 987_654_321_987], ids=["seed_1", "seed_large"])
@pytest.mark.parametrize("case", REFERENCE_CASES, ids=_id)
def test_reference_passes_on_a_grading_runs_fresh_inputs(case, seed):
    """The graded path: the probe records on inputs drawn from the run's seed, the judge replays and decides."""
    check, args = case
    record = transcript.Transcript(seed)
    with transcript.running(record):
        check(*args, hidden=True)
    verdict = report.judge(check, True, json.loads(json.dumps(record.answers)), seed)
    assert verdict.passed, verdict.text


def test_package_exports_every_check():
    names = {check.__name__ for check, _ in REFERENCE_CASES}
    assert names | {"CheckFailure"} == set(autograder.__all__)
    assert autograder.CheckFailure is CheckFailure and issubclass(CheckFailure, AssertionError)


def test_checks_leave_global_random_state_alone():
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    threads = torch.get_num_threads()
    data_checks.check_pair_balance(ref_data.SiameseDataset)
    train_checks.check_train_step(ref_train.train_one_epoch)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])
    assert torch.get_num_threads() == threads
    assert torch.is_grad_enabled()


def test_a_check_is_reproducible():
    """The same (random) student code gives the same outcome on every run: no luck in grading."""
    outcomes = []
    for _ in range(2):
        try:
            data_checks.check_pair_balance(Coin60Dataset, hidden=True)
            outcomes.append("pass")
        except CheckFailure as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


# ---------------------------------------------------------------- reporting


def noisy_loss(out1, out2, label, margin=2.0):
    """A correct loss that also warns and writes to stderr (as a tqdm bar would)."""
    print("debugging to stderr", file=sys.stderr)
    warnings.warn("a student's warning", stacklevel=2)
    return ref_loss.contrastive_loss(out1, out2, label, margin)


def test_nothing_reaches_stderr_even_from_student_code(capsys):
    loss_checks.check_loss_similar_pairs(noisy_loss, hidden=True)
    out, err = capsys.readouterr()
    assert "[PASS]" in out
    assert err == ""


def test_a_failing_check_writes_nothing_to_stderr(capsys):
    with pytest.raises(CheckFailure):
        loss_checks.check_loss_similar_pairs(lambda a, b, y, margin=2.0: noisy_loss(a, b, y, margin) * 2)
    out, err = capsys.readouterr()
    assert err == "" and "[PASS]" not in out


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise 4.1: contrastive_loss")


class StubDataset(Dataset):
    def __init__(self, dataset):
        raise NotImplementedError("Exercise 1.1: SiameseDataset.__init__")


class StubModule(nn.Module):
    def __init__(self):
        raise NotImplementedError("Exercise 2.1: __init__")


@pytest.mark.parametrize(
    "check, args",
    [
        (data_checks.check_pair_items, (StubDataset,)),
        (data_checks.check_pair_balance, (StubDataset,)),
        (backbone_checks.check_backbone_layers, (StubModule,)),
        (model_checks.check_shared_weights, (StubModule,)),
        (loss_checks.check_loss_gradients, (stub,)),
        (train_checks.check_get_device, (stub,)),
        (train_checks.check_train_step, (stub,)),
        (evaluate_checks.check_embed, (stub,)),
        (evaluate_checks.check_verification, (stub, stub)),
        (evaluate_checks.check_roc_auc, (stub,)),
        (oneshot_checks.check_sample_episodes, (stub,)),
        (oneshot_checks.check_batch_hard_loss, (stub,)),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_unfinished_stub_is_named(check, args, capsys):
    with pytest.raises(CheckFailure) as info:
        check(*args)
    message = str(info.value)
    assert message.startswith("[FAIL] ")
    assert "unfinished" in message and "NotImplementedError" in message
    assert isinstance(info.value.__cause__, NotImplementedError)
    assert capsys.readouterr().err == ""


def test_student_exception_is_reported_and_chained():
    def broken(out1, out2, label, margin=2.0):
        return out1 @ out2  # shapes do not fit

    with pytest.raises(CheckFailure) as info:
        loss_checks.check_loss_similar_pairs(broken)
    assert "raised RuntimeError" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_endless_loop_fails_within_the_time_limit(monkeypatch):
    monkeypatch.setattr(report, "TIME_LIMIT_S", 0.5)

    class Endless(ref_data.SiameseDataset):
        def __getitem__(self, index):
            while True:  # a rejection loop that never accepts
                try:
                    pass
                except Exception:  # swallowing everything must not hide the time limit
                    pass

    with pytest.raises(CheckFailure, match="did not finish within"):
        data_checks.check_pair_items(Endless)


def test_a_check_that_stumbles_still_fails_cleanly():
    @report.check
    def check_something(student, hidden=False):
        report.run_student("the exercise", "student()", student).shape  # noqa: B018  (a result without a shape)

    with pytest.raises(CheckFailure, match=r"^\[FAIL\] check_something could not evaluate") as info:
        check_something(lambda: 42)
    assert isinstance(info.value.__cause__, AttributeError)


def test_failure_message_format():
    error = report.failure(
        "a property", input="x", expected=1.0, got=torch.tensor([2.0, 3.0]), hint="a mistake"
    )
    lines = str(error).splitlines()
    assert lines[0] == "[FAIL] a property"
    assert lines[1] == "  input: x"
    assert lines[2] == "  expected: 1"
    assert lines[3].startswith("  got: tensor of shape [2], dtype float32, values [2, 3]")
    assert lines[4] == "  likely mistake: a mistake"


def _fails(check, *args, match: str, hidden: bool = False) -> str:
    with pytest.raises(CheckFailure) as info:
        check(*args, hidden=hidden)
    message = str(info.value)
    assert message.startswith("[FAIL] ")
    assert match.lower() in message.lower(), message
    return message


# ---------------------------------------------------------------- lesson 01: SiameseDataset


class OriginalRejection(Dataset):
    """The original notebook: a coin, then random.randint until the class fits; only dataset[i] is used."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, index):
        img1, label1 = self.dataset[index]
        should_get_same_class = random.randint(0, 1)
        while True:
            img2, label2 = self.dataset[random.randint(0, len(self.dataset) - 1)]
            if (label1 == label2) == bool(should_get_same_class):
                break
        return img1, img2, torch.from_numpy(np.array([int(label1 != label2)], dtype=np.float32))

    def __len__(self):
        return len(self.dataset)


class TargetsIndexLists(Dataset):
    """Class-index sampling from ``dataset.targets`` with NumPy's generator; excludes the image itself."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.targets = np.asarray(dataset.targets)
        self.rng = np.random.default_rng()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        c = self.targets[i]
        if self.rng.random() < 0.5:
            choices = np.flatnonzero((self.targets == c) & (np.arange(len(self.targets)) != i))
        else:
            choices = np.flatnonzero(self.targets != c)
        j = int(self.rng.choice(choices))
        return self.dataset[i][0], self.dataset[j][0], torch.tensor([float(self.targets[j] != c)])


class PrecomputedPairs(Dataset):
    """Draws all partners once in __init__ (fresh pairs per instance), class-uniform for different pairs."""

    def __init__(self, dataset):
        self.dataset = dataset
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
        by_class = {}
        for i, c in enumerate(labels):
            by_class.setdefault(c, []).append(i)
        self.pairs = []
        for c in labels:
            if torch.rand(1).item() < 0.5:
                j = random.choice(by_class[c])
            else:
                other = random.choice([k for k in by_class if k != c])
                j = random.choice(by_class[other])
            self.pairs.append((j, float(labels[j] != c)))

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        j, label = self.pairs[i]
        return self.dataset[i][0], self.dataset[j][0], torch.tensor([label], dtype=torch.float32)


class OwnGenerator(ref_data.SiameseDataset):
    """Draws with its own unseeded torch.Generator: every instance repeats the same sequence of pairs."""

    def __init__(self, dataset):
        super().__init__(dataset)
        self.generator = torch.Generator()

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = torch.rand(2, generator=self.generator).tolist()
        pool = self.same_class[int(label1)] if coin < 0.5 else self.other_class[int(label1)]
        image2, label2 = self.dataset[int(pool[int(u * len(pool))])]
        return image1, image2, torch.tensor([float(int(label1) != int(label2))])


@pytest.mark.parametrize(
    "cls", [OriginalRejection, TargetsIndexLists, PrecomputedPairs, OwnGenerator], ids=lambda c: c.__name__
)
@pytest.mark.parametrize(
    "check",
    [data_checks.check_pair_items, data_checks.check_pair_labels, data_checks.check_pair_balance],
    ids=lambda c: c.__name__,
)
def test_other_correct_datasets_pass(cls, check):
    check(cls, hidden=False)
    check(cls, hidden=True)


class _Modified(ref_data.SiameseDataset):
    """The reference with one bug: draws come from ``_uniforms``, which honours the seed as the exercise asks."""

    def _uniforms(self, index):
        if self.seed is None:
            return torch.rand(2).tolist()
        return np.random.default_rng([self.seed, self.epoch, index]).random(2).tolist()

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        pool = self.same_class[int(label1)] if coin < 0.5 else self.other_class[int(label1)]
        image2, label2 = self.dataset[int(pool[int(u * len(pool))])]
        return image1, image2, torch.tensor([float(int(label1) != int(label2))])


class InvertedLabels(_Modified):
    def __getitem__(self, index):
        a, b, y = super().__getitem__(index)
        return a, b, 1 - y


class IntLabel(_Modified):
    def __getitem__(self, index):
        a, b, y = super().__getitem__(index)
        return a, b, y.long()


class ScalarLabel(_Modified):
    def __getitem__(self, index):
        a, b, y = super().__getitem__(index)
        return a, b, y[0]


class RandomFirstImage(_Modified):
    def __getitem__(self, index):
        return super().__getitem__(int(torch.randint(len(self), (1,))))


class WrongLength(_Modified):
    def __len__(self):
        return 2 * len(self.dataset)


class LabelFromCoin(_Modified):
    """Label from the coin, but the 'different' partner may have the same class."""

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        if coin < 0.5:
            j = int(self.same_class[int(label1)][int(u * len(self.same_class[int(label1)]))])
            return image1, self.dataset[j][0], torch.tensor([0.0])
        j = int(u * len(self.dataset))
        return image1, self.dataset[j][0], torch.tensor([1.0])


class NoCoin(_Modified):
    """Partner uniform over all images: about 10% same-class pairs."""

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        image2, label2 = self.dataset[int(self._uniforms(index)[1] * len(self.dataset))]
        return image1, image2, torch.tensor([float(label1 != label2)])


class Coin70(_Modified):
    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        pool = self.same_class[int(label1)] if coin < 0.7 else self.other_class[int(label1)]
        image2, label2 = self.dataset[int(pool[int(u * len(pool))])]
        return image1, image2, torch.tensor([float(label1 != label2)])


class Coin60Dataset(Coin70):
    """A milder imbalance, only used to show that outcomes are reproducible."""

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        pool = self.same_class[int(label1)] if torch.rand(1).item() < 0.6 else self.other_class[int(label1)]
        image2, label2 = self.dataset[int(pool[int(torch.randint(len(pool), (1,)))])]
        return image1, image2, torch.tensor([float(label1 != label2)])


class SelfAsPartner(_Modified):
    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        if coin < 0.5:
            return image1, image1, torch.tensor([0.0])
        pool = self.other_class[int(label1)]
        return image1, self.dataset[int(pool[int(u * len(pool))])][0], torch.tensor([1.0])


class NextClassOnly(_Modified):
    """Different-class partners always from the next class."""

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        if coin < 0.5:
            pool = self.same_class[int(label1)]
        else:
            c = (int(label1) + 1) % len(self.same_class)
            pool = self.same_class[c]
        image2, label2 = self.dataset[int(pool[int(u * len(pool))])]
        return image1, image2, torch.tensor([float(label1 != label2)])


class PartnerFromAllWhenDifferent(_Modified):
    """The coin says 'different' but the partner is drawn from all images (label still right)."""

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        if coin < 0.5:
            pool = self.same_class[int(label1)]
            image2, label2 = self.dataset[int(pool[int(u * len(pool))])]
        else:
            image2, label2 = self.dataset[int(u * len(self.dataset))]
        return image1, image2, torch.tensor([float(label1 != label2)])


class SeedIgnored(_Modified):
    """Takes the seed but always draws from the global generator."""

    def _uniforms(self, index):
        return torch.rand(2).tolist()


class EpochIgnored(_Modified):
    def _uniforms(self, index):
        if self.seed is None:
            return torch.rand(2).tolist()
        return np.random.default_rng([self.seed, index]).random(2).tolist()


class OneSeededGenerator(_Modified):
    """One generator seeded once: item i changes on every read, and depends on the order of the reads."""

    def _uniforms(self, index):
        if self.seed is None:
            return torch.rand(2).tolist()
        if not hasattr(self, "rng"):
            self.rng = np.random.default_rng(self.seed)
        return self.rng.random(2).tolist()


class NoSetEpoch(_Modified):
    set_epoch = property()  # reading it raises AttributeError: as if it were never written


class NoClassCheck(_Modified):
    """Builds the index lists without checking that a second class exists."""

    def __init__(self, dataset, seed=None):
        self.dataset, self.seed, self.epoch = dataset, seed, 0
        labels = ref_data.dataset_labels(dataset)
        classes = labels.unique().tolist()
        self.same_class = {c: torch.nonzero(labels == c).flatten() for c in classes}
        self.other_class = {c: torch.nonzero(labels != c).flatten() for c in classes}


# Each single bug → {the check it fails: a fragment of that check's message}; every other check passes.
DATASET_BUGS = {
    InvertedLabels: {"pair_labels": "labels are inverted: 1 should mean different"},
    IntLabel: {"pair_items": "float32"},
    ScalarLabel: {"pair_items": "shape [1]"},
    RandomFirstImage: {
        "pair_items": "image1 must be dataset[index][0]",
        "pair_labels": "label 0 means same class",
        "pair_balance": "same-class pairs",
        "pair_seeding": "reading item i again gives the same pair",
    },
    WrongLength: {"pair_items": "len(self.dataset)"},
    LabelFromCoin: {"pair_labels": "compute the label from the classes", "pair_balance": "same-class pairs"},
    NoCoin: {"pair_balance": "flip a fair coin first"},
    Coin70: {"pair_balance": "too many same-class pairs"},
    SelfAsPartner: {"pair_balance": "image2 is image1 itself"},
    NextClassOnly: {"pair_balance": "all images of other classes"},
    PartnerFromAllWhenDifferent: {"pair_balance": "same-class pairs"},
    SeedIgnored: {"pair_seeding": "np.random.default_rng([self.seed, self.epoch, index])"},
    EpochIgnored: {"pair_seeding": "set_epoch(1) gives new pairs"},
    OneSeededGenerator: {"pair_seeding": "reading item i again gives the same pair"},
    NoSetEpoch: {"pair_seeding": "def set_epoch(self, epoch)"},
    NoClassCheck: {"pair_one_class": "fewer than two classes raises ValueError"},
}


@pytest.mark.parametrize("cls", DATASET_BUGS, ids=lambda c: c.__name__)
def test_a_dataset_bug_fails_exactly_the_properties_it_breaks(cls):
    assert_fails_exactly(DATASET_CHECKS, DATASET_BUGS[cls], cls)


@pytest.mark.parametrize(
    "cls", [OriginalRejection, TargetsIndexLists, PrecomputedPairs, OwnGenerator], ids=lambda c: c.__name__
)
def test_a_dataset_without_the_seed_argument_loses_only_the_seeding_points(cls):
    """Correct pairs without the spec's ``seed`` (and, for some, without its ValueError): lesson 1's next cell
    (``SiameseDataset(train_set, seed=0)``) would fail, so the seeding check does, with a hint."""
    failed = failed_checks(DATASET_CHECKS, cls)
    assert "pair_seeding" in failed and set(failed) <= {"pair_seeding", "pair_one_class"}, failed
    assert "argument named seed" in failed["pair_seeding"], failed["pair_seeding"]


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
    [SeparateAttributesBackbone, FunctionalBackbone, ModuleListBackbone, SequentialSubclassBackbone],
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
    _fails(check, cls, match=match, hidden=hidden)


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
    _fails(model_checks.check_head, EmbeddingHead, match="forgot the last ReLU")
    _fails(model_checks.check_head, EmbeddingHead, match="forgot the last ReLU", hidden=True)
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
    message = _fails(
        model_checks.check_siamese_network, SiameseNetwork, match="forward_ind(x) is head(backbone(x))"
    )
    assert match in message, message


def test_a_network_that_reaches_into_its_head_is_told_to_call_it():
    EmbeddingHead, SiameseNetwork = lesson_03_classes(network_source=SKIPS_HEAD_RELU)
    model_checks.check_head(EmbeddingHead, hidden=True)
    _fails(model_checks.check_siamese_network, SiameseNetwork, match="use the head only by calling it")


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

    _fails(model_checks.check_shared_weights, Split, match="forward_ind")


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


CORRECT_LOSSES = [loss_norm_relu, loss_sqrt_eps, loss_original, loss_cdist, loss_linalg]


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
    """The graded class's hidden_only_bug (tests/test_grading_robust.py) passes every visible check."""
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
    _fails(loss_checks.check_loss_gradient_by_hand, gradient, match=match, hidden=True)


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
        (numerical_in_place, "leaves x as it was"),
        (numerical_all_at_once, "one element at a time"),
        (numerical_by_autograd, "raised RuntimeError"),
    ],
    ids=["one_sided", "moves_x", "all_at_once", "autograd"],
)
def test_numerical_gradient_mistakes_are_named(numerical, match):
    _fails(loss_checks.check_numerical_gradient, numerical, match=match, hidden=True)


def test_a_loss_with_a_bare_square_root_fails_only_at_zero():
    """The d = 0 case is the one place a bare square root differs; the other checks cannot see it."""
    failed = failed_checks(LOSS_CHECKS, loss_manual_sqrt)
    assert set(failed) == {"loss_gradient_at_zero"}, failed
    assert "rows" in failed["loss_gradient_at_zero"] and "square root" in failed["loss_gradient_at_zero"]


# ---------------------------------------------------------------- lesson 05: get_device, train_one_epoch


def device_simple():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_index():
    if torch.cuda.is_available():
        return torch.device("cuda:0")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_accelerator():
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator if accelerator is not None else torch.device("cpu")


@pytest.mark.parametrize(
    "get_device", [device_simple, device_index, device_accelerator], ids=lambda f: f.__name__
)
def test_other_correct_get_device_pass(get_device):
    train_checks.check_get_device(get_device)
    train_checks.check_get_device(get_device, hidden=True)


@pytest.mark.parametrize(
    "get_device, match",
    [
        (lambda: torch.device("cuda"), "never assume a GPU"),
        (lambda: torch.device("cpu"), "use the GPU when"),
        (lambda: "cuda" if torch.cuda.is_available() else "cpu", "torch.device('cuda'), not the string"),
    ],
)
def test_get_device_bugs_fail(get_device, match):
    _fails(train_checks.check_get_device, get_device, match=match)


def test_get_device_mps_before_cuda_fails_hidden():
    def mps_first():
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")

    train_checks.check_get_device(mps_first)  # the visible cases never offer both
    _fails(train_checks.check_get_device, mps_first, match="check CUDA before MPS", hidden=True)


def test_simulated_devices_are_restored():
    available = torch.cuda.is_available
    with train_checks.simulated_devices(cuda=True, mps=True):
        assert torch.cuda.is_available() and torch.backends.mps.is_available()
    assert torch.cuda.is_available is available


def _loop(net, loader, optimizer, device, margin=2.0, log_every=10, *, mistake=None):
    """train_one_epoch with switches; ``mistake=None`` is correct."""
    if mistake != "no_train":
        net.train()
    history = []
    for step, (img1, img2, label) in enumerate(loader):
        if mistake == "label_not_moved":
            img1, img2 = img1.to(device), img2.to(device)
        elif mistake != "not_moved":
            img1, img2, label = img1.to(device), img2.to(device), label.to(device)
        out1, out2 = net(img1, img2)
        loss = ref_loss.contrastive_loss(out1, out2, label, 2.0 if mistake == "margin" else margin)
        if mistake == "step_before_backward":
            optimizer.step()
            optimizer.zero_grad()
            loss.backward()
        elif mistake == "zero_grad_step_backward":
            optimizer.zero_grad()
            optimizer.step()
            loss.backward()
        else:
            if mistake != "no_zero_grad":
                optimizer.zero_grad()
            loss.backward()
            if mistake != "no_step":
                optimizer.step()
        if mistake == "every_step" or step % log_every == 0:
            history.append(loss if mistake == "tensor" else loss.item())
    return history


def train_zero_grad_first(net, loader, optimizer, device, margin=2.0, log_every=10):
    net.train()
    loss_history = []
    for step, (img1, img2, label) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        out1 = net.forward_ind(img1.to(device))
        out2 = net.forward_ind(img2.to(device))
        loss = ref_loss.contrastive_loss(out1, out2, label.to(device).squeeze(1), margin=margin)
        loss.backward()
        optimizer.step()
        if not step % log_every:
            loss_history.append(float(loss))
    return loss_history


def train_zero_grad_after_step(net, loader, optimizer, device, margin=2.0, log_every=10):
    """zero_grad at the end of each iteration, i.e. before the next backward (the net starts without grads)."""
    net.train()
    optimizer.zero_grad()
    history = []
    for step, (img1, img2, label) in enumerate(loader):
        out1, out2 = net(img1.to(device), img2.to(device))
        loss = ref_loss.contrastive_loss(out1, out2, label.to(device), margin)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        if step % log_every == 0:
            history.append(loss.detach().cpu().item())
    return history


def train_with_tqdm(net, loader, optimizer, device, margin=2.0, log_every=10):
    """A correct loop with a progress bar (on stderr, which the checks hide)."""
    from tqdm.auto import tqdm

    return _loop(net, tqdm(loader), optimizer, device, margin, log_every)


TRAIN_CHECKS = [
    train_checks.check_train_history,
    train_checks.check_train_step,
    train_checks.check_train_learns,
]


@pytest.mark.parametrize(
    "train",
    [train_zero_grad_first, train_zero_grad_after_step, train_with_tqdm, _loop],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("check", TRAIN_CHECKS, ids=lambda c: c.__name__)
def test_other_correct_training_loops_pass(train, check, capsys):
    check(train)
    check(train, hidden=True)
    assert capsys.readouterr().err == ""


TRAINING_CHECKS = [
    train_checks.check_train_history,
    train_checks.check_train_step,
    train_checks.check_train_learns,
]
CRASH = dict.fromkeys(("train_history", "train_step", "train_learns"), "move every tensor to the same device")

# Each single mistake → {the check it fails: a fragment of that check's message}; every other check passes.
# train_history trains at lr = 0, so only logging matters there; train_learns is the whole loop end to end, so every
# mistake in the update fails it too; a loop that crashes fails every check that runs it.
TRAINING_BUGS = {
    "no_zero_grad": {"train_step": "missing zero_grad: gradients accumulate", "train_learns": "zero_grad"},
    "no_step": {"train_step": "no optimizer.step()", "train_learns": "optimizer.step()"},
    "zero_grad_step_backward": {"train_step": "no optimizer.step()", "train_learns": "optimizer.step()"},
    "step_before_backward": dict.fromkeys(
        ("train_history", "train_step", "train_learns"), "step() before loss.backward()"
    ),
    "margin": {"train_step": "the margin argument is ignored"},
    "no_train": {"train_step": "net.train() is missing"},
    "not_moved": dict(CRASH, train_history="move every tensor to the same device"),
    "label_not_moved": CRASH,
    "every_step": {"train_history": "logged every step"},
    "tensor": {"train_history": "append loss.item(), not the tensor"},
}


@pytest.mark.parametrize("mistake", TRAINING_BUGS)
def test_a_training_mistake_fails_exactly_the_checks_it_breaks(mistake):
    assert_fails_exactly(TRAINING_CHECKS, TRAINING_BUGS[mistake], functools.partial(_loop, mistake=mistake))


def test_a_loop_that_never_moves_its_batches_is_told_so_in_the_history_check():
    _fails(
        train_checks.check_train_history,
        functools.partial(_loop, mistake="not_moved"),
        match="never moved to the training device",
    )


def test_training_zero_grad_between_backward_and_step_fails():
    def loop(net, loader, optimizer, device, margin=2.0, log_every=10):
        net.train()
        history = []
        for step, (img1, img2, label) in enumerate(loader):
            out1, out2 = net(img1.to(device), img2.to(device))
            loss = ref_loss.contrastive_loss(out1, out2, label.to(device), margin)
            loss.backward()
            optimizer.zero_grad()
            optimizer.step()
            if step % log_every == 0:
                history.append(loss.item())
        return history

    _fails(train_checks.check_train_step, loop, match="zero_grad() between backward() and step() erases them")


def test_training_log_from_step_one_fails():
    def loop(net, loader, optimizer, device, margin=2.0, log_every=10):
        history = _loop(net, loader, optimizer, device, margin, log_every=1)
        return [v for step, v in enumerate(history, start=1) if step % log_every == 0]

    _fails(train_checks.check_train_history, loop, match="counting the steps from 0")


def test_training_without_return_fails():
    def loop(net, loader, optimizer, device, margin=2.0, log_every=10):
        _loop(net, loader, optimizer, device, margin, log_every)

    _fails(train_checks.check_train_history, loop, match="return the list")


# ---------------------------------------------------------------- lesson 06: embed, verification, ROC AUC


def embed_inference_mode(net, images, device):
    net.eval()
    with torch.inference_mode():
        return torch.cat([net.forward_ind(chunk.to(device)).float().cpu() for chunk in images.split(7)])


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
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_embed_bugs_fail(embed, match):
    _fails(evaluate_checks.check_embed, embed, match=match)


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
    _fails(evaluate_checks.check_verification, accuracy, threshold, match=match, hidden=hidden)


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


# ---------------------------------------------------------------- lesson 07: episodes, prototypes, interval, mining


def sampler_with(*changes: str):
    """The reference sampler with lines changed (old, new, old, new, ...): a typical bug."""
    import inspect
    import math as math_module

    source = inspect.getsource(ref_oneshot.sample_episodes)
    for old, new in zip(changes[::2], changes[1::2]):
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    namespace = {"torch": torch, "math": math_module, "Episodes": ref_oneshot.Episodes}
    exec(source, namespace)
    return namespace["sample_episodes"]


SAMPLER_BUGS = {
    "with replacement": (
        (
            "torch.randperm(len(by_class[int(c)]), generator=generator)[: k_shot + n_query]",
            "torch.randint(len(by_class[int(c)]), (k_shot + n_query,), generator=generator)",
        ),
        "all different",
    ),
    "the first classes": (
        ("pool[torch.randperm(len(pool), generator=generator)[:n_way]]", "pool[:n_way]"),
        "drawn at random",
    ),
    "the first images": (
        (
            "torch.randperm(len(by_class[int(c)]), generator=generator)[: k_shot + n_query]",
            "torch.arange(len(by_class[int(c)]))[: k_shot + n_query]",
        ),
        "drawn at random",
    ),
    "unseeded": (("torch.Generator().manual_seed(seed)", "torch.Generator().manual_seed(0)"), "another seed"),
    "any class": (
        (
            "pool = torch.tensor(classes)",
            "pool = labels.unique()",
            "for c in classes}",
            "for c in labels.unique().tolist()}",
        ),
        "from `classes`",
    ),
}


@pytest.mark.parametrize("name", SAMPLER_BUGS)
def test_a_sampler_bug_fails_the_property_it_breaks(name):
    changes, match = SAMPLER_BUGS[name]
    _fails(oneshot_checks.check_sample_episodes, sampler_with(*changes), match=match, hidden=True)


@pytest.mark.parametrize(
    "old, new",
    [("    if n_way > len(classes):", "    if False:"), ("    if too_few:", "    if False:")],
    ids=["too many classes", "too few images"],
)
def test_a_sampler_that_does_not_refuse_fails_the_refusal_check(old, new):
    _fails(
        oneshot_checks.check_sample_episodes_refuses,
        sampler_with(old, new),
        match="raises ValueError",
        hidden=True,
    )


def first_support_accuracies(embeddings, episodes):
    """The nearest first support, not the prototype: right for one shot only."""
    one_shot = ref_oneshot.Episodes(episodes.support[:, :, :1], episodes.query, episodes.classes)
    return ref_oneshot.episode_accuracies(embeddings, one_shot)


def nearest_support_accuracies(embeddings, episodes):
    """Each query to the row of its nearest single support."""
    e, n, k = episodes.support.shape
    q = episodes.query.shape[2]
    queries = embeddings[episodes.query].reshape(e, n * q, -1)
    distances = torch.cdist(queries, embeddings[episodes.support].reshape(e, n * k, -1))
    predicted = distances.argmin(dim=2) // k
    return (predicted == torch.arange(n).repeat_interleave(q)).float().mean(dim=1)


def class_number_accuracies(embeddings, episodes):
    """The nearest prototype compared with the class number instead of the row."""
    prototypes = embeddings[episodes.support].mean(dim=2)
    queries = embeddings[episodes.query]
    e, n, q, d = queries.shape
    nearest = torch.cdist(queries.reshape(e, n * q, d), prototypes).argmin(dim=2)
    truth = episodes.classes.repeat_interleave(q, dim=1)
    return (nearest == truth).float().mean(dim=1)


@pytest.mark.parametrize(
    "wrong, match",
    [
        (first_support_accuracies, "mean of the class's support"),
        (nearest_support_accuracies, "mean of the class's support"),
        (class_number_accuracies, "its position in the episode"),
        (
            lambda embeddings, episodes: ref_oneshot.episode_accuracies(embeddings, episodes).mean(),
            "one accuracy per episode",
        ),
    ],
    ids=["first support", "nearest support", "class number", "one mean"],
)
def test_an_accuracy_bug_is_named(wrong, match):
    _fails(oneshot_checks.check_episode_accuracies, wrong, match=match, hidden=True)


@pytest.mark.parametrize(
    "wrong, match",
    [
        (lambda v: (float(v.mean()), 1.959964 * float(v.std(correction=0)) / len(v) ** 0.5), "n - 1"),
        (lambda v: (float(v.mean()), float(v.std()) / len(v) ** 0.5), "1.96"),
        (lambda v: (float(v.mean()), 1.96 * float(v.std()) / len(v)), "square root"),
        (lambda v: (float(v.mean()), 1.96 * float(v.std())), "spread of single episodes"),
        (lambda v: float(v.mean()), "(mean, half_width)"),
    ],
    ids=["population std", "no 1.96", "divided by n", "no sqrt(n)", "one number"],
)
def test_an_interval_bug_is_named(wrong, match):
    _fails(oneshot_checks.check_mean_with_interval, wrong, match=match, hidden=True)


def hard_loss_with(old: str, new: str):
    """The reference batch-hard loss with one line changed."""
    import inspect
    import math as math_module

    source = inspect.getsource(ref_oneshot.batch_hard_loss)
    assert source.count(old) == 1, old
    namespace = {"torch": torch, "math": math_module}
    exec(source.replace(old, new), namespace)
    return namespace["batch_hard_loss"]


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("distances.masked_fill(same, math.inf)", "distances.masked_fill(itself, math.inf)", "nearest"),
        (
            "masked_fill(~same | itself, 0).amax(dim=1)",
            "masked_fill(~same | itself, 0).sum(1) / (same.sum(1) - 1)",
            "farthest same-class",
        ),
        ("farthest_same.pow(2) +", "farthest_same +", "square the same-class distance"),
        (").mean()", ").sum()", "not a sum"),
        (
            "distances = squared.clamp_min(1e-12).sqrt()",
            "distances = (embeddings[:, None] - embeddings[None]).pow(2).sum(-1).sqrt()",
            "finite gradient",
        ),
    ],
    ids=["other includes same", "mean same", "no square", "sum", "sqrt at 0"],
)
def test_a_hard_loss_bug_is_named(old, new, match):
    _fails(oneshot_checks.check_batch_hard_loss, hard_loss_with(old, new), match=match, hidden=True)


def test_a_float_loss_fails_with_a_reason():
    _fails(
        oneshot_checks.check_batch_hard_loss,
        lambda e, y, m: float(ref_oneshot.batch_hard_loss(e, y, m)),
        match="one-element tensor",
    )


def masked_with_infinities(embeddings, labels, margin):
    """A correct batch-hard loss that hides excluded distances with -inf and inf (every class has two images)."""
    distances = torch.cdist(embeddings, embeddings).pow(2).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(len(labels), dtype=torch.bool)
    farthest = distances.masked_fill(~same | itself, float("-inf")).amax(dim=1)
    nearest = distances.masked_fill(same, float("inf")).amin(dim=1)
    return (farthest**2 + torch.clamp(margin - nearest, min=0) ** 2).mean()


def looped_hard_loss(embeddings, labels, margin):
    """A correct batch-hard loss by a loop over the images."""
    terms = []
    for i in range(len(labels)):
        d = ((embeddings - embeddings[i]).pow(2).sum(1) + 1e-12).sqrt()
        same = labels == labels[i]
        same[i] = False
        terms.append(d[same].max() ** 2 + torch.relu(margin - d[labels != labels[i]].min()) ** 2)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("loss", [masked_with_infinities, looped_hard_loss], ids=lambda f: f.__name__)
def test_other_correct_hard_losses_pass(loss):
    oneshot_checks.check_batch_hard_loss(loss, hidden=True)


def test_an_infinite_loss_is_told_why():
    def all_hidden(embeddings, labels, margin):
        return masked_with_infinities(embeddings, labels, margin) * 0 + float("-inf")

    _fails(oneshot_checks.check_batch_hard_loss, all_hidden, match="finite number")
