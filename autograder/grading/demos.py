"""Cells that only demonstrate, skipped while grading where nothing can need them.

A lesson source marks such a cell ``# %% [demo]``: a timing, a picture, a demonstration whose results
no check, exercise or question reads. The build refuses a demo cell whose names a later cell of the
lesson reads (``unneeded``). While grading, the grader decides from its own source notebook, never
from the submitted file: a cell is skipped (nbclient's ``skip-execution`` tag, set on the sandbox's
copy only) when its id is a demo cell's, its text is the release's unchanged, and no cell of *this
submission* after it reads a name it defines. Every other cell runs as handed in, and a
``skip-execution`` tag the student added is removed.
"""

from __future__ import annotations

import ast
import re

import nbformat

SKIP_TAG = "skip-execution"  # nbclient's default ``skip_cells_with_tag``
MARK = "siamese"  # the source notebook's cell metadata key: {"demo": true}
MAGIC = re.compile(r"^\s*[%!]")  # IPython's magics and shell lines, which are not Python


def is_demo(cell: nbformat.NotebookNode) -> bool:
    """Whether a cell of the instructor's source notebook is marked as a demo."""
    return cell.cell_type == "code" and bool(cell.metadata.get(MARK, {}).get("demo"))


def _tree(source: str) -> ast.AST | None:
    """The cell's syntax tree (magic lines blanked), or ``None`` if it is not Python."""
    try:
        return ast.parse("\n".join("" if MAGIC.match(line) else line for line in source.splitlines()))
    except (SyntaxError, ValueError):
        return None


def bound_names(tree: ast.AST) -> set[str]:
    """Every name a cell binds: assignments, loop and ``with`` targets, functions, classes, imports."""
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def read_names(tree: ast.AST) -> set[str]:
    """The names a cell reads without binding them itself (what it takes from earlier cells)."""
    loaded = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return loaded - bound_names(tree)


def needed_later(cells: list[nbformat.NotebookNode], index: int) -> set[str] | None:
    """The names cell ``index`` binds that a later code cell reads; ``None`` if a cell is not Python (all may be)."""
    tree = _tree(cells[index].source)
    if tree is None:
        return None
    bound, needed = bound_names(tree), set()
    for cell in cells[index + 1:]:
        if cell.cell_type != "code":
            continue
        later = _tree(cell.source)
        if later is None:
            return None
        needed |= bound & read_names(later)
    return needed


def unneeded(cells: list[nbformat.NotebookNode], index: int) -> bool:
    """Whether nothing after cell ``index`` reads a name it defines."""
    return needed_later(cells, index) == set()


def cell_ids(cell: nbformat.NotebookNode) -> set[str]:
    """A cell's id, and the one Colab keeps in its metadata (a notebook saved by Colab has both or either)."""
    return {str(value) for value in (cell.get("id"), cell.metadata.get("id")) if value}


def skip_demos(nb: nbformat.NotebookNode, source: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[str]]:
    """A copy of a submission whose unchanged, unneeded demo cells nbclient will skip; and their ids."""
    demos = {cell.id: cell.source for cell in source.cells if is_demo(cell)}
    copy = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    skipped = []
    for index, cell in enumerate(copy.cells):
        tags = [tag for tag in cell.metadata.get("tags", []) if tag != SKIP_TAG]
        if tags or "tags" in cell.metadata:
            cell.metadata["tags"] = tags
        matches = [demos[i] for i in cell_ids(cell) if i in demos]
        if cell.cell_type == "code" and matches and cell.source == matches[0] and unneeded(copy.cells, index):
            cell.metadata["tags"] = [*tags, SKIP_TAG]
            skipped.append(next(i for i in cell_ids(cell) if i in demos))
    return copy, skipped
