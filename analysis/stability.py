"""A solver with step h as a map: y_{n+1} = Φ_h(y_n), and the stability of that map.

Example:
    >>> from analysis import systems, stability
    >>> phi = stability.one_step_map(systems.get("logistic"), "Euler", 0.5)
    >>> float(phi(jnp.asarray(0.5)))       # 0.5 + 0.5·0.5·(1 - 0.5)
    0.625
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax.numpy as jnp

from . import solvers as _solvers
from . import systems as _systems
from .stepdep import StepAware, StepTerm

__all__ = ["one_step_map"]


def one_step_map(system, solver, h, *, t=None) -> Callable:
    """Φ_h: one step of `solver` with step h on `system`, as a jax function y -> y_next.

    The step is StepAware, so a step-dependent field sees this h in every stage. `system` and
    `solver` may be names. The map is built from `solver.step` directly (no diffeqsolve loop), so
    it composes with jit, vmap (over y and over h) and jacfwd. Implicit solvers use the
    fixed-step Newton tolerance of `analysis.solvers.for_fixed_steps`. For a non-autonomous
    system the step starts at time `t` (default: the system's t0).
    """
    system = _systems.get(system)
    stepper = StepAware(_solvers.for_fixed_steps(_solvers.get(solver)))
    if system.h_dependent:
        term = StepTerm(system.vector_field)
    else:
        term = diffrax.ODETerm(system.limit_field)
    t0 = jnp.asarray(system.t0 if t is None else t, dtype=jnp.result_type(float))

    def phi(y):
        t1 = t0 + h
        state = stepper.init(term, t0, t1, y, system.args)
        y1, _, _, _, _ = stepper.step(term, t0, t1, y, system.args, state, False)
        return y1

    return phi
