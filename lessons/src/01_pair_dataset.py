# %% [markdown]
# # Lesson 1: A dataset of image pairs
#
# In this course you build, step by step, a **Siamese network**: a network that learns to tell
# whether two images show the same kind of thing. It never learns "this is a coat"; it learns a
# *distance* between images, small for two coats and large for a coat and a sandal.
# Everything starts with the data, and a Siamese network learns from **pairs** of images.
#
# **Learning goals**
#
# - know the Fashion-MNIST dataset: 28 × 28 grey images of 10 kinds of garment;
# - understand why similarity learning trains on pairs, and what a pair label means;
# - use the course's label convention: **0 = same class, 1 = different class**;
# - write a PyTorch `Dataset` that makes balanced pairs on the fly (exercise 1.1);
# - predict what the original's rejection sampling costs (question 1.2), and how a "network" that
#   ignores the images scores on random pairs (question 1.3); then measure both (experiments);
# - explain, in your own words, why training and measuring on balanced pairs matters (question 1.4).
#
# **How the lessons are graded.** Exercises and "predict" questions are checked by code: a self-check
# below each one runs at once (for an exercise on a few visible cases, for a "predict" question on the
# form of your answer only), and the graded run decides whether it is right and explains it in your
# feedback. One question per lesson is **written**: you
# answer it in words in the cell below it (replace "YOUR ANSWER HERE"), and your instructor grades it
# by hand.

# %% [setup]

# %% [markdown]
# ## 1. Fashion-MNIST
#
# Fashion-MNIST (Zalando, 2017) has 60,000 training images and 10,000 test images of clothing and
# accessories, each a 28 × 28 grey-scale picture with one of ten class labels. It has exactly the
# format of the famous MNIST digits, but is harder: a shirt and a pullover can look very alike.
#
# The course sets 5,000 of the training images aside as a *validation set*, which lesson 6 uses to
# choose a decision threshold; the other 55,000 are the training set of every lesson.
# `course_dataset` loads it the way torchvision does, with the `ToTensor()` transform:
# every item is a pair `(image, label)`, the image a float tensor of shape `[1, 28, 28]` (one channel)
# with pixels in [0, 1], the label an integer from 0 to 9. While the notebook is graded or tested it
# gives a small synthetic stand-in with the same format instead, and says so.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import Dataset

from data_utils import CLASS_NAMES
from data_utils.lessons import course_dataset
from data_utils.plotting import class_name, image_class, show_images, show_pairs

train_set = course_dataset("train")
print(f"{len(train_set)} training images")

image, label = train_set[0]
print("image:", tuple(image.shape), image.dtype, f"pixels from {image.min():.2f} to {image.max():.2f}")
print("label:", label, f"({class_name(label)})")

# %% [markdown]
# The ten classes, and two examples of each (the first ones of each class in the training set):

# %%
print(list(enumerate(CLASS_NAMES)))

targets = torch.as_tensor(train_set.targets)
examples, titles = [], []
for copy in range(2):
    for c in range(len(CLASS_NAMES)):
        index = int(torch.nonzero(targets == c)[copy])
        examples.append(train_set[index][0])
        titles.append(f"{c}: {class_name(c)}")
show_images(examples, titles, ncols=10)
plt.show()

# %% [markdown]
# ## 2. Why pairs?
#
# An ordinary classifier answers "which of these 10 classes is this image?". It cannot say anything
# about an 11th kind of garment it never saw. **Similarity learning** asks a different question:
# *are these two images of the same kind?* A network that answers it well has learnt a notion of
# "looking alike" that also works for new classes: the idea behind face verification (is this the
# same person as on the passport photo?) and signature checking, where Siamese networks come from
# (Bromley et al., 1993).
#
# So the training examples are **pairs** `(image1, image2)` with a label that says whether the two
# show the same class. The network will map each image to a vector, its *embedding*, and a loss
# function will pull the embeddings of a same-class pair together and push those of a
# different-class pair apart.
#
# ### The label convention: 0 = same, 1 = different
#
# In this course (as in the original notebook and in the paper that introduced the loss we use,
# Hadsell, Chopra & LeCun 2006):
#
# | pair | label |
# | --- | --- |
# | both images of the **same** class | **0** |
# | images of **different** classes | **1** |
#
# This is the **opposite** of what many people expect ("1 = yes, they match"). Think of the label as
# a *distance target*: 0 means "these should be at distance zero", 1 means "these should be far
# apart". In lesson 4 the contrastive loss multiplies its "push apart" term by the label, so that
# exactly the label-1 pairs are pushed apart. Swapping the convention would silently train the
# network to do the opposite of what you want, so keep it in mind everywhere.
#
# ### Balanced pairs from a fair coin
#
# With 10 classes, a *random* second image rarely has the same class (question 1.3 asks how
# rarely, and what that does to a "network" that ignores the images). So for each pair
# we first flip a **fair coin**: heads, the second image is drawn from the same class; tails, from
# the other classes. About half of the pairs are then same-class pairs.

# %%
rng = np.random.default_rng(0)
coin = rng.random(1000) < 0.5  # True = "same class"
print(f"fair coin: {coin.mean():.1%} of pairs are same-class")

# %% [markdown]
# The original notebook drew the second image by *rejection sampling*: pick a random image, and try
# again until its class fits the coin. That gives every fitting image the same chance, but it may
# take many picks (question 1.2 counts them), and it loops forever if no image fits. Your dataset will
# give every fitting image the same chance **in one pick**. How? Think about what you could work out
# once, when the dataset is created, so that drawing the partner never needs a second try.

# %% [markdown]
# ## 3. Exercise 1.1: `SiameseDataset`
#
# A PyTorch `Dataset` is any object with `__len__` (how many items) and `__getitem__(index)` (one
# item). A `DataLoader` then batches the items for training. Write `SiameseDataset`, which wraps an
# image dataset such as `train_set`:
#
# - `SiameseDataset(dataset, seed=None)`: keep the dataset; the given helper `dataset_labels(dataset)`
#   returns every image's class (an int64 tensor of shape `[N]`); prepare what drawing a partner in one
#   pick needs. Raise a `ValueError` if the data holds fewer than two classes (no different-class
#   pair could be drawn).
# - `len(pairs)` is the length of the wrapped dataset: one pair per image, per epoch.
# - `pairs[i]` returns `(image1, image2, label)`: `image1` is image `i` of the dataset; a fair coin
#   decides "same class" or "different class"; `image2` is drawn uniformly from the images that fit
#   (for "same class", image `i` itself is one of them: a pair of an image with itself is allowed);
#   `label` is a **float32 tensor of shape `[1]`**: `0.` for the same class, `1.` for different classes.
# - Reproducibility: with `seed=None` use PyTorch's global random generator (`torch.rand`), so every
#   call draws a fresh pair. With an integer `seed`, item `i` must always give the same pair: draw the
#   coin and the partner from a generator made for this item, e.g.
#   `np.random.default_rng([seed, epoch, index]).random(2)`.
# - `set_epoch(epoch)`: store the epoch number, so that a seeded dataset gives different pairs in
#   each epoch (start at epoch 0).
#
# Hints: the label is `torch.tensor([1.0])` or `torch.tensor([0.0])` (float32 by default);
# `int(label)` turns a dataset's label (an int or a 0-d tensor) into a Python int.

# %% [given] solutions.data:dataset_labels

# %% [exercise 1.1]

# %% [markdown]
# ### Checks
#
# Each check cell below runs your class on small made-up datasets and prints `[PASS]`, or stops with
# `[FAIL]`, the input it used, what it expected and what it got. The grader runs further, hidden
# tests of the same kind.

# %%
from autograder.checks import data as checks

# %% [check pair_items 3]
checks.check_pair_items(SiameseDataset)
### BEGIN HIDDEN TESTS
checks.check_pair_items(SiameseDataset, hidden=True)
### END HIDDEN TESTS

# %% [check pair_labels 2]
checks.check_pair_labels(SiameseDataset)
### BEGIN HIDDEN TESTS
checks.check_pair_labels(SiameseDataset, hidden=True)
### END HIDDEN TESTS

# %% [check pair_balance 2]
checks.check_pair_balance(SiameseDataset)
### BEGIN HIDDEN TESTS
checks.check_pair_balance(SiameseDataset, hidden=True)
### END HIDDEN TESTS

# %% [check pair_seeding 2]
checks.check_pair_seeding(SiameseDataset)
### BEGIN HIDDEN TESTS
checks.check_pair_seeding(SiameseDataset, hidden=True)
### END HIDDEN TESTS

# %% [check pair_one_class 1]
checks.check_pair_one_class(SiameseDataset)
### BEGIN HIDDEN TESTS
checks.check_pair_one_class(SiameseDataset, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Your pairs
#
# Here are ten pairs from your dataset, the first image on top and its partner below, with the
# label your dataset gave and the class name of each image. The class names come from the data, not
# from your label (`image_class` finds the image in `train_set` and reads its class), so the figure
# checks your pairs: label-0 pairs should show two images of the same class, label-1 pairs two
# different classes.

# %%
pairs = SiameseDataset(train_set, seed=0)
print(f"{len(pairs)} pairs per epoch")

first, second, titles, second_titles = [], [], [], []
for i in range(10):
    image1, image2, label = pairs[i]
    first.append(image1)
    second.append(image2)
    name1, name2 = (
        class_name(c) if c is not None else "?"
        for c in (image_class(image1, train_set), image_class(image2, train_set))
    )
    titles.append(f"label {label.item():.0f} ({'same' if label.item() == 0 else 'different'})\n{name1}")
    second_titles.append(name2)
show_pairs(first, second, titles, second_titles)
plt.show()

# %% [markdown]
# And the balance over many pairs: about half of them should have label 1.

# %%
labels = torch.cat([pairs[i][2] for i in range(min(len(pairs), 2000))])
print(
    f"{len(labels)} pairs: {(labels == 0).float().mean():.1%} same class (label 0), "
    f"{(labels == 1).float().mean():.1%} different classes (label 1)"
)

epoch0 = SiameseDataset(train_set, seed=0)
epoch1 = SiameseDataset(train_set, seed=0)
epoch1.set_epoch(1)
print("same seed, same epoch, same pair:", torch.equal(epoch0[5][1], pairs[5][1]))
changed = sum(not torch.equal(epoch0[i][1], epoch1[i][1]) for i in range(20))
print(f"after set_epoch(1), {changed} of the first 20 pairs have a new partner")

# %% [markdown]
# ## 5. Question 1.2 (predict): what the original's rejection sampling costs
#
# The original notebook drew each partner by rejection sampling: pick a random image; if its class
# does not fit the coin, pick again, until one fits. With `k` classes of equal size, how many picks
# does that take per pair **on average**, over both sides of the fair coin? (Hint: if each pick fits
# with probability $p$, the number of picks until the first fit has mean $1/p$.) Write
# `expected_draws(k)` returning that mean as a float, for $k \ge 2$. Its self-check checks only that
# you return a number; the grader tries class counts it draws when it grades.

# %% [exercise 1.2]

# %% [check expected_draws 2]
checks.check_expected_draws(expected_draws)
### BEGIN HIDDEN TESTS
checks.check_expected_draws(expected_draws, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now count the picks, on Fashion-MNIST's labels, next to your prediction:


# %%
def picks_for_one_pair(anchor_class: int, want_same: bool, generator: torch.Generator) -> int:
    """Rejection sampling as the original does it: random picks until one's class fits the coin."""
    picks = 1
    while (int(targets[torch.randint(len(targets), (1,), generator=generator)]) == anchor_class) != want_same:
        picks += 1
    return picks


generator = torch.Generator().manual_seed(0)
n = min(len(targets), 2000)
counts = [
    picks_for_one_pair(int(targets[i]), bool(torch.rand(1, generator=generator) < 0.5), generator)
    for i in range(n)
]
print(
    f"rejection sampling: {sum(counts) / len(counts):.2f} picks per pair on average over {n:,} pairs; "
    f"your prediction for k = 10: {expected_draws(10):.2f}"
)

# %% [markdown]
# What happens to the average as $k$ grows, and what happens when $k = 1$? Which side of the coin costs
# the most? (Your `SiameseDataset` draws from the list of fitting images instead: always one pick.)
#
# ### Question 1.3 (predict): why the coin
#
# How good is a "network" that ignores the images and always answers "different"? On **random** pairs,
# whose partner is drawn from all images, with `k` classes of equal size (and many images in each):
# what share of its answers is right? Write `always_different_accuracy(k)` returning it as a float
# (a fraction between 0 and 1, not a percentage).

# %% [exercise 1.3]

# %% [check always_different_accuracy 1]
checks.check_always_different_accuracy(always_different_accuracy)
### BEGIN HIDDEN TESTS
checks.check_always_different_accuracy(always_different_accuracy, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **Experiment.** Measure it on random pairs of Fashion-MNIST and on your balanced pairs, next to your
# prediction:

# %%
random_partners = torch.randint(len(targets), (n,), generator=generator)
random_labels = (targets[random_partners] != targets[:n]).float()  # 1 = different, as in your dataset
balanced_labels = torch.cat([pairs[i][2] for i in range(n)])
print(
    f"'always different' is right on {random_labels.mean():.1%} of random pairs (your prediction for k = 10: "
    f"{always_different_accuracy(10):.1%}) and on {balanced_labels.mean():.1%} of your balanced pairs"
)

# %% [markdown]
# ### Question 1.4 (written, graded by your instructor): why balanced pairs
#
# Lessons 5 and 6 train and measure on balanced pairs, like yours. Using the two figures you just
# measured, explain in two or three sentences (a) why a network's accuracy on **random** pairs says
# less about it than the same accuracy on balanced pairs, and (b) what goes wrong in **training** when
# most pairs are "different".

# %% [answer written_1_4 2]
# **Model answer.** (a) Nothing: on random pairs of 10 balanced classes about 90% of the pairs are
# "different", so a network that ignores the images and always answers "different" already scores 90%;
# on balanced pairs the same answer scores 50%, so every point above 50% has to be earned. (b) The
# loss is then dominated by the "push apart" term: a network lowers most of it by spreading all the
# embeddings apart, and gets only one pair in ten to learn that two images of the same class belong
# together, so it learns little about what makes two garments alike. (With margin 2, embeddings spread
# at least 2 apart cost 0.1 · 2² = 0.4 on such pairs, collapsed ones 0.9 · 2² = 3.6; on balanced pairs
# both cost 2.0: the imbalance pays the network to push everything apart.)
#
# **Rubric (2 points).** 1 point for (a): the trivial "always different" answer already scores about
# 90% (or the share of different pairs), so the figure says nothing about the images. 1 point for (b):
# the training signal is dominated by different pairs, so the network can satisfy it without learning
# similarity (pushing everything apart), or same-class pairs are too rare to learn from. Half points:
# for (a), giving the 90% (the share of different pairs) without saying that it says nothing about the
# images; for (b), naming the imbalance without saying what it does to training.

# %% [markdown]
# ## Summary
#
# - A Siamese network learns from pairs of images, each labelled **0 (same class)** or **1 (different
#   classes)**; label 1 marks the pairs the loss will push apart.
# - A fair coin per pair keeps same-class and different-class pairs balanced.
# - Rejection sampling may need many picks per pair, and never ends for one class; drawing from a list
#   of the fitting images needs one.
# - `SiameseDataset` makes a fresh pair for every image in every epoch; with a seed, the pairs are
#   reproducible.
#
# Next lesson: the convolutional network that turns one image into features.
