"""``python -m autograder.grading.demo_class OUT --students N``: a made-up class of submissions, for trying the grader.

``python -m autograder.grading.demo_class OUT --check GRADES_CSV`` then says whether the grader gave every
student of that class the row their submissions call for.

A fixed mix, the same for the same ``--seed``: about half correct (some saved the way Colab saves
them, as "Copy of ..." files), a quarter with one typical bug in one lesson, and the rest blank,
incomplete or broken (an empty file, invalid JSON, stripped metadata, a duplicated test cell).
Used to measure grading speed (``--jobs``) on classes of any size.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

import nbformat

from ..build import LESSONS_DIR, build_all, solved_notebook
from ..syllabus import NAMES as LESSONS
from .repair import is_answer_cell, is_test_cell, nbgrader_metadata

# lesson → (exercise cell, text in the reference solution, the same text with a typical mistake)
BUGS: dict[str, tuple[str, str, str]] = {
    "01_pair_dataset": (
        "exercise_1_1",
        "float(int(label1) != int(label2))",
        "float(int(label1) == int(label2))",
    ),
    "02_cnn_backbone": (
        "exercise_2_1",
        "nn.MaxPool2d(2, stride=2),  # → 14 x 14",
        "nn.AvgPool2d(2, stride=2),  # → 14 x 14",
    ),
    "03_embedding_head": (
        "exercise_3_1",
        "            nn.ReLU(),  # as in the original: embeddings are non-negative\n",
        "",
    ),
    "04_contrastive_loss": (
        "exercise_4_1",
        "torch.clamp(margin - d, min=0).pow(2)",
        "torch.clamp(margin - d, min=0)",
    ),
    "05_training_loop": ("exercise_5_2", "        optimizer.zero_grad()\n", ""),
    "06_evaluation": ("exercise_6_3", "d = distances.double()", "d = -distances.double()"),
    "07_one_shot": (
        "exercise_7_4",
        "distances.masked_fill(same, math.inf)",
        "distances.masked_fill(itself, math.inf)",
    ),
}


def _copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return nbformat.reads(nbformat.writes(nb), as_version=4)


def _cell(nb: nbformat.NotebookNode, grade_id: str):
    return next(c for c in nb.cells if nbgrader_metadata(c).get("grade_id") == grade_id)


def with_bug(nb: nbformat.NotebookNode, lesson: str) -> nbformat.NotebookNode:
    """A copy of a solved notebook with the lesson's typical bug in its exercise."""
    nb = _copy(nb)
    grade_id, old, new = BUGS[lesson]
    cell = _cell(nb, grade_id)
    if cell.source.count(old) != 1:
        raise RuntimeError(f"{lesson}: the reference solution changed; update BUGS ({old!r} not found once)")
    cell.source = cell.source.replace(old, new)
    return nb


def colab_text(nb: nbformat.NotebookNode, name: str) -> str:
    """``nb`` as Colab saves it as ``name``: nbformat 4.0, Colab's metadata, cell ids kept in each cell's
    metadata, every code cell run once with an output."""
    data = json.loads(nbformat.writes(nb))
    data["nbformat"], data["nbformat_minor"] = 4, 0
    data["metadata"] = {
        "colab": {"provenance": [], "name": name},
        "accelerator": "GPU",
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "language_info": {"name": "python"},
    }
    for k, cell in enumerate(data["cells"]):
        cell["metadata"]["id"] = cell.pop("id", f"cell{k}")
        if cell["cell_type"] == "code":
            cell["metadata"]["outputId"] = f"0ut{k:03d}-4b1e"
            cell["metadata"]["colab"] = {"base_uri": "https://localhost:8080/"}
            cell["execution_count"] = k + 1
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [f"output of cell {k}\n"]}]
    return json.dumps(data, indent=2)


def make_class(out: Path, students: int, seed: int = 0) -> dict[str, str]:
    """Write ``students`` sub-folders of submissions into ``out``; return student → what they handed in."""
    rng = random.Random(seed)
    built = build_all()
    solved = {lesson.name: solved_notebook(lesson.source) for lesson in built}
    blank = {name: nbformat.read(LESSONS_DIR / f"{name}.ipynb", as_version=4) for name in LESSONS}
    kinds = {}
    for k in range(students):
        student = f"student{k + 1:03d}"
        folder = out / student
        folder.mkdir(parents=True, exist_ok=True)
        roll = rng.random()
        if roll < 0.35:
            kind = "correct"
            for name in LESSONS:
                nbformat.write(solved[name], folder / f"{name}.ipynb")
        elif roll < 0.5:
            kind = "correct, saved by Colab"
            for name in LESSONS:
                (folder / f"Copy of {name}.ipynb").write_text(
                    colab_text(solved[name], f"Copy of {name}.ipynb")
                )
        elif roll < 0.75:
            lesson = rng.choice(LESSONS)
            kind = f"bug in {lesson}"
            for name in LESSONS:
                nbformat.write(
                    with_bug(solved[name], name) if name == lesson else solved[name], folder / f"{name}.ipynb"
                )
        elif roll < 0.85:
            kind = "blank release"
            for name in LESSONS:
                nbformat.write(blank[name], folder / f"{name}.ipynb")
        else:
            kind = "broken: empty 01, invalid 02, stripped 03, duplicated test in 04, 05-06 correct"
            (folder / f"{LESSONS[0]}.ipynb").write_text("")
            (folder / f"{LESSONS[1]}.ipynb").write_text("{not json")
            stripped = _copy(solved[LESSONS[2]])
            for cell in stripped.cells:
                cell.metadata.pop("nbgrader", None)
            nbformat.write(stripped, folder / f"{LESSONS[2]}.ipynb")
            duplicated = _copy(solved[LESSONS[3]])
            test = next(c for c in duplicated.cells if is_test_cell(c))
            copy = nbformat.from_dict(json.loads(json.dumps(test)))
            copy.id = f"{test.id}-copy"  # a pasted cell gets a new id, but keeps its nbgrader metadata
            duplicated.cells.append(copy)
            nbformat.write(duplicated, folder / f"{LESSONS[3]}.ipynb")
            for name in LESSONS[4:]:
                nbformat.write(solved[name], folder / f"{name}.ipynb")
        kinds[student] = kind
    (out / "CLASS.json").write_text(json.dumps(kinds, indent=1))
    return kinds


def lesson_points() -> dict[str, float]:
    """The points each lesson's test cells are worth (its written answers aside: those are graded by hand)."""
    return {
        lesson.name: float(
            sum(nbgrader_metadata(c).get("points", 0) for c in lesson.source.cells if is_test_cell(c))
        )
        for lesson in build_all()
    }


def written_answers() -> int:
    """How many written answers the lessons ask for, all together."""
    return sum(is_answer_cell(c) for lesson in build_all() for c in lesson.source.cells)


def check_grades(
    kinds: dict[str, str], rows: dict[str, dict[str, str]], points: dict[str, float], answers: int = 0
) -> list[str]:
    """What is wrong in ``rows`` (grades.csv as student → row) for a class of ``kinds``; empty if nothing.

    ``points`` are the autograded points per lesson; a student who wrote every one of the ``answers``
    awaits manual grading for them, and is not yet scored for them.
    """
    awaiting = (
        f"awaiting manual grading: {answers} answer{'' if answers == 1 else 's'}" if answers else "graded"
    )
    problems = []
    for student, kind in kinds.items():
        row = rows.get(student)
        if row is None:
            problems.append(f"{student} ({kind}): no row")
            continue
        scores = {name: float(row[name]) if row[name] else None for name in LESSONS}
        if kind.startswith("correct"):
            expected, status = dict(points), awaiting
        elif kind.startswith("bug in "):
            lesson = kind.removeprefix("bug in ")
            expected, status = dict(points), awaiting
            expected[lesson] = None  # fewer points than the lesson is worth; checked below
        elif kind == "blank release":
            expected, status = dict.fromkeys(LESSONS, 0.0), "graded"
        else:
            expected = {name: (None if name in LESSONS[:2] else points[name]) for name in LESSONS}
            status = (
                f"{LESSONS[0]} not graded: {LESSONS[0]}.ipynb is an empty file; "
                f"{LESSONS[1]} not graded: {LESSONS[1]}.ipynb is not a readable notebook ("
            )
        if not row["status"].startswith(status):
            problems.append(f"{student} ({kind}): status {row['status']!r}")
        for name in LESSONS:
            if kind.startswith("bug in ") and name == kind.removeprefix("bug in "):
                if scores[name] is None or not 0 <= scores[name] < points[name]:
                    problems.append(f"{student} ({kind}): {name} scored {scores[name]} of {points[name]}")
            elif scores[name] != expected[name]:
                problems.append(
                    f"{student} ({kind}): {name} scored {scores[name]}, expected {expected[name]}"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    """Write the class and print what each student handed in, or check a grades.csv of it."""
    parser = argparse.ArgumentParser(
        prog="python -m autograder.grading.demo_class",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check",
        type=Path,
        metavar="GRADES_CSV",
        help="check the grades.csv of the class written in OUT earlier, instead of writing one",
    )
    args = parser.parse_args(argv)
    if args.check:
        kinds = json.loads((args.out / "CLASS.json").read_text())
        with open(args.check, newline="") as f:
            rows = {row["student"]: row for row in csv.DictReader(f)}
        problems = check_grades(kinds, rows, lesson_points(), written_answers())
        for line in problems:
            print(line)
        print(
            f"{len(kinds) - len({p.split(' ')[0] for p in problems})} of {len(kinds)} students graded as expected"
        )
        return 1 if problems else 0
    if args.students < 1:
        parser.error("--students must be at least 1")
    kinds = make_class(args.out, args.students, args.seed)
    for student, kind in kinds.items():
        print(f"{student}: {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
