"""Maps <-> step-dependent ODEs, modified equations, and map/ODE comparison (analysis.discrete)."""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import InvalidArgument, discrete, plotting, systems


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
    result = discrete.modified_equation_defect("Euler", "logistic", (0, 1, 2), hs, y=0.1)
    assert (result.rows["status"] == "ok").all()
    slopes = result.slopes.set_index("order")["fitted_slope"]
    for order, expected in ((0, 2), (1, 3), (2, 4)):
        assert abs(slopes[order] - expected) < 0.2


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
    fitted = discrete.modified_equation_defect(solver, system, (0, 1, 2), hs, y=0.5).slopes
    for order, expected in enumerate(slopes):
        assert abs(fitted["fitted_slope"][order] - expected) < 0.2, order


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


# ----------------------------------------------------------------------------------- figures


def test_defects_figure_draws_the_rows_and_the_stored_slopes_without_refitting():
    # Hand-made rows with defect = h^(order+2) exactly, and stored slopes that are NOT their fit:
    # the legend must show the stored ones.
    rows = pd.DataFrame(
        [
            dict(solver="Euler", order=k, h=h, defect=h ** (k + 2), status="ok")
            for k in (0, 1)
            for h in (0.1, 0.05, 0.025)
        ]
    )
    slopes = pd.DataFrame({"solver": "Euler", "order": [0, 1], "fitted_slope": [7.0, 8.0]})
    fig = plotting.defects(discrete.ModifiedDefects(rows=rows, slopes=slopes))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "0 terms (slope 7.00)",
        "1 terms (slope 8.00)",
    ]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0.025, 0.05, 0.1])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.025**3, 0.05**3, 0.1**3])
    plt.close(fig)


def test_drift_and_map_vs_limit_draw_compare_output_of_a_scalar_system():
    sys = systems.get("logistic")
    gap = discrete.compare(sys, discrete.to_map(sys, "Euler", 0.5), 0.5, 5.0, label="Euler")
    fig = plotting.drift(gap)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), np.maximum(gap["error"], 1e-17))
    assert fig.axes[0].get_title() == sys.name
    plt.close(fig)
    _, (left, right) = plt.subplots(1, 2)
    fig = plotting.map_vs_limit(gap, ax=(left, right))
    assert fig is left.figure
    np.testing.assert_array_equal(right.lines[0].get_xdata(), gap["t"])  # y against t
    np.testing.assert_array_equal(right.lines[0].get_ydata(), gap["y_ode_0"])
    np.testing.assert_array_equal(right.collections[0].get_offsets()[:, 1], gap["y_map_0"])
    plt.close(fig)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: plotting.drift(pd.DataFrame({"map": ["m"]})), "lacks columns"),
        (lambda: plotting.map_vs_limit(pd.DataFrame({"t": [0.0]})), "map_vs_limit gap"),
        (lambda: plotting.conjugacy(pd.DataFrame({"h": [1.0]})), "conjugacy input lacks"),
        (lambda: plotting.defects(pd.DataFrame()), "is a ModifiedDefects"),
        (lambda: plotting.conjugacy(pd.DataFrame(), ax=plt.gca()), "conjugacy input lacks"),
    ],
)
def test_discrete_figures_name_what_their_input_lacks(call, needle):
    with pytest.raises(InvalidArgument, match=needle):
        call()
    plt.close("all")
