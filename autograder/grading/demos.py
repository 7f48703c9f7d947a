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
import copy as copy_module
import re

import nbformat

SKIP_TAG = "skip-execution"  # nbclient's default ``skip_cells_with_tag``
MARK = "siamese"  # the source notebook's cell metadata key, whose value marks a demo cell:
DEMO = {"demo": True}
MAGIC = re.compile(r"^\s*[%!]")  # IPython's magics and shell lines, which are not Python


def is_demo(cell: nbformat.NotebookNode) -> bool:
    """Whether a cell of the instructor's source notebook is marked as a demo."""
    return cell.cell_type == "code" and bool(cell.metadata.get(MARK, {}).get("demo"))


MAX_CODE_CELLS = 400  # a submission with more code cells, or more code, than this has every cell run
MAX_CODE_BYTES = 1_000_000
OPAQUE_CALLS = {"eval", "exec", "globals", "locals", "vars", "__import__"}  # they read names no tree shows


def _tree(source: str) -> ast.AST | None:
    """The cell's syntax tree (magic lines blanked), or ``None`` if it is not plain Python this module can follow."""
    try:
        tree = ast.parse("\n".join("" if MAGIC.match(line) else line for line in source.splitlines()))
    except Exception:  # SyntaxError, and MemoryError or RecursionError on a hostile cell
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            return None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in OPAQUE_CALLS:
            return None
    return tree


def bound_names(tree: ast.AST) -> set[str]:
    """Every name a cell binds: assignments, loop and ``with`` targets, functions, classes, imports."""
    names = {
        node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    }
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def read_names(source: str) -> set[str] | None:
    """Every name a cell may read, wherever it binds it too (order is not followed); ``None``: it may read any.

    Names in magic and shell lines count as read, and so do the targets of ``+=`` and the like.
    """
    tree = _tree(source)
    if tree is None:
        return None
    names = {
        node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    names |= {
        node.target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
    }
    names |= {
        word
        for line in source.splitlines()
        if MAGIC.match(line)
        for word in re.findall(r"[A-Za-z_]\w*", line)
    }
    return names


def reads_after(cells: list[nbformat.NotebookNode]) -> list[set[str] | None]:
    """For each cell, the names the code cells after it may read (``None``: any); each cell parsed once."""
    after: list[set[str] | None] = [set() for _ in cells]
    later: set[str] | None = set()
    for index in range(len(cells) - 1, -1, -1):
        after[index] = None if later is None else set(later)
        if cells[index].cell_type == "code" and later is not None:
            reads = read_names(cells[index].source)
            later = None if reads is None else later | reads
    return after


def needed_later(cells: list[nbformat.NotebookNode], index: int) -> set[str] | None:
    """The names cell ``index`` binds that a later code cell may read; ``None`` if that cannot be told."""
    tree = _tree(cells[index].source)
    later = reads_after(cells)[index]
    if tree is None or later is None or any(MAGIC.match(line) for line in cells[index].source.splitlines()):
        return None
    return bound_names(tree) & later


def cell_ids(cell: nbformat.NotebookNode) -> set[str]:
    """A cell's id, and the one Colab keeps in its metadata (a notebook saved by Colab has both or either)."""
    return {value for value in (cell.get("id"), cell.metadata.get("id")) if isinstance(value, str) and value}


def own_tags(cell: nbformat.NotebookNode) -> list[str]:
    """The cell's tags that are strings, without any skip tag (whatever the file holds there)."""
    tags = cell.metadata.get("tags")
    return [tag for tag in tags if isinstance(tag, str) and tag != SKIP_TAG] if isinstance(tags, list) else []


def too_large(nb: nbformat.NotebookNode) -> bool:
    """Whether a submission has too much code to analyse cheaply (then every cell runs)."""
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return len(code) > MAX_CODE_CELLS or sum(len(source) for source in code) > MAX_CODE_BYTES


def skip_demos(
    nb: nbformat.NotebookNode, source: nbformat.NotebookNode
) -> tuple[nbformat.NotebookNode, list[str]]:
    """A copy of a submission whose unchanged, unneeded demo cells nbclient will skip; and their ids.

    A cell nbgrader knows (graded, locked) is never skipped, whatever id and text it carries.
    """
    demos = {cell.id: cell.source for cell in source.cells if is_demo(cell)}
    copy = copy_module.deepcopy(nb)
    for cell in copy.cells:
        if "tags" in cell.metadata:
            cell.metadata["tags"] = own_tags(cell)
    if too_large(copy):
        return copy, []
    after, skipped = reads_after(copy.cells), []
    for index, cell in enumerate(copy.cells):
        matching = sorted(i for i in cell_ids(cell) if i in demos and demos[i] == cell.source)
        if cell.cell_type != "code" or not matching or "nbgrader" in cell.metadata or after[index] is None:
            continue
        tree = _tree(cell.source)
        if tree is not None and not bound_names(tree) & after[index]:
            cell.metadata["tags"] = [*own_tags(cell), SKIP_TAG]
            skipped.append(matching[0])
    return copy, skipped


def unneeded(cells: list[nbformat.NotebookNode], index: int) -> bool:
    """Whether nothing after cell ``index`` may read a name it defines."""
    return needed_later(cells, index) == set()
