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


# ---------------------------------------------------------------- cells the later stages can read


@pytest.mark.parametrize(
    "bad_id",
    ["a" * 65, "has spaces", "semi;colon", "ünïcode", "", 5, None],
    ids=["too_long", "spaces", "punctuation", "non_ascii", "empty", "a_number", "null"],
)
def test_a_cell_id_nbformat_would_refuse_is_given_anew(bad_id):
    """An id that nbformat 4.5's schema refuses would lose the whole lesson (nbgrader validates the notebook):
    the cell gets a new, valid and unique id, with a note, and the notebook validates."""
    submitted = release()
    cell = first_test_cell(submitted)
    cell["id"] = bad_id
    nb, notes, reason = repair.check_notebook(json.dumps(submitted).encode(), "mine.ipynb", release())
    assert reason is None, reason
    assert "gave 1 cells a new id (theirs was not a valid cell id, or a repeated one)" in notes, notes
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids) and all(repair.CELL_ID.fullmatch(i) for i in ids)
    nbformat.validate(nb)


def test_a_repeated_cell_id_is_given_anew_in_the_later_cell():
    """(nbformat's reader already does it, with a warning; the repair would too.)"""
    submitted = release()
    cells = [c for c in submitted.cells if c.cell_type == "code"]
    cells[1]["id"] = cells[0]["id"]
    nb, _, reason = repair.check_notebook(json.dumps(submitted).encode(), "mine.ipynb", release())
    assert reason is None, reason
    assert nb.cells[submitted.cells.index(cells[0])].id == cells[0]["id"]  # the first keeps its id
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    nbformat.validate(nb)


@pytest.mark.parametrize("value", ["x", 5, [], {"judged": True}], ids=["text", "number", "list", "a_verdict"])
def test_the_graders_own_metadata_is_removed_from_a_submission(value):
    """``siamese`` is the grader's key (the judge marks its verdicts with it): a submission's is dropped, noted,
    whatever its value (a string once crashed the judge; a forged verdict mark must never count)."""
    submitted = release()
    first_test_cell(submitted).metadata["siamese"] = value
    nb, notes, reason = repair.check_notebook(json.dumps(submitted).encode(), "mine.ipynb", release())
    assert reason is None, reason
    assert "removed the grader's own metadata (siamese) from 1 cells" in notes, notes
    assert not any("siamese" in c.metadata for c in nb.cells)


@pytest.mark.parametrize(
    "cell, why",
    [
        ("a cell", "(ValidationError)"),
        ({"cell_type": "markdown", "source": "x", "metadata": "metadata"}, "(ValidationError)"),
        (
            {"cell_type": "heading", "source": "x", "metadata": {}},
            "(cell 2 is not a code, markdown or raw cell)",
        ),
        ({"cell_type": "code", "source": 5, "metadata": {}, "outputs": []}, "(cell 2 has no text)"),
    ],
    ids=["a_string", "metadata_as_text", "an_unknown_type", "a_number_as_source"],
)
def test_a_cell_that_is_no_cell_makes_the_notebook_unreadable(cell, why):
    """Not repaired but refused, saying why: nothing a student wrote could be in such a cell."""
    submitted = json.loads(nbformat.writes(release()))
    submitted["cells"].insert(1, cell)
    nb, _, reason = repair.check_notebook(json.dumps(submitted).encode(), "mine.ipynb", release())
    assert nb is None and reason == f"mine.ipynb is not a readable notebook {why}", reason
