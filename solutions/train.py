"""Lesson 05: the training loop, and the answers of its questions.

``train_one_epoch`` is the loop of the original notebook: a ``DataLoader`` over ``SiameseDataset``,
one forward pass per image, fp32. The fast version of the same loop is ``solutions.fast``; the
reference run's command line, ``python -m solutions.train``, is ``solutions.main``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

import torch
from torch import nn

from .loss import contrastive_loss


def get_device() -> torch.device:
    """The fastest device here: a CUDA GPU if present, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def train_one_epoch(
    net: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    margin: float = 2.0,
    log_every: int = 10,
) -> list[float]:
    """Train for one pass over ``loader``; return the batch loss logged every ``log_every`` steps."""
    net.train()
    loss_history = []
    for step, (img1, img2, label) in enumerate(loader):
        img1, img2, label = img1.to(device), img2.to(device), label.to(device)
        out1, out2 = net(img1, img2)
        loss = contrastive_loss(out1, out2, label, margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0:
            loss_history.append(loss.item())
    return loss_history


def weight_without_zero_grad(a: float, w: float, lr: float) -> float:
    """Question 5.3: the weight after two SGD steps on the loss ``(a·w)²`` when ``zero_grad()`` is forgotten."""
    first_gradient = 2 * a**2 * w
    w = w - lr * first_gradient
    return w - lr * (first_gradient + 2 * a**2 * w)  # backward() adds the new gradient to the old one


def logged_losses(num_pairs: int, batch_size: int, log_every: int) -> int:
    """Question 5.4: how many losses ``train_one_epoch`` returns for an epoch of ``num_pairs`` pairs."""
    steps = math.ceil(num_pairs / batch_size)  # a last, smaller batch is a step too
    return math.ceil(steps / log_every)  # steps 0, log_every, 2·log_every, ... below steps


if (
    __name__ == "__main__"
):  # `python -m solutions.train`: the reference run (its command line is solutions.main)
    from solutions.main import main

    sys.exit(main())
