"""The one-step map Φ_h and the stability tools built on it."""

import re

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import EXPLICIT_RK
from numpy.polynomial import polynomial as P

from analysis import InvalidArgument, solvers, stability, systems
from analysis.systems import System


def test_euler_map_of_the_logistic_equation_is_the_textbook_formula():
    phi = stability.one_step_map(systems.get("logistic"), "Euler", 0.7)
    y = jnp.linspace(-0.5, 1.5, 7)
    np.testing.assert_allclose(jax.vmap(phi)(y), y + 0.7 * y * (1 - y), rtol=1e-15)


def test_map_is_jittable_vmappable_over_h_and_differentiable():
    sys = systems.get("logistic")
    hs = jnp.array([0.1, 0.5, 2.0])
    out = jax.jit(jax.vmap(lambda h: stability.one_step_map(sys, "Heun", h)(jnp.asarray(0.3))))(hs)
    for h, y in zip(hs, out, strict=True):
        k1 = 0.3 * 0.7
        k2 = (0.3 + h * k1) * (1 - 0.3 - h * k1)
        np.testing.assert_allclose(y, 0.3 + h / 2 * (k1 + k2), rtol=1e-14)
    # Φ_h'(y*) at the equilibrium y* = 1 of Euler: 1 + h·f'(1) = 1 - h.
    phi = stability.one_step_map(sys, "Euler", 0.4)
    np.testing.assert_allclose(jax.jacfwd(phi)(jnp.asarray(1.0)), 0.6, rtol=1e-15)


@pytest.mark.parametrize("name", EXPLICIT_RK + ("Kvaerno5", "ImplicitEuler"))
def test_map_of_linear_decay_is_the_stability_function(name):
    # On y' = -y, Φ_h(y) = R(-h)·y with R the solver's stability function; the exact flow is e^-h.
    phi = stability.one_step_map(systems.get("linear"), name, 0.01)
    order = {"Euler": 1, "ImplicitEuler": 1, "Heun": 2, "Midpoint": 2, "Ralston": 2}.get(name, 3)
    np.testing.assert_allclose(phi(jnp.asarray(1.0)), np.exp(-0.01), atol=0.01 ** (order + 1))


# ------------------------------------------------------------------------ linear stability


class RK4(diffrax.AbstractERK):
    """The classical fourth-order Runge–Kutta method (not in diffrax), for textbook intervals."""

    tableau = diffrax.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    )
    interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


def stability_polynomial(name):
    """Coefficients c_k = bᵀA^{k-1}1 of R(z) = Σ c_k z^k for an explicit RK tableau."""
    tab = solvers.info(name).tableau
    s = len(tab.b_sol)
    a = np.zeros((s, s))
    for i, row in enumerate(tab.a_lower):
        a[i + 1, : i + 1] = row
    coef, v = [1.0], np.ones(s)
    for _ in range(s):
        coef.append(tab.b_sol @ v)
        v = a @ v
    return np.array(coef)


def first_positive_root(coefficients):
    """Smallest positive real root of a real polynomial where its sign actually changes."""
    roots = P.polyroots(coefficients)
    roots = np.sort(roots[(np.abs(roots.imag) < 1e-9) & (roots.real > 1e-6)].real)
    for r in roots:
        if np.sign(P.polyval(r * 0.999, coefficients)) != np.sign(
            P.polyval(r * 1.001, coefficients)
        ):
            return r
    return np.inf


def test_euler_intervals_are_two_and_zero():
    assert abs(stability.real_interval("Euler") - 2.0) < 1e-6
    assert stability.imag_interval("Euler") == 0.0


@pytest.mark.parametrize("name", EXPLICIT_RK)
def test_amplification_is_the_tableau_stability_function(name):
    rng = np.random.default_rng(0)
    z = rng.uniform(-6, 2, 200) + 1j * rng.uniform(-5, 5, 200)
    stepped = stability.amplification(name, z)
    formula = stability.tableau_amplification(name, z)
    np.testing.assert_array_less(np.abs(stepped - formula), 1e-12 * np.maximum(1, np.abs(formula)))


def test_amplification_of_a_user_solver_and_implicit_euler():
    z = np.array([-3.0, -0.5 + 2j, 2.5j])
    rk4 = 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    np.testing.assert_allclose(stability.amplification(RK4(), z), rk4, rtol=1e-14)
    np.testing.assert_allclose(stability.amplification("ImplicitEuler", z), 1 / (1 - z), rtol=1e-11)
    halves = (1 + z / 2) ** 2  # HalfSolver returns two half steps
    np.testing.assert_allclose(stability.amplification("HalfSolver(Euler)", z), halves, rtol=1e-14)


def test_classical_rk4_intervals_are_the_textbook_values():
    assert abs(stability.real_interval(RK4()) - 2.785293563405282) < 1e-6
    assert abs(stability.imag_interval(RK4()) - 2 * np.sqrt(2)) < 1e-6


@pytest.mark.parametrize("name", ["Heun", "Bosh3", "Tsit5", "Dopri5", "Dopri8"])
def test_intervals_are_the_roots_of_the_stability_polynomial(name):
    c = stability_polynomial(name)
    k = np.arange(len(c))
    # Real axis: |R(-x)| = 1 where R(-x) = ±1; imaginary axis: |R(iy)|² - 1 = 0.
    real = min(
        first_positive_root(P.polysub(c * (-1.0) ** k, [1.0])),
        first_positive_root(P.polyadd(c * (-1.0) ** k, [1.0])),
    )
    ci = c * 1j**k
    e = P.polysub(P.polymul(ci, np.conj(ci)).real, [1.0])
    e[np.abs(e) < 1e-13] = 0.0  # exact cancellations of the low orders
    lowest = e[np.flatnonzero(e)[0]]
    imag = 0.0 if lowest > 0 else first_positive_root(e)
    assert abs(stability.real_interval(name) - real) < 1e-6
    assert abs(stability.imag_interval(name) - imag) < 1e-6
    if name == "Heun":
        assert (real, imag) == (2.0, 0.0)  # 1 + z + z²/2: |R(iy)|² = 1 + y⁴/4
    if name == "Bosh3":
        assert abs(imag - np.sqrt(3)) < 1e-9  # every 3-stage third-order method


def test_effective_amplification_of_step_dependent_linear_fields():
    z = np.array([-1.5, -0.3 + 1.2j, 0.8j, -2.0 - 0.5j])
    # The catalog's modifying integrator f + (h/2)f'f of y' = -a·y, evaluated at a = -λ (complex).
    me = systems.get("modified_euler", base="linear")
    field = lambda y, lam, h: me.vector_field(0.0, y, -lam, h)  # noqa: E731
    for h in (1.0, 0.25):
        r = stability.amplification("Euler", z, field=field, h=h)
        np.testing.assert_allclose(r, 1 + z + z**2 / 2, rtol=1e-13)
    np.testing.assert_allclose(r, stability.amplification("Heun", z), rtol=1e-13)
    assert abs(stability.real_interval("Euler", field=field) - 2.0) < 1e-6
    # λy + h·μ·y: Euler gives 1 + hλ + h²μ, which depends on h apart from z.
    shifted = lambda y, lam, h: lam * y + h * 0.8 * y  # noqa: E731
    r = stability.amplification("Euler", z, field=shifted, h=0.5)
    np.testing.assert_allclose(r, 1 + z + 0.25 * 0.8, rtol=1e-14)


# ----------------------------------------------------------------------------- fixed points


def test_euler_on_the_logistic_equation_has_only_the_true_fixed_points():
    df = stability.fixed_point_branches("logistic", "Euler", [0.5, 1.9, 2.5, 3.5], (-2, 3))
    for h, group in df.groupby("h"):
        assert group.y.tolist() == [0.0, 1.0]
        assert not group.spurious.any()
        # Φ_h'(y) = 1 + h(1 - 2y): 1 + h at 0 and 1 - h at 1.
        np.testing.assert_allclose(group.max_abs_multiplier, [1 + h, abs(1 - h)], rtol=1e-14)
        assert group.stable.tolist() == [False, h < 2]


def test_euler_on_the_logistic_equation_has_a_stable_two_cycle_just_above_h_2():
    # Euler's map y + h·y(1-y) is the logistic map with μ = 1 + h in x = h·y/(1 + h).
    below = stability.fixed_points("logistic", "Euler", 1.95, (-1, 3), period=2)
    assert (below.minimal_period == 1).all()
    h, mu = 2.05, 3.05
    above = stability.fixed_points("logistic", "Euler", h, (-1, 3), period=2)
    cycle = above[above.minimal_period == 2]
    x = (mu + 1 + np.array([-1, 1]) * np.sqrt((mu + 1) * (mu - 3))) / (2 * mu)
    np.testing.assert_allclose(cycle.y, (1 + h) / h * x, rtol=1e-12)
    assert cycle.stable.all() and cycle.spurious.all()
    np.testing.assert_allclose(cycle.max_abs_multiplier, 4 + 2 * mu - mu**2, rtol=1e-10)
    orbit = stability.orbit_diagram("logistic", "Euler", [h], [0.3], n_transient=2000, n_keep=4)
    np.testing.assert_allclose(np.sort(orbit.y.to_numpy())[[0, -1]], cycle.y, rtol=1e-8)
    assert (orbit.lyapunov < 0).all() and not orbit.escaped.any()


@pytest.mark.parametrize(
    "name, closed_form",
    [
        # Heun: Φ(y) = y ⇔ y(1-y)·[2 + h(1-2y) - h²y(1-y)] = 0; spurious for h > 2.
        ("Heun", lambda h: ((h + 2) + np.array([-1, 1]) * np.sqrt(h * h - 4)) / (2 * h)),
        # Midpoint: 4 + 2h(1-2y) - h²y(1-y) = 0 ⇔ y = 2/h or 1 + 2/h, for every h.
        ("Midpoint", lambda h: np.array([2 / h, 1 + 2 / h])),
    ],
)
def test_spurious_fixed_points_are_fixed_and_flagged(name, closed_form):
    sys = systems.get("logistic")
    for h in (2.5, 3.0, 3.6):
        df = stability.fixed_points(sys, name, h, (-1, 3))
        spurious = df[df.spurious]
        np.testing.assert_allclose(spurious.y, closed_form(h), rtol=1e-12)
        phi = stability.one_step_map(sys, name, h)
        ys = jnp.asarray(spurious.y.to_numpy())
        np.testing.assert_array_less(np.abs(jax.jit(jax.vmap(phi))(ys) - ys), 1e-10)
        np.testing.assert_allclose(df[~df.spurious].y, [0.0, 1.0], rtol=0, atol=1e-14)
    none = stability.fixed_points(sys, "Heun", 1.5, (-1, 3))
    assert not none.spurious.any()


def test_fixed_points_of_a_two_dimensional_map_with_multipliers():
    # Euler iterates the lifted Hénon map exactly: fixed points x = (-(1-b) ± √((1-b)²+4a))/2a.
    a, b = 1.4, 0.3
    df = stability.fixed_points(systems.get("lifted_map", map="henon"), "Euler", 0.7, (-3, 3))
    x = (-(1 - b) + np.array([-1, 1]) * np.sqrt((1 - b) ** 2 + 4 * a)) / (2 * a)
    np.testing.assert_allclose(df.y0, x, rtol=1e-12)
    np.testing.assert_allclose(df.y1, b * x, rtol=1e-12)
    for row in df.itertuples():
        jac = np.array([[-2 * a * row.y0, 1.0], [b, 0.0]])
        mult = np.linalg.eigvals(jac)
        np.testing.assert_allclose(row.max_abs_multiplier, np.abs(mult).max(), rtol=1e-12)
        np.testing.assert_allclose(abs(row.multiplier_0 * row.multiplier_1), b, rtol=1e-12)
    assert not df.spurious.any() and not df.stable.any()


# ---------------------------------------------------------------- orbits and largest steps


def test_orbit_diagram_records_escapes_and_lyapunov_exponents():
    df = stability.orbit_diagram("logistic", "Euler", [0.5, 1.5, 3.2], [0.2, 0.7], n_keep=5)
    assert list(df.columns) == [
        "system",
        "solver",
        "h",
        "start",
        "iterate",
        "y",
        "escaped",
        "lyapunov",
    ]
    escaped = df[df.h == 3.2]
    assert len(escaped) == 2 and escaped.escaped.all() and escaped.y.isna().all()
    calm = df[df.h < 3]
    assert len(calm) == 2 * 2 * 5 and not calm.escaped.any()
    np.testing.assert_allclose(calm.y, 1.0, rtol=1e-12)
    # At the stable fixed point y = 1 the exponent is log|Φ'(1)| = log|1 - h|.
    np.testing.assert_allclose(calm.lyapunov, np.log(np.abs(1 - calm.h)), rtol=1e-8)


def test_max_stable_step_is_the_interval_over_the_stiffness():
    assert (
        abs(stability.max_stable_step(systems.get("linear", lam=10.0), "Euler", 0.0) - 0.2) < 1e-6
    )
    pr = systems.get("prothero_robinson", stiffness=1e4)
    h = stability.max_stable_step(pr, "Tsit5", 0.0)
    np.testing.assert_allclose(h * 1e4, stability.real_interval("Tsit5"), rtol=2e-6)
    assert stability.max_stable_step(pr, "ImplicitEuler", 0.0) == np.inf
    # Heun at the logistic equilibrium y* = 1 (f'(1) = -1): the real interval, 2.
    assert abs(stability.max_stable_step("logistic", "Heun", 1.0) - 2.0) < 1e-5
    # The unstable equilibrium y* = 0 is never stable.
    assert stability.max_stable_step("logistic", "Heun", 0.0) == 0.0


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: stability.amplification("Eular", [1.0]), "Eular"),
        (lambda: stability.amplification("Euler", [np.nan]), "z="),
        (lambda: stability.amplification("Euler", [1.0], h=0.0), "h=0.0"),
        (lambda: stability.real_interval("Euler", x_max=-1.0), "x_max"),
        (lambda: stability.tableau_amplification("HalfSolver(Euler)", 1.0), "tableau"),
        (lambda: stability.fixed_points("logistic", "Euler", -0.1, (0, 1)), "h=-0.1"),
        (lambda: stability.fixed_points("logistic", "Euler", 0.1, (1, 0)), "bounds"),
        (lambda: stability.fixed_points("logistic", "Euler", "big", (0, 1)), "h='big'"),
        (lambda: stability.fixed_points("harmonic", "Euler", 0.1, [(0, 1)] * 3), "bounds"),
        (lambda: stability.fixed_points("logistic", "Euler", 0.1, (0, 1), period=0), "period"),
        (lambda: stability.fixed_point_branches("logistic", "Heun", [], (0, 1)), "hs"),
        (lambda: stability.orbit_diagram("harmonic", "Euler", [0.1], [0.5]), "y0s"),
        (lambda: stability.orbit_diagram("logistic", "Euler", [0.1], n_keep=0), "n_keep"),
        (lambda: stability.max_stable_step("harmonic", "Euler", 0.0), "y_star"),
        (lambda: stability.max_stable_step("linear", "Euler", 0.0, h_min=1.0, h_max=0.5), "h_min"),
    ],
)
def test_bad_input_is_an_invalid_argument_naming_it(call, needle):
    with pytest.raises(InvalidArgument, match=re.escape(needle)):
        call()


def test_explicit_runge_kutta_maps_of_a_lifted_map_do_not_depend_on_h():
    # f = (Φ(y) - y)/h: each stage's h·k_j = Φ(Y_j) - Y_j, so h cancels from every stage.
    sys = systems.get("lifted_map", map="logistic", mu=3.7)
    y = jnp.linspace(0.05, 0.95, 7)

    def logistic(x):
        return 3.7 * x * (1 - x)

    tsit5 = [jax.vmap(stability.one_step_map(sys, "Tsit5", h))(y) for h in (0.1, 1.0, 3.0)]
    for h, out in zip((0.1, 1.0, 3.0), tsit5, strict=True):
        euler = jax.vmap(stability.one_step_map(sys, "Euler", h))(y)
        np.testing.assert_allclose(euler, logistic(y), rtol=1e-13)
        heun = jax.vmap(stability.one_step_map(sys, "Heun", h))(y)  # (y + Φ(Φ(y)))/2
        np.testing.assert_allclose(heun, (y + logistic(logistic(y))) / 2, rtol=1e-13)
        np.testing.assert_allclose(out, tsit5[0], rtol=1e-13)
    assert not np.allclose(tsit5[0], logistic(y))


def test_branches_and_orbits_are_traced_once_for_all_h():
    traces = []
    base = systems.get("logistic")

    def field(t, y, args, h):
        traces.append(1)  # runs only while jax traces the field
        return base.vector_field(t, y, args, h)

    sys = base.with_(vector_field=field)
    stability.fixed_point_branches(sys, "Heun", np.linspace(0.5, 3.5, 7), (-1, 3))
    stability.orbit_diagram(sys, "Heun", np.linspace(0.5, 3.5, 7), [0.2, 0.6])
    first = len(traces)
    stability.fixed_point_branches(sys, "Heun", np.linspace(0.1, 3.9, 7), (-1, 3))
    stability.orbit_diagram(sys, "Heun", np.linspace(0.1, 3.9, 7), [0.3, 0.9])
    assert first > 0 and len(traces) == first


def test_a_degenerate_fixed_point_is_one_point_and_not_spurious():
    """Euler on y' = -y³: Φ_h(y) = y - h·y³ has the single fixed point 0 with multiplier exactly
    1 for every h (a root of multiplicity 3), where Newton stalls ~eps^(1/3) away from it."""
    cubic = System(name="cubic", vector_field=lambda t, y, a, h: -(y**3), y0=jnp.array(0.5))
    df = stability.fixed_points(cubic, "Euler", 0.5, (-1.0, 1.0))
    assert len(df) == 1
    row = df.iloc[0]
    assert abs(row["y"]) <= row["uncertainty"] < 1e-4 and not row["spurious"]
    np.testing.assert_allclose(row["max_abs_multiplier"], 1.0, atol=1e-8)
