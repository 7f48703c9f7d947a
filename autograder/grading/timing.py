"""Where grading time goes: wall and CPU seconds per stage, student and lesson (``grade --timings FILE``).

The grader's own stages are timed in the thread that runs them (``time.thread_time``, so that students
graded side by side are not charged for each other). A student's worker and the kernels it starts share
the student's cgroups; their CPU is read from those groups' counters (cgroup v1 ``cpuacct.usage``, v2
``cpu.stat``), which count every process in the group, sandboxed kernels included. Where the machine has
no such counter the CPU of those stages is ``None``: not measured, never guessed.
"""

from __future__ import annotations

import json
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The fields a record may carry, and for each its type: the worker's records cross a process boundary.
FIELDS = {"stage": str, "student": str, "lesson": str, "cell": int, "kind": str, "wall": float, "cpu": float}


def group_cpu_seconds(folder: Path) -> float | None:
    """CPU seconds used so far by every process that was ever in the cgroup ``folder``; ``None`` without a counter."""
    try:
        if (folder / "cpuacct.usage").is_file():  # cgroup v1: nanoseconds
            return int((folder / "cpuacct.usage").read_text()) / 1e9
        if (folder / "cpu.stat").is_file():  # cgroup v2: "usage_usec N" among other lines
            fields = dict(
                line.split() for line in (folder / "cpu.stat").read_text().splitlines() if line.strip()
            )
            return int(fields["usage_usec"]) / 1e6
    except (OSError, ValueError, KeyError):
        pass
    return None


def cpu_counter(folders: list[Path]) -> Path | None:
    """The one folder among a student's cgroups that counts CPU, if any."""
    return next((folder for folder in folders if group_cpu_seconds(folder) is not None), None)


def children_cpu() -> float:
    """CPU seconds of this process's finished children that it waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clean_record(record: object) -> dict | None:
    """A timing record with only known fields of the right types (a worker's line is checked, never trusted)."""
    if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
        return None
    kept = {}
    for name, kind in FIELDS.items():
        value = record.get(name)
        if (
            kind is float
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and 0 <= value < 1e7
        ):
            kept[name] = float(value)
        elif kind is int and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1e6:
            kept[name] = value
        elif kind is str and isinstance(value, str):
            kept[name] = value[:100]
    return kept


class Timings:
    """The timing records of one grading run, written as JSON lines at its end."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.lock = threading.Lock()  # students are graded in parallel threads

    def add(self, record: dict) -> None:
        """Keep one record (``stage``, ``wall``, ``cpu`` and where it belongs)."""
        with self.lock:
            self.records.append(record)

    @contextmanager
    def stage(self, name: str, children: bool = False, **where: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name``, in wall seconds and this thread's CPU seconds.

        ``children`` adds the CPU of the child processes it waited for: only where no other thread starts any.
        """
        wall, cpu = time.perf_counter(), time.thread_time() + (children_cpu() if children else 0)
        try:
            yield
        finally:
            used = time.thread_time() + (children_cpu() if children else 0) - cpu
            self.add({"stage": name, **where, "wall": time.perf_counter() - wall, "cpu": used})

    def write(self, path: Path) -> None:
        """Write every record as one JSON line."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            path.write_text("".join(json.dumps(record) + "\n" for record in self.records))


class LapClock:
    """Laps of one lesson in the worker: wall seconds, and the CPU of the student's whole cgroup (kernel included)."""

    def __init__(self, counter: Path | None) -> None:
        self.counter = counter
        self.records: list[dict] = []
        self.last = self.now()

    def now(self) -> tuple[float, float | None]:
        """The wall clock and the group's CPU counter, read together."""
        return time.perf_counter(), group_cpu_seconds(self.counter) if self.counter else None

    def lap(self, stage: str, **where: object) -> None:
        """Record the time since the previous lap as ``stage``."""
        wall, cpu = self.now()
        record = {"stage": stage, **where, "wall": wall - self.last[0]}
        if cpu is not None and self.last[1] is not None:
            record["cpu"] = cpu - self.last[1]
        self.records.append(record)
        self.last = (wall, cpu)
