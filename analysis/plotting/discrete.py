"""Discrete-map figures: conjugate orbit diagrams, drift from a lifted map, modified-equation
defects, and a map against its continuous limit. Each takes the tidy DataFrames of
`analysis.discrete` (or of the discrete_maps study) and returns a Figure.

Examples:
    >>> from analysis import discrete, plotting
    >>> df = discrete.modified_equation_defect("Euler", "logistic", (0, 1, 2), [0.1, 0.05, 0.02])
    >>> fig = plotting.defect_plot(df)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ._style import DOUBLE_WIDTH, log_axis, paper_style, solver_style

#: Exact zeros on log axes are drawn at this value (and the caption says so).
ZERO_FLOOR = 1e-17


def _fitted_slope(h, value) -> float:
    keep = np.isfinite(value) & (value > 0)
    if keep.sum() < 2:
        return np.nan
    return float(np.polyfit(np.log(h[keep]), np.log(value[keep]), 1)[0])


def conjugacy_plot(df: pd.DataFrame) -> plt.Figure:
    """Euler's orbit diagram in h (left) and the logistic map's in μ with Euler's rescaled points.

    `df` columns: h, mu, y_euler, x_euler, x_logistic (one row per kept iterate).

    Args:
        df: Euler iterates y_euler of y' = r·y(1 - y) at step h, their rescaling x_euler =
            h·r·y/(1 + h·r), and logistic-map iterates x_logistic at μ = 1 + h·r (column mu).

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
        >>> fig = plotting.conjugacy_plot(df)
        >>> bool(np.allclose(df["x_euler"], df["x_logistic"]))    # the same orbits
        True
    """
    with paper_style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(DOUBLE_WIDTH, 2.6))
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


def drift_plot(df: pd.DataFrame) -> plt.Figure:
    """Gap between solver orbits and the lifted map's orbit against time, one panel per map.

    `df` columns: map, solver (label), status, t, drift. Zeros are drawn at ZERO_FLOOR; a run
    whose status is not "ok" is named in the legend and not drawn.

    Args:
        df: one row per (map, solver label, time): the gap `drift` between the solver's orbit on
            the lifted map (`analysis.discrete.lift`) and the map's own orbit.

    Returns:
        The Figure, one panel per map.

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
        >>> fig = plotting.drift_plot(df)
        >>> (df.groupby("solver")["drift"].max() < 1e-12).tolist()   # Euler replays the map
        [True, False]
    """
    maps = list(dict.fromkeys(df["map"]))
    with paper_style():
        fig, axes = plt.subplots(
            1, len(maps), figsize=(DOUBLE_WIDTH, 2.6), sharey=True, squeeze=False
        )
        for ax, name in zip(axes[0], maps, strict=True):
            for label, g in df[df["map"] == name].groupby("solver", sort=False):
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
                    np.maximum(g["drift"], ZERO_FLOOR),
                    marker=style["marker"],
                    color=style["color"],
                    ls=dashes,
                    markevery=max(1, len(g) // 10),
                    label=label,
                )
            log_axis(ax, "y", r"gap to $\Phi^n(y_0)$, max-norm")
            ax.set_xlabel("t = n·h (time units)")
            ax.set_title(f"lifted {name} map")
            ax.legend(loc="center right", fontsize="small")
    return fig


def defect_plot(df: pd.DataFrame) -> plt.Figure:
    """Modified-equation defect against h, one panel per solver, one line per order (slopes).

    `df` columns: solver, order, h, defect, status (as from `discrete.modified_equation_defect`).

    Args:
        df: defects per (solver, order, h); the legend gives each line's fitted log-log slope.

    Returns:
        The Figure, one panel per solver.

    Examples:
        >>> from analysis import plotting
        >>> df = pd.DataFrame([dict(solver="Euler", order=k, h=h, defect=0.1 * h ** (k + 2),
        ...                         status="ok") for k in (0, 1) for h in (0.1, 0.05, 0.025)])
        >>> fig = plotting.defect_plot(df)                  # Euler's O(h^(order+2)), hand-made
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['0 terms (slope 2.00)', '1 terms (slope 3.00)']
    """
    solvers = list(dict.fromkeys(df["solver"]))
    with paper_style():
        fig, axes = plt.subplots(
            1, len(solvers), figsize=(DOUBLE_WIDTH, 2.6), sharey=True, squeeze=False
        )
        markers = "os^D"
        for ax, solver in zip(axes[0], solvers, strict=True):
            color = solver_style(solver)["color"]
            for i, (order, g) in enumerate(df[df["solver"] == solver].groupby("order")):
                ok = g[(g["status"] == "ok") & (g["defect"] > 0)].sort_values("h")
                slope = _fitted_slope(ok["h"].to_numpy(), ok["defect"].to_numpy())
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
        log_axis(axes[0][0], "y", r"defect $|\varphi_h^{\tilde f_h}(y) - \Phi_h(y)|$")
    return fig


def map_vs_limit_plot(gap: pd.DataFrame, curve: pd.DataFrame | None = None) -> plt.Figure:
    """A map against an ODE: the gap over time (left) and a phase-portrait overlay (right).

    `gap` is `discrete.compare`'s output (2-d states); `curve` optionally a dense ODE solution
    (columns y_ode_0, y_ode_1) for a smooth line.

    Args:
        gap: `discrete.compare` rows for a system with a 2-d state.
        curve: optional dense ODE states (columns y_ode_0, y_ode_1) for the phase-plane line.

    Returns:
        The Figure (two panels).

    Examples:
        >>> from analysis import discrete, plotting, systems
        >>> osc = systems.get("harmonic")
        >>> gap = discrete.compare(osc, discrete.to_map(osc, "Euler", 0.1), 0.1, 2.0)
        >>> fig = plotting.map_vs_limit_plot(gap)
        >>> r = np.hypot(gap["y_map_0"], gap["y_map_1"]).iloc[-1]   # Euler spirals out:
        >>> round(float(r), 4), round(1.01**10, 4)                   # |1 + ih|^n, n = 20
        (1.1046, 1.1046)
    """
    with paper_style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(DOUBLE_WIDTH, 2.8))
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
        right.plot(
            line["y_ode_0"], line["y_ode_1"], color="0.4", lw=0.8, label="continuous limit (ODE)"
        )
        right.scatter(ok["y_map_0"], ok["y_map_1"], s=4, c="k", zorder=3, label="map iterates")
        right.scatter(
            ok["y_map_0"].iloc[:1],
            ok["y_map_1"].iloc[:1],
            s=20,
            marker="*",
            c="tab:red",
            zorder=4,
            label="start",
        )
        right.set_xlabel(r"$y_0$")
        right.set_ylabel(r"$y_1$")
        right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    return fig


__all__ = ["conjugacy_plot", "drift_plot", "defect_plot", "map_vs_limit_plot", "ZERO_FLOOR"]
