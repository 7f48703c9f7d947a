"""A stage of recording: what a student's notebook shows is made safe to open in a browser.

nbgrader's formgrader shows each autograded notebook inside the instructor's logged-in Jupyter server, and its
templates render markdown cells as they are, without sanitizing them; the feedback is an HTML page too. So a
``<script>``, an ``onerror=``, a ``javascript:`` link or a JavaScript output in a student's notebook would run with
the instructor's session. Before a notebook is recorded, every cell that is not the lesson's own is made safe:

* a markdown cell may hold no markup at all: HTML5 starts a tag, a comment or a declaration at ``<`` followed by a
  letter, ``/``, ``!`` or ``?``, so such a cell, and one whose links (as nbconvert renders them, ``files/``
  prefix stripped as its templates do) have a scheme a browser runs, is shown as text instead, its source in a
  fenced block: nothing the student wrote is lost, and nothing in it runs. No HTML parser decides what is
  markup (a parser of another kind than the browser's can be fooled: ``<!-->``, ``--!>``, ``<![CDATA[``);
* an output keeps its plain-text and image forms only, with numeric image sizes (the templates write sizes
  unquoted); an HTML, Markdown, LaTeX, SVG or JavaScript form is dropped, the plain text stays;
* a raw cell (which the templates render as HTML when it names no type) is shown as text like a markdown cell;
* the notebook names Python for its code, and a cell keeps only the grader's metadata: the templates highlight code
  with the lexer they name, and some of pygments' lexers take exponential time on a crafted line (its Maple lexer
  ran for minutes on 40 backslashes); for the same reason a markdown cell's code blocks may only be in
  ``CODE_LANGUAGES``. Saved widget state goes with the rest of the notebook's metadata.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from typing import Any

import nbformat
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.filters.strings import strip_files_prefix

MARKUP = re.compile(r"<[A-Za-z!/?]")  # HTML5's tag-open state: anything else after '<' is text
SCHEMES = {"http", "https", "mailto", "attachment"}  # and a data: URL of an image, as an <img>'s source
IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]")
# LaTeX that MathJax turns into links, markup or styles (its Safe extension, which nbconvert loads, filters them
# too): checked on the text as the browser decodes it.
ACTIVE_LATEX = re.compile(r"\\(href|url|unicode|class|cssId|style|require|html)\b")
# nbconvert's math rules take time quadratic in some inputs (18 KB of \begin{a} took 4.4 s to render, a fenced
# copy 0.04 s), here and again in the feedback: a cell is rendered to be checked only up to LONGEST characters and
# while the notebook's markdown so far stays under BUDGET; past either it is shown as text.
LONGEST = 5_000
BUDGET = 100_000
KEPT = {"text/plain", "image/png", "image/jpeg", "image/gif"}
CODE_LANGUAGES = {
    "",
    "python",
    "python3",
    "py",
    "ipython",
    "ipython3",
    "pycon",
    "text",
    "bash",
    "sh",
    "json",
    "latex",
}
CELL_METADATA = {"nbgrader", "siamese"}  # nbgrader's and the grader's own (the judge's mark)
LANGUAGE = {"name": "python", "pygments_lexer": "ipython3"}


class _CheckedRenderer(IPythonRenderer):
    """nbconvert's renderer, noting the language of each fenced block instead of highlighting it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.languages: list[str] = []

    def block_code(self, code: str, info: str | None = None) -> str:
        """The block as mistune writes one without a language (escaped), its language noted."""
        words = (info or "").split(maxsplit=1)
        self.languages.append(words[0] if words else "")
        return super(IPythonRenderer, self).block_code(code, info=None)


class _Links(HTMLParser):
    """The URLs and event attributes of HTML that mistune wrote itself (the source held no markup)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refused: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Each URL attribute, and any attribute that runs code."""
        for name, value in attrs:
            if name.startswith("on") or (name in ("href", "src") and not _safe_url(value or "", tag)):
                self.refused = self.refused or f"{name}={(value or '')[:40]}"

    handle_startendtag = handle_starttag


def _safe_url(value: str, tag: str) -> bool:
    """A relative URL, one of ``SCHEMES``, or an image's data URL; browsers ignore spaces and control characters in
    a scheme, so they are removed before it is read."""
    url = re.sub(r"[\x00-\x20]", "", value).lower()
    scheme, colon, _ = url.partition(":")
    if not colon or re.search(r"[/?#]", scheme):
        return True  # no scheme: a relative URL
    return scheme in SCHEMES or (tag == "img" and bool(IMAGE_DATA.match(url)))


def refused_markdown(source: str, attachments: dict | None = None) -> str | None:
    """What in a markdown cell's source could run in a browser once nbconvert renders it, or ``None``.

    Markdown nbconvert cannot render (an attachment that is missing) is refused too: it would stop the feedback of
    the whole notebook.
    """
    if len(source) > LONGEST:
        return "a cell too long to check"
    markup = MARKUP.search(source)
    if markup:
        return f"markup {markup.group(0)}"
    latex = ACTIVE_LATEX.search(html.unescape(source))
    if latex:
        return latex.group(0)
    try:
        attached = attachments if isinstance(attachments, dict) else {}
        renderer = _CheckedRenderer(escape=False, exclude_anchor_links=True, attachments=attached)
        links = _Links()
        links.feed(strip_files_prefix(MarkdownWithMath(renderer=renderer).render(source)))
        links.close()
    except Exception:
        return "Markdown the grader cannot render"
    other = [language for language in renderer.languages if language.lower() not in CODE_LANGUAGES]
    return f"a code block in {other[0]}" if other else links.refused


def as_text(source: str, why: str) -> str:
    """Markdown that shows ``source`` verbatim in a fenced block (a fence longer than any run of backticks in it);
    ``why`` is named with letters, digits, ``:``, ``=`` and ``-`` alone, in a code span."""
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    reason = re.sub(r"[^\w:=-]", "", why)[:40] or "markup"
    return (
        f"*(Shown as text by the grader: a browser could run what this cell held: `{reason}`.)*\n\n"
        f"{fence}\n{source}\n{fence}"
    )


def _safe_output(output: dict) -> bool:
    """Keep an output's plain-text and image forms only, with numeric image sizes; return whether a form or a size
    was dropped (other metadata, Colab's say, goes without a word)."""
    if output.get("output_type") not in ("display_data", "execute_result"):
        return False
    data, metadata = output.get("data"), output.get("metadata")
    forms = data.items() if isinstance(data, dict) else []
    kept = {kind: value for kind, value in forms if kind in KEPT and isinstance(value, (str, list))}
    output["data"] = nbformat.NotebookNode(kept or {"text/plain": "(an output the grader does not show)"})
    sizes = {
        kind: {name: value for name, value in values.items() if name in ("width", "height")}
        for kind, values in (metadata.items() if isinstance(metadata, dict) else [])
        if kind in kept and isinstance(values, dict)
    }
    numeric = {kind: {n: v for n, v in values.items() if _is_number(v)} for kind, values in sizes.items()}
    output["metadata"] = nbformat.NotebookNode({kind: values for kind, values in numeric.items() if values})
    return len(kept) < len(data if isinstance(data, dict) else {}) or numeric != sizes


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lesson_text(*notebooks: nbformat.NotebookNode) -> set[tuple[str, str]]:
    """The lesson's own markdown and raw cells, as (type, source), which need no check (the badge's HTML, say): a
    cell is the lesson's only with its type too (the same text in a raw cell would be rendered as HTML)."""
    return {
        (cell.cell_type, cell.source) for nb in notebooks for cell in nb.cells if cell.cell_type != "code"
    }


def make_safe_to_view(nb: nbformat.NotebookNode, trusted: set[tuple[str, str]]) -> int:
    """Make ``nb`` safe to open in a browser (in place), leaving cells whose source is in ``trusted`` (the lesson's
    own text) as they are; return how many cells changed."""
    changed, budget = 0, BUDGET
    nb["metadata"] = nbformat.NotebookNode(
        {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": LANGUAGE,
        }
    )
    for cell in nb.cells:
        if not isinstance(cell, dict):
            continue
        metadata = cell.get("metadata")
        cell["metadata"] = nbformat.NotebookNode(
            {
                key: value
                for key, value in (metadata.items() if isinstance(metadata, dict) else [])
                if key in CELL_METADATA
            }
        )
        kind, source = cell.get("cell_type"), cell.get("source")
        if kind == "code":
            outputs = [_safe_output(o) for o in cell.get("outputs") or [] if isinstance(o, dict)]
            changed += any(outputs)
        elif isinstance(source, str) and (kind, source) in trusted:
            continue
        elif kind in ("markdown", "raw"):
            if kind == "raw":  # shown as text, as a markdown cell that must be
                cell["cell_type"] = "markdown"
                cell.pop("attachments", None)
            text = source if isinstance(source, str) else json.dumps(source)
            budget -= len(text)
            why = (
                "a source that is no text"
                if text is not source
                else "a raw cell"
                if kind == "raw"
                else "more markdown than the grader checks"
                if budget < 0
                else refused_markdown(text, cell.get("attachments"))
            )
            if why:
                cell["source"] = as_text(text, why)
                changed += 1
    return changed
