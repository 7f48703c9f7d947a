# %% [markdown]
# # Lesson 2: The convolutional backbone
#
# Both images of a pair go through the same network. Its first part, the **backbone**, turns a
# 28 × 28 image into a stack of small feature maps: it finds edges, then textures, then parts of
# garments (a collar, a sole, a strap). In this lesson you build it from three building blocks.
#
# **Learning goals**
#
# - know what a convolution, a ReLU and a max pooling do to a tensor, and how they change its shape;
# - compute the output size of a convolution or pooling layer from kernel size, stride and padding,
#   and choose the padding that keeps a size (exercise 2.1);
# - build the backbone of the original notebook as an `nn.Module` (exercise 2.1);
# - predict the backbone's output size for any input size (question 2.2);
# - trace the shapes 28 → 14 → 7 → 3 through it; predict a convolution's parameter count (question 2.3)
#   and count the backbone's; explain where a CNN's parameters are (question 2.4, written).

# %% [setup]

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

from data_utils.lessons import course_dataset
from data_utils.plotting import class_name, show_images

train_set = course_dataset("train")
image, label = train_set[0]
batch = image.unsqueeze(0)  # a batch of one image: [B, C, H, W] = [1, 1, 28, 28]
print("one image:", tuple(image.shape), "  as a batch:", tuple(batch.shape), f"  ({class_name(label)})")

# %% [markdown]
# PyTorch's image layers work on batches of shape `[B, C, H, W]`: batch size, channels, height,
# width. A grey image has one channel; a layer's output has one channel per filter.
#
# ## 1. Convolution
#
# A convolution slides a small grid of weights, the **kernel** (e.g. 5 × 5), over the image and, at
# every position, takes the weighted sum of the pixels under it. One kernel gives one output map,
# the **feature map**. `nn.Conv2d(in_channels, out_channels, kernel_size)` computes `out_channels`
# feature maps, each a weighted sum over the pixels of **all** input channels under the kernel, plus
# a bias.
#
# Here is a hand-made kernel that responds to vertical edges (dark on the left, bright on the right):

# %%
edge_kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
conv = nn.Conv2d(1, 1, kernel_size=3, bias=False)  # no padding: the kernel fits 26 times along 28 pixels
with torch.no_grad():
    conv.weight.copy_(edge_kernel.reshape(1, 1, 3, 3))
    edges = conv(batch)
print("input", tuple(batch.shape), "→ output", tuple(edges.shape))

fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
axes[0].imshow(batch[0, 0], cmap="gray")
axes[0].set_title("image")
limit = edges.abs().max().item()
axes[1].imshow(edges[0, 0], cmap="coolwarm", vmin=-limit, vmax=limit)  # blue negative, red positive
axes[1].set_title("vertical-edge feature map")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# In a network the kernels are not hand-made: they are learnt. The output size of a convolution
# (and of pooling) along each side is
#
# $$ \text{out} = \left\lfloor \frac{\text{in} + 2\,\text{padding} - \text{kernel}}{\text{stride}} \right\rfloor + 1 .$$
#
# Without padding a 7 × 7 kernel fits only 22 times along 28 pixels; `padding=3` adds a border of
# three zeros around the image, so the output keeps the size 28 × 28. Check both with the formula
# before you run the cell:

# %%
for padding in (0, 3):
    conv = nn.Conv2d(1, 64, kernel_size=7, stride=1, padding=padding)
    print(
        f"Conv2d(1, 64, kernel_size=7, padding={padding}): {tuple(batch.shape)} → {tuple(conv(batch).shape)}"
    )

# %% [markdown]
# ## 2. ReLU
#
# Between two convolutions there must be a non-linear function, or the two would collapse into one
# linear map. The **ReLU** (rectified linear unit) keeps positive values and sets negative ones to
# zero: $\mathrm{ReLU}(x) = \max(x, 0)$. It has no parameters and keeps the shape.

# %%
x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
print("x      :", x.tolist())
print("ReLU(x):", nn.ReLU()(x).tolist())
print("edge map: min before", round(edges.min().item(), 2), "after ReLU", nn.ReLU()(edges).min().item())

# %% [markdown]
# ## 3. Max pooling
#
# **Max pooling** with a 2 × 2 window and stride 2 keeps the largest value of every 2 × 2 block: it
# halves height and width, keeps the strongest responses, and makes the features a little tolerant
# to small shifts. No parameters either. On an odd size the last row and column are dropped
# (the formula's floor): 7 → 3.

# %%
x = torch.arange(16.0).reshape(1, 1, 4, 4)
pool = nn.MaxPool2d(2, stride=2)
print(x[0, 0])
print("max-pooled:")
print(pool(x)[0, 0])
for size in (28, 14, 7):
    print(f"{size} x {size} → {tuple(pool(torch.zeros(1, 1, size, size)).shape[-2:])}")

# %% [markdown]
# ## 4. Exercise 2.1: `CNNBackbone`
#
# Write the backbone of the original notebook as a subclass of `nn.Module`: three blocks of
# convolution (stride 1) → ReLU → 2 × 2 max pooling with stride 2. The table gives each convolution's
# channels and kernel, and the shape each layer must produce; **choose each convolution's padding**
# so that it produces that shape (the formula of section 1 tells you how).
#
# | block | convolution | its output | after ReLU and pooling |
# | --- | --- | --- | --- |
# | 1 | 1 → 64 channels, 5 × 5 kernel | `[B, 64, 28, 28]` | `[B, 64, 14, 14]` |
# | 2 | 64 → 128 channels, 5 × 5 kernel | `[B, 128, 14, 14]` | `[B, 128, 7, 7]` |
# | 3 | 128 → 256 channels, 3 × 3 kernel | `[B, 256, 7, 7]` | `[B, 256, 3, 3]` |
#
# - `CNNBackbone()` takes no arguments; `__init__` must call `super().__init__()` first, then create
#   the layers (for example in one `nn.Sequential`, stored as an attribute).
# - `forward(x)` maps a batch `[B, 1, 28, 28]` to feature maps `[B, 256, 3, 3]`.
#
# Hint: only layers stored as attributes of the module (directly or inside an `nn.Sequential`) are
# registered, so that `net.parameters()` finds them and the optimizer trains them.

# %% [exercise 2.1]

# %%
from autograder.checks import backbone as checks

# %% [check backbone_shapes 3]
checks.check_backbone_shapes(CNNBackbone)
### BEGIN HIDDEN TESTS
checks.check_backbone_shapes(CNNBackbone, hidden=True)
### END HIDDEN TESTS

# %% [check backbone_layers 3]
checks.check_backbone_layers(CNNBackbone)
### BEGIN HIDDEN TESTS
checks.check_backbone_layers(CNNBackbone, hidden=True)
### END HIDDEN TESTS

# %% [check backbone_forward 3]
checks.check_backbone_forward(CNNBackbone)
### BEGIN HIDDEN TESTS
checks.check_backbone_forward(CNNBackbone, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Question 2.2 (predict): other image sizes
#
# The backbone never mentions 28: it would run on images of any size (a convolution slides over
# whatever it gets). For a square image of side `side` (at least 8), what is the side of the feature
# maps your backbone produces? Work it out with the formula, then write `backbone_side(side)` returning
# it as an integer. Its self-check checks only that you return a number; the grader tries sides it
# draws when it grades.

# %% [exercise 2.2]

# %% [check backbone_side 2]
checks.check_backbone_side(backbone_side)
### BEGIN HIDDEN TESTS
checks.check_backbone_side(backbone_side, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now measure it, with your backbone, next to your prediction:

# %%
with torch.no_grad():
    for side in (28, 32, 45, 64):
        measured = CNNBackbone()(torch.zeros(1, 1, side, side)).shape[-1]
        print(
            f"input {side} x {side}: feature maps {measured} x {measured}, your prediction {backbone_side(side)}"
        )

# %% [markdown]
# ## 6. Shapes through your backbone
#
# A **forward hook** is a function PyTorch calls after a module's `forward`. Below, one hook on every
# layer of your backbone records the layer and its output shape, in the order the layers run, so
# this works however you arranged your layers (as long as they are modules, not `F.relu` calls).

# %%
net = CNNBackbone()
trace = []


def record_output(module, inputs, output):
    """Forward hook: remember which layer ran and its output."""
    trace.append((module.__class__.__name__, output.detach()))


layers = [m for m in net.modules() if len(list(m.children())) == 0]  # the innermost modules
handles = [m.register_forward_hook(record_output) for m in layers]
with torch.no_grad():
    features = net(batch)
for handle in handles:
    handle.remove()

print(f"{'input':<10} {tuple(batch.shape)}")
for name, output in trace:
    print(f"{name:<10} {tuple(output.shape)}")
print(f"\n28 → 14 → 7 → 3: the output has 256 · 3 · 3 = {features[0].numel()} numbers per image")

# %% [markdown]
# The side shrinks block after block, as your `backbone_side(28)` predicted, while the number of channels
# grows from 1 to 64, 128 and 256: less "where", more "what".
#
# Here are the first 16 of the 64 feature maps after the first block (the first pooling's output,
# recorded by the hooks), for an untrained backbone with random kernels: some of them already respond
# to edges and bright regions.

# %%
maps = next(output for name, output in trace if name == "MaxPool2d")  # the first pooling's output
print("after block 1:", tuple(maps.shape))
scaled = [m / m.max().clamp(min=1e-8) for m in maps[0, :16]]  # each map scaled to [0, 1] for display
show_images(scaled, [f"map {k}" for k in range(16)], ncols=8, size=1.2)
plt.show()

# %% [markdown]
# ## 7. Question 2.3 (predict): parameters
#
# The parameters of a network are what training changes. How many does a
# `Conv2d(in_channels, out_channels, kernel)` have, weights and biases together? Think about what one
# output channel computes at one position (section 1), and which of those numbers are shared by all
# positions. (ReLU and pooling have none.) Write `conv_parameters(in_channels, out_channels, kernel)`
# returning the number.

# %% [exercise 2.3]

# %% [check conv_parameters 2]
checks.check_conv_parameters(conv_parameters)
### BEGIN HIDDEN TESTS
checks.check_conv_parameters(conv_parameters, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# Now count them in your backbone, tensor by tensor, next to your prediction for its three convolutions:

# %%
predicted = sum(
    conv_parameters(c_in, c_out, k) for c_in, c_out, k in ((1, 64, 5), (64, 128, 5), (128, 256, 3))
)
for name, p in net.named_parameters():
    print(f"{name:<22} {str(tuple(p.shape)):<20} {p.numel():>9,}")
num_params = sum(p.numel() for p in net.parameters())
print(f"{'total':<43}{num_params:>9,}")
print(f"{'your prediction':<43}{predicted:>9,}")

# %% [markdown]
# ### Question 2.4 (written, graded by your instructor): where the parameters are
#
# Answer in two to four sentences, from the table you just printed: (a) which convolution holds most
# of the parameters, and why does the first one hold so few? (b) The image shrinks block after block
# while the parameters grow: why does no convolution's count depend on the image's size, and what
# in the network **would** change if the images were 56 × 56 (question 2.2)?

# %% [answer written_2_4 2]
# **Model answer.** (a) The third, `Conv2d(128, 256, 3)`: 256 · (128 · 3 · 3 + 1) = 295,168 parameters,
# ahead of the second's 204,928; each output channel has one kernel per **input** channel, and the
# first convolution has a single input channel (grey images), so 64 · (1 · 25 + 1) = 1,664. (b) A
# kernel is shared by every position of the image (that is what makes it a convolution), so its count
# is `out · (in · k² + 1)` whatever the image's size. A 56 × 56 image gives a larger output
# (256 × 7 × 7 instead of 256 × 3 × 3), so the convolutions stay as they are, but the layer that
# reads that output, the head's first fully connected layer (lesson 3), would need more inputs and
# many more weights.
#
# **Rubric (2 points).** 1 point for (a): the third convolution, with the reason that the first has
# only one input channel (naming the third convolution, or its count, without that reason: half a
# point). 1 point for (b): the kernel's weights are shared across positions (its count depends on
# channels and kernel size only), and what depends on the size is the output, hence the next layer's
# number of inputs (either half earns half a point). Also accept for the second half: four times more
# activations and computation in every layer, or a pooling that brings the output back to 3 × 3 so that
# the head is unchanged.

# %% [markdown]
# ## Summary
#
# - Convolution (with `padding` to keep the size), ReLU and 2 × 2 max pooling make one block; three
#   blocks take an image from 28 × 28 × 1 to 3 × 3 × 256.
# - Output sizes follow $\lfloor (\text{in} + 2p - k)/s \rfloor + 1$; forward hooks show them in any network.
# - The backbone has 501,760 parameters, most of them in the last two convolutions.
#
# Next lesson: the fully connected head that turns these 2,304 numbers into an embedding, and the
# Siamese network that uses one set of weights for both images.
