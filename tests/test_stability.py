"""The one-step map Φ_h and the stability tools built on it."""

import dataclasses
import re

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
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
    np.testing.assert_allclose(np.sort(orbit.component("y").ravel())[[0, -1]], cycle.y, rtol=1e-8)
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
    od = stability.orbit_diagram("logistic", "Euler", [0.5, 1.5, 3.2], [0.2, 0.7], n_keep=5)
    # μ = 1 + h = 4.2 > 4: both starts leave [0, 1] and escape; below, y = 1 attracts.
    assert od.escaped.tolist() == [[False, False], [False, False], [True, True]]
    assert np.isnan(od.ys[2]).all() and np.isnan(od.lyapunov[2]).all()
    np.testing.assert_allclose(od.ys[:2], 1.0, rtol=1e-12)
    df = od.to_frame()
    assert list(df.columns) == [
        "system",
        "solver",
        "h",
        "start",
        "iterate",
        "y",
        "escaped",
        "lyapunov",
        "lyapunov_se",
    ]
    escaped = df[df.h == 3.2]
    assert len(escaped) == 2 and escaped.escaped.all() and escaped.y.isna().all()
    calm = df[df.h < 3]
    assert len(calm) == 2 * 2 * 5 and not calm.escaped.any()
    np.testing.assert_allclose(calm.y, 1.0, rtol=1e-12)
    # At the stable fixed point y = 1 the exponent is log|Φ'(1)| = log|1 - h|.
    np.testing.assert_allclose(calm.lyapunov, np.log(np.abs(1 - calm.h)), rtol=1e-8)


def _euler_logistic_rows(hs, starts, n_transient, n_keep, n_lyapunov, radius=1e6):
    """The tidy rows of Euler on y' = y(1 - y) written out by hand: Φ_h(y) = y + h·y(1 - y), the
    logistic map with μ = 1 + h (x = h·y/(1 + h)), Φ_h'(y) = 1 + h(1 - 2y), so the exponent is
    the mean of log|1 + h(1 - 2y_n)| over n = n_transient, ..., n_transient + L - 1 (L =
    max(n_keep, n_lyapunov), in 20 blocks whose means give the standard error)."""
    length = -(-max(n_keep, n_lyapunov) // 20) * 20
    rows = []
    for h in hs:
        for start, y in enumerate(starts):
            orbit, left = [y], None
            for n in range(1, n_transient + length + 1):
                y = y + h * y * (1 - y)
                orbit.append(y)
                if left is None and not abs(y) <= radius:
                    left = n
            base = {"system": "logistic", "solver": "Euler", "h": h, "start": start}
            if left is not None:
                rows.append(base | {"iterate": left, "y": np.nan, "escaped": True})
                rows[-1] |= {"lyapunov": np.nan, "lyapunov_se": np.nan}
                continue
            logs = np.log(np.abs(1 + h * (1 - 2 * np.array(orbit[n_transient:-1]))))
            blocks = logs.reshape(20, -1).mean(axis=1)
            lyap, se = blocks.mean(), blocks.std(ddof=1) / np.sqrt(20)
            for n in range(n_transient + 1, n_transient + n_keep + 1):
                rows.append(base | {"iterate": n, "y": orbit[n], "escaped": False})
                rows[-1] |= {"lyapunov": lyap, "lyapunov_se": se}
    return pd.DataFrame(rows).astype({"system": "str", "solver": "str"})


def test_orbit_diagram_tidy_rows_are_the_logistic_map_written_out():
    # h = 0.5: the fixed point 1 (μ = 1.5); 2.2: a 2-cycle (μ = 3.2 > 3); 2.8: chaos (μ = 3.8);
    # 3.2: μ = 4.2 > 4, an orbit from (0, 1) escapes; the start 1.3 > 1 escapes at every h here.
    hs, starts = [0.5, 2.2, 2.8, 3.2], [0.2, 0.7, 1.3]
    od = stability.orbit_diagram(
        "logistic", "Euler", hs, starts, n_transient=6, n_keep=5, n_lyapunov=20
    )
    expected = _euler_logistic_rows(hs, starts, 6, 5, 20)
    assert expected.escaped.any() and not expected.escaped.all()
    # The chaotic orbit (exponent ≈ 0.5) grows rounding by about e^(0.5·26) ≈ 4e5 over its 26
    # iterates: the hand-written and compiled maps agree to ~1e-11, not to the last digit.
    pd.testing.assert_frame_equal(od.to_frame(), expected, rtol=1e-9, atol=1e-14)
    # The arrays hold the same: iterates (NaN when escaped), escape iterates, exponents.
    alive = expected[~expected.escaped]
    np.testing.assert_allclose(od.ys[~od.escaped].ravel(), alive.y, rtol=1e-12)
    assert np.isnan(od.ys[od.escaped]).all()
    gone = expected[expected.escaped]
    assert od.escaped_at[od.escaped].tolist() == gone.iterate.tolist()
    assert (od.escaped_at[~od.escaped] == -1).all()


def test_orbit_diagram_two_dimensional_rows_and_tables_round_trip():
    # Euler iterates the lifted Hénon map exactly: (x, y) -> (1 - a·x² + y, b·x).
    a, b = 1.4, 0.3
    starts = [[0.1, 0.1], [2.0, 5.0]]  # the second leaves at once: x = 1 - 5.6 + 5 ... escapes
    od = stability.orbit_diagram(
        systems.get("lifted_map", map="henon"),
        "Euler",
        [0.7],
        starts,
        n_transient=3,
        n_keep=4,
        n_lyapunov=20,
    )
    x = np.array(starts[0])
    orbit = []
    for _ in range(7):
        x = np.array([1 - a * x[0] ** 2 + x[1], b * x[0]])
        orbit.append(x)
    np.testing.assert_allclose(od.ys[0, 0], orbit[3:], rtol=1e-12)
    assert od.components == ("y0", "y1") and od.escaped.tolist() == [[False, True]]
    df = od.to_frame()
    assert list(df.columns[5:7]) == ["y0", "y1"] and len(df) == 4 + 1
    np.testing.assert_allclose(df[["y0", "y1"]].to_numpy()[:4], orbit[3:], rtol=1e-12)
    back = stability.OrbitDiagram.from_tables(od.tables())
    for name in ("h", "y0s", "ys", "escaped_at", "lyapunov", "lyapunov_se"):
        np.testing.assert_array_equal(getattr(back, name), getattr(od, name))
    assert (back.system, back.solver, back.n_transient) == (od.system, od.solver, 3)
    pd.testing.assert_frame_equal(back.to_frame(), df)


def test_orbit_diagram_holds_arrays_of_one_float_per_kept_value():
    n_h, n_s, n_keep = 7, 3, 11
    od = stability.orbit_diagram(
        "logistic",
        "Euler",
        np.linspace(0.5, 3.3, n_h),
        np.linspace(0.1, 0.9, n_s),
        n_keep=n_keep,
        n_lyapunov=20,
    )
    arrays = {
        f.name: getattr(od, f.name)
        for f in dataclasses.fields(od)
        if isinstance(getattr(od, f.name), np.ndarray)
    }
    assert all(a.dtype.kind in "fi" and a.itemsize == 8 for a in arrays.values())
    assert od.ys.shape == (n_h, n_s, n_keep, 1) and od.ys.dtype == np.float64
    # n_h·n_s·n_keep iterates, four numbers per orbit, the grid and the starts: nothing else.
    assert sum(a.size for a in arrays.values()) == n_h * n_s * (n_keep + 3) + n_h + n_s
    with pytest.raises(InvalidArgument, match=r"component='y0'.*\['y'\]"):
        od.component("y0")
    with pytest.raises(InvalidArgument, match="lacks"):
        stability.OrbitDiagram.from_tables({"orbits": od.tables()["orbits"]})


def test_orbit_plots_draw_the_result_as_they_draw_its_tidy_rows():
    from analysis import plotting

    # μ = 1 + h: the fixed point 1 - 1/μ in x, i.e. y = 1, for μ < 3; a 2-cycle at μ = 3.2;
    # chaos at μ = 3.9; escape at μ = 4.5 (the red tick at h = 3.5).
    hs = [1.5, 2.2, 2.9, 3.5]
    od = stability.orbit_diagram("logistic", "Euler", hs, [0.3, 0.6], n_keep=20, n_lyapunov=200)
    figs = [(plotting.orbit_diagram(rows), plotting.lyapunov(rows)) for rows in (od, od.to_frame())]
    (dots, lyap), (dots_df, lyap_df) = figs
    ax, ax_df = dots.axes[0], dots_df.axes[0]
    points = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(points, ax_df.collections[0].get_offsets())
    assert len(points) == 3 * 2 * 20  # the escaped h draws no dots
    np.testing.assert_allclose(points[points[:, 0] == 1.5][:, 1], 1.0, rtol=1e-12)
    assert len(np.unique(points[points[:, 0] == 2.2][:, 1].round(8))) == 2
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [3.5])  # escaped at h = 3.5
    np.testing.assert_array_equal(ax_df.lines[0].get_xdata(), [3.5])
    line, line_df = lyap.axes[0].lines[0], lyap_df.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xydata(), line_df.get_xydata())
    # At h = 1.5 the exponent is ln|Φ'(1)| = ln|1 - h| = ln 0.5; positive at μ = 3.9.
    np.testing.assert_allclose(line.get_ydata()[0], np.log(0.5), rtol=1e-10)
    assert line.get_xdata().tolist() == hs[:3] and line.get_ydata()[2] > 0
    two_d = stability.orbit_diagram(
        systems.get("lifted_map", map="henon"),
        "Euler",
        [0.7],
        [[0.1, 0.1]],
        n_keep=30,
        n_lyapunov=30,
    )
    fig = plotting.orbit_diagram(two_d, x="y0", y="y1")  # the Hénon attractor: y1 = b·x_{n-1}
    assert fig.axes[0].collections[0].get_offsets().shape == (30, 2)
    plotting.close(fig)
    for call, needle in (
        (lambda: plotting.orbit_diagram(od, y="y0"), "y='y0'"),
        (lambda: plotting.orbit_diagram(two_d), "y='y'"),
        (lambda: plotting.lyapunov(od, x="y"), "x='y'"),
        (lambda: plotting.orbit_diagram(od.to_frame().drop(columns="escaped")), "escaped"),
        (lambda: plotting.lyapunov({"h": [1.0]}), "OrbitDiagram or its tidy rows"),
    ):
        with pytest.raises(InvalidArgument, match=re.escape(needle)):
            call()
    for pair in figs:
        for fig in pair:
            plotting.close(fig)


def test_max_stable_step_is_the_interval_over_the_stiffness():
    assert (
        abs(stability.max_stable_step(systems.get("linear", lam=10.0), "Euler", 0.0) - 0.2) < 1e-6
    )
    pr = systems.get("prothero_robinson", stiffness=1e4)
    # Φ_h is affine with DΦ_h = R(-kh); its fixed point for a step from t = 0 starts at the
    # equilibrium 1/k of the field frozen at t = 0 and moves with h (it is followed).
    h = stability.max_stable_step(pr, "Tsit5", 1e-4)
    np.testing.assert_allclose(h * 1e4, stability.real_interval("Tsit5"), rtol=2e-6)
    assert stability.max_stable_step(pr, "ImplicitEuler", 1e-4) == np.inf
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
        (lambda: stability.max_stable_step("linear", "Euler", 0.0, y_tol=0.0), "y_tol"),
        (lambda: stability.orbit_diagram("logistic", "Euler", [0.1], n_lyapunov=0), "n_lyapunov"),
        (lambda: stability.real_interval("Euler", spacing=0.0), "spacing"),
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


# ------------------------------------------------- issue 16: moving fixed points, NaN, R(∞)


def _moving_cubic():
    """y' = -(y - 2h) - (y - 2h)³: the equilibrium y* = 2h moves with h."""
    return System(
        name="moving_cubic",
        vector_field=lambda t, y, a, h: -(y - 2 * h) - (y - 2 * h) ** 3,
        y0=jnp.array(0.0),
    )


def test_max_stable_step_follows_a_fixed_point_that_moves_with_h():
    # By hand, Euler: Φ_h(y) = y + h·f(y, h) is fixed at y* = 2h (f = 0 there), and
    # DΦ_h(y*) = 1 + h·∂f/∂y(y*) = 1 - h·(1 + 3·0²) = 1 - h: stable iff h < 2. (Evaluated at the
    # fixed y = 0 instead, DΦ = 1 - h - 12h³, which gives 0.53.)
    bound = stability.max_stable_step(_moving_cubic(), "Euler", 0.0)
    assert abs(bound - 2.0) < 1e-5 and bound.status == "unstable"
    np.testing.assert_allclose(bound.fixed_point, 4.0, rtol=1e-5)  # y* = 2h at h = 2
    assert "multiplier" in bound.reason


def test_max_stable_step_refuses_a_point_that_is_not_fixed():
    # y = 0.5 is no equilibrium of y(1 - y), nor a fixed point of any Φ_h: no number for it.
    with pytest.raises(InvalidArgument, match="y_star=0.5 is not a fixed point"):
        stability.max_stable_step("logistic", "Euler", 0.5)
    # y = 2·h_min would be the moving model's fixed point only at h = h_min·... not at 0.3.
    with pytest.raises(InvalidArgument, match="y_star"):
        stability.max_stable_step(_moving_cubic(), "Euler", 0.3)


def test_max_stable_step_reports_a_lost_branch():
    """y' = h - y² (Euler): fixed points ±√h, none for h < 0... take y' = 1 - h - y²... here
    y' = (1 - h) - y²·... simpler: y' = 1/4 - h - y·(... ). We use y' = c(h) - y² with
    c(h) = 1 - h: fixed points y* = ±√(1 - h) vanish in a fold at h = 1, where the followed
    stable branch +√(1 - h) (DΦ = 1 - 2h√(1 - h), in (-1, 1) for 0 < h < 1) is lost."""
    fold = System(name="fold", vector_field=lambda t, y, a, h: (1 - h) - y**2, y0=jnp.array(1.0))
    bound = stability.max_stable_step(fold, "Euler", 1.0)
    assert bound.status in ("branch_lost", "unstable")  # at the fold the multiplier is 1 too
    assert abs(bound - 1.0) < 1e-4, float(bound)
    assert np.isfinite(bound)


def test_non_finite_evaluations_end_the_stretch_as_unknown_never_inf():
    # ImplicitEuler is A-stable: without the NaN both ends would be inf.
    nan_beyond_3 = System(
        name="nan_beyond_3",
        vector_field=lambda t, y, a, h: -y + 0.0 * jnp.log(3.0 - h),  # NaN for h > 3
        y0=jnp.array(0.0),
    )
    bound = stability.max_stable_step(nan_beyond_3, "ImplicitEuler", 0.0)
    assert bound.status == "unknown" and abs(bound - 3.0) < 1e-5 and "not finite" in bound.reason
    field = lambda y, lam, h: lam * y + 0.0 * jnp.sqrt(3.0 - jnp.abs(lam))  # noqa: E731
    interval = stability.real_interval("ImplicitEuler", field=field)
    assert interval.status == "unknown" and abs(interval - 3.0) < 1e-5
    assert stability.imag_interval("ImplicitEuler", field=field).status == "unknown"
    # NaN-free, the same solver is stable on the whole range probed: inf, status "stable".
    assert stability.real_interval("ImplicitEuler").status == "stable"


def _exact_tableau(name):
    """The solver's tableau as exact fractions of its float entries."""
    from fractions import Fraction

    if name == "ImplicitEuler":
        return [[Fraction(1)]], [Fraction(1)]
    tab = solvers.info(name).tableau
    b = [Fraction(float(x)) for x in tab.b_sol]
    a = [[Fraction(0)] * len(b) for _ in b]
    for i, row in enumerate(tab.a_lower):
        for j, x in enumerate(row):
            a[i + 1][j] = Fraction(float(x))
    for i, x in enumerate(tab.a_diagonal):
        a[i][i] = Fraction(float(x))
    return a, b


def _exact_r(a, b, z):
    """R(z) = 1 + z·bᵀ(I - zA)⁻¹1 in exact rational arithmetic (A lower triangular)."""
    from fractions import Fraction

    z, x = Fraction(z), []
    for i in range(len(b)):
        x.append((1 + z * sum(a[i][j] * x[j] for j in range(i))) / (1 - z * a[i][i]))
    return 1 + z * sum(bi * xi for bi, xi in zip(b, x, strict=True))


@pytest.mark.parametrize("name", ["ImplicitEuler", "Kvaerno3", "Kvaerno5"])
def test_implicit_amplification_is_finite_and_exact_at_large_z(name):
    a, b = _exact_tableau(name)
    z = -np.logspace(-2, 12, 15)
    exact = np.array([float(_exact_r(a, b, zz)) for zz in z])
    stepped = stability.amplification(name, z)
    assert np.all(np.isfinite(stepped))
    np.testing.assert_allclose(stepped.real, exact, rtol=1e-9, atol=1e-13)
    formula = stability.tableau_amplification(name, z)
    np.testing.assert_allclose(formula.real, exact, rtol=1e-9, atol=1e-14)
    # R(∞) = lim R(z): exact rational R at z = -10³⁰ (within 1e-29 of the limit when bounded).
    r_inf = float(_exact_r(a, b, -(10**30)))
    got = stability.tableau_amplification(name, np.inf)
    np.testing.assert_allclose(got.real, r_inf, atol=1e-13)
    assert abs(got) < 1e-9  # L-stable (Kvaerno3's float tableau: 5.6e-11)
    np.testing.assert_allclose(stability.amplification(name, [-1e12]).real, r_inf, atol=1e-10)


def test_r_at_infinity_of_a_method_that_is_not_l_stable():
    """The trapezoidal rule as a user ESDIRK (explicit first stage; A = [[0, 0], [1/2, 1/2]],
    b = (1/2, 1/2)): R = (1 + z/2)/(1 - z/2), so R(∞) = -1: A-stable, not L-stable. Euler's
    polynomial is unbounded."""
    import optimistix as optx

    class Trapezoid(diffrax.AbstractESDIRK):
        tableau = diffrax.ButcherTableau(
            c=np.array([1.0]),
            b_sol=np.array([0.5, 0.5]),
            b_error=np.array([0.5, -0.5]),
            a_lower=(np.array([0.5]),),
            a_diagonal=np.array([0.0, 0.5]),
            a_predictor=(np.array([1.0]),),
        )
        interpolation_cls = diffrax.LocalLinearInterpolation
        root_finder: optx.AbstractRootFinder = optx.Newton(rtol=1e-12, atol=1e-12)
        root_find_max_steps: int = 10

        def order(self, terms):
            return 2

    z = np.array([-3.0, -1e6, -1e10, 2j])
    exact = (1 + z / 2) / (1 - z / 2)
    np.testing.assert_allclose(stability.tableau_amplification(Trapezoid(), z), exact)
    stepped = stability.amplification(Trapezoid(), z)  # round-off of the stage solve: eps·|z|
    np.testing.assert_array_less(np.abs(stepped - exact), 1e-15 * np.abs(z) + 1e-15)
    np.testing.assert_allclose(stability.tableau_amplification(Trapezoid(), np.inf), -1.0)
    assert stability.tableau_amplification("Euler", np.inf) == np.inf


def test_amplification_refuses_a_field_that_is_not_linear():
    r = stability.amplification("Euler", [-0.5], field=lambda y, lam, h: lam * y * y)
    assert np.isnan(r).all()


def test_fixed_points_are_classified_equilibrium_model_or_spurious():
    # y' = -(y - h) under Euler: Φ_h(y) = y - h(y - h), only fixed point y* = h, a zero of the
    # frozen field -(y - h) but not of the limit -y: the model's own equilibrium, not spurious.
    moving = System(name="moving", vector_field=lambda t, y, a, h: -(y - h), y0=jnp.array(1.0))
    df = stability.fixed_point_branches(moving, "Euler", [0.3, 1.2], (-2, 3))
    np.testing.assert_allclose(df.y, [0.3, 1.2], rtol=1e-12)
    assert df.kind.tolist() == ["model", "model"] and not df.spurious.any()
    # The catalog's modifying integrator of the logistic equation, F = f + (h/2)f'f =
    # y(1 - y)(1 + (h/2)(1 - 2y)): zeros 0 and 1 (equilibria of the limit) and 1/2 + 1/h (a zero
    # of F only); Euler's fixed points are exactly F's zeros. Heun at h = 4 adds points where
    # F ≠ 0: Φ(y) = y + (h/2)(F(y) + F(y + hF(y))) = y with F(y) ≠ 0 (solver-spurious).
    me = systems.get("modified_euler", base="logistic")
    euler = stability.fixed_points(me, "Euler", 1.0, (-1, 3))
    np.testing.assert_allclose(euler.y, [0.0, 1.0, 1.5], atol=1e-12)
    assert euler.kind.tolist() == ["equilibrium", "equilibrium", "model"]
    h = 4.0
    heun = stability.fixed_points(me, "Heun", h, (-1, 3))

    def big_f(y):
        return y * (1 - y) * (1 + h / 2 * (1 - 2 * y))

    for row in heun.itertuples():
        phi = row.y + h / 2 * (big_f(row.y) + big_f(row.y + h * big_f(row.y)))
        assert abs(phi - row.y) < 1e-9  # a fixed point, checked by hand
        expected = (
            "equilibrium"
            if abs(row.y * (1 - row.y)) < 1e-9
            else "model"
            if abs(big_f(row.y)) < 1e-9
            else "spurious"
        )
        assert row.kind == expected
    assert set(heun.kind) == {"equilibrium", "model", "spurious"}


def _numpy_lyapunov(mu, n, starts):
    """The logistic map's exponent by plain numpy: mean of log|μ(1 - 2x)| along orbits."""
    x = np.array(starts, dtype=float)
    for _ in range(1000):
        x = mu * x * (1 - x)
    total = np.zeros_like(x)
    for _ in range(n):
        total += np.log(np.abs(mu * (1 - 2 * x)))
        x = mu * x * (1 - x)
    return total / n


def test_lyapunov_exponents_reach_one_percent_with_the_defaults():
    # Independent references: ln 2 at μ = 4 (closed form); at μ = 3.9 a plain numpy average
    # over 64 orbits × 40,000 iterates (0.4960; 2000 × 100,000 give 0.49600 ± 0.00003).
    reference = _numpy_lyapunov(3.9, 40_000, np.linspace(0.1, 0.9, 64)).mean()
    assert abs(reference - 0.496) < 1.5e-3
    # Euler on y' = y(1 - y) is the logistic map with μ = 1 + h (x = h·y/(1 + h)).
    od = stability.orbit_diagram("logistic", "Euler", [3.0, 2.9], [0.2, 0.3, 0.7], n_keep=1)
    assert not od.escaped.any()
    for lyap, se, truth in zip(od.lyapunov, od.lyapunov_se, (np.log(2.0), reference), strict=True):
        np.testing.assert_allclose(lyap, truth, rtol=0.01)
        assert (np.abs(lyap - truth) < 4 * se + 1e-3).all()
        assert (se < 0.005 * truth).all()
    # On a stable fixed point the exponent is log|1 - h| with no spread.
    calm = stability.orbit_diagram("logistic", "Euler", [0.5], [0.3], n_keep=1)
    np.testing.assert_allclose(calm.lyapunov, np.log(0.5), rtol=1e-10)
    assert calm.lyapunov_se[0, 0] < 1e-12


def test_max_stable_step_follows_a_moving_equilibrium_under_higher_order_solvers():
    """y' = -(y - h)(1 + y²): every Runge–Kutta stage vanishes at y* = h, so y* = h is fixed,
    with DΦ_h = R(z), z = h·∂f/∂y(h) = -h(1 + h²). Stable iff h(1 + h²) ≤ r, r the real
    interval: Euler and Heun (r = 2) at h = 1; Tsit5 at the real root of h³ + h = r_Tsit5
    (r_Tsit5 from its stability polynomial); ImplicitEuler (A-stable) never loses it."""
    model = System(
        name="own", vector_field=lambda t, y, a, h: -(y - h) * (1 + y**2), y0=jnp.array(0.0)
    )
    c = stability_polynomial("Tsit5")
    k = np.arange(len(c))
    r_tsit5 = min(
        first_positive_root(P.polysub(c * (-1.0) ** k, [1.0])),
        first_positive_root(P.polyadd(c * (-1.0) ** k, [1.0])),
    )
    roots = np.roots([1.0, 0.0, 1.0, -r_tsit5])
    h_tsit5 = roots[np.abs(roots.imag) < 1e-12].real.max()
    for name, truth in (("Euler", 1.0), ("Heun", 1.0), ("Tsit5", h_tsit5)):
        bound = stability.max_stable_step(model, name, 0.0)
        assert bound.status == "unstable"
        np.testing.assert_allclose(bound, truth, rtol=2e-6)
        np.testing.assert_allclose(bound.fixed_point, truth, rtol=2e-6)  # y* = h
    assert stability.max_stable_step(model, "ImplicitEuler", 0.0) == np.inf


def test_orbit_diagram_refuses_an_orbit_table_larger_than_memory_before_compiling(monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("orbit_diagram compiled a refused call")

    monkeypatch.setattr(stability, "_orbits", no_compile)
    with pytest.raises(InvalidArgument, match=r"n_keep=10000000000 needs about 279 GiB"):
        stability.orbit_diagram("logistic", "Euler", [1.5], [0.3], n_keep=10**10)
    # The rule is the sweep's: at most half of what analysis._sweep._available_bytes() reports.
    monkeypatch.setattr(stability._sweep, "_available_bytes", lambda: 2 * 30 * 10**6)
    assert stability.orbit_bytes(1, 10**6, 1) == 30 * 10**6  # fits exactly: not refused
    with pytest.raises(AssertionError, match="compiled a refused call"):
        stability.orbit_diagram("logistic", "Euler", [1.5], [0.3], n_keep=10**6)
    with pytest.raises(InvalidArgument, match=r"2 h × 3 start.*use n_keep=166666 or less"):
        stability.orbit_diagram("logistic", "Euler", [1.5, 2.0], [0.1, 0.2, 0.3], n_keep=10**6)
