"""Neural step-dependent fields: did the network learn a vector field or its discretization?

Data: held-out and training trajectories of the damped spiral y' = A·y (the catalog's `linear10`
with dim = 2, seed = 0; eigenvalues -0.61 ± 0.46i), saved every time unit. Three model kinds
(`analysis.models`): an MLP that takes h as an input, the same MLP without h (control), and a
hypersolver f + h·g_θ(y, h) around the true field. Each is trained through two discretizations,
Euler at the coarse step h = 1 and Tsit5 at the fine step h = 1/8 (discretize-then-optimise).
Each trained model is then tested on held-out trajectories under Euler, Heun and Tsit5 at steps
h = 1 … 1/16 and under adaptive Dopri5 (the train × test discretization matrix of Ott et al.,
ICLR 2021); its trajectories at several test h are drawn against the truth; d(loss)/dh is taken
by autodiff at fixed steps (finite differences in log rtol under adaptive control); their
step-adaptation check (halve h until the training solver and Tsit5 agree within 10 %) is run;
the convergence tools measure each model's observed order towards its own h → 0 limit; and the
stability tools find the fixed points of each trained one-step map Φ_h at its training step,
whose multipliers are compared with the true flow's e^{λh}.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

import analysis
from analysis import convergence, models, neural, stability, systems, training


@dataclasses.dataclass(frozen=True)
class Config:
    system: str = "linear10"
    system_params: tuple = (("dim", 2), ("seed", 0))
    horizon: float = 6.0
    saves: int = 7  # save spacing horizon/(saves - 1) = 1: every test h below divides it
    n_train: int = 32
    n_test: int = 32
    spread: float = 0.5
    kinds: tuple[str, ...] = models.KINDS
    width: int = 16
    depth: int = 2
    train_steps: int = 300
    learning_rate: float = 1e-2
    seed: int = 0
    train_settings: tuple[tuple[str, float], ...] = (("Euler", 1.0), ("Tsit5", 0.125))
    test_solvers: tuple[str, ...] = ("Euler", "Heun", "Tsit5")
    test_hs: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125, 0.0625)
    adaptive_solver: str = "Dopri5"
    test_rtols: tuple[float, ...] = (1e-3, 1e-6)
    trajectory_hs: tuple[float, ...] = (1.0, 0.25, 0.0625)
    sensitivity_ms: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)  # h = spacing / m
    sensitivity_rtols: tuple[float, ...] = (1e-3, 1e-4, 1e-5, 1e-6)  # adaptive_solver, by FD
    check_solvers: tuple[tuple[str, str], ...] = (("Euler", "Tsit5"), ("Tsit5", "Dopri8"))
    check_threshold: float = 0.1
    check_halvings: int = 5
    order_steps: tuple[int, ...] = (6, 12, 24, 48, 96, 192)  # steps over the horizon
    order_solvers: tuple[str, ...] = ("Euler", "Heun")
    fixed_point_box: tuple[float, float] | None = (-2.0, 2.0)  # per component; None: skip


CONFIG = Config()
QUICK = Config(
    kinds=("h_input", "h_free"),
    n_train=8,
    n_test=8,
    width=8,
    train_steps=60,
    test_solvers=("Euler", "Tsit5"),
    test_hs=(1.0, 0.5, 0.25),
    test_rtols=(1e-4,),
    trajectory_hs=(1.0, 0.25),
    sensitivity_ms=(1, 2, 4),
    sensitivity_rtols=(),
    check_halvings=2,
    order_solvers=(),
)

CAPTIONS = {
    "matrix": (
        "Train × test discretization matrix (Ott et al., ICLR 2021): log10 RMS error on held-out "
        "spiral trajectories of each model kind (panels), trained with Euler at h = 1 or Tsit5 "
        "at h = 1/8 (rows), tested with each solver and step or adaptive tolerance (columns). A "
        "model that learned the ODE has a flat row once the test solver is accurate; the "
        "h-input model trained with Euler at h = 1 is best at its own setting and gets worse as "
        "h shrinks: it learned Euler's map at h = 1."
    ),
    "trajectories": (
        "One held-out trajectory (phase plane) of each model under its training solver at "
        "several test steps h, against the truth (black). Look for curves that move away from "
        "the truth as h shrinks (a learned discretization) or stay put (a learned field)."
    ),
    "sensitivity": (
        "Step sensitivity under each model's training solver, at steps h = 1/m (m steps per save "
        "interval, n = m·k steps to the k-th save): top, the held-out loss; middle, the total "
        "d(loss)/dh by forward-mode autodiff through the fixed-step solve with n fixed, so the "
        "horizon n·h grows with h (this alone makes the h-free curves nonzero); bottom, "
        "d(loss)/d(h input): only the h fed to the field moves — zero for the h-free model, "
        "the learned reliance on h for the others. Dotted: the training step."
    ),
    "step_check": (
        "Ott et al.'s step-adaptation check: error of each model under its training solver "
        "(solid) and under a more accurate one at the same h (dashed: Tsit5 for Euler-trained "
        "models, Dopri8 for Tsit5-trained ones) as h is halved from the training step; the star "
        "is the first h where the two agree within 10 %, where the model starts to behave like "
        "an ODE. No star: they never agree within the halvings tried."
    ),
}


def _settings(config: Config) -> tuple[list, list]:
    D = training.Discretization
    train = [D(solver, h=h) for solver, h in config.train_settings]
    test = [D(s, h=h) for s in config.test_solvers for h in config.test_hs]
    test += [D(config.adaptive_solver, rtol=r) for r in config.test_rtols]
    return train, test


def _orders(model, setting, system, config) -> pd.DataFrame:
    """Observed order of each solver towards the model's own h → 0 limit (analysis.sweep)."""
    limit = neural.as_system(model, system.with_(t1=system.t0 + config.horizon))
    dts = [config.horizon / n for n in config.order_steps]
    rows = analysis.sweep(limit, list(config.order_solvers), dt0=dts)
    out = []
    for solver, g in rows.groupby("solver", sort=False):
        fit = convergence.fit_rows(g)
        out.append(
            (solver, fit.order, fit.ci_low, fit.ci_high, fit.points_used, fit.status, fit.reason)
        )
    columns = [
        "solver",
        "observed_order",
        "ci_low",
        "ci_high",
        "points_used",
        "fit_status",
        "fit_reason",
    ]
    df = pd.DataFrame(out, columns=columns)
    df.insert(0, "train_setting", setting.label)
    df.insert(0, "model", models.kind_of(model))
    return df


def _fixed_points(model, setting, system, config) -> pd.DataFrame:
    """Fixed points of the trained one-step map Φ_h at the training step and solver, next to
    the true flow's multipliers e^{λh} at the system's equilibria (λ: eigenvalues of f')."""
    box = [config.fixed_point_box] * int(np.size(system.y0))
    df = stability.fixed_points(neural.as_system(model, system), setting.solver, setting.h, box)
    flow = [
        np.abs(np.exp(np.linalg.eigvals(np.atleast_2d(jac)) * setting.h)).max()
        for jac in (
            jax.jacfwd(lambda y: system.limit_field(system.t0, y, system.args))(eq)
            for eq in system.equilibria or ()
        )
    ]
    for col in [c for c in df.columns if np.iscomplexobj(df[c].to_numpy())]:
        df = df.assign(**{f"{col}_re": np.real(df[col]), f"{col}_im": np.imag(df[col])})
        df = df.drop(columns=col)  # parquet stores no complex numbers
    return df.assign(
        model=models.kind_of(model),
        train_setting=setting.label,
        true_flow_max_abs_multiplier=max(flow) if flow else np.nan,
    )


def run(config: Config = CONFIG) -> dict[str, pd.DataFrame]:
    """Train every (kind, train setting), then measure every trained model."""
    system = systems.get(config.system, **dict(config.system_params))
    common = dict(horizon=config.horizon, saves=config.saves, spread=config.spread)
    train_data = training.trajectories(system, config.n_train, seed=config.seed, **common)
    test_data = training.trajectories(system, config.n_test, seed=config.seed + 1, **common)
    train_settings, test_settings = _settings(config)
    spacing = config.horizon / (config.saves - 1)
    sensitivity_hs = [spacing / m for m in config.sensitivity_ms]
    tables: dict[str, list[pd.DataFrame]] = {
        k: []
        for k in (
            "training",
            "matrix",
            "trajectories",
            "truth",
            "sensitivity",
            "step_check",
            "step_check_summary",
            "orders",
            "fixed_points",
        )
    }
    for kind in config.kinds:
        init = models.make(kind, system, width=config.width, depth=config.depth, seed=config.seed)
        for setting in train_settings:
            model, losses = training.train(
                init,
                train_data,
                setting,
                steps=config.train_steps,
                learning_rate=config.learning_rate,
            )
            label = dict(model=kind, train_setting=setting.label)
            tables["training"].append(
                pd.DataFrame(label | {"iteration": np.arange(len(losses)), "loss": losses})
            )
            tables["matrix"].append(
                neural.discretization_matrix(model, setting, test_settings, test_data).rows
            )
            states = neural.predictions(model, test_settings, test_data, train_setting=setting)
            rows = states.rows
            keep = (rows["solver"] == setting.solver) & rows["h"].isin(config.trajectory_hs)
            tables["trajectories"].append(rows[keep])
            if not tables["truth"]:
                tables["truth"].append(states.truth)
            for wrt in ("h", "h_input"):
                fixed = neural.step_sensitivity(
                    model,
                    test_data,
                    setting.solver,
                    hs=sensitivity_hs,
                    wrt=wrt,
                    train_setting=setting,
                )
                tables["sensitivity"].append(fixed.rows)
            if config.sensitivity_rtols:
                adaptive = neural.step_sensitivity(
                    model,
                    test_data,
                    config.adaptive_solver,
                    rtols=config.sensitivity_rtols,
                    train_setting=setting,
                )
                tables["sensitivity"].append(adaptive.rows)
            check = neural.step_adaptation(
                model,
                test_data,
                solver=setting.solver,
                h=setting.h,
                test_solver=dict(config.check_solvers)[setting.solver],
                threshold=config.check_threshold,
                max_halvings=config.check_halvings,
            )
            tables["step_check"].append(check.rows)
            tables["step_check_summary"].append(check.summary)
            if config.order_solvers:
                tables["orders"].append(_orders(model, setting, system, config))
            if config.fixed_point_box is not None:
                tables["fixed_points"].append(_fixed_points(model, setting, system, config))
    return {k: pd.concat(v, ignore_index=True) for k, v in tables.items() if v}


def plot(results: dict[str, pd.DataFrame]) -> dict:
    """Heatmaps of the matrix, trajectories vs truth, the sensitivity curve, the step check:
    each table read back into the result its plot takes."""
    from analysis import plotting

    matrix = neural.DiscretizationMatrix(rows=results["matrix"])
    states = neural.Predictions(rows=results["trajectories"], truth=results["truth"])
    check = neural.StepAdaptation(rows=results["step_check"], summary=results["step_check_summary"])
    return {
        "matrix": plotting.discretization_heatmaps(matrix),
        "trajectories": plotting.trajectory_panels(states),
        "sensitivity": plotting.step_sensitivity(
            neural.StepSensitivity(rows=results["sensitivity"])
        ),
        "step_check": plotting.step_adaptation(check),
    }
