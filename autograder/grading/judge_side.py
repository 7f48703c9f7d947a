"""The checks' judge side is no answer either: what of ``autograder`` a kernel may not see while it is graded.

A check runs in two halves (``autograder.checks.transcript``): the probe calls the student's code in
the kernel; the judge computes the expected values in the grader's worker. The judge's half is an
answer: ``loop_loss`` computes the loss, ``_reference_loop`` trains an epoch, ``pairwise_auc`` the
ROC AUC. So a sandboxed kernel imports a generated copy of ``autograder`` that holds the probe half
only (``write_probe_copy``), in which

* every ``@judge_only`` helper is a stand-in that raises ``uses the course's checks (<its name>)``;
* in every function, the code that runs only when ``probing()`` is false is a call of such a
  stand-in, named after the function: the statements after ``if probing(): return`` in that block
  (and after the ``with`` blocks around it, which cannot skip it), the ``else`` of ``if probing():``,
  the body of ``if not probing():``, and the branch of ``x if probing() else y`` taken when not probing;
* ``autograder.grading`` and ``autograder.build`` are not there at all: a kernel needs neither (the course
  table, ``autograder.syllabus``, is: the checks' messages name exercises from it).

Any other use of ``probing()`` makes ``judge_side`` refuse the module (``ValueError``), so that a new
check cannot put judge-side code where this module does not look. The same regions give the sandbox
test its search strings (``needles``), so that what is hidden and what is searched for are one list.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

from .reference import STAND_IN_MODULE

CHECKS = "the course's checks"  # what a stand-in of this copy says it hides (reference.MARKER reads it)
STAND_IN_IMPORT = (
    "from autograder.checks._hidden import StandIn as _StandIn"  # absolute: works in an exec'd copy
)


@dataclass(frozen=True)
class Region:
    """One piece of judge-side code: the name its stand-in reports, and where it is in its file."""

    name: str  # autograder.checks.loss.loop_loss (a helper) or the function holding a branch
    kind: str  # "helper" (a whole definition), "statements" or "expression"
    start: tuple[int, int]  # (line, column) of its first character; lines from 1, columns from 0
    end: tuple[int, int]  # (line, column) just after its last character

    def contains(self, other: Region) -> bool:
        """Whether ``other`` lies inside this region."""
        return self.start <= other.start and other.end <= self.end and self != other


def _is_probing(node: ast.AST) -> bool:
    """``probing()`` or ``transcript.probing()``."""
    return (
        isinstance(node, ast.Call)
        and not node.args
        and not node.keywords
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "probing")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "probing")
        )
    )


def _is_not_probing(node: ast.AST) -> bool:
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and _is_probing(node.operand)


def _is_judge_only(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
        (isinstance(d, ast.Name) and d.id == "judge_only")
        or (isinstance(d, ast.Attribute) and d.attr == "judge_only")
        for d in node.decorator_list
    )


def _span(first: ast.AST, last: ast.AST, kind: str, name: str) -> Region:
    return Region(name, kind, (first.lineno, first.col_offset), (last.end_lineno, last.end_col_offset))


class _Finder:
    """Walks one module and collects its judge-side regions, and every ``probing()`` it accounted for."""

    def __init__(self, module: str):
        self.module = module
        self.regions: list[Region] = []
        self.handled: set[int] = set()  # ids of the probing() calls that a recognised pattern uses

    def module_body(self, tree: ast.Module) -> None:
        """Every top-level function and class method, named after its top-level definition."""
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.definition(node, f"{self.module}.{node.name}")

    def definition(self, node: ast.AST, name: str) -> None:
        if _is_judge_only(node):
            first = min([node, *node.decorator_list], key=lambda n: n.lineno)
            self.regions.append(
                Region(
                    f"{self.module}.{node.name}",
                    "helper",
                    (first.lineno, node.col_offset),
                    (node.end_lineno, node.end_col_offset),
                )
            )
            return
        self.expressions(node, name)
        self.block(node.body, name)

    def expressions(self, node: ast.AST, name: str) -> None:
        """``x if probing() else y``: ``y`` is judge side (``x`` for ``if not probing()``)."""
        for expression in ast.walk(node):
            if isinstance(expression, ast.IfExp) and (
                _is_probing(expression.test) or _is_not_probing(expression.test)
            ):
                negated = _is_not_probing(expression.test)
                self.handled.add(id(expression.test.operand if negated else expression.test))
                judged = expression.body if negated else expression.orelse
                self.regions.append(_span(judged, judged, "expression", name))

    def block(self, statements: list[ast.stmt], name: str) -> str | None:
        """Collect the regions of a block; how it leaves while probing ("return", "raise"), if it does (then what
        follows in the block is judge side)."""
        for index, statement in enumerate(statements):
            leaves = self.statement(statement, name)
            if leaves:
                rest = statements[index + 1 :]
                if rest:
                    self.regions.append(_span(rest[0], rest[-1], "statements", name))
                return leaves
        return None

    def statement(self, node: ast.stmt, name: str) -> str | None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.definition(node, name)
            return None
        if isinstance(node, ast.If) and (_is_probing(node.test) or _is_not_probing(node.test)):
            return self.probing_if(node, name)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            # A return in a with block skips what follows it; a raise may be swallowed by the context manager.
            return "return" if self.block(node.body, name) == "return" else None
        for field in ("body", "orelse", "finalbody"):
            self.block(getattr(node, field, []) or [], name)
        for handler in getattr(node, "handlers", []) or []:
            self.block(handler.body, name)
        for case in getattr(node, "cases", []) or []:
            self.block(case.body, name)
        return None

    def probing_if(self, node: ast.If, name: str) -> str | None:
        negated = _is_not_probing(node.test)
        self.handled.add(id(node.test.operand if negated else node.test))
        probe, judged = (node.orelse, node.body) if negated else (node.body, node.orelse)
        if node.orelse and len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            raise ValueError(
                f"{self.module} line {node.lineno}: elif after a probing() test (write else: and a block)"
            )
        if judged:
            self.regions.append(_span(judged[0], judged[-1], "statements", name))
        self.block(probe, name)
        return self.leaves(probe, node.lineno)

    def leaves(self, probe: list[ast.stmt], line: int) -> str | None:
        """How the probe branch of a probing() test leaves: by its last statement, or not at all; refused when it
        might leave some other way (continue, break, a return inside), since what follows could not be told."""
        if probe and isinstance(probe[-1], ast.Return):
            return "return"
        if probe and isinstance(probe[-1], ast.Raise):
            return "raise"
        jumps = (ast.Return, ast.Raise, ast.Continue, ast.Break)
        if any(isinstance(n, jumps) for statement in probe for n in _walk_code(statement)):
            raise ValueError(
                f"{self.module} line {line}: the probe branch of a probing() test leaves by other than its "
                "last statement (return or raise): what is judge side after it cannot be told"
            )
        return None


def _walk_code(node: ast.AST):
    """The nodes of ``node``, not entering nested functions or classes (whose returns are their own)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            yield from _walk_code(child)


def _references_of_probing(tree: ast.AST) -> list[ast.AST]:
    """Every ``probing`` a module names (``probing``, ``transcript.probing``), called or not."""
    return [
        node
        for node in ast.walk(tree)
        if (isinstance(node, ast.Name) and node.id == "probing")
        or (isinstance(node, ast.Attribute) and node.attr == "probing")
    ]


def judge_side(source: str, module: str) -> list[Region]:
    """The judge-side regions of one checks module (outermost only), in the order they appear.

    Raises ``ValueError`` for a ``probing()`` outside the recognised patterns: its judge side could not be told.
    """
    tree = ast.parse(source)
    finder = _Finder(module)
    finder.module_body(tree)
    regions = sorted(set(finder.regions), key=lambda r: (r.start, r.end))
    outermost = [r for r in regions if not any(o.contains(r) for o in regions)]
    understood = {id(node.func) for node in ast.walk(tree) if id(node) in finder.handled}
    for reference in _references_of_probing(tree):
        at = (reference.lineno, reference.col_offset)
        inside = any(r.start <= at < r.end for r in outermost)
        if id(reference) not in understood and not inside:
            raise ValueError(
                f"{module} line {reference.lineno}: probing used outside the patterns the grader can hide "
                "(if probing(): return / else / if not probing(): / x if probing() else y)"
            )
    return outermost


def _replace(lines: list[str], region: Region, text: str) -> None:
    """Put ``text`` where ``region`` was (lines are the file's, without line ends)."""
    (first, first_col), (last, last_col) = region.start, region.end
    before, after = lines[first - 1][:first_col], lines[last - 1][last_col:]
    if after.strip().startswith("#"):
        after = ""  # a comment on the judge side's last line goes with it
    if region.kind != "expression" and (before.strip() or after.strip()):
        raise ValueError(f"{region.name}: judge-side statements share a line with other code (line {first})")
    lines[first - 1 : last] = [before + text + after]


def without_judge_side(source: str, module: str) -> str:
    """``source`` with every judge-side region replaced by a stand-in that raises with the region's name."""
    regions = judge_side(source, module)
    if not regions:
        return source
    lines = source.splitlines()
    for region in sorted(regions, key=lambda r: r.start, reverse=True):
        stand_in = f'_StandIn("{region.name}", "{CHECKS}")'
        if region.kind == "helper":
            text = f"{region.name.rpartition('.')[2]} = {stand_in}"
        else:
            text = f"{stand_in}()"  # calling a stand-in raises
        _replace(lines, region, text)
    tree = ast.parse(source)
    futures = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    docstring = (
        tree.body[0]
        if tree.body
        and isinstance(tree.body[0], ast.Expr)
        and isinstance(getattr(tree.body[0], "value", None), ast.Constant)
        else None
    )
    at = max([n.end_lineno for n in futures] + ([docstring.end_lineno] if docstring else []) + [0])
    lines.insert(at, STAND_IN_IMPORT)
    return "\n".join(lines) + "\n"


def checks_sources(autograder: Path) -> dict[str, str]:
    """``{dotted module name: source}`` of every module of ``autograder/checks``."""
    return {
        f"autograder.checks.{path.stem}": path.read_text()
        for path in sorted((autograder / "checks").glob("*.py"))
    }


def stand_in_names(autograder: Path) -> set[str]:
    """Every name a stand-in of the probe copy reports: the ``@judge_only`` helpers and the functions with a
    judge side."""
    return {
        region.name
        for module, text in checks_sources(autograder).items()
        for region in judge_side(text, module)
    }


@dataclass
class Needles:
    """What to search a kernel's files for: whole lines of judge-side code, and texts a ``.pyc`` keeps (docstrings)."""

    lines: dict[str, str]  # a stripped line → where it is
    texts: dict[str, str]  # a helper's docstring → whose it is


def needles(autograder: Path, others: tuple[Path, ...] = (), shortest: int = 40) -> Needles:
    """The lines of every judge-side region at least ``shortest`` characters long that no probe-side line and no
    ``.py`` file under ``others`` (code a kernel may read, such as ``solutions``) holds; and the helpers' docstrings."""
    sources = checks_sources(autograder)
    elsewhere = {
        line.strip()
        for folder in others
        for path in folder.rglob("*.py")
        for line in path.read_text().splitlines()
    }
    judged: dict[str, str] = {}
    for module, text in sources.items():
        where = {n: r for r in judge_side(text, module) for n in range(r.start[0], r.end[0] + 1)}
        for number, line in enumerate(text.splitlines(), start=1):
            region = where.get(number)
            if region is None:
                elsewhere.add(line.strip())
            else:  # an expression's whole line too: the copy's line differs from it
                judged.setdefault(
                    line.strip(), f"{region.name} ({module.rpartition('.')[2]}.py line {number})"
                )
    lines = {
        line: where
        for line, where in judged.items()
        if len(line) >= shortest
        and line not in elsewhere
        and not line.startswith(("#", "@", "from ", "import "))
    }
    texts = {}
    for module, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if _is_judge_only(node) and ast.get_docstring(node, clean=False):
                texts[ast.get_docstring(node, clean=False)] = f"{module}.{node.name}"
    return Needles(lines, texts)


def write_probe_copy(autograder: Path, destination: Path) -> Path:
    """A copy of the ``autograder`` package in ``destination``, holding its checks' probe side only."""
    target = destination / "autograder"
    if target.exists():
        shutil.rmtree(target)
    (target / "checks").mkdir(parents=True)
    shutil.copyfile(autograder / "__init__.py", target / "__init__.py")
    shutil.copyfile(
        autograder / "syllabus.py", target / "syllabus.py"
    )  # the course table names exercises in messages
    for module, text in checks_sources(
        autograder
    ).items():  # never __pycache__: it holds the judge side compiled
        (target / "checks" / f"{module.rpartition('.')[2]}.py").write_text(without_judge_side(text, module))
    (target / "checks" / "_hidden.py").write_text(STAND_IN_MODULE)
    return target
