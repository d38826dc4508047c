"""Convergence targets against closed forms: Euler on y' = -y has y_N = (1 - h)^N exactly, so
its error against the exact target is |e^{-1} - (1 - h)^{1/h}| and Richardson's extrapolation
of it is checkable by hand; the other targets against what they mean."""

import warnings

import numpy as np
import pytest

import analysis
from analysis import InvalidArgument, convergence, systems, targets

STEPS = (10, 20, 30, 40, 60, 80, 120, 160)


@pytest.fixture(scope="module")
def decay():
    return systems.get("linear")


def _euler_errors(h):
    """|e^{-1} - (1 - h)^{1/h}|: Euler's final error on y' = -y over [0, 1]."""
    h = np.asarray(h, float)
    return np.abs(np.exp(-1) - (1 - h) ** np.rint(1 / h))


def test_euler_error_against_the_exact_target_is_the_closed_form_of_order_1(decay):
    result = convergence.measure(decay, "Euler", dt0=[1 / n for n in STEPS], target="exact")
    rows, fit = result.rows, result.fits.iloc[0]
    assert (rows["target"] == "limit: exact").all() and (rows["reference_error"] == 0).all()
    np.testing.assert_allclose(rows["error"], _euler_errors(rows["h"]), rtol=1e-10)
    assert fit["status"] == "ok" and fit["ci_low"] <= 1 <= fit["ci_high"]
    assert abs(fit["order"] - 1) < 0.05


def test_richardson_estimate_of_euler_matches_the_exact_error(decay):
    """Extrapolating Euler's two finest runs with p = 1 removes the O(h) term, so the target is
    e^{-1} to O(h²); measured against it, every other run's error is its exact error."""
    h = np.array([1 / n for n in STEPS])
    ys = ((1 - h) ** np.rint(1 / h))[:, None, None]  # Euler's y_N, by hand
    values = targets.Richardson().values_from_runs(decay, "Euler", ys, h)
    assert values.label == "richardson (nominal order 1)"
    assert sorted(values.built_from.tolist()) == [len(h) - 2, len(h) - 1]  # the two finest
    h1, h2 = 1 / 160, 1 / 120
    y1, y2 = _euler_errors([h1, h2]) * -1 + np.exp(-1)  # Euler's values lie below e^{-1}
    assert values.ys[0, 0] == pytest.approx(y1 + (y1 - y2) / (h2 / h1 - 1), rel=1e-14)
    true_error = abs(values.ys[0, 0] - np.exp(-1))
    assert true_error < 1e-2 * _euler_errors(h1)  # far closer than the finest run
    # the estimate (from the next pair) bounds the target's true error within a factor of 3
    assert true_error <= values.error[0] <= 3 * true_error

    measured = convergence.measure(decay, "Euler", dt0=list(h), target="richardson")
    rows = measured.rows[~measured.rows["reference_point"]]
    np.testing.assert_allclose(rows["error"], _euler_errors(rows["h"]), rtol=0.02)
    assert "build the Richardson target" in measured.fits["excluded"].iloc[0]
    assert abs(measured.fits["order"].iloc[0] - 1) < 0.1


def test_reference_solve_equals_the_exact_solution_where_there_is_one(decay):
    ts = np.linspace(0.1, 1.0, 10)
    exact = targets.Exact().values(decay, ts)
    solved = targets.ReferenceSolve().values(decay, ts)
    assert solved.label == "limit: reference (Dopri8, rtol=1e-13)"
    np.testing.assert_allclose(exact.ys[:, 0], np.exp(-ts), rtol=1e-15)
    # Dopri8 at rtol 1e-13 on [0, 1]; between its steps the values are its dense output
    np.testing.assert_allclose(solved.ys, exact.ys, rtol=1e-9)


def test_limit_of_a_system_without_exact_solution_is_the_reference_solve():
    lv = systems.get("lotka_volterra")
    v = targets.as_target("limit").values(lv, np.array([lv.t1]))
    assert v.label.startswith("limit: reference (Dopri8") and 0 < v.error[0] < 1e-9
    with pytest.raises(InvalidArgument, match="no exact solution"):
        convergence.measure(lv, "Euler", dt0=[0.1], target="exact")


def test_setting_target_measures_distance_to_a_discretization(decay):
    """Against Euler at h0 = 0.1 the run at h0 has error 0 and the finest run is |e^{-1} -
    0.9^10| away, up to its own error."""
    h0 = 0.1
    result = convergence.measure(
        decay, "Euler", dt0=[1 / n for n in STEPS], target=targets.Setting("Euler", h0)
    )
    df = result.rows
    assert df["target"].iloc[0] == "Euler at h=0.1"
    distance = abs(np.exp(-1) - (1 - h0) ** 10)
    assert df.set_index("h")["error"][h0] == 0.0
    finest = df.loc[df["h"].idxmin()]
    assert abs(finest["error"] - distance) <= _euler_errors(finest["h"]) * (1 + 1e-9)
    assert "zero error" in result.fits["excluded"].iloc[0]


def test_richardson_target_of_a_step_dependent_field_uses_the_observed_order():
    """f = -y + h·sin(y) (q = 1) under Heun (p = 2) converges at order 1: extrapolating with the
    nominal order 2 would leave an O(h) error in the target. The three-grid order is used."""
    system = systems.get("perturbed", base="linear", c=1.0, q=1)
    dts = [1 / n for n in (10, 14, 20, 28, 40, 56, 80, 113, 160)]
    result = convergence.measure(system, "Heun", dt0=dts, target="richardson")
    df = result.rows
    label = df["target"].iloc[0]
    assert label.startswith("richardson (order 1.0") and "observed on the 3 finest runs" in label
    exact = convergence.measure(system, "Heun", dt0=dts).rows
    mask = ~df["reference_point"].to_numpy()
    np.testing.assert_allclose(df["error"][mask], exact["error"][mask], rtol=0.02)
    fit = result.fits.iloc[0]
    assert fit["status"] == "ok" and fit["ci_low"] <= 1 <= fit["ci_high"]
    given = convergence.measure(system, "Heun", dt0=dts, target="richardson", richardson_order=2)
    assert given.rows["target"].iloc[0] == "richardson (order 2, given)"


def test_three_grid_order_solves_for_a_power_law():
    h = np.array([0.3, 0.2, 0.1])
    ys = (1.0 + 0.7 * h**2.5)[:, None, None]
    assert targets.three_grid_order(ys, h) == pytest.approx(2.5, abs=1e-8)


def test_string_forms_and_bad_targets():
    assert targets.as_target("limit") == targets.Limit()
    assert targets.as_target("exact") == targets.Exact()
    assert targets.as_target("reference") == targets.ReferenceSolve()
    assert targets.as_target("richardson", 2.0) == targets.Richardson(2.0)
    with pytest.raises(InvalidArgument, match="'sup'"):
        targets.as_target("sup")
    with pytest.raises(InvalidArgument, match="richardson_order"):
        targets.Richardson(order=-1)


def test_measuring_a_lifted_map_against_its_limit_warns_that_it_is_frozen():
    lifted = analysis.discrete.lift(lambda y: 0.5 * y, h_train=0.25, y0=1.0)
    with pytest.warns(targets.FrozenFieldWarning, match="frozen at h = 0.25") as caught:
        convergence.measure(lifted, "Euler", dt0=[0.25, 0.125, 0.0625])
    assert caught[0].filename == __file__  # points at the caller of measure
    with warnings.catch_warnings():
        warnings.simplefilter("error", targets.FrozenFieldWarning)
        convergence.measure(lifted, "Euler", dt0=[0.25, 0.125, 0.0625], target="richardson")
