"""The convergence study's QUICK config end to end: tables, expected orders, figures."""

import numpy as np
import pytest

from analysis import solvers
from studies import convergence as study


@pytest.fixture(scope="module")
def results():
    return study.run(study.QUICK)


def test_table_lists_every_solver_with_observed_and_nominal_order(results):
    orders = results["orders"]
    smooth = orders[orders["experiment"] == "smooth"]
    assert set(smooth["solver"]) == set(solvers.NAMES)
    for col in ("order", "ci_low", "ci_high", "nominal_order", "points_used", "excluded"):
        assert col in orders
    final = smooth[smooth["norm"] == "final"]
    assert (final["status"] == "ok").all()
    # Every solver within 0.2 of its nominal order, and its interval is honest about the spread.
    assert np.all(np.abs(final["order"] - final["nominal_order"]) < 0.2), final[
        ["solver", "order", "nominal_order"]
    ]


def test_step_dependent_cap_and_modified_euler_orders(results):
    orders = results["orders"]
    for exp in ("cap", "modified"):
        part = orders[orders["experiment"] == exp]
        assert len(part) and (part["status"] == "ok").all()
        assert np.all(np.abs(part["order"] - part["expected_order"]) < 0.15), part[
            ["solver", "q", "terms", "order", "expected_order"]
        ]


def test_stiff_problem_shows_order_reduction(results):
    stiff = results["orders"][results["orders"]["experiment"] == "stiff"]
    mild = stiff[stiff["stiffness"] == stiff["stiffness"].min()]
    hard = stiff[stiff["stiffness"] == stiff["stiffness"].max()]
    assert np.all(np.abs(mild["order"] - mild["nominal_order"]) < 0.15)
    assert np.all(hard["order"].to_numpy() < mild["order"].to_numpy() - 0.5)


def test_plot_returns_every_captioned_figure(results):
    figs = study.plot(results)
    assert set(figs) == set(study.CAPTIONS)
    for fig in figs.values():
        assert fig.axes
