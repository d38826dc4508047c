"""Stability figures: regions |R(z)| ≤ 1, orbit (bifurcation) diagrams, fixed-point branches and
the largest stable step against stiffness. Each takes what `analysis.stability` (or a study)
returns, a tidy DataFrame or an `OrbitDiagram`, and draws on a given axes or a new one.

Examples:
    >>> from analysis import stability, plotting
    >>> od = stability.orbit_diagram("logistic", "Euler", np.linspace(0.1, 3, 200), [0.3])
    >>> fig = plotting.orbit_diagram(od)
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ..result import require_columns
from ..stability import OrbitDiagram
from ._style import log_axis, paper_style, single_axes, solver_style


def stability_regions(df: pd.DataFrame, *, ax=None, title: str | None = None) -> plt.Figure:
    """The boundaries |R(z)| = 1, one curve per `label`, from a grid of |R| values.

    `df` is long: columns label, re, im, abs_r (|R| at z = re + i·im on a full grid), and
    optionally dashed (bool, per label) to draw a curve dashed, e.g. an effective region that
    coincides with another. The stable side is |R| < 1 (the origin's side for explicit methods).

    Args:
        df: |R(z)| on a full (re, im) grid per label.
        ax: an Axes to draw on (default: a new figure).
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting, stability
        >>> re, im = np.meshgrid(np.linspace(-3, 1, 81), np.linspace(-2, 2, 81))
        >>> abs_r = {s: np.abs(stability.tableau_amplification(s, re + 1j * im))
        ...          for s in ("Euler", "Heun")}                  # |R(z)| from the tableaus
        >>> df = pd.concat([pd.DataFrame({"label": s, "re": re.ravel(), "im": im.ravel(),
        ...                               "abs_r": r.ravel()}) for s, r in abs_r.items()])
        >>> fig = plotting.stability_regions(df)
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['Euler', 'Heun']
    """
    require_columns(df, ["label", "re", "im", "abs_r"], "stability_regions input")
    with paper_style():
        fig, ax = single_axes(ax, 4.0)
        for label, g in df.groupby("label", sort=False):
            grid = g.pivot(index="im", columns="re", values="abs_r")
            style = solver_style(label)
            dashed = bool(g["dashed"].iloc[0]) if "dashed" in g else False
            ax.contour(
                grid.columns,
                grid.index,
                grid.to_numpy(),
                levels=[1.0],
                colors=[style["color"]],
                linestyles="--" if dashed else "-",
                linewidths=1.6 if dashed else 1.0,
            )
            ax.plot([], [], color=style["color"], ls="--" if dashed else "-", label=label)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.axvline(0, color="0.5", lw=0.5)
        ax.set_aspect("equal")
        ax.set_xlabel(r"Re $z$ ($z = h\lambda$)")
        ax.set_ylabel(r"Im $z$")
        if title:
            ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize="small")
    return fig


def _orbit_points(orbits, x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y) of every kept iterate of the orbits that stayed, and the x values of the escaped
    ones' rows, in the tidy rows' order, from an `OrbitDiagram` (arrays) or its tidy rows."""
    if isinstance(orbits, OrbitDiagram):
        valid = ["h", *orbits.components]
        for name, value in (("x", x), ("y", y)):
            if value not in valid or (name == "y" and value == "h"):
                raise InvalidArgument(
                    f"{name}={value!r} is invalid for this OrbitDiagram; use one of "
                    f"{valid if name == 'x' else valid[1:]}"
                )
        alive, escaped = ~orbits.escaped, orbits.escaped
        n_keep = orbits.n_keep

        def column(name, mask, keep):
            if name == "h":
                return np.repeat(np.broadcast_to(orbits.h[:, None], mask.shape)[mask], keep)
            return orbits.component(name)[mask][:, :keep].ravel()

        return column(x, alive, n_keep), column(y, alive, n_keep), column(x, escaped, 1)
    what = "orbit_diagram input (stability.orbit_diagram's OrbitDiagram or its tidy rows)"
    require_columns(orbits, [x, y, "escaped"], what)
    kept = orbits[~orbits["escaped"]]
    return kept[x].to_numpy(), kept[y].to_numpy(), orbits.loc[orbits["escaped"], x].to_numpy()


def orbit_diagram(
    orbits, *, ax=None, x: str = "h", y: str = "y", title: str | None = None
) -> plt.Figure:
    """The attractor against a parameter: one dot per kept iterate (`x` against `y`).

    Parameter values where some orbit escaped to infinity get a red tick along the top edge.
    Drawn from the arrays of an `OrbitDiagram` (fast: no table is built); its tidy rows
    (`OrbitDiagram.to_frame()`, e.g. a study's stored table, columns `x`, `y`, escaped) draw
    the same figure. `x` is "h" or a state column, `y` a state column ("y", or y0, y1, ...).

    Args:
        orbits: `analysis.stability.orbit_diagram`'s `OrbitDiagram`, or its tidy rows.
        ax: an Axes to draw on (default: a new figure).
        x: the parameter: "h" or a state column.
        y: the state column.
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting, stability
        >>> hs = [1.5, 2.2, 2.6, 3.5]                      # μ = 1 + h = 2.5, 3.2, 3.6, 4.5
        >>> od = stability.orbit_diagram("logistic", "Euler", hs, [0.3], n_keep=200)
        >>> fig = plotting.orbit_diagram(od)
        >>> od.escaped.any(axis=1).tolist()                 # μ > 4: the orbit escapes
        [False, False, False, True]
    """
    xs, ys, gone = _orbit_points(orbits, x, y)
    with paper_style():
        fig, ax = single_axes(ax)
        ax.scatter(xs, ys, s=0.15, c="k", alpha=0.35, lw=0, rasterized=True)
        gone = np.unique(gone)
        if gone.size:
            ax.plot(
                gone,
                np.ones_like(gone),
                "|",
                color="tab:red",
                ms=4,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label="escaped to ∞",
            )
            ax.legend(loc="lower left", fontsize="small")
        ax.set_xlabel("step size h" if x == "h" else x)
        ax.set_ylabel("attractor " + y)
        if title:
            ax.set_title(title)
    return fig


def _per_orbit(orbits, x: str) -> pd.DataFrame:
    """One row per orbit (columns x, escaped, lyapunov, lyapunov_se) from an `OrbitDiagram`;
    the tidy rows as they are (every kept iterate repeats its orbit's exponent)."""
    if isinstance(orbits, OrbitDiagram):
        if x != "h":
            raise InvalidArgument(
                f"x={x!r} is invalid for an OrbitDiagram's exponents; they are per h: use x='h'"
            )
        n_s = orbits.escaped.shape[1]
        return pd.DataFrame(
            {
                "h": np.repeat(orbits.h, n_s),
                "escaped": orbits.escaped.ravel(),
                "lyapunov": orbits.lyapunov.ravel(),
                "lyapunov_se": orbits.lyapunov_se.ravel(),
            }
        )
    what = "lyapunov input (stability.orbit_diagram's OrbitDiagram or its tidy rows)"
    return require_columns(orbits, [x, "escaped", "lyapunov"], what)


def lyapunov(orbits, *, ax=None, x: str = "h", title: str | None = None):
    """The largest Lyapunov exponent against `x` (the maximum over starts), from an
    `OrbitDiagram` (or its tidy rows' `lyapunov` column); > 0 means chaos, < 0 a stable
    periodic attractor. With `lyapunov_se`, a grey band of ±2 standard errors.

    Args:
        orbits: `analysis.stability.orbit_diagram`'s `OrbitDiagram`, or its tidy rows
            (escaped orbits are left out).
        ax: an Axes to draw on (default: a new figure).
        x: the parameter column ("h" for an OrbitDiagram).
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting, stability
        >>> hs = [1.5, 2.2, 2.6, 3.5]                      # μ = 1 + h = 2.5, 3.2, 3.6, 4.5
        >>> od = stability.orbit_diagram("logistic", "Euler", hs, [0.3], n_keep=200)
        >>> fig = plotting.lyapunov(od)
        >>> (od.lyapunov[:, 0] > 0).tolist()     # chaos at μ = 3.6 (4.5 escaped: NaN)
        [False, False, True, False]
    """
    df = _per_orbit(orbits, x)
    with paper_style():
        fig, ax = single_axes(ax, 1.8)
        alive = df[~df["escaped"]].dropna(subset=["lyapunov"])
        best = alive.loc[alive.groupby(x)["lyapunov"].idxmax()].set_index(x)
        per = best["lyapunov"]
        ax.plot(per.index, per.to_numpy(), color="k", lw=0.6, marker="none")
        if "lyapunov_se" in best:  # ±2 standard errors of the block averages
            se = best["lyapunov_se"].to_numpy()
            ax.fill_between(per.index, per - 2 * se, per + 2 * se, color="0.6", lw=0)
        ax.axhline(0, color="tab:red", lw=0.6)
        ax.set_xlabel("step size h" if x == "h" else x)
        ax.set_ylabel("Lyapunov exp.")
        if title:
            ax.set_title(title)
    return fig


def _branch_component(df: pd.DataFrame, component) -> tuple[str, str]:
    """The column of state component `component` in a fixed_point_branches frame, and its
    axis label; an InvalidArgument naming the valid components otherwise."""
    if "y" in df.columns:
        columns = ["y"]
    else:
        columns = sorted(
            (c for c in df.columns if re.fullmatch(r"y\d+", str(c))), key=lambda c: int(c[1:])
        )
    if not columns:
        raise InvalidArgument(
            "df has no state column (y, or y0, y1, ...): pass the rows of "
            "analysis.stability.fixed_point_branches"
        )
    d = len(columns)
    valid = ", ".join(map(str, range(d))) if d <= 4 else f"0, 1, ..., {d - 1}"
    valid = "0" if d == 1 else f"one of {valid}"
    if (
        isinstance(component, bool)
        or not isinstance(component, int | np.integer)
        or not 0 <= component < len(columns)
    ):
        raise InvalidArgument(
            f"component={component!r} is invalid: the state has {d} component"
            f"{'s' if d > 1 else ''} ({', '.join(columns)}); use component = {valid}"
        )
    if columns == ["y"]:
        return "y", "fixed point y*"
    return columns[component], f"fixed point $y_{{{int(component)}}}^*$"


def branches(
    df: pd.DataFrame, *, component: int = 0, ax=None, title: str | None = None
) -> plt.Figure:
    """Fixed points y* against h (a `fixed_point_branches` frame), one state component.

    Colour by `kind`: equilibria of the h → 0 ODE (black), equilibria of the frozen field
    f(·, h) that moved with h, a model effect (blue), and solver-spurious points (red); filled
    markers are stable (every |multiplier| < 1), hollow ones unstable. A frame without `kind`
    is read from `spurious` (True: spurious, False: equilibrium). A scalar system's frame has
    a column `y`; a d-dimensional one has y0, ..., y{d-1}, and `component` picks the one
    drawn (the axis is labelled y_k*).

    Args:
        df: `analysis.stability.fixed_point_branches` rows.
        component: the state component to draw (0 ≤ component < d; a scalar system has only 0).
        ax: an Axes to draw on (default: a new figure).
        title: the panel title.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting, stability
        >>> df = stability.fixed_point_branches("logistic", "Heun", [1.0, 3.0], (-1, 3))
        >>> fig = plotting.branches(df)               # spurious points appear for h > 2
        >>> df.groupby("h")["spurious"].sum().tolist()
        [0, 2]

        A 2-D system (columns y0, y1; equilibria (0, 0) and (3, 1.5)): draw component 1.

        >>> df2 = stability.fixed_point_branches("lotka_volterra", "Euler", [0.1, 0.5],
        ...                                      [(-1, 4), (-1, 4)], n_starts=16)
        >>> fig = plotting.branches(df2, component=1)
        >>> fig.axes[0].get_ylabel(), df2.groupby("h").size().tolist()
        ('fixed point $y_{1}^*$', [2, 2])
    """
    require_columns(df, ["h", "stable", "kind" if "kind" in df else "spurious"], "branches input")
    column, label = _branch_component(df, component)
    kind = (
        df["kind"]
        if "kind" in df
        else pd.Series(np.where(df["spurious"], "spurious", "equilibrium"), index=df.index)
    )
    with paper_style():
        fig, ax = single_axes(ax)
        for value, colour, name in (
            ("equilibrium", "k", "ODE equilibrium"),
            ("model", "tab:blue", "model (moves with h)"),
            ("spurious", "tab:red", "solver-spurious"),
        ):
            if value == "model" and not (kind == "model").any():
                continue
            for stable in (True, False):
                g = df[(kind == value) & (df["stable"] == stable)]
                ax.scatter(
                    g["h"],
                    g[column],
                    s=5,
                    marker="o",
                    facecolors=colour if stable else "none",
                    edgecolors=colour,
                    lw=0.5,
                    label=f"{name}, {'stable' if stable else 'unstable'}",
                )
        ax.set_xlabel("step size h")
        ax.set_ylabel(label)
        if title:
            ax.set_title(title)
        ax.legend(loc="upper left", fontsize="small", markerscale=1.5)
    return fig


def max_step(
    df: pd.DataFrame, *, ax=None, title: str | None = None, legend: bool = True
) -> plt.Figure:
    """Largest stable step against stiffness, log-log, one line per solver.

    `df`: columns solver, stiffness, max_stable_step, h_max (the largest h probed), and
    optionally status (`StabilityBound.status`). A solver stable up to h_max (inf) is drawn at
    h_max with an upward arrow marker; an end with status unknown or branch_lost (stability
    beyond it is not known) with a hollow circle.

    Args:
        df: one row per (solver, stiffness) with `analysis.stability.max_stable_step`'s result.
        ax: an Axes to draw on (default: a new figure).
        title: the panel title.
        legend: draw the legend.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting
        >>> k = np.array([1.0, 10.0, 100.0])                   # y' = -k·y
        >>> df = pd.concat([
        ...     pd.DataFrame({"solver": "Euler", "stiffness": k, "max_stable_step": 2 / k}),
        ...     pd.DataFrame({"solver": "ImplicitEuler", "stiffness": k,
        ...                   "max_stable_step": np.inf})]).assign(h_max=100.0)
        >>> fig = plotting.max_step(df)                  # ImplicitEuler: A-stable, capped
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['Euler', 'ImplicitEuler']
    """
    require_columns(df, ["solver", "stiffness", "max_stable_step", "h_max"], "max_step input")
    with paper_style():
        fig, ax = single_axes(ax)
        for solver, g in df.groupby("solver", sort=False):
            g = g.sort_values("stiffness")
            style = solver_style(solver)
            capped = ~np.isfinite(g["max_stable_step"])
            h = np.where(capped, g["h_max"], g["max_stable_step"])
            ax.plot(g["stiffness"], h, color=style["color"], marker=style["marker"], label=solver)
            ax.plot(
                g["stiffness"][capped], h[capped], ls="none", marker="^", color=style["color"], ms=6
            )
            if "status" in g:  # the stretch ended without instability: unknown beyond
                open_end = g["status"].isin(["unknown", "branch_lost"]).to_numpy()
                ax.plot(
                    g["stiffness"][open_end],
                    h[open_end],
                    ls="none",
                    marker="o",
                    mfc="white",
                    color=style["color"],
                    ms=6,
                )
        log_axis(ax, "x", "stiffness k")
        log_axis(ax, "y", "largest stable step h")
        if title:
            ax.set_title(title)
        if legend:
            ax.legend(loc="lower left", fontsize="small", ncol=2)
    return fig


def step_check(
    df: pd.DataFrame, *, ax=None, title: str | None = None, legend: bool = True
) -> plt.Figure:
    """Errors of real solves near the largest stable step, against stiffness (log-log).

    `df`: columns solver, stiffness, h_over_max_stable, error, status. Filled markers: below
    the largest stable step (ratio < 1); hollow: above it. Non-finite errors sit on the top edge.

    Args:
        df: sweep rows with columns solver, stiffness, h_over_max_stable (h divided by
            `max_stable_step`), error, status.
        ax: an Axes to draw on (default: a new figure).
        title: the panel title.
        legend: draw the legend.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting
        >>> df = pd.DataFrame({"solver": "Euler", "stiffness": [10.0, 10.0, 100.0, 100.0],
        ...                    "h_over_max_stable": [0.9, 1.1, 0.9, 1.1],
        ...                    "error": [1e-3, np.inf, 1e-4, np.inf],   # blown up above 1
        ...                    "status": ["ok", "nonfinite", "ok", "nonfinite"]})
        >>> fig = plotting.step_check(df)
        >>> fig.axes[0].get_yscale()
        'log'
    """
    require_columns(
        df, ["solver", "stiffness", "h_over_max_stable", "error", "status"], "step_check input"
    )
    with paper_style():
        fig, ax = single_axes(ax)
        for solver, g in df.groupby("solver", sort=False):
            style = solver_style(solver)
            for below in (True, False):
                s = g[(g["h_over_max_stable"] < 1) == below]
                err = np.where(np.isfinite(s["error"]), s["error"], np.nan)
                ax.scatter(
                    s["stiffness"],
                    err,
                    marker=style["marker"],
                    facecolors=style["color"] if below else "none",
                    edgecolors=style["color"],
                    label=solver if below else None,
                )
                blown = s[~np.isfinite(s["error"])]
                if blown.empty:  # an empty line in axes coordinates upsets constrained layout
                    continue
                ax.plot(
                    blown["stiffness"],
                    np.ones(len(blown)),
                    ls="none",
                    marker=style["marker"],
                    mfc="none",
                    color=style["color"],
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                )
        log_axis(ax, "x", "stiffness k")
        log_axis(ax, "y", "error at t1")
        if title:
            ax.set_title(title)
        if legend:
            ax.legend(loc="center left", fontsize="small", ncol=2)
    return fig
