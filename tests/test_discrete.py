"""Maps <-> step-dependent ODEs, modified equations, and map/ODE comparison (analysis.discrete)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fit_slope

from analysis import InvalidArgument, discrete, systems


def logistic_map(mu):
    return lambda y: mu * y * (1 - y)


def henon_map(a, b):
    return lambda y: jnp.stack([1 - a * y[0] ** 2 + y[1], b * y[0]])


# mu = 3.2: attracting 2-cycle. Hénon a = 1.0, b = 0.3: attracting 4-cycle (the period-doubling
# cascade at b = 0.3 reaches period 8 only near a = 1.03). Neither amplifies round-off.
# The one test of "Euler on a lifted map iterates the map": y + h·(Φ(y) - y)/h = Φ(y) at the
# step it was lifted at (h_train = 0.25) and at any other h (the orbit replayed on n·h).
@pytest.mark.parametrize("h", [0.25, 1.0])
@pytest.mark.parametrize(
    "name, params, phi",
    [
        ("logistic", dict(mu=3.2), logistic_map(3.2)),
        ("henon", dict(a=1.0, b=0.3), henon_map(1.0, 0.3)),
    ],
)
def test_lift_then_euler_reproduces_the_map_to_round_off(name, params, phi, h):
    lifted = discrete.lift(name, 0.25, **params)
    euler = discrete.iterate(discrete.to_map(lifted, "Euler", h), lifted.y0, 100)
    exact = discrete.iterate(phi, lifted.y0, 100)
    assert euler.shape == (101, *jnp.shape(lifted.y0))
    np.testing.assert_allclose(euler, exact, rtol=0, atol=1e-13)
    # A callable lifts the same way, and Heun iterates a different map: (y + Φ(Φ(y)))/2.
    heun = discrete.to_map(discrete.lift(phi, 0.25, lifted.y0), "Heun", h)
    np.testing.assert_allclose(heun(lifted.y0), (lifted.y0 + phi(phi(lifted.y0))) / 2, atol=1e-15)


def test_iterate_vmaps_over_h_and_y0():
    sys = systems.get("logistic", r=1.0)
    hs = jnp.array([0.5, 1.0, 2.0])
    orbits = jax.vmap(lambda h: discrete.iterate(discrete.to_map(sys, "Euler", h), sys.y0, 3))(hs)
    y = np.full(3, 0.1)
    for n in range(1, 4):
        y = y + np.asarray(hs) * y * (1 - y)
        np.testing.assert_allclose(orbits[:, n], y, rtol=1e-14)
    phi = discrete.to_map(sys, "Heun", 0.3)
    starts = jnp.linspace(0.0, 1.0, 4)
    batched = jax.vmap(lambda y0: discrete.iterate(phi, y0, 5))(starts)
    np.testing.assert_allclose(batched[2], discrete.iterate(phi, starts[2], 5), rtol=1e-15)


@pytest.mark.parametrize("solver", ["Euler", "Heun", "Tsit5"])
def test_continuous_limit_of_a_map_family_is_the_field(solver):
    sys = systems.get("lotka_volterra")
    ode = discrete.continuous_limit(lambda h: discrete.to_map(sys, solver, h), sys.y0)
    ys = jnp.array([[1.0, 1.0], [0.5, 2.0], [3.0, 0.2]])
    got = jax.vmap(lambda y: ode.limit_field(0.0, y, None))(ys)
    want = jax.vmap(lambda y: sys.limit_field(0.0, y, sys.args))(ys)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)
    assert not ode.h_dependent


def test_euler_modified_equation_terms_are_the_textbook_ones():
    # Logistic f = y(1 - y): f' = 1 - 2y, f'' = -2.
    sys = systems.get("logistic")
    mod = discrete.modified_equation("Euler", sys, order=2)
    y, h = jnp.asarray(0.3), 0.1
    f, fp, fpp = 0.3 * 0.7, 1 - 0.6, -2.0
    f2 = -0.5 * fp * f
    f3 = fpp * f * f / 12 + fp * fp * f / 3
    np.testing.assert_allclose(mod.vector_field(0.0, y, sys.args, h), f + h * f2 + h**2 * f3)
    np.testing.assert_allclose(mod.limit_field(0.0, y, sys.args), f, rtol=1e-15)


def test_modified_equation_of_a_modifying_integrator_is_the_base_field():
    # Euler on f + (h/2)f'f is second order for f: its modified equation has no h term.
    base = systems.get("logistic")
    mod = discrete.modified_equation("Euler", systems.get("modified_euler", base=base), order=1)
    y = jnp.asarray(0.3)
    got = mod.vector_field(0.0, y, base.args, 0.2)
    np.testing.assert_allclose(got, base.limit_field(0.0, y, base.args), rtol=1e-14)


def test_euler_modified_equation_defect_orders():
    # Nonlinear scalar field (logistic), one step from y = 0.1; slopes 2, 3, 4 for 0, 1, 2 terms.
    hs = np.geomspace(0.005, 0.1, 6)
    df = discrete.modified_equation_defect("Euler", "logistic", (0, 1, 2), hs, y=0.1)
    assert (df["status"] == "ok").all()
    for order, expected in ((0, 2), (1, 3), (2, 4)):
        g = df[df["order"] == order]
        assert abs(fit_slope(g["h"], g["defect"]) - expected) < 0.2


@pytest.mark.parametrize(
    "system, solver, slopes",
    [
        # Non-autonomous, started at t0 = 0.3: the time derivative enters every term.
        (systems.get("prothero_robinson", stiffness=2.0).with_(t0=0.3), "Euler", (2, 3, 4)),
        # Step-dependent f + h·sin(y): Heun is only first order on it, so f₂ ≠ 0 now.
        (systems.get("perturbed", base="logistic", q=1), "Heun", (2, 3, 4)),
    ],
)
def test_modified_equation_for_non_autonomous_and_step_dependent_fields(system, solver, slopes):
    hs = np.geomspace(0.005, 0.05, 4)
    df = discrete.modified_equation_defect(solver, system, (0, 1, 2), hs, y=0.5)
    for order, expected in enumerate(slopes):
        g = df[df["order"] == order]
        assert abs(fit_slope(g["h"], g["defect"]) - expected) < 0.2, order


def test_compare_euler_map_with_its_ode():
    sys = systems.get("logistic")
    h = 0.1
    df = discrete.compare(sys, discrete.to_map(sys, "Euler", h), h, 5.0, threshold=1e-3)
    assert len(df) == 51 and (df["status"] == "ok").all()
    np.testing.assert_allclose(df["t"], h * np.arange(51), rtol=1e-14)
    np.testing.assert_allclose(df["y_ode_0"], jax.vmap(sys.exact)(df["t"].to_numpy()), atol=1e-10)
    # One Euler step from the exact start: local error h²/2·y''(0) + O(h³); y'' = f'f.
    np.testing.assert_allclose(df["error"][1], h**2 / 2 * 0.8 * 0.09, rtol=0.1)
    first = df["t"][df["error"] > 1e-3].min()
    assert (df["time_to_threshold"] == first).all()
    np.testing.assert_allclose(
        df["divergence_rate"][10], np.log(df["error"][10] / df["error"][1]) / 0.9, rtol=1e-12
    )


def test_compare_reports_a_blown_up_map_as_rows():
    sys = systems.get("logistic")
    df = discrete.compare(sys, lambda y: y * 1e200, 0.5, 3.0)
    assert df["status"].iloc[0] == "ok" and (df["status"].iloc[2:] == "nonfinite").all()
    assert np.isnan(df["error"].iloc[-1])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: discrete.to_map("logistic", "Euler", -0.1), "h=-0.1"),
        (lambda: discrete.iterate(lambda y: y, 0.0, 2.5), "n=2.5"),
        (lambda: discrete.modified_equation("ImplicitEuler", "logistic", 1), "solver="),
        (lambda: discrete.modified_equation("Euler", "logistic", 7), "order=7"),
        (lambda: discrete.modified_equation_defect("Euler", "logistic", 1, [0.1, 0.0]), "hs="),
        (lambda: discrete.compare("logistic", lambda y: y, 0.1, 0.01), "horizon=0.01"),
        (lambda: discrete.continuous_limit(3.0), "family=3.0"),
        (lambda: discrete.lift(3.0), "phi=3.0"),
    ],
)
def test_bad_input_is_rejected_before_compiling(call, name):
    with pytest.raises(InvalidArgument, match=name):
        call()
