"""The sweep engine: tidy rows, one compilation per group, failures as rows, clear errors."""

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import systems
from analysis.systems import System

COLUMNS = [
    "system",
    "solver",
    "controller",
    "dt0",
    "h",
    "rtol",
    "atol",
    "t1",
    "status",
    "num_steps",
    "num_accepted",
    "num_rejected",
    "nfev",
    "error",
    "error_source",
    "wall_s",
]


def test_fixed_step_sweep_is_tidy_and_measures_error_against_the_exact_solution():
    dts = [0.1, 0.05, 0.025]
    df = analysis.sweep("linear", ["Euler", "Heun"], dt0=dts)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS and "y_final_0" in df
    assert len(df) == 6 and (df["status"] == "ok").all()
    euler = df[df.solver == "Euler"]
    np.testing.assert_allclose(euler["dt0"], dts)  # input order is kept
    np.testing.assert_allclose(
        euler["y_final_0"], [(1 - h) ** round(1 / h) for h in dts], rtol=1e-12
    )
    np.testing.assert_allclose(euler["error"], np.abs(euler["y_final_0"] - np.exp(-1)), rtol=1e-12)
    assert (df["error_source"] == "exact").all()


def test_vmap_over_dt0_compiles_once_per_group_and_reuses_it(fresh_compile_cache):
    dts = np.linspace(0.01, 0.1, 16)
    sys = systems.get("logistic", r=1.37)  # parameters no other test uses: a fresh group
    df = analysis.sweep(sys, "Heun", dt0=dts, chunk_size=4)
    assert df.attrs["compilations"] == 1 and len(df) == 16
    # The catalog returns the same object for the same name and parameters: no recompilation,
    # also for new step sizes of the same chunk size.
    again = analysis.sweep(systems.get("logistic", r=1.37), "Heun", dt0=dts * 1.01, chunk_size=4)
    assert again.attrs["compilations"] == 0
    other = analysis.sweep(systems.get("logistic", r=2.71), "Heun", dt0=dts, chunk_size=4)
    assert other.attrs["compilations"] == 1


def test_adaptive_sweep_compiles_once_per_system_solver_and_controller(fresh_compile_cache):
    rtols = np.logspace(-3, -9, 7)
    df = analysis.sweep(
        ["lotka_volterra", "harmonic"],
        ["Tsit5", "Bosh3"],
        controller="PI34",
        rtol=rtols,
        atol=1e-10,
    )
    assert df.attrs["compilations"] == 4 and len(df) == 28
    assert (df["status"] == "ok").all()
    assert set(df["error_source"]) == {"exact", "reference"}
    # Error falls as the tolerance tightens.
    for _, g in df.groupby(["system", "solver"]):
        assert g["error"].iloc[-1] < g["error"].iloc[0] * 1e-3


def test_chunked_results_equal_unchunked_results():
    dts = np.linspace(0.02, 0.2, 9)
    whole = analysis.sweep("harmonic", "Tsit5", dt0=dts)
    chunked = analysis.sweep("harmonic", "Tsit5", dt0=dts, chunk_size=2)
    cols = ["dt0", "h", "status", "num_steps", "error", "y_final_0", "y_final_1"]
    pd.testing.assert_frame_equal(whole[cols], chunked[cols])


def test_dt0_that_does_not_divide_the_span_is_snapped_to_a_uniform_grid():
    df = analysis.sweep("linear", "Euler", dt0=[0.3])
    assert df["h"].iloc[0] == pytest.approx(0.25) and df["num_steps"].iloc[0] == 4
    np.testing.assert_allclose(df["y_final_0"], 0.75**4, rtol=1e-14)


def test_error_is_nan_with_a_reason_when_there_is_no_reference():
    blowup = System(name="blowup", vector_field=lambda t, y, a, h: y**2, y0=np.float64(1.0), t1=2.0)
    df = analysis.sweep(blowup, "Euler", dt0=[0.1])
    assert np.isnan(df["error"].iloc[0])
    assert df["error_source"].iloc[0].startswith("none (reference solve failed")


def test_step_dependent_systems_are_solved_with_h_inside_every_step():
    sys = systems.get("perturbed", base="linear", c=1.0, q=1, g="identity")
    df = analysis.sweep(sys, "Euler", dt0=[0.1])
    # Euler on y' = -y + h·y: y_N = (1 + h(h - 1))^N.
    np.testing.assert_allclose(df["y_final_0"], (1 + 0.1 * (0.1 - 1)) ** 10, rtol=1e-13)


def _epoch(span=1e-4):
    """y' = -y from an epoch time t0 = 1.7e9 (seconds since 1970): spacing(t0) = 2.4e-7."""
    return System(
        name="epoch_decay",
        vector_field=lambda t, y, a, h: -y,
        y0=np.float64(1.0),
        t0=1.7e9,
        t1=1.7e9 + span,
        exact=lambda t: np.exp(-(t - 1.7e9)),
    )


def test_a_time_grid_that_cannot_hold_the_steps_is_refused_before_compiling():
    # This used to be an 'ok' row with 77 steps (one of them 24 µs long) instead of 100.
    before = analysis.compile_count()
    with pytest.raises(analysis.InvalidArgument) as caught:
        analysis.sweep(_epoch(), "Euler", dt0=[1e-6])
    message = str(caught.value)
    for part in ("dt0=1e-06", "t0=1700000000.0", "np.spacing(t0)=2.38e-07", "0.0001 relative"):
        assert part in message, message
    assert "shift the time origin" in message
    # Adaptive: the initial step is checked, and a span no step of which is representable.
    with pytest.raises(analysis.InvalidArgument, match=r"dt0=1e-05 \(the initial step\)"):
        analysis.sweep(_epoch(1.0), "Tsit5", controller="PI34", rtol=[1e-6], dt0=[1e-5])
    with pytest.raises(analysis.InvalidArgument, match="even one step over the whole span"):
        analysis.sweep(_epoch(), "Tsit5", controller="PI34", rtol=[1e-6])
    assert analysis.compile_count() == before


def test_steps_representable_to_the_stated_accuracy_are_solved_as_before():
    # At t0 = 1.7e9 a step of 0.01 is 42000 float spacings: represented to 2.4e-5 relative.
    df = analysis.sweep(_epoch(1.0), "Euler", dt0=[0.01])
    assert df["status"].iloc[0] == "ok" and df["num_steps"].iloc[0] == 100
    np.testing.assert_allclose(df["y_final_0"], 0.99**100, rtol=1e-4)
    # The boundary is STEP_RTOL: spacing(T) ≤ STEP_RTOL·h.
    spacing = np.spacing(1.7e9 + 1.0)
    ok = spacing / analysis._sweep.STEP_RTOL
    analysis.sweep(_epoch(1.0), "Euler", dt0=[1 / np.floor(1 / ok)])
    with pytest.raises(analysis.InvalidArgument, match="cannot be represented"):
        analysis.sweep(_epoch(1.0), "Euler", dt0=[ok / 1.01])


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(dt0=[1e-300]), r"dt0=1e-300 cannot be represented .* dt0 ≥ 2.22e-12"),
        (dict(dt0=[1e-10]), r"dt0=1e-10 needs 1e\+10 steps .* at most 2\*\*31 - 1"),
        (dict(dt0=[0.1], max_steps=2**64), r"max_steps=18446744073709551616 is invalid"),
        (dict(dt0=[0.1], max_steps=2**31), r"max_steps=2147483648 is invalid"),
        (dict(dt0=[0.1], max_steps=1e30), r"max_steps=1e\+30 is invalid"),
        (dict(dt0=[0.1], max_steps=2.5), r"max_steps=2.5 is invalid"),
        (dict(dt0=[0.1], max_steps=True), r"max_steps=True is invalid"),
    ],
)
def test_overflowing_steps_and_step_counts_are_refused_clearly(kw, message):
    # Both used to raise a raw OverflowError from inside jax.
    before = analysis.compile_count()
    with pytest.raises(analysis.InvalidArgument, match=message):
        analysis.sweep("linear", "Euler", **kw)
    assert analysis.compile_count() == before


@pytest.mark.parametrize("kw", [dict(rtol=[1e-3, 1e-6]), dict(atol=[1e-8]), dict(rtol=1e-3)])
def test_tolerances_without_an_adaptive_controller_are_refused(kw):
    # sweep(dt0=[...], rtol=[...]) without controller= used to drop rtol silently.
    name = next(iter(kw))
    with pytest.raises(analysis.InvalidArgument, match=rf"{name}=.* fixed-step sweep") as caught:
        analysis.sweep("linear", "Tsit5", dt0=[0.1, 0.05], **kw)
    assert "controller='PI34'" in str(caught.value)
    with pytest.raises(analysis.InvalidArgument, match="fixed-step sweep"):
        analysis.sweep("linear", "Tsit5", dt0=[0.1], controller="fixed", **kw)


def test_a_dict_state_solves_and_euler_on_the_harmonic_oscillator_is_its_closed_form():
    """Euler on q' = p, p' = -q multiplies w = q + ip by (1 - ih) each step: w_N = (1 - ih)^N.
    The state columns are the ravelled dict (keys sorted: p, then q)."""
    import jax.numpy as jnp

    oscillator = System(
        name="oscillator_dict",
        vector_field=lambda t, y, args, h: {"q": y["p"], "p": -y["q"]},
        y0={"q": jnp.asarray(1.0), "p": jnp.asarray(0.0)},
        exact=lambda t: {"q": jnp.cos(t), "p": -jnp.sin(t)},
    )
    df = analysis.sweep(oscillator, "Euler", dt0=[0.1, 0.05, 0.025], save_ts=[0.5])
    assert (df["status"] == "ok").all() and list(df["error_source"]) == ["exact"] * 3
    for _, row in df.iterrows():
        n = round(1 / row["h"])
        w = (1 - 1j * row["h"]) ** n
        np.testing.assert_allclose([row["y_final_0"], row["y_final_1"]], [w.imag, w.real], 1e-13)
        exact = np.array([-np.sin(1.0), np.cos(1.0)])
        want = np.max(np.abs(np.array([w.imag, w.real]) - exact))
        np.testing.assert_allclose(row["error"], want, rtol=1e-10)
        half = (1 - 1j * row["h"]) ** (n // 2)  # t = 0.5 is a step end
        np.testing.assert_allclose(row["ys"], [[half.imag, half.real]], rtol=1e-13)


def test_systems_equal_up_to_parameter_values_share_one_compile(fresh_compile_cache):
    first = analysis.sweep(systems.get("van_der_pol", mu=1.0), "Heun", dt0=[0.1, 0.05])
    other = analysis.sweep(systems.get("van_der_pol", mu=2.0), "Heun", dt0=[0.1, 0.05])
    assert first.attrs["compilations"] == 1 and other.attrs["compilations"] == 0


def test_the_batch_and_its_executors_do_not_import_the_sweep():
    """The sweep uses batch and distributed; neither imports it back (no cycle)."""
    import ast
    from pathlib import Path

    for name in ("batch", "distributed"):
        tree = ast.parse((Path(analysis.__file__).parent / f"{name}.py").read_text())
        found = {
            (node.module or "") + "".join(a.name for a in node.names)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
        }
        assert not any("_sweep" in f for f in found), (name, found)


def test_all_presets_share_one_compile_and_each_gives_its_own_solve(fresh_compile_cache):
    """The presets differ only in numbers (kβ, α), which the compiled solve takes as arguments:
    ten sweeps, one compilation, and each preset's rows are what its own solve gives (a
    `prepare(..., controller=name)` diffeqsolve with the coefficients as Python constants)."""
    import jax
    import jax.numpy as jnp

    from analysis import controller
    from analysis.prepare import prepare

    rtols = np.logspace(-3, -8, 4)
    before = analysis.compile_count()
    rows = {
        name: analysis.sweep("lotka_volterra", "Bosh3", controller=name, rtol=rtols)
        for name in controller.PRESETS
    }
    assert analysis.compile_count() - before == 1
    assert [r.attrs["compilations"] for r in rows.values()] == [1] + [0] * 9
    for name, df in rows.items():

        @jax.jit
        @jax.vmap
        def own(rtol, name=name):
            p = prepare("lotka_volterra", "Bosh3", controller=name, rtol=rtol)
            sol = p.solve(max_steps=2**14)
            return sol.ys[-1], sol.stats["num_steps"], sol.stats["num_rejected_steps"]

        y, steps, rejected = own(jnp.asarray(rtols))
        assert df["num_steps"].tolist() == np.asarray(steps).tolist(), name
        assert df["num_rejected"].tolist() == np.asarray(rejected).tolist(), name
        assert (df["num_rejected"] > 0).any(), name  # the rejection branch is exercised
        got = df[["y_final_0", "y_final_1"]].to_numpy()
        np.testing.assert_allclose(got, np.asarray(y), rtol=1e-12, atol=0, err_msg=name)


def test_systems_equal_up_to_numbers_with_presets_of_one_kind_share_one_compile(
    fresh_compile_cache,
):
    """Two van der Pol systems (mu = 1, 2) × two presets × a numeric option's value: one
    compilation. A structural option (the limiter on) is another kind: one more."""
    total = 0
    for mu, dtmax in ((1.0, 0.5), (2.0, 0.25)):
        for name in ("PI34", "H211b"):
            df = analysis.sweep(
                systems.get("van_der_pol", mu=mu),
                "Heun",
                controller=name,
                rtol=[1e-3, 1e-5],
                controller_options={"dtmax": dtmax},
            )
            assert (df["status"] == "ok").all()
            total += df.attrs["compilations"]
    assert total == 1
    limited = analysis.sweep(
        systems.get("van_der_pol", mu=1.0),
        "Heun",
        controller="PI34",
        rtol=[1e-3, 1e-5],
        controller_options={"dtmax": 0.5, "limiter": True},
    )
    assert limited.attrs["compilations"] == 1


def test_saves_between_steps_are_the_methods_interpolant():
    """Euler's dense output is the straight line between step ends: with h = 1/4 on y' = -y,
    y(0.3) reads (1 - h) + (0.3 - 0.25)/h·((1 - h)² - (1 - h)), and y(0.5) = (1 - h)²."""
    df = analysis.sweep("linear", "Euler", dt0=[0.25, 0.125], save_ts=[0.3, 0.5])
    for _, row in df.iterrows():
        h = row["h"]
        k = int(0.3 // h)  # the step holding t = 0.3
        left, right = (1 - h) ** k, (1 - h) ** (k + 1)
        inside = left + (0.3 - k * h) / h * (right - left)
        np.testing.assert_allclose(row["ys"], [inside, (1 - h) ** round(0.5 / h)], rtol=1e-14)


def test_saves_between_constant_steps_that_cannot_fit_are_refused_naming_max_steps():
    """The kept interpolant (max_steps steps of stages) is counted before anything compiles:
    2000 components × 2**21 steps of Tsit5 need ~280 GiB even one solve at a time."""
    import jax.numpy as jnp

    big = System(name="big", vector_field=lambda t, y, args, h: -y, y0=jnp.ones(2000), t1=2.0)
    with pytest.raises(
        analysis.InvalidArgument, match="even one solve per chunk does not fit.*max_steps"
    ):
        analysis.sweep(big, "Tsit5", dt0=[1e-6], save_ts=[0.5, 1.5])
