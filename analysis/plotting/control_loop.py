"""The controller–model loop: closed-loop poles in the unit disk and the step sequences.

`plot_loop` draws an `analysis.control_loop.LoopAnalysis` as returned (or rebuilt from its
tables with ``LoopAnalysis.from_tables``): one column per preset, the poles on top (open
markers: the design poles at γ = 1; filled: the poles at the measured γ; the unit circle
dashed), the logged steps below (log10 h against t: accepted dots joined, rejected crosses).
Nothing is computed here but the unit circle: the poles and labels are the stored ones.

Examples:
    >>> from analysis import control_loop
    >>> from analysis.plotting.control_loop import plot_loop
    >>> loop = control_loop.loop_analysis("linear", "Heun", ["I", "H211b"], rtol=1e-6)
    >>> fig = plot_loop(loop)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['I: smooth / smooth', 'H211b: smooth / smooth']
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from ..result import require_columns
from ._style import DOUBLE_WIDTH, panel_grid, paper_style, solver_style

__all__ = ["plot_loop"]

_POLES = [
    f"{kind}pole{i}_{part}" for kind in ("", "design_") for i in (1, 2, 3) for part in ("re", "im")
]


def _poles(row, kind: str) -> np.ndarray:
    return np.array([row[f"{kind}pole{i}_re"] + 1j * row[f"{kind}pole{i}_im"] for i in (1, 2, 3)])


def plot_loop(analysis, *, axes=None) -> plt.Figure:
    """Poles (design and at the measured γ) and the logged step sizes, one column per preset.

    Args:
        analysis: an `analysis.control_loop.LoopAnalysis` (live, or rebuilt from its tables).
        axes: 2 × (number of presets) Axes to draw into (default: a new figure).

    Returns:
        The Figure: row 0 the poles in the complex plane with the unit circle, titled
        "preset: predicted / measured"; row 1 log10 h against t.

    Raises:
        InvalidArgument: not a LoopAnalysis (e.g. a bare DataFrame), or a table lacks a column.

    Examples:
        >>> from analysis import control_loop
        >>> loop = control_loop.loop_analysis("linear", "Heun", ["I"], rtol=1e-6)
        >>> again = control_loop.LoopAnalysis.from_tables(loop.tables())
        >>> len(plot_loop(again).axes)
        2
    """
    if isinstance(analysis, pd.DataFrame) or not hasattr(analysis, "presets"):
        raise InvalidArgument(
            f"plot_loop: analysis is a {type(analysis).__name__}; pass the LoopAnalysis that "
            "analysis.control_loop.loop_analysis returns (or LoopAnalysis.from_tables(...))"
        )
    presets = require_columns(
        analysis.presets,
        ["preset", "gain", "predicted", "measured", *_POLES],
        "plot_loop's analysis.presets",
    )
    steps = require_columns(
        getattr(analysis, "steps", None),
        ["controller", "t0", "h", "accepted"],
        "plot_loop's analysis.steps",
    )
    n = len(presets)
    if n == 0:
        raise InvalidArgument("plot_loop: analysis.presets has no rows; nothing to draw")
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 256))
    with paper_style():
        fig, grid = panel_grid(
            axes,
            (2, n),
            "plot_loop",
            figsize=(min(DOUBLE_WIDTH, 0.6 + 1.8 * n), 3.6),
            gridspec_kw={"height_ratios": [1.0, 0.8]},
        )
        for j, row in enumerate(presets.to_dict(orient="records")):
            name = row["preset"]
            style = solver_style(name)
            ax = grid[0, j]
            ax.plot(circle.real, circle.imag, ls="--", lw=0.7, color="0.5", marker="none")
            design, measured = _poles(row, "design_"), _poles(row, "")
            ax.plot(
                design.real,
                design.imag,
                ls="none",
                marker="o",
                mfc="none",
                color="0.3",
                label="design (γ = 1)",
            )
            ax.plot(
                measured.real,
                measured.imag,
                ls="none",
                marker=style["marker"],
                color=style["color"],
                label=f"γ = {row['gain']:.2f}",
            )
            reach = max(1.2, 1.1 * float(np.nanmax(np.abs(np.concatenate([design, measured])))))
            ax.set_xlim(-reach, reach)
            ax.set_ylim(-reach, reach)
            ax.set_aspect("equal")
            ax.set_title(f"{name}: {row['predicted']} / {row['measured']}")
            ax.set_xlabel("Re q")
            if j == 0:
                ax.set_ylabel("Im q")
            ax.legend(loc="lower left", fontsize=5)
            ax = grid[1, j]
            mine = steps[steps["controller"] == name]
            ok = mine["accepted"].to_numpy(bool)
            t, h = mine["t0"].to_numpy(float), mine["h"].to_numpy(float)
            with np.errstate(divide="ignore"):
                ax.plot(
                    t[ok],
                    np.log10(h[ok]),
                    lw=0.7,
                    ms=2,
                    color=style["color"],
                    marker=".",
                    label="accepted",
                )
                if (~ok).any():
                    ax.plot(
                        t[~ok],
                        np.log10(h[~ok]),
                        ls="none",
                        marker="x",
                        ms=3,
                        color="0.4",
                        label="rejected",
                    )
            ax.set_xlabel("t")
            if j == 0:
                ax.set_ylabel("log10 h")
            ax.legend(loc="best", fontsize=5)
    return fig
