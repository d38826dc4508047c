"""The house style: sizes, fonts, and one fixed colour/marker per solver and controller."""

from __future__ import annotations

import contextlib

import matplotlib

matplotlib.use("Agg")  # figures are files here; no display is assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import solvers as _solvers  # noqa: E402

#: Figure widths in inches for a single-column and a double-column paper figure.
COLUMN_WIDTH = 3.4
DOUBLE_WIDTH = 7.0

_RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
    "svg.hashsalt": "stepdep",
    "path.simplify": False,
}

_PALETTE = plt.get_cmap("tab20").colors
_MARKERS = "os^vDP*Xph<>d8H"
_CONTROLLERS = (
    "fixed",
    "I",
    "PI42",
    "PI33",
    "PI34",
    "H211PI",
    "H312PID",
    "H211b",
    "H312b",
    "H0321",
    "H321",
)


@contextlib.contextmanager
def paper_style():
    """Context manager applying the house rcParams (restored afterwards)."""
    with plt.rc_context(_RC):
        yield


def solver_style(name: str) -> dict:
    """Fixed colour and marker for a solver or controller name, the same in every figure."""
    keys = list(_solvers.NAMES) + list(_CONTROLLERS)
    i = keys.index(name) if name in keys else len(keys) + sum(map(ord, name))
    return {
        "color": _PALETTE[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20],
        "marker": _MARKERS[i % len(_MARKERS)],
    }


def slope_triangle(ax, x, y, order: float, *, size: float = 0.25, below: bool = True):
    """Draw a reference triangle of slope `order` on a log-log axis, anchored at (x, y).

    `size` is the triangle's width in decades of x.
    """
    x2 = x * 10**size
    y2 = y * 10 ** (size * order)
    corner = (x2, y) if below else (x, y2)
    ax.plot(
        [x, x2, corner[0], x], [y, y2, corner[1], y], color="0.4", lw=0.8, marker="none", zorder=1
    )
    tx = np.sqrt(x * x2)
    ty = y * 10 ** (size * order / 2)
    label_at = (x2 * 1.05, ty) if below else (tx, y2 * 1.15)
    ax.text(
        *label_at,
        f"{order:g}",
        fontsize=6,
        color="0.3",
        ha="left" if below else "center",
        va="center" if below else "bottom",
    )
