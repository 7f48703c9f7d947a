"""Classes never seen: the held-out splits, N-way K-shot episodes, their accuracy, the baselines and the recipes."""

import itertools
import json
import math

import pytest
import torch

from data_utils.splits import HOLDOUT_SPLITS, NUM_CLASSES, seen_classes, split_training_set, with_classes
from data_utils.synthetic import SyntheticFashionMNIST
from solutions import oneshot, recipes


@pytest.fixture(scope="module")
def synthetic_train():
    return split_training_set(SyntheticFashionMNIST(600, seed=0))[0]


# ---------------------------------------------------------------- splits


@pytest.mark.parametrize("split", sorted(HOLDOUT_SPLITS))
def test_a_split_holds_out_five_classes_and_trains_on_the_other_five(split):
    unseen, seen = HOLDOUT_SPLITS[split], seen_classes(split)
    assert len(unseen) == len(set(unseen)) == 5 and not set(unseen) & set(seen)
    assert sorted(unseen + seen) == list(range(NUM_CLASSES))


def test_the_splits_differ_and_the_anchor_is_the_published_one():
    assert HOLDOUT_SPLITS["anchor"] == (0, 4, 5, 6, 7)  # the published split's five unseen classes
    assert len({frozenset(s) for s in HOLDOUT_SPLITS.values()}) == len(HOLDOUT_SPLITS)


@pytest.mark.parametrize("split", sorted(HOLDOUT_SPLITS))
def test_held_out_classes_never_appear_in_a_training_batch(split, synthetic_train):
    """Every image of every batch that ``recipes.train`` draws from the seen classes is of a seen class."""
    seen_train = with_classes(synthetic_train, seen_classes(split))
    assert set(seen_train.targets.tolist()) == set(seen_classes(split))
    generator = torch.Generator().manual_seed(0)
    for batches in (
        recipes.pair_batches(seen_train.targets, 16, generator),
        recipes.class_batches(seen_train.targets, 8, 4, generator),
    ):
        for _, batch in zip(range(20), batches):
            indices = torch.cat(batch[:2]) if isinstance(batch, tuple) else batch
            assert not set(seen_train.targets[indices].tolist()) & set(HOLDOUT_SPLITS[split])


# ---------------------------------------------------------------- episodes


@pytest.mark.parametrize("n_way, k_shot, n_query", [(5, 1, 5), (5, 5, 3), (3, 2, 1)])
def test_an_episode_has_k_supports_per_class_and_no_query_among_them(n_way, k_shot, n_query):
    labels = torch.arange(10).repeat_interleave(12)[
        torch.randperm(120, generator=torch.Generator().manual_seed(1))
    ]
    classes = (0, 4, 5, 6, 7)
    episodes = oneshot.sample_episodes(labels, classes, n_way, k_shot, n_query, num_episodes=200, seed=3)
    assert episodes.support.shape == (200, n_way, k_shot) and episodes.query.shape == (200, n_way, n_query)
    for support, query, chosen in zip(episodes.support, episodes.query, episodes.classes):
        assert len(set(chosen.tolist())) == n_way and set(chosen.tolist()) <= set(classes)
        assert (labels[support] == chosen[:, None]).all() and (labels[query] == chosen[:, None]).all()
        images = torch.cat([support.flatten(), query.flatten()]).tolist()
        assert len(images) == len(set(images)), "an image is both a support and a query, or drawn twice"


def test_episodes_are_fixed_by_their_seed_and_vary_with_it():
    labels = torch.arange(5).repeat_interleave(10)
    a, b = (oneshot.sample_episodes(labels, tuple(range(5)), 5, 1, 2, 50, seed=s) for s in (0, 0))
    c = oneshot.sample_episodes(labels, tuple(range(5)), 5, 1, 2, 50, seed=1)
    assert torch.equal(a.support, b.support) and not torch.equal(a.support, c.support)


def test_impossible_episodes_are_refused_with_the_reason():
    labels = torch.arange(3).repeat_interleave(4)
    with pytest.raises(ValueError, match="5-way episodes need at least 5 classes"):
        oneshot.sample_episodes(labels, (0, 1, 2), 5, 1, 1, 10)
    with pytest.raises(ValueError, match="fewer than k_shot \\+ n_query = 5 images"):
        oneshot.sample_episodes(labels, (0, 1, 2), 3, 2, 3, 10)


def test_perfect_embeddings_score_1_and_constant_ones_score_chance():
    labels = torch.arange(5).repeat_interleave(20)
    one_hot = torch.nn.functional.one_hot(labels, 5).float()
    assert oneshot.few_shot_accuracy(one_hot, labels, tuple(range(5)), 5, 1, 300)["accuracy"] == 1.0
    constant = oneshot.few_shot_accuracy(torch.zeros(100, 3), labels, tuple(range(5)), 5, 1, 300)
    assert constant["accuracy"] == pytest.approx(1 / 5)  # every distance ties: argmin picks the first class


def test_the_interval_is_the_normal_95_percent_one():
    values = torch.tensor([0.0, 1.0] * 50)
    mean, half = oneshot.mean_with_interval(values)
    assert mean == 0.5 and half == pytest.approx(1.959964 * float(values.double().std()) / 10)
    assert math.isinf(oneshot.mean_with_interval(torch.tensor([0.7]))[1])


def test_the_support_cnn_learns_easy_episodes():
    """On synthetic classes (templates plus noise), the CNN trained on 5 shots beats chance by far."""
    data = SyntheticFashionMNIST(300, seed=0)
    labels = torch.as_tensor(data.targets)
    episodes = oneshot.sample_episodes(labels, (0, 1, 2, 3, 4), 5, 5, 3, num_episodes=8, seed=0)
    accuracy = float(oneshot.support_cnn_accuracies(data.data, episodes, steps=30).mean())
    assert accuracy > 0.6


# ---------------------------------------------------------------- recipes


def test_each_ablation_row_changes_one_thing_on_the_row_above():
    rows = list(recipes.RECIPES.values())
    for above, row in itertools.pairwise(rows):
        changed = {f for f in vars(row) if getattr(row, f) != getattr(above, f)}
        assert changed and changed <= {
            "lr",
            "schedule",
            "normalized",
            "embedding_dim",
            "margin",
            "batches",
            "mining",
            "augment",
            "loss",
        }
        assert (
            changed != {"mining"} or row.loss == "contrastive"
        )  # mining is a setting of the contrastive loss
    assert rows[0] == recipes.Recipe() and rows[-1] == recipes.IMPROVED


class PooledBackbone(torch.nn.Module):
    """A cheap stand-in for ``CNNBackbone`` with its output shape ``[B, 256, 3, 3]``: the recipes' logic, not the
    course's network, is under test here (the real network trains in ``test_train.py``)."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(3), torch.nn.Conv2d(1, 256, 1))

    def forward(self, x):
        return self.layers(x)


@pytest.mark.parametrize("row", [*recipes.RECIPES, *recipes.CANDIDATES])
def test_every_recipe_trains_within_its_budget_and_lowers_its_loss(row, synthetic_train, monkeypatch):
    from solutions import model

    monkeypatch.setattr(model, "CNNBackbone", PooledBackbone)
    monkeypatch.setattr(recipes, "CNNBackbone", PooledBackbone)
    recipe = {**recipes.RECIPES, **recipes.CANDIDATES}[row]
    budget = 80 * recipe.images_per_step(NUM_CLASSES)
    _, losses = recipes.train(
        recipe, synthetic_train.data, synthetic_train.targets, torch.device("cpu"), budget=budget, seed=0
    )
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < losses[0]


def test_in_batch_hard_mining_picks_each_images_hardest_pairs():
    embeddings = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 0.5], [10.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # image 0: farthest same 3.0, nearest other 0.5; 1: 3.0, 3.04; 2: 10.01, 0.5; 3: 10.01, 3.0
    hardest_same = torch.tensor([3.0, 3.0, 10.0125, 10.0125])
    nearest_other = torch.tensor([0.5, math.hypot(3, 0.5), 0.5, 7.0])
    expected = (hardest_same**2 + torch.relu(2.0 - nearest_other) ** 2).mean()
    assert recipes.in_batch_loss(embeddings, labels, 2.0, "hard") == pytest.approx(float(expected), rel=1e-4)


def test_coinciding_embeddings_keep_finite_gradients():
    embeddings = torch.zeros(4, 3, requires_grad=True)
    recipes.in_batch_loss(embeddings, torch.tensor([0, 0, 1, 1]), 1.0, "all").backward()
    assert torch.isfinite(embeddings.grad).all()


# ---------------------------------------------------------------- the ablation's command line


def test_the_ablation_appends_a_run_per_row_and_seed_and_prints_the_table(tmp_path, monkeypatch, capsys):
    from solutions import ablation, model

    monkeypatch.setattr(model, "CNNBackbone", PooledBackbone)
    monkeypatch.setattr(recipes, "CNNBackbone", PooledBackbone)
    argv = [
        "--synthetic",
        "600",
        "--seeds",
        "2",
        "--budget",
        "1280",
        "--episodes",
        "20",
        "--device",
        "cpu",
        "--rows",
        "original",
        "+ batch-hard mining",
        "--out",
        str(tmp_path),
    ]
    assert ablation.main(argv) == 0
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [(r["row"], r["seed"]) for r in runs] == [
        ("original", 0),
        ("+ batch-hard mining", 0),
        ("original", 1),
        ("+ batch-hard mining", 1),
    ]
    for run in runs:
        assert all(0 <= run[column] <= 1 for column in ablation.COLUMNS if column != "wall_time_s")
    table = capsys.readouterr().out.split("| recipe |")[1]
    assert "| original | 2 |" in table and "| + batch-hard mining | 2 |" in table


def test_the_baselines_are_measured_on_the_same_episodes(tmp_path):
    from solutions import ablation

    argv = [
        "--baselines",
        "--synthetic",
        "600",
        "--episodes",
        "12",
        "--splits",
        "new-kinds",
        "--out",
        str(tmp_path),
    ]
    assert ablation.main(argv) == 0
    found = json.loads((tmp_path / "baselines.json").read_text())
    assert [(f["split"], f["k_shot"]) for f in found] == [("new-kinds", 1), ("new-kinds", 5)]
    assert all(0 <= f["pixels"] <= 1 and 0 <= f["support_cnn"] <= 1 and f["episodes"] == 12 for f in found)


# ---------------------------------------------------------------- the SupCon loss, the layer below the head


def test_supcon_loss_is_minus_the_mean_log_probability_of_same_class_images():
    embeddings = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    temperature = 0.5
    cos = embeddings @ embeddings.T  # already unit length
    expected = 0.0
    for i, j in ((0, 1), (1, 0)):  # image 2 has no same-class partner: it contributes 0
        others = [k for k in range(3) if k != i]
        expected -= float(cos[i, j] / temperature - torch.logsumexp(cos[i, others] / temperature, 0))
    loss = recipes.supervised_contrastive_loss(embeddings, labels, temperature)
    assert float(loss) == pytest.approx(expected / 3, rel=1e-5)


def test_supcon_loss_is_lower_when_classes_are_apart():
    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    mixed = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.01], [-1.0, 0.01]])
    loss = recipes.supervised_contrastive_loss
    assert loss(apart, labels, 0.1) < loss(mixed, labels, 0.1)


def test_embedding_below_the_head_is_used_in_evaluation_only():
    net = recipes.NormalizedNetwork(16, embed_below_head=True)
    x = torch.rand(4, 1, 28, 28)
    assert net.train().forward_ind(x).shape == (4, 16)
    below = net.eval().forward_ind(x)
    assert below.shape == (4, 256 * 3 * 3)
    assert torch.allclose(below.norm(dim=1), torch.ones(4), atol=1e-5)


def test_a_given_batch_loss_replaces_the_recipes(synthetic_train, monkeypatch):
    from solutions import model

    monkeypatch.setattr(model, "CNNBackbone", PooledBackbone)
    monkeypatch.setattr(recipes, "CNNBackbone", PooledBackbone)
    seen = []

    def batch_loss(embeddings, labels):
        seen.append(labels.clone())
        return oneshot.batch_hard_loss(embeddings, labels, 1.0)

    recipe = recipes.RECIPES["+ flips and shifts"]
    recipes.train(
        recipe,
        synthetic_train.data,
        synthetic_train.targets,
        torch.device("cpu"),
        budget=3 * recipe.images_per_step(NUM_CLASSES),
        seed=0,
        batch_loss=batch_loss,
    )
    assert len(seen) == 3 and all(len(labels) == recipe.images_per_step(NUM_CLASSES) for labels in seen)


def test_a_budget_buys_the_steps_of_the_images_a_class_batch_really_holds(synthetic_train, monkeypatch):
    """On the five seen classes a class batch holds 5 x 16 images, not P x K = 8 x 16: a budget of three such
    batches buys three steps (counting 8 x 16 would buy one, and train 62.5% of the stated image passes)."""
    from solutions import model

    monkeypatch.setattr(model, "CNNBackbone", PooledBackbone)
    monkeypatch.setattr(recipes, "CNNBackbone", PooledBackbone)
    seen_train = with_classes(synthetic_train, seen_classes("anchor"))
    drawn = []

    def batch_loss(embeddings, labels):
        drawn.append(len(labels))
        return oneshot.batch_hard_loss(embeddings, labels, 1.0)

    recipe = recipes.RECIPES["+ flips and shifts"]
    assert (recipe.classes_per_batch, recipe.images_per_class) == (8, 16)  # P x K: 128 images on ten classes
    recipes.train(
        recipe,
        seen_train.data,
        seen_train.targets,
        torch.device("cpu"),
        budget=240,
        seed=0,
        batch_loss=batch_loss,
    )
    assert drawn == [80, 80, 80], (
        f"a budget of 3 x 80 image passes on five classes should buy 3 steps of 80, drew {drawn}"
    )


def test_batch_hard_loss_is_the_recipes_hard_mining():
    generator = torch.Generator().manual_seed(0)
    embeddings, labels = torch.randn(12, 5, generator=generator), torch.arange(4).repeat(3)
    assert torch.equal(
        oneshot.batch_hard_loss(embeddings, labels, 1.0),
        recipes.in_batch_loss(embeddings, labels, 1.0, "hard"),
    )


def test_the_episode_figure_draws_the_episodes_it_is_given():
    from solutions import plots

    labels = torch.arange(5).repeat_interleave(4)
    images = torch.randint(0, 255, (20, 28, 28), dtype=torch.uint8)
    episodes = oneshot.sample_episodes(labels, (0, 1, 2), 3, 1, 1, 6, seed=1)
    fig = plots.plot_episodes(
        oneshot.pixel_embeddings(images), images, labels, (0, 1, 2, 3, 4), num_episodes=2, episodes=episodes
    )
    assert len(fig.axes) == 2 * (3 + 1)
    plots.plt.close(fig)
