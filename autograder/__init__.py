"""The Siamese course's autograder, in two parts kept apart:

* ``autograder.checks``: the checks of every student-implemented component, one module per lesson;
  in the student's kernel they call the student's code (the probe), and they decide from its
  answers (the judge): in the same kernel in Colab, in the grader's worker while grading;
* ``autograder.grading``: the instructor's trusted pipeline (collect, repair, execute in a sandbox,
  record, report), which never runs a student's code in its own process;

and two modules both read: ``autograder.syllabus``, the course table (each lesson's notebook, its
``solutions`` and checks modules, and what answers each exercise), and ``autograder.build``, which
generates the lesson notebooks from one source.

Every check is ``check_xxx(student_obj, hidden=False)``: it prints ``[PASS] ...`` to stdout and
returns ``None``, or raises ``CheckFailure`` (an ``AssertionError``) with a ``[FAIL]`` message naming
the property, the input, the expected and the actual result, and the likely mistake.
``hidden=True`` adds the cases of nbgrader's hidden tests. Checks use synthetic inputs only, run in
a few seconds on a CPU, never write to stderr and leave the caller's random state alone.

The checks are imported on first use (PEP 562), so that the instructor's grading commands, which
never run a check themselves, do not load torch: the grader's own process stays small.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name → the module of ``autograder.checks`` that defines it
_DEFINED_IN = {
    "CheckFailure": "report",
    "check_pair_items": "data",
    "check_pair_labels": "data",
    "check_pair_balance": "data",
    "check_pair_seeding": "data",
    "check_pair_one_class": "data",
    "check_expected_draws": "data",
    "check_always_different_accuracy": "data",
    "check_backbone_shapes": "backbone",
    "check_backbone_layers": "backbone",
    "check_backbone_forward": "backbone",
    "check_backbone_side": "backbone",
    "check_conv_parameters": "backbone",
    "check_head": "model",
    "check_head_parameters": "model",
    "check_siamese_network": "model",
    "check_shared_weights": "model",
    "check_all_zero_share": "model",
    "check_loss_similar_pairs": "loss",
    "check_loss_hinge": "loss",
    "check_loss_beyond_margin": "loss",
    "check_loss_margin_argument": "loss",
    "check_loss_label_shapes": "loss",
    "check_loss_label_count": "loss",
    "check_loss_gradients": "loss",
    "check_loss_gradient_at_zero": "loss",
    "check_loss_gradient_by_hand": "loss",
    "check_numerical_gradient": "loss",
    "check_distance_after_step": "loss",
    "check_collapsed_loss": "loss",
    "check_get_device": "train",
    "check_train_history": "train",
    "check_train_step": "train",
    "check_train_learns": "train",
    "check_weight_without_zero_grad": "train",
    "check_logged_losses": "train",
    "check_embed": "evaluate",
    "check_verification": "evaluate",
    "check_roc_auc": "evaluate",
    "check_roc_auc_one_kind": "evaluate",
    "check_overlap_best_accuracy": "evaluate",
    "check_overlap_auc": "evaluate",
    "check_sample_episodes": "oneshot",
    "check_sample_episodes_refuses": "oneshot",
    "check_episode_accuracies": "oneshot",
    "check_mean_with_interval": "oneshot",
    "check_batch_hard_loss": "oneshot",
}

__all__ = list(_DEFINED_IN)


def __getattr__(name: str) -> Any:
    """Import a check's module the first time one of its names is used."""
    if name not in _DEFINED_IN:
        raise AttributeError(f"module 'autograder' has no attribute {name!r}")
    return getattr(importlib.import_module(f".checks.{_DEFINED_IN[name]}", __name__), name)
