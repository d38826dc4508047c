"""Invariant drift against closed forms: Euler and Heun on the harmonic oscillator multiply the
energy by |R(iωh)|² per step, so the drift after N steps is E_0(|R(iωh)|^{2N} - 1) exactly."""

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import InvalidArgument, invariants, plotting, systems
from analysis.systems import System

# t1 = 1 is a whole number of steps for every h = 2^-k, so every step is a full step.
STEPS = [2.0**-k for k in range(4, 9)]


@pytest.fixture(scope="module")
def harmonic():
    return invariants.drift(systems.get("harmonic", t1=1.0), ["Euler", "Heun"], dt0=STEPS)


@pytest.mark.parametrize(
    "solver, growth",
    [("Euler", lambda h: 1 + h**2), ("Heun", lambda h: 1 + h**4 / 4)],  # |R(ih)|², ω = 1
)
def test_drift_is_the_closed_form_energy_growth(harmonic, solver, growth):
    rows = harmonic.rows[harmonic.rows["solver"] == solver]
    h = rows["h"].to_numpy()
    assert (rows["steps"].to_numpy() == np.round(1 / h)).all()
    exact = 0.5 * (growth(h) ** np.round(1 / h) - 1)  # E_0 = 1/2, energy only grows
    # |E_n - E_0| is computed from O(1) energies: equal up to the stated round-off floor.
    gap = np.abs(rows["drift"].to_numpy() - exact)
    assert (gap <= 1e-9 * exact + rows["roundoff_floor"].to_numpy()).all(), gap / exact


def test_fitted_orders_hold_the_closed_form_orders(harmonic):
    # Euler: D ≈ E_0·T·h (order 1); Heun: D ≈ E_0·T·h³/4 (order 3).
    fits = harmonic.fits.set_index("solver")
    for solver, order in (("Euler", 1), ("Heun", 3)):
        fit = fits.loc[solver]
        assert fit["status"] == "ok", fit["reason"]
        assert fit["ci_low"] <= order <= fit["ci_high"]


def test_a_conserved_invariant_is_round_off_not_an_order():
    # y' = 0 conserves |y|² under every solver, exactly: the drift is 0 at every step, which
    # must not be fitted as an order.
    still = System(
        name="still",
        vector_field=lambda t, y, args, h: jnp.zeros_like(y),
        y0=jnp.array([0.3, 0.4]),
        invariants={"norm2": lambda y: y @ y},
    )
    result = invariants.drift(still, "Tsit5", dt0=[0.1, 0.05, 0.025])
    assert (result.rows["drift"] == 0).all()
    assert result.fits["status"].item() in ("not_converging", "too_few_points")


def test_a_pendulum_of_my_own_drifts_at_first_order_under_euler():
    # q'' = -sin q with energy p²/2 - cos q: Euler's energy error is O(h) on a fixed span.
    pendulum = System(
        name="pendulum",
        vector_field=lambda t, y, args, h: jnp.stack([y[1], -jnp.sin(y[0])]),
        y0=jnp.array([1.0, 0.0]),
        t1=2.0,
        invariants={"energy": lambda y: 0.5 * y[1] ** 2 - jnp.cos(y[0])},
    )
    fit = invariants.drift(pendulum, "Euler", dt0=[2.0**-k for k in range(6, 11)]).fits
    assert fit["status"].item() == "ok"
    assert fit["ci_low"].item() <= 1 <= fit["ci_high"].item()


def test_a_blown_up_solve_is_a_row_with_a_status_and_no_drift():
    # Euler on y' = -50y at h = 0.1 multiplies y by 1 - 5 = -4 per step: 4^600 overflows.
    decay = System(
        name="decay",
        vector_field=lambda t, y, args, h: -50.0 * y,
        y0=jnp.array(1.0),
        t1=60.0,
        invariants={"square": lambda y: y**2},
    )
    rows = invariants.drift(decay, "Euler", dt0=[0.1]).rows
    assert rows["status"].item() == "nonfinite"
    assert np.isnan(rows["drift"].item())


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(system="linear", solvers="Euler", dt0=[0.1]), "has no invariants"),
        (dict(system="harmonic", solvers="Euler", dt0=[0.1], invariants=["mass"]), "'mass'"),
        (dict(system="harmonic", solvers="Euler", dt0=[0.1, -0.1]), "dt0="),
        (dict(system="harmonic", solvers=[], dt0=[0.1]), "solvers=[]"),
        (dict(system="harmonic", solvers="Euler", dt0=[1e-9]), "too small"),
    ],
)
def test_bad_input_is_refused_before_solving(kwargs, words):
    with pytest.raises(InvalidArgument, match=words.replace("[", r"\[").replace("]", r"\]")):
        invariants.drift(**kwargs)


def test_the_plot_draws_the_rows_and_the_stored_orders(harmonic):
    fig = plotting.invariant_drift(harmonic)
    lines = fig.axes[0].get_lines()
    for line, (solver, rows) in zip(
        lines, harmonic.rows.groupby("solver", sort=False), strict=True
    ):
        np.testing.assert_array_equal(line.get_xdata(), rows.sort_values("h")["h"])
        np.testing.assert_array_equal(line.get_ydata(), rows.sort_values("h")["drift"])
        order = harmonic.fits.set_index("solver").loc[solver, "order"]
        assert line.get_label() == f"{solver}, energy (order {order:.2f})"
    plotting.close(fig)


def test_the_plot_refuses_what_drift_did_not_produce(harmonic):
    with pytest.raises(InvalidArgument, match="lacks column 'drift'"):
        plotting.invariant_drift(
            invariants.InvariantDrift(rows=harmonic.rows.drop(columns="drift"), fits=harmonic.fits)
        )
    with pytest.raises(InvalidArgument, match="is a NoneType"):
        plotting.invariant_drift(harmonic.rows)


def test_a_result_survives_the_store_round_trip(harmonic):
    again = invariants.InvariantDrift.from_tables(harmonic.tables())
    assert again.to_frame().equals(harmonic.rows)
    objects = invariants.drift(systems.get("harmonic", t1=1.0), [diffrax.Euler()], dt0=STEPS)
    np.testing.assert_array_equal(objects.rows["drift"], harmonic.rows["drift"][: len(STEPS)])
