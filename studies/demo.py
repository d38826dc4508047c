"""Demo: h as an input caps the order of every solver (f = -y + h·sin y against f = -y).

The same three solvers (Euler, Heun, Tsit5; orders 1, 2, 5) at the same fixed steps, on the h-free
decay y' = -y and on the step-dependent field f(y, h) = -y + h·sin(y) (the catalog's
`perturbed(linear, q=1)`), whose h → 0 limit is the same ODE. On the h-free system each solver
shows its order; with h as an input every solver converges to the limit at order 1, because the
field itself is an O(h) perturbation. Orders are least-squares slopes of log error on log h.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

import analysis
from analysis import convergence, systems
from analysis.convergence import log_slope


@dataclasses.dataclass(frozen=True)
class Config:
    solvers: tuple[str, ...] = ("Euler", "Heun", "Tsit5")
    steps: tuple[int, ...] = (8, 11, 16, 23, 32, 45, 64, 91, 128)
    t1: float = 1.0


CONFIG = Config()
QUICK = Config(steps=(8, 16, 32, 64))
PAPER_TABLES = {"orders": "Observed orders (least-squares slope of log error on log h)."}

CAPTIONS = {
    "orders": (
        "Error at t = 1 against step size h for Euler, Heun and Tsit5. Left: y' = -y, each solver "
        "at its textbook order (slopes 1, 2, 5). Right: f = -y + h·sin(y), the same ODE as h → 0; "
        "every solver now converges to it at order 1 — the field, not the solver, sets the order."
    ),
}


def run(config: Config = CONFIG) -> dict[str, pd.DataFrame]:
    """Fixed-step sweeps of both systems; returns the rows, the least-squares orders (the paper
    table) and the orders of `analysis.convergence.fit` that the figure's legends show."""
    base = systems.get("linear", t1=config.t1)
    stepdep = systems.get("perturbed", base=base, c=1.0, q=1, g="sin")
    dts = [config.t1 / n for n in config.steps]
    rows = analysis.sweep([base, stepdep], list(config.solvers), dt0=dts)
    rows["field"] = np.where(rows["system"] == base.name, "h-free", "h-input")
    orders = (
        rows[rows["status"] == "ok"]
        .groupby(["field", "solver"], sort=False)
        .apply(lambda g: log_slope(g["h"], g["error"]).slope, include_groups=False)
        .rename("observed_order")
        .reset_index()
    )
    orders["nominal_order"] = [analysis.solvers.info(s).order for s in orders["solver"]]
    return {"rows": rows, "orders": orders, "fits": convergence.fit(rows)}


def plot(results: dict[str, pd.DataFrame]) -> dict:
    """One two-panel figure: error vs h without and with h as an input."""
    import matplotlib.pyplot as plt

    from analysis import plotting

    rows, fits = results["rows"], results["fits"]
    with plotting.paper_style():
        fig, axes = plt.subplots(1, 2, figsize=(plotting.DOUBLE_WIDTH, 2.6), sharey=True)
        plotting.error_vs_step(
            convergence.ConvergenceResult(rows=rows[rows["field"] == "h-free"], fits=fits),
            ax=axes[0],
            title="h-free: y' = -y",
            triangles=(1, 2, 5),
            fitted_lines=False,
        )
        plotting.error_vs_step(
            convergence.ConvergenceResult(rows=rows[rows["field"] == "h-input"], fits=fits),
            ax=axes[1],
            title="h as input: f = -y + h sin y",
            triangles=(1,),
            fitted_lines=False,
        )
    return {"orders": fig}
