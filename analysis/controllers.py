"""Step-size controllers: Söderlind's digital filters, presets, a step logger, controller metrics.

A controller with filter coefficients (kβ1, kβ2, kβ3 | α2, α3) chooses the next step as

    h_{n+1} = h_n · ρ_n^{β1} · ρ_{n-1}^{β2} · ρ_{n-2}^{β3}
              · (h_n/h_{n-1})^{-α2} · (h_{n-1}/h_{n-2})^{-α3}

with ρ_n = 1/‖scaled error of step n‖ and β_i = (kβ_i)/k, k the error-estimator order (Söderlind,
"Digital filters in adaptive time-stepping", ACM TOMS 29(1), 2003, eq. (33) and Table III;
Söderlind & Wang, "Adaptive time-stepping and computational stability", JCAM 185, 2006).
diffrax's PIDController is the α = 0 case with β1 = pcoeff + icoeff + dcoeff,
β2 = -(pcoeff + 2·dcoeff), β3 = dcoeff, so dcoeff = kβ3, pcoeff = -kβ2 - 2·kβ3,
icoeff = kβ1 + kβ2 + kβ3.

Under the asymptotic error model r_n = φ·h_n^k the filter acts on log h_n as a linear recursion
with characteristic polynomial (`closed_loop_poles`)

    P(q) = q³ + (kβ1 - 1 + α2)·q² + (kβ2 - α2 + α3)·q + (kβ3 - α3),

whose roots are the closed-loop poles: all at 0 for a deadbeat filter (I, H0321), and
{0, 1 - 2/b} for H211b, {0, 0, 1 - 4/b} for H312b, {1/3, 1/2, 2/3} for H321.

Pieces:
- `PRESETS` / `preset(name)` / `make(name, rtol, atol, **overrides)` -> `SoderlindController`.
- `SoderlindController`: a diffrax adaptive controller with β and α terms, an optional smooth
  limiter, and a documented rejection rule; equal to diffrax.PIDController when α = 0.
- `StepLogger(controller, size)`: records every attempted step inside the compiled solve.
- Metrics: `step_metrics` (rejection rate, step-ratio roughness) from a log, `proportionality`
  (slope of log error on log rtol), `spread` (controller-induced spread of an output),
  `work_precision` (error against nfev and best-of-n wall time).

Examples:
    >>> from analysis import controllers
    >>> c = controllers.make("H211b", rtol=1e-6, atol=1e-8)
    >>> c.kbeta, c.alpha
    ((0.25, 0.25, 0.0), (0.25, 0.0))
    >>> {k: round(v, 12) for k, v in controllers.preset("PI34").pid.items()}
    {'pcoeff': 0.4, 'icoeff': 0.3, 'dcoeff': 0.0}
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optimistix as optx
import pandas as pd

from .errors import InvalidArgument

__all__ = [
    "Preset",
    "PRESETS",
    "FIXED",
    "preset",
    "make",
    "closed_loop_poles",
    "SoderlindController",
    "StepLogger",
    "scaled_error",
    "step_log",
    "logged_steps",
    "step_metrics",
    "STEP_METRICS",
    "proportionality",
    "spread",
    "work_precision",
]

#: The name sweeps use for constant step sizes.
FIXED = "fixed"


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named controller: Söderlind coefficients (kβ1, kβ2, kβ3 | α2, α3) and their source.

    Attributes:
        name: the preset's name (a key of `PRESETS`).
        kbeta: (kβ1, kβ2, kβ3), the error-filter coefficients times the estimator order k.
        alpha: (α2, α3), the step-ratio coefficients.
        source: where the coefficients come from.

    Examples:
        >>> PRESETS["H211b"].kbeta, PRESETS["H211b"].alpha
        ((0.25, 0.25, 0.0), (0.25, 0.0))
        >>> mine = Preset("half-I", kbeta=(0.5, 0.0, 0.0), alpha=(0.0, 0.0), source="my own")
        >>> round(float(np.max(np.abs(closed_loop_poles(mine)))), 6)   # P(q) = q³ - q²/2
        0.5
    """

    name: str
    kbeta: tuple[float, float, float]
    alpha: tuple[float, float]
    source: str

    @property
    def pid(self) -> dict[str, float]:
        """The same filter as diffrax PIDController coefficients (valid when α = 0)."""
        b1, b2, b3 = self.kbeta
        return {"pcoeff": -b2 - 2 * b3, "icoeff": b1 + b2 + b3, "dcoeff": b3}


_S03 = "Söderlind 2003 (ACM TOMS 29), Table III"
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("I", (1.0, 0.0, 0.0), (0.0, 0.0), "elementary (deadbeat) integral controller"),
        Preset("PI42", (3 / 5, -1 / 5, 0.0), (0.0, 0.0), "Söderlind 2002/2003, PI.4.2"),
        Preset("PI33", (2 / 3, -1 / 3, 0.0), (0.0, 0.0), "Söderlind 2002/2003, PI.3.3"),
        Preset("PI34", (7 / 10, -4 / 10, 0.0), (0.0, 0.0), "Gustafsson 1991, PI.3.4"),
        Preset("H211PI", (1 / 6, 1 / 6, 0.0), (0.0, 0.0), f"{_S03}, H211 PI"),
        Preset("H312PID", (1 / 18, 1 / 9, 1 / 18), (0.0, 0.0), f"{_S03}, H312 PID"),
        Preset("H211b", (1 / 4, 1 / 4, 0.0), (1 / 4, 0.0), f"{_S03}, H211b with b = 4"),
        Preset("H312b", (1 / 8, 2 / 8, 1 / 8), (3 / 8, 1 / 8), f"{_S03}, H312b with b = 8"),
        Preset("H0321", (5 / 4, 1 / 2, -3 / 4), (-1 / 4, -3 / 4), f"{_S03}, H0321 (deadbeat)"),
        Preset("H321", (1 / 3, 1 / 18, -5 / 18), (-5 / 6, -1 / 6), f"{_S03}, H321"),
    ]
}


def preset(name: str) -> Preset:
    """The preset called `name`; InvalidArgument lists the valid names otherwise.

    Args:
        name: a key of `PRESETS`, e.g. "PI34".

    Returns:
        The `Preset`.

    Examples:
        >>> preset("PI34").kbeta, preset("PI34").source
        ((0.7, -0.4, 0.0), 'Gustafsson 1991, PI.3.4')
        >>> preset("PI43")
        Traceback (most recent call last):
            ...
        analysis.errors.InvalidArgument: controller='PI43' is not a preset. Did you mean ...
    """
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InvalidArgument(
            f"controller={name!r} is not a preset.{hint} Valid presets: {', '.join(PRESETS)}"
        )
    return PRESETS[name]


def closed_loop_poles(p: Preset | str) -> np.ndarray:
    """Roots of P(q) = q³ + (kβ1 - 1 + α2)q² + (kβ2 - α2 + α3)q + (kβ3 - α3) (module docstring).

    They govern how log h responds under the asymptotic model r = φ·h^k; |q| < 1 is stable.

    Args:
        p: a `Preset` or a preset name.

    Returns:
        The three roots as a NumPy array (complex if any root is).

    Examples:
        >>> round(float(np.max(np.abs(closed_loop_poles("PI34")))), 6)  # roots 0, 0.8, -0.5
        0.8
        >>> tuple(round(float(q), 6) for q in sorted(closed_loop_poles("H321").real))
        (0.333333, 0.5, 0.666667)
    """
    p = preset(p) if isinstance(p, str) else p
    (b1, b2, b3), (a2, a3) = p.kbeta, p.alpha
    return np.roots([1.0, b1 - 1 + a2, b2 - a2 + a3, b3 - a3])


def scaled_error(controller, y0, y1_candidate, y_error):
    """‖y_error / (atol + rtol·max(|y0|, |y1|))‖ with the controller's norm, as diffrax does.

    A step is acceptable when this is < 1. A NaN candidate is replaced by y0 in the scale.

    Args:
        controller: anything with `rtol`, `atol` and `norm` (e.g. a `SoderlindController`).
        y0: the state at the start of the step.
        y1_candidate: the proposed state at its end.
        y_error: the solver's error estimate for the step.

    Returns:
        The scaled error e_n, a scalar jax array.

    Examples:
        >>> c = make("I", rtol=1e-3, atol=0.0)
        >>> y0, y1, err = jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]), jnp.array([5e-4, 4e-3])
        >>> e = scaled_error(c, y0, y1, err)
        >>> round(float(e), 6)                   # RMS of (0.5, 1.0) = sqrt(5/8)
        0.790569
    """

    def _scale(_y0, _y1, _err):
        _y1 = jnp.where(jnp.isnan(_y1).any(), _y0, _y1)
        return _err / (controller.atol + jnp.maximum(jnp.abs(_y0), jnp.abs(_y1)) * controller.rtol)

    return controller.norm(jtu.tree_map(_scale, y0, y1_candidate, y_error))


def _concrete(x) -> bool:
    """A Python or NumPy number (or None), as opposed to a traced jax value."""
    return x is None or isinstance(x, (int, float, np.number))


def _pow(x, c):
    return 1.0 if isinstance(c, (int, float)) and c == 0 else x**c


class SoderlindController(diffrax.AbstractAdaptiveStepSizeController):
    """Söderlind's digital-filter step-size controller for diffrax.

    Each attempted step of size h_n with scaled error e_n (`scaled_error`) and ρ_n = 1/e_n gives

        x = safety · ρ_n^{kβ1/k} ρ_{n-1}^{kβ2/k} ρ_{n-2}^{kβ3/k} (h_n/h_{n-1})^{-α2}
            (h_{n-1}/h_{n-2})^{-α3}

    where ρ_{n-1}, ρ_{n-2}, h_{n-1}, h_{n-2} belong to the last two *accepted* steps (before the
    first step they are 1 and dt0). With `limiter=True`, x ← 1 + atan(x - 1) (Söderlind & Wang
    2006, κ = 1), a smooth map onto (1 - π/4, 1 + π/2) that is ≈ x near 1.

    Rejection rule: with `accept_ratio=None` (default) a step is accepted iff e_n < 1, as in
    diffrax. With a number, it is accepted iff x ≥ accept_ratio (Söderlind & Wang 2006 use 0.9
    with the limiter). At dtmin every step is accepted. The next step is h_n·clip(x, lo, hi) with
    [lo, hi] = [accept_factormin, factormax] after an acceptance (diffrax's convention
    accept_factormin = 1: an accepted step never shrinks the next one) and [factormin, safety]
    after a rejection; then dtmin/dtmax clip it. With α = 0, no limiter and the defaults this is
    diffrax.PIDController, step for step.

    Examples:
        >>> ctrl = SoderlindController(rtol=1e-6, atol=1e-8, kbeta=(0.25, 0.25, 0.0),
        ...                            alpha=(0.25, 0.0), limiter=True)
    """

    rtol: float
    atol: float
    kbeta: tuple[float, float, float] = (1.0, 0.0, 0.0)
    alpha: tuple[float, float] = (0.0, 0.0)
    limiter: bool = eqx.field(static=True, default=False)
    accept_ratio: float | None = None
    safety: float = 0.9
    factormin: float = 0.2
    factormax: float = 10.0
    accept_factormin: float = 1.0
    dtmin: float | None = None
    dtmax: float | None = None
    force_dtmin: bool = True
    norm: Callable = optx.rms_norm
    error_order: float | None = None

    def __check_init__(self):
        """Refuse, before compiling, settings that cannot work (concrete values only).

        Rule for the filter: under the asymptotic model r = φ·h^k the closed-loop
        characteristic polynomial (`closed_loop_poles`) must have every root strictly inside the
        unit circle; otherwise log h oscillates or diverges by construction.
        """
        tols = {"rtol": self.rtol, "atol": self.atol}
        if all(_concrete(v) for v in tols.values()):
            for name, value in tols.items():
                if not (np.isfinite(value) and value >= 0):
                    raise InvalidArgument(f"{name}={value!r} is invalid; it must be finite and ≥ 0")
            if self.rtol == 0 and self.atol == 0:
                raise InvalidArgument("rtol=0 and atol=0 is invalid; at least one must be > 0")
        if _concrete(self.dtmin) and _concrete(self.dtmax) and self.dtmin is not None:
            if self.dtmax is not None and self.dtmin > self.dtmax:
                raise InvalidArgument(
                    f"dtmin={self.dtmin!r} > dtmax={self.dtmax!r}; dtmin must not exceed dtmax"
                )
        coeffs = (*self.kbeta, *self.alpha)
        if all(_concrete(c) for c in coeffs):
            p = Preset("custom", tuple(map(float, self.kbeta)), tuple(map(float, self.alpha)), "")
            radius = float(np.max(np.abs(closed_loop_poles(p))))
            if radius >= 1:
                raise InvalidArgument(
                    f"kbeta={self.kbeta!r}, alpha={self.alpha!r} make the controller unstable by "
                    f"construction: its closed-loop poles reach |q| = {radius:.3g} ≥ 1 (see "
                    "analysis.controllers.closed_loop_poles); e.g. kbeta=(0.7, -0.4, 0) (PI34)"
                )

    def wrap(self, direction):
        return self

    def _pid(self) -> diffrax.PIDController:
        # Only for the first step: diffrax's initial-step selection and dtmin/dtmax clipping.
        keys = ("rtol", "atol", "norm", "dtmin", "dtmax", "error_order")
        return diffrax.PIDController(**{k: getattr(self, k) for k in keys})

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, (one, _, at_dtmin) = self._pid().init(
            terms, t0, t1, y0, dt0, args, func, error_order
        )
        h0 = (tnext - t0).astype(one.dtype)
        return tnext, (one, one, h0, h0, at_dtmin)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        del args
        if y_error is None and y0 is not None:
            raise RuntimeError("SoderlindController needs a solver with an error estimate")
        rho1, rho2, h1, h2, at_dtmin = state
        k = self._pid()._get_error_order(error_order)
        h = t1 - t0
        err = scaled_error(self, y0, y1_candidate, y_error)
        rho = lax.stop_gradient(1 / jnp.asarray(err))
        b1, b2, b3 = (c / k for c in self.kbeta)
        a2, a3 = self.alpha
        x = self.safety * _pow(rho, b1) * _pow(rho1, b2) * _pow(rho2, b3)
        x = x * _pow(h / h1, -a2) * _pow(h1 / h2, -a3)
        if self.limiter:
            x = 1 + jnp.arctan(x - 1)
        keep = err < 1 if self.accept_ratio is None else x >= self.accept_ratio
        if self.dtmin is not None:
            keep = keep | at_dtmin
        lo = jnp.where(keep, self.accept_factormin, self.factormin)
        hi = jnp.where(keep, self.factormax, self.safety)
        factor = lax.stop_gradient(jnp.clip(x, min=lo, max=hi))
        dt = h * factor.astype(jnp.result_type(h))
        # A failed step (error inf, e.g. a Newton failure) must not poison the filter's memory.
        rho = jnp.where((rho == 0) | jnp.isinf(rho), 1, rho)
        result = diffrax.RESULTS.successful
        if self.dtmax is not None:
            dt = jnp.minimum(dt, self.dtmax)
        if self.dtmin is not None:
            if not self.force_dtmin:
                result = diffrax.RESULTS.where(
                    dt < self.dtmin, diffrax.RESULTS.dt_min_reached, result
                )
            dt = jnp.where(at_dtmin & (factor == 1), self.dtmin, dt)
            at_dtmin = dt <= self.dtmin
            dt = jnp.maximum(dt, self.dtmin)
        next_t0 = jnp.where(keep, t1, t0)
        new = (rho, rho1, h.astype(h1.dtype), h1)
        old = (rho1, rho2, h1, h2)
        state = tuple(jnp.where(keep, a, b) for a, b in zip(new, old, strict=True)) + (at_dtmin,)
        return keep, next_t0, next_t0 + dt, False, state, result


_OPTIONS = {f.name for f in dataclasses.fields(SoderlindController)} - {
    "rtol",
    "atol",
    "kbeta",
    "alpha",
}


def make(name: str, rtol, atol, **overrides) -> SoderlindController:
    """A `SoderlindController` for preset `name` at tolerances rtol, atol.

    `overrides` go to the controller (e.g. dtmin, dtmax, factormax, safety, limiter=True,
    accept_ratio=0.9). rtol and atol may be traced (jit/vmap over tolerances).

    Args:
        name: a preset name (see `PRESETS`).
        rtol: relative tolerance.
        atol: absolute tolerance.
        **overrides: other `SoderlindController` fields.

    Returns:
        A `SoderlindController`, to pass as diffrax's `stepsize_controller`.

    Examples:
        >>> c = make("PI34", rtol=1e-8, atol=1e-8, dtmax=0.5)
        >>> c.kbeta, c.dtmax
        ((0.7, -0.4, 0.0), 0.5)
        >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: -y), diffrax.Tsit5(),
        ...                           0.0, 1.0, None, jnp.array(1.0), stepsize_controller=c)
        >>> round(float(sol.ys[-1]), 6)          # e^-1
        0.367879
    """
    p = preset(name)
    unknown = sorted(set(overrides) - _OPTIONS)
    if unknown:
        raise InvalidArgument(
            f"controller option {unknown[0]!r} is unknown; valid options: {sorted(_OPTIONS)}"
        )
    return SoderlindController(rtol=rtol, atol=atol, kbeta=p.kbeta, alpha=p.alpha, **overrides)


class StepLogger(diffrax.AbstractAdaptiveStepSizeController):
    """Wraps an adaptive controller and records every attempted step in its state.

    The log is a dict of fixed-size buffers (`size` entries): t0, h, error (the scaled error
    e_n, < 1 means acceptable) and accepted, plus `count`, the number of attempts so far
    (attempts beyond `size` are counted but not stored). Read it with
    `SaveAt(controller_state=True)`: `sol.controller_state[1]`. The wrapped controller decides
    everything; the logger only watches, so steps are identical with and without it.

    Examples:
        >>> ctrl = StepLogger(make("PI34", 1e-6, 1e-8), size=1000)
    """

    controller: diffrax.AbstractAdaptiveStepSizeController
    size: int = eqx.field(static=True)

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return StepLogger(self.controller.wrap(direction), self.size)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        nan = jnp.full(self.size, jnp.nan, dtype=jnp.result_type(tnext, float))
        log = {
            "t0": nan,
            "h": nan,
            "error": nan,
            "accepted": jnp.zeros(self.size, bool),
            "count": jnp.zeros((), jnp.int32),
        }
        return tnext, (inner, log)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner, log = state
        out = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        keep, inner = out[0], out[4]
        i = log["count"]
        record = {"t0": t0, "h": t1 - t0, "error": scaled_error(self, y0, y1_candidate, y_error)}
        log = {k: log[k].at[i].set(v, mode="drop") for k, v in record.items()} | {
            "accepted": log["accepted"].at[i].set(keep, mode="drop"),
            "count": i + 1,
        }
        return out[:4] + ((inner, log),) + out[5:]


def logged_steps(sol) -> dict:
    """A solve's StepLogger buffers as {"log_h", "log_accepted", "log_count"}; {} if not logged.

    The solve must use a `StepLogger` and `SaveAt(controller_state=True)`.

    Args:
        sol: a `diffrax.Solution`.

    Returns:
        A dict of the log's step sizes, accepted flags and attempt count (jax arrays).

    Examples:
        >>> ctrl = StepLogger(make("PI34", 1e-6, 1e-6), size=64)
        >>> sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: -y), diffrax.Tsit5(),
        ...     0.0, 1.0, 0.1, jnp.array(1.0), stepsize_controller=ctrl,
        ...     saveat=diffrax.SaveAt(t1=True, controller_state=True))
        >>> log = logged_steps(sol)
        >>> sorted(log), int(log["log_count"]) == int(sol.stats["num_steps"])
        (['log_accepted', 'log_count', 'log_h'], True)
    """
    state = sol.controller_state
    if state is None:
        return {}
    return {f"log_{k}": state[1][k] for k in ("h", "accepted", "count")}


#: Columns `step_metrics` adds to a sweep row.
STEP_METRICS = (
    "attempts_logged",
    "rejection_rate",
    "roughness_mean",
    "roughness_max",
    "h_min",
    "h_max",
)


def step_metrics(h, accepted, count) -> dict[str, float]:
    """Rejection rate and step-ratio roughness of one logged solve.

    roughness = |log(h_{n+1}/h_n)| over consecutive *accepted* steps, the last accepted step
    excluded (diffrax shortens it to land on t1); the start-up ramp from dt0 is included, so
    roughness_max is often its first growth factor. NaN if fewer than three steps were accepted.
    `attempts_logged` < count means the buffer was too small and the metrics cover a prefix.

    Args:
        h: logged step sizes (a StepLogger buffer; entries past `count` are ignored).
        accepted: logged accepted flags.
        count: the number of attempts.

    Returns:
        A dict with the keys `STEP_METRICS`.

    Examples:
        >>> m = step_metrics([0.1, 0.2, 0.1, 0.4, 0.3], [True, False, True, True, True], 5)
        >>> m["rejection_rate"], round(m["roughness_max"], 6), m["h_max"]   # 1/5, log 4
        (0.2, 1.386294, 0.4)
    """
    n = min(int(count), len(h))
    h, accepted = np.asarray(h[:n]), np.asarray(accepted[:n], bool)
    steps = h[accepted][:-1]
    jumps = np.abs(np.diff(np.log(steps))) if len(steps) >= 2 else np.array([np.nan])
    return {
        "attempts_logged": n,
        "rejection_rate": float(np.mean(~accepted)) if n else np.nan,
        "roughness_mean": float(np.mean(jumps)),
        "roughness_max": float(np.max(jumps)),
        "h_min": float(steps.min()) if len(steps) else np.nan,
        "h_max": float(steps.max()) if len(steps) else np.nan,
    }


def step_log(system, solver, controller, rtol, atol=None, *, size=4096, max_steps=2**14, **opts):
    """Every attempted step of one adaptive solve, as a DataFrame.

    Columns: step (attempt index), t0, h, error (scaled error), accepted. `system` and `solver`
    are a System/catalog name and a solver/registry name; `controller` a preset name; `opts` go
    to `make`. Step-dependent systems are solved with StepTerm + StepAware, as in `sweep`.

    Args:
        system: a System or catalog name.
        solver: a diffrax solver or registry name (with an error estimate).
        controller: a preset name.
        rtol: relative tolerance.
        atol: absolute tolerance (None: atol = rtol).
        size: the most attempts recorded.
        max_steps: diffrax's step limit.
        **opts: controller options for `make`.

    Returns:
        The DataFrame; `attrs` holds "attempts" (all attempts, logged or not) and "num_steps".

    Examples:
        >>> log = step_log("lotka_volterra", "Tsit5", "PI34", rtol=1e-6)
        >>> list(log.columns), len(log) == log.attrs["num_steps"]
        (['step', 't0', 'h', 'error', 'accepted'], True)
        >>> accepted = log[log["accepted"]]
        >>> bool((accepted["error"] < 1).all())   # a step is accepted iff its error is < 1
        True
    """
    from . import solvers as _solvers
    from . import systems as _systems
    from .stepdep import StepAware

    system, solver = _systems.get(system), _solvers.get(solver)
    term = system.term()
    if system.h_dependent:
        solver = StepAware(solver)
    ctrl = StepLogger(make(controller, rtol, rtol if atol is None else atol, **opts), size)
    sol = diffrax.diffeqsolve(
        term,
        solver,
        system.t0,
        system.t1,
        None,
        system.y0,
        system.args,
        stepsize_controller=ctrl,
        saveat=diffrax.SaveAt(t1=True, controller_state=True),
        max_steps=int(max_steps),
        throw=False,
    )
    log = sol.controller_state[1]
    n = min(int(log["count"]), size)
    df = pd.DataFrame({k: np.asarray(log[k])[:n] for k in ("t0", "h", "error", "accepted")})
    df.insert(0, "step", np.arange(n))
    df.attrs.update(attempts=int(log["count"]), num_steps=int(sol.stats["num_steps"]))
    return df


def proportionality(rows: pd.DataFrame, by=("system", "solver", "controller")) -> pd.DataFrame:
    """Tolerance proportionality: least-squares slope of log error on log rtol per group.

    A slope of 1 means the error is proportional to the tolerance. Only rows with status "ok"
    and error > 0 count; `points` says how many. Every group of `rows` is a row of the result,
    also one whose rows all failed: `n_failed` counts its rows whose status is not "ok", and
    `reason` says how many of each status (and why a slope is missing).

    Args:
        rows: sweep rows with columns rtol, error, status and the `by` columns.
        by: the grouping columns.

    Returns:
        One row per group: the `by` columns, slope, intercept (of log10 error on log10 rtol),
        points, n_failed, status ("ok", or "too_few_points" with slope NaN when fewer than two
        distinct rtol are usable) and reason ("" for an ok fit without failed rows).

    Examples:
        >>> rtol = np.array([1e-3, 1e-5, 1e-7])
        >>> rows = pd.DataFrame({"system": "linear", "solver": "Tsit5", "controller": "PI34",
        ...                      "rtol": rtol, "error": 5 * rtol**0.8, "status": "ok"})
        >>> proportionality(rows)[["solver", "slope", "points", "status"]]  # error ∝ rtol^0.8
          solver  slope  points status
        0  Tsit5    0.8       3     ok
        >>> rows["status"] = ["ok", "max_steps", "max_steps"]
        >>> fit = proportionality(rows).iloc[0]
        >>> print(fit["slope"], fit["points"], fit["n_failed"], fit["status"])
        nan 1 2 too_few_points
        >>> fit["reason"]
        '1 usable point(s) with 1 distinct rtol, need 2 distinct rtol; 2 failed (2 max_steps)'
    """
    by = list(by)
    records = []
    for key, g in rows.groupby(by, sort=False, dropna=False):
        failed = g["status"] != "ok"
        use = g[~failed & (g["error"] > 0)]
        counts = g.loc[failed, "status"].value_counts(sort=False)
        listed = ", ".join(f"{c} {status}" for status, c in counts.items())
        why = [f"{int(failed.sum())} failed ({listed})"] if len(counts) else []
        if (zero := int((~failed & ~(g["error"] > 0)).sum())) > 0:
            why.append(f"{zero} ok row(s) without a positive error left out")
        record = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        record |= {"points": len(use), "n_failed": int(failed.sum())}
        if use["rtol"].nunique() < 2:
            why.insert(
                0,
                f"{len(use)} usable point(s) with {use['rtol'].nunique()} distinct rtol, "
                "need 2 distinct rtol",
            )
            record |= {"slope": np.nan, "intercept": np.nan, "status": "too_few_points"}
        else:
            slope, intercept = np.polyfit(np.log10(use["rtol"]), np.log10(use["error"]), 1)
            record |= {"slope": slope, "intercept": intercept, "status": "ok"}
        records.append(record | {"reason": "; ".join(why)})
    columns = [*by, "slope", "intercept", "points", "n_failed", "status", "reason"]
    out = pd.DataFrame(records, columns=columns)
    return out.astype({"points": int, "n_failed": int, "slope": float, "intercept": float})


def spread(rows: pd.DataFrame, output=None, by=("system", "rtol")) -> pd.DataFrame:
    """Controller-induced spread: max - min of an output over the rows of each `by` group.

    With by=("system", "rtol") the spread runs over everything else in the rows (controllers,
    solvers): how far the answer moves when only the controller changes. For a field that does
    not depend on h it is at the level of the tolerance; for a step-dependent field it is the
    size of the h-effect. `output` is a column name, or None for the final state: the spread of
    each y_final_i, maximised over i (the max-norm). Only rows with status "ok" count; `n` is
    how many, `center` the median output.

    Args:
        rows: sweep rows (e.g. several sweeps with different controllers, concatenated).
        output: a column name, or None for the final state.
        by: the grouping columns.

    Returns:
        One row per group: the `by` columns, spread, n and center.

    Examples:
        >>> rows = pd.DataFrame({"system": "linear", "controller": ["I", "PI34", "H211b"],
        ...                      "rtol": 1e-6, "status": "ok",
        ...                      "y_final_0": [0.3678, 0.3681, 0.3679]})
        >>> spread(rows)
           system      rtol  spread  n  center
        0  linear  0.000001  0.0003  3  0.3679
    """
    ok = rows[rows["status"] == "ok"]
    cols = [output] if output else [c for c in rows.columns if c.startswith("y_final_")]
    if not cols or not set(cols) <= set(rows.columns):
        raise InvalidArgument(f"output={output!r} is not a column of the rows")
    g = ok.groupby(list(by), sort=False)[cols]
    out = (g.max() - g.min()).max(axis=1).rename("spread").to_frame()
    out["n"] = g.size()
    out["center"] = g.median()[cols[0]]
    return out.reset_index()


def work_precision(systems, pairs, rtol, *, atol=None, repeats=3, log_steps=0, **sweep_kw):
    """Error, nfev and wall time over a tolerance sweep for (solver, controller) pairs.

    Each (system, solver, controller) group is compiled once and run `repeats` times one solve
    at a time (chunk_size=1, so a row's time is its own); `wall_s` is the best of the repeats.
    Only the first run uses an active chunk store (`analysis.chunk_store.recording`); the repeats
    always solve, so their times are real. rtol and atol are paired as in `sweep`.
    `log_steps` > 0 adds the `STEP_METRICS` columns (see `sweep`). Returns the sweep rows.

    Args:
        systems: a System or catalog name, or a list of them.
        pairs: (solver, controller preset name) pairs.
        rtol: relative tolerances.
        atol: absolute tolerances (None: atol = rtol).
        repeats: runs per group; wall_s is the best.
        log_steps: attempted steps to log per solve (0: none).
        **sweep_kw: other `sweep` arguments (e.g. dt0, max_steps, controller_options).

    Returns:
        The sweep rows of every pair, one per (system, tolerance), with the best wall_s.

    Examples:
        >>> wp = work_precision("linear", [("Tsit5", "PI34")], rtol=[1e-4, 1e-8], repeats=1)
        >>> wp[["solver", "controller", "rtol", "status"]]
          solver controller          rtol status
        0  Tsit5       PI34  1.000000e-04     ok
        1  Tsit5       PI34  1.000000e-08     ok
        >>> bool(wp["error"].is_monotonic_decreasing and wp["nfev"].is_monotonic_increasing)
        True
    """
    from . import chunk_store as _chunk_store
    from . import systems as _systems
    from ._sweep import sweep

    if int(repeats) != repeats or repeats < 1:
        raise InvalidArgument(f"repeats={repeats!r} is invalid; it must be an integer ≥ 1")
    one = isinstance(systems, (str, _systems.System))
    systems = [_systems.get(s) for s in ([systems] if one else systems)]  # one group per object
    rtols = np.atleast_1d(np.asarray(rtol, float))
    atols = rtols if atol is None else np.broadcast_to(np.asarray(atol, float), rtols.shape)
    # The first solve of every sweep call runs slower (dispatch warm-up, ~2x for sub-ms solves).
    # Sweeps run the loosest rtol first, ties in input order: a copy of it leads and is dropped.
    i = [int(np.argmax(rtols))]
    kw = dict(rtol=np.r_[rtols[i], rtols], atol=np.r_[atols[i], atols], chunk_size=1)
    frames = []
    for solver, controller in pairs:
        kw.update(controller=controller, log_steps=log_steps)
        runs = [sweep(systems, solver, **kw, **sweep_kw)]
        with _chunk_store.recording(None):  # repeats are timed, never loaded from a chunk store
            runs += [sweep(systems, solver, **kw, **sweep_kw) for _ in range(int(repeats) - 1)]
        compilations = sum(r.attrs["compilations"] for r in runs)
        runs = [r[r.index % (len(rtols) + 1) != 0] for r in runs]  # drop each system's warm-up
        best = runs[0].reset_index(drop=True)
        best["wall_s"] = np.min(np.stack([r["wall_s"].to_numpy() for r in runs]), axis=0)
        best.attrs["compilations"] = compilations
        frames.append(best)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["compilations"] = sum(f.attrs["compilations"] for f in frames)
    return out
