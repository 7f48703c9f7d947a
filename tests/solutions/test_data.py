"""solutions.data: the pair data set (lesson 01) and its tensor-indexing twin, PairSampler."""

import math
from collections import Counter

import pytest
import torch
from torch.utils.data import Dataset, Subset

from solutions.data import PairSampler, SiameseDataset


class IndexDataset(Dataset):
    """A torchvision-like data set whose image ``i`` is a tiny tensor holding ``i``, so pairs can be traced."""

    def __init__(self, labels):
        self.targets = torch.as_tensor(labels, dtype=torch.int64)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return torch.tensor([float(index)]), int(self.targets[index])


def balanced_labels(per_class=10, num_classes=10):
    """Labels 0..num_classes-1, ``per_class`` of each, interleaved."""
    return torch.arange(per_class * num_classes) % num_classes


def within_sigmas(count, n, p, sigmas=5.0):
    """Whether a binomial count is within ``sigmas`` standard deviations of ``n * p``."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def trace(pairs, index):
    """The data set indices of both images of pair ``index``, and its label."""
    image1, image2, label = pairs[index]
    return int(image1.item()), int(image2.item()), label


# ---------------------------------------------------------------- SiameseDataset


def test_length_is_wrapped_length(synthetic_train):
    """One pair per image of the wrapped data set."""
    assert len(SiameseDataset(synthetic_train)) == len(synthetic_train)


def test_item_shapes_and_dtypes(synthetic_train):
    """Items are two float32 [1, 28, 28] images and a float32 label of shape [1]."""
    image1, image2, label = SiameseDataset(synthetic_train, seed=0)[3]
    assert image1.shape == image2.shape == (1, 28, 28)
    assert image1.dtype == image2.dtype == torch.float32
    assert label.shape == (1,) and label.dtype == torch.float32
    assert float(label) in (0.0, 1.0)


def test_first_image_is_item_index(synthetic_train):
    """Pair ``i`` starts with image ``i``."""
    image1, _, _ = SiameseDataset(synthetic_train, seed=0)[7]
    assert torch.equal(image1, synthetic_train[7][0])


def test_label_is_zero_iff_same_class():
    """Label 0 exactly when both images have the same class, 1 otherwise."""
    data = IndexDataset(balanced_labels())
    pairs = SiameseDataset(data, seed=1)
    for epoch in range(3):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            first, second, label = trace(pairs, i)
            assert first == i
            assert float(label) == float(data.targets[first] != data.targets[second])


def test_pairs_balanced():
    """About half the pairs are same-class (binomial, 5 sigma)."""
    pairs = SiameseDataset(IndexDataset(balanced_labels(per_class=100)), seed=2)
    n = len(pairs)
    different = sum(int(pairs[i][2]) for i in range(n))
    assert within_sigmas(different, n, 0.5), f"{different} different pairs of {n}"


def test_different_partner_uniform_over_other_classes():
    """For a class-0 image, the partner of a "different" pair is spread evenly over classes 1..9."""
    data = IndexDataset(balanced_labels())
    pairs = SiameseDataset(data, seed=3)
    anchors = [i for i in range(len(data)) if int(data.targets[i]) == 0]
    partner_classes = Counter()
    for epoch in range(300):
        pairs.set_epoch(epoch)
        for i in anchors:
            _, second, label = trace(pairs, i)
            if float(label) == 1.0:
                partner_classes[int(data.targets[second])] += 1
    n = sum(partner_classes.values())
    assert set(partner_classes) == set(range(1, 10))
    for c in range(1, 10):
        assert within_sigmas(partner_classes[c], n, 1 / 9), dict(partner_classes)


def test_seeded_pairs_reproducible():
    """Two data sets with the same seed give the same pairs, item by item."""
    data = IndexDataset(balanced_labels())
    a, b = SiameseDataset(data, seed=5), SiameseDataset(data, seed=5)
    assert [trace(a, i)[1] for i in range(len(data))] == [trace(b, i)[1] for i in range(len(data))]


def test_set_epoch_changes_pairs():
    """Another epoch gives other partners; going back gives the first ones again."""
    pairs = SiameseDataset(IndexDataset(balanced_labels()), seed=5)
    first = [trace(pairs, i)[1] for i in range(len(pairs))]
    pairs.set_epoch(1)
    second = [trace(pairs, i)[1] for i in range(len(pairs))]
    pairs.set_epoch(0)
    assert first != second
    assert [trace(pairs, i)[1] for i in range(len(pairs))] == first


def test_unseeded_pairs_valid():
    """Without a seed, items are still valid pairs with correct labels."""
    data = IndexDataset(balanced_labels())
    pairs = SiameseDataset(data)
    for i in range(len(pairs)):
        first, second, label = trace(pairs, i)
        assert first == i and float(label) == float(data.targets[first] != data.targets[second])


def test_dataset_without_targets(synthetic_train):
    """A wrapped data set without ``.targets`` (a Subset) works; labels come from its items."""
    subset = Subset(synthetic_train, range(40))
    pairs = SiameseDataset(subset, seed=0)
    assert len(pairs) == 40
    assert pairs[0][2].shape == (1,)


def test_one_class_raises():
    """A data set of a single class cannot make "different" pairs: ValueError."""
    with pytest.raises(ValueError):
        SiameseDataset(IndexDataset([3] * 10))


# ---------------------------------------------------------------- PairSampler


def test_sampler_labels_match_classes():
    """Pair labels are 0 exactly when the partner has the image's class."""
    labels = balanced_labels()
    index = torch.arange(len(labels)).repeat(20)
    partner, pair_label = PairSampler(labels).sample(index, generator=torch.Generator().manual_seed(0))
    assert partner.shape == index.shape and pair_label.dtype == torch.float32
    assert torch.equal(pair_label, (labels[index] != labels[partner]).float())


def test_sampler_balanced():
    """About half the drawn pairs are same-class (binomial, 5 sigma)."""
    labels = balanced_labels()
    index = torch.arange(len(labels)).repeat(100)
    _, pair_label = PairSampler(labels).sample(index, generator=torch.Generator().manual_seed(1))
    assert within_sigmas(int(pair_label.sum()), len(index), 0.5)


def test_sampler_different_partner_uniform():
    """Partners of "different" pairs for class-0 images are spread evenly over classes 1..9."""
    labels = balanced_labels()
    index = torch.zeros(9000, dtype=torch.int64)  # image 0 has class 0
    same = torch.zeros(9000, dtype=torch.bool)
    partner, _ = PairSampler(labels).sample(index, generator=torch.Generator().manual_seed(2), same=same)
    counts = torch.bincount(labels[partner], minlength=10).tolist()
    assert counts[0] == 0
    for c in range(1, 10):
        assert within_sigmas(counts[c], 9000, 1 / 9), counts


def test_sampler_same_forces_coin():
    """``same=True`` gives only same-class partners, ``same=False`` only different ones."""
    labels = balanced_labels()
    sampler = PairSampler(labels)
    index = torch.arange(len(labels))
    for value in (True, False):
        partner, pair_label = sampler.sample(index, same=torch.full((len(index),), value))
        assert torch.equal(labels[partner] == labels[index], torch.full((len(index),), value))
        assert torch.all(pair_label == float(not value))


def test_sampler_reproducible_with_generator():
    """The same generator seed draws the same partners."""
    sampler = PairSampler(balanced_labels())
    index = torch.arange(100)
    a = sampler.sample(index, generator=torch.Generator().manual_seed(9))
    b = sampler.sample(index, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_sampler_with_absent_classes():
    """Labels with gaps (classes 0, 1, 3 and 4 absent): right labels, partners in proportion to class size."""
    labels = torch.tensor([2] * 5 + [5] * 10 + [9] * 5)
    sampler = PairSampler(labels)
    index = torch.zeros(6000, dtype=torch.int64)  # image 0 has class 2
    partner, pair_label = sampler.sample(
        index, generator=torch.Generator().manual_seed(3), same=torch.zeros(6000, dtype=torch.bool)
    )
    assert torch.all(pair_label == 1.0)
    counts = Counter(labels[partner].tolist())
    assert set(counts) == {5, 9}
    assert within_sigmas(counts[5], 6000, 10 / 15) and within_sigmas(counts[9], 6000, 5 / 15)
    everyone = torch.arange(len(labels))
    partner, pair_label = sampler.sample(everyone, generator=torch.Generator().manual_seed(4))
    assert torch.equal(pair_label, (labels[everyone] != labels[partner]).float())


def test_sampler_one_class_raises():
    """A single class cannot make "different" pairs: ValueError."""
    with pytest.raises(ValueError):
        PairSampler(torch.tensor([4, 4, 4]))
