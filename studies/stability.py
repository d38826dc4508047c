"""Stability: a solver with step h is a map Φ_h, with its own regions, fixed points and chaos.

Four parts. (1) Linear stability regions |R(z)| ≤ 1 of every explicit solver, R measured by
one step on y' = λy, with the real and imaginary stability intervals; and the effective region
of Euler on step-dependent linear fields (on the modifying integrator λy + (h/2)λ²y it is
Heun's region). (2) The logistic equation y' = y(1 - y) under Euler, Heun and the explicit
midpoint rule as maps in h: orbit diagrams with Lyapunov exponents (Euler is the logistic map
with μ = 1 + h: period doubling at h = 2), fixed-point branches with the spurious ones marked,
and a table of the spurious fixed points. (3) Prothero–Robinson y' = -k(y - sin t) + cos t: the
largest h at which Φ_h is stable (DΦ_h = R(-kh) everywhere) for explicit and implicit solvers
as the stiffness k grows, checked by real fixed-step solves just below and above it. (4) The
logistic map Φ(y) = μy(1 - y) lifted to the step-dependent field (Φ(y) - y)/h, with μ carried
as a second, constant state component: its orbit diagram over μ under Euler (which iterates Φ
itself) and under Heun and Tsit5 (which do not).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pandas as pd

import analysis
from analysis import solvers, stability, systems


@dataclasses.dataclass(frozen=True)
class Config:
    region_solvers: tuple[str, ...] = solvers.EXPLICIT_RK + ("HalfSolver(Euler)",)
    interval_solvers: tuple[str, ...] = ("ImplicitEuler", "Kvaerno3", "Kvaerno5")  # table only
    region_box: tuple[float, float, float, float] = (-6.5, 1.5, -6.0, 6.0)  # re lo/hi, im lo/hi
    region_points: int = 161  # grid points along the real axis (imaginary: proportional)
    shift_mu: float = -0.5  # λy + h·μ·y at h = 1: Euler's region moves to centre -1 - μ
    logistic_solvers: tuple[str, ...] = ("Euler", "Heun", "Midpoint")
    orbit_h: tuple[float, float, int] = (0.02, 4.0, 600)  # linspace(lo, hi, n)
    orbit_starts: tuple[float, ...] = (0.1, 0.5, 0.9, 1.4)
    n_transient: int = 1000
    n_keep: int = 100
    n_lyapunov: int = 50_000  # iterates per Lyapunov exponent (1 % on the logistic map)
    branch_h: tuple[float, float, int] = (0.02, 4.0, 200)
    branch_bounds: tuple[float, float] = (-1.0, 3.0)
    n_starts: int = 64
    spurious_h: tuple[float, ...] = (1.0, 2.5, 3.0, 3.5)
    stiffness: tuple[float, ...] = (1e1, 1e2, 1e3, 1e4, 1e5)
    stiff_solvers: tuple[str, ...] = (
        "Euler",
        "Heun",
        "Bosh3",
        "Tsit5",
        "Dopri5",
        "Dopri8",
        "ImplicitEuler",
        "Kvaerno3",
        "Kvaerno5",
    )
    h_max: float = 100.0
    check_stiffness: tuple[float, ...] = (1e1, 1e3, 1e5)  # real solves for these k ...
    check_factors: tuple[float, ...] = (0.9, 1.1)  # ... at these multiples of the largest h
    check_steps: int = 300  # t1 = check_steps · max stable h: the solve takes ~300 steps
    lifted_solvers: tuple[str, ...] = ("Euler", "Heun", "Tsit5")
    lifted_mu: tuple[float, float, int] = (2.5, 4.0, 600)
    lifted_h: float = 1.0


CONFIG = Config()
QUICK = Config(
    region_solvers=("Euler", "Heun", "Bosh3", "Tsit5"),
    region_points=81,
    orbit_h=(0.05, 4.0, 120),
    orbit_starts=(0.1, 0.9),
    n_transient=300,
    n_keep=30,
    n_lyapunov=2_000,
    branch_h=(0.05, 4.0, 40),
    n_starts=32,
    spurious_h=(2.5, 3.5),
    stiffness=(1e1, 1e4),
    check_stiffness=(1e4,),
    stiff_solvers=("Euler", "Tsit5", "ImplicitEuler"),
    lifted_mu=(2.5, 4.0, 120),
)

PAPER_TABLES = {
    "intervals": (
        "Stability intervals: the largest r with |R(-x)| ≤ 1 on [0, r] (real) and |R(iy)| ≤ 1 on "
        "[0, r] (imaginary), bracketed and bisected to 1e-6; status says why each ends "
        "(unstable, unknown where R is not finite, stable: inf on [0, 20]). r_inf = |R(∞)| from "
        "the tableau (0: L-stable; inf: explicit; NaN: no tableau)."
    ),
    "spurious": (
        "Spurious fixed points of the logistic equation's one-step maps (f(y*) ≠ 0); kind: "
        "solver-spurious (the h-free logistic field has no model equilibria)."
    ),
}

CAPTIONS = {
    "regions": (
        "Left: boundaries |R(z)| = 1 of every explicit solver, R measured by one step on "
        "y' = λy (stable inside, on the origin's side). Heun, Midpoint and Ralston share "
        "1 + z + z²/2. Right: effective regions of Euler on step-dependent linear fields: on the "
        "modifying integrator λy + (h/2)λ²y (dashed) it is exactly Heun's region; on λy + h·μ·y "
        "at h = 1 the disk moves by -h²μ."
    ),
    "logistic_orbits": (
        "The logistic equation y' = y(1 - y) iterated as the map Φ_h. Top: the attractor after "
        "the transient, from four starts; red ticks where some start escaped to infinity. "
        "Bottom: the largest Lyapunov exponent (> 0: chaos). Euler is the logistic map with "
        "μ = 1 + h: period doubling at h = 2, chaos from h ≈ 2.57, every start escapes beyond "
        "h = 3. Heun and Midpoint leave y = 1 at h = 2 for a stable spurious fixed point and "
        "then double periods of their own; Midpoint also has an attractor above y = 1 near "
        "h ≈ 1.5 from the start y = 1.4."
    ),
    "logistic_branches": (
        "Fixed points of Φ_h against h for the logistic equation. Black: the ODE's equilibria "
        "0 and 1 (every Runge–Kutta map keeps them); red: solver-spurious fixed points, where "
        "f(y*) ≠ 0 (the field is h-free: no equilibrium moves with h, no blue model points). "
        "Filled: stable. Euler has none; Heun's appear at h = 2 "
        "(y* = (h + 2 ± √(h² - 4))/2h); Midpoint's, 2/h and 1 + 2/h, exist for every h and "
        "come in from infinity as h grows; some are stable, and attract (see the orbits)."
    ),
    "stiff": (
        "Largest step h for which Φ_h is stable on Prothero–Robinson y' = -k(y - sin t) + cos t "
        "(DΦ_h = R(-kh) at every point), against the stiffness k. Explicit solvers follow "
        "h = r/k with r their real stability interval (slope -1); the implicit ones are stable "
        "at every step probed (triangles at the largest h probed), or up to where their own "
        "Newton solve fails at very large kh (hollow markers: stability unknown beyond). "
        "Right: fixed-step diffrax "
        "solves over ~300 steps at 0.9× (filled) and 1.1× (hollow) each explicit solver's "
        "largest stable step: the error at t1 is small below it and explodes above it."
    ),
    "lifted_map": (
        "The logistic map μy(1 - y) lifted to the step-dependent field (Φ(y) - y)/h, orbit "
        "diagram over μ at h = 1. Euler iterates Φ exactly and reproduces the textbook "
        "bifurcation diagram; Heun (the map (y + Φ(Φ(y)))/2) and Tsit5 iterate other maps with "
        "other bifurcations. For these fields every explicit Runge–Kutta map is independent of "
        "h: the stages' h cancels."
    ),
}


def _linspace(spec) -> np.ndarray:
    lo, hi, n = spec
    return np.linspace(lo, hi, n)


# ------------------------------------------------------------------- (1) stability regions


def _effective_fields(config: Config) -> dict:
    """Step-dependent linear fields y' = field(y, λ, h) whose Euler region we draw."""
    me = systems.get("modified_euler", base="linear")  # the catalog's f + (h/2)Df of y' = -a·y
    return {
        "Euler on modified_euler(λy)": lambda y, lam, h: me.vector_field(0.0, y, -lam, h),
        f"Euler on λy + h·({config.shift_mu})·y": (
            lambda y, lam, h: lam * y + h * config.shift_mu * y
        ),
    }


def _regions(config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    re_lo, re_hi, im_lo, im_hi = config.region_box
    n_re = config.region_points
    n_im = int(round(n_re * (im_hi - im_lo) / (re_hi - re_lo)))
    re, im = np.meshgrid(np.linspace(re_lo, re_hi, n_re), np.linspace(im_lo, im_hi, n_im))
    z = re + 1j * im
    cases = [(name, name, None, "solver") for name in config.region_solvers]
    cases += [("Euler", "Euler", None, "effective"), ("Heun", "Heun", None, "effective")]
    cases += [("Euler", label, f, "effective") for label, f in _effective_fields(config).items()]
    grids, rows = [], []
    for solver, label, field, panel in cases:
        r = np.abs(stability.amplification(solver, z, field=field))
        if panel == "solver" or field is not None:
            rows.append(_interval_row(solver, label, field))
        grids.append(
            pd.DataFrame(
                {
                    "panel": panel,
                    "label": label,
                    "dashed": "modified_euler" in label,
                    "re": re.ravel(),
                    "im": im.ravel(),
                    "abs_r": r.ravel(),
                }
            )
        )
    rows += [_interval_row(name, name, None) for name in config.interval_solvers]
    return pd.concat(grids, ignore_index=True), pd.DataFrame(rows)


def _interval_row(solver, label, field) -> dict:
    meta = solvers.info(solver)
    real = stability.real_interval(solver, field=field)
    imag = stability.imag_interval(solver, field=field)
    try:
        r_inf = (
            np.nan if field is not None else abs(stability.tableau_amplification(solver, np.inf))
        )
    except analysis.InvalidArgument:  # no tableau (HalfSolver)
        r_inf = np.nan
    return {
        "solver": label,
        "order": meta.order,
        "stages": meta.stages,
        "implicit": meta.implicit,
        "real_interval": float(real),
        "real_status": real.status,
        "imag_interval": float(imag),
        "imag_status": imag.status,
        "r_inf": float(r_inf),
        "l_stable": bool(r_inf < 1e-9),
    }


# ------------------------------------------------------------- (2) the logistic equation


def _scalar_multiplier(df: pd.DataFrame) -> pd.DataFrame:
    """A scalar map's multiplier is the real number Φ'(y*): store it as such (parquet-safe)."""
    df = df.copy()
    df["multiplier"] = np.real(df.pop("multiplier_0").to_numpy(dtype=complex))
    return df


def _logistic(config: Config) -> dict[str, pd.DataFrame]:
    sys = systems.get("logistic")
    hs = _linspace(config.orbit_h)
    branch_hs = np.union1d(_linspace(config.branch_h), config.spurious_h)
    orbits, branches = [], []
    for name in config.logistic_solvers:
        orbits.append(
            stability.orbit_diagram(
                sys,
                name,
                hs,
                list(config.orbit_starts),
                n_transient=config.n_transient,
                n_keep=config.n_keep,
                n_lyapunov=config.n_lyapunov,
            ).to_frame()  # the stored table: tidy rows (the plots draw them as they draw arrays)
        )
        branches.append(
            stability.fixed_point_branches(
                sys, name, branch_hs, config.branch_bounds, n_starts=config.n_starts
            )
        )
    branches = _scalar_multiplier(pd.concat(branches, ignore_index=True))
    spurious = branches[branches["spurious"] & branches["h"].isin(config.spurious_h)]
    return {
        "orbits": pd.concat(orbits, ignore_index=True),
        "branches": branches,
        "spurious": spurious.drop(columns=["system", "period", "minimal_period"]).reset_index(
            drop=True
        ),
    }


# ------------------------------------------------------------------------- (3) stiffness


def _stiff(config: Config) -> pd.DataFrame:
    rows = []
    for k in config.stiffness:
        sys = systems.get("prothero_robinson", stiffness=k)
        for name in config.stiff_solvers:
            # Φ_h is affine (DΦ_h = R(-kh) everywhere); its fixed point for a step from t = 0
            # starts at 1/k, where the field frozen at t = 0, -k·y + 1, vanishes.
            h = stability.max_stable_step(sys, name, 1.0 / k, h_max=config.h_max)
            rows.append(
                {
                    "solver": name,
                    "implicit": solvers.info(name).implicit,
                    "stiffness": k,
                    "max_stable_step": float(h),
                    "h_times_k": h * k,
                    "h_max": config.h_max,
                    "status": h.status,
                    "reason": h.reason,
                }
            )
    return pd.DataFrame(rows)


def _stiff_check(config: Config, stiff: pd.DataFrame) -> pd.DataFrame:
    """Real fixed-step solves of Prothero–Robinson just below and above each explicit solver's
    largest stable step: the error at t1 should stay small below and explode above."""
    frames = []
    checked = (stiff["status"] == "unstable") & stiff["stiffness"].isin(config.check_stiffness)
    for row in stiff[checked].itertuples():
        h_star = row.max_stable_step
        sys = systems.get(
            "prothero_robinson", stiffness=row.stiffness, t1=config.check_steps * h_star
        )
        df = analysis.sweep(sys, row.solver, dt0=[f * h_star for f in config.check_factors])
        df["stiffness"] = row.stiffness
        df["h_over_max_stable"] = df["h"] / h_star
        frames.append(
            df[["solver", "stiffness", "h", "h_over_max_stable", "num_steps", "status", "error"]]
        )
    return pd.concat(frames, ignore_index=True)


# -------------------------------------------------------------------- (4) a lifted map


def _logistic_map_with_mu(y):
    """(y, μ) -> (μy(1 - y), μ): the logistic map, its parameter carried along unchanged."""
    return jnp.stack([y[1] * y[0] * (1 - y[0]), y[1]])


def _lifted(config: Config) -> pd.DataFrame:
    sys = systems.get("lifted_map", map=_logistic_map_with_mu, y0=[0.2, 3.2])
    starts = [(0.2, mu) for mu in _linspace(config.lifted_mu)]
    frames = [
        stability.orbit_diagram(
            sys,
            name,
            [config.lifted_h],
            starts,
            n_transient=config.n_transient,
            n_keep=config.n_keep,
            n_lyapunov=config.n_keep,  # not reported (see below): no long average
        ).to_frame()
        for name in config.lifted_solvers
    ]
    df = pd.concat(frames, ignore_index=True).rename(columns={"y0": "y", "y1": "mu"})
    # The exponent of the 2-D map includes μ's neutral direction (exponent 0); not reported.
    return df.drop(columns=["lyapunov", "lyapunov_se"])


def run(config: Config = CONFIG) -> dict[str, pd.DataFrame]:
    """All four parts: regions, intervals, orbits, branches, spurious, stiff(_check), lifted."""
    regions, intervals = _regions(config)
    stiff = _stiff(config)
    return {
        "regions": regions,
        "intervals": intervals,
        **_logistic(config),
        "stiff": stiff,
        "stiff_check": _stiff_check(config, stiff),
        "lifted": _lifted(config),
    }


def plot(results: dict[str, pd.DataFrame]) -> dict:
    """Five figures: regions, logistic orbits, logistic branches, stiff steps, lifted map."""
    import matplotlib.pyplot as plt

    from analysis import plotting

    figs = {}
    with plotting.paper_style():
        regions = results["regions"]
        fig, axes = plt.subplots(1, 2, figsize=(plotting.DOUBLE_WIDTH, 4.2), sharey=True)
        for ax, panel, title in zip(
            axes, ("solver", "effective"), ("explicit solvers", "effective regions"), strict=True
        ):
            plotting.stability_regions(regions[regions["panel"] == panel], ax=ax, title=title)
        figs["regions"] = fig

        orbits = results["orbits"]
        names = list(dict.fromkeys(orbits["solver"]))
        fig, axes = plt.subplots(
            2,
            len(names),
            figsize=(plotting.DOUBLE_WIDTH, 3.8),
            sharex=True,
            gridspec_kw={"height_ratios": (2, 1)},
            squeeze=False,
        )
        for j, name in enumerate(names):
            g = orbits[orbits["solver"] == name]
            plotting.orbit_diagram(g, ax=axes[0, j], title=name)
            plotting.lyapunov(g, ax=axes[1, j])
            axes[0, j].set_ylim(-0.5, 2.0)
            axes[0, j].set_xlabel("")
            lyap = g["lyapunov"].replace(-np.inf, np.nan)
            axes[1, j].set_ylim(max(-4.0, np.nanmin(lyap) - 0.2), np.nanmax(lyap) + 0.2)
        figs["logistic_orbits"] = fig

        branches = results["branches"]
        fig, axes = plt.subplots(
            1, len(names), figsize=(plotting.DOUBLE_WIDTH, 2.6), sharey=True, squeeze=False
        )
        for ax, name in zip(axes[0], names, strict=True):
            plotting.branches(branches[branches["solver"] == name], ax=ax, title=name)
            if ax is not axes[0, 0]:
                ax.get_legend().remove()
        figs["logistic_branches"] = fig

        fig, axes = plt.subplots(1, 2, figsize=(plotting.DOUBLE_WIDTH, 3.2))
        plotting.max_step(results["stiff"], ax=axes[0], title="largest stable step", legend=False)
        plotting.step_check(results["stiff_check"], ax=axes[1], title="real solves", legend=False)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=5)
        figs["stiff"] = fig

        lifted = results["lifted"]
        names = list(dict.fromkeys(lifted["solver"]))
        fig, axes = plt.subplots(
            1, len(names), figsize=(plotting.DOUBLE_WIDTH, 2.4), sharey=True, squeeze=False
        )
        for ax, name in zip(axes[0], names, strict=True):
            plotting.orbit_diagram(
                lifted[lifted["solver"] == name], ax=ax, x="mu", y="y", title=name
            )
            ax.set_xlabel("map parameter μ")
        figs["lifted_map"] = fig
    return figs
