"""Controller figures: metric heatmaps, work-precision, step-size histories, spread, y(T) vs rtol.

Each function takes the DataFrames of `analysis.controllers` / `studies.controllers` and returns
a Figure.

Examples:
    >>> import analysis, analysis.plotting as aplt
    >>> from analysis import controllers
    >>> log = controllers.step_log("lotka_volterra", "Tsit5", "PI34", rtol=1e-6)
    >>> fig = aplt.step_histories(log.assign(controller="PI34"))
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ._style import DOUBLE_WIDTH, colorbar, log_axis, paper_style, solver_style

#: Heatmap panels: column -> (title, transform).
HEATMAP_METRICS = {
    "error": ("log10 error at t1", np.log10),
    "nfev": ("log10 nfev", np.log10),
    "rejection_rate": ("rejected / attempted", None),
    "roughness_mean": ("mean |log(h_{n+1}/h_n)|", None),
}


def controller_heatmaps(rows: pd.DataFrame, metrics=tuple(HEATMAP_METRICS)) -> plt.Figure:
    """One heatmap per (metric, solver): controllers (rows) × rtol (columns).

    Failed solves (status not "ok") are blank. Colour scales are shared along each metric row.

    Args:
        rows: sweep rows (e.g. `analysis.sweep(..., controller=..., rtol=..., log_steps=...)`)
            with columns solver, controller, rtol, status and the metrics.
        metrics: keys of HEATMAP_METRICS to draw, one row of panels each.

    Returns:
        The Figure: one panel per (metric, solver), a labelled colour bar per metric.

    Examples:
        >>> from analysis import plotting
        >>> rows = pd.DataFrame([dict(solver="Tsit5", controller=c, rtol=r, status="ok",
        ...                           error=k * r, nfev=n * r**-0.2)
        ...                      for c, k, n in (("I", 3.0, 20), ("PI34", 1.0, 25))
        ...                      for r in (1e-3, 1e-6)])
        >>> fig = plotting.controller_heatmaps(rows, metrics=("error", "nfev"))
        >>> len(fig.axes)                                  # 2 panels and 2 colour bars
        4
    """
    solvers = list(dict.fromkeys(rows["solver"]))
    presets = list(dict.fromkeys(rows["controller"]))
    rtols = np.sort(rows["rtol"].unique())[::-1]
    with paper_style():
        fig, axes = plt.subplots(
            len(metrics),
            len(solvers),
            figsize=(min(DOUBLE_WIDTH, 1.2 + 1.9 * len(solvers)), 1.2 + 1.5 * len(metrics)),
            squeeze=False,
            sharex=True,
            sharey=True,
            constrained_layout=True,
        )
        for i, metric in enumerate(metrics):
            title, transform = HEATMAP_METRICS[metric]
            grids = []
            for solver in solvers:
                g = rows[(rows["solver"] == solver) & (rows["status"] == "ok")]
                table = g.pivot_table(index="controller", columns="rtol", values=metric)
                table = table.reindex(index=presets, columns=rtols).to_numpy(float)
                grids.append(transform(table) if transform else table)
            finite = np.concatenate([x[np.isfinite(x)] for x in grids] + [np.zeros(0)])
            lo, hi = (finite.min(), finite.max()) if finite.size else (0, 1)
            for j, (solver, grid) in enumerate(zip(solvers, grids, strict=True)):
                ax = axes[i, j]
                im = ax.imshow(grid, aspect="auto", vmin=lo, vmax=hi, cmap="viridis")
                ax.grid(False)
                ax.set_yticks(range(len(presets)), presets)
                ax.set_xticks(range(len(rtols)), [f"{np.log10(r):.0f}" for r in rtols])
                if i == 0:
                    ax.set_title(solver)
                if i == len(metrics) - 1:
                    ax.set_xlabel("log10 rtol")
            colorbar(im, axes[i, -1], title)
    return fig


def work_precision_plot(rows: pd.DataFrame) -> plt.Figure:
    """Error against nfev (top row) and best wall time (bottom row), one panel per solver.

    Args:
        rows: `analysis.controllers.work_precision` rows (solver, controller, rtol, status,
            error, nfev, wall_s); one line per controller.

    Returns:
        The Figure (2 × number of solvers panels).

    Examples:
        >>> from analysis import plotting
        >>> rows = pd.DataFrame({"solver": "Tsit5", "controller": "PI34", "status": "ok",
        ...                      "rtol": [1e-3, 1e-6, 1e-9], "error": [2e-4, 3e-7, 4e-10],
        ...                      "nfev": [50, 140, 480], "wall_s": [1e-4, 2e-4, 6e-4]})
        >>> fig = plotting.work_precision_plot(rows)
        >>> [ax.get_xlabel() for ax in fig.axes]
        ['function evaluations', 'wall time, best run (s)']
    """
    solvers = list(dict.fromkeys(rows["solver"]))
    ok = rows[(rows["status"] == "ok") & (rows["error"] > 0)]
    with paper_style():
        fig, axes = plt.subplots(
            2,
            len(solvers),
            figsize=(min(DOUBLE_WIDTH, 1.0 + 1.9 * len(solvers)), 4.4),
            squeeze=False,
            sharey=True,
            constrained_layout=True,
        )
        for j, solver in enumerate(solvers):
            for (controller,), g in ok[ok["solver"] == solver].groupby(["controller"], sort=False):
                g = g.sort_values("rtol")
                style = solver_style(controller)
                for i, x in enumerate(("nfev", "wall_s")):
                    axes[i, j].loglog(g[x], g["error"], label=controller, **style)
            axes[0, j].set_title(solver)
            log_axis(axes[0, j], "x", "function evaluations")
            log_axis(axes[1, j], "x", "wall time, best run", "s")
        for ax in axes[:, 0]:
            log_axis(ax, "y", "error at t1")
        axes[0, -1].legend(fontsize=6, ncol=1 if len(solvers) > 1 else 2)
    return fig


def step_histories(logs: pd.DataFrame) -> plt.Figure:
    """Accepted step size against t (lines) and rejected attempts (crosses), per controller.

    Args:
        logs: `analysis.controllers.step_log` frames with a column controller added (t0, h,
            accepted), one panel per controller.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting
        >>> logs = pd.DataFrame({"controller": "PI34", "t0": [0.0, 0.1, 0.1, 0.15],
        ...                      "h": [0.1, 0.2, 0.05, 0.07],
        ...                      "accepted": [True, False, True, True]})   # one rejected try
        >>> fig = plotting.step_histories(logs)
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['PI34: accepted', 'rejected (1)']
    """
    controllers = list(dict.fromkeys(logs["controller"]))
    with paper_style():
        fig, axes = plt.subplots(
            len(controllers),
            1,
            figsize=(DOUBLE_WIDTH, 0.4 + 1.3 * len(controllers)),
            sharex=True,
            sharey=True,
            squeeze=False,
            constrained_layout=True,
        )
        for ax, name in zip(axes[:, 0], controllers, strict=True):
            log = logs[logs["controller"] == name]
            acc, rej = log[log["accepted"]], log[~log["accepted"]]
            style = solver_style(name)
            ax.plot(acc["t0"], acc["h"], color=style["color"], lw=0.8, label=f"{name}: accepted")
            ax.plot(rej["t0"], rej["h"], "x", color="0.2", ms=3, label=f"rejected ({len(rej)})")
            log_axis(ax, "y", "h")
            ax.legend(loc="lower right", ncol=2)
        axes[-1, 0].set_xlabel("t")
    return fig


def spread_vs_tolerance(spread: pd.DataFrame) -> plt.Figure:
    """Spread of the output against rtol, one panel per family, one line per variant.

    Takes `analysis.controllers.spread` output directly: without a `family` column there is one
    panel (titled by the system name(s), if there is a `system` column); without a `variant`
    column there is one line per system (or a single line). A dashed line marks spread = rtol.

    Args:
        spread: `analysis.controllers.spread` output: columns rtol and spread, and optionally
            family (one panel each), variant (one line each) and system.

    Returns:
        The Figure.

    Examples:
        >>> from analysis import controllers, plotting
        >>> rows = pd.DataFrame({"system": "linear", "controller": ["I", "PI34"] * 2,
        ...                      "rtol": [1e-4, 1e-4, 1e-6, 1e-6], "status": "ok",
        ...                      "y_final_0": [0.36785, 0.36781, 0.3678801, 0.3678797]})
        >>> fig = plotting.spread_vs_tolerance(controllers.spread(rows))
        >>> [ax.get_title() for ax in fig.axes]
        ['linear']

        The controllers study groups by ("family", "variant", "rtol"): a panel per family.

        >>> rtol = np.array([1e-3, 1e-5, 1e-7])
        >>> spread = pd.concat([
        ...     pd.DataFrame({"family": "perturbed", "variant": "h input", "rtol": rtol,
        ...                   "spread": 1e-3 + 0 * rtol}),     # the controller changes the model
        ...     pd.DataFrame({"family": "perturbed", "variant": "h-free limit", "rtol": rtol,
        ...                   "spread": rtol / 3})])           # at the level of the tolerance
        >>> fig = plotting.spread_vs_tolerance(spread)
        >>> [ax.get_title() for ax in fig.axes]
        ['perturbed']
    """
    missing = {"rtol", "spread"} - set(spread.columns)
    if missing:
        raise InvalidArgument(
            f"spread has no column(s) {sorted(missing)}: pass analysis.controllers.spread output "
            f"(its columns are {list(spread.columns)})"
        )
    if "family" in spread.columns:
        families = list(dict.fromkeys(spread["family"]))
        panels = [(fam, spread[spread["family"] == fam]) for fam in families]
    else:
        names = list(dict.fromkeys(spread["system"])) if "system" in spread.columns else []
        panels = [(", ".join(map(str, names)), spread)]
    line_by = next((c for c in ("variant", "system") if c in spread.columns), None)
    with paper_style():
        fig, axes = plt.subplots(
            1,
            len(panels),
            figsize=(min(DOUBLE_WIDTH, 0.6 + 2.3 * len(panels)), 2.6),
            squeeze=False,
            sharey=True,
            constrained_layout=True,
        )
        markers = "os^"
        for ax, (title, s) in zip(axes[0], panels, strict=True):
            lines = s.groupby(line_by, sort=False) if line_by else [("spread", s)]
            for k, (variant, g) in enumerate(lines):
                g = g.sort_values("rtol")
                ax.loglog(g["rtol"], g["spread"].clip(lower=1e-17), marker=markers[k % 3],
                          label=variant)  # fmt: skip
            r = np.sort(s["rtol"].unique())
            ax.loglog(r, r, "--", color="0.5", lw=0.8, label="spread = rtol")
            if title:
                ax.set_title(title)
            log_axis(ax, "x", "rtol")
        log_axis(axes[0, 0], "y", "spread of y(T) over controllers")
        axes[0, -1].legend(fontsize=6)
    return fig


def output_vs_tolerance(rows: pd.DataFrame) -> plt.Figure:
    """y(T) minus the limit's value against rtol on a fine grid, one panel per field.

    Args:
        rows: sweep rows with columns field (the panel), system, status, rtol and offset
            (y(T) minus the limit ODE's y(T)).

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting
        >>> rtol = np.logspace(-3, -9, 7)
        >>> rows = pd.concat([
        ...     pd.DataFrame({"field": "h-free", "system": "linear", "rtol": rtol,
        ...                   "offset": 0.1 * rtol}),
        ...     pd.DataFrame({"field": "h input", "system": "perturbed", "rtol": rtol,
        ...                   "offset": 2e-3 + 0.1 * rtol})]).assign(status="ok")
        >>> fig = plotting.output_vs_tolerance(rows)
        >>> [ax.get_title() for ax in fig.axes]
        ['h-free: linear', 'h input: perturbed']
    """
    fields = list(dict.fromkeys(rows["field"]))
    with paper_style():
        fig, axes = plt.subplots(
            1, len(fields), figsize=(DOUBLE_WIDTH, 2.4), squeeze=False, constrained_layout=True
        )
        for ax, field in zip(axes[0], fields, strict=True):
            g = rows[(rows["field"] == field) & (rows["status"] == "ok")].sort_values("rtol")
            ax.plot(
                g["rtol"], g["offset"], ".-", lw=0.6, ms=2.5, color=solver_style("PI34")["color"]
            )
            ax.axhline(0.0, color="0.5", lw=0.6)
            log_axis(ax, "x", "rtol")
            ax.set_title(f"{field}: {g['system'].iloc[0] if len(g) else ''}", fontsize=7)
        axes[0, 0].set_ylabel("y(T) - y_limit(T)")
    return fig
