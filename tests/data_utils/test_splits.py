"""data_utils.splits: one fixed validation split, never trained on, by the reference run or the lessons."""

from __future__ import annotations

import hashlib

import pytest
import torch

from data_utils.lessons import course_dataset
from data_utils.splits import split_indices, split_training_set
from data_utils.synthetic import SyntheticFashionMNIST
from solutions import fast, main
from solutions.evaluate import to_float_images


def test_the_split_of_fashion_mnist_is_fixed():
    """5,000 of the 60,000 training images, disjoint from the rest, the same in every run and on every machine.

    The README's figures depend on which images these are: a change of the split must be deliberate.
    """
    kept, held_out = split_indices(60_000)
    assert len(kept) == 55_000 and len(held_out) == 5_000
    assert torch.equal(torch.cat([kept, held_out]).sort().values, torch.arange(60_000))
    assert torch.equal(split_indices(60_000)[1], held_out)
    assert hashlib.sha256(held_out.numpy().tobytes()).hexdigest()[:16] == "fc1e7512c6ff77aa"


def test_the_subsets_hold_their_images_and_labels():
    full = SyntheticFashionMNIST(120, seed=3)
    train_part, validation = split_training_set(full)
    assert len(train_part) + len(validation) == 120 and len(validation) == 10
    index = int(validation.indices[4])
    assert torch.equal(validation.data[4], full.data[index]) and int(validation.targets[4]) == int(
        full.targets[index]
    )
    image, label = validation[4]
    assert torch.equal(image, full[index][0]) and label == full[index][1]


def test_the_lessons_validation_set_is_apart_from_their_training_set(monkeypatch):
    monkeypatch.setenv("SIAMESE_COURSE_QUICK", "1")
    train_set, validation = course_dataset("train", quiet=True), course_dataset("validation", quiet=True)
    assert not set(map(bytes, train_set.data.numpy())) & set(map(bytes, validation.data.numpy()))
    with pytest.raises(ValueError, match="split must be"):
        course_dataset("training")


def _rows(images: torch.Tensor) -> set[bytes]:
    """Each float image as bytes, whatever its memory layout."""
    return {bytes(row) for row in images.detach().float().cpu().contiguous().reshape(len(images), -1).numpy()}


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast_path", "original_pipeline"])
def test_no_training_batch_holds_a_validation_image(fast_path, tmp_path, monkeypatch):
    """Every image of every batch of a real (synthetic-data) reference run comes from the training part."""
    seen: set[bytes] = set()

    def recorded(batches):
        for img1, img2, label in batches:
            seen.update(_rows(img1) | _rows(img2))
            yield img1, img2, label

    if fast_path:
        original = fast.TensorPairLoader.__iter__
        monkeypatch.setattr(fast.TensorPairLoader, "__iter__", lambda self: recorded(original(self)))
    else:
        original_epoch = main.train_one_epoch
        monkeypatch.setattr(
            main,
            "train_one_epoch",
            lambda net, loader, *args, **kwargs: original_epoch(net, recorded(loader), *args, **kwargs),
        )
    argv = ["--synthetic", "240", "--epochs", "2", "--device", "cpu", "--no-progress", "--out", str(tmp_path)]
    args = main.build_parser().parse_args(argv + ([] if fast_path else ["--no-fast"]))
    result = main.run(args)
    train_part, validation, _ = main.load_data(args)
    assert result["num_validation_images"] == len(validation) == 20
    assert seen and not seen & _rows(to_float_images(validation.data))
    assert seen <= _rows(to_float_images(train_part.data))
    assert 0.0 <= result["validation_accuracy"] <= 1.0
