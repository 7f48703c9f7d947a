"""Stage 3b of grading, judge: decide every test cell from the answers its checks recorded, outside the kernel.

The worker runs this right after a lesson's notebook has executed, in its own process, which has never
run a line of the student's code. For each test cell it reads, from the instructor's version of the
cell, which checks the cell must run; takes from the cell's outputs the record each of those checks
left (see ``autograder.checks.transcript``); and replays the check against it with this run's seed.
The cell's outputs are then *replaced* by the verdicts: ``[PASS]`` lines, and an error for the first
failure. Whatever else the kernel printed or displayed in a test cell is dropped, so it cannot
decide a score: nbgrader's ``SaveAutoGrades`` later reads only these outputs.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .. import syllabus
from . import reference
from .repair import is_test_cell, nbgrader_metadata

TRANSCRIPT_MIME = "application/vnd.siamese.transcript+json"  # autograder.checks.transcript.TRANSCRIPT_MIME


@dataclass(frozen=True)
class CheckCall:
    """One check a test cell runs: ``checks.<name>(..., hidden=<hidden>)``."""

    name: str
    hidden: bool


def check_calls(source: str) -> list[CheckCall]:
    """The checks an (instructor's) test cell calls, in order."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("check_")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "checks"
        ):
            hidden = any(
                k.arg == "hidden" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            calls.append((node.lineno, node.col_offset, CheckCall(node.func.attr, hidden)))
    return [call for _, _, call in sorted(calls, key=lambda c: (c[0], c[1]))]


def records(outputs: list) -> list[dict]:
    """The check records among a cell's outputs (anything else the kernel showed is ignored)."""
    found = []
    for output in outputs:
        data = output.get("data") if output.get("output_type") in ("display_data", "execute_result") else None
        payload = data.get(TRANSCRIPT_MIME) if isinstance(data, dict) else None
        if isinstance(payload, dict):
            found.append(payload)
    return found


def _why_missing(outputs: list) -> str:
    """What the kernel said when a check left no record: its error, a timeout, or nothing."""
    if any(output.get("ename") == "CellTimeoutError" for output in outputs):
        return "the cell was stopped at the time limit for one cell"
    for output in outputs:
        if output.get("output_type") == "error":
            return (
                f"the cell stopped with {str(output.get('ename'))[:100]}: {str(output.get('evalue'))[:300]}"
            )
    return "no record of it reached the grader"


def judge_cell(lesson: str, source: str, outputs: list, seed: int) -> tuple[list[str], str | None]:
    """The verdicts on one test cell: its ``[PASS]`` lines, and the ``[FAIL]`` message of its first failure."""
    from autograder.checks import report

    module = importlib.import_module(syllabus.lesson(lesson).checks_module)
    found = records(outputs)
    passes: list[str] = []
    for call in check_calls(source):
        mine = [r for r in found if r.get("check") == call.name and r.get("hidden") is call.hidden]
        label = f"{call.name}{' (hidden cases)' if call.hidden else ''}"
        if len(mine) != 1:
            why = _why_missing(outputs) if not mine else f"{len(mine)} records of it were shown, not one"
            return passes, f"[FAIL] {label} did not run to the end: {why}"
        answers = mine[0].get("answers")
        if not isinstance(answers, list):
            return passes, f"[FAIL] {label}: its record is malformed"
        verdict = report.judge(getattr(module, call.name), call.hidden, answers, seed)
        if not verdict.passed and any(output.get("ename") == "CellTimeoutError" for output in outputs):
            return (
                passes,
                f"[FAIL] {label} did not run to the end: {_why_missing(outputs)}",
            )  # its record stops there
        if not verdict.passed:
            return passes, verdict.text
        passes.append(verdict.text)
    return passes, None


def verdict_outputs(passes: list[str], failure: str | None) -> list:
    """A test cell's new outputs: the ``[PASS]`` lines, then an error output for a failure (nbgrader scores it 0)."""
    outputs = []
    if passes:
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text="\n".join(passes) + "\n"))
    if failure is not None:
        outputs.append(
            nbformat.v4.new_output(
                "error", ename="CheckFailure", evalue=failure, traceback=failure.splitlines()
            )
        )
    return outputs


def exercise_of_tests(source: nbformat.NotebookNode) -> dict[str, str]:
    """``{test cell grade id: the exercise it checks ("4.1")}``: each test cell checks the exercise above it."""
    owner, found = None, {}
    for cell in source.cells:
        grade_id = str(nbgrader_metadata(cell).get("grade_id", ""))
        if syllabus.exercise_number(grade_id):
            owner = syllabus.exercise_number(grade_id)
        elif is_test_cell(cell) and owner:
            found[grade_id] = owner
    return found


def reference_uses(nb: nbformat.NotebookNode, lesson: str, owners: dict[str, str]) -> dict[str, list[str]]:
    """``{exercise: what of the reference (or the checks' expected values) it used}``, from the exercise cells'
    code and from what the notebook's outputs say a stand-in or a guarded helper refused."""
    hidden, helpers = reference.exercises(lesson), reference.check_helpers()
    used: dict[str, list[str]] = {}
    for cell in nb.cells:
        grade_id = str(nbgrader_metadata(cell).get("grade_id", ""))
        own = syllabus.exercise_number(grade_id)
        if own:
            used.setdefault(own, []).extend(reference.static_uses(cell.source, hidden, helpers))
        text = "\n".join(str(o.get("evalue", "")) + str(o.get("text", "")) for o in cell.get("outputs", []))
        for name in reference.runtime_uses(text):
            exercise = hidden.get(name) or (own or owners.get(grade_id) if name in helpers else None)
            if exercise and name not in used.get(exercise, []):
                used.setdefault(exercise, []).append(name)
    return {exercise: names for exercise, names in used.items() if names}


def judge_notebook(executed: Path, source: nbformat.NotebookNode, lesson: str, seed: int) -> list[str]:
    """Replace the outputs of every original test cell of ``executed`` with the judge's verdicts (in place).

    A test cell that is not the original is left alone: ``record.verify_executed`` scores it 0. An
    exercise that used the reference solution scores 0 in all its test cells. Returns the notes.
    """
    from .record import ADDED_BACK

    nb = nbformat.read(executed, as_version=4)
    originals = {nbgrader_metadata(c)["grade_id"]: c.source for c in source.cells if is_test_cell(c)}
    owners = exercise_of_tests(source)
    uses = reference_uses(
        nb, lesson, owners
    )  # before the test cells' outputs are replaced: they may show a stand-in
    for cell in nb.cells:
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if (
            cell.cell_type != "code" or grade_id not in originals
        ):  # the source's tests, whatever the file's flags
            continue
        if ADDED_BACK.sub("", cell.source) != originals[grade_id]:
            continue
        used = uses.get(owners.get(grade_id, ""), [])
        if used:
            passes, failure = (
                [],
                (
                    f"[FAIL] exercise {owners[grade_id]} {reference.describe(used)}\n"
                    + (
                        "  The grader must read an exercise's code to judge it."
                        if reference.UNREADABLE in used
                        else "  The exercise is yours to write: the reference is not an answer."
                    )
                ),
            )
        else:
            passes, failure = judge_cell(lesson, originals[grade_id], cell.get("outputs", []), seed)
        cell.outputs = verdict_outputs(passes, failure)
        cell.metadata["siamese"] = {"judged": True}  # the grader's own key: intake removed any the file had
    nbformat.write(nb, executed)
    exercises = {
        syllabus.exercise_number(nbgrader_metadata(c).get("grade_id")): c.source
        for c in nb.cells
        if syllabus.exercise_number(nbgrader_metadata(c).get("grade_id"))
    }
    return [
        f"exercise {exercise} {reference.describe(names)}; its checks score 0"
        for exercise, names in sorted(uses.items())
    ] + [
        f"review: exercise {exercise} is the reference solution token for token"
        for exercise in reference.copies(exercises, lesson)
    ]
