"""data_utils.grading_figures: the matplotlib backend of graded kernels makes figures but never draws them."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from data_utils import grading_figures
from data_utils.env import GRADING_FIGURES_BACKEND


@pytest.fixture
def grading_backend():
    """pyplot switched to the grading backend for one test, and back after it; counts every drawing of a figure."""
    previous = matplotlib.get_backend()
    plt.close("all")
    plt.switch_backend(GRADING_FIGURES_BACKEND)
    drawn = []
    draw = FigureCanvasAgg.draw

    def counting_draw(canvas, *args, **kwargs):
        drawn.append(canvas.figure)
        return draw(canvas, *args, **kwargs)

    FigureCanvasAgg.draw = counting_draw
    try:
        yield drawn
    finally:
        FigureCanvasAgg.draw = draw
        plt.close("all")
        plt.switch_backend(previous)


def test_show_closes_every_figure_without_drawing_it(grading_backend, capsys):
    """Two figures shown: both closed, neither drawn, one line printed in place of each."""
    for _ in range(2):
        plt.figure()
        plt.plot([0, 1], [1, 0])
    plt.show()
    assert plt.get_fignums() == [], "plt.show() left figures open: the next cells would draw into them"
    assert grading_backend == [], "plt.show() drew a figure: grading pays for pictures no check reads"
    assert capsys.readouterr().out == f"{grading_figures.NOT_DRAWN}\n" * 2


def test_a_figure_saved_to_a_file_is_still_drawn(grading_backend, tmp_path):
    """Only showing is left out: a notebook that saves a figure gets its file."""
    plt.plot([0, 1], [1, 0])
    plt.savefig(tmp_path / "figure.png")
    assert (tmp_path / "figure.png").read_bytes().startswith(b"\x89PNG"), "savefig wrote no PNG"
    assert grading_backend, "savefig wrote a file without drawing the figure"
