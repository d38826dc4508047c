"""The house style: one style file, paper sizes, a fixed colour/marker per solver and controller.

`paper_style()` applies `stepdep.mplstyle` (shipped in this package): 8 pt DejaVu Sans,
constrained layout, light grid, 300 dpi PNG, TrueType fonts in PDFs. Figures are sized
`COLUMN_WIDTH` (single column) or `DOUBLE_WIDTH` (double column) wide. `solver_style(name)` gives
each solver and controller one colour and marker for every figure; `log_axis` labels a log axis
with its unit; `colorbar` refuses to draw an unlabelled colour bar; `slope_triangle` draws
reference-slope triangles that stack instead of overlapping; `render` gives deterministic PDF/PNG
bytes (no timestamps), so an unchanged figure leaves no diff.

Examples:
    >>> import matplotlib.pyplot as plt
    >>> from analysis.plotting import COLUMN_WIDTH, paper_style, render
    >>> from analysis.plotting import slope_triangle, solver_style
    >>> with paper_style():
    ...     fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
    ...     lines = ax.loglog([0.1, 0.01], [1e-2, 1e-4], **solver_style("Heun"))
    ...     slope_triangle(ax, 0.02, 1e-3, 2)
    >>> png = render(fig, "png")
"""

from __future__ import annotations

import contextlib
import io
import logging
import weakref
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from .. import controller as _controller
from .. import solvers as _solvers
from ..errors import InvalidArgument

# The backend is the user's (a notebook's inline one, say): nothing here switches it. The study
# runner and the tests choose Agg (MPLBACKEND) before matplotlib is imported.
# Some fonts matplotlib ships carry a zero creation date in their "head" table; fontTools logs
# "timestamp seems very low" when subsetting them into a PDF. Harmless, so not shown.
logging.getLogger("fontTools.ttLib.tables._h_e_a_d").setLevel(logging.ERROR)

#: The style file every figure uses.
STYLE_FILE = Path(__file__).with_name("stepdep.mplstyle")

#: Figure widths in inches for a single-column and a double-column paper figure.
COLUMN_WIDTH = 3.4
DOUBLE_WIDTH = 7.0

_PALETTE = plt.get_cmap("tab20").colors
_MARKERS = "os^vDP*Xph<>d8H"
# Every name with a style of its own, in a fixed order: the registered solvers, then fixed steps
# and the controller presets (a solver or preset added to its registry gets its style here).
_STYLED = (*_solvers.NAMES, _controller.FIXED, *_controller.PRESETS)
_PDF_METADATA = {"CreationDate": None, "ModDate": None, "Producer": None}
_PNG_METADATA = {"Software": None}


@contextlib.contextmanager
def paper_style():
    """Context manager applying the house style file (rcParams restored afterwards).

    Examples:
        >>> import matplotlib.pyplot as plt
        >>> from analysis.plotting import COLUMN_WIDTH, paper_style
        >>> with paper_style():
        ...     fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
        ...     print(plt.rcParams["font.size"], plt.rcParams["font.family"])
        8.0 ['sans-serif']
    """
    with plt.style.context(STYLE_FILE):
        yield


def solver_style(name: str) -> dict:
    """Fixed colour and marker for a solver or controller name, the same in every figure.

    Registered solvers and controller presets each get a distinct (colour, marker) pair; any
    other name gets a pair derived from its characters, so it is stable across runs.

    Args:
        name: a solver name, a controller preset name, or any label.

    Returns:
        A dict with keys color and marker, to pass to matplotlib as ``**solver_style(name)``.

    Examples:
        >>> from analysis.plotting import solver_style
        >>> solver_style("Euler")["marker"], solver_style("Heun")["marker"]
        ('o', 's')
        >>> solver_style("my_model") == solver_style("my_model")    # any label, stable
        True
    """
    i = _STYLED.index(name) if name in _STYLED else len(_STYLED) + sum(map(ord, name))
    return {
        "color": _PALETTE[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20],
        "marker": _MARKERS[i % len(_MARKERS)],
    }


class _SparseLogLabels(matplotlib.ticker.LogFormatterSciNotation):
    """matplotlib's log tick labels, but on an axis spanning a decade or less the ticks between
    powers of ten are labelled only at 2 and 5 × 10^k: matplotlib's default (2, 3, 4, 6 × 10^k,
    or every tick) prints labels like "3×10⁻²" that collide at paper sizes."""

    def set_locs(self, locs=None):
        super().set_locs(locs)
        if self._sublabels != {1}:
            self._sublabels = {1, 2, 5}


def log_axis(ax, which: str, label: str, unit: str | None = None) -> None:
    """Make `ax`'s `which` ("x" or "y") axis logarithmic, labelled "label (unit)".

    On an axis spanning a decade or less, only 1, 2 and 5 × 10^k are labelled, so labels
    never collide.

    Args:
        ax: a matplotlib Axes.
        which: "x" or "y".
        label: the axis label.
        unit: appended in parentheses when given.

    Examples:
        >>> import matplotlib.pyplot as plt
        >>> from analysis.plotting import log_axis
        >>> fig, ax = plt.subplots()
        >>> log_axis(ax, "x", "step size h", "time units")
        >>> ax.get_xscale(), ax.get_xlabel()
        ('log', 'step size h (time units)')
    """
    if which not in ("x", "y"):
        raise InvalidArgument(f"which={which!r} is invalid; use 'x' or 'y'")
    text = f"{label} ({unit})" if unit else label
    getattr(ax, f"set_{which}scale")("log")
    getattr(ax, f"{which}axis").set_minor_formatter(_SparseLogLabels(labelOnlyBase=False))
    getattr(ax, f"set_{which}label")(text)


def single_axes(ax, height: float = 2.6):
    """(figure, Axes) for a one-panel plot: a new single-column figure of `height` inches when
    ax is None, else the given Axes and its figure.

    Examples:
        >>> fig, ax = single_axes(None)
        >>> fig.get_size_inches().round(2).tolist(), single_axes(ax)[1] is ax
        ([3.4, 2.6], True)
    """
    if ax is None:
        return plt.subplots(figsize=(COLUMN_WIDTH, height))
    return ax.figure, ax


def panel_grid(axes, shape: tuple[int, int], what: str, **subplots):
    """(figure, Axes as an array of `shape`) for a plot of several panels: a new figure,
    ``plt.subplots(*shape, **subplots)`` with a constrained layout, when axes is None; else the
    given Axes reshaped, which must be exactly shape[0]·shape[1] of them.

    Examples:
        >>> fig, grid = panel_grid(None, (1, 2), "demo")
        >>> grid.shape, panel_grid(list(grid.ravel()), (2, 1), "demo")[1].shape
        ((1, 2), (2, 1))
        >>> panel_grid(grid[0, :1], (1, 2), "demo")
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: axes has 1 Axes; demo draws 1 × 2 = 2 panels, ...
    """
    if axes is None:
        return plt.subplots(*shape, squeeze=False, constrained_layout=True, **subplots)
    grid = np.asarray(axes, dtype=object).reshape(-1)
    if grid.size != shape[0] * shape[1]:
        raise InvalidArgument(
            f"axes has {grid.size} Axes; {what} draws {shape[0]} × {shape[1]} = "
            f"{shape[0] * shape[1]} panels, give that many (or axes=None)"
        )
    return grid[0].figure, grid.reshape(shape)


def colorbar(mappable, ax, label: str, **kwargs):
    """A colour bar for `mappable` beside `ax`, always labelled (say what the colour measures).

    Args:
        mappable: what the colours come from (e.g. the result of ``ax.imshow``).
        ax: the Axes to put the bar beside.
        label: what the colour measures (required; an empty label is an InvalidArgument).
        **kwargs: passed to ``Figure.colorbar``.

    Returns:
        The matplotlib Colorbar.

    Examples:
        >>> import matplotlib.pyplot as plt
        >>> from analysis.plotting import colorbar
        >>> fig, ax = plt.subplots()
        >>> image = ax.imshow(np.arange(6.0).reshape(2, 3))
        >>> colorbar(image, ax, "log10 error").ax.get_ylabel()
        'log10 error'
        >>> colorbar(image, ax, "")
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: label is required: ...
    """
    if not label or not str(label).strip():
        raise InvalidArgument("label is required: a colour bar must say what its colour measures")
    cbar = ax.figure.colorbar(mappable, ax=ax, **kwargs)
    cbar.set_label(label)
    return cbar


# Triangles already drawn on each axes, as boxes (x0, x1, y0, y1) in decades, so later ones can
# move out of their way.
_TRIANGLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GAP = 0.15  # decades between stacked triangles


def _overlaps(box, other) -> bool:
    return box[0] < other[1] and other[0] < box[1] and box[2] < other[3] and other[2] < box[3]


def _data_points(ax) -> np.ndarray:
    """Points (in decades) along every data line of `ax`, densely enough to hit a small box."""
    pts = []
    for line in ax.get_lines():
        if line.get_gid() == "slope_triangle":
            continue
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
        if keep.sum() == 0:
            continue
        lx, ly = np.log10(x[keep]), np.log10(y[keep])
        s = np.linspace(0, 1, 16)[:, None]
        seg = np.stack([lx[:-1] + s * np.diff(lx), ly[:-1] + s * np.diff(ly)], -1).reshape(-1, 2)
        pts.append(np.concatenate([seg, np.stack([lx, ly], -1)]))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def slope_triangle(ax, x, y, order: float, *, size: float = 0.25, below: bool = True):
    """Draw a reference triangle of slope `order` on a log-log axis, anchored at (x, y).

    The hypotenuse rises `order` decades per decade of x; `size` is the triangle's width in
    decades. If the triangle (with its label) would overlap a triangle already drawn on `ax`, it
    moves down until it is clear, so triangles anchored at the same point stack; it also moves
    down until no data line of `ax` crosses it (below the lines if need be), so draw the data
    first.

    Args:
        ax: a log-log Axes.
        x: the anchor's x (data coordinates): the triangle's left corner.
        y: the anchor's y.
        order: the slope, written beside the triangle.
        size: the width in decades of x.
        below: the right angle below the hypotenuse (True) or above it.

    Examples:
        >>> import matplotlib.pyplot as plt
        >>> from analysis.plotting import slope_triangle
        >>> fig, ax = plt.subplots()
        >>> h = np.array([0.1, 0.05, 0.025])
        >>> lines = ax.loglog(h, h**2, "o-")
        >>> slope_triangle(ax, 0.03, 1e-3, 2)
        >>> slope_triangle(ax, 0.03, 1e-3, 1)                 # same anchor: stacks below
        >>> [text.get_text() for text in ax.texts]
        ['2', '1']
    """
    lx, ly = np.log10(x), np.log10(y)
    height = size * abs(order)
    label_room = 0.35 * size
    placed = _TRIANGLES.setdefault(ax, [])

    def box(at):
        x1 = lx + size + (label_room if below else 0.0)
        return (lx, x1, at, at + height + (0.0 if below else 0.25 * size))

    def clear_of_triangles(at):
        hits = [b for b in placed if _overlaps(box(at), b)]
        return at if not hits else clear_of_triangles(min(b[2] for b in hits) - _GAP - height)

    # Then step down until the box (with a margin) holds no data point either; below every
    # point in its x-range it is always clear, so the search ends.
    margin, at = 0.1, clear_of_triangles(ly)
    pts = _data_points(ax)
    near = pts[(pts[:, 0] >= box(at)[0]) & (pts[:, 0] <= box(at)[1]), 1]
    while len(near) and at > near.min() - height - 2 * margin:
        b = box(at)
        if not ((near > b[2] - margin) & (near < b[3] + margin)).any():
            if clear_of_triangles(at) == at:
                break
        at -= 0.05
    at = clear_of_triangles(at)
    placed.append(box(at))

    x0, y0 = x, 10**at
    x2, y2 = x0 * 10**size, y0 * 10**height
    corner = (x2, y0) if below else (x0, y2)
    ax.plot(
        [x0, x2, corner[0], x0],
        [y0, y2, corner[1], y0],
        color="0.4",
        lw=0.8,
        marker="none",
        zorder=1,
        gid="slope_triangle",
    )
    label = f"{order:g}"
    if below:
        ax.text(x2 * 1.05, y0 * 10 ** (height / 2), label, fontsize=6, color="0.3", va="center")
    else:
        ax.text(np.sqrt(x0 * x2), y2 * 1.15, label, fontsize=6, color="0.3", ha="center")


def _tidy_log_ticks(fig) -> None:
    """Give every log axis of `fig` the sparse minor labels of `log_axis` (for axes made log by
    ``loglog`` or ``set_xscale`` rather than `log_axis`)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_minor_formatter(_SparseLogLabels(labelOnlyBase=False))


def render(fig, fmt: str) -> bytes:
    """The figure as PDF (vector) or PNG (300 dpi) bytes, with no timestamps in the metadata.

    A figure built the same way renders to the same bytes every time, in every run, so
    regenerated files leave no diff. (Rendering one Figure object a second time can shift its
    layout slightly: the tight bounding box re-runs the layout on the already-drawn figure.)

    Args:
        fig: a matplotlib Figure.
        fmt: "pdf" or "png".

    Returns:
        The file's bytes (write them with ``Path(...).write_bytes``).

    Examples:
        >>> import matplotlib.pyplot as plt
        >>> from analysis.plotting import render
        >>> def line_figure():
        ...     fig, ax = plt.subplots(figsize=(2, 1.5))
        ...     ax.plot([0, 1], [0, 1])
        ...     return fig
        >>> pdf = render(line_figure(), "pdf")
        >>> pdf[:5], render(line_figure(), "pdf") == pdf    # the same figure, the same bytes
        (b'%PDF-', True)
    """
    if fmt not in ("pdf", "png"):
        raise InvalidArgument(f"fmt={fmt!r} is invalid; use 'pdf' or 'png'")
    _tidy_log_ticks(fig)
    buf = io.BytesIO()
    with paper_style():
        fig.savefig(
            buf,
            format=fmt,
            dpi=300,
            bbox_inches="tight",
            pad_inches=0.02,
            metadata=_PDF_METADATA if fmt == "pdf" else _PNG_METADATA,
        )
    return buf.getvalue()


def close(fig) -> None:
    """Release a figure's memory (pyplot keeps every figure it made until closed).

    Examples:
        >>> import matplotlib.pyplot as plt
        >>> from analysis.plotting import close
        >>> fig, ax = plt.subplots()
        >>> close(fig)
        >>> plt.fignum_exists(fig.number)
        False
    """
    plt.close(fig)
