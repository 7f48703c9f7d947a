"""Checks for lesson 07: the episode sampler, the nearest-prototype accuracy, its confidence interval and
the batch-hard loss.

``sample_episodes`` has no single right answer (it is random), so its check tests the properties every
right answer has, each on its own: the shapes, the classes (distinct, from the split asked for, drawn
at random), the images (of their position's class, all distinct inside an episode, not always the
same ones) and the seed (the same episodes again, other ones for another seed). ``episode_accuracies``,
``mean_with_interval`` and ``batch_hard_loss`` are compared with a plain Python loop over the same
inputs; when a value is wrong, the check recomputes the usual mistakes and names the one that matches.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import syllabus
from .report import (
    check,
    describe,
    differs,
    fail,
    max_error,
    passed,
    require_refusal,
    run_student,
    to_float,
    type_name,
)
from .transcript import generator_for, judge_only, probing

SAMPLER_EXERCISE = syllabus.label("7.1")
ACCURACY_EXERCISE = syllabus.label("7.2")
INTERVAL_EXERCISE = syllabus.label("7.3")
HARD_EXERCISE = syllabus.label("7.4")
Z_95 = 1.959964
PARTS = ("support", "query", "classes")


# ---------------------------------------------------------------- exercise 7.1: the episode sampler


def _episode_parts(sample_episodes: Any, *args: Any, **kwargs: Any) -> tuple:
    """``sample_episodes(...)`` as its three tensors (what the probe records), or a ``TypeError`` saying what
    is missing."""
    episodes = sample_episodes(*args, **kwargs)
    missing = [name for name in PARTS if not isinstance(getattr(episodes, name, None), torch.Tensor)]
    if missing:
        raise TypeError(
            f"the result has no tensor attribute {', '.join(missing)}: return Episodes(support, query, "
            f"classes), got {type(episodes).__name__}"
        )
    return tuple(getattr(episodes, name) for name in PARTS)


def episode_labels(counts: dict[int, int], generator: torch.Generator) -> torch.Tensor:
    """Shuffled labels with ``counts[c]`` images of class ``c``."""
    labels = torch.cat([torch.full((n,), c) for c, n in counts.items()])
    return labels[torch.randperm(len(labels), generator=generator)]


def _sampled(sample_episodes: Any, labels: torch.Tensor, setting: tuple, seed: int) -> tuple:
    classes, n_way, k_shot, n_query, num_episodes = setting
    call = (
        f"sample_episodes(labels, classes={classes}, n_way={n_way}, k_shot={k_shot}, n_query={n_query}, "
        f"num_episodes={num_episodes}, seed={seed})"
    )
    return call, run_student(
        SAMPLER_EXERCISE,
        call,
        _episode_parts,
        sample_episodes,
        labels,
        classes,
        n_way,
        k_shot,
        n_query,
        num_episodes,
        seed,
    )


@judge_only
def _judge_shapes(parts: tuple, setting: tuple, call: str) -> None:
    _, n_way, k_shot, n_query, num_episodes = setting
    wanted = {
        "support": [num_episodes, n_way, k_shot],
        "query": [num_episodes, n_way, n_query],
        "classes": [num_episodes, n_way],
    }
    for name, tensor in zip(PARTS, parts):
        if not isinstance(tensor, torch.Tensor) or list(tensor.shape) != wanted[name]:
            fail(
                f"episodes.{name} has shape [episodes, n_way{', ...' if name != 'classes' else ''}]",
                input=call,
                expected=f"shape {wanted[name]}",
                got=type_name(tensor),
                hint="support [E, N, K] and query [E, N, Q] hold image indices, classes [E, N] the class of each row",
            )
        if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
            fail(
                f"episodes.{name} holds integer indices",
                input=call,
                expected="an integer tensor (torch.long)",
                got=describe(tensor),
                hint="index tensors come from nonzero(), randperm() or torch.tensor(list of ints)",
            )


@judge_only
def _judge_classes(classes_drawn: torch.Tensor, setting: tuple, call: str) -> None:
    classes, n_way, _, _, num_episodes = setting
    allowed = set(classes)
    for e, row in enumerate(classes_drawn.tolist()):
        if not set(row) <= allowed:
            fail(
                "every episode's classes come from `classes`",
                input=call,
                expected=f"classes among {sorted(allowed)}",
                got=f"episode {e} has classes {row}",
                hint="classes[e, n] holds class numbers taken from `classes` (such as 3 or 8), not positions in it, "
                "and never a class outside it",
            )
        if len(set(row)) != n_way:
            fail(
                "an episode's n_way classes are distinct",
                input=call,
                expected=f"{n_way} different classes",
                got=f"episode {e} has classes {row}",
                hint="draw without replacement: torch.randperm(len(classes))[:n_way], not torch.randint",
            )
    seen = set(classes_drawn.flatten().tolist())
    if len(allowed) > n_way and seen != allowed:
        fail(
            "the classes are drawn at random, so every class of `classes` appears in some episode",
            input=call,
            expected=f"all of {sorted(allowed)} over {num_episodes} episodes",
            got=f"only {sorted(seen)}",
            hint="the same classes in every episode: pick n_way of them at random for each episode",
        )
    _judge_class_draws(classes_drawn, setting, call)


@judge_only
def _judge_class_draws(classes_drawn: torch.Tensor, setting: tuple, call: str) -> None:
    """Each class is in about n_way / len(classes) of the episodes (5 sigma), and the episodes' sets of classes are
    as varied as random draws make them (a rotation through `classes` gives few)."""
    classes, n_way, _, _, num_episodes = setting
    share = n_way / len(classes)
    spread = 5 * math.sqrt(num_episodes * share * (1 - share))
    for c in classes:
        found = int((classes_drawn == c).any(dim=1).sum())
        if abs(found - num_episodes * share) > spread:
            fail(
                "each class is drawn as often as the others",
                input=call,
                expected=f"class {c} in about {num_episodes * share:.0f} (±{spread:.0f}) of {num_episodes} episodes",
                got=f"in {found}",
                hint="pick the n_way classes of each episode at random among all of `classes`, none kept in every one",
            )
    possible = math.comb(len(classes), n_way)
    expected = possible * (1 - (1 - 1 / possible) ** num_episodes)
    found = len({tuple(sorted(row)) for row in classes_drawn.tolist()})
    if expected >= 8 and found < expected / 2:
        fail(
            "the episodes' classes are drawn at random",
            input=call,
            expected=f"about {expected:.0f} different sets of {n_way} classes over {num_episodes} episodes",
            got=f"{found}",
            hint="the classes follow a pattern (a rotation through `classes`?): draw them with randperm for each "
            "episode",
        )


@judge_only
def _judge_images(parts: tuple, labels: torch.Tensor, setting: tuple, call: str) -> None:
    support, query, classes_drawn = parts
    _, _, k_shot, _, _ = setting
    for name, indices in (("support", support), ("query", query)):
        if int(indices.min()) < 0 or int(indices.max()) >= len(labels):
            fail(
                f"episodes.{name} holds indices of images",
                input=call,
                expected=f"integers in [0, {len(labels)})",
                got=describe(indices),
            )
        wrong = labels[indices] != classes_drawn[:, :, None]
        if bool(wrong.any()):
            e, n, k = (int(v) for v in wrong.nonzero()[0])
            fail(
                f"every {name} image is of its row's class",
                input=call,
                expected=f"episode {e}, row {n}: images of class {int(classes_drawn[e, n])}",
                got=f"image {int(indices[e, n, k])} of class {int(labels[indices[e, n, k]])}",
                hint=(
                    "row n of support and query holds images of classes[e, n]: "
                    "pick them among (labels == c).nonzero()"
                ),
            )
    together = torch.cat([support.flatten(1), query.flatten(1)], dim=1)
    for e, row in enumerate(together.tolist()):
        if len(set(row)) != len(row):
            fail(
                "the images of an episode are all different (no query is also a support)",
                input=call,
                expected="distinct indices",
                got=f"episode {e} uses {sorted(row)}",
                hint="draw k_shot + n_query images of a class at once without replacement (randperm), then split them",
            )
    _judge_image_draws(parts, labels, call)
    for c in classes_drawn.unique().tolist():
        used = support[classes_drawn == c].unique()
        if len(used) <= k_shot and int((labels == c).sum()) > k_shot and int((classes_drawn == c).sum()) > 3:
            fail(
                "the support images are drawn at random",
                input=call,
                expected=f"various support images of class {c} over the episodes",
                got=f"always images {used.tolist()}",
                hint="the first images of a class every time: shuffle the class's images (randperm) in each episode",
            )


@judge_only
def _judge_image_draws(parts: tuple, labels: torch.Tensor, call: str) -> None:
    """Supports and queries are drawn uniformly among their class's images: about half of them among the lower
    half of each class's images (5 sigma), not the first ones that fit."""
    support, query, classes_drawn = parts
    for name, indices in (("support", support), ("query", query)):
        lower, total, expected, variance = 0, 0, 0.0, 0.0
        for c in classes_drawn.unique().tolist():
            images = (labels == c).nonzero().flatten()
            drawn = indices[classes_drawn == c].flatten()
            # The position of each drawn image among its class's images, and a uniform draw's chance of the lower half.
            rank = (images[None, :] < drawn[:, None]).sum(dim=1)
            share = (len(images) // 2) / len(images)
            lower += int((rank < len(images) // 2).sum())
            total += len(drawn)
            expected += len(drawn) * share
            variance += len(drawn) * share * (1 - share)
        if total >= 50 and abs(lower - expected) > 5 * math.sqrt(variance):
            fail(
                f"the {name} images are drawn at random among their class's images",
                input=call,
                expected=f"about {expected:.0f} of {total} {name} images in the first half of their class's images",
                got=f"{lower}",
                hint=f"the {name} images are the first that fit: shuffle the class's images (randperm) in each "
                "episode and take k_shot + n_query of them",
            )


def _check_seed(sample_episodes: Any, labels: torch.Tensor, setting: tuple, parts: tuple, seed: int) -> None:
    again_call, again = _sampled(sample_episodes, labels, setting, seed)
    other_call, other = _sampled(sample_episodes, labels, setting, seed + 1)
    if probing():
        return
    if not all(isinstance(a, torch.Tensor) and torch.equal(a, b) for a, b in zip(again, parts)):
        fail(
            "the same seed gives the same episodes",
            input=again_call,
            expected="the episodes of the first call",
            got="other episodes",
            hint="draw everything from torch.Generator().manual_seed(seed), passed as generator= to each random call",
        )
    if all(isinstance(a, torch.Tensor) and torch.equal(a, b) for a, b in zip(other, parts)):
        fail(
            "another seed gives other episodes",
            input=other_call,
            expected="other episodes",
            got="the same episodes",
            hint="seed the generator with `seed`, not a constant",
        )


def _sampler_case(sample_episodes: Any, labels: torch.Tensor, setting: tuple, seed: int) -> None:
    call, parts = _sampled(sample_episodes, labels, setting, seed)
    if not probing():
        _judge_shapes(parts, setting, call)
        _judge_classes(parts[2], setting, call)
        _judge_images(parts, labels, setting, call)
    _check_seed(sample_episodes, labels, setting, parts, seed)


@check
def check_sample_episodes(sample_episodes: Any, hidden: bool = False) -> None:
    """Shapes, classes from the split and distinct, images of their class and distinct, random, seeded."""
    generator = generator_for(70)
    labels = episode_labels(dict.fromkeys(range(10), 12), generator)
    _sampler_case(sample_episodes, labels, ((1, 3, 4, 6, 8, 9), 3, 2, 3, 40), 7)
    if hidden:
        uneven = episode_labels({0: 6, 2: 9, 5: 30, 7: 4, 9: 11}, generator)
        _sampler_case(sample_episodes, uneven, ((0, 2, 5, 7, 9), 5, 1, 3, 30), 11)
        _sampler_case(sample_episodes, uneven, ((2, 5, 9), 2, 5, 1, 25), 3)
    passed(
        "sample_episodes: distinct classes from the split, k_shot + n_query distinct images of each, random and "
        "seeded" + (" [with hidden cases]" if hidden else "")
    )


@check
def check_sample_episodes_refuses(sample_episodes: Any, hidden: bool = False) -> None:
    """Episodes that cannot be drawn raise ``ValueError``."""
    labels = episode_labels({0: 5, 1: 5, 2: 2}, generator_for(71))
    cases = [
        ("n_way larger than the number of classes", ((0, 1), 3, 1, 1, 4, 0)),
        ("class 2 has 2 images, fewer than k_shot + n_query = 3", ((0, 1, 2), 3, 1, 2, 4, 0)),
    ]
    if hidden:
        cases.append(("class 2 has 2 images, k_shot + n_query = 3", ((2, 0), 2, 2, 1, 1, 0)))
    for what, (classes, n_way, k_shot, n_query, num_episodes, seed) in cases:
        call = (
            f"sample_episodes(labels, classes={classes}, n_way={n_way}, k_shot={k_shot}, n_query={n_query}, "
            f"num_episodes={num_episodes}) where {what}"
        )
        require_refusal(
            ValueError,
            SAMPLER_EXERCISE,
            call,
            _episode_parts,
            sample_episodes,
            labels,
            classes,
            n_way,
            k_shot,
            n_query,
            num_episodes,
            seed,
            prop="sample_episodes raises ValueError for episodes it cannot draw",
            expected="ValueError saying why",
            hint="check n_way <= len(classes) and that each class has k_shot + n_query images, and "
            "`raise ValueError(...)` otherwise (torch would repeat or truncate silently)",
        )
    passed("sample_episodes: refuses episodes it cannot draw" + (" [with hidden cases]" if hidden else ""))


# ---------------------------------------------------------------- exercise 7.2: nearest-prototype accuracy


def random_episodes(
    labels: torch.Tensor,
    classes: tuple[int, ...],
    n_way: int,
    k_shot: int,
    n_query: int,
    num_episodes: int,
    generator: torch.Generator,
):
    """Episodes drawn by the check itself (never by the student's sampler), as ``solutions.oneshot.Episodes``."""
    from solutions.oneshot import Episodes

    chosen, images = [], []
    for _ in range(num_episodes):
        row = torch.tensor(classes)[torch.randperm(len(classes), generator=generator)[:n_way]]
        members = [(labels == c).nonzero().flatten() for c in row.tolist()]
        images.append(
            torch.stack([m[torch.randperm(len(m), generator=generator)[: k_shot + n_query]] for m in members])
        )
        chosen.append(row)
    images = torch.stack(images)
    return Episodes(images[:, :, :k_shot], images[:, :, k_shot:], torch.stack(chosen))


@judge_only
def loop_accuracies(
    embeddings: torch.Tensor, support: torch.Tensor, query: torch.Tensor, prototype: str = "mean"
) -> list[float]:
    """Each episode's share of queries nearest their own row's prototype, by plain loops (float64).

    ``prototype="nearest support"`` is the usual mistake: the nearest single support instead of the mean."""
    x = embeddings.double()
    found = []
    for e in range(len(support)):
        right = 0
        for n in range(query.shape[1]):
            for q in query[e, n].tolist():
                if prototype == "mean":
                    distances = [
                        float((x[q] - x[support[e, m]].mean(0)).norm()) for m in range(support.shape[1])
                    ]
                else:
                    distances = [
                        min(float((x[q] - x[s]).norm()) for s in support[e, m].tolist())
                        for m in range(support.shape[1])
                    ]
                right += int(min(range(len(distances)), key=distances.__getitem__) == n)
        found.append(right / query[e].numel())
    return found


@judge_only
def _accuracy_hint(value: torch.Tensor, embeddings: torch.Tensor, episodes: Any) -> str | None:
    e, _, k = episodes.support.shape
    if k > 1:
        first = loop_accuracies(embeddings, episodes.support[:, :, :1], episodes.query)
        nearest = loop_accuracies(embeddings, episodes.support, episodes.query, "nearest support")
        if any(
            torch.allclose(value.double(), torch.tensor(wrong, dtype=torch.float64), atol=1e-6)
            for wrong in (first, nearest)
        ):
            return "with k_shot > 1, compare each query with the prototype, the MEAN of the class's support embeddings"
    prototypes = embeddings.double()[episodes.support].mean(dim=2)
    queries = embeddings.double()[episodes.query]
    nearest_row = torch.cdist(queries.reshape(e, -1, queries.shape[-1]), prototypes).argmin(dim=2)
    by_class_number = (
        (nearest_row == episodes.classes.repeat_interleave(queries.shape[2], dim=1)).double().mean(dim=1)
    )
    if torch.allclose(value.double(), by_class_number, atol=1e-6):
        return (
            "the right answer for a query in row n is prototype n (its position in the episode), not the class "
            "number classes[e, n]"
        )
    return None


def _accuracy_case(episode_accuracies: Any, embeddings: torch.Tensor, episodes: Any, what: str) -> None:
    e, n, k = episodes.support.shape
    where = (
        f"embeddings {describe(embeddings)}; {e} episodes, {n}-way {k}-shot, {episodes.query.shape[2]} queries "
        f"per class ({what})"
    )
    result = run_student(
        ACCURACY_EXERCISE,
        "episode_accuracies(embeddings, episodes)",
        episode_accuracies,
        embeddings,
        episodes,
    )
    if not isinstance(result, torch.Tensor) or list(result.shape) != [e]:
        fail(
            "episode_accuracies returns one accuracy per episode",
            input=where,
            expected=f"a tensor of shape [{e}]",
            got=type_name(result),
            hint="average each episode's queries separately: one number per episode, not one for all",
        )
    if probing():
        return
    expected = torch.tensor(loop_accuracies(embeddings, episodes.support, episodes.query))
    if not torch.allclose(result.detach().double().cpu(), expected.double(), atol=1e-6):
        fail(
            "each episode's share of queries nearest their own class's prototype",
            input=where,
            expected=describe(expected.float()),
            got=describe(result),
            hint=_accuracy_hint(result.detach().cpu(), embeddings, episodes),
        )


@check
def check_episode_accuracies(episode_accuracies: Any, hidden: bool = False) -> None:
    """Per-episode accuracy of the nearest prototype (the mean support embedding), against a plain loop."""
    generator = generator_for(72)
    labels = episode_labels(dict.fromkeys(range(6), 10), generator)
    embeddings = torch.randn(len(labels), 4, generator=generator) + 1.5 * torch.nn.functional.one_hot(
        labels % 4, 4
    )
    _accuracy_case(
        episode_accuracies,
        embeddings,
        random_episodes(labels, tuple(range(6)), 3, 1, 2, 6, generator),
        "1-shot",
    )
    _accuracy_case(
        episode_accuracies,
        embeddings,
        random_episodes(labels, tuple(range(6)), 4, 3, 2, 8, generator),
        "3-shot: the prototype is the mean of three supports",
    )
    if hidden:
        wide = torch.randn(len(labels), 16, generator=generator, dtype=torch.float64)
        _accuracy_case(
            episode_accuracies,
            wide,
            random_episodes(labels, (1, 2, 4, 5), 4, 5, 3, 5, generator),
            "5-shot, float64, classes 1, 2, 4, 5",
        )
        _accuracy_case(
            episode_accuracies,
            embeddings,
            random_episodes(labels, (3, 5), 2, 2, 1, 1, generator),
            "one episode",
        )
    passed(
        "episode_accuracies: each episode's share of queries nearest their own prototype"
        + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- exercise 7.3: the 95% confidence interval


def _pair_of_numbers(result: Any, call: str) -> tuple[float, float]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(
            "mean_with_interval returns (mean, half_width)",
            input=call,
            expected="a tuple of two numbers",
            got=type_name(result),
        )
    values = tuple(to_float(v) for v in result)
    if any(v is None or not math.isfinite(v) for v in values):
        fail(
            "mean_with_interval returns two finite numbers",
            input=call,
            expected="(mean, half_width)",
            got=str(result)[:200],
            hint="convert tensors with .item()",
        )
    return values


@judge_only
def _interval_hint(values: torch.Tensor, half_width: float) -> str | None:
    n, std = len(values), float(values.double().std())
    mistakes = [
        (
            "use the standard deviation of the values with n - 1 (torch.std's default), not n",
            Z_95 * float(values.double().std(correction=0)) / math.sqrt(n),
        ),
        (
            "multiply the standard error by 1.96, the normal quantile of a two-sided 95% interval",
            std / math.sqrt(n),
        ),
        ("the standard error divides by the SQUARE ROOT of the number of episodes", Z_95 * std / n),
        ("that is the spread of single episodes: divide by sqrt(n) for the spread of their mean", Z_95 * std),
    ]
    return next((why for why, wrong in mistakes if abs(half_width - wrong) <= 1e-4 * (1 + wrong)), None)


def _interval_case(mean_with_interval: Any, values: torch.Tensor) -> None:
    call = f"mean_with_interval(values) with values = {describe(values)}"
    mean, half_width = _pair_of_numbers(
        run_student(INTERVAL_EXERCISE, call, mean_with_interval, values), call
    )
    if probing():
        return
    expected_mean = float(values.double().mean())
    expected_half = Z_95 * float(values.double().std()) / math.sqrt(len(values))
    if differs(mean, expected_mean, 1e-6):
        fail(
            "the first number is the mean of the values",
            input=call,
            expected=f"{expected_mean:.6g}",
            got=f"{mean:.6g}",
        )
    if differs(half_width, expected_half, 2e-5 * (1 + expected_half)):  # 1.96 or 1.959964 both pass
        fail(
            "the half-width is 1.96 standard errors of the mean",
            input=call,
            expected=f"{expected_half:.6g}",
            got=f"{half_width:.6g}",
            hint=_interval_hint(values, half_width),
        )


@check
def check_mean_with_interval(mean_with_interval: Any, hidden: bool = False) -> None:
    """The mean and 1.96 standard errors (sample standard deviation over sqrt(n))."""
    generator = generator_for(73)
    for n in (8, 200) if not hidden else (8, 200, 2, 33):
        _interval_case(
            mean_with_interval, torch.randint(0, 6, (n,), generator=generator).float() / 5
        )  # 5 queries
    passed(
        "mean_with_interval: the mean and 1.96 standard errors" + (" [with hidden cases]" if hidden else "")
    )


# ---------------------------------------------------------------- exercise 7.4: the batch-hard loss


@judge_only
def loop_hard_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float, mistake: str = "") -> float:
    """The batch-hard contrastive loss by plain loops (float64), or what a usual ``mistake`` gives."""
    x, y = embeddings.detach().double(), labels.tolist()
    total = 0.0
    for i in range(len(y)):
        same = [float((x[i] - x[j]).norm()) for j in range(len(y)) if y[j] == y[i] and j != i]
        other = [
            float((x[i] - x[j]).norm())
            for j in range(len(y))
            if y[j] != y[i] or mistake == "other with itself"
        ]
        pull = sum(same) / len(same) if mistake == "mean same" else max(same, default=0.0)
        push = sum(other) / len(other) if mistake == "mean other" else min(other)
        total += (pull if mistake == "no squares" else pull**2) + max(margin - push, 0.0) ** 2
    return total / len(y) if mistake != "sum" else total


HARD_MISTAKES = {
    "other with itself": "the nearest OTHER-class image excludes the image itself and its class (distance 0 to itself)",
    "mean same": "take the FARTHEST same-class image (amax), not the mean over them",
    "mean other": "take the NEAREST other-class image (amin), not the mean over them",
    "no squares": "square the same-class distance as the contrastive loss does: d² + max(margin - d, 0)²",
    "sum": "average over the images of the batch (mean), not a sum",
}


def _loss_and_gradient(
    batch_hard_loss: Any, embeddings: torch.Tensor, labels: torch.Tensor, margin: float
) -> tuple:
    x = embeddings.clone().requires_grad_(True)
    loss = batch_hard_loss(x, labels, margin)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise TypeError(f"expected a one-element tensor connected to the embeddings, got {type_name(loss)}")
    loss.reshape(()).backward()
    return loss.detach().reshape(()), x.grad


def _hard_case(
    batch_hard_loss: Any, embeddings: torch.Tensor, labels: torch.Tensor, margin: float, what: str
) -> None:
    where = f"embeddings {describe(embeddings)}; labels {labels.tolist()}; margin {margin} ({what})"
    loss, gradient = run_student(
        HARD_EXERCISE,
        f"batch_hard_loss(embeddings, labels, {margin})",
        _loss_and_gradient,
        batch_hard_loss,
        embeddings,
        labels,
        margin,
    )
    if gradient is None:
        fail(
            "the loss is computed from the embeddings, so that backward() reaches them",
            input=where,
            expected="a gradient for the embeddings",
            got="no gradient",
            hint="compute the loss with torch operations on `embeddings` (not a new tensor made from a number)",
        )
    if not bool(torch.isfinite(gradient).all()):
        coincide = bool((torch.cdist(embeddings, embeddings) + torch.eye(len(embeddings)) == 0).any())
        fail(
            "the loss has a finite gradient, even where two embeddings coincide",
            input=where,
            expected="finite gradients",
            got=describe(gradient),
            hint="the gradient of sqrt at 0 is infinite: take the square root of distances².clamp_min(1e-12)"
            if coincide
            else None,
        )
    if probing():
        return
    expected = loop_hard_loss(embeddings, labels, margin)
    value = float(loss)
    if not math.isfinite(value):
        fail(
            "the loss is a finite number",
            input=where,
            expected=f"{expected:.6g}",
            got=f"{value}",
            hint="an amax or amin over entries that are all hidden gives -inf or inf: hide the excluded distances "
            "with 0 for the farthest same-class image (distances are >= 0) and with inf for the nearest other",
        )
    if differs(value, expected, 1e-4 * (1 + abs(expected))):
        hint = next(
            (
                why
                for mistake, why in HARD_MISTAKES.items()
                if abs(value - loop_hard_loss(embeddings, labels, margin, mistake)) <= 1e-4 * (1 + abs(value))
            ),
            None,
        )
        fail(
            "the mean over images of (farthest same-class distance)² + max(margin - nearest other-class distance, 0)²",
            input=where,
            expected=f"{expected:.6g}",
            got=f"{value:.6g}",
            hint=hint,
        )
    _judge_hard_gradient(gradient, embeddings, labels, margin, where)


@judge_only
def _judge_hard_gradient(
    gradient: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor, margin: float, where: str
) -> None:
    """The gradient equals the reference's where it is unique: no two embeddings coincide and no image has two
    hardest partners at one distance (there any subgradient is right)."""
    from solutions.oneshot import batch_hard_loss as reference

    distances = torch.cdist(embeddings.double(), embeddings.double())
    off = distances[~torch.eye(len(embeddings), dtype=torch.bool)]
    if bool((off < 1e-6).any()) or len(off.unique()) < len(off) // 2:
        return
    x = embeddings.clone().requires_grad_(True)
    reference(x, labels, margin).backward()
    size = float(x.grad.abs().max())
    if max_error(gradient.double(), x.grad.double()) > 1e-3 * max(size, 1e-6):
        fail(
            "the loss's gradient reaches every term (the same as the reference's)",
            input=where,
            expected=describe(x.grad),
            got=describe(gradient),
            hint="the value is right but not its gradient: is a term detached (.detach(), .item(), torch.no_grad)?",
        )


@check
def check_batch_hard_loss(batch_hard_loss: Any, hidden: bool = False) -> None:
    """The batch-hard loss against a plain loop; a finite gradient where embeddings coincide."""
    generator = generator_for(74)
    square = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
    _hard_case(batch_hard_loss, square, torch.tensor([0, 0, 1, 1]), 2.0, "hand-made")
    labels = torch.arange(4).repeat_interleave(3)
    _hard_case(batch_hard_loss, torch.randn(12, 5, generator=generator), labels, 1.0, "4 classes x 3 images")
    twins = torch.randn(6, 3, generator=generator)
    twins[1] = twins[0]
    twins[4] = twins[2]  # a same-class and an other-class pair at distance 0
    _hard_case(
        batch_hard_loss,
        twins,
        torch.tensor([0, 0, 1, 2, 2, 1]),
        1.5,
        "images 0 and 1 (class 0), and 2 (class 1) and 4 (class 2) have the same embedding",
    )
    if hidden:
        wide = torch.nn.functional.normalize(
            torch.randn(16, 8, generator=generator, dtype=torch.float64), dim=1
        )
        _hard_case(batch_hard_loss, wide, torch.arange(2).repeat(8), 0.7, "unit-length, float64, 2 classes")
        far = torch.randn(8, 4, generator=generator) * 10
        _hard_case(batch_hard_loss, far, torch.arange(4).repeat(2), 1.0, "spread far apart")
    passed(
        "batch_hard_loss: each image's farthest same-class and nearest other-class distance, finite gradients"
        + (" [with hidden cases]" if hidden else "")
    )
