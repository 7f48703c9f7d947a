"""Lesson 05: the training loop, and ``python -m solutions.train``, the reference run.

Two ways to train the same network on the same pairs:

* the teaching loop ``train_one_epoch`` (lesson 05): a ``DataLoader`` over ``SiameseDataset``,
  one forward pass per image, fp32, exactly as in the original notebook (``--no-fast``);
* the fast loop ``fast_train_one_epoch`` (default): the whole data set as one tensor on the
  device, pairs drawn by tensor indexing, both images in one forward pass, channels_last and
  mixed precision where the hardware supports it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from data_utils.splits import ImageSubset

from .data import PairSampler, SiameseDataset
from .evaluate import to_float_images
from .loss import contrastive_loss
from .model import SiameseNetwork

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------- devices, seeds, precision

def get_device() -> torch.device:
    """The fastest device here: a CUDA GPU if present, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def select_device(name: str = "auto") -> torch.device:
    """``auto`` means ``get_device()``; asking for a device that is not there raises ``ValueError``."""
    if name == "auto":
        return get_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu "
                         "(in Colab: Runtime > Change runtime type > GPU).")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps was asked for but Apple MPS is not available; use --device auto or cpu.")
    return torch.device(name)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into ``bf16``, ``fp16`` or ``fp32`` for this device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return "bf16" if major >= 8 else "fp16"  # bf16 is native from Ampere on
    if device.type == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "fp32"


def make_progress(total: int, desc: str, enabled: bool = True):
    """A tqdm progress bar, or a silent stand-in while nbgrader grades (its stderr would score 0)."""
    from tqdm.auto import tqdm

    disabled = not enabled or bool(os.environ.get("NBGRADER_EXECUTION"))
    return tqdm(total=total, desc=desc, disable=disabled, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------- the teaching loop (lesson 05)

def train_one_epoch(net: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, device: torch.device | str,
                    margin: float = 2.0, log_every: int = 10) -> list[float]:
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


# ---------------------------------------------------------------- the fast loop

class TensorPairLoader:
    """Batches ``(img1, img2, label)`` drawn by tensor indexing from a data set held as one tensor on the device.

    The pairs follow ``SiameseDataset``'s distribution; every epoch is a fresh shuffle and fresh
    partners, fixed by ``(seed, epoch)`` so that a resumed run repeats an uninterrupted one.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device,
                 seed: int = 0, channels_last: bool = True) -> None:
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
            first = order[start:start + self.batch_size]
            second = partners[start:start + self.batch_size]
            yield self.images[first], self.images[second], labels[start:start + self.batch_size].unsqueeze(1)


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


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, img1: torch.Tensor, img2: torch.Tensor,
               label: torch.Tensor, margin: float = 2.0, amp_dtype: torch.dtype | None = None,
               scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
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


def fast_train_one_epoch(net: nn.Module, loader: TensorPairLoader, optimizer: torch.optim.Optimizer,
                         margin: float = 2.0, log_every: int = 10, amp_dtype: torch.dtype | None = None,
                         scaler: torch.amp.GradScaler | None = None, progress: Any = None) -> list[float]:
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


def take_steps(loader: TensorPairLoader, num_steps: int,
               deadline: float | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The first ``num_steps`` batches of ``loader``, epoch after epoch; none after ``deadline`` (a perf_counter time)."""
    epoch = 0
    while num_steps > 0 and len(loader) > 0:
        loader.set_epoch(epoch)  # fresh shuffle and partners for every pass over the images
        for batch in itertools.islice(loader, num_steps):
            if deadline is not None and time.perf_counter() > deadline:
                return  # a time budget holds even when the machine slows down mid-run
            yield batch
        num_steps -= len(loader)
        epoch += 1


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    epochs_done: int, history: dict[str, Any], args: dict[str, Any]) -> None:
    """Write everything needed to resume, atomically (a crash mid-write never leaves a broken checkpoint)."""
    state = {
        "epochs_done": epochs_done,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history,
        "args": args,
        "torch_rng": torch.get_rng_state(),
    }
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``."""
    return torch.load(path, map_location="cpu", weights_only=False)


# ---------------------------------------------------------------- the reference run

RESUME_MUST_MATCH = ("batch_size", "lr", "margin", "seed", "limit", "fast", "precision", "synthetic")  # not --compile


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m solutions.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m solutions.train",
        description="Train the Siamese network on Fashion-MNIST and write metrics, plots and a checkpoint.",
    )
    parser.add_argument("--epochs", type=int, default=5, help="number of epochs (default 5, as the original)")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per batch (default 64)")
    parser.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate (default 1e-5)")
    parser.add_argument("--margin", type=float, default=2.0, help="contrastive-loss margin (default 2.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="auto = CUDA, else Apple MPS, else CPU")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="train on the first N training images only (smoke runs)")
    parser.add_argument("--data-root", default=None, help="data folder (default $SIAMESE_DATA_ROOT or ./data)")
    parser.add_argument("--out", default="results/reference", help="output folder (default results/reference)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                        help="fast path (default) or --no-fast: the original's pipeline, fp32")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="fast path only: auto = bf16/fp16 where the hardware has it, else fp32")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="fast path only: torch.compile the network (off by default: see the README)")
    parser.add_argument("--log-every", type=int, default=10, help="log the batch loss every N steps (default 10)")
    parser.add_argument("--eval-pairs", type=int, default=10_000, help="balanced test pairs for the metrics")
    parser.add_argument("--synthetic", type=int, default=None, metavar="N",
                        help="use N synthetic images instead of Fashion-MNIST (tests; no data needed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject impossible values with a clear message (exit code 2)."""
    for name in ("epochs", "batch_size", "log_every", "eval_pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.lr <= 0 or not math.isfinite(args.lr):
        parser.error(f"--lr must be a positive number, got {args.lr}")
    if args.margin <= 0 or not math.isfinite(args.margin):
        parser.error(f"--margin must be a positive number, got {args.margin}")
    if args.limit is not None and args.limit < 2:
        parser.error(f"--limit must be at least 2 images, got {args.limit}")
    if args.synthetic is not None and args.synthetic < 20:
        parser.error(f"--synthetic must be at least 20 images, got {args.synthetic}")
    if not args.fast and (args.precision not in ("auto", "fp32") or args.compile):
        parser.error("--no-fast is the original fp32 pipeline; drop --precision/--compile or use the fast path")


def load_data(args: argparse.Namespace):
    """Training, validation and test datasets (items ``(image, label)``, with ``data`` and ``targets``) for the run.

    The validation images are the course's fixed twelfth of the training images (``data_utils.splits``): the
    network never trains on them, and the decision threshold is chosen on them.
    """
    from data_utils.splits import split_training_set

    if args.synthetic is not None:
        from data_utils.synthetic import SyntheticFashionMNIST

        full = SyntheticFashionMNIST(args.synthetic, seed=args.seed, train=True)
        test = SyntheticFashionMNIST(max(args.synthetic // 6, 20), seed=args.seed, train=False)
    else:
        from data_utils.fashion_mnist import load_fashion_mnist

        full = load_fashion_mnist(args.data_root, train=True)
        test = load_fashion_mnist(args.data_root, train=False)
    train, validation = split_training_set(full)
    return train, validation, test


def versions() -> dict[str, str]:
    """Versions of what produced the numbers."""
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "processor": platform.processor() or platform.machine()}


def device_name(device: torch.device) -> str:
    """A readable name of the training device."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return device.type


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate and plot; write everything into ``args.out``; return the metrics."""
    import matplotlib.pyplot as plt

    from .evaluate import embed, evaluate_embeddings
    from .plots import plot_embeddings, plot_loss_history, plot_similarity_pairs

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(args.device)
    precision = resolve_precision(args.precision, device) if args.fast else "fp32"
    amp_dtype = AMP_DTYPES[precision]
    set_seed(args.seed)

    train_set, validation_set, test_set = load_data(args)
    if args.limit is not None:
        train_set = ImageSubset(train_set, torch.arange(min(args.limit, len(train_set))))
    train_images, train_labels = train_set.data, torch.as_tensor(train_set.targets)

    if args.fast:
        net = prepare_model(SiameseNetwork(), device, compile_model=args.compile)
        optimizer = make_optimizer(net, args.lr, device)
        scaler = make_scaler(device, precision)
    else:  # the original: plain Adam, fp32, default memory layout
        net = SiameseNetwork().to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
        scaler = None

    if args.fast:
        loader = TensorPairLoader(train_images, train_labels, args.batch_size, device, seed=args.seed,
                                  channels_last=device.type != "mps")
    else:
        pairs = SiameseDataset(train_set, seed=args.seed)
        loader = DataLoader(pairs, batch_size=args.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(args.seed), num_workers=0)

    run_args = {k: v for k, v in vars(args).items()}
    history: dict[str, Any] = {"loss_history": [], "epoch_mean_loss": [], "epoch_time_s": [], "steps_per_epoch": len(loader)}
    checkpoint_path = out / "checkpoint.pt"
    epochs_done = 0
    if args.resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}; run once without --resume first")
        state = load_checkpoint(checkpoint_path)
        changed = [k for k in RESUME_MUST_MATCH if state["args"].get(k) != run_args.get(k)]
        if changed:
            raise ValueError(f"--resume: the checkpoint was made with other settings ({', '.join(changed)}); "
                             "use the same options or another --out")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        history, epochs_done = state["history"], state["epochs_done"]
        print(f"Resuming from {checkpoint_path} after epoch {epochs_done}")

    print(f"Training on {device_name(device)}, {'fast path, ' + precision if args.fast else 'original pipeline, fp32'}, "
          f"{len(train_labels)} training images, {args.epochs} epochs of {len(loader)} steps")
    for epoch in range(epochs_done, args.epochs):
        loader_epoch = getattr(loader, "set_epoch", None) or getattr(loader.dataset, "set_epoch")
        loader_epoch(epoch)
        if not args.fast:
            loader.generator.manual_seed(epoch_seed(args.seed, epoch))
        progress = make_progress(len(loader), f"epoch {epoch + 1}/{args.epochs}", enabled=not args.no_progress)
        epoch_started = time.perf_counter()
        if args.fast:
            logged = fast_train_one_epoch(net, loader, optimizer, args.margin, args.log_every, amp_dtype, scaler, progress)
        else:
            logged = train_one_epoch(net, _counted(loader, progress), optimizer, device, args.margin, args.log_every)
        if device.type == "cuda":
            torch.cuda.synchronize()
        progress.close()
        history["epoch_time_s"].append(time.perf_counter() - epoch_started)
        history["loss_history"].extend(logged)
        history["epoch_mean_loss"].append(float(np.mean(logged)))
        if not all(math.isfinite(x) for x in logged):
            raise FloatingPointError(f"the loss became {logged[-1]} in epoch {epoch + 1}; try a smaller --lr")
        save_checkpoint(checkpoint_path, net, optimizer, scaler, epoch + 1, history, run_args)
        pairs_s = len(train_labels) / history["epoch_time_s"][-1]
        print(f"epoch {epoch + 1}/{args.epochs}: mean logged loss {history['epoch_mean_loss'][-1]:.4f}, "
              f"{history['epoch_time_s'][-1]:.1f} s, {pairs_s:.0f} pairs/s", flush=True)

    test_images, test_labels = test_set.data, torch.as_tensor(test_set.targets)
    eval_net = net.to(memory_format=torch.contiguous_format)
    test_embeddings = embed(eval_net, test_images, device)
    metrics = evaluate_embeddings(embed(eval_net, train_images, device), train_labels,
                                  embed(eval_net, validation_set.data, device), torch.as_tensor(validation_set.targets),
                                  test_embeddings, test_labels, num_pairs=args.eval_pairs, seed=args.seed)
    for figure in (
        plot_loss_history(history["loss_history"], history["steps_per_epoch"], args.log_every, out / "loss_history.png"),
        plot_similarity_pairs(eval_net, test_images, test_labels, device, path=out / "similarity_pairs.png"),
        plot_embeddings(test_embeddings, test_labels, path=out / "embeddings.png"),
    ):
        plt.close(figure)  # written to disk; a notebook calling main() should not show them all again

    training_time = sum(history["epoch_time_s"])
    result = {
        "epoch_mean_loss": history["epoch_mean_loss"],
        "loss_history": history["loss_history"],
        "test_accuracy": metrics["test_accuracy"],
        "roc_auc": metrics["roc_auc"],
        "threshold": metrics["threshold"],
        "nearest_neighbour_accuracy": metrics["nearest_neighbour_accuracy"],
        "train_pair_accuracy": metrics["train_pair_accuracy"],
        "validation_accuracy": metrics["validation_accuracy"],
        "num_validation_images": len(validation_set),
        "mean_similarity_same": metrics["mean_similarity_same"],
        "mean_similarity_different": metrics["mean_similarity_different"],
        "num_test_pairs": metrics["num_test_pairs"],
        "training_time_s": training_time,
        "epoch_time_s": history["epoch_time_s"],
        "wall_time_s": time.perf_counter() - started,
        "train_pairs_per_s": len(train_labels) * len(history["epoch_time_s"]) / training_time if training_time else None,
        "steps_per_epoch": history["steps_per_epoch"],
        "device": device_name(device),
        "precision": precision,
        "fast": args.fast,
        "versions": versions(),
        "seed": args.seed,
        "args": run_args,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _counted(loader: Iterable, progress: Any) -> Iterator:
    """Yield from ``loader``, ticking ``progress`` once per batch."""
    for batch in loader:
        yield batch
        progress.update(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 with a clear message on a problem the user can fix."""
    from data_utils.fashion_mnist import CorruptDataError, DataNotFoundError

    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    try:
        result = run(args)
    except (DataNotFoundError, CorruptDataError, ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"verification accuracy (threshold {result['threshold']:.3f} chosen on validation pairs): "
          f"training {result['train_pair_accuracy']:.3f}, validation {result['validation_accuracy']:.3f}, "
          f"test {result['test_accuracy']:.3f}; ROC AUC {result['roc_auc']:.3f}, "
          f"1-NN accuracy {result['nearest_neighbour_accuracy']:.3f}; "
          f"{result['train_pairs_per_s']:.0f} pairs/s; wrote {args.out}/metrics.json and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
