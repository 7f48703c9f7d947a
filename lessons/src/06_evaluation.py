# %% [markdown]
# # Lesson 6: Evaluating the Siamese network
#
# The loss of lesson 5 went down, but what can the trained network actually do? A Siamese network
# answers one question: *are these two images of the same kind?* This lesson turns distances into that
# answer, measures how often it is right on test pairs the network never saw, and draws the ROC curve.
#
# **Learning goals**
#
# - compute embeddings for inference with `net.eval()` and `torch.no_grad()`, and know why (exercise 6.1);
# - read the similarity score `exp(-d)` of the original notebook on test pairs;
# - choose a decision threshold on **validation** pairs (images set aside, never trained on) and
#   measure the verification accuracy on test pairs (exercise 6.2);
# - compare accuracy on training, validation and test pairs side by side, and explain the gaps
#   (question 6.6, written);
# - compute the area under the ROC curve, the ROC AUC (exercise 6.3), and draw the curve;
# - predict the best accuracy and the AUC of two overlapping distributions of distances, then
#   measure them with your own functions (questions 6.4 and 6.5);
# - compare your network with the reference run.

# %% [setup]

# %%
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

from data_utils.lessons import checkpoint_path, course_dataset, file_digest
from solutions.evaluate import make_balanced_pairs, nearest_neighbour_accuracy, pair_distances, similarity
from solutions.fast import TensorPairLoader, fast_train_one_epoch, take_steps
from solutions.model import SiameseNetwork
from solutions.plots import plot_embeddings, plot_similarity_pairs
from solutions.runtime import set_seed
from solutions.train import get_device

device = get_device()
train_set = course_dataset("train")
validation_set = course_dataset("validation")  # 5,000 training images that lesson 5 never trained on
test_set = course_dataset("test")
print(
    f"device {device}; {len(train_set):,} training, {len(validation_set):,} validation and "
    f"{len(test_set):,} test images"
)

# %% [markdown]
# ## 1. The trained network
#
# Lesson 5 saved its trained weights: in Colab to your Google Drive (`MyDrive/siamese-course/siamese.pt`;
# Colab asks once for permission to read it), elsewhere to `siamese.pt` in the lessons' folder. The next
# cell loads them into a fresh `SiameseNetwork` and says so, with the file's fingerprint (the one lesson 5
# printed). If there is no such file, it says that too, and trains a network now with the reference's
# fast training loop, so that the rest of the lesson runs: 5 epochs on a GPU (a minute or two), about
# 3 minutes on all 55,000 training images on a CPU (as lesson 5's shortened run), a tiny run while the notebook
# is graded. The figures are then those of that network, not yours.

# %%
CHECKPOINT_PATH = checkpoint_path()
set_seed(0)
net = SiameseNetwork().to(device)

if CHECKPOINT_PATH.exists():
    net.load_state_dict(torch.load(CHECKPOINT_PATH, map_location=device, weights_only=True))
    print(
        f"evaluating YOUR network: the weights lesson 5 saved in {CHECKPOINT_PATH} "
        f"(sha256 {file_digest(CHECKPOINT_PATH)})"
    )
else:
    print(
        f"no trained network found at {CHECKPOINT_PATH} (lesson 5 saves it there at its end). Evaluating a "
        "network trained now with the reference's loop instead: the figures below are not your network's."
    )
    if QUICK:
        num_epochs, num_images = 1, min(len(train_set), 64)  # one step: the figures mean nothing here anyway
        print(
            f"QUICK run (grading or testing): training {num_epochs} epoch on {num_images} synthetic images."
        )
    elif device.type != "cpu":
        num_epochs, num_images = 5, len(train_set)
        print(f"training {num_epochs} epochs on {device} now.")
    else:
        CPU_SECONDS = 180  # as lesson 5's shortened run
        num_epochs, num_images = 1, len(train_set)
        print(
            f"no GPU: a SHORTENED run of about {CPU_SECONDS // 60} minutes on {num_images:,} images; "
            "the results will be below the reference's."
        )
    loader = TensorPairLoader(
        train_set.data[:num_images],
        torch.as_tensor(train_set.targets)[:num_images],
        batch_size=64,
        device=device,
        seed=0,
        channels_last=False,
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-5)
    if (
        device.type == "cpu" and not QUICK
    ):  # as many steps as fit in the time, over as many epochs as that takes
        batches = take_steps(loader, 100 * len(loader), deadline=time.perf_counter() + CPU_SECONDS)
        logged = fast_train_one_epoch(net, batches, optimizer)
        print(f"about {10 * len(logged)} steps: mean logged loss {sum(logged) / len(logged):.4f}")
    else:
        for epoch in range(num_epochs):
            loader.set_epoch(epoch)
            logged = fast_train_one_epoch(net, loader, optimizer)
            print(f"epoch {epoch + 1}/{num_epochs}: mean logged loss {sum(logged) / len(logged):.4f}")

# %% [markdown]
# ## 2. Inference mode: `eval()` and `no_grad()`
#
# Two switches matter whenever a network is *used* rather than trained:
#
# - `net.eval()` puts every layer in evaluation mode. Dropout stops dropping units and batch
#   normalisation uses its stored statistics instead of the batch's. This network has neither layer, so
#   nothing changes here, but code that embeds without `eval()` breaks the day someone adds one.
#   (`net.train()` switches back.)
# - `with torch.no_grad():` (or the decorator `@torch.no_grad()`) tells PyTorch not to record the
#   operations for a later `backward()`. Without it every intermediate result of the forward pass is
#   kept in memory for the gradient; with it, inference uses less memory and runs faster.
#
# The original notebook used neither.

# %%
x = torch.rand(8, 1, 28, 28, device=device)  # a small batch: only what PyTorch records matters here
out = net.forward_ind(x)
print("without no_grad: requires_grad =", out.requires_grad, ", grad_fn =", type(out.grad_fn).__name__)
with torch.no_grad():
    out = net.forward_ind(x)
print("with no_grad:    requires_grad =", out.requires_grad, ", grad_fn =", out.grad_fn)
print("training mode after net.eval():", net.eval().training, "; after net.train():", net.train().training)

# %% [markdown]
# ## 3. Similarity scores
#
# The distance $d$ between two embeddings is 0 for identical embeddings and grows without bound. The
# original notebook turns it into a **similarity** in $(0, 1]$:
#
# $$ \text{similarity} = e^{-d}, $$
#
# 1 for identical embeddings, close to 0 for distant ones. Here is its gallery: the first test image
# against ten others, half of them of its class, each pair titled with its similarity and the two class
# names. The original notebook reported about 0.7–0.9 for same-class pairs and 0.1–0.3 for others in its
# gallery; section 10 compares your mean similarities over 10,000 test pairs with the reference run's.
# An untrained or briefly trained network gives less clear-cut scores.

# %%
print(
    "distance → similarity:",
    [(d, round(similarity(torch.tensor(d)).item(), 3)) for d in (0.0, 0.5, 1.0, 2.0)],
)
plot_similarity_pairs(net, test_set.data, torch.as_tensor(test_set.targets), device)
plt.show()

# %% [markdown]
# ## 4. Exercise 6.1: `embed`
#
# To evaluate on thousands of images we embed them all once. Write
# `embed(net, images, device="cpu", batch_size=1024)`, returning one float32 tensor
# `[N, embedding_dim]`: the embedding `net.forward_ind` gives each image, **on the CPU**, in the order
# of the images. What the checks hold it to:
#
# - `images` is the dataset's raw tensor, uint8 of shape `[N, 28, 28]` (like `test_set.data`), or float
#   images `[N, 1, 28, 28]`; the given helper `to_float_images` turns a batch of either into what the
#   network was trained on;
# - `net` may contain layers that behave differently in training (the check's network has Dropout),
#   and the result must be that of the network as it is used, not as it is trained;
# - `N` may be far larger than what fits on a GPU at once (60,000 images), but never more than
#   `batch_size` images go through the network in one call;
# - nothing may be kept for a `backward()` that will never come.
#
# Section 2 has what you need for the second and the last points; `torch.cat` joins a list of tensors.

# %% [given] solutions.evaluate:to_float_images

# %% [exercise 6.1]

# %%
from autograder.checks import evaluate as checks

# %% [check embed 3]
checks.check_embed(embed)
### BEGIN HIDDEN TESTS
checks.check_embed(embed, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now embed the test set, the validation set and the first 10,000 training images with your function.
# All the measurements below use these embeddings, so the network runs only once per image.

# %%
num_train_eval = min(len(train_set), 10_000)
train_images, train_labels = (
    train_set.data[:num_train_eval],
    torch.as_tensor(train_set.targets)[:num_train_eval],
)
test_images, test_labels = test_set.data, torch.as_tensor(test_set.targets)

validation_images, validation_labels = validation_set.data, torch.as_tensor(validation_set.targets)

train_embeddings = embed(net, train_images, device)
validation_embeddings = embed(net, validation_images, device)
test_embeddings = embed(net, test_images, device)
print(
    "embeddings: training",
    tuple(train_embeddings.shape),
    " validation",
    tuple(validation_embeddings.shape),
    " test",
    tuple(test_embeddings.shape),
)

# %% [markdown]
# ## 5. From distances to decisions: the threshold
#
# A **verification** decision needs a threshold $t$: call a pair "same" when $d < t$ and "different"
# when $d \ge t$. The verification accuracy is the fraction of pairs called right.
#
# We measure on fixed **balanced** pairs (exactly half same-class, as in training), so that always
# answering "different" scores 50%, not 90%. The histogram shows the distances of same-class and
# different-class validation pairs: the better the network, the less the two overlap.

# %%
num_pairs = 10_000
train_first, train_second, train_pair_labels = make_balanced_pairs(train_labels, num_pairs, seed=1)
train_distances = pair_distances(train_embeddings, train_first, train_second)
validation_first, validation_second, validation_pair_labels = make_balanced_pairs(
    validation_labels, num_pairs, seed=2
)
validation_distances = pair_distances(validation_embeddings, validation_first, validation_second)


def plot_distance_histogram(distances, pair_labels, title, threshold=None):
    """Histograms of the distances of same-class and different-class pairs (and a threshold, if given)."""
    pair_labels = pair_labels.reshape(-1)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bins = torch.linspace(0, distances.max().item() * 1.02 + 1e-6, 60)
    ax.hist(distances[pair_labels == 0], bins=bins, alpha=0.6, label="same class (label 0)")
    ax.hist(distances[pair_labels == 1], bins=bins, alpha=0.6, label="different classes (label 1)")
    if threshold is not None:
        ax.axvline(
            threshold, color="black", linestyle="--", linewidth=1, label=f"threshold t = {threshold:.3f}"
        )
    ax.set_xlabel("distance between the embeddings")
    ax.set_ylabel("number of pairs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


plot_distance_histogram(
    validation_distances, validation_pair_labels, f"{num_pairs:,} balanced validation pairs"
)
plt.show()

# %% [markdown]
# **Choose the threshold on validation pairs: never on test pairs, and better not on training pairs.**
# The threshold is a parameter of the decision rule, learnt from data like the weights. If we picked
# the threshold that does best on the test pairs and then reported the accuracy on those same pairs,
# the figure would be optimistic: it would include the luck of fitting exactly these pairs, and would
# no longer predict how the system does on pairs it has never seen. The validation images are new to
# the network and are not the test set, which is used once, at the end, to measure. (Why not training
# pairs? Section 10 measures all three kinds, and question 6.6 asks what a gap between them means.)
#
# ## 6. Exercise 6.2: `verification_accuracy` and `best_threshold`
#
# - `verification_accuracy(distances, pair_labels, threshold)`: `distances` of shape `[N]`,
#   `pair_labels` of shape `[N]` or `[N, 1]` (0 = same, 1 = different). A pair is predicted "same" when
#   `distance < threshold` and "different" otherwise. Return the fraction of correct predictions as a
#   Python `float`.
# - `best_threshold(distances, pair_labels)`: return a threshold (a Python `float`) with the **highest**
#   verification accuracy on these pairs.
#
# For `best_threshold`, first ask yourself: as the threshold slides from 0 upwards, **when** can the
# accuracy change at all? That tells you which few candidates are worth trying (mind the ends: a
# threshold that calls every pair "same", one that calls every pair "different"). A loop over a few
# thousand candidates that calls `verification_accuracy` is fast enough here; a vectorised version
# with `torch.cumsum` is the bonus.

# %% [exercise 6.2]

# %% [check verification 3]
checks.check_verification(verification_accuracy, best_threshold)
### BEGIN HIDDEN TESTS
checks.check_verification(verification_accuracy, best_threshold, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# The threshold of your network, chosen on the validation pairs. Pairs left of the dashed line are
# called "same", pairs right of it "different"; the overlap of the two histograms is where the mistakes are.

# %%
threshold = best_threshold(validation_distances, validation_pair_labels)
validation_accuracy = verification_accuracy(validation_distances, validation_pair_labels, threshold)
print(
    f"threshold t = {threshold:.4f} (similarity exp(-t) = {similarity(torch.tensor(threshold)).item():.3f})"
)
print(f"verification accuracy on the validation pairs: {validation_accuracy:.1%}")
plot_distance_histogram(
    validation_distances,
    validation_pair_labels,
    "Validation pairs: left of t is called same, right of t different",
    threshold=threshold,
)
plt.show()

# %% [markdown]
# ## 7. Exercise 6.3: `roc_auc`
#
# The accuracy depends on one chosen threshold. The **ROC AUC** sums up every threshold at once in one
# number: it is the probability that a random different-class pair is farther apart than a random
# same-class pair, ties counting half. 1.0 means some threshold separates the pairs perfectly, 0.5 is
# guessing.
#
# Write `roc_auc(distances, pair_labels)`, returning that probability as a Python `float`, computed
# exactly over the pairs given (every combination of one different-class pair with one same-class
# pair). When is it undefined? Your function must raise a `ValueError` then, with a message that says
# why. The cells below call it on 5,000 same-class and 5,000 different-class pairs, 25 million
# combinations: compare them in one broadcast tensor operation, not in a Python loop over pairs (which
# would take minutes). For much larger sets, think about what sorting the distances tells you (the
# rank formula, or Mann-Whitney U).

# %% [exercise 6.3]

# %% [check roc_auc 3]
checks.check_roc_auc(roc_auc)
### BEGIN HIDDEN TESTS
checks.check_roc_auc(roc_auc, hidden=True)
### END HIDDEN TESTS

# %% [check roc_auc_one_kind 1]
checks.check_roc_auc_one_kind(roc_auc)
### BEGIN HIDDEN TESTS
checks.check_roc_auc_one_kind(roc_auc, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 8. The ROC curve
#
# Why "area"? Call "different" the positive answer; for each threshold $t$:
#
# - the **true positive rate** is the fraction of different-class pairs with $d \ge t$ (caught);
# - the **false positive rate** is the fraction of same-class pairs with $d \ge t$ (wrongly called
#   different).
#
# A huge threshold calls nothing different (the point (0, 0)), a threshold of 0 calls everything
# different (1, 1). A perfect network passes through (0, 1); guessing gives the diagonal. The
# **ROC curve** (receiver operating characteristic) joins these points, and the probability of
# exercise 6.3 is exactly the area under it. The cell below draws it for the test pairs by sorting
# their distances, marks your threshold, and prints the area under the drawn curve next to your
# `roc_auc`: if they disagree beyond the fourth decimal, one of the two is wrong (pairs at exactly the
# same distance could make them differ slightly; with these distances there are hardly any).

# %%
test_first, test_second, test_pair_labels = make_balanced_pairs(test_labels, num_pairs, seed=0)
test_distances = pair_distances(test_embeddings, test_first, test_second)


def roc_points(distances, pair_labels):
    """False and true positive rates of "different = distance >= t", for t from +infinity down to 0."""
    different = pair_labels.reshape(-1).bool()[torch.argsort(distances, descending=True)].double()
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(different, 0) / different.sum()])
    fpr = torch.cat(
        [torch.zeros(1, dtype=torch.float64), torch.cumsum(1 - different, 0) / (1 - different).sum()]
    )
    return fpr, tpr


fpr, tpr = roc_points(test_distances, test_pair_labels)
is_different = test_pair_labels.reshape(-1) == 1
fpr_at_t = (test_distances[~is_different] >= threshold).float().mean().item()
tpr_at_t = (test_distances[is_different] >= threshold).float().mean().item()

fig, ax = plt.subplots(figsize=(4.8, 4.6))
ax.plot(fpr, tpr, label="your network")
ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="guessing")
ax.plot([fpr_at_t], [tpr_at_t], "o", color="C3", label=f"threshold t = {threshold:.2f}")
ax.set_xlabel("false positive rate (same-class pairs called different)")
ax.set_ylabel("true positive rate (different pairs caught)")
ax.set_title("ROC curve on the test pairs")
ax.legend(loc="lower right")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print(
    f"area under the drawn curve: {torch.trapezoid(tpr, fpr).item():.4f};  your roc_auc: "
    f"{roc_auc(test_distances, test_pair_labels):.4f}"
)

# %% [markdown]
# ## 9. Questions 6.4 and 6.5 (predict, then measure): two overlapping blocks
#
# Picture the simplest histogram of section 5 that still overlaps: balanced pairs whose same-class
# distances are spread evenly over $[0, w]$ and whose different-class distances are spread evenly over
# $[s, s + w]$, with $0 < s < w$ (`shift` $s$, `width` $w$). Predict, on paper:
#
# - **6.4** the best verification accuracy any threshold reaches: `overlap_best_accuracy(shift, width)`;
# - **6.5** the ROC AUC: `overlap_auc(shift, width)`. (Hint: the AUC is a probability about two
#   independent uniform numbers; draw the unit square.)
#
# Both return a float. As before, the self-checks check the form only, and the grader draws the
# sizes when it grades.

# %% [exercise 6.4]

# %% [check overlap_best_accuracy 2]
checks.check_overlap_best_accuracy(overlap_best_accuracy)
### BEGIN HIDDEN TESTS
checks.check_overlap_best_accuracy(overlap_best_accuracy, hidden=True)
### END HIDDEN TESTS

# %% [exercise 6.5]

# %% [check overlap_auc 1]
checks.check_overlap_auc(overlap_auc)
### BEGIN HIDDEN TESTS
checks.check_overlap_auc(overlap_auc, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **Experiment.** Draw 4,000 such pairs and measure them with your own `best_threshold`,
# `verification_accuracy` and `roc_auc`, next to your predictions. Then change `shift`: what happens to
# the two figures as the blocks slide apart, and which one is larger on the way to 1? Which threshold
# does your `best_threshold` choose, and would any other threshold in the overlap do as well? (The
# measured best accuracy tends to land a little **above** the prediction: the threshold was chosen on
# these very pairs, the optimism section 5 warned about.)

# %%
shift, width = 0.6, 1.0
blocks = torch.Generator().manual_seed(0)
block_labels = torch.arange(4_000) % 2  # balanced: 0 = same class, 1 = different classes
block_distances = width * torch.rand(4_000, generator=blocks) + shift * block_labels
block_threshold = best_threshold(block_distances, block_labels)
print(f"shift {shift}, width {width}: best threshold {block_threshold:.3f}")
print(
    f"  best accuracy: measured {verification_accuracy(block_distances, block_labels, block_threshold):.3f}, "
    f"your prediction {overlap_best_accuracy(shift, width):.3f}"
)
print(
    f"  ROC AUC:       measured {roc_auc(block_distances, block_labels):.3f}, "
    f"your prediction {overlap_auc(shift, width):.3f}"
)

# %% [markdown]
# ## 10. Your results
#
# **Predict first.** You have the same threshold and three sets of pairs: training pairs (images the
# network was fitted on), validation pairs (new images, which chose the threshold) and test pairs (new
# images, used only now). Which accuracy will be highest, which lowest, and will the gaps be large?
# Write your guess down, then run the cell.

# %%
train_accuracy = verification_accuracy(train_distances, train_pair_labels, threshold)
test_accuracy = verification_accuracy(test_distances, test_pair_labels, threshold)
print(f"verification accuracy with t = {threshold:.3f} (chosen on the validation pairs):")
for name, accuracy in (
    ("training pairs", train_accuracy),
    ("validation pairs", validation_accuracy),
    ("test pairs", test_accuracy),
):
    print(f"  {name:17} {accuracy:.1%}")

# %% [markdown]
# ### Question 6.6 (written, graded by your instructor): three accuracies
#
# Compare the three figures with your prediction. In two to four sentences: (a) what does the gap
# between the training accuracy and the others measure, and is yours larger than noise? (With 10,000
# pairs an accuracy near 90% has a standard error of at least 0.3 percentage points, more since
# pairs share images, so gaps below about 1 point are noise.) (b) A classmate trains 20 networks with
# different learning rates, keeps the one with the best **test** accuracy and reports that accuracy.
# What is wrong with the figure, and how should they choose and report instead?

# %% [answer written_6_6 2]
# **Model answer.** (a) How much the network has fitted its own training images: it separates their
# pairs better than pairs of new images. With 5 epochs at `lr = 1e-5`, or a short CPU run in which most
# training images were seen at most once, the gap is small, usually within the noise. (b) Picking the
# best of 20 networks on the test pairs tunes a choice to them, just as choosing a threshold there
# would: the best of 20 is partly the luckiest on these pairs, so the figure is optimistic. They
# should choose the network (and its threshold) on the validation pairs, then measure the chosen one
# on the test pairs, once, and report that.
#
# **Rubric (2 points).** 1 point for (a): fitting the training images (overfitting), with a judgement
# of the size against the noise (half a point each). 1 point for (b): optimistic because the network
# was selected on the test pairs (half a point); select on validation pairs, then report the test
# accuracy of the chosen network, measured once (half a point).

# %% [markdown]
# Everything together, on the 10,000 balanced **test** pairs. The **1-nearest-neighbour accuracy** is
# another view of the same embeddings: label every test image with the class of its nearest training
# image (among the first 10,000) and count how often that is its true class.
#
# The reference figures come from the 5-epoch run of the reference solution (`python -m solutions.train`),
# whose figures the course README lists. Its verification accuracy, ROC AUC and mean similarities are
# measured on the same 10,000 balanced test pairs as yours, with a threshold chosen on validation
# pairs, as yours. Its 1-nearest-neighbour accuracy is **not** measured as yours: the reference searched
# all 55,000 training embeddings, this lesson searches the first 10,000 to save time, and with
# fewer candidates the nearest one is of the right class less often (for one network of lesson 5's
# shortened CPU run, measured before the validation split: 67.5% against the first 10,000 training
# images, 73.4% against all 60,000). So the table gives no reference for that row: compare it between
# your own runs only. A shortened CPU run lands lower, and a run on the synthetic data of grading or
# testing means nothing.

# %%
# The reference run's figures, from results/reference/metrics.json (a test keeps them equal).
REFERENCE_ACCURACY, REFERENCE_AUC, REFERENCE_SAME, REFERENCE_DIFFERENT = "90.2%", "0.960", "0.66", "0.18"

auc = roc_auc(test_distances, test_pair_labels)
nn_accuracy = nearest_neighbour_accuracy(train_embeddings, train_labels, test_embeddings, test_labels)
same = test_pair_labels.reshape(-1) == 0

print(f"{'':34} {'yours':>8} {'reference (5 epochs)':>22}")
print(f"{'verification accuracy (test pairs)':34} {test_accuracy:>8.1%} {REFERENCE_ACCURACY:>22}")
print(f"{'ROC AUC (test pairs)':34} {auc:>8.3f} {REFERENCE_AUC:>22}")
print(f"{'1-nearest-neighbour (test images)':34} {nn_accuracy:>8.1%} {'- (see above)':>22}")
print(
    f"{'mean similarity, same class':34} {similarity(test_distances[same]).mean():>8.3f} {REFERENCE_SAME:>22}"
)
print(
    f"{'mean similarity, different classes':34} "
    f"{similarity(test_distances[~same]).mean():>8.3f} {REFERENCE_DIFFERENT:>22}"
)

# %% [markdown]
# Finally, a map of the test embeddings: their 256 coordinates projected onto the two directions of
# largest variance (PCA). Classes the network separates well form their own clusters; the ones it
# confuses (shirt, T-shirt, pullover, coat) overlap.

# %% [demo]
plot_embeddings(test_embeddings, test_labels)
plt.show()

# %% [markdown]
# ## Summary
#
# - Embed for inference with `net.eval()` and `torch.no_grad()`, in batches, once per image.
# - `exp(-d)` turns a distance into a similarity in (0, 1]; a threshold on $d$ turns it into a decision.
# - Choose the threshold on validation pairs (new to the network) and measure on test pairs, which are
#   used only once (question 6.6 is about why).
# - The ROC curve shows every threshold at once; its area is the probability that a different pair is
#   farther apart than a same pair.
#
# That completes the course: you built, trained and evaluated a Siamese network from its parts.
