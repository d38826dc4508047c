"""The solver registry: names, orders, and evaluation counts that match what really runs."""

import math

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_SOLVERS, EXPLICIT_RK, EvaluationLog, fit_slope

from analysis import InvalidArgument, StepAware, StepTerm, convergence, solvers, systems

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


# --- Implicit solvers at fixed steps on a stiff problem ------------------------------------------
# Prothero–Robinson y' = λ(y - φ(t)) + φ'(t), φ = sin, y(0) = φ(0): the exact solution is φ for
# every λ (the catalog's prothero_robinson with stiffness = -λ).
STIFF_LAMBDA = -1e6
IMPLICIT = ("ImplicitEuler", "Kvaerno3", "Kvaerno4", "Kvaerno5")


def _tableau(name):
    """(A, b, c) with the first stage; implicit Euler is the one-stage tableau A = b = c = 1."""
    meta = solvers.info(name)
    if meta.tableau is None:
        return np.ones((1, 1)), np.ones(1), np.ones(1)
    return solvers._full_tableau(meta.tableau)


def numpy_dirk_prothero_robinson(name, lam, n, t1=2.0):
    """Final error of n steps of a diagonally implicit RK method on Prothero–Robinson, in numpy.

    Independent of diffrax's stepping and Newton solves: the problem is linear, so stage i,
    Y_i = p_i + h·a_ii·(λ(Y_i - φ(t_i)) + φ'(t_i)) with p_i = y_n + h·Σ_{j<i} a_ij F_j, is one
    scalar linear equation solved exactly. The stage derivative is taken as (Y_i - p_i)/(h·a_ii),
    not as λ(Y_i - φ) + φ' (whose round-off is ε·|λ| = 2e-10 at λ = -1e6, above the errors here).
    """
    a, b, c = _tableau(name)
    h = t1 / n
    y = 0.0
    for k in range(n):
        t = k * h
        f = np.zeros(len(b))
        for i in range(len(b)):
            ti = t + c[i] * h
            p = y + h * (a[i, :i] @ f[:i])
            g = h * a[i, i]
            if g == 0.0:  # the explicit first stage of an ESDIRK
                f[i] = lam * (p - np.sin(ti)) + np.cos(ti)
            else:
                stage = (p + g * (np.cos(ti) - lam * np.sin(ti))) / (1.0 - g * lam)
                f[i] = (stage - p) / g
        y = y + h * (b @ f)
    return y - np.sin(t1)


def stiff_limit_error(name, lam, h, t1=2.0):
    """Leading error for |hλ| → ∞ of an L-stable, stiffly accurate (E)SDIRK on Prothero–Robinson.

    With E_i the stage errors and Δ_i = φ(t + c_i h) - φ(t) - h·Σ_j a_ij φ'(t + c_j h) the stage
    defects, (I - hλA)·E = e_n·1 - Δ and e_{n+1} = E_s (stiffly accurate). The explicit first
    stage has E_1 = e_n; for the implicit block Â, (I - hλÂ)^{-1} = -(hλ)^{-1}Â^{-1} + O((hλ)^-2)
    and R(∞) = 0 leave e_{n+1} = [Â^{-1}Δ̂]_s/(hλ) + O(e_n/(hλ)). With stage order q,
    Δ_i = h^(q+1)·φ^(q+1)·d_i + O(h^(q+2)), d_i = c_i^(q+1)/(q+1)! - Σ_j a_ij c_j^q/q!, so

        e ≈ h^q·φ^(q+1)(t1)·[Â^{-1}d̂]_s / λ,

    order q in h (order reduction from p to the stage order), and 1/λ smaller as λ grows.
    """
    a, _, c = _tableau(name)
    q = solvers.info(name).stage_order
    d = c ** (q + 1) / math.factorial(q + 1) - a @ c**q / math.factorial(q)
    implicit = slice(1, None) if a[0, 0] == 0.0 else slice(None)
    k = np.linalg.solve(a[implicit, implicit], d[implicit])[-1]
    derivative = [np.sin, np.cos, lambda t: -np.sin(t), lambda t: -np.cos(t)][(q + 1) % 4]
    return h**q * derivative(t1) * k / lam


@pytest.mark.parametrize("name", IMPLICIT)
def test_stage_orders_are_the_tableaus(name):
    # C(q): Σ_j a_ij c_j^(k-1) = c_i^k / k for k ≤ q. The Kvaerno ESDIRKs have an explicit first
    # stage, so the second stage (c_2 = 2γ, a_21 = a_22 = γ) can satisfy at most C(2).
    a, _, c = _tableau(name)
    q = solvers.info(name).stage_order
    assert q == (1 if name == "ImplicitEuler" else 2)
    for k in range(1, q + 1):
        np.testing.assert_allclose(a @ c ** (k - 1), c**k / k, atol=1e-12)
    assert not np.allclose(a @ c**q, c ** (q + 1) / (q + 1), atol=1e-8)


@pytest.mark.parametrize("name", IMPLICIT)
def test_stiff_prothero_robinson_at_fixed_steps_matches_an_independent_dirk(name):
    steps = (10, 40, 160, 640)
    df = convergence.measure(
        systems.get("prothero_robinson", stiffness=-STIFF_LAMBDA),
        name,
        dt0=[2.0 / n for n in steps],
    ).rows
    assert (df["status"] == "ok").all(), df[["h", "status"]]
    expected = np.abs([numpy_dirk_prothero_robinson(name, STIFF_LAMBDA, n) for n in steps])
    measured = df.sort_values("h", ascending=False)["error"].to_numpy()
    # the same method on the same steps: equal up to round-off (the errors are 1e-13 .. 1e-7)
    np.testing.assert_allclose(measured, expected, rtol=1e-5, atol=1e-15)


@pytest.mark.parametrize("name", IMPLICIT)
def test_stiff_errors_fall_to_the_stage_order(name):
    # Independent of diffrax: the numpy DIRK against the |hλ| → ∞ theory, and its fitted order.
    steps = (10, 20, 40, 80, 160)  # |hλ| from 2e5 down to 1.25e4
    h = 2.0 / np.array(steps)
    errors = np.array([numpy_dirk_prothero_robinson(name, STIFF_LAMBDA, n) for n in steps])
    theory = np.array([stiff_limit_error(name, STIFF_LAMBDA, s) for s in h])
    # the next terms are O(h) relative (h^(q+1)·φ^(q+2)/λ) and O(1/(hλ)): 2 % to 20 % at h = 0.2
    assert np.all(np.abs(errors / theory - 1) < 1.5 * h), errors / theory
    q = solvers.info(name).stage_order
    assert abs(fit_slope(h, np.abs(errors)) - q) < 0.1
    assert q < solvers.info(name).order or name == "ImplicitEuler"


def test_a_root_finder_the_user_passed_is_kept():
    import optimistix as optx

    mine = optx.Newton(rtol=1e-12, atol=1e-12)
    solver = diffrax.Kvaerno5(root_finder=mine, root_find_max_steps=7)
    assert solvers.for_fixed_steps(solver) is solver
    assert solvers.for_fixed_steps(StepAware(solver)).solver.root_finder is mine
    # the defaults get the state-scaled Newton, and keep every other field
    default = solvers.for_fixed_steps(diffrax.Kvaerno5(root_find_max_steps=7))
    assert isinstance(default.root_finder, solvers.StateScaledNewton)
    assert default.root_find_max_steps == 7
    # a root finder (not the default VeryChord) still waiting for a controller's tolerances
    # keeps its class and gets ours
    waiting = diffrax.with_stepsize_controller_tols(optx.Chord)()
    filled = solvers.for_fixed_steps(diffrax.Kvaerno5(root_finder=waiting)).root_finder
    assert type(filled) is optx.Chord
    assert (filled.rtol, filled.atol) == (
        solvers.FIXED_STEP_ROOT_RTOL,
        solvers.FIXED_STEP_ROOT_ATOL,
    )
    # ... and it is the one that runs: its absolute residual test fails at λ = -1e6, where
    # the default (state-scaled) one succeeds
    system = systems.get("prothero_robinson", stiffness=-STIFF_LAMBDA)

    def result(s):
        sol = diffrax.diffeqsolve(
            system.term(), s, 0.0, 1.0, 0.1, system.y0, args=system.args, throw=False
        )
        return sol.result

    assert result(solvers.for_fixed_steps(StepAware(solver))) == (
        diffrax.RESULTS.nonlinear_max_steps_reached
    )
    assert result(solvers.for_fixed_steps(StepAware(diffrax.Kvaerno5()))) == (
        diffrax.RESULTS.successful
    )


@pytest.mark.parametrize("gap", [1e-3, 1e-9])
def test_the_newton_tolerance_widens_with_the_conditioning(gap):
    # One implicit Euler step of y' = λ(y - sin t) + cos t with λ = +50 (unstable) and
    # h·λ = 1 - gap: the Newton matrix h·λ - 1 = -gap is nearly singular, which multiplies the
    # residual's round-off by 1/gap. Exact: y1 = h(cos h - λ sin h)/(1 - hλ).
    lam = 50.0
    h = (1 - gap) / lam
    term = diffrax.ODETerm(lambda t, y, a: lam * (y - jnp.sin(t)) + jnp.cos(t))
    solver = solvers.for_fixed_steps(solvers.get("ImplicitEuler"))
    sol = diffrax.diffeqsolve(term, solver, 0.0, h, h, jnp.array(0.0), throw=False)
    assert sol.result == diffrax.RESULTS.successful
    exact = h * (np.cos(h) - lam * np.sin(h)) / (1 - h * lam)
    attainable = 10 * np.finfo(float).eps * (1 / gap) * (gap + 1)  # 10·ε·‖M⁻¹‖(‖M‖ + 1)
    assert abs(float(sol.ys[-1]) - exact) <= max(attainable, 1e-10) * abs(exact)
