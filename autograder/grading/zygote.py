"""The workers' zygote: one process per grading run imports what every worker needs, then forks each student's worker.

A worker started afresh pays for Python, nbgrader and jupyter_client at its start, and for torch in its judge:
about 2 s of CPU per student, more than a third of grading a student who hands in lesson 4 alone
(``grade --timings``). The zygote pays for them once per run, and each worker is forked from that state (the zygote
pattern, as in Android's app start or a preloading forkserver). A forked worker is what a fresh one would be just
before the first line of ``worker.main``:

* the zygote imports the grader's own code (from the run's copy of the course, like a fresh worker) and third-party
  packages, and runs nothing else: no student's file, no kernel, no judge;
* it forks only while it has one thread, checked before every fork (another thread could hold a lock forever in
  the child); it imports torch with ``OMP_NUM_THREADS=1``, as every worker runs, which starts none;
* the child starts a session of its own, draws fresh random seeds (torch, NumPy) as a new process would, and runs
  ``worker.main``, which joins the student's cgroups first, exactly as ``python -m autograder.grading.worker`` does;
* it is used only when every kernel runs under bubblewrap: without the sandbox a notebook runs as the grader's own
  user and could change the zygote's memory, which no snapshot of files would show; each worker then starts afresh.

The grader speaks to it over a Unix socket pair of packets: a request is one JSON object (the worker's arguments
and working folder) with the worker's result pipe attached; the answer carries the child's pid with a pidfd of it
attached, so that the grader waits for and kills a process that is not its child without racing a reused pid. The
zygote reaps a child only when the grader says it is done with it, and ends when the grader closes its end.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# What a worker imports, at its start or later (nbgrader's autograde, the judge, the checks' reports, the sandbox's
# SQLite gradebook): the grader's trusted code and third-party packages. torch._dynamo: the first optimizer step
# imports it (about 1 s), in the judge of the lessons that train. Each lesson's checks and the ``solutions`` modules
# its exercises stand in for are imported from the course table (``preload``).
PRELOAD = (
    "autograder.grading.worker",
    "autograder.grading.judge",
    "autograder.grading.record",
    "nbgrader.apps",
    "nbgrader.coursedir",
    "nbconvert.preprocessors",
    "IPython.display",
    "IPython.core.interactiveshell",
    "sqlite3",
    "sqlalchemy.dialects.sqlite",
    "torch",
    "torch._dynamo",
    "numpy",
)
READY_TIMEOUT_S = 120  # the imports take a few seconds; a zygote that has not answered by then is not used
ANSWER_TIMEOUT_S = 30  # a fork takes milliseconds
MESSAGE_BYTES = 64 * 1024


def thread_count() -> int:
    """The number of threads of this process, native ones included (torch's would not show in ``threading``)."""
    return len(os.listdir("/proc/self/task"))


def preload() -> None:
    """Import what every worker needs: the modules above, then each lesson's checks and ``solutions`` modules."""
    from autograder import syllabus

    for name in PRELOAD:
        importlib.import_module(name)
    for lesson in map(syllabus.lesson, syllabus.NAMES):
        importlib.import_module(lesson.checks_module)
        for exercise in lesson.exercises:
            for spec in exercise.answers():
                importlib.import_module(spec.partition(":")[0])


def reseed() -> None:
    """Give this forked process fresh random state, as a new process has (``random`` reseeds itself at fork)."""
    import numpy
    import torch

    torch.seed()
    numpy.random.seed()


def prepare_child(cwd: str) -> None:
    """In a forked child, before it runs anything: what a fresh worker would have (a session of its own, so that the
    grader kills it whole; its working folder; its own random seeds) and a collector of its own."""
    gc.enable()
    os.setsid()
    os.chdir(cwd)
    reseed()


def become_worker(control: socket.socket, go: int, argv: list[str], cwd: str, result_fd: int) -> None:
    """In the forked child: once the zygote says go, run ``worker.main`` with ``argv`` in ``cwd``; never returns.

    The zygote says go only after the grader has the child's pid: a child the grader never heard of (the zygote
    died, or could not answer) reads nothing and ends before it touches the student's sandbox.
    """
    code = 1
    try:
        control.close()
        if os.read(go, 1) != b"1":
            os._exit(1)
        os.close(go)
        prepare_child(cwd)
        from autograder.grading import worker

        sys.argv = [worker.__file__, "--result-fd", str(result_fd), *argv]  # what a fresh worker's would be
        code = worker.main(sys.argv[1:])
    except BaseException:  # whatever happens, the child must never return into the zygote's loop
        code = 1
    finally:
        os._exit(code)


def fork_worker(control: socket.socket, request: dict, result_fd: int) -> int:
    """Fork a worker for ``request``, send the grader its pid and pidfd, then let it run; return its pid."""
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_write)
        become_worker(control, go_read, request["argv"], request["cwd"], result_fd)
    os.close(go_read)
    os.close(result_fd)
    try:
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(control, [json.dumps({"pid": pid}).encode()], [pidfd])
        finally:
            os.close(pidfd)
        os.write(go_write, b"1")
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # never told go: it has not started, and nobody else knows of it
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(go_write)
    return pid


def serve(control: socket.socket) -> None:
    """Answer the grader's requests until it closes its end: fork a worker, or reap one it is done with."""
    children: set[int] = set()
    while True:
        message, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, 1)
        if not message:
            return
        request = json.loads(message)
        if "reap" in request:
            pid = int(request["reap"])
            if pid in children:
                os.waitpid(pid, 0)
                children.discard(pid)
            control.send(json.dumps({"reaped": pid}).encode())
            continue
        threads = thread_count()
        if len(fds) != 1 or threads != 1:
            for fd in fds:
                os.close(fd)
            why = "no result pipe attached" if len(fds) != 1 else f"the zygote has {threads} threads, not one"
            control.send(json.dumps({"error": why}).encode())
            continue
        children.add(fork_worker(control, request, fds[0]))


def main(argv: list[str] | None = None) -> int:
    """Preload, say so on the control socket (with the CPU it took), then serve."""
    parser = argparse.ArgumentParser(prog="python -m autograder.grading.zygote")
    parser.add_argument("--control-fd", type=int, required=True)
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as every worker runs (kernel_environment), before torch
    # The children share the zygote's pages until they write to them: no collection here leaves holes in them, and
    # the frozen objects are never walked by a child's collector, which would copy every page it touched.
    gc.disable()
    preload()
    gc.freeze()
    os.close(os.pidfd_open(os.getpid()))  # no pidfds (Linux before 5.3, some seccomp profiles): no zygote
    usage = os.times()
    control.send(
        json.dumps({"ready": True, "cpu": usage.user + usage.system, "threads": thread_count()}).encode()
    )
    serve(control)
    return 0


# ---------------------------------------------------------------- the grader's side


def start_quietly(
    module: str, fd_option: str, fd: int, arguments: list[str], env: dict[str, str], cwd: Path
) -> subprocess.Popen:
    """Start ``python -m module FD_OPTION FD *arguments`` as the grader starts its helpers: in a session of its own
    (killed whole), with no input, an output that leads nowhere (kernels inherit it) and, of the grader's
    descriptors, ``fd`` alone."""
    return subprocess.Popen(
        [sys.executable, "-m", module, fd_option, str(fd), *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
        pass_fds=(fd,),
    )


class ForkedWorker:
    """A worker forked by the zygote: waited for and killed like a ``subprocess.Popen`` of it."""

    def __init__(self, zygote: Zygote, pid: int, pidfd: int):
        self.zygote, self.pid, self.pidfd = zygote, pid, pidfd
        self.returned = False

    def kill(self) -> None:
        """SIGKILL the worker itself (through its pidfd: never another process that took its pid)."""
        if not self.returned:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:  # already ended
                pass

    def wait(self) -> None:
        """Wait until the worker has ended, then let the zygote reap it (its pid stays taken until then)."""
        if self.returned:
            return
        ended = select.poll()
        ended.register(self.pidfd, select.POLLIN)
        ended.poll()
        os.close(self.pidfd)
        self.returned = True
        self.zygote.reap(self.pid)


class Zygote:
    """The grader's handle on the zygote: start it, fork workers from it, stop it; ``None`` from ``fork`` means
    "start this worker afresh" (the zygote is gone, or would not fork)."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.lock = threading.Lock()  # one request and its answer at a time (students are graded in threads)
        self.cpu = 0.0  # the CPU seconds of the zygote's imports, and the wall seconds until it was ready
        self.wall = 0.0
        self.forked = 0  # workers forked so far
        started = time.perf_counter()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control: socket.socket | None = mine
        try:
            self.process = start_quietly(
                "autograder.grading.zygote", "--control-fd", theirs.fileno(), [], env, cwd
            )
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        ready = self._answer(READY_TIMEOUT_S)
        if not ready or not ready[0].get("ready") or ready[0].get("threads") != 1:
            self.close()
        else:
            self.cpu, self.wall = float(ready[0].get("cpu", 0.0)), time.perf_counter() - started

    @property
    def alive(self) -> bool:
        """Whether workers can be forked from it."""
        return self.control is not None

    def _answer(self, timeout: float) -> tuple[dict, list[int]] | None:
        """The zygote's next message and the descriptors attached to it; ``None`` if it said nothing in time."""
        try:
            self.control.settimeout(timeout)
            message, fds, _, _ = socket.recv_fds(self.control, MESSAGE_BYTES, 1)
            return (json.loads(message), fds) if message else None
        except (OSError, ValueError):
            return None

    def fork(self, argv: list[str], cwd: Path, result_fd: int) -> ForkedWorker | None:
        """A worker running ``python -m autograder.grading.worker --result-fd FD *argv`` in ``cwd``, forked."""
        with self.lock:
            if self.control is None:
                return None
            request = json.dumps({"argv": argv, "cwd": str(cwd)}).encode()
            try:
                socket.send_fds(self.control, [request], [result_fd])
            except OSError:
                self.close()
                return None
            answer = self._answer(ANSWER_TIMEOUT_S)
            if answer is None:
                self.close()
                return None
            message, fds = answer
            for fd in fds:
                os.set_inheritable(fd, False)  # the grader's later children never hold it
            if "pid" not in message or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                return None  # this fork refused (the zygote had a thread): a fresh worker instead
            self.forked += 1
            return ForkedWorker(self, int(message["pid"]), fds[0])

    def reap(self, pid: int) -> None:
        """Tell the zygote that the grader is done with worker ``pid``."""
        with self.lock:
            if self.control is None:
                return
            try:
                self.control.send(json.dumps({"reap": pid}).encode())
            except OSError:
                self.close()
                return
            if self._answer(ANSWER_TIMEOUT_S) is None:
                self.close()

    def close(self) -> None:
        """Stop the zygote (its workers are not touched: each is stopped with its student)."""
        if self.control is not None:
            self.control.close()
            self.control = None
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_zygote(env: dict[str, str], cwd: Path) -> Zygote | None:
    """A zygote ready to fork workers, or ``None`` where it could not start (each worker then starts afresh)."""
    try:
        zygote = Zygote(env, cwd)
    except OSError:
        return None
    return zygote if zygote.alive else None


if __name__ == "__main__":
    sys.exit(main())
