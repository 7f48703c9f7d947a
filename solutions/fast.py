"""The fast path: the lesson-05 loop made fast on the same pairs (``python -m solutions.train`` uses it by default).

The whole data set is one tensor on the device, pairs are drawn by tensor indexing (the same
distribution as ``SiameseDataset``), both images of a pair go through the network in one forward
pass, channels_last and Adam's fused kernel where they help, and mixed precision where the
hardware supports it (``solutions.runtime.resolve_precision``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .data import PairSampler
from .evaluate import to_float_images
from .loss import contrastive_loss


class TensorPairLoader:
    """Batches ``(img1, img2, label)`` drawn by tensor indexing from a data set held as one tensor on the device.

    The pairs follow ``SiameseDataset``'s distribution; every epoch is a fresh shuffle and fresh
    partners, fixed by ``(seed, epoch)`` so that a resumed run repeats an uninterrupted one.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device,
        seed: int = 0,
        channels_last: bool = True,
    ) -> None:
        self.images = to_float_images(images).to(device)
        if channels_last:
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.sampler = PairSampler(labels.to(device))
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the shuffle and the partners of this epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.images), generator=generator, device=self.device)
        partners, labels = self.sampler.sample(order, generator=generator)
        for start in range(0, len(order), self.batch_size):
            first = order[start : start + self.batch_size]
            second = partners[start : start + self.batch_size]
            yield (
                self.images[first],
                self.images[second],
                labels[start : start + self.batch_size].unsqueeze(1),
            )


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each epoch's shuffle and pairs."""
    return seed * 1_000_003 + epoch


def prepare_model(net: nn.Module, device: torch.device, compile_model: bool = False) -> nn.Module:
    """Move the network to the device, channels_last where that helps (convolutions read NHWC faster)."""
    net = net.to(device)
    if device.type in ("cpu", "cuda"):
        net = net.to(memory_format=torch.channels_last)
    if compile_model:
        net.forward_ind = torch.compile(net.forward_ind)
    return net


def make_optimizer(net: nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam, as in the original; the fused kernel (same update, one pass over the parameters) where it exists."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(net.parameters(), lr=lr, fused=fused)


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, active only for fp16 (whose small gradients would otherwise underflow)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    img1: torch.Tensor,
    img2: torch.Tensor,
    label: torch.Tensor,
    margin: float = 2.0,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """One optimisation step of the fast path; returns the batch loss (still on the device)."""
    with torch.autocast(img1.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        # One pass over 2B images: the same weights, the same result, bigger (faster) matrix products.
        out1, out2 = net.forward_ind(torch.cat([img1, img2])).chunk(2)
    loss = contrastive_loss(out1.float(), out2.float(), label, margin)  # the loss itself in fp32
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


def fast_train_one_epoch(
    net: nn.Module,
    loader: TensorPairLoader,
    optimizer: torch.optim.Optimizer,
    margin: float = 2.0,
    log_every: int = 10,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    progress: Any = None,
) -> list[float]:
    """``train_one_epoch`` for the fast path: device-resident pairs, ``train_step``, no per-step sync."""
    net.train()
    logged = []
    pairs_done, started = 0, time.perf_counter()
    for step, (img1, img2, label) in enumerate(loader):
        loss = train_step(net, optimizer, img1, img2, label, margin, amp_dtype, scaler)
        if step % log_every == 0:
            logged.append(loss)  # kept on the device: reading it now would stall a GPU
        pairs_done += len(label)
        if progress is not None:
            progress.update(1)
            if step % 50 == 0 and not progress.disable:
                rate = pairs_done / max(time.perf_counter() - started, 1e-9)
                progress.set_postfix(loss=f"{loss.item():.3f}", pairs_s=f"{rate:.0f}")
    return torch.stack(logged).float().cpu().tolist()


def take_steps(
    loader: TensorPairLoader, num_steps: int, deadline: float | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The first ``num_steps`` batches of ``loader``, epoch after epoch; none after ``deadline`` (a
    perf_counter time)."""
    epoch = 0
    while num_steps > 0 and len(loader) > 0:
        loader.set_epoch(epoch)  # fresh shuffle and partners for every pass over the images
        for batch in itertools.islice(loader, num_steps):
            if deadline is not None and time.perf_counter() > deadline:
                return  # a time budget holds even when the machine slows down mid-run
            yield batch
        num_steps -= len(loader)
        epoch += 1
