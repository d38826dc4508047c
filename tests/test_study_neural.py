"""The neural study's QUICK config end to end: run() tables and plot() figures."""

import io

import numpy as np

from studies import neural as study


def test_quick_config_runs_and_plots():
    results = study.run(study.QUICK)
    expected = {"training", "matrix", "trajectories", "sensitivity", "step_check", "fixed_points"}
    assert expected <= set(results)
    for df in results.values():
        df.to_parquet(io.BytesIO())  # the runner stores every table as parquet
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
    figures = study.plot(results)
    assert set(figures) == set(study.CAPTIONS)
