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
# - derive its gradient by hand (exercise 4.2) and check it numerically, as every new loss deserves
#   (exercise 4.3);
# - see why a square root at distance 0 can wreck a training run, and what `eps` is for;
# - predict what one step of gradient descent does to a pair, and what a collapsed network costs
#   (questions 4.4 and 4.5);
# - see, in a small experiment, what the margin does to the distances the network learns, and what
#   that means for a decision threshold (question 4.6, written).
#
# This is the longest lesson of the course (the README's course table estimates its time): a good
# place for a break is after exercise 4.3.

# %% [setup]

# %%
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

# %% [markdown]
# ## 1. The distance between two embeddings
#
# For two embeddings $a, b \in \mathbb{R}^D$ the Euclidean distance is
# $d = \lVert a - b \rVert = \sqrt{\sum_k (a_k - b_k)^2}$. With batches `out1`, `out2` of shape `[B, D]`
# we want one distance per row, a tensor of shape `[B]`. Three ways that agree on the value:

# %%
out1 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0]])  # three 2-d embeddings
out2 = torch.tensor([[3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
print("by hand          :", ((out1 - out2) ** 2).sum(dim=1).sqrt())
print("vector_norm      :", torch.linalg.vector_norm(out1 - out2, dim=1))
print("pairwise_distance:", F.pairwise_distance(out1, out2))

# %% [markdown]
# (`F.pairwise_distance` adds a tiny `eps = 1e-6` to each coordinate of the difference before taking
# the norm, so two identical embeddings give $\sqrt{D} \cdot 10^{-6}$ instead of 0. The value hardly
# changes; the *gradient* does, as section 8 shows. Keep the middle row, a pair at distance 0, in mind.)
#
# ## 2. The loss
#
# Let $d_i$ be the distance of pair $i$ and $y_i$ its label, with the convention of lesson 1:
# **$y_i = 0$ for the same class, $y_i = 1$ for different classes**. With a margin $m > 0$ (2.0 here,
# as in the original notebook), the loss of a batch of $B$ pairs is
#
# $$ L = \frac{1}{B} \sum_{i=1}^{B} \Big[ (1 - y_i)\, d_i^2 \;+\; y_i\, \max(m - d_i,\, 0)^2 \Big]. $$
#
# For every pair only one of the two terms is active:
#
# - **same class** ($y = 0$): the loss is $d^2$. It is zero only when the embeddings coincide;
# - **different classes** ($y = 1$): the loss is $\max(m - d, 0)^2$. A pair closer than the margin
#   costs something; a pair already at distance $\ge m$ costs nothing.
#
# Why stop at the margin? Without it, the easiest way to lower the loss would be to push different
# pairs ever further apart, and the embeddings would blow up. With it, the network stops caring about
# pairs that are "clearly different" and spends its effort on the hard ones.
#
# Hadsell et al. write each term with a factor $\frac{1}{2}$; the original notebook leaves it out, and
# so do we.
#
# **Work it out on paper first.** Four pairs with $m = 2$; fill in the last column before you read the
# answer under the table, then use the table to test your function in exercise 4.1.
#
# | pair | $d$ | $y$ | loss of the pair |
# | ---- | --- | --- | ---------------- |
# | 1 | 0.5 | 0 (same) | ? |
# | 2 | 0.5 | 1 (different) | ? |
# | 3 | 1.5 | 1 (different) | ? |
# | 4 | 3.0 | 1 (different) | ? |
#
# <details><summary>Answer</summary>0.25, 2.25, 0.25 and 0; the batch loss is their mean, 0.6875.</details>
#
# ## 3. A pitfall: shapes that broadcast
#
# The pair dataset of lesson 1 gives each label the shape `[1]`, so a `DataLoader` batch of labels has
# shape `[B, 1]`, while a batch of distances has shape `[B]`. Look at what PyTorch does when two such
# tensors meet:

# %%
per_pair = torch.tensor([10.0, 20.0, 60.0])  # shape [3]: one value per pair
weights = torch.tensor([[1.0], [0.0], [1.0]])  # shape [3, 1]: one value per pair, as a DataLoader stacks it
product = weights * per_pair
print(tuple(weights.shape), "×", tuple(per_pair.shape), "→", tuple(product.shape))
print(product)
print(f"mean: {product.mean().item():.2f}   the mean you wanted: (10 + 0 + 60) / 3 = {70 / 3:.2f}")

# %% [markdown]
# Nothing fails: PyTorch *broadcasts* `[3, 1]` against `[3]` into a `[3, 3]` matrix that pairs every
# weight with every value, and its mean is a number. In a loss this trains the network on the wrong
# objective without a single error message. Your loss must give the same value for labels of shape
# `[B]` and `[B, 1]`: decide how your function will make sure of it.
#
# ## 4. Exercise 4.1: `contrastive_loss`
#
# Write `contrastive_loss(out1, out2, label, margin=2.0)`:
#
# - `out1`, `out2`: embeddings of shape `[B, D]`; `label`: `[B]` or `[B, 1]`, 0 = same, 1 = different
#   (it may come as float or integer);
# - return the **mean** over the batch of $(1 - y)\,d^2 + y\,\max(m - d, 0)^2$, a 0-d tensor that
#   PyTorch can differentiate (use tensor operations only: no `.item()`, no Python `max`, no NumPy);
# - its gradients must stay finite when two embeddings coincide ($d = 0$): a bare `.sqrt()` of the
#   summed squares fails that check (section 8 shows why and what to use instead);
# - if `label` does not hold one value per pair, raise a `ValueError` with a clear message.
#
# Useful: `torch.clamp(x, min=0)` or `F.relu(x)` is $\max(x, 0)$ element-wise; `label.to(out1.dtype)`
# converts an integer label. Test your function on the four pairs of section 2 before the checks.

# %% [exercise 4.1]

# %% [markdown]
# ### Checks
#
# Each check tests one property of your loss, on inputs where only that property matters: same-class
# pairs alone for the $d^2$ term, different-class pairs inside the margin for the squared hinge, pairs
# beyond it for the clamp, and so on. A `[FAIL]` therefore points at one part of the formula.

# %%
from autograder.checks import loss as checks

# %% [check loss_similar_pairs 2]
checks.check_loss_similar_pairs(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_similar_pairs(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_hinge 2]
checks.check_loss_hinge(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_hinge(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_beyond_margin 2]
checks.check_loss_beyond_margin(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_beyond_margin(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_margin_argument 1]
checks.check_loss_margin_argument(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_margin_argument(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_label_shapes 2]
checks.check_loss_label_shapes(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_label_shapes(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_label_count 1]
checks.check_loss_label_count(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_label_count(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_gradients 1]
checks.check_loss_gradients(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_gradients(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [check loss_gradient_at_zero 1]
checks.check_loss_gradient_at_zero(contrastive_loss)
### BEGIN HIDDEN TESTS
checks.check_loss_gradient_at_zero(contrastive_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The loss as a function of the distance
#
# To see the two terms, place one pair of 2-d embeddings at a chosen distance $d$ (one at the origin,
# the other at $(d, 0)$) and evaluate **your** `contrastive_loss` for both labels:

# %%
margin = 2.0
distances = torch.linspace(0.0, 4.0, 161)
loss_same, loss_different = [], []
for dist in distances:
    a = torch.zeros(1, 2)
    b = torch.tensor([[dist.item(), 0.0]])
    loss_same.append(contrastive_loss(a, b, torch.tensor([0.0]), margin=margin).item())
    loss_different.append(contrastive_loss(a, b, torch.tensor([1.0]), margin=margin).item())

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(distances, loss_same, label="same class (y = 0)")
ax.plot(distances, loss_different, label="different classes (y = 1)")
ax.axvline(margin, color="gray", linestyle="--", linewidth=1)
ax.text(margin, 0.2, f" margin m = {margin}", color="gray")
ax.set_xlabel("distance d between the two embeddings")
ax.set_ylabel("loss of the pair")
ax.set_ylim(0, 5)
ax.set_title("Contrastive loss (your function)")
ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.12))
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the slopes off the plot: where does a same-class pair feel the strongest pull? Where does a
# different-class pair feel no push at all? The slope is the gradient, the subject of the next sections.
#
# ## 6. Exercise 4.2: the gradient by hand
#
# Autograd will compute every gradient of the training run, but a loss you cannot differentiate by
# hand is a loss you cannot debug. Derive $\partial L / \partial\, \text{out1}$ for the batch mean
# $L$ of section 2, one pair at a time, for pairs at $d > 0$:
#
# 1. for a same-class pair, the gradient of $d^2 = \sum_k (a_k - b_k)^2$ with respect to $a$;
# 2. for a different-class pair, the chain rule through $\max(m - d, 0)^2$; you will need
#    $\partial d / \partial a$, which you can derive from $d = \sqrt{\sum_k (a_k - b_k)^2}$
#    (the answer is a vector of length 1: why?);
# 3. do not forget the $\frac{1}{B}$ of the mean.
#
# Write `contrastive_loss_gradient(out1, out2, label, margin=2.0)` returning a tensor shaped like
# `out1` whose row $i$ is $\partial L / \partial\, \text{out1}_i$ (`label` has shape `[B]`; all
# distances are above 0). Use tensor operations, and no
# autograd: the check runs your function with autograd switched off (`torch.inference_mode`).

# %% [exercise 4.2]

# %% [check loss_gradient_by_hand 2]
checks.check_loss_gradient_by_hand(contrastive_loss_gradient)
### BEGIN HIDDEN TESTS
checks.check_loss_gradient_by_hand(contrastive_loss_gradient, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. Exercise 4.3: a numerical gradient, to check the other two
#
# How do you know a gradient is right, yours or autograd's? Compare it with the definition. For a
# function $f$ of a tensor $x$, the **central difference**
#
# $$ \frac{\partial f}{\partial x_i} \approx \frac{f(x + h\, e_i) - f(x - h\, e_i)}{2h}, $$
#
# with $e_i$ the unit vector of element $i$, is accurate to $O(h^2)$, while the one-sided
# $\big(f(x + h e_i) - f(x)\big)/h$ is accurate to $O(h)$ only.
#
# Write `numerical_gradient(f, x, h=1e-5)`: `f` takes a tensor shaped like `x` and returns a number
# (a float or a 0-d tensor); return a tensor shaped like `x` holding the central difference of every
# element. Leave `x` as you found it. The check hands you functions that autograd cannot see into, and
# `x` in float64 (in float32, `h = 1e-5` would lose most digits to rounding: why?).

# %% [exercise 4.3]

# %% [check numerical_gradient 2]
checks.check_numerical_gradient(numerical_gradient)
### BEGIN HIDDEN TESTS
checks.check_numerical_gradient(numerical_gradient, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now the gradient check that CS231n asks for every layer you write: three gradients of your loss on
# the same random batch, each compared with the others by the **relative error**
# $\max |g_1 - g_2| / \max(|g_1|, |g_2|)$. *Predict first*: should it be exactly 0? About $10^{-2}$?
# About $10^{-10}$? Then run the cell.

# %%
generator = torch.Generator().manual_seed(0)
a = torch.randn(6, 3, dtype=torch.float64, generator=generator)
b = a + 0.6 * torch.randn(6, 3, dtype=torch.float64, generator=generator)  # pairs inside the margin, mostly
y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)

a_autograd = a.clone().requires_grad_(True)
contrastive_loss(a_autograd, b, y).backward()
by_autograd = a_autograd.grad
by_hand = contrastive_loss_gradient(a, b, y)
numerical = numerical_gradient(lambda x: contrastive_loss(x, b, y).item(), a)


def relative_error(g1: torch.Tensor, g2: torch.Tensor) -> float:
    """Largest difference relative to the largest value: 0 for equal gradients, about 1 for unrelated ones."""
    return ((g1 - g2).abs().max() / torch.maximum(g1.abs().max(), g2.abs().max())).item()


print(f"by hand   vs autograd : {relative_error(by_hand, by_autograd):.1e}")
print(f"numerical vs autograd : {relative_error(numerical, by_autograd):.1e}")
print("distances:", F.pairwise_distance(a, b).numpy().round(2))

# %% [markdown]
# The hand gradient and autograd agree to about $10^{-6}$ if your loss uses `F.pairwise_distance`
# (its `eps` moves every distance by about $10^{-6}$), closer with `torch.linalg.vector_norm`.
# The numerical one agrees to about $10^{-10}$, the size of its $O(h^2)$ error term for $h = 10^{-5}$.
# A relative error near $10^{-2}$ or above means a bug.
# Try `h = 1e-12` in `numerical_gradient(...)` above: the error grows to about $10^{-4}$, because
# $f(x + h) - f(x - h)$ is then the difference of two nearly equal numbers and rounding eats its digits.
# Which pairs would make a large `h` such as 1.0 go wrong? (Hint: where is the loss not smooth? A
# step that crosses the margin's kink at $d = m$ averages two different slopes.)
#
# ## 8. Distance 0: where a square root breaks training
#
# Two embeddings can coincide during training: an image paired with itself (lesson 1's same-class
# partner can be the anchor itself), or two embeddings that the head's final ReLU set to all zeros.
# Here is what three ways of computing $d$ give as gradients when `out1 == out2`:

# %%
point = torch.tensor([[0.5, -1.0, 2.0]])
for name, distance in [
    ("bare square root ", lambda u, v: ((u - v) ** 2).sum(dim=1).sqrt()),
    ("vector_norm      ", lambda u, v: torch.linalg.vector_norm(u - v, dim=1)),
    ("pairwise_distance", lambda u, v: F.pairwise_distance(u, v)),
]:
    u = point.clone().requires_grad_(True)
    distance(u, point).pow(2).sum().backward()  # d², the same-class term, at d = 0
    print(f"{name}: d = {distance(point, point).item():.1e}, gradient of d² = {u.grad.tolist()}")

# %% [markdown]
# $d^2$ has gradient 0 at $d = 0$, yet the bare square root gives NaN: autograd applies the chain
# rule, $\partial \sqrt{s} / \partial s = 1 / (2\sqrt{s}) = \infty$ at $s = 0$, times
# $\partial s / \partial u = 0$, and $\infty \cdot 0$ is NaN. One NaN in one step reaches every
# weight through the optimizer, and the network is lost for good. `vector_norm` defines its gradient
# at 0 as 0: finite, but a different-class pair at $d = 0$ then gets no push at all and stays stuck.
# `pairwise_distance` adds `eps` to the difference, so $d$ is never exactly 0 and such a pair is pushed
# along the direction of `eps`, as good as any other (the direction is undefined there). That is
# what `eps` is for, and why `loss_gradient_at_zero` checks only that the gradients are finite. (For two
# embeddings that the head's final ReLU set to all zeros, the push stops at that ReLU, whose gradient
# is 0 there: question 3.5.)
#
# ## 9. Question 4.4 (predict, then check): one step of gradient descent
#
# Take a lone pair (a batch of one) at distance $d$, and take one plain gradient-descent step of size
# `lr` on **both** embeddings: $a \leftarrow a - \text{lr}\, \partial L / \partial a$, the same for $b$.
# Use your answer to exercise 4.2 to work out the new distance, for a same-class pair and for a
# different-class pair, inside the margin and beyond it.
#
# Write `distance_after_step(d, y, margin, lr)` returning the new distance as a float, for $d > 0$ and
# $0 < \text{lr} < 0.5$. Its self-check checks the form of your answers only; the grader checks them
# on values it draws when it grades, and its feedback explains the answer. The next cell then lets you
# compare your prediction with what your loss actually does.

# %% [exercise 4.4]

# %% [check distance_after_step 1]
checks.check_distance_after_step(distance_after_step)
### BEGIN HIDDEN TESTS
checks.check_distance_after_step(distance_after_step, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now the experiment: one step with your `contrastive_loss`, measured, next to your prediction.

# %%
for d_start, pair_label, lr in ((1.0, 0, 0.1), (1.0, 0, 0.4), (1.0, 1, 0.1), (2.5, 1, 0.1)):
    a = torch.zeros(1, 2, requires_grad=True)
    b = torch.tensor([[d_start, 0.0]], requires_grad=True)
    contrastive_loss(a, b, torch.tensor([float(pair_label)]), margin=2.0).backward()
    with torch.no_grad():
        measured = torch.linalg.vector_norm((a - lr * a.grad) - (b - lr * b.grad)).item()
    kind = "same     " if pair_label == 0 else "different"
    print(
        f"{kind} pair at d = {d_start}, lr = {lr}: measured {measured:.3f}, "
        f"your prediction {distance_after_step(d_start, pair_label, 2.0, lr):.3f}"
    )

# %% [markdown]
# Look at the same-class pair at `lr = 0.4`: where did it end? What would happen at
# `lr = 0.5`, and at `lr = 0.6`, over many steps? A step that overshoots,
# spread over a million parameters, is what a too-large learning rate does to a network.
#
# ## 10. Question 4.5 (predict): the loss of a collapsed network
#
# A network that maps **every** image to the same embedding has "collapsed". Suppose a batch in which a
# share `p` of the pairs are different-class. What is the batch loss of a collapsed network, with
# margin `margin`? Write `collapsed_loss(p, margin)` returning it as a float.

# %% [exercise 4.5]

# %% [check collapsed_loss 1]
checks.check_collapsed_loss(collapsed_loss)
### BEGIN HIDDEN TESTS
checks.check_collapsed_loss(collapsed_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Check your prediction against your loss on a collapsed batch of 8 pairs, 3 of them different-class:

# %%
collapsed = torch.ones(8, 16)
labels = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
print(
    f"measured {contrastive_loss(collapsed, collapsed.clone(), labels).item():.4f}, "
    f"your prediction {collapsed_loss(3 / 8, 2.0):.4f}"
)

# %% [markdown]
# Lesson 1 builds balanced pairs ($p = 0.5$) and the course trains with margin 2: put these into your
# prediction and remember the number. When lesson 5's training loss is still at it after many steps, the
# network has collapsed (an untrained network starts near it too, for a different reason).
#
# ## 11. Experiment: what the margin does
#
# Without any images at all, let the loss arrange 40 free 2-d points of 4 classes: each point is a
# parameter, and each step is the plain gradient-descent step of question 4.4, taken on all pairs at
# once. Run it with margin 1 and margin 2 and compare the distances the loss settles at. **Predict
# first**: with twice the margin, will the different-class distances double? Will the same-class ones?


# %%
def arrange_points(margin: float, steps: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """40 free 2-d points of 4 classes, moved by gradient descent to lower the contrastive loss over all pairs."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.arange(4).repeat_interleave(10)
    points = (0.1 * torch.randn(40, 2, generator=generator)).requires_grad_(True)
    first, second = torch.triu_indices(40, 40, offset=1)
    pair_labels = (classes[first] != classes[second]).float()  # 1 = different
    # Larger than question 4.4's steps: the loss is the mean over 780 pairs, so each pair pulls or pushes
    # with 1/780 of its own gradient.
    lr = 1.0
    for _ in range(steps):
        contrastive_loss(points[first], points[second], pair_labels, margin=margin).backward()
        # The step is not part of the loss: PyTorch refuses to change a leaf that requires grad in place
        # unless autograd is told not to record it.
        with torch.no_grad():
            points -= lr * points.grad
            points.grad.zero_()  # backward() adds to .grad: clear it for the next step (lesson 5 shows why)
    return points.detach(), classes


fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, m in zip(axes, (1.0, 2.0)):
    points, classes = arrange_points(m)
    first, second = torch.triu_indices(40, 40, offset=1)
    d = F.pairwise_distance(points[first], points[second])
    same = classes[first] == classes[second]
    print(
        f"margin {m}: same-class pairs at mean d = {d[same].mean():.2f}, "
        f"different-class pairs at min d = {d[~same].min():.2f}, mean d = {d[~same].mean():.2f}"
    )
    ax.scatter(points[:, 0], points[:, 1], c=classes, cmap="tab10", vmax=9, s=20)
    ax.set_title(f"margin {m}")
    ax.set_aspect("equal")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the printed distances of both runs before the question: where do the same-class pairs end up,
# and where, compared with $m$, do the different-class pairs settle? Remember that the loss only asks
# different-class pairs for "at least $m$".
#
# ### Question 4.6 (written, graded by your instructor): the margin and the threshold
#
# Lesson 6 will call two images "the same" when their distance is below a threshold $t$. In two to
# four sentences: (a) if you trained with margin 4 instead of 2, what would happen to the best
# threshold, and why? (b) Why is it better to choose $t$ from measured distances than to fix it in
# advance, for example at $t = m/2$?

# %% [answer written_4_6 2]
# **Model answer.** (a) It would grow, roughly in proportion: the loss pulls same-class pairs towards
# 0 and pushes different-class pairs out to the margin (the nearest settle at $m$, the rest beyond
# it), so the distances between classes scale with $m$, and the best threshold lies between the two
# groups. (b) The distances a network actually reaches depend on much more than $m$: how long and how
# well it trained, which classes are hard to tell apart (their pairs never reach the margin), the data.
# A threshold fixed in advance ignores all that; one chosen from measured distances sits where the two
# groups actually separate. (The reference run's threshold came out at 0.90, near $m/2 = 1$, but nobody
# could know that before training.)
#
# **Rubric (2 points).** 1 point for (a): the threshold grows with the margin (roughly doubles), because
# distances between classes scale with it (no reason: half a point). 1 point for (b): the distances
# reached depend on training, data and hard classes, not on $m$ alone (half a point), so $t$ must be
# measured where the two groups actually separate (half a point).

# %% [markdown]
# ## Summary
#
# - The contrastive loss is $(1 - y)\,d^2 + y\,\max(m - d, 0)^2$, averaged over the batch, with
#   $y = 1$ for **different** classes: same pairs are pulled together, different pairs pushed apart up
#   to the margin $m$ and then left alone.
# - Labels of shape `[B, 1]` against distances of shape `[B]` broadcast silently to `[B, B]`.
# - A hand-derived gradient, checked against central differences, is how you trust a new loss; a bare
#   square root has an infinite derivative at $d = 0$, which is why `pairwise_distance` has its `eps`.
# - A collapsed network's loss depends only on the share of different pairs and the margin (question
#   4.5), so a training loss stuck at that value is a diagnosis.
#
# Next lesson: the training loop that uses this loss to train the Siamese network.
