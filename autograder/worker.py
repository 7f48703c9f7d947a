"""Execute one student's lessons inside a sandbox course; run by ``python -m autograder grade``.

The sandbox is a throwaway copy of the course (its own gradebook, no other student in it). With
``--isolate`` the worker first walls itself in (``autograder.isolation``): everything but the
sandbox is read-only, the grader's folders are hidden, and no process outlives it.

The worker only *executes*: nbgrader restores the test cells from a pristine gradebook, runs the
notebook and writes the executed copy. Scores are computed later by the grader, in the gradebook
of record, from that copy, after checking that its test cells are the original ones. The worker
prints one JSON line per lesson as soon as it is done, so that the parent can enforce a time limit
per notebook and keep the results of the lessons executed before a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
from pathlib import Path

from .course import nbgrader_config

# A one-line exception at the start of a line of nbgrader's log, e.g. "sqlite3.OperationalError: ..."
EXCEPTION_LINE = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)):\s*(.*)$")
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


def locate_kernel_death(notebook: Path, cell_timeout: int) -> str:
    """Run the notebook again cell by cell to name the cell in which the kernel dies."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                    first_line = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
                    return f"cell {index + 1}" + (f" ({grade_id})" if grade_id else f" ({first_line!r})")
                except (CellExecutionError, CellTimeoutError):
                    continue
    except Exception:  # the kernel may die in ways that break the client itself
        pass
    return "an unknown cell"


def execute_only_api(sandbox: Path, cell_timeout: int):
    """nbgrader's API for the sandbox, with autograde restoring test cells and executing, but scoring nothing."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import CheckCellMetadata, Execute, IgnorePattern, LimitOutput

    config = nbgrader_config(sandbox, timeout=cell_timeout)
    # No SaveAutoGrades: nothing a notebook does to this gradebook while it runs can reach a score.
    config.Autograde.autograde_preprocessors = [Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                                CheckCellMetadata]
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def execute_lesson(api, sandbox: Path, student: str, lesson: str, cell_timeout: int) -> dict:
    """Restore the test cells of one lesson and execute it; never raise."""
    outcome = api.autograde(lesson, student, force=True, create=True)
    if not outcome["success"]:
        reason = failure_reason(outcome.get("log", ""), outcome.get("error"))
        if reason == "kernel died":
            submitted = sandbox / "submitted" / student / lesson / f"{lesson}.ipynb"
            reason = f"kernel died in {locate_kernel_death(submitted, cell_timeout)}"
        return {"error": reason}
    return {"executed": str(sandbox / "autograded" / student / lesson / f"{lesson}.ipynb")}


def kernel_environment(sandbox: Path) -> None:
    """Point everything a kernel writes (home, caches, temporary files) into the sandbox."""
    home = sandbox / "home"
    for folder in (home / ".cache", home / ".config" / "matplotlib", home / "runtime", sandbox / "tmp"):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "HOME": str(home), "TMPDIR": str(sandbox / "tmp"), "XDG_CACHE_HOME": str(home / ".cache"),
        "MPLCONFIGDIR": str(home / ".config" / "matplotlib"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "PYTHONDONTWRITEBYTECODE": "1",  # the grader checks its packages' files, .pyc included
        "SIAMESE_GRADING_SANDBOX": str(sandbox),  # the checks' preamble never imports from here
    })
    # The checks are small, and one thread each keeps parallel graders from spinning against each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    """Execute the lessons named on the command line, one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m autograder.worker")
    parser.add_argument("sandbox", type=Path)
    parser.add_argument("student")
    parser.add_argument("lessons", nargs="+")
    parser.add_argument("--cell-timeout", type=int, default=30)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--isolate", action="store_true", help="wall this worker in (run under unshare)")
    parser.add_argument("--hide", type=Path, action="append", default=[], help="a folder the notebooks must not see")
    args = parser.parse_args(argv)
    sandbox = args.sandbox.resolve()
    if args.isolate:
        from .isolation import lock_down, stop_other_processes

        lock_down(sandbox, args.hide)
    kernel_environment(sandbox)
    limit_memory(args.memory_mb)
    pristine = (sandbox / "gradebook.db").read_bytes()  # read before any notebook runs
    api = execute_only_api(sandbox, args.cell_timeout)
    for lesson in args.lessons:
        # Each lesson starts from the pristine gradebook, so an earlier lesson cannot unlock its tests.
        for leftover in ("gradebook.db-journal", "gradebook.db-wal", "gradebook.db-shm"):
            (sandbox / leftover).unlink(missing_ok=True)  # SQLite would replay them into the pristine copy
        (sandbox / "gradebook.db").write_bytes(pristine)
        print(json.dumps({"start": lesson}), flush=True)
        result = execute_lesson(api, sandbox, args.student, lesson, args.cell_timeout)
        if args.isolate:
            stopped = stop_other_processes()
            if stopped:
                result["notes"] = [f"stopped {stopped} process{'es' if stopped > 1 else ''} the notebook left running"]
        print(json.dumps({"lesson": lesson, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
