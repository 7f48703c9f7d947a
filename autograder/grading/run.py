"""The instructor's grading run, as a list of named stages; and the release and solutions commands.

Grading never lets one submission stop the others, and never loses a grade or a student:

1. **collect** (``collect.py``): every upload, from a folder or an LMS zip, read file by file with
   size limits, sorted into students with ids that never collide;
2. **repair** (``repair.py``): every notebook checked before nbgrader sees it, repaired where that is
   safe, and the repair noted;
3. **execute** (``execute.py``, ``worker.py``, ``sandbox.py``): every student in a throwaway sandbox
   course, executed by a worker of their own, each kernel under bubblewrap, with time, memory,
   process and output limits;
4. **record** (``record.py``): each executed notebook checked and scored in the gradebook of record
   by nbgrader's own scoring, one student at a time, after checks that the grader was not tampered with;
5. **report** (``report.py``): the manifest, ``grades.csv`` (a row for every student, rewritten after
   each one) and ``intake.csv``.

A failure at any stage of one student's grading becomes that student's status; what failed because
of the grader itself is graded again by the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from .. import syllabus
from ..build import build_all, generate_release, solved_notebook
from . import collect as intake
from . import judge_side, safe_view
from . import report as records
from . import sandbox as sandbox_limits
from .course import (
    CELL_TIMEOUT_S,
    GRADEBOOK_FILE,
    changed_since,
    check_database,
    code_environment,
    copy_course_code,
    db_url_for,
    gradebook_sync_lock,
    put_environment_on_path,
    write_config,
)
from .demos import skip_demos
from .execute import make_sandbox, run_worker, worker_environment
from .record import (
    file_digest,
    grader_snapshot,
    record_scores,
    refresh_from_gradebook,
    restore_grader,
    verify_executed,
)
from .repair import check_notebook
from .timing import Timings
from .zygote import Zygote, start_zygote

NOTEBOOK_TIMEOUT_S = 300  # one lesson, all cells together
MEMORY_LIMIT_MB = 8192  # one student's processes together (cgroups), else each process's address space
MAX_PROCESSES = 512  # one student's processes and threads together (cgroups): torch starts dozens of threads
EXECUTED_LIMIT_MB = 64  # an executed notebook coming back from the sandbox (nbgrader limits each output)


def release(out: Path, db_url: str | None = None, sandbox_template: Path | None = None) -> Path:
    """Build the nbgrader course in ``out``: config, source and release notebooks, gradebook.

    With ``sandbox_template``, make the same course there too, with a SQLite gradebook of its own (what ``grade``
    makes each student's sandbox from): one process and one build of the lessons serve both, and a course whose
    own gradebook holds no student yet is simply copied.
    """
    if sandbox_template is not None and overlap(out, sandbox_template):
        raise ValueError(
            f"the sandbox template {sandbox_template} and the course {out} must be separate folders, "
            "neither inside the other: the template's gradebook is its own"
        )
    if db_url:
        check_database(db_url)
    lessons = build_all()
    with gradebook_sync_lock(db_url):  # shards building their course into one gradebook take turns
        released = generate_release(lessons, out, db_url)
    write_release(released, out)
    if sandbox_template is None:
        return out / "release"
    if db_url or holds_students(out):  # a given gradebook, or one already graded: the template gets its own
        write_release(generate_release(lessons, sandbox_template), sandbox_template)
    else:
        copy_as_template(out, sandbox_template)
    return out / "release"


def holds_students(course: Path) -> bool:
    """Whether the course's own gradebook has students in it (a course built again after grading)."""
    # Read-only: opening nbgrader's Gradebook would add a course row of its own to the file.
    uri = f"{(course / GRADEBOOK_FILE).resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
        return connection.execute("SELECT count(*) FROM student").fetchone()[0] > 0


def copy_as_template(course: Path, template: Path) -> None:
    """The template as a copy of a course just built with its own SQLite gradebook (no student in it): its
    notebooks and a byte copy of that gradebook, with a configuration rooted in the template."""
    for folder in ("source", "release"):
        shutil.copytree(course / folder, template / folder, dirs_exist_ok=True)
    shutil.copyfile(course / GRADEBOOK_FILE, template / GRADEBOOK_FILE)
    write_config(template)


def overlap(first: Path, second: Path) -> bool:
    """Whether two folders are one, or one is inside the other."""
    a, b = first.resolve(), second.resolve()
    return a == b or a in b.parents or b in a.parents


def write_release(released: dict[str, nbformat.NotebookNode], course: Path) -> None:
    """Write the release with exercise-named stubs over nbgrader's, as in ``lessons/``."""
    for name, nb in released.items():
        nbformat.write(nb, course / "release" / name / f"{name}.ipynb")


def write_solutions(out: Path) -> list[Path]:
    """Write the solved notebooks (every exercise filled in, hidden tests included) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lesson in build_all():
        path = out / f"{lesson.name}.ipynb"
        nbformat.write(solved_notebook(lesson.source), path)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Course:
    """The course folders a run grades into, and the notebooks every submission is checked against."""

    course: Path  # the gradebook of record, submitted/, feedback/
    template: Path  # what each student's sandbox is made from
    released: dict[str, nbformat.NotebookNode]  # lesson → the student notebook handed out
    sources: dict[str, nbformat.NotebookNode]  # lesson → the instructor's notebook (hidden tests included)


def prepare_course(out: Path, db_url: str | None, code: Path) -> Course:
    """The real course and the sandbox template, each built once (in a child process, from the code copy ``code``)."""
    course, template = out / "course", out / "sandbox-template"
    course_missing, template_missing = not is_released(course), not is_released(template)
    if course_missing:  # the usual first run builds both from one build of the lessons
        build_course(course, code, db_url, template if template_missing else None)
    elif template_missing:
        build_course(template, code)

    def read(kind: str, lesson: str) -> nbformat.NotebookNode:
        return nbformat.read(course / kind / lesson / f"{lesson}.ipynb", as_version=4)

    names = syllabus.NAMES
    return Course(
        course, template, {n: read("release", n) for n in names}, {n: read("source", n) for n in names}
    )


def is_released(course: Path) -> bool:
    """Whether ``course`` holds every lesson's release (else it is built, or built again after a crash)."""
    return all((course / "release" / n / f"{n}.ipynb").is_file() for n in syllabus.NAMES)


def build_course(course: Path, code: Path, db_url: str | None = None, template: Path | None = None) -> None:
    """Run ``python -m autograder release`` for ``course`` (and ``template``) from the code copy ``code``.

    A child process, so that the course is built from the copy's code: it starts in the copy, which ``-m`` puts
    first on the path (never this process's folder: a checkout, often).
    """
    command = [sys.executable, "-m", "autograder", "release", str(course.resolve())]
    command += ["--db-url", db_url] if db_url else []
    command += ["--sandbox-template", str(template.resolve())] if template else []
    built = subprocess.run(command, capture_output=True, text=True, env=code_environment(code), cwd=code)
    if built.returncode != 0:
        where = f"{course}{f' (and its sandbox template in {template})' if template else ''}"
        raise RuntimeError(
            f"could not build the nbgrader course in {where}: {(built.stderr or built.stdout).strip()[-2000:]}"
        )


def make_kernel_files(folder: Path, code: Path) -> Path:
    """Run ``python -m autograder.grading.kernel_files`` for ``folder`` from the code copy ``code``, as the course is
    built: the kernels' copies come from the code the run grades with."""
    command = [sys.executable, "-m", "autograder.grading.kernel_files", str(folder.resolve())]
    made = subprocess.run(command, capture_output=True, text=True, env=code_environment(code), cwd=code)
    if made.returncode != 0:
        raise RuntimeError(
            f"could not make the kernels' copies of the course in {folder}: "
            f"{(made.stderr or made.stdout).strip()[-2000:]}"
        )
    if made.stdout.strip():
        print(made.stdout.strip())  # a note: the font list could not be built
    return folder


@dataclass
class Limits:
    """What one student may hand in and use."""

    notebook_timeout: int = NOTEBOOK_TIMEOUT_S
    cell_timeout: int = CELL_TIMEOUT_S
    memory_mb: int = MEMORY_LIMIT_MB
    notebook_mb: int = intake.NOTEBOOK_LIMIT_MB
    student_mb: int = intake.STUDENT_LIMIT_MB
    archive_mb: int = intake.ARCHIVE_LIMIT_MB


@dataclass
class Planned:
    """A notebook to grade: the repaired copy, the version of the file handed in, what checking it found."""

    nb: nbformat.NotebookNode
    version: str
    notes: list[str]


@dataclass
class Enrolled:
    """One student of this run: who, their id, and what intake and checking found."""

    student: intake.Student
    sid: str
    late: list[str] = field(default_factory=list)
    planned: dict[str, Planned] = field(default_factory=dict)  # lesson → notebook to execute


def grading_order(enrolled: dict[str, Enrolled]) -> list[str]:
    """The students with notebooks to execute, those with the most first (then by id): with several jobs, a run
    ends on short students rather than on one long student while the other cores wait."""
    return sorted(
        (sid for sid, e in enrolled.items() if e.planned), key=lambda sid: (-len(enrolled[sid].planned), sid)
    )


def internal_error(stage: str, error: BaseException) -> dict:
    """A manifest entry for a lesson the grader itself failed on: reported, and graded again on the next run."""
    return {
        "error": f"internal error while {stage} ({type(error).__name__}: {str(error)[:200]}); "
        "it is graded again on the next run",
        "retry": True,
    }


class GradingRun:
    """One run of ``grade``: intake, checking, execution and recording, each student apart from the others."""

    def __init__(
        self,
        out: Path,
        db_url: str | None,
        limits: Limits,
        sandboxed: bool,
        workdir: Path,
        shard: intake.Shard | None = None,
    ):
        self.out, self.db_url, self.limits, self.sandboxed, self.workdir = (
            out,
            db_url,
            limits,
            sandboxed,
            workdir,
        )
        self.shard = shard  # grade only this shard's students (and leave the files of no student to shard 0)
        self.timings = Timings()
        with self.timings.stage("course build", children=True):
            # The course's code as it is now: every process of this run imports it from this copy, never the checkout.
            self.code = copy_course_code(workdir / "course-code")
            try:  # the kernels' copy of the checks can be made: said now, not as an internal error of every student
                judge_side.stand_in_names(self.code / "autograder")
            except ValueError as error:
                raise RuntimeError(
                    f"the checks' judge side cannot be hidden from the kernels: {error}"
                ) from None
            self.env = code_environment(self.code)
            self.course = prepare_course(out, db_url, self.code)
        self.manifest = records.load_manifest(self.course.course)
        self.now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.enrolled: dict[str, Enrolled] = {}  # student id → this run's student
        self.unowned: list[tuple[str, str]] = []
        self.lock = threading.Lock()  # one writer for the gradebook of record, the manifest and grades.csv
        self.zygote: Zygote | None = None  # the workers are forked from it while students are executed
        self.kernel_files: Path | None = None  # made once a run for its sandboxed kernels

    # -- stage 1: intake
    def take_in(self, submissions: intake.Submissions) -> None:
        """Sort the uploads into students and give each their id (kept from earlier runs)."""
        found = intake.gather(submissions)
        students = {
            key: student
            for key, student in found.students.items()
            if self.shard is None or self.shard.holds(key)
        }
        self.unowned = found.unowned if self.shard is None or self.shard.index == 0 else []
        ids = intake.assign_ids(list(students), self.manifest["ids"])
        for key, student in students.items():
            sid = ids[key]
            self.enrolled[sid] = Enrolled(student, sid)
            record = self.manifest["students"].setdefault(sid, {"lessons": {}})
            record["name"] = student.name
        for name, why in self.unowned:
            print(f"warning: {name}: {why} (listed in intake.csv)")
        if not self.sandboxed:
            for enrolled in self.enrolled.values():
                enrolled.student.notes.append("not isolated (--isolation off)")

    # -- stage 2: reading and checking each notebook
    def check_all(self, submissions: intake.Submissions) -> None:
        """Read, check and repair every student's notebooks; what cannot be graded is recorded at once."""
        for sid, enrolled in sorted(self.enrolled.items()):
            for lesson in syllabus.NAMES:
                if lesson not in enrolled.student.files:
                    continue
                try:
                    self.check_lesson(submissions, enrolled, lesson)
                except Exception as error:  # a bug of the grader's, met on this notebook: this lesson only
                    self.lessons(sid)[lesson] = {
                        "file": "",
                        "graded_at": self.now,
                        "notes": [],
                        **internal_error("reading and checking the notebook", error),
                    }
            # What `report` needs to write this student's row again later, without the submissions.
            self.manifest["students"][sid].update(late=enrolled.late, notes=enrolled.student.notes)
        records.save_manifest(self.course.course, self.manifest)

    def lessons(self, sid: str) -> dict:
        """The manifest's entries of one student's lessons."""
        return self.manifest["students"][sid]["lessons"]

    def check_lesson(self, submissions: intake.Submissions, enrolled: Enrolled, lesson: str) -> None:
        """Read one lesson's file through the size limits, and check it unless this version was graded before."""
        chosen = intake.choose(enrolled.student, lesson)
        if chosen.owner.late:
            enrolled.late.append(lesson)
        entries = self.lessons(enrolled.sid)
        notebook_limit = self.limits.notebook_mb * intake.MB
        sizes = [intake.newest(enrolled.student, lesson).upload.size for lesson in enrolled.student.files]
        together = sum(
            size for size in sizes if size <= notebook_limit
        )  # a file over its own limit is never read
        data, version, verdict = None, chosen.upload.fingerprint, None
        if chosen.upload.size <= notebook_limit and together > self.limits.student_mb * intake.MB:
            verdict = (
                f"files too large ({together / intake.MB:.0f} MB together; limit {self.limits.student_mb} MB "
                "for one student)"
            )
        else:
            try:
                data = submissions.read(chosen.upload, notebook_limit)
                version = records.file_version(data)
            except intake.TooLarge as error:
                verdict = (
                    f"file too large ({error.args[0] / intake.MB:.0f} MB; "
                    f"limit {self.limits.notebook_mb} MB): {chosen.upload.shown}"
                )
            except Exception as error:  # a damaged member, a method zipfile lacks: a verdict on this upload
                verdict = (
                    f"{chosen.upload.shown} could not be read from the submissions ({type(error).__name__})"
                )
        previous = entries.get(lesson)
        if previous and previous.get("file") == version and not previous.get("retry"):
            return  # this very file was judged before: keep that result and its notes
        notes = self.replaced(enrolled.sid, lesson, previous, version)
        if verdict is None:
            nb, found, verdict = check_notebook(
                data, chosen.upload.parts[-1], self.course.released[lesson], self.course.sources[lesson]
            )
            notes += found
        entry = {"file": version, "graded_at": self.now, "notes": notes}
        if verdict:
            entries[lesson] = {**entry, "error": verdict}
            return
        submitted = self.course.course / "submitted" / enrolled.sid / lesson / f"{lesson}.ipynb"
        submitted.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, submitted)
        enrolled.planned[lesson] = Planned(nb, version, notes)
        entries[lesson] = {
            **entry,
            "pending": True,
            "retry": True,
        }  # until recorded: a stopped run retries it

    def replaced(self, sid: str, lesson: str, previous: dict | None, version: str) -> list[str]:
        """Keep the submission graded before, when a new file replaces it; the note that says so."""
        if not previous or previous.get("file") == version or "graded_at" not in previous:
            return []
        backup = (
            self.course.course / "history" / sid / lesson / f"{previous['graded_at'].replace(':', '-')}.ipynb"
        )
        old = self.course.course / "submitted" / sid / lesson / f"{lesson}.ipynb"
        if old.is_file():
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(old, backup)
        return [
            f"a new submission replaced the one graded at {previous['graded_at']} "
            f"(score then: {previous.get('score', 'none')}; kept in {backup.relative_to(self.out)})"
        ]

    # -- stage 3: execution, each student in a sandbox of their own
    def execute_all(self, jobs: int) -> None:
        """Execute every student's planned notebooks, ``jobs`` students at once; then those to grade again alone."""
        with self.timings.stage("grader snapshot"):
            self.watch_grader()
        to_grade = grading_order(self.enrolled)
        self.report()  # the whole class, from the gradebook, before the first student's row changes
        if self.sandboxed and to_grade:
            with self.timings.stage("kernel files", children=True):
                self.kernel_files = make_kernel_files(self.workdir / "kernel-files", self.code)
        # The zygote's imports cost about what a worker's do: it pays for itself from the second student.
        try:
            self.zygote = self.start_zygote() if len(to_grade) > 1 else None
            # Progress on stdout, and only on a terminal: nbgrader's own messages are on stderr.
            with tqdm(
                total=len(to_grade), unit="student", desc="grading", file=sys.stdout, disable=None
            ) as progress:
                with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                    list(pool.map(lambda sid: self.grade_student(sid, progress), to_grade))
                if self.discard:
                    progress.total += len(self.discard)
                    progress.set_description("grading again, one at a time")
                for sid in sorted(self.discard):
                    self.grade_student(sid, progress, alone=True)
        finally:
            if self.zygote:
                self.zygote.close()
                self.timings.add(
                    {
                        "stage": "worker zygote",
                        "wall": self.zygote.wall,
                        "cpu": self.zygote.cpu,
                        "workers": self.zygote.forked,
                    }
                )

    def start_zygote(self) -> Zygote | None:
        """The process the workers are forked from, where every kernel is sandboxed (``zygote.py`` says why only
        there); ``None`` elsewhere, or where it cannot start: each worker then starts afresh."""
        if not self.sandboxed:
            return None
        zygote = start_zygote(worker_environment(self.env), self.workdir)
        if zygote is None:
            print("note: the workers' zygote did not start; each student's worker starts afresh (slower)")
        return zygote

    def watch_grader(self) -> None:
        """Take the snapshots that each student's grading is checked against."""
        course = self.course.course
        self.trusted = [self.code, course / "source", course / "release"]
        self.snapshot = grader_snapshot(self.trusted)
        self.template_bytes = grader_snapshot(
            [self.course.template], with_db=True
        )  # sandboxes come from these bytes
        self.gradebook = (
            Path(db_url_for(course, self.db_url).removeprefix("sqlite:///")) if not self.db_url else None
        )
        if self.gradebook and self.gradebook.is_file():
            shutil.copyfile(self.gradebook, course / "gradebook.backup.db")
        self.gradebook_digest = file_digest(self.gradebook) if self.gradebook else None
        self.running: set[str] = set()
        self.discard: set[str] = set()  # graded while the grader was tampered with: graded again, alone

    def grade_student(self, sid: str, progress: tqdm, alone: bool = False) -> None:
        """Execute one student's notebooks and record them; whatever fails stays with this student."""
        enrolled = self.enrolled[sid]
        sandbox = self.workdir / "sandboxes" / sid
        try:
            outcomes = self.execute(enrolled, sandbox)
        except Exception as error:
            outcomes = {
                lesson: internal_error("executing the notebook", error) for lesson in enrolled.planned
            }
        with self.lock:
            self.running.discard(sid)
            try:
                with self.timings.stage("record and feedback", student=sid):
                    self.record(enrolled, sandbox, outcomes, alone)
            except Exception as error:
                for lesson, planned in enrolled.planned.items():
                    self.lessons(sid)[lesson] = {
                        "file": planned.version,
                        "graded_at": self.now,
                        "notes": planned.notes,
                        **internal_error("recording the scores", error),
                    }
            with self.timings.stage("report", student=sid):
                records.save_manifest(self.course.course, self.manifest)
                # grades.csv as it stands: a stopped run loses only the students in flight. Only this student's
                # scores changed; reading the whole class again after every student would grow with its square.
                self.report(refresh=[sid])
        shutil.rmtree(sandbox, ignore_errors=True)
        progress.update()

    def execute(self, enrolled: Enrolled, sandbox: Path) -> dict[str, dict]:
        """Run the student's notebooks in a fresh sandbox; lesson → the worker's outcome."""
        with self.timings.stage("sandbox copy", student=enrolled.sid):
            sandbox = make_sandbox(self.template_bytes, self.course.template, sandbox.parent, enrolled.sid)
            for lesson, planned in enrolled.planned.items():
                target = sandbox / "submitted" / enrolled.sid / lesson / f"{lesson}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                # The demonstrations nothing reads are not run (demos.py); the course's record keeps them as handed in.
                nbformat.write(skip_demos(planned.nb, self.course.sources[lesson])[0], target)
        with self.lock:
            self.running.add(enrolled.sid)
        limits = self.limits
        group = sandbox_limits.StudentGroup(enrolled.sid, limits.memory_mb, MAX_PROCESSES)
        started = time.perf_counter()
        try:
            outcomes = run_worker(
                sandbox,
                enrolled.sid,
                list(enrolled.planned),
                limits.notebook_timeout,
                limits.cell_timeout,
                limits.memory_mb,
                self.sandboxed,
                group,
                self.env,
                self.zygote,
                self.kernel_files,
            )
            left = group.stop_all()
            whole = {"stage": "worker, all", "student": enrolled.sid, "wall": time.perf_counter() - started}
            cpu = group.cpu_seconds()  # the worker and every kernel it started (not the worker's imports)
            self.timings.add(whole if cpu is None else {**whole, "cpu": cpu})
        finally:
            group.remove()
        for lesson, outcome in outcomes.items():
            for record in outcome.pop("timings", []):
                self.timings.add({**record, "student": enrolled.sid, "lesson": lesson})
        if left:
            for outcome in outcomes.values():
                outcome.setdefault("notes", []).append(
                    f"stopped {left} process{'es' if left > 1 else ''} the notebook left running"
                )
        return outcomes

    # -- stage 4: recording, one student at a time, in the gradebook of record
    def tampered(self, sid: str, alone: bool) -> list[str]:
        """Restore the grader's files if anything changed them; return what changed that a notebook could have done."""
        touched = restore_grader(self.snapshot, self.trusted) + restore_grader(
            self.template_bytes, [self.course.template], with_db=True
        )
        if self.sandboxed:
            # Sandboxed notebooks cannot write there: another program did (an editor, a second grader).
            if touched:
                tqdm.write(
                    f"warning: {', '.join(sorted(set(touched)))} changed while {sid} was graded; notebooks "
                    "cannot write there, so another program did: restored to the version grading began with",
                    file=sys.stdout,
                )
            return []
        if self.gradebook and file_digest(self.gradebook) != self.gradebook_digest:
            shutil.copyfile(self.course.course / "gradebook.backup.db", self.gradebook)
            touched.append(self.gradebook.name)
        if touched and not alone:
            # Someone among the notebooks running now did it: grade each of them again, alone.
            self.discard.update(self.running | {sid})
        return touched

    def record(self, enrolled: Enrolled, sandbox: Path, outcomes: dict[str, dict], alone: bool) -> None:
        """Score each executed notebook, unless the grader was tampered with meanwhile."""
        touched = self.tampered(enrolled.sid, alone)
        if enrolled.sid in self.discard and not alone:
            return
        for lesson, planned in enrolled.planned.items():
            outcome = outcomes.get(lesson, {"error": "not graded (no result)", "retry": True})
            entry = {
                "file": planned.version,
                "graded_at": self.now,
                "notes": planned.notes + outcome.get("notes", []),
            }
            if touched:
                outcome = {
                    "error": f"the notebook changed the grader's own files ({', '.join(sorted(set(touched)))}); "
                    "they were restored"
                }
            try:
                if "error" not in outcome:
                    outcome = self.score(enrolled.sid, lesson, sandbox, entry["notes"])
            except Exception as error:
                outcome = internal_error("recording the scores", error)
            entry.update(
                {
                    k: v
                    for k, v in outcome.items()
                    if k in ("error", "score", "max_score", "needs_manual_grade", "awaiting", "retry")
                }
            )
            self.lessons(enrolled.sid)[lesson] = entry
        if self.gradebook and self.gradebook.is_file():
            shutil.copyfile(self.gradebook, self.course.course / "gradebook.backup.db")
            self.gradebook_digest = file_digest(self.gradebook)

    def score(self, sid: str, lesson: str, sandbox: Path, notes: list[str]) -> dict:
        """Check the executed notebook the sandbox left where the grader put it, then score it with nbgrader."""
        executed_path = sandbox / "autograded" / sid / lesson / f"{lesson}.ipynb"
        if not executed_path.is_file() or executed_path.is_symlink():
            return {"error": "the executed notebook is missing"}
        if executed_path.stat().st_size > EXECUTED_LIMIT_MB * intake.MB:
            return {"error": f"the executed notebook is over {EXECUTED_LIMIT_MB} MB (outputs too large)"}
        try:
            executed = nbformat.reads(executed_path.read_text(), as_version=4)
        except Exception as error:
            return {"error": f"the executed notebook cannot be read ({type(error).__name__})"}
        found, reason = verify_executed(executed, self.course.sources[lesson])
        notes += found
        if reason:
            return {"error": reason}
        trusted = safe_view.lesson_text(self.course.sources[lesson], self.course.released[lesson])
        changed = safe_view.make_safe_to_view(executed, trusted)
        if changed:
            notes.append(
                f"made {changed} cells safe to open in a browser (HTML that would run is shown as text)"
            )
        nbformat.write(executed, executed_path)
        outcome = record_scores(self.course.course, self.db_url, sid, lesson, executed_path)
        feedback = self.course.course / "feedback" / sid / lesson / f"{lesson}.html"
        if feedback.is_file():
            (self.out / "feedback" / sid).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(feedback, self.out / "feedback" / sid / f"{lesson}.html")
        return outcome

    # -- stage 5: the report
    def report(self, refresh: list[str] | None = None) -> list[records.StudentResult]:
        """Write ``grades.csv`` (a row for every student, this batch's and earlier ones') and ``intake.csv``.

        ``refresh``: the students whose scores are read again from the gradebook (default: all of them).
        """
        students = self.manifest["students"]
        chosen = students if refresh is None else {sid: students[sid] for sid in refresh if sid in students}
        try:  # scores as the gradebook holds them: an instructor's manual grades of unchanged notebooks are kept
            refresh_from_gradebook(self.course.course, self.db_url, chosen)
        except Exception as error:
            print(
                f"warning: could not read the gradebook ({type(error).__name__}: {error}); grades.csv shows the "
                "scores recorded by the grader, without manual grades"
            )
        results = []
        for sid, record in self.manifest["students"].items():
            enrolled = self.enrolled.get(sid)
            notes = enrolled.student.notes if enrolled else ["not in this batch; earlier grades kept"]
            results.append(
                records.summarise(
                    sid, record.get("name", sid), record["lessons"], notes, enrolled.late if enrolled else []
                )
            )
        records.write_grades(self.out / "grades.csv", results)
        records.write_intake(self.out / "intake.csv", self.unowned)
        return results


def choose_sandbox(isolate: bool) -> bool:
    """Whether kernels run under bubblewrap: always, unless told not to; refuse where it cannot be built."""
    if not isolate:
        print(
            "warning: --isolation off: notebooks run as your own user, with your network and files; the grader "
            "still restores its files and checks every test cell (README: 'Isolation')"
        )
        return False
    available, why_not = sandbox_limits.availability()
    if not available:
        raise RuntimeError(
            f"cannot sandbox the notebooks: {why_not}; or grade with --isolation off, trusting every "
            "notebook (README: 'Isolation')"
        )
    return True


def warn_of_changed_checkout(code: Path) -> None:
    """With --isolation off a notebook can write into the checkout: say which of its files changed during the run."""
    changed = changed_since(code)
    if changed:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
        print(
            f"warning: {shown} changed in the course's checkout while grading ran (this run graded with the code as "
            "it was when it started); with --isolation off a notebook can write there: check them before the next run"
        )


def grade(
    submissions: Path,
    out: Path,
    jobs: int = 1,
    db_url: str | None = None,
    isolate: bool = True,
    limits: Limits | None = None,
    shard: intake.Shard | None = None,
    timings: Path | None = None,
) -> list[records.StudentResult]:
    """Check, repair and autograde every student's notebooks; write ``grades.csv``, ``intake.csv`` and feedback.

    ``isolate``: run every kernel under bubblewrap (``autograder.grading.sandbox``), refusing to grade where it cannot;
    ``False`` runs notebooks as the instructor's own user, and each row's notes say "not isolated".
    ``shard``: grade only the students of one shard of the class (``collect.Shard``); ``report`` merges the shards.
    ``timings``: a file for the wall and CPU seconds of every stage (JSON lines; ``autograder.benchmark`` reads it).
    """
    put_environment_on_path()
    limits = limits or Limits()
    if not submissions.exists():
        raise FileNotFoundError(f"{submissions} does not exist: give the folder or zip of submissions")
    if db_url:
        check_database(db_url)
    sandboxed = choose_sandbox(isolate)
    stale = sandbox_limits.remove_stale_groups()
    if stale:
        print(f"removed {len(stale)} students' cgroups left by a grading run that was killed")
    uploads = intake.Submissions(submissions, limits.archive_mb)  # a zip is checked as a whole here
    started = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="siamese-grading-") as tmp:
            run = GradingRun(out, db_url, limits, sandboxed, Path(tmp), shard)
            try:
                with run.timings.stage("intake and repair"):
                    run.take_in(uploads)
                    run.check_all(uploads)
                run.execute_all(jobs)
            finally:
                results = run.report()
                if timings:
                    run.timings.write(timings)
            if not sandboxed:
                warn_of_changed_checkout(run.code)
    finally:
        uploads.close()
    elapsed = time.perf_counter() - started
    graded = len([e for e in run.enrolled.values() if e.planned])
    print(
        f"graded {graded} student{'' if graded == 1 else 's'} ({len(results)} in grades.csv) in {elapsed:.1f} s"
        + (f", {elapsed / graded:.1f} s per student" if graded else "")
        + f" → {out / 'grades.csv'}"
    )
    return results
