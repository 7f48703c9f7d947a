# %% [markdown]
# # Lesson 5: The training loop
#
# You have the pieces: pairs (lesson 1), the Siamese network (lessons 2 and 3) and the contrastive loss
# (lesson 4). Training repeats one small recipe thousands of times: take a batch of pairs, compute the
# loss, compute its gradient, and nudge every weight a little against it. This lesson writes that loop
# and runs it, on a GPU when there is one.
#
# **Learning goals**
#
# - choose the device (a CUDA GPU if present, else the CPU) and move the network and the batches to it;
# - know the three steps of every PyTorch update, `zero_grad()`, `backward()`, `step()`, and predict
#   what happens when one is forgotten (question 5.3 and its experiment);
# - design a function that trains the Siamese network for one epoch and logs its loss (exercise 5.2),
#   and predict how long that log will be (question 5.4);
# - train the Siamese network, plot its loss history, judge whether it has finished learning
#   (question 5.5, written) and save the trained weights.

# %% [setup]

# %%
import math
import os
import time
from collections.abc import Iterable

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from data_utils.lessons import course_dataset

# %% [markdown]
# ## 1. Devices
#
# A tensor lives on a **device**: the CPU, or a GPU (PyTorch calls NVIDIA GPUs `cuda`). An operation
# needs all its tensors on the same device, and a GPU trains this network tens of times faster than
# the two CPU cores of a free Colab machine.
#
# In Colab you get a GPU with **Runtime > Change runtime type > T4 GPU** (this restarts the runtime,
# so run the notebook again from the top). Without one everything still works, only slower: good
# code **never assumes** a GPU (no `assert torch.cuda.is_available()`, no hard-coded `"cuda"`), it
# uses one when it is there.

# %%
print("CUDA GPU available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("GPU:", torch.cuda.get_device_name(0))
else:
    print("No GPU: this notebook runs on the CPU (in Colab: Runtime > Change runtime type > T4 GPU).")

x = torch.ones(3)
print("a new tensor lives on", x.device)

# %% [markdown]
# ## 2. Exercise 5.1: `get_device`
#
# Write `get_device()`, returning the `torch.device` to train on: the fastest one this runtime has.
# That is a CUDA GPU when there is one; on a Mac it is Apple's GPU, which PyTorch calls `"mps"`; and
# the CPU everywhere else. The cell above shows how PyTorch answers the CUDA question; find in the
# documentation of `torch.backends.mps` how it answers the Apple one. The check simulates all four
# situations (GPU or not, Mac or not), so the function must decide, not assume.

# %% [exercise 5.1]

# %%
from autograder.checks import train as checks

# %% [check get_device 2]
checks.check_get_device(get_device)
### BEGIN HIDDEN TESTS
checks.check_get_device(get_device, hidden=True)
### END HIDDEN TESTS

# %%
device = get_device()
print("training device:", device)

# %% [markdown]
# The network's weights go to the device once, with `net.to(device)`, which moves the module in place.
# Each batch comes from the `DataLoader` on the CPU and must be moved too; for a tensor, `.to(device)`
# returns a tensor on the device (a copy, unless it was there already) and leaves the original where it
# was, so keep the result: `img1 = img1.to(device)`.

# %%
layer = nn.Linear(2, 1).to(device)
batch = torch.randn(4, 2)
batch = batch.to(device)  # without this line: "Expected all tensors to be on the same device"
print("output on", layer(batch).device)

# %% [markdown]
# ## 3. One update: `zero_grad`, `backward`, `step`
#
# An **optimizer** holds the network's parameters and updates them from their gradients. Every
# training step does, in this order:
#
# 1. **forward**: compute the outputs and the loss of the batch;
# 2. `optimizer.zero_grad()`: clear the gradients of the previous step;
# 3. `loss.backward()`: compute the gradient of the loss with respect to every parameter (stored in `p.grad`);
# 4. `optimizer.step()`: update every parameter with its gradient.
#
# Step 2 matters because `backward()` **adds** to `p.grad` instead of overwriting it:

# %%
w = torch.tensor(1.0, requires_grad=True)
for step in range(3):
    loss = (3 * w) ** 2  # d(loss)/dw = 18 w = 18 at w = 1
    loss.backward()
    print(
        f"after backward() number {step + 1}: w.grad = {w.grad.item()}  (without zero_grad it keeps growing)"
    )

# %% [markdown]
# The four steps on a problem with one weight: the loss $(a\,w)^2$ with $a = 3$, smallest at $w = 0$,
# and plain gradient descent (SGD), which sets $w \leftarrow w - \text{lr} \cdot \partial L / \partial w$:

# %%
w = torch.tensor(1.0, requires_grad=True)
optimizer = torch.optim.SGD([w], lr=0.05)
loss = (3 * w) ** 2  # 1. forward
optimizer.zero_grad()  # 2. clear old gradients
loss.backward()  # 3. new gradient: 18 w = 18
optimizer.step()  # 4. w = 1 - 0.05 * 18
print(f"after one step: w = {w.item():.3f}")

# %% [markdown]
# Two more habits:
#
# - `net.train()` at the start of training puts the network in training mode (layers such as dropout
#   and batch normalisation behave differently in training and evaluation; our network has none, but
#   the habit costs nothing and lesson 6 switches back with `net.eval()`);
# - `loss.item()` turns a 0-d tensor into a Python float. Logging it every step would force the GPU to
#   wait for each result; the original notebook logs the batch loss **every 10 steps**, and so do we
#   (a shortened run on a CPU may log more often, so that its shorter curve still has enough points).
#
# ## 4. Exercise 5.2: `train_one_epoch`
#
# Now design the loop for the Siamese network. Write
# `train_one_epoch(net, loader, optimizer, device, margin=2.0, log_every=10)`, which trains `net` for
# one pass over `loader` and returns the epoch's **loss history**. What the checks hold it to:
#
# - `loader` yields batches `(img1, img2, label)` **on the CPU**, as the `DataLoader` over lesson 1's
#   pair dataset does (images `[B, 1, 28, 28]`, labels `[B, 1]`); `net` is already on `device`;
# - every batch is one update of `optimizer` on that batch's contrastive loss (lesson 4, with
#   `margin`) of the embeddings `net` gives the batch's two images;
# - `net` is in training mode during the epoch, whatever mode it was in before;
# - the history is a list of Python floats: the batch loss of the steps numbered 0, `log_every`,
#   `2 * log_every`, ... (counting the epoch's steps from 0), each measured at that step, before its
#   update.
#
# Before you write it, decide: which tensors must move to `device`, and which need not? Where in the
# four steps of section 3 does the pair enter? And how do you know which step you are at?
# `contrastive_loss` is imported below from the reference solution of lesson 4, `solutions.loss`, so
# this lesson does not depend on your lesson-4 code.

# %%
from solutions.loss import contrastive_loss  # the reference solution of lesson 4

# %% [exercise 5.2]

# %% [check train_history 4]
checks.check_train_history(train_one_epoch)
### BEGIN HIDDEN TESTS
checks.check_train_history(train_one_epoch, hidden=True)
### END HIDDEN TESTS

# %% [check train_step 4]
checks.check_train_step(train_one_epoch)
### BEGIN HIDDEN TESTS
checks.check_train_step(train_one_epoch, hidden=True)
### END HIDDEN TESTS

# %% [check train_learns 4]
checks.check_train_learns(train_one_epoch)
### BEGIN HIDDEN TESTS
checks.check_train_learns(train_one_epoch, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Question 5.3 (predict): forgetting `zero_grad()`
#
# What if a training loop forgot `optimizer.zero_grad()`? Take the one-weight problem of section 3
# and run its four steps twice, but without step 2. Starting from weight `w`, with the loss $(a\,w)^2$
# and learning rate `lr`, what is the weight after the **second** step?
# Work it out on paper first: what is in `w.grad` when the second `step()` runs?
#
# Write `weight_without_zero_grad(a, w, lr)` returning that weight as a float. Its self-check checks
# the form of your answers only; the grader checks them on values it draws when it grades, and its
# feedback explains the answer.

# %% [exercise 5.3]

# %% [check weight_without_zero_grad 2]
checks.check_weight_without_zero_grad(weight_without_zero_grad)
### BEGIN HIDDEN TESTS
checks.check_weight_without_zero_grad(weight_without_zero_grad, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# **Experiment.** Run two steps without `zero_grad()` and compare with your prediction; then watch 30
# steps with and without it on the same problem.


# %%
def sgd_weights(a: float, w_start: float, lr: float, steps: int, clear_gradients: bool) -> list[float]:
    """The weight after each of `steps` SGD steps on the loss (a w)², with or without zero_grad()."""
    w = torch.tensor(w_start, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=lr)
    weights = []
    for _ in range(steps):
        loss = (a * w) ** 2
        if clear_gradients:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        weights.append(w.item())
    return weights


print(
    f"two steps without zero_grad: measured w = {sgd_weights(3.0, 1.0, 0.05, 2, False)[-1]:.4f}, "
    f"your prediction {weight_without_zero_grad(3.0, 1.0, 0.05):.4f}"
)
with_zero_grad, without_zero_grad = (
    sgd_weights(3.0, 1.0, 0.05, 30, True),
    sgd_weights(3.0, 1.0, 0.05, 30, False),
)
for step in (0, 1, 2, 5, 10, 20, 29):
    print(
        f"step {step + 1:2d}: w = {with_zero_grad[step]:+.4f} with zero_grad, {without_zero_grad[step]:+.4f} without"
    )

# %% [markdown]
# With `zero_grad()` the weight shrinks towards 0 by the same factor every step. Without it, every step
# also pushes with all the earlier gradients, and the weight swings past 0 and back. Which optimizer
# does the forgotten `zero_grad()` turn SGD into, roughly, and why does a real network trained this way
# usually diverge instead of swinging? (Hint: how large does the stored gradient grow after 1,000
# steps in the same direction?)

# %% [markdown]
# ## 6. Question 5.4 (predict): how long is the loss history?
#
# An epoch over `num_pairs` pairs in batches of `batch_size` (the `DataLoader` keeps a last, smaller
# batch when they do not divide evenly), with your function logging every `log_every` steps: how
# many losses does your `train_one_epoch` return? Write `logged_losses(num_pairs, batch_size,
# log_every)` returning that number. The training run below prints its answer next to the length
# of the history your function returned.

# %% [exercise 5.4]

# %% [check logged_losses 2]
checks.check_logged_losses(logged_losses)
### BEGIN HIDDEN TESTS
checks.check_logged_losses(logged_losses, hidden=True)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. Training the Siamese network
#
# Now the real thing, with the settings of the original notebook: the network of lesson 3
# (`solutions.model.SiameseNetwork`, the reference solution), the pair dataset of lesson 1
# (`solutions.data.SiameseDataset`), Adam with learning rate `lr = 1e-5`, batches of 64 pairs,
# shuffled, 5 epochs. One change: the original trains on all 60,000 training images; we set aside a
# fixed twelfth of them, 5,000 images the network never sees, as a **validation set**
# (`data_utils.splits`). Lesson 6 chooses its decision threshold on them.
#
# **How long?** One epoch is 55,000 pairs (860 steps). On a Colab GPU 5 epochs take a few minutes;
# on a CPU, from about 10 minutes to more than an hour. So without a GPU the notebook trains a
# **shortened run of about 3 minutes**: your `train_one_epoch` trains the first 100 steps (you see your
# own loop at work), then the reference's **fast loop** (section 10) continues the same network with
# the same optimizer on all 55,000 training images for the rest of the 3 minutes. (On a CPU the fast
# loop does 1.5 to 4 times as many steps in the same time, and a network learns only from steps.) The
# cell below times a few fast steps to size the run. The network learns less than in the 5-epoch
# run, so lesson 6's figures land lower than the reference's. While the notebook is graded or tested
# it runs a tiny run on synthetic data instead.
#
# Two details of the cell: `DataLoader(..., num_workers=k)` prepares batches in `k` background
# processes; the original used 8, but a free Colab machine has 2 cores, so we use at most 2 (0 for the
# tiny runs). And the `tqdm` progress bar is left out of the tiny runs: it writes to stderr, which
# nbgrader scores as an error.

# %%
from solutions.data import SiameseDataset
from solutions.model import SiameseNetwork
from solutions.plots import plot_loss_history
from solutions.runtime import AMP_DTYPES, resolve_precision, set_seed

lr = 1e-5
batch_size = 64
log_every = 10

train_set = course_dataset("train")  # the training images, less the 5,000 validation images
if QUICK:
    num_epochs, num_images, num_workers = 1, min(len(train_set), 128), 0  # two steps: every line runs
    log_every = 1  # a tiny run has only a few steps: log every one of them
    print(f"QUICK run (grading or testing): {num_epochs} epoch on {num_images} synthetic images.")
elif device.type != "cpu":
    num_epochs, num_images, num_workers = 5, len(train_set), min(2, os.cpu_count() or 1)
    print(f"Full run on {device}: {num_epochs} epochs on {num_images:,} images, as the original.")
else:
    from solutions.benchmark import fast_pipeline

    CPU_SECONDS = 180  # the whole CPU run: your loop's 100 steps, then the fast loop
    num_epochs, num_images, num_workers = 1, min(len(train_set), 6_400), min(2, os.cpu_count() or 1)
    precision = resolve_precision("auto", device)  # bf16 where the CPU computes it natively, else fp32
    timer = fast_pipeline(
        train_set.data[:2_048],
        torch.as_tensor(train_set.targets)[:2_048],
        device,
        batch_size,
        lr,
        2.0,
        precision,
    )
    timer(3)  # warm-up: the first steps choose kernels and fill caches, and are slower
    fast_steps_per_s = timer(20) / batch_size
    # Log every 1, 2, 4, 5 or 10 steps (divisors of your loop's 100, so the two parts line up),
    # the most that still gives about 100 points over the whole run.
    log_every = max(d for d in (1, 2, 4, 5, 10) if d == 1 or CPU_SECONDS * fast_steps_per_s >= 100 * d)
    print(
        f"SHORTENED run: no GPU, so about {CPU_SECONDS // 60} minutes instead of 5 epochs on "
        f"{len(train_set):,} images (10-60+ minutes on a CPU): your loop for 1 epoch on the first "
        f"{num_images:,} images, then the fast loop ({precision}, {fast_steps_per_s:.1f} steps/s measured "
        f"now) on all {len(train_set):,}. Loss logged every {log_every} steps.\n"
        "For the full run, switch to a GPU (Runtime > Change runtime type) and run the notebook again."
    )

set_seed(0)
pairs = SiameseDataset(Subset(train_set, range(num_images)))
loader = DataLoader(pairs, batch_size=batch_size, shuffle=True, num_workers=num_workers)
net = SiameseNetwork().to(device)
optimizer = torch.optim.Adam(net.parameters(), lr=lr)
steps_per_epoch = len(loader)
print(f"{steps_per_epoch} steps per epoch")

# %% [markdown]
# The training loop over epochs calls your `train_one_epoch` once per epoch and keeps the whole loss
# history. (The `Subset` of the first images is itself a dataset; `SiameseDataset` draws partners
# among those images only.)

# %%
use_progress_bar = not QUICK  # never while grading: tqdm writes to stderr
if use_progress_bar:
    from tqdm.auto import tqdm

loss_history = []
started = time.perf_counter()
for epoch in range(num_epochs):
    batches = (
        tqdm(loader, desc=f"epoch {epoch + 1}/{num_epochs}", leave=False) if use_progress_bar else loader
    )
    logged = train_one_epoch(net, batches, optimizer, device, margin=2.0, log_every=log_every)
    loss_history.extend(logged)
    print(
        f"epoch {epoch + 1}/{num_epochs}: mean logged loss {sum(logged) / len(logged):.4f} "
        f"({time.perf_counter() - started:.0f} s so far); {len(logged)} losses logged, your question 5.4 "
        f"predicted {logged_losses(len(pairs), batch_size, log_every)}"
    )

# %% [markdown]
# On a CPU, the fast loop now continues for the rest of the 3 minutes (on a GPU, and while grading,
# this cell does nothing). It trains the same `net` with the same `optimizer`; `take_steps` hands it
# batches of pairs from all 55,000 training images, as many as the measured speed allows, and stops early
# if the machine slows down and time runs out. From here on an epoch is 55,000 pairs again.

# %%
if device.type == "cpu" and not QUICK:
    from solutions.fast import TensorPairLoader, fast_train_one_epoch, take_steps
    from solutions.runtime import make_progress

    fast_loader = TensorPairLoader(
        train_set.data, torch.as_tensor(train_set.targets), batch_size, device, seed=0
    )
    net.to(memory_format=torch.channels_last)  # the layout the fast loop's batches have: faster convolutions
    time_left = max(CPU_SECONDS - (time.perf_counter() - started), 10)  # a few steps even on a slow machine
    fast_steps = max(1, int(time_left * fast_steps_per_s))
    batches = take_steps(fast_loader, fast_steps, deadline=time.perf_counter() + time_left)
    progress = make_progress(fast_steps, "fast loop")
    logged = fast_train_one_epoch(
        net, batches, optimizer, log_every=log_every, amp_dtype=AMP_DTYPES[precision], progress=progress
    )
    progress.close()
    loss_history.extend(logged)
    steps_per_epoch = len(fast_loader)  # mark the epochs of 55,000 pairs on the plot
    steps_done = (
        len(logged) * log_every
    )  # one logged loss every log_every steps (the bar may be switched off)
    print(
        f"fast loop: about {steps_done} steps, mean logged loss {sum(logged) / len(logged):.4f}, last logged "
        f"{logged[-1]:.4f}; about {num_images + steps_done * batch_size:,} pairs in "
        f"{time.perf_counter() - started:.0f} s"
    )

# %% [markdown]
# ## 8. The loss history
#
# The loss of the original notebook starts near 2.1, drops below 0.6 within about 300 steps and ends
# its 5th epoch around 0.32. The logged values jump around, because each is the loss of one batch of
# 64 random pairs; the trend is what counts.

# %%
plot_loss_history(loss_history, steps_per_epoch=steps_per_epoch, log_every=log_every)
plt.show()

# %% [markdown]
# ### Question 5.5 (written, graded by your instructor): is it done?
#
# Look at your loss curve and at the original's (2.1 at the start, 0.32 after 5 epochs). In two to
# four sentences: (a) has the network finished learning, and how can you tell from the curve despite
# its jumps? (b) Which one change to the recipe would you try first to reach a lower loss with the
# same number of steps, and (c) which figure, other than the training loss, would you watch to know
# that the change really helped?

# %% [answer written_5_5 2]
# **Model answer.** (a) No: the trend (a running mean over the jumps, which come from each logged value
# being one batch of 64 random pairs) is still going down at the end, so more steps would lower it
# further. (b) A larger learning rate, tried first at 10× (1e-4): Adam at `lr = 1e-5` takes tiny
# steps. Watch for the signs of a step too large: a loss stuck near 2.0 (a collapsed network, lesson
# 4) or all-zero embeddings (question 3.5). (More epochs would help too, but not with the same number
# of steps.) (c) The verification accuracy (or the
# loss) on the **validation** pairs of lesson 6: the training loss can also fall because the network
# fits its own training images, and only pairs it was not trained on show whether it got better at
# telling new images apart.
#
# **Rubric (2 points).** 1 point for (a): a judgement read from the trend (a by-eye running mean, or
# the mean of each epoch), not from single values; "still falling, but more slowly" is the expected
# reading. Half a point for a judgement with no way of reading past the jumps. 1 point for (b) and (c)
# together: a sensible change (learning rate, schedule, a larger batch, removing the final ReLU) and a
# held-out figure to judge it (half a point each). "More epochs" does not earn the half point of (b),
# since the question keeps the number of steps; nor does a change that only rescales the loss (a
# smaller margin), unless (c) notes that the losses are then not comparable.

# %% [markdown]
# ## 9. Saving the weights
#
# `net.state_dict()` is a dictionary of all the weights; `torch.save` writes it to a file, and
# lesson 6 loads it back into a fresh `SiameseNetwork` to evaluate it. In Colab every notebook runs
# in a runtime of its own, and its files vanish with it: so the cell below saves the weights to your
# Google Drive (`MyDrive/siamese-course/siamese.pt`; Colab asks once for permission), where lesson 6
# finds them. On your own machine the file is `siamese.pt` in the lessons' folder. (While the
# notebook is graded nothing is saved.)

# %%
from data_utils.lessons import checkpoint_path, file_digest, grading

if grading():
    print("grading: the weights are not saved")
else:
    CHECKPOINT_PATH = checkpoint_path()
    torch.save(net.state_dict(), CHECKPOINT_PATH)
    print(f"saved the trained weights to {CHECKPOINT_PATH} (sha256 {file_digest(CHECKPOINT_PATH)})")

# %% [markdown]
# ## 10. Optional: going faster
#
# The loop above is the original notebook's, and it is slow for two reasons you can fix in a few lines
# without changing what is computed:
#
# 1. **One forward pass for both images.** The backbone and head are shared, so embedding `img1` and
#    `img2` separately does the same work as embedding `torch.cat([img1, img2])` once and splitting the
#    result with `.chunk(2)`. One batch of 128 keeps the processor busier than two batches of 64, and
#    launches half as many operations.
# 2. **Mixed precision.** Inside `torch.autocast`, convolutions and matrix products run in a 16-bit
#    format (bf16, or fp16 on older GPUs such as Colab's T4) while the weights and the loss stay in
#    fp32. GPUs (and recent CPUs) compute 16-bit products several times faster. fp16 needs a
#    `GradScaler`, because its small gradients would otherwise round to zero; bf16 does not.
#
# The cell below times a few steps of each on your runtime. (The fast loop also keeps the whole data
# set on the device and draws pairs by tensor indexing, instead of building each pair in Python.)

# %% [demo]
from solutions.fast import make_scaler
from solutions.runtime import resolve_precision


def time_steps(step, num_steps: int) -> float:
    """Pairs per second of `num_steps` calls of `step()`, after one warm-up call."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(num_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return num_steps * batch[0].shape[0] / (time.perf_counter() - started)


speed_net = SiameseNetwork().to(device)
speed_optimizer = torch.optim.Adam(speed_net.parameters(), lr=1e-5)
batch = [t.to(device) for t in next(iter(DataLoader(SiameseDataset(train_set), batch_size=64, shuffle=True)))]
precision = resolve_precision("auto", device)  # bf16 or fp16 where the hardware has it, else fp32
amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
scaler = make_scaler(device, precision)


def two_passes_fp32() -> None:
    train_one_epoch(speed_net, [batch], speed_optimizer, device)  # your loop on one batch: two passes, fp32


def one_pass_mixed() -> None:
    img1, img2, label = batch
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        out1, out2 = speed_net.forward_ind(torch.cat([img1, img2])).chunk(2)  # one pass for both
    loss = contrastive_loss(out1.float(), out2.float(), label)
    speed_optimizer.zero_grad()
    scaler.scale(loss).backward()  # a no-op scaler unless fp16
    scaler.step(speed_optimizer)
    scaler.update()


num_steps = 2 if QUICK else 20
before = time_steps(two_passes_fp32, num_steps)
after = time_steps(one_pass_mixed, num_steps)
print(f"your loop: two passes, fp32 : {before:8.0f} pairs/s")
print(f"one pass, {precision:<4} autocast     : {after:8.0f} pairs/s   ({after / before:.1f}x)")

# %% [markdown]
# On a 2-core CPU the gain is about 2x (bf16 helps only where the processor has bf16 instructions);
# on a GPU it is larger. The reference run's figures are in the course README.

# %% [markdown]
# ## Summary
#
# - Pick the device with `get_device()`; move the network once with `net.to(device)` and every batch
#   with `x = x.to(device)`.
# - Each step: forward, `zero_grad()`, `backward()`, `step()`; log `loss.item()` only every few steps.
# - `DataLoader(num_workers=...)` should not exceed the machine's cores (2 on Colab).
# - Save the trained weights with `torch.save(net.state_dict(), path)`.
#
# Next lesson: how good is the trained network? Similarity scores, a decision threshold, and the ROC curve.
