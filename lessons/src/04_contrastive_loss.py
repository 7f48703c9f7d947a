# %% [markdown]
# # Lesson 4: The contrastive loss
#
# The network of lesson 3 maps every image to an embedding. Training must make the embeddings of a
# same-class pair close and those of a different-class pair far apart. The **contrastive loss**
# (Hadsell, Chopra & LeCun, 2006) says exactly that, with a margin.
#
# **Learning goals**
#
# - compute the Euclidean distance between two batches of embeddings;
# - understand each term of the contrastive loss, and what the margin does;
# - write the loss (exercise 4.1), averaged over a batch, for labels of shape `[B]` or `[B, 1]`;
# - avoid a silent broadcasting bug that turns a batch of `B` losses into `B × B`.

# %% [setup]

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

# %% [markdown]
# ## 1. The distance between two embeddings
#
# For two embeddings $a, b \in \mathbb{R}^D$ the Euclidean distance is
# $d = \lVert a - b \rVert = \sqrt{\sum_k (a_k - b_k)^2}$. With batches `out1`, `out2` of shape `[B, D]`
# we want one distance per row, a tensor of shape `[B]`. Three ways that agree:

# %%
out1 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]])  # three 2-d embeddings
out2 = torch.tensor([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
print("by hand          :", ((out1 - out2) ** 2).sum(dim=1).sqrt())
print("vector_norm      :", torch.linalg.vector_norm(out1 - out2, dim=1))
print("pairwise_distance:", F.pairwise_distance(out1, out2))

# %% [markdown]
# (`F.pairwise_distance` adds a tiny `eps = 1e-6` to the difference before taking the norm, so two
# identical embeddings give $2 \cdot 10^{-6}$ instead of 0 there; it does not matter in practice.)
#
# ## 2. The loss
#
# Let $d_i$ be the distance of pair $i$ and $y_i$ its label, with the convention of lesson 1:
# **$y_i = 0$ for the same class, $y_i = 1$ for different classes**. With a margin $m > 0$ (2.0 here,
# as in the original), the loss of a batch of $B$ pairs is
#
# $$ L = \frac{1}{B} \sum_{i=1}^{B} \Big[ (1 - y_i)\, d_i^2 \;+\; y_i\, \max(m - d_i,\, 0)^2 \Big]. $$
#
# For every pair only one of the two terms is active:
#
# - **same class** ($y = 0$): the loss is $d^2$. It is zero only when the embeddings coincide; the
#   gradient pulls the two embeddings together, harder the further apart they are.
# - **different classes** ($y = 1$): the loss is $\max(m - d, 0)^2$. A pair closer than the margin is
#   pushed apart; a pair already at distance $\ge m$ costs nothing and gets no gradient.
#
# Why stop at the margin? Without it, the easiest way to lower the loss would be to push different
# pairs ever further apart, and the embeddings would blow up. With it, the network stops caring about
# pairs that are "clearly different" and spends its effort on the hard ones: similar-looking pairs of
# different classes, and same-class pairs that are still far apart.
#
# Hadsell et al. write each term with a factor $\frac{1}{2}$; the original notebook leaves it out, and
# so do we. (It only scales the loss and its gradient by 2.)
#
# A worked example with $m = 2$:

# %%
margin = 2.0
d = torch.tensor([0.5, 0.5, 1.5, 3.0])
y = torch.tensor([0.0, 1.0, 1.0, 1.0])  # same, different, different, different
per_pair = (1 - y) * d**2 + y * torch.clamp(margin - d, min=0) ** 2
for di, yi, li in zip(d, y, per_pair):
    kind = "same     " if yi == 0 else "different"
    print(f"d = {di:.1f}, y = {yi:.0f} ({kind}): loss {li:.2f}")
print(f"batch loss (the mean): {per_pair.mean():.4f}")

# %% [markdown]
# ## 3. A pitfall: labels of shape `[B, 1]`
#
# The pair dataset of lesson 1 gives each label the shape `[1]`, so a `DataLoader` batch of labels has
# shape `[B, 1]`, while the distances have shape `[B]`. Multiplying them does **not** fail: PyTorch
# *broadcasts* `[B, 1]` against `[B]` into a `[B, B]` matrix, pairing every label with every distance.
# The mean of that matrix is a number, training runs, and the network learns the wrong thing:

# %%
label = y.reshape(-1, 1)  # shape [4, 1], as a DataLoader gives it
wrong = (1 - label) * d**2 + label * torch.clamp(margin - d, min=0) ** 2
print("label", tuple(label.shape), "× distance", tuple(d.shape), "→", tuple(wrong.shape), "(silently!)")
print(f"wrong loss {wrong.mean():.4f}   right loss {per_pair.mean():.4f}")

# %% [markdown]
# The cure: bring the label to shape `[B]` first (`label.reshape(-1)` or `label.view(-1)`), or keep the
# distance as `[B, 1]` (`F.pairwise_distance(..., keepdim=True)`, as the original does). Make sure
# your function gives the same loss for labels of shape `[B]` and `[B, 1]`.
#
# ## 4. Exercise 4.1: `contrastive_loss`
#
# Write `contrastive_loss(out1, out2, label, margin=2.0)`:
#
# - `out1`, `out2`: embeddings of shape `[B, D]`; `label`: `[B]` or `[B, 1]`, 0 = same, 1 = different
#   (it may come as float or integer);
# - return the **mean** over the batch of $(1 - y)\,d^2 + y\,\max(m - d, 0)^2$, a 0-d tensor that
#   PyTorch can differentiate (use tensor operations only: no `.item()`, no Python `max`, no NumPy);
# - if `label` does not hold one value per pair, raise a `ValueError` with a clear message.
#
# Hints: `torch.clamp(x, min=0)` or `F.relu(x)` computes $\max(x, 0)$ element-wise; convert the label
# to the embeddings' dtype with `label.to(out1.dtype)`.

# %% [exercise 4.1] solutions.loss:contrastive_loss

# %% [markdown]
# ### Checks
#
# Each check tests one property of your loss, on inputs where only that property matters: same-class
# pairs alone for the $d^2$ term, different-class pairs inside the margin for the squared hinge, pairs
# beyond it for the clamp, and so on. A `[FAIL]` therefore points at one part of the formula.

# %%
from autograder.checks import loss as checks

# %% [check loss_similar_pairs 4]
checks.check_loss_similar_pairs(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_similar_pairs(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_hinge 4]
checks.check_loss_hinge(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_hinge(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_beyond_margin 2]
checks.check_loss_beyond_margin(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_beyond_margin(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_margin_argument 2]
checks.check_loss_margin_argument(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_margin_argument(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_label_shapes 3]
checks.check_loss_label_shapes(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_label_shapes(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_label_count 2]
checks.check_loss_label_count(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_label_count(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_gradients 3]
checks.check_loss_gradients(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_gradients(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The loss as a function of the distance
#
# To see the two terms, place one pair of 2-d embeddings at a chosen distance $d$ (one at the origin,
# the other at $(d, 0)$) and evaluate **your** `contrastive_loss` for both labels:

# %%
distances = torch.linspace(0.0, 4.0, 161)
loss_same, loss_different = [], []
for dist in distances:
    a = torch.zeros(1, 2)
    b = torch.tensor([[dist.item(), 0.0]])
    loss_same.append(contrastive_loss(a, b, torch.tensor([0.0]), margin=margin).item())
    loss_different.append(contrastive_loss(a, b, torch.tensor([1.0]), margin=margin).item())

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(distances, loss_same, label="same class (y = 0): $d^2$")
ax.plot(distances, loss_different, label="different classes (y = 1): $\\max(m - d, 0)^2$")
ax.axvline(margin, color="gray", linestyle="--", linewidth=1)
ax.text(margin, 0.2, f" margin m = {margin}", color="gray")
ax.set_xlabel("distance d between the two embeddings")
ax.set_ylabel("loss of the pair")
ax.set_ylim(0, 5)
ax.set_title("Contrastive loss")
ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.12))
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# The blue curve pulls same-class pairs towards $d = 0$; the orange one pushes different-class pairs
# out to the margin and is flat (zero, no gradient) beyond it.
#
# ## 6. Gradients: who moves where
#
# The loss is only useful through its gradient. For a different-class pair inside the margin the
# gradient with respect to the embeddings points them apart; for a same-class pair it points them
# together. A gradient-descent step moves each embedding *against* its gradient:

# %%
for pair_label, start in ((0.0, 1.0), (1.0, 1.0), (1.0, 2.5)):
    a = torch.zeros(1, 2, requires_grad=True)
    b = torch.tensor([[start, 0.0]], requires_grad=True)
    loss = contrastive_loss(a, b, torch.tensor([pair_label]), margin=margin)
    loss.backward()
    with torch.no_grad():
        new_distance = torch.linalg.vector_norm((a - 0.1 * a.grad) - (b - 0.1 * b.grad)).item()
    kind = "same     " if pair_label == 0 else "different"
    print(f"{kind} pair at d = {start}: loss {loss.item():.2f}, after one step of size 0.1: d = {new_distance:.2f}")

# %% [markdown]
# ## Summary
#
# - The contrastive loss is $(1 - y)\,d^2 + y\,\max(m - d, 0)^2$, averaged over the batch, with
#   $y = 1$ for **different** classes: same pairs are pulled together, different pairs pushed apart up
#   to the margin $m$ and then left alone.
# - Labels of shape `[B, 1]` against distances of shape `[B]` broadcast silently to `[B, B]`: flatten
#   the label (or keep the distance 2-d).
#
# Next lesson: the training loop that uses this loss to train the Siamese network.
