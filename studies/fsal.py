"""FSAL: why StepAware re-evaluates the first stage, measured against a wrapper that does not.

First-same-as-last solvers (Bosh3, Tsit5, Dopri5) reuse the last stage of a step as the first
stage of the next. For f(t, y, args, h) that stage was evaluated with the previous step size, so a
wrapper that only passes h to the field (`analysis.stepdep.StaleFSAL`) no longer computes the
Runge–Kutta method applied to f(·, ·, h_n): its steps mix h_{n-1} and h_n, and its embedded error
estimate carries a term proportional to h_n - h_{n-1} that a smaller tolerance does not remove.
Both wrappers solve f = -y + h·sin(y) (the catalog's `perturbed(linear, q=1)`, t1 = 5) under
diffrax's PID controller (I-controller coefficients) for a range of tolerances, vmapped over rtol
(atol = rtol/100). Measured: accepted and rejected steps, y(T), its distance from the h → 0 limit
e^{-T}, and the gap between the two wrappers' y(T).
"""

from __future__ import annotations

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis import StepAware, systems
from analysis.batch import status_of
from analysis.prepare import prepare
from analysis.stepdep import StaleFSAL


@dataclasses.dataclass(frozen=True)
class Config:
    solvers: tuple[str, ...] = ("Bosh3", "Tsit5", "Dopri5")
    rtols: tuple[float, ...] = tuple(float(r) for r in np.logspace(-3, -10, 15))
    t1: float = 5.0
    max_steps: int = 100_000


CONFIG = Config()
QUICK = Config(solvers=("Tsit5",), rtols=(1e-4, 1e-6, 1e-8))
PAPER_TABLES = ()

WRAPPERS = {"StepAware (refreshed)": StepAware, "stale FSAL stage": StaleFSAL}

CAPTIONS = {
    "fsal": (
        "Adaptive FSAL solvers on f = -y + h·sin(y) with the first stage re-evaluated at the "
        "current h (StepAware, solid) and reused from the previous step (a naive wrapper, dashed). "
        "Left: accepted steps against rtol — the stale stage pollutes the error estimate, so the "
        "controller takes ever more steps (tens of times more at tight tolerances). Right: how far "
        "the stale answer y(T) lies from StepAware's, against rtol (dotted: gap = rtol): far above "
        "the tolerance, as large as the O(h) distance of either from the h → 0 limit."
    ),
}


def _table(system, wrapper, solver_name: str, config: Config, limit: float) -> pd.DataFrame:
    """One wrapper over every rtol (one compilation, vmapped): statistics and y(T)."""

    def solve(rtol):
        controller = diffrax.PIDController(rtol=rtol, atol=rtol / 100)
        prepared = prepare(system, solver_name, controller=controller, wrapper=wrapper)
        sol = prepared.solve(max_steps=config.max_steps)
        stats = sol.stats
        return (
            sol.ys[-1],
            stats["num_accepted_steps"],
            stats["num_rejected_steps"],
            sol.result._value,
        )

    y, accepted, rejected, codes = map(
        np.asarray, jax.jit(jax.vmap(solve))(jnp.asarray(config.rtols))
    )
    return pd.DataFrame(
        {
            "solver": solver_name,
            "rtol": config.rtols,
            "status": [status_of(c, v) for c, v in zip(codes, y, strict=True)],
            "num_accepted": accepted,
            "num_rejected": rejected,
            "y_final": y,
            "error_vs_limit": np.abs(y - limit),
        }
    )


def run(config: Config = CONFIG) -> dict[str, pd.DataFrame]:
    """Both wrappers, every solver and tolerance; returns one row per solve."""
    system = systems.get("perturbed", base=systems.get("linear", t1=config.t1), c=1.0, q=1)
    limit = float(np.exp(-config.t1))  # y' = -y from y0 = 1
    frames = []
    for solver_name in config.solvers:
        tables = {
            label: _table(system, wrapper, solver_name, config, limit)
            for label, wrapper in WRAPPERS.items()
        }
        reference = tables["StepAware (refreshed)"]["y_final"].to_numpy()
        for label, table in tables.items():
            table.insert(0, "wrapper", label)
            table["gap_to_stepaware"] = np.abs(table["y_final"].to_numpy() - reference)
            frames.append(table)
    rows = pd.concat(frames, ignore_index=True)
    return {"rows": rows}


def plot(results: dict[str, pd.DataFrame]) -> dict:
    """Steps and the stale wrapper's gap against rtol, one colour per solver."""
    import matplotlib.pyplot as plt

    from analysis import plotting

    rows = results["rows"]
    ok = rows[rows["status"] == "ok"]
    with plotting.paper_style():
        fig, (left, right) = plt.subplots(1, 2, figsize=(plotting.DOUBLE_WIDTH, 2.6))
        for solver_name, g in ok.groupby("solver", sort=False):
            style = plotting.solver_style(solver_name)
            for label, w in g.groupby("wrapper", sort=False):
                stale = label == "stale FSAL stage"
                left.plot(
                    w["rtol"],
                    w["num_accepted"],
                    ls="--" if stale else "-",
                    label=f"{solver_name}, {'stale' if stale else 'StepAware'}",
                    **style,
                )
            stale = g[g["wrapper"] == "stale FSAL stage"]
            right.plot(
                stale["rtol"], stale["gap_to_stepaware"], ls="--", label=solver_name, **style
            )
        rtols = np.sort(ok["rtol"].unique())
        right.plot(rtols, rtols, ":", color="0.5", lw=0.8, label="gap = rtol")
        for ax in (left, right):
            plotting.log_axis(ax, "x", "rtol")
            ax.invert_xaxis()
        plotting.log_axis(left, "y", "accepted steps")
        plotting.log_axis(right, "y", "|y_stale(T) - y_StepAware(T)|")
        left.legend(fontsize=6, ncol=2)
        right.legend(fontsize=6)
        left.set_title("cost: the stale stage pollutes the error estimate", fontsize=7)
        right.set_title("answer: the stale stage changes y(T)", fontsize=7)
    return {"fsal": fig}
