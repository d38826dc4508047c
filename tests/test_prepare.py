"""prepare: the parts of a solve, checked against stability polynomials and hand-written steps."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import InvalidArgument, StepAware, controller
from analysis.prepare import prepare
from analysis.stepdep import StaleFSAL
from analysis.systems import System


def _damped():
    # y' = -(1 + h) y: Euler with step h multiplies y by 1 - h(1 + h) per step.
    return System(name="damped", vector_field=lambda t, y, args, h: -(1.0 + h) * y, y0=1.0)


def test_constant_steps_give_the_stability_polynomial_power():
    # Heun on y' = -y at h = 0.1: y_N = R(-0.1)^10 with R(z) = 1 + z + z²/2.
    sol = prepare("linear", "Heun").solve(dt0=0.1)
    assert float(sol.ys[-1]) == pytest.approx((1 - 0.1 + 0.005) ** 10, rel=1e-14)


def test_a_field_that_reads_h_is_solved_stepaware_and_sees_each_step():
    prepared = prepare(_damped(), "Euler")
    assert isinstance(prepared.solver, StepAware) and prepared.fixed
    y1 = float(prepared.solve(dt0=0.25).ys[-1])
    assert y1 == pytest.approx((1 - 0.25 * 1.25) ** 4, rel=1e-14)


def test_an_h_free_field_gets_the_bare_solver():
    assert isinstance(prepare("linear", "Tsit5").solver, diffrax.Tsit5)


def test_the_wrapper_is_the_callers_choice():
    prepared = prepare(_damped(), "Tsit5", wrapper=StaleFSAL)
    assert type(prepared.solver) is StaleFSAL


def test_implicit_solvers_get_fixed_newton_tolerances_at_constant_steps():
    root = prepare("linear", "ImplicitEuler").solver.root_finder
    assert type(root).__name__ == "StateScaledNewton"
    # Implicit Euler on y' = -y: y_N = (1 + h)^-N.
    y = float(prepare("linear", "ImplicitEuler").solve(dt0=0.125).ys[-1])
    assert y == pytest.approx(1.125**-8, rel=1e-9)


def test_step_is_the_one_step_map_and_differentiates():
    prepared = prepare("linear", "Heun")
    y1, ok = prepared.step(jnp.asarray(2.0), 0.5)
    assert float(y1) == 2.0 * 0.625 and bool(ok)
    # dΦ/dy = R(z) and dΦ/dh at y = 1: R'(z)·λ with λ = -1, z = -h: -(1 + z) = -0.5.
    assert float(jax.jacfwd(lambda y: prepared.step(y, 0.5)[0])(1.0)) == 0.625
    assert float(jax.jacfwd(lambda h: prepared.step(jnp.asarray(1.0), h)[0])(0.5)) == -0.5


def test_step_under_vmap_over_h_equals_the_polynomial():
    h = jnp.linspace(0.1, 2.5, 7)
    y1, ok = jax.vmap(lambda h: prepare("linear", "Euler").step(jnp.asarray(1.0), h))(h)
    np.testing.assert_allclose(y1, 1 - h, rtol=1e-15)
    assert bool(ok.all())


def test_a_preset_controller_meets_its_tolerance():
    sol = prepare("linear", "Tsit5", controller="PI34", rtol=1e-10, atol=1e-12).solve()
    assert abs(float(sol.ys[-1]) - np.exp(-1)) < 1e-8
    assert not prepare("linear", "Tsit5", controller="PI34", rtol=1e-6).fixed


def test_step_logging_records_every_attempt():
    prepared = prepare("linear", "Tsit5", controller="PI34", rtol=1e-6, log_steps=64)
    sol = prepared.solve(saveat=diffrax.SaveAt(t1=True, controller_state=True))
    log = sol.controller_state[1]
    assert int(log["count"]) == int(sol.stats["num_steps"])


def test_a_controller_object_is_used_as_given():
    ctrl = diffrax.PIDController(rtol=1e-6, atol=1e-6)
    assert prepare("linear", "Tsit5", controller=ctrl).controller is ctrl


def test_tolerances_pass_through_jit_and_vmap():
    def final(rtol):
        return prepare("linear", "Tsit5", controller="I", rtol=rtol).solve().ys[-1]

    out = jax.jit(jax.vmap(final))(jnp.array([1e-4, 1e-8]))
    errors = np.abs(np.asarray(out) - np.exp(-1))
    assert errors[1] < errors[0] < 1e-3


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(rtol=1e-6), "rtol=1e-06 is invalid at constant steps"),
        (dict(controller="PI34"), "rtol=None is invalid with controller='PI34'"),
        (dict(controller="PI99", rtol=1e-6), "PI99"),
        (dict(controller=3), "controller=3 is invalid"),
        (
            dict(controller=diffrax.PIDController(rtol=1e-6, atol=1e-6), rtol=1e-3),
            "with a controller object",
        ),
        (dict(log_steps=10), "log_steps=10 is invalid at constant steps"),
    ],
)
def test_bad_step_control_is_refused_by_name(kwargs, words):
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")):
        prepare("linear", "Tsit5", **kwargs)


def test_constant_steps_need_dt0():
    with pytest.raises(InvalidArgument, match="dt0=None is invalid at constant steps"):
        prepare("linear", "Euler").solve()


def test_presets_are_the_controller_modules():
    assert set(controller.PRESETS) >= {"I", "PI34", "H211b"}


def _host_callbacks(f, *xs) -> bool:
    """Whether the compiled program of f calls the host (jax then keeps it out of its
    persistent compilation cache)."""
    return "callback" in jax.jit(f).lower(*xs).as_text()


@pytest.mark.parametrize(
    "solver, kwargs",
    [
        ("Tsit5", {}),
        ("Kvaerno3", {}),
        ("Tsit5", dict(controller="PI34", rtol=1e-6)),
        ("Kvaerno5", dict(controller="H211b", rtol=1e-6, log_steps=8)),
    ],
)
def test_a_jitted_solve_with_a_traced_step_and_span_calls_no_host(solver, kwargs):
    prepared = prepare("van_der_pol", solver, **kwargs)
    assert not _host_callbacks(lambda dt0, t1: prepared.solve(dt0, t1=t1).ys, 0.1, 2.0)

    # diffeqsolve given the traced step checks it against t1 - t0 through a host callback
    def direct(dt0, t1):
        system = prepared.system
        return diffrax.diffeqsolve(
            prepared.term,
            prepared.solver,
            0.0,
            t1,
            dt0,
            system.y0,
            system.args,
            stepsize_controller=prepared.controller,
            throw=False,
        ).ys

    assert _host_callbacks(direct, 0.1, 2.0)


@pytest.mark.parametrize(
    "system, solver, kwargs, t0, t1, dt0",
    [
        ("van_der_pol", "Heun", {}, 0.0, 3.0, 0.1),
        ("van_der_pol", "Kvaerno3", {}, 0.0, 3.0, 0.07),
        ("van_der_pol", "Tsit5", dict(controller="PI34", rtol=1e-7), 0.0, 3.0, 0.01),
        ("prothero_robinson", "Kvaerno5", dict(controller="PI34", rtol=1e-6), 0.0, 2.0, 1e-3),
        ("van_der_pol", "Tsit5", dict(controller="I", rtol=1e-6), 3.0, 0.0, -0.01),
    ],
)
def test_the_step_handed_to_the_controller_gives_diffeqsolves_solve(
    system, solver, kwargs, t0, t1, dt0
):
    """The same steps, states and counts as diffeqsolve given dt0 (an implicit solver's Newton
    tolerances still come from an adaptive controller), forwards and in reverse time."""
    prepared = prepare(system, solver, **kwargs)
    saveat = diffrax.SaveAt(t1=True, steps=True)
    ours = prepared.solve(dt0, t0=t0, t1=t1, saveat=saveat)
    theirs = diffrax.diffeqsolve(
        prepared.term,
        prepared.solver,
        t0,
        t1,
        dt0,
        prepared.system.y0,
        prepared.system.args,
        stepsize_controller=prepared.controller,
        saveat=saveat,
        max_steps=4096,
        throw=False,
    )
    assert ours.result == theirs.result == diffrax.RESULTS.successful
    assert {k: int(v) for k, v in ours.stats.items()} == {
        k: int(v) for k, v in theirs.stats.items()
    }
    np.testing.assert_array_equal(ours.ts, theirs.ts)
    np.testing.assert_array_equal(ours.ys, theirs.ys)


@pytest.mark.parametrize("dt0", [-0.1, 0.0, float("nan")])
def test_a_concrete_step_against_the_direction_is_refused(dt0):
    with pytest.raises(InvalidArgument, match="dt0="):
        prepare("linear", "Euler").solve(dt0)
    with pytest.raises(InvalidArgument, match="dt0="):
        prepare("linear", "Tsit5", controller="PI34", rtol=1e-6).solve(dt0)
