"""Stage 4 of grading, record: check each executed notebook, score it in the gradebook of record, guard the grader.

Every test cell must be the original and must carry the judge's verdict (``grading.judge``); scores
and feedback then come from nbgrader's own scoring of those verdicts in the real gradebook. The grader's own files
and gradebook are snapshotted and restored if anything changed them.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import nbformat

from . import report as records
from .course import db_url_for, nbgrader_config
from .repair import is_test_cell, nbgrader_metadata


def _fail_cell(cell, why: str) -> None:
    """Give a graded cell an error output, so that nbgrader scores it 0 and the feedback says why."""
    cell.outputs.append(
        nbformat.v4.new_output("error", ename="GradingError", evalue=why, traceback=[f"GradingError: {why}"])
    )


# The line nbgrader puts above a test cell that it added back (OverwriteCells.add_missing_cells)
ADDED_BACK = re.compile(
    r"\A# This cell \(id:[^)]+\) was missing from the submission\. It was added back by nbgrader\.\n\n"
)


def verify_executed(
    executed: nbformat.NotebookNode, source_nb: nbformat.NotebookNode
) -> tuple[list[str], str | None]:
    """Check an executed notebook before it is scored; return (notes, reason it cannot be scored).

    Every test cell must be the original (nbgrader restores them from a gradebook the notebook could
    reach) and must carry the judge's verdict (its outputs are then the judge's, not the kernel's).
    Cells that fail either check are scored 0; cells stopped at the cell time limit are noted.
    """
    originals = {
        nbgrader_metadata(c)["grade_id"]: c for c in source_nb.cells if is_test_cell(c)
    }  # written answers: by hand
    # Which cells are tests is the instructor's notebook's word, never the flags of the student's file.
    cells = {
        nbgrader_metadata(c).get("grade_id"): c
        for c in executed.cells
        if nbgrader_metadata(c).get("grade_id") in originals
    }
    missing = sorted(set(originals) - set(cells))
    if missing:
        return [], f"test cells {', '.join(missing)} are missing from the executed notebook"
    changed, silent = [], []
    for grade_id, original in originals.items():
        cell = cells[grade_id]
        if ADDED_BACK.sub("", cell.source) != original.source:
            _fail_cell(cell, "this test cell is not the original one")
            changed.append(grade_id)
        elif cell.metadata.get("siamese") != {"judged": True}:
            cell.outputs = []
            _fail_cell(cell, "the judge gave no verdict on this cell")
            silent.append(grade_id)
    timed_out = [
        grade_id
        for grade_id, cell in cells.items()
        if any("stopped at the time limit" in str(o.get("evalue", "")) for o in cell.get("outputs", []))
    ]
    notes = []
    if timed_out:
        notes.append(
            f"test cells {', '.join(timed_out)} were stopped at the time limit for one cell; scored 0"
        )
    if changed:
        notes.append(f"test cells {', '.join(changed)} ran in an edited form; scored 0")
    if silent:
        notes.append(f"cells {', '.join(silent)} have no verdict of the judge; scored 0")
    return notes, None


def record_scores(course: Path, db_url: str | None, student: str, lesson: str, executed: Path) -> dict:
    """Score an executed notebook in the real gradebook with nbgrader's own rules, and write its feedback."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, SaveAutoGrades
    from sqlalchemy.exc import SAWarning

    target = course / "executed" / student / lesson / f"{lesson}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(executed, target)
    config = nbgrader_config(course, db_url)
    config.CourseDirectory.submitted_directory = "executed"
    config.Autograde.sanitize_preprocessors = [CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    with (
        warnings.catch_warnings()
    ):  # SQLAlchemy's notes on nbgrader's session use, not the instructor's concern
        warnings.simplefilter("ignore", SAWarning)
        outcome = api.autograde(lesson, student, force=True, create=True)
        if not outcome["success"]:
            return {
                "error": f"could not record the scores ({(outcome.get('error') or '').strip().splitlines()[-1:]}); "
                "it is graded again on the next run",
                "retry": True,
            }
        with Gradebook(db_url_for(course, db_url)) as gradebook:
            forget_manual_grades(gradebook.find_submission_notebook(lesson, lesson, student))
            gradebook.db.commit()
        feedback = api.generate_feedback(lesson, student, force=True)  # from the gradebook of record
        with Gradebook(db_url_for(course, db_url)) as gradebook:
            return {
                **gradebook_entry(gradebook.find_submission_notebook(lesson, lesson, student)),
                "feedback_ok": bool(feedback["success"]),
            }


def forget_manual_grades(notebook) -> None:
    """A new file was recorded: points an instructor gave the one it replaced do not carry over to it."""
    for grade in notebook.grades:
        if grade.manual_score is not None:
            grade.manual_score = None
            grade.needs_manual_grade = (
                grade.auto_score is None
            )  # a written answer waits for its instructor again


def gradebook_entry(notebook) -> dict:
    """What ``grades.csv`` shows of one submitted notebook: its score in the gradebook and its answers still
    to grade."""
    awaiting = sum(1 for grade in notebook.grades if grade.needs_manual_grade)
    return {
        "score": notebook.score,
        "max_score": notebook.max_score,
        "awaiting": awaiting,
        "needs_manual_grade": awaiting > 0,
    }


def refresh_from_gradebook(course: Path, db_url: str | None, students: dict) -> None:
    """Bring every recorded lesson of ``students`` (the manifest's) up to date with the gradebook: manual grades too."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url_for(course, db_url)) as gradebook:
        for sid, record in students.items():
            for lesson, entry in record["lessons"].items():
                if "score" not in entry or "error" in entry:
                    continue
                try:
                    entry.update(gradebook_entry(gradebook.find_submission_notebook(lesson, lesson, sid)))
                except MissingEntry:
                    entry.setdefault("notes", []).append(
                        "not in the gradebook: the score is the one recorded last"
                    )


# ---------------------------------------------------------------- integrity of the grader


def _trusted_files(folders: list[Path], with_db: bool) -> list[Path]:
    return [
        path
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and (with_db or path.suffix != ".db")
    ]


def grader_snapshot(folders: list[Path], with_db: bool = False) -> dict[Path, bytes]:
    """The bytes of every file the grading trusts (compiled ``.pyc`` included; gradebooks only if ``with_db``)."""
    return {path: path.read_bytes() for path in _trusted_files(folders, with_db)}


def restore_grader(snapshot: dict[Path, bytes], folders: list[Path], with_db: bool = False) -> list[str]:
    """Put back any trusted file a notebook changed, deleted or added; return their names."""
    changed = []
    for path, data in snapshot.items():
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            changed.append(path.name)
    for path in _trusted_files(folders, with_db):
        if path not in snapshot:
            path.unlink()
            changed.append(path.name)
    return changed


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file, ``None`` if it does not exist."""
    return records.sha256(path.read_bytes()) if path.is_file() else None
