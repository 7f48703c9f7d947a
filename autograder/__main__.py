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


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(
        prog="python -m autograder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p_release = commands.add_parser("release", help="build the nbgrader course and the student release")
    p_release.add_argument("out", type=Path)
    p_release.add_argument("--db-url", default=None, help="gradebook URL (default: SQLite in OUT)")
    p_solutions = commands.add_parser("solutions", help="write the solved notebooks")
    p_solutions.add_argument("out", type=Path)
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
    p_grade.add_argument(
        "--notebook-timeout",
        type=int,
        default=None,
        metavar="S",
        help="seconds one notebook may run in all (default 300)",
    )
    p_grade.add_argument(
        "--cell-timeout", type=int, default=None, metavar="S", help="seconds one cell may run (default 30)"
    )
    p_grade.add_argument(
        "--memory-mb",
        type=int,
        default=None,
        metavar="MB",
        help="address-space limit of each grading process and its kernel (default 8192; 0 = none)",
    )
    p_grade.add_argument(
        "--max-notebook-mb",
        type=int,
        default=None,
        metavar="MB",
        help="largest notebook file read (default 20); a larger one is that student's 'file too large'",
    )
    p_grade.add_argument(
        "--max-student-mb",
        type=int,
        default=None,
        metavar="MB",
        help="one student's notebooks together (default 100)",
    )
    p_grade.add_argument(
        "--max-archive-mb",
        type=int,
        default=None,
        metavar="MB",
        help="largest zip file accepted (default 4096); a larger one is refused before it is read",
    )
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
    args = parser.parse_args(argv)

    from .grading import run as grading
    from .grading.collect import printable

    try:
        if args.command == "release":
            folder = grading.release(args.out, args.db_url)
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
            if args.jobs < 1:
                parser.error(f"--jobs must be at least 1, got {args.jobs}")
            from .grading.collect import Shard

            try:
                shard = Shard.parse(args.shard) if args.shard else None
            except ValueError as error:
                parser.error(str(error))
            given = {
                "notebook_timeout": args.notebook_timeout,
                "cell_timeout": args.cell_timeout,
                "memory_mb": args.memory_mb,
                "notebook_mb": args.max_notebook_mb,
                "student_mb": args.max_student_mb,
                "archive_mb": args.max_archive_mb,
            }
            limits = grading.Limits(**{name: value for name, value in given.items() if value is not None})
            isolate = args.isolation == "on"
            results = grading.grade(
                args.submissions,
                args.out,
                jobs=args.jobs,
                db_url=args.db_url,
                isolate=isolate,
                limits=limits,
                shard=shard,
                timings=args.timings,
            )
            not_graded = [r for r in results if r.status != "graded"]
            for r in not_graded:
                print(f"{printable(r.student)} ({r.student_id}): {r.status}")
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
