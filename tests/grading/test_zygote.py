"""The workers' zygote (``autograder/grading/zygote.py``): forked workers, one thread at each fork, fresh seeds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import subprocess_env
from helpers.grading import FULL_SCORE, LESSON, grade, lesson_score, needs_isolation

from autograder.grading.execute import _kill_group, worker_environment
from autograder.grading.zygote import start_zygote


def parent_of(pid: int) -> int:
    """The parent pid of process ``pid`` (a zombie's too)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def state_of(pid: int) -> str:
    """The state letter of process ``pid`` (``Z`` for a zombie)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def zygote(tmp_path):
    """A zygote started as the grader starts it, stopped afterwards."""
    started = start_zygote(worker_environment(subprocess_env()), tmp_path)
    assert started is not None, "the zygote did not start"
    yield started
    started.close()


def test_a_worker_is_forked_by_the_zygote_and_reaped_once_the_grader_is_done(zygote, tmp_path):
    """The worker is the zygote's child; it ends (no sandbox course here: no result line), and the grader's wait
    lets the zygote reap it; closing the control socket ends the zygote."""
    read_end, write_end = os.pipe()
    worker = zygote.fork(["--", str(tmp_path / "no-course"), "student", LESSON], tmp_path, write_end)
    os.close(write_end)
    assert worker is not None and zygote.forked == 1
    assert parent_of(worker.pid) == zygote.process.pid
    with os.fdopen(read_end, "rb") as results:
        assert results.read() == b""  # no gradebook in that course: the worker ended before any lesson
    deadline = time.monotonic() + 60
    while state_of(worker.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state_of(worker.pid) == "Z"  # ended, and not reaped before the grader is done: its pid stays taken
    worker.wait()
    assert not Path(f"/proc/{worker.pid}").exists()  # reaped now
    zygote.close()
    assert zygote.process.returncode == 0 and not zygote.alive


def test_a_forked_worker_that_hangs_is_killed_like_a_fresh_one(zygote, tmp_path):
    """The grader's kill on a notebook's time limit (``execute._kill_group``) ends a forked worker too: here one
    blocked reading its course's gradebook (a FIFO nobody writes), holding no socket."""
    course = tmp_path / "course"
    course.mkdir()
    os.mkfifo(course / "gradebook.db")
    read_end, write_end = os.pipe()
    worker = zygote.fork(["--", str(course), "student", LESSON], tmp_path, write_end)
    os.close(write_end)
    os.close(read_end)
    assert worker is not None
    try:
        time.sleep(1)
        assert state_of(worker.pid) in "SR"  # still there, waiting
        # What it holds: no socket, so neither it nor a kernel it starts can ask the zygote for anything.
        held = [os.readlink(fd) for fd in Path(f"/proc/{worker.pid}/fd").iterdir()]
        assert not [target for target in held if target.startswith("socket:")], held
    finally:
        _kill_group(worker)
    assert not Path(f"/proc/{worker.pid}").exists()


def test_a_zygote_that_is_gone_forks_nothing_so_workers_start_afresh(zygote, tmp_path):
    """``fork`` answers ``None`` (``execute._start_worker`` then starts the worker as a new process)."""
    os.kill(zygote.process.pid, signal.SIGKILL)
    zygote.process.wait()
    read_end, write_end = os.pipe()
    try:
        assert zygote.fork(["--", str(tmp_path), "student", LESSON], tmp_path, write_end) is None
        assert not zygote.alive
    finally:
        os.close(read_end)
        os.close(write_end)


THREADED_ZYGOTE = """
import socket, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
from autograder.grading.zygote import serve
serve(socket.socket(fileno=int(sys.argv[1])))
"""


def test_a_zygote_with_a_second_thread_refuses_to_fork():
    """A thread could hold a lock that the forked child would wait on forever: no fork, and it says why."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = subprocess.Popen(
        [sys.executable, "-c", THREADED_ZYGOTE, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        env=subprocess_env(),
    )
    theirs.close()
    read_end, write_end = os.pipe()
    try:
        socket.send_fds(mine, [json.dumps({"argv": [], "cwd": "/"}).encode()], [write_end])
        mine.settimeout(120)
        message, fds, _, _ = socket.recv_fds(mine, 65536, 1)
        assert fds == [] and "threads, not one" in json.loads(message)["error"], message
    finally:
        mine.close()
        os.close(read_end)
        os.close(write_end)
        process.wait(timeout=60)
    assert process.returncode == 0


RESEEDED = """
import json, os
import numpy, torch
from autograder.grading.zygote import prepare_child

def state():
    return [torch.initial_seed(), int(numpy.random.get_state()[1][1])]  # [1][0] is the same after any seeding

def child(fresh):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        if fresh:
            prepare_child("/")
        os.write(write_end, json.dumps(state()).encode())
        os._exit(0)
    os.close(write_end)
    seen = json.loads(os.read(read_end, 1000))
    os.waitpid(pid, 0)
    return seen

print(json.dumps({"zygote": state(), "plain": child(False), "reseeded": [child(True), child(True)]}))
"""


def test_forked_workers_draw_random_seeds_of_their_own():
    """A forked child would share the zygote's torch and NumPy states (the "plain" child shows it); the preparation
    every forked worker goes through (``prepare_child``) gives each fresh ones, as a new process has."""
    result = subprocess.run(
        [sys.executable, "-c", RESEEDED], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["plain"] == seen["zygote"]  # what reseed is for
    first, second = seen["reseeded"]
    for index in range(2):  # torch's seed, then NumPy's
        assert len({seen["zygote"][index], first[index], second[index]}) == 3, seen


def graded_pair(workspace, name: str, *options: str) -> tuple[dict, list[dict]]:
    """Two correct students of lesson 4 graded with ``--timings``: their rows and the timing records."""
    root, code, solved = workspace
    subs, out = root / f"{name}-subs", root / f"{name}-out"
    for student in ("ada", "bob"):
        (subs / student).mkdir(parents=True)
        shutil.copy(solved / f"{LESSON}.ipynb", subs / student / f"{LESSON}.ipynb")
    timings = root / f"{name}-timings.jsonl"
    run = grade(code, subs, out, "--timings", str(timings), *options)
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    return run.rows, [json.loads(line) for line in timings.read_text().splitlines()]


@needs_isolation
@pytest.mark.slow
def test_every_worker_of_a_sandboxed_run_is_forked_from_one_zygote(workspace):
    """Two students, two forked workers (the zygote counts them), both graded in full."""
    rows, records = graded_pair(workspace, "sandboxed")
    assert {student: lesson_score(row) for student, row in rows.items()} == {
        "ada": FULL_SCORE,
        "bob": FULL_SCORE,
    }
    zygotes = [record for record in records if record["stage"] == "worker zygote"]
    assert len(zygotes) == 1 and zygotes[0]["workers"] == 2, zygotes


@pytest.mark.slow
def test_without_the_sandbox_every_worker_starts_afresh(workspace):
    """``--isolation off``: a notebook runs as the grader's user and could write into a zygote's memory: none."""
    rows, records = graded_pair(workspace, "not-isolated", "--isolation", "off")
    assert {student: lesson_score(row) for student, row in rows.items()} == {
        "ada": FULL_SCORE,
        "bob": FULL_SCORE,
    }
    assert not [record for record in records if record["stage"] == "worker zygote"]
