"""Stage 2 of grading, repair (``autograder.grading.repair``): malformed nbgrader metadata is repaired, not a crash."""

import copy
import json

import nbformat
import pytest
from helpers import REPO
from nbgrader.nbgraderformat import MetadataValidator

from autograder.grading import repair

LESSON = "04_contrastive_loss"


def release() -> nbformat.NotebookNode:
    """The committed student notebook of lesson 4, as the grader's release."""
    return nbformat.read(REPO / "lessons" / f"{LESSON}.ipynb", as_version=4)


def first_test_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The first graded test cell of ``nb``."""
    return next(cell for cell in nb.cells if repair.is_test_cell(cell))


MALFORMED = {
    "a number": 5,
    "null": None,
    "a list": [],
    "text": "grade me",
    "a list as grade id": {"grade_id": ["loss_similar_pairs"]},
    "text as points": {
        "grade": True,
        "grade_id": "loss_similar_pairs",
        "solution": False,
        "locked": True,
        "points": "all of them",
        "schema_version": 3,
    },
    "an older schema": {"grade_id": "loss_similar_pairs"},
    "no schema version": {
        "grade": True,
        "grade_id": "loss_similar_pairs",
        "solution": False,
        "locked": True,
        "points": 1,
    },
    "empty": {},
    "a key nbgrader does not know": {
        "grade": True,
        "grade_id": "loss_similar_pairs",
        "solution": False,
        "locked": True,
        "points": 1,
        "schema_version": 3,
        "extra": 1,
    },
    "text as grade": {
        "grade": "yes",
        "grade_id": "loss_similar_pairs",
        "solution": False,
        "locked": True,
        "points": 1,
        "schema_version": 3,
    },
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_nbgrader_metadata_is_replaced_by_the_releases(kind):
    """A test cell whose nbgrader metadata nbgrader would refuse gets the release's back, with a note."""
    submitted = release()
    cell = first_test_cell(submitted)
    expected = copy.deepcopy(cell.metadata["nbgrader"])
    cell.metadata["nbgrader"] = MALFORMED[kind]
    data = json.dumps(submitted).encode()  # as a student's editor could save it: no validation

    nb, notes, reason = repair.check_notebook(data, "mine.ipynb", release())

    assert reason is None, reason
    assert "removed malformed nbgrader metadata of 1 cells" in notes, notes
    assert "restored stripped nbgrader metadata of 1 cells" in notes, notes
    assert first_test_cell(nb).metadata["nbgrader"] == expected
    MetadataValidator().validate_nb(nb)  # what nbgrader's own check reads next, as it reads it


def test_well_formed_metadata_is_left_alone():
    """An untouched release notebook is kept as it is: no note, every cell's metadata unchanged."""
    nb, notes, reason = repair.check_notebook(nbformat.writes(release()).encode(), "mine.ipynb", release())
    assert (reason, notes) == (None, [])
    assert [c.metadata.get("nbgrader") for c in nb.cells] == [
        c.metadata.get("nbgrader") for c in release().cells
    ]


def test_a_test_cell_turned_into_markdown_keeps_its_metadata_and_is_turned_back():
    """Its metadata is validated as the code cell the release has: repaired as retyped, not as malformed."""
    submitted = release()
    cell = first_test_cell(submitted)
    markdown = nbformat.v4.new_markdown_cell(cell.source, metadata=cell.metadata)
    markdown["id"] = cell["id"]
    submitted.cells[submitted.cells.index(cell)] = markdown

    nb, notes, reason = repair.check_notebook(json.dumps(submitted).encode(), "mine.ipynb", release())

    grade_id = cell.metadata["nbgrader"]["grade_id"]
    assert (reason, notes) == (None, [f"turned cells {grade_id} back into code cells"])
    assert first_test_cell(nb).cell_type == "code"
    MetadataValidator().validate_nb(nb)
