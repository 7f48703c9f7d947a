"""What a run's sandboxed kernels read besides the host's files: made once a run by the grader, never per student.

* for each lesson, a copy of ``solutions`` without that lesson's reference (``reference.write_hidden_copy``), and
  one copy of the checks without their judge side (``judge_side.write_probe_copy``), bound read-only over the
  course packages; compiled here, so that no kernel compiles them again (every graded test cell imports the
  checks afresh, about 17 ms each from source);
* matplotlib's list of the fonts a kernel sees, built under the kernels' own walls (``sandbox.build_font_list``).

Nothing here holds anything of a student, and every kernel reads it read-only. With ``--isolation off`` (no
bubblewrap) none of it is made or used: a plain kernel imports the course packages themselves.
``python -m autograder.grading.kernel_files FOLDER`` makes it from the course as that Python imports it: ``grade``
runs it from the copy of the code it grades with, as it builds the course.
"""

from __future__ import annotations

import argparse
import compileall
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import syllabus
from . import judge_side, reference
from . import sandbox as kernel_sandbox


def write_copies(solutions: Path, autograder: Path, folder: Path, lessons: Iterable[str]) -> Path:
    """The kernels' copies of the course packages for ``lessons`` in ``folder``, compiled; return ``folder``.

    A copy already there is kept: each is written beside its place and renamed into it, so it is whole.
    """
    for lesson in lessons:
        if not hidden_copy(folder, lesson).is_dir():
            with _beside(hidden_copy(folder, lesson)) as scratch:
                reference.write_hidden_copy(lesson, solutions, scratch).rename(hidden_copy(folder, lesson))
    if not probe_copy(folder).is_dir():  # the same for every lesson
        with _beside(probe_copy(folder)) as scratch:
            judge_side.write_probe_copy(autograder, scratch).rename(probe_copy(folder))
    # From the copies' own text, as a kernel imports them (not optimized): tests/grading/test_sandbox.py.
    if not compileall.compile_dir(folder, quiet=2, workers=1, optimize=0):
        raise RuntimeError(f"could not compile the kernels' copies of the course in {folder}")
    return folder


@contextmanager
def _beside(target: Path) -> Iterator[Path]:
    """A new empty folder next to ``target``, removed afterwards (what was renamed out of it stays)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        yield Path(scratch)


def make(packages: dict[str, Path], folder: Path, lessons: Iterable[str]) -> tuple[Path, Path | None]:
    """Every lesson's copies of the course ``packages`` (name → folder), and the font list; (folder, font list)."""
    write_copies(packages["solutions"], packages["autograder"], folder, lessons)
    return folder, kernel_sandbox.build_font_list(folder / "fonts")


def hidden_copy(folder: Path, lesson: str) -> Path:
    """Where ``lesson``'s copy of ``solutions`` is in ``folder``."""
    return folder / "hidden" / lesson / "solutions"


def probe_copy(folder: Path) -> Path:
    """Where the copy of ``autograder`` is in ``folder``."""
    return folder / "probe" / "autograder"


def font_list(folder: Path) -> Path | None:
    """The font list ``make`` built in ``folder``, if it could (a failed build leaves none)."""
    found = sorted((folder / "fonts").glob("run/fontlist-*.json"))
    return found[0] if len(found) == 1 else None


def overlays(packages: dict[str, Path], lesson: str, folder: Path) -> dict[Path, Path]:
    """What ``lesson``'s kernel reads where (target → what is bound there, read-only): no reference, no judge side."""
    bound = {packages["solutions"]: hidden_copy(folder, lesson), packages["autograder"]: probe_copy(folder)}
    for name in ("solutions", "autograder"):  # another installed copy of a package is covered the same way
        bound.update(dict.fromkeys(kernel_sandbox.other_copies(name, packages[name]), bound[packages[name]]))
    bound.update(kernel_sandbox.font_list_overlay(font_list(folder)))
    return bound


def main(argv: list[str] | None = None) -> int:
    """Make every lesson's kernel files in the folder named on the command line; say if the font list failed."""
    parser = argparse.ArgumentParser(prog="python -m autograder.grading.kernel_files", description=__doc__)
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args(argv).folder
    _, fonts = make({p.name: p for p in kernel_sandbox.package_folders()}, folder, syllabus.NAMES)
    if fonts is None:
        print("note: matplotlib's font list could not be built; each kernel builds its own (slower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
