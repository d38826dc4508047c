"""The HTML report (`analysis.report`): one self-contained, escaped, deterministic page.

Every report rendered here goes through `helpers.check_report_html` (embedded PNGs that decode,
tables with rows, contents links that resolve, no script, nothing fetched over the network); a
real browser (chromium, headless) draws it when one is installed."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from helpers import NEEDS_BROWSER, browser_ink, check_report_html

from analysis import report
from analysis.errors import InvalidArgument

EVIL = "<script>alert(1)</script>"


def _figure(title="error against h"):
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    h = np.logspace(-3, -1, 6)
    ax.loglog(h, h**2, "o-", label="Heun")
    ax.loglog(h, h, "s-", label=EVIL)
    ax.set_title(title)
    ax.legend()
    return fig


def _sections():
    fits = pd.DataFrame(
        {
            "solver": ["Euler", EVIL, "Heun"],
            "order": [1.000123456, np.nan, 2.00049],
            "eigenvalue": [1 + 2j, complex(np.nan, np.nan), -0.5j],
            "n": [8, 16, 32],
        }
    )
    rows = pd.DataFrame({"h": np.logspace(-4, -1, 200), "error": np.logspace(-8, -2, 200)})
    convergence = report.Section(
        "convergence",
        f"Convergence of {EVIL}",
        f"Observed order 2.00 for Heun.\n\nThe model {EVIL} converges to the modified field.",
        how_to_read="Each line is a solver.\n\nLower is better.",
        figures=[(f"Error against h for {EVIL}", _figure())],
        tables=[("Fitted orders", fits), ("Every solve", rows)],
    )
    try:
        raise RuntimeError(f"max_steps reached at h=0.1 for {EVIL}")
    except RuntimeError as e:
        stability = report.Section.failed("stability", "Stability", e)
    return [convergence, stability]


def _render(**kwargs):
    return report.render(
        f"Diagnosis of {EVIL}",
        _sections(),
        verdict=[("Does it converge?", "yes, to the modified field", f"order 2.00 ({EVIL})")],
        provenance={"study": EVIL, "versions": {"jax": "0.4.38", "diffrax": "0.7.0"}, "x64": True},
        command=f"python -m analysis.diagnose '{EVIL}'",
        **kwargs,
    )


@pytest.fixture(scope="module")
def page():
    return _render()


def _table_after(html: str, caption: str) -> str:
    start = html.index(f"<strong>{caption}</strong>")
    return html[start : html.index("</table>", start)]


def test_the_page_is_self_contained_and_well_formed(page):
    parsed = check_report_html(page)
    assert len(parsed.images) == 1
    assert len(parsed.tables) == 3  # the verdict, the fitted orders, the solves
    for anchor in ("verdict", "contents", "convergence", "stability", "provenance"):
        assert anchor in parsed.ids
    for key in ("#verdict", "#convergence", "#stability", "#provenance"):
        assert key in parsed.hrefs  # the table of contents links every part
    assert not [h for h in parsed.hrefs if not h.startswith("#")]
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def test_every_text_is_escaped(page):
    assert EVIL not in page
    assert "<script" not in page.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # title, heading, summary, caption (figcaption and alt), table cell, error, verdict, provenance,
    # command: each shows the name as text
    assert page.count(escaped) >= 10


def test_tables_are_formatted_and_long_ones_cut(page):
    fits = _table_after(page, "Fitted orders")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", fits)
    assert cells == [
        *("Euler", "1", "1+2j", "8"),
        *("&lt;script&gt;alert(1)&lt;/script&gt;", "—", "—", "16"),
        *("Heun", "2", "0-0.5j", "32"),
    ]
    solves = _table_after(page, "Every solve")
    assert solves.count("<tr>") == 50  # the first 50 rows (the header row has a style)
    assert "First 50 of 200 rows; the full table is in the parquet files." in page
    assert "<td>0.0001</td><td>1e-08</td>" in solves.replace("\n", "").replace(" ", "")


def test_an_empty_table_still_has_a_row():
    sec = report.Section("t", "T", "s", tables=[("none", pd.DataFrame({"a": []}))])
    html = report.render("empty", [sec])
    assert "(no rows)" in html
    check_report_html(html)


def test_the_same_inputs_give_the_same_page(page):
    assert _render() == page  # no timestamp, figures rendered without metadata dates


def test_figures_are_closed_after_rendering():
    fig = _figure()
    report.render("r", [report.Section("a", "A", "s", figures=[("c", fig)])])
    assert not plt.fignum_exists(fig.number)


def test_a_failed_section_shows_its_error(page):
    start = page.index('<section id="stability" class="failed">')
    stability = page[start : page.index("</section>", start)]
    assert "FAILED".lower() in stability and "This part raised RuntimeError" in stability
    assert '<pre class="error">Traceback (most recent call last):' in stability
    assert "max_steps reached at h=0.1" in stability
    contents = page[page.index('<nav id="contents">') : page.index("</nav>")]
    assert "status-failed" in contents  # the table of contents shows it too


def test_provenance_and_command(page):
    prov = page[page.index('<section id="provenance">') :]
    assert "<dt>versions</dt><dd><dl>" in prov and "<dt>jax</dt><dd>0.4.38</dd>" in prov
    assert "<pre><code>python -m analysis.diagnose &#x27;&lt;script&gt;" in prov


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(key="Bad Key"), "key='Bad Key' is invalid"),
        (dict(key="verdict"), "the report's own anchor"),
        (dict(status="error"), "status='error' is invalid"),
        (dict(figures=[("c", "not a figure")]), "not a matplotlib Figure"),
        (dict(tables=[("c", [[1, 2]])]), "not a pandas DataFrame"),
        (dict(tables=["c"]), "must be a 2-tuple"),
        (dict(summary=None), "summary must be a str"),
        (dict(status="failed", summary=" "), "must say what failed"),
    ],
)
def test_bad_sections_are_refused(kwargs, message):
    args = dict(key="a", title="A", summary="s") | kwargs
    with pytest.raises(InvalidArgument, match=message):
        report.Section(**args)


def test_bad_reports_are_refused():
    a = report.Section("a", "A", "s")
    with pytest.raises(InvalidArgument, match="used twice"):
        report.render("r", [a, a])
    with pytest.raises(InvalidArgument, match="not a Section"):
        report.render("r", ["a"])
    with pytest.raises(InvalidArgument, match="3-tuple"):
        report.render("r", [a], verdict=[("question", "answer")])
    with pytest.raises(InvalidArgument, match="give the text"):
        report.write("r.html", b"<html>")


def test_write_is_atomic_and_returns_the_path(tmp_path, page):
    path = report.write(tmp_path / "sub" / "report.html", page)
    assert path == tmp_path / "sub" / "report.html"
    assert path.read_text(encoding="utf-8") == page
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left


@NEEDS_BROWSER
def test_a_browser_draws_the_page(tmp_path, page):
    path = report.write(tmp_path / "report.html", page)
    ink = browser_ink(path, tmp_path, height=2000)
    assert 0.01 < ink < 0.6, f"{ink:.3f} of the screenshot is drawn"
