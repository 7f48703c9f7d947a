"""How a check reports (``autograder.checks.report``): student code that crashes, loops, prints or is unfinished."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from autograder.checks import backbone as backbone_checks
from autograder.checks import data as data_checks
from autograder.checks import evaluate as evaluate_checks
from autograder.checks import loss as loss_checks
from autograder.checks import model as model_checks
from autograder.checks import oneshot as oneshot_checks
from autograder.checks import report
from autograder.checks import train as train_checks
from autograder.checks.report import CheckFailure
from solutions import data as ref_data
from solutions import loss as ref_loss

# ---------------------------------------------------------------- reporting


def noisy_loss(out1, out2, label, margin=2.0):
    """A correct loss that also warns and writes to stderr (as a tqdm bar would)."""
    print("debugging to stderr", file=sys.stderr)
    warnings.warn("a student's warning", stacklevel=2)
    return ref_loss.contrastive_loss(out1, out2, label, margin)


def test_nothing_reaches_stderr_even_from_student_code(capsys):
    loss_checks.check_loss_similar_pairs(noisy_loss, hidden=True)
    out, err = capsys.readouterr()
    assert "[PASS]" in out
    assert err == ""


def test_a_failing_check_writes_nothing_to_stderr(capsys):
    with pytest.raises(CheckFailure):
        loss_checks.check_loss_similar_pairs(lambda a, b, y, margin=2.0: noisy_loss(a, b, y, margin) * 2)
    out, err = capsys.readouterr()
    assert err == "" and "[PASS]" not in out


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise 4.1: contrastive_loss")


class StubDataset(Dataset):
    def __init__(self, dataset):
        raise NotImplementedError("Exercise 1.1: SiameseDataset.__init__")


class StubModule(nn.Module):
    def __init__(self):
        raise NotImplementedError("Exercise 2.1: __init__")


@pytest.mark.parametrize(
    "check, args",
    [
        (data_checks.check_pair_items, (StubDataset,)),
        (data_checks.check_pair_balance, (StubDataset,)),
        (backbone_checks.check_backbone_layers, (StubModule,)),
        (model_checks.check_shared_weights, (StubModule,)),
        (loss_checks.check_loss_gradients, (stub,)),
        (train_checks.check_get_device, (stub,)),
        (train_checks.check_train_step, (stub,)),
        (evaluate_checks.check_embed, (stub,)),
        (evaluate_checks.check_verification, (stub, stub)),
        (evaluate_checks.check_roc_auc, (stub,)),
        (oneshot_checks.check_sample_episodes, (stub,)),
        (oneshot_checks.check_batch_hard_loss, (stub,)),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_unfinished_stub_is_named(check, args, capsys):
    with pytest.raises(CheckFailure) as info:
        check(*args)
    message = str(info.value)
    assert message.startswith("[FAIL] ")
    assert "unfinished" in message and "NotImplementedError" in message
    assert isinstance(info.value.__cause__, NotImplementedError)
    assert capsys.readouterr().err == ""


def test_student_exception_is_reported_and_chained():
    def broken(out1, out2, label, margin=2.0):
        return out1 @ out2  # shapes do not fit

    with pytest.raises(CheckFailure) as info:
        loss_checks.check_loss_similar_pairs(broken)
    assert "raised RuntimeError" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_endless_loop_fails_within_the_time_limit(monkeypatch):
    monkeypatch.setattr(report, "TIME_LIMIT_S", 0.5)

    class Endless(ref_data.SiameseDataset):
        def __getitem__(self, index):
            while True:  # a rejection loop that never accepts
                try:
                    pass
                except Exception:  # swallowing everything must not hide the time limit
                    pass

    with pytest.raises(CheckFailure, match="did not finish within"):
        data_checks.check_pair_items(Endless)


def test_a_check_that_stumbles_still_fails_cleanly():
    @report.check
    def check_something(student, hidden=False):
        report.run_student("the exercise", "student()", student).shape  # noqa: B018  (a result without a shape)

    with pytest.raises(CheckFailure, match=r"^\[FAIL\] check_something could not evaluate") as info:
        check_something(lambda: 42)
    assert isinstance(info.value.__cause__, AttributeError)


def test_failure_message_format():
    error = report.failure(
        "a property", input="x", expected=1.0, got=torch.tensor([2.0, 3.0]), hint="a mistake"
    )
    lines = str(error).splitlines()
    assert lines[0] == "[FAIL] a property"
    assert lines[1] == "  input: x"
    assert lines[2] == "  expected: 1"
    assert lines[3].startswith("  got: tensor of shape [2], dtype float32, values [2, 3]")
    assert lines[4] == "  likely mistake: a mistake"
