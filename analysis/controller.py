"""Step-size controllers: Söderlind's digital filters, their presets, and a step logger.

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
with characteristic polynomial (`closed_loop_poles`; with ``gain=γ`` the model r_n = φ·h_n^(γk),
each kβ_i multiplied by γ: `analysis.control_loop`)

    P(q) = q³ + (kβ1 - 1 + α2)·q² + (kβ2 - α2 + α3)·q + (kβ3 - α3),

whose roots are the closed-loop poles: all at 0 for a deadbeat filter (I, H0321), and
{0, 1 - 2/b} for H211b, {0, 0, 1 - 4/b} for H312b, {1/3, 1/2, 2/3} for H321.

Pieces:
- `PRESETS` / `preset(name)` / `make(name, rtol, atol, **overrides)` -> `SoderlindController`.
- `numbers_as_arrays(ctrl)`: its numbers as arrays, so that controllers differing only in
  numbers (presets, tolerances, factor bounds) share one compiled solve (`analysis.batch`).
- `SoderlindController`: a diffrax adaptive controller with β and α terms, an optional smooth
  limiter, and a documented rejection rule; equal to diffrax.PIDController when α = 0.
- `StepLogger(controller, size)`: records every attempted step inside the compiled solve.

What is measured with them lives above: `analysis.step_log` (the logged steps of a solve and
their metrics), `analysis.tolerance` (proportionality, spread, work-precision).

Examples:
    >>> from analysis import controller
    >>> c = controller.make("H211b", rtol=1e-6, atol=1e-8)
    >>> c.kbeta, c.alpha
    ((0.25, 0.25, 0.0), (0.25, 0.0))
    >>> {k: round(v, 12) for k, v in controller.preset("PI34").pid.items()}
    {'pcoeff': 0.4, 'icoeff': 0.3, 'dcoeff': 0.0}
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optimistix as optx

from .errors import InvalidArgument

__all__ = [
    "Preset",
    "PRESETS",
    "FIXED",
    "preset",
    "make",
    "numbers_as_arrays",
    "closed_loop_poles",
    "SoderlindController",
    "StepLogger",
    "scaled_error",
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


def closed_loop_poles(p: Preset | str, gain: float = 1.0) -> np.ndarray:
    """Roots of P(q) = q³ + (γkβ1 - 1 + α2)q² + (γkβ2 - α2 + α3)q + (γkβ3 - α3), γ = `gain`.

    They govern how log h responds under the error model r = φ·h^(γ·k): the design assumes
    γ = 1 (the asymptotic model r = φ·h^k, module docstring); a field whose error estimate
    scales with another exponent k_a has γ = k_a/k (`analysis.control_loop`). |q| < 1 is stable;
    γ = 0 (an error that ignores h) always has the root q = 1.

    Args:
        p: a `Preset` or a preset name.
        gain: γ, the ratio of the actual error exponent to the controller's k (finite, ≥ 0).

    Returns:
        The three roots as a NumPy array (complex if any root is).

    Raises:
        InvalidArgument: gain is not a finite number ≥ 0.

    Examples:
        >>> round(float(np.max(np.abs(closed_loop_poles("PI34")))), 6)  # roots 0, 0.8, -0.5
        0.8
        >>> tuple(round(float(q), 6) for q in sorted(closed_loop_poles("H321").real))
        (0.333333, 0.5, 0.666667)
        >>> sorted(round(float(q), 6) for q in closed_loop_poles("I", gain=3.0).real)  # 1 - γ
        [-2.0, 0.0, 0.0]
    """
    p = preset(p) if isinstance(p, str) else p
    try:
        ok = np.ndim(gain) == 0 and np.isfinite(float(gain)) and float(gain) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(gain, bool):
        raise InvalidArgument(f"gain={gain!r} is invalid; it must be a finite number ≥ 0")
    g = float(gain)
    (b1, b2, b3), (a2, a3) = p.kbeta, p.alpha
    return np.roots([1.0, g * b1 - 1 + a2, g * b2 - a2 + a3, g * b3 - a3])


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
    """None or a number known now (a Python or NumPy number, a 0-d array that is not traced)."""
    if x is None or isinstance(x, (int, float, np.number)):
        return True
    array = isinstance(x, np.ndarray | jax.Array) and not isinstance(x, jax.core.Tracer)
    return array and x.ndim == 0


def _pow(x, c):
    """x**c, and exactly 1 for c = 0 whatever x is (also x = 0, inf or NaN): a zero coefficient
    drops its factor. A concrete zero is skipped before tracing; a traced one is selected."""
    if _concrete(c):
        return 1.0 if c == 0 else x**c
    return jnp.where(c == 0, 1.0, x**c)


def _over(c, k):
    """c/k rounded as Python rounds it. XLA turns a division by a constant into a multiplication
    by its reciprocal (an ulp off for k = 3, 5, ...), so a traced c is divided by k behind an
    optimization barrier: traced coefficients give the exponents concrete ones give."""
    if _concrete(c):
        return c / k
    return c / lax.optimization_barrier(jnp.asarray(k, jnp.result_type(c)))


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
                if value is None or not (np.isfinite(value) and value >= 0):
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
                    "analysis.controller.closed_loop_poles); e.g. kbeta=(0.7, -0.4, 0) (PI34)"
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
        b1, b2, b3 = (_over(c, k) for c in self.kbeta)
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


def numbers_as_arrays(ctrl: SoderlindController) -> SoderlindController:
    """`ctrl` with every number (tolerances, kβ, α, safety, factor bounds, accept_ratio, dtmin,
    dtmax, error_order) as a 0-d float array: arguments, not constants, of a compiled solve.

    `eqx.filter_jit` traces arrays and keeps everything else static, so controllers of one kind
    share one compiled program whatever their numbers. The kind is what stays: the class, the
    limiter, the norm, force_dtmin and which of accept_ratio, dtmin, dtmax, error_order are None.
    No checks run again (`__check_init__` has seen the concrete numbers), and the controller
    steps as before: a zero coefficient still drops its factor (`_pow`).

    Args:
        ctrl: a `SoderlindController` (e.g. from `make`).

    Returns:
        The same controller with its numbers as jax arrays of the default float dtype.

    Examples:
        >>> c = numbers_as_arrays(make("H321", rtol=1e-3, atol=1e-3, dtmax=0.5))
        >>> [round(float(b), 6) for b in c.kbeta], float(c.dtmax), c.dtmin
        ([0.333333, 0.055556, -0.277778], 0.5, None)
        >>> traces = []
        >>> @eqx.filter_jit
        ... def first_factor(c):
        ...     traces.append(c)                        # runs once per trace
        ...     return c.safety * c.kbeta[0]
        >>> [round(float(first_factor(numbers_as_arrays(make(p, 1e-6, 1e-6)))), 6)
        ...  for p in ("I", "PI34", "H211b")]
        [0.9, 0.63, 0.225]
        >>> len(traces)                                 # three presets, one trace
        1
        >>> _ = first_factor(make("PI34", 1e-6, 1e-6))  # Python floats are static: a new trace
        >>> len(traces)
        2
    """
    dtype = jnp.result_type(float)

    def to_array(x):
        number = isinstance(x, int | float | np.number) and not isinstance(x, bool | np.bool_)
        return jnp.asarray(x, dtype) if number else x

    return jtu.tree_map(to_array, ctrl)


class AdaptiveWrapper(diffrax.AbstractAdaptiveStepSizeController):
    """An adaptive controller around another (`controller`) that keeps its tolerances: the
    wrapped controller's rtol, atol and norm, which diffeqsolve also hands to an implicit
    solver's Newton iteration."""

    controller: eqx.AbstractVar[diffrax.AbstractAdaptiveStepSizeController]

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm


class StepLogger(AdaptiveWrapper):
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
