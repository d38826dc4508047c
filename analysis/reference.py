"""Reference solutions of a system's h → 0 limit ODE, for measuring errors.

When a system has an exact solution it is used. Otherwise the reference is a high-accuracy
adaptive solve of the limit field f(t, y, args, 0): Dopri8 at rtol = atol = 1e-13 (Kvaerno5 at
1e-12 for stiff systems), with its own error estimated by a second solve at 100× looser
tolerances. References are cached per system object.

Example:
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
    """y(t1) of the limit ODE, where it came from, and an estimate of its own error."""

    y: np.ndarray | None
    source: str  # "exact", "reference" or "none"
    error_estimate: float
    reason: str = ""


def solve_limit(system: System, ts, *, rtol: float, solver_name: str | None = None):
    """Solve the h → 0 limit ODE of `system` adaptively and return y at the times `ts`."""
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
    """The reference value of y(t1) for `system`'s limit ODE (exact when available)."""
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
