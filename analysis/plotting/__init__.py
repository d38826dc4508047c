"""Figures: DataFrames in, matplotlib Figures out. The only part of the library that imports
matplotlib.

One look for every figure: `paper_style()` (fonts, sizes), a fixed colour and marker per solver
and per controller (`solver_style`), single- and double-column widths, and reference-slope
triangles for convergence plots.

Examples:
    >>> import analysis, analysis.plotting as aplt
    >>> df = analysis.sweep("linear", ["Euler", "Heun"], dt0=[0.1, 0.05, 0.025])
    >>> fig = aplt.error_vs_step(df)
"""

from ._style import (
    COLUMN_WIDTH,
    DOUBLE_WIDTH,
    STYLE_FILE,
    close,
    colorbar,
    log_axis,
    paper_style,
    render,
    slope_triangle,
    solver_style,
)
from .control_loop import plot_loop
from .controllers import (
    controller_heatmaps,
    output_vs_tolerance,
    spread_vs_tolerance,
    step_histories,
    work_precision,
)
from .convergence import error_vs_step, local_orders_vs, observed_orders, order_cap
from .discrete import conjugacy, defects, drift, map_vs_limit
from .invariants import invariant_drift
from .neural import (
    discretization_heatmaps,
    step_adaptation,
    step_sensitivity,
    trajectory_panels,
)
from .stability import (
    branches,
    lyapunov,
    max_step,
    orbit_diagram,
    stability_regions,
    step_check,
)

__all__ = [
    "COLUMN_WIDTH",
    "DOUBLE_WIDTH",
    "STYLE_FILE",
    "close",
    "colorbar",
    "log_axis",
    "render",
    "paper_style",
    "slope_triangle",
    "solver_style",
    "error_vs_step",
    "conjugacy",
    "drift",
    "defects",
    "map_vs_limit",
    "invariant_drift",
    "observed_orders",
    "order_cap",
    "local_orders_vs",
    "controller_heatmaps",
    "work_precision",
    "step_histories",
    "plot_loop",
    "spread_vs_tolerance",
    "output_vs_tolerance",
    "stability_regions",
    "orbit_diagram",
    "lyapunov",
    "branches",
    "max_step",
    "step_check",
    "discretization_heatmaps",
    "trajectory_panels",
    "step_sensitivity",
    "step_adaptation",
]
