"""Convergence figures: error against step size, observed against expected order, the min(p, q)
cap of step-dependent fields, and local orders against a scaled step.

Each takes what `analysis.convergence` produces (a `ConvergenceResult` of `measure`, its rows
or its fits table) and draws on a given axes or a new one. Orders shown are the fits stored in
the result (`analysis.convergence.fit`), the same ones the tables report: nothing is refitted.

Examples:
    >>> from analysis import convergence, plotting
    >>> result = convergence.measure("linear", ["Euler", "Heun"], dt0=[0.1, 0.05, 0.025, 0.0125])
    >>> fig = plotting.error_vs_step(result, triangles=(1, 2))
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import convergence as _convergence
from ..result import require_columns
from ._style import log_axis, paper_style, single_axes, slope_triangle, solver_style


def _order_text(fit) -> str:
    """A stored fit's order for a legend, e.g. '2.00', or '5.07, pre_asymptotic' if not ok."""
    if fit is None or not np.isfinite(fit["order"]):
        return "n/a"
    return (
        f"{fit['order']:.2f}" if fit["status"] == "ok" else f"{fit['order']:.2f}, {fit['status']}"
    )


_ROWS = ("h", "error", "status")
_FITS = ("order", "status", "log_constant", "h_min", "h_max")


def _lines(rows: pd.DataFrame, fits: pd.DataFrame | None, by: str):
    """(name of `by`, label, rows, matching fit or None) per line, in the order of the fits
    (lines without a fit last, in the order of the rows).

    A line is one value of `by`, split further by any of the fit's line columns (system,
    solver, target, norm, relative) that take several values under one value of `by`: rows
    of several systems or solvers are never joined into one line.
    """
    split = [
        c
        for c in _convergence.LINE
        if c in rows and c != by and (rows.groupby(by, sort=False)[c].nunique() > 1).any()
    ]
    keys = [c for c in _convergence.LINE if c in rows and fits is not None and c in fits]
    lines = []
    for key, g in rows.groupby([by, *split], sort=False):
        name = ", ".join(str(k) for k in key)
        fit, rank = None, (1, len(lines))
        if fits is not None:
            first = g.iloc[0]
            match = np.flatnonzero(
                np.logical_and.reduce([fits[c].to_numpy() == first[c] for c in keys])
                if keys
                else np.ones(len(fits), bool)
            )
            if len(match):
                fit, rank = fits.iloc[match[0]], (0, match[0])
        lines.append((rank, key[0], name, g, fit))
    return [line[1:] for line in sorted(lines, key=lambda line: line[0])]


def error_vs_step(
    result,
    *,
    ax=None,
    title: str | None = None,
    triangles=(1, 2),
    by: str = "solver",
    fitted_lines: bool = True,
) -> plt.Figure:
    """Log-log error against step size h, one line per value of `by`, stored orders in the legend.

    Only rows with status "ok" and a positive error are drawn. With fits (a
    `analysis.convergence.ConvergenceResult`), the legend gives each line's stored order (its
    status where that is not "ok", "n/a" where there is none) in the order of the fits, and
    `fitted_lines` draws each fitted line e(h) = exp(log_constant)·h^order over its fitted range
    [h_min, h_max] dashed; nothing is fitted here. Bare rows (a DataFrame) are drawn as points
    and lines only. Rows of several systems, solvers, targets or norms under one value of `by`
    become separate lines, labelled by what differs.

    Args:
        result: what `analysis.convergence.measure` returns, or a DataFrame of rows (h, error,
            status and `by`; e.g. `analysis.sweep` rows).
        ax: an Axes to draw on (default: a new figure).
        title: the panel title.
        triangles: the orders of the reference-slope triangles.
        by: the column whose values get one line each.
        fitted_lines: draw the stored fitted lines (with fits only).

    Returns:
        The Figure.

    Raises:
        InvalidArgument: the rows or fits lack a column this plot needs.

    Examples:
        >>> from analysis import convergence, plotting
        >>> dt0 = [1 / n for n in (10, 20, 40, 80)]
        >>> result = convergence.measure("linear", ["Euler", "Heun"], dt0=dt0)
        >>> fig = plotting.error_vs_step(result)
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['Euler (order 1.00)', 'Heun (order 2.00)']
    """
    if isinstance(result, pd.DataFrame):
        rows, fits = result, None
    else:
        rows, fits = getattr(result, "rows", result), getattr(result, "fits", None)
    rows = require_columns(rows, (*_ROWS, by), "error_vs_step's rows")
    if fits is not None:
        require_columns(fits, _FITS, "error_vs_step's fits")
    with paper_style():
        fig, ax = single_axes(ax)
        for name, label, g, fit in _lines(rows, fits, by):
            ok = g[(g["status"] == "ok") & (g["error"] > 0)].sort_values("h")
            style = solver_style(str(name))
            text = label if fits is None else f"{label} (order {_order_text(fit)})"
            ax.loglog(ok["h"], ok["error"], label=text, **style)
            if fitted_lines and fit is not None and np.isfinite(fit["log_constant"]):
                h = np.array([fit["h_min"], fit["h_max"]])
                ax.loglog(
                    h,
                    np.exp(fit["log_constant"]) * h ** fit["order"],
                    color=style["color"],
                    ls="--",
                    lw=0.8,
                    zorder=1,
                )
        ok = rows[(rows["status"] == "ok") & (rows["error"] > 0)]
        if len(ok):
            x0, y0 = ok["h"].min(), ok["error"].max()
            for k, order in enumerate(triangles):
                slope_triangle(ax, x0 * 1.3, y0 * 10 ** (-1.5 - 1.2 * k), order)
        log_axis(ax, "x", "step size h", "time units")
        norm = rows["norm"].iloc[0] if "norm" in rows and rows["norm"].nunique() == 1 else "final"
        log_axis(ax, "y", _NORM_LABELS.get(norm, "error"))
        if title:
            ax.set_title(title)
        ax.legend(loc="lower right", fontsize="small")
    return fig


_NORM_LABELS = {
    "final": r"error $\|y_N - y(t_1)\|_\infty$",
    "max": r"error $\max_k \|y(t_k) - y^*(t_k)\|_\infty$",
    "l2": r"error $\|y - y^*\|_{L^2}$ (dense output)",
}


def observed_orders(
    table: pd.DataFrame, *, ax=None, expected: str = "nominal_order", title: str | None = None
) -> plt.Figure:
    """Observed order (with its interval) against the expected order, per solver.

    `table` is a fits table (`analysis.convergence.fit`, a `ConvergenceResult.fits`; optionally
    with a column `expected`);
    rows whose fit status is not "ok" are drawn faded. Points on the diagonal agree.

    Args:
        table: a fits table (solver, norm, order, ci_low, ci_high and `expected`).
        ax: an Axes to draw on (default: a new figure).
        expected: the column of expected orders.
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import convergence, plotting
        >>> dt0 = [1 / n for n in (10, 20, 40, 80)]
        >>> result = convergence.measure("linear", ["Euler", "Heun"], dt0=dt0)
        >>> fig = plotting.observed_orders(result.fits)
        >>> fig.axes[0].get_xlabel()
        'expected order (nominal order)'
    """
    with paper_style():
        fig, ax = single_axes(ax, 3.0)
        norms = list(dict.fromkeys(table["norm"]))
        offsets = dict(zip(norms, np.linspace(-0.15, 0.15, len(norms)), strict=True))
        fills = {"final": "full", "max": "left", "l2": "none"}
        for (solver, norm), g in table.groupby(["solver", "norm"], sort=False):
            style = solver_style(solver)
            trusted = (g["status"] == "ok").to_numpy() if "status" in g else np.ones(len(g), bool)
            for sure in (True, False):
                part = g[trusted == sure]
                if part.empty:
                    continue
                x = part[expected].to_numpy(float) + offsets[norm]
                y = part["order"].to_numpy(float)
                err = np.abs(np.stack([y - part["ci_low"], part["ci_high"] - y]))
                ax.errorbar(
                    x,
                    y,
                    yerr=err,
                    ls="none",
                    fillstyle=fills.get(norm, "full"),
                    label=solver if norm == norms[0] and sure == trusted.any() else None,
                    alpha=1.0 if sure else 0.35,
                    **style,
                )
        top = float(np.nanmax(table[[expected, "order"]].to_numpy(float))) + 0.8
        ax.plot([0, top], [0, top], color="0.5", lw=0.8, ls="--", zorder=0)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"expected order ({expected.replace('_', ' ')})")
        ax.set_ylabel("observed order (interval)")
        if title:
            ax.set_title(title)
        marks = ", ".join(f"{n}: {fills.get(n, 'full')}" for n in norms)
        if "status" in table and (table["status"] != "ok").any():
            marks += "; faded: status not ok"
        ax.text(0.02, 0.98, f"markers {marks}", transform=ax.transAxes, va="top", fontsize=6)
        ax.legend(loc="lower right", fontsize="x-small", ncol=2)
    return fig


def order_cap(table: pd.DataFrame, *, ax=None, title: str | None = None) -> plt.Figure:
    """Observed order against the perturbation order q, one line per solver, with min(p, q).

    `table` needs columns solver, q, order, ci_low, ci_high, nominal_order. The dashed line of
    each solver is min(p, q): the field's O(h^q) term caps a solver of order p.

    Args:
        table: one row per (solver, q), e.g. fits tables of the `perturbed` family with a
            column q added.
        ax: an Axes to draw on (default: a new figure).
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting
        >>> table = pd.DataFrame({"solver": "Heun", "nominal_order": 2, "q": [1, 2, 3],
        ...                       "order": [1.0, 2.0, 2.0], "ci_low": [0.9, 1.9, 1.9],
        ...                       "ci_high": [1.1, 2.1, 2.1]})   # observed: min(p, q)
        >>> fig = plotting.order_cap(table)
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['Heun (p = 2)']
    """
    with paper_style():
        fig, ax = single_axes(ax, 2.8)
        qs = np.sort(table["q"].unique())
        dense = np.linspace(qs.min(), qs.max(), 200)
        for solver, g in table.groupby("solver", sort=False):
            g = g.sort_values("q")
            style = solver_style(solver)
            p = int(g["nominal_order"].iloc[0])
            y = g["order"].to_numpy(float)
            err = np.abs(np.stack([y - g["ci_low"], g["ci_high"] - y]))
            ax.errorbar(g["q"], y, yerr=err, label=f"{solver} (p = {p})", capsize=2, **style)
            ax.plot(dense, np.minimum(p, dense), color=style["color"], ls="--", lw=0.8, zorder=0)
        ax.set_xlabel("perturbation order q in f + c·h^q·g(y)")
        ax.set_ylabel("observed order (interval)")
        ax.set_xticks(qs)
        if title:
            ax.set_title(title)
        ax.legend(loc="upper left", fontsize="small")
    return fig


def local_orders_vs(
    rows: pd.DataFrame,
    *,
    x: str = "h",
    by: str = "stiffness",
    ax=None,
    nominal: float | None = None,
    xlabel: str = "h",
    title: str | None = None,
) -> plt.Figure:
    """Local orders between consecutive step sizes against `x` (log axis), one line per `by`.

    Each local order log(e_{i+1}/e_i)/log(h_{i+1}/h_i) is drawn at the geometric mean of the two
    x values. A dashed line marks `nominal`. Use x = h·λ to see where order reduction starts.

    Args:
        rows: `measure` rows with the columns `x`, `by`, h, error, status (and optionally
            roundoff_floor: errors at or below it are left out).
        x: the column on the x axis (e.g. a scaled step h·λ).
        by: a numeric column whose values get one line each.
        ax: an Axes to draw on (default: a new figure).
        nominal: the expected order, drawn dashed.
        xlabel: the x-axis label.
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting
        >>> h = np.array([0.1, 0.05, 0.025, 0.0125])
        >>> rows = pd.concat([pd.DataFrame({"stiffness": k, "h": h, "error": h**2 * (1 + k * h)})
        ...                   for k in (1.0, 100.0)]).assign(status="ok")
        >>> fig = plotting.local_orders_vs(rows, nominal=2)
        >>> fig.axes[0].get_lines()[0].get_ydata().round(2).tolist()  # 2 + log2((1+2h)/(1+h))
        [2.02, 2.03, 2.07]
    """
    with paper_style():
        fig, ax = single_axes(ax)
        for name, g in rows[rows["status"] == "ok"].groupby(by, sort=True):
            floor = g["roundoff_floor"] if "roundoff_floor" in g else 0.0
            g = g[g["error"] > floor].sort_values("h")  # no local orders from round-off
            if len(g) < 2:
                continue
            lo = _convergence.local_orders(g["h"], g["error"])
            xs = np.sqrt(g[x].to_numpy()[1:] * g[x].to_numpy()[:-1])
            ax.plot(xs, lo, label=f"{by} {name:g}", **solver_style(f"{by}={name}"))
        if nominal is not None:
            ax.axhline(nominal, color="0.5", lw=0.8, ls="--", zorder=0)
        log_axis(ax, "x", xlabel)
        ax.set_ylabel("local order")
        if title:
            ax.set_title(title)
        ax.legend(loc="best", fontsize="x-small")
    return fig
