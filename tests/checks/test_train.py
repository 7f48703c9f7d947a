"""``autograder.checks.train`` (lesson 05): other correct devices and loops pass; typical bugs fail what they break."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import assert_fails_exactly
from helpers.checks import fails

from autograder.checks import train as train_checks
from solutions import loss as ref_loss

# ---------------------------------------------------------------- lesson 05: get_device, train_one_epoch


def device_simple():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_index():
    if torch.cuda.is_available():
        return torch.device("cuda:0")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_accelerator():
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator if accelerator is not None else torch.device("cpu")


@pytest.mark.parametrize(
    "get_device", [device_simple, device_index, device_accelerator], ids=lambda f: f.__name__
)
def test_other_correct_get_device_pass(get_device):
    train_checks.check_get_device(get_device)
    train_checks.check_get_device(get_device, hidden=True)


@pytest.mark.parametrize(
    "get_device, match",
    [
        (lambda: torch.device("cuda"), "never assume a GPU"),
        (lambda: torch.device("cpu"), "use the GPU when"),
        (lambda: "cuda" if torch.cuda.is_available() else "cpu", "torch.device('cuda'), not the string"),
    ],
)
def test_get_device_bugs_fail(get_device, match):
    fails(train_checks.check_get_device, get_device, match=match)


def test_get_device_mps_before_cuda_fails_hidden():
    def mps_first():
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")

    train_checks.check_get_device(mps_first)  # the visible cases never offer both
    fails(train_checks.check_get_device, mps_first, match="check CUDA before MPS", hidden=True)


def test_simulated_devices_are_restored():
    available = torch.cuda.is_available
    with train_checks.simulated_devices(cuda=True, mps=True):
        assert torch.cuda.is_available() and torch.backends.mps.is_available()
    assert torch.cuda.is_available is available


def _loop(net, loader, optimizer, device, margin=2.0, log_every=10, *, mistake=None):
    """train_one_epoch with switches; ``mistake=None`` is correct."""
    if mistake != "no_train":
        net.train()
    history = []
    for step, (img1, img2, label) in enumerate(loader):
        if mistake == "label_not_moved":
            img1, img2 = img1.to(device), img2.to(device)
        elif mistake != "not_moved":
            img1, img2, label = img1.to(device), img2.to(device), label.to(device)
        out1, out2 = net(img1, img2)
        loss = ref_loss.contrastive_loss(out1, out2, label, 2.0 if mistake == "margin" else margin)
        if mistake == "step_before_backward":
            optimizer.step()
            optimizer.zero_grad()
            loss.backward()
        elif mistake == "zero_grad_step_backward":
            optimizer.zero_grad()
            optimizer.step()
            loss.backward()
        else:
            if mistake != "no_zero_grad":
                optimizer.zero_grad()
            loss.backward()
            if mistake != "no_step":
                optimizer.step()
        if mistake == "every_step" or step % log_every == 0:
            history.append(loss if mistake == "tensor" else loss.item())
    return history


def train_zero_grad_first(net, loader, optimizer, device, margin=2.0, log_every=10):
    net.train()
    loss_history = []
    for step, (img1, img2, label) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        out1 = net.forward_ind(img1.to(device))
        out2 = net.forward_ind(img2.to(device))
        loss = ref_loss.contrastive_loss(out1, out2, label.to(device).squeeze(1), margin=margin)
        loss.backward()
        optimizer.step()
        if not step % log_every:
            loss_history.append(float(loss))
    return loss_history


def train_zero_grad_after_step(net, loader, optimizer, device, margin=2.0, log_every=10):
    """zero_grad at the end of each iteration, i.e. before the next backward (the net starts without grads)."""
    net.train()
    optimizer.zero_grad()
    history = []
    for step, (img1, img2, label) in enumerate(loader):
        out1, out2 = net(img1.to(device), img2.to(device))
        loss = ref_loss.contrastive_loss(out1, out2, label.to(device), margin)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        if step % log_every == 0:
            history.append(loss.detach().cpu().item())
    return history


def train_one_forward_pass(net, loader, optimizer, device, margin=2.0, log_every=10):
    """Both images of each pair embedded in one call, as lesson 5's section 10 shows (the same computation)."""
    net.train()
    history = []
    for step, (img1, img2, label) in enumerate(loader):
        img1, img2, label = img1.to(device), img2.to(device), label.to(device)
        out1, out2 = net.forward_ind(torch.cat([img1, img2])).chunk(2)
        loss = ref_loss.contrastive_loss(out1, out2, label, margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0:
            history.append(loss.item())
    return history


def train_label_type_as(net, loader, optimizer, device, margin=2.0, log_every=10):
    """The label moved with ``type_as(out1)``, which on a GPU moves it to out1's device (and dtype)."""
    net.train()
    history = []
    for step, (img1, img2, label) in enumerate(loader):
        out1, out2 = net(img1.to(device), img2.to(device))
        loss = ref_loss.contrastive_loss(out1, out2, label.type_as(out1), margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0:
            history.append(loss.item())
    return history


def train_with_tqdm(net, loader, optimizer, device, margin=2.0, log_every=10):
    """A correct loop with a progress bar (on stderr, which the checks hide)."""
    from tqdm.auto import tqdm

    return _loop(net, tqdm(loader), optimizer, device, margin, log_every)


TRAIN_CHECKS = [
    train_checks.check_train_history,
    train_checks.check_train_step,
    train_checks.check_train_learns,
]


@pytest.mark.parametrize(
    "train",
    [
        train_zero_grad_first,
        train_zero_grad_after_step,
        train_one_forward_pass,
        train_label_type_as,
        train_with_tqdm,
        _loop,
    ],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("check", TRAIN_CHECKS, ids=lambda c: c.__name__)
def test_other_correct_training_loops_pass(train, check, capsys):
    check(train)
    check(train, hidden=True)
    assert capsys.readouterr().err == ""


TRAINING_CHECKS = [
    train_checks.check_train_history,
    train_checks.check_train_step,
    train_checks.check_train_learns,
]
CRASH = dict.fromkeys(("train_history", "train_step", "train_learns"), "move every tensor to the same device")

# Each single mistake → {the check it fails: a fragment of that check's message}; every other check passes.
# train_history trains at lr = 0, so only logging matters there; train_learns is the whole loop end to end, so every
# mistake in the update fails it too; a loop that crashes fails every check that runs it.
TRAINING_BUGS = {
    "no_zero_grad": {"train_step": "missing zero_grad: gradients accumulate", "train_learns": "zero_grad"},
    "no_step": {"train_step": "no optimizer.step()", "train_learns": "optimizer.step()"},
    "zero_grad_step_backward": {"train_step": "no optimizer.step()", "train_learns": "optimizer.step()"},
    "step_before_backward": dict.fromkeys(
        ("train_history", "train_step", "train_learns"), "step() before loss.backward()"
    ),
    "margin": {"train_step": "the margin argument is ignored"},
    "no_train": {"train_step": "net.train() is missing"},
    "not_moved": dict(CRASH, train_history="move every tensor to the same device"),
    "label_not_moved": CRASH,
    "every_step": {"train_history": "logged every step"},
    "tensor": {"train_history": "append loss.item(), not the tensor"},
}


@pytest.mark.parametrize("mistake", TRAINING_BUGS)
def test_a_training_mistake_fails_exactly_the_checks_it_breaks(mistake):
    assert_fails_exactly(TRAINING_CHECKS, TRAINING_BUGS[mistake], functools.partial(_loop, mistake=mistake))


def test_a_loop_that_never_moves_its_batches_is_told_so_in_the_history_check():
    fails(
        train_checks.check_train_history,
        functools.partial(_loop, mistake="not_moved"),
        match="never moved to the training device",
    )


def test_training_zero_grad_between_backward_and_step_fails():
    def loop(net, loader, optimizer, device, margin=2.0, log_every=10):
        net.train()
        history = []
        for step, (img1, img2, label) in enumerate(loader):
            out1, out2 = net(img1.to(device), img2.to(device))
            loss = ref_loss.contrastive_loss(out1, out2, label.to(device), margin)
            loss.backward()
            optimizer.zero_grad()
            optimizer.step()
            if step % log_every == 0:
                history.append(loss.item())
        return history

    fails(train_checks.check_train_step, loop, match="zero_grad() between backward() and step() erases them")


def test_training_log_from_step_one_fails():
    def loop(net, loader, optimizer, device, margin=2.0, log_every=10):
        history = _loop(net, loader, optimizer, device, margin, log_every=1)
        return [v for step, v in enumerate(history, start=1) if step % log_every == 0]

    fails(train_checks.check_train_history, loop, match="counting the steps from 0")


def test_training_without_return_fails():
    def loop(net, loader, optimizer, device, margin=2.0, log_every=10):
        _loop(net, loader, optimizer, device, margin, log_every)

    fails(train_checks.check_train_history, loop, match="return the list")


def test_a_loss_logged_again_after_the_update_fails_the_history_check():
    """The contract logs each batch's loss before its update; a loop that measures it again after step() is told so
    (at lr = 0 the two are equal, so one case trains for real)."""

    def loop(net, loader, optimizer, device, margin=2.0, log_every=10):
        net.train()
        history = []
        for step, (img1, img2, label) in enumerate(loader):
            img1, img2, label = img1.to(device), img2.to(device), label.to(device)
            loss = ref_loss.contrastive_loss(*net(img1, img2), label, margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % log_every == 0:
                with torch.no_grad():
                    history.append(ref_loss.contrastive_loss(*net(img1, img2), label, margin).item())
        return history

    fails(train_checks.check_train_history, loop, match="the batch's loss after its update")
    train_checks.check_train_step(loop)  # the updates themselves are right
