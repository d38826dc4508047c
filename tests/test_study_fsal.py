"""The fsal study's QUICK config end to end: the stale first stage changes the answer by more
than the tolerance and costs more steps; the figure."""

import numpy as np
import pytest

from studies import fsal as study

STUDY = "fsal"  # the QUICK run every test here gets as `quick_study`
pytestmark = pytest.mark.slow  # end to end: the study's whole QUICK config


def test_table_and_figure(quick_study):
    rows = quick_study.tables["rows"]
    assert len(rows) == 2 * len(study.QUICK.solvers) * len(study.QUICK.rtols)
    assert (rows["status"] == "ok").all()
    assert set(quick_study.figures) == set(study.CAPTIONS)


def test_the_stale_stage_moves_y_beyond_the_tolerance_and_costs_steps(quick_study):
    rows = quick_study.tables["rows"]
    fresh = rows[rows["wrapper"] == "StepAware (refreshed)"].set_index(["solver", "rtol"])
    stale = rows[rows["wrapper"] == "stale FSAL stage"].set_index(["solver", "rtol"])
    assert (fresh["gap_to_stepaware"] == 0).all()
    rtol = stale.index.get_level_values("rtol").to_numpy()
    assert (stale["gap_to_stepaware"].to_numpy() > 100 * rtol).all()
    tightest = stale.index.get_level_values("rtol").min()
    extra = (
        stale.xs(tightest, level="rtol")["num_accepted"]
        / fresh.xs(tightest, level="rtol")["num_accepted"]
    )
    assert (extra > 3).all()


def test_both_wrappers_converge_to_the_h_to_0_limit(quick_study):
    """y' = -y + h·sin(y) → e^{-T} as the steps shrink, whichever wrapper: errors fall with rtol."""
    rows = quick_study.tables["rows"]
    for _, g in rows.groupby(["solver", "wrapper"]):
        g = g.sort_values("rtol")
        assert g["error_vs_limit"].iloc[0] < g["error_vs_limit"].iloc[-1]
        assert np.all(np.isfinite(g["y_final"]))
