"""A stage of recording: what a student's notebook shows is made safe to open in a browser.

nbgrader's formgrader shows each autograded notebook inside the instructor's logged-in Jupyter server, and its
templates render markdown cells as they are, without sanitizing them; the feedback is an HTML page too. So a
``<script>``, an ``onerror=``, a ``javascript:`` link or a JavaScript output in a student's notebook would run with
the instructor's session. Before a notebook is recorded, every cell that is not the lesson's own is rendered as
nbconvert renders it and held to an allowlist of tags, attributes and URL schemes:

* a markdown (or HTML raw) cell that fails is shown as text instead, its source in a fenced block: nothing the
  student wrote is lost, and nothing in it runs;
* an output keeps its plain-text and image forms, and its HTML, Markdown or LaTeX only where they pass;
* the notebook's saved widget state, which the templates would load as JavaScript, is dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nbformat
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath


def _words(text: str) -> frozenset[str]:
    """The set of the words in ``text`` (long lists of names, one line each)."""
    return frozenset(text.split())


TAGS = _words(
    "a abbr b blockquote br caption center cite code col colgroup dd del details div dl dt em figcaption figure "
    "font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small span strong sub summary sup table "
    "tbody td tfoot th thead tr tt u ul var"
)
ATTRIBUTES = _words("alt title href src width height align colspan rowspan start open color size face")
URL_ATTRIBUTES = {"href", "src"}
SCHEMES = {"http", "https", "mailto", "attachment"}  # and a data: URL of an image, as an <img>'s source
IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp)[;,]")
# LaTeX that MathJax turns into links, markup or styles: \href{javascript:...}{...} runs on a click.
ACTIVE_LATEX = re.compile(r"\\(href|url|unicode|class|cssId|style|require|html)\b")
KEPT_AS_IS = {"text/plain", "image/png", "image/jpeg", "image/gif", "application/json"}
HTML_KINDS = {"text/html", "text/markdown", "text/latex"}


class _Allowlist(HTMLParser):
    """Reads HTML and notes the first tag, attribute or URL outside the allowlist (entities decoded as a browser
    does)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refused: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Each tag and each of its attributes."""
        if tag not in TAGS:
            self.refused = self.refused or f"<{tag}>"
        for name, value in attrs:
            if name not in ATTRIBUTES:
                self.refused = self.refused or f"{name}="
            elif name in URL_ATTRIBUTES and not _safe_url(value or "", tag):
                self.refused = self.refused or f"{name}={(value or '')[:40]!r}"

    handle_startendtag = handle_starttag


def _safe_url(value: str, tag: str) -> bool:
    """A relative URL, one of ``SCHEMES``, or an image's data URL; browsers ignore spaces and control characters in
    a scheme, so they are removed before it is read."""
    url = re.sub(r"[\x00-\x20]", "", value).lower()
    scheme, colon, _ = url.partition(":")
    if not colon or re.search(r"[/?#]", scheme):
        return True  # no scheme: a relative URL
    return scheme in SCHEMES or (tag == "img" and bool(IMAGE_DATA.match(url)))


def refused_html(html: str) -> str | None:
    """What in ``html`` is outside the allowlist (the first thing found), or ``None`` when all of it is allowed."""
    parser = _Allowlist()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; anything it cannot read is refused all the same
        return "markup the grader cannot read"
    return parser.refused


def refused_markdown(source: str, attachments: dict | None = None) -> str | None:
    """What in Markdown (as nbconvert renders it, with the cell's ``attachments``, LaTeX included) a browser would
    run, or ``None``. Markdown nbconvert cannot render (an attachment that is missing) is refused too: it would stop
    the feedback of the whole notebook."""
    latex = ACTIVE_LATEX.search(source)
    if latex:
        return latex.group(0)
    try:
        attached = attachments if isinstance(attachments, dict) else {}
        renderer = IPythonRenderer(escape=False, exclude_anchor_links=True, attachments=attached)
        return refused_html(MarkdownWithMath(renderer=renderer).render(source))
    except Exception:
        return "Markdown the grader cannot render"


def as_text(source: str, why: str) -> str:
    """Markdown that shows ``source`` verbatim in a fenced block (a fence longer than any run of backticks in it);
    ``why`` is named with letters, digits, ``:``, ``=`` and ``-`` alone, in a code span."""
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    reason = re.sub(r"[^\w:=-]", "", why)[:40] or "markup"
    return (
        f"*(Shown as text by the grader: this cell held HTML that a browser would run: `{reason}`.)*\n\n"
        f"{fence}\n{source}\n{fence}"
    )


def _safe_metadata(output: nbformat.NotebookNode) -> bool:
    """Keep only numbers as an output's image sizes: the templates write ``width=...`` unquoted, so a text there
    (``1 onerror=...``) would become an attribute of its own. Return whether anything was dropped."""
    metadata = output.get("metadata")
    kept = {
        kind: {
            size: value for size, value in sizes.items() if size in ("width", "height") and _is_number(value)
        }
        for kind, sizes in (metadata.items() if isinstance(metadata, dict) else [])
        if kind in KEPT_AS_IS and isinstance(sizes, dict)
    }
    kept = {kind: sizes for kind, sizes in kept.items() if sizes}
    output["metadata"] = nbformat.NotebookNode(kept)
    return kept != metadata


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _safe_output(output: nbformat.NotebookNode) -> bool:
    """Keep an output's safe forms only; return whether anything was dropped."""
    data = output.get("data")
    if output.get("output_type") not in ("display_data", "execute_result") or not isinstance(data, dict):
        return False
    dropped = ["metadata"] if _safe_metadata(output) else []
    for kind in list(data):
        value = data[kind]
        if kind in KEPT_AS_IS:
            continue
        text = "".join(value) if isinstance(value, list) else value
        if kind in HTML_KINDS and isinstance(text, str):
            refused = (
                refused_html(text)
                if kind == "text/html"
                else refused_markdown(text)
                if kind == "text/markdown"
                else (ACTIVE_LATEX.search(text) and "LaTeX")
            )
            if not refused:
                continue
        dropped.append(kind)
        del data[kind]
    if not data:
        data["text/plain"] = f"(an output the grader does not show in a browser: {', '.join(dropped)})"
    return bool(dropped)


def lesson_text(*notebooks: nbformat.NotebookNode) -> set[str]:
    """The sources of the lesson's own markdown and raw cells, which need no check (the badge's HTML, say)."""
    return {cell.source for nb in notebooks for cell in nb.cells if cell.cell_type != "code"}


def make_safe_to_view(nb: nbformat.NotebookNode, trusted: set[str]) -> int:
    """Make ``nb`` safe to open in a browser (in place), leaving cells whose source is in ``trusted`` (the lesson's
    own text) as they are; return how many cells changed."""
    changed = 0
    if isinstance(nb.metadata, dict):
        nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            outputs = [_safe_output(o) for o in cell.get("outputs", []) if isinstance(o, dict)]
            changed += any(outputs)
            continue
        if cell.source in trusted:
            continue
        if cell.cell_type == "raw":
            shown = cell.metadata.get("raw_mimetype") or cell.metadata.get("format")
            if shown and refused_html(cell.source):
                cell.metadata.pop("raw_mimetype", None)
                cell.metadata.pop("format", None)
                changed += 1
            continue
        why = refused_markdown(cell.source, cell.get("attachments"))
        if why:
            cell.source = as_text(cell.source, why)
            changed += 1
    return changed
