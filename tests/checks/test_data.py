"""``autograder.checks.data`` (lesson 01): other correct pair datasets pass; each typical bug fails what it breaks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from helpers import assert_fails_exactly, failed_checks
from helpers.checks import DATASET_CHECKS
from torch.utils.data import Dataset

from autograder.checks import data as data_checks
from autograder.checks.report import CheckFailure
from solutions import data as ref_data

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
    """Draws all partners once in __init__ (fresh pairs per instance), uniform over the fitting images."""

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
                j = random.choice([k for k, label in enumerate(labels) if label != c])
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


class ClassFirstPartner(_Modified):
    """The coin says 'different': first a class, uniformly among the others, then an image of it (on a dataset with
    one large class its images are partners far less often than their number says)."""

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        if coin < 0.5:
            pool = self.same_class[int(label1)]
        else:
            classes = [c for c in sorted(self.same_class) if c != int(label1) and len(self.same_class[c])]
            scaled = u * len(classes)
            pool = self.same_class[classes[int(scaled)]]
            u = scaled % 1
        image2, label2 = self.dataset[int(pool[int(u * len(pool))])]
        return image1, image2, torch.tensor([float(int(label1) != int(label2))])


class HighestClassLeftOut(_Modified):
    """An off-by-one (range(num_classes - 1)): a different-class partner never comes from the highest class."""

    def __getitem__(self, index):
        image1, label1 = self.dataset[index]
        coin, u = self._uniforms(index)
        top = max(self.same_class)
        pool = self.same_class[int(label1)]
        if coin >= 0.5:
            pool = [i for c, images in self.same_class.items() if c not in (int(label1), top) for i in images]
        image2, label2 = self.dataset[int(pool[int(u * len(pool))])]
        return image1, image2, torch.tensor([float(int(label1) != int(label2))])


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
    ClassFirstPartner: {"pair_balance": "is a class chosen first"},
    HighestClassLeftOut: {"pair_balance": "is a class left out"},
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
