"""Discrete-map figures: conjugate orbit diagrams, drift from a lifted map, modified-equation
defects, and a map against its continuous limit. Each takes what `analysis.discrete` (or the
discrete_maps study) returns, draws it without fitting, and returns the Figure; `ax=` draws into
given Axes instead.

Examples:
    >>> from analysis import discrete, plotting
    >>> defects = discrete.modified_equation_defect("Euler", "logistic", (0, 1), [0.1, 0.05])
    >>> fig = plotting.defects(defects)
"""

from __future__ import annotations

import matplotlib.axes
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ..result import require_columns
from ._style import DOUBLE_WIDTH, log_axis, paper_style, solver_style

#: Exact zeros on log axes are drawn at this value (and the caption says so).
ZERO_FLOOR = 1e-17


def _panels(ax, n: int, height: float, **options):
    """(figure, n Axes): new side-by-side panels when ax is None, else the Axes given (one Axes
    when n = 1, or a sequence of n)."""
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=(DOUBLE_WIDTH, height), squeeze=False, **options)
        return fig, list(axes[0])
    axes = [ax] if isinstance(ax, matplotlib.axes.Axes) else list(np.ravel(ax))
    if len(axes) != n or not all(isinstance(a, matplotlib.axes.Axes) for a in axes):
        raise InvalidArgument(f"ax={ax!r} is invalid; this figure draws into {n} Axes: pass {n}")
    return axes[0].figure, axes


def conjugacy(df: pd.DataFrame, *, ax=None) -> plt.Figure:
    """Euler's orbit diagram in h (left) and the logistic map's in μ with Euler's rescaled points.

    `df` columns: h, mu, y_euler, x_euler, x_logistic (one row per kept iterate).

    Args:
        df: Euler iterates y_euler of y' = r·y(1 - y) at step h, their rescaling x_euler =
            h·r·y/(1 + h·r), and logistic-map iterates x_logistic at μ = 1 + h·r (column mu).
        ax: two Axes (left, right) to draw into (default: a new figure).

    Returns:
        The Figure (two panels).

    Examples:
        >>> from analysis import plotting
        >>> rows = []
        >>> for h in (1.5, 2.2, 2.6):               # μ = 1 + h: a fixed point, a 2-cycle, chaos
        ...     y, x = 0.3, h * 0.3 / (1 + h)
        ...     for n in range(30):
        ...         y, x = y + h * y * (1 - y), (1 + h) * x * (1 - x)   # Euler (r = 1); the map
        ...         rows.append(dict(h=h, mu=1 + h, y_euler=y, x_euler=h * y / (1 + h),
        ...                          x_logistic=x))
        >>> df = pd.DataFrame(rows)
        >>> fig = plotting.conjugacy(df)
        >>> bool(np.array_equal(fig.axes[1].collections[1].get_offsets()[:, 1], df["x_euler"]))
        True
    """
    require_columns(df, ["h", "mu", "y_euler", "x_euler", "x_logistic"], "conjugacy input")
    with paper_style():
        fig, (left, right) = _panels(ax, 2, 2.6)
        dots = dict(lw=0, rasterized=True)
        left.scatter(df["h"], df["y_euler"], s=0.2, c="k", alpha=0.4, **dots)
        left.set_xlabel("step size h (time units)")
        left.set_ylabel(r"Euler iterates $y_n$")
        left.set_title(r"Euler on $y' = r\,y(1-y)$")
        right.scatter(df["mu"], df["x_logistic"], s=2.5, c="0.7", label="logistic map", **dots)
        right.scatter(
            df["mu"],
            df["x_euler"],
            s=0.2,
            c="k",
            alpha=0.6,
            label=r"Euler, $x = hry/(1+hr)$",
            **dots,
        )
        right.set_xlabel(r"$\mu = 1 + h r$")
        right.set_ylabel(r"$x_n$")
        right.set_title(r"logistic map $x \mapsto \mu x(1-x)$")
        right.legend(loc="lower left", markerscale=4)
    return fig


def drift(df: pd.DataFrame, *, ax=None) -> plt.Figure:
    """Gap between orbits and a reference orbit against time: one panel per map, one line per run.

    Two inputs. The discrete_maps study's lifted-map drift (columns map, solver, status, t,
    drift): one panel per lifted map, one line per solver label, the gap to the map's own orbit.
    Or `analysis.discrete.compare` output (columns system, map, status, t, error): one panel per
    system, one line per map, the gap to the ODE's solution. Zeros are drawn at ZERO_FLOOR; a
    run whose first status is not "ok" is named in the legend and not drawn.

    Args:
        df: one row per (panel, line, time), as above.
        ax: one Axes per panel to draw into (default: a new figure).

    Returns:
        The Figure, one panel per map (or system).

    Examples:
        >>> from analysis import discrete, plotting, systems
        >>> lifted = discrete.lift("logistic", 1.0, steps=20, mu=3.2)
        >>> phi, _ = systems.shipped_map("logistic", mu=3.2)
        >>> exact = discrete.iterate(phi, lifted.y0, 20)
        >>> frames = []
        >>> for solver in ("Euler", "Heun"):
        ...     orbit = discrete.iterate(discrete.to_map(lifted, solver, 1.0), lifted.y0, 20)
        ...     frames.append(pd.DataFrame({"map": "logistic", "solver": solver, "status": "ok",
        ...                                 "t": np.arange(21.0), "drift": np.abs(orbit - exact)}))
        >>> df = pd.concat(frames)
        >>> fig = plotting.drift(df)
        >>> (df.groupby("solver")["drift"].max() < 1e-12).tolist()   # Euler replays the map
        [True, False]
        >>> logistic = systems.get("logistic")                       # compare output
        >>> gap = discrete.compare(logistic, discrete.to_map(logistic, "Euler", 0.5), 0.5, 5.0)
        >>> line = plotting.drift(gap).axes[0].lines[0]
        >>> bool(np.array_equal(line.get_ydata(), np.maximum(gap["error"], ZERO_FLOOR)))
        True
    """
    compared = isinstance(df, pd.DataFrame) and "drift" not in df.columns
    panel, line, value = ("system", "map", "error") if compared else ("map", "solver", "drift")
    require_columns(
        df,
        [panel, line, "status", "t", value],
        "drift input (discrete.compare output, or lifted-map drift rows)",
    )
    maps = list(dict.fromkeys(df[panel]))
    with paper_style():
        fig, axes = _panels(ax, len(maps), 2.6, sharey=True)
        for ax, name in zip(axes, maps, strict=True):
            for label, g in df[df[panel] == name].groupby(line, sort=False):
                style = solver_style(label.split(" ")[0])
                dashes = "-"
                if "adaptive" in label:
                    style["color"], dashes = solver_style("PI42")["color"], "--"
                status = g["status"].iloc[0]
                if status != "ok":
                    ax.plot(
                        [],
                        [],
                        ls="none",
                        marker="x",
                        color=style["color"],
                        label=f"{label}: {status}",
                    )
                    continue
                ax.plot(
                    g["t"],
                    np.maximum(g[value], ZERO_FLOOR),
                    marker=style["marker"],
                    color=style["color"],
                    ls=dashes,
                    markevery=max(1, len(g) // 10),
                    label=label,
                )
            reference = "the ODE's solution" if compared else r"$\Phi^n(y_0)$"
            log_axis(ax, "y", f"gap to {reference}, max-norm")
            ax.set_xlabel("t = n·h (time units)")
            ax.set_title(name if compared else f"lifted {name} map")
            ax.legend(loc="center right", fontsize="small")
    return fig


def defects(result, *, ax=None) -> plt.Figure:
    """Modified-equation defect against h, one panel per solver, one line per order.

    Draws `analysis.discrete.modified_equation_defect`'s result: its rows (solver, order, h,
    defect, status) as lines and its stored slopes (solver, order, fitted_slope) in the legend;
    nothing is fitted here.

    Args:
        result: an `analysis.discrete.ModifiedDefects` (rows and slopes).
        ax: one Axes per solver to draw into (default: a new figure).

    Returns:
        The Figure, one panel per solver.

    Examples:
        >>> from analysis import discrete, plotting
        >>> rows = pd.DataFrame([dict(solver="Euler", order=k, h=h, defect=0.1 * h ** (k + 2),
        ...                           status="ok") for k in (0, 1) for h in (0.1, 0.05, 0.025)])
        >>> fig = plotting.defects(discrete.ModifiedDefects.from_rows(rows))   # hand-made
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['0 terms (slope 2.00)', '1 terms (slope 3.00)']
        >>> fig.axes[0].lines[1].get_ydata().tolist() == rows.defect[3:][::-1].tolist()
        True
    """
    what = "defects input (discrete.modified_equation_defect output)"
    if not hasattr(result, "rows") or not hasattr(result, "slopes"):
        raise InvalidArgument(
            f"result={type(result).__name__} is invalid; {what} is a ModifiedDefects with rows "
            "and slopes"
        )
    df = require_columns(result.rows, ["solver", "order", "h", "defect", "status"], what)
    fits = require_columns(result.slopes, ["solver", "order", "fitted_slope"], what)
    slopes = fits.set_index(["solver", "order"])["fitted_slope"]
    solvers = list(dict.fromkeys(df["solver"]))
    with paper_style():
        fig, axes = _panels(ax, len(solvers), 2.6, sharey=True)
        markers = "os^D"
        for ax, solver in zip(axes, solvers, strict=True):
            color = solver_style(solver)["color"]
            for i, (order, g) in enumerate(df[df["solver"] == solver].groupby("order")):
                ok = g[(g["status"] == "ok") & (g["defect"] > 0)].sort_values("h")
                slope = slopes.get((solver, order), np.nan)
                ax.loglog(
                    ok["h"],
                    ok["defect"],
                    marker=markers[i % len(markers)],
                    color=color,
                    alpha=1.0 - 0.25 * i,
                    ls=("-", "--", ":", "-.")[i % 4],
                    label=f"{order} terms (slope {slope:.2f})",
                )
            log_axis(ax, "x", "step size h", "time units")
            ax.set_title(solver)
            ax.legend(loc="lower right", fontsize="small")
        log_axis(axes[0], "y", r"defect $|\varphi_h^{\tilde f_h}(y) - \Phi_h(y)|$")
    return fig


def map_vs_limit(gap: pd.DataFrame, curve: pd.DataFrame | None = None, *, ax=None) -> plt.Figure:
    """A map against an ODE: the gap over time (left) and the two solutions (right).

    The right panel is a phase portrait (y_0 against y_1) for a state of two or more components,
    and the solution against t for a scalar one; map iterates are dots, the ODE a line.

    Args:
        gap: `discrete.compare` rows (columns t, step, error, status, threshold,
            time_to_threshold, y_map_0, y_ode_0, ...).
        curve: optional dense ODE solution (columns t, y_ode_0, y_ode_1, ...) for a smooth line.
        ax: two Axes (left, right) to draw into (default: a new figure).

    Returns:
        The Figure (two panels).

    Examples:
        >>> from analysis import discrete, plotting, systems
        >>> osc = systems.get("harmonic")
        >>> gap = discrete.compare(osc, discrete.to_map(osc, "Euler", 0.1), 0.1, 2.0)
        >>> fig = plotting.map_vs_limit(gap)
        >>> r = np.hypot(gap["y_map_0"], gap["y_map_1"]).iloc[-1]   # Euler spirals out:
        >>> round(float(r), 4), round(1.01**10, 4)                   # |1 + ih|^n, n = 20
        (1.1046, 1.1046)
        >>> logistic = systems.get("logistic")                     # a scalar state: y against t
        >>> gap = discrete.compare(logistic, discrete.to_map(logistic, "Euler", 0.5), 0.5, 5.0)
        >>> right = plotting.map_vs_limit(gap).axes[1]
        >>> bool(np.array_equal(right.lines[0].get_ydata(), gap["y_ode_0"]))
        True
    """
    columns = ["t", "step", "error", "status", "threshold", "time_to_threshold"]
    require_columns(gap, columns + ["y_map_0", "y_ode_0"], "map_vs_limit gap (compare output)")
    phase = "y_map_1" in gap.columns
    if curve is not None:
        need = ["y_ode_0", "y_ode_1"] if phase else ["t", "y_ode_0"]
        require_columns(curve, need, "map_vs_limit curve")
    with paper_style():
        fig, (left, right) = _panels(ax, 2, 2.8)
        ok = gap[gap["status"] == "ok"]
        later = ok[ok["step"] > 0]  # the orbits share their start: no gap at n = 0
        left.plot(later["t"], np.maximum(later["error"], ZERO_FLOOR), color="k", marker="none")
        threshold = float(gap["threshold"].iloc[0])
        left.axhline(threshold, color="tab:red", lw=0.8, label=f"threshold {threshold:g}")
        crossing = gap["time_to_threshold"].iloc[0]
        if np.isfinite(crossing):
            left.axvline(
                crossing, color="tab:red", ls="--", lw=0.8, label=f"exceeded at t = {crossing:g}"
            )
        log_axis(left, "y", "gap map/ODE, max-norm")
        left.set_xlabel("t (time units)")
        left.legend(loc="lower right", fontsize="small")
        line = curve if curve is not None else ok
        x, y = ("y_ode_0", "y_ode_1") if phase else ("t", "y_ode_0")
        dots = ("y_map_0", "y_map_1") if phase else ("t", "y_map_0")
        right.plot(line[x], line[y], color="0.4", lw=0.8, label="continuous limit (ODE)")
        right.scatter(ok[dots[0]], ok[dots[1]], s=4, c="k", zorder=3, label="map iterates")
        right.scatter(
            ok[dots[0]].iloc[:1],
            ok[dots[1]].iloc[:1],
            s=20,
            marker="*",
            c="tab:red",
            zorder=4,
            label="start",
        )
        right.set_xlabel(r"$y_0$" if phase else "t (time units)")
        right.set_ylabel(r"$y_1$" if phase else "y")
        right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    return fig


__all__ = ["conjugacy", "drift", "defects", "map_vs_limit", "ZERO_FLOOR"]
