"""The lessons run: solved, every cell works and every graded check passes; as released, the first failure is
an exercise."""

from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from autograder import build, syllabus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sources() -> dict[str, build.Lesson]:
    """Every lesson's nbgrader source notebook, built once for the module."""
    return {lesson.name: lesson for lesson in build.build_all()}


def nbgrader_meta(cell) -> dict:
    """The cell's nbgrader metadata ({} if none)."""
    return cell.metadata.get("nbgrader", {})


def errors(cell) -> list:
    """The error outputs of a cell."""
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


def stderr(cell) -> str:
    """Everything a cell wrote to stderr."""
    return "".join(
        o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stderr"
    )


def stdout(cell) -> str:
    """Everything a cell wrote to stdout."""
    return "".join(
        o.text for o in cell.get("outputs", []) if o.output_type == "stream" and o.name == "stdout"
    )


def error_text(cell) -> str:
    """A cell's errors as one string: names, values and tracebacks."""
    return "\n".join(f"{e.ename}: {e.evalue}\n" + "\n".join(e.traceback) for e in errors(cell))


class SolvedRuns:
    """Each solved lesson executed top to bottom once, when first asked for, for every test that reads it."""

    def __init__(self, sources: dict[str, build.Lesson], folders: pytest.TempPathFactory) -> None:
        self.sources, self.folders, self.executed = sources, folders, {}

    def get(self, lesson: str) -> nbformat.NotebookNode:
        """The executed solved notebook of ``lesson``."""
        if lesson not in self.executed:
            nb = build.solved_notebook(self.sources[lesson].source)
            self.executed[lesson] = build.execute_notebook(nb, cwd=self.folders.mktemp(lesson))
        return self.executed[lesson]


@pytest.fixture(scope="module")
def solved_runs(sources, tmp_path_factory) -> SolvedRuns:
    """The solved lessons' runs, shared by the tests of this module."""
    return SolvedRuns(sources, tmp_path_factory)


def graded_outputs(nb: nbformat.NotebookNode) -> dict[str, str]:
    """grade id → what the graded test cell printed."""
    return {
        nbgrader_meta(c)["grade_id"]: stdout(c)
        for c in nb.cells
        if c.cell_type == "code" and nbgrader_meta(c).get("grade")
    }


@pytest.mark.slow
@pytest.mark.parametrize("lesson", syllabus.NAMES)
def test_solved_lesson_runs_clean(lesson, solved_runs):
    """The solved lesson runs top to bottom: no error, nothing on stderr, every graded check prints [PASS]."""
    nb = solved_runs.get(lesson)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert all(not errors(c) for _, c in code), [(i, error_text(c)) for i, c in code if errors(c)]
    assert all(not stderr(c) for _, c in code), [(i, stderr(c)) for i, c in code if stderr(c)]
    graded = [(nbgrader_meta(c)["grade_id"], c) for _, c in code if nbgrader_meta(c).get("grade")]
    assert graded, f"{lesson} has no graded cell"
    assert not [gid for gid, c in graded if "[PASS]" not in stdout(c)], {
        gid: stdout(c) for gid, c in graded if "[PASS]" not in stdout(c)
    }


WITH_DEMOS = [
    name for name in syllabus.NAMES if "# %% [demo]" in (build.SOURCES_DIR / f"{name}.py").read_text()
]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", syllabus.NAMES)
def test_the_checks_print_the_same_when_run_as_graded(lesson, sources, solved_runs, tmp_path, monkeypatch):
    """Run as grading runs it (its demonstration cells skipped, its figures made but never drawn), the solved
    lesson's graded test cells print exactly what they print after a full run: what grading leaves out changes
    nothing the checks see."""
    from autograder.grading.demos import skip_demos
    from data_utils.env import GRADING_FIGURES_BACKEND, MPL_BACKEND_VAR
    from data_utils.grading_figures import NOT_DRAWN

    nb, skipped = skip_demos(build.solved_notebook(sources[lesson].source), sources[lesson].source)
    assert bool(skipped) == (lesson in WITH_DEMOS), (
        f"{lesson}: demo cells marked but none skipped, or the reverse"
    )
    monkeypatch.setenv(
        MPL_BACKEND_VAR, GRADING_FIGURES_BACKEND
    )  # the kernel inherits it, as a graded kernel does
    as_graded = build.execute_notebook(nb, cwd=tmp_path)
    assert all(not c.get("outputs") for c in as_graded.cells if c.get("id") in skipped)  # they did not run
    outputs = [o for c in as_graded.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if "image/png" in o.get("data", {})], f"{lesson}: a figure was drawn"
    if any("plt.show()" in c.source for c in as_graded.cells if c.get("outputs")):
        assert any(NOT_DRAWN in o.get("text", "") for o in outputs), f"{lesson}: no figure was left undrawn"
    assert graded_outputs(as_graded) == graded_outputs(solved_runs.get(lesson))


@pytest.mark.slow
@pytest.mark.parametrize("lesson", syllabus.NAMES)
def test_student_lesson_first_error_is_an_exercise(lesson, tmp_path):
    """The released lesson runs cleanly up to its first exercise; the first failure after it names the
    unfinished exercise."""
    nb = nbformat.read(REPO / "lessons" / f"{lesson}.ipynb", as_version=4)
    with pytest.raises(
        CellExecutionError
    ):  # execute_notebook stops at the first error, as a student's run-all does
        build.execute_notebook(nb, cwd=tmp_path)
    first_exercise = next(i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("solution"))
    first_error = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and errors(c))
    assert first_error > first_exercise, (first_error, error_text(nb.cells[first_error]))
    text = error_text(nb.cells[first_error])
    assert "NotImplementedError" in text or "Exercise" in text or "unfinished" in text, text
    ran = [c for c in nb.cells[:first_exercise] if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in ran), "a cell before the first exercise did not run"


@pytest.mark.slow
def test_a_failed_check_shows_the_fail_block_alone(sources, tmp_path):
    """A typical bug (the margin argument ignored): the test cell shows the [FAIL] block, no traceback through the
    course's own files."""
    from nbclient import NotebookClient

    from autograder.grading.course import put_environment_on_path

    nb = build.solved_notebook(sources["04_contrastive_loss"].source)
    exercise = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "exercise_4_1")
    assert exercise.source.count("torch.clamp(margin - d") == 1
    exercise.source = exercise.source.replace("torch.clamp(margin - d", "torch.clamp(2.0 - d")
    put_environment_on_path()
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    cell = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == "loss_margin_argument")
    (error,) = errors(cell)
    shown = "\n".join(error.traceback)
    assert error.traceback[0].startswith("[FAIL] the loss honours the margin argument"), shown
    for part in ("  input:", "  expected:", "  got:", "  likely mistake: the margin argument is ignored"):
        assert part in shown, shown
    assert "Traceback" not in shown and "autograder/" not in shown and ".py" not in shown, shown


def solved(lesson: str, sources) -> nbformat.NotebookNode:
    """The solved notebook of ``lesson``."""
    return build.solved_notebook(sources[lesson].source)


@pytest.mark.slow
def test_lesson_6_evaluates_the_network_lesson_5_saved(sources, tmp_path, monkeypatch):
    """Lessons 5 and 6 run as Colab runs them: separate kernels and folders, the network handed over on "Drive"."""
    from data_utils.lessons import DRIVE_ENV_VAR, file_digest

    drive = tmp_path / "drive"
    monkeypatch.setenv(DRIVE_ENV_VAR, str(drive))
    (tmp_path / "five").mkdir()
    (tmp_path / "six").mkdir()
    build.execute_notebook(solved("05_training_loop", sources), cwd=tmp_path / "five")
    saved = drive / "siamese.pt"
    assert saved.is_file() and not (tmp_path / "five" / "siamese.pt").exists()
    six = build.execute_notebook(solved("06_evaluation", sources), cwd=tmp_path / "six")
    said = "\n".join(stdout(c) for c in six.cells if c.cell_type == "code")
    assert (
        f"evaluating YOUR network: the weights lesson 5 saved in {saved} (sha256 {file_digest(saved)})"
        in said
    ), said


@pytest.mark.slow
def test_lesson_6_says_when_it_finds_no_network(sources, tmp_path, monkeypatch):
    """Without lesson 5's file, lesson 6 says so and says which network it evaluates instead."""
    from data_utils.lessons import DRIVE_ENV_VAR

    monkeypatch.setenv(DRIVE_ENV_VAR, str(tmp_path / "empty-drive"))
    six = build.execute_notebook(solved("06_evaluation", sources), cwd=tmp_path)
    said = "\n".join(stdout(c) for c in six.cells if c.cell_type == "code")
    assert f"no trained network found at {tmp_path / 'empty-drive' / 'siamese.pt'}" in said, said
    assert "the figures below are not your network's" in said


def test_lesson_6_quotes_the_reference_runs_figures():
    """The reference figures lesson 6 prints are those of the committed reference run, rounded as printed."""
    import json
    import re

    metrics = json.loads((build.REPO_ROOT / "results" / "reference" / "metrics.json").read_text())
    source = (build.LESSONS_DIR / "src" / "06_evaluation.py").read_text()
    quoted = re.search(
        r"REFERENCE_ACCURACY, REFERENCE_AUC, REFERENCE_SAME, REFERENCE_DIFFERENT = (.+)", source
    ).group(1)
    assert [v.strip().strip('"') for v in quoted.split(",")] == [
        f"{metrics['test_accuracy']:.1%}",
        f"{metrics['roc_auc']:.3f}",
        f"{metrics['mean_similarity_same']:.2f}",
        f"{metrics['mean_similarity_different']:.2f}",
    ]
