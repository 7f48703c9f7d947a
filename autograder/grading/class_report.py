"""``python -m autograder report``: the class's ``grades.csv`` and feedback again, from the gradebook, after
manual grading.

``grade`` writes ``grades.csv`` when it ends; written answers then await an instructor, who grades them in
nbgrader's formgrader (on the course folder ``OUT/course``). This command reads what the gradebook holds
now and writes the class's report again, into a folder of its own, without running any notebook:

    python -m autograder report --from OUT [--from OUT2 ...] [--db-url URL] --out DIR

Each ``--from`` is the output folder of a ``grade`` run (its manifest names the students, their ids,
their late lessons and notes); several are merged into one report, as for a class graded in parts.
``DIR`` gets ``grades.csv``, ``intake.csv`` (every run's files that belonged to no student) and
``feedback/<student id>/<lesson>.html``, made again by nbgrader from the gradebook.
"""

from __future__ import annotations

import csv
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import report as records
from .course import nbgrader_api
from .record import refresh_from_gradebook


@dataclass
class GradedRun:
    """One ``grade`` run's output folder: its course, and the students its manifest holds."""

    out: Path
    students: dict


def read_run(out: Path) -> GradedRun:
    """The manifest of the ``grade`` run that wrote ``out``; a clear error if there is none."""
    course = out / "course"
    if not (course / records.MANIFEST).is_file():
        raise FileNotFoundError(
            f"{out} holds no grading run (no {course / records.MANIFEST}): give the --out folder "
            "of a finished `python -m autograder grade`"
        )
    return GradedRun(out, records.load_manifest(course)["students"])


def merge_students(runs: list[GradedRun]) -> dict[str, tuple[GradedRun, dict]]:
    """``{student id: (the run that graded them, their record)}``; an id graded by two runs is an error."""
    merged: dict[str, tuple[GradedRun, dict]] = {}
    for run in runs:
        for sid, record in run.students.items():
            if sid in merged:
                raise ValueError(
                    f"student id {sid} is in both {merged[sid][0].out} and {run.out}: give each student's "
                    "run once"
                )
            merged[sid] = (run, record)
    return merged


def write_feedback(run: GradedRun, db_url: str | None, out: Path) -> list[str]:
    """nbgrader's feedback of every graded lesson of ``run``, made again from the gradebook into ``out/feedback``."""
    api = nbgrader_api(run.out / "course", db_url)
    failed = []
    for sid, record in sorted(run.students.items()):
        for lesson, entry in sorted(record["lessons"].items()):
            if "score" not in entry or "error" in entry:
                continue
            with warnings.catch_warnings():  # SQLAlchemy's notes on nbgrader's session use
                warnings.simplefilter("ignore")
                result = api.generate_feedback(lesson, sid, force=True)
            made = run.out / "course" / "feedback" / sid / lesson / f"{lesson}.html"
            if not result["success"] or not made.is_file():
                failed.append(f"{sid}/{lesson}")
                continue
            (out / "feedback" / sid).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made, out / "feedback" / sid / f"{lesson}.html")
    return failed


def unowned_files(runs: list[GradedRun]) -> list[tuple[str, str]]:
    """The rows of every run's ``intake.csv``."""
    rows = []
    for run in runs:
        path = run.out / "intake.csv"
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                rows += [(row["file"], row["what happened"]) for row in csv.DictReader(f)]
    return rows


def write_report(sources: list[Path], out: Path, db_url: str | None = None) -> list[records.StudentResult]:
    """Write ``grades.csv``, ``intake.csv`` and the feedback of the runs in ``sources`` into ``out``, from the
    gradebook."""
    runs = [read_run(source) for source in sources]
    students = merge_students(runs)
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        refresh_from_gradebook(run.out / "course", db_url, run.students)
    failed = [name for run in runs for name in write_feedback(run, db_url, out)]
    results = [
        records.summarise(
            sid, record.get("name", sid), record["lessons"], record.get("notes", []), record.get("late", [])
        )
        for sid, (_, record) in students.items()
    ]
    records.write_grades(out / "grades.csv", results)
    records.write_intake(out / "intake.csv", unowned_files(runs))
    if failed:
        print(f"warning: nbgrader could not make the feedback of {', '.join(failed)}")
    print(f"{len(results)} students → {out / 'grades.csv'}")
    return results
