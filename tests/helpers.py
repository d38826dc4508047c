"""Shared registries and small utilities for the tests."""

import base64
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import diffrax
import jax
import pytest

from analysis import solvers, systems
from analysis.convergence import log_slope

#: The checkout under test (the folder holding analysis/, studies/, tests/).
ROOT = Path(__file__).resolve().parent.parent

#: Every solver the foundation supports, by registry name.
ALL_SOLVERS = solvers.NAMES
ADAPTIVE_SOLVERS = tuple(n for n in ALL_SOLVERS if solvers.info(n).adaptive)
EXPLICIT_RK = solvers.EXPLICIT_RK
ALL_SYSTEMS = tuple(systems.names())


def checkout_env(base=None, **extra) -> dict:
    """The environment for a child Python process (`base`, default this one's, plus `extra`)
    with this checkout first on PYTHONPATH, so the child runs the code under test and not an
    installed copy of the package."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def fit_slope(h, err):
    """Least-squares slope of log(err) against log(h) (never assumes the steps halve)."""
    return log_slope(h, err).slope


class EvaluationLog:
    """Records, through jax.debug.callback, the h of every evaluation of a step-dependent field."""

    def __init__(self, field):
        self.hs = []
        self._field = field

    def field(self, t, y, args, h):
        jax.debug.callback(lambda hh: self.hs.append(float(hh)), h, ordered=True)
        return self._field(t, y, args, h)


def fixed_solver(name):
    """A solver by name, ready for constant steps (implicit ones get root-finder tolerances)."""
    return solvers.for_fixed_steps(solvers.get(name))


__all__ = [
    "ALL_SOLVERS",
    "ADAPTIVE_SOLVERS",
    "EXPLICIT_RK",
    "ALL_SYSTEMS",
    "fit_slope",
    "EvaluationLog",
    "fixed_solver",
    "check_report_html",
    "browser_ink",
    "NEEDS_BROWSER",
    "diffrax",
]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _ReportParser(HTMLParser):
    """Collects what `check_report_html` checks: tags, ids, links, images, table rows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.ids, self.hrefs, self.srcs, self.images = [], [], [], [], []
        self.tables = []  # body rows (<tr> in <tbody>) per <table>
        self._open_tables = []
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if "href" in attrs:
            self.hrefs.append(attrs["href"] or "")
        if "src" in attrs:
            self.srcs.append(attrs["src"] or "")
        if tag == "img":
            self.images.append(attrs)
        if tag == "table":
            self._open_tables.append(0)
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._open_tables and self._in_body:
            self._open_tables[-1] += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        if tag == "table" and self._open_tables:
            self.tables.append(self._open_tables.pop())


def check_report_html(html: str) -> _ReportParser:
    """Check a self-contained HTML report (`analysis.report.render`) and return its parse.

    Every <img> holds an alt text and a non-empty base64 PNG that decodes to a non-empty image,
    every <table> has a body row, every in-page link (``#id``) names an id of the page, ids are
    unique, there is no <script> tag and nothing is loaded or linked over http(s) (nor any
    other src than a data: URL).
    """
    import matplotlib.image

    page = _ReportParser()
    page.feed(html)
    page.close()
    assert "script" not in page.tags, "a <script> tag in the report"
    assert not any(t in page.tags for t in ("link", "iframe", "object", "embed")), page.tags
    lowered = html.lower()
    assert "@import" not in lowered and "url(http" not in lowered, "the style loads something"
    assert len(page.ids) == len(set(page.ids)), f"repeated ids: {sorted(page.ids)}"
    for src in page.srcs:
        assert src.startswith("data:"), f"src={src[:80]!r} is not embedded"
    for href in page.hrefs:
        assert not href.lower().startswith(("http:", "https:", "//")), f"external link {href}"
        if href.startswith("#"):
            assert href[1:] in page.ids, f"link {href} names no id of the page"
    for img in page.images:
        assert img.get("alt"), f"an <img> without alt text: {str(img)[:80]}"
        src = img.get("src") or ""
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), f"<img> src is not a base64 PNG: {src[:40]!r}"
        data = base64.b64decode(src[len(prefix) :], validate=True)
        assert data.startswith(PNG_SIGNATURE), "<img> data is not a PNG"
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 0 and pixels.shape[1] > 0
    assert all(rows >= 1 for rows in page.tables), f"a <table> without rows: {page.tables}"
    return page


#: Skips a test when no browser engine is installed (CI machines may lack one).
NEEDS_BROWSER = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not installed (apt-get install chromium), so no browser draws the page",
)


def browser_ink(path, folder, *, height: int) -> float:
    """Draw the page at `path` in headless chromium (1200 px wide, `height` tall) and return
    the fraction of the screenshot that is not (near) white."""
    shot = Path(folder) / "shot.png"
    out = subprocess.run(
        [
            shutil.which("chromium"),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={Path(folder) / 'profile'}",
            f"--screenshot={shot}",
            f"--window-size=1200,{height}",
            Path(path).resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    assert shot.exists(), out.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (height, 1200)
    return float((pixels[..., :3] < 0.9).any(axis=-1).mean())
