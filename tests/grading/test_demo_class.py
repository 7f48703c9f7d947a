"""The made-up class used to measure grading at scale, and its checker of grades.csv (fast, no grading)."""

from __future__ import annotations

import json

import pytest
from helpers import awaiting
from helpers import lesson_points as source_points

from autograder.grading.demo_class import check_grades, lesson_points, main, make_class, written_answers
from autograder.syllabus import CORE
from autograder.syllabus import NAMES as LESSONS


@pytest.fixture(scope="module")
def points() -> dict[str, float]:
    """Each lesson's autograded points."""
    return lesson_points()


def test_lessons_are_worth_100_points_together(points):
    """The checker's arithmetic rests on the course's 100 points (the core lessons' autograded ones and written
    answers'), and counts every written answer, the bonus lesson's too, as one a correct student waits for."""
    written = {lesson: source_points(lesson, "answer") for lesson in LESSONS}
    assert sum(points[lesson] + sum(written[lesson].values()) for lesson in CORE) == 100
    assert all(len(written[lesson]) == 1 for lesson in CORE)  # one written question per core lesson
    assert written_answers() == sum(len(answers) for answers in written.values())


def test_the_class_is_the_same_for_the_same_seed(tmp_path):
    """Two classes of one seed hand in the same kinds of work; every student has a folder of files."""
    first = make_class(tmp_path / "a", 30, seed=3)
    again = make_class(tmp_path / "b", 30, seed=3)
    assert first == again
    assert json.loads((tmp_path / "a" / "CLASS.json").read_text()) == first
    assert {kind.split(" ")[0] for kind in first.values()} >= {"correct", "bug", "blank"}
    assert all(len(list((tmp_path / "a" / student).iterdir())) == len(LESSONS) for student in first)


def row(scores: dict[str, float | None], status: str = "graded") -> dict[str, str]:
    """A grades.csv row."""
    return {
        **{name: "" if score is None else f"{score:g}" for name, score in scores.items()},
        "status": status,
    }


def test_the_checker_accepts_the_right_rows(points):
    """Correct: full marks; bug: fewer points in that lesson only; blank: 0; broken: the two reasons."""
    kinds = {"a": "correct", "b": "bug in 04_contrastive_loss", "c": "blank release", "d": "broken: ..."}
    buggy = {**points, "04_contrastive_loss": points["04_contrastive_loss"] - 5}
    broken = {**points, LESSONS[0]: None, LESSONS[1]: None}
    rows = {
        "a": row(points),
        "b": row(buggy),
        "c": row(dict.fromkeys(LESSONS, 0.0)),
        "d": row(
            broken,
            f"{LESSONS[0]} not graded: {LESSONS[0]}.ipynb is an empty file; {LESSONS[1]} not graded: "
            f"{LESSONS[1]}.ipynb is not a readable notebook (JSONDecodeError)",
        ),
    }
    assert check_grades(kinds, rows, points) == []
    waiting = {
        student: {**rows[student], "status": awaiting(6)} if student in "ab" else rows[student]
        for student in rows
    }
    assert (
        check_grades(kinds, waiting, points, answers=6) == []
    )  # correct and buggy students wrote their answers
    assert check_grades(kinds, rows, points, answers=6) == [
        "a (correct): status 'graded'",
        "b (bug in 04_contrastive_loss): status 'graded'",
    ]


def test_the_checker_names_every_wrong_row(points):
    """A missing row, a wrong status, a bug scored in full, a correct lesson scored 0: each is reported."""
    kinds = {"a": "correct", "b": "bug in 04_contrastive_loss", "c": "correct", "d": "blank release"}
    rows = {
        "a": row({**points, "02_cnn_backbone": 0.0}),
        "b": row(points),
        "d": row(dict.fromkeys(LESSONS, 0.0), "06_evaluation not graded: kernel died in cell 3"),
    }
    assert check_grades(kinds, rows, points) == [
        f"a (correct): 02_cnn_backbone scored 0.0, expected {points['02_cnn_backbone']}",
        f"b (bug in 04_contrastive_loss): 04_contrastive_loss scored {points['04_contrastive_loss']} of "
        f"{points['04_contrastive_loss']}",
        "c (correct): no row",
        "d (blank release): status '06_evaluation not graded: kernel died in cell 3'",
    ]


def test_check_from_the_command_line(tmp_path, capsys):
    """``--check grades.csv`` exits 1 when a row is wrong and says how many students were graded as expected."""
    kinds = make_class(tmp_path / "class", 3, seed=1)
    assert kinds == {"student001": "correct", "student002": "blank release", "student003": "blank release"}
    grades = tmp_path / "grades.csv"
    grades.write_text(
        "student,"
        + ",".join(LESSONS)
        + ",total,status,notes\n"
        + "".join(f"{student}," + ",".join("0" for _ in LESSONS) + ",0,graded,\n" for student in kinds)
    )
    assert main([str(tmp_path / "class"), "--check", str(grades)]) == 1  # student001 is not a 0
    assert capsys.readouterr().out.strip().endswith("2 of 3 students graded as expected")
