"""``python -m solutions.ablation``: each recipe change of ``solutions.recipes``, over several seeds, for the
same compute.

For every row and seed it trains two networks for the same budget of image passes:

* one on all ten classes (the training split), scored on the standard 10,000 balanced test pairs
  (seed 0) with the threshold chosen on validation pairs: verification accuracy, ROC AUC, 1-NN;
* one on the five classes ``--holdout`` leaves (default: the ``anchor`` split), scored on the five it
  never saw: 5-way 1-shot and 5-shot accuracy over test-image episodes, and verification accuracy
  and AUC on balanced pairs of unseen test images (threshold from seen-class validation pairs).

It writes one JSON line per run into ``OUT/runs.jsonl`` as it goes (a stopped run keeps what it has)
and prints the table: mean and standard deviation over seeds. The baselines (raw pixels, a CNN on
the support images) are measured on the same episodes by ``--baselines``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from data_utils.splits import HOLDOUT_SPLITS, seen_classes, split_training_set, with_classes

from .evaluate import embed, evaluate_embeddings
from .oneshot import (
    few_shot_accuracy,
    mean_with_interval,
    pixel_embeddings,
    sample_episodes,
    support_cnn_accuracies,
    unseen_class_scores,
)
from .recipes import CANDIDATES, IMAGE_PASSES, RECIPES, train
from .runtime import resolve_precision, select_device

EPISODES = 2000
COLUMNS = (
    "test_accuracy",
    "roc_auc",
    "nearest_neighbour_accuracy",
    "unseen_1_shot",
    "unseen_5_shot",
    "unseen_10_way",
    "unseen_accuracy",
    "unseen_roc_auc",
    "wall_time_s",
)


def load(data_root: str | None, synthetic: int | None) -> tuple:
    """The training split, the validation split and the test set."""
    if synthetic:
        from data_utils.synthetic import SyntheticFashionMNIST

        full, test = (
            SyntheticFashionMNIST(synthetic, seed=0),
            SyntheticFashionMNIST(synthetic // 3, seed=1, train=False),
        )
    else:
        from data_utils.fashion_mnist import load_fashion_mnist

        full, test = load_fashion_mnist(data_root, train=True), load_fashion_mnist(data_root, train=False)
    return (*split_training_set(full), test)


def unseen_columns(scores: dict) -> dict[str, float]:
    """The table's columns of ``oneshot.unseen_class_scores``."""
    return {
        "unseen_1_shot": scores["five_way_one_shot"]["accuracy"],
        "unseen_5_shot": scores["five_way_five_shot"]["accuracy"],
        "unseen_10_way": scores["ten_way_one_shot"]["accuracy"],
        "unseen_accuracy": scores["verification_accuracy"],
        "unseen_roc_auc": scores["roc_auc"],
    }


def run_one(
    row: str, seed: int, data: tuple, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Train and score one row for one seed: a network on all classes and one without the held-out classes."""
    recipe, precision = {**RECIPES, **CANDIDATES}[row], resolve_precision("auto", device)
    train_set, validation, test = data
    started = time.perf_counter()
    net, _ = train(recipe, train_set.data, train_set.targets, device, precision, args.budget, seed)
    scores = evaluate_embeddings(
        embed(net, train_set.data, device).float(),
        train_set.targets,
        embed(net, validation.data, device).float(),
        validation.targets,
        embed(net, test.data, device).float(),
        torch.as_tensor(test.targets),
        seed=0,
    )
    seen_train = with_classes(train_set, seen_classes(args.holdout))
    holdout_net, _ = train(recipe, seen_train.data, seen_train.targets, device, precision, args.budget, seed)
    result = {
        "row": row,
        "recipe": asdict(recipe),
        "seed": seed,
        "budget": args.budget,
        "holdout": args.holdout,
        "precision": precision,
        **{k: scores[k] for k in ("test_accuracy", "roc_auc", "nearest_neighbour_accuracy", "threshold")},
        **unseen_columns(
            unseen_class_scores(
                holdout_net, validation, test, HOLDOUT_SPLITS[args.holdout], device, args.episodes
            )
        ),
        "wall_time_s": time.perf_counter() - started,
    }
    return result


def baselines(data: tuple, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Raw-pixel prototypes and a CNN trained on the supports alone, on every split's unseen test images."""
    test = data[2]
    found = []
    for split in args.splits:
        unseen = HOLDOUT_SPLITS[split]
        images = with_classes(test, unseen)
        for k_shot in (1, 5):
            episodes = sample_episodes(images.targets, unseen, 5, k_shot, 5, args.episodes, seed=0)
            pixels = few_shot_accuracy(
                pixel_embeddings(images.data), images.targets, unseen, 5, k_shot, args.episodes
            )
            cnn, interval = mean_with_interval(
                support_cnn_accuracies(images.data, episodes, device=args.device_for_cnn)
            )
            found.append(
                {
                    "split": split,
                    "k_shot": k_shot,
                    "pixels": pixels["accuracy"],
                    "pixels_ci95": pixels["ci95"],
                    "support_cnn": cnn,
                    "support_cnn_ci95": interval,
                    "episodes": args.episodes,
                }
            )
            print(json.dumps(found[-1]), flush=True)
    return found


def table(runs: list[dict[str, Any]]) -> str:
    """The ablation as a Markdown table: mean ± standard deviation over seeds, one row per recipe."""
    lines = ["| recipe | seeds | " + " | ".join(COLUMNS) + " |", "| --- " * (len(COLUMNS) + 2) + "|"]
    for row in {**RECIPES, **CANDIDATES}:
        mine = [r for r in runs if r["row"] == row]
        if not mine:
            continue
        cells = []
        for column in COLUMNS:
            values = [
                r[column] for r in mine if column in r
            ]  # a column added later is missing from older runs
            if not values:
                cells.append("–")
                continue
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(
                f"{statistics.mean(values):.1f} ± {spread:.1f}"
                if column == "wall_time_s"
                else f"{statistics.mean(values):.4f} ± {spread:.4f}"
            )
        lines.append(f"| {row} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the rows and seeds asked for, appending to ``OUT/runs.jsonl``; print the table of everything there."""
    parser = argparse.ArgumentParser(
        prog="python -m solutions.ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rows",
        nargs="*",
        default=list(RECIPES),
        help="recipe rows (default: all of RECIPES; CANDIDATES on request)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="run seeds first-seed, ..., first-seed + seeds - 1"
    )
    parser.add_argument("--budget", type=int, default=IMAGE_PASSES, help="image passes per network")
    parser.add_argument("--holdout", default="anchor", choices=sorted(HOLDOUT_SPLITS))
    parser.add_argument("--episodes", type=int, default=EPISODES)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--synthetic", type=int, default=None, metavar="N", help="N synthetic images (tests)")
    parser.add_argument(
        "--baselines", action="store_true", help="measure the baselines instead of the recipes"
    )
    parser.add_argument("--device-for-cnn", default="cpu", help="where the baseline CNNs train (default cpu)")
    parser.add_argument(
        "--splits",
        nargs="*",
        default=list(HOLDOUT_SPLITS),
        choices=list(HOLDOUT_SPLITS),
        help="with --baselines: the held-out splits to measure (default: all)",
    )
    parser.add_argument("--deadline-s", type=float, default=None, help="start no run after this many seconds")
    parser.add_argument("--out", default="results/ablation")
    args = parser.parse_args(argv)
    unknown = [row for row in args.rows if row not in {**RECIPES, **CANDIDATES}]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {[*RECIPES, *CANDIDATES]}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load(args.data_root, args.synthetic)
    if args.baselines:
        (out / "baselines.json").write_text(json.dumps(baselines(data, args), indent=1) + "\n")
        return 0
    device, started = select_device(args.device), time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for row in args.rows:
            if args.deadline_s is not None and time.perf_counter() - started > args.deadline_s:
                print(f"deadline: not starting {row}, seed {seed}", flush=True)
                continue
            result = run_one(row, seed, data, args, device)
            print(json.dumps(result), flush=True)
            with open(out / "runs.jsonl", "a") as f:
                f.write(json.dumps(result) + "\n")
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    print(table([r for r in runs if r["budget"] == args.budget and r["holdout"] == args.holdout]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
