"""The discrete_maps study's QUICK config end to end: tables, their mathematics, the figures."""

import numpy as np
import pytest

from studies import discrete_maps as study

STUDY = "discrete_maps"  # the QUICK run every test here gets as `quick_study`
pytestmark = pytest.mark.slow  # end to end: the study's whole QUICK config


def test_tables_and_figures(quick_study):
    assert set(study.PAPER_TABLES) <= set(quick_study.tables)
    for name, df in quick_study.tables.items():
        assert len(df), name
    figures = quick_study.figures
    assert set(figures) == set(study.CAPTIONS)


def test_euler_on_the_logistic_ode_is_conjugate_to_the_logistic_map(quick_study):
    df = quick_study.tables["logistic_conjugacy"]
    np.testing.assert_allclose(df["mu"], 1 + study.QUICK.logistic_r * df["h"], rtol=1e-15)
    # Point for point where the attractor is periodic (μ < 3.5): no round-off amplification.
    regular = df[df["mu"] < 3.5]
    np.testing.assert_allclose(regular["x_euler"], regular["x_logistic"], atol=1e-12)


def test_only_euler_reproduces_the_lifted_maps(quick_study):
    df = quick_study.tables["lifted_drift"]
    for name, g in df.groupby("map"):
        euler = g[g["solver"] == "Euler (fixed h)"]
        assert euler["drift"].max() < 1e-13, name
        for solver in ("Heun (fixed h)", "Tsit5 (fixed h)"):
            assert g.loc[g["solver"] == solver, "drift"].max() > 0.1, (name, solver)
    adaptive = df[df["solver"].str.contains("adaptive")].groupby("map")["status"].first()
    assert adaptive["henon"] == "max_steps"  # its error estimate does not shrink with h


def test_modified_equation_slopes(quick_study):
    slopes = quick_study.tables["modified_slopes"].set_index(["solver", "order"])["fitted_slope"]
    expected = {"Euler": (2, 3, 4), "Heun": (3, 3, 4), "Bosh3": (4, 4, 4)}
    for solver, orders in expected.items():
        for order, slope in enumerate(orders):
            assert abs(slopes[(solver, order)] - slope) < 0.2, (solver, order)


def test_residual_block_leaves_its_continuous_limit(quick_study):
    gap = quick_study.tables["residual_gap"]
    assert (gap["status"] == "ok").all() and gap["error"].iloc[0] == 0
    assert gap["time_to_threshold"].iloc[0] == gap.loc[gap["error"] > gap["threshold"], "t"].min()
    lin = quick_study.tables["residual_linearization"]
    assert lin["g_at_end"].max() < 1e-6  # the ODE has settled on its equilibrium
    assert (lin["lambda_re"] < 0).all() and (lin["map_multiplier_abs"] > 1).all()
