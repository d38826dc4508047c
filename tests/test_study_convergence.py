"""The convergence study's QUICK config end to end: tables, expected orders, figures."""

import numpy as np
import pytest

from analysis import solvers
from studies import convergence as study

STUDY = "convergence"  # the QUICK run every test here gets as `quick_study`
pytestmark = pytest.mark.slow  # end to end: the study's whole QUICK config


def test_table_lists_every_solver_with_observed_and_nominal_order(quick_study):
    fits = quick_study.tables["fits"]
    smooth = fits[fits["experiment"] == "smooth"]
    assert set(smooth["solver"]) == set(solvers.NAMES)
    for col in ("order", "ci_low", "ci_high", "nominal_order", "points_used", "excluded"):
        assert col in fits
    final = smooth[smooth["norm"] == "final"]
    paper = quick_study.tables["observed_orders"]  # the exported paper table
    assert set(paper["solver"]) == set(solvers.NAMES)
    assert set(study.PAPER_TABLES) <= set(quick_study.tables)
    # On the (linear) harmonic oscillator the errors follow from each solver's stability
    # function R(z); the orders fitted to those predicted errors on the same steps are the
    # mathematics the measurements must match.
    assert np.all(np.abs(final["order"] - final["predicted_order"]) < 0.1), final
    # Every solver shows its nominal order, except where R(z) - e^z has a tiny leading
    # coefficient (Dopri8: 1.3e-3/9!), so the next term dominates at every resolvable step.
    near = np.abs(final["predicted_order"] - final["nominal_order"]) < 0.2
    assert set(final["solver"][~near]) <= {"Dopri8"}
    assert np.all(np.abs(final["order"] - final["nominal_order"])[near] < 0.2), final
    # An ok fit's interval holds the nominal order; where the steps cannot reach the asymptotic
    # range (Dopri8: its local orders still move towards 9 at the finest resolvable step), the
    # status says so instead of 'ok', with a reason.
    ok = final["status"] == "ok"
    assert set(final["solver"][~ok]) <= set(final["solver"][~near])
    holds = (final["ci_low"] <= final["nominal_order"]) & (
        final["nominal_order"] <= final["ci_high"]
    )
    assert holds[ok].all(), final[["solver", "order", "ci_low", "ci_high", "status"]]
    assert (final["reason"][~ok] != "").all()


def test_step_dependent_cap_and_modified_euler_orders(quick_study):
    fits = quick_study.tables["fits"]
    for exp in ("cap", "modified"):
        part = fits[fits["experiment"] == exp]
        assert len(part) and (part["status"] == "ok").all()
        assert np.all(np.abs(part["order"] - part["expected_order"]) < 0.15), part[
            ["solver", "q", "terms", "order", "expected_order"]
        ]


def test_stiff_problem_shows_order_reduction_to_the_stage_order(quick_study):
    fits, rows = quick_study.tables["fits"], quick_study.tables["rows"]
    stiff = fits[fits["experiment"] == "stiff"]
    rows = rows[rows["experiment"] == "stiff"]
    assert (rows["status"] == "ok").all()  # every implicit solve converges, λ = 1e6 included
    assert (stiff["status"] == "ok").all(), stiff
    mild = stiff[stiff["stiffness"] == stiff["stiffness"].min()]
    hard = stiff[stiff["stiffness"] == stiff["stiffness"].max()]
    assert hard["stiffness"].min() == 1e6
    assert np.all(np.abs(mild["order"] - mild["nominal_order"]) < 0.15)
    assert (mild["expected_order"] == mild["nominal_order"]).all()
    # h·λ ≥ 2000 on every step: the order is the stage order (2 for Kvaerno), not the nominal
    assert (hard["expected_order"] == hard["stage_order"]).all()
    assert np.all(np.abs(hard["order"] - hard["stage_order"]) < 0.15), hard
    assert np.all(hard["order"].to_numpy() < mild["order"].to_numpy() - 0.5)


def test_plot_returns_every_captioned_figure(quick_study):
    figs = quick_study.figures
    assert set(figs) == set(study.CAPTIONS)
    for fig in figs.values():
        assert fig.axes
