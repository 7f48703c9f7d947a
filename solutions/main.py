"""``python -m solutions.train``: train the Siamese network, evaluate it, plot, and write ``metrics.json``.

Read top to bottom: the command line, the data, the network and its optimiser, the epochs (with a
checkpoint after each, so that ``--resume`` continues a stopped run), then the evaluation, the
figures and the metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from data_utils.splits import HOLDOUT_SPLITS, ImageSubset, seen_classes, with_classes

from . import recipes
from .data import SiameseDataset
from .fast import (
    TensorPairLoader,
    epoch_seed,
    fast_train_one_epoch,
    make_optimizer,
    make_scaler,
    prepare_model,
)
from .model import SiameseNetwork
from .runtime import (
    AMP_DTYPES,
    PRECISIONS,
    device_name,
    make_progress,
    resolve_precision,
    select_device,
    set_seed,
    versions,
)
from .train import train_one_epoch


def save_checkpoint(
    path: Path,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    epochs_done: int,
    history: dict[str, Any],
    args: dict[str, Any],
) -> None:
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


RESUME_MUST_MATCH = (
    "batch_size",
    "lr",
    "margin",
    "seed",
    "limit",
    "fast",
    "precision",
    "synthetic",
)  # not --compile


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m solutions.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m solutions.train",
        description="Train the Siamese network on Fashion-MNIST and write metrics, plots and a checkpoint.",
    )
    add_training_options(parser)
    add_run_options(parser)
    add_recipe_options(parser)
    return parser


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The original's hyperparameters, the device and the fast path's options."""
    parser.add_argument("--epochs", type=int, default=5, help="number of epochs (default 5, as the original)")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per batch (default 64)")
    parser.add_argument("--lr", type=float, default=1e-5, help="Adam learning rate (default 1e-5)")
    parser.add_argument("--margin", type=float, default=2.0, help="contrastive-loss margin (default 2.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="auto = CUDA, else Apple MPS, else CPU",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training images only (smoke runs)",
    )
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fast path (default) or --no-fast: the original's pipeline, fp32",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="fast path only: auto = bf16/fp16 where the hardware has it, else fp32",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="fast path only: torch.compile the network (off by default: see the README)",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Where the data comes from and the results go, logging and resuming."""
    parser.add_argument(
        "--data-root", default=None, help="data folder (default $SIAMESE_DATA_ROOT or ./data)"
    )
    parser.add_argument(
        "--out", default="results/reference", help="output folder (default results/reference)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument(
        "--log-every", type=int, default=10, help="log the batch loss every N steps (default 10)"
    )
    parser.add_argument("--eval-pairs", type=int, default=10_000, help="balanced test pairs for the metrics")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=None,
        metavar="N",
        help="use N synthetic images instead of Fashion-MNIST (tests; no data needed)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The improved recipe and the few-shot evaluation on held-out classes."""
    parser.add_argument(
        "--recipe",
        default="original",
        choices=["original", "improved"],
        help="improved: solutions.recipes.IMPROVED for the same image passes as --epochs of the "
        "original, on all classes and again without the --holdout classes (scored on them); "
        "--lr, --batch-size, --margin and --no-fast are the original recipe's",
    )
    parser.add_argument(
        "--holdout",
        default="anchor",
        choices=sorted(HOLDOUT_SPLITS),
        help="with --recipe improved: the classes the second network never sees (default anchor)",
    )
    parser.add_argument("--episodes", type=int, default=2000, help="random episodes per few-shot setting")


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
    if args.recipe == "improved" and (args.resume or not args.fast or args.compile):
        parser.error(
            "--recipe improved trains both networks in one go on the fast path: drop --resume, --no-fast "
            "and --compile"
        )
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")
    if not args.fast and (args.precision not in ("auto", "fp32") or args.compile):
        parser.error(
            "--no-fast is the original fp32 pipeline; drop --precision/--compile or use the fast path"
        )


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


@dataclass
class Training:
    """What the epochs change: the network, its optimiser and scaler, the pair loader and the history so far."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    loader: Any  # TensorPairLoader (fast path) or a DataLoader over SiameseDataset
    history: dict[str, Any]
    epochs_done: int = 0


def build_training(
    args: argparse.Namespace, train_set: Any, device: torch.device, precision: str
) -> Training:
    """The network, its optimiser and the pair loader: the fast path's, or the original's (plain Adam, fp32)."""
    images, labels = train_set.data, torch.as_tensor(train_set.targets)
    if args.fast:
        net = prepare_model(SiameseNetwork(), device, compile_model=args.compile)
        optimizer, scaler = make_optimizer(net, args.lr, device), make_scaler(device, precision)
        loader = TensorPairLoader(
            images, labels, args.batch_size, device, seed=args.seed, channels_last=device.type != "mps"
        )
    else:
        net = SiameseNetwork().to(device)
        optimizer, scaler = torch.optim.Adam(net.parameters(), lr=args.lr), None
        loader = DataLoader(
            SiameseDataset(train_set, seed=args.seed),
            batch_size=args.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(args.seed),
            num_workers=0,
        )
    history = {"loss_history": [], "epoch_mean_loss": [], "epoch_time_s": [], "steps_per_epoch": len(loader)}
    return Training(net, optimizer, scaler, loader, history)


def resume(training: Training, checkpoint: Path, run_args: dict[str, Any]) -> None:
    """Continue from ``checkpoint`` (``--resume``), which must have been made with the same settings."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}; run once without --resume first")
    state = load_checkpoint(checkpoint)
    changed = [k for k in RESUME_MUST_MATCH if state["args"].get(k) != run_args.get(k)]
    if changed:
        raise ValueError(
            f"--resume: the checkpoint was made with other settings ({', '.join(changed)}); "
            "use the same options or another --out"
        )
    training.net.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    if training.scaler is not None and state["scaler"] is not None:
        training.scaler.load_state_dict(state["scaler"])
    training.history, training.epochs_done = state["history"], state["epochs_done"]
    print(f"Resuming from {checkpoint} after epoch {training.epochs_done}")


def train_epoch(
    args: argparse.Namespace, training: Training, epoch: int, device: torch.device, precision: str
) -> None:
    """One epoch, fresh pairs fixed by ``(seed, epoch)``; its losses and time go into the history."""
    loader = training.loader
    (getattr(loader, "set_epoch", None) or loader.dataset.set_epoch)(epoch)
    if not args.fast:
        loader.generator.manual_seed(epoch_seed(args.seed, epoch))
    progress = make_progress(len(loader), f"epoch {epoch + 1}/{args.epochs}", enabled=not args.no_progress)
    started = time.perf_counter()
    if args.fast:
        logged = fast_train_one_epoch(
            training.net,
            loader,
            training.optimizer,
            args.margin,
            args.log_every,
            AMP_DTYPES[precision],
            training.scaler,
            progress,
        )
    else:
        logged = train_one_epoch(
            training.net, _counted(loader, progress), training.optimizer, device, args.margin, args.log_every
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    progress.close()
    history = training.history
    history["epoch_time_s"].append(time.perf_counter() - started)
    history["loss_history"].extend(logged)
    history["epoch_mean_loss"].append(float(np.mean(logged)))
    if not all(math.isfinite(x) for x in logged):
        raise FloatingPointError(f"the loss became {logged[-1]} in epoch {epoch + 1}; try a smaller --lr")


def evaluate_and_plot(
    args: argparse.Namespace,
    net: nn.Module,
    datasets: tuple,
    history: dict[str, Any],
    device: torch.device,
    out: Path,
) -> dict[str, Any]:
    """The verification metrics (threshold chosen on the validation split) and the three figures of the original."""
    import matplotlib.pyplot as plt

    from .evaluate import embed, evaluate_embeddings
    from .plots import plot_embeddings, plot_loss_history, plot_similarity_pairs

    train_set, validation_set, test_set = datasets
    test_images, test_labels = test_set.data, torch.as_tensor(test_set.targets)
    net = net.to(memory_format=torch.contiguous_format)
    test_embeddings = embed(net, test_images, device)
    metrics = evaluate_embeddings(
        embed(net, train_set.data, device),
        torch.as_tensor(train_set.targets),
        embed(net, validation_set.data, device),
        torch.as_tensor(validation_set.targets),
        test_embeddings,
        test_labels,
        num_pairs=args.eval_pairs,
        seed=args.seed,
    )
    for figure in (
        plot_loss_history(
            history["loss_history"], history["steps_per_epoch"], args.log_every, out / "loss_history.png"
        ),
        plot_similarity_pairs(net, test_images, test_labels, device, path=out / "similarity_pairs.png"),
        plot_embeddings(test_embeddings, test_labels, path=out / "embeddings.png"),
    ):
        plt.close(figure)  # written to disk; a notebook calling main() should not show them all again
    return metrics


METRICS = (
    "test_accuracy",
    "roc_auc",
    "threshold",
    "nearest_neighbour_accuracy",
    "train_pair_accuracy",
    "validation_accuracy",
    "mean_similarity_same",
    "mean_similarity_different",
    "num_test_pairs",
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, evaluate and plot; write everything into ``args.out``; return the metrics."""
    if args.recipe == "improved":
        return run_improved(args)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(args.device)
    precision = resolve_precision(args.precision, device) if args.fast else "fp32"
    set_seed(args.seed)

    train_set, validation_set, test_set = load_data(args)
    if args.limit is not None:
        train_set = ImageSubset(train_set, torch.arange(min(args.limit, len(train_set))))
    training = build_training(args, train_set, device, precision)
    run_args, checkpoint = dict(vars(args)), out / "checkpoint.pt"
    if args.resume:
        resume(training, checkpoint, run_args)

    pipeline = f"fast path, {precision}" if args.fast else "original pipeline, fp32"
    print(
        f"Training on {device_name(device)}, {pipeline}, "
        f"{len(train_set)} training images, {args.epochs} epochs of {len(training.loader)} steps"
    )
    history = training.history
    for epoch in range(training.epochs_done, args.epochs):
        train_epoch(args, training, epoch, device, precision)
        save_checkpoint(
            checkpoint, training.net, training.optimizer, training.scaler, epoch + 1, history, run_args
        )
        print(
            f"epoch {epoch + 1}/{args.epochs}: mean logged loss {history['epoch_mean_loss'][-1]:.4f}, "
            f"{history['epoch_time_s'][-1]:.1f} s, {len(train_set) / history['epoch_time_s'][-1]:.0f} pairs/s",
            flush=True,
        )

    metrics = evaluate_and_plot(
        args, training.net, (train_set, validation_set, test_set), history, device, out
    )
    training_time = sum(history["epoch_time_s"])
    result = {
        "epoch_mean_loss": history["epoch_mean_loss"],
        "loss_history": history["loss_history"],
        **{key: metrics[key] for key in METRICS},
        "num_validation_images": len(validation_set),
        "training_time_s": training_time,
        "epoch_time_s": history["epoch_time_s"],
        "wall_time_s": time.perf_counter() - started,
        "train_pairs_per_s": len(train_set) * len(history["epoch_time_s"]) / training_time
        if training_time
        else None,
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


def train_recipe(
    args: argparse.Namespace,
    recipe: recipes.Recipe,
    train_set: Any,
    device: torch.device,
    precision: str,
    what: str,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``recipe`` for the image passes of ``--epochs`` of the original (two per training image and epoch)."""
    budget = 2 * len(train_set) * args.epochs
    steps = recipe.steps(budget, train_set.targets)
    images_per_step = recipe.images_per_step(len(torch.as_tensor(train_set.targets).unique()))
    progress = make_progress(steps, what, enabled=not args.no_progress)
    started = time.perf_counter()
    net, losses = recipes.train(
        recipe,
        train_set.data,
        train_set.targets,
        device,
        precision,
        budget,
        args.seed,
        progress,
        args.log_every,
    )
    progress.close()
    seconds = time.perf_counter() - started
    print(f"{what}: {steps} steps of {images_per_step} images, {seconds:.1f} s", flush=True)
    history = {
        "loss_history": losses,
        "steps_per_epoch": max(steps // args.epochs, 1),
        "training_time_s": seconds,
        "image_passes": steps * images_per_step,
    }
    return net, history


def run_improved(args: argparse.Namespace) -> dict[str, Any]:
    """The improved recipe: a network on all classes, scored and plotted as the original run, and one that never
    sees the ``--holdout`` classes, scored on them (few-shot episodes and verification) next to raw pixels."""
    started, out = time.perf_counter(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(args.device)
    precision = resolve_precision(args.precision, device)
    set_seed(args.seed)
    train_set, validation_set, test_set = load_data(args)
    if args.limit is not None:
        train_set = ImageSubset(train_set, torch.arange(min(args.limit, len(train_set))))

    net, history = train_recipe(args, recipes.IMPROVED, train_set, device, precision, "improved, all classes")
    settings = asdict(recipes.IMPROVED)
    torch.save({"model": net.state_dict(), "recipe": settings}, out / "checkpoint.pt")
    metrics = evaluate_and_plot(args, net, (train_set, validation_set, test_set), history, device, out)

    holdout = holdout_run(args, (train_set, validation_set, test_set), device, precision, out)
    result = {
        **{key: metrics[key] for key in METRICS},
        "loss_history": history["loss_history"],
        "num_validation_images": len(validation_set),
        "recipe": "improved",
        "recipe_settings": settings,
        "image_passes": history["image_passes"],
        "training_time_s": history["training_time_s"],
        "holdout": holdout,
        "wall_time_s": time.perf_counter() - started,
        "device": device_name(device),
        "precision": precision,
        "versions": versions(),
        "seed": args.seed,
        "args": dict(vars(args)),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def holdout_run(
    args: argparse.Namespace, data: tuple, device: torch.device, precision: str, out: Path
) -> dict[str, Any]:
    """A network that never sees the ``--holdout`` classes, scored on them next to raw pixels, with its plots."""
    from .evaluate import embed
    from .oneshot import few_shot_accuracy, pixel_embeddings, unseen_class_scores
    from .plots import plot_episodes, plot_few_shot

    train_set, validation_set, test_set = data
    unseen = HOLDOUT_SPLITS[args.holdout]
    seen_train = with_classes(train_set, seen_classes(args.holdout))
    holdout_net, holdout_history = train_recipe(
        args, recipes.IMPROVED, seen_train, device, precision, f"improved, without {args.holdout} classes"
    )
    torch.save(
        {"model": holdout_net.state_dict(), "recipe": asdict(recipes.IMPROVED), "holdout": list(unseen)},
        out / "checkpoint-holdout.pt",
    )
    scores = unseen_class_scores(holdout_net, validation_set, test_set, unseen, device, args.episodes)
    test_unseen = with_classes(test_set, unseen)
    scores["pixels_five_way_one_shot"] = few_shot_accuracy(
        pixel_embeddings(test_unseen.data), test_unseen.targets, unseen, 5, 1, args.episodes
    )
    plot_episodes(
        embed(holdout_net, test_unseen.data, device).float().cpu(),
        test_unseen.data,
        test_unseen.targets,
        unseen,
        seed=args.seed,
        path=out / "episodes.png",
    )
    plot_few_shot(scores, path=out / "few_shot.png")
    plt_close_all()
    return {
        "split": args.holdout,
        "seen_classes": list(seen_classes(args.holdout)),
        "training_time_s": holdout_history["training_time_s"],
        **scores,
    }


def plt_close_all() -> None:
    """Close every figure: they are written to disk, and a notebook calling main() should not show them again."""
    import matplotlib.pyplot as plt

    plt.close("all")


def _counted(loader: Iterable, progress: Any) -> Iterator:
    """Yield from ``loader``, ticking ``progress`` once per batch."""
    for batch in loader:
        yield batch
        progress.update(1)


def summary(result: dict[str, Any], out: str) -> str:
    """The run's figures in a few lines."""
    lines = [
        f"verification accuracy (threshold {result['threshold']:.3f} chosen on validation pairs): "
        f"training {result['train_pair_accuracy']:.3f}, validation {result['validation_accuracy']:.3f}, "
        f"test {result['test_accuracy']:.3f}; ROC AUC {result['roc_auc']:.3f}, "
        f"1-NN accuracy {result['nearest_neighbour_accuracy']:.3f}"
    ]
    if "holdout" in result:
        unseen = result["holdout"]
        shots = [
            f"{name.replace('_', ' ')} {unseen[name]['accuracy']:.3f} ± {unseen[name]['ci95']:.3f}"
            for name in (
                "five_way_one_shot",
                "five_way_five_shot",
                "ten_way_one_shot",
                "pixels_five_way_one_shot",
            )
        ]
        lines.append(
            f"classes never seen ({unseen['split']}): {'; '.join(shots)}; verification accuracy "
            f"{unseen['verification_accuracy']:.3f}, ROC AUC {unseen['roc_auc']:.3f}"
        )
    else:
        lines.append(f"{result['train_pairs_per_s']:.0f} pairs/s")
    return "\n".join(lines + [f"wrote {out}/metrics.json and plots"])


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
    print(summary(result, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
