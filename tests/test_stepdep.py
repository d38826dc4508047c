"""StepTerm and StepAware: h reaches every evaluation of a step, and nothing else changes."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ADAPTIVE_SOLVERS, ALL_SOLVERS, EvaluationLog, fixed_solver

from analysis import InvalidArgument, StepAware, StepTerm, solvers
from analysis.stepdep import StaleFSAL, bind_step


def _lv(t, y, args):
    a, b, d, g = args
    return jnp.stack([a * y[0] - b * y[0] * y[1], d * y[0] * y[1] - g * y[1]])


LV_ARGS = jnp.array([1.5, 1.0, 1.0, 3.0])
LV_Y0 = jnp.array([1.0, 1.0])


def _controllers():
    ts = jnp.concatenate([jnp.linspace(0.0, 1.0, 7) ** 1.5, jnp.linspace(1.1, 3.0, 9)])
    return {
        "constant": (diffrax.ConstantStepSize(), 0.05),
        "stepto": (diffrax.StepTo(ts=ts), None),
        "pid": (diffrax.PIDController(rtol=1e-4, atol=1e-6), None),
    }


@pytest.mark.parametrize("name", ALL_SOLVERS)
@pytest.mark.parametrize("kind", ["constant", "stepto", "pid"])
def test_h_free_field_gives_what_the_bare_solver_gives(name, kind):
    if kind == "pid" and name not in ADAPTIVE_SOLVERS:
        pytest.skip(f"{name} has no error estimate")
    controller, dt0 = _controllers()[kind]
    solver = solvers.get(name) if kind == "pid" else fixed_solver(name)
    common = dict(
        t0=0.0,
        t1=3.0,
        dt0=dt0,
        y0=LV_Y0,
        args=LV_ARGS,
        stepsize_controller=controller,
        saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 3.0, 11)),
        max_steps=10_000,
    )
    bare = diffrax.diffeqsolve(diffrax.ODETerm(_lv), solver, **common)
    term = StepTerm(lambda t, y, args, h: _lv(t, y, args))
    wrapped = diffrax.diffeqsolve(term, StepAware(solver), **common)
    np.testing.assert_allclose(wrapped.ys, bare.ys, rtol=1e-12, atol=0)
    for key in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(wrapped.stats[key]) == int(bare.stats[key])


def _rk_step(tableau, f, t, y, h):
    """One explicit Runge–Kutta step, every stage evaluated at step size h (the reference)."""
    ks = [f(t, y, None, h)]
    for ci, row in zip(tableau.c, tableau.a_lower, strict=True):
        yi = y + h * sum(a * k for a, k in zip(row, ks, strict=False))
        ks.append(f(t + ci * h, yi, None, h))
    return y + h * sum(b * k for b, k in zip(tableau.b_sol, ks, strict=True))


@pytest.mark.parametrize("name", ["Tsit5", "Bosh3", "Dopri5", "Dopri8"])
def test_fsal_stage_is_reevaluated_at_the_current_h(name):
    f = lambda t, y, args, h: -y + h * y  # noqa: E731
    ctrl = diffrax.PIDController(rtol=1e-5, atol=1e-7)
    kw = dict(
        t0=0.0,
        t1=5.0,
        dt0=None,
        y0=jnp.array(1.0),
        stepsize_controller=ctrl,
        saveat=diffrax.SaveAt(steps=True),
        max_steps=1000,
    )
    sol = diffrax.diffeqsolve(StepTerm(f), StepAware(solvers.get(name)), **kw)
    n = int(sol.stats["num_accepted_steps"])
    ts, ys = np.asarray(sol.ts[: n + 1]), np.asarray(sol.ys[: n + 1])
    ts, ys = np.concatenate([[0.0], ts]), np.concatenate([[1.0], ys])
    assert np.all(np.diff(ts) > 0) and n > 5
    # Replay the accepted steps with every stage at the current h: the same numbers.
    tableau = solvers.info(name).tableau
    y = 1.0
    for k in range(n):
        y = _rk_step(tableau, f, ts[k], y, ts[k + 1] - ts[k])
        np.testing.assert_allclose(ys[k + 1], y, rtol=1e-13)
    # Reusing the previous step's last stage (StaleFSAL, a naive wrapper) changes the answer.
    stale = diffrax.diffeqsolve(StepTerm(f), StaleFSAL(solvers.get(name)), **kw)
    assert abs(float(stale.ys[int(stale.stats["num_accepted_steps"]) - 1]) - ys[-1]) > 1e-8


def test_every_evaluation_inside_a_step_sees_that_steps_h():
    log = EvaluationLog(lambda t, y, args, h: -y + h * jnp.sin(y))
    sol = diffrax.diffeqsolve(
        StepTerm(log.field),
        StepAware(diffrax.Tsit5()),
        0.0,
        4.0,
        None,
        jnp.array(3.0),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
        saveat=diffrax.SaveAt(steps=True),
        max_steps=1000,
    )
    n = int(sol.stats["num_accepted_steps"])
    hs = np.asarray(log.hs)
    steps = np.diff(np.concatenate([[0.0], np.asarray(sol.ts[:n])]))
    # Every evaluation belongs to an attempted step: 7 stages at that step's h, and the
    # accepted steps (the clipped last one included) are among them.
    assert len(hs) == 7 * int(sol.stats["num_steps"])
    attempted = hs.reshape(-1, 7)
    assert np.all(attempted == attempted[:, :1])
    for h in steps:
        assert np.any(np.isclose(attempted[:, 0], h, rtol=1e-13, atol=0))
    assert not np.any(hs == 0.0)


def test_h_dependence_is_read_from_the_traced_field():
    from analysis.stepdep import uses_h

    y = jnp.array([1.0, 2.0])
    assert uses_h(lambda t, y, a, h: -y + h * y, 0.0, y, None)
    assert uses_h(lambda t, y, a, h: jnp.where(h > 0.1, y, -y), 0.0, y, None)
    assert not uses_h(lambda t, y, a, h: -y * jnp.sin(t), 0.0, y, None)


def test_outside_a_step_stepaware_binds_h_zero_the_limit():
    f = lambda t, y, args, h: -y + 3.0 * h  # noqa: E731
    term = StepTerm(f)
    y = jnp.array(2.0)
    assert float(StepAware(diffrax.Tsit5()).func(term, 0.0, y, None)) == -2.0
    StepAware(diffrax.Tsit5()).init(term, 0.0, 0.1, y, None)  # init binds h = 0 as well
    assert float(bind_step(term, 0.0).vf(0.0, y, None)) == -2.0
    # The term alone has no h: evaluating it is refused, not silently done at h = 0.
    with pytest.raises(InvalidArgument, match="StepAware"):
        term.vf(0.0, y, None)


_PLAIN = ["Euler", "Heun", "Tsit5", "Dopri5", "Kvaerno3"]


@pytest.mark.parametrize("name", _PLAIN)
@pytest.mark.parametrize("adaptive", [False, True])
def test_a_field_using_h_under_a_plain_solver_is_refused_at_trace_time(name, adaptive):
    # What following diffrax's custom-solver advice gives: the StepTerm handed to the bare
    # solver. It used to integrate the h → 0 limit and report success.
    if adaptive and name not in ADAPTIVE_SOLVERS:
        pytest.skip(f"{name} has no error estimate")
    term = StepTerm(lambda t, y, args, h: -y + h * jnp.sin(y))
    solver = solvers.get(name) if adaptive else fixed_solver(name)
    ctrl = diffrax.PIDController(rtol=1e-6, atol=1e-8) if adaptive else diffrax.ConstantStepSize()
    kw = dict(stepsize_controller=ctrl, max_steps=1000)
    with pytest.raises(InvalidArgument, match=r"StepAware\(solver\)") as caught:
        diffrax.diffeqsolve(term, solver, 0.0, 1.0, None if adaptive else 0.1, 1.0, **kw)
    assert "outside a step" in str(caught.value)
    # Under jit too (the refusal is a trace-time Python error, not a runtime one).
    with pytest.raises(InvalidArgument, match="StepAware"):
        jax.jit(lambda y0: diffrax.diffeqsolve(term, solver, 0.0, 1.0, 0.1, y0, **kw).ys)(1.0)
    # A hand-written stepper that calls the solver's step directly is refused as well.
    with pytest.raises(InvalidArgument, match="StepAware"):
        state = solver.init(term, 0.0, 0.1, jnp.array(1.0), None)
        solver.step(term, 0.0, 0.1, jnp.array(1.0), None, state, False)
    # Wrapped, the same call solves the model.
    sol = diffrax.diffeqsolve(
        term, StepAware(solver), 0.0, 1.0, None if adaptive else 0.1, 1.0, **kw
    )
    assert sol.result == diffrax.RESULTS.successful


@pytest.mark.parametrize("name", _PLAIN)
def test_an_h_free_field_in_a_stepterm_works_with_any_solver(name):
    term = StepTerm(lambda t, y, args, h: _lv(t, y, args))
    kw = dict(t0=0.0, t1=1.0, dt0=0.05, y0=LV_Y0, args=LV_ARGS, max_steps=100)
    solver = fixed_solver(name)
    plain = diffrax.diffeqsolve(term, solver, **kw)
    bare = diffrax.diffeqsolve(diffrax.ODETerm(_lv), solver, **kw)
    np.testing.assert_array_equal(plain.ys, bare.ys)
    np.testing.assert_allclose(term.vf(0.0, LV_Y0, LV_ARGS), _lv(0.0, LV_Y0, LV_ARGS))


def test_frozen_and_bound_terms_are_ordinary_odes_for_any_solver():
    term = StepTerm(lambda t, y, args, h: -y + h * y)
    for ready in (term.freeze(0.5), bind_step(term, 0.5)):
        sol = diffrax.diffeqsolve(ready, diffrax.Euler(), 0.0, 1.0, 0.1, jnp.array(1.0))
        np.testing.assert_allclose(sol.ys[-1], (1 + 0.1 * (-1 + 0.5)) ** 10, rtol=1e-14)


def test_freeze_holds_h_as_a_parameter():
    f = lambda t, y, args, h: -y + h * y  # noqa: E731
    frozen = StepTerm(f).freeze(0.5)
    sol = diffrax.diffeqsolve(frozen, diffrax.Euler(), 0.0, 1.0, 0.1, jnp.array(1.0))
    np.testing.assert_allclose(sol.ys[-1], (1 + 0.1 * (-1 + 0.5)) ** 10, rtol=1e-14)
    sol = diffrax.diffeqsolve(
        StepTerm(f), StepAware(diffrax.Euler()), 0.0, 1.0, 0.1, jnp.array(1.0)
    )
    np.testing.assert_allclose(sol.ys[-1], (1 + 0.1 * (-1 + 0.1)) ** 10, rtol=1e-14)


@pytest.mark.parametrize("signed, expected_h", [(False, 0.5), (True, -0.5)])
def test_reverse_time_h_is_positive_unless_signed(signed, expected_h):
    f = lambda t, y, args, h: -y + h * y  # noqa: E731
    sol = diffrax.diffeqsolve(
        StepTerm(f), StepAware(diffrax.Euler(), signed=signed), 1.0, 0.0, -0.5, jnp.array(1.0)
    )
    # Euler backwards: y_{n+1} = y_n - 0.5·(-1 + h)·y_n.
    np.testing.assert_allclose(sol.ys[-1], (1 - 0.5 * (-1 + expected_h)) ** 2, rtol=1e-14)


def _solve(dt0, rtol, atol, y0, args, controller="pid"):
    term = StepTerm(lambda t, y, a, h: -a * y + h * jnp.sin(y))
    ctrl = (
        diffrax.PIDController(rtol=rtol, atol=atol)
        if controller == "pid"
        else diffrax.ConstantStepSize()
    )
    sol = diffrax.diffeqsolve(
        term,
        StepAware(diffrax.Tsit5()),
        0.0,
        2.0,
        dt0,
        y0,
        args,
        stepsize_controller=ctrl,
        max_steps=4096,
    )
    return sol.ys[-1]


def test_jit_and_vmap_over_dt0_rtol_atol_y0_args():
    # Adaptive steps under vmap match single solves to round-off amplified by the controller:
    # the error estimate is a difference of nearly equal numbers, so batched (SIMD) arithmetic
    # moves it by ~1e-6 relative and the chosen steps by ~1e-7 (bare diffrax does the same).
    batched = jax.jit(jax.vmap(_solve))
    n = 5
    out = batched(
        jnp.linspace(0.01, 0.2, n),
        jnp.logspace(-8, -3, n),
        jnp.logspace(-9, -4, n),
        jnp.linspace(0.5, 1.5, n),
        jnp.linspace(0.5, 2.0, n),
    )
    for i in range(n):
        single = _solve(
            jnp.linspace(0.01, 0.2, n)[i],
            jnp.logspace(-8, -3, n)[i],
            jnp.logspace(-9, -4, n)[i],
            jnp.linspace(0.5, 1.5, n)[i],
            jnp.linspace(0.5, 2.0, n)[i],
        )
        np.testing.assert_allclose(out[i], single, rtol=1e-7)
    fixed = jax.vmap(lambda dt: _solve(dt, 1.0, 1.0, 1.0, 1.0, controller="constant"))
    dts = jnp.array([0.1, 0.05, 0.025])
    for dt, y in zip(dts, fixed(dts), strict=True):
        np.testing.assert_allclose(
            y, _solve(dt, 1.0, 1.0, 1.0, 1.0, controller="constant"), rtol=1e-13
        )


def test_grad_at_fixed_steps_matches_the_closed_form():
    # Euler on y' = a·y + h·y: y_N = (1 + h(a + h))^N, so dy_N/da = N·h·(1 + h(a + h))^(N-1).
    h, n = 0.1, 10

    def final(a):
        term = StepTerm(lambda t, y, args, hh: args * y + hh * y)
        sol = diffrax.diffeqsolve(
            term,
            StepAware(diffrax.Euler()),
            0.0,
            1.0,
            h,
            jnp.array(1.0),
            a,
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
        )
        return sol.ys[-1]

    a = 0.3
    np.testing.assert_allclose(jax.grad(final)(a), n * h * (1 + h * (a + h)) ** (n - 1), rtol=1e-12)


def test_saveat_ts_steps_and_dense_output():
    term = StepTerm(lambda t, y, args, h: -y + h * y)
    kw = dict(
        t0=0.0,
        t1=1.0,
        dt0=None,
        y0=jnp.array(1.0),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
    )
    dense = diffrax.diffeqsolve(
        term, StepAware(diffrax.Tsit5()), **kw, saveat=diffrax.SaveAt(dense=True, steps=True)
    )
    n = int(dense.stats["num_accepted_steps"])
    for t, y in zip(dense.ts[:n], dense.ys[:n], strict=True):
        np.testing.assert_allclose(dense.evaluate(t), y, rtol=1e-12)
    at_ts = diffrax.diffeqsolve(
        term,
        StepAware(diffrax.Tsit5()),
        **kw,
        saveat=diffrax.SaveAt(ts=jnp.array([0.25, 0.5, 1.0])),
    )
    np.testing.assert_allclose(at_ts.ys[-1], dense.ys[n - 1], rtol=1e-14)
    np.testing.assert_allclose(
        at_ts.ys[:2], jax.vmap(dense.evaluate)(jnp.array([0.25, 0.5])), rtol=1e-12
    )


def test_wrapper_forwards_what_the_inner_solver_exposes():
    inner = diffrax.Kvaerno5()
    wrapped = StepAware(inner)
    assert isinstance(wrapped, diffrax.AbstractImplicitSolver)
    assert isinstance(wrapped, diffrax.AbstractAdaptiveSolver)
    assert not isinstance(StepAware(diffrax.Euler()), diffrax.AbstractAdaptiveSolver)
    assert wrapped.root_finder is inner.root_finder
    assert wrapped.order(None) == 5 and wrapped.tableau is inner.tableau
    assert wrapped.interpolation_cls is inner.interpolation_cls
    assert eqx.tree_equal(StepAware(diffrax.Tsit5()), StepAware(diffrax.Tsit5()))


def test_other_adjoints_work_through_the_wrapper():
    term = StepTerm(lambda t, y, a, h: -a * y + h * y)

    def final(a, adjoint):
        sol = diffrax.diffeqsolve(
            term, StepAware(diffrax.Heun()), 0.0, 1.0, 0.1, jnp.array(1.0), a, adjoint=adjoint
        )
        return sol.ys[-1]

    a = 0.7
    direct = jax.grad(final)(a, diffrax.DirectAdjoint())
    recursive = jax.grad(final)(a, diffrax.RecursiveCheckpointAdjoint())
    np.testing.assert_allclose(direct, recursive, rtol=1e-13)
