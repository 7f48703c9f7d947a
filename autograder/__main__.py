"""``python -m autograder``: the instructor's commands.

python -m autograder release OUT               nbgrader course with the student release in OUT/release
python -m autograder solutions OUT             the solved notebooks
python -m autograder grade SUBMISSIONS --out OUT [--jobs N] [--isolation on|off] [--shard K/N]
                                               check, repair and autograde a folder or LMS zip;
                                               writes OUT/grades.csv, OUT/intake.csv and OUT/feedback/;
                                               with --shard, only the students of shard K of N
python -m autograder report --from OUT [--from OUT2 ...] [--db-url URL] --out DIR
                                               grades.csv, intake.csv and feedback again, from the
                                               gradebook (after manual grading in formgrader)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The grading limits a run may change: (option, its Limits field, metavar, help); None keeps Limits' default.
LIMIT_OPTIONS = (
    ("--notebook-timeout", "notebook_timeout", "S", "seconds one notebook may run in all (default 300)"),
    ("--cell-timeout", "cell_timeout", "S", "seconds one cell may run (default 30)"),
    (
        "--memory-mb",
        "memory_mb",
        "MB",
        "address-space limit of each grading process and its kernel (default 8192; 0 = none)",
    ),
    (
        "--max-notebook-mb",
        "notebook_mb",
        "MB",
        "largest notebook file read (default 20); a larger one is that student's 'file too large'",
    ),
    ("--max-student-mb", "student_mb", "MB", "one student's notebooks together (default 100)"),
    (
        "--max-archive-mb",
        "archive_mb",
        "MB",
        "largest zip file accepted (default 4096); a larger one is refused before it is read",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line: release, solutions, grade and report."""
    parser = argparse.ArgumentParser(
        prog="python -m autograder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p_release = commands.add_parser("release", help="build the nbgrader course and the student release")
    p_release.add_argument("out", type=Path)
    p_release.add_argument("--db-url", default=None, help="gradebook URL (default: SQLite in OUT)")
    # grade's own: the sandbox template, built from the same build of the lessons (not an instructor's option)
    p_release.add_argument("--sandbox-template", type=Path, default=None, help=argparse.SUPPRESS)
    p_solutions = commands.add_parser("solutions", help="write the solved notebooks")
    p_solutions.add_argument("out", type=Path)
    add_grade_command(commands)
    p_report = commands.add_parser("report", help="write grades.csv and feedback again from the gradebook")
    p_report.add_argument(
        "--from",
        dest="sources",
        type=Path,
        action="append",
        required=True,
        metavar="OUT",
        help="the --out folder of a grade run (repeat it to merge several)",
    )
    p_report.add_argument(
        "--db-url", default=None, help="the gradebook URL the runs used (default: SQLite in each OUT)"
    )
    p_report.add_argument(
        "--out", type=Path, required=True, help="where grades.csv, intake.csv and feedback/ go"
    )
    return parser


def add_grade_command(commands: argparse._SubParsersAction) -> None:
    """``grade SUBMISSIONS --out OUT`` and its options."""
    p_grade = commands.add_parser("grade", help="autograde a class's submissions")
    p_grade.add_argument(
        "submissions", type=Path, help="a folder (one sub-folder or file prefix per student) or a zip"
    )
    p_grade.add_argument(
        "--out", type=Path, required=True, help="where grades.csv, feedback/ and the course go"
    )
    p_grade.add_argument("--jobs", type=int, default=1, help="students graded at once (default 1)")
    p_grade.add_argument(
        "--db-url", default=None, help="gradebook URL, e.g. postgresql://... (default: SQLite in OUT)"
    )
    for option, field, metavar, text in LIMIT_OPTIONS:
        p_grade.add_argument(option, dest=field, type=int, default=None, metavar=metavar, help=text)
    p_grade.add_argument(
        "--isolation",
        choices=("on", "off"),
        default="on",
        help="on: every notebook's kernel under bubblewrap, refusing to grade where it cannot be "
        "built (default); off: notebooks run as your user, trusted",
    )
    p_grade.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="grade only shard K of N (K from 0): the students whose identity hashes to K; run the N "
        "shards anywhere, into one --db-url, each with its own --out, then `report` merges them "
        "(create the gradebook's course first with `release DIR --db-url URL`)",
    )
    p_grade.add_argument(
        "--timings",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the wall and CPU seconds of every grading stage to FILE (JSON lines), as "
        "`python -m autograder.benchmark` does",
    )


def run_grade(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Grade the submissions; list the students not fully graded."""
    from .grading import run as grading
    from .grading.collect import Shard, printable

    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        shard = Shard.parse(args.shard) if args.shard else None
    except ValueError as error:
        parser.error(str(error))
    given = {field: getattr(args, field) for _, field, _, _ in LIMIT_OPTIONS}
    limits = grading.Limits(**{name: value for name, value in given.items() if value is not None})
    results = grading.grade(
        args.submissions,
        args.out,
        jobs=args.jobs,
        db_url=args.db_url,
        isolate=args.isolation == "on",
        limits=limits,
        shard=shard,
        timings=args.timings,
    )
    for result in results:
        if result.status != "graded":
            print(f"{printable(result.student)} ({result.student_id}): {result.status}")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .grading import run as grading

    try:
        if args.command == "release":
            folder = grading.release(args.out, args.db_url, args.sandbox_template)
            print(f"student release in {folder}; nbgrader course in {args.out}")
        elif args.command == "solutions":
            for path in grading.write_solutions(args.out):
                print(f"wrote {path}")
        elif args.command == "report":
            from .grading.class_report import write_report

            if args.db_url:
                grading.check_database(args.db_url)
            write_report(args.sources, args.out, args.db_url)
        else:
            run_grade(args, parser)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
