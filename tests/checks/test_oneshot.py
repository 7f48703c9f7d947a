"""``autograder.checks.oneshot`` (lesson 07): episodes, prototypes, intervals and mining; typical bugs are named."""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers.checks import fails

from autograder.checks import oneshot as oneshot_checks
from solutions import oneshot as ref_oneshot

# ---------------------------------------------------------------- lesson 07: episodes, prototypes, interval, mining


def sampler_with(*changes: str):
    """The reference sampler with lines changed (old, new, old, new, ...): a typical bug."""
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
    "classes in rotation": (
        (
            "[pool[torch.randperm(len(pool), generator=generator)[:n_way]] for _ in range(num_episodes)]",
            "[pool[(torch.arange(n_way) + e) % len(pool)] for e in range(num_episodes)]",
        ),
        "a rotation through",
    ),
    "one class in every episode": (
        (
            "pool[torch.randperm(len(pool), generator=generator)[:n_way]]",
            "torch.cat([pool[:1], pool[1:][torch.randperm(len(pool) - 1, generator=generator)[: n_way - 1]]])",
        ),
        "drawn as often as the others",
    ),
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
    fails(oneshot_checks.check_sample_episodes, sampler_with(*changes), match=match, hidden=True)


def sampler_with_first_queries(labels, classes, n_way, k_shot, n_query, num_episodes, seed=0):
    """Wrong: random classes and supports, but the queries are the first images of the class that are not supports."""
    generator = torch.Generator().manual_seed(seed)
    pool, supports, queries, chosen = torch.tensor(classes), [], [], []
    for _ in range(num_episodes):
        row = pool[torch.randperm(len(pool), generator=generator)[:n_way]]
        episode_supports, episode_queries = [], []
        for c in row.tolist():
            images = (labels == c).nonzero().flatten()
            support = images[torch.randperm(len(images), generator=generator)[:k_shot]]
            episode_supports.append(support)
            episode_queries.append(images[~torch.isin(images, support)][:n_query])
        supports.append(torch.stack(episode_supports))
        queries.append(torch.stack(episode_queries))
        chosen.append(row)
    return ref_oneshot.Episodes(torch.stack(supports), torch.stack(queries), torch.stack(chosen))


def test_queries_that_are_the_first_images_that_fit_fail():
    fails(
        oneshot_checks.check_sample_episodes,
        sampler_with_first_queries,
        match="the query images are drawn at random",
    )


@pytest.mark.parametrize(
    "old, new",
    [("    if n_way > len(classes):", "    if False:"), ("    if too_few:", "    if False:")],
    ids=["too many classes", "too few images"],
)
def test_a_sampler_that_does_not_refuse_fails_the_refusal_check(old, new):
    fails(
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
    fails(oneshot_checks.check_episode_accuracies, wrong, match=match, hidden=True)


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
    fails(oneshot_checks.check_mean_with_interval, wrong, match=match, hidden=True)


def hard_loss_with(old: str, new: str):
    """The reference batch-hard loss with one line changed."""
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
    fails(oneshot_checks.check_batch_hard_loss, hard_loss_with(old, new), match=match, hidden=True)


def test_a_float_loss_fails_with_a_reason():
    fails(
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

    fails(oneshot_checks.check_batch_hard_loss, all_hidden, match="finite number")


def hard_loss_with_a_detached_pull(embeddings, labels, margin):
    """Wrong: the right value, but the pull of the farthest same-class image gets no gradient."""
    distances = torch.cdist(embeddings, embeddings).pow(2).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    pull = torch.where(same, distances, torch.zeros_like(distances)).amax(dim=1)
    push = torch.where(same, torch.full_like(distances, float("inf")), distances).amin(dim=1)
    return (pull.detach() ** 2 + torch.clamp(margin - push, min=0) ** 2).mean()


def hard_loss_made_from_a_number(embeddings, labels, margin):
    """Wrong: the right value in a new tensor, connected to nothing."""
    value = ref_oneshot.batch_hard_loss(embeddings, labels, margin)
    return torch.tensor(float(value), requires_grad=True)


def test_a_hard_loss_must_have_the_right_gradient_too():
    fails(oneshot_checks.check_batch_hard_loss, hard_loss_with_a_detached_pull, match="is a term detached")
    fails(
        oneshot_checks.check_batch_hard_loss,
        hard_loss_made_from_a_number,
        match="compute the loss with torch operations on `embeddings`",
    )
