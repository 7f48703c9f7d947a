"""Helpers shared by the test modules (plain functions; fixtures live in conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import torch

import data_utils.fashion_mnist as fm

REPO = Path(__file__).resolve().parents[2]

# Variables that would let a test find data (or write) outside its tmp folders.
DATA_ENV_VARS = (fm.ENV_VAR, fm.ROOT_ENV_VAR)

CUDA = torch.cuda.is_available()
# Set in CI (make test): the sandbox and the cgroups must work, so tests that need them fail instead of skipping.
SANDBOX_REQUIRED = bool(os.environ.get("SIAMESE_REQUIRE_SANDBOX"))


def subprocess_env(**extra):
    """The current environment without the data variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in DATA_ENV_VARS}
    env.setdefault("OMP_NUM_THREADS", "1")  # as in conftest.py: no thread oversubscription
    # Subprocesses run in tmp folders: let them import the course even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_module(module, *args, cwd, env=None, timeout=300):
    """Run ``python -m module args`` in a fresh interpreter; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env=env if env is not None else subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def has_debian_data():
    """Whether Debian's dataset-fashion-mnist files are installed."""
    return fm._has_all(fm.DEBIAN_DIR)


def png_ok(path):
    """Whether ``path`` is a PNG file of more than 1 kB."""
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1024


def isolation_args() -> list[str]:
    """``grade``'s isolation option for this machine: the sandbox where it can be built (or must be: ``make test``
    as root on Debian), else ``--isolation off``, so that the grading tests still run on a laptop without it."""
    from autograder.grading.sandbox import availability

    if availability()[0] or os.environ.get("SIAMESE_REQUIRE_SANDBOX"):
        return []
    return ["--isolation", "off"]


def write_solved_notebooks(root):
    """The solved notebooks, written into ``root / "solved"`` by ``python -m autograder solutions``; that folder."""
    result = run_module("autograder", "solutions", root / "solved", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "solved"


def read_grades(path):
    """grades.csv as student (the name shown) → row."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def failed_checks(checks, *args) -> dict:
    """Run every check (visible, then hidden cases) on ``args``: ``{check name: first line and hint}`` of
    those that fail."""
    import contextlib
    import io

    from autograder.checks.report import CheckFailure

    failed = {}
    for check in checks:
        for hidden in (False, True):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    check(*args, hidden=hidden)
            except CheckFailure as error:
                failed[check.__name__.removeprefix("check_")] = str(error)
                break
    return failed


def assert_fails_exactly(checks, expected: dict, *args) -> None:
    """The checks on ``args`` fail exactly those named in ``expected`` ({check name: a fragment of its message})."""
    failed = failed_checks(checks, *args)
    assert set(failed) == set(expected), {name: text.splitlines()[0] for name, text in failed.items()}
    for name, fragment in expected.items():
        assert fragment.lower() in failed[name].lower(), failed[name]


def lesson_points(lesson: str, kind: str = "check") -> dict[str, int]:
    """grade_id → points of a lesson's ``check`` (autograded) or ``answer`` (written) cells, from its source."""
    from autograder.build import LESSONS_DIR, parse_lesson

    return {
        cell.args[0]: int(cell.args[1])
        for cell in parse_lesson(LESSONS_DIR / "src" / f"{lesson}.py")
        if cell.kind == kind
    }


def autograded_points(lesson: str) -> float:
    """What a correct notebook of ``lesson`` scores before any written answer is graded by hand."""
    return float(sum(lesson_points(lesson).values()))


def awaiting(answers: int) -> str:
    """The status part of a student whose ``answers`` written answers wait for their instructor."""
    return f"awaiting manual grading: {answers} answer{'' if answers == 1 else 's'}"


def set_manual_score(db_url: str, lesson: str, grade_id: str, student_id: str, points: float) -> None:
    """Grade one written answer by hand, as nbgrader's formgrader does: a manual score, no longer flagged."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gradebook:
        grade_row = gradebook.find_grade(grade_id, lesson, lesson, student_id)
        grade_row.manual_score = points
        grade_row.needs_manual_grade = False
        gradebook.db.commit()
