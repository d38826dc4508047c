"""Reference solutions of a system's h → 0 limit ODE, for measuring errors.

When a system has an exact solution it is used. Otherwise the reference is a high-accuracy
adaptive solve of the limit field f(t, y, args, 0): Dopri8 at rtol = atol = 1e-13 (Kvaerno5 at
1e-12 for stiff systems), with its own error estimated by a second solve at 100× looser
tolerances. References are cached per system object.

Examples:
    >>> from analysis import systems, reference
    >>> ref = reference.final_state(systems.get("lotka_volterra"))
    >>> ref.source, ref.error_estimate < 1e-9
    ('reference', True)
"""

from __future__ import annotations

import dataclasses
import weakref

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .errors import warn_if_float32
from .systems import System

__all__ = ["Reference", "final_state", "solve_limit", "REFERENCE_SETTINGS"]

#: (solver, rtol) used for non-stiff and stiff reference solves.
REFERENCE_SETTINGS = {"nonstiff": ("Dopri8", 1e-13), "stiff": ("Kvaerno5", 1e-12)}
_MAX_STEPS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Reference:
    """y(t1) of the limit ODE, where it came from, and an estimate of its own error.

    Attributes:
        y: y(t1) as a NumPy array, or None if no reference could be computed.
        source: "exact" (the system's exact solution), "reference" (a solve) or "none".
        error_estimate: 0 for an exact solution; for a solve, the max-norm distance to a second
            solve at 100× looser tolerance; NaN for "none".
        reason: why there is no reference ("" otherwise).

    Examples:
        >>> from analysis import systems
        >>> ref = final_state(systems.get("harmonic"))    # y(2π) = (cos 2π, -sin 2π) = (1, 0)
        >>> ref.source, ref.error_estimate, bool(np.allclose(ref.y, [1.0, 0.0], atol=1e-12))
        ('exact', 0.0, True)
    """

    y: np.ndarray | None
    source: str  # "exact", "reference" or "none"
    error_estimate: float
    reason: str = ""


def solve_limit(system: System, ts, *, rtol: float, solver_name: str | None = None):
    """Solve the h → 0 limit ODE of `system` adaptively and return y at the times `ts`.

    Args:
        system: the System; its limit field f(t, y, args, 0) is solved from t0.
        ts: increasing times in [t0, t1] at which to return y.
        rtol: relative tolerance of the PID controller (atol = rtol).
        solver_name: a diffrax solver class name (default: Dopri8, or Kvaerno5 if stiff).

    Returns:
        (ys, result): y at `ts` (shape (len(ts), *y0.shape)) and the diffrax result code; the
        solve does not raise, so check the result.

    Examples:
        >>> from analysis import systems
        >>> sys = systems.get("logistic")            # exact y(t) = 0.1·e^t / (0.9 + 0.1·e^t)
        >>> ys, result = solve_limit(sys, [1.0, 5.0], rtol=1e-10)
        >>> result == diffrax.RESULTS.successful, [round(float(y), 6) for y in ys]
        (Array(True, dtype=bool), [0.231969, 0.942826])
    """
    kind = "stiff" if system.stiff else "nonstiff"
    name = solver_name or REFERENCE_SETTINGS[kind][0]
    solver = getattr(diffrax, name)()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(system.limit_field),
        solver,
        system.t0,
        system.t1,
        None,
        system.y0,
        system.args,
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol),
        max_steps=_MAX_STEPS,
        throw=False,
    )
    return sol.ys, sol.result


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def final_state(system: System) -> Reference:
    """The reference value of y(t1) for `system`'s limit ODE (exact when available).

    Computed once per system object (cached). Without an exact solution, two adaptive solves
    (see the module docstring) give y(t1) and the error estimate.

    Args:
        system: the System.

    Returns:
        A `Reference`.

    Examples:
        >>> from analysis import systems
        >>> ref = final_state(systems.get("linear"))     # y(1) = e^-1
        >>> ref.source, round(float(ref.y), 6)
        ('exact', 0.367879)
    """
    if system in _CACHE:
        return _CACHE[system]
    warn_if_float32("a reference solution")
    if system.exact is not None:
        ref = Reference(np.asarray(system.exact(system.t1)), "exact", 0.0)
    else:
        ref = _reference_solve(system)
    _CACHE[system] = ref
    return ref


def _reference_solve(system: System) -> Reference:
    rtol = REFERENCE_SETTINGS["stiff" if system.stiff else "nonstiff"][1]
    ts = jnp.asarray([system.t1])
    fine, fine_result = jax.jit(lambda: solve_limit(system, ts, rtol=rtol))()
    coarse, coarse_result = jax.jit(lambda: solve_limit(system, ts, rtol=100 * rtol))()
    ok = fine_result == diffrax.RESULTS.successful and coarse_result == diffrax.RESULTS.successful
    if not bool(ok) or not bool(jnp.all(jnp.isfinite(fine))):
        return Reference(None, "none", np.nan, reason="reference solve failed")
    estimate = float(jnp.max(jnp.abs(fine - coarse)))
    return Reference(np.asarray(fine[-1]), "reference", estimate)
