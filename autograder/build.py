"""Generate the lesson notebooks from one source: ``lessons/src/*.py`` plus the ``solutions`` package.

Each lesson source is a "percent" script (see ``lessons/src/README.md``). Exercise cells name
objects of ``solutions``; their code is pulled in here, so solution code exists only once.
From a lesson source this module builds:

* the nbgrader *source* notebook (solutions between ``### BEGIN/END SOLUTION``, hidden tests),
* the student notebook ``lessons/NN_name.ipynb``: nbgrader's own release of that source, with
  each stub naming its exercise,
* the solved notebook (source without the markers), for instructors and tests.

``python -m autograder.build`` rewrites ``lessons/*.ipynb``; ``--check`` fails when they are stale.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from data_utils.env import SANDBOX_DIR_VAR, SANDBOXED_VAR

from . import syllabus
from .grading import demos

REPO_ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = REPO_ROOT / "lessons"
SOURCES_DIR = LESSONS_DIR / "src"

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
NBGRADER_STUB = "raise NotImplementedError()"
HEADER = re.compile(r"^# %%(?:\s*\[(?P<tag>[^\]]*)\])?\s*(?P<rest>.*)$")


@dataclass
class Cell:
    """One cell of a lesson source: its kind, header arguments and body lines."""

    kind: str  # markdown, code, demo, setup, exercise, given, check, answer
    args: list[str] = field(default_factory=list)
    rest: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def body(self) -> str:
        """The body without blank lines at either end."""
        return "\n".join(self.lines).strip("\n")


def repository() -> str:
    """The GitHub ``owner/name`` configured in ``pyproject.toml`` (one line for a fork to change)."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["siamese-course"]["repository"]


def origin_repository(root: Path = REPO_ROOT) -> str | None:
    """The GitHub ``owner/name`` of this checkout's ``origin`` remote, or ``None`` if it has none on GitHub."""
    try:
        url = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$", url)
    return match.group(1) if match else None


def repository_problem(configured: str, origin: str | None) -> str | None:
    """Why the badges and setup cells point at the wrong repository, or ``None`` when they point at ``origin``."""
    if origin is None or origin.lower() == configured.lower():
        return None
    return (
        f"the lessons' badges and setup cells install the course from {configured}, but this checkout's origin "
        f'is {origin}: set `repository = "{origin}"` under [tool.siamese-course] in pyproject.toml, '
        "run `make lessons`, and commit the notebooks"
    )


def parse_lesson(path: Path) -> list[Cell]:
    """Split a lesson source into cells at ``# %%`` headers."""
    cells: list[Cell] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = HEADER.match(line)
        if match:
            tag = (match.group("tag") or "code").split()
            kind = tag[0]
            if kind not in {"markdown", "code", "demo", "setup", "exercise", "given", "check", "answer"}:
                raise ValueError(f"{path}:{number}: unknown cell kind {kind!r}")
            cells.append(Cell(kind, tag[1:], match.group("rest").strip()))
        elif cells:
            cells[-1].lines.append(line)
        elif line.strip():
            raise ValueError(f"{path}:{number}: text before the first '# %%' cell header")
    return cells


def markdown_text(cell: Cell) -> str:
    """Markdown cell body with the leading ``# `` of every line removed."""
    out = []
    for line in cell.lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.strip() in ("#", ""):
            out.append("")
        else:
            raise ValueError(f"markdown line does not start with '# ': {line!r}")
    return "\n".join(out).strip("\n")


def resolve(spec: str) -> list[tuple[str, str]]:
    """``solutions.loss:contrastive_loss,ContrastiveLoss`` → ``[(name, its source), ...]``.

    Each name must be a function or class defined at the module's top level; its text is read from the module's
    file, which is never executed (only its package's ``__init__``, to find it): building the course runs none
    of the solutions' code, nor imports torch.
    """
    module_name, _, names = spec.partition(":")
    found = importlib.util.find_spec(module_name)
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise ValueError(f"{spec}: no Python source for the module {module_name}")
    text = Path(found.origin).read_text(encoding="utf-8")
    lines = text.split("\n")  # as ast counts lines (splitlines would also split at form feeds and the like)
    definitions = {
        node.name: node
        for node in ast.parse(text).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    pairs = []
    for name in names.split(","):
        if name not in definitions:
            raise ValueError(f"{spec}: {module_name} defines no function or class {name} at its top level")
        node = definitions[name]
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])  # decorators belong to it
        pairs.append((name, "\n".join(lines[first - 1 : node.end_lineno]) + "\n"))
    return pairs


def exercise_objects(lesson: syllabus.Lesson, number: str) -> list[tuple[str, str]]:
    """The sources of the ``solutions`` objects exercise ``number`` asks for, as the course table lists them for
    ``lesson``: ``[(name, source), ...]``."""
    found = [item for item in lesson.exercises if item.number == number]
    if not found:
        raise ValueError(
            f"{lesson.source}: exercise {number} is not in the course table (autograder/syllabus.py) "
            f"under {lesson.name}"
        )
    return [pair for spec in found[0].writes for pair in resolve(spec)]


def _function_regions(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(qualified name, first body line, last body line) of every function to be solved, 1-based."""
    regions = []

    def body_start(node: ast.FunctionDef) -> int:
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            if len(node.body) == 1:
                raise ValueError(f"{node.name} has only a docstring")
            return first.end_lineno + 1
        return first.lineno

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            regions.append((node.name, body_start(node), node.end_lineno))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    regions.append((f"{node.name}.{item.name}", body_start(item), item.end_lineno))
    return regions


def solution_source(definition: str) -> tuple[str, list[str]]:
    """A definition's source with every function body between solution markers, and the names of those bodies."""
    source = textwrap.dedent(definition)
    lines = source.splitlines()
    regions = _function_regions(ast.parse(source))
    names = []
    for name, start, end in reversed(regions):  # from the bottom, so line numbers stay valid
        indent = re.match(r"\s*", lines[start - 1]).group(0)
        lines[start - 1 : end] = [indent + BEGIN_SOLUTION, *lines[start - 1 : end], indent + END_SOLUTION]
        names.append(name)
    return "\n".join(lines), list(reversed(names))


def setup_source() -> str:
    """The lessons' setup cell: safe to re-run; installs the course where it is missing (Colab), else only reports."""
    return SETUP_TEMPLATE.replace("{REPOSITORY}", repository())


SETUP_TEMPLATE = """\
# @title Setup: run this cell first (it is safe to run again) { display-mode: "form" }
import importlib.util, subprocess, sys
COURSE = "https://github.com/{REPOSITORY}"
if importlib.util.find_spec("data_utils") is None and subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{COURSE}"]).returncode:
    raise RuntimeError(f"Could not install the course from {COURSE}: check that this runtime is online (Runtime > Restart session), then run this cell again.")
importlib.invalidate_caches(); from data_utils.lessons import setup; QUICK = setup()"""  # noqa: E501 (as students see it)


# Every graded cell imports the checks afresh, so that nothing another cell did to the course's modules
# (or a package a notebook wrote next to itself or into its grading sandbox and put on sys.path)
# changes what a self-check shows. While grading, what the cell shows decides nothing: the grader's
# judge decides from the answers the checks recorded (autograder.checks.transcript).
CHECK_PREAMBLE = f"""\
import os, sys
_here = [os.path.realpath(p) for p in (os.getcwd(), os.environ.get("{SANDBOX_DIR_VAR}") or os.getcwd())]
_sandboxed = bool(os.environ.get("{SANDBOXED_VAR}"))  # in the grading sandbox, trusted code is read-only
for _name in [m for m in sys.modules if m.split(".")[0] in ("autograder", "solutions", "data_utils")]:
    del sys.modules[_name]
sys.path[:] = [p for p in sys.path if p not in ("", ".") and not any(
    os.path.realpath(p) == h or os.path.realpath(p).startswith(h + os.sep) for h in _here)
    and not (_sandboxed and (not os.path.isdir(p) or os.access(p, os.W_OK)))]
sys.path_importer_cache.clear()
sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__module__", None) != "__main__"]
from autograder.checks import {{module}} as checks

"""


HAND_IN = """\
## Hand in

Run every cell once more from the top (*Runtime → Restart session and run all*), then *File →
Download → Download .ipynb* and upload that file as your instructor asks. Keep its name (a
"Copy of ..." prefix or a " (1)" suffix is fine), and keep the test cells as they are: the grader
runs them again with hidden cases."""


def badge_markdown(lesson: str) -> str:
    """The "Open in Colab" badge for a lesson notebook."""
    url = f"https://colab.research.google.com/github/{repository()}/blob/main/lessons/{lesson}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def _nbgrader(
    grade_id: str,
    *,
    solution: bool = False,
    grade: bool = False,
    locked: bool = False,
    points: int | None = None,
) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


@dataclass
class Lesson:
    """A built lesson: the nbgrader source notebook and, per exercise cell, its stub messages."""

    name: str
    source: nbformat.NotebookNode
    stubs: dict[str, list[str]]  # grade_id → one message per solution region, in order


def build_source(lesson: str) -> Lesson:
    """The nbgrader source notebook (solutions and hidden tests in) of one lesson."""
    row = syllabus.lesson(lesson)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        **({"accelerator": "GPU"} if row.gpu else {}),  # Colab then opens it on a GPU runtime
        "colab": {"provenance": []},
    }
    nb.cells.append(nbformat.v4.new_markdown_cell(badge_markdown(lesson)))
    stubs: dict[str, list[str]] = {}
    for cell in parse_lesson(SOURCES_DIR / f"{lesson}.py"):
        made, meta, messages = notebook_cell(cell, row)
        if meta:
            if any(nbgrader_id(earlier) == meta["grade_id"] for earlier in nb.cells):
                raise ValueError(f"{lesson}: grade id {meta['grade_id']!r} used twice")
            made.metadata.update(_nbgrader(**meta))
        if messages is not None:
            stubs[meta["grade_id"]] = messages
        nb.cells.append(made)
    nb.cells.append(nbformat.v4.new_markdown_cell(HAND_IN))
    for index, cell in enumerate(nb.cells):
        cell.id = f"{lesson[:2]}-{index:03d}"  # stable ids: a rebuild changes nothing that did not change
    check_demos(lesson, nb)
    return Lesson(lesson, nb, stubs)


def nbgrader_id(cell: nbformat.NotebookNode) -> str | None:
    """The grade id of a built cell, if it has one."""
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def notebook_cell(cell: Cell, row: syllabus.Lesson) -> tuple[nbformat.NotebookNode, dict, list[str] | None]:
    """One notebook cell from one cell of a lesson source: the cell, the arguments of its nbgrader metadata
    ({} for a plain cell) and, for an exercise, the messages of its stubs."""
    code = nbformat.v4.new_code_cell
    if cell.kind == "markdown":
        return nbformat.v4.new_markdown_cell(markdown_text(cell)), {}, None
    if cell.kind == "code":
        return code(cell.body), {}, None
    if cell.kind == "demo":  # a plain cell that only demonstrates: the grader may skip it (grading/demos.py)
        made = code(cell.body)
        made.metadata[demos.MARK] = dict(demos.DEMO)
        return made, {}, None
    if cell.kind == "setup":
        return code(setup_source()), {"grade_id": "setup", "locked": True}, None
    if cell.kind == "given":
        objects = resolve(cell.rest)
        source = "\n\n\n".join(textwrap.dedent(text).rstrip() for _, text in objects)
        grade_id = "given_" + "_".join(name.lower() for name, _ in objects)
        return code(source), {"grade_id": grade_id, "locked": True}, None
    if cell.kind == "exercise":
        return exercise_cell(cell.args[0], row)
    if cell.kind == "check":
        grade_id, points = cell.args[0], int(cell.args[1])
        # The preamble runs while grading only: nbgrader restores it from this source; students see the check alone.
        preamble = CHECK_PREAMBLE.format(module=row.checks_module.rpartition(".")[2]).strip("\n")
        body = f"{BEGIN_HIDDEN}\n{preamble}\n{END_HIDDEN}\n{cell.body}"
        return code(body), {"grade_id": grade_id, "grade": True, "locked": True, "points": points}, None
    if cell.kind == "answer":
        # A written answer, graded by hand: the model answer and rubric here; students get nbgrader's stub.
        grade_id, points = cell.args[0], int(cell.args[1])
        meta = {"grade_id": grade_id, "solution": True, "grade": True, "points": points}
        return nbformat.v4.new_markdown_cell(markdown_text(cell)), meta, None
    raise ValueError(f"unknown cell kind {cell.kind!r}")


def exercise_cell(number: str, row: syllabus.Lesson) -> tuple[nbformat.NotebookNode, dict, list[str]]:
    """The solved exercise cell: the objects the course table lists for it, and one stub message per function."""
    parts, messages = [], []
    for _, definition in exercise_objects(row, number):
        code, names = solution_source(definition)
        parts.append(code)
        messages += [f"Exercise {number}: write the body of {name}" for name in names]
    header = f"# Exercise {number}: replace each `raise NotImplementedError(...)` with your code.\n"
    cell = nbformat.v4.new_code_cell(header + "\n\n\n".join(parts))
    return cell, {"grade_id": syllabus.exercise(number).grade_id, "solution": True}, messages


def check_demos(lesson: str, nb: nbformat.NotebookNode) -> None:
    """Refuse a ``[demo]`` cell whose names a later cell reads: skipping it while grading would break that cell."""
    for index, cell in enumerate(nb.cells):
        if demos.is_demo(cell):
            needed = demos.needed_later(nb.cells, index)
            if needed != set():
                shown = (
                    ", ".join(sorted(needed))
                    if needed
                    else "names that cannot be followed (magics, star imports, exec)"
                )
                raise ValueError(
                    f"{lesson}: the [demo] cell {cell.id} defines {shown}, which a later cell reads; "
                    "make it a plain `# %%` cell, or stop reading them later"
                )


def solved_notebook(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The source notebook without nbgrader's markers: what a perfect submission looks like."""
    nb = nbformat.from_dict(source)
    markers = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = "\n".join(line for line in cell.source.split("\n") if line.strip() not in markers)
    return nb


def write_course(lessons: list[Lesson], course: Path, db_url: str | None = None) -> None:
    """Lay out an nbgrader course folder with the config and every lesson's source notebook."""
    from .grading.course import write_config

    write_config(course, db_url)
    for lesson in lessons:
        folder = course / "source" / lesson.name
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(lesson.source, folder / f"{lesson.name}.ipynb")


def generate_release(
    lessons: list[Lesson], course: Path, db_url: str | None = None
) -> dict[str, nbformat.NotebookNode]:
    """Run nbgrader's generate_assignment on every lesson; return the student notebooks with named stubs."""
    from nbgrader.utils import compute_checksum

    from .grading.course import create_gradebook, db_url_for, nbgrader_api

    write_course(lessons, course, db_url)
    create_gradebook(db_url_for(course, db_url))
    api = nbgrader_api(course, db_url)
    released = {}
    for lesson in lessons:
        result = api.generate_assignment(lesson.name, force=True)
        if not result["success"]:
            raise RuntimeError(
                f"nbgrader generate_assignment failed for {lesson.name}:\n{result['log']}\n{result.get('error')}"
            )
        nb = nbformat.read(course / "release" / lesson.name / f"{lesson.name}.ipynb", as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            messages = lesson.stubs.get(meta.get("grade_id"))
            if not messages:
                continue
            lines, k = cell.source.split("\n"), 0
            for i, line in enumerate(lines):
                if line.strip() == NBGRADER_STUB:
                    indent = line[: len(line) - len(line.lstrip())]
                    lines[i] = f'{indent}raise NotImplementedError("{messages[k]}")'
                    k += 1
            if k != len(messages):
                raise RuntimeError(
                    f"{lesson.name}/{meta['grade_id']}: found {k} stubs, expected {len(messages)}"
                )
            cell.source = "\n".join(lines)
            meta["checksum"] = compute_checksum(cell)
        released[lesson.name] = nb
    return released


def build_all(lessons: list[str] | None = None) -> list[Lesson]:
    """Build the source notebooks of the given lessons (default: all)."""
    return [build_source(name) for name in (lessons or syllabus.NAMES)]


def student_notebooks(lessons: list[str] | None = None) -> dict[str, str]:
    """The student notebooks as JSON text, exactly as ``lessons/*.ipynb`` should hold them."""
    built = build_all(lessons)
    with tempfile.TemporaryDirectory() as tmp:
        released = generate_release(built, Path(tmp) / "course")
    return {name: nbformat.writes(nb) + "\n" for name, nb in released.items()}


def execute_notebook(
    nb: nbformat.NotebookNode, cwd: Path, timeout: int = 120, quick: bool = True
) -> nbformat.NotebookNode:
    """Run a notebook top to bottom with nbclient (quick mode: synthetic data, tiny runs); raise on the first error."""
    import os

    from nbclient import NotebookClient

    from .grading.course import put_environment_on_path

    put_environment_on_path()
    from data_utils.env import QUICK_ENV_VAR

    previous = os.environ.get(QUICK_ENV_VAR)
    if quick:
        os.environ[QUICK_ENV_VAR] = "1"  # the kernel inherits it
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        )
        client.execute()
    finally:
        if previous is None:
            os.environ.pop(QUICK_ENV_VAR, None)
        else:
            os.environ[QUICK_ENV_VAR] = previous
    return nb


def main(argv: list[str] | None = None) -> int:
    """Write (or, with ``--check``, verify) the student notebooks in ``lessons/``."""
    parser = argparse.ArgumentParser(
        prog="python -m autograder.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if lessons/*.ipynb differ from a fresh build"
    )
    parser.add_argument("--solved", metavar="DIR", help="also write the solved notebooks into DIR")
    parser.add_argument(
        "--execute",
        action="store_true",
        help="with --solved: run each solved notebook in quick mode and save its outputs",
    )
    parser.add_argument(
        "--check-repository",
        action="store_true",
        help="exit 1 if the badges and setup cells point at another GitHub repository than origin",
    )
    parser.add_argument(
        "lessons", nargs="*", help=f"lesson names (default: all of {', '.join(syllabus.NAMES)})"
    )
    args = parser.parse_args(argv)
    if args.check_repository:
        origin = origin_repository()
        problem = repository_problem(repository(), origin)
        print(
            problem
            or f"the lessons install the course from {repository()}"
            + ("" if origin else " (this checkout has no GitHub origin to compare with)"),
            file=sys.stderr if problem else sys.stdout,
        )
        return 1 if problem else 0
    unknown = [name for name in args.lessons if name not in syllabus.NAMES]
    if unknown:
        parser.error(f"unknown lesson(s) {unknown}; choose from {list(syllabus.NAMES)}")
    notebooks = student_notebooks(args.lessons)
    stale = []
    for name, text in notebooks.items():
        path = LESSONS_DIR / f"{name}.ipynb"
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    if args.solved:
        out = Path(args.solved)
        out.mkdir(parents=True, exist_ok=True)
        for lesson in build_all(args.lessons):
            nb = solved_notebook(lesson.source)
            if args.execute:
                nb = execute_notebook(nb, out)
            nbformat.write(nb, out / f"{lesson.name}.ipynb")
            print(f"wrote {out / lesson.name}.ipynb (solved{', executed' if args.execute else ''})")
    if stale:
        print(f"stale: {', '.join(stale)}; run `make lessons` and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
