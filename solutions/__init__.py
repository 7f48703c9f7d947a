"""The reference solution of the Siamese-network course, one module per lesson.

| lesson               | module                  |
| -------------------- | ----------------------- |
| 01_pair_dataset      | ``solutions.data``      |
| 02_cnn_backbone      | ``solutions.backbone``  |
| 03_embedding_head    | ``solutions.model``     |
| 04_contrastive_loss  | ``solutions.loss``      |
| 05_training_loop     | ``solutions.train``     |
| 06_evaluation        | ``solutions.evaluate`` (figures in ``solutions.plots``) |

``python -m solutions.train`` reproduces the original notebook's full run.
"""
