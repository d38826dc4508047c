"""Invariant drift against step size: `analysis.invariants.drift` drawn, one line per
(solver, invariant), the stored fitted order in the legend."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..result import require_columns
from ._style import log_axis, paper_style, single_axes, solver_style

_ROWS = ("solver", "invariant", "h", "drift", "status")
_FITS = ("solver", "invariant", "order", "status")


def _order_text(fit) -> str:
    if not np.isfinite(fit["order"]):
        return fit["status"]
    text = f"order {fit['order']:.2f}"
    return text if fit["status"] == "ok" else f"{text}, {fit['status']}"


def invariant_drift(result, *, ax=None, title: str | None = None) -> plt.Figure:
    """Log-log drift max_n |I(y_n) - I(y_0)| against h: a line per (solver, invariant).

    Only rows with status "ok" and a positive drift are drawn; the legend gives each line's
    order as fitted by `analysis.invariants.drift` (its status where that is not "ok"). A
    second invariant of the same solver is drawn dashed.

    Args:
        result: what `analysis.invariants.drift` returns (an `InvariantDrift`).
        ax: an Axes to draw on (default: a new single-column figure).
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import invariants, plotting
        >>> result = invariants.drift("harmonic", ["Euler", "Heun"], dt0=[0.02, 0.01, 0.005])
        >>> fig = plotting.invariant_drift(result)
        >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        ['Euler, energy (order 1.00)', 'Heun, energy (order 3.00)']
    """
    rows = require_columns(getattr(result, "rows", None), _ROWS, "invariant_drift's result.rows")
    fits = require_columns(getattr(result, "fits", None), _FITS, "invariant_drift's result.fits")
    fits = fits.set_index(["solver", "invariant"])
    with paper_style():
        fig, ax = single_axes(ax)
        names = list(dict.fromkeys(rows["invariant"]))
        for (solver, name), line in rows.groupby(["solver", "invariant"], sort=False):
            drawn = line[(line["status"] == "ok") & (line["drift"] > 0)].sort_values("h")
            label = f"{solver}, {name} ({_order_text(fits.loc[(solver, name)])})"
            dashes = "-" if names.index(name) == 0 else "--"
            ax.loglog(drawn["h"], drawn["drift"], dashes, label=label, **solver_style(solver))
        log_axis(ax, "x", "step size h", "time units")
        log_axis(ax, "y", r"drift $\max_n |I(y_n) - I(y_0)|$")
        if title:
            ax.set_title(title)
        ax.legend(loc="lower right", fontsize="small")
    return fig
