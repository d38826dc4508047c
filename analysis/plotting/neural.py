"""Neural-field figures: the train × test discretization matrix, trajectories, step sensitivity,
the step-adaptation check.

Each function takes exactly what its producer in `analysis.neural` returns (a typed result), or
a list of such results (e.g. one per trained model), draws it and returns the Figure. A missing
column is an InvalidArgument naming it. `axes` (default: a new figure) may be the Axes to draw
on, as many as the figure has panels, in row-major order.

Examples:
    >>> from analysis import models, neural, systems, training
    >>> import analysis.plotting as aplt
    >>> spiral = systems.get("linear10", dim=2, seed=0)
    >>> data = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=0)
    >>> euler = training.Discretization("Euler", h=0.5)
    >>> model, _ = training.train(models.make("h_input", spiral), data, euler, steps=20)
    >>> tests = [training.Discretization(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
    >>> matrix = neural.discretization_matrix(model, euler, tests, data)
    >>> fig = aplt.discretization_heatmaps(matrix)
    >>> len(fig.axes)  # one heatmap (one model kind) and its colour bar
    2
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ..result import require_columns
from ._style import DOUBLE_WIDTH, log_axis, panel_grid, paper_style

#: One colour per model kind (and black for the truth), the same in every neural figure.
KIND_COLOURS = {"h_input": "tab:red", "h_free": "tab:blue", "hypersolver": "tab:green"}
KIND_LABELS = {
    "h_input": "h-input MLP f(y, h)",
    "h_free": "h-free MLP f(y)",
    "hypersolver": "hypersolver f + h·g(y, h)",
}


def _ordered(series: pd.Series) -> list:
    return list(dict.fromkeys(series))


def _table(result, field: str, columns, producer: str) -> pd.DataFrame:
    """The `field` table of a result of `producer` (or of a list of them, concatenated)."""
    results = list(result) if isinstance(result, list | tuple) else [result]
    frames = []
    for r in results:
        frame = getattr(r, field, None)
        if not isinstance(frame, pd.DataFrame):
            raise InvalidArgument(
                f"got a {type(r).__name__}; give what analysis.neural.{producer} returns "
                "(or a list of such results)"
            )
        frames.append(frame)
    if not frames:
        raise InvalidArgument(f"got no results; give what analysis.neural.{producer} returns")
    table = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return require_columns(table, columns, f"{producer}(...).{field}")


def discretization_heatmaps(matrix, *, axes=None) -> plt.Figure:
    """One heatmap per model kind: train settings (rows) × test settings (columns).

    Colour and number: log10 of the held-out RMS error; failed solves are blank; the cell
    where the test setting is the training setting is outlined. One shared colour scale.

    Args:
        matrix: what `analysis.neural.discretization_matrix` returns, or a list of them (any
            number of models and training settings).
        axes: one Axes per model kind (default: a new figure).

    Returns:
        The figure: one heatmap axes per model kind, and a colour bar.

    Examples:
        >>> from analysis import models, neural, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> D = training.Discretization
        >>> tests = [D(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
        >>> model = models.make("h_input", spiral)   # untrained here; see training.train
        >>> matrix = neural.discretization_matrix(model, tests[0], tests, test)
        >>> fig = discretization_heatmaps(matrix)
        >>> image = fig.axes[0].images[0].get_array()      # log10 error, one training row
        >>> bool(np.allclose(image[0], np.log10(matrix.rows["error"])))
        True
    """
    columns = ("model", "train_setting", "test_setting", "status", "error")
    matrix = _table(matrix, "rows", columns, "discretization_matrix")
    kinds = _ordered(matrix["model"])
    trains = _ordered(matrix["train_setting"])
    tests = _ordered(matrix["test_setting"])
    logs = np.log10(matrix["error"].where(matrix["status"] == "ok"))
    lo, hi = np.nanmin(logs), np.nanmax(logs)
    with paper_style():
        fig, grid_axes = panel_grid(
            axes,
            (len(kinds), 1),
            "discretization_heatmaps",
            figsize=(DOUBLE_WIDTH, 0.9 + (0.45 + 0.3 * len(trains)) * len(kinds)),
            sharex=True,
        )
        for ax, kind in zip(grid_axes[:, 0], kinds, strict=True):
            rows = matrix[matrix["model"] == kind].assign(log_error=logs)
            grid = rows.pivot_table(
                index="train_setting", columns="test_setting", values="log_error"
            )
            grid = grid.reindex(index=trains, columns=tests).to_numpy(float)
            im = ax.imshow(grid, aspect="auto", vmin=lo, vmax=hi, cmap="viridis")
            ax.grid(False)
            for (i, j), value in np.ndenumerate(grid):
                if np.isfinite(value):
                    shade = "white" if value < (lo + hi) / 2 else "black"
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=5, color=shade)
                if trains[i] == tests[j]:
                    ax.add_patch(
                        plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="white", lw=1.2)
                    )
            ax.set_yticks(range(len(trains)), [f"train {t}" for t in trains])
            ax.set_title(KIND_LABELS.get(kind, kind))
        grid_axes[-1, 0].set_xticks(range(len(tests)), tests, rotation=90)
        grid_axes[-1, 0].set_xlabel("test setting")
        # One bar for the whole column (the house `colorbar` takes a single axes).
        bar = fig.colorbar(im, ax=grid_axes[:, 0])
        bar.set_label("log10 RMS error on held-out trajectories")
    return fig


def trajectory_panels(predictions, *, axes=None) -> plt.Figure:
    """Phase-plane trajectories (y0 against y1), one panel per (model kind, train setting),
    truth in black. Each step h is one shade, darker for smaller h.

    Args:
        predictions: what `analysis.neural.predictions` returns, or a list of them (e.g. one
            per trained model, each with its train_setting).
        axes: (model kinds) × (train settings) Axes, row-major (default: a new figure).

    Returns:
        The figure, (model kinds) × (train settings) panels.

    Examples:
        >>> from analysis import models, neural, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> euler = [training.Discretization("Euler", h=h) for h in (0.5, 0.25)]
        >>> states = neural.predictions(models.make("h_input", spiral), euler, test)
        >>> fig = trajectory_panels(states)
        >>> truth, coarse, fine = fig.axes[0].lines              # truth, h = 0.5, h = 0.25
        >>> bool(np.array_equal(truth.get_xdata(), test.ys[0, :, 0]))
        True
    """
    rows = _table(predictions, "rows", ("model", "train_setting", "h", "y0", "y1"), "predictions")
    truth = _table(predictions, "truth", ("trajectory", "y0", "y1"), "predictions")
    truth = truth.drop_duplicates()
    kinds, trains = _ordered(rows["model"]), _ordered(rows["train_setting"])
    hs = np.sort(rows["h"].unique())[::-1]
    shades = plt.get_cmap("plasma")(np.linspace(0.15, 0.8, len(hs)))
    with paper_style():
        fig, grid_axes = panel_grid(
            axes,
            (len(kinds), len(trains)),
            "trajectory_panels",
            figsize=(DOUBLE_WIDTH * min(1.0, 0.35 * len(trains) + 0.1), 1.9 * len(kinds)),
            sharex=True,
            sharey=True,
        )
        for i, kind in enumerate(kinds):
            for j, train in enumerate(trains):
                ax = grid_axes[i, j]
                for k, (_, line) in enumerate(truth.groupby("trajectory", sort=False)):
                    ax.plot(line["y0"], line["y1"], "k-", lw=1.4, label="truth" if k == 0 else None)
                for h, shade in zip(hs, shades, strict=True):
                    g = rows[(rows["model"] == kind) & (rows["train_setting"] == train)]
                    g = g[g["h"] == h]
                    ax.plot(g["y0"], g["y1"], "o-", ms=2.5, lw=0.9, color=shade, label=f"h={h:g}")
                trained = f"\ntrained {train}" if train else ""
                ax.set_title(f"{KIND_LABELS.get(kind, kind)}{trained}", fontsize=7)
                if i == len(kinds) - 1:
                    ax.set_xlabel("y0")
                if j == 0:
                    ax.set_ylabel("y1")
        grid_axes[0, -1].legend(title="test step (train solver)", fontsize=6, loc="best")
    return fig


def step_sensitivity(sensitivity, *, axes=None) -> plt.Figure:
    """Loss (top), d(loss)/dh (middle) and d(loss)/d(h input) (bottom, if present) against h at
    fixed steps, one column per training setting, one line per model kind; a dotted line marks
    the training step (where train_h is known). Adaptive rows are left out.

    Args:
        sensitivity: what `analysis.neural.step_sensitivity` returns, or a list of them (e.g.
            wrt="h" and wrt="h_input" for each trained model).
        axes: (1 + number of derivatives) × (train settings) Axes, row-major (default: new).

    Returns:
        The figure: (1 + number of derivatives) rows × (train settings) columns.

    Examples:
        >>> from analysis import models, neural, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> model = models.make("h_input", spiral)  # untrained here; see training.train
        >>> result = neural.step_sensitivity(model, test, "Euler", hs=[0.5, 0.25])
        >>> fig = step_sensitivity(result)
        >>> loss, slope = fig.axes                               # loss and d(loss)/dh
        >>> bool(np.array_equal(slope.lines[0].get_ydata(), result.rows["dloss"][::-1]))
        True
    """
    columns = ("model", "train_setting", "train_h", "solver", "control", "h", "loss", "dloss")
    sensitivity = _table(sensitivity, "rows", (*columns, "wrt"), "step_sensitivity")
    fixed = sensitivity[sensitivity["control"] == "fixed"]
    if fixed.empty:
        raise InvalidArgument("step_sensitivity(...).rows has no fixed-step rows to draw")
    trains = _ordered(fixed["train_setting"])
    derivatives = [w for w in ("h", "h_input") if (fixed["wrt"] == w).any()]
    labels = {"h": "d(loss)/dh, n fixed", "h_input": "d(loss)/d(h input)"}
    with paper_style():
        fig, grid_axes = panel_grid(
            axes,
            (1 + len(derivatives), len(trains)),
            "step_sensitivity",
            figsize=(DOUBLE_WIDTH, 1.2 + 1.5 * len(derivatives)),
            sharex="col",
        )
        for j, train in enumerate(trains):
            g = fixed[fixed["train_setting"] == train]
            for kind, k in g.groupby("model", sort=False):
                style = dict(color=KIND_COLOURS.get(kind), marker="o", ms=3)
                first = k[k["wrt"] == derivatives[0]].sort_values("h")
                grid_axes[0, j].plot(
                    first["h"], first["loss"], label=KIND_LABELS.get(kind, kind), **style
                )
                for i, wrt in enumerate(derivatives, start=1):
                    d = k[k["wrt"] == wrt].sort_values("h")
                    grid_axes[i, j].plot(d["h"], d["dloss"], **style)
            train_h = g["train_h"].iloc[0]
            for ax in grid_axes[:, j]:
                log_axis(ax, "x", "step size h")
                if np.isfinite(train_h):
                    ax.axvline(train_h, color="0.5", ls=":", lw=1)
            grid_axes[0, j].set_yscale("log")
            trained = f"trained {train}; " if train else ""
            grid_axes[0, j].set_title(f"{trained}tested with {g['solver'].iloc[0]}")
            for i, wrt in enumerate(derivatives, start=1):
                values = np.abs(g.loc[g["wrt"] == wrt, "dloss"].to_numpy())
                scale = np.nanmax(values) if values.size and np.nanmax(values) > 0 else 1.0
                grid_axes[i, j].set_yscale("symlog", linthresh=scale * 1e-3, linscale=1.5)
                grid_axes[i, j].axhline(0.0, color="0.3", lw=0.6)
        grid_axes[0, 0].set_ylabel("held-out loss (MSE)")
        for i, wrt in enumerate(derivatives, start=1):
            grid_axes[i, 0].set_ylabel(labels[wrt])
        grid_axes[0, 0].legend(fontsize=6)
    return fig


def step_adaptation(check, *, axes=None) -> plt.Figure:
    """Ott et al.'s check: error under the starting solver (solid) and the accurate test solver
    (dashed) as h is halved, one panel per starting discretization (the training setting); a
    star marks the first h where they agree.

    Args:
        check: what `analysis.neural.step_adaptation` returns, or a list of them.
        axes: one Axes per starting discretization (default: a new figure).

    Returns:
        The figure, one panel per starting discretization.

    Examples:
        >>> from analysis import models, neural, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> model = models.make("h_input", spiral)  # untrained here; see training.train
        >>> check = neural.step_adaptation(model, test, solver="Euler", h=0.5, max_halvings=1)
        >>> solid, dashed, *star = step_adaptation(check).axes[0].lines
        >>> bool(np.array_equal(solid.get_ydata(), check.rows["error_solver"]))
        True
    """
    columns = ("model", "start", "test_solver", "h", "error_solver", "error_test")
    rows = _table(check, "rows", columns, "step_adaptation")
    summary = _table(check, "summary", ("model", "start", "step"), "step_adaptation")
    steps = summary.set_index(["model", "start"])["step"]
    starts = _ordered(rows["start"])
    with paper_style():
        fig, grid_axes = panel_grid(
            axes,
            (1, len(starts)),
            "step_adaptation",
            figsize=(DOUBLE_WIDTH, 2.6),
            sharey=True,
        )
        for ax, start in zip(grid_axes[0], starts, strict=True):
            g = rows[rows["start"] == start]
            for kind, k in g.groupby("model", sort=False):
                colour = KIND_COLOURS.get(kind)
                ax.plot(
                    k["h"],
                    k["error_solver"],
                    "o-",
                    ms=3,
                    color=colour,
                    label=KIND_LABELS.get(kind, kind),
                )
                ax.plot(k["h"], k["error_test"], "s--", ms=3, color=colour, alpha=0.7)
                step = steps.loc[(kind, start)]
                if np.isfinite(step):
                    at = k[k["h"] == step]
                    ax.plot(at["h"], at["error_solver"], "*", ms=10, color=colour, mec="k")
            log_axis(ax, "x", "step size h")
            ax.set_yscale("log")
            ax.set_title(f"trained {start} (solid) vs {g['test_solver'].iloc[0]} (dashed)")
        grid_axes[0, 0].set_ylabel("RMS error, held-out")
        grid_axes[0, 0].legend(fontsize=6)
    return fig
