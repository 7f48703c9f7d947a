"""Intake that never loses a student, graded for real: one LMS-style zip full of hard cases, and failures injected.

The zip holds accented, non-Latin and colliding names, leading dots, an option-like folder, members aimed
at canary folders outside (by ``..`` and by an absolute path), ``sub/../x``, duplicated members, a link,
a zip bomb of 1 GiB, the three LMS formats, and one complete, correct student. Students who only
exercise intake hand in lesson 4 alone (the cheapest to grade). The grader runs as
``python -m autograder grade`` with a TMPDIR of the test's, and its own peak memory is watched.

A second test grades a small class in-process with a failure injected at each stage of one
student's grading, then again without: the others are graded, the failed ones get a row with a
reason, and the next run grades what failed because of the grader.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import time
import unicodedata
import zipfile
from pathlib import Path

import pytest
from helpers import (
    isolation_args,
    run_module,
    subprocess_env,
    write_solved_notebooks,
)
from helpers import (
    read_grades as read_rows,
)
from helpers.grading import BUGGY_SCORE, COURSE_SCORE, COURSE_STATUS, FULL_SCORE

from autograder.grading import collect as intake
from autograder.grading import execute
from autograder.grading import run as grading
from autograder.syllabus import CORE
from autograder.syllabus import NAMES as LESSONS

LESSON = "04_contrastive_loss"
NB = f"{LESSON}.ipynb"
OTHERS = ", ".join(
    lesson for lesson in CORE if lesson != LESSON
)  # the missing core lessons (a bonus is optional)
BUG = (
    "min=0).pow(2))",
    "min=0).pow(2)).detach()",
)  # no gradient through the loss: fails only the gradient checks
BOMB_BYTES = 1024**3
MEMORY_LIMIT_KB = 500 * 1024


@pytest.fixture(scope="module")
def solved(tmp_path_factory) -> Path:
    """The solved notebooks (``python -m autograder solutions``)."""
    return write_solved_notebooks(tmp_path_factory.mktemp("intake-solved"))


def notebook_bytes(solved: Path, lesson: str = LESSON, buggy: bool = False) -> bytes:
    """A solved notebook's bytes, with lesson 4's typical bug if ``buggy``."""
    text = (solved / f"{lesson}.ipynb").read_text()
    if buggy:
        assert text.count(BUG[0]) == 1
        text = text.replace(*BUG)
    return text.encode()


def write_member(archive: zipfile.ZipFile, name: str, data: bytes, when=(2026, 11, 20, 10, 0, 0)) -> None:
    """One member with its name exactly as given (``..``, absolute paths and all) and a time."""
    archive.writestr(zipfile.ZipInfo(name, when), data)


def write_bomb(archive: zipfile.ZipFile, name: str) -> None:
    """1 GiB of zeros, deflated to about 1 MiB."""
    chunk = bytes(1024 * 1024)
    with archive.open(zipfile.ZipInfo(name, (2026, 11, 20, 10, 0, 0)), "w", force_zip64=True) as member:
        for _ in range(BOMB_BYTES // len(chunk)):
            member.write(chunk)


# name shown in grades.csv → (lesson-4 score or None, what the status says, a note it must have, late)
EXPECTED = {
    "Ada Lovelace": (FULL_SCORE, COURSE_STATUS, None, ""),
    "Zoë": (FULL_SCORE, f"no notebook for {OTHERS}", "2 files for 04_contrastive_loss", ""),
    "Zoé": (BUGGY_SCORE, f"no notebook for {OTHERS}", None, ""),
    "李雷": (FULL_SCORE, f"no notebook for {OTHERS}", None, ""),
    "王芳": (BUGGY_SCORE, f"no notebook for {OTHERS}", None, ""),
    "..x": (FULL_SCORE, f"no notebook for {OTHERS}", None, ""),
    "'--out": (FULL_SCORE, f"no notebook for {OTHERS}", None, ""),
    "evil": (None, "no notebook for 01_pair_dataset", "unsafe name in the archive (a path through '..')", ""),
    "abs": (None, "no notebook for 01_pair_dataset", "unsafe name in the archive (an absolute path)", ""),
    "subby": (
        None,
        "no notebook for 01_pair_dataset",
        "unsafe name in the archive (a path through '..')",
        "",
    ),
    "linker": (None, "no notebook for 01_pair_dataset", "a link in the archive, not a file", ""),
    "dup": (
        FULL_SCORE,
        f"no notebook for {OTHERS}",
        "the archive holds 2 members named dup/04_contrastive_loss.ipynb",
        "",
    ),
    "bomber": (None, f"{LESSON} not graded: file too large (1024 MB; limit 20 MB): bomber/{NB}", None, ""),
    "heavy": (
        None,
        f"{LESSON} not graded: files too large (30 MB together; limit 25 MB for one student)",
        None,
        "",
    ),
    "hoppergrace": (FULL_SCORE, f"no notebook for {OTHERS}", None, LESSON),
    "Grace Hopper": (BUGGY_SCORE, f"no notebook for {OTHERS}", None, ""),
    "Alan Turing": (FULL_SCORE, f"no notebook for {OTHERS}", "2 files for 04_contrastive_loss", LESSON),
}


def make_class_zip(path: Path, solved: Path, canary: Path) -> None:
    """The LMS-style zip of every intake case (see the module's docstring)."""
    good, buggy = notebook_bytes(solved), notebook_bytes(solved, buggy=True)
    climb = "../" * 12 + str(canary).lstrip("/")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for lesson in LESSONS:
            write_member(archive, f"Ada Lovelace/{lesson}.ipynb", notebook_bytes(solved, lesson))
        write_member(archive, f"Zoë_{NB}", good, (2026, 11, 20, 11, 0, 0))
        write_member(
            archive, unicodedata.normalize("NFD", f"Zoë_{LESSON} (1).ipynb"), buggy
        )  # older, same Zoë
        write_member(archive, f"Zoé_{NB}", buggy)
        write_member(archive, f"李雷_{NB}", good)
        write_member(archive, f"王芳_{NB}", buggy)
        write_member(archive, f"..x_{NB}", good)
        write_member(archive, f"--out/{NB}", good)
        write_member(archive, f"{climb}/evil_{NB}", good)
        write_member(archive, f"{canary}/abs_{NB}", good)
        write_member(archive, f"sub/../subby_{NB}", good)
        link = zipfile.ZipInfo(f"linker/{NB}", (2026, 11, 20, 10, 0, 0))
        link.external_attr = (0o120777) << 16
        archive.writestr(link, str(canary / "canary.txt"))
        with pytest.warns(UserWarning, match="Duplicate name"):
            write_member(archive, f"dup/{NB}", buggy)
            write_member(archive, f"dup/{NB}", good)
        write_bomb(archive, f"bomber/{NB}")
        padding = b" " * (15 * 1024 * 1024)  # two notebooks of 15 MB: each under 20 MB, together over 25 MB
        write_member(archive, f"heavy/{NB}", good[:-2] + padding + good[-2:])
        write_member(
            archive,
            "heavy/01_pair_dataset.ipynb",
            notebook_bytes(solved, "01_pair_dataset")[:-2] + padding + b"}\n",
        )
        write_member(archive, f"hoppergrace_LATE_1234_567890_Copy of {LESSON} (1).ipynb", good)
        write_member(archive, f"Grace Hopper_5678_assignsubmission_file_/{NB}", buggy)
        stamp1, stamp2 = "2026-11-20-10-00-00", "2026-11-21-09-30-00"
        write_member(
            archive, f"Lesson 4_at1_attempt_{stamp1}.txt", b"Name: Alan Turing (at1)\nAssignment: Lesson 4\n"
        )
        write_member(archive, f"Lesson 4_at1_attempt_{stamp1}_{NB}", buggy)
        write_member(archive, f"Lesson 4_at1_attempt_{stamp2}_LATE_{NB}", good)
        write_member(archive, "README.txt", b"the instructor's notes\n")


def grade_watched(zip_path: Path, out: Path, tmpdir: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run the grader on the zip with TMPDIR=tmpdir; return the process and its own peak resident memory (kB)."""
    command = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(zip_path),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--notebook-timeout",
        "120",
        "--cell-timeout",
        "20",
        "--max-student-mb",
        "25",
        *isolation_args(),
    ]
    env = subprocess_env(TMPDIR=tmpdir)
    peak = 0
    with subprocess.Popen(
        command, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        status = Path(f"/proc/{process.pid}/status")
        reader = threading.Thread(target=lambda: setattr(process, "outputs", process.communicate()))
        reader.start()
        while process.poll() is None:
            try:
                line = next(entry for entry in status.read_text().splitlines() if entry.startswith("VmHWM:"))
                peak = max(
                    peak, int(line.split()[1])
                )  # the high-water mark only grows: the last look is the peak
            except (OSError, StopIteration, ValueError):
                pass
            time.sleep(0.05)
        reader.join()
    stdout, stderr = process.outputs
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), peak


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def intake_class(tmp_path_factory, solved):
    """The zip graded twice with the same command: (first run, its peak kB, second run, out, canary, tmpdir, zip)."""
    root = tmp_path_factory.mktemp("intake-class")
    canary = root / "canary"
    canary.mkdir()
    (canary / "canary.txt").write_text("untouched\n")
    zip_path = root / "class.zip"
    make_class_zip(zip_path, solved, canary)
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    out = root / "out"
    first, peak = grade_watched(zip_path, out, tmpdir)
    rows_after_first = (out / "grades.csv").read_bytes() if (out / "grades.csv").is_file() else b""
    second, _ = grade_watched(zip_path, out, tmpdir)
    print(
        f"\nintake class: first run {first.stdout.strip().splitlines()[-1:]}; grader's peak {peak / 1024:.0f} MB"
    )
    return first, peak, second, rows_after_first, out, canary, tmpdir, zip_path


@pytest.mark.slow
def test_the_intake_class_is_graded_in_one_run(intake_class):
    """The run exits 0 without a traceback, and every distinct student has exactly one row."""
    first, _, _, _, out, _, _, _ = intake_class
    assert first.returncode == 0, (first.stdout[-3000:], first.stderr[-3000:])
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        names = [row["student"] for row in csv.DictReader(f)]
    assert sorted(names) == sorted(EXPECTED), names
    assert len(set(names)) == len(names)


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_intake_student_gets_the_right_row(intake_class, student):
    """Each student's lesson-4 score, status, notes and late mark are what their upload calls for."""
    out = intake_class[4]
    row = read_rows(out / "grades.csv")[student]
    score, status, note, late = EXPECTED[student]
    got = float(row[LESSON]) if row[LESSON] else None
    assert got == score, row
    assert status in row["status"], row
    assert note is None or note in row["notes"], row
    assert row["late"] == late, row
    if student == "Ada Lovelace":
        assert (float(row["total"]), row["status"]) == (COURSE_SCORE, COURSE_STATUS), row


@pytest.mark.slow
def test_nothing_outside_is_touched_and_strays_are_listed(intake_class):
    """The canaries are untouched, nothing new remains in TMPDIR, and the file of no student is in intake.csv."""
    _, _, _, _, out, canary, tmpdir, _ = intake_class
    assert snapshot(canary) == {"canary.txt": b"untouched\n"}
    assert list(tmpdir.iterdir()) == []
    with open(out / "intake.csv", newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == [
            ["file", "what happened"],
            ["README.txt", "not a lesson notebook, and no student in its name"],
        ]
    assert not any("canary" in str(p) for p in out.rglob("*")), "a member's name became a path in the output"


@pytest.mark.slow
def test_the_grader_stays_small_on_a_zip_bomb(intake_class):
    """The grader's own process (not its kernels) peaks under 500 MB with a 1 GiB member in the zip."""
    peak = intake_class[1]
    assert 0 < peak < MEMORY_LIMIT_KB, f"VmHWM {peak} kB"


@pytest.mark.slow
def test_the_same_command_again_grades_nothing_and_changes_no_row(intake_class):
    """A second run over the same zip grades no one and writes the same grades.csv, byte for byte."""
    _, _, second, rows_after_first, out, _, _, _ = intake_class
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"graded 0 students ({len(EXPECTED)} in grades.csv)" in second.stdout, second.stdout
    assert (out / "grades.csv").read_bytes() == rows_after_first


def test_an_archive_over_its_limit_is_refused_with_one_message(tmp_path):
    """`grade` with a zip over --max-archive-mb exits 1 with one line saying so, before anything is written."""
    path = tmp_path / "class.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"a_{NB}", bytes(3 * 1024 * 1024))
    result = run_module(
        "autograder", "grade", path, "--out", tmp_path / "out", "--max-archive-mb", "1", cwd=tmp_path
    )
    assert result.returncode == 1 and "over the limit of 1 MB for one archive" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- failures injected at each stage


class Injected(RuntimeError):
    """The failure a test puts into the grader."""


@pytest.fixture(scope="module")
def injected_runs(tmp_path_factory, solved):
    """A class of six (one healthy, one failure per stage) graded with the failures, then again without."""
    root = tmp_path_factory.mktemp("injected")
    subs = root / "subs"
    subs.mkdir()
    victims = ("intake_victim", "repair_victim", "exec_victim", "record_victim", "killed_victim")
    for student in ("healthy", *victims):
        (subs / f"{student}_{NB}").write_bytes(notebook_bytes(solved))
    out = root / "out"
    limits = grading.Limits(notebook_timeout=120, cell_timeout=20)
    with pytest.MonkeyPatch.context() as patch:
        inject(patch)
        grading.grade(subs, out, jobs=2, limits=limits, isolate=not isolation_args())
    first = read_rows(out / "grades.csv")
    grading.grade(subs, out, jobs=2, limits=limits, isolate=not isolation_args())
    return first, read_rows(out / "grades.csv")


def inject(patch: pytest.MonkeyPatch) -> None:
    """Make each stage of the grader fail for one student: intake, repair, execution, recording, a killed worker."""
    real_place, real_check, real_run, real_record, real_start = (
        intake.place,
        grading.check_notebook,
        grading.run_worker,
        grading.record_scores,
        execute._start_worker,
    )

    def place(upload, parts, *args):
        if "intake_victim" in parts[-1]:
            raise Injected("intake")
        return real_place(upload, parts, *args)

    def check_notebook(data, name, *args):
        if name.startswith("repair_victim"):
            raise Injected("repair")
        return real_check(data, name, *args)

    def run_worker(sandbox, student, *args, **kwargs):
        if student == "exec_victim":
            raise Injected("execution")
        return real_run(sandbox, student, *args, **kwargs)

    def record_scores(course, db_url, student, *args):
        if student == "record_victim":
            raise Injected("recording")
        return real_record(course, db_url, student, *args)

    def start_worker(sandbox, student, *args):
        process, lines = real_start(sandbox, student, *args)  # forked from the zygote, or started afresh
        if student == "killed_victim":
            process.kill()  # the worker dies the way the OOM killer ends it
        return process, lines

    patch.setattr(intake, "place", place)
    patch.setattr(grading, "check_notebook", check_notebook)
    patch.setattr(grading, "run_worker", run_worker)
    patch.setattr(grading, "record_scores", record_scores)
    patch.setattr(execute, "_start_worker", start_worker)


@pytest.mark.slow
@pytest.mark.parametrize(
    "student, reason",
    [
        ("intake_victim", f"skipped intake_victim_{NB}: it could not be read (Injected: intake)"),
        ("repair_victim", "internal error while reading and checking the notebook (Injected: repair)"),
        ("exec_victim", "internal error while executing the notebook (Injected: execution)"),
        ("record_victim", "internal error while recording the scores (Injected: recording)"),
        ("killed_victim", "the grading process died (out of memory?); it is graded again on the next run"),
    ],
)
def test_a_failure_at_any_stage_stays_with_its_student(injected_runs, student, reason):
    """The failed student has a row that says why; the healthy one is graded in the same run."""
    first, _ = injected_runs
    assert float(first["healthy"][LESSON]) == FULL_SCORE, first["healthy"]
    row = first[student]
    assert reason in row["status"] + row["notes"], row
    assert not row[LESSON], row


@pytest.mark.slow
@pytest.mark.parametrize(
    "student", ["intake_victim", "repair_victim", "exec_victim", "record_victim", "killed_victim"]
)
def test_the_next_run_grades_what_the_grader_failed_on(injected_runs, student):
    """Without the failures, the same command grades every victim: full points, no trace of the failure in the
    status."""
    _, second = injected_runs
    row = second[student]
    assert float(row[LESSON]) == FULL_SCORE and "internal error" not in row["status"], row
    assert float(second["healthy"][LESSON]) == FULL_SCORE
