"""Controller figures: metric heatmaps, work-precision, step-size histories, spread, y(T) vs rtol.

Each function draws what its producer returns, as returned: `controller_heatmaps` sweep rows
(or a `WorkPrecision`), `work_precision` an `analysis.tolerance.WorkPrecision`,
`step_histories` an `analysis.step_log.StepLog`, `spread_vs_tolerance` an
`analysis.tolerance.Spread`, `output_vs_tolerance` an `analysis.tolerance.OutputVsTolerance`.
Nothing is fitted here: the proportionality slopes in the work-precision legend are the stored
ones. Several systems (or solvers) become separate panels or lines, never one line. Each takes
`axes=` (its panels, in reading order) to draw into an existing figure.

Examples:
    >>> import analysis.plotting as aplt
    >>> from analysis import step_log
    >>> log = step_log.step_log("lotka_volterra", "Tsit5", ["I", "PI34"], rtol=1e-6)
    >>> fig = aplt.step_histories(log)
    >>> [ax.get_legend().get_texts()[0].get_text() for ax in fig.axes]
    ['I: accepted', 'PI34: accepted']
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ..result import Result, require_columns
from ._style import DOUBLE_WIDTH, colorbar, log_axis, panel_grid, paper_style, solver_style

#: Heatmap panels: column -> (title, transform).
HEATMAP_METRICS = {
    "error": ("log10 error at t1", np.log10),
    "nfev": ("log10 nfev", np.log10),
    "rejection_rate": ("rejected / attempted", None),
    "roughness_mean": ("mean |log(h_{n+1}/h_n)|", None),
}

_DASHES = ("-", "--", ":", "-.")


def _table(result, field: str, columns, what: str) -> pd.DataFrame:
    """`result.<field>` with `columns` (require_columns), refusing a bare DataFrame."""
    if isinstance(result, pd.DataFrame):
        raise InvalidArgument(
            f"{what}: result is a DataFrame; pass the typed result its producer returns "
            f"(with a table {field!r})"
        )
    return require_columns(getattr(result, field, None), columns, f"{what}'s result.{field}")


def _panels(frame: pd.DataFrame, keys: list[str]) -> list[tuple]:
    """The distinct values of `keys` in order of appearance, as tuples."""
    return list(dict.fromkeys(frame[keys].itertuples(index=False, name=None)))


def _select(frame: pd.DataFrame, keys: list[str], values: tuple) -> pd.DataFrame:
    mask = np.ones(len(frame), bool)
    for key, value in zip(keys, values, strict=True):
        mask &= (frame[key] == value).to_numpy()
    return frame[mask]


def controller_heatmaps(rows, metrics=tuple(HEATMAP_METRICS), *, axes=None) -> plt.Figure:
    """One heatmap per (metric, system and solver): controllers (rows) × rtol (columns).

    Failed solves (status not "ok") are blank. Colour scales are shared along each metric row.
    With one system the panels are titled by solver, with several by "system: solver".

    Args:
        rows: sweep rows (e.g. `analysis.sweep(..., controller=..., rtol=..., log_steps=...)`)
            with columns solver, controller, rtol, status and the metrics, or a
            `analysis.tolerance.WorkPrecision` (its rows are drawn).
        metrics: keys of HEATMAP_METRICS to draw, one row of panels each.
        axes: len(metrics) × panels Axes to draw into (default: a new figure).

    Returns:
        The Figure: one panel per (metric, solver), a labelled colour bar per metric.

    Examples:
        >>> from analysis import plotting
        >>> rows = pd.DataFrame([dict(solver="Tsit5", controller=c, rtol=r, status="ok",
        ...                           error=k * r, nfev=n * r**-0.2)
        ...                      for c, k, n in (("I", 3.0, 20), ("PI34", 1.0, 25))
        ...                      for r in (1e-3, 1e-6)])
        >>> fig = plotting.controller_heatmaps(rows, metrics=("error", "nfev"))
        >>> fig.axes[0].get_images()[0].get_array().round(6).tolist()   # log10 k·r
        [[-2.522879, -5.522879], [-3.0, -6.0]]
    """
    if isinstance(rows, Result):
        rows = getattr(rows, "rows", None)
    unknown = [m for m in metrics if m not in HEATMAP_METRICS]
    if unknown:
        raise InvalidArgument(
            f"metrics={tuple(metrics)!r} has {unknown[0]!r}; valid metrics: {list(HEATMAP_METRICS)}"
        )
    need = ["solver", "controller", "rtol", "status", *metrics]
    require_columns(rows, need, "controller_heatmaps' rows (sweep rows)")
    keys = ["system", "solver"] if "system" in rows.columns else ["solver"]
    panels = _panels(rows, keys)
    several = len({p[0] for p in panels}) > 1 and len(keys) == 2
    presets = list(dict.fromkeys(rows["controller"]))
    rtols = np.sort(rows["rtol"].unique())[::-1]
    with paper_style():
        fig, axes = panel_grid(
            axes,
            (len(metrics), len(panels)),
            "controller_heatmaps",
            figsize=(min(DOUBLE_WIDTH, 1.2 + 1.9 * len(panels)), 1.2 + 1.5 * len(metrics)),
            sharex=True,
            sharey=True,
        )
        for i, metric in enumerate(metrics):
            title, transform = HEATMAP_METRICS[metric]
            grids = []
            for panel in panels:
                g = _select(rows, keys, panel)
                g = g[g["status"] == "ok"]
                table = g.pivot_table(index="controller", columns="rtol", values=metric)
                table = table.reindex(index=presets, columns=rtols).to_numpy(float)
                grids.append(transform(table) if transform else table)
            finite = np.concatenate([x[np.isfinite(x)] for x in grids] + [np.zeros(0)])
            lo, hi = (finite.min(), finite.max()) if finite.size else (0, 1)
            for j, (panel, grid) in enumerate(zip(panels, grids, strict=True)):
                ax = axes[i, j]
                im = ax.imshow(grid, aspect="auto", vmin=lo, vmax=hi, cmap="viridis")
                ax.grid(False)
                ax.set_yticks(range(len(presets)), presets)
                ax.set_xticks(range(len(rtols)), [f"{np.log10(r):.0f}" for r in rtols])
                if i == 0:
                    ax.set_title(": ".join(map(str, panel)) if several else panel[-1])
                if i == len(metrics) - 1:
                    ax.set_xlabel("log10 rtol")
            colorbar(im, axes[i, -1], title)
    return fig


def _slope_text(fit) -> str:
    if fit is None:
        return "no fit"
    if not np.isfinite(fit["slope"]):
        return fit["status"]
    return f"slope {fit['slope']:.2f}"


def work_precision(result, *, axes=None) -> plt.Figure:
    """Error against nfev (top row) and best wall time (bottom row), one panel per solver.

    One line per (system, controller) in each solver panel (a second system dashed); the
    legend gives each line's tolerance proportionality (slope of log error on log rtol) as
    stored in the result by `analysis.tolerance.work_precision`.

    Args:
        result: what `analysis.tolerance.work_precision` returns (a `WorkPrecision`).
        axes: 2 × solvers Axes to draw into (default: a new figure).

    Returns:
        The Figure (2 × number of solvers panels).

    Examples:
        >>> from analysis import plotting, tolerance
        >>> rows = pd.DataFrame({"system": "linear", "solver": "Tsit5", "controller": "PI34",
        ...                      "status": "ok", "rtol": [1e-3, 1e-6, 1e-9],
        ...                      "error": [2e-4, 2e-7, 2e-10], "nfev": [50, 140, 480],
        ...                      "wall_s": [1e-4, 2e-4, 6e-4]})     # error = rtol / 5
        >>> wp = tolerance.WorkPrecision(rows, tolerance.proportionality(rows))
        >>> fig = plotting.work_precision(wp)
        >>> [ax.get_xlabel() for ax in fig.axes]
        ['function evaluations', 'wall time, best run (s)']
        >>> fig.axes[0].get_legend().get_texts()[0].get_text()
        'PI34 (slope 1.00)'
    """
    need = ["system", "solver", "controller", "rtol", "status", "error", "nfev", "wall_s"]
    rows = _table(result, "rows", need, "work_precision")
    fits = _table(
        result, "proportionality", ["system", "solver", "controller", "slope", "status"],
        "work_precision",
    )  # fmt: skip
    fits = {(f["system"], f["solver"], f["controller"]): f for f in fits.to_dict(orient="records")}
    solvers = list(dict.fromkeys(rows["solver"]))
    systems = list(dict.fromkeys(rows["system"]))
    ok = rows[(rows["status"] == "ok") & (rows["error"] > 0)]
    with paper_style():
        fig, axes = panel_grid(
            axes,
            (2, len(solvers)),
            "work_precision",
            figsize=(min(DOUBLE_WIDTH, 1.0 + 1.9 * len(solvers)), 4.4),
            sharey=True,
        )
        for j, solver in enumerate(solvers):
            lines = ok[ok["solver"] == solver].groupby(["system", "controller"], sort=False)
            for (system, controller), g in lines:
                g = g.sort_values("rtol")
                name = controller if len(systems) == 1 else f"{controller}, {system}"
                label = f"{name} ({_slope_text(fits.get((system, solver, controller)))})"
                dashes = _DASHES[systems.index(system) % len(_DASHES)]
                style = solver_style(controller)
                for i, x in enumerate(("nfev", "wall_s")):
                    axes[i, j].loglog(g[x], g["error"], dashes, label=label, **style)
            axes[0, j].set_title(solver)
            log_axis(axes[0, j], "x", "function evaluations")
            log_axis(axes[1, j], "x", "wall time, best run", "s")
        for ax in axes[:, 0]:
            log_axis(ax, "y", "error at t1")
        axes[0, -1].legend(fontsize=6, ncol=1 if len(solvers) > 1 else 2)
    return fig


def step_histories(log, *, axes=None) -> plt.Figure:
    """Accepted step size against t (lines) and rejected attempts (crosses), a panel per solve.

    Args:
        log: what `analysis.step_log.step_log` returns (a `StepLog`); one panel per (system,
            solver, controller) solve, labelled by the controller (and by the system and
            solver where the log has several).
        axes: one Axes per solve to draw into (default: a new figure).

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting, step_log
        >>> steps = pd.DataFrame({"system": "linear", "solver": "Tsit5", "controller": "PI34",
        ...                       "step": range(4), "t0": [0.0, 0.1, 0.1, 0.15],
        ...                       "h": [0.1, 0.2, 0.05, 0.07],
        ...                       "accepted": [True, False, True, True]})   # one rejected try
        >>> fig = plotting.step_histories(step_log.StepLog(steps, solves=pd.DataFrame()))
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['PI34: accepted', 'rejected (1)']
        >>> fig.axes[0].get_lines()[0].get_ydata().tolist()        # the accepted steps
        [0.1, 0.05, 0.07]
    """
    need = ["system", "solver", "controller", "t0", "h", "accepted"]
    steps = _table(log, "steps", need, "step_histories")
    keys = ["system", "solver", "controller"]
    panels = _panels(steps, keys)
    varying = [k for k in keys[:2] if steps[k].nunique() > 1]
    with paper_style():
        fig, axes = panel_grid(
            axes,
            (len(panels), 1),
            "step_histories",
            figsize=(DOUBLE_WIDTH, 0.4 + 1.3 * len(panels)),
            sharex=True,
            sharey=True,
        )
        for ax, panel in zip(axes[:, 0], panels, strict=True):
            g = _select(steps, keys, panel)
            acc, rej = g[g["accepted"]], g[~g["accepted"]]
            name = ", ".join(str(dict(zip(keys, panel, strict=True))[k]) for k in varying)
            name = f"{panel[2]}, {name}" if name else panel[2]
            style = solver_style(panel[2])
            ax.plot(acc["t0"], acc["h"], color=style["color"], lw=0.8, label=f"{name}: accepted")
            ax.plot(rej["t0"], rej["h"], "x", color="0.2", ms=3, label=f"rejected ({len(rej)})")
            log_axis(ax, "y", "h")
            ax.legend(loc="lower right", ncol=2)
        axes[-1, 0].set_xlabel("t")
    return fig


def spread_vs_tolerance(result, *, axes=None) -> plt.Figure:
    """Spread of the output against rtol, one panel per family, one line per group.

    Draws `analysis.tolerance.spread` output: its groups (the `by` columns but rtol) are the
    lines, e.g. one per system; a `family` column, if grouped by, makes a panel per family.
    Without one there is one panel, titled by the system name(s). A dashed line marks
    spread = rtol.

    Args:
        result: what `analysis.tolerance.spread` returns (a `Spread`).
        axes: one Axes per family to draw into (default: a new figure).

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting, tolerance
        >>> rows = pd.DataFrame({"system": "linear", "controller": ["I", "PI34"] * 2,
        ...                      "rtol": [1e-4, 1e-4, 1e-6, 1e-6], "status": "ok",
        ...                      "y_final_0": [0.36785, 0.36781, 0.3678801, 0.3678797]})
        >>> fig = plotting.spread_vs_tolerance(tolerance.spread(rows))
        >>> [ax.get_title() for ax in fig.axes]
        ['linear']
        >>> fig.axes[0].get_lines()[0].get_ydata().round(10).tolist()   # the stored spread
        [4e-07, 4e-05]
    """
    spread = _table(result, "spread", ["rtol", "spread"], "spread_vs_tolerance")
    if "family" in spread.columns:
        families = list(dict.fromkeys(spread["family"]))
        panels = [(fam, spread[spread["family"] == fam]) for fam in families]
    else:
        names = list(dict.fromkeys(spread["system"])) if "system" in spread.columns else []
        panels = [(", ".join(map(str, names)), spread)]
    stats = ("family", "rtol", "spread", "n", "center")
    line_by = [c for c in spread.columns if c not in stats]
    with paper_style():
        fig, axes = panel_grid(
            axes,
            (1, len(panels)),
            "spread_vs_tolerance",
            figsize=(min(DOUBLE_WIDTH, 0.6 + 2.3 * len(panels)), 2.6),
            sharey=True,
        )
        markers = "os^"
        for ax, (title, s) in zip(axes[0], panels, strict=True):
            lines = s.groupby(line_by, sort=False) if line_by else [(("spread",), s)]
            for k, (key, g) in enumerate(lines):
                g = g.sort_values("rtol")
                ax.loglog(g["rtol"], g["spread"].clip(lower=1e-17), marker=markers[k % 3],
                          label=", ".join(map(str, key)))  # fmt: skip
            r = np.sort(s["rtol"].unique())
            ax.loglog(r, r, "--", color="0.5", lw=0.8, label="spread = rtol")
            if title:
                ax.set_title(title)
            log_axis(ax, "x", "rtol")
        log_axis(axes[0, 0], "y", "spread of y(T) over controllers")
        axes[0, -1].legend(fontsize=6)
    return fig


def output_vs_tolerance(result, *, axes=None) -> plt.Figure:
    """An output minus its reference (y(T) - y_limit(T)) against rtol, one panel per group.

    Args:
        result: what `analysis.tolerance.output_vs_tolerance` returns (an
            `OutputVsTolerance`); its groups (the first column of its jumps) are the panels.
        axes: one Axes per group to draw into (default: a new figure).

    Returns:
        The Figure.

    Examples:
        >>> from analysis import plotting, tolerance
        >>> rtol = np.logspace(-3, -9, 7)
        >>> rows = pd.concat([
        ...     pd.DataFrame({"field": "h-free", "system": "linear", "rtol": rtol,
        ...                   "y_final_0": 1 + 0.1 * rtol}),
        ...     pd.DataFrame({"field": "h input", "system": "perturbed", "rtol": rtol,
        ...                   "y_final_0": 1 + 2e-3 + 0.1 * rtol})]).assign(status="ok")
        >>> fig = plotting.output_vs_tolerance(tolerance.output_vs_tolerance(rows, 1.0, by="field"))
        >>> [ax.get_title() for ax in fig.axes]
        ['h-free: linear', 'h input: perturbed']
    """
    by = _table(result, "jumps", ["largest_jump"], "output_vs_tolerance").columns[0]
    need = ["rtol", "status", "offset", "system", by]
    rows = _table(result, "rows", need, "output_vs_tolerance")
    groups = list(dict.fromkeys(rows[by]))
    with paper_style():
        fig, axes = panel_grid(
            axes, (1, len(groups)), "output_vs_tolerance", figsize=(DOUBLE_WIDTH, 2.4)
        )
        for ax, group in zip(axes[0], groups, strict=True):
            g = rows[(rows[by] == group) & (rows["status"] == "ok")].sort_values("rtol")
            ax.plot(
                g["rtol"], g["offset"], ".-", lw=0.6, ms=2.5, color=solver_style("PI34")["color"]
            )
            ax.axhline(0.0, color="0.5", lw=0.6)
            log_axis(ax, "x", "rtol")
            system = g["system"].iloc[0] if len(g) else ""
            ax.set_title(str(group) if by == "system" else f"{group}: {system}", fontsize=7)
        axes[0, 0].set_ylabel("y(T) - y_limit(T)")
    return fig
