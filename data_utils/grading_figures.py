"""The matplotlib backend of a graded kernel: figures are made as in any run, but never drawn.

Drawing a figure into the PNG a notebook shows costs about a third of a second of CPU, a dozen times a student,
and no check reads a picture (the questions are answered in words, and a graded run's pictures are of quick
mode's synthetic data, not the student's). The grader alone selects this backend for its kernels
(``MPLBACKEND=module://data_utils.grading_figures``); in Colab, Jupyter and the tests' runs of the lessons,
figures show as usual. Every figure a cell made is still closed after it, with one line in its place, as the
inline backend closes the figures it shows.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg  # saving a figure to a file still works
NOT_DRAWN = "[a figure: not drawn while grading]"


def show(*args: object, **kwargs: object) -> None:
    """Close every open figure without drawing it, and print one line for each in its place."""
    from matplotlib import pyplot

    for _ in pyplot.get_fignums():
        print(NOT_DRAWN)
    pyplot.close("all")


def _close_after_every_cell() -> None:
    """In an IPython kernel, close what a cell left open, as the inline backend does (else figures pile up)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.events.register("post_execute", show)


_close_after_every_cell()
