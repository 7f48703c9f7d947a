"""Written answers graded by hand: awaiting in grades.csv, scored by `report` after formgrader, kept by a later `grade`.

Lesson 4's written question (``written_4_6``) is graded through the real nbgrader pipeline, into SQLite and into the
local PostgreSQL server. Manual scores are set through nbgrader's gradebook API, as formgrader sets them.
"""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from helpers import awaiting, lesson_points, read_grades, set_manual_score
from helpers.grading import (
    FULL_SCORE,
    LESSON,
    MISSING,
    course_env,
    grade,
    lesson_score,
    nbgrader_meta,
)

[(ANSWER_ID, ANSWER_POINTS)] = lesson_points(LESSON, "answer").items()  # the lesson's one written question
MANUAL = (
    ANSWER_POINTS - 0.5
)  # the instructor's score: not full marks, so that the feedback shows which score it is
AUTOGRADED = FULL_SCORE  # lesson 4's test cells
AWAITING = awaiting(1)


@pytest.fixture(scope="module")
def answered(request):
    """A copy of the course, and its solved lesson 4, whose written answer holds the model answer."""
    _, code, solved = request.getfixturevalue("workspace")  # tests/grading/conftest.py
    return code, nbformat.read(solved / f"{LESSON}.ipynb", as_version=4)


def answer_cell(nb):
    """The written answer cell of a lesson 4 notebook."""
    return next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == ANSWER_ID)


def hand_in(subs, student: str, nb) -> None:
    """Write one student's lesson 4."""
    (subs / student).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, subs / student / f"{LESSON}.ipynb")


def report(code, out, into, *options: str) -> dict[str, dict[str, str]]:
    """Run ``python -m autograder report --from out --out into``; grades.csv's rows."""
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "report", "--from", str(out), "--out", str(into), *options],
        cwd=out.parent,
        env=course_env(code),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    return read_grades(into / "grades.csv")


def summary(rows: dict[str, dict[str, str]]) -> dict[str, tuple[float | None, str]]:
    """student → (lesson 4's score, status)."""
    return {student: (lesson_score(row), row["status"]) for student, row in rows.items()}


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_written_answers_are_graded_by_hand_and_kept(answered, database, tmp_path, request):
    """Awaiting after `grade`; scored by `report` once graded by hand; kept by a second `grade`; reset when
    resubmitted."""
    code, solved = answered
    db_options = ["--db-url", request.getfixturevalue("postgres_url")] if database == "postgresql" else []
    subs, out = tmp_path / "submissions", tmp_path / "out"
    hand_in(subs, "wrote", solved)
    blank = nbformat.from_dict(solved)
    answer_cell(blank).source = "YOUR ANSWER HERE"  # the release's stub, untouched
    hand_in(subs, "blank", blank)

    first = grade(code, subs, out, *db_options)
    assert first.process.returncode == 0, (first.process.stdout[-3000:], first.process.stderr[-3000:])
    assert summary(first.rows) == {
        "wrote": (AUTOGRADED, f"{MISSING}; {AWAITING}"),
        "blank": (AUTOGRADED, MISSING),
    }
    assert (
        answer_cell(
            nbformat.read(out / "course" / "release" / LESSON / f"{LESSON}.ipynb", as_version=4)
        ).source
        == "YOUR ANSWER HERE"
    )  # students never see the model answer

    db_url = db_options[1] if db_options else f"sqlite:///{out / 'course' / 'gradebook.db'}"
    set_manual_score(db_url, LESSON, ANSWER_ID, first.rows["wrote"]["student_id"], MANUAL)
    reported = report(code, out, tmp_path / "report", *db_options)
    assert summary(reported) == {"wrote": (AUTOGRADED + MANUAL, MISSING), "blank": (AUTOGRADED, MISSING)}
    for student in ("wrote", "blank"):
        feedback = tmp_path / "report" / "feedback" / reported[student]["student_id"] / f"{LESSON}.html"
        assert feedback.is_file(), student
    assert (
        str(AUTOGRADED + MANUAL)
        in (tmp_path / "report" / "feedback" / reported["wrote"]["student_id"] / f"{LESSON}.html").read_text()
    )

    again = grade(code, subs, out, *db_options)  # nothing handed in changed: the manual points stay
    assert again.process.returncode == 0, again.process.stderr[-3000:]
    assert summary(again.rows) == summary(reported)

    rewritten = nbformat.from_dict(solved)
    answer_cell(rewritten).source = "The threshold grows with the margin."
    hand_in(subs, "wrote", rewritten)
    resubmitted = grade(code, subs, out, *db_options)  # a new file: its answer waits for its instructor again
    assert resubmitted.process.returncode == 0, resubmitted.process.stderr[-3000:]
    assert summary(resubmitted.rows)["wrote"] == (AUTOGRADED, f"{MISSING}; {AWAITING}")
    assert "a new submission replaced" in resubmitted.rows["wrote"]["notes"]


def test_report_refuses_a_folder_that_no_grading_run_wrote(tmp_path):
    """`report --from` a folder without a grading manifest says what to give instead."""
    from helpers import run_module

    result = run_module(
        "autograder", "report", "--from", tmp_path / "nothing", "--out", tmp_path / "r", cwd=tmp_path
    )
    assert (
        result.returncode == 1 and "holds no grading run" in result.stderr and "--out folder" in result.stderr
    )
