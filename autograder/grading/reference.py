"""The reference is not an answer: what a lesson's kernel may not see, and how a use of it is found.

While a lesson is graded its kernel sees a generated copy of ``solutions`` in which each of the
lesson's exercise objects (and the other objects that would answer it) is a ``StandIn``: importing
it works, using it in any way raises ``ReferenceSolutionHidden`` with its name. Everything else in
``solutions``, which later lessons legitimately import, stays. An exercise whose cell refers to the
reference (found in its syntax tree) or whose test cells met a stand-in scores 0, with the note
``uses the reference solution (solutions.loss.contrastive_loss)``.
"""

from __future__ import annotations

import ast
import io
import re
import shutil
import tokenize
from pathlib import Path

from .. import syllabus
from ..build import BEGIN_SOLUTION, resolve, solution_source

MARKER = re.compile(
    r"uses (?:the reference solution|the course's checks) \(((?:solutions|autograder)(?:\.\w+)+)\)"
)
STAND_IN_MODULE = '''"""Stand-ins for the reference objects hidden while a lesson is graded (written by the grader)."""


class ReferenceSolutionHidden(RuntimeError):
    """An exercise used the reference solution (or the checks' expected values): hidden while graded."""


class StandIn:
    """Takes the place of a hidden object: any use of it raises ``ReferenceSolutionHidden``."""

    def __init__(self, name, hides="the reference solution"):
        object.__setattr__(self, "_hidden_name", name)
        object.__setattr__(self, "_hides", hides)

    def _refuse(self, *args, **kwargs):
        raise ReferenceSolutionHidden(
            f"uses {object.__getattribute__(self, '_hides')} ({object.__getattribute__(self, '_hidden_name')}): "
            "write the exercise yourself; it is not available while the exercise is graded")

    __call__ = _refuse
    __mro_entries__ = _refuse
    __iter__ = _refuse
    __reduce__ = _refuse

    def __getattr__(self, name):
        self._refuse()

    def __setattr__(self, name, value):
        self._refuse()

    def __repr__(self):
        return f"<hidden reference {object.__getattribute__(self, '_hidden_name')}>"
'''


def exercises(lesson: str) -> dict[str, str]:
    """``{dotted name of a hidden object: the exercise it answers ("4.1")}`` for one lesson, from the course table."""
    return {
        spec.replace(":", "."): item.number
        for item in syllabus.lesson(lesson).exercises
        for spec in item.answers()
    }


def write_hidden_copy(lesson: str, solutions: Path, destination: Path) -> Path:
    """A copy of the ``solutions`` package in ``destination`` with the lesson's answers replaced by stand-ins."""
    target = destination / lesson / "solutions"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    by_module: dict[str, list[str]] = {}
    for dotted in exercises(lesson):
        module, _, name = dotted.rpartition(".")
        by_module.setdefault(module, []).append(name)
    for path in sorted(solutions.glob("*.py")):  # never __pycache__: its compiled reference is an answer too
        text = path.read_text()
        names = by_module.get(f"solutions.{path.stem}", [])
        (target / path.name).write_text(_without(text, names, f"solutions.{path.stem}") if names else text)
    (target / "_hidden.py").write_text(STAND_IN_MODULE)
    return target


def _without(text: str, names: list[str], module: str) -> str:
    """``text`` with each top-level definition of ``names`` replaced by a stand-in of the same name."""
    tree = ast.parse(text)
    lines = text.splitlines()
    found = {
        node.name: node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names
    }
    missing = set(names) - set(found)
    if missing:
        raise ValueError(f"{module} defines no {sorted(missing)} to hide")
    for node in sorted(found.values(), key=lambda n: n.lineno, reverse=True):
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        lines[first - 1 : node.end_lineno] = [f'{node.name} = _StandIn("{module}.{node.name}")']
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    at = imports[-1].end_lineno if imports else 0
    lines.insert(
        at, "from solutions._hidden import StandIn as _StandIn"
    )  # absolute: works in an exec'd copy too
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- finding a use

COURSE_CHECKS = "autograder"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # autograder/


def check_helpers() -> set[str]:
    """What of the checks computes expected values (``judge_side``): no answer either."""
    from .judge_side import stand_in_names  # it builds on this module's stand-ins

    return stand_in_names(PACKAGE_DIR)


def static_uses(source: str, hidden: dict[str, str], helpers: set[str] = frozenset()) -> list[str]:
    """What an exercise cell uses of the reference: hidden objects imported or named through their module (or
    an alias of it), a hidden module itself (its ``__file__``, ``inspect.getsource(module)``), a hidden module
    named in a string given to a call (``importlib.import_module("solutions.loss")``), and the checks'
    ``helpers`` that compute expected values."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # it cannot run either
    except (RecursionError, MemoryError):  # nested too deeply for the parser: what it uses cannot be known
        return [UNREADABLE]
    modules = {name.rpartition(".")[0] for name in hidden}
    aliases: dict[str, str] = {}  # local name → the module or object it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    wanted = {**hidden, **dict.fromkeys(helpers, "")}
    imported = [
        f"{n.module}.{a.name}"
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0
        for a in n.names
    ]
    mentioned = [
        n for n in imported if n in wanted or (n.endswith(".*") and n[:-2] in modules)
    ]  # a module alone is no use
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)) and id(node) not in inner:  # whole dotted names only
            head, _, rest = _dotted(node).partition(".")
            mentioned.append(".".join(filter(None, [aliases.get(head, head), rest])))
        elif isinstance(node, ast.Call):
            for argument in node.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    text = argument.value.replace("/", ".").removesuffix(".py")
                    mentioned += [m for m in modules if m in text]
    used: list[str] = []
    for dotted in mentioned:
        module_of = dotted.rsplit(".*", 1)[0]
        found = [n for n in wanted if dotted == n or dotted.startswith(n + ".")]
        if not found and (module_of in modules or any(dotted.startswith(m + ".__") for m in modules)):
            found = [
                n for n in hidden if n.startswith(module_of.split(".__")[0] + ".")
            ]  # the module itself, whole
        used += [name for name in found if name not in used]
    return used


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def runtime_uses(text: str) -> list[str]:
    """Hidden objects a notebook's outputs say were used (the stand-ins' error message)."""
    return sorted(set(MARKER.findall(text)))


UNREADABLE = (
    "(code nested too deeply to read)"  # what ``static_uses`` reports of a cell Python's parser refuses
)


def describe(names: list[str]) -> str:
    """``uses the reference solution (solutions.loss.contrastive_loss)``, or the course's checks, or both; or that the
    grader could not read the exercise's code."""
    if UNREADABLE in names:
        return "is nested too deeply for the grader to read what it uses (write it plainly)"
    parts = []
    reference = [n for n in names if not n.startswith(COURSE_CHECKS)]
    checks = [n for n in names if n.startswith(COURSE_CHECKS)]
    if reference:
        parts.append(f"uses the reference solution ({', '.join(reference)})")
    if checks:
        parts.append(f"uses the course's checks ({', '.join(checks)})")
    return " and ".join(parts)


# ---------------------------------------------------------------- a copy of the reference's text


def tokens(source: str) -> list[str] | None:
    """The code's tokens without comments and layout (``None`` if it does not tokenize)."""
    skipped = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
    }
    try:
        return [
            " ".join(t.string.split())
            if t.type == tokenize.STRING
            else t.string  # a docstring's indent is layout
            for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type not in skipped
        ]
    except (tokenize.TokenError, SyntaxError):
        return None


def reference_tokens(lesson: str) -> dict[str, list[str] | None]:
    """``{exercise: the tokens of its reference solution}``, as the solved exercise cell holds it."""
    found = {}
    for item in syllabus.lesson(lesson).exercises:
        code = "\n\n\n".join(solution_source(text)[0] for spec in item.writes for _, text in resolve(spec))
        found[item.number] = tokens(code.replace(BEGIN_SOLUTION, ""))
    return found


def copies(exercise_sources: dict[str, str], lesson: str) -> list[str]:
    """The exercises whose code is the reference solution token for token (for a human to judge: not scored)."""
    expected = reference_tokens(lesson)
    return [
        exercise
        for exercise, source in sorted(exercise_sources.items())
        if expected.get(exercise) is not None and tokens(source) == expected[exercise]
    ]
