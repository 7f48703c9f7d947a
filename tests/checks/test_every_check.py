"""Every check of ``autograder.checks`` passes the reference, visible and hidden cases, fresh inputs, reproducibly."""

from __future__ import annotations

import fractions
import functools
import itertools
import json
import math
import random

import numpy as np
import pytest
import torch
from helpers.checks import DATASET_CHECKS, LOSS_CHECKS

import autograder
from autograder.checks import backbone as backbone_checks
from autograder.checks import data as data_checks
from autograder.checks import evaluate as evaluate_checks
from autograder.checks import loss as loss_checks
from autograder.checks import model as model_checks
from autograder.checks import oneshot as oneshot_checks
from autograder.checks import report, transcript
from autograder.checks import train as train_checks
from autograder.checks.report import CheckFailure
from solutions import backbone as ref_backbone
from solutions import data as ref_data
from solutions import evaluate as ref_evaluate
from solutions import loss as ref_loss
from solutions import model as ref_model
from solutions import oneshot as ref_oneshot
from solutions import train as ref_train

# ---------------------------------------------------------------- every check, with the reference

REFERENCE_CASES = [
    *[(data_check, (ref_data.SiameseDataset,)) for data_check in DATASET_CHECKS],
    (data_checks.check_expected_draws, (ref_data.expected_draws,)),
    (data_checks.check_always_different_accuracy, (ref_data.always_different_accuracy,)),
    (backbone_checks.check_backbone_shapes, (ref_backbone.CNNBackbone,)),
    (backbone_checks.check_backbone_layers, (ref_backbone.CNNBackbone,)),
    (backbone_checks.check_backbone_forward, (ref_backbone.CNNBackbone,)),
    (backbone_checks.check_backbone_side, (ref_backbone.backbone_side,)),
    (backbone_checks.check_conv_parameters, (ref_backbone.conv_parameters,)),
    (model_checks.check_head, (ref_model.EmbeddingHead,)),
    (model_checks.check_head_parameters, (ref_model.head_parameters,)),
    (model_checks.check_siamese_network, (ref_model.SiameseNetwork,)),
    (model_checks.check_shared_weights, (ref_model.SiameseNetwork,)),
    (model_checks.check_all_zero_share, (ref_model.all_zero_share,)),
    *[(loss_check, (ref_loss.contrastive_loss,)) for loss_check in LOSS_CHECKS],
    (loss_checks.check_loss_gradient_by_hand, (ref_loss.contrastive_loss_gradient,)),
    (loss_checks.check_numerical_gradient, (ref_loss.numerical_gradient,)),
    (loss_checks.check_distance_after_step, (ref_loss.distance_after_step,)),
    (loss_checks.check_collapsed_loss, (ref_loss.collapsed_loss,)),
    (train_checks.check_get_device, (ref_train.get_device,)),
    (train_checks.check_train_history, (ref_train.train_one_epoch,)),
    (train_checks.check_train_step, (ref_train.train_one_epoch,)),
    (train_checks.check_train_learns, (ref_train.train_one_epoch,)),
    (train_checks.check_weight_without_zero_grad, (ref_train.weight_without_zero_grad,)),
    (train_checks.check_logged_losses, (ref_train.logged_losses,)),
    (evaluate_checks.check_embed, (ref_evaluate.embed,)),
    (evaluate_checks.check_verification, (ref_evaluate.verification_accuracy, ref_evaluate.best_threshold)),
    (evaluate_checks.check_roc_auc, (ref_evaluate.roc_auc,)),
    (evaluate_checks.check_roc_auc_one_kind, (ref_evaluate.roc_auc,)),
    (evaluate_checks.check_overlap_best_accuracy, (ref_evaluate.overlap_best_accuracy,)),
    (evaluate_checks.check_overlap_auc, (ref_evaluate.overlap_auc,)),
    (oneshot_checks.check_sample_episodes, (ref_oneshot.sample_episodes,)),
    (oneshot_checks.check_sample_episodes_refuses, (ref_oneshot.sample_episodes,)),
    (oneshot_checks.check_episode_accuracies, (ref_oneshot.episode_accuracies,)),
    (oneshot_checks.check_mean_with_interval, (ref_oneshot.mean_with_interval,)),
    (oneshot_checks.check_batch_hard_loss, (ref_oneshot.batch_hard_loss,)),
]


def _id(case):
    return case[0].__name__


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
@pytest.mark.parametrize("case", REFERENCE_CASES, ids=_id)
def test_reference_passes(case, hidden, capsys):
    check, args = case
    assert check(*args, hidden=hidden) is None
    out, err = capsys.readouterr()
    assert out.startswith("[PASS] ") and out.count("[PASS]") == 1
    assert err == ""


@pytest.mark.parametrize("seed", [1, 987_654_321_987], ids=["seed_1", "seed_large"])
@pytest.mark.parametrize("case", REFERENCE_CASES, ids=_id)
def test_reference_passes_on_a_grading_runs_fresh_inputs(case, seed):
    """The graded path: the probe records on inputs drawn from the run's seed, the judge replays and decides."""
    check, args = case
    record = transcript.Transcript(seed)
    with transcript.running(record):
        check(*args, hidden=True)
    verdict = report.judge(check, True, json.loads(json.dumps(record.answers)), seed)
    assert verdict.passed, verdict.text


def test_package_exports_every_check():
    names = {check.__name__ for check, _ in REFERENCE_CASES}
    assert names | {"CheckFailure"} == set(autograder.__all__)
    assert autograder.CheckFailure is CheckFailure and issubclass(CheckFailure, AssertionError)


def test_checks_leave_global_random_state_alone():
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    threads = torch.get_num_threads()
    data_checks.check_pair_balance(ref_data.SiameseDataset)
    train_checks.check_train_step(ref_train.train_one_epoch)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])
    assert torch.get_num_threads() == threads
    assert torch.is_grad_enabled()


# ---------------------------------------------------------------- NaN is never an answer


def _nan_like(value, bad=math.nan):
    """``value`` with every number in it made ``bad`` (a float tensor keeps its graph: ``value * 0 + bad``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return bad
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value * 0 + bad
    if isinstance(value, list):
        return [_nan_like(v, bad) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_nan_like(v, bad) for v in value)
    return value


def _answering_nan(function, only_call=None, bad=math.nan):
    """``function`` whose answers are ``bad``: every answer, or only that of call number ``only_call`` (from 0)."""
    calls = itertools.count()

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        value = function(*args, **kwargs)
        return _nan_like(value, bad) if only_call in (None, next(calls)) else value

    return wrapped


def _graded(check, args) -> report.Verdict:
    """The verdict of ``check`` on ``args`` as grading decides it: probe with seed 1, then the judge."""
    record = transcript.Transcript(1)
    with transcript.running(record):
        try:
            check(*args, hidden=True)
        except CheckFailure:
            pass  # the probe may already see it
    return report.judge(check, True, json.loads(json.dumps(record.answers)), 1)


# Checks that read no number the function returns: a refusal, a device, the parameters a loop leaves, indices.
READS_NO_NUMBER = {
    "check_sample_episodes",
    "check_get_device",
    "check_train_step",
    "check_roc_auc_one_kind",
    "check_sample_episodes_refuses",
    "check_loss_label_count",
}
NUMERIC_CASES = [
    case
    for case in REFERENCE_CASES
    if case[0].__name__ not in READS_NO_NUMBER and not any(isinstance(a, type) for a in case[1])
]


@pytest.mark.parametrize("case", NUMERIC_CASES, ids=_id)
def test_an_answer_of_nan_passes_no_check(case):
    """NaN compares False with everything, so ``abs(value - expected) > tolerance`` lets it through: every check
    that reads a returned number fails a function whose numbers are all NaN, graded and self-checked."""
    check, args = case
    nan_args = tuple(_answering_nan(a) for a in args)
    verdict = _graded(check, nan_args)
    assert not verdict.passed, verdict.text
    with pytest.raises(CheckFailure):
        check(*nan_args, hidden=True)


@pytest.mark.parametrize("case", NUMERIC_CASES, ids=_id)
def test_one_answer_of_nan_among_right_ones_passes_no_check(case):
    """The same with one NaN among right answers (a loss NaN only for labels [B, 1], say), in each of a check's
    first calls, graded: where a NaN passes, so does a wrong number in its place (the check asks for either of two
    answers, by design), so that NaN is never judged better than a wrong answer."""
    check, args = case
    calls = 0

    def counting(function):
        @functools.wraps(function)
        def wrapped(*a, **k):
            nonlocal calls
            calls += 1
            return function(*a, **k)

        return wrapped

    check(*(counting(a) for a in args), hidden=True)
    for only_call in range(min(calls, 12)):
        verdict = _graded(check, tuple(_answering_nan(a, only_call) for a in args))
        if verdict.passed:
            wrong = _graded(check, tuple(_answering_nan(a, only_call, bad=12345.5) for a in args))
            assert wrong.passed, (only_call, verdict.text, wrong.text)


# ---------------------------------------------------------------- a number in another type is the same number

SCALAR_ANSWERS = {
    "check_expected_draws",
    "check_always_different_accuracy",
    "check_backbone_side",
    "check_conv_parameters",
    "check_head_parameters",
    "check_all_zero_share",
    "check_distance_after_step",
    "check_collapsed_loss",
    "check_weight_without_zero_grad",
    "check_logged_losses",
    "check_overlap_best_accuracy",
    "check_overlap_auc",
    "check_roc_auc",
    "check_mean_with_interval",
}
NUMBER_TYPES = {
    "numpy_float64": np.float64,  # its repr is np.float64(...) under numpy 2: it once failed every question
    "numpy_float32": np.float32,
    "fraction": lambda v: fractions.Fraction(float(v)),
    "numpy_0d_array": np.array,
    "numpy_1_element_array": lambda v: np.array([v]),
}


def _numbers_as(convert, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return convert(value)
    if isinstance(value, tuple):
        return tuple(_numbers_as(convert, v) for v in value)
    return value


@pytest.mark.parametrize("kind", NUMBER_TYPES)
@pytest.mark.parametrize("case", [c for c in REFERENCE_CASES if c[0].__name__ in SCALAR_ANSWERS], ids=_id)
def test_a_right_number_passes_in_any_numeric_type(case, kind):
    """numpy scalars and one-element arrays, fractions: the same right answer passes, self-checked and graded
    (lesson 6's functions return "a Python float": an array fails there, self-checked and graded alike)."""
    check, args = case
    if check.__name__ == "check_roc_auc" and "array" in kind:
        arrays = tuple(functools.wraps(a)(lambda *x, _a=a: NUMBER_TYPES[kind](_a(*x))) for a in args)
        with pytest.raises(CheckFailure, match="returns a Python float"):
            check(*arrays, hidden=True)
        assert "returns a Python float" in _graded(check, arrays).text
        return
    converted = tuple(
        functools.wraps(a)(lambda *x, _a=a, **k: _numbers_as(NUMBER_TYPES[kind], _a(*x, **k))) for a in args
    )
    check(*converted, hidden=True)
    verdict = _graded(check, converted)
    assert verdict.passed, verdict.text
