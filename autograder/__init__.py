"""Checks for every student-implemented component of the Siamese course, one module per lesson.

| lesson               | checks module            | reference              |
| -------------------- | ------------------------ | ---------------------- |
| 01_pair_dataset      | ``autograder.data``      | ``solutions.data``     |
| 02_cnn_backbone      | ``autograder.backbone``  | ``solutions.backbone`` |
| 03_embedding_head    | ``autograder.model``     | ``solutions.model``    |
| 04_contrastive_loss  | ``autograder.loss``      | ``solutions.loss``     |
| 05_training_loop     | ``autograder.train``     | ``solutions.train``    |
| 06_evaluation        | ``autograder.evaluate``  | ``solutions.evaluate`` |

Every check is ``check_xxx(student_obj, hidden=False)``: it prints ``[PASS] ...`` to stdout and
returns ``None``, or raises ``CheckFailure`` (an ``AssertionError``) with a ``[FAIL]`` message naming
the property, the input, the expected and the actual result, and the likely mistake.
``hidden=True`` adds the cases of nbgrader's hidden tests. Checks use synthetic inputs only, run in
a few seconds on a CPU, never write to stderr and leave the caller's random state alone.
"""

from .backbone import check_backbone_forward, check_backbone_layers, check_backbone_shapes
from .data import check_pair_balance, check_pair_items, check_pair_labels
from .evaluate import check_embed, check_roc_auc, check_verification
from .loss import check_loss_gradients, check_loss_label_shapes, check_loss_values
from .model import check_head, check_shared_weights, check_siamese_network
from .report import CheckFailure
from .train import check_get_device, check_train_history, check_train_learns, check_train_step

__all__ = [
    "CheckFailure",
    "check_pair_items", "check_pair_labels", "check_pair_balance",
    "check_backbone_shapes", "check_backbone_layers", "check_backbone_forward",
    "check_head", "check_siamese_network", "check_shared_weights",
    "check_loss_values", "check_loss_label_shapes", "check_loss_gradients",
    "check_get_device", "check_train_history", "check_train_step", "check_train_learns",
    "check_embed", "check_verification", "check_roc_auc",
]
