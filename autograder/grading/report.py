"""What grading remembers and reports: the manifest of what was graded, ``grades.csv`` and ``intake.csv``.

The manifest (``course/grading-manifest.json``) is the grader's memory between runs:

* ``ids``: every student id ever given, with the identity it belongs to (``canvas:123``,
  ``name:Zoë``), so that an id is never given to anyone else;
* ``students``: per id, the name to show and, per lesson, what became of the file handed in: the
  file's version (``sha256:...`` of its bytes, or its size and checksum where it was too large to
  read), the score or the reason it was not graded, the notes, and ``retry`` where the grader
  itself failed (the next run grades it again; a verdict on the upload stays until the file changes).

It is written after every student, so a run that is stopped loses only the students in flight.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..syllabus import BONUS, CORE, NAMES

MANIFEST = "grading-manifest.json"
VERSION = 2
PENDING = "not graded yet: the run stopped before this notebook was graded; run grade again"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def file_version(data: bytes) -> str:
    """How the manifest names the version of a file it read."""
    return f"sha256:{sha256(data)}"


def load_manifest(course: Path) -> dict:
    """The manifest of earlier runs (an empty one if none); a manifest of the first format is converted."""
    path = course / MANIFEST
    manifest = (
        json.loads(path.read_text(encoding="utf-8"))
        if path.is_file()
        else {"version": VERSION, "ids": {}, "students": {}}
    )
    if manifest.get("version") != VERSION:  # format 1: {student: {lesson: entry}}, ids from ASCII names
        old = manifest
        manifest = {"version": VERSION, "ids": {}, "students": {}}
        for sid, lessons in old.items():
            manifest["ids"][sid] = f"name:{sid}"
            entries = {
                lesson: {**{k: v for k, v in e.items() if k != "sha256"}, "file": f"sha256:{e.get('sha256')}"}
                for lesson, e in lessons.items()
            }
            manifest["students"][sid] = {"name": sid, "lessons": entries}
    return manifest


def save_manifest(course: Path, manifest: dict) -> None:
    """Write the manifest atomically."""
    partial = course / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    partial.replace(course / MANIFEST)


@dataclass
class StudentResult:
    """One row of ``grades.csv``."""

    student: str  # the name as the LMS gave it
    student_id: str  # the id in nbgrader's gradebook and the course folders
    scores: dict[str, float | None]
    late: list[str]  # lessons whose graded file the LMS marked late
    status: str
    notes: list[str]


def summarise(student_id: str, name: str, entries: dict, notes: list[str], late: list[str]) -> StudentResult:
    """One row: a score per lesson, one status, and the notes of the intake and of each lesson's grading.

    A lesson's score is what nbgrader's gradebook holds: the autograded points, plus the points an
    instructor gave its written answers; answers not graded yet count 0 and are named in the status.
    """
    scores: dict[str, float | None] = dict.fromkeys(NAMES)
    problems: list[str] = []
    notes = list(notes)
    awaiting = 0  # written answers no instructor has graded yet
    for lesson in NAMES:
        entry = entries.get(lesson)
        if entry is None:
            continue
        notes += [f"{lesson}: {note}" for note in entry.get("notes", [])]
        if entry.get("pending"):
            problems.append(f"{lesson} {PENDING}")
        elif "error" in entry:
            problems.append(f"{lesson} not graded: {entry['error']}")
        else:
            scores[lesson] = entry["score"]
            awaiting += entry.get("awaiting", int(bool(entry.get("needs_manual_grade"))))
    missing = [lesson for lesson in CORE if lesson not in entries]  # a bonus lesson is optional
    if missing:
        problems.append(f"no notebook for {', '.join(missing)}")
    if awaiting:
        problems.append(f"awaiting manual grading: {awaiting} answer{'' if awaiting == 1 else 's'}")
    return StudentResult(
        name, student_id, scores, late, "graded" if not problems else "; ".join(problems), notes
    )


def cell_text(value: str) -> str:
    """A value as a spreadsheet shows it and never runs it: unreadable characters replaced, formulas quoted."""
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return f"'{value}" if value.startswith(FORMULA_START) else value


def write_grades(path: Path, results: list[StudentResult]) -> None:
    """One row per student: name, id, a score per core lesson (empty if not graded), their total of 100, a score
    per bonus lesson (outside the total), late, status, notes."""
    partial = path.with_suffix(".partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "student_id", *CORE, "total", *BONUS, "late", "status", "notes"])
        for r in sorted(results, key=lambda r: (r.student.casefold(), r.student_id)):
            shown = {lesson: "" if score is None else f"{score:g}" for lesson, score in r.scores.items()}
            total = sum(r.scores[lesson] or 0 for lesson in CORE)
            writer.writerow(
                [
                    cell_text(r.student),
                    r.student_id,
                    *(shown[lesson] for lesson in CORE),
                    f"{total:g}",
                    *(shown[lesson] for lesson in BONUS),
                    " ".join(r.late),
                    cell_text(r.status),
                    cell_text("; ".join(r.notes)),
                ]
            )
    partial.replace(path)


def write_intake(path: Path, unowned: list[tuple[str, str]]) -> None:
    """``intake.csv``: every file of the submissions that belongs to no student, and what became of it."""
    partial = path.with_suffix(".partial")
    with open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "what happened"])
        for name, why in unowned:
            writer.writerow([cell_text(name), cell_text(why)])
    partial.replace(path)
