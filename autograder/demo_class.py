"""``python -m autograder.demo_class OUT --students N``: a made-up class of submissions, for trying the grader.

A fixed mix, the same for the same ``--seed``: about half correct (some saved the way Colab saves
them, as "Copy of ..." files), a quarter with one typical bug in one lesson, and the rest blank,
incomplete or broken (an empty file, invalid JSON, stripped metadata, a duplicated test cell).
Used to measure grading speed (``--jobs``) on classes of any size.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import nbformat

from .build import LESSONS, build_all, solved_notebook

# lesson → (exercise cell, text in the reference solution, the same text with a typical mistake)
BUGS: dict[str, tuple[str, str, str]] = {
    "01_pair_dataset": ("exercise_1_1", "float(int(label1) != int(label2))", "float(int(label1) == int(label2))"),
    "02_cnn_backbone": ("exercise_2_1", "nn.MaxPool2d(2, stride=2),  # → 14 x 14", "nn.AvgPool2d(2, stride=2),  # → 14 x 14"),
    "03_embedding_head": ("exercise_3_1", "            nn.ReLU(),  # as in the original: embeddings are non-negative\n", ""),
    "04_contrastive_loss": ("exercise_4_1", "torch.clamp(margin - d, min=0).pow(2)", "torch.clamp(margin - d, min=0)"),
    "05_training_loop": ("exercise_5_2", "        optimizer.zero_grad()\n", ""),
    "06_evaluation": ("exercise_6_3", "d = distances.double()", "d = -distances.double()"),
}


def _copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return nbformat.reads(nbformat.writes(nb), as_version=4)


def _cell(nb: nbformat.NotebookNode, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def with_bug(nb: nbformat.NotebookNode, lesson: str) -> nbformat.NotebookNode:
    """A copy of a solved notebook with the lesson's typical bug in its exercise."""
    nb = _copy(nb)
    grade_id, old, new = BUGS[lesson]
    cell = _cell(nb, grade_id)
    if cell.source.count(old) != 1:
        raise RuntimeError(f"{lesson}: the reference solution changed; update BUGS ({old!r} not found once)")
    cell.source = cell.source.replace(old, new)
    return nb


def colab_text(nb: nbformat.NotebookNode) -> str:
    """The notebook as Colab saves it: nbformat 4.0, Colab metadata, cell ids moved into metadata."""
    data = json.loads(nbformat.writes(nb))
    data["nbformat_minor"] = 0
    data["metadata"]["colab"] = {"provenance": []}
    for k, cell in enumerate(data["cells"]):
        cell["metadata"]["id"] = cell.pop("id", f"cell{k}")
    return json.dumps(data, indent=2)


def make_class(out: Path, students: int, seed: int = 0) -> dict[str, str]:
    """Write ``students`` sub-folders of submissions into ``out``; return student → what they handed in."""
    rng = random.Random(seed)
    built = build_all()
    solved = {lesson.name: solved_notebook(lesson.source) for lesson in built}
    blank = {name: nbformat.read(Path(__file__).resolve().parents[1] / "lessons" / f"{name}.ipynb", as_version=4)
             for name in LESSONS}
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
                (folder / f"Copy of {name}.ipynb").write_text(colab_text(solved[name]))
        elif roll < 0.75:
            lesson = rng.choice(LESSONS)
            kind = f"bug in {lesson}"
            for name in LESSONS:
                nbformat.write(with_bug(solved[name], name) if name == lesson else solved[name], folder / f"{name}.ipynb")
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
            test = next(c for c in duplicated.cells if c.metadata.get("nbgrader", {}).get("grade"))
            copy = nbformat.from_dict(json.loads(json.dumps(test)))
            copy.id = f"{test.id}-copy"  # a pasted cell gets a new id, but keeps its nbgrader metadata
            duplicated.cells.append(copy)
            nbformat.write(duplicated, folder / f"{LESSONS[3]}.ipynb")
            for name in LESSONS[4:]:
                nbformat.write(solved[name], folder / f"{name}.ipynb")
        kinds[student] = kind
    (out / "CLASS.json").write_text(json.dumps(kinds, indent=1))
    return kinds


def main(argv: list[str] | None = None) -> int:
    """Write the class and print what each student handed in."""
    parser = argparse.ArgumentParser(prog="python -m autograder.demo_class", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.students < 1:
        parser.error("--students must be at least 1")
    kinds = make_class(args.out, args.students, args.seed)
    for student, kind in kinds.items():
        print(f"{student}: {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
