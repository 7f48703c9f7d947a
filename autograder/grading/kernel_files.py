"""What a run's sandboxed kernels read besides the host's files: made once a run by the grader, never per student.

* for each lesson, a copy of ``solutions`` without that lesson's reference (``reference.write_hidden_copy``), and
  one copy of the checks without their judge side (``judge_side.write_probe_copy``), bound read-only over the
  course packages; compiled here, so that no kernel compiles them again (every graded test cell imports the
  checks afresh, about 17 ms each from source);
* matplotlib's list of the fonts a kernel sees, built under the kernels' own walls (``sandbox.build_font_list``).

Nothing here holds anything of a student, and every kernel reads it read-only. Without ``--isolation`` (no
bubblewrap) none of it is used: a plain kernel imports the course packages themselves.
"""

from __future__ import annotations

import compileall
from collections.abc import Iterable
from pathlib import Path

from . import judge_side, reference
from . import sandbox as kernel_sandbox


def write_copies(solutions: Path, autograder: Path, folder: Path, lessons: Iterable[str]) -> Path:
    """The kernels' copies of the course packages for ``lessons`` in ``folder`` (those missing), compiled."""
    for lesson in lessons:
        if not hidden_copy(folder, lesson).is_dir():
            reference.write_hidden_copy(lesson, solutions, folder / "hidden")
    if not probe_copy(folder).is_dir():  # the same for every lesson
        judge_side.write_probe_copy(autograder, folder / "probe")
    # From the copies' own text: the bytecode holds no more than the copies (tests/grading/test_sandbox.py).
    if not compileall.compile_dir(folder, quiet=2, workers=1):
        raise RuntimeError(f"could not compile the kernels' copies of the course in {folder}")
    return folder


def make(code: Path, folder: Path, lessons: Iterable[str]) -> tuple[Path, Path | None]:
    """Every lesson's copies from the code copy ``code``, and the font list; (the folder, the font list or None)."""
    write_copies(code / "solutions", code / "autograder", folder, lessons)
    return folder, kernel_sandbox.build_font_list(folder / "fonts")


def hidden_copy(folder: Path, lesson: str) -> Path:
    """Where ``lesson``'s copy of ``solutions`` is in ``folder``."""
    return folder / "hidden" / lesson / "solutions"


def probe_copy(folder: Path) -> Path:
    """Where the copy of ``autograder`` is in ``folder``."""
    return folder / "probe" / "autograder"


def font_list(folder: Path) -> Path | None:
    """The font list ``make`` built in ``folder``, if it could."""
    found = sorted((folder / "fonts").glob("run/fontlist-*.json"))
    return found[0] if len(found) == 1 else None


def overlays(packages: dict[str, Path], lesson: str, folder: Path) -> dict[Path, Path]:
    """What ``lesson``'s kernel reads where (target → what is bound there, read-only): no reference, no judge side."""
    bound = {packages["solutions"]: hidden_copy(folder, lesson), packages["autograder"]: probe_copy(folder)}
    for name in ("solutions", "autograder"):  # another installed copy of a package is covered the same way
        bound.update(dict.fromkeys(kernel_sandbox.other_copies(name, packages[name]), bound[packages[name]]))
    bound.update(kernel_sandbox.font_list_overlay(font_list(folder)))
    return bound
