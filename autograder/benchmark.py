"""``python -m autograder.benchmark --out DIR``: where grading time goes, next to plain ``nbgrader autograde``.

It writes a made-up class of correct students (the solved notebooks), grades it with ``grade --timings``,
then autogrades the same notebooks with plain ``nbgrader autograde`` in a bare nbgrader course (no
sandbox, no judge, no intake), and prints CPU and wall seconds per student and per notebook, stage by
stage, with the ratio of the two. CPU is counted for every process each of the two runs starts, in a
cgroup of its own (cgroup v1 ``cpuacct``); where there is none it is the machine's busy time over the
run, which counts everything else the machine does too, and the output says so.

A benchmark prints figures; it passes or fails nothing. ``DIR`` must be empty or new: no course,
cache or server is kept from an earlier run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from . import syllabus
from .grading.sandbox import cpu_accounting_group
from .grading.timing import group_cpu_seconds

REPOSITORY = Path(__file__).resolve().parent.parent
# The stages of one student's grading, in the order they happen (cells are split by kind).
STAGES = (
    "intake and repair",
    "sandbox copy",
    "worker start",
    "sandbox set-up",
    "nbgrader before execution",
    "kernel start",
    "cells: teaching",
    "cells: exercise",
    "cells: test",
    "kernel shutdown",
    "nbgrader after execution",
    "judge",
    "record and feedback",
    "report",
)
ONCE_PER_RUN = ("course build", "grader snapshot", "kernel files", "worker zygote")


class Measured:
    """One command run in a cgroup of its own, with its wall seconds and the CPU seconds of all it started."""

    def __init__(self, name: str) -> None:
        parent = cpu_accounting_group()
        self.group = parent / f"siamese-benchmark-{os.getpid()}-{name}" if parent else None
        self.wall = self.cpu = 0.0
        self.outlived = 0  # processes still in the group after the command ended

    def run(self, command: list[str], **options) -> subprocess.CompletedProcess:
        """Run ``command`` (``subprocess.run`` options), adding its wall and CPU seconds."""
        if self.group:
            self.group.mkdir(exist_ok=True)
        cpu, wall = self.counter(), time.perf_counter()
        done = subprocess.run(command, preexec_fn=self.join if self.group else None, **options)
        self.wall += time.perf_counter() - wall
        self.cpu += self.counter() - cpu
        if self.group:
            self.outlived += len((self.group / "cgroup.procs").read_text().split())
        return done

    def join(self) -> None:
        """Move the process about to run the command into the group (in the child, before exec)."""
        (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def counter(self) -> float:
        """The group's CPU seconds, or the machine's busy seconds where there is no group."""
        if self.group:
            return group_cpu_seconds(self.group) or 0.0
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        """Remove the group."""
        if self.group:
            self.group.rmdir()

    @property
    def how(self) -> str:
        """How the CPU was counted."""
        return "the run's own cgroup" if self.group else "the machine's busy time (no cpuacct cgroup)"


def make_class(out: Path, students: int, lessons: list[str]) -> Path:
    """A folder of ``students`` correct students, one sub-folder each, as ``grade`` reads them."""
    import nbformat

    from .build import build_all, solved_notebook

    solved = {lesson.name: solved_notebook(lesson.source) for lesson in build_all() if lesson.name in lessons}
    for k in range(students):
        for name, nb in solved.items():
            path = out / f"student-{k:03d}" / f"{name}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
    return out


def environment() -> dict[str, str]:
    """This environment, importing the course from this checkout."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
    }


def grade_class(submissions: Path, out: Path, jobs: int) -> tuple[Measured, Path]:
    """Grade the class with the course's grader; its measurement and its timings file."""
    measured, timings = Measured("grade"), out / "timings.jsonl"
    done = measured.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(submissions),
            "--out",
            str(out / "graded"),
            "--jobs",
            str(jobs),
            "--timings",
            str(timings),
        ],
        env=environment(),
        cwd=out,
        capture_output=True,
        text=True,
    )
    measured.close()
    if done.returncode != 0:
        raise RuntimeError(f"grading failed: {done.stderr[-2000:]}")
    return measured, timings


def plain_nbgrader(submissions: Path, out: Path, lessons: list[str]) -> Measured:
    """Autograde the same notebooks with plain ``nbgrader autograde`` in a bare course (built first, not counted)."""
    course = out / "plain"
    subprocess.run(
        [sys.executable, "-m", "autograder", "release", str(course)],
        env=environment(),
        check=True,
        capture_output=True,
    )
    for student in sorted(submissions.iterdir()):
        for lesson in lessons:
            target = course / "submitted" / student.name / lesson / f"{lesson}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(student / f"{lesson}.ipynb", target)
    measured = Measured("plain")
    for lesson in lessons:
        done = measured.run(
            [sys.executable, "-m", "nbgrader", "autograde", lesson, "--force"],
            env=environment(),
            cwd=course,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"plain nbgrader autograde {lesson} failed: {done.stderr[-2000:]}")
    measured.close()
    return measured


def stage_of(record: dict) -> str:
    """The stage a timing record counts towards (cells by kind)."""
    return f"cells: {record.get('kind', 'teaching')}" if record["stage"] == "cell" else record["stage"]


def summarise(records: list[dict], students: int) -> dict:
    """Seconds per student by stage, by lesson, and the costliest cells."""
    by_stage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    by_lesson: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    cells: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for record in records:
        wall_cpu = (record.get("wall", 0.0), record.get("cpu", 0.0))
        for table, key in ((by_stage, stage_of(record)), (by_lesson, record.get("lesson"))):
            if key and record["stage"] != "worker, all":
                table[key][0] += wall_cpu[0]
                table[key][1] += wall_cpu[1]
        if record["stage"] == "cell":
            key = (record["lesson"], record["cell"], record.get("kind", ""))
            cells[key][0] += wall_cpu[0]
            cells[key][1] += wall_cpu[1]
    per_student = {name: [value / students for value in pair] for name, pair in by_stage.items()}
    per_lesson = {name: [value / students for value in pair] for name, pair in by_lesson.items()}
    costliest = sorted(cells.items(), key=lambda item: -item[1][1])[:10]
    return {
        "stages": per_student,
        "lessons": per_lesson,
        "cells": [
            {"lesson": k[0], "cell": k[1], "kind": k[2], "wall": v[0] / students, "cpu": v[1] / students}
            for k, v in costliest
        ],
    }


def print_report(summary: dict, graded: Measured, plain: Measured, students: int, lessons: list[str]) -> None:
    """The figures, as tables a README can quote."""
    stages = summary["stages"]
    once = (
        sum(stages[name][1] for name in ONCE_PER_RUN if name in stages) * students
    )  # back to seconds per run
    once_wall = sum(stages[name][0] for name in ONCE_PER_RUN if name in stages) * students
    per_student_cpu, per_student_wall = (graded.cpu - once) / students, (graded.wall - once_wall) / students
    print(f"\n{students} correct students, {len(lessons)} lessons each; CPU counted by {graded.how}")
    each = ", ".join(
        f"{name} {stages[name][1] * students:.1f} s CPU, {stages[name][0] * students:.1f} s wall"
        for name in ONCE_PER_RUN
        if name in stages
    )
    print(f"once per run, not counted below ({once:.1f} s CPU, {once_wall:.1f} s wall): {each}\n")
    print("| stage | CPU s per student | wall s per student |\n| --- | ---: | ---: |")
    for name in STAGES:
        if name in stages:
            wall = f"{stages[name][0]:.2f}" if name != "worker start" else "—"
            print(f"| {name} | {stages[name][1]:.2f} | {wall} |")
    attributed = sum(pair[1] for name, pair in stages.items() if name not in ONCE_PER_RUN)
    print(f"| not attributed to a stage | {per_student_cpu - attributed:.2f} | |")
    print(f"| **grading, all** | **{per_student_cpu:.2f}** | **{per_student_wall:.2f}** |")
    print(f"| plain `nbgrader autograde`, all | {plain.cpu / students:.2f} | {plain.wall / students:.2f} |")
    print(
        f"\nratio, grading to plain nbgrader: {per_student_cpu * students / plain.cpu:.2f}x CPU, "
        f"{per_student_wall * students / plain.wall:.2f}x wall"
    )
    print(f"processes left running after grade: {graded.outlived}; after plain nbgrader: {plain.outlived}\n")
    print("| lesson (its worker stages) | CPU s | wall s |\n| --- | ---: | ---: |")
    for lesson in lessons:
        wall, cpu = summary["lessons"].get(lesson, (0.0, 0.0))
        print(f"| {lesson} | {cpu:.2f} | {wall:.2f} |")
    print(
        "\ncostliest cells (CPU s per student): "
        + "; ".join(f"{c['lesson']} cell {c['cell']} ({c['kind']}) {c['cpu']:.2f}" for c in summary["cells"])
    )


def main(argv: list[str] | None = None) -> int:
    """Build the class, grade it both ways, print the figures and write them to ``OUT/benchmark.json``."""
    parser = argparse.ArgumentParser(
        prog="python -m autograder.benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="an empty or new folder for the class and the runs"
    )
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="students graded at once (as `grade --jobs`)")
    parser.add_argument(
        "--bonus", action="store_true", help="add the bonus lessons (reported on lines of their own)"
    )
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(
            f"{args.out} is not empty: give a new folder, so that nothing from an earlier run is reused"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    lessons = [lesson.name for lesson in syllabus.LESSONS if args.bonus or not lesson.bonus]
    submissions = make_class(out / "submissions", args.students, lessons)
    graded, timings = grade_class(submissions, out, args.jobs)
    plain = plain_nbgrader(submissions, out, lessons)
    records = [json.loads(line) for line in timings.read_text().splitlines()]
    summary = summarise(records, args.students)
    print_report(summary, graded, plain, args.students, lessons)
    (out / "benchmark.json").write_text(
        json.dumps(
            {
                "students": args.students,
                "jobs": args.jobs,
                "lessons": lessons,
                "cpu_counted_by": graded.how,
                "grading": {"cpu": graded.cpu, "wall": graded.wall, "outlived": graded.outlived},
                "plain_nbgrader": {"cpu": plain.cpu, "wall": plain.wall, "outlived": plain.outlived},
                **summary,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
