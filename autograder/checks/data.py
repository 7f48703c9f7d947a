"""Checks for lesson 01: ``SiameseDataset(dataset)``, pairs ``(image1, image2, label)`` with 0 = same class, 1
= different.

The checks wrap small made-up datasets in the student's class: ``SyntheticFashionMNIST`` (Fashion-MNIST's
format) and ``IndexedImages``, whose image ``i`` is the constant ``(i + 1) / (n + 1)``, so that every
partner can be traced back to its index and class. Any correct way of drawing the partner passes:
index lists per class, rejection sampling as in the original, with or without the image itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .. import syllabus
from . import questions, transcript
from .report import (
    CheckFailure,
    check,
    describe,
    fail,
    passed,
    run_student,
    run_student_expecting,
    to_float,
    type_name,
)
from .transcript import derive

EXERCISE = syllabus.label("1.1")
SIGMAS = 5.0  # binomial tolerance of the balance checks


class IndexedImages(Dataset):
    """A torchvision-like dataset whose image ``i`` is the constant ``(i + 1) / (n + 1)`` and whose class is
    ``labels[i]``.

    With ``with_targets=False`` it has no ``.targets``: the classes are only known from the items.
    """

    def __init__(self, labels: list[int], with_targets: bool = True) -> None:
        self._labels = [int(c) for c in labels]
        if with_targets:
            self.targets = torch.tensor(self._labels, dtype=torch.int64)
        self.classes = [f"class {c}" for c in range(max(self._labels) + 1)]

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, int]:
        n = len(self._labels)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        return torch.full((1, 28, 28), (index + 1) / (n + 1), dtype=torch.float32), self._labels[index]


def class_counts_labels(counts: list[int], seed: int) -> list[int]:
    """Labels with ``counts[c]`` images of class ``c``, in a seeded random order."""
    labels = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(counts)])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return labels[order].tolist()


def _synthetic(num_images: int, seed: int) -> Dataset:
    from data_utils.synthetic import SyntheticFashionMNIST

    return SyntheticFashionMNIST(num_images, seed=seed)


class _Lookup:
    """Finds the index of an image of a dataset by its exact bytes."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.labels: list[int] = []
        self.images: list[torch.Tensor] = []
        self.by_bytes: dict[bytes, list[int]] = {}
        for i in range(len(dataset)):
            image, label = dataset[i]
            self.images.append(image)
            self.labels.append(int(label))
            self.by_bytes.setdefault(_key(image), []).append(i)
        record = transcript.current()
        if record is not None:  # an answer that is one of these images is recorded as its index
            record.remember([image.detach() for image in self.images if isinstance(image, torch.Tensor)])

    def find(self, image: Any) -> int | None:
        if not isinstance(image, torch.Tensor):
            return None
        found = self.by_bytes.get(_key(image))
        return found[0] if found else None


def _key(image: torch.Tensor) -> bytes:
    return (
        image.detach().cpu().contiguous().to(torch.float32).numpy().tobytes()
        + str(tuple(image.shape)).encode()
    )


@dataclass
class _Draw:
    index: int
    partner: int
    anchor_class: int
    partner_class: int
    label: float


def _make_pairs(SiameseDataset: Any, dataset: Dataset, description: str) -> Any:
    return run_student(EXERCISE, f"SiameseDataset(dataset) on {description}", SiameseDataset, dataset)


def _item(pairs: Any, index: int, description: str) -> Any:
    return run_student(EXERCISE, f"pairs[{index}] on {description}", lambda: pairs[index])


def _split_item(item: Any, index: int, description: str) -> tuple[Any, Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 3:
        hint = None
        if isinstance(item, (tuple, list)) and len(item) == 2:
            hint = "return all three: (image1, image2, label)"
        elif isinstance(item, dict):
            hint = "return a tuple (image1, image2, label), not a dict"
        fail(
            "pairs[i] is a tuple (image1, image2, label)",
            input=f"pairs[{index}] on {description}",
            expected="a tuple of 3",
            got=f"{type(item).__name__}" + (f" of length {len(item)}" if hasattr(item, "__len__") else ""),
            hint=hint,
        )
    return item[0], item[1], item[2]


def _label_value(label: Any, index: int, description: str) -> float:
    value = to_float(label)
    if value is None or value not in (0.0, 1.0):
        fail(
            "the label is a single value, 0.0 (same class) or 1.0 (different classes)",
            input=f"pairs[{index}] on {description}",
            expected="tensor([0.]) or tensor([1.])",
            got=describe(label),
        )
    return value


def _draw(pairs: Any, lookup: _Lookup, index: int, description: str) -> _Draw:
    _, image2, label = _split_item(_item(pairs, index, description), index, description)
    partner = lookup.find(image2)
    if partner is None:
        fail(
            "image2 is one of the wrapped dataset's images, unchanged",
            input=f"pairs[{index}] on {description}",
            got=f"image2 = {describe(image2)}",
            hint="dataset[j] returns (image, label): take the image as it is, image2, _ = dataset[j]"
            if isinstance(image2, (tuple, list))
            else "return dataset[j][0] itself, without converting or normalising it",
        )
    return _Draw(
        index, partner, lookup.labels[index], lookup.labels[partner], _label_value(label, index, description)
    )


def _draws(pairs: Any, lookup: _Lookup, indices: list[int], description: str) -> list[_Draw]:
    return [_draw(pairs, lookup, i, description) for i in indices]


# ---------------------------------------------------------------- check_pair_items


def _check_items_on(SiameseDataset: Any, dataset: Dataset, description: str, indices: list[int]) -> None:
    pairs = _make_pairs(SiameseDataset, dataset, description)
    n = len(dataset)
    length = run_student(EXERCISE, f"len(pairs) on {description}", len, pairs)
    if length != n:
        fail(
            "len(pairs) is the length of the wrapped dataset (one pair per image)",
            input=description,
            expected=n,
            got=length,
            hint="__len__ should return len(self.dataset)",
        )
    lookup = _Lookup(dataset)
    for index in indices:
        image1, image2, label = _split_item(_item(pairs, index, description), index, description)
        where = f"pairs[{index}] on {description}"
        _check_item_images(image1, image2, lookup, index, where)
        _check_label_type(label, where)
        _label_value(label, index, description)


def _check_item_images(image1: Any, image2: Any, lookup: _Lookup, index: int, where: str) -> None:
    """Both images are the dataset's tensors, unchanged; the first is image ``index``."""
    reference_image = lookup.images[index]
    for name, image in (("image1", image1), ("image2", image2)):
        if not isinstance(image, torch.Tensor):
            fail(
                f"{name} is an image tensor like the dataset's",
                input=where,
                expected=describe(reference_image).split(", values")[0],
                got=type_name(image),
                hint="dataset[j] returns (image, label): keep only the image, image, _ = dataset[j]"
                if isinstance(image, (tuple, list))
                else None,
            )
        if image.shape != reference_image.shape or image.dtype != reference_image.dtype:
            fail(
                f"{name} has the shape and dtype of the dataset's images",
                input=where,
                expected=f"shape {list(reference_image.shape)}, dtype {reference_image.dtype}",
                got=f"shape {list(image.shape)}, dtype {image.dtype}",
                hint="return the dataset's image tensor as it is (no squeeze, no conversion)",
            )
    if not torch.equal(image1, reference_image):
        found = lookup.find(image1)
        fail(
            "image1 of pairs[i] is image i of the dataset",
            input=where,
            expected=f"dataset[{index}][0]",
            got=f"image {found} of the dataset"
            if found is not None
            else "an image that is not in the dataset",
            hint="image1 must be dataset[index][0]; only the second image is drawn at random",
        )
    if lookup.find(image2) is None:
        fail("image2 is one of the wrapped dataset's images, unchanged", input=where, got=describe(image2))


def _check_label_type(label: Any, where: str) -> None:
    """The label is a float32 tensor of shape [1]."""
    if not isinstance(label, torch.Tensor):
        fail(
            "the label is a tensor",
            input=where,
            expected="a float32 tensor of shape [1], e.g. torch.tensor([1.0])",
            got=type_name(label),
            hint="wrap the value: torch.tensor([float(label1 != label2)])",
        )
    if label.dtype != torch.float32:
        fail(
            "the label is float32",
            input=where,
            expected="dtype float32",
            got=f"dtype {label.dtype}",
            hint="torch.tensor([1.0]) is float32; torch.tensor([1]) or a bool gives another dtype "
            "(use dtype=torch.float32)",
        )
    if tuple(label.shape) != (1,):
        hint = (
            "use torch.tensor([value]) (a list of one value) to get shape [1]" if label.dim() == 0 else None
        )
        fail(
            "the label has shape [1]",
            input=where,
            expected="shape [1]",
            got=f"shape {list(label.shape)}",
            hint=hint,
        )


def _check_loader(SiameseDataset: Any, dataset: Dataset, description: str, batch_size: int) -> None:
    pairs = _make_pairs(SiameseDataset, dataset, description)
    batches = run_student(
        EXERCISE,
        f"iterating a DataLoader(pairs, batch_size={batch_size}) on {description}",
        lambda: list(DataLoader(pairs, batch_size=batch_size, shuffle=False, num_workers=0)),
    )
    n = len(dataset)
    expected_batches = math.ceil(n / batch_size)
    if len(batches) != expected_batches:
        fail(
            "a DataLoader over the pairs gives one batch per batch_size images",
            input=description,
            expected=expected_batches,
            got=len(batches),
        )
    image1, image2, label = batches[0]
    ok = (
        tuple(image1.shape) == (batch_size, 1, 28, 28)
        and tuple(image2.shape) == (batch_size, 1, 28, 28)
        and tuple(label.shape) == (batch_size, 1)
        and label.dtype == torch.float32
    )
    if not ok:
        fail(
            "a DataLoader batch is (images [B, 1, 28, 28], images [B, 1, 28, 28], labels [B, 1] float32)",
            input=f"DataLoader(pairs, batch_size={batch_size}) on {description}",
            got=f"{describe(image1).split(', values')[0]}; {describe(image2).split(', values')[0]}; "
            f"{describe(label).split(', values')[0]}",
        )


@check
def check_pair_items(SiameseDataset: Any, hidden: bool = False) -> None:
    """``len(pairs) == len(dataset)``; ``pairs[i]`` is ``(image i, a dataset image, float32 label of shape [1])``."""
    synthetic = _synthetic(60, seed=derive(11))
    _check_items_on(SiameseDataset, synthetic, "a synthetic Fashion-MNIST of 60 images", [0, 1, 17, 42, 59])
    indexed = IndexedImages(class_counts_labels([3] * 10, seed=derive(1)))
    _check_items_on(SiameseDataset, indexed, "30 images of 10 classes", [0, 5, 29])
    if hidden:
        _check_items_on(
            SiameseDataset,
            _synthetic(40, seed=derive(12)),
            "a synthetic Fashion-MNIST of 40 images",
            list(range(40)),
        )
        odd = IndexedImages(class_counts_labels([2, 9, 3, 3, 2, 2, 2, 2, 2, 4], seed=derive(2)))
        _check_items_on(SiameseDataset, odd, "31 images, unequal classes", list(range(31)))
        _check_loader(SiameseDataset, odd, "31 images, unequal classes", batch_size=4)
        try:  # without `.targets`; code that reads `.targets` (fine for torchvision's datasets) is not penalised
            _check_items_on(
                SiameseDataset,
                IndexedImages(class_counts_labels([2] * 10, seed=derive(7)), with_targets=False),
                "20 images of 10 classes, a dataset without .targets",
                list(range(20)),
            )
        except CheckFailure as error:
            if not _missing_targets(error):
                raise
    passed(
        "SiameseDataset: len(pairs) == len(dataset); pairs[i] = (image i, an image of the dataset, "
        "float32 label of shape [1])" + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- check_pair_labels


def _check_labels(draws: list[_Draw], description: str) -> None:
    wrong = [d for d in draws if d.label != float(d.anchor_class != d.partner_class)]
    if not wrong:
        return
    if all(d.label == float(d.anchor_class == d.partner_class) for d in draws):
        d = wrong[0]
        fail(
            "label 0 means same class, 1 means different classes",
            input=f"pairs[{d.index}] on {description}: image {d.index} of class {d.anchor_class}, "
            f"partner image {d.partner} of class {d.partner_class}",
            expected=float(d.anchor_class != d.partner_class),
            got=d.label,
            hint="labels are inverted: 1 should mean different (0 = same class), in every pair",
        )
    values = {d.label for d in draws}
    d = wrong[0]
    hint = None
    if len(values) == 1:
        hint = f"every label is {values.pop()}: compute it from the two classes, 1.0 if they differ, else 0.0"
    else:
        hint = "compute the label from the classes of the two images actually returned (after drawing the partner)"
    fail(
        "label 0 means same class, 1 means different classes",
        input=f"pairs[{d.index}] on {description}: image {d.index} of class {d.anchor_class}, "
        f"partner image {d.partner} of class {d.partner_class}",
        expected=float(d.anchor_class != d.partner_class),
        got=d.label,
        hint=hint,
    )


def _labels_on(SiameseDataset: Any, dataset: Dataset, description: str, rounds: int) -> None:
    pairs = _make_pairs(SiameseDataset, dataset, description)
    lookup = _Lookup(dataset)
    indices = [i for _ in range(rounds) for i in range(len(dataset))]
    _check_labels(_draws(pairs, lookup, indices, description), description)


def _missing_targets(error: CheckFailure) -> bool:
    cause = error.__cause__
    return isinstance(cause, AttributeError) and "targets" in str(cause)


@check
def check_pair_labels(SiameseDataset: Any, hidden: bool = False) -> None:
    """Over many pairs, the label is 0 exactly when both images have the same class."""
    _labels_on(
        SiameseDataset, _synthetic(60, seed=derive(21)), "a synthetic Fashion-MNIST of 60 images", rounds=4
    )
    if hidden:
        _labels_on(
            SiameseDataset,
            _synthetic(90, seed=derive(22)),
            "a synthetic Fashion-MNIST of 90 images",
            rounds=4,
        )
        counts = [2, 20, 4, 4, 4, 4, 4, 4, 4, 4]
        _labels_on(
            SiameseDataset,
            IndexedImages(class_counts_labels(counts, seed=derive(3))),
            "54 images, unequal classes",
            rounds=4,
        )
        # A dataset without `.targets`: classes only from the items. Code that reads `.targets`
        # (fine for torchvision's FashionMNIST) is not penalised here.
        try:
            _labels_on(
                SiameseDataset,
                IndexedImages(class_counts_labels([3] * 10, seed=derive(4)), with_targets=False),
                "30 images of 10 classes, a dataset without .targets",
                rounds=4,
            )
        except CheckFailure as error:
            if not _missing_targets(error):
                raise
    passed(
        "SiameseDataset: the label is 0 exactly for same-class pairs and 1 for different-class pairs"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- check_pair_balance


def _within(k: int, n: int, p: float = 0.5) -> bool:
    return abs(k / n - p) <= SIGMAS * math.sqrt(p * (1 - p) / n)


def _interval(n: int, p: float = 0.5) -> str:
    half = SIGMAS * math.sqrt(p * (1 - p) / n)
    return f"between {max(p - half, 0):.0%} and {min(p + half, 1):.0%} same-class pairs"


def _balance_fail(what: str, draws: list[_Draw], description: str) -> None:
    same = sum(d.anchor_class == d.partner_class for d in draws)
    n = len(draws)
    fraction = same / n
    if fraction < 0.3:
        hint = (
            "too few same-class pairs: flip a fair coin first (same or different), then draw the partner "
            "among the images that fit (a partner drawn from all images is same-class only ~1 time in 10)"
        )
    elif fraction > 0.7:
        hint = "too many same-class pairs: the coin should give 'different class' half of the time"
    else:
        hint = (
            "flip a fair coin for every item (e.g. torch.rand(1) < 0.5), and draw a different-class partner "
            "only among images of other classes"
        )
    fail(
        f"about half of the pairs are same-class pairs ({what})",
        input=f"{n} items of {description}",
        expected=_interval(n),
        got=f"{fraction:.1%} ({same} of {n})",
        hint=hint,
    )


class _Sampler:
    """Draws many pairs from the student's dataset, whichever way it randomises.

    Most implementations draw a fresh partner on every ``pairs[i]``: then one instance is sampled
    round after round. Some draw all partners once in ``__init__`` (the same pair for every call):
    then every round uses a fresh instance. The first two rounds tell the two apart.
    """

    def __init__(self, SiameseDataset: Any, dataset: Dataset, description: str) -> None:
        self.cls, self.dataset, self.description = SiameseDataset, dataset, description
        self.lookup = _Lookup(dataset)
        self.pairs = _make_pairs(SiameseDataset, dataset, description)
        every = list(range(len(dataset)))
        first = _draws(self.pairs, self.lookup, every, description)
        second = _draws(self.pairs, self.lookup, every, description)
        self.fixed = all(a.partner == b.partner and a.label == b.label for a, b in zip(first, second))
        self.initial = first if self.fixed else first + second

    def rounds(self, count: int, indices: list[int] | None = None) -> list[_Draw]:
        """``count`` rounds over ``indices`` (default: every item)."""
        indices = list(range(len(self.dataset))) if indices is None else indices
        draws = []
        for _ in range(count):
            pairs = _make_pairs(self.cls, self.dataset, self.description) if self.fixed else self.pairs
            draws.extend(_draws(pairs, self.lookup, indices, self.description))
        return draws

    def all_items(self, count: int) -> list[_Draw]:
        """At least ``count`` rounds over every item, the first ones included."""
        done = len(self.initial) // len(self.dataset)
        return self.initial + self.rounds(max(count - done, 0))


def _check_spread(draws: list[_Draw], description: str, class_sizes: dict[int, int]) -> None:
    by_class: dict[int, list[_Draw]] = {}
    for d in draws:
        by_class.setdefault(d.anchor_class, []).append(d)
    for c, group in sorted(by_class.items()):
        different = [d for d in group if d.partner_class != c]
        same = [d for d in group if d.partner_class == c]
        if len(different) >= 20 and len({d.partner_class for d in different}) < 4:
            classes = sorted({d.partner_class for d in different})
            fail(
                "different-class partners come from all the other classes",
                input=f"images of class {c} in {description}",
                expected="partners of several classes",
                got=f"{len(different)} partners, all of classes {classes}",
                hint="draw the partner uniformly among all images of other classes (not a fixed or neighbouring class)",
            )
        if len(different) >= 20 and len({d.partner for d in different}) < 3:
            fail(
                "different-class partners are drawn at random",
                input=f"images of class {c} in {description}",
                expected="many different partner images",
                got=f"{len({d.partner for d in different})} distinct images",
                hint="draw the partner at random every time (not the first image of the list)",
            )
        if len(same) >= 10 and class_sizes[c] >= 5:  # in a small class the image itself is a likely partner
            itself = sum(d.partner == d.index for d in same)
            if itself > len(same) / 2:
                fail(
                    "a same-class partner is drawn at random among the images of the class",
                    input=f"images of class {c} in {description}",
                    expected="mostly other images of the class",
                    got=f"the image itself in {itself} of {len(same)} same-class pairs",
                    hint="image2 is image1 itself: draw another image of the same class at random",
                )
            if len({d.partner for d in same}) < 3:
                fail(
                    "a same-class partner is drawn at random among the images of the class",
                    input=f"images of class {c} in {description}",
                    expected="many different partner images",
                    got=f"only images {sorted({d.partner for d in same})}",
                    hint="draw the partner at random every time (not the first image of the class)",
                )


def _check_balance_on(
    SiameseDataset: Any, dataset: Dataset, description: str, rounds: int
) -> tuple[_Sampler, list[_Draw]]:
    sampler = _Sampler(SiameseDataset, dataset, description)
    draws = sampler.all_items(rounds)
    same = sum(d.anchor_class == d.partner_class for d in draws)
    if not _within(same, len(draws)):
        _balance_fail("over all items", draws, description)
    labels = sampler.lookup.labels
    counts = {c: labels.count(c) for c in set(labels)}
    _check_spread(draws, description, counts)
    _check_partners_by_image(draws, counts, description)
    return sampler, draws


def _check_unbalanced(
    SiameseDataset: Any, counts: list[int], seed: int, rounds: int, rare_rounds: int
) -> None:
    labels = class_counts_labels(counts, seed=derive(seed))
    dataset = IndexedImages(labels)
    description = f"{len(labels)} images, class sizes {counts}"
    sampler, draws = _check_balance_on(SiameseDataset, dataset, description, rounds)
    big = max(range(len(counts)), key=lambda c: counts[c])
    big_draws = [d for d in draws if d.anchor_class == big]
    if not _within(sum(d.partner_class == big for d in big_draws), len(big_draws)):
        _balance_fail(f"for the images of the large class {big}, not only overall", big_draws, description)
    rare = min(range(len(counts)), key=lambda c: counts[c])
    rare_indices = [i for i, c in enumerate(labels) if c == rare]
    rare_draws = sampler.rounds(rare_rounds, rare_indices)
    if not _within(sum(d.partner_class == rare for d in rare_draws), len(rare_draws)):
        _balance_fail(
            f"for the images of class {rare}, which has only {counts[rare]} images", rare_draws, description
        )


def _check_partners_by_image(draws: list[_Draw], counts: dict[int, int], description: str) -> None:
    """A different-class partner is drawn uniformly among the images of the other classes: so each class gives
    about its share of images of the partners (5 sigma), whether a class was chosen first or left out."""
    total = sum(counts.values())
    different = [d for d in draws if d.partner_class != d.anchor_class]
    for k in sorted(counts):
        shares = [counts[k] / (total - counts[d.anchor_class]) for d in different if d.anchor_class != k]
        expected = sum(shares)
        spread = SIGMAS * math.sqrt(sum(p * (1 - p) for p in shares))
        found = sum(d.partner_class == k for d in different)
        if abs(found - expected) > spread:
            fail(
                "a different-class partner is drawn uniformly among all images of the other classes",
                input=f"{len(shares)} different-class pairs of images outside class {k}, in {description}",
                expected=f"about {expected:.0f} (±{spread:.0f}) partners from class {k}, which holds "
                f"{counts[k]} of the {total} images",
                got=f"{found}",
                hint="draw the partner among all images of the other classes (is a class left out, or is a class "
                "chosen first and then an image of it?): every fitting image must be equally likely",
            )


@check
def check_pair_balance(SiameseDataset: Any, hidden: bool = False) -> None:
    """About half the pairs are same-class (5 sigma), partners are spread over classes, small classes work."""
    _check_balance_on(
        SiameseDataset, _synthetic(200, seed=derive(31)), "a synthetic Fashion-MNIST of 200 images", rounds=3
    )
    _check_unbalanced(SiameseDataset, [2, 30, 4, 4, 4, 4, 4, 4, 4, 4], seed=5, rounds=2, rare_rounds=40)
    if hidden:
        _check_balance_on(
            SiameseDataset,
            _synthetic(300, seed=derive(32)),
            "a synthetic Fashion-MNIST of 300 images",
            rounds=3,
        )
        _check_unbalanced(SiameseDataset, [4, 50, 4, 4, 2, 4, 4, 4, 4, 4], seed=6, rounds=6, rare_rounds=60)
    passed(
        "SiameseDataset: about half of the pairs are same-class, partners are drawn at random from "
        "the fitting images, and a class of 2 images works" + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- check_pair_seeding


def _seeded(SiameseDataset: Any, dataset: Dataset, seed: int, description: str) -> Any:
    return run_student(
        EXERCISE, f"SiameseDataset(dataset, seed={seed}) on {description}", SiameseDataset, dataset, seed=seed
    )


def _call_set_epoch(pairs: Any, epoch: int) -> None:
    if not callable(getattr(pairs, "set_epoch", None)):
        fail(
            "SiameseDataset has a method set_epoch(epoch)",
            expected="pairs.set_epoch(1) stores the epoch",
            got="no set_epoch method",
            hint="add `def set_epoch(self, epoch): self.epoch = epoch`, and use "
            "self.epoch when drawing a seeded pair",
        )
    pairs.set_epoch(epoch)


def _set_epoch(pairs: Any, epoch: int, description: str) -> None:
    run_student(EXERCISE, f"pairs.set_epoch({epoch}) on {description}", _call_set_epoch, pairs, epoch)


def _pairs_of(draws: list[_Draw]) -> list[tuple[int, float]]:
    return [(d.partner, d.label) for d in draws]


def _changed(first: list[_Draw], second: list[_Draw]) -> int:
    return sum(a != b for a, b in zip(_pairs_of(first), _pairs_of(second)))


def _check_same(first: list[_Draw], second: list[_Draw], prop: str, where: str, hint: str) -> None:
    changed = _changed(first, second)
    if changed:
        fail(
            prop,
            input=where,
            expected=f"the same partner for every index (of {len(first)})",
            got=f"{changed} of {len(first)} pairs changed; first: partners {[d.partner for d in first[:8]]}, "
            f"then: {[d.partner for d in second[:8]]}",
            hint=hint,
        )


def _check_new(first: list[_Draw], second: list[_Draw], prop: str, where: str, hint: str) -> None:
    changed = _changed(first, second)
    if 2 * changed < len(first):  # a fresh draw keeps a pair only by chance (here well under 1 in 10)
        fail(
            prop,
            input=where,
            expected=f"most of the {len(first)} pairs new",
            got=f"{changed} changed",
            hint=hint,
        )


def _seeding_on(
    SiameseDataset: Any, dataset: Dataset, description: str, seed: int, indices: list[int]
) -> None:
    lookup = _Lookup(dataset)
    pairs = _seeded(SiameseDataset, dataset, seed, description)
    epoch0 = _draws(pairs, lookup, indices, description)
    where = f"SiameseDataset(dataset, seed={seed}) on {description}, items {indices[0]}..{indices[-1]}"
    _check_same(
        epoch0,
        _draws(pairs, lookup, indices, description),
        "with a seed, reading item i again gives the same pair",
        where,
        "draw the coin and the partner from a generator made for this item, "
        "e.g. np.random.default_rng([self.seed, self.epoch, index])",
    )
    twin = _seeded(SiameseDataset, dataset, seed, description)
    _check_same(
        epoch0,
        _draws(twin, lookup, indices, description),
        "two datasets with the same seed give the same pairs",
        where,
        "keep the seed (self.seed = seed) and derive every draw from it, not from a shared generator",
    )
    _set_epoch(pairs, 1, description)
    _check_new(
        epoch0,
        _draws(pairs, lookup, indices, description),
        "set_epoch(1) gives new pairs",
        where,
        "use the epoch in the item's generator: np.random.default_rng([self.seed, self.epoch, index])",
    )
    _set_epoch(pairs, 0, description)
    _check_same(
        epoch0,
        _draws(pairs, lookup, indices, description),
        "set_epoch(0) gives back the pairs of epoch 0",
        where,
        "the pairs should depend only on (seed, epoch, index)",
    )
    other = _seeded(SiameseDataset, dataset, seed + 1, description)
    _check_new(
        epoch0,
        _draws(other, lookup, indices, description),
        "another seed gives other pairs",
        where,
        "use the seed when drawing: np.random.default_rng([self.seed, self.epoch, index])",
    )


def _fresh_without_seed(SiameseDataset: Any, dataset: Dataset, description: str, reads: int) -> None:
    lookup = _Lookup(dataset)
    pairs = _make_pairs(SiameseDataset, dataset, description)
    partners = {d.partner for d in _draws(pairs, lookup, [0] * reads, description)}
    if len(partners) < 2:
        fail(
            "without a seed, every read of an item draws a fresh pair",
            input=f"pairs[0] read {reads} times on {description}",
            expected="several different partners",
            got=f"always image {partners.pop()}",
            hint="with seed=None draw from PyTorch's global generator (torch.rand), as the exercise says",
        )


@check
def check_pair_seeding(SiameseDataset: Any, hidden: bool = False) -> None:
    """With ``seed``, item i is the same pair on every read and in a twin; ``set_epoch`` and another seed give
    new pairs."""
    seed = derive(41) % 10_000
    indexed = IndexedImages(class_counts_labels([10] * 4, seed=derive(3)))
    _seeding_on(SiameseDataset, indexed, "40 images of 4 classes", seed, list(range(24)))
    _fresh_without_seed(SiameseDataset, indexed, "40 images of 4 classes", reads=30)
    if hidden:
        _seeding_on(
            SiameseDataset,
            _synthetic(60, seed=derive(13)),
            "a synthetic Fashion-MNIST of 60 images",
            derive(42) % 10_000,
            list(range(0, 60, 2)),
        )
    passed(
        "SiameseDataset: with a seed, every item is reproducible (also in a second dataset with that seed); "
        "set_epoch and another seed give new pairs; without a seed, every read is fresh"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- check_pair_one_class


@check
def check_pair_one_class(SiameseDataset: Any, hidden: bool = False) -> None:
    """A dataset with fewer than two classes (no different-class pair exists) raises ``ValueError``."""
    cases = [("8 images, all of class 3", IndexedImages([3] * 8))]
    if hidden:
        cases += [
            ("1 image", IndexedImages([0])),
            ("5 images of class 0, without .targets", IndexedImages([0] * 5, False)),
        ]
    for description, dataset in cases:
        what = f"SiameseDataset(dataset) on {description}"
        outcome = run_student_expecting(ValueError, EXERCISE, what, SiameseDataset, dataset)
        if outcome is not None:
            fail(
                "a dataset with fewer than two classes raises ValueError",
                input=what,
                expected="ValueError",
                got=outcome,
                hint="count the classes in __init__ (e.g. len(labels.unique())) and "
                "`raise ValueError(...)` below 2: no different-class partner could ever be drawn",
            )
    passed(
        "SiameseDataset: a dataset with fewer than two classes raises ValueError"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- question 1.2

DRAWS_QUESTION = "expected_draws (question 1.2)"
DRAWS_WHY = (
    "a random pick fits a same-class coin with probability 1/k and a different-class coin with probability "
    "(k - 1)/k; the number of picks until one fits is geometric, with mean 1/p, so the mean over the fair "
    "coin is ½·k + ½·k/(k - 1)"
)


@transcript.judge_only
def draws_for(k: int) -> float:
    """The mean number of picks per pair: ``k/2 + k/(2(k - 1))``."""
    return 0.5 * k + 0.5 * k / (k - 1)


@check
def check_expected_draws(expected_draws: Any, hidden: bool = False) -> None:
    """Question 1.2: the mean number of picks of the original's rejection sampling, for class counts drawn per run."""
    generator = transcript.generator_for(32)
    cases = [
        (questions.draw_int(generator, 2, 9),),
        (questions.draw_int(generator, 11, 100),),
        (questions.draw_int(generator, 101, 1000),),
    ]
    if hidden:
        cases += [(2,), (questions.draw_int(generator, 3, 30),)]
    answers = questions.answers(DRAWS_QUESTION, expected_draws, "expected_draws", cases)
    if transcript.probing():
        return
    questions.verdict(
        "expected_draws",
        answers,
        cases,
        draws_for,
        DRAWS_WHY,
        "the right mean number of picks for every class count" + (" [with hidden cases]" if hidden else ""),
    )


# ---------------------------------------------------------------- question 1.3

ALWAYS_DIFFERENT_QUESTION = "always_different_accuracy (question 1.3)"
ALWAYS_DIFFERENT_WHY = (
    "with a partner drawn from all images, its class is the anchor's with probability 1/k (k balanced "
    "classes), so the pair is different-class, and 'always different' right, with probability "
    "(k - 1)/k"
)


@transcript.judge_only
def different_share(k: int) -> float:
    """The share of different-class pairs among random pairs of ``k`` balanced classes: ``(k - 1)/k``."""
    return (k - 1) / k


@check
def check_always_different_accuracy(always_different_accuracy: Any, hidden: bool = False) -> None:
    """Question 1.3: the accuracy of 'always different' on random pairs, for class counts drawn per run."""
    generator = transcript.generator_for(33)
    cases = [(questions.draw_int(generator, 2, 9),), (questions.draw_int(generator, 11, 1000),)]
    if hidden:
        cases += [(questions.draw_int(generator, 3, 50),)]
    answers = questions.answers(
        ALWAYS_DIFFERENT_QUESTION, always_different_accuracy, "always_different_accuracy", cases
    )
    if transcript.probing():
        return
    questions.verdict(
        "always_different_accuracy",
        answers,
        cases,
        different_share,
        ALWAYS_DIFFERENT_WHY,
        "the right accuracy for every class count" + (" [with hidden cases]" if hidden else ""),
    )
