"""Execute one student's lessons inside a sandbox course; run by ``python -m autograder grade``.

The sandbox course is a throwaway copy of the course (its own gradebook, no other student in it).
The worker is the grader's own code and runs outside the sandbox; with ``--sandboxed`` every
notebook's *kernel* runs under bubblewrap (``autograder.grading.sandbox``), so nothing the notebook does
reaches this process, its files or its output. With ``--cgroup`` the worker first joins the
student's cgroups, so that it and every process it starts share one memory and process limit.

The worker only *executes*: nbgrader restores the test cells from a pristine gradebook, runs the
notebook and writes the executed copy. Scores are computed later by the grader, in the gradebook
of record, from that copy, after checking that its test cells are the original ones. The worker
writes one JSON line per lesson as soon as it is done (on ``--result-fd``, a pipe only it holds), so that
the parent can enforce a time limit per notebook and keep the results of the lessons executed before a
crash. Outputs are kept up to a
size per cell and per notebook as they arrive, and no single message from a kernel may exceed
``MESSAGE_LIMIT_BYTES``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade, is_solution

from data_utils.env import CHECK_SEED_VAR as SEED_VARIABLE
from data_utils.env import GRADING_FIGURES_BACKEND, MPL_BACKEND_VAR, QUICK_ENV_VAR, SANDBOX_DIR_VAR

from . import kernel_files
from . import sandbox as kernel_sandbox
from .course import nbgrader_config
from .repair import nbgrader_metadata
from .timing import LapClock, cpu_counter

CELL_OUTPUT_LIMIT_BYTES = 2 * 1024 * 1024
NOTEBOOK_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024
MESSAGE_LIMIT_BYTES = 32 * 1024 * 1024  # ZeroMQ drops a larger message before it is read into memory

# A one-line exception at the start of a line of nbgrader's log, e.g. "sqlite3.OperationalError: ..."
EXCEPTION_LINE = re.compile(
    r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)):\s*(.*)$"
)
GENERIC = ("NbGraderException", "CellExecutionError")  # wrappers that only say "see the traceback above"


def limit_memory(megabytes: int) -> None:
    """Cap this process and the kernels it starts (they inherit the limit) at ``megabytes`` of address space."""
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def failure_reason(log: str, error: str | None) -> str:
    """A one-line reason from nbgrader's log when autograde fails: the innermost exception, not its wrapper."""
    text = f"{log}\n{error or ''}"
    if "DeadKernelError" in text or "Kernel died" in text:
        return "kernel died"
    if "CellTimeoutError" in text or "Timeout waiting" in text:
        return "a cell ran past the time limit"
    if "MemoryError" in text:
        return "ran out of memory"
    exceptions = [m for m in map(EXCEPTION_LINE.match, text.splitlines()) if m]
    specific = [m for m in exceptions if m.group(1) not in GENERIC]
    if specific or exceptions:
        name, message = (specific or exceptions)[-1].groups()
        return f"{name}: {message}"[:200]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[INFO]")]
    return (lines[-1] if lines else "nbgrader failed")[:200]


class CappedKernelClient(AsyncKernelClient):
    """A kernel client whose sockets refuse any message over ``MESSAGE_LIMIT_BYTES``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.context.setsockopt(zmq.MAXMSGSIZE, MESSAGE_LIMIT_BYTES)  # for the sockets made from now on


class LimitedExecute(Execute):
    """nbgrader's Execute, keeping outputs only up to a size per cell and per notebook, cut as they arrive.

    It also times the kernel's start, each code cell and the kernel's shutdown on ``clock``, the lesson's
    clock that ``execute_lesson`` sets (nbgrader makes this object itself, from its class).
    """

    clock: LapClock | None = None

    def preprocess(self, nb, resources=None, km=None):
        """Execute the notebook with fresh output counters."""
        self.output_bytes: dict[int, int] = {}
        self.cut_cells: set[int] = set()
        self.kernel_started = False
        self.lap("nbgrader before execution")
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self.lap("kernel shutdown")

    def preprocess_cell(self, cell, resources, index):
        """Execute one cell, timed if it is code (the time before the first is the kernel's start)."""
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        if not self.kernel_started:
            self.kernel_started = True
            self.lap("kernel start")
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            self.lap("cell", cell=index, kind=cell_kind(cell))

    def lap(self, stage: str, **where: object) -> None:
        """A lap on the lesson's clock, if it has one."""
        if self.clock:
            self.clock.lap(stage, **where)

    def output(self, outs, msg, display_id, cell_index):
        """Keep one output message, unless it would take the cell or the notebook over its limit (then say so once)."""
        if cell_index in self.cut_cells:
            return None
        size = len(json.dumps(msg.get("content", {}), default=str))
        over_cell = self.output_bytes.get(cell_index, 0) + size > CELL_OUTPUT_LIMIT_BYTES
        if over_cell or sum(self.output_bytes.values()) + size > NOTEBOOK_OUTPUT_LIMIT_BYTES:
            self.cut_cells.add(cell_index)
            limit = CELL_OUTPUT_LIMIT_BYTES if over_cell else NOTEBOOK_OUTPUT_LIMIT_BYTES
            outs.append(
                _note(
                    f"[grading: output cut here, over {limit // 2**20} MB "
                    f"{'for one cell' if over_cell else 'for the notebook'}]"
                )
            )
            return None
        self.output_bytes[cell_index] = (
            self.output_bytes.get(cell_index, 0) + size
        )  # only what is kept counts
        return super().output(outs, msg, display_id, cell_index)


def cell_kind(cell) -> str:
    """What a code cell is, for timing: the student's ``exercise``, a graded ``test``, or ``teaching`` (all else)."""
    if is_solution(cell):
        return "exercise"
    return "test" if is_grade(cell) else "teaching"


def _note(text: str):
    """A plain-text output of the grader's own (display data: never merged into the cell's stream)."""
    import nbformat

    return nbformat.v4.new_output("display_data", data={"text/plain": text})


def kernel_run_dir() -> Path:
    """A new, short folder for one kernel's sockets (a Unix socket's path may not exceed 107 bytes).

    The kernel can write there, so it goes on a memory file system where there is one: what a
    notebook writes is then charged to the student's memory limit, never to the machine's disk.
    """
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp"
    return Path(tempfile.mkdtemp(prefix="siamese-kernel-", dir=base))


def kernel_config(
    config,
    sandbox: Path,
    lesson: str,
    student: str,
    run_dir: Path | None,
    seed: int = 0,
    files: Path | None = None,
):
    """Point nbgrader's executor at the lesson's kernel: sandboxed, with its sockets in ``run_dir``, or plain (None).

    ``seed`` is this run's seed for the checks' inputs (given to the sandboxed kernel's environment); ``files``
    holds what the run made for its sandboxed kernels (``kernel_files``), else this student's copies are made
    in the sandbox.
    """
    config.ExecutePreprocessor.kernel_name = kernel_sandbox.KERNEL_NAME if run_dir else "python3"
    config.KernelManager.client_class = f"{__name__}.CappedKernelClient"
    # Killed after its last cell: nothing in it is kept, and a polite shutdown cost ~1.3 s of CPU per notebook
    # (python -m autograder.benchmark).
    config.ExecutePreprocessor.shutdown_kernel = "immediate"
    if run_dir:
        work_dir = sandbox / "autograded" / student / lesson
        packages = {p.name: p for p in kernel_sandbox.package_folders()}
        # The kernel reads neither the lesson's reference nor the checks' judge side: copies with stand-ins in
        # their place.
        if files is None:
            files = kernel_files.write_copies(
                packages["solutions"], packages["autograder"], sandbox / "kernel-files", [lesson]
            )
        overlays = kernel_files.overlays(packages, lesson, files)
        kernel_sandbox.write_kernelspec(
            sandbox / "kernelspec", work_dir, run_dir, {SEED_VARIABLE: str(seed)}, overlays
        )
        os.environ["JUPYTER_PATH"] = str(sandbox / "kernelspec")
        config.KernelManager.connection_file = str(run_dir / "kernel.json")  # the kernel reads it there
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(run_dir / "kernel")
    return config


def locate_kernel_death(notebook: Path, config) -> str:
    """Run the notebook again cell by cell, in the same kind of kernel, to name the cell in which the kernel dies."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        config=config,
        timeout=config.ExecutePreprocessor.timeout,
        allow_errors=True,
        kernel_name=config.ExecutePreprocessor.kernel_name,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    grade_id = nbgrader_metadata(cell).get("grade_id")
                    first_line = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
                    return f"cell {index + 1}" + (f" ({grade_id})" if grade_id else f" ({first_line!r})")
                except (CellExecutionError, CellTimeoutError):
                    continue
    except Exception:  # the kernel may die in ways that break the client itself
        pass
    return "an unknown cell"


def execute_only_api(sandbox: Path, config):
    """nbgrader's API for the sandbox, with autograde restoring test cells and executing, but scoring nothing."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import CheckCellMetadata, IgnorePattern, LimitOutput

    # No SaveAutoGrades: nothing a notebook does to this gradebook while it runs can reach a score.
    config.Autograde.autograde_preprocessors = [
        LimitedExecute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        CheckCellMetadata,
    ]
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


@dataclass(frozen=True)
class LessonJob:
    """One lesson of one student to execute in the sandbox course ``sandbox``, and how."""

    sandbox: Path
    student: str
    lesson: str
    cell_timeout: int
    sandboxed: bool  # every kernel under bubblewrap
    files: Path | None = None  # what the run made for its sandboxed kernels (kernel_files.py)


def execute_lesson(job: LessonJob, clock: LapClock) -> dict:
    """Restore the test cells of one lesson, execute it, and judge its test cells, timing each stage; never raise."""
    result = _execute_lesson(job, clock)
    clock.lap("judge" if "executed" in result else "nbgrader after execution")
    return {**result, "timings": clock.records}


def _execute_lesson(job: LessonJob, clock: LapClock) -> dict:
    """``execute_lesson`` without its timings."""
    sandbox, student, lesson = job.sandbox, job.student, job.lesson
    LimitedExecute.clock = clock
    run_dir = (
        kernel_run_dir() if job.sandboxed else None
    )  # the kernel's sockets and connection file: nothing else
    seed = (
        secrets.randbits(62) | 1
    )  # this run's inputs for the checks: drawn now, so no answer exists in advance
    os.environ[SEED_VARIABLE] = str(seed)  # a kernel started without the sandbox inherits it
    try:
        config = kernel_config(
            nbgrader_config(sandbox, timeout=job.cell_timeout),
            sandbox,
            lesson,
            student,
            run_dir,
            seed,
            job.files,
        )
        clock.lap("sandbox set-up")
        outcome = execute_only_api(sandbox, config).autograde(lesson, student, force=True, create=True)
        if not outcome["success"]:
            reason = failure_reason(outcome.get("log", ""), outcome.get("error"))
            if reason == "kernel died":
                submitted = sandbox / "submitted" / student / lesson / f"{lesson}.ipynb"
                reason = f"kernel died in {locate_kernel_death(submitted, config)}"
            return {"error": reason}
        executed = sandbox / "autograded" / student / lesson / f"{lesson}.ipynb"
        clock.lap("nbgrader after execution")
        from .judge import judge_notebook

        source = nbformat.read(sandbox / "source" / lesson / f"{lesson}.ipynb", as_version=4)
        try:
            notes = judge_notebook(executed, source, lesson, seed)
        except (
            Exception
        ) as error:  # a bug of the judge's: this lesson alone, said as such (never a dead worker)
            return {
                "error": f"internal error while judging ({type(error).__name__}: {str(error)[:200]}); "
                "it is graded again on the next run",
                "retry": True,
            }
        return {"executed": str(executed), "notes": notes}
    finally:
        os.environ.pop(SEED_VARIABLE, None)
        if run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def kernel_environment(sandbox: Path) -> None:
    """Point everything a kernel writes (home, caches, temporary files) into the sandbox."""
    home = sandbox / "home"
    for folder in (home / ".cache", home / ".config" / "matplotlib", home / "runtime", sandbox / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "HOME": str(home),
            "TMPDIR": str(sandbox / "tmp"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "MPLCONFIGDIR": str(home / ".config" / "matplotlib"),
            MPL_BACKEND_VAR: GRADING_FIGURES_BACKEND,  # figures made, never drawn: no check reads a picture
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "PYTHONDONTWRITEBYTECODE": "1",  # the grader checks its packages' files, .pyc included
            SANDBOX_DIR_VAR: str(sandbox),  # the checks' preamble never imports from here
        }
    )
    # The checks are small, and one thread each keeps parallel graders from spinning against each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.pop(QUICK_ENV_VAR, None)  # a developer's quick mode never reaches a graded kernel


def main(argv: list[str] | None = None) -> int:
    """Execute the lessons named on the command line, one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m autograder.grading.worker")
    parser.add_argument("sandbox", type=Path)
    parser.add_argument("student")
    parser.add_argument("lessons", nargs="+")
    parser.add_argument("--cell-timeout", type=int, default=30)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--sandboxed", action="store_true", help="run every kernel under bubblewrap")
    parser.add_argument("--cgroup", type=Path, action="append", default=[], help="a cgroup to join first")
    parser.add_argument("--result-fd", type=int, default=1, help="the file descriptor the JSON lines go to")
    parser.add_argument(
        "--kernel-files", type=Path, help="what the run made for its sandboxed kernels (kernel_files.py)"
    )
    args = parser.parse_args(argv)
    kernel_sandbox.join_groups(args.cgroup)
    if args.result_fd != 1:
        os.set_inheritable(args.result_fd, False)  # never passed on to a kernel
    results = os.fdopen(args.result_fd, "w", buffering=1, closefd=args.result_fd != 1)
    sandbox = args.sandbox.resolve()
    kernel_environment(sandbox)
    limit_memory(args.memory_mb)
    pristine = (sandbox / "gradebook.db").read_bytes()  # read before any notebook runs
    counter = cpu_counter(args.cgroup)
    usage = resource.getrusage(
        resource.RUSAGE_SELF
    )  # this process until now: Python, nbgrader, jupyter imported
    started = [{"stage": "worker start", "cpu": usage.ru_utime + usage.ru_stime}]
    for lesson in args.lessons:
        # Each lesson starts from the pristine gradebook, so an earlier lesson cannot unlock its tests.
        for leftover in ("gradebook.db-journal", "gradebook.db-wal", "gradebook.db-shm"):
            (sandbox / leftover).unlink(missing_ok=True)  # SQLite would replay them into the pristine copy
        (sandbox / "gradebook.db").write_bytes(pristine)
        print(json.dumps({"start": lesson}), file=results, flush=True)
        clock = LapClock(counter)
        clock.records, started = started, []
        job = LessonJob(sandbox, args.student, lesson, args.cell_timeout, args.sandboxed, args.kernel_files)
        result = execute_lesson(job, clock)
        print(json.dumps({"lesson": lesson, **result}), file=results, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
