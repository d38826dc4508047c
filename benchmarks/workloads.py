"""The benchmark workloads and, for each, every method measured on it.

`MEASUREMENTS` maps (workload, method) to a function `fn(scale) -> Record`; `benchmarks.__main__`
runs each in a fresh process. `Scale` holds the sizes (`FULL` is the issue's workload, `QUICK` a
smoke test of the harness).

1. fixed: convergence sweep, 64 uniform step counts N (h = span/N, N geometric in [16, 1024]) ×
   {Euler, Heun, Bosh3, Tsit5, Dopri8} on linear10 and lotka_volterra.
2. adaptive: 32 tolerances (rtol = atol, geometric in [1e-10, 1e-3]) × {Tsit5, Dopri5,
   Kvaerno5} × controller presets {I, PI34, H312PID} on van_der_pol(mu=10) and kepler.
3. orbit: 2,000 step sizes × 64 initial conditions × 1,000 iterations of Euler's one-step map
   of the logistic ODE (the logistic map with r = 1 + h), keeping the last 100 iterates: through
   `analysis.stability.orbit_diagram` and as a bare vmapped scan returning arrays.
4. stepaware: StepAware overhead, fixed-step grids of workload 1 on linear10.
5. memory: a chunked adaptive sweep on a 10× larger grid with the same chunk size, against the same
   sweep unchunked.
6., 7. the persistent compilation cache and the whole toolkit: `benchmarks.toolkit`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import analysis
from analysis import StepAware, StepTerm, reference, solvers, stability, systems
from analysis.systems import System

from . import baselines, toolkit
from ._measure import (
    Record,
    compile_seconds,
    measure_jitted,
    peak_rss_mb,
    repeat,
    timed,
    xla_compiles,
)

FIXED_SYSTEMS = ("linear10", "lotka_volterra")
FIXED_SOLVERS = ("Euler", "Heun", "Bosh3", "Tsit5", "Dopri8")
ADAPTIVE_SYSTEMS = (("van_der_pol", {"mu": 10.0}), ("kepler", {}))
ADAPTIVE_SOLVERS = ("Tsit5", "Dopri5", "Kvaerno5")
PRESETS = ("I", "PI34", "H312PID")
SCIPY_ADAPTIVE = {"Tsit5": "RK45", "Dopri5": "RK45", "Kvaerno5": "Radau"}
DIAGNOSTIC_SOLVERS = ("Tsit5", "Dopri8")
STEPAWARE_SOLVERS = ("Euler", "Heun", "Bosh3", "Tsit5", "Dopri5", "Dopri8")
ADAPTIVE_MAX_STEPS = 2**14


@dataclasses.dataclass(frozen=True)
class Scale:
    """Workload sizes and how many repeats / subsampled settings each method gets."""

    fixed_steps: int = 64
    tolerances: int = 32
    orbit: tuple[int, int, int, int] = (2000, 64, 1000, 100)  # h, y0, iterations, kept
    memory: tuple[int, int, int] = (2048, 128, 64)  # grid, chunk, state dimension
    repeats: int = 5
    fast_repeats: int = 11  # warm passes of the fixed-step workload (each well under a second)
    naive_per_group: int = 2  # naive-loop settings timed per group, then scaled linearly
    jit_loop_presets: tuple[str, ...] = ("PI34",)  # adaptive jit loop: measured presets
    cache_study: tuple[str, bool] = ("convergence", False)  # (study, --quick) of the cache runs
    toolkit: bool = True  # time make figures / make test in a fresh clone (minutes each)


FULL = Scale()
QUICK = Scale(
    fixed_steps=8,
    tolerances=4,
    orbit=(200, 8, 100, 10),
    memory=(1024, 64, 64),
    repeats=2,
    fast_repeats=2,
    naive_per_group=1,
    cache_study=("demo", True),
    toolkit=False,
)


def step_counts(n: int) -> np.ndarray:
    """n uniform step counts N, geometric in [16, 1024] and rounded (distinct for n ≤ 64)."""
    return np.unique(np.round(np.geomspace(16, 1024, n)).astype(int))


def tolerances(n: int) -> np.ndarray:
    """n tolerances geometric in [1e-10, 1e-3], loosest first."""
    return np.geomspace(1e-3, 1e-10, n)


def _max_steps(n_max: int) -> int:
    return 2 ** math.ceil(math.log2(n_max + 1))  # what the sweep engine uses


def _fixed_systems():
    return {name: systems.get(name) for name in FIXED_SYSTEMS}


def _adaptive_systems():
    return {name: systems.get(name, **kw) for name, kw in ADAPTIVE_SYSTEMS}


def _subsample(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


# ------------------------------------------------------------------ workload 1: fixed steps


def lane_efficiency(frames, chunk: int | None = None) -> float:
    """Σ steps / Σ (solves × longest solve in its chunk) over sweep rows, chunk by chunk.

    A vmapped chunk runs as many steps as its longest solve, finished lanes idling, so this is
    the fraction of the vmapped work that is useful. Chunks are cut as the sweep cuts them:
    each (system, solver) group sorted by h, then rtol, descending; `chunk` None = one chunk.
    """
    useful = padded = 0
    for df in frames:
        for _, g in df.groupby(["system", "solver"]):
            g = g.sort_values(["h", "rtol"], ascending=False, na_position="last")
            size = chunk or len(g)
            for start in range(0, len(g), size):
                steps = g["num_steps"].to_numpy()[start : start + size]
                useful += int(steps.sum())
                padded += len(steps) * int(steps.max())
    return useful / padded


def fixed_sweep(scale: Scale, chunk_size: int | None = None) -> Record:
    """analysis.sweep over the whole grid: one call per system, all five solvers."""
    sys = _fixed_systems()
    n = step_counts(scale.fixed_steps)

    def run_pass():
        total = nfev = programs = 0
        # The sweep's error column needs each system's reference (exact or solved) y(t1): made
        # here first (cached after the first pass) so that its compile time is measured apart.
        before = compile_seconds()
        for s in sys.values():
            reference.final_state(s)
        reference_compile.append(compile_seconds() - before)
        for s in sys.values():
            df = analysis.sweep(s, FIXED_SOLVERS, dt0=(s.t1 - s.t0) / n, chunk_size=chunk_size)
            total, nfev = total + len(df), nfev + int(df["nfev"].sum())
            programs += df.attrs["compilations"]
            for solver, wall in df.groupby("solver")["wall_s"].sum().items():
                kernel.setdefault(f"{s.name}/{solver}", []).append(float(wall))
            lanes.append(df)
        return total, nfev, programs

    kernel, lanes, reference_compile = {}, [], []
    method = "sweep" if chunk_size is None else f"sweep, chunk_size={chunk_size}"
    rec = measure_jitted("fixed", method, run_pass, scale.fast_repeats)
    per_group = {k: statistics.median(v[1:]) for k, v in kernel.items()}  # warm passes
    rec.extra = {
        "kernel_s": sum(per_group.values()),
        "per_group_s": per_group,
        "lane_efficiency": lane_efficiency(lanes[-len(sys) :], chunk_size),
        "reference_compile_s": reference_compile[0],
    }
    rec.notes = (
        "analysis.sweep, one call per system"
        + ("" if chunk_size is None else f", chunks of {chunk_size} solves of similar N")
        + "; kernel = the compiled chunks alone, without DataFrame assembly and error "
        "computation"
    )
    return rec


def fixed_sweep_chunked(scale: Scale) -> Record:
    """The same sweep with chunk_size=16: chunks of similar N pad less (see lane_efficiency)."""
    return fixed_sweep(scale, chunk_size=16)


def _scan_pass(programs: dict, n, per_group: dict):
    def run_pass():
        nfev = 0
        for (s, solver), fn in programs.items():
            h, steps = jnp.asarray((s.t1 - s.t0) / n), jnp.asarray(n)
            _, wall = timed(lambda fn=fn, h=h, steps=steps: jax.block_until_ready(fn(h, steps)))
            per_group.setdefault(f"{s.name}/{solver}", []).append(wall)
            nfev += int(solvers.nfev(solver, n, step_dependent=False).sum())
        return len(programs) * len(n), nfev, len(programs)

    return run_pass


def _scan_record(method: str, programs: dict, n, scale: Scale, notes: str) -> Record:
    per_group = {}
    rec = measure_jitted("fixed", method, _scan_pass(programs, n, per_group), scale.fast_repeats)
    rec.extra = {"per_group_s": {k: statistics.median(v[1:]) for k, v in per_group.items()}}
    rec.notes = notes
    return rec


def fixed_scan(scale: Scale) -> Record:
    """The hand-written lax.scan RK loop, vmapped over each (system, solver)'s grid."""
    n = step_counts(scale.fixed_steps)
    programs = {
        (s, solver): baselines.scan_rk(s, solver, int(n.max()))
        for s in _fixed_systems().values()
        for solver in FIXED_SOLVERS
    }
    notes = "hand-written fixed-step RK, lax.scan over the largest N with masking, vmapped"
    return _scan_record("lax.scan RK", programs, n, scale, notes)


def fixed_step_scan(scale: Scale) -> Record:
    """Diagnostic: diffrax's own `solver.step` inside the same masked, vmapped lax.scan.

    Only for DIAGNOSTIC_SOLVERS (the many-stage methods, where the gap to `scan_rk` is).
    """
    n = step_counts(scale.fixed_steps)
    programs = {
        (s, solver): baselines.scan_solver_step(s, solver, int(n.max()))
        for s in _fixed_systems().values()
        for solver in DIAGNOSTIC_SOLVERS
    }
    notes = f"diagnostic, {'/'.join(DIAGNOSTIC_SOLVERS)} only: diffrax solver.step in that loop"
    return _scan_record("lax.scan of diffrax step", programs, n, scale, notes)


def fixed_jit_loop(scale: Scale) -> Record:
    """One jax.jit per (system, solver), called once per step size."""
    n = step_counts(scale.fixed_steps)
    steps = _max_steps(int(n.max()))
    programs = {
        (s, solver): baselines.jit_solver(s, solver, max_steps=steps)
        for s in _fixed_systems().values()
        for solver in FIXED_SOLVERS
    }

    def run_pass():
        nfev = total = 0
        for (s, solver), fn in programs.items():
            for dt in (s.t1 - s.t0) / n:
                y1, k = fn(dt)
                np.asarray(y1)
                nfev += int(solvers.nfev(solver, int(k), step_dependent=False))
                total += 1
        return total, nfev, len(programs)

    rec = measure_jitted("fixed", "jit loop", run_pass, scale.fast_repeats)
    rec.notes = "jax.jit(diffeqsolve) with dt0 traced, compiled once per (system, solver)"
    return rec


def fixed_naive(scale: Scale) -> Record:
    """diffeqsolve per step size, dt0 a Python float: timed on a subsample, scaled up."""
    n = step_counts(scale.fixed_steps)
    steps = _max_steps(int(n.max()))
    pick = _subsample(len(n), scale.naive_per_group)
    c0, s0 = xla_compiles(), compile_seconds()
    e2e = nfev = 0.0
    for s in _fixed_systems().values():
        for solver in FIXED_SOLVERS:
            times = []
            for dt in (s.t1 - s.t0) / n[pick]:
                (_, k), t = timed(
                    lambda s=s, solver=solver, dt=dt: baselines.naive_solve(
                        s, solver, dt0=float(dt), max_steps=steps
                    )
                )
                times.append(t)
            e2e += statistics.mean(times) * len(n)
            nfev += int(solvers.nfev(solver, n, step_dependent=False).sum())  # N steps each
    factor = len(n) / len(pick)
    groups = len(FIXED_SYSTEMS) * len(FIXED_SOLVERS)
    return Record(
        workload="fixed",
        method="naive loop",
        n_solves=groups * len(n),
        nfev=int(nfev),
        end_to_end_s=e2e,
        compile_s=(compile_seconds() - s0) * factor,
        run_s=None,
        run_repeats=[],
        compilations=round((xla_compiles() - c0) * factor),
        xla_compilations=round((xla_compiles() - c0) * factor),
        extrapolated=f"timed {len(pick)} of {len(n)} step sizes per (system, solver), "
        f"scaled by {factor:g}",
        notes="diffrax.diffeqsolve(..., dt0=float) per setting: recompiles per float",
    )


def fixed_solve_ivp(scale: Scale) -> Record:
    """solve_ivp forced to the same constant steps, one call per setting, numpy fields."""
    n = step_counts(scale.fixed_steps)
    sys = _fixed_systems()
    runs = []
    warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the solves that blow up
    for _ in range(max(1, scale.repeats // 2)):
        nfev = total = 0
        start = time.perf_counter()
        for name, s in sys.items():
            fun = baselines.numpy_field(name, s)
            for solver in FIXED_SOLVERS:
                for dt in (s.t1 - s.t0) / n:
                    _, _, evals = baselines.solve_ivp_fixed(
                        fun, s, baselines.SCIPY_FIXED[solver], dt
                    )
                    nfev, total = nfev + evals, total + 1
        runs.append(time.perf_counter() - start)
    methods = ", ".join(f"{k}→{v}" for k, v in baselines.SCIPY_FIXED.items() if k in FIXED_SOLVERS)
    return Record(
        workload="fixed",
        method="solve_ivp loop",
        n_solves=total,
        nfev=nfev,
        end_to_end_s=runs[0],
        compile_s=0.0,
        run_s=statistics.median(runs),
        run_repeats=runs,
        compilations=0,
        xla_compilations=0,
        notes=f"first_step = max_step = h, rtol = atol = 1e10 (every step accepted); {methods}",
    )


# ------------------------------------------------------------------ workload 2: tolerances


def adaptive_sweep(scale: Scale) -> Record:
    """analysis.sweep per (system, preset) over 3 solvers × the tolerances."""
    sys = _adaptive_systems()
    tols = tolerances(scale.tolerances)
    per_group = {}

    def run_pass():
        total = nfev = programs = 0
        for s in sys.values():
            for preset in PRESETS:
                df = analysis.sweep(s, ADAPTIVE_SOLVERS, controller=preset, rtol=tols)
                total, nfev = total + len(df), nfev + int(df["nfev"].sum())
                programs += df.attrs["compilations"]
                for solver, g in df.groupby("solver"):
                    per_group[f"{s.name}/{solver}/{preset}"] = g["status"].value_counts().to_dict()
                lanes.append(df)
        return total, nfev, programs

    lanes = []
    rec = measure_jitted("adaptive", "sweep", run_pass, scale.repeats)
    rec.extra["groups"] = len(sys) * len(ADAPTIVE_SOLVERS) * len(PRESETS)
    rec.extra["programs_expected"] = len(sys) * len(ADAPTIVE_SOLVERS)  # presets share one
    rec.extra["statuses"] = per_group
    rec.extra["lane_efficiency"] = lane_efficiency(lanes[-len(sys) * len(PRESETS) :])
    rec.notes = "analysis.sweep(controller=preset, rtol=tols, atol=rtol)"
    return rec


def adaptive_jit_loop(scale: Scale) -> Record:
    """One jax.jit per (system, solver, preset), called per tolerance; measured presets only."""
    sys = _adaptive_systems()
    tols = tolerances(scale.tolerances)
    programs = {
        (s, solver, p): baselines.jit_solver(s, solver, controller=p, max_steps=ADAPTIVE_MAX_STEPS)
        for s in sys.values()
        for solver in ADAPTIVE_SOLVERS
        for p in scale.jit_loop_presets
    }

    def run_pass():
        nfev = total = 0
        for (_, solver, _), fn in programs.items():
            for tol in tols:
                y1, k = fn(tol, tol)
                np.asarray(y1)
                nfev += int(solvers.nfev(solver, int(k), step_dependent=False))
                total += 1
        return total, nfev, len(programs)

    rec = measure_jitted("adaptive", "jit loop", run_pass, scale.repeats)
    factor = len(PRESETS) / len(scale.jit_loop_presets)
    if factor != 1:
        for field in ("n_solves", "nfev", "end_to_end_s", "compile_s", "run_s"):
            setattr(rec, field, getattr(rec, field) * factor)
        rec.n_solves, rec.nfev = int(rec.n_solves), int(rec.nfev)
        rec.run_repeats = [r * factor for r in rec.run_repeats]
        rec.compilations = int(rec.compilations * factor)
        rec.xla_compilations = int(rec.xla_compilations * factor)
        rec.extrapolated = (
            f"measured for presets {list(scale.jit_loop_presets)}, scaled by {factor:g} to "
            f"{len(PRESETS)} presets"
        )
    rec.notes = "jax.jit(diffeqsolve) with rtol, atol traced"
    return rec


def adaptive_naive(scale: Scale) -> Record:
    """diffeqsolve per tolerance, tolerances Python floats: subsample of tolerances, PI34."""
    sys = _adaptive_systems()
    tols = tolerances(scale.tolerances)
    pick = _subsample(len(tols), scale.naive_per_group)
    c0, s0 = xla_compiles(), compile_seconds()
    e2e = nfev = 0.0
    for s in sys.values():
        for solver in ADAPTIVE_SOLVERS:
            times, evals = [], []
            for tol in tols[pick]:
                (_, k), t = timed(
                    lambda s=s, solver=solver, tol=tol: baselines.naive_solve(
                        s,
                        solver,
                        controller="PI34",
                        rtol=tol,
                        atol=tol,
                        max_steps=ADAPTIVE_MAX_STEPS,
                    )
                )
                times.append(t)
                evals.append(int(solvers.nfev(solver, k, step_dependent=False)))
            e2e += statistics.mean(times) * len(tols) * len(PRESETS)
            nfev += statistics.mean(evals) * len(tols) * len(PRESETS)
    factor = len(tols) * len(PRESETS) / len(pick)
    groups = len(sys) * len(ADAPTIVE_SOLVERS)
    return Record(
        workload="adaptive",
        method="naive loop",
        n_solves=groups * len(tols) * len(PRESETS),
        nfev=int(nfev),
        end_to_end_s=e2e,
        compile_s=(compile_seconds() - s0) * factor,
        run_s=None,
        run_repeats=[],
        compilations=round((xla_compiles() - c0) * factor),
        xla_compilations=round((xla_compiles() - c0) * factor),
        extrapolated=f"timed {len(pick)} tolerances per (system, solver) with PI34, scaled "
        f"by {factor:g} to {len(tols)} tolerances × {len(PRESETS)} presets",
        notes="diffrax.diffeqsolve with controller.make(preset, float, float) per setting",
    )


def adaptive_solve_ivp(scale: Scale) -> Record:
    """solve_ivp at the same tolerances (RK45 for Tsit5/Dopri5, Radau for Kvaerno5)."""
    sys = _adaptive_systems()
    tols = tolerances(scale.tolerances)
    nfev = total = failed = 0
    warnings.simplefilter("ignore", RuntimeWarning)
    start = time.perf_counter()
    for name, s in sys.items():
        fun = baselines.numpy_field(name, s)
        for solver in ADAPTIVE_SOLVERS:
            for tol in tols:
                _, _, evals, status = baselines.solve_ivp_adaptive(
                    fun, s, SCIPY_ADAPTIVE[solver], tol, tol
                )
                nfev, total, failed = nfev + evals, total + 1, failed + (status != 0)
    wall = time.perf_counter() - start
    factor = len(PRESETS)
    return Record(
        workload="adaptive",
        method="solve_ivp loop",
        n_solves=total * factor,
        nfev=nfev * factor,
        end_to_end_s=wall * factor,
        compile_s=0.0,
        run_s=wall * factor,
        run_repeats=[wall * factor],
        compilations=0,
        xla_compilations=0,
        extrapolated=f"scipy has no controller presets: one loop of {total} solves, "
        f"counted {factor}× (one per preset)",
        notes=f"RK45 for Tsit5 and Dopri5, Radau for Kvaerno5; rtol = atol; {failed} failed",
    )


# ------------------------------------------------------------------ workload 3: orbit diagram


def orbit_points(iterations: int, keep: int, solver: str = "Euler"):
    """f(hs, y0s) -> the last `keep` of `iterations` iterates of Φ_h, shape (n_h, n_y0, keep).

    Φ_h is `analysis.stability.one_step_map` of the logistic ODE y' = y(1 - y); with Euler it
    is the logistic map, conjugate to x ↦ (1 + h)x(1 - x) by x = h·y/(1 + h). The transient runs
    in a fori_loop, the kept iterates in a lax.scan; vmapped over y0 and h, jitted.
    """
    system = systems.get("logistic")

    def orbit(h, y0):
        phi = stability.one_step_map(system, solver, h)

        def step(y, _):
            y = phi(y)
            return y, y

        y = jax.lax.fori_loop(0, iterations - keep, lambda _, y: phi(y), y0)
        return jax.lax.scan(step, y, length=keep)[1]

    return jax.jit(jax.vmap(jax.vmap(orbit, in_axes=(None, 0)), in_axes=(0, None)))


def _orbit_grid(scale: Scale):
    n_h, n_y0, iterations, keep = scale.orbit
    return np.linspace(1.5, 3.0, n_h), np.linspace(0.05, 0.95, n_y0), iterations, keep


def orbit_scan(scale: Scale) -> Record:
    """Workload 3 as arrays: `orbit_points`, the vmapped scan of one_step_map."""
    hs, y0s, iterations, keep = _orbit_grid(scale)
    fn = orbit_points(iterations, keep)

    def run_pass():
        out = jax.block_until_ready(fn(jnp.asarray(hs), jnp.asarray(y0s)))
        assert out.shape == (len(hs), len(y0s), keep)
        return len(hs) * len(y0s), len(hs) * len(y0s) * iterations, 1

    rec = measure_jitted("orbit", "vmapped scan (arrays)", run_pass, scale.repeats)
    rec.notes = (
        f"{len(hs)} h × {len(y0s)} y0 × {iterations} Euler steps of the logistic ODE "
        f"(stability.one_step_map in lax.scan, vmapped twice), last {keep} kept as an array; "
        "RHS evals = map evaluations"
    )
    return rec


def orbit_library(scale: Scale) -> Record:
    """Workload 3 through `analysis.stability.orbit_diagram` (an OrbitDiagram of arrays,
    Lyapunov exponents; the tidy rows are left to `to_frame()`, on demand)."""
    hs, y0s, iterations, keep = _orbit_grid(scale)

    def run_pass():
        od = stability.orbit_diagram(  # the Lyapunov average over the kept iterates only, as
            # the bare scan does (the default n_lyapunov = 50,000 would be 50× the workload)
            "logistic",
            "Euler",
            hs,
            y0s,
            n_transient=iterations - keep,
            n_keep=keep,
            n_lyapunov=keep,
        )
        assert od.ys.shape == (len(hs), len(y0s), keep, 1)
        return len(hs) * len(y0s), len(hs) * len(y0s) * iterations, 1

    rec = measure_jitted("orbit", "stability.orbit_diagram", run_pass, min(scale.repeats, 2))
    rec.notes = (
        f"the same orbits plus a tangent vector per orbit (Lyapunov exponents), returned as an "
        f"OrbitDiagram of arrays ({len(hs) * len(y0s) * keep:,} kept iterates; the tidy rows "
        "are its to_frame(), not built here)"
    )
    return rec


# ------------------------------------------------------------------ workload 4: StepAware


def _fixed_program(term, solver, system, n_max: int):
    def solve(h):
        sol = diffrax.diffeqsolve(
            term(h),
            solver,
            system.t0,
            system.t1,
            h,
            system.y0,
            system.args,
            stepsize_controller=diffrax.ConstantStepSize(),
            saveat=diffrax.SaveAt(t1=True),
            max_steps=_max_steps(n_max),
            throw=False,
        )
        return sol.ys[-1]

    return jax.jit(jax.vmap(solve))


def stepaware(scale: Scale) -> Record:
    """StepAware against the bare solver, h-free and h-dependent fields, interleaved repeats.

    h-free: linear10 as ODETerm + solver vs StepTerm + StepAware(solver) (same computation).
    h-dependent: f + h·sin(y) on linear10 frozen at each lane's h (FrozenStepTerm, bare solver,
    FSAL reused) vs StepTerm + StepAware(solver) (FSAL stage refreshed each step). At fixed
    steps both compute the same numbers; only the refreshed evaluation differs.
    """
    base = systems.get("linear10")
    pert = systems.get("perturbed", base="linear10", c=1.0, q=1, g="sin")
    n = step_counts(scale.fixed_steps)
    hs = jnp.asarray((base.t1 - base.t0) / n)
    rows, c0, s0 = {}, xla_compiles(), compile_seconds()
    e2e_start = time.perf_counter()
    for name in STEPAWARE_SOLVERS:
        solver = solvers.get(name)
        variants = {
            "bare": _fixed_program(
                lambda h: diffrax.ODETerm(base.limit_field), solver, base, int(n.max())
            ),
            "stepaware_hfree": _fixed_program(
                lambda h: StepTerm(base.vector_field), StepAware(solver), base, int(n.max())
            ),
            "frozen_hdep": _fixed_program(
                lambda h: StepTerm(pert.vector_field).freeze(h), solver, pert, int(n.max())
            ),
            "stepaware_hdep": _fixed_program(
                lambda h: StepTerm(pert.vector_field), StepAware(solver), pert, int(n.max())
            ),
        }
        outs = {k: np.asarray(fn(hs)) for k, fn in variants.items()}
        times = {k: [] for k in variants}
        for _ in range(max(3 * scale.repeats, 5)):
            for k, fn in variants.items():
                times[k].append(repeat(lambda fn=fn: jax.block_until_ready(fn(hs)), 1)[0])
        med = {k: statistics.median(v) for k, v in times.items()}
        steps = n.sum()
        rows[name] = {
            "time_s": med,
            "overhead_hfree": med["stepaware_hfree"] / med["bare"] - 1,
            "overhead_hdep": med["stepaware_hdep"] / med["frozen_hdep"] - 1,
            "nfev_ratio_hdep": float(
                solvers.nfev(name, steps, step_dependent=True)
                / solvers.nfev(name, steps, step_dependent=False)
            ),
            "max_diff_hfree": float(np.max(np.abs(outs["stepaware_hfree"] - outs["bare"]))),
            "max_diff_hdep": float(np.max(np.abs(outs["stepaware_hdep"] - outs["frozen_hdep"]))),
        }
    total = sum(sum(r["time_s"].values()) for r in rows.values())
    return Record(
        workload="stepaware",
        method="StepAware vs bare",
        n_solves=len(STEPAWARE_SOLVERS) * 4 * len(n),
        nfev=0,
        end_to_end_s=time.perf_counter() - e2e_start,
        compile_s=compile_seconds() - s0,
        run_s=total,
        run_repeats=[],
        compilations=len(STEPAWARE_SOLVERS) * 4,
        xla_compilations=xla_compiles() - c0,
        notes="medians of interleaved repeats, fixed-step grids of workload 1 on linear10",
        extra={"solvers": rows},
    )


# ------------------------------------------------------------------ memory


def decay_system(dim: int) -> System:
    """y' = -y in `dim` dimensions, exact y0·e^{-t}: a large state with a trivial field."""
    y0 = jnp.linspace(1.0, 2.0, dim)
    return System(
        name=f"decay{dim}",
        vector_field=lambda t, y, args, h: -y,
        y0=y0,
        exact=lambda t: y0 * jnp.exp(-t),
        params={"dim": dim},
    )


def memory_grid(size: int) -> np.ndarray:
    """`size` tolerances cycling through rtol = 10^-(4 + 4k/31), k = 0..31 (cheap adaptive
    solves, any grid size)."""
    return 10.0 ** -(4 + 4 * (np.arange(size) % 32) / 31)


def _memory(grid: int, chunk: int, dim: int, label: str) -> Record:
    before = _measure_peak()
    s = decay_system(dim)
    # Adaptive solves: each lane holds diffrax's whole solver and controller state (a marched
    # constant-step lane holds little more than its state, so chunking would have little to save).
    (df, wall) = timed(
        lambda: analysis.sweep(
            s, "Tsit5", controller="PI34", rtol=memory_grid(grid), chunk_size=chunk
        )
    )
    assert (df["status"] == "ok").all()
    return Record(
        workload="memory",
        method=label,
        n_solves=len(df),
        nfev=int(df["nfev"].sum()),
        end_to_end_s=wall,
        compile_s=0.0,
        run_s=None,
        run_repeats=[],
        compilations=df.attrs["compilations"],
        xla_compilations=0,
        notes=f"Tsit5 with PI34 on decay{dim}, grid {grid}, chunk {chunk}",
        extra={"rss_before_mb": before, "grid": grid, "chunk": chunk},
    )


def _measure_peak():
    jax.block_until_ready(jnp.ones(3) + 1)  # jax initialised before the baseline
    return peak_rss_mb()


def memory_small(scale: Scale) -> Record:
    grid, chunk, dim = scale.memory
    return _memory(grid, chunk, dim, "grid G, chunk C")


def memory_large(scale: Scale) -> Record:
    grid, chunk, dim = scale.memory
    return _memory(10 * grid, chunk, dim, "grid 10G, chunk C")


def memory_unchunked(scale: Scale) -> Record:
    grid, _, dim = scale.memory
    return _memory(10 * grid, 10 * grid, dim, "grid 10G, unchunked")


MEASUREMENTS = {
    ("fixed", "sweep"): fixed_sweep,
    ("fixed", "sweep, chunk_size=16"): fixed_sweep_chunked,
    ("fixed", "lax.scan RK"): fixed_scan,
    ("fixed", "lax.scan of diffrax step"): fixed_step_scan,
    ("fixed", "jit loop"): fixed_jit_loop,
    ("fixed", "naive loop"): fixed_naive,
    ("fixed", "solve_ivp loop"): fixed_solve_ivp,
    ("adaptive", "sweep"): adaptive_sweep,
    ("adaptive", "jit loop"): adaptive_jit_loop,
    ("adaptive", "naive loop"): adaptive_naive,
    ("adaptive", "solve_ivp loop"): adaptive_solve_ivp,
    ("orbit", "stability.orbit_diagram"): orbit_library,
    ("orbit", "vmapped scan (arrays)"): orbit_scan,
    ("stepaware", "StepAware vs bare"): stepaware,
    ("memory", "grid G, chunk C"): memory_small,
    ("memory", "grid 10G, chunk C"): memory_large,
    ("memory", "grid 10G, unchunked"): memory_unchunked,
    **toolkit.MEASUREMENTS,
}
