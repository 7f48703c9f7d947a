"""The lesson generator: one source for solutions, fresh student notebooks, sane nbgrader metadata."""

import json
import textwrap
from pathlib import Path

import nbformat
import pytest

from autograder import build, syllabus
from autograder.grading.repair import is_test_cell

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh_notebooks() -> dict[str, str]:
    """The student notebooks as a fresh build makes them (runs nbgrader's generate_assignment)."""
    return build.student_notebooks()


def test_committed_student_notebooks_are_fresh(fresh_notebooks):
    """lessons/*.ipynb equal a fresh build: run `make lessons` after changing lessons/src or solutions."""
    stale = [
        name
        for name, text in fresh_notebooks.items()
        if (REPO / "lessons" / f"{name}.ipynb").read_text() != text
    ]
    assert not stale, f"stale student notebooks {stale}: run `make lessons` and commit them"


def test_core_points_add_up_to_100_and_grade_ids_are_unique():
    """The core course is out of 100 in the built notebooks too; no grade id repeats inside a lesson (nbgrader would
    abort)."""
    total = 0
    for lesson in build.build_all(list(syllabus.CORE)):
        ids = [c.metadata["nbgrader"]["grade_id"] for c in lesson.source.cells if "nbgrader" in c.metadata]
        assert len(ids) == len(set(ids)), f"{lesson.name}: duplicated grade ids"
        total += sum(
            c.metadata["nbgrader"].get("points", 0) for c in lesson.source.cells if "nbgrader" in c.metadata
        )
    assert total == 100


def test_student_stubs_name_their_exercise(fresh_notebooks):
    """Every exercise cell of the student version raises NotImplementedError naming the exercise, with no
    solution left."""
    for name, text in fresh_notebooks.items():
        nb = nbformat.reads(text, as_version=4)
        exercises = [
            c
            for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution") and not c.metadata["nbgrader"].get("grade")
        ]  # a written answer is graded too
        assert exercises, f"{name} has no exercise"
        for cell in exercises:
            number = cell.metadata["nbgrader"]["grade_id"].removeprefix("exercise_").replace("_", ".")
            assert f'raise NotImplementedError("Exercise {number}:' in cell.source
            assert "BEGIN SOLUTION" not in cell.source
            compile(cell.source, name, "exec")  # valid Python, not `x = # TODO`


def test_hidden_tests_only_in_the_instructor_version(fresh_notebooks):
    """Hidden tests are in the source notebook, never in the student notebook."""
    for lesson in build.build_all():
        graded = [c for c in lesson.source.cells if is_test_cell(c)]
        assert all(build.BEGIN_HIDDEN in c.source for c in graded), lesson.name
        assert "hidden=True" not in fresh_notebooks[lesson.name]


def test_solution_source_wraps_every_function_body():
    """A class gets one solution region per method, after the docstring."""
    [(_, definition)] = build.resolve("solutions.loss:ContrastiveLoss")
    code, names = build.solution_source(definition)
    assert names == ["ContrastiveLoss.__init__", "ContrastiveLoss.forward"]
    assert code.count(build.BEGIN_SOLUTION) == 2 and code.count(build.END_SOLUTION) == 2
    docstring_line = code.splitlines().index(
        '        """The mean contrastive loss of a batch of embedding pairs."""'
    )
    assert code.splitlines()[docstring_line + 1].strip() == build.BEGIN_SOLUTION


def test_parse_lesson_rejects_unknown_cells(tmp_path):
    """A typo in a cell header is an error, not a silently dropped cell."""
    source = tmp_path / "x.py"
    source.write_text("# %% [exercize 1.1] solutions.loss:contrastive_loss\n")
    with pytest.raises(ValueError, match="unknown cell kind"):
        build.parse_lesson(source)


def test_markdown_cells_strip_the_comment_prefix(tmp_path):
    """`# ` prefixes go, lone `#` lines become blank lines."""
    source = tmp_path / "x.py"
    source.write_text(
        textwrap.dedent("""\
        # %% [markdown]
        # # Title
        #
        # text
        """)
    )
    (cell,) = build.parse_lesson(source)
    assert build.markdown_text(cell) == "# Title\n\ntext"


def test_badges_point_at_the_configured_repository(fresh_notebooks):
    """The Colab badge URL comes from the one configured repository name."""
    for name, text in fresh_notebooks.items():
        first = json.loads(text)["cells"][0]
        assert f"github/{build.repository()}/blob/main/lessons/{name}.ipynb" in "".join(first["source"])


def code_lines(cell) -> list[str]:
    """The lines of a cell's source that hold code (not blank)."""
    return [line for line in "".join(cell["source"]).splitlines() if line.strip()]


def test_a_student_sees_one_line_per_test_cell_and_a_short_setup(fresh_notebooks):
    """Grading's plumbing lives in the hidden part of each test cell: the student's cell is the check alone
    (at most two lines of the .ipynb source); the setup cell is at most six."""
    for name, text in fresh_notebooks.items():
        for cell in json.loads(text)["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if is_test_cell(cell):
                assert len(code_lines(cell)) <= 2, (name, meta["grade_id"], code_lines(cell))
            if meta.get("grade_id") == "setup":
                assert len(code_lines(cell)) <= 6, (name, code_lines(cell))
                assert code_lines(cell)[0].startswith("# @title"), "Colab shows the setup cell as a form"


def test_the_instructors_test_cells_keep_the_grading_preamble():
    """nbgrader restores the hidden preamble when it grades: it is in the source notebook, above the check."""
    lesson = build.build_source("04_contrastive_loss")
    cell = next(
        c
        for c in lesson.source.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "loss_similar_pairs"
    )
    assert cell.source.startswith(build.BEGIN_HIDDEN + "\n") and "sys.meta_path" in cell.source
    assert cell.source.count(build.BEGIN_HIDDEN) == 2


@pytest.mark.parametrize(
    "origin, problem",
    [
        ("https://github.com/siamese-course/siamese-course.git", False),
        ("git@github.com:Some-Teacher/siamese-fork.git", True),
        (None, False),
    ],
)
def test_check_repository_says_when_the_badges_point_elsewhere(tmp_path, origin, problem):
    """``--check-repository`` compares the configured repository with the checkout's GitHub origin."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    if origin:
        subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", origin], check=True)
    found = build.origin_repository(tmp_path)
    assert found == (None if origin is None else origin.split("github.com")[1][1:].removesuffix(".git"))
    message = build.repository_problem("siamese-course/siamese-course", found)
    assert (message is not None) == problem
    if problem:
        assert 'repository = "Some-Teacher/siamese-fork"' in message and "make lessons" in message


def test_an_exercise_the_table_does_not_list_stops_the_build():
    """A source's ``[exercise N.k]`` must be a row's exercise: the build says where to add it."""
    lesson = syllabus.lesson("04_contrastive_loss")
    with pytest.raises(
        ValueError, match=r"exercise 4\.9 is not in the course table \(autograder/syllabus.py\)"
    ):
        build.exercise_objects(lesson, "4.9")
    assert [name for name, _ in build.exercise_objects(lesson, "4.1")] == ["contrastive_loss"]


def test_a_definition_is_read_from_its_source_as_it_stands():
    """``resolve`` gives each definition's text as inspect shows the imported object (decorators included),
    without importing it; a name the module does not define at its top level stops the build."""
    import importlib
    import inspect

    given = [
        cell.rest
        for name in syllabus.NAMES
        for cell in build.parse_lesson(build.SOURCES_DIR / f"{name}.py")
        if cell.kind == "given"
    ]
    written = [
        spec for name in syllabus.NAMES for item in syllabus.lesson(name).exercises for spec in item.writes
    ]
    assert given and written
    for spec in given + written:
        module = importlib.import_module(spec.partition(":")[0])
        for name, text in build.resolve(spec):
            assert text == inspect.getsource(getattr(module, name)), spec
    with pytest.raises(ValueError, match="defines no function or class torch at its top level"):
        build.resolve("solutions.loss:torch")
