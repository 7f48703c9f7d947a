# %% [markdown]
# # Lesson 3: The embedding head and the Siamese network
#
# The backbone of lesson 2 gives 256 feature maps of 3 × 3 per image. A fully connected **head**
# turns them into one vector, the image's **embedding**. The Siamese network is the backbone plus the
# head, applied with *the same weights* to both images of a pair.
#
# **Learning goals**
#
# - flatten feature maps into a vector (256 · 3 · 3 = 2,304 numbers);
# - build the fully connected head of the original notebook, with its final ReLU (exercise 3.1);
# - understand why a Siamese network uses one set of weights for both images;
# - assemble the `SiameseNetwork` (exercise 3.2) and predict the parameter count of its head (question 3.3);
# - predict what the final ReLU does to embeddings (question 3.4), then see it in a small experiment,
#   and explain what it means for training (question 3.5, written).

# %% [setup]

# %% [markdown]
# This lesson uses the backbone of lesson 2. So that it does not depend on your own lesson-2 code,
# it imports the **reference solution** of lesson 2, `solutions.backbone.CNNBackbone` (it is the same
# network you wrote).

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from data_utils.lessons import course_dataset
from data_utils.plotting import class_name, show_images
from solutions.backbone import CNNBackbone  # the reference solution of lesson 2

train_set = course_dataset("train")
images = torch.stack([train_set[i][0] for i in range(8)])  # a batch of 8 images: [8, 1, 28, 28]
backbone = CNNBackbone()
with torch.no_grad():
    features = backbone(images)
print("images  ", tuple(images.shape))
print("features", tuple(features.shape))

# %% [markdown]
# ## 1. Flatten
#
# A fully connected layer (`nn.Linear`) takes a vector per example. `nn.Flatten()` keeps the batch
# dimension and joins all the others: `[B, 256, 3, 3]` → `[B, 2304]`. (`features.flatten(1)` or
# `features.view(len(features), -1)` do the same.)

# %%
flat = nn.Flatten()(features)
print(tuple(features.shape), "→", tuple(flat.shape), "  256 · 3 · 3 =", 256 * 3 * 3)
print("same numbers in the same order:", torch.equal(flat[0], features[0].reshape(-1)))

# %% [markdown]
# ## 2. The fully connected head
#
# `nn.Linear(in_features, out_features)` computes $y = W x + b$ with a weight matrix $W$ of shape
# `[out_features, in_features]` and a bias $b$: every output looks at every input. The head of the
# original notebook is
#
# Flatten → `Linear(2304, 1024)` → ReLU → `Linear(1024, 256)` → ReLU
#
# and gives a **256-dimensional embedding** per image.
#
# Note the **last ReLU**: every coordinate of an embedding is $\ge 0$ (the embeddings live in one
# "corner" of the 256-d space). It works well, and we keep it to reproduce the original; questions 3.4
# and 3.5 ask what it can cost.

# %%
linear = nn.Linear(2304, 1024)
print("weight", tuple(linear.weight.shape), " bias", tuple(linear.bias.shape))
print("output of Linear(2304, 1024) on the flat features:", tuple(linear(flat).shape))

# %% [markdown]
# ## 3. Exercise 3.1: `EmbeddingHead`
#
# Write the head as an `nn.Module`:
#
# - `EmbeddingHead(in_features=2304, embedding_dim=256)`: the layers Flatten → `Linear(in_features, 1024)`
#   → ReLU → `Linear(1024, embedding_dim)` → ReLU (the hidden size 1024 is fixed).
# - `forward(features)` maps backbone features `[B, 256, 3, 3]` to embeddings `[B, embedding_dim]`.
#
# Hint: as in lesson 2, an `nn.Sequential` stored as an attribute registers all the layers at once.

# %% [exercise 3.1]

# %%
from autograder.checks import model as checks

# %% [check head 3]
checks.check_head(EmbeddingHead)
### BEGIN HIDDEN TESTS
checks.check_head(EmbeddingHead, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 4. The Siamese idea: one network, two images
#
# To compare two images we embed both and measure the distance between the embeddings. The two
# embeddings must come from **the same function**, i.e. the same weights:
#
# - then the distance is *symmetric*: comparing a with b gives the same as comparing b with a;
# - an image compared with itself is at distance exactly 0;
# - whatever the network learns about coats from the first image of a pair, it also uses for the
#   second; and there are half as many parameters to learn.
#
# "Siamese" refers to the twins: two branches that are really one network. In code that is simply one
# backbone and one head, called once per image:
#
# ```
#           image 1 ──► backbone ──► head ──► embedding 1 ─┐
#                        (same weights)                    ├──► distance
#           image 2 ──► backbone ──► head ──► embedding 2 ─┘
# ```
#
# The original notebook calls the one-image part `forward_ind` ("individual") and lets `forward(a, b)`
# return both embeddings. We keep those names.

# %% [markdown]
# ## 5. Exercise 3.2: `SiameseNetwork`
#
# - `SiameseNetwork(embedding_dim=256)`: create **one** `CNNBackbone()` as `self.backbone` and **one**
#   `EmbeddingHead(embedding_dim=embedding_dim)` as `self.head`.
# - `forward_ind(x)`: embed one batch of images `[B, 1, 28, 28]` → `[B, embedding_dim]` (backbone, then head).
# - `forward(img1, img2)`: return the tuple `(embeddings of img1, embeddings of img2)`, both computed with
#   `forward_ind`.
#
# Do not create a second backbone or head for the second image: the check below tests that both images
# go through the same weights.
#
# The checks build your `SiameseNetwork` with a stand-in in place of your `EmbeddingHead` (Flatten, then
# a single `Linear(2304, 256)` layer), so that a mistake in exercise 3.1 does not cost you points here again.
# Use the head only by calling it, `self.head(features)`.

# %% [exercise 3.2]

# %% [check siamese_network 3]
checks.check_siamese_network(SiameseNetwork)
### BEGIN HIDDEN TESTS
checks.check_siamese_network(SiameseNetwork, hidden=True)
### END HIDDEN TESTS

# %% [check shared_weights 3]
checks.check_shared_weights(SiameseNetwork)
### BEGIN HIDDEN TESTS
checks.check_shared_weights(SiameseNetwork, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Your Siamese network
#
# ### Question 3.3 (predict): how many parameters?
#
# Before you count them in code: how many parameters (weights and biases) does a head with
# `in_features` inputs, a hidden layer of `hidden` units and `embedding_dim` outputs have? Write
# `head_parameters(in_features, hidden, embedding_dim)` returning the number. Its self-check checks
# only that you return a number; the grader tries sizes it draws when it grades.

# %% [exercise 3.3]

# %% [check head_parameters 3]
checks.check_head_parameters(head_parameters)
### BEGIN HIDDEN TESTS
checks.check_head_parameters(head_parameters, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now count the parameters of your network, part by part, next to your prediction for the head. The
# backbone has the 501,760 of lesson 2; a second copy of the weights for the second image would double
# the total.

# %%
print(f"your prediction for the head: {head_parameters(2304, 1024, 256):,}")
net = SiameseNetwork()
for name, part in net.named_children():
    print(f"{name:<10} {sum(p.numel() for p in part.parameters()):>10,}")
num_params = sum(p.numel() for p in net.parameters())
print(f"{'total':<10} {num_params:>10,}")

# %% [markdown]
# ### Question 3.4 (predict): what the last ReLU does
#
# The head ends with a ReLU, which sets every negative coordinate to exactly 0. On random features,
# what share of the embedding's coordinates will it cut? And could a **whole** embedding be 0?
# Suppose each coordinate is cut with probability `p`, independently of the others: what share of
# the embeddings of dimension `embedding_dim` would then be 0 everywhere? Write
# `all_zero_share(p, embedding_dim)` returning it as a float (a fraction between 0 and 1).

# %% [exercise 3.4]

# %% [check all_zero_share 1]
checks.check_all_zero_share(all_zero_share)
### BEGIN HIDDEN TESTS
checks.check_all_zero_share(all_zero_share, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **Experiment.** Run the head on the features of the 8 images and on 512 random inputs, and compare
# the all-zero embeddings with your prediction.

# %%
head = EmbeddingHead()
with torch.no_grad():
    embeddings = head(features)
    random_embeddings = head(torch.randn(512, 256, 3, 3))
print("embeddings", tuple(embeddings.shape), " smallest value:", embeddings.min().item())
print(f"{(embeddings == 0).float().mean():.0%} of the coordinates are exactly 0 (cut by the last ReLU)")
all_zero = (random_embeddings == 0).all(dim=1)
cut = (random_embeddings == 0).float().mean().item()
print(
    f"random inputs: {cut:.0%} of the coordinates are 0; {int(all_zero.sum())} of 512 embeddings are 0 everywhere "
    f"(your prediction for independent cuts: {512 * all_zero_share(cut, 256):.3g} of 512)"
)
with torch.no_grad():  # a last layer whose biases (-1) outweigh its pre-activations, as training can leave it
    shifted = EmbeddingHead()
    for module in shifted.modules():
        if isinstance(module, nn.Linear) and module.out_features == 256:
            module.bias.fill_(-1.0)
    shifted_embeddings = shifted(torch.randn(512, 256, 3, 3))
print(
    f"with bias -1 in the last layer: {int((shifted_embeddings == 0).all(dim=1).sum())} of 512 embeddings are 0 "
    "everywhere"
)

# %% [markdown]
# About half the coordinates are cut: a random pre-activation is as likely negative as positive. A whole
# embedding is 0 only when all 256 pre-activations are negative, which a random head hardly ever
# produces, but a head whose last layer has drifted to negative biases does.
#
# ### Question 3.5 (written, graded by your instructor): two images at distance 0
#
# Suppose training has left the head as in the last experiment, and two images of **different**
# classes both get the all-zero embedding. In two to four sentences: (a) what distance separates
# them, and what would a Siamese network decide about the pair? (b) Nudge the last layer's weights a
# little: does either embedding change? What does that mean for a loss, in the next lesson, that
# wants their distance to grow? (c) What change to the head would avoid the problem?

# %% [answer written_3_5 2]
# **Model answer.** (a) Distance exactly 0, whatever the images show: the network calls them the same,
# with the highest possible similarity. (b) No: their pre-activations are all negative, so after a small
# nudge they stay negative, the embeddings stay 0 and the loss of the pair does not change. Training
# follows the change of the loss, so this pair cannot move them apart (in lesson 4's terms: the ReLU's
# gradient is 0 for a negative input, the "dead ReLU"). Only other pairs that change the shared
# weights can bring them back. (c) End the head with a plain
# linear layer (many embedding networks do; the course keeps the original's ReLU), or use an
# activation that does not cut to exactly 0 such as a leaky ReLU.
#
# **Rubric (2 points).** 1 point for (a) and (b) together: distance 0 so "same", and the embeddings
# (hence the loss) do not respond to small changes of the weights, so training cannot separate them
# (half a point for either). "The `eps` of `pairwise_distance` pushes them apart" earns nothing for
# (b) unless it notes that the ReLU stops the push. 1 point for (c): removing the final ReLU or
# replacing it by one that keeps a slope for negative inputs (a leaky ReLU); half a point for a
# mitigation that does not remove the cause (a positive bias at the start, batch normalisation before
# the last ReLU, a smaller learning rate). Normalising the embeddings alone does not earn the point
# (an all-zero vector cannot be normalised).

# %% [markdown]
# ### Identical images, identical embeddings
#
# Feed the same batch as both images of a pair: the two embeddings are identical, so their distance
# is exactly 0. Two different images give different embeddings and a positive distance, even before
# any training, unless both embeddings are 0 everywhere as in the experiment above. (In the figure, each
# image on the top row is compared with the one below it.)

# %% [demo]
torch.manual_seed(0)
net = SiameseNetwork()
with torch.no_grad():
    out1, out2 = net(images, images)
    print("embeddings of a pair:", tuple(out1.shape), tuple(out2.shape))
    print("same images → identical embeddings:", torch.equal(out1, out2))
    print("distances:", torch.linalg.vector_norm(out1 - out2, dim=1).tolist())

    a, b = net(images[:4], images[4:])
    distances = torch.linalg.vector_norm(a - b, dim=1)
show_images(list(images[:4]) + list(images[4:]), [class_name(train_set[i][1]) for i in range(8)], ncols=4)
plt.show()
for i in range(4):
    print(
        f"{class_name(train_set[i][1]):>12} vs {class_name(train_set[i + 4][1]):<12} distance {distances[i]:.4f}"
    )

# %% [markdown]
# These distances mean nothing yet: the network is untrained. The next lesson writes the loss that
# teaches it to make same-class distances small and different-class distances large.
#
# ## Summary
#
# - Flatten turns `[B, 256, 3, 3]` into `[B, 2304]`; the head maps that to a 256-d embedding, non-negative
#   because of its last ReLU, which can also make a whole embedding 0.
# - A linear layer's parameters are its weight matrix and its bias; the whole network has 3,124,480,
#   exactly as the original.
# - A Siamese network is one backbone and one head applied to both images: a symmetric comparison, and
#   3,124,480 parameters instead of twice as many.
# - `forward_ind(x)` embeds one batch; `forward(img1, img2)` embeds both images of each pair.
