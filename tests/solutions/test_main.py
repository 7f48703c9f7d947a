"""``python -m solutions.train``: the reference run's command line, its outputs and its error messages."""

import json
import math

import pytest
import torch
from helpers import CUDA, has_debian_data, png_ok, run_module, subprocess_env

import data_utils.fashion_mnist as fm
import solutions.main as reference_run

METRIC_KEYS = {
    "epoch_mean_loss",
    "loss_history",
    "test_accuracy",
    "roc_auc",
    "threshold",
    "wall_time_s",
    "train_pairs_per_s",
    "device",
    "versions",
    "seed",
    "args",
}
OUTPUT_FILES = ("metrics.json", "loss_history.png", "similarity_pairs.png", "embeddings.png", "checkpoint.pt")


def assert_complete_run(out):
    """All output files are there, the figures are PNGs, and metrics.json has every key; return the metrics."""
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), f"{name} missing"
    for name in OUTPUT_FILES[1:4]:
        assert png_ok(out / name), f"{name} is not a PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS, METRIC_KEYS - set(metrics)
    assert metrics["loss_history"] and all(math.isfinite(x) for x in metrics["loss_history"])
    assert len(metrics["epoch_mean_loss"]) == metrics["args"]["epochs"]
    return metrics


def assert_clean_error(result, code, *phrases):
    """The command exited with ``code``, its stderr names every phrase, and there is no traceback."""
    assert result.returncode == code, (result.stdout, result.stderr)
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_synthetic_run_writes_everything(tmp_path):
    """A 1-epoch synthetic run exits 0 and writes metrics, three figures and a checkpoint."""
    out = tmp_path / "out"
    result = run_module(
        "solutions.train", "--synthetic", 300, "--epochs", 1, "--out", out, "--no-progress", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    metrics = assert_complete_run(out)
    assert metrics["seed"] == 0 and metrics["args"]["synthetic"] == 300
    assert "metrics.json" in result.stdout


def test_the_improved_recipe_writes_both_networks_and_the_unseen_class_figures(tmp_path, monkeypatch):
    """``--recipe improved`` writes the reference run's outputs, the held-out network's checkpoint, the few-shot and
    episode figures, and the unseen-class scores with their intervals under ``holdout`` in metrics.json."""
    from solutions import recipes

    trained_on = []
    original_train = recipes.train

    def recorded(recipe, images, labels, *args, **kwargs):
        trained_on.append(set(torch.as_tensor(labels).tolist()))
        return original_train(recipe, images, labels, *args, **kwargs)

    monkeypatch.setattr(recipes, "train", recorded)
    out = tmp_path / "out"
    code = reference_run.main(
        [
            "--recipe",
            "improved",
            "--synthetic",
            "600",
            "--epochs",
            "1",
            "--episodes",
            "40",
            "--holdout",
            "look-alikes",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert trained_on == [
        set(range(10)),
        {0, 1, 4, 5, 7},
    ]  # the second network never gets an unseen class's image
    for name in (
        "metrics.json",
        "checkpoint.pt",
        "checkpoint-holdout.pt",
        "loss_history.png",
        "similarity_pairs.png",
        "embeddings.png",
        "episodes.png",
        "few_shot.png",
    ):
        assert (out / name).is_file(), name
    for name in ("episodes.png", "few_shot.png"):
        assert png_ok(out / name)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "improved" and 0 <= metrics["test_accuracy"] <= 1
    assert metrics["image_passes"] <= 2 * 550 * 1  # no more than the original's passes for the same epochs
    holdout = metrics["holdout"]
    assert holdout["unseen_classes"] == [2, 3, 6, 8, 9] and holdout["seen_classes"] == [0, 1, 4, 5, 7]
    for setting in (
        "five_way_one_shot",
        "five_way_five_shot",
        "ten_way_one_shot",
        "pixels_five_way_one_shot",
    ):
        assert holdout[setting]["episodes"] == 40 and 0 < holdout[setting]["ci95"] < 0.5
        assert 0 <= holdout[setting]["accuracy"] <= 1
    assert 0 <= holdout["verification_accuracy"] <= 1 and 0 <= holdout["roc_auc"] <= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--batch-size", "abc"], "invalid int value"),
    ],
)
def test_bad_arguments_subprocess(tmp_path, args, message):
    """Impossible arguments exit 2 with argparse's usage and a clear message, no traceback."""
    result = run_module("solutions.train", *args, "--out", tmp_path / "out", cwd=tmp_path)
    assert_clean_error(result, 2, "usage:", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--margin", "0"], "--margin must be a positive number"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--lr", "inf"], "--lr must be a positive number"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--log-every", "0"], "--log-every must be at least 1"),
        (["--eval-pairs", "0"], "--eval-pairs must be at least 1"),
        (["--limit", "1"], "--limit must be at least 2"),
        (["--synthetic", "5"], "--synthetic must be at least 20"),
        (["--no-fast", "--precision", "bf16"], "--no-fast"),
        (["--device", "tpu"], "invalid choice"),
        (["--recipe", "improved", "--resume"], "--recipe improved trains both networks in one go"),
        (["--recipe", "improved", "--no-fast"], "--recipe improved trains both networks in one go"),
        (["--holdout", "shoes"], "invalid choice"),
        (["--episodes", "0"], "--episodes must be at least 1"),
    ],
)
def test_bad_arguments_in_process(tmp_path, capsys, args, message):
    """More impossible arguments: exit code 2 and a message naming the option."""
    with pytest.raises(SystemExit) as info:
        reference_run.main([*args, "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is present")
def test_missing_cuda_exits_1(tmp_path):
    """--device cuda without a GPU exits 1 with advice, no traceback."""
    result = run_module(
        "solutions.train",
        "--device",
        "cuda",
        "--synthetic",
        20,
        "--out",
        tmp_path / "out",
        "--no-progress",
        cwd=tmp_path,
    )
    assert_clean_error(result, 1, "error:", "CUDA", "--device auto or cpu")


def test_missing_data_in_process(tmp_path, capsys, offline):
    """No data anywhere and no network: exit code 1 and the offline options on stderr."""
    empty = tmp_path / "empty-root"
    code = reference_run.main(
        ["--data-root", str(empty), "--out", str(tmp_path / "out"), "--epochs", "1", "--no-progress"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert fm.ENV_VAR in err and "apt-get install dataset-fashion-mnist" in err and "internet" in err


def test_bad_data_folder_exits_1(tmp_path):
    """FASHION_MNIST_DIR naming an empty folder: exit 1 with the reason, no traceback."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_module(
        "solutions.train",
        "--data-root",
        tmp_path / "data",
        "--out",
        tmp_path / "out",
        "--epochs",
        1,
        "--no-progress",
        cwd=tmp_path,
        env=subprocess_env(**{fm.ENV_VAR: empty}),
    )
    assert_clean_error(result, 1, "error:", fm.ENV_VAR, "train-images-idx3-ubyte")


@pytest.mark.skipif(
    has_debian_data(),
    reason="Debian's dataset-fashion-mnist is installed, so data is found "
    "(test_missing_data_in_process covers this case)",
)
def test_missing_data_subprocess(tmp_path):
    """No data and no source: exit 1 with the offline options, no traceback."""
    result = run_module(
        "solutions.train",
        "--data-root",
        tmp_path / "data",
        "--out",
        tmp_path / "out",
        "--epochs",
        1,
        "--no-progress",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and fm.ENV_VAR in result.stderr


def test_resume_without_checkpoint_exits_1(tmp_path):
    """--resume with no checkpoint in --out exits 1 saying so, no traceback."""
    result = run_module(
        "solutions.train",
        "--synthetic",
        20,
        "--resume",
        "--out",
        tmp_path / "out",
        "--no-progress",
        cwd=tmp_path,
    )
    assert_clean_error(result, 1, "error:", "no checkpoint", "checkpoint.pt")


@pytest.mark.real_data
@pytest.mark.slow
def test_real_data_smoke_run(tmp_path, real_data_root):
    """One epoch on 2048 real images: all outputs, finite losses, and better-than-chance verification."""
    out = tmp_path / "out"
    result = run_module(
        "solutions.train",
        "--epochs",
        1,
        "--limit",
        2048,
        "--data-root",
        real_data_root,
        "--out",
        out,
        "--no-progress",
        "--eval-pairs",
        2000,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    metrics = assert_complete_run(out)
    assert metrics["args"]["limit"] == 2048
    assert metrics["test_accuracy"] > 0.6, metrics["test_accuracy"]
