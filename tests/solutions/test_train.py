"""solutions.train (lesson 05), solutions.fast and solutions.runtime: devices, precision, both training loops, the
pair loader; and the reference run's seeding and resuming (solutions.main).

The loop tests train a tiny stand-in network with the same interface as SiameseNetwork
(``forward_ind`` and ``forward``), so that they take a second, not minutes, on a CPU;
the real network is trained by the ``main()`` tests at the bottom.
"""

import json
import math
import time

import pytest
import torch
from helpers import CUDA
from torch import nn
from torch.utils.data import DataLoader

import solutions.main as reference_run
from solutions import fast, runtime
from solutions.data import SiameseDataset
from solutions.fast import TensorPairLoader, fast_train_one_epoch
from solutions.runtime import resolve_precision, select_device
from solutions.train import train_one_epoch

CPU = torch.device("cpu")
MPS = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


class TinySiamese(nn.Module):
    """A small Siamese network (one conv, one linear layer) with SiameseNetwork's interface."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 8, 5, stride=3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 16)
        )

    def forward_ind(self, x):
        return self.layers(x)

    def forward(self, img1, img2):
        return self.forward_ind(img1), self.forward_ind(img2)


def mean(values):
    """The mean of a list of floats."""
    return sum(values) / len(values)


# ---------------------------------------------------------------- devices and precision


def test_select_device_cpu():
    """``cpu`` always gives the CPU."""
    assert select_device("cpu") == CPU


@pytest.mark.skipif(CUDA or MPS, reason="an accelerator is present")
def test_select_device_auto_falls_back_to_cpu():
    """``auto`` gives the CPU when there is no CUDA or MPS."""
    assert select_device("auto") == CPU


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU")
def test_select_device_auto_prefers_cuda():
    """``auto`` gives CUDA when a GPU is visible."""
    assert select_device("auto").type == "cuda"


@pytest.mark.skipif(CUDA, reason="a CUDA GPU is present")
def test_select_device_missing_cuda_raises():
    """Asking for CUDA without a GPU raises ValueError saying what to do instead."""
    with pytest.raises(ValueError) as info:
        select_device("cuda")
    assert "CUDA" in str(info.value) and "--device auto or cpu" in str(info.value)


def test_resolve_precision_explicit():
    """An explicit precision is kept as it is."""
    for precision in ("fp32", "bf16", "fp16"):
        assert resolve_precision(precision, CPU) == precision


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_resolve_precision_auto_on_cpu(monkeypatch, has_bf16, expected):
    """``auto`` on the CPU is bf16 where the CPU computes it natively, else fp32."""
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: has_bf16)
    assert resolve_precision("auto", CPU) == expected


def test_resolve_precision_unknown_raises():
    """An unknown precision raises ValueError."""
    with pytest.raises(ValueError):
        resolve_precision("fp8", CPU)


# ---------------------------------------------------------------- the teaching loop


def test_train_one_epoch_lowers_loss(synthetic_train):
    """A few epochs of the teaching loop on a separable synthetic set lower the loss."""
    torch.manual_seed(0)
    net = TinySiamese()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    pairs = SiameseDataset(synthetic_train, seed=0)
    loader = DataLoader(pairs, batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(0))
    history = []
    for epoch in range(4):
        pairs.set_epoch(epoch)
        history.append(train_one_epoch(net, loader, optimizer, "cpu", log_every=1))
    assert all(len(h) == 10 for h in history)
    assert all(math.isfinite(x) for h in history for x in h)
    assert mean(history[-1]) < 0.7 * mean(history[0]), [mean(h) for h in history]


def test_train_one_epoch_logs_every_n_steps(synthetic_train):
    """The loss is logged at steps 0, n, 2n, ... and the network is left in train mode."""
    net = TinySiamese().eval()
    loader = DataLoader(SiameseDataset(synthetic_train, seed=0), batch_size=30)  # 7 batches
    logged = train_one_epoch(net, loader, torch.optim.SGD(net.parameters(), lr=1e-3), "cpu", log_every=3)
    assert len(logged) == 3 and all(isinstance(x, float) for x in logged)
    assert net.training


def test_train_one_epoch_updates_parameters(synthetic_train):
    """One epoch changes the weights."""
    net = TinySiamese()
    before = [p.detach().clone() for p in net.parameters()]
    loader = DataLoader(SiameseDataset(synthetic_train, seed=0), batch_size=50)
    train_one_epoch(net, loader, torch.optim.Adam(net.parameters(), lr=1e-3), "cpu")
    # The last bias shifts both embeddings alike, so the loss cannot see it: skip it.
    changed = [not torch.equal(b, p) for b, p in zip(before, net.parameters())]
    assert all(changed[:-1])


# ---------------------------------------------------------------- the fast loop


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_fast_train_one_epoch_lowers_loss(synthetic_train, amp_dtype):
    """A few epochs of the fast loop (fp32, or bf16 autocast on the CPU) lower the loss."""
    torch.manual_seed(0)
    net = TinySiamese().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = TensorPairLoader(synthetic_train.data, synthetic_train.targets, 20, CPU, seed=0)
    history = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        history.append(fast_train_one_epoch(net, loader, optimizer, log_every=1, amp_dtype=amp_dtype))
    assert all(len(h) == 10 for h in history)
    assert all(isinstance(x, float) and math.isfinite(x) for h in history for x in h)
    assert mean(history[-1]) < 0.7 * mean(history[0]), [mean(h) for h in history]


# ---------------------------------------------------------------- TensorPairLoader


@pytest.fixture
def traceable():
    """100 uint8 images whose pixels all equal their index, and labels 0..9 (10 each)."""
    n = 100
    images = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1).expand(n, 28, 28).contiguous()
    return images, torch.arange(n) % 10


def image_index(batch):
    """The index of each image of a batch made from ``traceable`` images."""
    return (batch[:, 0, 0, 0] * 255).round().long()


def test_loader_batches_and_length(traceable):
    """len() is the number of batches; all but the last are full; shapes and dtypes are right."""
    loader = TensorPairLoader(*traceable, batch_size=32, device=CPU, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(b[2]) for b in batches] == [32, 32, 32, 4]
    img1, img2, label = batches[0]
    assert img1.shape == img2.shape == (32, 1, 28, 28) and img1.dtype == torch.float32
    assert label.shape == (32, 1) and label.dtype == torch.float32


def test_loader_pair_labels_match_classes(traceable):
    """Every image is a first image once per epoch; labels are 0 exactly for same-class pairs."""
    images, labels = traceable
    loader = TensorPairLoader(images, labels, batch_size=32, device=CPU, seed=0)
    firsts = []
    for img1, img2, label in loader:
        first, second = image_index(img1), image_index(img2)
        assert torch.equal(label.flatten(), (labels[first] != labels[second]).float())
        firsts.extend(first.tolist())
    assert sorted(firsts) == list(range(len(images)))


def test_loader_epochs_reproducible(traceable):
    """The same (seed, epoch) gives the same batches; another epoch gives others."""
    a = TensorPairLoader(*traceable, batch_size=100, device=CPU, seed=3)
    b = TensorPairLoader(*traceable, batch_size=100, device=CPU, seed=3)
    first_a, first_b = next(iter(a)), next(iter(b))
    assert all(torch.equal(x, y) for x, y in zip(first_a, first_b))
    b.set_epoch(1)
    assert not torch.equal(first_a[1], next(iter(b))[1])


def test_loader_pairs_balanced(traceable):
    """Over 40 epochs about half the pairs are different-class (binomial, 5 sigma)."""
    loader = TensorPairLoader(*traceable, batch_size=100, device=CPU, seed=0)
    different = 0
    for epoch in range(40):
        loader.set_epoch(epoch)
        different += int(next(iter(loader))[2].sum())
    n = 40 * 100
    assert abs(different - n / 2) <= 5 * math.sqrt(n / 4)


def test_take_steps_crosses_epochs(traceable):
    """take_steps yields exactly num_steps batches, with fresh pairs in the second pass over the images."""
    loader = TensorPairLoader(*traceable, batch_size=32, device=CPU, seed=0)
    batches = list(fast.take_steps(loader, 6))
    assert len(batches) == 6 and loader.epoch == 1
    assert sorted(image_index(torch.cat([b[0] for b in batches[:4]])).tolist()) == list(range(100))
    assert not torch.equal(batches[0][1], batches[4][1])


def test_take_steps_stops_at_the_deadline(traceable):
    """Past its deadline take_steps yields nothing more."""
    loader = TensorPairLoader(*traceable, batch_size=32, device=CPU, seed=0)
    assert list(fast.take_steps(loader, 6, deadline=time.perf_counter() - 1)) == []


# ---------------------------------------------------------------- seeded runs and resuming (real network)


def run_main(out, *extra):
    """Train the real network on 40 synthetic images in-process; return the metrics written."""
    argv = [
        "--synthetic",
        "40",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--eval-pairs",
        "50",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]
    assert reference_run.main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_seeded_runs_identical(tmp_path):
    """Two fresh runs with the same seed give identical loss histories and metrics."""
    a = run_main(tmp_path / "a", "--epochs", "1", "--seed", "3")
    b = run_main(tmp_path / "b", "--epochs", "1", "--seed", "3")
    assert len(a["loss_history"]) == 5
    assert a["loss_history"] == b["loss_history"]
    assert a["test_accuracy"] == b["test_accuracy"] and a["threshold"] == b["threshold"]


def test_resume_repeats_uninterrupted_run(tmp_path, capsys):
    """1 epoch, then --resume to 2 epochs, gives the loss history of a straight 2-epoch run."""
    straight = run_main(tmp_path / "straight", "--epochs", "2", "--precision", "fp32")
    run_main(tmp_path / "resumed", "--epochs", "1", "--precision", "fp32")
    resumed = run_main(tmp_path / "resumed", "--epochs", "2", "--precision", "fp32", "--resume")
    assert "Resuming" in capsys.readouterr().out
    assert len(straight["loss_history"]) == 10
    assert resumed["loss_history"] == straight["loss_history"]
    assert resumed["epoch_mean_loss"] == straight["epoch_mean_loss"]


def test_resume_with_other_settings_refused(tmp_path, capsys):
    """--resume with a different learning rate exits 1 naming the setting."""
    run_main(tmp_path, "--epochs", "1", "--precision", "fp32")
    capsys.readouterr()
    argv = [
        "--synthetic",
        "40",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--eval-pairs",
        "50",
        "--no-progress",
        "--out",
        str(tmp_path),
        "--epochs",
        "2",
        "--precision",
        "fp32",
        "--resume",
        "--lr",
        "1e-3",
    ]
    assert reference_run.main(argv) == 1
    assert "lr" in capsys.readouterr().err


def test_a_progress_bar_off_a_terminal_writes_a_few_lines_not_one_per_step(monkeypatch, tmp_path):
    """Into a log file (not a terminal), a second of steps gives one line, not one per tenth of a second (tqdm's
    default): the reference run's log stays small in CI and in a Slurm job."""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    with open(tmp_path / "log", "w") as log:
        monkeypatch.setattr("sys.stderr", log)
        progress = runtime.make_progress(50, "epoch 1/1")
        for _ in range(50):
            time.sleep(0.02)
            progress.update()
        progress.close()
    shown = (tmp_path / "log").read_text().count("/50 [")  # one per display of the bar
    assert 1 <= shown <= 2, (tmp_path / "log").read_text()[:1000]
