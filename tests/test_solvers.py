"""The solver registry: names, orders, and evaluation counts that match what really runs."""

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_SOLVERS, EXPLICIT_RK, EvaluationLog

from analysis import InvalidArgument, StepAware, StepTerm, solvers

NOMINAL = {
    "Euler": 1,
    "Heun": 2,
    "Midpoint": 2,
    "Ralston": 2,
    "Bosh3": 3,
    "Tsit5": 5,
    "Dopri5": 5,
    "Dopri8": 8,
    "ImplicitEuler": 1,
    "Kvaerno3": 3,
    "Kvaerno4": 4,
    "Kvaerno5": 5,
    "HalfSolver(Euler)": 1,
}


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_names_round_trip_and_orders_are_the_textbook_ones(name):
    solver = solvers.get(name)
    assert solvers.name_of(solver) == name == solvers.name_of(StepAware(solver))
    assert solvers.info(name).order == NOMINAL[name]


def test_unknown_solver_suggests_close_names():
    with pytest.raises(InvalidArgument, match="Did you mean 'Tsit5'"):
        solvers.get("Tsit4")


@pytest.mark.parametrize("name", EXPLICIT_RK + ("HalfSolver(Euler)",))
@pytest.mark.parametrize("step_dependent", [False, True])
@pytest.mark.parametrize("adaptive", [False, True])
def test_nfev_formula_counts_the_evaluations_that_happen(name, step_dependent, adaptive):
    if adaptive and not solvers.info(name).adaptive:
        pytest.skip("no error estimate")
    if step_dependent:
        log = EvaluationLog(lambda t, y, args, h: -y + h * jnp.sin(y))
    else:  # the field never touches h (it only logs it)
        log = EvaluationLog(lambda t, y, args, h: -y)
    ctrl = diffrax.PIDController(rtol=1e-5, atol=1e-7) if adaptive else diffrax.ConstantStepSize()
    sol = diffrax.diffeqsolve(
        StepTerm(log.field),
        StepAware(solvers.get(name)),
        0.0,
        2.0,
        None if adaptive else 0.1,
        jnp.array(1.0),
        stepsize_controller=ctrl,
        max_steps=10_000,
    )
    counted = len(log.hs)
    predicted = solvers.nfev(name, int(sol.stats["num_steps"]), step_dependent=step_dependent)
    assert counted == predicted


def test_fixed_step_implicit_solvers_converge_their_newton_iterations():
    term = diffrax.ODETerm(lambda t, y, args: -y)
    for name in ("ImplicitEuler", "Kvaerno5"):
        sol = diffrax.diffeqsolve(
            term, solvers.for_fixed_steps(solvers.get(name)), 0.0, 1.0, 0.1, jnp.array(1.0)
        )
        if name == "ImplicitEuler":
            np.testing.assert_allclose(sol.ys[-1], 1.1**-10, rtol=1e-12)
        else:
            np.testing.assert_allclose(sol.ys[-1], np.exp(-1.0), rtol=1e-8)
