"""The instructor's workflow: release, solutions, and grading a class's submissions with nbgrader.

Grading never lets one submission stop the others, and never loses a grade:

* every notebook is checked before nbgrader sees it, repaired where that is safe (duplicated or
  deleted test cells, stripped metadata, changed cell types, old nbformat) and the repair noted;
* every student runs in a sandbox: a throwaway copy of the course, made from bytes read when
  grading began, in a process of its own with a memory limit and a time limit per notebook; where
  Linux allows it, walled in by namespaces (``autograder.isolation``): nothing but the sandbox is
  writable, the grader's folders are hidden, and no process outlives the worker;
* the sandbox only executes; the executed notebooks come back, their test cells are compared with
  the originals, and their scores and feedback are made in the real gradebook by nbgrader's own
  scoring, one student at a time, after checks that the grader was not tampered with;
* a manifest remembers what was graded (the uploaded file's SHA-256, the score, the notes), so a
  second run grades only new or changed notebooks and says so whenever it replaces a submission.
"""

from __future__ import annotations

import csv
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
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from . import isolation
from .build import LESSONS, build_all, generate_release, solved_notebook
from .course import CELL_TIMEOUT_S, check_database, db_url_for, nbgrader_api, nbgrader_config, put_environment_on_path

NOTEBOOK_TIMEOUT_S = 300  # one lesson, all cells together
MEMORY_LIMIT_MB = 8192  # address space per grading process and its kernel (torch with its threads maps several GB)
MANIFEST = "grading-manifest.json"
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


# ---------------------------------------------------------------- collecting submissions

BROWSER_SUFFIX = re.compile(r"\s*\(\d+\)$")  # "name (1).ipynb" from repeated downloads
COPY_PREFIX = re.compile(r"copy of\s+", re.IGNORECASE)  # Colab's "Copy of name.ipynb"
IGNORED = (".", "__MACOSX")


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


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(IGNORED) for part in path.relative_to(root).parts)


def unpack(submissions: Path, workdir: Path) -> Path:
    """The folder to read submissions from: ``submissions`` itself, or a zip safely extracted into ``workdir``."""
    if submissions.is_file() and zipfile.is_zipfile(submissions):
        root = (workdir / "unzipped").resolve()
        with zipfile.ZipFile(submissions) as archive:
            for member in archive.infolist():
                target = (root / member.filename).resolve()
                if target != root and root not in target.parents:
                    raise ValueError(f"{submissions}: unsafe path in zip: {member.filename}")
            archive.extractall(root)
            for member in archive.infolist():  # extractall does not restore times; "the newest file" needs them
                stamp = dt.datetime(*member.date_time).timestamp()
                os.utime(root / member.filename, (stamp, stamp))
        return root
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions} is neither a folder nor a zip file of submissions")
    return submissions


def collect(submissions: Path, workdir: Path) -> tuple[dict[str, StudentWork], list[str]]:
    """Find every student's notebooks in a folder or an LMS zip; return them and the files nobody owns."""
    submissions = unpack(submissions, workdir)
    entries = [p for p in submissions.iterdir() if not p.name.startswith(IGNORED)]
    while len(entries) == 1 and entries[0].is_dir() and not any(identify_lesson(p.name) for p in entries[0].iterdir()):
        submissions = entries[0]  # an archive wrapped in one top folder ("submissions/alice/...")
        entries = [p for p in submissions.iterdir() if not p.name.startswith(IGNORED)]

    students: dict[str, StudentWork] = {}
    stray: list[str] = []

    def add(student: str, lesson: str | None, path: Path) -> None:
        work = students.setdefault(student, StudentWork(student))
        if lesson is None:
            work.notes.append(f"ignored {path.name} (not a lesson notebook)")
        else:
            work.files.setdefault(lesson, []).append(path)

    for entry in sorted(entries):
        if entry.is_dir():
            student = safe_id(entry.name)
            students.setdefault(student, StudentWork(student))
            for path in sorted(entry.rglob("*")):
                if path.is_file() and _visible(path, entry):
                    add(student, identify_lesson(path.name) if path.suffix == ".ipynb" else None, path)
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


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read any nbformat 3 or 4.x notebook (Colab saves 4.0) as the current version."""
    return nbformat.read(path, as_version=4)


def check_notebook(path: Path, release_nb: nbformat.NotebookNode, source_nb: nbformat.NotebookNode | None = None,
                   ) -> tuple[nbformat.NotebookNode | None, list[str], str | None]:
    """Check one submitted notebook against the release (and the source, for the test cells' full text).

    Returns (repaired notebook, notes, reason it cannot be graded).
    """
    notes: list[str] = []
    if path.stat().st_size == 0:
        return None, notes, f"{path.name} is an empty file"
    try:
        nb = read_notebook(path)
    except Exception as error:  # invalid JSON, not a notebook, unreadable
        return None, notes, f"{path.name} is not a readable notebook ({type(error).__name__})"
    if not isinstance(nb.get("cells"), list) or not nb.cells:
        return None, notes, f"{path.name} has no cells"

    restored, unmatched = restore_metadata(nb, release_nb)
    if restored:
        notes.append(f"restored stripped nbgrader metadata of {restored} cells")
    if unmatched:
        return None, notes, (f"{path.name} lost its nbgrader metadata and exercise cells {', '.join(unmatched)} "
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


# ---------------------------------------------------------------- the manifest of what was graded

def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def load_manifest(course: Path) -> dict:
    """What earlier runs graded: ``{student: {lesson: {sha256 (of the upload), score or error, notes, graded_at}}}``."""
    path = course / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def save_manifest(course: Path, manifest: dict) -> None:
    """Write the manifest atomically."""
    partial = course / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    partial.replace(course / MANIFEST)


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
    return sha256(path.read_bytes()) if path.is_file() else None


# ---------------------------------------------------------------- grading

@dataclass
class StudentResult:
    """One row of ``grades.csv``."""

    student: str
    scores: dict[str, float | None]
    status: str
    notes: list[str]


def prepare_course(out: Path, db_url: str | None) -> tuple[Path, Path, dict[str, nbformat.NotebookNode]]:
    """The real course (gradebook of record) and a template for sandboxes; both built once and kept."""
    course, template = out / "course", out / "sandbox-template"
    for folder, url in ((course, db_url), (template, None)):
        if not all((folder / "release" / n / f"{n}.ipynb").is_file() for n in LESSONS):
            release(folder, url)
    released = {n: read_notebook(course / "release" / n / f"{n}.ipynb") for n in LESSONS}
    return course, template, released


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
               memory_mb: int, walls: list[str] | None = None, hide: list[Path] = ()) -> dict[str, dict]:
    """Execute ``lessons`` in the sandbox in a child process; a lesson that hangs or crashes it is reported and the rest go on.

    ``walls`` is the command that starts the worker in namespaces of its own (``isolation.command_prefix``),
    ``None`` to run it as a plain process; ``hide`` the folders its notebooks must not see.
    """
    results: dict[str, dict] = {}
    remaining = list(lessons)
    while remaining:
        command = [sys.executable, "-m", "autograder.worker", str(sandbox), student, *remaining,
                   "--cell-timeout", str(cell_timeout), "--memory-mb", str(memory_mb)]
        if walls is not None:
            command = [*walls, *command, "--isolate", *(f"--hide={folder}" for folder in hide)]
        env = {k: v for k, v in os.environ.items() if k not in ("SIAMESE_COURSE_QUICK",)}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the grader's packages stay byte for byte as snapshotted
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                   cwd=sandbox, start_new_session=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in process.stdout] + [lines.put(None)], daemon=True).start()
        current, deadline = None, time.monotonic() + notebook_timeout + 60
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = "timeout"
            if line == "timeout" or line is None:
                _kill_group(process)
                lesson = current or remaining[0]
                results[lesson] = {"error": (f"ran past the limit of {notebook_timeout} s for one notebook"
                                             if line == "timeout" else "the grading process died (out of memory?)")}
                remaining.remove(lesson)
                break
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if "start" in message:
                current, deadline = message["start"], time.monotonic() + notebook_timeout
                continue
            results[message["lesson"]] = message
            remaining.remove(message["lesson"])
            if not remaining:
                process.wait()
                break
    return results


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the worker and every kernel it started (in namespaces, the kernel stops all that is left)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def hidden_folders(out: Path, submissions: Path, workdir: Path) -> list[Path]:
    """What notebooks must not see (grades, other students' work); never a folder holding the packages or Python."""
    needed = [PACKAGE_DIR, Path(sys.prefix).resolve(), Path(sys.executable).resolve()]
    folders = [folder.resolve() for folder in (out, submissions if submissions.is_dir() else submissions.parent, workdir)]
    return [folder for folder in folders if not any(n == folder or folder in n.parents for n in needed)]


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
            return {"error": f"could not record the scores ({(outcome.get('error') or '').strip().splitlines()[-1:]})"}
        feedback = api.generate_feedback(lesson, student, force=True)  # from the gradebook of record
        with Gradebook(db_url_for(course, db_url)) as gradebook:
            notebook = gradebook.find_submission_notebook(lesson, lesson, student)
            return {"score": notebook.score, "max_score": notebook.max_score,
                    "needs_manual_grade": bool(notebook.needs_manual_grade), "feedback_ok": bool(feedback["success"])}


@dataclass
class Planned:
    """A notebook to grade: the repaired copy, the SHA-256 of the file handed in, what checking it found."""

    nb: nbformat.NotebookNode
    digest: str
    notes: list[str]


def grade(submissions: Path, out: Path, jobs: int = 1, db_url: str | None = None,
          notebook_timeout: int = NOTEBOOK_TIMEOUT_S, cell_timeout: int = CELL_TIMEOUT_S,
          memory_mb: int = MEMORY_LIMIT_MB, isolate: bool | None = None) -> list[StudentResult]:
    """Check, repair and autograde every student's notebooks; write ``grades.csv`` and feedback into ``out``.

    ``isolate``: run notebooks in namespaces of their own (``autograder.isolation``); ``None`` does so
    where the machine allows it and warns where it does not, ``True`` refuses to grade without.
    """
    put_environment_on_path()
    if not submissions.exists():
        raise FileNotFoundError(f"{submissions} does not exist: give the folder or zip of submissions")
    if db_url:
        check_database(db_url)
    walls = None
    if isolate is not False:
        available, why_not = isolation.availability()
        if available:
            walls = isolation.command_prefix()
        elif isolate:
            raise RuntimeError(f"cannot isolate the notebooks: {why_not}")
        else:
            print(f"warning: notebooks run without isolation ({why_not}); the grader still restores its files and "
                  "checks every test cell, but a hostile notebook can read other students' work and leave processes "
                  "behind (README: 'Isolation')")
    out.mkdir(parents=True, exist_ok=True)
    course, template_root, released = prepare_course(out, db_url)
    sources = {lesson.name: lesson.source for lesson in build_all()}
    manifest = load_manifest(course)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="siamese-grading-") as tmp:
        students, stray = collect(submissions, Path(tmp))
        for line in stray:
            print(f"warning: {line}")
        plans: dict[str, dict[str, Planned]] = {}
        for work in students.values():
            plans[work.student] = {}
            earlier = manifest.setdefault(work.student, {})
            for lesson in LESSONS:
                candidates = work.files.get(lesson, [])
                if not candidates:
                    continue
                if len(candidates) > 1:
                    candidates.sort(key=lambda p: (p.stat().st_mtime, p.name))
                    work.notes.append(f"{len(candidates)} files for {lesson}; graded the newest, {candidates[-1].name}")
                digest = sha256(candidates[-1].read_bytes())
                previous = earlier.get(lesson)
                if previous and previous.get("sha256") == digest:
                    continue  # graded before, unchanged: keep that result and its notes
                nb, notes, reason = check_notebook(candidates[-1], released[lesson], sources[lesson])
                if previous:
                    backup = course / "history" / work.student / lesson / f"{previous['graded_at'].replace(':', '-')}.ipynb"
                    old = course / "submitted" / work.student / lesson / f"{lesson}.ipynb"
                    if old.is_file():
                        backup.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(old, backup)
                    notes.insert(0, f"a new submission replaced the one graded at {previous['graded_at']} "
                                    f"(score then: {previous.get('score', 'none')}; kept in {backup.relative_to(out)})")
                if reason:
                    earlier[lesson] = {"sha256": digest, "error": reason, "notes": notes, "graded_at": now}
                    continue
                submitted = course / "submitted" / work.student / lesson / f"{lesson}.ipynb"
                submitted.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, submitted)
                plans[work.student][lesson] = Planned(nb, digest, notes)
        save_manifest(course, manifest)  # the notebooks that cannot be graded, already

        trusted = [PACKAGE_DIR, PACKAGE_DIR.parent / "solutions", PACKAGE_DIR.parent / "data_utils",
                   course / "source", course / "release"]
        snapshot = grader_snapshot(trusted)
        template = grader_snapshot([template_root], with_db=True)  # sandboxes are made from these bytes
        record_lock = threading.Lock()
        gradebook_path = Path(db_url_for(course, db_url).removeprefix("sqlite:///")) if not db_url else None
        gradebook_digest = [file_digest(gradebook_path) if gradebook_path else None]
        sandboxes = Path(tmp) / "sandboxes"
        hide = hidden_folders(out, submissions, Path(tmp))

        running: set[str] = set()
        discard: set[str] = set()  # graded while the grader was tampered with: graded again, alone

        def run_one(student: str, alone: bool = False) -> None:
            lessons = list(plans[student])
            sandbox = make_sandbox(template, template_root, sandboxes, student)
            for lesson, planned in plans[student].items():
                target = sandbox / "submitted" / student / lesson / f"{lesson}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(planned.nb, target)
            with record_lock:
                running.add(student)
            outcomes = run_worker(sandbox, student, lessons, notebook_timeout, cell_timeout, memory_mb, walls, hide)
            with record_lock:  # one writer for the gradebook of record
                running.discard(student)
                touched = restore_grader(snapshot, trusted) + restore_grader(template, [template_root], with_db=True)
                if walls is not None:
                    # Walled-in notebooks cannot write there: another program did (an editor, a second grader).
                    if touched:
                        tqdm.write(f"warning: {', '.join(sorted(set(touched)))} changed while {student} was graded; "
                                   "notebooks cannot write there, so another program did: restored to the version "
                                   "grading began with", file=sys.stdout)
                    touched = []
                elif gradebook_path and file_digest(gradebook_path) != gradebook_digest[0]:
                    shutil.copyfile(course / "gradebook.backup.db", gradebook_path)
                    touched.append(gradebook_path.name)
                if touched and not alone:
                    # Someone among the notebooks running now did it: grade each of them again, alone.
                    discard.update(running | {student})
                if student in discard and not alone:
                    shutil.rmtree(sandbox, ignore_errors=True)
                    return
                for lesson in lessons:
                    planned = plans[student][lesson]
                    outcome = outcomes.get(lesson, {"error": "not graded (no result)"})
                    entry = {"sha256": planned.digest, "graded_at": now, "notes": planned.notes + outcome.get("notes", [])}
                    if touched:
                        outcome = {"error": f"the notebook changed the grader's own files ({', '.join(sorted(set(touched)))}); "
                                            "they were restored"}
                    if "error" not in outcome:
                        executed = nbformat.read(outcome["executed"], as_version=4)
                        found, reason = verify_executed(executed, sources[lesson])
                        entry["notes"] += found
                        if reason:
                            outcome = {"error": reason}
                        else:
                            nbformat.write(executed, outcome["executed"])
                            outcome = record_scores(course, db_url, student, lesson, Path(outcome["executed"]))
                            feedback = course / "feedback" / student / lesson / f"{lesson}.html"
                            if feedback.is_file():
                                (out / "feedback" / student).mkdir(parents=True, exist_ok=True)
                                shutil.copyfile(feedback, out / "feedback" / student / f"{lesson}.html")
                    entry.update({k: v for k, v in outcome.items() if k in ("error", "score", "max_score",
                                                                            "needs_manual_grade")})
                    manifest[student][lesson] = entry
                save_manifest(course, manifest)
                if gradebook_path and gradebook_path.is_file():
                    shutil.copyfile(gradebook_path, course / "gradebook.backup.db")
                    gradebook_digest[0] = file_digest(gradebook_path)
            shutil.rmtree(sandbox, ignore_errors=True)

        if gradebook_path and gradebook_path.is_file():
            shutil.copyfile(gradebook_path, course / "gradebook.backup.db")
        to_grade = sorted(s for s in plans if plans[s])
        # Progress on stdout, and only on a terminal: nbgrader's own messages are on stderr.
        with tqdm(total=len(to_grade), unit="student", desc="grading", file=sys.stdout, disable=None) as progress:

            def run_and_count(student: str) -> None:
                run_one(student)
                progress.update()

            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                list(pool.map(run_and_count, to_grade))
            if discard:
                progress.total += len(discard)
                progress.set_description("grading again, one at a time")
            for student in sorted(discard):
                run_one(student, alone=True)
                progress.update()

    for student in manifest:  # earlier students absent from this batch keep their rows
        students.setdefault(student, StudentWork(student, notes=["not in this batch; earlier grades kept"]))
    results = [summarise(students[s], manifest.get(s, {})) for s in sorted(students)]
    write_grades(out / "grades.csv", results)
    elapsed = time.perf_counter() - started
    graded = len([s for s in plans if plans[s]])
    print(f"graded {graded} student{'' if graded == 1 else 's'} ({len(results)} in grades.csv) in {elapsed:.1f} s"
          + (f", {elapsed / graded:.1f} s per student" if graded else "") + f" → {out / 'grades.csv'}")
    return results


def summarise(work: StudentWork, entries: dict) -> StudentResult:
    """One row: a score per lesson, one status, and the notes of the run and of each lesson's grading."""
    scores: dict[str, float | None] = {lesson: None for lesson in LESSONS}
    problems: list[str] = []
    notes = list(work.notes)
    for lesson in LESSONS:
        entry = entries.get(lesson)
        if entry is None:
            continue
        notes += [f"{lesson}: {note}" for note in entry.get("notes", [])]
        if "error" in entry:
            problems.append(f"{lesson} not graded: {entry['error']}")
        else:
            scores[lesson] = entry["score"]
            if entry.get("needs_manual_grade"):
                problems.append(f"{lesson} needs manual grading")
    missing = [lesson for lesson in LESSONS if lesson not in entries]
    if missing:
        problems.append(f"no notebook for {', '.join(missing)}")
    return StudentResult(work.student, scores, "graded" if not problems else "; ".join(problems), notes)


def write_grades(path: Path, results: list[StudentResult]) -> None:
    """One row per student: a score per lesson (empty if not graded), the total out of 100, the status, the notes."""
    partial = path.with_suffix(".partial")
    with open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *LESSONS, "total", "status", "notes"])
        for r in results:
            total = sum(s for s in r.scores.values() if s is not None)
            writer.writerow([r.student, *("" if r.scores[l] is None else f"{r.scores[l]:g}" for l in LESSONS),
                             f"{total:g}", r.status, "; ".join(r.notes)])
    partial.replace(path)
