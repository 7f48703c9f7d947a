"""The instructor's workflow: release, solutions, and grading a class's submissions with nbgrader.

Grading never lets one submission stop the others: every notebook is checked (and repaired
where that is safe) before nbgrader sees it, every student is graded in a process of their
own, and every student gets a row in ``grades.csv`` saying what happened.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .build import LESSONS, build_all, generate_release, solved_notebook
from .course import db_url_for, nbgrader_api, put_environment_on_path

STUDENT_TIMEOUT_S = 600  # a whole student's course; each cell also has nbgrader's own limit


# ---------------------------------------------------------------- release and solutions

def release(out: Path, db_url: str | None = None) -> Path:
    """Build the nbgrader course in ``out``: config, source and release notebooks, gradebook."""
    lessons = build_all()
    released = generate_release(lessons, out, db_url)
    for name, nb in released.items():  # the release with exercise-named stubs, as in lessons/
        nbformat.write(nb, out / "release" / name / f"{name}.ipynb")
    return out / "release"


def write_solutions(out: Path) -> list[Path]:
    """Write the solved notebooks (every exercise filled in, hidden tests included) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lesson in build_all():
        path = out / f"{lesson.name}.ipynb"
        nbformat.write(solved_notebook(lesson.source), path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- collecting submissions

BROWSER_SUFFIX = re.compile(r"\s*\(\d+\)$")  # "name (1).ipynb" from repeated downloads
COPY_PREFIX = re.compile(r"copy of\s+", re.IGNORECASE)  # Colab's "Copy of name.ipynb"


def identify_lesson(filename: str) -> str | None:
    """The lesson a file name refers to, tolerating "Copy of " and " (1)"; ``None`` if none."""
    stem = BROWSER_SUFFIX.sub("", Path(filename).stem).lower()
    for lesson in LESSONS:
        if lesson in stem:
            return lesson
    for lesson in LESSONS:  # "pair_dataset.ipynb" without the number
        if lesson[3:] in stem:
            return lesson
    return None


def student_prefix(filename: str, lesson: str) -> str:
    """The student part of a flat file name like ``alice_Copy of 01_pair_dataset (1).ipynb``."""
    stem = BROWSER_SUFFIX.sub("", Path(filename).stem)
    at = stem.lower().find(lesson)
    if at < 0:
        at = stem.lower().find(lesson[3:])
    prefix = COPY_PREFIX.sub("", stem[:at]) if at >= 0 else stem
    return prefix.strip(" _-.")


def safe_id(name: str) -> str:
    """A student id nbgrader and file systems accept."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "unknown"


@dataclass
class StudentWork:
    """What one student handed in, and what the checks found."""

    student: str
    files: dict[str, list[Path]] = field(default_factory=dict)  # lesson → candidate files
    notes: list[str] = field(default_factory=list)  # problems found and repairs made
    unusable: dict[str, str] = field(default_factory=dict)  # lesson → why it cannot be graded


def collect(submissions: Path, workdir: Path) -> tuple[dict[str, StudentWork], list[str]]:
    """Find every student's notebooks in a folder or an LMS zip; return them and the files nobody owns."""
    if submissions.is_file() and zipfile.is_zipfile(submissions):
        root = workdir / "unzipped"
        with zipfile.ZipFile(submissions) as archive:
            for member in archive.infolist():
                target = (root / member.filename).resolve()
                if root.resolve() not in target.parents and target != root.resolve():
                    raise ValueError(f"{submissions}: unsafe path in zip: {member.filename}")
            archive.extractall(root)
        submissions = root
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions} is neither a folder nor a zip file of submissions")
    entries = [p for p in submissions.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    while len(entries) == 1 and entries[0].is_dir() and not any(identify_lesson(p.name) for p in entries[0].iterdir()):
        # an archive wrapped in one top folder ("submissions/alice/...")
        submissions = entries[0]
        entries = [p for p in submissions.iterdir() if not p.name.startswith((".", "__MACOSX"))]

    students: dict[str, StudentWork] = {}
    stray: list[str] = []

    def add(student: str, lesson: str | None, path: Path) -> None:
        work = students.setdefault(student, StudentWork(student))
        if lesson is None:
            work.notes.append(f"ignored {path.name} (not one of the lessons)")
        else:
            work.files.setdefault(lesson, []).append(path)

    for entry in sorted(entries):
        if entry.is_dir():
            student = safe_id(entry.name)
            students.setdefault(student, StudentWork(student))
            for path in sorted(entry.rglob("*")):
                if path.is_file() and not any(part.startswith((".", "__MACOSX")) for part in path.relative_to(entry).parts):
                    lesson = identify_lesson(path.name) if path.suffix == ".ipynb" else None
                    add(student, lesson, path)
        elif entry.suffix == ".ipynb":
            lesson = identify_lesson(entry.name)
            prefix = student_prefix(entry.name, lesson) if lesson else ""
            if not lesson or not prefix:
                stray.append(f"{entry.name}: cannot tell the {'student' if lesson else 'lesson'} from the file name")
                continue
            add(safe_id(prefix), lesson, entry)
        else:
            stray.append(f"{entry.name}: not a notebook")
    return students, stray


# ---------------------------------------------------------------- checking notebooks

def graded_ids(release_nb: nbformat.NotebookNode) -> list[str]:
    """The grade ids of the graded (test) cells of a released notebook."""
    return [c.metadata["nbgrader"]["grade_id"] for c in release_nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")]


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read any nbformat 4.x notebook (Colab saves 4.0) as the current minor version."""
    return nbformat.read(path, as_version=4)


def check_notebook(path: Path, release_nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode | None, list[str], str | None]:
    """Check one submitted notebook; return (repaired notebook, notes, reason it cannot be graded)."""
    notes: list[str] = []
    try:
        nb = read_notebook(path)
    except Exception as error:  # invalid JSON, not a notebook, unreadable
        return None, notes, f"{path.name} is not a readable notebook ({type(error).__name__})"
    cells_by_id: dict[str, list[int]] = {}
    for index, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id:
            cells_by_id.setdefault(grade_id, []).append(index)
    if not cells_by_id:
        return None, notes, f"{path.name} has no nbgrader cell metadata (saved by an editor that strips it)"
    duplicates = {gid: idx for gid, idx in cells_by_id.items() if len(idx) > 1}
    if duplicates:
        # nbgrader aborts the whole batch on a duplicated grade id: keep the first copy only.
        drop = {i for idx in duplicates.values() for i in idx[1:]}
        nb.cells = [c for i, c in enumerate(nb.cells) if i not in drop]
        notes.append(f"removed duplicated cells {', '.join(sorted(duplicates))}")
    missing = [gid for gid in graded_ids(release_nb) if gid not in cells_by_id]
    if missing:
        notes.append(f"re-added deleted test cells {', '.join(missing)}")
    nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 0), 4)
    return nb, notes, None


# ---------------------------------------------------------------- grading

@dataclass
class StudentResult:
    """One row of ``grades.csv``."""

    student: str
    scores: dict[str, float | None]
    status: str
    notes: list[str]


def prepare_course(out: Path, db_url: str | None = None) -> tuple[Path, dict[str, nbformat.NotebookNode]]:
    """The nbgrader course folder used for grading, with its release notebooks."""
    course = out / "course"
    if (course / "release").is_dir() and all((course / "release" / n / f"{n}.ipynb").is_file() for n in LESSONS):
        pass  # reuse: the gradebook keeps earlier grades
    else:
        release(course, db_url)
    released = {n: read_notebook(course / "release" / n / f"{n}.ipynb") for n in LESSONS}
    return course, released


def grade_student(course: Path, student: str, lessons: list[str], db_url: str | None, timeout_s: int) -> dict:
    """Autograde one student's lessons in a separate process, so a crash or a hang stays theirs."""
    command = [sys.executable, "-m", "autograder.worker", str(course), student, *lessons]
    if db_url:
        command += ["--db-url", db_url]
    env = dict(os.environ)
    env.pop("SIAMESE_COURSE_QUICK", None)  # nbgrader sets NBGRADER_EXECUTION, which implies quick mode
    # Checks are small: one thread each avoids OpenMP threads of parallel graders waiting on each other.
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"grading took longer than {timeout_s} s (an endless loop?)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"grading process failed ({tail[0][:200]})"}
    return json.loads(lines[-1])


def grade(submissions: Path, out: Path, jobs: int = 1, db_url: str | None = None,
          timeout_s: int = STUDENT_TIMEOUT_S) -> list[StudentResult]:
    """Check, repair and autograde every student's notebooks; write ``grades.csv`` and feedback into ``out``."""
    put_environment_on_path()
    out.mkdir(parents=True, exist_ok=True)
    course, released = prepare_course(out, db_url)
    with tempfile.TemporaryDirectory() as tmp:
        students, stray = collect(submissions, Path(tmp))
        for line in stray:
            print(f"warning: {line}")
        plans: dict[str, list[str]] = {}
        for work in students.values():
            plans[work.student] = []
            for lesson in LESSONS:
                candidates = work.files.get(lesson, [])
                if not candidates:
                    continue
                if len(candidates) > 1:
                    candidates.sort(key=lambda p: p.stat().st_mtime)
                    work.notes.append(f"{len(candidates)} files for {lesson}; graded the newest, {candidates[-1].name}")
                nb, notes, reason = check_notebook(candidates[-1], released[lesson])
                work.notes += [f"{lesson}: {note}" for note in notes]
                if reason:
                    work.unusable[lesson] = reason
                    continue
                target = course / "submitted" / work.student / lesson / f"{lesson}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_file():
                    work.notes.append(f"{lesson}: replaced an earlier submission")
                nbformat.write(nb, target)
                plans[work.student].append(lesson)

    def run_one(student: str) -> tuple[str, dict]:
        if not plans[student]:
            return student, {"lessons": {}}
        return student, grade_student(course, student, plans[student], db_url, timeout_s)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        outcomes = dict(pool.map(run_one, sorted(plans)))
    results = [summarise(students[s], outcomes[s]) for s in sorted(students)]
    write_grades(out / "grades.csv", results)
    collect_feedback(course, out / "feedback")
    print(f"graded {len(results)} students in {time.perf_counter() - started:.1f} s → {out / 'grades.csv'}")
    return results


def summarise(work: StudentWork, outcome: dict) -> StudentResult:
    """Turn a worker's outcome into a row: scores per lesson and one status."""
    scores: dict[str, float | None] = {lesson: None for lesson in LESSONS}
    problems: list[str] = []
    if "error" in outcome:
        problems.append(f"not graded: {outcome['error']}")
    for lesson, result in outcome.get("lessons", {}).items():
        if result.get("error"):
            problems.append(f"{lesson} not graded: {result['error']}")
        else:
            scores[lesson] = result["score"]
            if result.get("needs_manual_grade"):
                problems.append(f"{lesson} needs manual grading")
    for lesson, reason in work.unusable.items():
        problems.append(f"{lesson} not graded: {reason}")
    missing = [lesson for lesson in LESSONS if lesson not in work.files and lesson not in work.unusable]
    if missing:
        problems.append(f"no notebook for {', '.join(missing)}")
    status = "graded" if not problems else "; ".join(problems)
    return StudentResult(work.student, scores, status, work.notes)


def write_grades(path: Path, results: list[StudentResult]) -> None:
    """One row per student: a score per lesson (empty if not graded), the total out of 100, the status."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *LESSONS, "total", "status", "notes"])
        for r in results:
            total = sum(s for s in r.scores.values() if s is not None)
            writer.writerow([r.student, *("" if r.scores[l] is None else f"{r.scores[l]:g}" for l in LESSONS),
                             f"{total:g}", r.status, "; ".join(r.notes)])


def collect_feedback(course: Path, out: Path) -> None:
    """Copy nbgrader's per-student feedback HTML into ``out/<student>/``."""
    feedback = course / "feedback"
    if not feedback.is_dir():
        return
    for html in feedback.glob("*/*/*.html"):
        student = html.parts[-3]
        target = out / student / html.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(html, target)
