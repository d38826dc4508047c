"""A self-contained HTML report: sections of text, figures and tables in one file.

`render(title, sections, verdict=..., provenance=..., command=...)` gives one HTML page that needs
nothing else to be read: figures are embedded as PNG (base64 ``data:`` URLs), the style is
inline, there is no script, font or link to fetch. The page opens with the verdict table (the
questions the report answers, each with its answer and the evidence), a table of contents, then
one section per `Section` (its status, summary, a "how to read" note, figures, tables), then the
provenance and the command that reproduces the report. `write(path, html)` stores it atomically.

Every piece of text is HTML-escaped (a model called ``<script>`` is shown, not run). Tables show
floats to 4 significant digits, complex numbers as ``a+bj``, missing values as "—", and at most
`MAX_ROWS` rows (with a note). The same inputs give the same bytes (no timestamp is added; put
one in `provenance` if wanted). `render` closes the figures it is given, to free their memory.

Examples:
    >>> import matplotlib.pyplot as plt, pandas as pd
    >>> from analysis import report
    >>> fig, ax = plt.subplots(figsize=(3, 2))
    >>> lines = ax.plot([0, 1], [0, 1])
    >>> sec = report.Section(
    ...     "convergence", "Convergence", "Observed order 2.0 (expected 2).",
    ...     figures=[("error against h", fig)],
    ...     tables=[("fits", pd.DataFrame({"solver": ["Heun"], "order": [2.0004]}))])
    >>> html = report.render("model <A>", [sec], verdict=[("Converges?", "yes", "order 2.0")],
    ...                      provenance={"jax": "0.4.38"}, command="python -m demo")
    >>> "model &lt;A&gt;" in html, 'href="#convergence"' in html, "data:image/png;base64," in html
    (True, True, True)
    >>> path = report.write("out/report.html", html)
    >>> path.read_text(encoding="utf-8") == html
    True
"""

from __future__ import annotations

import base64
import dataclasses
import html as _html
import io
import itertools
import math
import numbers
import re
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InvalidArgument
from .run_store import atomic_write_bytes

__all__ = ["Section", "render", "write", "STATUSES", "MAX_ROWS", "DPI", "FULL_TABLE_NOTE"]

#: A section's possible statuses.
STATUSES = ("ok", "warning", "failed")
#: Rows shown of a table; a longer one is cut, with a note.
MAX_ROWS = 50
#: Resolution of the embedded figures (shown at 1.5 times their size in inches, see `_CSS`).
DPI = 200
#: Where the note on a cut table sends the reader.
FULL_TABLE_NOTE = "the full table is in the parquet files"

_KEY = re.compile(r"[a-z0-9_-]+")
_RESERVED_IDS = ("verdict", "contents", "provenance", "reproduce")
_MISSING = "—"

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: #1d1d1f; background: #fff; line-height: 1.5; margin: 0 auto;
  padding: 1.5rem 2rem 3rem; max-width: 62rem; font-size: 16px; }
h1 { font-size: 1.7rem; margin: 0 0 1rem; line-height: 1.25; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 0.6rem; padding-bottom: 0.2rem;
  border-bottom: 1px solid #d0d4da; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
p { margin: 0.5rem 0; }
a { color: #0b5cad; }
.status { display: inline-block; font-size: 0.75rem; font-weight: 600; letter-spacing: 0.03em;
  text-transform: uppercase; padding: 0.1rem 0.45rem; border-radius: 0.25rem;
  border: 1px solid currentColor; vertical-align: middle; margin-left: 0.5rem; }
.status-ok { color: #1e6b35; }
.status-warning { color: #8a5a00; background: #fff6dd; }
.status-failed { color: #a4161a; background: #fde8e8; }
section.failed { border-left: 4px solid #a4161a; padding-left: 1rem; }
section.warning { border-left: 4px solid #d9a400; padding-left: 1rem; }
.how { color: #555b63; background: #f5f6f8; border-left: 3px solid #c4c9d0;
  padding: 0.4rem 0.8rem; margin: 0.8rem 0; font-size: 0.92rem; }
.how p { margin: 0.3rem 0; }
pre { background: #f5f6f8; border: 1px solid #e1e4e8; border-radius: 0.25rem;
  padding: 0.6rem 0.8rem; overflow-x: auto; white-space: pre-wrap; word-break: break-word;
  font-size: 0.85rem; }
pre.error { background: #fdf0f0; border-color: #f0c4c4; }
nav ol { margin: 0.3rem 0; padding-left: 1.5rem; }
figure { margin: 1rem 0; break-inside: avoid; page-break-inside: avoid; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption, .caption { font-size: 0.9rem; color: #444; margin-top: 0.3rem; }
.table-wrap { overflow-x: auto; margin: 0.6rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d4da; padding: 0.2rem 0.5rem; vertical-align: top; }
td { text-align: right; }
td.text { text-align: left; }
th { background: #eef0f3; text-align: left; }
table.verdict td { text-align: left; }
table.verdict td:first-child { font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafbfc; }
.note { font-size: 0.85rem; color: #555b63; font-style: italic; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem; margin: 0.5rem 0;
  font-size: 0.9rem; }
dt { font-weight: 600; }
dd { margin: 0; word-break: break-word; }
dd dl { margin: 0; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  a { color: inherit; text-decoration: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .table-wrap { overflow: visible; }
  pre { white-space: pre-wrap; }
}
""".strip()


def _esc(text) -> str:
    return _html.escape(str(text), quote=True)


def _paragraphs(text: str) -> str:
    """Plain text as escaped paragraphs (a blank line starts a new one)."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", str(text).strip()) if p.strip()]
    return "\n".join(f"<p>{_esc(p)}</p>" for p in paras)


def _pairs(value, what: str, n: int) -> tuple:
    """`value` as a tuple of n-tuples (lists accepted), else an InvalidArgument naming `what`."""
    items = tuple(value or ())
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str) or not isinstance(item, (tuple, list)) or len(item) != n:
            raise InvalidArgument(f"{what}[{i}]={item!r:.80} is invalid; it must be a {n}-tuple")
        out.append(tuple(item))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Section:
    """One section of a report: a titled summary with figures and tables.

    Attributes:
        key: the section's anchor (``#key``), lowercase letters, digits, ``_`` and ``-``,
            unique in a report; "verdict", "contents", "provenance" and "reproduce" are the
            page's own.
        title: the heading.
        summary: plain text, the findings with their numbers (escaped; a blank line starts a
            new paragraph).
        how_to_read: plain text, shown as a muted note (how to read the figures and tables).
        figures: ``(caption, matplotlib Figure)`` pairs.
        tables: ``(caption, pandas DataFrame)`` pairs.
        status: "ok", "warning" or "failed", shown beside the title and in the contents.
        error: text shown as is in a box (a traceback), for a section that failed.

    Examples:
        >>> Section("stability", "Stability", "Stable for h < 0.2.", status="warning").status
        'warning'
        >>> Section("Bad Key", "t", "s")
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: key='Bad Key' is invalid; ...
    """

    key: str
    title: str
    summary: str
    how_to_read: str = ""
    figures: tuple = ()
    tables: tuple = ()
    status: str = "ok"
    error: str = ""

    def __post_init__(self):
        if not isinstance(self.key, str) or not _KEY.fullmatch(self.key):
            raise InvalidArgument(
                f"key={self.key!r} is invalid; use lowercase letters, digits, '_' and '-' "
                "(it is the section's anchor)"
            )
        if self.key in _RESERVED_IDS:
            raise InvalidArgument(f"key={self.key!r} is the report's own anchor; choose another")
        if self.status not in STATUSES:
            raise InvalidArgument(f"status={self.status!r} is invalid; use one of {STATUSES}")
        for name in ("title", "summary", "how_to_read", "error"):
            if not isinstance(getattr(self, name), str):
                raise InvalidArgument(f"{name} must be a str, not {type(getattr(self, name))}")
        if self.status == "failed" and not (self.summary.strip() or self.error.strip()):
            raise InvalidArgument("a failed section must say what failed (summary or error)")
        figures = _pairs(self.figures, "figures", 2)
        for caption, fig in figures:
            if not hasattr(fig, "savefig"):
                raise InvalidArgument(
                    f"figure {caption!r:.60} is a {type(fig).__name__}, not a matplotlib Figure"
                )
        tables = _pairs(self.tables, "tables", 2)
        for caption, df in tables:
            if not isinstance(df, (pd.DataFrame, pd.Series)):
                raise InvalidArgument(
                    f"table {caption!r:.60} is a {type(df).__name__}, not a pandas DataFrame"
                )
        object.__setattr__(self, "figures", figures)
        object.__setattr__(self, "tables", tables)

    @classmethod
    def failed(cls, key: str, title: str, exc: BaseException, *, how_to_read: str = ""):
        """A "failed" section for a part that raised `exc`: its message and traceback shown.

        Examples:
            >>> try:
            ...     raise ValueError("max_steps reached at h=0.1")
            ... except ValueError as e:
            ...     sec = Section.failed("stability", "Stability", e)
            >>> sec.status, sec.summary
            ('failed', 'This part raised ValueError: max_steps reached at h=0.1')
        """
        error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(
            key,
            title,
            f"This part raised {type(exc).__name__}: {exc}",
            how_to_read=how_to_read,
            status="failed",
            error=error,
        )


def _png(fig) -> tuple[bytes, int, int]:
    """The figure as PNG bytes (no timestamp) and its width, height in pixels; closes it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(
            buf,
            format="png",
            dpi=DPI,
            bbox_inches="tight",
            pad_inches=0.05,
            facecolor="white",
            metadata={"Software": None},
        )
    finally:
        plt.close(fig)
    data = buf.getvalue()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return data, width, height


def _figure(caption: str, fig) -> str:
    data, width, height = _png(fig)
    # shown at 1.5 × the size in inches (96 CSS px per inch): paper-size figures, small fonts
    scale = 1.5 * 96 / DPI
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="{src}" alt="{_esc(caption)}" width="{round(width * scale)}" '
        f'height="{round(height * scale)}">\n<figcaption>{_esc(caption)}</figcaption></figure>'
    )


def _cell(value) -> str:
    """A table cell's text: 4 significant digits, complex as a+bj, missing values as "—"."""
    if value is None or value is pd.NA or value is pd.NaT:
        return _MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        re_, im = float(value.real) + 0.0, float(value.imag) + 0.0  # + 0.0: no "-0"
        if math.isnan(re_) and math.isnan(im):
            return _MISSING
        return f"{re_:.4g}{im:+.4g}j"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        return _MISSING if math.isnan(x) else f"{x + 0.0:.4g}"
    if isinstance(value, float) and math.isnan(value):
        return _MISSING
    return str(value)


def _left_align(table: str, columns: list[int]) -> str:
    """Mark the data cells of the given columns (0-based) as text, which is aligned left
    (numbers are aligned right). Cell contents are escaped, so ``<td>`` occurs only as a tag."""
    if not columns:
        return table

    def row(match):
        cells = itertools.count()
        return re.sub(
            r"<td>",
            lambda _: '<td class="text">' if next(cells) in columns else "<td>",
            match.group(0),
        )

    return re.sub(r"<tr>.*?</tr>", row, table, flags=re.S)


def _table(caption: str, df, max_rows: int, note: str) -> str:
    if isinstance(df, pd.Series):
        df = df.to_frame()
    n = len(df)
    shown = df.iloc[:max_rows]
    keep_index = not (
        isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
    )
    if n == 0 or len(df.columns) == 0:  # a header and one row saying so: every table has a row
        what = "no rows" if n == 0 else "no columns"
        body = f'<tr><td colspan="{max(len(df.columns), 1)}">{_MISSING} ({what})</td></tr>'
        head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns) or "<th></th>"
        table = f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    else:
        text = shown.astype(object).map(_cell)
        text.columns = [str(c) for c in df.columns]
        if keep_index:
            text.index = [_cell(i) for i in shown.index]
        table = text.to_html(
            index=keep_index, escape=True, border=0, classes="data", justify="left"
        )
        table = table.replace(' class="dataframe data"', ' class="data"')
        text_columns = [
            i for i, (_, col) in enumerate(df.items()) if not pd.api.types.is_numeric_dtype(col)
        ]
        table = _left_align(table, text_columns)
    cut = (
        f'\n<p class="note">First {max_rows} of {n} rows; {_esc(note)}.</p>' if n > max_rows else ""
    )
    return (
        f'<p class="caption"><strong>{_esc(caption)}</strong></p>\n'
        f'<div class="table-wrap">\n{table}\n</div>{cut}'
    )


def _verdict(rows) -> str:
    head = "<tr><th>Question</th><th>Answer</th><th>Evidence</th></tr>"
    body = "\n".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return (
        '<section id="verdict">\n<h2>Verdict</h2>\n<div class="table-wrap">\n'
        f'<table class="verdict"><thead>{head}</thead>\n<tbody>\n{body}\n</tbody></table>\n'
        "</div>\n</section>"
    )


def _value(value) -> str:
    """A provenance value: a dict as a nested list, a list joined, anything else as text."""
    if isinstance(value, Mapping):
        return _definitions(value)
    if isinstance(value, (list, tuple)):
        return _esc(", ".join(str(v) for v in value)) if value else _MISSING
    return _MISSING if value is None else _esc(value)


def _definitions(mapping: Mapping) -> str:
    items = "\n".join(f"<dt>{_esc(k)}</dt><dd>{_value(v)}</dd>" for k, v in mapping.items())
    return f"<dl>\n{items}\n</dl>"


def _status_badge(status: str) -> str:
    return f'<span class="status status-{status}">{status}</span>'


def _section(sec: Section, max_rows: int, note: str) -> str:
    parts = [
        f'<section id="{sec.key}" class="{sec.status}">',
        f"<h2>{_esc(sec.title)}{_status_badge(sec.status)}</h2>",
        _paragraphs(sec.summary),
    ]
    if sec.error:
        parts.append(f'<pre class="error">{_esc(sec.error.rstrip())}</pre>')
    if sec.how_to_read.strip():
        parts.append(
            f'<div class="how"><p><strong>How to read this.</strong></p>\n'
            f"{_paragraphs(sec.how_to_read)}</div>"
        )
    parts += [_figure(caption, fig) for caption, fig in sec.figures]
    parts += [_table(caption, df, max_rows, note) for caption, df in sec.tables]
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def render(
    title: str,
    sections: Iterable[Section],
    *,
    verdict: Iterable = (),
    provenance: Mapping | None = None,
    command: str | None = None,
    max_rows: int = MAX_ROWS,
    full_table_note: str = FULL_TABLE_NOTE,
) -> str:
    """The report as one self-contained HTML page (see the module docstring).

    Figures of every section are rendered to PNG and closed (`matplotlib.pyplot.close`).

    Args:
        title: the page's title and top heading.
        sections: the `Section` objects, in order.
        verdict: ``(question, answer, evidence)`` triples, shown first as a table.
        provenance: shown as a definition list (package versions, config, ...; nested dicts
            nest), or None.
        command: the command that reproduces the report, shown as is, or None.
        max_rows: rows shown of each table; a longer one is cut with a note.
        full_table_note: where the note on a cut table says the full table is.

    Returns:
        The page, as text (write it with `write`).

    Raises:
        InvalidArgument: a section is not a `Section`, two share a key, or a verdict row is
            not a triple.

    Examples:
        >>> page = render("demo", [Section("a", "A", "one\\n\\ntwo")])
        >>> page.startswith("<!DOCTYPE html>"), page.count("<p>"), "<script" in page
        (True, 2, False)
    """
    sections = list(sections)
    for i, sec in enumerate(sections):
        if not isinstance(sec, Section):
            raise InvalidArgument(f"sections[{i}] is a {type(sec).__name__}, not a Section")
    keys = [sec.key for sec in sections]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise InvalidArgument(f"section keys {repeated} are used twice; each key is an anchor")
    verdict = _pairs(verdict, "verdict", 3)
    if int(max_rows) != max_rows or max_rows < 1:
        raise InvalidArgument(f"max_rows={max_rows!r} is invalid; it must be an integer ≥ 1")
    toc = [f'<li><a href="#{s.key}">{_esc(s.title)}</a>' for s in sections]
    toc = [
        f"{entry}{'' if s.status == 'ok' else ' ' + _status_badge(s.status)}</li>"
        for entry, s in zip(toc, sections, strict=True)
    ]
    if verdict:
        toc.insert(0, '<li><a href="#verdict">Verdict</a></li>')
    if provenance is not None or command is not None:
        toc.append('<li><a href="#provenance">Provenance</a></li>')
    body = [f"<h1>{_esc(title)}</h1>"]
    if verdict:
        body.append(_verdict(verdict))
    body.append(
        '<nav id="contents">\n<h2>Contents</h2>\n<ol>\n' + "\n".join(toc) + "\n</ol>\n</nav>"
    )
    body += [_section(sec, int(max_rows), full_table_note) for sec in sections]
    if provenance is not None or command is not None:
        prov = ['<section id="provenance">', "<h2>Provenance</h2>"]
        if command is not None:
            prov.append('<h3 id="reproduce">Reproduce</h3>')
            prov.append(f"<pre><code>{_esc(command)}</code></pre>")
        if provenance:
            prov.append(_definitions(provenance))
        prov.append("</section>")
        body.append("\n".join(prov))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write(path, html: str) -> Path:
    """Write a rendered report to `path` (UTF-8), atomically; returns the path.

    Readers see the old file or the whole new one (`analysis.run_store.atomic_write_bytes`);
    missing folders are created.

    Examples:
        >>> write("reports/demo.html", render("demo", [])).name
        'demo.html'
    """
    if not isinstance(html, str):
        raise InvalidArgument(f"html is a {type(html).__name__}; give the text `render` returns")
    path = Path(path)
    atomic_write_bytes(path, html.encode("utf-8"))
    return path
