"""The course table (``autograder.syllabus``) and the files agree, and it lists everything that answers an exercise."""

import contextlib
import importlib
import inspect
import io
import json
import re
import signal
import sys

import pytest
from helpers import REPO

from autograder import syllabus
from autograder.build import SOURCES_DIR, parse_lesson


def source_points(lesson: str, kinds: str = "check|answer") -> int:
    """The points of a lesson's ``[check id N]`` (and ``[answer id N]``) headers."""
    text = (SOURCES_DIR / f"{lesson}.py").read_text()
    return sum(int(n) for n in re.findall(rf"^# %% \[(?:{kinds}) \w+ (\d+)\]", text, re.MULTILINE))


def test_every_row_has_its_files_and_every_file_its_row():
    """A lesson is a row plus its source, its notebook, its solutions module and its checks module; no file
    without a row."""
    for lesson in syllabus.LESSONS:
        for path in (
            lesson.source,
            lesson.notebook,
            *(f"{m.replace('.', '/')}.py" for m in (lesson.solutions_module, lesson.checks_module)),
        ):
            assert (REPO / path).is_file(), f"{lesson.name}: {path} is missing"
    assert sorted(p.stem for p in SOURCES_DIR.glob("*.py")) == sorted(syllabus.NAMES)
    assert sorted(p.stem for p in (REPO / "lessons").glob("*.ipynb")) == sorted(syllabus.NAMES)
    helpers = {"__init__", "report", "transcript", "questions"}  # shared by every lesson's checks
    checks = {p.stem for p in (REPO / "autograder" / "checks").glob("*.py")} - helpers
    assert checks == {lesson.checks_module.rpartition(".")[2] for lesson in syllabus.LESSONS}


def test_names_are_unique_and_numbered_in_order():
    """Lessons ``01_`` to ``NN_`` in order; exercise ``N.k`` belongs to lesson ``N``, numbered from 1."""
    assert [lesson.name[:2] for lesson in syllabus.LESSONS] == [
        f"{k:02d}" for k in range(1, len(syllabus.LESSONS) + 1)
    ]
    for number, lesson in enumerate(syllabus.LESSONS, start=1):
        assert [e.number for e in lesson.exercises] == [
            f"{number}.{k}" for k in range(1, len(lesson.exercises) + 1)
        ]
    assert tuple(n for n in syllabus.NAMES if n not in syllabus.BONUS) == syllabus.CORE


@pytest.mark.parametrize("lesson", syllabus.LESSONS, ids=syllabus.NAMES)
def test_the_sources_exercises_are_the_tables(lesson):
    """Each ``# %% [exercise N.k]`` cell of a source is a row's exercise, in the same order, and each exercise
    is there."""
    in_source = [cell.args[0] for cell in parse_lesson(REPO / lesson.source) if cell.kind == "exercise"]
    assert in_source == [e.number for e in lesson.exercises]


@pytest.mark.parametrize("lesson", syllabus.LESSONS, ids=syllabus.NAMES)
def test_every_listed_answer_exists(lesson):
    """Every object the table names is defined in ``solutions``; what a student writes is in the lesson's module."""
    for item in lesson.exercises:
        for spec in item.answers():
            module, _, name = spec.partition(":")
            assert module.startswith("solutions."), spec
            assert hasattr(importlib.import_module(module), name), (
                f"exercise {item.number}: {spec} does not exist"
            )
        assert all(spec.startswith(lesson.solutions_module + ":") for spec in item.writes), item


def test_core_lessons_total_100_and_bonus_lessons_are_apart():
    """The points of the core lessons' headers add up to 100."""
    assert sum(source_points(name) for name in syllabus.CORE) == 100


def test_label_names_an_exercise_and_refuses_a_wrong_name():
    assert syllabus.label("4.1") == "contrastive_loss (exercise 4.1)"
    assert syllabus.label("6.2", "best_threshold") == "best_threshold (exercise 6.2)"
    with pytest.raises(KeyError, match=re.escape("6.2 asks for verification_accuracy, best_threshold")):
        syllabus.label("6.2", "roc_auc")
    with pytest.raises(KeyError, match="no lesson '09_x'"):
        syllabus.lesson("09_x")


def test_only_the_lessons_marked_gpu_ask_colab_for_one():
    """A notebook's ``accelerator`` metadata is its row's ``gpu``."""
    for lesson in syllabus.LESSONS:
        metadata = json.loads((REPO / lesson.notebook).read_text())["metadata"]
        assert (metadata.get("accelerator") == "GPU") == lesson.gpu, lesson.name


def test_the_readme_course_table_is_the_syllabus():
    """One README row per lesson, in order: its notebook link, its modules, its points and its points by hand."""
    readme = (REPO / "README.md").read_text()
    row = re.compile(
        r"^\| \[(\d\d_\w+)\]\((lessons/\S+\.ipynb)\) \|[^|]*\| `(solutions\.\w+)`[^|]*\| `(autograder\.checks\.\w+)` "
        r"\| (\d+) \| (\d+) \|",
        re.MULTILINE,
    )
    shown = [m.groups() for m in row.finditer(readme)]
    expected = [
        (
            lesson.name,
            lesson.notebook,
            lesson.solutions_module,
            lesson.checks_module,
            str(source_points(lesson.name)),
            str(source_points(lesson.name, "answer")),
        )
        for lesson in syllabus.LESSONS
    ]
    assert shown == expected


# ---------------------------------------------------------------- nothing answers an exercise unlisted


def public_objects() -> dict[str, object]:
    """Every public function and class defined in a module of ``solutions``, as ``module:name``."""
    import pkgutil

    import solutions

    found = {}
    for info in pkgutil.iter_modules(solutions.__path__):
        module = importlib.import_module(f"solutions.{info.name}")
        for name, obj in vars(module).items():
            if (
                not name.startswith("_")
                and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == module.__name__
            ):
                found[f"{module.__name__}:{name}"] = obj
    return found


def graded_cells(lesson: syllabus.Lesson) -> dict[str, list[list[str]]]:
    """``{exercise: the check calls of each test cell after it, hidden ones included}``: a cell scores when all pass."""
    cells: dict[str, list[list[str]]] = {}
    current = None
    for cell in parse_lesson(REPO / lesson.source):
        if cell.kind == "exercise":
            current = cell.args[0]
        elif cell.kind == "check" and current:
            cells.setdefault(current, []).append(
                [line.strip() for line in cell.body.splitlines() if "checks.check_" in line]
            )
    return cells


GRADING_SEED = 20_261_204  # any seed but 0: seed 0 is a self-check, which judges a question's form only


def refuse(*args, **kwargs):
    """Refuses every input (passes a check that an input is refused, as any such function would)."""
    raise ValueError("refused")


TRIVIAL = (refuse, lambda *args, **kwargs: None, lambda *args, **kwargs: 0.0)


class TookTooLong(Exception):
    """A candidate ran past its time: it is no quick answer (and the check would time out while grading)."""


def passes(call: str, namespace: dict, seconds: int = 20) -> bool:
    """Whether a check call passes as it does while grading: probed under a seed other than a self-check's, then
    judged from the recorded answers; within ``seconds``, its output swallowed."""
    from autograder.checks import report, transcript
    from autograder.grading.judge import check_calls

    def stop(*_):
        raise TookTooLong

    (checked,) = check_calls(call)
    record = transcript.Transcript(GRADING_SEED)
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with transcript.running(record):
                exec(call, dict(namespace))
            check = getattr(namespace["checks"], checked.name)
            return report.judge(check, checked.hidden, record.answers, GRADING_SEED).passed
    except (Exception, SystemExit, TookTooLong):  # SystemExit: a command line's main() refusing its arguments
        return False
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_every_solutions_object_that_passes_an_exercises_check_is_in_the_table(monkeypatch, tmp_path):
    """Each public function and class of ``solutions`` is put in each exercise's place and its test cells run (hidden
    checks included): one that passes a cell would score its points, so the table must list it, or grading would
    not hide it. This finds what answers as it is; a wrapper (``ContrastiveLoss()`` around ``contrastive_loss``, a
    loop with another signature) is listed by hand, and the judge's syntax check finds a cell that names it."""
    monkeypatch.setenv("SIAMESE_COURSE_QUICK", "1")
    monkeypatch.chdir(tmp_path)  # a candidate that writes files writes them here
    monkeypatch.setattr(
        sys, "argv", ["candidate", "--help"]
    )  # a main() called without arguments prints help, exits
    candidates = public_objects()
    unlisted = []
    for lesson in syllabus.LESSONS:
        checks = importlib.import_module(lesson.checks_module)
        reference = {
            spec.partition(":")[2]: obj
            for item in lesson.exercises
            for spec in item.writes
            for obj in [getattr(importlib.import_module(spec.partition(":")[0]), spec.partition(":")[2])]
        }
        for number, cells in graded_cells(lesson).items():
            item = syllabus.exercise(number)
            assert all(passes(call, {"checks": checks, **reference}) for calls in cells for call in calls), (
                number
            )
            for name in item.names():
                mine = [
                    calls
                    for calls in cells
                    if any(re.search(rf"\b{name}\b", call) for call in calls)
                    and not any(
                        all(passes(c, {"checks": checks, **reference, name: trivial}) for c in calls)
                        for trivial in TRIVIAL
                    )
                ]  # a cell a trivial function passes tells nothing
                for spec, candidate in candidates.items():
                    namespace = {"checks": checks, **reference, name: candidate}
                    if spec not in item.answers() and any(
                        all(passes(c, namespace) for c in calls) for calls in mine
                    ):
                        unlisted.append(f"{spec} passes a test cell of exercise {number} ({name})")
    assert not unlisted, (
        "add these to the exercise's also_answered_by in autograder/syllabus.py:\n" + "\n".join(unlisted)
    )


def test_a_bonus_lesson_is_a_column_after_the_total_and_outside_it(monkeypatch, tmp_path):
    """With a bonus lesson in the table, grades.csv shows it after ``total``, which stays the core lessons' sum; a
    student who skipped the bonus is still "graded"."""
    import csv

    from autograder.grading import report

    core, bonus = ("01_a", "02_b"), ("03_bonus",)
    monkeypatch.setattr(report, "NAMES", core + bonus)
    monkeypatch.setattr(report, "CORE", core)
    monkeypatch.setattr(report, "BONUS", bonus)
    entry = {"score": 40.0}
    both = report.summarise("s1", "Ada", {"01_a": entry, "02_b": entry, "03_bonus": {"score": 7.5}}, [], [])
    skipped = report.summarise("s2", "Bo", {"01_a": entry, "02_b": entry}, [], [])
    report.write_grades(tmp_path / "grades.csv", [both, skipped])
    with open(tmp_path / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:6] == ["student", "student_id", "01_a", "02_b", "total", "03_bonus"]
    assert rows[1][2:6] == ["40", "40", "80", "7.5"] and rows[1][7] == "graded"
    assert rows[2][2:6] == ["40", "40", "80", ""] and rows[2][7] == "graded"


def test_an_exercise_grade_id_names_its_exercise_and_no_other_cell_does():
    """``exercise_4_1`` ↔ "4.1" for every exercise of the table; test, answer and given cells name none."""
    for row in syllabus.LESSONS:
        for item in row.exercises:
            assert item.grade_id == "exercise_" + item.number.replace(".", "_")
            assert syllabus.exercise_number(item.grade_id) == item.number
    for other in ("loss_similar_pairs", "answer_4_1", "given_dataset_labels", "", None, 5):
        assert syllabus.exercise_number(other) is None, other
