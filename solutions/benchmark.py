"""``python -m solutions.benchmark``: the original notebook's training pipeline against the fast path.

Both run in this one process, on the same data, alternately, several rounds each, so that a
busy machine slows both alike. For each it prints the median training pairs per second, the
achieved GFLOP/s (from the FLOP count of one step) and the ratio fast / original, and projects
the time of the full 5-epoch run (5 epochs of the 55,000 training images left by the validation split).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from data_utils.splits import VALIDATION_SHARE

from .fast import TensorPairLoader
from .loss import contrastive_loss
from .model import SiameseNetwork
from .runtime import AMP_DTYPES, device_name, resolve_precision, select_device

# One pair per training image and epoch, on the images the validation split leaves for training.
FULL_RUN_PAIRS = 5 * (60_000 - 60_000 // VALIDATION_SHARE)


class OriginalSiameseDataset(Dataset):
    """The original notebook's pair dataset: per item, through PIL, with rejection sampling."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img0, label0 = self.dataset[index]
        same_class = random.randint(0, 1)
        while True:  # draw until the class condition holds, as the original does
            img1, label1 = self.dataset[random.randint(0, len(self.dataset) - 1)]
            if (label0 == label1) == bool(same_class):
                break
        return img0, img1, torch.from_numpy(np.array([int(label0 != label1)], dtype=np.float32))


def step_flop(net: SiameseNetwork) -> float:
    """FLOP of one training step per pair: forward and backward of both images (no input gradient for the
    first layer)."""
    macs: list[float] = []

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs.append(output[0].numel() * k)
        elif isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.forward_ind(torch.zeros(1, 1, 28, 28, device=next(net.parameters()).device))
    for hook in hooks:
        hook.remove()
    forward = 2 * sum(macs)
    # backward = gradient w.r.t. weights (1x forward) + w.r.t. inputs (1x forward, except the first layer)
    return 2 * (3 * forward - 2 * macs[0])


def original_pipeline(
    dataset: Dataset, device: torch.device, batch_size: int, lr: float, margin: float, num_workers: int
) -> Callable[[int], float]:
    """A runner of ``n`` steps of the original pipeline: DataLoader workers, two forward passes, fp32."""
    net = SiameseNetwork().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loader = DataLoader(
        OriginalSiameseDataset(dataset),
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=True,
    )
    batches = _forever(loader)

    def run(steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            img1, img2, label = (t.to(device) for t in next(batches))
            out1, out2 = net(img1, img2)
            loss = contrastive_loss(out1, out2, label, margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _sync(device)
        return steps * batch_size / (time.perf_counter() - started)

    return run


def fast_pipeline(
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    batch_size: int,
    lr: float,
    margin: float,
    precision: str,
) -> Callable[[int], float]:
    """A runner of ``n`` steps of the reference fast path (the step of ``fast_train_one_epoch``)."""
    from .fast import make_optimizer, make_scaler, prepare_model, train_step

    net = prepare_model(SiameseNetwork(), device)
    optimizer = make_optimizer(net, lr, device)
    scaler = make_scaler(device, precision)
    amp_dtype = AMP_DTYPES[precision]
    loader = TensorPairLoader(images, labels, batch_size, device, seed=0)
    batches = _forever(loader)

    def run(steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            img1, img2, label = next(batches)
            train_step(net, optimizer, img1, img2, label, margin, amp_dtype, scaler)
        _sync(device)
        return steps * batch_size / (time.perf_counter() - started)

    return run


def _forever(loader) -> Iterator:
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        prog="python -m solutions.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each pipeline (default 5)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per round (default 40)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument(
        "--workers", type=int, default=8, help="DataLoader workers of the original (default 8, as in it)"
    )
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--synthetic", action="store_true", help="synthetic images instead of Fashion-MNIST")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")

    from data_utils.fashion_mnist import CorruptDataError, DataNotFoundError

    try:
        device = select_device(args.device)
        if args.synthetic:
            from data_utils.synthetic import SyntheticFashionMNIST

            dataset = SyntheticFashionMNIST(6000, seed=0)
        else:
            from data_utils.fashion_mnist import load_fashion_mnist

            dataset = load_fashion_mnist(args.data_root, train=True)
    except (DataNotFoundError, CorruptDataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    random.seed(0)
    flop = step_flop(SiameseNetwork())
    runners = {
        "original": original_pipeline(dataset, device, args.batch_size, 1e-5, 2.0, args.workers),
        "fast": fast_pipeline(
            dataset.data, torch.as_tensor(dataset.targets), device, args.batch_size, 1e-5, 2.0, precision
        ),
    }
    print(
        f"device {device_name(device)}; fast path precision {precision}; {flop / 1e9:.3f} GFLOP per training pair; "
        f"{args.rounds} rounds of {args.steps} steps of {args.batch_size} pairs, alternating"
    )
    for run in runners.values():  # warm-up: workers started, kernels chosen, caches filled
        run(max(3, args.steps // 4))
    interleave(runners, args.rounds, args.steps, flop)
    return 0


def interleave(runners: dict[str, Callable[[int], float]], rounds: int, steps: int, flop: float) -> None:
    """Run the pipelines in turn, ``rounds`` times ``steps`` steps each; print every round and the medians
    (``flop`` per training pair gives the GFLOP/s)."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    ratios = []
    for r in range(rounds):
        for name, run in runners.items():
            rates[name].append(run(steps))
        ratios.append(rates["fast"][-1] / rates["original"][-1])
        print(
            f"round {r + 1}: original {rates['original'][-1]:7.0f} pairs/s   fast {rates['fast'][-1]:7.0f} pairs/s   "
            f"ratio {ratios[-1]:.2f}",
            flush=True,
        )
    print()
    for name in runners:
        median = statistics.median(rates[name])
        print(
            f"{name:>8}: median {median:7.0f} pairs/s, {median * flop / 1e9:6.0f} GFLOP/s, "
            f"full 5-epoch run ≈ {FULL_RUN_PAIRS / median / 60:5.1f} min"
        )
    print(
        f"   ratio: fast / original = {statistics.median(rates['fast']) / statistics.median(rates['original']):.2f} "
        f"(median of medians); per-round median {statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
