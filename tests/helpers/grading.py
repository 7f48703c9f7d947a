"""What the grading tests share: lesson 4 as the cheap lesson, notebook edits, and the grader run from a copy.

The grading runs from a private copy of the course's code (a git repository of its own): hostile
notebooks overwrite files of the installed ``autograder`` package, and the grader's repair writes
them back. Run against the working tree, that repair would also undo the edits of anyone working on
``autograder/`` while a test runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder.grading.sandbox import availability
from autograder.syllabus import CORE
from autograder.syllabus import NAMES as LESSONS

from . import REPO, autograded_points, awaiting, isolation_args, lesson_points, read_grades, subprocess_env

LESSON = "04_contrastive_loss"  # the cheapest lesson to grade (no data, no network): most cases use it alone
OTHERS = [lesson for lesson in LESSONS if lesson != LESSON]
# the status part of a student who handed in lesson 4 only (a missing bonus lesson is no problem)
MISSING = f"no notebook for {', '.join(lesson for lesson in OTHERS if lesson in CORE)}"
# ... who handed in lesson 4 only, its written answer written (the solved notebook's model answer): it awaits grading
WROTE = f"{MISSING}; {awaiting(1)}"
# 240 s per notebook: the endless loop's 8 test cells and the 5 teaching cells that call the loss each run out
# their 10 s (130 s in all) well before the notebook's limit.
LIMITS = ["--notebook-timeout", "240", "--cell-timeout", "10", "--memory-mb", "8192"]
RUN_TIMEOUT_S = 1800
PACKAGES = ("autograder", "solutions", "data_utils")
ISOLATED, WHY_NOT_ISOLATED = availability()  # kernels run under bubblewrap where it can be built
needs_isolation = pytest.mark.skipif(
    not ISOLATED and not os.environ.get("SIAMESE_REQUIRE_SANDBOX"),
    reason=f"no sandbox on this machine: {WHY_NOT_ISOLATED}",
)


# ---------------------------------------------------------------- notebooks


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata ({} if none)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def cell_with_id(nb, grade_id: str):
    """The cell of ``nb`` whose nbgrader grade_id is ``grade_id``."""
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


def replace_once(cell, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in one cell; fail if ``old`` is not there exactly once (no silent no-op)."""
    assert cell.source.count(old) == 1, f"{old!r} found {cell.source.count(old)} times in {cell.source!r}"
    cell.source = cell.source.replace(old, new)


def rewrite_exercise(nb, grade_id: str, code: str) -> None:
    """Replace an exercise cell's code, keeping its first line (the "# Exercise N.M" comment) and its metadata."""
    cell = cell_with_id(nb, grade_id)
    first = cell.source.split("\n", 1)[0]
    assert first.startswith("# Exercise "), first
    cell.source = first + "\n" + code.strip("\n")


def append_to_exercise(nb, code: str, grade_id: str = "exercise_4_1") -> None:
    """Add ``code`` at the end of an exercise cell (after the student's definitions)."""
    cell = cell_with_id(nb, grade_id)
    cell.source = cell.source.rstrip("\n") + "\n\n" + code.strip("\n")


# ---------------------------------------------------------------- scores

# Lesson 4's autograded points (its written answer is graded by hand) and each test cell's.
FULL_SCORE, POINTS = autograded_points(LESSON), lesson_points(LESSON)
BUGGY_SCORE = FULL_SCORE - POINTS["loss_gradients"] - POINTS["loss_gradient_at_zero"]
LOSS_CELLS = (
    "loss_similar_pairs, loss_hinge, loss_beyond_margin, loss_margin_argument, loss_label_shapes, "
    "loss_label_count, loss_gradients, loss_gradient_at_zero"
)
# A correct course: the total counts the core lessons; every written answer, the bonus lesson's too, awaits grading.
COURSE_SCORE = sum(autograded_points(lesson) for lesson in CORE)
COURSE_STATUS = awaiting(sum(len(lesson_points(lesson, "answer")) for lesson in LESSONS))


# ---------------------------------------------------------------- running the grader from a private copy


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its output."""
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def copy_course(root: Path) -> Path:
    """A copy of the course's code and lessons, committed to a git repository of its own."""
    for name in (*PACKAGES, "lessons"):
        shutil.copytree(
            REPO / name,
            root / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"),
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / ".gitignore").write_text("__pycache__/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the course as the test found it")
    return root


def course_env(code: Path, **extra) -> dict[str, str]:
    """The environment of a grading run: the course imported from ``code``, not from the working tree."""
    env = subprocess_env(**extra)
    env["PYTHONPATH"] = str(code)  # first on sys.path, before the editable install's finder
    return env


@dataclass
class Run:
    """One finished grading run."""

    process: subprocess.CompletedProcess
    seconds: float
    rows: dict[str, dict[str, str]]


def grade(code: Path, submissions: Path, out: Path, *options: str, jobs: int = 2) -> Run:
    """Run ``python -m autograder grade`` from the copy ``code``; return the process, its time and grades.csv."""
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(submissions),
        "--out",
        str(out),
        "--jobs",
        str(jobs),
        *LIMITS,
        *options,
        *isolation_args(),
    ]
    started = time.perf_counter()
    process = subprocess.run(
        command, cwd=out.parent, env=course_env(code), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    seconds = time.perf_counter() - started
    rows = read_grades(out / "grades.csv") if (out / "grades.csv").is_file() else {}
    return Run(process, seconds, rows)


def lesson_score(row: dict[str, str], lesson: str = LESSON) -> float | None:
    """A row's score of one lesson (None if empty)."""
    return float(row[lesson]) if row[lesson] else None


# ---------------------------------------------------------------- a PostgreSQL gradebook (tests/grading/conftest.py)

PG_URL_ENV = "SIAMESE_TEST_PG_URL"  # set by `make test` (its `postgres` target starts the server)
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:55432/siamese_test"  # where `make postgres` puts it
