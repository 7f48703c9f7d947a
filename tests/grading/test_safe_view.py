"""``autograder.grading.safe_view``: nothing a student's notebook holds runs in the browser that shows it.

Each payload carries a marker (``PWN<n>``). The notebook is made safe, then rendered with nbconvert's classic
template, which renders markdown, raw HTML and rich outputs as nbgrader's feedback and formgrade templates do
(unsanitized); no marker may then be inside a script, an event attribute or a URL with a scheme a browser runs,
as html5lib (the HTML5 parsing algorithm browsers follow, shipped with bleach) reads the page. The payloads
include those a review found past an earlier, parser-based version: comments HTML5 closes where Python's parser
does not (``<!-->``, ``--!>``), ``<![CDATA[``, a tag left open at the end of a fragment, a ``files/`` prefix the
templates strip.
"""

from __future__ import annotations

import copy
import time

import html5lib
import nbformat
import pytest
from helpers import REPO
from nbconvert import HTMLExporter

from autograder import syllabus
from autograder.build import build_source, solved_notebook
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
    "<!--><img src=x onerror=alert('PWN13')>-->",
    "<!-- a --!><img src=x onerror=alert('PWN14')> -->",
    "<![CDATA[><img src=x onerror=alert('PWN15')>]]>",
    "<details open ontoggle=\"alert('PWN16')\"",
    "[click me](files/javascript:alert('PWN17'))",
    "&#36;&#92;href{javascript:alert('PWN18')}{click}&#36;",
    "text <svg/onload=alert('PWN19')>",
]
OUTPUT_PAYLOADS = [
    {"text/html": "<script>alert('PWN20')</script>", "text/plain": "PWN20 as text"},
    {"text/html": "<!--><img src=x onerror=alert('PWN27')>-->", "text/plain": "t"},
    {"text/html": "<img src=x onerror=\"alert('PWN28')\"", "text/plain": "t"},
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


def live_markers(page: str) -> list[str]:
    """The payload markers in what a browser would run of ``page``: script and style text, event attributes, URLs
    with a scheme that runs code, data: frames; the page parsed as browsers parse it (html5lib)."""
    live = []
    for element in html5lib.parse(page, namespaceHTMLElements=False).iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag.split("}")[-1] in RUNS:
            live.append("".join(element.itertext()))
        for name, value in element.attrib.items():
            url = "".join(value.split()).lower()
            if name.startswith("on") or "script:" in url or (tag == "iframe" and url.startswith("data:")):
                live.append(f"{name}={value}")
    return sorted({word for text in live for word in text.replace("'", " ").split() if "PWN" in word})


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
def test_a_lessons_own_text_is_left_as_it_is(lesson):
    """The lesson's markdown (its Colab badge's HTML, its math) is trusted, and the model answers hold no markup: a
    solved notebook, as `autograder solutions` writes it, is not changed."""
    source = build_source(lesson).source
    release = nbformat.read(REPO / "lessons" / f"{lesson}.ipynb", as_version=4)
    solved = solved_notebook(source)
    made_safe = copy.deepcopy(solved)
    assert safe_view.make_safe_to_view(made_safe, safe_view.lesson_text(source, release)) == 0
    assert (
        made_safe.cells == solved.cells
    )  # (the notebook's own metadata is the grader's: Python, nothing else)


def test_an_honest_written_answer_is_left_as_it_is():
    """Math with < and >, code, links, an attached image, an aligned table, a task list: nothing to fence."""
    answer = (
        "The threshold $t$ calls a pair *same* when $d < t$ and `d >= t` otherwise; see "
        "[the docs](https://pytorch.org/docs) and ![plot](attachment:plot.png).\n\n"
        "| margin | d |\n|:--- | ---:|\n| 2 | 1.5 |\n\n- [x] trained\n- [ ] tuned\n\n"
        "```python\nloss = (d - m) ** 2\n```\n\n$$\\frac{1}{B} \\sum_i y_i \\max(m - d_i, 0)^2$$"
    )
    cell = nbformat.v4.new_markdown_cell(answer)
    cell.attachments = {"plot.png": {"image/png": "iVBORw0KGgo="}}
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert safe_view.make_safe_to_view(nb, trusted=set()) == 0
    assert nb.cells[0].source == answer


def test_an_answer_with_html_in_it_is_shown_as_text_every_character_kept():
    """Markup of any kind (here <b> and <sub>) is shown, not rendered: a parser other than the browser's cannot
    tell safe markup from unsafe, so the grader does not try."""
    answer = "The loss is <b>zero</b> at d<sub>0</sub>."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(answer)])
    assert safe_view.make_safe_to_view(nb, trusted=set()) == 1
    assert answer in nb.cells[0].source and "<b>" not in rendered(nb).split("</head>")[1].replace(
        "&lt;b&gt;", ""
    )


@pytest.mark.parametrize(
    "source",
    ["``` <script>alert('PWN40')</script>", "````\n<img src=x onerror=alert('PWN41')>\n````"],
    ids=["three_backticks", "a_fence_of_four"],
)
def test_the_fence_cannot_be_closed_from_inside(source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source)])
    safe_view.make_safe_to_view(nb, trusted=set())
    assert live_markers(rendered(nb)) == []


def test_markdown_that_renders_slowly_is_shown_as_text_unrendered():
    """nbconvert's math rules are quadratic on repeated \\begin{a} (seconds for 18 KB, here and again in the
    feedback): a long cell, or markdown past the notebook's budget, is fenced without being rendered, and the
    fenced copy renders in linear time."""
    long_cell = "\\begin{a}" * 1000
    assert safe_view.refused_markdown(long_cell) == "a cell too long to check"
    cells = [nbformat.v4.new_markdown_cell("\\begin{a}" * 500) for _ in range(60)]  # 4.5 KB each, 270 KB
    nb = nbformat.v4.new_notebook(cells=cells)
    started = time.process_time()
    safe_view.make_safe_to_view(nb, trusted=set())
    fenced = sum(cell.source.startswith("*(Shown as text") for cell in nb.cells)
    assert fenced >= 60 - safe_view.BUDGET // len(cells[0].source) - 1
    print(f"made safe in {time.process_time() - started:.2f} s of CPU; rendering it:")
    started = time.process_time()
    rendered(nb)
    print(f"{time.process_time() - started:.2f} s")


@pytest.mark.parametrize(
    "cell",
    [
        {"cell_type": "markdown", "source": None, "metadata": {}},
        {"cell_type": "markdown", "source": 5, "metadata": {}},
        {"cell_type": "markdown", "source": {}, "metadata": {}},
        {"source": "x", "metadata": {}},
        {"cell_type": "raw", "source": "x", "metadata": "x"},
        {
            "cell_type": "code",
            "source": "",
            "metadata": {},
            "outputs": [{"output_type": "display_data", "data": {"text/html": ["<b>", 1]}, "metadata": 5}],
        },
        {"cell_type": "code", "source": "", "metadata": {}, "outputs": [{"output_type": "display_data"}]},
    ],
    ids=[
        "source_null",
        "source_a_number",
        "source_an_object",
        "no_type",
        "metadata_text",
        "html_list",
        "no_data",
    ],
)
def test_a_malformed_cell_is_made_safe_without_a_crash(cell):
    """(Intake refuses such cells in a submission; this stage must not fail on them all the same.)"""
    nb = nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]})
    safe_view.make_safe_to_view(nb, trusted=set())


def test_no_lexer_a_student_names_is_run():
    """Some pygments lexers take exponential time on a crafted line (Maple's on 40 backslashes ran for minutes, in
    the check and again wherever the notebook is rendered): a markdown code block in a language outside
    CODE_LANGUAGES is shown as text, a cell's metadata (magics_language) and the notebook's language are the
    grader's."""
    slow = '"' + "\\\\a" * 40
    markdown = nbformat.v4.new_markdown_cell(f"```maple\n{slow}\n```")
    code = nbformat.v4.new_code_cell(slow, metadata={"magics_language": "maple", "tags": ["x"]})
    nb = nbformat.v4.new_notebook(cells=[markdown, code])
    nb.metadata["language_info"] = {"name": "maple", "pygments_lexer": "maple"}
    assert safe_view.refused_markdown(markdown.source) == "a code block in maple"
    safe_view.make_safe_to_view(nb, trusted=set())
    assert nb.cells[0].source.startswith("*(Shown as text") and "```maple" in nb.cells[0].source
    assert nb.cells[1].metadata == {} and nb.metadata.language_info["pygments_lexer"] == "ipython3"
    assert "```python\nx = 1\n```" in safe_view.as_text("```python\nx = 1\n```", "x")  # a fence shows as text
    assert safe_view.refused_markdown("```python\nx = 1\n```") is None


def test_a_raw_cell_is_shown_as_text():
    """The templates render a raw cell that names no type as HTML, whatever its source."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_raw_cell("<b>RAW</b><img src=x onerror=alert('PWN50')>")]
    )
    assert safe_view.make_safe_to_view(nb, trusted=set()) == 1
    assert nb.cells[0].cell_type == "markdown" and "<b>RAW</b>" in nb.cells[0].source
    assert live_markers(rendered(nb)) == []


def test_a_lessons_text_is_trusted_only_in_its_own_cell_type():
    """The badge's markdown turned into a raw cell would be rendered as raw HTML: it is not the lesson's cell."""
    badge = build_source("01_pair_dataset").source.cells[0]
    trusted = safe_view.lesson_text(build_source("01_pair_dataset").source)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_raw_cell(badge.source), copy.deepcopy(badge)])
    assert safe_view.make_safe_to_view(nb, trusted) == 1
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("*(Shown as text")
    assert nb.cells[1].source == badge.source
