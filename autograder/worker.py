"""Autograde one student's lessons; run by ``python -m autograder grade`` in a process of its own.

Prints one JSON line: ``{"lessons": {lesson: {"score", "max_score", "needs_manual_grade"} or {"error"}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .course import db_url_for, nbgrader_api


def failure_reason(log: str, error: str | None) -> str:
    """A one-line reason from nbgrader's log when autograde fails."""
    text = f"{log}\n{error or ''}"
    if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text:
        return "the kernel died while running the notebook (os._exit, sys.exit, a crash, or out of memory)"
    if "CellTimeoutError" in text or "Timeout waiting" in text:
        return "a cell ran past the time limit"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[INFO]")]
    return (lines[-1] if lines else "nbgrader failed")[:200]


def grade_lessons(course: Path, student: str, lessons: list[str], db_url: str | None = None) -> dict:
    """Autograde and write feedback for each lesson; never raise."""
    from nbgrader.api import Gradebook

    api = nbgrader_api(course, db_url)
    results = {}
    for lesson in lessons:
        outcome = api.autograde(lesson, student, force=True, create=True)
        if not outcome["success"]:
            results[lesson] = {"error": failure_reason(outcome.get("log", ""), outcome.get("error"))}
            continue
        with Gradebook(db_url_for(course, db_url)) as gradebook:
            notebook = gradebook.find_submission_notebook(lesson, lesson, student)
            results[lesson] = {"score": notebook.score, "max_score": notebook.max_score,
                               "needs_manual_grade": bool(notebook.needs_manual_grade)}
        api.generate_feedback(lesson, student, force=True)
    return {"lessons": results}


def main(argv: list[str] | None = None) -> int:
    """Command line of the worker."""
    parser = argparse.ArgumentParser(prog="python -m autograder.worker")
    parser.add_argument("course", type=Path)
    parser.add_argument("student")
    parser.add_argument("lessons", nargs="+")
    parser.add_argument("--db-url", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(grade_lessons(args.course, args.student, args.lessons, args.db_url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
