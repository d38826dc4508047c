"""Convergence figures: error against step size on log-log axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ._style import COLUMN_WIDTH, paper_style, slope_triangle, solver_style


def _fitted_slope(g: pd.DataFrame) -> float:
    ok = g[(g["status"] == "ok") & (g["error"] > 0)]
    if len(ok) < 2:
        return np.nan
    return float(np.polyfit(np.log(ok["h"]), np.log(ok["error"]), 1)[0])


def error_vs_step(
    df: pd.DataFrame, *, ax=None, title: str | None = None, triangles=(1, 2)
) -> plt.Figure:
    """Log-log error against step size h, one line per solver, fitted slope in the legend.

    Only rows with status "ok" and a positive error are drawn.
    """
    with paper_style():
        if ax is None:
            fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.6))
        else:
            fig = ax.figure
        for solver, g in df.groupby("solver", sort=False):
            ok = g[(g["status"] == "ok") & (g["error"] > 0)].sort_values("h")
            ax.loglog(
                ok["h"],
                ok["error"],
                label=f"{solver} (slope {_fitted_slope(g):.2f})",
                **solver_style(solver),
            )
        ok = df[(df["status"] == "ok") & (df["error"] > 0)]
        if len(ok):
            x0, y0 = ok["h"].min(), ok["error"].max()
            for k, order in enumerate(triangles):
                slope_triangle(ax, x0 * 1.3, y0 * 10 ** (-1.5 - 1.2 * k), order)
        ax.set_xlabel("step size h (time units)")
        ax.set_ylabel(r"error $\|y_N - y(t_1)\|_\infty$")
        if title:
            ax.set_title(title)
        ax.legend(loc="lower right")
    return fig
