"""What the toolkit relies on in diffrax's internals (`analysis._diffrax_private`), pinned.

A diffrax release that changes one of these fails here, by name, instead of as a wrong number.
"""

import diffrax
import jax.numpy as jnp
import numpy as np

from analysis import _diffrax_private as private


def test_reverse_time_solves_wrap_the_term_with_direction_minus_one():
    seen = []

    class Spy(diffrax.Euler):
        def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
            seen.append(terms)  # recorded while tracing
            return super().step(terms, t0, t1, y0, args, solver_state, made_jump)

    term = diffrax.ODETerm(lambda t, y, args: -y)
    sol = diffrax.diffeqsolve(term, Spy(), 1.0, 0.0, -0.5, jnp.array(1.0))
    (wrapped,) = {type(t) for t in seen}
    assert wrapped is private.WrapTerm
    assert all(isinstance(t.term, diffrax.ODETerm) for t in seen)  # direction -1 is traced
    np.testing.assert_allclose(sol.ys[-1], 2.25)  # backwards Euler steps: (1 + 1/2)^2


def test_implicit_solvers_wait_for_the_controllers_tolerances_by_the_sentinel():
    root = diffrax.Kvaerno5().root_finder
    assert root.rtol is private.USE_STEPSIZE_TOL and root.atol is private.USE_STEPSIZE_TOL
    # given tolerances replace it, which is what analysis.solvers.for_fixed_steps does
    assert diffrax.VeryChord(rtol=1e-8, atol=1e-8).rtol == 1e-8


def test_result_codes_are_zero_for_success_and_distinct_per_outcome():
    codes = {name: int(private.result_code(getattr(diffrax.RESULTS, name)))
             for name in ("successful", "max_steps_reached", "dt_min_reached",
                          "nonlinear_divergence", "event_occurred")}  # fmt: skip
    assert codes["successful"] == 0 and len(set(codes.values())) == len(codes)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: -y), diffrax.Euler(), 0.0, 1.0, 0.01, jnp.array(1.0),
        max_steps=5, throw=False,
    )  # fmt: skip
    assert int(private.result_code(sol.result)) == codes["max_steps_reached"]
