"""Stage 2 of grading, repair: check one submitted notebook against the release, and repair what is safe to repair.

Duplicated or deleted test cells, stripped metadata, changed cell types and Colab's nbformat 4.0 are
repaired and noted; code a correct answer never needs is flagged for review.
"""

from __future__ import annotations

import hashlib
import re

import nbformat
from nbgrader.nbgraderformat import MetadataValidator

from ..build import solved_notebook
from .demos import DEMO as HANDED_OUT  # the mark a demo cell of a student notebook carries
from .demos import MARK as GRADER_KEY  # the grader's own cell metadata: never the submission's word

# Code that a correct answer never needs, in an exercise cell or a cell the student added: noted for a human
# to look at, because code that patches the Python process the tests run in is beyond any check's reach.
SUSPICIOUS = re.compile(
    r"get_ipython|sys\.modules|sys\.path|meta_path|path_importer_cache|__import__|importlib|"
    r"builtins|showtraceback|gradebook|sqlite3|/proc|os\._exit|sys\.exit|signal\.|ctypes|"
    r"autograder|NBGRADER|subprocess|Popen|os\.system|shutil\.|open\(|setattr\(|"
    r"torch\.[\w.]+\s*=(?!=)"
)  # the last: replacing a torch function the checks rely on


def nbgrader_metadata(cell) -> dict:
    """A cell's nbgrader metadata ({} if none), from a NotebookNode or the raw JSON of a submitted file.

    nbgrader's own ``utils.is_grade`` and ``is_solution`` read ``cell.metadata``, which a plain dict lacks.
    """
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell) -> bool:
    """A test cell: nbgrader grades it by its outputs (a grade cell that is not also a solution)."""
    return bool(nbgrader_metadata(cell).get("grade")) and not nbgrader_metadata(cell).get("solution")


def is_answer_cell(cell) -> bool:
    """A written answer: a cell the student writes and an instructor grades by hand (grade and solution)."""
    return bool(nbgrader_metadata(cell).get("grade")) and bool(nbgrader_metadata(cell).get("solution"))


def _exercise_header(cell) -> str | None:
    first = cell.source.lstrip().split("\n", 1)[0] if cell.source else ""
    return first if first.startswith("# Exercise ") else None


def restore_metadata(nb: nbformat.NotebookNode, release_nb: nbformat.NotebookNode) -> tuple[int, list[str]]:
    """Give cells that lost their nbgrader metadata their release metadata back; return (restored, unmatched ids).

    Locked cells are matched by identical source, exercise cells by their "# Exercise N.M" first line;
    anything ambiguous is left alone. A written answer cannot be recognised: nbgrader adds an empty copy back.
    """
    present = {nbgrader_metadata(c).get("grade_id") for c in nb.cells if nbgrader_metadata(c).get("grade_id")}
    restored, unmatched = 0, []
    for ref in release_nb.cells:
        meta = nbgrader_metadata(ref)
        if not meta.get("grade_id") or meta["grade_id"] in present:
            continue
        if meta.get("solution"):
            header = _exercise_header(ref)
            matches = [
                c for c in nb.cells if not nbgrader_metadata(c) and header and _exercise_header(c) == header
            ]
        else:
            matches = [
                c for c in nb.cells if not nbgrader_metadata(c) and c.source.strip() == ref.source.strip()
            ]
        if len(matches) == 1:
            matches[0].metadata["nbgrader"] = dict(meta)
            restored += 1
        elif meta.get("solution") and not is_answer_cell(ref):
            unmatched.append(meta["grade_id"])
    return restored, unmatched


def check_notebook(
    data: bytes,
    name: str,
    release_nb: nbformat.NotebookNode,
    source_nb: nbformat.NotebookNode | None = None,
) -> tuple[nbformat.NotebookNode | None, list[str], str | None]:
    """Check one submitted notebook (its bytes, and the file name to mention) against the release and the source.

    Returns (repaired notebook, notes, reason it cannot be graded).
    """
    nb, reason = read_notebook(data, name)
    if nb is None:
        return None, [], reason
    notes, reason = normalize_cells(nb, name)
    if reason:
        return None, notes, reason
    malformed = drop_malformed_metadata(nb, release_nb)
    if malformed:
        notes.append(f"removed malformed nbgrader metadata of {malformed} cells")
    restored, unmatched = restore_metadata(nb, release_nb)
    if restored:
        notes.append(f"restored stripped nbgrader metadata of {restored} cells")
    if unmatched:
        reason = f"{name} lost its nbgrader metadata and exercise cells {', '.join(unmatched)} cannot be recognised"
        return None, notes, reason
    reference = {
        nbgrader_metadata(c)["grade_id"]: c for c in release_nb.cells if nbgrader_metadata(c).get("grade_id")
    }
    seen = repair_cells(nb, reference, notes)
    notes.extend(missing_cells(reference, seen))
    notes.extend(review_notes(nb, release_nb, source_nb))
    upgrade_to_nbformat_4_5(nb)
    return nb, notes, None


def read_notebook(data: bytes, name: str) -> tuple[nbformat.NotebookNode | None, str | None]:
    """The notebook in ``data`` (any nbformat 3 or 4.x), or None and why it cannot be read."""
    if not data:
        return None, f"{name} is an empty file"
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)  # Colab saves 4.0
    except Exception as error:  # invalid JSON or UTF-8, not a notebook
        return None, f"{name} is not a readable notebook ({type(error).__name__})"
    if not isinstance(nb.get("cells"), list) or not nb.cells:
        return None, f"{name} has no cells"
    return nb, None


CELL_ID = re.compile(
    r"[a-zA-Z0-9_-]{1,64}"
)  # nbformat 4.5's cell id; the schema refuses the whole notebook else


def normalize_cells(nb: nbformat.NotebookNode, name: str) -> tuple[list[str], str | None]:
    """Make every cell what the later stages may read without a second thought; return (notes, why unreadable).

    A cell must have a known type and text (nbformat's reader has refused cells and metadata that are no objects);
    its metadata loses the grader's own key (``siamese``: only the grader writes it, after the judge), and it loses
    an id nbformat would refuse (not text, not ``[a-zA-Z0-9_-]{1,64}``, or taken by an earlier cell), which
    ``upgrade_to_nbformat_4_5`` then gives anew.
    """
    unmarked, renamed = 0, 0
    ids: set[str] = set()
    for number, cell in enumerate(nb.cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            return (
                [],
                f"{name} is not a readable notebook (cell {number} is not a code, markdown or raw cell)",
            )
        if not isinstance(cell.get("source", ""), str):
            return [], f"{name} is not a readable notebook (cell {number} has no text)"
        cell.setdefault("metadata", nbformat.NotebookNode())
        cell.setdefault("source", "")
        if cell.metadata.pop(GRADER_KEY, None) not in (None, HANDED_OUT):
            unmarked += 1  # only a value other than the handed-out notebook's is worth a note
        if "id" in cell:
            if isinstance(cell.id, str) and CELL_ID.fullmatch(cell.id) and cell.id not in ids:
                ids.add(cell.id)
            else:
                del cell["id"]
                renamed += 1
    notes = []
    if unmarked:
        notes.append(f"removed the grader's own metadata ({GRADER_KEY}) from {unmarked} cells")
    if renamed:
        notes.append(f"gave {renamed} cells a new id (theirs was not a valid cell id, or a repeated one)")
    return notes, None


def drop_malformed_metadata(nb: nbformat.NotebookNode, release_nb: nbformat.NotebookNode) -> int:
    """Remove nbgrader metadata that nbgrader's own check would refuse (``5``, a list as grade id, text as
    points, an older schema, a key it does not know).

    nbgrader validates each cell's metadata as it is, without upgrading it, and refuses the whole
    notebook for one bad cell. Such a cell now counts as stripped, and ``restore_metadata`` gives it the
    release's metadata back. A cell whose type was changed is validated as the type the release gives its
    grade id: ``repair_cells`` turns it back. Returns how many cells lost their metadata.
    """
    validator = MetadataValidator()
    types = {nbgrader_metadata(c).get("grade_id"): c.cell_type for c in release_nb.cells}
    dropped = 0
    for cell in nb.cells:
        if "nbgrader" in cell.metadata and not _well_formed(cell, validator, types):
            del cell.metadata["nbgrader"]
            dropped += 1
    return dropped


def _well_formed(cell: nbformat.NotebookNode, validator: MetadataValidator, types: dict[str, str]) -> bool:
    meta = cell.metadata["nbgrader"]
    if not isinstance(meta, dict) or not isinstance(meta.get("grade_id", ""), str):
        return False
    probe = nbformat.from_dict({**cell, "cell_type": types.get(meta.get("grade_id"), cell.cell_type)})
    try:
        validator.validate_cell(probe)
    except Exception:  # nbgrader raises AttributeError, TypeError or a schema error, depending on the field
        return False
    return True


def repair_cells(nb: nbformat.NotebookNode, reference: dict, notes: list[str]) -> set[str]:
    """Drop duplicated test cells, keep copied exercises, give changed cells their type back: the ids seen."""
    seen: set[str] = set()
    kept, duplicates, retyped = [], set(), []
    for cell in nb.cells:
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if grade_id in seen:
            duplicates.add(grade_id)  # nbgrader aborts the whole batch on a duplicated grade id
            if nbgrader_metadata(reference.get(grade_id, {})).get("solution"):
                # A copied exercise cell: keep every copy, as the student ran them; the last one stays graded.
                for earlier in kept:
                    if nbgrader_metadata(earlier).get("grade_id") == grade_id:
                        earlier.metadata.pop("nbgrader")
                kept.append(cell)
            continue
        if grade_id:
            seen.add(grade_id)
            if grade_id not in reference:
                cell.metadata.pop("nbgrader")  # a grade id nbgrader does not know: a plain cell now
                notes.append(f"unknown grade id {grade_id} treated as a plain cell")
            elif cell.cell_type != reference[grade_id].cell_type:
                retyped.append(grade_id)
                cell = _as_type(cell, reference[grade_id].cell_type)
        kept.append(cell)
    nb.cells = kept
    if duplicates:
        notes.append(
            f"duplicated cells {', '.join(sorted(duplicates))}: kept the last copy of an exercise, "
            "the first of a test"
        )
    for kind in ("code", "markdown"):
        these = [gid for gid in retyped if reference[gid].cell_type == kind]
        if these:
            notes.append(f"turned cells {', '.join(these)} back into {kind} cells")
    return seen


def _as_type(cell: nbformat.NotebookNode, cell_type: str) -> nbformat.NotebookNode:
    make = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    return make(cell.source, metadata=cell.metadata)


def missing_cells(reference: dict, seen: set[str]) -> list[str]:
    """Notes on the release's test, exercise and answer cells that the submission no longer has."""
    notes = []
    missing_tests = [gid for gid, c in reference.items() if is_test_cell(c) and gid not in seen]
    if missing_tests:
        notes.append(
            f"test cells {', '.join(missing_tests)} deleted or not recognised: nbgrader's copies added"
        )
    missing_exercises = [
        gid
        for gid, c in reference.items()
        if nbgrader_metadata(c).get("solution") and not is_answer_cell(c) and gid not in seen
    ]
    if missing_exercises:
        notes.append(f"exercise cells {', '.join(missing_exercises)} were deleted (their tests will fail)")
    missing_answers = [gid for gid, c in reference.items() if is_answer_cell(c) and gid not in seen]
    if missing_answers:
        notes.append(
            f"written answers {', '.join(missing_answers)} deleted or not recognised: nbgrader adds empty "
            "copies back, for an instructor to grade"
        )
    return notes


def review_notes(
    nb: nbformat.NotebookNode, release_nb: nbformat.NotebookNode, source_nb: nbformat.NotebookNode | None
) -> list[str]:
    """Notes naming the code a correct answer never needs, in exercise cells and in the student's own cells."""
    given = {
        c.source.strip()
        for nb_ in (release_nb, source_nb, source_nb and solved_notebook(source_nb))
        if nb_
        for c in nb_.cells
        if c.cell_type == "code"
    }  # cells as handed out or solved: not the student's code
    notes = []
    for label, cells in (
        (
            "exercise code uses",
            [c for c in nb.cells if nbgrader_metadata(c).get("solution") and c.cell_type == "code"],
        ),
        (
            "other cells use",
            [
                c
                for c in nb.cells
                if c.cell_type == "code" and not nbgrader_metadata(c) and c.source.strip() not in given
            ],
        ),
    ):
        suspicious = sorted({m.group(0) for c in cells for m in SUSPICIOUS.finditer(c.source)})
        if suspicious:
            notes.append(f"review: {label} {', '.join(suspicious)}")
    return notes


def upgrade_to_nbformat_4_5(nb: nbformat.NotebookNode) -> None:
    """Mark the notebook nbformat 4.5 and give every cell an id (required from 4.5 on; Colab's 4.0 has none)."""
    nb.nbformat, nb.nbformat_minor = 4, 5
    taken = {cell.id for cell in nb.cells if "id" in cell}
    for cell in nb.cells:
        if "id" not in cell:
            new = hashlib.sha1(cell.source.encode() + str(id(cell)).encode()).hexdigest()[:12]
            while new in taken:  # never one a cell already holds
                new = hashlib.sha1(new.encode()).hexdigest()[:12]
            cell["id"] = new
            taken.add(new)
