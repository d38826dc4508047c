"""Convergence: the observed order of every solver, and what a step-dependent field converges to.

Four experiments, all fixed-step sweeps measured by `analysis.convergence` (orders are the local
orders from the smallest resolved step up, extrapolated to h → 0, with intervals calibrated on
generated error curves and a status that is "ok" only where the asymptotic range is reached;
step counts follow a non-halving geometric sequence):

1. smooth: every solver in `analysis.solvers.NAMES` on smooth h-free problems (the harmonic
   oscillator, linear; the logistic equation, nonlinear; both exact), in three norms (final
   time, max over 4 saved times on the step grid, L2 over 201 dense-output points). Expected:
   the nominal order p in the final and max norms; the L2 norm also sees the dense output,
   whose order can be lower (diffrax interpolates Kvaerno's ESDIRKs by cubic Hermite). On the
   linear oscillator N steps give y_N = R(hJ)^N·y0 exactly, so the fitted order of the errors
   predicted by each solver's stability function R(z) on the same steps (`predicted_order`) is
   the mathematics the measurement must reproduce, pre-asymptotic terms included.
2. cap: the family f + c·h^q·sin(y) on the harmonic oscillator, q = 1, 2, 3, 5, solvers of
   order 1, 2, 3, 5. The field is an O(h^q) perturbation of its h = 0 limit, so the observed
   order is min(p, q) — generically: the h^q term and the method's error can cancel and raise it
   (experiment 3 is such a cancellation by design).
3. modified: Euler on the modifying-integrator field f + (h/2)·Df (+ (h²/6)·D²f) of the logistic
   equation: order 2 with one correction, 3 with two (plain Euler: 1).
4. stiff: implicit solvers on Prothero–Robinson y' = -λ(y - sin t) + cos t for λ from 1 to 1e6.
   For h·λ ≫ 1 the error is governed by the stage order q, not the classical order p: order
   reduction, which the local orders against h·λ locate. For these L-stable, stiffly accurate
   (E)SDIRKs the theory (stage errors (I + hλA)E = e_n - Δ with stage defects Δ = O(h^(q+1)))
   gives |e| ≈ h^q·|φ^(q+1)·[Â⁻¹d]_s|/λ as h·λ → ∞: order q, and 1/λ smaller as λ grows. The Kvaerno
   ESDIRKs have q = 2 (an explicit first stage caps the simplifying condition C(q) at 2),
   implicit Euler q = p = 1. At λ = 1e6 every step of the sweep has h·λ ≥ 2000, so the fitted
   order there is the stage order (`expected_order`); at λ = 1 (h·λ ≤ 0.2) it is the nominal one,
   in between it moves from one to the other (no expected order).
"""

from __future__ import annotations

import dataclasses

import diffrax
import jax
import numpy as np
import pandas as pd

from analysis import convergence, solvers, stability, systems

#: (h_max, h_min) by expected order: coarse enough to be visible, fine enough to stay above
#: round-off (about 1e-12 relative) for problems with time scale ~1.
H_RANGES = {1: (0.05, 5e-4), 2: (0.1, 2e-3), 3: (0.2, 5e-3), 4: (0.3, 0.01), 5: (0.4, 0.02)}
H_RANGE_HIGH = (0.8, 0.12)  # order 6 and above


@dataclasses.dataclass(frozen=True)
class Config:
    points: int = 10  # step sizes per fit
    save_points: int = 4  # saved times of the max norm; step counts are multiples of it
    # (catalog name, parameters); the logistic equation is the nonlinear problem with an exact
    # solution, at r = 3 and t1 = 2 so the final time is mid-transition (not damped at y = 1).
    smooth_systems: tuple = (("harmonic", ()), ("logistic", (("r", 3.0), ("t1", 2.0))))
    solvers: tuple[str, ...] = solvers.NAMES
    norms: tuple[str, ...] = ("final", "max", "l2")
    cap_solvers: tuple[str, ...] = ("Euler", "Heun", "Bosh3", "Tsit5")
    cap_q: tuple[int, ...] = (1, 2, 3, 5)
    modified_terms: tuple[int, ...] = (0, 1, 2)  # 0: plain Euler on the base
    stiff_solvers: tuple[str, ...] = ("ImplicitEuler", "Kvaerno3", "Kvaerno4", "Kvaerno5")
    stiffness: tuple[float, ...] = (1.0, 1e2, 1e3, 1e4, 1e5, 1e6)
    stiff_h: tuple[float, float] = (0.2, 2e-3)


CONFIG = Config()
QUICK = Config(
    points=7,
    smooth_systems=(("harmonic", ()),),
    norms=("final", "max"),
    cap_solvers=("Euler", "Heun", "Tsit5"),
    cap_q=(1, 3),
    stiff_solvers=("Kvaerno3",),
    stiffness=(1.0, 1e6),
)

PAPER_TABLES = {
    "observed_orders": "Observed order of every solver on smooth h-free problems (local orders of "
    "the final-time error extrapolated to h → 0, with an interval calibrated to hold the true "
    "order in ≥ 90 % of ok fits) against its nominal order; a status other than ok says the "
    "steps did not reach the asymptotic range, and why.",
}

CAPTIONS = {
    "smooth": (
        "Error at t1 against step size h for every solver on the harmonic oscillator (exact "
        "solution), grouped by kind; the legend gives each fitted order, triangles the slopes. "
        "Look for straight lines at the nominal slope, bending off at the round-off floor."
    ),
    "observed_vs_nominal": (
        "Observed order (calibrated interval) against nominal order for every solver and smooth "
        "problem; filled: final-time norm, half: max over saved times, hollow: L2 over the "
        "dense output. Points on the diagonal agree; L2 points below it show a dense output of "
        "lower order than the method. Dopri8 sits above 8 on the linear oscillator, as its "
        "stability function predicts: the h^8 coefficient of R(z) - e^z is tiny (1.3e-3/9!), so "
        "the next term dominates at every step float64 resolves (status pre_asymptotic, drawn "
        "faded)."
    ),
    "cap": (
        "f + h^q·sin(y) on the harmonic oscillator: observed order of convergence to the h = 0 "
        "limit against q for solvers of order p; dashed: min(p, q). A step-dependent term of "
        "order q caps every solver at q, however high its order — generically: a term that "
        "cancels the method's own error (the modified-Euler field) raises the order instead."
    ),
    "modified": (
        "Euler on the logistic equation and on its modifying-integrator fields f + (h/2)Df "
        "(one correction) and f + (h/2)Df + (h²/6)D²f (two): orders 1, 2 and 3 toward the "
        "same exact solution."
    ),
    "stiff": (
        "Local order of implicit solvers on Prothero–Robinson y' = -λ(y - sin t) + cos t "
        "against h·λ, one line per λ from 1 to 1e6; dashed: nominal order p, dotted: stage "
        "order q. Where h·λ ≫ 1 the local order falls to q (order reduction: 2 for the Kvaerno "
        "ESDIRKs, whose explicit first stage caps the stage order; implicit Euler has p = q = 1); "
        "for h·λ ≲ 1 it recovers p."
    ),
}


def _step_counts(system, order: float, config: Config) -> list[int]:
    """Step counts N (multiples of save_points, no repeats) for h across the order's range."""
    h_max, h_min = H_RANGES.get(int(round(order)), H_RANGE_HIGH)
    span = abs(system.t1 - system.t0)
    m = config.save_points
    n = np.geomspace(span / h_max, span / h_min, config.points)
    return sorted({int(m * max(1, round(k / m))) for k in n})


def _measure(system, solver, order, config, norms, **extra) -> convergence.ConvergenceResult:
    ns = _step_counts(system, order, config)
    span = abs(system.t1 - system.t0)
    m = config.save_points
    save_ts = system.t0 + span * np.arange(1, m + 1) / m
    result = convergence.measure(
        system, solver, dt0=[span / n for n in ns], norms=norms, save_ts=save_ts
    )
    return _tagged(result, **extra)


def _tagged(result: convergence.ConvergenceResult, **extra) -> convergence.ConvergenceResult:
    """The result with the experiment's columns (experiment, q, terms, ...) on rows and fits."""
    return convergence.ConvergenceResult(
        **{name: table.assign(**extra) for name, table in result.tables().items()}
    )


def _smooth(config: Config) -> list[convergence.ConvergenceResult]:
    frames = []
    for name, params in config.smooth_systems:
        system = systems.get(name, **dict(params))
        for solver in config.solvers:
            order = solvers.info(solver).order
            frames.append(
                _measure(system, solver, order, config, config.norms, experiment="smooth")
            )
    return frames


def _cap(config: Config) -> list[convergence.ConvergenceResult]:
    frames = []
    for q in config.cap_q:
        system = systems.get("perturbed", base="harmonic", c=1.0, q=q, g="sin")
        for solver in config.cap_solvers:
            expected = min(solvers.info(solver).order, q)
            frames.append(
                _measure(system, solver, expected, config, ("final",), experiment="cap", q=q)
            )
    return frames


def _modified(config: Config) -> list[convergence.ConvergenceResult]:
    frames = []
    for terms in config.modified_terms:
        base = systems.get("logistic")
        system = base if terms == 0 else systems.get("modified_euler", base=base, terms=terms)
        frames.append(
            _measure(
                system, "Euler", 1 + terms, config, ("final",), experiment="modified", terms=terms
            )
        )
    return frames


def _stiff(config: Config) -> list[convergence.ConvergenceResult]:
    frames = []
    span = 2.0
    h_max, h_min = config.stiff_h
    ns = sorted(
        {int(round(n)) for n in np.geomspace(span / h_max, span / h_min, config.points + 3)}
    )
    for lam in config.stiffness:
        system = systems.get("prothero_robinson", stiffness=lam, t1=span)
        for solver in config.stiff_solvers:
            result = convergence.measure(system, solver, dt0=[span / n for n in ns])
            result = _tagged(result, experiment="stiff", stiffness=lam)
            rows = result.rows.assign(h_lambda=result.rows["h"] * lam)
            frames.append(dataclasses.replace(result, rows=rows))
    return frames


#: Smooth systems that are linear with constant coefficients: their errors follow from R(z).
LINEAR_SYSTEMS = ("harmonic", "linear", "linear10")


def _amplification(solver: str, z: np.ndarray) -> np.ndarray:
    """The stability function R(z) from the tableau; HalfSolver(S) takes two half steps of S."""
    obj = solvers.get(solver)
    if isinstance(obj, diffrax.HalfSolver):
        return _amplification(solvers.name_of(obj.solver), z / 2) ** 2
    return stability.tableau_amplification(solver, z)


def _predicted_errors(system, solver: str, h: np.ndarray) -> np.ndarray:
    """Final-time errors of `solver` on a linear system y' = Jy, from its stability function.

    N steps of any Runge–Kutta method give y_N = V·R(hΛ)^N·V⁻¹·y0 (J = VΛV⁻¹), so the error
    needs no solve: this is the mathematics the measured orders are checked against.
    """
    y0 = np.atleast_1d(np.asarray(system.y0))
    jac = np.atleast_2d(
        np.asarray(jax.jacfwd(system.limit_field, 1)(system.t0, system.y0, system.args))
    )
    lam, vec = np.linalg.eig(jac)
    coef = np.linalg.solve(vec, y0.astype(complex))
    exact = np.atleast_1d(np.asarray(system.exact(system.t1)))
    span = abs(system.t1 - system.t0)
    out = []
    for step in h:
        n = int(round(span / step))
        y_n = (vec * _amplification(solver, step * lam) ** n) @ coef
        out.append(np.max(np.abs(y_n.real - exact)))
    return np.asarray(out)


def _predicted_order(rows: pd.DataFrame, config: Config) -> float:
    """fit_order of the stability-function errors on the same steps and floor as `rows`."""
    name = rows["system"].iloc[0]
    system = next(
        systems.get(n, **dict(p))
        for n, p in config.smooth_systems
        if systems.get(n, **dict(p)).name == name
    )
    fit = convergence.fit_order(
        rows["h"],
        _predicted_errors(system, rows["solver"].iloc[0], rows["h"].to_numpy()),
        floor=float(rows["roundoff_floor"].iloc[0]),
    )
    return fit.order


#: Stiff sweeps whose every step has h·λ at least this are in the stiff limit (order q), and at
#: most NONSTIFF_H_LAMBDA in the classical regime (order p).
STIFF_H_LAMBDA = 1e3
NONSTIFF_H_LAMBDA = 0.2


def _expected(row, config: Config) -> float:
    p = solvers.info(row["solver"]).order
    if row["experiment"] == "cap":
        return min(p, row["q"])
    if row["experiment"] == "modified":
        return 1 + row["terms"]
    if row["experiment"] == "stiff":
        h_max, h_min = config.stiff_h
        if row["stiffness"] * h_min >= STIFF_H_LAMBDA:
            return solvers.info(row["solver"]).stage_order
        if row["stiffness"] * h_max <= NONSTIFF_H_LAMBDA:
            return p
        return np.nan  # the transition from p to q
    return p


def run(config: Config = CONFIG) -> dict[str, pd.DataFrame]:
    """All four experiments: the measured rows and the orders fitted once by `measure`."""
    results = _smooth(config) + _cap(config) + _modified(config) + _stiff(config)
    rows = pd.concat([r.rows for r in results], ignore_index=True)
    fits = pd.concat([r.fits for r in results], ignore_index=True)
    for col in ("q", "terms", "stiffness", "h_lambda"):
        if col not in rows:
            rows[col] = np.nan
        if col != "h_lambda" and col not in fits:
            fits[col] = np.nan
    fits.insert(0, "experiment", fits.pop("experiment"))
    fits["predicted_order"] = [
        _predicted_order(
            rows[
                (rows["experiment"] == r.experiment)
                & (rows["system"] == r.system)
                & (rows["solver"] == r.solver)
                & (rows["norm"] == r.norm)
            ],
            config,
        )
        if r.experiment == "smooth"
        and r.norm == "final"
        and r.system.split("(")[0] in LINEAR_SYSTEMS
        else np.nan
        for r in fits.itertuples()
    ]
    fits["expected_order"] = fits.apply(_expected, axis=1, config=config)
    fits["stage_order"] = [solvers.info(s).stage_order for s in fits["solver"]]
    smooth = fits[(fits["experiment"] == "smooth") & (fits["norm"] == "final")]
    observed = smooth[
        [
            "system",
            "solver",
            "nominal_order",
            "order",
            "ci_low",
            "ci_high",
            "points_used",
            "status",
            "reason",
        ]
    ].reset_index(drop=True)
    return {
        "rows": rows.drop(columns=[c for c in rows if c.startswith("y_final_")]),
        "fits": fits,
        "observed_orders": observed,
    }


_GROUPS = {
    "explicit, order ≤ 2": ("Euler", "HalfSolver(Euler)", "Heun", "Midpoint", "Ralston"),
    "explicit, order ≥ 3": ("Bosh3", "Tsit5", "Dopri5", "Dopri8"),
    "implicit": ("ImplicitEuler", "Kvaerno3", "Kvaerno4", "Kvaerno5"),
}


def plot(results: dict[str, pd.DataFrame]) -> dict:
    """Five figures: smooth error curves, observed vs nominal, the cap, modified Euler, stiff."""
    import matplotlib.pyplot as plt

    from analysis import plotting

    rows, fits = results["rows"], results["fits"]

    def measured(experiment: str, part: pd.DataFrame) -> convergence.ConvergenceResult:
        """Rows of one experiment with that experiment's stored fits (drawn, never refitted)."""
        return convergence.ConvergenceResult(rows=part, fits=fits[fits["experiment"] == experiment])

    figs = {}
    smooth = rows[(rows["experiment"] == "smooth") & (rows["norm"] == "final")]
    first = smooth["system"].iloc[0]
    with plotting.paper_style():
        fig, axes = plt.subplots(1, 3, figsize=(plotting.DOUBLE_WIDTH, 2.8))
        for ax, (title, names) in zip(axes, _GROUPS.items(), strict=True):
            part = smooth[(smooth["system"] == first) & smooth["solver"].isin(names)]
            orders_here = sorted({solvers.info(s).order for s in part["solver"]})
            plotting.error_vs_step(
                measured("smooth", part),
                ax=ax,
                title=f"{first}: {title}",
                triangles=orders_here,
                fitted_lines=False,
            )
        figs["smooth"] = fig
    figs["observed_vs_nominal"] = plotting.observed_orders(
        fits[fits["experiment"] == "smooth"], title="smooth problems, h → 0 limit"
    )
    figs["cap"] = plotting.order_cap(
        fits[fits["experiment"] == "cap"], title="f + h^q sin(y) (harmonic base)"
    )
    modified = rows[rows["experiment"] == "modified"].copy()
    modified["field"] = modified["terms"].map(
        {0: "Euler on f", 1: "Euler, 1 correction", 2: "Euler, 2 corrections"}
    )
    figs["modified"] = plotting.error_vs_step(
        measured("modified", modified),
        by="field",
        triangles=(1, 2, 3),
        title="modified_euler(logistic)",
        fitted_lines=False,
    )
    stiff = rows[rows["experiment"] == "stiff"]
    names = list(dict.fromkeys(stiff["solver"]))
    with plotting.paper_style():
        fig, axes = plt.subplots(
            1, len(names), figsize=(plotting.DOUBLE_WIDTH, 2.6), squeeze=False, sharey=True
        )
        for ax, name in zip(axes[0], names, strict=True):
            plotting.local_orders_vs(
                stiff[stiff["solver"] == name],
                x="h_lambda",
                by="stiffness",
                ax=ax,
                nominal=solvers.info(name).order,
                xlabel="h·λ",
                title=name,
            )
            ax.axhline(solvers.info(name).stage_order, color="0.5", lw=0.8, ls=":", zorder=0)
        figs["stiff"] = fig
    return figs
