"""Failures during a solve are data: a status per row, fits that leave failed rows out and say
so, and a step bound that holds in float32 too."""

import subprocess
import sys
import textwrap
import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import checkout_env

import analysis
from analysis import chunk_store, convergence, distributed, systems


def test_every_failure_kind_is_a_row_with_its_status_and_the_other_rows_survive():
    blowup = analysis.sweep(systems.get("linear", lam=100.0, t1=100.0), "Euler", dt0=[0.5, 0.001])
    assert list(blowup["status"]) == ["nonfinite", "ok"]
    assert np.isnan(blowup["error"].iloc[0]) and not np.isfinite(blowup["y_final_0"].iloc[0])
    capped = analysis.sweep(
        "lotka_volterra", "Tsit5", controller="I", rtol=[1e-3, 1e-12], max_steps=100
    )
    assert list(capped["status"]) == ["ok", "max_steps"]
    floored = analysis.sweep(
        systems.get("van_der_pol", mu=1000.0, t1=10.0),
        "Tsit5",
        controller="PI34",
        rtol=[1e-6],
        controller_options={"dtmin": 1e-2, "force_dtmin": False},
    )
    assert list(floored["status"]) == ["dt_below_min"]


def test_an_implicit_solve_whose_newton_iteration_fails_is_a_row():
    # Implicit Euler on y' = y² from y(0) = 1 at h = 0.6: h·y_{n+1}² - y_{n+1} + 1 = 0 has no
    # real root once 4h > 1, so Newton cannot converge; the smaller step stays solvable.
    square = systems.System(
        name="square", vector_field=lambda t, y, a, h: y**2, y0=np.float64(1.0), t1=0.6
    )
    df = analysis.sweep(square, "ImplicitEuler", dt0=[0.6, 0.01])
    assert list(df["status"]) == ["implicit_nonconvergence", "ok"]


def test_fits_leave_failed_rows_out_and_say_how_many():
    h = np.array([0.4, 0.2, 0.1, 0.05, 0.025, 0.0125])
    err = 2.0 * h**2
    status = np.array(["nonfinite", "ok", "ok", "max_steps", "ok", "ok"])
    fit = convergence.fit_order(h, np.where(status == "ok", err, np.inf), status=status)
    assert fit.n_failed == 2 and abs(fit.order - 2) < 1e-9
    few = convergence.fit_order(h[:2], err[:2])
    assert few.status == "too_few_points" and np.isnan(few.order) and few.reason


def test_max_steps_is_bounded_in_float32_as_well():
    code = textwrap.dedent(
        """
        import warnings
        import jax
        jax.config.update("jax_enable_x64", False)
        warnings.simplefilter("ignore")
        import analysis
        df = analysis.sweep("lotka_volterra", "Tsit5", controller="PI34", rtol=[1e-12])
        print(df["status"].iloc[0], df["num_steps"].iloc[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env=checkout_env({"PATH": "", "JAX_PLATFORMS": "cpu"}),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    status, steps = out.stdout.split()
    assert (
        status in {"max_steps", "ok"} and int(steps) <= analysis._sweep.DEFAULT_ADAPTIVE_MAX_STEPS
    )


def _guarded(name, field, y0, t1):
    def f(t, y, args, h):
        return field(t, eqx.error_if(y, jnp.abs(y) > 10.0, "state left |y| <= 10"), h)

    return systems.System(name=name, vector_field=f, y0=np.float64(y0), t1=t1)


def _solves(df):
    return df.drop(columns="wall_s")


def test_a_field_error_is_the_row_of_the_solve_that_raised_whatever_the_chunk_size(tmp_path):
    # Euler on y' = -30 y over [0, 1]: y_n = (1 - 30 h)^n leaves |y| <= 10 for h = 0.1 (|1 - 3|
    # = 2) and h = 1/12 (1.5) but not for h ≤ 1/15; the guard fires inside those two solves.
    decay = _guarded("guarded_decay", lambda t, y, h: -30.0 * y, 1.0, 1.0)
    dt0 = [0.1, 1 / 12, 0.01, 0.005, 0.0025]
    runs = {}
    for size in (1, 2, 5):
        with pytest.warns(distributed.FieldErrorWarning) as caught:
            runs[size] = analysis.sweep(decay, "Euler", dt0=dt0, chunk_size=size)
        said = sorted(str(w.message) for w in caught)
        assert len(said) == 2 and all("state left |y| <= 10" in m for m in said)
        assert "'guarded_decay' with Euler at h=0.08333333333333333" in said[0]
        assert "h=0.1 raised" in said[1]
    df = runs[2]
    assert list(df["status"]) == ["field_error"] * 2 + ["ok"] * 3
    failed = df.iloc[:2]
    assert failed["y_final_0"].isna().all() and failed["error"].isna().all()
    assert (failed["num_steps"] == 0).all()
    for size in (1, 5):
        pd.testing.assert_frame_equal(_solves(runs[size]), _solves(df), check_exact=True)
    # The other rows: the numbers a sweep of only those settings gives, and (1 - 30 h)^(1/h).
    alone = analysis.sweep(decay, "Euler", dt0=dt0[2:], chunk_size=2)
    rest = df.iloc[2:].reset_index(drop=True)
    pd.testing.assert_frame_equal(_solves(rest), _solves(alone), check_exact=True)
    h = np.array(dt0[2:])
    np.testing.assert_allclose(df["y_final_0"].iloc[2:], (1 - 30 * h) ** (1 / h), rtol=1e-12)
    # A chunk store keeps the failed rows as they are: the rerun loads them, compiling nothing.
    store = chunk_store.ChunkStore(tmp_path)
    with pytest.warns(distributed.FieldErrorWarning):
        first = analysis.sweep(decay, "Euler", dt0=dt0, chunk_size=2, store=store)
    again = analysis.sweep(
        decay, "Euler", dt0=dt0, chunk_size=2, store=chunk_store.ChunkStore(tmp_path)
    )
    assert again.attrs["compilations"] == 0
    for stored in (first, again):
        pd.testing.assert_frame_equal(_solves(stored), _solves(df), check_exact=True)


def test_a_lane_that_finished_early_does_not_fail_its_chunk():
    # y' = 1 + h from 0 to t1 = 1 ends at y = 1 + h. Alone, no solve evaluates the field beyond
    # its last step's start (y ≤ 1); vmapped, the h = 0.5 lane is done after two steps and keeps
    # evaluating at its final y = 1.5 > 1.2 while the h = 0.01 lane steps on.
    def f(t, y, args, h):
        return 1.0 + h + 0.0 * eqx.error_if(y, y > 1.2, "y above 1.2")

    ramp = systems.System(name="ramp", vector_field=f, y0=np.float64(0.0), t1=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", distributed.FieldErrorWarning)
        vmapped = analysis.sweep(ramp, "Euler", dt0=[0.5, 0.01], chunk_size=2)
        alone = analysis.sweep(ramp, "Euler", dt0=[0.5, 0.01], chunk_size=1)
    assert list(vmapped["status"]) == ["ok", "ok"]
    pd.testing.assert_frame_equal(_solves(vmapped), _solves(alone), check_exact=True)
    np.testing.assert_allclose(vmapped["y_final_0"], [1.5, 1.01], rtol=1e-12)


def test_an_adaptive_solve_whose_field_raises_is_named_by_its_tolerances():
    # The field refuses steps above 0.2; at rtol = 1e-2 Tsit5 tries one, at 1e-8 it never does.
    def f(t, y, args, h):
        return -eqx.error_if(y, h > 0.2, "step above 0.2") + 0.0 * h

    guarded = systems.System(name="step_guard", vector_field=f, y0=np.float64(1.0))
    kw = dict(controller="PI34", rtol=[1e-2, 1e-8, 1e-10])
    with pytest.warns(distributed.FieldErrorWarning) as caught:
        df = analysis.sweep(guarded, "Tsit5", chunk_size=3, **kw)
    assert [str(w.message) for w in caught] == [
        "system 'step_guard' with Tsit5 at rtol=0.01, atol=0.01 (controller 'PI34') raised in "
        "its vector field; its row has status 'field_error': step above 0.2"
    ]
    assert list(df["status"]) == ["field_error", "ok", "ok"]
    plain = analysis.sweep("linear", "Tsit5", chunk_size=3, **kw)  # y' = -y, no guard
    np.testing.assert_array_equal(df["num_steps"].iloc[1:], plain["num_steps"].iloc[1:])
    np.testing.assert_allclose(df["y_final_0"].iloc[1:], np.exp(-1.0), rtol=1e-7)
