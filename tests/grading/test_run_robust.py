"""Grading that never lets an instructor down: a hostile class graded in one run of ``python -m autograder grade``.

Every student is one case: cells that raise or write to stderr, endless loops, kernel deaths, tampering
with the tests, the checks or the gradebook, damaged files. The run must finish, give every student a
row with the right status, score every correct submission 100, and never let a student raise their
own grade or touch another's. A second run after late submissions grades only what changed.

The grading runs from a private copy of the course's code (a git repository of its own): hostile
notebooks overwrite files of the installed ``autograder`` package, and the grader's repair writes
them back. Run against the working tree, that repair would also undo the edits of anyone working on
``autograder/`` while the test runs.

Kernels run under bubblewrap (``autograder.grading.sandbox``); a smaller class is graded with
``--isolation off`` so that the grader's own defences are tested on their own. The exploit class
attacks the sandbox itself: mounts, the network, forged results, other students' files, memory
through forks, many processes, huge outputs, a process left running. Two more runs:
students exploiting holes of the sandbox found while this test was first written, and a small class
graded into a PostgreSQL gradebook (``--db-url``; the server comes from ``make postgres``, see
``SIAMESE_TEST_PG_URL``; skipped, saying why, without one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from helpers import REPO, isolation_args, read_grades
from helpers.grading import (
    BUGGY_SCORE,
    COURSE_SCORE,
    COURSE_STATUS,
    DEFAULT_PG_URL,
    FULL_SCORE,
    ISOLATED,
    LESSON,
    LIMITS,
    LOSS_CELLS,
    MISSING,
    OTHERS,
    PACKAGES,
    PG_URL_ENV,
    POINTS,
    RUN_TIMEOUT_S,
    WROTE,
    append_to_exercise,
    cell_with_id,
    copy_course,
    course_env,
    git,
    grade,
    lesson_score,
    nbgrader_meta,
    needs_isolation,
    replace_once,
    rewrite_exercise,
)

from autograder.grading import sandbox
from autograder.grading.demo_class import colab_text
from autograder.grading.run import MAX_PROCESSES
from autograder.syllabus import CORE
from autograder.syllabus import NAMES as LESSONS

# ---------------------------------------------------------------- notebooks


def insert_plain_cells(nb, *sources: str, before: str = "exercise_4_1") -> None:
    """Insert plain (non-graded) code cells just before the cell ``before``."""
    at = nb.cells.index(cell_with_id(nb, before))
    for k, source in enumerate(sources):
        nb.cells.insert(at + k, nbformat.v4.new_code_cell(source.strip("\n")))


def graded_points(nb) -> dict[str, float]:
    """grade_id → points of a notebook's graded cells."""
    return {
        nbgrader_meta(c)["grade_id"]: nbgrader_meta(c)["points"]
        for c in nb.cells
        if nbgrader_meta(c).get("grade")
    }


# ---------------------------------------------------------------- the cases

# The bug every tampering student hides: the loss is detached from the graph. It fails only the two gradient
# checks, so "buggy" (BUGGY_SCORE) differs from both "cheated" (FULL_SCORE) and "graded nothing" (0).
BUG_OLD, BUG_NEW = "min=0).pow(2))", "min=0).pow(2)).detach()"

NOISY_EXERCISE = """
import sys
import warnings


def contrastive_loss(out1, out2, label, margin=2.0):
    print("computing the loss", file=sys.stderr)  # a checked function writing to stderr...
    warnings.warn("a warning from inside contrastive_loss")  # ...and warning: the checks hide both
    y = label.reshape(-1).to(out1.dtype)
    if y.shape[0] != out1.shape[0]:
        raise ValueError("one label per pair")
    d = F.pairwise_distance(out1, out2)
    return torch.mean((1 - y) * d.pow(2) + y * torch.clamp(margin - d, min=0).pow(2))


print("contrastive_loss defined", file=sys.stderr)
warnings.warn("a warning at the top of the exercise cell")
"a non-numeric last value"
"""

ENDLESS_EXERCISE = """
def contrastive_loss(out1, out2, label, margin=2.0):
    while True:
        pass
"""

ACTIVE_CONTENT = """
from IPython.display import HTML, Javascript, display
display(HTML("<script>alert('PWN-html')</script>"))
display(Javascript("alert('PWN-javascript')"))
"""

REDEFINE_CHECKS = """
import autograder.checks.loss as L
L.check_loss_gradients = lambda *args, **kwargs: print("[PASS] the loss can be differentiated")
for name in [name for name in dir(L) if name.startswith("check_")]:
    setattr(L, name, L.check_loss_gradients)
"""

FAKE_MODULE = """
import os, sys
with open("autograder.py", "w") as f:
    f.write("class loss:\\n"
            "    @staticmethod\\n"
            "    def check_loss_gradients(*args, **kwargs):\\n"
            "        print('[PASS] faked')\\n"
            "    check_loss_similar_pairs = check_loss_hinge = check_loss_beyond_margin = check_loss_gradients\\n"
            "    check_loss_margin_argument = check_loss_label_shapes = check_loss_gradients\\n"
            "    check_loss_label_count = check_loss_gradients\\n")
sys.path.insert(0, os.getcwd())
"""

PATCH_REPORT = """
import autograder.checks.report as R
R.failure = lambda *args, **kwargs: AssertionError("never raised")
R.fail = lambda *args, **kwargs: None
R.close = lambda *args, **kwargs: True
"""

EDIT_GRADEBOOK = """
import os, sqlite3
here = os.getcwd()
while True:
    candidate = os.path.join(here, "gradebook.db")
    if os.path.isfile(candidate):
        db = sqlite3.connect(candidate)
        db.execute("UPDATE grade_cells SET max_score = 1000")
        db.execute("UPDATE grade SET manual_score = 1000")
        db.execute("DELETE FROM comment")
        db.commit()
        db.close()
        break
    if os.path.dirname(here) == here:
        break
    here = os.path.dirname(here)
"""

OVERWRITE_PACKAGE = """
import autograder.checks.loss as L
with open(L.__file__, "a") as f:
    f.write("\\n\\ndef check_loss_gradients(*args, **kwargs):\\n    print('[PASS] faked by a student')\\n")
"""

# Right on every visible case (all float32), twice too large in float64, which only hidden cases use: the cell's
# hidden part (restored by nbgrader, run at grading) is what finds it, in loss_similar_pairs and loss_hinge (3 + 3).
HIDDEN_ONLY_BUG = """
_right_in_float32 = contrastive_loss


def contrastive_loss(out1, out2, label, margin=2.0):
    return _right_in_float32(out1, out2, label, margin) * (2 if out1.dtype == torch.float64 else 1)
"""

HIDE_TRACEBACKS = """
get_ipython().showtraceback = lambda *args, **kwargs: None
"""


@dataclass
class Case:
    """One student: what they hand in, and what grades.csv must say about them."""

    what: str
    score: float | None  # lesson 4's score (None: not graded)
    status: str | re.Pattern = WROTE  # exact status, or a pattern it must match
    notes: list[str] = field(default_factory=list)  # substrings the notes must contain
    total: float | None = None  # for students with several lessons


CASES: dict[str, Case] = {
    # correct submissions
    "solved": Case("every lesson solved", None, COURSE_STATUS, total=COURSE_SCORE),
    "colab": Case(
        "every lesson solved, saved by Colab (nbformat 4.0, 'Copy of ...')",
        None,
        COURSE_STATUS,
        total=COURSE_SCORE,
    ),
    "buggy": Case("lesson 4 with the bug the tampering students hide (control)", BUGGY_SCORE),
    "hidden_only_bug": Case(
        "a loss wrong only where the hidden tests look (float64)",
        FULL_SCORE - POINTS["loss_similar_pairs"] - POINTS["loss_hinge"],
    ),
    # noise
    "noisy_plain": Case("plain cells that raise, write to stderr, warn, end with a string", FULL_SCORE),
    "noisy_exercise": Case(
        "exercise cell and function writing stderr and warning, ending with a string", FULL_SCORE
    ),
    "raising_exercise": Case("exercise cell that raises after the definition", FULL_SCORE),
    # time
    "endless_loop": Case(
        "`while True: pass` in contrastive_loss: each of its graded cells is interrupted at the "
        "cell timeout (CellTimeoutError in the feedback); exercises 4.2-4.5 still score",
        sum(
            POINTS[name]
            for name in (
                "loss_gradient_by_hand",
                "numerical_gradient",
                "distance_after_step",
                "collapsed_loss",
            )
        ),
        notes=[f"{LESSON}: test cells {LOSS_CELLS} were stopped at the time limit for one cell; scored 0"],
    ),
    "slow_cell": Case("a plain cell sleeping past the cell timeout", FULL_SCORE),
    # kernel death
    "os_exit": Case(
        "os._exit(1) in the exercise cell",
        None,
        re.compile(rf"{LESSON} not graded: kernel died in cell \d+ \(exercise_4_1\); {MISSING}"),
        notes=["review: exercise code uses os._exit"],
    ),
    "sys_exit": Case(
        "sys.exit() in the exercise cell (IPython reports SystemExit as an error)",
        FULL_SCORE,
        notes=["review: exercise code uses sys.exit"],
    ),
    "segfault": Case(
        "ctypes.string_at(0) in the exercise cell",
        None,
        re.compile(rf"{LESSON} not graded: kernel died in cell \d+ \(exercise_4_1\); {MISSING}"),
        notes=["review: exercise code uses ctypes"],
    ),
    "memory_hog": Case("bytearray(20 GiB) in the exercise cell (--memory-mb 8192: MemoryError)", FULL_SCORE),
    # tampering: the bug stays, the grade must stay at the bug's score
    "edited_test": Case("graded test cell replaced with `pass`", BUGGY_SCORE),
    "deleted_test": Case(
        "graded test cell deleted (nbgrader adds its copy back)",
        BUGGY_SCORE,
        notes=[f"{LESSON}: test cells loss_gradients deleted"],
    ),
    "redefined_check": Case(
        "exercise cell redefines the check functions",
        BUGGY_SCORE,
        notes=["review: exercise code uses autograder"],
    ),
    "fake_module": Case(
        "exercise cell writes autograder.py next to the notebook",
        BUGGY_SCORE,
        notes=["review: exercise code uses", "autograder", "open("],
    ),
    "patched_report": Case(
        "exercise cell monkey-patches autograder.checks.report",
        BUGGY_SCORE,
        notes=["review: exercise code uses autograder"],
    ),
    "gradebook_editor": Case(
        "exercise cell edits the gradebook.db it finds above its folder (its sandbox's)",
        BUGGY_SCORE,
        notes=["review: exercise code uses", "gradebook"],
    ),
    "package_overwriter": (
        Case(
            "exercise cell appends a fake check to autograder/loss.py (read-only in the sandbox: OSError)",
            BUGGY_SCORE,
            notes=["review: exercise code uses", "autograder"],
        )
        if ISOLATED
        else Case(
            "exercise cell appends a fake check to autograder/loss.py",
            None,
            re.compile(
                rf"{LESSON} not graded: the notebook changed the grader's own files "
                rf"\(loss\.py\); they were restored; {MISSING}"
            ),
            notes=["review: exercise code uses", "autograder"],
        )
    ),
    "hidden_tracebacks": Case(
        "showtraceback silenced, with the bug (nbgrader records the error of the reply)",
        BUGGY_SCORE,
        notes=["review: exercise code uses get_ipython, showtraceback"],
    ),
    # structural damage
    "duplicated": Case(
        "a graded cell duplicated (same grade_id)",
        FULL_SCORE,
        notes=[f"{LESSON}: duplicated cells loss_gradients"],
    ),
    "deleted_cells": Case("markdown and plain cells deleted", FULL_SCORE),
    "stripped": Case(
        "metadata.nbgrader stripped from every cell",
        FULL_SCORE,
        notes=[f"{LESSON}: restored stripped nbgrader metadata"],
    ),
    "retyped": Case(
        "a graded cell turned into markdown",
        FULL_SCORE,
        notes=[f"{LESSON}: turned cells loss_gradients back into code cells"],
    ),
    "renamed": Case("'Copy of 04_contrastive_loss (3).ipynb'", FULL_SCORE),
    "two_files": Case(
        "two files for lesson 4: the older buggy, the newer solved",
        FULL_SCORE,
        notes=[f"2 files for {LESSON}; graded the newest, two_files/{LESSON} (1).ipynb"],
    ),
    "empty_file": Case(
        "an empty file", None, f"{LESSON} not graded: {LESSON}.ipynb is an empty file; {MISSING}"
    ),
    "invalid_json": Case(
        "a truncated JSON file",
        None,
        re.compile(rf"{LESSON} not graded: {LESSON}\.ipynb is not a readable notebook \(\w+\); {MISSING}"),
    ),
    "stray_file": Case(
        "solved lesson 4 and notes.txt",
        FULL_SCORE,
        notes=["ignored stray_file/notes.txt (not a lesson notebook)"],
    ),
    "grader_metadata": Case(
        "the grader's own cell metadata key set to text on a test cell (it once crashed the judge)",
        FULL_SCORE,
        notes=[f"{LESSON}: removed the grader's own metadata (siamese) from 1 cells"],
    ),
    "invalid_cell_ids": Case(
        "cell ids nbformat refuses: 65 characters, and a space (nbgrader refused the whole notebook)",
        FULL_SCORE,
        notes=[f"{LESSON}: gave 2 cells a new id"],
    ),
    "active_content": Case(
        "HTML and JavaScript that would run in formgrader: a script output, a JavaScript output, a markdown cell "
        "with an onerror image",
        FULL_SCORE,
        notes=[f"{LESSON}: made 2 cells safe to open in a browser"],
    ),
    "unreadable_exercise": Case(
        "a 60,000-term sum in exercise 4.5's cell: ast.parse raises RecursionError (it once killed the worker)",
        FULL_SCORE - POINTS["collapsed_loss"],
        notes=[f"{LESSON}: exercise 4.5 is nested too deeply for the grader to read what it uses"],
    ),
}

TAMPERING = [
    "edited_test",
    "deleted_test",
    "redefined_check",
    "fake_module",
    "patched_report",
    "gradebook_editor",
    "hidden_tracebacks",
]


@dataclass
class Corpus:
    """Where the hostile class is written, and the solved notebooks its students start from."""

    subs: Path
    solved: Path

    def solved_nb(self, lesson: str = LESSON) -> nbformat.NotebookNode:
        """A fresh copy of a solved lesson."""
        return nbformat.read(self.solved / f"{lesson}.ipynb", as_version=4)

    def buggy_nb(self) -> nbformat.NotebookNode:
        """Lesson 4 with the bug every tampering student hides."""
        nb = self.solved_nb()
        replace_once(cell_with_id(nb, "exercise_4_1"), BUG_OLD, BUG_NEW)
        return nb

    def put(self, student: str, nb: nbformat.NotebookNode, name: str = f"{LESSON}.ipynb") -> Path:
        """Hand in ``nb`` as ``student``'s file ``name``."""
        path = self.subs / student / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        return path

    def put_text(self, student: str, name: str, text: str) -> Path:
        """Hand in ``text`` as ``student``'s file ``name``."""
        path = self.subs / student / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def make_corpus(subs: Path, solved: Path) -> None:
    """Write one sub-folder per student of CASES under ``subs``."""
    corpus = Corpus(subs, solved)
    write_correct_and_noisy(corpus)
    write_time_and_kernel_deaths(corpus)
    write_tampering(corpus)
    write_damaged_files(corpus)


def write_correct_and_noisy(corpus: Corpus) -> None:
    """Correct submissions, Colab's copies, and notebooks that raise, print to stderr or warn."""
    for lesson in LESSONS:
        corpus.put("solved", corpus.solved_nb(lesson), f"{lesson}.ipynb")
        corpus.put_text(
            "colab",
            f"Copy of {lesson}.ipynb",
            colab_text(corpus.solved_nb(lesson), f"Copy of {lesson}.ipynb"),
        )
    corpus.put("buggy", corpus.buggy_nb())
    nb = corpus.solved_nb()
    append_to_exercise(nb, HIDDEN_ONLY_BUG)
    corpus.put("hidden_only_bug", nb)

    nb = corpus.solved_nb()
    insert_plain_cells(
        nb,
        'raise RuntimeError("a plain cell that raises")',
        'import sys\nprint("a plain cell writing to stderr", file=sys.stderr)',
        'import warnings\nwarnings.warn("a plain cell that warns")',
        '"a plain cell ending with a string"',
    )
    corpus.put("noisy_plain", nb)
    nb = corpus.solved_nb()
    rewrite_exercise(nb, "exercise_4_1", NOISY_EXERCISE)
    corpus.put("noisy_exercise", nb)
    nb = corpus.solved_nb()
    append_to_exercise(nb, 'raise RuntimeError("the student left a raise below the definition")')
    corpus.put("raising_exercise", nb)


def write_time_and_kernel_deaths(corpus: Corpus) -> None:
    """Endless loops, slow cells, and kernels that exit, crash or run out of memory."""
    nb = corpus.solved_nb()
    rewrite_exercise(nb, "exercise_4_1", ENDLESS_EXERCISE)
    corpus.put("endless_loop", nb)
    nb = corpus.solved_nb()
    insert_plain_cells(nb, "import time\ntime.sleep(25)  # the cell timeout is 10 s")
    corpus.put("slow_cell", nb)

    for student, code in (
        ("os_exit", "import os\nos._exit(1)"),
        ("sys_exit", "import sys\nsys.exit()"),
        ("segfault", "import ctypes\nctypes.string_at(0)"),
        ("memory_hog", "hog = bytearray(20 * 2**30)"),
    ):
        nb = corpus.solved_nb()
        append_to_exercise(nb, code)
        corpus.put(student, nb)


def write_tampering(corpus: Corpus) -> None:
    """Students who edit, delete or outwit the tests, the checks or the gradebook (all with the bug)."""
    nb = corpus.buggy_nb()
    cell_with_id(nb, "loss_gradients").source = "pass"
    corpus.put("edited_test", nb)
    nb = corpus.buggy_nb()
    nb.cells.remove(cell_with_id(nb, "loss_gradients"))
    corpus.put("deleted_test", nb)
    for student, code in (
        ("redefined_check", REDEFINE_CHECKS),
        ("fake_module", FAKE_MODULE),
        ("patched_report", PATCH_REPORT),
        ("gradebook_editor", EDIT_GRADEBOOK),
        ("package_overwriter", OVERWRITE_PACKAGE),
        ("hidden_tracebacks", HIDE_TRACEBACKS),
    ):
        nb = corpus.buggy_nb()
        append_to_exercise(nb, code)
        corpus.put(student, nb)


def write_damaged_files(corpus: Corpus) -> None:
    """Duplicated, deleted, stripped and retyped cells, odd file names, and files that are no notebook."""
    nb = corpus.solved_nb()
    original = cell_with_id(nb, "loss_gradients")
    copy = nbformat.from_dict(json.loads(json.dumps(original)))
    copy["id"] = "copied-test-cell"
    nb.cells.insert(nb.cells.index(original) + 1, copy)
    corpus.put("duplicated", nb)
    nb = corpus.solved_nb()
    keep = {"setup", *graded_points(nb)}  # and every exercise, and the cell of imports the exercises use
    nb.cells = [
        c
        for c in nb.cells
        if nbgrader_meta(c).get("grade_id") in keep
        or str(nbgrader_meta(c).get("grade_id", "")).startswith("exercise_")
        or "\nimport torch\n" in c.source
    ]
    corpus.put("deleted_cells", nb)
    nb = corpus.solved_nb()
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    corpus.put("stripped", nb)
    nb = corpus.solved_nb()
    graded = cell_with_id(nb, "loss_gradients")
    markdown = nbformat.v4.new_markdown_cell(graded.source, metadata=graded.metadata)
    markdown["id"] = graded["id"]
    nb.cells[nb.cells.index(graded)] = markdown
    corpus.put("retyped", nb)
    corpus.put("renamed", corpus.solved_nb(), f"Copy of {LESSON} (3).ipynb")
    older = corpus.put("two_files", corpus.buggy_nb())
    newer = corpus.put("two_files", corpus.solved_nb(), f"{LESSON} (1).ipynb")
    os.utime(older, (time.time() - 3600, time.time() - 3600))
    os.utime(newer, (time.time() - 60, time.time() - 60))
    corpus.put_text("empty_file", f"{LESSON}.ipynb", "")
    corpus.put_text("invalid_json", f"{LESSON}.ipynb", (corpus.solved / f"{LESSON}.ipynb").read_text()[:3000])
    corpus.put("stray_file", corpus.solved_nb())
    corpus.put_text("stray_file", "notes.txt", "my notes for lesson 4\n")
    nb = corpus.solved_nb()
    cell_with_id(nb, "loss_similar_pairs").metadata["siamese"] = "x"
    corpus.put("grader_metadata", nb)
    nb = corpus.solved_nb()
    cell_with_id(nb, "exercise_4_1")["id"] = "a" * 65
    cell_with_id(nb, "loss_hinge")["id"] = "my test"
    corpus.put_text(
        "invalid_cell_ids", f"{LESSON}.ipynb", json.dumps(nb)
    )  # as an editor saves it, unvalidated
    nb = corpus.solved_nb()
    insert_plain_cells(nb, ACTIVE_CONTENT)
    nb.cells.append(nbformat.v4.new_markdown_cell("My notes <img src=x onerror=\"alert('PWN-markdown')\">"))
    corpus.put("active_content", nb)
    nb = corpus.solved_nb()
    cell_with_id(nb, "exercise_4_5").source += "\n\n_total = 1" + " + 1" * 60_000 + "\n"
    corpus.put("unreadable_exercise", nb)


# ---------------------------------------------------------------- running the grader from a private copy


def gradebook_scores(db_url: str, students: list[str]) -> dict[str, dict[str, float]]:
    """student → lesson → score, as the gradebook of record holds them."""
    from nbgrader.api import Gradebook, MissingEntry

    scores: dict[str, dict[str, float]] = {}
    with Gradebook(db_url) as gradebook:
        for student in students:
            scores[student] = {}
            for lesson in LESSONS:
                try:
                    scores[student][lesson] = gradebook.find_submission_notebook(
                        lesson, lesson, student
                    ).score
                except MissingEntry:
                    pass
    return scores


@pytest.fixture(scope="module")
def hostile_class(workspace):
    """The corpus graded in one run (--jobs 2); returns (run, out folder, submissions, code copy)."""
    root, code, solved = workspace
    subs = root / "submissions"
    make_corpus(subs, solved)
    out = root / "out"
    loss_py = (code / "autograder" / "checks" / "loss.py").read_bytes()
    try:
        run = grade(code, subs, out)
    finally:
        repaired_by_test = (code / "autograder" / "checks" / "loss.py").read_bytes() != loss_py
        if repaired_by_test:  # never leave a poisoned check behind for the tests that follow
            (code / "autograder" / "checks" / "loss.py").write_bytes(loss_py)
    print(
        f"\ngrading the hostile class ({len(CASES)} students, --jobs 2): {run.seconds:.1f} s wall; "
        f"autograder says: {run.process.stdout.strip().splitlines()[:1]}"
    )
    (root / "first-run.txt").write_text(f"{run.seconds:.1f} s\n{run.process.stdout}\n{run.process.stderr}")
    assert not repaired_by_test, "the grading left autograder/loss.py changed"
    return run, out, subs, code


# ---------------------------------------------------------------- one run, every student reported


@pytest.mark.slow
def test_the_run_completes_with_a_row_per_student(hostile_class):
    """One run over the whole hostile class exits 0, without a traceback, with one row per student."""
    run, _, _, _ = hostile_class
    assert run.process.returncode == 0, (run.process.stdout[-3000:], run.process.stderr[-3000:])
    assert "Traceback" not in run.process.stderr, run.process.stderr[-3000:]
    assert set(run.rows) == set(CASES)
    assert re.search(
        rf"graded {len(CASES) - 2} students \({len(CASES)} in grades.csv\)", run.process.stdout
    ), run.process.stdout  # all but the empty and the invalid file reach nbgrader


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(CASES))
def test_each_student_gets_the_expected_row(hostile_class, student):
    """Score, status and notes of every student as CASES says."""
    case = CASES[student]
    row = hostile_class[0].rows[student]
    print(
        f"{student} ({case.what}): {LESSON}={row[LESSON]!r} total={row['total']} status={row['status']!r} "
        f"notes={row['notes']!r}"
    )
    if case.total is not None:
        assert float(row["total"]) == case.total, row
    else:
        assert lesson_score(row) == case.score, row
        assert float(row["total"]) == (case.score or 0.0), row
        assert all(row[lesson] == "" for lesson in OTHERS), row
    if isinstance(case.status, re.Pattern):
        assert case.status.fullmatch(row["status"]), row["status"]
    else:
        assert row["status"] == case.status
    for note in case.notes:
        assert note in row["notes"], (note, row["notes"])


@pytest.mark.slow
def test_correct_submissions_score_every_autograded_point(hostile_class):
    """The solved course and its Colab save score every autograded point of every lesson; their answers wait."""
    rows = hostile_class[0].rows
    for student in ("solved", "colab"):
        assert float(rows[student]["total"]) == COURSE_SCORE and rows[student]["status"] == COURSE_STATUS, (
            rows[student]
        )
        assert [rows[student][lesson] for lesson in LESSONS] == [rows["solved"][lesson] for lesson in LESSONS]


@pytest.mark.slow
@pytest.mark.parametrize("student", TAMPERING)
def test_tampering_cannot_raise_a_grade(hostile_class, student):
    """A student who tampers with tests, checks or the gradebook keeps the score of the bug they hide."""
    rows = hostile_class[0].rows
    assert lesson_score(rows["buggy"]) == BUGGY_SCORE
    row = rows[student]
    if lesson_score(row) is None:  # not graded is no higher grade, as long as the status says so
        assert row["status"].startswith(f"{LESSON} not graded: "), row
    else:
        assert lesson_score(row) == lesson_score(rows["buggy"]), row


@pytest.mark.slow
def test_nothing_a_student_wrote_runs_in_the_feedback(hostile_class):
    """The feedback (and the autograded notebook formgrader shows) holds the payloads as text only."""
    _, out, _, _ = hostile_class
    page = (out / "feedback" / "active_content" / f"{LESSON}.html").read_text()
    assert "PWN-markdown" in page  # still there to read
    for live in ("<script>alert('PWN", "<img src=x onerror", "alert('PWN-javascript')\n</script>"):
        assert live not in page, live


@pytest.mark.slow
def test_the_gradebook_of_record_agrees_with_grades_csv(hostile_class):
    """Whatever the notebooks did to databases, the course's gradebook holds exactly the scores of grades.csv."""
    run, out, _, _ = hostile_class
    held = gradebook_scores(f"sqlite:///{out / 'course' / 'gradebook.db'}", sorted(run.rows))
    for student, row in run.rows.items():
        expected = {lesson: float(row[lesson]) for lesson in LESSONS if row[lesson]}
        assert held[student] == expected, (student, held[student], row)


@pytest.mark.slow
def test_the_grader_keeps_its_own_files(hostile_class):
    """A notebook that edits autograder/loss.py cannot (read-only) or is reported; the package is as it was."""
    run, _, _, code = hostile_class
    assert git(code, "status", "--porcelain", "--untracked-files=all", *PACKAGES) == ""
    row = run.rows["package_overwriter"]
    if ISOLATED:
        assert lesson_score(row) == BUGGY_SCORE, row
    else:
        assert "the notebook changed the grader's own files (loss.py)" in row["status"], row


@pytest.mark.slow
@pytest.mark.parametrize(
    "student",
    [
        "noisy_plain",
        "noisy_exercise",
        "raising_exercise",
        "slow_cell",
        "endless_loop",
        "sys_exit",
        "memory_hog",
        "hidden_tracebacks",
    ],
)
def test_feedback_is_written_for_graded_troublemakers(hostile_class, student):
    """Students whose cells failed still get their feedback HTML."""
    out = hostile_class[1]
    assert (out / "feedback" / student / f"{LESSON}.html").is_file()


# ---------------------------------------------------------------- without namespaces

UNWALLED = ["buggy", "edited_test", "gradebook_editor", "package_overwriter", "c_planted_pyc"]


@pytest.fixture(scope="module")
def unwalled_class(hostile_class, workspace):
    """A few tampering students of the corpus graded with --isolation off: the grader's own defences alone."""
    _, _, subs, code = hostile_class
    root, _, solved = workspace
    few = root / "unwalled-submissions"
    for student in UNWALLED[:-1]:
        shutil.copytree(subs / student, few / student)
    nb = nbformat.read(solved / f"{LESSON}.ipynb", as_version=4)
    replace_once(cell_with_id(nb, "exercise_4_1"), BUG_OLD, BUG_NEW)
    insert_plain_cells(nb, EXPLOIT_PYC.replace("'c_pyc'", "'c_planted_pyc'"))
    (few / "c_planted_pyc").mkdir()
    nbformat.write(nb, few / "c_planted_pyc" / f"{LESSON}.ipynb")
    out = root / "unwalled-out"
    run = grade(code, few, out, "--isolation", "off")
    print(f"\ngrading {len(UNWALLED)} tampering students without isolation: {run.seconds:.1f} s wall")
    return run, code


@pytest.mark.slow
def test_without_namespaces_tampering_still_cannot_raise_a_grade(unwalled_class):
    """--isolation off: edited tests and gradebooks keep the bug's score; changed grader files are restored."""
    run, code = unwalled_class
    assert run.process.returncode == 0, (run.process.stdout[-3000:], run.process.stderr[-3000:])
    assert "warning: --isolation off" in run.process.stdout  # what it exposes is said once
    assert all("not isolated (--isolation off)" in row["notes"] for row in run.rows.values()), run.rows
    scores = {student: lesson_score(row) for student, row in run.rows.items()}
    assert scores == {
        "buggy": BUGGY_SCORE,
        "edited_test": BUGGY_SCORE,
        "gradebook_editor": BUGGY_SCORE,
        "package_overwriter": None,
        "c_planted_pyc": None,
    }, run.rows
    for student in ("package_overwriter", "c_planted_pyc"):
        assert run.rows[student]["status"].startswith(
            f"{LESSON} not graded: the notebook changed the grader's own files"
        ), run.rows[student]
    assert git(code, "status", "--porcelain", "--untracked-files=all", *PACKAGES) == ""
    planted = [
        p for p in code.rglob("*.pyc") if b"c_planted_pyc" in p.read_bytes()
    ]  # git ignores __pycache__
    assert not planted, planted


# ---------------------------------------------------------------- late submissions


@pytest.fixture(scope="module")
def late_run(hostile_class, workspace):
    """A second run after a late student ("late") and a fixed notebook of "buggy" arrived."""
    first, out, subs, code = hostile_class
    _, _, solved = workspace
    shutil.copy(solved / f"{LESSON}.ipynb", subs / "buggy" / f"{LESSON}.ipynb")
    (subs / "late").mkdir()
    shutil.copy(solved / f"{LESSON}.ipynb", subs / "late" / f"{LESSON}.ipynb")
    run = grade(code, subs, out)
    print(
        f"\nre-grading after 2 late submissions: {run.seconds:.1f} s wall (first run {first.seconds:.1f} s); "
        f"autograder says: {run.process.stdout.strip().splitlines()[:1]}"
    )
    return first, run, out


@pytest.mark.slow
def test_a_second_run_completes_with_every_student(late_run):
    """The second run exits 0 with a row for everyone, old and new (its speed comes from grading 2 students)."""
    _, run, _ = late_run
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    assert re.search(rf"graded \d+ students \({len(CASES) + 1} in grades.csv\)", run.process.stdout), (
        run.process.stdout
    )


@pytest.mark.slow
def test_a_second_run_grades_only_what_changed(late_run):
    """Only the new student and the changed notebook are graded again; no unchanged notebook is noted as replaced."""
    _, run, _ = late_run
    replaced = sorted(
        s for s, row in run.rows.items() if s != "buggy" and "a new submission replaced" in row["notes"]
    )
    assert not replaced, replaced
    assert re.search(rf"graded 2 students \({len(CASES) + 1} in grades.csv\)", run.process.stdout), (
        run.process.stdout
    )


@pytest.mark.slow
def test_a_second_run_keeps_the_earlier_rows(late_run):
    """Everyone else's scores and status are those of the first run; the late student is added."""
    first, run, _ = late_run
    for student, row in first.rows.items():
        if student != "buggy":
            again = run.rows[student]
            assert [again[k] for k in (*LESSONS, "total", "status")] == [
                row[k] for k in (*LESSONS, "total", "status")
            ], (student, row, again)
    assert (lesson_score(run.rows["late"]), run.rows["late"]["status"]) == (FULL_SCORE, WROTE)


@pytest.mark.slow
def test_a_replaced_submission_is_noted_and_kept(late_run):
    """The fixed notebook is graded, the note names the earlier grading, the old file is in course/history/."""
    _, run, out = late_run
    row = run.rows["buggy"]
    assert lesson_score(row) == FULL_SCORE, row
    match = re.search(
        rf"{LESSON}: a new submission replaced the one graded at (\S+) \(score then: {BUGGY_SCORE:g}(\.0)?; "
        rf"kept in (course/history/buggy/{LESSON}/[^)]+\.ipynb)\)",
        row["notes"],
    )
    assert match, row["notes"]
    old = nbformat.read(out / match.group(3), as_version=4)
    assert BUG_NEW in cell_with_id(old, "exercise_4_1").source  # the buggy version is what was kept


@pytest.mark.slow
def test_a_second_run_keeps_the_earlier_notes(late_run):
    """The repairs noted for notebooks graded in the first run are still in the notes of the second."""
    first, run, _ = late_run
    lost = {
        student: [
            note
            for note in first.rows[student]["notes"].split("; ")
            if note not in run.rows[student]["notes"]
        ]
        for student in first.rows
        if student != "buggy"
    }
    assert not any(lost.values()), {student: notes for student, notes in lost.items() if notes}


# ---------------------------------------------------------------- a PostgreSQL gradebook


@pytest.mark.slow
def test_grading_into_a_postgresql_gradebook(postgres_url, workspace, tmp_path):
    """`grade --db-url postgresql://...`: grades.csv as with SQLite, and the PostgreSQL gradebook holds the scores."""
    _, code, solved = workspace
    subs = tmp_path / "submissions"
    (subs / "solved").mkdir(parents=True)
    (subs / "blank").mkdir()
    shutil.copy(solved / f"{LESSON}.ipynb", subs / "solved" / f"{LESSON}.ipynb")
    shutil.copy(code / "lessons" / f"{LESSON}.ipynb", subs / "blank" / f"{LESSON}.ipynb")
    out = tmp_path / "out"
    run = grade(code, subs, out, "--db-url", postgres_url)
    print(f"\ngrading 2 students into PostgreSQL: {run.seconds:.1f} s wall")
    assert run.process.returncode == 0, (run.process.stdout[-3000:], run.process.stderr[-3000:])
    assert {student: (lesson_score(row), row["status"]) for student, row in run.rows.items()} == {
        "solved": (FULL_SCORE, WROTE),
        "blank": (0.0, MISSING),
    }
    assert gradebook_scores(postgres_url, ["solved", "blank"]) == {
        "solved": {LESSON: FULL_SCORE},
        "blank": {LESSON: 0.0},
    }
    assert not (out / "course" / "gradebook.db").exists()  # PostgreSQL is the gradebook of record


# ---------------------------------------------------------------- past one machine: shards into one gradebook

SHARD_STUDENTS = ("ada", "bob", "cyd", "dee", "eve")  # hashed into both halves (the test asserts it)


def write_shard_class(subs: Path, code: Path, solved: Path) -> None:
    """Five students of lesson 4 (solved, blank, with the detached-loss bug) and a file that is no one's."""
    for student, kind in zip(SHARD_STUDENTS, ("solved", "blank", "buggy", "solved", "blank")):
        (subs / student).mkdir(parents=True)
        target = subs / student / f"{LESSON}.ipynb"
        if kind == "blank":
            shutil.copy(code / "lessons" / f"{LESSON}.ipynb", target)
            continue
        shutil.copy(solved / f"{LESSON}.ipynb", target)
        if kind == "buggy":
            nb = nbformat.read(target, as_version=4)
            cell = next(
                c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "exercise_4_1"
            )
            cell.source = cell.source.replace(BUG_OLD, BUG_NEW)
            nbformat.write(nb, target)
    (subs / "syllabus.pdf").write_bytes(b"%PDF-1.4 not a notebook")


def report(code: Path, out: Path, *sources: Path, db_url: str) -> subprocess.CompletedProcess:
    """``python -m autograder report --from ... --db-url ... --out out``."""
    command = [
        sys.executable,
        "-m",
        "autograder",
        "report",
        *[f"--from={s}" for s in sources],
        "--db-url",
        db_url,
        "--out",
        str(out),
    ]
    return subprocess.run(
        command, cwd=out.parent, env=course_env(code), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def test_a_gradebook_sync_holds_the_postgresql_lock_until_it_ends(postgres_url):
    """While one course build syncs the gradebook, another cannot take the lock (nbgrader's syncs would collide)."""
    from sqlalchemy import create_engine, text

    from autograder.grading.course import GRADEBOOK_LOCK, gradebook_sync_lock

    other = create_engine(postgres_url)

    def free() -> bool:
        with other.connect() as connection:
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": GRADEBOOK_LOCK}
            ).scalar()
            if taken:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": GRADEBOOK_LOCK})
            return bool(taken)

    try:
        assert free()
        with gradebook_sync_lock(postgres_url):
            assert not free()
        assert free()
    finally:
        other.dispose()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it, as a lost machine would stop them (no handler runs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    tree, index = [pid], 0
    while index < len(tree):
        tree += children.get(tree[index], [])
        index += 1
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_shards_on_separate_processes_report_as_one_run(postgres_url, workspace, tmp_path):
    """Two `grade --shard K/2` processes at once into one PostgreSQL gradebook, one of them killed midway and run
    again; merged by `report`: the same grades.csv and intake.csv as one run of the whole class. Running a shard
    again changes nothing."""
    from autograder.grading.collect import Shard

    _, code, solved = workspace
    subs = tmp_path / "submissions"
    write_shard_class(subs, code, solved)
    halves = [[s for s in SHARD_STUDENTS if Shard(k, 2).holds(f"name:{s}")] for k in range(2)]
    assert all(halves) and sorted(halves[0] + halves[1]) == sorted(SHARD_STUDENTS), halves
    killed = 0 if len(halves[0]) >= 2 else 1  # a shard of two students or more, killed after its first

    whole = grade(code, subs, tmp_path / "whole", jobs=1)
    assert whole.process.returncode == 0, whole.process.stderr[-3000:]
    released = subprocess.run(
        [sys.executable, "-m", "autograder", "release", str(tmp_path / "prepared"), "--db-url", postgres_url],
        cwd=tmp_path,
        env=course_env(code),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert released.returncode == 0, released.stderr[
        -3000:
    ]  # the gradebook's course, made once before the shards

    outs = [tmp_path / f"shard{k}" for k in range(2)]
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(subs),
        "--out",
        str(outs[killed]),
        "--jobs",
        "1",
        *LIMITS,
        "--shard",
        f"{killed}/2",
        "--db-url",
        postgres_url,
        *isolation_args(),
    ]
    doomed = subprocess.Popen(
        command, cwd=tmp_path, env=course_env(code), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs = []  # the other shard, graded meanwhile
    meanwhile = threading.Thread(
        target=lambda: runs.append(
            grade(
                code, subs, outs[1 - killed], "--shard", f"{1 - killed}/2", "--db-url", postgres_url, jobs=1
            )
        )
    )
    meanwhile.start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (
        not (outs[killed] / "grades.csv").is_file() and doomed.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.2)  # grades.csv is written once the shard's first student is recorded
    kill_tree(doomed.pid)
    doomed.wait()
    meanwhile.join()
    other = runs[0]
    midway = read_grades(outs[killed] / "grades.csv")
    assert [row["status"] for row in midway.values()].count("graded") < len(halves[killed]), (
        midway
    )  # truly midway
    assert other.process.returncode == 0, other.process.stderr[-3000:]
    assert set(other.rows) == set(halves[1 - killed])

    rerun = grade(code, subs, outs[killed], "--shard", f"{killed}/2", "--db-url", postgres_url, jobs=1)
    assert rerun.process.returncode == 0, rerun.process.stderr[-3000:]
    assert set(rerun.rows) == set(halves[killed])
    roots = {*(sandbox.cgroup_controllers() or {}).values(), *filter(None, [sandbox.cpu_accounting_group()])}
    assert not [
        f for root in roots for f in root.glob(f"siamese-grading-{doomed.pid}-*")
    ]  # the next run tidied up
    merged = report(code, tmp_path / "merged", *outs, db_url=postgres_url)
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert read_grades(tmp_path / "merged" / "grades.csv") == whole.rows
    assert (tmp_path / "merged" / "intake.csv").read_text() == (tmp_path / "whole" / "intake.csv").read_text()
    assert "syllabus.pdf" in (tmp_path / "merged" / "intake.csv").read_text()

    again = grade(
        code, subs, outs[1 - killed], "--shard", f"{1 - killed}/2", "--db-url", postgres_url, jobs=1
    )
    assert again.process.returncode == 0, again.process.stderr[-3000:]
    assert again.rows == other.rows
    merged_again = report(code, tmp_path / "merged-again", *outs, db_url=postgres_url)
    assert merged_again.returncode == 0, merged_again.stderr[-3000:]
    assert read_grades(tmp_path / "merged-again" / "grades.csv") == whole.rows


# ---------------------------------------------------------------- exploits of the sandbox

# Holes found while this test was first written, each closed since; the test keeps them closed. Each
# exploit sits in a plain cell, keeps the bug, and is given the grader's --out folder (the worst case:
# a notebook that knows where everything is). The class is graded with --jobs 1, students with the most
# notebooks first, then by name (every exploit but "a_unlock" hands in one notebook), so that "f_template"
# runs before "g_victim".

EXPLOIT_UNLOCK = """
import os, sqlite3
here = os.getcwd()  # the sandbox's gradebook is a few folders up; the student's next lesson is graded with it
while not os.path.isfile(os.path.join(here, "gradebook.db")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
db = sqlite3.connect(os.path.join(here, "gradebook.db"))
db.execute("UPDATE source_cell SET locked = 0")  # nbgrader would no longer restore edited test cells
db.commit()
db.close()
"""

EXPLOIT_SHADOW = """
import os, sys
shadow = os.path.join(os.getcwd(), "..", "..", "..", "shadow")  # the sandbox's root: writable, not the cwd
os.makedirs(os.path.join(shadow, "autograder", "checks"), exist_ok=True)
open(os.path.join(shadow, "autograder", "__init__.py"), "w").close()
open(os.path.join(shadow, "autograder", "checks", "__init__.py"), "w").close()
with open(os.path.join(shadow, "autograder", "checks", "loss.py"), "w") as f:
    f.write("def _passed(*args, **kwargs):\\n    print('[PASS] shadowed')\\n\\n"
            "check_loss_similar_pairs = check_loss_hinge = check_loss_beyond_margin = _passed\\n"
            "check_loss_margin_argument = check_loss_label_shapes = _passed\\n"
            "check_loss_label_count = check_loss_gradients = _passed\\n")
sys.path.insert(0, shadow)
"""

EXPLOIT_PYC = """
import importlib.util, os
from importlib._bootstrap_external import _code_to_timestamp_pyc
import autograder.checks.loss as real
source = open(real.__file__).read() + (
    "\\nimport os as _os\\n"
    "if 'c_pyc' in _os.getcwd():  # only for me: nobody else notices\\n"
    "    def check_loss_gradients(*args, **kwargs):\\n"
    "        print('[PASS] from a planted .pyc')\\n")
stat = os.stat(real.__file__)  # a .pyc stamped with the real source's mtime and size is trusted by the import
pyc = importlib.util.cache_from_source(real.__file__)
os.makedirs(os.path.dirname(pyc), exist_ok=True)
with open(pyc, "wb") as f:
    f.write(_code_to_timestamp_pyc(compile(source, real.__file__, "exec"), int(stat.st_mtime), stat.st_size))
"""

# A process that leaves the kernel's process group and, once the grader has exited, rewrites two students'
# scores in the manifest (where it can find it); the marker in its command line lets the test look for it.
EXPLOIT_DAEMON = """
import json, os, sys, time
out, marker = sys.argv[1], sys.argv[2]
path = os.path.join(out, "course", "grading-manifest.json")
deadline = time.time() + 300
while time.time() < deadline and not os.path.exists(os.path.join("/dev/shm", marker + ".stop")):
    try:
        manifest = json.load(open(path))
        lessons = {sid: record["lessons"] for sid, record in manifest["students"].items()}
        if lessons.get("g_victim", {}).get("04_contrastive_loss", {}).get("score") is not None:
            for student, score in (("d_daemon", 20.0), ("g_victim", 0.0)):
                lessons[student]["04_contrastive_loss"].pop("error", None)
                lessons[student]["04_contrastive_loss"]["score"] = score
            json.dump(manifest, open(path, "w"))
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(0.2)
"""

EXPLOIT_TEMPLATE = """
import os, sqlite3
db = sqlite3.connect(os.path.join(OUT, "sandbox-template", "gradebook.db"))  # every later sandbox's origin
db.execute("UPDATE grade_cells SET max_score = 50 WHERE id IN (SELECT b.id FROM base_cell b "
           "JOIN notebook n ON b.notebook_id = n.id WHERE n.name = '04_contrastive_loss')")
db.commit()
db.close()
"""

EXPLOIT_HUNTER = """
import os, sqlite3
db = sqlite3.connect(os.path.join(OUT, "course", "gradebook.db"))  # the gradebook of record
db.execute("UPDATE grade SET manual_score = 0")
db.commit()
db.close()
"""


# Attacks on the operating-system side of the sandbox. Each prints one line "ATTACK <json>" that the test
# reads back from the student's feedback; the test judges, the notebook only reports.
ATTACK_WALLS = """
import ctypes, json, os, subprocess
report = {"commands": {}, "written": [], "seen": []}
for command in (["umount", "-l", "/proc"], ["mount", "-o", "remount,rw", "/"], ["mount", "-t", "tmpfs", "x", "/mnt"],
                ["mount", "--bind", "/tmp", "/usr"]):
    try:
        report["commands"][" ".join(command)] = subprocess.run(command, capture_output=True).returncode
    except OSError as error:
        report["commands"][" ".join(command)] = error.strerror
libc = ctypes.CDLL(None, use_errno=True)
report["mount(2)"] = libc.mount(None, b"/", None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND, read-write
report["unshare(2)"] = libc.unshare(0x10000000)  # CLONE_NEWUSER: a fresh namespace with every capability
for path in [*PATHS, "/usr/hello", os.path.dirname(os.__file__) + "/hello.py", "/etc/hello", "/hello"]:
    try:
        with open(os.path.join(path, "planted") if os.path.isdir(path) else path, "w") as f:
            f.write("planted")
        report["written"].append(path)
    except OSError:
        pass
report["seen"] = [path for path in PATHS if os.path.exists(path)]
report["uid"] = os.getuid()
report["capabilities"] = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
report["processes"] = len([p for p in os.listdir("/proc") if p.isdigit()])
print("ATTACK " + json.dumps(report))
"""

ATTACK_NETWORK = """
import json, socket
report = {"interfaces": [name for _, name in socket.if_nameindex()],
          "routes": open("/proc/net/route").read().strip().splitlines()[1:], "connected": []}
for port in PORTS:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        report["connected"].append(port)
    except OSError:
        pass
print("ATTACK " + json.dumps(report))
"""

ATTACK_FORGE = """
import json, os
forged = (json.dumps({"lesson": "04_contrastive_loss", "executed": "/etc/passwd"}) + "\\n").encode()
report = {"wrote": []}
for fd in (1, 2):  # where a worker sharing the kernel's output would read its results
    try:
        os.write(fd, forged)
        report["wrote"].append(fd)
    except OSError:
        pass
for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    for fd in range(0, 16):
        try:
            with open(f"/proc/{pid}/fd/{fd}", "wb") as f:
                f.write(forged)
            report["wrote"].append(f"{pid}/{fd}")
        except OSError:
            pass
for pid in (os.getppid(), 1):
    try:
        os.kill(pid, 9)
    except OSError:
        pass
print("ATTACK " + json.dumps(report))
"""

ATTACK_FORKS = """
import subprocess, sys
hog = "import time\\nhog = bytearray(1536 * 2**20)\\ntime.sleep(15)"  # 1.5 GiB each, written (bytearray zeroes it)
children = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(4)]  # 6 GiB together, over 4 GiB
print("ATTACK " + str({"killed": sum(1 for child in children if child.wait() < 0)}))
"""

ATTACK_PROCESSES = """
import subprocess, sys
LOOP = \'\'\'
import os, signal, time
children, stopped = [], "its own deadline"
deadline = time.monotonic() + 6  # a report well inside the cell's 10 s, however slow the machine
try:
    while len(children) < 2000 and time.monotonic() < deadline:
        pid = os.fork()
        if pid == 0:
            os.closerange(0, 3)
            time.sleep(30)
            os._exit(0)
        children.append(pid)
except OSError as error:
    stopped = type(error).__name__
print({"started": len(children), "stopped by": stopped}, flush=True)
for pid in children:  # then the notebook goes on as if nothing happened
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
\'\'\'
# A small Python forks far faster than the kernel, which holds torch: the loop meets the limit on a slow
# machine too.
looped = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, timeout=9)
print("ATTACK " + looped.stdout.strip())
"""

ATTACK_OUTPUT = """
import sys
line = "x" * (2**20 - 1) + "\\n"
for _ in range(64):  # 64 MB of output (32 times a cell's limit), one megabyte at a time, each sent at once
    sys.stdout.write(line)
    sys.stdout.flush()
print("ATTACK done")
"""


def knowing(out: Path, code: str) -> str:
    """``code`` preceded by the grader's --out folder, as if the notebook had found it."""
    return f"OUT = {str(out)!r}\n" + code


def daemon_cell(out: Path, marker: str) -> str:
    """A plain cell that starts EXPLOIT_DAEMON in a session of its own."""
    return f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", {EXPLOIT_DAEMON!r}, {str(out)!r}, {marker!r}],
                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
"""


@dataclass
class Target:
    """What the attacks aim at: folders that must stay unseen and untouched, loopback ports, a marker."""

    paths: list[str]
    ports: list[int]
    marker: str


def make_exploits(subs: Path, solved: Path, code: Path, out: Path, target: Target) -> None:
    """Write the exploiting students under ``subs``."""

    def buggy_with(student: str, plain_cell: str) -> None:
        nb = nbformat.read(solved / f"{LESSON}.ipynb", as_version=4)
        replace_once(cell_with_id(nb, "exercise_4_1"), BUG_OLD, BUG_NEW)
        insert_plain_cells(nb, plain_cell)
        (subs / student).mkdir(parents=True)
        nbformat.write(nb, subs / student / f"{LESSON}.ipynb")

    def carrier(
        student: str, plain_cell: str
    ) -> None:  # the blank lesson 2 (quick to run) with one more cell
        nb = nbformat.read(code / "lessons" / "02_cnn_backbone.ipynb", as_version=4)
        insert_plain_cells(nb, plain_cell, before="exercise_2_1")
        (subs / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, subs / student / "02_cnn_backbone.ipynb")

    buggy_with("a_unlock", "pass")  # lesson 2 unlocks the tests, lesson 4 replaces the one its bug fails
    nb = nbformat.read(subs / "a_unlock" / f"{LESSON}.ipynb", as_version=4)
    cell_with_id(nb, "loss_gradients").source = 'print("[PASS] the loss can be differentiated\\n" * 5)'
    nbformat.write(nb, subs / "a_unlock" / f"{LESSON}.ipynb")
    carrier("a_unlock", EXPLOIT_UNLOCK)
    buggy_with("b_shadow", EXPLOIT_SHADOW)
    buggy_with("c_pyc", EXPLOIT_PYC)
    buggy_with("d_daemon", daemon_cell(out, target.marker))
    carrier("e_hunter", knowing(out, EXPLOIT_HUNTER))
    buggy_with("f_template", knowing(out, EXPLOIT_TEMPLATE))
    (subs / "g_victim").mkdir()
    shutil.copy(solved / f"{LESSON}.ipynb", subs / "g_victim" / f"{LESSON}.ipynb")
    buggy_with("h_walls", f"PATHS = {target.paths!r}\n" + ATTACK_WALLS)
    buggy_with("i_network", f"PORTS = {target.ports!r}\n" + ATTACK_NETWORK)
    buggy_with("j_forge", ATTACK_FORGE)
    buggy_with("k_forks", ATTACK_FORKS)
    buggy_with("l_processes", ATTACK_PROCESSES)
    buggy_with("m_output", ATTACK_OUTPUT)


ATTACKERS = {
    "a_unlock",
    "b_shadow",
    "c_pyc",
    "d_daemon",
    "e_hunter",
    "f_template",
    "h_walls",
    "i_network",
    "j_forge",
    "k_forks",
    "l_processes",
    "m_output",
}


class Listener:
    """A TCP service on 127.0.0.1 that counts the connections it accepts (it answers nothing), until closed."""

    def __init__(self):
        import socket

        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.open = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.open:
            try:
                connection, _ = self.server.accept()
                self.accepted += 1
                connection.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop accepting and close the socket."""
        self.open = False
        self.thread.join()
        self.server.close()


def processes_with(marker: str) -> list[int]:
    """The PIDs of this machine whose command line holds ``marker`` (the host sees into every sandbox)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def watch_for(marker: str, seen: list[int], stop: threading.Event) -> None:
    """Note every process with ``marker`` in its command line until ``stop`` is set."""
    while not stop.is_set():
        seen.extend(pid for pid in processes_with(marker) if pid not in seen and pid != os.getpid())
        time.sleep(0.2)


def feedback_attack(out: Path, student: str, lesson: str = LESSON) -> dict | None:
    """The report an attack printed ("ATTACK {...}"), read from the student's feedback; ``None`` if there is none."""
    import html

    path = out / "feedback" / student / f"{lesson}.html"
    if not path.is_file():
        return None
    match = re.search(
        r"ATTACK (\{.*?\})\s*$", html.unescape(re.sub(r"<[^>]+>", "", path.read_text())), re.MULTILINE
    )
    return json.loads(match.group(1).replace("'", '"')) if match else None


@pytest.fixture(scope="module")
def exploit_class(workspace, tmp_path_factory):
    """Students attacking the sandbox, graded in one run (--jobs 1, 4 GiB per student), then again unchanged.

    Returns (first run, second run, (whether the daemon ran, whether it still ran after the run), OUT, target,
    connections the loopback services accepted).
    """
    root_dir, _, solved = workspace
    root = tmp_path_factory.mktemp("exploits")
    code = copy_course(root / "course-code")  # its own copy: a planted .pyc stays there
    subs = root / "submissions"
    out = root / "out"
    listener = Listener()
    pg_port = int(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL).rsplit(":", 1)[1].split("/")[0])
    target = Target(
        paths=[
            str(out),
            str(out / "course" / "source"),
            str(out / "sandbox-template"),
            str(subs),
            str(code / ".git"),
            str(code / "lessons"),
            str(root_dir / "submissions"),
        ],
        ports=[listener.port, pg_port],
        marker=f"siamese-test-daemon-{os.getpid()}-{int(time.time())}",
    )
    make_exploits(subs, solved, code, out, target)
    seen: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_for, args=(target.marker, seen, stop), daemon=True)
    watcher.start()
    try:
        first = grade(code, subs, out, "--memory-mb", "4096", jobs=1)
        print(f"\ngrading the exploits (--jobs 1): {first.seconds:.1f} s wall")
        stop.set()
        watcher.join()
        time.sleep(3)
        alive = (bool(seen), bool(processes_with(target.marker)))
        again = grade(code, subs, out, "--memory-mb", "4096", jobs=1)
        yield first, again, alive, out, target, listener.accepted
    finally:
        stop.set()
        listener.close()
        Path("/dev/shm", f"{target.marker}.stop").write_text("stop")  # ends the daemon where nothing else did
        time.sleep(0.5)
        Path("/dev/shm", f"{target.marker}.stop").unlink()


@pytest.mark.slow
def test_the_exploit_run_completes(exploit_class):
    """The run itself survives the exploits, with a row for everyone, twice."""
    first, again, *_ = exploit_class
    assert first.process.returncode == 0, first.process.stderr[-3000:]
    assert again.process.returncode == 0, again.process.stderr[-3000:]
    assert set(first.rows) == ATTACKERS | {"g_victim"}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(ATTACKERS - {"a_unlock", "e_hunter"}))
def test_an_attack_scores_what_its_bug_scores_or_is_not_graded(exploit_class, student):
    """Every attacker keeps the bug's 15 of 20, or is not graded with a reason; no attack raises a grade."""
    row = exploit_class[0].rows[student]
    assert lesson_score(row) == BUGGY_SCORE or f"{LESSON} not graded: " in row["status"], row


@pytest.mark.slow
def test_a_notebook_cannot_change_the_gradebook_of_record(exploit_class):
    """A cell that zeroes every grade in OUT/course/gradebook.db cannot (unseen) or is caught and undone."""
    first, _, _, out, *_ = exploit_class
    row = first.rows["e_hunter"]
    if ISOLATED:
        others = ", ".join(lesson for lesson in CORE if lesson != "02_cnn_backbone")
        assert (lesson_score(row, "02_cnn_backbone"), row["status"]) == (0.0, f"no notebook for {others}"), (
            row
        )
    else:
        assert row["status"].startswith(
            "02_cnn_backbone not graded: the notebook changed the grader's own files (gradebook.db)"
        ), row
    assert "review: other cells use" in row["notes"] and "sqlite3" in row["notes"], row
    earlier = ["b_shadow", "c_pyc", "d_daemon"]  # graded (and recorded) before e_hunter ran
    held = gradebook_scores(f"sqlite:///{out / 'course' / 'gradebook.db'}", earlier)
    assert {s: held[s].get(LESSON) for s in earlier} == {s: lesson_score(first.rows[s]) for s in earlier}
    assert all(held[s][LESSON] > 0 for s in earlier), held


@pytest.mark.slow
def test_an_earlier_lesson_cannot_unlock_the_tests_of_a_later_one(exploit_class):
    """Lesson 2 unlocks the test cells in the sandbox's gradebook; lesson 4's edited test cell still scores 0."""
    row = exploit_class[0].rows["a_unlock"]
    assert lesson_score(row) == BUGGY_SCORE or f"{LESSON} not graded" in row["status"], row


@pytest.mark.slow
def test_a_shadow_package_cannot_replace_the_checks(exploit_class):
    """A fake autograder package written into the sandbox and put first on sys.path is not imported."""
    row = exploit_class[0].rows["b_shadow"]
    assert "review: other cells use" in row["notes"] and "sys.path" in row["notes"], row


@pytest.mark.slow
def test_a_notebook_cannot_touch_the_grading_of_later_students(exploit_class):
    """Editing OUT/sandbox-template/gradebook.db changes nothing for the next student."""
    row = exploit_class[0].rows["g_victim"]
    assert (lesson_score(row), row["status"]) == (FULL_SCORE, WROTE), row


@pytest.mark.slow
@needs_isolation
def test_no_process_of_a_notebook_outlives_the_grading(exploit_class):
    """The process started with start_new_session=True ran, and was gone when the run ended."""
    _, _, (ran, still_running), *_ = exploit_class
    assert ran, "the daemon never started: the exploit is broken, not the grader"
    assert not still_running


@pytest.mark.slow
@needs_isolation
def test_grades_survive_a_process_left_behind(exploit_class):
    """Nothing rewrites the manifest once the run is over: the second run reports the first run's scores."""
    first, again, *_ = exploit_class
    assert {s: lesson_score(r) for s, r in again.rows.items()} == {
        s: lesson_score(r) for s, r in first.rows.items()
    }


@pytest.mark.slow
@needs_isolation
def test_the_walls_hold_from_inside(exploit_class):
    """Inside: uid 65534 with no capability; mounts, remounts and new namespaces fail; nothing outside is seen
    (the grading folder, the submissions, the course's source, the repository's .git) and nothing is written."""
    _, _, _, out, target, _ = exploit_class
    report = feedback_attack(out, "h_walls")
    assert report is not None, "the attack printed no report"
    assert (report["uid"], report["capabilities"]) == (65534, "0000000000000000"), report
    assert all(code != 0 for code in report["commands"].values()), report["commands"]
    assert report["mount(2)"] != 0 and report["unshare(2)"] != 0, report
    assert report["seen"] == [] and report["written"] == [], report
    assert report["processes"] <= 3, report  # the sandbox's init, the kernel and perhaps the command it ran
    assert not [p for p in target.paths if Path(p, "planted").exists()]


@pytest.mark.slow
@needs_isolation
def test_the_sandbox_has_no_network(exploit_class):
    """Only `lo`, no route, and no connection to a service on the host's loopback (a listener, PostgreSQL's port)."""
    _, _, _, out, _, accepted = exploit_class
    report = feedback_attack(out, "i_network")
    assert report == {"interfaces": ["lo"], "routes": [], "connected": []}, report
    assert accepted == 0


@pytest.mark.slow
@needs_isolation
def test_forged_results_reach_nothing(exploit_class):
    """Lines written to every file descriptor and /proc entry in reach, and kills of the parents, change no grade."""
    first, *_ = exploit_class
    row = first.rows["j_forge"]
    assert lesson_score(row) == BUGGY_SCORE, row  # the forged line named a file that is no notebook: ignored


@pytest.mark.slow
@needs_isolation
def test_memory_and_processes_are_limited_per_student(exploit_class):
    """Four processes of 1.5 GiB each (4 GiB for the student): some are stopped; a fork loop stops at the limit."""
    first, _, _, out, *_ = exploit_class
    forks = feedback_attack(out, "k_forks")
    assert forks is None or forks["killed"] >= 1, forks  # None: the kernel itself was the one stopped
    # What the grader guarantees, whatever the machine's speed: never MAX_PROCESSES of one student's at once, and the
    # student completed (graded as the bug, or not graded). A loop that ran out of its own time proves less: it says so.
    processes = feedback_attack(out, "l_processes")
    if processes is not None:
        assert processes["started"] < MAX_PROCESSES, processes
    else:
        assert lesson_score(first.rows["l_processes"]) in (None, BUGGY_SCORE), first.rows["l_processes"]


@pytest.mark.slow
@needs_isolation
def test_huge_outputs_are_cut_as_they_arrive(exploit_class):
    """64 MB printed by one cell: the executed notebook keeps a few MB and says where it was cut."""
    _, _, _, out, *_ = exploit_class
    executed = out / "course" / "autograded" / "m_output" / LESSON / f"{LESSON}.ipynb"
    assert executed.stat().st_size < 20 * 2**20, executed.stat().st_size
    assert "[grading: output cut here, over 2 MB for one cell]" in executed.read_text()


# ---------------------------------------------------------------- grading runs from a copy taken when it starts

BROKEN_REFERENCE = "\nthis line is not Python: the reference cannot be imported or parsed\n"
BROKEN_CHECKS = "\n\ndef loop_loss(*args, **kwargs):  # every expected loss would be 0\n    return 0.0\n"


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["on", "off"])
def test_edits_of_the_checkout_while_grading_change_no_grade(workspace, tmp_path, isolation):
    """The checkout ``grade`` starts from is broken after the first student is graded (the reference loss and the
    checks' expected loss) and a file is added beside them: the next students still score as in an undisturbed run,
    and grading neither reverts the edits nor deletes the file."""
    _, _, solved = workspace
    checkout = copy_course(tmp_path / "checkout")
    subs, out = tmp_path / "submissions", tmp_path / "out"
    for student in ("a_first", "b_second", "c_third"):
        (subs / student).mkdir(parents=True)
        shutil.copy(solved / f"{LESSON}.ipynb", subs / student / f"{LESSON}.ipynb")
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(subs),
        "--out",
        str(out),
        "--jobs",
        "1",
        *LIMITS,
        *(isolation_args() if isolation == "on" else ["--isolation", "off"]),
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=course_env(checkout),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not _graded(out, "a_first") and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, (
            "the run ended before the checkout could be changed: " + process.stderr.read()
        )
        loss, checks = checkout / "solutions" / "loss.py", checkout / "autograder" / "checks" / "loss.py"
        for path, edit in ((loss, BROKEN_REFERENCE), (checks, BROKEN_CHECKS)):
            path.write_text(path.read_text() + edit)
        planted = checkout / "autograder" / "checks" / "planted.py"
        planted.write_text("PLANTED = True\n")
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    rows = read_grades(out / "grades.csv")
    assert {student: lesson_score(row) for student, row in rows.items()} == {
        "a_first": FULL_SCORE,
        "b_second": FULL_SCORE,
        "c_third": FULL_SCORE,
    }, rows
    assert loss.read_text().endswith(BROKEN_REFERENCE) and checks.read_text().endswith(BROKEN_CHECKS)
    assert planted.read_text() == "PLANTED = True\n"
    # Without isolation a notebook could have made those edits: the run says which files changed.
    warned = [line for line in stdout.splitlines() if line.startswith("warning:") and "checkout" in line]
    if isolation == "off":
        assert warned and all(
            name in warned[0]
            for name in ("solutions/loss.py", "autograder/checks/loss.py", "autograder/checks/planted.py")
        ), stdout
    else:
        assert warned == [], stdout


def _graded(out: Path, student: str) -> bool:
    """Whether grades.csv already holds a score of ``student``'s lesson."""
    try:
        row = read_grades(out / "grades.csv").get(student)
    except (OSError, ValueError, KeyError):
        return False
    return bool(row and row.get(LESSON))


def test_the_copy_a_run_grades_from_holds_what_grading_reads(tmp_path):
    """The course's packages, lesson sources and pyproject.toml, nothing compiled; a process started with its
    environment (outside the checkout, as grading starts them) imports the course from the copy."""
    from autograder.grading.course import changed_since, code_environment, copy_course_code

    code = copy_course_code(tmp_path / "code", REPO)
    assert sorted(p.name for p in code.iterdir()) == [
        "autograder",
        "data_utils",
        "lessons",
        "pyproject.toml",
        "solutions",
    ]
    assert [p.name for p in (code / "lessons").iterdir()] == ["src"]
    assert not list(code.rglob("__pycache__")) and not list(code.rglob("*.pyc"))
    env = code_environment(code)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(code)
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import autograder, data_utils, solutions\n"
            "print(autograder.__file__, data_utils.__file__, solutions.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert all(path.startswith(str(code) + os.sep) for path in shown.stdout.split()), shown.stdout
    assert changed_since(code, REPO) == []
    checkout = copy_course_code(tmp_path / "checkout", REPO)
    (checkout / "solutions" / "loss.py").write_text("changed\n")
    (checkout / "lessons" / "src" / "new.py").write_text("added\n")
    (checkout / "data_utils" / "plotting.py").unlink()
    assert changed_since(code, checkout) == [
        "data_utils/plotting.py",
        "lessons/src/new.py",
        "solutions/loss.py",
    ]


def test_grading_refuses_to_start_when_the_judge_side_cannot_be_hidden(tmp_path):
    """Checks that use probing() in a way the grader cannot read: refused at the start, saying where, not an internal
    error for every student."""
    checkout = copy_course(tmp_path / "checkout")
    loss = checkout / "autograder" / "checks" / "loss.py"
    loss.write_text(loss.read_text() + "\n\ndef _new_helper():\n    flag = probing()\n    return flag\n")
    (tmp_path / "submissions").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(tmp_path / "submissions"),
            "--out",
            str(tmp_path / "out"),
            *isolation_args(),
        ],
        cwd=tmp_path,
        env=course_env(checkout),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "the checks' judge side cannot be hidden from the kernels: autograder.checks.loss line"
        in result.stderr
    )
