"""The step-size controller and a step-dependent model as one feedback loop.

A controller's filter (`analysis.controller`) is designed for the asymptotic error model
e_n ≈ φ·h_n^k, k the solver's error order that diffrax passes it (`Solver.error_order`: Heun 2,
Bosh3 3, Tsit5 and Dopri5 5). A field that reads h changes how the error estimate depends on
h. With the actual local exponent k_a = d log e / d log h at the operating point,
log e_n = log φ + k_a·log h_n, and the filter

    log h_{n+1} = log h_n - Σ_i β_i·log e_{n+1-i} - α2·(log h_n - log h_{n-1})
                  - α3·(log h_{n-1} - log h_{n-2}),     β_i = kβ_i/k,

becomes a linear recursion for log h with characteristic polynomial (γ = k_a/k, the loop gain)

    P_γ(q) = q³ + (γ·kβ1 - 1 + α2)·q² + (γ·kβ2 - α2 + α3)·q + (γ·kβ3 - α3),

`analysis.controller.closed_loop_poles(preset, gain=γ)`; γ = 1 is the design. γ = 0 (an error
that ignores h, e.g. a lifted map (Φ(y) - y)/h, whose every explicit Runge–Kutta step is
independent of h) puts a root at q = 1: nothing pulls log h back. For the I controller
P = q²·(q - (1 - γ)): smooth for 0 < γ ≤ 1, alternating for 1 < γ < 2, divergent for γ > 2.

Pieces:

- `error_exponent(system, solver, states, rtol)`: k_a measured by probing the solver's embedded
  error estimate: one step from each state (t, y) with steps h·2^j around its operating h, the
  scaled error (`analysis.controller.scaled_error`) regressed on log h (least squares, per
  state), one compiled, vmapped program;
- `retry_exponents(steps)`: the same exponent from the step log alone: a rejected step and its
  retry start from the same (t, y), so k = log(e_rej/e_retry)/log(h_rej/h_retry) (φ cancels);
- `predict(poles)` / `measure(h, accepted, ...)`: the behaviour labels below;
- `loop_analysis(system, solver, presets, rtol)` -> `LoopAnalysis`: measured k_a along an
  adaptive solve, each preset's poles at the measured γ, and the behaviour of an actual
  adaptive solve with that preset (`analysis.step_log`); `analysis.plotting.control_loop`
  draws it.

Predicted behaviour, from the poles at the measured γ (`predict`; ρ the spectral radius, q* a
pole of largest modulus):

- "diverges": ρ > 1 + `DRIFT_TOL` (0.02);
- "drifts": |ρ - 1| ≤ DRIFT_TOL: a deviation of log h decays (or grows) by under 2 % a step;
- "oscillates": ρ ≥ `OSCILLATION_RADIUS` (0.3) and |arg q*| > `OSCILLATION_ANGLE` (2π/3: a
  period under 3 steps, log h alternates);
- "smooth": otherwise (deviations decay, monotonically, slowly ringing, or within a step).

Measured behaviour (`measure`), from the accepted steps of the solve with that preset, the
start-up ramp and the last step (shortened to land on t1) left out: "drifts" (h moves one way
while the error stays off the set point, or every attempt is rejected while h shrinks),
"diverges" (the solve failed, not at its step limit), "oscillates" (lag-1 autocorrelation of
Δ log h ≤ -0.3, or over 20 % of the attempts rejected), "smooth", or "unknown" (too few steps).

The linear model knows no bounds; the controller does: after an acceptance the step factor is
clipped to [1, factormax], after a rejection to [factormin, safety]. A predicted divergence of
an alternating mode (q* < 0) therefore saturates into a bounded alternation of accepted and
rejected steps: ``agrees`` counts a measured "oscillates" as agreeing with a predicted
"diverges" exactly when q* alternates (|arg q*| > OSCILLATION_ANGLE); every other label must
match. The clip [1, factormax] also holds h still while the error stays between the set point
and 1 (a dead band the linear model does not have), so a mode the linear model calls divergent
may never be excited: ``agrees`` is then False, a finding about the controller, not a failure
of the measurement.

Examples:
    >>> from analysis import control_loop
    >>> loop = control_loop.loop_analysis("harmonic", "Tsit5", ["I", "PI34"], rtol=1e-6)
    >>> row = loop.presets.set_index("preset").loc["PI34"]
    >>> int(row["assumed_k"]), round(float(row["gain"]), 1), row["predicted"], row["measured"]
    (5, 1.0, 'smooth', 'smooth')
"""

from __future__ import annotations

import dataclasses
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import controller as _controller
from . import solvers as _solvers
from . import systems as _systems
from .errors import InvalidArgument
from .prepare import _lax_stages, prepare
from .result import Result
from .step_log import step_log
from .stepdep import StepAware

__all__ = [
    "LoopAnalysis",
    "loop_analysis",
    "error_exponent",
    "retry_exponents",
    "predict",
    "measure",
    "BEHAVIOURS",
    "DRIFT_TOL",
    "OSCILLATION_RADIUS",
    "OSCILLATION_ANGLE",
    "MEASURED",
]

#: The behaviour labels, predicted and measured.
BEHAVIOURS = ("smooth", "oscillates", "drifts", "diverges")
#: |ρ - 1| ≤ DRIFT_TOL: no restoring force worth the name ("drifts").
DRIFT_TOL = 0.02
#: A dominant pole smaller than this decays too fast to show as an oscillation.
OSCILLATION_RADIUS = 0.3
#: A dominant pole at an angle beyond this (2π/3: a period under 3 steps) alternates.
OSCILLATION_ANGLE = 2 * math.pi / 3
#: Thresholds of the measured labels (module docstring).
MEASURED = {
    "trend": 0.95,
    "off_target": math.log(10.0),
    "autocorrelation": -0.3,
    "rejections": 0.2,
}

#: The fewest changes of log h a measured label other than "drifts" needs.
MIN_CHANGES = 4

#: Probes whose estimate is below ROUNDOFF·ε·max|y| (scaled) are left out of the fit.
ROUNDOFF = 100.0

#: Probe steps h·2^j around the operating h, j in this default.
OCTAVES = (-1.0, -0.5, 0.0, 0.5, 1.0)


@dataclasses.dataclass(frozen=True, repr=False)
class LoopAnalysis(Result):
    """The controller–model loop of one system and solver: exponents, poles, behaviour.

    Attributes:
        exponents: one row per probed state: t, h (the operating step), slope (k_a, the local
            slope of log e on log h), slope_lo and slope_hi (its 95 % confidence interval),
            assumed_k (k), gain (γ = slope/k).
        presets: one row per preset: preset, assumed_k, measured_k (the median slope), gain,
            pole{1,2,3}_re / _im (poles at the measured γ, largest modulus first), radius,
            design_pole{1,2,3}_re / _im and design_radius (γ = 1), predicted, retry_k and
            retries (the exponent from rejected→retried pairs, median, and their count),
            attempts, accepted, rejection_rate, roughness (mean |Δ log h|), autocorrelation
            (lag-1, of Δ log h), trend (|ΣΔ|/Σ|Δ|), off_target (median |log e - log safety^k|),
            successful, hit_max_steps, measured, agrees.
        steps: the step log of the solves (`analysis.step_log.StepLog.steps`).

    Examples:
        >>> loop = loop_analysis("linear", "Heun", ["I"], rtol=1e-6)
        >>> sorted(loop.tables())
        ['exponents', 'presets', 'steps']
        >>> LoopAnalysis.from_tables(loop.tables()).presets.equals(loop.presets)
        True
    """

    exponents: pd.DataFrame
    presets: pd.DataFrame
    steps: pd.DataFrame


# ----------------------------------------------------------------------- probing the estimate


def _check_solver(solver):
    """The diffrax solver for `solver`; InvalidArgument unless it has an error estimate."""
    obj = _solvers.get(solver)
    if not _solvers.info(obj).adaptive:
        raise InvalidArgument(
            f"solver={_solvers.name_of(solver)!r} is invalid: it has no embedded error "
            "estimate, so no controller acts on it; give an adaptive solver (e.g. 'Tsit5', "
            "'Heun', 'Bosh3', 'Dopri5')"
        )
    return obj


def _check_tolerances(rtol, atol):
    for name, value in (("rtol", rtol), ("atol", atol)):
        try:
            ok = np.ndim(value) == 0 and math.isfinite(float(value)) and float(value) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok or isinstance(value, bool):
            raise InvalidArgument(f"{name}={value!r} is invalid; it must be finite and > 0")
    return float(rtol), float(atol)


def _prepared(system, solver):
    """Constant-step parts through StepAware (an h-free field passes through unchanged), the
    system blanked (`System.traced_form`) so that systems equal up to numbers share a program."""
    system = _systems.get(system)
    blank, _ = system.traced_form()
    solver = _solvers.get(solver)
    return prepare(blank, solver if isinstance(solver, StepAware) else StepAware(solver))


@eqx.filter_jit
def _probe(prepared, ctrl, ts, ys, hs, args):
    """Scaled error of one step from (ts[i], ys[i]) with step hs[i], for every i (vmapped)."""
    solver = _lax_stages(prepared.solver)

    def one(t0, y, h):
        t1 = t0 + h
        state = solver.init(prepared.term, t0, t1, y, args)
        y1, y_err, _, _, result = solver.step(prepared.term, t0, t1, y, args, state, False)
        e = _controller.scaled_error(ctrl, y, y1, y_err)
        return jnp.where(result == diffrax.RESULTS.successful, e, jnp.nan)

    return jax.vmap(one)(ts, ys, hs)


@eqx.filter_jit
def _replay(prepared, y0, ts, hs, args):
    """The states at the start of each step (ts[i], hs[i]) taken in turn from y0 (a lax scan)."""
    solver = _lax_stages(prepared.solver)

    def one(y, th):
        t0, h = th
        state = solver.init(prepared.term, t0, t0 + h, y, args)
        y1 = solver.step(prepared.term, t0, t0 + h, y, args, state, False)[0]
        return y1, y

    return jax.lax.scan(one, y0, (ts, hs))[1]


def _fit(log_h, log_e):
    """Least-squares slope of log_e on log_h and its 95 % interval (t distribution)."""
    ok = np.isfinite(log_h) & np.isfinite(log_e)
    x, y = log_h[ok], log_e[ok]
    if len(x) < 2 or np.ptp(x) == 0:
        return np.nan, np.nan, np.nan
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    if len(x) < 3:
        return slope, np.nan, np.nan
    resid = y - y.mean() - slope * xc
    se = math.sqrt(float(resid @ resid) / (len(x) - 2) / float(xc @ xc))
    import scipy.stats  # here: importing it costs a second at start-up

    half = float(scipy.stats.t.ppf(0.975, len(x) - 2)) * se
    return slope, slope - half, slope + half


def error_exponent(
    system, solver, states, rtol, atol=None, *, octaves=OCTAVES, norm=None
) -> pd.DataFrame:
    """k_a = d log e / d log h, measured at each state by probing the embedded error estimate.

    From each state (t, y) with operating step h, one step of `solver` (through `StepAware`,
    so a field that reads h sees each probe's own step) is taken with every step h·2^j, j in
    `octaves`; e is its scaled error (`analysis.controller.scaled_error` at rtol, atol, in the
    controllers' norm), and log e is fitted on log h by least squares per state. Probes whose
    estimate is at round-off (below `ROUNDOFF`·ε·max|y| before scaling) are left out; a slope
    needs two probes left. All probes are one vmapped step, compiled once per system structure
    and probe count.

    Args:
        system: a System or catalog name.
        solver: an adaptive solver (with an error estimate) or its name.
        states: a DataFrame with columns t and h, and y: one state per row (an array, or a
            pytree of arrays); or a sequence of (t, y, h) triples.
        rtol: relative tolerance of the scaled error (> 0).
        atol: absolute tolerance (None: rtol).
        octaves: the exponents j of the probe steps h·2^j (at least two distinct).
        norm: the norm of the scaled error (default: the controllers', an RMS norm).

    Returns:
        One row per state: t, h, slope, slope_lo, slope_hi (95 % interval), assumed_k (the
        error order diffrax passes a controller), gain (slope / assumed_k).

    Raises:
        InvalidArgument: a solver without an error estimate, bad tolerances or octaves.

    Examples:
        >>> import jax.numpy as jnp
        >>> rows = error_exponent("linear", "Heun", [(0.0, jnp.asarray(1.0), 1e-3)], rtol=1e-6)
        >>> round(float(rows["slope"].iloc[0]), 3), int(rows["assumed_k"].iloc[0])  # e ∝ h²
        (2.0, 2)
    """
    system = _systems.get(system)
    solver = _check_solver(solver)
    rtol, atol = _check_tolerances(rtol, rtol if atol is None else atol)
    octaves = np.asarray(octaves, dtype=float)
    if octaves.ndim != 1 or len(np.unique(octaves)) < 2 or not np.isfinite(octaves).all():
        raise InvalidArgument(
            f"octaves={tuple(octaves.tolist())!r} is invalid; give at least two distinct finite "
            "exponents j of the probe steps h·2^j"
        )
    if isinstance(states, pd.DataFrame):
        triples = list(zip(states["t"], states["y"], states["h"], strict=True))
    else:
        triples = [tuple(s) for s in states]
    if not triples:
        raise InvalidArgument("states is empty; give at least one (t, y, h)")
    ts = np.asarray([float(t) for t, _, _ in triples])
    hs = np.asarray([float(h) for _, _, h in triples])
    if not (np.isfinite(hs).all() and (hs > 0).all()):
        raise InvalidArgument(f"states has steps h={hs.tolist()!r}; every h must be finite, > 0")
    ys = jax.tree.map(
        lambda *leaves: jnp.stack([jnp.asarray(v) for v in leaves]), *[y for _, y, _ in triples]
    )
    factors = 2.0**octaves
    n, m = len(ts), len(factors)
    ctrl = _controller.make("I", rtol, atol, **({} if norm is None else {"norm": norm}))
    ctrl = _controller.numbers_as_arrays(ctrl)
    prepared = _prepared(system, solver)
    flat_ys = jax.tree.map(lambda leaf: jnp.repeat(leaf, m, axis=0), ys)
    errors = np.asarray(
        _probe(
            prepared,
            ctrl,
            jnp.asarray(np.repeat(ts, m)),
            flat_ys,
            jnp.asarray((hs[:, None] * factors[None, :]).ravel()),
            system.args,
        )
    ).reshape(n, m)
    k = float(solver.error_order(system.term()))
    # Round-off: an estimate below ROUNDOFF·ε·|y| is noise, not truncation error.
    size = np.max(
        np.stack([np.abs(np.asarray(v)).reshape(n, -1).max(1) for v in jax.tree.leaves(ys)]), 0
    )
    floor = ROUNDOFF * np.finfo(float).eps * size / (atol + rtol * size)
    rows = []
    for i in range(n):
        with np.errstate(divide="ignore", invalid="ignore"):
            log_e = np.where(errors[i] > floor[i], np.log(errors[i]), np.nan)
            slope, lo, hi = _fit(np.log(hs[i] * factors), log_e)
        rows.append(
            {
                "t": ts[i],
                "h": hs[i],
                "slope": slope,
                "slope_lo": lo,
                "slope_hi": hi,
                "assumed_k": k,
                "gain": slope / k,
            }
        )
    return pd.DataFrame(rows)


def retry_exponents(steps: pd.DataFrame) -> pd.DataFrame:
    """The error exponent from each rejected step and its retry (same t0, same state).

    Both steps start from the same (t, y), so φ cancels: k = log(e_rej/e_retry) /
    log(h_rej/h_retry). A cross-check of `error_exponent` that needs only the step log.

    Args:
        steps: a step log (`analysis.step_log.StepLog.steps`; columns controller, step, t0, h,
            error, accepted).

    Returns:
        One row per pair: controller, t0, h_rejected, h_retry, e_rejected, e_retry, exponent.

    Examples:
        >>> steps = pd.DataFrame({"controller": "I", "step": [0, 1, 2], "t0": [0.0, 0.0, 0.1],
        ...                       "h": [0.2, 0.1, 0.1], "error": [8.0, 0.25, 0.5],
        ...                       "accepted": [False, True, True]})
        >>> retry_exponents(steps)["exponent"].tolist()     # log 32 / log 2
        [5.0]
    """
    rows = []
    for name, g in steps.groupby("controller", sort=False):
        g = g.sort_values("step")
        t0, h, e = (g[c].to_numpy(float) for c in ("t0", "h", "error"))
        acc = g["accepted"].to_numpy(bool)
        for i in np.flatnonzero(~acc[:-1]):
            if t0[i + 1] != t0[i] or h[i + 1] == h[i]:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                k = float(np.log(e[i] / e[i + 1]) / np.log(h[i] / h[i + 1]))
            rows.append(
                {
                    "controller": name,
                    "t0": t0[i],
                    "h_rejected": h[i],
                    "h_retry": h[i + 1],
                    "e_rejected": e[i],
                    "e_retry": e[i + 1],
                    "exponent": k,
                }
            )
    columns = ["controller", "t0", "h_rejected", "h_retry", "e_rejected", "e_retry", "exponent"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------- labels


def _dominant(poles) -> complex:
    poles = np.asarray(poles, dtype=complex)
    return complex(poles[np.argmax(np.abs(poles))])


def predict(poles, *, drift_tol: float = DRIFT_TOL) -> str:
    """The behaviour the linear loop predicts from its poles (module docstring).

    Args:
        poles: the closed-loop poles (`analysis.controller.closed_loop_poles(preset, gain)`).
        drift_tol: how close to 1 the spectral radius counts as "drifts".

    Returns:
        One of `BEHAVIOURS`.

    Examples:
        >>> from analysis.controller import closed_loop_poles
        >>> [predict(closed_loop_poles("I", gain=g)) for g in (0.5, 1.5, 0.0, 3.0)]
        ['smooth', 'oscillates', 'drifts', 'diverges']
    """
    q = _dominant(poles)
    radius = abs(q)
    if radius > 1 + drift_tol:
        return "diverges"
    if radius >= 1 - drift_tol:
        return "drifts"
    if radius >= OSCILLATION_RADIUS and abs(np.angle(q)) > OSCILLATION_ANGLE + 1e-9:
        return "oscillates"
    return "smooth"


def _autocorrelation(x) -> float:
    """Lag-1 autocorrelation of x (NaN with under 4 values or no variance)."""
    x = np.asarray(x, float)
    if len(x) < 4:
        return np.nan
    x = x - x.mean()
    denom = float(x @ x)
    if denom <= 1e-300:
        return np.nan
    return float(x[1:] @ x[:-1]) / denom


def measure(
    h,
    accepted,
    error,
    *,
    error_order,
    safety=0.9,
    successful=True,
    hit_max_steps=False,
    startup=5,
) -> dict:
    """Metrics and the measured behaviour label of one adaptive solve's step log.

    The window: the accepted steps but the last (shortened to land on t1), less the first
    `startup` (fewer, when that would leave under `MIN_CHANGES` changes); Δ_n are the changes
    of log h between consecutive steps of the window. Labels, in this order (thresholds
    `MEASURED`):

    - "drifts": the solve failed with at most one step accepted while the attempted h moved
      one way (|ΣΔ|/Σ|Δ| ≥ trend over the attempts); or the window moves one way
      (|ΣΔ|/Σ|Δ| ≥ trend) and its last three errors are still off the set point
      (median |log e - k·log safety| ≥ off_target): h moves, the error does not follow;
    - "diverges": the solve failed, not at the step limit;
    - "unknown": fewer than `MIN_CHANGES` changes in the window;
    - "oscillates": lag-1 autocorrelation of Δ ≤ autocorrelation, or more than `rejections`
      of the attempts within the window rejected;
    - "smooth": otherwise.

    Args:
        h: the attempted steps, in order.
        accepted: whether each was accepted.
        error: each attempt's scaled error.
        error_order: k, the order the controller was given (its set point is e = safety^k).
        safety: the controller's safety factor.
        successful: whether the solve succeeded.
        hit_max_steps: whether it stopped at diffrax's step limit.
        startup: accepted steps left out at the start.

    Returns:
        A dict: attempts, accepted, rejection_rate, roughness (mean |Δ|), autocorrelation
        (lag-1 of Δ), trend (|ΣΔ|/Σ|Δ|), off_target (median |log e - k·log safety| over the
        window), window_rejections (the rejected fraction of the attempts within the window),
        measured (one of `BEHAVIOURS` or "unknown").

    Examples:
        >>> h = 0.1 * 1.5 ** np.arange(12)                  # every step 1.5× the last
        >>> m = measure(h, np.ones(12, bool), np.full(12, 1e-4), error_order=5)
        >>> m["measured"], round(m["trend"], 6)             # errors far below 0.9^5
        ('drifts', 1.0)
        >>> zigzag = 0.1 * 2.0 ** (np.arange(20) % 2)
        >>> measure(zigzag, np.ones(20, bool), np.full(20, 0.5), error_order=5)["measured"]
        'oscillates'
    """
    h = np.asarray(h, float)
    accepted = np.asarray(accepted, bool)
    error = np.asarray(error, float)
    n = len(h)
    body = np.flatnonzero(accepted & (h > 0))[:-1]
    skip = max(0, min(int(startup), len(body) - MIN_CHANGES - 1))
    window = body[skip:]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.diff(np.log(h[window]))
        off = np.abs(np.log(error[window]) - error_order * math.log(safety))
        tried = np.diff(np.log(h))
    t = MEASURED
    out = {
        "attempts": n,
        "accepted": len(np.flatnonzero(accepted & (h > 0))),
        "rejection_rate": float(np.mean(~accepted)) if n else np.nan,
        "roughness": float(np.mean(np.abs(d))) if len(d) else np.nan,
        "autocorrelation": _autocorrelation(d),
        "trend": _trend(d),
        "off_target": float(np.median(off)) if len(off) else np.nan,
        "window_rejections": float(np.mean(~accepted[window[0] : window[-1] + 1]))
        if len(window)
        else np.nan,
    }
    end_off = float(np.median(off[-3:])) if len(off) else np.nan
    if not successful and out["accepted"] <= 1 and _trend(tried) >= t["trend"]:
        label = "drifts"
    elif len(d) >= 2 and out["trend"] >= t["trend"] and end_off >= t["off_target"]:
        label = "drifts"
    elif not successful and not hit_max_steps:
        label = "diverges"
    elif len(d) < MIN_CHANGES:
        label = "unknown"
    elif (
        out["autocorrelation"] <= t["autocorrelation"] or out["window_rejections"] > t["rejections"]
    ):
        label = "oscillates"
    else:
        label = "smooth"
    return out | {"measured": label}


def _trend(d) -> float:
    """|Σd|/Σ|d|: 1 when every change has the same sign (NaN without any change)."""
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    total = float(np.abs(d).sum())
    return abs(float(d.sum())) / total if total > 0 else np.nan


def _agrees(predicted: str, measured: str, dominant: complex) -> bool:
    if predicted == measured:
        return True
    alternating = abs(np.angle(dominant)) > OSCILLATION_ANGLE + 1e-9
    return predicted == "diverges" and measured == "oscillates" and alternating


# ----------------------------------------------------------------------- the analysis


def _states(system, solver, steps: pd.DataFrame, samples: int, startup: int) -> list[tuple]:
    """(t, y, h) at `samples` accepted steps of a logged solve, spread evenly over the steps
    after the first `startup` (fewer if the solve is short) but the last (shortened to land on
    t1); the states replayed from y0 along the accepted steps."""
    steps = steps.sort_values("step")
    acc = steps[steps["accepted"] & (steps["h"] > 0)]
    t0s, hs = acc["t0"].to_numpy(float), acc["h"].to_numpy(float)
    if len(hs) < 2:  # nothing accepted but the last step: probe at the start
        first = steps.iloc[0]
        return [(float(first["t0"]), system.y0, float(first["h"]))]
    last = len(hs) - 2
    first = min(int(startup), last)
    count = min(samples, last - first + 1)
    picks = np.unique(np.round(np.linspace(first, last, count)).astype(int))
    # Pad the replay to a power of two, so that solves of similar length share a program.
    size = max(64, 1 << int(math.ceil(math.log2(picks[-1] + 1))))
    ts = np.concatenate([t0s[: picks[-1] + 1], np.full(size - picks[-1] - 1, t0s[picks[-1]])])
    hp = np.concatenate([hs[: picks[-1] + 1], np.full(size - picks[-1] - 1, hs[picks[-1]])])
    ys = _replay(
        _prepared(system, solver), system.y0, jnp.asarray(ts), jnp.asarray(hp), system.args
    )
    return [(t0s[i], jax.tree.map(lambda leaf, i=i: leaf[i], ys), hs[i]) for i in picks]


def _pole_columns(poles, prefix: str) -> dict:
    poles = np.asarray(poles, dtype=complex)
    poles = poles[np.lexsort((-poles.imag, -np.abs(poles)))]
    cols = {}
    for i, q in enumerate(poles, start=1):
        cols[f"{prefix}{i}_re"] = float(q.real)
        cols[f"{prefix}{i}_im"] = float(q.imag)
    return cols


def loop_analysis(
    system,
    solver,
    presets,
    rtol,
    atol=None,
    *,
    reference: str | None = None,
    samples: int = 8,
    octaves=OCTAVES,
    startup: int = 5,
    size: int = 4096,
    max_steps: int = 4096,
    drift_tol: float = DRIFT_TOL,
) -> LoopAnalysis:
    """Each preset's closed loop with `system`'s error estimate: predicted and measured.

    1. One adaptive solve per preset, logged (`analysis.step_log.step_log`, one compilation).
    2. k_a measured (`error_exponent`) at `samples` accepted steps of the `reference` preset's
       solve, the states replayed from y0 along its accepted steps; measured k = the median.
    3. Per preset: poles at γ = k_a/k and at γ = 1, the predicted label (`predict`), the
       measured label of its own solve (`measure`), and whether they agree (module
       docstring). The exponents from rejected→retried pairs (`retry_exponents`) cross-check.

    Args:
        system: a System or catalog name.
        solver: an adaptive solver or its name.
        presets: a preset name or a sequence of them.
        rtol: relative tolerance (> 0).
        atol: absolute tolerance (None: rtol).
        reference: the preset whose solve gives the probed states (None: the first preset).
        samples: how many states to probe.
        octaves: probe steps h·2^j, j in these.
        startup: accepted steps left out of the measured metrics at the start.
        size: the most attempts logged per solve.
        max_steps: diffrax's step limit per solve.
        drift_tol: how close to 1 the spectral radius counts as "drifts".

    Returns:
        A `LoopAnalysis`.

    Raises:
        InvalidArgument: an unknown preset, a solver without an error estimate, bad
            tolerances or counts, before anything is compiled.

    Examples:
        >>> loop = loop_analysis("linear", "Heun", ["I", "H211b"], rtol=1e-6)
        >>> loop.presets[["preset", "predicted", "measured", "agrees"]].values.tolist()
        [['I', 'smooth', 'smooth', True], ['H211b', 'smooth', 'smooth', True]]
    """
    system = _systems.get(system)
    solver_obj = _check_solver(solver)
    names = [presets] if isinstance(presets, str) else list(presets)
    if not names or not all(isinstance(p, str) for p in names):
        raise InvalidArgument(
            f"presets={presets!r} is invalid; give a preset name or a sequence of them "
            f"({', '.join(_controller.PRESETS)})"
        )
    for name in names:
        try:
            _controller.preset(name)
        except InvalidArgument as e:
            raise InvalidArgument(f"presets: {e}") from None
    reference = names[0] if reference is None else reference
    try:
        _controller.preset(reference)
    except InvalidArgument as e:
        raise InvalidArgument(f"reference: {e}".replace("controller=", "reference=")) from None
    rtol, atol = _check_tolerances(rtol, rtol if atol is None else atol)
    for arg, value in (("samples", samples), ("size", size), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidArgument(f"{arg}={value!r} is invalid; it must be an integer ≥ 1")
    if isinstance(startup, bool) or not isinstance(startup, int | np.integer) or startup < 0:
        raise InvalidArgument(f"startup={startup!r} is invalid; it must be an integer ≥ 0")
    if not (math.isfinite(drift_tol) and 0 <= drift_tol < 1):
        raise InvalidArgument(f"drift_tol={drift_tol!r} is invalid; it must be in [0, 1)")

    solved = list(dict.fromkeys([*names, reference]))
    log = step_log(system, solver_obj, solved, rtol, atol, size=size, max_steps=max_steps)
    ref_steps = log.steps[log.steps["controller"] == reference]
    states = _states(system, solver_obj, ref_steps, samples, startup)
    exponents = error_exponent(system, solver_obj, states, rtol, atol, octaves=octaves)
    k = float(exponents["assumed_k"].iloc[0])
    k_a = float(np.nanmedian(exponents["slope"])) if exponents["slope"].notna().any() else np.nan
    gain = k_a / k
    retries = retry_exponents(log.steps)
    safety = _controller.make(reference, rtol, atol).safety

    rows = []
    for name in names:
        p = _controller.preset(name)
        if np.isfinite(gain):
            poles = _controller.closed_loop_poles(p, gain=max(gain, 0.0))
            predicted = predict(poles, drift_tol=drift_tol)
        else:
            poles, predicted = np.full(3, np.nan, complex), "unknown"
        design = _controller.closed_loop_poles(p)
        steps = log.steps[log.steps["controller"] == name].sort_values("step")
        solve = log.solves[log.solves["controller"] == name].iloc[0]
        hit = int(solve["attempts"]) >= max_steps
        metrics = measure(
            steps["h"],
            steps["accepted"],
            steps["error"],
            successful=bool(solve["successful"]),
            hit_max_steps=hit,
            error_order=k,
            safety=safety,
            startup=startup,
        )
        mine = retries[retries["controller"] == name]["exponent"].to_numpy(float)
        mine = mine[np.isfinite(mine)]
        rows.append(
            {"preset": name, "assumed_k": k, "measured_k": k_a, "gain": gain}
            | _pole_columns(poles, "pole")
            | {"radius": float(np.max(np.abs(poles)))}
            | _pole_columns(design, "design_pole")
            | {"design_radius": float(np.max(np.abs(design))), "predicted": predicted}
            | {"retry_k": float(np.median(mine)) if len(mine) else np.nan, "retries": len(mine)}
            | metrics
            | {"successful": bool(solve["successful"]), "hit_max_steps": hit}
            | {
                "agrees": predicted != "unknown"
                and _agrees(predicted, metrics["measured"], _dominant(poles))
            }
        )
    table = pd.DataFrame(rows)
    order = [c for c in table.columns if c not in ("measured", "agrees")] + ["measured", "agrees"]
    return LoopAnalysis(
        exponents=exponents.assign(system=system.name, solver=_solvers.name_of(solver))[
            ["system", "solver", *exponents.columns]
        ],
        presets=table[order].assign(system=system.name, solver=_solvers.name_of(solver))[
            ["system", "solver", *order]
        ],
        steps=log.steps,
    )
