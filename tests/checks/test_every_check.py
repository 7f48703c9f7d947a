"""Every check of ``autograder.checks`` passes the reference, visible and hidden cases, fresh inputs, reproducibly."""

from __future__ import annotations

import json
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
