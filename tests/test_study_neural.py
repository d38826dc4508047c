"""The neural study's QUICK config end to end: run() tables and plot() figures."""

import numpy as np
import pytest

from studies import neural as study

STUDY = "neural"  # the QUICK run every test here gets as `quick_study` (stored as parquet there)
pytestmark = pytest.mark.slow  # end to end: the study's whole QUICK config


def test_quick_config_runs_and_plots(quick_study):
    results = quick_study.tables
    expected = {"training", "matrix", "trajectories", "sensitivity", "step_check", "fixed_points"}
    assert expected <= set(results)
    matrix = results["matrix"]
    config = study.QUICK
    n_tests = len(config.test_solvers) * len(config.test_hs) + len(config.test_rtols)
    assert len(matrix) == len(config.kinds) * len(config.train_settings) * n_tests
    assert (matrix["status"] == "ok").all() and np.isfinite(matrix["error"]).all()
    training = results["training"]
    for _, g in training.groupby(["model", "train_setting"]):
        assert g["loss"].iloc[-1] < g["loss"].iloc[0]
    assert set(results["sensitivity"]["method"]) == {"autodiff"}
    assert results["fixed_points"]["stable"].all()  # the learned maps keep the spiral's sink
    figures = quick_study.figures
    assert set(figures) == set(study.CAPTIONS)
