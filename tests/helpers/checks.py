"""What the tests of ``autograder.checks`` share: groups of checks, and a check that must fail."""

import pytest

from autograder.checks import data as data_checks
from autograder.checks import loss as loss_checks
from autograder.checks.report import CheckFailure

# The checks of the two lessons whose checks each test one property of one object.
DATASET_CHECKS = [
    data_checks.check_pair_items,
    data_checks.check_pair_labels,
    data_checks.check_pair_balance,
    data_checks.check_pair_seeding,
    data_checks.check_pair_one_class,
]
LOSS_CHECKS = [
    loss_checks.check_loss_similar_pairs,
    loss_checks.check_loss_hinge,
    loss_checks.check_loss_beyond_margin,
    loss_checks.check_loss_margin_argument,
    loss_checks.check_loss_label_shapes,
    loss_checks.check_loss_label_count,
    loss_checks.check_loss_gradients,
    loss_checks.check_loss_gradient_at_zero,
]


def fails(check, *args, match: str, hidden: bool = False) -> str:
    """Run ``check`` on ``args``: it must fail, and its message must contain ``match``; returns the message."""
    with pytest.raises(CheckFailure) as info:
        check(*args, hidden=hidden)
    message = str(info.value)
    assert message.startswith("[FAIL] ")
    assert match.lower() in message.lower(), message
    return message
