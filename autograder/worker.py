"""Autograde one student's lessons inside a sandbox course; run by ``python -m autograder grade``.

The sandbox is a throwaway copy of the course (its own gradebook, no other student in it), so
nothing a notebook does while it runs can reach another student's work or the real gradebook.
The worker prints one JSON line per lesson as soon as it is done, so that the parent can enforce
a time limit per notebook and keep the results of the lessons graded before a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

from .course import nbgrader_api


def limit_memory(megabytes: int) -> None:
    """Cap this process and the kernels it starts (they inherit the limit) at ``megabytes`` of address space."""
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def failure_reason(log: str, error: str | None) -> str:
    """A one-line reason from nbgrader's log when autograde fails."""
    text = f"{log}\n{error or ''}"
    if "DeadKernelError" in text or "Kernel died" in text:
        return "kernel died"
    if "CellTimeoutError" in text or "Timeout waiting" in text:
        return "a cell ran past the time limit"
    if "MemoryError" in text:
        return "ran out of memory"
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


def grade_lesson(api, sandbox: Path, student: str, lesson: str, cell_timeout: int) -> dict:
    """Autograde one lesson and write its feedback; never raise."""
    outcome = api.autograde(lesson, student, force=True, create=True)
    if not outcome["success"]:
        reason = failure_reason(outcome.get("log", ""), outcome.get("error"))
        if reason == "kernel died":
            submitted = sandbox / "submitted" / student / lesson / f"{lesson}.ipynb"
            reason = f"kernel died in {locate_kernel_death(submitted, cell_timeout)}"
        return {"error": reason}
    feedback = api.generate_feedback(lesson, student, force=True)
    return {"executed": str(sandbox / "autograded" / student / lesson / f"{lesson}.ipynb"),
            "feedback_ok": bool(feedback["success"])}


def main(argv: list[str] | None = None) -> int:
    """Grade the lessons named on the command line, one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m autograder.worker")
    parser.add_argument("sandbox", type=Path)
    parser.add_argument("student")
    parser.add_argument("lessons", nargs="+")
    parser.add_argument("--cell-timeout", type=int, default=30)
    parser.add_argument("--memory-mb", type=int, default=0)
    args = parser.parse_args(argv)
    limit_memory(args.memory_mb)
    # Kernels start here; the checks are small, and one thread each keeps parallel graders from
    # spinning against each other on a small machine.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    api = nbgrader_api(args.sandbox, timeout=args.cell_timeout)
    for lesson in args.lessons:
        print(json.dumps({"start": lesson}), flush=True)
        print(json.dumps({"lesson": lesson, **grade_lesson(api, args.sandbox, args.student, lesson, args.cell_timeout)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
