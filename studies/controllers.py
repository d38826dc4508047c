"""Controllers: how the step-size controller moves the answer; which ones are smooth and cheap.

Under adaptive stepping the controller chooses h; for a step-dependent field f(t, y, args, h) h
is an input of the model, so the answer depends on the controller. Five parts:

1. Nonstiff efficiency: a tolerance sweep × Söderlind presets × solvers on Lotka–Volterra, with
   every attempted step logged inside the compiled solve. Heatmaps of error, nfev, rejection rate
   and step-ratio roughness mean |log(h_{n+1}/h_n)|; tolerance proportionality (slope of log error
   on log rtol, 1 = error ∝ tolerance); work-precision (error against nfev and against the best
   of `repeats` compiled wall times).
2. Stability-limited stepping: Prothero–Robinson (λ = -1000) solved by explicit Tsit5, where h
   settles at the stability boundary; step-size histories of I, PI34 and H211b.
3. Controller-induced spread: for step-dependent families (perturbed with q = 1, a lifted map,
   the Euler modifying integrator) the spread (max - min over presets) of y(T) at each tolerance,
   next to the same spread for the h-free limit field f(·, h = 0) and for the field with h frozen
   at `freeze_h` (StepTerm.freeze: h a parameter, not an input). Without h as input the spread
   is at the level of the tolerance.
4. y(T) against log rtol on a fine grid for y' = -y and f = -y + h·sin(y): smooth for the
   former, a jump wherever the accepted step sequence changes for the latter.

Controllers use diffrax's conventions (safety 0.9, an accepted step never shrinks the next one,
factor bounds [0.2, 10]); `controller_options` changes them for every solve.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

import analysis
from analysis import controller, step_log, systems, tolerance


@dataclasses.dataclass(frozen=True)
class Config:
    # 1. nonstiff efficiency
    nonstiff: str = "lotka_volterra"
    solvers: tuple[str, ...] = ("Bosh3", "Tsit5", "Dopri5", "Kvaerno5")
    presets: tuple[str, ...] = tuple(controller.PRESETS)
    rtols: tuple[float, ...] = tuple(np.logspace(-2, -10, 9))
    repeats: int = 5
    log_steps: int = 8192
    # 2. step-size histories at the stability boundary
    stiffness: float = 1e3
    history_solver: str = "Tsit5"
    history_presets: tuple[str, ...] = ("I", "PI34", "H211b")
    history_rtol: float = 1e-6
    # 3. controller-induced spread
    families: tuple[str, ...] = ("perturbed", "lifted_map", "modified_euler")
    spread_solver: str = "Tsit5"
    spread_presets: tuple[str, ...] = ("I", "PI34", "H211b", "H312b")
    spread_rtols: tuple[float, ...] = tuple(np.logspace(-3, -9, 7))
    freeze_h: float = 0.05
    # 4. y(T) on a fine tolerance grid
    fine_preset: str = "PI34"
    fine_rtols: tuple[float, ...] = tuple(np.logspace(-3, -8, 151))
    controller_options: tuple = ()  # (name, value) pairs for analysis.controller.make


CONFIG = Config()
QUICK = Config(
    solvers=("Tsit5",),
    presets=("I", "PI34", "H211b"),
    rtols=(1e-3, 1e-5, 1e-7),
    repeats=2,
    log_steps=2048,
    families=("perturbed",),
    spread_presets=("I", "H211b"),
    spread_rtols=(1e-3, 1e-5, 1e-7),
    fine_preset="I",
    fine_rtols=tuple(np.logspace(-3, -7, 25)),
)

CAPTIONS = {
    "heatmaps": (
        "Lotka–Volterra, each preset (rows) × tolerance (columns) × solver (panels): log10 error "
        "at t1, log10 nfev, rejection rate, and mean step-ratio roughness |log(h_{n+1}/h_n)|. "
        "Look for presets that reach the same error with fewer evaluations and fewer rejections, "
        "and for the smooth filters (H211b, H312b, H211PI) having lower roughness."
    ),
    "work_precision": (
        "Work-precision on Lotka–Volterra: error against nfev (top) and against wall time, best "
        "of several compiled runs (bottom), one line per controller, one panel per solver. Lower "
        "left is better; lines close together mean the controller matters little for cost. For a "
        "problem this small a solve takes ~0.1 ms and wall time is mostly dispatch overhead."
    ),
    "histories": (
        "Prothero–Robinson (λ = -1000) with explicit Tsit5: accepted step sizes against t, "
        "rejected attempts as crosses. h settles at the stability boundary; the I controller "
        "oscillates there and keeps rejecting, PI34 and H211b damp the oscillation."
    ),
    "spread": (
        "Controller-induced spread of y(T) (max - min over presets) against rtol, for step-"
        "dependent fields with h as an input, for their h-free limit f(·, 0), and with h frozen "
        "at a fixed value; dashed: spread = rtol. Without h as input the spread follows the "
        "tolerance; with h as input it is set by how far the controllers' steps differ. Only "
        "finished solves count: the lifted map with h as input fails (max_steps) below rtol "
        "1e-3, because h·f = Φ(y) - y makes its local error estimate independent of h, so no "
        "step size can meet a tighter tolerance."
    ),
    "fine_tolerance": (
        "y(T) minus the h → 0 limit's exact value against rtol on a fine grid: y' = -y (left) "
        "converges smoothly; f = -y + h·sin(y) (right) jumps wherever the accepted step "
        "sequence changes, and its offset does not shrink like the tolerance."
    ),
}

PAPER_TABLES = {
    "proportionality": "Tolerance proportionality: slope of log10 error on log10 rtol.",
    "jumps": "Largest jump of y(T) between neighbouring tolerances on the fine grid.",
}


def _limit(system: systems.System) -> systems.System:
    """The h-free limit: the same field evaluated at h = 0 in every stage."""
    return system.limit().with_(name=f"limit({system.name})")


def _frozen(system: systems.System, h0: float) -> systems.System:
    """h as a parameter: the field of StepTerm(f).freeze(h0), an ordinary ODE."""
    return system.freeze(h0).with_(name=f"frozen({system.name}, h={h0})")


def _family(name: str) -> systems.System:
    if name == "perturbed":  # the toy: f = -y + h·sin(y) on [0, 10]
        return systems.get("perturbed", base=systems.get("linear", t1=10.0), q=1, g="sin")
    if name == "lifted_map":  # a smooth residual map read as (Φ(y) - y)/h
        return systems.get("lifted_map", map="residual", steps=10, h_train=1.0)
    if name == "modified_euler":
        return systems.get("modified_euler", base="logistic")
    return systems.get(name)


def _nonstiff(config: Config) -> tolerance.WorkPrecision:
    pairs = [(s, p) for s in config.solvers for p in config.presets]
    return tolerance.work_precision(
        systems.get(config.nonstiff),
        pairs,
        list(config.rtols),
        repeats=config.repeats,
        log_steps=config.log_steps,
        controller_options=dict(config.controller_options),
    )


def _histories(config: Config) -> step_log.StepLog:
    return step_log.step_log(
        systems.get("prothero_robinson", stiffness=config.stiffness, t1=2.0),
        config.history_solver,
        config.history_presets,
        config.history_rtol,
        size=config.log_steps,
        **dict(config.controller_options),
    )


def _spread(config: Config) -> tolerance.Spread:
    variants = []
    for fam in config.families:
        system = _family(fam)
        variants += [
            (fam, "h input", system),
            (fam, "h-free limit", _limit(system)),
            (fam, f"h frozen at {config.freeze_h}", _frozen(system, config.freeze_h)),
        ]
    frames = []
    for fam, variant, system in variants:
        for name in config.spread_presets:
            rows = analysis.sweep(
                system,
                config.spread_solver,
                controller=name,
                rtol=list(config.spread_rtols),
                chunk_size=len(config.spread_rtols),
                controller_options=dict(config.controller_options),
            )
            frames.append(rows.assign(family=fam, variant=variant))
    return tolerance.spread(pd.concat(frames, ignore_index=True), by=("family", "variant", "rtol"))


def _fine(config: Config) -> tolerance.OutputVsTolerance:
    base = systems.get("linear", t1=10.0)
    stepdep = _family("perturbed")
    rows = analysis.sweep(
        [base, stepdep],
        config.spread_solver,
        controller=config.fine_preset,
        rtol=list(config.fine_rtols),
        chunk_size=len(config.spread_rtols),  # the spread's chunks: its compiled solve is reused
        controller_options=dict(config.controller_options),
    )
    rows["field"] = np.where(rows["system"] == base.name, "h-free", "h input")
    return tolerance.output_vs_tolerance(rows, float(np.exp(-10.0)), by="field")


def run(config: Config = CONFIG) -> dict[str, pd.DataFrame]:
    """All four parts; returns the tables of their results (see `results`)."""
    nonstiff = _nonstiff(config)
    spread = _spread(config)
    fine = _fine(config)
    histories = _histories(config)
    return {
        "nonstiff": nonstiff.rows,
        "proportionality": nonstiff.proportionality,
        "histories": histories.steps,
        "history_solves": histories.solves,
        "spread_rows": spread.rows,
        "spread": spread.spread,
        "fine": fine.rows,
        "jumps": fine.jumps,
    }


def typed(tables: dict[str, pd.DataFrame]) -> dict:
    """The typed results behind the figures, from `run`'s tables (live or read back)."""
    return {
        "nonstiff": tolerance.WorkPrecision(tables["nonstiff"], tables["proportionality"]),
        "histories": step_log.StepLog(tables["histories"], tables["history_solves"]),
        "spread": tolerance.Spread(tables["spread_rows"], tables["spread"]),
        "fine": tolerance.OutputVsTolerance(tables["fine"], tables["jumps"]),
    }


def plot(tables: dict[str, pd.DataFrame]) -> dict:
    """Heatmaps, work-precision, step histories, spread and the fine-grid output."""
    from analysis import plotting

    result = typed(tables)
    return {
        "heatmaps": plotting.controller_heatmaps(result["nonstiff"]),
        "work_precision": plotting.work_precision(result["nonstiff"]),
        "histories": plotting.step_histories(result["histories"]),
        "spread": plotting.spread_vs_tolerance(result["spread"]),
        "fine_tolerance": plotting.output_vs_tolerance(result["fine"]),
    }
