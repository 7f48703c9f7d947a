"""Attacks from inside the kernel, graded for real: no trick changes a verdict, the reference is no answer.

One class is graded in one run of ``python -m autograder grade`` (from a private copy of the course,
as in ``test_run_robust.py``), most students lesson 4 only. Every trickster hands in the same wrong loss (it
ignores its ``margin`` argument: it fails only ``loss_margin_argument``, 1 of lesson 4's 18 autograded points)
plus one trick that worked on the in-kernel checks: a display hook's number, the checks' failure function patched
through frames or ``gc``, ``torch.allclose`` and friends patched under an alias, fake ``[PASS]`` lines,
``print``/``sys.stdout`` replaced, exception and display hooks, a record of answers saved at home
replayed. Each must score exactly the wrong loss's 17; ``test_the_tricks_fool_a_judge_in_the_kernel``
shows that the tricks are real, by fooling the same checks when they decide in the student's kernel. Every
delegating student hands in a loss that
uses the reference (or the checks) in one way or another: each scores 0 with the note that says so.
A correct student scores 18 in the same run. And for each lesson whose checks have a judge side (2 to 7), two
students build the exercise on one of the checks' helpers (reached through ``__wrapped__`` by a computed name, or
with the probe guard switched off): each scores what a student who leaves the exercise blank scores, with the note.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from helpers.grading import (
    FULL_SCORE,
    LESSON,
    LOSS_CELLS,
    POINTS,
    append_to_exercise,
    cell_with_id,
    grade,
    lesson_score,
    needs_isolation,
    replace_once,
    rewrite_exercise,
)

from autograder.checks import loss as loss_checks
from autograder.checks import transcript
from solutions.loss import contrastive_loss as reference_loss

BUG_OLD, BUG_NEW = "torch.clamp(margin - d", "torch.clamp(2.0 - d"  # the margin argument is ignored
BUGGY_SCORE = FULL_SCORE - POINTS["loss_margin_argument"]  # the one property the bug breaks
# Exercise 4.1's test cells score 0; the rest of the lesson (exercises 4.2, 4.3, questions 4.4, 4.5) is solved.
OTHER_EXERCISES_SCORE = FULL_SCORE - sum(POINTS[grade_id] for grade_id in LOSS_CELLS.split(", "))

WRAP = """
_inner = contrastive_loss


def contrastive_loss(*args, **kwargs):
    {trick}
    return _inner(*args, **kwargs)
"""

DISPLAYHOOK = (
    WRAP.format(trick='import sys; sys.displayhook("20.0")') + "\nimport sys\nsys.displayhook(20.0)\n"
)

FRAMES = WRAP.format(
    trick="""import inspect
    frame = inspect.currentframe()
    while frame is not None:  # every checks module that called this loss gets a fail() that never fails
        if "fail" in frame.f_globals and "run_student" in frame.f_globals:
            frame.f_globals["fail"] = lambda *a, **k: None
            frame.f_globals["close"] = lambda *a, **k: True
        frame = frame.f_back"""
)

GC = WRAP.format(
    trick="""import gc
    noop = (lambda *a, **k: None).__code__
    for obj in gc.get_objects():
        if type(obj).__name__ == "function" and (getattr(obj, "__module__", None) or "").startswith("autograder") \\
                and obj.__name__ in ("fail", "close", "max_error"):
            obj.__code__ = noop if obj.__name__ == "fail" else (lambda *a, **k: True).__code__"""
)

ALIASES = """
import builtins
import math
import torch as T
builtins.abs = lambda x: 0.0  # every "abs(value - expected) <= allowed" of the checks holds
from torch import testing as TT
T.allclose = lambda *a, **k: True
T.isclose = lambda a, b, *x, **k: T.ones_like(T.as_tensor(a), dtype=T.bool)
T.equal = lambda *a, **k: True
T.Tensor.__ne__ = lambda self, other: T.zeros_like(self, dtype=T.bool)
TT.assert_close = lambda *a, **k: None
math.isfinite = lambda x: True
"""

FAKE_PASS = """
import builtins, io, sys
print("[PASS] contrastive_loss: values match a plain loop\\n" * 3)
_inner = contrastive_loss


def contrastive_loss(*args, **kwargs):
    print("[PASS] contrastive_loss: gradients match the reference's, and the margin argument is honoured")
    return _inner(*args, **kwargs)


builtins.print = lambda *a, **k: sys.__stdout__.write("[PASS] printed\\n")
sys.stdout = io.StringIO()
sys.stderr = io.StringIO()
"""

HOOKS = """
import sys
sys.excepthook = lambda *a: None
shell = get_ipython()
shell.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: print("[PASS] all good"))
shell.events.register("post_run_cell", lambda result: print("[PASS] after the cell"))
shell.display_formatter.formatters["text/plain"].for_type(type(None), lambda *a: "20")
"""

REPLAY = """
import json
import IPython.display as shown
SAVED = json.loads({saved!r})  # the margin check's answers, recorded at home where the reference is installed
MIME = "{mime}"
_display = shown.display


def display(obj, *args, **kwargs):
    if (isinstance(obj, dict) and isinstance(obj.get(MIME), dict)
            and obj[MIME].get("check") == "check_loss_margin_argument"):
        obj = dict(obj, **{{MIME: dict(obj[MIME], answers=SAVED[str(obj[MIME]["hidden"])])}})
    return _display(obj, *args, **kwargs)


shown.display = display
"""

TRICKS = {
    "t_displayhook": DISPLAYHOOK,
    "t_frames": FRAMES,
    "t_gc": GC,
    "t_aliases": ALIASES,
    "t_fake_pass": FAKE_PASS,
    "t_hooks": HOOKS,
}

DELEGATIONS = {
    "d_import": ("from solutions.loss import contrastive_loss", "solutions.loss.contrastive_loss"),
    "d_wraps": (
        """
import functools
import solutions.loss


@functools.wraps(solutions.loss.contrastive_loss)
def contrastive_loss(out1, out2, label, margin=2.0):
    return solutions.loss.contrastive_loss(out1, out2, label, margin)
""",
        "solutions.loss.contrastive_loss",
    ),
    "d_subclass": (
        """
import solutions.loss


class MyLoss(solutions.loss.ContrastiveLoss):
    pass


def contrastive_loss(out1, out2, label, margin=2.0):
    return MyLoss(margin)(out1, out2, label)
""",
        "solutions.loss.ContrastiveLoss",
    ),
    "d_dynamic": (
        """
import importlib
_module = importlib.import_module("solu" + "tions.loss")


def contrastive_loss(out1, out2, label, margin=2.0):
    return getattr(_module, "contrastive" + "_loss")(out1, out2, label, margin)
""",
        "solutions.loss.contrastive_loss",
    ),
    "d_exec_file": (
        """
import importlib.util
_namespace = {"__name__": "copied"}
exec(open(importlib.util.find_spec("solu" + "tions.loss").origin).read(), _namespace)
contrastive_loss = _namespace["contrastive" + "_loss"]
""",
        "solutions.loss.contrastive_loss",
    ),
    "d_other_module": (
        """
import importlib
_train = importlib.import_module("solu" + "tions.train")


def contrastive_loss(out1, out2, label, margin=2.0):
    return _train.contrastive_loss(out1, out2, label, margin)
""",
        "solutions.loss.contrastive_loss",
    ),
    "d_modules_scan": (
        """
import importlib
import sys


def contrastive_loss(out1, out2, label, margin=2.0):
    importlib.import_module("solu" + "tions.loss")
    for name, module in list(sys.modules.items()):
        if name.startswith("solu") and "contrastive_loss" in getattr(module, "__dict__", {}):
            return module.__dict__["contrastive_loss"](out1, out2, label, margin)
""",
        "solutions.loss.contrastive_loss",
    ),
    "d_checks_dynamic": (
        """
import importlib


def contrastive_loss(out1, out2, label, margin=2.0):
    helper = getattr(importlib.import_module("autogr" + "ader.checks.loss"), "loop" + "_loss")
    return torch.tensor(helper(out1, out2, label, margin), dtype=out1.dtype)
""",
        "autograder.checks.loss.loop_loss",
    ),
    "d_checks": (
        """
from autograder.checks.loss import loop_loss


def contrastive_loss(out1, out2, label, margin=2.0):
    return torch.tensor(loop_loss(out1, out2, label, margin), dtype=out1.dtype)
""",
        "autograder.checks.loss.loop_loss",
    ),
}


# ---------------------------------------------------------------- the checks' judge side as an answer (lessons 2-7)

#: How an exercise reaches a helper of the checks: through ``__wrapped__`` past the probe guard, by a name built at
#: run time; or directly, with the probe guard switched off around the call (the transcript told it is judging).
REACH = {
    "wrapped": """
import importlib
_checks = importlib.import_module("auto" + "grader.checks.{module}")


def _helper(name, *args):
    return getattr(_checks, name).__wrapped__(*args)
""",
    "guard_off": """
import importlib
_checks = importlib.import_module("auto" + "grader.checks.{module}")
_transcript = importlib.import_module("auto" + "grader.checks.transcript")


def _helper(name, *args):
    record = _transcript.current()
    before = record.replaying if record is not None else None
    if record is not None:
        record.replaying = True  # probing() is now false: the guard lets the helper run
    try:
        return getattr(_checks, name)(*args)
    finally:
        if record is not None:
            record.replaying = before
""",
}

#: lesson → (the exercise, its checks module, an answer built on one of the checks' helpers)
JUDGE_SIDE_ANSWERS = {
    "02_cnn_backbone": (
        "exercise_2_1",
        "backbone",
        """
from torch import nn


class CNNBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(1, 64, 5, padding=2), nn.Conv2d(64, 128, 5, padding=2),
                                    nn.Conv2d(128, 256, 3, padding=1)])
        self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(2, 2)

    def forward(self, x):
        params = [p for conv in self.convs for p in (conv.weight, conv.bias)]
        return _helper("reference" + "_forward", x, params)
""",
    ),
    "03_embedding_head": (
        "exercise_3_1",
        "model",
        """
from torch import nn


class EmbeddingHead(nn.Module):
    def __init__(self, embedding_dim=256):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2304, 1024), nn.Linear(1024, embedding_dim)

    def forward(self, x):
        return _helper("_head" + "_forward", x, [self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias])
""",
    ),
    "04_contrastive_loss": (
        "exercise_4_1",
        "loss",
        """
import torch


def contrastive_loss(out1, out2, label, margin=2.0):
    if label.numel() != out1.shape[0]:
        raise ValueError("expected one label per pair")
    value = _helper("loop" + "_loss", out1, out2, label, margin)
    return torch.tensor(value, dtype=out1.dtype) + 0.0 * (out1.sum() + out2.sum())
""",
    ),
    "05_training_loop": (
        "exercise_5_2",
        "train",
        """
def train_one_epoch(net, loader, optimizer, device, margin=2.0, log_every=10):
    batches = [(a.to(device), b.to(device), y.to(device)) for a, b, y in loader]
    return _helper("_reference" + "_loop", net, batches, optimizer, margin, log_every)
""",
    ),
    "06_evaluation": (
        "exercise_6_3",
        "evaluate",
        """
import torch


def roc_auc(distances, pair_labels):
    labels = torch.as_tensor(pair_labels)
    if bool(labels.min() == labels.max()):
        raise ValueError("roc_auc needs pairs of both kinds")
    return _helper("pairwise" + "_auc", torch.as_tensor(distances), labels)
""",
    ),
    "07_one_shot": (
        "exercise_7_2",
        "oneshot",
        """
import torch


def episode_accuracies(embeddings, episodes):
    found = _helper("loop" + "_accuracies", embeddings, episodes.support, episodes.query)
    return torch.tensor(found, dtype=torch.float32)
""",
    ),
}
JUDGE_SIDE_STUDENTS = {
    f"j{lesson[:2]}_{way}": (lesson, way) for lesson in JUDGE_SIDE_ANSWERS for way in REACH
}


def blank_exercise(nb, lesson: str, grade_id: str) -> None:
    """Put the released stub of one exercise back: the student who leaves it blank."""
    from helpers import REPO

    released = nbformat.read(REPO / "lessons" / f"{lesson}.ipynb", as_version=4)
    cell_with_id(nb, grade_id).source = cell_with_id(released, grade_id).source


def make_judge_side_class(subs, solved) -> None:
    """For each lesson with a judge side: both ways of reaching it, and a control who leaves the exercise blank."""

    def write(student: str, lesson: str, nb) -> None:
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / f"{lesson}.ipynb")

    for lesson, (grade_id, _, _) in JUDGE_SIDE_ANSWERS.items():
        nb = nbformat.read(solved / f"{lesson}.ipynb", as_version=4)
        blank_exercise(nb, lesson, grade_id)
        write(f"blank_{lesson[:2]}", lesson, nb)
    for student, (lesson, way) in JUDGE_SIDE_STUDENTS.items():
        grade_id, module, answer = JUDGE_SIDE_ANSWERS[lesson]
        nb = nbformat.read(solved / f"{lesson}.ipynb", as_version=4)
        rewrite_exercise(nb, grade_id, REACH[way].format(module=module) + answer)
        write(student, lesson, nb)


def saved_answers() -> str:
    """What the margin check records with the reference on the self-check's inputs (seed 0), as JSON."""
    saved = {}
    for hidden in (False, True):
        record = transcript.Transcript(0)
        with transcript.running(record):
            loss_checks.check_loss_margin_argument(reference_loss, hidden=hidden)
        saved[str(hidden)] = record.answers
    return json.dumps(saved)


def make_class(subs, solved) -> None:
    """Write one folder per student: the tricksters, the delegators, a correct and a buggy control."""

    def write(student: str, nb) -> None:
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / f"{LESSON}.ipynb")

    def buggy():
        nb = nbformat.read(solved / f"{LESSON}.ipynb", as_version=4)
        replace_once(cell_with_id(nb, "exercise_4_1"), BUG_OLD, BUG_NEW)
        return nb

    write("correct", nbformat.read(solved / f"{LESSON}.ipynb", as_version=4))
    write("buggy", buggy())
    tricks = dict(TRICKS, t_replay=REPLAY.format(saved=saved_answers(), mime=transcript.TRANSCRIPT_MIME))
    for student, code in tricks.items():
        nb = buggy()
        append_to_exercise(nb, code)
        write(student, nb)
    for student, (code, _) in DELEGATIONS.items():
        nb = nbformat.read(solved / f"{LESSON}.ipynb", as_version=4)
        rewrite_exercise(nb, "exercise_4_1", "import torch\n" + code)
        write(student, nb)


@pytest.fixture(scope="module")
def attack_class(workspace):
    """The class graded in one run (--jobs 2)."""
    root, code, solved = workspace
    subs, out = root / "judge-attacks", root / "judge-attacks-out"
    make_class(subs, solved)
    make_judge_side_class(subs, solved)
    # No endless loop here: nbgrader's own 30 s per cell (not the robust class's 10 s), so that a slow machine's
    # lessons 5 and 6 finish every cell whatever its speed.
    run = grade(code, subs, out, "--cell-timeout", "30")
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    return run


@needs_isolation
@pytest.mark.slow
def test_the_controls_score_as_they_should(attack_class):
    assert lesson_score(attack_class.rows["correct"]) == FULL_SCORE, attack_class.rows["correct"]
    assert lesson_score(attack_class.rows["buggy"]) == BUGGY_SCORE, attack_class.rows["buggy"]


@needs_isolation
@pytest.mark.slow
@pytest.mark.parametrize("student", sorted([*TRICKS, "t_replay"]))
def test_a_trick_scores_exactly_what_its_wrong_answer_scores(attack_class, student):
    row = attack_class.rows[student]
    # The aliases trick replaces builtins.abs in its own kernel, which also breaks its solved question 4.4
    # (|1 - 4·lr|·d): that question's point is lost by the student's own code, not by the grader.
    expected = BUGGY_SCORE - 1 if student == "t_aliases" else BUGGY_SCORE
    assert lesson_score(row) == expected, row


@needs_isolation
@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(DELEGATIONS))
def test_an_exercise_that_uses_the_reference_scores_0_with_a_note(attack_class, student):
    row = attack_class.rows[student]
    _, name = DELEGATIONS[student]
    assert lesson_score(row) == OTHER_EXERCISES_SCORE, (
        row
    )  # exercise 4.1's cells score 0, the solved 4.2-4.5 stay
    assert "exercise 4.1 uses the" in row["notes"] and name in row["notes"], row["notes"]


@needs_isolation
@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(JUDGE_SIDE_STUDENTS))
def test_an_exercise_that_reaches_the_checks_judge_side_scores_as_left_blank(attack_class, student):
    """The checks' expected values are no answer: an exercise built on them scores what its blank control scores,
    and the notes say what it used."""
    lesson, _ = JUDGE_SIDE_STUDENTS[student]
    row, blank = attack_class.rows[student], attack_class.rows[f"blank_{lesson[:2]}"]
    assert lesson_score(row, lesson) == lesson_score(blank, lesson), (row, blank)
    exercise = JUDGE_SIDE_ANSWERS[lesson][0].removeprefix("exercise_").replace("_", ".")
    assert f"exercise {exercise} uses the course's checks (autograder.checks." in row["notes"], row["notes"]


# t_aliases is left out: its patched abs() fools the checks of values, but not the margin check's guard that a pair
# inside the margin costs more than 0 (a float comparison it cannot patch). It stays in the graded corpus above.
IN_KERNEL_TRICKS = ["t_frames", "t_gc", "t_hooks"]


def self_checked(code: str | None, tmp_path) -> nbformat.NotebookNode:
    """The buggy lesson 4 (plus ``code``) run as a student runs it, the checks deciding in the kernel, up to the
    margin check (the cell the tests read: no later cell can change its outputs)."""
    from nbclient import NotebookClient

    from autograder.build import build_all, solved_notebook
    from autograder.grading.course import put_environment_on_path

    nb = solved_notebook(next(lesson.source for lesson in build_all([LESSON])))
    replace_once(cell_with_id(nb, "exercise_4_1"), BUG_OLD, BUG_NEW)
    if code:
        append_to_exercise(nb, code)
    # The margin experiment below it calls the loss 600 times: each call of a trick that scans the garbage
    # collector's objects costs tens of seconds there, for outputs no test reads.
    nb.cells = nb.cells[: nb.cells.index(cell_with_id(nb, "loss_margin_argument")) + 1]
    put_environment_on_path()
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    return nb


@pytest.mark.slow
def test_the_wrong_loss_fails_the_margin_check_in_the_kernel(tmp_path, monkeypatch):
    """Without a trick, the self-check in the kernel catches the wrong loss (the baseline of the test below)."""
    monkeypatch.setenv("SIAMESE_COURSE_QUICK", "1")
    honest = cell_with_id(self_checked(None, tmp_path), "loss_margin_argument")
    assert any(o.output_type == "error" for o in honest.outputs)


@pytest.mark.slow
@pytest.mark.parametrize("student", IN_KERNEL_TRICKS)
def test_the_tricks_fool_a_judge_in_the_kernel(student, tmp_path, monkeypatch):
    """Deciding in the student's kernel, the margin check passes the wrong loss once the trick is in: the tricks
    are real, and only a judge outside the kernel resists them."""
    monkeypatch.setenv("SIAMESE_COURSE_QUICK", "1")
    tricked = cell_with_id(self_checked(TRICKS[student], tmp_path), "loss_margin_argument")
    assert not any(o.output_type == "error" for o in tricked.outputs), tricked.outputs
    assert "[PASS]" in "".join(o.get("text", "") for o in tricked.outputs)
