"""``autograder.grading.safe_view``: nothing a student's notebook holds runs in the browser that shows it.

Each payload carries a marker (``PWN<n>``). The notebook is made safe, then rendered with nbconvert's classic
template, which renders markdown, raw HTML and rich outputs as nbgrader's feedback and formgrade templates do
(unsanitized); no marker may then be inside a script, an event attribute or a URL with a scheme a browser runs.
"""

from __future__ import annotations

import copy
from html.parser import HTMLParser

import nbformat
import pytest
from helpers import REPO
from nbconvert import HTMLExporter

from autograder import syllabus
from autograder.build import build_source
from autograder.grading import safe_view

MARKDOWN_PAYLOADS = [
    "<script>alert('PWN1')</script>",
    "hello <img src=x onerror=\"alert('PWN2')\">",
    "[click](javascript:alert('PWN3'))",
    "[click](jav&#x61;script:alert('PWN4'))",
    "<a href=' javascript:alert(1)'>PWN5</a>",
    "<iframe src=\"data:text/html,<script>alert('PWN6')</script>\"></iframe>",
    "<svg><script>alert('PWN7')</script></svg>",
    "<div onmouseover=\"alert('PWN8')\">hover</div>",
    "$\\href{javascript:alert('PWN9')}{x}$",
    "<style>body{background:url(\"javascript:alert('PWN10')\")}</style>",
    "<details open ontoggle=\"alert('PWN11')\">x</details>",
    "<form action=\"javascript:alert('PWN12')\"><button>go</button></form>",
]
OUTPUT_PAYLOADS = [
    {"text/html": "<script>alert('PWN20')</script>", "text/plain": "PWN20 as text"},
    {"application/javascript": "alert('PWN21')"},
    {"image/svg+xml": "<svg onload=\"alert('PWN22')\"></svg>"},
    {"text/markdown": "<img src=x onerror=\"alert('PWN23')\">"},
    {"text/latex": "$\\href{javascript:alert('PWN24')}{x}$"},
    {
        "application/vnd.jupyter.widget-view+json": {
            "model_id": "PWN25",
            "version_major": 2,
            "version_minor": 0,
        }
    },
]
SIZED_IMAGE = {"image/png": {"width": "1 onerror=alert('PWN26')", "height": 20}}
RUNS = ("script", "style")


class _Live(HTMLParser):
    """Collects what a browser would run: script and style text, event attributes, URLs with a scheme."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.live: list[str] = []
        self.inside: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in RUNS:
            self.inside.append(tag)
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") or "script:" in "".join(value.split()).lower():
                self.live.append(f"{tag} {name}={value}")
            if tag == "iframe" and name == "src" and value.startswith("data:"):
                self.live.append(f"iframe src={value}")

    def handle_endtag(self, tag):
        if self.inside and tag == self.inside[-1]:
            self.inside.pop()

    def handle_data(self, data):
        if self.inside:
            self.live.append(data)


def live_markers(html: str) -> list[str]:
    """The payload markers in what a browser would run of ``html``."""
    parser = _Live()
    parser.feed(html)
    return sorted({word for text in parser.live for word in text.replace("'", " ").split() if "PWN" in word})


def rendered(nb: nbformat.NotebookNode) -> str:
    """``nb`` as nbconvert's classic template renders it (unsanitized, as nbgrader's templates do)."""
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    return html


def hostile_notebook() -> nbformat.NotebookNode:
    """A notebook with every payload: markdown cells, a raw HTML cell, outputs and saved widget state."""
    cells = [nbformat.v4.new_markdown_cell(payload) for payload in MARKDOWN_PAYLOADS]
    raw = nbformat.v4.new_raw_cell("<script>alert('PWN30')</script>")
    raw.metadata["raw_mimetype"] = "text/html"
    code = nbformat.v4.new_code_cell("show()")
    code.outputs = [nbformat.v4.new_output("display_data", data=data) for data in OUTPUT_PAYLOADS]
    code.outputs.append(
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"}, metadata=SIZED_IMAGE)
    )
    nb = nbformat.v4.new_notebook(cells=[*cells, raw, code])
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"state": {"PWN31": {"model_name": "HTMLModel"}}}
    }
    return nb


def test_the_payloads_run_unless_made_safe():
    """The test itself can fail: rendered as handed in, the payloads are live (markdown, HTML, JavaScript, an image's
    size, the widget state)."""
    live = live_markers(rendered(hostile_notebook()))
    assert {"PWN1", "PWN2", "PWN8", "PWN20", "PWN21", "PWN23", "PWN26"} <= set(live), live
    assert any("PWN3" in marker for marker in live) and any("PWN31" in marker for marker in live), live


def test_nothing_a_student_wrote_runs_once_made_safe():
    nb = hostile_notebook()
    changed = safe_view.make_safe_to_view(nb, trusted=set())
    html = rendered(nb)
    assert live_markers(html) == []
    assert changed == len(MARKDOWN_PAYLOADS) + 2  # every markdown cell, the raw cell, the code cell
    assert "PWN20 as text" in html  # an output keeps its plain text
    for number, payload in enumerate(MARKDOWN_PAYLOADS):
        assert payload in nb.cells[number].source  # shown as text, every character kept


@pytest.mark.parametrize("lesson", syllabus.NAMES)
def test_a_lessons_own_text_passes_untouched(lesson):
    """The lesson's markdown (its Colab badge's HTML included) passes the allowlist even when not trusted, so that
    a student's copy of it is never fenced; and a solved notebook is left as it is."""
    source = build_source(lesson).source
    release = nbformat.read(REPO / "lessons" / f"{lesson}.ipynb", as_version=4)
    for cell in [*source.cells, *release.cells]:
        if cell.cell_type == "markdown":
            assert safe_view.refused_markdown(cell.source, cell.get("attachments")) is None, cell.source[:300]
    solved = copy.deepcopy(source)
    assert safe_view.make_safe_to_view(solved, safe_view.lesson_text(source, release)) == 0
    assert solved == source


def test_an_honest_written_answer_is_left_as_it_is():
    """Math with <, code spans, links, an image, a table, emphasis: nothing to fence."""
    answer = (
        "The threshold $t$ calls a pair *same* when $d < t$ and `d >= t` otherwise; see "
        "[the docs](https://pytorch.org/docs) and ![plot](attachment:plot.png).\n\n"
        "| margin | d |\n| --- | --- |\n| 2 | 1.5 |\n\n<b>bold</b> <br> <sub>2</sub>"
    )
    cell = nbformat.v4.new_markdown_cell(answer)
    cell.attachments = {"plot.png": {"image/png": "iVBORw0KGgo="}}
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert safe_view.make_safe_to_view(nb, trusted=set()) == 0
    assert nb.cells[0].source == answer


@pytest.mark.parametrize(
    "source",
    ["``` <script>alert('PWN40')</script>", "````\n<img src=x onerror=alert('PWN41')>\n````"],
    ids=["three_backticks", "a_fence_of_four"],
)
def test_the_fence_cannot_be_closed_from_inside(source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source)])
    safe_view.make_safe_to_view(nb, trusted=set())
    assert live_markers(rendered(nb)) == []
