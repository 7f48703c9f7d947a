"""Stage 3 of grading, execute: a throwaway sandbox course per student, and the worker process that executes it.

The worker (``autograder.grading.worker``) runs each notebook's kernel under bubblewrap and sends one
JSON line per lesson on a pipe only it holds; this side keeps the time limit per notebook by its own
clock and takes nothing from those lines but what it expects.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import sandbox as sandbox_limits
from .course import write_config
from .timing import clean_record
from .zygote import ForkedWorker, Zygote, start_quietly


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
    write_config(sandbox)  # its own root and gradebook path
    return sandbox


def run_worker(
    sandbox: Path,
    student: str,
    lessons: list[str],
    notebook_timeout: int,
    cell_timeout: int,
    memory_mb: int,
    sandboxed: bool = True,
    group: sandbox_limits.StudentGroup | None = None,
    env: dict[str, str] | None = None,
    zygote: Zygote | None = None,
    kernel_files: Path | None = None,
) -> dict[str, dict]:
    """Execute ``lessons`` in the sandbox course in a child process; a lesson that hangs or crashes it is reported.

    ``sandboxed`` runs every kernel under bubblewrap; ``group`` is the student's cgroups, which the worker joins;
    ``env`` is the worker's environment (default: this process's), e.g. with the course imported from a copy;
    ``zygote`` forks the worker where it can (``autograder.grading.zygote``), else it starts afresh; ``kernel_files``
    holds what the run made for its sandboxed kernels (``autograder.grading.kernel_files``).
    """
    base = worker_environment(env if env is not None else dict(os.environ))
    options = ["--cell-timeout", str(cell_timeout), "--memory-mb", str(memory_mb)]
    if sandboxed:
        options.append("--sandboxed")
    if sandboxed and kernel_files:
        options += ["--kernel-files", str(kernel_files)]
    options += group.join_command() if group else []
    results: dict[str, dict] = {}
    remaining = list(lessons)
    while remaining:  # a worker that dies or hangs loses its lesson; the next one goes on with the rest
        process, lines = _start_worker(sandbox, student, remaining, options, base, zygote)
        _follow_worker(process, lines, remaining, results, notebook_timeout)
    return results


def worker_environment(env: dict[str, str]) -> dict[str, str]:
    """A worker's environment: ``env``, writing no bytecode (the grader's packages stay as snapshotted)."""
    return {**env, "PYTHONDONTWRITEBYTECODE": "1"}


def _start_worker(
    sandbox: Path,
    student: str,
    lessons: list[str],
    options: list[str],
    env: dict[str, str],
    zygote: Zygote | None,
) -> tuple[subprocess.Popen | ForkedWorker, queue.Queue]:
    """Start a worker for ``lessons``; its result lines arrive on the returned queue (None when it ends)."""
    # Options first, then "--": nothing after it is read as an option, whatever a name looks like.
    arguments = [*options, "--", str(sandbox), student, *lessons]
    # Results come back on a pipe of their own that only the worker holds: kernels inherit its stdout
    # and stderr, so those lead nowhere, and nothing a notebook writes can pass for a result.
    read_end, write_end = os.pipe()
    try:
        process = zygote.fork(arguments, sandbox, write_end) if zygote else None
        if process is None and zygote:
            # A fresh pipe: whatever the zygote may still have started can never write on this worker's.
            for end in (read_end, write_end):
                os.close(end)
            read_end, write_end = os.pipe()
        if process is None:
            process = start_quietly(
                "autograder.grading.worker", "--result-fd", write_end, arguments, env, sandbox
            )
    finally:
        os.close(write_end)
    lines: queue.Queue = queue.Queue()
    threading.Thread(
        target=_read_lines,
        args=(os.fdopen(read_end, encoding="utf-8", errors="replace"), lines),
        daemon=True,
    ).start()
    return process, lines


def _follow_worker(
    process: subprocess.Popen | ForkedWorker,
    lines: queue.Queue,
    remaining: list[str],
    results: dict[str, dict],
    notebook_timeout: int,
) -> None:
    """Record the worker's lessons as they come, until it is done, dies or runs past a notebook's limit."""
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
                results[lesson] = {
                    "error": "the grading process died (out of memory?); it is graded again on the next run",
                    "retry": True,
                }
            remaining.remove(lesson)
            return
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
            return


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
    kept = {
        "lesson": message["lesson"],
        "notes": [str(n)[:500] for n in notes[:10]] if isinstance(notes, list) else [],
    }
    if "error" in message:
        kept["error"] = str(message["error"])[:500]
    timings = message.get("timings", [])
    if isinstance(timings, list):
        kept["timings"] = [record for record in map(clean_record, timings[:1000]) if record]
    return kept


def _kill_group(process: subprocess.Popen | ForkedWorker) -> None:
    """Stop the worker and every kernel it started (in namespaces, the kernel stops all that is left)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.kill()  # the worker itself, should it not lead its group yet (a forked one calls setsid first thing)
    process.wait()
