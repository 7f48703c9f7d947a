"""solutions.evaluate: verification metrics with known answers, balanced pairs, embeddings (lesson 06)."""

import math

import pytest
import torch

from solutions.evaluate import (
    best_threshold,
    embed,
    evaluate,
    make_balanced_pairs,
    nearest_neighbour_accuracy,
    pair_distances,
    roc_auc,
    similarity,
    to_float_images,
    verification_accuracy,
)
from solutions.model import SiameseNetwork


def t(values):
    """A float tensor of ``values``."""
    return torch.tensor(values, dtype=torch.float32)


# ---------------------------------------------------------------- verification accuracy and threshold


def test_verification_accuracy_known_values():
    """ "Same" means distance < threshold; the accuracy counts right calls."""
    d, labels = t([0.1, 0.2, 0.8, 0.9]), t([0, 0, 1, 1])
    assert verification_accuracy(d, labels, 0.5) == 1.0
    assert verification_accuracy(d, labels, 0.15) == 0.75  # 0.2 is called "different"
    assert verification_accuracy(d, labels, 5.0) == 0.5  # everything called "same"


def test_verification_accuracy_threshold_is_exclusive():
    """A distance equal to the threshold is called "different"."""
    assert verification_accuracy(t([0.5, 0.5]), t([1, 0]), 0.5) == 0.5


def test_verification_accuracy_accepts_column_labels():
    """Labels of shape [N, 1] (as SiameseDataset gives) work like [N]."""
    assert verification_accuracy(t([0.1, 0.9]), t([[0], [1]]), 0.5) == 1.0


def test_best_threshold_separable():
    """On separable distances the threshold lies between the two groups and gives 100%."""
    d, labels = t([0.9, 0.1, 0.7, 0.3]), t([1, 0, 1, 0])
    threshold = best_threshold(d, labels)
    assert 0.3 < threshold < 0.7
    assert threshold == pytest.approx(0.5)
    assert verification_accuracy(d, labels, threshold) == 1.0


def test_best_threshold_all_same_or_all_different():
    """With one kind of pair only, the threshold calls every pair right."""
    d = t([0.2, 0.4, 0.6])
    assert verification_accuracy(d, t([0, 0, 0]), best_threshold(d, t([0, 0, 0]))) == 1.0
    assert verification_accuracy(d, t([1, 1, 1]), best_threshold(d, t([1, 1, 1]))) == 1.0


def test_best_threshold_is_optimal_on_overlap():
    """On overlapping distances no threshold does better than the chosen one."""
    d = t([0.1, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 0.9])
    labels = t([0, 0, 1, 0, 1, 0, 1, 1])
    chosen = verification_accuracy(d, labels, best_threshold(d, labels))
    assert chosen == 0.75
    candidates = [x / 100 for x in range(0, 101)]
    assert chosen >= max(verification_accuracy(d, labels, c) for c in candidates)


def test_best_threshold_never_splits_ties():
    """Tied distances always get the same call."""
    d, labels = t([0.5, 0.5, 0.5, 0.9]), t([0, 0, 1, 1])
    threshold = best_threshold(d, labels)  # a cut inside the ties would promise 100%
    assert threshold == pytest.approx(0.7)
    assert verification_accuracy(d, labels, threshold) == 0.75


# ---------------------------------------------------------------- ROC AUC


def test_roc_auc_separable():
    """Every different pair farther than every same pair: AUC 1."""
    assert roc_auc(t([0.1, 0.2, 0.8, 0.9]), t([0, 0, 1, 1])) == 1.0


def test_roc_auc_inverted():
    """Every different pair closer than every same pair: AUC 0."""
    assert roc_auc(t([0.8, 0.9, 0.1, 0.2]), t([0, 0, 1, 1])) == 0.0


def test_roc_auc_all_equal_distances():
    """Identical distances carry no information: AUC 1/2."""
    assert roc_auc(t([0.4] * 6), t([0, 1, 0, 1, 1, 0])) == 0.5


def test_roc_auc_with_ties_by_hand():
    """Same at 0.1, 0.5; different at 0.5, 0.9: (1 + 1/2 + 1 + 1) / 4 = 0.875."""
    assert roc_auc(t([0.1, 0.5, 0.5, 0.9]), t([0, 0, 1, 1])) == pytest.approx(0.875)


def test_roc_auc_matches_pair_counting():
    """On random distances with ties, AUC equals P(d_diff > d_same) + P(tie) / 2 counted pair by pair."""
    g = torch.Generator().manual_seed(0)
    d = torch.randint(0, 5, (40,), generator=g).float()
    labels = (torch.rand(40, generator=g) < 0.5).float()
    same, diff = d[labels == 0].tolist(), d[labels == 1].tolist()
    expected = sum((x > y) + 0.5 * (x == y) for x in diff for y in same) / (len(diff) * len(same))
    assert roc_auc(d, labels) == pytest.approx(expected)


def test_roc_auc_needs_both_kinds():
    """Only one kind of pair: ValueError."""
    with pytest.raises(ValueError):
        roc_auc(t([0.1, 0.2]), t([1, 1]))


# ---------------------------------------------------------------- pairs, similarity, nearest neighbour


def test_balanced_pairs_exactly_half_same():
    """Exactly half the pairs are same-class, and every label is right."""
    labels = torch.arange(200) % 10
    first, second, pair_label = make_balanced_pairs(labels, 1000, seed=0)
    assert first.shape == second.shape == pair_label.shape == (1000,)
    assert int((pair_label == 0).sum()) == 500
    assert torch.equal(pair_label, (labels[first] != labels[second]).float())


def test_balanced_pairs_reproducible_per_seed():
    """The same seed gives the same pairs; another seed gives others."""
    labels = torch.arange(200) % 10
    a, b, c = (make_balanced_pairs(labels, 300, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_similarity_values():
    """similarity(0) = 1, and it falls strictly with the distance towards 0."""
    s = similarity(t([0.0, 0.5, 1.0, 2.0, 10.0]))
    assert s[0] == 1.0
    assert bool((s[1:] < s[:-1]).all()) and bool((s > 0).all())
    assert float(s[2]) == pytest.approx(math.exp(-1))


def test_pair_distances():
    """Euclidean distance between the embeddings of each pair."""
    emb = t([[0, 0], [3, 4], [1, 1]])
    distances = pair_distances(emb, torch.tensor([0, 2]), torch.tensor([1, 0]))
    assert distances.tolist() == pytest.approx([5.0, math.sqrt(2)])


def test_nearest_neighbour_accuracy_clusters():
    """Test points near their class's cluster are all classified right; wrong labels count as wrong."""
    g = torch.Generator().manual_seed(0)
    centres = torch.arange(5).float().unsqueeze(1) * torch.tensor([[10.0, -10.0]])
    train_labels = torch.arange(50) % 5
    train_emb = centres[train_labels] + 0.5 * torch.randn(50, 2, generator=g)
    test_labels = torch.arange(20) % 5
    test_emb = centres[test_labels] + 0.5 * torch.randn(20, 2, generator=g)
    assert nearest_neighbour_accuracy(train_emb, train_labels, test_emb, test_labels, chunk=3) == 1.0
    wrong = test_labels.clone()
    wrong[:10] = (wrong[:10] + 1) % 5
    assert nearest_neighbour_accuracy(train_emb, train_labels, test_emb, wrong, chunk=7) == 0.5


# ---------------------------------------------------------------- embeddings and the whole evaluation


@pytest.fixture(scope="module")
def net():
    """A freshly initialised network (seeded)."""
    torch.manual_seed(0)
    return SiameseNetwork()


def test_to_float_images():
    """uint8 [N, 28, 28] becomes float32 [N, 1, 28, 28] in [0, 1]."""
    images = torch.tensor([0, 255], dtype=torch.uint8).reshape(2, 1, 1).expand(2, 28, 28)
    out = to_float_images(images)
    assert out.shape == (2, 1, 28, 28) and out.dtype == torch.float32
    assert out[0].max() == 0.0 and out[1].min() == 1.0


def test_embed_eval_mode_no_grad(net, synthetic_test):
    """embed gives float32 [N, 256] on the CPU, without gradients, and leaves the net in eval mode."""
    net.train()
    emb = embed(net, synthetic_test.data[:12], "cpu")
    assert emb.shape == (12, 256) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert not emb.requires_grad and emb.grad_fn is None
    assert not net.training


def test_embed_batches_agree(net, synthetic_test):
    """Embedding in small batches gives the same as one batch, and the same as forward_ind."""
    images = synthetic_test.data[:10]
    whole = embed(net, images, batch_size=1024)
    torch.testing.assert_close(embed(net, images, batch_size=3), whole, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_ind(to_float_images(images)), whole, rtol=1e-4, atol=1e-5)


def test_evaluate_returns_all_metrics(net, synthetic_train, synthetic_test):
    """evaluate() returns every metric, each in its range."""
    metrics = evaluate(
        net,
        synthetic_train.data[:60],
        synthetic_train.targets[:60],
        synthetic_train.data[60:90],
        synthetic_train.targets[60:90],
        synthetic_test.data,
        synthetic_test.targets,
        "cpu",
        num_pairs=100,
        seed=0,
    )
    assert set(metrics) == {
        "threshold",
        "train_pair_accuracy",
        "validation_accuracy",
        "test_accuracy",
        "roc_auc",
        "nearest_neighbour_accuracy",
        "mean_similarity_same",
        "mean_similarity_different",
        "num_test_pairs",
    }
    for key in (
        "train_pair_accuracy",
        "validation_accuracy",
        "test_accuracy",
        "roc_auc",
        "nearest_neighbour_accuracy",
        "mean_similarity_same",
        "mean_similarity_different",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["num_test_pairs"] == 100 and math.isfinite(metrics["threshold"])


def test_the_threshold_is_the_best_one_on_validation_pairs(net, synthetic_train, synthetic_test):
    """The threshold comes from the validation pairs: it is their best threshold, whatever the other splits hold."""
    validation_images, validation_labels = synthetic_train.data[60:120], synthetic_train.targets[60:120]
    metrics = evaluate(
        net,
        synthetic_train.data[:60],
        synthetic_train.targets[:60],
        validation_images,
        validation_labels,
        synthetic_test.data,
        synthetic_test.targets,
        "cpu",
        num_pairs=200,
        seed=3,
    )
    first, second, label = make_balanced_pairs(validation_labels, 200, seed=5)
    distances = pair_distances(embed(net, validation_images), first, second)
    assert metrics["threshold"] == best_threshold(distances, label)
    assert metrics["validation_accuracy"] == verification_accuracy(distances, label, metrics["threshold"])
