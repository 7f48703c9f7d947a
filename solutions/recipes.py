"""Training recipes for the same compute: the original notebook's, and changes to it, one at a time.

A recipe is trained for a budget of *image passes* (an image through the network once, forward and
backward): the original run is 5 epochs of 60,000 pairs of two images, 600,000 passes. What a recipe
may change (each one row of the ablation in ``solutions.ablation``):

* ``lr`` and ``schedule``: a larger learning rate, warmed up and annealed (one-cycle);
* ``normalized``: L2-normalised embeddings of ``embedding_dim`` from a head with batch norm and no
  final ReLU, so that distances lie in [0, 2] and the margin means the same all through training;
* ``batches``: ``"pairs"`` (random pairs, as the original) or ``"classes"``: P classes × K images
  per batch, every pair inside the batch used, so one image pass feeds many pairs;
* ``mining``: with class batches, ``"all"`` pairs, or ``"hard"``: each image's farthest same-class
  and nearest other-class image in the batch (batch-hard, Hermans et al. 2017);
* ``augment``: random horizontal flips and shifts of up to two pixels.

* ``loss="supcon"``: the supervised contrastive loss (Khosla et al. 2020), a softmax over a class
  batch's cosine similarities at ``temperature``, instead of the margin loss (the last row, ``IMPROVED``).

``CANDIDATES`` are changes tried for classes never seen:

* ``embed_below_head``: score with the normalised backbone features, the head used only in training
  (as SimCLR does with its projection head: the layer below it keeps more of what the loss discards).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import CNNBackbone
from .evaluate import to_float_images
from .fast import make_optimizer, prepare_model
from .loss import contrastive_loss
from .model import SiameseNetwork
from .oneshot import batch_hard_loss
from .runtime import AMP_DTYPES, set_seed

IMAGE_PASSES = 600_000  # the original run's compute: 5 epochs x 60,000 pairs x 2 images


@dataclass(frozen=True)
class Recipe:
    """How a network is trained (the defaults are the original notebook's)."""

    lr: float = 1e-5
    schedule: bool = False
    normalized: bool = False
    embedding_dim: int = 256
    margin: float = 2.0
    batches: str = "pairs"  # or "classes"
    mining: str = "all"  # with class batches: "all" or "hard"
    augment: bool = False
    loss: str = "contrastive"  # with class batches: or "supcon"
    temperature: float = 0.1  # of the supcon loss
    embed_below_head: bool = False  # with normalised embeddings: score with the backbone's features
    batch_pairs: int = 64  # with random pairs
    classes_per_batch: int = 8  # with class batches: P classes ...
    images_per_class: int = 16  # ... of K images each

    def images_per_step(self, num_classes: int) -> int:
        """Image passes of one optimisation step on images of ``num_classes`` classes (a class batch holds at
        most that many classes: five seen classes give 5 x 16 images, not 8 x 16)."""
        if self.batches == "pairs":
            return 2 * self.batch_pairs
        return min(self.classes_per_batch, num_classes) * self.images_per_class

    def steps(self, budget: int, labels: torch.Tensor) -> int:
        """Optimisation steps that spend ``budget`` image passes on images of these ``labels`` (at least one)."""
        return max(budget // self.images_per_step(len(torch.as_tensor(labels).unique())), 1)


ORIGINAL = Recipe()
LARGER_LR = replace(ORIGINAL, lr=1e-3, schedule=True)
NORMALIZED = replace(LARGER_LR, normalized=True, embedding_dim=128, margin=1.0)
CLASS_BATCHES = replace(NORMALIZED, batches="classes")
HARD_MINING = replace(CLASS_BATCHES, mining="hard")
FLIPS = replace(HARD_MINING, augment=True)
IMPROVED = replace(FLIPS, loss="supcon", mining="all")  # the best verification of the ablation (README)

#: The ablation's rows, each one change on the row above it.
RECIPES: dict[str, Recipe] = {
    "original": ORIGINAL,
    "+ lr 1e-3, one-cycle": LARGER_LR,
    "+ L2-normalised 128-d, BN head": NORMALIZED,
    "+ P x K class batches, all pairs": CLASS_BATCHES,
    "+ batch-hard mining": HARD_MINING,
    "+ flips and shifts": FLIPS,
    "+ SupCon loss instead of batch-hard (improved)": IMPROVED,
}

#: Changes tried for classes never seen, each on a row of the ablation.
CANDIDATES: dict[str, Recipe] = {
    "flips and shifts, all pairs instead of hardest": replace(FLIPS, mining="all"),
    "flips and shifts, embedded below the head": replace(FLIPS, embed_below_head=True),
    "improved, embedded below the head": replace(IMPROVED, embed_below_head=True),
}


class NormalizedNetwork(nn.Module):
    """The course's backbone with a head that ends in batch norm and L2 normalisation instead of a ReLU."""

    def __init__(self, embedding_dim: int = 128, embed_below_head: bool = False) -> None:
        super().__init__()
        self.embed_below_head = embed_below_head
        self.backbone = CNNBackbone()
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256 * 3 * 3, 1024),
            nn.BatchNorm1d(1024),
            nn.ReLU(),
            nn.Linear(1024, embedding_dim),
        )

    def forward_ind(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings ``[B, embedding_dim]`` of images ``[B, 1, 28, 28]`` (in evaluation with
        ``embed_below_head``, the backbone's ``[B, 2304]`` features)."""
        if self.embed_below_head and not self.training:
            return F.normalize(self.backbone(x).flatten(1).float(), dim=1)
        return F.normalize(self.head(self.backbone(x)).float(), dim=1)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed both images of each pair with the same weights."""
        return self.forward_ind(img1), self.forward_ind(img2)


def build_network(recipe: Recipe) -> nn.Module:
    """The network a recipe trains."""
    if recipe.normalized:
        return NormalizedNetwork(recipe.embedding_dim, recipe.embed_below_head)
    return SiameseNetwork(recipe.embedding_dim)


# ---------------------------------------------------------------- batches


def pair_batches(labels: torch.Tensor, batch_pairs: int, generator: torch.Generator) -> Iterator[tuple]:
    """Endless batches ``(first, second, pair label)`` of random pairs as the original draws them (same class with
    probability one half, the partner uniform over the required classes)."""
    from .data import PairSampler

    sampler = PairSampler(labels)
    while True:
        first = torch.randint(len(labels), (batch_pairs,), generator=generator)
        second, pair_labels = sampler.sample(first, generator=generator)
        yield first, second, pair_labels.unsqueeze(1)


def class_batches(
    labels: torch.Tensor, classes_per_batch: int, images_per_class: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless batches of image indices: ``classes_per_batch`` random classes, ``images_per_class`` images of each."""
    classes = labels.unique()
    members = [(labels == c).nonzero().flatten() for c in classes]
    per_batch = min(classes_per_batch, len(classes))
    while True:
        chosen = torch.randperm(len(classes), generator=generator)[:per_batch]
        yield torch.cat(
            [
                members[c][torch.randint(len(members[c]), (images_per_class,), generator=generator)]
                for c in chosen.tolist()
            ]
        )


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to two pixels (a garment mirrored or moved is the same garment)."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip.to(images.device)[:, None, None, None], images.flip(3), images)
    shifts = torch.randint(
        -2, 3, (2,), generator=generator
    ).tolist()  # one shift per batch: cheap, still varied
    padded = F.pad(images, (2, 2, 2, 2))
    return padded[:, :, 2 + shifts[0] : 30 + shifts[0], 2 + shifts[1] : 30 + shifts[1]]


# ---------------------------------------------------------------- losses inside a batch


def batch_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """All pairwise distances of a batch, with a gradient that stays finite where two embeddings coincide."""
    squared = torch.cdist(embeddings, embeddings).pow(2)
    return squared.clamp_min(1e-12).sqrt()


def in_batch_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float, mining: str) -> torch.Tensor:
    """The contrastive loss over the pairs of a class batch: every pair (``"all"``: the mean over same-class pairs
    plus the mean over other-class pairs inside the margin), or each image's hardest two (``"hard"``)."""
    if mining == "hard":
        return batch_hard_loss(embeddings, labels, margin)
    distances = batch_distances(embeddings.float())
    same = labels[:, None] == labels[None, :]
    other = ~same
    same = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pull = distances[same].pow(2).mean()
    push = F.relu(margin - distances[other]).pow(2)
    active = push > 0
    return pull + (push[active].mean() if active.any() else push.sum())


def supervised_contrastive_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """SupCon: minus each image's mean log-probability of its same-class images, under a softmax over its cosine
    similarities to the rest of the batch divided by ``temperature``."""
    unit = F.normalize(embeddings.float(), dim=1)
    itself = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    log_prob = (unit @ unit.T / temperature).masked_fill(itself, -math.inf).log_softmax(dim=1)
    positives = (labels[:, None] == labels[None, :]) & ~itself
    return -(log_prob.masked_fill(~positives, 0).sum(1) / positives.sum(1).clamp_min(1)).mean()


# ---------------------------------------------------------------- training


def train(
    recipe: Recipe,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    precision: str = "fp32",
    budget: int = IMAGE_PASSES,
    seed: int = 0,
    progress=None,
    log_every: int = 10,
    batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train a recipe's network on ``images`` (uint8 ``[N, 28, 28]``) for ``budget`` image passes; return it and the
    loss of every ``log_every``-th step. ``batch_loss(embeddings, labels)``, if given, replaces the recipe's loss of
    a class batch (lesson 7 trains with the student's)."""
    set_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    pixels = to_float_images(images).to(device)
    if device.type in ("cpu", "cuda"):
        pixels = pixels.contiguous(
            memory_format=torch.channels_last
        )  # the layout prepare_model gives the network
    labels = torch.as_tensor(labels)
    net = prepare_model(build_network(recipe), device)
    optimizer = make_optimizer(net, recipe.lr, device)
    steps = recipe.steps(budget, labels)
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps)
        if recipe.schedule
        else None
    )
    amp_dtype = AMP_DTYPES[precision]
    batches = (
        pair_batches(labels, recipe.batch_pairs, generator)
        if recipe.batches == "pairs"
        else class_batches(labels, recipe.classes_per_batch, recipe.images_per_class, generator)
    )
    net.train()
    logged = []
    for step in range(steps):
        loss = _step(recipe, net, pixels, labels, next(batches), generator, amp_dtype, batch_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if step % log_every == 0:
            logged.append(loss.detach())
        if progress is not None:
            progress.update(1)
    return net.eval(), torch.stack(logged).float().cpu().tolist()


def _step(
    recipe: Recipe,
    net: nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    batch,
    generator,
    amp_dtype,
    batch_loss=None,
) -> torch.Tensor:
    """The loss of one batch (pairs, or a class batch), images augmented if the recipe says so."""
    device = pixels.device
    indices = torch.cat(batch[:2]) if recipe.batches == "pairs" else batch
    x = pixels[indices.to(device)]
    if recipe.augment:
        x = augment(x, generator)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        embeddings = net.forward_ind(x).float()
    if recipe.batches == "pairs":
        out1, out2 = embeddings.chunk(2)
        return contrastive_loss(out1, out2, batch[2].to(device), recipe.margin)
    if batch_loss is not None:
        return batch_loss(embeddings, labels[batch].to(device))
    if recipe.loss == "supcon":
        return supervised_contrastive_loss(embeddings, labels[batch].to(device), recipe.temperature)
    return in_batch_loss(embeddings, labels[batch].to(device), recipe.margin, recipe.mining)
