"""Demonstration cells skipped while grading (``autograder/grading/demos.py``) and the build's rule for them."""

from __future__ import annotations

import nbformat
import pytest

from autograder import build
from autograder.grading import demos
from autograder.grading.demos import MARK, SKIP_TAG, skip_demos, unneeded

DEMO = "timings = [1.0, 2.0]\nprint(sum(timings))"


def code(source: str, cell_id: str, demo: bool = False, **metadata) -> nbformat.NotebookNode:
    """A code cell with a fixed id (marked as a demo in the instructor's source if ``demo``)."""
    cell = nbformat.v4.new_code_cell(source, metadata=metadata)
    cell.id = cell_id
    if demo:
        cell.metadata[MARK] = {"demo": True}
    return cell


def course_source() -> nbformat.NotebookNode:
    """An instructor's source notebook: setup, a demo, a graded test."""
    return nbformat.v4.new_notebook(
        cells=[code("import math", "c-0"), code(DEMO, "c-1", demo=True), code("assert math.pi > 3", "c-2")]
    )


def submission(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student's notebook made of ``cells``."""
    return nbformat.v4.new_notebook(cells=list(cells))


def tags(nb: nbformat.NotebookNode) -> dict[str, list[str]]:
    """cell id → its tags."""
    return {cell.id: cell.metadata.get("tags", []) for cell in nb.cells}


def test_an_unchanged_demo_is_skipped_and_the_rest_runs():
    """The release's demo cell, unchanged, gets nbclient's skip tag on the copy; the submission itself is untouched."""
    handed_in = submission(code("import math", "c-0"), code(DEMO, "c-1"), code("assert math.pi > 3", "c-2"))
    copy, skipped = skip_demos(handed_in, course_source())
    assert skipped == ["c-1"]
    assert tags(copy) == {"c-0": [], "c-1": [SKIP_TAG], "c-2": []}
    assert tags(handed_in) == {"c-0": [], "c-1": [], "c-2": []}


def test_an_edited_demo_runs():
    """A demo cell the student changed (one character) is the student's code: it runs."""
    handed_in = submission(code(DEMO + " ", "c-1"))
    assert skip_demos(handed_in, course_source())[1] == []


def test_a_demo_the_students_own_cells_read_runs():
    """If a later cell of the submission reads a name the demo defines, skipping it would break that cell: it runs."""
    handed_in = submission(code(DEMO, "c-1"), code("my_answer = timings[0]", "extra"))
    assert skip_demos(handed_in, course_source())[1] == []
    magic_then_read = submission(code(DEMO, "c-1"), code("%time x = 1\nprint(timings)", "extra"))
    assert skip_demos(magic_then_read, course_source())[1] == []


def test_a_demo_runs_when_a_later_cell_is_not_python():
    """A later cell that cannot be parsed might read anything: the demo runs."""
    handed_in = submission(code(DEMO, "c-1"), code("def broken(:\n    pass", "extra"))
    assert skip_demos(handed_in, course_source())[1] == []


def test_a_skip_tag_the_student_added_is_removed():
    """The decision is the grader's alone: a ``skip-execution`` tag in the submitted file is taken off every cell."""
    handed_in = submission(
        code("import math", "c-0", tags=[SKIP_TAG, "mine"]),
        code("assert math.pi > 3", "c-2", tags=[SKIP_TAG]),
    )
    copy, skipped = skip_demos(handed_in, course_source())
    assert skipped == [] and tags(copy) == {"c-0": ["mine"], "c-2": []}


def test_a_demo_mark_in_the_submission_counts_for_nothing():
    """Only the instructor's source says what is a demo: a marked cell in the submission, with another id, runs."""
    handed_in = submission(code("import math", "c-0", demo=True), code(DEMO, "other-id", demo=True))
    assert skip_demos(handed_in, course_source())[1] == []


def test_a_colab_saved_demo_is_found_by_the_id_in_its_metadata():
    """Colab keeps a cell's id in its metadata; the demo is recognised by it."""
    handed_in = submission(code(DEMO, "random-new-id", id="c-1"))
    assert skip_demos(handed_in, course_source())[1] == ["c-1"]


def test_any_later_read_of_a_demos_name_counts_whatever_the_order():
    """Reads are counted wherever they are: after a rebinding, in a ``+=``, in a magic line; a loop variable too."""
    for later in (
        "fig = 2\nprint(fig)",
        "fig += 1",
        "%time print(fig)",
        "!echo {fig}",
        "[fig for fig in range(2)]",
    ):
        assert not unneeded([code("fig = 1", "a"), code(later, "b")], 0), later
    assert unneeded([code("fig = 1", "a"), code("other = 2\nprint(other)", "b")], 0)


def test_a_later_cell_that_can_read_any_name_keeps_the_demo():
    """``eval``, ``exec``, ``globals()`` and star imports read names no syntax tree shows: the demo runs."""
    for later in ("eval('fig')", "exec('print(fig)')", "print(globals()['fig'])", "from math import *"):
        assert not unneeded([code("fig = 1", "a"), code(later, "b")], 0), later


def test_cells_nbgrader_knows_are_never_skipped():
    """A graded or locked cell given a demo's id and text still runs: nbgrader restores its source, not its tags."""
    disguised = code(
        DEMO, "c-1", nbgrader={"grade": True, "grade_id": "check_x", "locked": True, "points": 1}
    )
    assert skip_demos(submission(disguised), course_source())[1] == []


def test_odd_tags_and_ids_do_not_break_it():
    """Tags that are not a list of strings, and ids that are not strings, are tolerated (and the odd tags dropped)."""
    handed_in = submission(code(DEMO, "c-1"), code("import math", "c-0"), code("x = 1", "c-3"))
    for cell, odd in zip(handed_in.cells, (None, 5, ["a", 3, {"b": 1}, SKIP_TAG])):
        cell.metadata["tags"] = odd  # as a hand-edited file may have them (nbformat would not write them)
    handed_in.cells[1].metadata["id"] = 7
    copy, skipped = skip_demos(handed_in, course_source())
    assert skipped == ["c-1"] and tags(copy) == {"c-1": [SKIP_TAG], "c-0": [], "c-3": ["a"]}


def test_a_hostile_cell_cannot_crash_it_or_make_it_slow(monkeypatch):
    """A cell too deep to parse keeps the demo (no crash); each cell is parsed a bounded number of times, so the cost
    stays linear in the notebook's size (it runs in the grader, outside the student's limits); over the size limit
    nothing is analysed and every cell runs."""
    deep = code("x = " + "-" * 100_000 + "1", "deep")
    assert skip_demos(submission(code(DEMO, "c-1"), deep), course_source())[1] == []
    parsed = []
    real_tree = demos._tree
    monkeypatch.setattr(demos, "_tree", lambda source: parsed.append(1) or real_tree(source))
    copies = submission(
        *[code(DEMO, f"copy-{k}", id="c-1") for k in range(300)]
    )  # ids unique, Colab's the demo's
    assert skip_demos(copies, course_source())[1] == [
        "c-1"
    ]  # only the last copy: the others' names are read later
    assert len(parsed) <= 2 * 300, len(parsed)
    parsed.clear()
    over = submission(*[code(DEMO, f"copy-{k}", id="c-1") for k in range(demos.MAX_CODE_CELLS + 1)])
    assert skip_demos(over, course_source())[1] == []
    assert parsed == []


def test_the_build_refuses_a_demo_whose_names_a_later_cell_reads(tmp_path, monkeypatch):
    """A lesson source whose ``[demo]`` cell defines a name a later cell uses does not build, and says which."""
    source = tmp_path / "04_contrastive_loss.py"
    source.write_text("# %% [markdown]\n# Title\n\n# %% [demo]\nspeed = 3\n\n# %%\nprint(speed)\n")
    monkeypatch.setattr(build, "SOURCES_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"04_contrastive_loss: the \[demo\] cell 04-002 defines speed"):
        build.build_source("04_contrastive_loss")
