"""analysis.step_log: the logged attempts of an adaptive solve tile [t0, t1] with the accepted
steps, obey the acceptance rule e_n < 1, agree with diffrax's counts and with the sweep; step
metrics by hand; step_histories draws the logged steps."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import InvalidArgument, plotting, step_log, systems

PRESETS = ("I", "PI34", "H211b")


@pytest.fixture(scope="module")
def lv_log():
    return step_log.step_log("lotka_volterra", "Tsit5", PRESETS, rtol=1e-6, atol=1e-8)


def test_accepted_steps_tile_the_interval_and_rejected_ones_are_retried_smaller(lv_log):
    lv = systems.get("lotka_volterra")
    assert list(lv_log.solves["controller"]) == list(PRESETS)
    for name, steps in lv_log.steps.groupby("controller", sort=False):
        assert steps["step"].tolist() == list(range(len(steps)))
        acc = steps[steps["accepted"]]
        t0, h = acc["t0"].to_numpy(), acc["h"].to_numpy()
        assert t0[0] == lv.t0
        np.testing.assert_allclose(
            t0[1:], t0[:-1] + h[:-1], rtol=1e-14
        )  # y_{n+1} starts at t_n + h_n
        assert t0[-1] + h[-1] == pytest.approx(lv.t1, rel=1e-14)
        # diffrax's rule: accepted iff the scaled error is < 1; after a rejection the same t0 is
        # retried with h multiplied by at most safety = 0.9.
        np.testing.assert_array_equal(steps["error"] < 1, steps["accepted"])
        rejected = np.flatnonzero(~steps["accepted"].to_numpy())
        assert len(rejected) > 0, name
        retry = steps.iloc[rejected + 1]
        np.testing.assert_array_equal(retry["t0"], steps["t0"].iloc[rejected])
        bound = 0.9 * steps["h"].iloc[rejected].to_numpy() * (1 + 1e-13)  # = 0.9·h at the clip
        assert (retry["h"].to_numpy() <= bound).all()


def test_solves_count_every_attempt(lv_log):
    for solve in lv_log.solves.to_dict(orient="records"):
        steps = lv_log.steps[lv_log.steps["controller"] == solve["controller"]]
        assert solve["attempts"] == solve["num_steps"] == solve["logged"] == len(steps)
        assert solve["successful"] and (solve["rtol"], solve["atol"]) == (1e-6, 1e-8)


def test_a_small_buffer_logs_a_prefix_and_counts_every_attempt(lv_log):
    short = step_log.step_log("lotka_volterra", "Tsit5", "PI34", rtol=1e-6, atol=1e-8, size=10)
    full = lv_log.steps[lv_log.steps["controller"] == "PI34"]
    pd.testing.assert_frame_equal(short.steps, full.iloc[:10].reset_index(drop=True))
    assert short.solves["attempts"].iloc[0] == len(full) and short.solves["logged"].iloc[0] == 10


def test_a_step_dependent_field_is_logged_as_the_sweep_solves_it():
    system = systems.get("perturbed", base=systems.get("linear", t1=10.0), q=1, g="sin")
    log = step_log.step_log(system, "Tsit5", "I", rtol=1e-6)
    row = analysis.sweep(system, "Tsit5", controller="I", rtol=[1e-6], log_steps=512).iloc[0]
    steps = log.steps
    metrics = step_log.step_metrics(steps["h"], steps["accepted"], len(steps))
    assert log.solves["num_steps"].iloc[0] == row["num_steps"]
    for key in step_log.STEP_METRICS:
        assert metrics[key] == pytest.approx(row[key], rel=1e-12), key


def test_step_metrics_of_a_geometric_step_sequence():
    # Accepted h_n = 0.1·2^n (the last one is dropped: diffrax shortens it to land on t1), so
    # every accepted step ratio is 2 and the roughness is log 2; one of five attempts rejected.
    h = [0.1, 0.2, 0.15, 0.4, 0.8]
    m = step_log.step_metrics(h, [True, True, False, True, True], 5)
    assert m["rejection_rate"] == 0.2 and m["attempts_logged"] == 5
    assert m["roughness_mean"] == pytest.approx(np.log(2)) == m["roughness_max"]
    assert (m["h_min"], m["h_max"]) == (0.1, 0.4)
    assert np.isnan(step_log.step_metrics([0.1, 0.2], [True, True], 2)["roughness_mean"])


def test_sweep_step_metrics_columns_agree_with_the_counts():
    df = analysis.sweep(
        "lotka_volterra", "Tsit5", controller="H211b", rtol=[1e-4, 1e-7], log_steps=1024
    )
    assert set(step_log.STEP_METRICS) <= set(df.columns)
    assert (df["attempts_logged"] == df["num_steps"]).all()
    np.testing.assert_allclose(df["rejection_rate"], df["num_rejected"] / df["num_steps"])
    assert (df["roughness_mean"] <= df["roughness_max"]).all()
    with pytest.raises(InvalidArgument, match="log_steps"):
        analysis.sweep("linear", "Euler", dt0=[0.1], log_steps=10)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(controller="PI43"), "controller='PI43' is not a preset"),
        (dict(controller=3), "controller=3 is invalid"),
        (dict(controller=[]), r"controller=\[\] is invalid"),
        (dict(controller="I", size=0), "size=0 is invalid"),
        (dict(controller="I", size=2.5), "size=2.5 is invalid"),
    ],
)
def test_bad_input_names_the_argument(kw, match):
    with pytest.raises(InvalidArgument, match=match):
        step_log.step_log("linear", "Tsit5", rtol=1e-6, **kw)


def test_step_histories_draws_the_logged_steps(lv_log):
    fig = plotting.step_histories(lv_log)
    assert len(fig.axes) == len(PRESETS)
    for ax, name in zip(fig.axes, PRESETS, strict=True):
        steps = lv_log.steps[lv_log.steps["controller"] == name]
        accepted, rejected = ax.get_lines()[:2]
        np.testing.assert_array_equal(accepted.get_ydata(), steps["h"][steps["accepted"]])
        np.testing.assert_array_equal(rejected.get_xdata(), steps["t0"][~steps["accepted"]])
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [f"{name}: accepted", f"rejected ({(~steps['accepted']).sum()})"]


def test_step_histories_gives_each_solve_a_panel_and_draws_into_given_axes(lv_log):
    other = step_log.step_log("linear", "Tsit5", "I", rtol=1e-6)
    both = step_log.StepLog(
        pd.concat([lv_log.steps, other.steps], ignore_index=True),
        pd.concat([lv_log.solves, other.solves], ignore_index=True),
    )
    fig, axes = plt.subplots(4, 1)
    out = plotting.step_histories(both, axes=axes)
    assert out is fig
    titles = [ax.get_legend().get_texts()[0].get_text() for ax in axes]
    assert titles == [f"{p}, lotka_volterra: accepted" for p in PRESETS] + ["I, linear: accepted"]
    with pytest.raises(InvalidArgument, match="axes has 2 Axes"):
        plotting.step_histories(both, axes=axes[:2])


def test_step_histories_refuses_a_frame_and_names_missing_columns(lv_log):
    with pytest.raises(InvalidArgument, match="result is a DataFrame"):
        plotting.step_histories(lv_log.steps)
    no_h = step_log.StepLog(lv_log.steps.drop(columns="h"), lv_log.solves)
    with pytest.raises(InvalidArgument, match="result.steps lacks column 'h'"):
        plotting.step_histories(no_h)
