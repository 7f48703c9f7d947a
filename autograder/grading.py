"""The instructor's workflow: release, solutions, and grading a class's submissions with nbgrader.

Grading never lets one submission stop the others, and never loses a grade:

* every notebook is checked before nbgrader sees it, repaired where that is safe (duplicated or
  deleted test cells, stripped metadata, changed cell types, old nbformat) and the repair noted;
* every student runs in a sandbox course: a throwaway copy of the course, made from bytes read when
  grading began, executed by a worker process of its own with a time limit per notebook, and every
  notebook's kernel under bubblewrap (``autograder.sandbox``): no network, no capabilities, nothing
  of the host but what the kernel needs, read-only; the student's processes share one memory and
  one process limit where cgroups allow;
* the sandbox only executes; the executed notebooks come back, their test cells are compared with
  the originals, and their scores and feedback are made in the real gradebook by nbgrader's own
  scoring, one student at a time, after checks that the grader was not tampered with;
* a manifest remembers what was graded (the uploaded file's SHA-256, the score, the notes), so a
  second run grades only new or changed notebooks and says so whenever it replaces a submission.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from . import intake, records
from . import sandbox as sandbox_limits
from .build import LESSONS, build_all, generate_release, solved_notebook
from .course import CELL_TIMEOUT_S, check_database, db_url_for, nbgrader_config, put_environment_on_path

NOTEBOOK_TIMEOUT_S = 300  # one lesson, all cells together
MEMORY_LIMIT_MB = 8192  # one student's processes together (cgroups), else each process's address space
MAX_PROCESSES = 512  # one student's processes and threads together (cgroups): torch starts dozens of threads
EXECUTED_LIMIT_MB = 64  # an executed notebook coming back from the sandbox (nbgrader limits each output)
PACKAGE_DIR = Path(__file__).resolve().parent  # autograder/


# ---------------------------------------------------------------- release and solutions

def release(out: Path, db_url: str | None = None) -> Path:
    """Build the nbgrader course in ``out``: config, source and release notebooks, gradebook."""
    if db_url:
        check_database(db_url)
    released = generate_release(build_all(), out, db_url)
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


# ---------------------------------------------------------------- checking and repairing notebooks

# Code that a correct answer never needs, in an exercise cell or a cell the student added: noted for a human
# to look at, because code that patches the Python process the tests run in is beyond any check's reach.
SUSPICIOUS = re.compile(r"get_ipython|sys\.modules|sys\.path|meta_path|path_importer_cache|__import__|importlib|"
                        r"builtins|showtraceback|gradebook|sqlite3|/proc|os\._exit|sys\.exit|signal\.|ctypes|"
                        r"autograder|NBGRADER|subprocess|Popen|os\.system|shutil\.|open\(|setattr\(|"
                        r"torch\.[\w.]+\s*=(?!=)")  # the last: replacing a torch function the checks rely on


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _exercise_header(cell) -> str | None:
    first = cell.source.lstrip().split("\n", 1)[0] if cell.source else ""
    return first if first.startswith("# Exercise ") else None


def restore_metadata(nb: nbformat.NotebookNode, release_nb: nbformat.NotebookNode) -> tuple[int, list[str]]:
    """Give cells that lost their nbgrader metadata their release metadata back; return (restored, unmatched ids).

    Locked cells are matched by identical source, exercise cells by their "# Exercise N.M" first line;
    anything ambiguous is left alone.
    """
    present = {_meta(c).get("grade_id") for c in nb.cells if _meta(c).get("grade_id")}
    restored, unmatched = 0, []
    for ref in release_nb.cells:
        meta = _meta(ref)
        if not meta.get("grade_id") or meta["grade_id"] in present:
            continue
        if meta.get("solution"):
            header = _exercise_header(ref)
            matches = [c for c in nb.cells if not _meta(c) and header and _exercise_header(c) == header]
        else:
            matches = [c for c in nb.cells if not _meta(c) and c.source.strip() == ref.source.strip()]
        if len(matches) == 1:
            matches[0].metadata["nbgrader"] = dict(meta)
            restored += 1
        elif meta.get("solution"):
            unmatched.append(meta["grade_id"])
    return restored, unmatched


def check_notebook(data: bytes, name: str, release_nb: nbformat.NotebookNode,
                   source_nb: nbformat.NotebookNode | None = None,
                   ) -> tuple[nbformat.NotebookNode | None, list[str], str | None]:
    """Check one submitted notebook (its bytes, and the file name to mention) against the release and the source.

    Returns (repaired notebook, notes, reason it cannot be graded).
    """
    notes: list[str] = []
    if not data:
        return None, notes, f"{name} is an empty file"
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)  # any nbformat 3 or 4.x (Colab saves 4.0)
    except Exception as error:  # invalid JSON or UTF-8, not a notebook
        return None, notes, f"{name} is not a readable notebook ({type(error).__name__})"
    if not isinstance(nb.get("cells"), list) or not nb.cells:
        return None, notes, f"{name} has no cells"

    restored, unmatched = restore_metadata(nb, release_nb)
    if restored:
        notes.append(f"restored stripped nbgrader metadata of {restored} cells")
    if unmatched:
        return None, notes, (f"{name} lost its nbgrader metadata and exercise cells {', '.join(unmatched)} "
                             "cannot be recognised")

    reference = {_meta(c)["grade_id"]: c for c in release_nb.cells if _meta(c).get("grade_id")}
    seen: set[str] = set()
    kept, duplicates, retyped = [], set(), []
    for cell in nb.cells:
        grade_id = _meta(cell).get("grade_id")
        if grade_id in seen:
            duplicates.add(grade_id)  # nbgrader aborts the whole batch on a duplicated grade id
            if _meta(reference.get(grade_id, {})).get("solution"):
                # A copied exercise cell: keep every copy, as the student ran them; the last one stays graded.
                for earlier in kept:
                    if _meta(earlier).get("grade_id") == grade_id:
                        earlier.metadata.pop("nbgrader")
                kept.append(cell)
            continue
        if grade_id:
            seen.add(grade_id)
            if grade_id not in reference:
                cell.metadata.pop("nbgrader")  # a grade id nbgrader does not know: a plain cell now
                notes.append(f"unknown grade id {grade_id} treated as a plain cell")
            elif cell.cell_type != reference[grade_id].cell_type:
                retyped.append(grade_id)
                cell = nbformat.v4.new_code_cell(cell.source, metadata=cell.metadata)
        kept.append(cell)
    nb.cells = kept
    if duplicates:
        notes.append(f"duplicated cells {', '.join(sorted(duplicates))}: kept the last copy of an exercise, "
                     "the first of a test")
    if retyped:
        notes.append(f"turned cells {', '.join(retyped)} back into code cells")
    missing_tests = [gid for gid, c in reference.items() if _meta(c).get("grade") and gid not in seen]
    if missing_tests:
        notes.append(f"test cells {', '.join(missing_tests)} deleted or not recognised: nbgrader's copies added")
    missing_exercises = [gid for gid, c in reference.items() if _meta(c).get("solution") and gid not in seen]
    if missing_exercises:
        notes.append(f"exercise cells {', '.join(missing_exercises)} were deleted (their tests will fail)")
    given = {c.source.strip() for nb_ in (release_nb, source_nb, source_nb and solved_notebook(source_nb)) if nb_
             for c in nb_.cells if c.cell_type == "code"}  # cells as handed out or solved: not the student's code
    for label, cells in (("exercise code uses", [c for c in nb.cells if _meta(c).get("solution")]),
                         ("other cells use", [c for c in nb.cells if c.cell_type == "code" and not _meta(c)
                                              and c.source.strip() not in given])):
        suspicious = sorted({m.group(0) for c in cells for m in SUSPICIOUS.finditer(c.source)})
        if suspicious:
            notes.append(f"review: {label} {', '.join(suspicious)}")
    nb.nbformat, nb.nbformat_minor = 4, 5
    for cell in nb.cells:  # ids are required from nbformat 4.5 on; Colab's 4.0 files have none
        cell.setdefault("id", hashlib.sha1(cell.source.encode() + str(id(cell)).encode()).hexdigest()[:12])
    return nb, notes, None


# ---------------------------------------------------------------- integrity of the grader

def _trusted_files(folders: list[Path], with_db: bool) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*")
            if path.is_file() and (with_db or path.suffix != ".db")]


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


# ---------------------------------------------------------------- grading

@dataclass(frozen=True)
class Course:
    """The course folders a run grades into, and the notebooks every submission is checked against."""

    course: Path  # the gradebook of record, submitted/, feedback/
    template: Path  # what each student's sandbox is made from
    released: dict[str, nbformat.NotebookNode]  # lesson → the student notebook handed out
    sources: dict[str, nbformat.NotebookNode]  # lesson → the instructor's notebook (hidden tests included)


def prepare_course(out: Path, db_url: str | None) -> Course:
    """The real course and the sandbox template, each built once (in a child process) and kept."""
    course, template = out / "course", out / "sandbox-template"
    for folder, url in ((course, db_url), (template, None)):
        if not all((folder / "release" / n / f"{n}.ipynb").is_file() for n in LESSONS):
            # Building imports the solutions and torch: a child process keeps the grader itself small.
            command = [sys.executable, "-m", "autograder", "release", str(folder), *(["--db-url", url] if url else [])]
            built = subprocess.run(command, capture_output=True, text=True)
            if built.returncode != 0:
                raise RuntimeError(f"could not build the nbgrader course in {folder}: "
                                   f"{(built.stderr or built.stdout).strip()[-2000:]}")

    def read(kind: str, lesson: str) -> nbformat.NotebookNode:
        return nbformat.read(course / kind / lesson / f"{lesson}.ipynb", as_version=4)

    return Course(course, template, {n: read("release", n) for n in LESSONS}, {n: read("source", n) for n in LESSONS})


def make_sandbox(template: dict[Path, bytes], template_root: Path, root: Path, student: str) -> Path:
    """A fresh course folder for one student, written from the template's bytes read when grading began."""
    sandbox = root / student
    if sandbox.exists():
        shutil.rmtree(sandbox)
    for path, data in template.items():
        relative = path.relative_to(template_root)
        if relative.parts[0] in ("submitted", "autograded", "feedback", "executed"):
            continue
        (sandbox / relative).parent.mkdir(parents=True, exist_ok=True)
        (sandbox / relative).write_bytes(data)
    from .course import write_config

    write_config(sandbox)  # its own root and gradebook path
    return sandbox


def run_worker(sandbox: Path, student: str, lessons: list[str], notebook_timeout: int, cell_timeout: int,
               memory_mb: int, sandboxed: bool = True, group: sandbox_limits.StudentGroup | None = None,
               ) -> dict[str, dict]:
    """Execute ``lessons`` in the sandbox course in a child process; a lesson that hangs or crashes it is reported.

    ``sandboxed`` runs every kernel under bubblewrap; ``group`` is the student's cgroups, which the worker joins.
    """
    results: dict[str, dict] = {}
    remaining = list(lessons)
    while remaining:
        options = ["--cell-timeout", str(cell_timeout), "--memory-mb", str(memory_mb)]
        if sandboxed:
            options.append("--sandboxed")
        options += group.join_command() if group else []
        # Options first, then "--": nothing after it is read as an option, whatever a name looks like.
        command = [sys.executable, "-m", "autograder.worker", *options, "--", str(sandbox), student,
                   *remaining]
        env = {k: v for k, v in os.environ.items() if k not in ("SIAMESE_COURSE_QUICK",)}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the grader's packages stay byte for byte as snapshotted
        # Results come back on a pipe of their own that only the worker holds: kernels inherit its stdout
        # and stderr, so those lead nowhere, and nothing a notebook writes can pass for a result.
        read_end, write_end = os.pipe()
        command[command.index("--"):command.index("--")] = ["--result-fd", str(write_end)]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env=env, cwd=sandbox, start_new_session=True,
                                       pass_fds=(write_end,))
        finally:
            os.close(write_end)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_read_lines, args=(os.fdopen(read_end, encoding="utf-8", errors="replace"), lines),
                         daemon=True).start()
        current, deadline = None, time.monotonic() + notebook_timeout + 60
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = "timeout"
            if line == "timeout" or line is None:
                _kill_group(process)
                lesson = current or remaining[0]
                if line == "timeout":
                    results[lesson] = {"error": f"ran past the limit of {notebook_timeout} s for one notebook"}
                else:  # the worker itself was killed (out of memory?): not a verdict on the notebook
                    results[lesson] = {"error": "the grading process died (out of memory?); it is graded again on the "
                                                "next run", "retry": True}
                remaining.remove(lesson)
                break
            message = worker_message(line, remaining)
            if message is None:
                continue
            if "start" in message:
                current, deadline = message["start"], time.monotonic() + notebook_timeout
                continue
            results[message["lesson"]] = message
            remaining.remove(message["lesson"])
            if not remaining:
                process.wait()
                break
    return results


def _read_lines(stream, lines: queue.Queue) -> None:
    """Put each line of ``stream`` (cut at 100 kB) on ``lines``, then ``None`` when it ends."""
    with stream:
        for line in iter(lambda: stream.readline(100_000), ""):
            lines.put(line)
    lines.put(None)


def worker_message(line: str, remaining: list[str]) -> dict | None:
    """A worker's JSON line about one of ``remaining``, reduced to the fields the grader uses; ``None`` if not one.

    The executed notebook's path is never taken from the line: the grader knows where it is.
    """
    try:
        message = json.loads(line) if line.startswith("{") and len(line) < 100_000 else None
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("start") in remaining:
        return {"start": message["start"]}
    if message.get("lesson") not in remaining:
        return None
    notes = message.get("notes", [])
    kept = {"lesson": message["lesson"], "notes": [str(n)[:500] for n in notes[:10]] if isinstance(notes, list) else []}
    if "error" in message:
        kept["error"] = str(message["error"])[:500]
    return kept


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the worker and every kernel it started (in namespaces, the kernel stops all that is left)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def count_checks(source: str) -> int:
    """How many check calls a graded cell makes (each prints one [PASS] line when it passes)."""
    return len(re.findall(r"^\s*checks\.check_\w+\(", source, flags=re.MULTILINE))


def _fail_cell(cell, why: str) -> None:
    """Give a graded cell an error output, so that nbgrader scores it 0 and the feedback says why."""
    cell.outputs.append(nbformat.v4.new_output("error", ename="GradingError", evalue=why,
                                               traceback=[f"GradingError: {why}"]))


# The line nbgrader puts above a test cell that it added back (OverwriteCells.add_missing_cells)
ADDED_BACK = re.compile(r"\A# This cell \(id:[^)]+\) was missing from the submission\. It was added back by nbgrader\.\n\n")


def verify_executed(executed: nbformat.NotebookNode, source_nb: nbformat.NotebookNode) -> tuple[list[str], str | None]:
    """Check an executed notebook before it is scored; return (notes, reason it cannot be scored).

    Every test cell must be the original (nbgrader restores them from a gradebook the notebook could
    reach) and must show an error or one [PASS] line per check (else its output was suppressed).
    Cells that fail either check are scored 0; cells stopped at the cell time limit are noted.
    """
    originals = {_meta(c)["grade_id"]: c for c in source_nb.cells if _meta(c).get("grade")}
    cells = {_meta(c).get("grade_id"): c for c in executed.cells if _meta(c).get("grade")}
    missing = sorted(set(originals) - set(cells))
    if missing:
        return [], f"test cells {', '.join(missing)} are missing from the executed notebook"
    changed, silent = [], []
    for grade_id, original in originals.items():
        cell = cells[grade_id]
        if ADDED_BACK.sub("", cell.source) != original.source:
            _fail_cell(cell, "this test cell is not the original one")
            changed.append(grade_id)
        elif not any(o.output_type == "error" for o in cell.get("outputs", [])):
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
            if text.count("[PASS]") < count_checks(original.source):
                _fail_cell(cell, "the checks did not report success (outputs suppressed?)")
                silent.append(grade_id)
    timed_out = [grade_id for grade_id, cell in cells.items()
                 if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", []))]
    notes = []
    if timed_out:
        notes.append(f"test cells {', '.join(timed_out)} were stopped at the time limit for one cell; scored 0")
    if changed:
        notes.append(f"test cells {', '.join(changed)} ran in an edited form; scored 0")
    if silent:
        notes.append(f"cells {', '.join(silent)} passed without the checks reporting success; scored 0")
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
    with warnings.catch_warnings():  # SQLAlchemy's notes on nbgrader's session use, not the instructor's concern
        warnings.simplefilter("ignore", SAWarning)
        outcome = api.autograde(lesson, student, force=True, create=True)
        if not outcome["success"]:
            return {"error": f"could not record the scores ({(outcome.get('error') or '').strip().splitlines()[-1:]}); "
                             "it is graded again on the next run", "retry": True}
        feedback = api.generate_feedback(lesson, student, force=True)  # from the gradebook of record
        with Gradebook(db_url_for(course, db_url)) as gradebook:
            notebook = gradebook.find_submission_notebook(lesson, lesson, student)
            return {"score": notebook.score, "max_score": notebook.max_score,
                    "needs_manual_grade": bool(notebook.needs_manual_grade), "feedback_ok": bool(feedback["success"])}


# ---------------------------------------------------------------- one grading run, stage by stage

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


def internal_error(stage: str, error: BaseException) -> dict:
    """A manifest entry for a lesson the grader itself failed on: reported, and graded again on the next run."""
    return {"error": f"internal error while {stage} ({type(error).__name__}: {str(error)[:200]}); "
                     "it is graded again on the next run", "retry": True}


class GradingRun:
    """One run of ``grade``: intake, checking, execution and recording, each student apart from the others."""

    def __init__(self, out: Path, db_url: str | None, limits: Limits, sandboxed: bool, workdir: Path):
        self.out, self.db_url, self.limits, self.sandboxed, self.workdir = out, db_url, limits, sandboxed, workdir
        self.course = prepare_course(out, db_url)
        self.manifest = records.load_manifest(self.course.course)
        self.now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.enrolled: dict[str, Enrolled] = {}  # student id → this run's student
        self.unowned: list[tuple[str, str]] = []
        self.lock = threading.Lock()  # one writer for the gradebook of record, the manifest and grades.csv

    # -- stage 1: intake
    def take_in(self, submissions: intake.Submissions) -> None:
        """Sort the uploads into students and give each their id (kept from earlier runs)."""
        found = intake.gather(submissions)
        self.unowned = found.unowned
        ids = intake.assign_ids(list(found.students), self.manifest["ids"])
        for key, student in found.students.items():
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
            for lesson in LESSONS:
                if lesson not in enrolled.student.files:
                    continue
                try:
                    self.check_lesson(submissions, enrolled, lesson)
                except Exception as error:  # a bug of the grader's, met on this notebook: this lesson only
                    self.lessons(sid)[lesson] = {"file": "", "graded_at": self.now, "notes": [],
                                                 **internal_error("reading and checking the notebook", error)}
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
        sizes = [intake.newest(enrolled.student, l).upload.size for l in enrolled.student.files]
        together = sum(size for size in sizes if size <= notebook_limit)  # a file over its own limit is never read
        data, version, verdict = None, chosen.upload.fingerprint, None
        if chosen.upload.size <= notebook_limit and together > self.limits.student_mb * intake.MB:
            verdict = (f"files too large ({together / intake.MB:.0f} MB together; limit {self.limits.student_mb} MB "
                       "for one student)")
        else:
            try:
                data = submissions.read(chosen.upload, notebook_limit)
                version = records.file_version(data)
            except intake.TooLarge as error:
                verdict = (f"file too large ({error.args[0] / intake.MB:.0f} MB; "
                           f"limit {self.limits.notebook_mb} MB): {chosen.upload.shown}")
            except Exception as error:  # a damaged member, a method zipfile lacks: a verdict on this upload
                verdict = f"{chosen.upload.shown} could not be read from the submissions ({type(error).__name__})"
        previous = entries.get(lesson)
        if previous and previous.get("file") == version and not previous.get("retry"):
            return  # this very file was judged before: keep that result and its notes
        notes = self.replaced(enrolled.sid, lesson, previous, version)
        if verdict is None:
            nb, found, verdict = check_notebook(data, chosen.upload.parts[-1], self.course.released[lesson],
                                                self.course.sources[lesson])
            notes += found
        entry = {"file": version, "graded_at": self.now, "notes": notes}
        if verdict:
            entries[lesson] = {**entry, "error": verdict}
            return
        submitted = self.course.course / "submitted" / enrolled.sid / lesson / f"{lesson}.ipynb"
        submitted.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, submitted)
        enrolled.planned[lesson] = Planned(nb, version, notes)
        entries[lesson] = {**entry, "pending": True, "retry": True}  # until recorded: a stopped run retries it

    def replaced(self, sid: str, lesson: str, previous: dict | None, version: str) -> list[str]:
        """Keep the submission graded before, when a new file replaces it; the note that says so."""
        if not previous or previous.get("file") == version or "graded_at" not in previous:
            return []
        backup = self.course.course / "history" / sid / lesson / f"{previous['graded_at'].replace(':', '-')}.ipynb"
        old = self.course.course / "submitted" / sid / lesson / f"{lesson}.ipynb"
        if old.is_file():
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(old, backup)
        return [f"a new submission replaced the one graded at {previous['graded_at']} "
                f"(score then: {previous.get('score', 'none')}; kept in {backup.relative_to(self.out)})"]

    # -- stage 3: execution, each student in a sandbox of their own
    def execute_all(self, jobs: int) -> None:
        """Execute every student's planned notebooks, ``jobs`` students at once; then those to grade again alone."""
        self.watch_grader()
        to_grade = sorted(sid for sid, enrolled in self.enrolled.items() if enrolled.planned)
        # Progress on stdout, and only on a terminal: nbgrader's own messages are on stderr.
        with tqdm(total=len(to_grade), unit="student", desc="grading", file=sys.stdout, disable=None) as progress:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                list(pool.map(lambda sid: self.grade_student(sid, progress), to_grade))
            if self.discard:
                progress.total += len(self.discard)
                progress.set_description("grading again, one at a time")
            for sid in sorted(self.discard):
                self.grade_student(sid, progress, alone=True)

    def watch_grader(self) -> None:
        """Take the snapshots that each student's grading is checked against."""
        course = self.course.course
        self.trusted = [PACKAGE_DIR, PACKAGE_DIR.parent / "solutions", PACKAGE_DIR.parent / "data_utils",
                        course / "source", course / "release"]
        self.snapshot = grader_snapshot(self.trusted)
        self.template_bytes = grader_snapshot([self.course.template], with_db=True)  # sandboxes come from these bytes
        self.gradebook = Path(db_url_for(course, self.db_url).removeprefix("sqlite:///")) if not self.db_url else None
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
            outcomes = {lesson: internal_error("executing the notebook", error) for lesson in enrolled.planned}
        with self.lock:
            self.running.discard(sid)
            try:
                self.record(enrolled, sandbox, outcomes, alone)
            except Exception as error:
                for lesson, planned in enrolled.planned.items():
                    self.lessons(sid)[lesson] = {"file": planned.version, "graded_at": self.now,
                                                 "notes": planned.notes, **internal_error("recording the scores", error)}
            records.save_manifest(self.course.course, self.manifest)
            self.report()  # grades.csv as it stands: a stopped run loses only the students in flight
        shutil.rmtree(sandbox, ignore_errors=True)
        progress.update()

    def execute(self, enrolled: Enrolled, sandbox: Path) -> dict[str, dict]:
        """Run the student's notebooks in a fresh sandbox; lesson → the worker's outcome."""
        sandbox = make_sandbox(self.template_bytes, self.course.template, sandbox.parent, enrolled.sid)
        for lesson, planned in enrolled.planned.items():
            target = sandbox / "submitted" / enrolled.sid / lesson / f"{lesson}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(planned.nb, target)
        with self.lock:
            self.running.add(enrolled.sid)
        limits = self.limits
        group = sandbox_limits.StudentGroup(enrolled.sid, limits.memory_mb, MAX_PROCESSES)
        try:
            outcomes = run_worker(sandbox, enrolled.sid, list(enrolled.planned), limits.notebook_timeout,
                                  limits.cell_timeout, limits.memory_mb, self.sandboxed, group)
            left = group.stop_all()
        finally:
            group.remove()
        if left:
            for outcome in outcomes.values():
                outcome.setdefault("notes", []).append(f"stopped {left} process{'es' if left > 1 else ''} "
                                                       "the notebook left running")
        return outcomes

    # -- stage 4: recording, one student at a time, in the gradebook of record
    def tampered(self, sid: str, alone: bool) -> list[str]:
        """Restore the grader's files if anything changed them; return what changed that a notebook could have done."""
        touched = restore_grader(self.snapshot, self.trusted) + \
            restore_grader(self.template_bytes, [self.course.template], with_db=True)
        if self.sandboxed:
            # Sandboxed notebooks cannot write there: another program did (an editor, a second grader).
            if touched:
                tqdm.write(f"warning: {', '.join(sorted(set(touched)))} changed while {sid} was graded; notebooks "
                           "cannot write there, so another program did: restored to the version grading began with",
                           file=sys.stdout)
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
            entry = {"file": planned.version, "graded_at": self.now, "notes": planned.notes + outcome.get("notes", [])}
            if touched:
                outcome = {"error": f"the notebook changed the grader's own files ({', '.join(sorted(set(touched)))}); "
                                    "they were restored"}
            try:
                if "error" not in outcome:
                    outcome = self.score(enrolled.sid, lesson, sandbox, entry["notes"])
            except Exception as error:
                outcome = internal_error("recording the scores", error)
            entry.update({k: v for k, v in outcome.items() if k in ("error", "score", "max_score",
                                                                    "needs_manual_grade", "retry")})
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
        nbformat.write(executed, executed_path)
        outcome = record_scores(self.course.course, self.db_url, sid, lesson, executed_path)
        feedback = self.course.course / "feedback" / sid / lesson / f"{lesson}.html"
        if feedback.is_file():
            (self.out / "feedback" / sid).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(feedback, self.out / "feedback" / sid / f"{lesson}.html")
        return outcome

    # -- stage 5: the report
    def report(self) -> list[records.StudentResult]:
        """Write ``grades.csv`` (a row for every student, this batch's and earlier ones') and ``intake.csv``."""
        results = []
        for sid, record in self.manifest["students"].items():
            enrolled = self.enrolled.get(sid)
            notes = enrolled.student.notes if enrolled else ["not in this batch; earlier grades kept"]
            results.append(records.summarise(sid, record.get("name", sid), record["lessons"], notes,
                                             enrolled.late if enrolled else []))
        records.write_grades(self.out / "grades.csv", results)
        records.write_intake(self.out / "intake.csv", self.unowned)
        return results


def choose_sandbox(isolate: bool) -> bool:
    """Whether kernels run under bubblewrap: always, unless told not to; refuse where it cannot be built."""
    if not isolate:
        print("warning: --isolation off: notebooks run as your own user, with your network and files; the grader "
              "still restores its files and checks every test cell (README: 'Isolation')")
        return False
    available, why_not = sandbox_limits.availability()
    if not available:
        raise RuntimeError(f"cannot sandbox the notebooks: {why_not}; or grade with --isolation off, trusting every "
                           "notebook (README: 'Isolation')")
    return True


def grade(submissions: Path, out: Path, jobs: int = 1, db_url: str | None = None, isolate: bool = True,
          limits: Limits | None = None) -> list[records.StudentResult]:
    """Check, repair and autograde every student's notebooks; write ``grades.csv``, ``intake.csv`` and feedback.

    ``isolate``: run every kernel under bubblewrap (``autograder.sandbox``), refusing to grade where it cannot;
    ``False`` runs notebooks as the instructor's own user, and each row's notes say "not isolated".
    """
    put_environment_on_path()
    limits = limits or Limits()
    if not submissions.exists():
        raise FileNotFoundError(f"{submissions} does not exist: give the folder or zip of submissions")
    if db_url:
        check_database(db_url)
    sandboxed = choose_sandbox(isolate)
    uploads = intake.Submissions(submissions, limits.archive_mb)  # a zip is checked as a whole here
    started = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="siamese-grading-") as tmp:
            run = GradingRun(out, db_url, limits, sandboxed, Path(tmp))
            try:
                run.take_in(uploads)
                run.check_all(uploads)
                run.execute_all(jobs)
            finally:
                results = run.report()
    finally:
        uploads.close()
    elapsed = time.perf_counter() - started
    graded = len([e for e in run.enrolled.values() if e.planned])
    print(f"graded {graded} student{'' if graded == 1 else 's'} ({len(results)} in grades.csv) in {elapsed:.1f} s"
          + (f", {elapsed / graded:.1f} s per student" if graded else "") + f" → {out / 'grades.csv'}")
    return results
