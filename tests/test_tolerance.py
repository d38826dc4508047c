"""analysis.tolerance: proportionality is the least-squares slope, the spread is tolerance-level
without h as input and O(Δh) with it, work-precision compiles once, jumps of y(T) between
neighbouring tolerances; the plots draw the stored tables and fits."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import InvalidArgument, plotting, systems, tolerance

RTOLS = [1e-4, 1e-6, 1e-8]


def test_proportionality_is_the_least_squares_slope_on_log_rtol():
    rtol = np.logspace(-2, -8, 7)
    rows = pd.DataFrame(
        {"system": "s", "solver": "x", "controller": "I", "rtol": rtol, "status": "ok"}
    )
    rows["error"] = 3.0 * rtol**0.8
    out = tolerance.proportionality(rows)
    assert out["slope"].iloc[0] == pytest.approx(0.8) and out["points"].iloc[0] == 7
    assert out["intercept"].iloc[0] == pytest.approx(np.log10(3.0))


def test_proportionality_keeps_groups_whose_rows_all_failed_and_counts_the_failures():
    rtol = np.logspace(-2, -6, 5)
    rows = pd.DataFrame(
        {"system": "s", "solver": np.repeat(["x", "y", "z"], 5), "controller": "I"}
    ).assign(rtol=np.tile(rtol, 3), error=np.tile(2.0 * rtol, 3), status="ok")
    rows.loc[rows["solver"] == "x", "status"] = ["nonfinite"] * 3 + ["max_steps"] * 2
    rows.loc[rows["solver"] == "y", "status"] = ["ok", "ok", "ok", "nonfinite", "field_error"]
    out = tolerance.proportionality(rows).set_index("solver")
    assert list(out.index) == ["x", "y", "z"]
    x, y, z = (out.loc[s] for s in "xyz")
    assert x["status"] == "too_few_points" and np.isnan(x["slope"]) and np.isnan(x["intercept"])
    assert (x["points"], x["n_failed"]) == (0, 5)
    assert "5 failed (3 nonfinite, 2 max_steps)" in x["reason"]
    assert y["status"] == "ok" and y["slope"] == pytest.approx(1.0) and y["points"] == 3
    assert y["n_failed"] == 2 and y["reason"] == "2 failed (1 nonfinite, 1 field_error)"
    assert z["status"] == "ok" and z["n_failed"] == 0 and z["reason"] == ""
    every = tolerance.proportionality(rows[rows["solver"] == "x"])  # was a KeyError
    assert len(every) == 1 and every["status"].iloc[0] == "too_few_points"
    assert set(every.columns) == set(out.reset_index().columns)


@pytest.fixture(scope="module")
def decay():
    """y' = -y and f = -y + h·sin(y) on [0, 10], Tsit5, controllers I and H211b."""
    base = systems.get("linear", t1=10.0)
    stepdep = systems.get("perturbed", base=base, c=1.0, q=1, g="sin")
    rows = [
        analysis.sweep([base, stepdep], "Tsit5", controller=c, rtol=RTOLS) for c in ("I", "H211b")
    ]
    return base, stepdep, tolerance.spread(pd.concat(rows, ignore_index=True))


def test_spread_is_tolerance_level_without_h_and_far_larger_with_h_as_input(decay):
    base, stepdep, result = decay
    s = result.spread.set_index(["system", "rtol"])["spread"]
    free, with_h = s[base.name], s[stepdep.name]
    # Each h-free solve is within ~rtol of y(10) = e^-10, so their spread is too.
    assert (free.to_numpy() <= np.asarray(RTOLS)).all()
    # With h as input the controller's choice of h moves the answer by O(Δh), far above rtol.
    assert (with_h.to_numpy() >= 100 * np.asarray(RTOLS)).all()
    assert result.to_frame().equals(result.rows) and (result.spread["n"] == 2).all()


def test_spread_is_the_max_norm_range_over_ok_rows():
    rows = pd.DataFrame(
        {
            "system": ["a"] * 3 + ["b"] * 2,
            "rtol": 1e-3,
            "status": ["ok"] * 4 + ["nonfinite"],
            "y_final_0": [1.0, 2.0, 4.0, 0.0, 9.0],
            "y_final_1": [0.0, 10.0, 0.0, 0.0, 0.0],
        }
    )
    s = tolerance.spread(rows).spread.set_index("system")
    assert s.loc["a", "spread"] == 10.0 and s.loc["b", "spread"] == 0.0 and s.loc["b", "n"] == 1
    one = tolerance.spread(rows, output="y_final_0").spread.set_index("system")
    assert one.loc["a", "spread"] == 3
    with pytest.raises(InvalidArgument, match="output"):
        tolerance.spread(rows, output="y")
    with pytest.raises(InvalidArgument, match="lacks column 'status'"):
        tolerance.spread(rows.drop(columns="status"))


def test_work_precision_compiles_once_keeps_the_best_time_and_stores_its_fits(
    fresh_compile_cache,
):
    lin = systems.get("linear")
    wp = tolerance.work_precision(lin, [("Tsit5", "PI34")], [1e-4, 1e-8], repeats=3)
    rows = wp.rows
    assert rows.attrs["compilations"] == 1  # three timed runs of one compiled solve
    once = analysis.sweep(lin, "Tsit5", controller="PI34", rtol=[1e-4, 1e-8], chunk_size=1)
    np.testing.assert_array_equal(rows["nfev"], once["nfev"])
    np.testing.assert_allclose(rows["error"], once["error"], rtol=1e-12)
    assert (rows["wall_s"] > 0).all() and rows["error"].iloc[1] < rows["error"].iloc[0]
    slope = np.diff(np.log10(rows["error"])) / np.diff(np.log10(rows["rtol"]))  # two points
    assert wp.proportionality["slope"].iloc[0] == pytest.approx(slope[0], rel=1e-12)


def _steps_in_rtol():
    """y(rtol) = 1 + rtol (smooth) and 1 + 0.01·[rtol < 3e-6] + rtol (one jump), reference 1."""
    rtol = np.logspace(-3, -7, 9)
    smooth = pd.DataFrame({"system": "a", "rtol": rtol, "y_final_0": 1 + rtol})
    jump = pd.DataFrame({"system": "b", "rtol": rtol, "y_final_0": 1 + 0.01 * (rtol < 3e-6) + rtol})
    return pd.concat([smooth, jump], ignore_index=True).assign(status="ok")


def test_output_vs_tolerance_offsets_and_locates_the_jump():
    rows = _steps_in_rtol()
    result = tolerance.output_vs_tolerance(rows, 1.0)
    np.testing.assert_allclose(result.rows["offset"], rows["y_final_0"] - 1.0, rtol=0, atol=0)
    jumps = result.jumps.set_index("system")
    a, b = jumps.loc["a"], jumps.loc["b"]
    # Smooth: neighbouring values differ by r_{i+1} - r_i, the largest at the loosest pair.
    assert a["largest_jump"] == pytest.approx(1e-3 - 10**-3.5, rel=1e-9)
    assert a["jump_over_rtol"] < 1
    # The jump: 0.01 (less the smooth part) between rtol 10^-6 and 10^-5.5.
    assert (b["between_rtol_lo"], b["between_rtol_hi"]) == pytest.approx((1e-6, 10**-5.5))
    assert b["largest_jump"] == pytest.approx(0.01 - (10**-5.5 - 1e-6), rel=1e-9)
    with pytest.raises(InvalidArgument, match="lacks column 'rtol'"):
        tolerance.output_vs_tolerance(rows.drop(columns="rtol"), 1.0)
    with pytest.raises(InvalidArgument, match="needs two or more"):
        tolerance.output_vs_tolerance(rows.iloc[[0, 9]], 1.0)


# --- figures: the drawn data is the stored data -------------------------------------------


def test_spread_vs_tolerance_draws_the_stored_spread_a_line_per_system(decay):
    base, stepdep, result = decay
    fig = plotting.spread_vs_tolerance(result)
    (ax,) = fig.axes  # no family column: one panel, titled by the systems
    assert ax.get_title() == f"{base.name}, {stepdep.name}"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [base.name, stepdep.name, "spread = rtol"]  # a line per system
    for line, name in zip(ax.get_lines()[:2], labels, strict=False):
        s = result.spread[result.spread["system"] == name].sort_values("rtol")
        np.testing.assert_array_equal(line.get_ydata(), s["spread"].clip(lower=1e-17))
    one = tolerance.spread(result.rows, by=("rtol",))  # no system either: one line
    (ax,) = plotting.spread_vs_tolerance(one).axes
    assert ax.get_title() == "" and len(ax.get_lines()) == 2  # the line and spread = rtol
    with pytest.raises(InvalidArgument, match="result is a DataFrame"):
        plotting.spread_vs_tolerance(result.spread)


def test_spread_vs_tolerance_gives_each_system_and_solver_a_line():
    rows = pd.DataFrame(
        {"system": "s", "solver": np.repeat(["A", "B"], 4), "controller": ["I", "PI34"] * 4,
         "rtol": np.tile([1e-3, 1e-3, 1e-6, 1e-6], 2), "status": "ok",
         "y_final_0": [1.0, 1.5, 1.0, 1.1, 2.0, 4.0, 2.0, 2.2]}
    )  # fmt: skip
    result = tolerance.spread(rows, by=("system", "solver", "rtol"))
    ax = plotting.spread_vs_tolerance(result).axes[0]
    lines = {line.get_label(): line.get_ydata().tolist() for line in ax.get_lines()}
    assert lines["s, A"] == pytest.approx([0.1, 0.5]) and lines["s, B"] == pytest.approx([0.2, 2])


def test_work_precision_draws_the_rows_and_the_stored_slope_not_a_new_fit():
    rtol = np.array([1e-3, 1e-6, 1e-9])
    rows = pd.concat(
        pd.DataFrame({"system": system, "solver": "Tsit5", "controller": "PI34", "status": "ok",
                      "rtol": rtol, "error": k * rtol, "nfev": [50, 140, 480],
                      "wall_s": [1e-4, 2e-4, 6e-4]})
        for system, k in (("a", 1.0), ("b", 3.0))
    )  # fmt: skip
    fits = tolerance.proportionality(rows).assign(slope=[0.25, np.nan], status=["ok", "odd"])
    fig = plotting.work_precision(tolerance.WorkPrecision(rows, fits))
    top = fig.axes[0]
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels == ["PI34, a (slope 0.25)", "PI34, b (odd)"]  # stored, though error ∝ rtol
    for line, k in zip(top.get_lines(), (1.0, 3.0), strict=True):
        np.testing.assert_array_equal(line.get_ydata(), k * rtol[::-1])  # sorted by rtol
    with pytest.raises(InvalidArgument, match="result.rows lacks column 'wall_s'"):
        plotting.work_precision(tolerance.WorkPrecision(rows.drop(columns="wall_s"), fits))


def test_controller_heatmaps_draw_log10_error_a_panel_per_system_and_solver():
    rows = pd.DataFrame(
        [dict(system=s, solver="Tsit5", controller=c, rtol=r, status="ok", error=k * m * r)
         for s, m in (("a", 1.0), ("b", 10.0))
         for c, k in (("I", 3.0), ("PI34", 1.0)) for r in (1e-3, 1e-6)]
    )  # fmt: skip
    fig, axes = plt.subplots(1, 2)
    plotting.controller_heatmaps(rows, metrics=("error",), axes=axes)
    assert [ax.get_title() for ax in axes] == ["a: Tsit5", "b: Tsit5"]
    for ax, m in zip(axes, (1.0, 10.0), strict=True):
        want = np.log10(m * np.array([[3e-3, 3e-6], [1e-3, 1e-6]]))  # rows I, PI34; rtol falls
        np.testing.assert_allclose(ax.get_images()[0].get_array(), want, rtol=1e-14)
    with pytest.raises(InvalidArgument, match="lacks column 'nfev'"):
        plotting.controller_heatmaps(rows, metrics=("nfev",))
    with pytest.raises(InvalidArgument, match="'speed'"):
        plotting.controller_heatmaps(rows, metrics=("speed",))


def test_output_vs_tolerance_draws_the_offsets_a_panel_per_group():
    result = tolerance.output_vs_tolerance(_steps_in_rtol(), 1.0)
    fig = plotting.output_vs_tolerance(result)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    for ax, system in zip(fig.axes, "ab", strict=True):
        g = result.rows[result.rows["system"] == system].sort_values("rtol")
        np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), g["offset"])
    sweep_rows = _steps_in_rtol()
    with pytest.raises(InvalidArgument, match="result is a DataFrame"):
        plotting.output_vs_tolerance(sweep_rows)  # sweep rows: not what the producer returns
