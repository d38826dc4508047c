"""Neural-field figures: the train × test discretization matrix, trajectories, step sensitivity.

Each function takes the tidy DataFrames of `analysis.neural` (as collected by `studies.neural`)
and returns a Figure.

Examples:
    >>> from analysis import neural, systems
    >>> import analysis.plotting as aplt
    >>> spiral = systems.get("linear10", dim=2, seed=0)
    >>> data = neural.trajectories(spiral, 4, horizon=2.0, saves=5, seed=0)
    >>> euler = neural.Setting("Euler", h=0.5)
    >>> model, _ = neural.train(neural.make("h_input", spiral), data, euler, steps=20)
    >>> tests = [neural.Setting(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
    >>> matrix = neural.discretization_matrix(model, euler, tests, data)
    >>> fig = aplt.discretization_heatmaps(matrix)
    >>> len(fig.axes)  # one heatmap (one model kind) and its colour bar
    2
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ._style import DOUBLE_WIDTH, log_axis, paper_style

#: One colour per model kind (and black for the truth), the same in every neural figure.
KIND_COLOURS = {"h_input": "tab:red", "h_free": "tab:blue", "hypersolver": "tab:green"}
KIND_LABELS = {
    "h_input": "h-input MLP f(y, h)",
    "h_free": "h-free MLP f(y)",
    "hypersolver": "hypersolver f + h·g(y, h)",
}


def _ordered(series: pd.Series) -> list:
    return list(dict.fromkeys(series))


def discretization_heatmaps(matrix: pd.DataFrame) -> plt.Figure:
    """One heatmap per model kind: train settings (rows) × test settings (columns).

    Colour and number: log10 of the held-out RMS error; failed solves are blank; the cell
    where the test setting is the training setting is outlined. One shared colour scale.

    Args:
        matrix: rows of `analysis.neural.discretization_matrix` (columns model, train_setting,
            test_setting, status, error), for any number of models and training settings.

    Returns:
        The figure: one heatmap axes per model kind, and a colour bar.

    Examples:
        >>> from analysis import neural, systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = neural.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> model = neural.make("h_input", spiral)  # untrained here; see neural.train
        >>> tests = [neural.Setting(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
        >>> matrix = neural.discretization_matrix(model, tests[0], tests, test)
        >>> len(discretization_heatmaps(matrix).axes)  # one model kind, and the colour bar
        2
    """
    kinds = _ordered(matrix["model"])
    trains = _ordered(matrix["train_setting"])
    tests = _ordered(matrix["test_setting"])
    logs = np.log10(matrix["error"].where(matrix["status"] == "ok"))
    lo, hi = np.nanmin(logs), np.nanmax(logs)
    with paper_style():
        fig, axes = plt.subplots(
            len(kinds),
            1,
            figsize=(DOUBLE_WIDTH, 0.9 + (0.45 + 0.3 * len(trains)) * len(kinds)),
            squeeze=False,
            sharex=True,
            constrained_layout=True,
        )
        for ax, kind in zip(axes[:, 0], kinds, strict=True):
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
        axes[-1, 0].set_xticks(range(len(tests)), tests, rotation=90)
        axes[-1, 0].set_xlabel("test setting")
        # One bar for the whole column (the house `colorbar` takes a single axes).
        bar = fig.colorbar(im, ax=axes[:, 0])
        bar.set_label("log10 RMS error on held-out trajectories")
    return fig


def trajectory_panels(trajectories: pd.DataFrame) -> plt.Figure:
    """Phase-plane trajectories, one panel per (model kind, train setting), truth in black.

    `trajectories` has columns model, train_setting, test_h, t, y0, y1; rows with model
    "truth" are the reference. Each test h is one shade, darker for smaller h.

    Args:
        trajectories: as collected by `studies.neural` from `analysis.neural.predictions`.

    Returns:
        The figure, (model kinds) × (train settings) panels.

    Examples:
        >>> from analysis import neural, systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = neural.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> model = neural.make("h_input", spiral)  # untrained here; see neural.train
        >>> tests = [neural.Setting(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
        >>> states = neural.predictions(model, tests, test).query("solver == 'Euler'")
        >>> states = states.rename(columns={"h": "test_h"}).assign(train_setting="Euler h=0.5")
        >>> truth = pd.DataFrame({"model": "truth", "t": test.ts, "y0": test.ys[0, :, 0],
        ...                       "y1": test.ys[0, :, 1]})
        >>> fig = trajectory_panels(pd.concat([truth, states]))
        >>> len(fig.axes)  # one model kind, one training setting
        1
    """
    truth = trajectories[trajectories["model"] == "truth"]
    rows = trajectories[trajectories["model"] != "truth"]
    kinds, trains = _ordered(rows["model"]), _ordered(rows["train_setting"])
    hs = np.sort(rows["test_h"].unique())[::-1]
    shades = plt.get_cmap("plasma")(np.linspace(0.15, 0.8, len(hs)))
    with paper_style():
        fig, axes = plt.subplots(
            len(kinds),
            len(trains),
            figsize=(DOUBLE_WIDTH * min(1.0, 0.35 * len(trains) + 0.1), 1.9 * len(kinds)),
            squeeze=False,
            sharex=True,
            sharey=True,
            constrained_layout=True,
        )
        for i, kind in enumerate(kinds):
            for j, train in enumerate(trains):
                ax = axes[i, j]
                ax.plot(truth["y0"], truth["y1"], "k-", lw=1.4, label="truth")
                for h, shade in zip(hs, shades, strict=True):
                    g = rows[
                        (rows["model"] == kind)
                        & (rows["train_setting"] == train)
                        & (rows["test_h"] == h)
                    ]
                    ax.plot(g["y0"], g["y1"], "o-", ms=2.5, lw=0.9, color=shade, label=f"h={h:g}")
                ax.set_title(f"{KIND_LABELS.get(kind, kind)}\ntrained {train}", fontsize=7)
                if i == len(kinds) - 1:
                    ax.set_xlabel("y0")
                if j == 0:
                    ax.set_ylabel("y1")
        axes[0, -1].legend(title="test step (train solver)", fontsize=6, loc="best")
    return fig


def step_sensitivity_plot(sensitivity: pd.DataFrame) -> plt.Figure:
    """Loss (top), d(loss)/dh (middle) and d(loss)/d(h input) (bottom, if present) against h at
    fixed steps, one column per training setting, one line per model kind; a dotted line marks
    the training step (column train_h, if present).

    Args:
        sensitivity: rows of `analysis.neural.step_sensitivity` with a train_setting column
            added (and train_h, optionally); adaptive rows are left out.

    Returns:
        The figure: (1 + number of derivatives) rows × (train settings) columns.

    Examples:
        >>> from analysis import neural, systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = neural.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> model = neural.make("h_input", spiral)  # untrained here; see neural.train
        >>> rows = neural.step_sensitivity(model, test, "Euler", hs=[0.5, 0.25])
        >>> fig = step_sensitivity_plot(rows.assign(train_setting="Euler h=0.5", train_h=0.5))
        >>> len(fig.axes)  # loss and d(loss)/dh
        2
    """
    fixed = sensitivity[sensitivity["control"] == "fixed"]
    trains = _ordered(fixed["train_setting"])
    derivatives = [w for w in ("h", "h_input") if (fixed["wrt"] == w).any()]
    labels = {"h": "d(loss)/dh, n fixed", "h_input": "d(loss)/d(h input)"}
    with paper_style():
        fig, axes = plt.subplots(
            1 + len(derivatives),
            len(trains),
            figsize=(DOUBLE_WIDTH, 1.2 + 1.5 * len(derivatives)),
            squeeze=False,
            sharex="col",
            constrained_layout=True,
        )
        for j, train in enumerate(trains):
            g = fixed[fixed["train_setting"] == train]
            for kind, k in g.groupby("model", sort=False):
                style = dict(color=KIND_COLOURS.get(kind), marker="o", ms=3)
                first = k[k["wrt"] == derivatives[0]].sort_values("h")
                axes[0, j].plot(first["h"], first["loss"], label=KIND_LABELS.get(kind), **style)
                for i, wrt in enumerate(derivatives, start=1):
                    d = k[k["wrt"] == wrt].sort_values("h")
                    axes[i, j].plot(d["h"], d["dloss"], **style)
            for ax in axes[:, j]:
                log_axis(ax, "x", "step size h")
                if "train_h" in g:
                    ax.axvline(g["train_h"].iloc[0], color="0.5", ls=":", lw=1)
            axes[0, j].set_yscale("log")
            axes[0, j].set_title(f"trained {train}; tested with {g['solver'].iloc[0]}")
            for i, wrt in enumerate(derivatives, start=1):
                values = np.abs(g.loc[g["wrt"] == wrt, "dloss"].to_numpy())
                scale = np.nanmax(values) if values.size and np.nanmax(values) > 0 else 1.0
                axes[i, j].set_yscale("symlog", linthresh=scale * 1e-3, linscale=1.5)
                axes[i, j].axhline(0.0, color="0.3", lw=0.6)
        axes[0, 0].set_ylabel("held-out loss (MSE)")
        for i, wrt in enumerate(derivatives, start=1):
            axes[i, 0].set_ylabel(labels[wrt])
        axes[0, 0].legend(fontsize=6)
    return fig


def step_adaptation_plot(step_check: pd.DataFrame) -> plt.Figure:
    """Ott et al.'s check: error under the training solver (solid) and the accurate test solver
    (dashed) as h is halved, one panel per training setting; a star marks the first h where
    they agree.

    Args:
        step_check: `analysis.neural.step_adaptation(...).table` rows with columns model,
            train_setting, test_solver and step (NaN if none) added, as in `studies.neural`.

    Returns:
        The figure, one panel per training setting.

    Examples:
        >>> from analysis import neural, systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = neural.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> model = neural.make("h_input", spiral)  # untrained here; see neural.train
        >>> check = neural.step_adaptation(model, test, solver="Euler", h=0.5, max_halvings=1)
        >>> table = check.table.assign(model="h_input", train_setting="Euler h=0.5",
        ...                            test_solver="Tsit5", step=check.step or np.nan)
        >>> len(step_adaptation_plot(table).axes)
        1
    """
    trains = _ordered(step_check["train_setting"])
    with paper_style():
        fig, axes = plt.subplots(
            1,
            len(trains),
            figsize=(DOUBLE_WIDTH, 2.6),
            squeeze=False,
            sharey=True,
            constrained_layout=True,
        )
        for ax, train in zip(axes[0], trains, strict=True):
            g = step_check[step_check["train_setting"] == train]
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
                step = k["step"].iloc[0]
                if np.isfinite(step):
                    at = k[k["h"] == step]
                    ax.plot(at["h"], at["error_solver"], "*", ms=10, color=colour, mec="k")
            log_axis(ax, "x", "step size h")
            ax.set_yscale("log")
            ax.set_title(f"trained {train} (solid) vs {g['test_solver'].iloc[0]} (dashed)")
        axes[0, 0].set_ylabel("RMS error, held-out")
        axes[0, 0].legend(fontsize=6)
    return fig
